/*
 * Listening socket (see listener.h).
 */

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "address.h"
#include "listener.h"
#include "peer.h"
#include "router.h"

#define LISTENER_ACCEPT_BATCH 64

/* One fd held back for accept_and_close(). */
static void reserve_open(Listener *l) {
        if (l->reserve_fd < 0)
                l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static int make_parent_dir(const char *path) {
        char copy[sizeof(((struct sockaddr_un *)NULL)->sun_path)];
        const char *dir;

        snprintf(copy, sizeof(copy), "%s", path);
        dir = dirname(copy);
        /*
         * Only the last component is created: its parent ($XDG_RUNTIME_DIR,
         * /run) belongs to the system. A per-user bus directory is private;
         * the system bus directory is reachable by everyone.
         */
        if (mkdir(dir, geteuid() == 0 ? 0755 : 0700) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/*
 * Whether @path is a socket file nobody listens on, left by a broker that
 * crashed: only such a file may be removed to make room. Anything else at
 * the path (a regular file, a directory, a live bus) is someone's and stays.
 *
 * Return: 0 if stale, -EADDRINUSE if a broker answers, -EEXIST if it is not
 * a socket, or another negative errno (connect() failed for another reason:
 * not ours to judge, so not ours to remove).
 */
static int address_check_stale(const char *path, const struct sockaddr_un *sa, socklen_t len) {
        _cleanup_(closep) int fd = -1;
        struct stat st;

        /* lstat(): a symlink to a socket is a symlink, and not ours to remove either. */
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;    /* gone meanwhile: bind again */
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *)sa, len) == 0 || errno == EAGAIN)
                return -EADDRINUSE;
        /* ECONNREFUSED is the kernel's word for "a socket file, nobody listening". */
        return errno == ECONNREFUSED ? 0 : -errno;
}

/**
 * listener_open() - create the bus socket at @path
 * @b:          the broker
 * @path:       filesystem path
 *
 * A file already at @path is replaced only if it is a socket nobody
 * listens on (a crashed broker's); anything else is left alone and logged.
 *
 * Return: 0, -EADDRINUSE if a live broker answers at @path, -EEXIST if
 * something other than a socket is there, or another negative errno.
 */
int listener_open(Broker *b, const char *path) {
        _cleanup_(closep) int fd = -1;
        struct sockaddr_un sa;
        socklen_t len;
        struct stat st;
        int r;

        r = address_to_sockaddr(path, &sa, &len);
        if (r < 0)
                return r;
        r = make_parent_dir(path);
        if (r < 0)
                return r;

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;

        if (bind(fd, (struct sockaddr *)&sa, len) < 0) {
                if (errno != EADDRINUSE)
                        return -errno;
                r = address_check_stale(path, &sa, len);
                if (r == -EEXIST)
                        broker_log(b, LOG_ERR, "%s exists and is not a socket, not replacing it", path);
                else if (r < 0 && r != -EADDRINUSE)
                        broker_log(b, LOG_ERR, "%s exists and cannot be checked for a live broker (%s), not replacing it",
                                   path, strerror(-r));
                if (r < 0)
                        return r;
                broker_log(b, LOG_INFO, "replacing stale socket %s", path);
                if (unlink(path) < 0 && errno != ENOENT)
                        return -errno;
                if (bind(fd, (struct sockaddr *)&sa, len) < 0)
                        return -errno;
        }

        /*
         * The system bus is open to every local user (policy decides what they
         * may do); a per-user bus sits in a private directory as well.
         */
        if (chmod(path, geteuid() == 0 ? 0666 : 0600) < 0 || stat(path, &st) < 0 ||
            listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                unlink(path);
                return r;
        }

        b->listener.path = strdup(path);
        if (!b->listener.path) {
                unlink(path);
                return -ENOMEM;
        }
        b->listener.dev = st.st_dev;
        b->listener.ino = st.st_ino;

        r = loop_source_add(&b->loop, &b->listener.source, LOOP_KIND_LISTENER, fd, EPOLLIN);
        if (r < 0) {
                unlink(path);
                return r;
        }
        b->listener.fd = TAKE_FD(fd);
        reserve_open(&b->listener);
        return 0;
}

/**
 * listener_adopt() - use an already listening socket (socket activation)
 * @b:          the broker
 * @fd:         a listening AF_UNIX SOCK_SEQPACKET socket; adopted on success
 *
 * The socket file belongs to whoever made it and is never removed by us.
 *
 * Return: 0 or negative errno.
 */
int listener_adopt(Broker *b, int fd) {
        int flags, r;

        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        r = loop_source_add(&b->loop, &b->listener.source, LOOP_KIND_LISTENER, fd, EPOLLIN);
        if (r < 0)
                return r;
        b->listener.fd = fd;
        reserve_open(&b->listener);
        return 0;
}

/**
 * listener_close() - stop accepting; remove the socket file if it is ours
 */
