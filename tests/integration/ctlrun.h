#pragma once

/*
 * Running plexusctl (and python3) from the integration tests: a child with
 * its standard input, output and error on pipes, its exit code and what it
 * wrote; checks of --json output by Python's json module. Shared by
 * test-plexusctl.c and test-plexusctl-typed.c.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util.h"

#define OUTPUT_MAX (16u * 1024u * 1024u)

/* A plexusctl (or python3) run: exit code and everything it wrote. */
typedef struct Run {
        int status;
        char *out;
        size_t n_out;
        char *err;
        size_t n_err;
} Run;

/* A child still running, with its stdout and stderr to read. */
typedef struct Proc {
        pid_t pid;
        int in_fd;
        int out_fd;
        int err_fd;
} Proc;

#define PROC_NULL { .pid = 0, .in_fd = -1, .out_fd = -1, .err_fd = -1 }

void run_free(Run *r);
const char *plexusctl_path(void);
void close_fd(int *fd);
void proc_start(Proc *p, char *const argv[], int stdout_fd);
void append(char **buf, size_t *n, const char *data, size_t len);
void proc_finish(Proc *p, Run *r, const void *in, size_t n_in);
int run_in(Run *r, const void *in, size_t n_in, const char *const *args);
void ctl_start(Proc *p, const char *const *args);
void py_check(const char *json, size_t n, bool lines, const char *fmt, ...) _printf_(4, 5);

#define ctl(r, ...) run_in((r), NULL, 0, (const char *const[]) { __VA_ARGS__, NULL })
#define ctl_in(r, in, n, ...) run_in((r), (in), (n), (const char *const[]) { __VA_ARGS__, NULL })

#define CTL_START(p, ...) ctl_start((p), (const char *const[]) { __VA_ARGS__, NULL })

#define JSON(r, ...) py_check((r)->out, (r)->n_out, false, __VA_ARGS__)
#define JSON_LINES(r, ...) py_check((r)->out, (r)->n_out, true, __VA_ARGS__)

/* Exit code @code, and say what plexusctl said otherwise. */
#define assert_exit(r, code)                                                                    \
        do {                                                                                    \
                if ((r)->status != (code))                                                      \
                        fail_msg("plexusctl exited %d, expected %d\nstdout:\n%s\nstderr:\n%s",  \
                                 (r)->status, (code), (r)->out, (r)->err);                      \
        } while (0)

#define assert_contains(s, needle)                                                              \
        do {                                                                                    \
                if (!strstr((s), (needle)))                                                     \
                        fail_msg("\"%s\" not found in:\n%s", (needle), (s));                    \
        } while (0)
