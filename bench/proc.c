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

/**
 * proc_rss_kib() - resident memory of a process (VmRSS)
 * @pid:        the process
 *
 * Return: kibibytes, or negative errno.
 */
long proc_rss_kib(pid_t pid) {
        char path[64], line[256];
        long kib = -ENOENT;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
                        break;
        fclose(f);
        return kib;
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
