/*
 * Unit tests for the frame codec (common/frame.c).
 *
 * Covers frame_split() on every framing error and on valid frames with and
 * without payload, frame_header_decode() on garbage, unknown kinds, full
 * round trips through frame_header_pack() and headers that strain the Arena
 * (many tiny unknown or repeated fields: they decode or fail cleanly, never
 * touch memory outside the arena), each rule of frame_header_check(), the
 * delivery field that the broker appends with frame_varint_field() (up to
 * 2^64 - 1), the little-endian prefix, and the string tables.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"

/* Enough for a maximal header, a prefix and a small payload. */
#define TEST_BUF_SIZE (FRAME_PREFIX_SIZE + FRAME_HEADER_MAX + 256u)

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

static Plexus__Header header_call(void) {
        Plexus__Header h = PLEXUS__HEADER__INIT;

        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = 7;
        h.destination = (char *)":1.42";
        h.member = (char *)"org.example.Echo";
        return h;
}

/* Packs @h and @payload into @buf as one datagram; returns its length. */
static size_t build_frame(const Plexus__Header *h, const void *payload, size_t payload_len,
                          uint8_t *buf, size_t size) {
        size_t n;

        assert_true(size >= FRAME_PREFIX_SIZE);
        n = frame_header_pack(h, buf + FRAME_PREFIX_SIZE, size - FRAME_PREFIX_SIZE);
        assert_true(n > 0);
        assert_true(FRAME_PREFIX_SIZE + n + payload_len <= size);
        frame_prefix(buf, (uint32_t)n);
        if (payload_len)
                memcpy(buf + FRAME_PREFIX_SIZE + n, payload, payload_len);
        return FRAME_PREFIX_SIZE + n + payload_len;
}

static int decode_bytes(Arena *a, const uint8_t *header, size_t len, Plexus__Header **ret) {
        FrameView f = {
                .header = header,
                .header_len = len,
        };

        return frame_header_decode(&f, a, ret);
}

static bool in_arena(const Arena *a, const void *p) {
        const uint8_t *b = p;

        return b >= a->block && b < a->block + sizeof(a->block);
}

/* A view that frame_split() must leave alone when it fails. */
static const FrameView sentinel_view = {
        .header = (const uint8_t *)"sentinel",
        .header_len = 0xdead,
        .payload = (const uint8_t *)"sentinel",
        .payload_len = 0xbeef,
};

static void assert_view_untouched(const FrameView *f) {
        assert_memory_equal(f, &sentinel_view, sizeof(*f));
}

static void test_split_truncated(void **state) {
        static const uint8_t buf[4] = { 1, 0, 0, 0 };

        for (size_t len = 0; len < FRAME_PREFIX_SIZE; len++) {
                FrameView f = sentinel_view;

                assert_int_equal(frame_split(buf, len, &f), FRAME_E_TRUNCATED);
                assert_view_untouched(&f);
        }
}

static void test_split_header_length_zero(void **state) {
        static const uint8_t buf[] = { 0, 0, 0, 0, 0x08, 0x01 };
        FrameView f = sentinel_view;

        assert_int_equal(frame_split(buf, sizeof(buf), &f), FRAME_E_HEADER_LENGTH);
        assert_view_untouched(&f);
        /* The bare prefix alone, H = 0, is refused the same way. */
        assert_int_equal(frame_split(buf, FRAME_PREFIX_SIZE, &f), FRAME_E_HEADER_LENGTH);
        assert_view_untouched(&f);
}

static void test_split_header_past_end(void **state) {
        uint8_t buf[FRAME_PREFIX_SIZE + 10] = {};
        FrameView f = sentinel_view;

        frame_prefix(buf, 10);
        /* One byte short of the announced header. */
        assert_int_equal(frame_split(buf, sizeof(buf) - 1, &f), FRAME_E_HEADER_LENGTH);
        assert_view_untouched(&f);
        assert_int_equal(frame_split(buf, FRAME_PREFIX_SIZE, &f), FRAME_E_HEADER_LENGTH);

        /* Exactly the announced header and no payload. */
        assert_int_equal(frame_split(buf, sizeof(buf), &f), 0);
        assert_ptr_equal(f.header, buf + FRAME_PREFIX_SIZE);
        assert_int_equal(f.header_len, 10);
        assert_int_equal(f.payload_len, 0);
        assert_ptr_equal(f.payload, buf + sizeof(buf));

        /* A huge H must not wrap around in the bounds check. */
        frame_prefix(buf, UINT32_MAX);
        assert_int_equal(frame_split(buf, sizeof(buf), &f), FRAME_E_HEADER_LENGTH);
}

