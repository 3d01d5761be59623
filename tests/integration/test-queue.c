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
#include "plexus.pb-c.h"
#include "raw.h"
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

/* --- The exact queue limit, and answers that meet a full queue --------------- */

#define QUEUE_FRAMES 8                  /* max_queue_frames of these cases */
#define FILL_PAYLOAD 1024
#define FILL_MAX 100000                 /* frames until the kernel's buffer must be full */

static int small_queue_setup(void **state) {
        return service_fixture_setup_config(state, "[limits]\nmax_queue_frames = 8\n");
}

static int wait_ms(void) {
        return harness_timeout_ms(HARNESS_TIMEOUT_MS);
}

/* Frames waiting in the broker's queue for client @id (GetClient's queue_frames). */
static uint64_t queued_frames(plx_bus *bus, const char *id) {
        Plexus__NameRequest req = PLEXUS__NAME_REQUEST__INIT;
        _cleanup_msg_ plx_msg *reply = NULL;
        Plexus__ClientInfo *info;
        uint8_t buf[128];
        const void *p;
        uint64_t n;
        size_t len;

        req.name = (char *)id;
        assert_int_equal(plx_bus_call(bus, PLX_BROKER, "GetClient", buf, plexus__name_request__pack(&req, buf),
                                      PLX_TIMEOUT_DEFAULT, &reply), 0);
        p = plx_msg_get_payload(reply, &len);
        info = plexus__client_info__unpack(NULL, len, p);
        assert_non_null(info);
        n = info->queue_frames;
        plexus__client_info__free_unpacked(info, NULL);
        return n;
}

/*
 * Publish on @topic, one signal at a time, until the broker refuses one for
 * the non-reading subscriber @id. The kernel's socket buffer takes the first
 * frames; from then on each accepted signal must add exactly one frame to
 * the broker's queue, and the first refusal (QueueFull to us, the
 * publisher) must come exactly when QUEUE_FRAMES frames wait.
 *
 * Return: the number of signals accepted (sent, queued, in the kernel).
 */
static unsigned int fill_queue(plx_bus *pub, Errors *errors, const char *topic, const char *id) {
        char payload[FILL_PAYLOAD];
        uint64_t queued = 0, now;
        unsigned int n_accepted = 0;

        memset(payload, '.', sizeof(payload));
        for (;;) {
                uint64_t before = errors->n_queue_full;

                if (n_accepted >= FILL_MAX)
                        fail_msg("%u signals accepted, %llu queued, and no QueueFull", n_accepted,
                                 (unsigned long long)queued);
                snprintf(payload, sizeof(payload), "%u", n_accepted);
                assert_int_equal(plx_bus_publish(pub, topic, payload, sizeof(payload)), 0);
                /* Routed in our order: after this reply any refusal has been reported. */
                now = queued_frames(pub, id);
                assert_int_equal(harness_bus_drain(pub), 0);
                if (errors->n_other)
                        fail_msg("unexpected error: %s", errors->other);
                if (errors->n_queue_full != before) {
                        assert_int_equal(errors->n_queue_full, before + 1);
                        /* Refused at the limit, not before, and nothing was queued for it. */
                        assert_int_equal(queued, QUEUE_FRAMES);
                        assert_int_equal(now, QUEUE_FRAMES);
                        return n_accepted;
                }
                n_accepted++;
                /* Accepted: into the kernel's buffer, or one more frame in the queue. */
                if (queued > 0 || now > 0)
                        assert_int_equal(now, queued + 1);
                if (now > QUEUE_FRAMES)
                        fail_msg("%llu frames queued, limit %u", (unsigned long long)now, QUEUE_FRAMES);
                queued = now;
        }
}

/*
 * max_queue_frames is exact: a client that does not read gets frames until
 * that many wait for it, and the next one is refused with QueueFull; it
 * sees the refused frame as a gap in its delivery counter.
 */
static void test_queue_frame_limit(void **state) {
        ServiceFixture *f = *state;
        RawFrame *frame = raw_frame_new();
        Errors errors = {};
        char id[64], expected[32];
        unsigned int n_accepted;
        uint64_t delivery = 2;          /* the Welcome, the Subscribe reply */
        int sub;

        assert_non_null(frame);
        plx_bus_set_error_handler(f->bus, on_error, &errors);
        sub = raw_subscriber(f->harness->address, "full/#", frame, id, sizeof(id));
        assert_true(sub >= 0);

        n_accepted = fill_queue(f->bus, &errors, "full/data", id);
        fprintf(stderr, "%u signals accepted, %u of them queued in the broker\n", n_accepted, QUEUE_FRAMES);
        assert_true(n_accepted > QUEUE_FRAMES);

        /* Everything accepted arrives, in order, without a gap. */
        for (unsigned int i = 0; i < n_accepted; i++) {
                assert_int_equal(raw_recv(sub, frame, wait_ms()), 1);
                assert_non_null(frame->header);
                assert_int_equal(frame->header->kind, PLEXUS__KIND__KIND_SIGNAL);
                assert_int_equal(frame->header->delivery, ++delivery);
                snprintf(expected, sizeof(expected), "%u", i);
                assert_true(frame->payload_len == FILL_PAYLOAD);
                assert_string_equal((const char *)frame->payload, expected);
        }
        /* The refused one took a delivery number. */
        assert_int_equal(plx_bus_publish(f->bus, "full/last", "last", 4), 0);
        assert_int_equal(plx_bus_flush(f->bus), 0);      /* publishes wait for a flush */
        assert_int_equal(raw_recv(sub, frame, wait_ms()), 1);
        assert_non_null(frame->header);
        assert_string_equal(frame->header->member, "full/last");
        assert_int_equal(frame->header->delivery, delivery + 2);

        assert_int_equal(queued_frames(f->bus, id), 0);
        assert_int_equal(harness_bus_drain(f->bus), 0);
        assert_int_equal(errors.n_queue_full, 1);
        plx_bus_set_error_handler(f->bus, NULL, NULL);
        close(sub);
        raw_frame_free(frame);
}

