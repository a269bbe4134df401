/* SPDX-License-Identifier: MIT */
/* Helpers shared by the unit tests (linked into each of them). */

#include <dirent.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "test-util.h"
#include "tests.h"

void test_rm_rf(const char *path) {
        DIR *d = opendir(path);
        struct dirent *de;

        ASSERT_NOT_NULL(d);
        while ((de = readdir(d))) {
                char sub[PATH_MAX];
                struct stat st;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
                ASSERT_OK(lstat(sub, &st));
                if (S_ISDIR(st.st_mode))
                        test_rm_rf(sub);
                else
                        ASSERT_OK(unlink(sub));
        }
        closedir(d);
        ASSERT_OK(rmdir(path));
}
