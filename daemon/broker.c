/*
 * Broker object and main loop.
 *
 * plx_broker_run() turns the loop until the broker is DONE: each round polls
 * epoll once, dispatches every ready source once (see loop.c for why a
 * callback may remove any source), frees the peers that died during the
 * round, and re-arms the timerfd for the earliest deadline. Freeing peers
 * only between rounds means routing code never sees a Peer vanish under it.
 *
 * Shutdown (SIGTERM, SIGINT, plx_broker_stop()): stop accepting, tell every
 * client on TOPIC_SHUTDOWN, stop reading from clients, and keep flushing
 * until every queue is empty or the flush deadline passes. A second signal
 * ends the flush at once.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "address.h"
#include "broker.h"
#include "config.h"
#include "listener.h"
#include "peer.h"
#include "pending.h"
#include "router.h"

/**
 * plx_broker_config_init() - fill @c with the defaults
 */
void plx_broker_config_init(plx_broker_config *c) {
        *c = (plx_broker_config) {
                .listen_fd = -1,
                .log_level = LOG_INFO,
                .io_uring = true,
                .max_clients = BROKER_DEFAULT_MAX_CLIENTS,
                .max_queue_frames = BROKER_DEFAULT_MAX_QUEUE_FRAMES,
                .max_queue_bytes = BROKER_DEFAULT_MAX_QUEUE_BYTES,
                .max_queue_fds = BROKER_DEFAULT_MAX_QUEUE_FDS,
                .max_subscriptions = BROKER_DEFAULT_MAX_SUBSCRIPTIONS,
                .max_pending_calls = BROKER_DEFAULT_MAX_PENDING_CALLS,
                .max_names = BROKER_DEFAULT_MAX_NAMES,
                .max_message_size = BROKER_DEFAULT_MAX_MESSAGE_SIZE,
                .max_transfers = BROKER_DEFAULT_MAX_TRANSFERS,
                .max_lent_bytes = BROKER_DEFAULT_MAX_LENT_BYTES,
                .transfer_lease_ms = BROKER_DEFAULT_TRANSFER_LEASE_MS,
                .default_timeout_ms = BROKER_DEFAULT_TIMEOUT_MS,
                .max_timeout_ms = BROKER_DEFAULT_MAX_TIMEOUT_MS,
                .hello_timeout_ms = BROKER_DEFAULT_HELLO_TIMEOUT_MS,
                .shutdown_timeout_ms = BROKER_DEFAULT_SHUTDOWN_TIMEOUT_MS,
                .max_user_clients = BROKER_DEFAULT_MAX_USER_CLIENTS,
                .max_unauthenticated = BROKER_DEFAULT_MAX_UNAUTHENTICATED,
                .max_user_unauthenticated = BROKER_DEFAULT_MAX_USER_UNAUTHENTICATED,
                .max_user_queue_bytes = BROKER_DEFAULT_MAX_USER_QUEUE_BYTES,
                .max_total_queue_bytes = BROKER_DEFAULT_MAX_TOTAL_QUEUE_BYTES,
                .max_user_queue_fds = BROKER_DEFAULT_MAX_USER_QUEUE_FDS,
                .max_total_queue_fds = BROKER_DEFAULT_MAX_TOTAL_QUEUE_FDS,
        };
}

/*
 * Queued fds are descriptors in our own table. Without a configured cap,
 * they may take half of it: the other half stays for connections (one fd
 * each, two on kernels without SO_PEERPIDFD), fds arriving with frames
 * being routed, and accept(), so that clients that never read cannot make
 * the broker refuse fds from others or new connections.
 */
static uint64_t total_queue_fds(const plx_broker_config *c) {
        struct rlimit rl;

        if (c->max_total_queue_fds)
                return c->max_total_queue_fds;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
                return 1u << 20;
        return rl.rlim_cur / 2;
}

