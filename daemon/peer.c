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
 * peer_release_pidfd() - close @p's pidfd if it can be opened again later
 *
 * With SO_PEERPIDFD the socket names the connecting process for as long as
 * it lives, so the pidfd need not be held: an idle client then costs the
 * broker one descriptor, not two. Without it, the pidfd opened at accept is
 * all that pins the process, and it stays.
 */
void peer_release_pidfd(Peer *p) {
        if (p->broker->peer_pidfd_support > 0 && p->fd >= 0)
                p->pidfd = plx_close(p->pidfd);
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
        list_init(&p->batch_link);
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
        peer_drop_batch(p);
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
        peer_flush_batch(p);
        if (p->state == PEER_STATE_DEAD)
                return;
        if (queue_is_empty(&p->queue)) {
                peer_hangup(p);
                return;
        }
        if (timer_arm(&b->timers, &p->timer,
                      now_usec() + (uint64_t)b->config.hello_timeout_ms * 1000u) < 0)
                peer_hangup(p);
}
