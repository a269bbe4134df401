/* SPDX-License-Identifier: MIT */
#pragma once

/* The Manager owns the sd-event loop, the configuration and every module of the daemon; it handles the
 * service's life cycle towards systemd: start-up, READY/STATUS, reload on SIGHUP, graceful stop. */

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "conf.h"
#include "curl-glue.h"
#include "device.h"
#include "fiscal-day.h"
#include "heartbeat.h"
#include "printer.h"
#include "sync.h"
#include "http.h"
#include "intake.h"
#include "macro.h"
#include "store.h"

typedef struct Manager {
        sd_event *event;

        Config *config;
        char *config_path; /* NULL: the default file */
        char *bus_override; /* --bus=, wins over [Bus] Address= */
        int log_level_override; /* --log-level=, -1 when not given */

        char *adapter_id;
        int state_lock_fd;
        gid_t pos_gid, admin_gid; /* kkt-pos and kkt-admin, looked up once: no NSS on the loop */
        unsigned taxations_applied; /* the register's taxation systems intake last heard of */

        Store *store;
        Intake *intake;
        HttpServer *http;
        CurlGlue *glue;
        Heartbeat *heartbeat;
        Device *device;
        Printer *printer;
        FiscalDay *fiscal_day;
        Sync *sync;
        usec_t last_sync_published;

        sd_bus *bus;
        sd_event_source *bus_reconnect_source;
        usec_t bus_reconnect_delay;
        bool bus_name_acquired;
        sd_event_source *counters_source; /* coalesces PropertiesChanged of the counters */
        StoreCounters counters_published;

        sd_event_source *sigterm_source;
        sd_event_source *sigint_source;
        sd_event_source *sighup_source;
        sd_event_source *exit_check_source;
        sd_event_source *stop_deadline_source;
        sd_event_source *stall_source;

        bool stopping;
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

static inline bool gid_is_valid(gid_t gid) {
        return gid != (gid_t) -1;
}

typedef enum ManagerHealth {
        MANAGER_HEALTHY,
        MANAGER_DEGRADED,   /* working, but an operator should look */
        MANAGER_UNHEALTHY,  /* cannot take receipts */
} ManagerHealth;

/* A dead-letter queue longer than this makes the health "degraded" (the prototype's threshold). */
#define MANAGER_HEALTH_DEAD_LETTERS_DEGRADED 50U

/* The health of every component; *ret_json is the body of GET /v1/health: ours ("store", "disk",
 * "buffer", "device", the fiscal day's, "ofd", "heartbeat", "dead_letters") and the prototype's
 * ("buffer" with percent_full, dlq_size and pending; "circuit_breaker" with state and failure_count;
 * "database" with type and mode), the overall "status" and "version", and "circuit_breaker_state" as the
 * prototype spelt it. dead_letters_open: the dead letters not resolved (UINT64_MAX: not known, the
 * receipts in the DLQ count instead). */
int manager_health(Manager *m, uint64_t dead_letters_open, ManagerHealth *ret, json_object **ret_json);

/* [Device] keys of the fiscal day as its options; -EINVAL for a bad AutoCloseShift=. */
int manager_fiscal_day_options(Manager *m, const Config *c, FiscalDayOptions *ret);

/* Prometheus text exposition of the counters; dead_letters_open as for manager_health() (UINT64_MAX leaves
 * kkt_dlq_unresolved out). */
int manager_metrics(Manager *m, uint64_t dead_letters_open, char **ret);

/* "online", "offline" or "unknown" (no heartbeat yet): the ERP heartbeat's state. */
const char *manager_network_status(Manager *m);
/* network_status of GET /v1/kkt/buffer/status, by the prototype's rule: "offline" when the heartbeat says
 * so or half the capacity is pending, "degraded" while fewer receipts wait for the OFD, else the
 * heartbeat's state. */
const char *manager_buffer_network_status(Manager *m);
/* The buffer's percent_full as the prototype gave it: pending / capacity * 100 rounded to two decimals, a
 * JSON number token written exactly ("0.50"). */
json_object *manager_percent_full_to_json(Manager *m);

/* Tells bus clients that receipt counters changed; coalesced into one signal per 200 ms. */
void manager_counters_changed(Manager *m);

/* Whether the OFD counts as unreachable now (its circuit breaker is not closed): reports say "offline". */
bool manager_ofd_offline(Manager *m);

/* GET /v1/kkt/shift: the shift as the register last told it, its totals, whether sales are refused. */
int manager_shift_to_json(Manager *m, json_object **ret);

/* The OFD circuit breaker's state, or NULL while there is no sync module. */
const char *manager_circuit_state(Manager *m);
/* The same as the prototype spelt it: "CLOSED", "OPEN", "HALF_OPEN". */
const char *manager_circuit_state_upper(Manager *m);
