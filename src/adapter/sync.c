/* SPDX-License-Identifier: MIT */
/* The sync worker as its users see it: the object, its options (and the copies of URL and token), its
 * event sources, starting and stopping, manual syncs, the breaker reset and the getters. What a pass does is
 * in sync-pass.c and below it (see sync-internal.h). */

#include "memory-util.h"
#include "string-table.h"
#include "sync-internal.h"

static const char *const sync_trigger_result_table[_SYNC_TRIGGER_RESULT_MAX] = {
        [SYNC_TRIGGER_STARTED] = "started",
        [SYNC_TRIGGER_ALREADY_RUNNING] = "already_running",
        [SYNC_TRIGGER_CIRCUIT_OPEN] = "circuit_open",
};

DEFINE_STRING_TABLE_LOOKUP_TO_STRING(sync_trigger_result, SyncTriggerResult, )

static bool string_has_cr_or_lf(const char *s) {
        return s && strpbrk(s, "\r\n");
}

static int options_validate(const SyncOptions *o) {
        assert(o);

        if (isempty(o->url) || string_has_cr_or_lf(o->url) || string_has_cr_or_lf(o->token))
                return -EINVAL;
        if (o->timeout == 0 || o->interval == 0 || o->interval == USEC_INFINITY)
                return -EINVAL;
        if (o->batch_size == 0 || o->max_in_flight == 0 || o->max_attempts == 0)
                return -EINVAL;
        if (o->initial_backoff > o->max_backoff)
                return -EINVAL;
        if (!breaker_options_valid(&o->breaker))
                return -EINVAL;
        if (o->synced_retention == 0 || o->dead_letter_retention == 0)
                return -EINVAL;
        return 0;
}

static int sync_apply_options(Sync *s, const SyncOptions *o) {
        _cleanup_free_ char *base = NULL, *endpoint = NULL;
        _cleanup_(erase_and_freep) char *token = NULL;
        size_t n;
        int r;

        r = options_validate(o);
        if (r < 0)
                return r;

        base = strdup(o->url);
        if (!base)
                return -ENOMEM;
        n = strlen(base);
        while (n > 0 && base[n - 1] == '/')
                base[--n] = 0;
        if (asprintf(&endpoint, "%s" SYNC_PATH, base) < 0)
                return -ENOMEM;
        if (o->token) {
                token = strdup(o->token);
                if (!token)
                        return -ENOMEM;
        }

        free(s->base_url);
        free(s->endpoint);
        erase_and_free(s->token);
        s->base_url = TAKE_PTR(base);
        s->endpoint = TAKE_PTR(endpoint);
        s->token = TAKE_PTR(token);

        s->options = *o;
        s->options.url = s->base_url;
        s->options.token = s->token;
        s->options.max_in_flight = MIN(o->max_in_flight, SYNC_MAX_IN_FLIGHT_MAX);
        if (s->options.retention_interval == 0)
                s->options.retention_interval = SYNC_RETENTION_INTERVAL_DEFAULT;
        if (s->options.retention_first_delay == 0)
                s->options.retention_first_delay = SYNC_RETENTION_FIRST_DELAY_DEFAULT;
        if (!s->options.random) {
                s->options.random = sync_policy_random;
                s->options.random_userdata = NULL;
        }
        return 0;
}

int sync_new(Sync **ret, sd_event *event, Store *store, CurlGlue *glue, const SyncOptions *o,
             SyncCallbacks cbs, void *userdata) {
        _cleanup_(sync_freep) Sync *s = NULL;
        int r;

        assert(ret);
        assert(event);
        assert(store);
        assert(glue);
        assert(o);

        r = options_validate(o);
        if (r < 0)
                return r;

        s = new0(Sync, 1);
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(event);
        s->store = store;
        s->glue = glue;
        s->cbs = cbs;
        s->userdata = userdata;
        s->pass.forced = _SYNC_PASS_RESULT_INVALID;
        s->log_ratelimit = RATELIMIT_INIT(SYNC_LOG_INTERVAL_USEC, SYNC_LOG_BURST);
        s->dead_ratelimit = RATELIMIT_INIT(SYNC_LOG_INTERVAL_USEC, SYNC_LOG_BURST);

        r = sync_apply_options(s, o);
        if (r < 0)
                return r;
        breaker_init(&s->breaker, &s->options.breaker);

        r = sd_event_add_time(event, &s->timer, CLOCK_MONOTONIC, 1, sync_timer_accuracy(s), sync_on_timer,
                              s);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s->timer, "sync-timer");

        r = sd_event_add_time(event, &s->retention_timer, CLOCK_MONOTONIC, 1, USEC_PER_SEC,
                              sync_on_retention_timer, s);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(s->retention_timer, SD_EVENT_OFF);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s->retention_timer, "sync-retention");

        r = sd_event_add_defer(event, &s->notify, sync_on_notify, s);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(s->notify, SD_EVENT_OFF);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s->notify, "sync-notify");

        *ret = TAKE_PTR(s);
        return 0;
}

