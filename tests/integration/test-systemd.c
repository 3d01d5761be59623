/*
 * plexusd as a systemd service, seen from outside: socket activation (by
 * systemd-socket-activate, and by a listening socket this test makes and
 * passes the way systemd does), a restart that loses nobody waiting in the
 * backlog, sd_notify() messages on a NOTIFY_SOCKET this test owns (READY,
 * STATUS, RELOADING with MONOTONIC_USEC, WATCHDOG, STOPPING), reloading the
 * configuration file on SIGHUP, shutdown with busy clients, and
 * `systemd-analyze verify` on the unit files.
 *
 * Every test starts its own plexusd (spawn()), not harness_broker_start():
 * they need fd 3, environment variables and the broker's stderr, which goes
 * to "<dir>/plexusd.log" and is shown by the teardown. The environment of a
 * spawned broker is cleaned of LISTEN_*, NOTIFY_SOCKET and WATCHDOG_* (the
 * test runner itself may run under systemd), $PLEXUS_BUS_ADDRESS points
 * into the test directory, so that a broker that wrongly ignores its passed
 * socket can never touch /run/plexus/bus, and --config names a file in the
 * test directory, so that /etc/plexus/plexusd.conf never changes a limit.
 *
 * Waits are bounded; timing checks have a lower bound where the broker must
 * wait (the flush deadline) and a scaled slack above.
 */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

#include "harness.h"
#include "raw.h"
#include "util.h"

#define N_CHILDREN 4

typedef struct Fixture {
        Harness h;                      /* dir, address; broker_pid is the plexusd running now */
        int n_fds;                      /* open before setup */
        int listen_fd;                  /* our own listening socket at h.address, or -1 */
        int notify_fd;                  /* our NOTIFY_SOCKET, or -1 */
        char notify_path[320];
        char config_path[320];
        char log_path[320];             /* stderr of every plexusd of the test, appended */
        char default_address[320];      /* $PLEXUS_BUS_ADDRESS of spawned brokers: must stay unused */
        unsigned n_watchdog;            /* WATCHDOG=1 datagrams received */
        HarnessChild children[N_CHILDREN]; /* killed and reaped by the teardown */
} Fixture;

/* --- Processes ------------------------------------------------------------ */

enum {
        SPAWN_LISTEN_FD = 1u << 0,      /* pass listen_fd as fd 3 with LISTEN_FDS=1, LISTEN_PID */
        SPAWN_NOTIFY = 1u << 1,         /* NOTIFY_SOCKET=notify_path */
        SPAWN_WATCHDOG = 1u << 2,       /* WATCHDOG_USEC=200000, WATCHDOG_PID=<its pid> */
};

#define WATCHDOG_USEC 200000
#define WATCHDOG_USEC_STR "200000"

typedef struct Argv {
        char *argv[64];
        size_t n;
        char pool[4096];                /* strings made by argv_addf() */
        size_t pool_used;
} Argv;

static void argv_add(Argv *a, const char *s) {
        assert_true(a->n + 1 < ELEMENTSOF(a->argv));
        a->argv[a->n++] = (char *)s;
        a->argv[a->n] = NULL;
}

static void argv_addf(Argv *a, const char *fmt, ...) {
        char *s = a->pool + a->pool_used;
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(s, sizeof(a->pool) - a->pool_used, fmt, ap);
        va_end(ap);
        assert_true(n >= 0 && (size_t)n < sizeof(a->pool) - a->pool_used);
        a->pool_used += (size_t)n + 1;
        argv_add(a, s);
}

/*
 * [$PLEXUS_TEST_BROKER_WRAPPER...] $PLEXUSD [-v] --config <dir>/plexusd.conf:
 * as harness_broker_spawn() runs it, but never reading /etc/plexus/plexusd.conf.
 */
static void argv_add_plexusd(Fixture *f, Argv *a) {
        const char *wrapper = getenv("PLEXUS_TEST_BROKER_WRAPPER");
        const char *plexusd = harness_plexusd();

        if (!plexusd)
                fail_msg("PLEXUSD is not set; run the tests through meson test");
        if (wrapper && *wrapper) {
                char copy[512], *save = NULL;

                snprintf(copy, sizeof(copy), "%s", wrapper);
                for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save))
                        argv_addf(a, "%s", w);
        }
        argv_add(a, plexusd);
        if (getenv("PLEXUS_TEST_VERBOSE"))
                argv_add(a, "-v");
        argv_add(a, "--config");
        argv_add(a, f->config_path);
}

/* The usual broker command line: -a <address> unless it gets a socket passed. */
static void argv_broker(Fixture *f, Argv *a, unsigned flags) {
        argv_add_plexusd(f, a);
        if (!(flags & SPAWN_LISTEN_FD)) {
                argv_add(a, "-a");
                argv_add(a, f->h.address);
        }
}

/*
 * Fork and exec @a as the broker: stderr to the log, fds as systemd passes
 * them, environment as @flags say. Sets f->h.broker_pid.
 */
static void spawn_argv(Fixture *f, Argv *a, unsigned flags) {
        pid_t pid;

        fflush(NULL);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char num[32];
                sigset_t none;
                int fd;

                prctl(PR_SET_PDEATHSIG, SIGTERM);
                signal(SIGPIPE, SIG_DFL);
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);

                fd = open(f->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
                if (fd < 0 || dup2(fd, STDERR_FILENO) < 0)
                        _exit(127);
                close(fd);

                unsetenv("LISTEN_FDS");
                unsetenv("LISTEN_PID");
                unsetenv("LISTEN_FDNAMES");
                unsetenv("NOTIFY_SOCKET");
                unsetenv("WATCHDOG_USEC");
                unsetenv("WATCHDOG_PID");
                setenv("PLEXUS_BUS_ADDRESS", f->default_address, 1);
                snprintf(num, sizeof(num), "%d", (int)getpid());

                if (flags & SPAWN_LISTEN_FD) {
                        /* dup2() onto itself would keep O_CLOEXEC. */
                        if (f->listen_fd == 3) {
                                if (fcntl(3, F_SETFD, 0) < 0)
                                        _exit(127);
                        } else if (dup2(f->listen_fd, 3) < 0) {
                                _exit(127);
                        }
                        close_range(4, ~0U, 0);
                        setenv("LISTEN_FDS", "1", 1);
                        setenv("LISTEN_PID", num, 1);
                        setenv("LISTEN_FDNAMES", "plexus", 1);
                } else {
                        close_range(3, ~0U, 0);
                }
                if (flags & SPAWN_NOTIFY)
                        setenv("NOTIFY_SOCKET", f->notify_path, 1);
                if (flags & SPAWN_WATCHDOG) {
                        setenv("WATCHDOG_USEC", WATCHDOG_USEC_STR, 1);
                        setenv("WATCHDOG_PID", num, 1);
                }

                execvp(a->argv[0], a->argv);
                fprintf(stderr, "cannot execute %s: %m\n", a->argv[0]);
                _exit(127);
        }
        f->h.broker_pid = pid;
}

static void spawn(Fixture *f, unsigned flags) {
        Argv a = {};

        argv_broker(f, &a, flags);
        spawn_argv(f, &a, flags);
}

