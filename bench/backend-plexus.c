/*
 * The benchmark backend for plexusd, through libplexus (see backend.h).
 *
 * Calls go to the server's unique id, since plexus has no well-known names
 * yet; signals use one topic. Errors that answer no call (a QueueFull report
 * for a publish) fail the measurement: the benchmark must never count a
 * message that was not delivered.
 */

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plexus/plexus.h>

#include "backend.h"
#include "payload.h"

#define BENCH_TOPIC "bench/tick"
#define CALL_TIMEOUT_USEC (30ull * 1000 * 1000)

typedef struct PlexusConn {
        BenchConn base;
        plx_bus *bus;
} PlexusConn;

static PlexusConn *to_plexus(BenchConn *c) {
        return (PlexusConn *)c;
}

static int fail(BenchConn *c, int r) {
        if (r < 0 && c->error == 0)
                c->error = r;
        return r;
}

static int on_stray_error(plx_msg *error, void *userdata) {
        BenchConn *c = userdata;

        fprintf(stderr, "plexus-bench: unexpected error %s: %s\n",
                plx_msg_get_error_name(error), plx_msg_get_error_message(error) ?: "");
        return fail(c, -EIO);
}

static int plexus_connect(BenchConn **ret, const char *address) {
        PlexusConn *pc;
        int r;

        pc = calloc(1, sizeof(*pc));
        if (!pc)
                return -ENOMEM;
        pc->base.backend = &backend_plexus;

        r = plx_bus_new(&pc->bus, address, "plexus-bench");
        if (r < 0) {
                free(pc);
                return r;
        }
        plx_bus_set_error_handler(pc->bus, on_stray_error, &pc->base);
        *ret = &pc->base;
        return 0;
}

static void plexus_disconnect(BenchConn *c) {
        PlexusConn *pc = to_plexus(c);

        if (!pc)
                return;
        if (pc->bus)
                (void)plx_bus_flush(pc->bus);
        plx_bus_free(pc->bus);
        free(pc);
}

static const char *plexus_unique_id(BenchConn *c) {
        return plx_bus_get_unique_id(to_plexus(c)->bus);
}

static int on_echo(plx_msg *call, void *userdata) {
        BenchConn *c = userdata;
        const void *payload;
        uint64_t seq;
        size_t size;

        payload = plx_msg_get_payload(call, &size);
        if (payload_check(payload, size, size, &seq) < 0) {
                c->n_bad++;
                return plx_msg_reply_error(call, "org.plexus.Bench.BadPayload", "payload check failed");
        }
        return plx_msg_reply(call, payload, size);
}

static int on_quit(plx_msg *call, void *userdata) {
        BenchConn *c = userdata;

        c->quit = true;
        return plx_msg_reply(call, NULL, 0);
}

static int plexus_serve_echo(BenchConn *c) {
        PlexusConn *pc = to_plexus(c);
        int r;

        r = plx_bus_add_method(pc->bus, NULL, "Echo", on_echo, c);
        if (r < 0)
                return r;
        return plx_bus_add_method(pc->bus, NULL, "Quit", on_quit, c);
}

static int reply_error(plx_msg *reply) {
        fprintf(stderr, "plexus-bench: call failed: %s: %s\n",
                plx_msg_get_error_name(reply), plx_msg_get_error_message(reply) ?: "");
        return -EREMOTEIO;
}

static int plexus_call(BenchConn *c, const char *dest, const void *payload, size_t size,
                       bench_payload_fn cb, void *userdata) {
        plx_msg *reply = NULL;
        const void *p;
        size_t n;
        int r;

        r = plx_bus_call(to_plexus(c)->bus, dest, "Echo", payload, size, CALL_TIMEOUT_USEC, &reply);
        if (r == -EREMOTEIO || r == -ETIMEDOUT) {
                if (reply)
                        reply_error(reply);
                plx_msg_unref(reply);
                return r;
        }
        if (r < 0)
                return r;
        p = plx_msg_get_payload(reply, &n);
        r = cb(userdata, p, n);
        plx_msg_unref(reply);
        return r;
}

