/*
 * Surviving a broker restart (libclient/reconnect.c), against real brokers:
 * a client that reconnects gets its name (with its lease and last will) and
 * its subscriptions back under a new unique id, its calls in flight fail
 * with a local plexus.Error.Disconnected, and its connection handler hears
 * LOST (with the reason) and then RESTORED; while no broker runs, sends fail
 * at once with -ENOTCONN and plx_bus_get_timeout() holds the next attempt.
 * A client that did not ask to reconnect ends with -ECONNRESET as before.
 * With socket activation, a restart under load (a publisher, a caller and
 * a service in their own processes) loses nobody.
 *
 * The restart tests manage the broker themselves (harness_prepare(), then
 * harness_broker_start() or a spawn with a socket passed as systemd does).
 * Every wait is bounded; the checks are on answers, not on timing.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <systemd/sd-event.h>

#include "harness.h"
#include "util.h"

#define N_CHILDREN 3
#define NAME "org.example.Restart"
#define LOAD_NAME "org.example.Load"

typedef struct Fixture {
        Harness h;
        int n_fds;                      /* open before setup */
        int listen_fd;                  /* our own listening socket, or -1 */
        HarnessChild children[N_CHILDREN]; /* killed and reaped by the teardown */
} Fixture;

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        signal(SIGPIPE, SIG_IGN);
        f->n_fds = harness_count_fds();
        f->listen_fd = -1;
        for (size_t i = 0; i < N_CHILDREN; i++)
                f->children[i] = (HarnessChild) HARNESS_CHILD_NULL;
        if (harness_prepare(&f->h) < 0) {
                free(f);
                return -1;
        }
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        int n, ret = 0;

        for (size_t i = 0; i < N_CHILDREN; i++) {
                if (f->children[i].pid > 0)
                        kill(f->children[i].pid, SIGKILL);
                harness_child_wait(&f->children[i], harness_timeout_ms(HARNESS_TIMEOUT_MS));
        }
        if (f->h.broker_pid > 0)
                harness_broker_stop(&f->h);
        if (f->listen_fd >= 0)
                close(f->listen_fd);
        unsetenv("PLEXUS_BUS_ADDRESS");
        harness_cleanup(&f->h);
        n = harness_count_fds();
        if (n != f->n_fds) {
                fprintf(stderr, "teardown: %d fds open, %d before the test: leaked fds\n", n, f->n_fds);
                ret = -1;
        }
        free(f);
        return ret;
}

/* --- What the callbacks saw --------------------------------------------- */

typedef struct ConnLog {
        unsigned n_lost;
        unsigned n_restored;
        bool lost;                      /* LOST since the last RESTORED */
        bool restored;                  /* RESTORED since the last LOST */
        bool out_of_order;              /* RESTORED without LOST, or LOST twice */
        char lost_reason[64];
        char restored_reason[320];      /* "" for NULL */
        int report_fd;                  /* in children: where "restored N" goes, else -1 */
} ConnLog;

static int on_connection(plx_bus *bus, int event, const char *reason, void *userdata) {
        ConnLog *log = userdata;

        switch (event) {
        case PLX_CONNECTION_LOST:
                if (log->lost)
                        log->out_of_order = true;
                log->n_lost++;
                log->lost = true;
                log->restored = false;
                snprintf(log->lost_reason, sizeof(log->lost_reason), "%s", reason ?: "(null)");
                break;
        case PLX_CONNECTION_RESTORED:
                if (!log->lost)
                        log->out_of_order = true;
                log->n_restored++;
                log->lost = false;
                log->restored = true;
                snprintf(log->restored_reason, sizeof(log->restored_reason), "%s", reason ?: "");
                if (log->report_fd >= 0)
                        harness_report(log->report_fd, "restored %u", log->n_restored);
                break;
        default:
                log->out_of_order = true;
        }
        return 0;
}

typedef struct Answer {
        bool done;
        int kind;
        char error[128];
        char payload[128];
        bool local;                     /* no sender: made by libplexus */
} Answer;

static int on_answer(plx_msg *m, void *userdata) {
        Answer *a = userdata;
        const void *p;
        size_t n;

        a->done = true;
        a->kind = plx_msg_get_kind(m);
        a->local = plx_msg_get_sender(m) == NULL;
        snprintf(a->error, sizeof(a->error), "%s", plx_msg_get_error_name(m) ?: "");
        p = plx_msg_get_payload(m, &n);
        snprintf(a->payload, sizeof(a->payload), "%.*s", (int)MIN(n, 100), (const char *)p);
        return 0;
}

