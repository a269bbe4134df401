/* SPDX-License-Identifier: MIT */
/* The hybrid logical clock: ordering, backward clock steps, counter overflow, restarts, text form. */

#include "hlc.h"
#include "tests.h"

/* 2026-11-29T03:17:26.123Z */
#define T0_MS UINT64_C(1795922246123)
#define T0 (T0_MS * USEC_PER_MSEC)

static void test_tick_takes_wall_clock_milliseconds_with_counter_zero(void) {
        Hlc c = HLC_INIT;
        uint64_t s = hlc_tick(&c, T0 + 456); /* sub-millisecond part is dropped */

        ASSERT_EQ_U(hlc_physical_ms(s), T0_MS);
        ASSERT_EQ_U(hlc_counter(s), 0);
        ASSERT_EQ_U(hlc_to_usec(s), T0);
        ASSERT_EQ_U(c.last, s);
}

static void test_tick_is_strictly_monotonic_as_time_advances(void) {
        Hlc c = HLC_INIT;
        uint64_t prev = 0;

        for (usec_t t = T0; t < T0 + 50 * USEC_PER_MSEC; t += 333) {
                uint64_t s = hlc_tick(&c, t);
                ASSERT_TRUE(s > prev);
                ASSERT_TRUE(hlc_physical_ms(s) <= t / USEC_PER_MSEC);
                prev = s;
        }
}

static void test_tick_in_the_same_millisecond_increments_the_counter(void) {
        Hlc c = HLC_INIT;
        uint64_t a = hlc_tick(&c, T0), b = hlc_tick(&c, T0 + 1), d = hlc_tick(&c, T0 + 999);

        ASSERT_EQ_U(hlc_physical_ms(b), T0_MS);
        ASSERT_EQ_U(hlc_counter(a), 0);
        ASSERT_EQ_U(hlc_counter(b), 1);
        ASSERT_EQ_U(hlc_counter(d), 2);

        /* The next millisecond resets the counter. */
        uint64_t e = hlc_tick(&c, T0 + USEC_PER_MSEC);
        ASSERT_EQ_U(hlc_physical_ms(e), T0_MS + 1);
        ASSERT_EQ_U(hlc_counter(e), 0);
}

static void test_tick_stays_monotonic_when_the_clock_steps_back(void) {
        Hlc c = HLC_INIT;
        uint64_t a = hlc_tick(&c, T0 + 10 * USEC_PER_SEC);

        /* The wall clock jumps back ten seconds: stamps keep the old milliseconds and count on. */
        uint64_t b = hlc_tick(&c, T0);
        uint64_t d = hlc_tick(&c, T0 + USEC_PER_SEC);
        ASSERT_TRUE(b > a);
        ASSERT_TRUE(d > b);
        ASSERT_EQ_U(hlc_physical_ms(b), T0_MS + 10000);
        ASSERT_EQ_U(hlc_counter(b), 1);
        ASSERT_EQ_U(hlc_counter(d), 2);

        /* Once the wall clock passes the clock again, it takes over. */
        uint64_t e = hlc_tick(&c, T0 + 11 * USEC_PER_SEC);
        ASSERT_EQ_U(hlc_physical_ms(e), T0_MS + 11000);
        ASSERT_EQ_U(hlc_counter(e), 0);
}

static void test_tick_counter_overflow_advances_the_millisecond(void) {
        Hlc c = { .last = hlc_make(T0_MS, UINT16_MAX - 1) };

        uint64_t a = hlc_tick(&c, T0);
        ASSERT_EQ_U(hlc_physical_ms(a), T0_MS);
        ASSERT_EQ_U(hlc_counter(a), UINT16_MAX);

        uint64_t b = hlc_tick(&c, T0);
        ASSERT_TRUE(b > a);
        ASSERT_EQ_U(hlc_physical_ms(b), T0_MS + 1);
        ASSERT_EQ_U(hlc_counter(b), 0);

        /* The wall clock catching up with the advanced millisecond does not reuse a stamp. */
        uint64_t d = hlc_tick(&c, T0 + USEC_PER_MSEC);
        ASSERT_TRUE(d > b);
        ASSERT_EQ_U(hlc_physical_ms(d), T0_MS + 1);
        ASSERT_EQ_U(hlc_counter(d), 1);
}

