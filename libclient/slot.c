/*
 * Slots: pending async calls, method handlers and subscriptions, and the
 * dispatch of received messages to them.
 *
 * Pending calls are found by serial through a hash table and kept in a list
 * sorted by deadline, earliest first; calls made with the same timeout have
 * non-decreasing deadlines, so insertion from the tail is O(1) in practice.
 */

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus-internal.h"
#include "topic.h"

/**
 * slot_new() - a new slot registered with @bus
 * @ret:        the slot, with one reference owned by whoever holds it
 * @bus:        the bus
 * @type:       what it stands for
 * @userdata:   handed to its callback
 *
 * Return: 0 or -ENOMEM.
 */
int slot_new(plx_slot **ret, plx_bus *bus, SlotType type, void *userdata) {
        plx_slot *s;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->n_refs = 1;
        s->bus = bus;
        s->type = type;
        s->userdata = userdata;
        list_init(&s->link);
        list_append(&bus->slots, &s->link);
        if (type == SLOT_CALL)
                list_init(&s->call.deadline_link);
        else if (type == SLOT_SUBSCRIPTION)
                list_init(&s->sub.link);
        else if (type == SLOT_EXPORT)
                list_init(&s->export.link);
        *ret = s;
        return 0;
}

plx_slot *slot_ref(plx_slot *s) {
        if (s)
                s->n_refs++;
        return s;
}

plx_slot *slot_unref(plx_slot *s) {
        if (!s || --s->n_refs > 0)
                return NULL;
        assert(!s->bus);
        if (s->type == SLOT_METHOD)
                free(s->method.member);
        else if (s->type == SLOT_SUBSCRIPTION)
                free(s->sub.pattern);
        if (s->destroy)
                s->destroy(s->userdata);
        free(s);
        return NULL;
}

/**
 * slot_disconnect() - take @s out of its bus; it becomes inert
 *
 * A subscription also tells the broker, without waiting for its answer.
 */
void slot_disconnect(plx_slot *s) {
        plx_bus *bus = s->bus;

        if (!bus)
                return;

        switch (s->type) {
        case SLOT_CALL:
                if (s->call.serial) {
                        htable_remove(&bus->calls, &s->call.node);
                        list_unlink(&s->call.deadline_link);
                        s->call.serial = 0;
                }
                break;
        case SLOT_METHOD:
                htable_remove(&bus->methods, &s->method.node);
                break;
        case SLOT_SUBSCRIPTION:
                /* Linked only once the broker has confirmed the subscription. */
                if (list_is_linked(&s->sub.link) && bus->connected) {
                        Plexus__SubscribeRequest req = PLEXUS__SUBSCRIBE_REQUEST__INIT;
                        Plexus__Header h = PLEXUS__HEADER__INIT;
                        uint8_t buf[FRAME_NAME_MAX + 16];

                        req.pattern = s->sub.pattern;
                        h.kind = PLEXUS__KIND__KIND_CALL;
                        h.destination = (char *)PLX_BROKER;
                        h.member = (char *)"Unsubscribe";
                        h.flags = FRAME_FLAG_NO_REPLY;
                        /* Best effort: a lost connection drops the subscription anyway. */
                        (void)bus_send_frame(bus, &h, buf, plexus__subscribe_request__pack(&req, buf), NULL, 0);
                }
                list_unlink(&s->sub.link);
                break;
        case SLOT_EXPORT:
                typed_export_disconnect(s);
                break;
        }
        list_unlink(&s->link);
        s->bus = NULL;
}

_public_ plx_slot *plx_slot_free(plx_slot *slot) {
        if (!slot)
                return NULL;
        slot_disconnect(slot);
        slot_unref(slot);
        return NULL;
}

/**
 * slot_call_register() - make @s wait for the reply to @serial
 *
 * Return: 0 or -ENOMEM.
 */
int slot_call_register(plx_slot *s, uint64_t serial, uint64_t deadline, plx_reply_fn cb) {
        plx_bus *bus = s->bus;
        List *where = &bus->deadlines;
        int r;

        r = htable_insert(&bus->calls, &s->call.node, htable_hash_u64(&bus->calls, serial));
        if (r < 0)
                return r;
        s->call.serial = serial;
        s->call.deadline = deadline;
        s->call.callback = cb;

        /* Walk back from the tail to the last call expiring no later. */
        while (where->prev != &bus->deadlines) {
                plx_slot *o = list_entry(where->prev, plx_slot, call.deadline_link);

                if (o->call.deadline <= deadline)
                        break;
                where = where->prev;
        }
        list_link_before(where, &s->call.deadline_link);
        return 0;
}

/**
 * slot_call_find() - the pending call with @serial, or NULL
 */
plx_slot *slot_call_find(plx_bus *bus, uint64_t serial) {
        htable_for_each_hash(n, &bus->calls, htable_hash_u64(&bus->calls, serial)) {
                plx_slot *s = container_of(n, plx_slot, call.node);

                if (s->call.serial == serial)
                        return s;
        }
        return NULL;
}

