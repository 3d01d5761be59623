/*
 * Hostile header bytes over a raw socket: headers that protobuf-c alone
 * would take but other decoders read differently or refuse (an overlong
 * tag for field 0, a NUL inside member, strings that are not UTF-8, a tag
 * that trips protobuf-c's parser, known fields with the wrong wire type).
 *
 * Each is appended to an otherwise valid CALL to the test service. As for
 * any header that is not a valid plexus.Header (docs/protocol.md §12), the
 * sender must get plexus.Error.InvalidFrame with reply_serial 0 and a text
 * naming the field, then EOF; the frame must reach nobody. Meanwhile a
 * libplexus monitor stays attached and must keep decoding the copies it
 * gets (one bad copy would end it with EPROTO), and a probe client's calls
 * must keep getting answers. Valid unknown fields still pass, and libplexus
 * refuses to send a name that is not UTF-8 rather than lose its connection.
 */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "raw.h"
#include "service.h"

#define HOSTILE_PAYLOAD "hostile"

typedef struct Monitored {
        const char *marker;             /* the probe's current payload */
        bool seen_marker;               /* a copy of the probe's CALL arrived */
        unsigned int n_copies;
        unsigned int n_hostile;         /* copies of a hostile frame: must stay 0 */
} Monitored;

/* One hostile header tail, appended to a valid CALL. */
typedef struct HostileCase {
        const char *what;
        const char *bytes;
        size_t len;
        uint32_t field;                 /* the field the error text must name */
} HostileCase;

typedef struct Fixture {
        ServiceFixture *sf;
        plx_bus *monitor;
        Monitored seen;
        RawFrame *frame;
        int raw_fd;                     /* the hostile client, -1 when closed */
        const HostileCase *hostile;     /* this test's case, NULL for the others */
} Fixture;

static int on_monitor(plx_msg *msg, void *userdata) {
        Monitored *m = userdata;
        const void *p;
        size_t size;

        m->n_copies++;
        p = plx_msg_get_payload(msg, &size);
        if (size == strlen(HOSTILE_PAYLOAD) && memcmp(p, HOSTILE_PAYLOAD, size) == 0)
                m->n_hostile++;
        if (m->marker && plx_msg_get_kind(msg) == PLX_MSG_CALL &&
            strcmp(plx_msg_get_member(msg), "Echo") == 0 &&
            size == strlen(m->marker) && memcmp(p, m->marker, size) == 0)
                m->seen_marker = true;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        void *s;

        if (!f)
                return 0;
        if (f->raw_fd >= 0)
                close(f->raw_fd);
        plx_bus_free(f->monitor);
        raw_frame_free(f->frame);
        s = f->sf;
        free(f);
        *state = NULL;
        return service_fixture_teardown(&s);
}

/* *@state holds the test's HostileCase (cmocka's prestate), or NULL. */
static int setup(void **state) {
        const HostileCase *c = *state;
        Fixture *f;
        void *s = NULL;
        int r;

        *state = NULL;
        if (service_fixture_setup(&s) < 0)
                return -1;
        f = calloc(1, sizeof(*f));
        if (!f) {
                service_fixture_teardown(&s);
                return -1;
        }
        f->sf = s;
        f->raw_fd = -1;
        f->hostile = c;
        *state = f;

        f->frame = raw_frame_new();
        if (!f->frame)
                goto fail;
        r = plx_bus_new(&f->monitor, f->sf->harness->address, "monitor");
        if (r < 0) {
                fprintf(stderr, "plx_bus_new: %s\n", strerror(-r));
                goto fail;
        }
        r = plx_bus_become_monitor(f->monitor, NULL, NULL, NULL, on_monitor, &f->seen);
        if (r < 0) {
                fprintf(stderr, "plx_bus_become_monitor: %s\n", strerror(-r));
                goto fail;
        }
        return 0;

fail:
        teardown(state);
        return -1;
}

/*
 * The probe calls the service; the call must be answered and the monitor
 * must get its copy, decoded, with the monitor connection still alive.
 */
static void probe(Fixture *f, unsigned int round) {
        _cleanup_msg_ plx_msg *reply = NULL;
        char marker[64];
        const void *p;
        size_t size;
        int r;

        snprintf(marker, sizeof(marker), "probe %u", round);
        r = plx_bus_call(f->sf->bus, f->sf->service_id, "Echo", marker, strlen(marker), 5000 * 1000, &reply);
        if (r < 0)
                fail_msg("probe call %u: %s", round, strerror(-r));
        p = plx_msg_get_payload(reply, &size);
        assert_int_equal(size, strlen(marker));
        assert_memory_equal(p, marker, size);

        f->seen.marker = marker;
        f->seen.seen_marker = false;
        r = harness_bus_wait(f->monitor, &f->seen.seen_marker, harness_timeout_ms(HARNESS_TIMEOUT_MS));
        f->seen.marker = NULL;
        if (r < 0)
                fail_msg("monitor after round %u: %s (%u copies decoded before)", round, strerror(-r),
                         f->seen.n_copies);
        assert_int_equal(f->seen.n_hostile, 0);
}

