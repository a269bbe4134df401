/* SPDX-License-Identifier: MIT */
/* Owns the life cycle of the daemon: the loop and its signal sources, the configuration and its reload,
 * the modules in start-up and stop order, and what systemd is told (READY, RELOADING, STOPPING, STATUS). */

#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <sys/file.h>
#include <signal.h>
#include <systemd/sd-daemon.h>

#include "http-api.h"
#include "json-util.h"
#include "log.h"
#include "manager-bus.h"
#include "manager.h"
#include "token.h"
#include "memory-util.h"
#include "message-ids.h"
#include "time-util.h"

static void manager_apply_log_level(Manager *m) {
        log_set_max_level(m->log_level_override >= 0 ? m->log_level_override : m->modules.config->log_level);
}

/* Makes the adapter id derived from the machine id specific to us, so it reveals nothing else. */
#define KKT_APP_ID SD_ID128_MAKE(6f, 2c, 8e, 1a, 4b, 5d, 47, 9e, 8a, 31, c0, 7d, 52, e9, 14, b8)

#define COUNTERS_COALESCE (200 * USEC_PER_MSEC)
/* In-flight work gets this long after SIGTERM; the unit's TimeoutStopSec= is longer, so we exit on our own
 * terms (queued commits still complete in store_free()) rather than being killed. */
#define STOP_DEADLINE (20 * USEC_PER_SEC)


/* One daemon per buffer: two would both sync (and print) the same receipts. The lock lives as long as the
 * process, so a crash releases it. */
static int manager_lock_state_directory(Manager *m) {
        _cleanup_free_ char *copy = NULL;
        _cleanup_close_ int fd = -1;
        const char *dir;

        copy = strdup(m->modules.config->buffer_path);
        if (!copy)
                return log_oom();
        dir = dirname(copy);
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return log_error_errno(errno, "Failed to open the buffer's directory %s: %m", dir);
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno == EWOULDBLOCK)
                        return log_error_errno(EBUSY, "Another kkt-adapterd already uses %s (its directory is "
                                               "locked); refusing to start a second one on the same buffer.",
                                               dir);
                return log_error_errno(errno, "Failed to lock %s: %m", dir);
        }
        m->state_lock_fd = TAKE_FD(fd);
        return 0;
}

/* The groups the bus methods check callers against, resolved before the loop runs: an NSS lookup per call
 * could block the loop on a slow directory service. A group that does not exist admits nobody. */
static void manager_lookup_groups(Manager *m) {
        struct group *g;

        g = getgrnam("kkt-pos");
        m->modules.pos_gid = g ? g->gr_gid : (gid_t) -1;
        g = getgrnam("kkt-admin");
        m->modules.admin_gid = g ? g->gr_gid : (gid_t) -1;
}

static int manager_setup_adapter_id(Manager *m) {
        char buf[SD_ID128_STRING_MAX];
        sd_id128_t id;
        int r;

        if (m->modules.config->adapter_id)
                return free_and_strdup(&m->modules.adapter_id, m->modules.config->adapter_id);

        r = sd_id128_get_machine_app_specific(KKT_APP_ID, &id);
        if (r < 0)
                return log_error_errno(r, "Cannot derive the adapter id from the machine id (%m); "
                                       "set [Adapter] Id= in the configuration.");
        return asprintf(&m->modules.adapter_id, "kkt-%s", sd_id128_to_string(id, buf)) < 0 ? log_oom() : 0;
}

/* Reads a bearer token: the systemd credential first, then the configured file. */
static int manager_read_token(const char *path, const char *credential, char **ret) {
        int r;

        r = read_token(path, credential, ret);
        if (r < 0)
                return log_error_errno(r, "Failed to read the %s (credential or %s): %m", credential, strna(path));
        return 0;
}

/* [HTTP] PosToken=, AdminToken=, TLSCertificate=, TLSKey=: a credential's name, or an absolute path. */
static int manager_read_http_secret(const char *key, const char *value, SecretFlags flags, char **ret) {
        bool is_path = value && value[0] == '/';
        int r;

        r = read_secret(is_path ? value : NULL, is_path ? NULL : value, flags, ret);
        if (r < 0)
                return log_error_errno(r, "Failed to read [HTTP] %s= (%s %s): %m", key,
                                       is_path ? "file" : "credential", value);
        return 0;
}

