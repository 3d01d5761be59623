/*
 * The bus measurements (see measure.h).
 *
 * Processes: the measuring process is the client (or the publisher); the
 * echo server, the subscribers and the holders of idle connections are
 * forked children, each with its own connection. Children report over
 * pipes: the server its unique id (there are no well-known names on
 * plexus yet), subscribers "R" when subscribed and "A" after each burst,
 * "F" on any failure.
 *
 * Verification: a call's reply must be byte for byte the request; the echo
 * server checks each request (payload_check()); a subscriber must see every
 * signal, in order, each intact. Anything else fails the measurement.
 *
 * Timing covers only the measured transfers: connecting, forking and the
 * warm-up happen before the clock starts.
 *
 * Broker CPU: given the broker's pid (--broker-pid), every measurement
 * also reads the broker's CPU time (proc_cpu_ns(): user + system, in
 * nanoseconds; and utime/stime of /proc/PID/stat for the split) at the
 * start and the end of its timed phase, and divides it by the frames the
 * broker routed meanwhile. A routed frame is one frame the broker delivers
 * to a receiver: a call is two (the request to the server, the reply to
 * the caller), a signal published to N subscribers is N. For connection
 * set-up the figure is per connection instead (connect, handshake,
 * disconnect).
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "measure.h"
#include "payload.h"
#include "proc.h"
#include "stats.h"
#include "util.h"

#define ID_MAX 256
#define NO_PROGRESS_NS (30ull * 1000 * 1000 * 1000)

/*
 * CPU time over one timed phase: the broker's (user + system, and the
 * split), and that of every process of the measurement together (this
 * one, its peers and the broker). All on one CPU, that sum is the wall
 * time the phase would take on an otherwise idle machine: the regression
 * guard judges work per CPU second, which other load on the machine
 * disturbs far less than it disturbs wall time.
 */
typedef struct PhaseCpu {
        pid_t pid;              /* the broker; 0: not measured */
        int64_t ns;             /* proc_cpu_ns() of the broker: at the start, then the difference */
        uint64_t user;          /* clock ticks of user time, likewise */
        uint64_t system;        /* clock ticks of system time, likewise */
        bool ok;
        const pid_t *peers;     /* the measurement's other processes */
        size_t n_peers;
        int64_t all_ns;         /* us, the peers and the broker; likewise */
        bool all_ok;
} PhaseCpu;

/* CPU time of us, @peers and @broker (if > 0) together; -1 if one is unreadable. */
static int64_t all_cpu_ns(pid_t broker, const pid_t *peers, size_t n_peers) {
        int64_t sum = (int64_t)proc_self_cpu_ns(), ns;

        if (broker > 0) {
                ns = proc_cpu_ns(broker);
                if (ns < 0)
                        return -1;
                sum += ns;
        }
        for (size_t i = 0; i < n_peers; i++) {
                ns = proc_cpu_ns(peers[i]);
                if (ns < 0)
                        return -1;
                sum += ns;
        }
        return sum;
}

static void phase_cpu_start(PhaseCpu *b, pid_t broker, const pid_t *peers, size_t n_peers) {
        *b = (PhaseCpu) { .pid = broker, .peers = peers, .n_peers = n_peers };
        b->all_ns = all_cpu_ns(broker, peers, n_peers);
        b->all_ok = b->all_ns >= 0;
        if (broker <= 0)
                return;
        b->ns = proc_cpu_ns(broker);
        b->ok = b->ns >= 0 && proc_cpu_ticks(broker, &b->user, &b->system) >= 0;
}

static void phase_cpu_stop(PhaseCpu *b) {
        uint64_t user, system;
        int64_t ns;

        if (b->all_ok) {
                ns = all_cpu_ns(b->pid, b->peers, b->n_peers);
                b->all_ok = ns >= b->all_ns;
                b->all_ns = ns - b->all_ns;
        }
        if (!b->ok)
                return;
        ns = proc_cpu_ns(b->pid);
        b->ok = ns >= b->ns && proc_cpu_ticks(b->pid, &user, &system) >= 0;
        if (!b->ok)
                return;
        b->ns = ns - b->ns;
        b->user = user - b->user;
        b->system = system - b->system;
}

