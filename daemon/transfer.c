/*
 * Large-message transfers on the process_vm path (see transfer.h).
 *
 * Invariants:
 *  - a live Transfer is in broker->transfers (by id), on broker->transfer_list
 *    and on its lender's list, and its lease is armed;
 *  - n_outstanding counts receivers that have neither answered nor left;
 *  - the lender hears exactly once (TransferDone), unless it is gone itself;
 *  - an id is never reused (a counter), so a late AckTransfer can only miss.
 *
 * The receivers of a transfer are few (one for a call or reply, the matching
 * subscribers for a signal), so they are kept in an array searched linearly.
 */

#include <assert.h>
#include <stdlib.h>

#include "peer.h"
#include "router.h"
#include "transfer.h"

static uint64_t transfer_hash(Broker *b, uint64_t id) {
        return htable_hash_u64(&b->transfers, id);
}

static void transfer_free(Transfer *t) {
        Broker *b = t->broker;

        timer_disarm(&b->timers, &t->lease);
        htable_remove(&b->transfers, &t->node);
        list_unlink(&t->link);
        list_unlink(&t->lender_link);
        t->lender->n_transfers--;
        t->lender->n_lent_bytes -= t->size;
        b->n_transfers--;
        free(t->receivers);
        free(t);
}

/* Tell the lender its buffer is free again, then forget the transfer. */
static void transfer_finish(Transfer *t, bool expired) {
        Plexus__TransferDone done = PLEXUS__TRANSFER_DONE__INIT;
        Broker *b = t->broker;
        Peer *lender = t->lender;

        done.transfer_id = t->id;
        done.serial = t->serial;
        done.n_receivers = (uint32_t)t->n_receivers;
        done.n_copied = t->n_copied;
        done.n_refused = t->n_refused;
        done.expired = expired;
        if (expired)
                b->stats.n_transfers_expired++;
        transfer_free(t);

        /* Forced, like every frame about a client's own state: bounded by its transfers. */
        if (peer_is_alive(lender))
                router_send_signal(b, lender, TOPIC_TRANSFER_DONE, &done.base);
}

static void transfer_lease_end(Timer *timer, uint64_t now) {
        Transfer *t = container_of(timer, Transfer, lease);

        transfer_finish(t, true);
}

/**
 * transfer_new() - record that @lender lends @size bytes with its frame @serial
 * @b:          the broker
 * @lender:     the sending peer
 * @serial:     the frame's serial
 * @size:       the payload's length
 * @ret:        the transfer, written on success
 *
 * The transfer is live from now on (its lease runs), but the lender is told
 * nothing until transfer_start(), which every routed lent frame ends with.
 *
 * Return: 0, TRANSFER_E_LIMIT, or -ENOMEM.
 */
int transfer_new(Broker *b, Peer *lender, uint64_t serial, uint64_t size, Transfer **ret) {
        Transfer *t;
        int r;

        if (lender->n_transfers >= b->config.max_transfers ||
            size > b->config.max_lent_bytes - MIN(lender->n_lent_bytes, b->config.max_lent_bytes))
                return TRANSFER_E_LIMIT;

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->broker = b;
        t->lender = lender;
        t->id = ++b->next_transfer_id;
        t->serial = serial;
        t->size = size;
        timer_init(&t->lease, transfer_lease_end);
        list_init(&t->link);
        list_init(&t->lender_link);

        r = htable_insert(&b->transfers, &t->node, transfer_hash(b, t->id));
        if (r < 0) {
                free(t);
                return r;
        }
        r = timer_arm(&b->timers, &t->lease,
                      now_usec() + frame_transfer_lease_usec(b->config.transfer_lease_ms, size));
        if (r < 0) {
                htable_remove(&b->transfers, &t->node);
                free(t);
                return r;
        }
        list_append(&b->transfer_list, &t->link);
        list_append(&lender->transfers, &t->lender_link);
        lender->n_transfers++;
        lender->n_lent_bytes += size;
        b->n_transfers++;
        *ret = t;
        return 0;
}

/**
 * transfer_add_receiver() - @to was handed the frame and may read the buffer
 *
 * Return: 0 or -ENOMEM.
 */
