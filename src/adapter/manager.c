/* SPDX-License-Identifier: MIT */
/* Owns the life cycle of the daemon: the loop and its signal sources, the configuration and its reload,
 * the modules in start-up and stop order, and what systemd is told (READY, RELOADING, STOPPING, STATUS). */

#include <signal.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "manager.h"
#include "message-ids.h"
#include "time-util.h"

static void manager_apply_log_level(Manager *m) {
        log_set_max_level(m->log_level_override >= 0 ? m->log_level_override : m->config->log_level);
}

static const char *manager_bus_address(Manager *m) {
        return m->bus_override ?: m->config->bus_address;
}

void manager_update_status(Manager *m) {
        char status[256];

        if (m->stopping)
                snprintf(status, sizeof status, "Stopping: finishing in-flight work");
        else
                snprintf(status, sizeof status, "Running on bus %s", manager_bus_address(m));
        (void) sd_notifyf(false, "STATUS=%s", status);
}

static bool manager_is_idle(Manager *m) {
        /* Modules that hold in-flight work (requests, commits, prints, uploads) report here. */
        return true;
}

static int manager_on_exit_check(sd_event_source *s, void *userdata) {
        Manager *m = userdata;

        if (m->stopping && manager_is_idle(m))
                return sd_event_exit(m->event, 0);
        return 0;
}

void manager_begin_stop(Manager *m) {
        int r;

        if (m->stopping)
                return;
        m->stopping = true;

        (void) sd_notify(false, "STOPPING=1");
        log_struct(LOG_INFO, MESSAGE_ID_STOPPING, NULL, "Stopping: finishing in-flight work.");
        manager_update_status(m);

        /* Checked after every dispatched event, so the loop exits as soon as the last piece of in-flight work
         * completes, without polling. */
        r = sd_event_add_post(m->event, &m->exit_check_source, manager_on_exit_check, m);
        if (r < 0) {
                log_warning_errno(r, "Failed to watch for in-flight work, exiting at once: %m");
                (void) sd_event_exit(m->event, 0);
                return;
        }
        (void) sd_event_source_set_description(m->exit_check_source, "manager-exit-check");

        /* A post source only runs after later events; when nothing is in flight there may be none. */
        (void) manager_on_exit_check(m->exit_check_source, m);
}

static int manager_on_stop_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        log_debug("Received SIG%s.", si->ssi_signo == SIGTERM ? "TERM" : "INT");
        manager_begin_stop(m);
        return 0;
}

int manager_reload(Manager *m) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *error = NULL;
        int r;

        (void) sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, now(CLOCK_MONOTONIC));

        r = config_load(m->config_path, &c, &error);
        if (r < 0) {
                log_struct_errno(LOG_ERR, r, MESSAGE_ID_RELOAD_FAILED, NULL,
                                 "Reload failed, keeping the running configuration: %s", strna(error));
                (void) sd_notify(false, "READY=1");
                manager_update_status(m);
                return r;
        }

        config_free(m->config);
        m->config = TAKE_PTR(c);
        m->n_reloads++;
        manager_apply_log_level(m);

        log_struct(LOG_INFO, MESSAGE_ID_RELOADED, NULL, "Configuration reloaded from %s.",
                   m->config_path ?: CONFIG_MAIN_FILE);
        (void) sd_notify(false, "READY=1");
        manager_update_status(m);
        return 0;
}

static int manager_on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        if (!m->stopping)
                (void) manager_reload(m);
        return 0;
}

#if ENABLE_DEBUG_HOOKS
static int manager_on_stall(sd_event_source *s, uint64_t usec, void *userdata) {
        usec_t duration = PTR_TO_UINT64(sd_event_source_get_userdata(s));
        struct timespec ts = {
                .tv_sec = (time_t) (duration / USEC_PER_SEC),
                .tv_nsec = (long) (duration % USEC_PER_SEC * NSEC_PER_USEC),
        };

        /* Deliberately blocks the loop, so a test can watch the watchdog pings stop. */
        log_warning("Debug hook: stalling the event loop for %" PRIu64 " ms.", duration / USEC_PER_MSEC);
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
        log_warning("Debug hook: event loop stall over.");
        return 0;
}

