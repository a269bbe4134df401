/* SPDX-License-Identifier: MIT */
/* Owns the exposition of GET /metrics: one place that says every metric's name, type, unit and meaning and
 * writes numbers exactly from integers (usec_t, counts), without floating point; and metrics_build(),
 * which takes the snapshot of the modules that the renderer works from. */

#include <inttypes.h>
#include <stdio.h>

#include "json-util.h"
#include "health.h"
#include "metrics.h"

/* num/den with up to `decimals` digits, trailing zeros dropped: "12.5", "100", "-0.25". */
static char *format_fixed(char *buf, size_t l, bool negative, uint64_t num, uint64_t den,
                          unsigned decimals) {
        uint64_t scale = 1, whole, frac;
        size_t n;

        assert(den > 0 && decimals <= 9);
        for (unsigned i = 0; i < decimals; i++)
                scale *= 10;
        whole = num / den;
        /* The remainder is below den; den * scale stays far below 2^64 for the units used here (at most a
         * day in microseconds times 10^6). */
        frac = (num % den) * scale / den;
        if (whole == 0 && frac == 0)
                negative = false;
        snprintf(buf, l, "%s%" PRIu64 ".%0*" PRIu64, negative ? "-" : "", whole, (int) decimals, frac);
        n = strlen(buf);
        while (n > 0 && buf[n - 1] == '0')
                buf[--n] = 0;
        if (n > 0 && buf[n - 1] == '.')
                buf[--n] = 0;
        return buf;
}

char *metrics_format_seconds(char *buf, size_t l, usec_t usec) {
        return format_fixed(buf, l, false, usec, USEC_PER_SEC, 6);
}

char *metrics_format_days(char *buf, size_t l, usec_t until, usec_t now) {
        return until >= now ? format_fixed(buf, l, false, until - now, USEC_PER_DAY, 5)
                            : format_fixed(buf, l, true, now - until, USEC_PER_DAY, 5);
}

static void family(FILE *f, const char *name, const char *type, const char *help) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge_u64(FILE *f, const char *name, const char *help, uint64_t v) {
        family(f, name, "gauge", help);
        fprintf(f, "%s %" PRIu64 "\n", name, v);
}

static void counter(FILE *f, const char *name, const char *help, uint64_t v) {
        family(f, name, "counter", help);
        fprintf(f, "%s %" PRIu64 "\n", name, v);
}

static void gauge_seconds(FILE *f, const char *name, const char *help, usec_t v) {
        char b[METRICS_NUMBER_MAX];

        family(f, name, "gauge", help);
        fprintf(f, "%s %s\n", name, metrics_format_seconds(b, sizeof b, v));
}

/* A label value as the text format wants it: backslash, double quote and line feed escaped. */
static void label_value(FILE *f, const char *v) {
        for (const char *p = v; *p; p++)
                switch (*p) {
                case '\\':
                        fputs("\\\\", f);
                        break;
                case '"':
                        fputs("\\\"", f);
                        break;
                case '\n':
                        fputs("\\n", f);
                        break;
                default:
                        fputc(*p, f);
                }
}

static void histogram(FILE *f, const char *name, const char *help, const usec_t *bounds, const uint64_t *le,
                      size_t n, uint64_t count, usec_t sum) {
        char b[METRICS_NUMBER_MAX];

        family(f, name, "histogram", help);
        for (size_t i = 0; i < n; i++)
                fprintf(f, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", name,
                        metrics_format_seconds(b, sizeof b, bounds[i]), le[i]);
        fprintf(f, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, count);
        fprintf(f, "%s_sum %s\n", name, metrics_format_seconds(b, sizeof b, sum));
        fprintf(f, "%s_count %" PRIu64 "\n", name, count);
}

