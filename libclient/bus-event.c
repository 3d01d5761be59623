/*
 * sd-event integration: an io source on the bus socket and a time source for
 * the next deadline, both kept current by a prepare callback that runs before
 * each sleep of the loop (the way sd-bus attaches itself).
 */

#include <errno.h>
#include <systemd/sd-event.h>

#include "bus-internal.h"

/* Messages handled per wakeup before the loop gets a turn for others. */
#define EVENT_PROCESS_BATCH 64

static int process_some(plx_bus *bus) {
        for (int i = 0; i < EVENT_PROCESS_BATCH; i++) {
                int r = plx_bus_process(bus);

                if (r < 0)
                        return sd_event_exit(bus->event, r);
                if (r == 0)
                        break;
        }
        return 0;
}

/*
 * Sends wait in the write queue for a flush (see plexus.h): before the loop
 * sleeps, write what the socket takes, whoever queued it (our callbacks or
 * the application's other sources). The rest waits for POLLOUT.
 */
static int flush_some(plx_bus *bus) {
        int r = bus_flush_queue(bus);

        if (r < 0 && r != -ECONNRESET)
                return sd_event_exit(bus->event, r);
        return 0;
}

static int io_callback(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        return process_some(userdata);
}

static int time_callback(sd_event_source *s, uint64_t usec, void *userdata) {
        return process_some(userdata);
}

static int prepare_callback(sd_event_source *s, void *userdata) {
        plx_bus *bus = userdata;
        uint64_t when;
        int r, events;

        r = flush_some(bus);
        if (r < 0)
                return r;
        events = plx_bus_get_events(bus);
        if (events < 0)
                return sd_event_exit(bus->event, events);
        r = sd_event_source_set_io_events(bus->io_source, (uint32_t)events);
        if (r < 0)
                return r;

        when = bus->n_rqueue > 0 || bus->n_stash > 0 ? 0 : bus_next_deadline(bus);

        if (when == UINT64_MAX)
                return sd_event_source_set_enabled(bus->time_source, SD_EVENT_OFF);

        /* libplexus deadlines are CLOCK_MONOTONIC microseconds, as sd-event's. */
        r = sd_event_source_set_time(bus->time_source, MAX(when, 1u));
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(bus->time_source, SD_EVENT_ONESHOT);
}

_public_ int plx_bus_attach_event(plx_bus *bus, sd_event *event, int64_t priority) {
        sd_event_source *io = NULL, *timer = NULL;
        int r;

        assert_return(bus, -EINVAL);
        assert_return(!bus->event, -EBUSY);
        assert_return(plx_bus_get_fd(bus) >= 0, -ENOTCONN);

        if (event)
                bus->event = sd_event_ref(event);
        else {
                r = sd_event_default(&bus->event);
                if (r < 0)
                        return r;
        }

        r = sd_event_add_io(bus->event, &io, plx_bus_get_fd(bus), EPOLLIN, io_callback, bus);
        if (r < 0)
                goto fail;
        bus->io_source = io;
        r = sd_event_source_set_priority(io, priority);
        if (r < 0)
                goto fail;
        r = sd_event_source_set_prepare(io, prepare_callback);
        if (r < 0)
                goto fail;

        r = sd_event_add_time(bus->event, &timer, CLOCK_MONOTONIC, UINT64_MAX, 0, time_callback, bus);
        if (r < 0)
                goto fail;
        bus->time_source = timer;
        r = sd_event_source_set_priority(timer, priority);
        if (r < 0)
                goto fail;
        return 0;

fail:
        plx_bus_detach_event(bus);
        return r;
}

/**
 * bus_event_update_fd() - watch plx_bus_get_fd() again after it changed
 *
 * Return: 0 (also when not attached) or a negative errno from sd-event.
 */
int bus_event_update_fd(plx_bus *bus) {
        if (!bus->io_source)
                return 0;
        return sd_event_source_set_io_fd(bus->io_source, plx_bus_get_fd(bus));
}

_public_ int plx_bus_detach_event(plx_bus *bus) {
        assert_return(bus, -EINVAL);

        bus->io_source = sd_event_source_disable_unref(bus->io_source);
        bus->time_source = sd_event_source_disable_unref(bus->time_source);
        bus->event = sd_event_unref(bus->event);
        return 0;
}
