/* SPDX-License-Identifier: MIT */
/* The receipt queries and the state changes after the submit: get, mark printed and synced, the stored
 * answer of a key, the print rejections an admin retries or cancels and their listing, and the writer-side
 * helpers other modules' jobs use (the HLC persisted, the keys of a pruned receipt deleted). */

#include <inttypes.h>
#include <limits.h>

#include "log.h"
#include "sqlite-util.h"
#include "store-internal.h"
#include "store-schema.h"

int store_conn_persist_hlc(StoreConn *c) {
        Store *s;
        char value[32];
        int r;

        assert(c);
        s = c->store;
        if (s->hlc.last == s->hlc_written)
                return 0;

        snprintf(value, sizeof value, "%" PRIu64, s->hlc.last);
        r = store_conn_run(c,
                           "INSERT INTO config (key, value) VALUES ('hlc_last', ?) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                           "t", value);
        if (r < 0)
                return r;
        s->hlc_written = s->hlc.last;
        return 0;
}

int store_conn_delete_keys_of(StoreConn *c, const char *receipt_id) {
        sqlite3_stmt *stmt;
        int rc, r;

        assert(c);
        assert(receipt_id);

        r = store_conn_prepare(c, "DELETE FROM idempotency_keys WHERE receipt_id = ? RETURNING key", &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "t", receipt_id);
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
                const char *key = (const char *) sqlite3_column_text(stmt, 0);

                if (!key)
                        continue;
                r = key_index_remove(c->store->keys, key, receipt_id);
                if (r == -ENOENT) { /* the index mirrors the table: cannot be, but is no reason to fail */
                        log_debug("Idempotency key of receipt %s was not in the index.", receipt_id);
                        r = 0;
                } else if (r < 0)
                        break;
        }
        if (r >= 0 && rc != SQLITE_DONE)
                r = store_conn_error(c, rc);
        (void) sqlite3_reset(stmt);
        return r;
}

/* ---- state changes built on store_write() ---- */

typedef struct MarkJob {
        char *id;
        char *document; /* fiscal_doc, ofd_response or an answer */
        usec_t at;
        unsigned status; /* an answer's HTTP status */
        StoreDoneCallback cb;
        void *userdata;
} MarkJob;

