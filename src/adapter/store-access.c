/* SPDX-License-Identifier: MIT */
/* Permission problems on the buffer: when opening fails, whether the state directory or one of the
 * buffer's files is closed to the user the daemon runs as, and a message that says which, whose it is and
 * whose it needs to be. SQLite reports these as "cannot open" (ENOENT), or opens the file read-only and
 * the write fails (EROFS); neither says what to fix. */

#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "store-internal.h"

typedef struct AccessProblem {
        char path[PATH_MAX];
        bool is_directory;
        bool have_stat;
        struct stat st;
} AccessProblem;

/* Whether the user we run as may use `path` as the store does (`mode`: R_OK, W_OK, X_OK), going by the
 * effective ids as the kernel will. 1: it may; 0: it does not exist and `must_exist` is false; -EACCES with
 * *problem filled in; other errors of faccessat() as they are (EROFS stays: that is not a permission). */
static int check_one(const char *path, int mode, bool must_exist, bool is_directory,
                     AccessProblem *problem) {
        if (faccessat(AT_FDCWD, path, mode, AT_EACCESS) >= 0)
                return 1;
        if (errno == ENOENT && !must_exist)
                return 0;
        if (errno != EACCES && errno != EPERM)
                return -errno;

        *problem = (AccessProblem) { .is_directory = is_directory };
        snprintf(problem->path, sizeof problem->path, "%s", path);
        /* It may be a directory above that we may not search: then there is no stat either. */
        problem->have_stat = stat(path, &problem->st) >= 0;
        return -EACCES;
}

/* The first part of the buffer closed to us: its files that exist (the database, its WAL and shared memory
 * files, which a process of another user may have left), then the directory, where SQLite creates them. */
static int store_find_access_problem(const char *path, AccessProblem *ret) {
        static const char *const suffixes[] = { "", "-wal", "-shm" };
        _cleanup_free_ char *copy = NULL;
        char file[PATH_MAX];
        int r;

        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                if ((size_t) snprintf(file, sizeof file, "%s%s", path, suffixes[i]) >= sizeof file)
                        return -ENAMETOOLONG;
                r = check_one(file, R_OK | W_OK, false, false, ret);
                if (r < 0)
                        return r;
        }

        copy = strdup(path);
        if (!copy)
                return -ENOMEM;
        return check_one(dirname(copy), W_OK | X_OK, true, true, ret);
}

int store_access_error(const char *path, int error) {
        AccessProblem p;

        assert(path);

        /* What SQLite makes of a file or directory it may not write. */
        if (!IN_SET(error, -EACCES, -EPERM, -EROFS, -ENOENT, -EIO))
                return error;
        return store_find_access_problem(path, &p) == -EACCES ? -EACCES : error;
}

/* Names copied out of getpwuid()'s and getgrgid()'s static buffers, which the next lookup overwrites. */
#define NAME_MAX_LEN 64

static const char *id_name(bool group, unsigned id, char buf[static NAME_MAX_LEN]) {
        const char *name;

        if (group) {
                struct group *gr = getgrgid((gid_t) id);
                name = gr ? gr->gr_name : NULL;
        } else {
                struct passwd *pw = getpwuid((uid_t) id);
                name = pw ? pw->pw_name : NULL;
        }
        if (name)
                snprintf(buf, NAME_MAX_LEN, "%s", name);
        else
                snprintf(buf, NAME_MAX_LEN, "%u", id);
        return buf;
}

int store_log_open_error(int error, const char *path) {
        char owner[NAME_MAX_LEN], group[NAME_MAX_LEN], us[NAME_MAX_LEN];
        AccessProblem p;
        const char *need;
        uid_t uid = geteuid();

        assert(path);

        if (error != -EACCES || store_find_access_problem(path, &p) != -EACCES)
                return log_error_errno(error, "Failed to open the receipt buffer %s: %m", path);

        /* Blocking name lookups are fine here: the store is opened before the loop runs. */
        need = id_name(false, uid, us);
        if (!p.have_stat)
                return log_error_errno(error,
                                       "Failed to open the receipt buffer %s: %s cannot be reached by user "
                                       "%s (uid %u): %m (EACCES). The directories above the buffer must let "
                                       "it through, and the state directory must be owned by %s.",
                                       path, p.path, need, (unsigned) uid, need);
        return log_error_errno(error,
                               "Failed to open the receipt buffer %s: %s %s is owned by %s:%s with mode "
                               "%04o, which does not let user %s (uid %u) %s it: %m (EACCES). The state "
                               "directory and the buffer's files must be owned by %s, the user kkt-adapterd "
                               "runs as (StateDirectory= sees to that; by hand: chown -R %s <the state "
                               "directory>).",
                               path, p.is_directory ? "the directory" : "the file", p.path,
                               id_name(false, p.st.st_uid, owner), id_name(true, p.st.st_gid, group),
                               (unsigned) (p.st.st_mode & 07777), need, (unsigned) uid,
                               p.is_directory ? "create files in" : "read and write", need, need);
}
