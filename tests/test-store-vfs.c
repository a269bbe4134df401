/* SPDX-License-Identifier: MIT */
/* The WAL write-gathering VFS: WAL writes reach the file at the sync, in order, and the connection sees its
 * own writes; other files are untouched; a database through it stays whole for other connections. */

#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store-vfs.h"
#include "tests.h"

typedef struct Env {
        char dir[PATH_MAX / 2];
        char path[PATH_MAX];
        sqlite3_vfs *vfs;
} Env;

static void env_setup(Env *e) {
        const char *tmp = getenv("TMPDIR") ?: "/tmp";

        snprintf(e->dir, sizeof e->dir, "%s/test-store-vfs-XXXXXX", tmp);
        ASSERT_NOT_NULL(mkdtemp(e->dir));
        snprintf(e->path, sizeof e->path, "%s/buffer.db", e->dir);
        /* A WAL file takes its owner and mode from its database, which must exist. */
        ASSERT_OK(close(open(e->path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600)));
        ASSERT_OK(store_vfs_register());
        ASSERT_OK(store_vfs_register()); /* once is enough, twice is harmless */
        e->vfs = sqlite3_vfs_find(STORE_VFS_NAME);
        ASSERT_NOT_NULL(e->vfs);
}

static void env_teardown(Env *e) {
        char cmd[PATH_MAX + 16];

        snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
        ASSERT_EQ(system(cmd), 0);
}

static sqlite3_file *file_open(Env *e, const char *path, int type) {
        sqlite3_file *f = calloc(1, (size_t) e->vfs->szOsFile);
        int out = 0;

        ASSERT_NOT_NULL(f);
        ASSERT_EQ(e->vfs->xOpen(e->vfs, path, f, type | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &out),
                  SQLITE_OK);
        ASSERT_NOT_NULL(f->pMethods);
        return f;
}

static void file_close(sqlite3_file *f) {
        ASSERT_EQ(f->pMethods->xClose(f), SQLITE_OK);
        free(f);
}

static off_t disk_size(const char *path) {
        struct stat st;

        ASSERT_OK(stat(path, &st));
        return st.st_size;
}

/* What is on disk, read through a descriptor of its own. */
static void assert_disk_bytes(const char *path, off_t offset, const void *expected, size_t n) {
        char *buf = malloc(n);
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        ASSERT_NOT_NULL(buf);
        ASSERT_OK(fd);
        ASSERT_EQ(pread(fd, buf, n, offset), (ssize_t) n);
        ASSERT_EQ(memcmp(buf, expected, n), 0);
        close(fd);
        free(buf);
}

static void test_wal_writes_reach_the_file_at_the_sync_in_one_piece(void) {
        char wal[PATH_MAX + 8], header[24], page[4096], both[24 + 4096];
        sqlite3_file *f;
        Env e;

        env_setup(&e);
        snprintf(wal, sizeof wal, "%s-wal", e.path);
        f = file_open(&e, wal, SQLITE_OPEN_WAL);
        memset(header, 'h', sizeof header);
        memset(page, 'p', sizeof page);
        memcpy(both, header, sizeof header);
        memcpy(both + sizeof header, page, sizeof page);

        /* Five frames, as SQLite writes them: header, then page. */
        for (int i = 0; i < 5; i++) {
                ASSERT_EQ(f->pMethods->xWrite(f, header, sizeof header, 32 + i * 4120), SQLITE_OK);
                ASSERT_EQ(f->pMethods->xWrite(f, page, sizeof page, 32 + i * 4120 + 24), SQLITE_OK);
        }
        ASSERT_EQ(disk_size(wal), 0); /* nothing written yet */

        ASSERT_EQ(f->pMethods->xSync(f, SQLITE_SYNC_FULL), SQLITE_OK);
        ASSERT_EQ(disk_size(wal), 32 + 5 * 4120);
        for (int i = 0; i < 5; i++)
                assert_disk_bytes(wal, 32 + i * 4120, both, sizeof both);
        file_close(f);
        env_teardown(&e);
}

