/*
 * Integration test harness, see harness.h.
 *
 * Processes: the broker is fork+exec'd from $PLEXUSD; client children are
 * plain forks. Both get PR_SET_PDEATHSIG, so a test process that crashes
 * takes its broker and clients with it instead of leaving them to hold
 * meson's output pipes open. Waits for a process use a pidfd where the
 * kernel has one and fall back to short waitpid(WNOHANG) polls otherwise;
 * either way they end at a deadline.
 *
 * All fds the harness creates are O_CLOEXEC, and an exec'd child closes
 * everything above stderr first, so that the broker never holds a test's
 * pipes or sockets (which would hide an EOF the test waits for).
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "harness.h"

/**
 * harness_timeout_ms() - scale a timeout for slow runs
 * @ms:         the timeout for a normal run
 *
 * Return: @ms times $PLEXUS_TEST_TIMEOUT_SCALE (default 1).
 */
int harness_timeout_ms(int ms) {
        const char *e = getenv("PLEXUS_TEST_TIMEOUT_SCALE");
        long scale = e ? strtol(e, NULL, 10) : 1;

        if (scale < 1 || scale > 100)
                scale = 1;
        return (int)(ms * scale);
}

/**
 * harness_now_ms() - monotonic clock in milliseconds
 */
uint64_t harness_now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#define MIN_MS(a, b) ((a) < (b) ? (a) : (b))

static int remaining_ms(uint64_t deadline) {
        uint64_t now = harness_now_ms();

        return now >= deadline ? 0 : (int)(deadline - now);
}

static void sleep_ms(int ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/**
 * harness_count_fds() - number of open fds of this process
 *
 * Return: the count, not including the directory fd used to count.
 */
int harness_count_fds(void) {
        int n = harness_count_process_fds(getpid());

        /* Less the directory's own. */
        return n < 0 ? n : n - 1;
}

/**
 * harness_count_process_fds() - how many fds process @pid has open
 *
 * Return: the count, or negative errno.
 */
int harness_count_process_fds(pid_t pid) {
        char path[64];
        DIR *d;
        struct dirent *de;
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

/**
 * harness_plexusd() - path of the broker under test
 *
 * Return: $PLEXUSD, or NULL if unset.
 */
const char *harness_plexusd(void) {
        const char *e = getenv("PLEXUSD");

        return e && *e ? e : NULL;
}

/**
 * harness_status_code() - map a wait status to one number
 * @status:     from waitpid()
 *
 * Return: the exit code, or 128 + the signal number for a killed process.
 */
int harness_status_code(int status) {
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
        return -EINVAL;
}

/* Reaps @pid within @timeout_ms; on expiry kills it and returns -ETIMEDOUT. */
static int wait_pid(pid_t pid, int timeout_ms) {
        uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
        int status, fd, r;

        fd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (fd >= 0) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };

                do
                        r = poll(&pfd, 1, remaining_ms(deadline));
                while (r < 0 && errno == EINTR);
                close(fd);
                if (r == 0) {
                        kill(pid, SIGKILL);
                        waitpid(pid, NULL, 0);
                        return -ETIMEDOUT;
                }
        } else {
                for (;;) {
                        r = waitpid(pid, &status, WNOHANG);
                        if (r == pid)
                                return harness_status_code(status);
                        if (r < 0)
                                return -errno;
                        if (remaining_ms(deadline) == 0) {
                                kill(pid, SIGKILL);
                                waitpid(pid, NULL, 0);
                                return -ETIMEDOUT;
                        }
                        sleep_ms(2);
                }
        }

        do
                r = waitpid(pid, &status, 0);
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        return harness_status_code(status);
}

/* In a fresh child: undo what the test process changed for itself. */
static void child_reset(int pdeath_signal) {
        sigset_t all;

        prctl(PR_SET_PDEATHSIG, pdeath_signal);
        signal(SIGPIPE, SIG_DFL);
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
}

/**
 * harness_wait_for_broker() - wait until a broker answers
 * @address:    its socket path
 * @pid:        the broker process, or 0; its early exit ends the wait
 * @timeout_ms: the bound
 *
 * Ready means a client completed HELLO and the broker answered a Ping: the
 * broker is in its event loop, not merely listening, so it handles SIGTERM
 * from here on. (A socket that accepts connections is not enough: plexusd
 * listens before it runs.)
 *
 * Return: 0, -ETIMEDOUT, or -ECHILD if @pid exited first.
 */
