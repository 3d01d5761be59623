/*
 * Broker methods (see driver.h). Payloads are decoded into the broker's
 * payload arena, so a malformed or oversized request costs no heap memory
 * and fails with InvalidArgs.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "plexus-descriptor.h"
#include "access.h"
#include "driver.h"
#include "introspect.h"
#include "monitor.h"
#include "peer.h"
#include "router.h"
#include "topic.h"
#include "transfer.h"

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

        /* Credentials are the kernel's, from accept; HELLO is where we answer. */
        if (!access_may_connect(b, p)) {
                b->stats.n_denied++;
                router_fail_peer(b, p, h->serial, ERROR_ACCESS_DENIED,
                                 "uid %u may not use this bus", (unsigned)p->cred.uid);
                return;
        }

        /* Before the Welcome: what introspection shows is the process that said HELLO. */
        introspect_capture(b, p);
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
        w.max_message_size = b->config.max_message_size;
        w.transfer_lease_ms = b->config.transfer_lease_ms;
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
        if (!access_check(b, from, POLICY_SUBSCRIBE, req->pattern, NULL)) {
                router_send_error(b, from, h->serial, ERROR_ACCESS_DENIED,
                                  "not allowed to subscribe to \"%s\"", req->pattern);
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

static void method_get_bus_info(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len) {
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

/* --- Names ------------------------------------------------------------- */

static void publish_change(Broker *b, const NameChange *c) {
        Plexus__NameOwnerChanged ev = PLEXUS__NAME_OWNER_CHANGED__INIT;
        char topic[sizeof(TOPIC_NAMES_PREFIX) + BUS_NAME_MAX];
        uint8_t buf[3 * 256];
        Peer *old_owner = c->old_owner, *new_owner = c->new_owner;

        if (!c->changed)
                return;

        ev.name = (char *)c->name;
        ev.old_owner = old_owner ? old_owner->unique_id : (char *)"";
        ev.new_owner = new_owner ? new_owner->unique_id : (char *)"";
        ev.reason = c->reason;
        snprintf(topic, sizeof(topic), TOPIC_NAMES_PREFIX "%s", c->name);

        broker_log(b, LOG_DEBUG, "name %s: %s -> %s", c->name,
                   *ev.old_owner ? ev.old_owner : "(none)", *ev.new_owner ? ev.new_owner : "(none)");
        router_publish(b, NULL, topic, buf, plexus__name_owner_changed__pack(&ev, buf), NULL);
}

/* Free an entry the registry let go of, and refund its owner. */
static void entry_free(Broker *b, NameOwner *e) {
        Peer *p;

        if (!e)
                return;
        p = e->owner;
        timer_disarm(&b->timers, &e->lease_timer);
        p->n_names--;
        name_owner_free(e);
}

/*
 * @e leaves its name without the owner asking (disconnect, lease expiry):
 * the last will goes out first, then the change of owner.
 */
static void entry_lose(Broker *b, NameOwner *e, int reason) {
        Peer *p = e->owner;
        NameChange change;

        if (name_owner_is_primary(e) && e->will_topic)
                router_publish(b, p, e->will_topic, e->will_payload, e->will_size, NULL);
        name_owner_drop(&b->names, e, reason, &change);
        entry_free(b, e);
        publish_change(b, &change);
}

static void lease_expired(Timer *t, uint64_t now) {
        NameOwner *e = container_of(t, NameOwner, lease_timer);
        Peer *p = e->owner;
        Broker *b = p->broker;

        b->stats.n_leases_expired++;
        /* A client holding many leases may lose them all at once: one line each, rate-limited. */
        if (log_limit_pass(&p->log_limit, &b->log, now))
                peer_log(p, LOG_INFO, "lease on %s not renewed within %" PRIu64 " ms, releasing it",
                         name_get(e->name), e->lease_usec / 1000);
        entry_lose(b, e, PLEXUS__NAME_CHANGE_REASON__NAME_CHANGE_LEASE_EXPIRED);
}

/**
 * driver_peer_gone() - release every name @p owns or waits for
 */
void driver_peer_gone(Broker *b, Peer *p) {
        NameOwner *e;

        while ((e = list_first_entry(&p->names, NameOwner, owner_link)))
                entry_lose(b, e, PLEXUS__NAME_CHANGE_REASON__NAME_CHANGE_DISCONNECTED);
}

static int entry_set_terms(Broker *b, NameOwner *e, const Plexus__RequestNameRequest *req) {
        char *topic = NULL;
        void *payload = NULL;

        if (*req->will_topic) {
                topic = strdup(req->will_topic);
                payload = req->will_payload.len ? malloc(req->will_payload.len) : NULL;
                if (!topic || (req->will_payload.len && !payload)) {
                        free(topic);
                        free(payload);
                        return -ENOMEM;
                }
                if (req->will_payload.len)
                        memcpy(payload, req->will_payload.data, req->will_payload.len);
        }
        free(e->will_topic);
        free(e->will_payload);
        e->will_topic = topic;
        e->will_payload = payload;
        e->will_size = req->will_payload.len;

        /* The latest request sets the lease; 0 removes it. */
        e->lease_usec = (uint64_t)req->lease_ms * 1000u;
        e->lease_timer.fn = lease_expired;
        if (!e->lease_usec) {
                timer_disarm(&b->timers, &e->lease_timer);
                return 0;
        }
        return timer_arm(&b->timers, &e->lease_timer, now_usec() + e->lease_usec);
}

static const char *check_request(Broker *b, const Plexus__RequestNameRequest *req) {
        if (!bus_name_is_well_known(req->name))
                return "invalid well-known name";
        if (req->flags & ~NAME_FLAGS_KNOWN)
                return "unknown flags";
        if (req->lease_ms && (req->lease_ms < NAME_LEASE_MIN_MS || req->lease_ms > NAME_LEASE_MAX_MS))
                return "lease outside 10 ms .. 1 h";
        if (*req->will_topic && (!topic_is_valid(req->will_topic) || topic_is_reserved(req->will_topic)))
                return "invalid last-will topic";
        if (!*req->will_topic && req->will_payload.len)
                return "last-will payload without a topic";
        if (req->will_payload.len > NAME_WILL_MAX)
                return "last-will payload above 4096 bytes";
        return NULL;
}

static void method_request_name(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len) {
        Plexus__RequestNameReply reply = PLEXUS__REQUEST_NAME_REPLY__INIT;
        Plexus__RequestNameRequest *req;
        NameChange change;
        NameOwner *e;
        const char *why;
        int r;

        req = plexus__request_name_request__unpack(&b->payload_arena.allocator, len, payload);
        why = req ? check_request(b, req) : "payload is not a plexus.RequestNameRequest";
        if (why) {
                router_send_error(b, from, h->serial, ERROR_INVALID_ARGS, "RequestName: %s", why);
                return;
        }
        if (!access_check(b, from, POLICY_OWN, req->name, NULL)) {
                router_send_error(b, from, h->serial, ERROR_ACCESS_DENIED, "not allowed to own %s", req->name);
                return;
        }
        if (*req->will_topic && !access_check(b, from, POLICY_PUBLISH, req->will_topic, NULL)) {
                router_send_error(b, from, h->serial, ERROR_ACCESS_DENIED,
                                  "not allowed to publish the last will on %s", req->will_topic);
                return;
        }
        if (from->n_names >= b->config.max_names &&
            !name_registry_find_entry(&b->names, req->name, from)) {
                router_send_error(b, from, h->serial, ERROR_LIMITS_EXCEEDED,
                                  "limit of %u names reached", b->config.max_names);
                return;
        }

        r = name_registry_request(&b->names, req->name, from, req->flags, &e, &change);
        if (r < 0) {
                router_send_error(b, from, h->serial, ERROR_LIMITS_EXCEEDED, "broker out of memory");
                return;
        }
        if (e) {
                if (!list_is_linked(&e->owner_link)) {
                        list_append(&from->names, &e->owner_link);
                        from->n_names++;
                }
                if (entry_set_terms(b, e, req) < 0) {
                        /* Without its lease the entry would outlive a hang: take it back. */
                        NameChange undo;

                        name_owner_drop(&b->names, e, PLEXUS__NAME_CHANGE_REASON__NAME_CHANGE_RELEASED, &undo);
                        entry_free(b, e);
                        entry_free(b, change.dropped);
                        publish_change(b, &change);
                        publish_change(b, &undo);
                        router_send_error(b, from, h->serial, ERROR_LIMITS_EXCEEDED, "broker out of memory");
                        return;
                }
        }
        entry_free(b, change.dropped);

        /* Watchers learn of the change before the requester learns of its success. */
        publish_change(b, &change);
        if (!(h->flags & FRAME_FLAG_NO_REPLY)) {
                reply.result = (uint32_t)r;
                router_send_reply(b, from, h->serial, &reply.base);
        }
}

static Plexus__NameRequest *name_request(Broker *b, Peer *from, Plexus__Header *h,
                                         const uint8_t *payload, size_t len) {
        Plexus__NameRequest *req;

        req = plexus__name_request__unpack(&b->payload_arena.allocator, len, payload);
        if (!req || !bus_name_is_well_known(req->name)) {
                router_send_error(b, from, h->serial, ERROR_INVALID_ARGS,
                                  "%s needs a plexus.NameRequest with a valid well-known name", h->member);
                return NULL;
        }
        return req;
}

static void method_release_name(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len) {
        Plexus__ReleaseNameReply reply = PLEXUS__RELEASE_NAME_REPLY__INIT;
        Plexus__NameRequest *req;
        NameChange change;

        req = name_request(b, from, h, payload, len);
        if (!req)
                return;

        reply.result = (uint32_t)name_registry_release(&b->names, req->name, from, &change);
        entry_free(b, change.dropped);
        publish_change(b, &change);
        if (!(h->flags & FRAME_FLAG_NO_REPLY))
                router_send_reply(b, from, h->serial, &reply.base);
}

static void method_renew_name(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len) {
        Plexus__NameRequest *req;
        NameOwner *e;

        req = name_request(b, from, h, payload, len);
        if (!req)
                return;

        e = name_registry_find_entry(&b->names, req->name, from);
        if (!e) {
                router_send_error(b, from, h->serial, ERROR_NAME_NOT_OWNED,
                                  "%s does not own or wait for %s", from->unique_id, req->name);
                return;
        }
        if (e->lease_usec && timer_arm(&b->timers, &e->lease_timer, now_usec() + e->lease_usec) < 0) {
                router_send_error(b, from, h->serial, ERROR_LIMITS_EXCEEDED, "broker out of memory");
                return;
        }
        if (!(h->flags & FRAME_FLAG_NO_REPLY))
                router_send_reply(b, from, h->serial, NULL);
}

static void method_get_name_owner(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len) {
        Plexus__NameOwnerReply reply = PLEXUS__NAME_OWNER_REPLY__INIT;
        Plexus__NameRequest *req;
        Peer *owner = NULL;

        req = plexus__name_request__unpack(&b->payload_arena.allocator, len, payload);
        if (req && bus_name_is_unique_id(req->name)) {
                owner = peer_find(b, req->name);
        } else if (req && bus_name_is_well_known(req->name)) {
                Name *n = name_registry_find(&b->names, req->name);

                owner = n ? name_primary(n)->owner : NULL;
        } else {
                router_send_error(b, from, h->serial, ERROR_INVALID_ARGS,
                                  "GetNameOwner needs a plexus.NameRequest with a valid name");
                return;
        }

        if (!owner) {
                router_send_error(b, from, h->serial, ERROR_NAME_HAS_NO_OWNER,
                                  "%s has no owner", req->name);
                return;
        }
        reply.owner = owner->unique_id;
        if (!(h->flags & FRAME_FLAG_NO_REPLY))
                router_send_reply(b, from, h->serial, &reply.base);
}

static void method_list_queued_owners(Broker *b, Peer *from, Plexus__Header *h,
                                      const uint8_t *payload, size_t len) {
        Plexus__NameOwners reply = PLEXUS__NAME_OWNERS__INIT;
        _cleanup_(freep) char **ids = NULL;
        Plexus__NameRequest *req;
        NameOwner *e;
        size_t n = 0;
        Name *name;

        req = name_request(b, from, h, payload, len);
        if (!req)
                return;
        name = name_registry_find(&b->names, req->name);
        if (!name) {
                router_send_error(b, from, h->serial, ERROR_NAME_HAS_NO_OWNER, "%s has no owner", req->name);
                return;
        }

        list_for_each_entry(e, name_owners(name), name_link)
                n++;
        ids = calloc(n, sizeof(*ids));
        if (!ids) {
                router_send_error(b, from, h->serial, ERROR_LIMITS_EXCEEDED, "broker out of memory");
                return;
        }
        n = 0;
        list_for_each_entry(e, name_owners(name), name_link)
                ids[n++] = ((Peer *)e->owner)->unique_id;

        reply.n_owners = n;
        reply.owners = ids;
        if (!(h->flags & FRAME_FLAG_NO_REPLY))
                router_send_reply(b, from, h->serial, &reply.base);
}

/*
 * Bytes of NameEntry elements in one ListNames reply: a frame less room for
 * next_after (a tag, a 2-byte length and a name of at most 255 bytes).
 */
#define LIST_NAMES_PAGE_MAX (FRAME_SEND_MAX - 260u)

static int compare_names(const void *a, const void *b) {
        Name *const *x = a, *const *y = b;

        return strcmp(name_get(*x), name_get(*y));
}

/*
 * ListNames is paged like ListClients (see introspect.c), with the name as
 * the cursor: names live in a hash table, which has no order of its own to
 * resume from, so each page sorts the names past the cursor. Byte order
 * does not depend on who came and went between pages: a name added meanwhile
 * shows up if it sorts after the cursor, none is listed twice.
 */
static void method_list_names(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len) {
        Plexus__NameList reply = PLEXUS__NAME_LIST__INIT;
        _cleanup_(freep) Name **sorted = NULL;
        _cleanup_(freep) Plexus__NameEntry *entries = NULL;
        _cleanup_(freep) Plexus__NameEntry **ptrs = NULL;
        _cleanup_(freep) char **queued = NULL;
        size_t n_sorted = 0, n_owners = 0, used = 0, i = 0, q = 0;
        Plexus__ListNamesRequest *req;
        bool more = false;
        Name *name;

        req = plexus__list_names_request__unpack(&b->payload_arena.allocator, len, payload);
        if (!req) {
                router_send_error(b, from, h->serial, ERROR_INVALID_ARGS,
                                  "ListNames needs a plexus.ListNamesRequest");
                return;
        }

        sorted = calloc(b->names.n_names ?: 1, sizeof(*sorted));
        if (!sorted) {
                router_send_error(b, from, h->serial, ERROR_LIMITS_EXCEEDED, "broker out of memory");
                return;
        }
        name_registry_for_each(name, &b->names) {
                NameOwner *e;

                if (strcmp(name_get(name), req->after) <= 0)
                        continue;
                sorted[n_sorted++] = name;
                list_for_each_entry(e, name_owners(name), name_link)
                        n_owners++;
        }
        if (n_sorted > 0)
                qsort(sorted, n_sorted, sizeof(*sorted), compare_names);

        entries = calloc(n_sorted ?: 1, sizeof(*entries));
        ptrs = calloc(n_sorted ?: 1, sizeof(*ptrs));
        queued = calloc(n_owners ?: 1, sizeof(*queued));
        if (!entries || !ptrs || !queued) {
                router_send_error(b, from, h->serial, ERROR_LIMITS_EXCEEDED, "broker out of memory");
                return;
        }

        for (i = 0; i < n_sorted; i++) {
                Plexus__NameEntry *entry = &entries[i];
                size_t size, cost;
                NameOwner *e;

                if (req->limit && i >= req->limit) {
                        more = true;
                        break;
                }
                name = sorted[i];
                *entry = (Plexus__NameEntry) PLEXUS__NAME_ENTRY__INIT;
                entry->name = (char *)name_get(name);
                entry->owner = ((Peer *)name_primary(name)->owner)->unique_id;
                entry->queued = queued + q;
                list_for_each_entry(e, name_owners(name), name_link)
                        if (e != name_primary(name))
                                queued[q + entry->n_queued++] = ((Peer *)e->owner)->unique_id;

                size = protobuf_c_message_get_packed_size(&entry->base);
                cost = 1 + frame_varint_size(size) + size;
                if (i == 0 && cost > LIST_NAMES_PAGE_MAX) {
                        /* A queue too long for a frame (thousands of waiting clients): cut it, say so. */
                        entry->truncated = true;
                        size = protobuf_c_message_get_packed_size(&entry->base);
                        while (entry->n_queued > 0 && 1 + frame_varint_size(size) + size > LIST_NAMES_PAGE_MAX) {
                                entry->n_queued--;
                                size -= 1 + frame_varint_size(strlen(entry->queued[entry->n_queued])) +
                                        strlen(entry->queued[entry->n_queued]);
                        }
                        cost = 1 + frame_varint_size(size) + size;
                }
                if (used + cost > LIST_NAMES_PAGE_MAX) {
                        more = true;
                        break;
                }
                used += cost;
                q += entry->n_queued;
                ptrs[i] = entry;
        }

        reply.n_names = i;
        reply.names = ptrs;
        reply.next_after = more && i > 0 ? entries[i - 1].name : (char *)"";
        if (!(h->flags & FRAME_FLAG_NO_REPLY))
                router_send_reply(b, from, h->serial, &reply.base);
}

static void method_ping(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len) {
        if (!(h->flags & FRAME_FLAG_NO_REPLY))
                router_send_reply(b, from, h->serial, NULL);
}

static void method_become_monitor(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len) {
        Plexus__MonitorRequest *req;
        int r;

        req = plexus__monitor_request__unpack(&b->payload_arena.allocator, len, payload);
        if (!req) {
                router_send_error(b, from, h->serial, ERROR_INVALID_ARGS,
                                  "BecomeMonitor needs a plexus.MonitorRequest");
                return;
        }
        if (!access_check(b, from, POLICY_MONITOR, NULL, NULL)) {
                router_send_error(b, from, h->serial, ERROR_ACCESS_DENIED, "not allowed to monitor the bus");
                return;
        }
        r = monitor_new(b, from, req);
        if (r < 0) {
                router_send_error(b, from, h->serial, r == -ENOMEM ? ERROR_LIMITS_EXCEEDED : ERROR_INVALID_ARGS,
                                  r == -EALREADY ? "already a monitor" :
                                  r == -ENOMEM ? "broker out of memory" :
                                  "invalid filters (at most 64, topics must be valid patterns)");
                return;
        }
        peer_log(from, LOG_INFO, "became a monitor (%zu topic, %zu name, %zu member filters)",
                 req->n_topics, req->n_names, req->n_members);
        if (!(h->flags & FRAME_FLAG_NO_REPLY))
                router_send_reply(b, from, h->serial, NULL);
}

/*
 * A receiver of a lent frame reports its copy. The answer is the only thing
 * that lets it keep the bytes: a REPLY while the transfer is live, else
 * TransferExpired (too late, or never one of its receivers).
 */
static void method_ack_transfer(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len) {
        Plexus__TransferAck *req;

        req = plexus__transfer_ack__unpack(&b->payload_arena.allocator, len, payload);
        if (!req) {
                router_send_error(b, from, h->serial, ERROR_INVALID_ARGS,
                                  "AckTransfer needs a plexus.TransferAck");
                return;
        }
        if (transfer_ack(b, from, req->transfer_id, req->status) != 0) {
                router_send_error(b, from, h->serial, ERROR_TRANSFER_EXPIRED,
                                  "transfer %" PRIu64 " is over (lease ended, sender gone, "
                                  "call finished) or was not lent to you", req->transfer_id);
                return;
        }
        /* NO_REPLY would make the answer meaningless; it is sent regardless. */
        router_send_reply(b, from, h->serial, NULL);
}

static void method_introspect(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len);

typedef void (*MethodFn)(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len);

/* .limited: costs the broker work in proportion to the bus, so it is rate-limited per client. */
static const struct {
        const char *member;
        MethodFn fn;
        bool limited;
} methods[] = {
        { "Subscribe", method_subscribe },
        { "Unsubscribe", method_unsubscribe },
        { "Ping", method_ping },
        { "GetBusInfo", method_get_bus_info },
        { "RequestName", method_request_name },
        { "ReleaseName", method_release_name },
        { "RenewName", method_renew_name },
        { "GetNameOwner", method_get_name_owner },
        { "ListQueuedOwners", method_list_queued_owners },
        { "ListNames", method_list_names, true },
        { "BecomeMonitor", method_become_monitor },
        { "ListClients", introspect_list_clients, true },
        { "GetClient", introspect_get_client, true },
        { "GetStats", introspect_get_stats, true },
        { "AckTransfer", method_ack_transfer },
        { "Introspect", method_introspect },
};

/* The broker's signals, as Introspect lists them (docs/protocol.md §8.4, §15.5, §16). */
static const struct {
        const char *pattern;
        const ProtobufCMessageDescriptor *type;
} signals[] = {
        { "plexus/names/#", &plexus__name_owner_changed__descriptor },
        { "plexus/broker/shutdown", &plexus__empty__descriptor },
        { "plexus/transfer/done", &plexus__transfer_done__descriptor },
        { "plexus/monitor/missed", &plexus__monitor_missed__descriptor },
};

/*
 * Introspect: the broker describes itself as a service, plexus.Broker of
 * proto/plexus.proto, whose FileDescriptorSet protoc-c wrote at build time.
 * Its method list is the table above, typed from the service descriptor;
 * tests/daemon checks that the two agree.
 */
static void method_introspect(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len) {
        Plexus__MethodInfo method_infos[ELEMENTSOF(methods)], *method_ptrs[ELEMENTSOF(methods)];
        Plexus__TopicInfo topic_infos[ELEMENTSOF(signals)], *topic_ptrs[ELEMENTSOF(signals)];
        Plexus__Introspection reply = PLEXUS__INTROSPECTION__INIT;
        const ProtobufCServiceDescriptor *service = &plexus__broker__descriptor;

        if (h->flags & FRAME_FLAG_NO_REPLY)
                return;

        for (size_t i = 0; i < ELEMENTSOF(methods); i++) {
                const ProtobufCMethodDescriptor *m = protobuf_c_service_descriptor_get_method_by_name(service,
                                                                                                    methods[i].member);

                plexus__method_info__init(&method_infos[i]);
                method_infos[i].name = (char *)methods[i].member;
                if (m) {
                        method_infos[i].service = (char *)service->name;
                        method_infos[i].request_type = (char *)m->input->name;
                        method_infos[i].reply_type = (char *)m->output->name;
                }
                method_ptrs[i] = &method_infos[i];
        }
        for (size_t i = 0; i < ELEMENTSOF(signals); i++) {
                plexus__topic_info__init(&topic_infos[i]);
                topic_infos[i].pattern = (char *)signals[i].pattern;
                topic_infos[i].message_type = (char *)signals[i].type->name;
                topic_ptrs[i] = &topic_infos[i];
        }

        reply.library = (char *)"plexusd " PLEXUS_VERSION;
        reply.n_methods = ELEMENTSOF(methods);
        reply.methods = method_ptrs;
        reply.n_topics = ELEMENTSOF(signals);
        reply.topics = topic_ptrs;
        reply.descriptor_set.data = (uint8_t *)plexus_descriptor_set;
        reply.descriptor_set.len = plexus_descriptor_set_size;
        router_send_reply(b, from, h->serial, &reply.base);
}

/**
 * driver_has_method() - whether the broker answers @member itself
 */
bool driver_has_method(const char *member) {
        for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                if (strcmp(member, methods[i].member) == 0)
                        return true;
        return false;
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

        for (size_t i = 0; i < ELEMENTSOF(methods); i++) {
                if (strcmp(h->member, methods[i].member) == 0) {
                        if (methods[i].limited && !introspect_admit(b, from, h))
                                return;
                        methods[i].fn(b, from, h, payload, len);
                        return;
                }
        }
        router_send_error(b, from, h->serial, ERROR_UNKNOWN_METHOD,
                          "the bus has no method \"%s\"", h->member);
}
