/*
 * Introspection methods (see introspect.h).
 *
 * Replies are made of borrowed strings (unique ids, names and patterns live
 * in the broker's own objects while a method runs) plus one heap block per
 * client, a ClientEntry, holding its sanitized comm and the pointer arrays
 * protobuf-c wants; all of it is freed before the method returns.
 *
 * Every reply has to fit one frame: router_send_reply() answers
 * LimitsExceeded instead of anything larger. ListClients therefore fills a
 * page up to INTROSPECT_PAGE_MAX bytes and hands back a cursor, the numeric
 * id of the last client listed. A cursor rather than an offset, because
 * clients come and go between pages: peers sit on the broker's list in the
 * order they connected, which is the order of their ids, so "everyone above
 * N" neither skips nor repeats anyone who stayed. A client whose lists alone
 * would not fit a frame (hundreds of long patterns) is sent with its lists
 * cut short and `truncated` set; its counts stay exact.
 *
 * /proc/PID/comm and /proc/PID/cmdline are read once per client, at its
 * HELLO (introspect_capture()), and served from the copy: reading them on
 * request made every ListClients cost a /proc read per listed client, which
 * any client could repeat in a loop, and a cmdline read takes the target's
 * mmap lock, which a process stuck in the kernel could hold. At HELLO the
 * process being read is the one asking to join, and it is read once.
 * On top, the introspection methods are rate-limited per client
 * (introspect_admit()).
 */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "build-config.h"
#include "access.h"
#include "introspect.h"
#include "utf8.h"
#include "peer.h"
#include "router.h"
#include "topic-trie.h"

/*
 * Bytes of ClientInfo entries in one ListClients reply: a frame less room
 * for next_after_id (a 1-byte tag and a varint of at most 10 bytes).
 */
#define INTROSPECT_PAGE_MAX (FRAME_SEND_MAX - 16u)

typedef struct ClientEntry {
        Plexus__ClientInfo info;
        char comm[sizeof(((Peer *)NULL)->comm)];
        char *strings[];                /* names, queued names, then patterns */
} ClientEntry;

static ClientEntry *client_entry_free(ClientEntry *e) {
        free(e);
        return NULL;
}

PLX_DEFINE_CLEANUP(ClientEntry *, client_entry_free);

/* Encoded size of one element of a repeated string field numbered below 16. */
static size_t string_cost(const char *s) {
        size_t n = strlen(s);

        return 1 + frame_varint_size(n) + n;
}

/* Opens /proc/PID/@name of @p's process; -1 if it cannot. */
static int proc_open(Peer *p, const char *name) {
        char path[64];

        if (p->cred.pid <= 0)
                return -1;
        snprintf(path, sizeof(path), "/proc/%d/%s", (int)p->cred.pid, name);
        return open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
}

/*
 * The command line from @fd, arguments joined by spaces, at most
 * INTROSPECT_CMDLINE_MAX bytes, into @buf (INTROSPECT_CMDLINE_MAX + 1
 * bytes); "" if unreadable.
 *
 * One read() normally does: the kernel fills the buffer across pages and
 * hands out less only at the end of the arguments, so a short read ends
 * the loop rather than a further read() that returns 0.
 */
static void read_cmdline(int fd, char *buf) {
        char raw[INTROSPECT_CMDLINE_MAX];
        size_t n = 0;

        buf[0] = 0;
        if (fd < 0)
                return;
        while (n < sizeof(raw)) {
                size_t want = sizeof(raw) - n;
                ssize_t l = read(fd, raw + n, want);

                if (l < 0 && errno == EINTR)
                        continue;
                if (l <= 0)
                        break;
                n += (size_t)l;
                if ((size_t)l < want)
                        break;
        }

        while (n > 0 && raw[n - 1] == 0)
                n--;
        for (size_t i = 0; i < n; i++)
                if (raw[i] == 0)
                        raw[i] = ' ';
        utf8_sanitize(buf, raw, n);
}

