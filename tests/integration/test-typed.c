/*
 * Typed services through a real broker (plexus/protobuf.h): a forked
 * process exports plexus.test.Calculator (tests/proto/typed-test.proto);
 * the test's own connection calls it typed and untyped, introspects it and
 * the broker, and exchanges typed signals.
 */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <plexus/protobuf.h>

#include "calculator.h"
#include "harness.h"
#include "plexus.pb-c.h"
#include "plexus-descriptor.h"
#include "typed-test.pb-c.h"
#include "typed-test-descriptor.h"


typedef struct Fixture {
        Harness harness;
        HarnessChild service;
        char service_id[300];
        plx_bus *bus;
} Fixture;

typedef struct ServiceOptions {
        const char *address;
        bool with_descriptors;
} ServiceOptions;

static int service_child(int report_fd, int control_fd, void *userdata) {
        const ServiceOptions *o = userdata;
        plx_bus *bus = NULL;
        int r;

        child_assert(plx_bus_new(&bus, o->address, "typed-test-service") == 0);
        child_assert_int_eq(plx_bus_add_method(bus, NULL, "Quit", calculator_quit, NULL), 0);
        child_assert_int_eq(calculator_export(bus, NULL, o->with_descriptors), 0);
        child_assert_int_eq(plx_bus_add_method(bus, NULL, "PublishTick", calculator_publish_tick, NULL), 0);
        /* A method of the same name as a typed one: refused. */
        child_assert_int_eq(plx_bus_add_method(bus, NULL, "Add", calculator_quit, NULL), -EEXIST);
        harness_report(report_fd, "ready %s", plx_bus_get_unique_id(bus));
        r = plx_bus_run(bus);
        plx_bus_free(bus);
        return r < 0 && r != -ECONNRESET ? 1 : 0;
}

static int fixture_setup_with(void **state, bool with_descriptors) {
        Fixture *f = calloc(1, sizeof(*f));
        ServiceOptions o = { .with_descriptors = with_descriptors };
        char line[300];

        assert_non_null(f);
        assert_int_equal(harness_prepare(&f->harness), 0);
        assert_int_equal(harness_broker_start(&f->harness), 0);
        o.address = f->harness.address;
        assert_int_equal(harness_child_fork(&f->service, service_child, &o), 0);
        assert_true(harness_read_line(f->service.report_fd, line, sizeof(line),
                                      harness_timeout_ms(HARNESS_TIMEOUT_MS)) > 0);
        assert_int_equal(strncmp(line, "ready ", 6), 0);
        snprintf(f->service_id, sizeof(f->service_id), "%s", line + 6);
        assert_int_equal(plx_bus_new(&f->bus, f->harness.address, "typed-test"), 0);
        *state = f;
        return 0;
}

static int fixture_setup(void **state) {
        return fixture_setup_with(state, true);
}

static int fixture_setup_untyped(void **state) {
        return fixture_setup_with(state, false);
}

