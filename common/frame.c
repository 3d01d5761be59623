/*
 * Frame codec: splitting a datagram into header and payload, decoding the
 * header without heap allocation, and the checks every peer applies to a
 * decoded header. The byte layout is described in frame.h and
 * docs/protocol.md.
 */

#include <assert.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "header-wire.h"

typedef struct ArenaChunk {
        struct ArenaChunk *next;
        _Alignas(max_align_t) uint8_t data[];
} ArenaChunk;

/**
 * arena_alloc() - allocate @size bytes from @a
 * @a:          the arena
 * @size:       how many bytes
 *
 * Return: memory aligned for any type, valid until arena_reset(), or NULL
 * once the arena's heap overflow would exceed ARENA_OVERFLOW_MAX.
 */
void *arena_alloc(Arena *a, size_t size) {
        size_t start = (a->used + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
        ArenaChunk *c;

        if (start <= sizeof(a->block) && size <= sizeof(a->block) - start) {
                a->used = start + size;
                return a->block + start;
        }

        /* Pathological headers only; bounded, and all freed at arena_reset(). */
        if (size > ARENA_OVERFLOW_MAX - a->n_overflow)
                return NULL;
        c = malloc(sizeof(*c) + size);
        if (!c)
                return NULL;
        c->next = a->overflow;
        a->overflow = c;
        a->n_overflow += size;
        return c->data;
}

static void *arena_allocator_alloc(void *data, size_t size) {
        return arena_alloc(data, size);
}

static void arena_allocator_free(void *data, void *ptr) {
        /* Memory goes back at arena_reset(). */
        (void)data;
        (void)ptr;
}

/**
 * arena_init() - prepare an embedded arena
 * @a:          the arena
 */
void arena_init(Arena *a) {
        a->allocator = (ProtobufCAllocator) {
                .alloc = arena_allocator_alloc,
                .free = arena_allocator_free,
                .allocator_data = a,
        };
        a->used = 0;
        a->overflow = NULL;
        a->n_overflow = 0;
}

/**
 * arena_reset() - release everything allocated from @a
 * @a:          the arena
 *
 * Headers decoded into @a must not be used afterwards. Also the arena's
 * destructor: an arena that is reset holds no heap memory.
 */
void arena_reset(Arena *a) {
        while (a->overflow) {
                ArenaChunk *c = a->overflow;

                a->overflow = c->next;
                free(c);
        }
        a->n_overflow = 0;
        a->used = 0;
}

/**
 * frame_split() - split a received datagram into header and payload
 * @buf:        the datagram, borrowed
 * @len:        its length
 * @ret:        the view, pointing into @buf, written on success
 *
 * Return: 0 on success, or a positive FRAME_E_* code.
 */
int frame_split(const void *buf, size_t len, FrameView *ret) {
        const uint8_t *p = buf;
        uint32_t h;

        if (len > FRAME_SIZE_MAX)
                return FRAME_E_TOO_LARGE;
        if (len < FRAME_PREFIX_SIZE)
                return FRAME_E_TRUNCATED;

        h = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        if (h == 0 || h > FRAME_HEADER_MAX || h > len - FRAME_PREFIX_SIZE)
                return FRAME_E_HEADER_LENGTH;

        *ret = (FrameView) {
                .header = p + FRAME_PREFIX_SIZE,
                .header_len = h,
                .payload = p + FRAME_PREFIX_SIZE + h,
                .payload_len = len - FRAME_PREFIX_SIZE - h,
        };
        return 0;
}

/**
 * frame_header_decode() - decode the header of a split frame
 * @f:          the frame
 * @arena:      where the decoded header lives until arena_reset()
 * @ret:        the decoded header, written on success
 *
 * Decodes with the hand-written codec of header-wire.c, in one pass that
 * also checks the wire format: only headers that every protobuf decoder
 * reads alike are admitted (header_wire_validate() says why one is not).
 *
 * Return: 0 on success, FRAME_E_HEADER_DECODE or FRAME_E_UNKNOWN_KIND.
 */
int frame_header_decode(const FrameView *f, Arena *arena, Plexus__Header **ret) {
        Plexus__Header *h;

        if (header_wire_decode(f->header, f->header_len, arena, &h) < 0)
                return FRAME_E_HEADER_DECODE;

        /* proto3 enums are open: unknown values decode fine and must be refused here. */
        if (h->kind < PLEXUS__KIND__KIND_CALL || h->kind > PLEXUS__KIND__KIND_HELLO)
                return FRAME_E_UNKNOWN_KIND;

        *ret = h;
        return 0;
}

static bool name_ok(const char *s, bool required) {
        size_t n = strlen(s);

        return n <= FRAME_NAME_MAX && (n > 0 || !required);
}

/**
 * frame_header_check() - check the fields a sender controls
 * @h:          a decoded header
 * @ret_reason: a static text naming the offending field, written on failure
 *
 * Fields that the broker stamps (sender, sequence, delivery, sender_uid,
 * sender_pid) are not checked: they are overwritten.
 *
 * Return: 0 if the header is acceptable from a client, FRAME_E_FIELD if not.
 */
int frame_header_check(const Plexus__Header *h, const char **ret_reason) {
        const char *why = NULL;

        if (h->serial == 0)
                why = "serial must not be 0";
        else if (h->flags & ~FRAME_FLAGS_KNOWN)
                why = "unknown flags";
        else if (!name_ok(h->destination, false) || !name_ok(h->member, false) ||
                 !name_ok(h->error_name, false))
                why = "name field longer than 255 bytes";
        else if (h->large_addr && !h->large_size)
                why = "large_addr without large_size";
        else if (h->large_size && h->kind != PLEXUS__KIND__KIND_CALL && h->kind != PLEXUS__KIND__KIND_REPLY &&
                 h->kind != PLEXUS__KIND__KIND_SIGNAL)
                why = "only CALL, REPLY and SIGNAL frames may be large";
        else {
                switch (h->kind) {
                case PLEXUS__KIND__KIND_CALL:
                        if (!name_ok(h->destination, true))
                                why = "CALL needs a destination";
                        else if (!name_ok(h->member, true))
                                why = "CALL needs a member";
                        break;
                case PLEXUS__KIND__KIND_REPLY:
                case PLEXUS__KIND__KIND_ERROR:
                        if (h->reply_serial == 0)
                                why = "REPLY/ERROR needs reply_serial";
                        else if (!name_ok(h->destination, true))
                                why = "REPLY/ERROR needs a destination";
                        else if (h->kind == PLEXUS__KIND__KIND_ERROR && !name_ok(h->error_name, true))
                                why = "ERROR needs error_name";
                        break;
                case PLEXUS__KIND__KIND_SIGNAL:
                        if (!name_ok(h->member, true))
                                why = "SIGNAL needs a topic in member";
                        else if (h->destination[0])
                                why = "SIGNAL must not have a destination";
                        break;
                case PLEXUS__KIND__KIND_HELLO:
                        break;
                default:
                        why = "unknown kind";
                        break;
                }
        }

        if (why) {
                if (ret_reason)
                        *ret_reason = why;
                return FRAME_E_FIELD;
        }
        return 0;
}

/**
 * frame_strerror() - describe a FRAME_E_* code
 * @e:          the code
 *
 * Return: a static string.
 */
const char *frame_strerror(int e) {
        switch (e) {
        case FRAME_E_TRUNCATED:
                return "frame shorter than its 4-byte length prefix";
        case FRAME_E_HEADER_LENGTH:
                return "header length is 0, above the limit, or past the end of the frame";
        case FRAME_E_TOO_LARGE:
                return "frame larger than the maximum frame size";
        case FRAME_E_HEADER_DECODE:
                return "header is not a valid plexus.Header";
        case FRAME_E_UNKNOWN_KIND:
                return "unknown frame kind";
        case FRAME_E_FIELD:
                return "invalid header field";
        default:
                return "unknown frame error";
        }
}

/**
 * frame_header_pack() - encode @h into @buf
 * @h:          the header
 * @buf:        destination
 * @size:       its capacity
 *
 * The bytes are those protobuf-c's plexus__header__pack() writes, written by
 * header_wire_pack(): fields in number order, defaults left out, unknown
 * fields last.
 *
 * Return: the encoded length, or 0 if it would not fit in @size.
 */
size_t frame_header_pack(const Plexus__Header *h, uint8_t *buf, size_t size) {
        return header_wire_pack(h, buf, size);
}

/**
 * frame_varint_field() - encode one varint field (tag and value)
 * @buf:        at least 16 bytes
 * @field:      field number
 * @value:      the value
 *
 * Protobuf decoders accept fields in any order, and for a field that occurs
 * twice the last occurrence wins. The broker relies on both: it stamps a
 * forwarded header by appending its own fields to the sender's bytes (so
 * whatever the sender wrote there is overridden), and the per-receiver
 * delivery counter after that, without encoding the header again.
 *
 * Return: bytes written.
 */
size_t frame_varint_field(uint8_t *buf, uint32_t field, uint64_t value) {
        size_t n = header_wire_put_varint(buf, (uint64_t)field << 3);  /* wire type 0: varint */

        return n + header_wire_put_varint(buf + n, value);
}

/**
 * frame_string_field() - encode one string field (tag, length, bytes)
 * @buf:        at least 16 + strlen(@s) bytes
 * @field:      field number
 * @s:          the string
 *
 * Return: bytes written.
 */
size_t frame_string_field(uint8_t *buf, uint32_t field, const char *s) {
        size_t len = strlen(s);
        size_t n = header_wire_put_varint(buf, (uint64_t)field << 3 | 2);      /* wire type 2: length-delimited */

        n += header_wire_put_varint(buf + n, len);
        memcpy(buf + n, s, len);
        return n + len;
}

/**
 * frame_stamp_encode() - encode the fields only the broker may set
 * @h:          a header stamped by the broker (sender at most 21 bytes)
 * @buf:        destination
 *
 * The result is appended to the sender's own header bytes when the broker
 * forwards a frame. Protobuf takes the last occurrence of a field, so these
 * override whatever the sender wrote; every field is written even when it
 * is 0 (uid 0 is root), which proto3 would otherwise leave out. Kept
 * with the codec, not in the router, so that tests/fuzz checks exactly the
 * bytes the broker appends.
 *
 * Return: bytes written, at most FRAME_STAMP_MAX.
 */
size_t frame_stamp_encode(const Plexus__Header *h, uint8_t buf[static FRAME_STAMP_MAX]) {
        size_t n = 0;

        assert(strlen(h->sender) <= 21);
        n += frame_string_field(buf + n, 5, h->sender);
        if (h->kind == PLEXUS__KIND__KIND_CALL)
                n += frame_varint_field(buf + n, 9, h->timeout_ms);
        n += frame_varint_field(buf + n, 10, h->sequence);
        n += frame_varint_field(buf + n, 12, h->sender_uid);
        n += frame_varint_field(buf + n, 13, h->sender_pid);
        n += frame_varint_field(buf + n, 14, h->n_fds);
        n += frame_varint_field(buf + n, 15, h->sender_gid);
        /* Large frames: 0 on the memfd path, so no client-written id survives. */
        if (h->large_size)
                n += frame_varint_field(buf + n, FRAME_FIELD_TRANSFER_ID, h->transfer_id);
        assert(n <= FRAME_STAMP_MAX);
        return n;
}

/**
 * frame_prefix() - write the 4-byte little-endian header length
 * @prefix:     destination
 * @header_len: the length
 */
void frame_prefix(uint8_t prefix[static FRAME_PREFIX_SIZE], uint32_t header_len) {
        prefix[0] = (uint8_t)header_len;
        prefix[1] = (uint8_t)(header_len >> 8);
        prefix[2] = (uint8_t)(header_len >> 16);
        prefix[3] = (uint8_t)(header_len >> 24);
}

/**
 * frame_kind_to_string() - name of a frame kind
 * @kind:       a Plexus__Kind value
 *
 * Return: a static string; "INVALID" for unknown values.
 */
const char *frame_kind_to_string(int kind) {
        switch (kind) {
        case PLEXUS__KIND__KIND_CALL:
                return "CALL";
        case PLEXUS__KIND__KIND_REPLY:
                return "REPLY";
        case PLEXUS__KIND__KIND_ERROR:
                return "ERROR";
        case PLEXUS__KIND__KIND_SIGNAL:
                return "SIGNAL";
        case PLEXUS__KIND__KIND_HELLO:
                return "HELLO";
        default:
                return "INVALID";
        }
}
