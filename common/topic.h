#pragma once

/*
 * Topic names and subscription patterns.
 *
 * A topic is 1..TOPIC_MAX bytes of levels separated by '/', each level
 * non-empty and made of printable ASCII other than '+' and '#', at most
 * TOPIC_LEVELS_MAX levels. A pattern has the same shape but a level may be
 * "+" (exactly one level) or, as the last level only, "#" (that level's
 * parent and everything below it), as in MQTT. Topics under "plexus/" are
 * published by the broker only.
 */

#include <stdbool.h>
#include <stddef.h>

#define TOPIC_MAX 255u
#define TOPIC_LEVELS_MAX 32u
#define TOPIC_RESERVED_PREFIX "plexus/"

bool topic_is_valid(const char *topic);
bool topic_pattern_is_valid(const char *pattern);
bool topic_is_reserved(const char *topic);
bool topic_match(const char *pattern, const char *topic);