int harness_wait_for_broker(const char *address, pid_t pid, int timeout_ms) {
        uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;

        for (;;) {
                plx_bus *bus = NULL;
                int r;

                if (pid > 0 && waitpid(pid, NULL, WNOHANG) == pid)
                        return -ECHILD;

                r = plx_bus_new(&bus, address, "harness-probe");
                if (r >= 0) {
                        r = plx_bus_call(bus, PLX_BROKER, "Ping", NULL, 0, 1000 * 1000, NULL);
                        plx_bus_free(bus);
                        if (r >= 0)
                                return 0;
                }
                if (remaining_ms(deadline) == 0)
                        return -ETIMEDOUT;
                sleep_ms(5);
        }
}

/**
 * harness_prepare() - make the temporary directory and pick the address
 * @h:          the harness, zeroed by the caller
 *
 * Return: 0 or a negative errno.
 */
int harness_prepare(Harness *h) {
        const char *tmp = getenv("TMPDIR");

        if (!tmp || !*tmp || strlen(tmp) > 64)
                tmp = "/tmp";
        snprintf(h->dir, sizeof(h->dir), "%s/plexus-test-XXXXXX", tmp);
        if (!mkdtemp(h->dir))
                return -errno;
        snprintf(h->address, sizeof(h->address), "%s/bus", h->dir);
        return 0;
}

/**
 * harness_cleanup() - remove the temporary directory
 * @h:          the harness
 *
 * Removes the files a test may leave there (a socket, a stale file).
 *
 * Return: 0 or a negative errno.
 */
int harness_cleanup(Harness *h) {
        DIR *d;
        struct dirent *de;

        if (!h->dir[0])
                return 0;
        d = opendir(h->dir);
        if (d) {
                while ((de = readdir(d))) {
                        char path[600];

                        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                                continue;
                        snprintf(path, sizeof(path), "%s/%s", h->dir, de->d_name);
                        unlink(path);
                }
                closedir(d);
        }
        if (rmdir(h->dir) < 0)
                return -errno;
        h->dir[0] = 0;
        return 0;
}

/**
 * harness_broker_spawn_args() - fork and exec plexusd with extra arguments
 * @h:          the harness, prepared
 * @args:       NULL-terminated arguments appended to "plexusd -a <address>"
 *              (e.g. "-c", path), or NULL for none; borrowed. The words of
 *              $PLEXUS_TEST_PLEXUSD_ARGS come before them.
 * @stderr_fd:  where the broker's stderr goes, or -1 to share the test's;
 *              borrowed (the broker gets a duplicate)
 *
 * Return: 0, -ENOENT if $PLEXUSD is not set, -E2BIG for too many
 * arguments, or a negative errno.
 */
int harness_broker_spawn_args(Harness *h, const char *const *args, int stderr_fd) {
        const char *plexusd = harness_plexusd();
        const char *wrapper = getenv("PLEXUS_TEST_BROKER_WRAPPER");
        const char *extra = getenv("PLEXUS_TEST_PLEXUSD_ARGS");
        char wrap[512] = "", more[256] = "";
        char *argv[48];
        size_t n = 0;
        pid_t pid;

        if (!plexusd) {
                fprintf(stderr, "PLEXUSD is not set; run the tests through meson test\n");
                return -ENOENT;
        }

        if (wrapper && *wrapper) {
                char *save = NULL;

                snprintf(wrap, sizeof(wrap), "%s", wrapper);
                for (char *w = strtok_r(wrap, " ", &save); w && n < 24; w = strtok_r(NULL, " ", &save))
                        argv[n++] = w;
        }
        argv[n++] = (char *)plexusd;
        argv[n++] = (char *)"-a";
        argv[n++] = h->address;
        if (getenv("PLEXUS_TEST_VERBOSE"))
                argv[n++] = (char *)"-v";
        if (extra && *extra) {
                char *save = NULL;

                /* Options every broker of the test gets, e.g. --no-io-uring (tests/integration/meson.build). */
                snprintf(more, sizeof(more), "%s", extra);
                for (char *w = strtok_r(more, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
                        if (n + 1 >= sizeof(argv) / sizeof(argv[0]))
                                return -E2BIG;
                        argv[n++] = w;
                }
        }
        for (size_t i = 0; args && args[i]; i++) {
                if (n + 1 >= sizeof(argv) / sizeof(argv[0]))
                        return -E2BIG;
                argv[n++] = (char *)args[i];
        }
        argv[n] = NULL;

        fflush(NULL);
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                child_reset(SIGTERM);
                if (stderr_fd >= 0 && dup2(stderr_fd, STDERR_FILENO) < 0)
                        _exit(127);
                close_range(3, ~0U, 0);
                execvp(argv[0], argv);
                fprintf(stderr, "cannot execute %s: %m\n", argv[0]);
                _exit(127);
        }
        h->broker_pid = pid;
        return 0;
}

