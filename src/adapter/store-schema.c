/* SPDX-License-Identifier: MIT */
/* buffer.db's tables, views, indexes and triggers as SQL text, one step per schema version, and the
 * PRAGMA user_version bookkeeping that applies the missing steps to a file. */

#include <stdio.h>

#include "log.h"
#include "sqlite-util.h"
#include "store-schema.h"

/* The prototype's layout. IF NOT EXISTS, because the prototype created its tables without ever setting
 * user_version: a file of its with version 0 passes through this step unchanged. buffer_events has no
 * index on receipt_id on purpose: the log is appended to and pruned by its own id, and nothing looks it up
 * by receipt (with the random version 4 receipt ids of the first design, such an index cost a random page
 * write per receipt, a third of the write volume in the benchmark). */
static const char schema_v1[] =
        "CREATE TABLE IF NOT EXISTS receipts (\n"
        "        id TEXT PRIMARY KEY,\n"
        "        pos_id TEXT NOT NULL,\n"
        "        receipt_data TEXT NOT NULL,\n"
        "        status TEXT NOT NULL DEFAULT 'pending'\n"
        "                CHECK (status IN ('pending', 'synced', 'failed', 'dlq')),\n"
        "        created_at TEXT NOT NULL,\n"
        "        updated_at TEXT,\n"
        "        synced_at TEXT,\n"
        "        retry_count INTEGER NOT NULL DEFAULT 0,\n"
        "        last_error TEXT,\n"
        "        next_retry_at TEXT,\n"
        "        hlc_timestamp TEXT\n"
        ");\n"
        "CREATE INDEX IF NOT EXISTS idx_receipts_status ON receipts (status);\n"
        "CREATE TABLE IF NOT EXISTS dlq (\n"
        "        id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "        receipt_id TEXT NOT NULL,\n"
        "        reason TEXT,\n"
        "        moved_at TEXT NOT NULL,\n"
        "        resolved INTEGER NOT NULL DEFAULT 0,\n"
        "        resolved_at TEXT,\n"
        "        resolved_by TEXT,\n"
        "        resolution_note TEXT\n"
        ");\n"
        "CREATE INDEX IF NOT EXISTS idx_dlq_receipt_id ON dlq (receipt_id);\n"
        "CREATE TABLE IF NOT EXISTS buffer_events (\n"
        "        id INTEGER PRIMARY KEY,\n"
        "        receipt_id TEXT,\n"
        "        event TEXT NOT NULL,\n"
        "        details TEXT,\n"
        "        created_at TEXT NOT NULL\n"
        ");\n"

        "CREATE TABLE IF NOT EXISTS config (\n"
        "        key TEXT PRIMARY KEY,\n"
        "        value TEXT\n"
        ");\n"
        "CREATE VIEW IF NOT EXISTS v_buffer_status AS SELECT\n"
        "        (SELECT COUNT(*) FROM receipts WHERE status = 'pending') AS pending,\n"
        "        (SELECT COUNT(*) FROM receipts WHERE status = 'synced') AS synced,\n"
        "        (SELECT COUNT(*) FROM receipts WHERE status = 'failed') AS failed,\n"
        "        (SELECT COUNT(*) FROM receipts WHERE status = 'dlq') AS dlq,\n"
        "        (SELECT COUNT(*) FROM receipts) AS total,\n"
        "        (SELECT COUNT(*) FROM dlq WHERE resolved = 0) AS dlq_size;\n";

/* Ours: idempotency keys, the HLC as an integer, printing and OFD state, and per-status counts kept by
 * triggers, so the writer checks the capacity and the loop reads its counters without a COUNT(*) scan
 * (version 3 moves the keys and the counts, see there). */
