/*
 * Access policy against a real broker, with clients running under other
 * uids. Needs root (to setuid() the forked clients); skipped with a message
 * otherwise.
 *
 * Each test starts plexusd (as root) with a configuration file in a
 * directory made reachable for everyone (mkdtemp() makes it 0700), the
 * broker's stderr going to a log file that the test reads (denials, reload
 * results) and copies to its own stderr at the end.
 *
 * The clients are "agents": forked children that drop to a given uid, gid
 * and groups, connect, and then execute one command per line from the
 * control pipe ("own NAME", "call DEST MEMBER", "sub PATTERN", "pub TOPIC",
 * ...), answering each with one line on the report pipe. Between commands
 * they keep processing their connection, so they answer calls (methods
 * Echo, Secret, PublicInfo and Ping reply with their own member name). The
 * tests thus read as a script of requests and expected answers.
 */

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "frame.h"
#include "harness.h"

#define TIMEOUT_MS harness_timeout_ms(HARNESS_TIMEOUT_MS)
#define MAX_AGENTS 8

#define ALICE 4242                      /* allowed some things */
#define BOB 4343                        /* a rule with no allowances: may only connect */
#define NOBODY 4444                     /* no rule at all */
#define STAFF_GID 5555                  /* a rule by group */

/* What alice and bob may do; staff by group. No comments on value lines: keys are parsed whole. */
#define POLICY_BASE                                                             \
        "[limits]\n"                                                            \
        "max_names = 16\n"                                                      \
        "\n"                                                                    \
        "[policy:alice]\n"                                                      \
        "users = 4242\n"                                                        \
        "own = org.example.Allowed org.example.Wild.*\n"                        \
        "call = org.example.Allowed:Echo org.example.Allowed:Public* *:Ping\n"  \
        "publish = sensors/# news/+/public\n"                                   \
        "subscribe = sensors/#, alerts/+\n"                                     \
        "monitor = no\n"                                                        \
        "\n"                                                                    \
        "[policy:bob]\n"                                                        \
        "users = 4343\n"                                                        \
        "\n"                                                                    \
        "[policy:staff]\n"                                                      \
        "groups = 5555\n"                                                       \
        "own = org.example.Staff\n"

typedef struct Fixture {
        Harness *h;
        char config_path[320];
        char log_path[320];
        HarnessChild agents[MAX_AGENTS];
        size_t n_agents;
        plx_bus *bus;                   /* the test's own connection, as root */
} Fixture;

/* --- The agent (child) ------------------------------------------------------------ */

typedef struct As {
        bool root;                      /* stay root; the rest is ignored */
        uid_t uid;
        gid_t gid;
        gid_t groups[2];                /* supplementary, 0 for none */
} As;

typedef struct AgentArgs {
        const char *address;
        As as;
} AgentArgs;

typedef struct Agent {
        plx_bus *bus;
        int report_fd;
        char received[1024];            /* topics of signals since the last "recv", comma-separated */
        uint64_t last_sequence;         /* of the last signal recorded */
        char last_error[256];           /* from the error handler, since the last "pub" */
} Agent;

static void become(const As *as) {
        gid_t groups[2];
        size_t n = 0;

        if (as->root)
                return;
        for (size_t i = 0; i < 2; i++)
                if (as->groups[i])
                        groups[n++] = as->groups[i];
        if (setgroups(n, groups) < 0 || setresgid(as->gid, as->gid, as->gid) < 0 ||
            setresuid(as->uid, as->uid, as->uid) < 0)
                child_fail("cannot become uid %u gid %u: %m", (unsigned)as->uid, (unsigned)as->gid);
        /* A change of credentials clears the parent-death signal: ask again. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        child_assert(getuid() == as->uid && geteuid() == as->uid && getegid() == as->gid);
}

static int agent_method(plx_msg *call, void *userdata) {
        const char *member = plx_msg_get_member(call);

        return plx_msg_reply(call, member, strlen(member));
}

static int agent_signal(plx_msg *m, void *userdata) {
        Agent *a = userdata;
        size_t n = strlen(a->received);

        /* libplexus runs every matching subscription's callback: record each signal once. */
        if (plx_msg_get_sequence(m) == a->last_sequence)
                return 0;
        a->last_sequence = plx_msg_get_sequence(m);
        snprintf(a->received + n, sizeof(a->received) - n, "%s%s", n ? "," : "", plx_msg_get_topic(m));
        return 0;
}

static int agent_error(plx_msg *error, void *userdata) {
        Agent *a = userdata;

        snprintf(a->last_error, sizeof(a->last_error), "%s", plx_msg_get_error_name(error));
        return 0;
}

