/*
 * Topic trie (see topic-trie.h). Patterns and topics are validated by the
 * caller (topic_pattern_is_valid(), topic_is_valid()), so the level walking
 * here does not re-check the grammar.
 */

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "topic-trie.h"
#include "util.h"

struct TopicNode {
        TopicNode *parent;
        HNode hnode;            /* in parent->children, unless this is a '+' edge */
        HTable children;        /* literal levels */
        TopicNode *plus;        /* the '+' edge */
        List exact;             /* subscriptions whose pattern ends here */
        List rest;              /* subscriptions of "<this node>/#" */
        size_t n_users;         /* subscriptions here and below: the node lives while > 0 */
        size_t level_len;
        char level[];
};

static int node_new(TopicNode **ret, TopicNode *parent, const char *level, size_t len) {
        TopicNode *n;

        n = calloc(1, sizeof(*n) + len + 1);
        if (!n)
                return -ENOMEM;
        n->parent = parent;
        list_init(&n->exact);
        list_init(&n->rest);
        memcpy(n->level, level, len);
        n->level_len = len;
        *ret = n;
        return 0;
}

/**
 * topic_trie_init() - create an empty trie
 *
 * Return: 0 or -ENOMEM.
 */
int topic_trie_init(TopicTrie *t) {
        *t = (TopicTrie) {};
        return node_new(&t->root, NULL, "", 0);
}

/**
 * topic_trie_deinit() - free the trie; all subscriptions must be gone
 */
void topic_trie_deinit(TopicTrie *t) {
        if (!t->root)
                return;
        assert(t->n_subscriptions == 0);
        htable_deinit(&t->root->children);
        free(t->root);
        t->root = NULL;
}

static TopicNode *child_find(TopicNode *n, const char *level, size_t len) {
        htable_for_each_hash(h, &n->children, htable_hash_string(&n->children, level, len)) {
                TopicNode *c = container_of(h, TopicNode, hnode);

                if (c->level_len == len && memcmp(c->level, level, len) == 0)
                        return c;
        }
        return NULL;
}

static void node_release(TopicTrie *t, TopicNode *n) {
        /*
         * Every node on the path counts the subscription: walk up to the
         * root, freeing the nodes nobody uses any more. The root stays.
         */
        while (n) {
                TopicNode *parent = n->parent;

                if (--n->n_users == 0 && parent) {
                        if (parent->plus == n)
                                parent->plus = NULL;
                        else
                                htable_remove(&parent->children, &n->hnode);
                        htable_deinit(&n->children);
                        free(n);
                        t->n_nodes--;
                }
                n = parent;
        }
}

static int node_get_child(TopicTrie *t, TopicNode *n, const char *level, size_t len, TopicNode **ret) {
        TopicNode *c;
        int r;

        if (len == 1 && level[0] == '+') {
                if (!n->plus) {
                        r = node_new(&n->plus, n, level, len);
                        if (r < 0)
                                return r;
                        t->n_nodes++;
                }
                *ret = n->plus;
                return 0;
        }

        c = child_find(n, level, len);
        if (!c) {
                r = node_new(&c, n, level, len);
                if (r < 0)
                        return r;
                /* One key for the whole trie: a getrandom() per node would cost more than it hides. */
                htable_set_key(&c->children, htable_get_key(&n->children));
                r = htable_insert(&n->children, &c->hnode, htable_hash_string(&n->children, level, len));
                if (r < 0) {
                        free(c);
                        return r;
                }
                t->n_nodes++;
        }
        *ret = c;
        return 0;
}

/**
 * topic_trie_subscribe() - add a subscription
 * @t:          the trie
 * @pattern:    a valid pattern (topic_pattern_is_valid()); copied
 * @owner:      opaque, handed back through Subscription.owner
 * @ret:        the new subscription, owned by the trie until
 *              topic_trie_unsubscribe(); its owner_link is unlinked
 *
 * Return: 0 or -ENOMEM (the trie is unchanged).
 */
int topic_trie_subscribe(TopicTrie *t, const char *pattern, void *owner, Subscription **ret) {
        size_t plen = strlen(pattern);
        TopicNode *n = t->root;
        const char *p = pattern;
        bool rest = false;
        Subscription *s;
        int r;

        s = malloc(sizeof(*s) + plen + 1);
        if (!s)
                return -ENOMEM;
        memcpy(s->pattern, pattern, plen + 1);
        s->owner = owner;
        list_init(&s->owner_link);
        list_init(&s->node_link);

        /*
         * Count the user on every node of the path as we go, so a failure
         * half-way releases exactly what was taken.
         */
        n->n_users++;
        for (;;) {
                const char *end = strchrnul(p, '/');
                size_t len = (size_t)(end - p);

                if (len == 1 && p[0] == '#') {
                        rest = true;
                        break;
                }
                r = node_get_child(t, n, p, len, &n);
                if (r < 0) {
                        node_release(t, n);
                        free(s);
                        return r;
                }
                n->n_users++;
                if (!*end)
                        break;
                p = end + 1;
        }

        s->node = n;
        list_append(rest ? &n->rest : &n->exact, &s->node_link);
        t->n_subscriptions++;
        *ret = s;
        return 0;
}

/**
 * topic_trie_unsubscribe() - remove and free @s
 * @t:          the trie
 * @s:          a subscription of @t, or NULL; its owner_link must already be
 *              unlinked
 *
 * Return: NULL.
 */
Subscription *topic_trie_unsubscribe(TopicTrie *t, Subscription *s) {
        if (!s)
                return NULL;
        list_unlink(&s->node_link);
        node_release(t, s->node);
        t->n_subscriptions--;
        free(s);
        return NULL;
}

static void emit(List *list, TopicMatchFn fn, void *userdata) {
        Subscription *s;

        list_for_each_entry_safe(s, list, node_link)
                fn(s, userdata);
}

static void match(TopicNode *n, const char *topic, TopicMatchFn fn, void *userdata) {
        const char *end;
        TopicNode *c;

        /* "x/#" matches x itself and everything below it. */
        emit(&n->rest, fn, userdata);

        if (!*topic) {
                emit(&n->exact, fn, userdata);
                return;
        }

        end = strchrnul(topic, '/');
        c = child_find(n, topic, (size_t)(end - topic));
        if (c)
                match(c, *end ? end + 1 : end, fn, userdata);
        if (n->plus)
                match(n->plus, *end ? end + 1 : end, fn, userdata);
}

/**
 * topic_trie_match() - call @fn for every subscription matching @topic
 * @t:          the trie
 * @topic:      a valid topic (topic_is_valid())
 * @fn:         called once per matching subscription; must not change @t
 * @userdata:   handed to @fn
 */
void topic_trie_match(TopicTrie *t, const char *topic, TopicMatchFn fn, void *userdata) {
        match(t->root, topic, fn, userdata);
}
