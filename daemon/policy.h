#pragma once

/*
 * Access policy: who may own which names, call what, publish and subscribe
 * to which topics, and monitor the bus.
 *
 * Root and the uid the broker runs as are never restricted. Every other
 * client is subject to the policy: without one (the per-user bus by
 * default) it may not even connect; with one, each action is allowed if at
 * least one rule that applies to the client allows it, and denied
 * otherwise. A rule applies to a client whose uid is in its users or whose
 * gid (primary or supplementary) is in its groups.
 *
 * Rules come from [policy:NAME] sections of the configuration file (see
 * docs/configuration.md); a Policy is immutable once built, and a reload
 * swaps in a new one.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct Policy Policy;

typedef enum PolicyAction {
        POLICY_OWN,             /* target: a well-known name */
        POLICY_CALL,            /* target: "destination:member" */
        POLICY_PUBLISH,         /* target: a topic */
        POLICY_SUBSCRIBE,       /* target: a pattern */
        POLICY_MONITOR,         /* no target */
        _POLICY_ACTION_MAX,
} PolicyAction;

/* The identity a decision is about. */
typedef struct PolicySubject {
        uid_t uid;
        const gid_t *gids;      /* primary first, then supplementary */
        size_t n_gids;
} PolicySubject;

int policy_new(Policy **ret);
Policy *policy_free(Policy *p);
int policy_set(Policy *p, const char *rule, const char *key, const char *value, char *err, size_t err_size);
int policy_finish(Policy *p, char *err, size_t err_size);
size_t policy_n_rules(const Policy *p);

bool policy_applies(const Policy *p, const PolicySubject *s);
bool policy_allows(const Policy *p, const PolicySubject *s, PolicyAction action,
                   const char *target, const char *const *aliases, const char **ret_rule);
bool policy_pattern_covers(const char *allowed, const char *pattern);
const char *policy_action_to_string(PolicyAction a);

static inline void policy_freep(Policy **p) {
        if (*p)
                policy_free(*p);
}
