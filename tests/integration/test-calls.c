/*
 * Calls through a real broker: round trips of several sizes, remote errors
 * (from a handler, from libplexus, from the broker), async calls, local
 * timeouts and the fields the broker stamps on every frame.
 *
 * The callee is the forked test service (service.h); the caller is the
 * test's own connection, so plx_bus_call() can block while the service's
 * process answers.
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

/* Async answers land here. */
typedef struct Answer {
        plx_msg *msg;
        unsigned int n_calls;
        bool done;
} Answer;

static int on_answer(plx_msg *msg, void *userdata) {
        Answer *a = userdata;

        a->n_calls++;
        if (!a->msg)
                a->msg = plx_msg_ref(msg);
        a->done = true;
        return 0;
}

static void echo_size(ServiceFixture *f, size_t size) {
        _cleanup_msg_ plx_msg *reply = NULL;
        const uint8_t *p;
        uint8_t *buf;
        size_t n;
        int r;

        buf = malloc(size + 1);
        assert_non_null(buf);
        for (size_t i = 0; i < size; i++)
                buf[i] = (uint8_t)(i * 7 + 3);

        r = plx_bus_call(f->bus, f->service_id, "Echo", size ? buf : NULL, size,
                         PLX_TIMEOUT_DEFAULT, &reply);
        assert_int_equal(r, 0);
        assert_non_null(reply);
        assert_int_equal(plx_msg_get_kind(reply), PLX_MSG_REPLY);
        assert_int_not_equal(plx_msg_get_reply_serial(reply), 0);
        assert_string_equal(plx_msg_get_sender(reply), f->service_id);
        p = plx_msg_get_payload(reply, &n);
        assert_int_equal(n, size);
        if (size > 0)
                assert_memory_equal(p, buf, size);
        free(buf);
}

static void test_echo_sizes(void **state) {
        ServiceFixture *f = *state;

        echo_size(f, 0);
        echo_size(f, 64);
        echo_size(f, 100 * 1024);
        echo_size(f, 1);
}

/*
 * With the large path switched off, a payload that cannot fit a frame is
 * refused before anything is sent (test-large.c covers the large path).
 */
static void test_echo_too_large(void **state) {
        ServiceFixture *f = *state;
        size_t size = 128 * 1024;
        uint8_t *buf;
        int r;

        buf = calloc(1, size);
        assert_non_null(buf);
        assert_int_equal(plx_bus_set_large_path(f->bus, PLX_LARGE_INLINE), 0);
        r = plx_bus_call(f->bus, f->service_id, "Echo", buf, size, PLX_TIMEOUT_DEFAULT, NULL);
        assert_int_equal(r, -EMSGSIZE);
        free(buf);

        /* The connection is still usable. */
        echo_size(f, 64);
}

static void expect_remote_error(ServiceFixture *f, const char *destination, const char *member,
                                const char *name, const char *message) {
        _cleanup_msg_ plx_msg *reply = NULL;
        int r;

        r = plx_bus_call(f->bus, destination, member, NULL, 0, PLX_TIMEOUT_DEFAULT, &reply);
        assert_int_equal(r, -EREMOTEIO);
        assert_non_null(reply);
        assert_int_equal(plx_msg_get_kind(reply), PLX_MSG_ERROR);
        assert_string_equal(plx_msg_get_error_name(reply), name);
        assert_non_null(plx_msg_get_error_message(reply));
        if (message)
                assert_non_null(strstr(plx_msg_get_error_message(reply), message));
        assert_null(plx_msg_get_member(reply));
        assert_null(plx_msg_get_topic(reply));
}

static void test_remote_error(void **state) {
        ServiceFixture *f = *state;

        expect_remote_error(f, f->service_id, "Fail", SERVICE_ERROR_NAME, SERVICE_ERROR_MESSAGE);
}

static void test_unknown_method(void **state) {
        ServiceFixture *f = *state;

        expect_remote_error(f, f->service_id, "NoSuchMethod", PLX_ERROR_UNKNOWN_METHOD, NULL);
}