/* The HTTP API's secrets; each NULL when not configured. */
static int manager_read_http_secrets(Manager *m, char **ret_pos_token, char **ret_admin_token,
                                     char **ret_certificate, char **ret_key) {
        const Config *c = m->modules.config;
        int r;

        r = manager_read_http_secret("PosToken", c->http_pos_token, 0, ret_pos_token);
        if (r >= 0)
                r = manager_read_http_secret("AdminToken", c->http_admin_token, 0, ret_admin_token);
        if (r >= 0)
                r = manager_read_http_secret("TLSCertificate", c->http_tls_certificate,
                                             SECRET_PEM | SECRET_PUBLIC, ret_certificate);
        if (r >= 0)
                r = manager_read_http_secret("TLSKey", c->http_tls_key, SECRET_PEM, ret_key);
        if (r < 0)
                return r;
        if (*ret_pos_token && *ret_admin_token && token_equal(*ret_pos_token, *ret_admin_token))
                return log_error_errno(EINVAL,
                                       "[HTTP] PosToken= and AdminToken= hold the same token; the POS would "
                                       "be an administrator. Give each its own.");
        return 0;
}

static int manager_heartbeat_options(Manager *m, HeartbeatOptions *o, char **token) {
        int r;

        r = manager_read_token(m->modules.config->heartbeat_token_file, "heartbeat-token", token);
        if (r < 0)
                return r;
        *o = (HeartbeatOptions) {
                .url = m->modules.config->heartbeat_url,
                .interval = m->modules.config->heartbeat_interval,
                .timeout = m->modules.config->heartbeat_timeout,
                .online_threshold = m->modules.config->heartbeat_online_threshold,
                .offline_threshold = m->modules.config->heartbeat_offline_threshold,
                .adapter_id = m->modules.adapter_id,
                .token = *token,
        };
        return 0;
}

static int manager_heartbeat_payload(Heartbeat *h, json_object **ret_buffer, const char **ret_circuit_breaker,
                                     void *userdata) {
        Manager *m = userdata;
        const StoreCounters *c = store_get_counters(m->modules.store);
        json_object *b = json_object_new_object();

        if (!b)
                return -ENOMEM;
        json_object_object_add(b, "pending", json_object_new_uint64(c->pending));
        json_object_object_add(b, "capacity", json_object_new_uint64(c->capacity));
        json_object_object_add(b, "percent_full",
                               json_object_new_double(c->capacity ? 100.0 * (double) c->pending / (double) c->capacity : 0));
        json_object_object_add(b, "synced", json_object_new_uint64(c->synced));
        json_object_object_add(b, "failed", json_object_new_uint64(c->failed));
        json_object_object_add(b, "dlq_size", json_object_new_uint64(c->dlq));
        *ret_buffer = b;
        *ret_circuit_breaker = modules_circuit_state(&m->modules);
        return 0;
}

static void manager_on_heartbeat(Heartbeat *h, HeartbeatChange what, void *userdata) {
        Manager *m = userdata;

        manager_bus_heartbeat_changed(m->bus, what & HEARTBEAT_CHANGE_STATE);
        if (what & HEARTBEAT_CHANGE_STATE)
                manager_update_status(m);
}

static int manager_on_counters_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        const StoreCounters *c = store_get_counters(m->modules.store);

        manager_bus_counters_changed(m->bus, &m->counters_published, c);
        m->counters_published = *c;
        manager_update_status(m);
        return 0;
}

void manager_counters_changed(Manager *m) {
        int r;

        if (m->freeing)
                return;

        /* A burst of receipts becomes one PropertiesChanged (and one STATUS=) per interval, not one each. */
        if (!m->counters_source) {
                r = sd_event_add_time_relative(m->modules.event, &m->counters_source, CLOCK_MONOTONIC, COUNTERS_COALESCE, 0,
                                               manager_on_counters_timer, m);
                if (r < 0) {
                        log_warning_errno(r, "Failed to schedule the counters update: %m");
                        return;
                }
                (void) sd_event_source_set_description(m->counters_source, "manager-counters");
                (void) sd_event_source_set_enabled(m->counters_source, SD_EVENT_ONESHOT);
                return;
        }
        r = sd_event_source_get_enabled(m->counters_source, NULL);
        if (r > 0)
                return; /* already armed: this change rides along */
        (void) sd_event_source_set_time_relative(m->counters_source, COUNTERS_COALESCE);
        (void) sd_event_source_set_enabled(m->counters_source, SD_EVENT_ONESHOT);
}

