/* SPDX-License-Identifier: MIT */
/* Translation of SQLite result codes to errno values, and the one-row query. */

#include "log.h"
#include "sqlite-util.h"

int sqlite_result_to_errno(int rc) {
        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_ROW:
        case SQLITE_DONE:
                return 0;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                return -EBADMSG;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_CANTOPEN:
                return -ENOENT;
        case SQLITE_CONSTRAINT:
                return -EEXIST;
        case SQLITE_TOOBIG:
                return -E2BIG;
        case SQLITE_MISUSE:
        case SQLITE_RANGE:
                return -EINVAL;
        case SQLITE_INTERRUPT:
                return -EINTR;
        default:
                return -EIO;
        }
}

int sqlite_step_error(sqlite3 *db, int rc) {
        log_debug("SQLite error %i: %s", rc, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        return sqlite_result_to_errno(rc) ?: -EIO;
}

int sqlite_column_strdup(sqlite3_stmt *stmt, int i, char **ret) {
        const unsigned char *t;

        assert(stmt);
        assert(ret);

        t = sqlite3_column_text(stmt, i);
        if (!t) {
                *ret = NULL;
                return sqlite3_column_type(stmt, i) == SQLITE_NULL ? 0 : -ENOMEM;
        }
        *ret = strdup((const char *) t);
        return *ret ? 0 : -ENOMEM;
}

int sqlite_step_one(sqlite3_stmt *stmt, SqliteRowFunc read, void *userdata) {
        int rc, r;

        assert(stmt);

        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
                r = read ? read(stmt, userdata) : 0;
                r = MIN(r, 0);
        } else if (rc == SQLITE_DONE)
                r = 0;
        else
                r = sqlite_step_error(sqlite3_db_handle(stmt), rc); /* before the reset: its message */
        (void) sqlite3_reset(stmt);
        if (r < 0)
                return r;
        return rc == SQLITE_ROW;
}

int sqlite_row_int64(sqlite3_stmt *stmt, void *userdata) {
        *(int64_t *) userdata = sqlite3_column_int64(stmt, 0);
        return 0;
}

int sqlite_row_text(sqlite3_stmt *stmt, void *userdata) {
        return sqlite_column_strdup(stmt, 0, userdata);
}

static int query_one(sqlite3 *db, const char *sql, SqliteRowFunc read, void *userdata) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int rc;

        assert(db);
        assert(sql);

        rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
        if (rc != SQLITE_OK)
                return sqlite_step_error(db, rc);
        if (!stmt) /* only white space or a comment */
                return -EINVAL;
        return sqlite_step_one(stmt, read, userdata);
}

int sqlite_query_one_int64(sqlite3 *db, const char *sql, int64_t *ret) {
        assert(ret);

        *ret = 0;
        return query_one(db, sql, sqlite_row_int64, ret);
}

int sqlite_query_one_text(sqlite3 *db, const char *sql, char **ret) {
        assert(ret);

        *ret = NULL;
        return query_one(db, sql, sqlite_row_text, ret);
}
