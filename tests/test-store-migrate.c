/* SPDX-License-Identifier: MIT */
/* Opening the files of earlier versions: an empty file, the prototype's, versions 2 and 3, rows schema 4
 * cannot hold, and a key twice in the file. */

#include <fcntl.h>

#include "hlc.h"
#include "log.h"
#include "store-schema.h"
#include "store.h"
#include "test-store-util.h"
#include "tests.h"

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

int main(void) {
        if (getenv("TEST_DEBUG"))
                log_set_max_level(LOG_DEBUG);

        TEST_RUN(test_open_empty_file_creates_the_current_schema_in_wal_mode);
        TEST_RUN(test_open_prototype_v1_file_migrates_keeping_rows);
        TEST_RUN(test_open_prototype_file_without_user_version_migrates);
        TEST_RUN(test_open_version_2_file_moves_keys_and_counts_keeping_replays);
        TEST_RUN(test_open_version_3_file_rebuilds_receipts_keeping_rows_keys_counts_and_replays);
        TEST_RUN(test_open_file_that_schema_4_cannot_hold_fails_with_ebadmsg_and_stays_unchanged);
        TEST_RUN(test_key_twice_in_the_file_opens_and_replays_the_first);
        return 0;
}