Sync *sync_free(Sync *s) {
        if (!s)
                return NULL;

        /* Nobody is told of a pass any more. */
        sync_notify_waiters(s, -ESHUTDOWN, 0, 0, NULL);
        sync_pass_release(s);
        sync_jobs_detach(s);

        sd_event_source_disable_unref(s->timer);
        sd_event_source_disable_unref(s->retention_timer);
        sd_event_source_disable_unref(s->notify);
        sd_event_unref(s->event);

        free(s->base_url);
        free(s->endpoint);
        erase_and_free(s->token);
        return mfree(s);
}

int sync_start(Sync *s) {
        int r;

        assert(s);

        if (s->started)
                return 0;

        s->started = true;
        s->stopped = false;
        s->idle_notified = false;

        r = sd_event_source_set_time(s->retention_timer,
                                     usec_add(now(CLOCK_MONOTONIC), s->options.retention_first_delay));
        if (r >= 0)
                r = sd_event_source_set_enabled(s->retention_timer, SD_EVENT_ONESHOT);
        if (r >= 0 && !s->pass.running)
                r = sync_request_pass(s);
        if (r < 0) {
                sync_stop(s);
                return r;
        }
        return 0;
}

void sync_stop(Sync *s) {
        assert(s);

        if (!s->started)
                return;

        s->started = false;
        s->stopped = true;
        s->pass_requested = false;
        s->next_pass = 0;
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(s->retention_timer, SD_EVENT_OFF);
        if (s->pass.running) {
                s->pass.stop_sending = true;
                if (s->pass.forced < 0 && s->pass.stats.sent == 0)
                        s->pass.forced = SYNC_PASS_STOPPED;
        }
        /* The pass running finishes and tells its waiters; no other starts. */
        sync_notify_waiters(s, -ESHUTDOWN, s->metrics.passes + !!s->pass.running, 0, NULL);
}

bool sync_is_running(Sync *s) {
        assert(s);
        return s->started;
}

bool sync_is_syncing(Sync *s) {
        assert(s);
        return s->pass.running;
}

int sync_trigger(Sync *s, SyncTriggerResult *ret) {
        SyncTriggerResult result;
        int r;

        assert(s);

        if (!s->started)
                return -ESHUTDOWN;

        if (s->pass.running || s->pass_requested)
                result = SYNC_TRIGGER_ALREADY_RUNNING;
        else if (s->breaker.state == BREAKER_OPEN && now(CLOCK_MONOTONIC) < breaker_open_until(&s->breaker))
                result = SYNC_TRIGGER_CIRCUIT_OPEN;
        else {
                r = sync_request_pass(s);
                if (r < 0)
                        return r;
                result = SYNC_TRIGGER_STARTED;
        }

        if (ret)
                *ret = result;
        return 0;
}

int sync_trigger_wait(Sync *s, SyncTriggerResult *ret, SyncWaitCallback cb, void *userdata,
                      SyncWaiter **ret_waiter) {
        _cleanup_free_ SyncWaiter *w = NULL;
        SyncTriggerResult result;
        int r;

        assert(s);
        assert(cb);
        assert(ret_waiter);

        w = new0(SyncWaiter, 1);
        if (!w)
                return -ENOMEM;
        r = sync_trigger(s, &result);
        if (r < 0)
                return r;
        if (ret)
                *ret = result;
        if (result == SYNC_TRIGGER_CIRCUIT_OPEN) {
                *ret_waiter = NULL;
                return 0;
        }

        /* The pass running now, or the one about to start (sync_trigger() coalesced into it or asked for
         * it). */
        *w = (SyncWaiter){
                .sync = s,
                .pass = s->metrics.passes + !s->pass.running,
                .cb = cb,
                .userdata = userdata,
        };
        LIST_PREPEND(waiters, s->waiters, w);
        *ret_waiter = TAKE_PTR(w);
        return 0;
}

int sync_set_options(Sync *s, const SyncOptions *o) {
        int r;

        assert(s);
        assert(o);

        r = options_validate(o);
        if (r < 0)
                return r;
        r = sync_apply_options(s, o);
        if (r < 0)
                return r;
        /* Validated above. */
        (void) breaker_set_options(&s->breaker, &s->options.breaker);

        if (s->started && !s->pass.running && !s->pass_requested && s->last_pass_start > 0)
                sync_schedule_next(s, false, s->earliest_retry);
        return 0;
}

int sync_reset_breaker(Sync *s) {
        BreakerState old;
        bool changed;

        assert(s);

        old = s->breaker.state;
        changed = breaker_reset(&s->breaker);
        sync_breaker_changed(s, old, NULL, true);
        s->hold_until = 0;
        (void) sync_request_pass(s);
        return changed;
}

BreakerState sync_get_breaker_state(Sync *s) {
        assert(s);
        return s->breaker.state;
}

const Breaker *sync_get_breaker(Sync *s) {
        assert(s);
        return &s->breaker;
}

usec_t sync_get_last_sync_usec(Sync *s) {
        assert(s);
        return s->last_sync;
}

const SyncPassStats *sync_get_last_pass(Sync *s) {
        assert(s);
        return s->have_last_pass ? &s->last_pass : NULL;
}

const SyncMetrics *sync_get_metrics(Sync *s) {
        assert(s);
        return &s->metrics;
}

unsigned sync_get_in_flight(Sync *s) {
        assert(s);
        return s->pass.n_in_flight;
}
