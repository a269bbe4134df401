/* SPDX-License-Identifier: MIT */
#pragma once

/* The durable receipt buffer: buffer.db (SQLite, WAL), its schema and migrations, a writer thread that
 * commits queued jobs in groups, a reader thread for queries and a thread that checkpoints the WAL. The
 * sd-event loop never touches the disk: it queues jobs, and their callbacks run on the loop once the worker
 * is done (for writes: once the COMMIT holding the job returned). */

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sqlite3.h>
#include <systemd/sd-event.h>
#include <systemd/sd-id128.h>

#include "macro.h"
#include "sqlite-util.h"
#include "time-util.h"

#define STORE_CAPACITY_DEFAULT 200U

typedef struct Store Store;

/* A worker's connection, handed to the functions of store_write()/store_read(); valid only during the
 * call, on that worker's thread. */
typedef struct StoreConn StoreConn;

typedef enum StoreSynchronous {
        STORE_SYNCHRONOUS_FULL, /* the default: a commit is on disk when it returns */
        STORE_SYNCHRONOUS_OFF,  /* benchmarks only */
        _STORE_SYNCHRONOUS_MAX,
        _STORE_SYNCHRONOUS_INVALID = -EINVAL,
} StoreSynchronous;

/* "full", "off": as PRAGMA synchronous takes them. */
const char *store_synchronous_to_string(StoreSynchronous s);
StoreSynchronous store_synchronous_from_string(const char *s);

typedef struct StoreOptions {
        unsigned capacity;             /* max pending receipts; 0 = STORE_CAPACITY_DEFAULT */
        StoreSynchronous synchronous;
        usec_t busy_timeout;           /* 0 = 5 s */
        unsigned checkpoint_pages;     /* WAL pages that start a background checkpoint; 0 = 4096 */
} StoreOptions;

typedef enum StoreStatus {
        STORE_STATUS_PENDING,
        STORE_STATUS_SYNCED,
        STORE_STATUS_FAILED,
        STORE_STATUS_DLQ,
        STORE_STATUS_CANCELLED, /* cancelled by an admin after the register rejected it: never printed, never
                                 * sent to the OFD, out of the capacity count; final */
        _STORE_STATUS_MAX,
        _STORE_STATUS_INVALID = -EINVAL,
} StoreStatus;

typedef enum StorePrintStatus {
        STORE_PRINT_UNPRINTED,
        STORE_PRINT_PRINTED,
        STORE_PRINT_FAILED,
        STORE_PRINT_REJECTED,   /* "print_rejected": the register refused the document for good; out of the
                                 * print queue until an admin retries (store_retry_print()) or cancels it */
        _STORE_PRINT_MAX,
        _STORE_PRINT_INVALID = -EINVAL,
} StorePrintStatus;

const char *store_status_to_string(StoreStatus s);
StoreStatus store_status_from_string(const char *s);
const char *store_print_status_to_string(StorePrintStatus s);
StorePrintStatus store_print_status_from_string(const char *s);

/* What the loop hands in; the store copies it, so it need not outlive the call. */
typedef struct StoreReceiptNew {
        const char *idempotency_key;
        const char *request_hash;  /* sha256 hex of the canonical request */
        const char *pos_id;
        const char *type;          /* receipt_type: "sale", "refund", ... */
        int64_t total_kopecks;
        const char *receipt_data;  /* canonical JSON text */
        /* A return's original as the client named it: receipt id, Idempotency-Key or fiscal document number
         * (decimal digits), resolved as store_resolve_receipt() does; NULL: none (no checks). */
        const char *original;
        const char *original_type; /* the type the original must have ("sale" for "refund", "purchase" for
                                    * "purchase_refund"); NULL: any */
        usec_t original_before;    /* != 0: the original must have been created before this CLOCK_REALTIME
                                    * instant */
        bool refuse_new;           /* a replay of a known key still replays; anything new is REFUSED (the
                                    * register refuses sales now) */
        /* The answer to this request when it is known before the commit, stored with the key in the same
         * INSERT (see store_set_response()); NULL: stored later, or never. */
        unsigned response_status;
        const char *response;
} StoreReceiptNew;

