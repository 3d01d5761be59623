/*
 * Many clients at once: N_CLIENTS forked processes connect together and each
 * makes N_CALLS synchronous Echo calls to one service, checking every reply
 * against its own request. The parent only collects exit codes, so a wrong,
 * lost or misrouted reply shows up as a failed child.
 *
 * And a client that connects while the broker's backlog is full: it waits
 * for room instead of failing (test_connect_full_backlog, against a
 * listener of the test's own that plays the broker).
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>

#include "harness.h"
#include "raw.h"
#include "service.h"

#define N_CLIENTS 50
#define N_CALLS 200

typedef struct ClientArgs {
        const char *address;
        const char *service_id;
        int index;
} ClientArgs;

static int client_main(int report_fd, int control_fd, void *userdata) {
        ClientArgs *a = userdata;
        _cleanup_bus_ plx_bus *bus = NULL;
        char go[4];
        int r;

        /* Start together: the parent releases all clients at once. */
        r = harness_read_line(control_fd, go, sizeof(go), harness_timeout_ms(HARNESS_TIMEOUT_MS));
        if (r < 0)
                child_fail("client %d: no start signal: %s", a->index, strerror(-r));

        r = plx_bus_new(&bus, a->address, "concurrent-client");
        if (r < 0)
                child_fail("client %d: plx_bus_new: %s", a->index, strerror(-r));

        for (int i = 0; i < N_CALLS; i++) {
                _cleanup_msg_ plx_msg *reply = NULL;
                char req[64];
                const void *p;
                size_t n;
                int len;

                /* Sizes vary so replies of different clients differ in shape too. */
                len = snprintf(req, sizeof(req), "client %d call %d %.*s", a->index, i,
                               (a->index + i) % 20, "xxxxxxxxxxxxxxxxxxxx");
                r = plx_bus_call(bus, a->service_id, "Echo", req, (size_t)len, PLX_TIMEOUT_DEFAULT, &reply);
                if (r < 0)
                        child_fail("client %d call %d: %s%s%s", a->index, i, strerror(-r),
                                   r == -EREMOTEIO ? " " : "",
                                   r == -EREMOTEIO ? plx_msg_get_error_name(reply) : "");
                p = plx_msg_get_payload(reply, &n);
                if (n != (size_t)len || memcmp(p, req, n) != 0)
                        child_fail("client %d call %d: reply \"%.*s\" for \"%s\"", a->index, i,
                                   (int)n, (const char *)p, req);
                if (strcmp(plx_msg_get_sender(reply), a->service_id) != 0)
                        child_fail("client %d call %d: reply from %s", a->index, i, plx_msg_get_sender(reply));
        }
        return 0;
}

static void test_concurrent_clients(void **state) {
        ServiceFixture *f = *state;
        HarnessChild clients[N_CLIENTS];
        ClientArgs args[N_CLIENTS];
        uint64_t start;
        int n_failed = 0;

        for (int i = 0; i < N_CLIENTS; i++) {
                args[i] = (ClientArgs) {
                        .address = f->harness->address,
                        .service_id = f->service_id,
                        .index = i,
                };
                assert_int_equal(harness_child_fork(&clients[i], client_main, &args[i]), 0);
        }

        start = harness_now_ms();
        for (int i = 0; i < N_CLIENTS; i++)
                assert_int_equal(harness_write_byte(clients[i].control_fd, '\n'), 0);

        for (int i = 0; i < N_CLIENTS; i++) {
                int left = harness_timeout_ms(60000) - (int)(harness_now_ms() - start);
                int r = harness_child_wait(&clients[i], left > 0 ? left : 1);

                if (r != 0) {
                        fprintf(stderr, "client %d: exit status %d\n", i, r);
                        n_failed++;
                }
        }
        fprintf(stderr, "%d clients x %d calls in %llu ms\n", N_CLIENTS, N_CALLS,
                (unsigned long long)(harness_now_ms() - start));
        assert_int_equal(n_failed, 0);

        /* The service and the broker are still fine. */
        assert_int_equal(plx_bus_call(f->bus, f->service_id, "Echo", "end", 3, PLX_TIMEOUT_DEFAULT, NULL), 0);
}

static int backlog_client_main(int report_fd, int control_fd, void *userdata) {
        const char *address = userdata;
        _cleanup_bus_ plx_bus *bus = NULL;
        int r, flags;

        r = plx_bus_new(&bus, address, "backlog-client");
        if (r < 0) {
                harness_report(report_fd, "error %s\n", strerror(-r));
                return 1;
        }
        /* The blocking retry must leave the socket nonblocking, as always. */
        flags = fcntl(plx_bus_get_fd(bus), F_GETFL);
        child_assert(flags >= 0 && (flags & O_NONBLOCK));
        harness_report(report_fd, "ok %s\n", plx_bus_get_unique_id(bus));
        return 0;
}

/*
 * plx_bus_new() while the broker's backlog is full: the client's socket is
 * nonblocking, so its connect() says EAGAIN, and the library must then
 * wait for room (as a blocking connect() does) rather than fail. Without
 * that, the child reports an error at once and never sleeps.
 */
