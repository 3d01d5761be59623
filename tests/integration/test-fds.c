/*
 * File descriptors through a real broker, and the credentials it stamps.
 *
 * A forked "fd service" reads, writes and maps what it is sent and answers
 * with fds of its own; subscribers in separate processes each get a working
 * duplicate of a published fd. Leaks are looked for where they would hide:
 * the broker's /proc/PID/fd and every client's /proc/self/fd are counted
 * before and after 1,000 fd-carrying messages, after frames dropped at a
 * slow subscriber's fd quota (max_queue_fds), and after frames whose fds the
 * broker could not take in (MSG_CTRUNC, provoked by lowering the running
 * broker's RLIMIT_NOFILE with prlimit(2): plexusd raises its soft limit to
 * the hard one at start, so both are lowered once it runs). The same trick
 * makes accept() fail with EMFILE: connections wait in the backlog while
 * existing clients are served, and are accepted once a client leaves.
 * Unprivileged senders (a per-user bus) also meet the kernel's limit on fds
 * in flight (ETOOMANYREFS), which must cost one frame, not a connection.
 *
 * Credentials: sender, uid, gid and pid of every delivered frame are the
 * sending process's, whatever a raw client writes into those header fields.
 */

#include <dirent.h>
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "fdpass.h"
#include "harness.h"
#include "raw.h"

#define ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))
#define TIMEOUT_MS harness_timeout_ms(HARNESS_TIMEOUT_MS)

/* --- Small helpers ---------------------------------------------------------- */

static int make_memfd(const char *content) {
        int fd = memfd_create("plexus-test", MFD_CLOEXEC);

        if (fd < 0)
                return -errno;
        if (write(fd, content, strlen(content)) != (ssize_t)strlen(content)) {
                close(fd);
                return -EIO;
        }
        return fd;
}

/* The whole content of a seekable fd, read with pread() (no shared offset). */
static ssize_t pread_all(int fd, char *buf, size_t size) {
        ssize_t n = pread(fd, buf, size - 1, 0);

        if (n < 0)
                return -errno;
        buf[n] = 0;
        return n;
}

/*
 * Read a pipe until EOF, bounded. An fd that leaked somewhere keeps a write
 * end open, so EOF never comes: read() only once poll() says it will not
 * block, and fail when the time is up rather than block in read() until
 * meson's timeout kills the whole test program.
 */
static ssize_t read_to_eof(int fd, char *buf, size_t size, int timeout_ms) {
        uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
        size_t n = 0;

        for (;;) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                uint64_t now = harness_now_ms();
                ssize_t l;
                int r;

                if (now >= deadline)
                        return -ETIMEDOUT;
                r = poll(&pfd, 1, (int)(deadline - now));
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r == 0)
                        return -ETIMEDOUT;
                l = read(fd, buf + n, size - 1 - n);
                if (l < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                continue;
                        return -errno;
                }
                if (l == 0)
                        break;
                n += (size_t)l;
                if (n >= size - 1)
                        return -ENOBUFS;
        }
        buf[n] = 0;
        return (ssize_t)n;
}

static bool fd_is_cloexec(int fd) {
        int flags = fcntl(fd, F_GETFD);

        return flags >= 0 && (flags & FD_CLOEXEC);
}

