/* SPDX-License-Identifier: MIT */
/* The one-row query of src/shared/sqlite-util: what it returns with a row, without one and on errors, what
 * it reads, and that it always leaves the statement reset. */

#include "sqlite-util.h"
#include "tests.h"

static sqlite3 *db_new(void) {
        sqlite3 *db = NULL;

        ASSERT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(db,
                               "CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER, s TEXT);"
                               "INSERT INTO t VALUES ('a', 1, 'one'), ('b', NULL, NULL), ('c', 3, 'three');",
                               NULL, NULL, NULL),
                  SQLITE_OK);
        return db;
}

typedef struct Seen {
        unsigned calls;
        int64_t n;
        int fail_with;
} Seen;

static int read_n(sqlite3_stmt *stmt, void *userdata) {
        Seen *seen = userdata;

        seen->calls++;
        seen->n = sqlite3_column_int64(stmt, 0);
        return seen->fail_with;
}

static void test_step_one_reads_the_row_and_resets(void) {
        _cleanup_(sqlite3_close_v2p) sqlite3 *db = db_new();
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        Seen seen = {};

        ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT n FROM t WHERE k = ?", -1, &stmt, NULL), SQLITE_OK);

        ASSERT_EQ(sqlite3_bind_text(stmt, 1, "c", -1, SQLITE_STATIC), SQLITE_OK);
        ASSERT_EQ(sqlite_step_one(stmt, read_n, &seen), 1);
        ASSERT_EQ(seen.calls, 1);
        ASSERT_EQ(seen.n, 3);
        ASSERT_FALSE(sqlite3_stmt_busy(stmt)); /* reset: it holds no snapshot */

        /* No row: 0, and the reader is not called. */
        ASSERT_EQ(sqlite3_bind_text(stmt, 1, "zzz", -1, SQLITE_STATIC), SQLITE_OK);
        ASSERT_EQ(sqlite_step_one(stmt, read_n, &seen), 0);
        ASSERT_EQ(seen.calls, 1);
        ASSERT_FALSE(sqlite3_stmt_busy(stmt));

        /* Without a reader: whether there is a row. */
        ASSERT_EQ(sqlite3_bind_text(stmt, 1, "a", -1, SQLITE_STATIC), SQLITE_OK);
        ASSERT_EQ(sqlite_step_one(stmt, NULL, NULL), 1);

        /* The reader's error is passed on, and the statement is reset all the same. */
        seen.fail_with = -ENOMEM;
        ASSERT_EQ(sqlite_step_one(stmt, read_n, &seen), -ENOMEM);
        ASSERT_EQ(seen.calls, 2);
        ASSERT_EQ(seen.n, 1);
        ASSERT_FALSE(sqlite3_stmt_busy(stmt));
}

static void test_step_one_takes_only_the_first_of_several_rows(void) {
        _cleanup_(sqlite3_close_v2p) sqlite3 *db = db_new();
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int64_t n = -1;

        ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT n FROM t WHERE n IS NOT NULL ORDER BY k DESC", -1, &stmt, NULL),
                  SQLITE_OK);
        ASSERT_EQ(sqlite_step_one(stmt, sqlite_row_int64, &n), 1);
        ASSERT_EQ(n, 3);
        ASSERT_FALSE(sqlite3_stmt_busy(stmt));
        /* Again from the start, not the second row: it was reset. */
        ASSERT_EQ(sqlite_step_one(stmt, sqlite_row_int64, &n), 1);
        ASSERT_EQ(n, 3);
}

