/*
 * Broker library: the embedding API (plx_broker_new/run/stop/free) and every
 * configurable limit, each hit on purpose against a broker running in a
 * thread of this process with tiny limits. Clients are libplexus
 * connections driven from the test thread, or raw sockets where a client
 * must misbehave.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include <plexus/plexus.h>

#include "broker.h"
#include "policy.h"
#include "frame.h"

#define _cleanup_msg_ __attribute__((__cleanup__(plx_msg_unrefp)))

typedef struct Fixture {
        char dir[64];
        char path[128];
        plx_broker *broker;
        pthread_t thread;
        int run_result;
} Fixture;

static void *run_broker(void *userdata) {
        Fixture *f = userdata;

        f->run_result = plx_broker_run(f->broker);
        return NULL;
}

static void start(Fixture *f, void (*tweak)(plx_broker_config *c)) {
        plx_broker_config c;

        snprintf(f->dir, sizeof(f->dir), "/tmp/plexus-test-broker-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->path, sizeof(f->path), "%s/bus", f->dir);

        plx_broker_config_init(&c);
        c.address = f->path;
        if (tweak)
                tweak(&c);
        assert_int_equal(plx_broker_new(&f->broker, &c), 0);
        f->run_result = -1;
        assert_int_equal(pthread_create(&f->thread, NULL, run_broker, f), 0);
}

static void stop(Fixture *f) {
        struct stat st;

        plx_broker_stop(f->broker);
        assert_int_equal(pthread_join(f->thread, NULL), 0);
        assert_int_equal(f->run_result, 0);
        /* The socket file goes with the broker that made it. */
        assert_int_equal(stat(f->path, &st), -1);
        f->broker = plx_broker_free(f->broker);
        rmdir(f->dir);
}

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One round: process every bus until idle, then wait up to 10 ms for input. */
static void pump_once(plx_bus **buses, size_t n) {
        struct pollfd p[8];
        bool busy = false;

        assert_true(n <= ELEMENTSOF(p));
        for (size_t i = 0; i < n; i++) {
                int r;

                while ((r = plx_bus_process(buses[i])) > 0)
                        busy = true;
                assert_int_equal(r, 0);
                p[i] = (struct pollfd) { .fd = plx_bus_get_fd(buses[i]),
                                         .events = (short)plx_bus_get_events(buses[i]) };
        }
        if (!busy)
                poll(p, n, 10);
}

/* Drive the listed buses until @cond holds; fail after 10 s. */
#define PUMP_UNTIL(cond, ...)                                                   \
        do {                                                                    \
                plx_bus *_buses[] = { __VA_ARGS__ };                            \
                uint64_t _end = now_ms() + 10000;                               \
                while (!(cond)) {                                               \
                        assert_true(now_ms() < _end);                           \
                        pump_once(_buses, ELEMENTSOF(_buses));                  \
                }                                                               \
        } while (0)

static void test_embed_stop_from_thread(void **state) {
        Fixture f = {};
        plx_bus *bus;
        plx_msg *reply = NULL;

        start(&f, NULL);
        assert_int_equal(plx_bus_new(&bus, f.path, "embed"), 0);
        assert_int_equal(plx_bus_call(bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, &reply), 0);
        assert_int_equal(plx_msg_get_kind(reply), PLX_MSG_REPLY);
        assert_string_equal(plx_msg_get_sender(reply), PLX_BROKER);
        plx_msg_unref(reply);
        stop(&f);
        /* The broker is gone: the connection reports it. */
        assert_int_equal(plx_bus_call(bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), -ECONNRESET);
        plx_bus_free(bus);
}

static void test_two_brokers_one_process(void **state) {
        Fixture a = {}, b = {};
        plx_bus *x, *y;

        start(&a, NULL);
        start(&b, NULL);
        assert_int_equal(plx_bus_new(&x, a.path, "x"), 0);
        assert_int_equal(plx_bus_new(&y, b.path, "y"), 0);
        /* Separate brokers number their clients separately. */
        assert_string_equal(plx_bus_get_unique_id(x), ":1");
        assert_string_equal(plx_bus_get_unique_id(y), ":1");
        plx_bus_free(x);
        plx_bus_free(y);
        stop(&a);
        stop(&b);
}

