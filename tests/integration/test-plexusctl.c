/*
 * plexusctl against a real plexusd: every verb, with the test service and
 * connections of the test process as the clients to look at and talk to.
 *
 * plexusctl runs as a child process ($PLEXUSCTL), with its standard input,
 * output and error on pipes (or its output on a pseudo-terminal, to check
 * that tables fit the terminal's width) and reaches the broker through
 * $PLEXUS_BUS_ADDRESS, which harness_setup() sets. Human-readable output is
 * checked loosely (the lines and words that matter); --json output is
 * parsed by Python's json module, strictly (the bytes must be UTF-8), and
 * checked field by field against what the test knows: pids, uids, names,
 * subscriptions, payloads. Exit codes are checked for each documented
 * outcome: success, remote error, timeout, no such name, cannot connect,
 * usage error.
 *
 * The broker's paging of ListClients is checked both ways: through
 * plexusctl, which must list every client of a bus whose client list takes
 * several frames, and directly, by calling ListClients with the generated
 * protobuf-c code.
 *
 * monitor and capture watch the traffic between the test's connection and
 * the service: they must see it all and change none of it, and monitors
 * stopped with SIGSTOP while the bus is flooded must not hold up calls
 * between others, and must report what they missed once they run again.
 * Capture files are read twice: by hand, record by record, and by tshark
 * (installed by tools/install-deps.sh; without it that part is skipped,
 * saying so), plain and with the dissector cli/plexus.lua. --fd passes
 * files that the receiving connection reads back.
 *
 * Large messages (docs/protocol.md §17): call and publish send files of a
 * few MiB (mapped) and piped payloads (read), which come back byte for
 * byte; stats counts them by path; monitors, capture and the dissector
 * show their descriptors and take no part in the transfers.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>

#include <cmocka.h>

#include "build-config.h"
#include "harness.h"
#include "plexus.pb-c.h"
#include "service.h"
#include "util.h"

#include "ctlrun.h"


/* A file of /proc/self, NULs as spaces, without the trailing newline or NUL. */
static void read_self(const char *what, char *buf, size_t size) {
        char path[64];
        ssize_t n = 0;
        int pipefd[2];
        pid_t pid;

        /*
         * Read /proc/PID/... of this process from a child, as the broker sees
         * it: valgrind answers a process's reads of its own cmdline with the
         * program's arguments instead of its own, unlike the kernel does for
         * everybody else.
         */
        snprintf(path, sizeof(path), "/proc/%d/%s", (int)getpid(), what);
        assert_int_equal(pipe(pipefd), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char tmp[4096];
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                ssize_t k = fd >= 0 ? read(fd, tmp, sizeof(tmp)) : -1;

                _exit(k > 0 && write(pipefd[1], tmp, (size_t)k) == k ? 0 : 1);
        }
        close(pipefd[1]);
        for (ssize_t k; (size_t)n < size - 1 && (k = read(pipefd[0], buf + n, size - 1 - (size_t)n)) > 0;)
                n += k;
        close(pipefd[0]);
        assert_int_equal(harness_child_wait(&(HarnessChild) { .pid = pid, .report_fd = -1,
                                                               .control_fd = -1, .stderr_fd = -1 },
                                            harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_true(n > 0);
        while (n > 0 && (buf[n - 1] == 0 || buf[n - 1] == '\n'))
                n--;
        buf[n] = 0;
        for (ssize_t i = 0; i < n; i++)
                if (buf[i] == 0)
                        buf[i] = ' ';
        /* Interpolated into Python literals below. */
        assert_null(strchr(buf, '\''));
        assert_null(strchr(buf, '\\'));
}

/* Every client, by calling ListClients page by page with @limit; frees nothing the caller keeps. */
typedef struct Listing {
        size_t n_clients;
        size_t n_pages;
        bool found;                     /* a client with @pattern among its subscriptions */
} Listing;

static Listing list_clients(plx_bus *bus, uint32_t limit, const char *pattern) {
        Listing l = {};
        uint64_t after = 0;

        do {
                Plexus__ListClientsRequest req = PLEXUS__LIST_CLIENTS_REQUEST__INIT;
                Plexus__ClientList *page;
                plx_msg *reply = NULL;
                uint8_t buf[64];
                const void *p;
                size_t n;

                req.after_id = after;
                req.limit = limit;
                n = plexus__list_clients_request__pack(&req, buf);
                assert_int_equal(plx_bus_call(bus, PLX_BROKER, "ListClients", buf, n, PLX_TIMEOUT_DEFAULT, &reply), 0);
                p = plx_msg_get_payload(reply, &n);
                /* Every page fits a frame: that is the point of paging. */
                assert_true(n <= 128u * 1024u - 256u);
                page = plexus__client_list__unpack(NULL, n, p);
                assert_non_null(page);
                if (limit)
                        assert_true(page->n_clients <= limit);
                assert_true(page->n_clients > 0 || page->next_after_id == 0);
                for (size_t i = 0; i < page->n_clients; i++) {
                        const Plexus__ClientInfo *ci = page->clients[i];

                        for (size_t k = 0; pattern && k < ci->n_subscriptions; k++)
                                if (strcmp(ci->subscriptions[k], pattern) == 0)
                                        l.found = true;
                }
                l.n_clients += page->n_clients;
                l.n_pages++;
                assert_true(page->next_after_id == 0 || page->next_after_id > after);
                after = page->next_after_id;
                plexus__client_list__free_unpacked(page, NULL);
                plx_msg_unref(reply);
        } while (after != 0);
        return l;
}

/* Until some client (a plexusctl in the background) subscribed to @pattern. */
static void wait_subscribed(plx_bus *bus, const char *pattern) {
        uint64_t deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);

        while (!list_clients(bus, 0, pattern).found) {
                if (harness_now_ms() >= deadline)
                        fail_msg("nobody subscribed to %s in time", pattern);
                usleep(10 * 1000);
        }
}

static int ignore_signal(plx_msg *signal, void *userdata) {
        return 0;
}

static uint64_t realtime_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* --- status, list, clients, client, stats -------------------------------- */

static void test_status(void **state) {
        ServiceFixture *f = *state;
        Run r;

        ctl(&r, "status");
        assert_exit(&r, 0);
        assert_contains(r.out, "Address:");
        assert_contains(r.out, f->harness->address);
        assert_contains(r.out, "plexusd " PLEXUS_VERSION ", protocol 1");
        assert_contains(r.out, "Connected as:");
        assert_string_equal(r.err, "");
        run_free(&r);

        ctl(&r, "status", "--json");
        assert_exit(&r, 0);
        JSON(&r,
             "assert d['address'] == '%s', d\n"
             "assert d['version'] == '%s'\n"
             "assert d['protocol_version'] == 1\n"
             "assert d['unique_id'].startswith(':') and d['unique_id'][1:].isdigit()\n"
             "assert d['unique_id'] not in ('%s', '%s')\n"
             "assert d['clients'] >= 3 and d['clients_peak'] >= d['clients']\n"
             "assert d['names'] == 0 and d['subscriptions'] == 0 and d['monitors'] == 0\n"
             "assert d['pending_calls'] == 0\n"
             "assert d['uptime_usec'] > 0 and d['frames_routed'] > 0\n"
             "assert abs(d['started_usec'] + d['uptime_usec'] - %llu) < 60 * 10**6\n"
             "assert len(d) == 13\n",
             f->harness->address, PLEXUS_VERSION, f->service_id, plx_bus_get_unique_id(f->bus),
             (unsigned long long)realtime_usec());
        run_free(&r);
}

static void test_list(void **state) {
        ServiceFixture *f = *state;
        _cleanup_bus_ plx_bus *second = NULL;
        const char *own = plx_bus_get_unique_id(f->bus);
        char comm[64];
        Run r;

        /* Nothing yet: an empty table and an empty list. */
        ctl(&r, "--json", "list");
        assert_exit(&r, 0);
        JSON(&r, "assert d == {'names': []}, d\n");
        run_free(&r);

        assert_int_equal(plx_bus_new(&second, f->harness->address, "second"), 0);
        assert_int_equal(plx_bus_request_name(f->bus, "org.example.Zeta", 0), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_request_name(f->bus, "org.example.Alpha", 0), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_request_name(second, "org.example.Zeta", 0), PLX_NAME_IN_QUEUE);
        read_self("comm", comm, sizeof(comm));

        ctl(&r, "list");
        assert_exit(&r, 0);
        assert_int_equal(strncmp(r.out, "NAME ", 5), 0);
        assert_contains(r.out, "QUEUED");
        /* Sorted: Alpha before Zeta; Zeta's queue holds the second connection. */
        assert_true(strstr(r.out, "org.example.Alpha") < strstr(r.out, "org.example.Zeta"));
        assert_contains(strstr(r.out, "org.example.Zeta"), plx_bus_get_unique_id(second));
        assert_contains(strstr(r.out, "org.example.Alpha"), own);
        run_free(&r);

        ctl(&r, "list", "--no-legend");
        assert_exit(&r, 0);
        assert_int_equal(strncmp(r.out, "org.example.Alpha ", 18), 0);
        run_free(&r);

        ctl(&r, "list", "--json");
        assert_exit(&r, 0);
        JSON(&r,
             "n = d['names']\n"
             "assert [e['name'] for e in n] == ['org.example.Alpha', 'org.example.Zeta'], n\n"
             "for e in n:\n"
             "    assert e['owner'] == '%s' and e['owner_pid'] == %d and e['owner_comm'] == '%s', e\n"
             "assert n[0]['queued'] == [] and n[1]['queued'] == ['%s'], n\n"
             "assert set(n[0]) == {'name', 'owner', 'owner_pid', 'owner_comm', 'queued'}\n",
             own, (int)getpid(), comm, plx_bus_get_unique_id(second));
        run_free(&r);
}

/*
 * More names than fit one frame (768 names of ~230 bytes: about 190 KB of
 * NameEntry): ListNames must page, and `plexusctl list` must fetch every
 * page. An old caller's empty request gets the first page.
 */
static void test_list_many(void **state) {
        ServiceFixture *f = *state;
        enum { N_BUSES = 3, PER_BUS = 256 };
        plx_bus *buses[N_BUSES] = {};
        _cleanup_msg_ plx_msg *reply = NULL;
        Plexus__NameList *first;
        char pad[221];
        const void *payload;
        size_t size;
        Run r;

        memset(pad, 'x', sizeof(pad) - 1);
        pad[sizeof(pad) - 1] = 0;
        for (size_t k = 0; k < N_BUSES; k++) {
                assert_int_equal(plx_bus_new(&buses[k], f->harness->address, "many-names"), 0);
                for (size_t i = 0; i < PER_BUS; i++) {
                        char name[256];

                        snprintf(name, sizeof(name), "org.example.N%zu_%03zu.%s", k, i, pad);
                        assert_int_equal(plx_bus_request_name(buses[k], name, 0), PLX_NAME_PRIMARY_OWNER);
                }
        }

        /* An empty request, as callers before paging sent: the first page, and a cursor. */
        assert_int_equal(plx_bus_call(f->bus, PLX_BROKER, "ListNames", NULL, 0, PLX_TIMEOUT_DEFAULT, &reply), 0);
        payload = plx_msg_get_payload(reply, &size);
        first = plexus__name_list__unpack(NULL, size, payload);
        assert_non_null(first);
        assert_true(first->n_names > 0 && first->n_names < N_BUSES * PER_BUS);
        assert_string_equal(first->next_after, first->names[first->n_names - 1]->name);
        for (size_t i = 1; i < first->n_names; i++)
                assert_true(strcmp(first->names[i - 1]->name, first->names[i]->name) < 0);
        plexus__name_list__free_unpacked(first, NULL);

        ctl(&r, "list", "--json");
        assert_exit(&r, 0);
        JSON(&r,
             "n = [e['name'] for e in d['names']]\n"
             "want = ['org.example.N%%d_%%03d.%s' %% (k, i) for k in range(%d) for i in range(%d)]\n"
             "assert n == sorted(want), (len(n), len(want))\n",
             pad, N_BUSES, PER_BUS);
        run_free(&r);

        ctl(&r, "list", "--no-legend");
        assert_exit(&r, 0);
        for (size_t k = 0; k < N_BUSES; k++) {
                char name[256];

                snprintf(name, sizeof(name), "org.example.N%zu_%03u.", k, PER_BUS - 1);
                assert_contains(r.out, name);
        }
        run_free(&r);

        for (size_t k = 0; k < N_BUSES; k++)
                plx_bus_free(buses[k]);
}

static void test_clients(void **state) {
        ServiceFixture *f = *state;
        const char *own = plx_bus_get_unique_id(f->bus);
        char comm[64], cmdline[1024];
        uint64_t before = realtime_usec();
        Run r;

        read_self("comm", comm, sizeof(comm));
        read_self("cmdline", cmdline, sizeof(cmdline));
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "x/y", ignore_signal, NULL), 0);
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "a/#", ignore_signal, NULL), 0);
        assert_int_equal(plx_bus_request_name(f->bus, "org.example.Own", 0), PLX_NAME_PRIMARY_OWNER);

        ctl(&r, "clients");
        assert_exit(&r, 0);
        assert_int_equal(strncmp(r.out, "ID ", 3), 0);
        assert_contains(r.out, "DESCRIPTION");
        assert_contains(r.out, "test-service");
        assert_contains(r.out, "integration-test");
        assert_contains(r.out, "org.example.Own");
        assert_contains(strstr(r.out, f->service_id), "test-service");
        run_free(&r);

        ctl(&r, "clients", "--no-legend");
        assert_exit(&r, 0);
        assert_int_equal(r.out[0], ':');
        run_free(&r);

        ctl(&r, "--json", "clients");
        assert_exit(&r, 0);
        JSON(&r,
             "c = {x['unique_id']: x for x in d['clients']}\n"
             "assert len(c) == len(d['clients']) == 3, c.keys()\n"
             "s, o = c['%s'], c['%s']\n"
             "me = [x for x in d['clients'] if x['description'] == 'plexusctl']\n"
             "assert len(me) == 1 and me[0]['state'] == 'running'\n"
             "for x in (s, o):\n"
             "    assert x['uid'] == %u and x['gid'] == %u and x['comm'] == '%s', x\n"
             "    assert x['cmdline'] == '%s', x['cmdline']\n"
             "    assert x['state'] == 'running' and x['monitor'] is False and x['truncated'] is False\n"
             "    assert %llu - 60 * 10**6 < x['connected_usec'] <= %llu + 60 * 10**6, x\n"
             "    assert x['frames_in'] >= 1 and x['frames_out'] >= 1, x\n"
             "    assert x['bytes_in'] > x['frames_in'] and x['bytes_out'] > x['frames_out'], x\n"
             "    assert x['queue_frames'] == 0 and x['queue_bytes'] == 0 and x['pending_calls'] == 0\n"
             "assert s['pid'] == %d and s['description'] == 'test-service', s\n"
             "assert s['names'] == [] and s['subscriptions'] == [] and s['queued_names'] == []\n"
             "assert s['name_count'] == 0 and s['subscription_count'] == 0\n"
             "assert o['pid'] == %d and o['description'] == 'integration-test', o\n"
             "assert o['names'] == ['org.example.Own'] and o['queued_names'] == []\n"
             "assert o['subscriptions'] == ['x/y', 'a/#'], o['subscriptions']\n"
             "assert o['name_count'] == 1 and o['subscription_count'] == 2\n"
             "assert o['frames_in'] >= 4, o\n"
             "keys = {'unique_id', 'state', 'pid', 'uid', 'gid', 'comm', 'cmdline', 'description',\n"
             "        'connected_usec', 'monitor', 'names', 'queued_names', 'subscriptions', 'name_count',\n"
             "        'subscription_count', 'truncated', 'pending_calls', 'queue_frames', 'queue_bytes',\n"
             "        'frames_in', 'frames_out', 'bytes_in', 'bytes_out'}\n"
             "assert set(s) == keys, set(s) ^ keys\n",
             f->service_id, own, (unsigned)getuid(), (unsigned)getgid(), comm, cmdline,
             (unsigned long long)before, (unsigned long long)realtime_usec(), (int)f->service.pid, (int)getpid());
        run_free(&r);
}