/* One row of receipts. Timestamps are ISO 8601 UTC text; NULL when not set. */
typedef struct StoreReceipt {
        char *id;
        char *pos_id;
        char *receipt_type;
        int64_t total_kopecks;     /* 0 for rows the prototype wrote (it kept the total only in the JSON) */
        char *receipt_data;
        StoreStatus status;
        StorePrintStatus print_status;
        uint64_t hlc;
        char *created_at;
        char *updated_at;
        char *printed_at;
        char *synced_at;
        char *next_retry_at;
        unsigned attempts;
        char *last_error;
        char *fiscal_doc;          /* JSON */
        char *ofd_response;        /* JSON */
        uint32_t fiscal_document_number; /* the "fiscal_document_number" of fiscal_doc; 0: not printed */
        char *original_id;         /* a return's original (its receipt id); NULL: not a linked return */
        /* Filled by store_resolve_receipt() and for the refund outcomes of a submit (0 otherwise): what the
         * earlier returns of this receipt that are not cancelled add up to. */
        int64_t refunded_kopecks;
        /* STORE_SUBMIT_REPLAY only: the first answer stored with the key (store_set_response()); NULL: none
         * was stored. */
        unsigned response_status;
        char *response;
} StoreReceipt;

void store_receipt_done(StoreReceipt *r);

typedef enum StoreSubmitOutcome {
        STORE_SUBMIT_CREATED,      /* inserted and committed */
        STORE_SUBMIT_REPLAY,       /* key known with the same request hash: the existing receipt */
        STORE_SUBMIT_KEY_MISMATCH, /* key known with another request hash: nothing inserted */
        STORE_SUBMIT_FULL,         /* capacity pending receipts already: nothing inserted */
        STORE_SUBMIT_REFUSED,      /* refuse_new and the key is new: nothing inserted */
        /* For a return (StoreReceiptNew.original set); nothing inserted in each case. */
        STORE_SUBMIT_ORIGINAL_UNKNOWN,  /* no receipt by that id, key or FD number; receipt NULL */
        STORE_SUBMIT_ORIGINAL_MISMATCH, /* the original is not of original_type, or is cancelled; receipt =
                                         * the original */
        STORE_SUBMIT_REFUND_EXCEEDS,    /* total_kopecks > the original's total - its refunded_kopecks;
                                         * receipt = the original (with refunded_kopecks) */
        STORE_SUBMIT_ORIGINAL_TOO_NEW,  /* original_before set and the original is not older; receipt = the
                                         * original */
        _STORE_SUBMIT_OUTCOME_MAX,
} StoreSubmitOutcome;

const char *store_submit_outcome_to_string(StoreSubmitOutcome o);

typedef struct StoreCounters {
        uint64_t total;
        uint64_t pending;
        uint64_t synced;
        uint64_t failed;
        uint64_t dlq;
        uint64_t capacity;
        uint64_t cancelled;
        uint64_t print_rejected; /* pending receipts in print_rejected (also in pending) */
        /* CLOCK_REALTIME creation of the oldest receipt the OFD has not acknowledged (status pending or
         * failed: printed or not, print_rejected included; not the DLQ, not cancelled); 0: none. */
        usec_t oldest_unsynced;
} StoreCounters;

typedef struct StoreStats {
        uint64_t n_transactions;           /* group transactions committed */
        uint64_t n_jobs;                   /* jobs in them */
        uint64_t max_jobs_per_transaction;
        uint64_t n_failed_transactions;    /* groups whose COMMIT (or BEGIN) failed */
} StoreStats;

/* error < 0: nothing was stored (-ENOSPC: disk full); otherwise `outcome` says what happened and `receipt`
 * is the new or the existing receipt (NULL for KEY_MISMATCH, FULL and ORIGINAL_UNKNOWN; the original for the
 * other refund outcomes), valid during the call only. */
