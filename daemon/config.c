/*
 * Configuration file parsing (see config.h). libinih does the lexing; this
 * file maps keys onto plx_broker_config and checks their ranges.
 */

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

typedef struct Key {
        const char *name;
        size_t offset;          /* of a uint32_t in plx_broker_config */
        uint32_t min;
        uint32_t max;
} Key;

#define KEY(field, lo, hi) { #field, offsetof(plx_broker_config, field), (lo), (hi) }

static const Key limits[] = {
        KEY(max_clients, 1, 1000000),
        KEY(max_queue_frames, 1, 1u << 24),
        KEY(max_queue_bytes, FRAME_SIZE_MAX + 64, 1u << 31),
        KEY(max_queue_fds, 0, 1u << 20),
        KEY(max_subscriptions, 1, 1u << 20),
        KEY(max_pending_calls, 1, 1u << 20),
        KEY(max_names, 1, 1u << 20),
        KEY(default_timeout_ms, 1, 3600u * 1000u),
        KEY(max_timeout_ms, 1, 24u * 3600u * 1000u),
        KEY(hello_timeout_ms, 1, 3600u * 1000u),
        KEY(shutdown_timeout_ms, 0, 3600u * 1000u),
        KEY(max_message_size, FRAME_SIZE_MAX, UINT32_MAX),
        KEY(max_transfers, 1, 1u << 16),
        KEY(max_lent_bytes, FRAME_SIZE_MAX, UINT32_MAX),
        KEY(transfer_lease_ms, 10, 3600u * 1000u),
        /* Per uid and broker-wide (daemon/user.h); a uid must fit at least one frame. */
        KEY(max_user_clients, 1, 1000000),
        KEY(max_unauthenticated, 1, 1000000),
        KEY(max_user_unauthenticated, 1, 1000000),
        KEY(max_user_queue_bytes, FRAME_SIZE_MAX + 64, UINT32_MAX),
        KEY(max_total_queue_bytes, FRAME_SIZE_MAX + 64, UINT32_MAX),
        KEY(max_user_queue_fds, 0, 1u << 20),
        KEY(max_total_queue_fds, 0, 1u << 20),
};

typedef struct Parse {
        plx_broker_config *config;
        Policy *policy;
        char *err;
        size_t err_size;
} Parse;

static int handle_line(Parse *p, const char *section, const char *name, const char *value);

/* Debian's libinih is built without line numbers for handlers: name the key instead. */
static int handle(void *userdata, const char *section, const char *name, const char *value) {
        Parse *p = userdata;

        /* libinih reads on after an error; the first one is the one to report. */
        if (p->err[0])
                return 0;
        return handle_line(p, section, name, value);
}

static int handle_line(Parse *p, const char *section, const char *name, const char *value) {
        unsigned long long v;
        char *end;

        if (strncmp(section, "policy:", 7) == 0 && section[7])
                return policy_set(p->policy, section + 7, name, value, p->err, p->err_size) == 0;
        if (strcmp(section, "limits") != 0) {
                snprintf(p->err, p->err_size, "unknown section [%s]", section);
                return 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(limits); i++) {
                if (strcmp(name, limits[i].name) != 0)
                        continue;
                errno = 0;
                v = strtoull(value, &end, 10);
                if (errno || end == value || *end || *value == '-' || v < limits[i].min || v > limits[i].max) {
                        snprintf(p->err, p->err_size, "%s = \"%s\": expected a number from %u to %u",
                                 name, value, limits[i].min, limits[i].max);
                        return 0;
                }
                *(uint32_t *)((char *)p->config + limits[i].offset) = (uint32_t)v;
                return 1;
        }
        snprintf(p->err, p->err_size, "unknown key %s in [limits]", name);
        return 0;
}

/**
 * config_default_path() - where plexusd looks for its file without --config
 * @buf:        receives the path
 * @size:       its capacity
 *
 * The system bus (root) reads CONFIG_SYSTEM_PATH; a per-user bus reads
 * $XDG_CONFIG_HOME/plexus/plexusd.conf (default ~/.config), so that a
 * user's bus never picks up the system bus's policy.
 *
 * Return: 0, or -ENOENT if there is no home to look in.
 */
