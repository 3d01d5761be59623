/*
 * What the verbs share (see ctl.h): connecting, reporting failures with
 * the documented exit codes, calling the broker, formatting.
 */

#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>

#include "address.h"
#include "ctl.h"
#include "json.h"

/* One line on stderr; with --json (and not for usage errors) a document on stdout. */
static int report(Ctl *c, int code, const char *error_name, const char *message, const char *line) {
        fprintf(stderr, "plexusctl%s%s: %s\n", c->verb ? " " : "", c->verb ?: "", line);
        if (c->json && code != CTL_EXIT_USAGE) {
                Json j;

                json_init(&j, stdout);
                json_object_begin(&j, NULL);
                json_object_begin(&j, "error");
                json_string(&j, "name", error_name);
                json_string(&j, "message", message);
                json_object_end(&j);
                json_object_end(&j);
                json_end(&j);
        }
        return code;
}

/**
 * ctl_fail() - report a failure
 * @c:          the context
 * @code:       the exit code it means, a CTL_EXIT_* value
 * @error_name: the remote error's name, or NULL for a local failure
 * @fmt:        printf format of the message
 *
 * Return: @code.
 */
int ctl_fail(Ctl *c, int code, const char *error_name, const char *fmt, ...) {
        char message[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);
        return report(c, code, error_name, message, message);
}

/**
 * ctl_connect() - connect @c->bus to the bus
 * @c:          the context; @c->address or the default address
 *
 * Return: 0, or CTL_EXIT_NO_BUS after reporting why not.
 */
int ctl_connect(Ctl *c) {
        char buf[256];
        const char *address = c->address;
        int r;

        if (!address) {
                r = address_default(buf, sizeof(buf));
                if (r == -ENOENT)
                        return ctl_fail(c, CTL_EXIT_NO_BUS, NULL,
                                        "no bus address: set $PLEXUS_BUS_ADDRESS or use --address");
                address = r < 0 ? "(default address)" : buf;
        }

        r = plx_bus_new(&c->bus, c->address, "plexusctl");
        if (r < 0)
                return ctl_fail(c, CTL_EXIT_NO_BUS, NULL, "cannot connect to the bus at %s: %s", address,
                                r == -EACCES ? "the bus's policy does not admit this user" :
                                r == -EUSERS ? "the bus has too many clients" :
                                r == -EPROTO ? "the broker does not speak this protocol" : strerror(-r));
        return 0;
}

/**
 * ctl_call_failed() - report a call that failed
 * @c:          the context
 * @what:       what was called, for the message (e.g. "Echo on :3")
 * @r:          the error from plx_bus_call() or a sibling
 * @reply:      the ERROR if there was one, else NULL; borrowed
 *
 * Remote errors: plexus.Error.Timeout is a timeout, ServiceUnknown and
 * NameHasNoOwner mean no such name, anything else is a remote failure.
 *
 * Return: the exit code.
 */
int ctl_call_failed(Ctl *c, const char *what, int r, plx_msg *reply) {
        char line[1024];

        if (reply && plx_msg_get_kind(reply) == PLX_MSG_ERROR) {
                const char *name = plx_msg_get_error_name(reply);
                const char *message = plx_msg_get_error_message(reply) ?: "";
                int code = CTL_EXIT_FAILURE;

                if (strcmp(name, PLX_ERROR_TIMEOUT) == 0)
                        code = CTL_EXIT_TIMEOUT;
                else if (strcmp(name, PLX_ERROR_SERVICE_UNKNOWN) == 0 ||
                         strcmp(name, PLX_ERROR_NAME_HAS_NO_OWNER) == 0)
                        code = CTL_EXIT_NO_NAME;
                snprintf(line, sizeof(line), "%s: %s%s%s", what, name, *message ? ": " : "", message);
                return report(c, code, name, message, line);
        }

        switch (r) {
        case -ETIMEDOUT:
                return ctl_fail(c, CTL_EXIT_TIMEOUT, NULL, "%s: no answer in time", what);
        case -ECONNRESET:
                return ctl_fail(c, CTL_EXIT_NO_BUS, NULL, "%s: the broker closed the connection", what);
        case -ENXIO:
                return ctl_fail(c, CTL_EXIT_NO_NAME, NULL, "%s: no such name on the bus", what);
        case -EINVAL:
                return ctl_fail(c, CTL_EXIT_USAGE, NULL, "%s: invalid name, member or topic", what);
        case -EMSGSIZE:
                return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "%s: the message does not fit a frame", what);
        case -EREMOTEIO:
                return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "%s: refused by the broker", what);
        default:
                return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "%s: %s", what, strerror(-r));
        }
}

/**
 * ctl_broker_call() - call one of the bus's own methods
 * @c:          the context, connected
 * @member:     the method, e.g. "ListClients"
 * @request:    the request message, or NULL for an empty payload; borrowed
 * @ret_reply:  receives the REPLY, a new reference
 *
 * Return: 0, or the exit code after reporting the failure.
 */
int ctl_broker_call(Ctl *c, const char *member, const ProtobufCMessage *request, plx_msg **ret_reply) {
        _cleanup_(plx_msg_unrefp) plx_msg *reply = NULL;
        _cleanup_(freep) uint8_t *buf = NULL;
        size_t n = 0;
        int r;

        if (request) {
                n = protobuf_c_message_get_packed_size(request);
                buf = malloc(n ?: 1);
                if (!buf)
                        return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");
                protobuf_c_message_pack(request, buf);
        }

        r = plx_bus_call(c->bus, PLX_BROKER, member, buf, n, ctl_timeout(c, PLX_TIMEOUT_DEFAULT), &reply);
        if (r < 0)
                return ctl_call_failed(c, member, r, reply);
        *ret_reply = TAKE_PTR(reply);
        return 0;
}

