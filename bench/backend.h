#pragma once

/*
 * What a measurement needs from a bus client library.
 *
 * measure.c runs the same code against every bus; a Backend maps its few
 * operations onto one client library: libplexus for plexusd
 * (backend-plexus.c), sd-bus for dbus-broker and dbus-daemon
 * (backend-sdbus.c). Both backends do what a normal program of that library
 * would do: a method handler that replies, a signal subscription, a blocking
 * call, asynchronous calls completed from the library's dispatch.
 *
 * The echo service: the method "Echo" checks the request payload
 * (payload_check()) and replies with the same bytes, or with an error if
 * they are wrong; the method "Quit" replies and sets BenchConn.quit, which
 * ends the server's loop. Signals go to one topic, or one
 * interface/member with a match rule on D-Bus.
 *
 * Callbacks get the payload borrowed. A negative return is kept in
 * BenchConn.error (sd-bus would only log it) and returned by every later
 * Backend.process(); Backend.call() returns it directly.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct BenchConn BenchConn;
typedef struct Backend Backend;

typedef int (*bench_payload_fn)(void *userdata, const void *payload, size_t size);

/* The part of every backend's connection that measurements use directly. */
struct BenchConn {
        const Backend *backend;
        bool quit;                      /* the echo service got Quit */
        uint64_t n_bad;                 /* echo requests that failed payload_check() */
        int error;                      /* first failure inside a callback, negative */
        bench_payload_fn on_reply;      /* answers to call_async() */
        bench_payload_fn on_signal;     /* signals after subscribe() */
        void *userdata;
};

struct Backend {
        const char *name;

        /* Connect and complete the handshake (HELLO, or SASL + Hello()). */
        int (*connect)(BenchConn **ret, const char *address);
        /* Flush what is queued, disconnect, free. Accepts NULL. */
        void (*disconnect)(BenchConn *c);
        /* The unique id peers address calls to. */
        const char *(*unique_id)(BenchConn *c);

        /* Serve Echo and Quit (see above). */
        int (*serve_echo)(BenchConn *c);
        /* Call Echo on @dest and wait; on_reply-style @cb gets the reply. */
        int (*call)(BenchConn *c, const char *dest, const void *payload, size_t size,
                    bench_payload_fn cb, void *userdata);
        /* Call Echo on @dest without waiting; c->on_reply gets the reply. */
        int (*call_async)(BenchConn *c, const char *dest, const void *payload, size_t size);
        /* Call Quit on @dest and wait for its reply. */
        int (*quit)(BenchConn *c, const char *dest);

        /* Subscribe to the benchmark signal and wait until the bus confirms. */
        int (*subscribe)(BenchConn *c);
        /* Queue or send one benchmark signal. */
        int (*publish)(BenchConn *c, const void *payload, size_t size);
        /* Block until everything queued has been written to the socket. */
        int (*flush)(BenchConn *c);

        /*
         * Dispatch everything that is ready. If nothing was, wait up to
         * @timeout_ms (-1: forever) and dispatch what arrived.
         */
        int (*process)(BenchConn *c, int timeout_ms);
};

extern const Backend backend_plexus;
extern const Backend backend_sdbus;
