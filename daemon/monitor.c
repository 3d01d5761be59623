/*
 * Monitors (see monitor.h). The broker keeps them on a list; with no
 * monitor connected, the only cost on the routing path is one list check.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "monitor.h"
#include "peer.h"
#include "router.h"
#include "topic.h"

#define MONITOR_FILTERS_MAX 64

struct Monitor {
        List link;              /* broker->monitors */
        Peer *peer;
        uint64_t n_missed;      /* copies dropped since the monitor was last told */
        char **topics;
        size_t n_topics;
        char **names;
        size_t n_names;
        char **members;
        size_t n_members;
};

static void strv_free(char **v, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

static int strv_copy(char ***ret, size_t *ret_n, char **src, size_t n) {
        char **v;

        if (!n)
                return 0;
        v = calloc(n, sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                v[i] = strdup(src[i]);
                if (!v[i]) {
                        strv_free(v, i);
                        return -ENOMEM;
                }
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

static Monitor *monitor_destroy(Monitor *m) {
        if (!m)
                return NULL;
        list_unlink(&m->link);
        strv_free(m->topics, m->n_topics);
        strv_free(m->names, m->n_names);
        strv_free(m->members, m->n_members);
        free(m);
        return NULL;
}

/**
 * monitor_new() - make @p a monitor with the filters of @req
 *
 * Return: 0, -EINVAL for bad filters (too many, invalid topic pattern),
 * -EALREADY if @p is a monitor already, -ENOMEM.
 */
int monitor_new(Broker *b, Peer *p, const Plexus__MonitorRequest *req) {
        Monitor *m;

        if (p->monitor)
                return -EALREADY;
        if (req->n_topics + req->n_names + req->n_members > MONITOR_FILTERS_MAX)
                return -EINVAL;
        for (size_t i = 0; i < req->n_topics; i++)
                if (!topic_pattern_is_valid(req->topics[i]))
                        return -EINVAL;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        list_init(&m->link);
        if (strv_copy(&m->topics, &m->n_topics, req->topics, req->n_topics) < 0 ||
            strv_copy(&m->names, &m->n_names, req->names, req->n_names) < 0 ||
            strv_copy(&m->members, &m->n_members, req->members, req->n_members) < 0) {
                monitor_destroy(m);
                return -ENOMEM;
        }

        m->peer = p;
        list_append(&b->monitors, &m->link);
        p->monitor = m;
        return 0;
}

/**
 * monitor_free() - @p stops monitoring (it is going away)
 */
void monitor_free(Broker *b, Peer *p) {
        p->monitor = monitor_destroy(p->monitor);
}

static bool in(char **v, size_t n, const char *s) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(v[i], s) == 0)
                        return true;
        return false;
}

static bool wants(const Monitor *m, const Plexus__Header *h) {
        if (!m->n_topics && !m->n_names && !m->n_members)
                return true;
        if (h->kind == PLEXUS__KIND__KIND_SIGNAL)
                for (size_t i = 0; i < m->n_topics; i++)
                        if (topic_match(m->topics[i], h->member))
                                return true;
        if (h->kind == PLEXUS__KIND__KIND_CALL && in(m->members, m->n_members, h->member))
                return true;
        return in(m->names, m->n_names, h->sender) || in(m->names, m->n_names, h->destination);
}

/**
 * monitor_copy_all() - hand a copy of a routed frame to every interested monitor (see monitor_copy())
 * @b:          the broker
 * @h:          the frame's header as routed (stamped)
 * @payload:    borrowed
 * @size:       its length
 */
void monitor_copy_all(Broker *b, const Plexus__Header *h, const void *payload, size_t size) {
        uint8_t header[FRAME_HEADER_MAX];
        OutFrame f = {
                .header = header,
                .payload = payload,
                .payload_len = size,
        };
        Monitor *m;

        f.header_len = frame_header_pack(h, header, sizeof(header));
        list_for_each_entry(m, &b->monitors, link) {
                Peer *p = m->peer;

                if (p->state != PEER_STATE_RUNNING || !wants(m, h))
                        continue;
                /* Never forced: a monitor that falls behind loses copies, the bus does not wait. */
                if (peer_send(p, &f, false) == PEER_E_QUEUE_FULL)
                        m->n_missed++;
        }
        out_frame_deinit(&f);
}

/**
 * monitor_drained() - @p's queue is empty: tell it what it missed, if anything
 */
void monitor_drained(Broker *b, Peer *p) {
        Plexus__MonitorMissed ev = PLEXUS__MONITOR_MISSED__INIT;
        Monitor *m = p->monitor;

        if (!m || !m->n_missed)
                return;
        ev.n_missed = m->n_missed;
        m->n_missed = 0;
        router_send_signal(b, p, TOPIC_MONITOR_MISSED, &ev.base);
}
