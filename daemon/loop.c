/*
 * Edge-triggered epoll with cached readiness.
 *
 * Why edge-triggered: the broker reads a bounded batch from each peer per
 * round for fairness and stops reading a peer whose outgoing queue is full.
 * With level-triggered epoll both would need an epoll_ctl() per change of
 * interest, on the hot path; with edge-triggered epoll every fd is
 * registered once for everything, the kernel reports each edge, and interest
 * is a bit in userspace. The price is that readiness must be remembered:
 * a source stays on the ready list until a syscall reports EAGAIN.
 *
 * Dispatch order: loop_poll() hands out the ready list of this round; the
 * caller moves each source back onto loop->ready before dispatching it, so
 * a callback that hits EAGAIN (loop_source_clear()) or frees its source
 * (loop_source_remove()) takes it off again, and may remove any other
 * source, including ones still waiting in this round.
 */

#include <errno.h>
#include <unistd.h>

#include "loop.h"
#include "util.h"

#define LOOP_EVENTS_MAX 64

/**
 * loop_init() - create the epoll instance
 * @loop:       a LOOP_NULL loop
 *
 * Return: 0 or negative errno.
 */
int loop_init(Loop *loop) {
        loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (loop->epoll_fd < 0)
                return -errno;
        list_init(&loop->ready);
        return 0;
}

/**
 * loop_deinit() - close the epoll instance
 * @loop:       the loop; all sources must have been removed
 */
void loop_deinit(Loop *loop) {
        loop->epoll_fd = plx_close(loop->epoll_fd);
}

static void source_update(LoopSource *s) {
        if (s->events & s->mask) {
                if (!list_is_linked(&s->ready_link))
                        list_append(&s->loop->ready, &s->ready_link);
        } else {
                list_unlink(&s->ready_link);
        }
}

/**
 * loop_source_add() - register @fd in @loop for all events, edge-triggered
 * @loop:       the loop
 * @s:          the owner's embedded source
 * @kind:       what the owner is, for dispatch
 * @fd:         borrowed; must outlive the registration
 * @mask:       initial interest
 *
 * Return: 0 or negative errno.
 */
int loop_source_add(Loop *loop, LoopSource *s, LoopKind kind, int fd, uint32_t mask) {
        struct epoll_event ev = {
                .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                .data.ptr = s,
        };

        if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
                return -errno;

        s->kind = kind;
        s->fd = fd;
        s->mask = mask;
        s->events = 0;
        s->loop = loop;
        list_init(&s->ready_link);
        return 0;
}

/**
 * loop_source_remove() - unregister a source; no-op if not registered
 * @s:          the source
 *
 * Must be called before the fd is closed: a closed fd that is still
 * referenced by a dup() (e.g. an fd in flight) would stay in the epoll set
 * and keep reporting events for a freed source.
 */
void loop_source_remove(LoopSource *s) {
        if (!s->loop)
                return;
        epoll_ctl(s->loop->epoll_fd, EPOLL_CTL_DEL, s->fd, NULL);
        list_unlink(&s->ready_link);
        s->loop = NULL;
        s->fd = -1;
        s->events = 0;
}

/**
 * loop_source_select() - add interest in @mask
 */
void loop_source_select(LoopSource *s, uint32_t mask) {
        s->mask |= mask;
        if (s->loop)
                source_update(s);
}

/**
 * loop_source_deselect() - drop interest in @mask; cached events are kept
 */
void loop_source_deselect(LoopSource *s, uint32_t mask) {
        s->mask &= ~mask;
        if (s->loop)
                source_update(s);
}

/**
 * loop_source_clear() - forget cached @events, after EAGAIN
 */
void loop_source_clear(LoopSource *s, uint32_t events) {
        s->events &= ~events;
        if (s->loop)
                source_update(s);
}

/**
 * loop_source_presume() - treat @s as having @events, before epoll says so
 *
 * For a fresh fd that is likely readable already: its owner may try it at
 * once; EAGAIN clears the presumption as usual.
 */
void loop_source_presume(LoopSource *s, uint32_t events) {
        s->events |= events;
        if (s->loop)
                source_update(s);
}

/**
 * loop_poll() - wait for events and hand out this round's ready sources
 * @loop:       the loop
 * @ret_ready:  an empty list; receives the ready sources
 *
 * Sleeps only when nothing is ready already. Hang-ups and errors are folded
 * into EPOLLIN|EPOLLOUT so that the next read or write observes them.
 *
 * Return: 0 or negative errno (EINTR is not an error).
 */
int loop_poll(Loop *loop, List *ret_ready) {
        struct epoll_event evs[LOOP_EVENTS_MAX];
        int n;

        n = epoll_wait(loop->epoll_fd, evs, LOOP_EVENTS_MAX, list_is_empty(&loop->ready) ? -1 : 0);
        if (n < 0) {
                if (errno != EINTR)
                        return -errno;
                n = 0;
        }

        for (int i = 0; i < n; i++) {
                LoopSource *s = evs[i].data.ptr;
                uint32_t e = evs[i].events;

                if (e & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))
                        e |= EPOLLIN | EPOLLOUT;
                s->events |= e;
                source_update(s);
        }

        list_splice(ret_ready, &loop->ready);
        return 0;
}
