/* SPDX-License-Identifier: MIT */
/* Time spans and sizes as the configuration files write them. */

#include "tests.h"
#include "time-util.h"

static void test_parse_timespan_accepts_units(void) {
        usec_t u;

        ASSERT_OK(parse_timespan("30s", &u));
        ASSERT_EQ_U(u, 30 * USEC_PER_SEC);
        ASSERT_OK(parse_timespan("5min", &u));
        ASSERT_EQ_U(u, 5 * USEC_PER_MINUTE);
        ASSERT_OK(parse_timespan("500ms", &u));
        ASSERT_EQ_U(u, 500 * USEC_PER_MSEC);
        ASSERT_OK(parse_timespan("250us", &u));
        ASSERT_EQ_U(u, 250);
        ASSERT_OK(parse_timespan("2h", &u));
        ASSERT_EQ_U(u, 2 * USEC_PER_HOUR);
        ASSERT_OK(parse_timespan("7d", &u));
        ASSERT_EQ_U(u, 7 * USEC_PER_DAY);
        ASSERT_OK(parse_timespan("1w", &u));
        ASSERT_EQ_U(u, USEC_PER_WEEK);
        ASSERT_OK(parse_timespan("1min 30s", &u));
        ASSERT_EQ_U(u, 90 * USEC_PER_SEC);
        ASSERT_OK(parse_timespan(" 10 s ", &u));
        ASSERT_EQ_U(u, 10 * USEC_PER_SEC);
        ASSERT_OK(parse_timespan("infinity", &u));
        ASSERT_EQ_U(u, USEC_INFINITY);
}

static void test_parse_timespan_bare_number_is_seconds(void) {
        usec_t u;

        /* The prototype's environment variables give seconds, sometimes with a fraction. */
        ASSERT_OK(parse_timespan("10", &u));
        ASSERT_EQ_U(u, 10 * USEC_PER_SEC);
        ASSERT_OK(parse_timespan("2.5", &u));
        ASSERT_EQ_U(u, 2500 * USEC_PER_MSEC);
        ASSERT_OK(parse_timespan("0.1s", &u));
        ASSERT_EQ_U(u, 100 * USEC_PER_MSEC);
        ASSERT_OK(parse_timespan("0", &u));
        ASSERT_EQ_U(u, 0);
}

static void test_parse_timespan_rejects_garbage(void) {
        usec_t u = 42;

        ASSERT_ERROR(parse_timespan("", &u), EINVAL);
        ASSERT_ERROR(parse_timespan("abc", &u), EINVAL);
        ASSERT_ERROR(parse_timespan("5 parsecs", &u), EINVAL);
        ASSERT_ERROR(parse_timespan("-5s", &u), EINVAL);
        ASSERT_ERROR(parse_timespan("5sx", &u), EINVAL);
        ASSERT_ERROR(parse_timespan(".s", &u), EINVAL);
        ASSERT_ERROR(parse_timespan("99999999999999999999s", &u), ERANGE);
        ASSERT_ERROR(parse_timespan("999999999999w", &u), ERANGE);
        ASSERT_EQ_U(u, 42); /* untouched on failure */
}

static void test_parse_size(void) {
        uint64_t v;

        ASSERT_OK(parse_size("64K", &v));
        ASSERT_EQ_U(v, 65536);
        ASSERT_OK(parse_size("1M", &v));
        ASSERT_EQ_U(v, 1048576);
        ASSERT_OK(parse_size("2G", &v));
        ASSERT_EQ_U(v, 2ULL << 30);
        ASSERT_OK(parse_size("512", &v));
        ASSERT_EQ_U(v, 512);
        ASSERT_OK(parse_size("256KB", &v));
        ASSERT_EQ_U(v, 256 * 1024);
        ASSERT_OK(parse_size("16k", &v));
        ASSERT_EQ_U(v, 16 * 1024);
        ASSERT_ERROR(parse_size("", &v), EINVAL);
        ASSERT_ERROR(parse_size("K", &v), EINVAL);
        ASSERT_ERROR(parse_size("12Q", &v), EINVAL);
        ASSERT_ERROR(parse_size("-1K", &v), EINVAL);
        ASSERT_ERROR(parse_size("1.5M", &v), EINVAL);
        ASSERT_ERROR(parse_size("99999999999999999T", &v), ERANGE);
}

static void test_format_round_trips(void) {
        static const usec_t spans[] = { 0, 1, 500 * USEC_PER_MSEC, 30 * USEC_PER_SEC, 90 * USEC_PER_SEC,
                                        5 * USEC_PER_MINUTE, USEC_PER_DAY, 90 * USEC_PER_DAY, USEC_INFINITY };
        char buf[FORMAT_TIMESPAN_MAX];
        usec_t u;
        uint64_t v;

        for (size_t i = 0; i < ELEMENTSOF(spans); i++) {
                ASSERT_OK(parse_timespan(format_timespan(buf, sizeof buf, spans[i]), &u));
                ASSERT_EQ_U(u, spans[i]);
        }
        ASSERT_STREQ(format_timespan(buf, sizeof buf, 5 * USEC_PER_MINUTE), "5min");
        ASSERT_STREQ(format_timespan(buf, sizeof buf, 1500 * USEC_PER_MSEC), "1500ms");
        ASSERT_STREQ(format_size(buf, sizeof buf, 256 * 1024), "256K");
        ASSERT_STREQ(format_size(buf, sizeof buf, 1000), "1000");
        ASSERT_OK(parse_size(format_size(buf, sizeof buf, 3ULL << 30), &v));
        ASSERT_EQ_U(v, 3ULL << 30);
}

static void test_format_iso8601(void) {
        char buf[FORMAT_ISO8601_MAX];

        ASSERT_STREQ(format_iso8601_utc(buf, sizeof buf, 0), "1970-01-01T00:00:00.000Z");
        /* 2026-11-29T03:17:26.123Z */
        ASSERT_STREQ(format_iso8601_utc(buf, sizeof buf, 1795922246123456ULL), "2026-11-29T03:17:26.123Z");
}

static void test_now_is_monotonic(void) {
        usec_t a = now(CLOCK_MONOTONIC), b = now(CLOCK_MONOTONIC);

        ASSERT_TRUE(a > 0);
        ASSERT_TRUE(b >= a);
        ASSERT_TRUE(usec_add(USEC_INFINITY, 5) == USEC_INFINITY);
        ASSERT_EQ_U(usec_sub_unsigned(3, 5), 0);
}

int main(void) {
        TEST_RUN(test_parse_timespan_accepts_units);
        TEST_RUN(test_parse_timespan_bare_number_is_seconds);
        TEST_RUN(test_parse_timespan_rejects_garbage);
        TEST_RUN(test_parse_size);
        TEST_RUN(test_format_round_trips);
        TEST_RUN(test_format_iso8601);
        TEST_RUN(test_now_is_monotonic);
        return 0;
}
