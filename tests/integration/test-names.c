/*
 * Well-known names, leases, last wills and call deadlines against a real
 * plexusd: RequestName results and owner queues, hand-off on release,
 * disconnect and lease expiry, lease renewal (automatic and explicit),
 * last wills, replacement, calls addressed to names, the order of change
 * signals, plx_bus_wait_for_name(), the name grammar on both sides, the
 * per-client name limit, and pending calls that time out (10,000 at once),
 * answered late, spoofed or answered twice.
 *
 * Most cases use several connections of the test process, one per client
 * of the scenario, plus a Watch: a connection subscribed to every name's
 * change topic ("plexus/names/#") and to "test/#", where last wills go. It
 * records every signal with its sequence number, so a test checks what
 * changed, why, and in which order. Clients that must die, hang or answer
 * calls are forked processes (NameService and a few small mains) that
 * check with child_assert*() and report over their pipe, never with cmocka.
 *
 * "Nothing else happened" is checked with a sync marker: once the step
 * under test has been answered, the Watch publishes on SYNC_TOPIC and waits
 * for its own signal. The broker routes the marker after everything it did
 * for the step, and a receiver gets frames in routing order, so every
 * signal the step caused has been recorded by then.
 *
 * Leases are LEASE_MS long, scaled by $PLEXUS_TEST_TIMEOUT_SCALE like every
 * other wait, so the cases hold under valgrind; each case waits well under
 * a second otherwise. Only one allowance is made for slow runs: libplexus
 * times a call out by itself 1 s (unscaled) after the broker should have,
 * so there a call may see that Timeout first, provided the broker's own
 * Timeout for it still arrives (call_timed_out()).
 */

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "harness.h"
#include "plexus.pb-c.h"
#include "raw.h"
#include "service.h"

#define NAME "org.example.Names"
#define OTHER_NAME "org.example.Other"
#define NOBODY_NAME "org.example.Nobody"
#define WILL_TOPIC "test/will/names"
#define WILL_PAYLOAD "owner gone"
#define SYNC_TOPIC "test/sync"

#define LEASE_MS 150                    /* short leases; scaled */
#define LATE_MS 200                     /* an owner that comes late; scaled */
#define PROMPT_MS 1000                  /* "at once" / "soon after the deadline"; scaled */
#define LONG_TIMEOUT_USEC (10ull * 1000 * 1000)
#define MAX_EVENTS 64
#define ID_MAX 32

/* --- helpers ------------------------------------------------------------ */

static int wait_ms(void) {
        return harness_timeout_ms(HARNESS_TIMEOUT_MS);
}

static int lease_ms(void) {
        return harness_timeout_ms(LEASE_MS);
}

static uint64_t ms_to_usec(int ms) {
        return (uint64_t)ms * 1000u;
}

static void msleep(int ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static plx_bus *bus_connect(const Harness *h, const char *description) {
        plx_bus *bus = NULL;
        int r;

        r = plx_bus_new(&bus, h->address, description);
        if (r < 0)
                fail_msg("plx_bus_new: %s", strerror(-r));
        return bus;
}

static const char *id_of(plx_bus *bus) {
        return plx_bus_get_unique_id(bus);
}

/* The broker's answer to GetNameOwner must be @expected; NULL: no owner. */
static void check_owner(plx_bus *bus, const char *name, const char *expected) {
        char *owner = NULL;
        int r;

        r = plx_bus_get_name_owner(bus, name, &owner);
        if (!expected) {
                if (r != -ENXIO)
                        fail_msg("%s: owner %s (%d), expected none", name, r == 0 ? owner : "?", r);
                return;
        }
        if (r < 0)
                fail_msg("%s: no owner (%s), expected %s", name, strerror(-r), expected);
        if (strcmp(owner, expected) != 0)
                fail_msg("%s: owner %s, expected %s", name, owner, expected);
        free(owner);
}

/* Waits (bounded) until the broker has noticed that client @id is gone. */
static void wait_gone(plx_bus *bus, const char *id) {
        uint64_t deadline = harness_now_ms() + (uint64_t)wait_ms();
        int r;

        /* GetNameOwner answers a unique id with itself while that client is connected. */
        while ((r = plx_bus_get_name_owner(bus, id, NULL)) == 0) {
                if (harness_now_ms() >= deadline)
                        fail_msg("the broker still knows %s", id);
                msleep(1);
        }
        assert_int_equal(r, -ENXIO);
}

/* Drives @bus for @ms without anything to wait for, e.g. to let it renew leases. */
static void drive_for(plx_bus *bus, int ms) {
        bool never = false;

        assert_int_equal(harness_bus_wait(bus, &never, ms), -ETIMEDOUT);
}

static void make_name(char *buf, size_t len) {
        assert_true(len >= 3);
        memset(buf, 'x', len);
        memcpy(buf, "a.", 2);
        buf[len] = 0;
}

/* --- the Watch ---------------------------------------------------------- */

typedef struct Event {
        char topic[256];
        char name[256];
        char old_owner[ID_MAX];
        char new_owner[ID_MAX];
        int reason;                     /* PLX_NAME_CHANGE_*; 0 for other signals */
        char sender[ID_MAX];
        pid_t sender_pid;
        char payload[64];
        uint64_t sequence;
        uint64_t delivery;
} Event;

typedef struct Watch {
        plx_bus *bus;
        Event events[MAX_EVENTS];
        size_t n_events;
        size_t n_wanted;
        unsigned int n_syncs_sent;
        unsigned int n_syncs_seen;
        bool done;
} Watch;

static void watch_update(Watch *w) {
        w->done = w->n_events >= w->n_wanted && w->n_syncs_seen == w->n_syncs_sent;
}

static int on_watch_signal(plx_msg *m, void *userdata) {
        Watch *w = userdata;
        const char *topic = plx_msg_get_topic(m);
        const char *name, *old_owner, *new_owner;
        const void *p;
        Event *e;
        size_t n;
        int reason, r;

        if (strcmp(topic, SYNC_TOPIC) == 0) {
                if (strcmp(plx_msg_get_sender(m), id_of(w->bus)) == 0)
                        w->n_syncs_seen++;
                watch_update(w);
                return 0;
        }
        if (w->n_events >= MAX_EVENTS)
                return -ENOBUFS;

        e = &w->events[w->n_events++];
        *e = (Event) {};
        p = plx_msg_get_payload(m, &n);
        snprintf(e->topic, sizeof(e->topic), "%s", topic);
        snprintf(e->sender, sizeof(e->sender), "%s", plx_msg_get_sender(m));
        snprintf(e->payload, sizeof(e->payload), "%.*s", (int)n, (const char *)p);
        e->sender_pid = plx_msg_get_sender_pid(m);
        e->sequence = plx_msg_get_sequence(m);
        e->delivery = plx_msg_get_delivery(m);

        r = plx_msg_get_name_change(m, &name, &old_owner, &new_owner, &reason);
        if (strncmp(topic, PLX_TOPIC_NAMES_PREFIX, strlen(PLX_TOPIC_NAMES_PREFIX)) == 0) {
                if (r < 0)
                        return r;
                snprintf(e->name, sizeof(e->name), "%s", name);
                snprintf(e->old_owner, sizeof(e->old_owner), "%s", old_owner);
                snprintf(e->new_owner, sizeof(e->new_owner), "%s", new_owner);
                e->reason = reason;
        } else if (r != -EINVAL) {
                /* Only the broker's signals on name topics are name changes. */
                return -EPROTO;
        }
        watch_update(w);
        return 0;
}

static Watch *watch_new(const Harness *h, const char *pattern) {
        Watch *w = calloc(1, sizeof(*w));

        assert_non_null(w);
        w->bus = bus_connect(h, "watch");
        assert_int_equal(plx_bus_subscribe(w->bus, NULL, pattern, on_watch_signal, w), 0);
        assert_int_equal(plx_bus_subscribe(w->bus, NULL, "test/#", on_watch_signal, w), 0);
        return w;
}

static void watch_freep(Watch **w) {
        if (!*w)
                return;
        plx_bus_free((*w)->bus);
        free(*w);
}

#define _cleanup_watch_ __attribute__((__cleanup__(watch_freep)))

static const char *reason_str(int reason) {
        static const char *const names[] = { "0", "REQUESTED", "RELEASED", "REPLACED", "DISCONNECTED",
                                             "LEASE_EXPIRED" };

        return reason >= 0 && reason < 6 ? names[reason] : "?";
}

static void watch_dump(const Watch *w) {
        for (size_t i = 0; i < w->n_events; i++) {
                const Event *e = &w->events[i];

                if (e->reason)
                        fprintf(stderr, "  [%zu] seq %llu %s: \"%s\" -> \"%s\" %s\n", i,
                                (unsigned long long)e->sequence, e->name, e->old_owner, e->new_owner,
                                reason_str(e->reason));
                else
                        fprintf(stderr, "  [%zu] seq %llu %s from %s: \"%s\"\n", i,
                                (unsigned long long)e->sequence, e->topic, e->sender, e->payload);
        }
}

/* Waits until @n_events signals (and every sync marker sent) have arrived. */
static void watch_wait(Watch *w, size_t n_events, int timeout_ms) {
        int r;

        w->n_wanted = n_events;
        watch_update(w);
        r = harness_bus_wait(w->bus, &w->done, timeout_ms);
        if (r < 0) {
                watch_dump(w);
                fail_msg("waited for %zu signals, have %zu: %s", n_events, w->n_events, strerror(-r));
        }
}

/* Everything routed before now has been recorded once this returns. */
static void watch_sync(Watch *w) {
        assert_int_equal(plx_bus_publish(w->bus, SYNC_TOPIC, NULL, 0), 0);
        w->n_syncs_sent++;
        watch_wait(w, w->n_events, wait_ms());
}

/* Syncs, then requires exactly @n signals, in increasing sequence order. */
static void watch_expect(Watch *w, size_t n) {
        watch_sync(w);
        if (w->n_events != n) {
                watch_dump(w);
                fail_msg("%zu signals, expected %zu", w->n_events, n);
        }
        for (size_t i = 1; i < n; i++) {
                if (w->events[i].sequence <= w->events[i - 1].sequence) {
                        watch_dump(w);
                        fail_msg("signal %zu has sequence %llu after %llu", i,
                                 (unsigned long long)w->events[i].sequence,
                                 (unsigned long long)w->events[i - 1].sequence);
                }
        }
}

/* Signal @i is the broker's change of @name from @old_owner to @new_owner (NULL: none). */
static void check_change(const Watch *w, size_t i, const char *name, const char *old_owner,
                         const char *new_owner, int reason) {
        const Event *e = &w->events[i];
        char topic[300];

        snprintf(topic, sizeof(topic), PLX_TOPIC_NAMES_PREFIX "%s", name);
        if (i >= w->n_events || strcmp(e->topic, topic) != 0 || strcmp(e->name, name) != 0 ||
            strcmp(e->old_owner, old_owner ?: "") != 0 || strcmp(e->new_owner, new_owner ?: "") != 0 ||
            e->reason != reason || strcmp(e->sender, PLX_BROKER) != 0) {
                watch_dump(w);
                fail_msg("signal %zu: expected %s: \"%s\" -> \"%s\" %s from plexus", i, name, old_owner ?: "",
                         new_owner ?: "", reason_str(reason));
        }
}

/* Signal @i is @owner's last will: @payload on @topic, sent as @owner (pid @pid, 0: any). */
static void check_will(const Watch *w, size_t i, const char *topic, const char *owner, pid_t pid,
                       const char *payload) {
        const Event *e = &w->events[i];

        if (i >= w->n_events || e->reason != 0 || strcmp(e->topic, topic) != 0 ||
            strcmp(e->sender, owner) != 0 || strcmp(e->payload, payload) != 0 ||
            (pid > 0 && e->sender_pid != pid)) {
                watch_dump(w);
                fail_msg("signal %zu: expected the will \"%s\" on %s from %s (pid %d)", i, payload, topic,
                         owner, (int)pid);
        }
}

/* --- raw broker calls --------------------------------------------------- */

/* Calls broker method @member with a hand-packed @request, as no libplexus helper would. */
static int call_broker(plx_bus *bus, const char *member, const ProtobufCMessage *request, plx_msg **ret_reply) {
        static uint8_t buf[8192];
        size_t n = 0;

        if (request) {
                n = protobuf_c_message_get_packed_size(request);
                assert_true(n <= sizeof(buf));
                protobuf_c_message_pack(request, buf);
        }
        return plx_bus_call(bus, PLX_BROKER, member, buf, n, LONG_TIMEOUT_USEC, ret_reply);
}

static void expect_invalid_args(plx_bus *bus, const char *member, const ProtobufCMessage *request,
                                const char *what) {
        _cleanup_msg_ plx_msg *reply = NULL;
        int r;

        r = call_broker(bus, member, request, &reply);
        if (r != -EREMOTEIO || strcmp(plx_msg_get_error_name(reply), PLX_ERROR_INVALID_ARGS) != 0)
                fail_msg("%s %s: %d %s, expected %s", member, what, r,
                         r == -EREMOTEIO ? plx_msg_get_error_name(reply) : "", PLX_ERROR_INVALID_ARGS);
}

/* ListQueuedOwners: the primary owner, then the queue; returns the count. */
static size_t list_owners(plx_bus *bus, const char *name, char ids[][ID_MAX], size_t max) {
        Plexus__NameRequest req = PLEXUS__NAME_REQUEST__INIT;
        _cleanup_msg_ plx_msg *reply = NULL;
        Plexus__NameOwners *owners;
        const void *p;
        size_t n, i;

        req.name = (char *)name;
        assert_int_equal(call_broker(bus, "ListQueuedOwners", &req.base, &reply), 0);
        p = plx_msg_get_payload(reply, &n);
        owners = plexus__name_owners__unpack(NULL, n, p);
        assert_non_null(owners);
        for (i = 0; i < owners->n_owners && i < max; i++)
                snprintf(ids[i], ID_MAX, "%s", owners->owners[i]);
        n = owners->n_owners;
        plexus__name_owners__free_unpacked(owners, NULL);
        assert_true(n <= max);
        return n;
}

/* --- forked clients ----------------------------------------------------- */

/*
 * NameService: a client that may request a name at start and then serves
 *   Who        -> its unique id
 *   Release    -> releases the name; answers the result as text
 *   Hang       never answered (nor kept); counted
 *   Count      -> how many Hang calls arrived, as text
 *   Quit       -> REPLY, then it disconnects and exits 0
 * It reports "ready <unique-id> <RequestName result>" and exits 0 when the
 * broker goes away too.
 */
typedef struct NameService {
        const char *address;
        const char *name;               /* requested at start; NULL for none */
        uint32_t flags;
        uint64_t lease_usec;
        const char *will_topic;         /* NULL for none */
        const char *will_payload;
} NameService;

typedef struct NameServiceState {
        const NameService *args;
        plx_bus *bus;
        unsigned long n_hung;
} NameServiceState;

static int reply_number(plx_msg *call, long value) {
        char text[32];
        int n;

        n = snprintf(text, sizeof(text), "%ld", value);
        return plx_msg_reply(call, text, (size_t)n);
}

static int on_who(plx_msg *call, void *userdata) {
        NameServiceState *s = userdata;

        return plx_msg_reply(call, id_of(s->bus), strlen(id_of(s->bus)));
}

static int on_release(plx_msg *call, void *userdata) {
        NameServiceState *s = userdata;

        return reply_number(call, plx_bus_release_name(s->bus, s->args->name));
}

static int on_hang(plx_msg *call, void *userdata) {
        NameServiceState *s = userdata;

        s->n_hung++;
        return 0;
}

static int on_count(plx_msg *call, void *userdata) {
        NameServiceState *s = userdata;

        return reply_number(call, (long)s->n_hung);
}

static int on_quit(plx_msg *call, void *userdata) {
        NameServiceState *s = userdata;
        int r;

        r = plx_msg_reply(call, NULL, 0);
        plx_bus_exit(s->bus, 0);
        return r;
}

static int name_service_main(int report_fd, int control_fd, void *userdata) {
        static const struct {
                const char *member;
                plx_method_fn fn;
        } methods[] = {
                { "Who", on_who },
                { "Release", on_release },
                { "Hang", on_hang },
                { "Count", on_count },
                { "Quit", on_quit },
        };
        NameServiceState s = { .args = userdata };
        const NameService *a = s.args;
        int r, result = 0;

        r = plx_bus_new(&s.bus, a->address, "name-service");
        if (r < 0)
                child_fail("name service: plx_bus_new: %s", strerror(-r));
        for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
                r = plx_bus_add_method(s.bus, NULL, methods[i].member, methods[i].fn, &s);
                if (r < 0)
                        child_fail("name service: add_method %s: %s", methods[i].member, strerror(-r));
        }
        if (a->name) {
                result = plx_bus_request_name_lease(s.bus, a->name, a->flags, a->lease_usec, a->will_topic,
                                                    a->will_payload,
                                                    a->will_payload ? strlen(a->will_payload) : 0);
                if (result < 0)
                        child_fail("name service: request %s: %s", a->name, strerror(-result));
        }
        harness_report(report_fd, "ready %s %d", id_of(s.bus), result);

        r = plx_bus_run(s.bus);
        if (r == 0)
                r = plx_bus_flush(s.bus);
        plx_bus_free(s.bus);
        if (r < 0 && r != -ECONNRESET)
                child_fail("name service: plx_bus_run: %s", strerror(-r));
        return 0;
}

