/*
 * Peers: reading, batching, queueing and writing frames.
 *
 * Reading: recvmmsg() takes up to PEER_READ_BATCH frames from a peer at
 * once, into the broker's receive slots, and each is routed in turn. Fewer
 * frames than asked for means the socket is drained: edge-triggered epoll
 * reports the next one, so no read that ends in EAGAIN is needed. At most
 * PEER_READ_BATCH frames are read from one peer per round, so that one
 * client's burst does not starve the others: every ready peer gets its
 * batch in the same round, in the order epoll reported them.
 *
 * Writing in batches: a frame from a client whose header and payload lie
 * in a receive slot is not sent at once. peer_send() appends it to its
 * receiver's batch (a small entry that points into the slot and holds the
 * receiver's stamp), and once the read batch is routed, peer_flush_batches()
 * sends each receiver's frames with one sendmmsg(). Fan-out of a burst to N
 * subscribers thus costs N system calls per read batch, not one per
 * delivery, and so does a burst of pipelined calls to one service. A batch
 * of one frame goes out with sendmsg(): a lone call costs what it did.
 *
 * A read batch whose frames go to several receivers (fan-out) is flushed
 * through io_uring where the build and the kernel allow it (send-uring.h):
 * one io_uring_enter() sends every receiver's frames, each receiver's
 * linked so that the first its socket refuses cancels the rest, which are
 * then queued in order exactly as after a short sendmmsg(). Besides the
 * system calls saved, the broker is not preempted by each receiver it wakes
 * between two calls (docs/performance.md §9). With one receiver io_uring
 * loses, and sendmmsg() stays.
 *
 * Batched frames count against the receiver's queue limits (and its uid's
 * quota) as if they were queued, and what the socket does not take is
 * queued at the flush: a frame accepted into a batch can always be kept,
 * so the router's answer ("sent or queued") stays true. Frames that cannot
 * be batched (the broker's own, frames with fds, any frame while the peer
 * has a queue) first flush the receiver's batch, so every receiver gets its
 * frames in routing order.
 *
 * Queueing: a frame the socket does not take (EAGAIN) is copied into a
 * Message and queued; EPOLLOUT, registered only while frames are queued,
 * then drains the queue in order. SOCK_SEQPACKET sends are all-or-nothing,
 * so there are no partial frames to track.
 *
 * A peer whose own queue is full is not read from until it drains below
 * half: whatever it sends next could make the broker queue more for it
 * (errors, replies), and this is what bounds those "forced" frames (see
 * queue.h). A peer with frames queued is read one frame at a time, so that
 * this check comes between any two of its frames, as before batching.
 */

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fdpass.h"
#include "monitor.h"
#include "peer.h"
#include "router.h"
#include "send-uring.h"
#include "util.h"

/* Entries in the broker's batch pool; a full pool is flushed early. */
#define BATCH_ENTRIES_MAX 4096u
/* Datagrams per sendmmsg(). */
#define BATCH_SEND_MAX 64u
#define BATCH_NONE UINT32_MAX

/* Bytes a queued frame is charged: the delivery field is at most 11. */
#define FRAME_DELIVERY_FIELD_MAX 11u

/*
 * The broker's receive slots, set up once: between reads only what
 * recvmmsg() changed is reset, for the entries it filled.
 */
typedef struct PeerRxSlots {
        struct mmsghdr mm[PEER_READ_BATCH];
        struct iovec iov[PEER_READ_BATCH];
        FdControl control[PEER_READ_BATCH];
        uint8_t *buf[PEER_READ_BATCH];  /* FRAME_SIZE_MAX bytes each */
} PeerRxSlots;

/*
 * What one io_uring submission borrows: a datagram per request, valid until
 * send_ring_submit() returns, and the receivers whose chains it carries.
 */
typedef struct PeerTxSlots {
        struct msghdr mh[SEND_RING_ENTRIES];
        struct iovec iov[SEND_RING_ENTRIES][5];
        uint8_t prefix[SEND_RING_ENTRIES][FRAME_PREFIX_SIZE];
        uint8_t field[SEND_RING_ENTRIES][FRAME_DELIVERY_FIELD_MAX];
        size_t len[SEND_RING_ENTRIES];
        int32_t res[SEND_RING_ENTRIES];
        Peer *peer[SEND_RING_ENTRIES];          /* receivers, in submission order */
        unsigned first[SEND_RING_ENTRIES];      /* each one's first request */
} PeerTxSlots;

