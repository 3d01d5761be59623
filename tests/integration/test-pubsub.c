/*
 * Publish/subscribe through a real broker: exact, '+' and '#' patterns,
 * delivery once per client however many of its patterns match, sequence
 * and delivery numbering, the reserved "plexus/" namespace, and the order of
 * a signal against a reply from the same sender.
 *
 * Publisher and subscriber are two connections of the test process; the
 * publisher's frames are written out before the subscriber is driven, and
 * the last signal of each test (payload "last") marks the end: a publisher's
 * signals are delivered in order, so whatever should have arrived has
 * arrived once "last" has.
 */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "raw.h"
#include "service.h"

#define MAX_RECORDED 512

typedef struct Received {
        char topic[128];
        char payload[64];
        char sender[64];
        uint64_t sequence;
        uint64_t delivery;
} Received;

typedef struct Recorder {
        Received items[MAX_RECORDED];
        size_t n;
        bool done;                      /* saw the payload "last" */
        char *log;                      /* optional: appends "S" per signal, 16 bytes */
} Recorder;

static int on_signal(plx_msg *m, void *userdata) {
        Recorder *rec = userdata;
        Received *it;
        const void *p;
        size_t n;

        if (rec->log && strlen(rec->log) < 15)
                strcat(rec->log, "S");
        if (rec->n >= MAX_RECORDED)
                return -ENOBUFS;
        it = &rec->items[rec->n++];
        p = plx_msg_get_payload(m, &n);
        snprintf(it->topic, sizeof(it->topic), "%s", plx_msg_get_topic(m));
        snprintf(it->payload, sizeof(it->payload), "%.*s", (int)n, (const char *)p);
        snprintf(it->sender, sizeof(it->sender), "%s", plx_msg_get_sender(m));
        it->sequence = plx_msg_get_sequence(m);
        it->delivery = plx_msg_get_delivery(m);
        if (strcmp(it->payload, "last") == 0)
                rec->done = true;
        return 0;
}

static Recorder *recorder_new(void) {
        Recorder *rec = calloc(1, sizeof(*rec));

        assert_non_null(rec);
        return rec;
}

static void publish(plx_bus *bus, const char *topic, const char *payload) {
        int r = plx_bus_publish(bus, topic, payload, strlen(payload));

        if (r < 0)
                fail_msg("publish on \"%s\": %s", topic, strerror(-r));
}

