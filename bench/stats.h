#pragma once

/*
 * The clock the benchmarks measure with, and latency samples.
 *
 * Samples are nanoseconds in a preallocated array, so that recording one
 * costs a store and never a malloc inside the timed loop. Percentiles sort
 * the array in place: read them after the last sample.
 */

#include <stddef.h>
#include <stdint.h>

typedef struct Samples {
        uint64_t *ns;
        size_t n;
        size_t n_alloc;
} Samples;

#define SAMPLES_NULL { .ns = NULL, .n = 0, .n_alloc = 0 }

int samples_init(Samples *s, size_t n_alloc);
void samples_deinit(Samples *s);
void samples_add(Samples *s, uint64_t ns);
double samples_percentile_us(Samples *s, double p);
double samples_mean_us(const Samples *s);

uint64_t now_ns(void);
