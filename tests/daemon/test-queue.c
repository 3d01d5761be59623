/*
 * Unit tests for a peer's outgoing queue (daemon/queue.c) and the
 * reference-counted messages it holds (daemon/message.c).
 *
 * Covers FIFO order through push/peek/pop, the ring wrapping around and
 * growing while wrapped, both limits (an ordinary push fails with
 * QUEUE_E_FULL exactly when it would pass max_entries or max_bytes, and
 * takes no reference then), forced pushes beyond the limits,
 * queue_is_full()/queue_has_room(), the ring being freed whenever the queue
 * drains, and message references shared between queues.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "queue.h"

static Message *new_message(uint8_t tag) {
        uint8_t header[3] = { tag, 0xaa, 0xbb };
        uint8_t payload[5] = { 1, 2, 3, 4, tag };
        Message *m = NULL;

        assert_int_equal(message_new(&m, header, sizeof(header), NULL, 0, payload, sizeof(payload), NULL, 0), 0);
        assert_non_null(m);
        return m;
}

static void assert_drained(const Queue *q) {
        assert_true(queue_is_empty(q));
        assert_int_equal(q->n_entries, 0);
        assert_int_equal(q->n_bytes, 0);
        /* An idle peer costs no queue memory. */
        assert_null(q->ring);
        assert_int_equal(q->n_alloc, 0);
        assert_int_equal(q->head, 0);
        assert_null(queue_peek((Queue *)q));
}

static void test_message(void **state) {
        static const uint8_t header[] = { 0x08, 0x01, 0x10, 0x02 };
        static const uint8_t payload[] = "payload";
        Message *m = NULL;

        assert_int_equal(message_new(&m, header, sizeof(header), NULL, 0, payload, sizeof(payload), NULL, 0), 0);
        assert_int_equal(m->n_refs, 1);
        assert_int_equal(m->header_len, sizeof(header));
        assert_int_equal(m->payload_len, sizeof(payload));
        assert_memory_equal(message_header(m), header, sizeof(header));
        assert_memory_equal(message_payload(m), payload, sizeof(payload));

        assert_ptr_equal(message_ref(m), m);
        assert_int_equal(m->n_refs, 2);
        assert_null(message_unref(m));
        assert_int_equal(m->n_refs, 1);
        assert_null(message_unref(m));

        /* No payload: payload_len 0, the pointer sits right after the header. */
        assert_int_equal(message_new(&m, header, sizeof(header), NULL, 0, NULL, 0, NULL, 0), 0);
        assert_int_equal(m->payload_len, 0);
        assert_ptr_equal(message_payload(m), message_header(m) + sizeof(header));
        message_unref(m);

        assert_null(message_ref(NULL));
        assert_null(message_unref(NULL));
}

static void test_queue_order(void **state) {
        Message *m[5];
        Queue q;

        queue_init(&q, 100, 10000, SIZE_MAX);
        assert_drained(&q);

        for (unsigned i = 0; i < 5; i++) {
                m[i] = new_message((uint8_t)i);
                assert_int_equal(queue_push(&q, m[i], 100 + i, 10 + i, false), 0);
                assert_int_equal(m[i]->n_refs, 2);
                assert_int_equal(q.n_entries, i + 1);
        }
        assert_int_equal(q.n_bytes, 10 + 11 + 12 + 13 + 14);

        for (unsigned i = 0; i < 5; i++) {
                QueueEntry *e = queue_peek(&q);

                assert_non_null(e);
                /* Peeking twice gives the same entry. */
                assert_ptr_equal(queue_peek(&q), e);
                assert_ptr_equal(e->msg, m[i]);
                assert_true(e->delivery == 100 + i);
                assert_int_equal(e->size, 10 + i);
                queue_pop(&q);
                assert_int_equal(m[i]->n_refs, 1);
                assert_int_equal(q.n_entries, 4 - i);
        }
        assert_drained(&q);

        for (unsigned i = 0; i < 5; i++)
                message_unref(m[i]);
        queue_deinit(&q);
}

