/*
 * The hand-written header codec (common/header-wire.c) against protobuf-c,
 * which stays the reference here and only here (header-ref.c).
 *
 * Encoding: random headers (any subset of fields, values at and between
 * the boundaries, strings of 0 to 255 bytes, random unknown fields) pack to
 * the bytes plexus__header__pack() writes, and refuse a buffer one byte too
 * short. Decoding: those bytes, random bytes, and mutations of valid
 * headers (bit flips, inserted, deleted and overwritten bytes, overlong
 * varints, truncation, repeated fields) are admitted exactly when the reference admits them, to
 * the same field values, unknown fields included. Each field of the
 * generated descriptor is also checked on its own, so a field added to
 * proto/plexus.proto but not to the codec fails here.
 */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"
#include "header-ref.h"
#include "header-wire.h"

#define N_ROUNDS 40000

typedef struct Bytes {
        size_t len;
        uint8_t buf[FRAME_HEADER_MAX];
} Bytes;

static uint64_t next_random(uint64_t *x) {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        return *x;
}

static bool put(Bytes *b, const void *p, size_t n) {
        if (n > sizeof(b->buf) - b->len)
                return false;
        memcpy(b->buf + b->len, p, n);
        b->len += n;
        return true;
}

static void put_varint(Bytes *b, uint64_t v) {
        uint8_t tmp[HEADER_WIRE_VARINT_MAX_BYTES];

        put(b, tmp, header_wire_put_varint(tmp, v));
}

/* A value at a boundary of some varint length or type, or anything. */
static uint64_t random_value(uint64_t *x) {
        static const uint64_t edges[] = {
                0, 1, 0x7f, 0x80, 0x3fff, 0x4000, INT32_MAX, (uint64_t)INT32_MAX + 1, UINT32_MAX,
                (uint64_t)UINT32_MAX + 1, INT64_MAX, (uint64_t)INT64_MAX + 1, UINT64_MAX - 1, UINT64_MAX,
                (uint64_t)INT32_MIN, (uint64_t)(int64_t)-1,
        };

        switch (next_random(x) % 4) {
        case 0:
                return edges[next_random(x) % (sizeof(edges) / sizeof(edges[0]))];
        case 1:
                return next_random(x) % 8;
        default:
                return next_random(x) >> (next_random(x) % 64);
        }
}

