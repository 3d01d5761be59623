/*
 * Unit tests for the deadline heap and its timerfd (daemon/timer.c).
 *
 * The heap is tested alone, on a TIMER_QUEUE_NULL queue without a timerfd
 * (timer_queue_rearm() is then a no-op): arming, moving and disarming
 * timers at the root, the last slot and in between, and a deterministic
 * run over 10,000 timers with duplicate deadlines where a random third is
 * disarmed and some are moved before the heap is drained in order. Then a
 * real timerfd registered in a Loop (daemon/loop.c): the earliest deadline
 * arms it, epoll reports it, timer_queue_dispatch() runs each expired
 * callback exactly once and re-points the timerfd at the next deadline.
 */

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "loop.h"
#include "timer.h"
#include "util.h"

/* A timer with what the test expects of it. */
typedef struct TestTimer {
        Timer timer;
        bool want_armed;
        unsigned n_fired;
        uint64_t fired_at;
} TestTimer;

static void on_fire(Timer *t, uint64_t now) {
        TestTimer *tt = container_of(t, TestTimer, timer);

        /* Disarmed before the callback runs, and only once its deadline passed. */
        assert_false(timer_is_armed(t));
        assert_true(t->deadline <= now);
        tt->n_fired++;
        tt->fired_at = now;
}

static void never_fire(Timer *t, uint64_t now) {
        fail_msg("a timer fired that must not have");
}

/* Checks the heap property and the stored indices of every armed timer. */
static void check_heap(const TimerQueue *q) {
        assert_true(q->n_heap <= q->n_alloc);
        for (size_t i = 0; i < q->n_heap; i++) {
                assert_int_equal(q->heap[i]->index, i);
                if (i > 0)
                        assert_true(q->heap[(i - 1) / 2]->deadline <= q->heap[i]->deadline);
        }
}

static void test_timer_init_and_empty(void **state) {
        TimerQueue q = TIMER_QUEUE_NULL(q);
        Timer t;

        memset(&t, 0x5a, sizeof(t));
        timer_init(&t, never_fire);
        assert_false(timer_is_armed(&t));
        assert_ptr_equal(t.fn, never_fire);
        assert_null(timer_queue_peek(&q));

        /* Disarming an unarmed timer is a no-op. */
        timer_disarm(&q, &t);
        assert_int_equal(q.n_heap, 0);
        timer_queue_deinit(&q);
}

static void test_timer_rearm_without_fd(void **state) {
        TimerQueue q = TIMER_QUEUE_NULL(q);
        Timer t = TIMER_NULL(t);

        timer_init(&t, never_fire);
        assert_int_equal(timer_arm(&q, &t, 1000), 0);
        assert_true(timer_is_armed(&t));
        assert_ptr_equal(timer_queue_peek(&q), &t);

        /* No timerfd: nothing to program, and the cached deadline stays unset. */
        assert_int_equal(q.fd, -1);
        assert_int_equal(timer_queue_rearm(&q), 0);
        assert_true(q.armed == 0);

        timer_disarm(&q, &t);
        assert_int_equal(timer_queue_rearm(&q), 0);
        assert_true(q.armed == 0);

        /* Deinit releases the heap and leaves armed timers unarmed. */
        assert_int_equal(timer_arm(&q, &t, 5), 0);
        timer_queue_deinit(&q);
        assert_false(timer_is_armed(&t));
        assert_null(q.heap);
        assert_int_equal(q.n_heap, 0);
        assert_int_equal(q.fd, -1);
}

static void test_timer_move_and_disarm(void **state) {
        TimerQueue q = TIMER_QUEUE_NULL(q);
        Timer t[7];

        for (size_t i = 0; i < 7; i++) {
                timer_init(&t[i], never_fire);
                assert_int_equal(timer_arm(&q, &t[i], 100 * (i + 1)), 0);
                check_heap(&q);
        }
        assert_ptr_equal(timer_queue_peek(&q), &t[0]);

        /* Move the last timer to the front, then back past everyone. */
        assert_int_equal(timer_arm(&q, &t[6], 1), 0);
        check_heap(&q);
        assert_ptr_equal(timer_queue_peek(&q), &t[6]);
        assert_int_equal(timer_arm(&q, &t[6], 10000), 0);
        check_heap(&q);
        assert_ptr_equal(timer_queue_peek(&q), &t[0]);
        assert_int_equal(q.n_heap, 7);

        /* Re-arming with the same deadline keeps everything in place. */
        assert_int_equal(timer_arm(&q, &t[3], t[3].deadline), 0);
        check_heap(&q);

        /* Disarm the root, a middle node and the last slot. */
        timer_disarm(&q, &t[0]);
        check_heap(&q);
        assert_false(timer_is_armed(&t[0]));
        assert_ptr_equal(timer_queue_peek(&q), &t[1]);
        timer_disarm(&q, &t[3]);
        check_heap(&q);
        timer_disarm(&q, q.heap[q.n_heap - 1]);
        check_heap(&q);
        assert_int_equal(q.n_heap, 4);

        /*
         * Disarm a node whose replacement (the last) is smaller than its
         * parent, so the replacement has to move up rather than down.
         */
        while (q.n_heap)
                timer_disarm(&q, timer_queue_peek(&q));
        for (size_t i = 0; i < 7; i++) {
                static const uint64_t d[7] = { 10, 50, 20, 60, 70, 30, 40 };

                assert_int_equal(timer_arm(&q, &t[i], d[i]), 0);
        }
        check_heap(&q);
        /* Heap: 10 / 50 20 / 60 70 30 40; removing 60 puts 40 under 50. */
        assert_int_equal(t[3].index, 3);
        timer_disarm(&q, &t[3]);
        check_heap(&q);
        assert_int_equal(t[6].index, 1);

        timer_queue_deinit(&q);
        for (size_t i = 0; i < 7; i++)
                assert_false(timer_is_armed(&t[i]));
}

