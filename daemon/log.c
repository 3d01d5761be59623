/*
 * Log sink dispatch and per-source rate limiting. Formatting happens only
 * when the priority is enabled, so debug lines cost nothing in production.
 */

#include <stdio.h>

#include "log.h"

/**
 * log_emit() - format a line and pass it to the sink
 * @log:        the sink; nothing happens if it has no function
 * @priority:   LOG_ERR .. LOG_DEBUG
 * @fmt:        printf format
 */
void log_emit(Log *log, int priority, const char *fmt, ...) {
        char line[1024];
        va_list ap;

        if (!log_enabled(log, priority))
                return;

        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        log->fn(log->userdata, priority, line);
}

/**
 * log_limit_pass() - whether one more line of a rate-limited kind may go out
 * @limit:      the per-source state
 * @log:        where to report how many lines were suppressed
 * @now:        monotonic time in microseconds
 *
 * Return: true if the caller should log.
 */
bool log_limit_pass(LogLimit *limit, Log *log, uint64_t now) {
        if (now - limit->window_start >= LOG_LIMIT_INTERVAL_USEC) {
                if (limit->n_suppressed)
                        log_emit(log, LOG_NOTICE, "%u similar log lines suppressed", limit->n_suppressed);
                limit->window_start = now;
                limit->n_in_window = 0;
                limit->n_suppressed = 0;
        }
        if (limit->n_in_window >= LOG_LIMIT_BURST) {
                limit->n_suppressed++;
                return false;
        }
        limit->n_in_window++;
        return true;
}
