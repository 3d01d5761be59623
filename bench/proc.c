/*
 * Child processes, pipes with deadlines, and reading a broker's memory use
 * (see proc.h).
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"
#include "stats.h"
#include "util.h"

/**
 * proc_fork() - fork a child that dies with its parent
 *
 * Return: as fork(): 0 in the child, the child's pid in the parent, or
 * negative errno.
 */
pid_t proc_fork(void) {
        pid_t parent = getpid();
        pid_t pid;

        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
                /* The parent may have died before prctl() took effect. */
                if (getppid() != parent)
                        _exit(1);
        }
        return pid;
}

static int remaining_ms(uint64_t deadline_ns) {
        uint64_t now = now_ns();

        if (now >= deadline_ns)
                return 0;
        return (int)((deadline_ns - now + 999999) / 1000000);
}

/**
 * proc_wait() - wait for a child to exit
 * @pid:        the child
 * @timeout_ms: how long to wait; on expiry the child is killed
 *
 * Return: the child's exit status (0..255), 128 + signal number if it was
 * killed by a signal, or -ETIMEDOUT (the child has been killed and reaped).
 */
int proc_wait(pid_t pid, int timeout_ms) {
        uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
        int status;

        for (;;) {
                pid_t r = waitpid(pid, &status, WNOHANG);

                if (r == pid)
                        break;
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (remaining_ms(deadline) == 0) {
                        kill(pid, SIGKILL);
                        (void)waitpid(pid, &status, 0);
                        return -ETIMEDOUT;
                }
                {
                        struct timespec ts = { .tv_nsec = 2 * 1000 * 1000 };

                        nanosleep(&ts, NULL);
                }
        }
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return 128 + WTERMSIG(status);
}

static int wait_readable(int fd, uint64_t deadline) {
        struct pollfd p = { .fd = fd, .events = POLLIN };

        for (;;) {
                int r = poll(&p, 1, remaining_ms(deadline));

                if (r > 0)
                        return 0;
                if (r == 0)
                        return -ETIMEDOUT;
                if (errno != EINTR)
                        return -errno;
        }
}

/**
 * proc_read_exact() - read exactly @size bytes
 * @fd:         a pipe
 * @buf:        destination
 * @size:       bytes to read
 * @timeout_ms: deadline for the whole read
 *
 * Return: 0, -EPIPE at end of file, -ETIMEDOUT, or negative errno.
 */
int proc_read_exact(int fd, void *buf, size_t size, int timeout_ms) {
        uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
        size_t done = 0;

        while (done < size) {
                ssize_t n;
                int r;

                r = wait_readable(fd, deadline);
                if (r < 0)
                        return r;
                n = read(fd, (char *)buf + done, size - done);
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EPIPE;
                done += (size_t)n;
        }
        return 0;
}

/**
 * proc_spawn_service() - fork a bus client and wait for its unique id
 * @fn:         the child's body; @arg is handed to it
 * @arg:        borrowed
 * @ret_pid:    the child, written once it is forked (also when it fails to report)
 * @id:         receives the unique id the child reports (":N")
 * @size:       its size
 *
 * Return: 0; -ECONNREFUSED if the child reported no unique id;
 * proc_read_line()'s errors; negative errno from pipe2() or fork().
 */
int proc_spawn_service(ProcServiceFn fn, const void *arg, pid_t *ret_pid, char *id, size_t size) {
        int fds[2], r;
        pid_t pid;

        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        pid = proc_fork();
        if (pid < 0) {
                close(fds[0]);
                close(fds[1]);
                return pid;
        }
        if (pid == 0) {
                close(fds[0]);
                _exit(fn(arg, fds[1]));
        }
        close(fds[1]);
        *ret_pid = pid;
        r = proc_read_line(fds[0], id, size, PROC_TIMEOUT_MS);
        close(fds[0]);
        if (r >= 0 && id[0] != ':')
                r = -ECONNREFUSED;
        return r < 0 ? r : 0;
}

/**
 * proc_read_line() - read one line, without its newline
 * @fd:         a pipe
 * @buf:        destination, NUL-terminated on success
 * @size:       its size
 * @timeout_ms: deadline for the whole line
 *
 * Reads one byte at a time, so nothing after the newline is consumed.
 *
 * Return: 0, -EPIPE at end of file, -ENAMETOOLONG, -ETIMEDOUT, or negative
 * errno.
 */
int proc_read_line(int fd, char *buf, size_t size, int timeout_ms) {
        uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
        size_t n = 0;

        for (;;) {
                char c;
                int r;

                r = proc_read_exact(fd, &c, 1, remaining_ms(deadline));
                if (r < 0)
                        return r;
                if (c == '\n')
                        break;
                if (n + 1 >= size)
                        return -ENAMETOOLONG;
                buf[n++] = c;
        }
        buf[n] = 0;
        return 0;
}

/**
 * proc_write_all() - write all of @buf
 *
 * Return: 0 or negative errno.
 */
int proc_write_all(int fd, const void *buf, size_t size) {
        size_t done = 0;

        while (done < size) {
                ssize_t n = write(fd, (const char *)buf + done, size - done);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                done += (size_t)n;
        }
        return 0;
}