static void test_queue_wrap_growth(void **state) {
        Message *m = new_message(1);
        uint64_t next_push = 0, next_pop = 0;
        Queue q;

        queue_init(&q, 1000, 1000000, SIZE_MAX);

        /* Fill the first ring (8 entries), pop 5, push 5: the tail wraps. */
        for (unsigned i = 0; i < 8; i++)
                assert_int_equal(queue_push(&q, m, next_push++, 1, false), 0);
        assert_int_equal(q.n_alloc, 8);
        for (unsigned i = 0; i < 5; i++) {
                assert_true(queue_peek(&q)->delivery == next_pop++);
                queue_pop(&q);
        }
        for (unsigned i = 0; i < 5; i++)
                assert_int_equal(queue_push(&q, m, next_push++, 1, false), 0);
        assert_int_equal(q.n_alloc, 8);
        assert_int_equal(q.n_entries, 8);
        assert_int_equal(q.head, 5);

        /* Growing now must unwrap the ring in FIFO order. */
        assert_int_equal(queue_push(&q, m, next_push++, 1, false), 0);
        assert_int_equal(q.n_alloc, 16);
        assert_int_equal(q.n_entries, 9);

        /* Wrap the bigger ring as well, then grow again mid-wrap. */
        for (unsigned i = 0; i < 6; i++) {
                assert_true(queue_peek(&q)->delivery == next_pop++);
                queue_pop(&q);
        }
        while (q.n_entries < q.n_alloc)
                assert_int_equal(queue_push(&q, m, next_push++, 1, false), 0);
        assert_true(q.head + q.n_entries > q.n_alloc);          /* wrapped */
        assert_int_equal(queue_push(&q, m, next_push++, 1, false), 0);
        assert_int_equal(q.n_alloc, 32);

        assert_int_equal(m->n_refs, 1 + q.n_entries);
        while (!queue_is_empty(&q)) {
                assert_true(queue_peek(&q)->delivery == next_pop++);
                queue_pop(&q);
        }
        assert_true(next_pop == next_push);
        assert_drained(&q);
        assert_int_equal(m->n_refs, 1);

        message_unref(m);
        queue_deinit(&q);
}

static void test_queue_random_fifo(void **state) {
        uint64_t x = 0x853c49e6748fea9bull, next_push = 0, next_pop = 0;
        size_t bytes = 0, sizes[4096];
        Message *m = new_message(2);
        Queue q;

        /* A reference FIFO of sizes indexed by delivery % 4096. */
        queue_init(&q, 4096, SIZE_MAX, SIZE_MAX);
        for (unsigned i = 0; i < 200000; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                /* Drift between growing and draining so the ring grows, wraps and empties. */
                if ((x % 100) < ((i / 5000) % 2 ? 40u : 60u)) {
                        size_t size = 1 + (x >> 32) % 1000;
                        int r = queue_push(&q, m, next_push, size, false);

                        if (next_push - next_pop == 4096) {
                                assert_int_equal(r, QUEUE_E_FULL);
                                continue;
                        }
                        assert_int_equal(r, 0);
                        sizes[next_push % 4096] = size;
                        bytes += size;
                        next_push++;
                } else if (next_pop < next_push) {
                        QueueEntry *e = queue_peek(&q);

                        assert_true(e->delivery == next_pop);
                        assert_int_equal(e->size, sizes[next_pop % 4096]);
                        bytes -= e->size;
                        queue_pop(&q);
                        next_pop++;
                } else {
                        assert_drained(&q);
                }
                assert_int_equal(q.n_entries, next_push - next_pop);
                assert_int_equal(q.n_bytes, bytes);
        }
        assert_int_equal(m->n_refs, 1 + q.n_entries);
        queue_deinit(&q);
        assert_drained(&q);
        assert_int_equal(m->n_refs, 1);
        message_unref(m);
}

static void test_queue_entry_limit(void **state) {
        Message *m = new_message(3);
        Queue q;

        queue_init(&q, 4, 1000000, SIZE_MAX);
        for (unsigned i = 0; i < 3; i++) {
                assert_false(queue_is_full(&q));
                assert_true(queue_has_room(&q, 10, 0));
                assert_int_equal(queue_push(&q, m, i, 10, false), 0);
        }
        /* The fourth entry reaches the limit; it is still accepted. */
        assert_false(queue_is_full(&q));
        assert_int_equal(queue_push(&q, m, 3, 10, false), 0);
        assert_true(queue_is_full(&q));
        assert_false(queue_has_room(&q, 1, 0));

        /* A refused push changes nothing and takes no reference. */
        assert_int_equal(queue_push(&q, m, 4, 10, false), QUEUE_E_FULL);
        assert_int_equal(q.n_entries, 4);
        assert_int_equal(q.n_bytes, 40);
        assert_int_equal(m->n_refs, 5);

        /* Popping one makes room for exactly one. */
        queue_pop(&q);
        assert_false(queue_is_full(&q));
        assert_int_equal(queue_push(&q, m, 4, 10, false), 0);
        assert_int_equal(queue_push(&q, m, 5, 10, false), QUEUE_E_FULL);

        queue_deinit(&q);
        assert_drained(&q);
        assert_int_equal(m->n_refs, 1);
        message_unref(m);
}

