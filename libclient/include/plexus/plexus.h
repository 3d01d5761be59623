#pragma once

/*
 * libplexus: the client library of the Plexus message bus.
 *
 * A plx_bus is one connection to a broker. It is driven by the caller's own
 * event loop (plx_bus_get_fd(), plx_bus_get_events(), plx_bus_get_timeout(),
 * plx_bus_process()), by an sd-event loop (plx_bus_attach_event()), or by the
 * small blocking loop plx_bus_run(). A plx_bus is not thread-safe: use it
 * from one thread at a time.
 *
 * Errors: every function returning int returns a negative errno-style value
 * on failure and >= 0 on success. A remote error (an ERROR frame from the
 * peer or the broker) is a message like any other: synchronous calls return
 * -EREMOTEIO and hand it out, see plx_bus_call().
 *
 * Ownership: "borrows" means the pointer must stay valid only for the
 * duration of the call; "returns a new reference" means the caller must
 * plx_msg_unref() it; strings returned by accessors live as long as the
 * object they came from.
 *
 * Sending is batched. A frame without fds of at most 16 KiB (asynchronous
 * calls, publishes, replies and errors, calls that expect no reply) is
 * copied into the outgoing queue and written later, together with the
 * frames queued after it, in one system call: when plx_bus_process() is
 * about to read or to return 0, by plx_bus_flush(), by a synchronous call
 * before it waits, when the queue holds 64 frames, by the sd-event
 * integration before its loop sleeps, and by plx_bus_free(). Meanwhile
 * plx_bus_get_events() includes POLLOUT, so a program that polls as
 * documented wakes at once and its next plx_bus_process() writes them. A
 * program that sends and then blocks on something else than @bus (a
 * plain read() of another fd, sleep(), exit()) must call plx_bus_flush()
 * first. Frames with fds and longer ones are written at once, behind what
 * is queued (errors such as -EBADF are the caller's to hear). A queued
 * frame the connection loss takes is answered like a lost call: the
 * callback of an asynchronous call gets PLX_ERROR_DISCONNECTED.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct plx_bus plx_bus;
typedef struct plx_msg plx_msg;
typedef struct plx_slot plx_slot;
typedef struct sd_event sd_event;

/* Message kinds, as on the wire. */
enum {
        PLX_MSG_CALL = 1,
        PLX_MSG_REPLY = 2,
        PLX_MSG_ERROR = 3,
        PLX_MSG_SIGNAL = 4,
};

/* Error names used by the broker and by libplexus itself. */
#define PLX_ERROR_INVALID_FRAME "plexus.Error.InvalidFrame"
#define PLX_ERROR_FRAME_TOO_LARGE "plexus.Error.FrameTooLarge"
#define PLX_ERROR_VERSION_MISMATCH "plexus.Error.VersionMismatch"
#define PLX_ERROR_PROTOCOL_VIOLATION "plexus.Error.ProtocolViolation"
#define PLX_ERROR_INVALID_ARGS "plexus.Error.InvalidArgs"
#define PLX_ERROR_UNKNOWN_METHOD "plexus.Error.UnknownMethod"
#define PLX_ERROR_SERVICE_UNKNOWN "plexus.Error.ServiceUnknown"
#define PLX_ERROR_DISCONNECTED "plexus.Error.Disconnected"
#define PLX_ERROR_QUEUE_FULL "plexus.Error.QueueFull"
#define PLX_ERROR_LIMITS_EXCEEDED "plexus.Error.LimitsExceeded"
#define PLX_ERROR_UNEXPECTED_REPLY "plexus.Error.UnexpectedReply"
#define PLX_ERROR_TIMEOUT "plexus.Error.Timeout"
#define PLX_ERROR_FAILED "plexus.Error.Failed"
#define PLX_ERROR_NAME_HAS_NO_OWNER "plexus.Error.NameHasNoOwner"
#define PLX_ERROR_NAME_NOT_OWNED "plexus.Error.NameNotOwned"
#define PLX_ERROR_FDS_REJECTED "plexus.Error.FdsRejected"
#define PLX_ERROR_ACCESS_DENIED "plexus.Error.AccessDenied"
#define PLX_ERROR_TRANSFER_EXPIRED "plexus.Error.TransferExpired"
#define PLX_ERROR_TRANSFER_REFUSED "plexus.Error.TransferRefused"
#define PLX_ERROR_INVALID_PAYLOAD "plexus.Error.InvalidPayload"

/* File descriptors one message can carry (the kernel's SCM_MAX_FD). */
#define PLX_FDS_MAX 253

/* The broker's own name, as a call destination. */
#define PLX_BROKER "plexus"

/*
 * The method every client and the broker answer with a plexus.Introspection
 * describing itself (docs/protocol.md §18; plexus/protobuf.h).
 */
#define PLX_INTROSPECT "Introspect"

/* Topic on which the broker tells every client it is shutting down. */
#define PLX_TOPIC_SHUTDOWN "plexus/broker/shutdown"

/* Prefix of the topics on which the broker announces changes of name owners. */
#define PLX_TOPIC_NAMES_PREFIX "plexus/names/"

/*
 * Topic on which the broker tells a monitor how many copies it dropped for
 * it (payload: plexus.MonitorMissed, see docs/protocol.md §16).
 */
#define PLX_TOPIC_MONITOR_MISSED "plexus/monitor/missed"

/* Pass as a timeout to use the default (25 s). */
#define PLX_TIMEOUT_DEFAULT UINT64_MAX

/*
 * Callback types. A callback returns >= 0 on success; a negative value is
 * handed back to the caller of plx_bus_process() (and so stops plx_bus_run()),
 * except for method handlers, see plx_method_fn.
 *
 * @msg is borrowed: take a reference with plx_msg_ref() to keep it.
 */

