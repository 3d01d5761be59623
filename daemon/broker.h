#pragma once

/*
 * The broker: everything of plexusd except option parsing.
 *
 * A Broker owns one event loop and everything hanging off it: the listening
 * socket, the peers, their subscriptions and pending calls, the timer queue,
 * a signalfd (when asked to handle signals) and an eventfd through which
 * another thread can stop it. There is no global state: several brokers can
 * live in one process, which is how embedders and tests use it.
 *
 * plx_broker_* is the embedding API; struct Broker is shared by the broker's
 * own modules.
 */

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "frame.h"
#include "htable.h"
#include "list.h"
#include "log.h"
#include "loop.h"
#include "name.h"
#include "policy.h"
#include "timer.h"
#include "topic-trie.h"
#include "user.h"

typedef struct Broker Broker;
typedef struct Broker plx_broker;
typedef struct Peer Peer;

/* Limits and settings; plx_broker_config_init() fills in the defaults. */
typedef struct plx_broker_config {
        const char *address;            /* socket path to create; NULL: the default address */
        int listen_fd;                  /* an already listening socket to adopt, or -1 */
        bool handle_signals;            /* SIGTERM/SIGINT/SIGHUP through a signalfd, from new to free */

        LogFn log_fn;                   /* NULL: no logging */
        void *log_userdata;
        int log_level;                  /* LOG_INFO by default */

        const char *config_path;        /* INI file applied at start and on SIGHUP, or NULL */
        bool config_required;           /* a missing file is an error (else: defaults) */

        /* Service manager notifications ("READY=1", "STATUS=...", ...), e.g. sd_notify(). */
        void (*notify_fn)(void *userdata, const char *state);
        void *notify_userdata;
        uint64_t watchdog_usec;         /* send WATCHDOG=1 every half of this; 0: never */

        bool io_uring;                  /* send fan-out through io_uring where available (default) */

        uint32_t max_clients;
        uint32_t max_queue_frames;      /* per client, outgoing */
        uint32_t max_queue_bytes;       /* per client, outgoing */
        uint32_t max_queue_fds;         /* per client, passed fds waiting in its queue */
        uint32_t max_subscriptions;     /* per client */
        uint32_t max_pending_calls;     /* per client, calls awaiting a reply */
        uint32_t max_names;             /* per client, names owned or queued for */
        uint32_t default_timeout_ms;    /* calls that give no timeout */
        uint32_t max_timeout_ms;        /* longer timeouts are capped */
        uint32_t hello_timeout_ms;      /* a client must say HELLO within this */
        uint32_t shutdown_timeout_ms;   /* flush deadline on shutdown */
        uint32_t max_message_size;      /* largest payload of a large frame */
        uint32_t max_transfers;         /* per client, process_vm transfers outstanding */
        uint32_t max_lent_bytes;        /* per client, bytes lent by those transfers */
        uint32_t transfer_lease_ms;     /* how long a process_vm transfer stays readable */

        /* Per uid and broker-wide, see daemon/user.h and docs/configuration.md. */
        uint32_t max_user_clients;              /* connections of one uid */
        uint32_t max_unauthenticated;           /* connections before HELLO, all uids */
        uint32_t max_user_unauthenticated;      /* connections before HELLO, one uid */
        uint32_t max_user_queue_bytes;          /* queued for one uid's connections */
        uint32_t max_total_queue_bytes;         /* queued, all connections */
        uint32_t max_user_queue_fds;            /* fds queued for one uid's connections */
        uint32_t max_total_queue_fds;           /* fds queued, all connections; 0: half of RLIMIT_NOFILE */
} plx_broker_config;

