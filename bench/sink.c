/*
 * Journal sink (see sink.h): binds a datagram socket at a path that must
 * not exist yet, copies every datagram to stdout (journald's native format
 * is KEY=value lines, readable as is), and on SIGTERM or SIGINT removes the
 * socket file it created and exits 0.
 *
 * It never replaces an existing socket: if a real journald listens there,
 * bind() fails with EADDRINUSE and the caller must use the real one.
 * Descriptors passed with a datagram (journald clients send large entries
 * as a memfd) are closed unread.
 */

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sink.h"
#include "util.h"

#define SINK_BUF (256 * 1024)

static void close_passed_fds(struct msghdr *mh) {
        for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                        int fd;

                        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
                        plx_close(fd);
                }
        }
}

static int sink_loop(int fd, int sfd, uint8_t *buf) {
        union {
                struct cmsghdr align;
                uint8_t buf[CMSG_SPACE(16 * sizeof(int))];
        } control;

        for (;;) {
                struct pollfd p[2] = {
                        { .fd = fd, .events = POLLIN },
                        { .fd = sfd, .events = POLLIN },
                };
                struct iovec iov = { .iov_base = buf, .iov_len = SINK_BUF };
                struct msghdr mh = {
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = &control,
                        .msg_controllen = sizeof(control),
                };
                ssize_t n;

                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (p[1].revents)
                        return 0;
                n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                continue;
                        return -errno;
                }
                close_passed_fds(&mh);
                fwrite(buf, 1, (size_t)n, stdout);
                fputc('\n', stdout);
                fflush(stdout);
        }
}

/**
 * sink_run() - serve as the journal socket at @path until SIGTERM/SIGINT
 * @path:       socket path; must not exist
 *
 * Return: 0 after a signal (the socket file has been removed), or negative
 * errno (-EADDRINUSE if @path exists).
 */
int sink_run(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_(closep) int fd = -1;
        _cleanup_(closep) int sfd = -1;
        _cleanup_(freep) uint8_t *buf = NULL;
        int size = 8 * 1024 * 1024;
        sigset_t mask;
        int r;

        if (!path || strlen(path) >= sizeof(sa.sun_path))
                return -EINVAL;
        strcpy(sa.sun_path, path);
        buf = malloc(SINK_BUF);
        if (!buf)
                return -ENOMEM;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -errno;
        sfd = signalfd(-1, &mask, SFD_CLOEXEC);
        if (sfd < 0)
                return -errno;

        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        /* Room for bursts of log lines; the kernel caps this at rmem_max. */
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -errno;

        r = sink_loop(fd, sfd, buf);
        (void)unlink(path);
        return r;
}
