/*
 * The benchmark backend for D-Bus brokers (dbus-broker, dbus-daemon),
 * through sd-bus (see backend.h).
 *
 * What a typical sd-bus program does: the service exports an object with a
 * vtable (Echo: "ay" -> "ay", Quit), callers address it by its unique name,
 * subscribers install a match rule for one signal with
 * sd_bus_match_signal(), which waits for the broker's AddMatch reply.
 * Payloads travel as byte arrays ("ay"), which sd-bus appends and reads
 * without per-element work.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>

#include "backend.h"
#include "payload.h"

#define BENCH_PATH "/org/plexus/Bench"
#define BENCH_INTERFACE "org.plexus.Bench"
#define CALL_TIMEOUT_USEC (30ull * 1000 * 1000)

typedef struct SdbusConn {
        BenchConn base;
        sd_bus *bus;
        const char *unique_name;        /* owned by bus */
} SdbusConn;

static SdbusConn *to_sdbus(BenchConn *c) {
        return (SdbusConn *)c;
}

static int sdbus_connect(BenchConn **ret, const char *address) {
        SdbusConn *sc;
        int r;

        sc = calloc(1, sizeof(*sc));
        if (!sc)
                return -ENOMEM;
        sc->base.backend = &backend_sdbus;

        r = sd_bus_new(&sc->bus);
        if (r >= 0)
                r = sd_bus_set_address(sc->bus, address);
        if (r >= 0)
                r = sd_bus_set_bus_client(sc->bus, 1);
        if (r >= 0)
                r = sd_bus_start(sc->bus);
        /* Waits for the reply to Hello(): the connection is usable after it. */
        if (r >= 0)
                r = sd_bus_get_unique_name(sc->bus, &sc->unique_name);
        if (r < 0) {
                sd_bus_flush_close_unref(sc->bus);
                free(sc);
                return r;
        }
        *ret = &sc->base;
        return 0;
}

static void sdbus_disconnect(BenchConn *c) {
        SdbusConn *sc = to_sdbus(c);

        if (!sc)
                return;
        sd_bus_flush_close_unref(sc->bus);
        free(sc);
}

static const char *sdbus_unique_id(BenchConn *c) {
        return to_sdbus(c)->unique_name;
}

static int on_echo(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        sd_bus_message *reply = NULL;
        BenchConn *c = userdata;
        const void *p;
        uint64_t seq;
        size_t n;
        int r;

        r = sd_bus_message_read_array(m, 'y', &p, &n);
        if (r < 0)
                return r;
        if (payload_check(p, n, n, &seq) < 0) {
                c->n_bad++;
                return sd_bus_error_set(error, BENCH_INTERFACE ".BadPayload", "payload check failed");
        }
        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_append_array(reply, 'y', p, n);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        sd_bus_message_unref(reply);
        return r < 0 ? r : 1;
}

static int on_quit(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        BenchConn *c = userdata;

        c->quit = true;
        return sd_bus_reply_method_return(m, NULL);
}

static const sd_bus_vtable echo_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("Echo", "ay", "ay", on_echo, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Quit", "", "", on_quit, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

static int sdbus_serve_echo(BenchConn *c) {
        return sd_bus_add_object_vtable(to_sdbus(c)->bus, NULL, BENCH_PATH, BENCH_INTERFACE,
                                        echo_vtable, c);
}

static int new_echo_call(SdbusConn *sc, sd_bus_message **ret, const char *dest, const char *member,
                         const void *payload, size_t size) {
        sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(sc->bus, &m, dest, BENCH_PATH, BENCH_INTERFACE, member);
        if (r >= 0 && payload)
                r = sd_bus_message_append_array(m, 'y', payload, size);
        if (r < 0) {
                sd_bus_message_unref(m);
                return r;
        }
        *ret = m;
        return 0;
}

static int read_reply(sd_bus_message *reply, bench_payload_fn cb, void *userdata) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const void *p;
        size_t n;
        int r;

        if (e) {
                fprintf(stderr, "plexus-bench: call failed: %s: %s\n", e->name, e->message ?: "");
                return -EREMOTEIO;
        }
        r = sd_bus_message_read_array(reply, 'y', &p, &n);
        if (r < 0)
                return r;
        return cb(userdata, p, n);
}

