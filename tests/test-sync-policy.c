/* SPDX-License-Identifier: MIT */
/* The sync worker's pure decisions: the backoff sequence with its jitter bounds and saturation, the
 * Retry-After rule, the classification of every HTTP status class and transfer error (sent or not), and
 * the OFD's reason as it is kept: JSON detail, body text, sanitized and cut at a UTF-8 boundary. */

#include <limits.h>

#include "sync-policy.h"
#include "tests.h"

#define S USEC_PER_SEC

/* ---- backoff ---- */

static void test_backoff_without_jitter_doubles_from_initial_to_max(void) {
        static const usec_t expected[] = {
                5 * S, 10 * S, 20 * S, 40 * S, 80 * S, 160 * S, 300 * S, 300 * S
        };

        for (unsigned i = 0; i < ELEMENTSOF(expected); i++) {
                usec_t base = expected[i], half = base / 2;

                /* The random value that picks the top of [base - half, base] and the one for the bottom. */
                ASSERT_EQ_U(sync_policy_backoff(i + 1, 5 * S, 300 * S, half), base);
                ASSERT_EQ_U(sync_policy_backoff(i + 1, 5 * S, 300 * S, 0), base - half);
        }
}

static void test_backoff_stays_within_equal_jitter_bounds(void) {
        uint64_t x = 0x123456789abcdefULL;

        for (unsigned attempt = 1; attempt <= 12; attempt++) {
                usec_t base = MIN((usec_t) 5 * S << (attempt - 1), 300 * S);
                usec_t lo = UINT64_MAX, hi = 0;

                for (unsigned i = 0; i < 2000; i++) {
                        usec_t b;

                        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                        b = sync_policy_backoff(attempt, 5 * S, 300 * S, x);
                        ASSERT_TRUE(b >= base - base / 2);
                        ASSERT_TRUE(b <= base);
                        lo = MIN(lo, b);
                        hi = MAX(hi, b);
                }
                /* The jitter really spreads over the range. */
                ASSERT_TRUE(hi - lo > base / 4);
        }
}

static void test_backoff_attempt_zero_counts_as_one(void) {
        ASSERT_EQ_U(sync_policy_backoff(0, 5 * S, 300 * S, 0), sync_policy_backoff(1, 5 * S, 300 * S, 0));
}

static void test_backoff_saturates_without_overflow(void) {
        ASSERT_EQ_U(sync_policy_backoff(1000, 5 * S, 300 * S, 150 * S), 300 * S);
        ASSERT_EQ_U(sync_policy_backoff(UINT_MAX, 5 * S, 300 * S, 150 * S), 300 * S);
        /* With no cap at all, doubling stops at the largest value instead of wrapping to small ones. */
        ASSERT_TRUE(sync_policy_backoff(200, 1, USEC_INFINITY, 0) >= USEC_INFINITY / 2);
        ASSERT_EQ_U(sync_policy_backoff(200, 1, USEC_INFINITY, USEC_INFINITY / 2), USEC_INFINITY);
}

static void test_backoff_initial_above_max_gives_max(void) {
        ASSERT_EQ_U(sync_policy_backoff(1, 10 * S, 4 * S, 2 * S), 4 * S);
        ASSERT_EQ_U(sync_policy_backoff(1, 0, 4 * S, 12345), 0);
}

static void test_default_random_source_varies(void) {
        uint64_t a = sync_policy_random(NULL), b = sync_policy_random(NULL), c = sync_policy_random(NULL);

        /* Three equal 64-bit values in a row would mean a constant. */
        ASSERT_FALSE(a == b && b == c);
}

/* ---- classification ---- */

static SyncVerdict classify(int error, long status, bool was_sent, const char *body) {
        SyncVerdict v;

        sync_policy_classify(error, status, was_sent, body, body ? strlen(body) : 0, &v);
        return v;
}

static void assert_status(long status, SyncOutcome outcome, SyncFailure failure, bool retry_after) {
        SyncVerdict v = classify(0, status, true, NULL);

        if (v.outcome != outcome || v.failure != failure)
                fprintf(stderr, "HTTP %ld -> %s/%s\n", status, sync_outcome_to_string(v.outcome),
                        sync_failure_to_string(v.failure));
        ASSERT_EQ(v.outcome, outcome);
        ASSERT_EQ(v.failure, failure);
        ASSERT_EQ(v.retry_after_applies, retry_after);
        ASSERT_EQ(v.breaker_success, IN_SET(outcome, SYNC_OUTCOME_SYNCED, SYNC_OUTCOME_PERMANENT));
        if (outcome == SYNC_OUTCOME_SYNCED)
                ASSERT_STREQ(v.reason, "");
        else {
                char expected[32];

                snprintf(expected, sizeof expected, "HTTP %ld", status);
                ASSERT_STREQ(v.reason, expected);
        }
}

