/*
 * Malformed input over a raw socket. Every bad frame must get an ERROR frame
 * naming the problem (plexus.Error.InvalidFrame, FrameTooLarge,
 * ProtocolViolation, VersionMismatch) and then EOF, and must not disturb
 * anybody else: a forked libplexus client keeps calling the test service
 * the whole time and checks every answer.
 */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "harness.h"
#include "raw.h"
#include "service.h"

typedef struct Fixture {
        ServiceFixture *sf;
        HarnessChild caller;            /* calls the service until told to stop */
        RawFrame *frame;
} Fixture;

typedef struct CallerArgs {
        const char *address;
        const char *service_id;
} CallerArgs;

static int caller_main(int report_fd, int control_fd, void *userdata) {
        CallerArgs *a = userdata;
        _cleanup_bus_ plx_bus *bus = NULL;
        unsigned long n;
        char c;
        int r;

        r = plx_bus_new(&bus, a->address, "bystander");
        if (r < 0)
                child_fail("plx_bus_new: %s", strerror(-r));

        /* One call per round; between rounds, 'c' asks for the count, 'q' ends. */
        for (n = 0;; n++) {
                _cleanup_msg_ plx_msg *reply = NULL;
                char req[32];
                const void *p;
                size_t size;
                int len;

                if (harness_poll_byte(control_fd, &c)) {
                        if (c != 'c')
                                break;
                        harness_report(report_fd, "calls %lu", n);
                }

                len = snprintf(req, sizeof(req), "call %lu", n);
                r = plx_bus_call(bus, a->service_id, "Echo", req, (size_t)len, 5000 * 1000, &reply);
                if (r < 0)
                        child_fail("call %lu: %s", n, strerror(-r));
                p = plx_msg_get_payload(reply, &size);
                if (size != (size_t)len || memcmp(p, req, size) != 0)
                        child_fail("call %lu: wrong reply", n);
                if (n == 0)
                        harness_report(report_fd, "started");
        }
        harness_report(report_fd, "calls %lu", n);
        return 0;
}

static int teardown(void **state);

static int setup(void **state) {
        static CallerArgs args;
        Fixture *f;
        char line[64];
        void *s = NULL;

        if (service_fixture_setup(&s) < 0)
                return -1;
        f = calloc(1, sizeof(*f));
        if (!f) {
                service_fixture_teardown(&s);
                return -1;
        }
        f->sf = s;
        f->caller = (HarnessChild) HARNESS_CHILD_NULL;
        *state = f;

        f->frame = raw_frame_new();
        if (!f->frame)
                goto fail;
        args = (CallerArgs) { .address = f->sf->harness->address, .service_id = f->sf->service_id };
        if (harness_child_fork(&f->caller, caller_main, &args) < 0)
                goto fail;
        if (harness_read_line(f->caller.report_fd, line, sizeof(line), harness_timeout_ms(HARNESS_TIMEOUT_MS)) < 0 ||
            strcmp(line, "started") != 0) {
                fprintf(stderr, "bystander client did not start\n");
                goto fail;
        }
        return 0;

fail:
        teardown(state);
        return -1;
}

static int teardown(void **state) {
        Fixture *f = *state;
        void *s;
        int ret = 0;

        if (!f)
                return 0;
        if (f->caller.pid > 0) {
                unsigned long n1 = 0, n2 = 0;
                char line[64];
                int r;

                /* Two counts: the bystander must still be making calls now,
                 * after everything the test did. */
                harness_write_byte(f->caller.control_fd, 'c');
                if (harness_read_line(f->caller.report_fd, line, sizeof(line),
                                      harness_timeout_ms(HARNESS_TIMEOUT_MS)) > 0)
                        sscanf(line, "calls %lu", &n1);
                harness_write_byte(f->caller.control_fd, 'c');
                if (harness_read_line(f->caller.report_fd, line, sizeof(line),
                                      harness_timeout_ms(HARNESS_TIMEOUT_MS)) > 0)
                        sscanf(line, "calls %lu", &n2);
                harness_write_byte(f->caller.control_fd, 'q');
                r = harness_read_line(f->caller.report_fd, line, sizeof(line),
                                      harness_timeout_ms(HARNESS_TIMEOUT_MS));
                if (n2 <= n1) {
                        fprintf(stderr, "teardown: bystander stopped making calls (%lu, then %lu)\n", n1, n2);
                        ret = -1;
                } else if (r > 0) {
                        fprintf(stderr, "bystander: %s, all answered correctly\n", line);
                }
                r = harness_child_wait(&f->caller, harness_timeout_ms(HARNESS_TIMEOUT_MS));
                if (r != 0) {
                        fprintf(stderr, "teardown: bystander client exit status %d, expected 0\n", r);
                        ret = -1;
                }
        }
        raw_frame_free(f->frame);
        s = f->sf;
        free(f);
        *state = NULL;
        if (service_fixture_teardown(&s) < 0)
                ret = -1;
        return ret;
}