/* The process name from @fd into @p->comm, without its newline; "?" if unreadable. */
static void read_comm(Peer *p, int fd) {
        ssize_t n = fd >= 0 ? read(fd, p->comm, sizeof(p->comm) - 1) : -1;

        p->comm[MAX(n, (ssize_t)0)] = 0;
        p->comm[strcspn(p->comm, "\n")] = 0;
        if (!p->comm[0])
                snprintf(p->comm, sizeof(p->comm), "?");
}

/**
 * introspect_capture() - read what introspection shows of @p's process, once
 * @b:          the broker
 * @p:          a peer completing its HELLO
 *
 * Its name (kept for log lines too, unless one read it already) and its
 * command line, as of now. Out of memory, the command line shows as "".
 *
 * Both files are opened first and read after one check that the process
 * is still running: a /proc file opened while its process lives stays that
 * process's even if the pid is reused later, whereas a check made before
 * the open leaves a window in which the pid could name another process.
 * That is one pidfd poll() for both files, and a read each.
 */
void introspect_capture(Broker *b, Peer *p) {
        _cleanup_(closep) int comm_fd = -1, cmdline_fd = -1;
        char buf[INTROSPECT_CMDLINE_MAX + 1];

        if (p->cmdline)
                return;
        if (!p->comm[0])
                comm_fd = proc_open(p, "comm");
        cmdline_fd = proc_open(p, "cmdline");
        if ((comm_fd >= 0 || cmdline_fd >= 0) && !peer_process_alive(p)) {
                comm_fd = plx_close(comm_fd);
                cmdline_fd = plx_close(cmdline_fd);
        }
        if (!p->comm[0])
                read_comm(p, comm_fd);
        read_cmdline(cmdline_fd, buf);
        p->cmdline = strdup(buf);
        peer_release_pidfd(p);
}

/**
 * introspect_admit() - whether @from may make one more introspection call now
 * @b:          the broker
 * @from:       the caller
 * @h:          the CALL's header, answered with LimitsExceeded if not
 *
 * A token bucket kept as one timestamp (GCRA): each call moves @from's
 * theoretical arrival time one interval on; a call that would put it more
 * than the burst ahead of now is refused and moves nothing.
 *
 * Return: true if the call may go on.
 */
bool introspect_admit(Broker *b, Peer *from, Plexus__Header *h) {
        const uint64_t interval = 1000000u / INTROSPECT_RATE;
        uint64_t now = now_usec();
        uint64_t tat = from->introspect_tat > now ? from->introspect_tat : now;

        if (tat - now > (uint64_t)(INTROSPECT_BURST - 1) * interval) {
                router_send_error(b, from, h->serial, ERROR_LIMITS_EXCEEDED,
                                  "introspection rate limit: %u calls per second, bursts of %u",
                                  INTROSPECT_RATE, INTROSPECT_BURST);
                return false;
        }
        from->introspect_tat = tat + interval;
        return true;
}

static uint64_t realtime_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A time of the broker's monotonic clock, on the wall clock. */
static uint64_t monotonic_to_realtime(uint64_t usec) {
        uint64_t now = now_usec(), wall = realtime_usec();
        uint64_t ago = now > usec ? now - usec : 0;

        return wall > ago ? wall - ago : 0;
}

static const char *state_to_string(PeerState s) {
        switch (s) {
        case PEER_STATE_HELLO:
                return "hello";
        case PEER_STATE_RUNNING:
                return "running";
        case PEER_STATE_CLOSING:
                return "closing";
        case PEER_STATE_DEAD:
                break;
        }
        return "dead";
}

/*
 * Cut the lists of @info until its encoding fits @max bytes: patterns first,
 * then queued names, then owned names, from the end. Everything else of a
 * ClientInfo is bounded far below a frame, so this always succeeds.
 */
static size_t client_info_trim(Plexus__ClientInfo *info, size_t max) {
        struct {
                size_t *n;
                char **v;
        } lists[] = {
                { &info->n_subscriptions, info->subscriptions },
                { &info->n_queued_names, info->queued_names },
                { &info->n_names, info->names },
        };
        size_t size;

        info->truncated = true;
        size = protobuf_c_message_get_packed_size(&info->base);
        for (size_t i = 0; i < ELEMENTSOF(lists); i++) {
                while (size > max && *lists[i].n > 0) {
                        (*lists[i].n)--;
                        size -= string_cost(lists[i].v[*lists[i].n]);
                }
        }
        assert(size <= max);
        assert(size == protobuf_c_message_get_packed_size(&info->base));
        return size;
}

