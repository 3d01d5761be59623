/*
 * Unit tests for the intrusive hash table (common/htable.c).
 *
 * Covers an empty table (no bucket array until the first insert), insert,
 * lookup and removal of many u64 keys across repeated growth (the load
 * never passes 1, buckets stay a power of two), many entries sharing one
 * hash (the caller tells them apart by key), removal from the head, middle
 * and tail of a chain while other nodes, with equal or different hashes,
 * share the bucket, the keyed hash functions, and keys chosen to collide
 * under the old unkeyed hash (hash flooding).
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "htable.h"
#include "util.h"

typedef struct Item {
        HNode node;
        uint64_t key;
        bool inserted;
} Item;

/* Finds the item with @key stored under @hash; checks every node seen has that hash. */
static Item *lookup(HTable *t, uint64_t key, uint64_t hash) {
        htable_for_each_hash(h, t, hash) {
                Item *it = container_of(h, Item, node);

                assert_true(h->hash == hash);
                if (it->key == key)
                        return it;
        }
        return NULL;
}

static size_t count_hash(HTable *t, uint64_t hash) {
        size_t n = 0;

        htable_for_each_hash(h, t, hash)
                n++;
        return n;
}

static void check_shape(const HTable *t) {
        if (t->n_buckets == 0) {
                assert_null(t->buckets);
                assert_int_equal(t->n_entries, 0);
                return;
        }
        assert_non_null(t->buckets);
        assert_int_equal(t->n_buckets & (t->n_buckets - 1), 0);
        assert_true(t->n_entries <= t->n_buckets);
}

static void test_htable_empty(void **state) {
        HTable t = HTABLE_NULL;

        check_shape(&t);
        assert_null(htable_first(&t, 0));
        assert_null(htable_first(&t, htable_hash_u64(&t, 1)));
        assert_null(lookup(&t, 1, htable_hash_u64(&t, 1)));
        htable_deinit(&t);
        htable_deinit(&t);
        check_shape(&t);
}

static void test_htable_many_keys(void **state) {
        const size_t n = 20000;
        Item *items = calloc(n, sizeof(*items));
        size_t prev_buckets = 0;
        HTable t = HTABLE_NULL;

        assert_non_null(items);
        for (size_t i = 0; i < n; i++) {
                items[i].key = i * 0x9e3779b97f4a7c15ull + 1;
                assert_int_equal(htable_insert(&t, &items[i].node, htable_hash_u64(&t, items[i].key)), 0);
                items[i].inserted = true;
                assert_int_equal(t.n_entries, i + 1);
                check_shape(&t);
                /* The first insert allocates 16 buckets; growth doubles. */
                if (i == 0)
                        assert_int_equal(t.n_buckets, 16);
                else
                        assert_true(t.n_buckets == prev_buckets || t.n_buckets == 2 * prev_buckets);
                prev_buckets = t.n_buckets;
        }
        assert_true(t.n_buckets >= n);

        for (size_t i = 0; i < n; i++)
                assert_ptr_equal(lookup(&t, items[i].key, htable_hash_u64(&t, items[i].key)), &items[i]);
        /* Keys never inserted. */
        for (uint64_t k = 0; k < 1000; k++) {
                uint64_t absent = k * 0x9e3779b97f4a7c15ull + 2;

                assert_null(lookup(&t, absent, htable_hash_u64(&t, absent)));
        }

        /* Remove every third key; the rest are still found, the removed ones are not. */
        for (size_t i = 0; i < n; i += 3) {
                htable_remove(&t, &items[i].node);
                items[i].inserted = false;
        }
        for (size_t i = 0; i < n; i++) {
                Item *found = lookup(&t, items[i].key, htable_hash_u64(&t, items[i].key));

                assert_ptr_equal(found, items[i].inserted ? &items[i] : NULL);
        }

        /* Re-insert some of them, then remove everything. */
        for (size_t i = 0; i < n; i += 6) {
                assert_int_equal(htable_insert(&t, &items[i].node, htable_hash_u64(&t, items[i].key)), 0);
                items[i].inserted = true;
        }
        for (size_t i = 0; i < n; i++) {
                if (!items[i].inserted)
                        continue;
                assert_ptr_equal(lookup(&t, items[i].key, htable_hash_u64(&t, items[i].key)), &items[i]);
                htable_remove(&t, &items[i].node);
                items[i].inserted = false;
                assert_null(lookup(&t, items[i].key, htable_hash_u64(&t, items[i].key)));
        }
        assert_int_equal(t.n_entries, 0);
        for (size_t i = 0; i < n; i++)
                assert_null(lookup(&t, items[i].key, htable_hash_u64(&t, items[i].key)));

        htable_deinit(&t);
        check_shape(&t);
        free(items);
}