static void test_split_header_too_long(void **state) {
        size_t len = FRAME_PREFIX_SIZE + FRAME_HEADER_MAX + 1 + 16;
        uint8_t *buf = calloc(1, len);
        FrameView f = sentinel_view;

        assert_non_null(buf);

        frame_prefix(buf, FRAME_HEADER_MAX + 1);
        assert_int_equal(frame_split(buf, len, &f), FRAME_E_HEADER_LENGTH);
        assert_view_untouched(&f);

        /* The limit itself is fine. */
        frame_prefix(buf, FRAME_HEADER_MAX);
        assert_int_equal(frame_split(buf, len, &f), 0);
        assert_int_equal(f.header_len, FRAME_HEADER_MAX);
        assert_int_equal(f.payload_len, 1 + 16);

        free(buf);
}

static void test_split_too_large(void **state) {
        uint8_t *buf = calloc(1, FRAME_SIZE_MAX + 1);
        FrameView f = sentinel_view;

        assert_non_null(buf);
        frame_prefix(buf, 16);

        assert_int_equal(frame_split(buf, FRAME_SIZE_MAX + 1, &f), FRAME_E_TOO_LARGE);
        assert_view_untouched(&f);

        /* Exactly FRAME_SIZE_MAX is allowed. */
        assert_int_equal(frame_split(buf, FRAME_SIZE_MAX, &f), 0);
        assert_int_equal(f.header_len, 16);
        assert_int_equal(f.payload_len, FRAME_SIZE_MAX - FRAME_PREFIX_SIZE - 16);

        free(buf);
}

static void test_split_valid(void **state) {
        static const char payload[] = "hello, payload";
        Plexus__Header h = header_call();
        uint8_t buf[TEST_BUF_SIZE];
        size_t hlen = plexus__header__get_packed_size(&h);
        size_t len;
        FrameView f;

        /* With payload. */
        len = build_frame(&h, payload, sizeof(payload), buf, sizeof(buf));
        assert_int_equal(len, FRAME_PREFIX_SIZE + hlen + sizeof(payload));
        assert_int_equal(frame_split(buf, len, &f), 0);
        assert_ptr_equal(f.header, buf + FRAME_PREFIX_SIZE);
        assert_int_equal(f.header_len, hlen);
        assert_ptr_equal(f.payload, buf + FRAME_PREFIX_SIZE + hlen);
        assert_int_equal(f.payload_len, sizeof(payload));
        assert_memory_equal(f.payload, payload, sizeof(payload));

        /* Without payload. */
        len = build_frame(&h, NULL, 0, buf, sizeof(buf));
        assert_int_equal(frame_split(buf, len, &f), 0);
        assert_int_equal(f.header_len, hlen);
        assert_int_equal(f.payload_len, 0);
        assert_ptr_equal(f.payload, buf + len);
}

static void test_split_prefix_byte_order(void **state) {
        uint8_t buf[FRAME_PREFIX_SIZE + 300] = {};
        FrameView f;

        /* 0x0101 little-endian; read big-endian it would be far too large. */
        buf[0] = 0x01;
        buf[1] = 0x01;
        assert_int_equal(frame_split(buf, sizeof(buf), &f), 0);
        assert_int_equal(f.header_len, 0x0101);
        assert_int_equal(f.payload_len, 300 - 0x0101);
}

