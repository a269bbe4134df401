/* SPDX-License-Identifier: MIT */
/* The disk's raw durable-write rate, the floor under every commit: COUNT times write BYTES (4 KiB unless
 * told) and fdatasync(), in a file in the directory given. "overwrite" writes into a file allocated
 * beforehand, as SQLite reuses its WAL, so that no fdatasync() also has to flush a new file size; "append"
 * grows the file with every write. PAUSE_US sleeps that long before each (untimed): an fdatasync() that
 * follows idle time, as each commit does when one client waits for every answer, takes longer on some
 * virtual machines than one of a back-to-back series. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U;
}

static int compare_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

int main(int argc, char *argv[]) {
        char path[4096], *block;
        unsigned long n, size = 4096, pause_us = 0;
        int append = 0, fd;
        uint64_t *lat, start, total;

        if (argc < 3 || argc > 6 || (argc >= 4 && strcmp(argv[3], "overwrite") != 0 &&
                                     strcmp(argv[3], "append") != 0)) {
                fprintf(stderr, "usage: %s DIR COUNT [overwrite|append] [BYTES] [PAUSE_US]\n", argv[0]);
                return 2;
        }
        n = strtoul(argv[2], NULL, 10);
        append = argc >= 4 && strcmp(argv[3], "append") == 0;
        if (argc >= 5)
                size = strtoul(argv[4], NULL, 10);
        if (argc == 6)
                pause_us = strtoul(argv[5], NULL, 10);
        if (n == 0 || n > 100000 || size == 0 || size > 16UL << 20 || pause_us > 1000000) {
                fprintf(stderr, "COUNT must be 1..100000, BYTES 1..16M and PAUSE_US at most 1000000\n");
                return 2;
        }
        lat = calloc(n, sizeof(uint64_t));
        block = malloc(size);
        if (!lat || !block)
                return 1;
        memset(block, 'k', size);
        snprintf(path, sizeof path, "%s/fsync-rate.XXXXXX", argv[1]);
        fd = mkstemp(path);
        if (fd < 0) {
                fprintf(stderr, "mkstemp %s: %s\n", path, strerror(errno));
                return 1;
        }
        (void) unlink(path);

        if (!append) {
                for (unsigned long i = 0; i < n; i++)
                        if (pwrite(fd, block, size, (off_t) (i * size)) != (ssize_t) size)
                                return 1;
                if (fsync(fd) < 0)
                        return 1;
        }

        start = now_usec();
        for (unsigned long i = 0; i < n; i++) {
                uint64_t t;

                if (pause_us > 0)
                        usleep((useconds_t) pause_us);
                t = now_usec();

                if (pwrite(fd, block, size, (off_t) (i * size)) != (ssize_t) size || fdatasync(fd) < 0) {
                        fprintf(stderr, "write/fdatasync: %s\n", strerror(errno));
                        return 1;
                }
                lat[i] = now_usec() - t;
        }
        total = now_usec() - start;
        close(fd);

        qsort(lat, n, sizeof(uint64_t), compare_u64);
        printf("FSYNC mode=%s bytes=%lu n=%lu pause_us=%lu rate=%" PRIu64 "/s p50_us=%" PRIu64 " p99_us=%" PRIu64
               "\n",
               append ? "append" : "overwrite", size, n, pause_us, (uint64_t) n * 1000000U / (total ?: 1),
               lat[n / 2], lat[n * 99 / 100]);
        free(block);
        free(lat);
        return 0;
}
