/* SPDX-License-Identifier: MIT */
/* The store opened by a user that may not write the state directory or the buffer: -EACCES and a message
 * that names the path, its owner and the owner needed, instead of "No such file or directory" or
 * "Read-only file system". The store runs as nobody in a child process, on a state directory that root
 * owns; root is needed to set that up (skipped otherwise: root itself is never refused). */

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-event.h>

#include "log.h"
#include "store.h"
#include "tests.h"

#define NOBODY 65534

typedef struct Outcome {
        int error;
        char message[4096];
} Outcome;

/* store_open() as nobody, and on failure store_log_open_error(): what it returned and what it logged. */
static void open_as_nobody(const char *path, Outcome *ret) {
        int pipefd[2], status;
        size_t n = 0;
        ssize_t k;
        pid_t pid;

        ASSERT_OK(pipe2(pipefd, O_CLOEXEC));
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0) {
                sd_event *event = NULL;
                Store *s = NULL;
                int r;

                if (dup2(pipefd[1], STDERR_FILENO) < 0 || setgroups(0, NULL) < 0 ||
                    setresgid(NOBODY, NOBODY, NOBODY) < 0 || setresuid(NOBODY, NOBODY, NOBODY) < 0)
                        _exit(EXIT_TEST_SKIP + 100);
                log_setup(LOG_TARGET_CONSOLE);
                log_set_max_level(LOG_INFO);
                if (sd_event_new(&event) < 0)
                        _exit(EXIT_TEST_SKIP + 101);
                r = store_open(&s, event, path, NULL);
                if (r >= 0)
                        store_free(s);
                else
                        (void) store_log_open_error(r, path);
                _exit(r < 0 ? -r : 0);
        }

        close(pipefd[1]);
        *ret = (Outcome) {};
        while (n < sizeof ret->message - 1 &&
               (k = read(pipefd[0], ret->message + n, sizeof ret->message - 1 - n)) > 0)
                n += (size_t) k;
        close(pipefd[0]);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_TRUE(WEXITSTATUS(status) < EXIT_TEST_SKIP + 100); /* the child became nobody */
        ret->error = -WEXITSTATUS(status);
        fprintf(stderr, "   as nobody: %i, \"%s\"\n", ret->error, ret->message);
}

static void assert_contains(const char *haystack, const char *needle) {
        if (!strstr(haystack, needle)) {
                fprintf(stderr, "\"%s\" not in \"%s\"\n", needle, haystack);
                exit(EXIT_FAILURE);
        }
}

static void assert_not_contains(const char *haystack, const char *needle) {
        if (strstr(haystack, needle)) {
                fprintf(stderr, "\"%s\" in \"%s\"\n", needle, haystack);
                exit(EXIT_FAILURE);
        }
}

/* A permission message: EACCES, the path closed to us and its owner, and the owner needed. */
static void assert_permission_message(const Outcome *o, const char *bad_path, const char *owner) {
        struct passwd *pw = getpwuid(NOBODY);
        char needed[128], owned[PATH_MAX + 64];

        ASSERT_EQ(o->error, -EACCES);
        assert_contains(o->message, "Permission denied");
        assert_contains(o->message, "EACCES");
        snprintf(owned, sizeof owned, "%s is owned by %s", bad_path, owner);
        assert_contains(o->message, owned);
        snprintf(needed, sizeof needed, "must be owned by %s", pw ? pw->pw_name : "65534");
        assert_contains(o->message, needed);
        assert_contains(o->message, "uid 65534");
        assert_not_contains(o->message, "No such file or directory");
        assert_not_contains(o->message, "Read-only file system");
}

/* root's, 0755: nobody may look, not write. */
static void state_dir_new(char *dir, char *path, size_t size) {
        ASSERT_NOT_NULL(mkdtemp(dir));
        ASSERT_OK(chmod(dir, 0755));
        snprintf(path, size, "%s/buffer.db", dir);
}

