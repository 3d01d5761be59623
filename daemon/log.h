#pragma once

/*
 * Broker logging. The broker library never prints: it hands each line to the
 * sink given in its configuration (plx_broker_config.log_fn). Priorities are
 * syslog's LOG_* values. Lines about one peer are rate-limited by the caller
 * through LogLimit.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

#include "util.h"

typedef void (*LogFn)(void *userdata, int priority, const char *line);

typedef struct Log {
        LogFn fn;
        void *userdata;
        int max_priority;       /* lines above this (less important) are skipped */
} Log;

/* Allows @burst lines per @interval_usec; the rest are counted and summarised. */
typedef struct LogLimit {
        uint64_t window_start;
        unsigned int n_in_window;
        unsigned int n_suppressed;
} LogLimit;

#define LOG_LIMIT_INTERVAL_USEC (10u * 1000000u)
#define LOG_LIMIT_BURST 10u

void log_emit(Log *log, int priority, const char *fmt, ...) _printf_(3, 4);
bool log_limit_pass(LogLimit *limit, Log *log, uint64_t now);

static inline bool log_enabled(Log *log, int priority) {
        return log->fn && priority <= log->max_priority;
}