static bool same_file(int a, int b) {
        struct stat sa, sb;

        return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Open fds of @pid; with @max_fd >= 0 only those numbered below it. */
static int count_pid_fds_below(pid_t pid, int max_fd) {
        char path[64];
        struct dirent *de;
        DIR *d;
        int n = 0;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
        d = opendir(path);
        if (!d)
                return -errno;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.' && (max_fd < 0 || atoi(de->d_name) < max_fd))
                        n++;
        closedir(d);
        return n;
}

static int count_pid_fds(pid_t pid) {
        return count_pid_fds_below(pid, -1);
}

/*
 * Wait (bounded) until the broker holds @expected fds: it closes its copies
 * as it routes, which may lag our view by a loop iteration.
 */
static int broker_fds_settle(Harness *h, int expected) {
        uint64_t deadline = harness_now_ms() + (uint64_t)TIMEOUT_MS;
        int n;

        for (;;) {
                n = count_pid_fds(h->broker_pid);
                if (n == expected || harness_now_ms() >= deadline)
                        return n;
                usleep(10 * 1000);
        }
}

/* Wait (bounded) until the broker holds at most @max fds; returns the last count. */
static int broker_fds_settle_at_most(Harness *h, int max) {
        uint64_t deadline = harness_now_ms() + (uint64_t)TIMEOUT_MS;
        int n;

        for (;;) {
                n = count_pid_fds(h->broker_pid);
                if (n <= max || harness_now_ms() >= deadline)
                        return n;
                usleep(10 * 1000);
        }
}

#define assert_broker_fds(h, expected)                                                          \
        do {                                                                                    \
                int _n = broker_fds_settle((h), (expected));                                    \
                if (_n != (expected))                                                           \
                        fail_msg("broker holds %d fds, expected %d: leaked or lost", _n, (expected)); \
        } while (0)

/*
 * Lower the running broker's RLIMIT_NOFILE (soft and hard) so that exactly
 * @n_free more fds fit. The limit bounds fd numbers, not counts, so the
 * free slots below each candidate limit are counted (fds above it, e.g.
 * valgrind's own, stay open and do not matter).
 *
 * Return: the limit set.
 */
static int broker_limit_fds(Harness *h, int n_free) {
        struct rlimit rl;

        for (int limit = 1; limit < 65536; limit++) {
                int used = count_pid_fds_below(h->broker_pid, limit);

                assert_true(used >= 0);
                if (limit - used < n_free)
                        continue;
                rl = (struct rlimit) { .rlim_cur = (rlim_t)limit, .rlim_max = (rlim_t)limit };
                if (prlimit(h->broker_pid, RLIMIT_NOFILE, &rl, NULL) < 0)
                        fail_msg("prlimit(%d, RLIMIT_NOFILE, %d): %m", (int)h->broker_pid, limit);
                return limit;
        }
        fail_msg("no fd limit leaves %d free", n_free);
        return -1;
}

/* utime + stime of @pid in clock ticks. */
static long cpu_ticks(pid_t pid) {
        char path[64], buf[1024], *p;
        unsigned long utime, stime;
        int fd;
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return -1;
        buf[n] = 0;
        /* Fields after the command name, which may hold spaces: state is field 3, utime 14. */
        p = strrchr(buf, ')');
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
                return -1;
        return (long)(utime + stime);
}

/* Call @member; copy the reply (or error message) to @out. */
static int call_text(plx_bus *bus, const char *destination, const char *member, const char *payload,
                     const int *fds, size_t n_fds, char *out, size_t size) {
        _cleanup_msg_ plx_msg *reply = NULL;
        const void *p;
        size_t n;
        int r;

        r = plx_bus_call_with_fds(bus, destination, member, payload, payload ? strlen(payload) : 0, fds, n_fds,
                                  PLX_TIMEOUT_DEFAULT, &reply);
        if (out)
                out[0] = 0;
        if (!reply || !out)
                return r;
        if (r == -EREMOTEIO) {
                snprintf(out, size, "%s: %s", plx_msg_get_error_name(reply), plx_msg_get_error_message(reply));
                return r;
        }
        p = plx_msg_get_payload(reply, &n);
        snprintf(out, size, "%.*s", (int)n, (const char *)p);
        return r;
}

#define assert_call_text(bus, dest, member, payload, fds, n_fds, expected)                      \
        do {                                                                                    \
                char _out[512];                                                                 \
                int _r = call_text((bus), (dest), (member), (payload), (fds), (n_fds), _out, sizeof(_out)); \
                if (_r != 0)                                                                    \
                        fail_msg("%s: %d (%s)", (member), _r, _out);                            \
                assert_string_equal(_out, (expected));                                          \
        } while (0)

/* The ERROR name of a call expected to fail with -EREMOTEIO. */
static void assert_call_error(plx_bus *bus, const char *destination, const char *member, const int *fds,
                              size_t n_fds, const char *error_name) {
        _cleanup_msg_ plx_msg *reply = NULL;
        int r;

        r = plx_bus_call_with_fds(bus, destination, member, NULL, 0, fds, n_fds, PLX_TIMEOUT_DEFAULT, &reply);
        if (r != -EREMOTEIO)
                fail_msg("%s with %zu fds: %d, expected -EREMOTEIO (%s)", member, n_fds, r, error_name);
        assert_string_equal(plx_msg_get_error_name(reply), error_name);
}

typedef struct Errors {
        unsigned n_queue_full;
        unsigned n_fds_rejected;
        unsigned n_other;
        char other[256];
        bool done;
} Errors;

static int on_error(plx_msg *error, void *userdata) {
        Errors *e = userdata;
        const char *name = plx_msg_get_error_name(error);

        if (strcmp(name, PLX_ERROR_QUEUE_FULL) == 0) {
                e->n_queue_full++;
        } else if (strcmp(name, PLX_ERROR_FDS_REJECTED) == 0) {
                e->n_fds_rejected++;
        } else {
                e->n_other++;
                snprintf(e->other, sizeof(e->other), "%s: %s", name, plx_msg_get_error_message(error));
        }
        e->done = true;
        return 0;
}

/* Round trip through the broker: every frame we sent before is routed after this. */
static void sync_bus(plx_bus *bus) {
        assert_int_equal(plx_bus_call(bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
}

/* --- The fd service (child) --------------------------------------------------- */

typedef struct FdService {
        plx_bus *bus;
        int report_fd;
        unsigned n_calls;               /* calls received, any member */
        unsigned n_signals;             /* signals on "fds/#" */
        size_t last_signal_n_fds;
        bool signals_ok;                /* every signal's fds were open, CLOEXEC and as described */
} FdService;

/* Each fd of @m open and close-on-exec (libplexus receives with MSG_CMSG_CLOEXEC). */
static bool msg_fds_ok(plx_msg *m) {
        for (size_t i = 0; i < plx_msg_get_n_fds(m); i++)
                if (plx_msg_get_fd(m, i) < 0 || !fd_is_cloexec(plx_msg_get_fd(m, i)))
                        return false;
        return true;
}

/* With payload "indexed", fd i of @m must read "fd <i>". */
static bool msg_fds_indexed(plx_msg *m) {
        for (size_t i = 0; i < plx_msg_get_n_fds(m); i++) {
                char buf[64], want[32];

                snprintf(want, sizeof(want), "fd %zu", i);
                if (pread_all(plx_msg_get_fd(m, i), buf, sizeof(buf)) < 0 || strcmp(buf, want) != 0)
                        return false;
        }
        return true;
}

static bool payload_is(plx_msg *m, const char *s) {
        size_t n;
        const void *p = plx_msg_get_payload(m, &n);

        return n == strlen(s) && memcmp(p, s, n) == 0;
}

static int reply_text(plx_msg *call, const char *fmt, ...) {
        char text[1024];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        return plx_msg_reply(call, text, (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1);
}

/* Read: each fd's content (pread if seekable, else to EOF), joined by '|'. */
static int on_read(plx_msg *call, void *userdata) {
        char out[4096] = "", buf[1024];

        for (size_t i = 0; i < plx_msg_get_n_fds(call); i++) {
                int fd = plx_msg_get_fd(call, i);
                ssize_t n;

                if (lseek(fd, 0, SEEK_CUR) >= 0)
                        n = pread_all(fd, buf, sizeof(buf));
                else
                        n = read_to_eof(fd, buf, sizeof(buf), TIMEOUT_MS);
                if (n < 0)
                        return plx_msg_reply_error(call, PLX_ERROR_FAILED, strerror((int)-n));
                if (i)
                        strcat(out, "|");
                strncat(out, buf, sizeof(out) - strlen(out) - 2);
        }
        return reply_text(call, "%s", out);
}

/* Write: the payload into fd 0 (a pipe's write end), which is taken and closed. */
static int on_write(plx_msg *call, void *userdata) {
        const void *p;
        size_t n;
        int fd = plx_msg_take_fd(call, 0);
        ssize_t l;

        if (fd < 0)
                return plx_msg_reply_error(call, PLX_ERROR_INVALID_ARGS, "no fd");
        p = plx_msg_get_payload(call, &n);
        l = write(fd, p, n);
        close(fd);
        if (l != (ssize_t)n)
                return plx_msg_reply_error(call, PLX_ERROR_FAILED, "short write");
        return plx_msg_reply(call, NULL, 0);
}

/* Map: fd 0 is a memfd holding the payload; upper-case it through a shared mapping. */
static int on_map(plx_msg *call, void *userdata) {
        int fd = plx_msg_get_fd(call, 0);
        struct stat st;
        const void *p;
        size_t n;
        char *m;

        p = plx_msg_get_payload(call, &n);
        if (fd < 0 || fstat(fd, &st) < 0 || (size_t)st.st_size != n)
                return plx_msg_reply_error(call, PLX_ERROR_INVALID_ARGS, "no memfd of the payload's size");
        m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED)
                return plx_msg_reply_error(call, PLX_ERROR_FAILED, strerror(errno));
        if (memcmp(m, p, n) != 0) {
                munmap(m, n);
                return plx_msg_reply_error(call, PLX_ERROR_FAILED, "content differs");
        }
        for (size_t i = 0; i < n; i++)
                if (m[i] >= 'a' && m[i] <= 'z')
                        m[i] = (char)(m[i] - 'a' + 'A');
        munmap(m, n);
        return reply_text(call, "mapped %zu", n);
}

/* Make: reply with a memfd holding the payload and a pipe to read "through the pipe" from. */
static int on_make(plx_msg *call, void *userdata) {
        char content[256];
        const void *p;
        size_t n;
        int fds[2], pipefd[2], r;

        p = plx_msg_get_payload(call, &n);
        snprintf(content, sizeof(content), "%.*s", (int)n, (const char *)p);
        fds[0] = make_memfd(content);
        if (fds[0] < 0)
                return fds[0];
        if (pipe2(pipefd, O_CLOEXEC) < 0) {
                close(fds[0]);
                return -errno;
        }
        r = write(pipefd[1], "through the pipe", 16) == 16 ? 0 : -EIO;
        close(pipefd[1]);
        fds[1] = pipefd[0];
        if (r == 0)
                r = plx_msg_reply_with_fds(call, "made", 4, fds, 2);
        /* The reply borrowed them: the caller gets duplicates. */
        close(fds[0]);
        close(fds[1]);
        return r;
}

/* EchoFds: the call's fds back, after checking them ("indexed": by content). */
static int on_echo_fds(plx_msg *call, void *userdata) {
        int fds[PLX_FDS_MAX];
        size_t n = plx_msg_get_n_fds(call);

        if (!msg_fds_ok(call))
                return plx_msg_reply_error(call, PLX_ERROR_FAILED, "an fd is closed or not close-on-exec");
        if (payload_is(call, "indexed") && !msg_fds_indexed(call))
                return plx_msg_reply_error(call, PLX_ERROR_FAILED, "fds out of order or wrong content");
        for (size_t i = 0; i < n; i++)
                fds[i] = plx_msg_get_fd(call, i);
        return plx_msg_reply_with_fds(call, "echo", 4, fds, n);
}

/* NFds: how many fds came, and whether all work. */
static int on_n_fds(plx_msg *call, void *userdata) {
        return reply_text(call, "%zu %s", plx_msg_get_n_fds(call), msg_fds_ok(call) ? "ok" : "bad");
}

static int on_count_fds(plx_msg *call, void *userdata) {
        return reply_text(call, "%d", harness_count_fds());
}

/* Stats: calls received before this one, signals, fds of the last signal, all ok. */
static int on_stats(plx_msg *call, void *userdata) {
        FdService *s = userdata;

        return reply_text(call, "%u %u %zu %s", s->n_calls - 1, s->n_signals, s->last_signal_n_fds,
                          s->signals_ok ? "ok" : "bad");
}

static int on_whoami(plx_msg *call, void *userdata) {
        return reply_text(call, "%s %u %u %d", plx_msg_get_sender(call), (unsigned)plx_msg_get_sender_uid(call),
                          (unsigned)plx_msg_get_sender_gid(call), (int)plx_msg_get_sender_pid(call));
}

static int on_quit(plx_msg *call, void *userdata) {
        FdService *s = userdata;

        plx_bus_exit(s->bus, 0);
        return plx_msg_reply(call, NULL, 0);
}

static int on_fds_signal(plx_msg *m, void *userdata) {
        FdService *s = userdata;
        size_t n = plx_msg_get_n_fds(m);
        int fd;

        s->n_signals++;
        s->last_signal_n_fds = n;
        if (!msg_fds_ok(m) || (payload_is(m, "indexed") && !msg_fds_indexed(m)))
                s->signals_ok = false;
        /* Take one and close it; the rest go with the message. */
        if (n > 0) {
                fd = plx_msg_take_fd(m, 0);
                if (fd < 0 || plx_msg_take_fd(m, 0) != -EBADF)
                        s->signals_ok = false;
                close(fd);
        }
        return 0;
}

typedef struct Method {
        const char *member;
        plx_method_fn fn;
} Method;

static const Method fd_methods[] = {
        { "Read", on_read },
        { "Write", on_write },
        { "Map", on_map },
        { "Make", on_make },
        { "EchoFds", on_echo_fds },
        { "NFds", on_n_fds },
        { "CountFds", on_count_fds },
        { "Stats", on_stats },
        { "Whoami", on_whoami },
        { "Quit", on_quit },
};

/* Counts every call before the member's own handler runs. */
static int on_any(plx_msg *call, void *userdata) {
        FdService *s = userdata;
        const char *member = plx_msg_get_member(call);

        s->n_calls++;
        for (size_t i = 0; i < ELEMENTS(fd_methods); i++)
                if (strcmp(member, fd_methods[i].member) == 0)
                        return fd_methods[i].fn(call, s);
        return plx_msg_reply_error(call, PLX_ERROR_UNKNOWN_METHOD, member);
}

static int fd_service_main(int report_fd, int control_fd, void *userdata) {
        FdService s = { .report_fd = report_fd, .signals_ok = true };
        int r;

        r = plx_bus_new(&s.bus, userdata, "fd-service");
        if (r < 0)
                child_fail("fd service: plx_bus_new: %s", strerror(-r));
        for (size_t i = 0; i < ELEMENTS(fd_methods); i++) {
                r = plx_bus_add_method(s.bus, NULL, fd_methods[i].member, on_any, &s);
                if (r < 0)
                        child_fail("fd service: add_method: %s", strerror(-r));
        }
        r = plx_bus_subscribe(s.bus, NULL, "fds/#", on_fds_signal, &s);
        if (r < 0)
                child_fail("fd service: subscribe: %s", strerror(-r));
        harness_report(report_fd, "ready %s", plx_bus_get_unique_id(s.bus));

        r = plx_bus_run(s.bus);
        if (r == 0)
                r = plx_bus_flush(s.bus);
        plx_bus_free(s.bus);
        if (r < 0 && r != -ECONNRESET)
                child_fail("fd service: plx_bus_run: %s", strerror(-r));
        return 0;
}

/* --- Fixture: broker, fd service, own connection -------------------------------- */

typedef struct Fixture {
        Harness *h;
        HarnessChild service;
        char service_id[128];
        HarnessChild children[4];       /* a test's own; killed by the teardown if still running */
        plx_bus *bus;
} Fixture;

/*
 * Broker, fd service and own connection. @config: the broker's configuration
 * file, or NULL for none. @broker_uid: when running as root, the uid (and
 * gid) to run the broker as, through setpriv(1); 0 to run it as we are.
 * @broker_nofile: an RLIMIT_NOFILE (soft and hard) to start it with, through
 * prlimit(1); 0 for ours. Both go before any $PLEXUS_TEST_BROKER_WRAPPER.
 */
static int fixture_start(void **state, const char *config, uid_t broker_uid, int broker_nofile) {
        Fixture *f = calloc(1, sizeof(*f));
        char path[400], line[128], wrapper[600];
        const char *old_wrapper;
        int r;

        if (!f)
                return -1;
        f->service = (HarnessChild) HARNESS_CHILD_NULL;
        for (size_t i = 0; i < ELEMENTS(f->children); i++)
                f->children[i] = (HarnessChild) HARNESS_CHILD_NULL;
        *state = f;
        signal(SIGPIPE, SIG_IGN);

        f->h = calloc(1, sizeof(*f->h));
        if (!f->h)
                return -1;
        f->h->n_fds = harness_count_fds();
        r = harness_prepare(f->h);
        if (r < 0) {
                fprintf(stderr, "mkdtemp: %s\n", strerror(-r));
                return -1;
        }
        if (config) {
                FILE *c;

                snprintf(path, sizeof(path), "%s/plexusd.conf", f->h->dir);
                c = fopen(path, "we");
                if (!c || fputs(config, c) < 0 || fclose(c) != 0) {
                        fprintf(stderr, "cannot write %s\n", path);
                        return -1;
                }
        }
        old_wrapper = getenv("PLEXUS_TEST_BROKER_WRAPPER");
        old_wrapper = old_wrapper ? strdupa(old_wrapper) : NULL;
        if (broker_uid || broker_nofile) {
                size_t n = 0;

                /* Its socket directory must be its own; the files in it stay readable. */
                if (broker_uid && chown(f->h->dir, broker_uid, broker_uid) < 0)
                        return -1;
                wrapper[0] = 0;
                if (broker_uid)
                        n += (size_t)snprintf(wrapper + n, sizeof(wrapper) - n,
                                              "setpriv --reuid=%u --regid=%u --clear-groups ",
                                              (unsigned)broker_uid, (unsigned)broker_uid);
                if (broker_nofile)
                        n += (size_t)snprintf(wrapper + n, sizeof(wrapper) - n, "prlimit --nofile=%d:%d ",
                                              broker_nofile, broker_nofile);
                snprintf(wrapper + n, sizeof(wrapper) - n, "%s", old_wrapper ? old_wrapper : "");
                setenv("PLEXUS_TEST_BROKER_WRAPPER", wrapper, 1);
        }
        r = harness_broker_start_args(f->h, config ? (const char *[]) { "-c", path, NULL } : NULL, -1);
        if (broker_uid || broker_nofile) {
                if (old_wrapper)
                        setenv("PLEXUS_TEST_BROKER_WRAPPER", old_wrapper, 1);
                else
                        unsetenv("PLEXUS_TEST_BROKER_WRAPPER");
        }
        if (r < 0)
                return -1;
        setenv("PLEXUS_BUS_ADDRESS", f->h->address, 1);

        r = harness_child_fork(&f->service, fd_service_main, f->h->address);
        if (r < 0)
                return -1;
        r = harness_read_line(f->service.report_fd, line, sizeof(line), TIMEOUT_MS);
        if (r < 0 || strncmp(line, "ready :", 7) != 0) {
                fprintf(stderr, "fd service did not get ready: %s\n", r < 0 ? strerror(-r) : line);
                return -1;
        }
        snprintf(f->service_id, sizeof(f->service_id), "%s", line + 6);

        r = plx_bus_new(&f->bus, f->h->address, "test-fds");
        if (r < 0) {
                fprintf(stderr, "plx_bus_new: %s\n", strerror(-r));
                return -1;
        }
        return 0;
}

static int fixture_teardown(void **state) {
        Fixture *f = *state;
        void *h;
        int r, ret = 0;

        if (!f)
                return 0;
        f->bus = plx_bus_free(f->bus);
        if (f->h && f->h->broker_pid > 0) {
                r = harness_broker_stop(f->h);
                if (r != 0) {
                        fprintf(stderr, "teardown: broker exit status %d, expected 0\n", r);
                        ret = -1;
                }
        }
        /* A test that failed half-way leaves its children: end them. */
        for (size_t i = 0; i < ELEMENTS(f->children); i++) {
                if (f->children[i].pid > 0)
                        kill(f->children[i].pid, SIGKILL);
                harness_child_wait(&f->children[i], TIMEOUT_MS);
        }
        if (f->service.pid > 0) {
                r = harness_child_wait(&f->service, TIMEOUT_MS);
                if (r != 0) {
                        fprintf(stderr, "teardown: fd service exit status %d, expected 0\n", r);
                        ret = -1;
                }
        }
        harness_child_close(&f->service);
        h = f->h;
        if (harness_teardown(&h) < 0)
                ret = -1;
        free(f);
        *state = NULL;
        return ret;
}

static int fixture_setup(void **state) {
        if (fixture_start(state, NULL, 0, 0) < 0) {
                fixture_teardown(state);
                return -1;
        }
        return 0;
}

/* A quota of 8 queued fds per client, so that a slow subscriber hits it soon. */
#define SMALL_FD_QUOTA 8

static int fixture_setup_small_quota(void **state) {
        char config[128];

        snprintf(config, sizeof(config), "[limits]\nmax_queue_fds = %d\n", SMALL_FD_QUOTA);
        if (fixture_start(state, config, 0, 0) < 0) {
                fixture_teardown(state);
                return -1;
        }
        return 0;
}

/* Every uid may connect (the clients of the in-flight tests drop root). */
static int fixture_setup_open(void **state) {
        if (fixture_start(state, "[policy:everyone]\nusers = *\npublish = inflight/#\n", 0, 0) < 0) {
                fixture_teardown(state);
                return -1;
        }
        return 0;
}

/*
 * The broker without privileges, as on a per-user bus, even when we are
 * root, and with room for 450 fds: a frame of 200 fits, 450 in flight do
 * not.
 */
#define UNPRIVILEGED_UID 4242
#define UNPRIVILEGED_NOFILE 450

static int fixture_setup_unprivileged(void **state) {
        if ((geteuid() == 0 && system("setpriv --version >/dev/null 2>&1") != 0) ||
            system("prlimit --version >/dev/null 2>&1") != 0) {
                fprintf(stderr, "setpriv(1) or prlimit(1) is missing: cannot run the broker unprivileged\n");
                *state = NULL;
                return 0;
        }
        /* A file of its own: the default path may be in a home it cannot read. */
        if (fixture_start(state, "[limits]\nmax_queue_fds = 1024\n", geteuid() == 0 ? UNPRIVILEGED_UID : 0,
                          UNPRIVILEGED_NOFILE) < 0) {
                fixture_teardown(state);
                return -1;
        }
        return 0;
}

#define FD_TEST(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)

/* --- Pipes and memfds both ways --------------------------------------------------- */

static void test_pipe_and_memfd(void **state) {
        Fixture *f = *state;
        _cleanup_msg_ plx_msg *reply = NULL;
        char buf[256];
        int pipefd[2], memfd, fds[2], fd, n_fds;

        n_fds = harness_count_fds();

        /* A call with a pipe's read end and a memfd: the service reads both. */
        assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
        assert_int_equal(write(pipefd[1], "pipe data", 9), 9);
        close(pipefd[1]);
        memfd = make_memfd("memfd data");
        assert_true(memfd >= 0);
        fds[0] = pipefd[0];
        fds[1] = memfd;
        assert_call_text(f->bus, f->service_id, "Read", NULL, fds, 2, "pipe data|memfd data");
        close(pipefd[0]);

        /* A pipe's write end: the service writes, we read what it wrote. */
        assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
        assert_call_text(f->bus, f->service_id, "Write", "written by the service", &pipefd[1], 1, "");
        /* Ours is the last write end once the service closed its copy and the broker its own. */
        close(pipefd[1]);
        assert_int_equal(read_to_eof(pipefd[0], buf, sizeof(buf), TIMEOUT_MS), 22);
        assert_string_equal(buf, "written by the service");
        close(pipefd[0]);

        /* The memfd again: the service maps it and writes through the mapping. */
        assert_call_text(f->bus, f->service_id, "Map", "memfd data", &memfd, 1, "mapped 10");
        assert_int_equal(pread_all(memfd, buf, sizeof(buf)), 10);
        assert_string_equal(buf, "MEMFD DATA");
        close(memfd);

        /* A reply with a memfd and a pipe. */
        assert_int_equal(plx_bus_call(f->bus, f->service_id, "Make", "made by the service", 19,
                                      PLX_TIMEOUT_DEFAULT, &reply), 0);
        assert_int_equal(plx_msg_get_n_fds(reply), 2);
        assert_int_equal(plx_msg_get_fd(reply, 2), -EINVAL);
        assert_int_equal(plx_msg_take_fd(reply, 2), -EINVAL);
        assert_true(fd_is_cloexec(plx_msg_get_fd(reply, 0)));
        assert_true(fd_is_cloexec(plx_msg_get_fd(reply, 1)));

        fd = plx_msg_take_fd(reply, 0);
        assert_true(fd >= 0);
        assert_int_equal(plx_msg_get_fd(reply, 0), -EBADF);
        assert_int_equal(plx_msg_take_fd(reply, 0), -EBADF);
        assert_int_equal(pread_all(fd, buf, sizeof(buf)), 19);
        assert_string_equal(buf, "made by the service");
        {
                char *m = mmap(NULL, 19, PROT_READ, MAP_SHARED, fd, 0);

                assert_true(m != MAP_FAILED);
                assert_memory_equal(m, "made by the service", 19);
                munmap(m, 19);
        }
        /* Ours now: it outlives the message. */
        reply = plx_msg_unref(reply);
        assert_int_equal(pread_all(fd, buf, sizeof(buf)), 19);
        close(fd);

        /* A pipe read through the borrowed fd, left to the message to close. */
        assert_int_equal(plx_bus_call(f->bus, f->service_id, "Make", "x", 1, PLX_TIMEOUT_DEFAULT, &reply), 0);
        assert_int_equal(read_to_eof(plx_msg_get_fd(reply, 1), buf, sizeof(buf), TIMEOUT_MS), 16);
        assert_string_equal(buf, "through the pipe");
        reply = plx_msg_unref(reply);

        assert_int_equal(harness_count_fds(), n_fds);
}

/* A signal with an fd to several processes; what the publisher can attach. */
typedef struct SubArgs {
        const char *address;
        const char *pattern;
} SubArgs;

typedef struct SubState {
        plx_msg *msg;
        bool done;
} SubState;

static int on_keep(plx_msg *m, void *userdata) {
        SubState *s = userdata;

        if (!s->msg)
                s->msg = plx_msg_ref(m);
        s->done = true;
        return 0;
}

/*
 * A subscriber: "ready", then "got <content>" for the first signal's fd; on
 * 'r' reads it again ("read <content>"), on 'c' closes it ("closed"), on
 * 'q' (or EOF) leaves.
 */
static int subscriber_main(int report_fd, int control_fd, void *userdata) {
        SubArgs *a = userdata;
        _cleanup_bus_ plx_bus *bus = NULL;
        SubState s = {};
        char buf[256];
        int r, fd;

        r = plx_bus_new(&bus, a->address, "fd-subscriber");
        if (r < 0)
                child_fail("plx_bus_new: %s", strerror(-r));
        r = plx_bus_subscribe(bus, NULL, a->pattern, on_keep, &s);
        if (r < 0)
                child_fail("subscribe: %s", strerror(-r));
        harness_report(report_fd, "ready");

        r = harness_bus_wait(bus, &s.done, TIMEOUT_MS);
        if (r < 0)
                child_fail("no signal: %s", strerror(-r));
        child_assert_int_eq(plx_msg_get_n_fds(s.msg), 1);
        fd = plx_msg_take_fd(s.msg, 0);
        child_assert(fd >= 0);
        s.msg = plx_msg_unref(s.msg);
        if (pread_all(fd, buf, sizeof(buf)) < 0)
                child_fail("pread: %m");
        harness_report(report_fd, "got %s", buf);

        for (;;) {
                struct pollfd pfd = { .fd = control_fd, .events = POLLIN };
                char c = 'q';

                r = poll(&pfd, 1, TIMEOUT_MS);
                if (r <= 0 || read(control_fd, &c, 1) != 1 || c == 'q')
                        break;
                if (c == 'c') {
                        close(fd);
                        fd = -1;
                        harness_report(report_fd, "closed");
                } else if (c == 'r') {
                        if (pread_all(fd, buf, sizeof(buf)) < 0)
                                harness_report(report_fd, "read failed: %m");
                        else
                                harness_report(report_fd, "read %s", buf);
                }
        }
        if (fd >= 0)
                close(fd);
        return 0;
}

/* Fork @fn into a free slot of f->children. */
static HarnessChild *fixture_fork(Fixture *f, HarnessChildFn fn, void *userdata) {
        for (size_t i = 0; i < ELEMENTS(f->children); i++) {
                if (f->children[i].pid > 0 || f->children[i].report_fd >= 0)
                        continue;
                assert_int_equal(harness_child_fork(&f->children[i], fn, userdata), 0);
                return &f->children[i];
        }
        fail_msg("no free child slot");
        return NULL;
}

static void expect_line(HarnessChild *c, const char *expected) {
        char line[300];
        int r;

        r = harness_read_line(c->report_fd, line, sizeof(line), TIMEOUT_MS);
        if (r < 0)
                fail_msg("child %d: no line \"%s\": %s", (int)c->pid, expected, strerror(-r));
        assert_string_equal(line, expected);
}

static void test_signal_three_subscribers(void **state) {
        Fixture *f = *state;
        HarnessChild *subs[3];
        SubArgs args = { .address = f->h->address, .pattern = "shared/#" };
        int memfd, broker_fds;

        broker_fds = count_pid_fds(f->h->broker_pid);
        for (size_t i = 0; i < ELEMENTS(subs); i++) {
                subs[i] = fixture_fork(f, subscriber_main, &args);
                expect_line(subs[i], "ready");
        }

        memfd = make_memfd("shared with three");
        assert_true(memfd >= 0);
        assert_int_equal(plx_bus_publish_with_fds(f->bus, "shared/file", "x", 1, &memfd, 1), 0);
        assert_int_equal(harness_bus_flush(f->bus, TIMEOUT_MS), 0);
        /* Our copy goes at once: the subscribers' duplicates do not depend on it. */
        close(memfd);

        for (size_t i = 0; i < ELEMENTS(subs); i++)
                expect_line(subs[i], "got shared with three");

        /* Each has its own descriptor: closing one leaves the others working. */
        assert_int_equal(harness_write_byte(subs[0]->control_fd, 'c'), 0);
        expect_line(subs[0], "closed");
        for (size_t i = 1; i < ELEMENTS(subs); i++) {
                assert_int_equal(harness_write_byte(subs[i]->control_fd, 'r'), 0);
                expect_line(subs[i], "read shared with three");
        }
        assert_int_equal(harness_write_byte(subs[1]->control_fd, 'c'), 0);
        expect_line(subs[1], "closed");
        assert_int_equal(harness_write_byte(subs[2]->control_fd, 'r'), 0);
        expect_line(subs[2], "read shared with three");

        for (size_t i = 0; i < ELEMENTS(subs); i++) {
                assert_int_equal(harness_write_byte(subs[i]->control_fd, 'q'), 0);
                assert_int_equal(harness_child_wait(subs[i], TIMEOUT_MS), 0);
        }
        assert_broker_fds(f->h, broker_fds);
}

/* --- No leaks ------------------------------------------------------------------ */

#define N_MESSAGES 1000

static void test_fd_counts_after_1000(void **state) {
        Fixture *f = *state;
        char expected[64], service_fds[32];
        int broker_fds, own_fds, n_signals = 0;

        broker_fds = count_pid_fds(f->h->broker_pid);
        own_fds = harness_count_fds();
        assert_int_equal(call_text(f->bus, f->service_id, "CountFds", NULL, NULL, 0, service_fds,
                                   sizeof(service_fds)), 0);

        for (int i = 0; i < N_MESSAGES; i++) {
                _cleanup_msg_ plx_msg *reply = NULL;
                int memfd, pipefd[2], fds[3], fd;

                switch (i % 4) {
                case 0:         /* a call with an fd */
                        memfd = make_memfd("counted");
                        assert_true(memfd >= 0);
                        assert_call_text(f->bus, f->service_id, "Read", NULL, &memfd, 1, "counted");
                        close(memfd);
                        break;
                case 1:         /* a reply with two: one taken, one left to the message */
                        assert_int_equal(plx_bus_call(f->bus, f->service_id, "Make", "m", 1,
                                                      PLX_TIMEOUT_DEFAULT, &reply), 0);
                        assert_int_equal(plx_msg_get_n_fds(reply), 2);
                        fd = plx_msg_take_fd(reply, 0);
                        assert_true(fd >= 0);
                        close(fd);
                        break;
                case 2:         /* a signal with a pipe's two ends */
                        assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
                        assert_int_equal(plx_bus_publish_with_fds(f->bus, "fds/count", "s", 1, pipefd, 2), 0);
                        close(pipefd[0]);
                        close(pipefd[1]);
                        n_signals++;
                        break;
                case 3:         /* three fds there and back */
                        assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
                        fds[0] = pipefd[0];
                        fds[1] = pipefd[1];
                        fds[2] = make_memfd("three");
                        assert_true(fds[2] >= 0);
                        assert_int_equal(plx_bus_call_with_fds(f->bus, f->service_id, "EchoFds", NULL, 0, fds, 3,
                                                               PLX_TIMEOUT_DEFAULT, &reply), 0);
                        assert_int_equal(plx_msg_get_n_fds(reply), 3);
                        assert_true(same_file(plx_msg_get_fd(reply, 2), fds[2]));
                        for (int k = 0; k < 3; k++)
                                close(fds[k]);
                        break;
                }
        }

        /* Signals were delivered (calls after them in our order sync them), each with its two fds;
         * the calls are ours plus the first CountFds. */
        snprintf(expected, sizeof(expected), "%d %d 2 ok", N_MESSAGES - n_signals + 1, n_signals);
        assert_call_text(f->bus, f->service_id, "Stats", NULL, NULL, 0, expected);

        assert_call_text(f->bus, f->service_id, "CountFds", NULL, NULL, 0, service_fds);
        assert_int_equal(harness_bus_drain(f->bus), 0);
        assert_int_equal(harness_count_fds(), own_fds);
        assert_broker_fds(f->h, broker_fds);
}

/* The broker's own methods take no fds; fds sent with HELLO are dropped. */
static void test_broker_refuses_fds(void **state) {
        Fixture *f = *state;
        RawFrame *frame = raw_frame_new();
        Plexus__Header h = PLEXUS__HEADER__INIT;
        Plexus__Hello hello = PLEXUS__HELLO__INIT;
        uint8_t payload[64], buf[512];
        int broker_fds, memfd, raw, fds[3];
        size_t hlen, n;

        assert_non_null(frame);
        broker_fds = count_pid_fds(f->h->broker_pid);
        memfd = make_memfd("not for the broker");
        assert_true(memfd >= 0);

        assert_call_error(f->bus, PLX_BROKER, "Ping", &memfd, 1, PLX_ERROR_FDS_REJECTED);
        /* The connection stays; the fd went nowhere. */
        sync_bus(f->bus);
        assert_broker_fds(f->h, broker_fds);

        /* HELLO with three fds: welcomed, fds closed. */
        raw = raw_connect(f->h->address);
        assert_true(raw >= 0);
        hello.protocol_version = PLX_PROTOCOL_VERSION;
        hello.description = (char *)"hello with fds";
        n = plexus__hello__pack(&hello, payload);
        h.kind = PLEXUS__KIND__KIND_HELLO;
        h.serial = 1;
        hlen = plexus__header__pack(&h, buf + FRAME_PREFIX_SIZE);
        frame_prefix(buf, (uint32_t)hlen);
        memcpy(buf + FRAME_PREFIX_SIZE + hlen, payload, n);
        {
                struct iovec iov = { .iov_base = buf, .iov_len = FRAME_PREFIX_SIZE + hlen + n };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
                FdControl control;

                fds[0] = fds[1] = fds[2] = memfd;
                fdpass_attach(&mh, &control, fds, 3);
                assert_int_equal(sendmsg(raw, &mh, MSG_NOSIGNAL), (ssize_t)iov.iov_len);
        }
        assert_int_equal(raw_recv(raw, frame, TIMEOUT_MS), 1);
        assert_non_null(frame->header);
        assert_int_equal(frame->header->kind, PLEXUS__KIND__KIND_REPLY);
        /* Two for the connection (socket and pidfd, if the kernel has them), none for the fds. */
        sync_bus(f->bus);
        {
                int n_now = count_pid_fds(f->h->broker_pid);

                assert_true(n_now == broker_fds + 1 || n_now == broker_fds + 2);
                close(raw);
                assert_broker_fds(f->h, broker_fds);
        }
        close(memfd);
        raw_frame_free(frame);
}

/* A slow subscriber's fd quota: refused frames are reported, queued fds freed. */
typedef struct SlowArgs {
        const char *address;
} SlowArgs;

typedef struct SlowState {
        unsigned n_received;
        unsigned n_bad;
        bool done;                      /* saw "slow/end" */
} SlowState;

static int on_slow(plx_msg *m, void *userdata) {
        SlowState *s = userdata;
        char buf[64];

        if (strcmp(plx_msg_get_topic(m), "slow/end") == 0) {
                s->done = true;
                return 0;
        }
        s->n_received++;
        if (plx_msg_get_n_fds(m) != 1 || pread_all(plx_msg_get_fd(m, 0), buf, sizeof(buf)) < 0 ||
            strcmp(buf, "flood") != 0)
                s->n_bad++;
        return 0;
}

/*
 * Subscribes, says "ready" and reads nothing until told 'r': then reads
 * until "slow/end" and reports "done <received> <bad fds> <missed>".
 */
static int slow_main(int report_fd, int control_fd, void *userdata) {
        SlowArgs *a = userdata;
        _cleanup_bus_ plx_bus *bus = NULL;
        SlowState s = {};
        char c = 0;
        int r;

        r = plx_bus_new(&bus, a->address, "slow-subscriber");
        if (r < 0)
                child_fail("plx_bus_new: %s", strerror(-r));
        r = plx_bus_subscribe(bus, NULL, "slow/#", on_slow, &s);
        if (r < 0)
                child_fail("subscribe: %s", strerror(-r));
        harness_report(report_fd, "ready");

        {
                struct pollfd pfd = { .fd = control_fd, .events = POLLIN };

                if (poll(&pfd, 1, harness_timeout_ms(60000)) <= 0 || read(control_fd, &c, 1) != 1)
                        child_fail("no word from the test");
        }
        if (c != 'r')
                return 0;
        r = harness_bus_wait(bus, &s.done, harness_timeout_ms(20000));
        if (r < 0)
                child_fail("no slow/end: %s", strerror(-r));
        harness_report(report_fd, "done %u %u %llu", s.n_received, s.n_bad,
                       (unsigned long long)plx_bus_get_n_missed(bus));
        return 0;
}

#define N_FLOOD 2000

static void test_dropped_at_fd_quota(void **state) {
        Fixture *f = *state;
        HarnessChild *killed, *resumed;
        SlowArgs args = { .address = f->h->address };
        Errors errors = {};
        unsigned n_received, n_bad;
        unsigned long long n_missed;
        char line[128];
        int broker_fds, own_fds, memfd, n;

        broker_fds = count_pid_fds(f->h->broker_pid);
        own_fds = harness_count_fds();
        plx_bus_set_error_handler(f->bus, on_error, &errors);

        killed = fixture_fork(f, slow_main, &args);
        expect_line(killed, "ready");
        resumed = fixture_fork(f, slow_main, &args);
        expect_line(resumed, "ready");

        /* Neither reads: their sockets fill, then their queues up to the fd quota. */
        memfd = make_memfd("flood");
        assert_true(memfd >= 0);
        for (int i = 0; i < N_FLOOD; i++) {
                int r = plx_bus_publish_with_fds(f->bus, "slow/data", "d", 1, &memfd, 1);

                if (r == -ENOBUFS) {
                        assert_int_equal(harness_bus_flush(f->bus, TIMEOUT_MS), 0);
                        r = plx_bus_publish_with_fds(f->bus, "slow/data", "d", 1, &memfd, 1);
                }
                assert_int_equal(r, 0);
                if (i % 32 == 0)
                        assert_int_equal(harness_bus_drain(f->bus), 0);
        }
        assert_int_equal(harness_bus_flush(f->bus, TIMEOUT_MS), 0);
        sync_bus(f->bus);
        assert_int_equal(harness_bus_drain(f->bus), 0);
        fprintf(stderr, "%d signals with an fd: %u QueueFull errors\n", N_FLOOD, errors.n_queue_full);
        if (errors.n_other || errors.n_fds_rejected)
                fail_msg("unexpected error: %s (%u FdsRejected)", errors.other, errors.n_fds_rejected);
        assert_true(errors.n_queue_full > 0);

        /* The broker holds at most the quota per subscriber, plus their connections. */
        n = broker_fds_settle_at_most(f->h, broker_fds + 2 * (2 + SMALL_FD_QUOTA));
        if (n > broker_fds + 2 * (2 + SMALL_FD_QUOTA))
                fail_msg("broker holds %d fds, at most %d expected", n, broker_fds + 2 * (2 + SMALL_FD_QUOTA));

        /* One dies with a full queue: its queued fds must go with it. */
        assert_int_equal(kill(killed->pid, SIGKILL), 0);
        assert_int_equal(harness_child_wait(killed, TIMEOUT_MS), 128 + SIGKILL);
        n = broker_fds_settle_at_most(f->h, broker_fds + 2 + SMALL_FD_QUOTA);
        if (n > broker_fds + 2 + SMALL_FD_QUOTA)
                fail_msg("broker holds %d fds after the subscriber died, at most %d expected", n,
                         broker_fds + 2 + SMALL_FD_QUOTA);

        /* The other reads again: what it gets has working fds, the rest shows as missed. */
        assert_int_equal(harness_write_byte(resumed->control_fd, 'r'), 0);
        for (uint64_t deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(20000);;) {
                assert_int_equal(plx_bus_publish_with_fds(f->bus, "slow/end", "e", 1, &memfd, 1), 0);
                assert_int_equal(harness_bus_flush(f->bus, TIMEOUT_MS), 0);
                assert_int_equal(harness_bus_drain(f->bus), 0);
                if (harness_read_line(resumed->report_fd, line, sizeof(line), 50) > 0)
                        break;
                assert_true(harness_now_ms() < deadline);
        }
        assert_int_equal(sscanf(line, "done %u %u %llu", &n_received, &n_bad, &n_missed), 3);
        fprintf(stderr, "resumed subscriber: %u received, %u with bad fds, %llu missed\n", n_received, n_bad,
                n_missed);
        assert_int_equal(n_bad, 0);
        assert_true(n_received > 0 && n_received < N_FLOOD);
        assert_true(n_missed > 0);
        assert_int_equal(harness_child_wait(resumed, TIMEOUT_MS), 0);

        close(memfd);
        sync_bus(f->bus);
        assert_int_equal(harness_bus_drain(f->bus), 0);
        plx_bus_set_error_handler(f->bus, NULL, NULL);
        assert_int_equal(harness_count_fds(), own_fds);
        assert_broker_fds(f->h, broker_fds);
}

/* --- The broker out of fds ---------------------------------------------------------- */

static int open_fds(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++) {
                fds[i] = make_memfd("many");
                if (fds[i] < 0)
                        return fds[i];
        }
        return 0;
}

static void close_fds(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

#define MANY_FDS 100
#define MAX_RAW 200

static void test_ctrunc_fds_rejected(void **state) {
        Fixture *f = *state;
        RawFrame *frame = raw_frame_new();
        int fds[MANY_FDS], raws[MAX_RAW];
        size_t n_raw = 0;
        Errors errors = {};
        char expected[32];
        int base, limit, loaded;

        assert_non_null(frame);
        assert_int_equal(open_fds(fds, MANY_FDS), 0);
        snprintf(expected, sizeof(expected), "%d ok", MANY_FDS);

        /* Room for 150 more: a frame with 100 fds fits. */
        base = count_pid_fds(f->h->broker_pid);
        limit = broker_limit_fds(f->h, 150);
        fprintf(stderr, "broker holds %d fds, limit now %d\n", base, limit);
        assert_call_text(f->bus, f->service_id, "NFds", NULL, fds, MANY_FDS, expected);
        assert_broker_fds(f->h, base);

        /* Clients take up all but 30: a frame with 100 fds is cut short on the way in. */
        while (limit - count_pid_fds_below(f->h->broker_pid, limit) > 30) {
                char id[64];
                int raw;

                assert_true(n_raw < MAX_RAW);
                raw = raw_connect(f->h->address);
                assert_true(raw >= 0);
                assert_int_equal(raw_hello(raw, frame, id, sizeof(id)), 0);
                raws[n_raw++] = raw;
        }
        loaded = count_pid_fds(f->h->broker_pid);
        fprintf(stderr, "%zu raw clients, broker holds %d fds\n", n_raw, loaded);

        assert_call_error(f->bus, f->service_id, "NFds", fds, MANY_FDS, PLX_ERROR_FDS_REJECTED);
        /* The same for a signal: the publisher hears through its error handler. */
        plx_bus_set_error_handler(f->bus, on_error, &errors);
        assert_int_equal(plx_bus_publish_with_fds(f->bus, "fds/many", "m", 1, fds, MANY_FDS), 0);
        sync_bus(f->bus);
        assert_int_equal(harness_bus_drain(f->bus), 0);
        assert_int_equal(errors.n_fds_rejected, 1);
        assert_int_equal(errors.n_other, 0);
        plx_bus_set_error_handler(f->bus, NULL, NULL);

        /* Neither reached the service, and the fds that did get in were closed. */
        assert_call_text(f->bus, f->service_id, "Stats", NULL, NULL, 0, "1 0 0 ok");
        assert_broker_fds(f->h, loaded);
        assert_true(kill(f->h->broker_pid, 0) == 0);

        /* What fits still passes. */
        assert_call_text(f->bus, f->service_id, "NFds", NULL, fds, 10, "10 ok");

        /* Clients leave: the broker recovers, old and new connections pass 100 fds again. */
        for (size_t i = 0; i < n_raw; i++)
                close(raws[i]);
        assert_broker_fds(f->h, base);
        assert_call_text(f->bus, f->service_id, "NFds", NULL, fds, MANY_FDS, expected);
        {
                _cleanup_bus_ plx_bus *late = NULL;

                assert_int_equal(plx_bus_new(&late, f->h->address, "late"), 0);
                assert_call_text(late, f->service_id, "NFds", NULL, fds, MANY_FDS, expected);
        }
        assert_broker_fds(f->h, base);
        close_fds(fds, MANY_FDS);
        raw_frame_free(frame);
}

/* Send HELLO and wait up to @timeout_ms for the Welcome. */
static int raw_wait_welcome(int fd, RawFrame *frame, int timeout_ms) {
        int r = raw_recv(fd, frame, timeout_ms);

        if (r < 0)
                return r;
        if (r == 0)
                return -ECONNRESET;
        if (!frame->header || frame->header->kind != PLEXUS__KIND__KIND_REPLY)
                return -EPROTO;
        return 0;
}

#define QUIET_MS 300

/*
 * Connect and say HELLO; the broker's first answer: 0 for the Welcome,
 * -EPROTO for another frame (in @frame). A refused connection may be closed
 * before our HELLO goes out, or reset ahead of the broker's frame: both are
 * read past.
 */
static int raw_try_connect(const char *address, RawFrame *frame, int *ret_fd) {
        int fd, r;

        fd = raw_connect(address);
        assert_true(fd >= 0);
        *ret_fd = fd;
        (void)raw_send_hello(fd, 1, PLX_PROTOCOL_VERSION);
        r = raw_wait_welcome(fd, frame, TIMEOUT_MS);
        if (r == -ECONNRESET)
                r = raw_wait_welcome(fd, frame, TIMEOUT_MS);
        return r;
}

/* A connection the broker refused at once for want of fds: told why, then closed. */
static void assert_refused_no_fds(int fd, RawFrame *frame) {
        assert_non_null(frame->header);
        assert_int_equal(frame->header->kind, PLEXUS__KIND__KIND_ERROR);
        assert_string_equal(frame->header->error_name, PLX_ERROR_LIMITS_EXCEEDED);
        assert_int_equal(frame->payload_len, strlen("broker out of file descriptors"));
        assert_memory_equal(frame->payload, "broker out of file descriptors", frame->payload_len);
        assert_int_equal(raw_wait_eof(fd, TIMEOUT_MS), 0);
}

/*
 * Out of fds, the broker accepts with its reserve fd and closes at once:
 * a new client is told (LimitsExceeded) instead of hanging in the backlog
 * on a connect() that succeeded, and the listener does not spin.
 */
static void test_emfile_accept(void **state) {
        Fixture *f = *state;
        RawFrame *frame = raw_frame_new();
        int accepted[32];
        size_t n_accepted = 0;
        char who[128];
        int base, r, fd;
        long ticks;

        assert_non_null(frame);
        base = count_pid_fds(f->h->broker_pid);
        broker_limit_fds(f->h, 8);

        /* Clients connect until one is refused: the broker is out of fds. */
        for (;;) {
                r = raw_try_connect(f->h->address, frame, &fd);
                if (r == -EPROTO)
                        break;
                assert_int_equal(r, 0);
                assert_true(n_accepted < ELEMENTS(accepted));
                accepted[n_accepted++] = fd;
        }
        fprintf(stderr, "%zu clients accepted before EMFILE\n", n_accepted);
        assert_true(n_accepted >= 2);
        assert_refused_no_fds(fd, frame);
        close(fd);

        /* More of them are refused the same way, none is left waiting. */
        for (int i = 0; i < 3; i++) {
                assert_int_equal(raw_try_connect(f->h->address, frame, &fd), -EPROTO);
                assert_refused_no_fds(fd, frame);
                close(fd);
        }

        /* Existing clients are served meanwhile, and the broker does not spin on accept(). */
        snprintf(who, sizeof(who), "%s %u %u %d", plx_bus_get_unique_id(f->bus), (unsigned)getuid(),
                 (unsigned)getgid(), (int)getpid());
        ticks = cpu_ticks(f->h->broker_pid);
        for (int i = 0; i < 20; i++) {
                sync_bus(f->bus);
                assert_call_text(f->bus, f->service_id, "Whoami", NULL, NULL, 0, who);
        }
        usleep(500 * 1000);
        ticks = cpu_ticks(f->h->broker_pid) - ticks;
        if (ticks > 40)
                fail_msg("broker used %ld clock ticks in about half a second while out of fds: spinning?", ticks);
        assert_true(kill(f->h->broker_pid, 0) == 0);

        /* One leaves: the next one gets in. */
        close(accepted[--n_accepted]);
        sync_bus(f->bus);
        assert_int_equal(raw_try_connect(f->h->address, frame, &fd), 0);
        accepted[n_accepted++] = fd;

        /* And the broker is back where it started once they all go. */
        while (n_accepted > 0)
                close(accepted[--n_accepted]);
        sync_bus(f->bus);
        assert_broker_fds(f->h, base);
        raw_frame_free(frame);
}

/* --- 253 fds -------------------------------------------------------------------------- */

static void test_253_fds(void **state) {
        Fixture *f = *state;
        _cleanup_msg_ plx_msg *reply = NULL;
        int fds[PLX_FDS_MAX + 1], broker_fds, own_fds;
        char expected[64];

        broker_fds = count_pid_fds(f->h->broker_pid);
        own_fds = harness_count_fds();
        for (size_t i = 0; i < ELEMENTS(fds); i++) {
                char content[32];

                snprintf(content, sizeof(content), "fd %zu", i);
                fds[i] = make_memfd(content);
                assert_true(fds[i] >= 0);
        }

        /* There and back, in order: the service checks each by content, we by inode. */
        assert_int_equal(plx_bus_call_with_fds(f->bus, f->service_id, "EchoFds", "indexed", 7, fds, PLX_FDS_MAX,
                                               PLX_TIMEOUT_DEFAULT, &reply), 0);
        assert_int_equal(plx_msg_get_n_fds(reply), PLX_FDS_MAX);
        for (size_t i = 0; i < PLX_FDS_MAX; i++)
                if (!same_file(plx_msg_get_fd(reply, i), fds[i]))
                        fail_msg("fd %zu of the reply is not the one sent", i);
        reply = plx_msg_unref(reply);

        /* As a signal. */
        assert_int_equal(plx_bus_publish_with_fds(f->bus, "fds/many", "indexed", 7, fds, PLX_FDS_MAX), 0);
        snprintf(expected, sizeof(expected), "1 1 %d ok", PLX_FDS_MAX);
        assert_call_text(f->bus, f->service_id, "Stats", NULL, NULL, 0, expected);

        /* One more than the kernel passes is refused before sending. */
        assert_int_equal(plx_bus_call_with_fds(f->bus, f->service_id, "NFds", NULL, 0, fds, PLX_FDS_MAX + 1,
                                               PLX_TIMEOUT_DEFAULT, NULL), -EINVAL);
        assert_int_equal(plx_bus_publish_with_fds(f->bus, "fds/many", NULL, 0, fds, PLX_FDS_MAX + 1), -EINVAL);

        close_fds(fds, ELEMENTS(fds));
        assert_int_equal(harness_count_fds(), own_fds);
        assert_broker_fds(f->h, broker_fds);
}

/* --- Credentials ------------------------------------------------------------------------ */

typedef struct WhoArgs {
        const char *address;
        const char *service_id;
        gid_t gid;                      /* 0: keep ours */
} WhoArgs;

/* Calls Whoami, checks what the service saw, publishes on "creds/child", reports its view. */
static int who_main(int report_fd, int control_fd, void *userdata) {
        WhoArgs *a = userdata;
        _cleanup_bus_ plx_bus *bus = NULL;
        _cleanup_msg_ plx_msg *reply = NULL;
        char expected[128];
        const void *p;
        size_t n;
        int r;

        if (a->gid && (setgroups(0, NULL) < 0 || setresgid(a->gid, a->gid, a->gid) < 0))
                child_fail("setresgid(%u): %m", (unsigned)a->gid);

        r = plx_bus_new(&bus, a->address, "who");
        if (r < 0)
                child_fail("plx_bus_new: %s", strerror(-r));
        r = plx_bus_call(bus, a->service_id, "Whoami", NULL, 0, PLX_TIMEOUT_DEFAULT, &reply);
        if (r < 0)
                child_fail("Whoami: %s", strerror(-r));
        p = plx_msg_get_payload(reply, &n);
        snprintf(expected, sizeof(expected), "%s %u %u %d", plx_bus_get_unique_id(bus), (unsigned)getuid(),
                 (unsigned)getgid(), (int)getpid());
        if (n != strlen(expected) || memcmp(p, expected, n) != 0)
                child_fail("the service saw \"%.*s\", expected \"%s\"", (int)n, (const char *)p, expected);
        r = plx_bus_publish(bus, "creds/child", "c", 1);
        if (r < 0)
                child_fail("publish: %s", strerror(-r));
        r = plx_bus_call(bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL);
        if (r < 0)
                child_fail("Ping: %s", strerror(-r));
        harness_report(report_fd, "%s", expected);
        return 0;
}

static int on_keep_signal(plx_msg *m, void *userdata) {
        SubState *s = userdata;

        if (!s->msg)
                s->msg = plx_msg_ref(m);
        s->done = true;
        return 0;
}

static void test_credentials(void **state) {
        Fixture *f = *state;
        _cleanup_msg_ plx_msg *reply = NULL;
        HarnessChild *child;
        WhoArgs args = { .address = f->h->address, .service_id = f->service_id };
        SubState sub = {};
        char line[256], expected[256];

        /* Ours, as the service sees them. */
        snprintf(expected, sizeof(expected), "%s %u %u %d", plx_bus_get_unique_id(f->bus), (unsigned)getuid(),
                 (unsigned)getgid(), (int)getpid());
        assert_call_text(f->bus, f->service_id, "Whoami", NULL, NULL, 0, expected);

        /* The service's, on its reply. */
        assert_int_equal(plx_bus_call(f->bus, f->service_id, "Whoami", NULL, 0, PLX_TIMEOUT_DEFAULT, &reply), 0);
        assert_string_equal(plx_msg_get_sender(reply), f->service_id);
        assert_int_equal(plx_msg_get_sender_pid(reply), f->service.pid);
        assert_int_equal(plx_msg_get_sender_uid(reply), getuid());
        assert_int_equal(plx_msg_get_sender_gid(reply), getgid());
        reply = plx_msg_unref(reply);

        /* Another process, with a gid of its own where we may give it one. */
        if (geteuid() == 0)
                args.gid = 4242;
        else
                fprintf(stderr, "not root: the child keeps our gid\n");
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "creds/#", on_keep_signal, &sub), 0);
        child = fixture_fork(f, who_main, &args);
        assert_true(harness_read_line(child->report_fd, line, sizeof(line), TIMEOUT_MS) > 0);
        assert_int_equal(harness_bus_wait(f->bus, &sub.done, TIMEOUT_MS), 0);
        snprintf(expected, sizeof(expected), "%s %u %u %d", plx_msg_get_sender(sub.msg),
                 (unsigned)plx_msg_get_sender_uid(sub.msg), (unsigned)plx_msg_get_sender_gid(sub.msg),
                 (int)plx_msg_get_sender_pid(sub.msg));
        assert_string_equal(line, expected);
        assert_int_equal(plx_msg_get_sender_pid(sub.msg), child->pid);
        if (args.gid)
                assert_int_equal(plx_msg_get_sender_gid(sub.msg), args.gid);
        plx_msg_unref(sub.msg);
        assert_int_equal(harness_child_wait(child, TIMEOUT_MS), 0);
}

/* A raw frame with every broker-stamped field forged, and @n_fds real fds attached. */
static int raw_send_forged(int fd, Plexus__Header *h, const int *fds, size_t n_fds) {
        uint8_t buf[1024];
        struct iovec iov;
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        FdControl control;
        size_t hlen;

        h->sender = (char *)":999";
        h->sender_uid = 12345;
        h->sender_gid = 54321;
        h->sender_pid = 1;
        h->n_fds = 7;
        h->sequence = 999999;
        h->delivery = 999999;
        hlen = plexus__header__pack(h, buf + FRAME_PREFIX_SIZE);
        frame_prefix(buf, (uint32_t)hlen);
        memcpy(buf + FRAME_PREFIX_SIZE + hlen, "forged", 6);
        iov = (struct iovec) { .iov_base = buf, .iov_len = FRAME_PREFIX_SIZE + hlen + 6 };
        fdpass_attach(&mh, &control, fds, n_fds);
        return sendmsg(fd, &mh, MSG_NOSIGNAL) == (ssize_t)iov.iov_len ? 0 : -errno;
}

static void assert_stamped(const Plexus__Header *h, const char *sender, uint32_t n_fds) {
        assert_non_null(h);
        assert_string_equal(h->sender, sender);
        assert_int_equal(h->sender_uid, getuid());
        assert_int_equal(h->sender_gid, getgid());
        assert_int_equal(h->sender_pid, getpid());
        assert_int_equal(h->n_fds, n_fds);
        assert_int_not_equal(h->sequence, 999999);
        assert_int_not_equal(h->delivery, 999999);
}

static void assert_msg_stamped(plx_msg *m, const char *sender, size_t n_fds) {
        assert_string_equal(plx_msg_get_sender(m), sender);
        assert_int_equal(plx_msg_get_sender_uid(m), getuid());
        assert_int_equal(plx_msg_get_sender_gid(m), getgid());
        assert_int_equal(plx_msg_get_sender_pid(m), getpid());
        assert_int_equal(plx_msg_get_n_fds(m), n_fds);
        assert_int_not_equal(plx_msg_get_sequence(m), 999999);
        assert_int_not_equal(plx_msg_get_delivery(m), 999999);
}

typedef struct Held {
        plx_msg *msg;
        bool done;
} Held;

static int on_hold(plx_msg *m, void *userdata) {
        Held *held = userdata;

        held->msg = plx_msg_ref(m);
        held->done = true;
        return 0;
}

static void test_forged_fields(void **state) {
        Fixture *f = *state;
        RawFrame *frame = raw_frame_new();
        Plexus__SubscribeRequest req = PLEXUS__SUBSCRIBE_REQUEST__INIT;
        Plexus__Header h = PLEXUS__HEADER__INIT;
        SubState sub = {};
        Held call = {}, answer = {};
        char forger_id[64], watcher_id[64];
        uint8_t payload[64];
        int forger, watcher, fds[2], memfd;

        assert_non_null(frame);
        memfd = make_memfd("forged");
        assert_true(memfd >= 0);
        fds[0] = fds[1] = memfd;

        forger = raw_connect(f->h->address);
        assert_true(forger >= 0);
        assert_int_equal(raw_hello(forger, frame, forger_id, sizeof(forger_id)), 0);
        /* A raw subscriber sees the header as the broker sends it. */
        watcher = raw_connect(f->h->address);
        assert_true(watcher >= 0);
        assert_int_equal(raw_hello(watcher, frame, watcher_id, sizeof(watcher_id)), 0);
        req.pattern = (char *)"forged/#";
        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = 2;
        h.destination = (char *)PLX_BROKER;
        h.member = (char *)"Subscribe";
        assert_int_equal(raw_send(watcher, &h, payload, plexus__subscribe_request__pack(&req, payload)), 0);
        assert_int_equal(raw_recv(watcher, frame, TIMEOUT_MS), 1);
        assert_int_equal(frame->header->kind, PLEXUS__KIND__KIND_REPLY);
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "forged/#", on_keep_signal, &sub), 0);
        assert_int_equal(plx_bus_add_method(f->bus, NULL, "Forged", on_hold, &call), 0);

        /* A SIGNAL claiming to be someone else, with 7 fds but carrying 2. */
        h = (Plexus__Header) PLEXUS__HEADER__INIT;
        h.kind = PLEXUS__KIND__KIND_SIGNAL;
        h.serial = 3;
        h.member = (char *)"forged/signal";
        assert_int_equal(raw_send_forged(forger, &h, fds, 2), 0);
        assert_int_equal(raw_recv(watcher, frame, TIMEOUT_MS), 1);
        assert_int_equal(frame->header->kind, PLEXUS__KIND__KIND_SIGNAL);
        assert_stamped(frame->header, forger_id, 2);
        assert_int_equal(harness_bus_wait(f->bus, &sub.done, TIMEOUT_MS), 0);
        assert_msg_stamped(sub.msg, forger_id, 2);
        assert_true(same_file(plx_msg_get_fd(sub.msg, 0), memfd));
        sub.msg = plx_msg_unref(sub.msg);

        /* A CALL likewise, without fds: n_fds is stamped 0. */
        h = (Plexus__Header) PLEXUS__HEADER__INIT;
        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = 4;
        h.destination = (char *)plx_bus_get_unique_id(f->bus);
        h.member = (char *)"Forged";
        assert_int_equal(raw_send_forged(forger, &h, NULL, 0), 0);
        assert_int_equal(harness_bus_wait(f->bus, &call.done, TIMEOUT_MS), 0);
        assert_msg_stamped(call.msg, forger_id, 0);
        assert_int_equal(plx_msg_reply(call.msg, "ok", 2), 0);
        plx_msg_unref(call.msg);
        assert_int_equal(harness_bus_flush(f->bus, TIMEOUT_MS), 0);
        assert_int_equal(raw_recv(forger, frame, TIMEOUT_MS), 1);
        assert_int_equal(frame->header->kind, PLEXUS__KIND__KIND_REPLY);
        assert_int_equal(frame->header->reply_serial, 4);
        assert_string_equal(frame->header->sender, plx_bus_get_unique_id(f->bus));
        assert_int_equal(frame->header->sender_pid, getpid());

        /* A REPLY likewise, with one fd. */
        assert_int_equal(plx_bus_call_async(f->bus, NULL, forger_id, "Ask", NULL, 0, PLX_TIMEOUT_DEFAULT, on_hold,
                                            &answer), 0);
        assert_int_equal(harness_bus_flush(f->bus, TIMEOUT_MS), 0);
        assert_int_equal(raw_recv(forger, frame, TIMEOUT_MS), 1);
        assert_int_equal(frame->header->kind, PLEXUS__KIND__KIND_CALL);
        h = (Plexus__Header) PLEXUS__HEADER__INIT;
        h.kind = PLEXUS__KIND__KIND_REPLY;
        h.serial = 5;
        h.reply_serial = frame->header->serial;
        h.destination = (char *)plx_bus_get_unique_id(f->bus);
        assert_int_equal(raw_send_forged(forger, &h, fds, 1), 0);
        assert_int_equal(harness_bus_wait(f->bus, &answer.done, TIMEOUT_MS), 0);
        assert_int_equal(plx_msg_get_kind(answer.msg), PLX_MSG_REPLY);
        assert_msg_stamped(answer.msg, forger_id, 1);
        plx_msg_unref(answer.msg);

        close(forger);
        close(watcher);
        close(memfd);
        raw_frame_free(frame);
}

