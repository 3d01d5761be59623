/*
 * Policy rules (see policy.h).
 *
 * Matching: names and "destination:member" pairs use shell globs
 * (fnmatch(3)); topics use the bus's own wildcards, so "sensors/#" allows
 * publishing on "sensors/kitchen/temp", and a subscription is allowed only if
 * its pattern is covered by an allowed pattern: a client allowed
 * "sensors/#" may subscribe to "sensors/+/temp" but not to "#".
 */

#include <errno.h>
#include <fnmatch.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "topic.h"
#include "util.h"

#define POLICY_RULES_MAX 1024
#define POLICY_ITEMS_MAX 256    /* entries per key */

typedef struct Strings {
        char **items;
        size_t n;
} Strings;

typedef struct Rule {
        char *name;
        bool all_users;
        uid_t *uids;
        size_t n_uids;
        gid_t *gids;
        size_t n_gids;
        Strings allow[_POLICY_ACTION_MAX];
        bool monitor;
} Rule;

struct Policy {
        Rule *rules;
        size_t n_rules;
};

static const char *const action_keys[_POLICY_ACTION_MAX] = {
        [POLICY_OWN] = "own",
        [POLICY_CALL] = "call",
        [POLICY_PUBLISH] = "publish",
        [POLICY_SUBSCRIBE] = "subscribe",
        [POLICY_MONITOR] = "monitor",
};

/**
 * policy_action_to_string() - the configuration key of @a
 */
const char *policy_action_to_string(PolicyAction a) {
        return a < _POLICY_ACTION_MAX ? action_keys[a] : "?";
}

/**
 * policy_new() - an empty policy (allows nothing)
 *
 * Return: 0 or -ENOMEM.
 */
