/*
 * Large messages through a real broker (docs/protocol.md §17): byte-exact
 * payloads around the threshold and far above it on every path (memfd,
 * process_vm, forced inline), replies into the caller's buffer, plx_buffer
 * sends, a large signal to three subscribers, a receiver too slow for its
 * lease, a sender gone before its receiver read, a receiver of another uid
 * (memfd fallback), and no fd or mapping left behind.
 */

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <grp.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "harness.h"
#include "service.h"

#define MiB (1024u * 1024u)

/*
 * Payloads repeat a block of a prime length, so that a shifted, truncated
 * or stale page shows; filled and compared at memcpy speed, so that 1 GiB
 * stays cheap.
 */
#define PATTERN_LEN 4093u
#define MIN(a, b) ((a) < (b) ? (a) : (b))

static uint8_t pattern_byte(size_t i, uint8_t seed) {
        size_t k = i % PATTERN_LEN;

        return (uint8_t)((k * 131u) ^ (k >> 3) ^ seed);
}

static void pattern_block(uint8_t block[static PATTERN_LEN], uint8_t seed) {
        for (size_t i = 0; i < PATTERN_LEN; i++)
                block[i] = pattern_byte(i, seed);
}

static uint8_t *make_payload(size_t size, uint8_t seed) {
        uint8_t *p = malloc(size ? size : 1), block[PATTERN_LEN];

        assert_non_null(p);
        pattern_block(block, seed);
        for (size_t i = 0; i < size; i += PATTERN_LEN)
                memcpy(p + i, block, MIN(PATTERN_LEN, size - i));
        return p;
}

static bool payload_ok(const uint8_t *p, size_t size, uint8_t seed) {
        uint8_t block[PATTERN_LEN];

        pattern_block(block, seed);
        for (size_t i = 0; i < size; i += PATTERN_LEN)
                if (memcmp(p + i, block, MIN(PATTERN_LEN, size - i)) != 0)
                        return false;
        return true;
}

/* Mappings of received memfds still in this process ("/memfd:plexus-payload"). */
static int count_payload_mappings(void) {
        char line[512];
        FILE *f = fopen("/proc/self/maps", "re");
        int n = 0;

        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (strstr(line, "plexus-payload"))
                        n++;
        fclose(f);
        return n;
}

static void echo_timeout(ServiceFixture *f, size_t size, int path, uint8_t seed, uint64_t timeout_usec) {
        _cleanup_msg_ plx_msg *reply = NULL;
        uint8_t *buf = make_payload(size, seed);
        const uint8_t *p;
        size_t n;
        int r;

        assert_int_equal(plx_bus_set_large_path(f->bus, path), 0);
        r = plx_bus_call(f->bus, f->service_id, "Echo", buf, size, timeout_usec, &reply);
        if (r != 0)
                fail_msg("echo of %zu bytes (path %d): %s %s", size, path, strerror(-r),
                         reply ? plx_msg_get_error_message(reply) : "");
        p = plx_msg_get_payload(reply, &n);
        assert_int_equal(n, size);
        assert_true(payload_ok(p, size, seed));
        free(buf);
}

static void echo(ServiceFixture *f, size_t size, int path, uint8_t seed) {
        echo_timeout(f, size, path, seed, PLX_TIMEOUT_DEFAULT);
}

/* Under valgrind (which stretches timeouts) big sizes cost minutes: scale them down. */
static bool slow_machine(void) {
        const char *e = getenv("PLEXUS_TEST_TIMEOUT_SCALE");

        return e && atoi(e) > 1;
}

static void test_sizes_auto(void **state) {
        ServiceFixture *f = *state;
        const size_t sizes[] = {
                PLX_LARGE_THRESHOLD_DEFAULT - 1, PLX_LARGE_THRESHOLD_DEFAULT, PLX_LARGE_THRESHOLD_DEFAULT + 1,
                200 * 1024, 1 * MiB + 3, slow_machine() ? 8 * MiB : 64 * MiB,
        };

        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
                echo(f, sizes[i], PLX_LARGE_AUTO, (uint8_t)i);
        assert_int_equal(count_payload_mappings(), 0);
}