/* Opening as nobody is refused for bad_path, which root owns. */
static void expect_refused(const char *path, const char *bad_path, Outcome *o) {
        open_as_nobody(path, o);
        assert_permission_message(o, bad_path, "root:root");
}

static void create_buffer_as_root(const char *path) {
        sd_event *event = NULL;
        Store *s = NULL;

        ASSERT_OK(sd_event_new(&event));
        ASSERT_OK(store_open(&s, event, path, NULL));
        store_free(s);
        sd_event_unref(event);
        ASSERT_OK(chmod(path, 0644));
}

static void remove_all(const char *dir, const char *path) {
        char p[PATH_MAX + 8];

        (void) unlink(path);
        snprintf(p, sizeof p, "%s-wal", path);
        (void) unlink(p);
        snprintf(p, sizeof p, "%s-shm", path);
        (void) unlink(p);
        ASSERT_OK(rmdir(dir));
}

static void test_state_directory_of_root_is_eacces_naming_it_and_the_owner_needed(void) {
        char dir[] = "/tmp/test-store-access-XXXXXX", path[sizeof dir + 16];
        Outcome o;

        state_dir_new(dir, path, sizeof path);

        /* No file yet: SQLite cannot create it. */
        expect_refused(path, dir, &o);
        assert_contains(o.message, "mode 0755");
        assert_contains(o.message, "create files in");
        ASSERT_TRUE(access(path, F_OK) < 0);

        /* The file is ours (nobody's), the directory is not: the WAL cannot be created next to it. */
        create_buffer_as_root(path);
        ASSERT_OK(chown(path, NOBODY, NOBODY));
        expect_refused(path, dir, &o);

        remove_all(dir, path);
}

static void test_buffer_file_of_root_is_eacces_naming_it_not_erofs(void) {
        char dir[] = "/tmp/test-store-access-XXXXXX", path[sizeof dir + 16];
        Outcome o;

        state_dir_new(dir, path, sizeof path);
        create_buffer_as_root(path);

        /* SQLite opens a file it may only read read-only, and the first write fails: once "EROFS". */
        expect_refused(path, path, &o);
        assert_contains(o.message, "mode 0644");
        assert_contains(o.message, "read and write");

        /* The directory is ours, the file still root's. */
        ASSERT_OK(chown(dir, NOBODY, NOBODY));
        expect_refused(path, path, &o);

        /* Both ours: it opens. */
        ASSERT_OK(chown(path, NOBODY, NOBODY));
        open_as_nobody(path, &o);
        ASSERT_EQ(o.error, 0);
        ASSERT_STREQ(o.message, "");

        remove_all(dir, path);
}

static void test_other_open_errors_keep_their_errno_and_the_plain_message(void) {
        char dir[] = "/tmp/test-store-access-XXXXXX", path[sizeof dir + 32];
        Outcome o;

        state_dir_new(dir, path, sizeof path);

        /* A state directory that does not exist is not a permission problem. */
        snprintf(path, sizeof path, "%s/missing/buffer.db", dir);
        open_as_nobody(path, &o);
        ASSERT_EQ(o.error, -ENOENT);
        assert_contains(o.message, "Failed to open the receipt buffer");
        assert_contains(o.message, "No such file or directory");
        assert_not_contains(o.message, "EACCES");

        ASSERT_OK(rmdir(dir));
}

int main(void) {
        if (geteuid() != 0) {
                fprintf(stderr, "(skipped: needs root to run the store as another user)\n");
                return EXIT_TEST_SKIP;
        }
        TEST_RUN(test_state_directory_of_root_is_eacces_naming_it_and_the_owner_needed);
        TEST_RUN(test_buffer_file_of_root_is_eacces_naming_it_not_erofs);
        TEST_RUN(test_other_open_errors_keep_their_errno_and_the_plain_message);
        return 0;
}
