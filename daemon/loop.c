/*
 * Edge-triggered epoll with cached readiness.
 *
 * Why edge-triggered: the broker reads a bounded batch from each peer per
 * round for fairness and stops reading a peer whose outgoing queue is full.
 * With level-triggered epoll both would need an epoll_ctl() per change of
 * interest, on the hot path; with edge-triggered epoll every fd is
 * registered once for input, the kernel reports each edge, and interest in
 * input is a bit in userspace. The price is that readiness must be
 * remembered: a source stays on the ready list until a syscall reports
 * EAGAIN.
 *
 * Output is the exception: EPOLLOUT is registered only while the owner asks
 * for it (a peer with frames queued, which is rare). A socket registered for
 * EPOLLOUT reports an edge each time its peer reads a frame, and each such
 * edge wakes the broker for nothing and, on a busy CPU, preempts the reader
 * that caused it. Adding or dropping EPOLLOUT costs one epoll_ctl(), paid
 * only when a queue starts or stops being used; the kernel reports the
 * current state on EPOLL_CTL_MOD, so no edge is missed in between.
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
/* What @s is registered for: always input, output only while wanted. */
static uint32_t source_epoll_events(uint32_t mask) {
        return EPOLLIN | EPOLLRDHUP | EPOLLET | (mask & EPOLLOUT);
}

int loop_source_add(Loop *loop, LoopSource *s, LoopKind kind, int fd, uint32_t mask) {
        struct epoll_event ev = {
                .events = source_epoll_events(mask),
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

/*
 * Register @s for EPOLLOUT or not, after its mask changed. Without the
 * registration no edge arrives, so a cached EPOLLOUT would go stale: it is
 * dropped, and EPOLL_CTL_MOD reports the current state when it comes back.
 * A failure (ENOMEM) leaves @s registered for what it was.
 */
static void source_register_output(LoopSource *s, uint32_t old_mask) {
        struct epoll_event ev = {
                .events = source_epoll_events(s->mask),
                .data.ptr = s,
        };

        if ((old_mask ^ s->mask) & EPOLLOUT) {
                if (!(s->mask & EPOLLOUT))
                        s->events &= ~EPOLLOUT;
                if (epoll_ctl(s->loop->epoll_fd, EPOLL_CTL_MOD, s->fd, &ev) < 0 && (s->mask & EPOLLOUT))
                        /* Not told of the edge: try writing in the next round, EAGAIN clears it. */
                        s->events |= EPOLLOUT;
        }
}

/**
 * loop_source_select() - add interest in @mask
 */
void loop_source_select(LoopSource *s, uint32_t mask) {
        uint32_t old = s->mask;

        s->mask |= mask;
        if (s->loop) {
                source_register_output(s, old);
                source_update(s);
        }
}

/**
 * loop_source_deselect() - drop interest in @mask; cached input events are kept
 */
void loop_source_deselect(LoopSource *s, uint32_t mask) {
        uint32_t old = s->mask;

        s->mask &= ~mask;
        if (s->loop) {
                source_register_output(s, old);
                source_update(s);
        }
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