static void test_paths_forced(void **state) {
        ServiceFixture *f = *state;

        echo(f, 3 * MiB, PLX_LARGE_MEMFD, 1);
        echo(f, 3 * MiB, PLX_LARGE_PROCESS_VM, 2);
        echo(f, PLX_LARGE_THRESHOLD_DEFAULT + 100, PLX_LARGE_INLINE, 3);
        echo(f, 1, PLX_LARGE_MEMFD, 4);

        /* Inline cannot carry more than a frame. */
        {
                uint8_t *buf = make_payload(1 * MiB, 5);

                assert_int_equal(plx_bus_set_large_path(f->bus, PLX_LARGE_INLINE), 0);
                assert_int_equal(plx_bus_call(f->bus, f->service_id, "Echo", buf, 1 * MiB,
                                              PLX_TIMEOUT_DEFAULT, NULL), -EMSGSIZE);
                free(buf);
        }
        assert_int_equal(count_payload_mappings(), 0);
}

/*
 * The largest message the broker takes (1 GiB by default), if this machine
 * has the memory for the four copies in flight (request, callee's copy,
 * reply memfd, our mapping): byte-exact both ways.
 */
static void test_max_size(void **state) {
        ServiceFixture *f = *state;
        size_t size = (size_t)plx_bus_get_max_message_size(f->bus);
        long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);

        if (slow_machine() || pages < 0 || (uint64_t)pages * (uint64_t)page < 5ull * size) {
                print_message("SKIPPED: not enough free memory or time for a %zu-byte message\n", size);
                skip();
        }
        /* The broker's longest timeout: a loaded machine copies 1 GiB four times slowly. */
        echo_timeout(f, size, PLX_LARGE_AUTO, 77, 120ull * 1000 * 1000);
}

static void test_above_max(void **state) {
        ServiceFixture *f = *state;
        uint64_t max = plx_bus_get_max_message_size(f->bus);
        plx_buffer *b = NULL;

        assert_true(max >= (1ull << 30));
        /* Checked before anything is sent or allocated for the payload. */
        assert_int_equal(plx_buffer_new(&b, 4096), 0);
        assert_int_equal(plx_bus_publish_buffer(f->bus, "large/too/big", b, (size_t)max + 1), -EINVAL);
}

static void test_call_into(void **state) {
        ServiceFixture *f = *state;
        _cleanup_msg_ plx_msg *reply = NULL;
        size_t size = 8 * MiB, n;
        uint8_t *req = make_payload(size, 9);
        uint8_t *dst = calloc(1, size + 16);
        const void *p;

        assert_non_null(dst);
        assert_int_equal(plx_bus_call_into(f->bus, f->service_id, "Echo", req, size, PLX_TIMEOUT_DEFAULT,
                                           dst, size + 16, &reply), 0);
        p = plx_msg_get_payload(reply, &n);
        assert_ptr_equal(p, dst);
        assert_int_equal(n, size);
        assert_true(payload_ok(dst, size, 9));

        /* Too small a buffer: the reply comes as usual. */
        reply = plx_msg_unref(reply);
        assert_int_equal(plx_bus_call_into(f->bus, f->service_id, "Echo", req, size, PLX_TIMEOUT_DEFAULT,
                                           dst, size - 1, &reply), 0);
        p = plx_msg_get_payload(reply, &n);
        assert_ptr_not_equal(p, dst);
        assert_int_equal(n, size);
        assert_true(payload_ok(p, size, 9));
        free(req);
        free(dst);
}

/* A lent REPLY: read by the caller's library, into its buffer or its own. */
static void test_lent_reply(void **state) {
        ServiceFixture *f = *state;
        size_t size = 3 * MiB + 5, n;
        uint8_t *req = make_payload(size, 13), *dst = malloc(size);
        const void *p;

        assert_non_null(dst);
        for (int round = 0; round < 3; round++) {
                _cleanup_msg_ plx_msg *reply = NULL;

                if (round < 2)
                        assert_int_equal(plx_bus_call(f->bus, f->service_id, "EchoLent", req, size,
                                                      PLX_TIMEOUT_DEFAULT, &reply), 0);
                else
                        assert_int_equal(plx_bus_call_into(f->bus, f->service_id, "EchoLent", req, size,
                                                           PLX_TIMEOUT_DEFAULT, dst, size, &reply), 0);
                p = plx_msg_get_payload(reply, &n);
                assert_int_equal(n, size);
                assert_true(payload_ok(p, size, 13));
                if (round == 2)
                        assert_ptr_equal(p, dst);
        }
        free(req);
        free(dst);
}