static void test_step_one_failing_step_is_a_negative_errno_and_resets(void) {
        _cleanup_(sqlite3_close_v2p) sqlite3 *db = db_new();
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;

        ASSERT_EQ(sqlite3_prepare_v2(db, "INSERT INTO t (k) VALUES (?)", -1, &stmt, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_bind_text(stmt, 1, "a", -1, SQLITE_STATIC), SQLITE_OK);
        ASSERT_EQ(sqlite_step_one(stmt, NULL, NULL), -EEXIST); /* SQLITE_CONSTRAINT */
        ASSERT_FALSE(sqlite3_stmt_busy(stmt));
        /* Reusable at once. */
        ASSERT_EQ(sqlite3_bind_text(stmt, 1, "d", -1, SQLITE_STATIC), SQLITE_OK);
        ASSERT_EQ(sqlite_step_one(stmt, NULL, NULL), 0);
        ASSERT_EQ(sqlite3_changes(db), 1);
}

static void test_row_readers_for_values_and_nulls(void) {
        _cleanup_(sqlite3_close_v2p) sqlite3 *db = db_new();
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *n_stmt = NULL, *s_stmt = NULL;
        _cleanup_free_ char *text = NULL;
        int64_t n;

        ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT n FROM t WHERE k = ?", -1, &n_stmt, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT s FROM t WHERE k = ?", -1, &s_stmt, NULL), SQLITE_OK);

        ASSERT_EQ(sqlite3_bind_text(n_stmt, 1, "b", -1, SQLITE_STATIC), SQLITE_OK);
        n = 99;
        ASSERT_EQ(sqlite_step_one(n_stmt, sqlite_row_int64, &n), 1); /* a row, holding NULL */
        ASSERT_EQ(n, 0);
        ASSERT_EQ(sqlite3_bind_text(n_stmt, 1, "nope", -1, SQLITE_STATIC), SQLITE_OK);
        n = 99;
        ASSERT_EQ(sqlite_step_one(n_stmt, sqlite_row_int64, &n), 0);
        ASSERT_EQ(n, 99); /* no row: the reader did not run */

        ASSERT_EQ(sqlite3_bind_text(s_stmt, 1, "c", -1, SQLITE_STATIC), SQLITE_OK);
        ASSERT_EQ(sqlite_step_one(s_stmt, sqlite_row_text, &text), 1);
        ASSERT_STREQ(text, "three");
        text = mfree(text);
        ASSERT_EQ(sqlite3_bind_text(s_stmt, 1, "b", -1, SQLITE_STATIC), SQLITE_OK);
        ASSERT_EQ(sqlite_step_one(s_stmt, sqlite_row_text, &text), 1);
        ASSERT_NULL(text);
        ASSERT_EQ(sqlite3_bind_text(s_stmt, 1, "nope", -1, SQLITE_STATIC), SQLITE_OK);
        ASSERT_EQ(sqlite_step_one(s_stmt, sqlite_row_text, &text), 0);
        ASSERT_NULL(text);
}

static void test_query_one_prepares_steps_and_finalizes(void) {
        _cleanup_(sqlite3_close_v2p) sqlite3 *db = db_new();
        _cleanup_free_ char *text = NULL;
        int64_t n;

        ASSERT_EQ(sqlite_query_one_int64(db, "SELECT COUNT(*) FROM t", &n), 1);
        ASSERT_EQ(n, 3);
        ASSERT_EQ(sqlite_query_one_int64(db, "PRAGMA user_version", &n), 1);
        ASSERT_EQ(n, 0);
        ASSERT_EQ(sqlite_query_one_text(db, "SELECT group_concat(k, ',') FROM t", &text), 1);
        ASSERT_STREQ(text, "a,b,c");
        text = mfree(text);
        ASSERT_EQ(sqlite_query_one_text(db, "SELECT s FROM t WHERE 0", &text), 0);
        ASSERT_NULL(text);

        /* Errors of the prepare and of the step. */
        ASSERT_EQ(sqlite_query_one_int64(db, "SELEKT 1", &n), -EIO);
        ASSERT_EQ(sqlite_query_one_int64(db, "SELECT * FROM no_such_table", &n), -EIO);
        ASSERT_EQ(sqlite_query_one_int64(db, "  -- nothing", &n), -EINVAL);
        ASSERT_EQ(sqlite_query_one_int64(db, "INSERT INTO t (k) VALUES ('a')", &n), -EEXIST);

        /* Nothing was left unfinalized: the connection closes cleanly. */
        ASSERT_EQ(sqlite3_next_stmt(db, NULL), NULL);
}

static void test_column_strdup_copies_text_and_null(void) {
        _cleanup_(sqlite3_close_v2p) sqlite3 *db = db_new();
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        _cleanup_free_ char *a = NULL, *b = NULL;

        ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT 'x', NULL", -1, &stmt, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
        ASSERT_OK(sqlite_column_strdup(stmt, 0, &a));
        ASSERT_STREQ(a, "x");
        ASSERT_OK(sqlite_column_strdup(stmt, 1, &b));
        ASSERT_NULL(b);
}

int main(void) {
        TEST_RUN(test_step_one_reads_the_row_and_resets);
        TEST_RUN(test_step_one_takes_only_the_first_of_several_rows);
        TEST_RUN(test_step_one_failing_step_is_a_negative_errno_and_resets);
        TEST_RUN(test_row_readers_for_values_and_nulls);
        TEST_RUN(test_query_one_prepares_steps_and_finalizes);
        TEST_RUN(test_column_strdup_copies_text_and_null);
        return 0;
}
