/* SPDX-License-Identifier: MIT */
/* buffer.db's tables, views, indexes and triggers as SQL text, one step per schema version, and the
 * PRAGMA user_version bookkeeping that applies the missing steps to a file. */

#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "macro.h"
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

/* Schema 4: the states of a shop's fiscal day and the links of returns. status gains 'cancelled' and
 * print_status 'print_rejected'; new columns fiscal_document_number (from the fiscal document, to find a
 * receipt by the number printed on it) and original_id (a return's original). Both new indexes are partial,
 * so only printed receipts and returns write to them: a sale's intake commit writes the same pages as with
 * version 3.
 *
 * A CHECK constraint cannot be changed in place, so the table is rebuilt the way SQLite's documentation
 * prescribes for such changes (lang_altertable.html, "Making Other Kinds Of Table Schema Changes"), in
 * migrate_v4(): foreign keys off around the transaction (store_schema_migrate_to()); the views, the triggers
 * and the table's other indexes remembered and dropped (with legacy_alter_table off, the default, RENAME
 * fails on any view that names a missing table, as v_buffer_status does once the old table is dropped); the
 * new table created, the rows copied with their rowids, the old table dropped, the new one renamed; the
 * indexes, views and triggers created again from their remembered text; PRAGMA foreign_key_check.
 * idempotency_keys keeps its REFERENCES receipts (id): a foreign key names its parent table by name, which
 * after the rename is the new table. (The page's shorter procedure, editing sqlite_schema under
 * writable_schema, is meant for changes that only drop constraints, and would leave each file with its own
 * spelling of the table.)
 *
 * The new table is the one this program has always created (schema_v1 plus the columns of schema_v2), so a
 * file of the prototype gets our constraints now: a row that breaks them (a status the prototype invented,
 * a NULL where we require a value) or a column we do not know fails the migration with -EBADMSG and leaves
 * the file as it was, rather than changing or dropping data. original_id has no REFERENCES clause: retention
 * prunes an original on its own schedule, and its returns may outlive it. */
#define RECEIPT_COLUMNS_V3                                                                                  \
        "id, pos_id, receipt_data, status, created_at, updated_at, synced_at, retry_count, last_error, "    \
        "next_retry_at, hlc_timestamp, hlc, total_kopecks, receipt_type, print_status, fiscal_doc, "        \
        "printed_at, ofd_response, attempts"

static const char schema_v4_unknown_columns[] =
        "SELECT group_concat(name, ', ') FROM pragma_table_info('receipts') WHERE name NOT IN ("
        "'id', 'pos_id', 'receipt_data', 'status', 'created_at', 'updated_at', 'synced_at', 'retry_count', "
        "'last_error', 'next_retry_at', 'hlc_timestamp', 'hlc', 'total_kopecks', 'receipt_type', "
        "'print_status', 'fiscal_doc', 'printed_at', 'ofd_response', 'attempts')";

/* What is dropped before the rebuild and created again after it, in this order: the table's indexes (but
 * the ones schema_v4_swap creates), the views, the triggers (an INSTEAD OF trigger needs its view). */
static const char schema_v4_dependents[] =
        "SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL AND ("
        "(type = 'index' AND tbl_name = 'receipts' AND name NOT IN ('idx_receipts_status_hlc', "
        "'idx_receipts_fiscal_document_number', 'idx_receipts_original_id')) "
        "OR type IN ('view', 'trigger')) "
        "ORDER BY CASE type WHEN 'index' THEN 0 WHEN 'view' THEN 1 ELSE 2 END, rowid";

/* The CHECKs compare with = and OR, not with IN (...): for an IN list of more than two constants SQLite
 * builds an ephemeral index at every run of a statement that checks it, so each INSERT and each UPDATE of
 * status or print_status allocated, zeroed and filled a b-tree page. With the IN lists of versions 1 and 2,
 * bench/store-bench.c ran about 153,000 instructions per receipt (callgrind, 64 in flight); without them
 * 95,000. */