static void test_second_broker_refused(void **state) {
        Fixture f = {};
        plx_broker_config c;
        plx_broker *other = NULL;

        start(&f, NULL);
        plx_broker_config_init(&c);
        c.address = f.path;
        assert_int_equal(plx_broker_new(&other, &c), -EADDRINUSE);
        assert_null(other);
        stop(&f);
}

static void test_config_rejected(void **state) {
        plx_broker_config c;
        plx_broker *b = NULL;

        plx_broker_config_init(&c);
        c.address = "/tmp/plexus-never-created/bus";
        c.max_clients = 0;
        assert_int_equal(plx_broker_new(&b, &c), -EINVAL);
        plx_broker_config_init(&c);
        c.address = "/tmp/plexus-never-created/bus";
        c.max_timeout_ms = c.default_timeout_ms - 1;
        assert_int_equal(plx_broker_new(&b, &c), -EINVAL);
        plx_broker_config_init(&c);
        c.address = "/tmp/plexus-never-created/bus";
        c.max_user_clients = 0;
        assert_int_equal(plx_broker_new(&b, &c), -EINVAL);
        plx_broker_config_init(&c);
        c.address = "/tmp/plexus-never-created/bus";
        c.max_unauthenticated = 0;
        assert_int_equal(plx_broker_new(&b, &c), -EINVAL);
        plx_broker_config_init(&c);
        c.address = "/tmp/plexus-never-created/bus";
        c.max_user_queue_bytes = FRAME_SIZE_MAX;       /* must hold one frame */
        assert_int_equal(plx_broker_new(&b, &c), -EINVAL);
        assert_null(b);
}

typedef struct ReloadLog {
        char lines[4096];               /* log lines, then notify states, newline-separated */
        char status[512];               /* the last STATUS= */
} ReloadLog;

static void reload_log_fn(void *userdata, int priority, const char *line) {
        ReloadLog *l = userdata;
        size_t n = strlen(l->lines);

        snprintf(l->lines + n, sizeof(l->lines) - n, "%s\n", line);
}

static void reload_notify_fn(void *userdata, const char *state) {
        ReloadLog *l = userdata;
        const char *s = strstr(state, "STATUS=");

        if (s)
                snprintf(l->status, sizeof(l->status), "%s", s + strlen("STATUS="));
}

static void write_bytes(const char *path, const void *data, size_t size) {
        FILE *fp = fopen(path, "we");

        assert_non_null(fp);
        assert_int_equal(fwrite(data, 1, size, fp), size);
        assert_int_equal(fclose(fp), 0);
}

/* A fresh directory (mkdtemp(3) fills in the X's) and a broker config whose file is in it. */
typedef struct ReloadDir {
        char dir[64];
        char conf[128];
        char bus[128];
} ReloadDir;

static void reload_setup(ReloadDir *d, plx_broker_config *c, ReloadLog *log) {
        snprintf(d->dir, sizeof(d->dir), "/tmp/plexus-test-reload-XXXXXX");
        assert_non_null(mkdtemp(d->dir));
        snprintf(d->conf, sizeof(d->conf), "%s/plexusd.conf", d->dir);
        snprintf(d->bus, sizeof(d->bus), "%s/bus", d->dir);

        plx_broker_config_init(c);
        c->address = d->bus;
        c->config_path = d->conf;
        c->log_fn = reload_log_fn;
        c->log_userdata = log;
        c->notify_fn = reload_notify_fn;
        c->notify_userdata = log;
}

static void reload_cleanup(ReloadDir *d) {
        unlink(d->conf);
        rmdir(d->dir);
}

/*
 * A reload of the default (optional) file that finds it missing, empty,
 * blank or zero-filled keeps the running configuration, policy included,
 * and says why in the log and in STATUS=. Taking such a file for "no
 * policy" would refuse every user but root from then on.
 */
