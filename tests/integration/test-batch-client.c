/*
 * Batched I/O in libplexus (libclient/bus.c): sends wait in the write queue
 * for a flush and go out with sendmmsg(); frames come in with recvmmsg(),
 * and a message's payload stays in the receive buffer it was read into
 * until the buffer is needed again.
 *
 * Caller and callee are two connections of the test process, driven
 * together by pump(), except for the publisher of the burst, a child that
 * exits right after plx_bus_free().
 */

#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "harness.h"

/* Process @a and @b (either may be NULL) until *@done, polling both as the documentation says. */
static void pump(plx_bus *a, plx_bus *b, const bool *done) {
        uint64_t deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);
        plx_bus *buses[2] = { a, b };

        while (!*done) {
                struct pollfd pfd[2];
                int n = 0, ms = -1;
                bool busy = false;

                for (int i = 0; i < 2; i++) {
                        int r, t;

                        if (!buses[i])
                                continue;
                        while ((r = plx_bus_process(buses[i])) > 0)
                                busy = true;
                        assert_int_equal(r, 0);
                        assert_int_equal(plx_bus_get_timeout(buses[i], &t), 0);
                        if (t >= 0 && (ms < 0 || t < ms))
                                ms = t;
                        pfd[n++] = (struct pollfd) {
                                .fd = plx_bus_get_fd(buses[i]),
                                .events = (short)plx_bus_get_events(buses[i]),
                        };
                }
                if (busy || *done)
                        continue;
                if (harness_now_ms() >= deadline)
                        fail_msg("timed out");
                if (ms < 0 || ms > 100)
                        ms = 100;
                assert_true(poll(pfd, (nfds_t)n, ms) >= 0 || errno == EINTR);
        }
}

/* Byte @j of test payload @i. */
static uint8_t pattern(size_t i, size_t j) {
        return (uint8_t)(i * 131u + j * 7u + (j >> 8));
}

static void fill(uint8_t *p, size_t i, size_t size) {
        for (size_t j = 0; j < size; j++)
                p[j] = pattern(i, j);
}

static bool intact(const uint8_t *p, size_t i, size_t size) {
        for (size_t j = 0; j < size; j++)
                if (p[j] != pattern(i, j))
                        return false;
        return true;
}

/* Messages counted as they arrive: done after @expect, failed if one was wrong. */
typedef struct Tally {
        unsigned int n;
        unsigned int expect;
        bool failed;
        bool done;
} Tally;

static int tally(Tally *t, bool ok) {
        if (!ok)
                t->failed = true;
        if (++t->n == t->expect)
                t->done = true;
        return 0;
}

/* --- Pipelined calls ----------------------------------------------------- */

#define N_PIPELINED 300u

static int on_echo(plx_msg *call, void *userdata) {
        const void *p;
        size_t n;

        p = plx_msg_get_payload(call, &n);
        return plx_msg_reply(call, p, n);
}

static int on_echo_reply(plx_msg *reply, void *userdata) {
        Tally *t = userdata;
        const void *payload;
        size_t n;
        char want[32];

        payload = plx_msg_get_payload(reply, &n);
        snprintf(want, sizeof(want), "call %u", t->n);
        return tally(t, plx_msg_get_kind(reply) == PLX_MSG_REPLY && n == strlen(want) &&
                        memcmp(payload, want, n) == 0);
}

/*
 * Calls made back to back wait in the queue (the socket says POLLOUT
 * interest meanwhile), go out in batches and are answered in order.
 */
static void test_pipelined_in_order(void **state) {
        Harness *h = *state;
        _cleanup_bus_ plx_bus *callee = NULL, *caller = NULL;
        Tally p = { .expect = N_PIPELINED };

        assert_int_equal(plx_bus_new(&callee, h->address, "callee"), 0);
        assert_int_equal(plx_bus_new(&caller, h->address, "caller"), 0);
        assert_int_equal(plx_bus_add_method(callee, NULL, "Echo", on_echo, NULL), 0);

        for (unsigned int i = 0; i < N_PIPELINED; i++) {
                char payload[32];

                snprintf(payload, sizeof(payload), "call %u", i);
                assert_int_equal(plx_bus_call_async(caller, NULL, plx_bus_get_unique_id(callee), "Echo",
                                                    payload, strlen(payload), PLX_TIMEOUT_DEFAULT,
                                                    on_echo_reply, &p), 0);
                /* Fewer than a batch so far: all of it waits for a flush. */
                if (i == 9)
                        assert_true(plx_bus_get_events(caller) & POLLOUT);
        }
        pump(caller, callee, &p.done);
        assert_int_equal(p.n, N_PIPELINED);
        assert_false(p.failed);
}

/* --- Poll loop ----------------------------------------------------------- */

