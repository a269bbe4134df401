/* SPDX-License-Identifier: MIT */
/* The store against real files in a temporary directory and a real sd-event loop: migrations, durability
 * before the callback, idempotency, capacity, group commit, failures, reopening, corrupt files, returns and
 * their originals, and the print rejections an admin retries or cancels. */

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <semaphore.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <systemd/sd-event.h>

#include "hlc.h"
#include "log.h"
#include "store-schema.h"
#include "store.h"
#include "sync-store.h"
#include "tests.h"
#include "time-util.h"

/* ---- scaffolding: a temporary directory, a loop, a second connection ---- */

typedef struct Env {
        char dir[PATH_MAX / 2];
        char path[PATH_MAX];
        sd_event *event;
} Env;

static void env_setup(Env *e) {
        const char *tmp = getenv("TMPDIR") ?: "/tmp";

        *e = (Env) {};
        snprintf(e->dir, sizeof e->dir, "%s/test-store-XXXXXX", tmp);
        ASSERT_NOT_NULL(mkdtemp(e->dir));
        snprintf(e->path, sizeof e->path, "%s/buffer.db", e->dir);
        ASSERT_OK(sd_event_new(&e->event));
}

static void env_teardown(Env *e) {
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

static void run_until_idle(Env *e, Store *s) {
        usec_t deadline = now(CLOCK_MONOTONIC) + 60 * USEC_PER_SEC;

        while (!store_is_idle(s)) {
                ASSERT_TRUE(now(CLOCK_MONOTONIC) < deadline);
                ASSERT_OK(sd_event_run(e->event, USEC_PER_SEC));
        }
}

static sqlite3 *db_open(const char *path) {
        sqlite3 *db = NULL;

        ASSERT_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL), SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        return db;
}

static void db_exec(const char *path, const char *sql) {
        sqlite3 *db = db_open(path);
        char *error = NULL;

        if (sqlite3_exec(db, sql, NULL, NULL, &error) != SQLITE_OK) {
                fprintf(stderr, "SQL failed: %s\n%s\n", error, sql);
                exit(EXIT_FAILURE);
        }
        sqlite3_close(db);
}