/* Prints the CPU time of the phase, the broker's also per @unit (@count of them). */
static void phase_cpu_print(const char *prefix, const PhaseCpu *b, const char *unit, uint64_t count) {
        double tick = 1.0 / (double)sysconf(_SC_CLK_TCK);

        if (b->all_ok)
                printf(" %sall_cpu_s=%.4f", prefix, (double)b->all_ns / 1e9);
        if (!b->ok || count == 0)
                return;
        printf(" %sbroker_cpu_s=%.4f %sbroker_user_s=%.2f %sbroker_sys_s=%.2f %sbroker_%ss=%" PRIu64
               " %sbroker_cpu_ns_per_%s=%.0f",
               prefix, (double)b->ns / 1e9, prefix, (double)b->user * tick, prefix, (double)b->system * tick,
               prefix, unit, count, prefix, unit, (double)b->ns / (double)count);
}

typedef struct Server {
        pid_t pid;
        char id[ID_MAX];
} Server;

static int echo_server_main(const Backend *be, const char *address, int fd) {
        BenchConn *c = NULL;
        char line[ID_MAX + 2];
        int r;

        r = be->connect(&c, address);
        if (r >= 0)
                r = be->serve_echo(c);
        if (r < 0) {
                fprintf(stderr, "plexus-bench: echo server: %s\n", strerror(-r));
                (void)proc_write_all(fd, "!\n", 2);
                be->disconnect(c);
                return 1;
        }
        snprintf(line, sizeof(line), "%s\n", be->unique_id(c));
        (void)proc_write_all(fd, line, strlen(line));
        close(fd);

        while (!c->quit) {
                r = be->process(c, -1);
                if (r < 0) {
                        fprintf(stderr, "plexus-bench: echo server: %s\n", strerror(-r));
                        break;
                }
        }
        if (r >= 0)
                r = be->flush(c);
        be->disconnect(c);
        if (c && c->n_bad)
                fprintf(stderr, "plexus-bench: echo server: %" PRIu64 " bad requests\n", c->n_bad);
        return r < 0 ? 1 : 0;
}

typedef struct EchoServerArgs {
        const Backend *be;
        const char *address;
} EchoServerArgs;

static int echo_server_child(const void *arg, int fd) {
        const EchoServerArgs *a = arg;

        return echo_server_main(a->be, a->address, fd);
}

static int server_start(const Backend *be, const char *address, Server *ret) {
        EchoServerArgs args = { .be = be, .address = address };
        pid_t pid = 0;
        int r;

        r = proc_spawn_service(echo_server_child, &args, &pid, ret->id, sizeof(ret->id));
        if (r < 0) {
                if (pid > 0) {
                        kill(pid, SIGKILL);
                        (void)proc_wait(pid, PROC_TIMEOUT_MS);
                }
                return r;
        }
        ret->pid = pid;
        return 0;
}

/* Ask the server to quit; it must exit cleanly, having seen no bad request. */
static int server_stop(const Backend *be, BenchConn *c, Server *s) {
        int r, status;

        if (s->pid <= 0)
                return 0;
        r = c ? be->quit(c, s->id) : -ENOTCONN;
        if (r < 0)
                kill(s->pid, SIGKILL);
        status = proc_wait(s->pid, PROC_TIMEOUT_MS);
        s->pid = 0;
        if (r < 0)
                return r;
        if (status != 0) {
                fprintf(stderr, "plexus-bench: echo server exited with status %d\n", status);
                return -EPROTO;
        }
        return 0;
}

typedef struct Echo {
        const uint8_t *sent;
        size_t size;
} Echo;

static int check_echo(void *userdata, const void *payload, size_t size) {
        Echo *e = userdata;

        if (size != e->size || memcmp(payload, e->sent, size) != 0) {
                fprintf(stderr, "plexus-bench: reply differs from the request\n");
                return -EBADMSG;
        }
        return 0;
}