/*
 * Sends a valid CALL to the service with @extra appended to its header,
 * and requires InvalidFrame naming @field, then EOF.
 */
static void send_hostile(Fixture *f, const char *what, const void *extra, size_t extra_len, uint32_t field) {
        Plexus__Header h = PLEXUS__HEADER__INIT;
        uint8_t buf[FRAME_PREFIX_SIZE + 512];
        char id[64], want[64];
        size_t hlen;
        int r;

        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = 2;
        h.destination = f->sf->service_id;
        h.member = (char *)"Echo";
        hlen = plexus__header__get_packed_size(&h);
        assert_true(FRAME_PREFIX_SIZE + hlen + extra_len + strlen(HOSTILE_PAYLOAD) <= sizeof(buf));
        plexus__header__pack(&h, buf + FRAME_PREFIX_SIZE);
        memcpy(buf + FRAME_PREFIX_SIZE + hlen, extra, extra_len);
        hlen += extra_len;
        frame_prefix(buf, (uint32_t)hlen);
        memcpy(buf + FRAME_PREFIX_SIZE + hlen, HOSTILE_PAYLOAD, strlen(HOSTILE_PAYLOAD));

        f->raw_fd = raw_connect(f->sf->harness->address);
        assert_true(f->raw_fd >= 0);
        assert_int_equal(raw_hello(f->raw_fd, f->frame, id, sizeof(id)), 0);
        assert_int_equal(raw_send_bytes(f->raw_fd, buf, FRAME_PREFIX_SIZE + hlen + strlen(HOSTILE_PAYLOAD)), 0);

        r = raw_recv(f->raw_fd, f->frame, harness_timeout_ms(HARNESS_TIMEOUT_MS));
        if (r == 0 || r == -ECONNRESET)
                fail_msg("%s: connection closed without an ERROR frame", what);
        assert_int_equal(r, 1);
        assert_non_null(f->frame->header);
        if (f->frame->header->kind != PLEXUS__KIND__KIND_ERROR)
                fail_msg("%s: the broker routed the frame (got a %s from %s)", what,
                         frame_kind_to_string(f->frame->header->kind), f->frame->header->sender);
        if (strcmp(f->frame->header->error_name, PLX_ERROR_INVALID_FRAME) != 0)
                fail_msg("%s: got %s, expected %s", what, f->frame->header->error_name, PLX_ERROR_INVALID_FRAME);
        assert_string_equal(f->frame->header->sender, PLX_BROKER);
        assert_int_equal(f->frame->header->reply_serial, 0);
        snprintf(want, sizeof(want), "field %u: ", field);
        if (!memmem(f->frame->payload, f->frame->payload_len, want, strlen(want)))
                fail_msg("%s: error text \"%.*s\" does not name \"%s\"", what, (int)f->frame->payload_len,
                         (const char *)f->frame->payload, want);
        assert_int_equal(raw_wait_eof(f->raw_fd, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        close(f->raw_fd);
        f->raw_fd = -1;
}

static const HostileCase hostile[] = {
        /* Finding 2: protobuf-c keeps it and re-encodes it for monitors as 00 01. */
        { "unknown field, overlong tag for field 0", "\x80\x80\x00\x01", 4, 0 },
        /* Finding 3: the broker would route and check "Echo", the service would get all 11 bytes. */
        { "NUL inside member", "\x32\x0b" "Echo\0Secret", 13, 6 },
        { "member not UTF-8", "\x32\x04" "Ech\xff", 6, 6 },
        { "destination not UTF-8", "\x22\x06" ":1.99\xff", 8, 4 },
        { "sender not UTF-8 (overlong NUL)", "\x2a\x02\xc0\x80", 4, 5 },
        { "NUL inside error_name", "\x42\x03" "a\0b", 5, 8 },
        /* Finding 13: 0x40 << 25 overflows an int in protobuf-c's tag parser. */
        { "fifth tag byte 0x40", "\x80\x80\x80\x80\x40\x01", 6, 0 },
        { "member as a varint", "\x30\x01", 2, 6 },
        { "serial as length-delimited", "\x12\x01\x01", 3, 2 },
        { "group wire type", "\xa3\x06", 2, 100 },
        { "overlong varint in an unknown field", "\xa0\x06\x81\x00", 4, 100 },
};

static void test_hostile_header(void **state) {
        Fixture *f = *state;
        const HostileCase *c = f->hostile;

        probe(f, 0);
        send_hostile(f, c->what, c->bytes, c->len, c->field);
        probe(f, 1);
        /* Again, now that the broker has seen one: nothing was left behind. */
        send_hostile(f, c->what, c->bytes, c->len, c->field);
        probe(f, 2);
}

/* Valid unknown fields pass, and the monitor's re-encoded copy of them decodes. */
static void test_valid_unknown_fields(void **state) {
        static const uint8_t unknown[] = {
                0xa0, 0x06, 0x01,                               /* field 100, varint 1 */
                0xc2, 0x3e, 0x02, 0xff, 0x00,                   /* field 1000, two bytes */
                0xfd, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3, 4,       /* field 2^29-1, fixed32 */
        };
        Fixture *f = *state;
        Plexus__Header h = PLEXUS__HEADER__INIT;
        uint8_t buf[FRAME_PREFIX_SIZE + 256];
        char id[64];
        size_t hlen;
        int r;

        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = 2;
        h.destination = f->sf->service_id;
        h.member = (char *)"Echo";
        hlen = plexus__header__pack(&h, buf + FRAME_PREFIX_SIZE);
        memcpy(buf + FRAME_PREFIX_SIZE + hlen, unknown, sizeof(unknown));
        hlen += sizeof(unknown);
        frame_prefix(buf, (uint32_t)hlen);
        memcpy(buf + FRAME_PREFIX_SIZE + hlen, "probe 1", 7);

        f->raw_fd = raw_connect(f->sf->harness->address);
        assert_true(f->raw_fd >= 0);
        assert_int_equal(raw_hello(f->raw_fd, f->frame, id, sizeof(id)), 0);
        assert_int_equal(raw_send_bytes(f->raw_fd, buf, FRAME_PREFIX_SIZE + hlen + 7), 0);
        r = raw_recv(f->raw_fd, f->frame, harness_timeout_ms(HARNESS_TIMEOUT_MS));
        assert_int_equal(r, 1);
        assert_non_null(f->frame->header);
        assert_int_equal(f->frame->header->kind, PLEXUS__KIND__KIND_REPLY);
        assert_int_equal(f->frame->header->reply_serial, 2);

        /* The monitor got the CALL, unknown fields and all, and decoded it. */
        f->seen.marker = "probe 1";
        f->seen.seen_marker = false;
        r = harness_bus_wait(f->monitor, &f->seen.seen_marker, harness_timeout_ms(HARNESS_TIMEOUT_MS));
        f->seen.marker = NULL;
        if (r < 0)
                fail_msg("monitor: %s", strerror(-r));
        probe(f, 2);
}

/*
 * libplexus refuses what the broker would refuse before sending it: a name
 * that is not UTF-8 fails locally, and the connection stays.
 */
static void test_libplexus_refuses_locally(void **state) {
        Fixture *f = *state;

        assert_int_equal(plx_bus_call(f->sf->bus, f->sf->service_id, "Ech\xff", "x", 1, 5000 * 1000, NULL),
                         -EINVAL);
        assert_int_equal(plx_bus_call(f->sf->bus, ":1.99\xc0\x80", "Echo", "x", 1, 5000 * 1000, NULL),
                         -EINVAL);
        assert_int_equal(plx_bus_publish(f->sf->bus, "news/\xed\xa0\x80", "x", 1), -EINVAL);
        probe(f, 1);
}

/* Named after the case, with the case as the fixture's prestate. */
#define HOSTILE_TEST(i) { hostile[i].what, test_hostile_header, setup, teardown, (void *)&hostile[i] }

int main(void) {
        const struct CMUnitTest tests[] = {
                HOSTILE_TEST(0), HOSTILE_TEST(1), HOSTILE_TEST(2), HOSTILE_TEST(3),
                HOSTILE_TEST(4), HOSTILE_TEST(5), HOSTILE_TEST(6), HOSTILE_TEST(7),
                HOSTILE_TEST(8), HOSTILE_TEST(9), HOSTILE_TEST(10),
                cmocka_unit_test_setup_teardown(test_valid_unknown_fields, setup, teardown),
                cmocka_unit_test_setup_teardown(test_libplexus_refuses_locally, setup, teardown),
        };

        _Static_assert(sizeof(hostile) / sizeof(hostile[0]) == 11, "one HOSTILE_TEST() per case");
        return cmocka_run_group_tests(tests, NULL, NULL);
}