/* The first column of the first row as an integer, read through a connection of its own. */
static int64_t db_int(const char *path, const char *sql) {
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

static char *db_text(const char *path, const char *sql) {
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

static void assert_db_text(const char *path, const char *sql, const char *expected) {
        _cleanup_free_ char *v = db_text(path, sql);
        ASSERT_STREQ(v, expected);
}

/* What EXPLAIN QUERY PLAN says of sql, its lines' details joined by "; ". */
static void assert_plan(const char *path, const char *sql, const char *expected) {
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

static void assert_db_healthy(const char *path) {
        assert_db_text(path, "PRAGMA integrity_check", "ok");
        ASSERT_EQ(db_int(path, "SELECT COUNT(*) FROM pragma_foreign_key_check"), 0);
}

static Store *store_open_ok(Env *e, unsigned capacity) {
        StoreOptions opts = { .capacity = capacity };
        Store *s = NULL;

        ASSERT_OK(store_open(&s, e->event, e->path, &opts));
        ASSERT_NOT_NULL(s);
        return s;
}

/* ---- callbacks that record what they were told ---- */

typedef struct Submitted {
        bool done;
        int error;
        StoreSubmitOutcome outcome;
        bool have_receipt;
        char id[64];
        uint64_t hlc;
        StoreStatus status;
        StorePrintStatus print_status;
        char created_at[64];
        int64_t total_kopecks;
        int64_t refunded_kopecks;
        uint32_t fiscal_document_number;
        char original_id[64];
        char receipt_type[32];
        unsigned response_status;
        char response[256];
        /* When set, the callback counts this receipt's rows through a connection of its own. */
        const char *check_path;
        int64_t rows_at_callback;
} Submitted;

static void on_submit(Store *s, int error, StoreSubmitOutcome outcome, const StoreReceipt *r,
                      void *userdata) {
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

typedef struct Done {
        bool done;
        int result;
} Done;

static void on_done(Store *s, int result, void *userdata) {
        Done *d = userdata;

        ASSERT_FALSE(d->done);
        d->done = true;
        d->result = result;
}

typedef struct Got {
        bool done;
        int error;
        StoreReceipt r;
} Got;

static char *strdup_null(const char *s) {
        return s ? strdup(s) : NULL;
}

static void on_get(Store *s, int error, const StoreReceipt *r, void *userdata) {
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

static StoreReceiptNew receipt_new(const char *key, const char *hash) {
        return (StoreReceiptNew) {
                .idempotency_key = key,
                .request_hash = hash,
                .pos_id = "pos-7",
                .type = "sale",
                .total_kopecks = 12345,
                .receipt_data = "{\"items\":[{\"name\":\"Lens\",\"price\":\"123.45\"}]}",
        };
}

static void submit_ok(Env *e, Store *s, const char *key, const char *hash, Submitted *ret) {
        StoreReceiptNew r = receipt_new(key, hash);

        *ret = (Submitted) {};
        ASSERT_OK(store_submit_receipt(s, &r, on_submit, ret));
        run_until_idle(e, s);
        ASSERT_TRUE(ret->done);
        ASSERT_OK(ret->error);
}

static void get_receipt(Env *e, Store *s, const char *id, Got *ret) {
        *ret = (Got) {};
        ASSERT_OK(store_get_receipt(s, id, on_get, ret));
        run_until_idle(e, s);
        ASSERT_TRUE(ret->done);
}

static int mark_printed_sync(Env *e, Store *s, const char *id, const char *doc) {
        Done d = {};

        ASSERT_OK(store_mark_printed(s, id, doc, now(CLOCK_REALTIME), on_done, &d));
        run_until_idle(e, s);
        ASSERT_TRUE(d.done);
        return d.result;
}

static int mark_synced_sync(Env *e, Store *s, const char *id, const char *response) {
        Done d = {};

        ASSERT_OK(store_mark_synced(s, id, response, on_done, &d));
        run_until_idle(e, s);
        ASSERT_TRUE(d.done);
        return d.result;
}

static int64_t count_receipts(const char *path) {
        return db_int(path, "SELECT COUNT(*) FROM receipts");
}

/* ---- job functions run on the worker threads ---- */

static int job_wait_gate(StoreConn *c, void *data) {
        /* Holds the writer, so everything queued meanwhile lands in the next group. */
        while (sem_wait(data) < 0)
                ASSERT_EQ(errno, EINTR);
        return 0;
}

static int job_insert_then_fail(StoreConn *c, void *data) {
        ASSERT_EQ(sqlite3_exec(store_conn_get_db(c),
                               "INSERT INTO config (key, value) VALUES ('failing-job', 'was here')", NULL,
                               NULL, NULL),
                  SQLITE_OK);
        return -EINVAL;
}

static int job_orphan_key_at_commit(StoreConn *c, void *data) {
        /* Deferred, the foreign key is only checked by COMMIT: the whole group's COMMIT fails. */
        ASSERT_EQ(sqlite3_exec(store_conn_get_db(c),
                               "PRAGMA defer_foreign_keys = ON; "
                               "INSERT INTO idempotency_keys (key, request_hash, receipt_id, created_at) "
                               "VALUES ('orphan', 'h', 'no-such-receipt', 'now')",
                               NULL, NULL, NULL),
                  SQLITE_OK);
        return 0;
}

static int job_rollback_everything(StoreConn *c, void *data) {
        /* What SQLite does by itself on some I/O errors: the whole transaction is gone, not just the job. */
        ASSERT_EQ(sqlite3_exec(store_conn_get_db(c), "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
        return -ENOSPC;
}

static int job_set_max_pages(StoreConn *c, void *data) {
        const int64_t *extra = data;
        sqlite3_stmt *stmt;
        char sql[64];
        int64_t pages;

        ASSERT_OK(store_conn_prepare(c, "PRAGMA page_count", &stmt));
        ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
        pages = sqlite3_column_int64(stmt, 0);
        snprintf(sql, sizeof sql, "PRAGMA max_page_count = %" PRIi64,
                 *extra < 0 ? INT64_C(1073741823) : pages);
        ASSERT_EQ(sqlite3_exec(store_conn_get_db(c), sql, NULL, NULL, NULL), SQLITE_OK);
        return 0;
}

static int job_count_pending(StoreConn *c, void *data) {
        sqlite3_stmt *stmt;

        ASSERT_OK(store_conn_prepare(c, "SELECT COUNT(*) FROM receipts WHERE status = ?", &stmt));
        ASSERT_EQ(sqlite3_bind_text(stmt, 1, data, -1, SQLITE_STATIC), SQLITE_OK);
        ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
        return sqlite3_column_int(stmt, 0); /* left unreset on purpose: the store resets it after the job */
}

static int job_write_to_reader(StoreConn *c, void *data) {
        sqlite3_stmt *stmt;
        int r;

        r = store_conn_prepare(c, "INSERT INTO config (key, value) VALUES ('reader', 'wrote')", &stmt);
        if (r < 0)
                return r;
        return store_conn_step_done(c, stmt);
}

/* ---- the prototype's file ---- */

/* How the prototype laid out buffer.db (version 1), with its own quirks: AUTOINCREMENT everywhere,
 * defaults from CURRENT_TIMESTAMP, no CHECKs. */
static const char prototype_schema[] =
        "CREATE TABLE receipts (id TEXT PRIMARY KEY, pos_id TEXT, receipt_data TEXT, "
        "        status TEXT DEFAULT 'pending', created_at TEXT DEFAULT CURRENT_TIMESTAMP, updated_at TEXT, "
        "        synced_at TEXT, retry_count INTEGER DEFAULT 0, last_error TEXT, next_retry_at TEXT, "
        "        hlc_timestamp TEXT);"
        "CREATE INDEX idx_receipts_status ON receipts (status);"
        "CREATE TABLE dlq (id INTEGER PRIMARY KEY AUTOINCREMENT, receipt_id TEXT, reason TEXT, "
        "        moved_at TEXT, resolved INTEGER DEFAULT 0, resolved_at TEXT, resolved_by TEXT, "
        "        resolution_note TEXT);"
        "CREATE TABLE buffer_events (id INTEGER PRIMARY KEY AUTOINCREMENT, receipt_id TEXT, event TEXT, "
        "        details TEXT, created_at TEXT DEFAULT CURRENT_TIMESTAMP);"
        "CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT);"
        "CREATE VIEW v_buffer_status AS SELECT "
        "        (SELECT COUNT(*) FROM receipts WHERE status = 'pending') AS pending, "
        "        (SELECT COUNT(*) FROM receipts WHERE status = 'synced') AS synced, "
        "        (SELECT COUNT(*) FROM receipts WHERE status = 'failed') AS failed, "
        "        (SELECT COUNT(*) FROM receipts WHERE status = 'dlq') AS dlq, "
        "        (SELECT COUNT(*) FROM dlq WHERE resolved = 0) AS dlq_size;"
        "PRAGMA user_version = 1;";

static const char prototype_rows[] =
        "INSERT INTO receipts (id, pos_id, receipt_data, status, created_at, updated_at, retry_count, "
        "        last_error, hlc_timestamp) VALUES "
        "('legacy-b', 'pos-1', '{\"n\":2}', 'pending', '2026-11-28T10:00:00.250000', NULL, 3, 'timeout', "
        "        'x'),"
        "('legacy-a', 'pos-1', '{\"n\":1}', 'pending', '2026-11-28 09:00:00', NULL, 0, NULL, 'y'),"
        "('legacy-c', 'pos-2', '{\"n\":3}', 'synced', '2026-11-28T10:00:00.250', '2026-11-28T10:01:00', 1, "
        "        NULL, 'z'),"
        "('legacy-d', 'pos-2', '{\"n\":4}', 'dlq', '2026-11-28T11:00:00', NULL, 20, 'HTTP 400', 'w');"
        "INSERT INTO dlq (receipt_id, reason, moved_at) "
        "        VALUES ('legacy-d', 'HTTP 400', '2026-11-28T11:05:00');"
        "INSERT INTO buffer_events (receipt_id, event, details) VALUES ('legacy-a', 'received', NULL);"
        "INSERT INTO config (key, value) VALUES ('prototype', 'yes');";

/* ---- receipt ids ---- */

/* 8-4-4-4-12 lower-case hex, version 7, RFC 9562 variant, and the first 48 bits are `ms`. */
static void assert_uuid_v7(const char *id, uint64_t ms) {
        char hex[13];

        ASSERT_EQ(strlen(id), 36);
        for (unsigned i = 0; i < 36; i++)
                if (IN_SET(i, 8, 13, 18, 23))
                        ASSERT_TRUE(id[i] == '-');
                else
                        ASSERT_TRUE(strchr("0123456789abcdef", id[i]) != NULL);
        ASSERT_TRUE(id[14] == '7');
        ASSERT_TRUE(strchr("89ab", id[19]) != NULL);
        memcpy(hex, id, 8);
        memcpy(hex + 8, id + 9, 4);
        hex[12] = 0;
        ASSERT_EQ_U(strtoull(hex, NULL, 16), ms);
}

/* ---- tests ---- */

static void test_receipt_id_is_uuid_v7_with_the_time_first_and_the_random_bits_kept(void) {
        static const uint8_t zeros[10] = {}, ones[10] = { 0xff, 0xff, 0xff, 0xff, 0xff,
                                                           0xff, 0xff, 0xff, 0xff, 0xff };
        static const uint8_t mixed[10] = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x11, 0x22 };
        char id[STORE_RECEIPT_ID_MAX], later[STORE_RECEIPT_ID_MAX];
        uint64_t ms = UINT64_C(1795910400123); /* 2026-11-29T00:00:00.123Z */

        ASSERT_TRUE(store_receipt_id_new_at(ms, zeros, id) == id);
        ASSERT_STREQ(id, "01a22499-f87b-7000-8000-000000000000");
        assert_uuid_v7(id, ms);
        /* Only the 4 version and 2 variant bits are forced: 74 of the 80 random bits stay. */
        ASSERT_STREQ(store_receipt_id_new_at(ms, ones, id), "01a22499-f87b-7fff-bfff-ffffffffffff");
        ASSERT_STREQ(store_receipt_id_new_at(ms, mixed, id), "01a22499-f87b-7234-9678-9abcdef01122");

        /* One millisecond later sorts after, whatever the random bits. */
        store_receipt_id_new_at(ms, ones, id);
        store_receipt_id_new_at(ms + 1, zeros, later);
        ASSERT_TRUE(strcmp(id, later) < 0);
        assert_uuid_v7(later, ms + 1);
        /* Times past 48 bits wrap instead of spilling into the version. */
        assert_uuid_v7(store_receipt_id_new_at((UINT64_C(1) << 48) + 5, zeros, id), 5);
}

static void test_submitted_ids_are_v7_and_sort_by_creation_time_across_milliseconds(void) {
        Submitted x[8];
        char key[16];
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        for (unsigned i = 0; i < ELEMENTSOF(x); i++) {
                snprintf(key, sizeof key, "order-%u", i);
                submit_ok(&e, s, key, "h", &x[i]);
                assert_uuid_v7(x[i].id, hlc_physical_ms(x[i].hlc));
                if (i > 0) {
                        ASSERT_TRUE(hlc_physical_ms(x[i].hlc) > hlc_physical_ms(x[i - 1].hlc));
                        ASSERT_TRUE(strcmp(x[i - 1].id, x[i].id) < 0);
                }
                usleep(2 * USEC_PER_MSEC); /* the next one in another millisecond */
        }
        store_free(s);

        /* The database agrees: by id is by creation. */
        ASSERT_EQ(db_int(e.path,
                         "SELECT COUNT(*) FROM (SELECT id, LAG(hlc) OVER (ORDER BY id) AS prev, hlc "
                         "FROM receipts) WHERE prev >= hlc"),
                  0);
        env_teardown(&e);
}

#define N_BATCH 150

static void test_jobs_queued_in_one_loop_iteration_commit_in_one_transaction_with_unique_ids(void) {
        Submitted x[N_BATCH] = {};
        char keys[N_BATCH][16];
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 1000);
        /* Queued within one loop iteration, as a burst of requests parsed one after the other, each taking
         * a while: a writer woken by the first would commit it alone. More than one batch of random bytes
         * for the ids, too. */
        for (unsigned i = 0; i < N_BATCH; i++) {
                StoreReceiptNew r;

                snprintf(keys[i], sizeof keys[i], "burst-%u", i);
                r = receipt_new(keys[i], "h");
                ASSERT_OK(store_submit_receipt(s, &r, on_submit, &x[i]));
                usleep(100);
        }
        run_until_idle(&e, s);

        for (unsigned i = 0; i < N_BATCH; i++) {
                ASSERT_OK(x[i].error);
                ASSERT_EQ(x[i].outcome, STORE_SUBMIT_CREATED);
                assert_uuid_v7(x[i].id, hlc_physical_ms(x[i].hlc));
        }
        /* The writer was woken once for all of them, not for the first alone. */
        ASSERT_EQ_U(store_get_stats(s)->n_transactions, 1);
        ASSERT_EQ_U(store_get_stats(s)->max_jobs_per_transaction, N_BATCH);
        store_free(s);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(DISTINCT id) FROM receipts"), N_BATCH);
        assert_db_healthy(e.path);
        env_teardown(&e);
}

static int job_read_synchronous(StoreConn *c, void *data) {
        sqlite3_stmt *stmt;

        ASSERT_OK(store_conn_prepare(c, "PRAGMA synchronous", &stmt));
        ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
        return sqlite3_column_int(stmt, 0);
}

static int64_t writer_synchronous(Env *e, Store *s) {
        Done d = {};

        ASSERT_OK(store_write(s, job_read_synchronous, NULL, on_done, &d));
        run_until_idle(e, s);
        ASSERT_TRUE(d.done);
        return d.result;
}

static void test_debug_synchronous_env_overrides_the_option(void) {
        Store *s = NULL;
        Env e;

        if (!ENABLE_DEBUG_HOOKS) {
                fprintf(stderr, "(skipped: built without debug hooks)\n");
                return;
        }
        env_setup(&e);
        s = store_open_ok(&e, 0);
        ASSERT_EQ(writer_synchronous(&e, s), 2); /* FULL */
        store_free(s);

        ASSERT_OK(setenv("KKT_ADAPTER_DEBUG_SYNCHRONOUS", "off", 1));
        s = store_open_ok(&e, 0);
        ASSERT_EQ(writer_synchronous(&e, s), 0);
        store_free(s);

        ASSERT_OK(setenv("KKT_ADAPTER_DEBUG_SYNCHRONOUS", "sometimes", 1));
        s = NULL;
        ASSERT_ERROR(store_open(&s, e.event, e.path, NULL), EINVAL);
        ASSERT_NULL(s);
        ASSERT_OK(unsetenv("KKT_ADAPTER_DEBUG_SYNCHRONOUS"));
        env_teardown(&e);
}

static void test_debug_max_pages_env_fills_the_disk_keeping_what_was_acknowledged(void) {
        static char big[8 * 1024];
        char acked[200][64], key[32], value[32], sql[128];
        unsigned n_acked = 0, i;
        int64_t pages;
        Submitted x;
        Store *s = NULL;
        Env e;

        if (!ENABLE_DEBUG_HOOKS) {
                fprintf(stderr, "(skipped: built without debug hooks)\n");
                return;
        }
        env_setup(&e);
        store_free(store_open_ok(&e, 0));
        pages = db_int(e.path, "PRAGMA page_count");

        /* Room for a few receipts of 8 KiB, then the "disk" is full. */
        snprintf(value, sizeof value, "%" PRIi64, pages + 12);
        ASSERT_OK(setenv("KKT_ADAPTER_DEBUG_MAX_PAGES", value, 1));
        s = store_open_ok(&e, 0);
        memset(big, 'x', sizeof big - 1);
        for (i = 0; i < ELEMENTSOF(acked); i++) {
                StoreReceiptNew r;

                snprintf(key, sizeof key, "fill-%u", i);
                r = receipt_new(key, "h");
                r.receipt_data = big;
                x = (Submitted) {};
                ASSERT_OK(store_submit_receipt(s, &r, on_submit, &x));
                run_until_idle(&e, s);
                ASSERT_TRUE(x.done);
                if (x.error < 0)
                        break;
                ASSERT_EQ(x.outcome, STORE_SUBMIT_CREATED);
                snprintf(acked[n_acked++], sizeof acked[0], "%s", x.id);
        }
        ASSERT_TRUE(i < ELEMENTSOF(acked)); /* it did fill up */
        ASSERT_ERROR(x.error, ENOSPC);
        ASSERT_FALSE(x.have_receipt);
        ASSERT_TRUE(n_acked >= 1);
        ASSERT_EQ_U(store_get_counters(s)->pending, n_acked);
        store_free(s);

        /* Everything acknowledged is there, and nothing else. */
        ASSERT_EQ(count_receipts(e.path), n_acked);
        for (i = 0; i < n_acked; i++) {
                snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM receipts WHERE id = '%.63s'", acked[i]);
                ASSERT_EQ(db_int(e.path, sql), 1);
        }
        assert_db_healthy(e.path);

        /* A malformed limit is refused rather than ignored. */
        ASSERT_OK(setenv("KKT_ADAPTER_DEBUG_MAX_PAGES", "lots", 1));
        s = NULL;
        ASSERT_ERROR(store_open(&s, e.event, e.path, NULL), EINVAL);
        ASSERT_NULL(s);

        /* Without the limit, the same store takes receipts again. */
        ASSERT_OK(unsetenv("KKT_ADAPTER_DEBUG_MAX_PAGES"));
        s = store_open_ok(&e, 0);
        submit_ok(&e, s, "after-the-limit", "h", &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_CREATED);
        ASSERT_EQ_U(store_get_counters(s)->pending, n_acked + 1);
        store_free(s);
        assert_db_healthy(e.path);
        env_teardown(&e);
}

static off_t file_size(const char *path) {
        struct stat st;

        return stat(path, &st) < 0 ? -1 : st.st_size;
}

static void test_wal_is_checkpointed_behind_the_writer_and_stays_bounded(void) {
        StoreOptions opts = { .capacity = 100000, .checkpoint_pages = 32 };
        char wal[PATH_MAX + 8], key[32];
        off_t db_size, wal_max = 0;
        usec_t deadline;
        Submitted x;
        Store *s = NULL;
        Env e;

        env_setup(&e);
        snprintf(wal, sizeof wal, "%s-wal", e.path);
        ASSERT_OK(store_open(&s, e.event, e.path, &opts));
        db_size = file_size(e.path);
        ASSERT_TRUE(db_size > 0);

        /* One receipt per commit, each a dozen pages: many times the 32-page threshold. */
        for (unsigned i = 0; i < 300; i++) {
                snprintf(key, sizeof key, "ckpt-%u", i);
                submit_ok(&e, s, key, "h", &x);
                wal_max = MAX(wal_max, file_size(wal));
        }

        /* While the store is open, its pages reached the database file, and the WAL never held much more
         * than the hard limit (2 x 32 pages) plus one commit. */
        deadline = now(CLOCK_MONOTONIC) + 10 * USEC_PER_SEC;
        while (file_size(e.path) <= db_size) {
                ASSERT_TRUE(now(CLOCK_MONOTONIC) < deadline);
                usleep(10 * USEC_PER_MSEC);
        }
        ASSERT_TRUE(wal_max > 0);
        ASSERT_TRUE(wal_max <= (off_t) (2 * 32 + 64) * (4096 + 24) + 32);
        ASSERT_EQ(count_receipts(e.path), 300);

        store_free(s);
        ASSERT_TRUE(access(wal, F_OK) < 0); /* the last connection checkpointed and removed it */
        assert_db_healthy(e.path);
        env_teardown(&e);
}

/* What the writer's connection says of its settings, read on that connection. */
typedef struct WriterPragmas {
        char journal_mode[16];
        int64_t synchronous, foreign_keys, cache_size, temp_store, journal_size_limit;
} WriterPragmas;

static int64_t conn_pragma(StoreConn *c, const char *name, char *ret_text, size_t size) {
        sqlite3_stmt *stmt = NULL;
        char sql[64];
        int64_t v;

        /* Prepared here, not through the store's cache: what is read must not depend on what is tested. */
        snprintf(sql, sizeof sql, "PRAGMA %s", name);
        ASSERT_EQ(sqlite3_prepare_v2(store_conn_get_db(c), sql, -1, &stmt, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
        v = sqlite3_column_int64(stmt, 0);
        if (ret_text)
                snprintf(ret_text, size, "%s", (const char *) sqlite3_column_text(stmt, 0));
        sqlite3_finalize(stmt);
        return v;
}

static int job_read_pragmas(StoreConn *c, void *data) {
        WriterPragmas *p = data;

        conn_pragma(c, "journal_mode", p->journal_mode, sizeof p->journal_mode);
        p->synchronous = conn_pragma(c, "synchronous", NULL, 0);
        p->foreign_keys = conn_pragma(c, "foreign_keys", NULL, 0);
        p->cache_size = conn_pragma(c, "cache_size", NULL, 0);
        p->temp_store = conn_pragma(c, "temp_store", NULL, 0);
        p->journal_size_limit = conn_pragma(c, "journal_size_limit", NULL, 0);
        return 0;
}

static void writer_pragmas(Env *e, Store *s, WriterPragmas *ret) {
        Done d = {};

        *ret = (WriterPragmas) {};
        ASSERT_OK(store_write(s, job_read_pragmas, ret, on_done, &d));
        run_until_idle(e, s);
        ASSERT_TRUE(d.done);
        ASSERT_OK(d.result);
}

static void test_every_writer_pragma_is_applied_on_the_writer_connection(void) {
        static const struct {
                StoreSynchronous synchronous;
                unsigned checkpoint_pages;
                int64_t expected_synchronous, expected_limit;
        } cases[] = {
                { STORE_SYNCHRONOUS_FULL, 0, 2, INT64_C(4096) * 2 * (4096 + 24) },
                { STORE_SYNCHRONOUS_FULL, 32, 2, INT64_C(32) * 2 * (4096 + 24) },
                { STORE_SYNCHRONOUS_OFF, 16, 0, INT64_C(16) * 2 * (4096 + 24) },
        };
        WriterPragmas p;
        Env e;

        if (ENABLE_DEBUG_HOOKS)
                ASSERT_OK(unsetenv("KKT_ADAPTER_DEBUG_SYNCHRONOUS"));
        env_setup(&e);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                StoreOptions opts = { .synchronous = cases[i].synchronous,
                                      .checkpoint_pages = cases[i].checkpoint_pages };
                Store *s = NULL;

                ASSERT_OK(store_open(&s, e.event, e.path, &opts));
                writer_pragmas(&e, s, &p);
                ASSERT_STREQ(p.journal_mode, "wal");
                ASSERT_EQ(p.synchronous, cases[i].expected_synchronous);
                ASSERT_EQ(p.foreign_keys, 1);
                ASSERT_EQ(p.cache_size, -16384);
                ASSERT_EQ(p.temp_store, 2); /* MEMORY */
                /* Built in the same buffer as the synchronous pragma before it: it once got that one's
                 * cached statement and was never applied (-1, no limit). */
                ASSERT_EQ(p.journal_size_limit, cases[i].expected_limit);
                store_free(s);
        }
        env_teardown(&e);
}

static int job_write_burst(StoreConn *c, void *data) {
        /* About 2 MiB in one transaction: some 500 pages, far past the limit of the test's WAL. */
        ASSERT_EQ(sqlite3_exec(store_conn_get_db(c),
                               "INSERT INTO config (key, value) VALUES ('burst', hex(randomblob(1048576))) "
                               "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                               NULL, NULL, NULL),
                  SQLITE_OK);
        return 0;
}

static int job_write_small(StoreConn *c, void *data) {
        char sql[160];

        snprintf(sql, sizeof sql, "INSERT INTO config (key, value) VALUES ('small', '%u') "
                                  "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 *(unsigned *) data);
        ASSERT_EQ(sqlite3_exec(store_conn_get_db(c), sql, NULL, NULL, NULL), SQLITE_OK);
        return 0;
}

static void write_sync(Env *e, Store *s, StoreJobFunc fn, void *data) {
        Done d = {};

        ASSERT_OK(store_write(s, fn, data, on_done, &d));
        run_until_idle(e, s);
        ASSERT_TRUE(d.done);
        ASSERT_OK(d.result);
}

static void test_wal_shrinks_to_the_journal_size_limit_after_a_burst(void) {
        StoreOptions opts = { .capacity = 1000, .checkpoint_pages = 16 };
        const off_t limit = (off_t) 16 * 2 * (4096 + 24);
        char wal[PATH_MAX + 8];
        unsigned i;
        off_t after_burst;
        Store *s = NULL;
        Env e;

        env_setup(&e);
        snprintf(wal, sizeof wal, "%s-wal", e.path);
        ASSERT_OK(store_open(&s, e.event, e.path, &opts));

        write_sync(&e, s, job_write_burst, NULL);
        after_burst = file_size(wal);
        ASSERT_TRUE(after_burst > 4 * limit);

        /* Once the burst is checkpointed, the next commit restarts the WAL from its start and SQLite cuts
         * the file down to journal_size_limit. A checkpoint still running on the checkpointer's thread can
         * delay that by a commit or two: bounded. */
        for (i = 0; i < 50 && file_size(wal) > limit; i++) {
                write_sync(&e, s, job_write_small, &i);
                if (file_size(wal) > limit)
                        usleep(20 * USEC_PER_MSEC);
        }
        ASSERT_TRUE(file_size(wal) <= limit);
        ASSERT_TRUE(file_size(wal) > 0); /* truncated to the limit, not deleted: the space is reused */

        store_free(s);
        assert_db_healthy(e.path);
        env_teardown(&e);
}

static void test_open_empty_file_creates_the_current_schema_in_wal_mode(void) {
        Env e;
        Store *s;
        int fd;

        env_setup(&e);
        fd = open(e.path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600); /* an empty file, as touch leaves it */
        ASSERT_OK(fd);
        close(fd);

        s = store_open_ok(&e, 0);
        ASSERT_STREQ(store_get_path(s), e.path);
        ASSERT_EQ_U(store_get_counters(s)->total, 0);
        ASSERT_EQ_U(store_get_counters(s)->capacity, STORE_CAPACITY_DEFAULT);
        store_free(s);

        ASSERT_EQ(db_int(e.path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
        assert_db_text(e.path, "PRAGMA journal_mode", "wal");
        ASSERT_EQ(db_int(e.path,
                         "SELECT COUNT(*) FROM sqlite_schema WHERE name IN ('receipts', 'dlq', "
                         "'buffer_events', 'config', 'v_buffer_status', 'idempotency_keys', "
                         "'idx_receipts_status_hlc')"),
                  7);
        /* What a commit writes: keys appended in receipt id order, no index keyed by the client's key, and
         * the counts not in the file at all. */
        assert_db_text(e.path, "SELECT name FROM pragma_table_info('idempotency_keys') WHERE pk = 1",
                       "receipt_id");
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM pragma_index_list('idempotency_keys') WHERE origin <> 'pk'"),
                  0);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM sqlite_schema WHERE name LIKE 'receipt%count%' "
                                 "OR name = 'idx_receipts_print_status_hlc'"),
                  0);
        ASSERT_EQ(db_int(e.path,
                         "SELECT COUNT(*) FROM pragma_table_info('receipts') WHERE name IN ('hlc', "
                         "'total_kopecks', 'receipt_type', 'print_status', 'fiscal_doc', 'printed_at', "
                         "'ofd_response', 'attempts', 'hlc_timestamp', 'retry_count')"),
                  10);
        ASSERT_EQ(db_int(e.path, "SELECT total + pending + dlq_size FROM v_buffer_status"), 0);
        assert_db_healthy(e.path);

        /* Opening again does not migrate again. */
        s = store_open_ok(&e, 0);
        store_free(s);
        ASSERT_EQ(db_int(e.path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
        env_teardown(&e);
}

static void test_open_prototype_v1_file_migrates_keeping_rows(void) {
        Env e;
        Store *s;
        Submitted x;
        Got g;

        env_setup(&e);
        db_exec(e.path, prototype_schema);
        db_exec(e.path, prototype_rows);

        s = store_open_ok(&e, 0);
        ASSERT_EQ_U(store_get_counters(s)->total, 4);
        ASSERT_EQ_U(store_get_counters(s)->pending, 2);
        ASSERT_EQ_U(store_get_counters(s)->synced, 1);
        ASSERT_EQ_U(store_get_counters(s)->dlq, 1);

        /* The prototype's rows read like ours. */
        get_receipt(&e, s, "legacy-b", &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.receipt_data, "{\"n\":2}");
        ASSERT_EQ(g.r.status, STORE_STATUS_PENDING);
        ASSERT_EQ(g.r.print_status, STORE_PRINT_UNPRINTED);
        ASSERT_EQ(g.r.attempts, 3);
        ASSERT_STREQ(g.r.last_error, "timeout");
        ASSERT_EQ_U(hlc_physical_ms(g.r.hlc), UINT64_C(1795860000250)); /* 2026-11-28T10:00:00.250Z */
        store_receipt_done(&g.r);

        /* New receipts sort after every old one. */
        submit_ok(&e, s, "k-after-migration", "h", &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_CREATED);
        ASSERT_TRUE(x.hlc >
                    (uint64_t) db_int(e.path, "SELECT MAX(hlc) FROM receipts WHERE id LIKE 'legacy-%'"));
        ASSERT_EQ_U(store_get_counters(s)->pending, 3);
        store_free(s);

        ASSERT_EQ(db_int(e.path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
        ASSERT_EQ(count_receipts(e.path), 5);
        assert_db_text(e.path, "SELECT receipt_data FROM receipts WHERE id = 'legacy-d'", "{\"n\":4}");
        assert_db_text(e.path, "SELECT hlc_timestamp FROM receipts WHERE id = 'legacy-c'", "z");
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM receipts WHERE hlc IS NULL"), 0);
        /* Stamps follow created_at, ties in insertion order. */
        assert_db_text(e.path,
                       "SELECT group_concat(id, ' ') FROM (SELECT id FROM receipts WHERE id LIKE 'legacy-%' "
                       "ORDER BY hlc)",
                       "legacy-a legacy-b legacy-c legacy-d");
        ASSERT_EQ(db_int(e.path, "SELECT hlc FROM receipts WHERE id = 'legacy-c'") -
                          db_int(e.path, "SELECT hlc FROM receipts WHERE id = 'legacy-b'"),
                  1);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM dlq WHERE receipt_id = 'legacy-d'"), 1);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM buffer_events WHERE receipt_id = 'legacy-a'"), 1);
        assert_db_text(e.path, "SELECT value FROM config WHERE key = 'prototype'", "yes");
        ASSERT_EQ(db_int(e.path,
                         "SELECT pending * 1000 + synced * 100 + dlq * 10 + dlq_size FROM v_buffer_status"),
                  3111);
        /* Schema 4's columns, empty for the prototype's rows; its states allowed in the rebuilt table. */
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM receipts WHERE fiscal_document_number IS NULL "
                                 "AND original_id IS NULL"),
                  5);
        db_exec(e.path, "UPDATE receipts SET print_status = 'print_rejected' WHERE id = 'legacy-a';"
                        "UPDATE receipts SET status = 'cancelled' WHERE id = 'legacy-a'");
        assert_db_healthy(e.path);
        env_teardown(&e);
}

static void test_open_prototype_file_without_user_version_migrates(void) {
        Env e;
        Store *s;

        env_setup(&e);
        db_exec(e.path, prototype_schema);
        db_exec(e.path, "PRAGMA user_version = 0");
        db_exec(e.path, prototype_rows);

        s = store_open_ok(&e, 0);
        ASSERT_EQ_U(store_get_counters(s)->total, 4);
        store_free(s);
        ASSERT_EQ(db_int(e.path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
        ASSERT_EQ(count_receipts(e.path), 4);
        env_teardown(&e);
}

/* A file as version `version` of the schema left it: the migrations up to there, nothing else. */
static void db_create_version(const char *path, int version) {
        sqlite3 *db = db_open(path);

        ASSERT_OK(store_schema_migrate_to(db, version));
        ASSERT_EQ(db_int(path, "PRAGMA user_version"), version);
        ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
}

/* A receipt as versions 2 and 3 wrote it, with its idempotency key (unless NULL) and its event; the columns
 * are named, so it fits both layouts of idempotency_keys. */
static void db_insert_old_receipt(const char *path, const char *id, const char *key, const char *hash,
                                  const char *type, int64_t total, const char *status, const char *print_status,
                                  const char *fiscal_doc, uint64_t hlc) {
        char *sql;

        sql = sqlite3_mprintf(
                "INSERT INTO receipts (id, pos_id, receipt_data, status, created_at, updated_at, retry_count, "
                "        hlc_timestamp, hlc, total_kopecks, receipt_type, print_status, attempts, fiscal_doc, "
                "        printed_at, last_error) "
                "VALUES (%Q, 'pos-7', '{\"n\":1}', %Q, '2026-11-28T10:00:00.000Z', '2026-11-28T10:00:01.000Z', "
                "        0, 'x', %lld, %lld, %Q, %Q, 2, %Q, %Q, %Q);"
                "INSERT INTO buffer_events (receipt_id, event, details, created_at) "
                "        VALUES (%Q, 'received', NULL, '2026-11-28T10:00:00.000Z');",
                id, status, (long long) hlc, (long long) total, type, print_status, fiscal_doc,
                fiscal_doc ? "2026-11-28T10:00:00.500Z" : NULL,
                streq(print_status, "print_failed") ? "paper out" : NULL, id);
        ASSERT_NOT_NULL(sql);
        db_exec(path, sql);
        sqlite3_free(sql);
        if (!key)
                return;
        sql = sqlite3_mprintf("INSERT INTO idempotency_keys (key, request_hash, receipt_id, created_at) "
                              "VALUES (%Q, %Q, %Q, '2026-11-28T10:00:00.000Z')",
                              key, hash, id);
        ASSERT_NOT_NULL(sql);
        db_exec(path, sql);
        sqlite3_free(sql);
}

static void test_open_version_2_file_moves_keys_and_counts_keeping_replays(void) {
        static const char id_a[] = "019ac9a0-0000-7000-8000-00000000000a",
                          id_b[] = "019ac9a0-0000-7000-8000-00000000000b";
        Submitted again;
        Env e;
        Store *s;

        env_setup(&e);
        /* Version 2 kept the keys in a table keyed by the key and the counts on disk, by triggers. */
        db_create_version(e.path, 2);
        db_insert_old_receipt(e.path, id_a, "v2-key-a", "hash-a", "sale", 100, "pending", "unprinted", NULL,
                              UINT64_C(1) << 16);
        db_insert_old_receipt(e.path, id_b, "v2-key-b", "hash-b", "sale", 200, "pending", "printed",
                              "{\"fiscal_document_number\":7}", UINT64_C(2) << 16);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM sqlite_schema WHERE name IN ('receipt_counts', "
                                 "'idx_idempotency_keys_receipt_id', 'receipts_count_insert')"),
                  3);
        ASSERT_EQ(db_int(e.path, "SELECT n FROM receipt_counts WHERE status = 'pending'"), 2);

        s = store_open_ok(&e, 0);
        ASSERT_EQ_U(store_get_counters(s)->pending, 2);
        ASSERT_EQ_U(store_get_counters(s)->total, 2);
        submit_ok(&e, s, "v2-key-b", "hash-b", &again);
        ASSERT_EQ(again.outcome, STORE_SUBMIT_REPLAY);
        ASSERT_STREQ(again.id, id_b);
        ASSERT_EQ_U(again.fiscal_document_number, 7); /* taken from the document it had */
        submit_ok(&e, s, "v2-key-a", "hash-other", &again);
        ASSERT_EQ(again.outcome, STORE_SUBMIT_KEY_MISMATCH);
        submit_ok(&e, s, "v3-key", "h", &again);
        ASSERT_EQ(again.outcome, STORE_SUBMIT_CREATED);
        ASSERT_EQ_U(store_get_counters(s)->pending, 3);
        store_free(s);

        ASSERT_EQ(db_int(e.path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM sqlite_schema WHERE name IN ('receipt_counts', "
                                 "'idx_idempotency_keys_receipt_id', 'receipts_count_insert')"),
                  0);
        assert_db_text(e.path, "SELECT group_concat(key, ' ') FROM (SELECT key FROM idempotency_keys ORDER BY key)",
                       "v2-key-a v2-key-b v3-key");
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM buffer_events WHERE event = 'received'"), 3);
        assert_db_healthy(e.path);
        env_teardown(&e);
}

/* Every row of a table, all of the given columns quoted, in one text: equal before and after means kept. */
static char *db_dump(const char *path, const char *table, const char *columns) {
        char sql[2048], joined[1536], *p = joined;

        /* "a, b" -> "a || '|' || b" (SQLite 3.40 has no concat_ws()). */
        for (const char *c = columns; *c && p < joined + sizeof joined - 16; c++)
                if (c[0] == ',' && c[1] == ' ') {
                        p = stpcpy(p, " || '|' || ");
                        c++;
                } else
                        *p++ = *c;
        *p = 0;
        snprintf(sql, sizeof sql, "SELECT group_concat(row, char(10)) FROM (SELECT %s AS row FROM %s ORDER BY 1)",
                 joined, table);
        return db_text(path, sql);
}

#define V3_RECEIPT_COLUMNS                                                                                     \
        "quote(rowid), quote(id), quote(pos_id), quote(receipt_data), quote(status), quote(created_at), "       \
        "quote(updated_at), quote(synced_at), quote(retry_count), quote(last_error), quote(next_retry_at), "    \
        "quote(hlc_timestamp), quote(hlc), quote(total_kopecks), quote(receipt_type), quote(print_status), "    \
        "quote(fiscal_doc), quote(printed_at), quote(ofd_response), quote(attempts)"

static const char *const v3_tables[][2] = {
        { "receipts", V3_RECEIPT_COLUMNS },
        { "idempotency_keys", "quote(receipt_id), quote(key), quote(request_hash), quote(created_at)" },
        { "buffer_events", "quote(id), quote(receipt_id), quote(event), quote(details), quote(created_at)" },
        { "dlq", "quote(id), quote(receipt_id), quote(reason), quote(moved_at), quote(resolved)" },
        { "config", "quote(key), quote(value)" },
        { "v_buffer_status", "pending, synced, failed, dlq, total, dlq_size" },
};

static int job_read_foreign_keys(StoreConn *c, void *data) {
        sqlite3_stmt *stmt;

        ASSERT_OK(store_conn_prepare(c, "PRAGMA foreign_keys", &stmt));
        ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
        return sqlite3_column_int(stmt, 0);
}

/* A file of version 3 as the daemon left it, with receipts in every state it knew, a dead letter, and an
 * index and a view that another tool added: the rebuild of schema 4 keeps every row, key, count and replay,
 * and the new states are allowed afterwards. */
static void test_open_version_3_file_rebuilds_receipts_keeping_rows_keys_counts_and_replays(void) {
        static const char *const ids[] = {
                "019ac9a0-0000-7000-8000-000000000001", "019ac9a0-0000-7000-8000-000000000002",
                "019ac9a0-0000-7000-8000-000000000003", "019ac9a0-0000-7000-8000-000000000004",
                "019ac9a0-0000-7000-8000-000000000005", "019ac9a0-0000-7000-8000-000000000006",
                "019ac9a0-0000-7000-8000-000000000007",
        };
        char *before[ELEMENTSOF(v3_tables)];
        Submitted x;
        Done d = {};
        Env e;
        Store *s;

        env_setup(&e);
        db_create_version(e.path, 3);
        db_insert_old_receipt(e.path, ids[0], "k-unprinted", "h1", "sale", 1000, "pending", "unprinted", NULL,
                              1 << 16);
        db_insert_old_receipt(e.path, ids[1], "k-printed", "h2", "sale", 2000, "pending", "printed",
                              "{\"fiscal_document_number\":17,\"fiscal_sign\":\"123\"}", 2 << 16);
        db_insert_old_receipt(e.path, ids[2], "k-synced", "h3", "sale", 3000, "synced", "printed",
                              "{\"fiscal_document_number\":18}", 3 << 16);
        db_insert_old_receipt(e.path, ids[3], "k-dlq", "h4", "refund", 400, "dlq", "printed",
                              "{\"fiscal_document_number\":19}", 4 << 16);
        db_insert_old_receipt(e.path, ids[4], "k-failed", "h5", "sale", 5000, "pending", "print_failed", NULL,
                              5 << 16);
        /* Documents without a usable number: not JSON, the number as text, out of range, a boolean. */
        db_insert_old_receipt(e.path, ids[5], "k-garbage", "h6", "sale", 6000, "pending", "printed", "garbage",
                              6 << 16);
        db_insert_old_receipt(e.path, ids[6], NULL, NULL, "sale", 7000, "synced", "printed",
                              "{\"fiscal_document_number\":\"20\"}", 7 << 16);
        db_exec(e.path,
                "INSERT INTO dlq (receipt_id, reason, moved_at) VALUES "
                "        ('019ac9a0-0000-7000-8000-000000000004', 'HTTP 400', '2026-11-28T11:05:00');"
                "UPDATE config SET value = '458752' WHERE key = 'hlc_last';"
                "CREATE INDEX tool_idx_pos ON receipts (pos_id);"
                "CREATE VIEW tool_pending AS SELECT id FROM receipts WHERE status = 'pending';");
        for (size_t i = 0; i < ELEMENTSOF(v3_tables); i++)
                ASSERT_NOT_NULL(before[i] = db_dump(e.path, v3_tables[i][0], v3_tables[i][1]));

        s = store_open_ok(&e, 0);
        /* The counts, from the rebuilt table. */
        ASSERT_EQ_U(store_get_counters(s)->total, 7);
        ASSERT_EQ_U(store_get_counters(s)->pending, 4);
        ASSERT_EQ_U(store_get_counters(s)->synced, 2);
        ASSERT_EQ_U(store_get_counters(s)->dlq, 1);
        /* Keys and replays. */
        submit_ok(&e, s, "k-failed", "h5", &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_REPLAY);
        ASSERT_STREQ(x.id, ids[4]);
        submit_ok(&e, s, "k-printed", "other", &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_KEY_MISMATCH);
        /* Foreign keys are enforced again on the writer after the migration turned them off. */
        ASSERT_OK(store_write(s, job_read_foreign_keys, NULL, on_done, &d));
        run_until_idle(&e, s);
        ASSERT_EQ(d.result, 1);
        store_free(s);

        ASSERT_EQ(db_int(e.path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
        for (size_t i = 0; i < ELEMENTSOF(v3_tables); i++) {
                _cleanup_free_ char *after = db_dump(e.path, v3_tables[i][0], v3_tables[i][1]);

                /* Replays and mismatches add nothing: every table reads as before, receipts included. */
                ASSERT_STREQ(after, before[i]);
                free(before[i]);
        }
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM idempotency_keys"), 6);
        /* Schema 5: no first answer is on record for these keys. */
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM idempotency_keys WHERE response IS NULL "
                                 "AND response_status IS NULL"),
                  6);
        /* The numbers of the documents that have them. */
        assert_db_text(e.path,
                       "SELECT group_concat(coalesce(fiscal_document_number, '-'), ' ') FROM "
                       "(SELECT fiscal_document_number FROM receipts ORDER BY rowid)",
                       "- 17 18 19 - - -");
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM receipts WHERE original_id IS NOT NULL"), 0);
        /* Ours, the tool's index and view, and the keys' foreign key to the new table. */
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM sqlite_schema WHERE name IN ('idx_receipts_status_hlc', "
                                 "'idx_receipts_fiscal_document_number', 'idx_receipts_original_id', "
                                 "'tool_idx_pos', 'tool_pending', 'v_buffer_status')"),
                  6);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM sqlite_schema WHERE name LIKE '%v4%'"), 0);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM tool_pending"), 4);
        assert_db_text(e.path, "SELECT \"table\" FROM pragma_foreign_key_list('idempotency_keys')", "receipts");
        assert_db_text(e.path,
                       "SELECT pending || ' ' || synced || ' ' || dlq || ' ' || total || ' ' || dlq_size "
                       "FROM v_buffer_status",
                       "4 2 1 7 1");
        assert_db_healthy(e.path);

        /* The new CHECKs take the new states, and still refuse others. */
        db_exec(e.path, "UPDATE receipts SET print_status = 'print_rejected' WHERE rowid = 1;"
                        "UPDATE receipts SET status = 'cancelled' WHERE rowid = 1");
        {
                sqlite3 *db = db_open(e.path);

                ASSERT_EQ(sqlite3_exec(db, "UPDATE receipts SET status = 'bogus' WHERE rowid = 2", NULL, NULL,
                                       NULL),
                          SQLITE_CONSTRAINT);
                ASSERT_EQ(sqlite3_exec(db, "UPDATE receipts SET print_status = 'bogus' WHERE rowid = 2", NULL,
                                       NULL, NULL),
                          SQLITE_CONSTRAINT);
                sqlite3_close(db);
        }
        s = store_open_ok(&e, 0);
        ASSERT_EQ_U(store_get_counters(s)->pending, 3);
        ASSERT_EQ_U(store_get_counters(s)->total, 7);
        store_free(s);
        env_teardown(&e);
}

/* Rows that schema 4's constraints refuse (the prototype's table had none) or a column it does not know:
 * the store does not open, and the file stays as it was, every row with it. */
static void test_open_file_that_schema_4_cannot_hold_fails_with_ebadmsg_and_stays_unchanged(void) {
        static const char *const cases[] = {
                "UPDATE receipts SET status = 'processing' WHERE id = 'legacy-a'",
                "UPDATE receipts SET pos_id = NULL WHERE id = 'legacy-b'",
                "ALTER TABLE receipts ADD COLUMN cashier TEXT",
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *before = NULL, *after = NULL;
                Store *s = NULL;
                Env e;

                env_setup(&e);
                db_exec(e.path, prototype_schema);
                db_exec(e.path, prototype_rows);
                db_exec(e.path, cases[i]);
                before = db_dump(e.path, "receipts", "quote(id), quote(pos_id), quote(status)");

                ASSERT_ERROR(store_open(&s, e.event, e.path, NULL), EBADMSG);
                ASSERT_NULL(s);
                ASSERT_EQ(db_int(e.path, "PRAGMA user_version"), 1);
                after = db_dump(e.path, "receipts", "quote(id), quote(pos_id), quote(status)");
                ASSERT_STREQ(after, before);
                ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM pragma_table_info('receipts') WHERE name = 'hlc'"),
                          0);
                ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM sqlite_schema WHERE name LIKE '%v4%'"), 0);
                env_teardown(&e);
        }
}

/* Another program wrote a second row with a key the daemon already had: the store still opens, every
 * receipt stays, and the key replays the first receipt. */
static void test_key_twice_in_the_file_opens_and_replays_the_first(void) {
        Submitted first, again;
        char sql[512];
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        submit_ok(&e, s, "twice", "h", &first);
        store_free(s);

        snprintf(sql, sizeof sql,
                 "INSERT INTO receipts (id, pos_id, receipt_data, status, created_at, hlc) "
                 "VALUES ('zzzz-other', 'pos', '{}', 'pending', '2026-11-29T00:00:00.000Z', 1);"
                 "INSERT INTO idempotency_keys (receipt_id, key, request_hash, created_at) "
                 "VALUES ('zzzz-other', 'twice', 'h', '2026-11-29T00:00:00.000Z');");
        db_exec(e.path, sql);

        s = store_open_ok(&e, 0);
        ASSERT_EQ_U(store_get_counters(s)->total, 2);
        submit_ok(&e, s, "twice", "h", &again);
        ASSERT_EQ(again.outcome, STORE_SUBMIT_REPLAY);
        ASSERT_STREQ(again.id, first.id); /* the first in receipt id order */
        store_free(s);
        ASSERT_EQ(count_receipts(e.path), 2);
        env_teardown(&e);
}

static void test_submit_calls_back_after_commit_with_rows_on_disk(void) {
        StoreReceiptNew r = receipt_new("key-1", "hash-1");
        Submitted x = {};
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);

        x.check_path = e.path;
        ASSERT_OK(store_submit_receipt(s, &r, on_submit, &x));
        ASSERT_FALSE(x.done); /* never synchronously */
        ASSERT_FALSE(store_is_idle(s));
        run_until_idle(&e, s);

        ASSERT_TRUE(x.done);
        ASSERT_OK(x.error);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_CREATED);
        ASSERT_EQ(x.rows_at_callback, 1); /* visible to another connection: committed */
        ASSERT_EQ(x.status, STORE_STATUS_PENDING);
        ASSERT_EQ(x.print_status, STORE_PRINT_UNPRINTED);
        ASSERT_TRUE(x.hlc > 0);
        char sql[512];

        /* A version 7 UUID, 8-4-4-4-12, whose time is the HLC stamp's. */
        assert_uuid_v7(x.id, hlc_physical_ms(x.hlc));
        /* ISO 8601 UTC. */
        ASSERT_EQ(strlen(x.created_at), 24);
        ASSERT_TRUE(x.created_at[10] == 'T' && x.created_at[23] == 'Z');

        ASSERT_EQ_U(store_get_counters(s)->pending, 1);
        ASSERT_EQ_U(store_get_counters(s)->total, 1);
        store_free(s);

        snprintf(sql, sizeof sql,
                 "SELECT total_kopecks = 12345 AND receipt_type = 'sale' AND pos_id = 'pos-7' "
                 "AND attempts = 0 AND created_at = '%s' AND hlc = %" PRIu64 " "
                 "FROM receipts WHERE id = '%s'",
                 x.created_at, x.hlc, x.id);
        ASSERT_EQ(db_int(e.path, sql), 1);
        snprintf(sql, sizeof sql, "SELECT hlc_timestamp FROM receipts WHERE id = '%s'", x.id);
        char hlc_text[HLC_FORMAT_MAX];
        assert_db_text(e.path, sql, hlc_format(hlc_text, sizeof hlc_text, x.hlc));
        assert_db_text(e.path, "SELECT request_hash FROM idempotency_keys WHERE key = 'key-1'", "hash-1");
        assert_db_text(e.path, "SELECT json_extract(details, '$.idempotency_key') FROM buffer_events",
                       "key-1");
        /* The commit wrote no HLC row: the receipt carries its stamp (see the retention test). */
        ASSERT_EQ(db_int(e.path, "SELECT CAST(value AS INTEGER) FROM config WHERE key = 'hlc_last'"), 0);
        assert_db_healthy(e.path);
        env_teardown(&e);
}

static void test_replay_with_same_key_and_hash_returns_existing_receipt(void) {
        Submitted first, again;
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);

        submit_ok(&e, s, "key-r", "hash-r", &first);
        ASSERT_EQ(first.outcome, STORE_SUBMIT_CREATED);
        ASSERT_OK(mark_printed_sync(&e, s, first.id, "{\"fd\":1}"));

        submit_ok(&e, s, "key-r", "hash-r", &again);
        ASSERT_EQ(again.outcome, STORE_SUBMIT_REPLAY);
        ASSERT_TRUE(again.have_receipt);
        ASSERT_STREQ(again.id, first.id);
        ASSERT_EQ_U(again.hlc, first.hlc);
        ASSERT_STREQ(again.created_at, first.created_at);
        ASSERT_EQ(again.print_status, STORE_PRINT_PRINTED); /* the receipt as it is now */

        ASSERT_EQ(count_receipts(e.path), 1);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM buffer_events WHERE event = 'received'"), 1);
        ASSERT_EQ_U(store_get_counters(s)->total, 1);
        store_free(s);
        env_teardown(&e);
}

static int set_response_sync(Env *e, Store *s, const char *id, const char *response) {
        Done d = {};

        ASSERT_OK(store_set_response(s, id, 200, response, on_done, &d));
        run_until_idle(e, s);
        ASSERT_TRUE(d.done);
        return d.result;
}

static void test_replay_returns_the_first_answer_stored_by_the_insert_or_later(void) {
        StoreReceiptNew r = receipt_new("key-answered", "h");
        Submitted first = {}, again;
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);

        /* Known before the commit: written by the INSERT. */
        r.response_status = 200;
        r.response = "{\"status\":\"buffered\"}";
        ASSERT_OK(store_submit_receipt(s, &r, on_submit, &first));
        run_until_idle(&e, s);
        ASSERT_EQ(first.outcome, STORE_SUBMIT_CREATED);
        ASSERT_EQ_U(first.response_status, 0); /* only replays carry it */
        submit_ok(&e, s, "key-answered", "h", &again);
        ASSERT_EQ(again.outcome, STORE_SUBMIT_REPLAY);
        ASSERT_EQ_U(again.response_status, 200);
        ASSERT_STREQ(again.response, "{\"status\":\"buffered\"}");
        /* The first answer stays, whatever comes later. */
        ASSERT_EQ(set_response_sync(&e, s, first.id, "{\"status\":\"printed\"}"), 0);
        submit_ok(&e, s, "key-answered", "h", &again);
        ASSERT_STREQ(again.response, "{\"status\":\"buffered\"}");

        /* Decided after the commit: stored by an UPDATE of the key's row. */
        submit_ok(&e, s, "key-later", "h", &first);
        submit_ok(&e, s, "key-later", "h", &again);
        ASSERT_EQ(again.outcome, STORE_SUBMIT_REPLAY);
        ASSERT_EQ_U(again.response_status, 0);
        ASSERT_STREQ(again.response, "");
        ASSERT_EQ(set_response_sync(&e, s, first.id, "{\"status\":\"printed\"}"), 1);
        ASSERT_ERROR(set_response_sync(&e, s, "no-such-receipt", "{}"), ENOENT);
        store_free(s);

        /* On disk, across a restart. */
        s = store_open_ok(&e, 0);
        submit_ok(&e, s, "key-later", "h", &again);
        ASSERT_EQ_U(again.response_status, 200);
        ASSERT_STREQ(again.response, "{\"status\":\"printed\"}");
        ASSERT_EQ(count_receipts(e.path), 2);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM idempotency_keys WHERE response_status = 200"), 2);
        store_free(s);
        env_teardown(&e);
}

static void test_same_key_twice_in_one_group_inserts_once(void) {
        StoreReceiptNew r = receipt_new("key-twice", "hash");
        Submitted a = {}, b = {};
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        ASSERT_OK(store_submit_receipt(s, &r, on_submit, &a));
        ASSERT_OK(store_submit_receipt(s, &r, on_submit, &b));
        run_until_idle(&e, s);

        ASSERT_OK(a.error);
        ASSERT_OK(b.error);
        ASSERT_EQ(a.outcome, STORE_SUBMIT_CREATED);
        ASSERT_EQ(b.outcome, STORE_SUBMIT_REPLAY);
        ASSERT_STREQ(a.id, b.id);
        ASSERT_EQ(count_receipts(e.path), 1);
        store_free(s);
        env_teardown(&e);
}

static void test_same_key_with_other_hash_is_key_mismatch(void) {
        Submitted first, other;
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        submit_ok(&e, s, "key-m", "hash-1", &first);
        submit_ok(&e, s, "key-m", "hash-2", &other);

        ASSERT_EQ(other.outcome, STORE_SUBMIT_KEY_MISMATCH);
        ASSERT_FALSE(other.have_receipt);
        ASSERT_EQ(count_receipts(e.path), 1);
        assert_db_text(e.path, "SELECT request_hash FROM idempotency_keys WHERE key = 'key-m'", "hash-1");
        ASSERT_EQ_U(store_get_counters(s)->pending, 1);
        store_free(s);
        env_teardown(&e);
}

static void test_capacity_reached_is_full_and_inserts_nothing(void) {
        Submitted x[3], full, replay, after;
        char key[32];
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 3);
        ASSERT_EQ_U(store_get_counters(s)->capacity, 3);
        for (unsigned i = 0; i < 3; i++) {
                snprintf(key, sizeof key, "cap-%u", i);
                submit_ok(&e, s, key, "h", &x[i]);
                ASSERT_EQ(x[i].outcome, STORE_SUBMIT_CREATED);
        }

        submit_ok(&e, s, "cap-3", "h", &full);
        ASSERT_EQ(full.outcome, STORE_SUBMIT_FULL);
        ASSERT_FALSE(full.have_receipt);
        ASSERT_EQ(count_receipts(e.path), 3);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM idempotency_keys WHERE key = 'cap-3'"), 0);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM buffer_events"), 3);

        /* A replay is answered even when full: it adds nothing. */
        submit_ok(&e, s, "cap-1", "h", &replay);
        ASSERT_EQ(replay.outcome, STORE_SUBMIT_REPLAY);
        ASSERT_STREQ(replay.id, x[1].id);

        /* Once one leaves the pending state there is room again. */
        ASSERT_OK(mark_printed_sync(&e, s, x[0].id, "{}"));
        ASSERT_OK(mark_synced_sync(&e, s, x[0].id, NULL));
        submit_ok(&e, s, "cap-3", "h", &after);
        ASSERT_EQ(after.outcome, STORE_SUBMIT_CREATED);
        ASSERT_EQ_U(store_get_counters(s)->pending, 3);
        ASSERT_EQ_U(store_get_counters(s)->total, 4);
        store_free(s);
        assert_db_healthy(e.path);
        env_teardown(&e);
}

