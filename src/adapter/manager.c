/* SPDX-License-Identifier: MIT */
/* Owns the life cycle of the daemon: the loop and its signal sources, the configuration and its reload,
 * the modules in start-up and stop order, and what systemd is told (READY, RELOADING, STOPPING, STATUS). */

#include <libgen.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <systemd/sd-daemon.h>

#include "http-api.h"
#include "json-util.h"
#include "log.h"
#include "manager.h"
#include "message-ids.h"
#include "time-util.h"

static void manager_apply_log_level(Manager *m) {
        log_set_max_level(m->log_level_override >= 0 ? m->log_level_override : m->config->log_level);
}

const char *manager_network_status(Manager *m) {
        return "unknown";
}

const char *manager_circuit_state(Manager *m) {
        return NULL;
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
        /* Work in flight: requests not yet answered, receipts not yet committed. */
        if (m->http && http_server_requests_in_flight(m->http) > 0)
                return false;
        if (m->intake && intake_in_flight(m->intake) > 0)
                return false;
        if (m->store && !store_is_idle(m->store))
                return false;
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

        /* The store first: it delivers the callbacks of queued jobs, which answer through intake and HTTP. */
        store_free(m->store);
        intake_free(m->intake);
        http_server_free(m->http);
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

        /* Opening the buffer blocks (migrations, integrity check), but the loop is not running yet. */
        r = store_open(&m->store, m->event, m->config->buffer_path,
                       &(StoreOptions) { .capacity = m->config->buffer_capacity });
        if (r == -EBADMSG)
                return log_error_errno(r, "Receipt buffer %s is corrupt or not a database; refusing to start. "
                                       "Move it aside for inspection; nothing will be overwritten.",
                                       m->config->buffer_path);
        if (r < 0)
                return log_error_errno(r, "Failed to open the receipt buffer %s: %m", m->config->buffer_path);

        r = intake_new(&m->intake, m->store,
                       &(ReceiptLimits) { .max_items = m->config->buffer_max_items, .max_payments = 100 });
        if (r < 0)
                return log_error_errno(r, "Failed to set up intake: %m");

        r = http_server_new(&m->http, m->event,
                            &(HttpServerOptions) {
                                    .max_body_size = m->config->http_max_body_size,
                                    .max_connections = m->config->http_max_connections,
                                    .connection_timeout = m->config->http_connection_timeout,
                                    .max_header_size = m->config->http_max_header_size,
                                    .listen = m->config->http_listen,
                            },
                            http_api_routes, m);
        if (r < 0)
                return r;
        log_info("Serving HTTP on %s, buffer %s.", http_server_describe(m->http), store_get_path(m->store));

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

static int health_add(json_object *components, const char *name, ManagerHealth h, const char *detail,
                      ManagerHealth *overall) {
        json_object *c = json_object_new_object();

        if (!c)
                return -ENOMEM;
        json_object_object_add(c, "status", json_object_new_string(health_names[h]));
        json_object_object_add(c, "detail", json_object_new_string(detail));
        if (json_object_object_add(components, name, c) < 0)
                return -ENOMEM;
        if (h > *overall)
                *overall = h;
        return 0;
}

int manager_health(Manager *m, ManagerHealth *ret, json_object **ret_json) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *components;
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
        r = health_add(components, "buffer", h, detail, &overall);
        if (r < 0)
                return r;

        json_object_object_add(o, "status", json_object_new_string(health_names[overall]));
        json_object_object_add(o, "version", json_object_new_string(PACKAGE_VERSION));
        *ret = overall;
        *ret_json = TAKE_PTR(o);
        return 0;
}

int manager_metrics(Manager *m, char **ret) {
        const StoreCounters *c = store_get_counters(m->store);
        const StoreStats *st = store_get_stats(m->store);
        const IntakeStats *is = intake_get_stats(m->intake);
        const HttpServerStats *hs = http_server_get_stats(m->http);
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        FILE *f;

        f = open_memstream(&text, &size);
        if (!f)
                return -ENOMEM;

#define METRIC(name, type, help, fmt, ...)                                                              \
        fprintf(f, "# HELP " name " " help "\n# TYPE " name " " type "\n" fmt "\n", __VA_ARGS__)

        METRIC("kkt_buffer_capacity", "gauge", "Pending receipts the buffer accepts.", "kkt_buffer_capacity %" PRIu64,
               c->capacity);
        fprintf(f, "# HELP kkt_buffer_receipts Receipts in the buffer by status.\n"
                   "# TYPE kkt_buffer_receipts gauge\n"
                   "kkt_buffer_receipts{status=\"pending\"} %" PRIu64 "\n"
                   "kkt_buffer_receipts{status=\"synced\"} %" PRIu64 "\n"
                   "kkt_buffer_receipts{status=\"failed\"} %" PRIu64 "\n",
                c->pending, c->synced, c->failed);
        METRIC("kkt_dlq_size", "gauge", "Receipts in the dead-letter queue.", "kkt_dlq_size %" PRIu64, c->dlq);
        fprintf(f, "# HELP kkt_receipts_received_total Receipt submissions by outcome.\n"
                   "# TYPE kkt_receipts_received_total counter\n"
                   "kkt_receipts_received_total{outcome=\"accepted\"} %" PRIu64 "\n"
                   "kkt_receipts_received_total{outcome=\"replayed\"} %" PRIu64 "\n"
                   "kkt_receipts_received_total{outcome=\"invalid\"} %" PRIu64 "\n"
                   "kkt_receipts_received_total{outcome=\"conflict\"} %" PRIu64 "\n"
                   "kkt_receipts_received_total{outcome=\"buffer_full\"} %" PRIu64 "\n"
                   "kkt_receipts_received_total{outcome=\"failed\"} %" PRIu64 "\n",
                is->accepted, is->replayed, is->rejected_invalid, is->rejected_conflict, is->rejected_full,
                is->failed);
        METRIC("kkt_store_transactions_total", "counter", "Group transactions committed.",
               "kkt_store_transactions_total %" PRIu64, st->n_transactions);
        METRIC("kkt_store_jobs_total", "counter", "Jobs committed in group transactions.",
               "kkt_store_jobs_total %" PRIu64, st->n_jobs);
        METRIC("kkt_store_failed_transactions_total", "counter", "Group transactions that failed.",
               "kkt_store_failed_transactions_total %" PRIu64, st->n_failed_transactions);
        METRIC("kkt_http_requests_total", "counter", "HTTP requests received.", "kkt_http_requests_total %" PRIu64,
               hs->requests);
        fprintf(f, "# HELP kkt_http_responses_total HTTP responses by status class.\n"
                   "# TYPE kkt_http_responses_total counter\n"
                   "kkt_http_responses_total{class=\"2xx\"} %" PRIu64 "\n"
                   "kkt_http_responses_total{class=\"4xx\"} %" PRIu64 "\n"
                   "kkt_http_responses_total{class=\"5xx\"} %" PRIu64 "\n",
                hs->responses_2xx, hs->responses_4xx, hs->responses_5xx);
        METRIC("kkt_http_connections", "gauge", "Open HTTP connections.", "kkt_http_connections %u", hs->connections);
#undef METRIC

        if (fclose(f) != 0)
                return -ENOMEM;
        *ret = TAKE_PTR(text);
        return 0;
}