static void test_classify_2xx_is_synced(void) {
        for (long s = 200; s <= 299; s++)
                assert_status(s, SYNC_OUTCOME_SYNCED, SYNC_FAILURE_NONE, false);
        ASSERT_FALSE(classify(0, 200, true, NULL).duplicate);
}

static void test_classify_409_is_synced_as_duplicate(void) {
        SyncVerdict v = classify(0, 409, true, "{\"detail\": \"already have it\", \"ofd_id\": \"x\"}");

        ASSERT_EQ(v.outcome, SYNC_OUTCOME_SYNCED);
        ASSERT_TRUE(v.duplicate);
        ASSERT_TRUE(v.breaker_success);
}

static void test_classify_429_and_503_retry_with_retry_after(void) {
        assert_status(429, SYNC_OUTCOME_RETRY, SYNC_FAILURE_RATE_LIMITED, true);
        assert_status(503, SYNC_OUTCOME_RETRY, SYNC_FAILURE_UNAVAILABLE, true);
}

static void test_classify_other_5xx_retry(void) {
        for (long s = 500; s <= 599; s++)
                if (s != 503)
                        assert_status(s, SYNC_OUTCOME_RETRY, SYNC_FAILURE_HTTP_5XX, false);
}

static void test_classify_408_and_425_retry(void) {
        assert_status(408, SYNC_OUTCOME_RETRY, SYNC_FAILURE_HTTP_OTHER, false);
        assert_status(425, SYNC_OUTCOME_RETRY, SYNC_FAILURE_HTTP_OTHER, false);
}

static void test_classify_upstream_configuration_errors_retry(void) {
        assert_status(401, SYNC_OUTCOME_RETRY, SYNC_FAILURE_UPSTREAM_CONFIG, false);
        assert_status(403, SYNC_OUTCOME_RETRY, SYNC_FAILURE_UPSTREAM_CONFIG, false);
        assert_status(404, SYNC_OUTCOME_RETRY, SYNC_FAILURE_UPSTREAM_CONFIG, false);
        assert_status(405, SYNC_OUTCOME_RETRY, SYNC_FAILURE_UPSTREAM_CONFIG, false);
}

static void test_classify_other_4xx_are_permanent(void) {
        for (long s = 400; s <= 499; s++)
                if (!IN_SET(s, 401L, 403L, 404L, 405L, 408L, 409L, 425L, 429L))
                        assert_status(s, SYNC_OUTCOME_PERMANENT, SYNC_FAILURE_REJECTED, false);
}

static void test_classify_odd_statuses_retry(void) {
        assert_status(0, SYNC_OUTCOME_RETRY, SYNC_FAILURE_HTTP_OTHER, false);
        assert_status(100, SYNC_OUTCOME_RETRY, SYNC_FAILURE_HTTP_OTHER, false);
        assert_status(301, SYNC_OUTCOME_RETRY, SYNC_FAILURE_HTTP_OTHER, false);
        assert_status(399, SYNC_OUTCOME_RETRY, SYNC_FAILURE_HTTP_OTHER, false);
        assert_status(600, SYNC_OUTCOME_RETRY, SYNC_FAILURE_HTTP_OTHER, false);
}

