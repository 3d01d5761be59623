/*
 * Wire-level validation of an encoded plexus.Header (see header-wire.h).
 *
 * The walker reads each field the way a protobuf decoder would: a tag
 * varint (field number and wire type), then the value its wire type
 * announces. It admits only the canonical protobuf encoding that every
 * decoder reads the same way:
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
 * The known fields come from protobuf-c's generated descriptor, so a field
 * added to proto/plexus.proto is covered without a change here. Unknown
 * fields are kept by protobuf-c and re-encoded for monitors as tag plus the
 * bytes received; with a canonical tag and value that re-encoding is exactly
 * what was received, so a monitor's copy decodes wherever the original does.
 *
 * frame_header_decode() runs this before plexus__header__unpack(), which is
 * what keeps protobuf-c's tag parser safe: it shifts the fifth tag byte left
 * by 25 bits as an int, undefined behaviour when that byte is 0x40 or more,
 * and it accepts a multi-byte tag for field 0. A fifth tag byte above 0x0f
 * means a field number above 2^29-1, and an overlong tag is not the shortest
 * form, so neither reaches protobuf-c.
 */

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "header-wire.h"
#include "plexus.pb-c.h"
#include "utf8.h"

enum {
        WIRE_VARINT = 0,
        WIRE_FIXED64 = 1,
        WIRE_LENGTH = 2,
        WIRE_GROUP_START = 3,
        WIRE_GROUP_END = 4,
        WIRE_FIXED32 = 5,
};

/*
 * Reads a varint of at most @max bytes from @p (@n bytes available) into
 * @ret_value; returns its length, or 0 with *@why set.
 */
