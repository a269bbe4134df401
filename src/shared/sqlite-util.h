/* SPDX-License-Identifier: MIT */
#pragma once

/* Cleanup for SQLite handles and the one place where SQLite result codes become negative errnos. */

#include <sqlite3.h>

#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(sqlite3 *, sqlite3_close_v2);
DEFINE_TRIVIAL_CLEANUP_FUNC(sqlite3_stmt *, sqlite3_finalize);

/* SQLITE_FULL -> -ENOSPC, SQLITE_CORRUPT/NOTADB -> -EBADMSG, SQLITE_BUSY/LOCKED -> -EBUSY, ... */
int sqlite_result_to_errno(int rc);
