/*
 * Unit tests for the access policy (daemon/policy.c), built alone: rules are
 * fed to policy_set() line by line as the configuration parser would, and
 * decisions are asked of policy_allows() for made-up subjects.
 *
 * Covers parsing errors (unknown key, bad item for each action, unknown
 * user or group, a rule naming nobody caught by policy_finish(), the limits
 * of items per key and of rules), that lists add up across separators and
 * repeated keys, that a rule applies by uid, primary or supplementary gid,
 * or "*", that each action is decided by its own key with its own matching
 * (shell globs for own and call, bus wildcards for publish, coverage for
 * subscribe), call aliases, and the edge cases of policy_pattern_covers().
 */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <cmocka.h>

#include "policy.h"

#define NO_SUCH_USER "plexus-no-such-user"
#define NO_SUCH_GROUP "plexus-no-such-group"

static int setup_policy(void **state) {
        Policy *p = NULL;

        if (policy_new(&p) < 0)
                return -1;
        *state = p;
        return 0;
}

static int teardown_policy(void **state) {
        assert_null(policy_free(*state));
        return 0;
}

static void set(Policy *p, const char *rule, const char *key, const char *value) {
        char err[256] = "";
        int r;

        r = policy_set(p, rule, key, value, err, sizeof(err));
        if (r != 0)
                fail_msg("[policy:%s] %s = %s: %d (%s)", rule, key, value, r, err);
}

/* policy_set() must refuse with -EINVAL and say @why. */
static void set_fails(Policy *p, const char *rule, const char *key, const char *value, const char *why) {
        char err[256] = "";
        int r;

        r = policy_set(p, rule, key, value, err, sizeof(err));
        if (r != -EINVAL)
                fail_msg("[policy:%s] %s = %s: %d, expected -EINVAL", rule, key, value, r);
        if (!strstr(err, why))
                fail_msg("[policy:%s] %s = %s: error \"%s\" does not say \"%s\"", rule, key, value, err, why);
        /* Errors name the rule, so that a long file's culprit is found. */
        if (!strstr(err, rule))
                fail_msg("error \"%s\" does not name the rule %s", err, rule);
}

static void finish(Policy *p) {
        char err[256] = "";
        int r;

        r = policy_finish(p, err, sizeof(err));
        if (r != 0)
                fail_msg("policy_finish: %d (%s)", r, err);
}

/* A uid with a primary gid and up to two supplementary ones (0 ends the list). */
typedef struct Subject {
        uid_t uid;
        gid_t gids[3];
        PolicySubject s;
} Subject;

static Subject subject(uid_t uid, gid_t gid, gid_t sup1, gid_t sup2) {
        return (Subject) { .uid = uid, .gids = { gid, sup1, sup2 } };
}

/* The PolicySubject of @x, pointing into @x (so: no copies of a Subject after this). */
static const PolicySubject *ps(Subject *x) {
        x->s = (PolicySubject) {
                .uid = x->uid,
                .gids = x->gids,
                .n_gids = 1 + (x->gids[1] != 0) + (x->gids[2] != 0),
        };
        return &x->s;
}

static bool allows_subject(const Policy *p, Subject *x, PolicyAction a, const char *target) {
        return policy_allows(p, ps(x), a, target, NULL, NULL);
}

static bool allows(const Policy *p, uid_t uid, gid_t gid, PolicyAction a, const char *target) {
        Subject x = subject(uid, gid, 0, 0);

        return allows_subject(p, &x, a, target);
}

/* --- Building and parsing errors ------------------------------------------ */

static void test_empty(void **state) {
        Policy *p = *state;
        Subject root = subject(0, 0, 0, 0);

        assert_int_equal(policy_n_rules(p), 0);
        assert_int_equal(policy_n_rules(NULL), 0);
        finish(p);
        /* An empty policy allows nothing, not even to root: privilege is access.c's business. */
        for (PolicyAction a = 0; a < _POLICY_ACTION_MAX; a++)
                assert_false(allows_subject(p, &root, a, a == POLICY_CALL ? "a.b:C" : "a"));
        assert_false(policy_allows(NULL, ps(&root), POLICY_OWN, "org.example.A", NULL, NULL));
        assert_null(policy_free(NULL));
}

