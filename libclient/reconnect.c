/*
 * Surviving a broker restart: reconnecting, restoring what the broker
 * forgot, and telling the application.
 *
 * A broker keeps nothing across a restart, so everything a client holds
 * there must be asked for again: its well-known names (as it requested
 * them: flags, lease, last will) and its subscriptions. Method handlers
 * live in the client and need nothing. The new connection gets a new
 * unique id.
 *
 * States (Reconnect.state), driven from plx_bus_process():
 *
 *   IDLE ──loss──▶ LOST ──drained──▶ WAITING ──connect()──▶ HANDSHAKE
 *                   ▲                  ▲ │ failed               │ WELCOME
 *                   │                  └─┘                      ▼
 *                   └────────────────── loss ────────────── RESTORING ──▶ IDLE
 *
 * LOST: bus_connection_lost() failed the calls in flight; the old socket is
 * read to its end, so that what the broker sent before closing (its
 * shutdown notice, which every client gets, subscribed or not) and the
 * Disconnected errors are dispatched before the application hears
 * PLX_CONNECTION_LOST. Without reconnecting, the bus stays LOST and
 * plx_bus_process() returns -ECONNRESET, as in libplexus 0.1.
 *
 * WAITING: no socket. Attempts are spaced by exponential backoff with
 * jitter ("equal jitter": half the bound plus a random part of the other
 * half, the bound doubling from 50 ms to 2 s), so that the clients of a
 * restarted broker do not all knock at the same moment. The first attempt
 * comes 25..50 ms after the loss: a restarting broker needs some time, and
 * with socket activation the connection simply waits in the backlog.
 *
 * HANDSHAKE: connected, HELLO sent; frames of the application are refused
 * with -ENOTCONN until the WELCOME says who we are. The WELCOME arrives
 * through the ordinary read path and is taken here (reconnect_takes()).
 *
 * RESTORING: RequestName and Subscribe calls in flight, asynchronous and
 * answered through the ordinary dispatch; when the last answer is in, the
 * application hears PLX_CONNECTION_RESTORED. A loss meanwhile fails those
 * calls like any others and starts over.
 *
 * The fd the application polls: sockets come and go, so a reconnecting bus
 * hands out an epoll fd of its own (Reconnect.watch_fd) holding the current
 * socket, level-triggered. It never changes, whatever loop holds it; while
 * no socket exists it is simply never readable, and the next attempt is a
 * deadline in plx_bus_get_timeout().
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "address.h"
#include "bus-internal.h"

#define RECONNECT_BACKOFF_MIN_USEC (50u * 1000u)
#define RECONNECT_BACKOFF_MAX_USEC (2u * 1000u * 1000u)

/* A well-known name as the application last requested it. */
typedef struct ReconnectName {
        List link;              /* Reconnect.names */
        uint32_t flags;         /* PLX_NAME_*, PLX_NAME_NO_AUTO_RENEW included */
        uint64_t lease_usec;
        uint64_t restore_serial; /* RequestName in flight while RESTORING, else 0 */
        int result;             /* the broker's last answer, PLX_NAME_* */
        const char *will_topic; /* NULL for none; points into data */
        const uint8_t *will_payload;
        size_t will_size;
        char name[];            /* then the will topic, then its payload */
} ReconnectName;

/**
 * reconnect_init() - set up @bus's reconnection state, off
 * @bus:        a new bus
 * @address:    the socket path it connects to; copied
 * @description: the description of its HELLO, NULL for the program name; copied
 *
 * Safe to undo with reconnect_deinit() after a failure.
 *
 * Return: 0 or -ENOMEM.
 */
int reconnect_init(plx_bus *bus, const char *address, const char *description) {
        Reconnect *rc = &bus->reconnect;

        *rc = (Reconnect) {
                .state = RECONNECT_IDLE,
                .watch_fd = -1,
                .watched_fd = -1,
                .backoff_usec = RECONNECT_BACKOFF_MIN_USEC,
        };
        list_init(&rc->names);

        rc->address = strdup(address);
        if (!rc->address)
                return -ENOMEM;
        if (description) {
                rc->description = strdup(description);
                if (!rc->description)
                        return -ENOMEM;
        }
        return 0;
}

