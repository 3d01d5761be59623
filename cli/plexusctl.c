/*
 * plexusctl: inspect and drive a Plexus bus from the command line.
 *
 *     plexusctl [OPTIONS] VERB [ARGUMENTS]
 *
 * This file is only the command line: options, the verb table, help texts
 * and the terminal's width. Options may come before or after the verb (GNU
 * getopt permutes them); "--" ends them, for payloads that start with '-'.
 * Each verb states which options beyond the common ones (--address,
 * --json, --timeout, --help) it takes; any other is a usage error, as is a
 * wrong number of arguments. The exit codes are in ctl.h, and in the help
 * text and plexusctl(1), which scripts rely on.
 */

#include <errno.h>
#include <getopt.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "build-config.h"
#include "bus-name.h"
#include "ctl.h"
#include "frame.h"
#include "topic.h"

enum {
        OPT_RAW = 1u << 0,
        OPT_COUNT = 1u << 1,
        OPT_LEGEND = 1u << 2,
        OPT_FILTER = 1u << 3,           /* --topic, --name, --member */
        OPT_FD = 1u << 4,
        OPT_TYPE = 1u << 5,
};

typedef struct Verb {
        const char *name;
        int min_args;
        int max_args;
        unsigned int options;           /* OPT_* it takes beyond the common ones */
        int (*run)(Ctl *c, int argc, char **argv);
        const char *synopsis;
        const char *summary;
        const char *help;
} Verb;