/*
 * A bus whose client list takes several frames: clients with many long
 * subscriptions, and one whose subscriptions alone exceed a frame.
 */
#define N_HEAVY 12
#define HEAVY_SUBSCRIPTIONS 100
#define HUGE_SUBSCRIPTIONS 512          /* the broker's default limit */

static void subscribe_long(plx_bus *bus, size_t n, char tag) {
        for (size_t i = 0; i < n; i++) {
                char pattern[256];

                /* 255 bytes, the longest there is: 512 of them are more than a frame. */
                snprintf(pattern, sizeof(pattern), "long/%c/%03zu/%0244zu", tag, i, i);
                assert_int_equal(strlen(pattern), 255);
                assert_int_equal(plx_bus_subscribe(bus, NULL, pattern, ignore_signal, NULL), 0);
        }
}

static void test_clients_paged(void **state) {
        ServiceFixture *f = *state;
        plx_bus *heavy[N_HEAVY] = {};
        _cleanup_bus_ plx_bus *huge = NULL;
        Listing l;
        Run r;

        for (size_t i = 0; i < N_HEAVY; i++) {
                assert_int_equal(plx_bus_new(&heavy[i], f->harness->address, "heavy"), 0);
                subscribe_long(heavy[i], HEAVY_SUBSCRIPTIONS, (char)('a' + i));
        }
        assert_int_equal(plx_bus_new(&huge, f->harness->address, "huge"), 0);
        subscribe_long(huge, HUGE_SUBSCRIPTIONS, 'z');

        /* The broker pages by itself: 12 x 26 KB does not fit one frame. */
        l = list_clients(f->bus, 0, NULL);
        assert_int_equal(l.n_clients, N_HEAVY + 3);
        assert_true(l.n_pages >= 3);
        /* And as asked: one client per page. */
        l = list_clients(f->bus, 1, NULL);
        assert_int_equal(l.n_clients, N_HEAVY + 3);
        assert_int_equal(l.n_pages, N_HEAVY + 3);

        /* plexusctl fetches every page (and counts itself). */
        ctl(&r, "--json", "clients");
        assert_exit(&r, 0);
        JSON(&r,
             "c = d['clients']\n"
             "assert len(c) == %d, len(c)\n"
             "assert len({x['unique_id'] for x in c}) == len(c)\n"
             "ids = [int(x['unique_id'][1:]) for x in c]\n"
             "assert ids == sorted(ids), ids\n"
             "h = [x for x in c if x['description'] == 'heavy']\n"
             "assert len(h) == %d\n"
             "for x in h:\n"
             "    assert len(x['subscriptions']) == x['subscription_count'] == %d and not x['truncated']\n"
             "    assert all(p.startswith('long/') and len(p) == 255 for p in x['subscriptions'])\n"
             "z = [x for x in c if x['description'] == 'huge']\n"
             "assert len(z) == 1 and z[0]['truncated'] and z[0]['subscription_count'] == %d, z[0]['truncated']\n"
             "assert 100 < len(z[0]['subscriptions']) < %d\n"
             "assert z[0]['subscriptions'] == ['long/z/%%03d/%%0244d' %% (i, i) for i in range(len(z[0]['subscriptions']))]\n",
             N_HEAVY + 4, N_HEAVY, HEAVY_SUBSCRIPTIONS, HUGE_SUBSCRIPTIONS, HUGE_SUBSCRIPTIONS);
        run_free(&r);

        /* The table has a line per client. */
        ctl(&r, "clients", "--no-legend");
        assert_exit(&r, 0);
        {
                size_t lines = 0;

                for (const char *p = r.out; *p; p++)
                        lines += *p == '\n';
                assert_int_equal(lines, N_HEAVY + 4);
        }
        run_free(&r);

        /* One client alone is cut short too, and says so. */
        ctl(&r, "client", plx_bus_get_unique_id(huge));
        assert_exit(&r, 0);
        assert_contains(r.out, "Lists cut short:");
        assert_contains(r.out, "512 subscriptions in all");
        run_free(&r);

        for (size_t i = 0; i < N_HEAVY; i++)
                plx_bus_free(heavy[i]);
}