/* A frame in a receiver's batch: points into a receive slot until flushed. */
typedef struct BatchEntry {
        uint32_t next;                  /* the receiver's next entry, or BATCH_NONE */
        uint32_t header_len;
        uint32_t stamp_len;
        const uint8_t *header;
        const uint8_t *payload;
        size_t payload_len;
        size_t size;                    /* as charged to a queue */
        uint64_t delivery;
        uint64_t origin_id;
        uint64_t origin_serial;
        uint8_t stamp[FRAME_STAMP_MAX];
} BatchEntry;

static size_t out_frame_size(const OutFrame *f) {
        return FRAME_PREFIX_SIZE + f->header_len + f->stamp_len + FRAME_DELIVERY_FIELD_MAX + f->payload_len;
}

/*
 * Set up io_uring for fan-out rounds unless configured off. Whatever goes
 * wrong, the broker sends with sendmmsg() for its whole life: io_uring is
 * an optimisation, and kernels refuse it for many reasons (too old,
 * kernel.io_uring_disabled, seccomp, RLIMIT_MEMLOCK). Said once, at start.
 */
static void peer_io_init_ring(Broker *b) {
        _cleanup_(send_ring_freep) SendRing *ring = NULL;
        int r;

        if (!b->config.io_uring) {
                broker_log(b, LOG_INFO, "io_uring turned off, sending with sendmmsg()");
                return;
        }
        r = send_ring_new(&ring);
        if (r == -EOPNOTSUPP) {
                broker_log(b, LOG_INFO, "built without io_uring, sending with sendmmsg()");
                return;
        }
        if (r < 0) {
                broker_log(b, LOG_NOTICE, "io_uring unavailable (%s), sending with sendmmsg()", strerror(-r));
                return;
        }
        b->tx_slots = calloc(1, sizeof(*b->tx_slots));
        if (!b->tx_slots) {
                broker_log(b, LOG_NOTICE, "io_uring unavailable (%s), sending with sendmmsg()", strerror(ENOMEM));
                return;
        }
        b->send_ring = TAKE_PTR(ring);
        broker_log(b, LOG_INFO, "sending fan-out through io_uring");
}

/* After a failed submission: nothing was sent, sendmmsg() from now on. */
static void peer_io_drop_ring(Broker *b, int error) {
        broker_log(b, LOG_NOTICE, "io_uring submission failed (%s), sending with sendmmsg() from now on",
                   strerror(-error));
        b->send_ring = send_ring_free(b->send_ring);
        free(b->tx_slots);
        b->tx_slots = NULL;
}

/*
 * How many frames one recvmmsg() may take. Each may carry up to
 * FRAME_FDS_MAX fds, which the kernel installs in our fd table before any
 * frame is routed (and closed after); a batch must not be able to fill the
 * table, or the fds of its later frames are lost (MSG_CTRUNC: refused with
 * FdsRejected) and accept() fails meanwhile. Half the table is for queued
 * fds (see broker.c), a quarter for connections: a read batch may take the
 * last quarter. With 65,536 fds (plexusd.service) that is all 32 slots;
 * with the 1,024 of a bare shell, one frame at a time, as before batching.
 */
static unsigned rx_batch_max(void) {
        struct rlimit rl;
        uint64_t n;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
                return PEER_READ_BATCH;
        n = (uint64_t)rl.rlim_cur / 4 / FRAME_FDS_MAX;
        return (unsigned)MAX(1u, MIN(n, (uint64_t)PEER_READ_BATCH));
}

/**
 * peer_io_init() - allocate the broker's receive slots, set up io_uring
 *
 * io_uring is used when b->config.io_uring is set and the build and the
 * kernel allow it; else the broker sends with sendmmsg() (not an error).
 *
 * Return: 0 or -ENOMEM.
 */