/**
 * reconnect_deinit() - free what reconnect_init() and later calls made
 *
 * The socket itself is closed by the caller; the epoll fd goes here.
 */
void reconnect_deinit(plx_bus *bus) {
        Reconnect *rc = &bus->reconnect;
        ReconnectName *n;

        /* Closing the epoll instance drops its registration of the socket with it. */
        rc->watch_fd = plx_close(rc->watch_fd);
        rc->watched_fd = -1;
        if (rc->names.next) {
                while ((n = list_first_entry(&rc->names, ReconnectName, link))) {
                        list_unlink(&n->link);
                        free(n);
                }
        }
        free(rc->address);
        rc->address = NULL;
        free(rc->description);
        rc->description = NULL;
}

/* --- The fd the application polls -------------------------------------- */

/* Make watch_fd hold the current socket with the events it needs now. */
static int watch_sync(plx_bus *bus) {
        Reconnect *rc = &bus->reconnect;
        struct epoll_event ev = {};

        if (rc->watch_fd < 0)
                return 0;
        if (bus->fd >= 0)
                ev.events = EPOLLIN | (list_is_empty(&bus->wqueue) ? 0 : EPOLLOUT);

        if (rc->watched_fd != bus->fd && rc->watched_fd >= 0) {
                /* The old socket is still open here: DEL before close(), always. */
                (void)epoll_ctl(rc->watch_fd, EPOLL_CTL_DEL, rc->watched_fd, NULL);
                rc->watched_fd = -1;
        }
        if (bus->fd < 0)
                return 0;
        ev.data.fd = bus->fd;
        if (rc->watched_fd != bus->fd) {
                if (epoll_ctl(rc->watch_fd, EPOLL_CTL_ADD, bus->fd, &ev) < 0)
                        return -errno;
                rc->watched_fd = bus->fd;
        } else if (ev.events != rc->watched_events) {
                if (epoll_ctl(rc->watch_fd, EPOLL_CTL_MOD, bus->fd, &ev) < 0)
                        return -errno;
        }
        rc->watched_events = ev.events;
        return 0;
}

/**
 * reconnect_get_events() - plx_bus_get_events() of a bus handing out watch_fd
 *
 * The epoll fd is readable when the socket has what plx_bus_process() needs
 * (input, or room for queued output), so POLLIN is all the caller waits for.
 *
 * Return: POLLIN (EPOLLIN), or a negative errno from epoll_ctl().
 */
int reconnect_get_events(plx_bus *bus) {
        int r = watch_sync(bus);

        return r < 0 ? r : EPOLLIN;
}

/* --- Telling the application -------------------------------------------- */

static int report(plx_bus *bus, int event, const char *reason) {
        Reconnect *rc = &bus->reconnect;

        if (!rc->callback)
                return 0;
        return rc->callback(bus, event, reason, rc->userdata);
}

/* --- Loss and backoff ---------------------------------------------------- */

static uint64_t next_random(Reconnect *rc) {
        /*
         * Seeded on first use, not in plx_bus_new(): most buses never
         * reconnect, and getpid() is a system call per connection.
         * Different per process and per bus: the point of jitter.
         */
        if (rc->random == 0)
                rc->random = (now_usec() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)rc) | 1;
        /* xorshift64: jitter needs spread, not secrecy. */
        rc->random ^= rc->random << 13;
        rc->random ^= rc->random >> 7;
        rc->random ^= rc->random << 17;
        return rc->random;
}

static void schedule_attempt(Reconnect *rc) {
        uint64_t half = rc->backoff_usec / 2;

        rc->next_usec = now_usec() + half + next_random(rc) % (half + 1);
        rc->backoff_usec = MIN(rc->backoff_usec * 2, (uint64_t)RECONNECT_BACKOFF_MAX_USEC);
}

/**
 * reconnect_lost() - the connection just ended (from bus_connection_lost())
 *
 * Calls still in flight from a restore are failed like the application's;
 * their answers are ignored now that the state is LOST.
 */