/**
 * slot_dispatch_reply() - hand the answer @m to the call @s and retire it
 *
 * Return: the callback's result.
 */
int slot_dispatch_reply(plx_slot *s, plx_msg *m) {
        plx_reply_fn cb = s->call.callback;
        bool floating = s->floating;
        int r;

        slot_ref(s);
        slot_disconnect(s);
        r = cb(m, s->userdata);
        if (floating)
                slot_unref(s);          /* the bus's reference */
        slot_unref(s);
        return r;
}

/**
 * slot_dispatch_call() - run the method handler for the CALL @m
 *
 * Return: 0, or a negative errno if an automatic reply could not be sent.
 */
int slot_dispatch_call(plx_bus *bus, plx_msg *m) {
        plx_slot *s = NULL;
        char text[320];
        int r;

        htable_for_each_hash(n, &bus->methods, htable_hash_string(&bus->methods, m->member, strlen(m->member))) {
                plx_slot *o = container_of(n, plx_slot, method.node);

                if (strcmp(o->method.member, m->member) == 0) {
                        s = o;
                        break;
                }
        }

        if (!s && strcmp(m->member, PLX_INTROSPECT) == 0)
                return introspect_reply(bus, m);
        if (!s) {
                snprintf(text, sizeof(text), "no method \"%s\" at %s", m->member, bus->unique_id);
                r = plx_msg_reply_error(m, PLX_ERROR_UNKNOWN_METHOD, text);
                return r == -ENOBUFS || r == -ECONNRESET ? 0 : r;
        }

        slot_ref(s);
        r = s->method.callback(m, s->userdata);
        slot_unref(s);

        if (r < 0 && !m->replied) {
                snprintf(text, sizeof(text), "%s failed: %s", m->member, strerror(-r));
                (void)plx_msg_reply_error(m, PLX_ERROR_FAILED, text);
        }
        /* Handler failures are answered, not propagated: see plx_method_fn. */
        return 0;
}

/**
 * slot_dispatch_signal() - run every subscription callback matching @m
 *
 * Return: 0, or the first negative callback result.
 */
int slot_dispatch_signal(plx_bus *bus, plx_msg *m) {
        plx_slot *stack[32], **matched = stack;
        _cleanup_(freep) plx_slot **heap = NULL;
        size_t n = 0, n_max = 0;
        plx_slot *s;
        int r = 0;

        /*
         * Collect first, holding references: a callback may free any slot
         * or subscribe anew, and neither must disturb this dispatch.
         */
        list_for_each_entry(s, &bus->subscriptions, sub.link)
                if (topic_match(s->sub.pattern, m->member))
                        n_max++;
        if (n_max > ELEMENTSOF(stack)) {
                heap = malloc(n_max * sizeof(*heap));
                if (!heap)
                        return -ENOMEM;
                matched = heap;
        }
        list_for_each_entry(s, &bus->subscriptions, sub.link)
                if (topic_match(s->sub.pattern, m->member))
                        matched[n++] = slot_ref(s);

        for (size_t i = 0; i < n; i++) {
                if (r >= 0 && matched[i]->bus)
                        r = matched[i]->sub.callback(m, matched[i]->userdata);
                slot_unref(matched[i]);
        }
        return r < 0 ? r : 0;
}

/**
 * slot_expire_calls() - fail every call whose local deadline has passed
 * @bus:        the bus
 * @now:        monotonic usec
 * @ret_progress: set to true if any call expired
 *
 * Return: 0, or the first negative callback result.
 */
int slot_expire_calls(plx_bus *bus, uint64_t now, bool *ret_progress) {
        plx_slot *s;
        int r;

        while ((s = list_first_entry(&bus->deadlines, plx_slot, call.deadline_link)) &&
               s->call.deadline <= now) {
                _cleanup_(plx_msg_unrefp_internal) plx_msg *m = NULL;

                r = msg_new_local_error(&m, bus, s->call.serial, PLX_ERROR_TIMEOUT,
                                        "no reply from the bus in time");
                if (r < 0)
                        return r;
                *ret_progress = true;
                r = slot_dispatch_reply(s, m);
                if (r < 0)
                        return r;
        }
        return 0;
}

/**
 * slot_fail_all_calls() - queue a Disconnected error for every pending call
 *
 * Called once the connection is lost; the errors are dispatched by
 * plx_bus_process() like received messages, before it reports the loss.
 */
void slot_fail_all_calls(plx_bus *bus) {
        plx_slot *s;

        list_for_each_entry(s, &bus->deadlines, call.deadline_link) {
                plx_msg *m;

                if (msg_new_local_error(&m, bus, s->call.serial, PLX_ERROR_DISCONNECTED,
                                        "the connection to the bus was lost") < 0)
                        continue;       /* Its deadline will fail it instead. */
                list_append(&bus->rqueue, &m->link);
                bus->n_rqueue++;
        }
}