static void manager_on_receipt_stored(const StoreReceipt *receipt, void *userdata) {
        Manager *m = userdata;

        manager_bus_receipt_state_changed(m->bus, receipt->id, receipt_state_of(receipt));
        manager_counters_changed(m);
}

static void manager_on_print_event(Printer *p, const char *receipt_id, ReceiptState state, const char *reason,
                                   void *userdata) {
        Manager *m = userdata;
        SyncTriggerResult t;

        /* A printed receipt goes to the OFD now rather than at the next interval; triggers coalesce. */
        if (m->modules.sync && state == RECEIPT_STATE_PRINTED)
                (void) sync_trigger(m->modules.sync, &t);
        /* Counters (print_rejected, cancelled, pending) move with these. */
        if (state != RECEIPT_STATE_PRINT_FAILED)
                manager_counters_changed(m);
        if (state == RECEIPT_STATE_PRINT_REJECTED)
                manager_bus_print_rejected(m->bus, receipt_id, reason);
        manager_bus_receipt_state_changed(m->bus, receipt_id, state);
}

static void manager_apply_receipt_options(Manager *m);

static void manager_on_fiscal_day_change(FiscalDay *f, void *userdata) {
        Manager *m = userdata;
        const DeviceStatus *s = m->modules.device ? device_get_status(m->modules.device) : NULL;

        /* The register told what it is registered for: receipts are checked against that from now on. */
        if (s && s->taxations && s->taxations != m->taxations_applied) {
                m->taxations_applied = s->taxations;
                manager_apply_receipt_options(m);
        }
        manager_bus_device_changed(m->bus);
}

/* What intake checks receipts against: the register's taxation systems (as it reports them, else as
 * configured), the default cashier, the unknown-fields policy. */
static ReceiptOptions manager_receipt_options(Manager *m) {
        const DeviceStatus *s = m->modules.device ? device_get_status(m->modules.device) : NULL;
        unsigned taxations = 0;

        if (s && s->taxations)
                taxations = s->taxations;
        else
                (void) taxations_from_string(m->modules.config->device_taxation, &taxations);
        taxations &= TAXATION_ALL;
        return (ReceiptOptions) {
                .max_items = m->modules.config->buffer_max_items,
                .max_payments = 100,
                /* Absent means the register's system; a register of several takes its first. */
                .default_taxation = taxations ? (Taxation) (taxations & -taxations) : TAXATION_OSN,
                .allowed_taxations = taxations,
                .default_cashier = m->modules.config->device_cashier,
                .default_cashier_inn = m->modules.config->device_cashier_inn,
                .unknown_fields = streq(m->modules.config->intake_unknown_fields, "ignore") ? RECEIPT_UNKNOWN_FIELDS_IGNORE
                                                                                     : RECEIPT_UNKNOWN_FIELDS_REJECT,
        };
}

static void manager_apply_receipt_options(Manager *m) {
        ReceiptOptions o = manager_receipt_options(m);
        int r;

        r = intake_set_options(m->modules.intake, &o);
        if (r < 0)
                log_warning_errno(r, "Failed to apply the receipt rules, keeping the old: %m");
}

static bool manager_admit_sale(void *userdata, const char **ret_detail) {
        Manager *m = userdata;

        return m->modules.fiscal_day && fiscal_day_refuses_sales(m->modules.fiscal_day, ret_detail);
}

int manager_fiscal_day_options(Manager *m, const Config *c, FiscalDayOptions *ret) {
        AutoClose a;
        int r;

        r = auto_close_from_string(c->device_auto_close_shift, &a);
        if (r < 0)
                return r;
        *ret = (FiscalDayOptions) {
                .auto_close = a,
                .stuck_after = c->device_stuck_after,
                .status_interval = c->device_status_interval,
        };
        return 0;
}