static void test_decode_garbage(void **state) {
        static const struct {
                const char *what;
                uint8_t bytes[8];
                size_t len;
        } cases[] = {
                { "wire type 7",                 { 0x0f, 0x01 }, 2 },
                { "wire type 6",                 { 0x0e, 0x01 }, 2 },
                { "unterminated varint",         { 0x08, 0x80 }, 2 },
                { "unterminated tag",            { 0x80 }, 1 },
                { "string longer than the rest", { 0x22, 0x10, 'a' }, 3 },
                { "kind as a string",            { 0x0a, 0x01, 0x01 }, 3 },
                { "field number 0",              { 0x00, 0x01 }, 2 },
                { "fixed64 cut short",           { 0x79, 0x01, 0x02 }, 3 },
        };
        Arena *a = *state;

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                Plexus__Header *h = (Plexus__Header *)0x1;
                int r;

                arena_reset(a);
                r = decode_bytes(a, cases[i].bytes, cases[i].len, &h);
                if (r != FRAME_E_HEADER_DECODE)
                        fail_msg("%s: got %d, want FRAME_E_HEADER_DECODE", cases[i].what, r);
                /* ret_* is written only on success. */
                assert_ptr_equal(h, (Plexus__Header *)0x1);
        }
}

static void test_decode_unknown_kind(void **state) {
        /* Negative values travel as 10-byte varints and decode as negative ints. */
        static const int bad[] = { 0, 6, 9, 127, 1000, -1, INT32_MIN };
        Arena *a = *state;
        uint8_t buf[256];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                Plexus__Header h = header_call();
                Plexus__Header *d = NULL;
                size_t n;

                h.kind = (Plexus__Kind)bad[i];
                n = frame_header_pack(&h, buf, sizeof(buf));
                assert_true(n > 0);
                arena_reset(a);
                if (decode_bytes(a, buf, n, &d) != FRAME_E_UNKNOWN_KIND)
                        fail_msg("kind %d not refused as unknown", bad[i]);
                assert_null(d);
        }

        /* The boundaries CALL and HELLO are known. */
        for (int k = PLEXUS__KIND__KIND_CALL; k <= PLEXUS__KIND__KIND_HELLO; k++) {
                Plexus__Header h = header_call();
                Plexus__Header *d = NULL;
                size_t n;

                h.kind = (Plexus__Kind)k;
                n = frame_header_pack(&h, buf, sizeof(buf));
                arena_reset(a);
                assert_int_equal(decode_bytes(a, buf, n, &d), 0);
                assert_int_equal(d->kind, k);
        }
}

static void test_decode_round_trip(void **state) {
        static const char payload[] = { 0, 1, 2, 3 };
        Plexus__Header h = PLEXUS__HEADER__INIT;
        Plexus__Header *d = NULL;
        uint8_t buf[TEST_BUF_SIZE];
        Arena *a = *state;
        size_t len;
        FrameView f;

        h.kind = PLEXUS__KIND__KIND_ERROR;
        h.serial = UINT64_MAX;
        h.reply_serial = 1ull << 40;
        h.destination = (char *)":1.7";
        h.sender = (char *)":1.9";
        h.member = (char *)"Method";
        h.flags = FRAME_FLAG_NO_REPLY;
        h.error_name = (char *)"org.example.Error.Failed";
        h.timeout_ms = 25000;
        h.sequence = 123456789012345ull;
        h.delivery = 99;
        h.sender_uid = 1000;
        h.sender_pid = UINT32_MAX;

        len = build_frame(&h, payload, sizeof(payload), buf, sizeof(buf));
        assert_int_equal(frame_split(buf, len, &f), 0);
        arena_reset(a);
        assert_int_equal(frame_header_decode(&f, a, &d), 0);
        assert_non_null(d);

        assert_int_equal(d->kind, PLEXUS__KIND__KIND_ERROR);
        assert_true(d->serial == UINT64_MAX);
        assert_true(d->reply_serial == 1ull << 40);
        assert_string_equal(d->destination, ":1.7");
        assert_string_equal(d->sender, ":1.9");
        assert_string_equal(d->member, "Method");
        assert_int_equal(d->flags, FRAME_FLAG_NO_REPLY);
        assert_string_equal(d->error_name, "org.example.Error.Failed");
        assert_int_equal(d->timeout_ms, 25000);
        assert_true(d->sequence == 123456789012345ull);
        assert_true(d->delivery == 99);
        assert_int_equal(d->sender_uid, 1000);
        assert_int_equal(d->sender_pid, UINT32_MAX);
        assert_int_equal(frame_header_check(d, NULL), 0);

        /* Everything decoded lives in the arena, not on the heap. */
        assert_true(a->used > 0 && a->used <= ARENA_SIZE);
        assert_true(in_arena(a, d));
        assert_true(in_arena(a, d->destination));
        assert_true(in_arena(a, d->sender));
        assert_true(in_arena(a, d->member));
        assert_true(in_arena(a, d->error_name));

        arena_reset(a);
        assert_int_equal(a->used, 0);
}