/* Hand the per-uid and broker-wide limits of b->config to the user registry. */
static void apply_user_limits(Broker *b) {
        const plx_broker_config *c = &b->config;

        /* The broker-wide connection limit is the listener's max_clients check. */
        user_registry_set_limit(&b->users, USER_SLOT_CONNECTIONS, c->max_user_clients, UINT64_MAX);
        user_registry_set_limit(&b->users, USER_SLOT_UNAUTH, c->max_user_unauthenticated,
                                c->max_unauthenticated);
        user_registry_set_limit(&b->users, USER_SLOT_BYTES, c->max_user_queue_bytes,
                                c->max_total_queue_bytes);
        user_registry_set_limit(&b->users, USER_SLOT_FDS, c->max_user_queue_fds, total_queue_fds(c));
}

static void shutdown_deadline(Timer *t, uint64_t now) {
        Broker *b = container_of(t, Broker, shutdown_timer);
        size_t n = 0;
        Peer *p;

        list_for_each_entry(p, &b->peers, link)
                if (!queue_is_empty(&p->queue))
                        n++;
        broker_log(b, LOG_NOTICE, "flush deadline reached with %zu clients not drained", n);
        b->state = BROKER_STATE_DONE;
}

static int signals_block(Broker *b) {
        sigset_t mask;
        int r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);

        r = pthread_sigmask(SIG_BLOCK, &mask, &b->saved_sigmask);
        if (r > 0)
                return -r;
        b->signals_blocked = true;

        b->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (b->signal_fd < 0)
                return -errno;
        return loop_source_add(&b->loop, &b->signal_source, LOOP_KIND_SIGNAL, b->signal_fd, EPOLLIN);
}

static void signals_restore(Broker *b) {
        loop_source_remove(&b->signal_source);
        b->signal_fd = plx_close(b->signal_fd);
        if (b->signals_blocked) {
                pthread_sigmask(SIG_SETMASK, &b->saved_sigmask, NULL);
                b->signals_blocked = false;
        }
}

/**
 * broker_notify() - tell the service manager something
 * @b:          the broker
 * @fmt:        printf format of the state, e.g. "READY=1"
 *
 * A no-op unless the embedder gave a notify function.
 */
void broker_notify(Broker *b, const char *fmt, ...) {
        char state[512];
        va_list ap;

        if (!b->config.notify_fn)
                return;
        va_start(ap, fmt);
        vsnprintf(state, sizeof(state), fmt, ap);
        va_end(ap);
        b->config.notify_fn(b->config.notify_userdata, state);
}

static void watchdog_ping(Timer *t, uint64_t now) {
        Broker *b = container_of(t, Broker, watchdog_timer);

        /* Fired from the loop's own timer: a hung loop sends nothing, as it should. */
        broker_notify(b, "WATCHDOG=1");
        if (timer_arm(&b->timers, &b->watchdog_timer, now + b->config.watchdog_usec / 2) < 0)
                broker_log(b, LOG_WARNING, "cannot re-arm the watchdog timer, pings stop");
}

static uint64_t frames_routed(Broker *b) {
        uint64_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(b->stats.n_routed); i++)
                n += b->stats.n_routed[i];
        return n;
}

#define STATUS_INTERVAL_USEC (1000u * 1000u)

/* STATUS= with live counts, sent only when they changed. */
static void status_refresh(Broker *b) {
        char status[sizeof(b->status)];

        /* A failed reload stays in view until one succeeds: the old configuration is still in force. */
        snprintf(status, sizeof(status), "%s%s%s%zu clients, %zu names, %" PRIu64 " messages routed",
                 b->reload_error[0] ? "reload failed (" : "", b->reload_error,
                 b->reload_error[0] ? "), old configuration kept; " : "",
                 b->n_peers, b->names.n_names, frames_routed(b));
        if (strcmp(status, b->status) != 0) {
                memcpy(b->status, status, sizeof(status));
                broker_notify(b, "STATUS=%s", status);
        }
}

static void status_tick(Timer *t, uint64_t now) {
        Broker *b = container_of(t, Broker, status_timer);

        status_refresh(b);
        (void)timer_arm(&b->timers, &b->status_timer, now + STATUS_INTERVAL_USEC);
}

