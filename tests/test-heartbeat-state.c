/* SPDX-License-Identifier: MIT */
/* Pins down the heartbeat hysteresis: thresholds, counter resets, the value record() returns, and the
 * state names that D-Bus, HTTP and kktctl show. */

#include <limits.h>

#include "heartbeat-state.h"
#include "tests.h"

static HeartbeatMachine machine_default(void) {
        HeartbeatMachine m;

        heartbeat_machine_init(&m, HEARTBEAT_ONLINE_THRESHOLD_DEFAULT, HEARTBEAT_OFFLINE_THRESHOLD_DEFAULT);
        return m;
}

static void feed(HeartbeatMachine *m, bool success, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                (void) heartbeat_machine_record(m, success);
}

static HeartbeatMachine machine_online(void) {
        HeartbeatMachine m = machine_default();

        feed(&m, true, 2);
        ASSERT_EQ(m.state, HEARTBEAT_ONLINE);
        return m;
}

static HeartbeatMachine machine_offline(void) {
        HeartbeatMachine m = machine_default();

        feed(&m, false, 3);
        ASSERT_EQ(m.state, HEARTBEAT_OFFLINE);
        return m;
}

static void test_initial_state_is_unknown_with_default_thresholds(void) {
        HeartbeatMachine m = machine_default(), s = HEARTBEAT_MACHINE_INIT;

        ASSERT_EQ(m.state, HEARTBEAT_UNKNOWN);
        ASSERT_EQ(m.consecutive_successes, 0);
        ASSERT_EQ(m.consecutive_failures, 0);
        ASSERT_EQ(m.online_threshold, 2);
        ASSERT_EQ(m.offline_threshold, 3);
        ASSERT_TRUE(memcmp(&m, &s, sizeof m) == 0);
}

static void test_one_success_stays_unknown(void) {
        HeartbeatMachine m = machine_default();

        ASSERT_FALSE(heartbeat_machine_record(&m, true));
        ASSERT_EQ(m.state, HEARTBEAT_UNKNOWN);
        ASSERT_EQ(m.consecutive_successes, 1);
}

static void test_two_successes_go_online(void) {
        HeartbeatMachine m = machine_default();

        ASSERT_FALSE(heartbeat_machine_record(&m, true));
        ASSERT_TRUE(heartbeat_machine_record(&m, true));
        ASSERT_EQ(m.state, HEARTBEAT_ONLINE);
}

static void test_one_failure_stays_unknown(void) {
        HeartbeatMachine m = machine_default();

        ASSERT_FALSE(heartbeat_machine_record(&m, false));
        ASSERT_EQ(m.state, HEARTBEAT_UNKNOWN);
        ASSERT_EQ(m.consecutive_failures, 1);
}

static void test_two_failures_stay_unknown(void) {
        HeartbeatMachine m = machine_default();

        ASSERT_FALSE(heartbeat_machine_record(&m, false));
        ASSERT_FALSE(heartbeat_machine_record(&m, false));
        ASSERT_EQ(m.state, HEARTBEAT_UNKNOWN);
        ASSERT_EQ(m.consecutive_failures, 2);
}

static void test_three_failures_go_offline(void) {
        HeartbeatMachine m = machine_default();

        feed(&m, false, 2);
        ASSERT_TRUE(heartbeat_machine_record(&m, false));
        ASSERT_EQ(m.state, HEARTBEAT_OFFLINE);
}

static void test_success_resets_failure_count(void) {
        HeartbeatMachine m = machine_default();

        feed(&m, false, 2);
        ASSERT_FALSE(heartbeat_machine_record(&m, true));
        ASSERT_EQ(m.consecutive_failures, 0);
        ASSERT_EQ(m.consecutive_successes, 1);
        /* Two more failures are not three in a row. */
        feed(&m, false, 2);
        ASSERT_EQ(m.state, HEARTBEAT_UNKNOWN);
}

static void test_failure_resets_success_count(void) {
        HeartbeatMachine m = machine_default();

        feed(&m, true, 1);
        ASSERT_FALSE(heartbeat_machine_record(&m, false));
        ASSERT_EQ(m.consecutive_successes, 0);
        ASSERT_EQ(m.consecutive_failures, 1);
        feed(&m, true, 1);
        ASSERT_EQ(m.state, HEARTBEAT_UNKNOWN);
}