static void test_unknown_key(void **state) {
        Policy *p = *state;

        set_fails(p, "r", "owns", "org.example.A", "unknown key owns");
        set_fails(p, "r", "Own", "org.example.A", "unknown key Own");
        set_fails(p, "r", "max_clients", "10", "unknown key max_clients");
        set_fails(p, "r", "user", "4242", "unknown key user");
        set_fails(p, "r", "", "x", "unknown key");
}

static void test_bad_items(void **state) {
        Policy *p = *state;
        char name[300];

        /* Topics and patterns follow the bus grammar. */
        set_fails(p, "r", "publish", "sensors//temp", "invalid entry \"sensors//temp\"");
        set_fails(p, "r", "publish", "sensors/#/temp", "invalid entry");
        set_fails(p, "r", "publish", "sensors/te+mp", "invalid entry");
        set_fails(p, "r", "subscribe", "/sensors", "invalid entry");
        set_fails(p, "r", "subscribe", "sensors/", "invalid entry");
        set_fails(p, "r", "subscribe", "a/#x", "invalid entry");
        /* One bad item spoils the line, wherever it stands. */
        set_fails(p, "r", "subscribe", "good/# bad//one", "invalid entry \"bad//one\"");

        /* call wants "destination:member", neither side empty. */
        set_fails(p, "r", "call", "org.example.A", "invalid entry \"org.example.A\"");
        set_fails(p, "r", "call", ":Echo", "invalid entry");
        set_fails(p, "r", "call", "org.example.A:", "invalid entry");
        set_fails(p, "r", "call", ":", "invalid entry");

        /* own: any glob up to 255 bytes. */
        memset(name, 'a', 256);
        name[256] = 0;
        set_fails(p, "r", "own", name, "invalid entry");
        name[255] = 0;
        set(p, "r", "own", name);

        set_fails(p, "r", "monitor", "maybe", "expected yes or no");
        set_fails(p, "r", "monitor", "", "expected yes or no");
        set_fails(p, "r", "monitor", "yes no", "expected yes or no");

        /* What is valid. */
        set(p, "r", "publish", "sensors/# news/+/public a");
        set(p, "r", "subscribe", "# + +/+ a/+/#");
        set(p, "r", "call", ":42:Echo *:* org.example.*:Get*");
}

static void test_unknown_user_group(void **state) {
        Policy *p = *state;

        set_fails(p, "r", "users", NO_SUCH_USER, "no such user \"" NO_SUCH_USER "\"");
        set_fails(p, "r", "users", "4242 " NO_SUCH_USER, "no such user");
        set_fails(p, "r", "groups", NO_SUCH_GROUP, "no such group \"" NO_SUCH_GROUP "\"");
        /* "*" means every user; there is no such shorthand for groups. */
        set_fails(p, "r", "groups", "*", "no such group \"*\"");
        /* Numbers must be whole uids, not -1 (the kernel's "no uid") or beyond. */
        set_fails(p, "r", "users", "4242x", "no such user");
        set_fails(p, "r", "users", "-1", "no such user");
        set_fails(p, "r", "users", "4294967295", "no such user");
        set_fails(p, "r", "users", "99999999999", "no such user");
        set_fails(p, "r", "groups", "-5", "no such group");
}

static void test_names_resolved(void **state) {
        Policy *p = *state;

        /* root exists everywhere; numbers need no passwd entry. */
        set(p, "byname", "users", "root");
        set(p, "byname", "own", "org.example.Root");
        set(p, "bygroup", "groups", "root");
        set(p, "bygroup", "own", "org.example.Wheel");
        set(p, "bynumber", "users", "4242");
        set(p, "bynumber", "own", "org.example.Number");
        finish(p);

        assert_true(allows(p, 0, 100, POLICY_OWN, "org.example.Root"));
        assert_true(allows(p, 100, 0, POLICY_OWN, "org.example.Wheel"));
        assert_true(allows(p, 4242, 4242, POLICY_OWN, "org.example.Number"));
        assert_false(allows(p, 4243, 4242, POLICY_OWN, "org.example.Number"));
}

