/*
 * Unit tests for the wire-level header validator (common/header-wire.c) and
 * its use in frame_header_decode().
 *
 * Covers each rejection (tags: field number 0, overlong, above 2^29-1,
 * longer than 5 bytes, truncated; wire types 3, 4, 6, 7; varints: longer
 * than 10 bytes, above 2^64-1, overlong, truncated; fixed-size and
 * length-delimited values past the end; known fields with the wrong wire
 * type or a varint out of range; in every string field of plexus.Header,
 * taken from its descriptor, NUL bytes and malformed UTF-8 in any
 * occurrence), the acceptance of valid headers including unknown fields of
 * every wire type, that a rejected header allocates nothing, and that a
 * header re-encoded by frame_header_pack() (as the broker does for
 * monitors) is as valid and decodable as the original.
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
#include "header-wire.h"

/* A header under construction, byte by byte. */
typedef struct Bytes {
        size_t len;
        uint8_t buf[FRAME_HEADER_MAX];
} Bytes;

static void put(Bytes *b, const void *p, size_t n) {
        assert_true(n <= sizeof(b->buf) - b->len);
        memcpy(b->buf + b->len, p, n);
        b->len += n;
}

static void put_varint(Bytes *b, uint64_t v) {
        do {
                uint8_t c = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));

                put(b, &c, 1);
                v >>= 7;
        } while (v);
}

static void put_tag(Bytes *b, uint32_t field, unsigned wire_type) {
        put_varint(b, (uint64_t)field << 3 | wire_type);
}

static void put_string(Bytes *b, uint32_t field, const void *s, size_t n) {
        put_tag(b, field, 2);
        put_varint(b, n);
        put(b, s, n);
}

/* kind = CALL, serial = 1: a valid start for every test header. */
static void put_call(Bytes *b) {
        put_tag(b, 1, 0);
        put_varint(b, PLEXUS__KIND__KIND_CALL);
        put_tag(b, 2, 0);
        put_varint(b, 1);
}

static int setup_arena(void **state) {
        Arena *a = malloc(sizeof(*a));

        if (!a)
                return -1;
        arena_init(a);
        *state = a;
        return 0;
}

static int teardown_arena(void **state) {
        arena_reset(*state);
        free(*state);
        return 0;
}

static int decode(Arena *a, const uint8_t *buf, size_t len, Plexus__Header **ret) {
        FrameView f = { .header = buf, .header_len = len };

        arena_reset(a);
        return frame_header_decode(&f, a, ret);
}

static void expect_valid(const Bytes *b) {
        const char *why = NULL;
        uint32_t field = 0;

        if (header_wire_validate(b->buf, b->len, &why, &field) != 0)
                fail_msg("valid header refused: field %u: %s", field, why);
}

/*
 * @b must be refused for a reason containing @reason, naming @field; and
 * frame_header_decode() must refuse it without allocating anything.
 */
static void expect_invalid_at(Arena *a, const Bytes *b, const char *reason, uint32_t field) {
        const char *why = NULL;
        uint32_t got_field = UINT32_MAX;
        Plexus__Header *h = NULL;

        assert_int_equal(header_wire_validate(b->buf, b->len, &why, &got_field), -EBADMSG);
        assert_non_null(why);
        if (!strstr(why, reason))
                fail_msg("refused for \"%s\", expected \"%s\"", why, reason);
        if (got_field != field)
                fail_msg("refused at field %u, expected %u (%s)", got_field, field, why);
        /* Optional out-parameters. */
        assert_int_equal(header_wire_validate(b->buf, b->len, NULL, NULL), -EBADMSG);

        assert_int_equal(decode(a, b->buf, b->len, &h), FRAME_E_HEADER_DECODE);
        assert_null(h);
        /* The decoder allocates only once the whole header passed. */
        assert_int_equal(a->used, 0);
        assert_null(a->overflow);
}

static void expect_invalid(Arena *a, const Bytes *b, const char *reason) {
        expect_invalid_at(a, b, reason, 0);
}

