/*
 * Raw protocol client, see raw.h. Nothing here validates what it sends:
 * that is the point. Received frames are split and decoded with the same
 * codec the broker uses, so a test sees exactly what went over the wire.
 */

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"
#include "raw.h"

/**
 * raw_frame_new() - allocate a receive buffer
 *
 * Return: the frame, or NULL without memory.
 */
RawFrame *raw_frame_new(void) {
        RawFrame *f = malloc(sizeof(*f));

        if (f) {
                memset(f, 0, offsetof(RawFrame, buf));
                arena_init(&f->arena);
        }
        return f;
}

/**
 * raw_frame_free() - free a receive buffer
 * @f:          the frame or NULL
 *
 * Return: NULL.
 */
RawFrame *raw_frame_free(RawFrame *f) {
        free(f);
        return NULL;
}

/**
 * raw_connect() - connect a SOCK_SEQPACKET socket without any handshake
 * @address:    the broker's socket path
 *
 * Return: the fd (O_CLOEXEC), or a negative errno.
 */
int raw_connect(const char *address) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(address) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, address);

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int r = -errno;

                close(fd);
                return r;
        }
        return fd;
}

/**
 * raw_send_bytes() - send one datagram as it is
 *
 * Return: 0 or a negative errno (-EMSGSIZE if the kernel refuses its size).
 */
int raw_send_bytes(int fd, const void *buf, size_t size) {
        ssize_t l;

        l = send(fd, buf, size, MSG_NOSIGNAL);
        if (l < 0)
                return -errno;
        return (size_t)l == size ? 0 : -EIO;
}

/**
 * raw_send() - encode @h and send it with @payload as one frame
 *
 * Return: 0 or a negative errno.
 */
int raw_send(int fd, const Plexus__Header *h, const void *payload, size_t size) {
        size_t hlen = plexus__header__get_packed_size(h);
        uint8_t *buf;
        int r;

        buf = malloc(FRAME_PREFIX_SIZE + hlen + size + 1);
        if (!buf)
                return -ENOMEM;
        frame_prefix(buf, (uint32_t)hlen);
        plexus__header__pack(h, buf + FRAME_PREFIX_SIZE);
        if (size > 0)
                memcpy(buf + FRAME_PREFIX_SIZE + hlen, payload, size);
        r = raw_send_bytes(fd, buf, FRAME_PREFIX_SIZE + hlen + size);
        free(buf);
        return r;
}

/**
 * raw_send_hello() - send a HELLO frame
 * @fd:         the socket
 * @serial:     its serial
 * @protocol_version: what to claim
 *
 * Return: 0 or a negative errno.
 */
int raw_send_hello(int fd, uint64_t serial, uint32_t protocol_version) {
        Plexus__Header h = PLEXUS__HEADER__INIT;
        Plexus__Hello hello = PLEXUS__HELLO__INIT;
        uint8_t payload[64];
        size_t n;

        hello.protocol_version = protocol_version;
        hello.description = (char *)"raw test client";
        n = plexus__hello__pack(&hello, payload);

        h.kind = PLEXUS__KIND__KIND_HELLO;
        h.serial = serial;
        return raw_send(fd, &h, payload, n);
}

/**
 * raw_recv() - receive and decode one frame, bounded
 * @fd:         the socket
 * @f:          receives the frame; f->header is NULL if it does not decode
 * @timeout_ms: the bound
 *
 * Return: 1 for a frame, 0 at EOF, -ETIMEDOUT, -ECONNRESET or another
 * negative errno.
 */
int raw_recv(int fd, RawFrame *f, int timeout_ms) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        FrameView v;
        ssize_t l;
        int r;

        do
                r = poll(&pfd, 1, timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        if (r == 0)
                return -ETIMEDOUT;

        l = recv(fd, f->buf, sizeof(f->buf), MSG_DONTWAIT);
        if (l < 0)
                return -errno;
        if (l == 0)
                return 0;

        f->len = (size_t)l;
        f->header = NULL;
        f->payload = NULL;
        f->payload_len = 0;
        arena_reset(&f->arena);
        if (frame_split(f->buf, f->len, &v) == 0 &&
            frame_header_decode(&v, &f->arena, &f->header) == 0) {
                f->payload = v.payload;
                f->payload_len = v.payload_len;
        } else {
                f->header = NULL;
        }
        return 1;
}

