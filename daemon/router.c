/*
 * Routing of frames (see router.h).
 *
 * For each frame from a client the broker decodes the header into the
 * per-broker arena, checks it, stamps the fields only it may set (sender,
 * credentials, sequence), encodes the header once and hands header and
 * untouched payload to each receiver (peer_send()). Frames the broker makes
 * itself go the same way, with "plexus" as sender.
 *
 * What the sender learns when a frame cannot be delivered is the core of the
 * "nothing lost" rule: every refusal produces an ERROR to the sender with
 * reply_serial set to the refused frame's serial; see docs/protocol.md.
 */

#include <assert.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "bus-name.h"
#include "driver.h"
#include "header-wire.h"
#include "monitor.h"
#include "peer.h"
#include "pending.h"
#include "router.h"
#include "topic.h"
#include "transfer.h"

static void stamp(Broker *b, Plexus__Header *h, Peer *from) {
        const struct ucred *cred = from ? &from->cred : &b->cred;

        h->sender = from ? from->unique_id : (char *)BROKER_NAME;
        h->sender_uid = cred->uid;
        h->sender_gid = cred->gid;
        h->sender_pid = (uint32_t)cred->pid;
        h->sequence = ++b->sequence;
        h->delivery = 0;
}

/* Count a large frame by its path once it reached a receiver. */
static void large_routed(Broker *b, const Plexus__Header *h) {
        if (h->large_size) {
                b->stats.n_large[h->large_addr ? 1 : 0]++;
                b->stats.n_large_bytes[h->large_addr ? 1 : 0] += h->large_size;
        }
}

/*
 * Hand a client's frame on: its header bytes as received plus the stamp of
 * @h (stamped already), its payload and fds, all untouched. No header is
 * encoded on this path.
 */
static int forward_one(Broker *b, Peer *to, Peer *from, const Plexus__Header *h, const FrameView *fv,
                       const int *fds, size_t n_fds, Transfer *t) {
        uint8_t stamp[FRAME_STAMP_MAX];
        OutFrame f = {
                .header = fv->header,
                .header_len = fv->header_len,
                .stamp = stamp,
                .stamp_len = frame_stamp_encode(h, stamp),
                .payload = fv->payload,
                .payload_len = fv->payload_len,
                .fds = fds,
                .n_fds = n_fds,
                .origin_id = from->id,
                .origin_serial = h->serial,
                .stable = true,
        };
        int r;

        /* A frame for a monitor reaches it once, as itself, not also as a copy. */
        if (!to->monitor)
                monitor_copy(b, h, fv->payload, fv->payload_len);
        r = peer_send(to, &f, false);
        out_frame_deinit(&f);
        if (r == 0) {
                b->stats.n_routed[h->kind]++;
                b->stats.n_bytes_routed += fv->payload_len;
                large_routed(b, h);
                if (t && transfer_add_receiver(t, to) < 0)
                        /* The receiver's AckTransfer will be refused: it never keeps the bytes. */
                        peer_log(to, LOG_WARNING, "out of memory recording a transfer reader");
        }
        return r;
}

/*
 * Encode @h and hand it with @payload and @fds to @to. A frame from a client
 * (@from) remembers it, so that the sender can be told should the frame be
 * dropped later. Returns peer_send()'s result.
 */
static int send_one(Broker *b, Peer *to, Peer *from, const Plexus__Header *h, const void *payload,
                    size_t payload_len, const int *fds, size_t n_fds, bool force) {
        uint8_t header[FRAME_HEADER_MAX];
        OutFrame f = {
                .header = header,
                .payload = payload,
                .payload_len = payload_len,
                .fds = fds,
                .n_fds = n_fds,
                .origin_id = from ? from->id : 0,
                .origin_serial = h->serial,
        };
        int r;

        f.header_len = frame_header_pack(h, header, sizeof(header));
        /* Stamping adds at most FRAME_STAMP_RESERVE bytes to a checked header. */
        assert(f.header_len > 0);

        /* A monitor's own traffic is not copied back to the monitors. */
        if (!to->monitor)
                monitor_copy(b, h, payload, payload_len);
        r = peer_send(to, &f, force);
        out_frame_deinit(&f);
        if (r == 0) {
                b->stats.n_routed[h->kind]++;
                b->stats.n_bytes_routed += payload_len;
        }
        return r;
}

