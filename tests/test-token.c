/* SPDX-License-Identifier: MIT */
/* Pins down where tokens come from (credential before file), what is stripped, and which files are
 * refused: shared with everyone, not regular, empty, too big, or with control characters inside; PEM
 * secrets with their lines; and that tokens are compared in constant time. */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* asprintf */
#endif

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "tests.h"
#include "memory-util.h"
#include "token.h"

static char *tmpdir;

static char *path_in(const char *dir, const char *name) {
        char *p = NULL;

        ASSERT_TRUE(asprintf(&p, "%s/%s", dir, name) > 0);
        return p;
}

static char *write_file(const char *dir, const char *name, const void *data, size_t size, mode_t mode) {
        char *p = path_in(dir, name);
        int fd;

        (void) unlink(p);
        fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, data, size), (ssize_t) size);
        ASSERT_OK(fchmod(fd, mode));
        close(fd);
        return p;
}

static char *write_token(const char *name, const char *content, mode_t mode) {
        return write_file(tmpdir, name, content, strlen(content), mode);
}

static void test_file_token_with_trailing_newline_stripped(void) {
        _cleanup_free_ char *p = write_token("a", "abc.DEF-123\n", 0600),
                            *q = write_token("b", "xyz \r\n\n", 0640);
        _cleanup_(erase_and_freep) char *t = NULL, *u = NULL;

        ASSERT_OK(read_token(p, NULL, &t));
        ASSERT_STREQ(t, "abc.DEF-123");
        ASSERT_OK(read_token(q, NULL, &u));
        ASSERT_STREQ(u, "xyz");
}

static void test_nothing_configured_is_no_token(void) {
        char *t = (char *) "sentinel";

        ASSERT_OK(unsetenv("CREDENTIALS_DIRECTORY"));
        ASSERT_OK(read_token(NULL, "heartbeat-token", &t));
        ASSERT_NULL(t);
        t = (char *) "sentinel";
        ASSERT_OK(read_token(NULL, NULL, &t));
        ASSERT_NULL(t);
}

static void test_configured_but_missing_file_is_an_error(void) {
        _cleanup_free_ char *p = path_in(tmpdir, "does-not-exist");
        char *t = NULL;

        ASSERT_ERROR(read_token(p, NULL, &t), ENOENT);
        ASSERT_NULL(t);
}

static void test_credential_wins_over_file(void) {
        _cleanup_free_ char *creds = path_in(tmpdir, "creds"), *file = write_token("f", "from-file\n", 0600),
                            *cred = NULL;
        _cleanup_(erase_and_freep) char *t = NULL, *u = NULL, *v = NULL;

        ASSERT_OK(mkdir(creds, 0700));
        cred = write_file(creds, "heartbeat-token", "from-credential", strlen("from-credential"), 0400);
        ASSERT_OK(setenv("CREDENTIALS_DIRECTORY", creds, 1));

        ASSERT_OK(read_token(file, "heartbeat-token", &t));
        ASSERT_STREQ(t, "from-credential");
        /* Also without a file configured. */
        ASSERT_OK(read_token(NULL, "heartbeat-token", &u));
        ASSERT_STREQ(u, "from-credential");
        /* A credential that was not passed falls back to the file. */
        ASSERT_OK(read_token(file, "ofd-token", &v));
        ASSERT_STREQ(v, "from-file");
        /* The unit's SetCredential= fallback for a missing file is a lone newline: that means "not
         * passed", and the file is used; without a file there is no token. */
        (void) unlink(cred);
        free(cred);
        cred = write_file(creds, "heartbeat-token", "\n", 1, 0400);
        erase_and_free(v);
        ASSERT_OK(read_token(file, "heartbeat-token", &v));
        ASSERT_STREQ(v, "from-file");
        erase_and_free(u);
        u = (char *) "sentinel";
        ASSERT_OK(read_token(NULL, "heartbeat-token", &u));
        ASSERT_NULL(u);
        /* A name that would leave the directory is a programming or configuration error. */
        ASSERT_ERROR(read_token(file, "../f", &v), EINVAL);

        ASSERT_OK(unsetenv("CREDENTIALS_DIRECTORY"));
        (void) unlink(cred);
        (void) rmdir(creds);
}

static void test_file_shared_with_others_is_refused(void) {
        _cleanup_free_ char *r = write_token("world-readable", "t", 0644),
                            *w = write_token("world-writable", "t", 0602);
        char *t = NULL;

        ASSERT_ERROR(read_token(r, NULL, &t), EPERM);
        ASSERT_ERROR(read_token(w, NULL, &t), EPERM);
        ASSERT_NULL(t);
}

