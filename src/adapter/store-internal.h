/* SPDX-License-Identifier: MIT */
#pragma once

/* What the pieces of the store share and nothing else includes: the Store, its two workers and the
 * checkpointer, the jobs that travel between the loop and the workers, and each piece's entry points.
 *   store.c            opening (schema, migrations, pragmas, what is loaded at open) and closing
 *   store-conn.c       a worker's connection: the statement cache, binding, rows, the counters
 *   store-worker.c     the jobs and their queues, the worker threads, group commit on the writer
 *   store-checkpoint.c the checkpointer thread and the writer's WAL hook
 *   store-submit.c     submit (idempotency, a return's checks, capacity, the insert) and resolve
 *   store-receipts.c   the receipt queries and state changes after the submit
 *   store-access.c     what a permission problem on the buffer's directory or files looks like
 * Dependencies point one way: store.c uses every other piece; submit and receipts queue jobs through the
 * worker; the checkpointer starts its thread through the worker; the worker and the checkpointer use the
 * connection; the connection uses none of them. */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "hlc.h"
#include "key-index.h"
#include "list.h"
#include "store.h"

#define BUSY_TIMEOUT_DEFAULT (5 * USEC_PER_SEC)
#define CHECKPOINT_PAGES_DEFAULT 4096U
/* WAL size, in multiples of the checkpoint threshold, at which the writer stops leaving the checkpoints to
 * the checkpointer and catches up itself, so the WAL stays bounded even when commits never pause. */
#define CHECKPOINT_HARD_FACTOR 2U
/* Random bytes fetched per getrandom() call: 10 per receipt id, so one call serves 64 receipts. */
#define RANDOM_POOL_SIZE 640

/* Which callback a job has; what it runs is in the job itself. */
typedef enum JobType {
        JOB_SUBMIT,
        JOB_GET,
        JOB_WRITE,
        JOB_READ,
        JOB_RESOLVE,      /* writer: it holds the key index */
        JOB_RETRY_PRINT,  /* writer */
        JOB_CANCEL,       /* writer */
        JOB_LIST_REJECTED, /* reader */
} JobType;

typedef struct Job Job;

/* A job of the store's own, run on the worker instead of a StoreJobFunc: on the writer inside its
 * savepoint, on the reader without a transaction (one statement: one snapshot). */
typedef int (*JobRunFunc)(StoreConn *c, Job *j);

struct Job {
        /* On exactly one queue at a time: a worker's hand-off, its queue, a batch, or its done list. */
        LIST_FIELDS(Job, queue);
        JobType type;
        JobRunFunc run;    /* NULL: fn (JOB_WRITE, JOB_READ) */
        int result;
        void *userdata;
        union {
                StoreSubmitCallback submit;
                StoreGetCallback get;
                StoreDoneCallback done;
                StoreListCallback list;
        } cb;

        /* JOB_SUBMIT input, copied from the caller's StoreReceiptNew */
        char *idempotency_key;
        char *request_hash;
        char *pos_id;
        char *receipt_type;
        char *receipt_data;
        int64_t total_kopecks;
        char *original;
        char *original_type;
        usec_t original_before;
        bool refuse_new;
        unsigned response_status;
        char *response;

        /* JOB_GET, JOB_RETRY_PRINT, JOB_CANCEL input: the receipt id; JOB_RESOLVE: the reference */
        char *id;
        char *note;
        char *who;

        /* JOB_LIST_REJECTED */
        unsigned limit;
        StoreReceipt *receipts;
        size_t n_receipts;

        /* JOB_WRITE, JOB_READ */
        StoreJobFunc fn;
        void *job_data;

        /* JOB_SUBMIT, JOB_GET, JOB_RESOLVE, JOB_RETRY_PRINT, JOB_CANCEL output */
        StoreSubmitOutcome outcome;
        StoreReceipt receipt;
        bool have_receipt;
};

/* Keyed by the text alone: callers also build SQL in buffers of their own (the pragmas of
 * store_open_writer() share one), so a pointer says nothing about what it points to now. */
typedef struct CachedStmt {
        char *sql;
        sqlite3_stmt *stmt;
} CachedStmt;

struct StoreConn {
        Store *store;
        sqlite3 *db;
        CachedStmt *stmts;
        size_t n_stmts;
        size_t n_allocated;
};

typedef struct Worker {
        Store *store;
        bool is_writer;
        StoreConn conn;

        pthread_t thread;
        bool thread_started;
        bool lock_initialized;
        pthread_mutex_t lock;
        pthread_cond_t cond;

        /* Loop only: jobs queued during this loop iteration, handed to the thread together by a defer
         * source, so that the thread wakes once per iteration (and the writer starts a group with all
         * of them) instead of once per job. */
        Job *handoff_head, *handoff_tail;
        sd_event_source *handoff_source;

        /* Under lock: jobs waiting for the thread, jobs waiting for the loop, and what the last commits
         * left behind for the loop's copy. */
        Job *queue_head, *queue_tail;
        Job *done_head, *done_tail;
        bool quit;
        bool have_counters;
        StoreCounters counters;
        StoreStats stats;

        int event_fd;
        sd_event_source *event_source;
} Worker;

