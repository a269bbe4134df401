/* SPDX-License-Identifier: MIT */
/* The circuit breaker's transitions, driven with a made-up clock: closed -> open after the threshold,
 * open -> half-open after the timeout, trial limits, close after N, reopen on a trial failure, reset,
 * stale results, counters and custom thresholds. */

#include "breaker.h"
#include "tests.h"

#define T0 (1000 * USEC_PER_SEC)

static Breaker make(unsigned threshold, usec_t timeout, unsigned close_after, unsigned trials) {
        BreakerOptions o = {
                .failure_threshold = threshold,
                .open_timeout = timeout,
                .close_after = close_after,
                .half_open_max_trials = trials,
        };
        Breaker b;

        breaker_init(&b, &o);
        return b;
}

static Breaker make_default(void) {
        Breaker b;

        breaker_init(&b, &BREAKER_OPTIONS_DEFAULT);
        return b;
}

/* One permitted send and its result, at time t. Returns whether the state changed. */
static bool send(Breaker *b, usec_t t, bool success) {
        BreakerPermit p;

        ASSERT_TRUE(breaker_allow(b, t, &p));
        return breaker_record(b, &p, success, t);
}

static void fail_n(Breaker *b, usec_t t, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                (void) send(b, t, false);
}

static void test_initial_state_is_closed(void) {
        Breaker b = make_default();
        BreakerPermit p;

        ASSERT_EQ(b.state, BREAKER_CLOSED);
        ASSERT_EQ(b.consecutive_failures, 0);
        ASSERT_EQ(b.n_opened, 0);
        ASSERT_EQ_U(breaker_open_until(&b), USEC_INFINITY);
        ASSERT_TRUE(breaker_allow(&b, T0, &p));
        ASSERT_TRUE(p.allowed);
        ASSERT_FALSE(p.trial);
        ASSERT_FALSE(breaker_update(&b, T0 + USEC_PER_DAY));
        ASSERT_EQ(b.state, BREAKER_CLOSED);
}

static void test_defaults_are_the_documented_ones(void) {
        Breaker b = make_default();

        ASSERT_EQ(b.options.failure_threshold, 5);
        ASSERT_EQ_U(b.options.open_timeout, 60 * USEC_PER_SEC);
        ASSERT_EQ(b.options.close_after, 2);
        ASSERT_EQ(b.options.half_open_max_trials, 1);
}

static void test_failures_below_threshold_stay_closed(void) {
        Breaker b = make_default();

        for (unsigned i = 1; i < 5; i++) {
                ASSERT_FALSE(send(&b, T0, false));
                ASSERT_EQ(b.state, BREAKER_CLOSED);
                ASSERT_EQ(b.consecutive_failures, i);
        }
}

static void test_threshold_failures_open(void) {
        Breaker b = make_default();

        fail_n(&b, T0, 4);
        ASSERT_TRUE(send(&b, T0 + 7, false));
        ASSERT_EQ(b.state, BREAKER_OPEN);
        ASSERT_EQ_U(b.opened_at, T0 + 7);
        ASSERT_EQ_U(breaker_open_until(&b), T0 + 7 + 60 * USEC_PER_SEC);
        ASSERT_EQ(b.n_opened, 1);
}

static void test_success_in_closed_resets_failure_count(void) {
        Breaker b = make_default();

        fail_n(&b, T0, 4);
        ASSERT_FALSE(send(&b, T0, true));
        ASSERT_EQ(b.consecutive_failures, 0);
        fail_n(&b, T0, 4);
        ASSERT_EQ(b.state, BREAKER_CLOSED);
        ASSERT_TRUE(send(&b, T0, false));
        ASSERT_EQ(b.state, BREAKER_OPEN);
}

static void test_open_rejects_and_counts_rejections(void) {
        Breaker b = make_default();
        BreakerPermit p;

        fail_n(&b, T0, 5);
        for (unsigned i = 0; i < 3; i++) {
                ASSERT_FALSE(breaker_allow(&b, T0 + i, &p));
                ASSERT_FALSE(p.allowed);
        }
        ASSERT_EQ(b.n_rejected, 3);
        ASSERT_EQ(b.state, BREAKER_OPEN);
}

