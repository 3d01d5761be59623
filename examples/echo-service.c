/*
 * echo-service: answers "Echo" calls with the request payload.
 *
 * Run it on a bus (the default address, or $PLEXUS_BUS_ADDRESS), then call
 * it with echo-client. It prints "ready <unique-id>" once it can take calls
 * and runs until SIGTERM or SIGINT, then exits 0. If the broker goes away
 * first it exits 1; if it cannot connect at all, 2.
 *
 * It owns the well-known name "org.example.Echo", which is how echo-client
 * finds it. A second echo-service waits in the name's queue and takes over
 * when the first one goes away.
 *
 * The service is driven by an sd-event loop: plx_bus_attach_event() hooks the
 * connection into it, and sd-event's signal sources turn SIGTERM/SIGINT into
 * a clean loop exit.
 */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-event.h>

#include <plexus/plexus.h>

#define ECHO_NAME "org.example.Echo"

static int on_echo(plx_msg *call, void *userdata) {
        const void *payload;
        size_t size;

        payload = plx_msg_get_payload(call, &size);
        return plx_msg_reply(call, payload, size);
}

static int on_terminate(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

int main(int argc, char **argv) {
        __attribute__((cleanup(sd_event_unrefp))) sd_event *event = NULL;
        __attribute__((cleanup(plx_bus_freep))) plx_bus *bus = NULL;
        sigset_t mask;
        int r;

        if (argc > 1) {
                fprintf(stderr, "usage: %s\n\nAnswers Echo calls on the default bus until SIGTERM.\n", argv[0]);
                return strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ? 0 : 1;
        }

        /* sd-event reads signals through a signalfd, so they must be blocked. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        r = sd_event_new(&event);
        if (r < 0) {
                fprintf(stderr, "echo-service: cannot create event loop: %s\n", strerror(-r));
                return 1;
        }
        r = sd_event_add_signal(event, NULL, SIGTERM, on_terminate, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGINT, on_terminate, NULL);
        if (r < 0) {
                fprintf(stderr, "echo-service: cannot watch signals: %s\n", strerror(-r));
                return 1;
        }

        r = plx_bus_new(&bus, NULL, "echo-service");
        if (r < 0) {
                fprintf(stderr, "echo-service: cannot connect to the bus: %s\n", strerror(-r));
                return 2;
        }

        r = plx_bus_add_method(bus, NULL, "Echo", on_echo, NULL);
        if (r < 0) {
                fprintf(stderr, "echo-service: cannot register Echo: %s\n", strerror(-r));
                return 1;
        }
        /* Methods first: calls to the name may arrive as soon as we own it. */
        r = plx_bus_request_name(bus, ECHO_NAME, 0);
        if (r < 0) {
                fprintf(stderr, "echo-service: cannot request %s: %s\n", ECHO_NAME, strerror(-r));
                return 1;
        }
        if (r == PLX_NAME_IN_QUEUE)
                fprintf(stderr, "echo-service: %s is taken, waiting for it in the queue\n", ECHO_NAME);
        r = plx_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0) {
                fprintf(stderr, "echo-service: cannot attach to the event loop: %s\n", strerror(-r));
                return 1;
        }

        printf("ready %s\n", plx_bus_get_unique_id(bus));
        fflush(stdout);

        /* Ends with 0 from on_terminate(), or negative if the broker goes away. */
        r = sd_event_loop(event);
        plx_bus_detach_event(bus);
        if (r < 0) {
                fprintf(stderr, "echo-service: %s\n",
                        r == -ECONNRESET ? "the broker closed the connection" : strerror(-r));
                return 1;
        }
        return 0;
}