static void test_reload_keeps_config(void **state) {
        static const char good[] = "[limits]\nmax_clients = 7\n[policy:test]\nusers = 4242\nown = org.example.*\n";
        static const char better[] = "[limits]\nmax_clients = 9\n[policy:test]\nusers = 4242\nown = org.example.*\n";
        static const uint8_t zeros[4096];
        ReloadDir d;
        ReloadLog log = {};
        plx_broker_config c;
        plx_broker *b = NULL;
        const struct {
                const char *what;
                const void *data;       /* NULL: no file */
                size_t size;
                const char *reason;
        } bad[] = {
                { "missing", NULL, 0, "cannot open" },
                { "empty", "", 0, "file is empty" },
                { "blank", " \n\n\t\n", 5, "file is empty" },
                { "zero-filled", zeros, sizeof(zeros), "NUL bytes" },
                { "zeros after a good start", "[limits]\nmax_clients = 3\n\0\0\0\0", 28, "NUL bytes" },
        };

        reload_setup(&d, &c, &log);
        write_bytes(d.conf, good, strlen(good));
        c.config_required = false;      /* as for the default path */
        assert_int_equal(plx_broker_new(&b, &c), 0);
        assert_int_equal(b->config.max_clients, 7);
        assert_int_equal(policy_n_rules(b->policy), 1);

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                /* STATUS= is kept by systemd: sent again only when it changes. */
                log.lines[0] = 0;
                unlink(d.conf);
                if (bad[i].data)
                        write_bytes(d.conf, bad[i].data, bad[i].size);
                broker_reload(b);
                if (b->config.max_clients != 7 || !b->policy || policy_n_rules(b->policy) != 1)
                        fail_msg("%s file: the configuration changed (max_clients %u, %zu rules)", bad[i].what,
                                 b->config.max_clients, b->policy ? policy_n_rules(b->policy) : 0);
                if (!strstr(log.lines, bad[i].reason) || !strstr(log.lines, "keeping the old configuration"))
                        fail_msg("%s file: log says: %s", bad[i].what, log.lines);
                if (!strstr(log.status, "reload failed") || !strstr(log.status, bad[i].reason))
                        fail_msg("%s file: STATUS=%s", bad[i].what, log.status);
        }

        /* A good file applies again, and STATUS= drops the complaint. */
        write_bytes(d.conf, better, strlen(better));
        broker_reload(b);
        assert_int_equal(b->config.max_clients, 9);
        assert_int_equal(policy_n_rules(b->policy), 1);
        assert_null(strstr(log.status, "reload failed"));
        assert_non_null(strstr(log.status, "clients"));

        b = plx_broker_free(b);
        reload_cleanup(&d);
}

/* Without a file at start (the optional default path), a reload without one changes nothing either. */
static void test_reload_no_file(void **state) {
        ReloadDir d;
        ReloadLog log = {};
        plx_broker_config c;
        plx_broker *b = NULL;

        reload_setup(&d, &c, &log);
        assert_int_equal(plx_broker_new(&b, &c), 0);
        broker_reload(b);
        assert_non_null(strstr(log.lines, "no configuration file, nothing to do"));
        assert_null(strstr(log.status, "reload failed"));
        assert_int_equal(b->config.max_clients, BROKER_DEFAULT_MAX_CLIENTS);

        /* An empty file is refused at start as well. */
        b = plx_broker_free(b);
        write_bytes(d.conf, "", 0);
        assert_int_equal(plx_broker_new(&b, &c), -EINVAL);
        assert_null(b);
        assert_non_null(strstr(log.lines, "file is empty"));
        reload_cleanup(&d);
}

static void tweak_clients(plx_broker_config *c) {
        c->max_clients = 2;
}

/* With @tweak allowing two connections, a third is refused until one goes. */
static void limit_two_clients(void (*tweak)(plx_broker_config *c)) {
        Fixture f = {};
        plx_bus *a, *b, *c = NULL;

        start(&f, tweak);
        assert_int_equal(plx_bus_new(&a, f.path, "a"), 0);
        assert_int_equal(plx_bus_new(&b, f.path, "b"), 0);
        assert_int_equal(plx_bus_new(&c, f.path, "c"), -EUSERS);
        assert_null(c);
        /* A freed slot is usable again (once the broker has seen it go). */
        plx_bus_free(a);
        for (int i = 0; i < 100; i++) {
                if (plx_bus_new(&c, f.path, "c") == 0)
                        break;
                usleep(10000);
        }
        assert_non_null(c);
        plx_bus_free(b);
        plx_bus_free(c);
        stop(&f);
}