/*
 * Forks @fn, which reports "ready <unique-id> <result>" first.
 * Return: the result (>= 0), or a negative errno (the child is reaped then).
 */
static int fork_ready(HarnessChild *ret, HarnessChildFn fn, const void *args, char *ret_id) {
        HarnessChild c = HARNESS_CHILD_NULL;
        char line[300], id[ID_MAX];
        int r, result;

        r = harness_child_fork(&c, fn, (void *)args);
        if (r < 0)
                return r;
        r = harness_read_line(c.report_fd, line, sizeof(line), wait_ms());
        if (r < 0 || sscanf(line, "ready %31s %d", id, &result) != 2) {
                fprintf(stderr, "child did not get ready (%s): \"%s\"\n", r < 0 ? strerror(-r) : "bad line",
                        r < 0 ? "" : line);
                harness_child_wait(&c, 1000);
                return r < 0 ? r : -EPROTO;
        }
        strcpy(ret_id, id);
        *ret = c;
        return result;
}

static void service_quit(plx_bus *bus, HarnessChild *c, const char *id) {
        assert_int_equal(plx_bus_call(bus, id, "Quit", NULL, 0, LONG_TIMEOUT_USEC, NULL), 0);
        assert_int_equal(harness_child_wait(c, wait_ms()), 0);
}

/* Calls @member at @destination and requires the text @expected back. */
static void call_expect(plx_bus *bus, const char *destination, const char *member, const char *expected) {
        _cleanup_msg_ plx_msg *reply = NULL;
        const void *p;
        size_t n;
        int r;

        r = plx_bus_call(bus, destination, member, NULL, 0, LONG_TIMEOUT_USEC, &reply);
        if (r < 0)
                fail_msg("call %s %s: %s %s", destination, member, strerror(-r),
                         r == -EREMOTEIO ? plx_msg_get_error_name(reply) : "");
        p = plx_msg_get_payload(reply, &n);
        if (n != strlen(expected) || memcmp(p, expected, n) != 0)
                fail_msg("call %s %s: \"%.*s\", expected \"%s\"", destination, member, (int)n,
                         (const char *)p, expected);
}

/* --- RequestName results and queues ------------------------------------ */

static void test_request_results(void **state) {
        Harness *h = *state;
        _cleanup_watch_ Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        _cleanup_bus_ plx_bus *a = bus_connect(h, "a");
        _cleanup_bus_ plx_bus *b = bus_connect(h, "b");
        _cleanup_bus_ plx_bus *c = bus_connect(h, "c");
        _cleanup_bus_ plx_bus *d = bus_connect(h, "d");
        _cleanup_bus_ plx_bus *e = bus_connect(h, "e");
        char ids[8][ID_MAX];

        assert_int_equal(plx_bus_request_name(a, NAME, 0), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_request_name(a, NAME, 0), PLX_NAME_ALREADY_OWNER);
        assert_int_equal(plx_bus_request_name(b, NAME, 0), PLX_NAME_IN_QUEUE);
        assert_int_equal(plx_bus_request_name(b, NAME, 0), PLX_NAME_IN_QUEUE);
        assert_int_equal(plx_bus_request_name(c, NAME, PLX_NAME_DO_NOT_QUEUE), PLX_NAME_EXISTS);
        assert_int_equal(plx_bus_request_name(d, NAME, 0), PLX_NAME_IN_QUEUE);
        assert_int_equal(plx_bus_request_name(c, NAME, 0), PLX_NAME_IN_QUEUE);
        /* Queued, then asking not to wait: EXISTS, and it leaves the queue. */
        assert_int_equal(plx_bus_request_name(e, NAME, 0), PLX_NAME_IN_QUEUE);
        assert_int_equal(plx_bus_request_name(e, NAME, PLX_NAME_DO_NOT_QUEUE), PLX_NAME_EXISTS);
        assert_int_equal(plx_bus_release_name(e, NAME), PLX_NAME_NOT_OWNER);
        check_owner(e, NAME, id_of(a));

        /* The broker's own view of the queue (not in the public API). */
        assert_int_equal(list_owners(e, NAME, ids, 8), 4);
        assert_string_equal(ids[0], id_of(a));
        assert_string_equal(ids[1], id_of(b));
        assert_string_equal(ids[2], id_of(d));
        assert_string_equal(ids[3], id_of(c));

        assert_int_equal(plx_bus_release_name(e, NOBODY_NAME), PLX_NAME_NON_EXISTENT);
        check_owner(e, NOBODY_NAME, NULL);
        /* GetNameOwner also answers for a connected unique id: the id itself. */
        check_owner(e, id_of(d), id_of(d));

        /* The queue hands the name on in request order: b, d, c. */
        assert_int_equal(plx_bus_release_name(a, NAME), PLX_NAME_RELEASED);
        check_owner(e, NAME, id_of(b));
        assert_int_equal(plx_bus_release_name(a, NAME), PLX_NAME_NOT_OWNER);
        assert_int_equal(plx_bus_release_name(b, NAME), PLX_NAME_RELEASED);
        check_owner(e, NAME, id_of(d));
        assert_int_equal(plx_bus_release_name(d, NAME), PLX_NAME_RELEASED);
        check_owner(e, NAME, id_of(c));
        assert_int_equal(plx_bus_release_name(c, NAME), PLX_NAME_RELEASED);
        check_owner(e, NAME, NULL);
        assert_int_equal(plx_bus_release_name(c, NAME), PLX_NAME_NON_EXISTENT);

        watch_expect(w, 5);
        check_change(w, 0, NAME, NULL, id_of(a), PLX_NAME_CHANGE_REQUESTED);
        check_change(w, 1, NAME, id_of(a), id_of(b), PLX_NAME_CHANGE_RELEASED);
        check_change(w, 2, NAME, id_of(b), id_of(d), PLX_NAME_CHANGE_RELEASED);
        check_change(w, 3, NAME, id_of(d), id_of(c), PLX_NAME_CHANGE_RELEASED);
        check_change(w, 4, NAME, id_of(c), NULL, PLX_NAME_CHANGE_RELEASED);
}