/* Answer to plx_bus_call_async(): @msg is the REPLY or ERROR. */
typedef int (*plx_reply_fn)(plx_msg *msg, void *userdata);

/*
 * A CALL for a registered member. Reply with plx_msg_reply() or
 * plx_msg_reply_error(), now or later (keep a reference). A handler that
 * returns a negative errno without having replied makes libplexus reply with
 * PLX_ERROR_FAILED and the errno text; the error is not propagated further.
 */
typedef int (*plx_method_fn)(plx_msg *call, void *userdata);

/* A SIGNAL whose topic matched a subscription. */
typedef int (*plx_signal_fn)(plx_msg *signal, void *userdata);

/* An ERROR that answers no pending call, e.g. a failed publish. */
typedef int (*plx_error_fn)(plx_msg *error, void *userdata);

/*
 * A frame received by a monitor, see plx_bus_become_monitor(). Nothing is
 * answered on the monitor's behalf, whatever the kind.
 */
typedef int (*plx_monitor_fn)(plx_msg *msg, void *userdata);

/* --- Connection --------------------------------------------------------- */

/**
 * plx_bus_new() - connect to a broker and complete the handshake
 * @ret:         the new connection, written on success
 * @address:     socket path; NULL for the default ($PLEXUS_BUS_ADDRESS, else
 *               $XDG_RUNTIME_DIR/plexus/bus, else /run/plexus/bus as root)
 * @description: free text shown by inspection tools; NULL for the program
 *               name. Borrowed.
 *
 * Blocks until the broker has answered HELLO (at most the default timeout).
 *
 * Return: 0, -ENOENT (no default address), -ECONNREFUSED/-ENOENT (no broker),
 * -EPROTO (version mismatch or malformed answer), -EUSERS (the broker is at
 * its client limit), -EACCES (the broker's policy does not admit this user),
 * -ETIMEDOUT, -ENOMEM.
 */
int plx_bus_new(plx_bus **ret, const char *address, const char *description);

/**
 * plx_bus_free() - disconnect and free
 * @bus:        connection or NULL
 *
 * Frames still queued (see above) are written first; if the broker does
 * not take them within 250 ms, the rest is dropped. Pending async calls are
 * dropped without their callbacks running; slots stay valid for
 * plx_slot_free() but are inert.
 *
 * Return: NULL.
 */
plx_bus *plx_bus_free(plx_bus *bus);

/**
 * plx_bus_get_unique_id() - the id the broker gave this connection
 * @bus:        connection
 *
 * After a reconnect (plx_bus_set_reconnect()) it is the id of the new
 * connection; while disconnected, still the last one.
 *
 * Return: e.g. ":42", valid until @bus is freed or reconnects.
 */
const char *plx_bus_get_unique_id(plx_bus *bus);

/**
 * plx_bus_flush() - write out the outgoing queue, blocking
 * @bus:        connection
 *
 * Waits as long as the broker does not take the frames (its queue for us
 * is full); plx_bus_free() waits at most 250 ms.
 *
 * Return: 0 when the queue is empty, negative errno otherwise.
 */
int plx_bus_flush(plx_bus *bus);

/* --- Event loop integration --------------------------------------------- */

/**
 * plx_bus_get_fd() - the fd to watch
 *
 * The socket; once plx_bus_set_reconnect() was enabled, an epoll fd that
 * holds the current socket and stays the same for the life of @bus.
 *
 * Return: the fd (owned by @bus), or -ENOTCONN.
 */
int plx_bus_get_fd(plx_bus *bus);

/**
 * plx_bus_get_events() - poll events to wait for on plx_bus_get_fd()
 *
 * Return: POLLIN, plus POLLOUT while outgoing frames are queued (the same
 * bit values as EPOLLIN/EPOLLOUT): after a send that is batched, until the
 * next plx_bus_process() or plx_bus_flush() writes it, or while the socket
 * is full. Or -ENOTCONN. Always POLLIN alone once
 * reconnecting was enabled (call it before each wait all the same: it keeps
 * the epoll fd's interest current).
 */
int plx_bus_get_events(plx_bus *bus);

/**
 * plx_bus_get_timeout() - how long the caller may sleep
 * @bus:        connection
 * @ret_ms:     relative milliseconds until plx_bus_process() must run again,
 *              rounded up, ready to pass to poll() or epoll_wait(); -1 when
 *              there is no deadline; 0 when work is ready now
 *
 * Return: 0, or -ENOTCONN.
 */
int plx_bus_get_timeout(plx_bus *bus, int *ret_ms);

/**
 * plx_bus_process() - do one step of work without blocking
 * @bus:        connection
 *
 * Writes queued frames, reads what has arrived, expires timed-out calls and
 * dispatches at most one received message to its callback. It reads, and
 * writes the queue first, only when the messages read before are all
 * dispatched, so the answers sent by a run of callbacks go out together;
 * returning 0, it has written whatever the socket takes.
 *
 * A received message's payload stays in the buffer it was read into as
 * long as the buffer is not needed for the next read; keeping a reference
 * (plx_msg_ref()) is always safe: the message then gets a copy.
 *
 * Return: 1 if something was done (call again), 0 if idle (wait for the fd
 * or the timeout), -ECONNRESET once the broker has gone (unless reconnecting,
 * see plx_bus_set_reconnect()), or a negative value returned by a callback.
 */
int plx_bus_process(plx_bus *bus);

/**
 * plx_bus_run() - process and wait until plx_bus_exit() or an error
 *
 * Return: the code given to plx_bus_exit(), or a negative errno.
 */
