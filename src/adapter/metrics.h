/* SPDX-License-Identifier: MIT */
#pragma once

/* The Prometheus text exposition of GET /metrics: names, types, units and help of every metric, rendered
 * from a snapshot of what the modules count. The chain's alert rules and dashboard (contrib/) read these
 * names; man kkt-adapterd(8) lists them. metrics_render() reaches no module; metrics_build() fills the snapshot from
 * the modules. */

#include <stdbool.h>
#include <stdint.h>

#include "breaker.h"
#include "device.h"
#include "health.h"
#include "heartbeat-state.h"
#include "http.h"
#include "intake.h"
#include "modules.h"
#include "printer.h"
#include "store.h"
#include "sync.h"
#include "time-util.h"

/* The register blocks when a document has waited this long for the OFD (54-FZ art. 4.1, as drivers and
 * the fiscal day read it). */
#define METRICS_OFD_LIMIT (30 * USEC_PER_DAY)

typedef struct MetricsSnapshot {
        usec_t now; /* CLOCK_REALTIME */
        const char *version;

        StoreCounters counters;
        uint64_t dlq_unresolved; /* UINT64_MAX: not counted (the reader failed) */
        StoreStats store;
        IntakeStats intake;
        HttpServerStats http;
        Health health; /* GET /v1/health's verdict; _HEALTH_INVALID: not rendered */

        HeartbeatState heartbeat;
        unsigned heartbeat_failures; /* consecutive */
        uint64_t heartbeats;         /* finished beats */

        bool have_printer;
        PrinterStats printer;
        unsigned print_queue_length; /* queued, and the one at the register */
        usec_t print_head_wait;
        usec_t print_stuck_after; /* [Device] StuckAfter= */

        const DeviceStatus *device; /* NULL: the register has not told its status yet */

        bool have_sync;
        SyncMetrics sync;
        BreakerState breaker;
        uint64_t breaker_opened; /* times it opened */
} MetricsSnapshot;

/* The exposition (text format 0.0.4) into *ret (free()). -ENOMEM. */
int metrics_render(const MetricsSnapshot *s, char **ret);

/* Days from `now` until `until` (negative once passed), as the text format writes numbers. */
char *metrics_format_days(char *buf, size_t l, usec_t until, usec_t now);
/* Microseconds as seconds, exactly ("0.0025", "30", "1.5"). */
char *metrics_format_seconds(char *buf, size_t l, usec_t usec);
#define METRICS_NUMBER_MAX 48

/* Prometheus text exposition of the modules' counters into *ret (free()); dead_letters_open as for
 * health_build() (UINT64_MAX leaves kkt_dlq_unresolved out). */
int metrics_build(const Modules *m, uint64_t dead_letters_open, char **ret);
