/*
 * The header codec (common/header-wire.c) in a loop, to count its
 * instructions: run under
 *
 *     valgrind --tool=callgrind ./build/bench/bench-header 100000
 *
 * and divide the inclusive cost of frame_header_decode() and
 * frame_header_pack() by their calls. Each round decodes a CALL as the
 * broker receives it from a client and the same CALL as the callee's
 * libplexus receives it (the client's bytes, the broker's stamp and
 * delivery), packs a REPLY as the broker makes one, and checks the CALL
 * with header_wire_validate() as libplexus does before it sends one. No
 * timing: callgrind counts, and the figures do not depend on the machine's
 * load.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "header-wire.h"

/* Keeps the compiler from dropping the work. */
static volatile size_t sink;

int main(int argc, char **argv) {
        static uint8_t received[FRAME_HEADER_MAX], forwarded[FRAME_HEADER_MAX], packed[FRAME_HEADER_MAX];
        Plexus__Header call = PLEXUS__HEADER__INIT, reply = PLEXUS__HEADER__INIT;
        size_t received_len, forwarded_len;
        long n = argc > 1 ? atol(argv[1]) : 100000;
        static Arena arena;

        call.kind = PLEXUS__KIND__KIND_CALL;
        call.serial = 4711;
        call.destination = (char *)"org.example.Echo";
        call.member = (char *)"Echo.Ping";
        call.timeout_ms = 25000;
        received_len = frame_header_pack(&call, received, sizeof(received));

        call.sender = (char *)":1234";
        call.sequence = 987654;
        call.sender_uid = 1000;
        call.sender_pid = 43210;
        call.sender_gid = 1000;
        memcpy(forwarded, received, received_len);
        forwarded_len = received_len;
        forwarded_len += frame_stamp_encode(&call, forwarded + forwarded_len);
        forwarded_len += frame_varint_field(forwarded + forwarded_len, FRAME_FIELD_DELIVERY, 77);

        reply.kind = PLEXUS__KIND__KIND_REPLY;
        reply.serial = 1;
        reply.reply_serial = 4711;
        reply.destination = (char *)":1234";
        reply.sender = (char *)"plexus";
        reply.sequence = 987655;
        reply.delivery = 78;

        arena_init(&arena);
        for (long i = 0; i < n; i++) {
                FrameView f = { .header = received, .header_len = received_len };
                Plexus__Header *h;

                arena_reset(&arena);
                if (frame_header_decode(&f, &arena, &h) != 0)
                        abort();
                sink += h->serial;
                f = (FrameView) { .header = forwarded, .header_len = forwarded_len };
                if (frame_header_decode(&f, &arena, &h) != 0)
                        abort();
                sink += h->delivery;
                sink += frame_header_pack(&reply, packed, sizeof(packed));
                if (header_wire_validate(received, received_len, NULL, NULL) < 0)
                        abort();
        }
        arena_reset(&arena);
        printf("%ld rounds: headers of %zu (received) and %zu (forwarded) bytes decoded, %zu packed\n", n,
               received_len, forwarded_len, frame_header_pack(&reply, packed, sizeof(packed)));
        return 0;
}
