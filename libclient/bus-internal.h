#pragma once

/*
 * libplexus internals, shared by the library's own files only.
 *
 * A plx_bus is owned by the application (plx_bus_new/plx_bus_free), but its
 * memory is reference counted internally: each plx_msg received on it holds
 * a reference, so a message kept after plx_bus_free() can still be read
 * and answering it fails cleanly with -ECONNRESET instead of touching freed
 * memory.
 *
 * Slots (async calls, method handlers, subscriptions) are reference counted
 * too: dispatch holds a reference across each callback, so a callback may
 * free any slot, its own included.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "plexus/plexus.h"

#include "fdpass.h"
#include "frame.h"
#include "htable.h"
#include "list.h"
#include "util.h"

/* Bounds of the client's own queues (documented in docs/protocol.md). */
#define BUS_WQUEUE_MAX_FRAMES 4096u
#define BUS_WQUEUE_MAX_BYTES (4u * 1024u * 1024u)
#define BUS_RQUEUE_MAX 4096u

/*
 * Batching (see bus.c). Frames read with one recvmmsg(): the vector starts
 * with one receive buffer and doubles, up to BUS_RX_BATCH_MAX, each time a
 * read fills all it has. Frames sent with one sendmmsg(): at most
 * BUS_WBATCH_MAX; a queue that reaches it is written at once. Frames above
 * BUS_WBATCH_FRAME_MAX bytes or with fds are not held back.
 */
#define BUS_RX_BATCH_MAX 8u
#define BUS_WBATCH_MAX 64u
#define BUS_WBATCH_FRAME_MAX (16u * 1024u)
/* A kept message whose payload is longer takes its receive buffer over instead of a copy. */
#define BUS_RX_HANDOVER_MIN (16u * 1024u)
/* How long plx_bus_free() waits for the socket to take queued frames. */
#define BUS_FREE_FLUSH_USEC (250u * 1000u)

#define BUS_DEFAULT_TIMEOUT_USEC (25ull * 1000000u)
/*
 * The broker times calls out itself and says so with a Timeout ERROR; the
 * library's own deadline is a fallback for a broker that stopped answering.
 */
#define BUS_TIMEOUT_GRACE_USEC (1000000u)

/* A receive buffer: the largest datagram, and a byte to spare (see rx-buffer.c). */
#define BUS_RX_BUFFER_SIZE (FRAME_SIZE_MAX + 1u)

void *rx_buffer_new(void);
void *rx_buffer_free(void *buf);
size_t rx_buffer_trim(void *buf, size_t keep);
void rx_buffer_release(void *buf, size_t kept);

typedef struct WFrame {
        List link;
        uint64_t serial;
        size_t len;
        size_t n_fds;
        int *fds;               /* duplicates the frame owns until it is sent */
        uint8_t data[];
} WFrame;

/*
 * The receive side: buf[i] holds frame i of the last recvmmsg(), lent to
 * the message made from it (borrower[i]) until that message is freed or
 * the buffer is needed again. Buffers are FRAME_SIZE_MAX + 1 bytes (a NUL
 * after the payload) and allocated on first use.
 */
typedef struct BusRx {
        unsigned int n_bufs;            /* how many the next read may fill */
        unsigned int n_frames;          /* frames of the last read */
        unsigned int next;              /* the next of them to decode */
        bool drained;                   /* the last read took all there was */
        uint8_t *buf[BUS_RX_BATCH_MAX];
        struct plx_msg *borrower[BUS_RX_BATCH_MAX];
        struct iovec iov[BUS_RX_BATCH_MAX];
        struct mmsghdr mmsg[BUS_RX_BATCH_MAX];
        FdControl control[BUS_RX_BATCH_MAX];
} BusRx;

typedef enum SlotType {
        SLOT_CALL,
        SLOT_METHOD,
        SLOT_SUBSCRIPTION,
        SLOT_EXPORT,
} SlotType;

