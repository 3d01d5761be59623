/*
 * Verbs that watch every frame on the bus: monitor and capture.
 *
 * Both make the connection a monitor (plx_bus_become_monitor(), with the
 * filters of --topic, --name and --member) and then handle each frame
 * libplexus hands over: monitor prints it, as a line or a JSON object,
 * capture appends it to a pcap file (pcap.h). A monitor only listens:
 * libplexus answers none of the CALLs it sees, so watching changes nothing
 * for anyone else.
 *
 * Missed frames. The broker never waits for a monitor; when our queue is
 * full it drops the copy, and we learn of it twice: as a gap in the
 * delivery counter of the next frame that gets through (the same gaps
 * plx_bus_get_n_missed() sums), and from the broker's SIGNAL on
 * PLX_TOPIC_MONITOR_MISSED once our queue has drained. Gaps are known at
 * the right place in the stream, but only from the first frame we see on;
 * the broker's count covers drops before it too. Both count the same
 * copies, so what is reported is the larger of the two running totals,
 * each time it grows: "missed N frames" (monitor), or the count in
 * capture's summary. The broker's signal is a notice, not a frame: it is
 * neither printed as one, nor written to the capture, nor counted by
 * --count.
 *
 * Capture records. libplexus hands out decoded messages, not datagrams, so
 * each record is re-encoded the way the broker encodes a frame: the header
 * packed by protobuf-c from the decoded fields without `delivery`, then
 * `delivery` appended as its own field (docs/protocol.md §2.4), then the
 * payload as received. That gives back the bytes the broker sent except
 * where libplexus keeps less than the wire had: header fields that mean
 * nothing for the frame's kind (docs/protocol.md §3.1) and unknown fields
 * are left out, and `n_fds` is the number of descriptors that came with
 * the frame, 0 for every copy (copies carry none, and libplexus does not
 * keep the count the original had).
 *
 * Large frames (docs/protocol.md §17) reach a monitor as their descriptor:
 * the header with large_size, large_addr and transfer_id, and no payload,
 * memfd or pidfd. monitor prints the descriptor; capture records it as it
 * came, header only.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "describe.h"
#include "frame.h"
#include "json.h"
#include "pcap.h"
#include "plexus.pb-c.h"
#include "utf8.h"

/* Text payloads longer than this many bytes are cut in monitor's lines. */
#define SUMMARY_TEXT_MAX 64u
/* Binary payloads show this many bytes in hex. */
#define SUMMARY_HEX_MAX 16u
/* While frames keep coming, look for SIGINT and SIGTERM every this many. */
#define SIGNAL_CHECK_EVERY 64u
/* Decoded payloads longer than this many bytes of JSON are cut in monitor's lines. */
#define SUMMARY_JSON_MAX 240u
/* Calls remembered to type their answers: a ring, the oldest forgotten first. */
#define CALLS_MAX 1024u

/* A CALL seen, for the type of its answer. */
typedef struct SeenCall {
        char caller[FRAME_NAME_MAX + 1];
        char destination[FRAME_NAME_MAX + 1];
        char member[FRAME_NAME_MAX + 1];
        uint64_t serial;
} SeenCall;

/*
 * Decoding for monitor: a second connection asks Introspect (a monitor
 * may not call), and the calls seen tell which method an answer is for.
 * Frames to and from that connection are not shown: they are ours.
 */
typedef struct Decoder {
        plx_bus *bus;
        Describer *describer;
        SeenCall *calls;                /* CALLS_MAX */
        size_t next_call;
} Decoder;

typedef struct Watch {
        Ctl *ctl;
        FILE *out;                      /* stdout, or the capture file */
        bool capture;
        const char *file;               /* capture: for messages */

        uint64_t n_frames;              /* printed or written */
        uint64_t last_delivery;         /* of the last frame seen; 0 before the first */
        uint64_t n_gap_missed;          /* sum of the gaps in delivery */
        uint64_t n_broker_missed;       /* sum of the broker's MonitorMissed counts */
        uint64_t n_missed;              /* reported so far: the larger of the two */
        int error;                      /* writing the output failed */
        Decoder decoder;                /* monitor without --raw: bus set once started */
} Watch;

