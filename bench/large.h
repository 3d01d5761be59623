#pragma once

/*
 * plexus-bench-large: moving one large payload from a sender to a receiver
 * that reads all of it, by every means at hand (see large.c).
 *
 * A method moves the payload of a numbered repetition ("seq") from the
 * measuring process to one or more receiver processes, each of which sums
 * the payload as 64-bit words and sends the sum back (a tiny reply, an
 * 8-byte acknowledgement). The sender compares every sum with
 * large_expected_sum(): the receiver has touched every byte, and got the
 * right bytes for this repetition, so neither a mapping nobody reads nor a
 * stale buffer counts as a transfer. memcpy() inside one process is the
 * bound: one copy plus the same sum.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LARGE_RECEIVERS_MAX 16u
#define LARGE_TOPIC "bench/large"
#define LARGE_CALL_TIMEOUT_USEC (120ull * 1000 * 1000)
/* inline: the chunk size of calls that must each fit one frame */
#define LARGE_INLINE_CHUNK (120u * 1024u)

typedef struct LargeOptions {
        const char *address;            /* plexusd socket path or D-Bus address */
        size_t size;                    /* payload bytes, a multiple of 8 */
        unsigned reps;                  /* timed repetitions */
        unsigned warmup;                /* untimed ones first */
        unsigned subscribers;           /* fan-out: receiver processes */
        int sender_cpu;                 /* -1: not pinned */
        int receiver_cpu;               /* -1: not pinned */
        pid_t broker_pid;               /* whose CPU time to count; 0: none */
} LargeOptions;

typedef struct LargeRun LargeRun;

struct LargeRun {
        const LargeOptions *o;
        uint8_t *buf;                   /* the sender's own buffer, o->size bytes */
        pid_t pids[LARGE_RECEIVERS_MAX];
        unsigned n_pids;                /* receiver processes, for their CPU time */
        void *state;                    /* the method's */
};

typedef struct LargeMethod {
        const char *name;
        bool fanout;                    /* o->subscribers receivers instead of one */
        bool own_buffer;                /* payload in a plx_buffer, not LargeRun.buf */
        /*
         * Start the receivers and connect. Runs before the sender's buffer
         * exists, so no child shares its pages.
         */
        int (*start)(LargeRun *run);
        /* Untimed: have the payload of @seq ready; NULL: fill LargeRun.buf. */
        int (*prepare)(LargeRun *run, uint64_t seq);
        /* Timed: deliver payload @seq, collect and check every receiver's sum. */
        int (*transfer)(LargeRun *run, uint64_t seq);
        /* Stop receivers and disconnect; @status: the run's outcome so far. */
        int (*stop)(LargeRun *run, int status);
} LargeMethod;

extern const LargeMethod large_process_vm;
extern const LargeMethod large_memfd;
extern const LargeMethod large_buffer;
extern const LargeMethod large_inline;
extern const LargeMethod large_fanout_memfd;
extern const LargeMethod large_fanout_buffer;
extern const LargeMethod large_fanout_process_vm;
extern const LargeMethod large_dbus;

void large_fill(void *buf, size_t size, uint64_t seq);
uint64_t large_sum(const void *buf, size_t size);
uint64_t large_expected_sum(uint64_t seq, size_t size);
int large_check_sum(uint64_t seq, uint64_t got, uint64_t want);
int large_pin(int cpu);
