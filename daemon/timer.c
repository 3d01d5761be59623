/*
 * One timerfd for every deadline of the broker.
 *
 * The heap is a binary min-heap of Timer pointers; each timer records its
 * index so that disarming is O(log n) without a search. After any change the
 * owner of the queue calls timer_queue_rearm(), which touches the timerfd
 * only when the earliest deadline moves earlier: arming 100,000 call
 * timeouts in a row costs one timerfd_settime(), and so does a steady
 * stream of calls answered in time.
 */

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/timerfd.h>

#include "timer.h"
#include "util.h"

/**
 * timer_init() - prepare an embedded timer
 * @t:          the timer
 * @fn:         called once when the deadline passes; the timer is disarmed
 *              by then and may be re-armed or freed from @fn
 */
void timer_init(Timer *t, TimerFn fn) {
        t->deadline = 0;
        t->index = TIMER_UNARMED;
        t->fn = fn;
}

/**
 * timer_queue_init() - create the timerfd and register it
 * @q:          a TIMER_QUEUE_NULL queue
 * @loop:       the loop to register in
 *
 * Return: 0 or negative errno.
 */
int timer_queue_init(TimerQueue *q, Loop *loop) {
        int r;

        q->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (q->fd < 0)
                return -errno;

        r = loop_source_add(loop, &q->source, LOOP_KIND_TIMER, q->fd, EPOLLIN);
        if (r < 0) {
                q->fd = plx_close(q->fd);
                return r;
        }
        return 0;
}

/**
 * timer_queue_deinit() - release the timerfd and the heap
 * @q:          the queue; timers still armed are left armed-looking but
 *              must not be used with @q again
 */
void timer_queue_deinit(TimerQueue *q) {
        for (size_t i = 0; i < q->n_heap; i++)
                q->heap[i]->index = TIMER_UNARMED;
        free(q->heap);
        q->heap = NULL;
        q->n_heap = q->n_alloc = 0;
        loop_source_remove(&q->source);
        q->fd = plx_close(q->fd);
}

static void heap_set(TimerQueue *q, size_t i, Timer *t) {
        q->heap[i] = t;
        t->index = i;
}

static void heap_up(TimerQueue *q, size_t i) {
        Timer *t = q->heap[i];

        while (i > 0) {
                size_t parent = (i - 1) / 2;

                if (q->heap[parent]->deadline <= t->deadline)
                        break;
                heap_set(q, i, q->heap[parent]);
                i = parent;
        }
        heap_set(q, i, t);
}

static void heap_down(TimerQueue *q, size_t i) {
        Timer *t = q->heap[i];

        for (;;) {
                size_t c = 2 * i + 1;

                if (c >= q->n_heap)
                        break;
                if (c + 1 < q->n_heap && q->heap[c + 1]->deadline < q->heap[c]->deadline)
                        c++;
                if (t->deadline <= q->heap[c]->deadline)
                        break;
                heap_set(q, i, q->heap[c]);
                i = c;
        }
        heap_set(q, i, t);
}

/**
 * timer_arm() - set or move the deadline of @t
 * @q:          the queue
 * @t:          the timer
 * @deadline:   monotonic usec
 *
 * Return: 0, or -ENOMEM if the heap could not grow (the timer is then
 * unarmed).
 */
int timer_arm(TimerQueue *q, Timer *t, uint64_t deadline) {
        if (timer_is_armed(t)) {
                uint64_t old = t->deadline;

                t->deadline = deadline;
                if (deadline < old)
                        heap_up(q, t->index);
                else
                        heap_down(q, t->index);
                return 0;
        }

        if (q->n_heap == q->n_alloc) {
                size_t n = q->n_alloc ? q->n_alloc * 2 : 64;
                Timer **h = reallocarray(q->heap, n, sizeof(*h));

                if (!h)
                        return -ENOMEM;
                q->heap = h;
                q->n_alloc = n;
        }

        t->deadline = deadline;
        heap_set(q, q->n_heap++, t);
        heap_up(q, t->index);
        return 0;
}

/**
 * timer_disarm() - take @t out of the queue; no-op when not armed
 */
void timer_disarm(TimerQueue *q, Timer *t) {
        size_t i = t->index;
        Timer *last;

        if (!timer_is_armed(t))
                return;

        assert(i < q->n_heap && q->heap[i] == t);
        t->index = TIMER_UNARMED;
        last = q->heap[--q->n_heap];
        if (last == t)
                return;

        heap_set(q, i, last);
        if (i > 0 && q->heap[(i - 1) / 2]->deadline > last->deadline)
                heap_up(q, i);
        else
                heap_down(q, i);
}

/**
 * timer_queue_peek() - the timer with the earliest deadline
 *
 * Return: the timer or NULL.
 */
Timer *timer_queue_peek(TimerQueue *q) {
        return q->n_heap ? q->heap[0] : NULL;
}

/**
 * timer_queue_rearm() - point the timerfd at the earliest deadline
 * @q:          the queue
 *
 * Return: 0 or negative errno.
 */
int timer_queue_rearm(TimerQueue *q) {
        Timer *t = timer_queue_peek(q);
        struct itimerspec its = {};
        uint64_t want = t ? MAX(t->deadline, 1u) : 0;

        /*
         * Only ever move the timerfd earlier. When the earliest timer goes
         * (a call answered before its deadline, the usual case) the timerfd
         * stays set for the old deadline and fires once for nothing, at
         * which point timer_queue_dispatch() re-arms it for what is left.
         * Calls arm and disarm a timer each; this keeps both from costing a
         * timerfd_settime() per call.
         */
        if (q->fd < 0 || !want || (q->armed && q->armed <= want))
                return 0;

        /* An all-zero it_value disarms; deadline 0 is mapped to 1 usec. */
        its.it_value.tv_sec = (time_t)(want / 1000000u);
        its.it_value.tv_nsec = (long)(want % 1000000u) * 1000;
        if (timerfd_settime(q->fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
                return -errno;
        q->armed = want;
        return 0;
}

/**
 * timer_queue_dispatch() - run the callbacks of every expired timer
 * @q:          the queue, after its source reported EPOLLIN
 *
 * Return: 0 or negative errno.
 */
int timer_queue_dispatch(TimerQueue *q) {
        uint64_t expirations, now;
        Timer *t;

        if (read(q->fd, &expirations, sizeof(expirations)) < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        return -errno;
        }
        /* The timerfd fired or was consumed: its edge is gone either way. */
        loop_source_clear(&q->source, EPOLLIN);
        q->armed = 0;

        now = now_usec();
        while ((t = timer_queue_peek(q)) && t->deadline <= now) {
                timer_disarm(q, t);
                t->fn(t, now);
        }

        return timer_queue_rearm(q);
}