int peer_io_init(Broker *b) {
        PeerRxSlots *rx;

        rx = b->rx_slots = calloc(1, sizeof(*b->rx_slots));
        if (!rx)
                return -ENOMEM;
        for (size_t i = 0; i < PEER_READ_BATCH; i++) {
                /* Only pages that frames touched become resident. */
                rx->buf[i] = malloc(FRAME_SIZE_MAX);
                if (!rx->buf[i])
                        return -ENOMEM;
                rx->iov[i] = (struct iovec) { .iov_base = rx->buf[i], .iov_len = FRAME_SIZE_MAX };
                rx->mm[i].msg_hdr = (struct msghdr) {
                        .msg_iov = &rx->iov[i],
                        .msg_iovlen = 1,
                        .msg_control = &rx->control[i],
                        .msg_controllen = sizeof(rx->control[i]),
                };
        }
        b->rx_batch_max = rx_batch_max();
        peer_io_init_ring(b);
        return 0;
}

/**
 * peer_io_deinit() - free what peer_io_init() allocated; no-op when it did not run
 */
void peer_io_deinit(Broker *b) {
        if (b->rx_slots)
                for (size_t i = 0; i < PEER_READ_BATCH; i++)
                        free(b->rx_slots->buf[i]);
        free(b->rx_slots);
        b->rx_slots = NULL;
        free(b->batch);
        b->batch = NULL;
        b->send_ring = send_ring_free(b->send_ring);
        free(b->tx_slots);
        b->tx_slots = NULL;
}

static void iov_frame(struct iovec iov[static 5], uint8_t prefix[static FRAME_PREFIX_SIZE],
                      uint8_t field[static FRAME_DELIVERY_FIELD_MAX],
                      const uint8_t *header, size_t header_len, const uint8_t *stamp, size_t stamp_len,
                      const uint8_t *payload, size_t payload_len, uint64_t delivery) {
        size_t field_len = frame_varint_field(field, FRAME_FIELD_DELIVERY, delivery);

        frame_prefix(prefix, (uint32_t)(header_len + stamp_len + field_len));
        iov[0] = (struct iovec) { .iov_base = prefix, .iov_len = FRAME_PREFIX_SIZE };
        iov[1] = (struct iovec) { .iov_base = (void *)header, .iov_len = header_len };
        iov[2] = (struct iovec) { .iov_base = (void *)stamp, .iov_len = stamp_len };
        iov[3] = (struct iovec) { .iov_base = field, .iov_len = field_len };
        iov[4] = (struct iovec) { .iov_base = (void *)payload, .iov_len = payload_len };
}

static int peer_sendmsg(Peer *p, const uint8_t *header, size_t header_len,
                        const uint8_t *stamp, size_t stamp_len,
                        const uint8_t *payload, size_t payload_len,
                        const int *fds, size_t n_fds, uint64_t delivery) {
        FdControl control;
        uint8_t prefix[FRAME_PREFIX_SIZE], field[FRAME_DELIVERY_FIELD_MAX];
        struct iovec iov[5];
        struct msghdr mh = {
                .msg_iov = iov,
                .msg_iovlen = 5,
        };
        ssize_t n;

        iov_frame(iov, prefix, field, header, header_len, stamp, stamp_len, payload, payload_len, delivery);
        fdpass_attach(&mh, &control, fds, n_fds);
        n = sendmsg(p->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0)
                return -errno;

        p->broker->stats.n_fds_passed += n_fds;
        p->n_frames_out++;
        p->n_bytes_out += (uint64_t)n;
        return 0;
}

static void peer_update_backpressure(Peer *p) {
        if (!p->reading_paused && queue_is_full(&p->queue)) {
                p->reading_paused = true;
                loop_source_deselect(&p->source, EPOLLIN);
        } else if (p->reading_paused && p->queue.n_entries <= p->queue.max_entries / 2 &&
                   p->queue.n_bytes <= p->queue.max_bytes / 2) {
                p->reading_paused = false;
                if (peer_is_alive(p) && p->broker->state == BROKER_STATE_RUNNING)
                        loop_source_select(&p->source, EPOLLIN);
        }
}

/*
 * Copy a frame into a Message (once per frame: receivers of a fan-out share
 * it through f->msg) and queue it. Returns 0, PEER_E_QUEUE_FULL, or -ENOMEM.
 */
static int peer_enqueue(Peer *p, OutFrame *f, uint64_t delivery, size_t size, bool force) {
        int r;

        if (!f->msg) {
                r = message_new(&f->msg, f->header, f->header_len, f->stamp, f->stamp_len,
                                f->payload, f->payload_len, f->fds, f->n_fds);
                if (r < 0)
                        return r;
                f->msg->origin_id = f->origin_id;
                f->msg->origin_serial = f->origin_serial;
        }
        r = queue_push(&p->queue, f->msg, delivery, size, force);
        if (r > 0)
                return PEER_E_QUEUE_FULL;
        if (r < 0)
                return r;

        loop_source_select(&p->source, EPOLLOUT);
        peer_update_backpressure(p);
        return 0;
}

