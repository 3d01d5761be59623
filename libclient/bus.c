/*
 * plx_bus: one connection to a broker.
 *
 * Sending: a small frame without fds is copied into the bounded write
 * queue and waits for a flush (plx_bus_process() before it reads or when
 * idle, plx_bus_flush(), every wait inside the library, sd-event's prepare
 * step, plx_bus_free(), or the queue reaching BUS_WBATCH_MAX), which writes
 * runs of queued frames with one sendmmsg(). A synchronous call's frame, a
 * frame with fds and a long one go out at once with one sendmsg() of
 * [prefix+header, payload], behind what is queued; on EAGAIN they are
 * queued too. At the bound, sends fail with -ENOBUFS: the caller learns
 * that the broker is not keeping up instead of the library buffering
 * without end.
 *
 * Receiving: each datagram is one frame. One recvmmsg() reads up to
 * BusRx.n_bufs of them into separate buffers (the vector doubles, up to
 * BUS_RX_BATCH_MAX, each time a read fills it, so an idle or ping-pong
 * connection keeps one or two 128 KiB buffers, mostly untouched pages);
 * frames are then decoded one at a time, in order, the header into an
 * arena and copied into a plx_msg, the payload lent from the buffer (see
 * rx_reclaim()). Messages are dispatched one per plx_bus_process() call. A
 * synchronous call reads ahead while it waits, parking what is not its
 * answer in the bounded read queue.
 */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "address.h"
#include "bus-internal.h"
#include "fdpass.h"
#include "header-wire.h"
#include "topic.h"

uint64_t timeout_to_deadline(uint64_t timeout_usec) {
        uint64_t t = timeout_usec == PLX_TIMEOUT_DEFAULT ? BUS_DEFAULT_TIMEOUT_USEC : timeout_usec;

        return now_usec() + MIN(t, UINT64_MAX / 4) + BUS_TIMEOUT_GRACE_USEC;
}

uint32_t timeout_to_ms(uint64_t timeout_usec) {
        if (timeout_usec == PLX_TIMEOUT_DEFAULT)
                return 0;       /* the broker applies its default */
        if (timeout_usec / 1000 >= UINT32_MAX)
                return UINT32_MAX;
        /* Round up: a 100 us timeout must not become "default". */
        return (uint32_t)MAX((timeout_usec + 999) / 1000, 1u);
}

plx_bus *bus_ref(plx_bus *bus) {
        if (bus)
                bus->n_refs++;
        return bus;
}

plx_bus *bus_unref(plx_bus *bus) {
        if (!bus || --bus->n_refs > 0)
                return NULL;
        arena_reset(&bus->arena);
        if (bus->rx)
                for (unsigned int i = 0; i < BUS_RX_BATCH_MAX; i++)
                        rx_buffer_free(bus->rx->buf[i]);
        free(bus->rx);
        free(bus->spare);
        free(bus);
        return NULL;
}

static void wframe_free(WFrame *w) {
        for (size_t i = 0; i < w->n_fds; i++)
                close(w->fds[i]);
        free(w->fds);
        free(w);
}

static void wqueue_clear(plx_bus *bus) {
        WFrame *w;

        while ((w = list_first_entry(&bus->wqueue, WFrame, link))) {
                list_unlink(&w->link);
                wframe_free(w);
        }
        bus->n_wqueue = 0;
        bus->n_wqueue_bytes = 0;
}

/**
 * bus_connection_lost() - the socket is gone: fail what waits on it
 *
 * Pending calls get Disconnected errors through the read queue; sends from
 * now on fail with -ECONNRESET (-ENOTCONN when reconnecting, which starts
 * here: see reconnect.c).
 */
void bus_connection_lost(plx_bus *bus) {
        if (!bus->connected)
                return;
        bus->connected = false;
        wqueue_clear(bus);
        large_connection_lost(bus);
        slot_fail_all_calls(bus);
        reconnect_lost(bus);
}

/* One sendmsg(): a frame and its fds go together or not at all. */
static ssize_t send_with_fds(int fd, struct iovec *iov, size_t n_iov, const int *fds, size_t n_fds) {
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = n_iov };
        FdControl control;

        fdpass_attach(&mh, &control, fds, n_fds);
        return sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* A queued frame could not be sent: answer it locally, as the broker would have. */
static void frame_refused(plx_bus *bus, uint64_t serial, const char *name, const char *text) {
        plx_msg *m;

        if (msg_new_local_error(&m, bus, serial, name, text) < 0)
                return;         /* out of memory: a call still ends at its deadline */
        list_append(&bus->rqueue, &m->link);
        bus->n_rqueue++;
}

/* The fate of queued frame @w, sent or refused: drop it from the queue. */
static void wqueue_pop(plx_bus *bus, WFrame *w) {
        list_unlink(&w->link);
        bus->n_wqueue--;
        bus->n_wqueue_bytes -= w->len;
        wframe_free(w);
}

/*
 * Send the queue in order: runs of frames without fds with one sendmmsg()
 * each, a frame with fds alone with sendmsg() (its control buffer is
 * large, and ETOOMANYREFS must be told to its sender).
 */
