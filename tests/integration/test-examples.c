/*
 * The example programs end to end against a real broker: echo-service with
 * echo-client (by name, --to, $PLEXUS_ECHO_SERVICE, a remote error, no
 * bus), and publisher with subscribers on wildcard patterns. The programs
 * are found through $ECHO_SERVICE, $ECHO_CLIENT, $PUBLISHER and $SUBSCRIBER
 * and reach the broker through $PLEXUS_BUS_ADDRESS, which harness_setup()
 * sets.
 */

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static char *program(const char *env) {
        char *p = getenv(env);

        if (!p || !*p)
                fail_msg("$%s is not set; run through meson test", env);
        return p;
}

/* Runs a program to its end; its output goes to @out and @err. */
static int run(char *const argv[], char *out, size_t out_size, char *err, size_t err_size) {
        HarnessChild c = HARNESS_CHILD_NULL;
        ssize_t n;

        assert_int_equal(harness_child_spawn(&c, argv), 0);
        n = harness_read_all(c.report_fd, out, out_size, harness_timeout_ms(HARNESS_TIMEOUT_MS));
        assert_true(n >= 0);
        n = harness_read_all(c.stderr_fd, err, err_size, harness_timeout_ms(HARNESS_TIMEOUT_MS));
        assert_true(n >= 0);
        if (err[0])
                fprintf(stderr, "%s said on stderr: %s", argv[0], err);
        return harness_child_wait(&c, harness_timeout_ms(HARNESS_TIMEOUT_MS));
}

static void start_ready(HarnessChild *c, char *const argv[], char *line, size_t size) {
        assert_int_equal(harness_child_spawn(c, argv), 0);
        assert_true(harness_read_line(c->report_fd, line, size, harness_timeout_ms(HARNESS_TIMEOUT_MS)) >= 0);
}

static void test_echo(void **state) {
        HarnessChild service = HARNESS_CHILD_NULL;
        char *service_argv[] = { program("ECHO_SERVICE"), NULL };
        char *client = program("ECHO_CLIENT");
        char line[256], id[256], out[1024], err[1024];

        start_ready(&service, service_argv, line, sizeof(line));
        assert_int_equal(strncmp(line, "ready :", 7), 0);
        snprintf(id, sizeof(id), "%s", line + 6);

        /* By the service's well-known name. */
        assert_int_equal(run((char *[]) { client, (char *)"hello, plexus", NULL }, out, sizeof(out),
                             err, sizeof(err)), 0);
        assert_string_equal(out, "hello, plexus\n");

        /* --to, with text that is not plain ASCII. */
        assert_int_equal(run((char *[]) { client, (char *)"--to", id, (char *)"grüße → 世界", NULL }, out,
                             sizeof(out), err, sizeof(err)), 0);
        assert_string_equal(out, "grüße → 世界\n");

        /* $PLEXUS_ECHO_SERVICE, and an empty text. */
        setenv("PLEXUS_ECHO_SERVICE", id, 1);
        assert_int_equal(run((char *[]) { client, (char *)"", NULL }, out, sizeof(out), err, sizeof(err)), 0);
        unsetenv("PLEXUS_ECHO_SERVICE");
        assert_string_equal(out, "\n");

        /* A remote error: exit 1, "error: NAME: MESSAGE". */
        assert_int_equal(run((char *[]) { client, (char *)"--to", (char *)":999999", (char *)"x", NULL }, out,
                             sizeof(out), err, sizeof(err)), 1);
        assert_string_equal(out, "");
        assert_int_equal(strncmp(err, "error: " PLX_ERROR_SERVICE_UNKNOWN ": ", 9 + strlen(PLX_ERROR_SERVICE_UNKNOWN)),
                         0);

        /* The service ends cleanly on SIGTERM. */
        assert_int_equal(kill(service.pid, SIGTERM), 0);
        assert_int_equal(harness_child_wait(&service, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
}

static void test_echo_no_bus(void **state) {
        Harness *h = *state;
        char *client = program("ECHO_CLIENT");
        char address[400], out[1024], err[1024];

        snprintf(address, sizeof(address), "%s/nobody-here", h->dir);
        setenv("PLEXUS_BUS_ADDRESS", address, 1);
        assert_int_equal(run((char *[]) { client, (char *)"--to", (char *)":1", (char *)"x", NULL }, out,
                             sizeof(out), err, sizeof(err)), 2);
        setenv("PLEXUS_BUS_ADDRESS", h->address, 1);
        assert_string_equal(out, "");
        assert_true(strlen(err) > 0);
}

static void test_pubsub(void **state) {
        HarnessChild counted = HARNESS_CHILD_NULL, endless = HARNESS_CHILD_NULL;
        char *sub = program("SUBSCRIBER"), *pub = program("PUBLISHER");
        char line[256], out[4096], err[1024];

        start_ready(&counted, (char *[]) { sub, (char *)"ex/+/temp", (char *)"3", NULL }, line, sizeof(line));
        assert_string_equal(line, "ready");
        start_ready(&endless, (char *[]) { sub, (char *)"ex/#", NULL }, line, sizeof(line));
        assert_string_equal(line, "ready");

        assert_int_equal(run((char *[]) { pub, (char *)"ex/kitchen/humidity", (char *)"40", NULL }, out,
                             sizeof(out), err, sizeof(err)), 0);
        assert_int_equal(run((char *[]) { pub, (char *)"ex/kitchen/temp", (char *)"21.5", (char *)"3", NULL }, out,
                             sizeof(out), err, sizeof(err)), 0);
        assert_int_equal(run((char *[]) { pub, (char *)"other/temp", (char *)"0", NULL }, out, sizeof(out),
                             err, sizeof(err)), 0);

        /* "ex/+/temp" 3: exits by itself after three. */
        assert_true(harness_read_all(counted.report_fd, out, sizeof(out), harness_timeout_ms(HARNESS_TIMEOUT_MS)) >= 0);
        assert_string_equal(out, "ex/kitchen/temp 21.5\nex/kitchen/temp 21.5\nex/kitchen/temp 21.5\n");
        assert_int_equal(harness_child_wait(&counted, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);

        /* "ex/#": everything under ex/, in order, until SIGTERM. */
        for (int i = 0; i < 4; i++) {
                assert_true(harness_read_line(endless.report_fd, line, sizeof(line),
                                              harness_timeout_ms(HARNESS_TIMEOUT_MS)) >= 0);
                assert_string_equal(line, i == 0 ? "ex/kitchen/humidity 40" : "ex/kitchen/temp 21.5");
        }
        assert_int_equal(kill(endless.pid, SIGTERM), 0);
        assert_true(harness_read_all(endless.report_fd, out, sizeof(out), harness_timeout_ms(HARNESS_TIMEOUT_MS)) >= 0);
        assert_string_equal(out, "");
        assert_int_equal(harness_child_wait(&endless, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_echo, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_echo_no_bus, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_pubsub, harness_setup, harness_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
