/* SPDX-License-Identifier: MIT */
/* The SQL of the sync worker: its statements, their bindings and the results they hand back. Each public
 * function is a StoreJobFunc run on a store thread; nothing here touches the loop. */

#include <inttypes.h>
#include <limits.h>

#include "hlc.h"
#include "json-util.h"
#include "sqlite-util.h"
#include "sync-store.h"

/* The ISO 8601 texts we write compare as text, but rows of the prototype may hold other forms: compare
 * through julianday(), and treat what it cannot read as due. */
#define DUE_CONDITION                                                                           \
        "(next_retry_at IS NULL OR julianday(next_retry_at) IS NULL OR "                        \
        "julianday(next_retry_at) <= julianday(?1))"

/* "+print_status" keeps the planner off the print_status index, which would walk every printed (that is,
 * every synced) receipt; (status, hlc) walks the pending ones in HLC order, and the two arms are merged. */
#define SELECT_BATCH_ARM(status)                                                                \
        "SELECT id, hlc, attempts, pos_id, receipt_data, fiscal_doc FROM receipts "             \
        "WHERE status = '" status "' AND +print_status = 'printed' AND fiscal_doc IS NOT NULL " \
        "AND " DUE_CONDITION

static int step_error(StoreConn *c, int rc) {
        return sqlite_step_error(store_conn_get_db(c), rc);
}

static unsigned column_unsigned(sqlite3_stmt *stmt, int i) {
        int64_t v = sqlite3_column_int64(stmt, i);
        return v <= 0 ? 0 : v >= UINT_MAX ? UINT_MAX : (unsigned) v;
}

static char *format_now(char buf[static FORMAT_ISO8601_MAX]) {
        return format_iso8601_utc(buf, FORMAT_ISO8601_MAX, now(CLOCK_REALTIME));
}

/* ---- the batch ---- */

static void sync_store_item_done(SyncStoreItem *i) {
        free(i->id);
        free(i->body);
        free(i->error);
        *i = (SyncStoreItem) {};
}

void sync_store_batch_done(SyncStoreBatch *b) {
        if (!b)
                return;
        for (size_t i = 0; i < b->n_items; i++)
                sync_store_item_done(b->items + i);
        b->items = mfree(b->items);
        b->n_items = 0;
}

static int parse_object(const char *text, json_object **ret) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_(json_object_putp) json_object *o = NULL;
        size_t n, end;

        if (!text)
                return -EBADMSG;
        n = strlen(text);
        if (n > INT32_MAX)
                return -EBADMSG;

        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        o = json_tokener_parse_ex(tok, text, (int) n);
        if (!o || json_tokener_get_error(tok) != json_tokener_success ||
            !json_object_is_type(o, json_type_object))
                return -EBADMSG;
        /* One object and nothing after it but white space. */
        end = json_tokener_get_parse_end(tok);
        if (text[end + strspn(text + end, " \t\r\n")] != 0)
                return -EBADMSG;

        *ret = TAKE_PTR(o);
        return 0;
}

int sync_store_build_body(const char *id, const char *pos_id, uint64_t hlc, const char *receipt_data,
                          const char *fiscal_doc, char **ret_body, size_t *ret_size) {
        _cleanup_(json_object_putp) json_object *o = NULL, *receipt = NULL, *doc = NULL;
        char hlc_text[HLC_FORMAT_MAX];
        const char *text;
        size_t n;
        char *copy;
        int r;

        assert(id);
        assert(ret_body);
        assert(ret_size);

        r = parse_object(receipt_data, &receipt);
        if (r < 0)
                return r;
        r = parse_object(fiscal_doc, &doc);
        if (r < 0)
                return r;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        r = json_add_string_or_null(o, "receipt_id", id);
        if (r >= 0)
                r = json_add_string_or_null(o, "pos_id", pos_id);
        if (r >= 0)
                r = json_add_string_or_null(o, "hlc", hlc_format(hlc_text, sizeof hlc_text, hlc));
        if (r >= 0) {
                r = json_object_object_add(o, "receipt", receipt) < 0 ? -ENOMEM : 0;
                if (r >= 0)
                        TAKE_PTR(receipt);
        }
        if (r >= 0) {
                r = json_object_object_add(o, "fiscal_doc", doc) < 0 ? -ENOMEM : 0;
                if (r >= 0)
                        TAKE_PTR(doc);
        }
        if (r < 0)
                return r;

        text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
                                                 &n);
        if (!text)
                return -ENOMEM;
        copy = malloc(n + 1);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, text, n + 1);

        *ret_body = copy;
        *ret_size = n;
        return 0;
}