static int manager_setup_device(Manager *m) {
        _cleanup_(erase_and_freep) char *auth = NULL;
        _cleanup_free_ char *copy = NULL, *emulator_path = NULL;
        FiscalDayOptions fo;
        unsigned taxations = 0;
        int r;

        copy = strdup(m->modules.config->buffer_path);
        if (!copy || asprintf(&emulator_path, "%s/emulator-fn.db", dirname(copy)) < 0)
                return log_oom();
        (void) taxations_from_string(m->modules.config->device_taxation, &taxations); /* checked by the configuration */
        /* A networked register's credential: the systemd credential first, then [Device] AuthFile=. */
        r = manager_read_token(m->modules.config->device_auth_file, "atol-web-auth", &auth);
        if (r < 0)
                return r;

        r = device_new(&m->modules.device, &(DeviceContext) { .event = m->modules.event, .glue = m->glue },
                       &(DeviceOptions) {
                               .driver = m->modules.config->device_driver,
                               .timeout = m->modules.config->device_timeout,
                               .serial = m->modules.config->device_serial,
                               .fn_number = m->modules.config->device_fn_number,
                               .registration_number = m->modules.config->device_registration_number,
                               .inn = m->modules.config->device_inn,
                               .cashier = m->modules.config->device_cashier,
                               .cashier_inn = m->modules.config->device_cashier_inn,
                               .taxations = taxations,
                               .emulator_path = emulator_path,
                               .print_latency_min = m->modules.config->device_print_latency_min,
                               .print_latency_max = m->modules.config->device_print_latency_max,
                               .url = m->modules.config->device_url,
                               .token = auth,
                       });
        if (r < 0)
                return log_error_errno(r, "Failed to set up the fiscal register (%s): %m", m->modules.config->device_driver);

        r = printer_new(&m->modules.printer, m->modules.event, m->modules.store, m->modules.device, NULL);
        if (r < 0)
                return log_oom();
        printer_set_event_callback(m->modules.printer, manager_on_print_event, m);
        intake_set_printer(m->modules.intake, m->modules.printer, m->modules.event, m->modules.config->device_response_timeout);

        r = manager_fiscal_day_options(m, m->modules.config, &fo);
        if (r < 0)
                return log_error_errno(r, "Bad [Device] AutoCloseShift=%s: %m", m->modules.config->device_auto_close_shift);
        r = fiscal_day_new(&m->modules.fiscal_day, m->modules.event, m->modules.device, m->modules.printer, &fo);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the fiscal day: %m");
        fiscal_day_set_change_callback(m->modules.fiscal_day, manager_on_fiscal_day_change, m);
        intake_set_admission(m->modules.intake, manager_admit_sale, m);

        r = printer_start(m->modules.printer);
        if (r < 0)
                return log_error_errno(r, "Failed to look for receipts waiting for the register: %m");
        return 0;
}

static int manager_sync_options(Manager *m, SyncOptions *o, char **token) {
        int r;

        r = manager_read_token(m->modules.config->ofd_token_file, "ofd-token", token);
        if (r < 0)
                return r;
        *o = SYNC_OPTIONS_DEFAULT;
        o->url = m->modules.config->ofd_url;
        o->timeout = m->modules.config->ofd_timeout;
        o->token = *token;
        o->interval = m->modules.config->sync_interval;
        o->batch_size = m->modules.config->sync_batch_size;
        o->max_in_flight = MIN(m->modules.config->sync_max_in_flight, SYNC_MAX_IN_FLIGHT_MAX);
        o->initial_backoff = m->modules.config->sync_initial_backoff;
        o->max_backoff = m->modules.config->sync_max_backoff;
        o->max_attempts = m->modules.config->sync_max_attempts;
        o->breaker.failure_threshold = m->modules.config->sync_failure_threshold;
        o->breaker.open_timeout = m->modules.config->sync_open_timeout;
        o->breaker.close_after = m->modules.config->sync_close_after;
        o->synced_retention = m->modules.config->buffer_synced_retention;
        o->dead_letter_retention = m->modules.config->buffer_dead_letter_retention;
        return 0;
}


