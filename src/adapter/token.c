/* SPDX-License-Identifier: MIT */
/* Owns the reading of secrets (tokens, TLS certificates and keys): where they are looked for, which files
 * are trusted, comparing tokens in constant time, and wiping them from memory when they are dropped. */

#include <assert.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "memory-util.h"
#include "token.h"

/* A credential name is one file name inside the directory, as systemd's LoadCredential= makes it. */
static bool credential_name_is_valid(const char *name) {
        return !isempty(name) && !strchr(name, '/') && !streq(name, ".") && !streq(name, "..");
}

bool token_equal(const char *presented, const char *expected) {
        volatile unsigned char d = 0;
        size_t n, m;

        assert(presented);
        assert(expected);

        n = strlen(presented);
        m = strlen(expected);
        /* Every byte of the expected token is looked at, wherever the first difference is: no early exit,
         * and the accumulator is volatile so that the compiler does not add one. */
        for (size_t i = 0; i < m; i++)
                d |= (unsigned char) ((i < n ? (unsigned char) presented[i] : 0U) ^
                                      (unsigned char) expected[i]);
        return (d | (unsigned char) (n != m)) == 0;
}

static bool secret_char_allowed(char c, SecretFlags flags) {
        if ((flags & SECRET_PEM) && IN_SET(c, '\n', '\r', '\t'))
                return true;
        return (unsigned char) c >= 0x20 && c != 0x7f;
}

static int secret_read_fd(int fd, SecretFlags flags, char **ret) {
        _cleanup_(erase_and_freep) char *buf = NULL;
        size_t max = (flags & SECRET_PEM) ? SECRET_PEM_SIZE_MAX : TOKEN_SIZE_MAX;
        struct stat st;
        size_t n = 0;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADF;
        if (!(flags & SECRET_PUBLIC) && (st.st_mode & (S_IROTH | S_IWOTH)))
                return -EPERM;
        if ((uint64_t) st.st_size > max)
                return -EFBIG;

        /* One byte more than allowed, to notice a file that grew after the fstat(). */
        buf = malloc(max + 2);
        if (!buf)
                return -ENOMEM;

        for (;;) {
                ssize_t k = read(fd, buf + n, max + 1 - n);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n > max)
                        return -EFBIG;
        }
        buf[n] = 0;

        if (strlen(buf) != n)
                return -EBADMSG;
        while (n > 0 && strchr(" \t\r\n", buf[n - 1]))
                buf[--n] = 0;
        if (n == 0)
                return -ENODATA;
        for (size_t i = 0; i < n; i++)
                if (!secret_char_allowed(buf[i], flags))
                        return -EBADMSG;

        *ret = TAKE_PTR(buf);
        return 0;
}

static int secret_read_file(const char *path, SecretFlags flags, char **ret) {
        _cleanup_close_ int fd = -1;

        /* O_NONBLOCK: a FIFO put there by mistake must not hang the start; it is refused below. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        return secret_read_fd(fd, flags, ret);
}

int read_secret(const char *path, const char *credential_name, SecretFlags flags, char **ret) {
        const char *dir;
        int r;

        assert(ret);

        dir = getenv("CREDENTIALS_DIRECTORY");
        if (credential_name && !isempty(dir)) {
                _cleanup_free_ char *p = NULL;

                if (!credential_name_is_valid(credential_name))
                        return -EINVAL;
                if (asprintf(&p, "%s/%s", dir, credential_name) < 0)
                        return -ENOMEM;

                /* An empty credential counts as not passed: systemd 252 has no optional LoadCredential=,
                 * so the unit sets a lone newline with SetCredential= as the fallback for a missing file. */
                r = secret_read_file(p, flags, ret);
                if (!IN_SET(r, -ENOENT, -ENODATA))
                        return r;
        }

        if (!path) {
                *ret = NULL;
                return 0;
        }

        return secret_read_file(path, flags, ret);
}