static void decoder_deinit(Decoder *d) {
        d->describer = describer_free(d->describer);
        d->bus = plx_bus_free(d->bus);
        free(d->calls);
        d->calls = NULL;
}

static void watch_deinit(Watch *w) {
        decoder_deinit(&w->decoder);
}

static int decoder_init(Decoder *d, Ctl *c) {
        int r;

        d->calls = calloc(CALLS_MAX, sizeof(*d->calls));
        if (!d->calls)
                return -ENOMEM;
        r = plx_bus_new(&d->bus, c->address, "plexusctl monitor (introspection)");
        if (r < 0)
                return r;
        return describer_new(&d->describer, d->bus, DESCRIBE_TIMEOUT_USEC);
}

static bool decoder_own(const Decoder *d, plx_msg *m) {
        const char *self = d->bus ? plx_bus_get_unique_id(d->bus) : NULL;

        return self && ((plx_msg_get_sender(m) && strcmp(plx_msg_get_sender(m), self) == 0) ||
                        (plx_msg_get_destination(m) && strcmp(plx_msg_get_destination(m), self) == 0));
}

static void copy_name(char *dst, const char *src) {
        snprintf(dst, FRAME_NAME_MAX + 1, "%s", src ?: "");
}

/* The type of @m's payload, if its sender or callee describes it; NULL if unknown. */
static const ProtobufCMessageDescriptor *decoder_type(Decoder *d, plx_msg *m) {
        const char *sender = plx_msg_get_sender(m), *destination = plx_msg_get_destination(m);

        if (!d->describer || !sender || plx_msg_get_large_size(m))
                return NULL;

        switch (plx_msg_get_kind(m)) {
        case PLX_MSG_CALL: {
                SeenCall *call = &d->calls[d->next_call++ % CALLS_MAX];

                copy_name(call->caller, sender);
                copy_name(call->destination, destination);
                copy_name(call->member, plx_msg_get_member(m));
                call->serial = plx_msg_get_serial(m);
                return destination ? describer_request_type(d->describer, destination, plx_msg_get_member(m)) : NULL;
        }
        case PLX_MSG_REPLY:
                for (size_t i = 0; i < CALLS_MAX; i++) {
                        SeenCall *call = &d->calls[i];

                        if (call->serial && call->serial == plx_msg_get_reply_serial(m) && destination &&
                            strcmp(call->caller, destination) == 0)
                                return describer_reply_type(d->describer, call->destination, call->member);
                }
                return NULL;
        case PLX_MSG_SIGNAL:
                return describer_signal_type(d->describer, sender, plx_msg_get_topic(m)) ?:
                       describer_declared_type(d->describer, plx_msg_get_topic(m));
        default:
                return NULL;
        }
}

static uint64_t realtime_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static const char *kind_name(int kind) {
        switch (kind) {
        case PLX_MSG_CALL:
                return "call";
        case PLX_MSG_REPLY:
                return "reply";
        case PLX_MSG_ERROR:
                return "error";
        case PLX_MSG_SIGNAL:
                return "signal";
        default:
                return "unknown";
        }
}

static bool is_missed_notice(plx_msg *m) {
        const char *sender = plx_msg_get_sender(m), *topic = plx_msg_get_topic(m);

        return plx_msg_get_kind(m) == PLX_MSG_SIGNAL && sender && strcmp(sender, PLX_BROKER) == 0 &&
               topic && strcmp(topic, PLX_TOPIC_MONITOR_MISSED) == 0;
}

/* The n_missed of a MonitorMissed payload; 0 if it cannot be read. */
static uint64_t missed_notice_count(plx_msg *m) {
        Plexus__MonitorMissed *ev;
        const void *p;
        uint64_t n;
        size_t size;

        p = plx_msg_get_payload(m, &size);
        ev = plexus__monitor_missed__unpack(NULL, size, p);
        if (!ev)
                return 0;
        n = ev->n_missed;
        plexus__monitor_missed__free_unpacked(ev, NULL);
        return n;
}

