/* SPDX-License-Identifier: MIT */
/* Owns the worker's timers, the pass in progress (its batch, its requests and their breaker permits), the
 * store jobs it queued, the breaker, the metrics and the copies of its options. Decides when a pass runs,
 * what each answer of the OFD does to its receipt, and what gets logged. */

#include <inttypes.h>

#include "json-util.h"
#include "log.h"
#include "message-ids.h"
#include "sync.h"

/* A pass takes what falls due this much later too: its timer fires at the due time read from
 * CLOCK_MONOTONIC, while next_retry_at was computed from CLOCK_REALTIME, read a moment apart. */
#define SYNC_DUE_SLACK_USEC (10 * USEC_PER_MSEC)

#define SYNC_LOG_INTERVAL_USEC (1 * USEC_PER_MINUTE)
#define SYNC_LOG_BURST 10U

const usec_t sync_duration_bounds[SYNC_DURATION_BUCKETS] = {
        10 * USEC_PER_MSEC,  50 * USEC_PER_MSEC, 100 * USEC_PER_MSEC, 250 * USEC_PER_MSEC,
        500 * USEC_PER_MSEC, 1 * USEC_PER_SEC,   2500 * USEC_PER_MSEC, 5 * USEC_PER_SEC,
        10 * USEC_PER_SEC,   30 * USEC_PER_SEC,  60 * USEC_PER_SEC,
};

static const char *const sync_pass_result_table[_SYNC_PASS_RESULT_MAX] = {
        [SYNC_PASS_OK] = "ok",
        [SYNC_PASS_NOTHING] = "nothing_to_send",
        [SYNC_PASS_FAILURES] = "failures",
        [SYNC_PASS_CIRCUIT_OPEN] = "circuit_open",
        [SYNC_PASS_HELD] = "held",
        [SYNC_PASS_ERROR] = "error",
        [SYNC_PASS_STOPPED] = "stopped",
};

static const char *const sync_trigger_result_table[_SYNC_TRIGGER_RESULT_MAX] = {
        [SYNC_TRIGGER_STARTED] = "started",
        [SYNC_TRIGGER_ALREADY_RUNNING] = "already_running",
        [SYNC_TRIGGER_CIRCUIT_OPEN] = "circuit_open",
};

const char *sync_pass_result_to_string(SyncPassResult r) {
        return r >= 0 && r < _SYNC_PASS_RESULT_MAX ? sync_pass_result_table[r] : NULL;
}

const char *sync_trigger_result_to_string(SyncTriggerResult r) {
        return r >= 0 && r < _SYNC_TRIGGER_RESULT_MAX ? sync_trigger_result_table[r] : NULL;
}

typedef enum SyncJobType {
        SYNC_JOB_SELECT,
        SYNC_JOB_RECORD,
        SYNC_JOB_DLQ_LIST,
        SYNC_JOB_DLQ_RETRY,
        SYNC_JOB_DLQ_RESOLVE,
        SYNC_JOB_PRUNE,
} SyncJobType;

typedef enum SyncRetentionStep {
        SYNC_RETENTION_SYNCED,
        SYNC_RETENTION_DEAD_LETTERS,
        SYNC_RETENTION_DLQ_ROWS,
        SYNC_RETENTION_EVENTS,
        _SYNC_RETENTION_STEP_MAX,
} SyncRetentionStep;

typedef struct SyncJob SyncJob;

/* One store job of the worker. It stays linked to its Sync until the store's callback; sync_free()
 * detaches what is still outstanding, and the callback then only frees it. */
struct SyncJob {
        Sync *sync;
        SyncJob *prev, *next;
        SyncJobType type;
        union {
                SyncStoreBatch batch;
                SyncStoreAttempt attempt;
                SyncStoreDlqList list;
                SyncStoreDlqChange change;
                SyncStorePrune prune;
        } u;

        /* SYNC_JOB_RECORD */
        usec_t due;              /* CLOCK_MONOTONIC of next_retry_at */
        bool unknown;            /* a failure after the request was sent */

        /* SYNC_JOB_PRUNE */
        SyncRetentionStep step;

        /* DLQ jobs */
        SyncDlqListCallback list_cb;
        SyncDoneCallback done_cb;
        void *userdata;
};

typedef struct SyncSend {
        Sync *sync;
        size_t index;
        CurlRequest *request;
        BreakerPermit permit;
        usec_t started;          /* CLOCK_MONOTONIC */
} SyncSend;

typedef struct SyncPass {
        bool running;
        bool reading;            /* the batch is being selected */
        bool stop_sending;       /* the breaker opened, a Retry-After came, or the worker stops */
        bool held;               /* sending stopped for a Retry-After: go on once it is over */
        bool did_read;           /* the batch was selected (the pass was not cut short before) */
        SyncPassResult forced;   /* a result decided before the end; _SYNC_PASS_RESULT_INVALID: none */
        unsigned record_errors;
        SyncStoreBatch batch;
        SyncSend *sends;         /* one per batch item */
        size_t next;             /* the next item to send */
        unsigned n_in_flight;
        unsigned n_recording;
        usec_t started;          /* CLOCK_MONOTONIC */
        usec_t earliest_retry;   /* CLOCK_MONOTONIC; USEC_INFINITY: none */
        usec_t next_due;         /* CLOCK_MONOTONIC: the earliest retry of receipts left out; ditto */
        SyncPassStats stats;
} SyncPass;