static void test_finish_needs_users(void **state) {
        Policy *p = *state;
        char err[256] = "";

        set(p, "ok", "users", "4242");
        set(p, "nobody", "own", "org.example.A");
        assert_int_equal(policy_finish(p, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "[policy:nobody]"));
        assert_non_null(strstr(err, "names no users or groups"));

        /* An empty list names nobody either. */
        set(p, "nobody", "users", "");
        set(p, "nobody", "groups", " , ");
        assert_int_equal(policy_finish(p, err, sizeof(err)), -EINVAL);

        set(p, "nobody", "groups", "5555");
        finish(p);
        assert_int_equal(policy_n_rules(p), 2);
}

static void test_finish_users_only(void **state) {
        Policy *p = *state;
        Subject x = subject(4343, 4343, 0, 0);

        /* A rule with users and no allowances is valid: it allows nothing. */
        set(p, "bob", "users", "4343");
        finish(p);
        assert_int_equal(policy_n_rules(p), 1);
        for (PolicyAction a = 0; a < _POLICY_ACTION_MAX; a++)
                assert_false(allows_subject(p, &x, a, a == POLICY_CALL ? "a.b:C" : "a"));
}

static void test_item_limit(void **state) {
        Policy *p = *state;
        char *value;
        size_t n = 0;

        /* 256 items per key, counted across repeated keys. */
        value = malloc(256 * 16);
        assert_non_null(value);
        for (int i = 0; i < 256; i++)
                n += (size_t)sprintf(value + n, "%s%d", i ? " " : "", 10000 + i);
        set(p, "many", "users", value);
        set_fails(p, "many", "users", "20000", "more than 256 users");
        /* Groups have a limit of their own. */
        set(p, "many", "groups", value);
        set_fails(p, "many", "groups", "1", "more than 256 groups");

        n = 0;
        for (int i = 0; i < 256; i++)
                n += (size_t)sprintf(value + n, "%sa%d.b", i ? "," : "", i);
        set(p, "many", "own", value);
        set_fails(p, "many", "own", "z.z", "more than 256 entries");
        finish(p);
        assert_true(allows(p, 10255, 1, POLICY_OWN, "a255.b"));
        assert_false(allows(p, 10256, 1, POLICY_OWN, "a255.b"));
        free(value);
}

static void test_rule_limit(void **state) {
        Policy *p = *state;
        char name[32], err[256] = "";

        for (int i = 0; i < 1024; i++) {
                snprintf(name, sizeof(name), "rule%d", i);
                set(p, name, "users", "4242");
        }
        assert_int_equal(policy_n_rules(p), 1024);
        assert_int_equal(policy_set(p, "one-too-many", "users", "4242", err, sizeof(err)), -ENOMEM);
        assert_non_null(strstr(err, "more than 1024 rules"));
        /* Existing rules still take lines. */
        set(p, "rule7", "own", "org.example.Seven");
        assert_int_equal(policy_n_rules(p), 1024);
        finish(p);
        assert_true(allows(p, 4242, 4242, POLICY_OWN, "org.example.Seven"));
}

static void test_lists_add_up(void **state) {
        Policy *p = *state;

        set(p, "r", "users", "4242,4343\t4444");
        set(p, "r", "users", "4545");
        set(p, "r", "own", "a.one , a.two");
        set(p, "r", "own", "a.three");
        /* A later line of the same rule adds to it; it does not start a new one. */
        assert_int_equal(policy_n_rules(p), 1);
        finish(p);

        for (uid_t u = 4242; u <= 4545; u++) {
                bool listed = u == 4242 || u == 4343 || u == 4444 || u == 4545;

                assert_int_equal(allows(p, u, 1, POLICY_OWN, "a.one"), listed);
                assert_int_equal(allows(p, u, 1, POLICY_OWN, "a.two"), listed);
                assert_int_equal(allows(p, u, 1, POLICY_OWN, "a.three"), listed);
        }
        assert_false(allows(p, 4242, 1, POLICY_OWN, "a.four"));
}

/* --- Decisions -------------------------------------------------------------- */

