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
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