/*
 * @warmup untimed, then @n timed blocking calls; latencies go to @s, the
 * broker's CPU time during the timed ones to @cpu.
 */
static int rtt_run(const Backend *be, BenchConn *c, const char *dest, size_t size,
                   unsigned warmup, unsigned n, Samples *s, pid_t broker_pid, const pid_t *server,
                   PhaseCpu *cpu) {
        _cleanup_(freep) uint8_t *buf = NULL;
        Echo e = { .size = size };
        int r;

        buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        e.sent = buf;

        for (unsigned i = 0; i < warmup + n; i++) {
                uint64_t t0, t1;

                payload_fill(buf, size, i);
                if (i == warmup)
                        phase_cpu_start(cpu, broker_pid, server, 1);
                t0 = now_ns();
                r = be->call(c, dest, buf, size, check_echo, &e);
                t1 = now_ns();
                if (r < 0)
                        return r;
                if (i >= warmup)
                        samples_add(s, t1 - t0);
        }
        phase_cpu_stop(cpu);
        return 0;
}

static void print_latency(const char *prefix, Samples *s) {
        double mean = samples_mean_us(s);
        double p50 = samples_percentile_us(s, 50);
        double p90 = samples_percentile_us(s, 90);
        double p99 = samples_percentile_us(s, 99);
        double min = (double)s->ns[0] / 1000.0;
        double max = (double)s->ns[s->n - 1] / 1000.0;

        printf(" %sp50_us=%.2f %sp90_us=%.2f %sp99_us=%.2f %smean_us=%.2f %smin_us=%.2f %smax_us=%.2f",
               prefix, p50, prefix, p90, prefix, p99, prefix, mean, prefix, min, prefix, max);
}

static int check_size(size_t size) {
        if (size < PAYLOAD_MIN || size > PAYLOAD_MAX) {
                fprintf(stderr, "plexus-bench: payload size must be %u..%u bytes\n", PAYLOAD_MIN, PAYLOAD_MAX);
                return -EINVAL;
        }
        return 0;
}

/**
 * measure_rtt() - round trip of blocking Echo calls
 * @be:         the bus client library
 * @o:          address, size, warmup, iterations
 *
 * Prints n, size and the latency percentiles in microseconds.
 *
 * Return: 0 or negative errno.
 */
int measure_rtt(const Backend *be, const BenchOptions *o) {
        _cleanup_(samples_deinit) Samples s = SAMPLES_NULL;
        Server srv = {};
        BenchConn *c = NULL;
        PhaseCpu cpu = {};
        int r, q;

        r = check_size(o->size);
        if (r < 0)
                return r;
        r = samples_init(&s, o->iterations);
        if (r < 0)
                return r;
        r = server_start(be, o->address, &srv);
        if (r < 0) {
                fprintf(stderr, "plexus-bench: cannot start the echo server: %s\n", strerror(-r));
                return r;
        }
        r = be->connect(&c, o->address);
        if (r >= 0)
                r = rtt_run(be, c, srv.id, o->size, o->warmup, o->iterations, &s, o->broker_pid, &srv.pid, &cpu);
        q = server_stop(be, c, &srv);
        be->disconnect(c);
        if (r < 0) {
                fprintf(stderr, "plexus-bench: rtt: %s\n", strerror(-r));
                return r;
        }
        if (q < 0)
                return q;

        printf("mode=rtt size=%zu n=%zu", o->size, s.n);
        print_latency("", &s);
        phase_cpu_print("", &cpu, "frame", 2 * (uint64_t)s.n);
        printf("\n");
        return 0;
}

typedef struct Pipeline {
        const Backend *be;
        BenchConn *c;
        const char *dest;
        size_t size;
        uint8_t *buf;
        uint64_t base;          /* sequence number of the first call of this run */
        uint64_t sent;
        uint64_t done;
        uint8_t *seen;          /* per call of this run: its reply arrived */
} Pipeline;

