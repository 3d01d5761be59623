/*
 * plexus-bench-large: one large-payload measurement, as run by
 * bench/run.sh --large.
 *
 *     plexus-bench-large [OPTIONS] METHOD
 *
 * METHOD is how the payload travels from the measuring process (the sender)
 * to a receiver process that sums every 8-byte word of it and answers with
 * the sum (see large.h):
 *
 *   memcpy             no receiver: memcpy() into a second buffer, then the
 *                      sum, in the sender (the bound for one copy)
 *   raw                an AF_UNIX SOCK_STREAM socketpair to a child: write
 *                      the payload, the child reads it into its buffer and
 *                      writes back the 8-byte sum
 *   process-vm         plexusd, plx_bus_call() with PLX_LARGE_PROCESS_VM
 *   memfd              plexusd, plx_bus_call() with PLX_LARGE_MEMFD
 *   buffer             plexusd, plx_bus_call_buffer() of a plx_buffer
 *   inline             plexusd, PLX_LARGE_INLINE: the payload in calls of
 *                      120 KiB each (one frame holds at most 128 KiB)
 *   dbus               a D-Bus broker, sd_bus_call() of Sum(ay) -> t
 *   fanout-memfd       plexusd, one signal to --subscribers receivers:
 *   fanout-buffer      plx_bus_publish() with PLX_LARGE_MEMFD,
 *   fanout-process-vm  plx_bus_publish_buffer(), plx_bus_publish() with
 *                      PLX_LARGE_PROCESS_VM
 *   syscall            no payload: the cost of getppid(), for the record
 *
 * The result is one line of key=value pairs on stdout; the exit code is 0
 * only if every sum was right.
 *
 * What is timed: from the moment the sender holds the payload until every
 * receiver's sum is back. Writing the payload (into the sender's buffer, or
 * into a fresh plx_buffer) happens before, untimed, and is reported
 * separately as prep_seconds. CPU time is counted for the timed phase:
 * the sender's own (CLOCK_PROCESS_CPUTIME_ID around each transfer), the
 * receivers' and the broker's (/proc/PID/schedstat, or utime + stime from
 * /proc/PID/stat where the kernel has no schedstat) from before the first
 * timed repetition to after the last.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "large.h"
#include "proc.h"
#include "stats.h"
#include "util.h"

#define K1 UINT64_C(0x9e3779b97f4a7c15)
#define K2 UINT64_C(0xd1b54a32d192ed03)

/*
 * Word @i of payload @seq. Every word depends on both, so a payload of an
 * earlier repetition, or a shifted one, sums differently.
 */
static inline uint64_t word_at(uint64_t seq, uint64_t i) {
        return i * K1 + seq * K2 + 1;
}

/**
 * large_fill() - write payload @seq
 * @buf:        8-byte aligned
 * @size:       a multiple of 8
 */
void large_fill(void *buf, size_t size, uint64_t seq) {
        uint64_t *w = buf;

        for (size_t i = 0; i < size / 8; i++)
                w[i] = word_at(seq, i);
}

/**
 * large_sum() - what a receiver does with every byte: add them up as
 * 64-bit words (a trailing partial word is ignored)
 *
 * Return: the sum, modulo 2^64.
 */
uint64_t large_sum(const void *buf, size_t size) {
        const uint8_t *p = buf;
        uint64_t sum = 0;

        for (size_t i = 0; i + 8 <= size; i += 8) {
                uint64_t w;

                memcpy(&w, p + i, sizeof(w));
                sum += w;
        }
        return sum;
}

/**
 * large_expected_sum() - large_sum() of payload @seq, without reading it
 *
 * Return: n * (seq * K2 + 1) + K1 * n * (n - 1) / 2 for n words, modulo 2^64.
 */
uint64_t large_expected_sum(uint64_t seq, size_t size) {
        uint64_t n = size / 8;
        uint64_t tri = n % 2 == 0 ? (n / 2) * (n - 1) : n * ((n - 1) / 2);

        return n * (seq * K2 + 1) + K1 * tri;
}