static int config_check(const plx_broker_config *c) {
        if (!c->max_clients || !c->max_queue_frames || c->max_queue_bytes < FRAME_SIZE_MAX + 64 ||
            !c->max_pending_calls || !c->max_names || !c->default_timeout_ms || !c->hello_timeout_ms ||
            c->max_timeout_ms < c->default_timeout_ms || c->max_message_size < FRAME_SIZE_MAX ||
            !c->max_transfers || !c->max_lent_bytes || !c->transfer_lease_ms ||
            !c->max_user_clients || !c->max_unauthenticated ||
            !c->max_user_unauthenticated || c->max_user_queue_bytes < FRAME_SIZE_MAX + 64 ||
            c->max_total_queue_bytes < FRAME_SIZE_MAX + 64)
                return -EINVAL;
        return 0;
}

/**
 * plx_broker_new() - create a broker, listening but not yet running
 * @ret:        the broker, written on success
 * @config:     settings, copied; config->listen_fd is adopted on success
 *
 * With config->handle_signals, SIGTERM, SIGINT and SIGHUP are blocked in the
 * calling thread from now until plx_broker_free(), and handled by
 * plx_broker_run() through a signalfd.
 *
 * Return: 0, -EADDRINUSE if another broker is live at the address, -EEXIST
 * if a file other than a socket is in the way (it is left alone), -ENOENT
 * if there is no default address, -EINVAL for bad limits, or another
 * negative errno.
 */
int plx_broker_new(plx_broker **ret, const plx_broker_config *config) {
        _cleanup_(plx_broker_freep) Broker *b = NULL;
        char address[sizeof(((struct sockaddr_un *)NULL)->sun_path)];
        int r;

        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;

        b->config = *config;
        b->config.address = NULL;
        b->config.config_path = NULL;
        b->base = b->config;
        b->log = (Log) {
                .fn = config->log_fn,
                .userdata = config->log_userdata,
                .max_priority = config->log_level,
        };
        b->loop = (Loop) LOOP_NULL(b->loop);
        b->timers = (TimerQueue) TIMER_QUEUE_NULL(b->timers);
        b->listener = (Listener) { .source = LOOP_SOURCE_NULL(b->listener.source), .fd = -1, .reserve_fd = -1 };
        b->signal_source = (LoopSource) LOOP_SOURCE_NULL(b->signal_source);
        b->signal_fd = -1;
        b->wakeup_source = (LoopSource) LOOP_SOURCE_NULL(b->wakeup_source);
        b->wakeup_fd = -1;
        list_init(&b->peers);
        list_init(&b->dead_peers);
        list_init(&b->monitors);
        user_registry_init(&b->users);
        list_init(&b->pending_free);
        list_init(&b->transfer_list);
        list_init(&b->batch_peers);
        b->next_peer_id = 1;
        b->start_usec = now_usec();
        b->cred = (struct ucred) { .pid = getpid(), .uid = geteuid(), .gid = getegid() };
        sip_key_random(&b->hash_key);
        timer_init(&b->shutdown_timer, shutdown_deadline);
        timer_init(&b->watchdog_timer, watchdog_ping);
        timer_init(&b->status_timer, status_tick);
        arena_init(&b->arena);
        arena_init(&b->payload_arena);

        if (config->config_path) {
                char err[256];

                b->config_path = strdup(config->config_path);
                if (!b->config_path)
                        return -ENOMEM;
                r = config_load(&b->config, &b->policy, b->config_path, config->config_required,
                                err, sizeof(err));
                if (r < 0) {
                        broker_log(b, LOG_ERR, "%s: %s", b->config_path, err);
                        return r;
                }
                b->config_from_file = r > 0;
        }
        r = config_check(&b->config);
        if (r < 0)
                return r;
        apply_user_limits(b);

        r = topic_trie_init(&b->topics);
        if (r < 0)
                return r;
        r = peer_io_init(b);
        if (r < 0)
                return r;

        r = loop_init(&b->loop);
        if (r < 0)
                return r;
        r = timer_queue_init(&b->timers, &b->loop);
        if (r < 0)
                return r;

        b->wakeup_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (b->wakeup_fd < 0)
                return -errno;
        r = loop_source_add(&b->loop, &b->wakeup_source, LOOP_KIND_WAKEUP, b->wakeup_fd, EPOLLIN);
        if (r < 0)
                return r;

        /*
         * Before the socket exists: a SIGTERM that arrives once clients can
         * connect must take the clean shutdown path, not kill us.
         */
        if (config->handle_signals) {
                r = signals_block(b);
                if (r < 0)
                        return r;
        }

        if (config->listen_fd >= 0) {
                r = listener_adopt(b, config->listen_fd);
        } else {
                if (config->address)
                        snprintf(address, sizeof(address), "%s", config->address);
                else {
                        r = address_default(address, sizeof(address));
                        if (r < 0)
                                return r;
                }
                r = listener_open(b, address);
        }
        if (r < 0)
                return r;

        *ret = TAKE_PTR(b);
        return 0;
}