int plx_bus_run(plx_bus *bus);

/**
 * plx_bus_exit() - make plx_bus_run() return @code
 */
void plx_bus_exit(plx_bus *bus, int code);

/**
 * plx_bus_attach_event() - let an sd-event loop drive @bus
 * @bus:        connection
 * @event:      the loop, or NULL for the thread's default loop; a reference is
 *              taken
 * @priority:   priority of the sources (SD_EVENT_PRIORITY_NORMAL is 0)
 *
 * Callbacks run from the loop. A negative callback result or a lost
 * connection makes the loop exit with that value.
 *
 * Return: 0, -EBUSY if already attached, or a negative errno.
 */
int plx_bus_attach_event(plx_bus *bus, sd_event *event, int64_t priority);

/**
 * plx_bus_detach_event() - undo plx_bus_attach_event()
 *
 * Return: 0 (also when not attached).
 */
int plx_bus_detach_event(plx_bus *bus);

/* --- Surviving a broker restart ---------------------------------------- */

/* Events of plx_connection_fn. */
enum {
        PLX_CONNECTION_LOST = 1,        /* the connection to the broker ended */
        PLX_CONNECTION_RESTORED = 2,    /* a new connection is up, names and subscriptions back */
};

/* Why the connection was lost: the reason of a PLX_CONNECTION_LOST event. */
#define PLX_DISCONNECT_SHUTDOWN "shutdown"      /* the broker announced its shutdown first */
#define PLX_DISCONNECT_RESET "reset"            /* it ended without notice (crash, SIGKILL) */

/*
 * A change of the connection, see plx_bus_set_connection_handler().
 * @event:      PLX_CONNECTION_LOST or PLX_CONNECTION_RESTORED
 * @reason:     for LOST, PLX_DISCONNECT_SHUTDOWN or PLX_DISCONNECT_RESET;
 *              for RESTORED, NULL if every name and subscription came back,
 *              else a text naming what did not (e.g. a name another client
 *              took meanwhile). Borrowed, valid during the call.
 */
typedef int (*plx_connection_fn)(plx_bus *bus, int event, const char *reason, void *userdata);

/**
 * plx_bus_set_reconnect() - reconnect by itself when the broker goes away
 * @bus:        connection
 * @enable:     non-zero to reconnect, 0 to end the connection as before
 *
 * Off by default: a program written for libplexus 0.1 expects
 * plx_bus_process() to fail with -ECONNRESET when the broker goes away
 * (and exits, to be restarted by its supervisor); only a program that asks
 * for it can cope with a new unique id, so it has to ask.
 *
 * With reconnecting on, losing the connection is not an error:
 * plx_bus_process() first completes every call in flight with a local
 * PLX_ERROR_DISCONNECTED error and dispatches what the broker sent before
 * closing, then tells the connection handler PLX_CONNECTION_LOST and tries
 * to connect to the same address again: after 25..50 ms, then with
 * exponential backoff and random jitter up to 2 s between attempts, for as
 * long as it takes. Once a new broker has answered, libplexus requests
 * again every well-known name the application requested and has not
 * released (with the same flags, lease and last will), subscribes again to
 * every pattern of a live subscription, and then tells the handler
 * PLX_CONNECTION_RESTORED. Method handlers are local and need nothing.
 * plx_bus_get_unique_id() gives the new unique id from then on.
 *
 * While disconnected, every function that sends fails at once with
 * -ENOTCONN; nothing is queued for later. plx_bus_process() returns 0 or 1
 * as usual; plx_bus_get_timeout() includes the next attempt. A broker that
 * refuses the handshake for good (PLX_ERROR_ACCESS_DENIED or a protocol
 * version mismatch) ends the retries: plx_bus_process() then fails with
 * -ECONNRESET. A monitor (plx_bus_become_monitor()) is not reconnected.
 *
 * The socket changes with each connection, so once reconnecting is enabled
 * plx_bus_get_fd() returns an epoll fd owned by @bus that stays the same
 * for the life of @bus and is readable whenever plx_bus_process() has
 * work; plx_bus_get_events() then always says POLLIN. Enable reconnecting
 * before handing plx_bus_get_fd() to a foreign loop; a loop attached with
 * plx_bus_attach_event() is switched over by this call.
 *
 * Return: 0, -ENOMEM, -EMFILE/-ENFILE (no fd for the epoll instance), or a
 * negative errno from switching an attached sd-event source.
 */
int plx_bus_set_reconnect(plx_bus *bus, int enable);

/**
 * plx_bus_set_connection_handler() - learn of lost and restored connections
 * @bus:        connection
 * @callback:   runs from plx_bus_process(), see plx_connection_fn; NULL for
 *              none
 * @userdata:   handed to @callback
 *
 * The handler hears PLX_CONNECTION_LOST once per loss, after the calls in
 * flight got their PLX_ERROR_DISCONNECTED errors, whether or not
 * reconnecting is enabled (without it plx_bus_process() returns
 * -ECONNRESET right after). The reason is known to every client: the broker
 * sends its shutdown notice to all of them, subscribed or not. With
 * reconnecting, PLX_CONNECTION_RESTORED follows once a new connection is
 * set up. A negative return value is handed back by plx_bus_process().
 */
void plx_bus_set_connection_handler(plx_bus *bus, plx_connection_fn callback, void *userdata);

/* --- Calls -------------------------------------------------------------- */

