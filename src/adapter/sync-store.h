/* SPDX-License-Identifier: MIT */
#pragma once

/* The sync worker's SQL, as job functions for store_read()/store_write() (StoreJobFunc) with the data they
 * carry: selecting a batch (and building its request bodies off the loop), recording an attempt (synced,
 * retry, or dead-lettered with its dlq row and buffer event in the same job, hence the same transaction),
 * the DLQ listing, retry and resolve, and the retention prunes. Each runs on a store worker thread and
 * touches nothing but its job data and the connection. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "store.h"
#include "time-util.h"

/* ---- the batch (reader) ---- */

typedef struct SyncStoreItem {
        char *id;
        uint64_t hlc;
        unsigned attempts;  /* failed attempts so far */
        char *body;         /* the request body: {receipt_id, pos_id, hlc, receipt, fiscal_doc} */
        size_t body_size;
        char *error;        /* set (and body NULL) when the stored data cannot make a body */
} SyncStoreItem;

typedef struct SyncStoreBatch {
        /* in */
        unsigned limit;     /* >= 1 */
        usec_t now;         /* CLOCK_REALTIME; receipts whose next_retry_at is later wait */
        /* out */
        SyncStoreItem *items;
        size_t n_items;
        usec_t next_due;    /* when the batch is not full: CLOCK_REALTIME of the earliest next_retry_at
                             * after now among the receipts that would qualify then; USEC_INFINITY: none */
} SyncStoreBatch;

void sync_store_batch_done(SyncStoreBatch *b);

/* Up to limit receipts that are pending (or "failed", the prototype's status for the same), printed, with
 * a fiscal document, and due (next_retry_at NULL, unparsable or not after now), in HLC order. A receipt
 * that is not printed is never selected. Returns the number of items. */
int sync_store_select_batch(StoreConn *c, void *job_data);

/* The body for one receipt, as the batch builds it; receipt_data and fiscal_doc must be JSON objects
 * (-EBADMSG otherwise). Exposed for the tests. */
int sync_store_build_body(const char *id, const char *pos_id, uint64_t hlc, const char *receipt_data,
                          const char *fiscal_doc, char **ret_body, size_t *ret_size);

/* ---- one attempt (writer) ---- */

typedef enum SyncStoreAction {
        SYNC_STORE_ACTION_SYNCED,    /* the OFD has it */
        SYNC_STORE_ACTION_RETRY,     /* a failed attempt: count it, retry at next_retry_at (or give up) */
        SYNC_STORE_ACTION_PERMANENT, /* a failed attempt that is final: dead-letter now */
        _SYNC_STORE_ACTION_MAX,
} SyncStoreAction;

typedef enum SyncStoreRecorded {
        SYNC_STORE_RECORDED_SYNCED,
        SYNC_STORE_RECORDED_RETRY,
        SYNC_STORE_RECORDED_DEAD_LETTERED,
        SYNC_STORE_RECORDED_SKIPPED,  /* the receipt is gone or no longer pending: nothing changed */
        _SYNC_STORE_RECORDED_MAX,
} SyncStoreRecorded;

typedef struct SyncStoreAttempt {
        /* in */
        char *id;
        SyncStoreAction action;
        char *response;          /* SYNCED: the OFD's answer as JSON text (NULL: none) */
        bool duplicate;          /* SYNCED: it was a 409 */
        char *error;             /* RETRY, PERMANENT: what went wrong; becomes last_error or the reason */
        usec_t next_retry_at;    /* RETRY: CLOCK_REALTIME */
        unsigned max_attempts;   /* RETRY: the attempt that reaches this many failures dead-letters */
        /* out */
        SyncStoreRecorded recorded;
        unsigned attempts;       /* failed attempts after this one */
        char *dead_reason;       /* DEAD_LETTERED: the reason stored in the dlq row */
} SyncStoreAttempt;

void sync_store_attempt_done(SyncStoreAttempt *a);

