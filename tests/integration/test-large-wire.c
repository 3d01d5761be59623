/*
 * Large messages on the wire, with raw clients: the broker's side of the
 * exchange as docs/protocol.md §17 specifies it, frame by frame, for
 * implementations other than libplexus. A lent CALL carries its stamped
 * transfer id and one descriptor (the sender's pidfd), AckTransfer answers
 * REPLY once and TransferExpired after, the lender's TransferDone comes
 * before the answer to its call, also when the callee answers without
 * acknowledging; refused frames get their ERROR and then a TransferDone;
 * memfd frames go through with their memfd and transfer id 0, and without
 * a sealed memfd of their size are refused (no TransferDone); calls to the broker
 * take no large payloads; the fatal rules close the connection.
 *
 * The raw clients receive without a control buffer, so the kernel closes
 * the descriptors that come with their frames: n_fds, as stamped, tells.
 */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "raw.h"
#include "util.h"

#define LENT_SIZE (1024u * 1024u)

typedef struct Client {
        int fd;
        char id[64];
        RawFrame *frame;
} Client;

static void client_connect(Harness *h, Client *c) {
        c->frame = raw_frame_new();
        assert_non_null(c->frame);
        c->fd = raw_connect(h->address);
        assert_true(c->fd >= 0);
        assert_int_equal(raw_hello(c->fd, c->frame, c->id, sizeof(c->id)), 0);
}

static void client_close(Client *c) {
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        c->frame = raw_frame_free(c->frame);
}

