/*
 * The messaging API: calls (synchronous and asynchronous), method handlers,
 * publish and subscribe. Arguments are checked here, so that a bad name or
 * topic fails locally with -EINVAL instead of costing a round trip.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bus-internal.h"
#include "topic.h"

static bool name_ok(const char *s) {
        return s && *s && strlen(s) <= FRAME_NAME_MAX;
}

static int send_call(plx_bus *bus, const char *destination, const char *member,
                     const void *payload, size_t size, const int *fds, size_t n_fds,
                     uint64_t timeout_usec, uint32_t flags, bool lend, plx_buffer *buf,
                     uint64_t *ret_serial) {
        _cleanup_(plx_buffer_freep_internal) plx_buffer *b = buf;
        Plexus__Header h = PLEXUS__HEADER__INIT;
        int r;

        assert_return(bus, -EINVAL);
        assert_return(name_ok(destination) && name_ok(member), -EINVAL);
        assert_return(payload || size == 0 || b, -EINVAL);
        assert_return((fds || n_fds == 0) && n_fds <= FRAME_FDS_MAX, -EINVAL);

        h.kind = PLEXUS__KIND__KIND_CALL;
        h.destination = (char *)destination;
        h.member = (char *)member;
        h.flags = flags;
        h.timeout_ms = timeout_to_ms(timeout_usec);
        if (b)
                r = bus_send_buffer(bus, &h, TAKE_PTR(b), size);
        else
                r = bus_send_payload(bus, &h, payload, size, fds, n_fds, lend);
        if (r < 0)
                return r;
        if (ret_serial)
                *ret_serial = h.serial;
        return 0;
}

static bool transfer_refused(plx_msg *m) {
        return m->kind == PLX_MSG_ERROR && strcmp(m->error_name, PLX_ERROR_TRANSFER_REFUSED) == 0 &&
               m->sender && strcmp(m->sender, PLX_BROKER) != 0;
}

/*
 * A synchronous call. A large request may be lent as it is (the caller's
 * buffer is ours until we return), so before returning we wait until no
 * receiver can read it any more. A callee that may not read our memory
 * answers TransferRefused without running the method: the call then goes
 * again at once in a memfd, and the destination is remembered.
 *
 * Return: 0 on a REPLY; -EREMOTEIO on an ERROR, -ETIMEDOUT on the broker's
 * Timeout error (*@ret_reply set in both cases); other negative errno.
 */
static int call_sync(plx_bus *bus, const char *destination, const char *member,
                     const void *payload, size_t size, const int *fds, size_t n_fds,
                     uint64_t timeout_usec, plx_buffer *buf, void *into, size_t into_size,
                     plx_msg **ret_reply) {
        _cleanup_(plx_msg_unrefp_internal) plx_msg *m = NULL;
        uint64_t serial;
        bool lent;
        int r;

        for (int attempt = 0;; attempt++) {
                r = send_call(bus, destination, member, payload, size, fds, n_fds, timeout_usec, 0,
                              true, TAKE_PTR(buf), &serial);
                if (r < 0)
                        return r;
                lent = large_lent_pending(bus, serial);

                bus->into_serial = serial;
                bus->into_buf = into;
                bus->into_size = into_size;
                r = bus_await_reply(bus, serial, timeout_to_deadline(timeout_usec), &m);
                bus->into_buf = NULL;
                bus->into_serial = 0;
                if (lent)
                        large_await_lent(bus, serial, size);
                if (r < 0)
                        return r;
                if (!lent || attempt > 0 || !transfer_refused(m))
                        break;
                large_remember_refused(bus, destination);
                m = plx_msg_unref(m);
        }

        r = 0;
        if (m->kind == PLX_MSG_ERROR) {
                /* The broker's own deadline is the call's timeout. */
                r = m->sender && strcmp(m->sender, PLX_BROKER) == 0 &&
                    strcmp(m->error_name, PLX_ERROR_TIMEOUT) == 0 ? -ETIMEDOUT : -EREMOTEIO;
        }
        if (ret_reply)
                *ret_reply = TAKE_PTR(m);
        return r;
}

_public_ int plx_bus_call_with_fds(plx_bus *bus, const char *destination, const char *member,
                                   const void *payload, size_t size, const int *fds, size_t n_fds,
                                   uint64_t timeout_usec, plx_msg **ret_reply) {
        return call_sync(bus, destination, member, payload, size, fds, n_fds, timeout_usec,
                         NULL, NULL, 0, ret_reply);
}

_public_ int plx_bus_call_into(plx_bus *bus, const char *destination, const char *member,
                               const void *payload, size_t size, uint64_t timeout_usec,
                               void *reply_buf, size_t reply_buf_size, plx_msg **ret_reply) {
        assert_return(reply_buf || reply_buf_size == 0, -EINVAL);
        return call_sync(bus, destination, member, payload, size, NULL, 0, timeout_usec,
                         NULL, reply_buf, reply_buf_size, ret_reply);
}

_public_ int plx_bus_call_buffer(plx_bus *bus, const char *destination, const char *member,
                                 plx_buffer *buf, size_t size, uint64_t timeout_usec, plx_msg **ret_reply) {
        if (!buf)
                return -EINVAL;
        return call_sync(bus, destination, member, NULL, size, NULL, 0, timeout_usec,
                         buf, NULL, 0, ret_reply);
}

_public_ int plx_bus_call(plx_bus *bus, const char *destination, const char *member,
                          const void *payload, size_t size, uint64_t timeout_usec,
                          plx_msg **ret_reply) {
        return plx_bus_call_with_fds(bus, destination, member, payload, size, NULL, 0,
                                     timeout_usec, ret_reply);
}