struct SyncWaiter {
        Sync *sync;
        uint64_t pass; /* the number (metrics.passes) of the pass it waits for */
        SyncWaitCallback cb;
        void *userdata;
        SyncWaiter *prev, *next;
};

typedef struct SyncRetention {
        bool running;
        SyncRetentionStep step;
        usec_t synced_cutoff;
        usec_t dead_letter_cutoff;
        int64_t event_cursor;
        SyncRetentionStats stats;
        SyncRetentionCallback cb;
        void *userdata;
} SyncRetention;

struct Sync {
        sd_event *event;
        Store *store;
        CurlGlue *glue;

        SyncOptions options;     /* url and token point at the copies below */
        char *base_url;
        char *endpoint;
        char *token;

        SyncCallbacks cbs;
        void *userdata;

        sd_event_source *timer;
        sd_event_source *retention_timer;
        sd_event_source *notify;

        bool started;
        bool stopped;            /* sync_stop() was called (and no sync_start() since) */
        bool idle_notified;
        bool pass_requested;     /* the timer is armed for a pass on the next iteration */
        usec_t next_pass;        /* CLOCK_MONOTONIC; 0: not scheduled */
        usec_t last_pass_start;  /* CLOCK_MONOTONIC; 0: none */
        usec_t hold_until;       /* CLOCK_MONOTONIC: the OFD's Retry-After */
        usec_t last_backoff;
        usec_t last_sync;        /* CLOCK_REALTIME */
        usec_t earliest_retry;   /* CLOCK_MONOTONIC: the first retry the last pass scheduled */

        Breaker breaker;
        SyncPass pass;
        SyncPassStats last_pass;
        bool have_last_pass;
        SyncRetention retention;
        SyncMetrics metrics;

        SyncJob *jobs;
        SyncWaiter *waiters; /* manual syncs waiting for the end of a pass */

        RateLimit log_ratelimit;
        RateLimit dead_ratelimit;
};

/* ---- small helpers ---- */

static int json_add_time_or_null(json_object *o, const char *key, usec_t realtime) {
        char ts[FORMAT_ISO8601_MAX];

        return json_add_string_or_null(o, key,
                                       realtime > 0 ? format_iso8601_utc(ts, sizeof ts, realtime) : NULL);
}

/* A CLOCK_MONOTONIC time to come as CLOCK_REALTIME, for display; 0 for none. */
static usec_t monotonic_to_realtime(usec_t t) {
        usec_t mono = now(CLOCK_MONOTONIC), real = now(CLOCK_REALTIME);

        if (t == 0 || t == USEC_INFINITY)
                return 0;
        /* A time already past is due: "now". */
        return t >= mono ? usec_add(real, t - mono) : real;
}

static void histogram_observe(SyncHistogram *h, usec_t v) {
        for (size_t i = 0; i < SYNC_DURATION_BUCKETS; i++)
                if (v <= sync_duration_bounds[i])
                        h->le[i]++;
        h->count++;
        h->sum = usec_add(h->sum, v);
}

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

static char *token_copy_free(char *t) {
        if (t) {
                explicit_bzero(t, strlen(t));
                free(t);
        }
        return NULL;
}