/* Reads frames until an ERROR, checks its name, then requires EOF. */
static void expect_error_then_eof(Fixture *f, int fd, const char *name) {
        int r;

        for (;;) {
                r = raw_recv(fd, f->frame, harness_timeout_ms(HARNESS_TIMEOUT_MS));
                if (r == 0 || r == -ECONNRESET)
                        fail_msg("connection closed without an ERROR frame (expected %s)", name);
                assert_int_equal(r, 1);
                assert_non_null(f->frame->header);
                if (f->frame->header->kind == PLEXUS__KIND__KIND_ERROR)
                        break;
        }
        assert_string_equal(f->frame->header->error_name, name);
        assert_string_equal(f->frame->header->sender, PLX_BROKER);
        assert_int_equal(raw_wait_eof(fd, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
}

static int connect_hello(Fixture *f) {
        char id[64];
        int fd;

        fd = raw_connect(f->sf->harness->address);
        assert_true(fd >= 0);
        assert_int_equal(raw_hello(fd, f->frame, id, sizeof(id)), 0);
        return fd;
}

static void send_bytes_expect(Fixture *f, const void *buf, size_t len, const char *name) {
        int fd = connect_hello(f);

        assert_int_equal(raw_send_bytes(fd, buf, len), 0);
        expect_error_then_eof(f, fd, name);
        close(fd);
}

static void send_header_expect(Fixture *f, const Plexus__Header *h, const char *name) {
        int fd = connect_hello(f);

        assert_int_equal(raw_send(fd, h, "payload", 7), 0);
        expect_error_then_eof(f, fd, name);
        close(fd);
}

static void test_truncated(void **state) {
        static const uint8_t two[] = { 0x05, 0x00 };

        send_bytes_expect(*state, two, sizeof(two), PLX_ERROR_INVALID_FRAME);
}

static void test_header_length(void **state) {
        Fixture *f = *state;
        uint8_t buf[8192];

        /* Says 100 header bytes; 10 follow. */
        memset(buf, 0x08, sizeof(buf));
        frame_prefix(buf, 100);
        send_bytes_expect(f, buf, FRAME_PREFIX_SIZE + 10, PLX_ERROR_INVALID_FRAME);

        /* A zero-length header. */
        frame_prefix(buf, 0);
        send_bytes_expect(f, buf, FRAME_PREFIX_SIZE + 10, PLX_ERROR_INVALID_FRAME);

        /* Longer than any header may be, though the bytes are there. */
        frame_prefix(buf, FRAME_HEADER_MAX + 1);
        send_bytes_expect(f, buf, FRAME_PREFIX_SIZE + FRAME_HEADER_MAX + 100, PLX_ERROR_INVALID_FRAME);
}

static void test_garbage_header(void **state) {
        uint8_t buf[FRAME_PREFIX_SIZE + 8];

        memset(buf, 0xff, sizeof(buf));
        frame_prefix(buf, 8);
        send_bytes_expect(*state, buf, sizeof(buf), PLX_ERROR_INVALID_FRAME);
}

static void test_unknown_kind(void **state) {
        Plexus__Header h = PLEXUS__HEADER__INIT;

        h.kind = (Plexus__Kind)9;
        h.serial = 2;
        h.destination = (char *)PLX_BROKER;
        h.member = (char *)"Ping";
        send_header_expect(*state, &h, PLX_ERROR_INVALID_FRAME);
}

static void test_bad_fields(void **state) {
        Fixture *f = *state;
        Plexus__Header h = PLEXUS__HEADER__INIT;

        /* Serial 0 is never valid. */
        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = 0;
        h.destination = f->sf->service_id;
        h.member = (char *)"Echo";
        send_header_expect(f, &h, PLX_ERROR_INVALID_FRAME);

        /* A CALL without a member. */
        h.serial = 2;
        h.member = (char *)"";
        send_header_expect(f, &h, PLX_ERROR_INVALID_FRAME);

        /* Unknown flags. */
        h.member = (char *)"Echo";
        h.flags = 0x80;
        send_header_expect(f, &h, PLX_ERROR_INVALID_FRAME);
}

static void test_too_large(void **state) {
        Fixture *f = *state;
        Plexus__Header h = PLEXUS__HEADER__INIT;
        size_t size = FRAME_SIZE_MAX + 4096;
        int sndbuf = 4 * 1024 * 1024;
        uint8_t *payload;
        int fd, r;

        fd = connect_hello(f);
        /* The kernel refuses a datagram above the socket's send buffer. */
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));

        payload = calloc(1, size);
        assert_non_null(payload);
        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = 2;
        h.destination = f->sf->service_id;
        h.member = (char *)"Echo";
        r = raw_send(fd, &h, payload, size);
        free(payload);
        if (r == -EMSGSIZE || r == -ENOBUFS) {
                close(fd);
                fprintf(stderr, "SKIP: the kernel will not send a %zu-byte datagram (%s)\n", size, strerror(-r));
                skip();
        }
        assert_int_equal(r, 0);
        expect_error_then_eof(f, fd, PLX_ERROR_FRAME_TOO_LARGE);
        close(fd);
}