static void render_buffer(FILE *f, const MetricsSnapshot *s) {
        const StoreCounters *c = &s->counters;
        char b[METRICS_NUMBER_MAX];

        gauge_u64(f, "kkt_buffer_capacity", "Pending receipts the buffer accepts ([Buffer] Capacity=).",
                  c->capacity);
        family(f, "kkt_buffer_percent_full", "gauge",
               "Pending receipts as a percentage of the capacity, 0 to 100; at 100 new receipts get 503.");
        fprintf(f, "kkt_buffer_percent_full %s\n",
                c->capacity == 0 || c->pending >= c->capacity
                        ? "100"
                        : format_fixed(b, sizeof b, false, c->pending * 100, c->capacity, 3));
        family(f, "kkt_buffer_receipts", "gauge", "Receipts in the buffer by status.");
        fprintf(f,
                "kkt_buffer_receipts{status=\"pending\"} %" PRIu64 "\n"
                "kkt_buffer_receipts{status=\"synced\"} %" PRIu64 "\n"
                "kkt_buffer_receipts{status=\"failed\"} %" PRIu64 "\n",
                c->pending, c->synced, c->failed);
        gauge_u64(f, "kkt_dlq_size", "Receipts in the dead-letter queue, resolved or not, until pruned.", c->dlq);
        if (s->dlq_unresolved != UINT64_MAX)
                gauge_u64(f, "kkt_dlq_unresolved",
                          "Dead letters no administrator has resolved: not sent again until one acts.",
                          s->dlq_unresolved);
        gauge_u64(f, "kkt_print_rejected",
                  "Receipts the register rejected, set aside until an admin retries or cancels them.",
                  c->print_rejected);
        gauge_u64(f, "kkt_receipts_cancelled", "Rejected receipts an admin cancelled, still in the buffer.",
                  c->cancelled);
        gauge_seconds(f, "kkt_buffer_oldest_unsynced_age_seconds",
                      "Age of the oldest receipt in the buffer the OFD has not acknowledged (0: none).",
                      c->oldest_unsynced > 0 ? usec_sub_unsigned(s->now, c->oldest_unsynced) : 0);
}

static void render_intake(FILE *f, const MetricsSnapshot *s) {
        const IntakeStats *is = &s->intake;

        family(f, "kkt_receipts_received_total", "counter", "Receipt submissions by outcome.");
        fprintf(f,
                "kkt_receipts_received_total{outcome=\"accepted\"} %" PRIu64 "\n"
                "kkt_receipts_received_total{outcome=\"replayed\"} %" PRIu64 "\n"
                "kkt_receipts_received_total{outcome=\"invalid\"} %" PRIu64 "\n"
                "kkt_receipts_received_total{outcome=\"conflict\"} %" PRIu64 "\n"
                "kkt_receipts_received_total{outcome=\"buffer_full\"} %" PRIu64 "\n"
                "kkt_receipts_received_total{outcome=\"refused\"} %" PRIu64 "\n"
                "kkt_receipts_received_total{outcome=\"failed\"} %" PRIu64 "\n",
                is->accepted, is->replayed, is->rejected_invalid, is->rejected_conflict, is->rejected_full,
                is->rejected_refused, is->failed);
        histogram(f, "kkt_intake_latency_seconds",
                  "Time from a receipt submission (HTTP or D-Bus) to its answer, measured on the loop.",
                  intake_latency_bounds, is->latency.le, INTAKE_LATENCY_BUCKETS, is->latency.count,
                  is->latency.sum);
}

static void render_server(FILE *f, const MetricsSnapshot *s) {
        counter(f, "kkt_store_transactions_total", "Group transactions committed.", s->store.n_transactions);
        counter(f, "kkt_store_jobs_total", "Jobs committed in group transactions.", s->store.n_jobs);
        counter(f, "kkt_store_failed_transactions_total", "Group transactions that failed.",
                s->store.n_failed_transactions);
        counter(f, "kkt_http_requests_total", "HTTP requests received.", s->http.requests);
        family(f, "kkt_http_responses_total", "counter", "HTTP responses by status class.");
        fprintf(f,
                "kkt_http_responses_total{class=\"2xx\"} %" PRIu64 "\n"
                "kkt_http_responses_total{class=\"4xx\"} %" PRIu64 "\n"
                "kkt_http_responses_total{class=\"5xx\"} %" PRIu64 "\n",
                s->http.responses_2xx, s->http.responses_4xx, s->http.responses_5xx);
        gauge_u64(f, "kkt_http_connections", "Open HTTP connections.", s->http.connections);
        if (s->health >= 0 && s->health < _HEALTH_MAX)
                gauge_u64(
                        f, "kkt_health_state",
                        "The verdict of GET /v1/health: 0 healthy, 1 degraded, 2 unhealthy (answered 503).",
                        (uint64_t) s->health);
}

static void render_heartbeat(FILE *f, const MetricsSnapshot *s) {
        gauge_u64(f, "kkt_heartbeat_online", "1 while the ERP heartbeat says online, else 0.",
                  s->heartbeat == HEARTBEAT_ONLINE);
        /* Numbered so that the bad state is the highest, as for the breaker. */
        gauge_u64(f, "kkt_heartbeat_state",
                  "The ERP heartbeat: 0 unknown (no verdict yet), 1 online, 2 offline.",
                  s->heartbeat == HEARTBEAT_OFFLINE  ? 2
                  : s->heartbeat == HEARTBEAT_ONLINE ? 1
                                                     : 0);
        gauge_u64(f, "kkt_heartbeat_consecutive_failures", "Heartbeats failed in a row (0 after a success).",
                  s->heartbeat_failures);
        counter(f, "kkt_heartbeats_total", "Heartbeats finished, answered or failed.", s->heartbeats);
}

