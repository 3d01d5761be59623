/*
 * The large-payload method through a D-Bus broker and sd-bus (see large.h).
 *
 * What an sd-bus program does with a large blob: a forked service exports
 * Sum(ay) -> t with a vtable, the sender builds a method call, appends the
 * payload as a byte array (one copy into the message) and calls
 * sd_bus_call(). The D-Bus specification caps an array at 64 MiB and a
 * message at 128 MiB; larger payloads do not fit one message, and
 * bench/run.sh --large does not try them.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include "large.h"
#include "proc.h"
#include "util.h"

#define LARGE_PATH "/org/plexus/BenchLarge"
#define LARGE_INTERFACE "org.plexus.BenchLarge"
#define ID_MAX 256

static int connect_sdbus(sd_bus **ret, const char *address) {
        sd_bus *bus = NULL;
        const char *unique;
        int r;

        r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, address);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, 1);
        if (r >= 0)
                r = sd_bus_start(bus);
        /* Waits for the reply to Hello(): the connection is usable after it. */
        if (r >= 0)
                r = sd_bus_get_unique_name(bus, &unique);
        if (r < 0) {
                sd_bus_flush_close_unref(bus);
                return r;
        }
        *ret = bus;
        return 0;
}

static int on_sum(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const void *p;
        size_t n;
        int r;

        r = sd_bus_message_read_array(m, 'y', &p, &n);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, "t", large_sum(p, n));
}

static int on_quit(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        bool *quit = userdata;

        *quit = true;
        return sd_bus_reply_method_return(m, NULL);
}

static const sd_bus_vtable sum_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("Sum", "ay", "t", on_sum, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Quit", "", "", on_quit, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

static int service_main(const void *arg, int fd) {
        const LargeOptions *o = arg;
        char line[ID_MAX + 2];
        const char *unique = NULL;
        sd_bus *bus = NULL;
        bool quit = false;
        int r;

        r = large_pin(o->receiver_cpu);
        if (r >= 0)
                r = connect_sdbus(&bus, o->address);
        if (r >= 0)
                r = sd_bus_add_object_vtable(bus, NULL, LARGE_PATH, LARGE_INTERFACE, sum_vtable, &quit);
        if (r >= 0)
                r = sd_bus_get_unique_name(bus, &unique);
        if (r < 0) {
                fprintf(stderr, "plexus-bench-large: D-Bus service: %s\n", strerror(-r));
                (void)proc_write_all(fd, "!\n", 2);
                sd_bus_flush_close_unref(bus);
                return 1;
        }
        snprintf(line, sizeof(line), "%s\n", unique);
        (void)proc_write_all(fd, line, strlen(line));
        close(fd);

        while (!quit) {
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        break;
                if (r > 0)
                        continue;
                r = sd_bus_wait(bus, UINT64_MAX);
                if (r < 0 && r != -EINTR)
                        break;
        }
        if (r < 0)
                fprintf(stderr, "plexus-bench-large: D-Bus service: %s\n", strerror(-r));
        sd_bus_flush_close_unref(bus);
        return r < 0 ? 1 : 0;
}

typedef struct DbusState {
        sd_bus *bus;
        char dest[ID_MAX];
} DbusState;

static int dbus_start(LargeRun *run) {
        DbusState *s;
        int r;
        pid_t pid = 0;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        run->state = s;
        r = proc_spawn_service(service_main, run->o, &pid, s->dest, sizeof(s->dest));
        if (pid > 0)
                run->pids[run->n_pids++] = pid;
        if (r < 0)
                return r;
        return connect_sdbus(&s->bus, run->o->address);
}

static int dbus_call(DbusState *s, const char *member, const void *payload, size_t size,
                     sd_bus_message **ret_reply) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(s->bus, &m, s->dest, LARGE_PATH, LARGE_INTERFACE, member);
        if (r >= 0 && payload)
                r = sd_bus_message_append_array(m, 'y', payload, size);
        if (r >= 0) {
                r = sd_bus_call(s->bus, m, LARGE_CALL_TIMEOUT_USEC, &error, ret_reply);
                if (r < 0)
                        fprintf(stderr, "plexus-bench-large: %s failed: %s: %s\n", member,
                                error.name ?: strerror(-r), error.message ?: "");
        }
        sd_bus_error_free(&error);
        sd_bus_message_unref(m);
        return r;
}

static int dbus_transfer(LargeRun *run, uint64_t seq) {
        DbusState *s = run->state;
        sd_bus_message *reply = NULL;
        uint64_t sum = 0;
        int r;

        r = dbus_call(s, "Sum", run->buf, run->o->size, &reply);
        if (r >= 0)
                r = sd_bus_message_read(reply, "t", &sum);
        sd_bus_message_unref(reply);
        if (r < 0)
                return r;
        return large_check_sum(seq, sum, large_expected_sum(seq, run->o->size));
}

static int dbus_stop(LargeRun *run, int status) {
        DbusState *s = run->state;
        int r = status;

        if (s && s->bus && status >= 0)
                r = dbus_call(s, "Quit", NULL, 0, NULL);
        for (unsigned i = 0; i < run->n_pids; i++) {
                int q;

                if (r < 0)
                        kill(run->pids[i], SIGKILL);
                q = proc_wait(run->pids[i], PROC_TIMEOUT_MS);
                if (r >= 0 && q != 0) {
                        fprintf(stderr, "plexus-bench-large: D-Bus service exited with status %d\n", q);
                        r = -EPROTO;
                }
        }
        run->n_pids = 0;
        if (s) {
                sd_bus_flush_close_unref(s->bus);
                free(s);
                run->state = NULL;
        }
        return status < 0 ? status : r;
}

const LargeMethod large_dbus = {
        .name = "dbus",
        .start = dbus_start,
        .transfer = dbus_transfer,
        .stop = dbus_stop,
};