typedef void (*StoreSubmitCallback)(Store *s, int error, StoreSubmitOutcome outcome,
                                    const StoreReceipt *receipt, void *userdata);
/* error -ENOENT: no such receipt. */
typedef void (*StoreGetCallback)(Store *s, int error, const StoreReceipt *receipt, void *userdata);
/* error < 0: nothing listed (receipts NULL, n 0); the receipts are valid during the call only. */
typedef void (*StoreListCallback)(Store *s, int error, const StoreReceipt *receipts, size_t n,
                                  void *userdata);
/* result: what the job function returned (>= 0), or a negative errno (the job's, or its COMMIT's). */
typedef void (*StoreDoneCallback)(Store *s, int result, void *userdata);
typedef void (*StoreIdleCallback)(Store *s, void *userdata);

/* Runs on a worker thread: touch nothing but job_data and the connection. On the writer, a negative return
 * rolls back what the function did (its own savepoint) without affecting the other jobs of the group. */
typedef int (*StoreJobFunc)(StoreConn *c, void *job_data);

/* Receipt ids are UUIDs of version 7 (RFC 9562) in the 8-4-4-4-12 lower-case form: 48 bits of unix
 * milliseconds first, then 74 random bits, so ids sort by creation time across milliseconds and new rows
 * append to the primary key's B-tree instead of writing random pages. */
#define STORE_RECEIPT_ID_MAX SD_ID128_UUID_STRING_MAX
/* The id for `unix_ms` and ten random bytes (getrandom()'s; the version and variant bits in them are
 * overwritten); returns ret. */
char *store_receipt_id_new_at(uint64_t unix_ms, const uint8_t random_bytes[static 10],
                              char ret[static STORE_RECEIPT_ID_MAX]);

/* Opens (creating if needed), checks (PRAGMA quick_check) and migrates the database, loads the counters
 * and the HLC and starts the two worker threads. Blocks: call it before the loop runs. -EBADMSG: corrupt
 * or not a database; -EPROTO: written by a newer version; -EROFS: read-only file system; -EACCES: the state
 * directory or a file of the buffer is closed to the user we run as (see store_log_open_error());
 * -ENOENT, -EISDIR...: from opening the file; -ENOSPC: no room to migrate.
 * In builds with ENABLE_DEBUG_HOOKS, two environment variables are honoured, for tests and benchmarks only:
 * KKT_ADAPTER_DEBUG_SYNCHRONOUS=off|full overrides opts->synchronous, and KKT_ADAPTER_DEBUG_MAX_PAGES=N
 * sets PRAGMA max_page_count=N on the writer after the migrations, so that growing the file past N pages
 * fails as a full disk does (-ENOSPC). A malformed value fails with -EINVAL. */
int store_open(Store **ret, sd_event *event, const char *path, const StoreOptions *opts);

/* Logs why store_open() failed with `error` on `path`, and returns it. For -EACCES the message names the
 * directory or file that is closed to us, its owner and mode, and the owner it needs (the user we run as). */
int store_log_open_error(int error, const char *path);

/* Finishes every queued job, delivering the callbacks, then joins the threads and closes the database
 * (blocks until then: wait for store_is_idle() first for a prompt exit). Callbacks that run from here get
 * -ESHUTDOWN for new jobs. Not to be called from a store callback. */
Store *store_free(Store *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Store *, store_free);

/* No job queued, running or waiting for its callback. */
bool store_is_idle(Store *s);
/* Called on the loop when the store becomes idle; NULL to unset. */
void store_set_idle_callback(Store *s, StoreIdleCallback cb, void *userdata);

/* For a return (r->original set), the original is resolved and checked in the same job as the idempotency
 * check and the insert, hence in the same transaction: two returns of one original in one group commit see
 * each other. A replay of a key with the same request hash replays, whatever the original's state now. */
