/* SPDX-License-Identifier: MIT */
/* Owns the life cycle of the daemon: the loop and its signal sources, the configuration and its reload,
 * the modules in start-up and stop order, and what systemd is told (READY, RELOADING, STOPPING, STATUS). */

#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <sys/file.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <systemd/sd-daemon.h>

#include "http-api.h"
#include "json-util.h"
#include "log.h"
#include "manager-bus.h"
#include "manager.h"
#include "token.h"
#include "message-ids.h"
#include "time-util.h"

static void manager_apply_log_level(Manager *m) {
        log_set_max_level(m->log_level_override >= 0 ? m->log_level_override : m->config->log_level);
}

/* Makes the adapter id derived from the machine id specific to us, so it reveals nothing else. */
#define KKT_APP_ID SD_ID128_MAKE(6f, 2c, 8e, 1a, 4b, 5d, 47, 9e, 8a, 31, c0, 7d, 52, e9, 14, b8)

#define BUS_RECONNECT_MIN (1 * USEC_PER_SEC)
#define BUS_RECONNECT_MAX (30 * USEC_PER_SEC)
#define COUNTERS_COALESCE (200 * USEC_PER_MSEC)
/* In-flight work gets this long after SIGTERM; the unit's TimeoutStopSec= is longer, so we exit on our own
 * terms (queued commits still complete in store_free()) rather than being killed. */
#define STOP_DEADLINE (20 * USEC_PER_SEC)

const char *manager_network_status(Manager *m) {
        return heartbeat_state_to_string(m->heartbeat ? heartbeat_get_state(m->heartbeat) : HEARTBEAT_UNKNOWN);
}

const char *manager_buffer_network_status(Manager *m) {
        const StoreCounters *c = store_get_counters(m->store);
        HeartbeatState h = m->heartbeat ? heartbeat_get_state(m->heartbeat) : HEARTBEAT_UNKNOWN;

        if (h == HEARTBEAT_OFFLINE)
                return "offline";
        /* The prototype's rule, which its clients know: receipts still waiting for the OFD make the link
         * "degraded", half the capacity waiting or more "offline". */
        if (c->pending > 0)
                return c->pending * 2 < c->capacity ? "degraded" : "offline";
        return heartbeat_state_to_string(h);
}

json_object *manager_percent_full_to_json(Manager *m) {
        const StoreCounters *c = store_get_counters(m->store);
        uint64_t hundredths = 0;
        char text[32];

        /* pending / capacity * 100 rounded to two decimals, as the prototype's view did, in integers; the
         * number token is that text. */
        if (c->capacity > 0)
                hundredths = (MIN(c->pending, UINT64_MAX / 20000) * 20000 / c->capacity + 1) / 2;
        snprintf(text, sizeof text, "%" PRIu64 ".%02" PRIu64, hundredths / 100, hundredths % 100);
        return json_object_new_double_s(strtod(text, NULL), text);
}

const char *manager_circuit_state_upper(Manager *m) {
        static const char *const names[_BREAKER_STATE_MAX] = {
                [BREAKER_CLOSED] = "CLOSED",
                [BREAKER_OPEN] = "OPEN",
                [BREAKER_HALF_OPEN] = "HALF_OPEN",
        };
        BreakerState s;

        if (!m->sync)
                return NULL;
        s = sync_get_breaker_state(m->sync);
        return s >= 0 && s < _BREAKER_STATE_MAX ? names[s] : NULL;
}

bool manager_ofd_offline(Manager *m) {
        return m->sync && sync_get_breaker_state(m->sync) != BREAKER_CLOSED;
}

int manager_shift_to_json(Manager *m, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *totals = NULL;
        const DeviceStatus *s = m->device ? device_get_status(m->device) : NULL;
        int r;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if ((r = json_add(o, "known", json_object_new_boolean(s != NULL))) < 0 ||
            (r = json_add(o, "shift_number", json_object_new_int64(s ? s->shift_number : 0))) < 0 ||
            (r = json_add(o, "shift_open", json_object_new_boolean(s && s->shift_open))) < 0)
                return r;
        if (s && s->shift_open && s->shift_open_usec > 0) {
                char t1[FORMAT_ISO8601_MAX], t2[FORMAT_ISO8601_MAX];

                if ((r = json_add(o, "opened_at", json_object_new_string(format_iso8601_utc(t1, sizeof t1, s->shift_open_usec)))) < 0 ||
                    (r = json_add(o, "expires_at",
                                  json_object_new_string(format_iso8601_utc(
                                          t2, sizeof t2, usec_add(s->shift_open_usec, DEVICE_SHIFT_MAX_USEC))))) < 0)
                        return r;
        }
        r = device_totals_to_json(s ? &s->shift_totals : &(DeviceTotals) {}, &totals);
        if (r < 0)
                return r;
        if ((r = json_add(o, "totals", TAKE_PTR(totals))) < 0 ||
            (r = json_add(o, "sales_refused", json_object_new_boolean(m->fiscal_day && fiscal_day_refuses_sales(m->fiscal_day, NULL)))) < 0 ||
            (r = json_add(o, "close_pending", json_object_new_boolean(m->printer && printer_close_pending(m->printer)))) < 0 ||
            (r = json_add(o, "auto_close", json_object_new_string(m->config->device_auto_close_shift))) < 0)
                return r;
        *ret = TAKE_PTR(o);
        return 0;
}

const char *manager_circuit_state(Manager *m) {
        return m->sync ? breaker_state_to_string(sync_get_breaker_state(m->sync)) : NULL;
}

/* One daemon per buffer: two would both sync (and print) the same receipts. The lock lives as long as the
 * process, so a crash releases it. */