/* A frame the broker must keep could not be: end the connection instead. */
static void peer_enqueue_failed(Peer *p) {
        peer_log(p, LOG_WARNING, "out of memory queueing a frame, disconnecting");
        peer_hangup(p);
}

static void batch_unlink(Peer *p) {
        p->batch_head = p->batch_tail = BATCH_NONE;
        p->n_batch = 0;
        p->batch_bytes = 0;
        list_unlink(&p->batch_link);
}

/*
 * What the socket did not take at a flush goes to the queue, in order. Its
 * room was checked when the frames joined the batch, so the push is forced.
 */
static void batch_queue_rest(Peer *p, uint32_t i) {
        Broker *b = p->broker;

        for (; i != BATCH_NONE && p->state != PEER_STATE_DEAD; i = b->batch[i].next) {
                const BatchEntry *e = &b->batch[i];
                OutFrame f = {
                        .header = e->header,
                        .header_len = e->header_len,
                        .stamp = e->stamp,
                        .stamp_len = e->stamp_len,
                        .payload = e->payload,
                        .payload_len = e->payload_len,
                        .origin_id = e->origin_id,
                        .origin_serial = e->origin_serial,
                };
                int r;

                r = peer_enqueue(p, &f, e->delivery, e->size, true);
                out_frame_deinit(&f);
                if (r != 0)
                        peer_enqueue_failed(p);
        }
}

/**
 * peer_flush_batch() - send the frames batched for @p
 * @p:          the receiver; may have no batch
 *
 * One sendmmsg() for up to BATCH_SEND_MAX frames (sendmsg() for one);
 * whatever the socket does not take is queued.
 */
void peer_flush_batch(Peer *p) {
        Broker *b = p->broker;
        struct mmsghdr mm[BATCH_SEND_MAX];
        struct iovec iov[BATCH_SEND_MAX][5];
        uint8_t prefix[BATCH_SEND_MAX][FRAME_PREFIX_SIZE];
        uint8_t field[BATCH_SEND_MAX][FRAME_DELIVERY_FIELD_MAX];
        uint32_t i = p->batch_head;

        if (p->n_batch == 0)
                return;

        /* A CLOSING peer still gets what was routed to it before. */
        while (i != BATCH_NONE && p->state != PEER_STATE_DEAD) {
                uint32_t first = i;
                unsigned n = 0;
                int sent;

                for (; i != BATCH_NONE && n < BATCH_SEND_MAX; i = b->batch[i].next, n++) {
                        const BatchEntry *e = &b->batch[i];

                        iov_frame(iov[n], prefix[n], field[n], e->header, e->header_len, e->stamp,
                                  e->stamp_len, e->payload, e->payload_len, e->delivery);
                        mm[n] = (struct mmsghdr) {
                                .msg_hdr = { .msg_iov = iov[n], .msg_iovlen = 5 },
                        };
                }

                if (n == 1) {
                        ssize_t len = sendmsg(p->fd, &mm[0].msg_hdr, MSG_DONTWAIT | MSG_NOSIGNAL);

                        sent = len < 0 ? -1 : 1;
                        mm[0].msg_len = len < 0 ? 0 : (unsigned)len;
                } else {
                        sent = sendmmsg(p->fd, mm, n, MSG_DONTWAIT | MSG_NOSIGNAL);
                }
                if (sent < 0) {
                        int e = errno;

                        if (e == EAGAIN || e == ENOBUFS) {
                                loop_source_clear(&p->source, EPOLLOUT);
                                batch_queue_rest(p, first);
                        } else {
                                peer_log(p, LOG_DEBUG, "send failed: %s", strerror(e));
                                peer_hangup(p);
                        }
                        break;
                }

                p->n_frames_out += (unsigned)sent;
                for (int k = 0; k < sent; k++)
                        p->n_bytes_out += mm[k].msg_len;
                /* sendmmsg() stops at the first frame the socket does not take. */
                if ((unsigned)sent < n) {
                        i = first;
                        for (int k = 0; k < sent; k++)
                                i = b->batch[i].next;
                }
        }
        batch_unlink(p);
}