static void test_service_unknown(void **state) {
        ServiceFixture *f = *state;
        _cleanup_msg_ plx_msg *reply = NULL;

        expect_remote_error(f, ":999999", "Echo", PLX_ERROR_SERVICE_UNKNOWN, NULL);

        /* The broker's own answer is stamped with the broker's name. */
        assert_int_equal(plx_bus_call(f->bus, ":424242", "Echo", NULL, 0, PLX_TIMEOUT_DEFAULT, &reply),
                         -EREMOTEIO);
        assert_string_equal(plx_msg_get_sender(reply), PLX_BROKER);
}

static void test_handler_eio(void **state) {
        ServiceFixture *f = *state;

        expect_remote_error(f, f->service_id, "EIO", PLX_ERROR_FAILED, strerror(EIO));
}

static void test_broker_ping(void **state) {
        ServiceFixture *f = *state;
        _cleanup_msg_ plx_msg *reply = NULL;

        assert_int_equal(plx_bus_call(f->bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, &reply), 0);
        assert_int_equal(plx_msg_get_kind(reply), PLX_MSG_REPLY);
        assert_string_equal(plx_msg_get_sender(reply), PLX_BROKER);

        expect_remote_error(f, PLX_BROKER, "NoSuchBrokerMethod", PLX_ERROR_UNKNOWN_METHOD, NULL);
}

