#pragma once

/*
 * Per-user accounting: what the connections of one uid hold in the broker.
 *
 * A User exists for every uid with at least one connection (or queued
 * frame) and is shared, by reference, by everything charged to it. Each
 * resource ("slot") has two limits: what one uid may hold (its share) and
 * what all uids together may hold (the broker's total). A charge that would
 * pass either is refused, and the caller turns that into the same answer a
 * full queue or a full broker gives, never into silent loss. Refunds happen
 * when the charged object goes, so the counters are exact at all times.
 *
 * Charged per uid (dbus-broker's util/user.c charges the same way):
 *   USER_SLOT_CONNECTIONS  every connection, from accept to free
 *   USER_SLOT_UNAUTH       connections that have not completed HELLO yet
 *   USER_SLOT_BYTES        bytes of frames queued for the uid's connections
 *   USER_SLOT_FDS          fds those queued frames hold (each is a
 *                          descriptor in the broker's own table)
 *
 * Queued frames are charged to the uid of the *receiver*, whose not reading
 * is what keeps them in the broker: a client that never reads can exhaust
 * only its own uid's share, and the sender learns about it like about a
 * full queue.
 *
 * Limits live in the registry and may change at any time (reload); charges
 * made under older limits stay until refunded, so a lowered limit refuses
 * new charges only.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "htable.h"
#include "util.h"

typedef enum UserSlot {
        USER_SLOT_CONNECTIONS,
        USER_SLOT_UNAUTH,
        USER_SLOT_BYTES,
        USER_SLOT_FDS,
        _USER_SLOT_N,
} UserSlot;

enum {
        USER_E_QUOTA = 1,       /* the uid's own share is used up */
        USER_E_TOTAL,           /* the broker-wide limit is reached */
};

typedef struct UserRegistry {
        HTable users;                           /* User.node, by uid */
        size_t n_users;
        uint64_t max_user[_USER_SLOT_N];        /* per uid */
        uint64_t max_total[_USER_SLOT_N];       /* all uids together */
        uint64_t total[_USER_SLOT_N];           /* charged now, all uids */
        uint64_t n_refused[_USER_SLOT_N];       /* charges refused, either limit */
} UserRegistry;

typedef struct User {
        UserRegistry *registry;
        HNode node;
        unsigned long n_refs;
        uid_t uid;
        uint64_t used[_USER_SLOT_N];
} User;

#define USER_REGISTRY_NULL(x) { .users = HTABLE_NULL }

void user_registry_init(UserRegistry *r);
void user_registry_deinit(UserRegistry *r);
void user_registry_set_limit(UserRegistry *r, UserSlot slot, uint64_t max_user, uint64_t max_total);
int user_registry_ref_user(UserRegistry *r, User **ret, uid_t uid);

User *user_ref(User *u);
User *user_unref(User *u);
PLX_DEFINE_CLEANUP(User *, user_unref);

int user_check(const User *u, UserSlot slot, uint64_t amount);
int user_charge(User *u, UserSlot slot, uint64_t amount, bool force);
void user_refund(User *u, UserSlot slot, uint64_t amount);
