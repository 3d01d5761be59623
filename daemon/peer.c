/*
 * Peers: accepting, reading, queueing and writing frames for one client.
 *
 * Writing: a frame for a peer whose queue is empty is sent at once with one
 * sendmsg() (prefix, shared header, delivery field, payload as four iovecs:
 * the payload is never copied on this path). Only when the socket says
 * EAGAIN, or frames are already waiting, is the frame copied into a Message
 * and queued; EPOLLOUT then drains the queue in order. SOCK_SEQPACKET sends
 * are all-or-nothing, so there are no partial frames to track.
 *
 * Reading: at most PEER_READ_BATCH frames per round. A peer whose own queue
 * is full is not read from until it drains below half: whatever it sends
 * next could make the broker queue more for it (errors, replies), and this
 * is what bounds those "forced" frames (see queue.h).
 */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fdpass.h"
#include "monitor.h"
#include "peer.h"
#include "pending.h"
#include "router.h"
#include "util.h"

static void peer_timer_fired(Timer *t, uint64_t now) {
        Peer *p = container_of(t, Peer, timer);

        if (p->state == PEER_STATE_HELLO)
                peer_log(p, LOG_NOTICE, "no HELLO within %u ms, disconnecting",
                         p->broker->config.hello_timeout_ms);
        else if (p->state == PEER_STATE_CLOSING)
                peer_log(p, LOG_DEBUG, "did not take its last frames in time, disconnecting");
        peer_hangup(p);
}

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

static int socket_pidfd(int fd) {
        socklen_t len = sizeof(int);
        int pidfd = -1;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0 || pidfd < 0)
                return -1;
        return pidfd;
}

/*
 * A pidfd for the process that connected. SO_PEERPIDFD (Linux 6.5) refers to
 * exactly the process that called connect(), whenever it is asked: such a
 * kernel lets the broker open it only when needed, so that an idle client
 * costs one fd, not two. On older kernels pidfd_open() of the SO_PEERCRED
 * pid at accept is the fallback; it could, in the short window since
 * connect(), name a process that reused the pid of one that exited.
 */
static void peer_pin_process(Peer *p, int fd) {
        Broker *b = p->broker;

        if (b->peer_pidfd_support == 0) {
                int pidfd = socket_pidfd(fd);

                b->peer_pidfd_support = pidfd >= 0 ? 1 : -1;
                plx_close(pidfd);
        }
        if (b->peer_pidfd_support < 0 && p->cred.pid > 0) {
                p->pidfd = (int)syscall(SYS_pidfd_open, p->cred.pid, 0);
                if (p->pidfd < 0)
                        p->pidfd = -1;
        }
}

/**
 * peer_get_pidfd() - a pidfd of the process that connected @p
 *
 * Opened on first use where SO_PEERPIDFD exists (it names exactly the
 * connecting process, however late it is asked), else the one opened at
 * accept. Owned by @p.
 *
 * Return: the fd, or -1 if there is none.
 */
int peer_get_pidfd(Peer *p) {
        if (p->pidfd < 0 && p->broker->peer_pidfd_support > 0 && p->fd >= 0)
                p->pidfd = socket_pidfd(p->fd);
        return p->pidfd;
}

/**
 * peer_process_alive() - whether the process behind @p's credentials still runs
 *
 * As far as the pidfd can tell; without one, assumed alive.
 */
bool peer_process_alive(Peer *p) {
        struct pollfd pfd;

        (void)peer_get_pidfd(p);

        /* A pidfd becomes readable when its process exits. */
        pfd = (struct pollfd) { .fd = p->pidfd, .events = POLLIN };
        return p->pidfd < 0 || (poll(&pfd, 1, 0) == 0);
}

/**
 * peer_new() - set up a peer for an accepted connection
 * @ret:        the new peer, written on success
 * @b:          the broker
 * @fd:         the connected, nonblocking socket; adopted on success
 *
 * Return: 0; PEER_E_USER_CLIENTS, PEER_E_UNAUTH_USER or PEER_E_UNAUTH_TOTAL
 * when a limit on connections (see user.h) refuses it (@fd is left to the
 * caller then); or negative errno.
 */