/* Call a broker method with a packed request; "ok" or the error name. */
static void broker_call(Agent *a, const char *member, const ProtobufCMessage *req, char *out, size_t size) {
        _cleanup_msg_ plx_msg *reply = NULL;
        uint8_t buf[512];
        size_t n = req ? protobuf_c_message_pack(req, buf) : 0;
        int r;

        r = plx_bus_call(a->bus, PLX_BROKER, member, buf, n, PLX_TIMEOUT_DEFAULT, &reply);
        if (r == -EREMOTEIO)
                snprintf(out, size, "%s", plx_msg_get_error_name(reply));
        else if (r < 0)
                snprintf(out, size, "error %d", r);
        else
                snprintf(out, size, "ok");
}

static const char *name_result(int r) {
        switch (r) {
        case PLX_NAME_PRIMARY_OWNER:
                return "primary";
        case PLX_NAME_IN_QUEUE:
                return "queue";
        case PLX_NAME_EXISTS:
                return "exists";
        case PLX_NAME_ALREADY_OWNER:
                return "already";
        default:
                return "?";
        }
}

/* Execute one command line; answer with one report line. */
static void agent_command(Agent *a, char *line) {
        _cleanup_msg_ plx_msg *reply = NULL;
        char *cmd, *arg1, *arg2, *save = NULL, out[300];
        int r;

        cmd = strtok_r(line, " ", &save);
        arg1 = strtok_r(NULL, " ", &save);
        arg2 = strtok_r(NULL, " ", &save);
        if (!cmd)
                child_fail("empty command");

        if (!strcmp(cmd, "id")) {
                harness_report(a->report_fd, "%s", plx_bus_get_unique_id(a->bus));
        } else if (!strcmp(cmd, "ping")) {
                r = plx_bus_call(a->bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL);
                harness_report(a->report_fd, "ping %s", r == 0 ? "ok" : strerror(-r));
        } else if (!strcmp(cmd, "own") && arg1) {
                r = plx_bus_request_name(a->bus, arg1, 0);
                if (r > 0) {
                        harness_report(a->report_fd, "%s", name_result(r));
                } else if (r == -EREMOTEIO) {
                        /* The library says only "remote error": ask again for its name. */
                        Plexus__RequestNameRequest req = PLEXUS__REQUEST_NAME_REQUEST__INIT;

                        req.name = arg1;
                        req.will_topic = (char *)"";
                        broker_call(a, "RequestName", &req.base, out, sizeof(out));
                        harness_report(a->report_fd, "%s", out);
                } else {
                        harness_report(a->report_fd, "error %d", r);
                }
        } else if (!strcmp(cmd, "will") && arg1 && arg2) {
                /* A name with a last will on topic arg2: publishing it needs the publish allowance. */
                r = plx_bus_request_name_lease(a->bus, arg1, 0, 0, arg2, "w", 1);
                if (r > 0) {
                        harness_report(a->report_fd, "%s", name_result(r));
                } else if (r == -EREMOTEIO) {
                        Plexus__RequestNameRequest req = PLEXUS__REQUEST_NAME_REQUEST__INIT;

                        req.name = arg1;
                        req.will_topic = arg2;
                        broker_call(a, "RequestName", &req.base, out, sizeof(out));
                        harness_report(a->report_fd, "%s", out);
                } else {
                        harness_report(a->report_fd, "error %d", r);
                }
        } else if (!strcmp(cmd, "release") && arg1) {
                r = plx_bus_release_name(a->bus, arg1);
                harness_report(a->report_fd, "%s", r == PLX_NAME_RELEASED ? "released" :
                                                   r == PLX_NAME_NON_EXISTENT ? "non-existent" :
                                                   r == PLX_NAME_NOT_OWNER ? "not-owner" : "error");
        } else if (!strcmp(cmd, "owner") && arg1) {
                char *owner = NULL;

                r = plx_bus_get_name_owner(a->bus, arg1, &owner);
                harness_report(a->report_fd, "%s", r == 0 ? owner : r == -ENXIO ? "none" : strerror(-r));
                free(owner);
        } else if (!strcmp(cmd, "call") && arg1 && arg2) {
                r = plx_bus_call(a->bus, arg1, arg2, NULL, 0, PLX_TIMEOUT_DEFAULT, &reply);
                if (r == 0) {
                        size_t n;
                        const void *p = plx_msg_get_payload(reply, &n);

                        /* From a client agent: the member it answered; from the broker: ok. */
                        if (strcmp(arg1, PLX_BROKER) == 0)
                                harness_report(a->report_fd, "ok");
                        else
                                harness_report(a->report_fd, "%.*s", (int)n, (const char *)p);
                } else if (r == -EREMOTEIO) {
                        harness_report(a->report_fd, "%s", plx_msg_get_error_name(reply));
                } else {
                        harness_report(a->report_fd, "error %d", r);
                }
        } else if (!strcmp(cmd, "sub") && arg1) {
                r = plx_bus_subscribe(a->bus, NULL, arg1, agent_signal, a);
                if (r == 0) {
                        harness_report(a->report_fd, "ok");
                } else if (r == -EREMOTEIO) {
                        Plexus__SubscribeRequest req = PLEXUS__SUBSCRIBE_REQUEST__INIT;

                        req.pattern = arg1;
                        broker_call(a, "Subscribe", &req.base, out, sizeof(out));
                        harness_report(a->report_fd, "%s", out);
                } else {
                        harness_report(a->report_fd, "error %d", r);
                }
        } else if (!strcmp(cmd, "unsub") && arg1) {
                Plexus__SubscribeRequest req = PLEXUS__SUBSCRIBE_REQUEST__INIT;

                req.pattern = arg1;
                broker_call(a, "Unsubscribe", &req.base, out, sizeof(out));
                harness_report(a->report_fd, "%s", out);
        } else if (!strcmp(cmd, "monitor")) {
                Plexus__MonitorRequest req = PLEXUS__MONITOR_REQUEST__INIT;

                broker_call(a, "BecomeMonitor", &req.base, out, sizeof(out));
                harness_report(a->report_fd, "%s", out);
        } else if (!strcmp(cmd, "pub") && arg1) {
                /* The broker answers a refused signal before the Ping that follows it. */
                a->last_error[0] = 0;
                r = plx_bus_publish(a->bus, arg1, "p", 1);
                if (r == 0)
                        r = plx_bus_call(a->bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL);
                if (r == 0)
                        r = harness_bus_drain(a->bus);
                if (r < 0)
                        harness_report(a->report_fd, "error %d", r);
                else
                        harness_report(a->report_fd, "%s", a->last_error[0] ? a->last_error : "ok");
        } else if (!strcmp(cmd, "recv")) {
                /* Whatever the broker routed before our Ping is in by now. */
                r = plx_bus_call(a->bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL);
                if (r == 0)
                        r = harness_bus_drain(a->bus);
                if (r < 0)
                        harness_report(a->report_fd, "error %d", r);
                else
                        harness_report(a->report_fd, "%s", a->received[0] ? a->received : "-");
                a->received[0] = 0;
        } else {
                child_fail("unknown command \"%s\"", cmd);
        }
}