/**
 * plx_broker_get_address() - the socket path the broker created
 *
 * Return: the path, or NULL for an adopted socket.
 */
const char *plx_broker_get_address(plx_broker *b) {
        return b->listener.path;
}

/**
 * plx_broker_stop() - ask a running broker to shut down
 * @b:          the broker
 *
 * Safe from any thread and from signal handlers: it only writes to an
 * eventfd. The broker then shuts down as on SIGTERM.
 */
void plx_broker_stop(plx_broker *b) {
        uint64_t one = 1;

        (void)!write(b->wakeup_fd, &one, sizeof(one));
}

/**
 * broker_listener_resume() - accept again after running out of fds
 */
void broker_listener_resume(Broker *b) {
        if (!b->listener.paused)
                return;
        b->listener.paused = false;
        if (b->state == BROKER_STATE_RUNNING)
                loop_source_select(&b->listener.source, EPOLLIN);
}

/**
 * broker_begin_shutdown() - stop accepting, notify clients, start flushing
 */
void broker_begin_shutdown(Broker *b) {
        Peer *p;

        if (b->state != BROKER_STATE_RUNNING)
                return;

        broker_log(b, LOG_INFO, "shutting down, %zu clients connected", b->n_peers);
        broker_notify(b, "STOPPING=1");
        b->state = BROKER_STATE_DRAINING;
        listener_close(b);
        router_broadcast(b, TOPIC_SHUTDOWN);

        /* Safe walk: a hangup moves the peer to the dead list. */
        list_for_each_entry_safe(p, &b->peers, link) {
                if (p->state == PEER_STATE_HELLO)
                        peer_hangup(p);
                else
                        peer_stop_reading(p);
        }

        if (timer_arm(&b->timers, &b->shutdown_timer,
                      now_usec() + (uint64_t)b->config.shutdown_timeout_ms * 1000u) < 0)
                b->state = BROKER_STATE_DONE;
}

/**
 * broker_reload() - re-read the configuration file (SIGHUP)
 * @b:          the broker
 *
 * The file is applied on top of the configuration the broker was created
 * with, so a key removed from the file returns to its default. A file that
 * cannot be read or is not valid (see config_load(): also an empty or
 * zero-filled one) changes nothing, and the reason goes to the log and to
 * STATUS=. Once a file has been applied, it must stay readable: a missing
 * optional file means "defaults" only to a broker that never had one, as
 * the defaults' lack of a policy would refuse every other user. No client is dropped: new limits apply to what
 * clients do from now on (a lower client limit refuses new connections, a
 * lower queue limit refuses new frames).
 */
