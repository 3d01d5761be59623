/*
 * Fuzz target: a real broker (the daemon library) driven in-process by a
 * few clients whose frames come from the input.
 *
 * Each input gets a fresh broker (so that ids, names and sequence numbers
 * are the same every time an input is replayed) with three clients on
 * socketpairs, each past a valid HELLO. The input is then a list of
 * records, each one frame from one client:
 *
 *      op (1 byte): client = op % 3, action = op / 3 % 8
 *      0 raw        u16 length, that many bytes sent as the datagram
 *      1 method     m (1 byte): broker method m % 16 (15: an unknown one);
 *                   if m & 0x80, a payload of three fields built from a
 *                   u8-length string, a flags byte and a lease byte (every
 *                   request message has its name or pattern in field 1),
 *                   else a u16-length raw payload; serial byte
 *      2 call       destination byte, member byte, flags byte, timeout
 *                   byte, serial byte, u16-length payload
 *      3 signal     u8-length topic, serial byte, u16-length payload
 *      4 answer     REPLY (or ERROR if the byte is odd) to the last CALL
 *                   this client received, u16-length payload
 *      5 reconnect  the client hangs up (byte & 1: without a word, else
 *                   after shutdown(SHUT_WR)) and a new one says HELLO
 *      6 fds        a call (as 2) with 1..4 fds attached
 *      7 garbage    u8 length: a datagram of that many 0xff bytes or a
 *                   truncated prefix
 *
 * A record for a client the broker hung up on reconnects it instead (the
 * op byte alone), so that the rest of the input still reaches the broker.
 *
 * After each record the broker runs until it has nothing left to do and
 * every client reads what it was sent. What clients receive is checked:
 * every frame must split and decode, carry the broker's stamp (sender
 * "plexus" or a unique id, our own uid, gid and pid, n_fds equal to the
 * fds that came along, except in copies to monitors), and per receiver
 * `delivery` and `sequence` must increase (docs/protocol.md §9).
 * FUZZ_BROKER_TRACE=1 in the environment lists every frame received. The broker is freed after each input and
 * the process must hold as many fds as before.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker.h"
#include "bus-name.h"
#include "fdpass.h"
#include "frame.h"
#include "fuzz.h"
#include "peer.h"

#define N_CLIENTS 3

typedef struct Client {
        int fd;                         /* our end; the broker has the other */
        uint64_t next_serial;
        uint64_t last_delivery;
        uint64_t last_sequence;
        bool maybe_monitor;             /* asked to become one: copies may repeat a frame, lack fds */
        char call_sender[32];           /* the last CALL it received, to answer */
        uint64_t call_serial;
} Client;

typedef struct Input {
        const uint8_t *p;
        size_t left;
} Input;

static uint8_t rx[FRAME_SIZE_MAX + 1];
static uint8_t tx[FRAME_SIZE_MAX + 64];
static Arena arena;
static bool initialized;

static const char *const methods[] = {
        "Subscribe", "Unsubscribe", "Ping", "GetBusInfo", "RequestName", "ReleaseName",
        "RenewName", "GetNameOwner", "ListQueuedOwners", "ListNames", "BecomeMonitor",
        "ListClients", "GetClient", "GetStats", "AckTransfer", "NoSuchMethod",
};

static const char *const destinations[] = {
        ":1", ":2", ":3", ":4", ":5", "org.fuzz.A", "org.fuzz.B", "plexus", "org.fuzz", "nobody",
        ":99999999999999999999", "",
};

static const char *const members[] = {
        "Ping", "Echo", "RequestName", "a", "", "Subscribe",
};

static uint8_t take_u8(Input *in) {
        uint8_t v;

        if (in->left == 0)
                return 0;
        v = *in->p;
        in->p++;
        in->left--;
        return v;
}

/* Up to @n bytes (fewer at the end of the input), pointed to in place. */
static const uint8_t *take(Input *in, size_t n, size_t *ret_n) {
        const uint8_t *p = in->p;

        n = MIN(n, in->left);
        in->p += n;
        in->left -= n;
        *ret_n = n;
        return p;
}

static size_t take_u16(Input *in) {
        size_t lo = take_u8(in);

        return lo | (size_t)take_u8(in) << 8;
}

