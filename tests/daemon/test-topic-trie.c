/*
 * Unit tests for the subscription trie (daemon/topic-trie.c).
 *
 * Every result of topic_trie_match() must agree with the reference matcher
 * topic_match() (common/topic.c): each matching subscription reported
 * exactly once, no unrelated one reported. Covers literal, '+' and '#'
 * patterns, an owner with several matching patterns (one report per
 * pattern), duplicate patterns, node accounting (n_nodes drops back to 0,
 * only the root left, once everything is unsubscribed) and a deterministic
 * randomized cross-check over a small alphabet of levels so that patterns
 * share nodes and collide often.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "topic-trie.h"
#include "topic.h"

/* What a test knows about one subscription; the trie hands it back as the owner. */
typedef struct Rec {
        Subscription *sub;
        void *owner;            /* the logical owner, for the several-patterns test */
        char pattern[TOPIC_MAX + 1];
        unsigned hits;
} Rec;

static int setup_trie(void **state) {
        TopicTrie *t = malloc(sizeof(*t));

        if (!t || topic_trie_init(t) < 0) {
                free(t);
                return -1;
        }
        *state = t;
        return 0;
}

static int teardown_trie(void **state) {
        TopicTrie *t = *state;

        /* Every test unsubscribes everything it subscribed. */
        assert_int_equal(t->n_subscriptions, 0);
        assert_int_equal(t->n_nodes, 0);
        topic_trie_deinit(t);
        assert_null(t->root);
        free(t);
        return 0;
}

static void count_hit(Subscription *s, void *userdata) {
        Rec *r = s->owner;

        /* The owner pointer and the subscription come back unchanged. */
        assert_ptr_equal(r->sub, s);
        r->hits++;
        if (userdata)
                (*(unsigned *)userdata)++;
}

static void rec_subscribe(TopicTrie *t, Rec *r, const char *pattern) {
        size_t before = t->n_subscriptions;

        assert_true(topic_pattern_is_valid(pattern));
        assert_true(strlen(pattern) < sizeof(r->pattern));
        strcpy(r->pattern, pattern);
        r->hits = 0;
        r->sub = NULL;
        assert_int_equal(topic_trie_subscribe(t, pattern, r, &r->sub), 0);
        assert_non_null(r->sub);
        assert_ptr_equal(r->sub->owner, r);
        assert_string_equal(r->sub->pattern, pattern);
        assert_false(list_is_linked(&r->sub->owner_link));
        assert_int_equal(t->n_subscriptions, before + 1);
}

static void rec_unsubscribe(TopicTrie *t, Rec *r) {
        size_t before = t->n_subscriptions;

        assert_non_null(r->sub);
        assert_null(topic_trie_unsubscribe(t, r->sub));
        r->sub = NULL;
        assert_int_equal(t->n_subscriptions, before - 1);
}

/*
 * Matches @topic and checks each live record against topic_match(): hit
 * exactly once if it matches, never otherwise. Returns the number of hits.
 */
static unsigned check_topic(TopicTrie *t, Rec *recs, size_t n_recs, const char *topic) {
        unsigned total = 0, want_total = 0;

        assert_true(topic_is_valid(topic));
        for (size_t i = 0; i < n_recs; i++)
                recs[i].hits = 0;

        topic_trie_match(t, topic, count_hit, &total);

        for (size_t i = 0; i < n_recs; i++) {
                unsigned want;

                if (!recs[i].sub) {
                        if (recs[i].hits)
                                fail_msg("unsubscribed \"%s\" reported for \"%s\"",
                                         recs[i].pattern, topic);
                        continue;
                }
                want = topic_match(recs[i].pattern, topic) ? 1 : 0;
                if (recs[i].hits != want)
                        fail_msg("pattern \"%s\", topic \"%s\": reported %u times, topic_match() says %u",
                                 recs[i].pattern, topic, recs[i].hits, want);
                want_total += want;
        }
        assert_int_equal(total, want_total);
        return total;
}

