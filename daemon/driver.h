#pragma once

/*
 * The bus's own methods: the HELLO handshake and the CALLs addressed to
 * "plexus" (subscriptions, names, Ping, GetBusInfo), and what names need
 * beyond the registry: leases, last wills, the change signals on
 * "plexus/names/<name>", and hand-over when an owner goes away. Requests
 * and replies are the protobuf messages of proto/plexus.proto.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"

void driver_hello(Broker *b, Peer *p, Plexus__Header *h, const FrameView *f);
void driver_call(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len);
void driver_peer_gone(Broker *b, Peer *p);
bool driver_has_method(const char *member);