static void test_queue_byte_limit(void **state) {
        Message *m = new_message(4);
        Queue q;

        queue_init(&q, 1000, 100, SIZE_MAX);

        /* A single frame above the limit never fits, not even in an empty queue. */
        assert_false(queue_has_room(&q, 101, 0));
        assert_int_equal(queue_push(&q, m, 0, 101, false), QUEUE_E_FULL);
        assert_drained(&q);
        assert_int_equal(m->n_refs, 1);

        assert_int_equal(queue_push(&q, m, 0, 60, false), 0);
        assert_false(queue_is_full(&q));
        /* 60 + 41 would pass the limit by one byte. */
        assert_false(queue_has_room(&q, 41, 0));
        assert_int_equal(queue_push(&q, m, 1, 41, false), QUEUE_E_FULL);
        assert_int_equal(q.n_bytes, 60);
        /* 60 + 40 is exactly the limit. */
        assert_true(queue_has_room(&q, 40, 0));
        assert_int_equal(queue_push(&q, m, 1, 40, false), 0);
        assert_int_equal(q.n_bytes, 100);
        assert_true(queue_is_full(&q));
        assert_int_equal(queue_push(&q, m, 2, 1, false), QUEUE_E_FULL);
        assert_int_equal(q.n_entries, 2);
        assert_int_equal(m->n_refs, 3);

        queue_pop(&q);
        assert_int_equal(q.n_bytes, 40);
        assert_false(queue_is_full(&q));
        assert_int_equal(queue_push(&q, m, 2, 60, false), 0);
        assert_int_equal(queue_push(&q, m, 3, 1, false), QUEUE_E_FULL);

        queue_deinit(&q);
        assert_int_equal(m->n_refs, 1);

        /* A frame exactly max_bytes long fits an empty queue. */
        queue_init(&q, 1000, 100, SIZE_MAX);
        assert_int_equal(queue_push(&q, m, 0, 100, false), 0);
        assert_true(queue_is_full(&q));
        queue_deinit(&q);
        message_unref(m);
}

static void test_queue_forced(void **state) {
        Message *m = new_message(5);
        Queue q;

        queue_init(&q, 2, 100, SIZE_MAX);
        assert_int_equal(queue_push(&q, m, 0, 50, false), 0);
        assert_int_equal(queue_push(&q, m, 1, 50, false), 0);
        assert_int_equal(queue_push(&q, m, 2, 50, false), QUEUE_E_FULL);

        /* Forced pushes go past both limits. */
        assert_int_equal(queue_push(&q, m, 2, 50, true), 0);
        assert_int_equal(queue_push(&q, m, 3, 1000, true), 0);
        assert_int_equal(q.n_entries, 4);
        assert_int_equal(q.n_bytes, 1150);
        assert_true(queue_is_full(&q));
        assert_int_equal(m->n_refs, 5);

        assert_false(queue_has_room(&q, 1, 0));
        assert_int_equal(queue_push(&q, m, 4, 1, false), QUEUE_E_FULL);

        /* Still over the limits after popping one of four. */
        queue_pop(&q);
        assert_true(queue_is_full(&q));
        assert_int_equal(queue_push(&q, m, 4, 1, false), QUEUE_E_FULL);

        /* Order is kept across forced and ordinary entries. */
        for (uint64_t d = 1; d <= 3; d++) {
                assert_true(queue_peek(&q)->delivery == d);
                queue_pop(&q);
        }
        assert_drained(&q);
        assert_true(queue_has_room(&q, 100, 0));
        assert_int_equal(m->n_refs, 1);

        /*
         * Over the byte limit with entries to spare: the free space must not
         * be computed as max_bytes - n_bytes, which would wrap around.
         */
        queue_init(&q, 100, 100, SIZE_MAX);
        assert_int_equal(queue_push(&q, m, 0, 150, true), 0);
        assert_true(queue_is_full(&q));
        assert_false(queue_has_room(&q, 0, 0));
        assert_false(queue_has_room(&q, 1, 0));
        assert_false(queue_has_room(&q, 100, 0));
        assert_int_equal(queue_push(&q, m, 1, 1, false), QUEUE_E_FULL);
        assert_int_equal(q.n_entries, 1);
        queue_deinit(&q);
        assert_drained(&q);

        /* A forced push into an empty queue with zero limits works too. */
        queue_init(&q, 0, 0, SIZE_MAX);
        assert_true(queue_is_full(&q));
        assert_int_equal(queue_push(&q, m, 0, 10, false), QUEUE_E_FULL);
        assert_int_equal(queue_push(&q, m, 0, 10, true), 0);
        queue_deinit(&q);
        assert_drained(&q);

        message_unref(m);
}