/* --- hand-off on disconnect --------------------------------------------- */

/* The owner (with a last will) goes away by exiting or by SIGKILL; b is next. */
static void handoff_on_disconnect(Harness *h, bool kill_it) {
        _cleanup_watch_ Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        _cleanup_bus_ plx_bus *b = bus_connect(h, "b");
        NameService args = {
                .address = h->address,
                .name = NAME,
                .will_topic = WILL_TOPIC,
                .will_payload = WILL_PAYLOAD,
        };
        HarnessChild svc = HARNESS_CHILD_NULL;
        char svc_id[ID_MAX];
        pid_t pid;

        assert_int_equal(fork_ready(&svc, name_service_main, &args, svc_id), PLX_NAME_PRIMARY_OWNER);
        pid = svc.pid;
        assert_int_equal(plx_bus_request_name(b, NAME, 0), PLX_NAME_IN_QUEUE);
        check_owner(b, NAME, svc_id);

        if (kill_it) {
                assert_int_equal(kill(pid, SIGKILL), 0);
                assert_int_equal(harness_child_wait(&svc, wait_ms()), 128 + SIGKILL);
        } else {
                service_quit(b, &svc, svc_id);
        }

        watch_wait(w, 3, wait_ms());
        watch_expect(w, 3);
        check_change(w, 0, NAME, NULL, svc_id, PLX_NAME_CHANGE_REQUESTED);
        check_will(w, 1, WILL_TOPIC, svc_id, pid, WILL_PAYLOAD);
        check_change(w, 2, NAME, svc_id, id_of(b), PLX_NAME_CHANGE_DISCONNECTED);
        check_owner(b, NAME, id_of(b));
}

static void test_handoff_on_exit(void **state) {
        handoff_on_disconnect(*state, false);
}

static void test_handoff_on_sigkill(void **state) {
        handoff_on_disconnect(*state, true);
}

/* --- leases ------------------------------------------------------------- */

/* The owner does not renew: the name goes to the next in the queue, will first. */
static void test_handoff_on_lease_expiry(void **state) {
        Harness *h = *state;
        _cleanup_watch_ Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        _cleanup_bus_ plx_bus *a = bus_connect(h, "a");
        _cleanup_bus_ plx_bus *b = bus_connect(h, "b");
        uint64_t start, elapsed;

        start = harness_now_ms();
        assert_int_equal(plx_bus_request_name_lease(a, NAME, PLX_NAME_NO_AUTO_RENEW, ms_to_usec(lease_ms()),
                                                    WILL_TOPIC, WILL_PAYLOAD, strlen(WILL_PAYLOAD)),
                         PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_request_name(b, NAME, 0), PLX_NAME_IN_QUEUE);
        check_owner(b, NAME, id_of(a));

        watch_wait(w, 3, lease_ms() + harness_timeout_ms(PROMPT_MS));
        elapsed = harness_now_ms() - start;
        if (elapsed < (uint64_t)lease_ms())
                fail_msg("lease of %d ms expired after %llu ms", lease_ms(), (unsigned long long)elapsed);

        watch_expect(w, 3);
        check_change(w, 0, NAME, NULL, id_of(a), PLX_NAME_CHANGE_REQUESTED);
        check_will(w, 1, WILL_TOPIC, id_of(a), getpid(), WILL_PAYLOAD);
        check_change(w, 2, NAME, id_of(a), id_of(b), PLX_NAME_CHANGE_LEASE_EXPIRED);
        check_owner(b, NAME, id_of(b));

        /* a learns it lost the name. */
        assert_int_equal(plx_bus_renew_name(a, NAME), -ENXIO);
        assert_int_equal(plx_bus_release_name(a, NAME), PLX_NAME_NOT_OWNER);
}

/*
 * The sole owner, with a last will, does not renew: nobody waits for the
 * name, so it falls free. The will goes out first, as the lost owner, then
 * the change to no owner with LEASE_EXPIRED; the name is gone. (The
 * hand-off case above has a queued client take over; this path has none.)
 */
static void test_will_on_lease_expiry(void **state) {
        Harness *h = *state;
        _cleanup_watch_ Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        _cleanup_bus_ plx_bus *a = bus_connect(h, "a");
        uint64_t start, elapsed;

        start = harness_now_ms();
        assert_int_equal(plx_bus_request_name_lease(a, NAME, PLX_NAME_NO_AUTO_RENEW, ms_to_usec(lease_ms()),
                                                    WILL_TOPIC, WILL_PAYLOAD, strlen(WILL_PAYLOAD)),
                         PLX_NAME_PRIMARY_OWNER);
        check_owner(w->bus, NAME, id_of(a));

        /* a neither renews nor processes from here on. */
        watch_wait(w, 3, lease_ms() + harness_timeout_ms(PROMPT_MS));
        elapsed = harness_now_ms() - start;
        if (elapsed < (uint64_t)lease_ms())
                fail_msg("lease of %d ms expired after %llu ms", lease_ms(), (unsigned long long)elapsed);

        watch_expect(w, 3);
        check_change(w, 0, NAME, NULL, id_of(a), PLX_NAME_CHANGE_REQUESTED);
        check_will(w, 1, WILL_TOPIC, id_of(a), getpid(), WILL_PAYLOAD);
        check_change(w, 2, NAME, id_of(a), NULL, PLX_NAME_CHANGE_LEASE_EXPIRED);
        check_owner(w->bus, NAME, NULL);

        /* a is still connected, and learns it lost the name. */
        assert_int_equal(plx_bus_renew_name(a, NAME), -ENXIO);
        assert_int_equal(plx_bus_release_name(a, NAME), PLX_NAME_NON_EXISTENT);
        watch_expect(w, 3);
}

typedef struct HungOwner {
        const char *address;
        const char *name;
        uint64_t lease_usec;
} HungOwner;

/* Takes a name with an automatically renewed lease, then stops processing. */
static int hung_owner_main(int report_fd, int control_fd, void *userdata) {
        const HungOwner *a = userdata;
        _cleanup_bus_ plx_bus *bus = NULL;
        char line[8], *owner = NULL;
        int r;

        r = plx_bus_new(&bus, a->address, "hung-owner");
        if (r < 0)
                child_fail("plx_bus_new: %s", strerror(-r));
        r = plx_bus_request_name_lease(bus, a->name, 0, a->lease_usec, NULL, NULL, 0);
        child_assert_int_eq(r, PLX_NAME_PRIMARY_OWNER);
        harness_report(report_fd, "ready %s %d", id_of(bus), r);

        /* Hung: no plx_bus_process(), so libplexus cannot renew the lease. */
        r = harness_read_line(control_fd, line, sizeof(line), harness_timeout_ms(HARNESS_TIMEOUT_MS));
        if (r < 0)
                child_fail("no go from the parent: %s", strerror(-r));

        child_assert_int_eq(plx_bus_renew_name(bus, a->name), -ENXIO);
        child_assert_int_eq(plx_bus_get_name_owner(bus, a->name, &owner), 0);
        child_assert(strcmp(owner, id_of(bus)) != 0);
        free(owner);
        return 0;
}

static void test_hung_owner_loses_name(void **state) {
        Harness *h = *state;
        _cleanup_watch_ Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        _cleanup_bus_ plx_bus *b = bus_connect(h, "b");
        HungOwner args = { .address = h->address, .name = NAME, .lease_usec = ms_to_usec(lease_ms()) };
        HarnessChild hung = HARNESS_CHILD_NULL;
        char hung_id[ID_MAX];
        uint64_t start, elapsed;

        start = harness_now_ms();
        assert_int_equal(fork_ready(&hung, hung_owner_main, &args, hung_id), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_request_name(b, NAME, 0), PLX_NAME_IN_QUEUE);

        watch_wait(w, 2, lease_ms() + harness_timeout_ms(PROMPT_MS));
        elapsed = harness_now_ms() - start;
        if (elapsed < (uint64_t)lease_ms())
                fail_msg("lease of %d ms expired after %llu ms", lease_ms(), (unsigned long long)elapsed);
        watch_expect(w, 2);
        check_change(w, 0, NAME, NULL, hung_id, PLX_NAME_CHANGE_REQUESTED);
        check_change(w, 1, NAME, hung_id, id_of(b), PLX_NAME_CHANGE_LEASE_EXPIRED);

        assert_int_equal(harness_write_byte(hung.control_fd, '\n'), 0);
        assert_int_equal(harness_child_wait(&hung, wait_ms()), 0);
}

/* libplexus renews from plx_bus_process(): processing for 3+ leases keeps the name. */
static void test_lease_auto_renewal(void **state) {
        Harness *h = *state;
        _cleanup_watch_ Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        _cleanup_bus_ plx_bus *a = bus_connect(h, "a");

        assert_int_equal(plx_bus_request_name_lease(a, NAME, 0, ms_to_usec(lease_ms()), WILL_TOPIC,
                                                    WILL_PAYLOAD, strlen(WILL_PAYLOAD)),
                         PLX_NAME_PRIMARY_OWNER);
        drive_for(a, lease_ms() * 10 / 3);
        check_owner(w->bus, NAME, id_of(a));
        watch_expect(w, 1);
        check_change(w, 0, NAME, NULL, id_of(a), PLX_NAME_CHANGE_REQUESTED);
}

/* PLX_NAME_NO_AUTO_RENEW: explicit renewals keep it; without them it is lost. */
static void test_lease_explicit_renewal(void **state) {
        Harness *h = *state;
        _cleanup_watch_ Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        _cleanup_bus_ plx_bus *a = bus_connect(h, "a");
        uint64_t last;

        assert_int_equal(plx_bus_request_name_lease(a, NAME, PLX_NAME_NO_AUTO_RENEW, ms_to_usec(lease_ms()),
                                                    NULL, NULL, 0),
                         PLX_NAME_PRIMARY_OWNER);
        /* A renewal every fifth of the lease, for more than three leases. */
        for (int i = 0; i < 16; i++) {
                msleep(lease_ms() / 5);
                assert_int_equal(plx_bus_renew_name(a, NAME), 0);
        }
        last = harness_now_ms();
        check_owner(w->bus, NAME, id_of(a));
        watch_expect(w, 1);

        /* No more renewals. */
        watch_wait(w, 2, lease_ms() + harness_timeout_ms(PROMPT_MS));
        if (harness_now_ms() - last < (uint64_t)lease_ms())
                fail_msg("lease expired %llu ms after the last renewal, lease %d ms",
                         (unsigned long long)(harness_now_ms() - last), lease_ms());
        watch_expect(w, 2);
        check_change(w, 1, NAME, id_of(a), NULL, PLX_NAME_CHANGE_LEASE_EXPIRED);
        check_owner(a, NAME, NULL);
        assert_int_equal(plx_bus_renew_name(a, NAME), -ENXIO);
}

static void test_renew_not_owned(void **state) {
        Harness *h = *state;
        _cleanup_bus_ plx_bus *a = bus_connect(h, "a");
        _cleanup_bus_ plx_bus *b = bus_connect(h, "b");

        /* Nobody has it; someone else has it; we released it. */
        assert_int_equal(plx_bus_renew_name(a, NOBODY_NAME), -ENXIO);
        assert_int_equal(plx_bus_request_name(b, NAME, 0), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_renew_name(a, NAME), -ENXIO);
        assert_int_equal(plx_bus_request_name(a, OTHER_NAME, 0), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_release_name(a, OTHER_NAME), PLX_NAME_RELEASED);
        assert_int_equal(plx_bus_renew_name(a, OTHER_NAME), -ENXIO);

        /* Owned or queued without a lease: nothing to renew, and that is fine. */
        assert_int_equal(plx_bus_renew_name(b, NAME), 0);
        assert_int_equal(plx_bus_request_name(a, NAME, 0), PLX_NAME_IN_QUEUE);
        assert_int_equal(plx_bus_renew_name(a, NAME), 0);
}