static void test_subjects(void **state) {
        Policy *p = *state;
        Subject alice = subject(4242, 4242, 0, 0);
        Subject staff_sup = subject(4600, 4600, 7000, 5555);
        Subject staff_primary = subject(4601, 5555, 0, 0);
        Subject other = subject(4444, 4444, 7000, 0);
        const char *rule = "unset";

        set(p, "alice", "users", "4242");
        set(p, "alice", "own", "org.example.Alice");
        set(p, "staff", "groups", "5555");
        set(p, "staff", "own", "org.example.Staff");
        set(p, "everyone", "users", "*");
        set(p, "everyone", "subscribe", "public/#");
        finish(p);

        assert_true(allows_subject(p, &alice, POLICY_OWN, "org.example.Alice"));
        assert_false(allows_subject(p, &alice, POLICY_OWN, "org.example.Staff"));
        /* A group rule applies through a supplementary gid as well as the primary one. */
        assert_true(allows_subject(p, &staff_sup, POLICY_OWN, "org.example.Staff"));
        assert_true(allows_subject(p, &staff_primary, POLICY_OWN, "org.example.Staff"));
        assert_false(allows_subject(p, &staff_sup, POLICY_OWN, "org.example.Alice"));
        assert_false(allows_subject(p, &other, POLICY_OWN, "org.example.Staff"));
        /* A uid is not a gid: uid 5555 is not in group 5555. */
        assert_false(allows(p, 5555, 1, POLICY_OWN, "org.example.Staff"));
        /* "*" takes everyone, root and unknown uids alike. */
        assert_true(allows_subject(p, &other, POLICY_SUBSCRIBE, "public/news"));
        assert_true(allows(p, 0, 0, POLICY_SUBSCRIBE, "public/#"));
        assert_true(allows(p, 4000000000u, 4000000000u, POLICY_SUBSCRIBE, "public"));

        /* ret_rule names the deciding rule, and is left alone on a denial. */
        assert_true(policy_allows(p, ps(&alice), POLICY_OWN, "org.example.Alice", NULL, &rule));
        assert_string_equal(rule, "alice");
        assert_true(policy_allows(p, ps(&alice), POLICY_SUBSCRIBE, "public/+", NULL, &rule));
        assert_string_equal(rule, "everyone");
        rule = "unset";
        assert_false(policy_allows(p, ps(&alice), POLICY_OWN, "org.example.Staff", NULL, &rule));
        assert_string_equal(rule, "unset");
}

static void test_actions_separate(void **state) {
        Policy *p = *state;

        /* The same string under each key allows that action only. */
        set(p, "r", "users", "4242");
        set(p, "r", "own", "x");
        set(p, "o", "users", "4343");
        set(p, "o", "publish", "x");
        set(p, "s", "users", "4444");
        set(p, "s", "subscribe", "x");
        set(p, "c", "users", "4545");
        set(p, "c", "call", "x:x");
        finish(p);

        assert_true(allows(p, 4242, 1, POLICY_OWN, "x"));
        assert_false(allows(p, 4242, 1, POLICY_PUBLISH, "x"));
        assert_false(allows(p, 4242, 1, POLICY_SUBSCRIBE, "x"));
        assert_false(allows(p, 4242, 1, POLICY_CALL, "x:x"));
        assert_false(allows(p, 4242, 1, POLICY_MONITOR, NULL));

        assert_true(allows(p, 4343, 1, POLICY_PUBLISH, "x"));
        assert_false(allows(p, 4343, 1, POLICY_OWN, "x"));
        assert_false(allows(p, 4343, 1, POLICY_SUBSCRIBE, "x"));

        assert_true(allows(p, 4444, 1, POLICY_SUBSCRIBE, "x"));
        assert_false(allows(p, 4444, 1, POLICY_PUBLISH, "x"));

        assert_true(allows(p, 4545, 1, POLICY_CALL, "x:x"));
        assert_false(allows(p, 4545, 1, POLICY_OWN, "x"));
}