typedef struct Signals {
        unsigned n;
        char last_topic[128];
        char last_payload[64];
        char last_sender[64];
} Signals;

static int on_signal(plx_msg *m, void *userdata) {
        Signals *s = userdata;
        const void *p;
        size_t n;

        s->n++;
        snprintf(s->last_topic, sizeof(s->last_topic), "%s", plx_msg_get_topic(m));
        snprintf(s->last_sender, sizeof(s->last_sender), "%s", plx_msg_get_sender(m) ?: "");
        p = plx_msg_get_payload(m, &n);
        snprintf(s->last_payload, sizeof(s->last_payload), "%.*s", (int)MIN(n, 60), (const char *)p);
        return 0;
}

static int on_echo(plx_msg *m, void *userdata) {
        const void *p;
        size_t n;

        p = plx_msg_get_payload(m, &n);
        return plx_msg_reply(m, p, n);
}

/* A method that never answers: its calls stay in flight. */
static int on_hold(plx_msg *m, void *userdata) {
        unsigned *n_held = userdata;

        if (n_held)
                (*n_held)++;
        return 0;
}

/* A synchronous call in flight when the broker goes (in a child: it blocks). */
static int sync_caller_child(int report_fd, int control_fd, void *userdata) {
        const char *hole_id = userdata;
        _cleanup_bus_ plx_bus *bus = NULL;
        _cleanup_msg_ plx_msg *reply = NULL;
        const char *address = getenv("PLEXUS_BUS_ADDRESS");

        child_assert_int_eq(plx_bus_new(&bus, address, "sync-caller"), 0);
        child_assert_int_eq(plx_bus_set_reconnect(bus, 1), 0);
        child_assert_int_eq(plx_bus_call(bus, hole_id, "Hold", NULL, 0, 60ull * 1000 * 1000, &reply), -EREMOTEIO);
        child_assert(plx_msg_get_sender(reply) == NULL);
        child_assert(strcmp(plx_msg_get_error_name(reply), PLX_ERROR_DISCONNECTED) == 0);
        return 0;
}

/* Keeps the CALL to answer it later. */
static int on_keep(plx_msg *m, void *userdata) {
        plx_msg **kept = userdata;

        *kept = plx_msg_ref(m);
        return 0;
}

/* Drive every bus of @buses until *@done, bounded; the first error ends it. */
static int drive(plx_bus *const *buses, size_t n, const bool *done, int timeout_ms) {
        uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;

        while (!*done) {
                struct pollfd pfd[4];
                bool busy = false;
                int ms = 50;

                assert_true(n <= ELEMENTSOF(pfd));
                for (size_t i = 0; i < n; i++) {
                        int r = plx_bus_process(buses[i]);

                        if (r < 0)
                                return r;
                        busy |= r > 0;
                }
                if (busy)
                        continue;
                if (harness_now_ms() >= deadline)
                        return -ETIMEDOUT;
                for (size_t i = 0; i < n; i++) {
                        int t;

                        if (plx_bus_get_timeout(buses[i], &t) == 0 && t >= 0 && t < ms)
                                ms = t;
                        pfd[i] = (struct pollfd) { .fd = plx_bus_get_fd(buses[i]),
                                                   .events = (short)plx_bus_get_events(buses[i]) };
                }
                if (poll(pfd, n, ms) < 0 && errno != EINTR)
                        return -errno;
        }
        return 0;
}

/* --- 1. A restart: everything comes back -------------------------------- */

