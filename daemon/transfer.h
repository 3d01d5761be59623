#pragma once

/*
 * Large-message transfers on the process_vm path (docs/protocol.md §17).
 *
 * A client that sends a frame with large_addr set lends the broker's
 * receivers its own memory: each receiver copies the payload with
 * process_vm_readv() and asks the broker, with plexus.AckTransfer, whether
 * it may keep what it read. The broker answers yes only while the transfer
 * is live; once every receiver has answered, or the lease ran out, it tells
 * the lender (a SIGNAL on plexus/transfer/done) and forgets the transfer.
 * Because the broker is the only place that says both "you may keep it"
 * and "you may reuse your buffer", and it says them in one order, no
 * receiver ever keeps bytes the lender may already have overwritten.
 *
 * A Transfer is owned by the broker, linked on its lender, charged to the
 * lender's per-client limits (transfers outstanding, bytes lent) and timed
 * by one Timer on the broker's heap.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "htable.h"
#include "list.h"
#include "timer.h"

enum {
        TRANSFER_E_EXPIRED = 1,         /* no such live transfer for this receiver */
        TRANSFER_E_LIMIT,               /* the lender has too many transfers or bytes lent */
};

typedef struct TransferReceiver {
        uint64_t peer_id;
        bool answered;
} TransferReceiver;

typedef struct Transfer {
        HNode node;                     /* broker->transfers, by id */
        List link;                      /* broker->transfer_list */
        List lender_link;               /* lender->transfers */
        Broker *broker;
        Peer *lender;
        uint64_t id;
        uint64_t serial;                /* the lent frame's serial */
        uint64_t size;
        Timer lease;
        TransferReceiver *receivers;
        size_t n_receivers;
        size_t n_alloc;
        size_t n_outstanding;
        uint32_t n_copied;
        uint32_t n_refused;
} Transfer;

int transfer_new(Broker *b, Peer *lender, uint64_t serial, uint64_t size, Transfer **ret);
int transfer_add_receiver(Transfer *t, Peer *to);
void transfer_start(Transfer *t);
int transfer_ack(Broker *b, Peer *from, uint64_t id, int status);
void transfer_drop_receiver(Broker *b, uint64_t id, Peer *receiver);
void transfer_peer_gone(Broker *b, Peer *p);