static int batch_item_from_row(sqlite3_stmt *stmt, SyncStoreItem *item) {
        const char *pos_id = (const char *) sqlite3_column_text(stmt, 3);
        const char *receipt_data = (const char *) sqlite3_column_text(stmt, 4);
        const char *fiscal_doc = (const char *) sqlite3_column_text(stmt, 5);
        int r;

        r = store_column_strdup(stmt, 0, &item->id);
        if (r < 0)
                return r;
        if (!item->id)
                return -EBADMSG; /* the primary key of a rowid table may be NULL; never ours */
        item->hlc = (uint64_t) sqlite3_column_int64(stmt, 1);
        item->attempts = column_unsigned(stmt, 2);

        r = sync_store_build_body(item->id, pos_id, item->hlc, receipt_data, fiscal_doc, &item->body,
                                  &item->body_size);
        if (r == -EBADMSG) {
                /* Not a reason to stop the batch: this receipt goes to the DLQ with the reason. */
                item->error = strdup("the stored receipt or fiscal document is not a JSON object");
                return item->error ? 0 : -ENOMEM;
        }
        return r;
}

/* The earliest retry still to come, so the worker wakes up for it instead of waiting for its interval.
 * julianday() is a fraction of days: microseconds come out within a few of the text's milliseconds. */
static int select_next_due(StoreConn *c, const char *now_text, usec_t *ret) {
        int64_t v;
        int r;

        r = store_conn_query_int64(c,
                                   "SELECT CAST(ROUND((MIN(julianday(next_retry_at)) - 2440587.5) * "
                                   "86400000000.0) AS INTEGER) FROM receipts WHERE status IN ('pending', "
                                   "'failed') AND +print_status = 'printed' AND fiscal_doc IS NOT NULL "
                                   "AND julianday(next_retry_at) > julianday(?1)",
                                   &v, "t", now_text);
        if (r < 0)
                return r;
        *ret = v <= 0 ? USEC_INFINITY : (usec_t) v; /* NULL (no such receipt): 0 */
        return 0;
}

int sync_store_select_batch(StoreConn *c, void *job_data) {
        SyncStoreBatch *b = job_data;
        char now_text[FORMAT_ISO8601_MAX];
        sqlite3_stmt *stmt;
        int rc = SQLITE_DONE, r;

        assert(c);
        assert(b);
        assert(b->limit > 0);
        assert(!b->items);

        b->items = new0(SyncStoreItem, b->limit);
        if (!b->items)
                return -ENOMEM;

        r = store_conn_prepare(c,
                               SELECT_BATCH_ARM("pending") " UNION ALL " SELECT_BATCH_ARM("failed")
                               " ORDER BY hlc LIMIT ?2",
                               &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "ti", format_iso8601_utc(now_text, sizeof now_text, b->now),
                            (int64_t) b->limit);
        if (r < 0)
                return r;

        while (b->n_items < b->limit && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
                r = batch_item_from_row(stmt, b->items + b->n_items);
                b->n_items++; /* counted even half-filled, so that _done() frees it */
                if (r < 0)
                        return r;
        }
        if (b->n_items < b->limit && rc != SQLITE_DONE)
                return step_error(c, rc);
        (void) sqlite3_reset(stmt);

        b->next_due = USEC_INFINITY;
        if (b->n_items < b->limit) {
                r = select_next_due(c, now_text, &b->next_due);
                if (r < 0)
                        return r;
        }
        return (int) b->n_items;
}

/* ---- one attempt ---- */

void sync_store_attempt_done(SyncStoreAttempt *a) {
        if (!a)
                return;
        free(a->id);
        free(a->response);
        free(a->error);
        free(a->dead_reason);
        *a = (SyncStoreAttempt) {};
}