struct plx_slot {
        unsigned int n_refs;
        plx_bus *bus;           /* NULL once inert (bus freed, call answered) */
        SlotType type;
        bool floating;          /* owned by the bus, freed with it */
        List link;              /* bus->slots */
        void *userdata;
        void (*destroy)(void *userdata);        /* frees @userdata with the slot, if set */
        union {
                struct {
                        plx_reply_fn callback;
                        uint64_t serial;
                        uint64_t deadline;
                        HNode node;             /* bus->calls, by serial */
                        List deadline_link;     /* bus->deadlines, sorted */
                } call;
                struct {
                        plx_method_fn callback;
                        HNode node;             /* bus->methods, by member */
                        char *member;
                } method;
                struct {
                        plx_signal_fn callback;
                        List link;              /* bus->subscriptions */
                        char *pattern;
                } sub;
                struct {
                        List link;              /* bus->exports; userdata is its Export (typed.c) */
                } export;
        };
};

/*
 * A lease libplexus renews on the application's behalf, every third of its
 * length, from plx_bus_process().
 */
typedef struct NameLease {
        List link;              /* bus->leases */
        uint64_t lease_usec;
        uint64_t next_usec;     /* monotonic: when to renew */
        uint64_t renew_serial;  /* serial of the RenewName in flight, 0 if none */
        char name[];
} NameLease;

/*
 * Reconnecting (reconnect.c). The state only leaves RECONNECT_IDLE when the
 * connection is lost; see reconnect.c for the transitions.
 */
typedef enum ReconnectState {
        RECONNECT_IDLE,         /* connected, or never to reconnect */
        RECONNECT_LOST,         /* lost; draining the old socket and the read queue */
        RECONNECT_WAITING,      /* no socket; the next attempt is at next_usec */
        RECONNECT_HANDSHAKE,    /* a new socket, HELLO sent, no WELCOME yet */
        RECONNECT_RESTORING,    /* WELCOME received; names and subscriptions being restored */
} ReconnectState;

typedef struct Reconnect {
        bool enabled;
        bool lost_reported;     /* PLX_CONNECTION_LOST told for this loss */
        bool shutdown_seen;     /* the broker's shutdown notice arrived */
        bool given_up;          /* the broker refused us for good */
        ReconnectState state;
        int watch_fd;           /* epoll fd handed out once enabled, or -1 */
        int watched_fd;         /* the socket in watch_fd, or -1 */
        uint32_t watched_events;
        char *address;          /* socket path, for the next connect */
        char *description;      /* for the next HELLO */
        uint64_t backoff_usec;  /* upper bound of the next delay */
        uint64_t next_usec;     /* WAITING: next attempt; HANDSHAKE: give up */
        uint64_t hello_serial;
        uint64_t generation;    /* connections made after the first */
        uint64_t random;        /* xorshift state for the jitter */
        unsigned int n_restoring;
        char restore_error[320]; /* first thing that did not come back */
        List names;             /* ReconnectName.link */
        plx_connection_fn callback;
        void *userdata;
} Reconnect;

struct plx_bus {
        unsigned int n_refs;
        int fd;
        bool connected;
        char unique_id[32];
        uint64_t next_serial;
        uint32_t max_frame_size;

        List wqueue;            /* WFrame.link */
        size_t n_wqueue;
        size_t n_wqueue_bytes;

        List rqueue;            /* plx_msg.link, received, not dispatched */
        size_t n_rqueue;

        List slots;             /* every live slot */
        HTable calls;           /* SLOT_CALL by serial */
        List deadlines;         /* SLOT_CALL by deadline, earliest first */
        HTable methods;         /* SLOT_METHOD by member */
        List subscriptions;     /* SLOT_SUBSCRIPTION */
        List exports;           /* SLOT_EXPORT, in export order */
        List leases;            /* NameLease.link */

        plx_error_fn error_handler;
        void *error_userdata;
        uint64_t n_stray_errors;

        uint64_t last_delivery;
        uint64_t n_missed;

        plx_monitor_fn monitor_callback;        /* non-NULL once a monitor, see monitor.c */
        void *monitor_userdata;

        bool exit_requested;
        bool dispatched;                /* the last plx_bus_process() dispatched a message */
        int exit_code;

        sd_event *event;
        void *io_source;        /* sd_event_source */
        void *time_source;
        void *prepare_source;

