/*
 * Hostile local clients against the per-uid and broker-wide quotas
 * (daemon/user.c, docs/configuration.md "Per-user limits"). Needs root, to
 * run the hostile clients under other uids; skipped otherwise.
 *
 * Each test starts plexusd with a configuration file that lets every uid
 * connect, publish and subscribe under quota/, forks a hostile child that
 * drops to an unprivileged uid and misbehaves, and then checks that the
 * child hits its limits (with an error, never silently) while a client of
 * another uid still connects and gets answers:
 *
 * - connections that never send HELLO: one uid holds at most 64, the rest
 *   are refused with LimitsExceeded, and a new client gets in although
 *   max_clients would be reached;
 * - connections of one uid: at most 256, the rest refused; but a burst of
 *   40 that say HELLO at once all get in (the broker reads each HELLO as
 *   it accepts);
 * - frames queued for one uid's connections that never read: the uid's 16
 *   MiB share runs out before any connection's own 4 MiB limit, the sender
 *   gets QueueFull, the same uid cannot queue more on a fresh connection,
 *   and root still can;
 * - fds queued for subscribers that never read, in a broker with an
 *   RLIMIT_NOFILE of 256: capped at half of it, so that a legitimate fd
 *   pass and a new client still work.
 *
 * The limits are the defaults (only max_clients and the fd table are made
 * small), so the same tests show the unlimited behaviour of a broker
 * without these quotas.
 */

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "harness.h"
#include "plexus.pb-c.h"
#include "raw.h"

#define TIMEOUT_MS harness_timeout_ms(HARNESS_TIMEOUT_MS)
#define ELEMENTS(x) (sizeof(x) / sizeof((x)[0]))

#define HOSTILE_UID 65534               /* nobody */
#define OTHER_UID 4242

/* The defaults under test (daemon/broker.h). */
#define USER_UNAUTHENTICATED 64
#define USER_CLIENTS 256
#define USER_QUEUE_BYTES (16u * 1024u * 1024u)

#define POLICY                                                  \
        "[policy:everyone]\n"                                   \
        "users = *\n"                                           \
        "publish = quota/#\n"                                   \
        "subscribe = quota/#\n"

typedef struct Fixture {
        Harness *h;
        char config_path[320];
        HarnessChild children[4];
        size_t n_children;
        plx_bus *bus;                   /* our own connection, as root */
} Fixture;

/* --- Children ------------------------------------------------------------------ */