static MarkJob *mark_job_free(MarkJob *m) {
        if (!m)
                return NULL;
        free(m->id);
        free(m->document);
        return mfree(m);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(MarkJob *, mark_job_free);

static void mark_on_done(Store *s, int result, void *userdata) {
        _cleanup_(mark_job_freep) MarkJob *m = userdata;

        if (m->cb)
                m->cb(s, result, m->userdata);
}

/* Queues fn with a MarkJob of copies of id and document, and `at` and `status` (0 where fn needs none). */
static int mark_queue(Store *s, StoreJobFunc fn, const char *id, const char *document, usec_t at,
                      unsigned status, StoreDoneCallback cb, void *userdata) {
        _cleanup_(mark_job_freep) MarkJob *m = NULL;
        int r;

        m = new0(MarkJob, 1);
        if (!m)
                return -ENOMEM;
        *m = (MarkJob) { .at = at, .status = status, .cb = cb, .userdata = userdata };
        if (strdup_or_null(id, &m->id) < 0 || strdup_or_null(document, &m->document) < 0)
                return -ENOMEM;

        r = store_write(s, fn, m, mark_on_done, m);
        if (r < 0)
                return r;
        TAKE_PTR(m);
        return 0;
}

/* When an UPDATE matched nothing: why. */
typedef int (*ExplainFunc)(StoreStatus status, StorePrintStatus print_status);

static int read_explained(sqlite3_stmt *stmt, void *userdata) {
        ExplainFunc explain = *(ExplainFunc *) userdata;

        return explain(store_status_from_string((const char *) sqlite3_column_text(stmt, 0)),
                       store_print_status_from_string((const char *) sqlite3_column_text(stmt, 1)));
}

/* The explanations are negative errnos, so the row's is what the query passes on. */
static int mark_explain(StoreConn *c, const char *id, ExplainFunc explain) {
        int r;

        r = store_conn_query_one(c, "SELECT status, print_status FROM receipts WHERE id = ?", read_explained,
                                 &explain, "t", id);
        return r == 0 ? -ENOENT : MIN(r, 0);
}

static int mark_printed_explain(StoreStatus status, StorePrintStatus print_status) {
        if (status == STORE_STATUS_CANCELLED || print_status == STORE_PRINT_REJECTED)
                return -ESTALE;
        return -EALREADY;
}

static int mark_printed_run(StoreConn *c, void *job_data) {
        MarkJob *m = job_data;
        char at[FORMAT_ISO8601_MAX], updated[FORMAT_ISO8601_MAX];
        int r;

        r = store_conn_run(c,
                           "UPDATE receipts SET print_status = 'printed', fiscal_doc = ?1, "
                           "fiscal_document_number = " STORE_SQL_FISCAL_DOCUMENT_NUMBER("?1") ", "
                           "printed_at = ?2, updated_at = ?3 WHERE id = ?4 "
                           "AND print_status IN ('unprinted', 'print_failed') AND status <> 'cancelled'",
                           "tttt", m->document, format_iso8601_utc(at, sizeof at, m->at),
                           format_iso8601_utc(updated, sizeof updated, now(CLOCK_REALTIME)), m->id);
        if (r < 0)
                return r;
        if (r == 0)
                return mark_explain(c, m->id, mark_printed_explain);

        return store_conn_log_event(c, m->id, "printed", NULL);
}

int store_mark_printed(Store *s, const char *id, const char *fiscal_doc, usec_t printed_at,
                       StoreDoneCallback cb, void *userdata) {
        assert(s);
        assert(id);
        assert(fiscal_doc);

        return mark_queue(s, mark_printed_run, id, fiscal_doc, printed_at, 0, cb, userdata);
}

static int set_response_run(StoreConn *c, void *job_data) {
        MarkJob *m = job_data;
        int r;

        /* The first answer stays: a key keeps what it was answered with. */
        r = store_conn_run(c,
                           "UPDATE idempotency_keys SET response_status = ?, response = ? "
                           "WHERE receipt_id = ? AND response IS NULL",
                           "itt", (int64_t) m->status, m->document, m->id);
        if (r < 0)
                return r;
        if (r > 0)
                return 1;

        r = store_conn_query_one(c, "SELECT 1 FROM idempotency_keys WHERE receipt_id = ?", NULL, NULL, "t",
                                 m->id);
        return r == 0 ? -ENOENT : MIN(r, 0);
}

int store_set_response(Store *s, const char *id, unsigned status, const char *response, StoreDoneCallback cb,
                       void *userdata) {
        assert(s);
        assert(id);
        assert(response);

        return mark_queue(s, set_response_run, id, response, 0, status, cb, userdata);
}

static int mark_synced_explain(StoreStatus status, StorePrintStatus print_status) {
        if (status == STORE_STATUS_SYNCED)
                return -EALREADY;
        if (!IN_SET(status, STORE_STATUS_PENDING, STORE_STATUS_FAILED))
                return -ESTALE;
        return -EPERM; /* not printed */
}

int store_conn_set_synced(StoreConn *c, const char *id, const char *ofd_response) {
        char ts[FORMAT_ISO8601_MAX];
        int r;

        assert(c);
        assert(id);

        r = store_conn_run(c,
                           "UPDATE receipts SET status = 'synced', synced_at = ?1, updated_at = ?1, "
                           "ofd_response = ?2, last_error = NULL, next_retry_at = NULL "
                           "WHERE id = ?3 AND status IN ('pending', 'failed') "
                           "AND print_status = 'printed'",
                           "ttt", format_iso8601_utc(ts, sizeof ts, now(CLOCK_REALTIME)), ofd_response, id);
        if (r < 0)
                return r;
        return r > 0;
}

static int mark_synced_run(StoreConn *c, void *job_data) {
        MarkJob *m = job_data;
        int r;

        r = store_conn_set_synced(c, m->id, m->document);
        if (r < 0)
                return r;
        if (r == 0)
                return mark_explain(c, m->id, mark_synced_explain);

        return store_conn_log_event(c, m->id, "synced", NULL);
}

int store_mark_synced(Store *s, const char *id, const char *ofd_response, StoreDoneCallback cb,
                      void *userdata) {
        assert(s);
        assert(id);

        return mark_queue(s, mark_synced_run, id, ofd_response, 0, 0, cb, userdata);
}

/* ---- the print rejections an admin resolves ---- */

static int set_print_rejected_explain(StoreStatus status, StorePrintStatus print_status) {
        if (status == STORE_STATUS_CANCELLED)
                return -ESTALE;
        if (IN_SET(print_status, STORE_PRINT_PRINTED, STORE_PRINT_REJECTED))
                return -EALREADY;
        return -ESTALE; /* a row of the prototype that is not pending: nothing prints it */
}

static int set_print_rejected_run(StoreConn *c, void *job_data) {
        MarkJob *m = job_data;
        char ts[FORMAT_ISO8601_MAX];
        int r;

        r = store_conn_run(c,
                           "UPDATE receipts SET print_status = 'print_rejected', last_error = ?1, "
                           "updated_at = ?2 WHERE id = ?3 AND status = 'pending' "
                           "AND print_status IN ('unprinted', 'print_failed')",
                           "ttt", m->document, format_iso8601_utc(ts, sizeof ts, now(CLOCK_REALTIME)),
                           m->id);
        if (r < 0)
                return r;
        if (r == 0)
                return mark_explain(c, m->id, set_print_rejected_explain);

        return store_conn_log_event_fields(c, m->id, "print_rejected", "reason", m->document, NULL, NULL,
                                           NULL, 0);
}

int store_set_print_rejected(Store *s, const char *id, const char *reason, StoreDoneCallback cb,
                             void *userdata) {
        assert(s);
        assert(id);

        return mark_queue(s, set_print_rejected_run, id, reason, 0, 0, cb, userdata);
}

/* For retry and cancel, which both start from print_rejected. */
static int from_rejected_explain(StoreStatus status, StorePrintStatus print_status) {
        return status == STORE_STATUS_CANCELLED ? -ESTALE : -EBUSY;
}

/* The receipt as the job left it, for the callback; and the whole of a JOB_GET. */
static int job_take_receipt(StoreConn *c, Job *j) {
        int r;

        r = store_conn_get_receipt(c, j->id, &j->receipt);
        j->have_receipt = r >= 0;
        return r;
}

int store_get_receipt(Store *s, const char *id, StoreGetCallback cb, void *userdata) {
        assert(s);
        assert(id);

        return store_queue_receipt_job(s, &s->reader, JOB_GET, job_take_receipt, id, NULL, NULL, cb,
                                       userdata);
}

static int retry_print_run(StoreConn *c, Job *j) {
        char ts[FORMAT_ISO8601_MAX];
        int r;

        r = store_conn_run(c,
                           "UPDATE receipts SET print_status = 'unprinted', updated_at = ?1 "
                           "WHERE id = ?2 AND status = 'pending' AND print_status = 'print_rejected'",
                           "tt", format_iso8601_utc(ts, sizeof ts, now(CLOCK_REALTIME)), j->id);
        if (r < 0)
                return r;
        if (r == 0)
                return mark_explain(c, j->id, from_rejected_explain);

        r = store_conn_log_event_fields(c, j->id, "print_retried", "by", j->who, NULL, NULL, NULL, 0);
        if (r < 0)
                return r;
        return job_take_receipt(c, j);
}

static int cancel_run(StoreConn *c, Job *j) {
        _cleanup_free_ char *error = NULL;
        char ts[FORMAT_ISO8601_MAX];
        int r;

        if (asprintf(&error, "cancelled by %s%s%s", j->who ?: "unknown", isempty(j->note) ? "" : ": ",
                     strempty(j->note)) < 0)
                return -ENOMEM;

        r = store_conn_run(c,
                           "UPDATE receipts SET status = 'cancelled', last_error = ?1, "
                           "next_retry_at = NULL, updated_at = ?2 WHERE id = ?3 "
                           "AND status = 'pending' AND print_status = 'print_rejected'",
                           "ttt", error, format_iso8601_utc(ts, sizeof ts, now(CLOCK_REALTIME)), j->id);
        if (r < 0)
                return r;
        if (r == 0)
                return mark_explain(c, j->id, from_rejected_explain);

        r = store_conn_log_event_fields(c, j->id, "cancelled", "by", j->who, "note", j->note, NULL, 0);
        if (r < 0)
                return r;
        return job_take_receipt(c, j);
}

static int list_rejected_run(StoreConn *c, Job *j) {
        sqlite3_stmt *stmt;
        size_t allocated = 0;
        int rc = SQLITE_DONE, r;

        r = store_conn_prepare(c,
                               "SELECT " STORE_RECEIPT_COLUMNS " FROM receipts "
                               "WHERE status = 'pending' AND print_status = 'print_rejected' "
                               "ORDER BY hlc LIMIT ?",
                               &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "i", (int64_t) j->limit);
        if (r < 0)
                return r;

        while (j->n_receipts < j->limit && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
                if (j->n_receipts == allocated) {
                        size_t n = MIN(MAX(allocated * 2, (size_t) 16), (size_t) j->limit);
                        StoreReceipt *a = reallocarray(j->receipts, n, sizeof(StoreReceipt));

                        if (!a)
                                return -ENOMEM;
                        j->receipts = a;
                        allocated = n;
                }
                r = store_receipt_from_row(stmt, j->receipts + j->n_receipts);
                if (r < 0)
                        return r;
                j->n_receipts++;
        }
        if (j->n_receipts < j->limit && rc != SQLITE_DONE)
                return store_conn_error(c, rc);
        return (int) MIN(j->n_receipts, (size_t) INT_MAX);
}

int store_retry_print(Store *s, const char *id, const char *who, StoreGetCallback cb, void *userdata) {
        assert(s);
        assert(id);

        return store_queue_receipt_job(s, &s->writer, JOB_RETRY_PRINT, retry_print_run, id, NULL, who, cb,
                                       userdata);
}

int store_cancel_receipt(Store *s, const char *id, const char *note, const char *who, StoreGetCallback cb,
                         void *userdata) {
        assert(s);
        assert(id);

        return store_queue_receipt_job(s, &s->writer, JOB_CANCEL, cancel_run, id, note, who, cb, userdata);
}

int store_list_print_rejected(Store *s, unsigned limit, StoreListCallback cb, void *userdata) {
        _cleanup_(job_freep) Job *j = NULL;
        int r;

        assert(s);

        j = new0(Job, 1);
        if (!j)
                return -ENOMEM;
        *j = (Job) {
                .type = JOB_LIST_REJECTED,
                .run = list_rejected_run,
                .cb.list = cb,
                .userdata = userdata,
                .limit = limit == 0 ? STORE_LIST_LIMIT_DEFAULT : limit,
        };

        r = store_enqueue(s, &s->reader, j);
        if (r < 0)
                return r;
        TAKE_PTR(j);
        return 0;
}