        Arena arena;
        BusRx *rx;

        /* Large messages, see large.c. */
        int large_path;                 /* PLX_LARGE_* */
        size_t large_threshold;
        uint64_t max_message_size;      /* from the Welcome; 0: the broker has no large path */
        uint32_t transfer_lease_ms;
        List lent;                      /* Lent.link: buffers receivers may still read */
        List stash;                     /* plx_msg.link, read while confirming a transfer */
        size_t n_stash;
        char vm_refused[8][FRAME_NAME_MAX + 1]; /* destinations that cannot read our memory */
        size_t n_vm_refused;
        void *spare;                    /* the buffer of the last lent payload freed, for the next */
        size_t spare_size;
        uint64_t into_serial;           /* plx_bus_call_into(): the call whose reply goes to into_buf */
        void *into_buf;
        size_t into_size;
        Reconnect reconnect;
};

struct plx_msg {
        unsigned int n_refs;
        plx_bus *bus;           /* a reference; NULL for local errors made without a bus */
        List link;              /* bus->rqueue */
        int kind;
        bool replied;
        uint32_t flags;
        uint32_t timeout_ms;
        uint64_t serial;
        uint64_t reply_serial;
        uint64_t sequence;
        uint64_t delivery;
        uid_t sender_uid;
        pid_t sender_pid;
        const char *sender;
        const char *destination;
        const char *member;
        const char *error_name;
        const char *error_message;
        const uint8_t *payload;
        size_t payload_len;
        void *name_change;      /* decoded plexus.NameOwnerChanged, on demand */
        const ProtobufCMessageDescriptor *typed_reply;  /* a typed CALL's reply type (typed.c), or NULL */
        gid_t sender_gid;
        uint64_t large_size;    /* a large frame's descriptor, as received */
        uint64_t large_addr;
        uint64_t transfer_id;
        int carrier_fd;         /* its memfd or the sender's pidfd until processed, else -1 */
        void *mapping;          /* large_size bytes mapped from a memfd, or NULL */
        void *heap_payload;     /* a lent payload copied into our heap, or NULL */
        void *rx_payload;       /* the payload's own copy or receive buffer, once not lent, or NULL */
        size_t rx_payload_map;  /* rx_payload is that much of a receive buffer (rx_buffer_trim()); 0: a malloc()ed copy */
        bool exposed;           /* the application was given a pointer into the payload */
        int rx_slot;            /* index in bus->rx while its payload is lent from there, else -1 */
        size_t heap_size;       /* its capacity */
        uint64_t connection;    /* bus->reconnect.generation it arrived on */
        size_t n_fds;
        int *fds;               /* received fds; -1 once taken */
        uint8_t data[];         /* strings, then payload, then a NUL */
};

plx_bus *bus_ref(plx_bus *bus);
plx_bus *bus_unref(plx_bus *bus);

int bus_send_frame_now(plx_bus *bus, Plexus__Header *h, const void *payload, size_t size,
                       const int *fds, size_t n_fds, bool now);
int bus_send_frame(plx_bus *bus, Plexus__Header *h, const void *payload, size_t size,
                   const int *fds, size_t n_fds);
int bus_flush_queue(plx_bus *bus);
int bus_read_raw(plx_bus *bus, plx_msg **ret);

int bus_send_payload(plx_bus *bus, Plexus__Header *h, const void *payload, size_t size,
                     const int *fds, size_t n_fds, bool lend);
int bus_send_buffer(plx_bus *bus, Plexus__Header *h, plx_buffer *buf, size_t size);
void large_await_lent(plx_bus *bus, uint64_t serial, uint64_t size);
bool large_lent_pending(plx_bus *bus, uint64_t serial);
void large_remember_refused(plx_bus *bus, const char *destination);
void large_connection_lost(plx_bus *bus);
void large_buffer_put(plx_bus *bus, void *buf, size_t size);
int large_process(plx_bus *bus, plx_msg **pm);
void plx_buffer_freep_internal(plx_buffer **b);
int bus_read(plx_bus *bus, bool *ret_progress);
int bus_wait(plx_bus *bus, uint64_t deadline);
typedef bool (*BusMatchFn)(plx_msg *m, void *userdata);
int bus_await(plx_bus *bus, uint64_t deadline, BusMatchFn match, void *userdata, plx_msg **ret);
int bus_await_reply(plx_bus *bus, uint64_t serial, uint64_t deadline, plx_msg **ret);
uint64_t bus_next_deadline(plx_bus *bus);
int bus_call_broker(plx_bus *bus, const char *member, const ProtobufCMessage *request,
                    plx_msg **ret_reply);

