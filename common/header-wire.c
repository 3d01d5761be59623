/*
 * The wire format of plexus.Header: decoding, validation and encoding (see
 * header-wire.h).
 *
 * walk() reads each field the way a protobuf decoder would: a tag varint
 * (field number and wire type), then the value its wire type announces. It
 * admits only the canonical protobuf encoding that every decoder reads the
 * same way:
 *
 *   - varints (tags, values, lengths) in their shortest form, at most 10
 *     bytes and at most 2^64 - 1; tags at most 5 bytes;
 *   - field numbers 1..2^29-1;
 *   - wire types 0 (varint), 1 (64-bit), 2 (length-delimited) and 5
 *     (32-bit); groups (3, 4) and the undefined 6 and 7 are refused;
 *   - every value complete within the header;
 *   - for the fields plexus.Header defines, the wire type of their type, a
 *     varint within the range of a 32-bit type, and for string fields
 *     well-formed UTF-8 without NUL bytes. Every occurrence counts, not only
 *     the last one that decoders keep: they would not all get that far.
 *
 * In the same pass it keeps the last value of each known field, as every
 * decoder does: integers straight into a Plexus__Header, strings as spans of
 * the input that header_wire_decode() copies once the whole header passed,
 * so a refused header costs no allocation and a repeated string no copy.
 *
 * The known fields are the table header_fields[], written by hand from
 * proto/plexus.proto. A field added there and not here would be taken for
 * an unknown one; tests/common/test-header-codec.c compares every header
 * with protobuf-c's generated code, which does know it, and fails.
 *
 * Unknown fields are kept as protobuf-c keeps them (ProtobufCMessageUnknownField:
 * the value's bytes, with the length prefix of a length-delimited one), so
 * that a monitor's copy, encoded anew by header_wire_pack(), carries them
 * (docs/protocol.md §3.3). With a canonical tag and value that re-encoding is
 * exactly what was received, so the copy decodes wherever the original does.
 * They are rare: the main pass only counts them, and a second pass over the
 * rest of the header collects them.
 */

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "header-wire.h"
#include "utf8.h"

enum {
        WIRE_VARINT = 0,
        WIRE_FIXED64 = 1,
        WIRE_LENGTH = 2,
        WIRE_GROUP_START = 3,
        WIRE_GROUP_END = 4,
        WIRE_FIXED32 = 5,
};

typedef enum FieldType {
        FIELD_UNKNOWN = 0,
        FIELD_ENUM,                     /* an int32 on the wire */
        FIELD_UINT32,
        FIELD_UINT64,
        FIELD_STRING,
} FieldType;

typedef struct HeaderField {
        uint8_t type;                   /* FieldType */
        uint8_t slot;                   /* FIELD_STRING: index into Walk.string[] */
        uint16_t offset;                /* of the member in Plexus__Header */
} HeaderField;

#define FIELD(number, t, member) [number] = { .type = (t), .offset = offsetof(Plexus__Header, member) }
#define STRING(number, s, member) \
        [number] = { .type = FIELD_STRING, .slot = (s), .offset = offsetof(Plexus__Header, member) }

enum { N_STRINGS = 4 };

/* plexus.Header, by field number (proto/plexus.proto). */
static const HeaderField header_fields[] = {
        FIELD(1, FIELD_ENUM, kind),
        FIELD(2, FIELD_UINT64, serial),
        FIELD(3, FIELD_UINT64, reply_serial),
        STRING(4, 0, destination),
        STRING(5, 1, sender),
        STRING(6, 2, member),
        FIELD(7, FIELD_UINT32, flags),
        STRING(8, 3, error_name),
        FIELD(9, FIELD_UINT32, timeout_ms),
        FIELD(10, FIELD_UINT64, sequence),
        FIELD(11, FIELD_UINT64, delivery),
        FIELD(12, FIELD_UINT32, sender_uid),
        FIELD(13, FIELD_UINT32, sender_pid),
        FIELD(14, FIELD_UINT32, n_fds),
        FIELD(15, FIELD_UINT32, sender_gid),
        FIELD(16, FIELD_UINT64, large_size),
        FIELD(17, FIELD_UINT64, large_addr),
        FIELD(18, FIELD_UINT64, transfer_id),
};

#undef FIELD
#undef STRING

#define N_FIELDS (sizeof(header_fields) / sizeof(header_fields[0]))