int transfer_add_receiver(Transfer *t, Peer *to) {
        if (t->n_receivers == t->n_alloc) {
                size_t n = MAX(t->n_alloc * 2, (size_t)4);
                TransferReceiver *a = reallocarray(t->receivers, n, sizeof(*a));

                if (!a)
                        return -ENOMEM;
                t->receivers = a;
                t->n_alloc = n;
        }
        t->receivers[t->n_receivers++] = (TransferReceiver) { .peer_id = to->id };
        t->n_outstanding++;
        return 0;
}

/**
 * transfer_start() - the frame went out to every receiver it could reach
 *
 * A frame that reached nobody is finished at once: the lender's buffer is
 * free again, and it hears so like after any transfer.
 */
void transfer_start(Transfer *t) {
        if (t->n_outstanding == 0)
                transfer_finish(t, false);
}

/* A live transfer by id, or NULL. */
static Transfer *transfer_find(Broker *b, uint64_t id) {
        htable_for_each_hash(n, &b->transfers, transfer_hash(b, id)) {
                Transfer *t = container_of(n, Transfer, node);

                if (t->id == id)
                        return t;
        }
        return NULL;
}

static TransferReceiver *find_receiver(Transfer *t, uint64_t peer_id) {
        for (size_t i = 0; i < t->n_receivers; i++)
                if (t->receivers[i].peer_id == peer_id)
                        return &t->receivers[i];
        return NULL;
}

/* @r has answered or left: count it, and finish once nobody is left. */
static void receiver_done(Transfer *t, TransferReceiver *r) {
        r->answered = true;
        assert(t->n_outstanding > 0);
        if (--t->n_outstanding == 0)
                transfer_finish(t, false);
}

/**
 * transfer_ack() - a receiver reports on its copy (plexus.AckTransfer)
 * @b:          the broker
 * @from:       the receiver
 * @id:         the transfer id it was given
 * @status:     a PLEXUS__TRANSFER_STATUS__* value
 *
 * Whatever the status, @from is done with the lender's memory. Only
 * TRANSFER_COPIED while the transfer is live lets it keep what it read.
 *
 * Return: 0 if the transfer was live and @from one of its unanswered
 * receivers, TRANSFER_E_EXPIRED if not.
 */
int transfer_ack(Broker *b, Peer *from, uint64_t id, int status) {
        Transfer *t = transfer_find(b, id);
        TransferReceiver *r;

        if (!t)
                return TRANSFER_E_EXPIRED;
        r = find_receiver(t, from->id);
        if (!r || r->answered)
                return TRANSFER_E_EXPIRED;

        if (status == PLEXUS__TRANSFER_STATUS__TRANSFER_COPIED) {
                t->n_copied++;
                b->stats.n_transfers_copied++;
        } else if (status == PLEXUS__TRANSFER_STATUS__TRANSFER_REFUSED) {
                t->n_refused++;
                b->stats.n_transfers_refused++;
        }
        receiver_done(t, r);
        return 0;
}

/**
 * transfer_drop_receiver() - @receiver may no longer read transfer @id
 *
 * Used when the call that carried the transfer ended (answered, timed out,
 * or the callee left) before the callee acknowledged: a late AckTransfer is
 * then refused, so the caller's buffer is free as soon as its call is over.
 */
void transfer_drop_receiver(Broker *b, uint64_t id, Peer *receiver) {
        Transfer *t = transfer_find(b, id);
        TransferReceiver *r;

        if (!t)
                return;
        r = find_receiver(t, receiver->id);
        if (r && !r->answered)
                receiver_done(t, r);
}

/**
 * transfer_peer_gone() - @p leaves: its loans end, its reads are void
 *
 * Transfers @p lent are dropped without a word (there is nobody to tell;
 * receivers still reading learn from AckTransfer, and from the pidfd, that
 * the bytes are void). Transfers @p was to read count it as answered.
 */
void transfer_peer_gone(Broker *b, Peer *p) {
        Transfer *t;

        while ((t = list_first_entry(&p->transfers, Transfer, lender_link)))
                transfer_free(t);

        /* Safe walk: finishing a transfer unlinks it. */
        list_for_each_entry_safe(t, &b->transfer_list, link) {
                TransferReceiver *r = find_receiver(t, p->id);

                if (r && !r->answered)
                        receiver_done(t, r);
        }
}
