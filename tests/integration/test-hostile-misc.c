/*
 * Hostile local clients, the cases that have no better home: empty records
 * carrying fds (which read like EOF), a fake broker that sends libplexus an
 * empty record with fds, or a large CALL in a memfd that is not sealed,
 * introspection in a loop, and a client that exec()s another program after
 * its HELLO.
 *
 * Every test has a probe: a libplexus client connected before the hostile
 * part starts, which must keep getting answers to Ping throughout.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

/* A fake broker's frame: @h with @n_fds fds, as plexusd would send it. */
static void fake_send(int fd, const Plexus__Header *h, const void *payload, size_t size,
                      const int *fds, size_t n_fds) {
        uint8_t buf[1024];
        size_t hlen = plexus__header__get_packed_size(h);
        struct iovec iov = { .iov_base = buf, .iov_len = FRAME_PREFIX_SIZE + hlen + size };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        FdControl control;

        child_assert(iov.iov_len <= sizeof(buf));
        frame_prefix(buf, (uint32_t)hlen);
        plexus__header__pack(h, buf + FRAME_PREFIX_SIZE);
        if (size)
                memcpy(buf + FRAME_PREFIX_SIZE + hlen, payload, size);
        fdpass_attach(&mh, &control, fds, n_fds);
        child_assert_int_eq(sendmsg(fd, &mh, MSG_NOSIGNAL), (ssize_t)iov.iov_len);
}

#define UNSEALED_SIZE 8192u

/*
 * Welcomes one client as ":1", then calls its "Echo" with a large payload
 * in a memfd that is not sealed (which plexusd would refuse), then its
 * "Done"; reports the client's answer to each: "answer KIND SERIAL NAME".
 */
static int fake_unsealed_main(int report_fd, int control_fd, void *userdata) {
        FakeBrokerArgs *a = userdata;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        Plexus__Welcome w = PLEXUS__WELCOME__INIT;
        Plexus__Header h = PLEXUS__HEADER__INIT;
        RawFrame *frame = raw_frame_new();
        uint8_t payload[128];
        int lfd, cfd, memfd;
        char c;

        child_assert(frame);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", a->path);
        lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        child_assert(lfd >= 0);
        child_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        child_assert_int_eq(listen(lfd, 4), 0);
        harness_report(report_fd, "listening");
        cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        child_assert(cfd >= 0);
        child_assert_int_eq(raw_recv(cfd, frame, 10000), 1);
        child_assert(frame->header && frame->header->kind == PLEXUS__KIND__KIND_HELLO);

        w.protocol_version = 1;
        w.unique_id = (char *)":1";
        w.max_frame_size = FRAME_SEND_MAX;
        w.max_message_size = 1u << 30;
        w.transfer_lease_ms = 10000;
        h.kind = PLEXUS__KIND__KIND_REPLY;
        h.serial = 1;
        h.reply_serial = frame->header->serial;
        h.destination = (char *)":1";
        h.sender = (char *)"plexus";
        fake_send(cfd, &h, payload, plexus__welcome__pack(&w, payload), NULL, 0);

        /* Writable and resizable by whoever holds it: not a payload anyone may map. */
        memfd = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        child_assert(memfd >= 0);
        child_assert_int_eq(ftruncate(memfd, UNSEALED_SIZE), 0);
        h = (Plexus__Header) PLEXUS__HEADER__INIT;
        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = 2;
        h.destination = (char *)":1";
        h.member = (char *)"Echo";
        h.sender = (char *)":2";
        h.n_fds = 1;
        h.large_size = UNSEALED_SIZE;
        fake_send(cfd, &h, NULL, 0, &memfd, 1);
        close(memfd);

        h = (Plexus__Header) PLEXUS__HEADER__INIT;
        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = 3;
        h.destination = (char *)":1";
        h.member = (char *)"Done";
        h.sender = (char *)":2";
        fake_send(cfd, &h, NULL, 0, NULL, 0);

        for (int i = 0; i < 2; i++) {
                child_assert_int_eq(raw_recv(cfd, frame, 10000), 1);
                child_assert(frame->header);
                harness_report(report_fd, "answer %s %llu %s", frame_kind_to_string(frame->header->kind),
                               (unsigned long long)frame->header->reply_serial,
                               frame->header->error_name[0] ? frame->header->error_name : "-");
        }
        (void)!read(control_fd, &c, 1);
        close(cfd);
        close(lfd);
        unlink(a->path);
        raw_frame_free(frame);
        return 0;
}

static int on_method(plx_msg *call, void *userdata) {
        bool *called = userdata;

        *called = true;
        return plx_msg_reply(call, NULL, 0);
}

/*
 * libplexus checks a memfd's seals itself (docs/protocol.md §17.2), and
 * does not rely on the broker having done so: a large CALL whose memfd is
 * not sealed is answered InvalidPayload for the application, whose method
 * never runs, and the memfd is closed. plexusd refuses such frames, so only
 * a broker that does not check can show this.
 */