/*
 * Describe @p for @caller in a new ClientEntry whose encoding fits @max
 * bytes (SIZE_MAX: no bound). Strings are borrowed from @p and its names
 * and subscriptions: the entry must not outlive the method call.
 */
static int client_entry_new(ClientEntry **ret, size_t *ret_size, Broker *b, Peer *caller, Peer *p,
                            size_t max) {
        _cleanup_(client_entry_freep) ClientEntry *e = NULL;
        Plexus__ClientInfo *info;
        size_t n_strings = p->n_names + p->n_subscriptions, k = 0;
        const char *comm;
        Subscription *s;
        NameOwner *no;
        size_t size;

        e = calloc(1, sizeof(*e) + n_strings * sizeof(char *));
        if (!e)
                return -ENOMEM;
        info = &e->info;
        *info = (Plexus__ClientInfo) PLEXUS__CLIENT_INFO__INIT;

        info->unique_id = p->unique_id;
        info->pid = (uint32_t)p->cred.pid;
        info->uid = (uint32_t)p->cred.uid;
        info->gid = (uint32_t)p->cred.gid;
        /* As captured: no /proc access here (a client in the handshake may not have been read yet). */
        comm = p->comm[0] ? p->comm : "?";
        utf8_sanitize(e->comm, comm, strnlen(comm, sizeof(e->comm) - 1));
        info->comm = e->comm;
        /* Arguments may hold secrets: other users see them only where the policy does not apply. */
        if (p->cmdline && (access_privileged(b, caller) || caller->cred.uid == p->cred.uid))
                info->cmdline = p->cmdline;
        else
                info->cmdline = (char *)"";
        info->description = p->description;

        /* The counts bound the loops: the lists and their counters change together. */
        info->names = e->strings;
        list_for_each_entry(no, &p->names, owner_link)
                if (k < n_strings && name_owner_is_primary(no))
                        e->strings[k++] = (char *)name_get(no->name);
        info->n_names = k;
        info->queued_names = e->strings + k;
        list_for_each_entry(no, &p->names, owner_link)
                if (k < n_strings && !name_owner_is_primary(no))
                        e->strings[k++] = (char *)name_get(no->name);
        info->n_queued_names = k - info->n_names;
        info->subscriptions = e->strings + k;
        list_for_each_entry(s, &p->subscriptions, owner_link)
                if (k < n_strings)
                        e->strings[k++] = s->pattern;
        info->n_subscriptions = k - info->n_names - info->n_queued_names;
        info->name_count = (uint32_t)p->n_names;
        info->subscription_count = (uint32_t)p->n_subscriptions;

        /* Frames batched for it are sent (or queued) first, so that the counts say where they are. */
        peer_flush_batch(p);
        info->queue_frames = p->queue.n_entries;
        info->queue_bytes = p->queue.n_bytes;
        info->frames_in = p->n_frames_in;
        info->frames_out = p->n_frames_out;
        info->bytes_in = p->n_bytes_in;
        info->bytes_out = p->n_bytes_out;
        info->connected_usec = monotonic_to_realtime(p->connected_usec);
        info->state = (char *)state_to_string(p->state);
        info->monitor = p->monitor != NULL;
        info->pending_calls = (uint32_t)p->n_calls_out;

        size = protobuf_c_message_get_packed_size(&info->base);
        if (size > max)
                size = client_info_trim(info, max);

        *ret_size = size;
        *ret = TAKE_PTR(e);
        return 0;
}

typedef struct ClientPage {
        ClientEntry **entries;
        Plexus__ClientInfo **infos;
        size_t n_entries;
        size_t n_alloc;
} ClientPage;

static void client_page_deinit(ClientPage *pg) {
        for (size_t i = 0; i < pg->n_entries; i++)
                client_entry_free(pg->entries[i]);
        free(pg->entries);
        free(pg->infos);
        *pg = (ClientPage) {};
}

