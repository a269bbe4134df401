/* SPDX-License-Identifier: MIT */
/* The store alone, without HTTP: keeps IN_FLIGHT submits queued on a real sd-event loop (as that many
 * connections would) until COUNT receipts are committed, then prints the rate, the group sizes and the
 * latency from submit to callback. Shows the writer's ceiling, separate from the HTTP path's cost. */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <systemd/sd-event.h>

#include "log.h"
#include "store.h"
#include "time-util.h"

typedef struct Bench {
        Store *store;
        unsigned count, submitted, done, failed;
        uint64_t *latency;
        char body[512];
} Bench;

typedef struct Slot {
        Bench *bench;
        usec_t started;
} Slot;

static int submit_next(Bench *b, Slot *slot);

static int compare_u64(const void *x, const void *y) {
        uint64_t a = *(const uint64_t *) x, c = *(const uint64_t *) y;

        return a < c ? -1 : a > c;
}

static void on_stored(Store *s, int error, StoreSubmitOutcome outcome, const StoreReceipt *receipt,
                      void *userdata) {
        Slot *slot = userdata;
        Bench *b = slot->bench;

        if (error < 0 || outcome != STORE_SUBMIT_CREATED)
                b->failed++;
        b->latency[b->done++] = now(CLOCK_MONOTONIC) - slot->started;
        if (b->submitted < b->count)
                (void) submit_next(b, slot);
}

static int submit_next(Bench *b, Slot *slot) {
        char key[64], hash[65];

        /* Random-looking keys, as POS terminals send UUIDs: each lands on its own page of the key index. */
        snprintf(key, sizeof key, "%08x-%u", (unsigned) random(), b->submitted);
        snprintf(hash, sizeof hash, "%064u", b->submitted);
        slot->started = now(CLOCK_MONOTONIC);
        b->submitted++;
        return store_submit_receipt(b->store,
                                    &(StoreReceiptNew) {
                                            .idempotency_key = key,
                                            .request_hash = hash,
                                            .pos_id = "bench-pos-1",
                                            .type = "sale",
                                            .total_kopecks = 746899,
                                            .receipt_data = b->body,
                                    },
                                    on_stored, slot);
}

int main(int argc, char *argv[]) {
        Bench b = {};
        sd_event *event = NULL;
        Slot *slots;
        unsigned in_flight;
        usec_t start, elapsed;
        const StoreStats *st;
        struct rusage ru;
        uint64_t cpu;
        int r;

        if (argc != 5) {
                fprintf(stderr, "usage: %s DB COUNT IN_FLIGHT full|off\n", argv[0]);
                return 2;
        }
        b.count = (unsigned) strtoul(argv[2], NULL, 10);
        in_flight = (unsigned) strtoul(argv[3], NULL, 10);
        if (b.count == 0 || in_flight == 0 || in_flight > b.count)
                return 2;
        snprintf(b.body, sizeof b.body,
                 "{\"items\":[{\"measure\":0,\"name\":\"Lens 1.6 AR\",\"payment_method\":4,"
                 "\"payment_object\":1,\"price\":123450,\"quantity\":2000,\"total\":246900,"
                 "\"vat\":\"vat20\"},"
                 "{\"measure\":0,\"name\":\"Frame\",\"payment_method\":4,\"payment_object\":1,"
                 "\"price\":499999,\"quantity\":1000,\"total\":499999,\"vat\":\"vat20\"}],"
                 "\"payments\":[{\"amount\":746899,\"type\":\"card\"}],\"pos_id\":\"bench-pos-1\","
                 "\"taxation\":\"osn\",\"total\":746899,\"type\":\"sale\"}");
        b.latency = calloc(b.count, sizeof(uint64_t));
        slots = calloc(in_flight, sizeof(Slot));
        if (!b.latency || !slots)
                return 1;

        r = sd_event_new(&event);
        if (r < 0)
                return 1;
        r = store_open(&b.store, event, argv[1],
                       &(StoreOptions) {
                               .capacity = 10000000,
                               .synchronous = strcmp(argv[4], "off") == 0 ? STORE_SYNCHRONOUS_OFF
                                                                          : STORE_SYNCHRONOUS_FULL,
                       });
        if (r < 0) {
                fprintf(stderr, "store_open: %s\n", strerror(-r));
                return 1;
        }

        start = now(CLOCK_MONOTONIC);
        for (unsigned i = 0; i < in_flight; i++) {
                slots[i].bench = &b;
                if (submit_next(&b, &slots[i]) < 0)
                        return 1;
        }
        while (b.done < b.count)
                if (sd_event_run(event, USEC_INFINITY) < 0)
                        return 1;
        elapsed = now(CLOCK_MONOTONIC) - start;

        st = store_get_stats(b.store);
        /* CPU time of the whole process, both threads: steadier than the rate on a shared machine. */
        if (getrusage(RUSAGE_SELF, &ru) < 0)
                return 1;
        cpu = (uint64_t) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * USEC_PER_SEC +
              (uint64_t) (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
        qsort(b.latency, b.count, sizeof(uint64_t), compare_u64);
        printf("STORE n=%u in_flight=%u sync=%s rate=%" PRIu64 "/s groups=%" PRIu64
               " jobs_per_group=%" PRIu64 " p50_us=%" PRIu64 " p99_us=%" PRIu64
               " cpu_us_per_receipt=%" PRIu64 " failed=%u\n",
               b.count, in_flight, argv[4], (uint64_t) b.count * USEC_PER_SEC / (elapsed ?: 1),
               st->n_transactions, st->n_jobs / (st->n_transactions ?: 1), b.latency[b.count / 2],
               b.latency[(size_t) b.count * 99 / 100], cpu / b.count, b.failed);

        store_free(b.store);
        sd_event_unref(event);
        free(b.latency);
        free(slots);
        return b.failed > 0;
}
