/*
 * Verbs that show the bus's state: status, list, clients, client, stats.
 *
 * They call the bus's own methods (GetBusInfo, GetStats, ListNames,
 * ListClients, GetClient; docs/protocol.md §6) and decode the replies with
 * the generated protobuf-c code. ListClients and ListNames come in pages: the verbs ask
 * for the next page until the broker says there is none, so a bus with
 * thousands of clients is listed whole.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "address.h"
#include "bus-name.h"
#include "ctl.h"
#include "json.h"
#include "plexus.pb-c.h"
#include "table.h"

#define KEY_WIDTH 16

static void pb_freep(void *p) {
        ProtobufCMessage **m = p;

        if (*m)
                protobuf_c_message_free_unpacked(*m, NULL);
}

static uint64_t realtime_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* "Key:" padded to one width, then the value. */
static void field(const char *key, const char *fmt, ...) _printf_(2, 3);
static void field(const char *key, const char *fmt, ...) {
        va_list ap;

        printf("%s:%*s", key, (int)(KEY_WIDTH - MIN(strlen(key) + 1, KEY_WIDTH)) + 1, "");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
}

/* A list under a key, one item per line, "-" if empty. */
static void field_list(const char *key, char *const *v, size_t n) {
        if (n == 0) {
                field(key, "-");
                return;
        }
        field(key, "%s", v[0]);
        for (size_t i = 1; i < n; i++)
                printf("%*s%s\n", KEY_WIDTH + 1, "", v[i]);
}

/* Call @member with @request and decode the reply as @desc into *@ret. */
static int broker_get(Ctl *c, const char *member, const ProtobufCMessage *request,
                      const ProtobufCMessageDescriptor *desc, void *ret) {
        _cleanup_(plx_msg_unrefp) plx_msg *reply = NULL;
        ProtobufCMessage *m;
        const void *p;
        size_t n;
        int r;

        r = ctl_broker_call(c, member, request, &reply);
        if (r != 0)
                return r;
        p = plx_msg_get_payload(reply, &n);
        m = protobuf_c_message_unpack(desc, NULL, n, p);
        if (!m)
                return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "%s: malformed reply from the broker", member);
        *(ProtobufCMessage **)ret = m;
        return 0;
}

/* Every client on the bus: the pages of ListClients and an index over them. */
typedef struct ClientSet {
        Plexus__ClientList **pages;
        size_t n_pages;
        Plexus__ClientInfo **clients;   /* point into the pages */
        size_t n_clients;
} ClientSet;

static void client_set_deinit(ClientSet *s) {
        for (size_t i = 0; i < s->n_pages; i++)
                plexus__client_list__free_unpacked(s->pages[i], NULL);
        free(s->pages);
        free(s->clients);
        *s = (ClientSet) {};
}

/* Adopts @page, also on failure. */
static int client_set_add(ClientSet *s, Plexus__ClientList *page) {
        Plexus__ClientList **pages;
        Plexus__ClientInfo **clients;

        pages = reallocarray(s->pages, s->n_pages + 1, sizeof(*pages));
        if (!pages) {
                plexus__client_list__free_unpacked(page, NULL);
                return -ENOMEM;
        }
        s->pages = pages;
        s->pages[s->n_pages++] = page;

        clients = reallocarray(s->clients, (s->n_clients + page->n_clients) ?: 1, sizeof(*clients));
        if (!clients)
                return -ENOMEM;
        s->clients = clients;
        for (size_t i = 0; i < page->n_clients; i++)
                s->clients[s->n_clients++] = page->clients[i];
        return 0;
}

static int fetch_clients(Ctl *c, ClientSet *s) {
        uint64_t after = 0;

        for (;;) {
                Plexus__ListClientsRequest req = PLEXUS__LIST_CLIENTS_REQUEST__INIT;
                Plexus__ClientList *page = NULL;
                uint64_t next;
                int r;

                req.after_id = after;
                r = broker_get(c, "ListClients", &req.base, &plexus__client_list__descriptor, &page);
                if (r != 0)
                        return r;
                next = page->next_after_id;
                if (client_set_add(s, page) < 0)
                        return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");
                if (next == 0)
                        return 0;
                /* A broker whose cursor does not advance would keep us here forever. */
                if (next <= after)
                        return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "ListClients: the broker's pages do not advance");
                after = next;
        }
}