static void test_decode_pack_too_small(void **state) {
        Plexus__Header h = header_call();
        size_t need = plexus__header__get_packed_size(&h);
        uint8_t buf[256];

        assert_true(need < sizeof(buf));
        assert_int_equal(frame_header_pack(&h, buf, need - 1), 0);
        assert_int_equal(frame_header_pack(&h, buf, need), need);
}

static void test_decode_largest_strings(void **state) {
        /* One long string filling most of a maximal header is copied into the arena. */
        Plexus__Header h = header_call();
        Plexus__Header *d = NULL;
        uint8_t buf[FRAME_HEADER_MAX];
        char big[FRAME_HEADER_MAX];
        Arena *a = *state;
        size_t n;

        memset(big, 'x', sizeof(big));
        big[FRAME_HEADER_MAX - 64] = 0;
        h.sender = big;
        n = frame_header_pack(&h, buf, sizeof(buf));
        assert_true(n > FRAME_HEADER_MAX - 64 && n <= FRAME_HEADER_MAX);
        arena_reset(a);
        assert_int_equal(decode_bytes(a, buf, n, &d), 0);
        assert_int_equal(strlen(d->sender), FRAME_HEADER_MAX - 64);
        assert_true(in_arena(a, d->sender));
}

/*
 * Appends @count copies of the @unit_len bytes @unit after a valid
 * CALL/serial 1 header start; returns the length.
 */
static size_t fill_header(uint8_t *buf, const uint8_t *unit, size_t unit_len, size_t count) {
        size_t n = 0;

        buf[n++] = 0x08;        /* kind = CALL */
        buf[n++] = 0x01;
        buf[n++] = 0x10;        /* serial = 1 */
        buf[n++] = 0x01;
        for (size_t i = 0; i < count; i++) {
                memcpy(buf + n, unit, unit_len);
                n += unit_len;
        }
        return n;
}

static void check_strained_decode(Arena *a, const uint8_t *unit, size_t unit_len,
                                  bool unknown, uint64_t want_serial) {
        uint8_t buf[FRAME_HEADER_MAX];
        size_t max = (FRAME_HEADER_MAX - 4) / unit_len;
        size_t n_ok = 0, n_failed = 0;

        for (size_t count = 0; count <= max; count++) {
                Plexus__Header *d = NULL;
                size_t len = fill_header(buf, unit, unit_len, count);
                int r;

                assert_true(len <= FRAME_HEADER_MAX);
                arena_reset(a);
                r = decode_bytes(a, buf, len, &d);
                assert_true(a->used <= ARENA_SIZE);
                if (r == FRAME_E_HEADER_DECODE) {
                        assert_null(d);
                        n_failed++;
                        continue;
                }
                if (r != 0)
                        fail_msg("%zu fields: unexpected result %d", count, r);
                assert_true(in_arena(a, d));
                assert_int_equal(d->kind, PLEXUS__KIND__KIND_CALL);
                if (unknown) {
                        assert_true(d->serial == 1);
                        assert_int_equal(d->base.n_unknown_fields, count);
                } else {
                        assert_true(d->serial == (count ? want_serial : 1));
                }
                n_ok++;
        }
        /* A handful of extra fields must always be fine. */
        assert_true(n_ok > 8);
        assert_int_equal(n_ok + n_failed, max + 1);
}

static void test_decode_tiny_unknown_fields(void **state) {
        /* Field 1000: far from any field plexus.Header will ever define. */
        static const uint8_t varint_unknown[] = { 0xc0, 0x3e, 0x00 };  /* field 1000, varint 0 */
        static const uint8_t bytes_unknown[] = { 0xc2, 0x3e, 0x00 };   /* field 1000, 0 bytes */
        static const uint8_t wide_unknown[] = { 0xa0, 0x06, 0x01 };    /* field 100, varint 1 */

        check_strained_decode(*state, varint_unknown, sizeof(varint_unknown), true, 0);
        check_strained_decode(*state, bytes_unknown, sizeof(bytes_unknown), true, 0);
        check_strained_decode(*state, wide_unknown, sizeof(wide_unknown), true, 0);
}