void listener_close(Broker *b) {
        Listener *l = &b->listener;
        struct stat st;

        loop_source_remove(&l->source);
        l->fd = plx_close(l->fd);
        l->reserve_fd = plx_close(l->reserve_fd);
        if (l->path) {
                /* Only if it is still our socket, not a successor's. */
                if (stat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
                        unlink(l->path);
                free(l->path);
                l->path = NULL;
        }
}

static void refuse(Broker *b, int fd, const char *reason) {
        Plexus__Header h = PLEXUS__HEADER__INIT;
        size_t len = strlen(reason);
        uint8_t buf[256];
        size_t n;

        assert(len < 128);
        /* Best effort, nonblocking: a refused client is told why, then closed. */
        h.kind = PLEXUS__KIND__KIND_ERROR;
        h.serial = 1;
        h.sender = (char *)BROKER_NAME;
        h.error_name = (char *)ERROR_LIMITS_EXCEEDED;
        n = frame_header_pack(&h, buf + FRAME_PREFIX_SIZE, sizeof(buf) - FRAME_PREFIX_SIZE - len);
        if (n > 0) {
                frame_prefix(buf, (uint32_t)n);
                memcpy(buf + FRAME_PREFIX_SIZE + n, reason, len);
                (void)!send(fd, buf, FRAME_PREFIX_SIZE + n + len, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        /*
         * A client that sent its HELLO already would otherwise get
         * ECONNRESET ahead of our frame (its data unread at our close):
         * discard what is there (fds with it are closed by the kernel).
         */
        for (int i = 0; i < 4; i++)
                if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC) <= 0)
                        break;
        plx_close(fd);
}

/*
 * Out of fds (EMFILE, ENFILE): connections wait in the backlog, where their
 * clients would hang on a connect() that succeeded, and the level-triggered
 * listener would wake us for them again and again. Give up the reserve fd,
 * accept one connection with it, tell its client and close it at once; then
 * take the reserve back. (accept() reports EMFILE before it looks at the
 * backlog, so there may be no connection at all.)
 *
 * Return: true to accept on, false to stop for this round (the backlog is
 * empty, or even this failed and the listener is paused until a peer goes).
 */
static bool accept_and_close(Broker *b, int error) {
        Listener *l = &b->listener;
        int fd, k = 0;

        reserve_open(l);        /* lost if it could not be reopened; a peer may have freed an fd since */
        if (l->reserve_fd >= 0) {
                l->reserve_fd = plx_close(l->reserve_fd);
                fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                        k = errno;
                else
                        refuse(b, fd, "broker out of file descriptors");
                reserve_open(l);
                if (fd < 0 && k == EAGAIN) {
                        loop_source_clear(&l->source, EPOLLIN);
                        return false;
                }
                if (fd >= 0) {
                        b->stats.n_refused_no_fds++;
                        /* Rate-limited: a flood of these is what this is for. */
                        if (log_limit_pass(&l->log_limit, &b->log, now_usec()))
                                broker_log(b, LOG_WARNING, "accept: %s (%" PRIu64 " fds queued for clients), "
                                           "closing new connections", strerror(error),
                                           b->users.total[USER_SLOT_FDS]);
                }
                if (l->reserve_fd >= 0 && (fd >= 0 || k == EINTR || k == ECONNABORTED))
                        return true;
        }
        /* No reserve to give up: wait for a peer to free an fd (and with it the reserve). */
        broker_log(b, LOG_WARNING, "accept: %s, no fd in reserve, pausing until a client leaves",
                   strerror(error));
        l->paused = true;
        loop_source_deselect(&l->source, EPOLLIN);
        return false;
}

/* peer_new() refused the connection for a limit of its uid, or on connections before HELLO. */
static void refuse_quota(Broker *b, int fd, int reason) {
        Listener *l = &b->listener;
        struct ucred cred = {};
        socklen_t len = sizeof(cred);
        const char *what;

        (void)getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
        switch (reason) {
        case PEER_E_USER_CLIENTS:
                what = "too many connections of this user";
                b->stats.n_refused_user_clients++;
                break;
        case PEER_E_UNAUTH_USER:
                what = "too many connections of this user in the handshake";
                b->stats.n_refused_unauthenticated++;
                break;
        default:
                what = "too many connections in the handshake";
                b->stats.n_refused_unauthenticated++;
                break;
        }
        /* One line per burst: a flood of them is what these limits are for. */
        if (log_limit_pass(&l->log_limit, &b->log, now_usec()))
                broker_log(b, LOG_NOTICE, "refusing a connection of uid %u (pid %d): %s",
                           (unsigned)cred.uid, (int)cred.pid, what);
        refuse(b, fd, what);
}

/**
 * listener_dispatch() - accept pending connections
 * @b:          the broker
 */
void listener_dispatch(Broker *b) {
        Listener *l = &b->listener;

        for (int i = 0; i < LISTENER_ACCEPT_BATCH; i++) {
                Peer *p;
                int fd, r;

                fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        switch (errno) {
                        case EAGAIN:
                                loop_source_clear(&l->source, EPOLLIN);
                                return;
                        case EINTR:
                        case ECONNABORTED:
                                continue;
                        case EMFILE:
                        case ENFILE:
                                if (accept_and_close(b, errno))
                                        continue;
                                return;
                        case ENOBUFS:
                        case ENOMEM:
                                /*
                                 * Connections wait in the backlog; the cached
                                 * EPOLLIN brings us back once a peer goes.
                                 */
                                broker_log(b, LOG_WARNING, "accept: %m, pausing until a client leaves");
                                l->paused = true;
                                loop_source_deselect(&l->source, EPOLLIN);
                                return;
                        default:
                                broker_log(b, LOG_WARNING, "accept: %m, ignoring");
                                return;
                        }
                }

                if (b->n_peers >= b->config.max_clients) {
                        refuse(b, fd, "too many clients");
                        continue;
                }

                r = peer_new(&p, b, fd);
                if (r < 0) {
                        broker_log(b, LOG_WARNING, "cannot set up client: %s, dropping it", strerror(-r));
                        plx_close(fd);
                        continue;
                } else if (r > 0) {
                        refuse_quota(b, fd, r);
                        continue;
                }

                /*
                 * Clients send HELLO right after connect(), so it is usually
                 * here already: handle it now, so that a burst of connections
                 * of one uid in one accept batch does not count against its
                 * limit of connections before HELLO all at once.
                 */
                loop_source_presume(&p->source, EPOLLIN);
                peer_dispatch(p);
        }
}
