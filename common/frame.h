#pragma once

/*
 * Frame codec, shared by the broker and libplexus.
 *
 * One SOCK_SEQPACKET datagram carries one frame:
 *
 *     0        4                 4+H
 *     +--------+-----------------+---------------------+
 *     | H (LE) | Header (H bytes) | payload (the rest) |
 *     +--------+-----------------+---------------------+
 *
 * H is a little-endian u32 giving the length of the protobuf-encoded
 * plexus.Header. The payload is opaque and ends with the datagram.
 * frame_split() checks only the framing; frame_header_decode() decodes the
 * header into an Arena, so that no heap allocation happens per frame, and
 * frame_header_check() validates field contents against the protocol limits.
 * Headers are decoded and encoded by the hand-written codec of header-wire.c
 * (a few hundred instructions, where protobuf-c's generic unpack and pack
 * took thousands); protobuf-c still decodes the payloads of the broker's
 * own methods, through the Arena's ProtobufCAllocator.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plexus.pb-c.h"

#define PLX_PROTOCOL_VERSION 1

#define FRAME_PREFIX_SIZE 4u
#define FRAME_HEADER_MAX 4096u                  /* encoded header, bytes */
#define FRAME_SIZE_MAX (128u * 1024u)           /* whole datagram, bytes */
#define FRAME_NAME_MAX 255u                     /* destination, sender, member, error name */
#define FRAME_FDS_MAX 253u                      /* fds per frame: the kernel's SCM_MAX_FD */

/*
 * The broker re-stamps headers (sender, sequence, delivery, credentials), so
 * a forwarded frame can be longer than the one received. Clients may send
 * at most FRAME_SEND_MAX bytes with a header of at most
 * FRAME_SEND_HEADER_MAX; every frame a client receives fits FRAME_SIZE_MAX.
 */
#define FRAME_STAMP_RESERVE 256u
#define FRAME_SEND_MAX (FRAME_SIZE_MAX - FRAME_STAMP_RESERVE)
#define FRAME_SEND_HEADER_MAX (FRAME_HEADER_MAX - FRAME_STAMP_RESERVE)

/* Room for every field frame_stamp_encode() writes: sender (":" and 20 digits), timeout, five varints and the transfer id (76 bytes at most). */
#define FRAME_STAMP_MAX 128u

/* Field numbers of plexus.Header that the broker appends per receiver. */
#define FRAME_FIELD_DELIVERY 11u
#define FRAME_FIELD_TRANSFER_ID 18u

/*
 * Large frames (docs/protocol.md §17): the payload travels outside the
 * socket, in a sealed memfd passed as the frame's first fd, or read by each
 * receiver from the sender's memory with process_vm_readv().
 */
#define FRAME_MESSAGE_MAX_DEFAULT (1ull << 30)  /* largest large payload by default: 1 GiB */
#define FRAME_MEMFD_SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)
#define TOPIC_TRANSFER_DONE "plexus/transfer/done"

/*
 * How long a lent payload stays readable: the configured lease, plus one
 * second per 16 MiB, so that a big payload on a loaded machine (copies at
 * 16 MiB/s or better) is not cut off by a lease sized for small ones.
 */
static inline uint64_t frame_transfer_lease_usec(uint32_t lease_ms, uint64_t size) {
        return (uint64_t)lease_ms * 1000u + (size >> 24) * 1000000u;
}

/* Header.flags bits. */
#define FRAME_FLAG_NO_REPLY 0x1u                /* CALL: the caller expects no reply */
#define FRAME_FLAGS_KNOWN (FRAME_FLAG_NO_REPLY)

#define BROKER_NAME "plexus"

/* Outcomes of frame_split(), frame_header_decode() and frame_header_check(). */
enum {
        FRAME_E_TRUNCATED = 1,          /* shorter than the 4-byte prefix */
        FRAME_E_HEADER_LENGTH,          /* H is 0, above FRAME_HEADER_MAX, or past the end */
        FRAME_E_TOO_LARGE,              /* datagram above FRAME_SIZE_MAX */
        FRAME_E_HEADER_DECODE,          /* header bytes are not a valid plexus.Header */
        FRAME_E_UNKNOWN_KIND,           /* kind is not one of CALL..HELLO */
        FRAME_E_FIELD,                  /* a field is missing, too long or not allowed for the kind */
};

typedef struct FrameView {
        const uint8_t *header;
        size_t header_len;
        const uint8_t *payload;
        size_t payload_len;
} FrameView;

/*
 * A bump allocator for decoded headers and broker-method payloads. Its
 * memory is a fixed inline block, enough for any ordinary header, so
 * decoding does not touch the heap. A header takes its struct and its
 * strings; one of many tiny unknown fields takes far more, 24 bytes of
 * bookkeeping per field (and protobuf-c, for payloads, about 50 per field);
 * such allocations go to the heap, up to ARENA_OVERFLOW_MAX in all, so every
 * header within FRAME_HEADER_MAX still decodes. arena_reset() frees
 * everything at once.
 */
#define ARENA_SIZE (3u * FRAME_HEADER_MAX)
#define ARENA_OVERFLOW_MAX (1024u * 1024u)

typedef struct Arena {
        ProtobufCAllocator allocator;
        size_t used;
        void *overflow;                 /* heap chunks, linked through their first word */
        size_t n_overflow;              /* their total size */
        _Alignas(max_align_t) uint8_t block[ARENA_SIZE];
} Arena;

void arena_init(Arena *a);
void *arena_alloc(Arena *a, size_t size);
void arena_reset(Arena *a);

int frame_split(const void *buf, size_t len, FrameView *ret);
int frame_header_decode(const FrameView *f, Arena *arena, Plexus__Header **ret);
int frame_header_check(const Plexus__Header *h, const char **ret_reason);
const char *frame_strerror(int e);

size_t frame_header_pack(const Plexus__Header *h, uint8_t *buf, size_t size);
size_t frame_varint_field(uint8_t *buf, uint32_t field, uint64_t value);

/* Bytes of @v encoded as a protobuf varint. */
static inline size_t frame_varint_size(uint64_t v) {
        size_t n = 1;

        while (v >= 0x80) {
                v >>= 7;
                n++;
        }
        return n;
}
size_t frame_string_field(uint8_t *buf, uint32_t field, const char *s);
size_t frame_stamp_encode(const Plexus__Header *h, uint8_t buf[static FRAME_STAMP_MAX]);
void frame_prefix(uint8_t prefix[static FRAME_PREFIX_SIZE], uint32_t header_len);

const char *frame_kind_to_string(int kind);
