/* SPDX-License-Identifier: MIT */
#pragma once

/* The OFD sync worker: store-and-forward of printed receipts to the OFD in passes (every Interval and on
 * demand) through CurlGlue, gated by the circuit breaker, with per-receipt backoff, the dead-letter queue
 * and retention. No D-Bus and no HTTP server in here: the Manager publishes what the callbacks report. */

#include <json-c/json.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "breaker.h"
#include "curl-glue.h"
#include "macro.h"
#include "store.h"
#include "sync-policy.h"
#include "sync-store.h"
#include "time-util.h"

typedef struct Sync Sync;

#define SYNC_PATH "/ofd/v1/receipt"
#define SYNC_TIMEOUT_DEFAULT (10 * USEC_PER_SEC)
#define SYNC_INTERVAL_DEFAULT (10 * USEC_PER_SEC)
#define SYNC_BATCH_SIZE_DEFAULT 50U
/* curl-glue keeps at most this many connections per host; more requests would queue inside libcurl with
 * their timeouts running. Larger settings are clamped to it. */
#define SYNC_MAX_IN_FLIGHT_MAX ((unsigned) CURL_GLUE_MAX_HOST_CONNECTIONS)
#define SYNC_MAX_IN_FLIGHT_DEFAULT SYNC_MAX_IN_FLIGHT_MAX
#define SYNC_MAX_ATTEMPTS_DEFAULT 20U
#define SYNC_SYNCED_RETENTION_DEFAULT (7 * USEC_PER_DAY)
#define SYNC_DEAD_LETTER_RETENTION_DEFAULT (90 * USEC_PER_DAY)
#define SYNC_RETENTION_INTERVAL_DEFAULT USEC_PER_DAY
#define SYNC_RETENTION_FIRST_DELAY_DEFAULT (5 * USEC_PER_MINUTE)
/* Rows per retention transaction (receipts; buffer_events examined per step is four times this). */
#define SYNC_RETENTION_BATCH 500U
/* The OFD's answer is kept in ofd_response; a bigger one is not an OFD. */
#define SYNC_MAX_RESPONSE ((size_t) 64 * 1024)

typedef struct SyncOptions {
        const char *url;                /* the OFD's base URL (http:// or https://); required */
        usec_t timeout;                 /* per request, connect included; > 0 */
        const char *token;              /* bearer token; NULL: none. Copied, never logged */
        usec_t interval;                /* from the start of one pass to the start of the next; > 0 */
        unsigned batch_size;            /* receipts per pass, >= 1 */
        unsigned max_in_flight;         /* requests at once, >= 1; clamped to SYNC_MAX_IN_FLIGHT_MAX */
        usec_t initial_backoff;         /* <= max_backoff */
        usec_t max_backoff;
        unsigned max_attempts;          /* failed attempts after which a receipt is dead-lettered, >= 1 */
        BreakerOptions breaker;         /* valid as breaker_options_valid() says */
        usec_t synced_retention;        /* > 0; USEC_INFINITY: kept for ever */
        usec_t dead_letter_retention;   /* > 0; USEC_INFINITY: kept for ever */
        usec_t retention_interval;      /* between retention runs; 0: SYNC_RETENTION_INTERVAL_DEFAULT */
        usec_t retention_first_delay;   /* from sync_start() to the first run; 0: the default */
        SyncRandomFunc random;          /* the jitter's source; NULL: sync_policy_random() */
        void *random_userdata;
} SyncOptions;

#define SYNC_OPTIONS_DEFAULT                                                    \
        ((SyncOptions) {                                                        \
                .timeout = SYNC_TIMEOUT_DEFAULT,                                \
                .interval = SYNC_INTERVAL_DEFAULT,                              \
                .batch_size = SYNC_BATCH_SIZE_DEFAULT,                          \
                .max_in_flight = SYNC_MAX_IN_FLIGHT_DEFAULT,                    \
                .initial_backoff = SYNC_INITIAL_BACKOFF_DEFAULT,                \
                .max_backoff = SYNC_MAX_BACKOFF_DEFAULT,                        \
                .max_attempts = SYNC_MAX_ATTEMPTS_DEFAULT,                      \
                .breaker = BREAKER_OPTIONS_DEFAULT,                             \
                .synced_retention = SYNC_SYNCED_RETENTION_DEFAULT,              \
                .dead_letter_retention = SYNC_DEAD_LETTER_RETENTION_DEFAULT,    \
        })

