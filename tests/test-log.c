/* SPDX-License-Identifier: MIT */
/* Log levels, the "<N>" console format, %m, the journal-stream detection and the rate limit. */

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

#include "log.h"
#include "tests.h"

/* Runs fn with stderr redirected into a temporary file and returns what was written. */
static char *capture_stderr(void (*fn)(void)) {
        char path[] = "/tmp/test-log-XXXXXX";
        int fd = mkstemp(path), saved = dup(STDERR_FILENO);
        static char buf[4096];
        ssize_t n;

        ASSERT_TRUE(fd >= 0 && saved >= 0);
        unlink(path);
        ASSERT_TRUE(dup2(fd, STDERR_FILENO) >= 0);
        fn();
        ASSERT_TRUE(dup2(saved, STDERR_FILENO) >= 0);
        close(saved);
        n = pread(fd, buf, sizeof buf - 1, 0);
        ASSERT_TRUE(n >= 0);
        buf[n] = 0;
        close(fd);
        return buf;
}

static void log_some(void) {
        log_set_max_level(LOG_INFO);
        log_info("hello %d", 42);
        log_debug("not shown");
        log_error_errno(ENOENT, "open: %m");
        log_struct(LOG_NOTICE, "0123456789abcdef0123456789abcdef", LOG_FIELDS({ "RECEIPT_ID", "r1" }),
                   "structured %s", "message");
}

static void test_console_format_and_levels(void) {
        const char *out;

        log_setup(LOG_TARGET_CONSOLE);
        out = capture_stderr(log_some);
        ASSERT_STREQ(out, "<6>hello 42\n<3>open: No such file or directory\n<5>structured message\n");
}

static void test_errno_return_value(void) {
        log_set_max_level(LOG_EMERG); /* suppressed messages still return the error */
        ASSERT_EQ(log_error_errno(EIO, "x"), -EIO);
        ASSERT_EQ(log_error_errno(-EIO, "x"), -EIO);
        ASSERT_EQ(log_debug_errno(ENOMEM, "x"), -ENOMEM);
        log_set_max_level(LOG_INFO);
}

static void test_level_names(void) {
        ASSERT_EQ(log_level_from_string("debug"), LOG_DEBUG);
        ASSERT_EQ(log_level_from_string("warning"), LOG_WARNING);
        ASSERT_EQ(log_level_from_string("err"), LOG_ERR);
        ASSERT_EQ(log_level_from_string("error"), LOG_ERR);
        ASSERT_EQ(log_level_from_string("loud"), -EINVAL);
        ASSERT_STREQ(log_level_to_string(LOG_NOTICE), "notice");
}

static void test_level_clamped_and_out_of_range_names(void) {
        log_set_max_level(LOG_DEBUG + 5);
        ASSERT_EQ(log_get_max_level(), LOG_DEBUG);
        log_set_max_level(-3);
        ASSERT_EQ(log_get_max_level(), LOG_EMERG);
        log_set_max_level(LOG_INFO);
        ASSERT_NULL(log_level_to_string(-1));
        ASSERT_NULL(log_level_to_string(LOG_DEBUG + 1));
        ASSERT_EQ(log_level_from_string(NULL), -EINVAL);
        ASSERT_EQ(log_level_from_string("warn"), LOG_WARNING);
        for (int l = LOG_EMERG; l <= LOG_DEBUG; l++)
                ASSERT_EQ(log_level_from_string(log_level_to_string(l)), l);
}

static void *read_levels(void *userdata) {
        const bool *stop = userdata;

        /* Every value a reader sees is one the writer set. (Under ThreadSanitizer, this is the race the
         * atomic removed: the loop sets the level on SIGHUP while the store's threads log.) */
        for (unsigned i = 0; i < 200000 && !__atomic_load_n(stop, __ATOMIC_RELAXED); i++) {
                int l = log_get_max_level();
                ASSERT_TRUE(l == LOG_INFO || l == LOG_DEBUG);
        }
        return NULL;
}

static void test_level_set_on_one_thread_read_on_another(void) {
        pthread_t t;
        bool stop = false;

        log_set_max_level(LOG_INFO);
        ASSERT_EQ(pthread_create(&t, NULL, read_levels, &stop), 0);
        for (unsigned i = 0; i < 100000; i++)
                log_set_max_level(i % 2 ? LOG_DEBUG : LOG_INFO);
        __atomic_store_n(&stop, true, __ATOMIC_RELAXED);
        ASSERT_EQ(pthread_join(t, NULL), 0);
        log_set_max_level(LOG_INFO);
        ASSERT_EQ(log_get_max_level(), LOG_INFO);
}

static void test_journal_stream_detection(void) {
        char path[] = "/tmp/test-log-XXXXXX", env[64];
        int fd = mkstemp(path), saved = dup(STDERR_FILENO);
        struct stat st;

        ASSERT_TRUE(fd >= 0 && saved >= 0);
        unlink(path);
        ASSERT_TRUE(fstat(fd, &st) >= 0);
        ASSERT_TRUE(dup2(fd, STDERR_FILENO) >= 0);

        unsetenv("JOURNAL_STREAM");
        ASSERT_FALSE(log_stderr_is_journal());
        snprintf(env, sizeof env, "%llu:%llu", (unsigned long long) st.st_dev, (unsigned long long) st.st_ino);
        setenv("JOURNAL_STREAM", env, 1);
        ASSERT_TRUE(log_stderr_is_journal());
        log_setup(LOG_TARGET_AUTO);
        ASSERT_EQ(log_get_target(), LOG_TARGET_JOURNAL);
        /* Inherited from a parent whose stderr was the journal, but ours is something else now. */
        snprintf(env, sizeof env, "%llu:%llu", (unsigned long long) st.st_dev, (unsigned long long) st.st_ino + 1);
        setenv("JOURNAL_STREAM", env, 1);
        ASSERT_FALSE(log_stderr_is_journal());
        log_setup(LOG_TARGET_AUTO);
        ASSERT_EQ(log_get_target(), LOG_TARGET_CONSOLE);

        unsetenv("JOURNAL_STREAM");
        ASSERT_TRUE(dup2(saved, STDERR_FILENO) >= 0);
        close(saved);
        close(fd);
}

static void test_ratelimit(void) {
        RateLimit rl = RATELIMIT_INIT(60 * 1000000ULL, 3);
        unsigned suppressed = 99;

        ASSERT_TRUE(ratelimit_below(&rl, &suppressed));
        ASSERT_EQ(suppressed, 0);
        ASSERT_TRUE(ratelimit_below(&rl, NULL));
        ASSERT_TRUE(ratelimit_below(&rl, NULL));
        ASSERT_FALSE(ratelimit_below(&rl, NULL));
        ASSERT_FALSE(ratelimit_below(&rl, NULL));
        ASSERT_EQ(rl.suppressed, 2);
        rl.begin -= 61 * 1000000ULL; /* the interval has passed */
        ASSERT_TRUE(ratelimit_below(&rl, &suppressed));
        ASSERT_EQ(suppressed, 2);
}

int main(void) {
        TEST_RUN(test_console_format_and_levels);
        TEST_RUN(test_errno_return_value);
        TEST_RUN(test_level_names);
        TEST_RUN(test_level_clamped_and_out_of_range_names);
        TEST_RUN(test_level_set_on_one_thread_read_on_another);
        TEST_RUN(test_journal_stream_detection);
        TEST_RUN(test_ratelimit);
        return 0;
}
