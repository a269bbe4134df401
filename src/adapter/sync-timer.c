/* SPDX-License-Identifier: MIT */
/* The sync worker's timing: when the next pass runs (interval, full batches, retries falling due, the
 * breaker's open period, the OFD's Retry-After), the conversions between the two clocks it reads, and the
 * glue that logs and reports the breaker's transitions. */

#include "sync-internal.h"

usec_t sync_timer_accuracy(Sync *s) {
        /* Precise enough for the short intervals and backoffs of tests, coarse enough to let the kernel
         * coalesce the wake-ups of a 10 s interval. */
        return CLAMP(MIN(s->options.interval, MAX(s->options.initial_backoff, USEC_PER_MSEC)) / 20,
                     USEC_PER_MSEC, 100 * USEC_PER_MSEC);
}

usec_t sync_realtime_to_monotonic(usec_t t) {
        usec_t mono = now(CLOCK_MONOTONIC), real = now(CLOCK_REALTIME);

        if (t == USEC_INFINITY)
                return USEC_INFINITY;
        return t >= real ? usec_add(mono, t - real) : mono;
}

/* A CLOCK_MONOTONIC time to come as CLOCK_REALTIME, for display; 0 for none. */
usec_t sync_monotonic_to_realtime(usec_t t) {
        usec_t mono = now(CLOCK_MONOTONIC), real = now(CLOCK_REALTIME);

        if (t == 0 || t == USEC_INFINITY)
                return 0;
        /* A time already past is due: "now". */
        return t >= mono ? usec_add(real, t - mono) : real;
}

/* ---- the breaker ---- */

/* last_error: the failure that opened it, if that is what happened; reset: sync_reset_breaker() did it. */
void sync_breaker_changed(Sync *s, BreakerState old, const char *last_error, bool reset) {
        BreakerState state = s->breaker.state;
        char span[FORMAT_TIMESPAN_MAX], what[64];

        if (state == old)
                return;

        switch (state) {
        case BREAKER_OPEN:
                if (old == BREAKER_HALF_OPEN)
                        snprintf(what, sizeof what, "again, a trial send failed");
                else
                        snprintf(what, sizeof what, "after %u consecutive failures",
                                 s->breaker.options.failure_threshold);
                log_struct(LOG_WARNING, MESSAGE_ID_BREAKER_OPENED,
                           LOG_FIELDS({ "CIRCUIT_STATE", "open" }, { "OFD_ERROR", last_error }),
                           "OFD circuit breaker opened %s (last: %s); no sends for %s.", what,
                           strna(last_error),
                           format_timespan(span, sizeof span, s->breaker.options.open_timeout));
                break;
        case BREAKER_HALF_OPEN:
                log_info("OFD circuit breaker half-open: letting trial sends through.");
                break;
        case BREAKER_CLOSED:
                log_struct(LOG_INFO, MESSAGE_ID_BREAKER_CLOSED, LOG_FIELDS({ "CIRCUIT_STATE", "closed" }),
                           "OFD circuit breaker closed %s.",
                           reset ? "by a manual reset" : "after successful trial sends");
                break;
        default:
                assert(!"bad breaker state");
        }

        if (s->cbs.breaker_changed)
                s->cbs.breaker_changed(s, state, s->userdata);
}

/* ---- scheduling ---- */

static int sync_arm_timer(Sync *s, usec_t when) {
        int r;

        r = sd_event_source_set_time(s->timer, MAX(when, (usec_t) 1));
        if (r >= 0)
                r = sd_event_source_set_time_accuracy(s->timer, sync_timer_accuracy(s));
        if (r >= 0)
                r = sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
        if (r < 0)
                return r;
        s->next_pass = MAX(when, (usec_t) 1);
        return 0;
}

/* A pass on the next iteration of the loop (an elapsed time), never inside the caller. */
int sync_request_pass(Sync *s) {
        int r;

        if (!s->started || s->pass.running || s->pass_requested)
                return 0;
        r = sync_arm_timer(s, 1);
        if (r < 0)
                return r;
        s->pass_requested = true;
        return 1;
}

void sync_schedule_next(Sync *s, bool more, usec_t earliest_retry) {
        usec_t n = now(CLOCK_MONOTONIC), next;
        int r;

        if (!s->started || s->pass_requested)
                return;

        next = usec_add(s->last_pass_start, s->options.interval);
        if (s->breaker.state == BREAKER_OPEN)
                /* The first pass after the open period carries the trial sends. */
                next = MIN(next, breaker_open_until(&s->breaker));
        else {
                if (more)
                        next = n; /* the batch came back full: keep draining */
                next = MIN(next, earliest_retry);
        }
        if (s->hold_until > next)
                next = s->hold_until; /* also where "more" asked for "now" */

        r = sync_arm_timer(s, next);
        if (r < 0)
                log_error_errno(r, "Failed to schedule the next OFD sync pass, syncing only on demand: %m");
}