void name_set_deinit(NameSet *s) {
        for (size_t i = 0; i < s->n_pages; i++)
                plexus__name_list__free_unpacked(s->pages[i], NULL);
        free(s->pages);
        free(s->names);
        *s = (NameSet) {};
}

/* Adopts @page, also on failure. */
static int name_set_add(NameSet *s, Plexus__NameList *page) {
        Plexus__NameList **pages;
        Plexus__NameEntry **names;

        pages = reallocarray(s->pages, s->n_pages + 1, sizeof(*pages));
        if (!pages) {
                plexus__name_list__free_unpacked(page, NULL);
                return -ENOMEM;
        }
        s->pages = pages;
        s->pages[s->n_pages++] = page;

        names = reallocarray(s->names, (s->n_names + page->n_names) ?: 1, sizeof(*names));
        if (!names)
                return -ENOMEM;
        s->names = names;
        for (size_t i = 0; i < page->n_names; i++)
                s->names[s->n_names++] = page->names[i];
        return 0;
}

/**
 * fetch_names() - every well-known name on the bus, in byte order
 *
 * Return: 0, or the exit code after reporting the failure.
 */
int fetch_names(Ctl *c, NameSet *s) {
        _cleanup_(freep) char *after = strdup("");

        if (!after)
                return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");
        for (;;) {
                Plexus__ListNamesRequest req = PLEXUS__LIST_NAMES_REQUEST__INIT;
                Plexus__NameList *page = NULL;
                char *next;
                int r;

                req.after = after;
                r = broker_get(c, "ListNames", &req.base, &plexus__name_list__descriptor, &page);
                if (r != 0)
                        return r;
                /* Names sort in byte order: a cursor that does not grow would keep us here forever. */
                if (page->next_after[0] && strcmp(page->next_after, after) <= 0) {
                        plexus__name_list__free_unpacked(page, NULL);
                        return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "ListNames: the broker's pages do not advance");
                }
                next = page->next_after[0] ? strdup(page->next_after) : NULL;
                if (name_set_add(s, page) < 0 || (!next && page->next_after[0]))
                        return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");
                if (!next)
                        return 0;
                free(after);
                after = next;
        }
}

static int compare_client_ids(const void *a, const void *b) {
        const Plexus__ClientInfo *const *x = a, *const *y = b;

        return strcmp((*x)->unique_id, (*y)->unique_id);
}

static const Plexus__ClientInfo *client_set_find(const ClientSet *s, const char *unique_id) {
        Plexus__ClientInfo key = { .unique_id = (char *)unique_id }, *k = &key, **found;

        if (s->n_clients == 0)
                return NULL;
        found = bsearch(&k, s->clients, s->n_clients, sizeof(*s->clients), compare_client_ids);
        return found ? *found : NULL;
}

/* The default address, or what --address said. */
static const char *bus_address(const Ctl *c, char *buf, size_t size) {
        if (c->address)
                return c->address;
        return address_default(buf, size) == 0 ? buf : NULL;
}

/**
 * inspect_status() - plexusctl status: the broker and this connection
 * @c:          the context
 * @argc:       arguments after the verb (none)
 * @argv:       them
 *
 * Return: the exit code.
 */
