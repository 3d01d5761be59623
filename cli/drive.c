/*
 * Verbs that put traffic on the bus: call, publish, subscribe, wait.
 *
 * They use libplexus exactly as any client would. Received payloads are
 * shown as text when they are text (utf8_is_text()), else as a hexdump;
 * --raw writes the bytes alone; --json gives each payload twice, as
 * "payload_text" (null unless well-formed UTF-8) and as "payload_hex"
 * (always, exact). File descriptors that come with a message are counted
 * ("fds: N", "n_fds"), not used: they are closed with the message.
 *
 * --fd PATH (call, publish) opens each PATH read-only and passes the
 * descriptors along; the receiver gets duplicates, ours are closed when
 * the verb ends.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus-name.h"
#include "ctl.h"
#include "describe.h"
#include "json.h"
#include "payload.h"
#include "utf8.h"

/* The payload an optional argument stands for; none means empty. */
static int read_payload(Ctl *c, int argc, char **argv, int index, Payload *ret) {
        int r;

        if (argc <= index) {
                *ret = (Payload) PAYLOAD_NULL;
                return 0;
        }
        r = payload_read(argv[index], ret);
        if (r == -EFBIG)
                return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "the payload is larger than any bus accepts "
                                "(%" PRIu64 " bytes)", PAYLOAD_MAX);
        if (r < 0)
                return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "cannot read the payload from %s: %s",
                                strcmp(argv[index], "-") == 0 ? "standard input" : argv[index] + 1,
                                strerror(-r));
        return 0;
}

static void json_payload(Json *j, const void *p, size_t n) {
        json_uint(j, "size", n);
        if (utf8_is_valid(p, n))
                json_bytes(j, "payload_text", p, n);
        else
                json_null(j, "payload_text");
        json_hex(j, "payload_hex", p, n);
}

/* The descriptors of --fd, open while the verb runs. */
typedef struct FdSet {
        int fds[PLX_FDS_MAX];
        size_t n_fds;
} FdSet;

static void fd_set_close(FdSet *s) {
        for (size_t i = 0; i < s->n_fds; i++)
                close(s->fds[i]);
        s->n_fds = 0;
}

/*
 * Open every --fd PATH read-only. O_RDONLY opens directories too (the
 * receiver can use openat() on those); FIFOs would block until a writer
 * appears, which is what opening one means.
 */
static int fd_set_open(Ctl *c, FdSet *s) {
        for (size_t i = 0; i < c->n_fd_paths; i++) {
                int fd = open(c->fd_paths[i], O_RDONLY | O_CLOEXEC | O_NOCTTY);

                if (fd < 0)
                        return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "cannot open %s for --fd: %s", c->fd_paths[i],
                                        strerror(errno));
                s->fds[s->n_fds++] = fd;
        }
        return 0;
}

/*
 * libplexus refuses a payload above what the bus accepts, a limit known only
 * once connected (docs/protocol.md §17.7); say so rather than "Message too long".
 */
static int too_large(Ctl *c, const Payload *payload) {
        return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "the payload (%zu bytes) is larger than the bus accepts "
                        "(%" PRIu64 " bytes)", payload->size, plx_bus_get_max_message_size(c->bus));
}

/* What call and publish do before sending: payload, --fd files, connection. */
static int prepare_send(Ctl *c, int argc, char **argv, int payload_index, Payload *ret_payload, FdSet *fds) {
        int r;

        r = read_payload(c, argc, argv, payload_index, ret_payload);
        if (r != 0)
                return r;
        r = fd_set_open(c, fds);
        if (r != 0)
                return r;
        return ctl_connect(c);
}

/* Whether @p looks like a JSON object: what a typed payload must be. */
static bool looks_like_json_object(const Payload *p) {
        for (size_t i = 0; i < p->size; i++) {
                char ch = ((const char *)p->data)[i];

                if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r')
                        continue;
                return ch == '{';
        }
        return false;
}

