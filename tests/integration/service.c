/*
 * The test service, see service.h. Runs only in its forked child; the
 * parent side is service_fork(), which waits (bounded) for the "ready" line.
 */

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "service.h"

typedef struct Service {
        plx_bus *bus;
        int report_fd;
        plx_msg *never[64];             /* calls kept unanswered, released at exit */
        size_t n_never;
} Service;

static int on_echo(plx_msg *call, void *userdata) {
        const void *p;
        size_t n;

        p = plx_msg_get_payload(call, &n);
        return plx_msg_reply(call, p, n);
}

/* Echo with the reply lent from a private copy (process_vm), whatever its size. */
static int on_echo_lent(plx_msg *call, void *userdata) {
        plx_bus *bus = plx_msg_get_bus(call);
        const void *p;
        size_t n;
        int r;

        p = plx_msg_get_payload(call, &n);
        (void)plx_bus_set_large_path(bus, PLX_LARGE_PROCESS_VM);
        r = plx_msg_reply(call, p, n);
        (void)plx_bus_set_large_path(bus, PLX_LARGE_AUTO);
        return r;
}

static int on_fail(plx_msg *call, void *userdata) {
        return plx_msg_reply_error(call, SERVICE_ERROR_NAME, SERVICE_ERROR_MESSAGE);
}

static int on_eio(plx_msg *call, void *userdata) {
        return -EIO;
}

static int on_never(plx_msg *call, void *userdata) {
        Service *s = userdata;

        if (s->n_never < sizeof(s->never) / sizeof(s->never[0]))
                s->never[s->n_never++] = plx_msg_ref(call);
        harness_report(s->report_fd, "never");
        return 0;
}

static int on_die(plx_msg *call, void *userdata) {
        Service *s = userdata;

        harness_report(s->report_fd, "dying");
        raise(SIGKILL);
        return 0;
}

static int on_whoami(plx_msg *call, void *userdata) {
        char text[300];
        int n;

        n = snprintf(text, sizeof(text), "%s %u %d", plx_msg_get_sender(call),
                     (unsigned)plx_msg_get_sender_uid(call), (int)plx_msg_get_sender_pid(call));
        return plx_msg_reply(call, text, (size_t)n);
}

static int on_timeout(plx_msg *call, void *userdata) {
        Service *s = userdata;
        char text[32];
        int n;

        /* Reported too, for NO_REPLY calls, whose answer goes nowhere. */
        n = snprintf(text, sizeof(text), "%u", plx_msg_get_timeout_ms(call));
        harness_report(s->report_fd, "timeout %s", text);
        return plx_msg_reply(call, text, (size_t)n);
}

static int on_publish(plx_msg *call, void *userdata) {
        Service *s = userdata;
        char topic[256];
        const void *p;
        size_t n;
        int r;

        p = plx_msg_get_payload(call, &n);
        if (n == 0 || n >= sizeof(topic))
                return plx_msg_reply_error(call, PLX_ERROR_INVALID_ARGS, "need a topic");
        memcpy(topic, p, n);
        topic[n] = 0;

        r = plx_bus_publish(s->bus, topic, SERVICE_PUBLISH_PAYLOAD, strlen(SERVICE_PUBLISH_PAYLOAD));
        if (r < 0)
                return r;
        return plx_msg_reply(call, NULL, 0);
}

static int on_quit(plx_msg *call, void *userdata) {
        Service *s = userdata;
        int r;

        r = plx_msg_reply(call, NULL, 0);
        plx_bus_exit(s->bus, 0);
        return r;
}

int service_main(int report_fd, int control_fd, void *userdata) {
        static const struct {
                const char *member;
                plx_method_fn fn;
        } methods[] = {
                { "Echo", on_echo },
                { "EchoLent", on_echo_lent },
                { "Fail", on_fail },
                { "EIO", on_eio },
                { "Never", on_never },
                { "Die", on_die },
                { "Whoami", on_whoami },
                { "Timeout", on_timeout },
                { "Publish", on_publish },
                { "Quit", on_quit },
        };
        const char *address = userdata;
        Service s = { .report_fd = report_fd };
        int r;

        r = plx_bus_new(&s.bus, address, "test-service");
        if (r < 0)
                child_fail("service: plx_bus_new: %s", strerror(-r));

        for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
                r = plx_bus_add_method(s.bus, NULL, methods[i].member, methods[i].fn, &s);
                if (r < 0)
                        child_fail("service: add_method %s: %s", methods[i].member, strerror(-r));
        }

        harness_report(report_fd, "ready %s", plx_bus_get_unique_id(s.bus));

        r = plx_bus_run(s.bus);
        if (r == 0)
                r = plx_bus_flush(s.bus);
        for (size_t i = 0; i < s.n_never; i++)
                plx_msg_unref(s.never[i]);
        plx_bus_free(s.bus);

        /* The broker going away is how most tests end the service. */
        if (r < 0 && r != -ECONNRESET)
                child_fail("service: plx_bus_run: %s", strerror(-r));
        return 0;
}