static uint64_t next_random(uint64_t *x) {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        return *x;
}

#define N_TIMERS 10000

static void test_timer_heap_random(void **state) {
        TimerQueue q = TIMER_QUEUE_NULL(q);
        TestTimer *tt = calloc(N_TIMERS, sizeof(*tt));
        uint64_t x = 0xda942042e4dd58b5ull, last = 0;
        size_t n_armed = 0, n_popped = 0;

        assert_non_null(tt);

        /* Deadlines from a small range, so many are equal. */
        for (size_t i = 0; i < N_TIMERS; i++) {
                timer_init(&tt[i].timer, on_fire);
                assert_int_equal(timer_arm(&q, &tt[i].timer, next_random(&x) % 5000), 0);
                tt[i].want_armed = true;
        }
        n_armed = N_TIMERS;
        check_heap(&q);

        /* Disarm a random third. */
        for (size_t i = 0; i < N_TIMERS; i++) {
                if (next_random(&x) % 3 == 0) {
                        timer_disarm(&q, &tt[i].timer);
                        assert_false(timer_is_armed(&tt[i].timer));
                        tt[i].want_armed = false;
                        n_armed--;
                }
        }
        check_heap(&q);
        assert_int_equal(q.n_heap, n_armed);

        /* Move some armed timers, both ways, and re-arm some disarmed ones. */
        for (size_t i = 0; i < N_TIMERS; i++) {
                if (next_random(&x) % 4 != 0)
                        continue;
                if (!tt[i].want_armed)
                        n_armed++;
                assert_int_equal(timer_arm(&q, &tt[i].timer, next_random(&x) % 7000), 0);
                tt[i].want_armed = true;
                if (i % 1000 == 0)
                        check_heap(&q);
        }
        check_heap(&q);
        assert_int_equal(q.n_heap, n_armed);
        for (size_t i = 0; i < N_TIMERS; i++)
                assert_int_equal(timer_is_armed(&tt[i].timer), tt[i].want_armed);

        /* Drain in order; every armed timer comes out exactly once. */
        for (Timer *t; (t = timer_queue_peek(&q));) {
                TestTimer *cur = container_of(t, TestTimer, timer);

                assert_true(t->deadline >= last);
                last = t->deadline;
                assert_true(cur->want_armed);
                assert_int_equal(cur->n_fired, 0);
                timer_disarm(&q, t);
                cur->n_fired++;
                n_popped++;
                if (n_popped % 997 == 0)
                        check_heap(&q);
        }
        assert_int_equal(n_popped, n_armed);
        for (size_t i = 0; i < N_TIMERS; i++) {
                assert_int_equal(tt[i].n_fired, tt[i].want_armed ? 1 : 0);
                assert_false(timer_is_armed(&tt[i].timer));
        }

        timer_queue_deinit(&q);
        free(tt);
}

/* Runs one loop round and dispatches the timer queue if it was reported. */
static bool poll_timer(Loop *loop, TimerQueue *q) {
        List round = LIST_INIT(round);
        bool seen = false;
        LoopSource *s;

        assert_int_equal(loop_poll(loop, &round), 0);
        while ((s = list_first_entry(&round, LoopSource, ready_link))) {
                /* As the broker does: back on the ready list, then dispatch. */
                list_unlink(&s->ready_link);
                list_append(&loop->ready, &s->ready_link);
                assert_ptr_equal(s, &q->source);
                assert_int_equal(s->kind, LOOP_KIND_TIMER);
                assert_true(loop_source_is_ready(s, EPOLLIN));
                assert_int_equal(timer_queue_dispatch(q), 0);
                /* The timerfd was read: its cached edge is gone. */
                assert_false(list_is_linked(&s->ready_link));
                seen = true;
        }
        return seen;
}

static bool timerfd_is_armed(int fd) {
        struct itimerspec its;

        assert_int_equal(timerfd_gettime(fd, &its), 0);
        return its.it_value.tv_sec != 0 || its.it_value.tv_nsec != 0;
}