/**
 * ctl_timeout() - the timeout to use
 * @c:          the context
 * @fallback:   the verb's default
 *
 * Return: --timeout if given, else @fallback.
 */
uint64_t ctl_timeout(const Ctl *c, uint64_t fallback) {
        return c->timeout_usec != CTL_TIMEOUT_UNSET ? c->timeout_usec : fallback;
}

/**
 * ctl_wait() - sleep until the bus needs processing or a stop signal came
 * @bus:        the connection, idle (plx_bus_process() returned 0)
 * @signal_fd:  from ctl_signal_fd()
 *
 * Return: 1 when SIGINT or SIGTERM arrived, 0 when the bus wants
 * plx_bus_process() again, or a negative errno.
 */
int ctl_wait(plx_bus *bus, int signal_fd) {
        struct pollfd pfd[2];
        int r, ms;

        r = plx_bus_get_timeout(bus, &ms);
        if (r < 0)
                return r;
        pfd[0] = (struct pollfd) { .fd = plx_bus_get_fd(bus), .events = (short)plx_bus_get_events(bus) };
        pfd[1] = (struct pollfd) { .fd = signal_fd, .events = POLLIN };
        if (poll(pfd, 2, ms) < 0)
                return errno == EINTR ? 0 : -errno;
        return (pfd[1].revents & POLLIN) ? 1 : 0;
}

/**
 * ctl_signal_fd() - SIGINT and SIGTERM as a file descriptor, for verbs that run until stopped
 * @c:          the context
 * @ret_fd:     receives a non-blocking signalfd, to close
 *
 * Blocks both signals first, so that one arriving at any point later ends
 * the verb's loop cleanly instead of killing the process halfway through
 * a line (or a capture record).
 *
 * Return: 0, or CTL_EXIT_FAILURE after reporting why not.
 */
int ctl_signal_fd(Ctl *c, int *ret_fd) {
        sigset_t mask;
        int fd;

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "sigprocmask: %s", strerror(errno));
        fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (fd < 0)
                return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "signalfd: %s", strerror(errno));
        *ret_fd = fd;
        return 0;
}

/**
 * ctl_format_duration() - "3d 4h", "5min 12s", "42s", "350ms"
 * @buf:        destination
 * @size:       its capacity
 * @usec:       the duration
 *
 * The two largest units, rounded down.
 *
 * Return: @buf.
 */
char *ctl_format_duration(char *buf, size_t size, uint64_t usec) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = {
                { "d", 86400u * 1000000u },
                { "h", 3600u * 1000000u },
                { "min", 60u * 1000000u },
                { "s", 1000000u },
                { "ms", 1000u },
        };

        for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                uint64_t a = usec / units[i].usec, rest = usec % units[i].usec;

                if (a == 0)
                        continue;
                if (i + 1 < ELEMENTSOF(units) - 1 && rest / units[i + 1].usec > 0)
                        snprintf(buf, size, "%llu%s %llu%s", (unsigned long long)a, units[i].suffix,
                                 (unsigned long long)(rest / units[i + 1].usec), units[i + 1].suffix);
                else
                        snprintf(buf, size, "%llu%s", (unsigned long long)a, units[i].suffix);
                return buf;
        }
        snprintf(buf, size, "%llums", (unsigned long long)(usec / 1000u));
        return buf;
}

/**
 * ctl_format_time() - a wall-clock time in local time, "2024-11-24 14:12:03 CET"
 * @buf:        destination
 * @size:       its capacity
 * @realtime_usec: microseconds since the epoch
 *
 * Return: @buf.
 */
char *ctl_format_time(char *buf, size_t size, uint64_t realtime_usec) {
        time_t t = (time_t)(realtime_usec / 1000000u);
        struct tm tm;

        if (!localtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
                snprintf(buf, size, "@%llu", (unsigned long long)(realtime_usec / 1000000u));
        return buf;
}

/**
 * ctl_format_size() - "512 B", "4.0 KiB", "1.5 MiB"
 *
 * Return: @buf.
 */
char *ctl_format_size(char *buf, size_t size, uint64_t bytes) {
        static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
        double v = (double)bytes;
        size_t i = 0;

        if (bytes < 1024) {
                snprintf(buf, size, "%llu B", (unsigned long long)bytes);
                return buf;
        }
        v /= 1024.0;
        while (v >= 1024.0 && i + 1 < ELEMENTSOF(units)) {
                v /= 1024.0;
                i++;
        }
        snprintf(buf, size, "%.1f %s", v, units[i]);
        return buf;
}

/**
 * ctl_user_name() - the name of @uid, or its number
 * @uid:        the user
 * @buf:        room for the result
 * @size:       its capacity
 *
 * Return: @buf.
 */
const char *ctl_user_name(uid_t uid, char *buf, size_t size) {
        struct passwd pw, *result = NULL;
        char scratch[1024];

        if (getpwuid_r(uid, &pw, scratch, sizeof(scratch), &result) == 0 && result)
                snprintf(buf, size, "%s", result->pw_name);
        else
                snprintf(buf, size, "%u", (unsigned)uid);
        return buf;
}
