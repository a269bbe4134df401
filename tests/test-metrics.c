/* SPDX-License-Identifier: MIT */
/* The exposition of GET /metrics from snapshots: the numbers the chain's alert rules compare (the breaker as
 * 0/1/2, the buffer in percent, the heartbeat, the 30-day OFD limit), exact numbers without floating point,
 * and a well-formed text format (one HELP and TYPE per family, its samples right after, no series twice).
 * tests/test-monitoring.py checks the running daemon's exposition with promtool. */

#include "metrics.h"
#include "tests.h"

#define NOW (UINT64_C(1795922246) * USEC_PER_SEC)

static MetricsSnapshot snapshot(void) {
        return (MetricsSnapshot){
                .now = NOW,
                .version = "1.2.3",
                .counters = { .capacity = 200 },
                .health = HEALTH_HEALTHY,
                .have_printer = true,
                .print_stuck_after = 60 * USEC_PER_SEC,
                .have_sync = true,
        };
}

static char *render(const MetricsSnapshot *s) {
        char *text = NULL;

        ASSERT_OK(metrics_render(s, &text));
        ASSERT_NOT_NULL(text);
        return text;
}

/* The value of the sample whose name with labels is `series`, as written; NULL when absent. */
static const char *value_of(const char *text, const char *series, char *buf, size_t l) {
        size_t n = strlen(series);

        for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
                if (strncmp(p, series, n) == 0 && p[n] == ' ') {
                        const char *v = p + n + 1, *e = strchrnul(v, '\n');

                        snprintf(buf, l, "%.*s", (int) (e - v), v);
                        return buf;
                }
        return NULL;
}

#define ASSERT_VALUE(text, series, expected)                                                                \
        do {                                                                                                \
                char _v_[64];                                                                               \
                ASSERT_STREQ(value_of((text), (series), _v_, sizeof _v_), (expected));                      \
        } while (0)

static bool family_known(char families[][96], size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (streq(families[i], name))
                        return true;
        return false;
}

/* Every family announced once by HELP then TYPE; every sample belongs to the family announced last (a
 * histogram's _bucket, _sum and _count included) and appears once. */
static void assert_well_formed(const char *text) {
        static char families[128][96], series[1024][160];
        size_t n_families = 0, n_series = 0;
        char family[96] = "", type[16] = "";
        _cleanup_free_ char *copy = strdup(text);
        char *save = NULL;

        ASSERT_NOT_NULL(copy);
        ASSERT_TRUE(text[0] && text[strlen(text) - 1] == '\n');
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char name[96], help_name[96];

                if (strncmp(line, "# HELP ", 7) == 0) {
                        ASSERT_EQ(sscanf(line + 7, "%95s", help_name), 1);
                        ASSERT_TRUE(strlen(line + 7) > strlen(help_name) + 1); /* a text follows */
                        ASSERT_FALSE(family_known(families, n_families, help_name));
                        snprintf(family, sizeof family, "%s", help_name);
                        type[0] = 0;
                        continue;
                }
                if (strncmp(line, "# TYPE ", 7) == 0) {
                        ASSERT_EQ(sscanf(line + 7, "%95s %15s", name, type), 2);
                        ASSERT_STREQ(name, family);
                        ASSERT_TRUE(streq(type, "gauge") || streq(type, "counter") ||
                                    streq(type, "histogram"));
                        ASSERT_TRUE(n_families < ELEMENTSOF(families));
                        snprintf(families[n_families++], sizeof families[0], "%s", family);
                        /* Prometheus conventions: counters end in _total, nothing else does. */
                        ASSERT_EQ(streq(type, "counter"),
                                  strlen(family) > 6 && streq(family + strlen(family) - 6, "_total"));
                        continue;
                }
                ASSERT_TRUE(line[0] != '#');
                ASSERT_TRUE(type[0] != 0);
                {
                        size_t l = strcspn(line, "{ ");
                        const char *suffix = line + strlen(family);

                        ASSERT_TRUE(strncmp(line, family, strlen(family)) == 0);
                        if (streq(type, "histogram"))
                                ASSERT_TRUE(strncmp(suffix, "_bucket{", 8) == 0 ||
                                            strncmp(suffix, "_sum ", 5) == 0 ||
                                            strncmp(suffix, "_count ", 7) == 0);
                        else
                                ASSERT_EQ_U(l, strlen(family));
                }
                {
                        const char *sp = strrchr(line, ' ');

                        ASSERT_NOT_NULL(sp);
                        for (size_t i = 0; i < n_series; i++)
                                ASSERT_FALSE(strncmp(series[i], line, (size_t) (sp - line)) == 0 &&
                                             series[i][sp - line] == 0);
                        ASSERT_TRUE(n_series < ELEMENTSOF(series));
                        snprintf(series[n_series++], sizeof series[0], "%.*s", (int) (sp - line), line);
                }
        }
        ASSERT_TRUE(n_families > 20);
}