static int vsend_error(Broker *b, Peer *to, uint64_t reply_serial, const char *name,
                       const char *fmt, va_list ap) {
        Plexus__Header h = PLEXUS__HEADER__INIT;
        char text[512];
        int n;

        n = vsnprintf(text, sizeof(text), fmt, ap);
        if (n < 0)
                n = 0;

        h.kind = PLEXUS__KIND__KIND_ERROR;
        h.reply_serial = reply_serial;
        h.destination = to->unique_id;
        h.error_name = (char *)name;
        stamp(b, &h, NULL);
        h.serial = h.sequence;

        b->stats.n_errors_sent++;
        /* Forced: bounded by the sender's own frames, see queue.h. */
        return send_one(b, to, NULL, &h, text, MIN((size_t)n, sizeof(text) - 1), NULL, 0, true);
}

/**
 * router_send_error() - send an ERROR made by the broker
 * @b:          the broker
 * @to:         the receiver
 * @reply_serial: serial of the frame the error is about, 0 if unknown
 * @name:       error name
 * @fmt:        printf format of the message (the ERROR's payload)
 *
 * Return: 0 (forced frames are never refused).
 */
int router_send_error(Broker *b, Peer *to, uint64_t reply_serial, const char *name,
                      const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vsend_error(b, to, reply_serial, name, fmt, ap);
        va_end(ap);
        return r;
}

/**
 * router_fail_peer() - send @p an ERROR and close its connection
 * @b:          the broker
 * @p:          the offending peer
 * @reply_serial: serial of the offending frame, 0 if it could not be read
 * @name:       error name
 * @fmt:        printf format of the message
 *
 * Used for frames that break the protocol. Logged once per peer and rate
 * limited, since a client in a loop could otherwise flood the journal.
 */
void router_fail_peer(Broker *b, Peer *p, uint64_t reply_serial, const char *name,
                      const char *fmt, ...) {
        char text[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);

        b->stats.n_protocol_errors++;
        if (log_limit_pass(&p->log_limit, &b->log, now_usec()))
                peer_log(p, LOG_NOTICE, "%s: %s, disconnecting", name, text);

        router_send_error(b, p, reply_serial, name, "%s", text);
        peer_close(p);
}

static int pack_payload(const ProtobufCMessage *payload, uint8_t *stack, size_t stack_size,
                        uint8_t **ret_heap, size_t *ret_size) {
        size_t n = protobuf_c_message_get_packed_size(payload);

        *ret_heap = NULL;
        if (n > stack_size) {
                *ret_heap = malloc(n);
                if (!*ret_heap)
                        return -ENOMEM;
        }
        protobuf_c_message_pack(payload, *ret_heap ?: stack);
        *ret_size = n;
        return 0;
}

/**
 * router_send_reply() - send a REPLY made by the broker
 * @b:          the broker
 * @to:         the caller
 * @reply_serial: the CALL's serial
 * @payload:    protobuf message to encode as payload, or NULL for none
 *
 * Return: 0, or -ENOMEM.
 */
int router_send_reply(Broker *b, Peer *to, uint64_t reply_serial, const ProtobufCMessage *payload) {
        Plexus__Header h = PLEXUS__HEADER__INIT;
        _cleanup_(freep) uint8_t *heap = NULL;
        uint8_t stack[512];
        size_t n = 0;
        int r;

        if (payload) {
                if (protobuf_c_message_get_packed_size(payload) > FRAME_SEND_MAX)
                        /* Until large messages exist, a reply must fit one frame. */
                        return router_send_error(b, to, reply_serial, ERROR_LIMITS_EXCEEDED,
                                                 "reply of %zu bytes exceeds the frame size",
                                                 protobuf_c_message_get_packed_size(payload));
                r = pack_payload(payload, stack, sizeof(stack), &heap, &n);
                if (r < 0)
                        return r;
        }

        h.kind = PLEXUS__KIND__KIND_REPLY;
        h.reply_serial = reply_serial;
        h.destination = to->unique_id;
        stamp(b, &h, NULL);
        h.serial = h.sequence;
        return send_one(b, to, NULL, &h, heap ?: stack, n, NULL, 0, true);
}

