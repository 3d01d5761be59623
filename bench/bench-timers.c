/*
 * bench-timers: what deadlines cost the broker.
 *
 *     bench-timers ADDRESS BROKER_PID [N_CALLS [N_LEASES]]
 *
 * Against a running plexusd: N_CALLS calls (default 100,000) to a callee
 * that never answers, all with the same short timeout, and N_LEASES names
 * (default 100,000) requested with a lease that is never renewed. The
 * broker times every one of them out itself, from its single timerfd.
 *
 * Measured: the broker's CPU time (utime + stime from /proc/PID/stat)
 * spent while the deadlines fire, per timer event; and the round-trip
 * latency of ordinary calls (Ping to the broker) sampled before, and while,
 * the deadlines fire. The claim to check is that the latency stays flat.
 * Every timeout is verified: each caller must receive exactly one Timeout
 * error per call, and every lease must be gone at the end.
 *
 * Connections: calls are spread over connections of at most 1000 pending
 * calls and names over connections of at most 250 names, below the broker's
 * default per-client limits.
 */

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <plexus/plexus.h>

#define CALLS_PER_CONN 1000
#define NAMES_PER_CONN 250
/* Long enough that nothing expires while the rest is still being armed. */
#define CALL_TIMEOUT_USEC (8000u * 1000u)
#define LEASE_USEC (12000u * 1000u)
#define PING_SAMPLES_MAX 100000

#define MAX(a, b) ((a) > (b) ? (a) : (b))

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static double broker_cpu_sec(pid_t pid) {
        char path[64], buf[1024], *p;
        unsigned long utime, stime;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        f = fopen(path, "re");
        if (!f || !fgets(buf, sizeof(buf), f)) {
                perror(path);
                exit(1);
        }
        fclose(f);
        /* Fields 14 and 15, counted after the ")" that ends the command name. */
        p = strrchr(buf, ')');
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2) {
                fprintf(stderr, "cannot parse %s\n", path);
                exit(1);
        }
        return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static int never(plx_msg *m, void *userdata) {
        return 0;
}

typedef struct Counter {
        uint64_t n_timeouts;
        uint64_t n_other;
} Counter;

static int on_answer(plx_msg *m, void *userdata) {
        Counter *c = userdata;
        const char *name = plx_msg_get_error_name(m);

        if (name && strcmp(name, PLX_ERROR_TIMEOUT) == 0)
                c->n_timeouts++;
        else
                c->n_other++;
        return 0;
}

static void die(const char *what, int r) {
        fprintf(stderr, "bench-timers: %s: %s\n", what, strerror(-r));
        exit(1);
}

static void pump(plx_bus **buses, size_t n) {
        for (size_t i = 0; i < n; i++) {
                int r;

                while ((r = plx_bus_process(buses[i])) > 0)
                        ;
                if (r < 0)
                        die("process", r);
        }
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

        return x < y ? -1 : x > y;
}

typedef struct Samples {
        uint64_t v[PING_SAMPLES_MAX];
        size_t n;
} Samples;

static void ping(plx_bus *bus, Samples *s) {
        uint64_t t0 = now_usec();
        int r;

        r = plx_bus_call(bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL);
        if (r < 0)
                die("Ping", r);
        if (s->n < PING_SAMPLES_MAX)
                s->v[s->n++] = now_usec() - t0;
}

static void report(const char *what, Samples *s) {
        qsort(s->v, s->n, sizeof(s->v[0]), cmp_u64);
        if (!s->n)
                return;
        printf("| %s | %zu | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " |\n", what, s->n,
               s->v[s->n / 2], s->v[s->n * 99 / 100], s->v[s->n - 1]);
}

