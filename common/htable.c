/*
 * Chained hashing with power-of-two buckets. Each HNode keeps its full hash
 * so resizing needs no callback and chain walks skip foreign hashes cheaply.
 */

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "htable.h"

/**
 * htable_set_key() - hash @t under @key instead of a key of its own
 * @t:          the table, empty and not keyed yet
 * @key:        copied
 *
 * For families of small tables (one per topic trie node) that would
 * otherwise each ask the kernel for a key.
 */
void htable_set_key(HTable *t, const SipKey *key) {
        assert(t->n_entries == 0);
        t->key = *key;
        t->keyed = true;
}

/**
 * htable_get_key() - @t's key, drawn now if it has none yet
 *
 * Return: the key, owned by @t.
 */
const SipKey *htable_get_key(HTable *t) {
        if (!t->keyed) {
                sip_key_random(&t->key);
                t->keyed = true;
        }
        return &t->key;
}

/**
 * htable_hash() - the hash of @len bytes at @data, for @t alone
 *
 * Return: SipHash-2-4 under @t's key.
 */
uint64_t htable_hash(HTable *t, const void *data, size_t len) {
        return siphash24(htable_get_key(t), data, len);
}

/**
 * htable_hash_u64() - the hash of an integer key, for @t alone
 */
uint64_t htable_hash_u64(HTable *t, uint64_t x) {
        uint64_t le = htole64(x);

        return htable_hash(t, &le, sizeof(le));
}

/**
 * htable_hash_string() - the hash of @len bytes of @s, for @t alone
 *
 * Only @len bytes count: the topic trie hashes levels inside a longer topic.
 */
uint64_t htable_hash_string(HTable *t, const char *s, size_t len) {
        return htable_hash(t, s, len);
}

/**
 * htable_deinit() - free the bucket array; entries are not touched
 *
 * The key goes too: a table used again draws a new one.
 */
void htable_deinit(HTable *t) {
        free(t->buckets);
        *t = (HTable) HTABLE_NULL;
}

static int grow(HTable *t) {
        size_t n = t->n_buckets ? t->n_buckets * 2 : 16;
        HNode **b = calloc(n, sizeof(*b));

        if (!b)
                return -ENOMEM;

        for (size_t i = 0; i < t->n_buckets; i++) {
                HNode *node = t->buckets[i];

                while (node) {
                        HNode *next = node->next;
                        size_t j = node->hash & (n - 1);

                        node->next = b[j];
                        b[j] = node;
                        node = next;
                }
        }
        free(t->buckets);
        t->buckets = b;
        t->n_buckets = n;
        return 0;
}

/**
 * htable_insert() - add @node under @hash
 *
 * Duplicates are allowed; callers that need unique keys look up first.
 *
 * Return: 0, or -ENOMEM (the table is unchanged).
 */
int htable_insert(HTable *t, HNode *node, uint64_t hash) {
        size_t i;

        if (t->n_entries >= t->n_buckets) {
                int r = grow(t);

                /* A full table still works, only slower; fail only if empty. */
                if (r < 0 && !t->n_buckets)
                        return r;
        }

        i = hash & (t->n_buckets - 1);
        node->hash = hash;
        node->next = t->buckets[i];
        t->buckets[i] = node;
        t->n_entries++;
        return 0;
}

/**
 * htable_remove() - unlink @node, which must be in @t
 */
void htable_remove(HTable *t, HNode *node) {
        HNode **p = &t->buckets[node->hash & (t->n_buckets - 1)];

        while (*p != node)
                p = &(*p)->next;
        *p = node->next;
        node->next = NULL;
        t->n_entries--;
}

static HNode *skip(HNode *node, uint64_t hash) {
        while (node && node->hash != hash)
                node = node->next;
        return node;
}

/**
 * htable_first() - first node stored under @hash, or NULL
 */
HNode *htable_first(HTable *t, uint64_t hash) {
        if (!t->n_buckets)
                return NULL;
        return skip(t->buckets[hash & (t->n_buckets - 1)], hash);
}

/**
 * htable_next() - next node with the same hash as @node, or NULL
 */
HNode *htable_next(HNode *node) {
        return skip(node->next, node->hash);
}