#define BROKER_DEFAULT_MAX_CLIENTS 16384u
#define BROKER_DEFAULT_MAX_QUEUE_FRAMES 4096u
#define BROKER_DEFAULT_MAX_QUEUE_BYTES (4u * 1024u * 1024u)
#define BROKER_DEFAULT_MAX_QUEUE_FDS 1024u
#define BROKER_DEFAULT_MAX_SUBSCRIPTIONS 512u
#define BROKER_DEFAULT_MAX_PENDING_CALLS 1024u
#define BROKER_DEFAULT_MAX_NAMES 256u
#define BROKER_DEFAULT_MAX_MESSAGE_SIZE (1u << 30)
#define BROKER_DEFAULT_MAX_TRANSFERS 64u
#define BROKER_DEFAULT_MAX_LENT_BYTES (2u << 30)
#define BROKER_DEFAULT_TRANSFER_LEASE_MS 10000u
#define BROKER_DEFAULT_MAX_USER_CLIENTS 256u
#define BROKER_DEFAULT_MAX_UNAUTHENTICATED 256u
#define BROKER_DEFAULT_MAX_USER_UNAUTHENTICATED 64u
#define BROKER_DEFAULT_MAX_USER_QUEUE_BYTES (16u * 1024u * 1024u)
#define BROKER_DEFAULT_MAX_TOTAL_QUEUE_BYTES (64u * 1024u * 1024u)
#define BROKER_DEFAULT_MAX_USER_QUEUE_FDS 2048u
#define BROKER_DEFAULT_MAX_TOTAL_QUEUE_FDS 0u    /* half of RLIMIT_NOFILE */

/* Leases and last wills of names, see docs/protocol.md. */
#define NAME_LEASE_MIN_MS 10u
#define NAME_LEASE_MAX_MS (3600u * 1000u)
#define NAME_WILL_MAX 4096u
#define BROKER_DEFAULT_TIMEOUT_MS 25000u
#define BROKER_DEFAULT_MAX_TIMEOUT_MS 120000u
#define BROKER_DEFAULT_HELLO_TIMEOUT_MS 10000u
#define BROKER_DEFAULT_SHUTDOWN_TIMEOUT_MS 2000u

/* Error names; the list in docs/protocol.md is the contract. */
#define ERROR_INVALID_FRAME "plexus.Error.InvalidFrame"
#define ERROR_FRAME_TOO_LARGE "plexus.Error.FrameTooLarge"
#define ERROR_VERSION_MISMATCH "plexus.Error.VersionMismatch"
#define ERROR_PROTOCOL_VIOLATION "plexus.Error.ProtocolViolation"
#define ERROR_INVALID_ARGS "plexus.Error.InvalidArgs"
#define ERROR_UNKNOWN_METHOD "plexus.Error.UnknownMethod"
#define ERROR_SERVICE_UNKNOWN "plexus.Error.ServiceUnknown"
#define ERROR_DISCONNECTED "plexus.Error.Disconnected"
#define ERROR_QUEUE_FULL "plexus.Error.QueueFull"
#define ERROR_LIMITS_EXCEEDED "plexus.Error.LimitsExceeded"
#define ERROR_UNEXPECTED_REPLY "plexus.Error.UnexpectedReply"
#define ERROR_TIMEOUT "plexus.Error.Timeout"
#define ERROR_NAME_HAS_NO_OWNER "plexus.Error.NameHasNoOwner"
#define ERROR_FDS_REJECTED "plexus.Error.FdsRejected"
#define ERROR_NAME_NOT_OWNED "plexus.Error.NameNotOwned"
#define ERROR_TRANSFER_EXPIRED "plexus.Error.TransferExpired"
#define ERROR_INVALID_PAYLOAD "plexus.Error.InvalidPayload"

#define TOPIC_SHUTDOWN "plexus/broker/shutdown"
#define TOPIC_NAMES_PREFIX "plexus/names/"

typedef struct BrokerStats {
        uint64_t n_routed[6];           /* by Plexus__Kind */
        uint64_t n_bytes_routed;
        uint64_t n_errors_sent;         /* ERRORs generated by the broker */
        uint64_t n_queue_full;          /* frames refused for a full queue */
        uint64_t n_unexpected_replies;
        uint64_t n_timeouts;
        uint64_t n_leases_expired;
        uint64_t n_reloads;
        uint64_t n_fds_passed;          /* fds handed to receivers */
        uint64_t n_fds_rejected;        /* frames refused for their fds */
        uint64_t n_denied;              /* actions the policy denied */
        uint64_t n_protocol_errors;     /* clients disconnected for bad input */
        uint64_t n_peers_peak;
        uint64_t n_large[2];            /* large frames routed: [0] memfd, [1] process_vm */
        uint64_t n_large_bytes[2];
        uint64_t n_transfers_expired;
        uint64_t n_transfers_refused;
        uint64_t n_transfers_copied;
        uint64_t n_user_quota;          /* frames refused for a per-uid or broker-wide queue quota */
        uint64_t n_refused_user_clients;        /* connections refused: too many of one uid */
        uint64_t n_refused_unauthenticated;     /* connections refused: too many before HELLO */
        uint64_t n_refused_no_fds;      /* connections accepted and closed: broker out of fds */
} BrokerStats;

