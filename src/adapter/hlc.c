/* SPDX-License-Identifier: MIT */
/* Hybrid logical clock arithmetic and the text form of a stamp that the receipts table keeps next to the
 * integer for the prototype's readers. */

#include <ctype.h>
#include <time.h>

#include "hlc.h"

uint64_t hlc_tick(Hlc *c, usec_t realtime) {
        uint64_t ms = MIN(realtime / USEC_PER_MSEC, HLC_MS_MAX);

        if (ms > hlc_physical_ms(c->last))
                c->last = hlc_make(ms, 0);
        else if (c->last < UINT64_MAX)
                /* Same or earlier wall clock: keep the clock's milliseconds and count. A counter at its
                 * maximum carries into the milliseconds, which is exactly "advance the ms by one". */
                c->last++;

        return c->last;
}

void hlc_observe(Hlc *c, uint64_t stamp) {
        c->last = MAX(c->last, stamp);
}

char *hlc_format(char *buf, size_t l, uint64_t stamp) {
        char iso[FORMAT_ISO8601_MAX];

        snprintf(buf, l, "%s/%05u", format_iso8601_utc(iso, sizeof iso, hlc_to_usec(stamp)),
                 (unsigned) hlc_counter(stamp));
        return buf;
}

/* Exactly n digits, then the separator sep (0 = end of string). */
static int parse_fixed(const char **p, unsigned n, char sep, unsigned *ret) {
        unsigned v = 0;

        for (unsigned i = 0; i < n; i++) {
                if (!isdigit((unsigned char) (*p)[i]))
                        return -EINVAL;
                v = v * 10 + (unsigned) ((*p)[i] - '0');
        }
        if ((*p)[n] != sep)
                return -EINVAL;
        *p += n + (sep ? 1 : 0);
        *ret = v;
        return 0;
}

int hlc_parse(const char *s, uint64_t *ret) {
        unsigned year, mon, day, hour, min, sec, msec, counter;
        struct tm tm = {};
        const char *p = s;
        time_t t;

        if (!s)
                return -EINVAL;
        if (parse_fixed(&p, 4, '-', &year) < 0 || parse_fixed(&p, 2, '-', &mon) < 0 ||
            parse_fixed(&p, 2, 'T', &day) < 0 || parse_fixed(&p, 2, ':', &hour) < 0 ||
            parse_fixed(&p, 2, ':', &min) < 0 || parse_fixed(&p, 2, '.', &sec) < 0 ||
            parse_fixed(&p, 3, 'Z', &msec) < 0 || *p++ != '/' || parse_fixed(&p, 5, 0, &counter) < 0)
                return -EINVAL;
        if (year < 1970 || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 59 ||
            counter > HLC_COUNTER_MAX)
                return -EINVAL;

        tm = (struct tm) {
                .tm_year = (int) year - 1900,
                .tm_mon = (int) mon - 1,
                .tm_mday = (int) day,
                .tm_hour = (int) hour,
                .tm_min = (int) min,
                .tm_sec = (int) sec,
        };
        t = timegm(&tm);
        if (t < 0 || tm.tm_mday != (int) day) /* timegm() normalises 31 Feb; we refuse it */
                return -EINVAL;

        *ret = hlc_make((uint64_t) t * 1000 + msec, (uint16_t) counter);
        return 0;
}