/*
 * Encode the JSON of @payload as a @type into @ret_data. An absent
 * payload is the message with every field at its default.
 */
static int encode_typed(Ctl *c, const ProtobufCMessageDescriptor *type, const Payload *payload,
                        uint8_t **ret_data, size_t *ret_size) {
        _cleanup_(freep) char *text = NULL, *error = NULL;
        int r;

        text = strndup(payload->size ? payload->data : "{}", payload->size ?: 2);
        if (!text)
                return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");
        if (strlen(text) != (payload->size ?: 2))
                return ctl_fail(c, CTL_EXIT_USAGE, NULL, "the payload for %s is JSON and cannot hold a NUL byte",
                                type->name);
        r = describe_encode(type, text, ret_data, ret_size, &error);
        if (r == -ENOMEM)
                return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");
        if (r < 0)
                return ctl_fail(c, CTL_EXIT_USAGE, PLX_ERROR_INVALID_ARGS, "the payload is not a valid %s: %s",
                                type->name, error ?: "invalid");
        return 0;
}

/* A received payload: as JSON if @type decodes it, else as text or a hexdump. */
static void print_payload(Ctl *c, const ProtobufCMessageDescriptor *type, const void *p, size_t n) {
        _cleanup_(freep) char *json = NULL;

        json = describe_payload(type, p, n, DESCRIBE_PRETTY | DESCRIBE_DEFAULTS);
        if (json)
                printf("%s\n", json);
        else
                payload_print(stdout, p, n);
}

/* "type" and "payload_json" (canonical JSON) if @type decodes the payload; then the untyped forms. */
static void json_typed_payload(Json *j, const ProtobufCMessageDescriptor *type, const void *p, size_t n) {
        _cleanup_(freep) char *json = NULL;

        json = describe_payload(type, p, n, 0);
        if (json) {
                json_string(j, "type", type->name);
                json_raw(j, "payload_json", json);
        }
        json_payload(j, p, n);
}

/**
 * drive_call() - plexusctl call DEST MEMBER [PAYLOAD]
 * @c:          the context
 * @argc:       2 or 3
 * @argv:       destination (unique id or well-known name), member, payload
 *
 * Return: the exit code.
 */
int drive_call(Ctl *c, int argc, char **argv) {
        _cleanup_(plx_msg_unrefp) plx_msg *reply = NULL;
        _cleanup_(fd_set_close) FdSet fds = {};
        _cleanup_(payload_release) Payload payload = PAYLOAD_NULL;
        _cleanup_(describer_freep) Describer *d = NULL;
        _cleanup_(freep) uint8_t *encoded = NULL;
        const ProtobufCMessageDescriptor *request_type = NULL, *reply_type = NULL;
        const char *destination = argv[0], *member = argv[1];
        const void *data;
        char what[600];
        const void *p;
        size_t n, n_fds, size;
        int r;

        r = prepare_send(c, argc, argv, 2, &payload, &fds);
        if (r != 0)
                return r;
        data = payload.data;
        size = payload.size;

        /*
         * A typed method (the destination's Introspect names its types) takes
         * JSON, and its reply is shown as JSON. --raw sends and prints bytes.
         */
        if (!c->raw) {
                if (describer_new(&d, c->bus, ctl_timeout(c, DESCRIBE_TIMEOUT_USEC)) < 0)
                        return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");
                request_type = describer_request_type(d, destination, member);
                reply_type = describer_reply_type(d, destination, member);
        }
        if (request_type) {
                r = encode_typed(c, request_type, &payload, &encoded, &size);
                if (r != 0)
                        return r;
                data = encoded;
        }

        snprintf(what, sizeof(what), "%s on %s", member, destination);
        r = plx_bus_call_with_fds(c->bus, destination, member, data, size, fds.fds, fds.n_fds,
                                  ctl_timeout(c, PLX_TIMEOUT_DEFAULT), &reply);
        if (r == -EMSGSIZE)
                return too_large(c, &payload);
        if (r < 0)
                return ctl_call_failed(c, what, r, reply);

        p = plx_msg_get_payload(reply, &n);
        n_fds = plx_msg_get_n_fds(reply);
        if (c->raw) {
                fwrite(p, 1, n, stdout);
        } else if (c->json) {
                Json j;

                json_init(&j, stdout);
                json_object_begin(&j, NULL);
                json_string(&j, "sender", plx_msg_get_sender(reply));
                json_typed_payload(&j, reply_type, p, n);
                if (n_fds > 0)
                        json_uint(&j, "n_fds", n_fds);
                json_object_end(&j);
                json_end(&j);
        } else {
                print_payload(c, reply_type, p, n);
                if (n_fds > 0)
                        printf("fds: %zu\n", n_fds);
        }
        return fflush(stdout) == 0 && !ferror(stdout) ? CTL_EXIT_SUCCESS : CTL_EXIT_FAILURE;
}