int peer_new(Peer **ret, Broker *b, int fd) {
        _cleanup_(peer_freep) Peer *p = NULL;
        socklen_t len = sizeof(p->cred);
        int r;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;

        p->broker = b;
        p->fd = -1;
        p->pidfd = -1;
        p->source = (LoopSource) LOOP_SOURCE_NULL(p->source);
        p->state = PEER_STATE_HELLO;
        p->id = b->next_peer_id++;
        snprintf(p->unique_id, sizeof(p->unique_id), ":%" PRIu64, p->id);
        snprintf(p->description, sizeof(p->description), "?");
        list_init(&p->link);
        list_init(&p->subscriptions);
        list_init(&p->calls_out);
        list_init(&p->calls_in);
        list_init(&p->names);
        list_init(&p->transfers);
        queue_init(&p->queue, b->config.max_queue_frames, b->config.max_queue_bytes, b->config.max_queue_fds);
        timer_init(&p->timer, peer_timer_fired);
        p->connected_usec = now_usec();

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &p->cred, &len) < 0)
                return -errno;

        /*
         * Charged before anything else is set up, so that a uid that keeps
         * connecting past its share costs us as little as possible.
         */
        r = user_registry_ref_user(&b->users, &p->user, p->cred.uid);
        if (r < 0)
                return r;
        if (user_charge(p->user, USER_SLOT_CONNECTIONS, 1, false) > 0)
                return PEER_E_USER_CLIENTS;
        p->charged_connection = true;
        r = user_charge(p->user, USER_SLOT_UNAUTH, 1, false);
        if (r > 0)
                return r == USER_E_QUOTA ? PEER_E_UNAUTH_USER : PEER_E_UNAUTH_TOTAL;
        p->charged_unauth = true;
        p->queue.user = p->user;

        peer_pin_process(p, fd);

        r = timer_arm(&b->timers, &p->timer,
                      p->connected_usec + (uint64_t)b->config.hello_timeout_ms * 1000u);
        if (r < 0)
                return r;

        r = loop_source_add(&b->loop, &p->source, LOOP_KIND_PEER, fd, EPOLLIN);
        if (r < 0)
                return r;

        /* Last fallible step done: adopt the socket. */
        p->fd = fd;
        list_append(&b->peers, &p->link);
        b->n_peers++;
        if (b->n_peers > b->stats.n_peers_peak)
                b->stats.n_peers_peak = b->n_peers;

        *ret = TAKE_PTR(p);
        return 0;
}

/**
 * peer_free() - release a peer and everything it owns
 * @p:          the peer or NULL; may be half-constructed
 *
 * Callers waiting on @p get a Disconnected error, which is why this must run
 * outside of routing (the broker frees dead peers at the end of a round).
 *
 * Return: NULL.
 */
Peer *peer_free(Peer *p) {
        Broker *b;

        if (!p)
                return NULL;
        b = p->broker;

        router_peer_gone(b, p);
        monitor_free(b, p);
        assert(list_is_empty(&p->calls_in) && list_is_empty(&p->calls_out));
        assert(list_is_empty(&p->subscriptions) && list_is_empty(&p->names));

        timer_disarm(&b->timers, &p->timer);
        if (p->addressable)
                htable_remove(&b->peers_by_id, &p->id_node);
        if (list_is_linked(&p->link)) {
                list_unlink(&p->link);
                b->n_peers--;
        }
        queue_deinit(&p->queue);
        if (p->charged_unauth)
                user_refund(p->user, USER_SLOT_UNAUTH, 1);
        if (p->charged_connection)
                user_refund(p->user, USER_SLOT_CONNECTIONS, 1);
        p->user = user_unref(p->user);
        loop_source_remove(&p->source);
        p->fd = plx_close(p->fd);
        p->pidfd = plx_close(p->pidfd);
        free(p->cmdline);
        free(p->gids);
        free(p);

        broker_listener_resume(b);
        return NULL;
}

/**
 * peer_comm() - the client process's name, for log lines
 *
 * Read from /proc on first use only: a log line, or its HELLO at the latest
 * (introspect_capture()), so that a connection that never gets that far
 * costs no file access; a process that is gone by then shows as "?".
 *
 * Return: a string owned by @p.
 */
const char *peer_comm(Peer *p) {
        char path[64];
        ssize_t n = -1;
        int fd;

        if (p->comm[0])
                return p->comm;
        /* /proc/PID of an exited client may already be someone else's. */
        if (!peer_process_alive(p)) {
                snprintf(p->comm, sizeof(p->comm), "?");
                return p->comm;
        }

        snprintf(path, sizeof(path), "/proc/%d/comm", (int)p->cred.pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
                n = read(fd, p->comm, sizeof(p->comm) - 1);
                close(fd);
        }
        if (n <= 0)
                n = snprintf(p->comm, sizeof(p->comm), "?");
        p->comm[n] = 0;
        p->comm[strcspn(p->comm, "\n")] = 0;
        return p->comm;
}

