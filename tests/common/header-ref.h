#pragma once

/*
 * A reference for the hand-written header codec (common/header-wire.c), for
 * tests and the fuzz target only: the rules of docs/protocol.md §3.3
 * checked independently (a naive varint reader that re-encodes to find
 * overlong forms, a code-point UTF-8 decoder, field types from protobuf-c's
 * descriptor), then protobuf-c's generated unpack and pack.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plexus.pb-c.h"

bool header_ref_valid(const uint8_t *buf, size_t len);
Plexus__Header *header_ref_decode(const uint8_t *buf, size_t len);
const char *header_ref_diff(const Plexus__Header *a, const Plexus__Header *b);
