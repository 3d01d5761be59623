/*
 * echo-client: calls "Echo" on an echo-service and prints the answer.
 *
 *     echo-client [--to NAME] TEXT
 *
 * The destination is the name or unique id given with --to, else
 * $PLEXUS_ECHO_SERVICE, else the well-known name "org.example.Echo" that
 * echo-service owns.
 *
 * Exit codes: 0 success (the reply is printed with a newline), 1 failure
 * (a remote error is printed as "error: NAME: MESSAGE"), 2 no connection to
 * the bus.
 */

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plexus/plexus.h>

#define ECHO_NAME "org.example.Echo"

static void usage(FILE *f, const char *prog) {
        fprintf(f, "usage: %s [--to NAME] TEXT\n\n"
                   "Calls Echo on an echo-service and prints the reply.\n"
                   "  --to NAME   well-known name or unique id of the service\n"
                   "              (default: $PLEXUS_ECHO_SERVICE, else " ECHO_NAME ")\n", prog);
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
                if (!to || !*to)
                        to = ECHO_NAME;
        }

        r = plx_bus_new(&bus, NULL, "echo-client");
        if (r < 0) {
                fprintf(stderr, "echo-client: cannot connect to the bus: %s\n", strerror(-r));
                return 2;
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
