#pragma once

/*
 * Monitors: clients that receive a copy of every frame the broker routes
 * (optionally filtered), without changing delivery to anyone else.
 *
 * A copy goes out like any frame (straight to the socket, or queued), but a
 * monitor's queue full means the copy is dropped, counted, and the monitor
 * told how many it missed once its queue drains; the bus never waits for a
 * monitor. Monitors only listen: apart from calls to the broker, the frames
 * they send are refused. Copies carry no file descriptors (n_fds still says
 * how many the original carried).
 */

#include <stddef.h>

#include "broker.h"

#define TOPIC_MONITOR_MISSED "plexus/monitor/missed"

typedef struct Monitor Monitor;

int monitor_new(Broker *b, Peer *p, const Plexus__MonitorRequest *req);
void monitor_free(Broker *b, Peer *p);
void monitor_copy_all(Broker *b, const Plexus__Header *h, const void *payload, size_t size);
void monitor_drained(Broker *b, Peer *p);

/* A copy of a routed frame for each monitor that wants it; inline: usually there is none. */
static inline void monitor_copy(Broker *b, const Plexus__Header *h, const void *payload, size_t size) {
        if (!list_is_empty(&b->monitors))
                monitor_copy_all(b, h, payload, size);
}
