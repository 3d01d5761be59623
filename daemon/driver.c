/*
 * Broker methods (see driver.h). Payloads are decoded into the broker's
 * payload arena, so a malformed or oversized request costs no heap memory
 * and fails with InvalidArgs.
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "driver.h"
#include "peer.h"
#include "router.h"
#include "topic.h"

/**
 * driver_hello() - complete the handshake of @p
 * @b:          the broker
 * @p:          a peer in state HELLO
 * @h:          the HELLO header
 * @f:          the frame, for its payload
 */
void driver_hello(Broker *b, Peer *p, Plexus__Header *h, const FrameView *f) {
        Plexus__Welcome w = PLEXUS__WELCOME__INIT;
        Plexus__Hello *hello;
        size_t i = 0;

        arena_reset(&b->payload_arena);
        hello = plexus__hello__unpack(&b->payload_arena.allocator, f->payload_len, f->payload);
        if (!hello) {
                router_fail_peer(b, p, h->serial, ERROR_INVALID_FRAME,
                                 "HELLO payload is not a plexus.Hello");
                return;
        }
        if (hello->protocol_version != PLX_PROTOCOL_VERSION) {
                router_fail_peer(b, p, h->serial, ERROR_VERSION_MISMATCH,
                                 "broker speaks protocol version %u, client %u",
                                 PLX_PROTOCOL_VERSION, hello->protocol_version);
                return;
        }

        /* Shown in logs and by inspection tools: keep it printable. */
        for (const char *s = hello->description; *s && i < sizeof(p->description) - 1; s++)
                p->description[i++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
        p->description[i] = 0;
        if (i == 0)
                snprintf(p->description, sizeof(p->description), "-");

        peer_set_running(p);
        peer_log(p, LOG_DEBUG, "connected (uid %u)", (unsigned)p->cred.uid);

        w.protocol_version = PLX_PROTOCOL_VERSION;
        w.unique_id = p->unique_id;
        w.max_frame_size = FRAME_SEND_MAX;
        w.max_header_size = FRAME_SEND_HEADER_MAX;
        w.max_pending_calls = b->config.max_pending_calls;
        w.max_subscriptions = b->config.max_subscriptions;
        w.default_timeout_ms = b->config.default_timeout_ms;
        w.max_timeout_ms = b->config.max_timeout_ms;
        router_send_reply(b, p, h->serial, &w.base);
}

static void method_subscribe(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len) {
        Plexus__SubscribeReply reply = PLEXUS__SUBSCRIBE_REPLY__INIT;
        Plexus__SubscribeRequest *req;
        Subscription *s;
        int r;

        req = plexus__subscribe_request__unpack(&b->payload_arena.allocator, len, payload);
        if (!req || !topic_pattern_is_valid(req->pattern)) {
                router_send_error(b, from, h->serial, ERROR_INVALID_ARGS,
                                  "Subscribe needs a plexus.SubscribeRequest with a valid pattern");
                return;
        }
        if (from->n_subscriptions >= b->config.max_subscriptions) {
                router_send_error(b, from, h->serial, ERROR_LIMITS_EXCEEDED,
                                  "limit of %u subscriptions reached", b->config.max_subscriptions);
                return;
        }

        r = topic_trie_subscribe(&b->topics, req->pattern, from, &s);
        if (r < 0) {
                router_send_error(b, from, h->serial, ERROR_LIMITS_EXCEEDED, "broker out of memory");
                return;
        }
        list_append(&from->subscriptions, &s->owner_link);
        from->n_subscriptions++;

        if (!(h->flags & FRAME_FLAG_NO_REPLY)) {
                reply.n_subscriptions = (uint32_t)from->n_subscriptions;
                router_send_reply(b, from, h->serial, &reply.base);
        }
}

static void method_unsubscribe(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len) {
        Plexus__SubscribeReply reply = PLEXUS__SUBSCRIBE_REPLY__INIT;
        Plexus__SubscribeRequest *req;
        Subscription *s, *found = NULL;

        req = plexus__subscribe_request__unpack(&b->payload_arena.allocator, len, payload);
        if (!req) {
                router_send_error(b, from, h->serial, ERROR_INVALID_ARGS,
                                  "Unsubscribe needs a plexus.SubscribeRequest");
                return;
        }

        list_for_each_entry(s, &from->subscriptions, owner_link) {
                if (strcmp(s->pattern, req->pattern) == 0) {
                        found = s;
                        break;
                }
        }
        if (!found) {
                router_send_error(b, from, h->serial, ERROR_INVALID_ARGS,
                                  "not subscribed to \"%s\"", req->pattern);
                return;
        }

        list_unlink(&found->owner_link);
        topic_trie_unsubscribe(&b->topics, found);
        from->n_subscriptions--;

        if (!(h->flags & FRAME_FLAG_NO_REPLY)) {
                reply.n_subscriptions = (uint32_t)from->n_subscriptions;
                router_send_reply(b, from, h->serial, &reply.base);
        }
}

static void method_get_bus_info(Broker *b, Peer *from, Plexus__Header *h) {
        Plexus__BusInfo info = PLEXUS__BUS_INFO__INIT;
        uint64_t routed = 0;

        for (size_t i = 0; i < ELEMENTSOF(b->stats.n_routed); i++)
                routed += b->stats.n_routed[i];

        info.version = (char *)PLEXUS_VERSION;
        info.protocol_version = PLX_PROTOCOL_VERSION;
        info.n_clients = b->n_peers;
        info.n_frames_routed = routed;
        info.uptime_usec = now_usec() - b->start_usec;
        if (!(h->flags & FRAME_FLAG_NO_REPLY))
                router_send_reply(b, from, h->serial, &info.base);
}

/**
 * driver_call() - handle a CALL addressed to the broker
 * @b:          the broker
 * @from:       the caller
 * @h:          the CALL's header
 * @payload:    the request, borrowed
 * @len:        its length
 */
void driver_call(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len) {
        arena_reset(&b->payload_arena);
        b->stats.n_routed[PLEXUS__KIND__KIND_CALL]++;

        if (strcmp(h->member, "Subscribe") == 0)
                method_subscribe(b, from, h, payload, len);
        else if (strcmp(h->member, "Unsubscribe") == 0)
                method_unsubscribe(b, from, h, payload, len);
        else if (strcmp(h->member, "Ping") == 0) {
                if (!(h->flags & FRAME_FLAG_NO_REPLY))
                        router_send_reply(b, from, h->serial, NULL);
        } else if (strcmp(h->member, "GetBusInfo") == 0)
                method_get_bus_info(b, from, h);
        else
                router_send_error(b, from, h->serial, ERROR_UNKNOWN_METHOD,
                                  "the bus has no method \"%s\"", h->member);
}