/**
 * peer_set_running() - the handshake is done: make the peer addressable
 */
void peer_set_running(Peer *p) {
        Broker *b = p->broker;

        timer_disarm(&b->timers, &p->timer);
        if (p->charged_unauth) {
                user_refund(p->user, USER_SLOT_UNAUTH, 1);
                p->charged_unauth = false;
        }
        /* Cannot fail for want of memory: a full table only gets slower. */
        if (htable_insert(&b->peers_by_id, &p->id_node, htable_hash_u64(&b->peers_by_id, p->id)) == 0)
                p->addressable = true;
        p->state = PEER_STATE_RUNNING;
}

/**
 * peer_find() - the running peer with @unique_id
 *
 * Return: the peer, or NULL if none (or @unique_id is not of the ":N" form).
 */
Peer *peer_find(Broker *b, const char *unique_id) {
        const char *s = unique_id;
        uint64_t id = 0;

        if (s[0] != ':' || s[1] < '1' || s[1] > '9')
                return NULL;
        for (s++; *s; s++) {
                if (*s < '0' || *s > '9' || id > (UINT64_MAX - 9) / 10)
                        return NULL;
                id = id * 10 + (uint64_t)(*s - '0');
        }
        return peer_find_id(b, id);
}

/**
 * peer_find_id() - the running peer with numeric id @id, or NULL
 */
Peer *peer_find_id(Broker *b, uint64_t id) {
        htable_for_each_hash(n, &b->peers_by_id, htable_hash_u64(&b->peers_by_id, id)) {
                Peer *p = container_of(n, Peer, id_node);

                if (p->id == id)
                        return peer_is_alive(p) ? p : NULL;
        }
        return NULL;
}

/**
 * peer_hangup() - the connection is over; free @p after this round
 * @p:          the peer
 *
 * Safe in the middle of routing: the socket leaves the loop now, the rest
 * happens in peer_free().
 */
void peer_hangup(Peer *p) {
        Broker *b = p->broker;

        if (p->state == PEER_STATE_DEAD)
                return;
        p->state = PEER_STATE_DEAD;
        timer_disarm(&b->timers, &p->timer);
        loop_source_remove(&p->source);
        list_unlink(&p->link);
        list_append(&b->dead_peers, &p->link);
}

/**
 * peer_stop_reading() - read nothing more from @p (shutdown, close)
 */
void peer_stop_reading(Peer *p) {
        loop_source_deselect(&p->source, EPOLLIN);
}

/**
 * peer_close() - stop reading, flush what is queued, then hang up
 * @p:          the peer
 *
 * Used after a protocol error: the error frame is queued first. A peer that
 * does not take its frames within the HELLO timeout is cut off.
 */
void peer_close(Peer *p) {
        Broker *b = p->broker;

        if (!peer_is_alive(p))
                return;
        p->state = PEER_STATE_CLOSING;
        peer_stop_reading(p);
        /*
         * It will serve no more calls: its names go to the next in their
         * queues and its callers get their errors now, not when the last
         * frames have been flushed.
         */
        router_peer_closing(b, p);
        if (queue_is_empty(&p->queue)) {
                peer_hangup(p);
                return;
        }
        if (timer_arm(&b->timers, &p->timer,
                      now_usec() + (uint64_t)b->config.hello_timeout_ms * 1000u) < 0)
                peer_hangup(p);
}

static int peer_sendmsg(Peer *p, const uint8_t *header, size_t header_len,
                        const uint8_t *stamp, size_t stamp_len,
                        const uint8_t *payload, size_t payload_len,
                        const int *fds, size_t n_fds, uint64_t delivery) {
        FdControl control;
        uint8_t prefix[FRAME_PREFIX_SIZE], field[24];
        size_t field_len = frame_varint_field(field, FRAME_FIELD_DELIVERY, delivery);
        struct iovec iov[5] = {
                { .iov_base = prefix, .iov_len = sizeof(prefix) },
                { .iov_base = (void *)header, .iov_len = header_len },
                { .iov_base = (void *)stamp, .iov_len = stamp_len },
                { .iov_base = field, .iov_len = field_len },
                { .iov_base = (void *)payload, .iov_len = payload_len },
        };
        struct msghdr mh = {
                .msg_iov = iov,
                .msg_iovlen = payload_len ? 5 : 4,
        };
        ssize_t n;

        fdpass_attach(&mh, &control, fds, n_fds);
        frame_prefix(prefix, (uint32_t)(header_len + stamp_len + field_len));
        n = sendmsg(p->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0)
                return -errno;

        p->broker->stats.n_fds_passed += n_fds;
        p->n_frames_out++;
        p->n_bytes_out += (uint64_t)n;
        return 0;
}