/* Records one attempt; returns a->recorded. Dead-lettering sets the receipt's status to dlq, adds the dlq
 * row and the buffer event in this one job, so in one transaction. */
int sync_store_record_attempt(StoreConn *c, void *job_data);

/* ---- the dead-letter queue ---- */

typedef struct SyncDeadLetter {
        int64_t dlq_id;
        char *receipt_id;
        char *reason;
        char *moved_at;
        bool resolved;
        char *resolved_at;
        char *resolved_by;
        char *resolution_note;
        /* The receipt as it is now; status _STORE_STATUS_INVALID and the rest NULL/0 when it is gone. */
        StoreStatus status;
        char *pos_id;
        unsigned attempts;
        char *last_error;
        uint64_t hlc;
        char *created_at;
} SyncDeadLetter;

void sync_dead_letter_done(SyncDeadLetter *d);
/* {"dlq_id", "receipt_id", "reason", "moved_at", "resolved", "resolved_at", "resolved_by",
 *  "resolution_note", "status", "pos_id", "attempts", "last_error", "created_at"}, nulls where unset. */
int sync_dead_letter_to_json(const SyncDeadLetter *d, json_object **ret);

typedef struct SyncStoreDlqList {
        /* in */
        unsigned limit;          /* 0: SYNC_STORE_DLQ_LIST_MAX */
        bool unresolved_only;
        /* out */
        SyncDeadLetter *entries;
        size_t n_entries;
} SyncStoreDlqList;

#define SYNC_STORE_DLQ_LIST_MAX 1000U

void sync_store_dlq_list_done(SyncStoreDlqList *l);
/* dlq rows joined with their receipts: unresolved first (oldest first), then resolved (newest first).
 * Returns the number of entries. */
int sync_store_dlq_list(StoreConn *c, void *job_data);

typedef struct SyncStoreDlqChange {
        char *receipt_id;
        char *note;   /* resolve: the resolution note (may be NULL) */
        char *who;    /* who did it (may be NULL) */
} SyncStoreDlqChange;

void sync_store_dlq_change_done(SyncStoreDlqChange *d);
/* The receipt back to pending with attempts 0 and no next_retry_at; its open dlq rows resolved with the
 * note "retried". -ENOENT: no such receipt; -EALREADY: not in the DLQ. */
int sync_store_dlq_retry(StoreConn *c, void *job_data);
/* Its open dlq rows resolved with note and who; the receipt stays in the DLQ. -ENOENT: no such receipt
 * (nor dlq row); -EALREADY: nothing open to resolve. */
int sync_store_dlq_resolve(StoreConn *c, void *job_data);

/* ---- retention (writer), each job one bounded step; repeat while it returns limit ---- */

typedef struct SyncStorePrune {
        /* in */
        usec_t cutoff;       /* CLOCK_REALTIME: older than this goes */
        unsigned limit;      /* rows per job, >= 1 */
        /* in/out, events only: the last buffer_events id examined */
        int64_t cursor;
        /* out, added up over the jobs */
        uint64_t n_deleted;
} SyncStorePrune;

/* Synced receipts synced (else updated, else created) before cutoff, and cancelled receipts cancelled
 * (updated) before cutoff, with their idempotency keys. Returns the number of receipts deleted. */
int sync_store_prune_synced(StoreConn *c, void *job_data);
/* Receipts in the DLQ whose dead letters are all resolved before cutoff, with their dlq rows and
 * idempotency keys. Returns the number of receipts deleted. */
int sync_store_prune_dead_letters(StoreConn *c, void *job_data);
/* Resolved dlq rows older than cutoff whose receipt is not in the DLQ (retried ones). Run after
 * sync_store_prune_dead_letters(), which takes the rows of receipts still in the DLQ along with them.
 * Returns the number of rows deleted. */
int sync_store_prune_dlq_rows(StoreConn *c, void *job_data);
/* Examines up to limit buffer_events after cursor and deletes those whose receipt is gone. Returns the
 * number examined (less than limit: done). */
int sync_store_prune_events(StoreConn *c, void *job_data);
