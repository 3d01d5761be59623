/*
 * plexusd: parses options, picks up a socket-activated listener, runs the
 * broker library and maps its result to an exit code. No bus logic here.
 */

#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>

#include "broker.h"
#include "build-config.h"
#include "config.h"

static const char *arg_address;
static const char *arg_config;
static int arg_log_level = LOG_INFO;
static bool arg_io_uring = true;

static void log_stderr(void *userdata, int priority, const char *line) {
        /* "<N>" prefixes let journald assign priorities to stderr lines. */
        fprintf(stderr, "<%d>%s\n", priority, line);
}

static void notify(void *userdata, const char *state) {
        /* Not under a service manager, or it went away: nothing to tell. */
        (void)sd_notify(0, state);
}

static void help(void) {
        printf("Usage: %s [OPTIONS]\n\n"
               "The Plexus message bus broker.\n\n"
               "  -a --address PATH   Listen on PATH (default: $PLEXUS_BUS_ADDRESS,\n"
               "                      else $XDG_RUNTIME_DIR/plexus/bus, else /run/plexus/bus as root)\n"
               "  -c --config FILE    Read limits and policy from FILE (default, if it exists:\n"
               "                      " CONFIG_SYSTEM_PATH " as root, else\n"
               "                      $XDG_CONFIG_HOME/plexus/plexusd.conf); SIGHUP reads it again\n"
               "     --no-io-uring    Send fan-out with sendmmsg() only, never through io_uring\n"
               "  -v --verbose        Log debug messages\n"
               "  -h --help           Show this help\n"
               "     --version        Show the version\n",
               program_invocation_short_name);
}

static int parse_argv(int argc, char **argv) {
        enum { ARG_VERSION = 0x100, ARG_NO_IO_URING };
        static const struct option options[] = {
                { "address", required_argument, NULL, 'a' },
                { "config", required_argument, NULL, 'c' },
                { "verbose", no_argument, NULL, 'v' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "no-io-uring", no_argument, NULL, ARG_NO_IO_URING },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "a:c:vh", options, NULL)) >= 0) {
                switch (c) {
                case 'a':
                        arg_address = optarg;
                        break;
                case 'c':
                        arg_config = optarg;
                        break;
                case 'v':
                        arg_log_level = LOG_DEBUG;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_NO_IO_URING:
                        arg_io_uring = false;
                        break;
                case ARG_VERSION:
                        printf("plexusd %s\n", PLEXUS_VERSION);
                        return 0;
                default:
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "%s: unexpected argument '%s'\n", program_invocation_short_name, argv[optind]);
                return -EINVAL;
        }
        return 1;
}

static int listen_fd_from_systemd(int *ret_fd) {
        int n = sd_listen_fds(1);

        if (n < 0)
                return n;
        if (n == 0) {
                *ret_fd = -1;
                return 0;
        }
        if (n > 1) {
                fprintf(stderr, "<3>expected one socket from systemd, got %d\n", n);
                return -EINVAL;
        }
        if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_SEQPACKET, 1, NULL, 0) <= 0) {
                fprintf(stderr, "<3>the socket passed by systemd is not a listening AF_UNIX SOCK_SEQPACKET socket\n");
                return -EINVAL;
        }
        *ret_fd = SD_LISTEN_FDS_START;
        return 0;
}

static void raise_fd_limit(void) {
        struct rlimit rl;

        /* Each client is one fd: take the hard limit; select() is not used here. */
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void)setrlimit(RLIMIT_NOFILE, &rl);
        }
}

int main(int argc, char **argv) {
        _cleanup_(plx_broker_freep) plx_broker *b = NULL;
        plx_broker_config config;
        char config_path[PATH_MAX];
        int r, listen_fd;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        raise_fd_limit();

        r = listen_fd_from_systemd(&listen_fd);
        if (r < 0)
                return EXIT_FAILURE;

        plx_broker_config_init(&config);
        config.address = arg_address;
        config.listen_fd = listen_fd;
        config.handle_signals = true;
        config.log_fn = log_stderr;
        config.log_level = arg_log_level;
        config.io_uring = arg_io_uring;
        if (arg_config)
                config.config_path = arg_config;
        else if (config_default_path(config_path, sizeof(config_path)) >= 0)
                config.config_path = config_path;
        config.config_required = arg_config != NULL;
        config.notify_fn = notify;
        if (sd_watchdog_enabled(0, &config.watchdog_usec) <= 0)
                config.watchdog_usec = 0;

        r = plx_broker_new(&b, &config);
        if (r == -EADDRINUSE) {
                fprintf(stderr, "<3>another broker is already listening on %s\n",
                        arg_address ?: "the default address");
                return EXIT_FAILURE;
        }
        if (r == -EEXIST) {
                /* Never deleted: only a stale socket file is replaced. */
                fprintf(stderr, "<3>%s exists and is not a socket; remove it or choose another address\n",
                        arg_address ?: "the default address");
                return EXIT_FAILURE;
        }
        if (r == -ENOENT && !arg_address) {
                fprintf(stderr, "<3>no bus address: set PLEXUS_BUS_ADDRESS or XDG_RUNTIME_DIR, or use --address\n");
                return EXIT_FAILURE;
        }
        if (r == -EINVAL && config.config_path) {
                /* The broker logged what is wrong with the file. */
                fprintf(stderr, "<3>cannot start the broker: invalid configuration\n");
                return EXIT_FAILURE;
        }
        if (r < 0) {
                fprintf(stderr, "<3>cannot start the broker: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }

        if (plx_broker_get_address(b))
                fprintf(stderr, "<6>listening on %s\n", plx_broker_get_address(b));

        r = plx_broker_run(b);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
