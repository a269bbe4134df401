/* SPDX-License-Identifier: MIT */
/* The worker's status as JSON, for GET /v1/kkt/worker/status: totals, the last pass, the breaker and the
 * backoff, times as ISO 8601 UTC. Reads the Sync, changes nothing. */

#include "sync-internal.h"

static int json_add_time_or_null(json_object *o, const char *key, usec_t realtime) {
        char ts[FORMAT_ISO8601_MAX];

        return json_add_string_or_null(o, key,
                                       realtime > 0 ? format_iso8601_utc(ts, sizeof ts, realtime) : NULL);
}


static int sync_totals_to_json(Sync *s, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *f = NULL;
        const SyncMetrics *m = &s->metrics;
        int r = 0;

        o = json_object_new_object();
        f = json_object_new_object();
        if (!o || !f)
                return -ENOMEM;

        for (SyncFailure k = SYNC_FAILURE_NONE + 1; k < _SYNC_FAILURE_MAX && r >= 0; k++)
                r = json_add(f, sync_failure_to_string(k), json_object_new_uint64(m->failures[k]));
        if (r >= 0)
                r = json_add(o, "passes", json_object_new_uint64(m->passes));
        if (r >= 0)
                r = json_add(o, "sent", json_object_new_uint64(m->sent));
        if (r >= 0)
                r = json_add(o, "synced", json_object_new_uint64(m->synced));
        if (r >= 0)
                r = json_add(o, "duplicates", json_object_new_uint64(m->duplicates));
        if (r >= 0)
                r = json_add(o, "failed_attempts", json_object_new_uint64(m->failed_attempts));
        if (r >= 0)
                r = json_add(o, "dead_lettered", json_object_new_uint64(m->dead_lettered));
        if (r >= 0) {
                r = json_object_object_add(o, "failures", f) < 0 ? -ENOMEM : 0;
                if (r >= 0)
                        TAKE_PTR(f);
        }
        if (r < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

static int sync_last_pass_to_json(Sync *s, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        const SyncPassStats *st = &s->last_pass;
        int r;

        if (!s->have_last_pass) {
                *ret = NULL;
                return 0;
        }

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        r = json_add(o, "selected", json_object_new_uint64(st->selected));
        if (r >= 0)
                r = json_add(o, "sent", json_object_new_uint64(st->sent));
        if (r >= 0)
                r = json_add(o, "synced", json_object_new_uint64(st->synced));
        if (r >= 0)
                r = json_add(o, "duplicates", json_object_new_uint64(st->duplicates));
        if (r >= 0)
                r = json_add(o, "retried", json_object_new_uint64(st->retried));
        if (r >= 0)
                r = json_add(o, "unknown", json_object_new_uint64(st->unknown));
        if (r >= 0)
                r = json_add(o, "dead_lettered", json_object_new_uint64(st->dead_lettered));
        if (r >= 0)
                r = json_add(o, "skipped", json_object_new_uint64(st->skipped));
        if (r >= 0)
                r = json_add(o, "duration_usec", json_object_new_uint64(st->duration));
        if (r < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

static int sync_breaker_to_json(Sync *s, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        const Breaker *b = &s->breaker;
        int r;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        r = json_add_string_or_null(o, "state", breaker_state_to_string(b->state));
        if (r >= 0)
                r = json_add(o, "consecutive_failures", json_object_new_uint64(b->consecutive_failures));
        if (r >= 0)
                r = json_add(o, "trial_successes", json_object_new_uint64(b->trial_successes));
        if (r >= 0)
                r = json_add(o, "failure_threshold", json_object_new_uint64(b->options.failure_threshold));
        if (r >= 0)
                r = json_add(o, "open_timeout_usec", json_object_new_uint64(b->options.open_timeout));
        if (r >= 0)
                r = json_add(o, "close_after", json_object_new_uint64(b->options.close_after));
        if (r >= 0)
                r = json_add_time_or_null(o, "open_until", sync_monotonic_to_realtime(breaker_open_until(b)));
        if (r >= 0)
                r = json_add(o, "opened_total", json_object_new_uint64(b->n_opened));
        if (r >= 0)
                r = json_add(o, "closed_total", json_object_new_uint64(b->n_closed));
        if (r >= 0)
                r = json_add(o, "rejected_total", json_object_new_uint64(b->n_rejected));
        if (r >= 0)
                r = json_add(o, "resets_total", json_object_new_uint64(b->n_resets));
        if (r < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

static int sync_backoff_to_json(Sync *s, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        int r;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        r = json_add(o, "initial_usec", json_object_new_uint64(s->options.initial_backoff));
        if (r >= 0)
                r = json_add(o, "max_usec", json_object_new_uint64(s->options.max_backoff));
        if (r >= 0)
                r = json_add(o, "last_usec", json_object_new_uint64(s->last_backoff));
        if (r >= 0)
                r = json_add_time_or_null(o, "hold_until",
                                          s->hold_until > now(CLOCK_MONOTONIC)
                                                  ? sync_monotonic_to_realtime(s->hold_until)
                                                  : 0);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

static int json_add_taken(json_object *o, const char *key, json_object **v) {
        /* NULL is JSON null here: the callers built nothing on purpose. */
        if (json_object_object_add(o, key, *v) < 0)
                return -ENOMEM;
        *v = NULL;
        return 0;
}

int sync_to_json(Sync *s, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *totals = NULL, *last = NULL, *breaker = NULL,
                                                *backoff = NULL;
        int r;

        assert(s);
        assert(ret);

        r = sync_totals_to_json(s, &totals);
        if (r >= 0)
                r = sync_last_pass_to_json(s, &last);
        if (r >= 0)
                r = sync_breaker_to_json(s, &breaker);
        if (r >= 0)
                r = sync_backoff_to_json(s, &backoff);
        if (r < 0)
                return r;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;

        r = json_add(o, "running", json_object_new_boolean(s->started));
        if (r >= 0)
                r = json_add(o, "syncing", json_object_new_boolean(s->pass.running));
        if (r >= 0)
                r = json_add(o, "in_flight", json_object_new_uint64(s->pass.n_in_flight));
        if (r >= 0)
                r = json_add_time_or_null(o, "last_pass_start",
                                          s->have_last_pass ? s->last_pass.started : 0);
        if (r >= 0)
                r = json_add_time_or_null(o, "last_pass_end", s->have_last_pass ? s->last_pass.finished : 0);
        if (r >= 0)
                r = json_add_string_or_null(
                        o, "last_result",
                        s->have_last_pass ? sync_pass_result_to_string(s->last_pass.result) : NULL);
        if (r >= 0)
                r = json_add_time_or_null(o, "last_sync", s->last_sync);
        if (r >= 0)
                r = json_add_time_or_null(
                        o, "next_pass",
                        s->started && !s->pass.running ? sync_monotonic_to_realtime(s->next_pass) : 0);
        if (r >= 0)
                r = json_add(o, "interval_usec", json_object_new_uint64(s->options.interval));
        if (r >= 0)
                r = json_add(o, "batch_size", json_object_new_uint64(s->options.batch_size));
        if (r >= 0)
                r = json_add(o, "max_in_flight", json_object_new_uint64(s->options.max_in_flight));
        if (r >= 0)
                r = json_add(o, "max_attempts", json_object_new_uint64(s->options.max_attempts));
        if (r >= 0)
                r = json_add(o, "timeout_usec", json_object_new_uint64(s->options.timeout));
        if (r >= 0)
                r = json_add_taken(o, "totals", &totals);
        if (r >= 0)
                r = json_add_taken(o, "last_pass", &last);
        if (r >= 0)
                r = json_add_taken(o, "circuit_breaker", &breaker);
        if (r >= 0)
                r = json_add_taken(o, "backoff", &backoff);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}
