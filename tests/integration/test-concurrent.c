/*
 * Many clients at once: N_CLIENTS forked processes connect together and each
 * makes N_CALLS synchronous Echo calls to one service, checking every reply
 * against its own request. The parent only collects exit codes, so a wrong,
 * lost or misrouted reply shows up as a failed child.
 */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
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

int main(void) {
        const struct CMUnitTest tests[] = {
                SERVICE_TEST(test_concurrent_clients),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