/* The string members in slot order, for header_wire_decode(). */
static const uint16_t string_offset[N_STRINGS] = {
        offsetof(Plexus__Header, destination),
        offsetof(Plexus__Header, sender),
        offsetof(Plexus__Header, member),
        offsetof(Plexus__Header, error_name),
};

static FieldType field_type(uint32_t number) {
        return number < N_FIELDS ? header_fields[number].type : FIELD_UNKNOWN;
}

/* What one pass over a header found. */
typedef struct Walk {
        Plexus__Header header;                  /* integer fields: the last value of each */
        const uint8_t *string[N_STRINGS];       /* last occurrence of each string field, NULL if none */
        size_t string_len[N_STRINGS];
        size_t n_unknown;
        size_t first_unknown;                   /* offset of the first unknown field's tag */
        const char *why;                        /* set if the header is refused */
        uint32_t field;                         /* the offending field, 0 if its tag itself is bad */
} Walk;

/*
 * Reads a varint of at most @max bytes from @p (@n bytes available) into
 * @ret_value; returns its length, or 0 with *@why set.
 */
static size_t read_varint_slow(const uint8_t *p, size_t n, size_t max, uint64_t *ret_value, const char **why) {
        uint64_t v = 0;

        for (size_t i = 0;; i++) {
                uint8_t b;

                if (i == max) {
                        *why = max == HEADER_WIRE_TAG_MAX_BYTES ? "tag longer than 5 bytes"
                                                                : "varint longer than 10 bytes";
                        return 0;
                }
                if (i == n) {
                        *why = "varint truncated at the end of the header";
                        return 0;
                }
                b = p[i];
                /* The tenth byte holds bit 63 only (a continuation is caught above, next round). */
                if (i == HEADER_WIRE_VARINT_MAX_BYTES - 1 && !(b & 0x80) && b > 1) {
                        *why = "varint above 2^64-1";
                        return 0;
                }
                v |= (uint64_t)(b & 0x7f) << (7 * i);
                if (b & 0x80)
                        continue;
                *ret_value = v;
                return i + 1;
        }
}

/*
 * read_varint_slow() without its checks on every byte: a varint that ends
 * within @max and @n bytes and fits 64 bits is read here; any other goes
 * the slow way, which says what is wrong with it.
 */
static inline size_t read_varint(const uint8_t *p, size_t n, size_t max, uint64_t *ret_value, const char **why) {
        size_t end = n < max ? n : max;
        uint64_t v;

        if (n == 0)
                return read_varint_slow(p, n, max, ret_value, why);
        /* Most tags and values of a header are one byte. */
        if (p[0] < 0x80) {
                *ret_value = p[0];
                return 1;
        }
        v = p[0] & 0x7f;
        for (size_t i = 1; i < end; i++) {
                v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
                if (p[i] < 0x80) {
                        if (i == HEADER_WIRE_VARINT_MAX_BYTES - 1 && p[i] > 1)
                                break;
                        *ret_value = v;
                        return i + 1;
                }
        }
        return read_varint_slow(p, n, max, ret_value, why);
}

/* A final 0x00 after other bytes adds nothing: the varint has a shorter form. */
static bool overlong(const uint8_t *p, size_t n) {
        return n > 1 && p[n - 1] == 0;
}

static int expected_wire_type(FieldType type) {
        return type == FIELD_STRING ? WIRE_LENGTH : WIRE_VARINT;
}

static bool varint_in_range(FieldType type, uint64_t v) {
        switch (type) {
        case FIELD_UINT32:
                return v <= UINT32_MAX;
        case FIELD_ENUM:
                /* Negative values are sign-extended to 64 bits on the wire. */
                return v <= INT32_MAX || v >= (uint64_t)INT32_MIN;
        default:
                return true;
        }
}

static const char *check_string_slow(const uint8_t *s, size_t n) {
        if (memchr(s, 0, n))
                return "string contains a NUL byte";
        if (!utf8_is_valid(s, n))
                return "string is not valid UTF-8";
        return NULL;
}

/* Names are ASCII: eight bytes at a time, none 0x00 and none above 0x7f, before the full check. */
static const char *check_string(const uint8_t *s, size_t n) {
        const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
        size_t i = 0;

        for (; n - i >= 8; i += 8) {
                uint64_t w;

                memcpy(&w, s + i, 8);
                if (((w | (w - ones)) & highs) != 0)
                        return check_string_slow(s + i, n - i);
        }
        for (; i < n; i++)
                if (s[i] == 0 || s[i] >= 0x80)
                        return check_string_slow(s + i, n - i);
        return NULL;
}