static void test_connection_reads_and_sizes_its_own_buffered_writes(void) {
        char wal[PATH_MAX + 8], data[100], back[100];
        sqlite3_int64 size = 0;
        sqlite3_file *f;
        Env e;

        env_setup(&e);
        snprintf(wal, sizeof wal, "%s-wal", e.path);
        f = file_open(&e, wal, SQLITE_OPEN_WAL);
        memset(data, 'x', sizeof data);

        ASSERT_EQ(f->pMethods->xWrite(f, data, sizeof data, 1000), SQLITE_OK);
        ASSERT_EQ(f->pMethods->xFileSize(f, &size), SQLITE_OK);
        ASSERT_EQ(size, 1100);
        ASSERT_EQ(f->pMethods->xWrite(f, data, sizeof data, 1100), SQLITE_OK);
        ASSERT_EQ(f->pMethods->xRead(f, back, sizeof back, 1100), SQLITE_OK);
        ASSERT_EQ(memcmp(back, data, sizeof data), 0);
        ASSERT_EQ(disk_size(wal), 1200); /* the read wrote the buffer out first */

        /* Truncating and closing write out what is buffered before they act. */
        ASSERT_EQ(f->pMethods->xWrite(f, data, sizeof data, 1200), SQLITE_OK);
        ASSERT_EQ(f->pMethods->xTruncate(f, 1250), SQLITE_OK);
        ASSERT_EQ(disk_size(wal), 1250);
        ASSERT_EQ(f->pMethods->xWrite(f, data, sizeof data, 1250), SQLITE_OK);
        file_close(f);
        ASSERT_EQ(disk_size(wal), 1350);
        assert_disk_bytes(wal, 1250, data, sizeof data);
        env_teardown(&e);
}

static void test_writes_out_of_sequence_keep_their_order(void) {
        char wal[PATH_MAX + 8], a[200], b[200], expected[300];
        sqlite3_file *f;
        Env e;

        env_setup(&e);
        snprintf(wal, sizeof wal, "%s-wal", e.path);
        f = file_open(&e, wal, SQLITE_OPEN_WAL);
        memset(a, 'a', sizeof a);
        memset(b, 'b', sizeof b);

        /* A frame rewritten in place after later ones: the later write must win. */
        ASSERT_EQ(f->pMethods->xWrite(f, a, sizeof a, 0), SQLITE_OK);
        ASSERT_EQ(f->pMethods->xWrite(f, b, sizeof b, 100), SQLITE_OK);
        ASSERT_EQ(f->pMethods->xSync(f, SQLITE_SYNC_NORMAL), SQLITE_OK);
        memset(expected, 'a', 100);
        memset(expected + 100, 'b', 200);
        assert_disk_bytes(wal, 0, expected, sizeof expected);
        file_close(f);
        env_teardown(&e);
}

/* More than the buffer holds, in frames: written out as it fills, nothing lost or reordered. */
static void test_long_run_of_frames_is_written_in_pieces(void) {
        char wal[PATH_MAX + 8], page[4120];
        sqlite3_file *f;
        Env e;

        env_setup(&e);
        snprintf(wal, sizeof wal, "%s-wal", e.path);
        f = file_open(&e, wal, SQLITE_OPEN_WAL);
        for (int i = 0; i < 100; i++) {
                memset(page, 'A' + i % 26, sizeof page);
                ASSERT_EQ(f->pMethods->xWrite(f, page, sizeof page, (sqlite3_int64) i * 4120), SQLITE_OK);
        }
        ASSERT_TRUE(disk_size(wal) > 0 && disk_size(wal) < 100 * 4120);
        ASSERT_EQ(f->pMethods->xSync(f, SQLITE_SYNC_NORMAL), SQLITE_OK);
        ASSERT_EQ(disk_size(wal), 100 * 4120);
        for (int i = 0; i < 100; i++) {
                memset(page, 'A' + i % 26, sizeof page);
                assert_disk_bytes(wal, (off_t) i * 4120, page, sizeof page);
        }
        file_close(f);
        env_teardown(&e);
}