static void test_bad_contents_are_refused(void) {
        static const char nul[] = { 'a', 0, 'b' };
        _cleanup_free_ char *empty = write_token("empty", "", 0600),
                            *blank = write_token("blank", " \n\n", 0600),
                            *inner = write_token("inner", "abc\ndef\n", 0600),
                            *ctrl = write_token("ctrl", "abc\x01" "def", 0600),
                            *zero = write_file(tmpdir, "nul", nul, sizeof nul, 0600), *big = NULL;
        _cleanup_free_ char *huge = malloc(TOKEN_SIZE_MAX + 2);
        _cleanup_(erase_and_freep) char *ok = NULL;
        char *t = NULL;

        ASSERT_ERROR(read_token(empty, NULL, &t), ENODATA);
        ASSERT_ERROR(read_token(blank, NULL, &t), ENODATA);
        ASSERT_ERROR(read_token(inner, NULL, &t), EBADMSG);
        ASSERT_ERROR(read_token(ctrl, NULL, &t), EBADMSG);
        ASSERT_ERROR(read_token(zero, NULL, &t), EBADMSG);

        ASSERT_NOT_NULL(huge);
        memset(huge, 'x', TOKEN_SIZE_MAX + 1);
        big = write_file(tmpdir, "big", huge, TOKEN_SIZE_MAX + 1, 0600);
        ASSERT_ERROR(read_token(big, NULL, &t), EFBIG);
        free(big);
        big = write_file(tmpdir, "max", huge, TOKEN_SIZE_MAX, 0600);
        ASSERT_OK(read_token(big, NULL, &ok));
        ASSERT_EQ(strlen(ok), TOKEN_SIZE_MAX);
        ASSERT_NULL(t);
}

static void test_not_a_regular_file_is_refused(void) {
        _cleanup_free_ char *fifo = path_in(tmpdir, "fifo");
        char *t = NULL;

        ASSERT_ERROR(read_token(tmpdir, NULL, &t), EBADF);
        /* A FIFO must not block the start waiting for a writer. */
        ASSERT_OK(mkfifo(fifo, 0600));
        ASSERT_ERROR(read_token(fifo, NULL, &t), EBADF);
        ASSERT_NULL(t);
}

static void test_pem_keeps_its_lines_and_a_certificate_may_be_public(void) {
        static const char pem[] = "-----BEGIN CERTIFICATE-----\r\nMIIB\tAA==\n-----END CERTIFICATE-----\n\n";
        _cleanup_free_ char *cert = write_token("cert.pem", pem, 0644);
        _cleanup_free_ char *key = write_token("key.pem", pem, 0644);
        _cleanup_free_ char *ctrl = write_token("ctrl.pem", "-----BEGIN\x01-----\n", 0600), *big = NULL;
        _cleanup_free_ char *huge = malloc(SECRET_PEM_SIZE_MAX + 1);
        _cleanup_(erase_and_freep) char *c = NULL, *ok = NULL;
        char *t = NULL;

        /* Lines inside are part of it; the trailing newlines are stripped as for a token. */
        ASSERT_OK(read_secret(cert, NULL, SECRET_PEM | SECRET_PUBLIC, &c));
        ASSERT_STREQ(c, "-----BEGIN CERTIFICATE-----\r\nMIIB\tAA==\n-----END CERTIFICATE-----");
        /* A private key readable by everyone is refused; a token with lines is refused. */
        ASSERT_ERROR(read_secret(key, NULL, SECRET_PEM, &t), EPERM);
        ASSERT_ERROR(read_token(cert, NULL, &t), EPERM);
        ASSERT_OK(chmod(cert, 0600));
        ASSERT_ERROR(read_token(cert, NULL, &t), EBADMSG);
        ASSERT_ERROR(read_secret(ctrl, NULL, SECRET_PEM, &t), EBADMSG);
        /* A certificate chain may be far longer than a token. */
        ASSERT_NOT_NULL(huge);
        memset(huge, 'A', SECRET_PEM_SIZE_MAX + 1);
        big = write_file(tmpdir, "big.pem", huge, SECRET_PEM_SIZE_MAX + 1, 0600);
        ASSERT_ERROR(read_secret(big, NULL, SECRET_PEM, &t), EFBIG);
        free(big);
        big = write_file(tmpdir, "chain.pem", huge, TOKEN_SIZE_MAX * 4, 0600);
        ASSERT_OK(read_secret(big, NULL, SECRET_PEM, &ok));
        ASSERT_EQ(strlen(ok), TOKEN_SIZE_MAX * 4);
        ASSERT_NULL(t);
}