static void flush_and_wait(plx_bus *pub, plx_bus *sub, Recorder *rec) {
        assert_int_equal(harness_bus_flush(pub, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(harness_bus_wait(sub, &rec->done, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(harness_bus_drain(sub), 0);
}

/*
 * Subscribes @pattern, publishes @topics in order with the topic as payload,
 * then "last" on @end, and checks that exactly the topics marked '+' in
 * @expect arrived, in order.
 */
static void check_pattern(ServiceFixture *f, const char *pattern, const char *const *topics,
                          const char *expect, const char *end) {
        _cleanup_bus_ plx_bus *pub = NULL;
        plx_slot *slot = NULL;
        Recorder *rec = recorder_new();
        size_t n_expected = 0, j = 0;

        assert_int_equal(plx_bus_new(&pub, f->harness->address, "publisher"), 0);
        assert_int_equal(plx_bus_subscribe(f->bus, &slot, pattern, on_signal, rec), 0);

        for (size_t i = 0; topics[i]; i++) {
                publish(pub, topics[i], topics[i]);
                if (expect[i] == '+')
                        n_expected++;
        }
        publish(pub, end, "last");
        flush_and_wait(pub, f->bus, rec);

        if (rec->n != n_expected + 1) {
                for (size_t i = 0; i < rec->n; i++)
                        fprintf(stderr, "  %s got \"%s\"\n", pattern, rec->items[i].topic);
                fail_msg("pattern \"%s\": %zu signals, expected %zu", pattern, rec->n, n_expected + 1);
        }
        for (size_t i = 0; topics[i]; i++) {
                if (expect[i] != '+')
                        continue;
                assert_string_equal(rec->items[j].topic, topics[i]);
                assert_string_equal(rec->items[j].payload, topics[i]);
                assert_string_equal(rec->items[j].sender, plx_bus_get_unique_id(pub));
                j++;
        }
        assert_string_equal(rec->items[j].topic, end);

        plx_slot_free(slot);
        free(rec);
}

static void test_exact(void **state) {
        static const char *const topics[] = {
                "a/b/c", "a/b", "a/b/c/d", "a/b/d", "x/a/b/c", "a/b/cc", "A/b/c", "a/b/c", NULL,
        };

        check_pattern(*state, "a/b/c", topics, "+______+", "a/b/c");
}

static void test_plus(void **state) {
        static const char *const topics[] = {
                "a/b/c", "a/c", "a/b/d/c", "a/b/d", "b/b/c", "a/b/c/d", "a/xyz/c", NULL,
        };
        static const char *const single[] = { "q", "q/r", "plain", NULL };
        static const char *const first[] = { "q/x", "x", "q/r/x", "x/q", NULL };

        check_pattern(*state, "a/+/c", topics, "+_____+", "a/end/c");
        check_pattern(*state, "+", single, "+_+", "last-level");
        check_pattern(*state, "+/x", first, "+___", "z/x");
}

static void test_hash(void **state) {
        static const char *const topics[] = {
                "a", "a/b", "a/b/c/d", "b", "ab", "b/a", "ab/c", NULL,
        };
        static const char *const deeper[] = { "a", "a/b", "a/b/c", "a/b/c/d", "b/b", NULL };

        /* '#' covers its parent level too: "a/#" matches "a". */
        check_pattern(*state, "a/#", topics, "+++____", "a/end");
        check_pattern(*state, "a/+/#", deeper, "_+++_", "a/z");
}

/* Two patterns of one client match one signal: the broker sends one frame. */
static void test_overlapping(void **state) {
        ServiceFixture *f = *state;
        _cleanup_bus_ plx_bus *pub = NULL;
        Recorder *hash = recorder_new(), *plus = recorder_new();

        assert_int_equal(plx_bus_new(&pub, f->harness->address, "publisher"), 0);
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "o/#", on_signal, hash), 0);
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "o/+", on_signal, plus), 0);

        publish(pub, "o/x", "one");
        publish(pub, "o/x/y", "deep");
        publish(pub, "o/y", "last");
        assert_int_equal(harness_bus_flush(pub, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(harness_bus_wait(f->bus, &hash->done, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(harness_bus_wait(f->bus, &plus->done, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(harness_bus_drain(f->bus), 0);

        /* Each subscription's callback runs once per matching signal... */
        assert_int_equal(hash->n, 3);
        assert_int_equal(plus->n, 2);
        assert_string_equal(plus->items[0].topic, "o/x");
        assert_string_equal(plus->items[1].topic, "o/y");

        /* ...and both saw the same frames: one delivery per signal, no duplicates. */
        assert_int_equal(hash->items[0].delivery, plus->items[0].delivery);
        assert_int_equal(hash->items[2].delivery, plus->items[1].delivery);
        assert_int_equal(hash->items[1].delivery, hash->items[0].delivery + 1);
        assert_int_equal(hash->items[2].delivery, hash->items[1].delivery + 1);
        assert_int_equal(plx_bus_get_n_missed(f->bus), 0);

        free(hash);
        free(plus);
}

static void test_sequence_delivery(void **state) {
        ServiceFixture *f = *state;
        _cleanup_bus_ plx_bus *pub1 = NULL, *pub2 = NULL;
        Recorder *rec = recorder_new();
        int next1 = 0, next2 = 0;

        assert_int_equal(plx_bus_new(&pub1, f->harness->address, "publisher-1"), 0);
        assert_int_equal(plx_bus_new(&pub2, f->harness->address, "publisher-2"), 0);
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "seq/#", on_signal, rec), 0);

        for (int i = 0; i < 200; i++) {
                char text[16];

                snprintf(text, sizeof(text), "%d", i);
                publish(i % 3 ? pub1 : pub2, i % 3 ? "seq/one" : "seq/two", text);
                if (i % 50 == 49) {
                        assert_int_equal(harness_bus_flush(pub1, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
                        assert_int_equal(harness_bus_flush(pub2, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
                }
        }
        /* The broker routes a connection's frames in order: once it has
         * answered pub2's Ping, pub2's signals are ahead of pub1's "last". */
        assert_int_equal(plx_bus_call(pub2, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        publish(pub1, "seq/one", "last");
        flush_and_wait(pub1, f->bus, rec);

        assert_int_equal(rec->n, 201);
        for (size_t i = 0; i < rec->n; i++) {
                Received *it = &rec->items[i];

                if (i > 0) {
                        if (it->sequence <= rec->items[i - 1].sequence)
                                fail_msg("sequence %llu after %llu", (unsigned long long)it->sequence,
                                         (unsigned long long)rec->items[i - 1].sequence);
                        assert_int_equal(it->delivery, rec->items[i - 1].delivery + 1);
                }
                if (strcmp(it->payload, "last") == 0)
                        continue;
                /* Each publisher's signals keep their order. */
                if (strcmp(it->topic, "seq/one") == 0) {
                        while (next1 % 3 == 0)
                                next1++;
                        assert_int_equal(atoi(it->payload), next1);
                        next1++;
                } else {
                        assert_int_equal(atoi(it->payload), next2);
                        next2 += 3;
                }
        }
        assert_int_equal(plx_bus_get_n_missed(f->bus), 0);
        free(rec);
}

static void test_unsubscribe(void **state) {
        ServiceFixture *f = *state;
        _cleanup_bus_ plx_bus *pub = NULL;
        Recorder *gone = recorder_new(), *rest = recorder_new();
        plx_slot *slot = NULL;

        assert_int_equal(plx_bus_new(&pub, f->harness->address, "publisher"), 0);
        assert_int_equal(plx_bus_subscribe(f->bus, &slot, "u/a", on_signal, gone), 0);
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "u/b", on_signal, rest), 0);
        plx_slot_free(slot);

        /* Make sure the broker has processed the unsubscription too. */
        assert_int_equal(plx_bus_call(f->bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);

        publish(pub, "u/a", "after");
        publish(pub, "u/b", "last");
        flush_and_wait(pub, f->bus, rest);
        assert_int_equal(gone->n, 0);
        assert_int_equal(rest->n, 1);
        free(gone);
        free(rest);
}

/* Only the broker publishes under "plexus/"; bad topics and patterns are refused. */
static void test_reserved_and_invalid(void **state) {
        static const char *const reserved[] = { "plexus/x", "plexus", "plexus/broker/shutdown" };
        ServiceFixture *f = *state;
        _cleanup_bus_ plx_bus *pub = NULL;
        Recorder *rec = recorder_new();
        RawFrame *frame;
        char id[64];
        int fd, r;

        assert_int_equal(plx_bus_new(&pub, f->harness->address, "publisher"), 0);
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "plexus/#", on_signal, rec), 0);

        for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
                ErrorLog log = {};

                plx_bus_set_error_handler(pub, error_log_record, &log);
                r = plx_bus_publish(pub, reserved[i], "x", 1);
                if (r == 0) {
                        /* Not refused locally: the broker must refuse it. */
                        assert_int_equal(harness_bus_flush(pub, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
                        assert_int_equal(harness_bus_wait(pub, &log.done,
                                                          harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
                        assert_string_equal(log.name, PLX_ERROR_INVALID_ARGS);
                } else {
                        assert_int_equal(r, -EINVAL);
                }
                plx_bus_set_error_handler(pub, NULL, NULL);
        }

        /* The broker refuses it too, whatever the library does. */
        frame = raw_frame_new();
        assert_non_null(frame);
        fd = raw_connect(f->harness->address);
        assert_true(fd >= 0);
        assert_int_equal(raw_hello(fd, frame, id, sizeof(id)), 0);
        {
                Plexus__Header h = PLEXUS__HEADER__INIT;

                h.kind = PLEXUS__KIND__KIND_SIGNAL;
                h.serial = 7;
                h.member = (char *)"plexus/x";
                assert_int_equal(raw_send(fd, &h, "raw", 3), 0);
        }
        assert_int_equal(raw_recv(fd, frame, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 1);
        assert_non_null(frame->header);
        assert_int_equal(frame->header->kind, PLEXUS__KIND__KIND_ERROR);
        assert_string_equal(frame->header->error_name, PLX_ERROR_INVALID_ARGS);
        assert_int_equal(frame->header->reply_serial, 7);
        close(fd);
        raw_frame_free(frame);

        /* Invalid topics and patterns never reach the wire. */
        assert_int_equal(plx_bus_publish(pub, "a/+/b", "x", 1), -EINVAL);
        assert_int_equal(plx_bus_publish(pub, "a/#", "x", 1), -EINVAL);
        assert_int_equal(plx_bus_publish(pub, "a//b", "x", 1), -EINVAL);
        assert_int_equal(plx_bus_publish(pub, "", "x", 1), -EINVAL);
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "a/#/b", on_signal, rec), -EINVAL);
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "a/b+", on_signal, rec), -EINVAL);
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "", on_signal, rec), -EINVAL);

        /* Nothing was delivered on the reserved topics. */
        assert_int_equal(plx_bus_call(pub, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        assert_int_equal(plx_bus_call(f->bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        assert_int_equal(harness_bus_drain(f->bus), 0);
        assert_int_equal(rec->n, 0);
        free(rec);
}

typedef struct OrderLog {
        char events[16];                /* "S" per signal, "R" for the reply */
        bool done;
        uint64_t reply_delivery;
} OrderLog;

static int on_order_reply(plx_msg *msg, void *userdata) {
        OrderLog *log = userdata;

        if (strlen(log->events) < sizeof(log->events) - 1)
                strcat(log->events, "R");
        log->reply_delivery = plx_msg_get_delivery(msg);
        log->done = true;
        return 0;
}

/* The service publishes, then replies: we see the signal before the reply. */
static void test_signal_before_reply(void **state) {
        ServiceFixture *f = *state;
        _cleanup_msg_ plx_msg *reply = NULL;
        Recorder *rec = recorder_new();
        OrderLog log = {};

        rec->log = log.events;
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "order/#", on_signal, rec), 0);

        /* Synchronous: the signal is queued while we wait, dispatched after. */
        assert_int_equal(plx_bus_call(f->bus, f->service_id, "Publish", "order/sync", 10,
                                      PLX_TIMEOUT_DEFAULT, &reply), 0);
        assert_int_equal(harness_bus_drain(f->bus), 0);
        assert_int_equal(rec->n, 1);
        assert_string_equal(rec->items[0].topic, "order/sync");
        assert_string_equal(rec->items[0].payload, SERVICE_PUBLISH_PAYLOAD);
        assert_string_equal(rec->items[0].sender, f->service_id);
        assert_true(rec->items[0].delivery < plx_msg_get_delivery(reply));
        assert_true(rec->items[0].sequence < plx_msg_get_sequence(reply));

        /* Asynchronous: callbacks run in arrival order. */
        log.events[0] = 0;
        assert_int_equal(plx_bus_call_async(f->bus, NULL, f->service_id, "Publish", "order/async", 11,
                                            PLX_TIMEOUT_DEFAULT, on_order_reply, &log), 0);
        assert_int_equal(harness_bus_wait(f->bus, &log.done, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_string_equal(log.events, "SR");
        assert_int_equal(rec->n, 2);
        assert_int_equal(rec->items[1].delivery + 1, log.reply_delivery);
        free(rec);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                SERVICE_TEST(test_exact),
                SERVICE_TEST(test_plus),
                SERVICE_TEST(test_hash),
                SERVICE_TEST(test_overlapping),
                SERVICE_TEST(test_sequence_delivery),
                SERVICE_TEST(test_unsubscribe),
                SERVICE_TEST(test_reserved_and_invalid),
                SERVICE_TEST(test_signal_before_reply),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