#define N_GROUP 100

static void test_group_commit_puts_concurrent_submits_in_one_transaction(void) {
        Submitted x[N_GROUP] = {};
        Done gate_done = {}, failing = {};
        char keys[N_GROUP][32];
        sem_t gate;
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 1000);
        ASSERT_OK(sem_init(&gate, 0, 0));

        ASSERT_OK(store_write(s, job_wait_gate, &gate, on_done, &gate_done));
        for (unsigned i = 0; i < N_GROUP; i++) {
                StoreReceiptNew r;

                snprintf(keys[i], sizeof keys[i], "group-%u", i);
                r = receipt_new(keys[i], "h");
                ASSERT_OK(store_submit_receipt(s, &r, on_submit, &x[i]));
                if (i == N_GROUP / 2)
                        ASSERT_OK(store_write(s, job_insert_then_fail, NULL, on_done, &failing));
        }
        ASSERT_OK(sem_post(&gate));
        run_until_idle(&e, s);

        ASSERT_OK(gate_done.result);
        ASSERT_ERROR(failing.result, EINVAL);
        for (unsigned i = 0; i < N_GROUP; i++) {
                ASSERT_TRUE(x[i].done);
                ASSERT_OK(x[i].error);
                ASSERT_EQ(x[i].outcome, STORE_SUBMIT_CREATED);
                /* Stamped in the order they were queued. */
                if (i > 0)
                        ASSERT_TRUE(x[i].hlc > x[i - 1].hlc);
        }

        /* The gate's group (which may have caught some or all of the submits when the writer woke late) and
         * at most one more for the rest: 102 jobs in one or two transactions. */
        const StoreStats *st = store_get_stats(s);
        ASSERT_TRUE(st->n_transactions >= 1 && st->n_transactions <= 2);
        ASSERT_EQ_U(st->n_jobs, N_GROUP + 2);
        ASSERT_TRUE(st->max_jobs_per_transaction >= (N_GROUP + 2) / 2);
        ASSERT_EQ_U(st->n_failed_transactions, 0);

        /* The failing job's own write was rolled back; everything else stayed. */
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM config WHERE key = 'failing-job'"), 0);
        ASSERT_EQ(count_receipts(e.path), N_GROUP);
        ASSERT_EQ_U(store_get_counters(s)->pending, N_GROUP);
        store_free(s);
        sem_destroy(&gate);
        assert_db_healthy(e.path);
        env_teardown(&e);
}