/**
 * router_frame_dropped() - a queued frame could not be sent: tell its sender
 * @b:          the broker
 * @to:         the receiver it was for
 * @m:          the frame
 *
 * Only fds make a queued frame undeliverable to a connected receiver (the
 * kernel's limit on fds in flight); its sender, if still connected, gets
 * plexus.Error.FdsRejected for it, and the receiver a gap in its delivery
 * counter.
 */
void router_frame_dropped(Broker *b, Peer *to, const Message *m) {
        Peer *origin = m->origin_id ? peer_find_id(b, m->origin_id) : NULL;

        b->stats.n_fds_rejected++;
        if (origin)
                router_send_error(b, origin, m->origin_serial, ERROR_FDS_REJECTED,
                                  "%s could not take %u fds (too many in flight); frame dropped",
                                  to->unique_id, m->n_fds);
}

/**
 * router_send_signal() - send a broker SIGNAL to one client
 * @b:          the broker
 * @to:         the receiver, whether or not it subscribed
 * @topic:      a reserved topic
 * @payload:    protobuf message to encode as payload
 *
 * Forced, like every frame the broker makes about a client's own state.
 *
 * Return: 0 or -ENOMEM.
 */
int router_send_signal(Broker *b, Peer *to, const char *topic, const ProtobufCMessage *payload) {
        Plexus__Header h = PLEXUS__HEADER__INIT;
        _cleanup_(freep) uint8_t *heap = NULL;
        uint8_t stack[256];
        size_t n;
        int r;

        r = pack_payload(payload, stack, sizeof(stack), &heap, &n);
        if (r < 0)
                return r;
        h.kind = PLEXUS__KIND__KIND_SIGNAL;
        h.member = (char *)topic;
        stamp(b, &h, NULL);
        h.serial = h.sequence;
        return send_one(b, to, NULL, &h, heap ?: stack, n, NULL, 0, true);
}

/**
 * router_broadcast() - send a broker SIGNAL with no payload to every client
 * @b:          the broker
 * @topic:      a reserved topic
 *
 * Delivered to every running client, subscribed or not: used for the
 * shutdown notice.
 */
void router_broadcast(Broker *b, const char *topic) {
        Plexus__Header h = PLEXUS__HEADER__INIT;
        List done = LIST_INIT(done);
        Peer *p;

        h.kind = PLEXUS__KIND__KIND_SIGNAL;
        h.member = (char *)topic;
        stamp(b, &h, NULL);
        h.serial = h.sequence;

        /*
         * A failed send hangs a peer up, moving it to the dead list: not
         * only the receiver, but also a monitor whose copy fails, which may
         * be any peer, the next one included. So no saved "next": each peer
         * moves to @done before its turn, and the walk always takes the
         * first peer still waiting.
         */
        while ((p = list_first_entry(&b->peers, Peer, link))) {
                list_unlink(&p->link);
                list_append(&done, &p->link);
                if (p->state == PEER_STATE_RUNNING)
                        send_one(b, p, NULL, &h, NULL, 0, NULL, 0, true);
        }
        list_splice(&b->peers, &done);
}

/**
 * router_peer_closing() - @p is being disconnected: let go of what others wait for
 * @b:          the broker
 * @p:          a peer that stopped serving (closing, or being freed)
 *
 * Names @p owned go to the next in their queues (last wills and change
 * signals published); every caller waiting on @p gets a Disconnected error.
 */
void router_peer_closing(Broker *b, Peer *p) {
        PendingCall *pc;

        /* Names first: last wills go out while the peer's identity is intact. */
        driver_peer_gone(b, p);

        while ((pc = list_first_entry(&p->calls_in, PendingCall, callee_link))) {
                Peer *caller = pc->caller;
                uint64_t serial = pc->serial;

                pending_call_free(b, pc);
                if (caller != p)
                        router_send_error(b, caller, serial, ERROR_DISCONNECTED,
                                          "%s disconnected before replying", p->unique_id);
        }
}

/**
 * router_peer_gone() - undo everything routing keeps for @p
 * @b:          the broker
 * @p:          a peer being freed
 *
 * Names @p owned go to the next in their queues (with last wills and change
 * signals published); every caller waiting on @p gets a Disconnected error;
 * calls @p made are forgotten (their late replies are refused to the
 * replier); subscriptions leave the trie.
 */
