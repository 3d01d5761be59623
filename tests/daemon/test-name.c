/*
 * Unit tests for the name registry (daemon/name.c), built alone: owners are
 * addresses of local ints whose values are letters, for readable failures.
 *
 * Covers each outcome of a request (PRIMARY_OWNER, IN_QUEUE, EXISTS,
 * ALREADY_OWNER) and of a release (RELEASED, NON_EXISTENT, NOT_OWNER) with
 * the NameChange it reports, D-Bus replacement (the old owner to the head of
 * the queue, or dropped if it asked DO_NOT_QUEUE), name_owner_drop() handing
 * the name on in request order, the entries handed back to the caller
 * (unlinked from their name, owner_link left to the owner, freed with
 * name_owner_free()), a name of BUS_NAME_MAX bytes, many names at once with
 * name_registry_for_each(), and a deterministic randomized cross-check of
 * thousands of operations against a reference model of the queues written
 * here. Every test ends with an empty registry (n_names back to 0).
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <cmocka.h>

#include "name.h"
#include "plexus.pb-c.h"

#define REQUESTED PLEXUS__NAME_CHANGE_REASON__NAME_CHANGE_REQUESTED
#define RELEASED PLEXUS__NAME_CHANGE_REASON__NAME_CHANGE_RELEASED
#define REPLACED PLEXUS__NAME_CHANGE_REASON__NAME_CHANGE_REPLACED
#define DISCONNECTED PLEXUS__NAME_CHANGE_REASON__NAME_CHANGE_DISCONNECTED
#define LEASE_EXPIRED PLEXUS__NAME_CHANGE_REASON__NAME_CHANGE_LEASE_EXPIRED

#define ALLOW NAME_FLAG_ALLOW_REPLACEMENT
#define REPLACE NAME_FLAG_REPLACE_EXISTING
#define DNQ NAME_FLAG_DO_NOT_QUEUE

/* Longer queues than any test builds: walking further means a corrupted list. */
#define QUEUE_WALK_MAX 64

static int setup_registry(void **state) {
        NameRegistry *r = malloc(sizeof(*r));

        if (!r)
                return -1;
        *r = (NameRegistry) NAME_REGISTRY_NULL;
        *state = r;
        return 0;
}

static int teardown_registry(void **state) {
        NameRegistry *r = *state;

        /* Every test releases or drops everything it requested. */
        assert_int_equal(r->n_names, 0);
        assert_int_equal(r->names.n_entries, 0);
        name_registry_deinit(r);
        free(r);
        return 0;
}

static char label(const void *owner) {
        return owner ? (char)*(const int *)owner : '-';
}

static const char *request_result_str(int r) {
        switch (r) {
        case NAME_RESULT_PRIMARY_OWNER:
                return "PRIMARY_OWNER";
        case NAME_RESULT_IN_QUEUE:
                return "IN_QUEUE";
        case NAME_RESULT_EXISTS:
                return "EXISTS";
        case NAME_RESULT_ALREADY_OWNER:
                return "ALREADY_OWNER";
        default:
                return "(unknown)";
        }
}

static const char *release_result_str(int r) {
        switch (r) {
        case RELEASE_RESULT_RELEASED:
                return "RELEASED";
        case RELEASE_RESULT_NON_EXISTENT:
                return "NON_EXISTENT";
        case RELEASE_RESULT_NOT_OWNER:
                return "NOT_OWNER";
        default:
                return "(unknown)";
        }
}

/*
 * Requests @name for @owner and checks the result is @want. The returned
 * entry (NULL for EXISTS) must be @owner's, carry @flags and sit in @name.
 */
static NameOwner *request(NameRegistry *r, const char *name, void *owner, uint32_t flags, int want,
                          NameChange *c) {
        NameOwner *e = (NameOwner *)c;  /* anything but NULL: EXISTS must clear it */
        int res;

        res = name_registry_request(r, name, owner, flags, &e, c);
        if (res != want)
                fail_msg("%c requesting %s with flags %#x: %s (%d), expected %s",
                         label(owner), name, flags, request_result_str(res), res, request_result_str(want));
        if (want == NAME_RESULT_EXISTS) {
                assert_null(e);
                return NULL;
        }
        assert_non_null(e);
        if (e->owner != owner)
                fail_msg("%c requesting %s: returned the entry of %c", label(owner), name, label(e->owner));
        assert_int_equal(e->flags, flags);
        assert_non_null(e->name);
        assert_string_equal(name_get(e->name), name);
        assert_false(timer_is_armed(&e->lease_timer));
        return e;
}

static int release(NameRegistry *r, const char *name, void *owner, int want, NameChange *c) {
        int res;

        res = name_registry_release(r, name, owner, c);
        if (res != want)
                fail_msg("%c releasing %s: %s (%d), expected %s", label(owner), name,
                         release_result_str(res), res, release_result_str(want));
        return res;
}

static void expect_no_change(const NameChange *c) {
        if (c->changed)
                fail_msg("unexpected change on %s: %c -> %c, reason %d", c->name,
                         label(c->old_owner), label(c->new_owner), c->reason);
}

static void expect_change(const NameChange *c, const char *name, void *old_owner, void *new_owner, int reason) {
        if (!c->changed)
                fail_msg("no change reported on %s, expected %c -> %c", name, label(old_owner),
                         label(new_owner));
        assert_string_equal(c->name, name);
        if (c->old_owner != old_owner || c->new_owner != new_owner || c->reason != reason)
                fail_msg("change on %s: %c -> %c reason %d, expected %c -> %c reason %d", name,
                         label(c->old_owner), label(c->new_owner), c->reason,
                         label(old_owner), label(new_owner), reason);
}

/* Checks that @c hands back @owner's entry, out of any name, and frees it. */
static void expect_dropped_and_free(NameChange *c, void *owner) {
        NameOwner *e = c->dropped;

        if (!e)
                fail_msg("no entry dropped, expected %c's", label(owner));
        if (e->owner != owner)
                fail_msg("dropped the entry of %c, expected %c's", label(e->owner), label(owner));
        assert_null(e->name);
        assert_false(list_is_linked(&e->name_link));
        c->dropped = NULL;
        assert_null(name_owner_free(e));
}

