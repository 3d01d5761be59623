/*
 * The broker's batched I/O (daemon/peer-io.c) against a real plexusd.
 *
 * To make frames arrive in one read batch, the test stops the broker
 * (SIGSTOP), writes several frames on raw sockets, and lets it go on: the
 * broker then reads them with one recvmmsg() and routes them as one batch.
 * Checked: a receiver gets its frames in routing order when frames that are
 * batched (a client's) and frames that are not (the broker's own answers)
 * are routed to it in one batch; frames a receiver's socket does not take
 * in the middle of a batch are queued, and all arrive, in order, without a
 * gap in the delivery numbers, also when the batch fans out to several
 * receivers (sent through io_uring where available: meson runs this test
 * once more with --no-io-uring); a receiver gone in the middle of a
 * fan-out does not disturb the others; frames after a protocol error in
 * the same batch are dropped and the connection ends.
 */

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "raw.h"

static int wait_ms(void) {
        return harness_timeout_ms(HARNESS_TIMEOUT_MS);
}

static void send_signal(int fd, uint64_t serial, const char *topic, const void *payload, size_t size) {
        Plexus__Header h = PLEXUS__HEADER__INIT;

        h.kind = PLEXUS__KIND__KIND_SIGNAL;
        h.serial = serial;
        h.member = (char *)topic;
        assert_int_equal(raw_send(fd, &h, payload, size), 0);
}

static void send_ping(int fd, uint64_t serial) {
        Plexus__Header h = PLEXUS__HEADER__INIT;

        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = serial;
        h.destination = (char *)PLX_BROKER;
        h.member = (char *)"Ping";
        assert_int_equal(raw_send(fd, &h, NULL, 0), 0);
}

/* Stop the broker until resume_broker(): what is written meanwhile is read in one batch. */
static void pause_broker(Harness *h) {
        assert_int_equal(harness_broker_pause(h), 0);
}

static void resume_broker(Harness *h) {
        assert_int_equal(harness_broker_resume(h), 0);
}

/*
 * A client that subscribes to its own topic sends a signal and then a Ping
 * to the broker, in one batch. The signal is batched for it; the Ping's
 * reply is the broker's own frame and goes out at once: it must not
 * overtake the signal.
 */
static void test_batched_and_direct_frames_keep_order(void **state) {
        Harness *h = *state;
        RawFrame *f = raw_frame_new();
        uint64_t delivery;
        char id[64];
        int fd;

        assert_non_null(f);
        fd = raw_subscriber(h->address, "self/#", f, id, sizeof(id));
        assert_true(fd >= 0);
        delivery = f->header->delivery;

        pause_broker(h);
        for (uint64_t i = 0; i < 8; i++) {
                send_signal(fd, 10 + 2 * i, "self/x", "s", 1);
                send_ping(fd, 11 + 2 * i);
        }
        resume_broker(h);

        for (uint64_t i = 0; i < 8; i++) {
                assert_int_equal(raw_recv(fd, f, wait_ms()), 1);
                assert_non_null(f->header);
                if (f->header->kind != PLEXUS__KIND__KIND_SIGNAL)
                        fail_msg("frame %" PRIu64 ": %s before the signal sent ahead of the Ping", 2 * i,
                                 frame_kind_to_string(f->header->kind));
                assert_int_equal(f->header->serial, 10 + 2 * i);
                assert_int_equal(f->header->delivery, ++delivery);

                assert_int_equal(raw_recv(fd, f, wait_ms()), 1);
                assert_non_null(f->header);
                assert_int_equal(f->header->kind, PLEXUS__KIND__KIND_REPLY);
                assert_int_equal(f->header->reply_serial, 11 + 2 * i);
                assert_int_equal(f->header->delivery, ++delivery);
        }
        close(fd);
        raw_frame_free(f);
}

#define BURST 32                /* PEER_READ_BATCH: one read batch */
#define BURST_PAYLOAD 2048           /* 32 of them fit in the sender's socket buffer */
#define BURSTS 12               /* 768 KiB: more than a socket buffer holds */

/*
 * BURSTS bursts of BURST signals on @topic from @pub, each read by the
 * broker as one batch; returns once all are routed. Signal n has serial
 * 100 + n and a payload that says n.
 */