static void test_observe_after_restart_keeps_new_stamps_above_persisted_ones(void) {
        Hlc before = HLC_INIT, after = HLC_INIT;
        uint64_t persisted = 0;

        for (unsigned i = 0; i < 5; i++)
                persisted = hlc_tick(&before, T0 + 60 * USEC_PER_SEC);

        /* After the restart the wall clock is a minute behind what was written to disk. */
        hlc_observe(&after, persisted);
        uint64_t s = hlc_tick(&after, T0);
        ASSERT_TRUE(s > persisted);
        ASSERT_EQ_U(s, persisted + 1);

        /* Observing an older stamp never lowers the clock. */
        hlc_observe(&after, hlc_make(T0_MS - 5, 0));
        ASSERT_EQ_U(after.last, s);
}

static void test_physical_part_is_clamped_to_48_bits(void) {
        Hlc c = HLC_INIT;
        uint64_t s = hlc_tick(&c, USEC_INFINITY - 1);

        ASSERT_EQ_U(hlc_physical_ms(s), HLC_MS_MAX);
        ASSERT_TRUE(hlc_tick(&c, USEC_INFINITY - 1) > s);
}

static void test_format_and_parse_round_trip_and_sort_like_stamps(void) {
        char a[HLC_FORMAT_MAX], b[HLC_FORMAT_MAX];
        uint64_t s = hlc_make(T0_MS, 42), parsed;

        ASSERT_STREQ(hlc_format(a, sizeof a, s), "2026-11-29T03:17:26.123Z/00042");
        ASSERT_OK(hlc_parse(a, &parsed));
        ASSERT_EQ_U(parsed, s);

        /* Counter digits are fixed width, so the text compares like the number. */
        hlc_format(a, sizeof a, hlc_make(T0_MS, 9));
        hlc_format(b, sizeof b, hlc_make(T0_MS, 10));
        ASSERT_TRUE(strcmp(a, b) < 0);
        hlc_format(b, sizeof b, hlc_make(T0_MS + 1, 0));
        ASSERT_TRUE(strcmp(a, b) < 0);
}

static void test_parse_refuses_malformed_text(void) {
        uint64_t v;

        ASSERT_ERROR(hlc_parse(NULL, &v), EINVAL);
        ASSERT_ERROR(hlc_parse("", &v), EINVAL);
        ASSERT_ERROR(hlc_parse("2026-11-29T03:17:26.123Z", &v), EINVAL);
        ASSERT_ERROR(hlc_parse("2026-11-29T03:17:26.123Z/0042", &v), EINVAL);
        ASSERT_ERROR(hlc_parse("2026-11-29T03:17:26.123Z/000420", &v), EINVAL);
        ASSERT_ERROR(hlc_parse("2026-11-29T03:17:26.123Z/99999", &v), EINVAL);
        ASSERT_ERROR(hlc_parse("2026-02-31T03:17:26.123Z/00001", &v), EINVAL);
        ASSERT_ERROR(hlc_parse("2026-11-29 03:17:26.123Z/00001", &v), EINVAL);
        ASSERT_ERROR(hlc_parse("+026-11-29T03:17:26.123Z/00001", &v), EINVAL);
}

int main(void) {
        TEST_RUN(test_tick_takes_wall_clock_milliseconds_with_counter_zero);
        TEST_RUN(test_tick_is_strictly_monotonic_as_time_advances);
        TEST_RUN(test_tick_in_the_same_millisecond_increments_the_counter);
        TEST_RUN(test_tick_stays_monotonic_when_the_clock_steps_back);
        TEST_RUN(test_tick_counter_overflow_advances_the_millisecond);
        TEST_RUN(test_observe_after_restart_keeps_new_stamps_above_persisted_ones);
        TEST_RUN(test_physical_part_is_clamped_to_48_bits);
        TEST_RUN(test_format_and_parse_round_trip_and_sort_like_stamps);
        TEST_RUN(test_parse_refuses_malformed_text);
        return 0;
}