static int wqueue_flush(plx_bus *bus) {
        struct mmsghdr mmsg[BUS_WBATCH_MAX];
        struct iovec iov[BUS_WBATCH_MAX];
        WFrame *w;

        while ((w = list_first_entry(&bus->wqueue, WFrame, link))) {
                unsigned int n = 0;
                int k;

                if (w->n_fds) {
                        struct iovec one = { .iov_base = w->data, .iov_len = w->len };

                        if (send_with_fds(bus->fd, &one, 1, w->fds, w->n_fds) < 0) {
                                if (errno == EAGAIN || errno == ENOBUFS)
                                        return 0;
                                if (errno == EINTR)
                                        continue;
                                if (errno != ETOOMANYREFS) {
                                        bus_connection_lost(bus);
                                        return -ECONNRESET;
                                }
                                /*
                                 * Too many of this user's fds are in flight:
                                 * this frame cannot go, the connection is fine.
                                 * Its sender hears of it like of any refusal.
                                 */
                                frame_refused(bus, w->serial, PLX_ERROR_FDS_REJECTED,
                                              "too many file descriptors in flight (ETOOMANYREFS); frame dropped");
                        }
                        wqueue_pop(bus, w);
                        continue;
                }

                for (List *l = &w->link; l != &bus->wqueue && n < BUS_WBATCH_MAX; l = l->next) {
                        WFrame *i = list_entry(l, WFrame, link);

                        if (i->n_fds)
                                break;
                        iov[n] = (struct iovec) { .iov_base = i->data, .iov_len = i->len };
                        mmsg[n] = (struct mmsghdr) { .msg_hdr = { .msg_iov = &iov[n], .msg_iovlen = 1 } };
                        n++;
                }
                k = sendmmsg(bus->fd, mmsg, n, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EAGAIN || errno == ENOBUFS)
                                return 0;
                        if (errno == EINTR)
                                continue;
                        bus_connection_lost(bus);
                        return -ECONNRESET;
                }
                for (int j = 0; j < k; j++)
                        wqueue_pop(bus, list_first_entry(&bus->wqueue, WFrame, link));
                /* Short: the socket is full (an error would repeat on the next call). */
                if ((unsigned int)k < n)
                        return 0;
        }
        return 0;
}

/**
 * bus_send_frame_now() - stamp a serial on @h and send or queue the frame
 * @bus:        the bus
 * @h:          the header; h->serial is assigned here
 * @payload:    borrowed
 * @size:       its length
 * @fds:        fds to pass with the frame, borrowed (a queued frame keeps
 *              duplicates)
 * @n_fds:      how many, at most FRAME_FDS_MAX
 * @now:        send it now, behind what is queued (the caller waits for its
 *              answer next), rather than let a small frame wait for a flush
 *
 * Return: 0, -ECONNRESET, -EMSGSIZE, -ENOBUFS (write queue full), -ENOMEM,
 * -EMFILE (no fd left to keep a queued frame's fds), -EINVAL (also for a
 * string field that is not UTF-8, which the broker would refuse); -ENOTCONN
 * instead of -ECONNRESET while a reconnecting bus has no connection.
 */
int bus_send_frame_now(plx_bus *bus, Plexus__Header *h, const void *payload, size_t size,
                       const int *fds, size_t n_fds, bool now) {
        uint8_t head[FRAME_PREFIX_SIZE + FRAME_SEND_HEADER_MAX];
        struct iovec iov[2];
        size_t hlen, total;
        bool defer;
        WFrame *w;

        if (!bus->connected)
                return bus->reconnect.enabled ? -ENOTCONN : -ECONNRESET;
        if (reconnect_blocks_sends(bus) && h->kind != PLEXUS__KIND__KIND_HELLO)
                return -ENOTCONN;
        if (n_fds > FRAME_FDS_MAX)
                return -EINVAL;

        h->serial = bus->next_serial++;
        hlen = frame_header_pack(h, head + FRAME_PREFIX_SIZE, FRAME_SEND_HEADER_MAX);
        if (hlen == 0)
                return -EMSGSIZE;
        /* A name that is not UTF-8 would cost the connection (docs/protocol.md §3.3): refuse it here. */
        if (header_wire_validate(head + FRAME_PREFIX_SIZE, hlen, NULL, NULL) < 0)
                return -EINVAL;
        total = FRAME_PREFIX_SIZE + hlen + size;
        if (total > bus->max_frame_size)
                return -EMSGSIZE;
        frame_prefix(head, (uint32_t)hlen);

        iov[0] = (struct iovec) { .iov_base = head, .iov_len = FRAME_PREFIX_SIZE + hlen };
        iov[1] = (struct iovec) { .iov_base = (void *)payload, .iov_len = size };

        /*
         * A small frame without fds waits in the queue for the next flush
         * (plx_bus_process(), plx_bus_flush(), a wait for an answer), to
         * go out with others in one sendmmsg(). Anything else goes now,
         * behind what is queued: its errors (EBADF, ETOOMANYREFS) are
         * the caller's to hear, and a long payload is not worth a copy.
         */
        defer = !now && n_fds == 0 && total <= BUS_WBATCH_FRAME_MAX && h->kind != PLEXUS__KIND__KIND_HELLO;
        if (!defer && !list_is_empty(&bus->wqueue)) {
                int r = wqueue_flush(bus);

                if (r < 0)
                        return bus->reconnect.enabled ? -ENOTCONN : r;
        }
        if (!defer && list_is_empty(&bus->wqueue)) {
                for (;;) {
                        if (send_with_fds(bus->fd, iov, size ? 2 : 1, fds, n_fds) >= 0)
                                return 0;
                        if (errno != EINTR)
                                break;
                }
                if (errno == EBADF && n_fds)
                        return -EBADF;  /* one of the caller's fds is not open */
                if (errno == ETOOMANYREFS)
                        return -ETOOMANYREFS;   /* fds in flight: this frame, not the connection */
                if (errno != EAGAIN && errno != ENOBUFS) {
                        bus_connection_lost(bus);
                        /* Reconnecting: not sent, like any frame while disconnected. */
                        return bus->reconnect.enabled ? -ENOTCONN : -ECONNRESET;
                }
        }

        if (bus->n_wqueue >= BUS_WQUEUE_MAX_FRAMES ||
            bus->n_wqueue_bytes + total > BUS_WQUEUE_MAX_BYTES)
                return -ENOBUFS;

        w = calloc(1, sizeof(*w) + total);
        if (!w)
                return -ENOMEM;
        if (n_fds) {
                w->fds = malloc(n_fds * sizeof(int));
                if (!w->fds) {
                        free(w);
                        return -ENOMEM;
                }
                for (; w->n_fds < n_fds; w->n_fds++) {
                        int fd = fcntl(fds[w->n_fds], F_DUPFD_CLOEXEC, 3);

                        if (fd < 0) {
                                int r = -errno;

                                wframe_free(w);
                                return r;
                        }
                        w->fds[w->n_fds] = fd;
                }
        }
        w->len = total;
        w->serial = h->serial;
        memcpy(w->data, head, FRAME_PREFIX_SIZE + hlen);
        if (size)
                memcpy(w->data + FRAME_PREFIX_SIZE + hlen, payload, size);
        list_append(&bus->wqueue, &w->link);
        bus->n_wqueue++;
        bus->n_wqueue_bytes += total;

        /* A full batch goes at once: a burst never waits on the queue's bound. */
        if (defer && bus->n_wqueue >= BUS_WBATCH_MAX) {
                int r = wqueue_flush(bus);

                /* This frame went down with the connection: say so, as an immediate send would. */
                if (r < 0)
                        return bus->reconnect.enabled ? -ENOTCONN : r;
        }
        return 0;
}