int inspect_status(Ctl *c, int argc, char **argv) {
        _cleanup_(pb_freep) Plexus__BusInfo *info = NULL;
        _cleanup_(pb_freep) Plexus__Stats *st = NULL;
        char buf[256], a[64], b[64];
        const char *address;
        int r;

        r = ctl_connect(c);
        if (r != 0)
                return r;
        r = broker_get(c, "GetBusInfo", NULL, &plexus__bus_info__descriptor, &info);
        if (r != 0)
                return r;
        r = broker_get(c, "GetStats", NULL, &plexus__stats__descriptor, &st);
        if (r != 0)
                return r;
        address = bus_address(c, buf, sizeof(buf));

        if (c->json) {
                Json j;

                json_init(&j, stdout);
                json_object_begin(&j, NULL);
                json_string(&j, "address", address);
                json_string(&j, "unique_id", plx_bus_get_unique_id(c->bus));
                json_string(&j, "version", info->version);
                json_uint(&j, "protocol_version", info->protocol_version);
                json_uint(&j, "uptime_usec", st->uptime_usec);
                json_uint(&j, "started_usec", st->started_usec);
                json_uint(&j, "clients", st->n_clients);
                json_uint(&j, "clients_peak", st->n_clients_peak);
                json_uint(&j, "names", st->n_names);
                json_uint(&j, "subscriptions", st->n_subscriptions);
                json_uint(&j, "pending_calls", st->n_pending_calls);
                json_uint(&j, "monitors", st->n_monitors);
                json_uint(&j, "frames_routed", info->n_frames_routed);
                json_object_end(&j);
                return json_end(&j) < 0 ? CTL_EXIT_FAILURE : CTL_EXIT_SUCCESS;
        }

        field("Address", "%s", address ?: "-");
        field("Broker", "plexusd %s, protocol %" PRIu32, info->version, info->protocol_version);
        field("Up", "%s (since %s)", ctl_format_duration(a, sizeof(a), st->uptime_usec),
              ctl_format_time(b, sizeof(b), st->started_usec));
        field("Clients", "%" PRIu64 " (peak %" PRIu64 ")", st->n_clients, st->n_clients_peak);
        field("Names", "%" PRIu64, st->n_names);
        field("Subscriptions", "%" PRIu64, st->n_subscriptions);
        field("Pending calls", "%" PRIu64, st->n_pending_calls);
        field("Monitors", "%" PRIu64, st->n_monitors);
        field("Frames routed", "%" PRIu64, info->n_frames_routed);
        field("Connected as", "%s", plx_bus_get_unique_id(c->bus));
        return fflush(stdout) == 0 ? CTL_EXIT_SUCCESS : CTL_EXIT_FAILURE;
}

static int compare_names(const void *a, const void *b) {
        const Plexus__NameEntry *const *x = a, *const *y = b;

        return strcmp((*x)->name, (*y)->name);
}

/* "a, b, c" into a malloc()ed string, "-" for none. */
static char *join(char *const *v, size_t n, const char *separator) {
        size_t len = 2;
        char *s, *p;

        for (size_t i = 0; i < n; i++)
                len += strlen(v[i]) + strlen(separator);
        s = malloc(len);
        if (!s)
                return NULL;
        if (n == 0) {
                strcpy(s, "-");
                return s;
        }
        p = s;
        for (size_t i = 0; i < n; i++)
                p = stpcpy(stpcpy(p, i ? separator : ""), v[i]);
        return s;
}

/**
 * inspect_list() - plexusctl list: well-known names, owners, queues
 * @c:          the context
 * @argc:       arguments after the verb (none)
 * @argv:       them
 *
 * Owners are shown with their pid and process name, from ListClients; an
 * owner that left in between shows "-".
 *
 * Return: the exit code.
 */
