#pragma once

/*
 * Benchmark payloads that can be verified cheaply by whoever receives them.
 *
 * A payload is its sequence number (8 bytes, little-endian) followed by a
 * slice of a fixed pseudo-random table that starts at an offset derived from
 * that number. A receiver recomputes the slice from the sequence number it
 * reads and compares with memcmp(), so a corrupted, truncated, duplicated or
 * misrouted message is caught without knowing anything but the expected
 * size. Checking 4 KiB costs about as much as copying it once.
 */

#include <stddef.h>
#include <stdint.h>

#define PAYLOAD_MIN 8u
#define PAYLOAD_MAX (64u * 1024u)

void payload_fill(uint8_t *buf, size_t size, uint64_t seq);
int payload_check(const void *buf, size_t size, size_t expected_size, uint64_t *ret_seq);
