/*
 * Fuzz target: the topic and bus-name grammars (common/topic.c,
 * common/bus-name.c) and the broker's topic trie (daemon/topic-trie.c).
 *
 * The input is a list of strings separated by NUL bytes. Each string goes
 * through every grammar check, and the checks must agree with each other
 * (a topic is a pattern that matches itself, a well-known name makes a
 * valid "plexus/names/<name>" topic, ...). Every valid pattern is then
 * subscribed in a trie and every valid topic published: the trie must call
 * back exactly the subscriptions whose pattern topic_match() matches, each
 * once; the same again after half of them were unsubscribed, and the trie
 * must be empty in the end. Last, the policy's pattern covering
 * (daemon/policy.c, "subscribe = a/#" allows subscribing to "a/+/b"): a
 * pattern covers itself, and a covered pattern matches no topic that the
 * covering one does not.
 */

#include <string.h>

#include "bus-name.h"
#include "frame.h"
#include "fuzz.h"
#include "policy.h"
#include "topic-trie.h"
#include "topic.h"
#include "util.h"

#define STRINGS_MAX 48

/* TOPIC_NAMES_PREFIX of daemon/broker.h, which this target does not link. */
#define TOPIC_NAMES_PREFIX_FUZZ "plexus/names/"

typedef struct Sub {
        Subscription *s;
        const char *pattern;
        unsigned n_calls;
} Sub;

static void count_call(Subscription *s, void *userdata) {
        Sub *sub = s->owner;

        (void)userdata;
        fuzz_check(sub->s == s);
        sub->n_calls++;
}

static void check_grammar(const char *s) {
        char topic[sizeof(TOPIC_NAMES_PREFIX_FUZZ) + 512];
        bool topic_ok = topic_is_valid(s), pattern_ok = topic_pattern_is_valid(s);
        bool unique = bus_name_is_unique_id(s), well_known = bus_name_is_well_known(s);

        if (topic_ok) {
                fuzz_check(pattern_ok);
                fuzz_check(strlen(s) <= TOPIC_MAX);
                fuzz_check(!strchr(s, '+') && !strchr(s, '#'));
                fuzz_check(topic_match(s, s));
                fuzz_check(topic_match("#", s));
                fuzz_check(topic_is_reserved(s) == (strcmp(s, "plexus") == 0 || strncmp(s, "plexus/", 7) == 0));
        }
        if (pattern_ok)
                fuzz_check(strlen(s) > 0 && strlen(s) <= TOPIC_MAX);

        fuzz_check(!(unique && well_known));
        if (unique) {
                fuzz_check(strlen(s) <= 21);
                fuzz_check(strlen(s) <= FRAME_NAME_MAX);
        }
        if (well_known) {
                /* The broker publishes every change of owner on this topic. */
                fuzz_check(strlen(s) <= BUS_NAME_MAX);
                snprintf(topic, sizeof(topic), "%s%s", TOPIC_NAMES_PREFIX_FUZZ, s);
                fuzz_check(topic_is_valid(topic));
                fuzz_check(strncmp(s, "plexus.", 7) != 0);
        }
}

static void check_trie(TopicTrie *t, Sub *subs, size_t n_subs, char **topics, size_t n_topics) {
        for (size_t i = 0; i < n_topics; i++) {
                for (size_t k = 0; k < n_subs; k++)
                        subs[k].n_calls = 0;
                topic_trie_match(t, topics[i], count_call, NULL);
                for (size_t k = 0; k < n_subs; k++) {
                        if (!subs[k].s)
                                fuzz_check(subs[k].n_calls == 0);
                        else
                                fuzz_check(subs[k].n_calls == (topic_match(subs[k].pattern, topics[i]) ? 1u : 0u));
                }
        }
}

/* Quadratic and cubic: the first few patterns and topics only. */
#define COVER_MAX 12

static void check_covers(char **patterns, size_t n_patterns, char **topics, size_t n_topics) {
        n_patterns = MIN(n_patterns, COVER_MAX);
        n_topics = MIN(n_topics, COVER_MAX);
        for (size_t a = 0; a < n_patterns; a++) {
                fuzz_check(policy_pattern_covers(patterns[a], patterns[a]));
                for (size_t p = 0; p < n_patterns; p++) {
                        if (!policy_pattern_covers(patterns[a], patterns[p]))
                                continue;
                        for (size_t t = 0; t < n_topics; t++)
                                if (topic_match(patterns[p], topics[t]))
                                        fuzz_check(topic_match(patterns[a], topics[t]));
                }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *strings[STRINGS_MAX], *topics[STRINGS_MAX], *patterns[STRINGS_MAX];
        Sub subs[STRINGS_MAX] = {};
        size_t n = 0, n_topics = 0, n_subs = 0;
        TopicTrie t;
        char *copy;

        /* NUL-terminated pieces; the last one ends with the input. */
        copy = malloc(size + 1);
        fuzz_check(copy);
        memcpy(copy, data, size);
        copy[size] = 0;
        for (size_t i = 0; i <= size && n < STRINGS_MAX; i++) {
                strings[n++] = copy + i;
                i += strlen(copy + i);
        }

        for (size_t i = 0; i < n; i++) {
                check_grammar(strings[i]);
                if (topic_is_valid(strings[i]))
                        topics[n_topics++] = strings[i];
        }

        fuzz_check(topic_trie_init(&t) == 0);
        for (size_t i = 0; i < n; i++) {
                if (!topic_pattern_is_valid(strings[i]))
                        continue;
                patterns[n_subs] = strings[i];
                subs[n_subs].pattern = strings[i];
                fuzz_check(topic_trie_subscribe(&t, strings[i], &subs[n_subs], &subs[n_subs].s) == 0);
                n_subs++;
        }
        fuzz_check(t.n_subscriptions == n_subs);
        check_trie(&t, subs, n_subs, topics, n_topics);
        check_covers(patterns, n_subs, topics, n_topics);

        /* Every other one goes: shared nodes must survive for the rest. */
        for (size_t k = 0; k < n_subs; k += 2) {
                topic_trie_unsubscribe(&t, subs[k].s);
                subs[k].s = NULL;
        }
        check_trie(&t, subs, n_subs, topics, n_topics);

        for (size_t k = 1; k < n_subs; k += 2) {
                topic_trie_unsubscribe(&t, subs[k].s);
                subs[k].s = NULL;
        }
        fuzz_check(t.n_subscriptions == 0);
        fuzz_check(t.n_nodes == 0);
        topic_trie_deinit(&t);
        free(copy);
        return 0;
}