static void test_open_stays_open_until_the_timeout(void) {
        Breaker b = make_default();
        BreakerPermit p;

        fail_n(&b, T0, 5);
        ASSERT_FALSE(breaker_update(&b, T0 + 60 * USEC_PER_SEC - 1));
        ASSERT_EQ(b.state, BREAKER_OPEN);
        ASSERT_FALSE(breaker_allow(&b, T0 + 60 * USEC_PER_SEC - 1, &p));
}

static void test_timeout_moves_to_half_open(void) {
        Breaker b = make_default();

        fail_n(&b, T0, 5);
        ASSERT_TRUE(breaker_update(&b, T0 + 60 * USEC_PER_SEC));
        ASSERT_EQ(b.state, BREAKER_HALF_OPEN);
        ASSERT_EQ_U(breaker_open_until(&b), USEC_INFINITY);
        /* Once only. */
        ASSERT_FALSE(breaker_update(&b, T0 + 61 * USEC_PER_SEC));
}

static void test_allow_after_timeout_permits_a_trial(void) {
        Breaker b = make_default();
        BreakerPermit p;

        fail_n(&b, T0, 5);
        ASSERT_TRUE(breaker_allow(&b, T0 + 60 * USEC_PER_SEC, &p));
        ASSERT_EQ(b.state, BREAKER_HALF_OPEN);
        ASSERT_TRUE(p.trial);
        ASSERT_EQ(b.trials_in_flight, 1);
}

static void test_half_open_limits_trials_in_flight(void) {
        Breaker b = make_default();
        BreakerPermit p1, p2;
        usec_t t = T0 + 60 * USEC_PER_SEC;

        fail_n(&b, T0, 5);
        ASSERT_TRUE(breaker_allow(&b, t, &p1));
        ASSERT_FALSE(breaker_allow(&b, t, &p2));
        /* Waiting for a trial is not a rejection. */
        ASSERT_EQ(b.n_rejected, 0);
        ASSERT_FALSE(breaker_record(&b, &p1, true, t));
        ASSERT_TRUE(breaker_allow(&b, t, &p2));
        ASSERT_TRUE(p2.trial);
}

static void test_half_open_failure_reopens(void) {
        Breaker b = make_default();
        BreakerPermit p;
        usec_t t = T0 + 60 * USEC_PER_SEC;

        fail_n(&b, T0, 5);
        ASSERT_TRUE(breaker_allow(&b, t, &p));
        ASSERT_TRUE(breaker_record(&b, &p, false, t + 5));
        ASSERT_EQ(b.state, BREAKER_OPEN);
        ASSERT_EQ_U(b.opened_at, t + 5);
        ASSERT_EQ_U(breaker_open_until(&b), t + 5 + 60 * USEC_PER_SEC);
        ASSERT_EQ(b.n_opened, 2);
        ASSERT_FALSE(breaker_allow(&b, t + 6, &p));
}

static void test_half_open_success_below_close_after_stays_half_open(void) {
        Breaker b = make_default();
        usec_t t = T0 + 60 * USEC_PER_SEC;

        fail_n(&b, T0, 5);
        ASSERT_FALSE(send(&b, t, true));
        ASSERT_EQ(b.state, BREAKER_HALF_OPEN);
        ASSERT_EQ(b.trial_successes, 1);
}

static void test_close_after_successes_closes(void) {
        Breaker b = make_default();
        usec_t t = T0 + 60 * USEC_PER_SEC;

        fail_n(&b, T0, 5);
        ASSERT_FALSE(send(&b, t, true));
        ASSERT_TRUE(send(&b, t, true));
        ASSERT_EQ(b.state, BREAKER_CLOSED);
        ASSERT_EQ(b.n_closed, 1);
        ASSERT_EQ(b.consecutive_failures, 0);
        /* Closed again means a full threshold of failures before it opens. */
        fail_n(&b, t, 4);
        ASSERT_EQ(b.state, BREAKER_CLOSED);
}