static void manager_on_sync_receipt(Sync *s, const char *id, StoreStatus status, void *userdata) {
        Manager *m = userdata;

        /* Back from the DLQ too: only printed receipts are ever sent. */
        manager_bus_receipt_state_changed(m->bus, id, receipt_state_from_store(status, STORE_PRINT_PRINTED));
}

static void manager_on_dead_lettered(Sync *s, const char *id, const char *reason, void *userdata) {
        Manager *m = userdata;

        manager_bus_dead_lettered(m->bus, id, reason);
}

static void manager_on_breaker(Sync *s, BreakerState state, void *userdata) {
        Manager *m = userdata;

        manager_update_status(m);
        manager_bus_breaker_changed(m->bus);
}

static void manager_on_sync_counters(Sync *s, void *userdata) {
        manager_counters_changed(userdata);
}

static void manager_on_pass_finished(Sync *s, const SyncPassStats *stats, void *userdata) {
        Manager *m = userdata;
        usec_t last = sync_get_last_sync_usec(s);

        if (last == m->last_sync_published)
                return;
        m->last_sync_published = last;
        manager_bus_last_sync_changed(m->bus);
}

static int manager_setup_sync(Manager *m) {
        _cleanup_(erase_and_freep) char *token = NULL;
        SyncOptions o;
        int r;

        r = manager_sync_options(m, &o, &token);
        if (r < 0)
                return r;
        r = sync_new(&m->modules.sync, m->modules.event, m->modules.store, m->glue, &o,
                     (SyncCallbacks) {
                             .receipt_changed = manager_on_sync_receipt,
                             .dead_lettered = manager_on_dead_lettered,
                             .breaker_changed = manager_on_breaker,
                             .counters_changed = manager_on_sync_counters,
                             .pass_finished = manager_on_pass_finished,
                     },
                     m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the OFD sync: %m");
        r = sync_start(m->modules.sync);
        if (r < 0)
                return log_error_errno(r, "Failed to start the OFD sync: %m");
        return 0;
}

void manager_update_status(Manager *m) {
        char status[256];

        if (m->modules.stopping)
                snprintf(status, sizeof status, "Stopping: finishing in-flight work");
        else if (m->modules.store && m->modules.http) {
                const StoreCounters *c = store_get_counters(m->modules.store);
                snprintf(status, sizeof status, "Serving on %s; %" PRIu64 " of %" PRIu64 " receipts pending; network %s",
                         http_server_describe(m->modules.http), c->pending, c->capacity, modules_network_status(&m->modules));
        } else
                snprintf(status, sizeof status, "Starting");
        (void) sd_notifyf(false, "STATUS=%s", status);
}

static bool manager_is_idle(Manager *m) {
        if (m->modules.sync && !sync_is_idle(m->modules.sync))
                return false;
        /* Work in flight: requests not yet answered, receipts not yet committed, a document at the register. */
        if (m->modules.printer && !printer_is_idle(m->modules.printer))
                return false;
        if (m->modules.http && http_server_requests_in_flight(m->modules.http) > 0)
                return false;
        if (m->modules.intake && intake_in_flight(m->modules.intake) > 0)
                return false;
        if (m->modules.store && !store_is_idle(m->modules.store))
                return false;
        return true;
}

static int manager_on_stop_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        log_warning("In-flight work did not finish within %" PRIu64 " s of the stop request; exiting anyway.",
                    STOP_DEADLINE / USEC_PER_SEC);
        return sd_event_exit(m->modules.event, EXIT_FAILURE);
}

static int manager_on_exit_check(sd_event_source *s, void *userdata) {
        Manager *m = userdata;

        if (m->modules.stopping && manager_is_idle(m))
                return sd_event_exit(m->modules.event, 0);
        return 0;
}

