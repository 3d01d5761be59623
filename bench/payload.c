/*
 * Self-describing payloads (see payload.h).
 *
 * The table is filled on first use from a fixed xorshift generator, so every
 * process of a run (and every run) agrees on it without sharing memory. The
 * offset into it is the sequence number modulo a prime, so consecutive
 * messages differ in every byte position, not only in their first eight.
 */

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "payload.h"

#define PAYLOAD_OFFSETS 251u

static uint8_t table[PAYLOAD_OFFSETS + PAYLOAD_MAX];
static bool table_ready;

static void table_init(void) {
        uint64_t x = 0x9e3779b97f4a7c15u;

        if (table_ready)
                return;
        for (size_t i = 0; i < sizeof(table); i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                table[i] = (uint8_t)(x >> 32);
        }
        table_ready = true;
}

static const uint8_t *slice(uint64_t seq) {
        return table + seq % PAYLOAD_OFFSETS;
}

/**
 * payload_fill() - write the payload for @seq
 * @buf:        destination
 * @size:       PAYLOAD_MIN..PAYLOAD_MAX
 * @seq:        sequence number the receiver will read back
 */
void payload_fill(uint8_t *buf, size_t size, uint64_t seq) {
        table_init();
        for (size_t i = 0; i < PAYLOAD_MIN; i++)
                buf[i] = (uint8_t)(seq >> (8 * i));
        memcpy(buf + PAYLOAD_MIN, slice(seq), size - PAYLOAD_MIN);
}

/**
 * payload_check() - verify a received payload
 * @buf:        the bytes received
 * @size:       their length
 * @expected_size: the length that was sent
 * @ret_seq:    the sequence number it carries, written on success
 *
 * Return: 0, or -EBADMSG if the length or any byte is wrong.
 */
int payload_check(const void *buf, size_t size, size_t expected_size, uint64_t *ret_seq) {
        const uint8_t *p = buf;
        uint64_t seq = 0;

        table_init();
        if (size != expected_size || size < PAYLOAD_MIN || size > PAYLOAD_MAX || !p)
                return -EBADMSG;
        for (size_t i = 0; i < PAYLOAD_MIN; i++)
                seq |= (uint64_t)p[i] << (8 * i);
        if (memcmp(p + PAYLOAD_MIN, slice(seq), size - PAYLOAD_MIN) != 0)
                return -EBADMSG;
        *ret_seq = seq;
        return 0;
}
