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
 * next bus takes one.
 *
 * Buffers are mappings of their own (mmap()), so that one handed over to a
 * message (rx_buffer_trim()) gives its unused pages back to the kernel:
 * a message the application holds keeps the payload where
 * plx_msg_get_payload() said it was, at the cost of the pages it spans,
 * not of a whole buffer. This is the library's only global: it holds memory,
 * no state anyone can observe (a buffer is written before it is read), and
 * its slots are taken and filled with atomic exchanges, so buses in
 * different threads share it safely. What it holds at exit is freed then,
 * for leak checkers.
 */

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bus-internal.h"

#define RX_BUFFER_CACHE_SLOTS 4

static void *_Atomic rx_buffer_cache[RX_BUFFER_CACHE_SLOTS];

static size_t page_round(size_t n) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);

        return (n + page - 1) / page * page;
}

static size_t rx_map_size(void) {
        return page_round(BUS_RX_BUFFER_SIZE);
}

static void rx_buffer_unmap(void *buf) {
        munmap(buf, rx_map_size());
}

/**
 * rx_buffer_new() - a receive buffer of BUS_RX_BUFFER_SIZE bytes
 *
 * Its contents are undefined. Release it with rx_buffer_free().
 *
 * Return: the buffer, or NULL when out of memory.
 */
void *rx_buffer_new(void) {
        void *fresh;

        for (size_t i = 0; i < RX_BUFFER_CACHE_SLOTS; i++) {
                void *buf = atomic_exchange(&rx_buffer_cache[i], NULL);

                if (buf)
                        return buf;
        }
        fresh = mmap(NULL, rx_map_size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return fresh == MAP_FAILED ? NULL : fresh;
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
        rx_buffer_unmap(buf);
        return NULL;
}

/**
 * rx_buffer_trim() - give back the pages of @buf past its first @keep bytes
 * @buf:        from rx_buffer_new(), handed over to a message
 * @keep:       bytes at its start still in use
 *
 * Return: the size of the mapping that remains, for rx_buffer_release().
 */
size_t rx_buffer_trim(void *buf, size_t keep) {
        size_t kept = page_round(keep ?: 1);

        if (kept < rx_map_size())
                munmap((uint8_t *)buf + kept, rx_map_size() - kept);
        return kept;
}

/** rx_buffer_release() - unmap what rx_buffer_trim() left of a buffer */
void rx_buffer_release(void *buf, size_t kept) {
        if (buf)
                munmap(buf, kept);
}

__attribute__((destructor)) static void rx_buffer_cache_drain(void) {
        for (size_t i = 0; i < RX_BUFFER_CACHE_SLOTS; i++) {
                void *buf = atomic_exchange(&rx_buffer_cache[i], NULL);

                if (buf)
                        rx_buffer_unmap(buf);
        }
}