void router_peer_gone(Broker *b, Peer *p) {
        PendingCall *pc;
        Subscription *s;

        router_peer_closing(b, p);
        while ((pc = list_first_entry(&p->calls_out, PendingCall, caller_link)))
                pending_call_free(b, pc);
        transfer_peer_gone(b, p);

        while ((s = list_first_entry(&p->subscriptions, Subscription, owner_link))) {
                list_unlink(&s->owner_link);
                topic_trie_unsubscribe(&b->topics, s);
        }
        p->n_subscriptions = 0;
}

static uint32_t call_timeout_ms(Broker *b, uint32_t requested) {
        if (requested == 0)
                return b->config.default_timeout_ms;
        return MIN(requested, b->config.max_timeout_ms);
}

#define CALL_ALIASES_MAX 16

/*
 * The policy's "destination:member" items are matched against the
 * destination as the caller wrote it, and against each name the callee owns
 * (so calling a service by its unique id is allowed where calling it by
 * name is).
 */
static bool call_allowed(Broker *b, Peer *from, Peer *callee, const char *destination, const char *member) {
        char target[2 * FRAME_NAME_MAX + 2];
        char alias_buf[CALL_ALIASES_MAX][2 * FRAME_NAME_MAX + 2];
        const char *aliases[CALL_ALIASES_MAX + 1];
        size_t n = 0;
        NameOwner *e;

        if (access_privileged(b, from))
                return true;

        snprintf(target, sizeof(target), "%s:%s", destination, member);
        list_for_each_entry(e, &callee->names, owner_link) {
                if (n == CALL_ALIASES_MAX)
                        break;
                if (!name_owner_is_primary(e))
                        continue;
                snprintf(alias_buf[n], sizeof(alias_buf[n]), "%s:%s", name_get(e->name), member);
                aliases[n] = alias_buf[n];
                n++;
        }
        aliases[n] = NULL;
        return access_check(b, from, POLICY_CALL, target, aliases);
}

static void route_call(Broker *b, Peer *from, Plexus__Header *h, const FrameView *f,
                       const int *fds, size_t n_fds, Transfer *t) {
        PendingCall *pc = NULL;
        Peer *callee;
        int r;

        if (strcmp(h->destination, BROKER_NAME) == 0) {
                /*
                 * Before the fds: a large frame always has one by now (its
                 * memfd, or the pidfd put in front of a lent frame's).
                 */
                if (h->large_size) {
                        router_send_error(b, from, h->serial, ERROR_INVALID_ARGS,
                                          "the bus's own methods take no large payloads");
                        return;
                }
                if (n_fds) {
                        b->stats.n_fds_rejected++;
                        router_send_error(b, from, h->serial, ERROR_FDS_REJECTED,
                                          "the bus's own methods take no file descriptors");
                        return;
                }
                /* Calls to the broker take their place in the bus order too, and monitors see them. */
                stamp(b, h, from);
                monitor_copy(b, h, f->payload, f->payload_len);
                driver_call(b, from, h, f->payload, f->payload_len);
                return;
        }

        /*
         * Looked up first, checked only when not found: a peer or a name the
         * broker knows is valid by construction, and the grammar check cost
         * about 5 % of the broker's instructions per call.
         */
        if (h->destination[0] == ':') {
                callee = peer_find(b, h->destination);
        } else {
                /* Resolved now: the owner at this point in the bus order gets it. */
                Name *n = name_registry_find(&b->names, h->destination);

                callee = n ? name_primary(n)->owner : NULL;
        }
        if (!callee && !bus_name_is_unique_id(h->destination) && !bus_name_is_well_known(h->destination)) {
                router_send_error(b, from, h->serial, ERROR_INVALID_ARGS,
                                  "\"%s\" is neither a unique id nor a well-known name",
                                  h->destination);
                return;
        }
        if (!callee || callee->state != PEER_STATE_RUNNING) {
                router_send_error(b, from, h->serial, ERROR_SERVICE_UNKNOWN,
                                  "%s is not on the bus", h->destination);
                return;
        }

        if (!call_allowed(b, from, callee, h->destination, h->member)) {
                router_send_error(b, from, h->serial, ERROR_ACCESS_DENIED,
                                  "not allowed to call %s on %s", h->member, h->destination);
                return;
        }

        h->timeout_ms = call_timeout_ms(b, h->timeout_ms);
        if (!(h->flags & FRAME_FLAG_NO_REPLY)) {
                if (from->n_calls_out >= b->config.max_pending_calls) {
                        router_send_error(b, from, h->serial, ERROR_LIMITS_EXCEEDED,
                                          "%u calls already wait for a reply",
                                          b->config.max_pending_calls);
                        return;
                }
                r = pending_call_new(b, from, callee, h->serial,
                                     now_usec() + (uint64_t)h->timeout_ms * 1000u, &pc);
                if (r == PENDING_E_DUPLICATE) {
                        router_send_error(b, from, h->serial, ERROR_INVALID_ARGS,
                                          "a call with serial %" PRIu64 " is already pending",
                                          h->serial);
                        return;
                }
                if (r < 0) {
                        router_send_error(b, from, h->serial, ERROR_LIMITS_EXCEEDED,
                                          "broker out of memory");
                        return;
                }
                pc->transfer_id = t ? t->id : 0;
        }

        stamp(b, h, from);
        r = forward_one(b, callee, from, h, f, fds, n_fds, t);
        if (r == PEER_E_FDS) {
                if (pc)
                        pending_call_free(b, pc);
                b->stats.n_fds_rejected++;
                router_send_error(b, from, h->serial, ERROR_FDS_REJECTED,
                                  "%s cannot take %zu more fds now (too many in flight)",
                                  callee->unique_id, n_fds);
        } else if (r == PEER_E_QUEUE_FULL) {
                if (pc)
                        pending_call_free(b, pc);
                b->stats.n_queue_full++;
                if (log_limit_pass(&callee->log_limit, &b->log, now_usec()))
                        peer_log(callee, LOG_DEBUG, "queue full (%zu frames, %zu bytes), refusing a call from %s",
                                 callee->queue.n_entries, callee->queue.n_bytes, from->unique_id);
                router_send_error(b, from, h->serial, ERROR_QUEUE_FULL,
                                  "%s is not reading its messages", callee->unique_id);
        }
}