/* Tell what was missed since the last report, if anything. */
static void report_missed(Watch *w) {
        uint64_t total = MAX(w->n_gap_missed, w->n_broker_missed), n;

        if (total <= w->n_missed)
                return;
        n = total - w->n_missed;
        w->n_missed = total;
        if (w->capture)
                return;         /* counted in the summary */
        if (w->ctl->json) {
                Json j;

                json_init(&j, w->out);
                json_object_begin(&j, NULL);
                json_uint(&j, "missed", n);
                json_object_end(&j);
                fputc('\n', w->out);
        } else {
                fprintf(w->out, "missed %" PRIu64 " frame%s\n", n, n == 1 ? "" : "s");
        }
}

/* A name from the bus, safe to print: control characters and bad UTF-8 as '?'. */
static const char *safe(char *buf, const char *s) {
        size_t n = strnlen(s, FRAME_NAME_MAX);

        utf8_sanitize(buf, s, n);
        return buf;
}

/* The payload in a few words: quoted text, cut; or the length and the first bytes in hex. */
static void print_summary(FILE *f, const uint8_t *p, size_t n) {
        if (n == 0)
                return;
        fputc(' ', f);
        if (utf8_is_text(p, n)) {
                size_t k = MIN(n, (size_t)SUMMARY_TEXT_MAX);

                /* Never cut a UTF-8 sequence in two. */
                while (k < n && k > 0 && (p[k] & 0xc0) == 0x80)
                        k--;
                json_escape(f, p, k);
                if (k < n)
                        fprintf(f, "... (%zu bytes)", n);
                return;
        }
        fprintf(f, "(%zu bytes)", n);
        for (size_t i = 0; i < MIN(n, (size_t)SUMMARY_HEX_MAX); i++)
                fprintf(f, " %02x", p[i]);
        if (n > SUMMARY_HEX_MAX)
                fputs(" ...", f);
}

/* Decoded as @type: its JSON on one line, cut; else as print_summary() shows it. */
static void print_typed_summary(FILE *f, const ProtobufCMessageDescriptor *type, const uint8_t *p, size_t n) {
        _cleanup_(freep) char *json = NULL;
        size_t len;

        json = describe_payload(type, p, n, 0);
        if (!json) {
                print_summary(f, p, n);
                return;
        }
        len = strlen(json);
        if (len <= SUMMARY_JSON_MAX) {
                fprintf(f, " %s", json);
                return;
        }
        /* JSON escapes everything below 0x80 it must; cut outside a UTF-8 sequence. */
        len = SUMMARY_JSON_MAX;
        while (len > 0 && ((uint8_t)json[len] & 0xc0) == 0x80)
                len--;
        fprintf(f, " %.*s... (%zu bytes)", (int)len, json, n);
}

/* A large frame's path (docs/protocol.md §17), NULL for an ordinary frame. */
static const char *large_path(plx_msg *m) {
        if (!plx_msg_get_large_size(m))
                return NULL;
        return plx_msg_get_large_addr(m) ? "process_vm" : "memfd";
}

/*
 * SEQUENCE KIND SENDER -> DESTINATION NAME serial=.. [reply_serial=..] [timeout=..] [no-reply] [fds: N]
 * [large=SIZE path=memfd|process_vm [transfer=ID]] PAYLOAD
 *
 * A large frame's copy is its descriptor only: the broker sends a monitor
 * neither the bytes nor the memfd or pidfd they are reached by.
 */