static void test_async(void **state) {
        ServiceFixture *f = *state;
        Answer ok = {}, err = {}, cancelled = {};
        plx_slot *slot = NULL;
        const void *p;
        size_t n;

        assert_int_equal(plx_bus_call_async(f->bus, NULL, f->service_id, "Echo", "async", 5,
                                            PLX_TIMEOUT_DEFAULT, on_answer, &ok), 0);
        assert_int_equal(plx_bus_call_async(f->bus, NULL, f->service_id, "Fail", NULL, 0,
                                            PLX_TIMEOUT_DEFAULT, on_answer, &err), 0);
        /* Freed before its answer comes: the callback must never run. */
        assert_int_equal(plx_bus_call_async(f->bus, &slot, f->service_id, "Echo", "gone", 4,
                                            PLX_TIMEOUT_DEFAULT, on_answer, &cancelled), 0);
        assert_non_null(slot);
        slot = plx_slot_free(slot);
        assert_null(slot);

        assert_int_equal(harness_bus_wait(f->bus, &ok.done, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(harness_bus_wait(f->bus, &err.done, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);

        assert_int_equal(plx_msg_get_kind(ok.msg), PLX_MSG_REPLY);
        p = plx_msg_get_payload(ok.msg, &n);
        assert_int_equal(n, 5);
        assert_memory_equal(p, "async", 5);
        assert_ptr_equal(plx_msg_get_bus(ok.msg), f->bus);

        assert_int_equal(plx_msg_get_kind(err.msg), PLX_MSG_ERROR);
        assert_string_equal(plx_msg_get_error_name(err.msg), SERVICE_ERROR_NAME);
        assert_string_equal(plx_msg_get_error_message(err.msg), SERVICE_ERROR_MESSAGE);

        /* A later sync call is answered after the cancelled one; by then its
         * reply has arrived and been dropped. */
        echo_size(f, 8);
        assert_int_equal(harness_bus_drain(f->bus), 0);
        assert_int_equal(cancelled.n_calls, 0);
        assert_int_equal(ok.n_calls, 1);
        assert_int_equal(err.n_calls, 1);

        plx_msg_unref(ok.msg);
        plx_msg_unref(err.msg);
}

static void test_local_timeout(void **state) {
        ServiceFixture *f = *state;
        _cleanup_msg_ plx_msg *reply = NULL;
        Answer a = {};
        uint64_t start, elapsed;
        int r;

        start = harness_now_ms();
        r = plx_bus_call(f->bus, f->service_id, "Never", NULL, 0, 200 * 1000, &reply);
        elapsed = harness_now_ms() - start;
        if (r == -EREMOTEIO)
                fail_msg("expected -ETIMEDOUT, got remote error %s: %s", plx_msg_get_error_name(reply),
                         plx_msg_get_error_message(reply));
        assert_int_equal(r, -ETIMEDOUT);
        assert_true(elapsed >= 190);
        assert_true(elapsed < (uint64_t)harness_timeout_ms(2000));

        start = harness_now_ms();
        assert_int_equal(plx_bus_call_async(f->bus, NULL, f->service_id, "Never", NULL, 0, 200 * 1000,
                                            on_answer, &a), 0);
        assert_int_equal(harness_bus_wait(f->bus, &a.done, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        elapsed = harness_now_ms() - start;
        assert_true(elapsed >= 190);
        assert_true(elapsed < (uint64_t)harness_timeout_ms(2000));
        assert_int_equal(plx_msg_get_kind(a.msg), PLX_MSG_ERROR);
        assert_string_equal(plx_msg_get_error_name(a.msg), PLX_ERROR_TIMEOUT);
        /* The local timer and the broker's (same deadline) race; either is
         * fine, but a remote one must come from the broker. */
        if (plx_msg_get_bus(a.msg))
                assert_string_equal(plx_msg_get_sender(a.msg), PLX_BROKER);
        plx_msg_unref(a.msg);

        /* Whatever the broker does with the expired calls, the connection works. */
        echo_size(f, 16);
        assert_int_equal(harness_bus_drain(f->bus), 0);
        assert_int_equal(a.n_calls, 1);
}

static void test_sender_fields(void **state) {
        ServiceFixture *f = *state;
        _cleanup_msg_ plx_msg *reply = NULL;
        char text[300], sender[256];
        const void *p;
        unsigned int uid;
        int pid;
        size_t n;

        assert_int_equal(plx_bus_call(f->bus, f->service_id, "Whoami", NULL, 0, PLX_TIMEOUT_DEFAULT, &reply), 0);
        p = plx_msg_get_payload(reply, &n);
        assert_true(n < sizeof(text));
        memcpy(text, p, n);
        text[n] = 0;

        /* What the service saw on our CALL. */
        assert_int_equal(sscanf(text, "%255s %u %d", sender, &uid, &pid), 3);
        assert_string_equal(sender, plx_bus_get_unique_id(f->bus));
        assert_int_equal(uid, getuid());
        assert_int_equal(pid, getpid());

        /* What we see on its REPLY. */
        assert_string_equal(plx_msg_get_sender(reply), f->service_id);
        assert_int_equal(plx_msg_get_sender_uid(reply), getuid());
        assert_int_equal(plx_msg_get_sender_pid(reply), f->service.pid);
        assert_string_equal(plx_msg_get_destination(reply), plx_bus_get_unique_id(f->bus));
        assert_int_not_equal(plx_msg_get_sequence(reply), 0);
        assert_int_not_equal(plx_msg_get_delivery(reply), 0);
}

/* A call that expects no reply: failures still come back, to the error handler. */
static void test_send_call(void **state) {
        ServiceFixture *f = *state;
        ErrorLog log = {};

        plx_bus_set_error_handler(f->bus, error_log_record, &log);
        assert_int_equal(plx_bus_send_call(f->bus, f->service_id, "Echo", "x", 1), 0);
        assert_int_equal(plx_bus_send_call(f->bus, ":777777", "Echo", "x", 1), 0);
        assert_int_equal(harness_bus_wait(f->bus, &log.done, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_string_equal(log.name, PLX_ERROR_SERVICE_UNKNOWN);

        /* The service's answer to the first one was "nothing": no stray REPLY
         * reaches us, and the next call still works. */
        echo_size(f, 3);
        assert_int_equal(harness_bus_drain(f->bus), 0);
        assert_int_equal(log.n_errors, 1);
        plx_bus_set_error_handler(f->bus, NULL, NULL);
}

/* --- The timeout a callee sees ---------------------------------------------------- */

#define DEFAULT_TIMEOUT_MS 1234
#define MAX_TIMEOUT_MS 2345

/* Limits no code has built in, so that only the configured ones can match. */
static int timeout_fixture_setup(void **state) {
        return service_fixture_setup_config(state,
                                            "[limits]\n"
                                            "default_timeout_ms = 1234\n"
                                            "max_timeout_ms = 2345\n");
}

/*
 * What the service saw in timeout_ms of a CALL with @timeout_usec, as it
 * reported on its pipe before answering. The short timeouts may run out
 * before the answer arrives on a slow machine: then the call ends with the
 * broker's Timeout, which is fine here; an answer that does arrive must
 * say the same as the pipe.
 */
static unsigned long callee_timeout_ms(ServiceFixture *f, uint64_t timeout_usec) {
        _cleanup_msg_ plx_msg *reply = NULL;
        char line[64], expected[64];
        const void *p;
        size_t n;
        int r;

        r = plx_bus_call(f->bus, f->service_id, "Timeout", NULL, 0, timeout_usec, &reply);
        if (r != 0 && r != -ETIMEDOUT)
                fail_msg("Timeout call: %s", strerror(-r));
        assert_true(harness_read_line(f->service.report_fd, line, sizeof(line),
                                      harness_timeout_ms(HARNESS_TIMEOUT_MS)) >= 0);
        assert_true(strncmp(line, "timeout ", 8) == 0);
        if (r == 0) {
                p = plx_msg_get_payload(reply, &n);
                snprintf(expected, sizeof(expected), "timeout %.*s", (int)n, (const char *)p);
                assert_string_equal(line, expected);
        }
        return strtoul(line + 8, NULL, 10);
}

/*
 * The broker rewrites timeout_ms on every forwarded CALL to the deadline it
 * applies: its default for 0, the cap for more than the cap, else what the
 * caller asked for (docs/protocol.md §7.1). The callee relies on it to know
 * how long the caller waits.
 */
static void test_callee_timeout(void **state) {
        ServiceFixture *f = *state;
        static const struct {
                uint64_t timeout_usec;
                unsigned long expected_ms;
        } cases[] = {
                { PLX_TIMEOUT_DEFAULT, DEFAULT_TIMEOUT_MS },     /* sent as 0 */
                { 1000, 1 },
                { 500 * 1000, 500 },
                { (DEFAULT_TIMEOUT_MS + 1) * 1000ull, DEFAULT_TIMEOUT_MS + 1 },
                { MAX_TIMEOUT_MS * 1000ull, MAX_TIMEOUT_MS },
                { (MAX_TIMEOUT_MS + 1) * 1000ull, MAX_TIMEOUT_MS },
                { 3600ull * 1000 * 1000, MAX_TIMEOUT_MS },
                { (uint64_t)UINT32_MAX * 1000, MAX_TIMEOUT_MS },        /* sent as UINT32_MAX */
        };
        RawFrame *frame = raw_frame_new();
        Plexus__Header h = PLEXUS__HEADER__INIT;
        char id[64], line[64];
        int raw;

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                unsigned long got = callee_timeout_ms(f, cases[i].timeout_usec);

                if (got != cases[i].expected_ms)
                        fail_msg("a call with a timeout of %llu us reached the callee with timeout_ms %lu, expected %lu",
                                 (unsigned long long)cases[i].timeout_usec, got, cases[i].expected_ms);
        }

        /* A NO_REPLY call is stamped too (it has no deadline, but the callee learns the same). */
        assert_non_null(frame);
        raw = raw_connect(f->harness->address);
        assert_true(raw >= 0);
        assert_int_equal(raw_hello(raw, frame, id, sizeof(id)), 0);
        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = 2;
        h.destination = f->service_id;
        h.member = (char *)"Timeout";
        h.flags = 0x1;          /* NO_REPLY */
        h.timeout_ms = 99999;
        assert_int_equal(raw_send(raw, &h, NULL, 0), 0);
        h.serial = 3;
        h.timeout_ms = 0;
        assert_int_equal(raw_send(raw, &h, NULL, 0), 0);
        assert_true(harness_read_line(f->service.report_fd, line, sizeof(line),
                                      harness_timeout_ms(HARNESS_TIMEOUT_MS)) >= 0);
        assert_string_equal(line, "timeout 2345");
        assert_true(harness_read_line(f->service.report_fd, line, sizeof(line),
                                      harness_timeout_ms(HARNESS_TIMEOUT_MS)) >= 0);
        assert_string_equal(line, "timeout 1234");
        close(raw);
        raw_frame_free(frame);
}

static size_t read_varint(const uint8_t *p, size_t n, uint64_t *ret) {
        uint64_t v = 0;

        for (size_t i = 0; i < n && i < 10; i++) {
                v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
                if (!(p[i] & 0x80)) {
                        *ret = v;
                        return i + 1;
                }
        }
        return 0;
}

/* The number of the field at @p (a varint or length-delimited one); its length, 0 if malformed. */
static size_t read_field(const uint8_t *p, size_t n, uint32_t *ret_number) {
        uint64_t tag, value;
        size_t i, l;

        i = read_varint(p, n, &tag);
        if (i == 0 || ((tag & 7) != 0 && (tag & 7) != 2))
                return 0;
        l = read_varint(p + i, n - i, &value);
        if (l == 0)
                return 0;
        i += l;
        if ((tag & 7) == 2) {
                if (value > n - i)
                        return 0;
                i += (size_t)value;
        }
        *ret_number = (uint32_t)(tag >> 3);
        return i;
}

/*
 * The layout docs/protocol.md §3.3 promises: a receiver gets the sender's
 * header bytes as sent, then the broker's stamp (sender, timeout_ms for a
 * CALL, sequence, uid, pid, n_fds, gid, each written even when 0), then
 * delivery, last; decoded with the last occurrence winning, the broker's
 * values override what the sender wrote in those fields.
 */
static void test_forwarded_header_bytes(void **state) {
        ServiceFixture *f = *state;
        static const uint32_t stamp[] = { 5, 9, 10, 12, 13, 14, 15, 11 };
        Plexus__Header h = PLEXUS__HEADER__INIT;
        RawFrame *frame = raw_frame_new();
        uint8_t sent[256];
        char caller_id[64], callee_id[64];
        size_t sent_len, header_end, off, k = 0;
        int caller, callee;

        assert_non_null(frame);
        callee = raw_connect(f->harness->address);
        assert_true(callee >= 0);
        assert_int_equal(raw_hello(callee, frame, callee_id, sizeof(callee_id)), 0);
        caller = raw_connect(f->harness->address);
        assert_true(caller >= 0);
        assert_int_equal(raw_hello(caller, frame, caller_id, sizeof(caller_id)), 0);

        /* Forged stamped fields, and a timeout the broker keeps (it is below the cap). */
        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = 5;
        h.destination = callee_id;
        h.member = (char *)"Echo";
        h.timeout_ms = 1000;
        h.sender = (char *)":999";
        h.sequence = 77;
        h.delivery = 88;
        h.sender_uid = 4242;
        h.sender_pid = 4343;
        h.n_fds = 9;
        h.sender_gid = 4444;
        sent_len = plexus__header__pack(&h, sent);
        assert_true(sent_len < sizeof(sent));
        assert_int_equal(raw_send(caller, &h, "hi", 2), 0);

        assert_int_equal(raw_recv(callee, frame, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 1);
        assert_non_null(frame->header);
        /* What a decoder reads: the broker's values. */
        assert_string_equal(frame->header->sender, caller_id);
        assert_int_equal(frame->header->timeout_ms, 1000);
        assert_int_equal(frame->header->sender_uid, getuid());
        assert_int_equal(frame->header->sender_gid, getgid());
        assert_int_equal(frame->header->sender_pid, getpid());
        assert_int_equal(frame->header->n_fds, 0);
        assert_int_equal(frame->header->delivery, 2);
        assert_int_not_equal(frame->header->sequence, 77);
        assert_int_equal(frame->payload_len, 2);
        assert_memory_equal(frame->payload, "hi", 2);

        /* The bytes: ours unchanged, then the stamp in its order, delivery last. */
        header_end = (size_t)(frame->payload - frame->buf);
        off = FRAME_PREFIX_SIZE;
        assert_true(frame->len > off + sent_len);
        assert_memory_equal(frame->buf + off, sent, sent_len);
        off += sent_len;
        while (off < header_end) {
                uint32_t number;
                size_t l = read_field(frame->buf + off, header_end - off, &number);

                assert_true(l > 0);
                if (k >= sizeof(stamp) / sizeof(stamp[0]))
                        fail_msg("field %u after the stamp and delivery", number);
                if (number != stamp[k])
                        fail_msg("stamp field %zu is %u, expected %u", k, number, stamp[k]);
                k++;
                off += l;
        }
        assert_int_equal(k, sizeof(stamp) / sizeof(stamp[0]));

        close(caller);
        close(callee);
        raw_frame_free(frame);
}

/*
 * A CALL addressed to a monitor reaches it once, as the CALL: it is not also
 * copied to it as monitored traffic (docs/protocol.md §16), which would make
 * it arrive twice with nothing to tell the copy from the real one.
 */
static void test_call_to_monitor(void **state) {
        ServiceFixture *f = *state;
        Plexus__Header h = PLEXUS__HEADER__INIT;
        RawFrame *frame = raw_frame_new();
        char id[64];
        unsigned int n_hi = 0;
        bool synced = false;
        int mon;

        assert_non_null(frame);
        mon = raw_connect(f->harness->address);
        assert_true(mon >= 0);
        assert_int_equal(raw_hello(mon, frame, id, sizeof(id)), 0);
        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = 2;
        h.destination = (char *)PLX_BROKER;
        h.member = (char *)"BecomeMonitor";
        assert_int_equal(raw_send(mon, &h, NULL, 0), 0);
        assert_int_equal(raw_recv(mon, frame, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 1);
        assert_non_null(frame->header);
        assert_int_equal(frame->header->kind, PLEXUS__KIND__KIND_REPLY);
        assert_int_equal(frame->header->reply_serial, 2);

        assert_int_equal(plx_bus_send_call(f->bus, id, "Hi", "x", 1), 0);
        /* Routed after the Hi: once its copy is in, so is everything about the Hi. */
        assert_int_equal(plx_bus_call(f->bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        while (!synced) {
                assert_int_equal(raw_recv(mon, frame, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 1);
                assert_non_null(frame->header);
                if (frame->header->kind != PLEXUS__KIND__KIND_CALL ||
                    strcmp(frame->header->sender, plx_bus_get_unique_id(f->bus)) != 0)
                        continue;
                if (strcmp(frame->header->member, "Hi") == 0)
                        n_hi++;
                else if (strcmp(frame->header->member, "Ping") == 0)
                        synced = true;
        }
        assert_int_equal(n_hi, 1);
        close(mon);
        raw_frame_free(frame);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                SERVICE_TEST(test_echo_sizes),
                SERVICE_TEST(test_echo_too_large),
                SERVICE_TEST(test_remote_error),
                SERVICE_TEST(test_unknown_method),
                SERVICE_TEST(test_service_unknown),
                SERVICE_TEST(test_handler_eio),
                SERVICE_TEST(test_broker_ping),
                SERVICE_TEST(test_async),
                SERVICE_TEST(test_local_timeout),
                SERVICE_TEST(test_sender_fields),
                SERVICE_TEST(test_send_call),
                SERVICE_TEST(test_call_to_monitor),
                SERVICE_TEST(test_forwarded_header_bytes),
                cmocka_unit_test_setup_teardown(test_callee_timeout, timeout_fixture_setup,
                                                service_fixture_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
