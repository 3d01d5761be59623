/*
 * Unit tests for per-user accounting (daemon/user.c) and its use by the
 * outgoing queue (daemon/queue.c).
 *
 * Covers one User per uid (shared, refcounted, gone with its last
 * reference), every slot's per-uid limit and broker-wide limit (the charge
 * that would pass it is refused with the matching code and counted, nothing
 * is charged then, and a refund makes room again), forced charges past the
 * limits, limits lowered while charged (reload), and a queue that charges
 * its entries' bytes and fds to its user: QUEUE_E_QUOTA when the user's
 * share or the total is used up, refunds when frames leave.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "queue.h"
#include "user.h"

static void test_users_shared(void **state) {
        UserRegistry r;
        User *a = NULL, *a2 = NULL, *b = NULL;

        user_registry_init(&r);
        assert_int_equal(user_registry_ref_user(&r, &a, 1000), 0);
        assert_int_equal(user_registry_ref_user(&r, &a2, 1000), 0);
        assert_int_equal(user_registry_ref_user(&r, &b, 0), 0);
        assert_ptr_equal(a, a2);
        assert_ptr_not_equal(a, b);
        assert_int_equal(a->uid, 1000);
        assert_int_equal(b->uid, 0);
        assert_int_equal(a->n_refs, 2);
        assert_int_equal(r.n_users, 2);

        assert_null(user_unref(a2));
        assert_int_equal(r.n_users, 2);
        assert_null(user_unref(a));
        assert_int_equal(r.n_users, 1);

        /* A new reference after the last one went makes a fresh user with nothing charged. */
        assert_int_equal(user_registry_ref_user(&r, &a, 1000), 0);
        assert_int_equal(a->n_refs, 1);
        for (size_t i = 0; i < _USER_SLOT_N; i++)
                assert_int_equal(a->used[i], 0);
        assert_null(user_unref(a));
        assert_null(user_unref(b));
        assert_null(user_unref(NULL));
        assert_int_equal(r.n_users, 0);
        user_registry_deinit(&r);
}

static void test_many_users(void **state) {
        UserRegistry r;
        User *u[300];

        user_registry_init(&r);
        for (uid_t i = 0; i < 300; i++)
                assert_int_equal(user_registry_ref_user(&r, &u[i], 5000 + i), 0);
        for (uid_t i = 0; i < 300; i++) {
                User *again = NULL;

                assert_int_equal(user_registry_ref_user(&r, &again, 5000 + i), 0);
                assert_ptr_equal(again, u[i]);
                user_unref(again);
        }
        assert_int_equal(r.n_users, 300);
        for (size_t i = 0; i < 300; i++)
                user_unref(u[i]);
        assert_int_equal(r.n_users, 0);
        user_registry_deinit(&r);
}

/* Every slot: the per-uid limit binds for one uid, the total for all of them together. */
static void test_limits(void **state) {
        for (UserSlot slot = 0; slot < _USER_SLOT_N; slot++) {
                UserRegistry r;
                User *a = NULL, *b = NULL, *c = NULL;

                user_registry_init(&r);
                user_registry_set_limit(&r, slot, 10, 25);
                assert_int_equal(user_registry_ref_user(&r, &a, 1), 0);
                assert_int_equal(user_registry_ref_user(&r, &b, 2), 0);
                assert_int_equal(user_registry_ref_user(&r, &c, 3), 0);

                /* Up to the share exactly; one more is refused and not charged. */
                assert_int_equal(user_charge(a, slot, 4, false), 0);
                assert_int_equal(user_charge(a, slot, 6, false), 0);
                assert_int_equal(user_check(a, slot, 1), USER_E_QUOTA);
                assert_int_equal(user_charge(a, slot, 1, false), USER_E_QUOTA);
                assert_int_equal(a->used[slot], 10);
                assert_int_equal(r.total[slot], 10);
                assert_int_equal(r.n_refused[slot], 1);
                /* A charge of nothing always fits; one larger than the share never does. */
                assert_int_equal(user_check(a, slot, 0), 0);
                assert_int_equal(user_charge(b, slot, 11, false), USER_E_QUOTA);
                assert_int_equal(user_charge(b, slot, UINT64_MAX, false), USER_E_QUOTA);

                /* Others still get their share, until the total runs out. */
                assert_int_equal(user_charge(b, slot, 10, false), 0);
                assert_int_equal(user_charge(c, slot, 5, false), 0);
                assert_int_equal(r.total[slot], 25);
                assert_int_equal(user_check(c, slot, 1), USER_E_TOTAL);
                assert_int_equal(user_charge(c, slot, 1, false), USER_E_TOTAL);
                assert_int_equal(c->used[slot], 5);
                assert_int_equal(r.n_refused[slot], 4);

                /* Refunds make room: in the total for anyone, in the share for its uid. */
                user_refund(a, slot, 3);
                assert_int_equal(r.total[slot], 22);
                assert_int_equal(user_charge(c, slot, 3, false), 0);
                assert_int_equal(user_charge(a, slot, 1, false), USER_E_TOTAL);
                user_refund(c, slot, 8);
                assert_int_equal(user_charge(a, slot, 3, false), 0);
                assert_int_equal(user_charge(a, slot, 1, false), USER_E_QUOTA);

                /* The other slots were not touched. */
                for (UserSlot other = 0; other < _USER_SLOT_N; other++)
                        if (other != slot)
                                assert_int_equal(r.total[other], 0);

                user_refund(a, slot, 10);
                user_refund(b, slot, 10);
                assert_int_equal(r.total[slot], 0);
                user_unref(a);
                user_unref(b);
                user_unref(c);
                user_registry_deinit(&r);
        }
}