void reconnect_lost(plx_bus *bus) {
        bus->reconnect.state = RECONNECT_LOST;
        bus->reconnect.n_restoring = 0;
}

/**
 * reconnect_drained() - everything from the lost connection is dispatched
 *
 * Tells the application of the loss (once per loss), then either gives up
 * the connection as libplexus 0.1 did or closes the old socket and waits
 * for the first attempt.
 *
 * Return: 1 when reconnecting, -ECONNRESET when not, or a negative value
 * returned by the connection handler.
 */
int reconnect_drained(plx_bus *bus) {
        Reconnect *rc = &bus->reconnect;
        int r = 0;

        if (!rc->lost_reported) {
                rc->lost_reported = true;
                r = report(bus, PLX_CONNECTION_LOST,
                           rc->shutdown_seen ? PLX_DISCONNECT_SHUTDOWN : PLX_DISCONNECT_RESET);
        }
        if (!rc->enabled || rc->given_up || bus->monitor_callback)
                return r < 0 ? r : -ECONNRESET;

        if (bus->fd >= 0) {
                int fd = bus->fd;

                bus->fd = -1;
                (void)watch_sync(bus);
                bus_rx_discard(bus);
                plx_close(fd);
        }
        rc->state = RECONNECT_WAITING;
        schedule_attempt(rc);
        return r < 0 ? r : 1;
}

/**
 * reconnect_call_lost() - the answer to a synchronous call the loss took
 * @bus:        the bus
 * @serial:     the call
 * @ret:        a local Disconnected error, as asynchronous calls get
 *
 * Return: 0 or -ENOMEM.
 */
int reconnect_call_lost(plx_bus *bus, uint64_t serial, plx_msg **ret) {
        return msg_new_local_error(ret, bus, serial, PLX_ERROR_DISCONNECTED,
                                   "the connection to the bus was lost");
}

/* --- Attempts ---------------------------------------------------------- */

static int attempt(plx_bus *bus) {
        Reconnect *rc = &bus->reconnect;
        _cleanup_(closep) int fd = -1;
        struct sockaddr_un sa;
        socklen_t len;
        int r;

        r = address_to_sockaddr(rc->address, &sa, &len);
        if (r < 0)
                return r;
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        /*
         * Never blocks: AF_UNIX connects at once or fails, with EAGAIN when
         * the backlog is full, which is one more reason to back off.
         */
        if (connect(fd, (struct sockaddr *)&sa, len) < 0)
                return -errno;

        bus->fd = TAKE_FD(fd);
        bus->connected = true;
        bus->reconnect.generation++;
        bus->last_delivery = 0;         /* the new broker counts from 1 */
        rc->state = RECONNECT_HANDSHAKE;
        rc->next_usec = now_usec() + BUS_DEFAULT_TIMEOUT_USEC;
        r = watch_sync(bus);
        if (r < 0) {
                /* Unwatchable: treat as a failed attempt; the drain closes it. */
                bus_connection_lost(bus);
                return 1;
        }
        /* A failure here ended the connection already: the drain retries. */
        (void)bus_send_hello(bus, rc->description, &rc->hello_serial);
        return 1;
}

/**
 * reconnect_step() - the part of plx_bus_process() that reconnecting owns
 * @bus:        a bus not in RECONNECT_IDLE
 * @ret_done:   set when plx_bus_process() must return the result as it is
 *
 * Return: with *ret_done, what plx_bus_process() returns; else 0.
 */
int reconnect_step(plx_bus *bus, bool *ret_done) {
        Reconnect *rc = &bus->reconnect;
        int r;

        switch (rc->state) {
        case RECONNECT_WAITING:
                *ret_done = true;
                if (!rc->enabled)
                        return -ECONNRESET;
                if (now_usec() < rc->next_usec)
                        return 0;
                r = attempt(bus);
                if (r < 0) {
                        /* No broker yet (ENOENT, ECONNREFUSED), or its backlog is full. */
                        schedule_attempt(rc);
                        return 0;
                }
                return 1;
        case RECONNECT_HANDSHAKE:
                /* A broker that accepted but never answers: try again later. */
                if (now_usec() >= rc->next_usec)
                        bus_connection_lost(bus);
                return 0;
        default:
                return 0;
        }
}