static void peer_update_backpressure(Peer *p) {
        if (!p->reading_paused && queue_is_full(&p->queue)) {
                p->reading_paused = true;
                loop_source_deselect(&p->source, EPOLLIN);
        } else if (p->reading_paused && p->queue.n_entries <= p->queue.max_entries / 2 &&
                   p->queue.n_bytes <= p->queue.max_bytes / 2) {
                p->reading_paused = false;
                if (peer_is_alive(p) && p->broker->state == BROKER_STATE_RUNNING)
                        loop_source_select(&p->source, EPOLLIN);
        }
}

/**
 * peer_send() - deliver a frame to @p, or queue it
 * @p:          the receiver
 * @f:          the frame; f->msg is created here if the frame must be queued
 * @force:      queue even beyond the limits (see queue.h for when)
 *
 * Every call takes one delivery number, whether or not the frame gets
 * through, so that the receiver can see a gap where it missed one.
 *
 * Return: 0 when sent or queued (or when @p is dead: callers are told by
 * router_peer_gone()), PEER_E_QUEUE_FULL or PEER_E_FDS when refused.
 */
int peer_send(Peer *p, OutFrame *f, bool force) {
        uint64_t delivery = ++p->n_delivered;
        size_t size;
        int r;

        if (p->state == PEER_STATE_DEAD)
                return 0;

        if (queue_is_empty(&p->queue)) {
                r = peer_sendmsg(p, f->header, f->header_len, f->stamp, f->stamp_len,
                                 f->payload, f->payload_len, f->fds, f->n_fds, delivery);
                if (r == 0)
                        return 0;
                /*
                 * The kernel limits fds in flight per user (RLIMIT_NOFILE): a
                 * receiver that does not read holds them. Refuse this frame,
                 * not the connection.
                 */
                if (r == -ETOOMANYREFS)
                        return PEER_E_FDS;
                if (r != -EAGAIN && r != -ENOBUFS) {
                        peer_log(p, LOG_DEBUG, "send failed: %s", strerror(-r));
                        peer_hangup(p);
                        return 0;
                }
                loop_source_clear(&p->source, EPOLLOUT);
        }

        size = FRAME_PREFIX_SIZE + f->header_len + f->stamp_len + 11 + f->payload_len;
        if (!force) {
                r = queue_room(&p->queue, size, f->n_fds);
                if (r == QUEUE_E_QUOTA) {
                        /* Its uid (or all uids) hold too much: refused like a full queue. */
                        p->broker->stats.n_user_quota++;
                        if (log_limit_pass(&p->broker->quota_log_limit, &p->broker->log, now_usec()))
                                peer_log(p, LOG_NOTICE, "uid %u has %" PRIu64 " bytes and %" PRIu64
                                         " fds queued (all clients: %" PRIu64 ", %" PRIu64 "), refusing a frame",
                                         (unsigned)p->cred.uid, p->user->used[USER_SLOT_BYTES],
                                         p->user->used[USER_SLOT_FDS],
                                         p->broker->users.total[USER_SLOT_BYTES],
                                         p->broker->users.total[USER_SLOT_FDS]);
                }
                if (r > 0)
                        return PEER_E_QUEUE_FULL;
        }

        if (!f->msg) {
                r = message_new(&f->msg, f->header, f->header_len, f->stamp, f->stamp_len,
                                f->payload, f->payload_len, f->fds, f->n_fds);
                if (r < 0)
                        goto oom;
                f->msg->origin_id = f->origin_id;
                f->msg->origin_serial = f->origin_serial;
        }
        r = queue_push(&p->queue, f->msg, delivery, size, force);
        if (r > 0)
                return PEER_E_QUEUE_FULL;
        if (r < 0)
                goto oom;

        loop_source_select(&p->source, EPOLLOUT);
        peer_update_backpressure(p);
        return 0;

oom:
        if (!force)
                return PEER_E_QUEUE_FULL;
        /* A frame we must not drop cannot be kept: end the connection instead. */
        peer_log(p, LOG_WARNING, "out of memory queueing a frame, disconnecting");
        peer_hangup(p);
        return 0;
}

