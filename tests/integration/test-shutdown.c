/*
 * The broker's life cycle as seen from outside: SIGTERM and SIGINT end it
 * with exit code 0 and remove its socket file; connected clients get the
 * "plexus/broker/shutdown" signal and then EOF; a second broker refuses a
 * socket that a live broker owns, replaces one nobody listens on, and
 * leaves any other file at its address alone.
 *
 * These tests manage the broker themselves (harness_prepare() and
 * harness_broker_start()) because stopping it is what they test; the fd
 * check is the same as everywhere.
 */

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cmocka.h>

#include "harness.h"
#include "raw.h"

typedef struct Fixture {
        Harness h;
        int n_fds;
        int raw_fd;                     /* closed by teardown, also after a failure */
} Fixture;

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        signal(SIGPIPE, SIG_IGN);
        f->n_fds = harness_count_fds();
        f->raw_fd = -1;
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

        if (f->raw_fd >= 0)
                close(f->raw_fd);
        if (f->h.broker_pid > 0)
                harness_broker_stop(&f->h);
        harness_cleanup(&f->h);
        n = harness_count_fds();
        if (n != f->n_fds) {
                fprintf(stderr, "teardown: %d fds open, %d before the test: leaked fds\n", n, f->n_fds);
                ret = -1;
        }
        free(f);
        return ret;
}

static void check_stop(Fixture *f, int sig) {
        struct stat st;

        assert_int_equal(harness_broker_start(&f->h), 0);
        assert_int_equal(stat(f->h.address, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));

        assert_int_equal(harness_broker_signal(&f->h, sig), 0);
        assert_int_equal(stat(f->h.address, &st), -1);
        assert_int_equal(errno, ENOENT);
}

static void test_sigterm(void **state) {
        check_stop(*state, SIGTERM);
}

static void test_sigint(void **state) {
        check_stop(*state, SIGINT);
}

typedef struct Seen {
        char topic[128];
        char sender[64];
        bool done;
} Seen;

static int on_shutdown(plx_msg *m, void *userdata) {
        Seen *s = userdata;

        snprintf(s->topic, sizeof(s->topic), "%s", plx_msg_get_topic(m));
        snprintf(s->sender, sizeof(s->sender), "%s", plx_msg_get_sender(m));
        s->done = true;
        return 0;
}

/* Process until the broker has closed the connection. */
static int bus_wait_closed(plx_bus *bus, int timeout_ms) {
        bool never = false;
        int r;

        r = harness_bus_wait(bus, &never, timeout_ms);
        return r == -ECONNRESET ? 0 : (r == 0 ? -EPROTO : r);
}