/* The kibibytes of the first line of /proc/PID/@file that starts with @name ("VmRSS:"). */
static long proc_field_kib(pid_t pid, const char *file, const char *name) {
        char path[64], line[256];
        size_t len = strlen(name);
        long kib = -ENOENT;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, name, len) == 0) {
                        kib = strtol(line + len, NULL, 10);
                        break;
                }
        fclose(f);
        return kib;
}

/**
 * proc_rss_kib() - resident memory of a process (VmRSS)
 * @pid:        the process
 *
 * Return: kibibytes, or negative errno.
 */
long proc_rss_kib(pid_t pid) {
        return proc_field_kib(pid, "status", "VmRSS:");
}

/**
 * proc_pss_kib() - proportional set size of a process (Pss of smaps_rollup)
 * @pid:        the process
 *
 * Unlike VmRSS, shared pages count divided by the number of processes
 * mapping them, so a library the broker shares with its clients does not
 * count in full.
 *
 * Return: kibibytes, or negative errno (-ENOENT on kernels without
 * smaps_rollup).
 */
long proc_pss_kib(pid_t pid) {
        return proc_field_kib(pid, "smaps_rollup", "Pss:");
}

static int read_small_file(const char *path, char *buf, size_t size) {
        _cleanup_(closep) int fd = -1;
        ssize_t n;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, size - 1);
        if (n < 0)
                return -errno;
        buf[n] = 0;
        return 0;
}

/**
 * proc_cpu_ticks() - user and system time of a process so far
 * @pid:        the process
 * @ret_user:   utime of /proc/PID/stat, in clock ticks (sysconf(_SC_CLK_TCK))
 * @ret_system: stime, likewise
 *
 * Return: 0 or negative errno.
 */
int proc_cpu_ticks(pid_t pid, uint64_t *ret_user, uint64_t *ret_system) {
        char path[64], buf[1024], *p;
        unsigned long long utime, stime;
        int r;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        r = read_small_file(path, buf, sizeof(buf));
        if (r < 0)
                return r;
        p = strrchr(buf, ')');
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
                return -EBADMSG;
        *ret_user = utime;
        *ret_system = stime;
        return 0;
}

/**
 * proc_cpu_ns() - time a process has spent on a CPU so far
 * @pid:        the process (its main thread: the brokers have no other)
 *
 * The first field of /proc/PID/schedstat, in nanoseconds, user and system
 * together; where the kernel has no schedstat, utime + stime of
 * /proc/PID/stat (clock ticks, 10 ms each at USER_HZ 100).
 *
 * Return: nanoseconds, or -1 if unknown.
 */
int64_t proc_cpu_ns(pid_t pid) {
        char path[64], buf[256];
        unsigned long long run;
        uint64_t utime, stime;

        if (pid <= 0)
                return -1;
        snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
        if (read_small_file(path, buf, sizeof(buf)) >= 0 && sscanf(buf, "%llu", &run) == 1)
                return (int64_t)run;
        if (proc_cpu_ticks(pid, &utime, &stime) < 0)
                return -1;
        return (int64_t)((utime + stime) * (1000000000ull / (unsigned long long)sysconf(_SC_CLK_TCK)));
}

/**
 * proc_proc_self_cpu_ns() - CPU time of this process so far (every thread), in nanoseconds
 */
uint64_t proc_self_cpu_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/**
 * proc_syscall_cost() - the cost of the cheapest system call
 * @n:          calls per loop
 * @ret:        the figures, written on success
 *
 * getppid() (a real system call: glibc caches nothing) in 20 loops of @n. On a shared machine the fastest loop is the cost when nobody
 * else took the CPU meanwhile; the CPU time of the loops counts only our
 * own. Run it on the CPU the other measurements use.
 *
 * Return: 0 or negative errno.
 */
int proc_syscall_cost(unsigned n, SyscallCost *ret) {
        _cleanup_(samples_deinit) Samples s = SAMPLES_NULL;
        const unsigned loops = 20;
        uint64_t cpu_ns = 0;
        double p50_ns;
        int r;

        if (n == 0)
                return -EINVAL;
        r = samples_init(&s, loops);
        if (r < 0)
                return r;
        for (unsigned l = 0; l < loops; l++) {
                uint64_t c0 = proc_self_cpu_ns(), t0 = now_ns();

                for (unsigned i = 0; i < n; i++)
                        (void)getppid();
                samples_add(&s, now_ns() - t0);
                cpu_ns += proc_self_cpu_ns() - c0;
        }
        p50_ns = samples_percentile_us(&s, 50) * 1000.0 / n;   /* sorts: s.ns[0] is the fastest */
        *ret = (SyscallCost) {
                .n = n * loops,
                .p50_ns = p50_ns,
                .min_ns = (double)s.ns[0] / n,
                .cpu_ns = (double)cpu_ns / ((double)n * loops),
        };
        return 0;
}

/**
 * proc_raise_fd_limit() - make sure @want descriptors can be open
 * @want:       the number needed
 *
 * Raises the soft limit up to the hard limit.
 *
 * Return: 0, or -EMFILE if the hard limit is below @want.
 */
int proc_raise_fd_limit(size_t want) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        if (rl.rlim_cur >= want)
                return 0;
        if (rl.rlim_max < want)
                return -EMFILE;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        return 0;
}