/* -ENOENT: no such receipt. */
typedef struct StatusRow {
        StoreStatus status;
        unsigned attempts;
} StatusRow;

static int read_status_row(sqlite3_stmt *stmt, void *userdata) {
        StatusRow *row = userdata;

        row->status = store_status_from_string((const char *) sqlite3_column_text(stmt, 0));
        row->attempts = column_unsigned(stmt, 1);
        return 0;
}

static int read_status(StoreConn *c, const char *id, StoreStatus *ret_status, unsigned *ret_attempts) {
        StatusRow row;
        int r;

        r = store_conn_query_one(c, "SELECT status, attempts FROM receipts WHERE id = ?", read_status_row, &row,
                                 "t", id);
        if (r <= 0)
                return r == 0 ? -ENOENT : r;
        *ret_status = row.status;
        if (ret_attempts)
                *ret_attempts = row.attempts;
        return 0;
}

static int record_synced(StoreConn *c, SyncStoreAttempt *a) {
        int r;

        /* The conditions repeat the batch's: what changed meanwhile (an admin, a second path) wins. */
        r = store_conn_set_synced(c, a->id, a->response);
        if (r < 0)
                return r;
        if (r == 0) {
                a->recorded = SYNC_STORE_RECORDED_SKIPPED;
                return 0;
        }

        a->recorded = SYNC_STORE_RECORDED_SYNCED;
        return store_conn_log_event_fields(c, a->id, "synced", NULL, NULL, NULL, NULL, "duplicate",
                                           a->duplicate);
}

static int record_dead(StoreConn *c, SyncStoreAttempt *a, const char *reason) {
        char ts[FORMAT_ISO8601_MAX];
        int r;

        a->dead_reason = strdup(reason);
        if (!a->dead_reason)
                return -ENOMEM;
        format_now(ts);

        r = store_conn_run(c,
                           "UPDATE receipts SET status = 'dlq', attempts = ?1, last_error = ?2, "
                           "next_retry_at = NULL, updated_at = ?3 "
                           "WHERE id = ?4 AND status IN ('pending', 'failed')",
                           "ittt", (int64_t) a->attempts, a->dead_reason, ts, a->id);
        if (r < 0)
                return r;
        if (r == 0) {
                a->recorded = SYNC_STORE_RECORDED_SKIPPED;
                return 0;
        }

        r = store_conn_run(c, "INSERT INTO dlq (receipt_id, reason, moved_at) VALUES (?1, ?2, ?3)",
                           "ttt", a->id, a->dead_reason, ts);
        if (r < 0)
                return r;

        a->recorded = SYNC_STORE_RECORDED_DEAD_LETTERED;
        return store_conn_log_event_fields(c, a->id, "dead_lettered", "reason", a->dead_reason, NULL, NULL,
                                           "attempts", a->attempts);
}

static int record_failure(StoreConn *c, SyncStoreAttempt *a) {
        char ts[FORMAT_ISO8601_MAX], next[FORMAT_ISO8601_MAX];
        _cleanup_free_ char *reason = NULL;
        StoreStatus status;
        unsigned attempts;
        int r;

        r = read_status(c, a->id, &status, &attempts);
        if (r == -ENOENT || (r >= 0 && !IN_SET(status, STORE_STATUS_PENDING, STORE_STATUS_FAILED))) {
                a->recorded = SYNC_STORE_RECORDED_SKIPPED;
                return 0;
        }
        if (r < 0)
                return r;

        /* Every failed attempt counts, whatever kind of failure it was. */
        a->attempts = attempts < UINT_MAX ? attempts + 1 : UINT_MAX;

        if (a->action == SYNC_STORE_ACTION_PERMANENT)
                return record_dead(c, a, strempty(a->error));
        if (a->max_attempts > 0 && a->attempts >= a->max_attempts) {
                if (asprintf(&reason, "gave up after %u attempts, last: %s", a->attempts,
                             strempty(a->error)) < 0)
                        return -ENOMEM;
                return record_dead(c, a, reason);
        }

        r = store_conn_run(c,
                           "UPDATE receipts SET attempts = ?1, last_error = ?2, next_retry_at = ?3, "
                           "updated_at = ?4 WHERE id = ?5",
                           "itttt", (int64_t) a->attempts, a->error,
                           format_iso8601_utc(next, sizeof next, a->next_retry_at), format_now(ts), a->id);
        if (r < 0)
                return r;

        a->recorded = SYNC_STORE_RECORDED_RETRY;
        return store_conn_log_event_fields(c, a->id, "sync_failed", "error", a->error, NULL, NULL, "attempt",
                                           a->attempts);
}