typedef enum SyncPassResult {
        SYNC_PASS_OK,              /* everything selected was synced (or dead-lettered for bad data) */
        SYNC_PASS_NOTHING,         /* nothing was due */
        SYNC_PASS_FAILURES,        /* some sends failed */
        SYNC_PASS_CIRCUIT_OPEN,    /* the breaker was open: nothing was sent */
        SYNC_PASS_HELD,            /* the OFD's Retry-After was still running: nothing was sent */
        SYNC_PASS_ERROR,           /* the buffer could not be read */
        SYNC_PASS_STOPPED,         /* sync_stop() came first */
        _SYNC_PASS_RESULT_MAX,
        _SYNC_PASS_RESULT_INVALID = -EINVAL,
} SyncPassResult;

/* "ok", "nothing_to_send", "failures", "circuit_open", "held", "error", "stopped" */
const char *sync_pass_result_to_string(SyncPassResult r);

typedef struct SyncPassStats {
        SyncPassResult result;
        usec_t started;            /* CLOCK_REALTIME */
        usec_t finished;           /* CLOCK_REALTIME */
        usec_t duration;
        unsigned selected;         /* receipts read for the pass */
        unsigned sent;             /* requests that went out */
        unsigned synced;
        unsigned duplicates;       /* of the synced: the OFD had them already (409) */
        unsigned retried;          /* failed, will be retried (unknown outcomes included) */
        unsigned unknown;          /* of the retried: failed after the request was sent */
        unsigned dead_lettered;
        unsigned skipped;          /* no longer pending when the result was recorded */
} SyncPassStats;

/* Cumulative buckets for a Prometheus histogram: le[i] counts observations <= sync_duration_bounds[i];
 * the +Inf bucket is count. Microseconds: the exposition divides. */
#define SYNC_DURATION_BUCKETS 11
extern const usec_t sync_duration_bounds[SYNC_DURATION_BUCKETS];

typedef struct SyncHistogram {
        uint64_t le[SYNC_DURATION_BUCKETS];
        uint64_t count;
        usec_t sum;
} SyncHistogram;

typedef struct SyncMetrics {
        uint64_t passes;
        uint64_t sent;                        /* requests to the OFD */
        uint64_t synced;                      /* kkt_receipts_synced_total */
        uint64_t duplicates;                  /* of them answered 409 */
        uint64_t failed_attempts;             /* failures counted against receipts */
        uint64_t dead_lettered;
        uint64_t failures[_SYNC_FAILURE_MAX]; /* per SyncFailure; [SYNC_FAILURE_NONE] stays 0 */
        SyncHistogram pass_duration;          /* passes that sent something: kkt_sync_duration_seconds */
        SyncHistogram request_duration;       /* one request, start to answer or failure */
} SyncMetrics;

typedef struct SyncRetentionStats {
        uint64_t synced;           /* synced receipts pruned */
        uint64_t dead_letters;     /* dead-lettered receipts pruned (all their dead letters resolved) */
        uint64_t dlq_rows;         /* further resolved dlq rows pruned */
        uint64_t events;           /* buffer_events of pruned receipts */
} SyncRetentionStats;

/* All called on the loop, never from inside a sync_*() call of the caller (except where noted); none may
 * free the Sync. */
