/*
 * Bounded queues. A subscriber that stops reading must not block the
 * publisher or the broker: its queue in the broker fills, further signals
 * for it are dropped, the publisher hears about every drop
 * (plexus.Error.QueueFull through its error handler), and the subscriber
 * sees the gap in its delivery counter once it reads again. On the client
 * side, a connection whose broker does not read (SIGSTOP) fills its
 * outgoing queue up to a bound and then gets -ENOBUFS instead of buffering
 * without end.
 */

#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "service.h"

#define N_FLOOD 20000
#define FLOOD_PAYLOAD 512

typedef struct Flood {
        uint64_t *deliveries;
        long *indices;                  /* publish index from the payload, -1 for the end marker */
        size_t n;
        bool done;                      /* saw the end marker */
} Flood;

static int on_flood(plx_msg *m, void *userdata) {
        Flood *fl = userdata;
        const char *p;
        size_t n;

        if (fl->n >= N_FLOOD + 1000)
                return -ENOBUFS;
        p = plx_msg_get_payload(m, &n);
        fl->deliveries[fl->n] = plx_msg_get_delivery(m);
        if (n >= 4 && memcmp(p, "last", 4) == 0) {
                fl->indices[fl->n] = -1;
                fl->done = true;
        } else {
                fl->indices[fl->n] = strtol(p, NULL, 10);
        }
        fl->n++;
        return 0;
}

typedef struct Errors {
        uint64_t n_queue_full;
        uint64_t n_other;
        char other[256];
} Errors;

static int on_error(plx_msg *error, void *userdata) {
        Errors *e = userdata;

        if (strcmp(plx_msg_get_error_name(error), PLX_ERROR_QUEUE_FULL) == 0) {
                e->n_queue_full++;
        } else {
                e->n_other++;
                snprintf(e->other, sizeof(e->other), "%s: %s", plx_msg_get_error_name(error),
                         plx_msg_get_error_message(error));
        }
        return 0;
}