static void test_force_and_reload(void **state) {
        UserRegistry r;
        User *a = NULL;

        user_registry_init(&r);
        user_registry_set_limit(&r, USER_SLOT_BYTES, 100, 1000);
        assert_int_equal(user_registry_ref_user(&r, &a, 7), 0);

        /* Forced charges pass the limits and are counted. */
        assert_int_equal(user_charge(a, USER_SLOT_BYTES, 90, false), 0);
        assert_int_equal(user_charge(a, USER_SLOT_BYTES, 50, true), 0);
        assert_int_equal(a->used[USER_SLOT_BYTES], 140);
        assert_int_equal(r.n_refused[USER_SLOT_BYTES], 0);
        assert_int_equal(user_charge(a, USER_SLOT_BYTES, 1, false), USER_E_QUOTA);
        user_refund(a, USER_SLOT_BYTES, 50);
        assert_int_equal(user_charge(a, USER_SLOT_BYTES, 10, false), 0);

        /* A lowered limit keeps what is charged and refuses what comes next. */
        user_registry_set_limit(&r, USER_SLOT_BYTES, 50, 1000);
        assert_int_equal(a->used[USER_SLOT_BYTES], 100);
        assert_int_equal(user_charge(a, USER_SLOT_BYTES, 1, false), USER_E_QUOTA);
        user_registry_set_limit(&r, USER_SLOT_BYTES, 1000, 60);
        assert_int_equal(user_charge(a, USER_SLOT_BYTES, 1, false), USER_E_TOTAL);
        user_refund(a, USER_SLOT_BYTES, 100);
        assert_int_equal(user_charge(a, USER_SLOT_BYTES, 60, false), 0);
        user_refund(a, USER_SLOT_BYTES, 60);

        /* Without limits set, nothing is refused. */
        assert_int_equal(user_charge(a, USER_SLOT_FDS, 1u << 30, false), 0);
        user_refund(a, USER_SLOT_FDS, 1u << 30);
        user_unref(a);
        user_registry_deinit(&r);
}

static Message *fd_message(size_t n_fds) {
        uint8_t header[4] = { 1, 2, 3, 4 };
        int fds[8];
        Message *m = NULL;

        assert_true(n_fds <= 8);
        for (size_t i = 0; i < n_fds; i++) {
                fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
                assert_true(fds[i] >= 0);
        }
        assert_int_equal(message_new(&m, header, sizeof(header), NULL, 0, NULL, 0, fds, n_fds), 0);
        for (size_t i = 0; i < n_fds; i++)
                close(fds[i]);
        return m;
}