int sync_store_record_attempt(StoreConn *c, void *job_data) {
        SyncStoreAttempt *a = job_data;
        int r;

        assert(c);
        assert(a);
        assert(a->id);

        a->dead_reason = mfree(a->dead_reason);
        switch (a->action) {
        case SYNC_STORE_ACTION_SYNCED:
                r = record_synced(c, a);
                break;
        case SYNC_STORE_ACTION_RETRY:
        case SYNC_STORE_ACTION_PERMANENT:
                r = record_failure(c, a);
                break;
        default:
                return -EINVAL;
        }
        return r < 0 ? r : (int) a->recorded;
}

/* ---- the dead-letter queue ---- */

void sync_dead_letter_done(SyncDeadLetter *d) {
        if (!d)
                return;
        free(d->receipt_id);
        free(d->reason);
        free(d->moved_at);
        free(d->resolved_at);
        free(d->resolved_by);
        free(d->resolution_note);
        free(d->pos_id);
        free(d->last_error);
        free(d->created_at);
        *d = (SyncDeadLetter) {};
}

void sync_store_dlq_list_done(SyncStoreDlqList *l) {
        if (!l)
                return;
        for (size_t i = 0; i < l->n_entries; i++)
                sync_dead_letter_done(l->entries + i);
        l->entries = mfree(l->entries);
        l->n_entries = 0;
}

