/*
 * SCM_RIGHTS helpers (see fdpass.h).
 */

#include <string.h>
#include <unistd.h>

#include "fdpass.h"

/**
 * fdpass_attach() - make @mh carry @fds
 * @mh:         the message; its control fields are set when @n_fds > 0
 * @control:    storage for the control message, alive until sendmsg()
 * @fds:        the fds, borrowed (the kernel duplicates them on sendmsg())
 * @n_fds:      how many, at most FRAME_FDS_MAX
 */
void fdpass_attach(struct msghdr *mh, FdControl *control, const int *fds, size_t n_fds) {
        struct cmsghdr *c;

        if (!n_fds)
                return;
        /* The padding after an odd number of fds goes to the kernel too: no stack garbage. */
        memset(control, 0, CMSG_SPACE(n_fds * sizeof(int)));
        mh->msg_control = control;
        mh->msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
        c = CMSG_FIRSTHDR(mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, n_fds * sizeof(int));
}

/**
 * fdpass_collect() - take the fds of a received message
 * @mh:         the message, after recvmsg()
 * @fds:        receives up to @max fds, now owned by the caller
 * @max:        its capacity
 *
 * Fds beyond @max (impossible with FRAME_FDS_MAX, the kernel's own limit)
 * are closed rather than leaked.
 *
 * Return: how many fds were stored.
 */
size_t fdpass_collect(struct msghdr *mh, int *fds, size_t max) {
        size_t n = 0;

        for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                        int fd;

                        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
                        if (n < max)
                                fds[n++] = fd;
                        else
                                close(fd);
                }
        }
        return n;
}
