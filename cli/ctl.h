#pragma once

/*
 * plexusctl: what its verbs share.
 *
 * main() (plexusctl.c) parses the command line into a Ctl and runs one
 * verb; the verbs live in inspect.c (the bus's state: status, list,
 * clients, client, stats), drive.c (traffic: call, publish, subscribe,
 * wait) and watch.c (every frame on the bus: monitor, capture). A verb
 * returns the process's exit code. Everything that can fail
 * once the command line is parsed is reported here, by ctl_fail() and
 * ctl_call_failed(): one line on stderr, and with --json also a
 * {"error": {...}} document on stdout, so that a script reading stdout
 * learns why too. Usage errors (exit code 64) go to stderr only.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <plexus/plexus.h>
#include <protobuf-c/protobuf-c.h>

#include "util.h"

/* Exit codes: the contract with scripts, documented in plexusctl(1) and --help. */
enum {
        CTL_EXIT_SUCCESS = 0,
        CTL_EXIT_FAILURE = 1,           /* a remote error, or anything else that failed */
        CTL_EXIT_TIMEOUT = 2,           /* no answer in time, or the name did not appear */
        CTL_EXIT_NO_NAME = 3,           /* no such name or client on the bus */
        CTL_EXIT_NO_BUS = 4,            /* cannot connect, or the connection was lost */
        CTL_EXIT_USAGE = 64,            /* bad command line (EX_USAGE of sysexits.h) */
};

/* --timeout not given. */
#define CTL_TIMEOUT_UNSET 0

/* --timeout infinity: long enough to never pass, short enough not to overflow a deadline. */
#define CTL_TIMEOUT_INFINITY (UINT64_MAX / 4)

/* Monitor filters in all, the broker's bound (docs/protocol.md §16). */
#define CTL_FILTERS_MAX 64

typedef struct Ctl {
        const char *verb;               /* for messages */
        const char *address;            /* --address; NULL: the default */
        bool json;                      /* --json */
        bool legend;                    /* false with --no-legend */
        bool raw;                       /* --raw */
        const char *type;               /* --type */
        uint64_t timeout_usec;          /* --timeout, or CTL_TIMEOUT_UNSET */
        uint64_t count;                 /* --count; 0: no limit */
        size_t columns;                 /* table width; 0: no limit (not a terminal) */

        /* --topic, --name, --member: NULL-terminated, as plx_bus_become_monitor() takes them */
        const char *topics[CTL_FILTERS_MAX + 1];
        const char *names[CTL_FILTERS_MAX + 1];
        const char *members[CTL_FILTERS_MAX + 1];
        size_t n_topics, n_names, n_members;

        const char *fd_paths[PLX_FDS_MAX];      /* --fd */
        size_t n_fd_paths;

        plx_bus *bus;                   /* once connected */
} Ctl;

int ctl_connect(Ctl *c);
int ctl_fail(Ctl *c, int code, const char *error_name, const char *fmt, ...) _printf_(4, 5);
int ctl_call_failed(Ctl *c, const char *what, int r, plx_msg *reply);
int ctl_broker_call(Ctl *c, const char *member, const ProtobufCMessage *request, plx_msg **ret_reply);
uint64_t ctl_timeout(const Ctl *c, uint64_t fallback);
int ctl_signal_fd(Ctl *c, int *ret_fd);
int ctl_wait(plx_bus *bus, int signal_fd);

char *ctl_format_duration(char *buf, size_t size, uint64_t usec);
char *ctl_format_time(char *buf, size_t size, uint64_t realtime_usec);
char *ctl_format_size(char *buf, size_t size, uint64_t bytes);
const char *ctl_user_name(uid_t uid, char *buf, size_t size);

/* Every well-known name: the pages of ListNames and an index over them (inspect.c). */
typedef struct NameSet {
        struct Plexus__NameList **pages;
        size_t n_pages;
        struct Plexus__NameEntry **names;       /* point into the pages */
        size_t n_names;
} NameSet;

int fetch_names(Ctl *c, NameSet *s);
void name_set_deinit(NameSet *s);

int inspect_status(Ctl *c, int argc, char **argv);
int inspect_list(Ctl *c, int argc, char **argv);
int inspect_clients(Ctl *c, int argc, char **argv);
int inspect_client(Ctl *c, int argc, char **argv);
int inspect_stats(Ctl *c, int argc, char **argv);

int interface_introspect(Ctl *c, int argc, char **argv);
int interface_tree(Ctl *c, int argc, char **argv);

int drive_call(Ctl *c, int argc, char **argv);
int drive_publish(Ctl *c, int argc, char **argv);
int drive_subscribe(Ctl *c, int argc, char **argv);
int drive_wait(Ctl *c, int argc, char **argv);

int watch_monitor(Ctl *c, int argc, char **argv);
int watch_capture(Ctl *c, int argc, char **argv);