void lease_add(plx_bus *bus, const char *name, uint64_t lease_usec);
void lease_remove(plx_bus *bus, const char *name);
int lease_renew_due(plx_bus *bus, uint64_t now, bool *ret_progress);
void lease_clear(plx_bus *bus);
uint64_t lease_next_deadline(plx_bus *bus);
void bus_connection_lost(plx_bus *bus);
int bus_dispatch(plx_bus *bus, plx_msg *m);
bool monitor_takes(plx_bus *bus, plx_msg *m);

int bus_send_hello(plx_bus *bus, const char *description, uint64_t *ret_serial);
int bus_take_welcome(plx_bus *bus, plx_msg *m, uint64_t serial);
int bus_event_update_fd(plx_bus *bus);

int reconnect_init(plx_bus *bus, const char *address, const char *description);
void reconnect_deinit(plx_bus *bus);
void reconnect_lost(plx_bus *bus);
int reconnect_drained(plx_bus *bus);
int reconnect_step(plx_bus *bus, bool *ret_done);
bool reconnect_takes(plx_bus *bus, plx_msg *m);
int reconnect_dispatch(plx_bus *bus, plx_msg *m);
bool reconnect_blocks_sends(plx_bus *bus);
uint64_t reconnect_next_deadline(plx_bus *bus);
int reconnect_get_events(plx_bus *bus);
int reconnect_call_lost(plx_bus *bus, uint64_t serial, plx_msg **ret);
void reconnect_name_update(plx_bus *bus, const char *name, uint32_t flags, uint64_t lease_usec,
                           const char *will_topic, const void *will_payload, size_t will_size,
                           int result);
void reconnect_name_forget(plx_bus *bus, const char *name);

void bus_rx_return(plx_bus *bus, plx_msg *m);
void bus_rx_discard(plx_bus *bus);
int msg_new_from_frame(plx_msg **ret, plx_bus *bus, const Plexus__Header *h,
                       const uint8_t *payload, size_t payload_len, int rx_slot);
void msg_adopt_fds(plx_msg *m, int *fds, size_t n_fds);
int msg_new_local_error(plx_msg **ret, plx_bus *bus, uint64_t reply_serial,
                        const char *name, const char *message);

int slot_new(plx_slot **ret, plx_bus *bus, SlotType type, void *userdata);
plx_slot *slot_ref(plx_slot *s);
plx_slot *slot_unref(plx_slot *s);
void slot_disconnect(plx_slot *s);
int slot_call_register(plx_slot *s, uint64_t serial, uint64_t deadline, plx_reply_fn cb);
plx_slot *slot_call_find(plx_bus *bus, uint64_t serial);
int slot_dispatch_reply(plx_slot *s, plx_msg *m);
int slot_dispatch_call(plx_bus *bus, plx_msg *m);
int slot_dispatch_signal(plx_bus *bus, plx_msg *m);
int slot_expire_calls(plx_bus *bus, uint64_t now, bool *ret_progress);
void slot_fail_all_calls(plx_bus *bus);

struct plx_interface;
void typed_export_disconnect(plx_slot *s);
bool typed_method_of(plx_slot *s, const ProtobufCServiceDescriptor **ret_service,
                     const ProtobufCMethodDescriptor **ret_method);
const struct plx_interface *typed_interface_of(plx_slot *s);
int introspect_reply(plx_bus *bus, plx_msg *call);

static inline void plx_msg_unrefp_internal(plx_msg **m) {
        plx_msg_unref(*m);
}

uint64_t timeout_to_deadline(uint64_t timeout_usec);
uint32_t timeout_to_ms(uint64_t timeout_usec);