/*
 * Checks the value of a field of @wire_type and @type at @p (@n bytes left
 * in the header), and keeps it in @w if the field is known. Returns the
 * value's length on the wire, or 0 with @w->why set. A value is never 0
 * bytes long: even an empty string has its length byte.
 */
static size_t read_value(Walk *w, uint32_t number, FieldType type, int wire_type, const uint8_t *p, size_t n) {
        uint64_t v;
        size_t l;

        switch (wire_type) {
        case WIRE_VARINT:
                l = read_varint(p, n, HEADER_WIRE_VARINT_MAX_BYTES, &v, &w->why);
                if (l == 0)
                        return 0;
                if (overlong(p, l)) {
                        w->why = "varint not in its shortest form";
                        return 0;
                }
                if (!varint_in_range(type, v)) {
                        w->why = "varint out of range for the field's type";
                        return 0;
                }
                switch (type) {
                case FIELD_ENUM:
                        w->header.kind = (Plexus__Kind)(int32_t)(uint32_t)v;
                        break;
                case FIELD_UINT32:
                        *(uint32_t *)((uint8_t *)&w->header + header_fields[number].offset) = (uint32_t)v;
                        break;
                case FIELD_UINT64:
                        *(uint64_t *)((uint8_t *)&w->header + header_fields[number].offset) = v;
                        break;
                default:
                        break;
                }
                return l;
        case WIRE_FIXED64:
        case WIRE_FIXED32:
                l = wire_type == WIRE_FIXED64 ? 8 : 4;
                if (l > n) {
                        w->why = "fixed-size value truncated at the end of the header";
                        return 0;
                }
                return l;
        case WIRE_LENGTH:
                l = read_varint(p, n, HEADER_WIRE_VARINT_MAX_BYTES, &v, &w->why);
                if (l == 0)
                        return 0;
                if (overlong(p, l)) {
                        w->why = "length not in its shortest form";
                        return 0;
                }
                if (v > n - l) {
                        w->why = "length-delimited value past the end of the header";
                        return 0;
                }
                if (type == FIELD_STRING) {
                        unsigned slot = header_fields[number].slot;

                        w->why = check_string(p + l, (size_t)v);
                        if (w->why)
                                return 0;
                        w->string[slot] = p + l;
                        w->string_len[slot] = (size_t)v;
                }
                return l + (size_t)v;
        default:
                /* walk() admits no other wire type. */
                w->why = "undefined wire type";
                return 0;
        }
}

/* One pass over @len bytes at @buf; returns 0, or -EBADMSG with @w->why and @w->field set. */
static int walk(const uint8_t *buf, size_t len, Walk *w) {
        size_t i = 0;

        *w = (Walk) {
                .header = PLEXUS__HEADER__INIT,
        };

        while (i < len) {
                uint64_t tag;
                uint32_t number;
                FieldType type;
                int wire_type;
                size_t n;

                n = read_varint(buf + i, len - i, HEADER_WIRE_TAG_MAX_BYTES, &tag, &w->why);
                if (n == 0)
                        goto fail;
                if (tag >> 3 == 0) {
                        w->why = "field number 0";
                        goto fail;
                }
                if (tag >> 3 > HEADER_WIRE_FIELD_MAX) {
                        w->why = "field number above 2^29-1";
                        goto fail;
                }
                /* Checked after the field number, so that the reason for "80 80 00" says field 0. */
                if (overlong(buf + i, n)) {
                        w->why = "tag not in its shortest form";
                        goto fail;
                }
                number = (uint32_t)(tag >> 3);
                wire_type = (int)(tag & 7);

                type = field_type(number);
                /* A known field with its own wire type needs none of the checks below. */
                if (type == FIELD_UNKNOWN || wire_type != expected_wire_type(type)) {
                        if (wire_type == WIRE_GROUP_START || wire_type == WIRE_GROUP_END) {
                                w->why = "groups (wire types 3 and 4) are not allowed";
                                w->field = number;
                                goto fail;
                        }
                        if (wire_type > WIRE_FIXED32) {
                                w->why = "undefined wire type 6 or 7";
                                w->field = number;
                                goto fail;
                        }
                        if (type != FIELD_UNKNOWN) {
                                w->why = "wire type does not match the field's type";
                                w->field = number;
                                goto fail;
                        }
                        if (w->n_unknown++ == 0)
                                w->first_unknown = i;
                }
                i += n;

                n = read_value(w, number, type, wire_type, buf + i, len - i);
                if (n == 0) {
                        w->field = number;
                        goto fail;
                }
                i += n;
        }
        return 0;

fail:
        return -EBADMSG;
}