static void test_other_files_are_written_at_once(void) {
        char data[512];
        sqlite3_file *f;
        Env e;

        env_setup(&e);
        f = file_open(&e, e.path, SQLITE_OPEN_MAIN_DB);
        memset(data, 'd', sizeof data);
        ASSERT_EQ(f->pMethods->xWrite(f, data, sizeof data, 0), SQLITE_OK);
        ASSERT_EQ(disk_size(e.path), (off_t) sizeof data);
        assert_disk_bytes(e.path, 0, data, sizeof data);
        file_close(f);
        env_teardown(&e);
}

static int64_t count_rows(const char *path) {
        sqlite3 *db = NULL;
        sqlite3_stmt *stmt = NULL;
        int64_t n;

        ASSERT_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM t", -1, &stmt, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
        n = sqlite3_column_int64(stmt, 0);
        sqlite3_finalize(stmt);
        sqlite3_close(db);
        return n;
}

/* A database in WAL mode with synchronous=FULL through the VFS: every commit is visible to a connection of
 * the default VFS at once, a transaction far larger than the buffer commits whole, and the file is sound. */
static void test_database_through_the_vfs_stays_whole(void) {
        sqlite3 *db = NULL;
        char *error = NULL;
        Env e;

        env_setup(&e);
        ASSERT_EQ(sqlite3_open_v2(e.path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, STORE_VFS_NAME),
                  SQLITE_OK);
        ASSERT_EQ(
                sqlite3_exec(db,
                             "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = 20;"
                             "CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB);",
                             NULL, NULL, &error),
                SQLITE_OK);

        for (int i = 0; i < 200; i++) {
                char sql[160];

                snprintf(sql, sizeof sql,
                         "INSERT INTO t VALUES (hex(randomblob(8)) || '-%d', randomblob(700))", i);
                ASSERT_EQ(sqlite3_exec(db, sql, NULL, NULL, &error), SQLITE_OK);
                if (i % 50 == 49)
                        ASSERT_EQ(count_rows(e.path), i + 1);
        }

        /* Spills pages into the WAL before the commit (a small cache) and rewrites some in place. */
        ASSERT_EQ(sqlite3_exec(db,
                               "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                               "WHERE i < 3000) INSERT INTO t SELECT 'bulk-' || i, randomblob(300) FROM n;"
                               "UPDATE t SET v = randomblob(310) WHERE k LIKE 'bulk-1%'; COMMIT;",
                               NULL, NULL, &error),
                  SQLITE_OK);
        ASSERT_EQ(count_rows(e.path), 3200);
        ASSERT_EQ(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, &error), SQLITE_OK);
        sqlite3_close(db);

        ASSERT_EQ(count_rows(e.path), 3200);
        ASSERT_EQ(sqlite3_open_v2(e.path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        {
                sqlite3_stmt *stmt = NULL;

                ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, NULL), SQLITE_OK);
                ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
                ASSERT_STREQ((const char *) sqlite3_column_text(stmt, 0), "ok");
                sqlite3_finalize(stmt);
        }
        sqlite3_close(db);
        env_teardown(&e);
}

int main(void) {
        TEST_RUN(test_wal_writes_reach_the_file_at_the_sync_in_one_piece);
        TEST_RUN(test_connection_reads_and_sizes_its_own_buffered_writes);
        TEST_RUN(test_writes_out_of_sequence_keep_their_order);
        TEST_RUN(test_long_run_of_frames_is_written_in_pieces);
        TEST_RUN(test_other_files_are_written_at_once);
        TEST_RUN(test_database_through_the_vfs_stays_whole);
        return 0;
}