/**
 * large_check_sum() - compare a receiver's sum with the expected one
 *
 * Return: 0, or -EBADMSG after saying so.
 */
int large_check_sum(uint64_t seq, uint64_t got, uint64_t want) {
        if (got == want)
                return 0;
        fprintf(stderr, "plexus-bench-large: repetition %" PRIu64 ": sum %016" PRIx64 ", expected %016" PRIx64 "\n",
                seq, got, want);
        return -EBADMSG;
}

/**
 * large_pin() - run the calling process on CPU @cpu only
 * @cpu:        -1 for no change
 *
 * Return: 0 or negative errno.
 */
int large_pin(int cpu) {
        cpu_set_t set;

        if (cpu < 0)
                return 0;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof(set), &set) < 0)
                return -errno;
        return 0;
}

/* The CPU time of the receivers and of the broker, for one snapshot. */
typedef struct Others {
        int64_t receivers;              /* -1: some receiver unreadable */
        int64_t broker;                 /* -1: no broker, or unreadable */
} Others;

static Others others_now(const LargeRun *run) {
        Others s = { .receivers = 0, .broker = proc_cpu_ns(run->o->broker_pid) };

        for (unsigned i = 0; i < run->n_pids; i++) {
                int64_t ns = proc_cpu_ns(run->pids[i]);

                if (ns < 0) {
                        s.receivers = -1;
                        break;
                }
                s.receivers += ns;
        }
        return s;
}

/* A private, page-aligned buffer, faulted in: its pages are its own. */
static uint8_t *buffer_new(size_t size) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (p == MAP_FAILED)
                return NULL;
        memset(p, 0x5a, size);
        return p;
}

static void buffer_free(uint8_t *p, size_t size) {
        if (p)
                munmap(p, size);
}

/* --- memcpy: the bound ----------------------------------------------------- */

static int memcpy_start(LargeRun *run) {
        run->state = buffer_new(run->o->size);
        return run->state ? 0 : -ENOMEM;
}

static int memcpy_transfer(LargeRun *run, uint64_t seq) {
        uint8_t *dst = run->state;

        memcpy(dst, run->buf, run->o->size);
        /* What the compiler sees of dst must be what is in memory. */
        __asm__ __volatile__("" : : "r"(dst) : "memory");
        return large_check_sum(seq, large_sum(dst, run->o->size), large_expected_sum(seq, run->o->size));
}

static int memcpy_stop(LargeRun *run, int status) {
        buffer_free(run->state, run->o->size);
        run->state = NULL;
        return status;
}

static const LargeMethod large_memcpy = {
        .name = "memcpy",
        .start = memcpy_start,
        .transfer = memcpy_transfer,
        .stop = memcpy_stop,
};

/* --- raw: a stream socket between two processes ---------------------------- */

static int read_full(int fd, void *buf, size_t size) {
        size_t done = 0;

        while (done < size) {
                ssize_t n = read(fd, (uint8_t *)buf + done, size - done);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -EPIPE;
                done += (size_t)n;
        }
        return 0;
}

static int raw_receiver_main(int fd, const LargeOptions *o) {
        uint8_t *buf;
        int r;

        if (large_pin(o->receiver_cpu) < 0)
                return 1;
        buf = buffer_new(o->size);
        if (!buf)
                return 1;
        for (;;) {
                uint64_t sum;

                r = read_full(fd, buf, o->size);
                if (r == -EPIPE)
                        return 0;
                if (r < 0)
                        return 1;
                sum = large_sum(buf, o->size);
                if (proc_write_all(fd, &sum, sizeof(sum)) < 0)
                        return 1;
        }
}

typedef struct RawState {
        int fd;
} RawState;

static int raw_start(LargeRun *run) {
        RawState *s;
        int sv[2];
        pid_t pid;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        pid = proc_fork();
        if (pid < 0) {
                close(sv[0]);
                close(sv[1]);
                return pid;
        }
        if (pid == 0) {
                close(sv[0]);
                _exit(raw_receiver_main(sv[1], run->o));
        }
        close(sv[1]);
        run->pids[run->n_pids++] = pid;
        s = calloc(1, sizeof(*s));
        if (!s) {
                close(sv[0]);
                return -ENOMEM;
        }
        s->fd = sv[0];
        run->state = s;
        return 0;
}