int sync_dead_letter_to_json(const SyncDeadLetter *d, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        int r;

        assert(d);
        assert(ret);

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;

        r = json_add(o, "dlq_id", json_object_new_int64(d->dlq_id));
        if (r >= 0)
                r = json_add_string_or_null(o, "receipt_id", d->receipt_id);
        if (r >= 0)
                r = json_add_string_or_null(o, "reason", d->reason);
        if (r >= 0)
                r = json_add_string_or_null(o, "moved_at", d->moved_at);
        if (r >= 0)
                r = json_add(o, "resolved", json_object_new_boolean(d->resolved));
        if (r >= 0)
                r = json_add_string_or_null(o, "resolved_at", d->resolved_at);
        if (r >= 0)
                r = json_add_string_or_null(o, "resolved_by", d->resolved_by);
        if (r >= 0)
                r = json_add_string_or_null(o, "resolution_note", d->resolution_note);
        if (r >= 0)
                r = json_add_string_or_null(o, "status", store_status_to_string(d->status));
        if (r >= 0)
                r = json_add_string_or_null(o, "pos_id", d->pos_id);
        if (r >= 0)
                r = json_add(o, "attempts", json_object_new_int64(d->attempts));
        if (r >= 0)
                r = json_add_string_or_null(o, "last_error", d->last_error);
        if (r >= 0)
                r = json_add_string_or_null(o, "created_at", d->created_at);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

static int dead_letter_from_row(sqlite3_stmt *stmt, SyncDeadLetter *d) {
        _cleanup_free_ char *status = NULL;

        d->dlq_id = sqlite3_column_int64(stmt, 0);
        d->resolved = sqlite3_column_int64(stmt, 4) != 0;
        d->attempts = column_unsigned(stmt, 10);
        d->hlc = (uint64_t) sqlite3_column_int64(stmt, 12);
        if (store_column_strdup(stmt, 1, &d->receipt_id) < 0 ||
            store_column_strdup(stmt, 2, &d->reason) < 0 ||
            store_column_strdup(stmt, 3, &d->moved_at) < 0 ||
            store_column_strdup(stmt, 5, &d->resolved_at) < 0 ||
            store_column_strdup(stmt, 6, &d->resolved_by) < 0 ||
            store_column_strdup(stmt, 7, &d->resolution_note) < 0 ||
            store_column_strdup(stmt, 8, &status) < 0 || store_column_strdup(stmt, 9, &d->pos_id) < 0 ||
            store_column_strdup(stmt, 11, &d->last_error) < 0 ||
            store_column_strdup(stmt, 13, &d->created_at) < 0)
                return -ENOMEM;
        d->status = store_status_from_string(status);
        return 0;
}

int sync_store_dlq_list(StoreConn *c, void *job_data) {
        SyncStoreDlqList *l = job_data;
        sqlite3_stmt *stmt;
        unsigned limit;
        int rc = SQLITE_DONE, r;

        assert(c);
        assert(l);
        assert(!l->entries);

        limit = l->limit == 0 ? SYNC_STORE_DLQ_LIST_MAX : MIN(l->limit, SYNC_STORE_DLQ_LIST_MAX);
        l->entries = new0(SyncDeadLetter, limit);
        if (!l->entries)
                return -ENOMEM;

        r = store_conn_prepare(
                c,
                "SELECT d.id, d.receipt_id, d.reason, d.moved_at, d.resolved, d.resolved_at, "
                "d.resolved_by, d.resolution_note, r.status, r.pos_id, r.attempts, "
                "r.last_error, r.hlc, r.created_at "
                "FROM dlq d LEFT JOIN receipts r ON r.id = d.receipt_id "
                "WHERE ?1 = 0 OR d.resolved = 0 "
                "ORDER BY d.resolved <> 0, CASE WHEN d.resolved <> 0 THEN -d.id ELSE d.id END "
                "LIMIT ?2",
                &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "ii", (int64_t) l->unresolved_only, (int64_t) limit);
        if (r < 0)
                return r;

        while (l->n_entries < limit && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
                r = dead_letter_from_row(stmt, l->entries + l->n_entries);
                l->n_entries++;
                if (r < 0)
                        return r;
        }
        if (l->n_entries < limit && rc != SQLITE_DONE)
                return step_error(c, rc);

        return (int) l->n_entries;
}

void sync_store_dlq_change_done(SyncStoreDlqChange *d) {
        if (!d)
                return;
        free(d->receipt_id);
        free(d->note);
        free(d->who);
        *d = (SyncStoreDlqChange) {};
}

/* Resolves the open dlq rows of a receipt; returns how many. */
static int dlq_resolve_rows(StoreConn *c, const char *id, const char *note, const char *who) {
        char ts[FORMAT_ISO8601_MAX];

        return store_conn_run(c,
                              "UPDATE dlq SET resolved = 1, resolved_at = ?1, resolved_by = ?2, "
                              "resolution_note = ?3 WHERE receipt_id = ?4 AND resolved = 0",
                              "tttt", format_now(ts), who, note, id);
}

/* Whether the receipt has dead letters: any (open_only false) or unresolved ones. */
static int dlq_rows_exist(StoreConn *c, const char *id, bool open_only) {
        return store_conn_query_one(c,
                                    open_only ? "SELECT 1 FROM dlq WHERE receipt_id = ? AND resolved = 0 LIMIT 1"
                                              : "SELECT 1 FROM dlq WHERE receipt_id = ? LIMIT 1",
                                    NULL, NULL, "t", id);
}

static int dlq_has_rows(StoreConn *c, const char *id) {
        return dlq_rows_exist(c, id, false);
}

static int dlq_open_rows(StoreConn *c, const char *id) {
        return dlq_rows_exist(c, id, true);
}

int sync_store_dlq_retry(StoreConn *c, void *job_data) {
        SyncStoreDlqChange *d = job_data;
        char ts[FORMAT_ISO8601_MAX];
        StoreStatus status;
        int r;

        assert(c);
        assert(d);
        assert(d->receipt_id);

        r = read_status(c, d->receipt_id, &status, NULL);
        if (r < 0)
                return r;
        if (status != STORE_STATUS_DLQ)
                return -EALREADY;
        /* Resolved means handled outside the adapter (entered at the OFD's portal, say): sending it now
         * would make a second record of the same sale. Final. */
        r = dlq_open_rows(c, d->receipt_id);
        if (r < 0)
                return r;
        if (r == 0 && dlq_has_rows(c, d->receipt_id) > 0)
                return -ESTALE;

        r = store_conn_run(c,
                           "UPDATE receipts SET status = 'pending', attempts = 0, next_retry_at = NULL, "
                           "updated_at = ?1 WHERE id = ?2",
                           "tt", format_now(ts), d->receipt_id);
        if (r < 0)
                return r;

        r = dlq_resolve_rows(c, d->receipt_id, "retried", d->who);
        if (r < 0)
                return r;
        return store_conn_log_event_fields(c, d->receipt_id, "dlq_retried", "by", d->who, NULL, NULL,
                                           "resolved", r);
}

int sync_store_dlq_resolve(StoreConn *c, void *job_data) {
        SyncStoreDlqChange *d = job_data;
        StoreStatus status;
        int r;

        assert(c);
        assert(d);
        assert(d->receipt_id);

        r = dlq_resolve_rows(c, d->receipt_id, d->note, d->who);
        if (r < 0)
                return r;
        if (r == 0) {
                /* Nothing open: resolved already (the receipt still in the DLQ, or pruned with its dead
                 * letters left), not in the DLQ (never, or retried from it), or no such receipt. */
                r = read_status(c, d->receipt_id, &status, NULL);
                if (r >= 0)
                        return status == STORE_STATUS_DLQ ? -ESTALE : -EALREADY;
                if (r != -ENOENT)
                        return r;
                r = dlq_has_rows(c, d->receipt_id);
                if (r < 0)
                        return r;
                return r > 0 ? -ESTALE : -ENOENT;
        }

        return store_conn_log_event_fields(c, d->receipt_id, "dlq_resolved", "by", d->who, "note", d->note,
                                           "resolved", r);
}

/* ---- retention ---- */

static int collect_ids(StoreConn *c, sqlite3_stmt *stmt, char ***ret, size_t *ret_n) {
        char **ids = NULL;
        size_t n = 0, allocated = 0;
        int rc, r = 0;

        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
                if (n == allocated) {
                        size_t a = MAX(allocated * 2, (size_t) 64);
                        char **p = reallocarray(ids, a, sizeof(char *));
                        if (!p) {
                                r = -ENOMEM;
                                break;
                        }
                        ids = p;
                        allocated = a;
                }
                r = store_column_strdup(stmt, 0, &ids[n]);
                if (r < 0)
                        break;
                if (ids[n])
                        n++;
        }
        if (r >= 0 && rc != SQLITE_DONE)
                r = step_error(c, rc);
        (void) sqlite3_reset(stmt);

        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        free(ids[i]);
                free(ids);
                return r;
        }
        *ret = ids;
        *ret_n = n;
        return 0;
}