static void test_decode_repeated_known_fields(void **state) {
        /* Protobuf lets a scalar field appear again; the last one wins. */
        static const uint8_t serial_again[] = { 0x10, 0x05 };           /* serial = 5 */
        static const uint8_t empty_member[] = { 0x32, 0x00 };           /* member = "" */

        check_strained_decode(*state, serial_again, sizeof(serial_again), false, 5);
        check_strained_decode(*state, empty_member, sizeof(empty_member), false, 1);
}

/*
 * frame.h promises an arena "large enough for any header within
 * FRAME_HEADER_MAX", and docs/protocol.md §3.3 says a repeated scalar field
 * takes its last value and unknown fields MUST be skipped (they only count
 * towards the size limits). So every well-formed header up to
 * FRAME_HEADER_MAX must decode, whatever mix of fields it holds. Reports the
 * smallest header that does not.
 */
static void check_arena_guarantee(Arena *a, const uint8_t *unit, size_t unit_len, const char *what) {
        uint8_t buf[FRAME_HEADER_MAX];
        size_t max = (FRAME_HEADER_MAX - 4) / unit_len;

        for (size_t count = 0; count <= max; count++) {
                Plexus__Header *d = NULL;
                size_t len = fill_header(buf, unit, unit_len, count);
                int r;

                arena_reset(a);
                r = decode_bytes(a, buf, len, &d);
                if (r != 0)
                        fail_msg("a well-formed %zu-byte header (kind, serial and %zu %s) "
                                 "does not decode: %s; ARENA_SIZE %u is too small",
                                 len, count, what, frame_strerror(r), ARENA_SIZE);
        }
}

static void test_decode_arena_fits_max_header(void **state) {
        static const uint8_t varint_unknown[] = { 0xc0, 0x3e, 0x00 };  /* field 1000, varint 0 */
        static const uint8_t serial_again[] = { 0x10, 0x05 };           /* serial = 5 */

        check_arena_guarantee(*state, varint_unknown, sizeof(varint_unknown),
                              "unknown 2-byte varint fields");
        check_arena_guarantee(*state, serial_again, sizeof(serial_again),
                              "repeated serial fields");
}

static void test_decode_random_bytes(void **state) {
        Arena *a = *state;
        uint64_t x = 0x9e3779b97f4a7c15ull;
        uint8_t buf[96];

        for (int i = 0; i < 20000; i++) {
                Plexus__Header *d = NULL;
                size_t len;
                int r;

                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                len = 1 + x % sizeof(buf);
                for (size_t j = 0; j < len; j++) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        buf[j] = (uint8_t)x;
                }

                arena_reset(a);
                r = decode_bytes(a, buf, len, &d);
                if (r == 0) {
                        assert_true(d->kind >= PLEXUS__KIND__KIND_CALL &&
                                    d->kind <= PLEXUS__KIND__KIND_HELLO);
                        assert_true(in_arena(a, d));
                        /* Whatever decoded must be checkable without crashing. */
                        r = frame_header_check(d, NULL);
                        assert_true(r == 0 || r == FRAME_E_FIELD);
                } else if (r != FRAME_E_HEADER_DECODE && r != FRAME_E_UNKNOWN_KIND) {
                        fail_msg("random header %d: unexpected result %d", i, r);
                }
        }
}

static void expect_header_check(const Plexus__Header *h, const char *keyword) {
        const char *reason = "untouched";
        int r;

        r = frame_header_check(h, &reason);
        if (!keyword) {
                if (r != 0)
                        fail_msg("refused a valid %s header: %s",
                                 frame_kind_to_string(h->kind), reason);
                assert_string_equal(reason, "untouched");
                return;
        }
        if (r != FRAME_E_FIELD)
                fail_msg("accepted an invalid %s header (expected a complaint about %s)",
                         frame_kind_to_string(h->kind), keyword);
        assert_non_null(reason);
        if (!strstr(reason, keyword))
                fail_msg("reason \"%s\" does not mention \"%s\"", reason, keyword);
        /* NULL ret_reason is allowed. */
        assert_int_equal(frame_header_check(h, NULL), FRAME_E_FIELD);
}

