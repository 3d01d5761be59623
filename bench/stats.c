/*
 * Latency samples and the monotonic clock (see stats.h).
 *
 * Percentiles use the nearest-rank method on the sorted samples: p99 of
 * 20000 samples is the 19800th smallest, a value that was really measured.
 */

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "stats.h"

/**
 * samples_init() - allocate room for @n_alloc samples
 * @s:          a SAMPLES_NULL array
 * @n_alloc:    how many samples will be added at most
 *
 * Return: 0 or -ENOMEM.
 */
int samples_init(Samples *s, size_t n_alloc) {
        s->ns = calloc(n_alloc ? n_alloc : 1, sizeof(*s->ns));
        if (!s->ns)
                return -ENOMEM;
        s->n = 0;
        s->n_alloc = n_alloc;
        return 0;
}

/**
 * samples_deinit() - free the array; leaves @s as SAMPLES_NULL
 */
void samples_deinit(Samples *s) {
        free(s->ns);
        *s = (Samples) SAMPLES_NULL;
}

/**
 * samples_add() - record one sample; samples beyond n_alloc are ignored
 * @s:          the array
 * @ns:         nanoseconds
 */
void samples_add(Samples *s, uint64_t ns) {
        if (s->n < s->n_alloc)
                s->ns[s->n++] = ns;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

        return x < y ? -1 : x > y;
}

/**
 * samples_percentile_us() - the @p-th percentile, in microseconds
 * @s:          the samples; sorted in place
 * @p:          0 < p <= 100
 *
 * Return: the percentile, or 0 if there are no samples.
 */
double samples_percentile_us(Samples *s, double p) {
        size_t rank;

        if (s->n == 0)
                return 0;
        qsort(s->ns, s->n, sizeof(*s->ns), cmp_u64);
        /* Nearest rank: ceil(p/100 * n), 1-based. */
        rank = (size_t)((p / 100.0) * (double)s->n + 0.999999);
        if (rank < 1)
                rank = 1;
        if (rank > s->n)
                rank = s->n;
        return (double)s->ns[rank - 1] / 1000.0;
}

/**
 * samples_mean_us() - the mean, in microseconds
 *
 * Return: the mean, or 0 if there are no samples.
 */
double samples_mean_us(const Samples *s) {
        double sum = 0;

        if (s->n == 0)
                return 0;
        for (size_t i = 0; i < s->n; i++)
                sum += (double)s->ns[i];
        return sum / (double)s->n / 1000.0;
}

/**
 * now_ns() - CLOCK_MONOTONIC in nanoseconds
 */
uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