/**
 * bus_rx_return() - end @m's loan of a receive buffer; @m is being freed
 */
void bus_rx_return(plx_bus *bus, plx_msg *m) {
        assert(m->rx_slot >= 0 && bus->rx && bus->rx->borrower[m->rx_slot] == m);
        bus->rx->borrower[m->rx_slot] = NULL;
        m->rx_slot = -1;
}

/*
 * Buffer @i is about to be read into while a message still points into it
 * (kept by the application, or parked in the read queue). A message whose
 * payload the application has seen (plx_msg_get_payload()) must keep it
 * where it is: it takes the buffer over, trimmed to the pages it uses. So
 * does a long payload, which a copy would cost more. Others get a copy.
 */
static int rx_reclaim(plx_bus *bus, unsigned int i) {
        BusRx *rx = bus->rx;
        plx_msg *m = rx->borrower[i];
        const uint8_t *p = m->payload;
        uint8_t *copy;

        /* large.c may have pointed the payload elsewhere (the reply buffer of plx_bus_call_into()). */
        if ((uintptr_t)p < (uintptr_t)rx->buf[i] || (uintptr_t)p > (uintptr_t)rx->buf[i] + FRAME_SIZE_MAX) {
                bus_rx_return(bus, m);
                return 0;
        }
        if (m->exposed || m->payload_len >= BUS_RX_HANDOVER_MIN) {
                /* The payload and its NUL. */
                size_t used = (size_t)(p - (const uint8_t *)rx->buf[i]) + m->payload_len + 1;

                m->rx_payload = TAKE_PTR(rx->buf[i]);
                m->rx_payload_map = rx_buffer_trim(m->rx_payload, used);
                bus_rx_return(bus, m);
                return 0;
        }
        copy = malloc(m->payload_len + 1);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, p, m->payload_len + 1);   /* with its NUL */
        if (m->error_message == (const char *)p)
                m->error_message = (const char *)copy;
        m->payload = copy;
        m->rx_payload = copy;
        bus_rx_return(bus, m);
        return 0;
}

/* Make the first @n receive buffers free for a read; returns how many are. */
static unsigned int rx_prepare(plx_bus *bus, unsigned int n) {
        BusRx *rx = bus->rx;

        for (unsigned int i = 0; i < n; i++) {
                if (rx->borrower[i] && rx_reclaim(bus, i) < 0)
                        return i;
                if (!rx->buf[i]) {
                        rx->buf[i] = rx_buffer_new();
                        if (!rx->buf[i])
                                return i;
                }
                rx->iov[i] = (struct iovec) { .iov_base = rx->buf[i], .iov_len = FRAME_SIZE_MAX };
                rx->mmsg[i] = (struct mmsghdr) {
                        .msg_hdr = {
                                .msg_iov = &rx->iov[i],
                                .msg_iovlen = 1,
                                .msg_control = &rx->control[i],
                                .msg_controllen = sizeof(rx->control[i]),
                        },
                };
        }
        return n;
}

/*
 * One recvmmsg() into as many buffers as traffic showed are useful.
 *
 * Return: frames read (> 0), 0 on EAGAIN, negative errno on loss.
 */
