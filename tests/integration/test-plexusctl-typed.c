/*
 * plexusctl and typed services: introspect and tree, JSON calls through a
 * service's own descriptors (every kind of field, nested and repeated
 * fields, maps, oneofs, enums), clear errors for bad JSON and wrong types,
 * typed publish and decoded subscribe and monitor output, the broker as a
 * typed service, and a service without descriptors still usable untyped.
 *
 * The service is the program typed-service ($TYPED_SERVICE,
 * plexus.test.Calculator of tests/proto/typed-test.proto); plexusctl runs
 * as in test-plexusctl.c (ctlrun.h).
 */

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctlrun.h"
#include "harness.h"

#define CALCULATOR "org.plexus.test.Calculator"
#define UNTYPED "org.plexus.test.Untyped"

typedef struct Fixture {
        Harness *harness;
        HarnessChild typed;             /* owns CALCULATOR, with descriptors */
        HarnessChild untyped;           /* owns UNTYPED, without */
        char typed_id[128];
} Fixture;

static void service_start(HarnessChild *c, const char *name, bool descriptors, char *ret_id, size_t size) {
        char *argv[] = { getenv("TYPED_SERVICE"), (char *)name, descriptors ? NULL : (char *)"--no-descriptors",
                         NULL };
        char line[128];

        if (!argv[0])
                fail_msg("$TYPED_SERVICE is not set; run through meson test");
        assert_int_equal(harness_child_spawn(c, argv), 0);
        assert_true(harness_read_line(c->report_fd, line, sizeof(line), harness_timeout_ms(HARNESS_TIMEOUT_MS)) > 0);
        assert_int_equal(strncmp(line, "ready :", 7), 0);
        if (ret_id)
                snprintf(ret_id, size, "%s", line + 6);
}

static int fixture_setup(void **state) {
        Fixture *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        assert_int_equal(harness_setup(state), 0);
        f->harness = *state;
        f->typed = (HarnessChild)HARNESS_CHILD_NULL;
        f->untyped = (HarnessChild)HARNESS_CHILD_NULL;
        service_start(&f->typed, CALCULATOR, true, f->typed_id, sizeof(f->typed_id));
        service_start(&f->untyped, UNTYPED, false, NULL, 0);
        *state = f;
        return 0;
}