/**
 * raw_hello() - do the handshake
 * @fd:         a fresh connection
 * @f:          scratch frame
 * @ret_id:     receives the unique id from the Welcome
 * @size:       capacity of @ret_id
 *
 * Return: 0, -EPROTO if the answer is not a REPLY with a Welcome, or the
 * error of raw_send()/raw_recv().
 */
int raw_hello(int fd, RawFrame *f, char *ret_id, size_t size) {
        Plexus__Welcome *w;
        int r;

        r = raw_send_hello(fd, 1, PLX_PROTOCOL_VERSION);
        if (r < 0)
                return r;
        r = raw_recv(fd, f, harness_timeout_ms(HARNESS_TIMEOUT_MS));
        if (r <= 0)
                return r < 0 ? r : -ECONNRESET;
        if (!f->header || f->header->kind != PLEXUS__KIND__KIND_REPLY || f->header->reply_serial != 1)
                return -EPROTO;

        w = plexus__welcome__unpack(NULL, f->payload_len, f->payload);
        if (!w)
                return -EPROTO;
        r = strlen(w->unique_id) < size && w->unique_id[0] ? 0 : -EPROTO;
        if (r == 0)
                strcpy(ret_id, w->unique_id);
        plexus__welcome__free_unpacked(w, NULL);
        return r;
}

/**
 * raw_wait_eof() - wait for the broker to close, ignoring frames
 * @fd:         the socket
 * @timeout_ms: the bound
 *
 * A reset counts as closed: the kernel reports ECONNRESET instead of EOF
 * when the closing side had unread data.
 *
 * Return: 0 at EOF, -ETIMEDOUT, or another negative errno.
 */
int raw_wait_eof(int fd, int timeout_ms) {
        uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
        uint8_t buf[256];

        for (;;) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                uint64_t now = harness_now_ms();
                ssize_t l;
                int r;

                r = poll(&pfd, 1, now >= deadline ? 0 : (int)(deadline - now));
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (r == 0)
                        return -ETIMEDOUT;
                l = recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
                if (l == 0 || (l < 0 && errno == ECONNRESET))
                        return 0;
                if (l < 0 && errno != EAGAIN && errno != EINTR)
                        return -errno;
        }
}

/**
 * raw_subscriber() - connect, say HELLO and subscribe to @pattern (serial 2)
 * @address:    the broker
 * @pattern:    the subscription
 * @f:          a frame buffer; holds the Subscribe reply on return
 * @ret_id:     receives the unique id
 * @size:       its size
 *
 * Return: the socket, or a negative errno.
 */
int raw_subscriber(const char *address, const char *pattern, RawFrame *f, char *ret_id, size_t size) {
        Plexus__SubscribeRequest req = PLEXUS__SUBSCRIBE_REQUEST__INIT;
        Plexus__Header h = PLEXUS__HEADER__INIT;
        uint8_t payload[300];
        int fd, r;

        fd = raw_connect(address);
        if (fd < 0)
                return fd;
        req.pattern = (char *)pattern;
        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = 2;
        h.destination = (char *)BROKER_NAME;
        h.member = (char *)"Subscribe";
        r = raw_hello(fd, f, ret_id, size);
        if (r == 0)
                r = raw_send(fd, &h, payload, plexus__subscribe_request__pack(&req, payload));
        if (r == 0)
                r = raw_recv(fd, f, harness_timeout_ms(HARNESS_TIMEOUT_MS)) == 1 ? 0 : -EPROTO;
        if (r == 0 && (!f->header || f->header->kind != PLEXUS__KIND__KIND_REPLY || f->header->reply_serial != 2))
                r = -EPROTO;
        if (r < 0) {
                close(fd);
                return r;
        }
        return fd;
}