/*
 * Checks that @name exists and its queue is exactly @owners: the primary
 * first, then the waiting owners in order, each entry pointing back at the
 * name and found by name_registry_find_entry().
 */
static void expect_queue_array(NameRegistry *r, const char *name, void *const *owners, size_t n_owners) {
        NameOwner *entries[QUEUE_WALK_MAX], *e;
        size_t n = 0;
        Name *nm;

        nm = name_registry_find(r, name);
        if (!nm)
                fail_msg("%s not found, expected %zu entries", name, n_owners);
        assert_string_equal(name_get(nm), name);

        list_for_each_entry(e, name_owners(nm), name_link) {
                if (n == n_owners || n == QUEUE_WALK_MAX)
                        fail_msg("%s: more than the %zu expected entries", name, n_owners);
                if (e->owner != owners[n])
                        fail_msg("%s: entry %zu belongs to %c, expected %c", name, n, label(e->owner),
                                 label(owners[n]));
                entries[n++] = e;
        }
        if (n != n_owners)
                fail_msg("%s: %zu entries, expected %zu", name, n, n_owners);

        assert_ptr_equal(name_primary(nm), entries[0]);
        for (size_t i = 0; i < n; i++) {
                assert_ptr_equal(entries[i]->name, nm);
                assert_true(name_owner_is_primary(entries[i]) == (i == 0));
                assert_ptr_equal(name_registry_find_entry(r, name, owners[i]), entries[i]);
        }
}

#define expect_queue(r, name, ...)                                              \
        expect_queue_array((r), (name), (void *[]){ __VA_ARGS__ },              \
                           sizeof((void *[]){ __VA_ARGS__ }) / sizeof(void *))

static void expect_gone(NameRegistry *r, const char *name, void *owner) {
        assert_null(name_registry_find(r, name));
        assert_null(name_registry_find_entry(r, name, owner));
}

static void test_request_free_name(void **state) {
        NameRegistry *r = *state;
        int A = 'A';
        NameChange c;
        NameOwner *e;
        Name *n;

        assert_null(name_registry_find(r, "org.example.Free"));
        assert_null(name_registry_find_entry(r, "org.example.Free", &A));

        e = request(r, "org.example.Free", &A, ALLOW, NAME_RESULT_PRIMARY_OWNER, &c);
        expect_change(&c, "org.example.Free", NULL, &A, REQUESTED);
        assert_null(c.dropped);
        assert_int_equal(r->n_names, 1);

        /* A new entry: nothing set up by the registry beyond its place in the queue. */
        assert_false(list_is_linked(&e->owner_link));
        assert_int_equal(e->lease_usec, 0);
        assert_null(e->will_topic);
        assert_null(e->will_payload);
        assert_int_equal(e->will_size, 0);

        n = name_registry_find(r, "org.example.Free");
        assert_non_null(n);
        assert_ptr_equal(e->name, n);
        assert_ptr_equal(name_primary(n), e);
        assert_true(name_owner_is_primary(e));
        assert_ptr_equal(name_owners(n)->next, &e->name_link);
        assert_ptr_equal(name_owners(n)->prev, &e->name_link);
        expect_queue(r, "org.example.Free", &A);

        /* Lookups are exact. */
        assert_null(name_registry_find(r, "org.example.Fre"));
        assert_null(name_registry_find(r, "org.example.Freed"));
        assert_null(name_registry_find(r, "org.example.free"));

        release(r, "org.example.Free", &A, RELEASE_RESULT_RELEASED, &c);
        expect_change(&c, "org.example.Free", &A, NULL, RELEASED);
        assert_ptr_equal(c.dropped, e);
        expect_dropped_and_free(&c, &A);
        assert_int_equal(r->n_names, 0);
        expect_gone(r, "org.example.Free", &A);

        assert_null(name_owner_free(NULL));
}

static void test_already_owner(void **state) {
        NameRegistry *r = *state;
        int A = 'A';
        NameOwner *e, *again;
        NameChange c;

        e = request(r, "org.example.Again", &A, 0, NAME_RESULT_PRIMARY_OWNER, &c);

        /* Same entry, new flags, no change of owner; every flag combination. */
        for (uint32_t flags = 0; flags <= NAME_FLAGS_KNOWN; flags++) {
                again = request(r, "org.example.Again", &A, flags, NAME_RESULT_ALREADY_OWNER, &c);
                assert_ptr_equal(again, e);
                expect_no_change(&c);
                assert_null(c.dropped);
                expect_queue(r, "org.example.Again", &A);
                assert_int_equal(r->n_names, 1);
        }

        release(r, "org.example.Again", &A, RELEASE_RESULT_RELEASED, &c);
        expect_dropped_and_free(&c, &A);
}

static void test_queue(void **state) {
        NameRegistry *r = *state;
        int A = 'A', B = 'B', C = 'C';
        NameOwner *ea, *eb, *ec;
        NameChange c;

        ea = request(r, "org.example.Queue", &A, 0, NAME_RESULT_PRIMARY_OWNER, &c);

        eb = request(r, "org.example.Queue", &B, 0, NAME_RESULT_IN_QUEUE, &c);
        expect_no_change(&c);
        assert_null(c.dropped);
        assert_ptr_not_equal(eb, ea);
        assert_false(list_is_linked(&eb->owner_link));
        expect_queue(r, "org.example.Queue", &A, &B);
        assert_int_equal(ea->flags, 0);         /* the primary's flags are left alone */

        /* Asking again keeps one entry, in its place, with the new flags. */
        assert_ptr_equal(request(r, "org.example.Queue", &B, ALLOW, NAME_RESULT_IN_QUEUE, &c), eb);
        expect_no_change(&c);
        assert_null(c.dropped);
        expect_queue(r, "org.example.Queue", &A, &B);

        ec = request(r, "org.example.Queue", &C, 0, NAME_RESULT_IN_QUEUE, &c);
        expect_queue(r, "org.example.Queue", &A, &B, &C);
        assert_ptr_equal(request(r, "org.example.Queue", &B, 0, NAME_RESULT_IN_QUEUE, &c), eb);
        expect_queue(r, "org.example.Queue", &A, &B, &C);
        assert_int_equal(r->n_names, 1);

        /* The primary leaves: the first in line takes over. */
        release(r, "org.example.Queue", &A, RELEASE_RESULT_RELEASED, &c);
        expect_change(&c, "org.example.Queue", &A, &B, RELEASED);
        assert_ptr_equal(c.dropped, ea);
        expect_dropped_and_free(&c, &A);
        expect_queue(r, "org.example.Queue", &B, &C);

        /* A waiting owner leaves: the primary stays. */
        release(r, "org.example.Queue", &C, RELEASE_RESULT_RELEASED, &c);
        expect_no_change(&c);
        assert_ptr_equal(c.dropped, ec);
        expect_dropped_and_free(&c, &C);
        expect_queue(r, "org.example.Queue", &B);

        release(r, "org.example.Queue", &B, RELEASE_RESULT_RELEASED, &c);
        expect_change(&c, "org.example.Queue", &B, NULL, RELEASED);
        expect_dropped_and_free(&c, &B);
        expect_gone(r, "org.example.Queue", &B);
}