int inspect_list(Ctl *c, int argc, char **argv) {
        static const char *const headers[] = { "NAME", "OWNER", "PID", "COMM", "QUEUED" };
        _cleanup_(client_set_deinit) ClientSet clients = {};
        _cleanup_(name_set_deinit) NameSet names = {};
        NameSet *list = &names;
        _cleanup_(table_freep) Table *t = NULL;
        int r;

        r = ctl_connect(c);
        if (r != 0)
                return r;
        r = fetch_names(c, &names);
        if (r != 0)
                return r;
        r = fetch_clients(c, &clients);
        if (r != 0)
                return r;
        /* qsort() and bsearch() want a base even for 0 elements; an empty reply has none. */
        if (clients.n_clients > 0)
                qsort(clients.clients, clients.n_clients, sizeof(*clients.clients), compare_client_ids);
        if (list->n_names > 0)
                qsort(list->names, list->n_names, sizeof(*list->names), compare_names);

        if (c->json) {
                Json j;

                json_init(&j, stdout);
                json_object_begin(&j, NULL);
                json_array_begin(&j, "names");
                for (size_t i = 0; i < list->n_names; i++) {
                        const Plexus__NameEntry *e = list->names[i];
                        const Plexus__ClientInfo *owner = client_set_find(&clients, e->owner);

                        json_object_begin(&j, NULL);
                        json_string(&j, "name", e->name);
                        json_string(&j, "owner", e->owner);
                        if (owner) {
                                json_uint(&j, "owner_pid", owner->pid);
                                json_string(&j, "owner_comm", owner->comm);
                        } else {
                                json_null(&j, "owner_pid");
                                json_null(&j, "owner_comm");
                        }
                        json_strv(&j, "queued", e->queued, e->n_queued);
                        json_object_end(&j);
                }
                json_array_end(&j);
                json_object_end(&j);
                return json_end(&j) < 0 ? CTL_EXIT_FAILURE : CTL_EXIT_SUCCESS;
        }

        if (table_new(&t, headers, ELEMENTSOF(headers)) < 0)
                return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");
        table_set_flexible(t, 0, 16);
        table_set_right(t, 2);
        table_set_flexible(t, 3, 6);
        table_set_flexible(t, 4, 8);
        for (size_t i = 0; i < list->n_names; i++) {
                const Plexus__NameEntry *e = list->names[i];
                const Plexus__ClientInfo *owner = client_set_find(&clients, e->owner);
                _cleanup_(freep) char *queued = join(e->queued, e->n_queued, ",");
                char pid[16] = "-";

                if (!queued)
                        return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");
                if (owner)
                        snprintf(pid, sizeof(pid), "%" PRIu32, owner->pid);
                if (table_add_row(t, (const char *[]) { e->name, e->owner, pid, owner ? owner->comm : "-",
                                                        queued }) < 0)
                        return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");
        }
        if (table_print(t, stdout, c->columns, c->legend) < 0 || fflush(stdout) != 0)
                return CTL_EXIT_FAILURE;
        return CTL_EXIT_SUCCESS;
}

static void json_client(Json *j, const char *key, const Plexus__ClientInfo *ci) {
        json_object_begin(j, key);
        json_string(j, "unique_id", ci->unique_id);
        json_string(j, "state", ci->state);
        json_uint(j, "pid", ci->pid);
        json_uint(j, "uid", ci->uid);
        json_uint(j, "gid", ci->gid);
        json_string(j, "comm", ci->comm);
        json_string(j, "cmdline", ci->cmdline);
        json_string(j, "description", ci->description);
        json_uint(j, "connected_usec", ci->connected_usec);
        json_bool(j, "monitor", ci->monitor);
        json_strv(j, "names", ci->names, ci->n_names);
        json_strv(j, "queued_names", ci->queued_names, ci->n_queued_names);
        json_strv(j, "subscriptions", ci->subscriptions, ci->n_subscriptions);
        json_uint(j, "name_count", ci->name_count);
        json_uint(j, "subscription_count", ci->subscription_count);
        json_bool(j, "truncated", ci->truncated);
        json_uint(j, "pending_calls", ci->pending_calls);
        json_uint(j, "queue_frames", ci->queue_frames);
        json_uint(j, "queue_bytes", ci->queue_bytes);
        json_uint(j, "frames_in", ci->frames_in);
        json_uint(j, "frames_out", ci->frames_out);
        json_uint(j, "bytes_in", ci->bytes_in);
        json_uint(j, "bytes_out", ci->bytes_out);
        json_object_end(j);
}

/**
 * inspect_clients() - plexusctl clients: every connection, one per line
 * @c:          the context
 * @argc:       arguments after the verb (none)
 * @argv:       them
 *
 * Return: the exit code.
 */