static int manager_lock_state_directory(Manager *m) {
        _cleanup_free_ char *copy = NULL;
        _cleanup_close_ int fd = -1;
        const char *dir;

        copy = strdup(m->config->buffer_path);
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
        m->pos_gid = g ? g->gr_gid : (gid_t) -1;
        g = getgrnam("kkt-admin");
        m->admin_gid = g ? g->gr_gid : (gid_t) -1;
}

static int manager_setup_adapter_id(Manager *m) {
        char buf[SD_ID128_STRING_MAX];
        sd_id128_t id;
        int r;

        if (m->config->adapter_id)
                return free_and_strdup(&m->adapter_id, m->config->adapter_id);

        r = sd_id128_get_machine_app_specific(KKT_APP_ID, &id);
        if (r < 0)
                return log_error_errno(r, "Cannot derive the adapter id from the machine id (%m); "
                                       "set [Adapter] Id= in the configuration.");
        return asprintf(&m->adapter_id, "kkt-%s", sd_id128_to_string(id, buf)) < 0 ? log_oom() : 0;
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
        const Config *c = m->config;
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

        r = manager_read_token(m->config->heartbeat_token_file, "heartbeat-token", token);
        if (r < 0)
                return r;
        *o = (HeartbeatOptions) {
                .url = m->config->heartbeat_url,
                .interval = m->config->heartbeat_interval,
                .timeout = m->config->heartbeat_timeout,
                .online_threshold = m->config->heartbeat_online_threshold,
                .offline_threshold = m->config->heartbeat_offline_threshold,
                .adapter_id = m->adapter_id,
                .token = *token,
        };
        return 0;
}

static int manager_heartbeat_payload(Heartbeat *h, json_object **ret_buffer, const char **ret_circuit_breaker,
                                     void *userdata) {
        Manager *m = userdata;
        const StoreCounters *c = store_get_counters(m->store);
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
        *ret_circuit_breaker = manager_circuit_state(m);
        return 0;
}

static void manager_on_heartbeat(Heartbeat *h, HeartbeatChange what, void *userdata) {
        Manager *m = userdata;
        int r;

        if (m->bus && m->bus_name_acquired) {
                if (what & HEARTBEAT_CHANGE_STATE)
                        r = sd_bus_emit_properties_changed(m->bus, KKT_BUS_PATH, KKT_BUS_INTERFACE, "State",
                                                           "LastHeartbeatUSec", "LastHeartbeatResult",
                                                           "ConsecutiveSuccesses", "ConsecutiveFailures", NULL);
                else
                        r = sd_bus_emit_properties_changed(m->bus, KKT_BUS_PATH, KKT_BUS_INTERFACE,
                                                           "LastHeartbeatUSec", "LastHeartbeatResult",
                                                           "ConsecutiveSuccesses", "ConsecutiveFailures", NULL);
                if (r < 0)
                        log_debug_errno(r, "Failed to emit PropertiesChanged: %m");
        }
        if (what & HEARTBEAT_CHANGE_STATE)
                manager_update_status(m);
}

static int manager_on_counters_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        const StoreCounters *c = store_get_counters(m->store);
        const char *changed[7];
        size_t n = 0;
        int r;

        if (c->pending != m->counters_published.pending)
                changed[n++] = "Pending";
        if (c->synced != m->counters_published.synced)
                changed[n++] = "Synced";
        if (c->failed != m->counters_published.failed)
                changed[n++] = "Failed";
        if (c->dlq != m->counters_published.dlq)
                changed[n++] = "DeadLettered";
        if (c->capacity != m->counters_published.capacity)
                changed[n++] = "Capacity";
        if (c->print_rejected != m->counters_published.print_rejected)
                changed[n++] = "PrintRejected";
        changed[n] = NULL;
        m->counters_published = *c;

        manager_update_status(m);
        if (n == 0 || !m->bus || !m->bus_name_acquired)
                return 0;
        r = sd_bus_emit_properties_changed_strv(m->bus, KKT_BUS_PATH, KKT_BUS_INTERFACE, (char **) changed);
        if (r < 0)
                log_debug_errno(r, "Failed to emit PropertiesChanged: %m");
        return 0;
}

