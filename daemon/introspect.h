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
 * call them, as it may ListNames; only a client's command line is kept from
 * callers that are neither privileged nor of the same uid.
 */

#include <stddef.h>
#include <stdint.h>

#include "broker.h"

/* Bytes of /proc/PID/cmdline reported per client; longer ones are cut. */
#define INTROSPECT_CMDLINE_MAX 1024u

void introspect_list_clients(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len);
void introspect_get_client(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len);
void introspect_get_stats(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len);
