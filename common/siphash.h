#pragma once

/*
 * SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF"):
 * a keyed 64-bit hash for tables whose keys a client chooses. Without a
 * secret key a client can compute which keys collide and make every lookup
 * walk one long chain (hash flooding); with a random key per table it
 * cannot, as long as the key stays inside the process.
 */

#include <stddef.h>
#include <stdint.h>

typedef struct SipKey {
        uint64_t k0;                    /* key bytes 0..7, little endian */
        uint64_t k1;                    /* key bytes 8..15 */
} SipKey;

void sip_key_from_bytes(SipKey *ret, const uint8_t bytes[16]);
void sip_key_random(SipKey *ret);
uint64_t siphash24(const SipKey *key, const void *data, size_t len);