static int rx_fill(plx_bus *bus) {
        BusRx *rx = bus->rx;
        unsigned int n;
        int k;

        n = rx_prepare(bus, rx->n_bufs);
        if (n == 0)
                return -ENOMEM;
        for (;;) {
                k = recvmmsg(bus->fd, rx->mmsg, n, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, NULL);
                if (k >= 0)
                        break;
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                if (errno != ECONNRESET) {
                        bus_connection_lost(bus);
                        return -ECONNRESET;
                }
                /*
                 * The broker closed while our frames sat unread in its
                 * socket. The kernel reports that once, ahead of the frames
                 * the broker sent before closing: read them, EOF follows.
                 */
                bus_connection_lost(bus);
        }
        rx->n_frames = (unsigned int)k;
        rx->next = 0;
        /* Fewer frames than buffers: the socket is empty, no need to ask again before waiting. */
        rx->drained = (unsigned int)k < n;
        /* A full read: there may be more, so read more at once next time. */
        if ((unsigned int)k == n && n == rx->n_bufs)
                rx->n_bufs = MIN(rx->n_bufs * 2, BUS_RX_BATCH_MAX);
        return k;
}

/*
 * Every frame of the last read is taken and that read found the socket
 * empty: a read now would say EAGAIN. Only for a caller that read just
 * before, without waiting in between (the socket may have filled since).
 */
static bool rx_drained(plx_bus *bus) {
        return bus->rx->next >= bus->rx->n_frames && bus->rx->drained && list_is_empty(&bus->stash);
}

/**
 * bus_rx_discard() - drop the frames read but not yet taken; the socket is going away
 *
 * Their fds are closed. Messages already made keep their payloads.
 */
void bus_rx_discard(plx_bus *bus) {
        BusRx *rx = bus->rx;
        int fds[FRAME_FDS_MAX];

        if (!rx)
                return;
        for (; rx->next < rx->n_frames; rx->next++) {
                size_t n_fds = fdpass_collect(&rx->mmsg[rx->next].msg_hdr, fds, ELEMENTSOF(fds));

                for (size_t i = 0; i < n_fds; i++)
                        close(fds[i]);
        }
        rx->n_frames = rx->next = 0;
        rx->drained = false;
}

/**
 * bus_send_frame() - bus_send_frame_now(), letting a small frame wait for the next flush
 */
int bus_send_frame(plx_bus *bus, Plexus__Header *h, const void *payload, size_t size,
                   const int *fds, size_t n_fds) {
        return bus_send_frame_now(bus, h, payload, size, fds, n_fds, false);
}

/**
 * bus_read_raw() - take the next frame from the socket
 *
 * Frames come from the last recvmmsg() in order; a new read happens when
 * all of them are taken (see rx_drained() for when not to ask). The
 * message's payload points into its receive buffer, see rx_reclaim().
 *
 * A large frame's payload is not fetched here (see large_process()): its
 * first fd, the memfd or the sender's pidfd, is set aside as carrier_fd.
 *
 * Return: 1 with *@ret set, 0 on EAGAIN, negative errno on loss.
 */
int bus_read_raw(plx_bus *bus, plx_msg **ret) {
        BusRx *rx = bus->rx;
        int fds[FRAME_FDS_MAX];
        struct msghdr *mh;
        Plexus__Header *h;
        unsigned int i;
        size_t n_fds;
        FrameView f;
        size_t n;
        int r;

        /*
         * Read even after a failed send marked the connection lost: frames
         * the broker sent before closing (e.g. the error saying why) are
         * still in the socket, and EOF comes after them.
         */
        if (bus->fd < 0)
                return 0;

        if (rx->next >= rx->n_frames) {
                r = rx_fill(bus);
                if (r <= 0)
                        return r;
        }
        i = rx->next++;
        mh = &rx->mmsg[i].msg_hdr;
        n = rx->mmsg[i].msg_len;

        /*
         * Before anything else: an empty record (which Linux delivers on
         * SOCK_SEQPACKET and which reads like EOF) may carry fds too.
         * Fewer fds than the broker stamped (MSG_CTRUNC: we are out of fds)
         * are handed out as they are; plx_msg_get_n_fds() says how many.
         */
        n_fds = fdpass_collect(mh, fds, ELEMENTSOF(fds));
        if (n == 0) {
                for (size_t j = 0; j < n_fds; j++)
                        close(fds[j]);
                bus_connection_lost(bus);
                return -ECONNRESET;
        }

        arena_reset(&bus->arena);
        if ((mh->msg_flags & MSG_TRUNC) || frame_split(rx->buf[i], n, &f) != 0 ||
            frame_header_decode(&f, &bus->arena, &h) != 0) {
                /* The broker never sends such a frame: the stream cannot be trusted. */
                for (size_t j = 0; j < n_fds; j++)
                        close(fds[j]);
                bus_connection_lost(bus);
                return -EPROTO;
        }

        /* The payload ends the datagram, so the NUL after it fits the buffer's last byte. */
        r = msg_new_from_frame(ret, bus, h, f.payload, f.payload_len, (int)i);
        if (r < 0) {
                for (size_t j = 0; j < n_fds; j++)
                        close(fds[j]);
                return r;
        }
        rx->borrower[i] = *ret;
        if (h->large_size && n_fds > 0) {
                (*ret)->carrier_fd = fds[0];
                msg_adopt_fds(*ret, fds + 1, n_fds - 1);
        } else {
                msg_adopt_fds(*ret, fds, n_fds);
        }

        if (h->delivery) {
                if (h->delivery > bus->last_delivery + 1)
                        bus->n_missed += h->delivery - bus->last_delivery - 1;
                bus->last_delivery = h->delivery;
        }
        return 1;
}

/*
 * The next message in order: first those parked while a large payload was
 * confirmed, then the socket's. Large payloads are fetched here, and the
 * broker's TransferDone notices consumed.
 */