static void become(uid_t uid) {
        /* Refused connections are closed under our feet: EPIPE, not death. */
        signal(SIGPIPE, SIG_IGN);
        if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
                child_fail("cannot become uid %u: %m", (unsigned)uid);
        /* A change of credentials clears the parent-death signal: ask again. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        child_assert(getuid() == uid && geteuid() == uid);
}

/* Wait for the parent's go (or its end) before closing everything by exiting. */
static void child_hold(int control_fd) {
        char c;

        (void)!read(control_fd, &c, 1);
}

/*
 * Connect and say HELLO; the broker's first answer: 0 for the Welcome,
 * -EPROTO for another frame (in @frame). A refused connection may be closed
 * before our HELLO goes out, or reset ahead of the broker's frame: both are
 * read past.
 */
static int try_connect(const char *address, RawFrame *frame, int *ret_fd) {
        int fd, r;

        fd = raw_connect(address);
        if (fd < 0)
                return fd;
        *ret_fd = fd;
        (void)raw_send_hello(fd, 1, PLX_PROTOCOL_VERSION);
        r = raw_recv(fd, frame, TIMEOUT_MS);
        if (r == -ECONNRESET)
                r = raw_recv(fd, frame, TIMEOUT_MS);
        if (r < 0)
                return r;
        if (r == 0 || !frame->header)
                return -ECONNRESET;
        return frame->header->kind == PLEXUS__KIND__KIND_REPLY ? 0 : -EPROTO;
}

/* The refusal a connection got: LimitsExceeded with @reason, then the end. */
static bool refused_with(int fd, RawFrame *frame, const char *reason) {
        return frame->header && frame->header->kind == PLEXUS__KIND__KIND_ERROR &&
               strcmp(frame->header->error_name, PLX_ERROR_LIMITS_EXCEEDED) == 0 &&
               frame->payload_len == strlen(reason) && memcmp(frame->payload, reason, frame->payload_len) == 0 &&
               raw_wait_eof(fd, TIMEOUT_MS) == 0;
}

#define N_SILENT 150
#define N_REFUSED 86                    /* N_SILENT - USER_UNAUTHENTICATED */
_Static_assert(N_REFUSED == N_SILENT - USER_UNAUTHENTICATED, "N_REFUSED");
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

/* Connections that never say HELLO. Reports "connected N", then how many were refused. */
static int silent_main(int report_fd, int control_fd, void *userdata) {
        const char *address = userdata;
        RawFrame *frame = raw_frame_new();
        int fds[N_SILENT];
        unsigned n_refused = 0;

        child_assert(frame);
        become(HOSTILE_UID);
        for (size_t i = 0; i < N_SILENT; i++) {
                fds[i] = raw_connect(address);
                child_assert(fds[i] >= 0);
        }
        harness_report(report_fd, "connected %d", N_SILENT);

        /* By now (the parent got in after all of ours) every refusal has been sent. */
        child_hold(control_fd);
        for (size_t i = USER_UNAUTHENTICATED; i < N_SILENT; i++) {
                int r = raw_recv(fds[i], frame, 0);

                if (r == -ECONNRESET)
                        r = raw_recv(fds[i], frame, 0);
                if (r > 0 && refused_with(fds[i], frame, "too many connections of this user in the handshake"))
                        n_refused++;
        }
        harness_report(report_fd, "refused %u", n_refused);
        child_hold(control_fd);
        raw_frame_free(frame);
        return 0;
}

#define N_CLIENTS (USER_CLIENTS + 44)

/* Connections that do say HELLO, one after the other. Reports "welcomed N refused M". */
static int many_main(int report_fd, int control_fd, void *userdata) {
        const char *address = userdata;
        RawFrame *frame = raw_frame_new();
        int fds[N_CLIENTS], fd;
        unsigned n_welcomed = 0, n_refused = 0, n_welcomed_later = 0;

        child_assert(frame);
        become(HOSTILE_UID);
        for (size_t i = 0; i < N_CLIENTS; i++) {
                int r = try_connect(address, frame, &fds[i]);

                if (r == 0)
                        n_welcomed++;
                else if (r == -EPROTO && refused_with(fds[i], frame, "too many connections of this user"))
                        n_refused++;
                else
                        child_fail("connection %zu: %s", i, strerror(-r));
        }
        harness_report(report_fd, "welcomed %u refused %u", n_welcomed, n_refused);

        /*
         * One of ours goes: one more gets in (once the broker has seen the
         * first go, which we cannot see: retry, bounded), then no more.
         */
        child_hold(control_fd);
        close(fds[0]);
        for (uint64_t deadline = harness_now_ms() + (uint64_t)TIMEOUT_MS;;) {
                int r = try_connect(address, frame, &fd);

                if (r == 0)
                        break;
                child_assert(r == -EPROTO && refused_with(fd, frame, "too many connections of this user"));
                close(fd);
                child_assert(harness_now_ms() < deadline);
                usleep(10 * 1000);
        }
        fds[0] = fd;
        n_welcomed_later++;
        child_assert(try_connect(address, frame, &fd) == -EPROTO);
        child_assert(refused_with(fd, frame, "too many connections of this user"));
        close(fd);
        harness_report(report_fd, "later %u", n_welcomed_later);
        child_hold(control_fd);
        raw_frame_free(frame);
        return 0;
}

#define N_BURST 40

/*
 * A burst of well-behaved connections of one uid, each with its HELLO sent
 * right after connect(), while the broker is stopped: it finds them all
 * at once. Reports "sent", then, once let go, "welcomed N".
 */
static int burst_main(int report_fd, int control_fd, void *userdata) {
        const char *address = userdata;
        RawFrame *frame = raw_frame_new();
        int fds[N_BURST];
        unsigned n_welcomed = 0;

        child_assert(frame);
        become(HOSTILE_UID);
        for (size_t i = 0; i < N_BURST; i++) {
                fds[i] = raw_connect(address);
                child_assert(fds[i] >= 0);
                child_assert(raw_send_hello(fds[i], 1, PLX_PROTOCOL_VERSION) == 0);
        }
        harness_report(report_fd, "sent");
        child_hold(control_fd);
        for (size_t i = 0; i < N_BURST; i++) {
                int r = raw_recv(fds[i], frame, TIMEOUT_MS);

                if (r > 0 && frame->header && frame->header->kind == PLEXUS__KIND__KIND_REPLY)
                        n_welcomed++;
        }
        harness_report(report_fd, "welcomed %u", n_welcomed);
        child_hold(control_fd);
        raw_frame_free(frame);
        return 0;
}

typedef struct Counts {
        unsigned n_signals;
        unsigned n_queue_full;
        unsigned n_fds_rejected;
        unsigned n_other;
        size_t n_fds;                   /* received with the signals */
        bool got_signal;
} Counts;

static int on_signal(plx_msg *m, void *userdata) {
        Counts *c = userdata;

        c->n_signals++;
        c->got_signal = true;
        /* Counted here; the message closes those not taken. */
        for (size_t i = 0; plx_msg_get_fd(m, i) >= 0; i++)
                c->n_fds++;
        return 0;
}

static int on_error(plx_msg *m, void *userdata) {
        Counts *c = userdata;
        const char *name = plx_msg_get_error_name(m);

        if (strcmp(name, PLX_ERROR_QUEUE_FULL) == 0)
                c->n_queue_full++;
        else if (strcmp(name, PLX_ERROR_FDS_REJECTED) == 0)
                c->n_fds_rejected++;
        else
                c->n_other++;
        return 0;
}

/* Publish, waiting for the broker to read when our own write queue is full. */
static int publish(plx_bus *bus, const char *topic, const void *payload, size_t size, const int *fds, size_t n_fds) {
        for (;;) {
                int r = plx_bus_publish_with_fds(bus, topic, payload, size, fds, n_fds);

                if (r != -ENOBUFS)
                        return r;
                r = harness_bus_flush(bus, TIMEOUT_MS);
                if (r < 0)
                        return r;
        }
}

/* After this, the broker has routed every frame @bus sent before, and we have handled the answers. */
static int sync_bus(plx_bus *bus) {
        int r = plx_bus_call(bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL);

        if (r < 0)
                return r;
        return harness_bus_drain(bus);
}

#define N_SUBSCRIBERS 6
#define BIG_PAYLOAD (100u * 1024u)
/* 3.5 MiB per subscriber: under its own 4 MiB, 21 MiB in all: over the uid's 16 MiB. */
#define BIG_PER_SUBSCRIBER 35
#define N_SELF 30

/*
 * Subscribers that never read, all of one uid, and a publisher that fills
 * their queues. Then a fresh subscriber of the same uid that the publisher
 * sends to. Reports "flood QUEUEFULL OTHER" and "self SIGNALS QUEUEFULL".
 */
static int bytes_main(int report_fd, int control_fd, void *userdata) {
        const char *address = userdata;
        plx_bus *subs[N_SUBSCRIBERS] = {}, *pub = NULL, *self = NULL;
        Counts flood = {}, again = {}, unread = {};
        char *payload = calloc(1, BIG_PAYLOAD);
        char topic[64];

        child_assert(payload);
        become(HOSTILE_UID);
        for (size_t i = 0; i < N_SUBSCRIBERS; i++) {
                child_assert(plx_bus_new(&subs[i], address, "never reads") == 0);
                snprintf(topic, sizeof(topic), "quota/s%zu", i);
                child_assert(plx_bus_subscribe(subs[i], NULL, topic, on_signal, &unread) == 0);
        }
        child_assert(plx_bus_new(&pub, address, "publisher") == 0);
        /* Inline frames: the quotas are about what queues in the broker. */
        child_assert(plx_bus_set_large_path(pub, PLX_LARGE_INLINE) == 0);
        plx_bus_set_error_handler(pub, on_error, &flood);
        for (size_t i = 0; i < N_SUBSCRIBERS; i++) {
                snprintf(topic, sizeof(topic), "quota/s%zu", i);
                for (int k = 0; k < BIG_PER_SUBSCRIBER; k++)
                        child_assert(publish(pub, topic, payload, BIG_PAYLOAD, NULL, 0) == 0);
        }
        child_assert(sync_bus(pub) == 0);
        harness_report(report_fd, "flood %u %u", flood.n_queue_full, flood.n_other + flood.n_fds_rejected);

        /*
         * The uid's share is used up: a new connection of it gets no queue
         * either. It does not read until the publisher (of that uid too)
         * is done: a client waiting for its socket to take frames reads
         * meanwhile, so publishing to itself would make room as it went.
         */
        child_assert(plx_bus_new(&self, address, "self") == 0);
        child_assert(plx_bus_subscribe(self, NULL, "quota/self", on_signal, &again) == 0);
        plx_bus_set_error_handler(pub, on_error, &again);
        for (int k = 0; k < N_SELF; k++)
                child_assert(publish(pub, "quota/self", payload, BIG_PAYLOAD, NULL, 0) == 0);
        child_assert(sync_bus(pub) == 0);
        child_assert(sync_bus(self) == 0);
        child_assert(again.n_other == 0);
        harness_report(report_fd, "self %u %u", again.n_signals, again.n_queue_full);

        child_hold(control_fd);
        for (size_t i = 0; i < N_SUBSCRIBERS; i++)
                plx_bus_free(subs[i]);
        plx_bus_free(pub);
        plx_bus_free(self);
        free(payload);
        return 0;
}

#define N_FD_SUBSCRIBERS 4
#define FDS_PER_SIGNAL 16
#define FD_SIGNALS_PER_SUBSCRIBER 24
#define FD_FILLERS_PER_SUBSCRIBER 20
#define LEGIT_FDS 20                    /* more than a 16-fd frame could leave free */

/*
 * Subscribers that never read, and signals with fds for them: far more
 * than the broker's fd table holds. Reports "fds QUEUEFULL FDSREJECTED OTHER".
 */
static int fds_main(int report_fd, int control_fd, void *userdata) {
        const char *address = userdata;
        plx_bus *subs[N_FD_SUBSCRIBERS] = {}, *pub = NULL;
        Counts c = {}, unread = {};
        char *payload = calloc(1, BIG_PAYLOAD);
        int fds[FDS_PER_SIGNAL];
        char topic[64];

        child_assert(payload);
        become(HOSTILE_UID);
        for (size_t i = 0; i < FDS_PER_SIGNAL; i++) {
                fds[i] = memfd_create("flood", MFD_CLOEXEC);
                child_assert(fds[i] >= 0);
        }
        for (size_t i = 0; i < N_FD_SUBSCRIBERS; i++) {
                child_assert(plx_bus_new(&subs[i], address, "never reads") == 0);
                snprintf(topic, sizeof(topic), "quota/fd%zu", i);
                child_assert(plx_bus_subscribe(subs[i], NULL, topic, on_signal, &unread) == 0);
        }
        child_assert(plx_bus_new(&pub, address, "fd publisher") == 0);
        /* Inline frames: the quotas are about what queues in the broker. */
        child_assert(plx_bus_set_large_path(pub, PLX_LARGE_INLINE) == 0);
        plx_bus_set_error_handler(pub, on_error, &c);
        /* Large payloads: the subscribers' sockets fill after a frame or two, the rest queues. */
        for (int k = 0; k < FD_SIGNALS_PER_SUBSCRIBER; k++) {
                for (size_t i = 0; i < N_FD_SUBSCRIBERS; i++) {
                        snprintf(topic, sizeof(topic), "quota/fd%zu", i);
                        child_assert(publish(pub, topic, payload, BIG_PAYLOAD, fds, FDS_PER_SIGNAL) == 0);
                }
        }
        /* Then small frames with one fd each, to take whatever slots are left. */
        for (int k = 0; k < FD_FILLERS_PER_SUBSCRIBER; k++) {
                for (size_t i = 0; i < N_FD_SUBSCRIBERS; i++) {
                        snprintf(topic, sizeof(topic), "quota/fd%zu", i);
                        child_assert(publish(pub, topic, "f", 1, fds, 1) == 0);
                }
        }
        child_assert(sync_bus(pub) == 0);
        harness_report(report_fd, "fds %u %u %u", c.n_queue_full, c.n_fds_rejected, c.n_other);

        child_hold(control_fd);
        for (size_t i = 0; i < N_FD_SUBSCRIBERS; i++)
                plx_bus_free(subs[i]);
        plx_bus_free(pub);
        for (size_t i = 0; i < FDS_PER_SIGNAL; i++)
                close(fds[i]);
        free(payload);
        return 0;
}

/* --- Fixture ------------------------------------------------------------------- */

static int teardown(void **state) {
        Fixture *f = *state;
        void *h;
        int r, ret = 0;

        if (!f)
                return 0;
        f->bus = plx_bus_free(f->bus);
        /* Children go first: a broker stopping with hundreds of them connected is not the point. */
        for (size_t i = 0; i < f->n_children; i++) {
                if (f->children[i].pid <= 0)
                        continue;
                harness_write_byte(f->children[i].control_fd, 'x');
                harness_write_byte(f->children[i].control_fd, 'x');
                r = harness_child_wait(&f->children[i], TIMEOUT_MS);
                if (r != 0) {
                        fprintf(stderr, "teardown: child %zu exit status %d, expected 0\n", i, r);
                        ret = -1;
                }
                harness_child_close(&f->children[i]);
        }
        if (f->h && f->h->broker_pid > 0) {
                r = harness_broker_stop(f->h);
                if (r != 0) {
                        fprintf(stderr, "teardown: broker exit status %d, expected 0\n", r);
                        ret = -1;
                }
        }
        h = f->h;
        if (h && harness_teardown(&h) < 0)
                ret = -1;
        free(f);
        *state = NULL;
        return ret;
}

/* The broker with POLICY plus @limits; @nofile: its RLIMIT_NOFILE through prlimit(1), or 0. */
static int setup_with(void **state, const char *limits, int nofile) {
        const char *args[3];
        const char *old_wrapper;
        char wrapper[600];
        Fixture *f;
        FILE *c;
        int r;

        *state = NULL;
        if (geteuid() != 0)
                return 0;               /* the test skips itself */
        if (nofile && system("prlimit --version >/dev/null 2>&1") != 0) {
                fprintf(stderr, "prlimit(1) is missing\n");
                return 0;
        }
        signal(SIGPIPE, SIG_IGN);

        f = calloc(1, sizeof(*f));
        if (!f)
                return -1;
        *state = f;
        for (size_t i = 0; i < ELEMENTS(f->children); i++)
                f->children[i] = (HarnessChild) HARNESS_CHILD_NULL;
        f->h = calloc(1, sizeof(*f->h));
        if (!f->h)
                return -1;
        f->h->n_fds = harness_count_fds();
        if (harness_prepare(f->h) < 0)
                return -1;
        /* Other uids must reach the socket, which the broker (as root) makes 0666. */
        if (chmod(f->h->dir, 0755) < 0)
                return -1;
        snprintf(f->config_path, sizeof(f->config_path), "%s/plexusd.conf", f->h->dir);
        c = fopen(f->config_path, "we");
        if (!c || fputs(limits, c) < 0 || fputs(POLICY, c) < 0 || fclose(c) != 0)
                return -1;

        old_wrapper = getenv("PLEXUS_TEST_BROKER_WRAPPER");
        old_wrapper = old_wrapper ? strdupa(old_wrapper) : NULL;
        if (nofile) {
                snprintf(wrapper, sizeof(wrapper), "prlimit --nofile=%d:%d %s", nofile, nofile,
                         old_wrapper ? old_wrapper : "");
                setenv("PLEXUS_TEST_BROKER_WRAPPER", wrapper, 1);
        }
        args[0] = "-c";
        args[1] = f->config_path;
        args[2] = NULL;
        r = harness_broker_start_args(f->h, args, -1);
        if (nofile) {
                if (old_wrapper)
                        setenv("PLEXUS_TEST_BROKER_WRAPPER", old_wrapper, 1);
                else
                        unsetenv("PLEXUS_TEST_BROKER_WRAPPER");
        }
        if (r < 0)
                return -1;
        if (plx_bus_new(&f->bus, f->h->address, "test-hostile-quota") < 0)
                return -1;
        return 0;
}

static int setup(void **state) {
        if (setup_with(state, "", 0) < 0) {
                teardown(state);
                return -1;
        }
        return 0;
}

/* max_clients = 100: fewer than the silent connections, so without a per-uid limit they take every slot. */
static int setup_few_clients(void **state) {
        if (setup_with(state, "[limits]\nmax_clients = 100\n", 0) < 0) {
                teardown(state);
                return -1;
        }
        return 0;
}

#define SMALL_NOFILE 256

static int setup_small_fd_table(void **state) {
        if (setup_with(state, "", SMALL_NOFILE) < 0) {
                teardown(state);
                return -1;
        }
        return 0;
}

#define SKIP_UNLESS_ROOT(f)                                                             \
        do {                                                                            \
                if (!(f)) {                                                             \
                        fprintf(stderr, "needs root (and prlimit(1)) to run clients as other uids\n"); \
                        skip();                                                         \
                }                                                                       \
        } while (0)

static HarnessChild *fork_child(Fixture *f, HarnessChildFn fn) {
        HarnessChild *c;

        assert_true(f->n_children < ELEMENTS(f->children));
        c = &f->children[f->n_children++];
        assert_int_equal(harness_child_fork(c, fn, f->h->address), 0);
        return c;
}

static void expect_line(HarnessChild *c, char *line, size_t size) {
        int r = harness_read_line(c->report_fd, line, size, TIMEOUT_MS * 3);

        if (r < 0)
                fail_msg("child said nothing: %s", strerror(-r));
}

static Plexus__Stats *get_stats(plx_bus *bus) {
        _cleanup_msg_ plx_msg *reply = NULL;
        Plexus__Stats *st;
        const void *p;
        size_t size;

        assert_int_equal(plx_bus_call(bus, PLX_BROKER, "GetStats", NULL, 0, PLX_TIMEOUT_DEFAULT, &reply), 0);
        p = plx_msg_get_payload(reply, &size);
        st = plexus__stats__unpack(NULL, size, p);
        assert_non_null(st);
        return st;
}

/* A new client (raw, so that a broker that does not answer cannot block us) gets its Welcome. */
static void assert_new_client_served(Fixture *f) {
        RawFrame *frame = raw_frame_new();
        int fd = -1, r;

        assert_non_null(frame);
        r = try_connect(f->h->address, frame, &fd);
        if (r != 0)
                fail_msg("a new client got no Welcome: %s%s%s", strerror(-r),
                         frame->header && frame->header->error_name ? ", " : "",
                         frame->header && frame->header->error_name ? frame->header->error_name : "");
        close(fd);
        raw_frame_free(frame);
}

/* --- Tests --------------------------------------------------------------------- */

static void test_unauthenticated_flood(void **state) {
        Fixture *f = *state;
        HarnessChild *c;
        plx_bus *late = NULL;
        Plexus__Stats *st;
        char line[128];

        SKIP_UNLESS_ROOT(f);
        c = fork_child(f, silent_main);
        expect_line(c, line, sizeof(line));
        assert_int_equal(strcmp(line, "connected " STRINGIFY(N_SILENT)), 0);

        /* The broker accepts in order: ours come after all of the child's. */
        assert_new_client_served(f);
        assert_int_equal(plx_bus_new(&late, f->h->address, "late"), 0);
        assert_int_equal(plx_bus_call(late, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        plx_bus_free(late);

        st = get_stats(f->bus);
        assert_int_equal(st->n_refused_unauthenticated, N_SILENT - USER_UNAUTHENTICATED);
        plexus__stats__free_unpacked(st, NULL);

        /* Every one past the uid's share was told why. */
        assert_int_equal(harness_write_byte(c->control_fd, 'x'), 0);
        expect_line(c, line, sizeof(line));
        assert_int_equal(strcmp(line, "refused " STRINGIFY(N_REFUSED)), 0);
}

static void test_user_clients(void **state) {
        Fixture *f = *state;
        HarnessChild *c;
        Plexus__Stats *st;
        char line[128];

        SKIP_UNLESS_ROOT(f);
        c = fork_child(f, many_main);
        expect_line(c, line, sizeof(line));
        assert_string_equal(line, "welcomed 256 refused 44");

        st = get_stats(f->bus);
        assert_int_equal(st->n_refused_user_clients, 44);
        assert_int_equal(st->n_clients, USER_CLIENTS + 1);
        plexus__stats__free_unpacked(st, NULL);
        /* Other uids are not held by that uid's limit. */
        assert_new_client_served(f);

        /* A slot freed is a slot for that uid again, one. */
        assert_int_equal(harness_write_byte(c->control_fd, 'x'), 0);
        expect_line(c, line, sizeof(line));
        assert_string_equal(line, "later 1");
}

/* The limit on connections before HELLO is not one on connections accepted at once. */
static void test_burst(void **state) {
        Fixture *f = *state;
        HarnessChild *c;
        char line[128];

        SKIP_UNLESS_ROOT(f);
        assert_int_equal(kill(f->h->broker_pid, SIGSTOP), 0);
        c = fork_child(f, burst_main);
        expect_line(c, line, sizeof(line));
        assert_string_equal(line, "sent");
        assert_int_equal(kill(f->h->broker_pid, SIGCONT), 0);
        assert_int_equal(harness_write_byte(c->control_fd, 'x'), 0);
        expect_line(c, line, sizeof(line));
        assert_string_equal(line, "welcomed 40");
}

static void test_user_queue_bytes(void **state) {
        Fixture *f = *state;
        Counts own = {};
        char *payload = calloc(1, BIG_PAYLOAD);
        unsigned n_full, n_other, n_signals;
        HarnessChild *c;
        Plexus__Stats *st;
        char line[128];

        SKIP_UNLESS_ROOT(f);
        assert_non_null(payload);
        c = fork_child(f, bytes_main);
        expect_line(c, line, sizeof(line));
        assert_int_equal(sscanf(line, "flood %u %u", &n_full, &n_other), 2);
        fprintf(stderr, "%d signals of %u bytes for %d subscribers of uid %d that never read: %u QueueFull\n",
                N_SUBSCRIBERS * BIG_PER_SUBSCRIBER, BIG_PAYLOAD, N_SUBSCRIBERS, HOSTILE_UID, n_full);
        /* No subscriber's own queue was full (3.5 of 4 MiB): the uid's share ran out. */
        assert_true(n_full > 0);
        assert_int_equal(n_other, 0);

        expect_line(c, line, sizeof(line));
        assert_int_equal(sscanf(line, "self %u %u", &n_signals, &n_full), 2);
        fprintf(stderr, "a new subscriber of the same uid: %u received, %u QueueFull\n", n_signals, n_full);
        assert_int_equal(n_signals + n_full, N_SELF);
        assert_true(n_full > 0);

        st = get_stats(f->bus);
        assert_true(st->n_user_quota >= n_full);
        assert_true(st->n_queued_bytes <= USER_QUEUE_BYTES);
        assert_true(st->n_queued_bytes > USER_QUEUE_BYTES / 2);
        plexus__stats__free_unpacked(st, NULL);

        /* Root queues to itself as much as its own queue takes, and gets all of it. */
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "quota/root", on_signal, &own), 0);
        plx_bus_set_error_handler(f->bus, on_error, &own);
        for (int k = 0; k < N_SELF; k++)
                assert_int_equal(publish(f->bus, "quota/root", payload, BIG_PAYLOAD, NULL, 0), 0);
        assert_int_equal(sync_bus(f->bus), 0);
        assert_int_equal(own.n_signals, N_SELF);
        assert_int_equal(own.n_queue_full + own.n_other, 0);
        plx_bus_set_error_handler(f->bus, NULL, NULL);
        assert_new_client_served(f);
        free(payload);
}

static void test_fd_flood(void **state) {
        Fixture *f = *state;
        Counts own = {};
        unsigned n_full, n_rejected, n_other;
        HarnessChild *c;
        Plexus__Stats *st;
        int fds[LEGIT_FDS];
        char line[128];

        SKIP_UNLESS_ROOT(f);
        c = fork_child(f, fds_main);
        expect_line(c, line, sizeof(line));
        assert_int_equal(sscanf(line, "fds %u %u %u", &n_full, &n_rejected, &n_other), 3);
        fprintf(stderr, "%d signals with %d fds and %d with 1 for %d subscribers that never read: "
                "%u QueueFull, %u FdsRejected\n", N_FD_SUBSCRIBERS * FD_SIGNALS_PER_SUBSCRIBER, FDS_PER_SIGNAL,
                N_FD_SUBSCRIBERS * FD_FILLERS_PER_SUBSCRIBER, N_FD_SUBSCRIBERS, n_full, n_rejected);

        /* A legitimate fd pass gets through, with all its fds. */
        for (size_t i = 0; i < ELEMENTS(fds); i++) {
                fds[i] = memfd_create("legit", MFD_CLOEXEC);
                assert_true(fds[i] >= 0);
        }
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "quota/legit", on_signal, &own), 0);
        plx_bus_set_error_handler(f->bus, on_error, &own);
        assert_int_equal(plx_bus_publish_with_fds(f->bus, "quota/legit", "x", 1, fds, ELEMENTS(fds)), 0);
        assert_int_equal(sync_bus(f->bus), 0);
        /* Refused, it would have been answered before the Ping. */
        if (own.n_fds_rejected + own.n_queue_full + own.n_other)
                fail_msg("legitimate fd pass refused: %u FdsRejected, %u QueueFull, %u other",
                         own.n_fds_rejected, own.n_queue_full, own.n_other);
        assert_int_equal(harness_bus_wait(f->bus, &own.got_signal, TIMEOUT_MS), 0);
        assert_int_equal(own.n_signals, 1);
        assert_int_equal(own.n_fds, ELEMENTS(fds));
        plx_bus_set_error_handler(f->bus, NULL, NULL);
        for (size_t i = 0; i < ELEMENTS(fds); i++)
                close(fds[i]);

        /* And a new client is served. */
        assert_new_client_served(f);

        /* The flood was refused for the cap on queued fds, not for an fd table that ran out. */
        assert_true(n_full > 0);
        assert_int_equal(n_rejected, 0);
        assert_int_equal(n_other, 0);

        /* The subscribers' queues hold fds up to the cap, half of the fd table. */
        st = get_stats(f->bus);
        fprintf(stderr, "%llu fds queued\n", (unsigned long long)st->n_queued_fds);
        assert_true(st->n_queued_fds <= SMALL_NOFILE / 2);
        assert_true(st->n_queued_fds > 0);
        plexus__stats__free_unpacked(st, NULL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_unauthenticated_flood, setup_few_clients, teardown),
                cmocka_unit_test_setup_teardown(test_user_clients, setup, teardown),
                cmocka_unit_test_setup_teardown(test_burst, setup, teardown),
                cmocka_unit_test_setup_teardown(test_user_queue_bytes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fd_flood, setup_small_fd_table, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