/* Copies the WAL back into the database file on a connection and thread of its own, so that neither the
 * copying nor (with synchronous=FULL) the database file's fsync holds up the writer's commits. */
typedef struct Checkpointer {
        Store *store;
        sqlite3 *db;
        pthread_t thread;
        bool thread_started;
        bool lock_initialized;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        /* Under lock. */
        bool requested;
        bool quit;
        unsigned request_epoch; /* the WAL's (see Store.wal_epoch) when the round was asked for */
        bool round_done;        /* a round ended since the last request, having copied... */
        int backfilled;         /* ...this many frames of the WAL of... */
        unsigned done_epoch;    /* ...this epoch */
} Checkpointer;

struct Store {
        sd_event *event;
        char *path;
        StoreOptions options;

        Worker writer;
        Worker reader;
        Checkpointer checkpointer;

        /* Writer thread only, once the threads run. */
        KeyIndex *keys;
        Hlc hlc;
        uint64_t hlc_persisted; /* config.hlc_last as committed */
        uint64_t hlc_written;   /* config.hlc_last as written by the open transaction */
        uint8_t random_pool[RANDOM_POOL_SIZE];
        size_t random_used;
        int wal_frames;              /* in the WAL after the last commit */
        unsigned wal_epoch;          /* counts the restarts of the WAL */
        int checkpoint_requested_at; /* WAL frames when the checkpointer was last asked; 0: not yet */

        /* Loop thread only. */
        StoreCounters counters;
        StoreStats stats;
        unsigned n_outstanding;
        bool shutting_down;
        StoreIdleCallback idle_cb;
        void *idle_userdata;
};

static inline int strdup_or_null(const char *s, char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

/* store-conn.c */
int store_conn_open(StoreConn *c, Store *s, int flags, const char *vfs);
void store_conn_close(StoreConn *c);
/* Logs SQLite's message at debug level and returns the errno for rc. */
int store_conn_error(StoreConn *c, int rc);
/* Prepares (cached), steps and resets a statement that returns no rows. */
int store_conn_exec(StoreConn *c, const char *sql);
/* Resets every statement left stepped, so that none holds a snapshot. */
void store_conn_reset_busy(StoreConn *c);
int store_conn_read_counters(StoreConn *c, unsigned capacity, StoreCounters *ret);
/* A SqliteRowFunc for rows of STORE_RECEIPT_COLUMNS: store_receipt_from_row() into a StoreReceipt. */
int store_receipt_row(sqlite3_stmt *stmt, void *userdata);
/* When the receipt was created (CLOCK_REALTIME); from its stamp when created_at cannot be read. */
usec_t store_receipt_created_usec(const StoreReceipt *r);
void store_receipts_free(StoreReceipt *r, size_t n);

/* store-worker.c */
Job *job_free(Job *j);
DEFINE_TRIVIAL_CLEANUP_FUNC(Job *, job_free);
/* Frees what a job produced, so a failed job hands nothing to its callback. */
void job_reset_output(Job *j);
int store_worker_init(Worker *w, Store *s, bool is_writer);
/* A thread with every signal blocked (they are the loop's) and a name. */
int store_thread_start(pthread_t *ret, void *(*fn)(void *), void *arg, const char *name);
int store_worker_start(Worker *w);
void store_worker_stop(Worker *w);
void store_worker_dispatch(Worker *w);
void store_worker_done(Worker *w);
/* Takes the job over on success. -ESHUTDOWN once store_free() began. */
int store_enqueue(Store *s, Worker *w, Job *j);
/* A job about one receipt (or reference) that calls back with a receipt. */
int store_queue_receipt_job(Store *s, Worker *w, JobType type, JobRunFunc run, const char *id,
                            const char *note, const char *who, StoreGetCallback cb, void *userdata);

/* store-access.c */
/* -EACCES when a permission problem on the buffer's directory or files explains `error` (what opening
 * failed with), else `error`. */
int store_access_error(const char *path, int error);

/* store-checkpoint.c */
int store_checkpointer_start(Checkpointer *k, Store *s);
void store_checkpointer_stop(Checkpointer *k);
void store_checkpointer_done(Checkpointer *k);
/* The WAL hook of the writer's connection (sqlite3_wal_hook(), userdata the Store). */
int store_writer_on_wal_commit(void *userdata, sqlite3 *db, const char *name, int n_frames);