/*
 * The type of a signal on @topic: --type (looked up in the descriptors of
 * the broker and of every name's owner), else the type the first owner
 * that declares @topic gives it. NULL: send the payload as it is.
 */
static int publish_type(Ctl *c, Describer *d, const char *topic, const ProtobufCMessageDescriptor **ret) {
        if (!c->type) {
                *ret = describer_declared_type(d, topic);
                return 0;
        }
        *ret = describer_find_type(d, c->type);
        if (!*ret)
                return ctl_fail(c, CTL_EXIT_USAGE, NULL, "no client on the bus describes a type %s", c->type);
        return 0;
}

/* Keeps the first ERROR that answers none of our calls: about our signal. */
static int on_error(plx_msg *error, void *userdata) {
        plx_msg **first = userdata;

        if (!*first)
                *first = plx_msg_ref(error);
        return 0;
}

/**
 * drive_publish() - plexusctl publish TOPIC [PAYLOAD]
 * @c:          the context
 * @argc:       1 or 2
 * @argv:       topic, payload
 *
 * Publishing has no answer; to learn whether the broker refused the signal
 * (policy, reserved topic) or subscribers missed it (their queues full),
 * a Ping follows it: the broker handles a client's frames in order, so an
 * ERROR about the signal arrives before the Ping's REPLY.
 *
 * Return: the exit code.
 */
int drive_publish(Ctl *c, int argc, char **argv) {
        _cleanup_(plx_msg_unrefp) plx_msg *error = NULL;
        _cleanup_(fd_set_close) FdSet fds = {};
        _cleanup_(payload_release) Payload payload = PAYLOAD_NULL;
        _cleanup_(describer_freep) Describer *d = NULL;
        _cleanup_(freep) uint8_t *encoded = NULL;
        const ProtobufCMessageDescriptor *type = NULL;
        const char *topic = argv[0];
        const void *data;
        char what[300];
        size_t size;
        int r;

        r = prepare_send(c, argc, argv, 1, &payload, &fds);
        if (r != 0)
                return r;
        data = payload.data;
        size = payload.size;

        /* A JSON object (or any payload with --type) is encoded when the topic's type is known. */
        if (c->type || looks_like_json_object(&payload)) {
                if (describer_new(&d, c->bus, ctl_timeout(c, DESCRIBE_TIMEOUT_USEC)) < 0)
                        return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");
                r = publish_type(c, d, topic, &type);
                if (r != 0)
                        return r;
        }
        if (type) {
                r = encode_typed(c, type, &payload, &encoded, &size);
                if (r != 0)
                        return r;
                data = encoded;
        }
        plx_bus_set_error_handler(c->bus, on_error, &error);

        snprintf(what, sizeof(what), "publishing on %s", topic);
        r = plx_bus_publish_with_fds(c->bus, topic, data, size, fds.fds, fds.n_fds);
        if (r == -EMSGSIZE)
                return too_large(c, &payload);
        if (r == -EINVAL)
                return ctl_fail(c, CTL_EXIT_USAGE, NULL, "\"%s\" is not a topic one may publish on "
                                "(levels separated by '/', no '+' or '#', not under plexus/)", topic);
        if (r < 0)
                return ctl_call_failed(c, what, r, NULL);

        r = plx_bus_call(c->bus, PLX_BROKER, "Ping", NULL, 0, ctl_timeout(c, PLX_TIMEOUT_DEFAULT), NULL);
        if (r < 0)
                return ctl_call_failed(c, what, r, NULL);
        /* The ERROR, if any, was queued while Ping waited: hand it to on_error(). */
        while ((r = plx_bus_process(c->bus)) > 0)
                ;
        if (r < 0)
                return ctl_call_failed(c, what, r, NULL);
        if (error)
                return ctl_call_failed(c, what, -EREMOTEIO, error);

        if (c->json) {
                Json j;

                json_init(&j, stdout);
                json_object_begin(&j, NULL);
                json_string(&j, "topic", topic);
                if (type)
                        json_string(&j, "type", type->name);
                json_uint(&j, "size", size);
                if (fds.n_fds > 0)
                        json_uint(&j, "n_fds", fds.n_fds);
                json_object_end(&j);
                if (json_end(&j) < 0)
                        return CTL_EXIT_FAILURE;
        }
        return CTL_EXIT_SUCCESS;
}