int policy_new(Policy **ret) {
        Policy *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

static void strings_free(Strings *s) {
        for (size_t i = 0; i < s->n; i++)
                free(s->items[i]);
        free(s->items);
}

/**
 * policy_free() - free @p, which may be NULL
 *
 * Return: NULL.
 */
Policy *policy_free(Policy *p) {
        if (!p)
                return NULL;
        for (size_t i = 0; i < p->n_rules; i++) {
                Rule *r = &p->rules[i];

                free(r->name);
                free(r->uids);
                free(r->gids);
                for (size_t a = 0; a < _POLICY_ACTION_MAX; a++)
                        strings_free(&r->allow[a]);
        }
        free(p->rules);
        free(p);
        return NULL;
}

/**
 * policy_n_rules() - how many rules @p has
 */
size_t policy_n_rules(const Policy *p) {
        return p ? p->n_rules : 0;
}

static Rule *rule_get(Policy *p, const char *name) {
        Rule *rules;

        for (size_t i = 0; i < p->n_rules; i++)
                if (strcmp(p->rules[i].name, name) == 0)
                        return &p->rules[i];
        if (p->n_rules >= POLICY_RULES_MAX)
                return NULL;

        rules = reallocarray(p->rules, p->n_rules + 1, sizeof(*rules));
        if (!rules)
                return NULL;
        p->rules = rules;
        rules[p->n_rules] = (Rule) { .name = strdup(name) };
        if (!rules[p->n_rules].name)
                return NULL;
        return &rules[p->n_rules++];
}

static bool parse_bool(const char *v, bool *ret) {
        if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1"))
                *ret = true;
        else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0"))
                *ret = false;
        else
                return false;
        return true;
}

/* uid_t and gid_t are both unsigned int on Linux; one helper grows either array. */
_Static_assert(sizeof(uid_t) == sizeof(unsigned) && sizeof(gid_t) == sizeof(unsigned), "uid_t/gid_t size");

static bool append_id(unsigned **ids, size_t *n, unsigned long id) {
        unsigned *a;

        if (*n >= POLICY_ITEMS_MAX)
                return false;
        a = reallocarray(*ids, *n + 1, sizeof(*a));
        if (!a)
                return false;
        a[(*n)++] = (unsigned)id;
        *ids = a;
        return true;
}

/* A user or group given by name or number. Names are resolved now, at load. */
static bool parse_id(const char *word, bool group, unsigned long *ret) {
        char *end;

        errno = 0;
        *ret = strtoul(word, &end, 10);
        if (*word && !*end && !errno && *ret < (unsigned long)(uid_t)-1)
                return true;
        if (group) {
                struct group *g = getgrnam(word);

                if (!g)
                        return false;
                *ret = g->gr_gid;
        } else {
                struct passwd *pw = getpwnam(word);

                if (!pw)
                        return false;
                *ret = pw->pw_uid;
        }
        return true;
}

static bool check_item(PolicyAction a, const char *item) {
        const char *colon;

        switch (a) {
        case POLICY_OWN:
                return *item && strlen(item) <= 255;
        case POLICY_CALL:
                /* "destination:member", each a glob; ":" inside unique ids is fine. */
                colon = strrchr(item, ':');
                return colon && colon != item && colon[1];
        case POLICY_PUBLISH:
        case POLICY_SUBSCRIBE:
                return topic_pattern_is_valid(item);
        default:
                return false;
        }
}

/**
 * policy_set() - apply one "key = value" line of rule @rule
 * @p:          the policy being built
 * @rule:       the rule's name (from [policy:NAME])
 * @key:        users, groups, own, call, publish, subscribe or monitor
 * @value:      whitespace or comma separated items; a key may repeat, items add up
 * @err:        receives a description on failure
 * @err_size:   its capacity
 *
 * Return: 0, -EINVAL (unknown key, bad item, unknown user or group), -ENOMEM.
 */
int policy_set(Policy *p, const char *rule, const char *key, const char *value, char *err, size_t err_size) {
        _cleanup_(freep) char *copy = NULL;
        char *save = NULL;
        Rule *r;
        int a;

        r = rule_get(p, rule);
        if (!r) {
                snprintf(err, err_size, "[policy:%s]: out of memory or more than %d rules", rule, POLICY_RULES_MAX);
                return -ENOMEM;
        }

        if (!strcmp(key, "monitor")) {
                if (!parse_bool(value, &r->monitor)) {
                        snprintf(err, err_size, "[policy:%s] monitor = \"%s\": expected yes or no", rule, value);
                        return -EINVAL;
                }
                return 0;
        }

        for (a = 0; a < _POLICY_ACTION_MAX; a++)
                if (a != POLICY_MONITOR && !strcmp(key, action_keys[a]))
                        break;
        if (a == _POLICY_ACTION_MAX && strcmp(key, "users") != 0 && strcmp(key, "groups") != 0) {
                snprintf(err, err_size, "[policy:%s]: unknown key %s", rule, key);
                return -EINVAL;
        }

        copy = strdup(value);
        if (!copy)
                return -ENOMEM;

        for (char *w = strtok_r(copy, " \t,", &save); w; w = strtok_r(NULL, " \t,", &save)) {
                if (!strcmp(key, "users") || !strcmp(key, "groups")) {
                        bool group = key[0] == 'g';
                        unsigned long id;

                        if (!group && !strcmp(w, "*")) {
                                r->all_users = true;
                                continue;
                        }
                        if (!parse_id(w, group, &id)) {
                                snprintf(err, err_size, "[policy:%s] %s: no such %s \"%s\"",
                                         rule, key, group ? "group" : "user", w);
                                return -EINVAL;
                        }
                        if (group ? !append_id((unsigned **)&r->gids, &r->n_gids, id)
                                  : !append_id((unsigned **)&r->uids, &r->n_uids, id)) {
                                snprintf(err, err_size, "[policy:%s]: more than %d %s", rule,
                                         POLICY_ITEMS_MAX, key);
                                return -EINVAL;
                        }
                        continue;
                }

                {
                        Strings *s = &r->allow[a];
                        char **items;

                        if (!check_item((PolicyAction)a, w)) {
                                snprintf(err, err_size, "[policy:%s] %s: invalid entry \"%s\"", rule, key, w);
                                return -EINVAL;
                        }
                        if (s->n >= POLICY_ITEMS_MAX) {
                                snprintf(err, err_size, "[policy:%s] %s: more than %d entries",
                                         rule, key, POLICY_ITEMS_MAX);
                                return -EINVAL;
                        }
                        items = reallocarray(s->items, s->n + 1, sizeof(*items));
                        if (!items)
                                return -ENOMEM;
                        s->items = items;
                        items[s->n] = strdup(w);
                        if (!items[s->n])
                                return -ENOMEM;
                        s->n++;
                }
        }
        return 0;
}

/**
 * policy_finish() - check the rules once the whole file is read
 *
 * Return: 0, or -EINVAL for a rule that names neither users nor groups
 * (it would apply to nobody, which is always a mistake).
 */
int policy_finish(Policy *p, char *err, size_t err_size) {
        for (size_t i = 0; i < p->n_rules; i++) {
                Rule *r = &p->rules[i];

                if (!r->all_users && !r->n_uids && !r->n_gids) {
                        snprintf(err, err_size, "[policy:%s]: names no users or groups", r->name);
                        return -EINVAL;
                }
        }
        return 0;
}

/**
 * policy_pattern_covers() - whether subscribing to @pattern stays within @allowed
 * @allowed:    a valid pattern from the policy
 * @pattern:    a valid pattern a client wants
 *
 * Return: true if every topic @pattern matches is matched by @allowed.
 */
bool policy_pattern_covers(const char *allowed, const char *pattern) {
        const char *a = allowed, *p = pattern;

        for (;;) {
                const char *ae = strchrnul(a, '/'), *pe = strchrnul(p, '/');
                size_t al = (size_t)(ae - a), pl = (size_t)(pe - p);

                if (al == 1 && a[0] == '#')
                        return true;
                if (pl == 1 && p[0] == '#')
                        return false;           /* only '#' covers '#' */
                if (!(al == 1 && a[0] == '+') && (al != pl || memcmp(a, p, al) != 0))
                        return false;           /* '+' covers one level; a literal only itself */
                if (!*ae || !*pe) {
                        if (!*ae && !*pe)
                                return true;
                        /* "a/#" covers "a": the pattern ended, the allowance goes on with "/#". */
                        return !*pe && strcmp(ae, "/#") == 0;
                }
                a = ae + 1;
                p = pe + 1;
        }
}

static bool rule_applies(const Rule *r, const PolicySubject *s) {
        if (r->all_users)
                return true;
        for (size_t i = 0; i < r->n_uids; i++)
                if (r->uids[i] == s->uid)
                        return true;
        for (size_t i = 0; i < r->n_gids; i++)
                for (size_t k = 0; k < s->n_gids; k++)
                        if (r->gids[i] == s->gids[k])
                                return true;
        return false;
}

static bool item_allows(PolicyAction a, const char *item, const char *target) {
        switch (a) {
        case POLICY_OWN:
        case POLICY_CALL:
                return fnmatch(item, target, 0) == 0;
        case POLICY_PUBLISH:
                return topic_match(item, target);
        case POLICY_SUBSCRIBE:
                return policy_pattern_covers(item, target);
        default:
                return false;
        }
}

/**
 * policy_applies() - whether any rule of @p applies to @s
 *
 * Return: false for a NULL policy.
 */
bool policy_applies(const Policy *p, const PolicySubject *s) {
        if (!p)
                return false;
        for (size_t i = 0; i < p->n_rules; i++)
                if (rule_applies(&p->rules[i], s))
                        return true;
        return false;
}

/**
 * policy_allows() - whether @s may do @action on @target
 * @p:          the policy, or NULL (allows nothing)
 * @s:          who
 * @action:     what
 * @target:     on what (ignored for POLICY_MONITOR)
 * @aliases:    NULL-terminated other names for @target, or NULL: for
 *              POLICY_CALL, "name:member" for each name the callee owns
 * @ret_rule:   optional; the name of the rule that allowed it
 *
 * Return: true if some rule that applies to @s allows it.
 */
bool policy_allows(const Policy *p, const PolicySubject *s, PolicyAction action,
                   const char *target, const char *const *aliases, const char **ret_rule) {
        if (!p)
                return false;

        for (size_t i = 0; i < p->n_rules; i++) {
                const Rule *r = &p->rules[i];
                const Strings *allow = &r->allow[action];

                if (!rule_applies(r, s))
                        continue;
                if (action == POLICY_MONITOR) {
                        if (r->monitor)
                                goto allowed;
                        continue;
                }
                for (size_t k = 0; k < allow->n; k++) {
                        if (item_allows(action, allow->items[k], target))
                                goto allowed;
                        for (const char *const *al = aliases; al && *al; al++)
                                if (item_allows(action, allow->items[k], *al))
                                        goto allowed;
                }
                continue;
allowed:
                if (ret_rule)
                        *ret_rule = r->name;
                return true;
        }
        return false;
}
