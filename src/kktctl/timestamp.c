/* SPDX-License-Identifier: MIT */
/* Owns how kktctl writes a point in time: local time with its offset by default, UTC with --utc, both ISO
 * 8601 so that a script can parse either; and the re-reading of the UTC texts that the daemon's JSON holds. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timestamp.h"

char *timestamp_format(char *buf, size_t l, usec_t t, bool utc) {
        time_t sec = (time_t) (t / USEC_PER_SEC);
        unsigned msec = (unsigned) (t % USEC_PER_SEC / USEC_PER_MSEC);
        struct tm tm;
        long offset;

        if (utc || !localtime_r(&sec, &tm))
                return format_iso8601_utc(buf, l, t);

        offset = tm.tm_gmtoff / 60;
        snprintf(buf, l, "%04d-%02d-%02dT%02d:%02d:%02d.%03u%c%02ld:%02ld", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, msec, offset < 0 ? '-' : '+', labs(offset) / 60,
                 labs(offset) % 60);
        return buf;
}

/* "YYYY-MM-DDTHH:MM:SS[.fff...]Z" or "YYYY-MM-DD HH:MM:SS[.fff...]", both UTC; nothing else. */
static int parse_utc_text(const char *s, usec_t *ret) {
        struct tm tm = {};
        unsigned msec = 0, digits = 0;
        char sep;
        int n = 0;
        time_t sec;

        if (sscanf(s, "%4d-%2d-%2d%c%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &sep, &tm.tm_hour,
                   &tm.tm_min, &tm.tm_sec, &n) != 7 ||
            n != 19 || !strchr("T ", sep))
                return -EINVAL;
        s += n;
        if (*s == '.')
                for (s++; *s >= '0' && *s <= '9'; s++, digits++)
                        if (digits < 3)
                                msec = msec * 10 + (unsigned) (*s - '0');
        for (; digits < 3; digits++)
                msec *= 10;
        if (!(streq(s, "Z") || (sep == ' ' && *s == '\0')))
                return -EINVAL;

        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        sec = timegm(&tm);
        if (sec < 0)
                return -ERANGE;
        *ret = (usec_t) sec * USEC_PER_SEC + msec * USEC_PER_MSEC;
        return 0;
}

const char *timestamp_reformat(char *buf, size_t l, const char *text, bool utc) {
        usec_t t;

        if (!text || parse_utc_text(text, &t) < 0)
                return text;
        return timestamp_format(buf, l, t, utc);
}