/**
 * service_fork() - start the test service and wait until it is ready
 * @ret:        the child, written on success
 * @address:    the broker; borrowed, must stay valid until the fork
 * @ret_id:     receives the service's unique id
 * @size:       capacity of @ret_id
 *
 * Return: 0, or a negative errno (the child is reaped then).
 */
int service_fork(HarnessChild *ret, const char *address, char *ret_id, size_t size) {
        HarnessChild c = HARNESS_CHILD_NULL;
        char line[300];
        int r;

        r = harness_child_fork(&c, service_main, (void *)address);
        if (r < 0)
                return r;

        r = harness_read_line(c.report_fd, line, sizeof(line), harness_timeout_ms(HARNESS_TIMEOUT_MS));
        if (r < 0 || strncmp(line, "ready :", 7) != 0 || strlen(line + 6) >= size) {
                fprintf(stderr, "test service did not get ready (%s): \"%s\"\n",
                        r < 0 ? strerror(-r) : "bad line", r < 0 ? "" : line);
                harness_child_wait(&c, 1000);
                return r < 0 ? r : -EPROTO;
        }
        strcpy(ret_id, line + 6);
        *ret = c;
        return 0;
}

/**
 * service_fixture_setup() - cmocka setup: broker, service, own connection
 * @state:      receives the ServiceFixture
 *
 * Return: 0 or -1.
 */
int service_fixture_setup(void **state) {
        return service_fixture_setup_config(state, NULL);
}

/**
 * service_fixture_setup_config() - service_fixture_setup() with a configuration file
 * @state:      receives the ServiceFixture
 * @config:     as for harness_setup_config()
 *
 * Return: 0 or -1.
 */
int service_fixture_setup_config(void **state, const char *config) {
        ServiceFixture *f;
        void *h = NULL;
        int r;

        f = calloc(1, sizeof(*f));
        if (!f)
                return -1;
        f->service = (HarnessChild) HARNESS_CHILD_NULL;

        if (harness_setup_config(&h, config) < 0) {
                free(f);
                return -1;
        }
        f->harness = h;
        *state = f;

        r = service_fork(&f->service, f->harness->address, f->service_id, sizeof(f->service_id));
        if (r < 0) {
                service_fixture_teardown(state);
                return -1;
        }
        r = plx_bus_new(&f->bus, f->harness->address, "integration-test");
        if (r < 0) {
                fprintf(stderr, "plx_bus_new: %s\n", strerror(-r));
                service_fixture_teardown(state);
                return -1;
        }
        return 0;
}

/**
 * service_fixture_teardown() - cmocka teardown for service_fixture_setup()
 * @state:      the ServiceFixture
 *
 * Return: 0, or -1 if a check failed.
 */
int service_fixture_teardown(void **state) {
        ServiceFixture *f = *state;
        void *h;
        int r, ret = 0;

        if (!f)
                return 0;
        f->bus = plx_bus_free(f->bus);

        if (f->harness->broker_pid > 0) {
                r = harness_broker_stop(f->harness);
                if (r != 0) {
                        fprintf(stderr, "teardown: broker exit status %d, expected 0\n", r);
                        ret = -1;
                }
        }
        if (f->service.pid > 0) {
                r = harness_child_wait(&f->service, harness_timeout_ms(HARNESS_TIMEOUT_MS));
                if (r != 0) {
                        fprintf(stderr, "teardown: test service exit status %d, expected 0\n", r);
                        ret = -1;
                }
        }
        harness_child_close(&f->service);

        h = f->harness;
        if (harness_teardown(&h) < 0)
                ret = -1;
        free(f);
        *state = NULL;
        return ret;
}

/**
 * error_log_record() - an error handler that fills the ErrorLog @userdata
 *
 * Return: 0.
 */
int error_log_record(plx_msg *error, void *userdata) {
        ErrorLog *log = userdata;

        snprintf(log->name, sizeof(log->name), "%s", plx_msg_get_error_name(error));
        log->n_errors++;
        log->done = true;
        return 0;
}