static void test_connect_full_backlog(void **state) {
        Plexus__Welcome w = PLEXUS__WELCOME__INIT;
        Plexus__Header h = PLEXUS__HEADER__INIT;
        HarnessChild child = HARNESS_CHILD_NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char dir[] = "/tmp/plexus-backlog.XXXXXX";
        int fillers[16], n_fillers = 0, lfd, a, b;
        uint8_t payload[64];
        char line[128];
        RawFrame *f;
        uint64_t deadline;
        struct pollfd pfd;

        assert_non_null(mkdtemp(dir));
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/bus", dir);
        lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        assert_true(lfd >= 0);
        assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(lfd, 0), 0);

        /* Fill the backlog: connect until the kernel says EAGAIN. */
        for (;;) {
                int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

                assert_true(fd >= 0);
                if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                        assert_int_equal(errno, EAGAIN);
                        close(fd);
                        break;
                }
                assert_true(n_fillers < (int)(sizeof(fillers) / sizeof(fillers[0])));
                fillers[n_fillers++] = fd;
        }
        assert_true(n_fillers > 0);

        assert_int_equal(harness_child_fork(&child, backlog_client_main, sa.sun_path), 0);

        /* Until the child sleeps in connect(); a child that gave up reports why. */
        deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);
        for (;;) {
                pfd = (struct pollfd) { .fd = child.report_fd, .events = POLLIN };
                if (poll(&pfd, 1, 5) > 0) {
                        assert_true(harness_read_line(child.report_fd, line, sizeof(line), 1000) > 0);
                        fail_msg("the client did not wait for room in the backlog: %s", line);
                }
                if (harness_process_state(child.pid) == 'S')
                        break;
                assert_true(harness_now_ms() < deadline);
        }

        /* Make room: take the fillers' connections, then the client's. */
        for (int i = 0; i < n_fillers; i++) {
                a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                assert_true(a >= 0);
                close(a);
        }
        b = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        assert_true(b >= 0);

        /* Play the broker: answer its HELLO with a Welcome. */
        f = raw_frame_new();
        assert_non_null(f);
        assert_true(raw_recv(b, f, harness_timeout_ms(HARNESS_TIMEOUT_MS)) > 0);
        assert_non_null(f->header);
        assert_int_equal(f->header->kind, PLEXUS__KIND__KIND_HELLO);
        h.kind = PLEXUS__KIND__KIND_REPLY;
        h.serial = 1;
        h.reply_serial = f->header->serial;
        h.sender = (char *)PLX_BROKER;
        w.protocol_version = PLX_PROTOCOL_VERSION;
        w.unique_id = (char *)":42";
        assert_int_equal(raw_send(b, &h, payload, plexus__welcome__pack(&w, payload)), 0);
        raw_frame_free(f);

        assert_true(harness_read_line(child.report_fd, line, sizeof(line), harness_timeout_ms(HARNESS_TIMEOUT_MS)) > 0);
        assert_string_equal(line, "ok :42");
        assert_int_equal(harness_child_wait(&child, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        harness_child_close(&child);

        close(b);
        for (int i = 0; i < n_fillers; i++)
                close(fillers[i]);
        close(lfd);
        unlink(sa.sun_path);
        rmdir(dir);
}

#define N_IDLE 20

/*
 * An idle client costs the broker one descriptor, its socket: the pidfd
 * that pins the process while its /proc files are read at HELLO is closed
 * after, where SO_PEERPIDFD (Linux 6.5) can open it again when needed.
 */
static void test_idle_client_one_fd(void **state) {
        ServiceFixture *f = *state;
        plx_bus *idle[N_IDLE];
        int sv[2], pidfd = -1, before, after;
        socklen_t len = sizeof(pidfd);

        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
        if (getsockopt(sv[0], SOL_SOCKET, 77 /* SO_PEERPIDFD */, &pidfd, &len) < 0) {
                close(sv[0]);
                close(sv[1]);
                skip();
        }
        close(pidfd);
        close(sv[0]);
        close(sv[1]);

        before = harness_count_process_fds(f->harness->broker_pid);
        assert_true(before > 0);
        for (int i = 0; i < N_IDLE; i++)
                assert_int_equal(plx_bus_new(&idle[i], f->harness->address, "idle"), 0);
        /* A round trip each: every HELLO has been handled. */
        for (int i = 0; i < N_IDLE; i++)
                assert_int_equal(plx_bus_call(idle[i], PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        after = harness_count_process_fds(f->harness->broker_pid);
        if (after - before != N_IDLE)
                fail_msg("%d idle clients hold %d broker fds", N_IDLE, after - before);
        for (int i = 0; i < N_IDLE; i++)
                plx_bus_free(idle[i]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                SERVICE_TEST(test_concurrent_clients),
                SERVICE_TEST(test_idle_client_one_fd),
                cmocka_unit_test(test_connect_full_backlog),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