static const char schema_v2[] =
        "CREATE TABLE idempotency_keys (\n"
        "        key TEXT PRIMARY KEY,\n"
        "        request_hash TEXT NOT NULL,\n"
        "        receipt_id TEXT NOT NULL REFERENCES receipts (id),\n"
        "        created_at TEXT NOT NULL\n"
        ") WITHOUT ROWID;\n"
        /* Deleting a receipt checks for keys pointing at it: without this, a scan per deleted row. */
        "CREATE INDEX idx_idempotency_keys_receipt_id ON idempotency_keys (receipt_id);\n"
        "ALTER TABLE receipts ADD COLUMN hlc INTEGER;\n"
        "ALTER TABLE receipts ADD COLUMN total_kopecks INTEGER;\n"
        "ALTER TABLE receipts ADD COLUMN receipt_type TEXT;\n"
        "ALTER TABLE receipts ADD COLUMN print_status TEXT NOT NULL DEFAULT 'unprinted'\n"
        "        CHECK (print_status IN ('unprinted', 'printed', 'print_failed'));\n"
        "ALTER TABLE receipts ADD COLUMN fiscal_doc TEXT;\n"
        "ALTER TABLE receipts ADD COLUMN printed_at TEXT;\n"
        "ALTER TABLE receipts ADD COLUMN ofd_response TEXT;\n"
        "ALTER TABLE receipts ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;\n"
        "UPDATE receipts SET attempts = COALESCE(retry_count, 0);\n"
        /* The prototype's rows get stamps from created_at (milliseconds), ties broken by insertion order, so
         * sync keeps sending them first and in the order they came. Unparsable dates sort first. */
        "UPDATE receipts SET hlc = (t.ms << 16) + t.seq FROM (\n"
        "        SELECT rid, ms, ROW_NUMBER() OVER (PARTITION BY ms ORDER BY rid) - 1 AS seq FROM (\n"
        "                SELECT rowid AS rid,\n"
        "                       COALESCE(CAST(strftime('%s', created_at) AS INTEGER) * 1000\n"
        "                                + CAST(substr(strftime('%f', created_at), 4) AS INTEGER),\n"
        "                                0) AS ms\n"
        "                FROM receipts)) AS t\n"
        "        WHERE receipts.rowid = t.rid;\n"
        /* (status, hlc) serves what (status) served, and sync's "pending in HLC order". */
        "DROP INDEX IF EXISTS idx_receipts_status;\n"
        "CREATE INDEX idx_receipts_status_hlc ON receipts (status, hlc);\n"
        "CREATE INDEX idx_receipts_print_status_hlc ON receipts (print_status, hlc);\n"
        "CREATE TABLE receipt_counts (\n"
        "        status TEXT PRIMARY KEY,\n"
        "        n INTEGER NOT NULL\n"
        ") WITHOUT ROWID;\n"
        "INSERT INTO receipt_counts (status, n)\n"
        "        VALUES ('pending', 0), ('synced', 0), ('failed', 0), ('dlq', 0);\n"
        "INSERT INTO receipt_counts (status, n)\n"
        "        SELECT COALESCE(status, ''), COUNT(*) FROM receipts WHERE true GROUP BY 1\n"
        "        ON CONFLICT (status) DO UPDATE SET n = excluded.n;\n"
        "CREATE TRIGGER receipts_count_insert AFTER INSERT ON receipts BEGIN\n"
        "        INSERT INTO receipt_counts (status, n) VALUES (COALESCE(NEW.status, ''), 1)\n"
        "                ON CONFLICT (status) DO UPDATE SET n = n + 1;\n"
        "END;\n"
        "CREATE TRIGGER receipts_count_delete AFTER DELETE ON receipts BEGIN\n"
        "        UPDATE receipt_counts SET n = n - 1 WHERE status = COALESCE(OLD.status, '');\n"
        "END;\n"
        "CREATE TRIGGER receipts_count_update AFTER UPDATE OF status ON receipts\n"
        "        WHEN OLD.status IS NOT NEW.status BEGIN\n"
        "        UPDATE receipt_counts SET n = n - 1 WHERE status = COALESCE(OLD.status, '');\n"
        "        INSERT INTO receipt_counts (status, n) VALUES (COALESCE(NEW.status, ''), 1)\n"
        "                ON CONFLICT (status) DO UPDATE SET n = n + 1;\n"
        "END;\n"
        "INSERT INTO config (key, value) VALUES ('hlc_last', (SELECT CAST(COALESCE(MAX(hlc), 0) AS TEXT)\n"
        "                                                     FROM receipts))\n"
        "        ON CONFLICT (key) DO UPDATE SET value = excluded.value;\n";

/* What a commit writes, cut to the pages that have to be written. The keys' table is ordered by receipt id
 * (UUID v7: appended to) and looked up by key in memory (key-index.c), instead of a B-tree keyed by the
 * client's random key, which cost a leaf page of its own for every receipt of a group commit. The counts
 * move to a TEMP table kept by TEMP triggers on the writer's connection (store_counts_sql below): one page
 * fewer per commit, and SQL can still count with v_buffer_status. The HLC is no longer written with each
 * commit: the receipts carry their stamps, and config.hlc_last is written only before stamps can leave the
 * file (retention). The print_status index goes: the only query it served, the print queue's load at
 * start, reads the pending receipts (bounded by the capacity) through (status, hlc) just as well. */
static const char schema_v3[] =
        "DROP INDEX idx_receipts_print_status_hlc;\n"
        "DROP TRIGGER receipts_count_insert;\n"
        "DROP TRIGGER receipts_count_delete;\n"
        "DROP TRIGGER receipts_count_update;\n"
        "DROP TABLE receipt_counts;\n"
        "CREATE TABLE idempotency_keys_v3 (\n"
        "        receipt_id TEXT PRIMARY KEY REFERENCES receipts (id),\n"
        "        key TEXT NOT NULL,\n"
        "        request_hash TEXT NOT NULL,\n"
        "        created_at TEXT NOT NULL\n"
        ") WITHOUT ROWID;\n"
        "INSERT INTO idempotency_keys_v3 (receipt_id, key, request_hash, created_at)\n"
        "        SELECT receipt_id, key, request_hash, created_at FROM idempotency_keys ORDER BY receipt_id;\n"
        "DROP TABLE idempotency_keys;\n"
        "ALTER TABLE idempotency_keys_v3 RENAME TO idempotency_keys;\n";

