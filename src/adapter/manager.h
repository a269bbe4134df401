/* SPDX-License-Identifier: MIT */
#pragma once

/* The Manager owns the sd-event loop, the configuration and every module of the daemon; it handles the
 * service's life cycle towards systemd: start-up, READY/STATUS, reload on SIGHUP, graceful stop. */

#include <systemd/sd-event.h>

#include "conf.h"
#include "curl-glue.h"
#include "macro.h"
#include "manager-bus.h"
#include "modules.h"

typedef struct Manager {
        Modules modules; /* handed down to the bus object, the HTTP API, health and metrics */

        char *config_path; /* NULL: the default file */
        char *bus_override; /* --bus=, wins over [Bus] Address= */
        int log_level_override; /* --log-level=, -1 when not given */

        int state_lock_fd;
        unsigned taxations_applied; /* the register's taxation systems intake last heard of */

        CurlGlue *glue;
        usec_t last_sync_published;

        ManagerBus *bus;
        sd_event_source *counters_source; /* coalesces PropertiesChanged of the counters */
        StoreCounters counters_published;

        sd_event_source *sigterm_source;
        sd_event_source *sigint_source;
        sd_event_source *sighup_source;
        sd_event_source *exit_check_source;
        sd_event_source *stop_deadline_source;
        sd_event_source *stall_source;

        bool freeing;           /* manager_free() is tearing the modules down */
        unsigned n_reloads;
} Manager;

typedef struct ManagerOptions {
        const char *config_path;
        const char *bus_override;
        int log_level_override;
} ManagerOptions;

/* Loads the configuration; the error message for a bad one is returned in *ret_error. */
int manager_new(Manager **ret, const ManagerOptions *options, char **ret_error);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Starts every module and tells systemd READY=1. */
int manager_start(Manager *m);

/* Runs the loop until a graceful stop finished; returns the exit code. */
int manager_run(Manager *m);

/* Re-reads the configuration; on failure the running one stays. */
int manager_reload(Manager *m);

/* Begins the graceful stop: STOPPING=1, no new work, exit once in-flight work is done. */
void manager_begin_stop(Manager *m);

/* Sends STATUS= with the one-line summary of the current state. */
void manager_update_status(Manager *m);

/* [Device] keys of the fiscal day as its options; -EINVAL for a bad AutoCloseShift=. */
int manager_fiscal_day_options(Manager *m, const Config *c, FiscalDayOptions *ret);

/* Tells bus clients that receipt counters changed; coalesced into one signal per 200 ms. */
void manager_counters_changed(Manager *m);