static void test_do_not_queue(void **state) {
        NameRegistry *r = *state;
        int A = 'A', B = 'B', C = 'C';
        NameOwner *eb;
        NameChange c;

        request(r, "org.example.Busy", &A, 0, NAME_RESULT_PRIMARY_OWNER, &c);

        /* Cannot have it at once and will not wait: nothing happens. */
        request(r, "org.example.Busy", &B, DNQ, NAME_RESULT_EXISTS, &c);
        expect_no_change(&c);
        assert_null(c.dropped);
        expect_queue(r, "org.example.Busy", &A);
        assert_null(name_registry_find_entry(r, "org.example.Busy", &B));

        /* DO_NOT_QUEUE on a free name just takes it. */
        request(r, "org.example.Free", &B, DNQ, NAME_RESULT_PRIMARY_OWNER, &c);
        expect_change(&c, "org.example.Free", NULL, &B, REQUESTED);
        assert_int_equal(r->n_names, 2);

        /* Waiting, then asking not to wait: leaves the queue, others keep their place. */
        eb = request(r, "org.example.Busy", &B, 0, NAME_RESULT_IN_QUEUE, &c);
        request(r, "org.example.Busy", &C, 0, NAME_RESULT_IN_QUEUE, &c);
        expect_queue(r, "org.example.Busy", &A, &B, &C);

        request(r, "org.example.Busy", &B, DNQ | ALLOW, NAME_RESULT_EXISTS, &c);
        expect_no_change(&c);
        assert_ptr_equal(c.dropped, eb);
        expect_dropped_and_free(&c, &B);
        expect_queue(r, "org.example.Busy", &A, &C);

        /* The same with C, the last in line. */
        request(r, "org.example.Busy", &C, DNQ, NAME_RESULT_EXISTS, &c);
        expect_no_change(&c);
        expect_dropped_and_free(&c, &C);
        expect_queue(r, "org.example.Busy", &A);
        expect_queue(r, "org.example.Free", &B);

        release(r, "org.example.Busy", &A, RELEASE_RESULT_RELEASED, &c);
        expect_change(&c, "org.example.Busy", &A, NULL, RELEASED);
        expect_dropped_and_free(&c, &A);
        release(r, "org.example.Free", &B, RELEASE_RESULT_RELEASED, &c);
        expect_dropped_and_free(&c, &B);
}

static void test_replace(void **state) {
        NameRegistry *r = *state;
        int A = 'A', B = 'B', C = 'C';
        NameOwner *ea, *eb;
        NameChange c;

        ea = request(r, "org.example.Replace", &A, ALLOW, NAME_RESULT_PRIMARY_OWNER, &c);

        /* B takes over; A waits at the head of the queue, with its flags. */
        eb = request(r, "org.example.Replace", &B, REPLACE, NAME_RESULT_PRIMARY_OWNER, &c);
        assert_ptr_not_equal(eb, ea);
        expect_change(&c, "org.example.Replace", &A, &B, REPLACED);
        assert_null(c.dropped);
        expect_queue(r, "org.example.Replace", &B, &A);
        assert_ptr_equal(name_registry_find_entry(r, "org.example.Replace", &A), ea);
        assert_int_equal(ea->flags, ALLOW);

        /* B did not allow replacement: C only queues, behind A. */
        request(r, "org.example.Replace", &C, REPLACE, NAME_RESULT_IN_QUEUE, &c);
        expect_no_change(&c);
        expect_queue(r, "org.example.Replace", &B, &A, &C);

        /* B now allows it; C, already waiting, moves to the front, B right behind. */
        assert_ptr_equal(request(r, "org.example.Replace", &B, ALLOW, NAME_RESULT_ALREADY_OWNER, &c), eb);
        expect_no_change(&c);
        request(r, "org.example.Replace", &C, REPLACE | ALLOW, NAME_RESULT_PRIMARY_OWNER, &c);
        expect_change(&c, "org.example.Replace", &B, &C, REPLACED);
        assert_null(c.dropped);
        expect_queue(r, "org.example.Replace", &C, &B, &A);

        /* A, at the back, replaces C: C goes to the head of the queue. */
        assert_ptr_equal(request(r, "org.example.Replace", &A, REPLACE, NAME_RESULT_PRIMARY_OWNER, &c), ea);
        expect_change(&c, "org.example.Replace", &C, &A, REPLACED);
        assert_null(c.dropped);
        expect_queue(r, "org.example.Replace", &A, &C, &B);
        assert_int_equal(r->n_names, 1);

        /* Releasing hands it on in queue order. */
        release(r, "org.example.Replace", &A, RELEASE_RESULT_RELEASED, &c);
        expect_change(&c, "org.example.Replace", &A, &C, RELEASED);
        expect_dropped_and_free(&c, &A);
        release(r, "org.example.Replace", &C, RELEASE_RESULT_RELEASED, &c);
        expect_change(&c, "org.example.Replace", &C, &B, RELEASED);
        expect_dropped_and_free(&c, &C);
        release(r, "org.example.Replace", &B, RELEASE_RESULT_RELEASED, &c);
        expect_change(&c, "org.example.Replace", &B, NULL, RELEASED);
        expect_dropped_and_free(&c, &B);
        expect_gone(r, "org.example.Replace", &B);
}

