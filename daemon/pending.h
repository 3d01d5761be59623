#pragma once

/*
 * Calls awaiting a reply. For every CALL that expects one, the broker keeps
 * a PendingCall: who asked (caller, serial), who must answer (callee), and
 * until when. It is what lets the broker accept a REPLY only from the callee
 * and only once, fail the call when the callee goes away, and time it out.
 *
 * PendingCalls are found by (caller id, serial) through the broker's hash
 * table and are linked on both peers. Freed objects are kept on a bounded
 * free list, so the call path does not allocate in the steady state.
 */

#include <stdint.h>

#include "broker.h"
#include "htable.h"
#include "list.h"
#include "timer.h"

enum {
        PENDING_E_DUPLICATE = 1,        /* the caller already waits on this serial */
};

typedef struct PendingCall {
        HNode node;
        Peer *caller;
        Peer *callee;
        uint64_t serial;
        uint64_t transfer_id;           /* the CALL lent its payload (process_vm), else 0 */
        List caller_link;               /* caller->calls_out, or broker->pending_free */
        List callee_link;               /* callee->calls_in */
        Timer timer;
} PendingCall;

#define PENDING_FREE_MAX 4096u

int pending_call_new(Broker *b, Peer *caller, Peer *callee, uint64_t serial,
                     uint64_t deadline, PendingCall **ret);
PendingCall *pending_call_find(Broker *b, uint64_t caller_id, uint64_t serial);
void pending_call_free(Broker *b, PendingCall *pc);
void pending_flush_free_list(Broker *b);
