#pragma once

/*
 * The broker's configuration file: INI, read with libinih.
 *
 *     [limits]
 *     max_clients = 16384
 *     ...
 *
 *     [policy:NAME]
 *     users = ...
 *     own = ...
 *
 * Every key is optional; a key that is not there keeps its default. Unknown
 * sections or keys, values out of range and malformed lines are errors, so
 * a typo never silently leaves a limit at its default. The same parser
 * serves the start and every reload (SIGHUP).
 */

#include <stddef.h>

#include "broker.h"
#include "policy.h"

#define CONFIG_SYSTEM_PATH "/etc/plexus/plexusd.conf"
#define CONFIG_USER_SUFFIX "/plexus/plexusd.conf"

int config_load(plx_broker_config *c, Policy **ret_policy, const char *path, bool required,
                char *err, size_t err_size);
int config_default_path(char *buf, size_t size);