static int sync_apply_options(Sync *s, const SyncOptions *o) {
        _cleanup_free_ char *base = NULL, *endpoint = NULL, *token = NULL;
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
        token_copy_free(s->token);
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

static usec_t sync_timer_accuracy(Sync *s) {
        /* Precise enough for the short intervals and backoffs of tests, coarse enough to let the kernel
         * coalesce the wake-ups of a 10 s interval. */
        return CLAMP(MIN(s->options.interval, MAX(s->options.initial_backoff, USEC_PER_MSEC)) / 20,
                     USEC_PER_MSEC, 100 * USEC_PER_MSEC);
}

static usec_t realtime_to_monotonic(usec_t t) {
        usec_t mono = now(CLOCK_MONOTONIC), real = now(CLOCK_REALTIME);

        if (t == USEC_INFINITY)
                return USEC_INFINITY;
        return t >= real ? usec_add(mono, t - real) : mono;
}

/* ---- jobs ---- */

static SyncJob *sync_job_free(SyncJob *j) {
        if (!j)
                return NULL;

        switch (j->type) {
        case SYNC_JOB_SELECT:
                sync_store_batch_done(&j->u.batch);
                break;
        case SYNC_JOB_RECORD:
                sync_store_attempt_done(&j->u.attempt);
                break;
        case SYNC_JOB_DLQ_LIST:
                sync_store_dlq_list_done(&j->u.list);
                break;
        case SYNC_JOB_DLQ_RETRY:
        case SYNC_JOB_DLQ_RESOLVE:
                sync_store_dlq_change_done(&j->u.change);
                break;
        case SYNC_JOB_PRUNE:
                break;
        }
        return mfree(j);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(SyncJob *, sync_job_free);

static void sync_job_unlink(SyncJob *j) {
        Sync *s = j->sync;

        if (!s)
                return;
        if (j->prev)
                j->prev->next = j->next;
        else
                s->jobs = j->next;
        if (j->next)
                j->next->prev = j->prev;
        j->prev = j->next = NULL;
        j->sync = NULL;
}

static SyncJob *sync_job_new(SyncJobType type) {
        SyncJob *j = new0(SyncJob, 1);

        if (j)
                j->type = type;
        return j;
}

static void sync_on_job_done(Store *store, int result, void *userdata);

/* Takes the job in all cases: on failure it is freed. */
static int sync_job_queue(Sync *s, SyncJob *j, StoreJobFunc fn, bool write) {
        _cleanup_(sync_job_freep) SyncJob *job = j;
        int r;

        if (!job)
                return -ENOMEM;

        r = (write ? store_write : store_read)(s->store, fn, &job->u, sync_on_job_done, job);
        if (r < 0)
                return r;

        job->sync = s;
        job->next = s->jobs;
        if (s->jobs)
                s->jobs->prev = job;
        s->jobs = TAKE_PTR(job);
        return 0;
}

static void sync_mark_counters_changed(Sync *s) {
        (void) sd_event_source_set_enabled(s->notify, SD_EVENT_ONESHOT);
}

static int sync_on_notify(sd_event_source *source, void *userdata) {
        Sync *s = userdata;

        if (s->cbs.counters_changed)
                s->cbs.counters_changed(s, s->userdata);
        return 0;
}

static void sync_check_idle(Sync *s) {
        if (!s->stopped || s->idle_notified || !sync_is_idle(s))
                return;
        s->idle_notified = true;
        if (s->cbs.idle)
                s->cbs.idle(s, s->userdata);
}

/* ---- the breaker ---- */

/* last_error: the failure that opened it, if that is what happened; reset: sync_reset_breaker() did it. */
static void sync_breaker_changed(Sync *s, BreakerState old, const char *last_error, bool reset) {
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
static int sync_request_pass(Sync *s) {
        int r;

        if (!s->started || s->pass.running || s->pass_requested)
                return 0;
        r = sync_arm_timer(s, 1);
        if (r < 0)
                return r;
        s->pass_requested = true;
        return 1;
}

static void sync_schedule_next(Sync *s, bool more, usec_t earliest_retry) {
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

/* ---- a pass ---- */

static void sync_pass_release(Sync *s) {
        SyncPass *p = &s->pass;

        if (p->sends)
                for (size_t i = 0; i < p->batch.n_items; i++)
                        p->sends[i].request = curl_request_free(p->sends[i].request);
        p->sends = mfree(p->sends);
        sync_store_batch_done(&p->batch);
}

static void sync_waiter_unlink(SyncWaiter *w) {
        Sync *s = w->sync;

        if (w->prev)
                w->prev->next = w->next;
        else
                s->waiters = w->next;
        if (w->next)
                w->next->prev = w->prev;
        w->prev = w->next = NULL;
}

SyncWaiter *sync_waiter_free(SyncWaiter *w) {
        if (!w)
                return NULL;
        sync_waiter_unlink(w);
        return mfree(w);
}

/* Tells the waiters for passes up to `last` (stats: that pass's), or with error, those for `first` and
 * later. One at a time from the head: a callback may free other waiters or add new ones. */
static void sync_notify_waiters(Sync *s, int error, uint64_t first, uint64_t last,
                                const SyncPassStats *stats) {
        for (;;) {
                SyncWaiter *w;

                for (w = s->waiters; w; w = w->next)
                        if (error < 0 ? w->pass >= first : w->pass <= last)
                                break;
                if (!w)
                        return;
                sync_waiter_unlink(w);
                w->cb(s, error, error < 0 ? NULL : stats, w->userdata);
                free(w);
        }
}

static void sync_pass_finish(Sync *s) {
        SyncPass *p = &s->pass;
        SyncPassStats *st = &p->stats;
        usec_t earliest_retry;
        bool more;

        /* A pass that read nothing learnt nothing about retries: what the last one knew still holds. */
        earliest_retry = p->did_read ? MIN(p->earliest_retry, p->next_due) : s->earliest_retry;

        st->finished = now(CLOCK_REALTIME);
        st->duration = usec_sub_unsigned(now(CLOCK_MONOTONIC), p->started);
        if (p->forced >= 0)
                st->result = p->forced;
        else if (st->selected == 0)
                st->result = SYNC_PASS_NOTHING;
        else if (st->retried > 0 || st->dead_lettered > 0 || p->record_errors > 0 || p->next < st->selected)
                st->result = SYNC_PASS_FAILURES;
        else
                st->result = SYNC_PASS_OK;

        if (IN_SET(st->result, SYNC_PASS_OK, SYNC_PASS_NOTHING))
                s->last_sync = st->finished;
        if (st->sent > 0)
                histogram_observe(&s->metrics.pass_duration, st->duration);

        /* Progress with a full batch means more is waiting (without progress, going again at once would
         * spin on whatever kept the batch from moving); a Retry-After held receipts back until it ends. */
        more = (st->selected >= s->options.batch_size && st->synced + st->dead_lettered > 0 &&
                !p->stop_sending && st->result != SYNC_PASS_ERROR) ||
               p->held || st->result == SYNC_PASS_HELD;

        s->last_pass = *st;
        s->have_last_pass = true;
        s->earliest_retry = earliest_retry;
        sync_pass_release(s);
        p->running = false;

        log_debug("OFD sync pass: %s, %u selected, %u sent, %u synced, %u retried, %u dead-lettered.",
                  sync_pass_result_to_string(st->result), st->selected, st->sent, st->synced, st->retried,
                  st->dead_lettered);

        sync_schedule_next(s, more, earliest_retry);

        if (s->cbs.pass_finished)
                s->cbs.pass_finished(s, &s->last_pass, s->userdata);
        sync_notify_waiters(s, 0, 0, s->metrics.passes, &s->last_pass);
}

static void sync_pass_maybe_finish(Sync *s) {
        SyncPass *p = &s->pass;

        /* Called after every attempt to send more: with nothing in flight and nothing being recorded, no
         * event is left that could move the pass on. */
        if (!p->running || p->reading || p->n_in_flight > 0 || p->n_recording > 0)
                return;
        sync_pass_finish(s);
}

static void sync_log_failure(Sync *s, const char *id, const SyncVerdict *v, unsigned attempt,
                             const char *detail) {
        unsigned suppressed = 0;

        if (!ratelimit_below(&s->log_ratelimit, &suppressed))
                return;
        /* Still printed and pending: retried, or dead-lettered (said by its own entry). */
        log_struct(LOG_WARNING, NULL, LOG_FIELDS(LOG_RECEIPT_FIELDS(id, "printed")),
                   "Sending receipt %s to the OFD failed (attempt %u): %s%s%s%s%s", id, attempt, v->reason,
                   isempty(detail) ? "" : " (", strempty(detail), isempty(detail) ? "" : ")",
                   suppressed > 0 ? " (Earlier messages were suppressed.)" : "");
}

/* The OFD's answer as ofd_response: its JSON as it is, anything else as a JSON string. */
static char *sync_normalize_response(const char *body, size_t size) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_(json_object_putp) json_object *o = NULL;
        const char *text;

        if (!body || size == 0)
                return NULL;

        tok = json_tokener_new();
        if (tok && size <= INT32_MAX) {
                o = json_tokener_parse_ex(tok, body, (int) size);
                if (o && (json_tokener_get_error(tok) != json_tokener_success ||
                          strspn(body + json_tokener_get_parse_end(tok), " \t\r\n") !=
                                  size - json_tokener_get_parse_end(tok)))
                        o = (json_object_put(o), NULL);
        }
        if (o)
                return strndup(body, json_tokener_get_parse_end(tok));

        o = json_object_new_string_len(body, (int) MIN(size, (size_t) INT32_MAX));
        text = o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN) : NULL;
        return text ? strdup(text) : NULL;
}

/* Queues the recording of one attempt; the pass waits for it. */
static void sync_record(Sync *s, SyncJob *j) {
        const char *id = j ? j->u.attempt.id : NULL;
        int r;

        r = sync_job_queue(s, j, sync_store_record_attempt, true);
        if (r < 0) {
                /* Lost only in memory: the receipt stays pending and goes again next time. */
                s->pass.record_errors++;
                if (ratelimit_below(&s->log_ratelimit, NULL))
                        log_warning_errno(r, "Failed to queue the result of sending receipt %s: %m",
                                          strna(id));
                return;
        }
        s->pass.n_recording++;
}

static SyncJob *sync_record_job_new(const char *id, SyncStoreAction action, const char *error) {
        _cleanup_(sync_job_freep) SyncJob *j = NULL;

        j = sync_job_new(SYNC_JOB_RECORD);
        if (!j)
                return NULL;
        j->u.attempt.action = action;
        j->due = USEC_INFINITY;
        j->u.attempt.id = strdup(id);
        if (!j->u.attempt.id)
                return NULL;
        if (error) {
                j->u.attempt.error = strdup(error);
                if (!j->u.attempt.error)
                        return NULL;
        }
        return TAKE_PTR(j);
}

static void sync_pump(Sync *s);

static void sync_on_response(CurlRequest *req, int error, long http_status, const char *body,
                             size_t body_size, void *userdata) {
        SyncSend *send = userdata;
        Sync *s = send->sync;
        SyncPass *p = &s->pass;
        SyncStoreItem *item = p->batch.items + send->index;
        usec_t n = now(CLOCK_MONOTONIC), retry_after = 0, delay;
        SyncJob *j = NULL;
        BreakerState old;
        SyncVerdict v;

        assert(req == send->request);

        if (error < 0 || curl_request_get_retry_after(req, &retry_after) < 0)
                retry_after = 0;
        sync_policy_classify(error, http_status, curl_request_was_sent(req), body, body_size, &v);
        histogram_observe(&s->metrics.request_duration, usec_sub_unsigned(n, send->started));

        switch (v.outcome) {
        case SYNC_OUTCOME_SYNCED:
                s->last_backoff = 0;
                j = sync_record_job_new(item->id, SYNC_STORE_ACTION_SYNCED, NULL);
                if (j) {
                        j->u.attempt.duplicate = v.duplicate;
                        j->u.attempt.response = sync_normalize_response(body, body_size);
                        if (body_size > 0 && !j->u.attempt.response)
                                j = sync_job_free(j);
                }
                break;

        case SYNC_OUTCOME_PERMANENT:
                s->metrics.failures[v.failure]++;
                sync_log_failure(s, item->id, &v, item->attempts + 1, NULL);
                j = sync_record_job_new(item->id, SYNC_STORE_ACTION_PERMANENT, v.reason);
                break;

        case SYNC_OUTCOME_RETRY:
        case SYNC_OUTCOME_UNKNOWN:
                s->metrics.failures[v.failure]++;
                sync_log_failure(s, item->id, &v, item->attempts + 1,
                                 error < 0 ? curl_request_get_error_message(req) : NULL);
                delay = sync_policy_retry_delay(&v, item->attempts + 1, retry_after,
                                                s->options.initial_backoff, s->options.max_backoff,
                                                s->options.random(s->options.random_userdata));
                s->last_backoff = delay;
                if (v.retry_after_applies && retry_after > 0) {
                        /* The OFD asked everyone to wait, not only this receipt. */
                        s->hold_until = MAX(s->hold_until, usec_add(n, delay));
                        p->stop_sending = p->held = true;
                }
                j = sync_record_job_new(item->id, SYNC_STORE_ACTION_RETRY, v.reason);
                if (j) {
                        j->u.attempt.next_retry_at = usec_add(now(CLOCK_REALTIME), delay);
                        j->u.attempt.max_attempts = s->options.max_attempts;
                        j->due = usec_add(n, delay);
                        j->unknown = v.outcome == SYNC_OUTCOME_UNKNOWN;
                }
                break;

        default:
                assert(!"bad outcome");
        }

        send->request = curl_request_free(send->request);
        assert(p->n_in_flight > 0);
        p->n_in_flight--;

        old = s->breaker.state;
        (void) breaker_record(&s->breaker, &send->permit, v.breaker_success, n);
        sync_breaker_changed(s, old, v.reason, false);

        if (j)
                sync_record(s, j);
        else {
                p->record_errors++;
                log_oom();
        }

        sync_pump(s); /* may finish the pass: send and item are gone afterwards */
        sync_check_idle(s);
}

static int sync_send(Sync *s, size_t index) {
        SyncPass *p = &s->pass;
        SyncSend *send = p->sends + index;
        SyncStoreItem *item = p->batch.items + index;
        _cleanup_free_ char *key = NULL;
        const char *headers[3];
        CurlRequestOptions o;
        int r;

        if (asprintf(&key, "Idempotency-Key: %s", item->id) < 0)
                return -ENOMEM;
        headers[0] = key;
        headers[1] = "Accept: application/json";
        headers[2] = NULL;

        o = (CurlRequestOptions) {
                .body = item->body,
                .body_size = item->body_size,
                .content_type = "application/json",
                .bearer_token = s->token,
                .connect_timeout = s->options.timeout,
                .timeout = s->options.timeout,
                .headers = headers,
                .max_response_size = SYNC_MAX_RESPONSE,
        };

        send->sync = s;
        send->index = index;
        send->started = now(CLOCK_MONOTONIC);
        r = curl_glue_request_new(s->glue, &send->request, "POST", s->endpoint, &o, sync_on_response, send);
        if (r < 0)
                return r;

        /* The glue copied it. */
        item->body = mfree(item->body);
        p->n_in_flight++;
        p->stats.sent++;
        s->metrics.sent++;
        return 0;
}

static void sync_pump(Sync *s) {
        SyncPass *p = &s->pass;

        if (!p->running || p->reading)
                return;

        while (!p->stop_sending && p->next < p->batch.n_items && p->n_in_flight < s->options.max_in_flight) {
                SyncStoreItem *item = p->batch.items + p->next;
                usec_t n = now(CLOCK_MONOTONIC);
                BreakerState old;
                bool allowed;
                int r;

                if (!s->started) {
                        p->stop_sending = true;
                        if (p->forced < 0)
                                p->forced = SYNC_PASS_STOPPED;
                        break;
                }

                if (item->error) {
                        /* Nothing that could be sent: not the OFD's failure, and not getting better. */
                        p->next++;
                        sync_record(s,
                                    sync_record_job_new(item->id, SYNC_STORE_ACTION_PERMANENT, item->error));
                        continue;
                }

                if (s->hold_until > n) {
                        p->stop_sending = p->held = true;
                        if (p->stats.sent == 0 && p->forced < 0)
                                p->forced = SYNC_PASS_HELD;
                        break;
                }

                old = s->breaker.state;
                allowed = breaker_allow(&s->breaker, n, &p->sends[p->next].permit);
                sync_breaker_changed(s, old, NULL, false);
                if (!allowed) {
                        /* Half-open with its trial sends out: their results decide, wait for them. */
                        if (s->breaker.state == BREAKER_OPEN) {
                                p->stop_sending = true;
                                if (p->stats.sent == 0 && p->forced < 0)
                                        p->forced = SYNC_PASS_CIRCUIT_OPEN;
                        }
                        break;
                }

                r = sync_send(s, p->next);
                if (r < 0) {
                        breaker_release(&s->breaker, &p->sends[p->next].permit);
                        if (r == -EINVAL) {
                                /* The glue refuses a header with a line break: this receipt's id. */
                                p->next++;
                                sync_record(s, sync_record_job_new(item->id, SYNC_STORE_ACTION_PERMANENT,
                                                                   "the receipt id cannot be sent as an "
                                                                   "Idempotency-Key"));
                                continue;
                        }
                        if (ratelimit_below(&s->log_ratelimit, NULL))
                                log_warning_errno(r, "Failed to start sending receipt %s: %m", item->id);
                        p->record_errors++;
                        p->stop_sending = true;
                        break;
                }
                p->next++;
        }

        sync_pass_maybe_finish(s);
}

static void sync_pass_start(Sync *s) {
        SyncPass *p = &s->pass;
        usec_t n = now(CLOCK_MONOTONIC);
        BreakerState old;
        SyncJob *j;
        int r;

        assert(!p->running);

        *p = (SyncPass) {
                .running = true,
                .forced = _SYNC_PASS_RESULT_INVALID,
                .started = n,
                .earliest_retry = USEC_INFINITY,
                .next_due = USEC_INFINITY,
                .stats.started = now(CLOCK_REALTIME),
        };
        s->pass_requested = false;
        s->next_pass = 0;
        s->last_pass_start = n;
        s->metrics.passes++;

        old = s->breaker.state;
        (void) breaker_update(&s->breaker, n);
        sync_breaker_changed(s, old, NULL, false);

        if (s->breaker.state == BREAKER_OPEN) {
                /* Nothing goes out and nothing is counted against the receipts. */
                p->forced = SYNC_PASS_CIRCUIT_OPEN;
                sync_pass_finish(s);
                return;
        }
        if (s->hold_until > n) {
                p->forced = SYNC_PASS_HELD;
                sync_pass_finish(s);
                return;
        }

        j = sync_job_new(SYNC_JOB_SELECT);
        if (j) {
                j->u.batch.limit = s->options.batch_size;
                j->u.batch.now = usec_add(now(CLOCK_REALTIME), SYNC_DUE_SLACK_USEC);
        }
        r = sync_job_queue(s, j, sync_store_select_batch, false);
        if (r < 0) {
                if (ratelimit_below(&s->log_ratelimit, NULL))
                        log_warning_errno(r, "Failed to queue the OFD sync pass's read of the buffer: %m");
                p->forced = SYNC_PASS_ERROR;
                sync_pass_finish(s);
                return;
        }
        p->reading = true;
}

static void sync_on_selected(Sync *s, SyncJob *j, int result) {
        SyncPass *p = &s->pass;

        assert(p->running && p->reading);
        p->reading = false;

        if (result < 0) {
                if (ratelimit_below(&s->log_ratelimit, NULL))
                        log_warning_errno(result, "Failed to read the buffer for an OFD sync pass: %m");
                p->forced = SYNC_PASS_ERROR;
                sync_pass_maybe_finish(s);
                return;
        }

        p->did_read = true;
        p->batch = j->u.batch;
        j->u.batch = (SyncStoreBatch) {};
        p->stats.selected = (unsigned) p->batch.n_items;
        p->next_due = realtime_to_monotonic(p->batch.next_due);

        if (p->batch.n_items > 0) {
                p->sends = new0(SyncSend, p->batch.n_items);
                if (!p->sends) {
                        log_oom();
                        p->forced = SYNC_PASS_ERROR;
                        p->stop_sending = true;
                }
        }
        sync_pump(s);
}

static void sync_on_recorded(Sync *s, SyncJob *j, int result) {
        SyncPass *p = &s->pass;
        SyncStoreAttempt *a = &j->u.attempt;
        unsigned suppressed = 0;

        assert(p->running);
        assert(p->n_recording > 0);
        p->n_recording--;

        if (result < 0) {
                p->record_errors++;
                if (ratelimit_below(&s->log_ratelimit, NULL))
                        log_warning_errno(result, "Failed to record the result for receipt %s: %m", a->id);
                sync_pump(s);
                return;
        }

        switch (a->recorded) {
        case SYNC_STORE_RECORDED_SYNCED:
                p->stats.synced++;
                s->metrics.synced++;
                if (a->duplicate) {
                        p->stats.duplicates++;
                        s->metrics.duplicates++;
                }
                if (s->cbs.receipt_changed)
                        s->cbs.receipt_changed(s, a->id, STORE_STATUS_SYNCED, s->userdata);
                break;

        case SYNC_STORE_RECORDED_RETRY:
                p->stats.retried++;
                if (j->unknown)
                        p->stats.unknown++;
                s->metrics.failed_attempts++;
                p->earliest_retry = MIN(p->earliest_retry, j->due);
                break;

        case SYNC_STORE_RECORDED_DEAD_LETTERED:
                p->stats.dead_lettered++;
                s->metrics.dead_lettered++;
                s->metrics.failed_attempts++;
                if (ratelimit_below(&s->dead_ratelimit, &suppressed))
                        log_struct(LOG_WARNING, MESSAGE_ID_DEAD_LETTERED,
                                   LOG_FIELDS(LOG_RECEIPT_FIELDS(a->id, "dead_letter"),
                                              { "DLQ_REASON", a->dead_reason }),
                                   "Receipt %s moved to the dead-letter queue after %u attempt%s: %s%s",
                                   a->id, a->attempts, a->attempts == 1 ? "" : "s", strna(a->dead_reason),
                                   suppressed > 0 ? " (Earlier messages were suppressed.)" : "");
                if (s->cbs.dead_lettered)
                        s->cbs.dead_lettered(s, a->id, strempty(a->dead_reason), s->userdata);
                if (s->cbs.receipt_changed)
                        s->cbs.receipt_changed(s, a->id, STORE_STATUS_DLQ, s->userdata);
                break;

        case SYNC_STORE_RECORDED_SKIPPED:
                p->stats.skipped++;
                break;

        default:
                assert(!"bad recorded value");
        }

        sync_mark_counters_changed(s);
        sync_pump(s);
}

static int sync_on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        Sync *s = userdata;

        s->next_pass = 0;
        if (!s->started || s->pass.running) {
                s->pass_requested = false;
                return 0;
        }
        sync_pass_start(s);
        return 0;
}

/* ---- retention ---- */

static void sync_retention_finish(Sync *s, int error) {
        SyncRetention *t = &s->retention;
        SyncRetentionCallback cb = t->cb;
        void *userdata = t->userdata;
        SyncRetentionStats stats = t->stats;

        t->running = false;
        t->cb = NULL;
        t->userdata = NULL;

        if (error < 0)
                log_warning_errno(error, "Buffer retention stopped early: %m");
        if (stats.synced + stats.dead_letters + stats.dlq_rows + stats.events > 0) {
                log_info("Buffer retention pruned %" PRIu64 " synced receipts, %" PRIu64 " dead-lettered "
                         "receipts, %" PRIu64 " resolved dead letters and %" PRIu64 " buffer events.",
                         stats.synced, stats.dead_letters, stats.dlq_rows, stats.events);
                sync_mark_counters_changed(s);
        }

        if (cb)
                cb(s, error, &stats, userdata);
}

/* Queues the next step: 0 queued, 1 nothing left, < 0 error. */
static int sync_retention_queue(Sync *s) {
        static const StoreJobFunc step_func[_SYNC_RETENTION_STEP_MAX] = {
                [SYNC_RETENTION_SYNCED] = sync_store_prune_synced,
                [SYNC_RETENTION_DEAD_LETTERS] = sync_store_prune_dead_letters,
                [SYNC_RETENTION_DLQ_ROWS] = sync_store_prune_dlq_rows,
                [SYNC_RETENTION_EVENTS] = sync_store_prune_events,
        };
        SyncRetention *t = &s->retention;
        SyncJob *j;
        int r;

        /* A period of "infinity" keeps everything of its kind. */
        while (t->step < _SYNC_RETENTION_STEP_MAX &&
               ((t->step == SYNC_RETENTION_SYNCED && t->synced_cutoff == 0) ||
                (IN_SET(t->step, SYNC_RETENTION_DEAD_LETTERS, SYNC_RETENTION_DLQ_ROWS) &&
                 t->dead_letter_cutoff == 0)))
                t->step++;
        if (t->step >= _SYNC_RETENTION_STEP_MAX)
                return 1;

        j = sync_job_new(SYNC_JOB_PRUNE);
        if (j) {
                j->step = t->step;
                j->u.prune = (SyncStorePrune) {
                        .cutoff =
                                t->step == SYNC_RETENTION_SYNCED ? t->synced_cutoff : t->dead_letter_cutoff,
                        .limit = t->step == SYNC_RETENTION_EVENTS ? 4 * SYNC_RETENTION_BATCH
                                                                  : SYNC_RETENTION_BATCH,
                        .cursor = t->event_cursor,
                };
        }
        r = sync_job_queue(s, j, step_func[t->step], true);
        return r < 0 ? r : 0;
}

static void sync_on_pruned(Sync *s, SyncJob *j, int result) {
        SyncRetention *t = &s->retention;
        int r;

        if (result < 0) {
                sync_retention_finish(s, result);
                return;
        }

        switch (j->step) {
        case SYNC_RETENTION_SYNCED:
                t->stats.synced += j->u.prune.n_deleted;
                break;
        case SYNC_RETENTION_DEAD_LETTERS:
                t->stats.dead_letters += j->u.prune.n_deleted;
                break;
        case SYNC_RETENTION_DLQ_ROWS:
                t->stats.dlq_rows += j->u.prune.n_deleted;
                break;
        case SYNC_RETENTION_EVENTS:
                t->stats.events += j->u.prune.n_deleted;
                t->event_cursor = j->u.prune.cursor;
                break;
        default:
                assert(!"bad retention step");
        }

        if ((unsigned) result < j->u.prune.limit)
                t->step++;
        if (s->stopped) {
                sync_retention_finish(s, -ECANCELED);
                return;
        }
        r = sync_retention_queue(s);
        if (r != 0)
                sync_retention_finish(s, MIN(r, 0));
}

int sync_run_retention(Sync *s, SyncRetentionCallback cb, void *userdata) {
        SyncRetention *t = &s->retention;
        usec_t real = now(CLOCK_REALTIME);
        int r;

        assert(s);

        if (t->running)
                return -EBUSY;

        *t = (SyncRetention) {
                .running = true,
                .cb = cb,
                .userdata = userdata,
                /* 0 means "keep": also what a period longer than the epoch gives. */
                .synced_cutoff = s->options.synced_retention == USEC_INFINITY
                                         ? 0
                                         : usec_sub_unsigned(real, s->options.synced_retention),
                .dead_letter_cutoff = s->options.dead_letter_retention == USEC_INFINITY
                                              ? 0
                                              : usec_sub_unsigned(real, s->options.dead_letter_retention),
        };

        /* The events step always runs, so something is queued and cb runs from the loop, never here. */
        r = sync_retention_queue(s);
        assert(r <= 0);
        if (r < 0) {
                *t = (SyncRetention) {};
                return r;
        }
        return 0;
}

static int sync_on_retention_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        Sync *s = userdata;
        int r;

        r = sd_event_source_set_time(source, usec_add(now(CLOCK_MONOTONIC), s->options.retention_interval));
        if (r >= 0)
                r = sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
        if (r < 0)
                log_error_errno(r, "Failed to schedule the next buffer retention run: %m");

        if (!s->retention.running) {
                r = sync_run_retention(s, NULL, NULL);
                if (r < 0)
                        log_warning_errno(r, "Failed to start buffer retention: %m");
        }
        return 0;
}

