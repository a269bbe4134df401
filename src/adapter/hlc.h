/* SPDX-License-Identifier: MIT */
#pragma once

/* The hybrid logical clock that orders receipts: a stamp is a uint64_t that sorts in time order,
 * physical milliseconds since the epoch in the high 48 bits and a logical counter in the low 16.
 * Pure arithmetic: the caller supplies the wall clock and persists the last stamp. */

#include <stdint.h>

#include "time-util.h"

#define HLC_COUNTER_BITS 16
#define HLC_COUNTER_MAX ((uint64_t) UINT16_MAX)
#define HLC_MS_MAX ((UINT64_C(1) << (64 - HLC_COUNTER_BITS)) - 1)

typedef struct Hlc {
        uint64_t last; /* the last stamp handed out or observed; 0 = none yet */
} Hlc;

#define HLC_INIT ((Hlc) {})

static inline uint64_t hlc_make(uint64_t ms, uint16_t counter) {
        return (MIN(ms, HLC_MS_MAX) << HLC_COUNTER_BITS) | counter;
}

static inline uint64_t hlc_physical_ms(uint64_t stamp) {
        return stamp >> HLC_COUNTER_BITS;
}

static inline uint16_t hlc_counter(uint64_t stamp) {
        return (uint16_t) (stamp & HLC_COUNTER_MAX);
}

/* The physical part as CLOCK_REALTIME microseconds. */
static inline usec_t hlc_to_usec(uint64_t stamp) {
        return hlc_physical_ms(stamp) * USEC_PER_MSEC;
}

/* A new stamp strictly greater than every stamp handed out or observed before, taking the physical part
 * from `realtime` (CLOCK_REALTIME) when the wall clock is ahead of the clock, so it stays monotonic across
 * backward clock steps. */
uint64_t hlc_tick(Hlc *c, usec_t realtime);

/* Raises the clock to at least `stamp` (one read back from disk after a restart), so the next tick is
 * greater than it. */
void hlc_observe(Hlc *c, uint64_t stamp);

/* "2026-11-29T03:17:26.123Z/00042": the physical part in ISO 8601 UTC, then the counter, fixed width, so
 * the text sorts like the stamp (up to year 9999). */
char *hlc_format(char *buf, size_t l, uint64_t stamp);
#define HLC_FORMAT_MAX 48

/* Reads what hlc_format() wrote; -EINVAL on anything else. */
int hlc_parse(const char *s, uint64_t *ret);
