/* SPDX-License-Identifier: MIT */
/* The loop thread's share of one intake without HTTP: receipt_parse(), receipt_canonical() and
 * receipt_fingerprint() of the two-item sale bench/intake.lua posts, N times (default 100,000), with the
 * time of each step per receipt. Build it against a build's libkktcore.a, as the comment at the end says. */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "receipt.h"

/* vat22: since 2026-01-01 a sale at 20 % is refused, and receipt_parse() judges by today's date. */
static const char body[] =
        "{\"pos_id\":\"bench-pos-1\",\"type\":\"sale\",\"items\":["
        "{\"name\":\"Lens 1.6 AR\",\"price\":1234.50,\"quantity\":2,\"total\":2469.00,\"vat\":\"vat22\"},"
        "{\"name\":\"Frame\",\"price\":4999.99,\"quantity\":1,\"total\":4999.99,\"vat\":\"vat22\"}],"
        "\"payments\":[{\"type\":\"card\",\"amount\":7468.99}]}";

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000U + (uint64_t) ts.tv_nsec;
}

int main(int argc, char *argv[]) {
        unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
        uint64_t t_parse = 0, t_canonical = 0, t_fingerprint = 0, start;
        char first[65] = "";

        if (n == 0) {
                fprintf(stderr, "usage: %s [ITERATIONS]\n", argv[0]);
                return EXIT_FAILURE;
        }

        start = now_ns();
        for (unsigned long i = 0; i < n; i++) {
                Receipt *r = NULL;
                char *canonical = NULL, fingerprint[65];
                uint64_t t0, t1, t2, t3;
                int k;

                t0 = now_ns();
                k = receipt_parse(body, sizeof body - 1, NULL, &r, NULL);
                t1 = now_ns();
                if (k >= 0)
                        k = receipt_canonical(r, &canonical);
                t2 = now_ns();
                if (k >= 0)
                        k = receipt_fingerprint(canonical, fingerprint);
                t3 = now_ns();
                receipt_free(r);
                free(canonical);
                if (k < 0) {
                        fprintf(stderr, "iteration %lu failed: %s\n", i, strerror(-k));
                        return EXIT_FAILURE;
                }
                /* Every round must produce the same text, or the figures measure a bug. */
                if (i == 0)
                        memcpy(first, fingerprint, sizeof first);
                else if (strcmp(first, fingerprint) != 0) {
                        fprintf(stderr, "iteration %lu: fingerprint changed\n", i);
                        return EXIT_FAILURE;
                }
                t_parse += t1 - t0;
                t_canonical += t2 - t1;
                t_fingerprint += t3 - t2;
        }

        printf("receipts=%lu total_ns_per_receipt=%" PRIu64 " parse_ns=%" PRIu64 " canonical_ns=%" PRIu64
               " fingerprint_ns=%" PRIu64 " receipts_per_s=%.0f fingerprint=%s\n",
               n, (now_ns() - start) / n, t_parse / n, t_canonical / n, t_fingerprint / n,
               (double) n * 1e9 / (double) (now_ns() - start), first);
        return EXIT_SUCCESS;
}

/* Build, e.g. with the release build in build-rel:
 *     cc -O2 -D_GNU_SOURCE -include build-rel/config.h -Isrc/shared -Isrc/adapter \
 *        -o /tmp/receipt-bench bench/receipt-bench.c build-rel/src/adapter/libkktcore.a \
 *        $(pkg-config --cflags --libs libsystemd json-c sqlite3 libcrypto libcurl libmicrohttpd inih) \
 *        -lpthread -lm
 */
