#pragma once

/*
 * Bus names: the broker's own name, unique ids and well-known names.
 *
 * A unique id is ":" followed by a decimal number without leading zeros,
 * assigned by the broker. A well-known name is reverse-DNS style: two or
 * more elements separated by '.', each element 1 or more of [A-Za-z0-9_-]
 * not starting with a digit, BUS_NAME_MAX (240) bytes at most. Unique ids, the
 * broker's name "plexus" and names under "plexus." are never valid
 * well-known names.
 */

#include <stdbool.h>

#define BUS_NAME_MAX 240u                       /* so that "plexus/names/<name>" is a valid topic */

bool bus_name_is_unique_id(const char *s);
bool bus_name_is_well_known(const char *s);