static void test_reset_from_open_closes(void) {
        Breaker b = make_default();
        BreakerPermit p;

        fail_n(&b, T0, 5);
        ASSERT_TRUE(breaker_reset(&b));
        ASSERT_EQ(b.state, BREAKER_CLOSED);
        ASSERT_EQ(b.n_resets, 1);
        ASSERT_EQ(b.n_closed, 0);
        ASSERT_TRUE(breaker_allow(&b, T0 + 1, &p));
        ASSERT_FALSE(p.trial);
}

static void test_reset_from_half_open_closes(void) {
        Breaker b = make_default();

        fail_n(&b, T0, 5);
        ASSERT_TRUE(breaker_update(&b, T0 + 60 * USEC_PER_SEC));
        ASSERT_TRUE(breaker_reset(&b));
        ASSERT_EQ(b.state, BREAKER_CLOSED);
        ASSERT_EQ(b.trials_in_flight, 0);
}

static void test_reset_when_closed_clears_failures_without_a_change(void) {
        Breaker b = make_default();

        fail_n(&b, T0, 4);
        ASSERT_FALSE(breaker_reset(&b));
        ASSERT_EQ(b.consecutive_failures, 0);
        fail_n(&b, T0, 4);
        ASSERT_EQ(b.state, BREAKER_CLOSED);
}

static void test_late_results_of_sends_made_before_opening_move_nothing(void) {
        Breaker b = make_default();
        BreakerPermit early_success, early_failure;
        usec_t t = T0 + 60 * USEC_PER_SEC;

        /* Two sends in flight while the breaker is still closed. */
        ASSERT_TRUE(breaker_allow(&b, T0, &early_success));
        ASSERT_TRUE(breaker_allow(&b, T0, &early_failure));
        fail_n(&b, T0, 5);
        ASSERT_EQ(b.state, BREAKER_OPEN);

        /* A late success must not close an open breaker... */
        ASSERT_FALSE(breaker_record(&b, &early_success, true, T0 + 1));
        ASSERT_EQ(b.state, BREAKER_OPEN);
        /* ...nor a late failure reopen a half-open one or eat its trial. */
        ASSERT_TRUE(breaker_update(&b, t));
        ASSERT_FALSE(breaker_record(&b, &early_failure, false, t));
        ASSERT_EQ(b.state, BREAKER_HALF_OPEN);
        ASSERT_EQ(b.trials_in_flight, 0);
        /* Both still count. */
        ASSERT_EQ(b.n_successes, 1);
        ASSERT_EQ(b.n_failures, 6);
}

static void test_results_after_reset_are_stale(void) {
        Breaker b = make(2, 10, 1, 1);
        BreakerPermit p1, p2;

        ASSERT_TRUE(breaker_allow(&b, T0, &p1));
        ASSERT_TRUE(breaker_allow(&b, T0, &p2));
        ASSERT_FALSE(breaker_reset(&b));
        ASSERT_FALSE(breaker_record(&b, &p1, false, T0));
        ASSERT_FALSE(breaker_record(&b, &p2, false, T0));
        ASSERT_EQ(b.state, BREAKER_CLOSED);
        ASSERT_EQ(b.consecutive_failures, 0);
}

static void test_non_trial_permit_in_half_open_moves_nothing(void) {
        Breaker b = make(1, 10, 1, 1);
        BreakerPermit closed_permit;

        ASSERT_TRUE(breaker_allow(&b, T0, &closed_permit));
        ASSERT_TRUE(send(&b, T0, false)); /* opens */
        ASSERT_TRUE(breaker_update(&b, T0 + 10));
        ASSERT_FALSE(breaker_record(&b, &closed_permit, true, T0 + 10));
        ASSERT_EQ(b.state, BREAKER_HALF_OPEN);
}

static void test_release_frees_the_trial_slot(void) {
        Breaker b = make_default();
        BreakerPermit p;
        usec_t t = T0 + 60 * USEC_PER_SEC;

        fail_n(&b, T0, 5);
        ASSERT_TRUE(breaker_allow(&b, t, &p));
        ASSERT_FALSE(breaker_allow(&b, t, &(BreakerPermit) {}));
        breaker_release(&b, &p);
        ASSERT_EQ(b.trials_in_flight, 0);
        ASSERT_TRUE(breaker_allow(&b, t, &p));
        /* Releasing counts nothing. */
        ASSERT_EQ(b.n_successes, 0);
        ASSERT_EQ(b.n_failures, 5);
}

