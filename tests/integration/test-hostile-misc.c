/*
 * Hostile local clients, the cases that have no better home: empty records
 * carrying fds (which read like EOF), introspection in a loop, and a fake
 * broker that sends libplexus an empty record with fds.
 *
 * Every test has a probe: a libplexus client connected before the hostile
 * part starts, which must keep getting answers to Ping throughout.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "fdpass.h"
#include "harness.h"
#include "raw.h"
#include "util.h"

typedef struct Fixture {
        Harness *h;
        plx_bus *probe;
        RawFrame *frame;
} Fixture;

static int setup(void **state) {
        void *hs = NULL;
        Fixture *f;

        if (harness_setup(&hs) < 0)
                return -1;
        f = calloc(1, sizeof(*f));
        if (!f) {
                harness_teardown(&hs);
                return -1;
        }
        f->h = hs;
        f->frame = raw_frame_new();
        if (!f->frame || plx_bus_new(&f->probe, f->h->address, "probe") < 0) {
                raw_frame_free(f->frame);
                harness_teardown(&hs);
                free(f);
                return -1;
        }
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        void *hs = f->h;
        int r;

        plx_bus_free(f->probe);
        raw_frame_free(f->frame);
        r = harness_teardown(&hs);
        free(f);
        return r;
}

static void probe_ping(Fixture *f) {
        assert_int_equal(plx_bus_call(f->probe, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
}

/* Open fds of process @pid, from /proc (the broker runs as our uid). */
static int count_fds_of(pid_t pid) {
        char path[64];
        struct dirent *de;
        DIR *d;
        int n = 0;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
        d = opendir(path);
        if (!d)
                return -errno;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

/* A zero-length record on @fd carrying @n_fds duplicates of /dev/null. */
static int send_empty_with_fds(int fd, size_t n_fds) {
        int fds[8] = { -1, -1, -1, -1, -1, -1, -1, -1 };
        struct iovec iov = { .iov_base = (void *)"", .iov_len = 0 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        FdControl control;
        ssize_t n;
        int r = 0;

        assert_true(n_fds <= ELEMENTSOF(fds));
        for (size_t i = 0; i < n_fds; i++) {
                fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (fds[i] < 0)
                        r = -errno;
        }
        if (r == 0) {
                fdpass_attach(&mh, &control, fds, n_fds);
                n = sendmsg(fd, &mh, MSG_NOSIGNAL);
                r = n < 0 ? -errno : (int)n;
        }
        for (size_t i = 0; i < n_fds; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
        return r;
}

/* The broker's answer to an empty record: InvalidFrame, then EOF. */
static void expect_invalid_frame_then_eof(Fixture *f, int fd) {
        int r = raw_recv(fd, f->frame, harness_timeout_ms(HARNESS_TIMEOUT_MS));

        assert_int_equal(r > 0, 1);
        assert_non_null(f->frame->header);
        assert_int_equal(f->frame->header->kind, PLEXUS__KIND__KIND_ERROR);
        assert_string_equal(f->frame->header->error_name, "plexus.Error.InvalidFrame");
        assert_int_equal(raw_wait_eof(fd, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
}

/*
 * Many connections each send an empty record with fds, before HELLO and
 * after it. The fds must not stay in the broker: its fd count comes back
 * to where it was, and each sender is told InvalidFrame.
 */
static void test_empty_record_fds_not_leaked(void **state) {
        Fixture *f = *state;
        int before, after = -1;
        uint64_t deadline;

        probe_ping(f);
        before = count_fds_of(f->h->broker_pid);
        assert_true(before > 0);

        for (int i = 0; i < 80; i++) {
                char id[64];
                int fd = raw_connect(f->h->address);

                assert_true(fd >= 0);
                if (i % 2)
                        assert_int_equal(raw_hello(fd, f->frame, id, sizeof(id)), 0);
                assert_int_equal(send_empty_with_fds(fd, 4), 0);
                expect_invalid_frame_then_eof(f, fd);
                close(fd);
                if (i % 16 == 0)
                        probe_ping(f);
        }
        probe_ping(f);

        /* The broker closes a peer's socket at the end of its round: bounded wait. */
        deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);
        while (harness_now_ms() < deadline) {
                after = count_fds_of(f->h->broker_pid);
                if (after == before)
                        break;
                usleep(10 * 1000);
        }
        if (after != before)
                fail_msg("broker holds %d fds, %d before 80 empty records with 4 fds each", after, before);
        probe_ping(f);
}

/* An empty record without fds is a protocol error too, not a silent hangup. */
static void test_empty_record_is_invalid(void **state) {
        Fixture *f = *state;
        char id[64];
        int fd;

        fd = raw_connect(f->h->address);
        assert_true(fd >= 0);
        assert_int_equal(raw_hello(fd, f->frame, id, sizeof(id)), 0);
        assert_int_equal(send_empty_with_fds(fd, 0), 0);
        expect_invalid_frame_then_eof(f, fd);
        close(fd);
        probe_ping(f);
}

typedef struct FakeBrokerArgs {
        const char *path;
} FakeBrokerArgs;

/* Accepts one client, reads its HELLO, answers with an empty record carrying fds. */
static int fake_broker_main(int report_fd, int control_fd, void *userdata) {
        FakeBrokerArgs *a = userdata;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        uint8_t buf[4096];
        int lfd, cfd, fds[3];
        struct iovec iov = { .iov_base = buf, .iov_len = 0 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        FdControl control;
        char c;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", a->path);
        lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        child_assert(lfd >= 0);
        child_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        child_assert_int_eq(listen(lfd, 4), 0);
        harness_report(report_fd, "listening");
        cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        child_assert(cfd >= 0);
        child_assert(recv(cfd, buf, sizeof(buf), 0) > 0);
        for (size_t i = 0; i < ELEMENTSOF(fds); i++) {
                fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
                child_assert(fds[i] >= 0);
        }
        fdpass_attach(&mh, &control, fds, ELEMENTSOF(fds));
        child_assert_int_eq(sendmsg(cfd, &mh, MSG_NOSIGNAL), 0);
        /* Stay connected until the parent is done: no EOF to hide behind. */
        (void)!read(control_fd, &c, 1);
        close(cfd);
        close(lfd);
        unlink(a->path);
        return 0;
}

/*
 * libplexus, on the receiving end of an empty record with fds: the
 * connection fails and the fds are closed (the harness's teardown counts
 * the test process's fds).
 */
static void test_client_empty_record_fds(void **state) {
        Fixture *f = *state;
        HarnessChild fake = HARNESS_CHILD_NULL;
        FakeBrokerArgs args;
        plx_bus *bus = NULL;
        char path[320], line[64];
        int before, r;

        snprintf(path, sizeof(path), "%s/fake", f->h->dir);
        args.path = path;
        assert_int_equal(harness_child_fork(&fake, fake_broker_main, &args), 0);
        assert_true(harness_read_line(fake.report_fd, line, sizeof(line),
                                      harness_timeout_ms(HARNESS_TIMEOUT_MS)) > 0);
        assert_string_equal(line, "listening");

        before = harness_count_fds();
        r = plx_bus_new(&bus, path, "victim");
        assert_true(r < 0);
        assert_null(bus);
        assert_int_equal(harness_count_fds(), before);

        assert_int_equal(harness_write_byte(fake.control_fd, 'q'), 0);
        assert_int_equal(harness_child_wait(&fake, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        harness_child_close(&fake);
        probe_ping(f);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_empty_record_fds_not_leaked, setup, teardown),
                cmocka_unit_test_setup_teardown(test_empty_record_is_invalid, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_empty_record_fds, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