/**
 * harness_broker_spawn() - fork and exec plexusd on @h->address, no waiting
 * @h:          the harness, prepared
 *
 * Return: as harness_broker_spawn_args().
 */
int harness_broker_spawn(Harness *h) {
        return harness_broker_spawn_args(h, NULL, -1);
}

/**
 * harness_broker_start_args() - harness_broker_start() with extra arguments
 * @h:          the harness, prepared
 * @args:       as for harness_broker_spawn_args()
 * @stderr_fd:  as for harness_broker_spawn_args()
 *
 * Return: as harness_broker_start().
 */
int harness_broker_start_args(Harness *h, const char *const *args, int stderr_fd) {
        int r;

        r = harness_broker_spawn_args(h, args, stderr_fd);
        if (r < 0)
                return r;

        r = harness_wait_for_broker(h->address, h->broker_pid, harness_timeout_ms(HARNESS_TIMEOUT_MS));
        if (r < 0) {
                fprintf(stderr, "broker on %s did not come up: %s\n", h->address, strerror(-r));
                if (r == -ECHILD)
                        h->broker_pid = 0;      /* reaped by harness_wait_for_broker() */
                else
                        harness_broker_stop(h);
                return r;
        }
        return 0;
}

/**
 * harness_broker_start() - start plexusd on @h->address and wait for it
 * @h:          the harness, prepared
 *
 * Return: 0, -ENOENT if $PLEXUSD is not set, -ECHILD if the broker exited,
 * -ETIMEDOUT.
 */
int harness_broker_start(Harness *h) {
        return harness_broker_start_args(h, NULL, -1);
}

/**
 * harness_process_state() - the state letter of /proc/@pid/stat ('T' once stopped), 0 if unreadable
 */
char harness_process_state(pid_t pid) {
        char path[64], buf[512], *p;
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return 0;
        buf[n] = 0;
        p = strrchr(buf, ')');
        return p && p[1] == ' ' ? p[2] : 0;
}

/**
 * harness_broker_pause() - SIGSTOP the broker and wait until it is stopped
 *
 * What clients write meanwhile waits in their sockets, and the broker reads
 * it all at once after harness_broker_resume().
 *
 * Return: 0, or -ETIMEDOUT.
 */
int harness_broker_pause(Harness *h) {
        uint64_t deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);

        if (kill(h->broker_pid, SIGSTOP) < 0)
                return -errno;
        while (harness_process_state(h->broker_pid) != 'T') {
                if (harness_now_ms() > deadline)
                        return -ETIMEDOUT;
                usleep(1000);
        }
        return 0;
}

/**
 * harness_broker_resume() - SIGCONT the broker
 *
 * Return: 0 or negative errno.
 */
int harness_broker_resume(Harness *h) {
        return kill(h->broker_pid, SIGCONT) < 0 ? -errno : 0;
}

/**
 * harness_broker_signal() - send @sig to the broker and reap it, bounded
 * @h:          the harness
 * @sig:        the signal, or 0 to only wait for an exit already under way
 *
 * Return: its exit code (128 + signal if killed), -ETIMEDOUT if it had to
 * be killed, -ESRCH if none was running.
 */
int harness_broker_signal(Harness *h, int sig) {
        pid_t pid = h->broker_pid;

        if (pid <= 0)
                return -ESRCH;
        h->broker_pid = 0;
        if (sig > 0)
                kill(pid, sig);
        return wait_pid(pid, harness_timeout_ms(HARNESS_TIMEOUT_MS));
}