static void test_alternating_results_never_leave_unknown(void) {
        HeartbeatMachine m = machine_default();

        for (unsigned i = 0; i < 20; i++)
                ASSERT_FALSE(heartbeat_machine_record(&m, i % 2 == 0));
        ASSERT_EQ(m.state, HEARTBEAT_UNKNOWN);
}

static void test_online_survives_one_failure(void) {
        HeartbeatMachine m = machine_online();

        ASSERT_FALSE(heartbeat_machine_record(&m, false));
        ASSERT_EQ(m.state, HEARTBEAT_ONLINE);
}

static void test_online_survives_two_failures(void) {
        HeartbeatMachine m = machine_online();

        ASSERT_FALSE(heartbeat_machine_record(&m, false));
        ASSERT_FALSE(heartbeat_machine_record(&m, false));
        ASSERT_EQ(m.state, HEARTBEAT_ONLINE);
}

static void test_online_goes_offline_after_three_failures(void) {
        HeartbeatMachine m = machine_online();

        feed(&m, false, 2);
        ASSERT_TRUE(heartbeat_machine_record(&m, false));
        ASSERT_EQ(m.state, HEARTBEAT_OFFLINE);
}

static void test_offline_survives_one_success(void) {
        HeartbeatMachine m = machine_offline();

        ASSERT_FALSE(heartbeat_machine_record(&m, true));
        ASSERT_EQ(m.state, HEARTBEAT_OFFLINE);
}

static void test_offline_goes_online_after_two_successes(void) {
        HeartbeatMachine m = machine_offline();

        ASSERT_FALSE(heartbeat_machine_record(&m, true));
        ASSERT_TRUE(heartbeat_machine_record(&m, true));
        ASSERT_EQ(m.state, HEARTBEAT_ONLINE);
}

static void test_online_offline_online_cycle(void) {
        HeartbeatMachine m = machine_online();

        feed(&m, false, 3);
        ASSERT_EQ(m.state, HEARTBEAT_OFFLINE);
        feed(&m, true, 2);
        ASSERT_EQ(m.state, HEARTBEAT_ONLINE);
        feed(&m, false, 3);
        ASSERT_EQ(m.state, HEARTBEAT_OFFLINE);
}

static void test_thresholds_of_one_flip_on_every_change(void) {
        HeartbeatMachine m;

        heartbeat_machine_init(&m, 1, 1);
        ASSERT_TRUE(heartbeat_machine_record(&m, true));
        ASSERT_EQ(m.state, HEARTBEAT_ONLINE);
        ASSERT_TRUE(heartbeat_machine_record(&m, false));
        ASSERT_EQ(m.state, HEARTBEAT_OFFLINE);
        ASSERT_FALSE(heartbeat_machine_record(&m, false));
        ASSERT_TRUE(heartbeat_machine_record(&m, true));
        ASSERT_EQ(m.state, HEARTBEAT_ONLINE);
}

static void test_thresholds_of_five_need_five_in_a_row(void) {
        HeartbeatMachine m;

        heartbeat_machine_init(&m, 5, 5);
        feed(&m, true, 4);
        ASSERT_EQ(m.state, HEARTBEAT_UNKNOWN);
        ASSERT_TRUE(heartbeat_machine_record(&m, true));
        ASSERT_EQ(m.state, HEARTBEAT_ONLINE);
        feed(&m, false, 4);
        ASSERT_EQ(m.state, HEARTBEAT_ONLINE);
        ASSERT_TRUE(heartbeat_machine_record(&m, false));
        ASSERT_EQ(m.state, HEARTBEAT_OFFLINE);
}

static void test_asymmetric_thresholds_are_used_for_their_direction(void) {
        HeartbeatMachine m;

        heartbeat_machine_init(&m, 1, 4);
        ASSERT_TRUE(heartbeat_machine_record(&m, true));
        feed(&m, false, 3);
        ASSERT_EQ(m.state, HEARTBEAT_ONLINE);
        ASSERT_TRUE(heartbeat_machine_record(&m, false));
        ASSERT_EQ(m.state, HEARTBEAT_OFFLINE);
}