static void test_htable_equal_hashes(void **state) {
        const size_t n = 1000;
        const uint64_t hash = 42;
        Item *items = calloc(n, sizeof(*items));
        HTable t = HTABLE_NULL;
        size_t left = n;

        assert_non_null(items);
        /* Every entry under one hash: growth must keep the whole chain. */
        for (size_t i = 0; i < n; i++) {
                items[i].key = i;
                assert_int_equal(htable_insert(&t, &items[i].node, hash), 0);
                items[i].inserted = true;
        }
        check_shape(&t);
        assert_int_equal(count_hash(&t, hash), n);
        for (size_t i = 0; i < n; i++)
                assert_ptr_equal(lookup(&t, i, hash), &items[i]);
        assert_null(htable_first(&t, hash + 1));

        /* Remove from the head, the tail and the middle of the chain. */
        for (size_t step = 0; left > 0; step++) {
                HNode *head = htable_first(&t, hash), *tail = head;
                Item *victim;

                for (HNode *h = head; h; h = htable_next(h))
                        tail = h;
                if (step % 3 == 0) {
                        victim = container_of(head, Item, node);
                } else if (step % 3 == 1) {
                        victim = container_of(tail, Item, node);
                } else {
                        HNode *h = head;

                        for (size_t k = 0; k < left / 2; k++)
                                h = htable_next(h);
                        victim = container_of(h, Item, node);
                }
                htable_remove(&t, &victim->node);
                victim->inserted = false;
                left--;
                assert_int_equal(t.n_entries, left);
                if (step % 97 == 0 || left < 5) {
                        assert_int_equal(count_hash(&t, hash), left);
                        for (size_t i = 0; i < n; i++)
                                assert_ptr_equal(lookup(&t, i, hash),
                                                 items[i].inserted ? &items[i] : NULL);
                }
        }
        assert_null(htable_first(&t, hash));

        htable_deinit(&t);
        free(items);
}

static void test_htable_shared_bucket(void **state) {
        /*
         * Hashes differing only above bit 40 share a bucket in any table
         * smaller than 2^40 buckets; chains hold several hashes.
         */
        const uint64_t h1 = 0x1234, h2 = h1 + (1ull << 40), h3 = h1 + (1ull << 41);
        Item it[6] = {
                { .key = 1 }, { .key = 2 }, { .key = 3 }, { .key = 4 }, { .key = 5 }, { .key = 6 },
        };
        const uint64_t hashes[6] = { h1, h2, h1, h3, h2, h1 };
        HTable t = HTABLE_NULL;

        for (size_t i = 0; i < 6; i++)
                assert_int_equal(htable_insert(&t, &it[i].node, hashes[i]), 0);
        assert_ptr_equal(&t.buckets[h1 & (t.n_buckets - 1)], &t.buckets[h2 & (t.n_buckets - 1)]);

        assert_int_equal(count_hash(&t, h1), 3);
        assert_int_equal(count_hash(&t, h2), 2);
        assert_int_equal(count_hash(&t, h3), 1);
        /* The right hash and the right key are needed. */
        assert_null(lookup(&t, 2, h1));
        assert_ptr_equal(lookup(&t, 2, h2), &it[1]);

        /* Remove an entry whose neighbours in the chain have other hashes. */
        htable_remove(&t, &it[3].node);
        assert_null(it[3].node.next);
        assert_int_equal(count_hash(&t, h3), 0);
        assert_int_equal(count_hash(&t, h1), 3);
        assert_int_equal(count_hash(&t, h2), 2);

        /* And one with equal-hash neighbours. */
        htable_remove(&t, &it[2].node);
        assert_ptr_equal(lookup(&t, 1, h1), &it[0]);
        assert_null(lookup(&t, 3, h1));
        assert_ptr_equal(lookup(&t, 6, h1), &it[5]);
        assert_ptr_equal(lookup(&t, 5, h2), &it[4]);

        htable_remove(&t, &it[5].node);
        htable_remove(&t, &it[0].node);
        assert_int_equal(count_hash(&t, h1), 0);
        assert_int_equal(count_hash(&t, h2), 2);
        htable_remove(&t, &it[1].node);
        htable_remove(&t, &it[4].node);
        assert_int_equal(t.n_entries, 0);
        assert_null(htable_first(&t, h2));
        htable_deinit(&t);
}