static void test_token_equal_is_exact(void) {
        ASSERT_TRUE(token_equal("s3cr3t-token", "s3cr3t-token"));
        ASSERT_TRUE(token_equal("", ""));
        /* Differences anywhere: first byte, last byte, case. */
        ASSERT_FALSE(token_equal("x3cr3t-token", "s3cr3t-token"));
        ASSERT_FALSE(token_equal("s3cr3t-tokeN", "s3cr3t-token"));
        ASSERT_FALSE(token_equal("S3CR3T-TOKEN", "s3cr3t-token"));
        /* A prefix, an extension, or nothing is not the token, in either direction. */
        ASSERT_FALSE(token_equal("s3cr3t", "s3cr3t-token"));
        ASSERT_FALSE(token_equal("s3cr3t-token-and-more", "s3cr3t-token"));
        ASSERT_FALSE(token_equal("", "s3cr3t-token"));
        ASSERT_FALSE(token_equal("s3cr3t-token", ""));
        /* Bytes that differ only in the high bit, or a NUL-free byte that XORs to a small value. */
        ASSERT_FALSE(token_equal("a\x80", "a\x81"));
        ASSERT_FALSE(token_equal("\xff", "\x7f"));
}

/* The comparison reads every byte of the expected token whatever the presented one holds: counted with a
 * presented token that differs in its first byte, one that differs in its last, and the right one, the
 * time is the same to within noise. Medians of many rounds, so a busy machine does not make it flaky;
 * an early-exit comparison (memcmp, strcmp) differs by far more than the margin on a 64 KiB token. */
static uint64_t time_compare(const char *presented, const char *expected, unsigned rounds) {
        uint64_t best = UINT64_MAX;

        for (unsigned i = 0; i < rounds; i++) {
                struct timespec a, b;
                volatile bool r;
                uint64_t d;

                clock_gettime(CLOCK_MONOTONIC, &a);
                r = token_equal(presented, expected);
                clock_gettime(CLOCK_MONOTONIC, &b);
                (void) r;
                d = (uint64_t) (b.tv_sec - a.tv_sec) * 1000000000ULL + (uint64_t) b.tv_nsec -
                    (uint64_t) a.tv_nsec;
                best = MIN(best, d);
        }
        return best;
}

static void test_token_equal_takes_the_same_time_wherever_the_difference_is(void) {
        size_t n = 64 * 1024;
        _cleanup_free_ char *expected = malloc(n + 1), *first = malloc(n + 1), *last = malloc(n + 1);
        uint64_t t_first, t_last, t_equal;

        ASSERT_TRUE(expected && first && last);
        memset(expected, 'k', n);
        expected[n] = 0;
        memcpy(first, expected, n + 1);
        memcpy(last, expected, n + 1);
        first[0] = 'x';
        last[n - 1] = 'x';

        t_first = time_compare(first, expected, 200);
        t_last = time_compare(last, expected, 200);
        t_equal = time_compare(expected, expected, 200);
        fprintf(stderr, "token_equal on %zu bytes: first byte differs %" PRIu64 " ns, last %" PRIu64
                " ns, equal %" PRIu64 " ns\n", n, t_first, t_last, t_equal);
        /* An early exit would make the first case thousands of times faster than the last. */
        ASSERT_TRUE(t_first * 4 >= t_last);
        ASSERT_TRUE(t_first * 4 >= t_equal);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

int main(void) {
        char template[] = "/tmp/test-token-XXXXXX";

        tmpdir = mkdtemp(template);
        ASSERT_NOT_NULL(tmpdir);

        TEST_RUN(test_file_token_with_trailing_newline_stripped);
        TEST_RUN(test_nothing_configured_is_no_token);
        TEST_RUN(test_configured_but_missing_file_is_an_error);
        TEST_RUN(test_credential_wins_over_file);
        TEST_RUN(test_file_shared_with_others_is_refused);
        TEST_RUN(test_bad_contents_are_refused);
        TEST_RUN(test_not_a_regular_file_is_refused);
        TEST_RUN(test_pem_keeps_its_lines_and_a_certificate_may_be_public);
        TEST_RUN(test_token_equal_is_exact);
        TEST_RUN(test_token_equal_takes_the_same_time_wherever_the_difference_is);

        ASSERT_OK(nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS));
        return 0;
}