static void print_frame(FILE *f, plx_msg *m, const ProtobufCMessageDescriptor *type) {
        char a[FRAME_NAME_MAX + 1], b[FRAME_NAME_MAX + 1], c[FRAME_NAME_MAX + 1];
        const char *destination = plx_msg_get_destination(m) ?: "";
        int kind = plx_msg_get_kind(m);
        const char *name = kind == PLX_MSG_CALL ? plx_msg_get_member(m) :
                           kind == PLX_MSG_SIGNAL ? plx_msg_get_topic(m) :
                           kind == PLX_MSG_ERROR ? plx_msg_get_error_name(m) : NULL;
        size_t n;
        const void *p = plx_msg_get_payload(m, &n);

        fprintf(f, "%" PRIu64 " %s %s -> %s", plx_msg_get_sequence(m), kind_name(kind),
                safe(a, plx_msg_get_sender(m) ?: ""), *destination ? safe(b, destination) : "*");
        if (name)
                fprintf(f, " %s", safe(c, name));
        fprintf(f, " serial=%" PRIu64, plx_msg_get_serial(m));
        if (kind == PLX_MSG_REPLY || kind == PLX_MSG_ERROR)
                fprintf(f, " reply_serial=%" PRIu64, plx_msg_get_reply_serial(m));
        if (kind == PLX_MSG_CALL && plx_msg_get_timeout_ms(m))
                fprintf(f, " timeout=%" PRIu32 "ms", plx_msg_get_timeout_ms(m));
        if (kind == PLX_MSG_CALL && plx_msg_get_no_reply(m) > 0)
                fputs(" no-reply", f);
        if (plx_msg_get_n_fds(m) > 0)
                fprintf(f, " fds: %zu", plx_msg_get_n_fds(m));
        if (large_path(m)) {
                fprintf(f, " large=%" PRIu64 " path=%s", plx_msg_get_large_size(m), large_path(m));
                if (plx_msg_get_large_addr(m))
                        fprintf(f, " transfer=%" PRIu64, plx_msg_get_transfer_id(m));
        }
        print_typed_summary(f, type, p, n);
        fputc('\n', f);
}

static void json_string_or_null(Json *j, const char *key, const char *s) {
        if (s && *s)
                json_string(j, key, s);
        else
                json_null(j, key);
}

/* Every header field, and the payload as subscribe gives it. */
static void json_frame(FILE *f, plx_msg *m, const ProtobufCMessageDescriptor *type) {
        _cleanup_(freep) char *json = NULL;
        int kind = plx_msg_get_kind(m);
        size_t n;
        const void *p = plx_msg_get_payload(m, &n);
        Json j;

        json_init(&j, f);
        json_object_begin(&j, NULL);
        json_uint(&j, "sequence", plx_msg_get_sequence(m));
        json_string(&j, "kind", kind_name(kind));
        json_uint(&j, "serial", plx_msg_get_serial(m));
        json_uint(&j, "reply_serial", plx_msg_get_reply_serial(m));
        json_string_or_null(&j, "sender", plx_msg_get_sender(m));
        json_string_or_null(&j, "destination", plx_msg_get_destination(m));
        json_string_or_null(&j, "member", plx_msg_get_member(m));
        json_string_or_null(&j, "topic", plx_msg_get_topic(m));
        json_string_or_null(&j, "error_name", plx_msg_get_error_name(m));
        json_bool(&j, "no_reply", plx_msg_get_no_reply(m) > 0);
        json_uint(&j, "timeout_ms", plx_msg_get_timeout_ms(m));
        json_uint(&j, "delivery", plx_msg_get_delivery(m));
        json_uint(&j, "sender_uid", plx_msg_get_sender_uid(m));
        json_uint(&j, "sender_gid", plx_msg_get_sender_gid(m));
        json_uint(&j, "sender_pid", (uint64_t)plx_msg_get_sender_pid(m));
        json_uint(&j, "n_fds", plx_msg_get_n_fds(m));
        json_uint(&j, "large_size", plx_msg_get_large_size(m));
        json_string_or_null(&j, "large_path", large_path(m));
        json_uint(&j, "large_addr", plx_msg_get_large_addr(m));
        json_uint(&j, "transfer_id", plx_msg_get_transfer_id(m));
        json_uint(&j, "size", n);
        json = describe_payload(type, p, n, 0);
        if (json) {
                json_string(&j, "type", type->name);
                json_raw(&j, "payload_json", json);
        }
        if (utf8_is_valid(p, n))
                json_bytes(&j, "payload_text", p, n);
        else
                json_null(&j, "payload_text");
        json_hex(&j, "payload_hex", p, n);
        json_object_end(&j);
        fputc('\n', f);
}

