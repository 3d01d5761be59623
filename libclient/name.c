/*
 * Well-known names from the client side: requesting, releasing, renewing
 * leases (by hand, or automatically from plx_bus_process()), looking up and
 * waiting for owners.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus-internal.h"
#include "bus-name.h"
#include "topic.h"

/**
 * bus_call_broker() - call a broker method synchronously
 * @bus:        the bus
 * @member:     the method
 * @request:    the request message, or NULL for an empty payload
 * @ret_reply:  the REPLY or ERROR, as plx_bus_call() hands it out
 *
 * Return: as plx_bus_call().
 */
int bus_call_broker(plx_bus *bus, const char *member, const ProtobufCMessage *request,
                    plx_msg **ret_reply) {
        uint8_t stack[512];
        _cleanup_(freep) uint8_t *heap = NULL;
        uint8_t *buf = stack;
        size_t n = 0;

        if (request) {
                n = protobuf_c_message_get_packed_size(request);
                if (n > sizeof(stack)) {
                        heap = malloc(n);
                        if (!heap)
                                return -ENOMEM;
                        buf = heap;
                }
                protobuf_c_message_pack(request, buf);
        }
        return plx_bus_call(bus, PLX_BROKER, member, buf, n, PLX_TIMEOUT_DEFAULT, ret_reply);
}

static bool error_is(plx_msg *m, const char *name) {
        return m && m->kind == PLX_MSG_ERROR && strcmp(m->error_name, name) == 0;
}

/* --- leases ------------------------------------------------------------ */

static NameLease *lease_find(plx_bus *bus, const char *name) {
        NameLease *l;

        list_for_each_entry(l, &bus->leases, link)
                if (strcmp(l->name, name) == 0)
                        return l;
        return NULL;
}

/**
 * lease_add() - renew @name's lease automatically from now on
 *
 * Best effort: without memory the lease is not renewed and expires, which
 * the owner then learns from the change signal, like any other loss.
 */
void lease_add(plx_bus *bus, const char *name, uint64_t lease_usec) {
        NameLease *l = lease_find(bus, name);

        if (!l) {
                size_t len = strlen(name);

                l = calloc(1, sizeof(*l) + len + 1);
                if (!l)
                        return;
                memcpy(l->name, name, len + 1);
                list_append(&bus->leases, &l->link);
        }
        l->lease_usec = lease_usec;
        l->next_usec = now_usec() + lease_usec / 3;
}

/**
 * lease_remove() - stop renewing @name
 */
void lease_remove(plx_bus *bus, const char *name) {
        NameLease *l = lease_find(bus, name);

        if (!l)
                return;
        list_unlink(&l->link);
        free(l);
}

/**
 * lease_next_deadline() - when the next renewal is due, UINT64_MAX if never
 */
uint64_t lease_next_deadline(plx_bus *bus) {
        uint64_t when = UINT64_MAX;
        NameLease *l;

        list_for_each_entry(l, &bus->leases, link)
                when = MIN(when, l->next_usec);
        return when;
}

/**
 * lease_clear() - stop renewing anything (the bus goes away)
 */
void lease_clear(plx_bus *bus) {
        NameLease *l;

        while ((l = list_first_entry(&bus->leases, NameLease, link))) {
                list_unlink(&l->link);
                free(l);
        }
}

static int renewed(plx_msg *m, void *userdata) {
        plx_bus *bus = userdata;
        NameLease *l;

        /*
         * Found by serial, not by pointer: the lease may have been released
         * while its renewal was in flight.
         */
        list_for_each_entry(l, &bus->leases, link) {
                if (l->renew_serial != m->reply_serial)
                        continue;
                l->renew_serial = 0;
                /* Lost meanwhile: stop renewing; the change signal told the owner. */
                if (error_is(m, PLX_ERROR_NAME_NOT_OWNED)) {
                        list_unlink(&l->link);
                        free(l);
                }
                break;
        }
        return 0;
}

/**
 * lease_renew_due() - send RenewName for every lease due now
 * @bus:        the bus
 * @now:        monotonic usec
 * @ret_progress: set when something was sent
 *
 * Renewals are asynchronous; their answers come back through the usual
 * dispatch.
 *
 * Return: 0 or negative errno from sending.
 */