static int agent_main(int report_fd, int control_fd, void *userdata) {
        static const char *const members[] = { "Echo", "Secret", "PublicInfo", "Ping" };
        AgentArgs *args = userdata;
        Agent a = { .report_fd = report_fd };
        int r;

        become(&args->as);
        r = plx_bus_new(&a.bus, args->address, "policy-agent");
        if (r < 0) {
                harness_report(report_fd, "connect %s", r == -EACCES ? "EACCES" : strerror(-r));
                return 0;
        }
        for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++)
                if (plx_bus_add_method(a.bus, NULL, members[i], agent_method, &a) < 0)
                        child_fail("add_method");
        plx_bus_set_error_handler(a.bus, agent_error, &a);
        harness_report(report_fd, "ready %s", plx_bus_get_unique_id(a.bus));

        for (;;) {
                struct pollfd pfd[2] = {
                        { .fd = control_fd, .events = POLLIN },
                        { .fd = plx_bus_get_fd(a.bus), .events = (short)plx_bus_get_events(a.bus) },
                };
                char line[512];
                int ms;

                r = harness_bus_drain(a.bus);
                if (r == -ECONNRESET)
                        break;          /* the broker went away: the test is over */
                if (r < 0)
                        child_fail("processing: %s", strerror(-r));
                if (plx_bus_get_timeout(a.bus, &ms) < 0)
                        break;
                if (ms < 0 || ms > 1000)
                        ms = 1000;
                if (poll(pfd, 2, ms) < 0 && errno != EINTR)
                        child_fail("poll: %m");
                if (!(pfd[0].revents & (POLLIN | POLLHUP)))
                        continue;
                r = harness_read_line(control_fd, line, sizeof(line), TIMEOUT_MS);
                if (r == -ENODATA)
                        break;          /* the test closed our pipe: done */
                if (r < 0)
                        child_fail("reading a command: %s", strerror(-r));
                agent_command(&a, line);
        }
        plx_bus_free(a.bus);
        return 0;
}

/* --- Parent side ---------------------------------------------------------------------- */

static Fixture *need_root(void **state) {
        if (geteuid() != 0) {
                fprintf(stderr, "SKIPPED: the access policy tests need root to run clients under other uids\n");
                print_message("SKIPPED: the access policy tests need root to run clients under other uids\n");
                skip();
        }
        assert_non_null(*state);
        return *state;
}

static void write_file(const char *path, const char *content) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
        close(fd);
}