/*
 * The frame's bytes as the broker sent them, as far as libplexus lets us
 * know them (see the top of this file): prefix and header into @buf.
 *
 * Return: the length of prefix and header, 0 if they do not fit.
 */
static size_t frame_head_encode(plx_msg *m, uint8_t *buf, size_t size) {
        Plexus__Header h = PLEXUS__HEADER__INIT;
        int kind = plx_msg_get_kind(m);
        size_t hlen;

        h.kind = (Plexus__Kind)kind;
        h.serial = plx_msg_get_serial(m);
        h.reply_serial = plx_msg_get_reply_serial(m);
        h.destination = (char *)(plx_msg_get_destination(m) ?: "");
        h.sender = (char *)(plx_msg_get_sender(m) ?: "");
        h.member = (char *)(kind == PLX_MSG_CALL ? plx_msg_get_member(m) :
                            kind == PLX_MSG_SIGNAL ? plx_msg_get_topic(m) : "");
        h.flags = plx_msg_get_no_reply(m) > 0 ? FRAME_FLAG_NO_REPLY : 0;
        h.error_name = (char *)(plx_msg_get_error_name(m) ?: "");
        h.timeout_ms = plx_msg_get_timeout_ms(m);
        h.sequence = plx_msg_get_sequence(m);
        h.sender_uid = (uint32_t)plx_msg_get_sender_uid(m);
        h.sender_pid = (uint32_t)plx_msg_get_sender_pid(m);
        h.n_fds = (uint32_t)plx_msg_get_n_fds(m);
        h.sender_gid = (uint32_t)plx_msg_get_sender_gid(m);
        h.large_size = plx_msg_get_large_size(m);
        h.large_addr = plx_msg_get_large_addr(m);
        h.transfer_id = plx_msg_get_transfer_id(m);

        /* Room for the delivery field after the header: a tag and a varint of at most 10 bytes. */
        if (size < FRAME_PREFIX_SIZE + 16)
                return 0;
        hlen = frame_header_pack(&h, buf + FRAME_PREFIX_SIZE, size - FRAME_PREFIX_SIZE - 16);
        if (hlen == 0)
                return 0;
        if (plx_msg_get_delivery(m))
                hlen += frame_varint_field(buf + FRAME_PREFIX_SIZE + hlen, FRAME_FIELD_DELIVERY,
                                           plx_msg_get_delivery(m));
        frame_prefix(buf, (uint32_t)hlen);
        return FRAME_PREFIX_SIZE + hlen;
}

static int capture_frame(Watch *w, plx_msg *m) {
        uint8_t head[FRAME_PREFIX_SIZE + FRAME_HEADER_MAX + 16];
        PcapChunk chunks[2];
        size_t n;

        chunks[0] = (PcapChunk) { .data = head, .size = frame_head_encode(m, head, sizeof(head)) };
        /* A header the broker managed to send fits FRAME_HEADER_MAX: this cannot happen. */
        if (chunks[0].size == 0)
                return -EBADMSG;
        chunks[1].data = plx_msg_get_payload(m, &n);
        chunks[1].size = n;
        return pcap_write_record(w->out, PCAP_SNAPLEN, realtime_usec(), chunks, ELEMENTSOF(chunks));
}