/* --- The kernel's limit on fds in flight ------------------------------------------------------ */

/*
 * Fds sent but not yet received count against the sending user: a sender
 * without CAP_SYS_RESOURCE whose user has more than its RLIMIT_NOFILE in
 * flight gets ETOOMANYREFS from sendmsg(). On a per-user bus broker and
 * clients are that one unprivileged user, and a slow reader makes the fds
 * pile up. That is a refusal of one frame, never a reason to drop a
 * connection: neither the sender's (libplexus) nor the receiver's (broker).
 */

typedef struct InflightArgs {
        const char *address;
} InflightArgs;

#define INFLIGHT_FDS_PER_FRAME 200
#define INFLIGHT_SOFT_LIMIT 1024

/*
 * As uid UNPRIVILEGED_UID (if we are root) with the usual soft limit of
 * 1024 fds: "ready"; on 's' sends frames of 200 fds (the broker is stopped,
 * so they stay in flight) until one fails, "sent <n> <error>"; on 'c'
 * (broker running again) "ping <result>".
 */
static int inflight_client_main(int report_fd, int control_fd, void *userdata) {
        InflightArgs *a = userdata;
        _cleanup_bus_ plx_bus *bus = NULL;
        struct rlimit rl = { .rlim_cur = INFLIGHT_SOFT_LIMIT, .rlim_max = INFLIGHT_SOFT_LIMIT };
        int fds[INFLIGHT_FDS_PER_FRAME], memfd, r = 0, n;
        char c;

        if (geteuid() == 0 && (setgroups(0, NULL) < 0 || setresgid(UNPRIVILEGED_UID, UNPRIVILEGED_UID,
                                                                   UNPRIVILEGED_UID) < 0 ||
                               setresuid(UNPRIVILEGED_UID, UNPRIVILEGED_UID, UNPRIVILEGED_UID) < 0))
                child_fail("cannot drop root: %m");
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                child_fail("setrlimit: %m");
        memfd = make_memfd("in flight");
        child_assert(memfd >= 0);
        for (size_t i = 0; i < ELEMENTS(fds); i++)
                fds[i] = memfd;

        r = plx_bus_new(&bus, a->address, "inflight-client");
        if (r < 0)
                child_fail("plx_bus_new: %s", strerror(-r));
        harness_report(report_fd, "ready");

        if (read(control_fd, &c, 1) != 1 || c != 's')
                child_fail("expected 's'");
        /* 20 frames are 4000 fds in flight: far beyond our limit of 1024. */
        for (n = 0; n < 20; n++) {
                r = plx_bus_publish_with_fds(bus, "inflight/x", "x", 1, fds, ELEMENTS(fds));
                if (r < 0)
                        break;
        }
        harness_report(report_fd, "sent %d %d", n, r);

        if (read(control_fd, &c, 1) != 1 || c != 'c')
                child_fail("expected 'c'");
        r = plx_bus_call(bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL);
        harness_report(report_fd, "ping %d", r);
        close(memfd);
        return 0;
}