static size_t read_varint(const uint8_t *p, size_t n, size_t max, uint64_t *ret_value, const char **why) {
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

/* A final 0x00 after other bytes adds nothing: the varint has a shorter form. */
static bool overlong(const uint8_t *p, size_t n) {
        return n > 1 && p[n - 1] == 0;
}

static int expected_wire_type(ProtobufCType type) {
        switch (type) {
        case PROTOBUF_C_TYPE_SFIXED32:
        case PROTOBUF_C_TYPE_FIXED32:
        case PROTOBUF_C_TYPE_FLOAT:
                return WIRE_FIXED32;
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_FIXED64:
        case PROTOBUF_C_TYPE_DOUBLE:
                return WIRE_FIXED64;
        case PROTOBUF_C_TYPE_STRING:
        case PROTOBUF_C_TYPE_BYTES:
        case PROTOBUF_C_TYPE_MESSAGE:
                return WIRE_LENGTH;
        default:
                return WIRE_VARINT;
        }
}

/* Whether a varint @v is in range for a field of @type; decoders would truncate it otherwise. */
static bool varint_in_range(ProtobufCType type, uint64_t v) {
        switch (type) {
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_SINT32:
                return v <= UINT32_MAX;
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_ENUM:
                /* Negative values are sign-extended to 64 bits on the wire. */
                return v <= INT32_MAX || v >= (uint64_t)INT32_MIN;
        case PROTOBUF_C_TYPE_BOOL:
                return v <= 1;
        default:
                return true;
        }
}

static const char *check_string(const uint8_t *s, size_t n) {
        if (memchr(s, 0, n))
                return "string contains a NUL byte";
        if (!utf8_is_valid(s, n))
                return "string is not valid UTF-8";
        return NULL;
}

/*
 * Checks the value of a field of @wire_type at @p (@n bytes left in the
 * header); @fd is the field's descriptor, NULL for an unknown field.
 * Returns the value's length on the wire, or 0 with *@why set. A value is
 * never 0 bytes long: even an empty string has its length byte.
 */
static size_t check_value(const ProtobufCFieldDescriptor *fd, int wire_type, const uint8_t *p, size_t n,
                          const char **why) {
        uint64_t v;
        size_t l;

        switch (wire_type) {
        case WIRE_VARINT:
                l = read_varint(p, n, HEADER_WIRE_VARINT_MAX_BYTES, &v, why);
                if (l == 0)
                        return 0;
                if (overlong(p, l)) {
                        *why = "varint not in its shortest form";
                        return 0;
                }
                if (fd && !varint_in_range(fd->type, v)) {
                        *why = "varint out of range for the field's type";
                        return 0;
                }
                return l;
        case WIRE_FIXED64:
        case WIRE_FIXED32:
                l = wire_type == WIRE_FIXED64 ? 8 : 4;
                if (l > n) {
                        *why = "fixed-size value truncated at the end of the header";
                        return 0;
                }
                return l;
        case WIRE_LENGTH:
                l = read_varint(p, n, HEADER_WIRE_VARINT_MAX_BYTES, &v, why);
                if (l == 0)
                        return 0;
                if (overlong(p, l)) {
                        *why = "length not in its shortest form";
                        return 0;
                }
                if (v > n - l) {
                        *why = "length-delimited value past the end of the header";
                        return 0;
                }
                if (fd && fd->type == PROTOBUF_C_TYPE_STRING) {
                        *why = check_string(p + l, (size_t)v);
                        if (*why)
                                return 0;
                }
                return l + (size_t)v;
        default:
                /* The caller admits no other wire type. */
                *why = "undefined wire type";
                return 0;
        }
}

/**
 * header_wire_validate() - check the encoding of a plexus.Header, field by field
 * @buf:        the encoded header, borrowed
 * @len:        its length
 * @ret_reason: optional; a static text describing the first problem, written on failure
 * @ret_field:  optional; the field number of the offending field, 0 if its tag
 *              itself is bad, written on failure
 *
 * Checks the wire format only (see the top of this file); whether the
 * fields' values make a valid frame is frame_header_check()'s job.
 *
 * Return: 0 if the header is canonical protobuf that every decoder reads
 * alike, -EBADMSG if not.
 */
int header_wire_validate(const uint8_t *buf, size_t len, const char **ret_reason, uint32_t *ret_field) {
        const ProtobufCMessageDescriptor *desc = &plexus__header__descriptor;
        const char *why = NULL;
        uint32_t number = 0;
        size_t i = 0;

        while (i < len) {
                const ProtobufCFieldDescriptor *fd;
                uint64_t tag;
                int wire_type;
                size_t n;

                number = 0;
                n = read_varint(buf + i, len - i, HEADER_WIRE_TAG_MAX_BYTES, &tag, &why);
                if (n == 0)
                        break;
                i += n;
                if (tag >> 3 == 0) {
                        why = "field number 0";
                        break;
                }
                if (tag >> 3 > HEADER_WIRE_FIELD_MAX) {
                        why = "field number above 2^29-1";
                        break;
                }
                /* Checked after the field number, so that the reason for "80 80 00" says field 0. */
                if (overlong(buf + i - n, n)) {
                        why = "tag not in its shortest form";
                        break;
                }
                number = (uint32_t)(tag >> 3);
                wire_type = (int)(tag & 7);

                if (wire_type == WIRE_GROUP_START || wire_type == WIRE_GROUP_END) {
                        why = "groups (wire types 3 and 4) are not allowed";
                        break;
                }
                if (wire_type > WIRE_FIXED32) {
                        why = "undefined wire type 6 or 7";
                        break;
                }

                fd = protobuf_c_message_descriptor_get_field(desc, (unsigned)number);
                if (fd && wire_type != expected_wire_type(fd->type)) {
                        why = "wire type does not match the field's type";
                        break;
                }

                n = check_value(fd, wire_type, buf + i, len - i, &why);
                if (n == 0)
                        break;
                i += n;
        }

        if (why) {
                if (ret_reason)
                        *ret_reason = why;
                if (ret_field)
                        *ret_field = number;
                return -EBADMSG;
        }
        return 0;
}
