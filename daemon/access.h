#pragma once

/*
 * Access control: applying the broker's Policy to its peers.
 *
 * access_check() answers whether a peer may do something; on a denial it
 * counts it and logs it once per peer and target (then rate-limited), and
 * the caller answers the peer with plexus.Error.AccessDenied.
 */

#include <stdbool.h>

#include "broker.h"
#include "policy.h"

#define ERROR_ACCESS_DENIED "plexus.Error.AccessDenied"

bool access_privileged(Broker *b, Peer *p);
bool access_may_connect(Broker *b, Peer *p);
bool access_check(Broker *b, Peer *p, PolicyAction action, const char *target, const char *const *aliases);
