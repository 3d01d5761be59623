#pragma once

/*
 * Routing: what happens to each frame a peer sends, and every frame the
 * broker makes itself (errors, replies of its own methods, broker signals).
 *
 * The broker routes one frame at a time and stamps each with the next
 * bus-wide sequence number; every receiver's queue is FIFO. That is the whole
 * ordering guarantee of docs/protocol.md: all receivers see frames in
 * sequence order, so a reply never overtakes a signal routed before it.
 */

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "broker.h"

void router_handle_frame(Broker *b, Peer *from, const uint8_t *buf, size_t len,
                         const int *fds, size_t n_fds, bool fds_truncated);

int router_send_error(Broker *b, Peer *to, uint64_t reply_serial, const char *name,
                      const char *fmt, ...) _printf_(5, 6);
int router_send_reply(Broker *b, Peer *to, uint64_t reply_serial, const ProtobufCMessage *payload);
int router_send_signal(Broker *b, Peer *to, const char *topic, const ProtobufCMessage *payload);
void router_broadcast(Broker *b, const char *topic);
void router_fail_peer(Broker *b, Peer *p, uint64_t reply_serial, const char *name,
                      const char *fmt, ...) _printf_(5, 6);
void router_peer_gone(Broker *b, Peer *p);
void router_peer_closing(Broker *b, Peer *p);
void router_frame_dropped(Broker *b, Peer *to, const Message *m);
size_t router_publish(Broker *b, Peer *as, const char *topic, const void *payload, size_t size,
                      size_t *ret_n_matched);
