/*
 * Pending call registry (see pending.h).
 */

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "peer.h"
#include "pending.h"
#include "router.h"
#include "transfer.h"

/*
 * Keyed (see htable.h): serials are the caller's choice, and under a hash it
 * could compute, colliding serials made every unexpected reply walk one long
 * chain.
 */
static uint64_t pending_hash(Broker *b, uint64_t caller_id, uint64_t serial) {
        uint64_t key[2] = { htole64(caller_id), htole64(serial) };

        return htable_hash(&b->pending, key, sizeof(key));
}

static void pending_call_expire(Timer *t, uint64_t now) {
        PendingCall *pc = container_of(t, PendingCall, timer);
        Broker *b = pc->caller->broker;
        Peer *caller = pc->caller;
        uint64_t serial = pc->serial;
        char callee[sizeof(pc->callee->unique_id)];

        snprintf(callee, sizeof(callee), "%s", pc->callee->unique_id);
        pending_call_free(b, pc);
        b->stats.n_timeouts++;
        router_send_error(b, caller, serial, ERROR_TIMEOUT,
                          "%s did not reply in time", callee);
}

/**
 * pending_call_find() - look up the call @caller_id made with @serial
 *
 * Return: the call or NULL.
 */
PendingCall *pending_call_find(Broker *b, uint64_t caller_id, uint64_t serial) {
        htable_for_each_hash(n, &b->pending, pending_hash(b, caller_id, serial)) {
                PendingCall *pc = container_of(n, PendingCall, node);

                if (pc->serial == serial && pc->caller->id == caller_id)
                        return pc;
        }
        return NULL;
}

/**
 * pending_call_new() - record that @caller waits for @callee to answer @serial
 * @b:          the broker
 * @caller:     the peer that sent the CALL
 * @callee:     the peer it was routed to
 * @serial:     the CALL's serial
 * @deadline:   monotonic usec at which the caller gets a Timeout error
 * @ret:        the call, written on success
 *
 * The caller's limit on pending calls is checked by the router before.
 *
 * Return: 0, PENDING_E_DUPLICATE, or -ENOMEM.
 */
int pending_call_new(Broker *b, Peer *caller, Peer *callee, uint64_t serial,
                     uint64_t deadline, PendingCall **ret) {
        PendingCall *pc;
        int r;

        if (pending_call_find(b, caller->id, serial))
                return PENDING_E_DUPLICATE;

        if (!list_is_empty(&b->pending_free)) {
                pc = list_first_entry(&b->pending_free, PendingCall, caller_link);
                list_unlink(&pc->caller_link);
                b->n_pending_free--;
        } else {
                pc = malloc(sizeof(*pc));
                if (!pc)
                        return -ENOMEM;
        }

        *pc = (PendingCall) {
                .caller = caller,
                .callee = callee,
                .serial = serial,
        };
        list_init(&pc->caller_link);
        list_init(&pc->callee_link);
        timer_init(&pc->timer, pending_call_expire);

        r = htable_insert(&b->pending, &pc->node, pending_hash(b, caller->id, serial));
        if (r < 0) {
                free(pc);
                return r;
        }
        r = timer_arm(&b->timers, &pc->timer, deadline);
        if (r < 0) {
                htable_remove(&b->pending, &pc->node);
                free(pc);
                return r;
        }

        list_append(&caller->calls_out, &pc->caller_link);
        list_append(&callee->calls_in, &pc->callee_link);
        caller->n_calls_out++;
        *ret = pc;
        return 0;
}

/**
 * pending_call_free() - forget @pc, keeping the object for reuse
 */
void pending_call_free(Broker *b, PendingCall *pc) {
        /* A call that ended frees its caller's buffer: the callee may not read it any more. */
        if (pc->transfer_id)
                transfer_drop_receiver(b, pc->transfer_id, pc->callee);
        timer_disarm(&b->timers, &pc->timer);
        htable_remove(&b->pending, &pc->node);
        list_unlink(&pc->callee_link);
        list_unlink(&pc->caller_link);
        pc->caller->n_calls_out--;

        if (b->n_pending_free < PENDING_FREE_MAX) {
                list_append(&b->pending_free, &pc->caller_link);
                b->n_pending_free++;
        } else {
                free(pc);
        }
}

/**
 * pending_flush_free_list() - release the recycled objects
 */
void pending_flush_free_list(Broker *b) {
        PendingCall *pc;

        while ((pc = list_first_entry(&b->pending_free, PendingCall, caller_link))) {
                list_unlink(&pc->caller_link);
                free(pc);
        }
        b->n_pending_free = 0;
}
