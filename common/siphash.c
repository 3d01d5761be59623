/*
 * SipHash-2-4 after the reference implementation (github.com/veorq/SipHash);
 * tests/common/test-siphash.c checks it against that implementation's
 * vectors. Keys come from getrandom().
 */

#include <endian.h>
#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "siphash.h"

#ifndef GRND_INSECURE
#define GRND_INSECURE 0x0004
#endif

static inline uint64_t rotl(uint64_t x, unsigned b) {
        return (x << b) | (x >> (64 - b));
}

static inline uint64_t load_le64(const uint8_t *p) {
        uint64_t v;

        memcpy(&v, p, sizeof(v));
        return le64toh(v);
}

#define SIPROUND                                                \
        do {                                                    \
                v0 += v1;                                       \
                v1 = rotl(v1, 13);                              \
                v1 ^= v0;                                       \
                v0 = rotl(v0, 32);                              \
                v2 += v3;                                       \
                v3 = rotl(v3, 16);                              \
                v3 ^= v2;                                       \
                v0 += v3;                                       \
                v3 = rotl(v3, 21);                              \
                v3 ^= v0;                                       \
                v2 += v1;                                       \
                v1 = rotl(v1, 17);                              \
                v1 ^= v2;                                       \
                v2 = rotl(v2, 32);                              \
        } while (0)

/**
 * sip_key_from_bytes() - a key from its 16-byte form (as the reference uses)
 */
void sip_key_from_bytes(SipKey *ret, const uint8_t bytes[16]) {
        ret->k0 = load_le64(bytes);
        ret->k1 = load_le64(bytes + 8);
}

/**
 * sip_key_random() - a fresh random key
 * @ret:        receives the key
 *
 * Never blocks: a hash table must not wait for the kernel's entropy pool at
 * early boot. GRND_INSECURE (Linux 5.6) serves then; on older kernels that
 * early, the key falls back to clock, pid and address bits, weaker but
 * still not known to a client in advance.
 */
void sip_key_random(SipKey *ret) {
        uint8_t bytes[16];
        struct timespec ts;

        if (getrandom(bytes, sizeof(bytes), GRND_NONBLOCK) == (ssize_t)sizeof(bytes) ||
            getrandom(bytes, sizeof(bytes), GRND_INSECURE) == (ssize_t)sizeof(bytes)) {
                sip_key_from_bytes(ret, bytes);
                return;
        }
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ret->k0 = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)ret;
        clock_gettime(CLOCK_REALTIME, &ts);
        ret->k1 = (uint64_t)ts.tv_nsec * 0xbf58476d1ce4e5b9ull ^ (uint64_t)getpid() ^
                  (uint64_t)(uintptr_t)&sip_key_random;
}

/**
 * siphash24() - SipHash-2-4 of @len bytes at @data under @key
 *
 * Return: the 64-bit hash.
 */
uint64_t siphash24(const SipKey *key, const void *data, size_t len) {
        const uint8_t *p = data, *end = p + (len & ~(size_t)7);
        uint64_t v0 = 0x736f6d6570736575ull ^ key->k0;
        uint64_t v1 = 0x646f72616e646f6dull ^ key->k1;
        uint64_t v2 = 0x6c7967656e657261ull ^ key->k0;
        uint64_t v3 = 0x7465646279746573ull ^ key->k1;
        uint64_t b = (uint64_t)len << 56;

        for (; p < end; p += 8) {
                uint64_t m = load_le64(p);

                v3 ^= m;
                SIPROUND;
                SIPROUND;
                v0 ^= m;
        }
        for (size_t i = 0; i < (len & 7); i++)
                b |= (uint64_t)p[i] << (8 * i);

        v3 ^= b;
        SIPROUND;
        SIPROUND;
        v0 ^= b;
        v2 ^= 0xff;
        SIPROUND;
        SIPROUND;
        SIPROUND;
        SIPROUND;
        return v0 ^ v1 ^ v2 ^ v3;
}