static void test_failed_commit_fails_every_job_of_the_group(void) {
        Submitted a = {}, b = {}, later;
        Done gate_done = {}, orphan = {};
        StoreReceiptNew ra = receipt_new("commit-a", "h"), rb = receipt_new("commit-b", "h");
        sem_t gate;
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        ASSERT_OK(sem_init(&gate, 0, 0));

        ASSERT_OK(store_write(s, job_wait_gate, &gate, on_done, &gate_done));
        ASSERT_OK(store_submit_receipt(s, &ra, on_submit, &a));
        ASSERT_OK(store_write(s, job_orphan_key_at_commit, NULL, on_done, &orphan));
        ASSERT_OK(store_submit_receipt(s, &rb, on_submit, &b));
        ASSERT_OK(sem_post(&gate));
        run_until_idle(&e, s);

        /* Nothing of that group was acknowledged. */
        ASSERT_TRUE(a.done && b.done && orphan.done);
        ASSERT_TRUE(a.error < 0);
        ASSERT_TRUE(b.error < 0);
        ASSERT_TRUE(orphan.result < 0);
        ASSERT_FALSE(a.have_receipt);
        ASSERT_EQ_U(store_get_stats(s)->n_failed_transactions, 1);
        ASSERT_EQ(count_receipts(e.path), 0);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM idempotency_keys"), 0);
        ASSERT_EQ_U(store_get_counters(s)->pending, 0);

        /* The writer rolled back and carries on. */
        submit_ok(&e, s, "commit-a", "h", &later);
        ASSERT_EQ(later.outcome, STORE_SUBMIT_CREATED);
        ASSERT_EQ(count_receipts(e.path), 1);
        store_free(s);
        sem_destroy(&gate);
        assert_db_healthy(e.path);
        env_teardown(&e);
}