static int on_async_reply(plx_msg *reply, void *userdata) {
        BenchConn *c = userdata;
        const void *p;
        size_t n;

        if (plx_msg_get_kind(reply) != PLX_MSG_REPLY)
                return fail(c, reply_error(reply));
        p = plx_msg_get_payload(reply, &n);
        return fail(c, c->on_reply(c->userdata, p, n));
}

static int plexus_call_async(BenchConn *c, const char *dest, const void *payload, size_t size) {
        return plx_bus_call_async(to_plexus(c)->bus, NULL, dest, "Echo", payload, size,
                                  CALL_TIMEOUT_USEC, on_async_reply, c);
}

static int plexus_quit(BenchConn *c, const char *dest) {
        plx_msg *reply = NULL;
        int r;

        r = plx_bus_call(to_plexus(c)->bus, dest, "Quit", NULL, 0, CALL_TIMEOUT_USEC, &reply);
        if (r == -EREMOTEIO && reply)
                reply_error(reply);
        plx_msg_unref(reply);
        return r;
}

static int on_signal(plx_msg *signal, void *userdata) {
        BenchConn *c = userdata;
        const void *p;
        size_t n;

        p = plx_msg_get_payload(signal, &n);
        return fail(c, c->on_signal(c->userdata, p, n));
}

static int plexus_subscribe(BenchConn *c) {
        return plx_bus_subscribe(to_plexus(c)->bus, NULL, BENCH_TOPIC, on_signal, c);
}

static int plexus_publish(BenchConn *c, const void *payload, size_t size) {
        PlexusConn *pc = to_plexus(c);
        int r;

        r = plx_bus_publish(pc->bus, BENCH_TOPIC, payload, size);
        if (r == -ENOBUFS) {
                /* Our own write queue is at its bound: wait for the socket. */
                r = plx_bus_flush(pc->bus);
                if (r < 0)
                        return r;
                r = plx_bus_publish(pc->bus, BENCH_TOPIC, payload, size);
        }
        return r;
}

static int plexus_flush(BenchConn *c) {
        return plx_bus_flush(to_plexus(c)->bus);
}

static int dispatch_all(PlexusConn *pc, int *ret_n) {
        int r, n = 0;

        while ((r = plx_bus_process(pc->bus)) > 0)
                n++;
        if (pc->base.error < 0)
                return pc->base.error;
        if (r < 0)
                return r;
        *ret_n = n;
        return 0;
}

/*
 * Wait, then dispatch. The last plx_bus_process() of dispatch_all() said
 * idle, which asks the caller to wait for the fd: processing again at
 * once would read the socket only to meet EAGAIN (plx_bus_get_timeout()
 * says 0 when something is pending already).
 */
static int plexus_process(BenchConn *c, int timeout_ms) {
        PlexusConn *pc = to_plexus(c);
        struct pollfd p;
        int r, n, ms;

        r = plx_bus_get_timeout(pc->bus, &ms);
        if (r < 0)
                return r;
        if (ms < 0 || (timeout_ms >= 0 && ms > timeout_ms))
                ms = timeout_ms;
        p = (struct pollfd) { .fd = plx_bus_get_fd(pc->bus), .events = (short)plx_bus_get_events(pc->bus) };
        if (poll(&p, 1, ms) < 0 && errno != EINTR)
                return -errno;
        return dispatch_all(pc, &n);
}

const Backend backend_plexus = {
        .name = "plexus",
        .connect = plexus_connect,
        .disconnect = plexus_disconnect,
        .unique_id = plexus_unique_id,
        .serve_echo = plexus_serve_echo,
        .call = plexus_call,
        .call_async = plexus_call_async,
        .quit = plexus_quit,
        .subscribe = plexus_subscribe,
        .publish = plexus_publish,
        .flush = plexus_flush,
        .process = plexus_process,
};