/*
 * Map the results of @p's chain, which starts at request @s, as
 * peer_flush_batch() maps sendmmsg()'s: count what was sent, queue the
 * rest from the first frame refused, hang up on any other error. Touches
 * no other peer, so the order of receivers does not matter.
 */
static void batch_map_ring_results(Peer *p, unsigned s) {
        Broker *b = p->broker;
        PeerTxSlots *tx = b->tx_slots;

        for (uint32_t i = p->batch_head; i != BATCH_NONE; i = b->batch[i].next, s++) {
                int32_t res = tx->res[s];

                if (res >= 0 && (size_t)res == tx->len[s]) {
                        p->n_frames_out++;
                        p->n_bytes_out += (uint64_t)res;
                        continue;
                }
                /*
                 * -ECANCELED follows the refused frame in its chain: it
                 * was not tried. First in a chain it cannot happen, and if
                 * it did, the frame would be queued all the same.
                 */
                if (res == -EAGAIN || res == -ENOBUFS || res == -ECANCELED) {
                        if (res != -ECANCELED)
                                loop_source_clear(&p->source, EPOLLOUT);
                        batch_queue_rest(p, i);
                        break;
                }
                /* A datagram goes whole or not at all: a short count is an error too. */
                if (res >= 0)
                        peer_log(p, LOG_DEBUG, "send failed: %d of %zu bytes sent", (int)res, tx->len[s]);
                else
                        peer_log(p, LOG_DEBUG, "send failed: %s", strerror(-res));
                peer_hangup(p);
                break;
        }
        peer_drop_batch(p);
}

/*
 * Flush the receivers' batches through io_uring, in submissions of whole
 * chains of at most SEND_RING_ENTRIES frames. A receiver with more frames
 * than that is left to sendmmsg() (a read batch routes at most
 * PEER_READ_BATCH frames to one receiver, so this does not happen in
 * practice). Receivers leave b->batch_peers when their chain is pushed; what
 * is left there, on return, peer_flush_batch() sends.
 */
static void peer_flush_batches_ring(Broker *b) {
        PeerTxSlots *tx = b->tx_slots;
        Peer *p;

        while (b->send_ring && !list_is_empty(&b->batch_peers)) {
                unsigned n = 0, n_peers = 0;
                int r;

                while ((p = list_first_entry(&b->batch_peers, Peer, batch_link))) {
                        if (p->n_batch > SEND_RING_ENTRIES) {
                                peer_flush_batch(p);
                                continue;
                        }
                        if (p->n_batch > send_ring_space(b->send_ring))
                                break;

                        tx->peer[n_peers] = p;
                        tx->first[n_peers++] = n;
                        for (uint32_t i = p->batch_head; i != BATCH_NONE; i = b->batch[i].next, n++) {
                                const BatchEntry *e = &b->batch[i];

                                iov_frame(tx->iov[n], tx->prefix[n], tx->field[n], e->header, e->header_len,
                                          e->stamp, e->stamp_len, e->payload, e->payload_len, e->delivery);
                                tx->mh[n] = (struct msghdr) { .msg_iov = tx->iov[n], .msg_iovlen = 5 };
                                tx->len[n] = 0;
                                for (size_t k = 0; k < 5; k++)
                                        tx->len[n] += tx->iov[n][k].iov_len;
                                send_ring_push(b->send_ring, p->fd, &tx->mh[n], e->next != BATCH_NONE);
                        }
                        /* Its chain stays in b->batch, reached from batch_head, until mapped. */
                        list_unlink(&p->batch_link);
                }
                if (n_peers == 0)
                        continue;

                r = send_ring_submit(b->send_ring, tx->res);
                if (r < 0) {
                        /* Nothing went out: these receivers get sendmmsg(), like everyone from now on. */
                        for (unsigned k = 0; k < n_peers; k++)
                                peer_flush_batch(tx->peer[k]);
                        peer_io_drop_ring(b, r);        /* frees tx */
                        return;
                }
                for (unsigned k = 0; k < n_peers; k++)
                        batch_map_ring_results(tx->peer[k], tx->first[k]);
        }
}

static bool batch_several_receivers(const Broker *b) {
        return !list_is_empty(&b->batch_peers) && b->batch_peers.next->next != &b->batch_peers;
}