static void test_own_globs(void **state) {
        Policy *p = *state;

        set(p, "r", "users", "4242");
        set(p, "r", "own", "org.example.Exact org.example.Wild.* org.example.?ne org.example.[AB]x");
        finish(p);

        assert_true(allows(p, 4242, 1, POLICY_OWN, "org.example.Exact"));
        assert_false(allows(p, 4242, 1, POLICY_OWN, "org.example.Exact2"));
        assert_false(allows(p, 4242, 1, POLICY_OWN, "org.example.exact"));
        assert_false(allows(p, 4242, 1, POLICY_OWN, "org.example"));
        /* fnmatch() without FNM_PATHNAME/FNM_PERIOD: '*' crosses dots. */
        assert_true(allows(p, 4242, 1, POLICY_OWN, "org.example.Wild.A"));
        assert_true(allows(p, 4242, 1, POLICY_OWN, "org.example.Wild.A.B"));
        assert_false(allows(p, 4242, 1, POLICY_OWN, "org.example.Wild"));
        assert_false(allows(p, 4242, 1, POLICY_OWN, "org.example.WildA"));
        assert_true(allows(p, 4242, 1, POLICY_OWN, "org.example.One"));
        assert_false(allows(p, 4242, 1, POLICY_OWN, "org.example.Bone"));
        assert_true(allows(p, 4242, 1, POLICY_OWN, "org.example.Ax"));
        assert_true(allows(p, 4242, 1, POLICY_OWN, "org.example.Bx"));
        assert_false(allows(p, 4242, 1, POLICY_OWN, "org.example.Cx"));
}

static void test_call(void **state) {
        Policy *p = *state;
        const char *svc[] = { "org.example.Svc:Echo", NULL };
        const char *several[] = { "org.example.Other:GetThing", "org.example.Svc:GetThing", NULL };
        const char *set_several[] = { "org.example.Other:Set", "org.example.Svc:Set", NULL };
        const char *none[] = { NULL };
        Subject x = subject(4242, 4242, 0, 0), y = subject(4343, 4343, 0, 0);

        set(p, "r", "users", "4242");
        set(p, "r", "call", "org.example.Svc:Echo org.example.Svc:Get* *:Ping");
        finish(p);

        assert_true(allows(p, 4242, 1, POLICY_CALL, "org.example.Svc:Echo"));
        assert_true(allows(p, 4242, 1, POLICY_CALL, "org.example.Svc:GetThing"));
        assert_true(allows(p, 4242, 1, POLICY_CALL, "org.example.Svc:Get"));
        assert_false(allows(p, 4242, 1, POLICY_CALL, "org.example.Svc:Set"));
        assert_false(allows(p, 4242, 1, POLICY_CALL, "org.example.Svc:Echo2"));
        assert_false(allows(p, 4242, 1, POLICY_CALL, "org.example.Other:Echo"));
        assert_true(allows(p, 4242, 1, POLICY_CALL, "org.example.Other:Ping"));
        assert_true(allows(p, 4242, 1, POLICY_CALL, ":42:Ping"));
        assert_false(allows(p, 4242, 1, POLICY_CALL, ":42:Echo"));

        /* By unique id: allowed when a name the callee owns is allowed. */
        assert_true(policy_allows(p, ps(&x), POLICY_CALL, ":42:Echo", svc, NULL));
        assert_true(policy_allows(p, ps(&x), POLICY_CALL, ":42:GetThing", several, NULL));
        assert_false(policy_allows(p, ps(&x), POLICY_CALL, ":42:Echo", none, NULL));
        assert_false(policy_allows(p, ps(&x), POLICY_CALL, ":42:Set", set_several, NULL));
        /* Aliases help only the subjects the rule applies to. */
        assert_false(policy_allows(p, ps(&y), POLICY_CALL, ":42:Echo", svc, NULL));
}

static void test_publish(void **state) {
        Policy *p = *state;

        set(p, "r", "users", "4242");
        set(p, "r", "publish", "sensors/# news/+/public exact/topic");
        finish(p);

        assert_true(allows(p, 4242, 1, POLICY_PUBLISH, "sensors"));
        assert_true(allows(p, 4242, 1, POLICY_PUBLISH, "sensors/kitchen"));
        assert_true(allows(p, 4242, 1, POLICY_PUBLISH, "sensors/kitchen/temp"));
        assert_false(allows(p, 4242, 1, POLICY_PUBLISH, "sensorsX"));
        assert_false(allows(p, 4242, 1, POLICY_PUBLISH, "other/sensors"));
        assert_true(allows(p, 4242, 1, POLICY_PUBLISH, "news/x/public"));
        assert_false(allows(p, 4242, 1, POLICY_PUBLISH, "news/x/private"));
        assert_false(allows(p, 4242, 1, POLICY_PUBLISH, "news/x/y/public"));
        assert_false(allows(p, 4242, 1, POLICY_PUBLISH, "news/public"));
        assert_true(allows(p, 4242, 1, POLICY_PUBLISH, "exact/topic"));
        assert_false(allows(p, 4242, 1, POLICY_PUBLISH, "exact/topic/more"));
        assert_false(allows(p, 4242, 1, POLICY_PUBLISH, "exact"));
}