/*
 * An answer that meets the caller's full queue (docs/protocol.md §7.5): the
 * caller gets a QueueFull ERROR in place of the answer (never the answer,
 * never nothing), with a gap where the answer would have been; the replier
 * gets a QueueFull ERROR for its REPLY.
 */
static void test_reply_to_full_queue(void **state) {
        ServiceFixture *f = *state;
        RawFrame *frame = raw_frame_new();
        Plexus__Header h = PLEXUS__HEADER__INIT;
        Errors errors = {};
        char caller_id[64], callee_id[64];
        unsigned int n_accepted;
        uint64_t last_delivery = 0;
        int caller, callee;

        assert_non_null(frame);
        plx_bus_set_error_handler(f->bus, on_error, &errors);
        callee = raw_connect(f->harness->address);
        assert_true(callee >= 0);
        assert_int_equal(raw_hello(callee, frame, callee_id, sizeof(callee_id)), 0);
        caller = raw_subscriber(f->harness->address, "full/#", frame, caller_id, sizeof(caller_id));
        assert_true(caller >= 0);

        /* The caller calls, then stops reading. */
        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = 10;
        h.destination = callee_id;
        h.member = (char *)"Hold";
        h.timeout_ms = 120000;  /* the broker's maximum: filling the queue may take long under valgrind */
        assert_int_equal(raw_send(caller, &h, "q", 1), 0);
        assert_int_equal(raw_recv(callee, frame, wait_ms()), 1);
        assert_non_null(frame->header);
        assert_int_equal(frame->header->kind, PLEXUS__KIND__KIND_CALL);
        assert_int_equal(frame->header->serial, 10);
        assert_string_equal(frame->header->sender, caller_id);

        n_accepted = fill_queue(f->bus, &errors, "full/data", caller_id);

        /* The callee answers into the full queue, and hears about it. */
        h = (Plexus__Header) PLEXUS__HEADER__INIT;
        h.kind = PLEXUS__KIND__KIND_REPLY;
        h.serial = 20;
        h.reply_serial = 10;
        h.destination = caller_id;
        assert_int_equal(raw_send(callee, &h, "the answer", 10), 0);
        assert_int_equal(raw_recv(callee, frame, wait_ms()), 1);
        assert_non_null(frame->header);
        assert_int_equal(frame->header->kind, PLEXUS__KIND__KIND_ERROR);
        assert_string_equal(frame->header->error_name, PLX_ERROR_QUEUE_FULL);
        assert_int_equal(frame->header->reply_serial, 20);
        assert_string_equal(frame->header->sender, PLX_BROKER);

        /* The caller reads again: the signals, then the error instead of the answer. */
        for (unsigned int i = 0; i < n_accepted; i++) {
                assert_int_equal(raw_recv(caller, frame, wait_ms()), 1);
                assert_non_null(frame->header);
                assert_int_equal(frame->header->kind, PLEXUS__KIND__KIND_SIGNAL);
                last_delivery = frame->header->delivery;
        }
        assert_int_equal(raw_recv(caller, frame, wait_ms()), 1);
        assert_non_null(frame->header);
        if (frame->header->kind != PLEXUS__KIND__KIND_ERROR)
                fail_msg("the caller got a %s (reply_serial %llu) instead of the QueueFull error",
                         frame_kind_to_string(frame->header->kind),
                         (unsigned long long)frame->header->reply_serial);
        assert_string_equal(frame->header->error_name, PLX_ERROR_QUEUE_FULL);
        assert_int_equal(frame->header->reply_serial, 10);
        assert_string_equal(frame->header->sender, PLX_BROKER);
        /* Gaps: the refused signal, then the answer. */
        assert_int_equal(frame->header->delivery, last_delivery + 3);

        /* The call is over: a second answer is refused, and nothing more reaches the caller. */
        h.serial = 21;
        assert_int_equal(raw_send(callee, &h, "again", 5), 0);
        assert_int_equal(raw_recv(callee, frame, wait_ms()), 1);
        assert_non_null(frame->header);
        assert_string_equal(frame->header->error_name, PLX_ERROR_UNEXPECTED_REPLY);
        assert_int_equal(frame->header->reply_serial, 21);
        h = (Plexus__Header) PLEXUS__HEADER__INIT;
        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = 11;
        h.destination = (char *)PLX_BROKER;
        h.member = (char *)"Ping";
        assert_int_equal(raw_send(caller, &h, NULL, 0), 0);
        assert_int_equal(raw_recv(caller, frame, wait_ms()), 1);
        assert_non_null(frame->header);
        assert_int_equal(frame->header->kind, PLEXUS__KIND__KIND_REPLY);
        assert_int_equal(frame->header->reply_serial, 11);

        assert_int_equal(harness_bus_drain(f->bus), 0);
        assert_int_equal(errors.n_queue_full, 1);
        plx_bus_set_error_handler(f->bus, NULL, NULL);
        close(caller);
        close(callee);
        raw_frame_free(frame);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                SERVICE_TEST(test_slow_subscriber),
                SERVICE_TEST(test_client_queue_bound),
                cmocka_unit_test_setup_teardown(test_queue_frame_limit, small_queue_setup,
                                                service_fixture_teardown),
                cmocka_unit_test_setup_teardown(test_reply_to_full_queue, small_queue_setup,
                                                service_fixture_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