typedef struct SyncCallbacks {
        /* A receipt changed status through the worker: synced, dlq, or pending (retried from the DLQ). */
        void (*receipt_changed)(Sync *s, const char *id, StoreStatus status, void *userdata);
        /* A receipt was dead-lettered (also reported through receipt_changed). */
        void (*dead_lettered)(Sync *s, const char *id, const char *reason, void *userdata);
        /* The breaker changed state (also from sync_reset_breaker(), inside that call). */
        void (*breaker_changed)(Sync *s, BreakerState state, void *userdata);
        /* The store's counters changed through the worker; coalesced to once per loop iteration. */
        void (*counters_changed)(Sync *s, void *userdata);
        void (*pass_finished)(Sync *s, const SyncPassStats *stats, void *userdata);
        /* After sync_stop(): the last request or store job finished. */
        void (*idle)(Sync *s, void *userdata);
} SyncCallbacks;

/* Copies the options (-EINVAL when invalid, including a token or URL with a line break) and the callbacks
 * (any may be NULL). Store and glue must outlive the Sync. Does nothing until sync_start(). */
int sync_new(Sync **ret, sd_event *event, Store *store, CurlGlue *glue, const SyncOptions *o,
             SyncCallbacks cbs, void *userdata);
/* Cancels requests in flight (their receipts stay pending: resent later with the same Idempotency-Key)
 * and detaches queued store jobs: no callback fires afterwards, but for the waiters of
 * sync_trigger_wait(), which hear -ESHUTDOWN first. Accepts NULL. */
Sync *sync_free(Sync *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Sync *, sync_free);

/* The first pass runs on the next loop iteration, then one every Interval (sooner when a batch came back
 * full, when a receipt's retry falls due, or when the breaker lets trial sends through; later when the
 * OFD's Retry-After says so); retention runs after retention_first_delay and then every
 * retention_interval. Idempotent. */
int sync_start(Sync *s);
/* Stops the timers and the starting of sends; requests in flight finish and are recorded (their receipts
 * never end up lost or sent twice to a de-duplicating OFD). Check sync_is_idle() right after: when it says
 * no, the idle callback reports the moment it becomes true. */
void sync_stop(Sync *s);
/* No request in flight and no store job of the worker outstanding. */
bool sync_is_idle(Sync *s);
/* Started and not stopped. */
bool sync_is_running(Sync *s);
/* A pass is in progress. */
bool sync_is_syncing(Sync *s);

typedef enum SyncTriggerResult {
        SYNC_TRIGGER_STARTED,          /* a pass starts on the next loop iteration */
        SYNC_TRIGGER_ALREADY_RUNNING,  /* one is running or about to: coalesced into it */
        SYNC_TRIGGER_CIRCUIT_OPEN,     /* the breaker is open: nothing would be sent, nothing started */
        _SYNC_TRIGGER_RESULT_MAX,
        _SYNC_TRIGGER_RESULT_INVALID = -EINVAL,
} SyncTriggerResult;

/* "started", "already_running", "circuit_open" */
const char *sync_trigger_result_to_string(SyncTriggerResult r);

/* A manual sync. Never runs the pass inside the call. -ESHUTDOWN when not started (or stopped). */
int sync_trigger(Sync *s, SyncTriggerResult *ret);

/* A manual sync whose end is reported, for a caller that waits for its result. */
typedef struct SyncWaiter SyncWaiter;
/* Called once: error 0 with the stats of the awaited pass when it finished, or -ESHUTDOWN (stats NULL) when
 * it will not come (sync_stop(), sync_free()). The waiter is freed after the call. */
typedef void (*SyncWaitCallback)(Sync *s, int error, const SyncPassStats *stats, void *userdata);
/* sync_trigger(), and a waiter for the pass it started or coalesced into (the one running, or the one
 * about to start). SYNC_TRIGGER_CIRCUIT_OPEN starts nothing: *ret_waiter is NULL then, and nothing is
 * called. Never runs the pass inside the call; the callback never comes from inside it. */
int sync_trigger_wait(Sync *s, SyncTriggerResult *ret, SyncWaitCallback cb, void *userdata,
                      SyncWaiter **ret_waiter);
/* Forgets a waiter before its callback (its caller gave up waiting). Accepts NULL. */
SyncWaiter *sync_waiter_free(SyncWaiter *w);

/* A reload: the new URL, token and timeout apply from the next request, batch size and concurrency from
 * the next pass, the interval reschedules the next pass (from the start of the last one), breaker
 * thresholds apply to what comes next (its state is kept), retention periods to the next run.
 * -EINVAL as sync_new(), and then nothing changed. */