static void test_classify_errors_before_sending_retry(void) {
        static const struct {
                int error;
                SyncFailure failure;
                const char *reason;
        } table[] = {
                { -ETIMEDOUT, SYNC_FAILURE_TIMEOUT, "timeout" },
                { -ECONNREFUSED, SYNC_FAILURE_CONNECTION, "connection refused" },
                { -ECONNRESET, SYNC_FAILURE_CONNECTION, "connection closed without an answer" },
                { -EPIPE, SYNC_FAILURE_CONNECTION, "connection lost while sending" },
                { -EHOSTUNREACH, SYNC_FAILURE_DNS, "name lookup failed" },
                { -EPROTO, SYNC_FAILURE_TLS, "TLS failure" },
                { -EFBIG, SYNC_FAILURE_OTHER, "answer too large" },
                { -EINVAL, SYNC_FAILURE_UPSTREAM_CONFIG, "unsupported URL" },
                { -ENOMEM, SYNC_FAILURE_OTHER, "out of memory" },
                { -EIO, SYNC_FAILURE_OTHER, "transfer failed" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                /* Whatever status line may have arrived does not matter once the transfer failed. */
                SyncVerdict v = classify(table[i].error, 200, false, "{}");

                ASSERT_EQ(v.outcome, SYNC_OUTCOME_RETRY);
                ASSERT_EQ(v.failure, table[i].failure);
                ASSERT_FALSE(v.breaker_success);
                ASSERT_FALSE(v.retry_after_applies);
                ASSERT_STREQ(v.reason, table[i].reason);
        }
}

static void test_classify_errors_after_sending_are_unknown(void) {
        static const int errors[] = { -ETIMEDOUT, -ECONNRESET, -EPIPE, -EFBIG, -EIO };

        for (size_t i = 0; i < ELEMENTSOF(errors); i++) {
                SyncVerdict v = classify(errors[i], 0, true, NULL);

                ASSERT_EQ(v.outcome, SYNC_OUTCOME_UNKNOWN);
                ASSERT_EQ(v.failure, SYNC_FAILURE_UNKNOWN_OUTCOME);
                ASSERT_FALSE(v.breaker_success);
                ASSERT_TRUE(strstr(v.reason, "outcome unknown") != NULL);
        }
        ASSERT_STREQ(classify(-ETIMEDOUT, 0, true, NULL).reason,
                     "timeout after the request was sent, outcome unknown");
}

static void test_classify_an_answer_after_sending_is_no_unknown_outcome(void) {
        /* A 500 is the OFD saying it failed: a plain retry, whatever was sent. */
        ASSERT_EQ(classify(0, 500, true, NULL).outcome, SYNC_OUTCOME_RETRY);
        ASSERT_EQ(classify(0, 500, false, NULL).outcome, SYNC_OUTCOME_RETRY);
}

/* ---- reasons ---- */

static void test_reason_takes_the_json_detail(void) {
        ASSERT_STREQ(classify(0, 422, true, "{\"detail\": \"injected status 422\"}").reason,
                     "HTTP 422: injected status 422");
        ASSERT_STREQ(classify(0, 500, true, "{\"detail\": \"db down\", \"x\": 1}").reason,
                     "HTTP 500: db down");
}

static void test_reason_of_a_structured_detail_is_its_json(void) {
        ASSERT_STREQ(
                classify(0, 422, true, "{\"detail\": [{\"loc\": [\"body\", \"inn\"], \"msg\": \"bad\"}]}")
                        .reason,
                "HTTP 422: [{\"loc\":[\"body\",\"inn\"],\"msg\":\"bad\"}]");
}

static void test_reason_falls_back_to_the_body_text(void) {
        ASSERT_STREQ(classify(0, 400, true, "  Bad Request: INN missing\r\n").reason,
                     "HTTP 400: Bad Request: INN missing");
        /* JSON without a detail, or with a null one: the body as it came. */
        ASSERT_STREQ(classify(0, 400, true, "{\"error\":\"x\"}").reason, "HTTP 400: {\"error\":\"x\"}");
        ASSERT_STREQ(classify(0, 400, true, "{\"detail\":null}").reason, "HTTP 400: {\"detail\":null}");
        ASSERT_STREQ(classify(0, 400, true, "").reason, "HTTP 400");
        ASSERT_STREQ(classify(0, 400, true, " \n\t").reason, "HTTP 400");
}

static void test_detail_sanitizes_control_characters_and_broken_utf8(void) {
        char buf[SYNC_REASON_MAX];
        const char body[] = "line one\nline\ttwo\x01 \xff\xfe end \xc3\xa9";

        sync_policy_extract_detail(body, sizeof body - 1, buf, sizeof buf);
        ASSERT_STREQ(buf, "line one line two  ?? end \xc3\xa9");

        /* A NUL inside the body does not end it. */
        sync_policy_extract_detail("a\0b", 3, buf, sizeof buf);
        ASSERT_STREQ(buf, "a b");
}

static void test_detail_is_truncated_at_a_character_boundary(void) {
        char body[1024], buf[SYNC_REASON_MAX];
        size_t n = 0, len;

        /* "x" then two-byte characters: byte SYNC_DETAIL_MAX falls in the middle of one. */
        body[n++] = 'x';
        while (n + 2 < 600) {
                body[n++] = (char) 0xc3;
                body[n++] = (char) 0xa9;
        }
        sync_policy_extract_detail(body, n, buf, sizeof buf);
        len = strlen(buf);
        ASSERT_EQ(len, SYNC_DETAIL_MAX - 1 + 3);
        ASSERT_STREQ(buf + len - 3, "...");
        ASSERT_EQ((unsigned char) buf[len - 4], 0xa9);
        ASSERT_EQ((unsigned char) buf[len - 5], 0xc3);

        /* The reason built from it fits. */
        body[n] = 0;
        ASSERT_TRUE(strlen(classify(0, 422, true, body).reason) == strlen("HTTP 422: ") + len);
}

static void test_detail_respects_a_small_buffer(void) {
        char buf[8];

        sync_policy_extract_detail("abcdefghijkl", 12, buf, sizeof buf);
        ASSERT_STREQ(buf, "abcd...");
        sync_policy_extract_detail("abcd", 4, buf, sizeof buf);
        ASSERT_STREQ(buf, "abcd");
}

/* ---- the delay ---- */

static void test_retry_delay_honours_retry_after_for_429_and_503(void) {
        SyncVerdict v429 = classify(0, 429, true, NULL), v503 = classify(0, 503, true, NULL);
        SyncVerdict v500 = classify(0, 500, true, NULL), vtimeout = classify(-ETIMEDOUT, 0, true, NULL);

        ASSERT_EQ_U(sync_policy_retry_delay(&v429, 7, 1 * S, 5 * S, 300 * S, 0), 1 * S);
        ASSERT_EQ_U(sync_policy_retry_delay(&v503, 1, 120 * S, 5 * S, 300 * S, 0), 120 * S);
        /* Longer than the backoff cap too: the OFD said so. */
        ASSERT_EQ_U(sync_policy_retry_delay(&v503, 1, 600 * S, 5 * S, 300 * S, 0), 600 * S);
        /* But not absurdly long. */
        ASSERT_EQ_U(sync_policy_retry_delay(&v429, 1, 30 * USEC_PER_DAY, 5 * S, 300 * S, 0),
                    SYNC_RETRY_AFTER_MAX);
        /* Without a Retry-After: the backoff. */
        ASSERT_EQ_U(sync_policy_retry_delay(&v429, 3, 0, 5 * S, 300 * S, 10 * S), 20 * S);
        /* Other failures ignore a Retry-After. */
        ASSERT_EQ_U(sync_policy_retry_delay(&v500, 1, 100 * S, 5 * S, 300 * S, 0), 5 * S - 5 * S / 2);
        ASSERT_EQ_U(sync_policy_retry_delay(&vtimeout, 2, 100 * S, 5 * S, 300 * S, 5 * S), 10 * S);
}

static void test_strings(void) {
        ASSERT_STREQ(sync_outcome_to_string(SYNC_OUTCOME_SYNCED), "synced");
        ASSERT_STREQ(sync_outcome_to_string(SYNC_OUTCOME_RETRY), "retry");
        ASSERT_STREQ(sync_outcome_to_string(SYNC_OUTCOME_UNKNOWN), "unknown");
        ASSERT_STREQ(sync_outcome_to_string(SYNC_OUTCOME_PERMANENT), "permanent");
        ASSERT_NULL(sync_outcome_to_string(_SYNC_OUTCOME_MAX));
        for (SyncFailure f = 0; f < _SYNC_FAILURE_MAX; f++) {
                const char *s = sync_failure_to_string(f);

                ASSERT_NOT_NULL(s);
                ASSERT_EQ(sync_failure_from_string(s), f);
                /* Usable as a Prometheus label value and a JSON key as they are. */
                for (const char *p = s; *p; p++)
                        ASSERT_TRUE((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_');
        }
        ASSERT_NULL(sync_failure_to_string(_SYNC_FAILURE_MAX));
        ASSERT_EQ(sync_failure_from_string("nope"), _SYNC_FAILURE_INVALID);
        ASSERT_EQ(sync_failure_from_string(NULL), _SYNC_FAILURE_INVALID);
}

int main(void) {
        TEST_RUN(test_backoff_without_jitter_doubles_from_initial_to_max);
        TEST_RUN(test_backoff_stays_within_equal_jitter_bounds);
        TEST_RUN(test_backoff_attempt_zero_counts_as_one);
        TEST_RUN(test_backoff_saturates_without_overflow);
        TEST_RUN(test_backoff_initial_above_max_gives_max);
        TEST_RUN(test_default_random_source_varies);
        TEST_RUN(test_classify_2xx_is_synced);
        TEST_RUN(test_classify_409_is_synced_as_duplicate);
        TEST_RUN(test_classify_429_and_503_retry_with_retry_after);
        TEST_RUN(test_classify_other_5xx_retry);
        TEST_RUN(test_classify_408_and_425_retry);
        TEST_RUN(test_classify_upstream_configuration_errors_retry);
        TEST_RUN(test_classify_other_4xx_are_permanent);
        TEST_RUN(test_classify_odd_statuses_retry);
        TEST_RUN(test_classify_errors_before_sending_retry);
        TEST_RUN(test_classify_errors_after_sending_are_unknown);
        TEST_RUN(test_classify_an_answer_after_sending_is_no_unknown_outcome);
        TEST_RUN(test_reason_takes_the_json_detail);
        TEST_RUN(test_reason_of_a_structured_detail_is_its_json);
        TEST_RUN(test_reason_falls_back_to_the_body_text);
        TEST_RUN(test_detail_sanitizes_control_characters_and_broken_utf8);
        TEST_RUN(test_detail_is_truncated_at_a_character_boundary);
        TEST_RUN(test_detail_respects_a_small_buffer);
        TEST_RUN(test_retry_delay_honours_retry_after_for_429_and_503);
        TEST_RUN(test_strings);
        return 0;
}