static void test_job_error_that_ends_the_transaction_fails_the_whole_group(void) {
        Submitted a = {}, b = {}, later;
        Done gate_done = {}, breaker = {};
        StoreReceiptNew ra = receipt_new("gone-a", "h"), rb = receipt_new("gone-b", "h");
        sem_t gate;
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        ASSERT_OK(sem_init(&gate, 0, 0));

        ASSERT_OK(store_write(s, job_wait_gate, &gate, on_done, &gate_done));
        ASSERT_OK(store_submit_receipt(s, &ra, on_submit, &a));
        ASSERT_OK(store_write(s, job_rollback_everything, NULL, on_done, &breaker));
        ASSERT_OK(store_submit_receipt(s, &rb, on_submit, &b));
        ASSERT_OK(sem_post(&gate));
        run_until_idle(&e, s);

        /* Every job of the group reports the error that took the transaction down. */
        ASSERT_ERROR(breaker.result, ENOSPC);
        ASSERT_ERROR(a.error, ENOSPC);
        ASSERT_ERROR(b.error, ENOSPC);
        ASSERT_EQ(count_receipts(e.path), 0);
        ASSERT_EQ_U(store_get_counters(s)->pending, 0);

        submit_ok(&e, s, "gone-a", "h", &later);
        ASSERT_EQ(later.outcome, STORE_SUBMIT_CREATED);
        store_free(s);
        sem_destroy(&gate);
        assert_db_healthy(e.path);
        env_teardown(&e);
}

static void test_disk_full_fails_submit_with_enospc_and_stores_nothing(void) {
        static char big[256 * 1024];
        int64_t limit = 0, unlimited = -1;
        Submitted x = {}, later;
        Done d = {};
        StoreReceiptNew r = receipt_new("big", "h");
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);

        /* The file may not grow any more, as on a full disk. */
        ASSERT_OK(store_write(s, job_set_max_pages, &limit, on_done, &d));
        run_until_idle(&e, s);
        ASSERT_OK(d.result);

        memset(big, 'x', sizeof big - 1);
        r.receipt_data = big;
        ASSERT_OK(store_submit_receipt(s, &r, on_submit, &x));
        run_until_idle(&e, s);
        ASSERT_ERROR(x.error, ENOSPC);
        ASSERT_FALSE(x.have_receipt);
        ASSERT_EQ(count_receipts(e.path), 0);
        ASSERT_EQ_U(store_get_counters(s)->pending, 0);

        d = (Done) {};
        ASSERT_OK(store_write(s, job_set_max_pages, &unlimited, on_done, &d));
        run_until_idle(&e, s);
        submit_ok(&e, s, "big", "h", &later);
        ASSERT_EQ(later.outcome, STORE_SUBMIT_CREATED);
        store_free(s);
        assert_db_healthy(e.path);
        env_teardown(&e);
}

static void test_reopen_keeps_receipts_counters_and_hlc_monotonic(void) {
        Submitted x[10], next;
        StoreCounters counters;
        char key[32];
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        for (unsigned i = 0; i < 10; i++) {
                snprintf(key, sizeof key, "reopen-%u", i);
                submit_ok(&e, s, key, "h", &x[i]);
        }
        ASSERT_OK(mark_printed_sync(&e, s, x[0].id, "{}"));
        ASSERT_OK(mark_synced_sync(&e, s, x[0].id, "{}"));
        counters = *store_get_counters(s);
        ASSERT_EQ_U(counters.pending, 9);
        ASSERT_EQ_U(counters.synced, 1);
        ASSERT_EQ_U(counters.total, 10);
        store_free(s);

        s = store_open_ok(&e, 0);
        ASSERT_EQ(memcmp(store_get_counters(s), &counters, sizeof counters), 0);
        for (unsigned i = 0; i < 10; i++) {
                get_receipt(&e, s, x[i].id, &g);
                ASSERT_OK(g.error);
                ASSERT_EQ_U(g.r.hlc, x[i].hlc);
                store_receipt_done(&g.r);
        }
        submit_ok(&e, s, "reopen-new", "h", &next);
        ASSERT_TRUE(next.hlc > x[9].hlc);
        submit_ok(&e, s, "reopen-0", "h", &next);
        ASSERT_EQ(next.outcome, STORE_SUBMIT_REPLAY); /* keys survive a restart */
        store_free(s);
        assert_db_healthy(e.path);
        env_teardown(&e);
}

static void test_reopen_after_clock_stepped_back_stamps_above_persisted_hlc(void) {
        Submitted x;
        uint64_t future = hlc_make(now(CLOCK_REALTIME) / USEC_PER_MSEC + 3600 * 1000, 7);
        char sql[128];
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        store_free(s);

        /* As if the last run stamped with a clock an hour ahead of today's. */
        snprintf(sql, sizeof sql, "UPDATE config SET value = '%" PRIu64 "' WHERE key = 'hlc_last'", future);
        db_exec(e.path, sql);

        s = store_open_ok(&e, 0);
        submit_ok(&e, s, "after-step", "h", &x);
        ASSERT_EQ_U(x.hlc, future + 1);
        store_free(s);

        /* Without the config row, the stamps on disk are enough. */
        snprintf(sql, sizeof sql, "UPDATE receipts SET hlc = %" PRIu64 "; DELETE FROM config;",
                 future + 100);
        db_exec(e.path, sql);
        s = store_open_ok(&e, 0);
        submit_ok(&e, s, "after-step-2", "h", &x);
        ASSERT_EQ_U(x.hlc, future + 101);
        store_free(s);
        env_teardown(&e);
}

static int prune_synced_sync(Env *e, Store *s) {
        SyncStorePrune p = { .cutoff = now(CLOCK_REALTIME) + USEC_PER_HOUR, .limit = 500 };
        Done d = {};

        ASSERT_OK(store_write(s, sync_store_prune_synced, &p, on_done, &d));
        run_until_idle(e, s);
        return d.result;
}

/* Retention takes the keys with their receipts, from the file and from the index in memory, and writes
 * the clock down first: the stamps never go back, even when every receipt is gone. */
static void test_retention_forgets_keys_and_keeps_the_clock(void) {
        Submitted a, b, again;
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        submit_ok(&e, s, "pruned-key", "h", &a);
        submit_ok(&e, s, "kept-key", "h", &b);
        ASSERT_OK(mark_printed_sync(&e, s, a.id, "{\"fd\":1}"));
        ASSERT_OK(mark_synced_sync(&e, s, a.id, NULL));

        ASSERT_EQ(prune_synced_sync(&e, s), 1);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM idempotency_keys WHERE key = 'pruned-key'"), 0);
        ASSERT_EQ(db_int(e.path, "SELECT CAST(value AS INTEGER) FROM config WHERE key = 'hlc_last'"),
                  (int64_t) b.hlc);

        /* The pruned key is new again; the other one still replays. */
        submit_ok(&e, s, "pruned-key", "other-hash", &again);
        ASSERT_EQ(again.outcome, STORE_SUBMIT_CREATED);
        ASSERT_FALSE(streq(again.id, a.id));
        submit_ok(&e, s, "kept-key", "h", &again);
        ASSERT_EQ(again.outcome, STORE_SUBMIT_REPLAY);
        store_free(s);

        /* Every receipt gone, the clock an hour ahead of the wall clock when it stamped them. */
        uint64_t future = hlc_make(now(CLOCK_REALTIME) / USEC_PER_MSEC + 3600 * 1000, 0);
        char sql[160];

        snprintf(sql, sizeof sql, "UPDATE receipts SET hlc = %" PRIu64 " + rowid, status = 'synced', "
                 "print_status = 'printed', synced_at = created_at", future);
        db_exec(e.path, sql);
        int64_t newest = db_int(e.path, "SELECT MAX(hlc) FROM receipts");
        ASSERT_TRUE(newest > (int64_t) future);
        s = store_open_ok(&e, 0);
        ASSERT_EQ(prune_synced_sync(&e, s), 2);
        ASSERT_EQ(count_receipts(e.path), 0);
        ASSERT_EQ_U(store_get_counters(s)->total, 0);
        store_free(s);

        s = store_open_ok(&e, 0);
        submit_ok(&e, s, "after-everything-pruned", "h", &again);
        ASSERT_TRUE(again.hlc > (uint64_t) newest);
        store_free(s);
        assert_db_healthy(e.path);
        env_teardown(&e);
}

static void test_corrupt_file_fails_with_ebadmsg(void) {
        char garbage[16384];
        Env e;
        Store *s = NULL;
        Submitted x;
        int fd;

        env_setup(&e);

        /* Not a database at all. */
        for (size_t i = 0; i < sizeof garbage; i++)
                garbage[i] = (char) (i * 7919 % 251);
        fd = open(e.path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
        ASSERT_OK(fd);
        ASSERT_EQ(write(fd, garbage, sizeof garbage), (ssize_t) sizeof garbage);
        close(fd);
        ASSERT_ERROR(store_open(&s, e.event, e.path, NULL), EBADMSG);
        ASSERT_NULL(s);
        ASSERT_OK(unlink(e.path));

        /* A database whose pages after the header were overwritten. */
        s = store_open_ok(&e, 0);
        for (unsigned i = 0; i < 20; i++) {
                char key[16];
                snprintf(key, sizeof key, "c-%u", i);
                submit_ok(&e, s, key, "h", &x);
        }
        s = store_free(s);
        fd = open(e.path, O_WRONLY | O_CLOEXEC);
        ASSERT_OK(fd);
        ASSERT_EQ(pwrite(fd, garbage, sizeof garbage, 4096), (ssize_t) sizeof garbage);
        close(fd);
        ASSERT_ERROR(store_open(&s, e.event, e.path, NULL), EBADMSG);
        ASSERT_NULL(s);
        env_teardown(&e);
}

static void test_newer_schema_version_fails_with_eproto(void) {
        Store *s = NULL;
        char sql[96];
        Env e;

        env_setup(&e);

        snprintf(sql, sizeof sql, "CREATE TABLE future (x); PRAGMA user_version = %i;", STORE_SCHEMA_VERSION + 1);
        db_exec(e.path, sql);
        ASSERT_ERROR(store_open(&s, e.event, e.path, NULL), EPROTO);
        ASSERT_NULL(s);
        /* Left as it was. */
        ASSERT_EQ(db_int(e.path, "PRAGMA user_version"), STORE_SCHEMA_VERSION + 1);
        assert_db_text(e.path, "PRAGMA journal_mode", "delete");
        env_teardown(&e);
}

static void test_unopenable_path_fails_with_errno(void) {
        char path[PATH_MAX + 32];
        Env e;
        Store *s = NULL;

        env_setup(&e);
        snprintf(path, sizeof path, "%s/no-such-dir/buffer.db", e.dir);
        ASSERT_ERROR(store_open(&s, e.event, path, NULL), ENOENT);
        ASSERT_NULL(s);

        /* A directory where the file should be. */
        ASSERT_OK(mkdir(e.path, 0700));
        ASSERT_ERROR(store_open(&s, e.event, e.path, NULL), EISDIR);
        ASSERT_NULL(s);
        ASSERT_OK(rmdir(e.path));
        env_teardown(&e);
}

static void test_get_receipt_unknown_is_enoent_and_known_returns_all_fields(void) {
        Submitted x;
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);

        get_receipt(&e, s, "00000000-0000-4000-8000-000000000000", &g);
        ASSERT_ERROR(g.error, ENOENT);

        submit_ok(&e, s, "get-1", "h", &x);
        get_receipt(&e, s, x.id, &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.id, x.id);
        ASSERT_STREQ(g.r.pos_id, "pos-7");
        ASSERT_STREQ(g.r.receipt_type, "sale");
        ASSERT_EQ(g.r.total_kopecks, 12345);
        ASSERT_STREQ(g.r.receipt_data, receipt_new("", "").receipt_data);
        ASSERT_EQ(g.r.status, STORE_STATUS_PENDING);
        ASSERT_EQ(g.r.print_status, STORE_PRINT_UNPRINTED);
        ASSERT_EQ_U(g.r.hlc, x.hlc);
        ASSERT_STREQ(g.r.created_at, x.created_at);
        ASSERT_STREQ(g.r.updated_at, x.created_at);
        ASSERT_NULL(g.r.printed_at);
        ASSERT_NULL(g.r.synced_at);
        ASSERT_NULL(g.r.fiscal_doc);
        ASSERT_NULL(g.r.last_error);
        ASSERT_EQ(g.r.attempts, 0);
        store_receipt_done(&g.r);
        store_free(s);
        env_teardown(&e);
}