static void test_timerfd_dispatch(void **state) {
        TimerQueue q = TIMER_QUEUE_NULL(q);
        Loop loop = LOOP_NULL(loop);
        TestTimer a = {}, b = {}, c = {};
        uint64_t start;

        /* A broken timerfd would block loop_poll() forever. */
        alarm(20);

        assert_int_equal(loop_init(&loop), 0);
        assert_int_equal(timer_queue_init(&q, &loop), 0);
        assert_true(q.fd >= 0);
        assert_false(timerfd_is_armed(q.fd));

        timer_init(&a.timer, on_fire);
        timer_init(&b.timer, on_fire);
        timer_init(&c.timer, on_fire);

        start = now_usec();
        assert_int_equal(timer_arm(&q, &a.timer, start + 20000), 0);
        assert_int_equal(timer_arm(&q, &c.timer, start + 3600000000ull), 0);
        assert_int_equal(timer_queue_rearm(&q), 0);
        assert_true(q.armed == start + 20000);
        assert_true(timerfd_is_armed(q.fd));

        /* Nothing is ready until the deadline. */
        while (!poll_timer(&loop, &q))
                ;
        assert_int_equal(a.n_fired, 1);
        assert_true(a.fired_at >= start + 20000);
        assert_true(now_usec() >= start + 20000);
        assert_int_equal(c.n_fired, 0);
        assert_true(timer_is_armed(&c.timer));
        /* Re-pointed at the hour-long timer. */
        assert_true(q.armed == c.timer.deadline);
        assert_true(timerfd_is_armed(q.fd));

        /* Deadline 0, long past: the timerfd needs a non-zero value to fire. */
        assert_int_equal(timer_arm(&q, &b.timer, 0), 0);
        assert_int_equal(timer_queue_rearm(&q), 0);
        assert_true(q.armed == 1);
        while (!poll_timer(&loop, &q))
                ;
        assert_int_equal(b.n_fired, 1);
        assert_int_equal(a.n_fired, 1);
        assert_int_equal(c.n_fired, 0);
        assert_true(q.armed == c.timer.deadline);

        /*
         * Disarming the last timer leaves the timerfd set: it only ever
         * moves earlier, so that calls answered in time cost no syscall.
         * It fires once for nothing later; here, an earlier timer re-points it.
         */
        timer_disarm(&q, &c.timer);
        assert_int_equal(timer_queue_rearm(&q), 0);
        assert_true(q.armed == c.timer.deadline);
        assert_true(timerfd_is_armed(q.fd));
        assert_int_equal(timer_arm(&q, &b.timer, now_usec() + 10000), 0);
        assert_int_equal(timer_queue_rearm(&q), 0);
        assert_true(q.armed == b.timer.deadline);
        while (!poll_timer(&loop, &q))
                ;
        assert_int_equal(b.n_fired, 2);
        /* Nothing left: a later timer does not move the timerfd back. */
        assert_int_equal(timer_arm(&q, &c.timer, now_usec() + 3600ull * 1000000u), 0);
        assert_int_equal(timer_queue_rearm(&q), 0);
        assert_true(q.armed == c.timer.deadline);
        timer_disarm(&q, &c.timer);

        timer_queue_deinit(&q);
        assert_int_equal(q.fd, -1);
        loop_deinit(&loop);
        alarm(0);
}

typedef struct Rearming {
        TestTimer tt;
        TimerQueue *q;
} Rearming;

static void on_fire_rearm(Timer *t, uint64_t now) {
        Rearming *r = container_of(t, Rearming, tt.timer);

        on_fire(t, now);
        /* Allowed from the callback: arm again, in the future. */
        if (r->tt.n_fired < 3)
                assert_int_equal(timer_arm(r->q, t, now + 5000), 0);
}

static void test_timerfd_rearm_from_callback(void **state) {
        TimerQueue q = TIMER_QUEUE_NULL(q);
        Loop loop = LOOP_NULL(loop);
        Rearming r = { .q = &q };
        unsigned rounds = 0;

        alarm(20);
        assert_int_equal(loop_init(&loop), 0);
        assert_int_equal(timer_queue_init(&q, &loop), 0);

        timer_init(&r.tt.timer, on_fire_rearm);
        assert_int_equal(timer_arm(&q, &r.tt.timer, now_usec() + 5000), 0);
        assert_int_equal(timer_queue_rearm(&q), 0);

        while (r.tt.n_fired < 3) {
                rounds += poll_timer(&loop, &q);
                assert_true(rounds <= 3);
        }
        assert_int_equal(rounds, 3);
        assert_false(timer_is_armed(&r.tt.timer));
        assert_true(q.armed == 0);
        assert_false(timerfd_is_armed(q.fd));

        timer_queue_deinit(&q);
        loop_deinit(&loop);
        alarm(0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_timer_init_and_empty),
                cmocka_unit_test(test_timer_rearm_without_fd),
                cmocka_unit_test(test_timer_move_and_disarm),
                cmocka_unit_test(test_timer_heap_random),
                cmocka_unit_test(test_timerfd_dispatch),
                cmocka_unit_test(test_timerfd_rearm_from_callback),
        };

        return cmocka_run_group_tests_name("Timer heap", tests, NULL, NULL);
}
