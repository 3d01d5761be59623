/*
 * Peers that vanish: a callee that dies with calls pending must make the
 * broker answer them with plexus.Error.Disconnected at once, long before
 * the calls' own timeouts; a caller that dies must not trouble the callee
 * that answers later.
 */

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "service.h"

#define LONG_TIMEOUT_USEC (20ull * 1000 * 1000)
#define PROMPT_MS 3000                  /* "promptly": well under LONG_TIMEOUT_USEC */

typedef struct Answer {
        plx_msg *msg;
        bool done;
} Answer;

static int on_answer(plx_msg *msg, void *userdata) {
        Answer *a = userdata;

        a->msg = plx_msg_ref(msg);
        a->done = true;
        return 0;
}

/* The handler kills its own process: the call is pending in the broker. */
static void test_callee_dies_sync(void **state) {
        ServiceFixture *f = *state;
        _cleanup_msg_ plx_msg *reply = NULL;
        uint64_t start, elapsed;
        int r;

        start = harness_now_ms();
        r = plx_bus_call(f->bus, f->service_id, "Die", NULL, 0, LONG_TIMEOUT_USEC, &reply);
        elapsed = harness_now_ms() - start;
        assert_int_equal(r, -EREMOTEIO);
        assert_string_equal(plx_msg_get_error_name(reply), PLX_ERROR_DISCONNECTED);
        if (elapsed >= (uint64_t)harness_timeout_ms(PROMPT_MS))
                fail_msg("Disconnected came after %llu ms", (unsigned long long)elapsed);

        assert_int_equal(harness_child_wait(&f->service, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 128 + SIGKILL);
}

/* Killed from outside while two calls wait; both get Disconnected. */
static void test_callee_killed_async(void **state) {
        ServiceFixture *f = *state;
        _cleanup_msg_ plx_msg *reply = NULL;
        Answer a = {}, b = {};
        char line[64];
        uint64_t start, elapsed;

        assert_int_equal(plx_bus_call_async(f->bus, NULL, f->service_id, "Never", NULL, 0, LONG_TIMEOUT_USEC,
                                            on_answer, &a), 0);
        assert_int_equal(plx_bus_call_async(f->bus, NULL, f->service_id, "Never", NULL, 0, LONG_TIMEOUT_USEC,
                                            on_answer, &b), 0);
        assert_int_equal(harness_bus_flush(f->bus, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);

        /* Kill only once the service holds both calls. */
        for (int i = 0; i < 2; i++) {
                assert_true(harness_read_line(f->service.report_fd, line, sizeof(line),
                                              harness_timeout_ms(HARNESS_TIMEOUT_MS)) >= 0);
                assert_string_equal(line, "never");
        }

        start = harness_now_ms();
        assert_int_equal(kill(f->service.pid, SIGKILL), 0);
        assert_int_equal(harness_bus_wait(f->bus, &a.done, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(harness_bus_wait(f->bus, &b.done, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        elapsed = harness_now_ms() - start;
        if (elapsed >= (uint64_t)harness_timeout_ms(PROMPT_MS))
                fail_msg("Disconnected came after %llu ms", (unsigned long long)elapsed);

        assert_int_equal(plx_msg_get_kind(a.msg), PLX_MSG_ERROR);
        assert_string_equal(plx_msg_get_error_name(a.msg), PLX_ERROR_DISCONNECTED);
        assert_string_equal(plx_msg_get_error_name(b.msg), PLX_ERROR_DISCONNECTED);
        /* It comes from the broker, not from libplexus. */
        assert_string_equal(plx_msg_get_sender(a.msg), PLX_BROKER);
        assert_ptr_equal(plx_msg_get_bus(a.msg), f->bus);
        plx_msg_unref(a.msg);
        plx_msg_unref(b.msg);

        assert_int_equal(harness_child_wait(&f->service, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 128 + SIGKILL);

        /* The id is gone for good. */
        assert_int_equal(plx_bus_call(f->bus, f->service_id, "Echo", NULL, 0, PLX_TIMEOUT_DEFAULT, &reply),
                         -EREMOTEIO);
        assert_string_equal(plx_msg_get_error_name(reply), PLX_ERROR_SERVICE_UNKNOWN);
}

typedef struct Holder {
        plx_msg *call;
        bool done;
} Holder;

static int on_hold(plx_msg *call, void *userdata) {
        Holder *h = userdata;

        h->call = plx_msg_ref(call);
        h->done = true;
        return 0;
}

typedef struct CallerArgs {
        const char *address;
        const char *destination;
} CallerArgs;

static int caller_main(int report_fd, int control_fd, void *userdata) {
        CallerArgs *a = userdata;
        _cleanup_bus_ plx_bus *bus = NULL;
        int r;

        r = plx_bus_new(&bus, a->address, "doomed-caller");
        if (r < 0)
                child_fail("plx_bus_new: %s", strerror(-r));
        r = plx_bus_call(bus, a->destination, "Hold", NULL, 0, LONG_TIMEOUT_USEC, NULL);
        child_fail("the call returned %d; the caller should have been killed", r);
}

/* The caller dies while we hold its call; answering afterwards is harmless, and refused. */
static void test_caller_dies(void **state) {
        ServiceFixture *f = *state;
        HarnessChild caller = HARNESS_CHILD_NULL;
        CallerArgs args = { .address = f->harness->address, .destination = plx_bus_get_unique_id(f->bus) };
        ErrorLog log = {};
        Holder held = {};
        int r;

        assert_int_equal(plx_bus_add_method(f->bus, NULL, "Hold", on_hold, &held), 0);
        assert_int_equal(harness_child_fork(&caller, caller_main, &args), 0);
        assert_int_equal(harness_bus_wait(f->bus, &held.done, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);

        assert_int_equal(kill(caller.pid, SIGKILL), 0);
        assert_int_equal(harness_child_wait(&caller, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 128 + SIGKILL);

        /* Let the broker notice the caller is gone: its id no longer resolves
         * (a call racing with the disconnect gets Disconnected; try again). */
        for (uint64_t deadline = harness_now_ms() + 2000;;) {
                _cleanup_msg_ plx_msg *reply = NULL;

                r = plx_bus_call(f->bus, plx_msg_get_sender(held.call), "Echo", NULL, 0,
                                 2000 * 1000, &reply);
                if (r == -EREMOTEIO && strcmp(plx_msg_get_error_name(reply), PLX_ERROR_SERVICE_UNKNOWN) == 0)
                        break;
                assert_true(harness_now_ms() < deadline);
        }

        /* The answer goes nowhere, and we are told why: the caller is not on the bus (§5.3, §7.2). */
        plx_bus_set_error_handler(f->bus, error_log_record, &log);
        r = plx_msg_reply(held.call, "late", 4);
        assert_int_equal(r, 0);
        plx_msg_unref(held.call);
        assert_int_equal(harness_bus_wait(f->bus, &log.done, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_string_equal(log.name, PLX_ERROR_SERVICE_UNKNOWN);
        assert_int_equal(log.n_errors, 1);
        plx_bus_set_error_handler(f->bus, NULL, NULL);

        /* Broker, service and our connection all still work. */
        assert_int_equal(plx_bus_call(f->bus, f->service_id, "Echo", "ok", 2, PLX_TIMEOUT_DEFAULT, NULL), 0);
        assert_int_equal(harness_bus_drain(f->bus), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                SERVICE_TEST(test_callee_dies_sync),
                SERVICE_TEST(test_callee_killed_async),
                SERVICE_TEST(test_caller_dies),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
