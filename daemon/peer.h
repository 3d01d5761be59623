#pragma once

/*
 * A connected client.
 *
 * A Peer owns its socket and its outgoing queue, and links the objects it
 * caused: subscriptions, calls it waits for (calls_out) and calls it must
 * answer (calls_in). Freeing a peer undoes all of that: its subscriptions
 * leave the trie, callers waiting on it get a Disconnected error, its own
 * pending calls are forgotten.
 *
 * Lifecycle: HELLO (connected, handshake pending, not addressable) ->
 * RUNNING (has a unique id) -> CLOSING (told why, flushing, reads nothing)
 * -> DEAD (socket gone; freed at the end of the loop round, so that routing
 * code holding a Peer pointer never sees it vanish mid-frame).
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "broker.h"
#include "htable.h"
#include "list.h"
#include "log.h"
#include "loop.h"
#include "message.h"
#include "queue.h"
#include "timer.h"

enum {
        PEER_E_QUEUE_FULL = 1,
        PEER_E_FDS,             /* the kernel refused the fds: too many in flight (ETOOMANYREFS) */
        PEER_E_USER_CLIENTS,    /* peer_new(): the uid has its maximum of connections */
        PEER_E_UNAUTH_USER,     /* peer_new(): the uid has its maximum of connections before HELLO */
        PEER_E_UNAUTH_TOTAL,    /* peer_new(): the broker has its maximum of connections before HELLO */
};

typedef enum PeerState {
        PEER_STATE_HELLO,
        PEER_STATE_RUNNING,
        PEER_STATE_CLOSING,
        PEER_STATE_DEAD,
} PeerState;

/* Batch of frames read from one peer per loop round, for fairness. */
#define PEER_READ_BATCH 32

#define PEER_DESCRIPTION_MAX 64

struct Peer {
        Broker *broker;
        LoopSource source;
        int fd;
        PeerState state;

        uint64_t id;
        char unique_id[24];             /* ":<id>" */
        HNode id_node;                  /* in broker->peers_by_id while RUNNING */
        bool addressable;
        List link;                      /* broker->peers, or broker->dead_peers */

        struct ucred cred;
        User *user;                     /* of cred.uid: charged for the connection and the queue */
        bool charged_connection;        /* USER_SLOT_CONNECTIONS */
        bool charged_unauth;            /* USER_SLOT_UNAUTH, until HELLO */
        int pidfd;                      /* pins the process behind cred.pid; -1: not opened (yet) */
        gid_t *gids;                    /* primary and supplementary, read at the first policy check */
        size_t n_gids;
        uint64_t denials_logged[8];     /* hashes of denials already logged */
        size_t n_denials_logged;
        char comm[16];                  /* the process's name, read when first logged, at the latest at HELLO */
        char *cmdline;                  /* as of HELLO, for introspection; NULL before or if unreadable */
        uint64_t introspect_tat;        /* introspection rate limit: theoretical arrival time, usec */
        char description[PEER_DESCRIPTION_MAX];
        uint64_t connected_usec;

        Queue queue;
        bool reading_paused;            /* backpressure: our own queue is full */
        List batch_link;                /* in broker->batch_peers while frames are batched for it */
        uint32_t batch_head;            /* its first and last entry in broker->batch */
        uint32_t batch_tail;
        uint32_t n_batch;
        size_t batch_bytes;             /* as a queue would be charged for them */
        uint64_t n_delivered;           /* delivery counter, see docs/protocol.md */
        uint64_t last_signal_sequence;  /* fan-out deduplication */

        List subscriptions;             /* Subscription.owner_link */
        size_t n_subscriptions;
        List calls_out;                 /* PendingCall.caller_link */
        size_t n_calls_out;
        List calls_in;                  /* PendingCall.callee_link */
        List names;                     /* NameOwner.owner_link: owned and queued for */
        List transfers;                 /* Transfer.lender_link: process_vm loans */
        size_t n_transfers;
        uint64_t n_lent_bytes;
        size_t n_names;

        struct Monitor *monitor;        /* set once the peer became a monitor */
        Timer timer;                    /* HELLO deadline, then the CLOSING deadline */
        LogLimit log_limit;

        uint64_t n_frames_in;
        uint64_t n_frames_out;
        uint64_t n_bytes_in;
        uint64_t n_bytes_out;
};

/*
 * A frame on its way out: the re-stamped header shared by all receivers and
 * the payload, both borrowed (usually from the broker's receive buffer).
 * When a receiver has to queue it, the frame is copied once into @msg, which
 * every queue then shares.
 */
typedef struct OutFrame {
        const uint8_t *header;
        size_t header_len;
        const uint8_t *stamp;   /* broker fields appended to @header, or NULL */
        size_t stamp_len;
        const uint8_t *payload;
        size_t payload_len;
        const int *fds;         /* borrowed; queued messages keep duplicates */
        size_t n_fds;
        uint64_t origin_id;     /* sending peer's id and frame serial, 0 for the broker's */
        uint64_t origin_serial;
        bool stable;            /* header and payload lie in a receive slot: they may be batched */
        Message *msg;
} OutFrame;

static inline void out_frame_deinit(OutFrame *f) {
        f->msg = message_unref(f->msg);
}

int peer_new(Peer **ret, Broker *b, int fd);
Peer *peer_free(Peer *p);
PLX_DEFINE_CLEANUP(Peer *, peer_free);

int peer_io_init(Broker *b);
void peer_io_deinit(Broker *b);
int peer_dispatch(Peer *p);
int peer_send(Peer *p, OutFrame *f, bool force);
void peer_flush_batch(Peer *p);
void peer_flush_batches(Broker *b);
void peer_drop_batch(Peer *p);
void peer_hangup(Peer *p);
void peer_close(Peer *p);
void peer_stop_reading(Peer *p);
void peer_set_running(Peer *p);
Peer *peer_find(Broker *b, const char *unique_id);
Peer *peer_find_id(Broker *b, uint64_t id);

static inline bool peer_is_alive(const Peer *p) {
        return p->state == PEER_STATE_HELLO || p->state == PEER_STATE_RUNNING;
}

const char *peer_comm(Peer *p);
bool peer_process_alive(Peer *p);
int peer_get_pidfd(Peer *p);
void peer_release_pidfd(Peer *p);

/* Per-client lines name the client by unique id, pid, process name and description. */
#define peer_log(p, prio, fmt, ...)                                                     \
        do {                                                                            \
                if (log_enabled(&(p)->broker->log, (prio)))                             \
                        broker_log((p)->broker, (prio), "client %s (pid %d, %s, \"%s\"): " fmt, \
                                   (p)->unique_id, (int)(p)->cred.pid, peer_comm(p),      \
                                   (p)->description, ##__VA_ARGS__);                    \
        } while (0)