/* Spawn and wait until the broker answers a Ping. */
static void start(Fixture *f, unsigned flags) {
        spawn(f, flags);
        assert_int_equal(harness_wait_for_broker(f->h.address, f->h.broker_pid,
                                                 harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
}

/* Reap the broker if it exits within @timeout_ms; unlike harness_broker_signal() it is not killed. */
static int broker_wait_exit(Fixture *f, int timeout_ms) {
        uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
        int status;

        assert_true(f->h.broker_pid > 0);
        for (;;) {
                pid_t r = waitpid(f->h.broker_pid, &status, WNOHANG);

                if (r == f->h.broker_pid) {
                        f->h.broker_pid = 0;
                        return harness_status_code(status);
                }
                if (r < 0)
                        return -errno;
                if (harness_now_ms() >= deadline)
                        return -ETIMEDOUT;
                usleep(1000);
        }
}

static bool broker_running(Fixture *f) {
        siginfo_t si = {};

        if (f->h.broker_pid <= 0)
                return false;
        if (waitid(P_PID, (id_t)f->h.broker_pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
                return false;
        return si.si_pid == 0;
}

/*
 * Wait until the broker sleeps in epoll_wait(), i.e. its loop is idle, as
 * /proc/<pid>/wchan shows. Return: false if /proc does not tell.
 */
static bool broker_wait_idle(Fixture *f) {
        uint64_t deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);
        char path[64], wchan[128];

        snprintf(path, sizeof(path), "/proc/%d/wchan", (int)f->h.broker_pid);
        for (;;) {
                ssize_t n;
                int fd;

                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return false;
                n = read(fd, wchan, sizeof(wchan) - 1);
                close(fd);
                wchan[n > 0 ? n : 0] = 0;
                if (strstr(wchan, "epoll"))
                        return true;
                /* "0": hidden from us (kernel.kptr_restrict and the like). */
                if (strcmp(wchan, "0") == 0 || harness_now_ms() >= deadline)
                        return false;
                usleep(1000);
        }
}

static bool find_program(const char *name, char *buf, size_t size) {
        const char *path = getenv("PATH");
        char copy[4096], *save = NULL;

        snprintf(copy, sizeof(copy), "%s", path && *path ? path : "/usr/bin:/bin");
        for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                snprintf(buf, size, "%s/%s", d, name);
                if (access(buf, X_OK) == 0)
                        return true;
        }
        return false;
}

static HarnessChild *child_slot(Fixture *f) {
        for (size_t i = 0; i < N_CHILDREN; i++)
                if (f->children[i].pid <= 0)
                        return &f->children[i];
        fail_msg("no free child slot");
        return NULL;
}

/* A forked client starts with copies of all our sockets: drop them, so only its own connection counts. */
static void child_close_other_fds(int report_fd, int control_fd) {
        for (int fd = 3; fd < 1024; fd++)
                if (fd != report_fd && fd != control_fd)
                        close(fd);
}

/* --- Files ---------------------------------------------------------------- */

static void write_file(const char *path, const char *content) {
        char tmp[400];
        FILE *fp;

        /* Replaced whole, so a broker reading it never sees half a file. */
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        fp = fopen(tmp, "we");
        assert_non_null(fp);
        assert_true(fputs(content, fp) >= 0);
        assert_int_equal(fclose(fp), 0);
        assert_int_equal(rename(tmp, path), 0);
}

/* The whole file, NUL-terminated, to free(); "" if it does not exist. */
static char *read_file(const char *path) {
        char *buf = NULL;
        size_t size = 0;
        FILE *fp, *mem;
        char chunk[4096];
        size_t n;

        mem = open_memstream(&buf, &size);
        assert_non_null(mem);
        fp = fopen(path, "re");
        if (fp) {
                while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
                        fwrite(chunk, 1, n, mem);
                fclose(fp);
        }
        fclose(mem);
        return buf;
}

static unsigned count_substr(const char *hay, const char *needle) {
        unsigned n = 0;

        for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

static unsigned log_count(Fixture *f, const char *needle) {
        char *log = read_file(f->log_path);
        unsigned n = count_substr(log, needle);

        free(log);
        return n;
}

/* Wait until the brokers' stderr holds @needle at least @n times. */
static bool log_wait(Fixture *f, const char *needle, unsigned n, int timeout_ms) {
        uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;

        while (log_count(f, needle) < n) {
                if (harness_now_ms() >= deadline)
                        return false;
                usleep(5000);
        }
        return true;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        (void)st;
        (void)type;
        (void)ftw;
        remove(path);
        return 0;
}

static void rm_rf(const char *path) {
        (void)nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static bool is_socket_file(const char *path) {
        struct stat st;

        return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* --- Sockets -------------------------------------------------------------- */

/* What systemd does for ListenSequentialPacket=: our socket, plexusd only borrows it. */
static void listen_socket_open(Fixture *f, int type) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        assert_true(strlen(f->h.address) < sizeof(sa.sun_path));
        strcpy(sa.sun_path, f->h.address);
        f->listen_fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
        assert_true(f->listen_fd >= 0);
        assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(f->listen_fd, SOMAXCONN), 0);
}

/*
 * Connections waiting in the accept queue of our listening socket, asked from
 * the kernel by inode through sock_diag (what `ss -xl` shows as Recv-Q).
 *
 * Return: the count, or a negative errno (e.g. no unix_diag in this kernel).
 */
static int backlog_length(int listen_fd) {
        struct {
                struct nlmsghdr nlh;
                struct unix_diag_req req;
        } msg = {};
        union {
                struct nlmsghdr nlh;
                char buf[8192];
        } resp;
        struct sockaddr_nl nladdr = { .nl_family = AF_NETLINK };
        struct stat st;
        struct nlmsghdr *h;
        ssize_t n;
        int fd, r = -ENODATA;

        if (fstat(listen_fd, &st) < 0)
                return -errno;
        fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
        if (fd < 0)
                return -errno;

        msg.nlh.nlmsg_len = sizeof(msg);
        msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
        msg.nlh.nlmsg_flags = NLM_F_REQUEST;
        msg.req.sdiag_family = AF_UNIX;
        msg.req.udiag_states = ~0u;
        msg.req.udiag_ino = (uint32_t)st.st_ino;
        msg.req.udiag_show = UDIAG_SHOW_RQLEN;
        msg.req.udiag_cookie[0] = INET_DIAG_NOCOOKIE;
        msg.req.udiag_cookie[1] = INET_DIAG_NOCOOKIE;
        if (sendto(fd, &msg, sizeof(msg), 0, (struct sockaddr *)&nladdr, sizeof(nladdr)) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        n = recv(fd, &resp, sizeof(resp), 0);
        if (n < 0)
                r = -errno;
        close(fd);
        if (n < 0)
                return r;

        for (h = &resp.nlh; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
                struct unix_diag_msg *m;
                struct rtattr *a;
                size_t len;

                if (h->nlmsg_type == NLMSG_ERROR) {
                        struct nlmsgerr *e = NLMSG_DATA(h);

                        return e->error < 0 ? e->error : -EPROTO;
                }
                if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY)
                        continue;
                m = NLMSG_DATA(h);
                a = (struct rtattr *)(m + 1);
                len = h->nlmsg_len - NLMSG_LENGTH(sizeof(*m));
                for (; RTA_OK(a, len); a = RTA_NEXT(a, len))
                        if (a->rta_type == UNIX_DIAG_RQLEN) {
                                struct unix_diag_rqlen *q = RTA_DATA(a);

                                /* For a listening socket: the queued connections. */
                                return (int)q->udiag_rqueue;
                        }
        }
        return r;
}

/* Wait until @n connections wait in our backlog; false if sock_diag cannot tell. */
static bool backlog_wait(Fixture *f, int n) {
        uint64_t deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);
        int r;

        while ((r = backlog_length(f->listen_fd)) != n) {
                if (r < 0) {
                        fprintf(stderr, "sock_diag cannot report the backlog (%s); waiting 300 ms instead\n",
                                strerror(-r));
                        usleep(300 * 1000);
                        return false;
                }
                if (harness_now_ms() >= deadline)
                        fail_msg("backlog holds %d connections, expected %d", r, n);
                usleep(2000);
        }
        return true;
}

static void notify_open(Fixture *f) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int one = 1;

        assert_true(strlen(f->notify_path) < sizeof(sa.sun_path));
        strcpy(sa.sun_path, f->notify_path);
        f->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        assert_true(f->notify_fd >= 0);
        assert_int_equal(bind(f->notify_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        /* The kernel stamps each datagram with the sender's pid, as systemd checks it. */
        assert_int_equal(setsockopt(f->notify_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)), 0);
}

/*
 * Receive one notification within @timeout_ms into @buf; *@ret_pid gets the
 * sender's pid.
 *
 * Return: its length, -ETIMEDOUT, or a negative errno.
 */
static int notify_recv(Fixture *f, char *buf, size_t size, pid_t *ret_pid, int timeout_ms) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(struct ucred))];
        } control;
        struct iovec iov = { .iov_base = buf, .iov_len = size - 1 };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = &control,
                .msg_controllen = sizeof(control),
        };
        struct pollfd pfd = { .fd = f->notify_fd, .events = POLLIN };
        struct cmsghdr *c;
        ssize_t n;
        int r;

        do
                r = poll(&pfd, 1, timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        if (r == 0)
                return -ETIMEDOUT;
        n = recvmsg(f->notify_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0)
                return -errno;
        buf[n] = 0;

        *ret_pid = 0;
        for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
                        struct ucred uc;

                        memcpy(&uc, CMSG_DATA(c), sizeof(uc));
                        *ret_pid = uc.pid;
                }

        if (strcmp(buf, "WATCHDOG=1") == 0) {
                f->n_watchdog++;
        } else {
                char shown[512];

                snprintf(shown, sizeof(shown), "%s", buf);
                for (char *p = shown; *p; p++)
                        if (*p == '\n')
                                *p = '|';
                fprintf(stderr, "notify from %d: %s\n", (int)*ret_pid, shown);
        }
        return (int)n;
}