static int on_frame(plx_msg *m, void *userdata) {
        Watch *w = userdata;
        Ctl *c = w->ctl;
        uint64_t delivery = plx_msg_get_delivery(m);
        int r;

        if (w->error || (c->count && w->n_frames >= c->count))
                return 0;       /* more than asked for arrived in one read */

        if (delivery) {
                if (w->last_delivery && delivery > w->last_delivery + 1)
                        w->n_gap_missed += delivery - w->last_delivery - 1;
                w->last_delivery = delivery;
        }
        if (is_missed_notice(m)) {
                w->n_broker_missed += missed_notice_count(m);
                report_missed(w);
                return 0;
        }
        report_missed(w);
        if (decoder_own(&w->decoder, m))
                return 0;

        w->n_frames++;
        if (w->capture) {
                r = capture_frame(w, m);
                if (r < 0)
                        w->error = r;
        } else if (c->json) {
                json_frame(w->out, m, decoder_type(&w->decoder, m));
        } else {
                print_frame(w->out, m, decoder_type(&w->decoder, m));
        }
        if (ferror(w->out))
                w->error = -EIO;
        return 0;
}

static bool signal_pending(int signal_fd) {
        struct pollfd p = { .fd = signal_fd, .events = POLLIN };

        return poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

/*
 * Until --count frames, SIGINT or SIGTERM, or an error. Output is flushed
 * whenever the bus is idle, so a reader sees each frame soon, without a
 * write per frame while they pour in.
 */
static int watch_run(Watch *w, int signal_fd) {
        plx_bus *bus = w->ctl->bus;
        unsigned int busy = 0;

        while (!w->error && !(w->ctl->count && w->n_frames >= w->ctl->count)) {
                int r;

                r = plx_bus_process(bus);
                if (r < 0)
                        return r;
                if (r > 0) {
                        if (++busy % SIGNAL_CHECK_EVERY == 0 && signal_pending(signal_fd))
                                return 0;
                        continue;
                }

                if (fflush(w->out) != 0)
                        return -EIO;
                r = ctl_wait(bus, signal_fd);
                if (r < 0)
                        return r;
                if (r > 0)
                        return 0;
        }
        return w->error;
}

/* Become a monitor with the filters of the command line. */
static int watch_become_monitor(Watch *w) {
        Ctl *c = w->ctl;
        int r;

        r = plx_bus_become_monitor(c->bus, c->topics, c->names, c->members, on_frame, w);
        if (r == -EACCES)
                return ctl_fail(c, CTL_EXIT_FAILURE, PLX_ERROR_ACCESS_DENIED,
                                "the bus's policy does not allow this user to monitor it");
        if (r == -EINVAL)
                return ctl_fail(c, CTL_EXIT_USAGE, PLX_ERROR_INVALID_ARGS, "the broker refused the filters");
        if (r < 0)
                return ctl_call_failed(c, "BecomeMonitor", r, NULL);
        return 0;
}

/* SIGINT and SIGTERM, the bus, a monitor: what both verbs start with. */
static int watch_start(Watch *w, int *ret_signal_fd) {
        int r;

        r = ctl_signal_fd(w->ctl, ret_signal_fd);
        if (r != 0)
                return r;
        r = ctl_connect(w->ctl);
        if (r != 0)
                return r;
        return watch_become_monitor(w);
}

/**
 * watch_monitor() - plexusctl monitor: print every frame routed on the bus
 * @c:          the context; filters, --count, --json
 * @argc:       0
 * @argv:       nothing
 *
 * Runs until --count frames were shown, or SIGINT or SIGTERM, which end it
 * with success.
 *
 * Return: the exit code.
 */
int watch_monitor(Ctl *c, int argc, char **argv) {
        _cleanup_(closep) int signal_fd = -1;
        _cleanup_(watch_deinit) Watch w = { .ctl = c, .out = stdout };
        int r;

        r = watch_start(&w, &signal_fd);
        if (r != 0)
                return r;
        /* Without a second connection payloads are shown undecoded: nothing fails for it. */
        if (!c->raw && decoder_init(&w.decoder, c) < 0)
                decoder_deinit(&w.decoder);

        r = watch_run(&w, signal_fd);
        if (fflush(stdout) != 0 && r >= 0)
                r = -EIO;
        if (r == -EIO)
                return CTL_EXIT_FAILURE;        /* stdout is gone: nobody to tell */
        if (r < 0)
                return ctl_call_failed(c, "receiving", r, NULL);
        return CTL_EXIT_SUCCESS;
}

/* Create (mode 0600: the frames are everyone's traffic) or truncate @path; "-" is stdout. */
static int capture_open(Watch *w, const char *path) {
        int fd;

        if (strcmp(path, "-") == 0) {
                w->out = stdout;
        } else {
                fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0600);
                if (fd < 0)
                        return ctl_fail(w->ctl, CTL_EXIT_FAILURE, NULL, "cannot create %s: %s", path, strerror(errno));
                w->out = fdopen(fd, "w");
                if (!w->out) {
                        int e = errno;

                        close(fd);
                        return ctl_fail(w->ctl, CTL_EXIT_FAILURE, NULL, "cannot create %s: %s", path, strerror(e));
                }
        }
        if (pcap_write_header(w->out, PCAP_SNAPLEN, PCAP_LINKTYPE_USER0) < 0)
                return ctl_fail(w->ctl, CTL_EXIT_FAILURE, NULL, "writing %s failed", w->file);
        return 0;
}

