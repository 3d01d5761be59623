/*
 * echo-client: calls "Echo" on an echo-service and prints the answer.
 *
 *     echo-client [--to ID] TEXT
 *
 * The destination is the unique id given with --to, else
 * $PLEXUS_ECHO_SERVICE, else found by discovery (see echo-service.c): the
 * client subscribes to "examples/echo/announce", publishes on
 * "examples/echo/discover" and takes the first id announced within 5 s.
 *
 * Exit codes: 0 success (the reply is printed with a newline), 1 failure
 * (a remote error is printed as "error: NAME: MESSAGE"), 2 no connection to
 * the bus.
 *
 * Discovery waits with the foreign-loop API (plx_bus_get_fd(), _get_events(),
 * _get_timeout(), _process()) and its own poll(), which is how a program
 * with a deadline of its own drives a connection.
 */

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <plexus/plexus.h>

#define TOPIC_DISCOVER "examples/echo/discover"
#define TOPIC_ANNOUNCE "examples/echo/announce"
#define DISCOVERY_TIMEOUT_MS 5000

typedef struct Discovery {
        char id[256];
        bool found;
} Discovery;

static int on_announce(plx_msg *signal, void *userdata) {
        Discovery *d = userdata;
        const void *payload;
        size_t size;

        payload = plx_msg_get_payload(signal, &size);
        if (d->found || size == 0 || size >= sizeof(d->id))
                return 0;
        memcpy(d->id, payload, size);
        d->id[size] = 0;
        d->found = true;
        return 0;
}

static long long now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int discover(plx_bus *bus, char *ret_id, size_t size) {
        __attribute__((cleanup(plx_slot_freep))) plx_slot *slot = NULL;
        long long deadline = now_ms() + DISCOVERY_TIMEOUT_MS;
        Discovery d = { .found = false };
        int r;

        /* Subscribe first: plx_bus_subscribe() returns once the broker has
         * the subscription, so no announcement can slip past. */
        r = plx_bus_subscribe(bus, &slot, TOPIC_ANNOUNCE, on_announce, &d);
        if (r < 0)
                return r;
        r = plx_bus_publish(bus, TOPIC_DISCOVER, NULL, 0);
        if (r < 0)
                return r;

        while (!d.found) {
                struct pollfd pfd;
                long long left;
                int ms;

                r = plx_bus_process(bus);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;

                left = deadline - now_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                r = plx_bus_get_timeout(bus, &ms);
                if (r < 0)
                        return r;
                if (ms < 0 || ms > left)
                        ms = (int)left;
                pfd = (struct pollfd) { .fd = plx_bus_get_fd(bus), .events = (short)plx_bus_get_events(bus) };
                if (poll(&pfd, 1, ms) < 0 && errno != EINTR)
                        return -errno;
        }

        if (strlen(d.id) >= size)
                return -ENAMETOOLONG;
        strcpy(ret_id, d.id);
        return 0;
}

static void usage(FILE *f, const char *prog) {
        fprintf(f, "usage: %s [--to ID] TEXT\n\n"
                   "Calls Echo on an echo-service and prints the reply.\n"
                   "  --to ID   unique id of the service (default: $PLEXUS_ECHO_SERVICE,\n"
                   "            else discovery on " TOPIC_DISCOVER ")\n", prog);
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "to", required_argument, NULL, 't' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        __attribute__((cleanup(plx_bus_freep))) plx_bus *bus = NULL;
        __attribute__((cleanup(plx_msg_unrefp))) plx_msg *reply = NULL;
        const char *to = NULL, *text;
        char found[256];
        const void *payload;
        size_t size;
        int c, r;

        while ((c = getopt_long(argc, argv, "t:h", options, NULL)) >= 0) {
                switch (c) {
                case 't':
                        to = optarg;
                        break;
                case 'h':
                        usage(stdout, argv[0]);
                        return 0;
                default:
                        usage(stderr, argv[0]);
                        return 1;
                }
        }
        if (optind != argc - 1) {
                usage(stderr, argv[0]);
                return 1;
        }
        text = argv[optind];
        if (!to) {
                to = getenv("PLEXUS_ECHO_SERVICE");
                if (to && !*to)
                        to = NULL;
        }

        r = plx_bus_new(&bus, NULL, "echo-client");
        if (r < 0) {
                fprintf(stderr, "echo-client: cannot connect to the bus: %s\n", strerror(-r));
                return 2;
        }

        if (!to) {
                r = discover(bus, found, sizeof(found));
                if (r == -ETIMEDOUT) {
                        fprintf(stderr, "echo-client: no echo-service announced itself within %d s\n",
                                DISCOVERY_TIMEOUT_MS / 1000);
                        return 1;
                }
                if (r < 0) {
                        fprintf(stderr, "echo-client: discovery failed: %s\n", strerror(-r));
                        return 1;
                }
                to = found;
        }

        r = plx_bus_call(bus, to, "Echo", text, strlen(text), PLX_TIMEOUT_DEFAULT, &reply);
        if (r == -EREMOTEIO) {
                const char *message = plx_msg_get_error_message(reply);

                fprintf(stderr, "error: %s: %s\n", plx_msg_get_error_name(reply), message ? message : "");
                return 1;
        }
        if (r < 0) {
                fprintf(stderr, "echo-client: calling Echo on %s failed: %s\n", to, strerror(-r));
                return 1;
        }

        payload = plx_msg_get_payload(reply, &size);
        fwrite(payload, 1, size, stdout);
        putchar('\n');
        return fflush(stdout) == 0 ? 0 : 1;
}