static bool has_line(const char *msg, const char *prefix) {
        size_t l = strlen(prefix);

        for (const char *p = msg; p; p = strchr(p, '\n')) {
                if (*p == '\n')
                        p++;
                if (strncmp(p, prefix, l) == 0)
                        return true;
        }
        return false;
}

/* The value after "@key=" in a notification, or NULL. */
static const char *line_value(const char *msg, const char *key) {
        size_t l = strlen(key);

        for (const char *p = msg; p; p = strchr(p, '\n')) {
                if (*p == '\n')
                        p++;
                if (strncmp(p, key, l) == 0 && p[l] == '=')
                        return p + l + 1;
        }
        return NULL;
}

/*
 * Skip notifications until one has a line starting with @prefix; copy it to
 * @ret. Every notification must come from the broker's pid.
 */
static int notify_expect(Fixture *f, const char *prefix, char *ret, size_t size, int timeout_ms) {
        uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
        char buf[1024];

        for (;;) {
                uint64_t now = harness_now_ms();
                pid_t pid;
                int r;

                r = notify_recv(f, buf, sizeof(buf), &pid, now >= deadline ? 0 : (int)(deadline - now));
                if (r < 0)
                        return r;
                if (f->h.broker_pid > 0)
                        assert_int_equal(pid, f->h.broker_pid);
                if (has_line(buf, prefix)) {
                        if (ret)
                                snprintf(ret, size, "%s", buf);
                        return 0;
                }
        }
}

/* Take what is queued on the notify socket now. */
static void notify_drain(Fixture *f) {
        char buf[1024];
        pid_t pid;

        while (notify_recv(f, buf, sizeof(buf), &pid, 0) >= 0)
                ;
}

/* Count WATCHDOG=1 over @ms. */
static unsigned watchdog_count(Fixture *f, int ms) {
        uint64_t deadline = harness_now_ms() + (uint64_t)ms;
        unsigned before = f->n_watchdog;
        char buf[1024];

        for (;;) {
                uint64_t now = harness_now_ms();
                pid_t pid;

                if (now >= deadline)
                        break;
                (void)notify_recv(f, buf, sizeof(buf), &pid, (int)(deadline - now));
        }
        return f->n_watchdog - before;
}

typedef struct Status {
        size_t n_clients;
        size_t n_names;
        uint64_t n_routed;
} Status;

static bool status_parse(const char *msg, Status *ret) {
        const char *v = line_value(msg, "STATUS");

        return v && sscanf(v, "%zu clients, %zu names, %" SCNu64 " messages routed", &ret->n_clients,
                           &ret->n_names, &ret->n_routed) == 3;
}

/* Wait for a STATUS= line saying @n_clients clients; STATUS is refreshed every second. */
static void status_wait_clients(Fixture *f, size_t n_clients, Status *ret) {
        uint64_t deadline = harness_now_ms() + 2500u + (uint64_t)harness_timeout_ms(500);
        char buf[1024];

        for (;;) {
                uint64_t now = harness_now_ms();
                Status s;
                int r;

                r = notify_expect(f, "STATUS=", buf, sizeof(buf), now >= deadline ? 0 : (int)(deadline - now));
                if (r == -ETIMEDOUT)
                        fail_msg("no STATUS= with %zu clients within 2.5 s", n_clients);
                assert_int_equal(r, 0);
                if (!status_parse(buf, &s))
                        fail_msg("STATUS= not understood: %s", buf);
                if (s.n_clients == n_clients) {
                        *ret = s;
                        return;
                }
        }
}

/* --- Fixture -------------------------------------------------------------- */

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof(*f));
        FILE *fp;

        if (!f)
                return -1;
        signal(SIGPIPE, SIG_IGN);
        f->n_fds = harness_count_fds();
        f->listen_fd = -1;
        f->notify_fd = -1;
        for (size_t i = 0; i < N_CHILDREN; i++)
                f->children[i] = (HarnessChild) HARNESS_CHILD_NULL;
        if (harness_prepare(&f->h) < 0) {
                free(f);
                return -1;
        }
        snprintf(f->notify_path, sizeof(f->notify_path), "%s/notify", f->h.dir);
        snprintf(f->config_path, sizeof(f->config_path), "%s/plexusd.conf", f->h.dir);
        snprintf(f->log_path, sizeof(f->log_path), "%s/plexusd.log", f->h.dir);
        snprintf(f->default_address, sizeof(f->default_address), "%s/default-bus", f->h.dir);
        /* Defaults unless a test writes limits: each broker gets --config with this file. */
        fp = fopen(f->config_path, "we");
        if (!fp || fputs("# plexusd.conf of one test\n", fp) < 0 || fclose(fp) != 0) {
                rm_rf(f->h.dir);
                free(f);
                return -1;
        }
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        char *log;
        int n, ret = 0;

        for (size_t i = 0; i < N_CHILDREN; i++)
                if (f->children[i].pid > 0) {
                        kill(f->children[i].pid, SIGKILL);
                        harness_child_wait(&f->children[i], harness_timeout_ms(HARNESS_TIMEOUT_MS));
                }
        if (f->h.broker_pid > 0)
                harness_broker_stop(&f->h);
        if (f->listen_fd >= 0)
                close(f->listen_fd);
        if (f->notify_fd >= 0)
                close(f->notify_fd);

        log = read_file(f->log_path);
        if (*log)
                fprintf(stderr, "--- stderr of plexusd ---\n%s--- end ---\n", log);
        free(log);

        /* Nothing ever appears at the default address: the passed socket was used. */
        if (access(f->default_address, F_OK) == 0) {
                fprintf(stderr, "teardown: a broker created %s instead of using its socket\n",
                        f->default_address);
                ret = -1;
        }

        rm_rf(f->h.dir);
        f->h.dir[0] = 0;
        n = harness_count_fds();
        if (n != f->n_fds) {
                fprintf(stderr, "teardown: %d fds open, %d before the test: leaked fds\n", n, f->n_fds);
                ret = -1;
        }
        free(f);
        return ret;
}