/* The next frame @c receives, decoded. */
static Plexus__Header *next(Client *c) {
        assert_int_equal(raw_recv(c->fd, c->frame, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 1);
        assert_non_null(c->frame->header);
        return c->frame->header;
}

static void expect_error(Client *c, uint64_t reply_serial, const char *name) {
        Plexus__Header *h = next(c);

        assert_int_equal(h->kind, PLEXUS__KIND__KIND_ERROR);
        assert_string_equal(h->error_name, name);
        assert_int_equal(h->reply_serial, reply_serial);
}

static void expect_reply(Client *c, uint64_t reply_serial) {
        Plexus__Header *h = next(c);

        if (h->kind == PLEXUS__KIND__KIND_ERROR)
                fail_msg("%s: %.*s", h->error_name, (int)c->frame->payload_len, (const char *)c->frame->payload);
        assert_int_equal(h->kind, PLEXUS__KIND__KIND_REPLY);
        assert_int_equal(h->reply_serial, reply_serial);
}

/* The next frame is the broker's TransferDone; returns it, to free. */
static Plexus__TransferDone *expect_done(Client *c, uint64_t serial) {
        Plexus__Header *h = next(c);
        Plexus__TransferDone *d;

        assert_int_equal(h->kind, PLEXUS__KIND__KIND_SIGNAL);
        assert_string_equal(h->sender, "plexus");
        assert_string_equal(h->member, "plexus/transfer/done");
        d = plexus__transfer_done__unpack(NULL, c->frame->payload_len, c->frame->payload);
        assert_non_null(d);
        assert_int_equal(d->serial, serial);
        return d;
}

static void send_lent_call(Client *c, uint64_t serial, const char *destination, const void *buf, uint64_t size) {
        Plexus__Header h = PLEXUS__HEADER__INIT;

        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = serial;
        h.destination = (char *)destination;
        h.member = (char *)"Store";
        h.large_size = size;
        h.large_addr = (uint64_t)(uintptr_t)buf;
        assert_int_equal(raw_send(c->fd, &h, NULL, 0), 0);
}

static void send_ack(Client *c, uint64_t serial, uint64_t transfer_id, Plexus__TransferStatus status,
                     uint32_t flags) {
        Plexus__TransferAck ack = PLEXUS__TRANSFER_ACK__INIT;
        Plexus__Header h = PLEXUS__HEADER__INIT;
        uint8_t buf[32];

        ack.transfer_id = transfer_id;
        ack.status = status;
        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = serial;
        h.flags = flags;
        h.destination = (char *)"plexus";
        h.member = (char *)"AckTransfer";
        assert_int_equal(raw_send(c->fd, &h, buf, plexus__transfer_ack__pack(&ack, buf)), 0);
}

static void send_reply(Client *c, uint64_t serial, const char *destination, uint64_t reply_serial) {
        Plexus__Header h = PLEXUS__HEADER__INIT;

        h.kind = PLEXUS__KIND__KIND_REPLY;
        h.serial = serial;
        h.destination = (char *)destination;
        h.reply_serial = reply_serial;
        assert_int_equal(raw_send(c->fd, &h, "ok", 2), 0);
}

static void ping(Client *c, uint64_t serial) {
        Plexus__Header h = PLEXUS__HEADER__INIT;

        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = serial;
        h.destination = (char *)"plexus";
        h.member = (char *)"Ping";
        assert_int_equal(raw_send(c->fd, &h, NULL, 0), 0);
        expect_reply(c, serial);
}

/* §17.3 to §17.5 and the example of §17.10: lend, copy, acknowledge, done, answer. */
static void test_exchange(void **state) {
        Harness *hs = *state;
        _cleanup_(freep) uint8_t *buf = calloc(1, LENT_SIZE);
        Client a = { .fd = -1 }, b = { .fd = -1 };
        Plexus__TransferDone *d;
        Plexus__Header *h;
        uint64_t id;

        assert_non_null(buf);
        client_connect(hs, &a);
        client_connect(hs, &b);

        send_lent_call(&a, 3, b.id, buf, LENT_SIZE);
        h = next(&b);
        assert_int_equal(h->kind, PLEXUS__KIND__KIND_CALL);
        assert_int_equal(h->large_size, LENT_SIZE);
        assert_int_equal(h->large_addr, (uint64_t)(uintptr_t)buf);
        assert_int_equal(h->sender_pid, (uint32_t)getpid());
        assert_int_equal(h->n_fds, 1);          /* the sender's pidfd */
        assert_true(h->transfer_id > 0);
        assert_int_equal(b.frame->payload_len, 0);
        id = h->transfer_id;

        /* A bad acknowledgement changes nothing. */
        {
                Plexus__Header bad = PLEXUS__HEADER__INIT;

                bad.kind = PLEXUS__KIND__KIND_CALL;
                bad.serial = 2;
                bad.destination = (char *)"plexus";
                bad.member = (char *)"AckTransfer";
                assert_int_equal(raw_send(b.fd, &bad, "\xff\xff", 2), 0);
                expect_error(&b, 2, "plexus.Error.InvalidArgs");
        }

        /* Answered even with NO_REPLY; the lender hears first. */
        send_ack(&b, 3, id, PLEXUS__TRANSFER_STATUS__TRANSFER_COPIED, FRAME_FLAG_NO_REPLY);
        expect_reply(&b, 3);
        d = expect_done(&a, 3);
        assert_int_equal(d->transfer_id, id);
        assert_int_equal(d->n_receivers, 1);
        assert_int_equal(d->n_copied, 1);
        assert_int_equal(d->n_refused, 0);
        assert_false(d->expired);
        plexus__transfer_done__free_unpacked(d, NULL);

        send_reply(&b, 4, a.id, 3);
        expect_reply(&a, 3);

        /* Once only. */
        send_ack(&b, 5, id, PLEXUS__TRANSFER_STATUS__TRANSFER_COPIED, 0);
        expect_error(&b, 5, "plexus.Error.TransferExpired");
        /* Never lent to a: */
        send_ack(&a, 6, id + 1000, PLEXUS__TRANSFER_STATUS__TRANSFER_COPIED, 0);
        expect_error(&a, 6, "plexus.Error.TransferExpired");

        client_close(&a);
        client_close(&b);
}

/* §17.5: a call that ends ends its transfer, and the lender hears before the answer. */
static void test_call_ends_transfer(void **state) {
        Harness *hs = *state;
        _cleanup_(freep) uint8_t *buf = calloc(1, LENT_SIZE);
        Client a = { .fd = -1 }, b = { .fd = -1 };
        Plexus__TransferDone *d;
        uint64_t id;

        assert_non_null(buf);
        client_connect(hs, &a);
        client_connect(hs, &b);

        send_lent_call(&a, 7, b.id, buf, LENT_SIZE);
        id = next(&b)->transfer_id;
        send_reply(&b, 2, a.id, 7);             /* without acknowledging */
        d = expect_done(&a, 7);
        assert_int_equal(d->transfer_id, id);
        assert_int_equal(d->n_receivers, 1);
        assert_int_equal(d->n_copied, 0);
        assert_false(d->expired);
        plexus__transfer_done__free_unpacked(d, NULL);
        expect_reply(&a, 7);

        /* Too late: the callee was dropped from the transfer. */
        send_ack(&b, 3, id, PLEXUS__TRANSFER_STATUS__TRANSFER_COPIED, 0);
        expect_error(&b, 3, "plexus.Error.TransferExpired");

        client_close(&a);
        client_close(&b);
}

/* §17.3, §17.6, §17.8: refused frames, their ERROR, then their TransferDone; the connection stays. */
static void test_refused(void **state) {
        Harness *hs = *state;
        _cleanup_(freep) uint8_t *buf = calloc(1, LENT_SIZE);
        Client a = { .fd = -1 };
        Plexus__TransferDone *d;

        assert_non_null(buf);
        client_connect(hs, &a);

        /* The bus's own methods take no large payloads. */
        send_lent_call(&a, 2, "plexus", buf, LENT_SIZE);
        expect_error(&a, 2, "plexus.Error.InvalidArgs");
        d = expect_done(&a, 2);
        assert_true(d->transfer_id > 0);
        assert_int_equal(d->n_receivers, 0);
        plexus__transfer_done__free_unpacked(d, NULL);

        /* Nobody to lend to. */
        send_lent_call(&a, 3, ":99999", buf, LENT_SIZE);
        expect_error(&a, 3, "plexus.Error.ServiceUnknown");
        d = expect_done(&a, 3);
        assert_true(d->transfer_id > 0);
        assert_int_equal(d->n_receivers, 0);
        plexus__transfer_done__free_unpacked(d, NULL);

        /* Above max_message_size: refused before a transfer exists. */
        send_lent_call(&a, 4, ":99999", buf, (1ull << 30) + 1);
        expect_error(&a, 4, "plexus.Error.LimitsExceeded");
        d = expect_done(&a, 4);
        assert_int_equal(d->transfer_id, 0);
        assert_int_equal(d->n_receivers, 0);
        plexus__transfer_done__free_unpacked(d, NULL);

        /* The memfd path without a memfd: refused, and no TransferDone (nothing was lent). */
        {
                Plexus__Header h = PLEXUS__HEADER__INIT;

                h.kind = PLEXUS__KIND__KIND_SIGNAL;
                h.serial = 5;
                h.member = (char *)"camera/frame";
                h.large_size = LENT_SIZE;
                assert_int_equal(raw_send(a.fd, &h, NULL, 0), 0);
                expect_error(&a, 5, "plexus.Error.InvalidPayload");
        }
        ping(&a, 6);

        client_close(&a);
}

/* A memfd of @size bytes with @seals added. */
static int memfd_sealed(size_t size, int seals) {
        int fd = memfd_create("large-wire", MFD_CLOEXEC | MFD_ALLOW_SEALING);

        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t)size), 0);
        if (seals)
                assert_int_equal(fcntl(fd, F_ADD_SEALS, seals), 0);
        return fd;
}

