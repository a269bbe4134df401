/* SPDX-License-Identifier: MIT */
/* kkt-adapterd: the command line, the process set-up (signals, logging), then the Manager runs. */

#include <getopt.h>
#include <signal.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "manager.h"

static const char *arg_config = NULL;
static const char *arg_bus = NULL;
static int arg_log_level = -1;
static bool arg_dump_config = false;

static void help(void) {
        printf("%s [OPTIONS...]\n\n"
               "Fiscal-receipt gateway between the point of sale, the fiscal register, the OFD and the ERP.\n\n"
               "  -h --help              Show this help\n"
               "     --version           Show the version\n"
               "     --config=PATH       Read PATH (and PATH.d/*.conf) instead of %s\n"
               "     --bus=BUS           system, user, none or a D-Bus address (overrides [Bus] Address=)\n"
               "     --log-level=LEVEL   emerg ... debug (overrides [Adapter] LogLevel=)\n"
               "     --dump-config       Print the effective configuration and exit\n"
               "\nSee the kkt-adapterd(8) and kkt-adapter.conf(5) manual pages for details.\n",
               program_invocation_short_name, CONFIG_MAIN_FILE);
}

/* Returns 1 to go on, 0 to exit successfully, negative on a usage error. */
static int parse_argv(int argc, char *argv[]) {
        enum {
                ARG_VERSION = 0x100,
                ARG_CONFIG,
                ARG_BUS,
                ARG_LOG_LEVEL,
                ARG_DUMP_CONFIG,
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "bus", required_argument, NULL, ARG_BUS },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "dump-config", no_argument, NULL, ARG_DUMP_CONFIG },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("%s %s\n", PACKAGE_NAME, PACKAGE_VERSION);
                        return 0;
                case ARG_CONFIG:
                        if (isempty(optarg))
                                return log_error_errno(EINVAL, "--config= needs a path.");
                        arg_config = optarg;
                        break;
                case ARG_BUS:
                        if (isempty(optarg))
                                return log_error_errno(EINVAL, "--bus= needs system, user, none or an address.");
                        arg_bus = optarg;
                        break;
                case ARG_LOG_LEVEL:
                        arg_log_level = log_level_from_string(optarg);
                        if (arg_log_level < 0)
                                return log_error_errno(EINVAL, "Unknown log level '%s'.", optarg);
                        log_set_max_level(arg_log_level);
                        break;
                case ARG_DUMP_CONFIG:
                        arg_dump_config = true;
                        break;
                case '?':
                        return -EINVAL;
                default:
                        assert(false);
                }

        if (optind < argc)
                return log_error_errno(EINVAL, "%s takes no arguments.", program_invocation_short_name);
        return 1;
}

static int run(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_free_ char *error = NULL;
        sigset_t mask;
        int r;

        log_setup(LOG_TARGET_AUTO);
        log_set_identifier(program_invocation_short_name);

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r;

        /* Block before any thread starts, so the signals reach only the loop's signalfd sources. SIGPIPE is
         * ignored: a client that goes away must not kill the process. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(errno, "Failed to block signals: %m");
        (void) signal(SIGPIPE, SIG_IGN);

        r = manager_new(&m,
                        &(ManagerOptions) {
                                .config_path = arg_config,
                                .bus_override = arg_bus,
                                .log_level_override = arg_log_level,
                        },
                        &error);
        if (r < 0) {
                if (error)
                        return log_error_errno(r, "Bad configuration: %s", error);
                return log_error_errno(r, "Failed to set up: %m");
        }

        if (arg_dump_config)
                return config_dump(m->modules.config, stdout);

        r = manager_start(m);
        if (r < 0) {
                (void) sd_notifyf(false, "STATUS=Failed to start: %s\nERRNO=%i", strerror(-r), -r);
                return r;
        }

        r = manager_run(m);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return r;
}

int main(int argc, char *argv[]) {
        int r = run(argc, argv);
        return r < 0 ? EXIT_FAILURE : r;
}
