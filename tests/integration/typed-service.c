/*
 * typed-service: the typed test service (calculator.h) as a program, for
 * plexusctl's tests. It owns the well-known name given as its argument
 * (default org.plexus.test.Calculator), prints "ready <unique-id>" and
 * serves until Quit or the broker goes away, then exits 0.
 *
 *     typed-service [NAME] [--no-descriptors]
 */

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "calculator.h"

int main(int argc, char **argv) {
        __attribute__((cleanup(plx_bus_freep))) plx_bus *bus = NULL;
        const char *name = "org.plexus.test.Calculator";
        bool with_descriptors = true;
        int r;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--no-descriptors") == 0)
                        with_descriptors = false;
                else
                        name = argv[i];
        }

        r = plx_bus_new(&bus, NULL, "typed-service");
        if (r >= 0)
                r = plx_bus_add_method(bus, NULL, "Quit", calculator_quit, NULL);
        if (r >= 0)
                r = plx_bus_add_method(bus, NULL, "PublishTick", calculator_publish_tick, NULL);
        if (r >= 0)
                r = calculator_export(bus, NULL, with_descriptors);
        if (r >= 0)
                r = plx_bus_request_name(bus, name, PLX_NAME_DO_NOT_QUEUE);
        if (r != PLX_NAME_PRIMARY_OWNER) {
                fprintf(stderr, "typed-service: cannot start: %s\n", r < 0 ? strerror(-r) : "name taken");
                return 2;
        }
        printf("ready %s\n", plx_bus_get_unique_id(bus));
        fflush(stdout);
        r = plx_bus_run(bus);
        return r < 0 && r != -ECONNRESET ? 1 : 0;
}