static void test_clients_see_shutdown(void **state) {
        Fixture *f = *state;
        _cleanup_bus_ plx_bus *watcher = NULL, *plain = NULL;
        RawFrame *frame;
        Seen seen = {};
        char id[64];
        bool raw_saw = false;
        int fd, r;

        assert_int_equal(harness_broker_start(&f->h), 0);
        assert_int_equal(plx_bus_new(&watcher, f->h.address, "shutdown-watcher"), 0);
        assert_int_equal(plx_bus_new(&plain, f->h.address, "shutdown-plain"), 0);
        /* Not needed for the broker to send it; needed for libplexus to hand it to us. */
        assert_int_equal(plx_bus_subscribe(watcher, NULL, "plexus/#", on_shutdown, &seen), 0);

        frame = raw_frame_new();
        assert_non_null(frame);
        fd = raw_connect(f->h.address);
        assert_true(fd >= 0);
        assert_int_equal(raw_hello(fd, frame, id, sizeof(id)), 0);

        assert_int_equal(kill(f->h.broker_pid, SIGTERM), 0);

        /* libplexus: the signal, then the connection ends. */
        assert_int_equal(harness_bus_wait(watcher, &seen.done, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_string_equal(seen.topic, PLX_TOPIC_SHUTDOWN);
        assert_string_equal(seen.sender, PLX_BROKER);
        assert_int_equal(bus_wait_closed(watcher, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(bus_wait_closed(plain, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);

        /* On the wire, without any subscription: a SIGNAL frame, then EOF. */
        for (;;) {
                r = raw_recv(fd, frame, harness_timeout_ms(HARNESS_TIMEOUT_MS));
                if (r == 0 || r == -ECONNRESET)
                        break;
                assert_int_equal(r, 1);
                assert_non_null(frame->header);
                if (frame->header->kind == PLEXUS__KIND__KIND_SIGNAL &&
                    strcmp(frame->header->member, PLX_TOPIC_SHUTDOWN) == 0) {
                        assert_string_equal(frame->header->sender, PLX_BROKER);
                        raw_saw = true;
                }
        }
        assert_true(raw_saw);
        close(fd);
        raw_frame_free(frame);

        /* The broker exits cleanly and takes its socket file with it. */
        assert_int_equal(harness_broker_signal(&f->h, 0), 0);
        assert_int_equal(access(f->h.address, F_OK), -1);
}

/*
 * The shutdown signal goes to every client, and a copy of each to the
 * monitors. A monitor whose socket fails makes that copy fail, and is hung
 * up in the middle of the broadcast, from the list being walked; the broker
 * must still finish the broadcast and exit.
 */
static void test_monitor_gone_at_shutdown(void **state) {
        Fixture *f = *state;
        Plexus__Header h = PLEXUS__HEADER__INIT;
        RawFrame *frame = raw_frame_new();
        char id[64];
        bool saw = false;
        int r, mon;

        assert_non_null(frame);
        assert_int_equal(harness_broker_start(&f->h), 0);
        /* Connected in this order, the monitor is the client after ours. */
        f->raw_fd = raw_connect(f->h.address);
        assert_true(f->raw_fd >= 0);
        assert_int_equal(raw_hello(f->raw_fd, frame, id, sizeof(id)), 0);
        mon = raw_connect(f->h.address);
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

        /*
         * The monitor stops receiving: the broker's next send to it fails
         * (EPIPE), but nothing tells the broker before it tries, so the
         * first send is the shutdown signal's copy.
         */
        assert_int_equal(shutdown(mon, SHUT_RD), 0);
        assert_int_equal(kill(f->h.broker_pid, SIGTERM), 0);

        for (;;) {
                r = raw_recv(f->raw_fd, frame, harness_timeout_ms(HARNESS_TIMEOUT_MS));
                if (r == 0 || r == -ECONNRESET)
                        break;
                assert_int_equal(r, 1);
                assert_non_null(frame->header);
                if (frame->header->kind == PLEXUS__KIND__KIND_SIGNAL &&
                    strcmp(frame->header->member, PLX_TOPIC_SHUTDOWN) == 0)
                        saw = true;
        }
        assert_true(saw);
        assert_int_equal(harness_broker_signal(&f->h, 0), 0);
        close(mon);
        raw_frame_free(frame);
}

/* A client that connected but has not said HELLO yet must not stall the shutdown. */
static void test_shutdown_before_hello(void **state) {
        Fixture *f = *state;

        assert_int_equal(harness_broker_start(&f->h), 0);
        f->raw_fd = raw_connect(f->h.address);
        assert_true(f->raw_fd >= 0);
        /* The broker has accepted it once it answers somebody else. */
        assert_int_equal(harness_wait_for_broker(f->h.address, 0, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);

        assert_int_equal(harness_broker_signal(&f->h, SIGTERM), 0);
        assert_int_equal(raw_wait_eof(f->raw_fd, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(access(f->h.address, F_OK), -1);
}

/*
 * A signal that arrives as soon as the socket exists must still mean a clean
 * shutdown: exit 0, socket file removed. Racy by nature, so tried a number
 * of times; any death by the signal's default action is a failure.
 */
static void test_signal_at_startup(void **state) {
        Fixture *f = *state;
        int n_killed = 0, n_other = 0, n_left = 0;

        for (int i = 0; i < 20; i++) {
                uint64_t deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);
                struct stat st;
                int r;

                unlink(f->h.address);
                assert_int_equal(harness_broker_spawn(&f->h), 0);
                while (stat(f->h.address, &st) < 0 || !S_ISSOCK(st.st_mode)) {
                        assert_true(harness_now_ms() < deadline);
                        usleep(200);
                }
                r = harness_broker_signal(&f->h, i % 2 ? SIGINT : SIGTERM);
                if (r == 128 + SIGINT || r == 128 + SIGTERM)
                        n_killed++;
                else if (r != 0)
                        n_other++;
                else if (access(f->h.address, F_OK) == 0)
                        n_left++;
        }
        if (n_killed || n_other || n_left)
                fail_msg("of 20 brokers signalled right after creating their socket, %d died from the "
                         "signal, %d exited non-zero, %d exited 0 but left the socket file",
                         n_killed, n_other, n_left);
}

static void test_second_instance_fails(void **state) {
        Fixture *f = *state;
        _cleanup_bus_ plx_bus *bus = NULL;
        HarnessChild second = HARNESS_CHILD_NULL;
        char *argv[] = { (char *)harness_plexusd(), (char *)"-a", f->h.address, NULL };
        char err[4096];
        struct stat st1, st2;
        ssize_t n;

        assert_int_equal(harness_broker_start(&f->h), 0);
        assert_int_equal(stat(f->h.address, &st1), 0);

        assert_int_equal(harness_child_spawn(&second, argv), 0);
        n = harness_read_all(second.stderr_fd, err, sizeof(err), harness_timeout_ms(HARNESS_TIMEOUT_MS));
        assert_true(n > 0);
        fprintf(stderr, "second plexusd said: %s", err);
        assert_int_not_equal(harness_child_wait(&second, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);

        /* The first broker keeps its socket file and keeps serving. */
        assert_int_equal(stat(f->h.address, &st2), 0);
        assert_int_equal(st1.st_ino, st2.st_ino);
        assert_int_equal(plx_bus_new(&bus, f->h.address, "after-second"), 0);
        assert_int_equal(plx_bus_call(bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        bus = plx_bus_free(bus);

        assert_int_equal(harness_broker_stop(&f->h), 0);
}

static void test_stale_socket_replaced(void **state) {
        Fixture *f = *state;
        _cleanup_bus_ plx_bus *bus = NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        int fd;

        /* A socket file that nobody listens on, as a crashed broker leaves it. */
        strcpy(sa.sun_path, f->h.address);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(fd);
        assert_int_equal(stat(f->h.address, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));

        assert_int_equal(harness_broker_start(&f->h), 0);
        assert_int_equal(plx_bus_new(&bus, f->h.address, "after-stale"), 0);
        assert_int_equal(plx_bus_call(bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        bus = plx_bus_free(bus);
        assert_int_equal(harness_broker_stop(&f->h), 0);
        assert_int_equal(access(f->h.address, F_OK), -1);
}

/*
 * --address naming a file that is not a socket: plexusd must neither delete
 * it nor start, and must say why. A broker that took any EADDRINUSE for a
 * stale socket unlinked whatever was there (a user's document, a config).
 */
static void test_regular_file_kept(void **state) {
        Fixture *f = *state;
        HarnessChild broker = HARNESS_CHILD_NULL;
        char *argv[] = { (char *)harness_plexusd(), (char *)"-a", f->h.address, NULL };
        static const char content[] = "precious data\n";
        char err[4096], back[64];
        struct stat st;
        ssize_t n;
        FILE *fp;

        fp = fopen(f->h.address, "we");
        assert_non_null(fp);
        assert_int_equal(fputs(content, fp) >= 0, 1);
        assert_int_equal(fclose(fp), 0);

        assert_int_equal(harness_child_spawn(&broker, argv), 0);
        n = harness_read_all(broker.stderr_fd, err, sizeof(err) - 1, harness_timeout_ms(HARNESS_TIMEOUT_MS));
        assert_true(n > 0);
        err[n] = 0;
        fprintf(stderr, "plexusd said: %s", err);
        assert_int_not_equal(harness_child_wait(&broker, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_non_null(strstr(err, "is not a socket"));

        /* The file is still there, untouched. */
        assert_int_equal(lstat(f->h.address, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        fp = fopen(f->h.address, "re");
        assert_non_null(fp);
        assert_non_null(fgets(back, sizeof(back), fp));
        fclose(fp);
        assert_string_equal(back, content);
        assert_int_equal(unlink(f->h.address), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_sigterm, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sigint, setup, teardown),
                cmocka_unit_test_setup_teardown(test_clients_see_shutdown, setup, teardown),
                cmocka_unit_test_setup_teardown(test_shutdown_before_hello, setup, teardown),
                cmocka_unit_test_setup_teardown(test_monitor_gone_at_shutdown, setup, teardown),
                cmocka_unit_test_setup_teardown(test_signal_at_startup, setup, teardown),
                cmocka_unit_test_setup_teardown(test_second_instance_fails, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stale_socket_replaced, setup, teardown),
                cmocka_unit_test_setup_teardown(test_regular_file_kept, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