static int fixture_teardown(void **state) {
        Fixture *f = *state;
        Run r;

        /* Quit is untyped: an empty payload, answered with an empty reply. */
        ctl(&r, "call", CALCULATOR, "Quit");
        assert_exit(&r, 0);
        run_free(&r);
        ctl(&r, "call", UNTYPED, "Quit");
        assert_exit(&r, 0);
        run_free(&r);
        assert_int_equal(harness_child_wait(&f->typed, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(harness_child_wait(&f->untyped, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        harness_child_close(&f->typed);
        harness_child_close(&f->untyped);
        *state = f->harness;
        free(f);
        return harness_teardown(state);
}

/* Until the broker's stats (as plexusctl --json stats prints them) contain @needle, e.g. a count. */
static void wait_stats(const char *needle) {
        Run r;

        for (int i = 0; i < 200; i++) {
                ctl(&r, "--json", "stats");
                if (strstr(r.out, needle)) {
                        run_free(&r);
                        return;
                }
                run_free(&r);
                usleep(20 * 1000);
        }
        fail_msg("the broker's stats never showed %s", needle);
}

static void test_introspect(void **state) {
        Fixture *f = *state;
        Run r;

        ctl(&r, "introspect", CALCULATOR);
        assert_exit(&r, 0);
        assert_contains(r.out, "org.plexus.test.Calculator (libplexus ");
        assert_contains(r.out, "Add");
        assert_contains(r.out, "plexus.test.AddRequest");
        assert_contains(r.out, "calc/ticks");
        assert_contains(r.out, "message plexus.test.Everything {");
        assert_contains(r.out, "map<string, int32> counts = 22;");
        assert_contains(r.out, "repeated plexus.test.Everything.Inner inners = 18;");
        assert_contains(r.out, "plexus.test.Everything.Color color = 16;");
        assert_contains(r.out, "enum plexus.test.Everything.Color {");
        assert_contains(r.out, "COLOR_GREEN = 2;");
        /* The imported file's type is expanded too. */
        assert_contains(r.out, "message plexus.test.Point {");
        run_free(&r);

        ctl(&r, "--json", "introspect", f->typed_id);
        assert_exit(&r, 0);
        JSON(&r,
             "m = {x['name']: x for x in d['methods']}\n"
             "assert m['Add'] == {'name': 'Add', 'service': 'plexus.test.Calculator',\n"
             "                    'request_type': 'plexus.test.AddRequest', 'reply_type': 'plexus.test.AddReply'}, m\n"
             "assert m['Quit']['service'] == '' and m['Quit']['request_type'] == '', m\n"
             "assert 'Unimplemented' not in m\n"
             "assert d['topics'] == [{'pattern': 'calc/ticks', 'message_type': 'plexus.test.Tick'}], d\n"
             "t = {x['name']: x for x in d['types']}\n"
             "e = {x['name']: x for x in t['plexus.test.Everything']['fields']}\n"
             "assert e['counts']['label'] == 'map' and e['words']['label'] == 'repeated', e\n"
             "assert e['choice_text']['oneof'] and not e['f_int64']['oneof'], e\n"
             "assert e['f_sfixed64'] == {'name': 'f_sfixed64', 'number': 12, 'type': 'sfixed64',\n"
             "                           'label': '', 'oneof': False}, e\n"
             "assert t['plexus.test.Everything.Color']['kind'] == 'enum'\n"
             "assert d['library'].startswith('libplexus ')\n");
        run_free(&r);

        /* The broker, as a service like any other. */
        ctl(&r, "introspect", "plexus");
        assert_exit(&r, 0);
        assert_contains(r.out, "plexus (plexusd ");
        assert_contains(r.out, "GetStats");
        assert_contains(r.out, "plexus.Stats");
        assert_contains(r.out, "plexus/names/#");
        assert_contains(r.out, "message plexus.NameOwnerChanged {");
        run_free(&r);

        /* Without descriptors: the types are named, not known. */
        ctl(&r, "introspect", UNTYPED);
        assert_exit(&r, 0);
        assert_contains(r.out, "plexus.test.AddRequest (no descriptor)");
        run_free(&r);

        ctl(&r, "introspect", "org.plexus.test.Nobody");
        assert_exit(&r, 3);
        assert_contains(r.err, "org.plexus.test.Nobody");
        run_free(&r);
}

static void test_tree(void **state) {
        Run r;

        ctl(&r, "tree");
        assert_exit(&r, 0);
        assert_contains(r.out, "plexus (plexusd ");
        assert_contains(r.out, "GetStats(plexus.Empty) → plexus.Stats");
        assert_contains(r.out, "org.plexus.test.Calculator (:");
        assert_contains(r.out, "Add(plexus.test.AddRequest) → plexus.test.AddReply");
        assert_contains(r.out, "├─ Quit\n");
        assert_contains(r.out, "└─ Wrong(plexus.test.AddRequest) → plexus.test.AddReply\n");
        run_free(&r);

        ctl(&r, "--json", "tree");
        assert_exit(&r, 0);
        JSON(&r,
             "n = {x['name']: x for x in d}\n"
             "assert d[0]['name'] == 'plexus' and d[0]['owner'] is None, d[0]\n"
             "assert n['" CALCULATOR "']['owner'].startswith(':'), n\n"
             "assert 'Add' in [m['name'] for m in n['" CALCULATOR "']['methods']], n\n"
             "assert n['" UNTYPED "']['library'].startswith('libplexus'), n\n");
        run_free(&r);
}

/* Every scalar kind, nested and repeated messages, a map, a oneof, enums: back as they went. */
static void test_call_json_round_trip(void **state) {
        static const char request[] =
                "{\"fDouble\": -2.5, \"fFloat\": 1.25, \"fInt32\": -7, \"fInt64\": \"-9223372036854775808\","
                " \"fUint32\": 4294967295, \"fUint64\": \"18446744073709551615\", \"fSint32\": -8,"
                " \"fSint64\": \"-9\", \"fFixed32\": 10, \"fFixed64\": \"11\", \"fSfixed32\": -12,"
                " \"fSfixed64\": \"-13\", \"fBool\": true, \"fString\": \"gr\\u00fc\\u00dfe \\\"q\\\"\","
                " \"fBytes\": \"AAEC/w==\", \"color\": \"COLOR_RED\","
                " \"inner\": {\"label\": \"in\", \"values\": [-5, 5]},"
                " \"inners\": [{\"label\": \"a\"}, {\"values\": [1]}],"
                " \"numbers\": [1, -2, 300000], \"words\": [\"a\", \"bc\"],"
                " \"colors\": [\"COLOR_GREEN\", \"COLOR_RED\"], \"counts\": {\"k\": 3, \"z\": -1},"
                " \"choiceNumber\": 42, \"where\": {\"x\": 1, \"y\": -1}}";
        Run r;

        ctl(&r, "--json", "call", CALCULATOR, "Echo", request);
        assert_exit(&r, 0);
        /* A raw string keeps the JSON's escapes for json.loads(). */
        JSON(&r,
             "want = json.loads(r'''%s''')\n"
             "assert d['type'] == 'plexus.test.Everything', d\n"
             "assert d['payload_json'] == want, (d['payload_json'], want)\n", request);
        run_free(&r);

        /* Field names as in the .proto are accepted as well; enums by number; 64-bit as numbers. */
        ctl(&r, "--json", "call", CALCULATOR, "Echo",
            "{\"f_int64\": 5, \"color\": 2, \"choice_text\": \"t\", \"f_bytes\": \"_-8\"}");
        assert_exit(&r, 0);
        JSON(&r, "assert d['payload_json'] == {'fInt64': '5', 'color': 'COLOR_GREEN', 'choiceText': 't',\n"
                 "                              'fBytes': '/+8='}, d\n");
        run_free(&r);

        /* Human output: indented JSON, defaults included. */
        ctl(&r, "call", CALCULATOR, "Add", "{\"a\": 40, \"b\": \"2\"}");
        assert_exit(&r, 0);
        assert_string_equal(r.out, "{\n  \"sum\": \"42\"\n}\n");
        run_free(&r);

        /* No payload: every field at its default. */
        ctl(&r, "call", CALCULATOR, "Add");
        assert_exit(&r, 0);
        assert_string_equal(r.out, "{\n  \"sum\": \"0\"\n}\n");
        run_free(&r);

        /* The broker's methods are typed too. */
        ctl(&r, "--json", "call", "plexus", "GetNameOwner", "{\"name\": \"" CALCULATOR "\"}");
        assert_exit(&r, 0);
        JSON(&r, "assert d['type'] == 'plexus.NameOwnerReply' and d['payload_json']['owner'].startswith(':'), d\n");
        run_free(&r);
}

static void test_call_bad_json(void **state) {
        static const struct {
                const char *payload;
                const char *message;
        } cases[] = {
                { "{\"a\": ", "invalid JSON" },
                { "{\"a\": \"x\"}", "\"a\"" },
                { "{\"a\": 1.5}", "\"a\"" },
                { "{\"c\": 1}", "\"c\"" },
                { "{\"a\": \"99999999999999999999\"}", "\"a\"" },
                { "[1]", "plexus.test.AddRequest" },
        };
        Run r;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                ctl(&r, "call", CALCULATOR, "Add", cases[i].payload);
                assert_exit(&r, 64);
                assert_string_equal(r.out, "");
                assert_contains(r.err, "plexus.test.AddRequest");
                assert_contains(r.err, cases[i].message);
                run_free(&r);
        }

        ctl(&r, "call", CALCULATOR, "Echo", "{\"color\": \"COLOR_BLUE\"}");
        assert_exit(&r, 64);
        assert_contains(r.err, "COLOR_BLUE");
        run_free(&r);
        ctl(&r, "call", CALCULATOR, "Echo", "{\"inner\": {\"values\": [1, \"x\"]}}");
        assert_exit(&r, 64);
        assert_contains(r.err, "inner.values[1]");
        run_free(&r);
        ctl(&r, "call", CALCULATOR, "Echo", "{\"fBytes\": \"not base64!\"}");
        assert_exit(&r, 64);
        assert_contains(r.err, "fBytes");
        run_free(&r);

        /* Bytes that are not a request: the service says so (InvalidArgs), exit 1. */
        ctl(&r, "call", "--raw", CALCULATOR, "Add", "\x0a\x01\x41");
        assert_exit(&r, 1);
        assert_contains(r.err, "plexus.Error.InvalidArgs");
        assert_contains(r.err, "plexus.test.AddRequest");
        run_free(&r);

        /* A method the service lists but does not handle, and one it does not list. */
        ctl(&r, "call", CALCULATOR, "Unimplemented", "{}");
        assert_exit(&r, 1);
        assert_contains(r.err, "plexus.Error.UnknownMethod");
        run_free(&r);
}

/* --raw: bytes in, bytes out, no introspection. */
static void test_call_raw(void **state) {
        Run r;

        /* AddRequest{a: 2, b: 3} -> AddReply{sum: 5} */
        ctl(&r, "call", "--raw", CALCULATOR, "Add", "\x08\x02\x10\x03");
        assert_exit(&r, 0);
        assert_int_equal(r.n_out, 2);
        assert_memory_equal(r.out, "\x08\x05", 2);
        run_free(&r);
}

/* Without descriptors the service still works, untyped. */
static void test_untyped_service(void **state) {
        Run r;

        ctl(&r, "call", "--raw", UNTYPED, "Add", "\x08\x02\x10\x03");
        assert_exit(&r, 0);
        assert_int_equal(r.n_out, 2);
        assert_memory_equal(r.out, "\x08\x05", 2);
        run_free(&r);
}

static void test_publish_subscribe(void **state) {
        Proc sub = PROC_NULL, jsub = PROC_NULL, raw = PROC_NULL;
        Run r;

        CTL_START(&sub, "subscribe", "--count", "3", "calc/#");
        CTL_START(&jsub, "--json", "subscribe", "--count", "3", "calc/#");
        CTL_START(&raw, "--raw", "subscribe", "--count", "1", "calc/ticks");
        /* Subscribed once the subscribers' Subscribe answers came: wait on the broker's count. */
        wait_stats("\"subscriptions\":3");

        /* Typed by the declaration of the service that owns a name. */
        ctl(&r, "--json", "publish", "calc/ticks", "{\"n\": 5, \"note\": \"from plexusctl\"}");
        assert_exit(&r, 0);
        JSON(&r, "assert d == {'topic': 'calc/ticks', 'type': 'plexus.test.Tick', 'size': 18}, d\n");
        run_free(&r);

        /* The service publishes a Tick and then bytes that are no Tick. */
        ctl(&r, "call", CALCULATOR, "PublishTick");
        assert_exit(&r, 0);
        run_free(&r);

        proc_finish(&sub, &r, NULL, 0);
        assert_exit(&r, 0);
        assert_contains(r.out, "calc/ticks :");
        assert_contains(r.out, "{\"n\":\"5\",\"note\":\"from plexusctl\"}");
        assert_contains(r.out, "{\"n\":\"7\",\"note\":\"seven\"}");
        run_free(&r);

        proc_finish(&jsub, &r, NULL, 0);
        assert_exit(&r, 0);
        JSON_LINES(&r,
                   "assert len(d) == 3, d\n"
                   "assert d[0]['type'] == 'plexus.test.Tick' and d[0]['payload_json'] == {'n': '5', 'note': 'from plexusctl'}, d\n"
                   "assert d[1]['payload_json'] == {'n': '7', 'note': 'seven'}, d\n"
                   "assert 'payload_json' not in d[2] and d[2]['payload_hex'] == '0a0578', d\n");
        run_free(&r);

        /* --raw: the encoded Tick as it is. */
        proc_finish(&raw, &r, NULL, 0);
        assert_exit(&r, 0);
        assert_int_equal(r.n_out, 18);
        assert_memory_equal(r.out, "\x08\x05\x12\x0e" "from plexusctl", 18);
        run_free(&r);

        /* --type: a type some client describes; and one nobody does. */
        ctl(&r, "publish", "--type", "plexus.test.Point", "calc/points", "{\"x\": 1}");
        assert_exit(&r, 0);
        run_free(&r);
        ctl(&r, "publish", "--type", "plexus.test.Nothing", "calc/points", "{\"x\": 1}");
        assert_exit(&r, 64);
        assert_contains(r.err, "plexus.test.Nothing");
        run_free(&r);
        ctl(&r, "publish", "calc/ticks", "{\"n\": \"x\"}");
        assert_exit(&r, 64);
        assert_contains(r.err, "\"n\"");
        run_free(&r);
}

/* The broker's name signals are decoded as plexus.NameOwnerChanged. */
static void test_subscribe_broker_signals(void **state) {
        Fixture *f = *state;
        HarnessChild other = HARNESS_CHILD_NULL;
        Proc sub = PROC_NULL;
        Run r;

        CTL_START(&sub, "--json", "subscribe", "--count", "1", "plexus/names/org.plexus.test.Other");
        wait_stats("\"subscriptions\":1");
        service_start(&other, "org.plexus.test.Other", true, NULL, 0);
        proc_finish(&sub, &r, NULL, 0);
        assert_exit(&r, 0);
        JSON_LINES(&r,
                   "c = d[0]['payload_json']\n"
                   "assert d[0]['type'] == 'plexus.NameOwnerChanged', d\n"
                   "assert c['name'] == 'org.plexus.test.Other' and c['newOwner'].startswith(':'), c\n"
                   "assert c['reason'] == 'NAME_CHANGE_REQUESTED', c\n");
        run_free(&r);

        ctl(&r, "call", "org.plexus.test.Other", "Quit");
        assert_exit(&r, 0);
        run_free(&r);
        assert_int_equal(harness_child_wait(&other, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        harness_child_close(&other);
        (void)f;
}

/* monitor decodes calls and their replies from the callee's description. */
static void test_monitor(void **state) {
        Proc mon = PROC_NULL;
        Run r;

        CTL_START(&mon, "--json", "monitor", "--member", "Add", "--count", "1");
        wait_stats("\"monitors\":1");
        ctl(&r, "call", CALCULATOR, "Add", "{\"a\": 2, \"b\": 3}");
        assert_exit(&r, 0);
        run_free(&r);
        proc_finish(&mon, &r, NULL, 0);
        assert_exit(&r, 0);
        JSON_LINES(&r,
                   "assert len(d) == 1 and d[0]['kind'] == 'call', d\n"
                   "assert d[0]['type'] == 'plexus.test.AddRequest' and d[0]['payload_json'] == {'a': '2', 'b': '3'}, d\n");
        run_free(&r);

        /* Unfiltered, human-readable: the reply decoded as well. */
        CTL_START(&mon, "monitor");
        wait_stats("\"monitors\":1");
        ctl(&r, "call", CALCULATOR, "Add", "{\"a\": 20, \"b\": 3}");
        assert_exit(&r, 0);
        run_free(&r);
        /* Let the monitor print, then end it. */
        ctl(&r, "call", "plexus", "Ping");
        run_free(&r);
        usleep(300 * 1000);
        kill(mon.pid, SIGTERM);
        proc_finish(&mon, &r, NULL, 0);
        assert_exit(&r, 0);
        assert_contains(r.out, " Add serial=");
        assert_contains(r.out, "{\"a\":\"20\",\"b\":\"3\"}");
        assert_contains(r.out, "{\"sum\":\"23\"}");
        run_free(&r);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_introspect, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_tree, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_call_json_round_trip, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_call_bad_json, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_call_raw, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_untyped_service, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_publish_subscribe, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_subscribe_broker_signals, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_monitor, fixture_setup, fixture_teardown),
        };

        unsetenv("COLUMNS");
        return cmocka_run_group_tests(tests, NULL, NULL);
}
