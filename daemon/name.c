/*
 * Name registry (see name.h).
 */

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "name.h"
#include "plexus.pb-c.h"
#include "util.h"

struct Name {
        HNode node;
        List owners;            /* NameOwner.name_link */
        size_t len;
        char name[];
};

Name *name_from_node(HNode *h) {
        return container_of(h, Name, node);
}

const char *name_get(const Name *n) {
        return n->name;
}

List *name_owners(Name *n) {
        return &n->owners;
}

/**
 * name_primary() - the primary owner's entry of @n
 */
NameOwner *name_primary(Name *n) {
        return list_first_entry(&n->owners, NameOwner, name_link);
}

/**
 * name_registry_deinit() - free the registry; every entry must be gone
 */
void name_registry_deinit(NameRegistry *r) {
        assert(r->n_names == 0);
        htable_deinit(&r->names);
}

/**
 * name_registry_find() - the name @name, or NULL if nobody owns or wants it
 */
Name *name_registry_find(NameRegistry *r, const char *name) {
        size_t len = strlen(name);

        htable_for_each_hash(h, &r->names, htable_hash_string(&r->names, name, len)) {
                Name *n = name_from_node(h);

                if (n->len == len && memcmp(n->name, name, len) == 0)
                        return n;
        }
        return NULL;
}

/**
 * name_registry_find_entry() - @owner's entry for @name, primary or queued
 */
static NameOwner *name_find_entry(Name *n, void *owner) {
        NameOwner *e;

        list_for_each_entry(e, &n->owners, name_link)
                if (e->owner == owner)
                        return e;
        return NULL;
}

NameOwner *name_registry_find_entry(NameRegistry *r, const char *name, void *owner) {
        Name *n = name_registry_find(r, name);

        return n ? name_find_entry(n, owner) : NULL;
}

static void change_init(NameChange *c) {
        *c = (NameChange) {};
}

static void change_set(NameChange *c, Name *n, void *old_owner, int reason) {
        NameOwner *p = name_primary(n);

        c->changed = true;
        snprintf(c->name, sizeof(c->name), "%s", n->name);
        c->old_owner = old_owner;
        c->new_owner = p ? p->owner : NULL;
        c->reason = reason;
}

static void name_free_if_unused(NameRegistry *r, Name *n) {
        if (!list_is_empty(&n->owners))
                return;
        htable_remove(&r->names, &n->node);
        r->n_names--;
        free(n);
}

static int entry_new(NameOwner **ret, Name *n, void *owner, uint32_t flags) {
        NameOwner *e;

        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->name = n;
        e->owner = owner;
        e->flags = flags;
        list_init(&e->name_link);
        list_init(&e->owner_link);
        timer_init(&e->lease_timer, NULL);
        *ret = e;
        return 0;
}

/**
 * name_owner_free() - free an entry that is no longer in a name
 * @e:          the entry or NULL; its lease timer must be disarmed
 *
 * Return: NULL.
 */
NameOwner *name_owner_free(NameOwner *e) {
        if (!e)
                return NULL;
        assert(!list_is_linked(&e->name_link));
        assert(!timer_is_armed(&e->lease_timer));
        list_unlink(&e->owner_link);
        free(e->will_topic);
        free(e->will_payload);
        free(e);
        return NULL;
}

/**
 * name_registry_request() - @owner asks for @name
 * @r:          the registry
 * @name:       a valid well-known name
 * @owner:      the requester
 * @flags:      NAME_FLAG_* bits
 * @ret_entry:  the requester's entry (new or existing), or NULL when the
 *              result is EXISTS; a new entry's owner_link is unlinked
 * @ret_change: what happened to the primary owner; ->dropped is an old
 *              owner's entry removed by a replacement, to be freed
 *
 * Return: a NAME_RESULT_* value, or -ENOMEM (nothing changed).
 */
