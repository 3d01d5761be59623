/*
 * subscriber: prints the signals whose topic matches PATTERN.
 *
 *     subscriber PATTERN [COUNT]
 *
 * Prints "ready" once the broker has the subscription, then one line
 * "TOPIC PAYLOAD" per signal. Exits 0 after COUNT signals, or, without
 * COUNT, on SIGTERM or SIGINT. Patterns are topic levels separated by '/';
 * '+' matches one level, a final '#' any number (including none).
 *
 * The program runs its own poll() loop over two fds: the bus connection
 * (plx_bus_get_fd(), _get_events(), _get_timeout(), _process()) and a
 * signalfd for SIGTERM/SIGINT.
 *
 * Exit codes: 0 success, 1 failure, 2 no connection to the bus.
 */

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <plexus/plexus.h>

typedef struct Subscriber {
        unsigned long n_received;
        unsigned long count;            /* 0: no limit */
} Subscriber;

static int on_signal(plx_msg *signal, void *userdata) {
        Subscriber *s = userdata;
        const void *payload;
        size_t size;

        payload = plx_msg_get_payload(signal, &size);
        printf("%s ", plx_msg_get_topic(signal));
        fwrite(payload, 1, size, stdout);
        putchar('\n');
        fflush(stdout);
        s->n_received++;
        return 0;
}

static bool done(const Subscriber *s) {
        return s->count > 0 && s->n_received >= s->count;
}

static int run(plx_bus *bus, Subscriber *s, int signal_fd) {
        while (!done(s)) {
                struct pollfd pfd[2];
                int r, ms;

                r = plx_bus_process(bus);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;

                r = plx_bus_get_timeout(bus, &ms);
                if (r < 0)
                        return r;
                pfd[0] = (struct pollfd) { .fd = plx_bus_get_fd(bus), .events = (short)plx_bus_get_events(bus) };
                pfd[1] = (struct pollfd) { .fd = signal_fd, .events = POLLIN };
                if (poll(pfd, 2, ms) < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (pfd[1].revents & POLLIN)
                        return 0;       /* SIGTERM or SIGINT: a normal end */
        }
        return 0;
}

int main(int argc, char **argv) {
        __attribute__((cleanup(plx_bus_freep))) plx_bus *bus = NULL;
        Subscriber s = { .count = 0 };
        sigset_t mask;
        int signal_fd, r;

        if (argc < 2 || argc > 3) {
                fprintf(stderr, "usage: %s PATTERN [COUNT]\n", argv[0]);
                return 1;
        }
        if (argc == 3) {
                char *end;

                errno = 0;
                s.count = strtoul(argv[2], &end, 10);
                if (errno || end == argv[2] || *end || argv[2][0] == '-' || s.count == 0) {
                        fprintf(stderr, "subscriber: invalid count \"%s\"\n", argv[2]);
                        return 1;
                }
        }

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (signal_fd < 0) {
                fprintf(stderr, "subscriber: signalfd: %s\n", strerror(errno));
                return 1;
        }

        r = plx_bus_new(&bus, NULL, "subscriber");
        if (r < 0) {
                fprintf(stderr, "subscriber: cannot connect to the bus: %s\n", strerror(-r));
                close(signal_fd);
                return 2;
        }

        r = plx_bus_subscribe(bus, NULL, argv[1], on_signal, &s);
        if (r < 0) {
                fprintf(stderr, "subscriber: cannot subscribe to \"%s\": %s\n", argv[1],
                        r == -EINVAL ? "invalid pattern" : strerror(-r));
                close(signal_fd);
                return 1;
        }
        printf("ready\n");
        fflush(stdout);

        r = run(bus, &s, signal_fd);
        close(signal_fd);
        if (r < 0) {
                fprintf(stderr, "subscriber: %s\n",
                        r == -ECONNRESET ? "the broker closed the connection" : strerror(-r));
                return 1;
        }
        return 0;
}