void broker_reload(Broker *b) {
        plx_broker_config c = b->base;
        Policy *policy = NULL;
        char err[256];
        Peer *p;
        int r;

        broker_notify(b, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, now_usec());

        err[0] = 0;
        if (!b->config_path ||
            (r = config_load(&c, &policy, b->config_path,
                             b->base.config_required || b->config_from_file, err, sizeof(err))) == 0) {
                broker_log(b, LOG_INFO, "reload: no configuration file, nothing to do");
                b->reload_error[0] = 0;
        } else if (r < 0 || (r = config_check(&c)) < 0) {
                if (r == -EINVAL && !err[0])
                        snprintf(err, sizeof(err), "invalid limits");
                broker_log(b, LOG_ERR, "reload: %s: %s, keeping the old configuration", b->config_path, err);
                snprintf(b->reload_error, sizeof(b->reload_error), "%s", err);
                policy_free(policy);
        } else {
                /* Decisions from now on follow the new rules; connected clients stay. */
                policy_free(b->policy);
                b->policy = policy;
                b->config = c;
                apply_user_limits(b);
                b->stats.n_reloads++;
                list_for_each_entry(p, &b->peers, link) {
                        p->queue.max_entries = c.max_queue_frames;
                        p->queue.max_bytes = c.max_queue_bytes;
                        p->queue.max_fds = c.max_queue_fds;
                }
                broker_log(b, LOG_INFO, "reload: configuration read from %s (%zu policy rules)",
                           b->config_path, policy_n_rules(b->policy));
                b->config_from_file = true;
                b->reload_error[0] = 0;
        }

        status_refresh(b);
        broker_notify(b, "READY=1");
}

static int dispatch_signal(Broker *b) {
        struct signalfd_siginfo si;

        for (;;) {
                ssize_t n = read(b->signal_fd, &si, sizeof(si));

                if (n < 0) {
                        if (errno == EAGAIN) {
                                loop_source_clear(&b->signal_source, EPOLLIN);
                                return 0;
                        }
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n != sizeof(si))
                        return -EIO;

                switch (si.ssi_signo) {
                case SIGTERM:
                case SIGINT:
                        if (b->state == BROKER_STATE_RUNNING) {
                                broker_begin_shutdown(b);
                        } else {
                                broker_log(b, LOG_NOTICE, "second %s, exiting without flushing",
                                           strsignal((int)si.ssi_signo));
                                b->state = BROKER_STATE_DONE;
                        }
                        break;
                case SIGHUP:
                        broker_reload(b);
                        break;
                }
        }
}