static int raw_transfer(LargeRun *run, uint64_t seq) {
        RawState *s = run->state;
        uint64_t sum;
        int r;

        r = proc_write_all(s->fd, run->buf, run->o->size);
        if (r >= 0)
                r = read_full(s->fd, &sum, sizeof(sum));
        if (r < 0)
                return r;
        return large_check_sum(seq, sum, large_expected_sum(seq, run->o->size));
}

static int raw_stop(LargeRun *run, int status) {
        RawState *s = run->state;
        int r;

        if (s) {
                /* End of file ends the receiver. */
                close(s->fd);
                free(s);
                run->state = NULL;
        }
        for (unsigned i = 0; i < run->n_pids; i++) {
                if (status < 0)
                        kill(run->pids[i], SIGKILL);
                r = proc_wait(run->pids[i], PROC_TIMEOUT_MS);
                if (status >= 0 && r != 0) {
                        fprintf(stderr, "plexus-bench-large: raw receiver exited with status %d\n", r);
                        status = -EPROTO;
                }
        }
        run->n_pids = 0;
        return status;
}

static const LargeMethod large_raw = {
        .name = "raw",
        .start = raw_start,
        .transfer = raw_transfer,
        .stop = raw_stop,
};

/* --- the measurement ------------------------------------------------------- */

static const LargeMethod *const methods[] = {
        &large_memcpy,
        &large_raw,
        &large_process_vm,
        &large_memfd,
        &large_buffer,
        &large_inline,
        &large_dbus,
        &large_fanout_memfd,
        &large_fanout_buffer,
        &large_fanout_process_vm,
};

static void print_cpu(const char *key, int64_t ns) {
        if (ns >= 0)
                printf(" %s=%.4f", key, (double)ns / 1e9);
}

