/*
 * publisher: publishes TEXT on TOPIC, COUNT times (default 1).
 *
 *     publisher TOPIC TEXT [COUNT]
 *
 * plx_bus_publish() only queues; when the outgoing queue is full it returns
 * -ENOBUFS and the program writes the queue out with plx_bus_flush() before
 * trying again. The final flush makes sure every signal has reached the
 * broker before the connection closes.
 *
 * Exit codes: 0 success, 1 failure, 2 no connection to the bus.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plexus/plexus.h>

int main(int argc, char **argv) {
        __attribute__((cleanup(plx_bus_freep))) plx_bus *bus = NULL;
        const char *topic, *text;
        unsigned long count = 1;
        int r;

        if (argc < 3 || argc > 4) {
                fprintf(stderr, "usage: %s TOPIC TEXT [COUNT]\n", argv[0]);
                return 1;
        }
        topic = argv[1];
        text = argv[2];
        if (argc == 4) {
                char *end;

                errno = 0;
                count = strtoul(argv[3], &end, 10);
                if (errno || end == argv[3] || *end || argv[3][0] == '-') {
                        fprintf(stderr, "publisher: invalid count \"%s\"\n", argv[3]);
                        return 1;
                }
        }

        r = plx_bus_new(&bus, NULL, "publisher");
        if (r < 0) {
                fprintf(stderr, "publisher: cannot connect to the bus: %s\n", strerror(-r));
                return 2;
        }

        for (unsigned long i = 0; i < count; i++) {
                r = plx_bus_publish(bus, topic, text, strlen(text));
                if (r == -ENOBUFS) {
                        r = plx_bus_flush(bus);
                        if (r >= 0)
                                r = plx_bus_publish(bus, topic, text, strlen(text));
                }
                if (r < 0) {
                        fprintf(stderr, "publisher: cannot publish on \"%s\": %s\n", topic, strerror(-r));
                        return 1;
                }
        }

        r = plx_bus_flush(bus);
        if (r < 0) {
                fprintf(stderr, "publisher: flushing failed: %s\n", strerror(-r));
                return 1;
        }
        return 0;
}