static const Verb verbs[] = {
        {
                "status", 0, 0, 0, inspect_status, "",
                "Show the broker, its counts and this connection",
                "Shows the bus address, the broker's version and uptime, how many clients,\n"
                "names, subscriptions, pending calls and monitors it has, and the unique id\n"
                "this connection got.\n",
        },
        {
                "list", 0, 0, OPT_LEGEND, inspect_list, "",
                "List well-known names with owner and queue",
                "Lists every well-known name, sorted, with the unique id, pid and process\n"
                "name of its primary owner and the unique ids waiting in its queue.\n",
        },
        {
                "clients", 0, 0, OPT_LEGEND, inspect_clients, "",
                "List the clients connected to the bus",
                "Lists every connection in the order they connected: unique id, pid, user,\n"
                "process name, names owned, subscriptions, frames waiting in its queue,\n"
                "frames received from it (IN) and sent to it (OUT), how long it has been\n"
                "connected, and its description. --json adds the command line, group,\n"
                "names waited for, the patterns, byte counts and more.\n",
        },
        {
                "client", 1, 1, 0, inspect_client, "ID",
                "Show one client in detail",
                "Shows the client with unique id ID (\":N\"), or the primary owner of the\n"
                "well-known name ID. The command line is shown only to root, to the user\n"
                "the bus runs as, and to the client's own user.\n"
                "Exit status 3 if there is no such client.\n",
        },
        {
                "stats", 0, 0, 0, inspect_stats, "",
                "Show the broker's counters",
                "Shows frames routed per kind, payload bytes, errors the broker sent,\n"
                "frames dropped or refused by reason, and current and peak counts.\n",
        },
        {
                "introspect", 1, 1, OPT_LEGEND, interface_introspect, "NAME",
                "Show the methods, topics and types a client offers",
                "Asks NAME (a unique id, a well-known name, or plexus for the broker)\n"
                "to describe itself and lists its methods with their request and reply\n"
                "types, the topics it publishes on with their types, and then every\n"
                "message and enum type those use, field by field, as a .proto would\n"
                "write them. Untyped methods show - for their types. Exit status 1 if\n"
                "NAME does not describe itself, 3 if it is not on the bus.\n",
        },
        {
                "tree", 0, 0, 0, interface_tree, "",
                "List every well-known name with its methods",
                "Shows the broker and every well-known name, with its owner's unique id\n"
                "and library, and the methods the owner answers with their types. Each\n"
                "owner is asked once; one that does not answer within --timeout\n"
                "(default 2s) is shown without methods.\n",
        },
        {
                "monitor", 0, 0, OPT_COUNT | OPT_FILTER | OPT_RAW, watch_monitor, "",
                "Show every frame routed on the bus",
                "Becomes a monitor of the bus (its policy must allow that) and prints a\n"
                "line per frame the broker routes: sequence number, kind, sender ->\n"
                "destination (* for a signal), member, topic or error name, serials, and\n"
                "the payload in short. --topic, --name and --member select frames (any\n"
                "of them may match); without them every frame is shown. A monitor only\n"
                "listens: nothing it sees is answered or changed. Frames the broker had\n"
                "to drop because this monitor fell behind are reported in their place\n"
                "as \"missed N frames\". Runs until SIGINT or SIGTERM (exit status 0), or\n"
                "until --count frames. With --json, one JSON object per line. Payloads\n"
                "of typed methods and declared topics are shown as JSON: a second\n"
                "connection asks each client once what it offers (introspect); --raw\n"
                "turns that off.\n",
        },
        {
                "capture", 1, 1, OPT_COUNT | OPT_FILTER, watch_capture, "FILE",
                "Write every frame routed on the bus to a pcap file",
                "Monitors the bus as monitor does and writes each frame to FILE (- for\n"
                "standard output) in the classic pcap format with link type USER0 (147):\n"
                "one record per frame, its bytes in the wire format, timestamped when\n"
                "received. tshark and Wireshark read it. FILE is created with mode 0600.\n"
                "Runs until SIGINT or SIGTERM, or until --count frames, then prints how\n"
                "many frames it captured and missed (on stderr if FILE is -).\n",
        },
        {
                "call", 2, 3, OPT_RAW | OPT_FD, drive_call, "DEST MEMBER [PAYLOAD]",
                "Call a method and show the reply",
                "Calls MEMBER on DEST (a unique id, a well-known name, or plexus for the\n"
                "broker) and prints the reply's payload. If DEST describes MEMBER as a\n"
                "typed method (see introspect), PAYLOAD is JSON, encoded into the\n"
                "request's message type after proto3's JSON mapping (none: every field\n"
                "at its default), and the reply is printed as JSON. Otherwise PAYLOAD is\n"
                "the bytes to send and the reply is printed as text if it is printable\n"
                "UTF-8, else as a hexdump; --raw sends and prints bytes in any case.\n"
                "PAYLOAD may be @FILE to read a file, - for standard input; a payload\n"
                "that starts with '-' follows \"--\". \"fds: N\" is printed if file\n"
                "descriptors came with the reply; --fd attaches files as descriptors.\n"
                "Exit status 1 for an error reply, 2 when no answer came within\n"
                "--timeout (default 25s), 3 if DEST is not on the bus, 64 if the JSON\n"
                "does not fit the request's type.\n",
        },
        {
                "publish", 1, 2, OPT_FD | OPT_TYPE, drive_publish, "TOPIC [PAYLOAD]",
                "Publish a signal",
                "Publishes PAYLOAD (as for call) on TOPIC, with the files of --fd as\n"
                "descriptors, and waits until the broker has handled it. A PAYLOAD that\n"
                "is a JSON object is encoded as the message type that the owner of a\n"
                "well-known name declares for TOPIC (see introspect), or as the type\n"
                "--type names; other payloads are sent as they are. Exit status 1 if the\n"
                "broker refused it, or if subscribers missed it because their queues\n"
                "were full; 64 if the JSON does not fit the type.\n",
        },
        {
                "subscribe", 1, 1, OPT_RAW | OPT_COUNT, drive_subscribe, "PATTERN",
                "Print the signals matching a topic pattern",
                "Prints each signal whose topic matches PATTERN ('+' matches one level,\n"
                "a final '#' any number of levels): \"TOPIC SENDER PAYLOAD\", the payload\n"
                "as JSON if its sender declared the topic's message type (the broker's\n"
                "own signals included), else as text or as a hexdump. Runs until SIGINT\n"
                "or SIGTERM (exit status 0), or until --count signals arrived. With\n"
                "--json, one JSON object per line.\n",
        },
        {
                "wait", 1, 1, 0, drive_wait, "NAME",
                "Wait until a well-known name has an owner",
                "Waits until NAME has a primary owner and prints the owner's unique id;\n"
                "at once if it has one already. Waits forever unless --timeout is given;\n"
                "exit status 2 when the timeout passes first.\n",
        },
};

