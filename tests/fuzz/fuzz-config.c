/*
 * Fuzz target: the configuration file parser (daemon/config.c, with
 * libinih) and the access policy it builds (daemon/policy.c), on arbitrary
 * file contents.
 *
 * config_load() reads a path, so the input goes to a memfd opened through
 * /proc/self/fd. A file that loads must leave a configuration that
 * plx_broker_new() would accept as far as the file is concerned, and its
 * policy is then asked about a few subjects and targets, so that rule
 * matching runs on whatever the parser let through.
 */

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"
#include "policy.h"

static int memfd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        memfd = memfd_create("fuzz-config", MFD_CLOEXEC);
        fuzz_check(memfd >= 0);
        snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
        return 0;
}

static const char *const targets[] = {
        "", "a", "org.example.Printer", "org.example.Printer:Print", ":1:Ping", "plexus:Ping",
        "sensors/kitchen/temp", "sensors/+/temp", "sensors/#", "#", "+", "a/b/c/d",
};

static void ask(const Policy *p) {
        static const gid_t gids[] = { 0, 100, 1000, 65534 };
        static const PolicySubject subjects[] = {
                { .uid = 0, .gids = gids, .n_gids = 1 },
                { .uid = 1000, .gids = gids + 2, .n_gids = 2 },
                { .uid = 65534, .gids = gids + 3, .n_gids = 1 },
                { .uid = 12345, .gids = gids + 1, .n_gids = 1 },
        };
        const char *aliases[] = { "org.example.Other:Print", NULL };

        for (size_t i = 0; i < ELEMENTSOF(subjects); i++) {
                const PolicySubject *s = &subjects[i];
                bool applies = policy_applies(p, s);

                for (int a = 0; a < _POLICY_ACTION_MAX; a++) {
                        for (size_t k = 0; k < ELEMENTSOF(targets); k++) {
                                const char *rule = NULL;
                                bool ok;

                                ok = policy_allows(p, s, (PolicyAction)a, targets[k],
                                                   a == POLICY_CALL ? aliases : NULL, &rule);
                                /* Only a rule that applies allows anything, and it is named. */
                                fuzz_check(!ok || (applies && rule && rule[0]));
                        }
                }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        plx_broker_config c, before;
        Policy *policy = (Policy *)0x1;         /* must be written on success only */
        char err[256] = "";
        int r;

        if (memfd < 0)
                LLVMFuzzerInitialize(NULL, NULL);

        fuzz_check(ftruncate(memfd, 0) == 0);
        fuzz_check(pwrite(memfd, data, size, 0) == (ssize_t)size);

        plx_broker_config_init(&c);
        before = c;
        r = config_load(&c, &policy, path, true, err, sizeof(err));
        if (r < 0) {
                fuzz_check(r == -EINVAL || r == -ENOMEM);
                fuzz_check(err[0]);
                fuzz_check(memchr(err, 0, sizeof(err)));
                /* Nothing applied from a file that was refused. */
                fuzz_check(memcmp(&c, &before, sizeof(c)) == 0);
                fuzz_check(policy == (Policy *)0x1);
                return 0;
        }
        fuzz_check(r == 1);   /* read and applied */
        fuzz_check(c.max_timeout_ms >= c.default_timeout_ms);
        fuzz_check(c.max_clients >= 1 && c.max_queue_frames >= 1);
        fuzz_check(c.max_queue_bytes > FRAME_SIZE_MAX);
        fuzz_check(!policy || policy_n_rules(policy) > 0);

        ask(policy);
        policy_free(policy);
        return 0;
}
