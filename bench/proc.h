#pragma once

/*
 * Processes and pipes for the benchmarks.
 *
 * Every measurement runs its peers (echo servers, subscribers, idle
 * clients) as forked children, so that each message really crosses from one
 * process to another as it would on a real system. Children die with their
 * parent (PR_SET_PDEATHSIG), and every wait has a deadline, so a broker that
 * stops answering fails the measurement instead of hanging the run.
 *
 * Pipes carry the little out-of-band coordination there is: a server's
 * unique id, "ready", per-burst acknowledgements. They never carry
 * measured traffic.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PROC_TIMEOUT_MS 60000

pid_t proc_fork(void);
int proc_wait(pid_t pid, int timeout_ms);
int proc_read_exact(int fd, void *buf, size_t size, int timeout_ms);
int proc_read_line(int fd, char *buf, size_t size, int timeout_ms);
int proc_write_all(int fd, const void *buf, size_t size);
long proc_rss_kib(pid_t pid);
long proc_pss_kib(pid_t pid);
int64_t proc_cpu_ns(pid_t pid);
uint64_t proc_self_cpu_ns(void);
int proc_cpu_ticks(pid_t pid, uint64_t *ret_user, uint64_t *ret_system);

/* What the cheapest system call costs this process, in nanoseconds per call. */
typedef struct SyscallCost {
        unsigned n;             /* calls made */
        double min_ns;          /* the fastest loop: nobody else took the CPU */
        double p50_ns;          /* the median loop */
        double cpu_ns;          /* our own CPU time per call */
} SyscallCost;

int proc_syscall_cost(unsigned n, SyscallCost *ret);
int proc_raise_fd_limit(size_t want);

/* Runs in the child; writes "<unique id>\n" to @report_fd once ready. Returns its exit code. */
typedef int (*ProcServiceFn)(const void *arg, int report_fd);
int proc_spawn_service(ProcServiceFn fn, const void *arg, pid_t *ret_pid, char *id, size_t size);