int inspect_clients(Ctl *c, int argc, char **argv) {
        static const char *const headers[] = {
                "ID", "PID", "USER", "COMM", "NAMES", "SUBS", "QUEUE", "IN", "OUT", "SINCE", "DESCRIPTION",
        };
        _cleanup_(client_set_deinit) ClientSet clients = {};
        _cleanup_(table_freep) Table *t = NULL;
        uint64_t now = realtime_usec();
        uid_t last_uid = (uid_t)-1;
        char user[64] = "";
        int r;

        r = ctl_connect(c);
        if (r != 0)
                return r;
        r = fetch_clients(c, &clients);
        if (r != 0)
                return r;

        if (c->json) {
                Json j;

                json_init(&j, stdout);
                json_object_begin(&j, NULL);
                json_array_begin(&j, "clients");
                for (size_t i = 0; i < clients.n_clients; i++)
                        json_client(&j, NULL, clients.clients[i]);
                json_array_end(&j);
                json_object_end(&j);
                return json_end(&j) < 0 ? CTL_EXIT_FAILURE : CTL_EXIT_SUCCESS;
        }

        if (table_new(&t, headers, ELEMENTSOF(headers)) < 0)
                return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");
        table_set_right(t, 1);
        table_set_flexible(t, 2, 6);
        table_set_flexible(t, 3, 6);
        table_set_flexible(t, 4, 8);
        for (size_t i = 5; i <= 8; i++)
                table_set_right(t, i);
        table_set_flexible(t, 10, 8);

        for (size_t i = 0; i < clients.n_clients; i++) {
                const Plexus__ClientInfo *ci = clients.clients[i];
                _cleanup_(freep) char *names = join(ci->names, ci->n_names, ",");
                char pid[16], subs[16], queue[24], in[24], out[24], since[32];

                if (!names)
                        return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");
                /* Clients of one user tend to come together: look each uid up once in a row. */
                if (ci->uid != last_uid) {
                        ctl_user_name(ci->uid, user, sizeof(user));
                        last_uid = ci->uid;
                }
                snprintf(pid, sizeof(pid), "%" PRIu32, ci->pid);
                snprintf(subs, sizeof(subs), "%" PRIu32, ci->subscription_count);
                snprintf(queue, sizeof(queue), "%" PRIu64, ci->queue_frames);
                snprintf(in, sizeof(in), "%" PRIu64, ci->frames_in);
                snprintf(out, sizeof(out), "%" PRIu64, ci->frames_out);
                ctl_format_duration(since, sizeof(since), now > ci->connected_usec ? now - ci->connected_usec : 0);
                if (table_add_row(t, (const char *[]) { ci->unique_id, pid, user, ci->comm, names, subs, queue,
                                                        in, out, since, ci->description }) < 0)
                        return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");
        }
        if (table_print(t, stdout, c->columns, c->legend) < 0 || fflush(stdout) != 0)
                return CTL_EXIT_FAILURE;
        return CTL_EXIT_SUCCESS;
}

/**
 * inspect_client() - plexusctl client ID: one client in detail
 * @c:          the context
 * @argc:       1
 * @argv:       a unique id or a well-known name
 *
 * Return: the exit code; CTL_EXIT_NO_NAME if no client has that id or name.
 */