static void publish_bursts(Harness *h, int pub, const char *topic, RawFrame *f) {
        static uint8_t payload[BURST_PAYLOAD];

        for (unsigned b = 0; b < BURSTS; b++) {
                pause_broker(h);
                for (unsigned i = 0; i < BURST; i++) {
                        unsigned n = b * BURST + i;

                        memset(payload, (int)(n & 0xff), sizeof(payload));
                        memcpy(payload, &n, sizeof(n));
                        send_signal(pub, 100 + n, topic, payload, sizeof(payload));
                }
                resume_broker(h);
                /* A Ping answered means the burst was routed. */
                send_ping(pub, 1);
                assert_int_equal(raw_recv(pub, f, wait_ms()), 1);
                assert_non_null(f->header);
                if (f->header->kind == PLEXUS__KIND__KIND_ERROR)
                        fail_msg("burst %u: %s", b, f->header->error_name);
                assert_int_equal(f->header->kind, PLEXUS__KIND__KIND_REPLY);
        }
}

/* Every signal of publish_bursts() arrives at @sub, in order, without a gap after @delivery. */
static void expect_bursts(int sub, unsigned k, RawFrame *f, uint64_t delivery) {
        for (unsigned n = 0; n < BURSTS * BURST; n++) {
                unsigned got;

                assert_int_equal(raw_recv(sub, f, wait_ms()), 1);
                assert_non_null(f->header);
                assert_int_equal(f->header->kind, PLEXUS__KIND__KIND_SIGNAL);
                if (f->header->serial != 100 + n)
                        fail_msg("subscriber %u: serial %" PRIu64 " where %u was due", k, f->header->serial,
                                 100 + n);
                assert_int_equal(f->header->delivery, ++delivery);
                assert_int_equal(f->payload_len, BURST_PAYLOAD);
                memcpy(&got, f->payload, sizeof(got));
                assert_int_equal(got, n);
                assert_int_equal(f->payload[BURST_PAYLOAD - 1], n & 0xff);
        }
}

/*
 * Bursts of signals for a subscriber that does not read: its socket fills
 * in the middle of a batch, the rest of the batch is queued, later bursts
 * queue behind it. Once it reads, everything arrives in order, without a
 * gap, with the right payloads.
 */
static void test_partial_batch_is_queued_in_order(void **state) {
        Harness *h = *state;
        RawFrame *f = raw_frame_new();
        uint64_t delivery;
        char id[64];
        int pub, sub;

        assert_non_null(f);
        sub = raw_subscriber(h->address, "burst/#", f, id, sizeof(id));
        assert_true(sub >= 0);
        delivery = f->header->delivery;
        pub = raw_connect(h->address);
        assert_true(pub >= 0);
        assert_int_equal(raw_hello(pub, f, id, sizeof(id)), 0);

        publish_bursts(h, pub, "burst/data", f);
        expect_bursts(sub, 0, f, delivery);
        close(pub);
        close(sub);
        raw_frame_free(f);
}

#define FANOUT 3                /* receivers of one read batch: flushed through io_uring where available */

/* FANOUT raw subscribers to @pattern, with their last delivery numbers, and a publisher (returned). */
static int fanout_clients(const char *address, const char *pattern, RawFrame *f, int sub[static FANOUT],
                          uint64_t delivery[static FANOUT]) {
        char id[64];
        int pub;

        for (unsigned k = 0; k < FANOUT; k++) {
                sub[k] = raw_subscriber(address, pattern, f, id, sizeof(id));
                assert_true(sub[k] >= 0);
                delivery[k] = f->header->delivery;
        }
        pub = raw_connect(address);
        assert_true(pub >= 0);
        assert_int_equal(raw_hello(pub, f, id, sizeof(id)), 0);
        return pub;
}

/*
 * The same for several subscribers that do not read: each one's socket
 * fills in the middle of a batch sent to all of them at once (one io_uring
 * submission, each one's frames linked; or one sendmmsg() each with
 * --no-io-uring). What each socket refused is queued; once they read, each
 * gets every frame in order, without a gap, with the right payload.
 */
static void test_partial_batches_to_several_receivers(void **state) {
        Harness *h = *state;
        RawFrame *f = raw_frame_new();
        uint64_t delivery[FANOUT];
        int sub[FANOUT], pub;

        assert_non_null(f);
        pub = fanout_clients(h->address, "fan/#", f, sub, delivery);

        publish_bursts(h, pub, "fan/data", f);
        for (unsigned k = 0; k < FANOUT; k++)
                expect_bursts(sub[k], k, f, delivery[k]);
        close(pub);
        for (unsigned k = 0; k < FANOUT; k++)
                close(sub[k]);
        raw_frame_free(f);
}