static int read_frame(plx_bus *bus, plx_msg **ret) {
        for (;;) {
                plx_msg *m = list_first_entry(&bus->stash, plx_msg, link);
                int r;

                if (m) {
                        list_unlink(&m->link);
                        bus->n_stash--;
                } else {
                        r = bus_read_raw(bus, &m);
                        if (r <= 0)
                                return r;
                }
                /*
                 * A monitor's copy of a large frame is its descriptor only:
                 * no memfd or pidfd came with it, and it is no receiver of
                 * the transfer, so there is nothing to fetch or acknowledge.
                 */
                r = monitor_takes(bus, m) ? 0 : large_process(bus, &m);
                if (m) {
                        *ret = m;
                        return 1;
                }
                if (r < 0)
                        return r;
        }
}

/**
 * bus_flush_queue() - send what the write queue holds, as far as the socket takes it
 *
 * Return: 0 or -ECONNRESET.
 */
int bus_flush_queue(plx_bus *bus) {
        return bus->connected ? wqueue_flush(bus) : 0;
}

/**
 * bus_read() - move every available frame into the read queue
 * @bus:        the bus
 * @ret_progress: set to true if anything was read
 *
 * Stops at BUS_RQUEUE_MAX queued messages; the socket then holds the rest
 * and the broker's own bounds apply.
 *
 * Return: 0, or negative errno when the connection is lost.
 */
int bus_read(plx_bus *bus, bool *ret_progress) {
        for (bool first = true; bus->n_rqueue < BUS_RQUEUE_MAX; first = false) {
                plx_msg *m;
                int r;

                /* The last read took less than it could: no EAGAIN read to learn the obvious. */
                if (!first && rx_drained(bus))
                        return 0;
                r = read_frame(bus, &m);
                if (r <= 0)
                        return r;
                list_append(&bus->rqueue, &m->link);
                bus->n_rqueue++;
                *ret_progress = true;
        }
        return 0;
}

/**
 * bus_wait() - write what is queued, then sleep until the socket is ready or @deadline passes
 *
 * Return: 0 or negative errno.
 */
int bus_wait(plx_bus *bus, uint64_t deadline) {
        struct pollfd p;
        uint64_t now;
        int ms = -1;

        /* Nothing we wait for may depend on a frame still in our queue. */
        if (bus->connected)
                (void)wqueue_flush(bus);        /* a loss shows as POLLHUP/EOF */
        /* The socket itself, not plx_bus_get_fd(): that may be an epoll fd saying only POLLIN. */
        p = (struct pollfd) { .fd = bus->fd, .events = POLLIN | (list_is_empty(&bus->wqueue) ? 0 : POLLOUT) };
        now = now_usec();

        if (deadline != UINT64_MAX)
                ms = deadline <= now ? 0 : (int)MIN((deadline - now + 999) / 1000, (uint64_t)INT32_MAX);
        if (poll(&p, 1, ms) < 0 && errno != EINTR)
                return -errno;
        return 0;
}

/**
 * bus_await() - read until a message @match accepts arrives
 * @bus:        the bus
 * @deadline:   monotonic usec
 * @match:      the test
 * @userdata:   handed to @match
 * @ret:        the message, written on success
 *
 * Everything else that arrives meanwhile is parked in the read queue.
 *
 * Return: 0, -ETIMEDOUT, -ECONNRESET, or -ENOBUFS when the read queue is
 * full (what we wait for may be behind messages nobody dispatches).
 */
int bus_await(plx_bus *bus, uint64_t deadline, BusMatchFn match, void *userdata, plx_msg **ret) {
        bool renewed = false, waited = false, drained = false;
        uint64_t now;
        int r;

        for (;;) {
                plx_msg *m;

                if (bus->n_rqueue >= BUS_RQUEUE_MAX)
                        return -ENOBUFS;
                if (bus->connected) {
                        r = wqueue_flush(bus);
                        if (r < 0)
                                return r;
                }
                /*
                 * Whatever we wait for was just asked for: sleep before the
                 * first read rather than read, get EAGAIN, and sleep.
                 */
                if (!waited) {
                        waited = true;
                        r = bus_wait(bus, MIN(deadline, lease_next_deadline(bus)));
                        if (r < 0)
                                return r;
                }
                /* Parked the last frame of a read that emptied the socket: wait rather than read. */
                r = drained ? 0 : read_frame(bus, &m);
                drained = false;
                if (r < 0)
                        return r;
                if (r > 0) {
                        if (match(m, userdata)) {
                                *ret = m;
                                return 0;
                        }
                        list_append(&bus->rqueue, &m->link);
                        bus->n_rqueue++;
                        drained = rx_drained(bus);
                        continue;
                }
                if (!bus->connected)
                        return -ECONNRESET;
                now = now_usec();
                if (now >= deadline)
                        return -ETIMEDOUT;
                /* A long wait must not cost the application its leased names. */
                r = lease_renew_due(bus, now, &renewed);
                if (r < 0 && r != -ENOBUFS)
                        return r;
                r = bus_wait(bus, MIN(deadline, lease_next_deadline(bus)));
                if (r < 0)
                        return r;
        }
}

static bool is_answer(plx_msg *m, void *userdata) {
        const uint64_t *serial = userdata;

        /* A monitor's copy of someone else's answer may carry the same serial. */
        return (m->kind == PLX_MSG_REPLY || m->kind == PLX_MSG_ERROR) && m->reply_serial == *serial &&
               !monitor_takes(m->bus, m);
}