static const char schema_v4_create[] =
        "CREATE TABLE receipts_v4 (\n"
        "        id TEXT PRIMARY KEY,\n"
        "        pos_id TEXT NOT NULL,\n"
        "        receipt_data TEXT NOT NULL,\n"
        "        status TEXT NOT NULL DEFAULT 'pending'\n"
        "                CHECK (status = 'pending' OR status = 'synced' OR status = 'failed'\n"
        "                       OR status = 'dlq' OR status = 'cancelled'),\n"
        "        created_at TEXT NOT NULL,\n"
        "        updated_at TEXT,\n"
        "        synced_at TEXT,\n"
        "        retry_count INTEGER NOT NULL DEFAULT 0,\n"
        "        last_error TEXT,\n"
        "        next_retry_at TEXT,\n"
        "        hlc_timestamp TEXT,\n"
        "        hlc INTEGER,\n"
        "        total_kopecks INTEGER,\n"
        "        receipt_type TEXT,\n"
        "        print_status TEXT NOT NULL DEFAULT 'unprinted'\n"
        "                CHECK (print_status = 'unprinted' OR print_status = 'printed'\n"
        "                       OR print_status = 'print_failed' OR print_status = 'print_rejected'),\n"
        "        fiscal_doc TEXT,\n"
        "        printed_at TEXT,\n"
        "        ofd_response TEXT,\n"
        "        attempts INTEGER NOT NULL DEFAULT 0,\n"
        "        fiscal_document_number INTEGER,\n"
        "        original_id TEXT\n"
        ")";

/* Receipts printed before the upgrade get their numbers from the documents they have. */
static const char schema_v4_copy[] =
        "INSERT INTO receipts_v4 (rowid, " RECEIPT_COLUMNS_V3 ", fiscal_document_number)\n"
        "        SELECT rowid, " RECEIPT_COLUMNS_V3 ",\n"
        "               " STORE_SQL_FISCAL_DOCUMENT_NUMBER("fiscal_doc") "\n"
        "        FROM receipts ORDER BY rowid";

/* The FD number's index ends in hlc: numbers start again with each fiscal storage, and "the newest receipt
 * with this number" is the last entry of its range. */
static const char schema_v4_swap[] =
        "DROP TABLE receipts;\n"
        "ALTER TABLE receipts_v4 RENAME TO receipts;\n"
        "CREATE INDEX idx_receipts_status_hlc ON receipts (status, hlc);\n"
        "CREATE INDEX idx_receipts_fiscal_document_number ON receipts (fiscal_document_number, hlc)\n"
        "        WHERE fiscal_document_number IS NOT NULL;\n"
        "CREATE INDEX idx_receipts_original_id ON receipts (original_id) WHERE original_id IS NOT NULL;\n";

/* Schema 5: the first answer to each Idempotency-Key, so that a replay says what the first answer said (the
 * IETF httpapi Idempotency-Key draft) and not the receipt's state now. Stored with the key, in the row the
 * intake commit writes anyway: response_status (the HTTP status, 200) and response, the answer's own fields
 * as JSON ({"status", "message", "fiscal_doc": true or null, "change"}); its receipt_id is the key's
 * receipt and its fiscal document the receipt's, which is never overwritten once printed, so neither is
 * copied. When the answer is known before the commit (it comes once the receipt is durable: no register,
 * or [Device] ResponseTimeout=0) the INSERT writes it: about a hundred bytes more in a page the commit
 * writes anyway. When the answer waits for the register, an UPDATE of the row, group-committed like any
 * write, stores it before the answer goes out. NULL: a key of an older version, or one whose answer never
 * went out (a crash before it); its next replay answers from the receipt's state and stores that. */
static const char schema_v5[] =
        "ALTER TABLE idempotency_keys ADD COLUMN response_status INTEGER;\n"
        "ALTER TABLE idempotency_keys ADD COLUMN response TEXT;\n";

static int migrate_v4(sqlite3 *db);

/* migrations[i] takes a file from version i to version i + 1: SQL text, or code where text is not enough. */
typedef struct Migration {
        const char *sql;
        int (*run)(sqlite3 *db);
} Migration;

static const Migration migrations[STORE_SCHEMA_VERSION] = {
        { .sql = schema_v1 },
        { .sql = schema_v2 },
        { .sql = schema_v3 },
        { .run = migrate_v4 },
        { .sql = schema_v5 },
};

/* The per-status counts, on the writer's connection only: the triggers fire for its writes, and nothing
 * else writes the file (the state directory's lock). Filled from the receipts once at open. */