void manager_counters_changed(Manager *m) {
        int r;

        if (m->freeing)
                return;

        /* A burst of receipts becomes one PropertiesChanged (and one STATUS=) per interval, not one each. */
        if (!m->counters_source) {
                r = sd_event_add_time_relative(m->event, &m->counters_source, CLOCK_MONOTONIC, COUNTERS_COALESCE, 0,
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
        int r;

        if (m->bus && m->bus_name_acquired) {
                r = sd_bus_emit_signal(m->bus, KKT_BUS_PATH, KKT_BUS_INTERFACE, "ReceiptStateChanged", "ss",
                                       receipt->id, intake_receipt_status(receipt));
                if (r < 0)
                        log_debug_errno(r, "Failed to emit ReceiptStateChanged: %m");
        }
        manager_counters_changed(m);
}

static void manager_on_print_event(Printer *p, const char *receipt_id, const char *status, const char *reason,
                                   void *userdata) {
        Manager *m = userdata;
        SyncTriggerResult t;
        int r;

        /* A printed receipt goes to the OFD now rather than at the next interval; triggers coalesce. */
        if (m->sync && streq(status, "printed"))
                (void) sync_trigger(m->sync, &t);
        /* Counters (print_rejected, cancelled, pending) move with these. */
        if (!streq(status, "print_failed"))
                manager_counters_changed(m);
        if (m->bus && m->bus_name_acquired && streq(status, "print_rejected")) {
                r = sd_bus_emit_signal(m->bus, KKT_BUS_PATH, KKT_BUS_INTERFACE, "PrintRejected", "ss", receipt_id,
                                       strempty(reason));
                if (r < 0)
                        log_debug_errno(r, "Failed to emit PrintRejected: %m");
        }

        if (m->bus && m->bus_name_acquired) {
                r = sd_bus_emit_signal(m->bus, KKT_BUS_PATH, KKT_BUS_INTERFACE, "ReceiptStateChanged", "ss",
                                       receipt_id, status);
                if (r < 0)
                        log_debug_errno(r, "Failed to emit ReceiptStateChanged: %m");
        }
}

static void manager_apply_receipt_options(Manager *m);

static void manager_on_fiscal_day_change(FiscalDay *f, void *userdata) {
        Manager *m = userdata;
        const DeviceStatus *s = m->device ? device_get_status(m->device) : NULL;
        int r;

        /* The register told what it is registered for: receipts are checked against that from now on. */
        if (s && s->taxations && s->taxations != m->taxations_applied) {
                m->taxations_applied = s->taxations;
                manager_apply_receipt_options(m);
        }

        if (!m->bus || !m->bus_name_acquired)
                return;
        r = sd_bus_emit_properties_changed(m->bus, KKT_BUS_PATH, KKT_BUS_INTERFACE, "DeviceState", "ShiftNumber",
                                           "ShiftOpenUSec", "LastFiscalDocument", "ShiftOpen", "ShiftExpiresUSec",
                                           "ShiftReceipts", "FnValidUntilUSec", "OfdUnsent", "OfdFirstUnsentUSec",
                                           NULL);
        if (r < 0)
                log_debug_errno(r, "Failed to emit PropertiesChanged: %m");
}

/* What intake checks receipts against: the register's taxation systems (as it reports them, else as
 * configured), the default cashier, the unknown-fields policy. */
static ReceiptOptions manager_receipt_options(Manager *m) {
        const DeviceStatus *s = m->device ? device_get_status(m->device) : NULL;
        unsigned taxations = 0;

        if (s && s->taxations)
                taxations = s->taxations;
        else
                (void) taxations_from_string(m->config->device_taxation, &taxations);
        taxations &= TAXATION_ALL;
        return (ReceiptOptions) {
                .max_items = m->config->buffer_max_items,
                .max_payments = 100,
                /* Absent means the register's system; a register of several takes its first. */
                .default_taxation = taxations ? (Taxation) (taxations & -taxations) : TAXATION_OSN,
                .allowed_taxations = taxations,
                .default_cashier = m->config->device_cashier,
                .default_cashier_inn = m->config->device_cashier_inn,
                .unknown_fields = streq(m->config->intake_unknown_fields, "ignore") ? RECEIPT_UNKNOWN_FIELDS_IGNORE
                                                                                     : RECEIPT_UNKNOWN_FIELDS_REJECT,
        };
}

static void manager_apply_receipt_options(Manager *m) {
        ReceiptOptions o = manager_receipt_options(m);
        int r;

        r = intake_set_options(m->intake, &o);
        if (r < 0)
                log_warning_errno(r, "Failed to apply the receipt rules, keeping the old: %m");
}

static bool manager_admit_sale(void *userdata, const char **ret_detail) {
        Manager *m = userdata;

        return m->fiscal_day && fiscal_day_refuses_sales(m->fiscal_day, ret_detail);
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
        _cleanup_(token_freep) char *auth = NULL;
        _cleanup_free_ char *copy = NULL, *emulator_path = NULL;
        FiscalDayOptions fo;
        unsigned taxations = 0;
        int r;

        copy = strdup(m->config->buffer_path);
        if (!copy || asprintf(&emulator_path, "%s/emulator-fn.db", dirname(copy)) < 0)
                return log_oom();
        (void) taxations_from_string(m->config->device_taxation, &taxations); /* checked by the configuration */
        /* A networked register's credential: the systemd credential first, then [Device] AuthFile=. */
        r = manager_read_token(m->config->device_auth_file, "atol-web-auth", &auth);
        if (r < 0)
                return r;

        r = device_new(&m->device, &(DeviceContext) { .event = m->event, .glue = m->glue },
                       &(DeviceOptions) {
                               .driver = m->config->device_driver,
                               .timeout = m->config->device_timeout,
                               .serial = m->config->device_serial,
                               .fn_number = m->config->device_fn_number,
                               .registration_number = m->config->device_registration_number,
                               .inn = m->config->device_inn,
                               .cashier = m->config->device_cashier,
                               .cashier_inn = m->config->device_cashier_inn,
                               .taxations = taxations,
                               .emulator_path = emulator_path,
                               .print_latency_min = m->config->device_print_latency_min,
                               .print_latency_max = m->config->device_print_latency_max,
                               .url = m->config->device_url,
                               .token = auth,
                       });
        if (r < 0)
                return log_error_errno(r, "Failed to set up the fiscal register (%s): %m", m->config->device_driver);

        r = printer_new(&m->printer, m->event, m->store, m->device, NULL);
        if (r < 0)
                return log_oom();
        printer_set_event_callback(m->printer, manager_on_print_event, m);
        intake_set_printer(m->intake, m->printer, m->event, m->config->device_response_timeout);

        r = manager_fiscal_day_options(m, m->config, &fo);
        if (r < 0)
                return log_error_errno(r, "Bad [Device] AutoCloseShift=%s: %m", m->config->device_auto_close_shift);
        r = fiscal_day_new(&m->fiscal_day, m->event, m->device, m->printer, &fo);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the fiscal day: %m");
        fiscal_day_set_change_callback(m->fiscal_day, manager_on_fiscal_day_change, m);
        intake_set_admission(m->intake, manager_admit_sale, m);

        r = printer_start(m->printer);
        if (r < 0)
                return log_error_errno(r, "Failed to look for receipts waiting for the register: %m");
        return 0;
}

static int manager_sync_options(Manager *m, SyncOptions *o, char **token) {
        int r;

        r = manager_read_token(m->config->ofd_token_file, "ofd-token", token);
        if (r < 0)
                return r;
        *o = SYNC_OPTIONS_DEFAULT;
        o->url = m->config->ofd_url;
        o->timeout = m->config->ofd_timeout;
        o->token = *token;
        o->interval = m->config->sync_interval;
        o->batch_size = m->config->sync_batch_size;
        o->max_in_flight = MIN(m->config->sync_max_in_flight, SYNC_MAX_IN_FLIGHT_MAX);
        o->initial_backoff = m->config->sync_initial_backoff;
        o->max_backoff = m->config->sync_max_backoff;
        o->max_attempts = m->config->sync_max_attempts;
        o->breaker.failure_threshold = m->config->sync_failure_threshold;
        o->breaker.open_timeout = m->config->sync_open_timeout;
        o->breaker.close_after = m->config->sync_close_after;
        o->synced_retention = m->config->buffer_synced_retention;
        o->dead_letter_retention = m->config->buffer_dead_letter_retention;
        return 0;
}

static const char *manager_status_name(StoreStatus s) {
        switch (s) {
        case STORE_STATUS_SYNCED:
                return "synced";
        case STORE_STATUS_DLQ:
                return "dead_letter";
        default:
                return "printed"; /* back from the DLQ: only printed receipts are ever sent */
        }
}

static void manager_on_sync_receipt(Sync *s, const char *id, StoreStatus status, void *userdata) {
        Manager *m = userdata;
        int r;

        if (!m->bus || !m->bus_name_acquired)
                return;
        r = sd_bus_emit_signal(m->bus, KKT_BUS_PATH, KKT_BUS_INTERFACE, "ReceiptStateChanged", "ss", id,
                               manager_status_name(status));
        if (r < 0)
                log_debug_errno(r, "Failed to emit ReceiptStateChanged: %m");
}

static void manager_on_dead_lettered(Sync *s, const char *id, const char *reason, void *userdata) {
        Manager *m = userdata;
        int r;

        if (!m->bus || !m->bus_name_acquired)
                return;
        r = sd_bus_emit_signal(m->bus, KKT_BUS_PATH, KKT_BUS_INTERFACE, "DeadLettered", "ss", id, strempty(reason));
        if (r < 0)
                log_debug_errno(r, "Failed to emit DeadLettered: %m");
}

static void manager_on_breaker(Sync *s, BreakerState state, void *userdata) {
        Manager *m = userdata;
        int r;

        manager_update_status(m);
        if (!m->bus || !m->bus_name_acquired)
                return;
        r = sd_bus_emit_properties_changed(m->bus, KKT_BUS_PATH, KKT_BUS_INTERFACE, "CircuitState", NULL);
        if (r < 0)
                log_debug_errno(r, "Failed to emit PropertiesChanged: %m");
}

static void manager_on_sync_counters(Sync *s, void *userdata) {
        manager_counters_changed(userdata);
}

static void manager_on_pass_finished(Sync *s, const SyncPassStats *stats, void *userdata) {
        Manager *m = userdata;
        usec_t last = sync_get_last_sync_usec(s);
        int r;

        if (last == m->last_sync_published)
                return;
        m->last_sync_published = last;
        if (!m->bus || !m->bus_name_acquired)
                return;
        r = sd_bus_emit_properties_changed(m->bus, KKT_BUS_PATH, KKT_BUS_INTERFACE, "LastSyncUSec", NULL);
        if (r < 0)
                log_debug_errno(r, "Failed to emit PropertiesChanged: %m");
}

static int manager_setup_sync(Manager *m) {
        _cleanup_(token_freep) char *token = NULL;
        SyncOptions o;
        int r;

        r = manager_sync_options(m, &o, &token);
        if (r < 0)
                return r;
        r = sync_new(&m->sync, m->event, m->store, m->glue, &o,
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
        r = sync_start(m->sync);
        if (r < 0)
                return log_error_errno(r, "Failed to start the OFD sync: %m");
        return 0;
}

static const char *manager_bus_address(Manager *m) {
        return m->bus_override ?: m->config->bus_address;
}

static void manager_bus_schedule_reconnect(Manager *m);

static int manager_on_bus_disconnected(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        log_warning("Lost the connection to the bus; receipts are still taken over HTTP. Reconnecting.");
        m->bus_name_acquired = false;
        m->bus = sd_bus_flush_close_unref(m->bus);
        manager_bus_schedule_reconnect(m);
        return 0;
}

static void manager_bus_name_owned(Manager *m) {
        if (m->bus_name_acquired)
                return;
        m->bus_name_acquired = true;
        m->bus_reconnect_delay = 0;
        log_info("Acquired bus name %s on %s.", KKT_BUS_NAME, manager_bus_address(m));
}

static int manager_on_name_acquired_signal(sd_bus_message *message, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const char *name;

        if (sd_bus_message_read(message, "s", &name) >= 0 && streq(name, KKT_BUS_NAME))
                manager_bus_name_owned(m);
        return 0;
}

static int manager_on_request_name(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        uint32_t result;
        int r;

        if (e) {
                log_error("Failed to acquire the bus name %s: %s", KKT_BUS_NAME, e->message ?: e->name);
                return 0;
        }
        r = sd_bus_message_read(reply, "u", &result);
        if (r < 0) {
                log_error_errno(r, "Failed to parse the answer to RequestName(): %m");
                return 0;
        }
        if (result == 1 || result == 4) /* primary owner, or already were */
                manager_bus_name_owned(m);
        else /* queued behind another owner: NameAcquired tells us when it is ours */
                log_warning("Bus name %s is owned by another process; waiting in the queue for it.",
                            KKT_BUS_NAME);
        return 0;
}

static int manager_connect_bus(Manager *m) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        const char *address = manager_bus_address(m);
        int r;

        if (streq(address, "none"))
                return 0;

        if (streq(address, "system"))
                r = sd_bus_open_system_with_description(&bus, "kkt-adapter");
        else if (streq(address, "user"))
                r = sd_bus_open_user_with_description(&bus, "kkt-adapter");
        else {
                r = sd_bus_new(&bus);
                if (r >= 0)
                        r = sd_bus_set_address(bus, address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus, true);
                if (r >= 0)
                        r = sd_bus_start(bus);
        }
        if (r < 0)
                return r;

        r = sd_bus_attach_event(bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;
        r = sd_bus_add_object_vtable(bus, NULL, KKT_BUS_PATH, KKT_BUS_INTERFACE, manager_vtable, m);
        if (r < 0)
                return r;
        r = sd_bus_match_signal_async(bus, NULL, "org.freedesktop.DBus.Local", "/org/freedesktop/DBus/Local",
                                      "org.freedesktop.DBus.Local", "Disconnected", manager_on_bus_disconnected,
                                      NULL, m);
        if (r < 0)
                return r;
        r = sd_bus_match_signal_async(bus, NULL, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                      "org.freedesktop.DBus", "NameAcquired", manager_on_name_acquired_signal,
                                      NULL, m);
        if (r < 0)
                return r;
        /* Not through sd_bus_request_name_async(): its callback does not tell "queued" from "owned". */
        r = sd_bus_call_method_async(bus, NULL, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                     "org.freedesktop.DBus", "RequestName", manager_on_request_name, m, "su",
                                     KKT_BUS_NAME, UINT32_C(0));
        if (r < 0)
                return r;

        m->bus = TAKE_PTR(bus);
        return 0;
}

static int manager_on_bus_reconnect(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        int r;

        r = manager_connect_bus(m);
        if (r < 0) {
                log_debug_errno(r, "Reconnecting to the bus failed: %m");
                manager_bus_schedule_reconnect(m);
        }
        return 0;
}

static void manager_bus_schedule_reconnect(Manager *m) {
        int r;

        if (m->stopping)
                return;
        m->bus_reconnect_delay = m->bus_reconnect_delay == 0 ? BUS_RECONNECT_MIN
                                                             : MIN(m->bus_reconnect_delay * 2, BUS_RECONNECT_MAX);
        if (!m->bus_reconnect_source) {
                r = sd_event_add_time_relative(m->event, &m->bus_reconnect_source, CLOCK_MONOTONIC,
                                               m->bus_reconnect_delay, 0, manager_on_bus_reconnect, m);
                if (r < 0) {
                        log_error_errno(r, "Failed to schedule the bus reconnection: %m");
                        return;
                }
                (void) sd_event_source_set_description(m->bus_reconnect_source, "manager-bus-reconnect");
        } else
                (void) sd_event_source_set_time_relative(m->bus_reconnect_source, m->bus_reconnect_delay);
        (void) sd_event_source_set_enabled(m->bus_reconnect_source, SD_EVENT_ONESHOT);
}

void manager_update_status(Manager *m) {
        char status[256];

        if (m->stopping)
                snprintf(status, sizeof status, "Stopping: finishing in-flight work");
        else if (m->store && m->http) {
                const StoreCounters *c = store_get_counters(m->store);
                snprintf(status, sizeof status, "Serving on %s; %" PRIu64 " of %" PRIu64 " receipts pending; network %s",
                         http_server_describe(m->http), c->pending, c->capacity, manager_network_status(m));
        } else
                snprintf(status, sizeof status, "Starting");
        (void) sd_notifyf(false, "STATUS=%s", status);
}

static bool manager_is_idle(Manager *m) {
        if (m->sync && !sync_is_idle(m->sync))
                return false;
        /* Work in flight: requests not yet answered, receipts not yet committed, a document at the register. */
        if (m->printer && !printer_is_idle(m->printer))
                return false;
        if (m->http && http_server_requests_in_flight(m->http) > 0)
                return false;
        if (m->intake && intake_in_flight(m->intake) > 0)
                return false;
        if (m->store && !store_is_idle(m->store))
                return false;
        return true;
}

static int manager_on_stop_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        log_warning("In-flight work did not finish within %" PRIu64 " s of the stop request; exiting anyway.",
                    STOP_DEADLINE / USEC_PER_SEC);
        return sd_event_exit(m->event, EXIT_FAILURE);
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
        if (m->heartbeat)
                heartbeat_stop(m->heartbeat);
        if (m->printer)
                printer_stop(m->printer);
        if (m->fiscal_day)
                fiscal_day_stop(m->fiscal_day);
        if (m->sync)
                sync_stop(m->sync);
        if (m->http)
                http_server_stop_accepting(m->http);
        if (m->intake)
                intake_shutdown(m->intake);
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

        r = sd_event_add_time_relative(m->event, &m->stop_deadline_source, CLOCK_MONOTONIC, STOP_DEADLINE, 0,
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

        if (!streq(c->http_listen, m->config->http_listen) || !streq(c->buffer_path, m->config->buffer_path) ||
            c->buffer_capacity != m->config->buffer_capacity || !streq(c->bus_address, m->config->bus_address))
                log_notice("Changes to [HTTP] Listen=, [Buffer] Path=/Capacity= and [Bus] Address= take effect "
                           "after a restart.");
        if (!streq(c->http_pos_token, m->config->http_pos_token) ||
            !streq(c->http_admin_token, m->config->http_admin_token) ||
            !streq(c->http_tls_certificate, m->config->http_tls_certificate) ||
            !streq(c->http_tls_key, m->config->http_tls_key) ||
            c->http_allow_insecure != m->config->http_allow_insecure)
                log_notice("Changes to [HTTP] PosToken=, AdminToken=, TLSCertificate=, TLSKey= and "
                           "AllowInsecure= take effect after a restart (systemd passes credentials when a "
                           "service starts).");

        config_free(m->config);
        m->config = TAKE_PTR(c);
        m->n_reloads++;
        manager_apply_log_level(m);
        manager_apply_receipt_options(m);
        if (m->fiscal_day) {
                FiscalDayOptions fo;

                if (manager_fiscal_day_options(m, m->config, &fo) >= 0)
                        (void) fiscal_day_set_options(m->fiscal_day, &fo);
        }
        if (m->sync) {
                _cleanup_(token_freep) char *token = NULL;
                SyncOptions so;

                r = manager_sync_options(m, &so, &token);
                if (r >= 0)
                        r = sync_set_options(m->sync, &so);
                if (r < 0)
                        log_warning_errno(r, "Failed to apply the new sync settings, keeping the old: %m");
        }
        if (m->heartbeat) {
                _cleanup_(token_freep) char *token = NULL;
                HeartbeatOptions o;

                r = manager_heartbeat_options(m, &o, &token);
                if (r >= 0)
                        r = heartbeat_set_options(m->heartbeat, &o);
                if (r < 0)
                        log_warning_errno(r, "Failed to apply the new heartbeat settings, keeping the old: %m");
        }
        if (m->http) {
                HttpServerLimits l = manager_http_limits(m->config);

                http_server_set_limits(m->http, &l);
        }

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
        m->state_lock_fd = -1;
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

        /* Callbacks still run below (the register's last answer, the store's last commits): they find these
         * cleared, and change nothing that is gone. */
        m->freeing = true;
        m->sigterm_source = sd_event_source_disable_unref(m->sigterm_source);
        m->sigint_source = sd_event_source_disable_unref(m->sigint_source);
        m->sighup_source = sd_event_source_disable_unref(m->sighup_source);
        m->exit_check_source = sd_event_source_disable_unref(m->exit_check_source);
        m->stop_deadline_source = sd_event_source_disable_unref(m->stop_deadline_source);
        m->stall_source = sd_event_source_disable_unref(m->stall_source);
        m->bus_reconnect_source = sd_event_source_disable_unref(m->bus_reconnect_source);
        m->counters_source = sd_event_source_disable_unref(m->counters_source);
        m->bus = sd_bus_flush_close_unref(m->bus);

        /* Teardown in dependency order; each pointer is cleared as it goes, because the callbacks that still
         * run below look at what is left. A stopped printer starts no document, whatever calls it below. */
        if (m->printer)
                printer_stop(m->printer);
        if (m->fiscal_day)
                fiscal_day_stop(m->fiscal_day);
        /* It detaches its queued store jobs and cancels its requests: nothing calls back into it after. */
        m->sync = sync_free(m->sync);
        m->heartbeat = heartbeat_free(m->heartbeat);
        /* The register first: the callbacks it still owes go to the printer, the store, intake and HTTP. Its
         * driver may have requests in the glue: it cancels them. */
        m->device = device_free(m->device);
        m->glue = curl_glue_free(m->glue);
        /* Then the store: it delivers the callbacks of queued jobs, which answer through the printer,
         * intake and HTTP. */
        m->store = store_free(m->store);
        m->intake = intake_free(m->intake);
        /* A queued Z report's requester hears -ECANCELED, through the fiscal day, over HTTP or the bus. */
        m->printer = printer_free(m->printer);
        m->fiscal_day = fiscal_day_free(m->fiscal_day);
        m->http = http_server_free(m->http);
        sd_event_unref(m->event);

        config_free(m->config);
        free(m->config_path);
        free(m->bus_override);
        free(m->adapter_id);
        safe_close(m->state_lock_fd);
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
        _cleanup_(token_freep) char *pos_token = NULL, *admin_token = NULL, *certificate = NULL, *key = NULL;
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

        r = manager_lock_state_directory(m);
        if (r < 0)
                return r;

        /* Opening the buffer blocks (migrations, integrity check), but the loop is not running yet. */
        r = store_open(&m->store, m->event, m->config->buffer_path,
                       &(StoreOptions) { .capacity = m->config->buffer_capacity });
        if (r == -EBADMSG)
                return log_error_errno(r, "Receipt buffer %s is corrupt or not a database; refusing to start. "
                                       "Move it aside for inspection; nothing will be overwritten.",
                                       m->config->buffer_path);
        if (r < 0)
                return store_log_open_error(r, m->config->buffer_path);

        r = manager_setup_adapter_id(m);
        if (r < 0)
                return r;
        manager_lookup_groups(m);

        {
                ReceiptOptions o = manager_receipt_options(m);

                r = intake_new(&m->intake, m->store, &o);
        }
        if (r < 0)
                return log_error_errno(r, "Failed to set up intake: %m");
        intake_set_stored_callback(m->intake, manager_on_receipt_stored, m);

        /* Before the register: a driver on the network talks through it. */
        r = curl_glue_new(&m->glue, m->event);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the HTTP client: %m");

        r = manager_setup_device(m);
        if (r < 0)
                return r;
        m->counters_published = *store_get_counters(m->store);

        r = manager_read_http_secrets(m, &pos_token, &admin_token, &certificate, &key);
        if (r < 0)
                return r;
        r = http_server_new(&m->http, m->event,
                            &(HttpServerOptions) {
                                    .limits = manager_http_limits(m->config),
                                    .listen = m->config->http_listen,
                                    .pos_token = pos_token,
                                    .admin_token = admin_token,
                                    .tls_certificate = certificate,
                                    .tls_key = key,
                                    .allow_insecure = m->config->http_allow_insecure,
                            },
                            http_api_routes, m);
        if (r < 0)
                return r;
        log_info("Serving HTTP%s on %s, buffer %s.", key ? "S" : "", http_server_describe(m->http),
                 store_get_path(m->store));
        log_info("HTTP access: POS paths %s, administrative paths %s.",
                 pos_token ? "need the POS token" : "open (no POS token configured)",
                 admin_token ? "need the admin token" : "closed (no admin token configured)");

        {
                _cleanup_(token_freep) char *token = NULL;
                HeartbeatOptions o;

                r = manager_heartbeat_options(m, &o, &token);
                if (r < 0)
                        return r;
                r = heartbeat_new(&m->heartbeat, m->event, m->glue, &o, manager_heartbeat_payload,
                                  manager_on_heartbeat, m);
                if (r < 0)
                        return log_error_errno(r, "Failed to set up the heartbeat: %m");
                r = heartbeat_start(m->heartbeat);
                if (r < 0)
                        return log_error_errno(r, "Failed to start the heartbeat: %m");
        }

        r = manager_setup_sync(m);
        if (r < 0)
                return r;

        /* The bus is a second door, not a precondition: without it receipts still come over HTTP. */
        r = manager_connect_bus(m);
        if (r < 0) {
                log_warning_errno(r, "Failed to connect to the bus %s, will retry: %m", manager_bus_address(m));
                m->bus = sd_bus_flush_close_unref(m->bus);
                manager_bus_schedule_reconnect(m);
        }

        log_struct(LOG_INFO, MESSAGE_ID_STARTED, NULL, "kkt-adapter %s started.", PACKAGE_VERSION);
        (void) sd_notify(false, "READY=1");
        manager_update_status(m);
        return 0;
}

int manager_run(Manager *m) {
        return sd_event_loop(m->event);
}

static const char *const health_names[] = {
        [MANAGER_HEALTHY] = "healthy",
        [MANAGER_DEGRADED] = "degraded",
        [MANAGER_UNHEALTHY] = "unhealthy",
};

/* Adds components[name] = {"status", "detail"}; *ret (may be NULL) is that object, for more keys. */
static int health_add_component(json_object *components, const char *name, ManagerHealth h,
                                const char *detail, ManagerHealth *overall, json_object **ret) {
        json_object *c = json_object_new_object();

        if (!c)
                return -ENOMEM;
        json_object_object_add(c, "status", json_object_new_string(health_names[h]));
        json_object_object_add(c, "detail", json_object_new_string(detail));
        if (json_object_object_add(components, name, c) < 0) {
                json_object_put(c);
                return -ENOMEM;
        }
        if (h > *overall)
                *overall = h;
        if (ret)
                *ret = c;
        return 0;
}

static int health_add(json_object *components, const char *name, ManagerHealth h, const char *detail,
                      ManagerHealth *overall) {
        return health_add_component(components, name, h, detail, overall, NULL);
}

int manager_health(Manager *m, uint64_t dead_letters_open, ManagerHealth *ret, json_object **ret_json) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *components, *component;
        const StoreCounters *c = store_get_counters(m->store);
        const IntakeStats *is = intake_get_stats(m->intake);
        ManagerHealth overall = MANAGER_HEALTHY, h;
        _cleanup_free_ char *dir = NULL;
        struct statvfs sv;
        char detail[256], b1[FORMAT_SIZE_MAX], b2[FORMAT_SIZE_MAX];
        int r;

        o = json_object_new_object();
        components = json_object_new_object();
        if (!o || !components || json_object_object_add(o, "components", components) < 0)
                return -ENOMEM;

        /* The store: a failed commit means receipts cannot be made durable. */
        if (m->stopping) {
                h = MANAGER_UNHEALTHY;
                snprintf(detail, sizeof detail, "shutting down");
        } else if (is->last_error < 0) {
                h = MANAGER_UNHEALTHY;
                snprintf(detail, sizeof detail, "the last commit to %s failed: %s", store_get_path(m->store),
                         strerror(-is->last_error));
        } else {
                h = MANAGER_HEALTHY;
                snprintf(detail, sizeof detail, "%s writable", store_get_path(m->store));
        }
        r = health_add(components, "store", h, detail, &overall);
        if (r < 0)
                return r;
        /* The prototype's name for it, with what its clients read. */
        r = health_add_component(components, "database", h, detail, &overall, &component);
        if (r >= 0)
                r = json_add(component, "type", json_object_new_string("SQLite"));
        if (r >= 0)
                r = json_add(component, "mode", json_object_new_string("WAL"));
        if (r < 0)
                return r;

        /* Disk space where the buffer lives. */
        dir = strdup(store_get_path(m->store));
        if (!dir)
                return -ENOMEM;
        if (statvfs(dirname(dir), &sv) < 0) {
                h = MANAGER_DEGRADED;
                snprintf(detail, sizeof detail, "cannot check free space: %s", strerror(errno));
        } else {
                uint64_t avail = (uint64_t) sv.f_bavail * sv.f_frsize;
                h = avail < m->config->buffer_min_free_disk ? MANAGER_DEGRADED : MANAGER_HEALTHY;
                snprintf(detail, sizeof detail, "%s free, minimum %s", format_size(b1, sizeof b1, avail),
                         format_size(b2, sizeof b2, m->config->buffer_min_free_disk));
        }
        r = health_add(components, "disk", h, detail, &overall);
        if (r < 0)
                return r;

        /* Buffer fill: full means new receipts are refused. */
        if (c->pending >= c->capacity)
                h = MANAGER_UNHEALTHY;
        else if (c->pending * 10 >= c->capacity * 8)
                h = MANAGER_DEGRADED;
        else
                h = MANAGER_HEALTHY;
        snprintf(detail, sizeof detail, "%" PRIu64 " of %" PRIu64 " pending", c->pending, c->capacity);
        if (dead_letters_open == UINT64_MAX)
                dead_letters_open = c->dlq;
        r = health_add_component(components, "buffer", h, detail, &overall, &component);
        if (r >= 0)
                r = json_add(component, "percent_full", manager_percent_full_to_json(m));
        if (r >= 0)
                r = json_add(component, "dlq_size", json_object_new_uint64(dead_letters_open));
        if (r >= 0)
                r = json_add(component, "pending", json_object_new_uint64(c->pending));
        if (r < 0)
                return r;

        /* Dead letters wait for an administrator; receipts still come in, but a growing queue means someone
         * should look (the prototype's rule and threshold). */
        h = dead_letters_open > MANAGER_HEALTH_DEAD_LETTERS_DEGRADED ? MANAGER_DEGRADED : MANAGER_HEALTHY;
        snprintf(detail, sizeof detail, "%" PRIu64 " receipts in the dead-letter queue, not resolved%s",
                 dead_letters_open, h == MANAGER_DEGRADED ? "; see GET /v1/kkt/dlq" : "");
        r = health_add(components, "dead_letters", h, detail, &overall);
        if (r < 0)
                return r;

        /* The fiscal register: a fault stops printing, receipts still become durable. */
        if (m->device) {
                DeviceState ds = device_get_state(m->device);

                h = ds == DEVICE_STATE_READY || ds == DEVICE_STATE_PRINTING ? MANAGER_HEALTHY : MANAGER_DEGRADED;
                if (ds == DEVICE_STATE_FAULT)
                        snprintf(detail, sizeof detail, "fault: %s; receipts are buffered and printed later",
                                 device_fault_to_text(device_get_fault(m->device)));
                else
                        snprintf(detail, sizeof detail, "%s (%s)", device_state_to_string(ds),
                                 device_get_driver_name(m->device));
                r = health_add(components, "device", h, detail, &overall);
                if (r < 0)
                        return r;
        }

        /* The fiscal day: the shift (24-hour rule), the fiscal drive (expiry, OFD exchange), the print queue
         * (rejected receipts, a head that does not move). */
        if (m->fiscal_day) {
                static const char *const parts[] = { "shift", "fiscal_drive", "print_queue" };

                for (size_t i = 0; i < ELEMENTSOF(parts); i++) {
                        FiscalDayHealth fh = fiscal_day_health(m->fiscal_day, parts[i], c->print_rejected, detail,
                                                               sizeof detail);

                        h = fh == FISCAL_DAY_UNHEALTHY ? MANAGER_UNHEALTHY
                            : fh == FISCAL_DAY_DEGRADED ? MANAGER_DEGRADED
                                                         : MANAGER_HEALTHY;
                        r = health_add(components, parts[i], h, detail, &overall);
                        if (r < 0)
                                return r;
                }
        }

        /* The OFD leg: an open breaker means receipts wait; they are safe, but someone should look. */
        if (m->sync) {
                BreakerState bs = sync_get_breaker_state(m->sync);

                h = bs == BREAKER_CLOSED ? MANAGER_HEALTHY : MANAGER_DEGRADED;
                snprintf(detail, sizeof detail, "circuit breaker %s", breaker_state_to_string(bs));
                r = health_add(components, "ofd", h, detail, &overall);
                if (r < 0)
                        return r;

                /* The prototype's view of the same breaker: failures and successes since the start. */
                r = health_add_component(components, "circuit_breaker", h, detail, &overall, &component);
                if (r >= 0)
                        r = json_add(component, "state",
                                     json_object_new_string(manager_circuit_state_upper(m)));
                if (r >= 0)
                        r = json_add(component, "failure_count",
                                     json_object_new_uint64(sync_get_breaker(m->sync)->n_failures));
                if (r >= 0)
                        r = json_add(component, "success_count",
                                     json_object_new_uint64(sync_get_breaker(m->sync)->n_successes));
                if (r < 0)
                        return r;
        }

        /* The ERP heartbeat: offline means receipts wait in the buffer, which is what it is for. */
        switch (m->heartbeat ? heartbeat_get_state(m->heartbeat) : HEARTBEAT_UNKNOWN) {
        case HEARTBEAT_ONLINE:
                h = MANAGER_HEALTHY;
                snprintf(detail, sizeof detail, "online");
                break;
        case HEARTBEAT_OFFLINE:
                h = MANAGER_DEGRADED;
                snprintf(detail, sizeof detail, "offline: %s; receipts are buffered",
                         strempty(heartbeat_get_last_result(m->heartbeat)));
                break;
        default:
                h = MANAGER_HEALTHY;
                snprintf(detail, sizeof detail, "no verdict yet");
                break;
        }
        r = health_add(components, "heartbeat", h, detail, &overall);
        if (r < 0)
                return r;

        json_object_object_add(o, "status", json_object_new_string(health_names[overall]));
        json_object_object_add(o, "version", json_object_new_string(PACKAGE_VERSION));
        /* What the chain's desk monitor reads. */
        json_object_object_add(o, "circuit_breaker_state",
                               json_object_new_string(manager_circuit_state_upper(m) ?: "UNKNOWN"));
        *ret = overall;
        *ret_json = TAKE_PTR(o);
        return 0;
}
