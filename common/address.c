/*
 * Default bus address resolution, identical for the broker, libplexus and
 * the CLI so that all of them meet on the same socket.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "address.h"

/**
 * address_default() - resolve the default bus address
 * @buf:        destination for the path
 * @size:       its capacity
 *
 * Return: 0 on success, -ENAMETOOLONG if the path does not fit in @buf or a
 * sockaddr_un, -ENOENT if no default applies (not root and neither variable
 * set).
 */
int address_default(char *buf, size_t size) {
        const char *e;
        int n;

        e = secure_getenv(ADDRESS_ENV);
        if (e && *e)
                n = snprintf(buf, size, "%s", e);
        else if ((e = secure_getenv("XDG_RUNTIME_DIR")) && *e)
                n = snprintf(buf, size, "%s%s", e, ADDRESS_USER_SUFFIX);
        else if (geteuid() == 0)
                n = snprintf(buf, size, "%s", ADDRESS_SYSTEM);
        else
                return -ENOENT;

        if (n < 0 || (size_t)n >= size || (size_t)n >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
                return -ENAMETOOLONG;
        return 0;
}

/**
 * address_to_sockaddr() - build the socket address for @path
 * @path:       a filesystem path
 * @ret:        the address, written on success
 * @ret_len:    its length for bind()/connect(), written on success
 *
 * Return: 0 on success, -EINVAL for an empty path, -ENAMETOOLONG if it does
 * not fit in sun_path.
 */
int address_to_sockaddr(const char *path, struct sockaddr_un *ret, socklen_t *ret_len) {
        size_t n = strlen(path);

        if (n == 0)
                return -EINVAL;
        if (n >= sizeof(ret->sun_path))
                return -ENAMETOOLONG;

        memset(ret, 0, sizeof(*ret));
        ret->sun_family = AF_UNIX;
        memcpy(ret->sun_path, path, n);
        *ret_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return 0;
}