/* migrations[i] takes a file from version i to version i + 1. */
static const char *const migrations[STORE_SCHEMA_VERSION] = {
        schema_v1,
        schema_v2,
        schema_v3,
};

/* The per-status counts, on the writer's connection only: the triggers fire for its writes, and nothing
 * else writes the file (the state directory's lock). Filled from the receipts once at open. */
static const char counts_sql[] =
        "CREATE TEMP TABLE receipt_counts (\n"
        "        status TEXT PRIMARY KEY,\n"
        "        n INTEGER NOT NULL\n"
        ") WITHOUT ROWID;\n"
        "INSERT INTO temp.receipt_counts (status, n)\n"
        "        VALUES ('pending', 0), ('synced', 0), ('failed', 0), ('dlq', 0);\n"
        "INSERT INTO temp.receipt_counts (status, n)\n"
        "        SELECT COALESCE(status, ''), COUNT(*) FROM main.receipts WHERE true GROUP BY 1\n"
        "        ON CONFLICT (status) DO UPDATE SET n = excluded.n;\n"
        "CREATE TEMP TRIGGER receipts_count_insert AFTER INSERT ON main.receipts BEGIN\n"
        "        INSERT INTO receipt_counts (status, n) VALUES (COALESCE(NEW.status, ''), 1)\n"
        "                ON CONFLICT (status) DO UPDATE SET n = n + 1;\n"
        "END;\n"
        "CREATE TEMP TRIGGER receipts_count_delete AFTER DELETE ON main.receipts BEGIN\n"
        "        UPDATE receipt_counts SET n = n - 1 WHERE status = COALESCE(OLD.status, '');\n"
        "END;\n"
        "CREATE TEMP TRIGGER receipts_count_update AFTER UPDATE OF status ON main.receipts\n"
        "        WHEN OLD.status IS NOT NEW.status BEGIN\n"
        "        UPDATE receipt_counts SET n = n - 1 WHERE status = COALESCE(OLD.status, '');\n"
        "        INSERT INTO receipt_counts (status, n) VALUES (COALESCE(NEW.status, ''), 1)\n"
        "                ON CONFLICT (status) DO UPDATE SET n = n + 1;\n"
        "END;\n";

static int exec(sqlite3 *db, const char *sql) {
        char *error = NULL;
        int rc;

        rc = sqlite3_exec(db, sql, NULL, NULL, &error);
        if (rc != SQLITE_OK)
                log_debug("SQLite: %s", strna(error));
        sqlite3_free(error);
        return sqlite_result_to_errno(rc);
}

int store_schema_get_version(sqlite3 *db, int *ret) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int rc;

        rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, NULL);
        if (rc != SQLITE_OK)
                return sqlite_result_to_errno(rc);
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW)
                return sqlite_result_to_errno(rc) ?: -EIO;
        *ret = sqlite3_column_int(stmt, 0);
        return 0;
}

int store_schema_check(sqlite3 *db) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        const unsigned char *result;
        int rc;

        rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &stmt, NULL);
        if (rc != SQLITE_OK)
                return sqlite_result_to_errno(rc);
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW)
                return sqlite_result_to_errno(rc) ?: -EIO;
        result = sqlite3_column_text(stmt, 0);
        if (!result || !streq((const char *) result, "ok")) {
                log_debug("SQLite quick_check: %s", strna((const char *) result));
                return -EBADMSG;
        }
        return 0;
}

static int migrate_locked(sqlite3 *db) {
        char sql[64];
        int version, r;

        /* Read again under the write lock: another process may have migrated meanwhile. */
        r = store_schema_get_version(db, &version);
        if (r < 0)
                return r;
        if (version > STORE_SCHEMA_VERSION)
                return -EPROTO;
        if (version < 0)
                return -EBADMSG;

        for (int v = version; v < STORE_SCHEMA_VERSION; v++) {
                log_debug("Migrating buffer database from schema version %i to %i.", v, v + 1);
                r = exec(db, migrations[v]);
                if (r < 0)
                        return r;
        }
        if (version == STORE_SCHEMA_VERSION)
                return 0;

        snprintf(sql, sizeof sql, "PRAGMA user_version = %i", STORE_SCHEMA_VERSION);
        return exec(db, sql);
}

int store_schema_migrate(sqlite3 *db) {
        int version, r;

        r = store_schema_get_version(db, &version);
        if (r < 0)
                return r;
        if (version > STORE_SCHEMA_VERSION)
                return -EPROTO;
        if (version == STORE_SCHEMA_VERSION)
                return 0;

        r = exec(db, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        r = migrate_locked(db);
        if (r < 0) {
                (void) exec(db, "ROLLBACK");
                return r;
        }
        return exec(db, "COMMIT");
}

int store_schema_create_counts(sqlite3 *db) {
        return exec(db, counts_sql);
}