static void test_limit_clients(void **state) {
        limit_two_clients(tweak_clients);
}

static void tweak_subscriptions(plx_broker_config *c) {
        c->max_subscriptions = 2;
}

static int ignore_signal(plx_msg *m, void *userdata) {
        return 0;
}

static void test_limit_subscriptions(void **state) {
        Fixture f = {};
        plx_slot *s1, *s2, *s3 = NULL;
        plx_bus *bus;

        start(&f, tweak_subscriptions);
        assert_int_equal(plx_bus_new(&bus, f.path, "subs"), 0);
        assert_int_equal(plx_bus_subscribe(bus, &s1, "a/#", ignore_signal, NULL), 0);
        assert_int_equal(plx_bus_subscribe(bus, &s2, "b/+", ignore_signal, NULL), 0);
        assert_int_equal(plx_bus_subscribe(bus, &s3, "c", ignore_signal, NULL), -EREMOTEIO);
        assert_null(s3);
        /* Unsubscribing frees a place. */
        plx_slot_free(s1);
        assert_int_equal(plx_bus_subscribe(bus, &s3, "c", ignore_signal, NULL), 0);
        plx_slot_free(s2);
        plx_slot_free(s3);
        plx_bus_free(bus);
        stop(&f);
}

typedef struct Answers {
        int n;
        int n_errors;
        char last_error[128];
} Answers;

static int on_answer(plx_msg *m, void *userdata) {
        Answers *a = userdata;

        a->n++;
        if (plx_msg_get_kind(m) == PLX_MSG_ERROR) {
                a->n_errors++;
                snprintf(a->last_error, sizeof(a->last_error), "%s", plx_msg_get_error_name(m));
        }
        return 0;
}

static int never_reply(plx_msg *m, void *userdata) {
        return 0;
}

static void tweak_pending(plx_broker_config *c) {
        c->max_pending_calls = 2;
}

static void test_limit_pending_calls(void **state) {
        Fixture f = {};
        plx_bus *caller, *callee;
        Answers a = {};

        start(&f, tweak_pending);
        assert_int_equal(plx_bus_new(&caller, f.path, "caller"), 0);
        assert_int_equal(plx_bus_new(&callee, f.path, "callee"), 0);
        assert_int_equal(plx_bus_add_method(callee, NULL, "Hang", never_reply, NULL), 0);

        for (int i = 0; i < 3; i++)
                assert_int_equal(plx_bus_call_async(caller, NULL, plx_bus_get_unique_id(callee), "Hang",
                                                    NULL, 0, PLX_TIMEOUT_DEFAULT, on_answer, &a), 0);
        /* The third is refused at once; the first two stay pending. */
        PUMP_UNTIL(a.n >= 1, caller, callee);
        assert_int_equal(a.n_errors, 1);
        assert_string_equal(a.last_error, PLX_ERROR_LIMITS_EXCEEDED);

        /* The callee's departure answers the two that waited. */
        plx_bus_free(callee);
        PUMP_UNTIL(a.n == 3, caller);
        assert_int_equal(a.n_errors, 3);
        assert_string_equal(a.last_error, PLX_ERROR_DISCONNECTED);
        plx_bus_free(caller);
        stop(&f);
}

static void tweak_timeouts(plx_broker_config *c) {
        c->default_timeout_ms = 100;
        c->max_timeout_ms = 300;
}

