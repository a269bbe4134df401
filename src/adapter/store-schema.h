/* SPDX-License-Identifier: MIT */
#pragma once

/* The layout of buffer.db, compiled in, and the steps that bring an older file up to it. Version 1 is the
 * prototype's layout (other tools read those tables and the view), versions 2 and 3 are ours. */

#include <sqlite3.h>

#define STORE_SCHEMA_VERSION 3

/* PRAGMA user_version; -EBADMSG when the file is not a database. */
int store_schema_get_version(sqlite3 *db, int *ret);

/* PRAGMA quick_check: -EBADMSG unless it says "ok". */
int store_schema_check(sqlite3 *db);

/* Migrates to STORE_SCHEMA_VERSION in one IMMEDIATE transaction; -EPROTO when the file is newer. */
int store_schema_migrate(sqlite3 *db);

/* Creates the per-status counts (TEMP table receipt_counts and its TEMP triggers) on the writer's
 * connection, filled from the receipts. After the migration, before the first write. */
int store_schema_create_counts(sqlite3 *db);