typedef struct Subscriber {
        Ctl *ctl;
        Describer *describer;           /* NULL with --raw */
        uint64_t n_received;
        int error;                      /* writing stdout failed */
} Subscriber;

static int on_signal(plx_msg *signal, void *userdata) {
        Subscriber *s = userdata;
        Ctl *c = s->ctl;
        const char *topic = plx_msg_get_topic(signal), *sender = plx_msg_get_sender(signal);
        size_t n, n_fds = plx_msg_get_n_fds(signal);
        const ProtobufCMessageDescriptor *type = NULL;
        _cleanup_(freep) char *json = NULL;
        char fds[32] = "";
        const void *p;

        if (c->count && s->n_received >= c->count)
                return 0;       /* more than asked for arrived in one read */
        s->n_received++;
        p = plx_msg_get_payload(signal, &n);
        /*
         * The type its sender declares for the topic, else one that another
         * client declares (each is asked once).
         */
        if (s->describer && sender)
                type = describer_signal_type(s->describer, sender, topic) ?:
                       describer_declared_type(s->describer, topic);
        if (!c->json)
                json = describe_payload(type, p, n, DESCRIBE_DEFAULTS);

        if (c->raw) {
                fwrite(p, 1, n, stdout);
        } else if (c->json) {
                Json j;

                json_init(&j, stdout);
                json_object_begin(&j, NULL);
                json_string(&j, "topic", topic);
                json_string(&j, "sender", sender);
                json_uint(&j, "sequence", plx_msg_get_sequence(signal));
                json_typed_payload(&j, type, p, n);
                if (n_fds > 0)
                        json_uint(&j, "n_fds", n_fds);
                json_object_end(&j);
                fputc('\n', stdout);
        } else {
                if (n_fds > 0)
                        snprintf(fds, sizeof(fds), " (fds: %zu)", n_fds);
                if (json) {
                        printf("%s %s%s %s\n", topic, sender, fds, json);
                } else if (n == 0) {
                        printf("%s %s%s\n", topic, sender, fds);
                } else if (utf8_is_text(p, n)) {
                        printf("%s %s%s ", topic, sender, fds);
                        payload_print(stdout, p, n);
                } else {
                        printf("%s %s%s (%zu bytes)\n", topic, sender, fds, n);
                        payload_hexdump(stdout, p, n);
                }
        }
        /* A line a reader of the pipe can act on now, not when the buffer fills. */
        if (fflush(stdout) != 0 || ferror(stdout))
                s->error = -EIO;
        return 0;
}