void manager_begin_stop(Manager *m) {
        int r;

        if (m->modules.stopping)
                return;
        m->modules.stopping = true;

        (void) sd_notify(false, "STOPPING=1");
        if (m->modules.heartbeat)
                heartbeat_stop(m->modules.heartbeat);
        if (m->modules.printer)
                printer_stop(m->modules.printer);
        if (m->modules.fiscal_day)
                fiscal_day_stop(m->modules.fiscal_day);
        if (m->modules.sync)
                sync_stop(m->modules.sync);
        if (m->modules.http)
                http_server_stop_accepting(m->modules.http);
        if (m->modules.intake)
                intake_shutdown(m->modules.intake);
        log_struct(LOG_INFO, MESSAGE_ID_STOPPING, NULL, "Stopping: finishing in-flight work.");
        manager_update_status(m);

        /* Checked after every dispatched event, so the loop exits as soon as the last piece of in-flight work
         * completes, without polling. */
        r = sd_event_add_post(m->modules.event, &m->exit_check_source, manager_on_exit_check, m);
        if (r < 0) {
                log_warning_errno(r, "Failed to watch for in-flight work, exiting at once: %m");
                (void) sd_event_exit(m->modules.event, 0);
                return;
        }
        (void) sd_event_source_set_description(m->exit_check_source, "manager-exit-check");

        r = sd_event_add_time_relative(m->modules.event, &m->stop_deadline_source, CLOCK_MONOTONIC, STOP_DEADLINE, 0,
                                       manager_on_stop_deadline, m);
        if (r < 0)
                log_warning_errno(r, "Failed to arm the stop deadline: %m");
        else
                (void) sd_event_source_set_description(m->stop_deadline_source, "manager-stop-deadline");

        /* A post source only runs after later events; when nothing is in flight there may be none. */
        (void) manager_on_exit_check(m->exit_check_source, m);
}

static int manager_on_stop_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        log_debug("Received SIG%s.", si->ssi_signo == SIGTERM ? "TERM" : "INT");
        manager_begin_stop(m);
        return 0;
}

/* Also says, at start and on each reload, that the deprecated key is in use. */
static HttpServerLimits manager_http_limits(const Config *c) {
        if (c->http_connection_timeout > 0)
                log_notice("[HTTP] ConnectionTimeout= is deprecated: it now stands for HeaderTimeout=, "
                           "BodyTimeout= and IdleTimeout= where those are not set; set them instead.");
        return (HttpServerLimits) {
                .max_body_size = c->http_max_body_size,
                .max_header_size = c->http_max_header_size,
                .max_connections = c->http_max_connections,
                .max_connections_per_address = c->http_max_connections_per_address,
                .header_timeout = c->http_header_timeout,
                .body_timeout = c->http_body_timeout,
                .idle_timeout = c->http_idle_timeout,
        };
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

        if (!streq(c->http_listen, m->modules.config->http_listen) || !streq(c->buffer_path, m->modules.config->buffer_path) ||
            c->buffer_capacity != m->modules.config->buffer_capacity || !streq(c->bus_address, m->modules.config->bus_address))
                log_notice("Changes to [HTTP] Listen=, [Buffer] Path=/Capacity= and [Bus] Address= take effect "
                           "after a restart.");
        if (!streq(c->http_pos_token, m->modules.config->http_pos_token) ||
            !streq(c->http_admin_token, m->modules.config->http_admin_token) ||
            !streq(c->http_tls_certificate, m->modules.config->http_tls_certificate) ||
            !streq(c->http_tls_key, m->modules.config->http_tls_key) ||
            c->http_allow_insecure != m->modules.config->http_allow_insecure)
                log_notice("Changes to [HTTP] PosToken=, AdminToken=, TLSCertificate=, TLSKey= and "
                           "AllowInsecure= take effect after a restart (systemd passes credentials when a "
                           "service starts).");

        config_free(m->modules.config);
        m->modules.config = TAKE_PTR(c);
        m->n_reloads++;
        manager_apply_log_level(m);
        manager_apply_receipt_options(m);
        if (m->modules.fiscal_day) {
                FiscalDayOptions fo;

                if (manager_fiscal_day_options(m, m->modules.config, &fo) >= 0)
                        (void) fiscal_day_set_options(m->modules.fiscal_day, &fo);
        }
        if (m->modules.sync) {
                _cleanup_(erase_and_freep) char *token = NULL;
                SyncOptions so;

                r = manager_sync_options(m, &so, &token);
                if (r >= 0)
                        r = sync_set_options(m->modules.sync, &so);
                if (r < 0)
                        log_warning_errno(r, "Failed to apply the new sync settings, keeping the old: %m");
        }
        if (m->modules.heartbeat) {
                _cleanup_(erase_and_freep) char *token = NULL;
                HeartbeatOptions o;

                r = manager_heartbeat_options(m, &o, &token);
                if (r >= 0)
                        r = heartbeat_set_options(m->modules.heartbeat, &o);
                if (r < 0)
                        log_warning_errno(r, "Failed to apply the new heartbeat settings, keeping the old: %m");
        }
        if (m->modules.http) {
                HttpServerLimits l = manager_http_limits(m->modules.config);

                http_server_set_limits(m->modules.http, &l);
        }

        log_struct(LOG_INFO, MESSAGE_ID_RELOADED, NULL, "Configuration reloaded from %s.",
                   m->config_path ?: CONFIG_MAIN_FILE);
        (void) sd_notify(false, "READY=1");
        manager_update_status(m);
        return 0;
}

