/* SPDX-License-Identifier: MIT */
/* The store against real files in a temporary directory and a real sd-event loop: receipt ids, durability
 * before the callback, group commit and its failures, a full disk, the WAL and the writer's pragmas, the
 * debug hooks, reopening, files it refuses, the reader, shutting down, and the names of its enums. */

#include <fcntl.h>
#include <semaphore.h>
#include <sys/stat.h>

#include "hlc.h"
#include "log.h"
#include "store-schema.h"
#include "store.h"
#include "test-store-util.h"
#include "tests.h"

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

int main(void) {
        if (getenv("TEST_DEBUG"))
                log_set_max_level(LOG_DEBUG);

        TEST_RUN(test_status_names_round_trip);
        TEST_RUN(test_receipt_id_is_uuid_v7_with_the_time_first_and_the_random_bits_kept);
        TEST_RUN(test_submit_calls_back_after_commit_with_rows_on_disk);
        TEST_RUN(test_group_commit_puts_concurrent_submits_in_one_transaction);
        TEST_RUN(test_failed_commit_fails_every_job_of_the_group);
        TEST_RUN(test_job_error_that_ends_the_transaction_fails_the_whole_group);
        TEST_RUN(test_disk_full_fails_submit_with_enospc_and_stores_nothing);
        TEST_RUN(test_reopen_keeps_receipts_counters_and_hlc_monotonic);
        TEST_RUN(test_reopen_after_clock_stepped_back_stamps_above_persisted_hlc);
        TEST_RUN(test_corrupt_file_fails_with_ebadmsg);
        TEST_RUN(test_newer_schema_version_fails_with_eproto);
        TEST_RUN(test_unopenable_path_fails_with_errno);
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
        return 0;
}