static void test_check_serial(void **state) {
        Plexus__Header h = header_call();

        expect_header_check(&h, NULL);
        h.serial = 0;
        expect_header_check(&h, "serial");

        h = (Plexus__Header) PLEXUS__HEADER__INIT;
        h.kind = PLEXUS__KIND__KIND_HELLO;
        expect_header_check(&h, "serial");
}

static void test_check_flags(void **state) {
        Plexus__Header h = header_call();

        h.flags = FRAME_FLAG_NO_REPLY;
        expect_header_check(&h, NULL);
        h.flags = 0x2;
        expect_header_check(&h, "flags");
        h.flags = FRAME_FLAG_NO_REPLY | 0x80000000u;
        expect_header_check(&h, "flags");
}

static void test_check_name_length(void **state) {
        char n255[FRAME_NAME_MAX + 1], n256[FRAME_NAME_MAX + 2];
        Plexus__Header h;

        memset(n255, 'a', FRAME_NAME_MAX);
        n255[FRAME_NAME_MAX] = 0;
        memset(n256, 'a', FRAME_NAME_MAX + 1);
        n256[FRAME_NAME_MAX + 1] = 0;

        h = header_call();
        h.destination = n255;
        h.member = n255;
        h.error_name = n255;
        expect_header_check(&h, NULL);

        h = header_call();
        h.destination = n256;
        expect_header_check(&h, "255");

        h = header_call();
        h.member = n256;
        expect_header_check(&h, "255");

        /* error_name is limited even on kinds that do not use it. */
        h = header_call();
        h.error_name = n256;
        expect_header_check(&h, "255");

        /* sender is stamped by the broker, so its length is not the client's fault. */
        h = header_call();
        h.sender = n256;
        expect_header_check(&h, NULL);
}

static void test_check_call(void **state) {
        Plexus__Header h;

        h = header_call();
        h.destination = (char *)"";
        expect_header_check(&h, "destination");

        h = header_call();
        h.member = (char *)"";
        expect_header_check(&h, "member");

        h = header_call();
        h.destination = (char *)BROKER_NAME;
        h.member = (char *)"Ping";
        h.timeout_ms = 1;
        expect_header_check(&h, NULL);
}

static void test_check_reply_error(void **state) {
        static const Plexus__Kind kinds[] = { PLEXUS__KIND__KIND_REPLY, PLEXUS__KIND__KIND_ERROR };

        for (size_t i = 0; i < 2; i++) {
                Plexus__Header h = PLEXUS__HEADER__INIT;
                bool error = kinds[i] == PLEXUS__KIND__KIND_ERROR;

                h.kind = kinds[i];
                h.serial = 3;
                h.reply_serial = 2;
                h.destination = (char *)":1.1";
                if (error)
                        h.error_name = (char *)"org.example.Error";
                expect_header_check(&h, NULL);

                h.reply_serial = 0;
                expect_header_check(&h, "reply_serial");
                h.reply_serial = 2;

                h.destination = (char *)"";
                expect_header_check(&h, "destination");
                h.destination = (char *)":1.1";

                if (error) {
                        h.error_name = (char *)"";
                        expect_header_check(&h, "error_name");
                } else {
                        /* A REPLY needs no error_name. */
                        expect_header_check(&h, NULL);
                }
        }
}

static void test_check_signal(void **state) {
        Plexus__Header h = PLEXUS__HEADER__INIT;

        h.kind = PLEXUS__KIND__KIND_SIGNAL;
        h.serial = 1;
        h.member = (char *)"sensors/kitchen/temperature";
        expect_header_check(&h, NULL);

        h.destination = (char *)":1.5";
        expect_header_check(&h, "destination");

        h.destination = (char *)"";
        h.member = (char *)"";
        expect_header_check(&h, "topic");
}

static void test_check_hello_and_unknown(void **state) {
        Plexus__Header h = PLEXUS__HEADER__INIT;

        h.kind = PLEXUS__KIND__KIND_HELLO;
        h.serial = 1;
        expect_header_check(&h, NULL);

        h.kind = (Plexus__Kind)9;
        expect_header_check(&h, "kind");
        h.kind = PLEXUS__KIND__KIND_INVALID;
        expect_header_check(&h, "kind");
}