static int compare_strings(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The trie needs one node per distinct pattern prefix that ends in a level
 * other than a final '#'. Counts those over the live records.
 */
static size_t expected_nodes(const Rec *recs, size_t n_recs) {
        size_t n = 0, cap = 0, unique = 0;
        char **prefixes = NULL;

        for (size_t i = 0; i < n_recs; i++) {
                const char *p = recs[i].pattern;

                if (!recs[i].sub)
                        continue;
                for (const char *c = p;; c++) {
                        if (*c != '/' && *c != 0)
                                continue;
                        /* A final '#' hangs on its parent and needs no node. */
                        if (!(*c == 0 && c[-1] == '#')) {
                                if (n == cap) {
                                        cap = cap ? cap * 2 : 64;
                                        prefixes = realloc(prefixes, cap * sizeof(*prefixes));
                                        assert_non_null(prefixes);
                                }
                                prefixes[n] = strndup(p, (size_t)(c - p));
                                assert_non_null(prefixes[n]);
                                n++;
                        }
                        if (*c == 0)
                                break;
                }
        }

        if (n)
                qsort(prefixes, n, sizeof(*prefixes), compare_strings);
        for (size_t i = 0; i < n; i++)
                unique += i == 0 || strcmp(prefixes[i], prefixes[i - 1]) != 0;
        for (size_t i = 0; i < n; i++)
                free(prefixes[i]);
        free(prefixes);
        return unique;
}

static void test_trie_literal(void **state) {
        TopicTrie *t = *state;
        Rec r[1];

        rec_subscribe(t, &r[0], "a/b");
        assert_int_equal(t->n_nodes, 2);

        assert_int_equal(check_topic(t, r, 1, "a/b"), 1);
        assert_int_equal(check_topic(t, r, 1, "a"), 0);
        assert_int_equal(check_topic(t, r, 1, "a/b/c"), 0);
        assert_int_equal(check_topic(t, r, 1, "a/bc"), 0);
        assert_int_equal(check_topic(t, r, 1, "ab"), 0);
        assert_int_equal(check_topic(t, r, 1, "b/b"), 0);

        rec_unsubscribe(t, &r[0]);
        assert_int_equal(t->n_nodes, 0);
        assert_int_equal(check_topic(t, r, 1, "a/b"), 0);
}

static void test_trie_pattern_copied(void **state) {
        TopicTrie *t = *state;
        char pattern[] = "x/y";
        Subscription *s = NULL;
        unsigned hits = 0;
        Rec r = {};

        assert_int_equal(topic_trie_subscribe(t, pattern, &r, &s), 0);
        r.sub = s;
        /* The trie must not keep pointing into the caller's buffer. */
        pattern[0] = 'z';
        assert_string_equal(s->pattern, "x/y");
        topic_trie_match(t, "x/y", count_hit, &hits);
        assert_int_equal(hits, 1);
        hits = 0;
        topic_trie_match(t, "z/y", count_hit, &hits);
        assert_int_equal(hits, 0);

        assert_null(topic_trie_unsubscribe(t, s));
        assert_null(topic_trie_unsubscribe(t, NULL));
}

static const char *const table_patterns[] = {
        "#", "+", "a", "a/#", "a/+", "a/b", "a/b/#", "a/+/#", "a/+/c", "+/b", "+/+",
        "+/#", "+/+/#", "+/+/+", "ab", "ab/#", "b/#", "a/b/c", "a/bc", "sensors/+/temp",
        "plexus/#",
};

static const char *const table_topics[] = {
        "a", "b", "ab", "a/b", "a/c", "a/bc", "ab/b", "a/b/c", "a/b/d", "a/c/c",
        "b/b", "b/a", "a/b/c/d", "x/y/z", "sensors/kitchen/temp", "sensors/temp",
        "plexus", "plexus/peers", "plexusx",
};

static void test_trie_table(void **state) {
        const size_t n = sizeof(table_patterns) / sizeof(table_patterns[0]);
        TopicTrie *t = *state;
        Rec r[sizeof(table_patterns) / sizeof(table_patterns[0])];

        for (size_t i = 0; i < n; i++)
                rec_subscribe(t, &r[i], table_patterns[i]);
        assert_int_equal(t->n_nodes, expected_nodes(r, n));

        for (size_t i = 0; i < sizeof(table_topics) / sizeof(table_topics[0]); i++)
                check_topic(t, r, n, table_topics[i]);

        /* Spot checks that do not depend on topic_match() being right. */
        assert_int_equal(check_topic(t, r, n, "x/y/z"), 4);      /* #, +/#, +/+/#, +/+/+ */
        assert_int_equal(r[0].hits, 1);                          /* "#" */

        /* Remove in table order; results stay right at every step. */
        for (size_t i = 0; i < n; i++) {
                rec_unsubscribe(t, &r[i]);
                assert_int_equal(t->n_nodes, expected_nodes(r, n));
                for (size_t j = 0; j < sizeof(table_topics) / sizeof(table_topics[0]); j++)
                        check_topic(t, r, n, table_topics[j]);
        }
        assert_int_equal(t->n_nodes, 0);
}

static void test_trie_hash_and_parent(void **state) {
        TopicTrie *t = *state;
        Rec r[3];

        /* "a/#" matches "a" itself; "a/+/#" does not; "+/#" does. */
        rec_subscribe(t, &r[0], "a/#");
        rec_subscribe(t, &r[1], "a/+/#");
        rec_subscribe(t, &r[2], "+/#");
        assert_int_equal(check_topic(t, r, 3, "a"), 2);
        assert_int_equal(r[0].hits, 1);
        assert_int_equal(r[1].hits, 0);
        assert_int_equal(r[2].hits, 1);
        assert_int_equal(check_topic(t, r, 3, "a/b"), 3);
        assert_int_equal(check_topic(t, r, 3, "b"), 1);
        assert_int_equal(r[2].hits, 1);
        for (size_t i = 0; i < 3; i++)
                rec_unsubscribe(t, &r[i]);
}

static void test_trie_owner_several_patterns(void **state) {
        static const char *const mine[] = { "a/b", "a/+", "a/#", "#", "+/b", "+/+" };
        const size_t n = sizeof(mine) / sizeof(mine[0]);
        TopicTrie *t = *state;
        int owner_x, owner_y;
        Rec r[sizeof(mine) / sizeof(mine[0]) + 2];

        for (size_t i = 0; i < n; i++) {
                rec_subscribe(t, &r[i], mine[i]);
                r[i].owner = &owner_x;
        }
        /* Another owner with patterns that do not match "a/b". */
        rec_subscribe(t, &r[n], "c/d");
        r[n].owner = &owner_y;
        rec_subscribe(t, &r[n + 1], "a/b/+");
        r[n + 1].owner = &owner_y;

        /* Owner X is reported once per pattern, Y not at all. */
        assert_int_equal(check_topic(t, r, n + 2, "a/b"), n);
        for (size_t i = 0; i < n + 2; i++)
                assert_int_equal(r[i].hits, r[i].owner == &owner_x ? 1 : 0);
        assert_int_equal(r[n].hits, 0);
        assert_int_equal(r[n + 1].hits, 0);

        assert_int_equal(check_topic(t, r, n + 2, "c/d"), 3);  /* #, +/+, c/d */
        assert_int_equal(r[n].hits, 1);

        for (size_t i = 0; i < n + 2; i++)
                rec_unsubscribe(t, &r[i]);
}

static void test_trie_duplicate_pattern(void **state) {
        TopicTrie *t = *state;
        Rec r[4];

        rec_subscribe(t, &r[0], "a/+");
        rec_subscribe(t, &r[1], "a/+");
        rec_subscribe(t, &r[2], "a/#");
        rec_subscribe(t, &r[3], "a/#");
        assert_int_equal(t->n_nodes, 2);
        assert_int_equal(check_topic(t, r, 4, "a/x"), 4);

        /* Dropping one copy keeps the other and its nodes. */
        rec_unsubscribe(t, &r[0]);
        rec_unsubscribe(t, &r[3]);
        assert_int_equal(t->n_nodes, 2);
        assert_int_equal(check_topic(t, r, 4, "a/x"), 2);
        assert_int_equal(r[1].hits, 1);
        assert_int_equal(r[2].hits, 1);

        rec_unsubscribe(t, &r[1]);
        assert_int_equal(t->n_nodes, 1);
        assert_int_equal(check_topic(t, r, 4, "a/x"), 1);
        rec_unsubscribe(t, &r[2]);
        assert_int_equal(t->n_nodes, 0);
}

static void test_trie_node_count(void **state) {
        TopicTrie *t = *state;
        Rec r[6];

        rec_subscribe(t, &r[0], "a/b/c");
        assert_int_equal(t->n_nodes, 3);
        rec_subscribe(t, &r[1], "a/b/d");
        assert_int_equal(t->n_nodes, 4);
        rec_subscribe(t, &r[2], "a/+/c");
        assert_int_equal(t->n_nodes, 6);
        rec_subscribe(t, &r[3], "a/#");
        assert_int_equal(t->n_nodes, 6);
        rec_subscribe(t, &r[4], "#");
        assert_int_equal(t->n_nodes, 6);
        rec_subscribe(t, &r[5], "+");
        assert_int_equal(t->n_nodes, 7);

        /* Removing a leaf frees only the nodes no other pattern needs. */
        rec_unsubscribe(t, &r[0]);
        assert_int_equal(t->n_nodes, 6);
        rec_unsubscribe(t, &r[2]);
        assert_int_equal(t->n_nodes, 4);
        rec_unsubscribe(t, &r[4]);
        assert_int_equal(t->n_nodes, 4);
        rec_unsubscribe(t, &r[1]);
        assert_int_equal(t->n_nodes, 2);        /* "a" for "a/#", "+" */
        assert_int_equal(check_topic(t, r, 6, "a/b/d"), 1);
        rec_unsubscribe(t, &r[3]);
        assert_int_equal(t->n_nodes, 1);
        rec_unsubscribe(t, &r[5]);
        assert_int_equal(t->n_nodes, 0);
        assert_int_equal(check_topic(t, r, 6, "a"), 0);
}

static void test_trie_deep(void **state) {
        char p[4 * TOPIC_LEVELS_MAX], q[4 * TOPIC_LEVELS_MAX], topic[4 * TOPIC_LEVELS_MAX];
        TopicTrie *t = *state;
        Rec r[2];

        p[0] = q[0] = topic[0] = 0;
        for (unsigned i = 0; i < TOPIC_LEVELS_MAX; i++) {
                strcat(topic, i ? "/l" : "l");
                strcat(p, i ? "/+" : "+");
                strcat(q, i + 1 == TOPIC_LEVELS_MAX ? "/#" : i ? "/l" : "l");
        }
        rec_subscribe(t, &r[0], p);
        rec_subscribe(t, &r[1], q);
        assert_int_equal(t->n_nodes, 2 * TOPIC_LEVELS_MAX - 1);
        assert_int_equal(check_topic(t, r, 2, topic), 2);
        assert_int_equal(check_topic(t, r, 2, "l/l"), 0);
        rec_unsubscribe(t, &r[0]);
        rec_unsubscribe(t, &r[1]);
}

/* xorshift64: deterministic on every platform. */
static uint64_t next_random(uint64_t *x) {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        return *x;
}

static void random_pattern(uint64_t *x, char *buf) {
        static const char *const levels[] = { "a", "b", "c", "+", "#" };
        unsigned n = 1 + next_random(x) % 4;

        buf[0] = 0;
        for (unsigned i = 0; i < n; i++) {
                /* '#' only as the last level; elsewhere draw again among the others. */
                unsigned k = next_random(x) % (i + 1 == n ? 5 : 4);

                if (i)
                        strcat(buf, "/");
                strcat(buf, levels[k]);
        }
}

static void random_topic(uint64_t *x, char *buf) {
        static const char *const levels[] = { "a", "b", "c" };
        unsigned n = 1 + next_random(x) % 5;

        buf[0] = 0;
        for (unsigned i = 0; i < n; i++) {
                if (i)
                        strcat(buf, "/");
                strcat(buf, levels[next_random(x) % 3]);
        }
}

#define N_RANDOM_SUBS 2000
#define N_RANDOM_TOPICS 600

static void check_random_topics(TopicTrie *t, Rec *recs, uint64_t *x) {
        unsigned total = 0;
        char topic[64];

        for (unsigned i = 0; i < N_RANDOM_TOPICS; i++) {
                random_topic(x, topic);
                total += check_topic(t, recs, N_RANDOM_SUBS, topic);
        }
        /* A broken generator would make the cross-check vacuous. */
        if (t->n_subscriptions > 100)
                assert_true(total > N_RANDOM_TOPICS);
}

static void test_trie_random(void **state) {
        TopicTrie *t = *state;
        uint64_t x = 0x2545f4914f6cdd1dull;
        Rec *recs = calloc(N_RANDOM_SUBS, sizeof(*recs));
        size_t *order = calloc(N_RANDOM_SUBS, sizeof(*order));
        char pattern[64];

        assert_non_null(recs);
        assert_non_null(order);

        for (size_t i = 0; i < N_RANDOM_SUBS; i++) {
                random_pattern(&x, pattern);
                rec_subscribe(t, &recs[i], pattern);
        }
        assert_int_equal(t->n_nodes, expected_nodes(recs, N_RANDOM_SUBS));
        check_random_topics(t, recs, &x);

        /* Drop a random half, check, and subscribe new patterns in their place. */
        for (size_t i = 0; i < N_RANDOM_SUBS; i++)
                if (next_random(&x) % 2)
                        rec_unsubscribe(t, &recs[i]);
        assert_int_equal(t->n_nodes, expected_nodes(recs, N_RANDOM_SUBS));
        check_random_topics(t, recs, &x);

        for (size_t i = 0; i < N_RANDOM_SUBS; i++) {
                if (recs[i].sub)
                        continue;
                random_pattern(&x, pattern);
                rec_subscribe(t, &recs[i], pattern);
        }
        assert_int_equal(t->n_subscriptions, N_RANDOM_SUBS);
        assert_int_equal(t->n_nodes, expected_nodes(recs, N_RANDOM_SUBS));
        check_random_topics(t, recs, &x);

        /* Unsubscribe everything in a shuffled order: only the root is left. */
        for (size_t i = 0; i < N_RANDOM_SUBS; i++)
                order[i] = i;
        for (size_t i = N_RANDOM_SUBS - 1; i > 0; i--) {
                size_t j = next_random(&x) % (i + 1), tmp = order[i];

                order[i] = order[j];
                order[j] = tmp;
        }
        for (size_t i = 0; i < N_RANDOM_SUBS; i++) {
                rec_unsubscribe(t, &recs[order[i]]);
                if (i % 250 == 0) {
                        assert_int_equal(t->n_nodes, expected_nodes(recs, N_RANDOM_SUBS));
                        check_topic(t, recs, N_RANDOM_SUBS, "a/b/c");
                }
        }
        assert_int_equal(t->n_subscriptions, 0);
        assert_int_equal(t->n_nodes, 0);

        free(order);
        free(recs);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_trie_literal, setup_trie, teardown_trie),
                cmocka_unit_test_setup_teardown(test_trie_pattern_copied, setup_trie, teardown_trie),
                cmocka_unit_test_setup_teardown(test_trie_table, setup_trie, teardown_trie),
                cmocka_unit_test_setup_teardown(test_trie_hash_and_parent, setup_trie, teardown_trie),
                cmocka_unit_test_setup_teardown(test_trie_owner_several_patterns, setup_trie, teardown_trie),
                cmocka_unit_test_setup_teardown(test_trie_duplicate_pattern, setup_trie, teardown_trie),
                cmocka_unit_test_setup_teardown(test_trie_node_count, setup_trie, teardown_trie),
                cmocka_unit_test_setup_teardown(test_trie_deep, setup_trie, teardown_trie),
                cmocka_unit_test_setup_teardown(test_trie_random, setup_trie, teardown_trie),
        };

        return cmocka_run_group_tests_name("Topic trie", tests, NULL, NULL);
}
