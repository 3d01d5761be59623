/*
 * Chained hashing with power-of-two buckets. Each HNode keeps its full hash
 * so resizing needs no callback and chain walks skip foreign hashes cheaply.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "htable.h"

/**
 * hash_u64() - mix a 64-bit integer (splitmix64 finalizer)
 */
uint64_t hash_u64(uint64_t x) {
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9ull;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebull;
        x ^= x >> 31;
        return x;
}

/**
 * hash_string() - FNV-1a over @len bytes, then mixed
 */
uint64_t hash_string(const char *s, size_t len) {
        uint64_t h = 0xcbf29ce484222325ull;

        for (size_t i = 0; i < len; i++) {
                h ^= (unsigned char)s[i];
                h *= 0x100000001b3ull;
        }
        return hash_u64(h);
}

/**
 * htable_deinit() - free the bucket array; entries are not touched
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