static void test_buffer_call(void **state) {
        ServiceFixture *f = *state;
        _cleanup_msg_ plx_msg *reply = NULL;
        size_t size = 5 * MiB + 7, n;
        plx_buffer *b = NULL;
        const void *p;

        assert_int_equal(plx_buffer_new(&b, size + 100), 0);
        assert_int_equal(plx_buffer_get_size(b), size + 100);
        for (size_t i = 0; i < size; i++)
                ((uint8_t *)plx_buffer_get_data(b))[i] = pattern_byte(i, 11);
        assert_int_equal(plx_bus_call_buffer(f->bus, f->service_id, "Echo", b, size, PLX_TIMEOUT_DEFAULT,
                                             &reply), 0);
        p = plx_msg_get_payload(reply, &n);
        assert_int_equal(n, size);
        assert_true(payload_ok(p, size, 11));

        /* An unsent buffer is simply freed. */
        assert_int_equal(plx_buffer_new(&b, 10), 0);
        assert_null(plx_buffer_free(b));
}

/* Signals collected by a subscriber. */
typedef struct Collector {
        size_t n;
        bool ok;
        uint8_t seed;
        size_t size;
} Collector;

static int on_signal(plx_msg *m, void *userdata) {
        Collector *c = userdata;
        const void *p;
        size_t n;

        p = plx_msg_get_payload(m, &n);
        c->ok = n == c->size && payload_ok(p, n, c->seed);
        c->n++;
        return 0;
}

static int subscriber_child(int report_fd, int control_fd, void *userdata) {
        const char *address = userdata;
        Collector c = { .seed = 21, .size = 16 * MiB };
        plx_bus *bus = NULL;
        char go;

        if (plx_bus_new(&bus, address, "large-subscriber") < 0 ||
            plx_bus_subscribe(bus, NULL, "large/fan", on_signal, &c) < 0)
                return HARNESS_EXIT_FAILED;
        harness_report(report_fd, "ready");
        while (c.n < 2) {
                bool done = false;

                if (harness_bus_wait(bus, &done, 100) < 0 && !plx_bus_get_fd(bus))
                        break;
                if (harness_poll_byte(control_fd, &go))
                        break;
        }
        harness_report(report_fd, "got %zu %s", c.n, c.ok ? "ok" : "bad");
        plx_bus_free(bus);
        return 0;
}