/*
 * The kernel's limit on fds in flight depends on RLIMIT_NOFILE, which
 * valgrind adjusts for the processes it runs (it keeps fds of its own), so
 * these two tests measure valgrind rather than Plexus there.
 */
static bool under_valgrind(void) {
        const char *preload = getenv("LD_PRELOAD");
        const char *wrapper = getenv("PLEXUS_TEST_BROKER_WRAPPER");

        return (preload && strstr(preload, "vgpreload")) || (wrapper && strstr(wrapper, "valgrind"));
}

static void test_client_inflight_limit(void **state) {
        Fixture *f = *state;
        HarnessChild *c;
        InflightArgs args = { .address = f->h->address };
        char line[128];
        int n, r;

        if (under_valgrind()) {
                fprintf(stderr, "SKIPPED: fds-in-flight limits under valgrind\n");
                skip();
        }

        /* Our child drops root: it must reach the socket (mkdtemp() made the directory 0700). */
        assert_int_equal(chmod(f->h->dir, 0755), 0);
        c = fixture_fork(f, inflight_client_main, &args);
        expect_line(c, "ready");

        /* The broker reads nothing: the client's frames and their fds stay in flight. */
        assert_int_equal(kill(f->h->broker_pid, SIGSTOP), 0);
        assert_int_equal(harness_write_byte(c->control_fd, 's'), 0);
        assert_true(harness_read_line(c->report_fd, line, sizeof(line), TIMEOUT_MS) > 0);
        assert_int_equal(kill(f->h->broker_pid, SIGCONT), 0);
        assert_int_equal(sscanf(line, "sent %d %d", &n, &r), 2);
        fprintf(stderr, "client sent %d frames of %d fds, then %d (%s)\n", n, INFLIGHT_FDS_PER_FRAME, r,
                strerror(-r));
        assert_true(n > 0);
        if (r == -ECONNRESET)
                fail_msg("ETOOMANYREFS (%d fds in flight for the user, soft limit %d) made libplexus drop "
                         "the connection: plx_bus_publish_with_fds() returned -ECONNRESET after %d frames",
                         n * INFLIGHT_FDS_PER_FRAME, INFLIGHT_SOFT_LIMIT, n);

        /* The connection still works once the broker reads again. */
        assert_int_equal(harness_write_byte(c->control_fd, 'c'), 0);
        expect_line(c, "ping 0");
        assert_int_equal(harness_child_wait(c, TIMEOUT_MS), 0);
}

