/*
 * Fuzz target: the frame codec on arbitrary datagrams, as the broker sees
 * them (common/frame.c: frame_split(), frame_header_decode(),
 * frame_header_check()).
 *
 * First, differentially: the hand-written codec (common/header-wire.c) must
 * admit exactly the headers the reference admits (tests/common/header-ref.c:
 * the rules of docs/protocol.md §3.3 checked independently, then protobuf-c),
 * decode them to the same fields, and encode those to the bytes protobuf-c
 * writes.
 *
 * Then, for every header the broker would accept, it checks the two ways a header
 * leaves the broker again:
 *  - encoded anew (frame_header_pack(), as for monitor copies): it must
 *    decode to the same fields;
 *  - forwarded (the sender's bytes, then frame_stamp_encode() and the
 *    delivery field, as router.c and peer.c send it): it must decode, with
 *    the stamped fields equal to what the broker stamped whatever the client
 *    wrote, and the client's own fields unchanged.
 */

#include <inttypes.h>
#include <string.h>

#include "frame.h"
#include "fuzz.h"
#include "header-ref.h"
#include "header-wire.h"

static Arena arena_in, arena_out;

static bool str_eq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}

/* The fields a client controls and the broker leaves alone. */
static void check_client_fields(const Plexus__Header *a, const Plexus__Header *b) {
        fuzz_check(a->kind == b->kind);
        fuzz_check(a->serial == b->serial);
        fuzz_check(a->reply_serial == b->reply_serial);
        fuzz_check(str_eq(a->destination, b->destination));
        fuzz_check(str_eq(a->member, b->member));
        fuzz_check(a->flags == b->flags);
        fuzz_check(str_eq(a->error_name, b->error_name));
}

static void check_repack(const Plexus__Header *h) {
        static uint8_t buf[2 * FRAME_HEADER_MAX];
        Plexus__Header *again;
        FrameView v;
        size_t n;

        n = frame_header_pack(h, buf, sizeof(buf));
        fuzz_check(n > 0);
        v = (FrameView) { .header = buf, .header_len = n };
        arena_reset(&arena_out);
        fuzz_check(frame_header_decode(&v, &arena_out, &again) == 0);
        check_client_fields(h, again);
        fuzz_check(str_eq(h->sender, again->sender));
        fuzz_check(h->timeout_ms == again->timeout_ms);
        fuzz_check(h->sequence == again->sequence);
        fuzz_check(h->delivery == again->delivery);
        fuzz_check(h->sender_uid == again->sender_uid);
        fuzz_check(h->sender_pid == again->sender_pid);
        fuzz_check(h->n_fds == again->n_fds);
        fuzz_check(h->sender_gid == again->sender_gid);
        fuzz_check(frame_header_check(again, NULL) == 0);
}

typedef struct Stamp {
        const char *sender;
        uint64_t sequence;
        uint64_t delivery;
        uint32_t uid, pid, gid, n_fds, timeout_ms;
} Stamp;

static void check_forward(const FrameView *f, const Plexus__Header *h, const Stamp *s) {
        static uint8_t buf[FRAME_SIZE_MAX];
        Plexus__Header stamped = *h, *got;
        size_t header_len, len;
        FrameView v;

        /* As router.c stamp() and route_call() do. */
        stamped.sender = (char *)s->sender;
        stamped.sequence = s->sequence;
        stamped.sender_uid = s->uid;
        stamped.sender_pid = s->pid;
        stamped.sender_gid = s->gid;
        stamped.n_fds = s->n_fds;
        stamped.timeout_ms = s->timeout_ms;
        /* router.c large_lend() sets it for lent frames; 0 on the memfd path. */
        stamped.transfer_id = h->large_addr ? s->sequence ^ 0x5a5a : 0;

        /* As peer_sendmsg() lays the frame out. */
        len = FRAME_PREFIX_SIZE;
        memcpy(buf + len, f->header, f->header_len);
        len += f->header_len;
        len += frame_stamp_encode(&stamped, buf + len);
        len += frame_varint_field(buf + len, FRAME_FIELD_DELIVERY, s->delivery);
        header_len = len - FRAME_PREFIX_SIZE;
        frame_prefix(buf, (uint32_t)header_len);
        fuzz_check(len + f->payload_len <= sizeof(buf));
        memcpy(buf + len, f->payload, f->payload_len);
        len += f->payload_len;

        /* What the broker forwards must fit what every client accepts. */
        fuzz_check(frame_split(buf, len, &v) == 0);
        fuzz_check(v.header_len == header_len);
        fuzz_check(v.payload_len == f->payload_len);
        arena_reset(&arena_out);
        fuzz_check(frame_header_decode(&v, &arena_out, &got) == 0);

        check_client_fields(h, got);
        fuzz_check(str_eq(got->sender, s->sender));
        fuzz_check(got->sequence == s->sequence);
        fuzz_check(got->delivery == s->delivery);
        fuzz_check(got->sender_uid == s->uid);
        fuzz_check(got->sender_pid == s->pid);
        fuzz_check(got->sender_gid == s->gid);
        fuzz_check(got->n_fds == s->n_fds);
        if (h->kind == PLEXUS__KIND__KIND_CALL)
                fuzz_check(got->timeout_ms == s->timeout_ms);
        else
                fuzz_check(got->timeout_ms == h->timeout_ms);
        /* A large frame's transfer_id is the broker's, whatever the client wrote. */
        if (h->large_size)
                fuzz_check(got->transfer_id == stamped.transfer_id);
        else
                fuzz_check(got->transfer_id == h->transfer_id);
        fuzz_check(got->large_size == h->large_size && got->large_addr == h->large_addr);
}