int config_default_path(char *buf, size_t size) {
        const char *dir;
        int n;

        if (geteuid() == 0)
                n = snprintf(buf, size, "%s", CONFIG_SYSTEM_PATH);
        else if ((dir = secure_getenv("XDG_CONFIG_HOME")) && *dir == '/')
                n = snprintf(buf, size, "%s%s", dir, CONFIG_USER_SUFFIX);
        else if ((dir = secure_getenv("HOME")) && *dir == '/')
                n = snprintf(buf, size, "%s/.config%s", dir, CONFIG_USER_SUFFIX);
        else
                return -ENOENT;
        return n > 0 && (size_t)n < size ? 0 : -ENAMETOOLONG;
}

/*
 * A file with nothing but blanks is not a configuration but the trace of a
 * failed write: a truncated file, or one a crash left as zero-filled blocks
 * (libinih would read either as "no keys", i.e. no policy). A NUL byte
 * anywhere means the same, and would make libinih silently cut the line it
 * is on. Both are refused, with the reason in @err. Only regular files are
 * judged so: `--config /dev/null` is the usual way to say "no file".
 */
static int check_content(FILE *f, char *err, size_t err_size) {
        struct stat st;
        bool any = false;
        int c;

        if (fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode))
                return 0;

        while ((c = getc(f)) != EOF) {
                if (c == 0) {
                        snprintf(err, err_size, "file holds NUL bytes (zero-filled or torn write?)");
                        return -EINVAL;
                }
                if (!strchr(" \t\r\n\v\f", c))
                        any = true;
        }
        if (ferror(f)) {
                snprintf(err, err_size, "cannot read: %s", strerror(errno));
                return -EIO;
        }
        if (!any) {
                snprintf(err, err_size, "file is empty (write a comment line to mean \"defaults\")");
                return -EINVAL;
        }
        rewind(f);
        return 0;
}

/**
 * config_load() - apply the file at @path to @c
 * @c:          the configuration; changed only on success
 * @ret_policy: receives the file's policy, or NULL if it has no [policy:*]
 *              section (or there is no file); written only on success
 * @path:       the file
 * @required:   whether a missing file is an error (else @c stays as it is)
 * @err:        receives a description on failure
 * @err_size:   its capacity
 *
 * A file that is empty, only blanks or holds NUL bytes is a bad file.
 *
 * Return: 1 when the file was read and applied, 0 for a missing optional
 * file (@c unchanged), -ENOENT for a missing required file, -EINVAL for a
 * bad file, -EIO, -ENOMEM.
 */
int config_load(plx_broker_config *c, Policy **ret_policy, const char *path, bool required,
                char *err, size_t err_size) {
        _cleanup_(policy_freep) Policy *policy = NULL;
        plx_broker_config copy = *c;
        Parse p = { .config = &copy, .err = err, .err_size = err_size };
        FILE *f;
        int r;

        f = fopen(path, "re");
        if (!f) {
                r = -errno;
                /* An optional default file that is absent or not ours to read: defaults. */
                if ((r == -ENOENT || r == -EACCES) && !required) {
                        *ret_policy = NULL;
                        return 0;
                }
                snprintf(err, err_size, "cannot open: %s", strerror(-r));
                return r;
        }
        r = check_content(f, err, err_size);
        if (r < 0) {
                fclose(f);
                return r;
        }

        r = policy_new(&policy);
        if (r < 0) {
                fclose(f);
                snprintf(err, err_size, "out of memory");
                return r;
        }
        p.policy = policy;

        err[0] = 0;
        r = ini_parse_file(f, handle, &p);
        fclose(f);
        if (r == -2) {
                snprintf(err, err_size, "out of memory");
                return -ENOMEM;
        }
        if (r != 0) {
                /* A handler's own message wins; else libinih's line number. */
                if (!err[0])
                        snprintf(err, err_size, "line %d: not a section, key = value line or comment", r);
                return -EINVAL;
        }
        if (copy.max_timeout_ms < copy.default_timeout_ms) {
                snprintf(err, err_size, "max_timeout_ms (%u) is below default_timeout_ms (%u)",
                         copy.max_timeout_ms, copy.default_timeout_ms);
                return -EINVAL;
        }
        r = policy_finish(policy, err, err_size);
        if (r < 0)
                return r;

        *c = copy;
        *ret_policy = policy_n_rules(policy) ? TAKE_PTR(policy) : NULL;
        return 1;
}