/* A request without a lease removes the lease of an earlier request. */
static void test_lease_removed_by_request(void **state) {
        Harness *h = *state;
        _cleanup_watch_ Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        _cleanup_bus_ plx_bus *a = bus_connect(h, "a");

        assert_int_equal(plx_bus_request_name_lease(a, NAME, PLX_NAME_NO_AUTO_RENEW, ms_to_usec(lease_ms()),
                                                    NULL, NULL, 0),
                         PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_request_name(a, NAME, 0), PLX_NAME_ALREADY_OWNER);
        msleep(lease_ms() * 2);
        check_owner(w->bus, NAME, id_of(a));
        watch_expect(w, 1);
}

/* A queued client's lease runs out: it loses its place, silently. */
static void test_queued_lease_expiry(void **state) {
        Harness *h = *state;
        _cleanup_watch_ Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        _cleanup_bus_ plx_bus *a = bus_connect(h, "a");
        _cleanup_bus_ plx_bus *q = bus_connect(h, "q");

        assert_int_equal(plx_bus_request_name(a, NAME, 0), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_request_name_lease(q, NAME, PLX_NAME_NO_AUTO_RENEW, ms_to_usec(lease_ms()),
                                                    WILL_TOPIC, WILL_PAYLOAD, strlen(WILL_PAYLOAD)),
                         PLX_NAME_IN_QUEUE);
        msleep(lease_ms() * 2);

        /* Had q kept its place, it would get the name now. */
        assert_int_equal(plx_bus_release_name(a, NAME), PLX_NAME_RELEASED);
        check_owner(a, NAME, NULL);
        assert_int_equal(plx_bus_renew_name(q, NAME), -ENXIO);
        watch_expect(w, 2);
        check_change(w, 0, NAME, NULL, id_of(a), PLX_NAME_CHANGE_REQUESTED);
        check_change(w, 1, NAME, id_of(a), NULL, PLX_NAME_CHANGE_RELEASED);
}

/* --- last wills --------------------------------------------------------- */

/* No will on a voluntary release, nor for a client that was only queued. */
static void test_no_will_on_release_or_queued(void **state) {
        Harness *h = *state;
        _cleanup_watch_ Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        _cleanup_bus_ plx_bus *a = bus_connect(h, "a");
        plx_bus *q = bus_connect(h, "q");
        char q_id[ID_MAX];

        assert_int_equal(plx_bus_request_name_lease(a, NAME, 0, 0, WILL_TOPIC, WILL_PAYLOAD,
                                                    strlen(WILL_PAYLOAD)),
                         PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_request_name_lease(q, NAME, 0, 0, "test/will/queued", WILL_PAYLOAD,
                                                    strlen(WILL_PAYLOAD)),
                         PLX_NAME_IN_QUEUE);
        snprintf(q_id, sizeof(q_id), "%s", id_of(q));
        q = plx_bus_free(q);
        /* Else the release could hand the name to q before the broker sees it leave. */
        wait_gone(a, q_id);
        assert_int_equal(plx_bus_release_name(a, NAME), PLX_NAME_RELEASED);

        watch_wait(w, 2, wait_ms());
        watch_expect(w, 2);
        check_change(w, 0, NAME, NULL, id_of(a), PLX_NAME_CHANGE_REQUESTED);
        check_change(w, 1, NAME, id_of(a), NULL, PLX_NAME_CHANGE_RELEASED);
}

/* --- replacement -------------------------------------------------------- */

static void test_replace_existing(void **state) {
        Harness *h = *state;
        _cleanup_watch_ Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        _cleanup_bus_ plx_bus *a = bus_connect(h, "a");
        _cleanup_bus_ plx_bus *b = bus_connect(h, "b");
        _cleanup_bus_ plx_bus *c = bus_connect(h, "c");

        /* a has a will: a replacement is no involuntary loss, no will goes out. */
        assert_int_equal(plx_bus_request_name_lease(a, NAME, PLX_NAME_ALLOW_REPLACEMENT, 0, WILL_TOPIC,
                                                    WILL_PAYLOAD, strlen(WILL_PAYLOAD)),
                         PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_request_name(c, NAME, 0), PLX_NAME_IN_QUEUE);
        assert_int_equal(plx_bus_request_name(b, NAME, PLX_NAME_REPLACE_EXISTING), PLX_NAME_PRIMARY_OWNER);
        check_owner(c, NAME, id_of(b));

        /* a went to the head of the queue, before c. */
        assert_int_equal(plx_bus_release_name(b, NAME), PLX_NAME_RELEASED);
        check_owner(c, NAME, id_of(a));
        assert_int_equal(plx_bus_release_name(a, NAME), PLX_NAME_RELEASED);
        check_owner(c, NAME, id_of(c));
        assert_int_equal(plx_bus_release_name(c, NAME), PLX_NAME_RELEASED);

        watch_expect(w, 5);
        check_change(w, 0, NAME, NULL, id_of(a), PLX_NAME_CHANGE_REQUESTED);
        check_change(w, 1, NAME, id_of(a), id_of(b), PLX_NAME_CHANGE_REPLACED);
        check_change(w, 2, NAME, id_of(b), id_of(a), PLX_NAME_CHANGE_RELEASED);
        check_change(w, 3, NAME, id_of(a), id_of(c), PLX_NAME_CHANGE_RELEASED);
        check_change(w, 4, NAME, id_of(c), NULL, PLX_NAME_CHANGE_RELEASED);
}

static void test_replace_not_allowed(void **state) {
        Harness *h = *state;
        _cleanup_watch_ Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        _cleanup_bus_ plx_bus *a = bus_connect(h, "a");
        _cleanup_bus_ plx_bus *b = bus_connect(h, "b");
        _cleanup_bus_ plx_bus *c = bus_connect(h, "c");

        assert_int_equal(plx_bus_request_name(a, NAME, 0), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_request_name(b, NAME, PLX_NAME_REPLACE_EXISTING), PLX_NAME_IN_QUEUE);
        assert_int_equal(plx_bus_request_name(c, NAME, PLX_NAME_REPLACE_EXISTING | PLX_NAME_DO_NOT_QUEUE),
                         PLX_NAME_EXISTS);
        check_owner(c, NAME, id_of(a));

        /* Asking again updates the flags: now a may be replaced. */
        assert_int_equal(plx_bus_request_name(a, NAME, PLX_NAME_ALLOW_REPLACEMENT), PLX_NAME_ALREADY_OWNER);
        assert_int_equal(plx_bus_request_name(c, NAME, PLX_NAME_REPLACE_EXISTING), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_release_name(c, NAME), PLX_NAME_RELEASED);
        check_owner(c, NAME, id_of(a));
        assert_int_equal(plx_bus_release_name(a, NAME), PLX_NAME_RELEASED);
        check_owner(c, NAME, id_of(b));

        watch_expect(w, 4);
        check_change(w, 0, NAME, NULL, id_of(a), PLX_NAME_CHANGE_REQUESTED);
        check_change(w, 1, NAME, id_of(a), id_of(c), PLX_NAME_CHANGE_REPLACED);
        check_change(w, 2, NAME, id_of(c), id_of(a), PLX_NAME_CHANGE_RELEASED);
        check_change(w, 3, NAME, id_of(a), id_of(b), PLX_NAME_CHANGE_RELEASED);
}

/* An owner that asked DO_NOT_QUEUE leaves the name entirely when replaced. */
static void test_replace_drops_do_not_queue_owner(void **state) {
        Harness *h = *state;
        _cleanup_watch_ Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        _cleanup_bus_ plx_bus *a = bus_connect(h, "a");
        _cleanup_bus_ plx_bus *b = bus_connect(h, "b");
        _cleanup_bus_ plx_bus *q = bus_connect(h, "q");

        assert_int_equal(plx_bus_request_name(a, NAME, PLX_NAME_ALLOW_REPLACEMENT | PLX_NAME_DO_NOT_QUEUE),
                         PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_request_name(q, NAME, 0), PLX_NAME_IN_QUEUE);
        assert_int_equal(plx_bus_request_name(b, NAME, PLX_NAME_REPLACE_EXISTING), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_release_name(a, NAME), PLX_NAME_NOT_OWNER);

        assert_int_equal(plx_bus_release_name(b, NAME), PLX_NAME_RELEASED);
        check_owner(a, NAME, id_of(q));
        assert_int_equal(plx_bus_release_name(q, NAME), PLX_NAME_RELEASED);
        check_owner(a, NAME, NULL);

        watch_expect(w, 4);
        check_change(w, 0, NAME, NULL, id_of(a), PLX_NAME_CHANGE_REQUESTED);
        check_change(w, 1, NAME, id_of(a), id_of(b), PLX_NAME_CHANGE_REPLACED);
        check_change(w, 2, NAME, id_of(b), id_of(q), PLX_NAME_CHANGE_RELEASED);
        check_change(w, 3, NAME, id_of(q), NULL, PLX_NAME_CHANGE_RELEASED);
}

/* --- calls to names ----------------------------------------------------- */