/**
 * header_wire_validate() - check the encoding of a plexus.Header, field by field
 * @buf:        the encoded header, borrowed
 * @len:        its length
 * @ret_reason: optional; a static text describing the first problem, written on failure
 * @ret_field:  optional; the field number of the offending field, 0 if its tag
 *              itself is bad, written on failure
 *
 * Checks the wire format only (see the top of this file), exactly what
 * header_wire_decode() checks; whether the fields' values make a valid
 * frame is frame_header_check()'s job.
 *
 * Return: 0 if the header is canonical protobuf that every decoder reads
 * alike, -EBADMSG if not.
 */
int header_wire_validate(const uint8_t *buf, size_t len, const char **ret_reason, uint32_t *ret_field) {
        Walk w;
        int r;

        r = walk(buf, len, &w);
        if (r < 0) {
                if (ret_reason)
                        *ret_reason = w.why;
                if (ret_field)
                        *ret_field = w.field;
        }
        return r;
}

/* Bytes of the value at @p, of @wire_type, in a header walk() admitted. */
static size_t value_len(const uint8_t *p, int wire_type) {
        size_t l = 0;
        uint64_t v = 0;

        switch (wire_type) {
        case WIRE_FIXED64:
                return 8;
        case WIRE_FIXED32:
                return 4;
        default:
                do
                        v |= (uint64_t)(p[l] & 0x7f) << (7 * l);
                while (p[l++] & 0x80);
                return wire_type == WIRE_LENGTH ? l + (size_t)v : l;
        }
}

/*
 * Fills @u with the unknown fields among the @n bytes at @p, which walk()
 * admitted; protobuf-c's layout: the field number, the wire type, and the
 * value's bytes (pointing into @p).
 */
static void collect_unknown(uint8_t *p, size_t n, ProtobufCMessageUnknownField *u) {
        for (size_t i = 0; i < n;) {
                uint32_t tag = 0;
                size_t l = 0, vl;

                do
                        tag |= (uint32_t)(p[i + l] & 0x7f) << (7 * l);
                while (p[i + l++] & 0x80);
                i += l;
                vl = value_len(p + i, (int)(tag & 7));
                if (field_type(tag >> 3) == FIELD_UNKNOWN)
                        *u++ = (ProtobufCMessageUnknownField) {
                                .tag = tag >> 3,
                                .wire_type = (ProtobufCWireType)(tag & 7),
                                .len = vl,
                                .data = p + i,
                        };
                i += vl;
        }
}

/**
 * header_wire_decode() - check and decode an encoded plexus.Header
 * @buf:        the encoded header, borrowed
 * @len:        its length
 * @arena:      where the decoded header and its strings live until arena_reset()
 * @ret:        the header, written on success
 *
 * Admits what header_wire_validate() admits, and fills a Plexus__Header as
 * plexus__header__unpack() would: the last value of every field, strings
 * NUL-terminated (unset or empty ones are the "" of PLEXUS__HEADER__INIT),
 * unknown fields in base.unknown_fields. Nothing is allocated for a header
 * that is refused. The kind is not checked: proto3 enums are open.
 *
 * Return: 0 on success, -EBADMSG if the header is not admitted, -ENOMEM if
 * the arena is out of room.
 */
int header_wire_decode(const uint8_t *buf, size_t len, Arena *arena, Plexus__Header **ret) {
        size_t size = sizeof(Plexus__Header);
        Plexus__Header *h;
        uint8_t *s;
        Walk w;
        int r;

        r = walk(buf, len, &w);
        if (r < 0)
                return r;

        for (size_t i = 0; i < N_STRINGS; i++)
                if (w.string_len[i] > 0)
                        size += w.string_len[i] + 1;
        h = arena_alloc(arena, size);
        if (!h)
                return -ENOMEM;
        *h = w.header;

        s = (uint8_t *)(h + 1);
        for (size_t i = 0; i < N_STRINGS; i++) {
                if (w.string_len[i] == 0)
                        continue;
                memcpy(s, w.string[i], w.string_len[i]);
                s[w.string_len[i]] = 0;
                *(char **)((uint8_t *)h + string_offset[i]) = (char *)s;
                s += w.string_len[i] + 1;
        }

        if (w.n_unknown > 0) {
                size_t n = len - w.first_unknown;
                ProtobufCMessageUnknownField *u;
                uint8_t *copy;

                u = arena_alloc(arena, w.n_unknown * sizeof(*u) + n);
                if (!u)
                        return -ENOMEM;
                copy = (uint8_t *)(u + w.n_unknown);
                memcpy(copy, buf + w.first_unknown, n);
                collect_unknown(copy, n, u);
                h->base.n_unknown_fields = (unsigned)w.n_unknown;
                h->base.unknown_fields = u;
        }

        *ret = h;
        return 0;
}