static int on_pipeline_reply(void *userdata, const void *payload, size_t size) {
        Pipeline *pl = userdata;
        uint64_t seq;

        if (payload_check(payload, size, pl->size, &seq) < 0 ||
            seq < pl->base || seq >= pl->base + pl->sent || pl->seen[seq - pl->base]) {
                fprintf(stderr, "plexus-bench: bad, unexpected or duplicate reply\n");
                return -EBADMSG;
        }
        pl->seen[seq - pl->base] = 1;
        pl->done++;
        return 0;
}

/* @n calls with at most @depth in flight, numbered from @base; the broker's CPU time to @cpu. */
static int pipeline_run(Pipeline *pl, uint64_t base, uint64_t n, unsigned depth, uint64_t *ret_ns,
                        pid_t broker_pid, const pid_t *server, PhaseCpu *cpu) {
        uint64_t t0, last_progress;
        int r;

        free(pl->seen);
        pl->seen = calloc(n ? n : 1, 1);
        if (!pl->seen)
                return -ENOMEM;
        pl->base = base;
        pl->sent = pl->done = 0;
        pl->c->on_reply = on_pipeline_reply;
        pl->c->userdata = pl;

        phase_cpu_start(cpu, broker_pid, server, server ? 1 : 0);
        t0 = last_progress = now_ns();
        while (pl->done < n) {
                uint64_t before = pl->done;

                while (pl->sent < n && pl->sent - pl->done < depth) {
                        payload_fill(pl->buf, pl->size, base + pl->sent);
                        r = pl->be->call_async(pl->c, pl->dest, pl->buf, pl->size);
                        if (r < 0)
                                return r;
                        pl->sent++;
                }
                r = pl->be->process(pl->c, 1000);
                if (r < 0)
                        return r;
                if (pl->done != before)
                        last_progress = now_ns();
                else if (now_ns() - last_progress > NO_PROGRESS_NS)
                        return -ETIMEDOUT;
        }
        *ret_ns = now_ns() - t0;
        phase_cpu_stop(cpu);
        return 0;
}

/**
 * measure_pipeline() - throughput of Echo calls with many in flight
 * @be:         the bus client library
 * @o:          address, size, depth, warmup, iterations (calls)
 *
 * Prints the number of calls, the time they took and calls per second.
 *
 * Return: 0 or negative errno.
 */
int measure_pipeline(const Backend *be, const BenchOptions *o) {
        _cleanup_(freep) uint8_t *buf = NULL;
        Pipeline pl = { .be = be, .size = o->size };
        Server srv = {};
        PhaseCpu cpu = {};
        uint64_t ns = 0;
        int r, q;

        r = check_size(o->size);
        if (r < 0)
                return r;
        if (o->depth == 0 || o->iterations == 0)
                return -EINVAL;
        buf = malloc(o->size);
        if (!buf)
                return -ENOMEM;
        pl.buf = buf;

        r = server_start(be, o->address, &srv);
        if (r < 0) {
                fprintf(stderr, "plexus-bench: cannot start the echo server: %s\n", strerror(-r));
                return r;
        }
        pl.dest = srv.id;
        r = be->connect(&pl.c, o->address);
        if (r >= 0 && o->warmup > 0)
                r = pipeline_run(&pl, 0, o->warmup, o->depth, &ns, 0, NULL, &cpu);
        if (r >= 0)
                r = pipeline_run(&pl, o->warmup, o->iterations, o->depth, &ns, o->broker_pid, &srv.pid, &cpu);
        q = server_stop(be, pl.c, &srv);
        be->disconnect(pl.c);
        free(pl.seen);
        if (r < 0) {
                fprintf(stderr, "plexus-bench: pipeline: %s\n", strerror(-r));
                return r;
        }
        if (q < 0)
                return q;

        printf("mode=pipeline size=%zu depth=%u calls=%u seconds=%.4f calls_per_s=%.0f",
               o->size, o->depth, o->iterations, (double)ns / 1e9,
               (double)o->iterations / ((double)ns / 1e9));
        phase_cpu_print("", &cpu, "frame", 2 * (uint64_t)o->iterations);
        printf("\n");
        return 0;
}

typedef struct Subscriber {
        uint64_t expected;      /* sequence number of the next signal */
        uint64_t total;
        unsigned burst;
        size_t size;
        int ack_fd;
} Subscriber;