static void test_hash_keyed(void **state) {
        static const uint8_t ref[16] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
        static const uint8_t msg[15] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14 };
        HTable a = HTABLE_NULL, b = HTABLE_NULL, c = HTABLE_NULL;
        SipKey key;
        uint64_t h;

        /* A given key: the reference's SipHash-2-4 vector for 15 bytes. */
        sip_key_from_bytes(&key, ref);
        htable_set_key(&a, &key);
        assert_true(htable_hash(&a, msg, sizeof(msg)) == 0xa129ca6149be45e5ull);
        assert_true(htable_hash_string(&a, (const char *)msg, sizeof(msg)) == 0xa129ca6149be45e5ull);

        /* Only @len bytes count: the trie hashes levels inside a longer topic. */
        assert_true(htable_hash_string(&a, "abc/def", 3) == htable_hash_string(&a, "abc", 3));
        assert_true(htable_hash_string(&a, "abc", 3) != htable_hash_string(&a, "abd", 3));
        assert_true(htable_hash_string(&a, "abc", 3) != htable_hash_string(&a, "abc", 2));

        /* Tables key themselves: stable for one table, different between tables. */
        h = htable_hash_u64(&b, 1);
        assert_true(b.keyed);
        assert_true(htable_hash_u64(&b, 1) == h);
        assert_true(htable_hash_u64(&c, 1) != h);
        assert_true(b.key.k0 != c.key.k0 || b.key.k1 != c.key.k1);

        htable_deinit(&a);
        htable_deinit(&b);
        htable_deinit(&c);
        assert_false(b.keyed);
}

/* The hash every table used before keys: splitmix64's finalizer, and its inverse. */
static uint64_t old_hash_u64(uint64_t x) {
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9ull;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebull;
        x ^= x >> 31;
        return x;
}

static uint64_t unxorshift(uint64_t y, unsigned s) {
        uint64_t x = y;

        for (unsigned i = s; i < 64; i += s)
                x = y ^ (x >> s);
        return x;
}

static uint64_t old_hash_u64_inverse(uint64_t h) {
        h = unxorshift(h, 31);
        h *= 0x319642b2d24d8ec3ull;     /* inverse of 0x94d049bb133111eb mod 2^64 */
        h = unxorshift(h, 27);
        h *= 0x96de1b173f119089ull;     /* inverse of 0xbf58476d1ce4e5b9 */
        return unxorshift(h, 30);
}

/*
 * Hash flooding: keys a client computes to share one bucket under the old,
 * unkeyed hash (all low 32 bits of the hash zero) must spread under the
 * table's key. 4096 of them made one chain of 4096 before; under a random
 * key the longest chain stays short (for n balls in n bins it is about
 * ln n / ln ln n; 16 is far above that and far below 4096).
 */
static void test_hash_flooding(void **state) {
        const size_t n = 4096;
        Item *items = calloc(n, sizeof(*items));
        HTable t = HTABLE_NULL;
        size_t longest = 0;

        assert_non_null(items);
        for (size_t i = 0; i < n; i++) {
                items[i].key = old_hash_u64_inverse((uint64_t)(i + 1) << 32);
                /* The keys do collide under the old hash: same bucket in any table up to 2^32 buckets. */
                assert_true((old_hash_u64(items[i].key) & 0xffffffffull) == 0);
                assert_int_equal(htable_insert(&t, &items[i].node, htable_hash_u64(&t, items[i].key)), 0);
        }
        for (size_t b = 0; b < t.n_buckets; b++) {
                size_t len = 0;

                for (HNode *h = t.buckets[b]; h; h = h->next)
                        len++;
                if (len > longest)
                        longest = len;
        }
        if (longest > 16)
                fail_msg("%zu keys colliding under the old hash: longest chain %zu of %zu buckets",
                         n, longest, t.n_buckets);
        for (size_t i = 0; i < n; i++)
                assert_ptr_equal(lookup(&t, items[i].key, htable_hash_u64(&t, items[i].key)), &items[i]);

        htable_deinit(&t);
        free(items);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_htable_empty),
                cmocka_unit_test(test_htable_many_keys),
                cmocka_unit_test(test_htable_equal_hashes),
                cmocka_unit_test(test_htable_shared_bucket),
                cmocka_unit_test(test_hash_keyed),
                cmocka_unit_test(test_hash_flooding),
        };

        return cmocka_run_group_tests_name("Hash table", tests, NULL, NULL);
}