/*
 * A subscriber that is gone when a fanned-out batch is sent (its send
 * fails with EPIPE): it is dropped, and the others get every frame, in
 * order, and so do they for the next batch.
 */
static void test_receiver_gone_mid_fanout(void **state) {
        Harness *h = *state;
        RawFrame *f = raw_frame_new();
        uint64_t delivery[FANOUT];
        int sub[FANOUT], pub;

        assert_non_null(f);
        pub = fanout_clients(h->address, "gone/#", f, sub, delivery);

        for (unsigned b = 0; b < 2; b++) {
                pause_broker(h);
                if (b == 0) {
                        close(sub[1]);
                        sub[1] = -1;
                }
                for (unsigned i = 0; i < 8; i++)
                        send_signal(pub, 100 + 8 * b + i, "gone/x", "g", 1);
                resume_broker(h);

                for (unsigned k = 0; k < FANOUT; k++) {
                        if (sub[k] < 0)
                                continue;
                        for (unsigned i = 0; i < 8; i++) {
                                assert_int_equal(raw_recv(sub[k], f, wait_ms()), 1);
                                assert_non_null(f->header);
                                assert_int_equal(f->header->kind, PLEXUS__KIND__KIND_SIGNAL);
                                assert_int_equal(f->header->serial, 100 + 8 * b + i);
                                assert_int_equal(f->header->delivery, ++delivery[k]);
                        }
                }
        }
        close(pub);
        for (unsigned k = 0; k < FANOUT; k++)
                if (sub[k] >= 0)
                        close(sub[k]);
        raw_frame_free(f);
}

/*
 * A protocol error in the middle of a batch: the frames before it are
 * routed, the connection ends after the error, the frames after it are
 * dropped (a subscriber sees none of them), and the broker serves on.
 */
static void test_error_mid_batch(void **state) {
        Harness *h = *state;
        RawFrame *f = raw_frame_new();
        Plexus__Header bad = PLEXUS__HEADER__INIT;
        char id[64];
        int pub, sub;

        assert_non_null(f);
        sub = raw_subscriber(h->address, "mid/#", f, id, sizeof(id));
        assert_true(sub >= 0);
        pub = raw_connect(h->address);
        assert_true(pub >= 0);
        assert_int_equal(raw_hello(pub, f, id, sizeof(id)), 0);

        pause_broker(h);
        send_signal(pub, 10, "mid/before", "b", 1);
        bad.kind = PLEXUS__KIND__KIND_SIGNAL;         /* serial 0: a protocol error */
        bad.member = (char *)"mid/bad";
        assert_int_equal(raw_send(pub, &bad, NULL, 0), 0);
        send_signal(pub, 12, "mid/after", "a", 1);
        resume_broker(h);

        assert_int_equal(raw_recv(pub, f, wait_ms()), 1);
        assert_non_null(f->header);
        assert_int_equal(f->header->kind, PLEXUS__KIND__KIND_ERROR);
        assert_string_equal(f->header->error_name, "plexus.Error.InvalidFrame");
        assert_int_equal(raw_wait_eof(pub, wait_ms()), 0);

        assert_int_equal(raw_recv(sub, f, wait_ms()), 1);
        assert_non_null(f->header);
        assert_string_equal(f->header->member, "mid/before");
        /* The next thing it gets is its own Ping's reply, not "mid/after". */
        send_ping(sub, 3);
        assert_int_equal(raw_recv(sub, f, wait_ms()), 1);
        assert_non_null(f->header);
        assert_int_equal(f->header->kind, PLEXUS__KIND__KIND_REPLY);
        assert_int_equal(f->header->reply_serial, 3);

        close(pub);
        close(sub);
        raw_frame_free(f);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_batched_and_direct_frames_keep_order, harness_setup,
                                                harness_teardown),
                cmocka_unit_test_setup_teardown(test_partial_batch_is_queued_in_order, harness_setup,
                                                harness_teardown),
                cmocka_unit_test_setup_teardown(test_partial_batches_to_several_receivers, harness_setup,
                                                harness_teardown),
                cmocka_unit_test_setup_teardown(test_receiver_gone_mid_fanout, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_error_mid_batch, harness_setup, harness_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