static void test_client(void **state) {
        ServiceFixture *f = *state;
        const char *own = plx_bus_get_unique_id(f->bus);
        char comm[64];
        Run r;

        read_self("comm", comm, sizeof(comm));
        assert_int_equal(plx_bus_request_name(f->bus, "org.example.Own", 0), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "p/+/q", ignore_signal, NULL), 0);

        ctl(&r, "client", f->service_id);
        assert_exit(&r, 0);
        assert_contains(r.out, "Client:");
        assert_contains(r.out, f->service_id);
        assert_contains(r.out, "(running)");
        assert_contains(r.out, "test-service");
        assert_contains(r.out, "Process:");
        assert_contains(r.out, comm);
        run_free(&r);

        /* By a well-known name: its primary owner. */
        ctl(&r, "client", "org.example.Own");
        assert_exit(&r, 0);
        assert_contains(r.out, own);
        assert_contains(r.out, "p/+/q");
        run_free(&r);

        ctl(&r, "--json", "client", "org.example.Own");
        assert_exit(&r, 0);
        JSON(&r,
             "assert d['unique_id'] == '%s' and d['pid'] == %d, d\n"
             "assert d['names'] == ['org.example.Own'] and d['subscriptions'] == ['p/+/q'], d\n"
             "assert d['description'] == 'integration-test' and d['comm'] == '%s'\n",
             own, (int)getpid(), comm);
        run_free(&r);

        /* No such client: exit status 3, the broker's error by name. */
        ctl(&r, "client", ":99999");
        assert_exit(&r, 3);
        assert_string_equal(r.out, "");
        assert_contains(r.err, PLX_ERROR_NAME_HAS_NO_OWNER);
        run_free(&r);

        ctl(&r, "client", "org.example.Nobody", "--json");
        assert_exit(&r, 3);
        JSON(&r,
             "assert d == {'error': {'name': 'plexus.Error.NameHasNoOwner',\n"
             "                       'message': 'org.example.Nobody has no owner'}}, d\n");
        run_free(&r);

        /* Not a name at all: a usage error, found before connecting. */
        ctl(&r, "client", "no name");
        assert_exit(&r, 64);
        run_free(&r);
}

static void test_stats(void **state) {
        ServiceFixture *f = *state;
        Run r;

        for (int i = 0; i < 3; i++)
                assert_int_equal(plx_bus_call(f->bus, f->service_id, "Echo", "x", 1, PLX_TIMEOUT_DEFAULT, NULL), 0);
        assert_int_equal(plx_bus_call(f->bus, f->service_id, "Fail", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL),
                         -EREMOTEIO);
        /* A call that times out at the broker. */
        ctl(&r, "call", f->service_id, "Never", "--timeout", "0.2");
        assert_exit(&r, 2);
        run_free(&r);

        ctl(&r, "stats");
        assert_exit(&r, 0);
        assert_contains(r.out, "Routed");
        assert_contains(r.out, "Dropped or refused");
        assert_contains(r.out, "timeouts:");
        run_free(&r);

        ctl(&r, "stats", "--json");
        assert_exit(&r, 0);
        JSON(&r,
             "assert d['version'] == '%s'\n"
             "assert d['clients']['now'] == 3 and d['clients']['peak'] >= 3, d['clients']\n"
             "rt = d['routed']\n"
             "assert rt['calls'] >= 5 and rt['replies'] >= 3 and rt['errors'] >= 2, rt\n"
             "assert rt['bytes'] > 0 and rt['signals'] >= 0\n"
             "assert d['errors_sent'] >= 1\n"
             "dr = d['drops']\n"
             "assert dr['timeouts'] == 1, dr\n"
             "assert dr['queue_full'] == 0 and dr['leases_expired'] == 0 and dr['fds_rejected'] == 0, dr\n"
             "assert dr['denied'] == 0 and dr['protocol_errors'] == 0 and dr['unexpected_replies'] == 0, dr\n"
             "assert set(dr) == {'queue_full', 'unexpected_replies', 'protocol_errors', 'leases_expired',\n"
             "                   'timeouts', 'fds_rejected', 'denied'}\n"
             "assert d['pending_calls'] == 0 and d['monitors'] == 0 and d['reloads'] == 0\n"
             "assert d['fds_passed'] == 0 and d['uptime_usec'] > 0\n",
             PLEXUS_VERSION);
        run_free(&r);
}

/* --- call, publish, subscribe, wait --------------------------------------- */

static void test_call(void **state) {
        ServiceFixture *f = *state;
        const char *id = f->service_id;
        char path[512];
        Run r;
        int fd;

        ctl(&r, "call", id, "Echo", "hello");
        assert_exit(&r, 0);
        assert_string_equal(r.out, "hello\n");
        assert_string_equal(r.err, "");
        run_free(&r);

        ctl(&r, "call", id, "Echo", "gr\xc3\xbc\xc3\x9f" "e \xe2\x86\x92 \xe4\xb8\x96\xe7\x95\x8c");
        assert_exit(&r, 0);
        assert_string_equal(r.out, "gr\xc3\xbc\xc3\x9f" "e \xe2\x86\x92 \xe4\xb8\x96\xe7\x95\x8c\n");
        run_free(&r);

        ctl(&r, "--json", "call", id, "Echo", "he said \"hi\"\n");
        assert_exit(&r, 0);
        JSON(&r,
             "assert d == {'sender': '%s', 'size': 13, 'payload_text': 'he said \"hi\"\\n',\n"
             "             'payload_hex': b'he said \"hi\"\\n'.hex()}, d\n", id);
        run_free(&r);

        /* Binary, from standard input: a hexdump; exact in --json and --raw. */
        ctl_in(&r, "\x00\x01\xff" "abc", 6, "call", id, "Echo", "-");
        assert_exit(&r, 0);
        assert_string_equal(r.out, "00000000  00 01 ff 61 62 63                                 |...abc|\n"
                                   "00000006\n");
        run_free(&r);

        ctl_in(&r, "\x00\x01\xff" "abc", 6, "call", "--json", id, "Echo", "-");
        assert_exit(&r, 0);
        JSON(&r, "assert d['payload_text'] is None and d['payload_hex'] == '0001ff616263' and d['size'] == 6, d\n");
        run_free(&r);

        ctl_in(&r, "\x00\x01\xff" "abc", 6, "call", "--raw", id, "Echo", "-");
        assert_exit(&r, 0);
        assert_int_equal(r.n_out, 6);
        assert_memory_equal(r.out, "\x00\x01\xff" "abc", 6);
        run_free(&r);

        /* From a file. */
        snprintf(path, sizeof(path), "%s/payload", f->harness->dir);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "from a file", 11), 11);
        close(fd);
        {
                char arg[600];

                snprintf(arg, sizeof(arg), "@%s", path);
                ctl(&r, "call", id, "Echo", arg);
                assert_exit(&r, 0);
                assert_string_equal(r.out, "from a file\n");
                run_free(&r);
        }
        unlink(path);
        ctl(&r, "call", id, "Echo", "@/nonexistent/payload");
        assert_exit(&r, 1);
        assert_contains(r.err, "cannot read the payload");
        run_free(&r);

        /* An empty reply prints nothing. */
        ctl(&r, "call", id, "Echo");
        assert_exit(&r, 0);
        assert_string_equal(r.out, "");
        run_free(&r);

        /* A remote error: exit status 1, the error's name and text. */
        ctl(&r, "call", id, "Fail");
        assert_exit(&r, 1);
        assert_string_equal(r.out, "");
        assert_contains(r.err, SERVICE_ERROR_NAME ": " SERVICE_ERROR_MESSAGE);
        run_free(&r);

        ctl(&r, "call", id, "Fail", "--json");
        assert_exit(&r, 1);
        JSON(&r, "assert d == {'error': {'name': '%s', 'message': '%s'}}, d\n", SERVICE_ERROR_NAME,
             SERVICE_ERROR_MESSAGE);
        run_free(&r);

        ctl(&r, "call", id, "NoSuchMethod");
        assert_exit(&r, 1);
        assert_contains(r.err, PLX_ERROR_UNKNOWN_METHOD);
        run_free(&r);

        /* Timeout: exit status 2. */
        ctl(&r, "call", "--timeout", "200ms", id, "Never");
        assert_exit(&r, 2);
        assert_contains(r.err, PLX_ERROR_TIMEOUT);
        run_free(&r);

        /* No such name: exit status 3, by unique id and by well-known name. */
        ctl(&r, "call", ":99999", "Echo", "x");
        assert_exit(&r, 3);
        assert_contains(r.err, PLX_ERROR_SERVICE_UNKNOWN);
        run_free(&r);

        ctl(&r, "--json", "call", "org.example.Nobody", "Echo", "x");
        assert_exit(&r, 3);
        JSON(&r, "assert d['error']['name'] == 'plexus.Error.ServiceUnknown', d\n");
        run_free(&r);

        /* A payload that starts with '-' after "--". */
        ctl(&r, "call", id, "Echo", "--", "-5");
        assert_exit(&r, 0);
        assert_string_equal(r.out, "-5\n");
        run_free(&r);
}