/**
 * reconnect_blocks_sends() - whether the application's frames must wait
 *
 * True during the handshake of a new connection: the broker accepts nothing
 * but HELLO before it, and the application would not know its unique id.
 */
bool reconnect_blocks_sends(plx_bus *bus) {
        return bus->reconnect.state == RECONNECT_HANDSHAKE;
}

/**
 * reconnect_next_deadline() - when plx_bus_process() must run for us
 *
 * Return: monotonic usec, or UINT64_MAX.
 */
uint64_t reconnect_next_deadline(plx_bus *bus) {
        Reconnect *rc = &bus->reconnect;

        if (rc->state == RECONNECT_WAITING || rc->state == RECONNECT_HANDSHAKE)
                return rc->next_usec;
        return UINT64_MAX;
}

/* --- Restoring --------------------------------------------------------- */

_printf_(2, 3) static void note_failure(Reconnect *rc, const char *fmt, ...) {
        va_list ap;

        /* The first one is enough for the handler; the rest is like it. */
        if (rc->restore_error[0])
                return;
        va_start(ap, fmt);
        vsnprintf(rc->restore_error, sizeof(rc->restore_error), fmt, ap);
        va_end(ap);
}

static int restored(plx_bus *bus) {
        Reconnect *rc = &bus->reconnect;

        rc->state = RECONNECT_IDLE;
        rc->lost_reported = false;
        rc->shutdown_seen = false;
        return report(bus, PLX_CONNECTION_RESTORED, rc->restore_error[0] ? rc->restore_error : NULL);
}

static int restore_answered(plx_bus *bus) {
        Reconnect *rc = &bus->reconnect;

        if (rc->n_restoring == 0 || --rc->n_restoring > 0)
                return 0;
        return restored(bus);
}

static ReconnectName *name_find(plx_bus *bus, const char *name) {
        ReconnectName *n;

        list_for_each_entry(n, &bus->reconnect.names, link)
                if (strcmp(n->name, name) == 0)
                        return n;
        return NULL;
}

static int name_restored(plx_msg *m, void *userdata) {
        plx_bus *bus = userdata;
        Reconnect *rc = &bus->reconnect;
        Plexus__RequestNameReply *rep;
        ReconnectName *n, *found = NULL;

        /* An answer from before the latest loss: that restore is over. */
        if (rc->state != RECONNECT_RESTORING)
                return 0;

        /* Found by serial: the application may have released the name meanwhile. */
        list_for_each_entry(n, &rc->names, link)
                if (n->restore_serial && n->restore_serial == m->reply_serial) {
                        found = n;
                        break;
                }
        if (found) {
                found->restore_serial = 0;
                if (m->kind == PLX_MSG_ERROR) {
                        note_failure(rc, "name %s: %s", found->name, m->error_name);
                } else if ((rep = plexus__request_name_reply__unpack(NULL, m->payload_len, m->payload))) {
                        int result = (int)rep->result;

                        plexus__request_name_reply__free_unpacked(rep, NULL);
                        if (result == PLX_NAME_EXISTS) {
                                /* Another client was faster and we asked not to queue. */
                                note_failure(rc, "name %s: owned by another client", found->name);
                                lease_remove(bus, found->name);
                                list_unlink(&found->link);
                                free(found);
                        } else {
                                /* Owned before, queued now: someone took it while we were away. */
                                if (result == PLX_NAME_IN_QUEUE && found->result != PLX_NAME_IN_QUEUE)
                                        note_failure(rc, "name %s: queued behind another owner", found->name);
                                found->result = result;
                                /* The lease runs from now: renew from now. */
                                if (found->lease_usec && !(found->flags & PLX_NAME_NO_AUTO_RENEW))
                                        lease_add(bus, found->name, found->lease_usec);
                        }
                } else {
                        note_failure(rc, "name %s: malformed reply", found->name);
                }
        }
        return restore_answered(bus);
}