static int on_tick(void *userdata, const void *payload, size_t size) {
        Subscriber *s = userdata;
        uint64_t seq;
        int r;

        if (payload_check(payload, size, s->size, &seq) < 0 || seq != s->expected) {
                fprintf(stderr, "plexus-bench: subscriber %d: bad or out-of-order signal "
                        "(expected %" PRIu64 ")\n", (int)getpid(), s->expected);
                return -EBADMSG;
        }
        s->expected++;
        if (s->expected % s->burst == 0 || s->expected == s->total) {
                r = proc_write_all(s->ack_fd, "A", 1);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int subscriber_main(const Backend *be, const BenchOptions *o, uint64_t total,
                           int ready_fd, int ack_fd) {
        Subscriber s = {
                .total = total,
                .burst = o->burst,
                .size = o->size,
                .ack_fd = ack_fd,
        };
        BenchConn *c = NULL;
        uint64_t last_progress;
        int r;

        r = be->connect(&c, o->address);
        if (r >= 0) {
                c->on_signal = on_tick;
                c->userdata = &s;
                r = be->subscribe(c);
        }
        if (r < 0) {
                fprintf(stderr, "plexus-bench: subscriber: %s\n", strerror(-r));
                (void)proc_write_all(ready_fd, "F", 1);
                be->disconnect(c);
                return 1;
        }
        (void)proc_write_all(ready_fd, "R", 1);
        close(ready_fd);

        last_progress = now_ns();
        while (s.expected < s.total) {
                uint64_t before = s.expected;

                r = be->process(c, 1000);
                if (r < 0)
                        break;
                if (s.expected != before)
                        last_progress = now_ns();
                else if (now_ns() - last_progress > NO_PROGRESS_NS) {
                        r = -ETIMEDOUT;
                        break;
                }
        }
        if (r < 0) {
                fprintf(stderr, "plexus-bench: subscriber: %s after %" PRIu64 " signals\n",
                        strerror(-r), s.expected);
                (void)proc_write_all(ack_fd, "F", 1);
        }
        be->disconnect(c);
        return r < 0 ? 1 : 0;
}

/* Read @n bytes of @want from @fd; an "F" or end of file is a failure. */
static int collect(int fd, char want, unsigned n, int timeout_ms) {
        char buf[256];

        while (n > 0) {
                size_t chunk = MIN((size_t)n, sizeof(buf));
                int r;

                r = proc_read_exact(fd, buf, chunk, timeout_ms);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < chunk; i++)
                        if (buf[i] != want)
                                return -EPROTO;
                n -= (unsigned)chunk;
        }
        return 0;
}

/**
 * measure_fanout() - signals delivered per second to many subscribers
 * @be:         the bus client library
 * @o:          address, size, subscribers, burst, warmup and iterations
 *              (signals published)
 *
 * The publisher sends bursts of @o->burst signals and waits until every
 * subscriber has acknowledged each burst (over a pipe), so that no broker
 * ever has to queue more than a burst per subscriber: the figure is the
 * broker's delivery rate, not a measure of how much it buffers or drops.
 *
 * Return: 0 or negative errno.
 */
int measure_fanout(const Backend *be, const BenchOptions *o) {
        pid_t *pids = NULL;
        uint8_t *buf = NULL;
        unsigned warmup = o->burst ? (o->warmup + o->burst - 1) / o->burst * o->burst : 0;
        uint64_t total = (uint64_t)warmup + o->iterations;
        int ready[2] = { -1, -1 }, ack[2] = { -1, -1 };
        BenchConn *c = NULL;
        PhaseCpu cpu = {};
        uint64_t t0 = 0, ns = 0;
        unsigned n_started = 0;
        int r = 0, failed = 0;

        r = check_size(o->size);
        if (r < 0)
                return r;
        if (o->subscribers == 0 || o->burst == 0 || o->iterations == 0)
                return -EINVAL;
        buf = malloc(o->size);
        pids = calloc(o->subscribers, sizeof(*pids));
        if (!buf || !pids) {
                r = -ENOMEM;
                goto finish;
        }
        if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(ack, O_CLOEXEC) < 0) {
                r = -errno;
                goto finish;
        }

        for (; n_started < o->subscribers; n_started++) {
                pid_t pid = proc_fork();

                if (pid < 0) {
                        r = pid;
                        goto finish;
                }
                if (pid == 0) {
                        close(ready[0]);
                        close(ack[0]);
                        _exit(subscriber_main(be, o, total, ready[1], ack[1]));
                }
                pids[n_started] = pid;
        }
        ready[1] = plx_close(ready[1]);
        ack[1] = plx_close(ack[1]);

        r = collect(ready[0], 'R', o->subscribers, PROC_TIMEOUT_MS);
        if (r < 0) {
                fprintf(stderr, "plexus-bench: subscribers did not get ready: %s\n", strerror(-r));
                goto finish;
        }
        r = be->connect(&c, o->address);
        if (r < 0)
                goto finish;

        if (warmup == 0) {
                phase_cpu_start(&cpu, o->broker_pid, pids, n_started);
                t0 = now_ns();
        }
        for (uint64_t seq = 0; seq < total; seq++) {
                payload_fill(buf, o->size, seq);
                r = be->publish(c, buf, o->size);
                if (r < 0)
                        goto finish;
                if ((seq + 1) % o->burst != 0 && seq + 1 != total)
                        continue;

                r = be->flush(c);
                if (r >= 0)
                        r = be->process(c, 0);  /* errors about our signals fail here */
                if (r >= 0)
                        r = collect(ack[0], 'A', o->subscribers, PROC_TIMEOUT_MS);
                if (r < 0) {
                        fprintf(stderr, "plexus-bench: burst ending at %" PRIu64 " not delivered: %s\n",
                                seq, strerror(-r));
                        goto finish;
                }
                if (seq + 1 == warmup) {
                        phase_cpu_start(&cpu, o->broker_pid, pids, n_started);
                        t0 = now_ns();
                }
        }
        ns = now_ns() - t0;
        phase_cpu_stop(&cpu);
        r = be->process(c, 0);

finish:
        be->disconnect(c);
        plx_close(ready[0]);
        plx_close(ready[1]);
        plx_close(ack[0]);
        plx_close(ack[1]);
        for (unsigned i = 0; i < n_started; i++) {
                if (r < 0)
                        kill(pids[i], SIGKILL);
                if (proc_wait(pids[i], PROC_TIMEOUT_MS) != 0)
                        failed++;
        }
        free(pids);
        free(buf);
        if (r < 0) {
                fprintf(stderr, "plexus-bench: fanout: %s\n", strerror(-r));
                return r;
        }
        if (failed) {
                fprintf(stderr, "plexus-bench: fanout: %d subscribers failed\n", failed);
                return -EPROTO;
        }

        printf("mode=fanout size=%zu subscribers=%u messages=%u burst=%u delivered=%" PRIu64
               " seconds=%.4f msgs_per_s=%.0f",
               o->size, o->subscribers, o->iterations, o->burst,
               (uint64_t)o->subscribers * o->iterations, (double)ns / 1e9,
               (double)o->subscribers * o->iterations / ((double)ns / 1e9));
        phase_cpu_print("", &cpu, "frame", (uint64_t)o->subscribers * o->iterations);
        printf("\n");
        return 0;
}