/**
 * harness_broker_stop() - SIGTERM the broker and reap it
 * @h:          the harness
 *
 * A stopped (SIGSTOP) broker is continued first.
 *
 * Return: as harness_broker_signal().
 */
int harness_broker_stop(Harness *h) {
        if (h->broker_pid > 0)
                kill(h->broker_pid, SIGCONT);
        return harness_broker_signal(h, SIGTERM);
}

/**
 * harness_setup() - cmocka setup: a fresh broker for one test
 * @state:      receives the Harness
 *
 * Also points $PLEXUS_BUS_ADDRESS at the broker, so plx_bus_new(NULL) and
 * spawned programs find it.
 *
 * Return: 0 or -1.
 */
int harness_setup(void **state) {
        return harness_setup_config(state, NULL);
}

/**
 * harness_setup_config() - harness_setup() with a configuration file
 * @state:      receives the Harness
 * @config:     the text of plexusd.conf, written to the test's directory and
 *              passed with -c; NULL to run the broker without -c
 *
 * Return: 0 or -1.
 */
int harness_setup_config(void **state, const char *config) {
        char path[400];
        Harness *h;
        int r;

        signal(SIGPIPE, SIG_IGN);

        h = calloc(1, sizeof(*h));
        if (!h)
                return -1;
        h->n_fds = harness_count_fds();

        r = harness_prepare(h);
        if (r < 0) {
                fprintf(stderr, "mkdtemp: %s\n", strerror(-r));
                free(h);
                return -1;
        }
        if (config) {
                FILE *c;

                snprintf(path, sizeof(path), "%s/plexusd.conf", h->dir);
                c = fopen(path, "we");
                if (!c || fputs(config, c) < 0 || fclose(c) != 0) {
                        fprintf(stderr, "cannot write %s\n", path);
                        harness_cleanup(h);
                        free(h);
                        return -1;
                }
        }
        r = harness_broker_start_args(h, config ? (const char *[]) { "-c", path, NULL } : NULL, -1);
        if (r < 0) {
                harness_cleanup(h);
                free(h);
                return -1;
        }
        setenv("PLEXUS_BUS_ADDRESS", h->address, 1);
        *state = h;
        return 0;
}

/**
 * harness_teardown() - cmocka teardown: stop the broker, check for leaks
 * @state:      the Harness from harness_setup()
 *
 * Fails if the broker does not exit 0 on SIGTERM or if the test process
 * holds more or fewer fds than before harness_setup().
 *
 * Return: 0 or -1.
 */
int harness_teardown(void **state) {
        Harness *h = *state;
        int r, n, ret = 0;

        if (!h)
                return 0;

        if (h->broker_pid > 0) {
                r = harness_broker_stop(h);
                if (r != 0) {
                        fprintf(stderr, "teardown: broker exit status %d, expected 0\n", r);
                        ret = -1;
                }
        }
        unsetenv("PLEXUS_BUS_ADDRESS");
        harness_cleanup(h);

        n = harness_count_fds();
        if (n != h->n_fds) {
                fprintf(stderr, "teardown: %d fds open, %d before the test: leaked fds\n", n, h->n_fds);
                ret = -1;
        }
        free(h);
        *state = NULL;
        return ret;
}

/* Two close-on-exec pipes, then fork(); on failure nothing is left open. */
static int fork_with_pipes(int a[2], int b[2], pid_t *ret_pid) {
        int r;

        if (pipe2(a, O_CLOEXEC) < 0)
                return -errno;
        if (pipe2(b, O_CLOEXEC) < 0) {
                r = -errno;
                goto close_a;
        }
        fflush(NULL);
        *ret_pid = fork();
        if (*ret_pid >= 0)
                return 0;
        r = -errno;
        close(b[0]);
        close(b[1]);
close_a:
        close(a[0]);
        close(a[1]);
        return r;
}

/**
 * harness_child_fork() - run @fn in a child process
 * @ret:        the child, written on success
 * @fn:         runs in the child; its return value is the exit code
 * @userdata:   handed to @fn
 *
 * Return: 0 or a negative errno.
 */