/* Until --count signals arrived, SIGINT or SIGTERM, or an error. */
static int subscriber_run(Subscriber *s, int signal_fd) {
        plx_bus *bus = s->ctl->bus;

        while (!s->error && !(s->ctl->count && s->n_received >= s->ctl->count)) {
                int r;

                r = plx_bus_process(bus);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;
                r = ctl_wait(bus, signal_fd);
                if (r < 0)
                        return r;
                if (r > 0)
                        return 0;
        }
        return s->error;
}

/**
 * drive_subscribe() - plexusctl subscribe PATTERN
 * @c:          the context; --count ends it after that many signals
 * @argc:       1
 * @argv:       the pattern
 *
 * Prints every matching signal until --count signals arrived, or SIGINT
 * or SIGTERM, which end it with success.
 *
 * Return: the exit code.
 */
int drive_subscribe(Ctl *c, int argc, char **argv) {
        _cleanup_(closep) int signal_fd = -1;
        _cleanup_(describer_freep) Describer *d = NULL;
        Subscriber s = { .ctl = c };
        int r;

        /* Before connecting, so that a signal at any point ends the loop cleanly. */
        r = ctl_signal_fd(c, &signal_fd);
        if (r != 0)
                return r;

        r = ctl_connect(c);
        if (r != 0)
                return r;
        if (!c->raw) {
                if (describer_new(&d, c->bus, DESCRIBE_TIMEOUT_USEC) < 0)
                        return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");
                s.describer = d;
        }
        r = plx_bus_subscribe(c->bus, NULL, argv[0], on_signal, &s);
        if (r == -EINVAL)
                return ctl_fail(c, CTL_EXIT_USAGE, NULL, "\"%s\" is not a topic pattern "
                                "(levels separated by '/', '+' for one level, a final '#' for any)", argv[0]);
        if (r == -EREMOTEIO)
                return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "the broker refused to subscribe to %s "
                                "(not allowed, or too many subscriptions)", argv[0]);
        if (r < 0)
                return ctl_call_failed(c, "Subscribe", r, NULL);

        r = subscriber_run(&s, signal_fd);
        if (r == -EIO)
                return CTL_EXIT_FAILURE;        /* stdout is gone: nobody to tell */
        if (r < 0)
                return ctl_call_failed(c, "receiving", r, NULL);
        return CTL_EXIT_SUCCESS;
}

/**
 * drive_wait() - plexusctl wait NAME: until NAME has an owner
 * @c:          the context; --timeout bounds the wait (default: none)
 * @argc:       1
 * @argv:       a well-known name
 *
 * Return: the exit code; CTL_EXIT_TIMEOUT if the name did not appear in time.
 */
int drive_wait(Ctl *c, int argc, char **argv) {
        _cleanup_(freep) char *owner = NULL;
        const char *name = argv[0];
        char what[300], d[64];
        uint64_t timeout = ctl_timeout(c, CTL_TIMEOUT_INFINITY);
        int r;

        if (!bus_name_is_well_known(name))
                return ctl_fail(c, CTL_EXIT_USAGE, NULL, "\"%s\" is not a well-known name", name);
        r = ctl_connect(c);
        if (r != 0)
                return r;

        r = plx_bus_wait_for_name(c->bus, name, timeout, &owner);
        if (r == -ETIMEDOUT)
                return ctl_fail(c, CTL_EXIT_TIMEOUT, NULL, "%s did not appear within %s", name,
                                ctl_format_duration(d, sizeof(d), timeout));
        snprintf(what, sizeof(what), "waiting for %s", name);
        if (r < 0)
                return ctl_call_failed(c, what, r, NULL);

        if (c->json) {
                Json j;

                json_init(&j, stdout);
                json_object_begin(&j, NULL);
                json_string(&j, "name", name);
                json_string(&j, "owner", owner);
                json_object_end(&j);
                return json_end(&j) < 0 ? CTL_EXIT_FAILURE : CTL_EXIT_SUCCESS;
        }
        printf("%s\n", owner);
        return fflush(stdout) == 0 ? CTL_EXIT_SUCCESS : CTL_EXIT_FAILURE;
}