/**
 * plx_bus_call() - call a method and wait for the answer
 * @bus:         connection
 * @destination: unique id of the callee, or PLX_BROKER; borrowed
 * @member:      method name; borrowed
 * @payload:     request bytes, may be NULL if @size is 0; borrowed
 * @size:        their length
 * @timeout_usec: how long to wait, or PLX_TIMEOUT_DEFAULT
 * @ret_reply:   optional; receives a new reference to the REPLY, or to the
 *               ERROR when -EREMOTEIO is returned
 *
 * Messages that arrive meanwhile are queued and dispatched later by
 * plx_bus_process().
 *
 * The broker enforces the timeout (capped at its maximum, 120 s by default)
 * and answers with a PLX_ERROR_TIMEOUT error; libplexus gives up on its own
 * one second later, should the broker not answer at all.
 *
 * Return: 0 on a REPLY; -EREMOTEIO on an ERROR (see plx_msg_get_error_name());
 * -ETIMEDOUT when the broker's Timeout error arrives (*ret_reply is set) or
 * the local deadline passes (*ret_reply is not set); -ECONNRESET, -ENOBUFS
 * (outgoing or incoming queue full), -EMSGSIZE (frame too large), -EINVAL
 * (also for a @destination or @member that is not UTF-8); with reconnecting
 * on, -ENOTCONN while disconnected, and -EREMOTEIO with a local
 * PLX_ERROR_DISCONNECTED error when the connection is lost during the call.
 */
int plx_bus_call(plx_bus *bus, const char *destination, const char *member,
                 const void *payload, size_t size, uint64_t timeout_usec,
                 plx_msg **ret_reply);

/**
 * plx_bus_call_async() - call a method; @callback gets the answer
 * @bus:         connection
 * @ret_slot:    optional; a handle that cancels the call when freed. When
 *               NULL the call is owned by @bus.
 * @destination: as for plx_bus_call()
 * @member:      as for plx_bus_call()
 * @payload:     as for plx_bus_call()
 * @size:        as for plx_bus_call()
 * @timeout_usec: as for plx_bus_call(); on expiry @callback gets a
 *               PLX_ERROR_TIMEOUT error: the broker's, or one made locally
 *               (sender NULL) if the broker has not answered a second later
 * @callback:    runs exactly once with the REPLY or ERROR, unless the slot is
 *               freed or @bus is freed first. If the connection is lost it
 *               gets a local PLX_ERROR_DISCONNECTED error.
 * @userdata:    handed to @callback
 *
 * The call is queued and written with the next flush (see the top of this
 * file); plx_bus_process() does that.
 *
 * Return: 0, or as plx_bus_call() for errors detected before sending.
 */
int plx_bus_call_async(plx_bus *bus, plx_slot **ret_slot, const char *destination,
                       const char *member, const void *payload, size_t size,
                       uint64_t timeout_usec, plx_reply_fn callback, void *userdata);

/**
 * plx_bus_call_with_fds() - plx_bus_call() passing file descriptors
 * @fds:        open fds to pass, borrowed: the callee receives duplicates;
 *              the caller keeps and closes its own
 * @n_fds:      how many, at most PLX_FDS_MAX
 *
 * Any fd type can travel: pipes, sockets, memfds, files. The other
 * arguments and the results are as for plx_bus_call(), plus -EBADF if one of
 * @fds is not open, -ETOOMANYREFS if the kernel refuses more fds in flight
 * for this user (RLIMIT_NOFILE; the connection stays usable), and
 * plexus.Error.FdsRejected (-EREMOTEIO) if the broker or the callee could
 * not take them. A frame already queued when the kernel refuses its fds is
 * dropped and answered locally with PLX_ERROR_FDS_REJECTED.
 */
int plx_bus_call_with_fds(plx_bus *bus, const char *destination, const char *member,
                          const void *payload, size_t size, const int *fds, size_t n_fds,
                          uint64_t timeout_usec, plx_msg **ret_reply);

/**
 * plx_bus_call_async_with_fds() - plx_bus_call_async() passing file descriptors
 *
 * @fds and @n_fds as for plx_bus_call_with_fds().
 */
int plx_bus_call_async_with_fds(plx_bus *bus, plx_slot **ret_slot, const char *destination,
                                const char *member, const void *payload, size_t size,
                                const int *fds, size_t n_fds, uint64_t timeout_usec,
                                plx_reply_fn callback, void *userdata);

/**
 * plx_bus_send_call() - send a call that expects no reply
 *
 * Delivery failures still come back as ERROR frames, to the handler set with
 * plx_bus_set_error_handler().
 *
 * Return: 0, or as plx_bus_call().
 */
int plx_bus_send_call(plx_bus *bus, const char *destination, const char *member,
                      const void *payload, size_t size);

/**
 * plx_bus_add_method() - handle calls to @member
 * @bus:        connection
 * @ret_slot:   optional; freeing it unregisters the handler. When NULL the
 *              registration lives as long as @bus.
 * @member:     method name, 1..255 bytes; copied
 * @callback:   the handler
 * @userdata:   handed to @callback
 *
 * Calls to members with no handler are answered with PLX_ERROR_UNKNOWN_METHOD.
 *
 * Return: 0, -EEXIST if @member has a handler, -EINVAL, -ENOMEM.
 */
int plx_bus_add_method(plx_bus *bus, plx_slot **ret_slot, const char *member,
                       plx_method_fn callback, void *userdata);

/**
 * plx_msg_reply() - answer @call with a REPLY
 * @call:       a CALL received by a method handler; borrowed
 * @payload:    reply bytes; borrowed
 * @size:       their length
 *
 * Return: 0, -EALREADY if @call was answered, -EINVAL if it is not a CALL,
 * -ENOBUFS, -EMSGSIZE, -ECONNRESET (also for a CALL received on a
 * connection that has since been replaced by a reconnect), -ENOTCONN while
 * reconnecting. A call sent with no reply expected is "answered" by doing
 * nothing, and 0 is returned.
 */