static int fixture_teardown(void **state) {
        Fixture *f = *state;

        assert_int_equal(plx_bus_call(f->bus, f->service_id, "Quit", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        assert_int_equal(harness_child_wait(&f->service, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        harness_child_close(&f->service);
        plx_bus_free(f->bus);
        assert_int_equal(harness_cleanup(&f->harness), 0);
        free(f);
        return 0;
}

static void test_typed_call(void **state) {
        Fixture *f = *state;
        Plexus__Test__AddRequest req = PLEXUS__TEST__ADD_REQUEST__INIT;
        ProtobufCMessage *reply = NULL;
        plx_msg *answer = NULL;

        req.a = 40;
        req.b = -((int64_t)1 << 40);
        assert_int_equal(plx_bus_call_method(f->bus, f->service_id, &plexus__test__calculator__descriptor, "Add",
                                             &req.base, PLX_TIMEOUT_DEFAULT, &reply, &answer), 0);
        assert_non_null(reply);
        assert_ptr_equal(reply->descriptor, &plexus__test__add_reply__descriptor);
        assert_int_equal(((Plexus__Test__AddReply *)reply)->sum, 40 - ((int64_t)1 << 40));
        assert_int_equal(plx_msg_get_kind(answer), PLX_MSG_REPLY);
        protobuf_c_message_free_unpacked(reply, NULL);
        plx_msg_unref(answer);

        /* By member and reply type, and with no request at all (all defaults). */
        reply = NULL;
        assert_int_equal(plx_bus_call_message(f->bus, f->service_id, "Add", NULL,
                                              &plexus__test__add_reply__descriptor, PLX_TIMEOUT_DEFAULT,
                                              &reply, NULL), 0);
        assert_int_equal(((Plexus__Test__AddReply *)reply)->sum, 0);
        protobuf_c_message_free_unpacked(reply, NULL);
}

static void test_typed_call_checks_types(void **state) {
        Fixture *f = *state;
        Plexus__Test__Tick tick = PLEXUS__TEST__TICK__INIT;
        ProtobufCMessage *reply = NULL;

        /* The caller's side: a request of another type, an unknown method. */
        assert_int_equal(plx_bus_call_method(f->bus, f->service_id, &plexus__test__calculator__descriptor, "Add",
                                             &tick.base, PLX_TIMEOUT_DEFAULT, &reply, NULL), -EINVAL);
        assert_int_equal(plx_bus_call_method(f->bus, f->service_id, &plexus__test__calculator__descriptor, "Sub",
                                             NULL, PLX_TIMEOUT_DEFAULT, &reply, NULL), -EINVAL);
        assert_null(reply);
}

static void test_bad_request_is_invalid_args(void **state) {
        Fixture *f = *state;
        /* Field 1 (int64 a) sent as length-delimited: not an AddRequest. */
        static const uint8_t bad[] = { 0x0a, 0x01, 0x41 };
        plx_msg *answer = NULL;

        assert_int_equal(plx_bus_call(f->bus, f->service_id, "Add", bad, sizeof(bad), PLX_TIMEOUT_DEFAULT,
                                      &answer), -EREMOTEIO);
        assert_string_equal(plx_msg_get_error_name(answer), PLX_ERROR_INVALID_ARGS);
        assert_non_null(strstr(plx_msg_get_error_message(answer), "plexus.test.AddRequest"));
        plx_msg_unref(answer);
}

static void test_wrong_reply_type_refused(void **state) {
        Fixture *f = *state;
        plx_msg *answer = NULL;

        assert_int_equal(plx_bus_call_message(f->bus, f->service_id, "Wrong", NULL,
                                              &plexus__test__add_reply__descriptor, PLX_TIMEOUT_DEFAULT, NULL,
                                              &answer), -EREMOTEIO);
        assert_string_equal(plx_msg_get_error_name(answer), "plexus.test.Error.Refused");
        plx_msg_unref(answer);
}

static void test_unimplemented_method(void **state) {
        Fixture *f = *state;
        plx_msg *answer = NULL;

        assert_int_equal(plx_bus_call_message(f->bus, f->service_id, "Unimplemented", NULL,
                                              &plexus__test__add_reply__descriptor, PLX_TIMEOUT_DEFAULT, NULL,
                                              &answer), -EREMOTEIO);
        assert_string_equal(plx_msg_get_error_name(answer), PLX_ERROR_UNKNOWN_METHOD);
        plx_msg_unref(answer);
}

/* A REPLY that is not of the expected type: -EBADMSG, the bytes still there. */
static void test_reply_not_of_expected_type(void **state) {
        Fixture *f = *state;
        Plexus__Test__BigRequest req = PLEXUS__TEST__BIG_REQUEST__INIT;
        plx_msg *answer = NULL;
        size_t size;

        /* A BigReply {data: 3 bytes} read as an AddReply: field 1 has the wrong wire type. */
        req.size = 3;
        assert_int_equal(plx_bus_call_message(f->bus, f->service_id, "Big", &req.base,
                                              &plexus__test__add_reply__descriptor, PLX_TIMEOUT_DEFAULT, NULL,
                                              &answer), -EBADMSG);
        assert_int_equal(plx_msg_get_kind(answer), PLX_MSG_REPLY);
        plx_msg_get_payload(answer, &size);
        assert_int_equal(size, 5);
        plx_msg_unref(answer);
}

/* Everything, with every kind of field set, comes back equal. */
static void test_echo_everything(void **state) {
        Fixture *f = *state;
        Plexus__Test__Everything e = PLEXUS__TEST__EVERYTHING__INIT, *back;
        Plexus__Test__Everything__Inner inner = PLEXUS__TEST__EVERYTHING__INNER__INIT, *inners[1] = { &inner };
        Plexus__Test__Everything__CountsEntry c1 = PLEXUS__TEST__EVERYTHING__COUNTS_ENTRY__INIT, *counts[1] = { &c1 };
        Plexus__Test__Point where = PLEXUS__TEST__POINT__INIT;
        int32_t numbers[] = { 1, -2, 300000 }, values[] = { -5, 5 };
        char *words[] = { (char *)"a", (char *)"bc" };
        Plexus__Test__Everything__Color colors[] = { PLEXUS__TEST__EVERYTHING__COLOR__COLOR_GREEN };
        ProtobufCMessage *reply = NULL;
        uint8_t packed[512], repacked[512];
        size_t n;

        e.f_double = -2.5;
        e.f_float = 1.25f;
        e.f_int32 = -7;
        e.f_int64 = INT64_MIN;
        e.f_uint32 = UINT32_MAX;
        e.f_uint64 = UINT64_MAX;
        e.f_sint32 = -8;
        e.f_sint64 = -9;
        e.f_fixed32 = 10;
        e.f_fixed64 = 11;
        e.f_sfixed32 = -12;
        e.f_sfixed64 = -13;
        e.f_bool = true;
        e.f_string = (char *)"grüße";
        e.f_bytes.data = (uint8_t *)"\0\1\2";
        e.f_bytes.len = 3;
        e.color = PLEXUS__TEST__EVERYTHING__COLOR__COLOR_RED;
        inner.label = (char *)"in";
        inner.n_values = 2;
        inner.values = values;
        e.inner = &inner;
        e.n_inners = 1;
        e.inners = inners;
        e.n_numbers = 3;
        e.numbers = numbers;
        e.n_words = 2;
        e.words = words;
        e.n_colors = 1;
        e.colors = colors;
        c1.key = (char *)"k";
        c1.value = 3;
        e.n_counts = 1;
        e.counts = counts;
        e.choice_case = PLEXUS__TEST__EVERYTHING__CHOICE_CHOICE_NUMBER;
        e.choice_number = 42;
        where.x = 1;
        where.y = -1;
        e.where = &where;

        assert_int_equal(plx_bus_call_method(f->bus, f->service_id, &plexus__test__calculator__descriptor, "Echo",
                                             &e.base, PLX_TIMEOUT_DEFAULT, &reply, NULL), 0);
        back = (Plexus__Test__Everything *)reply;
        n = protobuf_c_message_pack(&e.base, packed);
        assert_int_equal(protobuf_c_message_get_packed_size(reply), n);
        protobuf_c_message_pack(reply, repacked);
        assert_memory_equal(packed, repacked, n);
        assert_string_equal(back->f_string, "grüße");
        assert_int_equal(back->choice_case, PLEXUS__TEST__EVERYTHING__CHOICE_CHOICE_NUMBER);
        protobuf_c_message_free_unpacked(reply, NULL);
}

/* A reply far above one frame: packed into a shared buffer, unpacked on arrival. */
static void test_large_reply(void **state) {
        Fixture *f = *state;
        Plexus__Test__BigRequest req = PLEXUS__TEST__BIG_REQUEST__INIT;
        ProtobufCMessage *reply = NULL;
        Plexus__Test__BigReply *big;

        req.size = 3u << 20;
        assert_int_equal(plx_bus_call_method(f->bus, f->service_id, &plexus__test__calculator__descriptor, "Big",
                                             &req.base, PLX_TIMEOUT_DEFAULT, &reply, NULL), 0);
        big = (Plexus__Test__BigReply *)reply;
        assert_int_equal(big->data.len, req.size);
        for (size_t i = 0; i < big->data.len; i += 4099)
                assert_int_equal(big->data.data[i], (uint8_t)(i * 13 + 1));
        protobuf_c_message_free_unpacked(reply, NULL);
}

typedef struct AsyncAnswer {
        bool done;
        int kind;
        int64_t sum;
        bool had_reply;
} AsyncAnswer;

static int on_async_answer(plx_msg *answer, const ProtobufCMessage *reply, void *userdata) {
        AsyncAnswer *a = userdata;

        a->done = true;
        a->kind = plx_msg_get_kind(answer);
        a->had_reply = reply != NULL;
        if (reply)
                a->sum = ((const Plexus__Test__AddReply *)reply)->sum;
        return 0;
}

static void test_async_typed_call(void **state) {
        Fixture *f = *state;
        Plexus__Test__AddRequest req = PLEXUS__TEST__ADD_REQUEST__INIT;
        AsyncAnswer a = {}, b = {};
        plx_slot *slot = NULL;

        req.a = 2;
        req.b = 3;
        assert_int_equal(plx_bus_call_message_async(f->bus, &slot, f->service_id, "Add", &req.base,
                                                    &plexus__test__add_reply__descriptor, PLX_TIMEOUT_DEFAULT,
                                                    on_async_answer, &a), 0);
        /* A floating one, answered with an error: no reply to unpack. */
        assert_int_equal(plx_bus_call_message_async(f->bus, NULL, f->service_id, "Unimplemented", &req.base,
                                                    &plexus__test__add_reply__descriptor, PLX_TIMEOUT_DEFAULT,
                                                    on_async_answer, &b), 0);
        assert_int_equal(harness_bus_wait(f->bus, &a.done, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(harness_bus_wait(f->bus, &b.done, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(a.kind, PLX_MSG_REPLY);
        assert_true(a.had_reply);
        assert_int_equal(a.sum, 5);
        assert_int_equal(b.kind, PLX_MSG_ERROR);
        assert_false(b.had_reply);
        plx_slot_free(slot);

        /* Cancelled before the answer: the callback never runs, nothing leaks. */
        a = (AsyncAnswer){};
        assert_int_equal(plx_bus_call_message_async(f->bus, &slot, f->service_id, "Add", &req.base,
                                                    &plexus__test__add_reply__descriptor, PLX_TIMEOUT_DEFAULT,
                                                    on_async_answer, &a), 0);
        plx_slot_free(slot);
        assert_int_equal(plx_bus_call(f->bus, f->service_id, "Add", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        assert_int_equal(harness_bus_drain(f->bus), 0);
        assert_false(a.done);
}

typedef struct Ticks {
        unsigned int n_valid;
        unsigned int n_invalid;
        uint64_t last_n;
} Ticks;

static int on_tick(plx_msg *signal, const ProtobufCMessage *message, void *userdata) {
        Ticks *t = userdata;

        if (!message) {
                t->n_invalid++;
                return 0;
        }
        t->n_valid++;
        t->last_n = ((const Plexus__Test__Tick *)message)->n;
        return 0;
}

static void test_typed_signals(void **state) {
        Fixture *f = *state;
        plx_slot *slot = NULL;
        Ticks t = {};

        assert_int_equal(plx_bus_subscribe_message(f->bus, &slot, CALCULATOR_TICK_TOPIC, &plexus__test__tick__descriptor,
                                                   on_tick, &t), 0);
        /* The service publishes a Tick and then garbage, before it replies. */
        assert_int_equal(plx_bus_call(f->bus, f->service_id, "PublishTick", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        assert_int_equal(harness_bus_drain(f->bus), 0);
        assert_int_equal(t.n_valid, 1);
        assert_int_equal(t.n_invalid, 1);
        assert_int_equal(t.last_n, 7);
        plx_slot_free(slot);
}

static Plexus__Introspection *introspect(plx_bus *bus, const char *destination) {
        ProtobufCMessage *reply = NULL;

        assert_int_equal(plx_bus_call_message(bus, destination, PLX_INTROSPECT, NULL,
                                              &plexus__introspection__descriptor, PLX_TIMEOUT_DEFAULT, &reply,
                                              NULL), 0);
        return (Plexus__Introspection *)reply;
}

static const Plexus__MethodInfo *find_method(const Plexus__Introspection *in, const char *name) {
        for (size_t i = 0; i < in->n_methods; i++)
                if (strcmp(in->methods[i]->name, name) == 0)
                        return in->methods[i];
        return NULL;
}

static void test_introspect_service(void **state) {
        Fixture *f = *state;
        Plexus__Introspection *in = introspect(f->bus, f->service_id);
        const Plexus__MethodInfo *m;

        assert_non_null(strstr(in->library, "libplexus "));
        /* Registration order: Quit, the four typed handlers, PublishTick. */
        assert_int_equal(in->n_methods, 6);
        assert_string_equal(in->methods[0]->name, "Quit");
        assert_string_equal(in->methods[1]->name, "Add");
        assert_string_equal(in->methods[5]->name, "PublishTick");
        m = find_method(in, "Add");
        assert_string_equal(m->service, "plexus.test.Calculator");
        assert_string_equal(m->request_type, "plexus.test.AddRequest");
        assert_string_equal(m->reply_type, "plexus.test.AddReply");
        m = find_method(in, "Quit");
        assert_string_equal(m->service, "");
        assert_string_equal(m->request_type, "");
        assert_null(find_method(in, "Unimplemented"));
        assert_int_equal(in->n_topics, 1);
        assert_string_equal(in->topics[0]->pattern, CALCULATOR_TICK_TOPIC);
        assert_string_equal(in->topics[0]->message_type, "plexus.test.Tick");
        /* The set protoc-c wrote at build time, imports included. */
        assert_int_equal(in->descriptor_set.len, typed_test_descriptor_set_size);
        assert_memory_equal(in->descriptor_set.data, typed_test_descriptor_set, typed_test_descriptor_set_size);
        assert_non_null(memmem(in->descriptor_set.data, in->descriptor_set.len, "typed-test-common.proto",
                               strlen("typed-test-common.proto")));
        protobuf_c_message_free_unpacked(&in->base, NULL);
}

/* Built without a descriptor set: still typed calls, and Introspect names the types. */
static void test_introspect_without_descriptors(void **state) {
        Fixture *f = *state;
        Plexus__Introspection *in = introspect(f->bus, f->service_id);
        Plexus__Test__AddRequest req = PLEXUS__TEST__ADD_REQUEST__INIT;
        ProtobufCMessage *reply = NULL;

        assert_int_equal(in->descriptor_set.len, 0);
        assert_string_equal(find_method(in, "Add")->request_type, "plexus.test.AddRequest");
        protobuf_c_message_free_unpacked(&in->base, NULL);

        req.a = req.b = 1;
        assert_int_equal(plx_bus_call_method(f->bus, f->service_id, &plexus__test__calculator__descriptor, "Add",
                                             &req.base, PLX_TIMEOUT_DEFAULT, &reply, NULL), 0);
        assert_int_equal(((Plexus__Test__AddReply *)reply)->sum, 2);
        protobuf_c_message_free_unpacked(reply, NULL);
}

typedef struct Introspected {
        bool done;
        int kind;
        size_t n_methods;
        size_t n_topics;
        size_t set_len;
        char library[64];
} Introspected;

static int on_introspected(plx_msg *answer, const ProtobufCMessage *reply, void *userdata) {
        const Plexus__Introspection *in = (const Plexus__Introspection *)reply;
        Introspected *i = userdata;

        i->done = true;
        i->kind = plx_msg_get_kind(answer);
        if (in) {
                i->n_methods = in->n_methods;
                i->n_topics = in->n_topics;
                i->set_len = in->descriptor_set.len;
                snprintf(i->library, sizeof(i->library), "%s", in->library);
        }
        return 0;
}

/* A client that registered nothing still answers, without the application's help. */
static void test_introspect_plain_client(void **state) {
        Fixture *f = *state;
        Introspected i = {};
        plx_bus *other = NULL;
        uint64_t end = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);

        assert_int_equal(plx_bus_new(&other, f->harness.address, "typed-test-other"), 0);
        assert_int_equal(plx_bus_call_message_async(f->bus, NULL, plx_bus_get_unique_id(other), PLX_INTROSPECT,
                                                    NULL, &plexus__introspection__descriptor, PLX_TIMEOUT_DEFAULT,
                                                    on_introspected, &i), 0);
        while (!i.done && harness_now_ms() < end) {
                assert_true(plx_bus_process(f->bus) >= 0);
                assert_true(plx_bus_flush(f->bus) >= 0);
                assert_true(plx_bus_process(other) >= 0);
                assert_true(plx_bus_flush(other) >= 0);
                usleep(1000);
        }
        assert_true(i.done);
        assert_int_equal(i.kind, PLX_MSG_REPLY);
        assert_int_equal(i.n_methods, 0);
        assert_int_equal(i.n_topics, 0);
        assert_int_equal(i.set_len, 0);
        assert_non_null(strstr(i.library, "libplexus "));
        plx_bus_free(other);
}

static void test_introspect_broker(void **state) {
        Fixture *f = *state;
        Plexus__Introspection *in = introspect(f->bus, PLX_BROKER);
        const Plexus__MethodInfo *m;
        bool names = false;

        assert_non_null(strstr(in->library, "plexusd "));
        m = find_method(in, "GetStats");
        assert_non_null(m);
        assert_string_equal(m->service, "plexus.Broker");
        assert_string_equal(m->request_type, "plexus.Empty");
        assert_string_equal(m->reply_type, "plexus.Stats");
        assert_non_null(find_method(in, "Introspect"));
        for (size_t i = 0; i < in->n_topics; i++)
                if (strcmp(in->topics[i]->pattern, "plexus/names/#") == 0) {
                        assert_string_equal(in->topics[i]->message_type, "plexus.NameOwnerChanged");
                        names = true;
                }
        assert_true(names);
        assert_int_equal(in->descriptor_set.len, plexus_descriptor_set_size);
        assert_memory_equal(in->descriptor_set.data, plexus_descriptor_set, plexus_descriptor_set_size);

        /* Every method it lists is one it answers (Ping takes an Empty; the others refuse empty input or answer). */
        for (size_t i = 0; i < in->n_methods; i++) {
                plx_msg *answer = NULL;
                int r;

                if (strcmp(in->methods[i]->name, "BecomeMonitor") == 0)
                        continue;       /* would turn this connection into a monitor */
                r = plx_bus_call(f->bus, PLX_BROKER, in->methods[i]->name, NULL, 0, PLX_TIMEOUT_DEFAULT, &answer);
                if (r == -EREMOTEIO)
                        assert_string_not_equal(plx_msg_get_error_name(answer), PLX_ERROR_UNKNOWN_METHOD);
                plx_msg_unref(answer);
        }
        protobuf_c_message_free_unpacked(&in->base, NULL);
}

/* Withdrawing the export withdraws its methods and its description. */
static int export_and_withdraw(int report_fd, int control_fd, void *userdata) {
        const char *address = userdata;
        static const plx_method_handler bogus[] = { { "NotAMethod", calculator_quit_typed }, {} };
        plx_interface bad = { .service = &plexus__test__calculator__descriptor, .methods = bogus };
        plx_slot *slot = NULL;
        plx_bus *bus = NULL;
        char c;

        child_assert(plx_bus_new(&bus, address, "typed-test-withdraw") == 0);
        child_assert_int_eq(plx_bus_export(bus, NULL, &bad, NULL), -EINVAL);
        child_assert_int_eq(calculator_export(bus, &slot, true), 0);
        /* Exporting the same service twice collides on its method names. */
        child_assert_int_eq(calculator_export(bus, NULL, true), -EEXIST);
        harness_report(report_fd, "ready %s", plx_bus_get_unique_id(bus));
        /* Serve until told, then withdraw and serve on. */
        while (!harness_poll_byte(control_fd, &c))
                child_assert(plx_bus_process(bus) >= 0 && plx_bus_flush(bus) >= 0);
        plx_slot_free(slot);
        harness_report(report_fd, "withdrawn");
        while (!harness_poll_byte(control_fd, &c))
                child_assert(plx_bus_process(bus) >= 0 && plx_bus_flush(bus) >= 0);
        plx_bus_free(bus);
        return 0;
}

static void test_withdraw_export(void **state) {
        Fixture *f = *state;
        HarnessChild c = HARNESS_CHILD_NULL;
        Plexus__Introspection *in;
        char line[300], id[300];
        plx_msg *answer = NULL;

        assert_int_equal(harness_child_fork(&c, export_and_withdraw, f->harness.address), 0);
        assert_true(harness_read_line(c.report_fd, line, sizeof(line), harness_timeout_ms(HARNESS_TIMEOUT_MS)) > 0);
        assert_int_equal(strncmp(line, "ready ", 6), 0);
        snprintf(id, sizeof(id), "%s", line + 6);

        in = introspect(f->bus, id);
        assert_int_equal(in->n_methods, 4);
        assert_int_equal(in->n_topics, 1);
        protobuf_c_message_free_unpacked(&in->base, NULL);
        assert_int_equal(plx_bus_call(f->bus, id, "Add", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);

        assert_int_equal(harness_write_byte(c.control_fd, 'w'), 0);
        assert_true(harness_read_line(c.report_fd, line, sizeof(line), harness_timeout_ms(HARNESS_TIMEOUT_MS)) > 0);
        assert_string_equal(line, "withdrawn");
        in = introspect(f->bus, id);
        assert_int_equal(in->n_methods, 0);
        assert_int_equal(in->n_topics, 0);
        assert_int_equal(in->descriptor_set.len, 0);
        protobuf_c_message_free_unpacked(&in->base, NULL);
        assert_int_equal(plx_bus_call(f->bus, id, "Add", NULL, 0, PLX_TIMEOUT_DEFAULT, &answer), -EREMOTEIO);
        assert_string_equal(plx_msg_get_error_name(answer), PLX_ERROR_UNKNOWN_METHOD);
        plx_msg_unref(answer);

        assert_int_equal(harness_write_byte(c.control_fd, 'q'), 0);
        assert_int_equal(harness_child_wait(&c, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        harness_child_close(&c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_typed_call, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_typed_call_checks_types, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_bad_request_is_invalid_args, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_wrong_reply_type_refused, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_unimplemented_method, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_reply_not_of_expected_type, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_echo_everything, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_large_reply, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_async_typed_call, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_typed_signals, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_introspect_service, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_introspect_without_descriptors, fixture_setup_untyped,
                                                fixture_teardown),
                cmocka_unit_test_setup_teardown(test_introspect_plain_client, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_introspect_broker, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_withdraw_export, fixture_setup, fixture_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