static void free_ids(char **ids, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(ids[i]);
        free(ids);
}

/* The keys first: they reference the receipt (a foreign key). */
static int delete_receipt(StoreConn *c, const char *id, bool with_dlq_rows) {
        int r;

        r = store_conn_delete_keys_of(c, id);
        if (r >= 0 && with_dlq_rows)
                r = store_conn_run(c, "DELETE FROM dlq WHERE receipt_id = ?", "t", id);
        if (r >= 0)
                r = store_conn_run(c, "DELETE FROM receipts WHERE id = ?", "t", id);
        return r;
}

static int prune_receipts(StoreConn *c, SyncStorePrune *p, const char *select_sql, bool with_dlq_rows) {
        char cutoff[FORMAT_ISO8601_MAX];
        char **ids = NULL;
        size_t n = 0;
        sqlite3_stmt *stmt;
        int r;

        assert(c);
        assert(p);
        assert(p->limit > 0);

        /* The stamps of the receipts about to go, kept in config: the clock never goes back. */
        r = store_conn_persist_hlc(c);
        if (r < 0)
                return r;

        r = store_conn_prepare(c, select_sql, &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "ti", format_iso8601_utc(cutoff, sizeof cutoff, p->cutoff),
                            (int64_t) p->limit);
        if (r < 0)
                return r;
        /* All ids first, then the deletes: deleting under a running SELECT of the same table is not
         * something to rely on. */
        r = collect_ids(c, stmt, &ids, &n);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n && r >= 0; i++)
                r = delete_receipt(c, ids[i], with_dlq_rows);
        free_ids(ids, n);
        if (r < 0)
                return r;

        p->n_deleted += n;
        return (int) n;
}