static void route_reply(Broker *b, Peer *from, Plexus__Header *h, const FrameView *f,
                        const int *fds, size_t n_fds, Transfer *t) {
        PendingCall *pc;
        Peer *caller;
        int r;

        caller = peer_find(b, h->destination);
        if (!caller) {
                b->stats.n_unexpected_replies++;
                router_send_error(b, from, h->serial, ERROR_SERVICE_UNKNOWN,
                                  "no client %s on the bus", h->destination);
                return;
        }

        /* Only the callee may answer, and only once: the call is consumed here. */
        pc = pending_call_find(b, caller->id, h->reply_serial);
        if (!pc || pc->callee != from) {
                b->stats.n_unexpected_replies++;
                router_send_error(b, from, h->serial, ERROR_UNEXPECTED_REPLY,
                                  "no call %" PRIu64 " from %s waits for a reply from you",
                                  h->reply_serial, caller->unique_id);
                return;
        }
        pending_call_free(b, pc);

        stamp(b, h, from);
        r = forward_one(b, caller, from, h, f, fds, n_fds, t);
        if (r == PEER_E_QUEUE_FULL || r == PEER_E_FDS) {
                /*
                 * The caller must not wait forever: it gets a small forced
                 * error in place of the reply, and the replier learns too.
                 */
                b->stats.n_queue_full++;
                router_send_error(b, caller, h->reply_serial, ERROR_QUEUE_FULL,
                                  "the reply from %s did not fit in your queue", from->unique_id);
                router_send_error(b, from, h->serial, ERROR_QUEUE_FULL,
                                  "%s's queue is full; it got an error instead", caller->unique_id);
        }
}

typedef struct SignalFanout {
        Broker *b;
        Transfer *transfer;
        OutFrame frame;
        uint64_t sequence;
        size_t n_matched;
        size_t n_full;
} SignalFanout;

static void deliver_signal(Subscription *s, void *userdata) {
        SignalFanout *fo = userdata;
        Peer *p = s->owner;

        /* One delivery per peer, however many of its patterns match. */
        if (p->last_signal_sequence == fo->sequence || p->state != PEER_STATE_RUNNING)
                return;
        p->last_signal_sequence = fo->sequence;
        fo->n_matched++;
        if (peer_send(p, &fo->frame, false) != 0)
                fo->n_full++;
        else if (fo->transfer && transfer_add_receiver(fo->transfer, p) < 0)
                peer_log(p, LOG_WARNING, "out of memory recording a transfer reader");
}

