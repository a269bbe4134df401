/* SPDX-License-Identifier: MIT */
#pragma once

/* What the pieces of the sync worker share, and nothing outside sync*.c includes: the Sync object, its pass,
 * its store jobs and waiters. The pieces, from the bottom up: sync-job.c (store jobs), sync-timer.c (timers,
 * clocks and the breaker glue), sync-ofd.c (the OFD request and its answer), sync-pass.c (the pass and its
 * batch), sync-dlq.c and sync-retention.c (the other store jobs), sync-json.c (the status), sync.c (the
 * object and its API). Each calls only those below it. */

#include "json-util.h"
#include "list.h"
#include "log.h"
#include "message-ids.h"
#include "sync.h"

/* A pass takes what falls due this much later too: its timer fires at the due time read from
 * CLOCK_MONOTONIC, while next_retry_at was computed from CLOCK_REALTIME, read a moment apart. */
#define SYNC_DUE_SLACK_USEC (10 * USEC_PER_MSEC)

#define SYNC_LOG_INTERVAL_USEC (1 * USEC_PER_MINUTE)
#define SYNC_LOG_BURST 10U

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

/* What a job does when the store is done with it: called on the loop, with the job already off the list. */
typedef void (*SyncJobDoneFunc)(Sync *s, SyncJob *j, int result);

/* One store job of the worker. It stays linked to its Sync until the store's callback; sync_free()
 * detaches what is still outstanding, and the callback then only frees it. */
struct SyncJob {
        Sync *sync;
        LIST_FIELDS(SyncJob, jobs);
        SyncJobType type;
        SyncJobDoneFunc done;
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
        LIST_FIELDS(SyncWaiter, waiters);
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

static inline void sync_histogram_observe(SyncHistogram *h, usec_t v) {
        for (size_t i = 0; i < SYNC_DURATION_BUCKETS; i++)
                if (v <= sync_duration_bounds[i])
                        h->le[i]++;
        h->count++;
        h->sum = usec_add(h->sum, v);
}

/* sync-job.c */
SyncJob *sync_job_new(SyncJobType type, SyncJobDoneFunc done);
SyncJob *sync_job_free(SyncJob *j);
DEFINE_TRIVIAL_CLEANUP_FUNC(SyncJob *, sync_job_free);
/* Takes the job in all cases: on failure it is freed. */
int sync_job_queue(Sync *s, SyncJob *j, StoreJobFunc fn, bool write);
/* Detaches every outstanding job: its store callback then only frees it. */
void sync_jobs_detach(Sync *s);
void sync_mark_counters_changed(Sync *s);
int sync_on_notify(sd_event_source *source, void *userdata);
void sync_check_idle(Sync *s);

/* sync-timer.c */
usec_t sync_timer_accuracy(Sync *s);
usec_t sync_realtime_to_monotonic(usec_t t);
usec_t sync_monotonic_to_realtime(usec_t t);
void sync_breaker_changed(Sync *s, BreakerState old, const char *last_error, bool reset);
int sync_request_pass(Sync *s);
void sync_schedule_next(Sync *s, bool more, usec_t earliest_retry);

/* sync-ofd.c */
int sync_ofd_send(Sync *s, SyncSend *send, SyncStoreItem *item, CurlRequestCallback cb);
SyncJob *sync_record_job_new(const char *id, SyncStoreAction action, const char *error);
SyncJob *sync_ofd_answer(Sync *s, SyncSend *send, const SyncStoreItem *item, usec_t n, int error,
                         long http_status, const char *body, size_t body_size, SyncVerdict *ret_verdict);

/* sync-pass.c */
void sync_pass_release(Sync *s);
void sync_notify_waiters(Sync *s, int error, uint64_t first, uint64_t last, const SyncPassStats *stats);
int sync_on_timer(sd_event_source *source, uint64_t usec, void *userdata);

/* sync-retention.c */
int sync_on_retention_timer(sd_event_source *source, uint64_t usec, void *userdata);