static void test_mark_printed_then_synced_moves_states_and_counters(void) {
        usec_t printed_at = UINT64_C(1795922246123) * USEC_PER_MSEC;
        Submitted x;
        Done d = {};
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        submit_ok(&e, s, "mark-1", "h", &x);

        ASSERT_ERROR(mark_printed_sync(&e, s, "unknown", "{}"), ENOENT);
        ASSERT_ERROR(mark_synced_sync(&e, s, "unknown", NULL), ENOENT);
        /* Never to the OFD without fiscal attributes. */
        ASSERT_ERROR(mark_synced_sync(&e, s, x.id, NULL), EPERM);

        ASSERT_OK(store_mark_printed(s, x.id, "{\"fd\":42}", printed_at, on_done, &d));
        run_until_idle(&e, s);
        ASSERT_OK(d.result);
        /* A fiscal document is never overwritten. */
        ASSERT_ERROR(mark_printed_sync(&e, s, x.id, "{\"fd\":43}"), EALREADY);
        ASSERT_EQ_U(store_get_counters(s)->pending, 1);

        ASSERT_OK(mark_synced_sync(&e, s, x.id, "{\"ofd\":\"ok\"}"));
        ASSERT_EQ_U(store_get_counters(s)->pending, 0);
        ASSERT_EQ_U(store_get_counters(s)->synced, 1);
        ASSERT_ERROR(mark_synced_sync(&e, s, x.id, NULL), EALREADY);

        get_receipt(&e, s, x.id, &g);
        ASSERT_OK(g.error);
        ASSERT_EQ(g.r.status, STORE_STATUS_SYNCED);
        ASSERT_EQ(g.r.print_status, STORE_PRINT_PRINTED);
        ASSERT_STREQ(g.r.fiscal_doc, "{\"fd\":42}");
        ASSERT_STREQ(g.r.printed_at, "2026-11-29T03:17:26.123Z");
        ASSERT_STREQ(g.r.ofd_response, "{\"ofd\":\"ok\"}");
        ASSERT_NOT_NULL(g.r.synced_at);
        store_receipt_done(&g.r);
        store_free(s);

        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM buffer_events WHERE event IN ('printed', 'synced')"),
                  2);
        db_exec(e.path, "UPDATE receipts SET status = 'dlq'");
        s = store_open_ok(&e, 0);
        ASSERT_EQ_U(store_get_counters(s)->dlq, 1);
        ASSERT_EQ_U(store_get_counters(s)->synced, 0);
        ASSERT_ERROR(mark_synced_sync(&e, s, x.id, NULL), ESTALE);
        store_free(s);
        env_teardown(&e);
}

static void test_oldest_unsynced_follows_the_oldest_receipt_the_ofd_has_not_acknowledged(void) {
        usec_t before, after, t2026 = UINT64_C(1767225600) * USEC_PER_SEC; /* 2026-01-01T00:00:00Z */
        Submitted a, b;
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        ASSERT_EQ_U(store_get_counters(s)->oldest_unsynced, 0);

        before = now(CLOCK_REALTIME);
        submit_ok(&e, s, "old-a", "h", &a);
        submit_ok(&e, s, "old-b", "h", &b);
        after = now(CLOCK_REALTIME);
        /* created_at keeps milliseconds. */
        ASSERT_TRUE(store_get_counters(s)->oldest_unsynced + USEC_PER_MSEC >= before);
        ASSERT_TRUE(store_get_counters(s)->oldest_unsynced <= after);
        store_free(s);

        /* What the file says counts, after a restart too; the prototype's form of created_at is read. */
        db_exec(e.path, "UPDATE receipts SET created_at = '2026-01-01 00:00:00' WHERE id = (SELECT id FROM "
                        "receipts ORDER BY hlc LIMIT 1)");
        s = store_open_ok(&e, 0);
        ASSERT_EQ_U(store_get_counters(s)->oldest_unsynced, t2026);

        /* Acknowledged by the OFD: the next one is the oldest, and the commit that synced it says so. */
        ASSERT_OK(mark_printed_sync(&e, s, a.id, "{\"fd\":1}"));
        ASSERT_EQ_U(store_get_counters(s)->oldest_unsynced, t2026);
        ASSERT_OK(mark_synced_sync(&e, s, a.id, NULL));
        ASSERT_TRUE(store_get_counters(s)->oldest_unsynced > t2026);
        ASSERT_TRUE(store_get_counters(s)->oldest_unsynced <= after);
        store_free(s);

        /* failed counts (it is retried); the DLQ and cancelled receipts do not. */
        db_exec(e.path, "UPDATE receipts SET status = 'failed', created_at = '2026-01-01T00:00:00.500Z' "
                        "WHERE status = 'pending'");
        s = store_open_ok(&e, 0);
        ASSERT_EQ_U(store_get_counters(s)->oldest_unsynced, t2026 + 500 * USEC_PER_MSEC);
        store_free(s);
        db_exec(e.path, "UPDATE receipts SET status = 'dlq' WHERE status = 'failed'");
        s = store_open_ok(&e, 0);
        ASSERT_EQ_U(store_get_counters(s)->oldest_unsynced, 0);
        store_free(s);

        /* Two lookups in the status index, not a scan of the buffer, for every group commit. */
        assert_plan(e.path, "SELECT created_at, hlc FROM receipts WHERE status = ? ORDER BY hlc LIMIT 1",
                    "SEARCH receipts USING INDEX idx_receipts_status_hlc (status=?)");
        env_teardown(&e);
}

static void test_store_read_runs_on_the_reader_and_cannot_write(void) {
        Submitted x;
        Done d = {}, w = {};
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        submit_ok(&e, s, "read-1", "h", &x);
        submit_ok(&e, s, "read-2", "h", &x);

        ASSERT_OK(store_read(s, job_count_pending, (void *) "pending", on_done, &d));
        ASSERT_OK(store_read(s, job_write_to_reader, NULL, on_done, &w));
        run_until_idle(&e, s);
        ASSERT_EQ(d.result, 2);
        ASSERT_ERROR(w.result, EROFS);

        /* The same function, on the writer, in a group transaction. */
        d = (Done) {};
        ASSERT_OK(store_write(s, job_count_pending, (void *) "pending", on_done, &d));
        run_until_idle(&e, s);
        ASSERT_EQ(d.result, 2);
        store_free(s);
        env_teardown(&e);
}

static void test_free_finishes_queued_jobs_and_runs_their_callbacks(void) {
        Submitted x[20] = {};
        char keys[20][16];
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        for (unsigned i = 0; i < 20; i++) {
                StoreReceiptNew r;
                snprintf(keys[i], sizeof keys[i], "free-%u", i);
                r = receipt_new(keys[i], "h");
                ASSERT_OK(store_submit_receipt(s, &r, on_submit, &x[i]));
        }
        store_free(s);

        for (unsigned i = 0; i < 20; i++) {
                ASSERT_TRUE(x[i].done);
                ASSERT_OK(x[i].error);
                ASSERT_EQ(x[i].outcome, STORE_SUBMIT_CREATED);
        }
        ASSERT_EQ(count_receipts(e.path), 20);

        s = store_open_ok(&e, 0);
        ASSERT_EQ_U(store_get_counters(s)->pending, 20);
        store_free(s);
        assert_db_healthy(e.path);
        env_teardown(&e);
}

static unsigned idle_calls;

static void on_idle(Store *s, void *userdata) {
        ASSERT_TRUE(store_is_idle(s));
        idle_calls++;
}

static void test_idle_callback_runs_when_the_last_job_completes(void) {
        StoreReceiptNew r1 = receipt_new("idle-1", "h"), r2 = receipt_new("idle-2", "h");
        Submitted a = {}, b = {};
        Got g = {};
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        ASSERT_TRUE(store_is_idle(s));
        store_set_idle_callback(s, on_idle, NULL);

        ASSERT_OK(store_submit_receipt(s, &r1, on_submit, &a));
        ASSERT_OK(store_submit_receipt(s, &r2, on_submit, &b));
        ASSERT_OK(store_get_receipt(s, "nothing", on_get, &g));
        ASSERT_FALSE(store_is_idle(s));
        run_until_idle(&e, s);
        ASSERT_TRUE(a.done && b.done && g.done);
        ASSERT_EQ(idle_calls, 1);
        store_free(s);
        env_teardown(&e);
}

static void test_status_names_round_trip(void) {
        for (StoreStatus i = 0; i < _STORE_STATUS_MAX; i++)
                ASSERT_EQ(store_status_from_string(store_status_to_string(i)), i);
        for (StorePrintStatus i = 0; i < _STORE_PRINT_MAX; i++)
                ASSERT_EQ(store_print_status_from_string(store_print_status_to_string(i)), i);
        ASSERT_STREQ(store_print_status_to_string(STORE_PRINT_FAILED), "print_failed");
        ASSERT_EQ(store_status_from_string("bogus"), _STORE_STATUS_INVALID);
        ASSERT_NULL(store_status_to_string(_STORE_STATUS_MAX));
        ASSERT_STREQ(store_submit_outcome_to_string(STORE_SUBMIT_KEY_MISMATCH), "key-mismatch");
        ASSERT_STREQ(store_status_to_string(STORE_STATUS_CANCELLED), "cancelled");
        ASSERT_STREQ(store_print_status_to_string(STORE_PRINT_REJECTED), "print_rejected");
        ASSERT_EQ(store_status_from_string("cancelled"), STORE_STATUS_CANCELLED);
        ASSERT_EQ(store_print_status_from_string("print_rejected"), STORE_PRINT_REJECTED);
        for (StoreSubmitOutcome o = 0; o < _STORE_SUBMIT_OUTCOME_MAX; o++)
                ASSERT_NOT_NULL(store_submit_outcome_to_string(o));
        ASSERT_STREQ(store_submit_outcome_to_string(STORE_SUBMIT_REFUND_EXCEEDS), "refund-exceeds");
        for (StoreSynchronous i = 0; i < _STORE_SYNCHRONOUS_MAX; i++)
                ASSERT_EQ(store_synchronous_from_string(store_synchronous_to_string(i)), i);
        ASSERT_STREQ(store_synchronous_to_string(STORE_SYNCHRONOUS_OFF), "off");
        ASSERT_EQ(store_synchronous_from_string("sometimes"), _STORE_SYNCHRONOUS_INVALID);
        ASSERT_EQ(store_synchronous_from_string(NULL), _STORE_SYNCHRONOUS_INVALID);
}

/* ---- returns, their originals, and the print rejections an admin resolves ---- */

static int set_print_rejected_sync(Env *e, Store *s, const char *id, const char *reason) {
        Done d = {};

        ASSERT_OK(store_set_print_rejected(s, id, reason, on_done, &d));
        run_until_idle(e, s);
        ASSERT_TRUE(d.done);
        return d.result;
}

static void resolve_sync(Env *e, Store *s, const char *ref, Got *ret) {
        *ret = (Got) {};
        ASSERT_OK(store_resolve_receipt(s, ref, on_get, ret));
        run_until_idle(e, s);
        ASSERT_TRUE(ret->done);
}

static void retry_print_sync(Env *e, Store *s, const char *id, const char *who, Got *ret) {
        *ret = (Got) {};
        ASSERT_OK(store_retry_print(s, id, who, on_get, ret));
        run_until_idle(e, s);
        ASSERT_TRUE(ret->done);
}

static void cancel_sync(Env *e, Store *s, const char *id, const char *note, const char *who, Got *ret) {
        *ret = (Got) {};
        ASSERT_OK(store_cancel_receipt(s, id, note, who, on_get, ret));
        run_until_idle(e, s);
        ASSERT_TRUE(ret->done);
}

static StoreReceiptNew return_new(const char *key, const char *original, int64_t total) {
        StoreReceiptNew r = receipt_new(key, "h");

        r.type = "refund";
        r.total_kopecks = total;
        r.original = original;
        r.original_type = "sale";
        return r;
}

static void submit_return(Env *e, Store *s, const StoreReceiptNew *r, Submitted *ret) {
        *ret = (Submitted) {};
        ASSERT_OK(store_submit_receipt(s, r, on_submit, ret));
        run_until_idle(e, s);
        ASSERT_TRUE(ret->done);
        ASSERT_OK(ret->error);
}

/* A sale of 12345 kopecks, printed with fiscal document number `fd` (0: not printed). */
static void sale_ok(Env *e, Store *s, const char *key, uint32_t fd, Submitted *ret) {
        char doc[96];

        submit_ok(e, s, key, "h", ret);
        ASSERT_EQ(ret->outcome, STORE_SUBMIT_CREATED);
        if (fd == 0)
                return;
        snprintf(doc, sizeof doc, "{\"fiscal_document_number\":%" PRIu32 ",\"fiscal_sign\":\"42\"}", fd);
        ASSERT_OK(mark_printed_sync(e, s, ret->id, doc));
}

static int64_t count_rows(const char *path, const char *table, const char *where_id_is, const char *id) {
        char sql[256];

        snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s WHERE %s = '%s'", table, where_id_is, id);
        return db_int(path, sql);
}