/* Open fds of the process; with @show, list them (to diagnose a leak). */
static int count_fds(bool show) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        int n = 0;

        fuzz_check(d);
        while ((de = readdir(d))) {
                char link[256] = "";

                if (de->d_name[0] == '.')
                        continue;
                n++;
                if (show) {
                        (void)!readlinkat(dirfd(d), de->d_name, link, sizeof(link) - 1);
                        fprintf(stderr, "fd %s -> %s\n", de->d_name, link);
                }
        }
        closedir(d);
        return n - 1;   /* the directory's own */
}

/* Check one frame a client received. */
static void check_received(Client *c, const uint8_t *buf, size_t len, size_t n_fds) {
        Plexus__Header *h;
        FrameView f;

        fuzz_check(len <= FRAME_SIZE_MAX);
        fuzz_check(frame_split(buf, len, &f) == 0);
        arena_reset(&arena);
        fuzz_check(frame_header_decode(&f, &arena, &h) == 0);
        fuzz_check(h->kind != PLEXUS__KIND__KIND_HELLO);

        /* Enough to tell which frame a failed check below is about. */
        if (getenv("FUZZ_BROKER_TRACE"))
                fprintf(stderr, "client fd %d got %s from %s to %s, member %s, serial %" PRIu64
                        ", reply_serial %" PRIu64 ", n_fds %u (%zu came), sequence %" PRIu64
                        ", delivery %" PRIu64 "\n",
                        c->fd, frame_kind_to_string(h->kind), h->sender, h->destination, h->member,
                        h->serial, h->reply_serial, h->n_fds, n_fds, h->sequence, h->delivery);

        fuzz_check(strcmp(h->sender, BROKER_NAME) == 0 || bus_name_is_unique_id(h->sender));
        fuzz_check(h->sender_uid == (uint32_t)getuid());
        fuzz_check(h->sender_gid == (uint32_t)getgid());
        fuzz_check(h->sender_pid == (uint32_t)getpid());
        /* Copies to monitors carry no fds, but the original's n_fds (docs/protocol.md §16). */
        if (c->maybe_monitor)
                fuzz_check(h->n_fds == n_fds || n_fds == 0);
        else
                fuzz_check(h->n_fds == n_fds);
        fuzz_check(h->serial != 0);

        fuzz_check(h->delivery > c->last_delivery);
        c->last_delivery = h->delivery;
        if (c->maybe_monitor)
                fuzz_check(h->sequence >= c->last_sequence);
        else
                fuzz_check(h->sequence > c->last_sequence);
        c->last_sequence = h->sequence;

        if (h->kind == PLEXUS__KIND__KIND_CALL) {
                snprintf(c->call_sender, sizeof(c->call_sender), "%s", h->sender);
                c->call_serial = h->serial;
        }
}

static void client_disconnect(Client *c) {
        c->fd = plx_close(c->fd);
}

/* Read everything waiting for @c; close the fds that came with it. */
static void drain(Client *c) {
        for (;;) {
                FdControl control;
                int fds[FRAME_FDS_MAX];
                struct iovec iov = { .iov_base = rx, .iov_len = sizeof(rx) };
                struct msghdr mh = {
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = &control,
                        .msg_controllen = sizeof(control),
                };
                size_t n_fds;
                ssize_t n;

                if (c->fd < 0)
                        return;
                n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                if (n < 0) {
                        fuzz_check(errno == EAGAIN || errno == ECONNRESET);
                        return;
                }
                if (n == 0) {
                        /* The broker hung up on us: the next record for this client reconnects. */
                        client_disconnect(c);
                        return;
                }
                fuzz_check(!(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)));
                n_fds = fdpass_collect(&mh, fds, ELEMENTSOF(fds));
                for (size_t i = 0; i < n_fds; i++)
                        close(fds[i]);
                check_received(c, rx, (size_t)n, n_fds);
        }
}