/* A header-only frame with one descriptor, as raw.c sends none. */
static void send_with_fd(Client *c, const Plexus__Header *h, int fd) {
        uint8_t buf[512];
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
        } control = {};
        size_t hlen = plexus__header__get_packed_size(h);
        struct iovec iov = { .iov_base = buf, .iov_len = FRAME_PREFIX_SIZE + hlen };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = control.buf,
                .msg_controllen = sizeof(control.buf),
        };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

        assert_true(FRAME_PREFIX_SIZE + hlen <= sizeof(buf));
        frame_prefix(buf, (uint32_t)hlen);
        plexus__header__pack(h, buf + FRAME_PREFIX_SIZE);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
        assert_int_equal(sendmsg(c->fd, &mh, MSG_NOSIGNAL), (ssize_t)iov.iov_len);
}

/*
 * §17.2: a sealed memfd goes through with its frame, transfer_id 0 whatever
 * the sender wrote, and nothing to acknowledge; one not sealed against
 * writing, or too small, is refused.
 */
static void test_memfd(void **state) {
        Harness *hs = *state;
        Client a = { .fd = -1 }, b = { .fd = -1 };
        Plexus__Header h = PLEXUS__HEADER__INIT, *got;
        const int seals = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW;
        int fd;

        client_connect(hs, &a);
        client_connect(hs, &b);
        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = 2;
        h.destination = b.id;
        h.member = (char *)"Store";
        h.large_size = LENT_SIZE;
        h.transfer_id = 77;             /* the broker's to set */

        fd = memfd_sealed(LENT_SIZE, seals);
        send_with_fd(&a, &h, fd);
        close(fd);
        got = next(&b);
        assert_int_equal(got->kind, PLEXUS__KIND__KIND_CALL);
        assert_int_equal(got->large_size, LENT_SIZE);
        assert_int_equal(got->large_addr, 0);
        assert_int_equal(got->n_fds, 1);
        assert_int_equal(got->transfer_id, 0);
        assert_int_equal(b.frame->payload_len, 0);
        send_reply(&b, 2, a.id, 2);
        expect_reply(&a, 2);            /* no TransferDone first: nothing was lent */

        h.serial = 3;
        fd = memfd_sealed(LENT_SIZE, F_SEAL_SHRINK | F_SEAL_GROW);
        send_with_fd(&a, &h, fd);
        close(fd);
        expect_error(&a, 3, "plexus.Error.InvalidPayload");

        h.serial = 4;
        fd = memfd_sealed(LENT_SIZE - 1, seals);
        send_with_fd(&a, &h, fd);
        close(fd);
        expect_error(&a, 4, "plexus.Error.InvalidPayload");
        ping(&a, 5);

        client_close(&a);
        client_close(&b);
}