int plx_msg_reply(plx_msg *call, const void *payload, size_t size);

/**
 * plx_msg_reply_with_fds() - plx_msg_reply() passing file descriptors
 *
 * @fds and @n_fds as for plx_bus_call_with_fds().
 */
int plx_msg_reply_with_fds(plx_msg *call, const void *payload, size_t size,
                           const int *fds, size_t n_fds);

/**
 * plx_msg_reply_error() - answer @call with an ERROR
 * @call:       a CALL received by a method handler; borrowed
 * @name:       error name, e.g. "org.example.Error.NotFound"; borrowed
 * @message:    human-readable text, may be NULL; borrowed
 *
 * Return: as plx_msg_reply().
 */
int plx_msg_reply_error(plx_msg *call, const char *name, const char *message);

/* --- Large messages ------------------------------------------------------ */

/*
 * Payloads above the bus's frame size (about 128 KiB) up to the broker's
 * maximum message size (1 GiB by default, plx_bus_get_max_message_size())
 * travel outside the socket; docs/protocol.md §17 has the exchange. The
 * ordinary send functions (plx_bus_call() and friends, plx_msg_reply(),
 * plx_bus_publish()) switch to it on their own above a threshold:
 *
 *  - plx_bus_call() lends the caller's own buffer: the callee's library
 *    copies it once with process_vm_readv(). The buffer is borrowed until
 *    plx_bus_call() returns, as always; by then no reader can touch it.
 *    Where the callee may not read our memory (another uid, Yama, seccomp),
 *    the call is sent again, at once, in a sealed memfd, and the callee is
 *    remembered for next time.
 *  - Everything else (async calls, replies, signals) copies the payload once
 *    into a sealed memfd, which receivers map read-only: the caller's buffer
 *    is free again when the function returns.
 *  - A plx_buffer is a memfd the application writes into directly, then
 *    hands over: no copy on the sending side at all.
 *
 * Received large payloads are read-only mappings (memfd) or buffers of the
 * library's (process_vm); either way plx_msg_get_payload() points at them
 * for as long as the message lives.
 */

/* plx_bus_set_large_path() values. */
enum {
        PLX_LARGE_AUTO = 0,             /* as described above */
        PLX_LARGE_INLINE,               /* never: payloads must fit one frame (-EMSGSIZE) */
        PLX_LARGE_MEMFD,                /* always a sealed memfd above the threshold */
        PLX_LARGE_PROCESS_VM,           /* always lend (async sends lend a private copy) */
};

/* About the most one frame carries: below it inline costs less CPU (docs/performance.md §8.5). */
#define PLX_LARGE_THRESHOLD_DEFAULT (120u * 1024u)

typedef struct plx_buffer plx_buffer;

/**
 * plx_buffer_new() - a shareable buffer to build a large payload in
 * @ret:        the buffer, written on success
 * @size:       its capacity in bytes, at least 1
 *
 * The buffer is a memfd mapped read-write into this process. Write the
 * payload into plx_buffer_get_data(), then hand it to
 * plx_bus_publish_buffer(), plx_bus_call_buffer() or plx_msg_reply_buffer(),
 * which seal it and pass it on without copying. Those functions take the
 * buffer over, whatever they return: do not touch the data or free the
 * buffer after the call. A buffer never sent is freed with plx_buffer_free().
 *
 * Return: 0, -EINVAL, -ENOMEM, or the errno of memfd_create()/mmap().
 */
int plx_buffer_new(plx_buffer **ret, size_t size);

/** plx_buffer_get_data() - where to write the payload; valid until the buffer is sent or freed */
void *plx_buffer_get_data(plx_buffer *buf);

/** plx_buffer_get_size() - the capacity given to plx_buffer_new() */
size_t plx_buffer_get_size(plx_buffer *buf);

/** plx_buffer_free() - release a buffer that was not sent; NULL is fine. Return: NULL. */
plx_buffer *plx_buffer_free(plx_buffer *buf);

/**
 * plx_bus_publish_buffer() - publish the first @size bytes of @buf on @topic
 *
 * Takes @buf over (see plx_buffer_new()): every subscriber maps the same
 * sealed pages. Return: as plx_bus_publish(); -EINVAL if @size exceeds the
 * buffer, -EMSGSIZE above the broker's maximum message size.
 */
int plx_bus_publish_buffer(plx_bus *bus, const char *topic, plx_buffer *buf, size_t size);

/**
 * plx_bus_call_buffer() - plx_bus_call() with the request in @buf
 *
 * Takes @buf over (see plx_buffer_new()). Return: as plx_bus_call().
 */
int plx_bus_call_buffer(plx_bus *bus, const char *destination, const char *member,
                        plx_buffer *buf, size_t size, uint64_t timeout_usec, plx_msg **ret_reply);

/**
 * plx_msg_reply_buffer() - plx_msg_reply() with the reply in @buf
 *
 * Takes @buf over (see plx_buffer_new()). Return: as plx_msg_reply().
 */
int plx_msg_reply_buffer(plx_msg *call, plx_buffer *buf, size_t size);

/**
 * plx_bus_call_into() - plx_bus_call() that places the reply in @reply_buf
 * @reply_buf:  where the reply's payload goes if it fits; borrowed until
 *              this returns
 * @reply_buf_size: its capacity
 *
 * A reply that fits is written into @reply_buf once, whatever path it took
 * (for a memfd reply, one copy out of the mapping; for a lent reply,
 * process_vm_readv() straight into it): no allocation for its bytes.
 * plx_msg_get_payload() of *@ret_reply then returns @reply_buf, so keep it
 * alive as long as the message. A larger reply is returned as by
 * plx_bus_call().
 *
 * Return: as plx_bus_call().
 */