static void test_mark_printed_keeps_the_fiscal_document_number_of_the_document(void) {
        static const struct {
                const char *doc;
                uint32_t fd;
        } docs[] = {
                { "{\"fiscal_document_number\":4294967295}", UINT32_MAX },
                { "{\"fiscal_document_number\":1,\"fiscal_sign\":\"7\"}", 1 },
                { "{\"fiscal_document_number\":\"12\"}", 0 },         /* text */
                { "{\"fiscal_document_number\":0}", 0 },              /* never a document's */
                { "{\"fiscal_document_number\":4294967296}", 0 },     /* past 32 bits */
                { "{\"fiscal_document_number\":true}", 0 },
                { "{\"fd\":12}", 0 },
                { "not json at all", 0 },                             /* stored all the same */
        };
        char key[32], sql[160];
        Submitted x;
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        for (size_t i = 0; i < ELEMENTSOF(docs); i++) {
                snprintf(key, sizeof key, "fd-%zu", i);
                submit_ok(&e, s, key, "h", &x);
                ASSERT_OK(mark_printed_sync(&e, s, x.id, docs[i].doc));
                get_receipt(&e, s, x.id, &g);
                ASSERT_OK(g.error);
                ASSERT_EQ(g.r.print_status, STORE_PRINT_PRINTED);
                ASSERT_STREQ(g.r.fiscal_doc, docs[i].doc);
                ASSERT_EQ_U(g.r.fiscal_document_number, docs[i].fd);
                ASSERT_NULL(g.r.original_id);
                store_receipt_done(&g.r);
                snprintf(sql, sizeof sql,
                         "SELECT fiscal_document_number IS NULL FROM receipts WHERE id = '%s'", x.id);
                ASSERT_EQ(db_int(e.path, sql), docs[i].fd == 0);
        }
        store_free(s);
        env_teardown(&e);
}

static void test_resolve_finds_by_id_then_key_then_newest_fiscal_document_number(void) {
        Submitted s1, s2, s3, digits, ret;
        StoreReceiptNew r;
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        sale_ok(&e, s, "sale-1", 501, &s1);
        sale_ok(&e, s, "sale-2", 502, &s2);

        resolve_sync(&e, s, s1.id, &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.id, s1.id);
        ASSERT_EQ_U(g.r.fiscal_document_number, 501);
        ASSERT_EQ(g.r.refunded_kopecks, 0);
        ASSERT_STREQ(g.r.receipt_data, receipt_new("", "").receipt_data);
        store_receipt_done(&g.r);
        resolve_sync(&e, s, "sale-2", &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.id, s2.id);
        store_receipt_done(&g.r);
        resolve_sync(&e, s, "501", &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.id, s1.id);
        store_receipt_done(&g.r);
        resolve_sync(&e, s, "000502", &g); /* the digits' value */
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.id, s2.id);
        store_receipt_done(&g.r);

        /* A new fiscal storage numbers from 1 again: the newest receipt with the number. */
        sale_ok(&e, s, "sale-3", 501, &s3);
        resolve_sync(&e, s, "501", &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.id, s3.id);
        store_receipt_done(&g.r);

        /* A key of digits is a key first. */
        sale_ok(&e, s, "502", 0, &digits);
        resolve_sync(&e, s, "502", &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.id, digits.id);
        store_receipt_done(&g.r);

        /* With what its returns add up to. */
        r = return_new("ret-1", s1.id, 300);
        submit_return(&e, s, &r, &ret);
        ASSERT_EQ(ret.outcome, STORE_SUBMIT_CREATED);
        resolve_sync(&e, s, "sale-1", &g);
        ASSERT_OK(g.error);
        ASSERT_EQ(g.r.refunded_kopecks, 300);
        store_receipt_done(&g.r);

        static const char *const unknown[] = { "no-such-thing", "999", "0", "4294967296", "", "12a" };
        for (size_t i = 0; i < ELEMENTSOF(unknown); i++) {
                resolve_sync(&e, s, unknown[i], &g);
                ASSERT_ERROR(g.error, ENOENT);
        }
        store_free(s);

        /* The lookups use the partial indexes, not a scan (nor a sort). */
        assert_plan(e.path,
                    "SELECT id FROM receipts WHERE fiscal_document_number = ? ORDER BY hlc DESC LIMIT 1",
                    "SEARCH receipts USING INDEX idx_receipts_fiscal_document_number (fiscal_document_number=?)");
        assert_plan(e.path,
                    "SELECT SUM(total_kopecks) FROM receipts WHERE original_id = ? AND status <> 'cancelled'",
                    "SEARCH receipts USING INDEX idx_receipts_original_id (original_id=?)");
        /* Sales are in neither. */
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM receipts WHERE original_id IS NOT NULL"), 1);
        env_teardown(&e);
}

static void test_return_within_the_original_total_is_accepted_and_linked(void) {
        Submitted sale, ret, replay;
        StoreReceiptNew r;
        char sql[160];
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        sale_ok(&e, s, "sale", 77, &sale);

        /* Named by its key... */
        r = return_new("ret-by-key", "sale", 5000);
        submit_return(&e, s, &r, &ret);
        ASSERT_EQ(ret.outcome, STORE_SUBMIT_CREATED);
        ASSERT_STREQ(ret.original_id, sale.id);
        ASSERT_STREQ(ret.receipt_type, "refund");
        ASSERT_EQ(ret.total_kopecks, 5000);
        get_receipt(&e, s, ret.id, &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.original_id, sale.id);
        store_receipt_done(&g.r);
        snprintf(sql, sizeof sql, "SELECT original_id FROM receipts WHERE id = '%s'", ret.id);
        assert_db_text(e.path, sql, sale.id);

        /* ...by its fiscal document number, and by id, up to exactly what is left. */
        r = return_new("ret-by-fd", "77", 4000);
        submit_return(&e, s, &r, &ret);
        ASSERT_EQ(ret.outcome, STORE_SUBMIT_CREATED);
        ASSERT_STREQ(ret.original_id, sale.id);
        r = return_new("ret-by-id", sale.id, 12345 - 9000);
        submit_return(&e, s, &r, &ret);
        ASSERT_EQ(ret.outcome, STORE_SUBMIT_CREATED);
        ASSERT_EQ_U(store_get_counters(s)->pending, 4);

        /* A replay is a replay, though the original has nothing left now. */
        r = return_new("ret-by-key", "sale", 5000);
        submit_return(&e, s, &r, &replay);
        ASSERT_EQ(replay.outcome, STORE_SUBMIT_REPLAY);
        ASSERT_STREQ(replay.original_id, sale.id);
        store_free(s);
        ASSERT_EQ(db_int(e.path, "SELECT SUM(total_kopecks) FROM receipts WHERE receipt_type = 'refund'"), 12345);
        assert_db_healthy(e.path);
        env_teardown(&e);
}

static void test_return_beyond_what_is_left_is_refused_with_the_refunded_sum(void) {
        Submitted sale, ret, refused;
        StoreReceiptNew r;
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        sale_ok(&e, s, "sale", 0, &sale);
        r = return_new("ret-1", "sale", 5000);
        submit_return(&e, s, &r, &ret);
        ASSERT_EQ(ret.outcome, STORE_SUBMIT_CREATED);

        r = return_new("ret-2", "sale", 12345 - 5000 + 1);
        submit_return(&e, s, &r, &refused);
        ASSERT_EQ(refused.outcome, STORE_SUBMIT_REFUND_EXCEEDS);
        ASSERT_TRUE(refused.have_receipt);
        ASSERT_STREQ(refused.id, sale.id); /* the original... */
        ASSERT_EQ(refused.total_kopecks, 12345);
        ASSERT_EQ(refused.refunded_kopecks, 5000); /* ...and what was returned of it */
        /* Nothing of the refused one was kept: not the row, not its key, not an event. */
        ASSERT_EQ(count_receipts(e.path), 2);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM idempotency_keys WHERE key = 'ret-2'"), 0);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM buffer_events"), 2);

        /* The key was not taken: the same key with what is left goes through. */
        r = return_new("ret-2", "sale", 12345 - 5000);
        submit_return(&e, s, &r, &ret);
        ASSERT_EQ(ret.outcome, STORE_SUBMIT_CREATED);
        r = return_new("ret-3", "sale", 1);
        submit_return(&e, s, &r, &refused);
        ASSERT_EQ(refused.outcome, STORE_SUBMIT_REFUND_EXCEEDS);
        ASSERT_EQ(refused.refunded_kopecks, 12345);
        store_free(s);
        env_teardown(&e);
}

static void test_two_returns_in_one_group_commit_where_only_one_fits(void) {
        Submitted sale, a = {}, b = {};
        StoreReceiptNew ra, rb;
        uint64_t transactions;
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        sale_ok(&e, s, "sale", 0, &sale);
        transactions = store_get_stats(s)->n_transactions;

        /* Queued in one loop iteration: one group, one transaction. */
        ra = return_new("ret-a", "sale", 7000);
        rb = return_new("ret-b", sale.id, 7000);
        ASSERT_OK(store_submit_receipt(s, &ra, on_submit, &a));
        ASSERT_OK(store_submit_receipt(s, &rb, on_submit, &b));
        run_until_idle(&e, s);
        ASSERT_EQ_U(store_get_stats(s)->n_transactions, transactions + 1);
        ASSERT_TRUE(store_get_stats(s)->max_jobs_per_transaction >= 2);

        ASSERT_OK(a.error);
        ASSERT_OK(b.error);
        ASSERT_EQ(a.outcome, STORE_SUBMIT_CREATED);
        ASSERT_EQ(b.outcome, STORE_SUBMIT_REFUND_EXCEEDS);
        ASSERT_EQ(b.refunded_kopecks, 7000);
        ASSERT_STREQ(b.id, sale.id);
        store_free(s);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM receipts WHERE original_id IS NOT NULL"), 1);
        env_teardown(&e);
}

static void test_return_of_unknown_original_inserts_nothing(void) {
        Submitted x;
        StoreReceiptNew r = return_new("ret", "no-such-original", 100);
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        submit_return(&e, s, &r, &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_ORIGINAL_UNKNOWN);
        ASSERT_FALSE(x.have_receipt);
        ASSERT_EQ_U(store_get_counters(s)->total, 0);
        store_free(s);
        ASSERT_EQ(count_receipts(e.path), 0);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM idempotency_keys"), 0);
        env_teardown(&e);
}

static void test_return_of_an_original_of_another_type_or_cancelled_is_a_mismatch(void) {
        Submitted sale, ret, x, y;
        StoreReceiptNew r;
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        sale_ok(&e, s, "sale", 0, &sale);
        r = return_new("ret", "sale", 100);
        submit_return(&e, s, &r, &ret);
        ASSERT_EQ(ret.outcome, STORE_SUBMIT_CREATED);

        /* A return of a return. */
        r = return_new("ret-of-ret", ret.id, 50);
        submit_return(&e, s, &r, &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_ORIGINAL_MISMATCH);
        ASSERT_STREQ(x.id, ret.id);
        ASSERT_STREQ(x.receipt_type, "refund");
        /* A purchase_refund needs a purchase. */
        r = return_new("purchase-ret", "sale", 50);
        r.type = "purchase_refund";
        r.original_type = "purchase";
        submit_return(&e, s, &r, &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_ORIGINAL_MISMATCH);
        ASSERT_STREQ(x.id, sale.id);
        /* Without original_type, any type will do. */
        r = return_new("any-type", "sale", 50);
        r.original_type = NULL;
        submit_return(&e, s, &r, &y);
        ASSERT_EQ(y.outcome, STORE_SUBMIT_CREATED);

        /* A cancelled original. */
        ASSERT_OK(set_print_rejected_sync(&e, s, sale.id, "rejected"));
        cancel_sync(&e, s, sale.id, NULL, "admin", &g);
        ASSERT_OK(g.error);
        store_receipt_done(&g.r);
        r = return_new("ret-of-cancelled", "sale", 10);
        submit_return(&e, s, &r, &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_ORIGINAL_MISMATCH);
        ASSERT_STREQ(x.id, sale.id);
        ASSERT_EQ(x.status, STORE_STATUS_CANCELLED);
        ASSERT_EQ(x.refunded_kopecks, 150);
        store_free(s);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM receipts WHERE original_id IS NOT NULL"), 2);
        env_teardown(&e);
}

/* CLOCK_REALTIME microseconds of "2026-11-29T03:17:26.123Z". */
static usec_t parse_iso8601(const char *t) {
        struct tm tm = {};
        unsigned ms = 0;

        ASSERT_EQ(sscanf(t, "%d-%d-%dT%d:%d:%d.%3uZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                         &tm.tm_min, &tm.tm_sec, &ms),
                  7);
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        return (usec_t) timegm(&tm) * USEC_PER_SEC + ms * USEC_PER_MSEC;
}

static void test_return_of_an_original_not_created_before_original_before_is_too_new(void) {
        Submitted sale, x;
        StoreReceiptNew r;
        usec_t created;
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        sale_ok(&e, s, "sale", 0, &sale);
        created = parse_iso8601(sale.created_at);

        r = return_new("ret", "sale", 100);
        r.original_before = created - 1;
        submit_return(&e, s, &r, &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_ORIGINAL_TOO_NEW);
        ASSERT_STREQ(x.id, sale.id);
        r.original_before = created; /* not older: the same instant */
        submit_return(&e, s, &r, &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_ORIGINAL_TOO_NEW);
        r.original_before = created + 1;
        submit_return(&e, s, &r, &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_CREATED);
        store_free(s);

        /* A row of the prototype with its own spelling of the time. */
        db_exec(e.path, "UPDATE receipts SET created_at = '2026-11-28 09:00:00.5' WHERE receipt_type = 'sale'");
        s = store_open_ok(&e, 0);
        r = return_new("ret-2", "sale", 100);
        r.original_before = UINT64_C(1795856400500000); /* 2026-11-28T09:00:00.500Z */
        submit_return(&e, s, &r, &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_ORIGINAL_TOO_NEW);
        r.original_before++;
        submit_return(&e, s, &r, &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_CREATED);
        store_free(s);
        env_teardown(&e);
}

static void test_set_print_rejected_counts_the_receipt_and_keeps_it_pending(void) {
        Submitted a, b, c, d;
        StoreCounters counters;
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 3);
        sale_ok(&e, s, "a", 0, &a);
        sale_ok(&e, s, "b", 0, &b);
        ASSERT_OK(set_print_rejected_sync(&e, s, a.id, "FN is full"));
        ASSERT_EQ_U(store_get_counters(s)->print_rejected, 1);
        ASSERT_EQ_U(store_get_counters(s)->pending, 2); /* still needs an admin: still pending */
        ASSERT_EQ_U(store_get_counters(s)->total, 2);

        get_receipt(&e, s, a.id, &g);
        ASSERT_OK(g.error);
        ASSERT_EQ(g.r.status, STORE_STATUS_PENDING);
        ASSERT_EQ(g.r.print_status, STORE_PRINT_REJECTED);
        ASSERT_STREQ(g.r.last_error, "FN is full");
        store_receipt_done(&g.r);
        assert_db_text(e.path,
                       "SELECT json_extract(details, '$.reason') FROM buffer_events "
                       "WHERE event = 'print_rejected'",
                       "FN is full");

        /* From print_failed too; it counts against the capacity like any pending receipt. */
        sale_ok(&e, s, "c", 0, &c);
        db_exec(e.path, "UPDATE receipts SET print_status = 'print_failed' WHERE id IN "
                        "(SELECT id FROM receipts ORDER BY hlc DESC LIMIT 1)");
        ASSERT_OK(set_print_rejected_sync(&e, s, c.id, "wrong VAT"));
        ASSERT_EQ_U(store_get_counters(s)->print_rejected, 2);
        submit_ok(&e, s, "d", "h", &d);
        ASSERT_EQ(d.outcome, STORE_SUBMIT_FULL);

        /* The register cannot print it any more: a fiscal document for it is refused. */
        ASSERT_ERROR(mark_printed_sync(&e, s, a.id, "{\"fiscal_document_number\":1}"), ESTALE);
        ASSERT_ERROR(set_print_rejected_sync(&e, s, a.id, "again"), EALREADY);
        ASSERT_ERROR(set_print_rejected_sync(&e, s, "no-such-receipt", "x"), ENOENT);
        ASSERT_OK(mark_printed_sync(&e, s, b.id, "{}"));
        ASSERT_ERROR(set_print_rejected_sync(&e, s, b.id, "late"), EALREADY);
        ASSERT_EQ_U(store_get_counters(s)->print_rejected, 2);
        counters = *store_get_counters(s);
        store_free(s);

        /* Counted again from the file at open. */
        s = store_open_ok(&e, 3);
        ASSERT_EQ(memcmp(store_get_counters(s), &counters, sizeof counters), 0);
        store_free(s);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM receipts WHERE print_status = 'print_rejected'"), 2);
        env_teardown(&e);
}