int lease_renew_due(plx_bus *bus, uint64_t now, bool *ret_progress) {
        NameLease *l;
        int r;

        list_for_each_entry(l, &bus->leases, link) {
                Plexus__NameRequest req = PLEXUS__NAME_REQUEST__INIT;
                uint8_t buf[BUS_NAME_MAX + 8];

                if (l->next_usec > now)
                        continue;

                req.name = l->name;
                r = plx_bus_call_async(bus, NULL, PLX_BROKER, "RenewName", buf,
                                       plexus__name_request__pack(&req, buf),
                                       l->lease_usec, renewed, bus);
                if (r < 0)
                        return r;
                /* The call just sent took the last serial. */
                l->renew_serial = bus->next_serial - 1;
                l->next_usec = now + l->lease_usec / 3;
                *ret_progress = true;
        }
        return 0;
}

/* --- requests ---------------------------------------------------------- */

_public_ int plx_bus_request_name_lease(plx_bus *bus, const char *name, uint32_t flags, uint64_t lease_usec,
                                        const char *will_topic, const void *will_payload, size_t will_size) {
        Plexus__RequestNameRequest req = PLEXUS__REQUEST_NAME_REQUEST__INIT;
        _cleanup_(plx_msg_unrefp_internal) plx_msg *reply = NULL;
        Plexus__RequestNameReply *rep;
        int r, result;

        assert_return(bus, -EINVAL);
        assert_return(bus_name_is_well_known(name), -EINVAL);
        assert_return(!(flags & ~(PLX_NAME_ALLOW_REPLACEMENT | PLX_NAME_REPLACE_EXISTING |
                                  PLX_NAME_DO_NOT_QUEUE | PLX_NAME_NO_AUTO_RENEW)), -EINVAL);
        assert_return(lease_usec == 0 || (lease_usec >= 10000 && lease_usec <= 3600ull * 1000000u), -EINVAL);
        assert_return(!will_topic || (topic_is_valid(will_topic) && !topic_is_reserved(will_topic)), -EINVAL);
        assert_return(will_topic || will_size == 0, -EINVAL);
        assert_return(will_size <= 4096 && (will_payload || will_size == 0), -EINVAL);

        req.name = (char *)name;
        req.flags = flags & ~PLX_NAME_NO_AUTO_RENEW;
        req.lease_ms = (uint32_t)(lease_usec / 1000);
        req.will_topic = (char *)(will_topic ?: "");
        req.will_payload.data = (uint8_t *)will_payload;
        req.will_payload.len = will_size;

        r = bus_call_broker(bus, "RequestName", &req.base, &reply);
        if (r == -EREMOTEIO && error_is(reply, PLX_ERROR_LIMITS_EXCEEDED))
                return -EDQUOT;
        if (r < 0)
                return r;

        rep = plexus__request_name_reply__unpack(NULL, reply->payload_len, reply->payload);
        if (!rep)
                return -EBADMSG;
        result = (int)rep->result;
        plexus__request_name_reply__free_unpacked(rep, NULL);

        if (result == PLX_NAME_EXISTS || !lease_usec || (flags & PLX_NAME_NO_AUTO_RENEW))
                lease_remove(bus, name);
        else
                lease_add(bus, name, lease_usec);
        /* Asked for again, as it is now, should the broker restart. */
        reconnect_name_update(bus, name, flags, lease_usec, will_topic, will_payload, will_size, result);
        return result;
}

_public_ int plx_bus_request_name(plx_bus *bus, const char *name, uint32_t flags) {
        assert_return(!(flags & PLX_NAME_NO_AUTO_RENEW), -EINVAL);
        return plx_bus_request_name_lease(bus, name, flags, 0, NULL, NULL, 0);
}

static int name_call(plx_bus *bus, const char *member, const char *name, plx_msg **ret_reply) {
        Plexus__NameRequest req = PLEXUS__NAME_REQUEST__INIT;

        req.name = (char *)name;
        return bus_call_broker(bus, member, &req.base, ret_reply);
}