static void check_reference(const FrameView *f) {
        static uint8_t want[2 * FRAME_HEADER_MAX], got[2 * FRAME_HEADER_MAX];
        Plexus__Header *ref = header_ref_decode(f->header, f->header_len), *h = NULL;
        size_t n;
        int r;

        arena_reset(&arena_out);
        r = header_wire_decode(f->header, f->header_len, &arena_out, &h);
        fuzz_check((r == 0) == (ref != NULL));
        fuzz_check((header_wire_validate(f->header, f->header_len, NULL, NULL) == 0) == (ref != NULL));
        if (!ref)
                return;
        fuzz_check(header_ref_diff(ref, h) == NULL);

        n = plexus__header__get_packed_size(ref);
        fuzz_check(n <= sizeof(want));
        plexus__header__pack(ref, want);
        fuzz_check(frame_header_pack(h, got, sizeof(got)) == n);
        fuzz_check(memcmp(got, want, n) == 0);
        plexus__header__free_unpacked(ref, NULL);
}

static uint64_t hash(const uint8_t *data, size_t size) {
        uint64_t x = 0xcbf29ce484222325u;

        for (size_t i = 0; i < size; i++)
                x = (x ^ data[i]) * 0x100000001b3u;
        return x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static bool initialized;
        Plexus__Header *h;
        char sender[24];
        uint64_t x;
        FrameView f;

        if (!initialized) {
                arena_init(&arena_in);
                arena_init(&arena_out);
                initialized = true;
        }
        arena_reset(&arena_in);

        /* The broker's own order of checks, router_handle_frame(). */
        if (size > FRAME_SEND_MAX)
                return 0;
        if (frame_split(data, size, &f) != 0)
                return 0;
        fuzz_check(f.header_len + f.payload_len + FRAME_PREFIX_SIZE == size);
        check_reference(&f);
        if (f.header_len > FRAME_SEND_HEADER_MAX)
                return 0;
        if (frame_header_decode(&f, &arena_in, &h) != 0)
                return 0;
        fuzz_check(h->kind >= PLEXUS__KIND__KIND_CALL && h->kind <= PLEXUS__KIND__KIND_HELLO);
        if (frame_header_check(h, NULL) != 0)
                return 0;

        check_repack(h);

        /* Stamps at both ends of every range, and one that varies with the input. */
        check_forward(&f, h, &(Stamp) { .sender = ":1" });
        check_forward(&f, h, &(Stamp) {
                .sender = ":18446744073709551615",
                .sequence = UINT64_MAX,
                .delivery = UINT64_MAX,
                .uid = UINT32_MAX, .pid = UINT32_MAX, .gid = UINT32_MAX,
                .n_fds = FRAME_FDS_MAX, .timeout_ms = UINT32_MAX,
        });
        x = hash(data, size);
        snprintf(sender, sizeof(sender), ":%" PRIu64, (x >> 1) | 1);
        check_forward(&f, h, &(Stamp) {
                .sender = sender,
                .sequence = x,
                .delivery = x >> 7,
                .uid = (uint32_t)(x >> 13), .pid = (uint32_t)(x >> 21), .gid = (uint32_t)(x >> 29),
                .n_fds = (uint32_t)(x % (FRAME_FDS_MAX + 1)), .timeout_ms = (uint32_t)(x >> 32),
        });
        return 0;
}