/**
 * measure_connect() - connect, complete the handshake, disconnect
 * @be:         the bus client library
 * @o:          address, warmup and iterations (connections)
 *
 * Each connection must get a unique id different from the previous one.
 * Prints connections per second and the latency of one cycle.
 *
 * Return: 0 or negative errno.
 */
int measure_connect(const Backend *be, const BenchOptions *o) {
        _cleanup_(samples_deinit) Samples s = SAMPLES_NULL;
        char prev[ID_MAX] = "";
        uint64_t t_start = 0, ns;
        PhaseCpu cpu = {};
        int r;

        r = samples_init(&s, o->iterations);
        if (r < 0)
                return r;

        for (unsigned i = 0; i < o->warmup + o->iterations; i++) {
                BenchConn *c = NULL;
                const char *id;
                uint64_t t0;

                if (i == o->warmup)
                        phase_cpu_start(&cpu, o->broker_pid, NULL, 0);
                t0 = now_ns();
                if (i == o->warmup)
                        t_start = t0;
                r = be->connect(&c, o->address);
                if (r < 0) {
                        fprintf(stderr, "plexus-bench: connect #%u: %s\n", i, strerror(-r));
                        return r;
                }
                id = be->unique_id(c);
                if (!id || id[0] != ':' || strlen(id) >= sizeof(prev) || strcmp(id, prev) == 0) {
                        fprintf(stderr, "plexus-bench: connect #%u: bad unique id\n", i);
                        be->disconnect(c);
                        return -EPROTO;
                }
                strcpy(prev, id);
                be->disconnect(c);
                if (i >= o->warmup)
                        samples_add(&s, now_ns() - t0);
        }
        ns = now_ns() - t_start;
        phase_cpu_stop(&cpu);

        printf("mode=connect n=%u seconds=%.4f conn_per_s=%.0f", o->iterations, (double)ns / 1e9,
               (double)o->iterations / ((double)ns / 1e9));
        print_latency("", &s);
        phase_cpu_print("", &cpu, "conn", o->iterations);
        printf("\n");
        return 0;
}