/* Add @e to @pg; adopts @e on success. */
static int client_page_add(ClientPage *pg, ClientEntry *e) {
        if (pg->n_entries == pg->n_alloc) {
                size_t n = pg->n_alloc ? 2 * pg->n_alloc : 64;
                ClientEntry **entries;
                Plexus__ClientInfo **infos;

                entries = reallocarray(pg->entries, n, sizeof(*entries));
                if (!entries)
                        return -ENOMEM;
                pg->entries = entries;
                infos = reallocarray(pg->infos, n, sizeof(*infos));
                if (!infos)
                        return -ENOMEM;
                pg->infos = infos;
                pg->n_alloc = n;
        }
        pg->entries[pg->n_entries] = e;
        pg->infos[pg->n_entries] = &e->info;
        pg->n_entries++;
        return 0;
}

/**
 * introspect_list_clients() - plexus.ListClients: one page of clients
 * @b:          the broker
 * @from:       the caller
 * @h:          the CALL's header
 * @payload:    a plexus.ListClientsRequest (empty: the first page), borrowed
 * @len:        its length
 *
 * Answers a plexus.ClientList with the clients whose id is above
 * after_id, in connection order, as many as fit a frame (and at most
 * limit, if given). The first client of a page is always included, its
 * lists cut short if it would not fit alone.
 */
void introspect_list_clients(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len) {
        Plexus__ClientList reply = PLEXUS__CLIENT_LIST__INIT;
        _cleanup_(client_page_deinit) ClientPage page = {};
        Plexus__ListClientsRequest *req;
        size_t used = 0;
        uint64_t last_id = 0;
        bool more = false;
        Peer *p;
        int r = 0;

        req = plexus__list_clients_request__unpack(&b->payload_arena.allocator, len, payload);
        if (!req) {
                router_send_error(b, from, h->serial, ERROR_INVALID_ARGS,
                                  "ListClients needs a plexus.ListClientsRequest");
                return;
        }

        list_for_each_entry(p, &b->peers, link) {
                _cleanup_(client_entry_freep) ClientEntry *e = NULL;
                size_t size, cost, max = SIZE_MAX;

                if (p->id <= req->after_id)
                        continue;
                if (req->limit && page.n_entries >= req->limit) {
                        more = true;
                        break;
                }
                if (page.n_entries == 0)
                        max = INTROSPECT_PAGE_MAX - 1 - frame_varint_size(INTROSPECT_PAGE_MAX);

                r = client_entry_new(&e, &size, b, from, p, max);
                if (r < 0)
                        break;
                cost = 1 + frame_varint_size(size) + size;
                if (used + cost > INTROSPECT_PAGE_MAX) {
                        /* It leads the next page, where it fits (if need be, cut short). */
                        more = true;
                        break;
                }
                r = client_page_add(&page, e);
                if (r < 0)
                        break;
                TAKE_PTR(e);
                used += cost;
                last_id = p->id;
        }

        if (r < 0) {
                router_send_error(b, from, h->serial, ERROR_LIMITS_EXCEEDED, "broker out of memory");
                return;
        }

        reply.n_clients = page.n_entries;
        reply.clients = page.infos;
        reply.next_after_id = more ? last_id : 0;
        if (!(h->flags & FRAME_FLAG_NO_REPLY))
                router_send_reply(b, from, h->serial, &reply.base);
}

/**
 * introspect_get_client() - plexus.GetClient: one client
 * @b:          the broker
 * @from:       the caller
 * @h:          the CALL's header
 * @payload:    a plexus.NameRequest naming the client by unique id or by a
 *              well-known name it owns; borrowed
 * @len:        its length
 *
 * Answers a plexus.ClientInfo, or plexus.Error.NameHasNoOwner if no
 * running client has that id or owns that name.
 */