int plx_bus_call_into(plx_bus *bus, const char *destination, const char *member,
                      const void *payload, size_t size, uint64_t timeout_usec,
                      void *reply_buf, size_t reply_buf_size, plx_msg **ret_reply);

/**
 * plx_bus_set_large_path() - choose how large payloads travel
 * @path:       PLX_LARGE_AUTO (default), _INLINE, _MEMFD or _PROCESS_VM
 *
 * For tests and benchmarks; AUTO is what applications want.
 * Return: 0 or -EINVAL.
 */
int plx_bus_set_large_path(plx_bus *bus, int path);

/**
 * plx_bus_set_large_threshold() - payloads above @bytes take the large path
 *
 * Default PLX_LARGE_THRESHOLD_DEFAULT; capped at what fits one frame.
 * Return: 0 or -EINVAL.
 */
int plx_bus_set_large_threshold(plx_bus *bus, size_t bytes);

/** plx_bus_get_max_message_size() - the largest payload the broker accepts */
uint64_t plx_bus_get_max_message_size(plx_bus *bus);

/* --- Publish / subscribe ------------------------------------------------ */

/**
 * plx_bus_publish() - publish a SIGNAL on @topic
 * @bus:        connection
 * @topic:      levels separated by '/', no wildcards, not under "plexus/"
 * @payload:    borrowed
 * @size:       its length
 *
 * A small signal waits in the outgoing queue for the next flush (see the
 * top of this file): call plx_bus_flush() before blocking elsewhere.
 *
 * Return: 0 once queued for the broker; -EINVAL for a bad topic, -ENOBUFS,
 * -EMSGSIZE, -ECONNRESET (-ENOTCONN while reconnecting). Subscribers that could not take the signal are
 * reported by an ERROR to the handler set with plx_bus_set_error_handler().
 */
int plx_bus_publish(plx_bus *bus, const char *topic, const void *payload, size_t size);

/**
 * plx_bus_publish_with_fds() - plx_bus_publish() passing file descriptors
 *
 * Every subscriber receives its own duplicates. @fds and @n_fds as for
 * plx_bus_call_with_fds().
 */
int plx_bus_publish_with_fds(plx_bus *bus, const char *topic, const void *payload, size_t size,
                             const int *fds, size_t n_fds);

/**
 * plx_bus_subscribe() - receive signals whose topic matches @pattern
 * @bus:        connection
 * @ret_slot:   optional; freeing it unsubscribes. When NULL the subscription
 *              lives as long as @bus.
 * @pattern:    topic pattern; '+' matches one level, a final '#' the rest
 * @callback:   runs for each matching signal
 * @userdata:   handed to @callback
 *
 * Blocks until the broker has confirmed the subscription, so a signal
 * published after this returns is delivered.
 *
 * Return: 0, -EINVAL for a bad pattern, -EREMOTEIO if the broker refused
 * (e.g. too many subscriptions), or as plx_bus_call().
 */
int plx_bus_subscribe(plx_bus *bus, plx_slot **ret_slot, const char *pattern,
                      plx_signal_fn callback, void *userdata);

/**
 * plx_bus_set_error_handler() - receive ERRORs that answer no pending call
 * @bus:        connection
 * @callback:   the handler, or NULL to drop such errors (they are counted)
 * @userdata:   handed to @callback
 */
void plx_bus_set_error_handler(plx_bus *bus, plx_error_fn callback, void *userdata);

/**
 * plx_bus_get_n_missed() - frames the broker could not deliver to us
 *
 * The broker numbers the frames it delivers to each connection; a gap means
 * it dropped some (e.g. signals while our queue was full).
 *
 * Return: the number of frames missed since connecting.
 */
uint64_t plx_bus_get_n_missed(plx_bus *bus);

/**
 * plx_slot_free() - cancel what @slot stands for
 * @slot:       a slot or NULL
 *
 * Return: NULL.
 */
plx_slot *plx_slot_free(plx_slot *slot);

/* --- Monitoring -------------------------------------------------------- */

/**
 * plx_bus_become_monitor() - receive a copy of every frame the broker routes
 * @bus:        connection
 * @topics:     NULL-terminated topic patterns ('+', final '#'), or NULL
 * @names:      NULL-terminated unique ids or well-known names, or NULL
 * @members:    NULL-terminated method names, or NULL
 * @callback:   gets every frame received from now on, see below
 * @userdata:   handed to @callback
 *
 * Calls the broker's BecomeMonitor (docs/protocol.md §16) and waits for
 * its answer. With no filter at all every routed frame is copied; else a
 * frame is copied if any filter matches: a SIGNAL whose topic matches one
 * of @topics, a frame whose sender or destination is one of @names, a
 * CALL whose member is one of @members. At most 64 filters in all. The
 * arrays and strings are borrowed.
 *
 * From then on plx_bus_process() hands every received frame to @callback
 * instead of dispatching it: copies of CALLs (never answered, not even
 * with PLX_ERROR_UNKNOWN_METHOD), REPLYs, ERRORs and SIGNALs between other
 * clients, and the SIGNALs the broker sends the monitor itself, among them
 * PLX_TOPIC_MONITOR_MISSED. Only REPLYs and ERRORs addressed to this
 * connection go their usual way, so the monitor can still call the bus's
 * own methods (the only frames a monitor may send). Messages queued but
 * not yet dispatched when this returns go to @callback too.
 *
 * The broker never waits for a monitor: copies that do not fit its queue
 * are dropped. Each copy takes a number of the connection's delivery
 * counter all the same, so drops show as gaps in plx_msg_get_delivery()
 * (summed by plx_bus_get_n_missed()); once the queue has drained the
 * broker also says how many on PLX_TOPIC_MONITOR_MISSED. Copies carry no
 * file descriptors. There is no way back: a monitor stays one until
 * plx_bus_free().
 *
 * Return: 0; -EALREADY if @bus is a monitor already; -EINVAL for a bad
 * pattern, name or member, or more than 64 filters; -EACCES if the
 * broker's policy does not allow this user to monitor; or as
 * plx_bus_call().
 */