_public_ int plx_bus_call_async_with_fds(plx_bus *bus, plx_slot **ret_slot, const char *destination,
                                         const char *member, const void *payload, size_t size,
                                         const int *fds, size_t n_fds, uint64_t timeout_usec,
                                         plx_reply_fn callback, void *userdata) {
        plx_slot *s;
        uint64_t serial;
        int r;

        assert_return(bus && callback, -EINVAL);

        r = slot_new(&s, bus, SLOT_CALL, userdata);
        if (r < 0)
                return r;

        r = send_call(bus, destination, member, payload, size, fds, n_fds, timeout_usec, 0, false, NULL,
                      &serial);
        if (r >= 0)
                r = slot_call_register(s, serial, timeout_to_deadline(timeout_usec), callback);
        if (r < 0) {
                plx_slot_free(s);
                return r;
        }

        if (ret_slot)
                *ret_slot = s;
        else
                s->floating = true;
        return 0;
}

_public_ int plx_bus_call_async(plx_bus *bus, plx_slot **ret_slot, const char *destination,
                                const char *member, const void *payload, size_t size,
                                uint64_t timeout_usec, plx_reply_fn callback, void *userdata) {
        return plx_bus_call_async_with_fds(bus, ret_slot, destination, member, payload, size,
                                           NULL, 0, timeout_usec, callback, userdata);
}

_public_ int plx_bus_send_call(plx_bus *bus, const char *destination, const char *member,
                               const void *payload, size_t size) {
        return send_call(bus, destination, member, payload, size, NULL, 0, PLX_TIMEOUT_DEFAULT,
                         FRAME_FLAG_NO_REPLY, false, NULL, NULL);
}

_public_ int plx_bus_add_method(plx_bus *bus, plx_slot **ret_slot, const char *member,
                                plx_method_fn callback, void *userdata) {
        size_t len;
        plx_slot *s;
        int r;

        assert_return(bus && callback && name_ok(member), -EINVAL);

        len = strlen(member);
        htable_for_each_hash(n, &bus->methods, hash_string(member, len)) {
                plx_slot *o = container_of(n, plx_slot, method.node);

                if (strcmp(o->method.member, member) == 0)
                        return -EEXIST;
        }

        r = slot_new(&s, bus, SLOT_METHOD, userdata);
        if (r < 0)
                return r;
        s->method.callback = callback;
        s->method.member = strdup(member);
        if (!s->method.member ||
            htable_insert(&bus->methods, &s->method.node, hash_string(member, len)) < 0) {
                /* Not in the table: unlink by hand, then free. */
                list_unlink(&s->link);
                s->bus = NULL;
                slot_unref(s);
                return -ENOMEM;
        }

        if (ret_slot)
                *ret_slot = s;
        else
                s->floating = true;
        return 0;
}

_public_ int plx_bus_publish_with_fds(plx_bus *bus, const char *topic, const void *payload, size_t size,
                                      const int *fds, size_t n_fds) {
        Plexus__Header h = PLEXUS__HEADER__INIT;

        assert_return(bus, -EINVAL);
        assert_return(topic_is_valid(topic) && !topic_is_reserved(topic), -EINVAL);
        assert_return(payload || size == 0, -EINVAL);
        assert_return((fds || n_fds == 0) && n_fds <= FRAME_FDS_MAX, -EINVAL);

        h.kind = PLEXUS__KIND__KIND_SIGNAL;
        h.member = (char *)topic;
        return bus_send_payload(bus, &h, payload, size, fds, n_fds, false);
}

_public_ int plx_bus_publish_buffer(plx_bus *bus, const char *topic, plx_buffer *buf, size_t size) {
        _cleanup_(plx_buffer_freep_internal) plx_buffer *b = buf;
        Plexus__Header h = PLEXUS__HEADER__INIT;

        assert_return(bus && b, -EINVAL);
        assert_return(topic_is_valid(topic) && !topic_is_reserved(topic), -EINVAL);

        h.kind = PLEXUS__KIND__KIND_SIGNAL;
        h.member = (char *)topic;
        return bus_send_buffer(bus, &h, TAKE_PTR(b), size);
}

_public_ int plx_bus_publish(plx_bus *bus, const char *topic, const void *payload, size_t size) {
        return plx_bus_publish_with_fds(bus, topic, payload, size, NULL, 0);
}

_public_ int plx_bus_subscribe(plx_bus *bus, plx_slot **ret_slot, const char *pattern,
                               plx_signal_fn callback, void *userdata) {
        _cleanup_(plx_msg_unrefp_internal) plx_msg *reply = NULL;
        Plexus__SubscribeRequest req = PLEXUS__SUBSCRIBE_REQUEST__INIT;
        uint8_t buf[TOPIC_MAX + 16];
        plx_slot *s;
        int r;

        assert_return(bus && callback, -EINVAL);
        assert_return(topic_pattern_is_valid(pattern), -EINVAL);

        /* Everything that can fail locally first, so the broker's yes is final. */
        r = slot_new(&s, bus, SLOT_SUBSCRIPTION, userdata);
        if (r < 0)
                return r;
        s->sub.callback = callback;
        s->sub.pattern = strdup(pattern);
        if (!s->sub.pattern) {
                plx_slot_free(s);
                return -ENOMEM;
        }

        req.pattern = (char *)pattern;
        r = plx_bus_call(bus, PLX_BROKER, "Subscribe", buf, plexus__subscribe_request__pack(&req, buf),
                         PLX_TIMEOUT_DEFAULT, &reply);
        if (r < 0) {
                plx_slot_free(s);
                return r;
        }
        list_append(&bus->subscriptions, &s->sub.link);

        if (ret_slot)
                *ret_slot = s;
        else
                s->floating = true;
        return 0;
}
