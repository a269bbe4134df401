/* SPDX-License-Identifier: MIT */
/* The cleanup and ownership helpers of src/shared, and the sqlite/json/curl cleanup and error mappings. */

#include <fcntl.h>

#include "curl-util.h"
#include "json-util.h"
#include "macro.h"
#include "sqlite-util.h"
#include "tests.h"

static unsigned n_freed;

typedef struct Thing {
        int value;
} Thing;

static Thing *thing_free(Thing *t) {
        if (t)
                n_freed++;
        return mfree(t);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Thing *, thing_free);

static Thing *make_and_keep(void) {
        _cleanup_(thing_freep) Thing *t = new0(Thing, 1);

        ASSERT_NOT_NULL(t);
        t->value = 7;
        return TAKE_PTR(t);
}

static void test_cleanup_frees_at_scope_end(void) {
        n_freed = 0;
        {
                _cleanup_(thing_freep) Thing *t = new0(Thing, 1);
                ASSERT_NOT_NULL(t);
                ASSERT_EQ(t->value, 0); /* new0 zeroes */
        }
        ASSERT_EQ(n_freed, 1);
        {
                _cleanup_(thing_freep) Thing *t = NULL; /* NULL is fine */
                (void) t;
        }
        ASSERT_EQ(n_freed, 1);
}

static void test_take_ptr_transfers_ownership(void) {
        Thing *t;

        n_freed = 0;
        t = make_and_keep();
        ASSERT_EQ(n_freed, 0);
        ASSERT_EQ(t->value, 7);
        thing_free(t);
        ASSERT_EQ(n_freed, 1);
}

static void test_take_fd_and_closep(void) {
        int kept;
        {
                _cleanup_close_ int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                ASSERT_TRUE(fd >= 0);
                kept = TAKE_FD(fd);
                ASSERT_EQ(fd, -1);
        }
        ASSERT_TRUE(fcntl(kept, F_GETFD) >= 0); /* still open: ownership moved */
        {
                _cleanup_close_ int fd = kept;
                (void) fd;
        }
        ASSERT_TRUE(fcntl(kept, F_GETFD) < 0 && errno == EBADF);
}

static void test_string_helpers(void) {
        char *s = NULL;

        ASSERT_TRUE(streq_ptr(NULL, NULL));
        ASSERT_FALSE(streq_ptr("a", NULL));
        ASSERT_TRUE(isempty(""));
        ASSERT_TRUE(isempty(NULL));
        ASSERT_STREQ(startswith("/v1/kkt/receipt/abc", "/v1/kkt/receipt/"), "abc");
        ASSERT_NULL(startswith("/v2", "/v1"));
        ASSERT_OK(free_and_strdup(&s, "x"));
        ASSERT_STREQ(s, "x");
        ASSERT_OK(free_and_strdup(&s, NULL));
        ASSERT_NULL(s);
        ASSERT_TRUE(IN_SET(3, 1, 2, 3));
        ASSERT_FALSE(IN_SET(4, 1, 2, 3));
        ASSERT_EQ(CLAMP(10, 0, 5), 5);
}

static void test_sqlite_cleanup_and_errors(void) {
        {
                _cleanup_(sqlite3_close_v2p) sqlite3 *db = NULL;
                _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;

                ASSERT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
                ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT 1", -1, &st, NULL), SQLITE_OK);
                ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
        }
        ASSERT_EQ(sqlite_result_to_errno(SQLITE_OK), 0);
        ASSERT_EQ(sqlite_result_to_errno(SQLITE_FULL), -ENOSPC);
        ASSERT_EQ(sqlite_result_to_errno(SQLITE_IOERR_FSYNC), -EIO);
        ASSERT_EQ(sqlite_result_to_errno(SQLITE_CORRUPT), -EBADMSG);
        ASSERT_EQ(sqlite_result_to_errno(SQLITE_NOTADB), -EBADMSG);
        ASSERT_EQ(sqlite_result_to_errno(SQLITE_BUSY_SNAPSHOT), -EBUSY);
        ASSERT_EQ(sqlite_result_to_errno(SQLITE_CONSTRAINT_PRIMARYKEY), -EEXIST);
}

static void test_json_and_curl_cleanup(void) {
        {
                _cleanup_(json_object_putp) json_object *o = json_object_new_object();
                ASSERT_NOT_NULL(o);
                ASSERT_EQ(json_object_object_add(o, "k", json_object_new_int(1)), 0);
        }
        {
                _cleanup_(curl_easy_cleanupp) CURL *c = curl_easy_init();
                _cleanup_(curl_slist_free_allp) struct curl_slist *l = curl_slist_append(NULL, "A: b");
                ASSERT_NOT_NULL(c);
                ASSERT_NOT_NULL(l);
        }
        ASSERT_EQ(curl_code_to_errno(CURLE_OK), 0);
        ASSERT_EQ(curl_code_to_errno(CURLE_OPERATION_TIMEDOUT), -ETIMEDOUT);
        ASSERT_EQ(curl_code_to_errno(CURLE_COULDNT_CONNECT), -ECONNREFUSED);
        ASSERT_EQ(curl_code_to_errno(CURLE_GOT_NOTHING), -ECONNRESET);
        ASSERT_EQ(curl_code_to_errno(CURLE_COULDNT_RESOLVE_HOST), -EHOSTUNREACH);
}

int main(void) {
        TEST_RUN(test_cleanup_frees_at_scope_end);
        TEST_RUN(test_take_ptr_transfers_ownership);
        TEST_RUN(test_take_fd_and_closep);
        TEST_RUN(test_string_helpers);
        TEST_RUN(test_sqlite_cleanup_and_errors);
        TEST_RUN(test_json_and_curl_cleanup);
        return 0;
}