static void test_replace_do_not_queue(void **state) {
        NameRegistry *r = *state;
        int A = 'A', B = 'B', C = 'C';
        NameOwner *ea;
        NameChange c;

        /* A allows replacement but will not wait: replaced means dropped. */
        ea = request(r, "org.example.Gone", &A, ALLOW | DNQ, NAME_RESULT_PRIMARY_OWNER, &c);
        request(r, "org.example.Gone", &C, 0, NAME_RESULT_IN_QUEUE, &c);
        request(r, "org.example.Gone", &B, REPLACE, NAME_RESULT_PRIMARY_OWNER, &c);
        expect_change(&c, "org.example.Gone", &A, &B, REPLACED);
        assert_ptr_equal(c.dropped, ea);
        expect_dropped_and_free(&c, &A);
        expect_queue(r, "org.example.Gone", &B, &C);
        assert_null(name_registry_find_entry(r, "org.example.Gone", &A));

        /* The replacing request may itself carry DO_NOT_QUEUE: it gets the name at once. */
        request(r, "org.example.Gone", &B, ALLOW, NAME_RESULT_ALREADY_OWNER, &c);
        request(r, "org.example.Gone", &A, REPLACE | DNQ, NAME_RESULT_PRIMARY_OWNER, &c);
        expect_change(&c, "org.example.Gone", &B, &A, REPLACED);
        assert_null(c.dropped);
        expect_queue(r, "org.example.Gone", &A, &B, &C);

        release(r, "org.example.Gone", &C, RELEASE_RESULT_RELEASED, &c);
        expect_no_change(&c);
        expect_dropped_and_free(&c, &C);
        release(r, "org.example.Gone", &A, RELEASE_RESULT_RELEASED, &c);
        expect_change(&c, "org.example.Gone", &A, &B, RELEASED);
        expect_dropped_and_free(&c, &A);
        release(r, "org.example.Gone", &B, RELEASE_RESULT_RELEASED, &c);
        expect_dropped_and_free(&c, &B);
}

static void test_replace_refused(void **state) {
        NameRegistry *r = *state;
        int A = 'A', B = 'B', C = 'C';
        NameOwner *eb;
        NameChange c;

        /* The primary did not allow replacement: the request waits... */
        request(r, "org.example.Keep", &A, 0, NAME_RESULT_PRIMARY_OWNER, &c);
        eb = request(r, "org.example.Keep", &B, REPLACE, NAME_RESULT_IN_QUEUE, &c);
        expect_no_change(&c);
        assert_null(c.dropped);
        expect_queue(r, "org.example.Keep", &A, &B);

        /* ...or fails, with DO_NOT_QUEUE. */
        request(r, "org.example.Keep", &C, REPLACE | DNQ, NAME_RESULT_EXISTS, &c);
        expect_no_change(&c);
        assert_null(c.dropped);
        expect_queue(r, "org.example.Keep", &A, &B);

        /* A waiting owner failing that way leaves the queue. */
        request(r, "org.example.Keep", &B, REPLACE | DNQ, NAME_RESULT_EXISTS, &c);
        expect_no_change(&c);
        assert_ptr_equal(c.dropped, eb);
        expect_dropped_and_free(&c, &B);
        expect_queue(r, "org.example.Keep", &A);

        /* ALLOW_REPLACEMENT on the requester, not the primary, does not count. */
        request(r, "org.example.Keep", &C, REPLACE | ALLOW, NAME_RESULT_IN_QUEUE, &c);
        expect_no_change(&c);
        expect_queue(r, "org.example.Keep", &A, &C);

        /* A waiting owner's ALLOW_REPLACEMENT counts once it is primary. */
        release(r, "org.example.Keep", &A, RELEASE_RESULT_RELEASED, &c);
        expect_change(&c, "org.example.Keep", &A, &C, RELEASED);
        expect_dropped_and_free(&c, &A);
        request(r, "org.example.Keep", &B, REPLACE, NAME_RESULT_PRIMARY_OWNER, &c);
        expect_change(&c, "org.example.Keep", &C, &B, REPLACED);
        expect_queue(r, "org.example.Keep", &B, &C);

        release(r, "org.example.Keep", &B, RELEASE_RESULT_RELEASED, &c);
        expect_dropped_and_free(&c, &B);
        release(r, "org.example.Keep", &C, RELEASE_RESULT_RELEASED, &c);
        expect_dropped_and_free(&c, &C);
}

static void test_release_errors(void **state) {
        NameRegistry *r = *state;
        int A = 'A', B = 'B';
        NameChange c;

        release(r, "org.example.Nobody", &A, RELEASE_RESULT_NON_EXISTENT, &c);
        expect_no_change(&c);
        assert_null(c.dropped);

        request(r, "org.example.Owned", &A, 0, NAME_RESULT_PRIMARY_OWNER, &c);
        release(r, "org.example.Owned", &B, RELEASE_RESULT_NOT_OWNER, &c);
        expect_no_change(&c);
        assert_null(c.dropped);
        release(r, "org.example.Nobody", &A, RELEASE_RESULT_NON_EXISTENT, &c);
        release(r, "org.example.Owne", &A, RELEASE_RESULT_NON_EXISTENT, &c);
        expect_queue(r, "org.example.Owned", &A);

        /* B's failed request left no entry behind. */
        request(r, "org.example.Owned", &B, DNQ, NAME_RESULT_EXISTS, &c);
        release(r, "org.example.Owned", &B, RELEASE_RESULT_NOT_OWNER, &c);

        release(r, "org.example.Owned", &A, RELEASE_RESULT_RELEASED, &c);
        expect_dropped_and_free(&c, &A);

        /* Released twice: the name is gone the second time. */
        release(r, "org.example.Owned", &A, RELEASE_RESULT_NON_EXISTENT, &c);
        expect_no_change(&c);
        assert_null(c.dropped);
}

