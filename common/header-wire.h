#pragma once

/*
 * Wire-level validation of an encoded plexus.Header, before protobuf-c sees
 * it.
 *
 * The broker forwards the header bytes a client wrote (plus the fields it
 * stamps), and re-encodes them for monitors. Protobuf decoders disagree on
 * bytes outside the canonical format (protobuf-c takes a tag whose overlong
 * encoding says field 0, other decoders refuse it; proto3 decoders refuse a
 * string that is not UTF-8, protobuf-c does not care; a NUL ends a string for
 * C code but not for others), and protobuf-c's own tag parser has undefined
 * behaviour on some of them. header_wire_validate() admits only headers that
 * every decoder reads alike, so that whatever the broker checked is what
 * every receiver and monitor gets. docs/protocol.md §3.3 states the rules.
 */

#include <stddef.h>
#include <stdint.h>

#define HEADER_WIRE_FIELD_MAX ((1u << 29) - 1)  /* largest protobuf field number */
#define HEADER_WIRE_TAG_MAX_BYTES 5u            /* a tag is a varint of at most 32 bits */
#define HEADER_WIRE_VARINT_MAX_BYTES 10u        /* 64 bits, 7 per byte */

int header_wire_validate(const uint8_t *buf, size_t len, const char **ret_reason, uint32_t *ret_field);
