/*
 * plexus-bench: one measurement against one bus, as run by bench/run.sh.
 *
 *     plexus-bench [OPTIONS] BUS MODE
 *     plexus-bench journal-sink --address PATH
 *
 * BUS is "plexus" (libplexus; --address is plexusd's socket path), "dbus"
 * (sd-bus; --address is a D-Bus address such as unix:path=/x) or "raw"
 * (two processes on a SOCK_SEQPACKET socketpair, no broker). MODE is rtt,
 * pipeline, fanout, connect or idle (see measure.h); "raw syscall" times
 * 20 loops of -n getppid() calls instead (proc_syscall_cost()). The result
 * is one line of key=value pairs on stdout; the exit code is 0 only if
 * every transfer was verified.
 */

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "measure.h"
#include "proc.h"
#include "raw.h"
#include "sink.h"

static void help(void) {
        printf("Usage: %s [OPTIONS] BUS MODE\n"
               "       %s journal-sink --address PATH\n\n"
               "Runs one Plexus benchmark measurement and prints key=value results.\n\n"
               "BUS:   plexus | dbus | raw\n"
               "MODE:  rtt | pipeline | fanout | connect | idle; raw also: syscall\n\n"
               "  -a --address ADDR      bus address: plexusd socket path, D-Bus address,\n"
               "                         or a socket path to create (raw connect)\n"
               "  -s --size BYTES        payload size (default 64)\n"
               "  -n --iterations N      timed calls, connections or signals (default 10000)\n"
               "  -w --warmup N          untimed ones first (default 1000)\n"
               "  -d --depth N           pipeline: calls in flight (default 128)\n"
               "  -S --subscribers N     fanout: subscriber processes (default 1)\n"
               "  -b --burst N           fanout: signals per acknowledged burst (default 100)\n"
               "  -c --clients N         idle: idle connections (default 10000)\n"
               "  -p --per-process N     idle: connections per holder process (default 500)\n"
               "  -P --broker-pid PID    the broker whose CPU time (and, idle: memory) is read\n"
               "  -h --help              show this help\n",
               program_invocation_short_name, program_invocation_short_name);
}

/* One line: the cost of getppid() on this CPU, in 20 loops of @n, in nanoseconds per call. */
static int measure_syscall(unsigned n) {
        SyscallCost c;
        int r;

        r = proc_syscall_cost(n, &c);
        if (r < 0) {
                fprintf(stderr, "%s: syscall: %s\n", program_invocation_short_name, strerror(-r));
                return r;
        }
        printf("mode=syscall call=getppid n=%u ns_min=%.1f ns_p50=%.1f ns_cpu=%.1f\n", c.n, c.min_ns, c.p50_ns,
               c.cpu_ns);
        return 0;
}

static int parse_uint(const char *s, unsigned *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || !*s || *end || v > UINT_MAX)
                return -EINVAL;
        *ret = (unsigned)v;
        return 0;
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "address", required_argument, NULL, 'a' },
                { "size", required_argument, NULL, 's' },
                { "iterations", required_argument, NULL, 'n' },
                { "warmup", required_argument, NULL, 'w' },
                { "depth", required_argument, NULL, 'd' },
                { "subscribers", required_argument, NULL, 'S' },
                { "burst", required_argument, NULL, 'b' },
                { "clients", required_argument, NULL, 'c' },
                { "per-process", required_argument, NULL, 'p' },
                { "broker-pid", required_argument, NULL, 'P' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        BenchOptions o = {
                .size = 64,
                .iterations = 10000,
                .warmup = 1000,
                .depth = 128,
                .subscribers = 1,
                .burst = 100,
                .clients = 10000,
                .per_process = 500,
        };
        const char *bus, *mode;
        const Backend *be = NULL;
        unsigned v;
        int c, r;

        while ((c = getopt_long(argc, argv, "a:s:n:w:d:S:b:c:p:P:h", options, NULL)) >= 0) {
                if (c == 'h') {
                        help();
                        return 0;
                }
                if (c == 'a') {
                        o.address = optarg;
                        continue;
                }
                if (c == '?' || parse_uint(optarg, &v) < 0) {
                        if (c != '?')
                                fprintf(stderr, "%s: bad number '%s'\n", program_invocation_short_name, optarg);
                        return 2;
                }
                switch (c) {
                case 's':
                        o.size = v;
                        break;
                case 'n':
                        o.iterations = v;
                        break;
                case 'w':
                        o.warmup = v;
                        break;
                case 'd':
                        o.depth = v;
                        break;
                case 'S':
                        o.subscribers = v;
                        break;
                case 'b':
                        o.burst = v;
                        break;
                case 'c':
                        o.clients = v;
                        break;
                case 'p':
                        o.per_process = v;
                        break;
                case 'P':
                        o.broker_pid = (pid_t)v;
                        break;
                }
        }

        if (optind < argc && strcmp(argv[optind], "journal-sink") == 0) {
                r = sink_run(o.address);
                if (r < 0)
                        fprintf(stderr, "%s: journal sink on %s: %s\n", program_invocation_short_name,
                                o.address ?: "(no --address)", strerror(-r));
                return r < 0 ? 1 : 0;
        }

        if (argc - optind != 2) {
                help();
                return 2;
        }
        bus = argv[optind];
        mode = argv[optind + 1];
        if (o.iterations == 0) {
                fprintf(stderr, "%s: --iterations must be at least 1\n", program_invocation_short_name);
                return 2;
        }
        /* A child that dies must not kill us with SIGPIPE on its pipe. */
        signal(SIGPIPE, SIG_IGN);

        if (strcmp(bus, "raw") == 0) {
                if (strcmp(mode, "rtt") == 0)
                        r = raw_rtt(&o);
                else if (strcmp(mode, "pipeline") == 0)
                        r = raw_pipeline(&o);
                else if (strcmp(mode, "connect") == 0)
                        r = raw_connect(&o);
                else if (strcmp(mode, "syscall") == 0)
                        r = measure_syscall(o.iterations);
                else {
                        fprintf(stderr, "%s: raw has no mode '%s'\n", program_invocation_short_name, mode);
                        return 2;
                }
                return r < 0 ? 1 : 0;
        }

        if (strcmp(bus, "plexus") == 0)
                be = &backend_plexus;
        else if (strcmp(bus, "dbus") == 0)
                be = &backend_sdbus;
        if (!be || !o.address) {
                fprintf(stderr, "%s: need BUS plexus, dbus or raw, and --address\n", program_invocation_short_name);
                return 2;
        }

        if (strcmp(mode, "rtt") == 0)
                r = measure_rtt(be, &o);
        else if (strcmp(mode, "pipeline") == 0)
                r = measure_pipeline(be, &o);
        else if (strcmp(mode, "fanout") == 0)
                r = measure_fanout(be, &o);
        else if (strcmp(mode, "connect") == 0)
                r = measure_connect(be, &o);
        else if (strcmp(mode, "idle") == 0)
                r = measure_idle(be, &o);
        else {
                fprintf(stderr, "%s: unknown mode '%s'\n", program_invocation_short_name, mode);
                return 2;
        }
        return r < 0 ? 1 : 0;
}
