/* SPDX-License-Identifier: MIT */
#pragma once

/* Points in time as kktctl prints them: ISO 8601 with milliseconds, in local time with its UTC offset
 * ("2026-11-29T06:17:26.123+03:00"), or in UTC ("2026-11-29T03:17:26.123Z") with --utc. */

#include <stdbool.h>
#include <stddef.h>

#include "time-util.h"

#define TIMESTAMP_MAX 40

/* t in CLOCK_REALTIME microseconds. */
char *timestamp_format(char *buf, size_t l, usec_t t, bool utc);

/* A time the daemon sent as ISO 8601 UTC text ("...T03:17:26.123Z", or SQLite's "YYYY-MM-DD HH:MM:SS"),
 * printed as timestamp_format() does; text that is not such a time is returned as it is (NULL as NULL). */
const char *timestamp_reformat(char *buf, size_t l, const char *text, bool utc);
