#pragma once

/*
 * The typed test service, plexus.test.Calculator of
 * tests/proto/typed-test.proto, shared by the typed-service tests
 * (test-typed.c, in a forked child) and the program typed-service.c that
 * plexusctl's tests call.
 *
 *   Add        a + b
 *   Echo       returns the Everything it got
 *   Big        a BigReply of `size` bytes (i * 13 + 1 each)
 *   Wrong      tries to reply with a Tick; answers plexus.test.Error.Refused
 *              when libplexus refuses that (Unrefused if not)
 *   Unimplemented has no handler
 *
 * It declares the topic CALCULATOR_TICK_TOPIC (plexus.test.Tick).
 */

#include <stdbool.h>

#include <plexus/protobuf.h>

#define CALCULATOR_TICK_TOPIC "calc/ticks"

int calculator_export(plx_bus *bus, plx_slot **ret_slot, bool with_descriptors);
/* Untyped: REPLY, then plx_bus_run() returns 0. */
int calculator_quit(plx_msg *call, void *userdata);
/* A typed handler that is no method of the service (for plx_bus_export()'s checks). */
int calculator_quit_typed(plx_msg *call, const ProtobufCMessage *request, void *userdata);
/* Untyped: publishes Tick{n: 7, note: "seven"} and then bytes that are no Tick, then REPLY. */
int calculator_publish_tick(plx_msg *call, void *userdata);
