/* SPDX-License-Identifier: MIT */
/* Owns the reading of secret tokens: where they are looked for, which files are trusted, and wiping them
 * from memory when they are dropped. */

#include <assert.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "token.h"

char *token_free(char *token) {
        if (!token)
                return NULL;
        explicit_bzero(token, strlen(token));
        return mfree(token);
}

/* A credential name is one file name inside the directory, as systemd's LoadCredential= makes it. */
static bool credential_name_is_valid(const char *name) {
        return !isempty(name) && !strchr(name, '/') && !streq(name, ".") && !streq(name, "..");
}

static int token_read_fd(int fd, char **ret) {
        _cleanup_(token_freep) char *buf = NULL;
        struct stat st;
        size_t n = 0;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADF;
        if (st.st_mode & (S_IROTH | S_IWOTH))
                return -EPERM;
        if ((uint64_t) st.st_size > TOKEN_SIZE_MAX)
                return -EFBIG;

        /* One byte more than allowed, to notice a file that grew after the fstat(). */
        buf = malloc(TOKEN_SIZE_MAX + 2);
        if (!buf)
                return -ENOMEM;

        for (;;) {
                ssize_t k = read(fd, buf + n, TOKEN_SIZE_MAX + 1 - n);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n > TOKEN_SIZE_MAX)
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
                if ((unsigned char) buf[i] < 0x20 || buf[i] == 0x7f)
                        return -EBADMSG;

        *ret = TAKE_PTR(buf);
        return 0;
}

static int token_read_file(const char *path, char **ret) {
        _cleanup_close_ int fd = -1;

        /* O_NONBLOCK: a FIFO put there by mistake must not hang the start; it is refused below. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        return token_read_fd(fd, ret);
}

int read_token(const char *path, const char *credential_name, char **ret) {
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
                r = token_read_file(p, ret);
                if (!IN_SET(r, -ENOENT, -ENODATA))
                        return r;
        }

        if (!path) {
                *ret = NULL;
                return 0;
        }

        return token_read_file(path, ret);
}