/* Run the broker until it has nothing left to do, the clients reading along. */
static void pump(Broker *b, Client *clients) {
        for (int round = 0; round < 256; round++) {
                struct pollfd pfd = { .fd = b->loop.epoll_fd, .events = POLLIN };

                for (size_t i = 0; i < N_CLIENTS; i++)
                        drain(&clients[i]);
                if (list_is_empty(&b->loop.ready) && poll(&pfd, 1, 0) <= 0)
                        break;
                fuzz_check(broker_run_round(b) == 0);
        }
        for (size_t i = 0; i < N_CLIENTS; i++)
                drain(&clients[i]);
}

static void send_frame(Client *c, const Plexus__Header *h, const uint8_t *payload, size_t len,
                       const int *fds, size_t n_fds) {
        FdControl control;
        struct iovec iov = { .iov_base = tx };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        size_t n;

        n = frame_header_pack(h, tx + FRAME_PREFIX_SIZE, FRAME_HEADER_MAX);
        fuzz_check(n > 0);
        frame_prefix(tx, (uint32_t)n);
        n += FRAME_PREFIX_SIZE;
        fuzz_check(n + len <= sizeof(tx));
        memcpy(tx + n, payload, len);
        iov.iov_len = n + len;
        fdpass_attach(&mh, &control, fds, n_fds);
        /* A full socket or a broker that hung up: the frame is lost, as for a real client. */
        (void)!sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void send_raw(Client *c, const uint8_t *buf, size_t len) {
        (void)!send(c->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static uint64_t serial(Client *c, uint8_t byte) {
        /* Mostly fresh serials; small repeated ones to hit duplicate pending calls. */
        if (byte & 0x80)
                return (byte & 0x7f) + 1u;
        return ++c->next_serial + 1000;
}

static void client_connect(Broker *b, Client *c) {
        static const uint8_t hello_payload[] = { 0x08, PLX_PROTOCOL_VERSION, 0x12, 0x04, 'f', 'u', 'z', 'z' };
        Plexus__Header h = PLEXUS__HEADER__INIT;
        int sv[2];
        Peer *p;

        fuzz_check(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
        fuzz_check(peer_new(&p, b, sv[0]) == 0);
        *c = (Client) { .fd = sv[1] };

        h.kind = PLEXUS__KIND__KIND_HELLO;
        h.serial = ++c->next_serial;
        send_frame(c, &h, hello_payload, sizeof(hello_payload), NULL, 0);
}

/* Three fields: every request message has its string in field 1. */
static size_t structured_payload(Input *in, uint8_t *buf) {
        char s[256];
        const uint8_t *p;
        size_t n, len = 0;

        p = take(in, take_u8(in), &n);
        memcpy(s, p, n);
        s[n] = 0;       /* an embedded NUL cuts it short, as protobuf-c would not */
        len += frame_string_field(buf + len, 1, s);
        len += frame_varint_field(buf + len, 2, take_u8(in) & 0x7);
        len += frame_varint_field(buf + len, 3, take_u8(in));
        return len;
}

static void do_call(Client *c, Input *in, const int *fds, size_t n_fds) {
        Plexus__Header h = PLEXUS__HEADER__INIT;
        const uint8_t *payload;
        size_t len;

        h.kind = PLEXUS__KIND__KIND_CALL;
        h.destination = (char *)destinations[take_u8(in) % ELEMENTSOF(destinations)];
        h.member = (char *)members[take_u8(in) % ELEMENTSOF(members)];
        h.flags = take_u8(in) & 0x3;
        h.timeout_ms = take_u8(in);
        h.serial = serial(c, take_u8(in));
        payload = take(in, take_u16(in), &len);
        send_frame(c, &h, payload, len, fds, n_fds);
}

static void do_record(Broker *b, Client *clients, Input *in) {
        static uint8_t payload_buf[FRAME_SIZE_MAX];
        uint8_t op = take_u8(in);
        Client *c = &clients[op % N_CLIENTS];
        Plexus__Header h = PLEXUS__HEADER__INIT;
        const uint8_t *p;
        char topic[256];
        size_t n;

        if (c->fd < 0) {
                client_connect(b, c);
                pump(b, clients);
                return;
        }

        switch (op / N_CLIENTS % 8) {
        case 0:
                p = take(in, take_u16(in), &n);
                send_raw(c, p, n);
                break;
        case 1: {
                uint8_t m = take_u8(in);

                h.kind = PLEXUS__KIND__KIND_CALL;
                h.destination = (char *)BROKER_NAME;
                h.member = (char *)methods[(m & 0x7f) % ELEMENTSOF(methods)];
                if (strcmp(h.member, "BecomeMonitor") == 0)
                        c->maybe_monitor = true;
                if (m & 0x80) {
                        n = structured_payload(in, payload_buf);
                        p = payload_buf;
                } else
                        p = take(in, take_u16(in), &n);
                h.serial = serial(c, take_u8(in));
                send_frame(c, &h, p, n, NULL, 0);
                break;
        }
        case 2:
                do_call(c, in, NULL, 0);
                break;
        case 3:
                p = take(in, take_u8(in), &n);
                memcpy(topic, p, n);
                topic[n] = 0;
                h.kind = PLEXUS__KIND__KIND_SIGNAL;
                h.member = topic;
                h.serial = serial(c, take_u8(in));
                p = take(in, take_u16(in), &n);
                send_frame(c, &h, p, n, NULL, 0);
                break;
        case 4: {
                uint8_t how = take_u8(in);

                h.kind = how & 1 ? PLEXUS__KIND__KIND_ERROR : PLEXUS__KIND__KIND_REPLY;
                h.destination = c->call_sender[0] ? c->call_sender : (char *)":1";
                h.reply_serial = c->call_serial ?: 1;
                h.error_name = how & 1 ? (char *)"org.fuzz.Error" : (char *)"";
                h.serial = serial(c, how & 0xfe);
                p = take(in, take_u16(in), &n);
                send_frame(c, &h, p, n, NULL, 0);
                break;
        }
        case 5:
                if (take_u8(in) & 1)
                        shutdown(c->fd, SHUT_WR);
                client_disconnect(c);
                pump(b, clients);
                client_connect(b, c);
                break;
        case 6: {
                int fds[4];
                size_t k = take_u8(in) % 4 + 1;

                for (size_t i = 0; i < k; i++) {
                        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
                        fuzz_check(fds[i] >= 0);
                }
                do_call(c, in, fds, k);
                for (size_t i = 0; i < k; i++)
                        close(fds[i]);
                break;
        }
        case 7:
                n = take_u8(in);
                memset(payload_buf, 0xff, n);
                send_raw(c, payload_buf, n % 5 == 0 ? n / 5 : n);
                break;
        }
        pump(b, clients);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Client clients[N_CLIENTS];
        Input in = { .p = data, .left = size };
        plx_broker_config config;
        Broker *b;
        int listen_fd, n_fds_before;

        if (!initialized) {
                arena_init(&arena);
                initialized = true;
        }
        /*
         * Counted per input: libFuzzer itself opens fds between inputs
         * (llvm-symbolizer pipes, when it prints a NEW_FUNC line).
         */
        n_fds_before = count_fds(false);

        /*
         * Never connected to: the clients are handed to the broker directly.
         * It must listen all the same, since epoll reports an unconnected
         * socket as hung up, which would keep the loop busy. Autobound to
         * an abstract address: no file to clean up.
         */
        listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        fuzz_check(listen_fd >= 0);
        fuzz_check(bind(listen_fd, &(struct sockaddr) { .sa_family = AF_UNIX }, sizeof(sa_family_t)) == 0);
        fuzz_check(listen(listen_fd, 1) == 0);
        plx_broker_config_init(&config);
        config.listen_fd = listen_fd;
        /* Small limits, so that inputs reach them. */
        config.max_queue_frames = 16;
        config.max_subscriptions = 8;
        config.max_pending_calls = 4;
        config.max_names = 4;
        fuzz_check(plx_broker_new(&b, &config) == 0);

        for (size_t i = 0; i < N_CLIENTS; i++)
                client_connect(b, &clients[i]);
        pump(b, clients);

        while (in.left > 0)
                do_record(b, clients, &in);

        for (size_t i = 0; i < N_CLIENTS; i++)
                client_disconnect(&clients[i]);
        plx_broker_free(b);
        arena_reset(&arena);

        if (count_fds(false) != n_fds_before)
                count_fds(true);
        fuzz_check(count_fds(false) == n_fds_before);
        return 0;
}