int sync_store_prune_synced(StoreConn *c, void *job_data) {
        /* A cancelled receipt is as final as a synced one (it will never be printed nor sent): it goes after
         * the same time, counted from its cancellation (updated_at). */
        return prune_receipts(c, job_data,
                              "SELECT id FROM receipts WHERE status IN ('synced', 'cancelled') AND "
                              "julianday(COALESCE(synced_at, updated_at, created_at)) < julianday(?1) "
                              "LIMIT ?2",
                              false);
}

int sync_store_prune_dead_letters(StoreConn *c, void *job_data) {
        /* A receipt with a dead letter that is open, or resolved recently, or with a date we cannot read,
         * stays. */
        return prune_receipts(c, job_data,
                              "SELECT r.id FROM receipts r WHERE r.status = 'dlq' "
                              "AND EXISTS (SELECT 1 FROM dlq d WHERE d.receipt_id = r.id) "
                              "AND NOT EXISTS (SELECT 1 FROM dlq d WHERE d.receipt_id = r.id AND "
                              "(d.resolved = 0 OR julianday(COALESCE(d.resolved_at, d.moved_at)) IS NULL "
                              "OR julianday(COALESCE(d.resolved_at, d.moved_at)) >= julianday(?1))) "
                              "LIMIT ?2",
                              true);
}

int sync_store_prune_dlq_rows(StoreConn *c, void *job_data) {
        SyncStorePrune *p = job_data;
        char cutoff[FORMAT_ISO8601_MAX];
        int r;

        assert(c);
        assert(p);
        assert(p->limit > 0);

        r = store_conn_run(c,
                           "DELETE FROM dlq WHERE id IN (SELECT d.id FROM dlq d WHERE d.resolved <> 0 "
                           "AND julianday(COALESCE(d.resolved_at, d.moved_at)) < julianday(?1) "
                           "AND NOT EXISTS (SELECT 1 FROM receipts r WHERE r.id = d.receipt_id "
                           "AND r.status = 'dlq') LIMIT ?2)",
                           "ti", format_iso8601_utc(cutoff, sizeof cutoff, p->cutoff), (int64_t) p->limit);
        if (r < 0)
                return r;

        p->n_deleted += (uint64_t) r;
        return r;
}

int sync_store_prune_events(StoreConn *c, void *job_data) {
        SyncStorePrune *p = job_data;
        _cleanup_free_ int64_t *orphans = NULL;
        size_t n_orphans = 0, n_examined = 0;
        sqlite3_stmt *stmt;
        int64_t last;
        int rc = SQLITE_DONE, r;

        assert(c);
        assert(p);
        assert(p->limit > 0);

        last = p->cursor;
        /* buffer_events has no index on receipt_id (see store-schema.c): walk it by id in bounded steps,
         * asking the receipts' primary key about each row. */
        orphans = new(int64_t, p->limit);
        if (!orphans)
                return -ENOMEM;

        r = store_conn_prepare(c,
                               "SELECT e.id, e.receipt_id IS NOT NULL AND NOT EXISTS "
                               "(SELECT 1 FROM receipts r WHERE r.id = e.receipt_id) "
                               "FROM buffer_events e WHERE e.id > ?1 ORDER BY e.id LIMIT ?2",
                               &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "ii", (int64_t) p->cursor, (int64_t) p->limit);
        if (r < 0)
                return r;
        while (n_examined < p->limit && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
                last = sqlite3_column_int64(stmt, 0);
                if (sqlite3_column_int(stmt, 1))
                        orphans[n_orphans++] = last;
                n_examined++;
        }
        if (n_examined < p->limit && rc != SQLITE_DONE)
                r = step_error(c, rc);
        (void) sqlite3_reset(stmt);
        if (r < 0)
                return r;

        r = store_conn_prepare(c, "DELETE FROM buffer_events WHERE id = ?", &stmt);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_orphans; i++) {
                r = store_conn_bind(c, stmt, "i", (int64_t) orphans[i]);
                if (r >= 0)
                        r = store_conn_step_done(c, stmt);
                if (r < 0)
                        return r;
        }

        p->cursor = last;
        p->n_deleted += n_orphans;
        return (int) n_examined;
}