/* KKT_ADAPTER_DEBUG_STALL=AFTER:DURATION, e.g. "1s:5s": after AFTER the loop blocks for DURATION. */
static int manager_setup_stall_hook(Manager *m) {
        const char *e = getenv("KKT_ADAPTER_DEBUG_STALL");
        _cleanup_free_ char *after_s = NULL;
        const char *colon;
        usec_t after, duration;
        int r;

        if (isempty(e))
                return 0;
        colon = strchr(e, ':');
        if (!colon)
                return log_error_errno(EINVAL, "KKT_ADAPTER_DEBUG_STALL=%s: expected AFTER:DURATION.", e);
        after_s = strndup(e, (size_t) (colon - e));
        if (!after_s)
                return log_oom();
        if (parse_timespan(after_s, &after) < 0 || parse_timespan(colon + 1, &duration) < 0)
                return log_error_errno(EINVAL, "KKT_ADAPTER_DEBUG_STALL=%s: expected AFTER:DURATION.", e);

        r = sd_event_add_time_relative(m->event, &m->stall_source, CLOCK_MONOTONIC, after, 0, manager_on_stall,
                                       UINT64_TO_PTR(duration));
        if (r < 0)
                return log_error_errno(r, "Failed to arm the stall hook: %m");
        (void) sd_event_source_set_description(m->stall_source, "manager-debug-stall");
        return 0;
}
#endif

int manager_new(Manager **ret, const ManagerOptions *options, char **ret_error) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = new0(Manager, 1);
        if (!m)
                return -ENOMEM;
        m->log_level_override = options->log_level_override;

        if (options->config_path && !(m->config_path = strdup(options->config_path)))
                return -ENOMEM;
        if (options->bus_override && !(m->bus_override = strdup(options->bus_override)))
                return -ENOMEM;

        r = config_load(m->config_path, &m->config, ret_error);
        if (r < 0)
                return r;
        manager_apply_log_level(m);

        r = sd_event_default(&m->event);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;

        sd_event_source_disable_unref(m->sigterm_source);
        sd_event_source_disable_unref(m->sigint_source);
        sd_event_source_disable_unref(m->sighup_source);
        sd_event_source_disable_unref(m->exit_check_source);
        sd_event_source_disable_unref(m->stall_source);
        sd_event_unref(m->event);

        config_free(m->config);
        free(m->config_path);
        free(m->bus_override);
        return mfree(m);
}

static int manager_add_signal(Manager *m, sd_event_source **s, int sig, sd_event_signal_handler_t handler,
                              const char *description) {
        int r;

        r = sd_event_add_signal(m->event, s, sig, handler, m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch %s: %m", description);
        (void) sd_event_source_set_description(*s, description);
        return 0;
}

int manager_start(Manager *m) {
        int r;

        /* The signals are blocked by main() before any thread exists, so they arrive only here. */
        r = manager_add_signal(m, &m->sigterm_source, SIGTERM, manager_on_stop_signal, "manager-sigterm");
        if (r < 0)
                return r;
        r = manager_add_signal(m, &m->sigint_source, SIGINT, manager_on_stop_signal, "manager-sigint");
        if (r < 0)
                return r;
        r = manager_add_signal(m, &m->sighup_source, SIGHUP, manager_on_sighup, "manager-sighup");
        if (r < 0)
                return r;

        /* Pings WATCHDOG=1 from the loop itself: a stalled loop stops the pings and systemd restarts us. */
        r = sd_event_set_watchdog(m->event, true);
        if (r < 0)
                return log_error_errno(r, "Failed to enable the watchdog: %m");
        if (r > 0)
                log_debug("Watchdog enabled.");

#if ENABLE_DEBUG_HOOKS
        r = manager_setup_stall_hook(m);
        if (r < 0)
                return r;
#endif

        log_struct(LOG_INFO, MESSAGE_ID_STARTED, NULL, "kkt-adapter %s started.", PACKAGE_VERSION);
        (void) sd_notify(false, "READY=1");
        manager_update_status(m);
        return 0;
}

int manager_run(Manager *m) {
        return sd_event_loop(m->event);
}