/* ---- the dead-letter queue ---- */

static void sync_on_dlq_done(Sync *s, SyncJob *j, int result) {
        switch (j->type) {
        case SYNC_JOB_DLQ_LIST:
                if (j->list_cb)
                        j->list_cb(s, MIN(result, 0), result < 0 ? NULL : j->u.list.entries,
                                   result < 0 ? 0 : j->u.list.n_entries, j->userdata);
                break;

        case SYNC_JOB_DLQ_RETRY:
                if (result >= 0) {
                        log_struct(LOG_INFO, NULL,
                                   LOG_FIELDS(LOG_RECEIPT_FIELDS(j->u.change.receipt_id, "printed")),
                                   "Receipt %s retried from the dead-letter queue%s%s.",
                                   j->u.change.receipt_id, j->u.change.who ? " by " : "",
                                   strempty(j->u.change.who));
                        sync_mark_counters_changed(s);
                        if (s->cbs.receipt_changed)
                                s->cbs.receipt_changed(s, j->u.change.receipt_id, STORE_STATUS_PENDING,
                                                       s->userdata);
                        if (s->breaker.state != BREAKER_OPEN)
                                (void) sync_request_pass(s);
                }
                if (j->done_cb)
                        j->done_cb(s, MIN(result, 0), j->userdata);
                break;

        case SYNC_JOB_DLQ_RESOLVE:
                if (result >= 0) {
                        log_struct(LOG_INFO, NULL,
                                   LOG_FIELDS(LOG_RECEIPT_FIELDS(j->u.change.receipt_id, "dead_letter")),
                                   "Dead letter of receipt %s resolved%s%s.", j->u.change.receipt_id,
                                   j->u.change.who ? " by " : "", strempty(j->u.change.who));
                        sync_mark_counters_changed(s);
                }
                if (j->done_cb)
                        j->done_cb(s, MIN(result, 0), j->userdata);
                break;

        default:
                assert(!"not a DLQ job");
        }
}