static void test_counters_count_every_result(void) {
        Breaker b = make_default();
        usec_t t = T0 + 60 * USEC_PER_SEC;

        ASSERT_FALSE(send(&b, T0, true));
        fail_n(&b, T0, 5);
        (void) send(&b, t, false);                  /* trial fails: opened twice */
        (void) send(&b, t + 60 * USEC_PER_SEC, true);
        (void) send(&b, t + 60 * USEC_PER_SEC, true); /* closed */
        ASSERT_EQ(b.n_successes, 3);
        ASSERT_EQ(b.n_failures, 6);
        ASSERT_EQ(b.n_opened, 2);
        ASSERT_EQ(b.n_closed, 1);
        ASSERT_EQ(b.state, BREAKER_CLOSED);
}

static void test_custom_thresholds(void) {
        Breaker b = make(1, 10, 3, 2);
        BreakerPermit p1, p2, p3;

        ASSERT_TRUE(send(&b, T0, false));
        ASSERT_EQ(b.state, BREAKER_OPEN);
        ASSERT_FALSE(breaker_update(&b, T0 + 9));
        ASSERT_TRUE(breaker_update(&b, T0 + 10));

        /* Two trials at once, not three. */
        ASSERT_TRUE(breaker_allow(&b, T0 + 10, &p1));
        ASSERT_TRUE(breaker_allow(&b, T0 + 10, &p2));
        ASSERT_FALSE(breaker_allow(&b, T0 + 10, &p3));
        ASSERT_FALSE(breaker_record(&b, &p1, true, T0 + 11));
        ASSERT_FALSE(breaker_record(&b, &p2, true, T0 + 11));
        ASSERT_EQ(b.state, BREAKER_HALF_OPEN);
        ASSERT_TRUE(send(&b, T0 + 12, true));
        ASSERT_EQ(b.state, BREAKER_CLOSED);
}

static void test_set_options_keeps_state_and_applies_to_what_comes_next(void) {
        Breaker b = make_default();
        BreakerOptions o = BREAKER_OPTIONS_DEFAULT;

        fail_n(&b, T0, 3);
        o.failure_threshold = 3;
        o.open_timeout = 5;
        ASSERT_OK(breaker_set_options(&b, &o));
        ASSERT_EQ(b.state, BREAKER_CLOSED);
        ASSERT_EQ(b.consecutive_failures, 3);
        ASSERT_TRUE(send(&b, T0, false));
        ASSERT_EQ_U(breaker_open_until(&b), T0 + 5);

        o.failure_threshold = 0;
        ASSERT_ERROR(breaker_set_options(&b, &o), EINVAL);
        ASSERT_EQ(b.options.failure_threshold, 3);
}

static void test_options_valid(void) {
        BreakerOptions o = BREAKER_OPTIONS_DEFAULT;

        ASSERT_TRUE(breaker_options_valid(&o));
        ASSERT_FALSE(breaker_options_valid(NULL));
        o.failure_threshold = 0;
        ASSERT_FALSE(breaker_options_valid(&o));
        o = BREAKER_OPTIONS_DEFAULT;
        o.open_timeout = 0;
        ASSERT_FALSE(breaker_options_valid(&o));
        o = BREAKER_OPTIONS_DEFAULT;
        o.close_after = 0;
        ASSERT_FALSE(breaker_options_valid(&o));
        o = BREAKER_OPTIONS_DEFAULT;
        o.half_open_max_trials = 0;
        ASSERT_FALSE(breaker_options_valid(&o));
}

static void test_open_timeout_saturates(void) {
        Breaker b = make(1, USEC_INFINITY, 1, 1);

        ASSERT_TRUE(send(&b, T0, false));
        ASSERT_EQ_U(breaker_open_until(&b), USEC_INFINITY);
        ASSERT_FALSE(breaker_update(&b, USEC_INFINITY - 1));
        ASSERT_EQ(b.state, BREAKER_OPEN);
}