int main(int argc, char **argv) {
        static Samples before, during;
        plx_bus **callers, **owners, *callee = NULL, *prober;
        char callee_id[64] = {};
        int idpipe[2];
        pid_t callee_pid;
        size_t n_calls, n_leases, n_callers, n_owners;
        Counter answers = {};
        double cpu0, cpu1, cpu_per_ping, cpu_events;
        uint64_t t_fire0, t_fire, t_end, t_leases_armed, t_armed;
        struct rlimit rl;
        pid_t broker;
        int r;

        if (argc < 3) {
                fprintf(stderr, "usage: %s ADDRESS BROKER_PID [N_CALLS [N_LEASES]]\n", argv[0]);
                return 2;
        }
        broker = (pid_t)atoi(argv[2]);
        n_calls = argc > 3 ? strtoul(argv[3], NULL, 10) : 100000;
        n_leases = argc > 4 ? strtoul(argv[4], NULL, 10) : 100000;
        n_callers = (n_calls + CALLS_PER_CONN - 1) / CALLS_PER_CONN;
        n_owners = (n_leases + NAMES_PER_CONN - 1) / NAMES_PER_CONN;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
                rl.rlim_cur = rl.rlim_max;
                setrlimit(RLIMIT_NOFILE, &rl);
        }

        callers = calloc(n_callers ?: 1, sizeof(*callers));
        owners = calloc(n_owners ?: 1, sizeof(*owners));
        if (!callers || !owners)
                die("calloc", -ENOMEM);

        /* The callee drains its socket in a process of its own, as a real service would. */
        if (pipe(idpipe) < 0)
                die("pipe", -errno);
        callee_pid = fork();
        if (callee_pid < 0)
                die("fork", -errno);
        if (callee_pid == 0) {
                r = plx_bus_new(&callee, argv[1], "bench-callee");
                if (r < 0)
                        die("connect", r);
                r = plx_bus_add_method(callee, NULL, "Never", never, NULL);
                if (r < 0)
                        die("add method", r);
                if (write(idpipe[1], plx_bus_get_unique_id(callee), strlen(plx_bus_get_unique_id(callee)) + 1) < 0)
                        die("write", -errno);
                _exit(plx_bus_run(callee) == -ECONNRESET ? 0 : 1);
        }
        close(idpipe[1]);
        if (read(idpipe[0], callee_id, sizeof(callee_id) - 1) <= 0)
                die("callee did not start", -EIO);
        close(idpipe[0]);

        r = plx_bus_new(&prober, argv[1], "bench-prober");
        if (r < 0)
                die("connect", r);

        /* Baseline latency with no deadlines pending, and the broker's CPU per ping. */
        cpu0 = broker_cpu_sec(broker);
        for (int i = 0; i < 20000; i++)
                ping(prober, &before);
        cpu_per_ping = (broker_cpu_sec(broker) - cpu0) / 20000;

        /* Arm: leases first (synchronous requests), then the calls. */
        t_fire0 = now_usec();
        for (size_t o = 0, done = 0; o < n_owners; o++) {
                r = plx_bus_new(&owners[o], argv[1], "bench-owner");
                if (r < 0)
                        die("connect", r);
                for (size_t i = 0; i < NAMES_PER_CONN && done < n_leases; i++, done++) {
                        char name[64];

                        snprintf(name, sizeof(name), "org.bench.n%zu", done);
                        r = plx_bus_request_name_lease(owners[o], name, PLX_NAME_NO_AUTO_RENEW,
                                                       LEASE_USEC, NULL, NULL, 0);
                        if (r != PLX_NAME_PRIMARY_OWNER)
                                die("request name", r < 0 ? r : -EEXIST);
                }
        }
        t_leases_armed = now_usec();
        for (size_t c = 0, done = 0; c < n_callers; c++) {
                r = plx_bus_new(&callers[c], argv[1], "bench-caller");
                if (r < 0)
                        die("connect", r);
                for (size_t i = 0; i < CALLS_PER_CONN && done < n_calls; i++, done++) {
                        while ((r = plx_bus_call_async(callers[c], NULL, callee_id,
                                                       "Never", NULL, 0, CALL_TIMEOUT_USEC,
                                                       on_answer, &answers)) == -ENOBUFS)
                                pump(&callers[c], 1);
                        if (r < 0)
                                die("call", r);
                }
                /*
                 * Hand the batch to the broker now and let the callee take
                 * it: 100,000 calls at once would overflow the callee's
                 * queue in the broker (QueueFull), which is correct, but
                 * not what is measured here.
                 */
                r = plx_bus_flush(callers[c]);
                if (r < 0)
                        die("flush", r);
                usleep(10000);
        }
        fprintf(stderr, "armed %zu calls on %zu connections and %zu leases on %zu connections\n",
                n_calls, n_callers, n_leases, n_owners);

        t_armed = now_usec();
        if (t_armed - t_fire0 >= CALL_TIMEOUT_USEC)
                fprintf(stderr, "warning: arming took %.1f s, some deadlines fired before the window\n",
                        (double)(t_armed - t_fire0) / 1e6);

        /*
         * The window: from the end of arming until every call has timed out
         * and every lease has run out. Pings sample the loop's latency
         * meanwhile; the callers are drained so their errors do not pile up.
         */
        cpu0 = broker_cpu_sec(broker);
        t_fire = now_usec();
        t_end = MAX(t_armed + CALL_TIMEOUT_USEC, t_leases_armed + LEASE_USEC) + 500000u;
        while ((answers.n_timeouts + answers.n_other < n_calls || now_usec() < t_end) &&
               now_usec() < t_end + 10000000u) {
                /* One ping per millisecond: a steady probe, not a load. */
                ping(prober, &during);
                pump(callers, n_callers);
                usleep(1000);
        }
        cpu1 = broker_cpu_sec(broker);
        cpu_events = cpu1 - cpu0 - cpu_per_ping * (double)during.n;

        /* Every lease must have run out: nobody owns any name now. */
        for (size_t i = 0; i < n_leases; i += n_leases / 100 ?: 1) {
                char name[64];

                snprintf(name, sizeof(name), "org.bench.n%zu", i);
                r = plx_bus_get_name_owner(prober, name, NULL);
                if (r != -ENXIO) {
                        fprintf(stderr, "bench-timers: %s still owned after its lease\n", name);
                        return 1;
                }
        }
        if (answers.n_timeouts != n_calls || answers.n_other) {
                fprintf(stderr, "bench-timers: %" PRIu64 " timeouts and %" PRIu64 " other answers for %zu calls\n",
                        answers.n_timeouts, answers.n_other, n_calls);
                return 1;
        }

        printf("## Deadlines: %zu call timeouts and %zu lease expiries\n\n", n_calls, n_leases);
        printf("Broker CPU in the %.1f s window: %.2f s, of which %.2f s for the %zu probe pings\n"
               "(measured beforehand at %.1f us each); %.2f us per timer event, including sending each\n"
               "Timeout error and publishing each name change (CPU time has 1/%ld s resolution).\n\n",
               (double)(now_usec() - t_fire) / 1e6, cpu1 - cpu0, cpu_per_ping * (double)during.n, during.n,
               cpu_per_ping * 1e6, cpu_events * 1e6 / (double)(n_calls + n_leases), sysconf(_SC_CLK_TCK));
        printf("| Ping round trip | samples | p50 us | p99 us | max us |\n|---|---|---|---|---|\n");
        report("before", &before);
        report("while deadlines fire", &during);

        for (size_t i = 0; i < n_callers; i++)
                plx_bus_free(callers[i]);
        for (size_t i = 0; i < n_owners; i++)
                plx_bus_free(owners[i]);
        plx_bus_free(prober);
        kill(callee_pid, SIGTERM);
        waitpid(callee_pid, NULL, 0);
        free(callers);
        free(owners);
        return 0;
}