static const char counts_sql[] =
        "CREATE TEMP TABLE receipt_counts (\n"
        "        status TEXT PRIMARY KEY,\n"
        "        n INTEGER NOT NULL\n"
        ") WITHOUT ROWID;\n"
        "INSERT INTO temp.receipt_counts (status, n)\n"
        "        VALUES ('pending', 0), ('synced', 0), ('failed', 0), ('dlq', 0), ('cancelled', 0);\n"
        "INSERT INTO temp.receipt_counts (status, n)\n"
        "        SELECT COALESCE(status, ''), COUNT(*) FROM main.receipts WHERE true GROUP BY 1\n"
        "        ON CONFLICT (status) DO UPDATE SET n = excluded.n;\n"
        /* The pending receipts in print_rejected, a row of its own (they are in 'pending' too), kept by a
         * second statement in the insert and delete triggers, whose NEW/OLD terms are false for a sale's
         * intake (measured: cheaper than a trigger program of its own with a WHEN), and by an update
         * trigger. */
        "INSERT INTO temp.receipt_counts (status, n)\n"
        "        SELECT '" STORE_COUNT_PRINT_REJECTED "', COUNT(*) FROM main.receipts\n"
        "        WHERE status = 'pending' AND print_status = 'print_rejected';\n"
        "CREATE TEMP TRIGGER receipts_count_rejected_update\n"
        "        AFTER UPDATE OF status, print_status ON main.receipts\n"
        "        WHEN (OLD.status IS 'pending' AND OLD.print_status IS 'print_rejected')\n"
        "                IS NOT (NEW.status IS 'pending' AND NEW.print_status IS 'print_rejected') BEGIN\n"
        "        UPDATE receipt_counts\n"
        "                SET n = n + (NEW.status IS 'pending' AND NEW.print_status IS 'print_rejected')\n"
        "                        - (OLD.status IS 'pending' AND OLD.print_status IS 'print_rejected')\n"
        "                WHERE status = '" STORE_COUNT_PRINT_REJECTED "';\n"
        "END;\n"
        "CREATE TEMP TRIGGER receipts_count_insert AFTER INSERT ON main.receipts BEGIN\n"
        "        INSERT INTO receipt_counts (status, n) VALUES (COALESCE(NEW.status, ''), 1)\n"
        "                ON CONFLICT (status) DO UPDATE SET n = n + 1;\n"
        "        UPDATE receipt_counts SET n = n + 1 WHERE status = '" STORE_COUNT_PRINT_REJECTED "'\n"
        "                AND NEW.status IS 'pending' AND NEW.print_status IS 'print_rejected';\n"
        "END;\n"
        "CREATE TEMP TRIGGER receipts_count_delete AFTER DELETE ON main.receipts BEGIN\n"
        "        UPDATE receipt_counts SET n = n - 1 WHERE status = COALESCE(OLD.status, '');\n"
        "        UPDATE receipt_counts SET n = n - 1 WHERE status = '" STORE_COUNT_PRINT_REJECTED "'\n"
        "                AND OLD.status IS 'pending' AND OLD.print_status IS 'print_rejected';\n"
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
        int64_t v;
        int r;

        r = sqlite_query_one_int64(db, "PRAGMA user_version", &v);
        if (r < 0)
                return r;
        if (r == 0 || v < INT_MIN || v > INT_MAX)
                return -EIO;
        *ret = (int) v;
        return 0;
}

int store_schema_check(sqlite3 *db) {
        _cleanup_free_ char *result = NULL;
        int r;

        r = sqlite_query_one_text(db, "PRAGMA quick_check(1)", &result);
        if (r < 0)
                return r;
        if (!streq_ptr(result, "ok")) {
                log_debug("SQLite quick_check: %s", strna(result));
                return -EBADMSG;
        }
        return 0;
}

typedef struct Dependent {
        char *type;
        char *name;
        char *sql;
} Dependent;

static void dependents_free(Dependent *d, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(d[i].type);
                free(d[i].name);
                free(d[i].sql);
        }
        free(d);
}

static int dependents_load(sqlite3 *db, Dependent **ret, size_t *ret_n) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        Dependent *d = NULL;
        size_t n = 0;
        int rc, r = 0;

        rc = sqlite3_prepare_v2(db, schema_v4_dependents, -1, &stmt, NULL);
        if (rc != SQLITE_OK)
                return sqlite_result_to_errno(rc);
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
                Dependent *a = reallocarray(d, n + 1, sizeof(Dependent));

                if (!a) {
                        r = -ENOMEM;
                        break;
                }
                d = a;
                d[n] = (Dependent) {
                        .type = strdup((const char *) sqlite3_column_text(stmt, 0) ?: ""),
                        .name = strdup((const char *) sqlite3_column_text(stmt, 1) ?: ""),
                        .sql = strdup((const char *) sqlite3_column_text(stmt, 2) ?: ""),
                };
                n++;
                if (!d[n - 1].type || !d[n - 1].name || !d[n - 1].sql) {
                        r = -ENOMEM;
                        break;
                }
        }
        if (r >= 0 && rc != SQLITE_DONE)
                r = sqlite_result_to_errno(rc) ?: -EIO;
        if (r < 0) {
                dependents_free(d, n);
                return r;
        }
        *ret = d;
        *ret_n = n;
        return 0;
}