/*
 * The encoder writes through a cursor that becomes NULL once something did
 * not fit; every step after that is a no-op, so the fields read as a list.
 */

/* Appends tag @tag, then the @n bytes at @data, after their length if @prefix. */
static uint8_t *put_bytes(uint8_t *p, const uint8_t *end, uint64_t tag, bool prefix, const void *data, size_t n) {
        size_t need = frame_varint_size(tag) + n + (prefix ? frame_varint_size(n) : 0);

        if (!p || need > (size_t)(end - p))
                return NULL;
        p += header_wire_put_varint(p, tag);
        if (prefix)
                p += header_wire_put_varint(p, n);
        memcpy(p, data, n);
        return p + n;
}

/* Appends varint field @number = @v, unless @v is 0 (proto3 leaves defaults out). */
static inline uint8_t *put_varint_field(uint8_t *p, const uint8_t *end, uint32_t number, uint64_t v) {
        uint64_t tag = (uint64_t)number << 3 | WIRE_VARINT;

        if (!p || v == 0)
                return p;
        /* Exact room is computed only near the end of the buffer. */
        if ((size_t)(end - p) < HEADER_WIRE_TAG_MAX_BYTES + HEADER_WIRE_VARINT_MAX_BYTES &&
            (size_t)(end - p) < frame_varint_size(tag) + frame_varint_size(v))
                return NULL;
        p += header_wire_put_varint(p, tag);
        return p + header_wire_put_varint(p, v);
}

/* Appends string field @number = @s, unless it is empty; NULL counts as empty. */
static inline uint8_t *put_string_field(uint8_t *p, const uint8_t *end, uint32_t number, const char *s) {
        if (!p || !s || !s[0])
                return p;
        return put_bytes(p, end, (uint64_t)number << 3 | WIRE_LENGTH, true, s, strlen(s));
}

/**
 * header_wire_pack() - encode @h as protobuf-c would
 * @h:          the header; NULL strings count as empty
 * @buf:        destination
 * @size:       its capacity
 *
 * Writes the fields in field-number order, leaving out those equal to their
 * default (0, ""), then @h's unknown fields as decoded: the bytes
 * plexus__header__pack() writes for @h.
 *
 * Return: the encoded length, or 0 if it would not fit in @size.
 */
size_t header_wire_pack(const Plexus__Header *h, uint8_t *buf, size_t size) {
        const uint8_t *end = buf + size;
        uint8_t *p = buf;

        /* An int32: a negative kind is sign-extended to ten bytes. */
        p = put_varint_field(p, end, 1, (uint64_t)(int64_t)(int32_t)h->kind);
        p = put_varint_field(p, end, 2, h->serial);
        p = put_varint_field(p, end, 3, h->reply_serial);
        p = put_string_field(p, end, 4, h->destination);
        p = put_string_field(p, end, 5, h->sender);
        p = put_string_field(p, end, 6, h->member);
        p = put_varint_field(p, end, 7, h->flags);
        p = put_string_field(p, end, 8, h->error_name);
        p = put_varint_field(p, end, 9, h->timeout_ms);
        p = put_varint_field(p, end, 10, h->sequence);
        p = put_varint_field(p, end, 11, h->delivery);
        p = put_varint_field(p, end, 12, h->sender_uid);
        p = put_varint_field(p, end, 13, h->sender_pid);
        p = put_varint_field(p, end, 14, h->n_fds);
        p = put_varint_field(p, end, 15, h->sender_gid);
        p = put_varint_field(p, end, 16, h->large_size);
        p = put_varint_field(p, end, 17, h->large_addr);
        p = put_varint_field(p, end, 18, h->transfer_id);

        for (unsigned i = 0; i < h->base.n_unknown_fields; i++) {
                const ProtobufCMessageUnknownField *u = &h->base.unknown_fields[i];

                p = put_bytes(p, end, (uint64_t)u->tag << 3 | u->wire_type, false, u->data, u->len);
        }

        return p ? (size_t)(p - buf) : 0;
}