static void test_call_by_name(void **state) {
        Harness *h = *state;
        _cleanup_watch_ Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        _cleanup_bus_ plx_bus *bus = bus_connect(h, "caller");
        NameService args = { .address = h->address, .name = NAME };
        HarnessChild s1 = HARNESS_CHILD_NULL, s2 = HARNESS_CHILD_NULL, s3 = HARNESS_CHILD_NULL;
        char id1[ID_MAX], id2[ID_MAX], id3[ID_MAX];
        _cleanup_msg_ plx_msg *reply = NULL;
        uint64_t start;
        int r;

        assert_int_equal(fork_ready(&s1, name_service_main, &args, id1), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(fork_ready(&s2, name_service_main, &args, id2), PLX_NAME_IN_QUEUE);
        assert_int_equal(fork_ready(&s3, name_service_main, &args, id3), PLX_NAME_IN_QUEUE);

        assert_int_equal(plx_bus_call(bus, NAME, "Who", NULL, 0, LONG_TIMEOUT_USEC, &reply), 0);
        assert_string_equal(plx_msg_get_sender(reply), id1);
        reply = plx_msg_unref(reply);
        call_expect(bus, NAME, "Who", id1);

        /* Hand-off by release: calls go to the new owner. */
        call_expect(bus, id1, "Release", "1");
        call_expect(bus, NAME, "Who", id2);

        /* Hand-off by death. */
        assert_int_equal(kill(s2.pid, SIGKILL), 0);
        assert_int_equal(harness_child_wait(&s2, wait_ms()), 128 + SIGKILL);
        watch_wait(w, 3, wait_ms());
        call_expect(bus, NAME, "Who", id3);

        /* Owned by nobody: ServiceUnknown at once, not after the timeout. */
        service_quit(bus, &s3, id3);
        watch_wait(w, 4, wait_ms());
        watch_expect(w, 4);
        check_change(w, 0, NAME, NULL, id1, PLX_NAME_CHANGE_REQUESTED);
        check_change(w, 1, NAME, id1, id2, PLX_NAME_CHANGE_RELEASED);
        check_change(w, 2, NAME, id2, id3, PLX_NAME_CHANGE_DISCONNECTED);
        check_change(w, 3, NAME, id3, NULL, PLX_NAME_CHANGE_DISCONNECTED);

        for (int i = 0; i < 2; i++) {
                const char *name = i == 0 ? NAME : NOBODY_NAME;

                start = harness_now_ms();
                r = plx_bus_call(bus, name, "Who", NULL, 0, LONG_TIMEOUT_USEC, &reply);
                assert_int_equal(r, -EREMOTEIO);
                assert_string_equal(plx_msg_get_error_name(reply), PLX_ERROR_SERVICE_UNKNOWN);
                assert_string_equal(plx_msg_get_sender(reply), PLX_BROKER);
                reply = plx_msg_unref(reply);
                if (harness_now_ms() - start >= (uint64_t)harness_timeout_ms(PROMPT_MS))
                        fail_msg("ServiceUnknown for %s after %llu ms", name,
                                 (unsigned long long)(harness_now_ms() - start));
        }

        service_quit(bus, &s1, id1);
}

/* --- order of change signals -------------------------------------------- */

static void test_change_order(void **state) {
        Harness *h = *state;
        _cleanup_watch_ Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        _cleanup_bus_ plx_bus *a = bus_connect(h, "a");
        _cleanup_bus_ plx_bus *b = bus_connect(h, "b");
        _cleanup_bus_ plx_bus *c = bus_connect(h, "c");
        plx_bus *d = bus_connect(h, "d");
        char d_id[ID_MAX];

        snprintf(d_id, sizeof(d_id), "%s", id_of(d));
        assert_int_equal(plx_bus_request_name(a, "org.example.X", 0), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_request_name(b, "org.example.X", 0), PLX_NAME_IN_QUEUE);
        assert_int_equal(plx_bus_request_name(a, "org.example.Y", 0), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_request_name(c, "org.example.Y", PLX_NAME_DO_NOT_QUEUE), PLX_NAME_EXISTS);
        assert_int_equal(plx_bus_release_name(a, "org.example.X"), PLX_NAME_RELEASED);
        assert_int_equal(plx_bus_request_name(d, "org.example.Z", 0), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_release_name(b, "org.example.X"), PLX_NAME_RELEASED);
        assert_int_equal(plx_bus_release_name(a, "org.example.Y"), PLX_NAME_RELEASED);
        assert_int_equal(plx_bus_request_name(c, "org.example.Y", 0), PLX_NAME_PRIMARY_OWNER);
        d = plx_bus_free(d);

        watch_wait(w, 8, wait_ms());
        watch_expect(w, 8);
        check_change(w, 0, "org.example.X", NULL, id_of(a), PLX_NAME_CHANGE_REQUESTED);
        check_change(w, 1, "org.example.Y", NULL, id_of(a), PLX_NAME_CHANGE_REQUESTED);
        check_change(w, 2, "org.example.X", id_of(a), id_of(b), PLX_NAME_CHANGE_RELEASED);
        check_change(w, 3, "org.example.Z", NULL, d_id, PLX_NAME_CHANGE_REQUESTED);
        check_change(w, 4, "org.example.X", id_of(b), NULL, PLX_NAME_CHANGE_RELEASED);
        check_change(w, 5, "org.example.Y", id_of(a), NULL, PLX_NAME_CHANGE_RELEASED);
        check_change(w, 6, "org.example.Y", NULL, id_of(c), PLX_NAME_CHANGE_REQUESTED);
        check_change(w, 7, "org.example.Z", d_id, NULL, PLX_NAME_CHANGE_DISCONNECTED);
}

/*
 * The change signal is routed before the REPLY to the RequestName or
 * ReleaseName that caused it: RequestName is called by hand here, since
 * plx_bus_request_name() keeps the REPLY (and its sequence) to itself.
 */
static void test_change_before_reply(void **state) {
        Harness *h = *state;
        _cleanup_watch_ Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        /* The requester watches its own name. */
        _cleanup_watch_ Watch *self = watch_new(h, PLX_TOPIC_NAMES_PREFIX NAME);
        _cleanup_bus_ plx_bus *b = bus_connect(h, "b");
        Plexus__RequestNameRequest req = PLEXUS__REQUEST_NAME_REQUEST__INIT;
        Plexus__NameRequest rel = PLEXUS__NAME_REQUEST__INIT;
        Plexus__RequestNameReply *rep;
        _cleanup_msg_ plx_msg *reply = NULL;
        uint64_t seq, delivery;
        const void *p;
        size_t n;

        req.name = (char *)NAME;
        assert_int_equal(call_broker(self->bus, "RequestName", &req.base, &reply), 0);
        p = plx_msg_get_payload(reply, &n);
        rep = plexus__request_name_reply__unpack(NULL, n, p);
        assert_non_null(rep);
        assert_int_equal(rep->result, PLX_NAME_PRIMARY_OWNER);
        plexus__request_name_reply__free_unpacked(rep, NULL);
        seq = plx_msg_get_sequence(reply);
        delivery = plx_msg_get_delivery(reply);
        reply = plx_msg_unref(reply);

        watch_wait(w, 1, wait_ms());
        check_change(w, 0, NAME, NULL, id_of(self->bus), PLX_NAME_CHANGE_REQUESTED);
        assert_true(w->events[0].sequence < seq);
        /* At the requester the signal came first as well (it was parked during the call). */
        watch_wait(self, 1, wait_ms());
        check_change(self, 0, NAME, NULL, id_of(self->bus), PLX_NAME_CHANGE_REQUESTED);
        assert_int_equal(self->events[0].sequence, w->events[0].sequence);
        assert_true(self->events[0].delivery < delivery);

        /* Release with someone queued: the hand-off is announced before the REPLY. */
        assert_int_equal(plx_bus_request_name(b, NAME, 0), PLX_NAME_IN_QUEUE);
        rel.name = (char *)NAME;
        assert_int_equal(call_broker(self->bus, "ReleaseName", &rel.base, &reply), 0);
        seq = plx_msg_get_sequence(reply);
        delivery = plx_msg_get_delivery(reply);
        reply = plx_msg_unref(reply);

        watch_wait(w, 2, wait_ms());
        check_change(w, 1, NAME, id_of(self->bus), id_of(b), PLX_NAME_CHANGE_RELEASED);
        assert_true(w->events[1].sequence < seq);
        watch_wait(self, 2, wait_ms());
        check_change(self, 1, NAME, id_of(self->bus), id_of(b), PLX_NAME_CHANGE_RELEASED);
        assert_true(self->events[1].delivery < delivery);

        watch_expect(w, 2);
        watch_expect(self, 2);
}

/* --- an owner the broker disconnects ------------------------------------ */

/* Sends a broker CALL on a raw connection and requires its REPLY. */
static void raw_call_broker(int fd, RawFrame *f, uint64_t serial, const char *member,
                            const ProtobufCMessage *request) {
        Plexus__Header h = PLEXUS__HEADER__INIT;
        uint8_t buf[512];
        size_t n;

        n = protobuf_c_message_get_packed_size(request);
        assert_true(n <= sizeof(buf));
        protobuf_c_message_pack(request, buf);
        h.kind = PLEXUS__KIND__KIND_CALL;
        h.serial = serial;
        h.destination = (char *)PLX_BROKER;
        h.member = (char *)member;
        assert_int_equal(raw_send(fd, &h, buf, n), 0);
        assert_int_equal(raw_recv(fd, f, wait_ms()), 1);
        assert_non_null(f->header);
        assert_int_equal(f->header->kind, PLEXUS__KIND__KIND_REPLY);
        assert_int_equal(f->header->reply_serial, serial);
}

#define N_FLOOD 200
#define FLOOD_SIZE 8000

/*
 * The broker closes an owner for a protocol error while frames for it are
 * still queued (it does not read). From that moment the owner is no longer
 * addressable (docs/protocol.md 5.3), so its names must go to the next in
 * their queues then, not only once the queue is flushed or given up on,
 * up to 10 s later; meanwhile calls to the name would fail.
 */
static void test_closing_owner_hands_off(void **state) {
        Harness *h = *state;
        Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        plx_bus *b = bus_connect(h, "b");
        plx_bus *pub = bus_connect(h, "flood");
        Plexus__RequestNameRequest req = PLEXUS__REQUEST_NAME_REQUEST__INIT;
        Plexus__SubscribeRequest sub = PLEXUS__SUBSCRIBE_REQUEST__INIT;
        Plexus__Header bad = PLEXUS__HEADER__INIT;
        RawFrame *f = raw_frame_new();
        static uint8_t payload[FLOOD_SIZE];
        char owner_id[ID_MAX];
        uint64_t start, elapsed;
        int fd, r;

        assert_non_null(f);
        fd = raw_connect(h->address);
        assert_true(fd >= 0);
        assert_int_equal(raw_hello(fd, f, owner_id, sizeof(owner_id)), 0);
        req.name = (char *)NAME;
        raw_call_broker(fd, f, 2, "RequestName", &req.base);
        sub.pattern = (char *)"flood/#";
        raw_call_broker(fd, f, 3, "Subscribe", &sub.base);
        assert_int_equal(plx_bus_request_name(b, NAME, 0), PLX_NAME_IN_QUEUE);

        /* Fill the owner's socket and queue without reaching the queue's limits. */
        for (int i = 0; i < N_FLOOD; i++)
                assert_int_equal(plx_bus_publish(pub, "flood/x", payload, sizeof(payload)), 0);
        assert_int_equal(plx_bus_call(pub, PLX_BROKER, "Ping", NULL, 0, LONG_TIMEOUT_USEC, NULL), 0);

        /* serial 0: InvalidFrame, and the broker starts closing the connection. */
        bad.kind = PLEXUS__KIND__KIND_CALL;
        bad.destination = (char *)PLX_BROKER;
        bad.member = (char *)"Ping";
        start = harness_now_ms();
        assert_int_equal(raw_send(fd, &bad, NULL, 0), 0);

        w->n_wanted = 2;
        watch_update(w);
        r = harness_bus_wait(w->bus, &w->done, harness_timeout_ms(PROMPT_MS));
        elapsed = harness_now_ms() - start;
        if (r == 0) {
                watch_expect(w, 2);
                check_change(w, 1, NAME, owner_id, id_of(b), PLX_NAME_CHANGE_DISCONNECTED);
        }

        /* Free everything first: the failure below is the finding, not a leak. */
        close(fd);
        raw_frame_free(f);
        plx_bus_free(pub);
        plx_bus_free(b);
        watch_freep(&w);
        if (r < 0)
                fail_msg("%s kept %s for more than %llu ms after the broker began to close it", owner_id,
                         NAME, (unsigned long long)elapsed);
}

/* --- plx_bus_wait_for_name() -------------------------------------------- */

typedef struct LateOwner {
        const char *address;
        const char *name;
        int delay_ms;
} LateOwner;

/* Requests the name @delay_ms after the parent's go; keeps it until told. */
static int late_owner_main(int report_fd, int control_fd, void *userdata) {
        const LateOwner *a = userdata;
        _cleanup_bus_ plx_bus *bus = NULL;
        char line[8];
        int r;

        r = plx_bus_new(&bus, a->address, "late-owner");
        if (r < 0)
                child_fail("plx_bus_new: %s", strerror(-r));
        harness_report(report_fd, "ready %s 0", id_of(bus));

        r = harness_read_line(control_fd, line, sizeof(line), harness_timeout_ms(HARNESS_TIMEOUT_MS));
        if (r < 0)
                child_fail("no go from the parent: %s", strerror(-r));
        msleep(a->delay_ms);
        child_assert_int_eq(plx_bus_request_name(bus, a->name, 0), PLX_NAME_PRIMARY_OWNER);

        /* Until the parent closes the pipe; the result does not matter. */
        (void)harness_read_line(control_fd, line, sizeof(line), harness_timeout_ms(HARNESS_TIMEOUT_MS));
        return 0;
}

static void test_wait_for_name(void **state) {
        Harness *h = *state;
        _cleanup_bus_ plx_bus *a = bus_connect(h, "a");
        _cleanup_bus_ plx_bus *bus = bus_connect(h, "waiter");
        LateOwner args = { .address = h->address, .name = OTHER_NAME, .delay_ms = harness_timeout_ms(LATE_MS) };
        HarnessChild late = HARNESS_CHILD_NULL;
        char late_id[ID_MAX], *owner = NULL;
        uint64_t start, elapsed;

        /* Owned already: at once. */
        assert_int_equal(plx_bus_request_name(a, NAME, 0), PLX_NAME_PRIMARY_OWNER);
        start = harness_now_ms();
        assert_int_equal(plx_bus_wait_for_name(bus, NAME, LONG_TIMEOUT_USEC, &owner), 0);
        assert_string_equal(owner, id_of(a));
        free(owner);
        owner = NULL;
        assert_true(harness_now_ms() - start < (uint64_t)harness_timeout_ms(PROMPT_MS));

        /* Nobody comes: -ETIMEDOUT after the timeout, not long after. */
        start = harness_now_ms();
        assert_int_equal(plx_bus_wait_for_name(bus, NOBODY_NAME, ms_to_usec(harness_timeout_ms(LATE_MS)),
                                               &owner),
                         -ETIMEDOUT);
        elapsed = harness_now_ms() - start;
        assert_null(owner);
        if (elapsed < (uint64_t)harness_timeout_ms(LATE_MS) ||
            elapsed >= (uint64_t)harness_timeout_ms(LATE_MS + PROMPT_MS))
                fail_msg("wait_for_name timed out after %llu ms, timeout %d ms", (unsigned long long)elapsed,
                         harness_timeout_ms(LATE_MS));

        /* Another process takes the name a little later. */
        assert_int_equal(fork_ready(&late, late_owner_main, &args, late_id), 0);
        start = harness_now_ms();
        assert_int_equal(harness_write_byte(late.control_fd, '\n'), 0);
        assert_int_equal(plx_bus_wait_for_name(bus, OTHER_NAME, LONG_TIMEOUT_USEC, &owner), 0);
        elapsed = harness_now_ms() - start;
        assert_string_equal(owner, late_id);
        free(owner);
        if (elapsed < (uint64_t)args.delay_ms)
                fail_msg("the owner came after %d ms, wait_for_name returned after %llu ms", args.delay_ms,
                         (unsigned long long)elapsed);
        assert_int_equal(harness_child_wait(&late, wait_ms()), 0);

        /* The waits left nothing behind: the connection works as before. */
        assert_int_equal(plx_bus_call(bus, PLX_BROKER, "Ping", NULL, 0, LONG_TIMEOUT_USEC, NULL), 0);
        assert_int_equal(harness_bus_drain(bus), 0);
}

/*
 * "Messages that arrive meanwhile are queued for plx_bus_process()": that
 * includes the change signal wait_for_name() itself waited for, when the
 * application has a subscription of its own that matches it.
 */
static void test_wait_for_name_keeps_signals(void **state) {
        Harness *h = *state;
        Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        LateOwner args = { .address = h->address, .name = OTHER_NAME, .delay_ms = harness_timeout_ms(LATE_MS) };
        HarnessChild late = HARNESS_CHILD_NULL;
        char late_id[ID_MAX], *owner = NULL;
        size_t n;

        assert_int_equal(fork_ready(&late, late_owner_main, &args, late_id), 0);
        assert_int_equal(harness_write_byte(late.control_fd, '\n'), 0);
        assert_int_equal(plx_bus_wait_for_name(w->bus, OTHER_NAME, LONG_TIMEOUT_USEC, &owner), 0);
        assert_string_equal(owner, late_id);
        free(owner);

        /* The Watch's own subscription gets the signal too, from plx_bus_process(). */
        watch_sync(w);
        n = w->n_events;
        if (n == 1)
                check_change(w, 0, OTHER_NAME, NULL, late_id, PLX_NAME_CHANGE_REQUESTED);
        watch_freep(&w);
        assert_int_equal(harness_child_wait(&late, wait_ms()), 0);
        if (n != 1)
                fail_msg("the application's subscription got %zu change signals for %s, expected 1: "
                         "plx_bus_wait_for_name() kept it to itself", n, OTHER_NAME);
}

/* --- grammar ------------------------------------------------------------ */

static void test_grammar_local(void **state) {
        Harness *h = *state;
        _cleanup_watch_ Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        _cleanup_bus_ plx_bus *bus = bus_connect(h, "grammar");
        char long_ok[241], long_bad[242], big[4097];
        const char *const invalid[] = {
                ":1.2", "a", "a..b", "1a.b", "plexus.x", long_bad, "", ".a.b", "a.b.", "a.1b", "a b.c",
                "a/b.c", "plexus.Bus", "a.b\xc3\xa9", ":1", "plexus",
        };
        const char *const valid[] = { "a.b", "my-app.v2_x", "_a.-b", "plexusd.x", "A.B.C.D", long_ok };
        char *owner = NULL;

        make_name(long_ok, 240);
        make_name(long_bad, 241);

        for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
                const char *n = invalid[i];

                if (plx_bus_request_name(bus, n, 0) != -EINVAL ||
                    plx_bus_request_name_lease(bus, n, 0, ms_to_usec(1000), NULL, NULL, 0) != -EINVAL ||
                    plx_bus_release_name(bus, n) != -EINVAL || plx_bus_renew_name(bus, n) != -EINVAL ||
                    plx_bus_wait_for_name(bus, n, 1000, NULL) != -EINVAL)
                        fail_msg("\"%.40s\" (%zu bytes) was not refused with -EINVAL", n, strlen(n));
                /* GetNameOwner takes unique ids too. */
                if (strcmp(n, ":1") != 0 && plx_bus_get_name_owner(bus, n, &owner) != -EINVAL)
                        fail_msg("get_name_owner(\"%.40s\") was not refused with -EINVAL", n);
        }
        assert_int_equal(plx_bus_request_name(bus, NULL, 0), -EINVAL);
        assert_int_equal(plx_bus_get_name_owner(bus, NULL, NULL), -EINVAL);

        /* Flags, lease bounds, will topics and sizes. */
        memset(big, 'w', sizeof(big));
        assert_int_equal(plx_bus_request_name(bus, NAME, 0x8), -EINVAL);
        assert_int_equal(plx_bus_request_name(bus, NAME, PLX_NAME_NO_AUTO_RENEW), -EINVAL);
        assert_int_equal(plx_bus_request_name_lease(bus, NAME, 0, 9999, NULL, NULL, 0), -EINVAL);
        assert_int_equal(plx_bus_request_name_lease(bus, NAME, 0, 3600ull * 1000000 + 1, NULL, NULL, 0), -EINVAL);
        assert_int_equal(plx_bus_request_name_lease(bus, NAME, 0, 0, "plexus/x", NULL, 0), -EINVAL);
        assert_int_equal(plx_bus_request_name_lease(bus, NAME, 0, 0, "a//b", NULL, 0), -EINVAL);
        assert_int_equal(plx_bus_request_name_lease(bus, NAME, 0, 0, "a/#", NULL, 0), -EINVAL);
        assert_int_equal(plx_bus_request_name_lease(bus, NAME, 0, 0, NULL, "x", 1), -EINVAL);
        assert_int_equal(plx_bus_request_name_lease(bus, NAME, 0, 0, WILL_TOPIC, big, 4097), -EINVAL);
        check_owner(bus, NAME, NULL);

        /* At the bounds: accepted. */
        assert_int_equal(plx_bus_request_name_lease(bus, NAME, PLX_NAME_NO_AUTO_RENEW, 10000, NULL, NULL, 0),
                         PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_request_name_lease(bus, OTHER_NAME, 0, 3600ull * 1000000, WILL_TOPIC, big,
                                                    4096),
                         PLX_NAME_PRIMARY_OWNER);

        for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
                int r = plx_bus_request_name(bus, valid[i], 0);

                if (r != PLX_NAME_PRIMARY_OWNER)
                        fail_msg("\"%.40s\" (%zu bytes): %d, expected PRIMARY_OWNER", valid[i], strlen(valid[i]),
                                 r);
                check_owner(bus, valid[i], id_of(bus));
        }

        /* The longest name still makes a valid change topic. */
        watch_sync(w);
        for (size_t i = 0; i < w->n_events; i++)
                if (strcmp(w->events[i].name, long_ok) == 0)
                        return;
        watch_dump(w);
        fail_msg("no change signal for the 240-byte name");
}