static void test_first_frame_not_hello(void **state) {
        Fixture *f = *state;
        Plexus__Header h = PLEXUS__HEADER__INIT;
        int fd;

        fd = raw_connect(f->sf->harness->address);
        assert_true(fd >= 0);
        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = 1;
        h.destination = (char *)PLX_BROKER;
        h.member = (char *)"Ping";
        assert_int_equal(raw_send(fd, &h, NULL, 0), 0);
        expect_error_then_eof(f, fd, PLX_ERROR_PROTOCOL_VIOLATION);
        close(fd);
}

static void test_version_mismatch(void **state) {
        Fixture *f = *state;
        int fd;

        fd = raw_connect(f->sf->harness->address);
        assert_true(fd >= 0);
        assert_int_equal(raw_send_hello(fd, 1, 99), 0);
        expect_error_then_eof(f, fd, PLX_ERROR_VERSION_MISMATCH);
        assert_int_equal(f->frame->header->reply_serial, 1);
        close(fd);
}

static void test_second_hello(void **state) {
        Fixture *f = *state;
        int fd = connect_hello(f);

        assert_int_equal(raw_send_hello(fd, 2, PLX_PROTOCOL_VERSION), 0);
        expect_error_then_eof(f, fd, PLX_ERROR_PROTOCOL_VIOLATION);
        close(fd);
}

/* Many bad clients at once, interleaved with the bystander's calls. */
static void test_many_bad_clients(void **state) {
        Fixture *f = *state;
        static const uint8_t two[] = { 0x05, 0x00 };
        int fds[32];

        for (size_t i = 0; i < 32; i++) {
                fds[i] = connect_hello(f);
                assert_int_equal(raw_send_bytes(fds[i], two, sizeof(two)), 0);
        }
        for (size_t i = 0; i < 32; i++) {
                expect_error_then_eof(f, fds[i], PLX_ERROR_INVALID_FRAME);
                close(fds[i]);
        }
        /* And the test's own libplexus connection is fine too. */
        assert_int_equal(plx_bus_call(f->sf->bus, f->sf->service_id, "Echo", "ok", 2, PLX_TIMEOUT_DEFAULT, NULL), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
                cmocka_unit_test_setup_teardown(test_header_length, setup, teardown),
                cmocka_unit_test_setup_teardown(test_garbage_header, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_kind, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_fields, setup, teardown),
                cmocka_unit_test_setup_teardown(test_too_large, setup, teardown),
                cmocka_unit_test_setup_teardown(test_first_frame_not_hello, setup, teardown),
                cmocka_unit_test_setup_teardown(test_version_mismatch, setup, teardown),
                cmocka_unit_test_setup_teardown(test_second_hello, setup, teardown),
                cmocka_unit_test_setup_teardown(test_many_bad_clients, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