static void sync_on_job_done(Store *store, int result, void *userdata) {
        _cleanup_(sync_job_freep) SyncJob *j = userdata;
        Sync *s = j->sync;

        if (!s)
                return; /* detached by sync_free() */
        sync_job_unlink(j);

        switch (j->type) {
        case SYNC_JOB_SELECT:
                sync_on_selected(s, j, result);
                break;
        case SYNC_JOB_RECORD:
                sync_on_recorded(s, j, result);
                break;
        case SYNC_JOB_DLQ_LIST:
        case SYNC_JOB_DLQ_RETRY:
        case SYNC_JOB_DLQ_RESOLVE:
                sync_on_dlq_done(s, j, result);
                break;
        case SYNC_JOB_PRUNE:
                sync_on_pruned(s, j, result);
                break;
        }

        sync_check_idle(s);
}

int sync_dlq_list(Sync *s, unsigned limit, bool unresolved_only, SyncDlqListCallback cb, void *userdata) {
        SyncJob *j;

        assert(s);

        j = sync_job_new(SYNC_JOB_DLQ_LIST);
        if (j) {
                j->u.list.limit = limit;
                j->u.list.unresolved_only = unresolved_only;
                j->list_cb = cb;
                j->userdata = userdata;
        }
        return sync_job_queue(s, j, sync_store_dlq_list, false);
}

