/*
 * Reference decoder for plexus.Header (see header-ref.h). Written for
 * clarity, not speed, and on purpose unlike common/header-wire.c: a bug
 * shared by both would go unseen.
 */

#include <string.h>

#include "header-ref.h"

typedef unsigned __int128 u128;

/* Up to @max bytes of varint at @p; 0 if it does not end within them or within @n. */
static size_t ref_varint(const uint8_t *p, size_t n, size_t max, u128 *ret) {
        u128 v = 0;

        for (size_t i = 0; i < n && i < max; i++) {
                v |= (u128)(p[i] & 0x7f) << (7 * i);
                if (!(p[i] & 0x80)) {
                        *ret = v;
                        return i + 1;
                }
        }
        return 0;
}

/* Whether @len bytes are the shortest encoding of @v, and @v fits 64 bits. */
static bool ref_canonical(u128 v, size_t len) {
        size_t need = 1;

        for (u128 t = v; t >= 0x80; t >>= 7)
                need++;
        return need == len && v <= UINT64_MAX;
}

/* RFC 3629 by code point: overlong forms, surrogates and values above U+10FFFF are refused. */
static bool ref_utf8(const uint8_t *s, size_t n) {
        static const uint32_t min_cp[] = { 0, 0, 0x80, 0x800, 0x10000 };

        for (size_t i = 0; i < n;) {
                size_t len;
                uint32_t cp;

                if (s[i] == 0)
                        return false;           /* not UTF-8's fault, but refused all the same */
                if (s[i] < 0x80)
                        len = 1, cp = s[i];
                else if ((s[i] & 0xe0) == 0xc0)
                        len = 2, cp = s[i] & 0x1f;
                else if ((s[i] & 0xf0) == 0xe0)
                        len = 3, cp = s[i] & 0x0f;
                else if ((s[i] & 0xf8) == 0xf0)
                        len = 4, cp = s[i] & 0x07;
                else
                        return false;
                if (len > n - i)
                        return false;
                for (size_t k = 1; k < len; k++) {
                        if ((s[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (s[i + k] & 0x3f);
                }
                if (cp < min_cp[len] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
                        return false;
                i += len;
        }
        return true;
}

/**
 * header_ref_valid() - whether @buf meets every rule of docs/protocol.md §3.3
 */
bool header_ref_valid(const uint8_t *buf, size_t len) {
        size_t i = 0;

        while (i < len) {
                const ProtobufCFieldDescriptor *fd;
                u128 tag, v;
                size_t n;
                unsigned wt;

                n = ref_varint(buf + i, len - i, 5, &tag);
                if (n == 0 || !ref_canonical(tag, n))
                        return false;
                i += n;
                if (tag >> 3 < 1 || tag >> 3 > (1u << 29) - 1)
                        return false;
                wt = (unsigned)(tag & 7);
                fd = protobuf_c_message_descriptor_get_field(&plexus__header__descriptor, (unsigned)(tag >> 3));

                switch (wt) {
                case 0:
                        if (fd && fd->type == PROTOBUF_C_TYPE_STRING)
                                return false;
                        n = ref_varint(buf + i, len - i, 10, &v);
                        if (n == 0 || !ref_canonical(v, n))
                                return false;
                        if (fd && fd->type == PROTOBUF_C_TYPE_UINT32 && v > UINT32_MAX)
                                return false;
                        if (fd && fd->type == PROTOBUF_C_TYPE_ENUM &&
                            (int64_t)(uint64_t)v != (int64_t)(int32_t)(uint32_t)v)
                                return false;
                        i += n;
                        break;
                case 1:
                case 5:
                        if (fd)
                                return false;
                        if (len - i < (wt == 1 ? 8u : 4u))
                                return false;
                        i += wt == 1 ? 8 : 4;
                        break;
                case 2:
                        if (fd && fd->type != PROTOBUF_C_TYPE_STRING)
                                return false;
                        n = ref_varint(buf + i, len - i, 10, &v);
                        if (n == 0 || !ref_canonical(v, n) || v > len - i - n)
                                return false;
                        i += n;
                        if (fd && !ref_utf8(buf + i, (size_t)v))
                                return false;
                        i += (size_t)v;
                        break;
                default:
                        return false;
                }
        }
        return true;
}

/**
 * header_ref_decode() - the header as a frame_header_decode() built on protobuf-c decodes it
 *
 * Return: the header, to be freed with plexus__header__free_unpacked(), or
 * NULL if the rules or protobuf-c refuse it.
 */
Plexus__Header *header_ref_decode(const uint8_t *buf, size_t len) {
        if (!header_ref_valid(buf, len))
                return NULL;
        return plexus__header__unpack(NULL, len, buf);
}

/**
 * header_ref_diff() - the first field in which @a and @b differ
 *
 * Every field of the descriptor, then the unknown fields.
 *
 * Return: the field's name, or NULL if they are equal.
 */
const char *header_ref_diff(const Plexus__Header *a, const Plexus__Header *b) {
        const ProtobufCMessageDescriptor *desc = &plexus__header__descriptor;

        for (unsigned i = 0; i < desc->n_fields; i++) {
                const ProtobufCFieldDescriptor *fd = &desc->fields[i];
                const void *pa = (const uint8_t *)a + fd->offset, *pb = (const uint8_t *)b + fd->offset;
                bool same;

                switch (fd->type) {
                case PROTOBUF_C_TYPE_STRING:
                        same = strcmp(*(char *const *)pa, *(char *const *)pb) == 0;
                        break;
                case PROTOBUF_C_TYPE_UINT64:
                        same = *(const uint64_t *)pa == *(const uint64_t *)pb;
                        break;
                case PROTOBUF_C_TYPE_UINT32:
                case PROTOBUF_C_TYPE_ENUM:
                        same = *(const uint32_t *)pa == *(const uint32_t *)pb;
                        break;
                default:
                        return "(a field of a type this reference does not know)";
                }
                if (!same)
                        return fd->name;
        }

        if (a->base.n_unknown_fields != b->base.n_unknown_fields)
                return "(number of unknown fields)";
        for (unsigned i = 0; i < a->base.n_unknown_fields; i++) {
                const ProtobufCMessageUnknownField *ua = &a->base.unknown_fields[i];
                const ProtobufCMessageUnknownField *ub = &b->base.unknown_fields[i];

                if (ua->tag != ub->tag || ua->wire_type != ub->wire_type || ua->len != ub->len ||
                    memcmp(ua->data, ub->data, ua->len) != 0)
                        return "(an unknown field)";
        }
        return NULL;
}