int inspect_client(Ctl *c, int argc, char **argv) {
        Plexus__NameRequest req = PLEXUS__NAME_REQUEST__INIT;
        _cleanup_(pb_freep) Plexus__ClientInfo *ci = NULL;
        char user[64], a[64], b[64], s1[32], s2[32];
        uint64_t now;
        int r;

        if (!bus_name_is_unique_id(argv[0]) && !bus_name_is_well_known(argv[0]))
                return ctl_fail(c, CTL_EXIT_USAGE, NULL, "\"%s\" is neither a unique id (:N) nor a well-known name",
                                argv[0]);
        r = ctl_connect(c);
        if (r != 0)
                return r;
        req.name = argv[0];
        r = broker_get(c, "GetClient", &req.base, &plexus__client_info__descriptor, &ci);
        if (r != 0)
                return r;

        if (c->json) {
                Json j;

                json_init(&j, stdout);
                json_client(&j, NULL, ci);
                return json_end(&j) < 0 ? CTL_EXIT_FAILURE : CTL_EXIT_SUCCESS;
        }

        now = realtime_usec();
        field("Client", "%s (%s)", ci->unique_id, ci->state);
        field("Description", "%s", ci->description);
        field("Process", "%" PRIu32 " (%s)", ci->pid, ci->comm);
        field("Command line", "%s", *ci->cmdline ? ci->cmdline : "-");
        field("User", "%s (uid %" PRIu32 ", gid %" PRIu32 ")", ctl_user_name(ci->uid, user, sizeof(user)),
              ci->uid, ci->gid);
        field("Connected", "%s (%s ago)", ctl_format_time(a, sizeof(a), ci->connected_usec),
              ctl_format_duration(b, sizeof(b), now > ci->connected_usec ? now - ci->connected_usec : 0));
        field_list("Names", ci->names, ci->n_names);
        field_list("Queued for", ci->queued_names, ci->n_queued_names);
        field_list("Subscriptions", ci->subscriptions, ci->n_subscriptions);
        if (ci->truncated)
                field("Lists cut short", "%" PRIu32 " names and %" PRIu32 " subscriptions in all",
                      ci->name_count, ci->subscription_count);
        field("Monitor", "%s", ci->monitor ? "yes" : "no");
        field("Pending calls", "%" PRIu32, ci->pending_calls);
        field("Queue", "%" PRIu64 " frames, %s", ci->queue_frames, ctl_format_size(s1, sizeof(s1), ci->queue_bytes));
        field("From client", "%" PRIu64 " frames, %s", ci->frames_in, ctl_format_size(s1, sizeof(s1), ci->bytes_in));
        field("To client", "%" PRIu64 " frames, %s", ci->frames_out, ctl_format_size(s2, sizeof(s2), ci->bytes_out));
        return fflush(stdout) == 0 ? CTL_EXIT_SUCCESS : CTL_EXIT_FAILURE;
}

/**
 * inspect_stats() - plexusctl stats: the broker's counters
 * @c:          the context
 * @argc:       arguments after the verb (none)
 * @argv:       them
 *
 * Return: the exit code.
 */