/**
 * peer_flush_batches() - flush every receiver's batch; the receive slots may be reused after
 */
void peer_flush_batches(Broker *b) {
        Peer *p;

        /* io_uring pays only when the round reaches several receivers (§9.2 of performance.md). */
        if (b->send_ring && batch_several_receivers(b))
                peer_flush_batches_ring(b);
        while ((p = list_first_entry(&b->batch_peers, Peer, batch_link)))
                peer_flush_batch(p);
        b->n_batch = 0;
}

/*
 * Append @f to @p's batch. Returns 0, or 1 when it cannot join: the pool is
 * full (flush and retry) or the queue limits, counting what the batch
 * holds, have no room for it (flush: the socket may take the batch).
 */
static int batch_add(Peer *p, const OutFrame *f, uint64_t delivery, size_t size) {
        Broker *b = p->broker;
        BatchEntry *e;
        uint32_t i;

        if (b->n_batch >= BATCH_ENTRIES_MAX ||
            queue_room_after(&p->queue, p->n_batch, p->batch_bytes, size, 0) != 0 ||
            f->stamp_len > sizeof(e->stamp))
                return 1;
        if (!b->batch) {
                b->batch = malloc(BATCH_ENTRIES_MAX * sizeof(*b->batch));
                if (!b->batch)
                        return 1;
        }

        i = (uint32_t)b->n_batch++;
        e = &b->batch[i];
        e->next = BATCH_NONE;
        e->header = f->header;
        e->header_len = (uint32_t)f->header_len;
        e->payload = f->payload;
        e->payload_len = f->payload_len;
        e->stamp_len = (uint32_t)f->stamp_len;
        memcpy(e->stamp, f->stamp, f->stamp_len);
        e->size = size;
        e->delivery = delivery;
        e->origin_id = f->origin_id;
        e->origin_serial = f->origin_serial;

        if (p->n_batch == 0) {
                p->batch_head = i;
                list_append(&b->batch_peers, &p->batch_link);
        } else {
                b->batch[p->batch_tail].next = i;
        }
        p->batch_tail = i;
        p->n_batch++;
        p->batch_bytes += size;
        return 0;
}

/* Whether @f may wait in a batch: its bytes outlive the routing of this read batch. */
static bool batchable(const Peer *p, const OutFrame *f) {
        return f->stable && p->broker->batch_open && f->n_fds == 0 && queue_is_empty(&p->queue);
}

/**
 * peer_send() - deliver a frame to @p: batch it, send it, or queue it
 * @p:          the receiver
 * @f:          the frame; f->msg is created here if the frame must be queued
 * @force:      queue even beyond the limits (see queue.h for when)
 *
 * Every call takes one delivery number, whether or not the frame gets
 * through, so that the receiver can see a gap where it missed one.
 *
 * Return: 0 when batched, sent or queued (or when @p is dead: callers are
 * told by router_peer_gone()), PEER_E_QUEUE_FULL or PEER_E_FDS when
 * refused.
 */