static void peer_flush(Peer *p) {
        QueueEntry *e;
        int r;

        while ((e = queue_peek(&p->queue))) {
                r = peer_sendmsg(p, message_header(e->msg), e->msg->header_len, NULL, 0,
                                 message_payload(e->msg), e->msg->payload_len,
                                 e->msg->fds, e->msg->n_fds, e->delivery);
                if (r == -EAGAIN || r == -ENOBUFS) {
                        loop_source_clear(&p->source, EPOLLOUT);
                        peer_update_backpressure(p);
                        return;
                }
                if (r == -ETOOMANYREFS) {
                        /* As in peer_send(): this frame goes, with word to its sender; the connection stays. */
                        router_frame_dropped(p->broker, p, e->msg);
                        queue_pop(&p->queue);
                        continue;
                }
                if (r < 0) {
                        peer_log(p, LOG_DEBUG, "send failed: %s", strerror(-r));
                        peer_hangup(p);
                        return;
                }
                queue_pop(&p->queue);
        }

        loop_source_deselect(&p->source, EPOLLOUT);
        peer_update_backpressure(p);
        if (p->state == PEER_STATE_CLOSING)
                peer_hangup(p);
        else
                monitor_drained(p->broker, p);
}

/*
 * recvmsg() returned 0: EOF, or an empty record. Linux does deliver
 * zero-length records on SOCK_SEQPACKET, with fds attached if the sender
 * wants, and they read exactly like EOF. A record is told apart by what
 * came with it, or else by the socket: at EOF the peer has shut down its
 * end, which poll() reports as POLLRDHUP.
 */
static bool peer_read_empty_record(Peer *p, const struct msghdr *mh, size_t n_fds) {
        struct pollfd pfd = { .fd = p->fd, .events = POLLIN | POLLRDHUP };

        if (n_fds > 0 || mh->msg_controllen > 0 || (mh->msg_flags & MSG_CTRUNC))
                return true;
        return poll(&pfd, 1, 0) >= 0 && !(pfd.revents & (POLLRDHUP | POLLHUP));
}

static void peer_read(Peer *p) {
        Broker *b = p->broker;
        /* Room for the kernel's maximum of 253 fds per message (SCM_MAX_FD). */
        FdControl control;
        int fds[FRAME_FDS_MAX];

        for (int i = 0; i < PEER_READ_BATCH; i++) {
                struct iovec iov = { .iov_base = b->rx_buf, .iov_len = FRAME_SIZE_MAX };
                struct msghdr mh = {
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = &control,
                        .msg_controllen = sizeof(control),
                };
                size_t n_fds;
                ssize_t n;

                if (!loop_source_is_ready(&p->source, EPOLLIN) || !peer_is_alive(p))
                        return;

                n = recvmsg(p->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                if (n < 0) {
                        if (errno == EAGAIN) {
                                loop_source_clear(&p->source, EPOLLIN);
                                return;
                        }
                        /*
                         * A client that closes with frames unread in its
                         * own socket makes ours report ECONNRESET once,
                         * ahead of the frames it sent before closing: read
                         * on, EOF comes after them.
                         */
                        if (errno == EINTR || errno == ECONNRESET)
                                continue;
                        peer_log(p, LOG_DEBUG, "receive failed: %m");
                        peer_hangup(p);
                        return;
                }
                /* Taken before anything else: from here on, every path closes them. */
                n_fds = fdpass_collect(&mh, fds, ELEMENTSOF(fds));

                if (n == 0 && !peer_read_empty_record(p, &mh, n_fds)) {
                        peer_hangup(p);
                        return;
                }
                p->n_frames_in++;
                p->n_bytes_in += (uint64_t)n;

                if (n == 0)
                        router_fail_peer(b, p, 0, ERROR_INVALID_FRAME, "empty frame");
                else if (mh.msg_flags & MSG_TRUNC)
                        router_fail_peer(b, p, 0, ERROR_FRAME_TOO_LARGE,
                                         "frame larger than %u bytes", FRAME_SEND_MAX);
                else
                        /*
                         * MSG_CTRUNC (fds lost on the way in: the broker is
                         * out of fds) is not the client's fault: the router
                         * refuses that one frame with an error.
                         */
                        router_handle_frame(b, p, b->rx_buf, (size_t)n, fds, n_fds,
                                            mh.msg_flags & MSG_CTRUNC);

                /* Receivers got kernel duplicates, queues their own: ours go now. */
                for (size_t k = 0; k < n_fds; k++)
                        close(fds[k]);
                if (!peer_is_alive(p))
                        return;
        }
}

/**
 * peer_dispatch() - handle the cached events of @p
 *
 * Return: 0.
 */
int peer_dispatch(Peer *p) {
        if (loop_source_is_ready(&p->source, EPOLLOUT))
                peer_flush(p);
        if (loop_source_is_ready(&p->source, EPOLLIN))
                peer_read(p);
        return 0;
}