int harness_child_fork(HarnessChild *ret, HarnessChildFn fn, void *userdata) {
        int report[2], control[2];
        pid_t pid;
        int r;

        r = fork_with_pipes(report, control, &pid);
        if (r < 0)
                return r;
        if (pid == 0) {
                child_reset(SIGKILL);
                close(report[0]);
                close(control[1]);
                _exit(fn(report[1], control[0], userdata));
        }

        close(report[1]);
        close(control[0]);
        *ret = (HarnessChild) {
                .pid = pid,
                .report_fd = report[0],
                .control_fd = control[1],
                .stderr_fd = -1,
        };
        return 0;
}

/**
 * harness_child_spawn() - run a program with its stdout and stderr piped
 * @ret:        the child; report_fd reads its stdout, stderr_fd its stderr
 * @argv:       program path and arguments
 *
 * The child inherits the environment, so set $PLEXUS_BUS_ADDRESS first.
 *
 * Return: 0 or a negative errno.
 */
int harness_child_spawn(HarnessChild *ret, char *const argv[]) {
        int out[2], err[2];
        pid_t pid;
        int r;

        r = fork_with_pipes(out, err, &pid);
        if (r < 0)
                return r;
        if (pid == 0) {
                child_reset(SIGKILL);
                if (dup2(out[1], STDOUT_FILENO) < 0 || dup2(err[1], STDERR_FILENO) < 0)
                        _exit(127);
                close_range(3, ~0U, 0);
                execv(argv[0], argv);
                fprintf(stderr, "cannot execute %s: %m\n", argv[0]);
                _exit(127);
        }

        close(out[1]);
        close(err[1]);
        *ret = (HarnessChild) {
                .pid = pid,
                .report_fd = out[0],
                .control_fd = -1,
                .stderr_fd = err[0],
        };
        return 0;
}

/**
 * harness_child_close() - close the parent's ends of the child's pipes
 * @c:          the child
 */
void harness_child_close(HarnessChild *c) {
        if (c->report_fd >= 0)
                close(c->report_fd);
        if (c->control_fd >= 0)
                close(c->control_fd);
        if (c->stderr_fd >= 0)
                close(c->stderr_fd);
        c->report_fd = c->control_fd = c->stderr_fd = -1;
}

/**
 * harness_child_wait() - reap a child within a bound, close its pipes
 * @c:          the child; a child already reaped gives -ESRCH
 * @timeout_ms: the bound; the child is killed when it expires
 *
 * Return: the exit code (128 + signal if killed), -ETIMEDOUT, -ESRCH.
 */
int harness_child_wait(HarnessChild *c, int timeout_ms) {
        pid_t pid = c->pid;

        harness_child_close(c);
        if (pid <= 0)
                return -ESRCH;
        c->pid = 0;
        return wait_pid(pid, timeout_ms);
}

/**
 * harness_report() - write one line to the parent (child side)
 * @fd:         the report fd
 * @fmt:        printf format; a newline is appended
 *
 * Return: 0 or a negative errno.
 */
int harness_report(int fd, const char *fmt, ...) {
        char line[512];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= sizeof(line) - 1)
                return -EINVAL;
        line[n++] = '\n';
        /* Pipe writes up to PIPE_BUF are atomic, so the line arrives whole. */
        if (write(fd, line, (size_t)n) != n)
                return -EIO;
        return 0;
}

static int wait_readable(int fd, uint64_t deadline) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int r;

        do
                r = poll(&pfd, 1, remaining_ms(deadline));
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        return r == 0 ? -ETIMEDOUT : 0;
}

/**
 * harness_read_line() - read one line, bounded
 * @fd:         a pipe
 * @buf:        receives the line without its newline, NUL-terminated
 * @size:       capacity of @buf
 * @timeout_ms: the bound
 *
 * Return: the line length; -ENODATA at EOF before any byte, -ETIMEDOUT,
 * -ENOBUFS if the line does not fit. A last line without newline is
 * returned as it is.
 */