/* What libplexus would refuse locally, sent anyway: the broker must refuse it too. */
static void test_grammar_broker(void **state) {
        Harness *h = *state;
        _cleanup_watch_ Watch *w = watch_new(h, PLX_TOPIC_NAMES_PREFIX "#");
        _cleanup_bus_ plx_bus *bus = bus_connect(h, "raw-requests");
        Plexus__RequestNameRequest req;
        Plexus__NameRequest nreq = PLEXUS__NAME_REQUEST__INIT;
        _cleanup_msg_ plx_msg *reply = NULL;
        static const char *const bad_names[] = { ":1.2", "a", "a..b", "1a.b", "plexus.x", "", "a.b." };
        static const char *const methods[] = { "ReleaseName", "RenewName", "GetNameOwner", "ListQueuedOwners" };
        static uint8_t big[4097];
        char long_bad[242];
        int r;

        make_name(long_bad, 241);
        for (size_t i = 0; i <= sizeof(bad_names) / sizeof(bad_names[0]); i++) {
                const char *n = i < sizeof(bad_names) / sizeof(bad_names[0]) ? bad_names[i] : long_bad;

                req = (Plexus__RequestNameRequest) PLEXUS__REQUEST_NAME_REQUEST__INIT;
                req.name = (char *)n;
                expect_invalid_args(bus, "RequestName", &req.base, n);
                nreq.name = (char *)n;
                for (size_t j = 0; j < sizeof(methods) / sizeof(methods[0]); j++)
                        expect_invalid_args(bus, methods[j], &nreq.base, n);
        }

        req = (Plexus__RequestNameRequest) PLEXUS__REQUEST_NAME_REQUEST__INIT;
        req.name = (char *)NAME;
        req.flags = PLX_NAME_NO_AUTO_RENEW;     /* a libplexus flag, not a protocol one */
        expect_invalid_args(bus, "RequestName", &req.base, "with flag 0x10000");
        req.flags = 0x8;
        expect_invalid_args(bus, "RequestName", &req.base, "with flag 0x8");
        req.flags = 0;
        req.lease_ms = 9;
        expect_invalid_args(bus, "RequestName", &req.base, "with a 9 ms lease");
        req.lease_ms = 3600001;
        expect_invalid_args(bus, "RequestName", &req.base, "with a lease over 1 h");
        req.lease_ms = 0;
        req.will_topic = (char *)"plexus/x";
        expect_invalid_args(bus, "RequestName", &req.base, "with a reserved will topic");
        req.will_topic = (char *)"a//b";
        expect_invalid_args(bus, "RequestName", &req.base, "with an invalid will topic");
        req.will_topic = (char *)"";
        req.will_payload.data = big;
        req.will_payload.len = 1;
        expect_invalid_args(bus, "RequestName", &req.base, "with a will payload but no topic");
        req.will_topic = (char *)WILL_TOPIC;
        req.will_payload.len = sizeof(big);
        expect_invalid_args(bus, "RequestName", &req.base, "with a 4097-byte will");

        /* Not a RequestNameRequest at all. */
        r = plx_bus_call(bus, PLX_BROKER, "RequestName", "\xff\xff\xff", 3, LONG_TIMEOUT_USEC, &reply);
        assert_int_equal(r, -EREMOTEIO);
        assert_string_equal(plx_msg_get_error_name(reply), PLX_ERROR_INVALID_ARGS);
        reply = plx_msg_unref(reply);

        /* A destination that is neither a unique id nor a well-known name. */
        r = plx_bus_call(bus, "a..b", "Who", NULL, 0, LONG_TIMEOUT_USEC, &reply);
        assert_int_equal(r, -EREMOTEIO);
        assert_string_equal(plx_msg_get_error_name(reply), PLX_ERROR_INVALID_ARGS);
        reply = plx_msg_unref(reply);

        /* Nothing was registered, and the connection still works. */
        watch_expect(w, 0);
        check_owner(bus, NAME, NULL);
        assert_int_equal(plx_bus_call(bus, PLX_BROKER, "Ping", NULL, 0, LONG_TIMEOUT_USEC, NULL), 0);
}