static void test_retry_print_puts_the_receipt_back_in_the_queue(void) {
        Submitted a;
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        sale_ok(&e, s, "a", 0, &a);
        db_exec(e.path, "UPDATE receipts SET attempts = 3");
        ASSERT_OK(set_print_rejected_sync(&e, s, a.id, "paper jam, for good"));

        retry_print_sync(&e, s, a.id, "admin", &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.id, a.id);
        ASSERT_EQ(g.r.status, STORE_STATUS_PENDING);
        ASSERT_EQ(g.r.print_status, STORE_PRINT_UNPRINTED);
        ASSERT_STREQ(g.r.receipt_data, receipt_new("", "").receipt_data); /* what the printer needs */
        ASSERT_EQ(g.r.attempts, 3);
        store_receipt_done(&g.r);
        ASSERT_EQ_U(store_get_counters(s)->print_rejected, 0);
        ASSERT_EQ_U(store_get_counters(s)->pending, 1);
        assert_db_text(e.path,
                       "SELECT json_extract(details, '$.by') FROM buffer_events WHERE event = 'print_retried'",
                       "admin");

        /* Not in print_rejected (any more): busy, not retried twice. */
        retry_print_sync(&e, s, a.id, "admin", &g);
        ASSERT_ERROR(g.error, EBUSY);
        retry_print_sync(&e, s, "no-such-receipt", "admin", &g);
        ASSERT_ERROR(g.error, ENOENT);

        /* It prints as any other. */
        ASSERT_OK(mark_printed_sync(&e, s, a.id, "{\"fiscal_document_number\":9}"));
        retry_print_sync(&e, s, a.id, NULL, &g);
        ASSERT_ERROR(g.error, EBUSY);
        store_free(s);
        env_teardown(&e);
}

static int job_select_batch(StoreConn *c, void *data) {
        return sync_store_select_batch(c, data);
}

static void test_cancel_frees_capacity_and_is_final(void) {
        SyncStoreBatch batch = { .limit = 50 };
        Submitted a, b, full, after;
        Done d = {};
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 2);
        sale_ok(&e, s, "a", 0, &a);
        sale_ok(&e, s, "b", 0, &b);
        submit_ok(&e, s, "c", "h", &full);
        ASSERT_EQ(full.outcome, STORE_SUBMIT_FULL);

        /* Only from print_rejected. */
        cancel_sync(&e, s, a.id, "duplicate", "admin", &g);
        ASSERT_ERROR(g.error, EBUSY);
        cancel_sync(&e, s, "no-such-receipt", NULL, NULL, &g);
        ASSERT_ERROR(g.error, ENOENT);

        ASSERT_OK(set_print_rejected_sync(&e, s, a.id, "rejected"));
        cancel_sync(&e, s, a.id, "duplicate of b", "admin", &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.id, a.id);
        ASSERT_EQ(g.r.status, STORE_STATUS_CANCELLED);
        ASSERT_STREQ(g.r.last_error, "cancelled by admin: duplicate of b");
        store_receipt_done(&g.r);
        ASSERT_EQ_U(store_get_counters(s)->pending, 1);
        ASSERT_EQ_U(store_get_counters(s)->cancelled, 1);
        ASSERT_EQ_U(store_get_counters(s)->print_rejected, 0);
        ASSERT_EQ_U(store_get_counters(s)->total, 2);
        assert_db_text(e.path,
                       "SELECT json_extract(details, '$.by') || ': ' || json_extract(details, '$.note') "
                       "FROM buffer_events WHERE event = 'cancelled'",
                       "admin: duplicate of b");

        /* Room for one more. */
        submit_ok(&e, s, "c", "h", &after);
        ASSERT_EQ(after.outcome, STORE_SUBMIT_CREATED);

        /* Final: nothing prints it, sends it, or takes it back. */
        ASSERT_ERROR(mark_printed_sync(&e, s, a.id, "{\"fiscal_document_number\":3}"), ESTALE);
        ASSERT_ERROR(mark_synced_sync(&e, s, a.id, NULL), ESTALE);
        ASSERT_ERROR(set_print_rejected_sync(&e, s, a.id, "again"), ESTALE);
        cancel_sync(&e, s, a.id, NULL, "admin", &g);
        ASSERT_ERROR(g.error, ESTALE);
        retry_print_sync(&e, s, a.id, "admin", &g);
        ASSERT_ERROR(g.error, ESTALE);

        /* Not even when its row says printed (another program's doing): the batch takes pending only. */
        db_exec(e.path,
                "UPDATE receipts SET print_status = 'printed', fiscal_doc = '{}' WHERE status = 'cancelled'");
        batch.now = now(CLOCK_REALTIME);
        ASSERT_OK(store_read(s, job_select_batch, &batch, on_done, &d));
        run_until_idle(&e, s);
        ASSERT_EQ(d.result, 0);
        sync_store_batch_done(&batch);
        store_free(s);

        s = store_open_ok(&e, 2);
        ASSERT_EQ_U(store_get_counters(s)->cancelled, 1);
        ASSERT_EQ_U(store_get_counters(s)->pending, 2);
        store_free(s);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM receipts WHERE status = 'cancelled'"), 1);
        env_teardown(&e);
}

/* The cancellation's text without a note or a name. */
static void test_cancel_without_note_or_who_says_so(void) {
        Submitted a;
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        sale_ok(&e, s, "a", 0, &a);
        ASSERT_OK(set_print_rejected_sync(&e, s, a.id, "rejected"));
        cancel_sync(&e, s, a.id, "", NULL, &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.last_error, "cancelled by unknown");
        store_receipt_done(&g.r);
        store_free(s);
        env_teardown(&e);
}

typedef struct Listed {
        bool done;
        int error;
        size_t n;
        char ids[8][64];
        StorePrintStatus print_status[8];
} Listed;

static void on_list(Store *s, int error, const StoreReceipt *receipts, size_t n, void *userdata) {
        Listed *l = userdata;

        ASSERT_FALSE(l->done);
        l->done = true;
        l->error = error;
        l->n = n;
        ASSERT_TRUE(n <= ELEMENTSOF(l->ids));
        for (size_t i = 0; i < n; i++) {
                snprintf(l->ids[i], sizeof l->ids[i], "%s", receipts[i].id);
                l->print_status[i] = receipts[i].print_status;
        }
}

static void list_sync(Env *e, Store *s, unsigned limit, Listed *ret) {
        *ret = (Listed) {};
        ASSERT_OK(store_list_print_rejected(s, limit, on_list, ret));
        run_until_idle(e, s);
        ASSERT_TRUE(ret->done);
        ASSERT_OK(ret->error);
}

static void test_list_print_rejected_oldest_first_up_to_the_limit(void) {
        Submitted x[5];
        char key[16];
        Listed l;
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        list_sync(&e, s, 0, &l);
        ASSERT_EQ(l.n, 0);

        for (unsigned i = 0; i < ELEMENTSOF(x); i++) {
                snprintf(key, sizeof key, "list-%u", i);
                sale_ok(&e, s, key, 0, &x[i]);
        }
        /* Rejected out of order; one rejected and cancelled, one rejected and retried. */
        ASSERT_OK(set_print_rejected_sync(&e, s, x[4].id, "r"));
        ASSERT_OK(set_print_rejected_sync(&e, s, x[1].id, "r"));
        ASSERT_OK(set_print_rejected_sync(&e, s, x[3].id, "r"));
        ASSERT_OK(set_print_rejected_sync(&e, s, x[0].id, "r"));
        ASSERT_OK(set_print_rejected_sync(&e, s, x[2].id, "r"));
        cancel_sync(&e, s, x[0].id, NULL, "admin", &g);
        store_receipt_done(&g.r);
        retry_print_sync(&e, s, x[2].id, "admin", &g);
        store_receipt_done(&g.r);

        list_sync(&e, s, 0, &l);
        ASSERT_EQ(l.n, 3);
        ASSERT_STREQ(l.ids[0], x[1].id);
        ASSERT_STREQ(l.ids[1], x[3].id);
        ASSERT_STREQ(l.ids[2], x[4].id);
        ASSERT_EQ(l.print_status[0], STORE_PRINT_REJECTED);

        list_sync(&e, s, 2, &l);
        ASSERT_EQ(l.n, 2);
        ASSERT_STREQ(l.ids[0], x[1].id);
        ASSERT_STREQ(l.ids[1], x[3].id);
        list_sync(&e, s, 1, &l);
        ASSERT_EQ(l.n, 1);
        ASSERT_STREQ(l.ids[0], x[1].id);
        store_free(s);
        env_teardown(&e);
}

/* Retention takes cancelled receipts like synced ones, keys and all; the pending ones stay. */
static void test_retention_prunes_cancelled_receipts_with_their_keys(void) {
        Submitted a, b, again;
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        sale_ok(&e, s, "cancelled-key", 0, &a);
        sale_ok(&e, s, "pending-key", 0, &b);
        ASSERT_OK(set_print_rejected_sync(&e, s, a.id, "rejected"));
        ASSERT_OK(set_print_rejected_sync(&e, s, b.id, "rejected"));
        cancel_sync(&e, s, a.id, NULL, "admin", &g);
        ASSERT_OK(g.error);
        store_receipt_done(&g.r);

        ASSERT_EQ(prune_synced_sync(&e, s), 1);
        ASSERT_EQ(count_rows(e.path, "receipts", "id", a.id), 0);
        ASSERT_EQ(count_rows(e.path, "idempotency_keys", "receipt_id", a.id), 0);
        ASSERT_EQ(count_rows(e.path, "receipts", "id", b.id), 1);
        ASSERT_EQ_U(store_get_counters(s)->cancelled, 0);
        ASSERT_EQ_U(store_get_counters(s)->print_rejected, 1);
        ASSERT_EQ_U(store_get_counters(s)->total, 1);

        /* Its key is new again. */
        submit_ok(&e, s, "cancelled-key", "h", &again);
        ASSERT_EQ(again.outcome, STORE_SUBMIT_CREATED);
        store_free(s);
        assert_db_healthy(e.path);
        env_teardown(&e);
}

int main(void) {
        if (getenv("TEST_DEBUG"))
                log_set_max_level(LOG_DEBUG);

        TEST_RUN(test_status_names_round_trip);
        TEST_RUN(test_receipt_id_is_uuid_v7_with_the_time_first_and_the_random_bits_kept);
        TEST_RUN(test_open_empty_file_creates_the_current_schema_in_wal_mode);
        TEST_RUN(test_open_prototype_v1_file_migrates_keeping_rows);
        TEST_RUN(test_open_prototype_file_without_user_version_migrates);
        TEST_RUN(test_open_version_2_file_moves_keys_and_counts_keeping_replays);
        TEST_RUN(test_open_version_3_file_rebuilds_receipts_keeping_rows_keys_counts_and_replays);
        TEST_RUN(test_open_file_that_schema_4_cannot_hold_fails_with_ebadmsg_and_stays_unchanged);
        TEST_RUN(test_key_twice_in_the_file_opens_and_replays_the_first);
        TEST_RUN(test_submit_calls_back_after_commit_with_rows_on_disk);
        TEST_RUN(test_replay_with_same_key_and_hash_returns_existing_receipt);
        TEST_RUN(test_replay_returns_the_first_answer_stored_by_the_insert_or_later);
        TEST_RUN(test_same_key_twice_in_one_group_inserts_once);
        TEST_RUN(test_same_key_with_other_hash_is_key_mismatch);
        TEST_RUN(test_capacity_reached_is_full_and_inserts_nothing);
        TEST_RUN(test_group_commit_puts_concurrent_submits_in_one_transaction);
        TEST_RUN(test_failed_commit_fails_every_job_of_the_group);
        TEST_RUN(test_job_error_that_ends_the_transaction_fails_the_whole_group);
        TEST_RUN(test_disk_full_fails_submit_with_enospc_and_stores_nothing);
        TEST_RUN(test_reopen_keeps_receipts_counters_and_hlc_monotonic);
        TEST_RUN(test_reopen_after_clock_stepped_back_stamps_above_persisted_hlc);
        TEST_RUN(test_retention_forgets_keys_and_keeps_the_clock);
        TEST_RUN(test_corrupt_file_fails_with_ebadmsg);
        TEST_RUN(test_newer_schema_version_fails_with_eproto);
        TEST_RUN(test_unopenable_path_fails_with_errno);
        TEST_RUN(test_get_receipt_unknown_is_enoent_and_known_returns_all_fields);
        TEST_RUN(test_mark_printed_then_synced_moves_states_and_counters);
        TEST_RUN(test_oldest_unsynced_follows_the_oldest_receipt_the_ofd_has_not_acknowledged);
        TEST_RUN(test_store_read_runs_on_the_reader_and_cannot_write);
        TEST_RUN(test_free_finishes_queued_jobs_and_runs_their_callbacks);
        TEST_RUN(test_idle_callback_runs_when_the_last_job_completes);
        TEST_RUN(test_submitted_ids_are_v7_and_sort_by_creation_time_across_milliseconds);
        TEST_RUN(test_jobs_queued_in_one_loop_iteration_commit_in_one_transaction_with_unique_ids);
        TEST_RUN(test_wal_is_checkpointed_behind_the_writer_and_stays_bounded);
        TEST_RUN(test_every_writer_pragma_is_applied_on_the_writer_connection);
        TEST_RUN(test_wal_shrinks_to_the_journal_size_limit_after_a_burst);
        TEST_RUN(test_debug_synchronous_env_overrides_the_option);
        TEST_RUN(test_debug_max_pages_env_fills_the_disk_keeping_what_was_acknowledged);
        TEST_RUN(test_mark_printed_keeps_the_fiscal_document_number_of_the_document);
        TEST_RUN(test_resolve_finds_by_id_then_key_then_newest_fiscal_document_number);
        TEST_RUN(test_return_within_the_original_total_is_accepted_and_linked);
        TEST_RUN(test_return_beyond_what_is_left_is_refused_with_the_refunded_sum);
        TEST_RUN(test_two_returns_in_one_group_commit_where_only_one_fits);
        TEST_RUN(test_return_of_unknown_original_inserts_nothing);
        TEST_RUN(test_return_of_an_original_of_another_type_or_cancelled_is_a_mismatch);
        TEST_RUN(test_return_of_an_original_not_created_before_original_before_is_too_new);
        TEST_RUN(test_set_print_rejected_counts_the_receipt_and_keeps_it_pending);
        TEST_RUN(test_retry_print_puts_the_receipt_back_in_the_queue);
        TEST_RUN(test_cancel_frees_capacity_and_is_final);
        TEST_RUN(test_cancel_without_note_or_who_says_so);
        TEST_RUN(test_list_print_rejected_oldest_first_up_to_the_limit);
        TEST_RUN(test_retention_prunes_cancelled_receipts_with_their_keys);
        return 0;
}