static int manager_on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        if (!m->modules.stopping)
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

        r = sd_event_add_time_relative(m->modules.event, &m->stall_source, CLOCK_MONOTONIC, after, 0, manager_on_stall,
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
        m->state_lock_fd = -1;
        m->log_level_override = options->log_level_override;

        if (options->config_path && !(m->config_path = strdup(options->config_path)))
                return -ENOMEM;
        if (options->bus_override && !(m->bus_override = strdup(options->bus_override)))
                return -ENOMEM;

        r = config_load(m->config_path, &m->modules.config, ret_error);
        if (r < 0)
                return r;
        manager_apply_log_level(m);

        r = sd_event_default(&m->modules.event);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;

        /* Callbacks still run below (the register's last answer, the store's last commits): they find these
         * cleared, and change nothing that is gone. */
        m->freeing = true;
        m->sigterm_source = sd_event_source_disable_unref(m->sigterm_source);
        m->sigint_source = sd_event_source_disable_unref(m->sigint_source);
        m->sighup_source = sd_event_source_disable_unref(m->sighup_source);
        m->exit_check_source = sd_event_source_disable_unref(m->exit_check_source);
        m->stop_deadline_source = sd_event_source_disable_unref(m->stop_deadline_source);
        m->stall_source = sd_event_source_disable_unref(m->stall_source);
        m->counters_source = sd_event_source_disable_unref(m->counters_source);
        m->bus = manager_bus_free(m->bus);

        /* Teardown in dependency order; each pointer is cleared as it goes, because the callbacks that still
         * run below look at what is left. A stopped printer starts no document, whatever calls it below. */
        if (m->modules.printer)
                printer_stop(m->modules.printer);
        if (m->modules.fiscal_day)
                fiscal_day_stop(m->modules.fiscal_day);
        /* It detaches its queued store jobs and cancels its requests: nothing calls back into it after. */
        m->modules.sync = sync_free(m->modules.sync);
        m->modules.heartbeat = heartbeat_free(m->modules.heartbeat);
        /* The register first: the callbacks it still owes go to the printer, the store, intake and HTTP. Its
         * driver may have requests in the glue: it cancels them. */
        m->modules.device = device_free(m->modules.device);
        m->glue = curl_glue_free(m->glue);
        /* Then the store: it delivers the callbacks of queued jobs, which answer through the printer,
         * intake and HTTP. */
        m->modules.store = store_free(m->modules.store);
        m->modules.intake = intake_free(m->modules.intake);
        /* A queued Z report's requester hears -ECANCELED, through the fiscal day, over HTTP or the bus. */
        m->modules.printer = printer_free(m->modules.printer);
        m->modules.fiscal_day = fiscal_day_free(m->modules.fiscal_day);
        m->modules.http = http_server_free(m->modules.http);
        sd_event_unref(m->modules.event);

        config_free(m->modules.config);
        free(m->config_path);
        free(m->bus_override);
        free(m->modules.adapter_id);
        safe_close(m->state_lock_fd);
        return mfree(m);
}