static void test_call_timeout_capped(void **state) {
        _cleanup_msg_ plx_msg *reply = NULL;
        Fixture f = {};
        plx_bus *caller, *callee;
        Answers a = {};
        uint64_t t0;

        start(&f, tweak_timeouts);
        assert_int_equal(plx_bus_new(&caller, f.path, "caller"), 0);
        assert_int_equal(plx_bus_new(&callee, f.path, "callee"), 0);
        assert_int_equal(plx_bus_add_method(callee, NULL, "Hang", never_reply, NULL), 0);

        /* 10 s asked, 300 ms allowed: the broker answers with Timeout. */
        assert_int_equal(plx_bus_call_async(caller, NULL, plx_bus_get_unique_id(callee), "Hang",
                                            NULL, 0, 10 * 1000 * 1000, on_answer, &a), 0);
        t0 = now_ms();
        PUMP_UNTIL(a.n == 1, caller, callee);
        assert_true(now_ms() - t0 >= 250);
        assert_true(now_ms() - t0 < 5000);
        assert_string_equal(a.last_error, PLX_ERROR_TIMEOUT);

        /* Synchronous (nobody drives the callee now): -ETIMEDOUT, with the broker's error. */
        assert_int_equal(plx_bus_call(caller, plx_bus_get_unique_id(callee), "Hang",
                                      NULL, 0, 50 * 1000, &reply), -ETIMEDOUT);
        assert_non_null(reply);
        assert_string_equal(plx_msg_get_error_name(reply), PLX_ERROR_TIMEOUT);
        assert_string_equal(plx_msg_get_sender(reply), PLX_BROKER);
        reply = plx_msg_unref(reply);
        plx_bus_free(callee);
        plx_bus_free(caller);
        stop(&f);
}

static void tweak_many_timeouts(plx_broker_config *c) {
        c->max_pending_calls = 1000;
}

static void test_many_calls_time_out(void **state) {
        enum { N_CALLERS = 4, N_CALLS = 1000 };
        Fixture f = {};
        plx_bus *callers[N_CALLERS], *callee;
        Answers a[N_CALLERS] = {};

        start(&f, tweak_many_timeouts);
        assert_int_equal(plx_bus_new(&callee, f.path, "callee"), 0);
        assert_int_equal(plx_bus_add_method(callee, NULL, "Hang", never_reply, NULL), 0);
        for (int c = 0; c < N_CALLERS; c++) {
                assert_int_equal(plx_bus_new(&callers[c], f.path, "caller"), 0);
                for (int i = 0; i < N_CALLS; i++) {
                        int r;

                        /* The caller's queue is bounded: pump when it says so. */
                        while ((r = plx_bus_call_async(callers[c], NULL, plx_bus_get_unique_id(callee),
                                                       "Hang", NULL, 0, 200 * 1000, on_answer, &a[c])) == -ENOBUFS)
                                pump_once((plx_bus *[]){ callers[c], callee }, 2);
                        assert_int_equal(r, 0);
                }
        }

        PUMP_UNTIL(a[0].n == N_CALLS && a[1].n == N_CALLS && a[2].n == N_CALLS && a[3].n == N_CALLS,
                   callers[0], callers[1], callers[2], callers[3], callee);
        for (int c = 0; c < N_CALLERS; c++) {
                assert_int_equal(a[c].n_errors, N_CALLS);
                assert_string_equal(a[c].last_error, PLX_ERROR_TIMEOUT);
                plx_bus_free(callers[c]);
        }
        plx_bus_free(callee);
        stop(&f);
}

static void tweak_queue(plx_broker_config *c) {
        c->max_queue_frames = 2;
}

static int reply_empty(plx_msg *m, void *userdata) {
        return plx_msg_reply(m, NULL, 0);
}

static void test_limit_queue(void **state) {
        enum { N = 20, SIZE = 100 * 1024 };
        Fixture f = {};
        plx_bus *caller, *callee;
        Answers a = {};
        void *payload;

        start(&f, tweak_queue);
        assert_int_equal(plx_bus_new(&caller, f.path, "caller"), 0);
        assert_int_equal(plx_bus_new(&callee, f.path, "callee"), 0);
        assert_int_equal(plx_bus_add_method(callee, NULL, "Take", reply_empty, NULL), 0);
        /* Inline frames, so that they fill the callee's queue. */
        assert_int_equal(plx_bus_set_large_path(caller, PLX_LARGE_INLINE), 0);
        payload = calloc(1, SIZE);
        assert_non_null(payload);

        /* The callee reads nothing yet: its socket and then its queue fill up. */
        for (int i = 0; i < N; i++)
                assert_int_equal(plx_bus_call_async(caller, NULL, plx_bus_get_unique_id(callee), "Take",
                                                    payload, SIZE, PLX_TIMEOUT_DEFAULT, on_answer, &a), 0);
        PUMP_UNTIL(a.n_errors > 0, caller);
        assert_string_equal(a.last_error, PLX_ERROR_QUEUE_FULL);

        /* Every call is answered: by the callee, or refused by the broker. */
        PUMP_UNTIL(a.n == N, caller, callee);
        assert_true(a.n_errors < N);
        assert_string_equal(a.last_error, PLX_ERROR_QUEUE_FULL);
        free(payload);
        plx_bus_free(callee);
        plx_bus_free(caller);
        stop(&f);
}