static void test_valid_full_header(void **state) {
        Arena *a = *state;
        Plexus__Header h = PLEXUS__HEADER__INIT, *d = NULL;
        Bytes b = {};

        h.kind = PLEXUS__KIND__KIND_ERROR;
        h.serial = UINT64_MAX;
        h.reply_serial = 1;
        h.destination = (char *)":1.42";
        h.sender = (char *)":1.7";
        h.member = (char *)"grüße/öl/\xf0\x9f\x98\x80";     /* 2- and 4-byte sequences */
        h.flags = UINT32_MAX;
        h.error_name = (char *)"org.example.Error.\xe2\x82\xac";     /* a 3-byte one */
        h.timeout_ms = UINT32_MAX;
        h.sequence = 1ull << 63;
        h.delivery = 5;
        h.sender_uid = 1000;
        h.sender_pid = 1;
        h.n_fds = 3;
        h.sender_gid = 0;
        b.len = frame_header_pack(&h, b.buf, sizeof(b.buf));
        assert_true(b.len > 0);
        expect_valid(&b);

        assert_int_equal(decode(a, b.buf, b.len, &d), 0);
        assert_string_equal(d->member, h.member);
        assert_string_equal(d->error_name, h.error_name);
        assert_true(d->serial == UINT64_MAX);
        assert_true(a->used > 0);

        /* The empty header is well-formed protobuf (frame_split() refuses it earlier). */
        assert_int_equal(header_wire_validate(b.buf, 0, NULL, NULL), 0);
}

static void test_valid_edge_values(void **state) {
        Arena *a = *state;
        Plexus__Header *d = NULL;
        Bytes b = {};

        put_call(&b);
        /* Every field again, in reverse order, at the limits of its type. */
        put_tag(&b, 15, 0);
        put_varint(&b, UINT32_MAX);
        put_tag(&b, 11, 0);
        put_varint(&b, UINT64_MAX);             /* ten bytes, the last 0x01 */
        put_string(&b, 8, "", 0);
        put_tag(&b, 7, 0);
        put_varint(&b, 0);
        put_string(&b, 6, "Echo", 4);
        put_string(&b, 4, ":1.2", 4);
        put_tag(&b, 2, 0);
        put_varint(&b, 9);
        expect_valid(&b);
        assert_int_equal(decode(a, b.buf, b.len, &d), 0);
        assert_true(d->delivery == UINT64_MAX);
        assert_true(d->serial == 9);

        /* A negative enum, sign-extended to ten bytes, is well-formed; the kind check refuses it. */
        b.len = 0;
        put_tag(&b, 1, 0);
        put_varint(&b, (uint64_t)(int64_t)-1);
        expect_valid(&b);
        assert_int_equal(decode(a, b.buf, b.len, &d), FRAME_E_UNKNOWN_KIND);
}