void introspect_get_client(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len) {
        _cleanup_(client_entry_freep) ClientEntry *e = NULL;
        Plexus__NameRequest *req;
        Peer *p = NULL;
        size_t size;
        int r;

        req = plexus__name_request__unpack(&b->payload_arena.allocator, len, payload);
        if (req && bus_name_is_unique_id(req->name)) {
                p = peer_find(b, req->name);
        } else if (req && bus_name_is_well_known(req->name)) {
                Name *n = name_registry_find(&b->names, req->name);

                p = n ? name_primary(n)->owner : NULL;
        } else {
                router_send_error(b, from, h->serial, ERROR_INVALID_ARGS,
                                  "GetClient needs a plexus.NameRequest with a unique id or a well-known name");
                return;
        }
        if (!p) {
                router_send_error(b, from, h->serial, ERROR_NAME_HAS_NO_OWNER, "%s has no owner", req->name);
                return;
        }

        r = client_entry_new(&e, &size, b, from, p, FRAME_SEND_MAX);
        if (r < 0) {
                router_send_error(b, from, h->serial, ERROR_LIMITS_EXCEEDED, "broker out of memory");
                return;
        }
        if (!(h->flags & FRAME_FLAG_NO_REPLY))
                router_send_reply(b, from, h->serial, &e->info.base);
}

/**
 * introspect_get_stats() - plexus.GetStats: the broker's counters
 * @b:          the broker
 * @from:       the caller
 * @h:          the CALL's header
 * @payload:    ignored
 * @len:        ignored
 *
 * Answers a plexus.Stats: BrokerStats since start, plus current counts.
 */
void introspect_get_stats(Broker *b, Peer *from, Plexus__Header *h, const uint8_t *payload, size_t len) {
        Plexus__Stats st = PLEXUS__STATS__INIT;
        const BrokerStats *s = &b->stats;
        size_t n_monitors = 0;

        for (List *l = b->monitors.next; l != &b->monitors; l = l->next)
                n_monitors++;

        st.version = (char *)PLEXUS_VERSION;
        st.uptime_usec = now_usec() - b->start_usec;
        st.started_usec = monotonic_to_realtime(b->start_usec);
        st.n_clients = b->n_peers;
        st.n_clients_peak = s->n_peers_peak;
        st.n_names = b->names.n_names;
        st.n_subscriptions = b->topics.n_subscriptions;
        st.n_pending_calls = b->pending.n_entries;
        st.n_monitors = n_monitors;
        st.n_calls = s->n_routed[PLEXUS__KIND__KIND_CALL];
        st.n_replies = s->n_routed[PLEXUS__KIND__KIND_REPLY];
        st.n_errors = s->n_routed[PLEXUS__KIND__KIND_ERROR];
        st.n_signals = s->n_routed[PLEXUS__KIND__KIND_SIGNAL];
        st.n_bytes_routed = s->n_bytes_routed;
        st.n_errors_sent = s->n_errors_sent;
        st.n_fds_passed = s->n_fds_passed;
        st.n_queue_full = s->n_queue_full;
        st.n_unexpected_replies = s->n_unexpected_replies;
        st.n_protocol_errors = s->n_protocol_errors;
        st.n_leases_expired = s->n_leases_expired;
        st.n_timeouts = s->n_timeouts;
        st.n_fds_rejected = s->n_fds_rejected;
        st.n_denied = s->n_denied;
        st.n_reloads = s->n_reloads;
        st.n_large_memfd = s->n_large[0];
        st.n_large_memfd_bytes = s->n_large_bytes[0];
        st.n_large_process_vm = s->n_large[1];
        st.n_large_process_vm_bytes = s->n_large_bytes[1];
        st.n_transfers = b->n_transfers;
        st.n_transfers_expired = s->n_transfers_expired;
        st.n_transfers_refused = s->n_transfers_refused;
        st.n_transfers_copied = s->n_transfers_copied;
        st.n_user_quota = s->n_user_quota;
        st.n_refused_user_clients = s->n_refused_user_clients;
        st.n_refused_unauthenticated = s->n_refused_unauthenticated;
        st.n_refused_no_fds = s->n_refused_no_fds;
        st.n_queued_bytes = b->users.total[USER_SLOT_BYTES];
        st.n_queued_fds = b->users.total[USER_SLOT_FDS];
        st.n_users = b->users.n_users;
        if (!(h->flags & FRAME_FLAG_NO_REPLY))
                router_send_reply(b, from, h->serial, &st.base);
}