/*
 * Hand a stamped SIGNAL to every matching subscriber, once per client. A
 * client's signal (@fv given) goes out as its own header bytes plus the
 * stamp; the broker's own signals are encoded from @h.
 */
static void fan_out(Broker *b, Peer *from, const Plexus__Header *h, const FrameView *fv,
                    const void *payload, size_t size, const int *fds, size_t n_fds, Transfer *t,
                    SignalFanout *fo) {
        uint8_t header[FRAME_HEADER_MAX], stamp[FRAME_STAMP_MAX];

        *fo = (SignalFanout) {
                .b = b,
                .transfer = t,
                .sequence = h->sequence,
                .frame = {
                        .payload = payload,
                        .payload_len = size,
                        .fds = fds,
                        .n_fds = n_fds,
                        .origin_id = from ? from->id : 0,
                        .origin_serial = h->serial,
                },
        };
        if (fv) {
                fo->frame.header = fv->header;
                fo->frame.header_len = fv->header_len;
                fo->frame.stamp = stamp;
                fo->frame.stamp_len = frame_stamp_encode(h, stamp);
                fo->frame.stable = true;
        } else {
                fo->frame.header = header;
                fo->frame.header_len = frame_header_pack(h, header, sizeof(header));
                assert(fo->frame.header_len > 0);
        }

        monitor_copy(b, h, payload, size);
        topic_trie_match(&b->topics, h->member, deliver_signal, fo);
        out_frame_deinit(&fo->frame);

        b->stats.n_routed[PLEXUS__KIND__KIND_SIGNAL]++;
        b->stats.n_bytes_routed += size;
        large_routed(b, h);
        b->stats.n_queue_full += fo->n_full;
}

/**
 * router_publish() - route a SIGNAL made by the broker
 * @b:          the broker
 * @as:         the client it is published for, stamped as sender (last
 *              wills); NULL for the broker's own signals
 * @topic:      a valid topic
 * @payload:    borrowed
 * @size:       its length
 * @ret_n_matched: optional; how many clients matched
 *
 * Return: how many matching clients could not take the signal (queue full);
 * they see a gap in their delivery counter.
 */
size_t router_publish(Broker *b, Peer *as, const char *topic, const void *payload, size_t size,
                      size_t *ret_n_matched) {
        Plexus__Header h = PLEXUS__HEADER__INIT;
        SignalFanout fo;

        h.kind = PLEXUS__KIND__KIND_SIGNAL;
        h.member = (char *)topic;
        stamp(b, &h, as);
        h.serial = h.sequence;
        fan_out(b, NULL, &h, NULL, payload, size, NULL, 0, NULL, &fo);
        if (ret_n_matched)
                *ret_n_matched = fo.n_matched;
        return fo.n_full;
}

static void route_signal(Broker *b, Peer *from, Plexus__Header *h, const FrameView *f,
                         const int *fds, size_t n_fds, Transfer *t) {
        SignalFanout fo;

        if (!topic_is_valid(h->member)) {
                router_send_error(b, from, h->serial, ERROR_INVALID_ARGS,
                                  "invalid topic \"%s\"", h->member);
                return;
        }
        if (topic_is_reserved(h->member)) {
                router_send_error(b, from, h->serial, ERROR_INVALID_ARGS,
                                  "topic \"%s\" is reserved for the broker", h->member);
                return;
        }
        if (!access_check(b, from, POLICY_PUBLISH, h->member, NULL)) {
                router_send_error(b, from, h->serial, ERROR_ACCESS_DENIED,
                                  "not allowed to publish on %s", h->member);
                return;
        }

        /* The client's own header goes out (serial, unknown fields), re-stamped. */
        stamp(b, h, from);
        fan_out(b, from, h, f, f->payload, f->payload_len, fds, n_fds, t, &fo);
        if (fo.n_full)
                router_send_error(b, from, h->serial, ERROR_QUEUE_FULL,
                                  "signal on %s missed by %zu of %zu subscribers (queue full, or too many fds in flight)",
                                  h->member, fo.n_full, fo.n_matched);
}

/*
 * A TransferDone for a lent frame the broker refused before it had a
 * transfer: the sender may reuse its buffer at once.
 */