static void test_drop(void **state) {
        NameRegistry *r = *state;
        int A = 'A', B = 'B', C = 'C', D = 'D';
        NameOwner *ea, *eb, *ec, *ed;
        NameChange c;

        ea = request(r, "org.example.Drop", &A, 0, NAME_RESULT_PRIMARY_OWNER, &c);
        eb = request(r, "org.example.Drop", &B, 0, NAME_RESULT_IN_QUEUE, &c);
        ec = request(r, "org.example.Drop", &C, 0, NAME_RESULT_IN_QUEUE, &c);
        ed = request(r, "org.example.Drop", &D, 0, NAME_RESULT_IN_QUEUE, &c);

        /* The primary disconnects: the first in line gets it, with that reason. */
        name_owner_drop(r, ea, DISCONNECTED, &c);
        expect_change(&c, "org.example.Drop", &A, &B, DISCONNECTED);
        assert_null(ea->name);
        assert_false(list_is_linked(&ea->name_link));
        assert_null(name_owner_free(ea));
        expect_queue(r, "org.example.Drop", &B, &C, &D);

        /* A waiting owner disconnects: nothing changes for the primary. */
        name_owner_drop(r, ec, DISCONNECTED, &c);
        expect_no_change(&c);
        assert_null(ec->name);
        assert_null(name_owner_free(ec));
        expect_queue(r, "org.example.Drop", &B, &D);

        /* A lease runs out. */
        name_owner_drop(r, eb, LEASE_EXPIRED, &c);
        expect_change(&c, "org.example.Drop", &B, &D, LEASE_EXPIRED);
        assert_null(name_owner_free(eb));
        expect_queue(r, "org.example.Drop", &D);
        assert_int_equal(r->n_names, 1);

        /* The last entry goes, and the name with it. */
        name_owner_drop(r, ed, LEASE_EXPIRED, &c);
        expect_change(&c, "org.example.Drop", &D, NULL, LEASE_EXPIRED);
        assert_null(ed->name);
        assert_null(name_owner_free(ed));
        assert_int_equal(r->n_names, 0);
        expect_gone(r, "org.example.Drop", &D);
}

static void test_owner_link(void **state) {
        NameRegistry *r = *state;
        List mine = LIST_INIT(mine);
        int A = 'A', B = 'B';
        NameOwner *e1, *e2, *e3;
        NameChange c;

        /* The owner keeps its entries in a list of its own. */
        e1 = request(r, "org.example.One", &A, 0, NAME_RESULT_PRIMARY_OWNER, &c);
        list_append(&mine, &e1->owner_link);
        e2 = request(r, "org.example.Two", &A, 0, NAME_RESULT_PRIMARY_OWNER, &c);
        list_append(&mine, &e2->owner_link);
        request(r, "org.example.Three", &B, 0, NAME_RESULT_PRIMARY_OWNER, &c);
        e3 = request(r, "org.example.Three", &A, 0, NAME_RESULT_IN_QUEUE, &c);
        list_append(&mine, &e3->owner_link);
        assert_int_equal(r->n_names, 3);

        /* Asking again returns the same entries and leaves that list alone. */
        assert_ptr_equal(request(r, "org.example.One", &A, ALLOW, NAME_RESULT_ALREADY_OWNER, &c), e1);
        assert_ptr_equal(request(r, "org.example.Three", &A, ALLOW, NAME_RESULT_IN_QUEUE, &c), e3);
        assert_ptr_equal(mine.next, &e1->owner_link);
        assert_ptr_equal(e1->owner_link.next, &e2->owner_link);
        assert_ptr_equal(e2->owner_link.next, &e3->owner_link);
        assert_ptr_equal(e3->owner_link.next, &mine);

        /* Released: still in the owner's list until freed, which unlinks it. */
        release(r, "org.example.Two", &A, RELEASE_RESULT_RELEASED, &c);
        assert_ptr_equal(c.dropped, e2);
        assert_true(list_is_linked(&e2->owner_link));
        e2->will_topic = strdup("org/example/will");
        e2->will_payload = malloc(16);
        assert_non_null(e2->will_topic);
        assert_non_null(e2->will_payload);
        e2->will_size = 16;
        expect_dropped_and_free(&c, &A);
        assert_ptr_equal(mine.next, &e1->owner_link);
        assert_ptr_equal(e1->owner_link.next, &e3->owner_link);
        assert_ptr_equal(e3->owner_link.prev, &e1->owner_link);
        assert_ptr_equal(mine.prev, &e3->owner_link);

        /* Dropped from the queue by DO_NOT_QUEUE: same. */
        request(r, "org.example.Three", &A, DNQ, NAME_RESULT_EXISTS, &c);
        assert_ptr_equal(c.dropped, e3);
        assert_true(list_is_linked(&e3->owner_link));
        expect_dropped_and_free(&c, &A);
        assert_ptr_equal(mine.next, &e1->owner_link);
        assert_ptr_equal(mine.prev, &e1->owner_link);

        release(r, "org.example.One", &A, RELEASE_RESULT_RELEASED, &c);
        expect_dropped_and_free(&c, &A);
        assert_true(list_is_empty(&mine));

        release(r, "org.example.Three", &B, RELEASE_RESULT_RELEASED, &c);
        expect_dropped_and_free(&c, &B);
}