static void test_record_returns_true_exactly_on_changes(void) {
        static const bool results[] = { true, true, true, false, false, false, false, true, true, false };
        static const bool changed[] = { false, true, false, false, false, true, false, false, true, false };
        HeartbeatMachine m = machine_default();
        unsigned n_changes = 0;

        for (size_t i = 0; i < ELEMENTSOF(results); i++) {
                HeartbeatState before = m.state;
                bool c = heartbeat_machine_record(&m, results[i]);

                ASSERT_EQ(c, changed[i]);
                ASSERT_EQ(c, m.state != before);
                n_changes += c;
        }
        ASSERT_EQ(n_changes, 3);
}

static void test_more_successes_while_online_do_not_report_change(void) {
        HeartbeatMachine m = machine_online();

        for (unsigned i = 0; i < 10; i++)
                ASSERT_FALSE(heartbeat_machine_record(&m, true));
        ASSERT_EQ(m.state, HEARTBEAT_ONLINE);
        ASSERT_EQ(m.consecutive_successes, 12);
}

static void test_more_failures_while_offline_do_not_report_change(void) {
        HeartbeatMachine m = machine_offline();

        for (unsigned i = 0; i < 10; i++)
                ASSERT_FALSE(heartbeat_machine_record(&m, false));
        ASSERT_EQ(m.state, HEARTBEAT_OFFLINE);
        ASSERT_EQ(m.consecutive_failures, 13);
}

static void test_counter_saturates_instead_of_wrapping(void) {
        HeartbeatMachine m = machine_online();

        m.consecutive_successes = UINT_MAX;
        ASSERT_FALSE(heartbeat_machine_record(&m, true));
        ASSERT_EQ_U(m.consecutive_successes, UINT_MAX);
        ASSERT_EQ(m.state, HEARTBEAT_ONLINE);
}

static void test_state_strings_round_trip(void) {
        ASSERT_STREQ(heartbeat_state_to_string(HEARTBEAT_UNKNOWN), "unknown");
        ASSERT_STREQ(heartbeat_state_to_string(HEARTBEAT_ONLINE), "online");
        ASSERT_STREQ(heartbeat_state_to_string(HEARTBEAT_OFFLINE), "offline");
        for (HeartbeatState s = 0; s < _HEARTBEAT_STATE_MAX; s++)
                ASSERT_EQ(heartbeat_state_from_string(heartbeat_state_to_string(s)), s);
}

static void test_state_strings_reject_invalid(void) {
        ASSERT_NULL(heartbeat_state_to_string(_HEARTBEAT_STATE_MAX));
        ASSERT_NULL(heartbeat_state_to_string(_HEARTBEAT_STATE_INVALID));
        ASSERT_ERROR(heartbeat_state_from_string("ONLINE"), EINVAL);
        ASSERT_ERROR(heartbeat_state_from_string(""), EINVAL);
        ASSERT_ERROR(heartbeat_state_from_string("online "), EINVAL);
        ASSERT_ERROR(heartbeat_state_from_string(NULL), EINVAL);
}

int main(void) {
        TEST_RUN(test_initial_state_is_unknown_with_default_thresholds);
        TEST_RUN(test_one_success_stays_unknown);
        TEST_RUN(test_two_successes_go_online);
        TEST_RUN(test_one_failure_stays_unknown);
        TEST_RUN(test_two_failures_stay_unknown);
        TEST_RUN(test_three_failures_go_offline);
        TEST_RUN(test_success_resets_failure_count);
        TEST_RUN(test_failure_resets_success_count);
        TEST_RUN(test_alternating_results_never_leave_unknown);
        TEST_RUN(test_online_survives_one_failure);
        TEST_RUN(test_online_survives_two_failures);
        TEST_RUN(test_online_goes_offline_after_three_failures);
        TEST_RUN(test_offline_survives_one_success);
        TEST_RUN(test_offline_goes_online_after_two_successes);
        TEST_RUN(test_online_offline_online_cycle);
        TEST_RUN(test_thresholds_of_one_flip_on_every_change);
        TEST_RUN(test_thresholds_of_five_need_five_in_a_row);
        TEST_RUN(test_asymmetric_thresholds_are_used_for_their_direction);
        TEST_RUN(test_record_returns_true_exactly_on_changes);
        TEST_RUN(test_more_successes_while_online_do_not_report_change);
        TEST_RUN(test_more_failures_while_offline_do_not_report_change);
        TEST_RUN(test_counter_saturates_instead_of_wrapping);
        TEST_RUN(test_state_strings_round_trip);
        TEST_RUN(test_state_strings_reject_invalid);
        return EXIT_SUCCESS;
}
