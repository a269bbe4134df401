/* SPDX-License-Identifier: MIT */
/* What the store's tests share: a temporary directory and a loop, a second connection to look at the file
 * with, callbacks that record what they were told, and the synchronous forms of the store's calls. */

#include <dirent.h>

#include "store.h"
#include "test-store-util.h"
#include "tests.h"

void env_setup(Env *e) {
        const char *tmp = getenv("TMPDIR") ?: "/tmp";

        *e = (Env) {};
        snprintf(e->dir, sizeof e->dir, "%s/test-store-XXXXXX", tmp);
        ASSERT_NOT_NULL(mkdtemp(e->dir));
        snprintf(e->path, sizeof e->path, "%s/buffer.db", e->dir);
        ASSERT_OK(sd_event_new(&e->event));
}

void env_teardown(Env *e) {
        DIR *d = opendir(e->dir);
        struct dirent *de;

        ASSERT_NOT_NULL(d);
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        ASSERT_OK(unlinkat(dirfd(d), de->d_name, 0));
        closedir(d);
        ASSERT_OK(rmdir(e->dir));
        e->event = sd_event_unref(e->event);
}

void run_until_idle(Env *e, Store *s) {
        usec_t deadline = now(CLOCK_MONOTONIC) + 60 * USEC_PER_SEC;

        while (!store_is_idle(s)) {
                ASSERT_TRUE(now(CLOCK_MONOTONIC) < deadline);
                ASSERT_OK(sd_event_run(e->event, USEC_PER_SEC));
        }
}

sqlite3 *db_open(const char *path) {
        sqlite3 *db = NULL;

        ASSERT_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL), SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        return db;
}

void db_exec(const char *path, const char *sql) {
        sqlite3 *db = db_open(path);
        char *error = NULL;

        if (sqlite3_exec(db, sql, NULL, NULL, &error) != SQLITE_OK) {
                fprintf(stderr, "SQL failed: %s\n%s\n", error, sql);
                exit(EXIT_FAILURE);
        }
        sqlite3_close(db);
}

/* The first column of the first row as an integer, read through a connection of its own. */
int64_t db_int(const char *path, const char *sql) {
        sqlite3 *db = db_open(path);
        sqlite3_stmt *stmt = NULL;
        int64_t v;

        ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
        v = sqlite3_column_int64(stmt, 0);
        sqlite3_finalize(stmt);
        sqlite3_close(db);
        return v;
}

char *db_text(const char *path, const char *sql) {
        sqlite3 *db = db_open(path);
        sqlite3_stmt *stmt = NULL;
        char *v = NULL;

        ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
        if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0))
                v = strdup((const char *) sqlite3_column_text(stmt, 0));
        sqlite3_finalize(stmt);
        sqlite3_close(db);
        return v;
}

void assert_db_text(const char *path, const char *sql, const char *expected) {
        _cleanup_free_ char *v = db_text(path, sql);
        ASSERT_STREQ(v, expected);
}

/* What EXPLAIN QUERY PLAN says of sql, its lines' details joined by "; ". */
void assert_plan(const char *path, const char *sql, const char *expected) {
        sqlite3 *db = db_open(path);
        sqlite3_stmt *stmt = NULL;
        char plan[512] = "", query[512];

        snprintf(query, sizeof query, "EXPLAIN QUERY PLAN %s", sql);
        ASSERT_EQ(sqlite3_prepare_v2(db, query, -1, &stmt, NULL), SQLITE_OK);
        while (sqlite3_step(stmt) == SQLITE_ROW)
                snprintf(plan + strlen(plan), sizeof plan - strlen(plan), "%s%s", plan[0] ? "; " : "",
                         (const char *) sqlite3_column_text(stmt, 3));
        sqlite3_finalize(stmt);
        sqlite3_close(db);
        ASSERT_STREQ(plan, expected);
}

void assert_db_healthy(const char *path) {
        assert_db_text(path, "PRAGMA integrity_check", "ok");
        ASSERT_EQ(db_int(path, "SELECT COUNT(*) FROM pragma_foreign_key_check"), 0);
}

Store *store_open_ok(Env *e, unsigned capacity) {
        StoreOptions opts = { .capacity = capacity };
        Store *s = NULL;

        ASSERT_OK(store_open(&s, e->event, e->path, &opts));
        ASSERT_NOT_NULL(s);
        return s;
}

void on_submit(Store *s, int error, StoreSubmitOutcome outcome, const StoreReceipt *r, void *userdata) {
        Submitted *x = userdata;

        ASSERT_FALSE(x->done);
        x->done = true;
        x->error = error;
        x->outcome = outcome;
        x->have_receipt = r != NULL;
        if (r) {
                snprintf(x->id, sizeof x->id, "%s", r->id);
                snprintf(x->created_at, sizeof x->created_at, "%s", strempty(r->created_at));
                x->hlc = r->hlc;
                x->status = r->status;
                x->print_status = r->print_status;
                x->total_kopecks = r->total_kopecks;
                x->refunded_kopecks = r->refunded_kopecks;
                x->fiscal_document_number = r->fiscal_document_number;
                snprintf(x->original_id, sizeof x->original_id, "%s", strempty(r->original_id));
                snprintf(x->receipt_type, sizeof x->receipt_type, "%s", strempty(r->receipt_type));
                x->response_status = r->response_status;
                snprintf(x->response, sizeof x->response, "%s", strempty(r->response));
        }
        if (x->check_path && r) {
                char sql[256];
                snprintf(sql, sizeof sql,
                         "SELECT COUNT(*) FROM receipts r JOIN idempotency_keys k ON k.receipt_id = r.id "
                         "JOIN buffer_events e ON e.receipt_id = r.id AND e.event = 'received' "
                         "WHERE r.id = '%s' AND r.status = 'pending'",
                         r->id);
                x->rows_at_callback = db_int(x->check_path, sql);
        }
}

