#pragma once

/*
 * The bus's own methods: the HELLO handshake and the CALLs addressed to
 * "plexus" (Subscribe, Unsubscribe, Ping, GetBusInfo). Requests and replies
 * are the protobuf messages of proto/plexus.proto.
 */

#include <stddef.h>
#include <stdint.h>

#include "broker.h"

void driver_hello(Broker *b, Peer *p, Plexus__Header *h, const FrameView *f);
void driver_call(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len);