static void test_queue_shared_message(void **state) {
        Message *m = new_message(6);
        Queue a, b;

        queue_init(&a, 10, 1000, SIZE_MAX);
        queue_init(&b, 10, 1000, SIZE_MAX);

        assert_int_equal(queue_push(&a, m, 7, 8, false), 0);
        assert_int_equal(queue_push(&b, m, 9, 8, false), 0);
        assert_int_equal(m->n_refs, 3);

        /* The creator lets go: the queues keep it alive. */
        message_unref(m);
        assert_int_equal(m->n_refs, 2);

        queue_pop(&a);
        assert_drained(&a);
        /* Still readable through the other queue (ASan/valgrind catch a free). */
        assert_ptr_equal(queue_peek(&b)->msg, m);
        assert_int_equal(m->n_refs, 1);
        assert_int_equal(message_header(queue_peek(&b)->msg)[0], 6);
        assert_int_equal(message_payload(queue_peek(&b)->msg)[4], 6);
        assert_true(queue_peek(&b)->delivery == 9);

        /* Dropping the last queue frees the message; leak checkers verify it. */
        queue_deinit(&b);
        assert_drained(&b);
        queue_deinit(&a);
}

/* Passed fds: the message holds duplicates, the queue charges them, the last unref closes them. */
static void test_queue_fd_limit(void **state) {
        uint8_t header[8] = { 0 };
        int pipefd[2], fds[3];
        Message *m = NULL;
        Queue q;

        assert_int_equal(pipe(pipefd), 0);
        for (size_t i = 0; i < 3; i++)
                fds[i] = pipefd[0];

        assert_int_equal(message_new(&m, header, sizeof(header), NULL, 0, NULL, 0, fds, 3), 0);
        assert_int_equal(m->n_fds, 3);
        for (size_t i = 0; i < 3; i++) {
                assert_int_not_equal(m->fds[i], pipefd[0]);
                assert_true(fcntl(m->fds[i], F_GETFD) & FD_CLOEXEC);
        }

        queue_init(&q, 100, 1000000, 4);
        assert_int_equal(queue_push(&q, m, 1, 10, false), 0);
        assert_int_equal(q.n_fds, 3);
        assert_true(queue_has_room(&q, 10, 1));
        assert_false(queue_has_room(&q, 10, 2));
        /* A message with 3 more fds does not fit; forced, it does. */
        assert_int_equal(queue_push(&q, m, 2, 10, false), QUEUE_E_FULL);
        assert_int_equal(queue_push(&q, m, 2, 10, true), 0);
        assert_int_equal(q.n_fds, 6);
        assert_true(queue_is_full(&q));

        fds[0] = m->fds[0];
        message_unref(m);               /* the queue's references keep it */
        assert_true(fcntl(fds[0], F_GETFD) >= 0);
        queue_pop(&q);
        queue_pop(&q);
        assert_int_equal(q.n_fds, 0);
        /* The duplicates are gone with the message; the original stays. */
        assert_int_equal(fcntl(fds[0], F_GETFD), -1);
        assert_true(fcntl(pipefd[0], F_GETFD) >= 0);
        queue_deinit(&q);
        close(pipefd[0]);
        close(pipefd[1]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_message),
                cmocka_unit_test(test_queue_order),
                cmocka_unit_test(test_queue_wrap_growth),
                cmocka_unit_test(test_queue_random_fifo),
                cmocka_unit_test(test_queue_entry_limit),
                cmocka_unit_test(test_queue_byte_limit),
                cmocka_unit_test(test_queue_forced),
                cmocka_unit_test(test_queue_shared_message),
                cmocka_unit_test(test_queue_fd_limit),
        };

        return cmocka_run_group_tests_name("Queue", tests, NULL, NULL);
}