static int drop_dependent(sqlite3 *db, const Dependent *d) {
        char *sql;
        int r;

        /* Triggers first: dropping a view takes its INSTEAD OF triggers along, hence IF EXISTS. Indexes go
         * with their table. */
        if (streq(d->type, "index"))
                return 0;
        sql = sqlite3_mprintf("DROP %s IF EXISTS \"%w\"", streq(d->type, "view") ? "VIEW" : "TRIGGER",
                              d->name);
        if (!sql)
                return -ENOMEM;
        r = exec(db, sql);
        sqlite3_free(sql);
        return r;
}

static int migrate_v4(sqlite3 *db) {
        _cleanup_free_ char *unknown = NULL;
        Dependent *deps = NULL;
        size_t n_deps = 0;
        int r;

        r = sqlite_query_one_text(db, schema_v4_unknown_columns, &unknown);
        if (r < 0)
                return r;
        if (unknown) {
                log_debug("Table receipts has columns schema 4 does not know (%s): not migrating.", unknown);
                return -EBADMSG;
        }

        r = dependents_load(db, &deps, &n_deps);
        if (r < 0)
                return r;
        for (size_t i = n_deps; i > 0 && r >= 0; i--) /* triggers, views, then the indexes (none) */
                r = drop_dependent(db, &deps[i - 1]);

        if (r >= 0)
                r = exec(db, schema_v4_create);
        if (r >= 0) {
                r = exec(db, schema_v4_copy);
                if (r == -EEXIST) { /* SQLITE_CONSTRAINT: a row our constraints refuse; exec() said which */
                        log_debug("A receipt does not fit schema 4: not migrating.");
                        r = -EBADMSG;
                }
        }
        if (r >= 0)
                r = exec(db, schema_v4_swap);
        for (size_t i = 0; i < n_deps && r >= 0; i++)
                r = exec(db, deps[i].sql);

        dependents_free(deps, n_deps);
        return r;
}

static int run_migration(sqlite3 *db, int from) {
        const Migration *m = &migrations[from];

        log_debug("Migrating buffer database from schema version %i to %i.", from, from + 1);
        return m->run ? m->run(db) : exec(db, m->sql);
}

static int migrate_locked(sqlite3 *db, int target, bool check_foreign_keys) {
        int64_t violations_before = 0, violations_after = 0;
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
        if (version >= target)
                return 0;

        /* Steps 10 of the procedure (migrate_v4()): the rebuild must not break a reference. Compared with
         * before, so that a key another program left without its receipt does not block the upgrade. */
        if (check_foreign_keys) {
                r = sqlite_query_one_int64(db, "SELECT COUNT(*) FROM pragma_foreign_key_check",
                                           &violations_before);
                if (r < 0)
                        return r;
        }
        for (int v = version; v < target; v++) {
                r = run_migration(db, v);
                if (r < 0)
                        return r;
        }
        if (check_foreign_keys) {
                r = sqlite_query_one_int64(db, "SELECT COUNT(*) FROM pragma_foreign_key_check",
                                           &violations_after);
                if (r < 0)
                        return r;
                if (violations_after > violations_before) {
                        log_debug("Migration left %" PRIi64 " foreign keys without their rows.",
                                  violations_after - violations_before);
                        return -EBADMSG;
                }
        }

        snprintf(sql, sizeof sql, "PRAGMA user_version = %i", target);
        return exec(db, sql);
}

int store_schema_migrate_to(sqlite3 *db, int target) {
        int64_t foreign_keys = 0;
        int version, r, q;

        assert(db);
        assert(target >= 1 && target <= STORE_SCHEMA_VERSION);

        r = store_schema_get_version(db, &version);
        if (r < 0)
                return r;
        if (version > STORE_SCHEMA_VERSION)
                return -EPROTO;
        if (version >= target)
                return 0;

        /* Step 1 of the rebuild: with foreign keys enforced, dropping the old receipts table would delete
         * its rows under their keys. A no-op inside a transaction, so before it. */
        r = sqlite_query_one_int64(db, "PRAGMA foreign_keys", &foreign_keys);
        if (r < 0)
                return r;
        if (foreign_keys) {
                r = exec(db, "PRAGMA foreign_keys = OFF");
                if (r < 0)
                        return r;
        }

        r = exec(db, "BEGIN IMMEDIATE");
        if (r >= 0) {
                r = migrate_locked(db, target, foreign_keys);
                if (r >= 0)
                        r = exec(db, "COMMIT");
                if (r < 0 && !sqlite3_get_autocommit(db))
                        (void) exec(db, "ROLLBACK");
        }

        if (foreign_keys) {
                q = exec(db, "PRAGMA foreign_keys = ON");
                if (r >= 0)
                        r = q;
        }
        return r;
}

int store_schema_migrate(sqlite3 *db) {
        return store_schema_migrate_to(db, STORE_SCHEMA_VERSION);
}

int store_schema_create_counts(sqlite3 *db) {
        return exec(db, counts_sql);
}
