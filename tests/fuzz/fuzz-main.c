/* SPDX-License-Identifier: MIT */
/* Replays inputs through a fuzz target without libFuzzer: each argument is a file or a directory of files
 * (a seed corpus, or crashers kept as regressions). Test builds (gcc, -Dtests=true) run every target over its
 * corpus this way, in the plain and every sanitizer pass. */

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"
#include "macro.h"

static int replay_file(const char *path) {
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        char *p;

        f = fopen(path, "re");
        if (!f)
                return -errno;
        /* The whole file, of whatever size; a zero-length input is an input too. */
        for (;;) {
                p = realloc(buf, size + 65536);
                if (!p)
                        return -ENOMEM;
                buf = p;
                size_t n = fread(buf + size, 1, 65536, f);
                size += n;
                if (n < 65536)
                        break;
        }
        if (ferror(f))
                return -EIO;

        (void) LLVMFuzzerTestOneInput((const uint8_t *) buf, size);
        return 0;
}

static int filter_visible(const struct dirent *de) {
        return de->d_name[0] != '.';
}

static int replay(const char *path, unsigned *count) {
        struct dirent **entries = NULL;
        struct stat st;
        int n, r = 0;

        if (stat(path, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode)) {
                r = replay_file(path);
                if (r >= 0)
                        (*count)++;
                return r;
        }

        n = scandir(path, &entries, filter_visible, alphasort);
        if (n < 0)
                return -errno;
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *p = NULL;

                if (r >= 0) {
                        if (asprintf(&p, "%s/%s", path, entries[i]->d_name) < 0)
                                r = -ENOMEM;
                        else
                                r = replay(p, count);
                }
                free(entries[i]);
        }
        free(entries);
        return r;
}

int main(int argc, char *argv[]) {
        unsigned count = 0;

        if (argc < 2) {
                fprintf(stderr, "Usage: %s FILE|DIRECTORY...\n", argv[0]);
                return EXIT_FAILURE;
        }
        for (int i = 1; i < argc; i++) {
                int r = replay(argv[i], &count);
                if (r < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(-r));
                        return EXIT_FAILURE;
                }
        }
        if (count == 0) {
                fprintf(stderr, "No inputs found: the corpus is missing.\n");
                return EXIT_FAILURE;
        }
        printf("%u inputs replayed.\n", count);
        return EXIT_SUCCESS;
}
