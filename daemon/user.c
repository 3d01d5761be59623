/*
 * Per-user accounting (see user.h).
 */

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "user.h"

/**
 * user_registry_init() - an empty registry without limits
 */
void user_registry_init(UserRegistry *r) {
        *r = (UserRegistry) USER_REGISTRY_NULL(*r);
        for (size_t i = 0; i < _USER_SLOT_N; i++) {
                r->max_user[i] = UINT64_MAX;
                r->max_total[i] = UINT64_MAX;
        }
}

/**
 * user_registry_deinit() - free the registry; every User must be gone
 */
void user_registry_deinit(UserRegistry *r) {
        assert(r->n_users == 0);
        htable_deinit(&r->users);
}

/**
 * user_registry_set_limit() - set the limits of one slot
 * @r:          the registry
 * @slot:       the resource
 * @max_user:   what one uid may hold
 * @max_total:  what all uids together may hold
 *
 * Takes effect for the next charge; what is charged already stays.
 */
void user_registry_set_limit(UserRegistry *r, UserSlot slot, uint64_t max_user, uint64_t max_total) {
        assert(slot < _USER_SLOT_N);
        r->max_user[slot] = max_user;
        r->max_total[slot] = max_total;
}

static User *user_find(UserRegistry *r, uid_t uid) {
        htable_for_each_hash(n, &r->users, htable_hash_u64(&r->users, uid)) {
                User *u = container_of(n, User, node);

                if (u->uid == uid)
                        return u;
        }
        return NULL;
}

/**
 * user_registry_ref_user() - the User of @uid, created on first use
 * @r:          the registry
 * @ret:        receives a new reference, written on success
 * @uid:        the uid
 *
 * Return: 0 or -ENOMEM.
 */
int user_registry_ref_user(UserRegistry *r, User **ret, uid_t uid) {
        User *u;
        int k;

        u = user_find(r, uid);
        if (u) {
                *ret = user_ref(u);
                return 0;
        }

        u = calloc(1, sizeof(*u));
        if (!u)
                return -ENOMEM;
        u->registry = r;
        u->n_refs = 1;
        u->uid = uid;
        k = htable_insert(&r->users, &u->node, htable_hash_u64(&r->users, uid));
        if (k < 0) {
                free(u);
                return k;
        }
        r->n_users++;
        *ret = u;
        return 0;
}

/**
 * user_ref() - take a reference on @u (may be NULL)
 */
User *user_ref(User *u) {
        if (u)
                u->n_refs++;
        return u;
}

/**
 * user_unref() - drop a reference; the last one frees @u
 * @u:          the user or NULL
 *
 * Whoever holds a reference refunds its charges before dropping it, so a
 * User that goes holds nothing.
 *
 * Return: NULL.
 */
User *user_unref(User *u) {
        if (!u)
                return NULL;
        assert(u->n_refs > 0);
        if (--u->n_refs > 0)
                return NULL;

        for (size_t i = 0; i < _USER_SLOT_N; i++)
                assert(u->used[i] == 0);
        htable_remove(&u->registry->users, &u->node);
        u->registry->n_users--;
        free(u);
        return NULL;
}

/**
 * user_check() - whether @u may be charged @amount more of @slot
 * @u:          the user
 * @slot:       the resource
 * @amount:     the charge
 *
 * Return: 0, USER_E_QUOTA when the uid's share would be passed, or
 * USER_E_TOTAL when the broker-wide limit would be.
 */
int user_check(const User *u, UserSlot slot, uint64_t amount) {
        const UserRegistry *r = u->registry;

        assert(slot < _USER_SLOT_N);
        if (amount > r->max_user[slot] || u->used[slot] > r->max_user[slot] - amount)
                return USER_E_QUOTA;
        if (amount > r->max_total[slot] || r->total[slot] > r->max_total[slot] - amount)
                return USER_E_TOTAL;
        return 0;
}

/**
 * user_charge() - charge @amount of @slot to @u
 * @u:          the user
 * @slot:       the resource
 * @amount:     the charge, refunded later with user_refund()
 * @force:      charge even past the limits (for what must not be refused,
 *              see queue.h); counted all the same, so it delays others
 *
 * A refused charge is counted in the registry's n_refused.
 *
 * Return: 0, USER_E_QUOTA or USER_E_TOTAL (nothing charged then).
 */
int user_charge(User *u, UserSlot slot, uint64_t amount, bool force) {
        int k;

        if (!force) {
                k = user_check(u, slot, amount);
                if (k > 0) {
                        u->registry->n_refused[slot]++;
                        return k;
                }
        }
        u->used[slot] += amount;
        u->registry->total[slot] += amount;
        return 0;
}

/**
 * user_refund() - give back a charge made with user_charge()
 */
void user_refund(User *u, UserSlot slot, uint64_t amount) {
        assert(slot < _USER_SLOT_N);
        assert(u->used[slot] >= amount && u->registry->total[slot] >= amount);
        u->used[slot] -= amount;
        u->registry->total[slot] -= amount;
}