/* --- Traffic -------------------------------------------------------------- */

#define STALL_FRAMES 256
#define STALL_PAYLOAD 8192

static int ignore_signal(plx_msg *m, void *userdata) {
        return 0;
}

/* Publish @n frames of STALL_PAYLOAD bytes on @topic, each starting with its index; then a Ping. */
static void flood(plx_bus *pub, const char *topic, int n) {
        char payload[STALL_PAYLOAD];

        memset(payload, '.', sizeof(payload));
        for (int i = 0; i < n; i++) {
                int r, len;

                len = snprintf(payload, sizeof(payload), "%d", i);
                payload[len] = ' ';
                r = plx_bus_publish(pub, topic, payload, sizeof(payload));
                if (r == -ENOBUFS) {
                        assert_int_equal(harness_bus_flush(pub, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
                        r = plx_bus_publish(pub, topic, payload, sizeof(payload));
                }
                if (r < 0)
                        fail_msg("publish %d: %s", i, strerror(-r));
        }
        assert_int_equal(harness_bus_flush(pub, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        /* The broker routes a client's frames in order: once this is answered, all are queued. */
        assert_int_equal(plx_bus_call(pub, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
}

/*
 * A subscriber that never reads, sent more than its socket holds (2 MiB
 * against the ~200 KiB a unix socket buffers): its queue in the broker stays
 * non-empty, so a shutdown has to wait for the flush deadline.
 */
static void stall_subscriber(Fixture *f, plx_bus **ret_sub, plx_bus **ret_pub) {
        plx_bus *sub = NULL, *pub = NULL;

        assert_int_equal(plx_bus_new(&sub, f->h.address, "stalled-subscriber"), 0);
        assert_int_equal(plx_bus_subscribe(sub, NULL, "stall/#", ignore_signal, NULL), 0);
        assert_int_equal(plx_bus_new(&pub, f->h.address, "stall-publisher"), 0);
        flood(pub, "stall/data", STALL_FRAMES);
        *ret_sub = sub;
        *ret_pub = pub;
}

/* Process until the broker has closed the connection. */
static int bus_wait_closed(plx_bus *bus, int timeout_ms) {
        bool never = false;
        int r;

        r = harness_bus_wait(bus, &never, timeout_ms);
        return r == -ECONNRESET ? 0 : (r == 0 ? -EPROTO : r);
}

/* --- 1. systemd-socket-activate ------------------------------------------ */

static void test_socket_activate(void **state) {
        static const char *const passed[] = { "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS" };
        Fixture *f = *state;
        _cleanup_bus_ plx_bus *bus = NULL;
        char tool[512], ready[256];
        uint64_t deadline;
        Argv a = {};

        if (!find_program("systemd-socket-activate", tool, sizeof(tool))) {
                fprintf(stderr, "SKIP: systemd-socket-activate (package systemd) is not installed\n");
                skip();
        }
        notify_open(f);

        /* It passes on only TERM, PATH, USER, HOME and what -E names. */
        argv_add(&a, tool);
        argv_add(&a, "-l");
        argv_add(&a, f->h.address);
        argv_add(&a, "--seqpacket");
        argv_add(&a, "-E");
        argv_addf(&a, "PLEXUS_BUS_ADDRESS=%s", f->default_address);
        argv_add(&a, "-E");
        argv_addf(&a, "NOTIFY_SOCKET=%s", f->notify_path);
        for (size_t i = 0; i < ELEMENTSOF(passed); i++)
                if (getenv(passed[i])) {
                        argv_add(&a, "-E");
                        argv_addf(&a, "%s=%s", passed[i], getenv(passed[i]));
                }
        argv_add(&a, "--");
        argv_add_plexusd(f, &a);
        spawn_argv(f, &a, 0);

        /*
         * The tool listens first and starts plexusd on the first connection.
         * Between its bind() and listen() a connect is refused: try again.
         */
        deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);
        for (;;) {
                int r = plx_bus_new(&bus, f->h.address, "activated");

                if (r == 0)
                        break;
                if (r != -ENOENT && r != -ECONNREFUSED)
                        fail_msg("connecting through systemd-socket-activate: %s", strerror(-r));
                assert_true(broker_running(f));
                assert_true(harness_now_ms() < deadline);
                usleep(2000);
        }
        assert_int_equal(plx_bus_call(bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        /* It execs plexusd in place: the notifications come from the pid we started. */
        assert_int_equal(notify_expect(f, "READY=1", ready, sizeof(ready),
                                       harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        /* plexusd says "listening on" only for a socket it made itself. */
        assert_int_equal(log_count(f, "listening on"), 0);

        assert_int_equal(harness_broker_signal(&f->h, SIGTERM), 0);
        assert_int_equal(bus_wait_closed(bus, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);

        /* The socket file belongs to the activator: plexusd leaves it. */
        assert_true(is_socket_file(f->h.address));
}

/* A socket of the wrong type is refused with a message, not used. */
static void test_activation_wrong_socket(void **state) {
        Fixture *f = *state;

        listen_socket_open(f, SOCK_STREAM);
        spawn(f, SPAWN_LISTEN_FD);
        assert_int_equal(broker_wait_exit(f, harness_timeout_ms(HARNESS_TIMEOUT_MS)), EXIT_FAILURE);
        assert_true(log_count(f, "<3>the socket passed by systemd is not a listening AF_UNIX "
                                 "SOCK_SEQPACKET socket") == 1);
        assert_true(is_socket_file(f->h.address));
}

/* --- 2. Restart with clients in the backlog ------------------------------ */

static int on_echo(plx_msg *call, void *userdata) {
        const void *p;
        size_t n;

        p = plx_msg_get_payload(call, &n);
        return plx_msg_reply(call, p, n);
}

/*
 * Child: connect (this blocks in the handshake while no broker runs), then
 * serve "Echo" until told to quit.
 */
static int backlog_client(int report_fd, int control_fd, void *userdata) {
        const char *address = userdata;
        plx_bus *bus = NULL;
        uint64_t deadline;
        int r;

        child_close_other_fds(report_fd, control_fd);
        r = plx_bus_new(&bus, address, "backlog-client");
        child_assert_int_eq(r, 0);
        child_assert_int_eq(plx_bus_add_method(bus, NULL, "Echo", on_echo, NULL), 0);
        child_assert_int_eq(plx_bus_call(bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        child_assert_int_eq(harness_report(report_fd, "welcome %s", plx_bus_get_unique_id(bus)), 0);

        deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(30000);
        for (;;) {
                struct pollfd p[2] = {
                        { .fd = plx_bus_get_fd(bus), .events = (short)plx_bus_get_events(bus) },
                        { .fd = control_fd, .events = POLLIN },
                };
                char c;

                if (harness_poll_byte(control_fd, &c))
                        break;
                child_assert_int_eq(harness_bus_drain(bus), 0);
                child_assert(harness_now_ms() < deadline);
                poll(p, 2, 100);
        }
        plx_bus_free(bus);
        return 0;
}

static void expect_welcome(HarnessChild *c, char *id, size_t size) {
        char line[300];

        assert_true(harness_read_line(c->report_fd, line, sizeof(line), harness_timeout_ms(HARNESS_TIMEOUT_MS)) > 0);
        assert_true(strncmp(line, "welcome ", 8) == 0);
        snprintf(id, size, "%s", line + 8);
}

static void echo_check(plx_bus *bus, const char *id) {
        _cleanup_msg_ plx_msg *reply = NULL;
        const void *p;
        size_t n;

        assert_int_equal(plx_bus_call(bus, id, "Echo", "across restarts", 15, PLX_TIMEOUT_DEFAULT, &reply), 0);
        p = plx_msg_get_payload(reply, &n);
        assert_int_equal(n, 15);
        assert_memory_equal(p, "across restarts", 15);
}

static void test_restart_keeps_backlog(void **state) {
        Fixture *f = *state;
        _cleanup_bus_ plx_bus *early = NULL, *sub = NULL, *pub = NULL, *late = NULL;
        HarnessChild *draining, *down;
        RawFrame *frame;
        char id_draining[300], id_down[300], line[300];
        int raw_fd, r;
        bool diag;

        listen_socket_open(f, SOCK_SEQPACKET);
        notify_open(f);
        spawn(f, SPAWN_LISTEN_FD | SPAWN_NOTIFY);
        assert_int_equal(notify_expect(f, "READY=1", NULL, 0, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);

        assert_int_equal(plx_bus_new(&early, f->h.address, "before-restart"), 0);
        assert_int_equal(plx_bus_call(early, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        stall_subscriber(f, &sub, &pub);

        /* SIGTERM: the broker stops accepting and flushes for up to 2 s. */
        assert_int_equal(kill(f->h.broker_pid, SIGTERM), 0);
        assert_int_equal(notify_expect(f, "STOPPING=1", NULL, 0, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);

        /* A client that connects during the flush waits in our backlog. */
        draining = child_slot(f);
        assert_int_equal(harness_child_fork(draining, backlog_client, f->h.address), 0);
        diag = backlog_wait(f, 1);
        assert_true(broker_running(f));

        r = broker_wait_exit(f, 2000 + harness_timeout_ms(2000));
        assert_int_equal(r, 0);
        assert_true(is_socket_file(f->h.address));
        assert_int_equal(bus_wait_closed(early, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        early = plx_bus_free(early);
        sub = plx_bus_free(sub);
        pub = plx_bus_free(pub);

        /* While no broker runs: a libplexus client and a raw one that sends HELLO at once. */
        down = child_slot(f);
        assert_int_equal(harness_child_fork(down, backlog_client, f->h.address), 0);
        if (diag)
                backlog_wait(f, 2);
        raw_fd = raw_connect(f->h.address);
        assert_true(raw_fd >= 0);
        assert_int_equal(raw_send_hello(raw_fd, 1, PLX_PROTOCOL_VERSION), 0);
        if (diag)
                backlog_wait(f, 3);

        /* Nobody is welcomed without a broker. */
        assert_int_equal(harness_read_line(draining->report_fd, line, sizeof(line), 200), -ETIMEDOUT);
        assert_int_equal(harness_read_line(down->report_fd, line, sizeof(line), 0), -ETIMEDOUT);

        /* The next instance takes the same socket and everybody waiting in it. */
        spawn(f, SPAWN_LISTEN_FD | SPAWN_NOTIFY);
        expect_welcome(draining, id_draining, sizeof(id_draining));
        expect_welcome(down, id_down, sizeof(id_down));
        assert_string_not_equal(id_draining, id_down);

        frame = raw_frame_new();
        assert_non_null(frame);
        assert_int_equal(raw_recv(raw_fd, frame, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 1);
        assert_non_null(frame->header);
        assert_int_equal(frame->header->kind, PLEXUS__KIND__KIND_REPLY);
        assert_int_equal(frame->header->reply_serial, 1);
        raw_frame_free(frame);
        close(raw_fd);
        if (diag)
                backlog_wait(f, 0);

        /* Calls work, between clients of either generation. */
        assert_int_equal(plx_bus_new(&late, f->h.address, "after-restart"), 0);
        echo_check(late, id_draining);
        echo_check(late, id_down);

        assert_int_equal(harness_write_byte(draining->control_fd, 'q'), 0);
        assert_int_equal(harness_write_byte(down->control_fd, 'q'), 0);
        assert_int_equal(harness_child_wait(draining, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(harness_child_wait(down, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        late = plx_bus_free(late);

        assert_int_equal(harness_broker_signal(&f->h, SIGTERM), 0);
        assert_true(is_socket_file(f->h.address));
}

/*
 * A client that waits in the backlog when SIGTERM arrives is trying to
 * connect just as much as one that comes later: the next instance must
 * accept it, not the stopping one (which could only hang it up). The broker
 * is stopped (SIGSTOP) while idle, the client connects, SIGTERM is queued,
 * and the broker continues and sees both in one round.
 */
static void test_restart_backlog_at_sigterm(void **state) {
        Fixture *f = *state;
        _cleanup_bus_ plx_bus *late = NULL;
        HarnessChild *waiting;
        char id[300];
        uint64_t deadline;
        int n;

        listen_socket_open(f, SOCK_SEQPACKET);
        spawn(f, SPAWN_LISTEN_FD);
        assert_int_equal(harness_wait_for_broker(f->h.address, f->h.broker_pid,
                                                 harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        if (!broker_wait_idle(f))
                usleep(100 * 1000);

        assert_int_equal(kill(f->h.broker_pid, SIGSTOP), 0);
        deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);
        while (harness_process_state(f->h.broker_pid) != 'T') {
                assert_true(harness_now_ms() < deadline);
                usleep(1000);
        }
        waiting = child_slot(f);
        assert_int_equal(harness_child_fork(waiting, backlog_client, f->h.address), 0);
        backlog_wait(f, 1);
        assert_int_equal(kill(f->h.broker_pid, SIGTERM), 0);
        assert_int_equal(kill(f->h.broker_pid, SIGCONT), 0);
        assert_int_equal(broker_wait_exit(f, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);

        n = backlog_length(f->listen_fd);
        if (n == 0)
                fail_msg("the stopping broker accepted the connection that waited in the backlog when SIGTERM "
                         "arrived, and hung it up before its HELLO was answered (the client's plx_bus_new() "
                         "fails with ECONNREFUSED); it should have been left to the next instance");

        spawn(f, SPAWN_LISTEN_FD);
        expect_welcome(waiting, id, sizeof(id));
        assert_int_equal(plx_bus_new(&late, f->h.address, "after-restart"), 0);
        echo_check(late, id);
        assert_int_equal(harness_write_byte(waiting->control_fd, 'q'), 0);
        assert_int_equal(harness_child_wait(waiting, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        late = plx_bus_free(late);
        assert_int_equal(harness_broker_signal(&f->h, SIGTERM), 0);
}

/* --- 3. NOTIFY_SOCKET ----------------------------------------------------- */

static uint64_t monotonic_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* SIGHUP; require RELOADING=1 with a plausible MONOTONIC_USEC, then READY=1. */
static void reload_and_wait(Fixture *f) {
        char buf[1024];
        uint64_t before, after, t;
        const char *v;

        before = monotonic_usec();
        assert_int_equal(kill(f->h.broker_pid, SIGHUP), 0);
        assert_int_equal(notify_expect(f, "RELOADING=1", buf, sizeof(buf), harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        after = monotonic_usec();
        /* systemd wants both in one message. */
        v = line_value(buf, "MONOTONIC_USEC");
        if (!v)
                fail_msg("RELOADING=1 without MONOTONIC_USEC=: %s", buf);
        t = strtoull(v, NULL, 10);
        if (t < before || t > after)
                fail_msg("MONOTONIC_USEC=%" PRIu64 " is not between %" PRIu64 " and %" PRIu64, t, before, after);
        assert_int_equal(notify_expect(f, "READY=1", NULL, 0, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
}

static void test_notify(void **state) {
        Fixture *f = *state;
        _cleanup_bus_ plx_bus *c1 = NULL, *c2 = NULL, *c3 = NULL;
        Status s1, s3, s;
        char buf[1024];

        write_file(f->config_path, "[limits]\nmax_clients = 100\n");
        notify_open(f);
        spawn(f, SPAWN_NOTIFY);

        /* READY=1 means clients are served: the socket exists and answers right away. */
        assert_int_equal(notify_expect(f, "READY=1", buf, sizeof(buf), harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_true(is_socket_file(f->h.address));
        assert_int_equal(plx_bus_new(&c1, f->h.address, "notify-1"), 0);
        assert_int_equal(plx_bus_call(c1, PLX_BROKER, "Ping", NULL, 0, 1000 * 1000, NULL), 0);

        /* STATUS= follows the counts within the refresh interval. */
        status_wait_clients(f, 1, &s1);
        /* The name first: the first STATUS= with 3 clients must count it. */
        assert_int_equal(plx_bus_new(&c2, f->h.address, "notify-2"), 0);
        assert_int_equal(plx_bus_request_name(c2, "org.example.Status", 0), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_new(&c3, f->h.address, "notify-3"), 0);
        assert_int_equal(plx_bus_call(c3, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        status_wait_clients(f, 3, &s3);
        assert_int_equal(s3.n_names, s1.n_names + 1);
        assert_true(s3.n_routed > s1.n_routed);
        c2 = plx_bus_free(c2);
        c3 = plx_bus_free(c3);
        status_wait_clients(f, 1, &s);
        assert_int_equal(s.n_names, s1.n_names);
        assert_true(s.n_routed >= s3.n_routed);

        reload_and_wait(f);
        /* Clients stay. */
        assert_int_equal(plx_bus_call(c1, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);

        assert_int_equal(kill(f->h.broker_pid, SIGTERM), 0);
        assert_int_equal(notify_expect(f, "STOPPING=1", NULL, 0, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(broker_wait_exit(f, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        notify_drain(f);

        /* No WATCHDOG_USEC, no pings. */
        assert_int_equal(f->n_watchdog, 0);
}

static void test_watchdog(void **state) {
        Fixture *f = *state;
        uint64_t deadline;
        unsigned n;

        notify_open(f);
        spawn(f, SPAWN_NOTIFY | SPAWN_WATCHDOG);
        assert_int_equal(notify_expect(f, "READY=1", NULL, 0, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);

        /* Every WATCHDOG_USEC / 2 = 100 ms: about 10 a second (5 would be the full interval: too late). */
        n = watchdog_count(f, 1000);
        fprintf(stderr, "%u WATCHDOG=1 in 1 s\n", n);
        if (n < 7 || n > 15)
                fail_msg("%u WATCHDOG=1 in 1 s with WATCHDOG_USEC=%d, expected about 10", n, WATCHDOG_USEC);

        /* A loop that does not turn sends nothing. */
        assert_int_equal(kill(f->h.broker_pid, SIGSTOP), 0);
        deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);
        while (harness_process_state(f->h.broker_pid) != 'T') {
                assert_true(harness_now_ms() < deadline);
                usleep(1000);
        }
        notify_drain(f);
        n = watchdog_count(f, 500);
        assert_int_equal(kill(f->h.broker_pid, SIGCONT), 0);
        if (n != 0)
                fail_msg("%u WATCHDOG=1 while the broker was stopped", n);

        /* And pings resume with the loop. */
        n = f->n_watchdog;
        deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(1000);
        while (f->n_watchdog == n) {
                char buf[256];
                pid_t pid;

                assert_true(harness_now_ms() < deadline);
                (void)notify_recv(f, buf, sizeof(buf), &pid, 50);
        }

        assert_int_equal(kill(f->h.broker_pid, SIGTERM), 0);
        assert_int_equal(notify_expect(f, "STOPPING=1", NULL, 0, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(broker_wait_exit(f, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
}

/* --- 4. Reload ------------------------------------------------------------ */

static void expect_subscribe(plx_bus *bus, const char *pattern, int expected) {
        int r = plx_bus_subscribe(bus, NULL, pattern, ignore_signal, NULL);

        if (r != expected)
                fail_msg("subscribe %s: %s, expected %s", pattern, strerror(-r),
                         expected ? strerror(-expected) : "success");
}

static void test_reload(void **state) {
        static const struct {
                const char *content;
                const char *complaint;  /* in the error line */
        } broken[] = {
                { "[limits]\nmax_subscriptions = 8\nmax_subscriptons = 8\n", "unknown key max_subscriptons" },
                { "[limits]\nmax_subscriptions = lots\n", "max_subscriptions = \"lots\"" },
                { "[limits]\nmax_subscriptions = 0\n", "max_subscriptions = \"0\"" },
                { "[limits]\nmax_subscriptions 8\n", "line 2" },
        };
        Fixture *f = *state;
        _cleanup_bus_ plx_bus *c = NULL, *d = NULL;

        write_file(f->config_path, "[limits]\nmax_subscriptions = 2\n");
        notify_open(f);
        spawn(f, SPAWN_NOTIFY);
        assert_int_equal(notify_expect(f, "READY=1", NULL, 0, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);

        assert_int_equal(plx_bus_new(&c, f->h.address, "reload"), 0);
        expect_subscribe(c, "a/1", 0);
        expect_subscribe(c, "a/2", 0);
        expect_subscribe(c, "a/3", -EREMOTEIO);

        /* A higher limit applies to the connected client at once. */
        write_file(f->config_path, "[limits]\nmax_subscriptions = 4\n");
        reload_and_wait(f);
        assert_true(log_wait(f, "reload: configuration read from", 1, harness_timeout_ms(HARNESS_TIMEOUT_MS)));
        expect_subscribe(c, "a/3", 0);
        expect_subscribe(c, "a/4", 0);
        expect_subscribe(c, "a/5", -EREMOTEIO);

        /* A broken file is logged as an error and changes nothing. */
        for (size_t i = 0; i < ELEMENTSOF(broken); i++) {
                char *log;

                write_file(f->config_path, broken[i].content);
                reload_and_wait(f);
                if (!log_wait(f, "<3>reload: ", (unsigned)i + 1, harness_timeout_ms(HARNESS_TIMEOUT_MS)))
                        fail_msg("no error logged for a broken file: %s", broken[i].content);
                log = read_file(f->log_path);
                if (!strstr(log, broken[i].complaint))
                        fail_msg("the error for a broken file does not say \"%s\"", broken[i].complaint);
                free(log);
                assert_int_equal(log_count(f, "keeping the old configuration"), i + 1);

                assert_int_equal(plx_bus_call(c, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
                expect_subscribe(c, "a/5", -EREMOTEIO);
        }
        /* Also for a new client: the limit is still 4. */
        assert_int_equal(plx_bus_new(&d, f->h.address, "after-broken-reload"), 0);
        expect_subscribe(d, "b/1", 0);
        expect_subscribe(d, "b/2", 0);
        expect_subscribe(d, "b/3", 0);
        expect_subscribe(d, "b/4", 0);
        expect_subscribe(d, "b/5", -EREMOTEIO);
        assert_int_equal(log_count(f, "reload: configuration read from"), 1);

        c = plx_bus_free(c);
        d = plx_bus_free(d);
        assert_int_equal(harness_broker_signal(&f->h, SIGTERM), 0);
}

static void check_start_fails(Fixture *f, const char *complaint) {
        char buf[256];
        pid_t pid;
        char *log;

        notify_open(f);
        spawn(f, SPAWN_NOTIFY);
        assert_int_equal(broker_wait_exit(f, harness_timeout_ms(HARNESS_TIMEOUT_MS)), EXIT_FAILURE);
        log = read_file(f->log_path);
        if (!strstr(log, "<3>") || !strstr(log, f->config_path) || !strstr(log, complaint))
                fail_msg("plexusd did not say what is wrong with %s (\"%s\")", f->config_path, complaint);
        free(log);
        /* Neither ready nor listening. */
        assert_int_equal(notify_recv(f, buf, sizeof(buf), &pid, 0), -ETIMEDOUT);
        assert_int_equal(access(f->h.address, F_OK), -1);
}

static void test_config_missing(void **state) {
        Fixture *f = *state;

        assert_int_equal(unlink(f->config_path), 0);
        check_start_fails(f, "cannot open: No such file or directory");
}

static void test_config_broken(void **state) {
        Fixture *f = *state;

        write_file(f->config_path, "[limits]\nmax_subscriptions = many\n");
        check_start_fails(f, "max_subscriptions = \"many\"");
}

/* --- 5. SIGTERM with busy clients ---------------------------------------- */

static void test_sigterm_flush_deadline(void **state) {
        Fixture *f = *state;
        _cleanup_bus_ plx_bus *sub = NULL, *pub = NULL;
        uint64_t t0, elapsed;

        start(f, 0);
        stall_subscriber(f, &sub, &pub);

        t0 = harness_now_ms();
        assert_int_equal(kill(f->h.broker_pid, SIGTERM), 0);
        assert_int_equal(broker_wait_exit(f, 2000 + harness_timeout_ms(1500)), 0);
        elapsed = harness_now_ms() - t0;
        fprintf(stderr, "exited %" PRIu64 " ms after SIGTERM\n", elapsed);
        /* It waited for the client that does not read, but no longer than the 2 s deadline. */
        assert_true(elapsed >= 1800);
        assert_int_equal(log_count(f, "flush deadline reached with 1 clients not drained"), 1);
}

static void test_second_sigterm(void **state) {
        Fixture *f = *state;
        _cleanup_bus_ plx_bus *sub = NULL, *pub = NULL;
        uint64_t t0, elapsed;

        start(f, 0);
        stall_subscriber(f, &sub, &pub);

        assert_int_equal(kill(f->h.broker_pid, SIGTERM), 0);
        assert_true(log_wait(f, "shutting down", 1, harness_timeout_ms(HARNESS_TIMEOUT_MS)));
        usleep(200 * 1000);
        assert_true(broker_running(f));

        t0 = harness_now_ms();
        assert_int_equal(kill(f->h.broker_pid, SIGTERM), 0);
        assert_int_equal(broker_wait_exit(f, harness_timeout_ms(1000)), 0);
        elapsed = harness_now_ms() - t0;
        fprintf(stderr, "exited %" PRIu64 " ms after the second SIGTERM\n", elapsed);
        assert_int_equal(log_count(f, "exiting without flushing"), 1);
        assert_int_equal(log_count(f, "flush deadline reached"), 0);
}

/*
 * Child: a raw client (libplexus would read everything at once into its own
 * queue) that subscribes, waits for 'g', then takes one frame every 2 ms
 * until the broker closes. Reports "done <frames in order> <frames before
 * the shutdown notice>".
 */
static int slow_reader(int report_fd, int control_fd, void *userdata) {
        Plexus__SubscribeRequest sub = PLEXUS__SUBSCRIBE_REQUEST__INIT;
        Plexus__Header h = PLEXUS__HEADER__INIT;
        const char *address = userdata;
        struct pollfd pfd = { .fd = control_fd, .events = POLLIN };
        int n = 0, n_at_shutdown = -1, fd, r;
        RawFrame *f;
        uint8_t buf[256];
        char id[256], c;

        child_close_other_fds(report_fd, control_fd);
        f = raw_frame_new();
        child_assert(f);
        fd = raw_connect(address);
        child_assert(fd >= 0);
        child_assert_int_eq(raw_hello(fd, f, id, sizeof(id)), 0);

        sub.pattern = (char *)"busy/#";
        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = 2;
        h.destination = (char *)PLX_BROKER;
        h.member = (char *)"Subscribe";
        child_assert_int_eq(raw_send(fd, &h, buf, plexus__subscribe_request__pack(&sub, buf)), 0);
        child_assert_int_eq(raw_recv(fd, f, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 1);
        child_assert(f->header && f->header->kind == PLEXUS__KIND__KIND_REPLY && f->header->reply_serial == 2);

        child_assert_int_eq(harness_report(report_fd, "ready"), 0);
        child_assert(poll(&pfd, 1, harness_timeout_ms(HARNESS_TIMEOUT_MS)) == 1);
        child_assert(read(control_fd, &c, 1) == 1 && c == 'g');

        for (;;) {
                r = raw_recv(fd, f, harness_timeout_ms(HARNESS_TIMEOUT_MS));
                if (r == 0 || r == -ECONNRESET)
                        break;
                child_assert_int_eq(r, 1);
                child_assert(f->header && f->header->kind == PLEXUS__KIND__KIND_SIGNAL);
                if (strcmp(f->header->member, PLX_TOPIC_SHUTDOWN) == 0) {
                        child_assert_int_eq(n_at_shutdown, -1);
                        n_at_shutdown = n;
                        continue;
                }
                child_assert(strcmp(f->header->member, "busy/data") == 0);
                /* Nothing after the notice, nothing lost or reordered before it. */
                child_assert_int_eq(n_at_shutdown, -1);
                child_assert_int_eq(f->payload_len, STALL_PAYLOAD);
                child_assert_int_eq(strtol((const char *)f->payload, NULL, 10), n);
                n++;
                usleep(2000);
        }
        child_assert_int_eq(harness_report(report_fd, "done %d %d", n, n_at_shutdown), 0);
        close(fd);
        raw_frame_free(f);
        return 0;
}

static void test_sigterm_flushes_slow_reader(void **state) {
        Fixture *f = *state;
        _cleanup_bus_ plx_bus *pub = NULL;
        HarnessChild *reader = child_slot(f);
        char line[256];
        int n, n_at_shutdown;
        uint64_t t0, elapsed;

        start(f, 0);
        assert_int_equal(harness_child_fork(reader, slow_reader, f->h.address), 0);
        assert_true(harness_read_line(reader->report_fd, line, sizeof(line),
                                      harness_timeout_ms(HARNESS_TIMEOUT_MS)) > 0);
        assert_string_equal(line, "ready");

        assert_int_equal(plx_bus_new(&pub, f->h.address, "busy-publisher"), 0);
        flood(pub, "busy/data", STALL_FRAMES);

        /* The reader has 2 MiB waiting and starts reading, 2 ms a frame, only after the SIGTERM. */
        t0 = harness_now_ms();
        assert_int_equal(kill(f->h.broker_pid, SIGTERM), 0);
        assert_int_equal(harness_write_byte(reader->control_fd, 'g'), 0);
        assert_int_equal(broker_wait_exit(f, 2000 + harness_timeout_ms(1500)), 0);
        elapsed = harness_now_ms() - t0;
        fprintf(stderr, "exited %" PRIu64 " ms after SIGTERM\n", elapsed);
        /* It waited for the reader (~20 frames fit in the socket), not for the deadline. */
        assert_true(elapsed >= 200);
        assert_int_equal(log_count(f, "flush deadline reached"), 0);

        /* Everything queued was delivered, then the notice, then EOF. */
        assert_true(harness_read_line(reader->report_fd, line, sizeof(line),
                                      harness_timeout_ms(HARNESS_TIMEOUT_MS)) > 0);
        assert_int_equal(sscanf(line, "done %d %d", &n, &n_at_shutdown), 2);
        assert_int_equal(n, STALL_FRAMES);
        assert_int_equal(n_at_shutdown, STALL_FRAMES);
        assert_int_equal(harness_child_wait(reader, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
}

/* --- 6. systemd-analyze verify -------------------------------------------- */

/* Copy @from to @to, replacing an "ExecStart=" line by @exec_start if given. */
static void copy_unit(const char *from, const char *to, const char *exec_start) {
        char *text = read_file(from), *line, *save = NULL;
        FILE *fp;

        if (!*text)
                fail_msg("%s is missing or empty", from);
        fp = fopen(to, "we");
        assert_non_null(fp);
        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                if (exec_start && strncmp(line, "ExecStart=", 10) == 0)
                        fprintf(fp, "ExecStart=%s\n", exec_start);
                else
                        fprintf(fp, "%s\n", line);
        }
        assert_int_equal(fclose(fp), 0);
        free(text);
}

/* Run systemd-analyze verify on the two units in @dir; require exit 0 and no complaint about them. */
static void verify_units(Fixture *f, const char *tool, const char *dir, bool user) {
        HarnessChild c = HARNESS_CHILD_NULL;
        char socket_unit[400], service_unit[400], out[16384], err[16384];
        char *argv[8];
        size_t n = 0;
        ssize_t l;
        int r;

        snprintf(socket_unit, sizeof(socket_unit), "%s/plexusd.socket", dir);
        snprintf(service_unit, sizeof(service_unit), "%s/plexusd.service", dir);
        argv[n++] = (char *)tool;
        argv[n++] = (char *)"verify";
        if (user)
                argv[n++] = (char *)"--user";
        argv[n++] = (char *)"--man=no";
        argv[n++] = socket_unit;
        argv[n++] = service_unit;
        argv[n] = NULL;

        assert_int_equal(harness_child_spawn(&c, argv), 0);
        l = harness_read_all(c.stderr_fd, err, sizeof(err), harness_timeout_ms(30000));
        assert_true(l >= 0);
        l = harness_read_all(c.report_fd, out, sizeof(out), harness_timeout_ms(HARNESS_TIMEOUT_MS));
        assert_true(l >= 0);
        r = harness_child_wait(&c, harness_timeout_ms(HARNESS_TIMEOUT_MS));
        fprintf(stderr, "systemd-analyze verify%s: exit %d\n%s%s", user ? " --user" : "", r, out, err);
        assert_int_equal(r, 0);
        /* Parse warnings ("<path>:<line>: Unknown key ...") do not change the exit code. */
        if (strstr(out, f->h.dir) || strstr(err, f->h.dir))
                fail_msg("systemd-analyze complains about the %s units", user ? "user" : "system");
}

static void test_units_verify(void **state) {
        Fixture *f = *state;
        const char *units = getenv("SYSTEMD_TEST_UNIT_DIR");
        const char *old_runtime = getenv("XDG_RUNTIME_DIR");
        char tool[512], sys[300], user[300], runtime[300], from[600], to[600], saved[512] = "";

        if (!find_program("systemd-analyze", tool, sizeof(tool))) {
                fprintf(stderr, "SKIP: systemd-analyze (package systemd) is not installed\n");
                skip();
        }
        if (!units || !*units)
                fail_msg("SYSTEMD_TEST_UNIT_DIR is not set; run the tests through meson test");
        if (!harness_plexusd())
                fail_msg("PLEXUSD is not set; run the tests through meson test");

        /* System units: the build's copies that start the built plexusd, under their installed names. */
        snprintf(sys, sizeof(sys), "%s/system", f->h.dir);
        assert_int_equal(mkdir(sys, 0755), 0);
        snprintf(from, sizeof(from), "%s/test-plexusd.socket", units);
        snprintf(to, sizeof(to), "%s/plexusd.socket", sys);
        copy_unit(from, to, NULL);
        snprintf(from, sizeof(from), "%s/test-plexusd.service", units);
        snprintf(to, sizeof(to), "%s/plexusd.service", sys);
        copy_unit(from, to, NULL);
        verify_units(f, tool, sys, false);

        /* User units, with ExecStart at the built plexusd, in a private runtime directory (%t). */
        snprintf(user, sizeof(user), "%s/user", f->h.dir);
        snprintf(runtime, sizeof(runtime), "%s/runtime", f->h.dir);
        assert_int_equal(mkdir(user, 0755), 0);
        assert_int_equal(mkdir(runtime, 0700), 0);
        snprintf(from, sizeof(from), "%s/user-plexusd.socket", units);
        snprintf(to, sizeof(to), "%s/plexusd.socket", user);
        copy_unit(from, to, NULL);
        snprintf(from, sizeof(from), "%s/user-plexusd.service", units);
        snprintf(to, sizeof(to), "%s/plexusd.service", user);
        copy_unit(from, to, harness_plexusd());

        if (old_runtime)
                snprintf(saved, sizeof(saved), "%s", old_runtime);
        setenv("XDG_RUNTIME_DIR", runtime, 1);
        verify_units(f, tool, user, true);
        if (old_runtime)
                setenv("XDG_RUNTIME_DIR", saved, 1);
        else
                unsetenv("XDG_RUNTIME_DIR");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_socket_activate, setup, teardown),
                cmocka_unit_test_setup_teardown(test_activation_wrong_socket, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restart_keeps_backlog, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restart_backlog_at_sigterm, setup, teardown),
                cmocka_unit_test_setup_teardown(test_notify, setup, teardown),
                cmocka_unit_test_setup_teardown(test_watchdog, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
                cmocka_unit_test_setup_teardown(test_config_missing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_config_broken, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sigterm_flush_deadline, setup, teardown),
                cmocka_unit_test_setup_teardown(test_second_sigterm, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sigterm_flushes_slow_reader, setup, teardown),
                cmocka_unit_test_setup_teardown(test_units_verify, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