/**
 * bus_await_reply() - read until the answer to @serial arrives
 *
 * A reconnecting bus answers a call the lost connection took with a local
 * Disconnected error, as it does for asynchronous calls.
 *
 * Return: as bus_await().
 */
int bus_await_reply(plx_bus *bus, uint64_t serial, uint64_t deadline, plx_msg **ret) {
        int r = bus_await(bus, deadline, is_answer, &serial, ret);

        if (r == -ECONNRESET && bus->reconnect.enabled)
                return reconnect_call_lost(bus, serial, ret);
        return r;
}

/**
 * bus_next_deadline() - when plx_bus_process() must run next at the latest
 *
 * Return: monotonic usec, or UINT64_MAX for never.
 */
uint64_t bus_next_deadline(plx_bus *bus) {
        uint64_t when = UINT64_MAX;
        plx_slot *s;

        /* Renewals wait for a connection: while there is none, a lease due is no deadline. */
        if (bus->connected && !reconnect_blocks_sends(bus))
                when = lease_next_deadline(bus);

        s = list_first_entry(&bus->deadlines, plx_slot, call.deadline_link);
        if (s)
                when = MIN(when, s->call.deadline);
        return MIN(when, reconnect_next_deadline(bus));
}

/**
 * bus_send_hello() - start the handshake on a new connection
 * @bus:        the bus
 * @description: borrowed; NULL for the program name
 * @ret_serial: the HELLO's serial
 *
 * Return: as bus_send_frame().
 */
int bus_send_hello(plx_bus *bus, const char *description, uint64_t *ret_serial) {
        Plexus__Hello hello = PLEXUS__HELLO__INIT;
        Plexus__Header h = PLEXUS__HEADER__INIT;
        uint8_t buf[FRAME_NAME_MAX + 32];
        char desc[FRAME_NAME_MAX + 1];
        int r;

        snprintf(desc, sizeof(desc), "%s", description ?: program_invocation_short_name);
        hello.protocol_version = PLX_PROTOCOL_VERSION;
        hello.description = desc;
        h.kind = PLEXUS__KIND__KIND_HELLO;
        r = bus_send_frame(bus, &h, buf, plexus__hello__pack(&hello, buf), NULL, 0);
        if (r < 0)
                return r;
        *ret_serial = h.serial;
        return 0;
}

/**
 * bus_take_welcome() - read the broker's answer to HELLO
 * @bus:        the bus; its unique id and send limit are set on success
 * @m:          the first frame received, borrowed
 * @serial:     the HELLO's serial
 *
 * Return: 0; -EUSERS or -EACCES when the broker refused us (and hangs up),
 * -EPROTO for any other ERROR or a malformed answer.
 */
int bus_take_welcome(plx_bus *bus, plx_msg *m, uint64_t serial) {
        Plexus__Welcome *w;

        if (m->kind == PLX_MSG_ERROR) {
                /* Told why, then disconnected. */
                if (strcmp(m->error_name, PLX_ERROR_LIMITS_EXCEEDED) == 0)
                        return -EUSERS;
                if (strcmp(m->error_name, PLX_ERROR_ACCESS_DENIED) == 0)
                        return -EACCES;
                return -EPROTO;
        }
        if (m->kind != PLX_MSG_REPLY || m->reply_serial != serial)
                return -EPROTO;

        w = plexus__welcome__unpack(NULL, m->payload_len, m->payload);
        if (!w)
                return -EPROTO;
        if (w->protocol_version != PLX_PROTOCOL_VERSION || !*w->unique_id ||
            strlen(w->unique_id) >= sizeof(bus->unique_id)) {
                plexus__welcome__free_unpacked(w, NULL);
                return -EPROTO;
        }
        snprintf(bus->unique_id, sizeof(bus->unique_id), "%s", w->unique_id);
        if (w->max_frame_size)
                bus->max_frame_size = MIN(w->max_frame_size, FRAME_SEND_MAX);
        bus->max_message_size = w->max_message_size;
        bus->transfer_lease_ms = w->transfer_lease_ms;
        plexus__welcome__free_unpacked(w, NULL);
        return 0;
}

/*
 * The HELLO went out just now: sleep until the answer is there, then read
 * it, rather than read first and meet EAGAIN.
 */
static int await_welcome(plx_bus *bus, uint64_t serial) {
        uint64_t deadline = now_usec() + BUS_DEFAULT_TIMEOUT_USEC;
        int r;

        for (;;) {
                _cleanup_(plx_msg_unrefp_internal) plx_msg *m = NULL;

                r = wqueue_flush(bus);
                if (r < 0)
                        return r;
                r = bus_wait(bus, deadline);
                if (r < 0)
                        return r;
                r = read_frame(bus, &m);
                if (r < 0)
                        return r == -ECONNRESET ? -ECONNREFUSED : r;
                if (r > 0)
                        return bus_take_welcome(bus, m, serial);
                if (now_usec() >= deadline)
                        return -ETIMEDOUT;
        }
}

/*
 * Connects a nonblocking socket to @path. AF_UNIX connects at once, or
 * fails with EAGAIN when the broker's backlog is full; only then is the
 * connect() repeated blocking, which waits for room. Set the other way
 * round (blocking socket, then O_NONBLOCK), every connection paid two
 * fcntl() calls.
 */