static void test_numbers_are_written_exactly_without_a_negative_zero(void) {
        char b[METRICS_NUMBER_MAX];

        ASSERT_STREQ(metrics_format_seconds(b, sizeof b, 0), "0");
        ASSERT_STREQ(metrics_format_seconds(b, sizeof b, 2500), "0.0025");
        ASSERT_STREQ(metrics_format_seconds(b, sizeof b, 30 * USEC_PER_SEC), "30");
        ASSERT_STREQ(metrics_format_seconds(b, sizeof b, USEC_PER_SEC + 1), "1.000001");
        ASSERT_STREQ(metrics_format_seconds(b, sizeof b, UINT64_MAX), "18446744073709.551615");
        ASSERT_STREQ(metrics_format_days(b, sizeof b, NOW + 3 * USEC_PER_DAY, NOW), "3");
        ASSERT_STREQ(metrics_format_days(b, sizeof b, NOW + USEC_PER_DAY / 4, NOW), "0.25");
        ASSERT_STREQ(metrics_format_days(b, sizeof b, NOW - USEC_PER_DAY / 2, NOW), "-0.5");
        ASSERT_STREQ(metrics_format_days(b, sizeof b, NOW, NOW), "0");
        /* Less than the last digit before expiry is not "-0". */
        ASSERT_STREQ(metrics_format_days(b, sizeof b, NOW - 1, NOW), "0");
}

static void test_healthy_snapshot_is_well_formed_with_build_info_and_zeroes(void) {
        MetricsSnapshot s = snapshot();
        _cleanup_free_ char *text = render(&s);

        assert_well_formed(text);
        ASSERT_VALUE(text, "kkt_adapter_build_info{version=\"1.2.3\"}", "1");
        ASSERT_VALUE(text, "kkt_buffer_percent_full", "0");
        ASSERT_VALUE(text, "kkt_circuit_breaker_state", "0");
        ASSERT_VALUE(text, "kkt_circuit_breaker_status{state=\"closed\"}", "1");
        ASSERT_VALUE(text, "kkt_heartbeat_state", "0");
        ASSERT_VALUE(text, "kkt_heartbeat_online", "0");
        ASSERT_VALUE(text, "kkt_health_state", "0");
        ASSERT_VALUE(text, "kkt_buffer_oldest_unsynced_age_seconds", "0");
        ASSERT_VALUE(text, "kkt_ofd_limit_remaining_seconds", "2592000");
        ASSERT_VALUE(text, "kkt_print_queue_stuck_after_seconds", "60");
        ASSERT_VALUE(text, "kkt_intake_latency_seconds_bucket{le=\"0.0025\"}", "0");
        ASSERT_VALUE(text, "kkt_intake_latency_seconds_bucket{le=\"+Inf\"}", "0");
        /* The register has not told its status yet: nothing is made up. */
        ASSERT_NULL(strstr(text, "kkt_fiscal_memory_days_left"));
        ASSERT_NULL(strstr(text, "kkt_shift_open"));
}

static void test_dead_letters_resolved_stay_in_the_size_not_in_unresolved(void) {
        MetricsSnapshot s = snapshot();
        _cleanup_free_ char *text = NULL, *uncounted = NULL;

        s.counters.dlq = 5;
        s.dlq_unresolved = 2;
        text = render(&s);
        ASSERT_VALUE(text, "kkt_dlq_size", "5");
        ASSERT_VALUE(text, "kkt_dlq_unresolved", "2");

        /* The reader could not count them: left out rather than a made-up 0. */
        s.dlq_unresolved = UINT64_MAX;
        uncounted = render(&s);
        assert_well_formed(uncounted);
        ASSERT_VALUE(uncounted, "kkt_dlq_size", "5");
        ASSERT_NULL(strstr(uncounted, "kkt_dlq_unresolved"));
}