static void test_publish_subscribe(void **state) {
        ServiceFixture *f = *state;
        Proc sub = PROC_NULL;
        Run r;

        /* JSON lines, ended by --count. */
        CTL_START(&sub, "--json", "subscribe", "cli/#", "--count", "3");
        wait_subscribed(f->bus, "cli/#");

        ctl(&r, "publish", "cli/a", "hello");
        assert_exit(&r, 0);
        assert_string_equal(r.out, "");
        assert_string_equal(r.err, "");
        run_free(&r);
        ctl_in(&r, "\xff\x00\n", 3, "publish", "cli/b/c", "-");
        assert_exit(&r, 0);
        run_free(&r);
        ctl(&r, "publish", "--json", "cli/d", "");
        assert_exit(&r, 0);
        JSON(&r, "assert d == {'topic': 'cli/d', 'size': 0}, d\n");
        run_free(&r);

        proc_finish(&sub, &r, NULL, 0);
        assert_exit(&r, 0);
        JSON_LINES(&r,
                   "assert [x['topic'] for x in d] == ['cli/a', 'cli/b/c', 'cli/d'], d\n"
                   "assert d[0]['payload_text'] == 'hello' and d[0]['payload_hex'] == '68656c6c6f'\n"
                   "assert d[1]['payload_text'] is None and d[1]['payload_hex'] == 'ff000a' and d[1]['size'] == 3\n"
                   "assert d[2]['payload_text'] == '' and d[2]['size'] == 0\n"
                   "assert all(x['sender'].startswith(':') for x in d)\n"
                   "assert d[0]['sequence'] < d[1]['sequence'] < d[2]['sequence']\n"
                   "assert len({x['sender'] for x in d}) == 3\n");
        run_free(&r);

        /* Human-readable, until SIGTERM; text as text, binary as a hexdump. */
        CTL_START(&sub, "subscribe", "cli/+");
        wait_subscribed(f->bus, "cli/+");
        assert_int_equal(plx_bus_publish(f->bus, "cli/text", "21.5", 4), 0);
        assert_int_equal(plx_bus_publish(f->bus, "cli/bin", "\x01\x02\x03", 3), 0);
        assert_int_equal(plx_bus_publish(f->bus, "cli/empty", NULL, 0), 0);
        assert_int_equal(plx_bus_publish(f->bus, "other/x", "no", 2), 0);
        /* Our own Ping comes back after the broker routed all of them. */
        assert_int_equal(plx_bus_call(f->bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        {
                char line[256], expected[256];
                const char *own = plx_bus_get_unique_id(f->bus);

                snprintf(expected, sizeof(expected), "cli/text %s 21.5", own);
                assert_true(harness_read_line(sub.out_fd, line, sizeof(line), harness_timeout_ms(HARNESS_TIMEOUT_MS)) >= 0);
                assert_string_equal(line, expected);
                snprintf(expected, sizeof(expected), "cli/bin %s (3 bytes)", own);
                assert_true(harness_read_line(sub.out_fd, line, sizeof(line), harness_timeout_ms(HARNESS_TIMEOUT_MS)) >= 0);
                assert_string_equal(line, expected);
                assert_true(harness_read_line(sub.out_fd, line, sizeof(line), harness_timeout_ms(HARNESS_TIMEOUT_MS)) >= 0);
                assert_int_equal(strncmp(line, "00000000  01 02 03 ", 19), 0);
                assert_true(harness_read_line(sub.out_fd, line, sizeof(line), harness_timeout_ms(HARNESS_TIMEOUT_MS)) >= 0);
                assert_string_equal(line, "00000003");
                snprintf(expected, sizeof(expected), "cli/empty %s", own);
                assert_true(harness_read_line(sub.out_fd, line, sizeof(line), harness_timeout_ms(HARNESS_TIMEOUT_MS)) >= 0);
                assert_string_equal(line, expected);
        }
        assert_int_equal(kill(sub.pid, SIGTERM), 0);
        proc_finish(&sub, &r, NULL, 0);
        assert_exit(&r, 0);
        assert_string_equal(r.out, "");
        run_free(&r);

        /* --raw: the bytes alone. */
        CTL_START(&sub, "subscribe", "--raw", "raw/#", "-n", "2");
        wait_subscribed(f->bus, "raw/#");
        assert_int_equal(plx_bus_publish(f->bus, "raw/1", "ab\0", 3), 0);
        assert_int_equal(plx_bus_publish(f->bus, "raw/2", "cd", 2), 0);
        assert_int_equal(harness_bus_flush(f->bus, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        proc_finish(&sub, &r, NULL, 0);
        assert_exit(&r, 0);
        assert_int_equal(r.n_out, 5);
        assert_memory_equal(r.out, "ab\0cd", 5);
        run_free(&r);

        /* Not a topic one may publish on, not a pattern: usage errors. */
        ctl(&r, "publish", "cli/+", "x");
        assert_exit(&r, 64);
        run_free(&r);
        ctl(&r, "publish", "plexus/names/x", "x");
        assert_exit(&r, 64);
        run_free(&r);
        ctl(&r, "subscribe", "a/#/b");
        assert_exit(&r, 64);
        run_free(&r);
}

/*
 * A subscriber that does not read: once its queue is full, a publish is
 * refused for it, which publish reports as a remote error, and client
 * shows the queue's depth.
 */
static void test_publish_queue_full(void **state) {
        ServiceFixture *f = *state;
        _cleanup_bus_ plx_bus *flooder = NULL;
        ErrorLog log = {};
        Run r;

        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "full/#", ignore_signal, NULL), 0);
        assert_int_equal(plx_bus_new(&flooder, f->harness->address, "flooder"), 0);
        plx_bus_set_error_handler(flooder, error_log_record, &log);
        /*
         * Small signals fill the queue by its frame limit (4096), so that even
         * the smallest frame is refused after: batches of 1000, each followed
         * by a Ping, which an ERROR about the batch precedes.
         */
        for (int batch = 0; batch < 10 && log.n_errors == 0; batch++) {
                for (int i = 0; i < 1000; i++)
                        assert_int_equal(plx_bus_publish(flooder, "full/flood", "x", 1), 0);
                assert_int_equal(harness_bus_flush(flooder, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
                assert_int_equal(plx_bus_call(flooder, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
                assert_int_equal(harness_bus_drain(flooder), 0);
        }
        assert_true(log.n_errors > 0);
        assert_string_equal(log.name, PLX_ERROR_QUEUE_FULL);

        ctl(&r, "publish", "full/x", "one more");
        assert_exit(&r, 1);
        assert_contains(r.err, PLX_ERROR_QUEUE_FULL);
        run_free(&r);

        ctl(&r, "--json", "client", plx_bus_get_unique_id(f->bus));
        assert_exit(&r, 0);
        JSON(&r,
             "assert d['queue_frames'] >= 4000 and d['queue_bytes'] > 4000 * 20, d\n"
             "assert d['subscriptions'] == ['full/#']\n");
        run_free(&r);

        ctl(&r, "--json", "stats");
        assert_exit(&r, 0);
        JSON(&r, "assert d['drops']['queue_full'] >= 2, d['drops']\n");
        run_free(&r);
}

static void test_wait(void **state) {
        ServiceFixture *f = *state;
        const char *own = plx_bus_get_unique_id(f->bus);
        Proc waiter = PROC_NULL;
        Run r;

        /* Not there, and not coming: exit status 2 after the timeout. */
        ctl(&r, "wait", "org.example.Later", "--timeout", "0.2");
        assert_exit(&r, 2);
        assert_contains(r.err, "did not appear");
        run_free(&r);

        /* Waiting with no timeout until the name appears. */
        CTL_START(&waiter, "--json", "wait", "org.example.Later");
        wait_subscribed(f->bus, "plexus/names/org.example.Later");
        assert_int_equal(plx_bus_request_name(f->bus, "org.example.Later", 0), PLX_NAME_PRIMARY_OWNER);
        proc_finish(&waiter, &r, NULL, 0);
        assert_exit(&r, 0);
        JSON(&r, "assert d == {'name': 'org.example.Later', 'owner': '%s'}, d\n", own);
        run_free(&r);

        /* There already: at once. */
        ctl(&r, "wait", "org.example.Later");
        assert_exit(&r, 0);
        assert_int_equal(strncmp(r.out, own, strlen(own)), 0);
        assert_string_equal(r.out + strlen(own), "\n");
        run_free(&r);

        ctl(&r, "wait", ":1");
        assert_exit(&r, 64);
        run_free(&r);
}

/* --- monitor, capture, --fd ----------------------------------------------- */

/* Until the broker counts @n monitors. */
static void wait_monitors(plx_bus *bus, uint64_t n) {
        uint64_t deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);

        for (;;) {
                _cleanup_msg_ plx_msg *reply = NULL;
                Plexus__Stats *st;
                uint64_t have;
                const void *p;
                size_t size;

                assert_int_equal(plx_bus_call(bus, PLX_BROKER, "GetStats", NULL, 0, PLX_TIMEOUT_DEFAULT, &reply), 0);
                p = plx_msg_get_payload(reply, &size);
                st = plexus__stats__unpack(NULL, size, p);
                assert_non_null(st);
                have = st->n_monitors;
                plexus__stats__free_unpacked(st, NULL);
                if (have == n)
                        return;
                if (harness_now_ms() >= deadline)
                        fail_msg("%llu monitors, expected %llu", (unsigned long long)have, (unsigned long long)n);
                usleep(10 * 1000);
        }
}

/*
 * Read @p's stdout, appending to *@buf, until @needle is in it (at the
 * start of a line if @line_start); bounded, and in chunks, for monitors
 * that write a lot. Returns the needle's offset.
 */
static size_t proc_read_until(Proc *p, char **buf, size_t *n, const char *needle, bool line_start) {
        uint64_t deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);
        size_t from = 0, len = strlen(needle);

        if (!*buf)
                append(buf, n, "", 0);
        for (;;) {
                struct pollfd pfd = { .fd = p->out_fd, .events = POLLIN };
                char chunk[65536];
                uint64_t now;
                ssize_t l;

                for (char *s = *buf + from; (s = strstr(s, needle)); s++)
                        if (!line_start || s == *buf || s[-1] == '\n')
                                return (size_t)(s - *buf);
                from = *n > len ? *n - len : 0;

                now = harness_now_ms();
                if (now >= deadline)
                        fail_msg("\"%s\" not in the output in time; its end:\n%s", needle,
                                 *n > 2000 ? *buf + *n - 2000 : *buf);
                assert_true(poll(&pfd, 1, (int)(deadline - now)) >= 0 || errno == EINTR);
                if (!(pfd.revents & (POLLIN | POLLHUP | POLLERR)))
                        continue;
                l = read(p->out_fd, chunk, sizeof(chunk));
                if (l < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (l <= 0)
                        fail_msg("the output ended without \"%s\"; its end:\n%s", needle,
                                 *n > 2000 ? *buf + *n - 2000 : *buf);
                append(buf, n, chunk, (size_t)l);
                assert_true(*n < OUTPUT_MAX);
        }
}

static void test_monitor(void **state) {
        ServiceFixture *f = *state;
        const char *own = plx_bus_get_unique_id(f->bus), *id = f->service_id;
        _cleanup_msg_ plx_msg *reply = NULL;
        Proc filtered = PROC_NULL, all = PROC_NULL;
        char line[600];
        const void *p;
        size_t n;
        Run r;

        /*
         * Filtered, JSON lines, ended by --count; and everything, human-readable, until SIGTERM.
         * --raw: monitors that decode introspect the clients they see, and each would see the
         * other's Introspect calls (test_typed_monitor covers decoding).
         */
        CTL_START(&filtered, "--json", "--raw", "monitor", "--name", id, "--topic", "mon/#", "--count", "3");
        CTL_START(&all, "--raw", "monitor");
        wait_monitors(f->bus, 2);

        /* The traffic between us and the service is not altered: the call arrives and is answered. */
        assert_int_equal(plx_bus_call(f->bus, id, "Echo", "watched", 7, PLX_TIMEOUT_DEFAULT, &reply), 0);
        assert_int_equal(plx_msg_get_kind(reply), PLX_MSG_REPLY);
        assert_string_equal(plx_msg_get_sender(reply), id);
        p = plx_msg_get_payload(reply, &n);
        assert_int_equal(n, 7);
        assert_memory_equal(p, "watched", 7);
        assert_int_equal(plx_bus_publish(f->bus, "mon/temp", "21.5", 4), 0);
        assert_int_equal(plx_bus_publish(f->bus, "other/x", "\x01\x02", 2), 0);
        assert_int_equal(plx_bus_call(f->bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);

        proc_finish(&filtered, &r, NULL, 0);
        assert_exit(&r, 0);
        JSON_LINES(&r,
                   "assert len(d) == 3, d\n"
                   "c, rp, s = d\n"
                   "keys = {'sequence', 'kind', 'serial', 'reply_serial', 'sender', 'destination', 'member', 'topic',\n"
                   "        'error_name', 'no_reply', 'timeout_ms', 'delivery', 'sender_uid', 'sender_gid',\n"
                   "        'sender_pid', 'n_fds', 'large_size', 'large_path', 'large_addr', 'transfer_id',\n"
                   "        'size', 'payload_text', 'payload_hex'}\n"
                   "assert all(set(x) == keys for x in d), [set(x) ^ keys for x in d]\n"
                   "assert c['kind'] == 'call' and c['sender'] == '%s' and c['destination'] == '%s', c\n"
                   "assert c['member'] == 'Echo' and c['topic'] is None and c['error_name'] is None, c\n"
                   "assert c['payload_text'] == 'watched' and c['payload_hex'] == b'watched'.hex() and c['size'] == 7\n"
                   "assert c['no_reply'] is False and c['timeout_ms'] == 25000 and c['reply_serial'] == 0, c\n"
                   "assert c['sender_uid'] == %u and c['sender_gid'] == %u and c['sender_pid'] == %d, c\n"
                   "assert c['n_fds'] == 0 and c['serial'] > 0\n"
                   "assert rp['kind'] == 'reply' and rp['sender'] == '%s' and rp['destination'] == '%s', rp\n"
                   "assert rp['reply_serial'] == c['serial'] and rp['payload_text'] == 'watched', rp\n"
                   "assert rp['member'] is None and rp['sender_pid'] == %d, rp\n"
                   "assert s['kind'] == 'signal' and s['topic'] == 'mon/temp' and s['sender'] == '%s', s\n"
                   "assert s['destination'] is None and s['member'] is None and s['payload_text'] == '21.5', s\n"
                   "assert c['sequence'] < rp['sequence'] < s['sequence']\n"
                   "assert rp['delivery'] == c['delivery'] + 1 and s['delivery'] == rp['delivery'] + 1, d\n",
                   own, id, (unsigned)getuid(), (unsigned)getgid(), (int)getpid(), id, own, (int)f->service.pid,
                   own);
        run_free(&r);

        /* The unfiltered one has seen everything above, up to our Ping, and answered nothing. */
        {
                _cleanup_(freep) char *out = NULL;
                size_t n_out = 0;

                snprintf(line, sizeof(line), " call %s -> plexus Ping serial=", own);
                proc_read_until(&all, &out, &n_out, line, false);
                snprintf(line, sizeof(line), " call %s -> %s Echo serial=", own, id);
                assert_contains(out, line);
                snprintf(line, sizeof(line), " reply %s -> %s serial=", id, own);
                assert_contains(out, line);
                assert_contains(strstr(out, line), " \"watched\"\n");
                snprintf(line, sizeof(line), " signal %s -> * mon/temp serial=", own);
                assert_contains(out, line);
                assert_contains(strstr(out, line), " \"21.5\"\n");
                snprintf(line, sizeof(line), " signal %s -> * other/x serial=", own);
                assert_contains(out, line);
                assert_contains(strstr(out, line), " (2 bytes) 01 02\n");
                assert_null(strstr(out, PLX_ERROR_UNKNOWN_METHOD));
                assert_null(strstr(out, "missed"));
        }
        assert_int_equal(kill(all.pid, SIGTERM), 0);
        proc_finish(&all, &r, NULL, 0);
        assert_exit(&r, 0);
        assert_string_equal(r.err, "");
        run_free(&r);

        /* Had a monitor answered a copy, or sent anything else, the broker would have refused it. */
        ctl(&r, "--json", "stats");
        assert_exit(&r, 0);
        JSON(&r, "assert d['errors_sent'] == 0 and d['drops']['protocol_errors'] == 0, d\n"
                 "assert d['drops']['unexpected_replies'] == 0, d\n");
        run_free(&r);
}

/* Publish @n signals of @size bytes on @topic from @bus, in batches the queues take. */
static void flood(plx_bus *bus, const char *topic, size_t n, size_t size) {
        _cleanup_(freep) char *payload = malloc(size);

        assert_non_null(payload);
        memset(payload, 'x', size);
        for (size_t done = 0; done < n;) {
                for (size_t i = 0; i < 500 && done < n; i++, done++)
                        assert_int_equal(plx_bus_publish(bus, topic, payload, size), 0);
                assert_int_equal(harness_bus_flush(bus, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
                /* The broker has handled the batch when it answers. */
                assert_int_equal(plx_bus_call(bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
                assert_int_equal(harness_bus_drain(bus), 0);
        }
}

/* The count of a "missed N frames" line, or of {"missed": N}, at @s. */
static unsigned long long missed_count(const char *s) {
        unsigned long long v = 0;

        if (sscanf(s, "missed %llu frame", &v) == 1 || sscanf(s, "{\"missed\":%llu}", &v) == 1)
                return v;
        fail_msg("not a missed line: %.80s", s);
        return 0;
}

/*
 * Monitors that stop reading (SIGSTOP) while the bus is flooded: the bus
 * does not wait for them, calls between others keep completing, and once
 * they run again they report how many frames they missed.
 */
static void test_monitor_stopped(void **state) {
        ServiceFixture *f = *state;
        _cleanup_bus_ plx_bus *flooder = NULL;
        Proc human = PROC_NULL, json = PROC_NULL;
        Proc *mons[] = { &human, &json };
        uint64_t started, slowest = 0;
        unsigned int n_calls = 0;
        int status;
        Run r;

        assert_int_equal(plx_bus_new(&flooder, f->harness->address, "flooder"), 0);
        CTL_START(&human, "monitor");
        CTL_START(&json, "monitor", "--json");
        wait_monitors(f->bus, 2);
        for (size_t i = 0; i < ELEMENTSOF(mons); i++) {
                assert_int_equal(kill(mons[i]->pid, SIGSTOP), 0);
                assert_int_equal(waitpid(mons[i]->pid, &status, WUNTRACED), mons[i]->pid);
                assert_true(WIFSTOPPED(status));
        }

        /*
         * More than a monitor's queue (4096 frames) and its socket's buffer
         * hold: 6000 signals of 64 bytes, in rounds; after each
         * round a ping-pong between us and the service, whose copies do not
         * fit either, must still complete.
         */
        started = harness_now_ms();
        for (int round = 0; round < 6; round++) {
                flood(flooder, "flood/x", 1000, 64);
                for (int i = 0; i < 10; i++) {
                        uint64_t t = harness_now_ms();
                        _cleanup_msg_ plx_msg *reply = NULL;
                        size_t n;

                        assert_int_equal(plx_bus_call(f->bus, f->service_id, "Echo", "ping", 4, 5 * 1000 * 1000,
                                                      &reply), 0);
                        plx_msg_get_payload(reply, &n);
                        assert_int_equal(n, 4);
                        n_calls++;
                        slowest = MAX(slowest, harness_now_ms() - t);
                }
        }
        print_message("%u calls completed while the monitors were stopped, in %llu ms (slowest %llu ms)\n", n_calls,
                      (unsigned long long)(harness_now_ms() - started), (unsigned long long)slowest);
        assert_int_equal(n_calls, 60);

        /* Running again, each learns how many frames it missed. */
        for (size_t i = 0; i < ELEMENTSOF(mons); i++) {
                _cleanup_(freep) char *out = NULL;
                size_t n_out = 0, at;

                assert_int_equal(kill(mons[i]->pid, SIGCONT), 0);
                at = proc_read_until(mons[i], &out, &n_out, mons[i] == &json ? "{\"missed\":" : "missed ", true);
                assert_true(missed_count(out + at) > 0);
                print_message("monitor %zu: %.*s\n", i, (int)strcspn(out + at, "\n"), out + at);
                assert_int_equal(kill(mons[i]->pid, SIGTERM), 0);
                proc_finish(mons[i], &r, NULL, 0);
                assert_exit(&r, 0);
                run_free(&r);
        }
}

static bool have_tshark(void) {
        Proc p = PROC_NULL;
        bool found;
        Run r;

        proc_start(&p, (char *[]) { (char *)"tshark", (char *)"--version", NULL }, -1);
        proc_finish(&p, &r, NULL, 0);
        found = r.status == 0;
        run_free(&r);
        return found;
}

static uint32_t le32(const uint8_t *p) {
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The bytes of @path, read whole. */
static char *read_file(const char *path, size_t *ret_n) {
        char *buf = NULL;
        size_t n = 0;
        char chunk[65536];
        ssize_t l;
        int fd;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        append(&buf, &n, "", 0);
        while ((l = read(fd, chunk, sizeof(chunk))) > 0)
                append(&buf, &n, chunk, (size_t)l);
        assert_int_equal(l, 0);
        close(fd);
        *ret_n = n;
        return buf;
}

#define N_CAPTURED 6

static void test_capture(void **state) {
        ServiceFixture *f = *state;
        static const char *const words[] = { "one", "two", "three" };
        const char *own = plx_bus_get_unique_id(f->bus), *id = f->service_id;
        _cleanup_(freep) char *file = NULL;
        size_t lengths[N_CAPTURED], n_file, off;
        uint64_t before = realtime_usec(), after;
        char path[400], lua[600], expected[2048];
        Proc cap = PROC_NULL;
        Run r;

        snprintf(path, sizeof(path), "%s/bus.pcap", f->harness->dir);
        CTL_START(&cap, "capture", path, "--name", id, "--count", "6");
        wait_monitors(f->bus, 1);
        for (size_t i = 0; i < ELEMENTSOF(words); i++)
                assert_int_equal(plx_bus_call(f->bus, id, "Echo", words[i], strlen(words[i]), PLX_TIMEOUT_DEFAULT,
                                              NULL), 0);
        /* Not for the service: not captured. */
        assert_int_equal(plx_bus_publish(f->bus, "cap/x", "no", 2), 0);
        proc_finish(&cap, &r, NULL, 0);
        after = realtime_usec();
        assert_exit(&r, 0);
        snprintf(expected, sizeof(expected), "captured 6 frames to %s\n", path);
        assert_string_equal(r.out, expected);
        run_free(&r);

        /* The file, read by hand: pcap header, then each record a frame as the broker sent it. */
        file = read_file(path, &n_file);
        assert_true(n_file > 24);
        assert_memory_equal(file, "\xd4\xc3\xb2\xa1\x02\x00\x04\x00", 8);
        assert_int_equal(le32((uint8_t *)file + 8), 0);
        assert_int_equal(le32((uint8_t *)file + 12), 0);
        assert_int_equal(le32((uint8_t *)file + 16), 262144);
        assert_int_equal(le32((uint8_t *)file + 20), 147);
        off = 24;
        for (size_t i = 0; i < N_CAPTURED; i++) {
                const uint8_t *rec = (const uint8_t *)file + off, *frame = rec + 16;
                uint64_t ts = (uint64_t)le32(rec) * 1000000u + le32(rec + 4);
                uint32_t len = le32(rec + 8), hlen;
                Plexus__Header *h;

                assert_true(off + 16 <= n_file);
                assert_int_equal(le32(rec + 12), len);
                assert_true(off + 16 + len <= n_file);
                assert_true(le32(rec + 4) < 1000000);
                assert_true(ts >= before - 1000000 && ts <= after + 1000000);
                hlen = le32(frame);
                assert_true(4 + hlen <= len);
                h = plexus__header__unpack(NULL, hlen, frame + 4);
                assert_non_null(h);
                assert_int_equal(h->kind, i % 2 == 0 ? PLEXUS__KIND__KIND_CALL : PLEXUS__KIND__KIND_REPLY);
                assert_string_equal(h->sender, i % 2 == 0 ? own : id);
                assert_string_equal(h->destination, i % 2 == 0 ? id : own);
                if (i % 2 == 0)
                        assert_string_equal(h->member, "Echo");
                assert_true(h->sequence > 0 && h->delivery > 0 && h->serial > 0);
                assert_int_equal(h->sender_pid, i % 2 == 0 ? (uint32_t)getpid() : (uint32_t)f->service.pid);
                /* As the broker encodes it: delivery (field 11, tag 0x58) appended last. */
                if (h->delivery < 128) {
                        assert_int_equal(frame[4 + hlen - 2], 0x58);
                        assert_int_equal(frame[4 + hlen - 1], h->delivery);
                }
                assert_int_equal(len - 4 - hlen, strlen(words[i / 2]));
                assert_memory_equal(frame + 4 + hlen, words[i / 2], strlen(words[i / 2]));
                plexus__header__free_unpacked(h, NULL);
                lengths[i] = len;
                off += 16 + len;
        }
        assert_int_equal(off, n_file);

        /* To standard output. The first capture's monitor must be gone before counting the new one. */
        wait_monitors(f->bus, 0);
        {
                Proc out = PROC_NULL;

                CTL_START(&out, "capture", "-", "--member", "Echo", "-n", "1");
                wait_monitors(f->bus, 1);
                assert_int_equal(plx_bus_call(f->bus, id, "Echo", "x", 1, PLX_TIMEOUT_DEFAULT, NULL), 0);
                proc_finish(&out, &r, NULL, 0);
                assert_exit(&r, 0);
                /* --member matches the CALL only; the REPLY has no member. */
                assert_contains(r.err, "captured 1 frame to standard output");
                assert_true(r.n_out > 24 + 16);
                assert_memory_equal(r.out, file, 24);
                run_free(&r);
        }

        if (!have_tshark()) {
                print_message("tshark is not installed (tools/install-deps.sh installs it): "
                              "skipping the check of the capture with tshark\n");
                skip();
        }

        /* tshark lists exactly the frames, with their lengths. */
        {
                Proc t = PROC_NULL;
                size_t k = 0;

                proc_start(&t, (char *[]) { (char *)"tshark", (char *)"-r", path, (char *)"-T", (char *)"fields",
                                            (char *)"-e", (char *)"frame.number", (char *)"-e", (char *)"frame.len",
                                            NULL }, -1);
                proc_finish(&t, &r, NULL, 0);
                if (r.status != 0)
                        fail_msg("tshark failed (%d):\n%s", r.status, r.err);
                for (char *line = r.out, *nl; (nl = strchr(line, '\n')); line = nl + 1, k++) {
                        assert_true(k < N_CAPTURED);
                        snprintf(expected, sizeof(expected), "%zu\t%zu", k + 1, lengths[k]);
                        *nl = 0;
                        assert_string_equal(line, expected);
                }
                assert_int_equal(k, N_CAPTURED);
                run_free(&r);
        }

        /* And with our dissector, next to plexusctl in the build tree. */
        snprintf(lua, sizeof(lua), "lua_script:%s", plexusctl_path());
        assert_non_null(strrchr(lua, '/'));
        strcpy(strrchr(lua, '/') + 1, "plexus.lua");
        {
                Proc t = PROC_NULL;

                proc_start(&t, (char *[]) { (char *)"tshark", (char *)"-X", lua, (char *)"-r", path, (char *)"-T",
                                            (char *)"fields", (char *)"-E", (char *)"separator=/s", (char *)"-e",
                                            (char *)"plexus.kind", (char *)"-e", (char *)"plexus.sender",
                                            (char *)"-e", (char *)"plexus.member", (char *)"-e",
                                            (char *)"plexus.payload_len", NULL }, -1);
                proc_finish(&t, &r, NULL, 0);
                if (r.status != 0)
                        fail_msg("tshark with plexus.lua failed (%d):\n%s", r.status, r.err);
                snprintf(expected, sizeof(expected),
                         "1 %s Echo 3\n2 %s  3\n1 %s Echo 3\n2 %s  3\n1 %s Echo 5\n2 %s  5\n", own, id, own, id, own,
                         id);
                assert_string_equal(r.out, expected);
                assert_null(strstr(r.err, "Lua"));
                run_free(&r);
        }
}

/* A method of the test's own connection that reads the fds it gets and answers with a pipe. */
typedef struct FdCall {
        bool done;
        char content[256];              /* of the first fd */
        size_t n_fds;
        bool second_is_dir;
} FdCall;

static int on_read_fd(plx_msg *call, void *userdata) {
        FdCall *fc = userdata;
        struct stat st;
        ssize_t l;
        int p[2], r;

        fc->n_fds = plx_msg_get_n_fds(call);
        fc->done = true;
        if (fc->n_fds >= 1) {
                l = pread(plx_msg_get_fd(call, 0), fc->content, sizeof(fc->content) - 1, 0);
                fc->content[l > 0 ? l : 0] = 0;
        }
        if (fc->n_fds >= 2)
                fc->second_is_dir = fstat(plx_msg_get_fd(call, 1), &st) == 0 && S_ISDIR(st.st_mode);
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        close(p[1]);
        r = plx_msg_reply_with_fds(call, fc->content, strlen(fc->content), &p[0], 1);
        close(p[0]);
        return r;
}

static int on_fd_signal(plx_msg *signal, void *userdata) {
        FdCall *fc = userdata;
        ssize_t l;

        fc->n_fds = plx_msg_get_n_fds(signal);
        fc->done = true;
        if (fc->n_fds >= 1) {
                l = pread(plx_msg_get_fd(signal, 0), fc->content, sizeof(fc->content) - 1, 0);
                fc->content[l > 0 ? l : 0] = 0;
        }
        return 0;
}

static void test_fd(void **state) {
        ServiceFixture *f = *state;
        const char *own = plx_bus_get_unique_id(f->bus);
        char path[400];
        FdCall fc = {};
        Proc p = PROC_NULL, sub = PROC_NULL;
        Run r;
        int fd;

        snprintf(path, sizeof(path), "%s/passed", f->harness->dir);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "read through the fd\n", 20), 20);
        close(fd);
        assert_int_equal(plx_bus_add_method(f->bus, NULL, "ReadFd", on_read_fd, &fc), 0);

        /* call --fd: the callee reads the file; the reply's own fd is counted. */
        CTL_START(&p, "call", own, "ReadFd", "--fd", path);
        assert_int_equal(harness_bus_wait(f->bus, &fc.done, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        proc_finish(&p, &r, NULL, 0);
        assert_exit(&r, 0);
        assert_int_equal(fc.n_fds, 1);
        assert_string_equal(fc.content, "read through the fd\n");
        assert_string_equal(r.out, "read through the fd\nfds: 1\n");
        run_free(&r);

        /* Two, the second a directory; --json counts the reply's. */
        fc = (FdCall) {};
        CTL_START(&p, "--json", "call", "--fd", path, own, "ReadFd", "--fd", f->harness->dir);
        assert_int_equal(harness_bus_wait(f->bus, &fc.done, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        proc_finish(&p, &r, NULL, 0);
        assert_exit(&r, 0);
        assert_int_equal(fc.n_fds, 2);
        assert_true(fc.second_is_dir);
        JSON(&r, "assert d == {'sender': '%s', 'size': 20, 'payload_text': 'read through the fd\\n',\n"
                 "             'payload_hex': b'read through the fd\\n'.hex(), 'n_fds': 1}, d\n", own);
        run_free(&r);

        /* publish --fd: the subscriber reads it; subscribe shows the count. */
        fc = (FdCall) {};
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "fd/x", on_fd_signal, &fc), 0);
        CTL_START(&sub, "--json", "subscribe", "fd/#", "--count", "1");
        wait_subscribed(f->bus, "fd/#");
        ctl(&r, "--json", "publish", "--fd", path, "fd/x", "with an fd");
        assert_exit(&r, 0);
        JSON(&r, "assert d == {'topic': 'fd/x', 'size': 10, 'n_fds': 1}, d\n");
        run_free(&r);
        assert_int_equal(harness_bus_wait(f->bus, &fc.done, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        assert_int_equal(fc.n_fds, 1);
        assert_string_equal(fc.content, "read through the fd\n");
        proc_finish(&sub, &r, NULL, 0);
        assert_exit(&r, 0);
        JSON_LINES(&r, "assert len(d) == 1 and d[0]['n_fds'] == 1 and d[0]['payload_text'] == 'with an fd', d\n");
        run_free(&r);

        /* A file that cannot be opened: exit status 1, before anything is sent. */
        ctl(&r, "call", own, "ReadFd", "--fd", "/nonexistent/file");
        assert_exit(&r, 1);
        assert_contains(r.err, "cannot open /nonexistent/file for --fd");
        run_free(&r);
}

/* --- the bus is not there; the command line is wrong ---------------------- */

/* --- large messages (docs/protocol.md §17) ---------------------------------- */

/* A few MiB and an odd size: whole pages are no special case. */
#define LARGE_SIZE (3u * 1024u * 1024u + 17u)

static uint8_t *pattern(size_t size, uint8_t seed) {
        uint8_t *p = malloc(size);

        assert_non_null(p);
        for (size_t i = 0; i < size; i++)
                p[i] = (uint8_t)((i * 131u) ^ (i >> 11) ^ seed);
        return p;
}

static void write_file(const char *path, const void *data, size_t size) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        size_t done = 0;

        assert_true(fd >= 0);
        while (done < size) {
                ssize_t l = write(fd, (const char *)data + done, size - done);

                assert_true(l > 0);
                done += (size_t)l;
        }
        close(fd);
}

/*
 * call and publish with payloads far above a frame, from a file (mapped)
 * and from a pipe (read), echoed back and received byte for byte; stats
 * counts them by path, and refuses what no bus could take.
 */
static void test_large(void **state) {
        ServiceFixture *f = *state;
        const char *id = f->service_id;
        _cleanup_(freep) uint8_t *big = pattern(LARGE_SIZE, 1), *piped = pattern(300000, 2), *small = NULL;
        char path[400], small_path[400], sparse_path[400], arg[420];
        Proc sub = PROC_NULL;
        Run r;
        int fd;

        snprintf(path, sizeof(path), "%s/large", f->harness->dir);
        write_file(path, big, LARGE_SIZE);
        snprintf(arg, sizeof(arg), "@%s", path);

        /* Lent by plexusctl (process_vm), echoed in a memfd: byte-exact both ways. */
        ctl(&r, "call", "--raw", id, "Echo", arg);
        assert_exit(&r, 0);
        assert_string_equal(r.err, "");
        assert_int_equal(r.n_out, LARGE_SIZE);
        assert_memory_equal(r.out, big, LARGE_SIZE);
        run_free(&r);

        /* From a pipe: read, not mapped, and well above the first buffer. */
        ctl_in(&r, piped, 300000, "call", "--raw", id, "Echo", "-");
        assert_exit(&r, 0);
        assert_int_equal(r.n_out, 300000);
        assert_memory_equal(r.out, piped, 300000);
        run_free(&r);

        /* --json: the size and every byte in hex. */
        small = pattern(200 * 1024, 3);
        snprintf(small_path, sizeof(small_path), "%s/large-json", f->harness->dir);
        write_file(small_path, small, 200 * 1024);
        snprintf(arg, sizeof(arg), "@%s", small_path);
        ctl(&r, "--json", "call", id, "Echo", arg);
        assert_exit(&r, 0);
        JSON(&r, "assert d['size'] == 204800 and d['payload_hex'] == open('%s', 'rb').read().hex(), d['size']\n",
             small_path);
        run_free(&r);

        /* publish from a file (a memfd), to a subscriber that prints it raw. */
        CTL_START(&sub, "subscribe", "--raw", "--count", "1", "large/#");
        wait_subscribed(f->bus, "large/#");
        snprintf(arg, sizeof(arg), "@%s", path);
        ctl(&r, "--json", "publish", "large/x", arg);
        assert_exit(&r, 0);
        JSON(&r, "assert d == {'topic': 'large/x', 'size': %u}, d\n", LARGE_SIZE);
        run_free(&r);
        proc_finish(&sub, &r, NULL, 0);
        assert_exit(&r, 0);
        assert_int_equal(r.n_out, LARGE_SIZE);
        assert_memory_equal(r.out, big, LARGE_SIZE);
        run_free(&r);

        /*
         * Every large frame above, by path: three calls lent, their three
         * replies and the signal in memfds; each lent call copied once by
         * the service, in time. Inline bytes stay apart.
         */
        ctl(&r, "--json", "stats");
        assert_exit(&r, 0);
        JSON(&r,
             "lg, tr = d['large'], d['transfers']\n"
             "vm = %u + 300000 + 204800\n"
             "assert lg == {'process_vm': 3, 'process_vm_bytes': vm, 'memfd': 4, 'memfd_bytes': vm + %u}, lg\n"
             "assert tr == {'live': 0, 'expired': 0, 'refused': 0, 'copied': 3}, tr\n"
             "assert d['routed']['bytes'] < 300000, d['routed']\n",
             LARGE_SIZE, LARGE_SIZE);
        run_free(&r);
        ctl(&r, "stats");
        assert_exit(&r, 0);
        assert_contains(r.out, "\nLarge messages\n");
        assert_contains(r.out, "  memfd:         4 (");
        assert_contains(r.out, "  process_vm:    3 (");
        assert_contains(r.out, "  transfers:     0 live, 0 expired\n");
        assert_contains(r.out, "  receivers:     3 copied, 0 refused\n");
        run_free(&r);

        /*
         * Too large. Sparse files cost nothing: one byte above the bus's
         * limit is refused by libplexus before anything is sent, naming the
         * limit; one above anything a bus can accept, before connecting.
         */
        snprintf(sparse_path, sizeof(sparse_path), "%s/sparse", f->harness->dir);
        snprintf(arg, sizeof(arg), "@%s", sparse_path);
        fd = open(sparse_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t)(1u << 30) + 1), 0);
        ctl(&r, "call", id, "Echo", arg);
        assert_exit(&r, 1);
        assert_contains(r.err, "the payload (1073741825 bytes) is larger than the bus accepts (1073741824 bytes)");
        run_free(&r);
        ctl(&r, "publish", "large/x", arg);
        assert_exit(&r, 1);
        assert_contains(r.err, "is larger than the bus accepts (1073741824 bytes)");
        run_free(&r);
        assert_int_equal(ftruncate(fd, (off_t)UINT32_MAX + 1), 0);
        close(fd);
        ctl(&r, "call", id, "Echo", arg);
        assert_exit(&r, 1);
        assert_contains(r.err, "the payload is larger than any bus accepts (4294967295 bytes)");
        run_free(&r);
        unlink(sparse_path);
        unlink(small_path);
        unlink(path);
}

/*
 * Monitors see a large frame's descriptor (size, path, transfer), never its
 * bytes, and do not take part: the lent call is copied by the callee alone,
 * and no monitor answers or acknowledges anything.
 */
static void test_large_monitor(void **state) {
        ServiceFixture *f = *state;
        const char *own = plx_bus_get_unique_id(f->bus), *id = f->service_id;
        _cleanup_(freep) uint8_t *big = pattern(LARGE_SIZE, 4);
        _cleanup_(freep) char *file = NULL;
        _cleanup_msg_ plx_msg *reply = NULL;
        Proc json = PROC_NULL, all = PROC_NULL, cap = PROC_NULL;
        char line[600], path[400];
        const void *p;
        size_t n, n_file, off;
        Run r;

        snprintf(path, sizeof(path), "%s/large.pcap", f->harness->dir);
        /*
         * What the service sends and gets (our own GetStats polls would match
         * our id): the call, its acknowledgement and the broker's answer, the
         * reply.
         */
        CTL_START(&json, "--json", "--raw", "monitor", "--name", id, "--count", "4");
        CTL_START(&all, "--raw", "monitor");
        CTL_START(&cap, "capture", path, "--name", id, "--count", "4");
        wait_monitors(f->bus, 3);

        /* A synchronous call lends our buffer; the reply comes in a memfd. */
        assert_int_equal(plx_bus_call(f->bus, id, "Echo", big, LARGE_SIZE, PLX_TIMEOUT_DEFAULT, &reply), 0);
        p = plx_msg_get_payload(reply, &n);
        assert_int_equal(n, LARGE_SIZE);
        assert_memory_equal(p, big, LARGE_SIZE);
        assert_int_equal(plx_msg_get_large_size(reply), LARGE_SIZE);
        assert_int_equal(plx_msg_get_large_addr(reply), 0);
        assert_int_equal(plx_bus_call(f->bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);

        proc_finish(&json, &r, NULL, 0);
        assert_exit(&r, 0);
        JSON_LINES(&r,
                   "assert len(d) == 4, d\n"
                   "c, ack, ok, rp = d\n"
                   "assert ack['kind'] == 'call' and ack['member'] == 'AckTransfer' and ack['sender'] == '%s', ack\n"
                   "assert ack['destination'] == 'plexus' and ack['large_size'] == 0 and ack['large_path'] is None\n"
                   "assert ok['kind'] == 'reply' and ok['sender'] == 'plexus' and ok['reply_serial'] == ack['serial']\n"
                   "assert c['kind'] == 'call' and c['member'] == 'Echo' and c['destination'] == '%s', c\n"
                   "assert c['large_size'] == %u and c['large_path'] == 'process_vm', c\n"
                   "assert c['large_addr'] == %llu and c['transfer_id'] > 0, c\n"
                   "assert c['size'] == 0 and c['payload_hex'] == '' and c['n_fds'] == 0, c\n"
                   "assert rp['kind'] == 'reply' and rp['sender'] == '%s' and rp['reply_serial'] == c['serial'], rp\n"
                   "assert rp['large_size'] == %u and rp['large_path'] == 'memfd', rp\n"
                   "assert rp['large_addr'] == 0 and rp['transfer_id'] == 0 and rp['size'] == 0, rp\n",
                   id, id, LARGE_SIZE, (unsigned long long)(uintptr_t)big, id, LARGE_SIZE);
        run_free(&r);

        /* The lines: descriptors in place of payloads; acknowledgement and TransferDone as frames. */
        {
                _cleanup_(freep) char *out = NULL;
                size_t n_out = 0;

                snprintf(line, sizeof(line), " call %s -> plexus Ping serial=", own);
                proc_read_until(&all, &out, &n_out, line, false);
                snprintf(line, sizeof(line), " call %s -> %s Echo serial=", own, id);
                assert_contains(out, line);
                snprintf(line, sizeof(line), " large=%u path=process_vm transfer=", LARGE_SIZE);
                assert_contains(out, line);
                snprintf(line, sizeof(line), " call %s -> plexus AckTransfer serial=", id);
                assert_contains(out, line);
                assert_contains(out, " signal plexus -> * plexus/transfer/done serial=");
                snprintf(line, sizeof(line), " reply %s -> %s serial=", id, own);
                assert_contains(out, line);
                snprintf(line, sizeof(line), " large=%u path=memfd\n", LARGE_SIZE);
                assert_contains(strstr(out, " reply "), line);
        }
        assert_int_equal(kill(all.pid, SIGTERM), 0);
        proc_finish(&all, &r, NULL, 0);
        assert_exit(&r, 0);
        assert_string_equal(r.err, "");
        run_free(&r);

        /* The capture holds the large frames' headers with fields 16-18, and no payload. */
        proc_finish(&cap, &r, NULL, 0);
        assert_exit(&r, 0);
        run_free(&r);
        file = read_file(path, &n_file);
        off = 24;
        for (size_t i = 0; i < 4; i++) {
                const uint8_t *frame = (const uint8_t *)file + off + 16;
                uint32_t len, hlen;
                Plexus__Header *h;

                assert_true(off + 16 <= n_file);
                len = le32((const uint8_t *)file + off + 8);
                hlen = le32(frame);
                h = plexus__header__unpack(NULL, hlen, frame + 4);
                assert_non_null(h);
                if (i == 1 || i == 2) {
                        /* AckTransfer and its answer: ordinary frames. */
                        assert_int_equal(h->large_size, 0);
                } else {
                        assert_int_equal(len, 4 + hlen);
                        assert_int_equal(h->large_size, LARGE_SIZE);
                }
                if (i == 0) {
                        assert_int_equal(h->kind, PLEXUS__KIND__KIND_CALL);
                        assert_int_equal(h->large_addr, (uint64_t)(uintptr_t)big);
                        assert_true(h->transfer_id > 0);
                } else if (i == 3) {
                        assert_int_equal(h->kind, PLEXUS__KIND__KIND_REPLY);
                        assert_int_equal(h->large_addr, 0);
                }
                plexus__header__free_unpacked(h, NULL);
                off += 16 + len;
        }
        assert_int_equal(off, n_file);

        /* Had a monitor answered a copy or acknowledged a transfer, the broker would have said so. */
        ctl(&r, "--json", "stats");
        assert_exit(&r, 0);
        JSON(&r, "assert d['errors_sent'] == 0 and d['drops']['protocol_errors'] == 0, d\n"
                 "assert d['transfers'] == {'live': 0, 'expired': 0, 'refused': 0, 'copied': 1}, d['transfers']\n");
        run_free(&r);

        if (!have_tshark()) {
                print_message("tshark is not installed: skipping the dissector's view of large frames\n");
                return;
        }
        {
                char lua[600], expected[200];
                Proc t = PROC_NULL;

                snprintf(lua, sizeof(lua), "lua_script:%s", plexusctl_path());
                strcpy(strrchr(lua, '/') + 1, "plexus.lua");
                proc_start(&t, (char *[]) { (char *)"tshark", (char *)"-X", lua, (char *)"-r", path, NULL }, -1);
                proc_finish(&t, &r, NULL, 0);
                if (r.status != 0)
                        fail_msg("tshark with plexus.lua failed (%d):\n%s", r.status, r.err);
                snprintf(expected, sizeof(expected), "large payload %u bytes, process_vm, transfer ", LARGE_SIZE);
                assert_contains(r.out, expected);
                snprintf(expected, sizeof(expected), "large payload %u bytes, memfd)", LARGE_SIZE);
                assert_contains(r.out, expected);
                run_free(&r);
        }
}

static void test_no_bus(void **state) {
        Harness *h = *state;
        static const char *const verbs[][4] = {
                { "status" }, { "list" }, { "clients" }, { "client", ":1" }, { "stats" },
                { "call", ":1", "Echo" }, { "publish", "a/b" }, { "subscribe", "a/b" }, { "wait", "a.b" },
                { "monitor" }, { "capture", "/dev/null" },
        };
        char address[400];
        Run r;

        snprintf(address, sizeof(address), "%s/nobody-here", h->dir);
        setenv("PLEXUS_BUS_ADDRESS", address, 1);
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                ctl(&r, verbs[i][0], verbs[i][1], verbs[i][2]);
                assert_exit(&r, 4);
                assert_contains(r.err, "cannot connect to the bus at");
                assert_contains(r.err, address);
                assert_string_equal(r.out, "");
                run_free(&r);

                ctl(&r, "--json", verbs[i][0], verbs[i][1], verbs[i][2]);
                assert_exit(&r, 4);
                JSON(&r,
                     "assert d['error']['name'] is None, d\n"
                     "assert d['error']['message'].startswith('cannot connect to the bus at %s'), d\n",
                     address);
                run_free(&r);
        }

        /* --address wins over the environment. */
        ctl(&r, "--address", h->address, "status");
        assert_exit(&r, 0);
        run_free(&r);
        ctl(&r, "status", "-a", address);
        setenv("PLEXUS_BUS_ADDRESS", h->address, 1);
        assert_exit(&r, 4);
        run_free(&r);
}

static void test_usage(void **state) {
        static const char *const verbs[] = {
                "status", "list", "clients", "client", "stats", "call", "publish", "subscribe", "wait",
                "monitor", "capture",
        };
        Run r;

        ctl(&r, "--help");
        assert_exit(&r, 0);
        assert_contains(r.out, "Usage: plexusctl");
        assert_contains(r.out, "Exit status:");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                assert_contains(r.out, verbs[i]);
        run_free(&r);

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                char expected[64];

                ctl(&r, verbs[i], "--help");
                assert_exit(&r, 0);
                snprintf(expected, sizeof(expected), "Usage: plexusctl %s ", verbs[i]);
                assert_contains(r.out, expected);
                assert_contains(r.out, "64  usage error");
                run_free(&r);
        }

        ctl(&r, "--version");
        assert_exit(&r, 0);
        assert_string_equal(r.out, "plexusctl " PLEXUS_VERSION "\n");
        run_free(&r);

        /* Each of these is a usage error, found before connecting. */
        {
                static const char *const bad[][5] = {
                        { NULL },
                        { "frobnicate" },
                        { "status", "extra" },
                        { "client" },
                        { "call", ":1" },
                        { "call", ":1", "A", "b", "c" },
                        { "list", "--raw" },
                        { "status", "--count", "3" },
                        { "subscribe", "a", "--count", "0" },
                        { "call", "--timeout", "soon", ":1", "A" },
                        { "call", "--timeout", "-1", ":1", "A" },
                        { "call", "--raw", "--json", ":1", "A" },
                        { "status", "--fd", "/dev/null" },
                        { "subscribe", "a/b", "--fd", "/dev/null" },
                        { "call", "--fd", "", ":1", "A" },
                        { "monitor", "extra" },
                        { "monitor", "--topic", "a/#/b" },
                        { "monitor", "--name", "no name" },
                        { "monitor", "--member", "" },
                        { "call", ":1", "A", "--member", "A" },
                        { "capture" },
                        { "capture", "a", "b" },
                        { "capture", "-", "--json" },
                        { "--bogus", "status" },
                        { "status", "--address", "" },
                };

                for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                        ctl(&r, bad[i][0], bad[i][1], bad[i][2], bad[i][3], bad[i][4]);
                        assert_exit(&r, 64);
                        assert_string_equal(r.out, "");
                        assert_true(r.n_err > 0);
                        run_free(&r);
                }
        }
}

/* --- tables on a terminal ------------------------------------------------- */

/* 59 bytes: the broker keeps 63 of a description. */
#define LONG_DESCRIPTION "a-description-longer-than-any-terminal-column-would-show-it"

static void test_terminal(void **state) {
        ServiceFixture *f = *state;
        _cleanup_bus_ plx_bus *wordy = NULL;
        struct winsize ws = { .ws_row = 24, .ws_col = 100 };
        Proc p = PROC_NULL;
        char *argv[] = { (char *)plexusctl_path(), (char *)"clients", NULL };
        char *line, *save = NULL;
        int master, slave;
        Run r;

        assert_int_equal(plx_bus_new(&wordy, f->harness->address, LONG_DESCRIPTION), 0);

        /* Not a terminal: nothing cut. */
        ctl(&r, "clients");
        assert_exit(&r, 0);
        assert_contains(r.out, LONG_DESCRIPTION);
        run_free(&r);

        master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        assert_true(master >= 0);
        assert_int_equal(grantpt(master), 0);
        assert_int_equal(unlockpt(master), 0);
        slave = open(ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
        assert_true(slave >= 0);
        assert_int_equal(ioctl(slave, TIOCSWINSZ, &ws), 0);

        unsetenv("COLUMNS");
        proc_start(&p, argv, slave);
        close(slave);
        p.out_fd = master;
        proc_finish(&p, &r, NULL, 0);
        assert_exit(&r, 0);

        /* Every line fits 100 columns; the description is cut, with an ellipsis. */
        assert_null(strstr(r.out, LONG_DESCRIPTION));
        assert_true(strstr(r.out, "...") || strstr(r.out, "\xe2\x80\xa6"));
        for (line = strtok_r(r.out, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
                size_t columns = 0;

                /* Columns, not bytes: "…" is three bytes in a UTF-8 locale. */
                for (const char *c = line; *c; c++)
                        columns += ((unsigned char)*c & 0xc0) != 0x80;
                if (columns > 100)
                        fail_msg("line wider than the terminal: \"%s\"", line);
        }
        run_free(&r);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                SERVICE_TEST(test_status),
                SERVICE_TEST(test_list),
                SERVICE_TEST(test_list_many),
                SERVICE_TEST(test_clients),
                SERVICE_TEST(test_clients_paged),
                SERVICE_TEST(test_client),
                SERVICE_TEST(test_stats),
                SERVICE_TEST(test_call),
                SERVICE_TEST(test_publish_subscribe),
                SERVICE_TEST(test_publish_queue_full),
                SERVICE_TEST(test_wait),
                SERVICE_TEST(test_monitor),
                SERVICE_TEST(test_monitor_stopped),
                SERVICE_TEST(test_capture),
                SERVICE_TEST(test_fd),
                SERVICE_TEST(test_large),
                SERVICE_TEST(test_large_monitor),
                cmocka_unit_test_setup_teardown(test_no_bus, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_usage, harness_setup, harness_teardown),
                SERVICE_TEST(test_terminal),
        };

        /* The test's own output must not depend on a terminal's width either. */
        unsetenv("COLUMNS");
        return cmocka_run_group_tests(tests, NULL, NULL);
}