typedef struct OneReply {
        bool done;
        bool ok;
} OneReply;

static int on_one_reply(plx_msg *reply, void *userdata) {
        OneReply *o = userdata;

        o->ok = plx_msg_get_kind(reply) == PLX_MSG_REPLY;
        o->done = true;
        return 0;
}

/*
 * A program with its own poll loop: after plx_bus_call_async() the fd asks
 * for POLLOUT, poll() says writable at once, and plx_bus_process() sends
 * the call; the answer then arrives.
 */
static void test_poll_interest(void **state) {
        Harness *h = *state;
        _cleanup_bus_ plx_bus *callee = NULL, *caller = NULL;
        OneReply o = {};
        struct pollfd pfd;

        assert_int_equal(plx_bus_new(&callee, h->address, "callee"), 0);
        assert_int_equal(plx_bus_new(&caller, h->address, "caller"), 0);
        assert_int_equal(plx_bus_add_method(callee, NULL, "Echo", on_echo, NULL), 0);

        assert_int_equal(plx_bus_get_events(caller), POLLIN);
        assert_int_equal(plx_bus_call_async(caller, NULL, plx_bus_get_unique_id(callee), "Echo", "x", 1,
                                            PLX_TIMEOUT_DEFAULT, on_one_reply, &o), 0);
        assert_int_equal(plx_bus_get_events(caller), POLLIN | POLLOUT);

        pfd = (struct pollfd) { .fd = plx_bus_get_fd(caller), .events = (short)plx_bus_get_events(caller) };
        assert_int_equal(poll(&pfd, 1, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 1);
        assert_true(pfd.revents & POLLOUT);

        assert_true(plx_bus_process(caller) >= 0);
        assert_int_equal(plx_bus_get_events(caller), POLLIN);

        pump(caller, callee, &o.done);
        assert_true(o.ok);
}

/* --- Publish burst, then free -------------------------------------------- */

#define N_BURST 1000u           /* not a multiple of the batch: some wait for plx_bus_free() */
#define BURST_SIZE 200u

static int on_burst(plx_msg *m, void *userdata) {
        Tally *t = userdata;
        const uint8_t *p;
        size_t n;

        p = plx_msg_get_payload(m, &n);
        return tally(t, n == BURST_SIZE && intact(p, t->n, n));
}

static int burst_child(int report_fd, int control_fd, void *userdata) {
        const char *address = userdata;
        plx_bus *bus = NULL;
        uint8_t payload[BURST_SIZE];

        child_assert_int_eq(plx_bus_new(&bus, address, "burst"), 0);
        for (unsigned int i = 0; i < N_BURST; i++) {
                int r;

                fill(payload, i, sizeof(payload));
                r = plx_bus_publish(bus, "batch/burst", payload, sizeof(payload));
                if (r == -ENOBUFS) {
                        /* The broker is behind: wait for it, as a publisher must. */
                        child_assert_int_eq(plx_bus_flush(bus), 0);
                        r = plx_bus_publish(bus, "batch/burst", payload, sizeof(payload));
                }
                child_assert_int_eq(r, 0);
        }
        plx_bus_free(bus);
        return 0;
}

/* Everything published before plx_bus_free() arrives, though part of it was still queued. */
static void test_publish_burst_then_free(void **state) {
        Harness *h = *state;
        _cleanup_bus_ plx_bus *sub = NULL;
        HarnessChild child = HARNESS_CHILD_NULL;
        Tally b = { .expect = N_BURST };

        assert_int_equal(plx_bus_new(&sub, h->address, "subscriber"), 0);
        assert_int_equal(plx_bus_subscribe(sub, NULL, "batch/burst", on_burst, &b), 0);
        assert_int_equal(harness_child_fork(&child, burst_child, h->address), 0);

        pump(sub, NULL, &b.done);
        assert_int_equal(harness_child_wait(&child, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        harness_child_close(&child);
        assert_int_equal(b.n, N_BURST);
        assert_false(b.failed);
        assert_int_equal(plx_bus_get_n_missed(sub), 0);
}

/* --- Fds in a batch ------------------------------------------------------ */

#define N_FD_CALLS 7u           /* read as 1, 2 and 4 frames: the vector grows */

static int on_fd_call(plx_msg *call, void *userdata) {
        Tally *t = userdata;
        char want[32], got[32] = "";
        const void *p;
        size_t n;

        p = plx_msg_get_payload(call, &n);
        snprintf(want, sizeof(want), "fd %u", t->n);
        if (n != strlen(want) || memcmp(p, want, n) != 0 || plx_msg_get_n_fds(call) != 1)
                return tally(t, false);
        /* Its own memfd says which call it came with. */
        return tally(t, pread(plx_msg_get_fd(call, 0), got, sizeof(got) - 1, 0) == (ssize_t)n &&
                        memcmp(got, want, n) == 0);
}

/* Frames with fds read several per recvmmsg(): each message gets its own fds. */
static void test_fds_in_batch(void **state) {
        Harness *h = *state;
        _cleanup_bus_ plx_bus *callee = NULL, *caller = NULL;
        OneReply ignored = {};
        Tally c = { .expect = N_FD_CALLS };

        assert_int_equal(plx_bus_new(&callee, h->address, "callee"), 0);
        assert_int_equal(plx_bus_new(&caller, h->address, "caller"), 0);
        assert_int_equal(plx_bus_add_method(callee, NULL, "Fd", on_fd_call, &c), 0);

        for (unsigned int i = 0; i < N_FD_CALLS; i++) {
                char text[32];
                int fd;

                snprintf(text, sizeof(text), "fd %u", i);
                fd = memfd_create("batch", MFD_CLOEXEC);
                assert_true(fd >= 0);
                assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
                assert_int_equal(plx_bus_call_async_with_fds(caller, NULL, plx_bus_get_unique_id(callee), "Fd",
                                                             text, strlen(text), &fd, 1, PLX_TIMEOUT_DEFAULT,
                                                             on_one_reply, &ignored), 0);
                close(fd);
        }
        /* The broker answers in order: once it has, every call sits in the callee's socket. */
        assert_int_equal(plx_bus_call(caller, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);

        pump(callee, NULL, &c.done);
        assert_false(c.failed);
}

/* --- Small and large frames, and messages kept --------------------------- */

static const size_t mixed_sizes[] = {
        8, 100 * 1024, 0, 1024 * 1024, 17, 20 * 1024, 120 * 1024, 3, 2 * 1024 * 1024, 64, 64, 4096,
};
#define N_MIXED (sizeof(mixed_sizes) / sizeof(mixed_sizes[0]))

typedef struct Kept {
        plx_msg *msgs[64];
        unsigned int n;
        bool done;
} Kept;

static int on_keep(plx_msg *m, void *userdata) {
        Kept *k = userdata;

        if (k->n < sizeof(k->msgs) / sizeof(k->msgs[0]))
                k->msgs[k->n++] = plx_msg_ref(m);
        if (k->n == N_MIXED)
                k->done = true;
        return 0;
}

/*
 * Inline frames of every size, an empty one and large ones (memfd) in one
 * stream: all arrive in order, and each message the application keeps
 * still has its payload after the buffers it came in were read into again.
 */
static void test_mixed_and_kept(void **state) {
        Harness *h = *state;
        _cleanup_bus_ plx_bus *pub = NULL, *sub = NULL;
        Kept k = {};

        assert_int_equal(plx_bus_new(&pub, h->address, "publisher"), 0);
        assert_int_equal(plx_bus_new(&sub, h->address, "subscriber"), 0);
        assert_int_equal(plx_bus_subscribe(sub, NULL, "batch/mixed", on_keep, &k), 0);

        for (size_t i = 0; i < N_MIXED; i++) {
                uint8_t *p = malloc(mixed_sizes[i] + 1);

                assert_non_null(p);
                fill(p, i, mixed_sizes[i]);
                assert_int_equal(plx_bus_publish(pub, "batch/mixed", p, mixed_sizes[i]), 0);
                free(p);
        }
        assert_int_equal(plx_bus_call(pub, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);

        pump(sub, NULL, &k.done);
        assert_int_equal(k.n, N_MIXED);
        for (size_t i = 0; i < N_MIXED; i++) {
                const uint8_t *p;
                size_t n;

                p = plx_msg_get_payload(k.msgs[i], &n);
                assert_int_equal(n, mixed_sizes[i]);
                if (!intact(p, i, n))
                        fail_msg("payload %zu (%zu bytes) changed", i, n);
                plx_msg_unref(k.msgs[i]);
        }
}

typedef struct Signals {
        plx_msg *first;
        plx_msg *second;
        unsigned int n;
        unsigned int expect;
        bool done;
} Signals;

static int on_signal_keep_two(plx_msg *m, void *userdata) {
        Signals *s = userdata;

        if (s->n == 0)
                s->first = plx_msg_ref(m);
        else if (s->n == 1)
                s->second = plx_msg_ref(m);
        if (++s->n == s->expect)
                s->done = true;
        return 0;
}

/*
 * The application keeps a short and a long message (copied out, and given
 * the receive buffer, when the buffer is needed) across many later reads.
 */
static void test_kept_across_reads(void **state) {
        Harness *h = *state;
        _cleanup_bus_ plx_bus *pub = NULL, *sub = NULL;
        Signals s = { .expect = 2 };
        uint8_t *p = malloc(40 * 1024);
        const uint8_t *q;
        size_t n;

        assert_non_null(p);
        assert_int_equal(plx_bus_new(&pub, h->address, "publisher"), 0);
        assert_int_equal(plx_bus_new(&sub, h->address, "subscriber"), 0);
        assert_int_equal(plx_bus_subscribe(sub, NULL, "batch/keep", on_signal_keep_two, &s), 0);

        fill(p, 1, 100);
        assert_int_equal(plx_bus_publish(pub, "batch/keep", p, 100), 0);
        fill(p, 2, 40 * 1024);
        assert_int_equal(plx_bus_publish(pub, "batch/keep", p, 40 * 1024), 0);
        assert_int_equal(plx_bus_flush(pub), 0);
        pump(sub, NULL, &s.done);

        /* Rounds of reads: one signal at a time, so every buffer is read into again. */
        for (unsigned int round = 0; round < 40; round++) {
                memset(p, 0xa5 + round, 40 * 1024);
                assert_int_equal(plx_bus_publish(pub, "batch/keep", p, round % 2 ? 40 * 1024 : 100), 0);
                assert_int_equal(plx_bus_flush(pub), 0);
                s.expect++;
                s.done = false;
                pump(sub, NULL, &s.done);
        }

        q = plx_msg_get_payload(s.first, &n);
        assert_int_equal(n, 100);
        assert_true(intact(q, 1, n));
        q = plx_msg_get_payload(s.second, &n);
        assert_int_equal(n, 40 * 1024);
        assert_true(intact(q, 2, n));
        plx_msg_unref(s.first);
        plx_msg_unref(s.second);
        free(p);
}

typedef struct Pointers {
        plx_bus *caller;                /* makes a call from inside the callback */
        plx_msg *msgs[2];
        const uint8_t *payloads[2];     /* as plx_msg_get_payload() gave them in the callback */
        bool intact_after_call;
        unsigned int n;
        unsigned int expect;
        bool done;
} Pointers;

static int on_signal_take_pointer(plx_msg *m, void *userdata) {
        Pointers *s = userdata;
        size_t n;

        if (s->n < 2) {
                s->msgs[s->n] = plx_msg_ref(m);
                s->payloads[s->n] = plx_msg_get_payload(m, &n);
                if (s->n == 0) {
                        /* A call from inside the callback reads on: the payload must stay put. */
                        assert_int_equal(plx_bus_call(s->caller, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT,
                                                      NULL), 0);
                        s->intact_after_call = intact(s->payloads[0], 1, n);
                }
        }
        if (++s->n == s->expect)
                s->done = true;
        return 0;
}

/*
 * A pointer plx_msg_get_payload() returned stays valid, and the bytes it
 * points at unchanged, while the message lives: across a call made from
 * the callback, and across later reads that need its receive buffer.
 */
static void test_payload_pointer_stays(void **state) {
        Harness *h = *state;
        _cleanup_bus_ plx_bus *pub = NULL, *sub = NULL;
        Pointers s = { .expect = 2 };
        uint8_t *p = malloc(100);

        assert_non_null(p);
        assert_int_equal(plx_bus_new(&pub, h->address, "publisher"), 0);
        assert_int_equal(plx_bus_new(&sub, h->address, "subscriber"), 0);
        s.caller = sub;
        assert_int_equal(plx_bus_subscribe(sub, NULL, "batch/pointer", on_signal_take_pointer, &s), 0);

        /* Both in one read: the call's reads reuse the buffers while the first is dispatched. */
        fill(p, 1, 100);
        assert_int_equal(plx_bus_publish(pub, "batch/pointer", p, 100), 0);
        fill(p, 2, 100);
        assert_int_equal(plx_bus_publish(pub, "batch/pointer", p, 100), 0);
        assert_int_equal(plx_bus_flush(pub), 0);
        pump(sub, NULL, &s.done);
        assert_true(s.intact_after_call);

        for (unsigned int round = 0; round < 40; round++) {
                memset(p, 0x5a + round, 100);
                assert_int_equal(plx_bus_publish(pub, "batch/pointer", p, 100), 0);
                assert_int_equal(plx_bus_flush(pub), 0);
                s.expect++;
                s.done = false;
                pump(sub, NULL, &s.done);
        }
        assert_true(intact(s.payloads[0], 1, 100));
        assert_true(intact(s.payloads[1], 2, 100));
        plx_msg_unref(s.msgs[0]);
        plx_msg_unref(s.msgs[1]);
        free(p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_payload_pointer_stays, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_pipelined_in_order, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_poll_interest, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_publish_burst_then_free, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_fds_in_batch, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_mixed_and_kept, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_kept_across_reads, harness_setup, harness_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