int sync_set_options(Sync *s, const SyncOptions *o);

/* Closes the breaker, forgets a Retry-After hold and, when started and idle, starts a pass. Returns 1 when
 * the breaker's state changed, else 0. */
int sync_reset_breaker(Sync *s);

BreakerState sync_get_breaker_state(Sync *s);
const Breaker *sync_get_breaker(Sync *s);
/* CLOCK_REALTIME end of the last pass that failed nothing (one with nothing to send included): the time
 * up to which the buffer is known to be at the OFD. 0 before the first. */
usec_t sync_get_last_sync_usec(Sync *s);
/* The last finished pass; NULL before the first. */
const SyncPassStats *sync_get_last_pass(Sync *s);
const SyncMetrics *sync_get_metrics(Sync *s);
/* Requests in flight now. */
unsigned sync_get_in_flight(Sync *s);

/* For GET /v1/kkt/worker/status: {"running", "syncing", "in_flight", "last_pass_start", "last_pass_end",
 * "last_result", "last_sync", "next_pass" (ISO 8601 UTC or null), "interval_usec", "batch_size",
 * "max_in_flight", "max_attempts", "timeout_usec", "totals" {passes, sent, synced, duplicates,
 * failed_attempts, dead_lettered, failures {<kind>: n}}, "last_pass" {selected, sent, synced, duplicates,
 * retried, unknown, dead_lettered, skipped, duration_usec} or null, "circuit_breaker" {state,
 * consecutive_failures, trial_successes, failure_threshold, open_timeout_usec, close_after, open_until,
 * opened_total, closed_total, rejected_total, resets_total}, "backoff" {initial_usec, max_usec, last_usec,
 * hold_until}}. */
int sync_to_json(Sync *s, json_object **ret);

/* ---- the dead-letter queue ---- */

/* error < 0: the listing failed; entries valid during the call only. */
typedef void (*SyncDlqListCallback)(Sync *s, int error, const SyncDeadLetter *entries, size_t n_entries,
                                    void *userdata);
typedef void (*SyncDoneCallback)(Sync *s, int error, void *userdata);

/* Unresolved first; limit 0: SYNC_STORE_DLQ_LIST_MAX. */
int sync_dlq_list(Sync *s, unsigned limit, bool unresolved_only, SyncDlqListCallback cb, void *userdata);
/* The receipt back to pending (attempts 0, due at once), its dead letters resolved with the note
 * "retried" by `who`; a pass follows when the worker runs. Callback errors: -ENOENT unknown receipt,
 * -EALREADY not in the DLQ, -ESTALE its dead letter was resolved (handled outside the adapter: final). */
int sync_dlq_retry(Sync *s, const char *id, const char *who, SyncDoneCallback cb, void *userdata);
/* Its open dead letters resolved with note and who; the receipt stays in the DLQ (and is pruned after
 * DeadLetterRetention). Callback errors: -ENOENT unknown, -ESTALE resolved already, -EALREADY not in the
 * DLQ (never, or retried from it). */
int sync_dlq_resolve(Sync *s, const char *id, const char *note, const char *who, SyncDoneCallback cb,
                     void *userdata);
/* A JSON array of sync_dead_letter_to_json() objects. */
int sync_dead_letters_to_json(const SyncDeadLetter *entries, size_t n_entries, json_object **ret);

/* ---- retention ---- */

typedef void (*SyncRetentionCallback)(Sync *s, int error, const SyncRetentionStats *stats, void *userdata);

/* Runs retention now (also what the daily timer does), in transactions of SYNC_RETENTION_BATCH rows: synced
 * receipts older than synced_retention, dead letters resolved longer than dead_letter_retention ago, then
 * the buffer events of the receipts pruned. Pending and unresolved receipts are never pruned. cb may be
 * NULL. -EBUSY: a run is in progress. */
int sync_run_retention(Sync *s, SyncRetentionCallback cb, void *userdata);
