/* SPDX-License-Identifier: MIT */
#pragma once

/* Cleanup for SQLite handles, the one place where SQLite result codes become negative errnos, and the
 * one-row query: step once, read the row, reset. */

#include <sqlite3.h>
#include <stdint.h>

#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(sqlite3 *, sqlite3_close_v2);
DEFINE_TRIVIAL_CLEANUP_FUNC(sqlite3_stmt *, sqlite3_finalize);

/* SQLITE_FULL -> -ENOSPC, SQLITE_CORRUPT/NOTADB -> -EBADMSG, SQLITE_BUSY/LOCKED -> -EBUSY, ... */
int sqlite_result_to_errno(int rc);

/* The errno for a failed step or prepare (never 0: -EIO for codes that do not map), with SQLite's message
 * logged at debug level: it is the only place that says which constraint or file failed. */
int sqlite_step_error(sqlite3 *db, int rc);

/* A copy of column i; NULL for SQL NULL. -ENOMEM. */
int sqlite_column_strdup(sqlite3_stmt *stmt, int i, char **ret);

/* Reads the current row; a negative return is passed on. */
typedef int (*SqliteRowFunc)(sqlite3_stmt *stmt, void *userdata);
/* Row readers of the first column: into an int64_t (NULL: 0), or a copy of its text into a char * (NULL:
 * NULL). */
int sqlite_row_int64(sqlite3_stmt *stmt, void *userdata);
int sqlite_row_text(sqlite3_stmt *stmt, void *userdata);

/* The one-row query on a statement that is prepared and bound: one step, the row read by `read` (may be
 * NULL), then the statement reset, whatever happened, so that it holds no snapshot. Returns 1 when there
 * was a row (or what `read` returned, when negative), 0 when there was none, a negative errno when the step
 * failed. */
int sqlite_step_one(sqlite3_stmt *stmt, SqliteRowFunc read, void *userdata);
/* The same for `sql` (one statement, no parameters) prepared for this one call and finalized after, reading
 * the first column: as an integer (0 when there is no row or it is NULL), or a copy of its text (NULL when
 * there is no row or it is NULL). */
int sqlite_query_one_int64(sqlite3 *db, const char *sql, int64_t *ret);
int sqlite_query_one_text(sqlite3 *db, const char *sql, char **ret);