static const char exit_status_help[] =
        "Exit status:\n"
        "  0   success\n"
        "  1   a remote error (an ERROR reply), or another failure\n"
        "  2   timeout: no answer in time, or the name did not appear\n"
        "  3   no such name or client on the bus\n"
        "  4   cannot connect to the bus, or the connection was lost\n"
        "  64  usage error: bad verb, option, argument, name, topic or pattern\n";

static const char common_options_help[] =
        "  -a, --address PATH   the bus's socket (default: $PLEXUS_BUS_ADDRESS, else\n"
        "                       $XDG_RUNTIME_DIR/plexus/bus, else /run/plexus/bus as root)\n"
        "  -j, --json           JSON output: one document; for subscribe and monitor\n"
        "                       one per line\n"
        "  -t, --timeout TIME   bound every call to the bus (and wait's waiting):\n"
        "                       seconds, or with a unit (500ms, 2s, 1min), or infinity\n"
        "  -h, --help           show this help\n";

static const struct {
        unsigned int bit;
        const char *help;
} verb_options_help[] = {
        { OPT_RAW, "      --raw            no typing: send and write payloads as bytes, nothing else\n"
                   "                       (monitor: show payloads undecoded)\n" },
        { OPT_COUNT, "  -n, --count N        stop after N signals (subscribe) or frames\n" },
        { OPT_LEGEND, "      --no-legend      leave out the header line\n" },
        { OPT_FILTER, "      --topic PATTERN  select signals whose topic matches PATTERN\n"
                      "      --name NAME      select frames from or to NAME (unique id,\n"
                      "                       well-known name, or plexus for the broker)\n"
                      "      --member MEMBER  select calls of method MEMBER\n"
                      "                       (each repeatable; a frame is selected if any\n"
                      "                       of them matches; 64 in all at most)\n" },
        { OPT_FD, "      --fd PATH        open PATH read-only and attach it as a file\n"
                  "                       descriptor (repeatable, 253 at most)\n" },
        { OPT_TYPE, "      --type TYPE      encode the payload as the message type TYPE\n"
                    "                       (a full name, e.g. example.thermostat.Temperature)\n" },
};

static void help(FILE *f) {
        fprintf(f, "Usage: plexusctl [OPTIONS] VERB [ARGUMENTS]\n\n"
                   "Inspect and drive a Plexus bus.\n\nVerbs:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                char left[64];

                snprintf(left, sizeof(left), "%s %s", verbs[i].name, verbs[i].synopsis);
                fprintf(f, "  %-30s %s\n", left, verbs[i].summary);
        }
        fprintf(f, "\nOptions:\n%s", common_options_help);
        for (size_t i = 0; i < ELEMENTSOF(verb_options_help); i++)
                fputs(verb_options_help[i].help, f);
        fprintf(f, "      --version        show the version\n"
                   "\n'plexusctl VERB --help' describes one verb. Received payloads are shown as\n"
                   "text when they are printable UTF-8, else as a hexdump.\n\n%s\nSee plexusctl(1).\n",
                exit_status_help);
}

static void verb_help(FILE *f, const Verb *v) {
        fprintf(f, "Usage: plexusctl %s [OPTIONS]%s%s\n\n%s.\n\n%s\nOptions:\n%s", v->name,
                *v->synopsis ? " " : "", v->synopsis, v->summary, v->help, common_options_help);
        for (size_t i = 0; i < ELEMENTSOF(verb_options_help); i++)
                if (v->options & verb_options_help[i].bit)
                        fputs(verb_options_help[i].help, f);
        fprintf(f, "\n%s", exit_status_help);
}

static const Verb *verb_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (strcmp(verbs[i].name, name) == 0)
                        return &verbs[i];
        return NULL;
}