int plx_bus_become_monitor(plx_bus *bus, const char *const *topics, const char *const *names,
                           const char *const *members, plx_monitor_fn callback, void *userdata);

/* --- Well-known names -------------------------------------------------- */

/*
 * A well-known name is reverse-DNS style ("org.example.Printer"): two or more
 * elements of [A-Za-z0-9_-] separated by '.', no element starting with a
 * digit, 240 bytes at most, not under "plexus.". Each name has a primary
 * owner and a queue of clients waiting for it; calls to a name go to its
 * primary owner at the time the broker routes them.
 */

/* Flags of plx_bus_request_name(). */
#define PLX_NAME_ALLOW_REPLACEMENT 0x1u /* a later PLX_NAME_REPLACE_EXISTING may take it over */
#define PLX_NAME_REPLACE_EXISTING 0x2u  /* take it over if the owner allows replacement */
#define PLX_NAME_DO_NOT_QUEUE 0x4u      /* fail with PLX_NAME_EXISTS instead of waiting */
#define PLX_NAME_NO_AUTO_RENEW 0x10000u /* with a lease: libplexus does not renew it */

/* Results of plx_bus_request_name(). */
enum {
        PLX_NAME_PRIMARY_OWNER = 1,
        PLX_NAME_IN_QUEUE = 2,
        PLX_NAME_EXISTS = 3,
        PLX_NAME_ALREADY_OWNER = 4,
};

/* Results of plx_bus_release_name(). */
enum {
        PLX_NAME_RELEASED = 1,
        PLX_NAME_NON_EXISTENT = 2,
        PLX_NAME_NOT_OWNER = 3,
};

/* Why a name changed owner (plx_msg_get_name_change()). */
enum {
        PLX_NAME_CHANGE_REQUESTED = 1,          /* it had no owner and was requested */
        PLX_NAME_CHANGE_RELEASED = 2,           /* the old owner released it */
        PLX_NAME_CHANGE_REPLACED = 3,           /* another client replaced the old owner */
        PLX_NAME_CHANGE_DISCONNECTED = 4,       /* the old owner disconnected */
        PLX_NAME_CHANGE_LEASE_EXPIRED = 5,      /* the old owner did not renew its lease */
};

/**
 * plx_bus_request_name() - ask for a well-known name
 * @bus:        connection
 * @name:       the name; borrowed
 * @flags:      PLX_NAME_ALLOW_REPLACEMENT, _REPLACE_EXISTING, _DO_NOT_QUEUE
 *
 * Blocks until the broker answers. Asking again updates the flags.
 *
 * Return: PLX_NAME_PRIMARY_OWNER, _IN_QUEUE, _EXISTS or _ALREADY_OWNER;
 * -EINVAL for a bad name or flags, -EDQUOT at the broker's limit of names
 * per client, or as plx_bus_call().
 */
int plx_bus_request_name(plx_bus *bus, const char *name, uint32_t flags);

/**
 * plx_bus_request_name_lease() - ask for a name held under a lease
 * @bus:        connection
 * @name:       the name; borrowed
 * @flags:      as for plx_bus_request_name(), plus PLX_NAME_NO_AUTO_RENEW
 * @lease_usec: the lease, 10 ms to 1 h; 0 for none
 * @will_topic: last will: if the name is lost involuntarily (lease expiry or
 *              disconnect) while this client owns it, the broker publishes
 *              @will_payload on this topic with this client as sender;
 *              NULL for none. Borrowed.
 * @will_payload: up to 4096 bytes; borrowed
 * @will_size:  their length
 *
 * The broker releases the name (or this client's place in its queue) when
 * the lease is not renewed in time. libplexus renews it every third of the
 * lease from plx_bus_process(), unless PLX_NAME_NO_AUTO_RENEW is given; a
 * client that stops processing loses the name, which is the point.
 *
 * Return: as plx_bus_request_name().
 */
int plx_bus_request_name_lease(plx_bus *bus, const char *name, uint32_t flags, uint64_t lease_usec,
                               const char *will_topic, const void *will_payload, size_t will_size);

/**
 * plx_bus_renew_name() - renew the lease on @name now
 *
 * Return: 0; -ENXIO if this client neither owns nor waits for @name (any
 * more); or as plx_bus_call().
 */
int plx_bus_renew_name(plx_bus *bus, const char *name);

/**
 * plx_bus_release_name() - give up @name, owned or waited for
 *
 * Return: PLX_NAME_RELEASED, _NON_EXISTENT or _NOT_OWNER, or as
 * plx_bus_call().
 */
int plx_bus_release_name(plx_bus *bus, const char *name);

/**
 * plx_bus_get_name_owner() - the unique id owning @name now
 * @bus:        connection
 * @name:       a well-known name or a unique id
 * @ret_owner:  optional; receives a copy to free()
 *
 * Return: 0, -ENXIO if nobody owns it, or as plx_bus_call().
 */