static void render_printer(FILE *f, const MetricsSnapshot *s) {
        if (!s->have_printer)
                return;
        counter(f, "kkt_receipts_printed_total", "Receipts the register printed.", s->printer.printed);
        counter(f, "kkt_print_rejections_total", "Receipts the register rejected for good.",
                s->printer.rejected);
        counter(f, "kkt_print_failed_attempts_total", "Print attempts the register failed.",
                s->printer.failed_attempts);
        gauge_u64(f, "kkt_print_queue_length",
                  "Documents waiting for the register, the one it prints included.", s->print_queue_length);
        gauge_seconds(f, "kkt_print_queue_head_wait_seconds",
                      "How long the next document has waited for the register (0: queue empty).",
                      s->print_head_wait);
        gauge_seconds(f, "kkt_print_queue_stuck_after_seconds",
                      "The head wait from which the queue counts as stuck ([Device] StuckAfter=).",
                      s->print_stuck_after);
}

static void render_device(FILE *f, const MetricsSnapshot *s) {
        const DeviceStatus *ds = s->device;
        char b[METRICS_NUMBER_MAX];

        if (!ds)
                return;
        gauge_u64(f, "kkt_shift_open", "1 while a shift is open at the register, else 0.", ds->shift_open);
        gauge_seconds(
                f, "kkt_shift_open_seconds",
                "How long the open shift has been open (0: none); the register refuses sales at 24 hours.",
                ds->shift_open && ds->shift_open_usec ? usec_sub_unsigned(s->now, ds->shift_open_usec) : 0);
        gauge_u64(f, "kkt_shift_receipts", "Receipts in the open shift.",
                  ds->shift_open ? device_totals_receipts(&ds->shift_totals) : 0);
        if (ds->fn_valid_until > 0) {
                /* In days, not seconds: the chain's alert rules read this name. */
                family(f, "kkt_fiscal_memory_days_left", "gauge",
                       "Days until the fiscal drive (FN) expires (negative once expired).");
                fprintf(f, "kkt_fiscal_memory_days_left %s\n",
                        metrics_format_days(b, sizeof b, ds->fn_valid_until, s->now));
        }
        gauge_u64(f, "kkt_ofd_unsent_documents",
                  "Fiscal documents the register has not had confirmed by the OFD.", ds->ofd.unsent);
        gauge_seconds(f, "kkt_ofd_oldest_unsent_age_seconds",
                      "Age of the oldest fiscal document the OFD has not confirmed (0: none).",
                      ds->ofd.unsent && ds->ofd.first_unsent_usec
                              ? usec_sub_unsigned(s->now, ds->ofd.first_unsent_usec)
                              : 0);
}

/* The 30-day limit, from the older of the two things the OFD has not acknowledged: a receipt in the buffer,
 * a document in the register. */
static void render_ofd_limit(FILE *f, const MetricsSnapshot *s) {
        usec_t oldest = s->counters.oldest_unsynced, limit;
        char b[METRICS_NUMBER_MAX];

        if (s->device && s->device->ofd.unsent && s->device->ofd.first_unsent_usec &&
            (oldest == 0 || s->device->ofd.first_unsent_usec < oldest))
                oldest = s->device->ofd.first_unsent_usec;
        family(f, "kkt_ofd_limit_remaining_seconds", "gauge",
               "Time left until the oldest receipt or fiscal document not acknowledged by the OFD is 30 "
               "days old, when the register blocks (30 days when there is none; negative once passed).");
        if (oldest == 0) {
                fprintf(f, "kkt_ofd_limit_remaining_seconds %s\n",
                        metrics_format_seconds(b, sizeof b, METRICS_OFD_LIMIT));
                return;
        }
        limit = usec_add(oldest, METRICS_OFD_LIMIT);
        fprintf(f, "kkt_ofd_limit_remaining_seconds %s%s\n", limit >= s->now ? "" : "-",
                metrics_format_seconds(b, sizeof b, limit >= s->now ? limit - s->now : s->now - limit));
}

