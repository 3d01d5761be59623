/*
 * Running plexusctl from the integration tests (ctlrun.h).
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctlrun.h"
#include "harness.h"

void run_free(Run *r) {
        free(r->out);
        free(r->err);
        *r = (Run) {};
}

const char *plexusctl_path(void) {
        const char *p = getenv("PLEXUSCTL");

        if (!p || !*p)
                fail_msg("$PLEXUSCTL is not set; run through meson test");
        return p;
}

void close_fd(int *fd) {
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

/*
 * Start @argv (searched in $PATH) with pipes for stdin, stdout and stderr;
 * @stdout_fd, if not -1, is used as its stdout instead (a terminal).
 */
void proc_start(Proc *p, char *const argv[], int stdout_fd) {
        int in[2], out[2] = { -1, -1 }, err[2];
        pid_t pid;

        assert_int_equal(pipe2(in, O_CLOEXEC), 0);
        if (stdout_fd < 0)
                assert_int_equal(pipe2(out, O_CLOEXEC), 0);
        assert_int_equal(pipe2(err, O_CLOEXEC), 0);
        fflush(NULL);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                sigset_t none;

                prctl(PR_SET_PDEATHSIG, SIGKILL);
                /* The harness ignores SIGPIPE; a program we start should not inherit that. */
                signal(SIGPIPE, SIG_DFL);
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                if (stdout_fd >= 0)
                        setsid();
                if (dup2(in[0], STDIN_FILENO) < 0 || dup2(stdout_fd >= 0 ? stdout_fd : out[1], STDOUT_FILENO) < 0 ||
                    dup2(err[1], STDERR_FILENO) < 0)
                        _exit(127);
                if (stdout_fd >= 0)
                        ioctl(STDOUT_FILENO, TIOCSCTTY, 0);
                close_range(3, ~0U, 0);
                execvp(argv[0], argv);
                fprintf(stderr, "cannot execute %s: %m\n", argv[0]);
                _exit(127);
        }
        close(in[0]);
        if (out[1] >= 0)
                close(out[1]);
        close(err[1]);
        *p = (Proc) { .pid = pid, .in_fd = in[1], .out_fd = out[0], .err_fd = err[0] };
}

void append(char **buf, size_t *n, const char *data, size_t len) {
        char *b = realloc(*buf, *n + len + 1);

        assert_non_null(b);
        memcpy(b + *n, data, len);
        *n += len;
        b[*n] = 0;
        *buf = b;
}

/*
 * Feed @in to the child's stdin (then close it), read its stdout and
 * stderr to their ends, and reap it; all bounded. A terminal as stdout
 * reads as EIO once the child is gone, which ends it like EOF.
 */
void proc_finish(Proc *p, Run *r, const void *in, size_t n_in) {
        uint64_t deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);
        size_t written = 0;
        int status;

        *r = (Run) {};
        append(&r->out, &r->n_out, "", 0);
        append(&r->err, &r->n_err, "", 0);
        if (n_in == 0)
                close_fd(&p->in_fd);

        while (p->out_fd >= 0 || p->err_fd >= 0) {
                struct pollfd pfd[3] = {
                        { .fd = p->out_fd, .events = POLLIN },
                        { .fd = p->err_fd, .events = POLLIN },
                        { .fd = p->in_fd, .events = POLLOUT },
                };
                uint64_t now = harness_now_ms();
                char buf[65536];

                if (now >= deadline) {
                        kill(p->pid, SIGKILL);
                        fail_msg("child %d did not finish in time; stdout so far:\n%s\nstderr:\n%s",
                                 (int)p->pid, r->out, r->err);
                }
                assert_true(poll(pfd, 3, (int)(deadline - now)) >= 0 || errno == EINTR);
                for (int i = 0; i < 2; i++) {
                        int *fd = i == 0 ? &p->out_fd : &p->err_fd;
                        ssize_t l;

                        if (*fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        l = read(*fd, buf, sizeof(buf));
                        if (l < 0 && (errno == EINTR || errno == EAGAIN))
                                continue;
                        if (l <= 0) {
                                close_fd(fd);
                                continue;
                        }
                        if (i == 0)
                                append(&r->out, &r->n_out, buf, (size_t)l);
                        else
                                append(&r->err, &r->n_err, buf, (size_t)l);
                        assert_true(r->n_out + r->n_err < OUTPUT_MAX);
                }
                if (p->in_fd >= 0 && (pfd[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
                        ssize_t l = write(p->in_fd, (const char *)in + written, n_in - written);

                        if (l > 0)
                                written += (size_t)l;
                        if (l < 0 || written == n_in)
                                close_fd(&p->in_fd);
                }
        }
        close_fd(&p->in_fd);
        assert_int_equal(waitpid(p->pid, &status, 0), p->pid);
        r->status = harness_status_code(status);
        p->pid = 0;
}

/* plexusctl with @args (NULL-terminated), standard input @in. */
int run_in(Run *r, const void *in, size_t n_in, const char *const *args) {
        char *argv[64];
        Proc p = PROC_NULL;
        size_t n = 0;

        argv[n++] = (char *)plexusctl_path();
        while (*args && n < ELEMENTSOF(argv) - 1)
                argv[n++] = (char *)*args++;
        argv[n] = NULL;
        proc_start(&p, argv, -1);
        proc_finish(&p, r, in, n_in);
        return r->status;
}


/* plexusctl running in the background, e.g. subscribe. */
void ctl_start(Proc *p, const char *const *args) {
        char *argv[64];
        size_t n = 0;

        argv[n++] = (char *)plexusctl_path();
        while (*args && n < ELEMENTSOF(argv) - 1)
                argv[n++] = (char *)*args++;
        argv[n] = NULL;
        proc_start(p, argv, -1);
}


/*
 * Check @n bytes of JSON (one document, or JSON lines if @lines) with
 * Python: the code after the format gets the parsed value as `d` (a list
 * of documents for JSON lines) and asserts on it.
 */
void py_check(const char *json, size_t n, bool lines, const char *fmt, ...) {
        char code[16384];
        Proc p = PROC_NULL;
        Run r;
        va_list ap;
        int k;

        /* Strict: the bytes must be UTF-8, and Python's own extensions (NaN) are refused. */
        k = snprintf(code, sizeof(code),
                     "import json, sys\n"
                     "def strict(c):\n"
                     "    raise ValueError('not JSON: ' + c)\n"
                     "text = sys.stdin.buffer.read().decode('utf-8')\n"
                     "%s\n",
                     lines ? "d = [json.loads(l, parse_constant=strict) for l in text.splitlines()]"
                           : "d = json.loads(text, parse_constant=strict)");
        va_start(ap, fmt);
        vsnprintf(code + k, sizeof(code) - (size_t)k, fmt, ap);
        va_end(ap);

        proc_start(&p, (char *[]) { (char *)"python3", (char *)"-c", code, NULL }, -1);
        proc_finish(&p, &r, json, n);
        if (r.status != 0)
                fail_msg("JSON check failed (exit %d)\n--- check:\n%s\n--- JSON:\n%.*s\n--- python:\n%s", r.status,
                         code, (int)MIN(n, (size_t)4000), json, r.err);
        run_free(&r);
}

/* Checks on one document / on JSON lines. */