static void check_restart(Fixture *f, int sig) {
        _cleanup_bus_ plx_bus *svc = NULL, *hole = NULL, *caller = NULL;
        plx_bus *pad[3] = {};
        ConnLog log = { .report_fd = -1 };
        Answer held = {}, echo = {}, during = {}, kept_answer = {};
        _cleanup_msg_ plx_msg *kept = NULL;
        Signals news = {}, wills = {};
        char old_id[32], hole_id[32], *owner = NULL;
        unsigned n_held = 0;
        bool never = false;
        int fd, ms, r;

        assert_int_equal(harness_broker_start(&f->h), 0);
        /* Connections ahead of ours, so that our old unique id cannot come back by chance. */
        for (size_t i = 0; i < ELEMENTSOF(pad); i++)
                assert_int_equal(plx_bus_new(&pad[i], f->h.address, "pad"), 0);

        assert_int_equal(plx_bus_new(&svc, f->h.address, "restart-service"), 0);
        assert_int_equal(plx_bus_set_reconnect(svc, 1), 0);
        plx_bus_set_connection_handler(svc, on_connection, &log);
        fd = plx_bus_get_fd(svc);
        assert_true(fd >= 0);
        assert_int_equal(plx_bus_request_name_lease(svc, NAME, PLX_NAME_DO_NOT_QUEUE, 600 * 1000,
                                                    "will/restart", "gone", 4),
                         PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_add_method(svc, NULL, "Echo", on_echo, NULL), 0);
        /* Not a subscription to the shutdown topic: the reason must come all the same. */
        assert_int_equal(plx_bus_subscribe(svc, NULL, "news/#", on_signal, &news), 0);
        snprintf(old_id, sizeof(old_id), "%s", plx_bus_get_unique_id(svc));

        /* A call in flight when the broker goes: to a callee that never answers. */
        assert_int_equal(plx_bus_new(&hole, f->h.address, "black-hole"), 0);
        assert_int_equal(plx_bus_add_method(hole, NULL, "Hold", on_hold, &n_held), 0);
        snprintf(hole_id, sizeof(hole_id), "%s", plx_bus_get_unique_id(hole));
        setenv("PLEXUS_BUS_ADDRESS", f->h.address, 1);
        assert_int_equal(harness_child_fork(&f->children[0], sync_caller_child, hole_id), 0);
        while (n_held == 0)
                assert_int_equal(harness_bus_wait(hole, &never, 20) == -ETIMEDOUT || n_held > 0, true);
        assert_int_equal(plx_bus_call_async(svc, NULL, hole_id, "Hold", "x", 1, 60ull * 1000 * 1000,
                                            on_answer, &held), 0);
        assert_int_equal(harness_bus_flush(svc, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        /* And one the service holds, unanswered, when the broker goes. */
        assert_int_equal(plx_bus_add_method(svc, NULL, "Keep", on_keep, &kept), 0);
        assert_int_equal(plx_bus_call_async(hole, NULL, NAME, "Keep", NULL, 0, PLX_TIMEOUT_DEFAULT,
                                            on_answer, &kept_answer), 0);
        assert_int_equal(harness_bus_flush(hole, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        while (!kept)
                assert_int_equal(harness_bus_wait(svc, &never, 20) == -ETIMEDOUT || kept, true);
        /* The callee has it: the call is in flight at the broker. */
        assert_int_equal(harness_bus_wait(hole, &never, 300), -ETIMEDOUT);

        r = harness_broker_signal(&f->h, sig);
        assert_int_equal(r, sig == SIGTERM ? 0 : 128 + sig);
        for (size_t i = 0; i < ELEMENTSOF(pad); i++)
                pad[i] = plx_bus_free(pad[i]);
        hole = plx_bus_free(hole);

        /* A synchronous call fails like an asynchronous one. */
        assert_int_equal(harness_child_wait(&f->children[0], harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);

        /* No broker now: the loss is told, the call failed locally. */
        assert_int_equal(harness_bus_wait(svc, &log.lost, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_true(held.done);
        assert_int_equal(held.kind, PLX_MSG_ERROR);
        assert_string_equal(held.error, PLX_ERROR_DISCONNECTED);
        assert_true(held.local);
        assert_int_equal(log.n_lost, 1);
        assert_int_equal(log.n_restored, 0);
        assert_string_equal(log.lost_reason, sig == SIGTERM ? PLX_DISCONNECT_SHUTDOWN : PLX_DISCONNECT_RESET);

        /* Disconnected: fail fast, keep the fd, announce the next attempt. */
        assert_int_equal(plx_bus_publish(svc, "news/x", "a", 1), -ENOTCONN);
        assert_int_equal(plx_bus_call(svc, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), -ENOTCONN);
        assert_int_equal(plx_bus_call_async(svc, NULL, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT,
                                            on_answer, &during), -ENOTCONN);
        assert_int_equal(plx_bus_get_fd(svc), fd);
        /* Idle until the next attempt, which is at most 2 s away: no busy loop, even with a lease due. */
        assert_int_equal(harness_bus_wait(svc, &never, 700), -ETIMEDOUT);
        while ((r = plx_bus_process(svc)) > 0)
                ;
        assert_int_equal(r, 0);
        assert_int_equal(plx_bus_get_timeout(svc, &ms), 0);
        assert_true(ms > 0 && ms <= 2000);
        assert_int_equal(log.n_restored, 0);

        assert_int_equal(harness_broker_start(&f->h), 0);
        assert_int_equal(harness_bus_wait(svc, &log.restored, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_false(log.out_of_order);
        assert_int_equal(log.n_lost, 1);
        assert_int_equal(log.n_restored, 1);
        assert_string_equal(log.restored_reason, "");
        assert_false(during.done);
        assert_int_equal(plx_bus_get_fd(svc), fd);
        /* Its caller is gone with the old connection: no answer goes to the new broker. */
        assert_int_equal(plx_msg_reply(kept, "late", 4), -ECONNRESET);

        /* A new unique id, and the name is ours under it. */
        assert_string_not_equal(plx_bus_get_unique_id(svc), old_id);
        assert_int_equal(plx_bus_new(&caller, f->h.address, "restart-caller"), 0);
        assert_int_equal(plx_bus_get_name_owner(caller, NAME, &owner), 0);
        assert_string_equal(owner, plx_bus_get_unique_id(svc));
        free(owner);
        owner = NULL;

        /* Called by name, and subscribed again. */
        assert_int_equal(plx_bus_call_async(caller, NULL, NAME, "Echo", "again", 5, PLX_TIMEOUT_DEFAULT,
                                            on_answer, &echo), 0);
        assert_int_equal(drive((plx_bus *[]) { svc, caller }, 2, &echo.done,
                               harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(echo.kind, PLX_MSG_REPLY);
        assert_string_equal(echo.payload, "again");

        assert_int_equal(plx_bus_publish(caller, "news/today", "fresh", 5), 0);
        assert_int_equal(harness_bus_flush(caller, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        {
                unsigned before = news.n;
                bool got = false;

                while (!got) {
                        assert_int_equal(harness_bus_wait(svc, &never, 20) == -ETIMEDOUT ||
                                         news.n > before, true);
                        got = news.n > before;
                }
        }
        assert_string_equal(news.last_topic, "news/today");
        assert_string_equal(news.last_payload, "fresh");

        /* The lease came back with the name: libplexus renews it, so it outlives its length. */
        assert_int_equal(drive((plx_bus *[]) { svc, caller }, 2, &never, 1500), -ETIMEDOUT);
        assert_int_equal(plx_bus_get_name_owner(caller, NAME, &owner), 0);
        assert_string_equal(owner, plx_bus_get_unique_id(svc));
        free(owner);

        /* And the last will: the broker publishes it when the owner vanishes. */
        assert_int_equal(plx_bus_subscribe(caller, NULL, "will/#", on_signal, &wills), 0);
        svc = plx_bus_free(svc);
        while (wills.n == 0)
                assert_int_equal(harness_bus_wait(caller, &never, 20) == -ETIMEDOUT || wills.n > 0, true);
        assert_string_equal(wills.last_topic, "will/restart");
        assert_string_equal(wills.last_payload, "gone");
}

static void test_restart_sigterm(void **state) {
        check_restart(*state, SIGTERM);
}

static void test_restart_sigkill(void **state) {
        check_restart(*state, SIGKILL);
}

/* --- 1b. What did not come back is told ------------------------------- */

static void test_restore_reports_losses(void **state) {
        Fixture *f = *state;
        _cleanup_bus_ plx_bus *svc = NULL, *thief = NULL;
        ConnLog log = { .report_fd = -1 };
        char *owner = NULL;

        assert_int_equal(harness_broker_start(&f->h), 0);
        assert_int_equal(plx_bus_new(&svc, f->h.address, "restore-losses"), 0);
        assert_int_equal(plx_bus_set_reconnect(svc, 1), 0);
        plx_bus_set_connection_handler(svc, on_connection, &log);
        assert_int_equal(plx_bus_request_name(svc, "org.example.Taken", PLX_NAME_DO_NOT_QUEUE),
                         PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_request_name(svc, "org.example.Queued", 0), PLX_NAME_PRIMARY_OWNER);

        /* The service sleeps through the restart; another client is faster. */
        assert_int_equal(harness_broker_signal(&f->h, SIGKILL), 128 + SIGKILL);
        assert_int_equal(harness_broker_start(&f->h), 0);
        assert_int_equal(plx_bus_new(&thief, f->h.address, "thief"), 0);
        assert_int_equal(plx_bus_request_name(thief, "org.example.Taken", 0), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_request_name(thief, "org.example.Queued", 0), PLX_NAME_PRIMARY_OWNER);

        assert_int_equal(harness_bus_wait(svc, &log.restored, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(log.n_lost, 1);
        assert_string_equal(log.restored_reason, "name org.example.Taken: owned by another client");

        /* Queued again as requested: it gets the name when the thief lets go. */
        assert_int_equal(plx_bus_release_name(thief, "org.example.Queued"), PLX_NAME_RELEASED);
        assert_int_equal(plx_bus_get_name_owner(thief, "org.example.Queued", &owner), 0);
        assert_string_equal(owner, plx_bus_get_unique_id(svc));
        free(owner);
}

/* --- 2. Opting out: as in libplexus 0.1 ---------------------------------- */

static void test_opt_out(void **state) {
        Fixture *f = *state;
        _cleanup_bus_ plx_bus *plain = NULL, *off = NULL, *hole = NULL;
        ConnLog log = { .report_fd = -1 }, off_log = { .report_fd = -1 };
        Answer held = {};
        Signals news = {};
        bool never = false;

        assert_int_equal(harness_broker_start(&f->h), 0);
        /* The default is off. */
        assert_int_equal(plx_bus_new(&plain, f->h.address, "plain"), 0);
        plx_bus_set_connection_handler(plain, on_connection, &log);
        assert_int_equal(plx_bus_subscribe(plain, NULL, "news/#", on_signal, &news), 0);
        /* Switched on and off again. */
        assert_int_equal(plx_bus_new(&off, f->h.address, "off"), 0);
        assert_int_equal(plx_bus_set_reconnect(off, 1), 0);
        assert_int_equal(plx_bus_set_reconnect(off, 0), 0);
        plx_bus_set_connection_handler(off, on_connection, &off_log);

        assert_int_equal(plx_bus_new(&hole, f->h.address, "black-hole"), 0);
        assert_int_equal(plx_bus_add_method(hole, NULL, "Hold", on_hold, NULL), 0);
        assert_int_equal(plx_bus_call_async(plain, NULL, plx_bus_get_unique_id(hole), "Hold", NULL, 0,
                                            PLX_TIMEOUT_DEFAULT, on_answer, &held), 0);
        assert_int_equal(harness_bus_flush(plain, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(harness_bus_wait(hole, &never, 300), -ETIMEDOUT);

        assert_int_equal(harness_broker_signal(&f->h, SIGTERM), 0);
        assert_int_equal(harness_bus_wait(plain, &never, harness_timeout_ms(HARNESS_TIMEOUT_MS)), -ECONNRESET);
        assert_int_equal(harness_bus_wait(off, &never, harness_timeout_ms(HARNESS_TIMEOUT_MS)), -ECONNRESET);
        assert_true(held.done);
        assert_string_equal(held.error, PLX_ERROR_DISCONNECTED);
        /* Told once, with the reason, without having subscribed to the shutdown topic. */
        assert_int_equal(log.n_lost, 1);
        assert_string_equal(log.lost_reason, PLX_DISCONNECT_SHUTDOWN);
        assert_int_equal(off_log.n_lost, 1);
        assert_int_equal(plx_bus_publish(plain, "news/x", "a", 1), -ECONNRESET);

        /* A new broker changes nothing for them. */
        assert_int_equal(harness_broker_start(&f->h), 0);
        assert_int_equal(harness_bus_wait(plain, &never, 300), -ECONNRESET);
        assert_int_equal(plx_bus_process(off), -ECONNRESET);
        assert_int_equal(log.n_lost, 1);
        assert_int_equal(log.n_restored, 0);
        assert_int_equal(off_log.n_restored, 0);
}

/* --- 3. sd-event: the loop keeps watching across the restart ------------- */

static void test_restart_sd_event(void **state) {
        Fixture *f = *state;
        _cleanup_bus_ plx_bus *svc = NULL, *caller = NULL;
        ConnLog log = { .report_fd = -1 };
        sd_event *event = NULL;
        Answer echo = {};
        uint64_t deadline;

        assert_int_equal(harness_broker_start(&f->h), 0);
        assert_int_equal(sd_event_new(&event), 0);
        assert_int_equal(plx_bus_new(&svc, f->h.address, "event-service"), 0);
        assert_int_equal(plx_bus_request_name(svc, NAME, 0), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_add_method(svc, NULL, "Echo", on_echo, NULL), 0);
        /* Attached first: switching on reconnecting moves the io source to the stable fd. */
        assert_int_equal(plx_bus_attach_event(svc, event, 0), 0);
        assert_int_equal(plx_bus_set_reconnect(svc, 1), 0);
        plx_bus_set_connection_handler(svc, on_connection, &log);

        assert_int_equal(harness_broker_signal(&f->h, SIGKILL), 128 + SIGKILL);
        assert_int_equal(harness_broker_start(&f->h), 0);

        deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);
        while (!log.restored && harness_now_ms() < deadline)
                assert_true(sd_event_run(event, 100 * 1000) >= 0);
        assert_true(log.restored);
        assert_int_equal(log.n_lost, 1);
        assert_string_equal(log.lost_reason, PLX_DISCONNECT_RESET);

        assert_int_equal(plx_bus_new(&caller, f->h.address, "event-caller"), 0);
        assert_int_equal(plx_bus_call_async(caller, NULL, NAME, "Echo", "loop", 4, PLX_TIMEOUT_DEFAULT,
                                            on_answer, &echo), 0);
        while (!echo.done && harness_now_ms() < deadline) {
                assert_true(sd_event_run(event, 10 * 1000) >= 0);
                assert_true(harness_bus_drain(caller) >= 0);
        }
        assert_true(echo.done);
        assert_string_equal(echo.payload, "loop");

        plx_bus_detach_event(svc);
        sd_event_unref(event);
}

/* --- 4. Socket activation: a restart under load loses nobody ------------- */

/*
 * Each child reconnects on its own and reports, on its report pipe,
 * "ready" once, then for restart N: "restored N" (from its handler) and
 * "progress N" at its first success after that restore. On 'q' it checks
 * its tallies and exits 0, or fails with HARNESS_EXIT_FAILED.
 */

typedef struct LoadChild {
        int report_fd;
        int control_fd;
        ConnLog log;
        unsigned progress_epoch;        /* last epoch "progress" was reported for */
} LoadChild;

static void load_child_init(LoadChild *c, plx_bus *bus, int report_fd, int control_fd) {
        *c = (LoadChild) { .report_fd = report_fd, .control_fd = control_fd };
        c->log.report_fd = report_fd;
        child_assert_int_eq(plx_bus_set_reconnect(bus, 1), 0);
        plx_bus_set_connection_handler(bus, on_connection, &c->log);
}

static void load_child_progress(LoadChild *c) {
        if (c->log.n_restored > c->progress_epoch && c->log.restored) {
                c->progress_epoch = c->log.n_restored;
                harness_report(c->report_fd, "progress %u", c->progress_epoch);
        }
}

/* Process and sleep at most @ms; false once the parent says 'q'. */
static bool load_child_turn(LoadChild *c, plx_bus *bus, int ms) {
        struct pollfd pfd[2];
        char q;
        int r, t;

        while ((r = plx_bus_process(bus)) > 0)
                ;
        if (r < 0)
                child_fail("plx_bus_process: %s", strerror(-r));
        if (harness_poll_byte(c->control_fd, &q))
                return false;
        child_assert_int_eq(plx_bus_get_timeout(bus, &t), 0);
        if (t >= 0 && t < ms)
                ms = t;
        pfd[0] = (struct pollfd) { .fd = plx_bus_get_fd(bus), .events = (short)plx_bus_get_events(bus) };
        pfd[1] = (struct pollfd) { .fd = c->control_fd, .events = POLLIN };
        child_assert(pfd[0].fd >= 0);
        if (poll(pfd, 2, ms) < 0 && errno != EINTR)
                child_fail("poll: %m");
        return true;
}

static void load_child_check(LoadChild *c, unsigned n_restarts) {
        child_assert(!c->log.out_of_order);
        child_assert_int_eq(c->log.n_lost, n_restarts);
        child_assert_int_eq(c->log.n_restored, n_restarts);
        child_assert_int_eq(c->progress_epoch, n_restarts);
        if (c->log.restored_reason[0])
                child_fail("restored with: %s", c->log.restored_reason);
}

#define N_RESTARTS 2

static int service_child(int report_fd, int control_fd, void *userdata) {
        const char *address = userdata;
        _cleanup_bus_ plx_bus *bus = NULL;
        Signals ticks = {};
        unsigned ticks_at_restore = 0, last_restored = 0;
        LoadChild c;

        child_assert_int_eq(plx_bus_new(&bus, address, "load-service"), 0);
        load_child_init(&c, bus, report_fd, control_fd);
        child_assert_int_eq(plx_bus_request_name(bus, LOAD_NAME, 0), PLX_NAME_PRIMARY_OWNER);
        child_assert_int_eq(plx_bus_add_method(bus, NULL, "Echo", on_echo, NULL), 0);
        child_assert_int_eq(plx_bus_subscribe(bus, NULL, "load/#", on_signal, &ticks), 0);
        harness_report(report_fd, "ready");

        while (load_child_turn(&c, bus, 20)) {
                /* Progress for a service: a published signal arrived after the restore. */
                if (c.log.n_restored != last_restored) {
                        last_restored = c.log.n_restored;
                        ticks_at_restore = ticks.n;
                }
                if (c.log.restored && ticks.n > ticks_at_restore)
                        load_child_progress(&c);
        }
        load_child_check(&c, N_RESTARTS);
        return 0;
}

static int publisher_child(int report_fd, int control_fd, void *userdata) {
        const char *address = userdata;
        _cleanup_bus_ plx_bus *bus = NULL;
        unsigned n_sent = 0, n_notconn = 0;
        LoadChild c;

        child_assert_int_eq(plx_bus_new(&bus, address, "load-publisher"), 0);
        load_child_init(&c, bus, report_fd, control_fd);
        harness_report(report_fd, "ready");

        while (load_child_turn(&c, bus, 2)) {
                char payload[32];
                int r;

                snprintf(payload, sizeof(payload), "%u", n_sent);
                r = plx_bus_publish(bus, "load/tick", payload, strlen(payload));
                if (r == -ENOTCONN)
                        n_notconn++;
                else if (r == 0) {
                        n_sent++;
                        load_child_progress(&c);
                } else if (r != -ENOBUFS) {
                        child_fail("plx_bus_publish: %s", strerror(-r));
                }
        }
        load_child_check(&c, N_RESTARTS);
        return 0;
}

static int caller_child(int report_fd, int control_fd, void *userdata) {
        const char *address = userdata;
        _cleanup_bus_ plx_bus *bus = NULL;
        unsigned n_ok = 0, n_disconnected = 0, n_notconn = 0;
        bool wait_for_service = false;
        LoadChild c;

        child_assert_int_eq(plx_bus_new(&bus, address, "load-caller"), 0);
        load_child_init(&c, bus, report_fd, control_fd);
        harness_report(report_fd, "ready");

        while (load_child_turn(&c, bus, 1)) {
                _cleanup_msg_ plx_msg *reply = NULL;
                const void *p;
                size_t n;
                int r;

                if (wait_for_service) {
                        if (!c.log.restored)
                                continue;
                        /* We may be back before the service: wait for its name, not for luck. */
                        r = plx_bus_wait_for_name(bus, LOAD_NAME, 10ull * 1000 * 1000, NULL);
                        if (r == -ENOTCONN || r == -ECONNRESET)
                                continue;       /* lost again meanwhile */
                        child_assert_int_eq(r, 0);
                        wait_for_service = false;
                }

                r = plx_bus_call(bus, LOAD_NAME, "Echo", "ping", 4, 10ull * 1000 * 1000, &reply);
                if (r == 0) {
                        p = plx_msg_get_payload(reply, &n);
                        child_assert(n == 4 && memcmp(p, "ping", 4) == 0);
                        n_ok++;
                        load_child_progress(&c);
                } else if (r == -EREMOTEIO && plx_msg_get_sender(reply) == NULL &&
                           strcmp(plx_msg_get_error_name(reply), PLX_ERROR_DISCONNECTED) == 0) {
                        /* In flight when the broker went. */
                        n_disconnected++;
                        wait_for_service = true;
                } else if (r == -ENOTCONN) {
                        n_notconn++;
                        wait_for_service = true;
                } else {
                        child_fail("plx_bus_call: %s%s%s (restore %u, %s)", strerror(-r), reply ? ", " : "",
                                   reply ? plx_msg_get_error_name(reply) : "", c.log.n_restored,
                                   c.log.restored ? "restored" : "lost");
                }
        }
        load_child_check(&c, N_RESTARTS);
        child_assert(n_ok > 0);
        fprintf(stderr, "caller: %u answered, %u disconnected in flight, %u refused while disconnected\n",
                n_ok, n_disconnected, n_notconn);
        return 0;
}

/* plexusd with @f->listen_fd passed as fd 3, the way systemd does it. */
static void spawn_activated(Fixture *f) {
        const char *plexusd = harness_plexusd();
        pid_t pid;

        assert_non_null(plexusd);
        fflush(NULL);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char num[32];

                prctl(PR_SET_PDEATHSIG, SIGTERM);
                signal(SIGPIPE, SIG_DFL);
                /* dup2() onto itself would keep O_CLOEXEC. */
                if (f->listen_fd == 3) {
                        if (fcntl(3, F_SETFD, 0) < 0)
                                _exit(127);
                } else if (dup2(f->listen_fd, 3) < 0) {
                        _exit(127);
                }
                close_range(4, ~0U, 0);
                snprintf(num, sizeof(num), "%d", (int)getpid());
                setenv("LISTEN_FDS", "1", 1);
                setenv("LISTEN_PID", num, 1);
                setenv("LISTEN_FDNAMES", "plexus", 1);
                unsetenv("NOTIFY_SOCKET");
                execl(plexusd, plexusd, "--config", "/dev/null", (char *)NULL);
                _exit(127);
        }
        f->h.broker_pid = pid;
        assert_int_equal(harness_wait_for_broker(f->h.address, pid, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
}

static void expect_line(HarnessChild *c, const char *want) {
        char line[256];
        int r;

        r = harness_read_line(c->report_fd, line, sizeof(line), harness_timeout_ms(HARNESS_TIMEOUT_MS));
        if (r < 0)
                fail_msg("child %d: no \"%s\": %s", (int)c->pid, want, strerror(-r));
        assert_string_equal(line, want);
}

static void test_socket_activation_under_load(void **state) {
        Fixture *f = *state;
        HarnessChildFn fns[N_CHILDREN] = { service_child, caller_child, publisher_child };
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        f->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        assert_true(f->listen_fd >= 0);
        assert_true(strlen(f->h.address) < sizeof(sa.sun_path));
        memcpy(sa.sun_path, f->h.address, strlen(f->h.address) + 1);
        assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(f->listen_fd, SOMAXCONN), 0);
        spawn_activated(f);

        /* The service first: the caller expects its name. */
        for (size_t i = 0; i < N_CHILDREN; i++) {
                assert_int_equal(harness_child_fork(&f->children[i], fns[i], f->h.address), 0);
                expect_line(&f->children[i], "ready");
        }

        for (unsigned n = 1; n <= N_RESTARTS; n++) {
                char want[32];
                int sig = n % 2 ? SIGTERM : SIGKILL;

                assert_int_equal(harness_broker_signal(&f->h, sig), sig == SIGTERM ? 0 : 128 + sig);
                /* Our socket outlives the broker: clients reconnect into its backlog meanwhile. */
                spawn_activated(f);
                for (size_t i = 0; i < N_CHILDREN; i++) {
                        snprintf(want, sizeof(want), "restored %u", n);
                        expect_line(&f->children[i], want);
                        snprintf(want, sizeof(want), "progress %u", n);
                        expect_line(&f->children[i], want);
                }
        }

        /* The service last: a caller still calling would find its name gone. */
        for (size_t i = N_CHILDREN; i-- > 0;) {
                assert_int_equal(harness_write_byte(f->children[i].control_fd, 'q'), 0);
                assert_int_equal(harness_child_wait(&f->children[i], harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_restart_sigterm, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restart_sigkill, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restore_reports_losses, setup, teardown),
                cmocka_unit_test_setup_teardown(test_opt_out, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restart_sd_event, setup, teardown),
                cmocka_unit_test_setup_teardown(test_socket_activation_under_load, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
