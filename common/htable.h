#pragma once

/*
 * Intrusive chained hash table keyed by a 64-bit hash.
 *
 * Entries embed an HNode. The table stores only the hash; callers compare
 * their own keys while walking the chain of a hash (htable_for_each_hash),
 * which lets one table serve integer keys (peer ids) and compound keys
 * (caller, serial) alike. The bucket array doubles when the load passes 1,
 * and is allocated only once an entry arrives.
 *
 * Hashes come from the table itself (htable_hash() and its helpers):
 * SipHash-2-4 under a random key of the table's own, drawn when it first
 * hashes. Keys are often chosen by clients (serials, names, topics); an
 * unkeyed hash would let them pick keys that all share one chain. A hash is
 * therefore only meaningful for the table that computed it.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "siphash.h"

typedef struct HNode {
        struct HNode *next;
        uint64_t hash;
} HNode;

typedef struct HTable {
        HNode **buckets;
        size_t n_buckets;       /* 0 or a power of two */
        size_t n_entries;
        SipKey key;             /* valid once keyed */
        bool keyed;
} HTable;

#define HTABLE_NULL { }

void htable_deinit(HTable *t);
int htable_insert(HTable *t, HNode *node, uint64_t hash);
void htable_remove(HTable *t, HNode *node);
HNode *htable_first(HTable *t, uint64_t hash);
HNode *htable_next(HNode *node);

void htable_set_key(HTable *t, const SipKey *key);
const SipKey *htable_get_key(HTable *t);
uint64_t htable_hash(HTable *t, const void *data, size_t len);
uint64_t htable_hash_u64(HTable *t, uint64_t x);
uint64_t htable_hash_string(HTable *t, const char *s, size_t len);

#define htable_for_each_hash(node, table, h) \
        for (HNode *node = htable_first((table), (h)); node; node = htable_next(node))
