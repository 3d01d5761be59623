#pragma once

/*
 * The measurements, written once for every bus (see backend.h), and the
 * options they take. Each prints one line of "key=value" results on stdout
 * and returns 0, or prints why on stderr and returns a negative errno: a
 * failed check of received data fails the whole measurement.
 */

#include <sys/types.h>

#include "backend.h"

typedef struct BenchOptions {
        const char *address;            /* bus address (sd-bus form for D-Bus), or a path */
        size_t size;                    /* payload bytes */
        unsigned iterations;            /* timed calls, connections, or messages */
        unsigned warmup;                /* untimed ones before them */
        unsigned depth;                 /* pipeline: calls in flight */
        unsigned subscribers;           /* fanout: subscriber processes */
        unsigned burst;                 /* fanout: messages per acknowledged burst */
        unsigned clients;               /* idle: idle connections */
        unsigned per_process;           /* idle: connections per holder process */
        pid_t broker_pid;               /* idle: whose memory to read; 0 for none */
} BenchOptions;

int measure_rtt(const Backend *be, const BenchOptions *o);
int measure_pipeline(const Backend *be, const BenchOptions *o);
int measure_fanout(const Backend *be, const BenchOptions *o);
int measure_connect(const Backend *be, const BenchOptions *o);
int measure_idle(const Backend *be, const BenchOptions *o);