static int holder_main(const Backend *be, const char *address, unsigned n, int ready_fd, int stop_fd) {
        _cleanup_(freep) BenchConn **conns = NULL;
        unsigned n_open = 0;
        char c;
        int r = 0;

        conns = calloc(n ? n : 1, sizeof(*conns));
        if (!conns)
                r = -ENOMEM;
        if (r >= 0)
                r = proc_raise_fd_limit(n + 64);
        for (; r >= 0 && n_open < n; n_open++) {
                const char *id;

                r = be->connect(&conns[n_open], address);
                if (r < 0)
                        break;
                id = be->unique_id(conns[n_open]);
                if (!id || id[0] != ':')
                        r = -EPROTO;
        }
        if (r < 0) {
                fprintf(stderr, "plexus-bench: idle client #%u: %s\n", n_open, strerror(-r));
                (void)proc_write_all(ready_fd, "F", 1);
        } else {
                (void)proc_write_all(ready_fd, "R", 1);
        }
        close(ready_fd);

        /* Idle until the measuring process closes the pipe. */
        if (r >= 0)
                while (read(stop_fd, &c, 1) < 0 && errno == EINTR)
                        ;
        for (unsigned i = 0; i < n_open; i++)
                be->disconnect(conns[i]);
        return r < 0 ? 1 : 0;
}

/**
 * measure_idle() - memory per idle client, and latency next to them
 * @be:         the bus client library
 * @o:          address, clients, per_process, broker_pid, warmup and
 *              iterations (calls of the active pair)
 *
 * Measures the call latency of one active pair, connects @o->clients idle
 * clients from holder processes, reads the broker's VmRSS and Pss before
 * and after, and measures the pair again while they stay connected.
 *
 * Return: 0 or negative errno.
 */