_public_ int plx_bus_renew_name(plx_bus *bus, const char *name) {
        _cleanup_(plx_msg_unrefp_internal) plx_msg *reply = NULL;
        int r;

        assert_return(bus && bus_name_is_well_known(name), -EINVAL);

        r = name_call(bus, "RenewName", name, &reply);
        if (r == -EREMOTEIO && error_is(reply, PLX_ERROR_NAME_NOT_OWNED)) {
                lease_remove(bus, name);
                return -ENXIO;
        }
        return r;
}

_public_ int plx_bus_release_name(plx_bus *bus, const char *name) {
        _cleanup_(plx_msg_unrefp_internal) plx_msg *reply = NULL;
        Plexus__ReleaseNameReply *rep;
        int r, result;

        assert_return(bus && bus_name_is_well_known(name), -EINVAL);

        lease_remove(bus, name);
        reconnect_name_forget(bus, name);
        r = name_call(bus, "ReleaseName", name, &reply);
        if (r < 0)
                return r;
        rep = plexus__release_name_reply__unpack(NULL, reply->payload_len, reply->payload);
        if (!rep)
                return -EBADMSG;
        result = (int)rep->result;
        plexus__release_name_reply__free_unpacked(rep, NULL);
        return result;
}

_public_ int plx_bus_get_name_owner(plx_bus *bus, const char *name, char **ret_owner) {
        _cleanup_(plx_msg_unrefp_internal) plx_msg *reply = NULL;
        Plexus__NameOwnerReply *rep;
        int r = 0;

        assert_return(bus, -EINVAL);
        assert_return(bus_name_is_well_known(name) || bus_name_is_unique_id(name), -EINVAL);

        r = name_call(bus, "GetNameOwner", name, &reply);
        if (r == -EREMOTEIO && error_is(reply, PLX_ERROR_NAME_HAS_NO_OWNER))
                return -ENXIO;
        if (r < 0)
                return r;

        rep = plexus__name_owner_reply__unpack(NULL, reply->payload_len, reply->payload);
        if (!rep)
                return -EBADMSG;
        if (ret_owner) {
                *ret_owner = strdup(rep->owner);
                if (!*ret_owner)
                        r = -ENOMEM;
        }
        plexus__name_owner_reply__free_unpacked(rep, NULL);
        return r;
}

static int ignore_signal(plx_msg *m, void *userdata) {
        return 0;
}

typedef struct Appearance {
        const char *topic;
        char *owner;
} Appearance;

static bool is_appearance(plx_msg *m, void *userdata) {
        Appearance *a = userdata;
        const char *new_owner;

        if (m->kind != PLX_MSG_SIGNAL || strcmp(m->member, a->topic) != 0)
                return false;
        if (plx_msg_get_name_change(m, NULL, NULL, &new_owner, NULL) < 0 || !*new_owner)
                return false;
        a->owner = strdup(new_owner);
        return a->owner != NULL;
}

_public_ int plx_bus_wait_for_name(plx_bus *bus, const char *name, uint64_t timeout_usec, char **ret_owner) {
        __attribute__((cleanup(plx_slot_freep))) plx_slot *watch = NULL;
        char topic[sizeof(PLX_TOPIC_NAMES_PREFIX) + BUS_NAME_MAX];
        Appearance a = { .topic = topic };
        uint64_t deadline;
        plx_msg *m;
        int r;

        assert_return(bus && bus_name_is_well_known(name), -EINVAL);

        deadline = now_usec() + (timeout_usec == PLX_TIMEOUT_DEFAULT ? BUS_DEFAULT_TIMEOUT_USEC : timeout_usec);
        snprintf(topic, sizeof(topic), PLX_TOPIC_NAMES_PREFIX "%s", name);

        /* Watch first, then ask: an owner arriving in between is not missed. */
        r = plx_bus_subscribe(bus, &watch, topic, ignore_signal, NULL);
        if (r < 0)
                return r;
        r = plx_bus_get_name_owner(bus, name, ret_owner);
        if (r != -ENXIO)
                return r;

        r = bus_await(bus, deadline, is_appearance, &a, &m);
        if (r < 0)
                return r;
        /* Other subscriptions of the application still get the change signal. */
        list_append(&bus->rqueue, &m->link);
        bus->n_rqueue++;
        if (ret_owner)
                *ret_owner = a.owner;
        else
                free(a.owner);
        return 0;
}