int name_registry_request(NameRegistry *r, const char *name, void *owner, uint32_t flags,
                          NameOwner **ret_entry, NameChange *ret_change) {
        NameOwner *e = NULL, *primary;
        size_t len = strlen(name);
        Name *n;
        int err;

        change_init(ret_change);
        *ret_entry = NULL;

        n = name_registry_find(r, name);
        if (!n) {
                n = calloc(1, sizeof(*n) + len + 1);
                if (!n)
                        return -ENOMEM;
                list_init(&n->owners);
                n->len = len;
                memcpy(n->name, name, len + 1);
                err = entry_new(&e, n, owner, flags);
                if (err < 0 || (err = htable_insert(&r->names, &n->node, htable_hash_string(&r->names, name, len))) < 0) {
                        free(e);
                        free(n);
                        return err;
                }
                r->n_names++;
                list_append(&n->owners, &e->name_link);
                change_set(ret_change, n, NULL, PLEXUS__NAME_CHANGE_REASON__NAME_CHANGE_REQUESTED);
                *ret_entry = e;
                return NAME_RESULT_PRIMARY_OWNER;
        }

        primary = name_primary(n);
        if (primary->owner == owner) {
                primary->flags = flags;
                *ret_entry = primary;
                return NAME_RESULT_ALREADY_OWNER;
        }

        e = name_find_entry(n, owner);

        if ((flags & NAME_FLAG_REPLACE_EXISTING) && (primary->flags & NAME_FLAG_ALLOW_REPLACEMENT)) {
                if (!e) {
                        err = entry_new(&e, n, owner, flags);
                        if (err < 0)
                                return err;
                } else {
                        list_unlink(&e->name_link);
                        e->flags = flags;
                }
                /* The old owner waits at the head of the queue, unless it asked not to. */
                list_unlink(&primary->name_link);
                list_link_before(n->owners.next, &e->name_link);
                if (!(primary->flags & NAME_FLAG_DO_NOT_QUEUE)) {
                        list_link_before(e->name_link.next, &primary->name_link);
                } else {
                        primary->name = NULL;
                        ret_change->dropped = primary;
                }
                change_set(ret_change, n, primary->owner, PLEXUS__NAME_CHANGE_REASON__NAME_CHANGE_REPLACED);
                *ret_entry = e;
                return NAME_RESULT_PRIMARY_OWNER;
        }

        if (flags & NAME_FLAG_DO_NOT_QUEUE) {
                if (e) {
                        /* Asked again, not to wait: it leaves the queue. */
                        list_unlink(&e->name_link);
                        e->name = NULL;
                        ret_change->dropped = e;
                }
                return NAME_RESULT_EXISTS;
        }

        if (!e) {
                err = entry_new(&e, n, owner, flags);
                if (err < 0)
                        return err;
                list_append(&n->owners, &e->name_link);
        } else {
                e->flags = flags;
        }
        *ret_entry = e;
        return NAME_RESULT_IN_QUEUE;
}

/**
 * name_owner_drop() - take @e out of its name
 * @r:          the registry
 * @e:          an entry in a name; not freed
 * @reason:     why, reported if @e was the primary owner
 * @ret_change: the resulting change of owner, if any
 */
void name_owner_drop(NameRegistry *r, NameOwner *e, int reason, NameChange *ret_change) {
        Name *n = e->name;
        bool primary = name_primary(n) == e;

        change_init(ret_change);
        list_unlink(&e->name_link);
        if (primary)
                change_set(ret_change, n, e->owner, reason);
        e->name = NULL;
        name_free_if_unused(r, n);
}

/**
 * name_registry_release() - @owner gives up @name, owned or queued for
 * @r:          the registry
 * @name:       a valid well-known name
 * @owner:      the releaser
 * @ret_change: the change of owner, if any; ->dropped is the released entry
 *
 * Return: a RELEASE_RESULT_* value.
 */
int name_registry_release(NameRegistry *r, const char *name, void *owner, NameChange *ret_change) {
        NameOwner *e;

        change_init(ret_change);
        if (!name_registry_find(r, name))
                return RELEASE_RESULT_NON_EXISTENT;
        e = name_registry_find_entry(r, name, owner);
        if (!e)
                return RELEASE_RESULT_NOT_OWNER;

        name_owner_drop(r, e, PLEXUS__NAME_CHANGE_REASON__NAME_CHANGE_RELEASED, ret_change);
        ret_change->dropped = e;
        return RELEASE_RESULT_RELEASED;
}