/* Unknown fields of every wire type, as the last fields (where protobuf-c re-encodes them). */
static void put_unknown_fields(Bytes *b) {
        static const uint8_t not_utf8[] = { 0xff, 0x00, 0xc0, 0x80 };  /* bytes, not a string */

        put_tag(b, 99, 0);
        put_varint(b, UINT64_MAX);
        put_tag(b, 1000, 1);
        put(b, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
        put_string(b, 100, not_utf8, sizeof(not_utf8));
        put_string(b, 101, "", 0);
        put_tag(b, HEADER_WIRE_FIELD_MAX, 5);   /* the largest field number: a 5-byte tag */
        put(b, "\xaa\xbb\xcc\xdd", 4);
}

static void test_valid_unknown_fields(void **state) {
        Arena *a = *state;
        Plexus__Header *d = NULL;
        Bytes b = {};

        put_call(&b);
        put_unknown_fields(&b);
        expect_valid(&b);
        assert_int_equal(b.buf[b.len - 9], 0xfd);     /* tag (2^29-1) << 3 | 5 ... */
        assert_int_equal(b.buf[b.len - 5], 0x0f);     /* ... its fifth byte at the limit */

        assert_int_equal(decode(a, b.buf, b.len, &d), 0);
        assert_int_equal(d->base.n_unknown_fields, 5);
        assert_int_equal(d->base.unknown_fields[4].tag, HEADER_WIRE_FIELD_MAX);
}

/*
 * What a monitor gets: the header decoded, stamped and packed again. It
 * must be exactly as valid as what the sender wrote, and decode to the same.
 */
static void check_reencode(Arena *a, const Bytes *b) {
        Plexus__Header *d = NULL, *d2 = NULL;
        Bytes again = {};
        size_t n_unknown;

        assert_int_equal(decode(a, b->buf, b->len, &d), 0);
        d->sender = (char *)":1.99";
        d->sequence = 12345;
        d->sender_pid = 77;
        n_unknown = d->base.n_unknown_fields;
        again.len = frame_header_pack(d, again.buf, sizeof(again.buf));
        assert_true(again.len > 0);
        expect_valid(&again);

        {
                FrameView f = { .header = again.buf, .header_len = again.len };
                Arena *a2 = malloc(sizeof(*a2));

                assert_non_null(a2);
                arena_init(a2);
                assert_int_equal(frame_header_decode(&f, a2, &d2), 0);
                assert_int_equal(d2->kind, d->kind);
                assert_true(d2->serial == d->serial);
                assert_string_equal(d2->sender, ":1.99");
                assert_string_equal(d2->member, d->member);
                assert_string_equal(d2->destination, d->destination);
                assert_int_equal(d2->base.n_unknown_fields, n_unknown);
                for (size_t i = 0; i < n_unknown; i++) {
                        const ProtobufCMessageUnknownField *u = &d->base.unknown_fields[i];
                        const ProtobufCMessageUnknownField *u2 = &d2->base.unknown_fields[i];

                        assert_int_equal(u2->tag, u->tag);
                        assert_int_equal(u2->wire_type, u->wire_type);
                        assert_int_equal(u2->len, u->len);
                        assert_memory_equal(u2->data, u->data, u->len);
                }
                arena_reset(a2);
                free(a2);
        }
}

static void test_reencode_unknown_fields(void **state) {
        Arena *a = *state;
        Bytes b = {}, again = {};
        Plexus__Header *d = NULL;

        put_call(&b);
        put_string(&b, 6, "Echo", 4);
        put_string(&b, 4, ":1.2", 4);
        put_unknown_fields(&b);
        check_reencode(a, &b);

        /* Known fields in field order, then unknown ones: packing gives back the very bytes. */
        b.len = 0;
        put_call(&b);
        put_string(&b, 4, ":1.2", 4);
        put_string(&b, 6, "Echo", 4);
        put_unknown_fields(&b);
        assert_int_equal(decode(a, b.buf, b.len, &d), 0);
        again.len = frame_header_pack(d, again.buf, sizeof(again.buf));
        assert_int_equal(again.len, b.len);
        assert_memory_equal(again.buf, b.buf, b.len);
}

/* A cheap generator: xorshift64, fixed seed so failures reproduce. */
static uint64_t next_random(uint64_t *x) {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        return *x;
}

/*
 * Random headers of valid and invalid fields, and single-byte mutations of
 * them: whatever the validator and protobuf-c accept re-encodes to a header
 * that is valid and decodes to the same fields.
 */
static void test_reencode_random(void **state) {
        static const uint32_t fields[] = { 1, 2, 3, 4, 5, 6, 7, 8, 11, 16, 100, 1000, HEADER_WIRE_FIELD_MAX };
        Arena *a = *state;
        uint64_t x = 0x2545f4914f6cdd1dull;
        size_t n_accepted = 0;

        for (int round = 0; round < 20000; round++) {
                Plexus__Header *d = NULL;
                Bytes b = {};
                size_t n_fields = 1 + next_random(&x) % 6;

                put_call(&b);
                for (size_t i = 0; i < n_fields; i++) {
                        static const unsigned wire_types[] = { 0, 1, 2, 5 };
                        uint32_t field = fields[next_random(&x) % (sizeof(fields) / sizeof(fields[0]))];
                        const ProtobufCFieldDescriptor *fd =
                                protobuf_c_message_descriptor_get_field(&plexus__header__descriptor, field);
                        uint64_t v = next_random(&x) >> (next_random(&x) % 64);
                        unsigned wt;

                        /* Mostly well-formed, so that many headers get through to re-encoding. */
                        if (next_random(&x) % 8 == 0)
                                wt = (unsigned)(next_random(&x) % 8);
                        else if (fd && next_random(&x) % 4)
                                wt = fd->type == PROTOBUF_C_TYPE_STRING ? 2 : 0;
                        else
                                wt = wire_types[next_random(&x) % 4];
                        if (fd && fd->type != PROTOBUF_C_TYPE_STRING && wt == 0)
                                v %= 6;         /* kind 1..5, in range for every field */

                        put_tag(&b, field, wt);
                        if (wt == 1) {
                                put(&b, &v, 8);
                        } else if (wt == 5) {
                                put(&b, &v, 4);
                        } else if (wt == 2) {
                                put_varint(&b, v % 5);
                                put(&b, "ok\xc3\xa9", v % 5);
                        } else {
                                put_varint(&b, v);
                        }
                }
                if (round % 2)
                        b.buf[next_random(&x) % b.len] ^= (uint8_t)(1u << (next_random(&x) % 8));

                if (header_wire_validate(b.buf, b.len, NULL, NULL) != 0) {
                        assert_int_equal(decode(a, b.buf, b.len, &d), FRAME_E_HEADER_DECODE);
                        assert_int_equal(a->used, 0);
                        continue;
                }
                if (decode(a, b.buf, b.len, &d) != 0)
                        continue;
                check_reencode(a, &b);
                n_accepted++;
        }
        /* The generator must exercise the accepting side too. */
        assert_true(n_accepted > 1000);
}

static void test_tag_field_zero(void **state) {
        Arena *a = *state;
        Bytes b = {};

        /* The frame of finding 2: an overlong tag that says field 0, then a varint. */
        put_call(&b);
        put(&b, "\x80\x80\x00\x01", 4);
        expect_invalid(a, &b, "field number 0");

        b.len = 0;
        put_call(&b);
        put(&b, "\x00\x01", 2);
        expect_invalid(a, &b, "field number 0");

        /* Field 0 with a length-delimited wire type, as the first field. */
        b.len = 0;
        put(&b, "\x82\x00\x00", 3);
        expect_invalid(a, &b, "field number 0");
}

static void test_tag_malformed(void **state) {
        Arena *a = *state;
        Bytes b = {};

        /* kind's tag in two bytes. */
        put(&b, "\x88\x00\x01", 3);
        expect_invalid(a, &b, "tag not in its shortest form");

        /* Six tag bytes. */
        b.len = 0;
        put_call(&b);
        put(&b, "\x80\x80\x80\x80\x80\x01\x00", 7);
        expect_invalid(a, &b, "tag longer than 5 bytes");

        /* A tag cut off by the end of the header. */
        b.len = 0;
        put_call(&b);
        put(&b, "\xc0", 1);
        expect_invalid(a, &b, "truncated");
}

/*
 * Finding 13: protobuf-c's tag parser shifts the fifth tag byte left by 25
 * as an int, undefined behaviour from 0x40 on. Every fifth byte above 0x0f
 * means a field number above 2^29-1 and is refused (protobuf-c no longer
 * decodes headers, but receivers may use it).
 */
static void test_tag_field_too_large(void **state) {
        Arena *a = *state;

        for (unsigned fifth = 0x10; fifth <= 0x7f; fifth++) {
                Bytes b = {};
                uint8_t tag[] = { 0xf8, 0xff, 0xff, 0xff, (uint8_t)fifth };

                put_call(&b);
                put(&b, tag, sizeof(tag));
                put_varint(&b, 1);
                expect_invalid(a, &b, "field number above 2^29-1");

                /* Same with zero bytes in between: 0x40 << 25 is where protobuf-c overflows. */
                tag[0] = 0x80;
                tag[1] = tag[2] = tag[3] = 0x80;
                b.len = 0;
                put(&b, tag, sizeof(tag));
                put_varint(&b, 1);
                expect_invalid(a, &b, "field number above 2^29-1");
        }
}

static void test_wire_types(void **state) {
        static const uint32_t fields[] = { 1, 4, 100 };        /* a varint, a string, an unknown */
        Arena *a = *state;

        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
                for (unsigned wt = 3; wt <= 7; wt++) {
                        Bytes b = {};

                        if (wt == 5)
                                continue;
                        put_call(&b);
                        put_tag(&b, fields[i], wt);
                        put(&b, "\x00\x00\x00\x00\x00\x00\x00\x00", 8);
                        expect_invalid_at(a, &b, wt <= 4 ? "groups" : "undefined wire type", fields[i]);
                }
        }
}