int inspect_stats(Ctl *c, int argc, char **argv) {
        _cleanup_(pb_freep) Plexus__Stats *st = NULL;
        char a[64], b[64], s[32];
        int r;

        r = ctl_connect(c);
        if (r != 0)
                return r;
        r = broker_get(c, "GetStats", NULL, &plexus__stats__descriptor, &st);
        if (r != 0)
                return r;

        if (c->json) {
                Json j;

                json_init(&j, stdout);
                json_object_begin(&j, NULL);
                json_string(&j, "version", st->version);
                json_uint(&j, "uptime_usec", st->uptime_usec);
                json_uint(&j, "started_usec", st->started_usec);
                json_object_begin(&j, "clients");
                json_uint(&j, "now", st->n_clients);
                json_uint(&j, "peak", st->n_clients_peak);
                json_object_end(&j);
                json_uint(&j, "names", st->n_names);
                json_uint(&j, "subscriptions", st->n_subscriptions);
                json_uint(&j, "pending_calls", st->n_pending_calls);
                json_uint(&j, "monitors", st->n_monitors);
                json_object_begin(&j, "routed");
                json_uint(&j, "calls", st->n_calls);
                json_uint(&j, "replies", st->n_replies);
                json_uint(&j, "errors", st->n_errors);
                json_uint(&j, "signals", st->n_signals);
                json_uint(&j, "bytes", st->n_bytes_routed);
                json_object_end(&j);
                json_uint(&j, "errors_sent", st->n_errors_sent);
                json_uint(&j, "fds_passed", st->n_fds_passed);
                json_object_begin(&j, "drops");
                json_uint(&j, "queue_full", st->n_queue_full);
                json_uint(&j, "unexpected_replies", st->n_unexpected_replies);
                json_uint(&j, "protocol_errors", st->n_protocol_errors);
                json_uint(&j, "leases_expired", st->n_leases_expired);
                json_uint(&j, "timeouts", st->n_timeouts);
                json_uint(&j, "fds_rejected", st->n_fds_rejected);
                json_uint(&j, "denied", st->n_denied);
                json_object_end(&j);
                json_uint(&j, "reloads", st->n_reloads);
                json_object_begin(&j, "large");
                json_uint(&j, "memfd", st->n_large_memfd);
                json_uint(&j, "memfd_bytes", st->n_large_memfd_bytes);
                json_uint(&j, "process_vm", st->n_large_process_vm);
                json_uint(&j, "process_vm_bytes", st->n_large_process_vm_bytes);
                json_object_end(&j);
                json_object_begin(&j, "transfers");
                json_uint(&j, "live", st->n_transfers);
                json_uint(&j, "expired", st->n_transfers_expired);
                json_uint(&j, "refused", st->n_transfers_refused);
                json_uint(&j, "copied", st->n_transfers_copied);
                json_object_end(&j);
                json_object_end(&j);
                return json_end(&j) < 0 ? CTL_EXIT_FAILURE : CTL_EXIT_SUCCESS;
        }

        field("Broker", "plexusd %s", st->version);
        field("Up", "%s (since %s)", ctl_format_duration(a, sizeof(a), st->uptime_usec),
              ctl_format_time(b, sizeof(b), st->started_usec));
        field("Clients", "%" PRIu64 " now, %" PRIu64 " at most", st->n_clients, st->n_clients_peak);
        field("Names", "%" PRIu64, st->n_names);
        field("Subscriptions", "%" PRIu64, st->n_subscriptions);
        field("Pending calls", "%" PRIu64, st->n_pending_calls);
        field("Monitors", "%" PRIu64, st->n_monitors);
        printf("\nRouted\n");
        field("  calls", "%" PRIu64, st->n_calls);
        field("  replies", "%" PRIu64, st->n_replies);
        field("  errors", "%" PRIu64, st->n_errors);
        field("  signals", "%" PRIu64, st->n_signals);
        field("  payload", "%s (in frames)", ctl_format_size(s, sizeof(s), st->n_bytes_routed));
        field("Errors sent", "%" PRIu64 " (by the broker)", st->n_errors_sent);
        field("Fds passed", "%" PRIu64, st->n_fds_passed);
        printf("\nDropped or refused\n");
        field("  queue full", "%" PRIu64, st->n_queue_full);
        field("  unexpected", "%" PRIu64 " (replies to no pending call)", st->n_unexpected_replies);
        field("  bad input", "%" PRIu64 " (clients disconnected)", st->n_protocol_errors);
        field("  leases", "%" PRIu64 " (expired)", st->n_leases_expired);
        field("  timeouts", "%" PRIu64 " (calls)", st->n_timeouts);
        field("  fds", "%" PRIu64 " (frames refused for them)", st->n_fds_rejected);
        field("  denied", "%" PRIu64 " (by the policy)", st->n_denied);
        /* Large payloads never pass through the broker: counted apart from "payload" above. */
        printf("\nLarge messages\n");
        field("  memfd", "%" PRIu64 " (%s)", st->n_large_memfd,
              ctl_format_size(s, sizeof(s), st->n_large_memfd_bytes));
        field("  process_vm", "%" PRIu64 " (%s)", st->n_large_process_vm,
              ctl_format_size(s, sizeof(s), st->n_large_process_vm_bytes));
        field("  transfers", "%" PRIu64 " live, %" PRIu64 " expired", st->n_transfers, st->n_transfers_expired);
        field("  receivers", "%" PRIu64 " copied, %" PRIu64 " refused", st->n_transfers_copied,
              st->n_transfers_refused);
        printf("\n");
        field("Reloads", "%" PRIu64, st->n_reloads);
        return fflush(stdout) == 0 ? CTL_EXIT_SUCCESS : CTL_EXIT_FAILURE;
}