static void expect_closed(Client *c, uint64_t reply_serial, const char *reason) {
        expect_error(c, reply_serial, "plexus.Error.InvalidFrame");
        assert_int_equal(c->frame->payload_len, strlen(reason));
        assert_memory_equal(c->frame->payload, reason, strlen(reason));
        assert_int_equal(raw_wait_eof(c->fd, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
}

/* §17.1: the rules whose violation closes the connection. */
static void test_fatal(void **state) {
        Harness *hs = *state;
        Plexus__Header h = PLEXUS__HEADER__INIT;
        Client c = { .fd = -1 };

        h.kind = PLEXUS__KIND__KIND_SIGNAL;
        h.serial = 2;
        h.member = (char *)"camera/frame";
        h.large_size = 4;

        /* Payload bytes in a large frame's datagram. */
        client_connect(hs, &c);
        assert_int_equal(raw_send(c.fd, &h, "abcd", 4), 0);
        expect_closed(&c, 2, "a large frame carries no payload in the datagram");
        client_close(&c);

        /* large_addr without large_size. */
        client_connect(hs, &c);
        h.large_size = 0;
        h.large_addr = 0x1000;
        assert_int_equal(raw_send(c.fd, &h, NULL, 0), 0);
        expect_closed(&c, 2, "large_addr without large_size");
        client_close(&c);

        /* A large ERROR. */
        client_connect(hs, &c);
        h = (Plexus__Header) PLEXUS__HEADER__INIT;
        h.kind = PLEXUS__KIND__KIND_ERROR;
        h.serial = 3;
        h.reply_serial = 1;
        h.destination = c.id;
        h.error_name = (char *)"org.example.Error";
        h.large_size = 4;
        assert_int_equal(raw_send(c.fd, &h, NULL, 0), 0);
        expect_closed(&c, 3, "only CALL, REPLY and SIGNAL frames may be large");
        client_close(&c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_exchange, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_call_ends_transfer, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_refused, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_memfd, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_fatal, harness_setup, harness_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