int plx_bus_get_name_owner(plx_bus *bus, const char *name, char **ret_owner);

/**
 * plx_bus_wait_for_name() - wait until @name has an owner
 * @bus:        connection
 * @name:       a well-known name
 * @timeout_usec: how long to wait, or PLX_TIMEOUT_DEFAULT
 * @ret_owner:  optional; receives the owner's unique id, to free()
 *
 * Watches "plexus/names/<name>" and asks for the owner, so an owner that
 * appears at any moment is seen. Messages that arrive meanwhile are queued
 * for plx_bus_process().
 *
 * Return: 0, -ETIMEDOUT, -EINVAL, or as plx_bus_call().
 */
int plx_bus_wait_for_name(plx_bus *bus, const char *name, uint64_t timeout_usec, char **ret_owner);

/* --- Messages ----------------------------------------------------------- */

plx_msg *plx_msg_ref(plx_msg *msg);
plx_msg *plx_msg_unref(plx_msg *msg);

/* PLX_MSG_CALL, PLX_MSG_REPLY, PLX_MSG_ERROR or PLX_MSG_SIGNAL. */
int plx_msg_get_kind(plx_msg *msg);
uint64_t plx_msg_get_serial(plx_msg *msg);
uint64_t plx_msg_get_reply_serial(plx_msg *msg);
/*
 * Unique id of the sender as stamped by the broker ("plexus" for the broker);
 * NULL for errors made by libplexus itself (local timeout, lost connection).
 */
const char *plx_msg_get_sender(plx_msg *msg);
const char *plx_msg_get_destination(plx_msg *msg);
/* Method name of a CALL; NULL for other kinds. */
const char *plx_msg_get_member(plx_msg *msg);
/* Topic of a SIGNAL; NULL for other kinds. */
const char *plx_msg_get_topic(plx_msg *msg);
/* Error name of an ERROR; NULL for other kinds. */
const char *plx_msg_get_error_name(plx_msg *msg);
/* Error text of an ERROR (NUL-terminated copy of its payload); NULL otherwise. */
const char *plx_msg_get_error_message(plx_msg *msg);
/* Payload bytes; *ret_size gets their length. Valid as long as @msg. */
const void *plx_msg_get_payload(plx_msg *msg, size_t *ret_size);
/* Bus-wide sequence number fixing the order of all frames. */
uint64_t plx_msg_get_sequence(plx_msg *msg);
/* Per-connection delivery counter: 1, 2, 3, ... with gaps for missed frames. */
uint64_t plx_msg_get_delivery(plx_msg *msg);
/*
 * Credentials of the sender, as the kernel told the broker when the sender
 * connected (SO_PEERCRED); stamped by the broker, never taken from the
 * sender's own header.
 */
uid_t plx_msg_get_sender_uid(plx_msg *msg);
gid_t plx_msg_get_sender_gid(plx_msg *msg);
pid_t plx_msg_get_sender_pid(plx_msg *msg);

/*
 * File descriptors that came with @msg. They belong to @msg and are closed
 * with it, unless taken: plx_msg_take_fd() hands fd @index to the caller,
 * who must close it; afterwards the slot reads as -EBADF.
 * plx_msg_get_fd() only lends it (valid while @msg lives and the fd is not
 * taken). Both return -EINVAL for an index out of range.
 */
size_t plx_msg_get_n_fds(plx_msg *msg);
int plx_msg_get_fd(plx_msg *msg, size_t index);
int plx_msg_take_fd(plx_msg *msg, size_t index);
/* Milliseconds the caller waits for a CALL, 0 for other kinds. */
uint32_t plx_msg_get_timeout_ms(plx_msg *msg);
/* Whether a CALL expects no reply. */
int plx_msg_get_no_reply(plx_msg *msg);
/*
 * The descriptor of a large message (docs/protocol.md §17) as it came in
 * the header: its payload's length (0 for an ordinary message), the
 * address it was lent from (0 for the memfd path) and the broker's transfer
 * id (process_vm path). A received large message's payload is already in
 * plx_msg_get_payload(); a monitor's copy has the descriptor only, and no
 * payload.
 */
uint64_t plx_msg_get_large_size(plx_msg *msg);
uint64_t plx_msg_get_large_addr(plx_msg *msg);
uint64_t plx_msg_get_transfer_id(plx_msg *msg);
/* The connection that received @msg, or NULL for a locally made error. */
plx_bus *plx_msg_get_bus(plx_msg *msg);

/**
 * plx_msg_get_name_change() - read a change-of-owner signal
 * @msg:        a SIGNAL from the broker on PLX_TOPIC_NAMES_PREFIX "<name>"
 * @ret_name:   optional; the name
 * @ret_old_owner: optional; the previous owner's unique id, "" if none
 * @ret_new_owner: optional; the new owner's unique id, "" if none
 * @ret_reason: optional; a PLX_NAME_CHANGE_* value
 *
 * Strings live as long as @msg.
 *
 * Return: 0, -EINVAL if @msg is not such a signal, -EBADMSG if its payload
 * cannot be read.
 */
int plx_msg_get_name_change(plx_msg *msg, const char **ret_name, const char **ret_old_owner,
                            const char **ret_new_owner, int *ret_reason);

/* --- Cleanup helpers ---------------------------------------------------- */

static inline void plx_bus_freep(plx_bus **p) {
        if (*p)
                plx_bus_free(*p);
}

static inline void plx_msg_unrefp(plx_msg **p) {
        if (*p)
                plx_msg_unref(*p);
}

static inline void plx_slot_freep(plx_slot **p) {
        if (*p)
                plx_slot_free(*p);
}

#ifdef __cplusplus
}
#endif
