/* SPDX-License-Identifier: MIT */
/* Fuzz target for the configuration parser (config_load(), what the daemon runs at start and on SIGHUP):
 * any file gives a Config or an error that names the problem, never a crash or a leak; a loaded Config
 * dumps (--dump-config) to a file that loads back and dumps the same. The input is handed over as a memfd,
 * through its /proc/self/fd path, so that no run writes a file. */

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conf.h"
#include "fuzz.h"
#include "macro.h"

static int fuzz_fd = -1;
static char fuzz_path[64];

static void set_file(const void *data, size_t size) {
        FUZZ_CHECK(ftruncate(fuzz_fd, 0) >= 0);
        FUZZ_CHECK(size == 0 || pwrite(fuzz_fd, data, size, 0) == (ssize_t) size);
}

/* 0 and *ret_dump, or the error of config_load(). */
static int load_and_dump(const void *data, size_t size, char **ret_dump) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *error = NULL, *dump = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        size_t dump_size = 0;
        int r;

        set_file(data, size);
        r = config_load(fuzz_path, &c, &error);
        if (r < 0) {
                /* Every refusal says where and why; ENOMEM may leave no message. */
                FUZZ_CHECK(!c);
                FUZZ_CHECK(r == -ENOMEM || (error && startswith(error, fuzz_path)));
                return r;
        }
        FUZZ_CHECK(c);

        f = open_memstream(&dump, &dump_size);
        if (!f)
                return -ENOMEM;
        FUZZ_CHECK(config_dump(c, f) >= 0);
        FUZZ_CHECK(fclose(TAKE_PTR(f)) == 0);
        *ret_dump = TAKE_PTR(dump);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *first = NULL, *second = NULL;
        int r;

        if (fuzz_fd < 0) {
                fuzz_fd = memfd_create("fuzz-conf", MFD_CLOEXEC);
                FUZZ_CHECK(fuzz_fd >= 0);
                snprintf(fuzz_path, sizeof fuzz_path, "/proc/self/fd/%d", fuzz_fd);
        }
        /* inih reads lines of up to 200 bytes (longer ones are an error): a megabyte says nothing more. */
        if (size > 64 * 1024)
                return 0;

        r = load_and_dump(data, size, &first);
        if (r < 0)
                return 0;

        r = load_and_dump(first, strlen(first), &second);
        if (r == -ENOMEM)
                return 0;
        if (r < 0 || !streq(first, second))
                fprintf(stderr, "The dump does not load back the same:\n%s\n---\n%s\n", first, strempty(second));
        FUZZ_CHECK(r >= 0 && streq(first, second));
        return 0;
}