static void fan_out(ServiceFixture *f, int path) {
        HarnessChild kids[3];
        char line[64];
        uint8_t *buf = make_payload(16 * MiB, 21);

        for (size_t i = 0; i < 3; i++) {
                assert_int_equal(harness_child_fork(&kids[i], subscriber_child, f->harness->address), 0);
                assert_true(harness_read_line(kids[i].report_fd, line, sizeof(line), harness_timeout_ms(HARNESS_TIMEOUT_MS)) >= 0);
                assert_string_equal(line, "ready");
        }
        assert_int_equal(plx_bus_set_large_path(f->bus, path), 0);
        assert_int_equal(plx_bus_publish(f->bus, "large/fan", buf, 16 * MiB), 0);
        /* The buffer is ours again at once: scribble on it before the second signal. */
        memset(buf, 0xee, 16 * MiB);
        free(buf);
        buf = make_payload(16 * MiB, 21);
        assert_int_equal(plx_bus_publish(f->bus, "large/fan", buf, 16 * MiB), 0);
        free(buf);
        assert_int_equal(harness_bus_flush(f->bus, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);

        for (size_t i = 0; i < 3; i++) {
                assert_true(harness_read_line(kids[i].report_fd, line, sizeof(line),
                                                   harness_timeout_ms(3 * HARNESS_TIMEOUT_MS)) >= 0);
                assert_string_equal(line, "got 2 ok");
                assert_int_equal(harness_child_wait(&kids[i], harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
                harness_child_close(&kids[i]);
        }
}

static void test_fan_out_memfd(void **state) {
        fan_out(*state, PLX_LARGE_AUTO);
}

static void test_fan_out_process_vm(void **state) {
        ServiceFixture *f = *state;

        fan_out(f, PLX_LARGE_PROCESS_VM);
        /* The lent copies are freed on TransferDone: process it. */
        assert_int_equal(harness_bus_drain(f->bus), 0);
}

/*
 * A subscriber that does not read until its lease is over gets no bytes
 * (the broker refuses its late AckTransfer): the signal counts as missed.
 */
/* Restart the fixture's broker with @conf as its configuration file. */
static void broker_with_config(Harness *h, const char *conf) {
        const char *args[] = { "-c", NULL, NULL };
        char config[400];
        int fd;

        snprintf(config, sizeof(config), "%s/plexusd.conf", h->dir);
        fd = open(config, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, conf, strlen(conf)), (ssize_t)strlen(conf));
        close(fd);
        args[1] = config;
        assert_int_equal(harness_broker_stop(h), 0);
        assert_int_equal(harness_broker_start_args(h, args, -1), 0);
}

static void test_lease_expired(void **state) {
        Harness *h = *state;
        plx_bus *pub = NULL, *sub = NULL;
        Collector c = { .seed = 3, .size = 2 * MiB };
        uint8_t *buf;

        broker_with_config(h, "[limits]\ntransfer_lease_ms = 200\n");

        assert_int_equal(plx_bus_new(&pub, h->address, "pub"), 0);
        assert_int_equal(plx_bus_new(&sub, h->address, "sub"), 0);
        assert_int_equal(plx_bus_subscribe(sub, NULL, "large/slow", on_signal, &c), 0);
        assert_int_equal(plx_bus_set_large_path(pub, PLX_LARGE_PROCESS_VM), 0);
        buf = make_payload(2 * MiB, 3);
        assert_int_equal(plx_bus_publish(pub, "large/slow", buf, 2 * MiB), 0);
        assert_int_equal(harness_bus_flush(pub, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        free(buf);

        usleep(600 * 1000);
        assert_int_equal(harness_bus_drain(sub), 0);
        assert_int_equal(c.n, 0);
        assert_true(plx_bus_get_n_missed(sub) >= 1);

        /* A fresh one within the lease goes through. */
        buf = make_payload(2 * MiB, 3);
        assert_int_equal(plx_bus_publish(pub, "large/slow", buf, 2 * MiB), 0);
        free(buf);
        for (int i = 0; i < 100 && c.n == 0; i++) {
                bool done = false;

                harness_bus_flush(pub, 100);
                harness_bus_wait(sub, &done, 50);
        }
        assert_int_equal(c.n, 1);
        assert_true(c.ok);

        plx_bus_free(pub);
        plx_bus_free(sub);
        assert_int_equal(count_payload_mappings(), 0);
}

static int lender_child(int report_fd, int control_fd, void *userdata) {
        const char *address = userdata;
        plx_bus *bus = NULL;
        uint8_t *buf = make_payload(4 * MiB, 8);

        if (plx_bus_new(&bus, address, "lender") < 0 ||
            plx_bus_set_large_path(bus, PLX_LARGE_PROCESS_VM) < 0 ||
            plx_bus_publish(bus, "large/orphan", buf, 4 * MiB) < 0 ||
            harness_bus_flush(bus, harness_timeout_ms(HARNESS_TIMEOUT_MS)) < 0)
                return HARNESS_EXIT_FAILED;
        harness_report(report_fd, "sent");
        /* Killed before anyone read: no goodbye, no cleanup. */
        raise(SIGKILL);
        return HARNESS_EXIT_FAILED;
}

static void test_sender_gone(void **state) {
        ServiceFixture *f = *state;
        HarnessChild kid;
        Collector c = { .seed = 8, .size = 4 * MiB };
        char line[32];

        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "large/orphan", on_signal, &c), 0);
        assert_int_equal(harness_bus_drain(f->bus), 0);
        assert_int_equal(harness_child_fork(&kid, lender_child, f->harness->address), 0);
        assert_true(harness_read_line(kid.report_fd, line, sizeof(line), harness_timeout_ms(HARNESS_TIMEOUT_MS)) >= 0);
        assert_string_equal(line, "sent");
        assert_int_equal(harness_child_wait(&kid, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 128 + SIGKILL);
        harness_child_close(&kid);

        /* The broker may or may not have noticed the exit yet: either way, no bytes. */
        usleep(100 * 1000);
        assert_int_equal(harness_bus_drain(f->bus), 0);
        assert_int_equal(c.n, 0);
        assert_true(plx_bus_get_n_missed(f->bus) >= 1);
        /* The bus still works. */
        echo(f, 2 * MiB, PLX_LARGE_AUTO, 30);
}

/*
 * The callee disappears while the caller's lent buffer is out: the call
 * fails with Disconnected and returns, the buffer is ours again.
 */
static void test_receiver_gone(void **state) {
        ServiceFixture *f = *state;
        _cleanup_msg_ plx_msg *reply = NULL;
        uint8_t *buf = make_payload(4 * MiB, 1);
        int r;

        assert_int_equal(plx_bus_set_large_path(f->bus, PLX_LARGE_PROCESS_VM), 0);
        r = plx_bus_call(f->bus, f->service_id, "Die", buf, 4 * MiB, PLX_TIMEOUT_DEFAULT, &reply);
        assert_int_equal(r, -EREMOTEIO);
        assert_string_equal(plx_msg_get_error_name(reply), PLX_ERROR_DISCONNECTED);
        free(buf);
        assert_int_equal(harness_child_wait(&f->service, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 128 + 9);
}

/* --- Another uid: process_vm_readv is refused, the memfd path takes over --- */

static int echo_as_nobody(int report_fd, int control_fd, void *userdata) {
        if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
                return HARNESS_EXIT_FAILED;
        return service_main(report_fd, control_fd, userdata);
}

static void test_cross_uid(void **state) {
        Harness *h = *state;
        HarnessChild kid;
        char line[300];
        plx_bus *bus = NULL;
        size_t size = 6 * MiB;

        if (geteuid() != 0) {
                print_message("SKIPPED: the cross-uid test needs root\n");
                skip();
        }
        assert_int_equal(chmod(h->dir, 0755), 0);
        broker_with_config(h, "[policy:nobody]\nusers = 65534\ncall = *:*\npublish = #\nsubscribe = #\n");
        assert_int_equal(chmod(h->address, 0666), 0);

        assert_int_equal(harness_child_fork(&kid, echo_as_nobody, h->address), 0);
        assert_true(harness_read_line(kid.report_fd, line, sizeof(line), harness_timeout_ms(HARNESS_TIMEOUT_MS)) >= 0);
        assert_true(strncmp(line, "ready ", 6) == 0);

        assert_int_equal(plx_bus_new(&bus, h->address, "root-caller"), 0);
        for (int round = 0; round < 2; round++) {
                _cleanup_msg_ plx_msg *reply = NULL;
                uint8_t *buf = make_payload(size, (uint8_t)(40 + round));
                const void *p;
                size_t n;

                /* Round 0 is refused, then retried in a memfd; round 1 goes there at once. */
                assert_int_equal(plx_bus_call(bus, line + 6, "Echo", buf, size, PLX_TIMEOUT_DEFAULT, &reply), 0);
                p = plx_msg_get_payload(reply, &n);
                assert_int_equal(n, size);
                assert_true(payload_ok(p, size, (uint8_t)(40 + round)));
                free(buf);
        }
        assert_int_equal(plx_bus_call(bus, line + 6, "Quit", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        assert_int_equal(harness_child_wait(&kid, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        harness_child_close(&kid);
        plx_bus_free(bus);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                SERVICE_TEST(test_sizes_auto),
                SERVICE_TEST(test_paths_forced),
                SERVICE_TEST(test_above_max),
                SERVICE_TEST(test_max_size),
                SERVICE_TEST(test_call_into),
                SERVICE_TEST(test_lent_reply),
                SERVICE_TEST(test_buffer_call),
                SERVICE_TEST(test_fan_out_memfd),
                SERVICE_TEST(test_fan_out_process_vm),
                SERVICE_TEST(test_sender_gone),
                SERVICE_TEST(test_receiver_gone),
                cmocka_unit_test_setup_teardown(test_lease_expired, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_cross_uid, harness_setup, harness_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
