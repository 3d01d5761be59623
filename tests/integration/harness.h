#pragma once

/*
 * Integration test harness: a real plexusd on a temporary socket, client
 * processes, and the checks every test shares.
 *
 * Each test gets its own broker: harness_setup() makes a directory with
 * mkdtemp(), starts $PLEXUSD on "<dir>/bus" and waits (bounded) until it
 * answers a Ping; harness_teardown() stops it with SIGTERM,
 * requires exit status 0, removes the directory and checks that the test
 * process holds exactly the fds it held before setup (wayland's test runner
 * does the same). Tests hold the Harness through cmocka's state pointer.
 *
 * Client processes are forked (HarnessChild). A child never uses cmocka: a
 * failed cmocka assertion would longjmp into the child's copy of the test
 * runner and run the remaining tests twice. Children check with
 * child_assert*() instead, which print the failing expression and _exit()
 * with HARNESS_EXIT_FAILED, and they talk to the parent through two pipes:
 * lines the child reports ("ready :3") and bytes the parent sends.
 *
 * Every wait is bounded: HARNESS_TIMEOUT_MS unless a test says otherwise.
 * The environment may set PLEXUS_TEST_TIMEOUT_SCALE (an integer factor, for
 * valgrind), PLEXUS_TEST_VERBOSE (run plexusd with -v) and
 * PLEXUS_TEST_BROKER_WRAPPER (a command prefix such as "valgrind -q
 * --error-exitcode=99", split on spaces).
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include <plexus/plexus.h>

#define HARNESS_TIMEOUT_MS 10000
#define HARNESS_EXIT_FAILED 99          /* a child's check failed */

typedef struct Harness {
        char dir[256];                  /* from mkdtemp() */
        char address[300];              /* "<dir>/bus" */
        pid_t broker_pid;               /* 0 when not running */
        int n_fds;                      /* open fds before setup */
} Harness;

typedef struct HarnessChild {
        pid_t pid;                      /* 0 once reaped */
        int report_fd;                  /* parent reads what the child reports, or its stdout */
        int control_fd;                 /* parent writes, the child reads; -1 for spawned programs */
        int stderr_fd;                  /* spawned programs only, else -1 */
} HarnessChild;

#define _cleanup_msg_ __attribute__((__cleanup__(plx_msg_unrefp)))
#define _cleanup_bus_ __attribute__((__cleanup__(plx_bus_freep)))

#define HARNESS_CHILD_NULL { .pid = 0, .report_fd = -1, .control_fd = -1, .stderr_fd = -1 }

/* Runs in the child; the return value is its exit code. */
typedef int (*HarnessChildFn)(int report_fd, int control_fd, void *userdata);

int harness_timeout_ms(int ms);
int harness_count_fds(void);
int harness_count_process_fds(pid_t pid);
uint64_t harness_now_ms(void);

int harness_setup(void **state);
int harness_setup_config(void **state, const char *config);
int harness_teardown(void **state);
int harness_prepare(Harness *h);
int harness_cleanup(Harness *h);
int harness_broker_spawn(Harness *h);
int harness_broker_start(Harness *h);
int harness_broker_spawn_args(Harness *h, const char *const *args, int stderr_fd);
int harness_broker_start_args(Harness *h, const char *const *args, int stderr_fd);
int harness_broker_stop(Harness *h);
int harness_broker_signal(Harness *h, int sig);
int harness_broker_pause(Harness *h);
int harness_broker_resume(Harness *h);
int harness_wait_for_broker(const char *address, pid_t pid, int timeout_ms);
const char *harness_plexusd(void);

int harness_child_fork(HarnessChild *ret, HarnessChildFn fn, void *userdata);
int harness_child_spawn(HarnessChild *ret, char *const argv[]);
int harness_child_wait(HarnessChild *c, int timeout_ms);
void harness_child_close(HarnessChild *c);
int harness_status_code(int status);
char harness_process_state(pid_t pid);

int harness_report(int fd, const char *fmt, ...) __attribute__((__format__(printf, 2, 3)));
int harness_read_line(int fd, char *buf, size_t size, int timeout_ms);
ssize_t harness_read_all(int fd, char *buf, size_t size, int timeout_ms);
int harness_write_byte(int fd, char c);
bool harness_poll_byte(int fd, char *ret);

int harness_bus_wait(plx_bus *bus, const bool *done, int timeout_ms);
int harness_bus_drain(plx_bus *bus);
int harness_bus_flush(plx_bus *bus, int timeout_ms);

/*
 * Checks for code running in a forked child. They go to stderr, which meson
 * keeps in the test log, and end the child with HARNESS_EXIT_FAILED.
 */
#define child_fail(...)                                                                 \
        do {                                                                            \
                fprintf(stderr, "%s:%d: child %d: ", __FILE__, __LINE__, (int)getpid()); \
                fprintf(stderr, __VA_ARGS__);                                           \
                fputc('\n', stderr);                                                    \
                _exit(HARNESS_EXIT_FAILED);                                             \
        } while (0)

#define child_assert(expr)                                                              \
        do {                                                                            \
                if (!(expr))                                                            \
                        child_fail("check failed: %s", #expr);                          \
        } while (0)

#define child_assert_int_eq(a, b)                                                       \
        do {                                                                            \
                long long _a = (long long)(a), _b = (long long)(b);                     \
                if (_a != _b)                                                           \
                        child_fail("%s == %lld, expected %s == %lld", #a, _a, #b, _b);  \
        } while (0)