int store_submit_receipt(Store *s, const StoreReceiptNew *r, StoreSubmitCallback cb, void *userdata);
int store_get_receipt(Store *s, const char *id, StoreGetCallback cb, void *userdata);
/* The receipt a client names: by id, else by Idempotency-Key, else (all digits) by fiscal document number
 * (the newest such receipt), with refunded_kopecks. Runs on the writer, which holds the key index. error
 * -ENOENT: none. */
int store_resolve_receipt(Store *s, const char *ref, StoreGetCallback cb, void *userdata);

/* Stores the first answer to the Idempotency-Key of receipt `id`: its HTTP status and `response` (text,
 * the caller's format), for replays to say the same. A key keeps the answer it has: the callback's result
 * is 1 when this one was stored, 0 when the key had one already; -ENOENT: no key for that receipt. */
int store_set_response(Store *s, const char *id, unsigned status, const char *response, StoreDoneCallback cb,
                       void *userdata);

/* A generic job on the writer, inside the group transaction, in its own savepoint; cb (may be NULL) runs
 * after the COMMIT. job_data belongs to the caller, who must keep it alive until cb. */
int store_write(Store *s, StoreJobFunc fn, void *job_data, StoreDoneCallback cb, void *userdata);
/* The same on the read-only connection, in a read transaction of its own (one consistent snapshot). */
int store_read(Store *s, StoreJobFunc fn, void *job_data, StoreDoneCallback cb, void *userdata);

/* print_status unprinted/print_failed -> printed, with the fiscal document (JSON) and the time it was
 * printed; its "fiscal_document_number" (a JSON integer in 1..2^32-1) becomes the receipt's. -ENOENT unknown
 * id; -EALREADY already printed (a fiscal document is never overwritten); -ESTALE cancelled or in
 * print_rejected. */
int store_mark_printed(Store *s, const char *id, const char *fiscal_doc, usec_t printed_at,
                       StoreDoneCallback cb, void *userdata);
/* status pending/failed -> synced, with the OFD's response (JSON, may be NULL). -ENOENT unknown id;
 * -EALREADY already synced; -EPERM not printed yet (nothing reaches the OFD without fiscal attributes);
 * -ESTALE in the DLQ. */
int store_mark_synced(Store *s, const char *id, const char *ofd_response, StoreDoneCallback cb,
                      void *userdata);

/* The register refused the receipt for good: print_status unprinted/print_failed -> print_rejected, with
 * last_error = reason and a buffer_events row; status stays pending (it still needs an admin, and counts
 * against the capacity). -ENOENT unknown; -EALREADY printed or rejected already; -ESTALE cancelled (or, for
 * a row of the prototype, not pending). */
int store_set_print_rejected(Store *s, const char *id, const char *reason, StoreDoneCallback cb,
                             void *userdata);
/* An admin's retry: print_rejected (pending) -> unprinted, attempts and last_error kept, a buffer_events row
 * with `who` (may be NULL). The callback gets the updated receipt (its receipt_data is what the printer
 * needs). -ENOENT; -EBUSY not in print_rejected; -ESTALE cancelled. */
int store_retry_print(Store *s, const char *id, const char *who, StoreGetCallback cb, void *userdata);
/* An admin's cancel: print_rejected (pending) -> status cancelled (final), last_error "cancelled by <who>:
 * <note>", a buffer_events row. The callback gets the updated receipt. -ENOENT; -EBUSY not in
 * print_rejected; -ESTALE cancelled already. note and who may be NULL. */
int store_cancel_receipt(Store *s, const char *id, const char *note, const char *who, StoreGetCallback cb,
                         void *userdata);
/* Receipts in print_rejected (pending), oldest (in HLC order) first, at most `limit` (0: 100), on the
 * reader. */
#define STORE_LIST_LIMIT_DEFAULT 100U
int store_list_print_rejected(Store *s, unsigned limit, StoreListCallback cb, void *userdata);

/* Kept on the loop thread from the commits' results; reading them touches no disk. */
const StoreCounters *store_get_counters(Store *s);
const StoreStats *store_get_stats(Store *s);
const char *store_get_path(Store *s);