static void lend_refused(Broker *b, Peer *from, uint64_t serial) {
        Plexus__TransferDone done = PLEXUS__TRANSFER_DONE__INIT;

        done.serial = serial;
        router_send_signal(b, from, TOPIC_TRANSFER_DONE, &done.base);
}

/*
 * A process_vm frame: check it, open a transfer for it and put the sender's
 * pidfd in front of its fds (@ret_fds, FRAME_FDS_MAX entries), so that each
 * receiver can tell that the process it reads from is still the sender.
 * Returns 0, or 1 when the frame was refused (the sender has been told).
 */
static int large_lend(Broker *b, Peer *from, Plexus__Header *h, const int *fds, size_t n_fds,
                      int *ret_fds, Transfer **ret) {
        const char *name = ERROR_LIMITS_EXCEEDED;
        char why[160] = "";
        int pidfd, r;

        if (h->large_size > b->config.max_message_size) {
                snprintf(why, sizeof(why), "message of %" PRIu64 " bytes, limit %u", h->large_size,
                         b->config.max_message_size);
        } else if (n_fds >= FRAME_FDS_MAX) {
                name = ERROR_FDS_REJECTED;
                snprintf(why, sizeof(why), "a lent frame carries at most %u fds", FRAME_FDS_MAX - 1);
        } else if ((pidfd = peer_get_pidfd(from)) < 0) {
                name = ERROR_INVALID_PAYLOAD;
                snprintf(why, sizeof(why), "the broker cannot pin your process (no pidfd): "
                         "send large payloads in a memfd");
        } else {
                r = transfer_new(b, from, h->serial, h->large_size, ret);
                if (r == 0) {
                        ret_fds[0] = pidfd;
                        memcpy(ret_fds + 1, fds, n_fds * sizeof(int));
                        h->transfer_id = (*ret)->id;
                        return 0;
                }
                if (r == TRANSFER_E_LIMIT)
                        snprintf(why, sizeof(why), "%zu transfers or %" PRIu64 " bytes lent already, limits %u and %u",
                                 from->n_transfers, from->n_lent_bytes, b->config.max_transfers,
                                 b->config.max_lent_bytes);
                else
                        snprintf(why, sizeof(why), "broker out of memory");
        }
        router_send_error(b, from, h->serial, name, "%s", why);
        lend_refused(b, from, h->serial);
        return 1;
}

/*
 * A memfd frame: its first fd must be a memfd sealed against writing,
 * shrinking and growing, holding at least large_size bytes. Receivers check
 * again (they trust no fd), but a sender should hear of its mistake.
 */
static bool large_memfd_ok(Broker *b, Peer *from, const Plexus__Header *h, const int *fds, size_t n_fds) {
        const int need = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW;
        struct stat st;
        int seals;

        if (h->large_size > b->config.max_message_size) {
                router_send_error(b, from, h->serial, ERROR_LIMITS_EXCEEDED,
                                  "message of %" PRIu64 " bytes, limit %u", h->large_size,
                                  b->config.max_message_size);
                return false;
        }
        if (n_fds == 0) {
                router_send_error(b, from, h->serial, ERROR_INVALID_PAYLOAD,
                                  "a large frame without large_addr needs a memfd as its first fd");
                return false;
        }
        seals = fcntl(fds[0], F_GET_SEALS);
        if (seals < 0 || (seals & need) != need || fstat(fds[0], &st) < 0 || !S_ISREG(st.st_mode) ||
            (uint64_t)st.st_size < h->large_size) {
                router_send_error(b, from, h->serial, ERROR_INVALID_PAYLOAD,
                                  "the first fd is not a memfd sealed against write, shrink and grow "
                                  "holding %" PRIu64 " bytes", h->large_size);
                return false;
        }
        return true;
}

/**
 * router_handle_frame() - route one frame received from @from
 * @b:          the broker
 * @from:       the sender, in state HELLO or RUNNING
 * @buf:        the datagram, borrowed (the broker's receive buffer)
 * @len:        its length
 * @fds:        fds that came with it, borrowed: the caller closes them after
 *              this returns (receivers hold kernel duplicates by then, and
 *              queued messages their own)
 * @n_fds:      how many
 * @fds_truncated: the kernel dropped fds of this frame (MSG_CTRUNC)
 */