/* The broker's log so far, in a buffer to free(). */
static char *read_log(Fixture *f) {
        char *buf = calloc(1, 1 << 20);
        int fd;
        ssize_t n;

        assert_non_null(buf);
        fd = open(f->log_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return buf;
        n = read(fd, buf, (1 << 20) - 1);
        close(fd);
        if (n > 0)
                buf[n] = 0;
        return buf;
}

static int log_count(Fixture *f, const char *needle) {
        char *log = read_log(f);
        int n = 0;

        for (const char *p = log; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        free(log);
        return n;
}

/* Wait (bounded) until @needle appears @n times in the log. */
static void log_wait(Fixture *f, const char *needle, int n) {
        uint64_t deadline = harness_now_ms() + (uint64_t)TIMEOUT_MS;

        while (log_count(f, needle) < n) {
                if (harness_now_ms() >= deadline)
                        fail_msg("the broker did not log \"%s\" %d times", needle, n);
                usleep(10 * 1000);
        }
}

/* (Re)start the broker with @config (NULL: no -c at all, "": an empty file). */
static int broker_start(Fixture *f, const char *config) {
        const char *args[] = { "-c", f->config_path, NULL };
        int log_fd, r;

        if (config) {
                int fd = open(f->config_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

                if (fd < 0 || write(fd, config, strlen(config)) != (ssize_t)strlen(config)) {
                        fprintf(stderr, "cannot write %s\n", f->config_path);
                        if (fd >= 0)
                                close(fd);
                        return -1;
                }
                close(fd);
        }
        log_fd = open(f->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log_fd < 0)
                return -1;
        r = harness_broker_start_args(f->h, config ? args : NULL, log_fd);
        close(log_fd);
        return r;
}

static int setup_with(void **state, const char *config) {
        Fixture *f;

        *state = NULL;
        if (geteuid() != 0)
                return 0;               /* the test skips itself */
        signal(SIGPIPE, SIG_IGN);

        f = calloc(1, sizeof(*f));
        if (!f)
                return -1;
        *state = f;
        for (size_t i = 0; i < MAX_AGENTS; i++)
                f->agents[i] = (HarnessChild) HARNESS_CHILD_NULL;
        f->h = calloc(1, sizeof(*f->h));
        if (!f->h)
                return -1;
        f->h->n_fds = harness_count_fds();
        if (harness_prepare(f->h) < 0)
                return -1;
        /* Other uids must reach the socket, which the broker (as root) makes 0666. */
        if (chmod(f->h->dir, 0755) < 0)
                return -1;
        snprintf(f->config_path, sizeof(f->config_path), "%s/plexusd.conf", f->h->dir);
        snprintf(f->log_path, sizeof(f->log_path), "%s/plexusd.log", f->h->dir);
        if (broker_start(f, config) < 0)
                return -1;
        if (plx_bus_new(&f->bus, f->h->address, "test-policy") < 0)
                return -1;
        return 0;
}

static void dump_log(Fixture *f) {
        char *log = read_log(f);

        fprintf(stderr, "--- plexusd log (%s) ---\n%s--- end of plexusd log ---\n", f->log_path, log);
        free(log);
}

static int teardown(void **state) {
        Fixture *f = *state;
        void *h;
        int r, ret = 0;

        if (!f)
                return 0;
        f->bus = plx_bus_free(f->bus);
        if (f->h && f->h->broker_pid > 0) {
                r = harness_broker_stop(f->h);
                if (r != 0) {
                        fprintf(stderr, "teardown: broker exit status %d, expected 0\n", r);
                        ret = -1;
                }
        }
        /* Agents leave when the broker goes (or their pipe closes) and exit 0 unless a check failed. */
        for (size_t i = 0; i < f->n_agents; i++) {
                if (f->agents[i].pid <= 0)
                        continue;
                r = harness_child_wait(&f->agents[i], TIMEOUT_MS);
                if (r != 0) {
                        fprintf(stderr, "teardown: agent %zu exit status %d, expected 0\n", i, r);
                        ret = -1;
                }
        }
        if (f->h && f->h->dir[0])
                dump_log(f);
        h = f->h;
        if (h && harness_teardown(&h) < 0)
                ret = -1;
        free(f);
        *state = NULL;
        return ret;
}

static int setup(void **state) {
        if (setup_with(state, POLICY_BASE) < 0) {
                teardown(state);
                return -1;
        }
        return 0;
}

/* Start an agent as @as; returns its index. Its first line ("ready :N" or "connect ...") goes to @ret_line. */
static size_t agent_start(Fixture *f, As as, char *ret_line, size_t size) {
        AgentArgs args = { .address = f->h->address, .as = as };
        HarnessChild *c;
        int r;

        assert_true(f->n_agents < MAX_AGENTS);
        c = &f->agents[f->n_agents];
        assert_int_equal(harness_child_fork(c, agent_main, &args), 0);
        r = harness_read_line(c->report_fd, ret_line, size, TIMEOUT_MS);
        if (r < 0)
                fail_msg("agent (uid %u) said nothing: %s", (unsigned)as.uid, strerror(-r));
        return f->n_agents++;
}

/* An agent that must get connected; its unique id goes to @ret_id. */
static size_t agent_connect(Fixture *f, As as, char *ret_id, size_t size) {
        char line[128];
        size_t i = agent_start(f, as, line, sizeof(line));

        if (strncmp(line, "ready :", 7) != 0)
                fail_msg("agent (uid %u) did not connect: %s", (unsigned)as.uid, line);
        if (ret_id) {
                assert_true(strlen(line + 6) < size);
                memcpy(ret_id, line + 6, strlen(line + 6) + 1);
        }
        return i;
}

static As user(uid_t uid) {
        return (As) { .uid = uid, .gid = uid };
}

static const As as_root = { .root = true };

/* Send @command to agent @i and require @expected as its answer. */
static void expect(Fixture *f, size_t i, const char *command, const char *expected) {
        char line[600];
        int r;

        assert_true(dprintf(f->agents[i].control_fd, "%s\n", command) > 0);
        r = harness_read_line(f->agents[i].report_fd, line, sizeof(line), TIMEOUT_MS);
        if (r < 0)
                fail_msg("agent %zu: no answer to \"%s\": %s", i, command, strerror(-r));
        if (strcmp(line, expected) != 0)
                fail_msg("agent %zu: \"%s\" -> \"%s\", expected \"%s\"", i, command, line, expected);
}

static void expectf(Fixture *f, size_t i, const char *expected, const char *fmt, ...)
        __attribute__((__format__(printf, 4, 5)));
static void expectf(Fixture *f, size_t i, const char *expected, const char *fmt, ...) {
        char command[400];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(command, sizeof(command), fmt, ap);
        va_end(ap);
        expect(f, i, command, expected);
}

#define DENIED PLX_ERROR_ACCESS_DENIED

/* --- Connecting -------------------------------------------------------------------------- */

static void test_connect(void **state) {
        Fixture *f = need_root(state);
        size_t i;

        /* Root (our own f->bus) and every uid some rule names. */
        agent_connect(f, user(ALICE), NULL, 0);
        agent_connect(f, user(BOB), NULL, 0);
        /* By group: supplementary, or primary. */
        i = agent_connect(f, (As) { .uid = 4545, .gid = 4545, .groups = { 7000, STAFF_GID } }, NULL, 0);
        expect(f, i, "own org.example.Staff", "primary");
        expect(f, i, "own org.example.Allowed", DENIED);
        i = agent_connect(f, (As) { .uid = 4546, .gid = STAFF_GID }, NULL, 0);
        expect(f, i, "own org.example.Staff", "queue");
}

/* A uid that no rule names gets no connection (-EACCES from plx_bus_new()). */
static void test_connect_no_rule(void **state) {
        Fixture *f = need_root(state);
        char line[128];

        agent_start(f, user(NOBODY), line, sizeof(line));
        if (strcmp(line, "connect EACCES") != 0)
                fail_msg("uid %d, named by no rule, got \"%s\" instead of \"connect EACCES\"", NOBODY, line);
        agent_start(f, (As) { .uid = 4547, .gid = 7000, .groups = { 7001 } }, line, sizeof(line));
        if (strcmp(line, "connect EACCES") != 0)
                fail_msg("uid 4547 (gid 7000, groups 7001), named by no rule, got \"%s\"", line);
        assert_int_equal(log_count(f, "uid 4444 may not use this bus"), 1);
}

/* Without a policy only root (and the broker's own uid) may connect. */
static void test_no_policy(void **state) {
        Fixture *f = need_root(state);
        static const struct {
                const char *what;
                const char *config;     /* NULL: no -c */
        } cases[] = {
                { "limits only", "[limits]\nmax_names = 16\n" },
                { "a file of comments only", "; defaults\n" },
                { "no configuration file", NULL },
        };
        struct stat st;

        for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
                char line[128];

                if (!cases[k].config && stat("/etc/plexus/plexusd.conf", &st) == 0) {
                        fprintf(stderr, "/etc/plexus/plexusd.conf exists: not testing without -c\n");
                        continue;
                }
                f->bus = plx_bus_free(f->bus);
                assert_int_equal(harness_broker_stop(f->h), 0);
                assert_int_equal(broker_start(f, cases[k].config), 0);
                assert_int_equal(plx_bus_new(&f->bus, f->h->address, "root"), 0);

                agent_start(f, user(ALICE), line, sizeof(line));
                if (strcmp(line, "connect EACCES") != 0)
                        fail_msg("%s: uid %d got \"%s\", expected \"connect EACCES\"", cases[k].what, ALICE, line);
                /* Root may still do anything. */
                assert_int_equal(plx_bus_request_name(f->bus, "org.example.Root", 0), PLX_NAME_PRIMARY_OWNER);
        }
}

/* --- own --------------------------------------------------------------------------------- */

static void test_own(void **state) {
        Fixture *f = need_root(state);
        size_t alice, bob;
        char *owner = NULL;

        alice = agent_connect(f, user(ALICE), NULL, 0);
        bob = agent_connect(f, user(BOB), NULL, 0);

        expect(f, alice, "own org.example.Allowed", "primary");
        expect(f, alice, "own org.example.Allowed", "already");
        expect(f, alice, "own org.example.Wild.Card", "primary");
        expect(f, alice, "own org.example.Wild.Card.Deep", "primary");
        expect(f, alice, "own org.example.Wild", DENIED);
        expect(f, alice, "own org.example.Denied", DENIED);
        /* Refused means not owned, and the client stays connected. */
        expect(f, alice, "owner org.example.Denied", "none");
        expect(f, alice, "ping", "ping ok");
        assert_int_equal(plx_bus_get_name_owner(f->bus, "org.example.Denied", NULL), -ENXIO);

        /* bob may own nothing, not even the name alice may own. */
        expect(f, bob, "own org.example.Allowed", DENIED);
        expect(f, bob, "own org.example.Bob", DENIED);
        /* Releasing is always allowed. */
        expect(f, bob, "release org.example.Bob", "non-existent");
        expect(f, alice, "release org.example.Allowed", "released");
        expect(f, bob, "own org.example.Allowed", DENIED);

        /* A last will needs the publish allowance for its topic. */
        expect(f, alice, "will org.example.Wild.Will secret/will", DENIED);
        expect(f, alice, "owner org.example.Wild.Will", "none");
        expect(f, alice, "will org.example.Wild.Will sensors/will", "primary");

        /* Root is not restricted. */
        assert_int_equal(plx_bus_request_name(f->bus, "org.example.Denied", 0), PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_get_name_owner(f->bus, "org.example.Denied", &owner), 0);
        assert_string_equal(owner, plx_bus_get_unique_id(f->bus));
        free(owner);
}

/* --- call -------------------------------------------------------------------------------- */

static void test_call(void **state) {
        Fixture *f = need_root(state);
        char allowed_id[64], other_id[64], bob_id[64];
        size_t svc_allowed, svc_other, alice, bob;
        _cleanup_msg_ plx_msg *reply = NULL;

        /* Services run as root: they may own anything. */
        svc_allowed = agent_connect(f, as_root, allowed_id, sizeof(allowed_id));
        expect(f, svc_allowed, "own org.example.Allowed", "primary");
        svc_other = agent_connect(f, as_root, other_id, sizeof(other_id));
        expect(f, svc_other, "own org.example.Other", "primary");
        alice = agent_connect(f, user(ALICE), NULL, 0);
        bob = agent_connect(f, user(BOB), bob_id, sizeof(bob_id));

        /* By name: member globs. */
        expect(f, alice, "call org.example.Allowed Echo", "Echo");
        expect(f, alice, "call org.example.Allowed PublicInfo", "PublicInfo");
        expect(f, alice, "call org.example.Allowed Secret", DENIED);
        expect(f, alice, "call org.example.Other Echo", DENIED);
        expect(f, alice, "call org.example.Other Ping", "Ping");
        /* By unique id: as allowed as by a name the callee owns. */
        expectf(f, alice, "Echo", "call %s Echo", allowed_id);
        expectf(f, alice, DENIED, "call %s Secret", allowed_id);
        expectf(f, alice, DENIED, "call %s Echo", other_id);
        expectf(f, alice, "Ping", "call %s Ping", other_id);
        /* bob owns nothing allowed: only *:Ping reaches him. */
        expectf(f, alice, DENIED, "call %s Echo", bob_id);
        expectf(f, alice, "Ping", "call %s Ping", bob_id);
        /* The bus's own methods are open. */
        expect(f, alice, "call plexus Ping", "ok");
        expect(f, alice, "call plexus GetBusInfo", "ok");
        expect(f, alice, "call plexus ListNames", "ok");

        /* bob may call nobody... */
        expect(f, bob, "call org.example.Allowed Echo", DENIED);
        expectf(f, bob, DENIED, "call %s Ping", allowed_id);
        expect(f, bob, "call plexus Ping", "ok");
        /* ...but answers calls: replies are always allowed. */
        assert_int_equal(plx_bus_call(f->bus, bob_id, "Echo", NULL, 0, PLX_TIMEOUT_DEFAULT, &reply), 0);
        assert_int_equal(plx_msg_get_sender_uid(reply), BOB);
        assert_int_equal(plx_msg_get_sender_gid(reply), BOB);
        assert_int_equal(plx_msg_get_sender_pid(reply), f->agents[bob].pid);

        /* A denied caller is still connected. */
        expect(f, alice, "ping", "ping ok");
        expect(f, bob, "ping", "ping ok");
}

/* --- publish ------------------------------------------------------------------------------ */

typedef struct Seen {
        char topics[1024];
        unsigned n_wrong_creds;
        pid_t pid;                      /* expected sender */
        uid_t uid;
} Seen;

static int on_seen(plx_msg *m, void *userdata) {
        Seen *s = userdata;
        size_t n = strlen(s->topics);

        snprintf(s->topics + n, sizeof(s->topics) - n, "%s%s", n ? "," : "", plx_msg_get_topic(m));
        if (plx_msg_get_sender_pid(m) != s->pid || plx_msg_get_sender_uid(m) != s->uid ||
            plx_msg_get_sender_gid(m) != s->uid)
                s->n_wrong_creds++;
        return 0;
}

static void test_publish(void **state) {
        Fixture *f = need_root(state);
        Seen seen = {};
        size_t alice, bob;

        alice = agent_connect(f, user(ALICE), NULL, 0);
        bob = agent_connect(f, user(BOB), NULL, 0);
        seen.pid = f->agents[alice].pid;
        seen.uid = ALICE;
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "sensors/#", on_seen, &seen), 0);
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "news/#", on_seen, &seen), 0);
        assert_int_equal(plx_bus_subscribe(f->bus, NULL, "secret/#", on_seen, &seen), 0);

        /* The publisher's error handler hears of each refused signal. */
        expect(f, alice, "pub sensors/temp", "ok");
        expect(f, alice, "pub secret/plans", DENIED);
        expect(f, alice, "pub news/today/public", "ok");
        expect(f, alice, "pub news/today/private", DENIED);
        expect(f, alice, "pub news/today/x/public", DENIED);
        expect(f, bob, "pub sensors/temp", DENIED);
        expect(f, bob, "pub news/today/public", DENIED);
        expect(f, alice, "pub sensors", "ok");

        /* Subscribers see only what was allowed, from alice. */
        assert_int_equal(plx_bus_call(f->bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        assert_int_equal(harness_bus_drain(f->bus), 0);
        assert_string_equal(seen.topics, "sensors/temp,news/today/public,sensors");
        assert_int_equal(seen.n_wrong_creds, 0);
}

/* --- subscribe ----------------------------------------------------------------------------- */

static void test_subscribe(void **state) {
        Fixture *f = need_root(state);
        size_t alice, bob;
        static const char *const topics[] = {
                "sensors/kitchen/temp", "alerts/fire", "alerts/fire/big", "secret/plans", "other/temp",
        };

        alice = agent_connect(f, user(ALICE), NULL, 0);
        bob = agent_connect(f, user(BOB), NULL, 0);

        /* Allowed patterns, and narrower ones they cover. */
        expect(f, alice, "sub sensors/#", "ok");
        expect(f, alice, "sub sensors/+/temp", "ok");
        expect(f, alice, "sub sensors", "ok");
        expect(f, alice, "sub alerts/+", "ok");
        expect(f, alice, "sub alerts/fire", "ok");
        /* Wider or elsewhere: refused. */
        expect(f, alice, "sub alerts/#", DENIED);
        expect(f, alice, "sub alerts", DENIED);
        expect(f, alice, "sub #", DENIED);
        expect(f, alice, "sub +/temp", DENIED);
        expect(f, alice, "sub secret/plans", DENIED);
        expect(f, bob, "sub sensors/#", DENIED);
        expect(f, bob, "sub #", DENIED);

        /* What alice then receives: matches of her allowed subscriptions, once each. */
        for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++)
                assert_int_equal(plx_bus_publish(f->bus, topics[i], "x", 1), 0);
        assert_int_equal(plx_bus_call(f->bus, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        expect(f, alice, "recv", "sensors/kitchen/temp,alerts/fire");
        expect(f, bob, "recv", "-");

        /* Unsubscribing is always allowed. */
        expect(f, alice, "unsub sensors/#", "ok");
}

/* --- What is always allowed, and monitoring ------------------------------------------------ */

static void test_always_allowed(void **state) {
        Fixture *f = need_root(state);
        size_t bob;

        bob = agent_connect(f, user(BOB), NULL, 0);
        assert_int_equal(plx_bus_request_name(f->bus, "org.example.Root", 0), PLX_NAME_PRIMARY_OWNER);

        expect(f, bob, "call plexus Ping", "ok");
        expect(f, bob, "call plexus GetBusInfo", "ok");
        expect(f, bob, "call plexus ListNames", "ok");
        expectf(f, bob, plx_bus_get_unique_id(f->bus), "owner org.example.Root");
        expect(f, bob, "release org.example.Root", "not-owner");
        expect(f, bob, "monitor", DENIED);
        expect(f, bob, "ping", "ping ok");
}

/* --- Denials are logged once per client and target ----------------------------------------- */

static void test_denial_logged_once(void **state) {
        Fixture *f = need_root(state);
        size_t alice;

        alice = agent_connect(f, user(ALICE), NULL, 0);
        for (int i = 0; i < 5; i++) {
                expect(f, alice, "own org.example.Denied", DENIED);
                expect(f, alice, "pub secret/plans", DENIED);
        }
        expect(f, alice, "own org.example.Denied2", DENIED);
        expect(f, alice, "ping", "ping ok");

        assert_int_equal(log_count(f, "denied: own org.example.Denied (uid 4242, gid 4242)"), 1);
        assert_int_equal(log_count(f, "denied: publish secret/plans (uid 4242"), 1);
        assert_int_equal(log_count(f, "denied: own org.example.Denied2 (uid 4242"), 1);

        /* Another client, the same target: logged for it too. */
        alice = agent_connect(f, user(ALICE), NULL, 0);
        expect(f, alice, "own org.example.Denied", DENIED);
        expect(f, alice, "ping", "ping ok");
        assert_int_equal(log_count(f, "denied: own org.example.Denied (uid 4242, gid 4242)"), 2);
}

/* --- Reload --------------------------------------------------------------------------------- */

#define POLICY_LATER                                                            \
        POLICY_BASE                                                             \
        "\n"                                                                    \
        "[policy:alice]\n"                                                      \
        "own = org.example.Later\n"                                             \
        "subscribe = later/#\n"                                                 \
        "\n"                                                                    \
        "[policy:nobody]\n"                                                     \
        "users = 4444\n"

static void reload(Fixture *f, const char *config, const char *needle, int n) {
        write_file(f->config_path, config);
        assert_int_equal(kill(f->h->broker_pid, SIGHUP), 0);
        log_wait(f, needle, n);
}

static void test_reload(void **state) {
        Fixture *f = need_root(state);
        char id[64];
        size_t alice, nobody;

        alice = agent_connect(f, user(ALICE), id, sizeof(id));
        expect(f, alice, "own org.example.Later", DENIED);
        expect(f, alice, "sub later/#", DENIED);

        /* Now allowed, on the same connection. */
        reload(f, POLICY_LATER, "reload: configuration read", 1);
        expect(f, alice, "own org.example.Later", "primary");
        expect(f, alice, "sub later/#", "ok");
        expect(f, alice, "id", id);
        /* A uid the new file names may connect now. */
        nobody = agent_connect(f, user(NOBODY), NULL, 0);
        expect(f, nobody, "ping", "ping ok");

        /* Taken back: new requests are refused; the connection stays. */
        reload(f, POLICY_BASE, "reload: configuration read", 2);
        expect(f, alice, "release org.example.Later", "released");
        expect(f, alice, "own org.example.Later", DENIED);
        expect(f, alice, "id", id);
        expect(f, nobody, "ping", "ping ok");
}

static void test_reload_broken(void **state) {
        Fixture *f = need_root(state);
        static const struct {
                const char *what;
                const char *config;
                const char *complaint;
        } broken[] = {
                { "unknown key", POLICY_LATER "[policy:alice]\nown = org.example.Broken\nsubscribes = x/#\n",
                  "unknown key subscribes" },
                { "unknown user", POLICY_LATER "[policy:alice]\nown = org.example.Broken\n"
                  "[policy:ghost]\nusers = plexus-no-such-user\n", "no such user \"plexus-no-such-user\"" },
                { "unknown group", POLICY_LATER "[policy:alice]\nown = org.example.Broken\n"
                  "[policy:ghosts]\ngroups = plexus-no-such-group\n", "no such group \"plexus-no-such-group\"" },
                { "bad pattern", POLICY_LATER "[policy:alice]\nown = org.example.Broken\nsubscribe = a//b\n",
                  "invalid entry \"a//b\"" },
                { "rule naming nobody", POLICY_LATER "[policy:alice]\nown = org.example.Broken\n"
                  "[policy:orphan]\nown = org.example.Orphan\n", "names no users or groups" },
                { "unknown section", POLICY_LATER "[policy:alice]\nown = org.example.Broken\n[polcy:x]\nusers = 1\n",
                  "unknown section [polcy:x]" },
        };
        char id[64];
        size_t alice, bob;

        alice = agent_connect(f, user(ALICE), id, sizeof(id));
        bob = agent_connect(f, user(BOB), NULL, 0);
        reload(f, POLICY_LATER, "reload: configuration read", 1);
        expect(f, alice, "own org.example.Later", "primary");

        for (size_t k = 0; k < sizeof(broken) / sizeof(broken[0]); k++) {
                char needle[160];

                reload(f, broken[k].config, "keeping the old configuration", (int)k + 1);
                snprintf(needle, sizeof(needle), "%s, keeping the old configuration", broken[k].complaint);
                if (log_count(f, needle) != 1)
                        fail_msg("%s: the broker did not log \"%s\"", broken[k].what, needle);

                /* Nothing of the broken file applies; everything of the old one does. */
                expect(f, alice, "own org.example.Broken", DENIED);
                expect(f, alice, "release org.example.Later", "released");
                expect(f, alice, "own org.example.Later", "primary");
                expect(f, alice, "sub later/x", "ok");
                expect(f, alice, "own org.example.Denied", DENIED);
                expect(f, bob, "own org.example.Allowed", DENIED);
                /* Still connected, as the same client. */
                expect(f, alice, "id", id);
                expect(f, bob, "ping", "ping ok");
        }
        assert_int_equal(log_count(f, "reload: configuration read"), 1);
}

#define POLICY_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                POLICY_TEST(test_connect),
                POLICY_TEST(test_connect_no_rule),
                POLICY_TEST(test_no_policy),
                POLICY_TEST(test_own),
                POLICY_TEST(test_call),
                POLICY_TEST(test_publish),
                POLICY_TEST(test_subscribe),
                POLICY_TEST(test_always_allowed),
                POLICY_TEST(test_denial_logged_once),
                POLICY_TEST(test_reload),
                POLICY_TEST(test_reload_broken),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