void on_done(Store *s, int result, void *userdata) {
        Done *d = userdata;

        ASSERT_FALSE(d->done);
        d->done = true;
        d->result = result;
}

char *strdup_null(const char *s) {
        return s ? strdup(s) : NULL;
}

void on_get(Store *s, int error, const StoreReceipt *r, void *userdata) {
        Got *g = userdata;

        ASSERT_FALSE(g->done);
        g->done = true;
        g->error = error;
        ASSERT_TRUE((error >= 0) == (r != NULL));
        if (!r)
                return;
        g->r = *r;
        g->r.id = strdup_null(r->id);
        g->r.pos_id = strdup_null(r->pos_id);
        g->r.receipt_type = strdup_null(r->receipt_type);
        g->r.receipt_data = strdup_null(r->receipt_data);
        g->r.created_at = strdup_null(r->created_at);
        g->r.updated_at = strdup_null(r->updated_at);
        g->r.printed_at = strdup_null(r->printed_at);
        g->r.synced_at = strdup_null(r->synced_at);
        g->r.next_retry_at = strdup_null(r->next_retry_at);
        g->r.last_error = strdup_null(r->last_error);
        g->r.fiscal_doc = strdup_null(r->fiscal_doc);
        g->r.ofd_response = strdup_null(r->ofd_response);
        g->r.original_id = strdup_null(r->original_id);
}

StoreReceiptNew receipt_new(const char *key, const char *hash) {
        return (StoreReceiptNew) {
                .idempotency_key = key,
                .request_hash = hash,
                .pos_id = "pos-7",
                .type = "sale",
                .total_kopecks = 12345,
                .receipt_data = "{\"items\":[{\"name\":\"Lens\",\"price\":\"123.45\"}]}",
        };
}

void submit_ok(Env *e, Store *s, const char *key, const char *hash, Submitted *ret) {
        StoreReceiptNew r = receipt_new(key, hash);

        *ret = (Submitted) {};
        ASSERT_OK(store_submit_receipt(s, &r, on_submit, ret));
        run_until_idle(e, s);
        ASSERT_TRUE(ret->done);
        ASSERT_OK(ret->error);
}

void get_receipt(Env *e, Store *s, const char *id, Got *ret) {
        *ret = (Got) {};
        ASSERT_OK(store_get_receipt(s, id, on_get, ret));
        run_until_idle(e, s);
        ASSERT_TRUE(ret->done);
}

int mark_printed_sync(Env *e, Store *s, const char *id, const char *doc) {
        Done d = {};

        ASSERT_OK(store_mark_printed(s, id, doc, now(CLOCK_REALTIME), on_done, &d));
        run_until_idle(e, s);
        ASSERT_TRUE(d.done);
        return d.result;
}

int mark_synced_sync(Env *e, Store *s, const char *id, const char *response) {
        Done d = {};

        ASSERT_OK(store_mark_synced(s, id, response, on_done, &d));
        run_until_idle(e, s);
        ASSERT_TRUE(d.done);
        return d.result;
}

int64_t count_receipts(const char *path) {
        return db_int(path, "SELECT COUNT(*) FROM receipts");
}

int set_print_rejected_sync(Env *e, Store *s, const char *id, const char *reason) {
        Done d = {};

        ASSERT_OK(store_set_print_rejected(s, id, reason, on_done, &d));
        run_until_idle(e, s);
        ASSERT_TRUE(d.done);
        return d.result;
}

void cancel_sync(Env *e, Store *s, const char *id, const char *note, const char *who, Got *ret) {
        *ret = (Got) {};
        ASSERT_OK(store_cancel_receipt(s, id, note, who, on_get, ret));
        run_until_idle(e, s);
        ASSERT_TRUE(ret->done);
}

/* A sale of 12345 kopecks, printed with fiscal document number `fd` (0: not printed). */
void sale_ok(Env *e, Store *s, const char *key, uint32_t fd, Submitted *ret) {
        char doc[96];

        submit_ok(e, s, key, "h", ret);
        ASSERT_EQ(ret->outcome, STORE_SUBMIT_CREATED);
        if (fd == 0)
                return;
        snprintf(doc, sizeof doc, "{\"fiscal_document_number\":%" PRIu32 ",\"fiscal_sign\":\"42\"}", fd);
        ASSERT_OK(mark_printed_sync(e, s, ret->id, doc));
}