static int measure(const LargeMethod *m, const LargeOptions *o) {
        _cleanup_(samples_deinit) Samples s = SAMPLES_NULL;
        LargeRun run = { .o = o };
        uint64_t total_ns = 0, prep_ns = 0, sender_ns = 0;
        unsigned n_receivers = m->fanout ? o->subscribers : 1, n_pids;
        Others before = {}, after = {};
        double bytes, gib, seconds, p50_ns;
        int64_t cpu_total;
        int r;

        r = samples_init(&s, o->reps);
        if (r < 0)
                return r;
        r = m->start(&run);
        if (r < 0) {
                fprintf(stderr, "plexus-bench-large: %s: cannot start: %s\n", m->name, strerror(-r));
                return m->stop(&run, r);
        }
        /* Only now, after every fork: the sender's pages are its own. */
        if (!m->own_buffer) {
                run.buf = buffer_new(o->size);
                if (!run.buf)
                        return m->stop(&run, -ENOMEM);
        }
        r = large_pin(o->sender_cpu);

        for (unsigned i = 0; r >= 0 && i < o->warmup + o->reps; i++) {
                uint64_t t0, t1, t2, c0, c1;

                if (i == o->warmup)
                        before = others_now(&run);
                t0 = now_ns();
                if (m->prepare)
                        r = m->prepare(&run, i);
                else
                        large_fill(run.buf, o->size, i);
                if (r < 0)
                        break;
                c0 = proc_self_cpu_ns();
                t1 = now_ns();
                r = m->transfer(&run, i);
                t2 = now_ns();
                c1 = proc_self_cpu_ns();
                if (r < 0)
                        break;
                if (i >= o->warmup) {
                        samples_add(&s, t2 - t1);
                        total_ns += t2 - t1;
                        prep_ns += t1 - t0;
                        sender_ns += c1 - c0;
                }
        }
        if (r >= 0)
                after = others_now(&run);
        n_pids = run.n_pids;
        r = m->stop(&run, r);
        buffer_free(run.buf, o->size);
        if (r < 0) {
                fprintf(stderr, "plexus-bench-large: %s, %zu bytes: %s\n", m->name, o->size, strerror(-r));
                return r;
        }

        /* Bytes delivered: each receiver got (and read) the whole payload. */
        p50_ns = samples_percentile_us(&s, 50) * 1000.0;     /* sorts: s.ns[0] is the fastest */
        bytes = (double)o->size * o->reps * n_receivers;
        gib = bytes / (1024.0 * 1024.0 * 1024.0);
        seconds = (double)total_ns / 1e9;
        /* On a shared machine the best repetition shows what the method can do. */
        printf("method=%s size=%zu receivers=%u reps=%u seconds=%.4f gbps=%.3f p50_ms=%.3f gbps_p50=%.3f "
               "gbps_best=%.3f prep_seconds=%.4f gbps_with_prep=%.3f",
               m->name, o->size, n_receivers, o->reps, seconds, bytes / seconds / 1e9,
               p50_ns / 1e6, (double)o->size * n_receivers / p50_ns,
               (double)o->size * n_receivers / (double)s.ns[0],
               (double)prep_ns / 1e9, bytes / ((double)(total_ns + prep_ns)));
        print_cpu("cpu_sender_s", (int64_t)sender_ns);
        cpu_total = (int64_t)sender_ns;
        if (n_pids > 0) {
                if (before.receivers >= 0 && after.receivers >= 0) {
                        print_cpu("cpu_receiver_s", after.receivers - before.receivers);
                        cpu_total += after.receivers - before.receivers;
                } else {
                        cpu_total = -1;
                }
        }
        if (o->broker_pid > 0) {
                if (before.broker >= 0 && after.broker >= 0 && cpu_total >= 0) {
                        print_cpu("cpu_broker_s", after.broker - before.broker);
                        cpu_total += after.broker - before.broker;
                } else {
                        cpu_total = -1;
                }
        }
        if (cpu_total >= 0)
                printf(" cpu_s_per_gib=%.4f", (double)cpu_total / 1e9 / gib);
        printf("\n");
        return 0;
}

/*
 * What fresh memory costs: the first write to 64 MiB of new anonymous
 * pages (a page fault and zeroing per page) against writing the same
 * pages again. Every path that puts a message into memory nobody has
 * touched yet (a new memfd, a receive buffer allocated per message) pays
 * the first figure, so it is printed with the machine.
 */
static int measure_pages(void) {
        const size_t size = 64u << 20;
        uint64_t c0, c1, c2;
        uint8_t *p;

        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                return -errno;
        c0 = proc_self_cpu_ns();
        memset(p, 1, size);
        c1 = proc_self_cpu_ns();
        memset(p, 2, size);
        __asm__ __volatile__("" : : "r"(p) : "memory");
        c2 = proc_self_cpu_ns();
        munmap(p, size);
        printf(" first_touch_ns_per_4k=%.1f rewrite_gbps=%.2f\n",
               (double)(c1 - c0) / (double)(size / 4096), (double)size / (double)(c2 - c1));
        return 0;
}

/* The cost of the cheapest system call (20 loops of 100,000 getppid()), for the record. */
static int measure_syscall(void) {
        SyscallCost c;
        int r;

        r = proc_syscall_cost(100000, &c);
        if (r < 0)
                return r;
        printf("method=syscall n=%u ns_per_call_p50=%.1f ns_per_call_min=%.1f ns_per_call_cpu=%.1f",
               c.n, c.p50_ns, c.min_ns, c.cpu_ns);
        return measure_pages();
}