/* Mostly valid UTF-8 of @n bytes without NUL (ASCII, 2-, 3- and 4-byte sequences); sometimes not. */
static void random_string(uint64_t *x, char *s, size_t n) {
        static const char *const pieces[] = { "a", "Z", ".", "/", ":", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80" };
        size_t i = 0;

        while (i < n) {
                const char *p = pieces[next_random(x) % 8];
                size_t l = strlen(p);

                if (l > n - i)
                        p = "x", l = 1;
                memcpy(s + i, p, l);
                i += l;
        }
        s[n] = 0;
        if (n > 0 && next_random(x) % 16 == 0) {
                static const uint8_t bad[] = { 0x80, 0xc0, 0xc1, 0xed, 0xf5, 0xff, 0x01, 0x7f };

                s[next_random(x) % n] = (char)bad[next_random(x) % sizeof(bad)];
        }
}

/* A field number: one plexus.Header defines, or an unknown one. */
static uint32_t random_field(uint64_t *x) {
        static const uint32_t unknown[] = { 19, 20, 100, 1000, 2047, 2048, 1u << 20, HEADER_WIRE_FIELD_MAX };

        if (next_random(x) % 4)
                return plexus__header__descriptor.fields[next_random(x) % plexus__header__descriptor.n_fields].id;
        return unknown[next_random(x) % (sizeof(unknown) / sizeof(unknown[0]))];
}

/* One field, usually with the wire type of its type. */
static void put_random_field(uint64_t *x, Bytes *b) {
        static const unsigned wire_types[] = { 0, 1, 2, 5 };
        uint32_t number = random_field(x);
        const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(&plexus__header__descriptor, number);
        uint64_t v = random_value(x);
        char s[256];
        unsigned wt;

        if (next_random(x) % 16 == 0)
                wt = (unsigned)(next_random(x) % 8);
        else if (fd)
                wt = fd->type == PROTOBUF_C_TYPE_STRING ? 2 : 0;
        else
                wt = wire_types[next_random(x) % 4];
        /* Keep most 32-bit values in range, so that many headers are admitted. */
        if (fd && fd->type != PROTOBUF_C_TYPE_UINT64 && wt == 0 && next_random(x) % 4)
                v = (uint32_t)v;

        put_varint(b, (uint64_t)number << 3 | wt);
        switch (wt) {
        case 0:
                put_varint(b, v);
                break;
        case 1:
                put(b, &v, 8);
                break;
        case 5:
                put(b, &v, 4);
                break;
        case 2:
                random_string(x, s, next_random(x) % 4 ? next_random(x) % 24 : next_random(x) % 256);
                put_varint(b, strlen(s));
                put(b, s, strlen(s));
                break;
        default:
                break;
        }
}

static void mutate(uint64_t *x, Bytes *b) {
        size_t at = b->len ? next_random(x) % b->len : 0;

        switch (next_random(x) % 7) {
        case 0:
                if (b->len)
                        b->buf[at] ^= (uint8_t)(1u << (next_random(x) % 8));
                break;
        case 1:
                if (b->len < sizeof(b->buf)) {
                        memmove(b->buf + at + 1, b->buf + at, b->len - at);
                        b->buf[at] = (uint8_t)next_random(x);
                        b->len++;
                }
                break;
        case 2:
                if (b->len) {
                        memmove(b->buf + at, b->buf + at + 1, b->len - at - 1);
                        b->len--;
                }
                break;
        case 3:
                b->len = at;
                break;
        case 4:
                if (b->len) {
                        static const uint8_t special[] = { 0x00, 0x80, 0xff, 0x7f, 0x01 };

                        b->buf[at] = special[next_random(x) % sizeof(special)];
                }
                break;
        case 5:
                /* A varint's last byte given a continuation and a 0x00 after it: overlong. */
                if (b->len > 0 && b->len < sizeof(b->buf) && b->buf[at] < 0x80) {
                        memmove(b->buf + at + 2, b->buf + at + 1, b->len - at - 1);
                        b->buf[at] |= 0x80;
                        b->buf[at + 1] = 0;
                        b->len++;
                }
                break;
        default:
                /* The header again after itself: every field repeated, the last wins. */
                if (b->len <= sizeof(b->buf) / 2) {
                        memcpy(b->buf + b->len, b->buf, b->len);
                        b->len *= 2;
                }
                break;
        }
}

/*
 * The codec and the reference must agree on @b: both refuse it, or both
 * admit it with the same fields. header_wire_validate() must agree too.
 * Returns whether it was admitted.
 */
static bool check_decode(Arena *a, const Bytes *b) {
        Plexus__Header *ref = header_ref_decode(b->buf, b->len), *got = NULL;
        const char *why = NULL;
        int r;

        arena_reset(a);
        r = header_wire_decode(b->buf, b->len, a, &got);
        if (!ref) {
                if (r != -EBADMSG)
                        fail_msg("codec admits a header of %zu bytes that the reference refuses", b->len);
                assert_int_equal(a->used, 0);
                assert_int_equal(header_wire_validate(b->buf, b->len, &why, NULL), -EBADMSG);
                assert_non_null(why);
                return false;
        }
        if (r != 0)
                fail_msg("codec refuses (%d) a header of %zu bytes that the reference admits", r, b->len);
        assert_int_equal(header_wire_validate(b->buf, b->len, NULL, NULL), 0);
        why = header_ref_diff(ref, got);
        if (why)
                fail_msg("decoded headers differ in %s", why);
        /* No heap for anything but a pathological header. */
        if (b->len < 512)
                assert_null(a->overflow);
        plexus__header__free_unpacked(ref, NULL);
        return true;
}

/* frame_header_pack() must write what protobuf-c writes, and nothing into a buffer too small. */
static void check_pack(const Plexus__Header *h, Bytes *ret) {
        static uint8_t want[2 * FRAME_HEADER_MAX];
        size_t n = plexus__header__get_packed_size(h);

        assert_true(n <= sizeof(ret->buf));
        assert_int_equal(plexus__header__pack(h, want), n);
        ret->len = frame_header_pack(h, ret->buf, sizeof(ret->buf));
        assert_int_equal(ret->len, n);
        assert_memory_equal(ret->buf, want, n);
        if (n > 0)
                assert_int_equal(frame_header_pack(h, ret->buf, n - 1), 0);
        assert_int_equal(frame_header_pack(h, ret->buf, n), n);
}

/* Sets field @fd of @h: an integer to @v, a string to @s. */
static void set_field(Plexus__Header *h, const ProtobufCFieldDescriptor *fd, uint64_t v, char *s) {
        uint8_t *member = (uint8_t *)h + fd->offset;

        switch (fd->type) {
        case PROTOBUF_C_TYPE_UINT64:
                *(uint64_t *)member = v;
                break;
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_ENUM:
                *(uint32_t *)member = (uint32_t)v;
                break;
        case PROTOBUF_C_TYPE_STRING:
                *(char **)member = s;
                break;
        default:
                fail_msg("field %s: type %d is not in the codec", fd->name, fd->type);
        }
}

static Arena arena;

/* Every field of the descriptor alone, at its boundaries: same bytes, same value back. */
static void test_each_field(void **state) {
        const ProtobufCMessageDescriptor *desc = &plexus__header__descriptor;
        static const uint64_t values[] = { 1, 0x7f, 0x80, INT32_MAX, UINT32_MAX, UINT64_MAX, (uint64_t)INT32_MIN };
        char s[256];

        memset(s, 'n', 255);
        s[255] = 0;
        for (unsigned i = 0; i < desc->n_fields; i++) {
                const ProtobufCFieldDescriptor *fd = &desc->fields[i];

                for (size_t k = 0; k < sizeof(values) / sizeof(values[0]); k++) {
                        Plexus__Header h = PLEXUS__HEADER__INIT;
                        Bytes b;

                        set_field(&h, fd, values[k], s + 255 - (1 + values[k] % 255));
                        check_pack(&h, &b);
                        assert_true(b.len > 0);
                        assert_true(check_decode(&arena, &b));
                }
        }
}

static void test_pack_random(void **state) {
        const ProtobufCMessageDescriptor *desc = &plexus__header__descriptor;
        uint64_t x = 0x9e3779b97f4a7c15ull;
        size_t n_unknown_seen = 0;

        for (int round = 0; round < N_ROUNDS; round++) {
                Plexus__Header h = PLEXUS__HEADER__INIT;
                ProtobufCMessageUnknownField unknown[4];
                uint8_t unknown_data[4][16];
                char strings[8][256];
                size_t n_strings = 0;
                Bytes b;

                for (unsigned i = 0; i < desc->n_fields; i++) {
                        const ProtobufCFieldDescriptor *fd = &desc->fields[i];

                        if (next_random(&x) % 2)
                                continue;
                        assert_true(n_strings < 8);
                        random_string(&x, strings[n_strings], next_random(&x) % 3 ? next_random(&x) % 32 : 255);
                        set_field(&h, fd, random_value(&x), strings[n_strings]);
                        if (fd->type == PROTOBUF_C_TYPE_STRING)
                                n_strings++;
                }

                /* Unknown fields as a decoder keeps them: the value's bytes, with a length prefix. */
                h.base.n_unknown_fields = (unsigned)(next_random(&x) % 8 == 0 ? 1 + next_random(&x) % 4 : 0);
                h.base.unknown_fields = unknown;
                for (unsigned i = 0; i < h.base.n_unknown_fields; i++) {
                        static const ProtobufCWireType wts[] = {
                                PROTOBUF_C_WIRE_TYPE_VARINT, PROTOBUF_C_WIRE_TYPE_64BIT,
                                PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED, PROTOBUF_C_WIRE_TYPE_32BIT,
                        };
                        ProtobufCMessageUnknownField *u = &unknown[i];
                        uint64_t v = random_value(&x);
                        uint32_t number;

                        do
                                number = random_field(&x);
                        while (protobuf_c_message_descriptor_get_field(desc, number));
                        u->tag = number;
                        u->wire_type = wts[next_random(&x) % 4];
                        u->data = unknown_data[i];
                        switch (u->wire_type) {
                        case PROTOBUF_C_WIRE_TYPE_VARINT:
                                u->len = header_wire_put_varint(u->data, v);
                                break;
                        case PROTOBUF_C_WIRE_TYPE_64BIT:
                                memcpy(u->data, &v, 8);
                                u->len = 8;
                                break;
                        case PROTOBUF_C_WIRE_TYPE_32BIT:
                                memcpy(u->data, &v, 4);
                                u->len = 4;
                                break;
                        default:
                                u->data[0] = (uint8_t)(v % 15);
                                memset(u->data + 1, 0xff, u->data[0]);
                                u->len = 1 + u->data[0];
                                break;
                        }
                        n_unknown_seen++;
                }

                check_pack(&h, &b);
                /* Admitted unless a string is not UTF-8 or a 32-bit value does not fit: both agree either way. */
                check_decode(&arena, &b);
        }
        assert_true(n_unknown_seen > N_ROUNDS / 16);
}

static void test_decode_random(void **state) {
        uint64_t x = 0x2545f4914f6cdd1dull;
        size_t n_admitted = 0, n_refused = 0;

        for (int round = 0; round < N_ROUNDS; round++) {
                Bytes b = { .len = 0 };
                size_t n_fields = next_random(&x) % 12;

                if (round % 16 == 0) {
                        /* Plain noise, mostly refused. */
                        b.len = next_random(&x) % 64;
                        for (size_t i = 0; i < b.len; i++)
                                b.buf[i] = (uint8_t)next_random(&x);
                } else {
                        for (size_t i = 0; i < n_fields; i++)
                                put_random_field(&x, &b);
                        for (int k = (int)(next_random(&x) % 4) - 1; k > 0; k--)
                                mutate(&x, &b);
                }
                if (check_decode(&arena, &b))
                        n_admitted++;
                else
                        n_refused++;
        }
        /* The generator must exercise both sides. */
        assert_true(n_admitted > N_ROUNDS / 4);
        assert_true(n_refused > N_ROUNDS / 8);
}

/* A header of nothing but tiny unknown fields needs the arena's heap overflow; it still decodes. */
static void test_decode_many_unknown(void **state) {
        Bytes b = { .len = 0 };

        while (b.len + 3 <= FRAME_HEADER_MAX)
                put(&b, "\xa0\x06\x00", 3);     /* field 100, varint 0 */
        assert_true(check_decode(&arena, &b));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_each_field),
                cmocka_unit_test(test_pack_random),
                cmocka_unit_test(test_decode_random),
                cmocka_unit_test(test_decode_many_unknown),
        };

        int r;

        arena_init(&arena);
        r = cmocka_run_group_tests(tests, NULL, NULL);
        arena_reset(&arena);
        return r;
}
