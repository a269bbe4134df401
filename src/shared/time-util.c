/* SPDX-License-Identifier: MIT */
/* Clock reads and the time-span/size grammar of the configuration files. */

#include <ctype.h>
#include <inttypes.h>

#include "time-util.h"

usec_t timespec_load(const struct timespec *ts) {
        if (ts->tv_sec < 0 || ts->tv_nsec < 0)
                return USEC_INFINITY;
        return (usec_t) ts->tv_sec * USEC_PER_SEC + (usec_t) ts->tv_nsec / NSEC_PER_USEC;
}

usec_t now(clockid_t clock) {
        struct timespec ts;

        if (clock_gettime(clock, &ts) < 0)
                abort(); /* Only fails for an invalid clock id: a programming error. */
        return timespec_load(&ts);
}

static const struct {
        const char *suffix;
        usec_t usec;
} time_units[] = {
        /* Longer suffixes first where one is a prefix of another ("ms" before "m"). */
        { "usec", 1 },
        { "us", 1 },
        { "msec", USEC_PER_MSEC },
        { "ms", USEC_PER_MSEC },
        { "seconds", USEC_PER_SEC },
        { "second", USEC_PER_SEC },
        { "sec", USEC_PER_SEC },
        { "s", USEC_PER_SEC },
        { "minutes", USEC_PER_MINUTE },
        { "minute", USEC_PER_MINUTE },
        { "min", USEC_PER_MINUTE },
        { "m", USEC_PER_MINUTE },
        { "hours", USEC_PER_HOUR },
        { "hour", USEC_PER_HOUR },
        { "hr", USEC_PER_HOUR },
        { "h", USEC_PER_HOUR },
        { "days", USEC_PER_DAY },
        { "day", USEC_PER_DAY },
        { "d", USEC_PER_DAY },
        { "weeks", USEC_PER_WEEK },
        { "week", USEC_PER_WEEK },
        { "w", USEC_PER_WEEK },
};

/* Reads digits into *ret; returns the number of digits, or -ERANGE. */
static int parse_digits(const char **p, uint64_t *ret) {
        uint64_t v = 0;
        int n = 0;

        while (isdigit((unsigned char) **p)) {
                unsigned d = (unsigned) (**p - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
                (*p)++;
                n++;
        }
        *ret = v;
        return n;
}

int parse_timespan(const char *s, usec_t *ret) {
        usec_t total = 0;
        const char *p = s;
        bool any = false;

        if (!s)
                return -EINVAL;
        while (isspace((unsigned char) *p))
                p++;
        if (streq(p, "infinity")) {
                *ret = USEC_INFINITY;
                return 0;
        }

        while (*p) {
                uint64_t whole = 0, frac = 0, frac_div = 1, mult = USEC_PER_SEC;
                int n, nf = 0;
                size_t i;

                n = parse_digits(&p, &whole);
                if (n < 0)
                        return n;
                if (*p == '.') {
                        p++;
                        while (isdigit((unsigned char) *p)) {
                                if (nf < 6) {
                                        frac = frac * 10 + (uint64_t) (*p - '0');
                                        frac_div *= 10;
                                }
                                nf++;
                                p++;
                        }
                }
                if (n == 0 && nf == 0)
                        return -EINVAL;
                while (isspace((unsigned char) *p))
                        p++;

                for (i = 0; i < ELEMENTSOF(time_units); i++) {
                        const char *e = startswith(p, time_units[i].suffix);
                        if (e && !isalpha((unsigned char) *e)) {
                                mult = time_units[i].usec;
                                p = e;
                                break;
                        }
                }
                if (i == ELEMENTSOF(time_units) && isalpha((unsigned char) *p))
                        return -EINVAL;

                if (whole > UINT64_MAX / mult)
                        return -ERANGE;
                usec_t v = whole * mult + frac * mult / frac_div;
                if (v < whole * mult || total > UINT64_MAX - 1 - v)
                        return -ERANGE;
                total += v;
                any = true;

                while (isspace((unsigned char) *p))
                        p++;
        }

        if (!any)
                return -EINVAL;
        *ret = total;
        return 0;
}

int parse_size(const char *s, uint64_t *ret) {
        static const struct {
                char suffix;
                uint64_t factor;
        } units[] = {
                { 'K', 1ULL << 10 }, { 'M', 1ULL << 20 }, { 'G', 1ULL << 30 }, { 'T', 1ULL << 40 },
        };
        const char *p = s;
        uint64_t v, factor = 1;
        int n;

        if (!s)
                return -EINVAL;
        while (isspace((unsigned char) *p))
                p++;
        n = parse_digits(&p, &v);
        if (n < 0)
                return n;
        if (n == 0)
                return -EINVAL;
        while (isspace((unsigned char) *p))
                p++;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (toupper((unsigned char) *p) == units[i].suffix) {
                        factor = units[i].factor;
                        p++;
                        break;
                }
        if (*p == 'B' || (factor == 1 && *p == 'b'))
                p++;
        while (isspace((unsigned char) *p))
                p++;
        if (*p)
                return -EINVAL;
        if (v > UINT64_MAX / factor)
                return -ERANGE;
        *ret = v * factor;
        return 0;
}

char *format_timespan(char *buf, size_t l, usec_t t) {
        static const struct {
                const char *suffix;
                usec_t usec;
        } units[] = {
                { "w", USEC_PER_WEEK }, { "d", USEC_PER_DAY },  { "h", USEC_PER_HOUR }, { "min", USEC_PER_MINUTE },
                { "s", USEC_PER_SEC },  { "ms", USEC_PER_MSEC }, { "us", 1 },
        };

        if (t == USEC_INFINITY) {
                snprintf(buf, l, "infinity");
                return buf;
        }
        if (t == 0) {
                snprintf(buf, l, "0");
                return buf;
        }
        /* The largest unit that divides the value exactly, so the output reads back unchanged. */
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (t % units[i].usec == 0) {
                        snprintf(buf, l, "%" PRIu64 "%s", t / units[i].usec, units[i].suffix);
                        return buf;
                }
        return buf; /* not reached: every value is a multiple of 1us */
}

char *format_size(char *buf, size_t l, uint64_t bytes) {
        static const struct {
                const char *suffix;
                uint64_t factor;
        } units[] = {
                { "G", 1ULL << 30 },
                { "M", 1ULL << 20 },
                { "K", 1ULL << 10 },
        };

        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (bytes > 0 && bytes % units[i].factor == 0) {
                        snprintf(buf, l, "%" PRIu64 "%s", bytes / units[i].factor, units[i].suffix);
                        return buf;
                }
        snprintf(buf, l, "%" PRIu64, bytes);
        return buf;
}

char *format_iso8601_utc(char *buf, size_t l, usec_t realtime) {
        time_t sec = (time_t) (realtime / USEC_PER_SEC);
        struct tm tm;

        if (!gmtime_r(&sec, &tm)) {
                snprintf(buf, l, "1970-01-01T00:00:00.000Z");
                return buf;
        }
        snprintf(buf, l, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned) (realtime % USEC_PER_SEC / USEC_PER_MSEC));
        return buf;
}