static int bus_connect(plx_bus *bus, const char *path) {
        struct sockaddr_un sa;
        socklen_t len;
        int r;

        r = address_to_sockaddr(path, &sa, &len);
        if (r < 0)
                return r;

        bus->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (bus->fd < 0)
                return -errno;

        if (connect(bus->fd, (struct sockaddr *)&sa, len) < 0) {
                if (errno != EAGAIN)
                        return -errno;
                /* A fresh socket's status flags are O_RDWR and what SOCK_NONBLOCK set. */
                if (fcntl(bus->fd, F_SETFL, 0) < 0)
                        return -errno;
                if (connect(bus->fd, (struct sockaddr *)&sa, len) < 0)
                        return -errno;
                if (fcntl(bus->fd, F_SETFL, O_NONBLOCK) < 0)
                        return -errno;
        }
        bus->connected = true;
        return 0;
}

_public_ int plx_bus_new(plx_bus **ret, const char *address, const char *description) {
        _cleanup_(plx_bus_freep) plx_bus *bus = NULL;
        char path[sizeof(((struct sockaddr_un *)NULL)->sun_path)];
        uint64_t serial = 0;
        int r;

        assert_return(ret, -EINVAL);

        if (!address) {
                r = address_default(path, sizeof(path));
                if (r < 0)
                        return r;
                address = path;
        }

        bus = calloc(1, sizeof(*bus));
        if (!bus)
                return -ENOMEM;
        bus->n_refs = 1;
        bus->fd = -1;
        bus->next_serial = 1;
        bus->max_frame_size = FRAME_SEND_MAX;
        list_init(&bus->wqueue);
        list_init(&bus->rqueue);
        list_init(&bus->slots);
        list_init(&bus->deadlines);
        list_init(&bus->subscriptions);
        list_init(&bus->exports);
        list_init(&bus->leases);
        list_init(&bus->lent);
        list_init(&bus->stash);
        bus->large_threshold = PLX_LARGE_THRESHOLD_DEFAULT;
        arena_init(&bus->arena);

        r = reconnect_init(bus, address, description);
        if (r < 0)
                return r;
        /* The buffers themselves come with the first read. */
        bus->rx = calloc(1, sizeof(*bus->rx));
        if (!bus->rx)
                return -ENOMEM;
        bus->rx->n_bufs = 1;

        r = bus_connect(bus, address);
        if (r < 0)
                return r;
        r = bus_send_hello(bus, description, &serial);
        if (r < 0 && r != -ECONNRESET)
                return r;
        /* Even if the broker hung up on us already, read why. */
        r = await_welcome(bus, serial);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(bus);
        return 0;
}

_public_ plx_bus *plx_bus_free(plx_bus *bus) {
        plx_slot *s;
        plx_msg *m;

        if (!bus)
                return NULL;

        plx_bus_detach_event(bus);

        /*
         * Hand over what is queued (publishes and replies wait there for a
         * flush): wait for the socket to take it, but not for long.
         */
        if (bus->connected) {
                uint64_t deadline = now_usec() + BUS_FREE_FLUSH_USEC;

                while (wqueue_flush(bus) >= 0 && !list_is_empty(&bus->wqueue)) {
                        struct pollfd p = { .fd = bus->fd, .events = POLLOUT };
                        uint64_t now = now_usec();

                        if (now >= deadline)
                                break;
                        if (poll(&p, 1, (int)((deadline - now + 999) / 1000)) < 0 && errno != EINTR)
                                break;
                }
        }
        bus->connected = false;
        wqueue_clear(bus);

        while ((m = list_first_entry(&bus->rqueue, plx_msg, link))) {
                list_unlink(&m->link);
                plx_msg_unref(m);
        }
        bus->n_rqueue = 0;
        while ((m = list_first_entry(&bus->stash, plx_msg, link))) {
                list_unlink(&m->link);
                plx_msg_unref(m);
        }
        bus->n_stash = 0;
        large_connection_lost(bus);

        while ((s = list_first_entry(&bus->slots, plx_slot, link))) {
                bool floating = s->floating;

                slot_disconnect(s);
                if (floating)
                        slot_unref(s);
        }
        htable_deinit(&bus->calls);
        htable_deinit(&bus->methods);
        lease_clear(bus);
        reconnect_deinit(bus);

        bus_rx_discard(bus);
        bus->fd = plx_close(bus->fd);
        bus_unref(bus);
        return NULL;
}

_public_ const char *plx_bus_get_unique_id(plx_bus *bus) {
        assert_return(bus, NULL);
        return bus->unique_id;
}

_public_ int plx_bus_get_fd(plx_bus *bus) {
        assert_return(bus, -EINVAL);
        if (bus->reconnect.watch_fd >= 0)
                return bus->reconnect.watch_fd;
        return bus->fd >= 0 ? bus->fd : -ENOTCONN;
}

_public_ int plx_bus_get_events(plx_bus *bus) {
        assert_return(bus, -EINVAL);
        if (bus->reconnect.watch_fd >= 0)
                return reconnect_get_events(bus);
        if (bus->fd < 0)
                return -ENOTCONN;
        return POLLIN | (list_is_empty(&bus->wqueue) ? 0 : POLLOUT);
}

_public_ int plx_bus_get_timeout(plx_bus *bus, int *ret_ms) {
        uint64_t now, when;

        assert_return(bus && ret_ms, -EINVAL);
        if (bus->fd < 0 && bus->reconnect.watch_fd < 0)
                return -ENOTCONN;

        if (bus->n_rqueue > 0 || bus->n_stash > 0 || bus->exit_requested) {
                *ret_ms = 0;
                return 0;
        }
        when = bus_next_deadline(bus);
        if (when == UINT64_MAX) {
                *ret_ms = -1;
                return 0;
        }
        now = now_usec();
        *ret_ms = when <= now ? 0 : (int)MIN((when - now + 999) / 1000, (uint64_t)INT32_MAX);
        return 0;
}