static void render_sync(FILE *f, const MetricsSnapshot *s) {
        const SyncMetrics *sm = &s->sync;

        if (!s->have_sync)
                return;
        counter(f, "kkt_receipts_synced_total", "Receipts the OFD confirmed.", sm->synced);
        counter(f, "kkt_sync_requests_total", "Requests sent to the OFD.", sm->sent);
        counter(f, "kkt_sync_failed_attempts_total", "Failed attempts counted against receipts.",
                sm->failed_attempts);
        counter(f, "kkt_receipts_dead_lettered_total", "Receipts moved to the dead-letter queue.",
                sm->dead_lettered);
        /* One number, as the chain's rules compare it (== 2 is open); the state set below for humans. */
        gauge_u64(f, "kkt_circuit_breaker_state", "The OFD circuit breaker: 0 closed, 1 half-open, 2 open.",
                  s->breaker == BREAKER_OPEN        ? 2
                  : s->breaker == BREAKER_HALF_OPEN ? 1
                                                    : 0);
        family(f, "kkt_circuit_breaker_status", "gauge",
               "The OFD circuit breaker as a state set: 1 for its state.");
        fprintf(f,
                "kkt_circuit_breaker_status{state=\"closed\"} %d\n"
                "kkt_circuit_breaker_status{state=\"open\"} %d\n"
                "kkt_circuit_breaker_status{state=\"half_open\"} %d\n",
                s->breaker == BREAKER_CLOSED, s->breaker == BREAKER_OPEN, s->breaker == BREAKER_HALF_OPEN);
        counter(f, "kkt_circuit_breaker_opened_total", "Times the OFD circuit breaker opened.",
                s->breaker_opened);
        histogram(f, "kkt_sync_duration_seconds", "Duration of sync passes that sent something.",
                  sync_duration_bounds, sm->pass_duration.le, SYNC_DURATION_BUCKETS, sm->pass_duration.count,
                  sm->pass_duration.sum);
        histogram(f, "kkt_sync_request_duration_seconds",
                  "Duration of one request to the OFD, to its answer or failure.", sync_duration_bounds,
                  sm->request_duration.le, SYNC_DURATION_BUCKETS, sm->request_duration.count,
                  sm->request_duration.sum);
}

int metrics_render(const MetricsSnapshot *s, char **ret) {
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        FILE *f;

        assert(s);
        assert(ret);

        f = open_memstream(&text, &size);
        if (!f)
                return -ENOMEM;

        family(f, "kkt_adapter_build_info", "gauge", "The adapter's version, as a label; always 1.");
        fputs("kkt_adapter_build_info{version=\"", f);
        label_value(f, strempty(s->version));
        fputs("\"} 1\n", f);

        render_buffer(f, s);
        render_intake(f, s);
        render_server(f, s);
        render_heartbeat(f, s);
        render_printer(f, s);
        render_device(f, s);
        render_ofd_limit(f, s);
        render_sync(f, s);

        if (ferror(f)) {
                fclose(f);
                return -ENOMEM;
        }
        if (fclose(f) != 0)
                return -ENOMEM;
        *ret = TAKE_PTR(text);
        return 0;
}

int metrics_build(const Modules *m, uint64_t dead_letters_open, char **ret) {
        _cleanup_(json_object_putp) json_object *health = NULL;
        MetricsSnapshot s = {
                .now = now(CLOCK_REALTIME),
                .version = PACKAGE_VERSION,
                .counters = *store_get_counters(m->store),
                .dlq_unresolved = dead_letters_open,
                .store = *store_get_stats(m->store),
                .intake = *intake_get_stats(m->intake),
                .http = *http_server_get_stats(m->http),
                .health = _HEALTH_INVALID,
                .heartbeat = m->heartbeat ? heartbeat_get_state(m->heartbeat) : HEARTBEAT_UNKNOWN,
                .heartbeat_failures = m->heartbeat ? heartbeat_get_consecutive_failures(m->heartbeat) : 0,
                .heartbeats = m->heartbeat ? heartbeat_get_beats(m->heartbeat) : 0,
                .device = m->device ? device_get_status(m->device) : NULL,
        };
        Health h;

        /* The same verdict as GET /v1/health; a failure to build it only leaves kkt_health_state out. */
        if (health_build(m, dead_letters_open, &h, &health) >= 0)
                s.health = h;
        if (m->printer) {
                s.have_printer = true;
                s.printer = *printer_get_stats(m->printer);
                s.print_queue_length = s.printer.queued + !printer_is_idle(m->printer);
                s.print_head_wait = printer_head_wait(m->printer);
                s.print_stuck_after = m->config->device_stuck_after;
        }
        if (m->sync) {
                s.have_sync = true;
                s.sync = *sync_get_metrics(m->sync);
                s.breaker = sync_get_breaker_state(m->sync);
                s.breaker_opened = sync_get_breaker(m->sync)->n_opened;
        }
        return metrics_render(&s, ret);
}