int peer_send(Peer *p, OutFrame *f, bool force) {
        uint64_t delivery = ++p->n_delivered;
        size_t size = out_frame_size(f);
        int r;

        if (p->state == PEER_STATE_DEAD)
                return 0;

        if (batchable(p, f)) {
                bool pool_full;

                if (batch_add(p, f, delivery, size) == 0)
                        return 0;
                /*
                 * The pool or the limits say no. Sending what is batched
                 * may make room: then try once more. With nothing batched
                 * for @p the limits would say no again.
                 */
                pool_full = p->broker->n_batch >= BATCH_ENTRIES_MAX;
                if (pool_full || p->n_batch > 0) {
                        if (pool_full)
                                peer_flush_batches(p->broker);
                        else
                                peer_flush_batch(p);
                        if (p->state == PEER_STATE_DEAD)
                                return 0;
                        if (batchable(p, f) && batch_add(p, f, delivery, size) == 0)
                                return 0;
                }
        }
        /* Whatever waits in the batch goes first. */
        peer_flush_batch(p);
        if (p->state == PEER_STATE_DEAD)
                return 0;

        if (queue_is_empty(&p->queue)) {
                r = peer_sendmsg(p, f->header, f->header_len, f->stamp, f->stamp_len,
                                 f->payload, f->payload_len, f->fds, f->n_fds, delivery);
                if (r == 0)
                        return 0;
                /*
                 * The kernel limits fds in flight per user (RLIMIT_NOFILE): a
                 * receiver that does not read holds them. Refuse this frame,
                 * not the connection.
                 */
                if (r == -ETOOMANYREFS)
                        return PEER_E_FDS;
                if (r != -EAGAIN && r != -ENOBUFS) {
                        peer_log(p, LOG_DEBUG, "send failed: %s", strerror(-r));
                        peer_hangup(p);
                        return 0;
                }
                loop_source_clear(&p->source, EPOLLOUT);
        }

        if (!force) {
                r = queue_room(&p->queue, size, f->n_fds);
                if (r == QUEUE_E_QUOTA) {
                        /* Its uid (or all uids) hold too much: refused like a full queue. */
                        p->broker->stats.n_user_quota++;
                        if (log_limit_pass(&p->broker->quota_log_limit, &p->broker->log, now_usec()))
                                peer_log(p, LOG_NOTICE, "uid %u has %" PRIu64 " bytes and %" PRIu64
                                         " fds queued (all clients: %" PRIu64 ", %" PRIu64 "), refusing a frame",
                                         (unsigned)p->cred.uid, p->user->used[USER_SLOT_BYTES],
                                         p->user->used[USER_SLOT_FDS],
                                         p->broker->users.total[USER_SLOT_BYTES],
                                         p->broker->users.total[USER_SLOT_FDS]);
                }
                if (r > 0)
                        return PEER_E_QUEUE_FULL;
        }

        r = peer_enqueue(p, f, delivery, size, force);
        if (r < 0) {
                if (!force)
                        return PEER_E_QUEUE_FULL;
                peer_enqueue_failed(p);
                return 0;
        }
        return r;
}

/**
 * peer_drop_batch() - forget @p's batch: it is gone
 */
void peer_drop_batch(Peer *p) {
        if (p->n_batch)
                batch_unlink(p);
}

static void peer_flush(Peer *p) {
        QueueEntry *e;
        int r;

        while ((e = queue_peek(&p->queue))) {
                r = peer_sendmsg(p, message_header(e->msg), e->msg->header_len, NULL, 0,
                                 message_payload(e->msg), e->msg->payload_len,
                                 e->msg->fds, e->msg->n_fds, e->delivery);
                if (r == -EAGAIN || r == -ENOBUFS) {
                        loop_source_clear(&p->source, EPOLLOUT);
                        peer_update_backpressure(p);
                        return;
                }
                if (r == -ETOOMANYREFS) {
                        /* As in peer_send(): this frame goes, with word to its sender; the connection stays. */
                        router_frame_dropped(p->broker, p, e->msg);
                        queue_pop(&p->queue);
                        continue;
                }
                if (r < 0) {
                        peer_log(p, LOG_DEBUG, "send failed: %s", strerror(-r));
                        peer_hangup(p);
                        return;
                }
                queue_pop(&p->queue);
        }

        loop_source_deselect(&p->source, EPOLLOUT);
        peer_update_backpressure(p);
        if (p->state == PEER_STATE_CLOSING)
                peer_hangup(p);
        else
                monitor_drained(p->broker, p);
}

/*
 * recvmsg() returned 0: EOF, or an empty record. Linux does deliver
 * zero-length records on SOCK_SEQPACKET, with fds attached if the sender
 * wants, and they read exactly like EOF. A record is told apart by what
 * came with it, by a frame read after it in the same batch, or else by the
 * socket: at EOF the peer has shut down its end, which poll() reports as
 * POLLRDHUP.
 */
static bool peer_read_empty_record(Peer *p, const struct msghdr *mh, size_t n_fds, bool frames_follow) {
        struct pollfd pfd = { .fd = p->fd, .events = POLLIN | POLLRDHUP };

        if (frames_follow || n_fds > 0 || mh->msg_controllen > 0 || (mh->msg_flags & MSG_CTRUNC))
                return true;
        return poll(&pfd, 1, 0) >= 0 && !(pfd.revents & (POLLRDHUP | POLLHUP));
}

/*
 * Whether a frame that cannot be EOF follows entry @i of a read batch. At
 * EOF recvmmsg() fills every remaining entry with an empty read, so only a
 * non-empty one (or one with fds) after it proves that @i was a record.
 */