static void test_varints(void **state) {
        Arena *a = *state;
        Bytes b = {};

        /* serial in eleven bytes. */
        put_call(&b);
        put(&b, "\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12);
        expect_invalid_at(a, &b, "longer than 10 bytes", 2);

        /* Ten bytes, but the last holds more than bit 63. */
        b.len = 0;
        put_call(&b);
        put(&b, "\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 11);
        expect_invalid_at(a, &b, "above 2^64-1", 2);

        /* serial = 1 in two bytes. */
        b.len = 0;
        put_call(&b);
        put(&b, "\x10\x81\x00", 3);
        expect_invalid_at(a, &b, "varint not in its shortest form", 2);

        /* The same in an unknown field: a monitor would get it as received. */
        b.len = 0;
        put_call(&b);
        put(&b, "\xa0\x06\x80\x80\x00", 5);
        expect_invalid_at(a, &b, "varint not in its shortest form", 100);

        /* Cut off by the end of the header. */
        b.len = 0;
        put_call(&b);
        put(&b, "\x10\x81", 2);
        expect_invalid_at(a, &b, "truncated", 2);
        b.len = 0;
        put_call(&b);
        put(&b, "\x10", 1);
        expect_invalid_at(a, &b, "truncated", 2);
}

static void test_truncated_values(void **state) {
        Arena *a = *state;
        Bytes b = {};

        put_call(&b);
        put_tag(&b, 1000, 1);
        put(&b, "\x01\x02\x03\x04\x05\x06\x07", 7);
        expect_invalid_at(a, &b, "fixed-size value truncated", 1000);

        b.len = 0;
        put_call(&b);
        put_tag(&b, 1000, 5);
        put(&b, "\x01\x02\x03", 3);
        expect_invalid_at(a, &b, "fixed-size value truncated", 1000);

        /* destination says 5 bytes, 2 follow. */
        b.len = 0;
        put_call(&b);
        put(&b, "\x22\x05:1", 4);
        expect_invalid_at(a, &b, "past the end", 4);

        /* A length too large for any header. */
        b.len = 0;
        put_call(&b);
        put_tag(&b, 100, 2);
        put_varint(&b, UINT64_MAX);
        expect_invalid_at(a, &b, "past the end", 100);

        /* A length in two bytes. */
        b.len = 0;
        put_call(&b);
        put(&b, "\x22\x80\x00", 3);
        expect_invalid_at(a, &b, "length not in its shortest form", 4);

        /* No length at all. */
        b.len = 0;
        put_call(&b);
        put(&b, "\x22", 1);
        expect_invalid_at(a, &b, "truncated", 4);
}

/* The string fields of plexus.Header, from its descriptor, as the validator finds them. */
static size_t string_fields(uint32_t *ret, size_t size) {
        const ProtobufCMessageDescriptor *desc = &plexus__header__descriptor;
        size_t n = 0;

        for (unsigned i = 0; i < desc->n_fields; i++)
                if (desc->fields[i].type == PROTOBUF_C_TYPE_STRING) {
                        assert_true(n < size);
                        ret[n++] = desc->fields[i].id;
                }
        return n;
}

static void test_descriptor(void **state) {
        const ProtobufCMessageDescriptor *desc = &plexus__header__descriptor;
        uint32_t strings[64];
        size_t n = string_fields(strings, 64);
        bool seen[9] = {};

        for (size_t i = 0; i < n; i++)
                if (strings[i] < 9)
                        seen[strings[i]] = true;
        /* destination, sender, member, error_name, and whatever is added later. */
        assert_true(seen[4] && seen[5] && seen[6] && seen[8]);

        /*
         * The walker does not descend into sub-messages and knows no packed
         * repeated fields. A field of plexus.Header that needs either must
         * extend header-wire.c first.
         */
        for (unsigned i = 0; i < desc->n_fields; i++) {
                const ProtobufCFieldDescriptor *fd = &desc->fields[i];

                if (fd->type == PROTOBUF_C_TYPE_MESSAGE)
                        fail_msg("field %s is a message: teach header-wire.c to validate it", fd->name);
                if (fd->label == PROTOBUF_C_LABEL_REPEATED && fd->type != PROTOBUF_C_TYPE_STRING &&
                    fd->type != PROTOBUF_C_TYPE_BYTES)
                        fail_msg("field %s is repeated and packable: teach header-wire.c packed fields",
                                 fd->name);
        }
}

static void test_string_wrong_wire_type(void **state) {
        Arena *a = *state;
        uint32_t strings[64];
        size_t n = string_fields(strings, 64);

        for (size_t i = 0; i < n; i++) {
                static const unsigned wts[] = { 0, 1, 5 };

                for (size_t j = 0; j < 3; j++) {
                        Bytes b = {};

                        put_call(&b);
                        put_tag(&b, strings[i], wts[j]);
                        put(&b, "\x01\x00\x00\x00\x00\x00\x00\x00", 8);
                        expect_invalid_at(a, &b, "wire type does not match", strings[i]);
                }
        }
}

static void test_varint_wrong_wire_type(void **state) {
        Arena *a = *state;
        const ProtobufCMessageDescriptor *desc = &plexus__header__descriptor;
        size_t n_checked = 0;

        for (unsigned i = 0; i < desc->n_fields; i++) {
                const ProtobufCFieldDescriptor *fd = &desc->fields[i];
                Bytes b = {};

                if (fd->type == PROTOBUF_C_TYPE_STRING)
                        continue;
                /* kind = 1 as one length-delimited byte: some decoders take it as an unknown field. */
                put_call(&b);
                put_tag(&b, fd->id, 2);
                put(&b, "\x01\x01", 2);
                expect_invalid_at(a, &b, "wire type does not match", fd->id);

                b.len = 0;
                put_call(&b);
                put_tag(&b, fd->id, 5);
                put(&b, "\x01\x00\x00\x00", 4);
                expect_invalid_at(a, &b, "wire type does not match", fd->id);
                n_checked++;
        }
        assert_true(n_checked >= 11);
}

static void test_varint_range(void **state) {
        Arena *a = *state;
        Bytes b = {};

        /* flags (uint32) = 2^32: decoders would truncate it to 0. */
        put_call(&b);
        put_tag(&b, 7, 0);
        put_varint(&b, 1ull << 32);
        expect_invalid_at(a, &b, "out of range", 7);

        /* kind (an enum, int32) = 2^31 + 1, or 2^32 + 1 (CALL once truncated). */
        b.len = 0;
        put_tag(&b, 1, 0);
        put_varint(&b, (1ull << 31) + 1);
        expect_invalid_at(a, &b, "out of range", 1);
        b.len = 0;
        put_tag(&b, 1, 0);
        put_varint(&b, (1ull << 32) + 1);
        expect_invalid_at(a, &b, "out of range", 1);

        /* The largest values in range are fine. */
        b.len = 0;
        put_call(&b);
        put_tag(&b, 7, 0);
        put_varint(&b, UINT32_MAX);
        put_tag(&b, 1, 0);
        put_varint(&b, (uint64_t)(int64_t)INT32_MIN);
        expect_valid(&b);
}

/* Bad strings, each preceded and followed by valid text. */
static const struct {
        const char *bytes;
        size_t len;
        const char *reason;
} bad_strings[] = {
        { "Ping\0Secret", 11, "NUL" },
        { "\0", 1, "NUL" },
        { "Ping\0", 5, "NUL" },
        { "Ping\xff", 5, "UTF-8" },
        { "\xc0\x80", 2, "UTF-8" },                     /* overlong NUL */
        { "\xe0\x80\xaf", 3, "UTF-8" },                 /* overlong '/' */
        { "\xed\xa0\x80", 3, "UTF-8" },                 /* a surrogate */
        { "\xf4\x90\x80\x80", 4, "UTF-8" },             /* above U+10FFFF */
        { "caf\xc3", 4, "UTF-8" },                      /* cut off */
        { "\x80", 1, "UTF-8" },                         /* a lone continuation byte */
};

static void test_string_contents(void **state) {
        Arena *a = *state;
        uint32_t strings[64];
        size_t n = string_fields(strings, 64);

        for (size_t i = 0; i < n; i++) {
                for (size_t j = 0; j < sizeof(bad_strings) / sizeof(bad_strings[0]); j++) {
                        Bytes b = {};

                        /* The only occurrence. */
                        put_call(&b);
                        put_string(&b, strings[i], bad_strings[j].bytes, bad_strings[j].len);
                        expect_invalid_at(a, &b, bad_strings[j].reason, strings[i]);

                        /* An earlier occurrence, hidden by a valid last one (protobuf: last wins). */
                        b.len = 0;
                        put_call(&b);
                        put_string(&b, strings[i], bad_strings[j].bytes, bad_strings[j].len);
                        put_string(&b, strings[i], "Ping", 4);
                        expect_invalid_at(a, &b, bad_strings[j].reason, strings[i]);

                        /* The last occurrence, after a valid one. */
                        b.len = 0;
                        put_call(&b);
                        put_string(&b, strings[i], "Ping", 4);
                        put_string(&b, strings[i], bad_strings[j].bytes, bad_strings[j].len);
                        expect_invalid_at(a, &b, bad_strings[j].reason, strings[i]);
                }

                /* Valid occurrences, repeated, are fine: the last wins. */
                {
                        Plexus__Header *d = NULL;
                        Bytes b = {};

                        put_call(&b);
                        put_string(&b, strings[i], "first", 5);
                        put_string(&b, strings[i], "\xc3\xa9t\xc3\xa9", 5);
                        expect_valid(&b);
                        assert_int_equal(decode(a, b.buf, b.len, &d), 0);
                }
        }
}

/* Unknown length-delimited fields are bytes to every decoder: their content is free. */
static void test_unknown_bytes_unchecked(void **state) {
        Bytes b = {};

        put_call(&b);
        put_string(&b, 100, "Ping\0\xff", 6);
        expect_valid(&b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_valid_full_header, setup_arena, teardown_arena),
                cmocka_unit_test_setup_teardown(test_valid_edge_values, setup_arena, teardown_arena),
                cmocka_unit_test_setup_teardown(test_valid_unknown_fields, setup_arena, teardown_arena),
                cmocka_unit_test_setup_teardown(test_reencode_unknown_fields, setup_arena, teardown_arena),
                cmocka_unit_test_setup_teardown(test_reencode_random, setup_arena, teardown_arena),
                cmocka_unit_test_setup_teardown(test_tag_field_zero, setup_arena, teardown_arena),
                cmocka_unit_test_setup_teardown(test_tag_malformed, setup_arena, teardown_arena),
                cmocka_unit_test_setup_teardown(test_tag_field_too_large, setup_arena, teardown_arena),
                cmocka_unit_test_setup_teardown(test_wire_types, setup_arena, teardown_arena),
                cmocka_unit_test_setup_teardown(test_varints, setup_arena, teardown_arena),
                cmocka_unit_test_setup_teardown(test_truncated_values, setup_arena, teardown_arena),
                cmocka_unit_test(test_descriptor),
                cmocka_unit_test_setup_teardown(test_string_wrong_wire_type, setup_arena, teardown_arena),
                cmocka_unit_test_setup_teardown(test_varint_wrong_wire_type, setup_arena, teardown_arena),
                cmocka_unit_test_setup_teardown(test_varint_range, setup_arena, teardown_arena),
                cmocka_unit_test_setup_teardown(test_string_contents, setup_arena, teardown_arena),
                cmocka_unit_test(test_unknown_bytes_unchecked),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
