/*
 * Access control (see access.h).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "access.h"
#include "htable.h"
#include "peer.h"

/**
 * access_privileged() - whether @p is beyond the policy
 *
 * Root and the broker's own uid (the owner of a per-user bus) may do
 * anything.
 */
bool access_privileged(Broker *b, Peer *p) {
        return p->cred.uid == 0 || p->cred.uid == b->cred.uid;
}

static PolicySubject subject(Peer *p);

/**
 * access_may_connect() - whether @p may stay connected at all
 *
 * Only if some rule applies to it: without a policy only privileged
 * clients are served (a per-user bus is its owner's alone), and a user the
 * policy does not name is refused at HELLO rather than left to fail every
 * action.
 */
bool access_may_connect(Broker *b, Peer *p) {
        PolicySubject s;

        if (access_privileged(b, p))
                return true;
        s = subject(p);
        return policy_applies(b->policy, &s);
}

/* The peer's groups: primary first, then supplementary (SO_PEERGROUPS), read once. */
static void peer_load_groups(Peer *p) {
        gid_t buf[64];
        socklen_t len = sizeof(buf);
        size_t n = 0;

        if (p->gids)
                return;
        if (getsockopt(p->fd, SOL_SOCKET, SO_PEERGROUPS, buf, &len) == 0)
                n = MIN(len / sizeof(gid_t), ELEMENTSOF(buf));
        p->gids = malloc((n + 1) * sizeof(gid_t));
        if (!p->gids)
                return;         /* decided on the primary group alone */
        p->gids[0] = p->cred.gid;
        for (size_t i = 0; i < n; i++)
                p->gids[i + 1] = buf[i];
        p->n_gids = n + 1;
}

static PolicySubject subject(Peer *p) {
        peer_load_groups(p);
        return (PolicySubject) {
                .uid = p->cred.uid,
                .gids = p->gids ? p->gids : &p->cred.gid,
                .n_gids = p->gids ? p->n_gids : 1,
        };
}

static bool first_denial(Peer *p, PolicyAction action, const char *target) {
        /* Keyed: a client must not find a target whose denial hides another's from the log. */
        uint64_t h = siphash24(&p->broker->hash_key, target ? target : "", target ? strlen(target) : 0) ^
                     (uint64_t)action;

        for (size_t i = 0; i < p->n_denials_logged; i++)
                if (p->denials_logged[i] == h)
                        return false;
        if (p->n_denials_logged < ELEMENTSOF(p->denials_logged))
                p->denials_logged[p->n_denials_logged++] = h;
        return true;
}

/**
 * access_check() - whether @p may do @action on @target
 * @b:          the broker
 * @p:          the peer
 * @action:     what
 * @target:     on what (a name, "destination:member", a topic or pattern)
 * @aliases:    NULL-terminated other forms of @target, or NULL
 *
 * Return: true if allowed. A denial is counted and logged (once per peer
 * and target, and rate-limited beyond that).
 */
bool access_check(Broker *b, Peer *p, PolicyAction action, const char *target, const char *const *aliases) {
        PolicySubject s;

        if (access_privileged(b, p))
                return true;

        s = subject(p);
        if (policy_allows(b->policy, &s, action, target, aliases, NULL))
                return true;

        b->stats.n_denied++;
        if (first_denial(p, action, target) && log_limit_pass(&p->log_limit, &b->log, now_usec()))
                peer_log(p, LOG_NOTICE, "denied: %s%s%s (uid %u, gid %u)", policy_action_to_string(action),
                         target ? " " : "", target ?: "", (unsigned)p->cred.uid, (unsigned)p->cred.gid);
        return false;
}