/* --- raw clients, for what libplexus would never send ------------------ */

static int raw_connect(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        return fd;
}

static void raw_send(int fd, Plexus__Header *h, const void *payload, size_t size) {
        uint8_t buf[FRAME_SIZE_MAX];
        size_t n = plexus__header__pack(h, buf + FRAME_PREFIX_SIZE);

        frame_prefix(buf, (uint32_t)n);
        memcpy(buf + FRAME_PREFIX_SIZE + n, payload, size);
        assert_int_equal(send(fd, buf, FRAME_PREFIX_SIZE + n + size, MSG_NOSIGNAL),
                         (ssize_t)(FRAME_PREFIX_SIZE + n + size));
}

/* Receive one frame within 5 s; returns its header (free_unpacked it), NULL on EOF. */
static Plexus__Header *raw_recv(int fd) {
        static uint8_t buf[FRAME_SIZE_MAX];
        struct pollfd p = { .fd = fd, .events = POLLIN };
        FrameView v;
        ssize_t n;

        assert_int_equal(poll(&p, 1, 5000), 1);
        n = recv(fd, buf, sizeof(buf), 0);
        assert_true(n >= 0);
        if (n == 0)
                return NULL;
        assert_int_equal(frame_split(buf, (size_t)n, &v), 0);
        return plexus__header__unpack(NULL, v.header_len, v.header);
}

static char *raw_hello(int fd) {
        Plexus__Hello hello = PLEXUS__HELLO__INIT;
        Plexus__Header h = PLEXUS__HEADER__INIT, *r;
        uint8_t buf[64];
        char *id;

        hello.protocol_version = PLX_PROTOCOL_VERSION;
        h.kind = PLEXUS__KIND__KIND_HELLO;
        h.serial = 1;
        raw_send(fd, &h, buf, plexus__hello__pack(&hello, buf));
        r = raw_recv(fd);
        assert_non_null(r);
        assert_int_equal(r->kind, PLEXUS__KIND__KIND_REPLY);
        id = strdup(r->destination);
        plexus__header__free_unpacked(r, NULL);
        return id;
}

static void tweak_hello(plx_broker_config *c) {
        c->hello_timeout_ms = 100;
}

static void test_hello_deadline(void **state) {
        Fixture f = {};
        uint64_t t0;
        int fd;

        start(&f, tweak_hello);
        fd = raw_connect(f.path);
        t0 = now_ms();
        /* Silent client: disconnected (EOF) after the deadline. */
        assert_null(raw_recv(fd));
        assert_true(now_ms() - t0 >= 90);
        close(fd);
        stop(&f);
}

/* --- per-uid and total limits (all clients here share our uid) ------------ */

static void tweak_user_clients(plx_broker_config *c) {
        c->max_user_clients = 2;
}

static void test_limit_user_clients(void **state) {
        limit_two_clients(tweak_user_clients);
}

