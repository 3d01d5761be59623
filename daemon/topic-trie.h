#pragma once

/*
 * Subscriptions of all peers, as a trie of topic levels.
 *
 * A pattern's literal levels are trie edges kept in a per-node hash table;
 * a '+' level is a single dedicated edge; a final '#' hangs the subscription
 * on the node of its parent level, in a list of its own. Matching a topic
 * follows its literal level and the '+' edge at each node and collects the
 * '#' lists on the way, so its cost depends on the topic's depth and on the
 * wildcard subscriptions along it, not on the number of unrelated
 * subscriptions. Nodes are freed as soon as no subscription needs them.
 *
 * Results agree with topic_match() (common/topic.c); a peer with several
 * matching patterns is reported once per pattern, and callers deduplicate.
 */

#include <stddef.h>

#include "htable.h"
#include "list.h"

typedef struct TopicNode TopicNode;

typedef struct Subscription {
        TopicNode *node;
        List node_link;         /* in node->exact or node->rest */
        List owner_link;        /* in the owner's list, managed by the owner */
        void *owner;
        char pattern[];
} Subscription;

typedef struct TopicTrie {
        TopicNode *root;
        size_t n_subscriptions;
        size_t n_nodes;
} TopicTrie;

typedef void (*TopicMatchFn)(Subscription *s, void *userdata);

int topic_trie_init(TopicTrie *t);
void topic_trie_deinit(TopicTrie *t);
int topic_trie_subscribe(TopicTrie *t, const char *pattern, void *owner, Subscription **ret);
Subscription *topic_trie_unsubscribe(TopicTrie *t, Subscription *s);
void topic_trie_match(TopicTrie *t, const char *topic, TopicMatchFn fn, void *userdata);