int harness_read_line(int fd, char *buf, size_t size, int timeout_ms) {
        uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
        size_t n = 0;

        for (;;) {
                ssize_t l;
                char c;
                int r;

                if (n + 1 >= size)
                        return -ENOBUFS;
                r = wait_readable(fd, deadline);
                if (r < 0) {
                        buf[n] = 0;
                        return r;
                }
                l = read(fd, &c, 1);
                if (l < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                if (l == 0) {
                        buf[n] = 0;
                        return n > 0 ? (int)n : -ENODATA;
                }
                if (c == '\n') {
                        buf[n] = 0;
                        return (int)n;
                }
                buf[n++] = c;
        }
}

/**
 * harness_read_all() - read until EOF, bounded
 * @fd:         a pipe
 * @buf:        receives the bytes, NUL-terminated
 * @size:       capacity of @buf
 * @timeout_ms: the bound
 *
 * Return: the number of bytes, -ETIMEDOUT, -ENOBUFS if they do not fit.
 */
ssize_t harness_read_all(int fd, char *buf, size_t size, int timeout_ms) {
        uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
        size_t n = 0;

        for (;;) {
                ssize_t l;
                int r;

                if (n + 1 >= size)
                        return -ENOBUFS;
                r = wait_readable(fd, deadline);
                if (r < 0) {
                        buf[n] = 0;
                        return r;
                }
                l = read(fd, buf + n, size - 1 - n);
                if (l < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                if (l == 0) {
                        buf[n] = 0;
                        return (ssize_t)n;
                }
                n += (size_t)l;
        }
}

/**
 * harness_write_byte() - send one byte on a control pipe
 *
 * Return: 0 or a negative errno.
 */
int harness_write_byte(int fd, char c) {
        return write(fd, &c, 1) == 1 ? 0 : -EIO;
}

/**
 * harness_poll_byte() - take one byte from a control pipe if there is one
 * @fd:         the pipe
 * @ret:        receives the byte; EOF reads as 'q'
 *
 * Return: true if a byte (or EOF) was there.
 */
bool harness_poll_byte(int fd, char *ret) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        ssize_t l;

        if (poll(&pfd, 1, 0) <= 0)
                return false;
        l = read(fd, ret, 1);
        if (l == 0)
                *ret = 'q';
        return l >= 0;
}

/**
 * harness_bus_wait() - drive @bus until *@done, bounded
 * @bus:        the connection
 * @done:       set by a callback
 * @timeout_ms: the bound
 *
 * Uses the foreign-loop API: get_fd/get_events/get_timeout/process.
 *
 * Return: 0 once *@done, -ETIMEDOUT, or the error of plx_bus_process().
 */
int harness_bus_wait(plx_bus *bus, const bool *done, int timeout_ms) {
        uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;

        while (!*done) {
                struct pollfd pfd;
                int r, ms;

                r = plx_bus_process(bus);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;

                if (remaining_ms(deadline) == 0)
                        return -ETIMEDOUT;
                r = plx_bus_get_timeout(bus, &ms);
                if (r < 0)
                        return r;
                if (ms < 0 || ms > remaining_ms(deadline))
                        ms = remaining_ms(deadline);
                pfd = (struct pollfd) { .fd = plx_bus_get_fd(bus), .events = (short)plx_bus_get_events(bus) };
                if (pfd.fd < 0)
                        return pfd.fd;
                if (poll(&pfd, 1, ms) < 0 && errno != EINTR)
                        return -errno;
        }
        return 0;
}

/**
 * harness_bus_drain() - dispatch what is ready now, without waiting
 * @bus:        the connection
 *
 * Return: 0 or the error of plx_bus_process().
 */
int harness_bus_drain(plx_bus *bus) {
        int r;

        while ((r = plx_bus_process(bus)) > 0)
                ;
        return r;
}

/**
 * harness_bus_flush() - write out the outgoing queue, bounded
 * @bus:        the connection
 * @timeout_ms: the bound
 *
 * Unlike plx_bus_flush() this cannot block forever on a broker that does
 * not read; received messages are dispatched meanwhile.
 *
 * Return: 0 once nothing is queued, -ETIMEDOUT, or a negative errno.
 */
int harness_bus_flush(plx_bus *bus, int timeout_ms) {
        uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;

        for (;;) {
                struct pollfd pfd;
                int r;

                r = plx_bus_get_events(bus);
                if (r < 0)
                        return r;
                if (!(r & POLLOUT))
                        return 0;

                r = plx_bus_process(bus);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;
                if (remaining_ms(deadline) == 0)
                        return -ETIMEDOUT;
                pfd = (struct pollfd) { .fd = plx_bus_get_fd(bus), .events = (short)plx_bus_get_events(bus) };
                if (poll(&pfd, 1, MIN_MS(remaining_ms(deadline), 100)) < 0 && errno != EINTR)
                        return -errno;
        }
}