static int sync_dlq_change(Sync *s, SyncJobType type, const char *id, const char *note, const char *who,
                           SyncDoneCallback cb, void *userdata) {
        _cleanup_(sync_job_freep) SyncJob *j = NULL;

        assert(s);
        assert(id);

        j = sync_job_new(type);
        if (!j)
                return -ENOMEM;
        j->done_cb = cb;
        j->userdata = userdata;
        j->u.change.receipt_id = strdup(id);
        if (!j->u.change.receipt_id || free_and_strdup(&j->u.change.note, note) < 0 ||
            free_and_strdup(&j->u.change.who, who) < 0)
                return -ENOMEM;

        return sync_job_queue(s, TAKE_PTR(j),
                              type == SYNC_JOB_DLQ_RETRY ? sync_store_dlq_retry : sync_store_dlq_resolve,
                              true);
}

int sync_dlq_retry(Sync *s, const char *id, const char *who, SyncDoneCallback cb, void *userdata) {
        return sync_dlq_change(s, SYNC_JOB_DLQ_RETRY, id, NULL, who, cb, userdata);
}

int sync_dlq_resolve(Sync *s, const char *id, const char *note, const char *who, SyncDoneCallback cb,
                     void *userdata) {
        return sync_dlq_change(s, SYNC_JOB_DLQ_RESOLVE, id, note, who, cb, userdata);
}