/* --- limits ------------------------------------------------------------- */

#define MAX_NAMES 256                   /* the broker's default per client */

static void test_name_limit(void **state) {
        Harness *h = *state;
        _cleanup_bus_ plx_bus *a = bus_connect(h, "a");
        _cleanup_bus_ plx_bus *b = bus_connect(h, "b");
        char name[64];

        for (int i = 0; i < MAX_NAMES; i++) {
                snprintf(name, sizeof(name), "org.example.n%d", i);
                if (plx_bus_request_name(a, name, 0) != PLX_NAME_PRIMARY_OWNER)
                        fail_msg("name %d of %d refused", i, MAX_NAMES);
        }
        snprintf(name, sizeof(name), "org.example.n%d", MAX_NAMES);
        assert_int_equal(plx_bus_request_name(a, name, 0), -EDQUOT);
        check_owner(b, name, NULL);
        /* Asking again for one it has is no new name. */
        assert_int_equal(plx_bus_request_name(a, "org.example.n0", PLX_NAME_ALLOW_REPLACEMENT),
                         PLX_NAME_ALREADY_OWNER);

        /* Waiting in a queue counts as well. */
        assert_int_equal(plx_bus_request_name(b, OTHER_NAME, 0), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_request_name(a, OTHER_NAME, 0), -EDQUOT);
        assert_int_equal(plx_bus_release_name(a, "org.example.n0"), PLX_NAME_RELEASED);
        assert_int_equal(plx_bus_request_name(a, OTHER_NAME, 0), PLX_NAME_IN_QUEUE);
        assert_int_equal(plx_bus_request_name(a, name, 0), -EDQUOT);
        assert_int_equal(plx_bus_request_name(a, "org.example.n0", 0), -EDQUOT);

        /* The limit is per client; and a name a loses frees its slot. */
        assert_int_equal(plx_bus_request_name(b, name, 0), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_release_name(b, OTHER_NAME), PLX_NAME_RELEASED);
        check_owner(b, OTHER_NAME, id_of(a));
        assert_int_equal(plx_bus_release_name(a, OTHER_NAME), PLX_NAME_RELEASED);
        assert_int_equal(plx_bus_request_name(a, "org.example.n0", 0), PLX_NAME_PRIMARY_OWNER);
}

/* --- call deadlines ----------------------------------------------------- */

#define N_CALLERS 10
#define N_CALLS 1000                    /* per caller; the broker allows 1024 pending */
#define CALL_TIMEOUT_MS 300             /* scaled */
#define HANG_NAME "org.example.Hang"

/*
 * The 10,000 calls go to N_CALLEES services, 2,000 each: a callee's queue in
 * the broker holds at most 4096 frames, and one callee that gets less CPU
 * than the broker (two CPUs, twelve busy processes) would fall behind and
 * make the broker refuse calls with QueueFull, as it should.
 */
#define N_CALLEES 5
#define CALL_CHUNK 100

typedef struct CallRecord {
        struct CallBatch *batch;
        uint64_t serial;                /* from the answer */
        uint64_t sent_ms;
        uint64_t answered_ms;
        unsigned int n_answers;
        int kind;
        char error[64];
        char sender[ID_MAX];            /* LOCAL_SENDER for an error libplexus made */
        bool late_broker_timeout;       /* the broker's Timeout came after a local one */
} CallRecord;

typedef struct CallBatch {
        CallRecord *calls;
        size_t n_calls;
        size_t n_answered;
        size_t n_local;                 /* answered by libplexus's own Timeout */
        size_t n_late;                  /* ... and then by the broker's, as a stray error */
        unsigned int n_stray;           /* other ERRORs that answered no pending call */
        bool done;
        bool late_done;
} CallBatch;

#define LOCAL_SENDER "(local)"

static int on_call_answer(plx_msg *m, void *userdata) {
        CallRecord *c = userdata;

        c->n_answers++;
        c->serial = plx_msg_get_reply_serial(m);
        c->answered_ms = harness_now_ms();
        c->kind = plx_msg_get_kind(m);
        snprintf(c->error, sizeof(c->error), "%s", plx_msg_get_error_name(m) ?: "");
        snprintf(c->sender, sizeof(c->sender), "%s", plx_msg_get_sender(m) ?: LOCAL_SENDER);
        c->batch->n_answered++;
        c->batch->done = c->batch->n_answered == c->batch->n_calls;
        return 0;
}

/* The broker's Timeout for a call libplexus had already timed out is stray; anything else is wrong. */
static int on_stray_error(plx_msg *m, void *userdata) {
        CallBatch *b = userdata;

        if (strcmp(plx_msg_get_error_name(m), PLX_ERROR_TIMEOUT) == 0 &&
            strcmp(plx_msg_get_sender(m), PLX_BROKER) == 0) {
                for (size_t i = 0; i < b->n_calls; i++) {
                        CallRecord *c = &b->calls[i];

                        if (c->n_answers == 1 && c->serial == plx_msg_get_reply_serial(m) &&
                            strcmp(c->sender, LOCAL_SENDER) == 0 && !c->late_broker_timeout) {
                                c->late_broker_timeout = true;
                                b->n_late++;
                                b->late_done = b->n_late >= b->n_local;
                                return 0;
                        }
                }
        }
        b->n_stray++;
        return 0;
}

/*
 * Once every call has been answered: libplexus times a call out by itself
 * 1 s after the broker should have, and a heavily loaded valgrind run can
 * miss that. Waits (bounded) until the broker's own Timeout has arrived for
 * each call libplexus timed out, so that call_timed_out() can check it.
 */
static int call_batch_wait_late(CallBatch *b, plx_bus *bus) {
        b->n_local = 0;
        for (size_t i = 0; i < b->n_calls; i++)
                if (strcmp(b->calls[i].sender, LOCAL_SENDER) == 0)
                        b->n_local++;
        b->late_done = b->n_late >= b->n_local;
        return harness_bus_wait(bus, &b->late_done, wait_ms());
}

static void call_batch_init(CallBatch *b, size_t n) {
        *b = (CallBatch) { .n_calls = n };
        b->calls = calloc(n, sizeof(*b->calls));
        for (size_t i = 0; b->calls && i < n; i++)
                b->calls[i].batch = b;
}

/*
 * Sends the batch's calls; with @chunk > 0, a Ping after every @chunk calls:
 * its REPLY means the broker has routed every call queued before it, so a
 * slow broker (valgrind) cannot fall so far behind that libplexus's own
 * deadline (the timeout plus 1 s from queueing) passes before the broker's.
 */
