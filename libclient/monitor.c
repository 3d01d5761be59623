/*
 * Monitor mode: a connection that receives a copy of every frame the
 * broker routes (docs/protocol.md §16).
 *
 * plx_bus_become_monitor() asks the broker with BecomeMonitor and, once it
 * agreed, sets bus->monitor_callback. From then on bus_dispatch() hands
 * every received message to that callback (monitor_takes()), with one
 * exception: REPLYs and ERRORs addressed to this connection, which answer
 * (or report on) its own calls to the broker and go their usual way.
 *
 * Why the callback and not the usual dispatch: copies are addressed to
 * other clients. A copied CALL would find no method handler and be
 * answered with UnknownMethod, which the broker refuses from a monitor;
 * a copied REPLY carries another client's serial, which may equal one of
 * our own pending calls. The exception is safe because the broker never
 * copies a monitor's own traffic to it: a frame addressed to us is never a
 * copy.
 *
 * The broker answers BecomeMonitor before it copies anything to us, so the
 * synchronous call cannot mistake a copy for its answer.
 */

#include <errno.h>
#include <string.h>

#include "bus-internal.h"
#include "topic.h"

/* The broker's bound on filters, docs/protocol.md §16. */
#define MONITOR_FILTERS_MAX 64u

/* Count @v (NULL-terminated, or NULL) into *@n; false if an entry is not valid. */
static bool filters_count(const char *const *v, bool patterns, size_t *n) {
        *n = 0;
        for (; v && *v; v++, (*n)++) {
                if (patterns ? !topic_pattern_is_valid(*v) : !**v || strlen(*v) > FRAME_NAME_MAX)
                        return false;
                if (*n >= MONITOR_FILTERS_MAX)
                        return false;
        }
        return true;
}

/**
 * monitor_takes() - whether @m goes to the monitor callback of @bus
 * @bus:        the bus @m arrived on, or NULL (a local error)
 * @m:          a received message
 *
 * Return: true if @bus is a monitor and @m is not an answer addressed to
 * it.
 */
bool monitor_takes(plx_bus *bus, plx_msg *m) {
        if (!bus || !bus->monitor_callback)
                return false;
        if (m->kind != PLX_MSG_REPLY && m->kind != PLX_MSG_ERROR)
                return true;
        return !m->destination || strcmp(m->destination, bus->unique_id) != 0;
}

_public_ int plx_bus_become_monitor(plx_bus *bus, const char *const *topics, const char *const *names,
                                    const char *const *members, plx_monitor_fn callback, void *userdata) {
        Plexus__MonitorRequest req = PLEXUS__MONITOR_REQUEST__INIT;
        _cleanup_(plx_msg_unrefp_internal) plx_msg *reply = NULL;
        size_t n_topics, n_names, n_members;
        int r;

        assert_return(bus && callback, -EINVAL);
        if (!filters_count(topics, true, &n_topics) || !filters_count(names, false, &n_names) ||
            !filters_count(members, false, &n_members) || n_topics + n_names + n_members > MONITOR_FILTERS_MAX)
                return -EINVAL;
        if (bus->monitor_callback)
                return -EALREADY;

        /* protobuf-c only reads the request: the casts drop const, nothing writes. */
        req.n_topics = n_topics;
        req.topics = (char **)topics;
        req.n_names = n_names;
        req.names = (char **)names;
        req.n_members = n_members;
        req.members = (char **)members;
        r = bus_call_broker(bus, "BecomeMonitor", &req.base, &reply);
        if (r == -EREMOTEIO && strcmp(reply->error_name, PLX_ERROR_ACCESS_DENIED) == 0)
                return -EACCES;
        if (r == -EREMOTEIO && strcmp(reply->error_name, PLX_ERROR_INVALID_ARGS) == 0)
                return -EINVAL;
        if (r < 0)
                return r;

        bus->monitor_callback = callback;
        bus->monitor_userdata = userdata;
        return 0;
}