typedef enum BrokerState {
        BROKER_STATE_RUNNING,
        BROKER_STATE_DRAINING,          /* shutting down: flushing queues */
        BROKER_STATE_DONE,
} BrokerState;

typedef struct Listener {
        LoopSource source;
        int fd;
        char *path;                     /* set when we created the socket file and must remove it */
        dev_t dev;
        ino_t ino;
        bool paused;                    /* out of memory: accepting again once a peer goes */
        int reserve_fd;                 /* /dev/null, given up to accept-and-close when out of fds */
        LogLimit log_limit;             /* for "out of fds" lines */
} Listener;

struct Broker {
        plx_broker_config config;
        Log log;
        BrokerState state;

        Loop loop;
        TimerQueue timers;
        Listener listener;

        LoopSource signal_source;
        int signal_fd;
        sigset_t saved_sigmask;
        bool signals_blocked;

        LoopSource wakeup_source;
        int wakeup_fd;

        List peers;                     /* Peer.link, in connection order */
        List dead_peers;                /* Peer.link of peers to free after this round */
        List monitors;                  /* Monitor.link */
        UserRegistry users;             /* what each uid holds, see user.h */
        LogLimit quota_log_limit;       /* "uid N has ... queued" lines, all peers together */
        HTable peers_by_id;             /* Peer.id_node, once HELLO is done */
        size_t n_peers;
        uint64_t next_peer_id;

        HTable pending;                 /* PendingCall.node, by (caller id, serial) */
        List pending_free;              /* recycled PendingCall objects */
        size_t n_pending_free;

        HTable transfers;               /* Transfer.node, by id */
        List transfer_list;             /* Transfer.link */
        size_t n_transfers;
        uint64_t next_transfer_id;

        TopicTrie topics;
        NameRegistry names;
        Policy *policy;                 /* NULL: only root and the broker's uid are served */

        SipKey hash_key;                /* random, for hashes of client-chosen data outside tables */
        uint64_t sequence;              /* bus-wide frame counter, see docs/protocol.md */
        Timer shutdown_timer;
        Timer watchdog_timer;
        Timer status_timer;
        char status[320];               /* last STATUS= sent */
        char reload_error[160];         /* why the last reload failed; "" after a good one */
        bool config_from_file;          /* a file was applied: reloads require one since */
        plx_broker_config base;         /* the configuration before the file was applied */
        char *config_path;
        uint64_t start_usec;
        struct ucred cred;              /* the broker's own, stamped on frames it sends */
        int peer_pidfd_support;         /* SO_PEERPIDFD: 0 unknown, 1 yes, -1 no */
        BrokerStats stats;

        Arena arena;                    /* decoded header of the frame being routed */
        Arena payload_arena;            /* decoded payload of calls to the broker */
        struct PeerRxSlots *rx_slots;   /* PEER_READ_BATCH receive buffers: the frames being routed */
        struct BatchEntry *batch;       /* frames batched for their receivers, see peer-io.c */
        struct SendRing *send_ring;     /* io_uring for fan-out, or NULL: sendmmsg() only */
        struct PeerTxSlots *tx_slots;   /* what a send_ring submission borrows */
        size_t n_batch;
        List batch_peers;               /* Peer.batch_link: receivers with a batch */
        bool batch_open;                /* routing frames from the receive slots: batching allowed */
        unsigned rx_batch_max;          /* frames per recvmmsg(), bounded by the fd table (peer-io.c) */
};

void plx_broker_config_init(plx_broker_config *c);
int plx_broker_new(plx_broker **ret, const plx_broker_config *config);
int plx_broker_run(plx_broker *b);
void plx_broker_stop(plx_broker *b);
plx_broker *plx_broker_free(plx_broker *b);
PLX_DEFINE_CLEANUP(plx_broker *, plx_broker_free);
const char *plx_broker_get_address(plx_broker *b);

int broker_run_round(Broker *b);
void broker_begin_shutdown(Broker *b);
void broker_reload(Broker *b);
void broker_notify(Broker *b, const char *fmt, ...) _printf_(2, 3);
void broker_listener_resume(Broker *b);

#define broker_log(b, prio, ...) log_emit(&(b)->log, (prio), __VA_ARGS__)