static void test_slow_subscriber(void **state) {
        ServiceFixture *f = *state;
        plx_bus *sub = f->bus;
        _cleanup_bus_ plx_bus *pub = NULL;
        Flood fl = {};
        Errors errors = {};
        char payload[FLOOD_PAYLOAD];
        uint64_t deadline, gap_sum = 0, n_missed;
        unsigned long n_enobufs = 0;

        fl.deliveries = calloc(N_FLOOD + 1000, sizeof(*fl.deliveries));
        fl.indices = calloc(N_FLOOD + 1000, sizeof(*fl.indices));
        assert_non_null(fl.deliveries);
        assert_non_null(fl.indices);

        assert_int_equal(plx_bus_new(&pub, f->harness->address, "flooder"), 0);
        plx_bus_set_error_handler(pub, on_error, &errors);
        assert_int_equal(plx_bus_subscribe(sub, NULL, "flood/#", on_flood, &fl), 0);

        /* From here on the subscriber reads nothing until the flood is over. */
        deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(30000);
        memset(payload, '.', sizeof(payload));
        for (int i = 0; i < N_FLOOD; i++) {
                int r, len;

                len = snprintf(payload, sizeof(payload), "%d", i);
                payload[len] = ' ';
                r = plx_bus_publish(pub, "flood/data", payload, sizeof(payload));
                if (r == -ENOBUFS) {
                        n_enobufs++;
                        assert_int_equal(harness_bus_flush(pub, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
                        r = plx_bus_publish(pub, "flood/data", payload, sizeof(payload));
                }
                if (r < 0)
                        fail_msg("publish %d: %s", i, strerror(-r));
                /* Read the broker's answers as we go, as a real publisher would. */
                if (i % 64 == 0)
                        assert_int_equal(harness_bus_drain(pub), 0);
                if (harness_now_ms() > deadline)
                        fail_msg("publisher blocked: only %d of %d signals published", i, N_FLOOD);
        }
        assert_int_equal(harness_bus_flush(pub, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        /* The broker routes our frames in order: after this, every drop is reported. */
        assert_int_equal(plx_bus_call(pub, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        assert_int_equal(harness_bus_drain(pub), 0);
        fprintf(stderr, "flood: %d published, %llu QueueFull errors, %lu local ENOBUFS\n", N_FLOOD,
                (unsigned long long)errors.n_queue_full, n_enobufs);
        if (errors.n_other)
                fail_msg("unexpected error: %s", errors.other);
        assert_true(errors.n_queue_full > 0);

        /* The subscriber resumes. Its queue in the broker may still be full
         * when an end marker is published, so publish until one arrives. */
        deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(20000);
        while (!fl.done) {
                struct pollfd pfd = { .fd = plx_bus_get_fd(sub), .events = POLLIN };

                assert_int_equal(harness_bus_drain(sub), 0);
                if (fl.done)
                        break;
                assert_int_equal(plx_bus_publish(pub, "flood/end", "last", 4), 0);
                assert_int_equal(harness_bus_flush(pub, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
                poll(&pfd, 1, 50);
                assert_true(harness_now_ms() < deadline);
        }
        assert_int_equal(harness_bus_drain(sub), 0);

        /* What the subscriber got: a prefix of the flood, in order, with gaps
         * that the delivery counter shows and plx_bus_get_n_missed() sums up. */
        for (size_t i = 1; i < fl.n; i++) {
                assert_true(fl.deliveries[i] > fl.deliveries[i - 1]);
                gap_sum += fl.deliveries[i] - fl.deliveries[i - 1] - 1;
                if (fl.indices[i] >= 0)
                        assert_true(fl.indices[i] > fl.indices[i - 1]);
        }
        n_missed = plx_bus_get_n_missed(sub);
        fprintf(stderr, "subscriber: %zu received, %llu missed, gaps sum to %llu\n", fl.n,
                (unsigned long long)n_missed, (unsigned long long)gap_sum);
        assert_true(fl.n > 0 && fl.n < N_FLOOD);
        assert_true(n_missed > 0);
        assert_int_equal(gap_sum, n_missed);

        /* Every dropped signal was reported to its publisher: nothing lost silently. */
        assert_int_equal(plx_bus_call(pub, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        assert_int_equal(harness_bus_drain(pub), 0);
        assert_int_equal(errors.n_queue_full, n_missed);

        /* Everybody keeps working. */
        assert_int_equal(plx_bus_call(sub, f->service_id, "Echo", "x", 1, PLX_TIMEOUT_DEFAULT, NULL), 0);
        assert_int_equal(plx_bus_call(pub, f->service_id, "Echo", "y", 1, PLX_TIMEOUT_DEFAULT, NULL), 0);

        plx_bus_set_error_handler(pub, NULL, NULL);
        free(fl.deliveries);
        free(fl.indices);
}

static int on_never_answer(plx_msg *msg, void *userdata) {
        fail_msg("a call refused with -ENOBUFS was answered");
        return 0;
}

static void test_client_queue_bound(void **state) {
        ServiceFixture *f = *state;
        size_t size = 64 * 1024, total = 0, n_small = 0;
        uint64_t start, elapsed;
        uint8_t *payload;
        int r;

        payload = calloc(1, size);
        assert_non_null(payload);

        /* The broker reads nothing while stopped; teardown continues it in any case. */
        assert_int_equal(kill(f->harness->broker_pid, SIGSTOP), 0);
        for (;;) {
                r = plx_bus_publish(f->bus, "fill/up", payload, size);
                if (r == -ENOBUFS)
                        break;
                assert_int_equal(r, 0);
                total += size;
                if (total > 512u * 1024 * 1024)
                        fail_msg("still no -ENOBUFS after %zu MiB queued", total >> 20);
        }
        /* Fill what room is left, down to the smallest frame. */
        for (;; n_small++) {
                r = plx_bus_publish(f->bus, "f", NULL, 0);
                if (r == -ENOBUFS)
                        break;
                assert_int_equal(r, 0);
                if (n_small > 1000000)
                        fail_msg("still no -ENOBUFS after a million empty signals");
        }
        fprintf(stderr, "-ENOBUFS after %zu KiB in 64 KiB signals and %zu empty ones\n", total >> 10, n_small);

        /* A call cannot be queued either, and says so at once. */
        start = harness_now_ms();
        r = plx_bus_call(f->bus, f->service_id, "Echo", "x", 1, 2000 * 1000, NULL);
        elapsed = harness_now_ms() - start;
        assert_int_equal(r, -ENOBUFS);
        assert_true(elapsed < (uint64_t)harness_timeout_ms(1000));
        assert_int_equal(plx_bus_call_async(f->bus, NULL, f->service_id, "Echo", "x", 1, PLX_TIMEOUT_DEFAULT,
                                            on_never_answer, NULL), -ENOBUFS);

        /* Once the broker runs again the queue drains and calls work. */
        assert_int_equal(kill(f->harness->broker_pid, SIGCONT), 0);
        assert_int_equal(harness_bus_flush(f->bus, harness_timeout_ms(20000)), 0);
        assert_int_equal(plx_bus_call(f->bus, f->service_id, "Echo", "x", 1, PLX_TIMEOUT_DEFAULT, NULL), 0);
        free(payload);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                SERVICE_TEST(test_slow_subscriber),
                SERVICE_TEST(test_client_queue_bound),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