/* "2.5", "500ms", "2s", "1min", "infinity" into microseconds, at least 1. */
static int parse_timeout(const char *s, uint64_t *ret) {
        static const struct {
                const char *suffix;
                double usec;
        } units[] = {
                { "", 1e6 }, { "s", 1e6 }, { "ms", 1e3 }, { "us", 1 }, { "min", 60e6 },
        };
        char *end;
        double v;

        if (strcmp(s, "infinity") == 0) {
                *ret = CTL_TIMEOUT_INFINITY;
                return 0;
        }
        errno = 0;
        v = strtod(s, &end);
        if (errno || end == s || !isfinite(v) || v <= 0)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                if (strcmp(end, units[i].suffix) == 0) {
                        double usec = ceil(v * units[i].usec);

                        if (usec >= (double)CTL_TIMEOUT_INFINITY)
                                *ret = CTL_TIMEOUT_INFINITY;
                        else
                                *ret = (uint64_t)usec;
                        return 0;
                }
        }
        return -EINVAL;
}

static int parse_count(const char *s, uint64_t *ret) {
        unsigned long long v;
        char *end;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-' || v == 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* Columns for tables: the terminal's width, or 0 (no limit) when stdout is no terminal. */
static size_t terminal_columns(void) {
        struct winsize ws;
        const char *e;

        if (!isatty(STDOUT_FILENO))
                return 0;
        e = getenv("COLUMNS");
        if (e) {
                char *end;
                unsigned long v = strtoul(e, &end, 10);

                if (*e && !*end && v > 0 && v < 100000)
                        return v;
        }
        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
                return ws.ws_col;
        return 80;
}

static const char *option_names(unsigned int bit) {
        switch (bit) {
        case OPT_RAW:
                return "--raw";
        case OPT_COUNT:
                return "--count";
        case OPT_LEGEND:
                return "--no-legend";
        case OPT_FILTER:
                return "--topic, --name or --member";
        case OPT_FD:
                return "--fd";
        case OPT_TYPE:
                return "--type";
        default:
                return "such option";
        }
}

static int usage_error(const char *fmt, ...) _printf_(1, 2);
static int usage_error(const char *fmt, ...) {
        va_list ap;

        fputs("plexusctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\nTry 'plexusctl --help'.\n", stderr);
        return CTL_EXIT_USAGE;
}

int main(int argc, char **argv) {
        enum {
                ARG_RAW = 0x100,
                ARG_NO_LEGEND,
                ARG_VERSION,
                ARG_FD,
                ARG_TOPIC,
                ARG_NAME,
                ARG_MEMBER,
                ARG_TYPE,
        };
        static const struct option options[] = {
                { "address", required_argument, NULL, 'a' },
                { "json", no_argument, NULL, 'j' },
                { "timeout", required_argument, NULL, 't' },
                { "count", required_argument, NULL, 'n' },
                { "raw", no_argument, NULL, ARG_RAW },
                { "no-legend", no_argument, NULL, ARG_NO_LEGEND },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "fd", required_argument, NULL, ARG_FD },
                { "topic", required_argument, NULL, ARG_TOPIC },
                { "name", required_argument, NULL, ARG_NAME },
                { "member", required_argument, NULL, ARG_MEMBER },
                { "type", required_argument, NULL, ARG_TYPE },
                {}
        };
        Ctl c = { .legend = true };
        unsigned int used = 0;
        size_t n_filters = 0;
        bool want_help = false;
        const Verb *v;
        int opt, r;

        setlocale(LC_CTYPE, "");

        /* GNU getopt permutes: options may follow the verb; the other arguments keep their order. */
        while ((opt = getopt_long(argc, argv, "a:jt:n:h", options, NULL)) >= 0) {
                switch (opt) {
                case 'a':
                        c.address = optarg;
                        break;
                case 'j':
                        c.json = true;
                        break;
                case 't':
                        if (parse_timeout(optarg, &c.timeout_usec) < 0)
                                return usage_error("invalid timeout \"%s\"", optarg);
                        break;
                case 'n':
                        if (parse_count(optarg, &c.count) < 0)
                                return usage_error("invalid count \"%s\"", optarg);
                        used |= OPT_COUNT;
                        break;
                case ARG_RAW:
                        c.raw = true;
                        used |= OPT_RAW;
                        break;
                case ARG_NO_LEGEND:
                        c.legend = false;
                        used |= OPT_LEGEND;
                        break;
                case 'h':
                        want_help = true;
                        break;
                case ARG_VERSION:
                        printf("plexusctl %s\n", PLEXUS_VERSION);
                        return CTL_EXIT_SUCCESS;
                case ARG_FD:
                        if (c.n_fd_paths >= ELEMENTSOF(c.fd_paths))
                                return usage_error("at most %zu --fd", ELEMENTSOF(c.fd_paths));
                        if (!*optarg)
                                return usage_error("empty --fd");
                        c.fd_paths[c.n_fd_paths++] = optarg;
                        used |= OPT_FD;
                        break;
                case ARG_TOPIC:
                        if (!topic_pattern_is_valid(optarg))
                                return usage_error("\"%s\" is not a topic pattern "
                                                   "(levels separated by '/', '+' for one level, a final '#' for any)",
                                                   optarg);
                        if (n_filters++ >= CTL_FILTERS_MAX)
                                return usage_error("at most %d filters", CTL_FILTERS_MAX);
                        c.topics[c.n_topics++] = optarg;
                        used |= OPT_FILTER;
                        break;
                case ARG_NAME:
                        if (!bus_name_is_unique_id(optarg) && !bus_name_is_well_known(optarg) &&
                            strcmp(optarg, PLX_BROKER) != 0)
                                return usage_error("\"%s\" is neither a unique id (:N), a well-known name nor %s",
                                                   optarg, PLX_BROKER);
                        if (n_filters++ >= CTL_FILTERS_MAX)
                                return usage_error("at most %d filters", CTL_FILTERS_MAX);
                        c.names[c.n_names++] = optarg;
                        used |= OPT_FILTER;
                        break;
                case ARG_MEMBER:
                        if (!*optarg || strlen(optarg) > FRAME_NAME_MAX)
                                return usage_error("\"%s\" is not a method name (1 to %u bytes)", optarg,
                                                   FRAME_NAME_MAX);
                        if (n_filters++ >= CTL_FILTERS_MAX)
                                return usage_error("at most %d filters", CTL_FILTERS_MAX);
                        c.members[c.n_members++] = optarg;
                        used |= OPT_FILTER;
                        break;
                case ARG_TYPE:
                        if (!*optarg || strlen(optarg) > FRAME_NAME_MAX)
                                return usage_error("\"%s\" is not a message type name", optarg);
                        c.type = optarg;
                        used |= OPT_TYPE;
                        break;
                default:
                        return usage_error("unknown option or missing argument");
                }
        }

        if (optind >= argc) {
                if (want_help) {
                        help(stdout);
                        return CTL_EXIT_SUCCESS;
                }
                return usage_error("no verb given");
        }
        v = verb_find(argv[optind]);
        if (!v)
                return usage_error("unknown verb \"%s\"", argv[optind]);
        if (want_help) {
                verb_help(stdout, v);
                return CTL_EXIT_SUCCESS;
        }
        c.verb = v->name;
        argc -= optind + 1;
        argv += optind + 1;

        if (used & ~v->options) {
                unsigned int extra = used & ~v->options;

                /* The lowest bit: one option named is enough to go on. */
                return usage_error("%s takes no %s", v->name, option_names(extra & -extra));
        }
        if (c.raw && c.json && strcmp(v->name, "monitor") != 0)
                return usage_error("--raw and --json exclude each other");
        if (argc < v->min_args || argc > v->max_args)
                return usage_error("usage: plexusctl %s%s%s", v->name, *v->synopsis ? " " : "", v->synopsis);
        if (c.address && !*c.address)
                return usage_error("empty --address");

        c.columns = terminal_columns();
        r = v->run(&c, argc, argv);
        c.bus = plx_bus_free(c.bus);
        if (fflush(stdout) != 0 && r == CTL_EXIT_SUCCESS)
                r = CTL_EXIT_FAILURE;
        return r;
}