static void test_changed_at_is_the_time_each_transition_was_decided_with(void) {
        Breaker b = make_default();
        usec_t t1 = T0 + 60 * USEC_PER_SEC, t2 = t1 + USEC_PER_SEC;

        ASSERT_EQ_U(b.changed_at, 0);
        fail_n(&b, T0, 5);
        ASSERT_EQ(b.state, BREAKER_OPEN);
        ASSERT_EQ_U(b.changed_at, T0);
        /* Not the time of a later call that changes nothing. */
        ASSERT_FALSE(breaker_update(&b, T0 + USEC_PER_SEC));
        ASSERT_EQ_U(b.changed_at, T0);
        ASSERT_TRUE(breaker_update(&b, t1));
        ASSERT_EQ(b.state, BREAKER_HALF_OPEN);
        ASSERT_EQ_U(b.changed_at, t1);
        ASSERT_EQ_U(b.changed_at - b.opened_at, b.options.open_timeout);
        ASSERT_FALSE(send(&b, t2, true));
        ASSERT_EQ_U(b.changed_at, t1);
        ASSERT_TRUE(send(&b, t2 + 1, true));
        ASSERT_EQ(b.state, BREAKER_CLOSED);
        ASSERT_EQ_U(b.changed_at, t2 + 1);
        /* A reset takes no time argument: 0 says so. */
        fail_n(&b, t2 + 2, 5);
        ASSERT_TRUE(breaker_reset(&b));
        ASSERT_EQ_U(b.changed_at, 0);
}

static void test_state_strings(void) {
        ASSERT_STREQ(breaker_state_to_string(BREAKER_CLOSED), "closed");
        ASSERT_STREQ(breaker_state_to_string(BREAKER_OPEN), "open");
        ASSERT_STREQ(breaker_state_to_string(BREAKER_HALF_OPEN), "half_open");
        ASSERT_NULL(breaker_state_to_string(_BREAKER_STATE_MAX));
        ASSERT_NULL(breaker_state_to_string(_BREAKER_STATE_INVALID));
        for (BreakerState s = 0; s < _BREAKER_STATE_MAX; s++)
                ASSERT_EQ(breaker_state_from_string(breaker_state_to_string(s)), s);
        ASSERT_EQ(breaker_state_from_string("half-open"), _BREAKER_STATE_INVALID);
        ASSERT_EQ(breaker_state_from_string(NULL), _BREAKER_STATE_INVALID);
}

int main(void) {
        TEST_RUN(test_initial_state_is_closed);
        TEST_RUN(test_defaults_are_the_documented_ones);
        TEST_RUN(test_failures_below_threshold_stay_closed);
        TEST_RUN(test_threshold_failures_open);
        TEST_RUN(test_success_in_closed_resets_failure_count);
        TEST_RUN(test_open_rejects_and_counts_rejections);
        TEST_RUN(test_open_stays_open_until_the_timeout);
        TEST_RUN(test_timeout_moves_to_half_open);
        TEST_RUN(test_allow_after_timeout_permits_a_trial);
        TEST_RUN(test_half_open_limits_trials_in_flight);
        TEST_RUN(test_half_open_failure_reopens);
        TEST_RUN(test_half_open_success_below_close_after_stays_half_open);
        TEST_RUN(test_close_after_successes_closes);
        TEST_RUN(test_reset_from_open_closes);
        TEST_RUN(test_reset_from_half_open_closes);
        TEST_RUN(test_reset_when_closed_clears_failures_without_a_change);
        TEST_RUN(test_late_results_of_sends_made_before_opening_move_nothing);
        TEST_RUN(test_results_after_reset_are_stale);
        TEST_RUN(test_non_trial_permit_in_half_open_moves_nothing);
        TEST_RUN(test_release_frees_the_trial_slot);
        TEST_RUN(test_counters_count_every_result);
        TEST_RUN(test_custom_thresholds);
        TEST_RUN(test_set_options_keeps_state_and_applies_to_what_comes_next);
        TEST_RUN(test_options_valid);
        TEST_RUN(test_open_timeout_saturates);
        TEST_RUN(test_changed_at_is_the_time_each_transition_was_decided_with);
        TEST_RUN(test_state_strings);
        return 0;
}