static void test_name_max(void **state) {
        NameRegistry *r = *state;
        char name[BUS_NAME_MAX + 1];
        int A = 'A', B = 'B';
        NameOwner *eb;
        NameChange c;

        memset(name, 'x', BUS_NAME_MAX);
        name[0] = 'a';
        name[1] = '.';
        name[BUS_NAME_MAX] = 0;
        assert_true(bus_name_is_well_known(name));

        /* The longest name fits in a change, whole and terminated. */
        memset(&c, 0x55, sizeof(c));
        request(r, name, &A, 0, NAME_RESULT_PRIMARY_OWNER, &c);
        expect_change(&c, name, NULL, &A, REQUESTED);
        assert_int_equal(strlen(c.name), BUS_NAME_MAX);
        assert_string_equal(name_get(name_registry_find(r, name)), name);

        request(r, name, &B, 0, NAME_RESULT_IN_QUEUE, &c);
        expect_queue(r, name, &A, &B);

        /* A name differing only in the last byte is another name. */
        name[BUS_NAME_MAX - 1] = 'y';
        assert_null(name_registry_find(r, name));
        release(r, name, &A, RELEASE_RESULT_NON_EXISTENT, &c);
        name[BUS_NAME_MAX - 1] = 'x';

        memset(&c, 0x55, sizeof(c));
        release(r, name, &A, RELEASE_RESULT_RELEASED, &c);
        expect_change(&c, name, &A, &B, RELEASED);
        expect_dropped_and_free(&c, &A);

        eb = name_registry_find_entry(r, name, &B);
        assert_non_null(eb);
        memset(&c, 0x55, sizeof(c));
        name_owner_drop(r, eb, DISCONNECTED, &c);
        expect_change(&c, name, &B, NULL, DISCONNECTED);
        assert_null(name_owner_free(eb));
        assert_int_equal(r->n_names, 0);
}

#define N_MANY 300

static void test_many_names(void **state) {
        NameRegistry *r = *state;
        NameOwner *primaries[N_MANY];
        unsigned seen[N_MANY] = {};
        int A = 'A', B = 'B';
        char name[64];
        size_t visited = 0;
        NameChange c;
        Name *n;

        /* Enough names to grow the hash table several times; B waits for every third. */
        for (unsigned i = 0; i < N_MANY; i++) {
                snprintf(name, sizeof(name), "org.example.n%u", i);
                primaries[i] = request(r, name, &A, 0, NAME_RESULT_PRIMARY_OWNER, &c);
                if (i % 3 == 0)
                        request(r, name, &B, 0, NAME_RESULT_IN_QUEUE, &c);
                assert_int_equal(r->n_names, i + 1);
        }

        name_registry_for_each(n, r) {
                unsigned i;

                assert_int_equal(sscanf(name_get(n), "org.example.n%u", &i), 1);
                assert_true(i < N_MANY);
                seen[i]++;
                visited++;
                assert_ptr_equal(name_primary(n), primaries[i]);
                assert_ptr_equal(name_registry_find(r, name_get(n)), n);
        }
        assert_int_equal(visited, N_MANY);
        for (unsigned i = 0; i < N_MANY; i++)
                assert_int_equal(seen[i], 1);

        for (unsigned i = 0; i < N_MANY; i++) {
                snprintf(name, sizeof(name), "org.example.n%u", i);
                assert_ptr_equal(name_registry_find_entry(r, name, &A), primaries[i]);
                release(r, name, &A, RELEASE_RESULT_RELEASED, &c);
                expect_change(&c, name, &A, i % 3 == 0 ? &B : NULL, RELEASED);
                expect_dropped_and_free(&c, &A);
                if (i % 3 == 0) {
                        expect_queue(r, name, &B);
                        release(r, name, &B, RELEASE_RESULT_RELEASED, &c);
                        expect_dropped_and_free(&c, &B);
                }
                expect_gone(r, name, &A);
                assert_int_equal(r->n_names, N_MANY - 1 - i);
        }

        visited = 0;
        name_registry_for_each(n, r)
                visited++;
        assert_int_equal(visited, 0);
}

/*
 * The reference model: per name, an array of (owner, flags, entry) with the
 * primary first, updated by the rules of name.h.
 */
#define N_MODEL_NAMES 3
#define N_MODEL_OWNERS 5
#define N_MODEL_STEPS 5000

typedef struct ModelEntry {
        unsigned owner;
        uint32_t flags;
        NameOwner *e;           /* the registry's entry, once it returned one */
} ModelEntry;

typedef struct ModelName {
        const char *name;
        ModelEntry q[N_MODEL_OWNERS];
        size_t n;
} ModelName;

typedef struct Model {
        ModelName names[N_MODEL_NAMES];
        int owners[N_MODEL_OWNERS];
        unsigned counts[16];    /* how often each kind of step ran, see ModelStat */
} Model;

typedef enum ModelStat {
        STAT_FREE,
        STAT_ALREADY,
        STAT_REPLACED,
        STAT_REPLACED_DROPPED,
        STAT_QUEUED_NEW,
        STAT_QUEUED_AGAIN,
        STAT_EXISTS,
        STAT_EXISTS_DROPPED,
        STAT_RELEASE_PRIMARY,
        STAT_RELEASE_QUEUED,
        STAT_RELEASE_NON_EXISTENT,
        STAT_RELEASE_NOT_OWNER,
        STAT_DROP_PRIMARY,
        STAT_DROP_QUEUED,
        _STAT_N,
} ModelStat;

static uint64_t next_random(uint64_t *x) {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        return *x;
}

static ssize_t model_find(const ModelName *m, unsigned owner) {
        for (size_t i = 0; i < m->n; i++)
                if (m->q[i].owner == owner)
                        return (ssize_t)i;
        return -1;
}

static ModelEntry model_remove(ModelName *m, size_t i) {
        ModelEntry e = m->q[i];

        memmove(&m->q[i], &m->q[i + 1], (m->n - i - 1) * sizeof(m->q[0]));
        m->n--;
        return e;
}

static void model_insert(ModelName *m, size_t i, ModelEntry e) {
        assert_true(m->n < N_MODEL_OWNERS);
        memmove(&m->q[i + 1], &m->q[i], (m->n - i) * sizeof(m->q[0]));
        m->q[i] = e;
        m->n++;
}

static bool model_knows_entry(const Model *model, const NameOwner *e) {
        for (size_t k = 0; k < N_MODEL_NAMES; k++)
                for (size_t i = 0; i < model->names[k].n; i++)
                        if (model->names[k].q[i].e == e)
                                return true;
        return false;
}