static void check_delivery(Arena *a, Plexus__Header *h, uint64_t value) {
        uint8_t buf[TEST_BUF_SIZE];
        size_t len, hlen, n;
        Plexus__Header *d = NULL;
        FrameView f;

        len = build_frame(h, NULL, 0, buf, sizeof(buf));
        hlen = len - FRAME_PREFIX_SIZE;

        /* Stamp the way the broker does: append the field, fix the prefix. */
        n = frame_varint_field(buf + len, FRAME_FIELD_DELIVERY, value);
        assert_true(n >= 2 && n <= 11);
        frame_prefix(buf, (uint32_t)(hlen + n));
        len += n;

        assert_int_equal(frame_split(buf, len, &f), 0);
        assert_int_equal(f.header_len, hlen + n);
        arena_reset(a);
        assert_int_equal(frame_header_decode(&f, a, &d), 0);
        if (d->delivery != value)
                fail_msg("delivery %llu decoded as %llu", (unsigned long long)value,
                         (unsigned long long)d->delivery);
        /* The rest of the header is unchanged. */
        assert_int_equal(d->kind, h->kind);
        assert_true(d->serial == h->serial);
        assert_string_equal(d->destination, h->destination);
        assert_string_equal(d->member, h->member);
        assert_int_equal(d->base.n_unknown_fields, 0);
}

static void test_varint_delivery(void **state) {
        static const uint64_t values[] = {
                0, 1, 127, 128, 300, 16383, 16384, UINT32_MAX, 1ull << 32,
                (1ull << 56) - 1, 1ull << 56, (1ull << 63) - 1, 1ull << 63,
                (1ull << 63) + 1, UINT64_MAX - 1, UINT64_MAX,
        };
        Arena *a = *state;

        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
                Plexus__Header h = header_call();

                check_delivery(a, &h, values[i]);
                /* Appended after a delivery the header already had: the last wins. */
                h.delivery = 5;
                check_delivery(a, &h, values[i]);
        }
}

static void test_varint_encoding(void **state) {
        uint8_t buf[16];

        /* Tag 11 << 3 | 0 = 0x58, then 300 = 0xac 0x02. */
        assert_int_equal(frame_varint_field(buf, FRAME_FIELD_DELIVERY, 300), 3);
        assert_memory_equal(buf, ((const uint8_t[]) { 0x58, 0xac, 0x02 }), 3);

        assert_int_equal(frame_varint_field(buf, FRAME_FIELD_DELIVERY, 0), 2);
        assert_memory_equal(buf, ((const uint8_t[]) { 0x58, 0x00 }), 2);

        /* 2^64 - 1 takes ten bytes, the last being 0x01. */
        assert_int_equal(frame_varint_field(buf, FRAME_FIELD_DELIVERY, UINT64_MAX), 11);
        assert_int_equal(buf[0], 0x58);
        for (size_t i = 1; i < 10; i++)
                assert_int_equal(buf[i], 0xff);
        assert_int_equal(buf[10], 0x01);

        /* 2^63 is nine 0x80 continuation bytes then 0x01. */
        assert_int_equal(frame_varint_field(buf, FRAME_FIELD_DELIVERY, 1ull << 63), 11);
        for (size_t i = 1; i < 10; i++)
                assert_int_equal(buf[i], 0x80);
        assert_int_equal(buf[10], 0x01);

        /* Field numbers from 16 up take a two-byte tag: 100 << 3 = 800. */
        assert_int_equal(frame_varint_field(buf, 100, 1), 3);
        assert_memory_equal(buf, ((const uint8_t[]) { 0xa0, 0x06, 0x01 }), 3);

        /* The largest field number, 2^29 - 1, fits the documented 16 bytes. */
        assert_int_equal(frame_varint_field(buf, (1u << 29) - 1, UINT64_MAX), 15);
}

static void test_prefix(void **state) {
        uint8_t p[FRAME_PREFIX_SIZE];

        frame_prefix(p, 0x12345678u);
        assert_memory_equal(p, ((const uint8_t[]) { 0x78, 0x56, 0x34, 0x12 }), 4);
        frame_prefix(p, 0);
        assert_memory_equal(p, ((const uint8_t[]) { 0, 0, 0, 0 }), 4);
        frame_prefix(p, FRAME_HEADER_MAX);
        assert_memory_equal(p, ((const uint8_t[]) { 0x00, 0x10, 0x00, 0x00 }), 4);
        frame_prefix(p, UINT32_MAX);
        assert_memory_equal(p, ((const uint8_t[]) { 0xff, 0xff, 0xff, 0xff }), 4);
}