static int call_batch_send(CallBatch *b, plx_bus *bus, const char *destination, int timeout_ms,
                           size_t chunk) {
        for (size_t i = 0; i < b->n_calls; i++) {
                int r;

                b->calls[i].sent_ms = harness_now_ms();
                r = plx_bus_call_async(bus, NULL, destination, "Hang", NULL, 0, ms_to_usec(timeout_ms),
                                       on_call_answer, &b->calls[i]);
                if (r < 0)
                        return r;
                if (chunk > 0 && (i + 1) % chunk == 0) {
                        r = plx_bus_call(bus, PLX_BROKER, "Ping", NULL, 0, LONG_TIMEOUT_USEC, NULL);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/*
 * NULL if @c was answered once by the broker's Timeout, not before
 * @timeout_ms; else why not. In a scaled (valgrind) run libplexus's own
 * Timeout may have come first, if the broker's then arrived as well.
 */
static const char *call_timed_out(const CallRecord *c, int timeout_ms) {
        bool slow_run = harness_timeout_ms(1) > 1;

        if (c->n_answers != 1)
                return "not answered exactly once";
        if (c->kind != PLX_MSG_ERROR || strcmp(c->error, PLX_ERROR_TIMEOUT) != 0)
                return "not answered with a Timeout error";
        if (strcmp(c->sender, PLX_BROKER) != 0 && !(slow_run && c->late_broker_timeout))
                return "Timeout not from the broker";
        if (c->answered_ms - c->sent_ms < (uint64_t)timeout_ms)
                return "Timeout before the deadline";
        return NULL;
}

typedef struct Caller {
        const char *address;
        const char *callee;             /* a well-known name */
        int index;
} Caller;

static int caller_main(int report_fd, int control_fd, void *userdata) {
        const Caller *a = userdata;
        int timeout_ms = harness_timeout_ms(CALL_TIMEOUT_MS);
        _cleanup_bus_ plx_bus *bus = NULL;
        uint64_t last = 0;
        CallBatch batch;
        char go[4];
        int r;

        r = plx_bus_new(&bus, a->address, "timeout-caller");
        if (r < 0)
                child_fail("caller %d: plx_bus_new: %s", a->index, strerror(-r));
        call_batch_init(&batch, N_CALLS);
        child_assert(batch.calls);
        plx_bus_set_error_handler(bus, on_stray_error, &batch);
        harness_report(report_fd, "ready %s 0", id_of(bus));

        /* Start together: the parent releases every caller at once. */
        r = harness_read_line(control_fd, go, sizeof(go), harness_timeout_ms(HARNESS_TIMEOUT_MS));
        if (r < 0)
                child_fail("caller %d: no go: %s", a->index, strerror(-r));

        r = call_batch_send(&batch, bus, a->callee, timeout_ms, CALL_CHUNK);
        if (r < 0)
                child_fail("caller %d: plx_bus_call_async: %s", a->index, strerror(-r));
        r = harness_bus_wait(bus, &batch.done, timeout_ms + harness_timeout_ms(HARNESS_TIMEOUT_MS));
        if (r < 0)
                child_fail("caller %d: %zu of %d answered: %s", a->index, batch.n_answered, N_CALLS,
                           strerror(-r));
        r = call_batch_wait_late(&batch, bus);
        if (r < 0)
                child_fail("caller %d: the broker's Timeout came for %zu of %zu calls libplexus timed out: %s",
                           a->index, batch.n_late, batch.n_local, strerror(-r));

        for (size_t i = 0; i < batch.n_calls; i++) {
                const CallRecord *c = &batch.calls[i];
                const char *why = call_timed_out(c, timeout_ms);

                if (why)
                        child_fail("caller %d call %zu: %s (%u answers, %s from %s after %llu ms)", a->index, i,
                                   why, c->n_answers, c->error, c->sender,
                                   (unsigned long long)(c->answered_ms - c->sent_ms));
                if (c->answered_ms - c->sent_ms > last)
                        last = c->answered_ms - c->sent_ms;
        }

        /* Nothing else arrives for these calls. */
        child_assert_int_eq(plx_bus_call(bus, PLX_BROKER, "Ping", NULL, 0, LONG_TIMEOUT_USEC, NULL), 0);
        child_assert_int_eq(harness_bus_drain(bus), 0);
        child_assert_int_eq(batch.n_stray, 0);
        harness_report(report_fd, "done: %zu answered, the last after %llu ms, %zu first by libplexus",
                       batch.n_answered, (unsigned long long)last, batch.n_local);
        free(batch.calls);
        return 0;
}

/* 10,000 calls pending at once, every one answered by the broker's Timeout. */
static void test_many_calls_time_out(void **state) {
        Harness *h = *state;
        _cleanup_bus_ plx_bus *bus = bus_connect(h, "control");
        NameService svc_args[N_CALLEES];
        HarnessChild svcs[N_CALLEES], callers[N_CALLERS];
        Caller args[N_CALLERS];
        char names[N_CALLEES][32], svc_ids[N_CALLEES][ID_MAX], id[ID_MAX], line[128], expected[32];
        uint64_t start;
        int n_failed = 0;

        for (int i = 0; i < N_CALLEES; i++) {
                snprintf(names[i], sizeof(names[i]), HANG_NAME "%d", i);
                svc_args[i] = (NameService) { .address = h->address, .name = names[i] };
                assert_int_equal(fork_ready(&svcs[i], name_service_main, &svc_args[i], svc_ids[i]),
                                 PLX_NAME_PRIMARY_OWNER);
        }
        for (int i = 0; i < N_CALLERS; i++) {
                args[i] = (Caller) { .address = h->address, .callee = names[i % N_CALLEES], .index = i };
                assert_int_equal(fork_ready(&callers[i], caller_main, &args[i], id), 0);
        }

        start = harness_now_ms();
        for (int i = 0; i < N_CALLERS; i++)
                assert_int_equal(harness_write_byte(callers[i].control_fd, '\n'), 0);
        for (int i = 0; i < N_CALLERS; i++) {
                int r;

                r = harness_read_line(callers[i].report_fd, line, sizeof(line), harness_timeout_ms(60000));
                if (r >= 0)
                        fprintf(stderr, "caller %d: %s\n", i, line);
                r = harness_child_wait(&callers[i], harness_timeout_ms(HARNESS_TIMEOUT_MS));
                if (r != 0) {
                        fprintf(stderr, "caller %d: exit status %d\n", i, r);
                        n_failed++;
                }
        }
        fprintf(stderr, "%d x %d calls timed out in %llu ms\n", N_CALLERS, N_CALLS,
                (unsigned long long)(harness_now_ms() - start));
        assert_int_equal(n_failed, 0);

        /* Every call reached its callee. */
        snprintf(expected, sizeof(expected), "%d", N_CALLERS / N_CALLEES * N_CALLS);
        for (int i = 0; i < N_CALLEES; i++) {
                call_expect(bus, svc_ids[i], "Count", expected);
                service_quit(bus, &svcs[i], svc_ids[i]);
        }
}

/* One call over the pending-call limit fails at once with LimitsExceeded. */
static void test_pending_call_limit(void **state) {
        Harness *h = *state;
        _cleanup_bus_ plx_bus *bus = bus_connect(h, "caller");
        NameService svc_args = { .address = h->address, .name = HANG_NAME };
        HarnessChild svc = HARNESS_CHILD_NULL;
        int timeout_ms = harness_timeout_ms(CALL_TIMEOUT_MS);
        char svc_id[ID_MAX];
        CallBatch batch;

        assert_int_equal(fork_ready(&svc, name_service_main, &svc_args, svc_id), PLX_NAME_PRIMARY_OWNER);
        call_batch_init(&batch, 1025);
        assert_non_null(batch.calls);
        plx_bus_set_error_handler(bus, on_stray_error, &batch);
        assert_int_equal(call_batch_send(&batch, bus, HANG_NAME, timeout_ms, 0), 0);
        assert_int_equal(harness_bus_wait(bus, &batch.done, timeout_ms + wait_ms()), 0);
        assert_int_equal(call_batch_wait_late(&batch, bus), 0);
        assert_int_equal(batch.n_stray, 0);

        for (size_t i = 0; i < 1024; i++) {
                const char *why = call_timed_out(&batch.calls[i], timeout_ms);

                if (why)
                        fail_msg("call %zu: %s (%s)", i, why, batch.calls[i].error);
        }
        assert_int_equal(batch.calls[1024].n_answers, 1);
        assert_string_equal(batch.calls[1024].error, PLX_ERROR_LIMITS_EXCEEDED);
        assert_string_equal(batch.calls[1024].sender, PLX_BROKER);
        assert_true(batch.calls[1024].answered_ms - batch.calls[1024].sent_ms < (uint64_t)timeout_ms);
        free(batch.calls);

        call_expect(bus, svc_id, "Count", "1024");
        service_quit(bus, &svc, svc_id);
}

typedef struct Held {
        plx_msg *call;
        bool done;
} Held;

static int on_hold(plx_msg *call, void *userdata) {
        Held *held = userdata;

        held->call = plx_msg_ref(call);
        held->done = true;
        return 0;
}

/* The broker timed the call out; the answer that comes later is refused to the replier. */
static void test_late_reply_refused(void **state) {
        Harness *h = *state;
        _cleanup_bus_ plx_bus *callee = bus_connect(h, "callee");
        _cleanup_bus_ plx_bus *caller = bus_connect(h, "caller");
        _cleanup_msg_ plx_msg *ping = NULL;
        int timeout_ms = harness_timeout_ms(100);
        ErrorLog callee_log = {}, caller_log = {};
        Held held = {};
        CallBatch batch;
        uint64_t delivery;

        plx_bus_set_error_handler(callee, error_log_record, &callee_log);
        plx_bus_set_error_handler(caller, error_log_record, &caller_log);
        assert_int_equal(plx_bus_add_method(callee, NULL, "Hang", on_hold, &held), 0);
        assert_int_equal(plx_bus_request_name(callee, NAME, 0), PLX_NAME_PRIMARY_OWNER);

        call_batch_init(&batch, 1);
        assert_non_null(batch.calls);
        assert_int_equal(call_batch_send(&batch, caller, NAME, timeout_ms, 0), 0);
        assert_int_equal(harness_bus_flush(caller, wait_ms()), 0);
        assert_int_equal(harness_bus_wait(callee, &held.done, wait_ms()), 0);
        assert_int_equal(harness_bus_wait(caller, &batch.done, timeout_ms + wait_ms()), 0);
        assert_null(call_timed_out(&batch.calls[0], timeout_ms));
        free(batch.calls);

        /* The timeout error was the last frame the caller got. */
        assert_int_equal(plx_bus_call(caller, PLX_BROKER, "Ping", NULL, 0, LONG_TIMEOUT_USEC, &ping), 0);
        delivery = plx_msg_get_delivery(ping);
        ping = plx_msg_unref(ping);

        assert_int_equal(plx_msg_reply(held.call, "late", 4), 0);
        plx_msg_unref(held.call);
        assert_int_equal(harness_bus_wait(callee, &callee_log.done, wait_ms()), 0);
        assert_string_equal(callee_log.name, PLX_ERROR_UNEXPECTED_REPLY);
        assert_int_equal(callee_log.n_errors, 1);

        /* The broker had handled the reply before the callee's error: nothing reached the caller. */
        assert_int_equal(plx_bus_call(caller, PLX_BROKER, "Ping", NULL, 0, LONG_TIMEOUT_USEC, &ping), 0);
        assert_int_equal(plx_msg_get_delivery(ping), delivery + 1);
        assert_int_equal(harness_bus_drain(caller), 0);
        assert_int_equal(caller_log.n_errors, 0);
}

/* Waits for the next frame on a raw connection and requires an ERROR @name about @reply_serial. */
static void raw_expect_error(int fd, RawFrame *f, uint64_t reply_serial, const char *name) {
        assert_int_equal(raw_recv(fd, f, wait_ms()), 1);
        assert_non_null(f->header);
        assert_int_equal(f->header->kind, PLEXUS__KIND__KIND_ERROR);
        assert_string_equal(f->header->error_name, name);
        assert_int_equal(f->header->reply_serial, reply_serial);
}

/* Only the callee may answer a pending call, and only once. */
static void test_spoofed_and_duplicate_reply(void **state) {
        Harness *h = *state;
        _cleanup_bus_ plx_bus *caller = bus_connect(h, "caller");
        _cleanup_msg_ plx_msg *ping = NULL;
        Plexus__Header rh = PLEXUS__HEADER__INIT;
        RawFrame *f = raw_frame_new();
        char callee_id[ID_MAX], spoofer_id[ID_MAX];
        int callee, spoofer;
        uint64_t serial, delivery;
        CallBatch batch;

        assert_non_null(f);
        callee = raw_connect(h->address);
        spoofer = raw_connect(h->address);
        assert_true(callee >= 0 && spoofer >= 0);
        assert_int_equal(raw_hello(callee, f, callee_id, sizeof(callee_id)), 0);
        assert_int_equal(raw_hello(spoofer, f, spoofer_id, sizeof(spoofer_id)), 0);

        call_batch_init(&batch, 1);
        assert_non_null(batch.calls);
        assert_int_equal(call_batch_send(&batch, caller, callee_id, harness_timeout_ms(20000), 0), 0);
        assert_int_equal(harness_bus_flush(caller, wait_ms()), 0);
        assert_int_equal(raw_recv(callee, f, wait_ms()), 1);
        assert_non_null(f->header);
        assert_int_equal(f->header->kind, PLEXUS__KIND__KIND_CALL);
        assert_string_equal(f->header->sender, id_of(caller));
        serial = f->header->serial;

        /* A third client answers in the callee's place. */
        rh.kind = PLEXUS__KIND__KIND_REPLY;
        rh.serial = 2;
        rh.reply_serial = serial;
        rh.destination = (char *)id_of(caller);
        assert_int_equal(raw_send(spoofer, &rh, "spoofed", 7), 0);
        raw_expect_error(spoofer, f, 2, PLX_ERROR_UNEXPECTED_REPLY);

        /* The callee answers, then answers again. */
        assert_int_equal(raw_send(callee, &rh, "real", 4), 0);
        rh.serial = 3;
        assert_int_equal(raw_send(callee, &rh, "again", 5), 0);
        raw_expect_error(callee, f, 3, PLX_ERROR_UNEXPECTED_REPLY);

        assert_int_equal(harness_bus_wait(caller, &batch.done, wait_ms()), 0);
        assert_int_equal(batch.calls[0].n_answers, 1);
        assert_int_equal(batch.calls[0].kind, PLX_MSG_REPLY);
        assert_string_equal(batch.calls[0].sender, callee_id);
        free(batch.calls);

        /*
         * The broker had handled both refused answers before we got here.
         * The caller's frames: the Welcome, the real REPLY, this Ping's
         * REPLY; neither the spoofed nor the duplicate answer was delivered.
         */
        assert_int_equal(plx_bus_call(caller, PLX_BROKER, "Ping", NULL, 0, LONG_TIMEOUT_USEC, &ping), 0);
        delivery = plx_msg_get_delivery(ping);
        assert_int_equal(delivery, 3);
        assert_int_equal(harness_bus_drain(caller), 0);

        close(callee);
        close(spoofer);
        raw_frame_free(f);
}

#define NAMES_TEST(fn) cmocka_unit_test_setup_teardown(fn, harness_setup, harness_teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                NAMES_TEST(test_request_results),
                NAMES_TEST(test_handoff_on_exit),
                NAMES_TEST(test_handoff_on_sigkill),
                NAMES_TEST(test_handoff_on_lease_expiry),
                NAMES_TEST(test_will_on_lease_expiry),
                NAMES_TEST(test_hung_owner_loses_name),
                NAMES_TEST(test_lease_auto_renewal),
                NAMES_TEST(test_lease_explicit_renewal),
                NAMES_TEST(test_renew_not_owned),
                NAMES_TEST(test_lease_removed_by_request),
                NAMES_TEST(test_queued_lease_expiry),
                NAMES_TEST(test_no_will_on_release_or_queued),
                NAMES_TEST(test_replace_existing),
                NAMES_TEST(test_replace_not_allowed),
                NAMES_TEST(test_replace_drops_do_not_queue_owner),
                NAMES_TEST(test_call_by_name),
                NAMES_TEST(test_change_order),
                NAMES_TEST(test_change_before_reply),
                NAMES_TEST(test_closing_owner_hands_off),
                NAMES_TEST(test_wait_for_name),
                NAMES_TEST(test_wait_for_name_keeps_signals),
                NAMES_TEST(test_grammar_local),
                NAMES_TEST(test_grammar_broker),
                NAMES_TEST(test_name_limit),
                NAMES_TEST(test_many_calls_time_out),
                NAMES_TEST(test_pending_call_limit),
                NAMES_TEST(test_late_reply_refused),
                NAMES_TEST(test_spoofed_and_duplicate_reply),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