void router_handle_frame(Broker *b, Peer *from, const uint8_t *buf, size_t len,
                         const int *fds, size_t n_fds, bool fds_truncated) {
        int lent_fds[FRAME_FDS_MAX];
        Transfer *t = NULL;
        Plexus__Header *h;
        const char *why = NULL;
        FrameView f;
        int r;

        arena_reset(&b->arena);

        if (len > FRAME_SEND_MAX) {
                router_fail_peer(b, from, 0, ERROR_FRAME_TOO_LARGE,
                                 "frame of %zu bytes, limit %u", len, FRAME_SEND_MAX);
                return;
        }
        r = frame_split(buf, len, &f);
        if (r == 0 && f.header_len > FRAME_SEND_HEADER_MAX)
                r = FRAME_E_HEADER_LENGTH;
        if (r == 0)
                r = frame_header_decode(&f, &b->arena, &h);
        if (r > 0) {
                uint32_t field = 0;

                /* frame_header_decode() only says the header is bad; the wire walker says why. */
                if (r == FRAME_E_HEADER_DECODE && header_wire_validate(f.header, f.header_len, &why, &field) < 0)
                        router_fail_peer(b, from, 0, ERROR_INVALID_FRAME, "%s: field %" PRIu32 ": %s",
                                         frame_strerror(r), field, why);
                else
                        router_fail_peer(b, from, 0, ERROR_INVALID_FRAME, "%s", frame_strerror(r));
                return;
        }
        r = frame_header_check(h, &why);
        if (r > 0) {
                router_fail_peer(b, from, h->serial, ERROR_INVALID_FRAME, "%s", why);
                return;
        }

        if (from->state == PEER_STATE_HELLO) {
                if (h->kind != PLEXUS__KIND__KIND_HELLO)
                        router_fail_peer(b, from, h->serial, ERROR_PROTOCOL_VIOLATION,
                                         "the first frame must be HELLO, not %s",
                                         frame_kind_to_string(h->kind));
                else
                        driver_hello(b, from, h, &f);
                return;
        }
        if (h->kind == PLEXUS__KIND__KIND_HELLO) {
                router_fail_peer(b, from, h->serial, ERROR_PROTOCOL_VIOLATION, "HELLO sent twice");
                return;
        }

        /* Monitors only listen; the bus's own methods stay open to them. */
        if (from->monitor && !(h->kind == PLEXUS__KIND__KIND_CALL && strcmp(h->destination, BROKER_NAME) == 0)) {
                router_send_error(b, from, h->serial, ERROR_INVALID_ARGS,
                                  "a monitor only listens; it may call the bus's own methods only");
                return;
        }

        if (fds_truncated) {
                /* Never deliver a frame with fewer fds than its sender attached. */
                b->stats.n_fds_rejected++;
                router_send_error(b, from, h->serial, ERROR_FDS_REJECTED,
                                  "file descriptors were lost on the way into the broker "
                                  "(it is out of fds); frame dropped");
                return;
        }

        if (h->large_size) {
                if (f.payload_len > 0) {
                        router_fail_peer(b, from, h->serial, ERROR_INVALID_FRAME,
                                         "a large frame carries no payload in the datagram");
                        return;
                }
                if (h->large_addr) {
                        /* Lent memory: the sender's pidfd goes first, its own fds after. */
                        if (large_lend(b, from, h, fds, n_fds, lent_fds, &t) != 0)
                                return;
                        fds = lent_fds;
                        n_fds++;
                } else if (!large_memfd_ok(b, from, h, fds, n_fds)) {
                        return;
                } else {
                        /* Stamped on every large frame: a sender's value must not pass for a transfer. */
                        h->transfer_id = 0;
                }
        }
        h->n_fds = (uint32_t)n_fds;

        switch (h->kind) {
        case PLEXUS__KIND__KIND_CALL:
                route_call(b, from, h, &f, fds, n_fds, t);
                break;
        case PLEXUS__KIND__KIND_REPLY:
        case PLEXUS__KIND__KIND_ERROR:
                route_reply(b, from, h, &f, fds, n_fds, t);
                break;
        case PLEXUS__KIND__KIND_SIGNAL:
                route_signal(b, from, h, &f, fds, n_fds, t);
                break;
        default:
                /* frame_header_decode() admits no other kind. */
                assert(false);
        }

        /* Every lent frame ends in one TransferDone, whoever it reached. */
        if (t)
                transfer_start(t);
}
