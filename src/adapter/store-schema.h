/* SPDX-License-Identifier: MIT */
#pragma once

/* The layout of buffer.db, compiled in, and the steps that bring an older file up to it. Version 1 is the
 * prototype's layout (other tools read those tables and the view), versions 2 to 5 are ours. */

#include <sqlite3.h>

#define STORE_SCHEMA_VERSION 5

/* PRAGMA user_version; -EBADMSG when the file is not a database. */
int store_schema_get_version(sqlite3 *db, int *ret);

/* PRAGMA quick_check: -EBADMSG unless it says "ok". */
int store_schema_check(sqlite3 *db);

/* Migrates to STORE_SCHEMA_VERSION in one IMMEDIATE transaction; -EPROTO when the file is newer; -EBADMSG
 * when rows do not fit the new layout (the file is left as it was). Turns foreign key enforcement off around
 * the transaction (a table is rebuilt) and back on if it was on. */
int store_schema_migrate(sqlite3 *db);
/* The same, up to `version` only (1..STORE_SCHEMA_VERSION): for tests, to write the files of older
 * versions exactly as those versions did. */
int store_schema_migrate_to(sqlite3 *db, int version);

/* SQL: the "fiscal_document_number" of the fiscal document JSON `doc` (an SQL expression: a column or a
 * parameter) when it is a JSON integer in 1..2^32-1, else NULL. json_valid() first, in a CASE of its own,
 * because json_type() fails the whole statement on text that is not JSON, and such a document is still
 * stored (the sync dead-letters it). */
#define STORE_SQL_FISCAL_DOCUMENT_NUMBER(doc)                                                              \
        "(CASE WHEN json_valid(" doc ") THEN CASE WHEN json_type(" doc ", '$.fiscal_document_number') = " \
        "'integer' AND json_extract(" doc ", '$.fiscal_document_number') BETWEEN 1 AND 4294967295 "      \
        "THEN json_extract(" doc ", '$.fiscal_document_number') END END)"

/* The row of receipt_counts that counts the pending receipts in print_rejected (no status is spelt so). */
#define STORE_COUNT_PRINT_REJECTED "pending:print_rejected"

/* Creates the per-status counts (TEMP table receipt_counts and its TEMP triggers) on the writer's
 * connection, filled from the receipts. After the migration, before the first write. */
int store_schema_create_counts(sqlite3 *db);