/* For job functions. */
sqlite3 *store_conn_get_db(StoreConn *c);
/* A statement for `sql` (one statement), prepared once per connection and cached, keyed by the text:
 * reset, bindings cleared. It is reset again after the job, so a SELECT left half-read holds no snapshot. */
int store_conn_prepare(StoreConn *c, const char *sql, sqlite3_stmt **ret);
/* Steps a statement that returns no rows; negative errno on failure. */
int store_conn_step_done(StoreConn *c, sqlite3_stmt *stmt);
/* Binds arguments in order: 't' const char * (NULL binds NULL), 'i' int64_t, 'u' uint64_t. Text is bound
 * SQLITE_STATIC: it must stay valid until the statement is reset. */
int store_conn_bind(StoreConn *c, sqlite3_stmt *stmt, const char *types, ...);
/* The same with a va_list. */
int store_conn_bindv(StoreConn *c, sqlite3_stmt *stmt, const char *types, va_list ap);
/* The one-row query: `sql` prepared (cached), bound as store_conn_bind() does, stepped once, its row read
 * by `read` (may be NULL) and reset (sqlite_step_one()). 1: there was a row; 0: none; negative errno (or
 * what `read` returned). */
int store_conn_query_one(StoreConn *c, const char *sql, SqliteRowFunc read, void *userdata,
                         const char *types, ...);
/* A statement that returns no rows (INSERT, UPDATE, DELETE), prepared (cached), bound and stepped: the
 * number of rows it changed, or a negative errno. */
int store_conn_run(StoreConn *c, const char *sql, const char *types, ...);
/* The one-row query reading the first column as an integer (0 when there is no row or it is NULL). */
int store_conn_query_int64(StoreConn *c, const char *sql, int64_t *ret, const char *types, ...);
/* A copy of a text column; NULL for SQL NULL. -ENOMEM. */
int store_column_strdup(sqlite3_stmt *stmt, int i, char **ret);
/* Adds a buffer_events row (writer only); details (JSON) may be NULL. */
int store_conn_log_event(StoreConn *c, const char *receipt_id, const char *event, const char *details);
/* The same with details {k1: v1, k2: v2, kn: n}: a NULL key leaves its member out, a NULL text is null. */
int store_conn_log_event_fields(StoreConn *c, const char *receipt_id, const char *event, const char *k1,
                                const char *v1, const char *k2, const char *v2, const char *kn, int64_t n);
/* The receipt with this id; -ENOENT when there is none. Free with store_receipt_done(). */
int store_conn_get_receipt(StoreConn *c, const char *id, StoreReceipt *ret);
/* Marks a printed receipt that is pending or failed as synced, with the OFD's answer (writer only).
 * 1 if it did, 0 if no such receipt was in that state. */
int store_conn_set_synced(StoreConn *c, const char *id, const char *ofd_response);
/* Deletes the idempotency key of a receipt, on disk and from the writer's key index (writer only). */
int store_conn_delete_keys_of(StoreConn *c, const char *receipt_id);
/* Writes the HLC's last stamp to config.hlc_last if it moved (writer only). Commits do not: the receipts
 * carry their stamps, and the store takes the larger of the two at open. Needed before receipts are
 * deleted, so that the stamps never go back even when the newest receipts are pruned. */
int store_conn_persist_hlc(StoreConn *c);

/* For listings: SELECT STORE_RECEIPT_COLUMNS FROM receipts ..., then store_receipt_from_row() per row. */
#define STORE_RECEIPT_COLUMNS                                                                           \
        "id, pos_id, receipt_type, total_kopecks, receipt_data, status, print_status, hlc, created_at, " \
        "updated_at, printed_at, synced_at, next_retry_at, attempts, last_error, fiscal_doc, "         \
        "ofd_response, fiscal_document_number, original_id"
int store_receipt_from_row(sqlite3_stmt *stmt, StoreReceipt *ret);