static int subscription_restored(plx_msg *m, void *userdata) {
        plx_bus *bus = userdata;
        Reconnect *rc = &bus->reconnect;

        if (rc->state != RECONNECT_RESTORING)
                return 0;
        if (m->kind == PLX_MSG_ERROR)
                note_failure(rc, "a subscription: %s", m->error_name);
        return restore_answered(bus);
}

static int restore_name(plx_bus *bus, ReconnectName *n) {
        Plexus__RequestNameRequest req = PLEXUS__REQUEST_NAME_REQUEST__INIT;
        uint8_t buf[4096 + 1024];
        size_t size;
        int r;

        req.name = n->name;
        req.flags = n->flags & ~PLX_NAME_NO_AUTO_RENEW;
        req.lease_ms = (uint32_t)(n->lease_usec / 1000);
        req.will_topic = (char *)(n->will_topic ?: "");
        req.will_payload.data = (uint8_t *)n->will_payload;
        req.will_payload.len = n->will_size;

        /* Bounded by plx_bus_request_name_lease()'s checks: name, topic, 4096 bytes. */
        size = plexus__request_name_request__get_packed_size(&req);
        if (size > sizeof(buf))
                return -EMSGSIZE;
        r = plx_bus_call_async(bus, NULL, PLX_BROKER, "RequestName", buf,
                               plexus__request_name_request__pack(&req, buf),
                               PLX_TIMEOUT_DEFAULT, name_restored, bus);
        if (r < 0)
                return r;
        /* The call just sent took the last serial. */
        n->restore_serial = bus->next_serial - 1;
        return 0;
}

static int restore_subscription(plx_bus *bus, plx_slot *s) {
        Plexus__SubscribeRequest req = PLEXUS__SUBSCRIBE_REQUEST__INIT;
        uint8_t buf[FRAME_NAME_MAX + 16];

        req.pattern = s->sub.pattern;
        return plx_bus_call_async(bus, NULL, PLX_BROKER, "Subscribe", buf,
                                  plexus__subscribe_request__pack(&req, buf),
                                  PLX_TIMEOUT_DEFAULT, subscription_restored, bus);
}

/* Ask the new broker for everything the old one knew of us. */
static int restore(plx_bus *bus) {
        Reconnect *rc = &bus->reconnect;
        ReconnectName *n;
        plx_slot *s;
        int r;

        rc->state = RECONNECT_RESTORING;
        rc->n_restoring = 0;
        rc->restore_error[0] = 0;

        list_for_each_entry(n, &rc->names, link) {
                r = restore_name(bus, n);
                if (r < 0) {
                        note_failure(rc, "name %s: not requested (%s)", n->name, strerror(-r));
                        continue;
                }
                rc->n_restoring++;
        }
        list_for_each_entry(s, &bus->subscriptions, sub.link) {
                r = restore_subscription(bus, s);
                if (r < 0) {
                        note_failure(rc, "subscription %s: not requested (%s)", s->sub.pattern, strerror(-r));
                        continue;
                }
                rc->n_restoring++;
        }
        /* Sending can end the connection: then the drain starts over. */
        if (rc->state != RECONNECT_RESTORING)
                return 0;
        if (rc->n_restoring == 0)
                return restored(bus);
        return 0;
}

/**
 * reconnect_takes() - whether @m belongs to reconnecting, not to the application
 * @bus:        the bus
 * @m:          a message about to be dispatched
 *
 * Notes the broker's shutdown notice on the way: it decides the reason the
 * application is told, and every client gets it, subscribed or not.
 *
 * Return: true during the handshake of a new connection.
 */
bool reconnect_takes(plx_bus *bus, plx_msg *m) {
        if (m->kind == PLX_MSG_SIGNAL && m->sender && strcmp(m->sender, PLX_BROKER) == 0 &&
            strcmp(m->member, PLX_TOPIC_SHUTDOWN) == 0)
                bus->reconnect.shutdown_seen = true;
        return bus->reconnect.state == RECONNECT_HANDSHAKE;
}