static int manager_add_signal(Manager *m, sd_event_source **s, int sig, sd_event_signal_handler_t handler,
                              const char *description) {
        int r;

        r = sd_event_add_signal(m->modules.event, s, sig, handler, m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch %s: %m", description);
        (void) sd_event_source_set_description(*s, description);
        return 0;
}

int manager_start(Manager *m) {
        _cleanup_(erase_and_freep) char *pos_token = NULL, *admin_token = NULL, *certificate = NULL, *key = NULL;
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
        r = sd_event_set_watchdog(m->modules.event, true);
        if (r < 0)
                return log_error_errno(r, "Failed to enable the watchdog: %m");
        if (r > 0)
                log_debug("Watchdog enabled.");

#if ENABLE_DEBUG_HOOKS
        r = manager_setup_stall_hook(m);
        if (r < 0)
                return r;
#endif

        r = manager_lock_state_directory(m);
        if (r < 0)
                return r;

        /* Opening the buffer blocks (migrations, integrity check), but the loop is not running yet. */
        r = store_open(&m->modules.store, m->modules.event, m->modules.config->buffer_path,
                       &(StoreOptions) { .capacity = m->modules.config->buffer_capacity });
        if (r == -EBADMSG)
                return log_error_errno(r, "Receipt buffer %s is corrupt or not a database; refusing to start. "
                                       "Move it aside for inspection; nothing will be overwritten.",
                                       m->modules.config->buffer_path);
        if (r < 0)
                return store_log_open_error(r, m->modules.config->buffer_path);

        r = manager_setup_adapter_id(m);
        if (r < 0)
                return r;
        manager_lookup_groups(m);

        {
                ReceiptOptions o = manager_receipt_options(m);

                r = intake_new(&m->modules.intake, m->modules.store, &o);
        }
        if (r < 0)
                return log_error_errno(r, "Failed to set up intake: %m");
        intake_set_stored_callback(m->modules.intake, manager_on_receipt_stored, m);

        /* Before the register: a driver on the network talks through it. */
        r = curl_glue_new(&m->glue, m->modules.event);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the HTTP client: %m");

        r = manager_setup_device(m);
        if (r < 0)
                return r;
        m->counters_published = *store_get_counters(m->modules.store);

        r = manager_read_http_secrets(m, &pos_token, &admin_token, &certificate, &key);
        if (r < 0)
                return r;
        r = http_server_new(&m->modules.http, m->modules.event,
                            &(HttpServerOptions) {
                                    .limits = manager_http_limits(m->modules.config),
                                    .listen = m->modules.config->http_listen,
                                    .pos_token = pos_token,
                                    .admin_token = admin_token,
                                    .tls_certificate = certificate,
                                    .tls_key = key,
                                    .allow_insecure = m->modules.config->http_allow_insecure,
                            },
                            http_api_routes, &m->modules);
        if (r < 0)
                return r;
        log_info("Serving HTTP%s on %s, buffer %s.", key ? "S" : "", http_server_describe(m->modules.http),
                 store_get_path(m->modules.store));
        log_info("HTTP access: POS paths %s, administrative paths %s.",
                 pos_token ? "need the POS token" : "open (no POS token configured)",
                 admin_token ? "need the admin token" : "closed (no admin token configured)");

        {
                _cleanup_(erase_and_freep) char *token = NULL;
                HeartbeatOptions o;

                r = manager_heartbeat_options(m, &o, &token);
                if (r < 0)
                        return r;
                r = heartbeat_new(&m->modules.heartbeat, m->modules.event, m->glue, &o, manager_heartbeat_payload,
                                  manager_on_heartbeat, m);
                if (r < 0)
                        return log_error_errno(r, "Failed to set up the heartbeat: %m");
                r = heartbeat_start(m->modules.heartbeat);
                if (r < 0)
                        return log_error_errno(r, "Failed to start the heartbeat: %m");
        }

        r = manager_setup_sync(m);
        if (r < 0)
                return r;

        /* The bus is a second door, not a precondition: without it receipts still come over HTTP. */
        r = manager_bus_new(&m->bus, &m->modules, m->bus_override ?: m->modules.config->bus_address);
        if (r < 0)
                return log_oom();
        manager_bus_start(m->bus);

        log_struct(LOG_INFO, MESSAGE_ID_STARTED, NULL, "kkt-adapter %s started.", PACKAGE_VERSION);
        (void) sd_notify(false, "READY=1");
        manager_update_status(m);
        return 0;
}

int manager_run(Manager *m) {
        return sd_event_loop(m->modules.event);
}