static void capture_summary(Watch *w, FILE *f) {
        if (w->ctl->json) {
                Json j;

                json_init(&j, f);
                json_object_begin(&j, NULL);
                json_string(&j, "file", w->file);
                json_uint(&j, "frames", w->n_frames);
                json_uint(&j, "missed", w->n_missed);
                json_object_end(&j);
                json_end(&j);
                return;
        }
        fprintf(f, "captured %" PRIu64 " frame%s to %s", w->n_frames, w->n_frames == 1 ? "" : "s", w->file);
        if (w->n_missed > 0)
                fprintf(f, ", missed %" PRIu64 " frame%s", w->n_missed, w->n_missed == 1 ? "" : "s");
        fputc('\n', f);
}

/**
 * watch_capture() - plexusctl capture FILE: write every frame to a pcap file
 * @c:          the context; filters, --count, --json (for the summary)
 * @argc:       1
 * @argv:       the file; "-" for standard output
 *
 * FILE is opened once the connection is a monitor, so that no bus (or no
 * permission to monitor it) leaves no file behind; frames that arrive
 * meanwhile wait in the socket. At the end the summary says how many
 * frames were written, and missed: on stdout, or on stderr when the
 * capture itself goes to stdout.
 *
 * Return: the exit code.
 */
int watch_capture(Ctl *c, int argc, char **argv) {
        _cleanup_(closep) int signal_fd = -1;
        bool to_stdout = strcmp(argv[0], "-") == 0;
        Watch w = { .ctl = c, .capture = true, .file = to_stdout ? "standard output" : argv[0] };
        int r, k;

        if (to_stdout && isatty(STDOUT_FILENO))
                return ctl_fail(c, CTL_EXIT_USAGE, NULL, "not writing a capture to a terminal: give a FILE, "
                                "or redirect standard output");
        if (to_stdout && c->json)
                return ctl_fail(c, CTL_EXIT_USAGE, NULL, "--json needs standard output, which the capture takes");

        r = watch_start(&w, &signal_fd);
        if (r != 0)
                return r;
        r = capture_open(&w, argv[0]);
        if (r != 0) {
                if (w.out && w.out != stdout)
                        fclose(w.out);
                return r;
        }

        r = watch_run(&w, signal_fd);
        k = w.out == stdout ? fflush(w.out) : fclose(w.out);
        if (k != 0 && r >= 0)
                r = -EIO;
        if (r == -EIO || r == -EBADMSG)
                return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "writing %s failed", w.file);

        /* Also after losing the bus: what was captured is in the file. */
        capture_summary(&w, to_stdout ? stderr : stdout);
        if (r < 0)
                return ctl_call_failed(c, "receiving", r, NULL);
        return fflush(stdout) == 0 ? CTL_EXIT_SUCCESS : CTL_EXIT_FAILURE;
}