int measure_idle(const Backend *be, const BenchOptions *o) {
        Samples base = SAMPLES_NULL, idle = SAMPLES_NULL;
        pid_t *pids = NULL;
        unsigned per = o->per_process ? o->per_process : 500;
        unsigned n_holders = (o->clients + per - 1) / per;
        int ready[2] = { -1, -1 }, stop[2] = { -1, -1 };
        long rss0 = -1, rss1 = -1, pss0 = -1, pss1 = -1;
        PhaseCpu cpu_base = {}, cpu_idle = {};
        unsigned n_started = 0;
        uint64_t t0, connect_ns = 0;
        BenchConn *c = NULL;
        Server srv = {};
        int r, q, failed = 0;
        double p99_base, p99_idle;

        r = samples_init(&base, o->iterations);
        if (r >= 0)
                r = samples_init(&idle, o->iterations);
        if (r >= 0) {
                pids = calloc(n_holders ? n_holders : 1, sizeof(*pids));
                if (!pids)
                        r = -ENOMEM;
        }
        if (r >= 0) {
                r = server_start(be, o->address, &srv);
                if (r < 0)
                        fprintf(stderr, "plexus-bench: cannot start the echo server: %s\n", strerror(-r));
        }
        if (r >= 0)
                r = be->connect(&c, o->address);
        if (r >= 0)
                r = rtt_run(be, c, srv.id, 64, o->warmup, o->iterations, &base, o->broker_pid, &srv.pid, &cpu_base);
        if (r < 0)
                goto finish;

        if (o->broker_pid > 0) {
                rss0 = proc_rss_kib(o->broker_pid);
                pss0 = proc_pss_kib(o->broker_pid);
        }
        if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(stop, O_CLOEXEC) < 0) {
                r = -errno;
                goto finish;
        }
        t0 = now_ns();
        for (; n_started < n_holders; n_started++) {
                unsigned n = MIN(per, o->clients - n_started * per);
                pid_t pid = proc_fork();

                if (pid < 0) {
                        r = pid;
                        goto finish;
                }
                if (pid == 0) {
                        close(ready[0]);
                        close(stop[1]);
                        _exit(holder_main(be, o->address, n, ready[1], stop[0]));
                }
                pids[n_started] = pid;
        }
        ready[1] = plx_close(ready[1]);
        stop[0] = plx_close(stop[0]);
        r = collect(ready[0], 'R', n_holders, 4 * PROC_TIMEOUT_MS);
        if (r < 0) {
                fprintf(stderr, "plexus-bench: idle clients did not connect: %s\n", strerror(-r));
                goto finish;
        }
        connect_ns = now_ns() - t0;
        if (o->broker_pid > 0) {
                rss1 = proc_rss_kib(o->broker_pid);
                pss1 = proc_pss_kib(o->broker_pid);
        }

        r = rtt_run(be, c, srv.id, 64, o->warmup, o->iterations, &idle, o->broker_pid, &srv.pid, &cpu_idle);

finish:
        q = server_stop(be, c, &srv);
        be->disconnect(c);
        plx_close(ready[0]);
        plx_close(ready[1]);
        plx_close(stop[0]);
        plx_close(stop[1]);
        for (unsigned i = 0; i < n_started; i++) {
                if (r < 0)
                        kill(pids[i], SIGKILL);
                if (proc_wait(pids[i], 4 * PROC_TIMEOUT_MS) != 0)
                        failed++;
        }
        free(pids);
        if (r >= 0 && q < 0)
                r = q;
        if (r >= 0 && failed) {
                fprintf(stderr, "plexus-bench: idle: %d holder processes failed\n", failed);
                r = -EPROTO;
        }
        if (r < 0) {
                fprintf(stderr, "plexus-bench: idle: %s\n", strerror(-r));
                samples_deinit(&base);
                samples_deinit(&idle);
                return r;
        }

        p99_base = samples_percentile_us(&base, 99);
        p99_idle = samples_percentile_us(&idle, 99);
        printf("mode=idle clients=%u connect_seconds=%.3f", o->clients, (double)connect_ns / 1e9);
        if (rss0 >= 0 && rss1 >= 0)
                printf(" rss_before_kib=%ld rss_after_kib=%ld rss_per_client_b=%.0f",
                       rss0, rss1, (double)(rss1 - rss0) * 1024.0 / o->clients);
        if (pss0 >= 0 && pss1 >= 0)
                printf(" pss_before_kib=%ld pss_after_kib=%ld pss_per_client_b=%.0f",
                       pss0, pss1, (double)(pss1 - pss0) * 1024.0 / o->clients);
        print_latency("base_", &base);
        print_latency("idle_", &idle);
        phase_cpu_print("base_", &cpu_base, "frame", 2 * (uint64_t)base.n);
        phase_cpu_print("idle_", &cpu_idle, "frame", 2 * (uint64_t)idle.n);
        printf(" p99_ratio=%.3f\n", p99_base > 0 ? p99_idle / p99_base : 0);
        samples_deinit(&base);
        samples_deinit(&idle);
        return 0;
}