_public_ int plx_bus_flush(plx_bus *bus) {
        int r;

        assert_return(bus, -EINVAL);

        for (;;) {
                if (!bus->connected)
                        return -ECONNRESET;
                r = wqueue_flush(bus);
                if (r < 0)
                        return r;
                if (list_is_empty(&bus->wqueue))
                        return 0;
                r = bus_wait(bus, UINT64_MAX);
                if (r < 0)
                        return r;
        }
}

/**
 * bus_dispatch() - hand one received message to whoever waits for it
 *
 * Return: a negative callback result, or 0.
 */
int bus_dispatch(plx_bus *bus, plx_msg *m) {
        plx_slot *s;

        if (reconnect_takes(bus, m))
                return reconnect_dispatch(bus, m);
        if (monitor_takes(bus, m))
                return bus->monitor_callback(m, bus->monitor_userdata);

        switch (m->kind) {
        case PLX_MSG_REPLY:
        case PLX_MSG_ERROR:
                s = slot_call_find(bus, m->reply_serial);
                if (s)
                        return slot_dispatch_reply(s, m);
                if (m->kind == PLX_MSG_ERROR) {
                        bus->n_stray_errors++;
                        if (bus->error_handler)
                                return bus->error_handler(m, bus->error_userdata);
                }
                return 0;
        case PLX_MSG_CALL:
                return slot_dispatch_call(bus, m);
        case PLX_MSG_SIGNAL:
                return slot_dispatch_signal(bus, m);
        default:
                return 0;
        }
}

_public_ int plx_bus_process(plx_bus *bus) {
        bool progress = false;
        plx_msg *m;
        int r;

        assert_return(bus, -EINVAL);
        if (bus->reconnect.state != RECONNECT_IDLE) {
                bool done = false;

                r = reconnect_step(bus, &done);
                if (done)
                        return r;
        }
        if (bus->fd < 0)
                return -ENOTCONN;

        /*
         * Read only when nothing is waiting: a read per dispatched message
         * would mostly say EAGAIN. Write then too, before the read: the
         * answers of the messages dispatched since go out together, and
         * ahead of the wait that may follow.
         */
        if (bus->n_rqueue == 0) {
                if (bus->connected) {
                        r = wqueue_flush(bus);
                        if (r < 0 && r != -ECONNRESET)
                                return r;
                }
                /*
                 * The messages of a read that emptied the socket are all
                 * dispatched, one per call, and this is the call after the
                 * last: another read would say EAGAIN. Idle once, so that
                 * the caller waits for the fd (a frame that came since
                 * makes it readable); the call after that reads.
                 */
                if (bus->dispatched && rx_drained(bus)) {
                        bus->rx->drained = false;
                } else {
                        r = bus_read(bus, &progress);
                        if (r < 0 && r != -ECONNRESET)
                                return r;
                }
        }

        bus->dispatched = false;
        m = list_first_entry(&bus->rqueue, plx_msg, link);
        if (m) {
                list_unlink(&m->link);
                bus->n_rqueue--;
                bus->dispatched = true;
                r = bus_dispatch(bus, m);
                plx_msg_unref(m);
                return r < 0 ? r : 1;
        }

        r = slot_expire_calls(bus, now_usec(), &progress);
        if (r < 0)
                return r;
        if (bus->connected && !reconnect_blocks_sends(bus)) {
                r = lease_renew_due(bus, now_usec(), &progress);
                if (r < 0 && r != -ECONNRESET && r != -ENOBUFS)
                        return r;
        }

        /* All that came before the end is dispatched: now tell of the loss. */
        if (!bus->connected && bus->n_rqueue == 0 && bus->n_stash == 0)
                return reconnect_drained(bus);
        /* Idle: the caller is about to wait, so nothing may stay queued that the socket takes. */
        if (bus->connected && !progress) {
                r = wqueue_flush(bus);
                if (r < 0 && r != -ECONNRESET)
                        return r;
        }
        return progress ? 1 : 0;
}

_public_ void plx_bus_exit(plx_bus *bus, int code) {
        if (!bus)
                return;
        bus->exit_requested = true;
        bus->exit_code = code;
}

_public_ int plx_bus_run(plx_bus *bus) {
        int r, ms;

        assert_return(bus, -EINVAL);
        bus->exit_requested = false;

        for (;;) {
                r = plx_bus_process(bus);
                if (r < 0)
                        return r;
                if (bus->exit_requested) {
                        bus->exit_requested = false;
                        return bus->exit_code;
                }
                if (r > 0)
                        continue;

                r = plx_bus_get_timeout(bus, &ms);
                if (r < 0)
                        return r;
                {
                        struct pollfd p = { .fd = plx_bus_get_fd(bus), .events = (short)plx_bus_get_events(bus) };

                        if (poll(&p, 1, ms) < 0 && errno != EINTR)
                                return -errno;
                }
        }
}

_public_ void plx_bus_set_error_handler(plx_bus *bus, plx_error_fn callback, void *userdata) {
        if (!bus)
                return;
        bus->error_handler = callback;
        bus->error_userdata = userdata;
}

_public_ uint64_t plx_bus_get_n_missed(plx_bus *bus) {
        return bus ? bus->n_missed : 0;
}
