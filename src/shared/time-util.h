/* SPDX-License-Identifier: MIT */
#pragma once

/* Time as usec_t (microseconds) and the parsers for the configuration's time spans and sizes. */

#include <stdint.h>
#include <time.h>

#include "macro.h"

typedef uint64_t usec_t;

#define USEC_INFINITY ((usec_t) UINT64_MAX)
#define USEC_PER_MSEC ((usec_t) 1000ULL)
#define USEC_PER_SEC ((usec_t) 1000000ULL)
#define USEC_PER_MINUTE (60ULL * USEC_PER_SEC)
#define USEC_PER_HOUR (60ULL * USEC_PER_MINUTE)
#define USEC_PER_DAY (24ULL * USEC_PER_HOUR)
#define USEC_PER_WEEK (7ULL * USEC_PER_DAY)
#define NSEC_PER_USEC ((uint64_t) 1000ULL)

usec_t now(clockid_t clock);
usec_t timespec_load(const struct timespec *ts);

/* Saturating arithmetic, so USEC_INFINITY stays infinite. */
static inline usec_t usec_add(usec_t a, usec_t b) {
        return a > USEC_INFINITY - b ? USEC_INFINITY : a + b;
}

static inline usec_t usec_sub_unsigned(usec_t a, usec_t b) {
        return a < b ? 0 : a - b;
}

/* "30s", "5min", "500ms", "1h 30min", "2d", "250us"; a bare number means seconds; "infinity".
 * Returns -EINVAL on bad syntax, -ERANGE on overflow. */
int parse_timespan(const char *s, usec_t *ret);

/* "64K", "1M", "2G", "512" (bytes); 1024-based, optional trailing "B". -EINVAL / -ERANGE as above. */
int parse_size(const char *s, uint64_t *ret);

/* Shortest exact form that parse_timespan() reads back, e.g. "5min", "1500ms", "infinity". */
char *format_timespan(char *buf, size_t l, usec_t t);
#define FORMAT_TIMESPAN_MAX 64

/* "64K", "1M" when exact, else bytes. */
char *format_size(char *buf, size_t l, uint64_t bytes);
#define FORMAT_SIZE_MAX 32

/* ISO 8601 in UTC with milliseconds, "2026-11-29T03:17:26.123Z", from CLOCK_REALTIME microseconds. */
char *format_iso8601_utc(char *buf, size_t l, usec_t realtime);
#define FORMAT_ISO8601_MAX 32