static void test_breaker_is_one_number_zero_closed_one_half_open_two_open(void) {
        static const struct {
                BreakerState state;
                const char *value, *set;
        } cases[] = {
                { BREAKER_CLOSED, "0", "kkt_circuit_breaker_status{state=\"closed\"}" },
                { BREAKER_HALF_OPEN, "1", "kkt_circuit_breaker_status{state=\"half_open\"}" },
                { BREAKER_OPEN, "2", "kkt_circuit_breaker_status{state=\"open\"}" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                MetricsSnapshot s = snapshot();
                _cleanup_free_ char *text = NULL;

                s.breaker = cases[i].state;
                s.breaker_opened = 3;
                text = render(&s);
                ASSERT_VALUE(text, "kkt_circuit_breaker_state", cases[i].value);
                ASSERT_VALUE(text, cases[i].set, "1");
                ASSERT_VALUE(text, "kkt_circuit_breaker_opened_total", "3");
        }
}

static void test_buffer_percent_full_is_0_to_100_and_100_when_full(void) {
        static const struct {
                uint64_t pending, capacity;
                const char *value;
        } cases[] = {
                { 0, 200, "0" },     { 1, 200, "0.5" },   { 160, 200, "80" }, { 1, 3, "33.333" },
                { 200, 200, "100" }, { 250, 200, "100" }, /* capacity lowered by a reload */
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                MetricsSnapshot s = snapshot();
                _cleanup_free_ char *text = NULL;

                s.counters.pending = cases[i].pending;
                s.counters.capacity = cases[i].capacity;
                text = render(&s);
                ASSERT_VALUE(text, "kkt_buffer_percent_full", cases[i].value);
        }
}

static void test_heartbeat_online_and_state(void) {
        static const struct {
                HeartbeatState state;
                const char *online, *value;
        } cases[] = {
                { HEARTBEAT_UNKNOWN, "0", "0" },
                { HEARTBEAT_ONLINE, "1", "1" },
                { HEARTBEAT_OFFLINE, "0", "2" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                MetricsSnapshot s = snapshot();
                _cleanup_free_ char *text = NULL;

                s.heartbeat = cases[i].state;
                s.heartbeat_failures = 4;
                text = render(&s);
                ASSERT_VALUE(text, "kkt_heartbeat_online", cases[i].online);
                ASSERT_VALUE(text, "kkt_heartbeat_state", cases[i].value);
                ASSERT_VALUE(text, "kkt_heartbeat_consecutive_failures", "4");
        }
}

static void test_register_status_gives_shift_fn_and_ofd_ages(void) {
        DeviceStatus ds = {
                .shift_open = true,
                .shift_open_usec = NOW - 23 * USEC_PER_HOUR - 30 * USEC_PER_MINUTE,
                .fn_valid_until = NOW + 2 * USEC_PER_DAY + USEC_PER_DAY / 2,
                .ofd = { .unsent = 3, .first_unsent = 17, .first_unsent_usec = NOW - 26 * USEC_PER_DAY },
        };
        MetricsSnapshot s = snapshot();
        _cleanup_free_ char *text = NULL, *expired = NULL;

        s.device = &ds;
        /* The buffer's oldest is younger: the register's document counts for the limit. */
        s.counters.oldest_unsynced = NOW - USEC_PER_HOUR;
        text = render(&s);
        assert_well_formed(text);
        ASSERT_VALUE(text, "kkt_shift_open", "1");
        ASSERT_VALUE(text, "kkt_shift_open_seconds", "84600");
        ASSERT_VALUE(text, "kkt_fiscal_memory_days_left", "2.5");
        ASSERT_VALUE(text, "kkt_ofd_unsent_documents", "3");
        ASSERT_VALUE(text, "kkt_ofd_oldest_unsent_age_seconds", "2246400");
        ASSERT_VALUE(text, "kkt_buffer_oldest_unsynced_age_seconds", "3600");
        ASSERT_VALUE(text, "kkt_ofd_limit_remaining_seconds", "345600"); /* 4 days */

        ds.fn_valid_until = NOW - USEC_PER_DAY;
        ds.shift_open = false;
        ds.ofd = (DeviceOfdQueue){};
        s.counters.oldest_unsynced = NOW - 31 * USEC_PER_DAY;
        expired = render(&s);
        ASSERT_VALUE(expired, "kkt_fiscal_memory_days_left", "-1");
        ASSERT_VALUE(expired, "kkt_shift_open_seconds", "0");
        ASSERT_VALUE(expired, "kkt_ofd_oldest_unsent_age_seconds", "0");
        /* The buffer's receipt alone, a day past the limit. */
        ASSERT_VALUE(expired, "kkt_ofd_limit_remaining_seconds", "-86400");
}

static void test_histograms_are_cumulative_with_inf_equal_to_count(void) {
        MetricsSnapshot s = snapshot();
        _cleanup_free_ char *text = NULL;

        /* Three answers: 2 ms, 40 ms, 45 s. */
        for (size_t i = 0; i < INTAKE_LATENCY_BUCKETS; i++)
                s.intake.latency.le[i] = (intake_latency_bounds[i] >= 2 * USEC_PER_MSEC) +
                                         (intake_latency_bounds[i] >= 40 * USEC_PER_MSEC);
        s.intake.latency.count = 3;
        s.intake.latency.sum = 2 * USEC_PER_MSEC + 40 * USEC_PER_MSEC + 45 * USEC_PER_SEC;
        text = render(&s);
        ASSERT_VALUE(text, "kkt_intake_latency_seconds_bucket{le=\"0.001\"}", "0");
        ASSERT_VALUE(text, "kkt_intake_latency_seconds_bucket{le=\"0.0025\"}", "1");
        ASSERT_VALUE(text, "kkt_intake_latency_seconds_bucket{le=\"0.05\"}", "2");
        ASSERT_VALUE(text, "kkt_intake_latency_seconds_bucket{le=\"30\"}", "2");
        ASSERT_VALUE(text, "kkt_intake_latency_seconds_bucket{le=\"+Inf\"}", "3");
        ASSERT_VALUE(text, "kkt_intake_latency_seconds_sum", "45.042");
        ASSERT_VALUE(text, "kkt_intake_latency_seconds_count", "3");
        ASSERT_VALUE(text, "kkt_sync_request_duration_seconds_bucket{le=\"+Inf\"}", "0");
}

static void test_label_values_are_escaped_and_unknown_parts_left_out(void) {
        MetricsSnapshot s = snapshot();
        _cleanup_free_ char *text = NULL;

        s.version = "1.0\"x\\y\nz";
        s.have_printer = false;
        s.have_sync = false;
        s.health = _HEALTH_INVALID;
        text = render(&s);
        assert_well_formed(text);
        ASSERT_VALUE(text, "kkt_adapter_build_info{version=\"1.0\\\"x\\\\y\\nz\"}", "1");
        ASSERT_NULL(strstr(text, "kkt_print_queue_length"));
        ASSERT_NULL(strstr(text, "kkt_circuit_breaker_state"));
        ASSERT_NULL(strstr(text, "kkt_health_state"));
}

int main(void) {
        TEST_RUN(test_numbers_are_written_exactly_without_a_negative_zero);
        TEST_RUN(test_healthy_snapshot_is_well_formed_with_build_info_and_zeroes);
        TEST_RUN(test_dead_letters_resolved_stay_in_the_size_not_in_unresolved);
        TEST_RUN(test_breaker_is_one_number_zero_closed_one_half_open_two_open);
        TEST_RUN(test_buffer_percent_full_is_0_to_100_and_100_when_full);
        TEST_RUN(test_heartbeat_online_and_state);
        TEST_RUN(test_register_status_gives_shift_fn_and_ofd_ages);
        TEST_RUN(test_histograms_are_cumulative_with_inf_equal_to_count);
        TEST_RUN(test_label_values_are_escaped_and_unknown_parts_left_out);
        return 0;
}