int sync_dead_letters_to_json(const SyncDeadLetter *entries, size_t n_entries, json_object **ret) {
        _cleanup_(json_object_putp) json_object *a = NULL;
        int r;

        assert(entries || n_entries == 0);
        assert(ret);

        a = json_object_new_array_ext((int) MIN(n_entries, (size_t) INT32_MAX));
        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < n_entries; i++) {
                json_object *o = NULL;

                r = sync_dead_letter_to_json(entries + i, &o);
                if (r < 0)
                        return r;
                if (json_object_array_add(a, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
        }

        *ret = TAKE_PTR(a);
        return 0;
}

/* ---- the object ---- */

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
        while (s->jobs) {
                SyncJob *j = s->jobs;

                s->jobs = j->next;
                j->prev = j->next = NULL;
                j->sync = NULL;
        }

        sd_event_source_disable_unref(s->timer);
        sd_event_source_disable_unref(s->retention_timer);
        sd_event_source_disable_unref(s->notify);
        sd_event_unref(s->event);

        free(s->base_url);
        free(s->endpoint);
        token_copy_free(s->token);
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

bool sync_is_idle(Sync *s) {
        assert(s);
        return !s->jobs && s->pass.n_in_flight == 0;
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
                .next = s->waiters,
        };
        if (s->waiters)
                s->waiters->prev = w;
        s->waiters = w;
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
                r = json_add_time_or_null(o, "open_until", monotonic_to_realtime(breaker_open_until(b)));
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
                                                  ? monotonic_to_realtime(s->hold_until)
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
                        s->started && !s->pass.running ? monotonic_to_realtime(s->next_pass) : 0);
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