/* Compares the whole registry with the model. */
static void model_check(NameRegistry *r, Model *model, unsigned step) {
        size_t live = 0, visited = 0;
        Name *n;

        for (size_t k = 0; k < N_MODEL_NAMES; k++) {
                ModelName *m = &model->names[k];
                NameOwner *e;
                size_t i = 0;

                n = name_registry_find(r, m->name);
                if (m->n == 0) {
                        if (n)
                                fail_msg("step %u: %s should be gone", step, m->name);
                        for (unsigned o = 0; o < N_MODEL_OWNERS; o++)
                                assert_null(name_registry_find_entry(r, m->name, &model->owners[o]));
                        continue;
                }
                if (!n)
                        fail_msg("step %u: %s missing", step, m->name);
                live++;

                list_for_each_entry(e, name_owners(n), name_link) {
                        if (i == m->n)
                                fail_msg("step %u: %s has more than %zu entries", step, m->name, m->n);
                        if (e != m->q[i].e || e->owner != &model->owners[m->q[i].owner])
                                fail_msg("step %u: %s entry %zu belongs to %c, expected %c", step, m->name, i,
                                         label(e->owner), label(&model->owners[m->q[i].owner]));
                        if (e->flags != m->q[i].flags)
                                fail_msg("step %u: %s entry %zu (%c) has flags %#x, expected %#x", step,
                                         m->name, i, label(e->owner), e->flags, m->q[i].flags);
                        assert_ptr_equal(e->name, n);
                        i++;
                }
                if (i != m->n)
                        fail_msg("step %u: %s has %zu entries, expected %zu", step, m->name, i, m->n);
                assert_ptr_equal(name_primary(n), m->q[0].e);

                for (unsigned o = 0; o < N_MODEL_OWNERS; o++) {
                        ssize_t j = model_find(m, o);

                        assert_ptr_equal(name_registry_find_entry(r, m->name, &model->owners[o]),
                                         j < 0 ? NULL : m->q[j].e);
                }
        }
        if (r->n_names != live)
                fail_msg("step %u: n_names is %zu, expected %zu", step, r->n_names, live);

        name_registry_for_each(n, r) {
                size_t k;

                for (k = 0; k < N_MODEL_NAMES; k++)
                        if (strcmp(name_get(n), model->names[k].name) == 0)
                                break;
                assert_true(k < N_MODEL_NAMES);
                assert_true(model->names[k].n > 0);
                visited++;
        }
        assert_int_equal(visited, live);
}

static void model_expect_change(const NameChange *c, Model *model, unsigned step, bool changed,
                                const char *name, int old_owner, int new_owner, int reason) {
        void *old_p = old_owner < 0 ? NULL : &model->owners[old_owner];
        void *new_p = new_owner < 0 ? NULL : &model->owners[new_owner];

        if (c->changed != changed)
                fail_msg("step %u: on %s changed is %d, expected %d", step, name, c->changed, changed);
        if (!changed)
                return;
        if (strcmp(c->name, name) != 0 || c->old_owner != old_p || c->new_owner != new_p ||
            c->reason != reason)
                fail_msg("step %u: change on \"%s\": %c -> %c reason %d, expected on %s: %c -> %c reason %d",
                         step, c->name, label(c->old_owner), label(c->new_owner), c->reason,
                         name, label(old_p), label(new_p), reason);
}

/* Checks that @c drops exactly @want (NULL: nothing) and frees it. */
static void model_expect_dropped(NameChange *c, unsigned step, NameOwner *want) {
        if (c->dropped != want)
                fail_msg("step %u: dropped %p (%c), expected %p (%c)", step, (void *)c->dropped,
                         c->dropped ? label(c->dropped->owner) : '-', (void *)want,
                         want ? label(want->owner) : '-');
        if (!want)
                return;
        assert_null(want->name);
        assert_false(list_is_linked(&want->name_link));
        c->dropped = name_owner_free(c->dropped);
}

static void model_request(NameRegistry *r, Model *model, unsigned step, ModelName *m, unsigned o,
                          uint32_t flags) {
        ModelEntry dropped = {}, *mine = NULL;
        int want, old_owner = -1, reason = 0;
        bool changed = false;
        NameOwner *e = NULL;
        NameChange c;
        ssize_t i;
        int res;

        i = model_find(m, o);
        if (m->n == 0) {
                want = NAME_RESULT_PRIMARY_OWNER;
                model_insert(m, 0, (ModelEntry) { .owner = o, .flags = flags });
                changed = true;
                reason = REQUESTED;
                model->counts[STAT_FREE]++;
        } else if (i == 0) {
                want = NAME_RESULT_ALREADY_OWNER;
                m->q[0].flags = flags;
                model->counts[STAT_ALREADY]++;
        } else if ((flags & REPLACE) && (m->q[0].flags & ALLOW)) {
                ModelEntry me = { .owner = o }, old;

                want = NAME_RESULT_PRIMARY_OWNER;
                if (i > 0)
                        me = model_remove(m, (size_t)i);
                me.flags = flags;
                old = model_remove(m, 0);
                model_insert(m, 0, me);
                if (old.flags & DNQ) {
                        dropped = old;
                        model->counts[STAT_REPLACED_DROPPED]++;
                } else {
                        model_insert(m, 1, old);
                }
                changed = true;
                old_owner = (int)old.owner;
                reason = REPLACED;
                model->counts[STAT_REPLACED]++;
        } else if (flags & DNQ) {
                want = NAME_RESULT_EXISTS;
                if (i > 0) {
                        dropped = model_remove(m, (size_t)i);
                        model->counts[STAT_EXISTS_DROPPED]++;
                }
                model->counts[STAT_EXISTS]++;
        } else {
                want = NAME_RESULT_IN_QUEUE;
                if (i > 0) {
                        m->q[i].flags = flags;
                        model->counts[STAT_QUEUED_AGAIN]++;
                } else {
                        model_insert(m, m->n, (ModelEntry) { .owner = o, .flags = flags });
                        model->counts[STAT_QUEUED_NEW]++;
                }
        }

        res = name_registry_request(r, m->name, &model->owners[o], flags, &e, &c);
        if (res != want)
                fail_msg("step %u: %c requesting %s with flags %#x: %s, expected %s", step,
                         label(&model->owners[o]), m->name, flags, request_result_str(res),
                         request_result_str(want));

        i = model_find(m, o);
        if (want == NAME_RESULT_EXISTS) {
                assert_null(e);
        } else {
                assert_true(i >= 0);
                mine = &m->q[i];
                if (!e || e->owner != &model->owners[o])
                        fail_msg("step %u: %c requesting %s got the entry of %c", step,
                                 label(&model->owners[o]), m->name, e ? label(e->owner) : '-');
                if (mine->e) {
                        assert_ptr_equal(e, mine->e);
                } else {
                        /* A new entry: unlike any live one. */
                        assert_false(model_knows_entry(model, e));
                        assert_false(list_is_linked(&e->owner_link));
                        mine->e = e;
                }
        }

        model_expect_change(&c, model, step, changed, m->name, old_owner, changed ? (int)m->q[0].owner : -1,
                            reason);
        model_expect_dropped(&c, step, dropped.e);
}