static int dispatch_wakeup(Broker *b) {
        uint64_t v;

        if (read(b->wakeup_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                return -errno;
        loop_source_clear(&b->wakeup_source, EPOLLIN);
        broker_begin_shutdown(b);
        return 0;
}

static int dispatch(Broker *b, LoopSource *s) {
        switch (s->kind) {
        case LOOP_KIND_LISTENER:
                listener_dispatch(b);
                return 0;
        case LOOP_KIND_PEER:
                return peer_dispatch(container_of(s, Peer, source));
        case LOOP_KIND_SIGNAL:
                return dispatch_signal(b);
        case LOOP_KIND_TIMER:
                return timer_queue_dispatch(&b->timers);
        case LOOP_KIND_WAKEUP:
                return dispatch_wakeup(b);
        }
        return -EINVAL;
}

static void free_dead_peers(Broker *b) {
        Peer *p;

        /* Freeing may kill no one else: peer_send() to a dead peer only counts. */
        while ((p = list_first_entry(&b->dead_peers, Peer, link))) {
                if (p->state != PEER_STATE_DEAD)
                        break;
                peer_free(p);
        }
}

static bool all_drained(Broker *b) {
        Peer *p;

        list_for_each_entry(p, &b->peers, link)
                if (!queue_is_empty(&p->queue) && p->state != PEER_STATE_DEAD)
                        return false;
        return true;
}

/**
 * broker_run_round() - one turn of the event loop
 * @b:          the broker
 *
 * Waits for events only if none are ready already, handles every ready
 * source once, frees the peers that died meanwhile and rearms the timers.
 * plx_broker_run() turns it until the broker is done; tests that drive a
 * broker from their own thread call it while its epoll fd is readable.
 *
 * Return: 0 or a fatal negative errno.
 */
int broker_run_round(Broker *b) {
        List ready = LIST_INIT(ready);
        int r;

        /*
         * Before waiting: a timer armed since the last round (or before the
         * first: the watchdog, the status tick) must reach the timerfd, or
         * the wait may never end. Free when nothing changed.
         */
        r = timer_queue_rearm(&b->timers);
        if (r < 0)
                return r;
        r = loop_poll(&b->loop, &ready);
        if (r < 0)
                return r;

        /*
         * A shutdown request goes first: otherwise a connection that
         * became ready in the same round would be accepted, only to be
         * hung up by the shutdown before its HELLO, instead of waiting
         * in the (socket-activated) backlog for the next instance.
         */
        LoopSource *first[] = { &b->signal_source, &b->wakeup_source };

        for (size_t i = 0; i < ELEMENTSOF(first); i++) {
                if (list_is_linked(&first[i]->ready_link)) {
                        list_unlink(&first[i]->ready_link);
                        list_link_before(ready.next, &first[i]->ready_link);
                }
        }

        while (!list_is_empty(&ready)) {
                LoopSource *s = list_entry(ready.next, LoopSource, ready_link);

                /* Presumed still ready; EAGAIN or removal takes it off again. */
                list_unlink(&s->ready_link);
                list_append(&b->loop.ready, &s->ready_link);
                r = dispatch(b, s);
                if (r < 0)
                        return r;
        }

        free_dead_peers(b);
        if (b->state == BROKER_STATE_DRAINING && all_drained(b))
                b->state = BROKER_STATE_DONE;

        /* Also here, for an embedder that runs a round only when the epoll fd is readable. */
        return timer_queue_rearm(&b->timers);
}

/**
 * plx_broker_run() - serve clients until shut down
 * @b:          the broker
 *
 * With config.handle_signals, SIGTERM/SIGINT/SIGHUP were blocked by
 * plx_broker_new() and are read from a signalfd here; call both from the
 * same thread.
 *
 * Return: 0 after a clean shutdown, or a negative errno on a fatal error.
 */
int plx_broker_run(plx_broker *b) {
        uint64_t now = now_usec();
        int r = 0;

        /* The socket listens and the loop is about to turn: clients are served from here on. */
        status_refresh(b);
        broker_notify(b, "READY=1");
        if (b->config.notify_fn && timer_arm(&b->timers, &b->status_timer, now + STATUS_INTERVAL_USEC) < 0)
                return -ENOMEM;
        if (b->config.watchdog_usec &&
            timer_arm(&b->timers, &b->watchdog_timer, now + b->config.watchdog_usec / 2) < 0)
                return -ENOMEM;

        while (b->state != BROKER_STATE_DONE) {
                r = broker_run_round(b);
                if (r < 0)
                        break;
        }

        if (r < 0)
                broker_log(b, LOG_ERR, "event loop failed: %s", strerror(-r));
        return r;
}

/**
 * plx_broker_free() - close every connection and free the broker
 * @b:          the broker or NULL; must not be running
 *
 * Return: NULL.
 */
plx_broker *plx_broker_free(plx_broker *b) {
        Peer *p;

        if (!b)
                return NULL;

        /* Hang everyone up first, so nobody is sent errors about the others. */
        while ((p = list_first_entry(&b->peers, Peer, link)))
                peer_hangup(p);
        free_dead_peers(b);

        timer_disarm(&b->timers, &b->shutdown_timer);
        timer_disarm(&b->timers, &b->watchdog_timer);
        timer_disarm(&b->timers, &b->status_timer);
        free(b->config_path);
        policy_free(b->policy);
        pending_flush_free_list(b);
        htable_deinit(&b->pending);
        htable_deinit(&b->transfers);
        htable_deinit(&b->peers_by_id);
        topic_trie_deinit(&b->topics);
        name_registry_deinit(&b->names);
        user_registry_deinit(&b->users);
        listener_close(b);
        loop_source_remove(&b->wakeup_source);
        b->wakeup_fd = plx_close(b->wakeup_fd);
        signals_restore(b);
        timer_queue_deinit(&b->timers);
        loop_deinit(&b->loop);
        arena_reset(&b->arena);
        arena_reset(&b->payload_arena);
        peer_io_deinit(b);
        free(b);
        return NULL;
}