static void test_client_unsealed_memfd(void **state) {
        Fixture *f = *state;
        HarnessChild fake = HARNESS_CHILD_NULL;
        FakeBrokerArgs args;
        plx_bus *bus = NULL;
        bool echo_called = false, done = false;
        char path[320], line[128];
        int before;

        snprintf(path, sizeof(path), "%s/fake", f->h->dir);
        args.path = path;
        assert_int_equal(harness_child_fork(&fake, fake_unsealed_main, &args), 0);
        assert_true(harness_read_line(fake.report_fd, line, sizeof(line),
                                      harness_timeout_ms(HARNESS_TIMEOUT_MS)) > 0);
        assert_string_equal(line, "listening");

        before = harness_count_fds();
        assert_int_equal(plx_bus_new(&bus, path, "victim"), 0);
        assert_int_equal(plx_bus_add_method(bus, NULL, "Echo", on_method, &echo_called), 0);
        assert_int_equal(plx_bus_add_method(bus, NULL, "Done", on_method, &done), 0);
        assert_int_equal(harness_bus_wait(bus, &done, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(harness_bus_flush(bus, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);

        assert_true(harness_read_line(fake.report_fd, line, sizeof(line),
                                      harness_timeout_ms(HARNESS_TIMEOUT_MS)) > 0);
        assert_string_equal(line, "answer ERROR 2 plexus.Error.InvalidPayload");
        assert_true(harness_read_line(fake.report_fd, line, sizeof(line),
                                      harness_timeout_ms(HARNESS_TIMEOUT_MS)) > 0);
        assert_string_equal(line, "answer REPLY 3 -");
        assert_false(echo_called);

        bus = plx_bus_free(bus);
        assert_int_equal(harness_count_fds(), before);
        assert_int_equal(harness_write_byte(fake.control_fd, 'q'), 0);
        assert_int_equal(harness_child_wait(&fake, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        harness_child_close(&fake);
        probe_ping(f);
}

/* plx_bus_call() of a broker method; returns the error name, or NULL on a REPLY. */
static const char *broker_call(plx_bus *bus, const char *member, const void *req, size_t size,
                               char *ret_error, size_t error_size) {
        _cleanup_msg_ plx_msg *reply = NULL;
        int r;

        r = plx_bus_call(bus, PLX_BROKER, member, req, size, PLX_TIMEOUT_DEFAULT, &reply);
        if (r == 0)
                return NULL;
        if (r != -EREMOTEIO)
                fail_msg("%s: %s", member, strerror(-r));
        snprintf(ret_error, error_size, "%s", plx_msg_get_error_name(reply));
        return ret_error;
}

typedef struct Refusals {
        unsigned *done;
        bool refused;
} Refusals;

static int on_refusal(plx_msg *m, void *userdata) {
        Refusals *r = userdata;

        r->refused = plx_msg_get_kind(m) == PLX_MSG_ERROR &&
                     strcmp(plx_msg_get_error_name(m), "plexus.Error.LimitsExceeded") == 0;
        (*r->done)++;
        return 0;
}

/*
 * A client calling ListClients in a loop: past a burst it gets
 * LimitsExceeded (and so for the other introspection methods, which share
 * its bucket), while Ping, and other clients' introspection, go on.
 */
static void test_introspection_rate_limited(void **state) {
        static const char *const limited[] = { "ListClients", "ListNames", "GetStats" };
        Fixture *f = *state;
        _cleanup_bus_ plx_bus *hammer = NULL;
        uint8_t req[256];
        Plexus__NameRequest nr = PLEXUS__NAME_REQUEST__INIT;
        char err[128];
        size_t n, len;

        assert_int_equal(plx_bus_new(&hammer, f->h->address, "hammer"), 0);
        for (n = 0; n < 5000; n++) {
                const char *e = broker_call(hammer, "ListClients", NULL, 0, err, sizeof(err));

                if (e) {
                        assert_string_equal(e, "plexus.Error.LimitsExceeded");
                        break;
                }
                if (n % 256 == 0)
                        probe_ping(f);
        }
        if (n == 5000)
                fail_msg("5000 ListClients in a row, none refused");
        fprintf(stderr, "refused after %zu calls\n", n);

        /*
         * Refused for the other introspection methods too, GetClient
         * included. Sent back to back, not one round trip each: a slow
         * machine (valgrind) takes longer per round trip than the bucket
         * takes to refill a token, and then answers one now and then.
         */
        nr.name = (char *)plx_bus_get_unique_id(f->probe);
        len = plexus__name_request__pack(&nr, req);
        {
                const char *const members[] = { "ListClients", "ListNames", "GetStats", "GetClient" };
                Refusals r[4][4] = {};
                unsigned done = 0;

                for (size_t k = 0; k < 4; k++)
                        for (size_t i = 0; i < ELEMENTSOF(members); i++) {
                                r[i][k].done = &done;
                                assert_int_equal(plx_bus_call_async(hammer, NULL, PLX_BROKER, members[i],
                                                                    i == 3 ? req : NULL, i == 3 ? len : 0,
                                                                    PLX_TIMEOUT_DEFAULT, on_refusal, &r[i][k]), 0);
                        }
                for (uint64_t end = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);
                     done < 16 && harness_now_ms() < end;) {
                        bool never = false;

                        (void)harness_bus_wait(hammer, &never, 50);
                }
                assert_int_equal(done, 16);
                for (size_t i = 0; i < ELEMENTSOF(members); i++) {
                        unsigned n_refused = 0;

                        for (size_t k = 0; k < 4; k++)
                                n_refused += r[i][k].refused;
                        if (n_refused == 0)
                                fail_msg("%s after the burst: answered 4 times of 4", members[i]);
                }
        }
        (void)limited;

        /* Ping is not introspection; the hammer is still connected and answered. */
        assert_null(broker_call(hammer, "Ping", NULL, 0, err, sizeof(err)));
        /* The bucket is the caller's: the probe still lists. */
        assert_null(broker_call(f->probe, "ListClients", NULL, 0, err, sizeof(err)));
        probe_ping(f);
}

typedef struct ExecArgs {
        const char *address;
} ExecArgs;

/* Says HELLO on a raw socket it keeps across exec(), then becomes `sleep 60`. */
static int exec_after_hello_main(int report_fd, int control_fd, void *userdata) {
        ExecArgs *a = userdata;
        RawFrame *frame = raw_frame_new();
        char id[64];
        int fd;

        child_assert(frame);
        fd = raw_connect(a->address);
        child_assert(fd >= 0);
        child_assert_int_eq(raw_hello(fd, frame, id, sizeof(id)), 0);
        child_assert_int_eq(fcntl(fd, F_SETFD, 0), 0);
        harness_report(report_fd, "%s", id);
        execl("/bin/sleep", "sleep", "60", (char *)NULL);
        child_fail("exec: %m");
}

/*
 * comm and cmdline are those of the process that said HELLO, captured
 * then: a client that exec()s another program afterwards (keeping its
 * socket) still shows the first. The broker no longer reads /proc when
 * asked, which was the cost every ListClients multiplied.
 */
static void test_cmdline_as_of_hello(void **state) {
        Fixture *f = *state;
        HarnessChild child = HARNESS_CHILD_NULL;
        _cleanup_msg_ plx_msg *reply = NULL;
        Plexus__NameRequest nr = PLEXUS__NAME_REQUEST__INIT;
        Plexus__ClientInfo *ci;
        ExecArgs args = { .address = f->h->address };
        char id[64], path[64], now[256] = "";
        uint8_t req[128];
        const void *payload;
        uint64_t deadline;
        size_t size;

        assert_int_equal(harness_child_fork(&child, exec_after_hello_main, &args), 0);
        assert_true(harness_read_line(child.report_fd, id, sizeof(id), harness_timeout_ms(HARNESS_TIMEOUT_MS)) > 0);

        /* Wait until the exec() happened: /proc shows the new program. */
        snprintf(path, sizeof(path), "/proc/%d/comm", (int)child.pid);
        deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);
        for (;;) {
                FILE *fp = fopen(path, "re");

                now[0] = 0;
                if (fp) {
                        if (!fgets(now, sizeof(now), fp))
                                now[0] = 0;
                        fclose(fp);
                }
                if (strncmp(now, "sleep", 5) == 0)
                        break;
                assert_true(harness_now_ms() < deadline);
                usleep(5 * 1000);
        }

        nr.name = id;
        size = plexus__name_request__pack(&nr, req);
        assert_int_equal(plx_bus_call(f->probe, PLX_BROKER, "GetClient", req, size, PLX_TIMEOUT_DEFAULT, &reply), 0);
        payload = plx_msg_get_payload(reply, &size);
        ci = plexus__client_info__unpack(NULL, size, payload);
        assert_non_null(ci);
        fprintf(stderr, "client %s: comm \"%s\", cmdline \"%s\"\n", id, ci->comm, ci->cmdline);
        assert_non_null(strstr(ci->cmdline, "test-hostile-misc"));
        assert_null(strstr(ci->cmdline, "sleep"));
        assert_string_not_equal(ci->comm, "sleep");
        plexus__client_info__free_unpacked(ci, NULL);

        kill(child.pid, SIGKILL);
        harness_child_wait(&child, harness_timeout_ms(HARNESS_TIMEOUT_MS));
        harness_child_close(&child);
        probe_ping(f);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_empty_record_fds_not_leaked, setup, teardown),
                cmocka_unit_test_setup_teardown(test_empty_record_is_invalid, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_empty_record_fds, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_unsealed_memfd, setup, teardown),
                cmocka_unit_test_setup_teardown(test_introspection_rate_limited, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cmdline_as_of_hello, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
