#pragma once

/*
 * Introspection: the bus's read-only methods describing its clients and its
 * counters, for plexusctl and other tools (docs/protocol.md §6).
 *
 *   ListClients  plexus.ListClientsRequest -> plexus.ClientList, paged
 *   GetClient    plexus.NameRequest        -> plexus.ClientInfo
 *   GetStats     (ignored)                 -> plexus.Stats
 *
 * They are called from the driver's method table with the same arguments as
 * its own methods; the request payload is decoded into the broker's payload
 * arena, which the driver has reset. Every client connected to the bus may
 * call them, as it may ListNames, at a bounded rate (introspect_admit());
 * only a client's command line is kept from callers that are neither
 * privileged nor of the same uid. What comes from /proc is read once, at
 * HELLO (introspect_capture()), never on request.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"

/* Bytes of /proc/PID/cmdline reported per client; longer ones are cut. */
#define INTROSPECT_CMDLINE_MAX 1024u

/*
 * Rate limit of the introspection methods (ListClients, GetClient,
 * ListNames, GetStats), per client: a token bucket of INTROSPECT_BURST
 * calls, refilled at INTROSPECT_RATE calls per second. Each call walks
 * every client or name on the broker's only thread; a client calling in a
 * loop would otherwise take the bus's time from everyone else.
 */
#define INTROSPECT_RATE 64u
#define INTROSPECT_BURST 128u

void introspect_capture(Broker *b, Peer *p);
bool introspect_admit(Broker *b, Peer *from, Plexus__Header *h);

void introspect_list_clients(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len);
void introspect_get_client(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len);
void introspect_get_stats(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len);