static void test_subscribe(void **state) {
        Policy *p = *state;

        set(p, "r", "users", "4242");
        set(p, "r", "subscribe", "sensors/# alerts/+");
        finish(p);

        assert_true(allows(p, 4242, 1, POLICY_SUBSCRIBE, "sensors/#"));
        assert_true(allows(p, 4242, 1, POLICY_SUBSCRIBE, "sensors"));
        assert_true(allows(p, 4242, 1, POLICY_SUBSCRIBE, "sensors/+/temp"));
        assert_true(allows(p, 4242, 1, POLICY_SUBSCRIBE, "sensors/a/#"));
        assert_false(allows(p, 4242, 1, POLICY_SUBSCRIBE, "#"));
        assert_false(allows(p, 4242, 1, POLICY_SUBSCRIBE, "+/temp"));
        assert_false(allows(p, 4242, 1, POLICY_SUBSCRIBE, "+"));
        assert_true(allows(p, 4242, 1, POLICY_SUBSCRIBE, "alerts/+"));
        assert_true(allows(p, 4242, 1, POLICY_SUBSCRIBE, "alerts/fire"));
        assert_false(allows(p, 4242, 1, POLICY_SUBSCRIBE, "alerts/#"));
        assert_false(allows(p, 4242, 1, POLICY_SUBSCRIBE, "alerts"));
        assert_false(allows(p, 4242, 1, POLICY_SUBSCRIBE, "alerts/fire/now"));
        assert_false(allows(p, 4242, 1, POLICY_SUBSCRIBE, "alerts/+/+"));
}

static void test_monitor(void **state) {
        Policy *p = *state;
        static const struct {
                const char *value;
                bool yes;
        } values[] = {
                { "yes", true }, { "true", true }, { "1", true },
                { "no", false }, { "false", false }, { "0", false },
        };

        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
                char rule[16], uid[16];

                snprintf(rule, sizeof(rule), "m%zu", i);
                snprintf(uid, sizeof(uid), "%zu", 5100 + i);
                set(p, rule, "users", uid);
                set(p, rule, "monitor", values[i].value);
                assert_int_equal(allows(p, (uid_t)(5100 + i), 1, POLICY_MONITOR, NULL), values[i].yes);
        }
        /* Not mentioned means no; the last line for a rule wins. */
        set(p, "quiet", "users", "5002");
        set(p, "loud", "users", "5003");
        set(p, "loud", "monitor", "yes");
        set(p, "flip", "users", "5004");
        set(p, "flip", "monitor", "yes");
        set(p, "flip", "monitor", "no");
        finish(p);
        assert_false(allows(p, 5002, 1, POLICY_MONITOR, NULL));
        assert_true(allows(p, 5003, 1, POLICY_MONITOR, NULL));
        assert_false(allows(p, 5004, 1, POLICY_MONITOR, NULL));
}

static void test_any_rule_allows(void **state) {
        Policy *p = *state;
        Subject x = subject(4242, 4242, 5555, 0);
        const char *rule = NULL;

        /* Two rules apply; each allows something; neither takes away. */
        set(p, "by-user", "users", "4242");
        set(p, "by-user", "own", "org.example.User");
        set(p, "by-group", "groups", "5555");
        set(p, "by-group", "own", "org.example.Group");
        finish(p);

        assert_true(policy_allows(p, ps(&x), POLICY_OWN, "org.example.User", NULL, &rule));
        assert_string_equal(rule, "by-user");
        assert_true(policy_allows(p, ps(&x), POLICY_OWN, "org.example.Group", NULL, &rule));
        assert_string_equal(rule, "by-group");
        assert_false(policy_allows(p, ps(&x), POLICY_OWN, "org.example.Neither", NULL, NULL));
}