static void help(void) {
        printf("Usage: %s [OPTIONS] METHOD\n\n"
               "Moves a large payload to receivers that read all of it; prints key=value results.\n\n"
               "METHOD: memcpy | raw | process-vm | memfd | buffer | inline | dbus |\n"
               "        fanout-memfd | fanout-buffer | fanout-process-vm | syscall\n\n"
               "  -a --address ADDR      plexusd socket path, or D-Bus address (dbus)\n"
               "  -s --size BYTES        payload size, a multiple of 8 (default 1048576)\n"
               "  -n --reps N            timed repetitions (default 10)\n"
               "  -w --warmup N          untimed ones first (default 1)\n"
               "  -S --subscribers N     fan-out: receiver processes (default 3)\n"
               "  -P --broker-pid PID    the broker whose CPU time is counted\n"
               "     --sender-cpu N      pin the sender to CPU N\n"
               "     --receiver-cpu N    pin the receivers to CPU N\n"
               "  -h --help              show this help\n",
               program_invocation_short_name);
}

static int parse_u64(const char *s, uint64_t *ret) {
        unsigned long long v;
        char *end;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || !*s || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

int main(int argc, char **argv) {
        enum { ARG_SENDER_CPU = 0x100, ARG_RECEIVER_CPU };
        static const struct option options[] = {
                { "address", required_argument, NULL, 'a' },
                { "size", required_argument, NULL, 's' },
                { "reps", required_argument, NULL, 'n' },
                { "warmup", required_argument, NULL, 'w' },
                { "subscribers", required_argument, NULL, 'S' },
                { "broker-pid", required_argument, NULL, 'P' },
                { "sender-cpu", required_argument, NULL, ARG_SENDER_CPU },
                { "receiver-cpu", required_argument, NULL, ARG_RECEIVER_CPU },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        LargeOptions o = {
                .size = 1024 * 1024,
                .reps = 10,
                .warmup = 1,
                .subscribers = 3,
                .sender_cpu = -1,
                .receiver_cpu = -1,
        };
        const LargeMethod *m = NULL;
        const char *name;
        uint64_t v;
        int c, r;

        while ((c = getopt_long(argc, argv, "a:s:n:w:S:P:h", options, NULL)) >= 0) {
                if (c == 'h') {
                        help();
                        return 0;
                }
                if (c == 'a') {
                        o.address = optarg;
                        continue;
                }
                if (c == '?' || parse_u64(optarg, &v) < 0 || v > INT_MAX) {
                        if (c != '?')
                                fprintf(stderr, "%s: bad number '%s'\n", program_invocation_short_name, optarg);
                        return 2;
                }
                switch (c) {
                case 's':
                        o.size = (size_t)v;
                        break;
                case 'n':
                        o.reps = (unsigned)v;
                        break;
                case 'w':
                        o.warmup = (unsigned)v;
                        break;
                case 'S':
                        o.subscribers = (unsigned)v;
                        break;
                case 'P':
                        o.broker_pid = (pid_t)v;
                        break;
                case ARG_SENDER_CPU:
                        o.sender_cpu = (int)v;
                        break;
                case ARG_RECEIVER_CPU:
                        o.receiver_cpu = (int)v;
                        break;
                }
        }
        if (argc - optind != 1) {
                help();
                return 2;
        }
        name = argv[optind];
        /* A child that dies must not kill us with SIGPIPE on its socket. */
        signal(SIGPIPE, SIG_IGN);

        if (strcmp(name, "syscall") == 0) {
                r = large_pin(o.sender_cpu);
                if (r >= 0)
                        r = measure_syscall();
                return r < 0 ? 1 : 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                if (strcmp(methods[i]->name, name) == 0)
                        m = methods[i];
        if (!m) {
                fprintf(stderr, "%s: unknown method '%s'\n", program_invocation_short_name, name);
                return 2;
        }
        if (o.size < 8 || o.size % 8 != 0 || o.reps == 0 ||
            (m->fanout && (o.subscribers == 0 || o.subscribers > LARGE_RECEIVERS_MAX))) {
                fprintf(stderr, "%s: need --size a multiple of 8, --reps >= 1, --subscribers 1..%u\n",
                        program_invocation_short_name, LARGE_RECEIVERS_MAX);
                return 2;
        }
        if (!o.address && m != &large_memcpy && m != &large_raw) {
                fprintf(stderr, "%s: %s needs --address\n", program_invocation_short_name, name);
                return 2;
        }
        r = measure(m, &o);
        return r < 0 ? 1 : 0;
}