static void test_broker_inflight_limit(void **state) {
        Fixture *f = *state;
        _cleanup_bus_ plx_bus *sub = NULL;
        SlowState slow = {};
        Errors errors = {};
        int fds[INFLIGHT_FDS_PER_FRAME], memfd, r;

        if (!f)
                skip();
        if (under_valgrind()) {
                fprintf(stderr, "SKIPPED: fds-in-flight limits under valgrind\n");
                skip();
        }
        memfd = make_memfd("flood");
        assert_true(memfd >= 0);
        for (size_t i = 0; i < ELEMENTS(fds); i++)
                fds[i] = memfd;

        assert_int_equal(plx_bus_new(&sub, f->h->address, "slow"), 0);
        assert_int_equal(plx_bus_subscribe(sub, NULL, "slow/#", on_slow, &slow), 0);
        plx_bus_set_error_handler(f->bus, on_error, &errors);

        /* sub reads nothing meanwhile: the broker's fds pile up in its socket. */
        for (int i = 0; i < 20; i++) {
                assert_int_equal(plx_bus_publish_with_fds(f->bus, "slow/data", "d", 1, fds, ELEMENTS(fds)), 0);
                assert_int_equal(harness_bus_flush(f->bus, TIMEOUT_MS), 0);
                sync_bus(f->bus);
        }
        assert_int_equal(harness_bus_drain(f->bus), 0);
        fprintf(stderr, "publisher: %u QueueFull, %u FdsRejected, %u other errors\n", errors.n_queue_full,
                errors.n_fds_rejected, errors.n_other);

        /* The subscriber was slow, not wrong: it stays connected and sees the gap. */
        assert_int_equal(plx_bus_publish(f->bus, "slow/end", "e", 1), 0);
        assert_int_equal(harness_bus_flush(f->bus, TIMEOUT_MS), 0);
        r = harness_bus_wait(sub, &slow.done, TIMEOUT_MS);
        fprintf(stderr, "subscriber: %u received, %llu missed, then %d\n", slow.n_received,
                (unsigned long long)plx_bus_get_n_missed(sub), r);
        if (r == -ECONNRESET) {
                /* Let go of what cmocka's longjmp would leak, then fail. */
                plx_bus_set_error_handler(f->bus, NULL, NULL);
                sub = plx_bus_free(sub);
                close(memfd);
                fail_msg("the broker disconnected a slow subscriber when sendmsg() failed with ETOOMANYREFS "
                         "(its user's fds in flight beyond its RLIMIT_NOFILE); %u of 20 signals arrived, the "
                         "publisher got %u errors for the rest", slow.n_received,
                         errors.n_queue_full + errors.n_fds_rejected);
        }
        assert_int_equal(r, 0);
        assert_int_equal(plx_bus_call(sub, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        /* Nothing lost silently: each signal it missed was reported to the publisher. */
        assert_int_equal(slow.n_received + errors.n_queue_full + errors.n_fds_rejected, 20);
        plx_bus_set_error_handler(f->bus, NULL, NULL);
        close(memfd);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                FD_TEST(test_pipe_and_memfd),
                FD_TEST(test_signal_three_subscribers),
                FD_TEST(test_fd_counts_after_1000),
                FD_TEST(test_broker_refuses_fds),
                cmocka_unit_test_setup_teardown(test_dropped_at_fd_quota, fixture_setup_small_quota,
                                                fixture_teardown),
                FD_TEST(test_ctrunc_fds_rejected),
                FD_TEST(test_emfile_accept),
                FD_TEST(test_253_fds),
                FD_TEST(test_credentials),
                FD_TEST(test_forged_fields),
                cmocka_unit_test_setup_teardown(test_client_inflight_limit, fixture_setup_open, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_broker_inflight_limit, fixture_setup_unprivileged,
                                                fixture_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