static int sdbus_call(BenchConn *c, const char *dest, const void *payload, size_t size,
                      bench_payload_fn cb, void *userdata) {
        SdbusConn *sc = to_sdbus(c);
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        int r;

        r = new_echo_call(sc, &m, dest, "Echo", payload, size);
        if (r < 0)
                return r;
        r = sd_bus_call(sc->bus, m, CALL_TIMEOUT_USEC, &error, &reply);
        if (r < 0)
                fprintf(stderr, "plexus-bench: call failed: %s: %s\n",
                        error.name ?: strerror(-r), error.message ?: "");
        else
                r = read_reply(reply, cb, userdata);
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
        sd_bus_message_unref(m);
        return r;
}

static int fail(BenchConn *c, int r) {
        if (r < 0 && c->error == 0)
                c->error = r;
        return r;
}

static int on_async_reply(sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        BenchConn *c = userdata;

        return fail(c, read_reply(reply, c->on_reply, c->userdata));
}

static int sdbus_call_async(BenchConn *c, const char *dest, const void *payload, size_t size) {
        SdbusConn *sc = to_sdbus(c);
        sd_bus_message *m = NULL;
        int r;

        r = new_echo_call(sc, &m, dest, "Echo", payload, size);
        if (r < 0)
                return r;
        r = sd_bus_call_async(sc->bus, NULL, m, on_async_reply, c, CALL_TIMEOUT_USEC);
        sd_bus_message_unref(m);
        return r;
}

static int sdbus_quit(BenchConn *c, const char *dest) {
        SdbusConn *sc = to_sdbus(c);
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL;
        int r;

        r = new_echo_call(sc, &m, dest, "Quit", NULL, 0);
        if (r < 0)
                return r;
        r = sd_bus_call(sc->bus, m, CALL_TIMEOUT_USEC, &error, NULL);
        if (r < 0)
                fprintf(stderr, "plexus-bench: Quit failed: %s\n", error.message ?: strerror(-r));
        sd_bus_error_free(&error);
        sd_bus_message_unref(m);
        return r;
}

static int on_signal(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        BenchConn *c = userdata;
        const void *p;
        size_t n;
        int r;

        r = sd_bus_message_read_array(m, 'y', &p, &n);
        if (r < 0)
                return fail(c, r);
        return fail(c, c->on_signal(c->userdata, p, n));
}

static int sdbus_subscribe(BenchConn *c) {
        return sd_bus_match_signal(to_sdbus(c)->bus, NULL, NULL, BENCH_PATH, BENCH_INTERFACE, "Tick",
                                   on_signal, c);
}

static int sdbus_publish(BenchConn *c, const void *payload, size_t size) {
        SdbusConn *sc = to_sdbus(c);
        sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_signal(sc->bus, &m, BENCH_PATH, BENCH_INTERFACE, "Tick");
        if (r >= 0)
                r = sd_bus_message_append_array(m, 'y', payload, size);
        if (r >= 0)
                r = sd_bus_send(sc->bus, m, NULL);
        sd_bus_message_unref(m);
        return r;
}

static int sdbus_flush(BenchConn *c) {
        return sd_bus_flush(to_sdbus(c)->bus);
}

static int dispatch_all(SdbusConn *sc, int *ret_n) {
        int r, n = 0;

        while ((r = sd_bus_process(sc->bus, NULL)) > 0 && sc->base.error == 0)
                n++;
        if (sc->base.error < 0)
                return sc->base.error;
        if (r < 0)
                return r;
        *ret_n = n;
        return 0;
}

static int sdbus_process(BenchConn *c, int timeout_ms) {
        SdbusConn *sc = to_sdbus(c);
        int r, n;

        r = dispatch_all(sc, &n);
        if (r < 0 || n > 0 || timeout_ms == 0)
                return r;
        r = sd_bus_wait(sc->bus, timeout_ms < 0 ? UINT64_MAX : (uint64_t)timeout_ms * 1000u);
        if (r < 0 && r != -EINTR)
                return r;
        return dispatch_all(sc, &n);
}

const Backend backend_sdbus = {
        .name = "sd-bus",
        .connect = sdbus_connect,
        .disconnect = sdbus_disconnect,
        .unique_id = sdbus_unique_id,
        .serve_echo = sdbus_serve_echo,
        .call = sdbus_call,
        .call_async = sdbus_call_async,
        .quit = sdbus_quit,
        .subscribe = sdbus_subscribe,
        .publish = sdbus_publish,
        .flush = sdbus_flush,
        .process = sdbus_process,
};
