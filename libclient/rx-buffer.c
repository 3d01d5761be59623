/*
 * Receive buffers, and a small process-wide cache of them.
 *
 * A bus reads each datagram into a buffer big enough for the largest frame
 * (BUS_RX_BUFFER_SIZE, 128 KiB): that is at glibc's mmap threshold, so
 * malloc() hands it out either as its own mapping or from the top of the
 * heap, and free() gives it back to the kernel at once (munmap(), or brk()
 * trimming the heap). A program that opens and closes buses in a loop then
 * pays for a mapping, a page fault and a TLB flush per connection: measured
 * in a connect/HELLO/disconnect loop, the two brk() calls and the fault were
 * a third of the client's CPU time, more than its socket calls.
 *
 * So freed buffers are kept, up to RX_BUFFER_CACHE_SLOTS of them, and the
 * next bus takes one. This is the library's only global: it holds memory,
 * no state anyone can observe (a buffer is written before it is read), and
 * its slots are taken and filled with atomic exchanges, so buses in
 * different threads share it safely. What it holds at exit is freed then,
 * for leak checkers.
 */

#include <stdatomic.h>
#include <stdlib.h>

#include "bus-internal.h"

#define RX_BUFFER_CACHE_SLOTS 4

static void *_Atomic rx_buffer_cache[RX_BUFFER_CACHE_SLOTS];

/**
 * rx_buffer_new() - a receive buffer of BUS_RX_BUFFER_SIZE bytes
 *
 * Its contents are undefined. Release it with rx_buffer_free().
 *
 * Return: the buffer, or NULL when out of memory.
 */
void *rx_buffer_new(void) {
        for (size_t i = 0; i < RX_BUFFER_CACHE_SLOTS; i++) {
                void *buf = atomic_exchange(&rx_buffer_cache[i], NULL);

                if (buf)
                        return buf;
        }
        return malloc(BUS_RX_BUFFER_SIZE);
}

/**
 * rx_buffer_free() - keep @buf for the next bus, or free it if the cache is full
 * @buf:        from rx_buffer_new(), or NULL
 *
 * Return: NULL.
 */
void *rx_buffer_free(void *buf) {
        if (!buf)
                return NULL;
        for (size_t i = 0; i < RX_BUFFER_CACHE_SLOTS; i++) {
                void *expected = NULL;

                if (atomic_compare_exchange_strong(&rx_buffer_cache[i], &expected, buf))
                        return NULL;
        }
        free(buf);
        return NULL;
}

__attribute__((destructor)) static void rx_buffer_cache_drain(void) {
        for (size_t i = 0; i < RX_BUFFER_CACHE_SLOTS; i++)
                free(atomic_exchange(&rx_buffer_cache[i], NULL));
}
