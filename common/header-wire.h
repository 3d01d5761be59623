#pragma once

/*
 * The wire format of plexus.Header: a hand-written validating decoder and
 * encoder, used by frame_header_decode() and frame_header_pack() in place of
 * protobuf-c's generic unpack and pack.
 *
 * The broker forwards the header bytes a client wrote (plus the fields it
 * stamps), and re-encodes them for monitors. Protobuf decoders disagree on
 * bytes outside the canonical format (protobuf-c takes a tag whose overlong
 * encoding says field 0, other decoders refuse it; proto3 decoders refuse a
 * string that is not UTF-8, protobuf-c does not care; a NUL ends a string for
 * C code but not for others). The decoder admits only headers that every
 * decoder reads alike, so that whatever the broker checked is what every
 * receiver and monitor gets; docs/protocol.md §3.3 states the rules. It
 * checks and decodes in one pass over the bytes, the way a protobuf decoder
 * reads them (last occurrence of a field wins, unknown fields skipped and
 * kept), and fills the Plexus__Header that protobuf-c would produce.
 *
 * The encoder writes what protobuf-c's plexus__header__pack() writes for
 * the same struct, byte for byte: known fields in field-number order, those
 * equal to their proto3 default left out, then the unknown fields in the
 * order they were decoded. tests/common/test-header-codec.c holds both to
 * protobuf-c on random headers and bytes.
 */

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

#define HEADER_WIRE_FIELD_MAX ((1u << 29) - 1)  /* largest protobuf field number */
#define HEADER_WIRE_TAG_MAX_BYTES 5u            /* a tag is a varint of at most 32 bits */
#define HEADER_WIRE_VARINT_MAX_BYTES 10u        /* 64 bits, 7 per byte */

int header_wire_validate(const uint8_t *buf, size_t len, const char **ret_reason, uint32_t *ret_field);
int header_wire_decode(const uint8_t *buf, size_t len, Arena *arena, Plexus__Header **ret);
size_t header_wire_pack(const Plexus__Header *h, uint8_t *buf, size_t size);

/*
 * Writes @v as a protobuf varint to @buf (at least HEADER_WIRE_VARINT_MAX_BYTES
 * bytes, or frame_varint_size(@v)); returns its length.
 */
static inline size_t header_wire_put_varint(uint8_t *buf, uint64_t v) {
        size_t n = 0;

        while (v >= 0x80) {
                buf[n++] = (uint8_t)(v | 0x80);
                v >>= 7;
        }
        buf[n++] = (uint8_t)v;
        return n;
}
