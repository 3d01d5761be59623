#pragma once

/*
 * Well-known names and their owner queues.
 *
 * A Name exists while anyone owns it or waits for it. Its entries
 * (NameOwner) form a queue whose head is the primary owner; the others wait
 * in request order. The registry knows owners only as opaque pointers, so it
 * can be tested without a broker: operations report what changed in a
 * NameChange and never free entries, which the caller (the broker's driver)
 * does after disarming their lease timers and publishing the change.
 *
 * Semantics follow D-Bus: ALLOW_REPLACEMENT lets a later REPLACE_EXISTING
 * request take the name over (the old owner goes to the head of the queue,
 * unless it asked DO_NOT_QUEUE); DO_NOT_QUEUE makes a request that cannot
 * get the name at once fail with EXISTS instead of waiting.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus-name.h"
#include "htable.h"
#include "list.h"
#include "timer.h"

enum {
        NAME_FLAG_ALLOW_REPLACEMENT = 0x1,
        NAME_FLAG_REPLACE_EXISTING = 0x2,
        NAME_FLAG_DO_NOT_QUEUE = 0x4,
        NAME_FLAGS_KNOWN = 0x7,
};

enum {
        NAME_RESULT_PRIMARY_OWNER = 1,
        NAME_RESULT_IN_QUEUE = 2,
        NAME_RESULT_EXISTS = 3,
        NAME_RESULT_ALREADY_OWNER = 4,
};

enum {
        RELEASE_RESULT_RELEASED = 1,
        RELEASE_RESULT_NON_EXISTENT = 2,
        RELEASE_RESULT_NOT_OWNER = 3,
};

typedef struct Name Name;

typedef struct NameOwner {
        Name *name;
        void *owner;
        List name_link;         /* name->owners; the first is the primary owner */
        List owner_link;        /* in the owner's list, managed by the owner */
        uint32_t flags;
        uint64_t lease_usec;    /* 0: none */
        Timer lease_timer;      /* armed by the caller */
        char *will_topic;       /* last will, or NULL */
        void *will_payload;
        size_t will_size;
} NameOwner;

/* What an operation did to the primary owner of a name. */
typedef struct NameChange {
        bool changed;
        char name[BUS_NAME_MAX + 1];
        void *old_owner;        /* NULL: there was none */
        void *new_owner;        /* NULL: there is none now */
        int reason;             /* PLEXUS__NAME_CHANGE_REASON__* */
        NameOwner *dropped;     /* an entry the operation removed: the caller frees it */
} NameChange;

typedef struct NameRegistry {
        HTable names;
        size_t n_names;
} NameRegistry;

#define NAME_REGISTRY_NULL { }

void name_registry_deinit(NameRegistry *r);
int name_registry_request(NameRegistry *r, const char *name, void *owner, uint32_t flags,
                          NameOwner **ret_entry, NameChange *ret_change);
int name_registry_release(NameRegistry *r, const char *name, void *owner, NameChange *ret_change);
void name_owner_drop(NameRegistry *r, NameOwner *e, int reason, NameChange *ret_change);
NameOwner *name_owner_free(NameOwner *e);

Name *name_registry_find(NameRegistry *r, const char *name);
NameOwner *name_registry_find_entry(NameRegistry *r, const char *name, void *owner);
NameOwner *name_primary(Name *n);
const char *name_get(const Name *n);
List *name_owners(Name *n);

#define name_registry_for_each(n, r)                                            \
        for (size_t _b = 0; _b < (r)->names.n_buckets; _b++)                    \
                for (HNode *_h = (r)->names.buckets[_b];                        \
                     _h && ((n) = name_from_node(_h), 1); _h = _h->next)

Name *name_from_node(HNode *h);

static inline bool name_owner_is_primary(const NameOwner *e) {
        return e->name && name_primary(e->name) == e;
}