static bool frames_follow(const struct mmsghdr *mm, unsigned i, unsigned n) {
        for (unsigned k = i + 1; k < n; k++)
                if (mm[k].msg_len > 0 || mm[k].msg_hdr.msg_controllen > 0)
                        return true;
        return false;
}

/*
 * Route frame @i of the @n read at once, and close its fds. Once @p is no
 * longer alive (a protocol error, EOF), the rest are dropped.
 */
static void peer_route_slot(Peer *p, struct mmsghdr *mm, unsigned i, unsigned n) {
        Broker *b = p->broker;
        struct msghdr *mh = &mm[i].msg_hdr;
        size_t len = mm[i].msg_len;
        int fds[FRAME_FDS_MAX];
        size_t n_fds;

        /* Taken before anything else: from here on, every path closes them. */
        n_fds = fdpass_collect(mh, fds, ELEMENTSOF(fds));

        if (!peer_is_alive(p)) {
                /* Hung up by an earlier frame of the batch: the rest is dropped. */
        } else if (len == 0 && !peer_read_empty_record(p, mh, n_fds, frames_follow(mm, i, n))) {
                peer_hangup(p);
        } else {
                p->n_frames_in++;
                p->n_bytes_in += len;

                if (len == 0)
                        router_fail_peer(b, p, 0, ERROR_INVALID_FRAME, "empty frame");
                else if (mh->msg_flags & MSG_TRUNC)
                        router_fail_peer(b, p, 0, ERROR_FRAME_TOO_LARGE,
                                         "frame larger than %u bytes", FRAME_SEND_MAX);
                else
                        /*
                         * MSG_CTRUNC (fds lost on the way in: the broker is
                         * out of fds) is not the client's fault: the router
                         * refuses that one frame with an error.
                         */
                        router_handle_frame(b, p, b->rx_slots->buf[i], len, fds, n_fds,
                                            mh->msg_flags & MSG_CTRUNC);
        }

        /* Receivers got kernel duplicates, queues their own: ours go now. */
        for (size_t k = 0; k < n_fds; k++)
                close(fds[k]);
}

static void peer_read(Peer *p) {
        Broker *b = p->broker;
        struct mmsghdr *mm = b->rx_slots->mm;
        unsigned total = 0;

        while (total < PEER_READ_BATCH && loop_source_is_ready(&p->source, EPOLLIN) && peer_is_alive(p)) {
                /* With frames queued for it, one at a time: see the top of this file. */
                unsigned want = queue_is_empty(&p->queue) ? MIN(b->rx_batch_max, PEER_READ_BATCH - total) : 1;
                int n;

                n = recvmmsg(p->fd, mm, want, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, NULL);
                if (n < 0) {
                        if (errno == EAGAIN) {
                                loop_source_clear(&p->source, EPOLLIN);
                                return;
                        }
                        /*
                         * A client that closes with frames unread in its
                         * own socket makes ours report ECONNRESET once,
                         * ahead of the frames it sent before closing: read
                         * on, EOF comes after them.
                         */
                        if (errno == EINTR || errno == ECONNRESET)
                                continue;
                        peer_log(p, LOG_DEBUG, "receive failed: %m");
                        peer_hangup(p);
                        return;
                }

                b->batch_open = true;
                for (unsigned i = 0; i < (unsigned)n; i++)
                        peer_route_slot(p, mm, i, (unsigned)n);
                b->batch_open = false;
                peer_flush_batches(b);
                for (unsigned i = 0; i < (unsigned)n; i++)
                        mm[i].msg_hdr.msg_controllen = sizeof(b->rx_slots->control[i]);

                total += (unsigned)n;
                /*
                 * Fewer frames than asked for: the socket is drained (an
                 * error after the first frame would have been returned
                 * instead, or comes with a new edge). The next frame
                 * brings a new edge, so no EAGAIN read is needed.
                 */
                if ((unsigned)n < want)
                        loop_source_clear(&p->source, EPOLLIN);
        }
}

/**
 * peer_dispatch() - handle the cached events of @p
 *
 * Return: 0.
 */
int peer_dispatch(Peer *p) {
        if (loop_source_is_ready(&p->source, EPOLLOUT))
                peer_flush(p);
        if (loop_source_is_ready(&p->source, EPOLLIN))
                peer_read(p);
        return 0;
}