static void test_kind_to_string(void **state) {
        assert_string_equal(frame_kind_to_string(PLEXUS__KIND__KIND_CALL), "CALL");
        assert_string_equal(frame_kind_to_string(PLEXUS__KIND__KIND_REPLY), "REPLY");
        assert_string_equal(frame_kind_to_string(PLEXUS__KIND__KIND_ERROR), "ERROR");
        assert_string_equal(frame_kind_to_string(PLEXUS__KIND__KIND_SIGNAL), "SIGNAL");
        assert_string_equal(frame_kind_to_string(PLEXUS__KIND__KIND_HELLO), "HELLO");
        assert_string_equal(frame_kind_to_string(PLEXUS__KIND__KIND_INVALID), "INVALID");
        assert_string_equal(frame_kind_to_string(6), "INVALID");
        assert_string_equal(frame_kind_to_string(-1), "INVALID");
}

static void test_strerror(void **state) {
        static const int codes[] = {
                FRAME_E_TRUNCATED, FRAME_E_HEADER_LENGTH, FRAME_E_TOO_LARGE,
                FRAME_E_HEADER_DECODE, FRAME_E_UNKNOWN_KIND, FRAME_E_FIELD,
        };
        const size_t n = sizeof(codes) / sizeof(codes[0]);
        const char *unknown = frame_strerror(0);

        assert_non_null(unknown);
        assert_string_equal(frame_strerror(-1), unknown);
        assert_string_equal(frame_strerror(FRAME_E_FIELD + 1), unknown);

        for (size_t i = 0; i < n; i++) {
                const char *s = frame_strerror(codes[i]);

                assert_non_null(s);
                assert_true(strlen(s) > 0);
                if (strcmp(s, unknown) == 0)
                        fail_msg("FRAME_E_* code %d has no description", codes[i]);
                for (size_t j = 0; j < i; j++)
                        if (strcmp(s, frame_strerror(codes[j])) == 0)
                                fail_msg("codes %d and %d share \"%s\"", codes[i], codes[j], s);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_split_truncated),
                cmocka_unit_test(test_split_header_length_zero),
                cmocka_unit_test(test_split_header_past_end),
                cmocka_unit_test(test_split_header_too_long),
                cmocka_unit_test(test_split_too_large),
                cmocka_unit_test(test_split_valid),
                cmocka_unit_test(test_split_prefix_byte_order),
                cmocka_unit_test_setup_teardown(test_decode_garbage, setup_arena, teardown_arena),
                cmocka_unit_test_setup_teardown(test_decode_unknown_kind, setup_arena, teardown_arena),
                cmocka_unit_test_setup_teardown(test_decode_round_trip, setup_arena, teardown_arena),
                cmocka_unit_test(test_decode_pack_too_small),
                cmocka_unit_test_setup_teardown(test_decode_largest_strings, setup_arena, teardown_arena),
                cmocka_unit_test_setup_teardown(test_decode_tiny_unknown_fields, setup_arena, teardown_arena),
                cmocka_unit_test_setup_teardown(test_decode_repeated_known_fields, setup_arena, teardown_arena),
                cmocka_unit_test_setup_teardown(test_decode_arena_fits_max_header, setup_arena, teardown_arena),
                cmocka_unit_test_setup_teardown(test_decode_random_bytes, setup_arena, teardown_arena),
                cmocka_unit_test(test_check_serial),
                cmocka_unit_test(test_check_flags),
                cmocka_unit_test(test_check_name_length),
                cmocka_unit_test(test_check_call),
                cmocka_unit_test(test_check_reply_error),
                cmocka_unit_test(test_check_signal),
                cmocka_unit_test(test_check_hello_and_unknown),
                cmocka_unit_test_setup_teardown(test_varint_delivery, setup_arena, teardown_arena),
                cmocka_unit_test(test_varint_encoding),
                cmocka_unit_test(test_prefix),
                cmocka_unit_test(test_kind_to_string),
                cmocka_unit_test(test_strerror),
        };

        return cmocka_run_group_tests_name("Frame codec", tests, NULL, NULL);
}