/* Two queues of one uid share its quota; a third uid's queue is limited by the total only. */
static void test_queue_charges(void **state) {
        UserRegistry r;
        User *a = NULL, *b = NULL;
        Queue q1, q2, q3;
        Message *m = fd_message(0), *f = fd_message(2);

        user_registry_init(&r);
        user_registry_set_limit(&r, USER_SLOT_BYTES, 250, 400);
        user_registry_set_limit(&r, USER_SLOT_FDS, 5, 8);
        assert_int_equal(user_registry_ref_user(&r, &a, 100), 0);
        assert_int_equal(user_registry_ref_user(&r, &b, 200), 0);
        queue_init(&q1, 100, 1000, 100);
        queue_init(&q2, 100, 1000, 100);
        queue_init(&q3, 100, 1000, 100);
        q1.user = a;
        q2.user = a;
        q3.user = b;

        /* Bytes: 250 for uid 100 across both of its queues, though each queue takes 1000. */
        assert_int_equal(queue_push(&q1, m, 1, 100, false), 0);
        assert_int_equal(queue_push(&q2, m, 1, 100, false), 0);
        assert_int_equal(queue_room(&q1, 51, 0), QUEUE_E_QUOTA);
        assert_false(queue_has_room(&q2, 51, 0));
        assert_int_equal(queue_push(&q2, m, 2, 51, false), QUEUE_E_QUOTA);
        assert_int_equal(m->n_refs, 3);         /* no reference taken by the refused push */
        assert_int_equal(queue_push(&q2, m, 2, 50, false), 0);
        assert_int_equal(a->used[USER_SLOT_BYTES], 250);
        /* The queue's own limit is reported as such, before the user's. */
        assert_int_equal(queue_room(&q1, 1001, 0), QUEUE_E_FULL);

        /* uid 200 is held by the total (400), not by uid 100's share. */
        assert_int_equal(queue_push(&q3, m, 1, 150, false), 0);
        assert_int_equal(queue_push(&q3, m, 2, 1, false), QUEUE_E_QUOTA);
        assert_int_equal(r.total[USER_SLOT_BYTES], 400);

        /* Forced pushes are charged past the limits. */
        assert_int_equal(queue_push(&q3, m, 2, 10, true), 0);
        assert_int_equal(b->used[USER_SLOT_BYTES], 160);

        /* Popping refunds. */
        queue_pop(&q1);
        assert_int_equal(a->used[USER_SLOT_BYTES], 150);
        assert_int_equal(r.total[USER_SLOT_BYTES], 310);
        queue_deinit(&q3);
        assert_int_equal(b->used[USER_SLOT_BYTES], 0);
        assert_int_equal(r.total[USER_SLOT_BYTES], 150);
        queue_deinit(&q2);
        assert_int_equal(r.total[USER_SLOT_BYTES], 0);

        /* Fds: per uid 5, total 8, whatever the queues' own fd limits (100). */
        assert_int_equal(queue_push(&q1, f, 1, 1, false), 0);
        assert_int_equal(queue_push(&q2, f, 1, 1, false), 0);
        assert_int_equal(queue_push(&q2, f, 2, 1, false), QUEUE_E_QUOTA);
        assert_int_equal(a->used[USER_SLOT_FDS], 4);
        assert_int_equal(queue_push(&q3, f, 1, 1, false), 0);
        assert_int_equal(queue_push(&q3, f, 2, 1, false), 0);
        assert_int_equal(r.total[USER_SLOT_FDS], 8);
        assert_int_equal(queue_push(&q3, f, 3, 1, false), QUEUE_E_QUOTA);
        assert_int_equal(queue_push(&q3, m, 3, 1, false), 0);        /* a frame without fds fits */
        queue_pop(&q1);
        assert_int_equal(queue_push(&q2, f, 2, 1, false), 0);
        assert_int_equal(a->used[USER_SLOT_FDS], 4);

        queue_deinit(&q1);
        queue_deinit(&q2);
        queue_deinit(&q3);
        for (size_t i = 0; i < _USER_SLOT_N; i++)
                assert_int_equal(r.total[i], 0);
        message_unref(m);
        message_unref(f);
        user_unref(a);
        user_unref(b);
        user_registry_deinit(&r);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_users_shared),
                cmocka_unit_test(test_many_users),
                cmocka_unit_test(test_limits),
                cmocka_unit_test(test_force_and_reload),
                cmocka_unit_test(test_queue_charges),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
