/*
 * Payload input and output (see payload.h).
 */

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "payload.h"
#include "utf8.h"
#include "util.h"

/* Read all of @fd, at most PAYLOAD_MAX bytes. */
static int read_fd(int fd, void **ret, size_t *ret_size) {
        _cleanup_(freep) char *buf = NULL;
        size_t n = 0;

        /* One byte more than allowed tells "too large" from "exactly at the limit". */
        buf = malloc(PAYLOAD_MAX + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t l = read(fd, buf + n, PAYLOAD_MAX + 1 - n);

                if (l < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (l == 0)
                        break;
                n += (size_t)l;
                if (n > PAYLOAD_MAX)
                        return -EFBIG;
        }
        *ret = TAKE_PTR(buf);
        *ret_size = n;
        return 0;
}

/**
 * payload_read() - the payload an argument stands for
 * @arg:        the bytes themselves, "@FILE", or "-" for standard input
 * @ret:        receives a malloc()ed buffer (possibly of 0 bytes), to free()
 * @ret_size:   receives its length
 *
 * Return: 0; -EFBIG above PAYLOAD_MAX bytes; -ENOMEM; or the errno of
 * open() or read() (e.g. -ENOENT for a missing file).
 */
int payload_read(const char *arg, void **ret, size_t *ret_size) {
        _cleanup_(closep) int fd = -1;
        size_t n;
        void *p;

        if (strcmp(arg, "-") == 0)
                return read_fd(STDIN_FILENO, ret, ret_size);
        if (arg[0] == '@') {
                fd = open(arg + 1, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0)
                        return -errno;
                return read_fd(fd, ret, ret_size);
        }

        n = strlen(arg);
        if (n > PAYLOAD_MAX)
                return -EFBIG;
        p = malloc(n + 1);
        if (!p)
                return -ENOMEM;
        memcpy(p, arg, n + 1);
        *ret = p;
        *ret_size = n;
        return 0;
}

/**
 * payload_hexdump() - @n bytes as `hexdump -C` prints them
 * @f:          the stream
 * @p:          the bytes
 * @n:          how many; 0 prints nothing
 *
 * Offset, sixteen bytes in hex (a gap after eight), the same as ASCII with
 * '.' for anything else; then a line with the total length.
 */
void payload_hexdump(FILE *f, const void *p, size_t n) {
        const unsigned char *b = p;

        for (size_t off = 0; off < n; off += 16) {
                fprintf(f, "%08zx ", off);
                for (size_t i = 0; i < 16; i++) {
                        if (i == 8)
                                fputc(' ', f);
                        if (off + i < n)
                                fprintf(f, " %02x", b[off + i]);
                        else
                                fputs("   ", f);
                }
                fputs("  |", f);
                for (size_t i = 0; i < 16 && off + i < n; i++)
                        fputc(b[off + i] >= 0x20 && b[off + i] < 0x7f ? b[off + i] : '.', f);
                fputs("|\n", f);
        }
        if (n > 0)
                fprintf(f, "%08zx\n", n);
}

/**
 * payload_print() - a received payload for a human
 * @f:          the stream
 * @p:          the bytes
 * @n:          how many
 *
 * Text goes out as it is, with a newline added unless it ends with one;
 * anything else as a hexdump. An empty payload prints nothing.
 */
void payload_print(FILE *f, const void *p, size_t n) {
        if (n == 0)
                return;
        if (!utf8_is_text(p, n)) {
                payload_hexdump(f, p, n);
                return;
        }
        fwrite(p, 1, n, f);
        if (((const char *)p)[n - 1] != '\n')
                fputc('\n', f);
}