/* Two silent connections fill the limit; the third is told and closed, until one says HELLO. */
static void limit_unauthenticated(void (*tweak)(plx_broker_config *c)) {
        Fixture f = {};
        Plexus__Header *h;
        plx_bus *bus = NULL;
        int silent[2], fd;
        char *id;

        start(&f, tweak);
        for (size_t i = 0; i < ELEMENTSOF(silent); i++)
                silent[i] = raw_connect(f.path);
        fd = raw_connect(f.path);
        h = raw_recv(fd);
        assert_non_null(h);
        assert_int_equal(h->kind, PLEXUS__KIND__KIND_ERROR);
        assert_string_equal(h->error_name, PLX_ERROR_LIMITS_EXCEEDED);
        plexus__header__free_unpacked(h, NULL);
        assert_null(raw_recv(fd));
        close(fd);
        assert_int_equal(plx_bus_new(&bus, f.path, "refused"), -EUSERS);

        /* One finishes its handshake: a slot before HELLO is free again. */
        id = raw_hello(silent[0]);
        free(id);
        assert_int_equal(plx_bus_new(&bus, f.path, "admitted"), 0);
        assert_int_equal(plx_bus_call(bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        plx_bus_free(bus);
        for (size_t i = 0; i < ELEMENTSOF(silent); i++)
                close(silent[i]);
        stop(&f);
}

static void tweak_user_unauthenticated(plx_broker_config *c) {
        c->max_user_unauthenticated = 2;
}

static void tweak_unauthenticated(plx_broker_config *c) {
        c->max_unauthenticated = 2;
}

static void test_limit_unauthenticated(void **state) {
        limit_unauthenticated(tweak_user_unauthenticated);
        limit_unauthenticated(tweak_unauthenticated);
}

static uint64_t stats_user_quota(plx_bus *bus) {
        plx_msg *reply = NULL;
        Plexus__Stats *st;
        const void *p;
        uint64_t n;
        size_t size;

        assert_int_equal(plx_bus_call(bus, PLX_BROKER, "GetStats", NULL, 0, PLX_TIMEOUT_DEFAULT, &reply), 0);
        p = plx_msg_get_payload(reply, &size);
        st = plexus__stats__unpack(NULL, size, p);
        assert_non_null(st);
        n = st->n_user_quota;
        plexus__stats__free_unpacked(st, NULL);
        plx_msg_unref(reply);
        return n;
}

/*
 * Calls of 100 KiB (with @n_fds fds each) for a callee that reads nothing
 * yet: its socket fills, then at most one frame fits the quota @tweak sets,
 * far below the callee's own queue limits. Every call is answered, by the
 * callee or with QueueFull.
 */
static void limit_user_queue(void (*tweak)(plx_broker_config *c), size_t n_fds) {
        enum { N = 20, SIZE = 100 * 1024 };
        Fixture f = {};
        plx_bus *caller, *callee;
        Answers a = {};
        int fds[2] = { -1, -1 };
        void *payload;

        assert_true(n_fds <= ELEMENTSOF(fds));
        for (size_t i = 0; i < n_fds; i++) {
                fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
                assert_true(fds[i] >= 0);
        }
        start(&f, tweak);
        assert_int_equal(plx_bus_new(&caller, f.path, "caller"), 0);
        assert_int_equal(plx_bus_new(&callee, f.path, "callee"), 0);
        assert_int_equal(plx_bus_add_method(callee, NULL, "Take", reply_empty, NULL), 0);
        assert_int_equal(plx_bus_set_large_path(caller, PLX_LARGE_INLINE), 0);
        payload = calloc(1, SIZE);
        assert_non_null(payload);

        for (int i = 0; i < N; i++)
                assert_int_equal(plx_bus_call_async_with_fds(caller, NULL, plx_bus_get_unique_id(callee), "Take",
                                                             payload, SIZE, fds, n_fds, PLX_TIMEOUT_DEFAULT,
                                                             on_answer, &a), 0);
        PUMP_UNTIL(a.n_errors > 0, caller);
        assert_string_equal(a.last_error, PLX_ERROR_QUEUE_FULL);
        assert_true(stats_user_quota(caller) > 0);

        PUMP_UNTIL(a.n == N, caller, callee);
        assert_true(a.n_errors < N);
        free(payload);
        plx_bus_free(callee);
        plx_bus_free(caller);
        stop(&f);
        for (size_t i = 0; i < n_fds; i++)
                close(fds[i]);
}

static void tweak_user_queue_bytes(plx_broker_config *c) {
        c->max_user_queue_bytes = FRAME_SIZE_MAX + 64;
}

static void tweak_total_queue_bytes(plx_broker_config *c) {
        c->max_total_queue_bytes = FRAME_SIZE_MAX + 64;
}

static void tweak_user_queue_fds(plx_broker_config *c) {
        c->max_user_queue_fds = 2;
}

static void tweak_total_queue_fds(plx_broker_config *c) {
        c->max_total_queue_fds = 2;
}

static void test_limit_user_queue(void **state) {
        limit_user_queue(tweak_user_queue_bytes, 0);
        limit_user_queue(tweak_total_queue_bytes, 0);
        limit_user_queue(tweak_user_queue_fds, 2);
        limit_user_queue(tweak_total_queue_fds, 2);
}

static int on_stray(plx_msg *m, void *userdata) {
        return on_answer(m, userdata);
}

static void test_reply_only_from_callee_once(void **state) {
        Plexus__Header h = PLEXUS__HEADER__INIT, *call, *err;
        _cleanup_msg_ plx_msg *reply = NULL;
        Fixture f = {};
        Answers a = {};
        char *callee_id, *spoofer_id;
        int callee, spoofer;
        plx_bus *caller;

        start(&f, NULL);
        assert_int_equal(plx_bus_new(&caller, f.path, "caller"), 0);
        plx_bus_set_error_handler(caller, on_stray, &a);
        callee = raw_connect(f.path);
        callee_id = raw_hello(callee);
        spoofer = raw_connect(f.path);
        spoofer_id = raw_hello(spoofer);

        assert_int_equal(plx_bus_call_async(caller, NULL, callee_id, "Work", "x", 1,
                                            PLX_TIMEOUT_DEFAULT, on_answer, &a), 0);
        assert_int_equal(plx_bus_flush(caller), 0);
        call = raw_recv(callee);
        assert_non_null(call);
        assert_int_equal(call->kind, PLEXUS__KIND__KIND_CALL);
        assert_string_equal(call->sender, plx_bus_get_unique_id(caller));

        /* A third client answers first: refused, not delivered. */
        h.kind = PLEXUS__KIND__KIND_REPLY;
        h.serial = 7;
        h.reply_serial = call->serial;
        h.destination = call->sender;
        h.sender = callee_id;           /* forged: overwritten anyway */
        raw_send(spoofer, &h, "spoof", 5);
        err = raw_recv(spoofer);
        assert_non_null(err);
        assert_string_equal(err->error_name, PLX_ERROR_UNEXPECTED_REPLY);
        assert_int_equal(err->reply_serial, 7);
        plexus__header__free_unpacked(err, NULL);

        /* The callee answers twice: the first counts, the second is refused. */
        h.serial = 2;
        raw_send(callee, &h, "real", 4);
        h.serial = 3;
        raw_send(callee, &h, "again", 5);
        err = raw_recv(callee);
        assert_non_null(err);
        assert_string_equal(err->error_name, PLX_ERROR_UNEXPECTED_REPLY);
        assert_int_equal(err->reply_serial, 3);
        plexus__header__free_unpacked(err, NULL);

        PUMP_UNTIL(a.n == 1, caller);
        assert_int_equal(a.n_errors, 0);
        /* Nothing else reached the caller: a Ping round trip flushes the path. */
        assert_int_equal(plx_bus_call(caller, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, &reply), 0);
        assert_int_equal(plx_bus_process(caller), 0);
        assert_int_equal(a.n, 1);

        plexus__header__free_unpacked(call, NULL);
        free(callee_id);
        free(spoofer_id);
        close(callee);
        close(spoofer);
        plx_bus_free(caller);
        stop(&f);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_embed_stop_from_thread),
                cmocka_unit_test(test_two_brokers_one_process),
                cmocka_unit_test(test_second_broker_refused),
                cmocka_unit_test(test_config_rejected),
                cmocka_unit_test(test_limit_clients),
                cmocka_unit_test(test_limit_subscriptions),
                cmocka_unit_test(test_limit_pending_calls),
                cmocka_unit_test(test_call_timeout_capped),
                cmocka_unit_test(test_many_calls_time_out),
                cmocka_unit_test(test_limit_queue),
                cmocka_unit_test(test_hello_deadline),
                cmocka_unit_test(test_limit_user_clients),
                cmocka_unit_test(test_limit_unauthenticated),
                cmocka_unit_test(test_limit_user_queue),
                cmocka_unit_test(test_reply_only_from_callee_once),
                cmocka_unit_test(test_reload_keeps_config),
                cmocka_unit_test(test_reload_no_file),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
