#pragma once

/*
 * Deadlines. All timers of a broker live in one min-heap keyed by their
 * CLOCK_MONOTONIC deadline, and one timerfd is armed for the earliest of
 * them. Timers are embedded in their owners (a peer, a pending call, the
 * broker) and cost no allocation to arm or disarm, except when the heap
 * array grows past its previous maximum.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"

typedef struct Timer Timer;
typedef struct TimerQueue TimerQueue;
typedef void (*TimerFn)(Timer *t, uint64_t now);

struct Timer {
        uint64_t deadline;      /* monotonic usec */
        size_t index;           /* position in the heap, TIMER_UNARMED when not in it */
        TimerFn fn;
};

#define TIMER_UNARMED SIZE_MAX
#define TIMER_NULL(x) { .index = TIMER_UNARMED }

struct TimerQueue {
        LoopSource source;
        int fd;
        Timer **heap;
        size_t n_heap;
        size_t n_alloc;
        uint64_t armed;         /* deadline the timerfd is set to, 0 for none */
};

#define TIMER_QUEUE_NULL(x) { .source = LOOP_SOURCE_NULL((x).source), .fd = -1 }

int timer_queue_init(TimerQueue *q, Loop *loop);
void timer_queue_deinit(TimerQueue *q);
int timer_queue_dispatch(TimerQueue *q);
int timer_queue_rearm(TimerQueue *q);

void timer_init(Timer *t, TimerFn fn);
int timer_arm(TimerQueue *q, Timer *t, uint64_t deadline);
void timer_disarm(TimerQueue *q, Timer *t);

static inline bool timer_is_armed(const Timer *t) {
        return t->index != TIMER_UNARMED;
}

/* Heap primitives, exposed for the unit test. */
Timer *timer_queue_peek(TimerQueue *q);
