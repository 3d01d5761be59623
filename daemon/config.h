#pragma once

/*
 * The broker's configuration file: INI, read with libinih.
 *
 *     [limits]
 *     max_clients = 16384
 *     ...
 *
 * Every key is optional; a key that is not there keeps its default. Unknown
 * sections or keys, values out of range and malformed lines are errors, so
 * a typo never silently leaves a limit at its default. The same parser
 * serves the start and every reload (SIGHUP).
 */

#include <stddef.h>

#include "broker.h"

#define CONFIG_DEFAULT_PATH "/etc/plexus/plexusd.conf"

int config_load(plx_broker_config *c, const char *path, bool required, char *err, size_t err_size);