static void test_pattern_covers(void **state) {
        static const struct {
                const char *allowed;
                const char *pattern;
                bool covers;
        } cases[] = {
                /* '#' covers everything, itself included. */
                { "#", "#", true },
                { "#", "+", true },
                { "#", "a", true },
                { "#", "a/b/c", true },
                { "#", "+/+/#", true },

                /* 'a/#' covers 'a' and everything below, not '#' or siblings. */
                { "a/#", "a", true },
                { "a/#", "a/#", true },
                { "a/#", "a/b", true },
                { "a/#", "a/+", true },
                { "a/#", "a/+/b", true },
                { "a/#", "a/b/#", true },
                { "a/#", "#", false },
                { "a/#", "+", false },
                { "a/#", "+/b", false },
                { "a/#", "b", false },
                { "a/#", "ab", false },
                { "a/#", "b/a", false },

                /* '+' covers exactly one level, '+' included, not '#'. */
                { "+", "+", true },
                { "+", "a", true },
                { "+", "#", false },
                { "+", "a/b", false },
                { "+", "a/#", false },
                { "a/+", "a/b", true },
                { "a/+", "a/+", true },
                { "a/+", "a/#", false },
                { "a/+", "a", false },
                { "a/+", "a/b/c", false },
                { "+/b", "a/b", true },
                { "+/b", "+/b", true },
                { "+/b", "+/c", false },
                { "+/#", "a", true },
                { "+/#", "a/b/c", true },
                { "+/#", "#", false },
                { "a/+/#", "a/b", true },
                { "a/+/#", "a/+/c/d", true },
                { "a/+/#", "a", false },

                /* Literals cover only themselves. */
                { "a", "a", true },
                { "a", "+", false },
                { "a", "#", false },
                { "a", "b", false },
                { "a", "ab", false },
                { "ab", "a", false },
                { "a", "a/b", false },
                { "a", "a/#", false },
                { "a/b", "a/b", true },
                { "a/b", "a/+", false },
                { "a/b", "a", false },
                { "a/b/#", "a/+/c", false },
                { "sensors/kitchen", "sensors/kitchen", true },
                { "sensors/kitchen", "sensors/kitchenette", false },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                if (policy_pattern_covers(cases[i].allowed, cases[i].pattern) != cases[i].covers)
                        fail_msg("policy_pattern_covers(\"%s\", \"%s\") should be %s", cases[i].allowed,
                                 cases[i].pattern, cases[i].covers ? "true" : "false");
}

static void test_action_names(void **state) {
        assert_string_equal(policy_action_to_string(POLICY_OWN), "own");
        assert_string_equal(policy_action_to_string(POLICY_CALL), "call");
        assert_string_equal(policy_action_to_string(POLICY_PUBLISH), "publish");
        assert_string_equal(policy_action_to_string(POLICY_SUBSCRIBE), "subscribe");
        assert_string_equal(policy_action_to_string(POLICY_MONITOR), "monitor");
        assert_string_equal(policy_action_to_string(_POLICY_ACTION_MAX), "?");
}

#define POLICY_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup_policy, teardown_policy)

int main(void) {
        const struct CMUnitTest tests[] = {
                POLICY_TEST(test_empty),
                POLICY_TEST(test_unknown_key),
                POLICY_TEST(test_bad_items),
                POLICY_TEST(test_unknown_user_group),
                POLICY_TEST(test_names_resolved),
                POLICY_TEST(test_finish_needs_users),
                POLICY_TEST(test_finish_users_only),
                POLICY_TEST(test_item_limit),
                POLICY_TEST(test_rule_limit),
                POLICY_TEST(test_lists_add_up),
                POLICY_TEST(test_subjects),
                POLICY_TEST(test_actions_separate),
                POLICY_TEST(test_own_globs),
                POLICY_TEST(test_call),
                POLICY_TEST(test_publish),
                POLICY_TEST(test_subscribe),
                POLICY_TEST(test_monitor),
                POLICY_TEST(test_any_rule_allows),
                POLICY_TEST(test_pattern_covers),
                cmocka_unit_test(test_action_names),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