static void model_release(NameRegistry *r, Model *model, unsigned step, ModelName *m, unsigned o) {
        ssize_t i = model_find(m, o);
        ModelEntry dropped = {};
        NameChange c;
        int want, res;

        if (m->n == 0) {
                want = RELEASE_RESULT_NON_EXISTENT;
                model->counts[STAT_RELEASE_NON_EXISTENT]++;
        } else if (i < 0) {
                want = RELEASE_RESULT_NOT_OWNER;
                model->counts[STAT_RELEASE_NOT_OWNER]++;
        } else {
                want = RELEASE_RESULT_RELEASED;
                dropped = model_remove(m, (size_t)i);
                model->counts[i == 0 ? STAT_RELEASE_PRIMARY : STAT_RELEASE_QUEUED]++;
        }

        res = name_registry_release(r, m->name, &model->owners[o], &c);
        if (res != want)
                fail_msg("step %u: %c releasing %s: %s, expected %s", step, label(&model->owners[o]),
                         m->name, release_result_str(res), release_result_str(want));

        model_expect_change(&c, model, step, want == RELEASE_RESULT_RELEASED && i == 0, m->name, (int)o,
                            m->n ? (int)m->q[0].owner : -1, RELEASED);
        model_expect_dropped(&c, step, dropped.e);
}

static void model_drop(NameRegistry *r, Model *model, unsigned step, ModelName *m, size_t i, int reason) {
        ModelEntry dropped = model_remove(m, i);
        NameChange c;

        model->counts[i == 0 ? STAT_DROP_PRIMARY : STAT_DROP_QUEUED]++;
        name_owner_drop(r, dropped.e, reason, &c);
        model_expect_change(&c, model, step, i == 0, m->name, (int)dropped.owner,
                            m->n ? (int)m->q[0].owner : -1, reason);
        assert_null(dropped.e->name);
        assert_false(list_is_linked(&dropped.e->name_link));
        assert_null(name_owner_free(dropped.e));
}

static void test_model(void **state) {
        static const char *const names[N_MODEL_NAMES] = {
                "org.example.Alpha", "org.example.Beta", "com.example.alpha",
        };
        NameRegistry *r = *state;
        uint64_t x = 0x9e3779b97f4a7c15ull;
        Model model = {};

        for (size_t k = 0; k < N_MODEL_NAMES; k++)
                model.names[k].name = names[k];
        for (unsigned o = 0; o < N_MODEL_OWNERS; o++)
                model.owners[o] = 'A' + (int)o;

        for (unsigned step = 0; step < N_MODEL_STEPS; step++) {
                ModelName *m = &model.names[next_random(&x) % N_MODEL_NAMES];
                unsigned o = (unsigned)(next_random(&x) % N_MODEL_OWNERS);
                unsigned op = (unsigned)(next_random(&x) % 10);

                if (op < 6) {
                        model_request(r, &model, step, m, o, (uint32_t)(next_random(&x) % (NAME_FLAGS_KNOWN + 1)));
                } else if (op < 8 || m->n == 0) {
                        model_release(r, &model, step, m, o);
                } else {
                        int reason = next_random(&x) % 2 ? DISCONNECTED : LEASE_EXPIRED;

                        model_drop(r, &model, step, m, (size_t)(next_random(&x) % m->n), reason);
                }
                model_check(r, &model, step);
        }

        /* A generator that never reached some rule would make the check vacuous. */
        for (unsigned s = 0; s < _STAT_N; s++)
                if (model.counts[s] < 20)
                        fail_msg("step kind %u ran only %u times", s, model.counts[s]);

        /* Release everything, owners in turn. */
        for (unsigned o = 0; o < N_MODEL_OWNERS; o++)
                for (size_t k = 0; k < N_MODEL_NAMES; k++) {
                        model_release(r, &model, N_MODEL_STEPS + o, &model.names[k], o);
                        model_check(r, &model, N_MODEL_STEPS + o);
                }
        assert_int_equal(r->n_names, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_request_free_name, setup_registry, teardown_registry),
                cmocka_unit_test_setup_teardown(test_already_owner, setup_registry, teardown_registry),
                cmocka_unit_test_setup_teardown(test_queue, setup_registry, teardown_registry),
                cmocka_unit_test_setup_teardown(test_do_not_queue, setup_registry, teardown_registry),
                cmocka_unit_test_setup_teardown(test_replace, setup_registry, teardown_registry),
                cmocka_unit_test_setup_teardown(test_replace_do_not_queue, setup_registry, teardown_registry),
                cmocka_unit_test_setup_teardown(test_replace_refused, setup_registry, teardown_registry),
                cmocka_unit_test_setup_teardown(test_release_errors, setup_registry, teardown_registry),
                cmocka_unit_test_setup_teardown(test_drop, setup_registry, teardown_registry),
                cmocka_unit_test_setup_teardown(test_owner_link, setup_registry, teardown_registry),
                cmocka_unit_test_setup_teardown(test_name_max, setup_registry, teardown_registry),
                cmocka_unit_test_setup_teardown(test_many_names, setup_registry, teardown_registry),
                cmocka_unit_test_setup_teardown(test_model, setup_registry, teardown_registry),
        };

        return cmocka_run_group_tests_name("Name registry", tests, NULL, NULL);
}