/**
 * reconnect_dispatch() - take the new broker's answer to HELLO
 *
 * Return: 0, or a negative value returned by the connection handler.
 */
int reconnect_dispatch(plx_bus *bus, plx_msg *m) {
        Reconnect *rc = &bus->reconnect;
        int r;

        r = bus_take_welcome(bus, m, rc->hello_serial);
        if (r < 0) {
                /*
                 * Refused: a full broker (-EUSERS) may take us later; one whose
                 * policy or protocol version shuts us out will not.
                 */
                if (r == -EACCES || r == -EPROTO)
                        rc->given_up = true;
                bus_connection_lost(bus);
                return 0;
        }
        rc->backoff_usec = RECONNECT_BACKOFF_MIN_USEC;
        return restore(bus);
}

/* --- Names ------------------------------------------------------------- */

/**
 * reconnect_name_forget() - do not request @name again after a reconnect
 */
void reconnect_name_forget(plx_bus *bus, const char *name) {
        ReconnectName *n = name_find(bus, name);

        if (!n)
                return;
        list_unlink(&n->link);
        free(n);
}

/**
 * reconnect_name_update() - remember a request for @name as the broker answered it
 * @bus:        the bus
 * @name:       the name; copied
 * @flags:      as requested, PLX_NAME_NO_AUTO_RENEW included
 * @lease_usec: as requested
 * @will_topic: as requested, NULL for none; copied
 * @will_payload: copied
 * @will_size:  its length
 * @result:     the broker's answer, PLX_NAME_*
 *
 * A request that left us neither owner nor queued (PLX_NAME_EXISTS) is
 * not repeated. Best effort: without memory the name is not restored,
 * which the PLX_CONNECTION_RESTORED reason cannot tell, but a change signal
 * and plx_bus_get_name_owner() can.
 */
void reconnect_name_update(plx_bus *bus, const char *name, uint32_t flags, uint64_t lease_usec,
                           const char *will_topic, const void *will_payload, size_t will_size,
                           int result) {
        size_t name_len = strlen(name), topic_len = will_topic ? strlen(will_topic) : 0;
        ReconnectName *n;
        char *p;

        reconnect_name_forget(bus, name);
        if (result == PLX_NAME_EXISTS)
                return;

        n = calloc(1, sizeof(*n) + name_len + 1 + topic_len + 1 + will_size);
        if (!n)
                return;
        n->flags = flags;
        n->lease_usec = lease_usec;
        n->result = result;
        p = n->name;
        memcpy(p, name, name_len + 1);
        p += name_len + 1;
        if (will_topic) {
                memcpy(p, will_topic, topic_len + 1);
                n->will_topic = p;
        }
        p += topic_len + 1;
        if (will_size)
                memcpy(p, will_payload, will_size);
        n->will_payload = (const uint8_t *)p;
        n->will_size = will_size;
        list_append(&bus->reconnect.names, &n->link);
}

/* --- Public API -------------------------------------------------------- */

_public_ int plx_bus_set_reconnect(plx_bus *bus, int enable) {
        Reconnect *rc;
        int r;

        assert_return(bus, -EINVAL);
        rc = &bus->reconnect;

        if (enable && rc->watch_fd < 0) {
                rc->watch_fd = epoll_create1(EPOLL_CLOEXEC);
                if (rc->watch_fd < 0)
                        return -errno;
                r = watch_sync(bus);
                if (r >= 0)
                        r = bus_event_update_fd(bus);
                if (r < 0) {
                        rc->watch_fd = plx_close(rc->watch_fd);
                        rc->watched_fd = -1;
                        (void)bus_event_update_fd(bus);
                        return r;
                }
        }
        rc->enabled = enable != 0;
        return 0;
}

_public_ void plx_bus_set_connection_handler(plx_bus *bus, plx_connection_fn callback, void *userdata) {
        if (!bus)
                return;
        bus->reconnect.callback = callback;
        bus->reconnect.userdata = userdata;
}
