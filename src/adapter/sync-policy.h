/* SPDX-License-Identifier: MIT */
#pragma once

/* The sync worker's decisions, as pure functions: how long a failed receipt waits (exponential backoff
 * with jitter, or the OFD's Retry-After) and what one answer (or failure) of the OFD means for the receipt
 * and for the circuit breaker. No I/O, no clock; randomness comes in as an argument. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "time-util.h"

#define SYNC_INITIAL_BACKOFF_DEFAULT (5 * USEC_PER_SEC)
#define SYNC_MAX_BACKOFF_DEFAULT (300 * USEC_PER_SEC)
/* The longest Retry-After we honour: a bigger one is a broken upstream, not a plan. */
#define SYNC_RETRY_AFTER_MAX USEC_PER_DAY

/* The OFD's reason as kept in last_error and the DLQ: at most this many bytes of its text. */
#define SYNC_DETAIL_MAX 256U
#define SYNC_REASON_MAX (SYNC_DETAIL_MAX + 64U)

/* A source of uniformly distributed 64-bit values, injectable for tests. */
typedef uint64_t (*SyncRandomFunc)(void *userdata);
/* The default source: getrandom() (not blocking; falls back to a clock-seeded generator). */
uint64_t sync_policy_random(void *userdata);

/* Backoff before retry number `attempt` (1 after the first failure): base = initial * 2^(attempt - 1)
 * capped at max, then "equal jitter": a value in [base - base / 2, base] chosen by `random`, so the
 * receipts that failed together spread out but none comes back sooner than half the base. attempt 0
 * counts as 1; initial > max gives max. */
usec_t sync_policy_backoff(unsigned attempt, usec_t initial, usec_t max, uint64_t random);

typedef enum SyncOutcome {
        SYNC_OUTCOME_SYNCED,    /* the OFD has it: 2xx, or 409 (it had it already) */
        SYNC_OUTCOME_RETRY,     /* it does not have it, try again later */
        SYNC_OUTCOME_UNKNOWN,   /* failed after the whole request was sent: it may have it. Retried with
                                 * the same Idempotency-Key, which makes the resend harmless */
        SYNC_OUTCOME_PERMANENT, /* it refused this receipt: dead-letter it at once */
        _SYNC_OUTCOME_MAX,
        _SYNC_OUTCOME_INVALID = -EINVAL,
} SyncOutcome;

/* What went wrong, for the metrics ("failures by kind") and the logs. */
typedef enum SyncFailure {
        SYNC_FAILURE_NONE,
        SYNC_FAILURE_HTTP_5XX,        /* 5xx other than 503 */
        SYNC_FAILURE_UNAVAILABLE,     /* 503 */
        SYNC_FAILURE_RATE_LIMITED,    /* 429 */
        SYNC_FAILURE_HTTP_OTHER,      /* 408, 425, 1xx, 3xx and statuses outside 100..599 */
        SYNC_FAILURE_UPSTREAM_CONFIG, /* 401, 403, 404, 405: our URL or token, not the receipt */
        SYNC_FAILURE_REJECTED,        /* other 4xx: the receipt itself was refused */
        SYNC_FAILURE_TIMEOUT,         /* timed out before the request was sent */
        SYNC_FAILURE_CONNECTION,      /* refused, reset, broken before the request was sent */
        SYNC_FAILURE_DNS,
        SYNC_FAILURE_TLS,
        SYNC_FAILURE_UNKNOWN_OUTCOME, /* any failure after the whole request was sent */
        SYNC_FAILURE_OTHER,
        _SYNC_FAILURE_MAX,
        _SYNC_FAILURE_INVALID = -EINVAL,
} SyncFailure;

typedef struct SyncVerdict {
        SyncOutcome outcome;
        SyncFailure failure;          /* SYNC_FAILURE_NONE for SYNCED */
        bool duplicate;               /* 409: the OFD had it already */
        bool retry_after_applies;     /* 429, 503: the OFD's Retry-After, when given, says when */
        bool breaker_success;         /* what the circuit breaker is told: the OFD answered sanely */
        char reason[SYNC_REASON_MAX]; /* "HTTP 422: <detail>", "timeout", ...; "" when synced */
} SyncVerdict;

/* Classifies one finished request. error: 0 when an HTTP answer came (then http_status and body count;
 * body may be NULL), else the negative errno from curl-glue (-ETIMEDOUT, -ECONNREFUSED, -ECONNRESET,
 * -EPIPE, -EHOSTUNREACH, -EPROTO, -EFBIG, -EINVAL, -ENOMEM, ...). was_sent: curl_request_was_sent().
 *   2xx, 409                          -> SYNCED
 *   429, 503                          -> RETRY, Retry-After applies
 *   other 5xx, 408, 425, 1xx, 3xx     -> RETRY
 *   401, 403, 404, 405                -> RETRY (they say nothing about the receipt, and dead-lettering
 *                                        the whole buffer over a wrong URL or token would be worse)
 *   other 4xx (400, 413, 422, ...)    -> PERMANENT, reason from the JSON "detail" or the body text
 *   error, whole request sent         -> UNKNOWN
 *   error, request not (fully) sent   -> RETRY */
void sync_policy_classify(int error, long http_status, bool was_sent, const char *body, size_t body_size,
                          SyncVerdict *ret);

/* How long a receipt waits after a failed attempt number `attempt`: the Retry-After (retry_after > 0,
 * capped at SYNC_RETRY_AFTER_MAX) when the verdict honours it, else sync_policy_backoff(). */
usec_t sync_policy_retry_delay(const SyncVerdict *v, unsigned attempt, usec_t retry_after, usec_t initial,
                               usec_t max, uint64_t random);

/* The OFD's reason from an error body: the JSON "detail" (a string as it is, anything else as JSON
 * text), else the body text; control characters become spaces, surrounding space is trimmed, and at most
 * SYNC_DETAIL_MAX bytes are kept, cut at a UTF-8 character boundary with "..." appended. Writes "" for
 * an empty body. */
void sync_policy_extract_detail(const char *body, size_t body_size, char *buf, size_t size);

/* "synced", "retry", "unknown", "permanent" */
const char *sync_outcome_to_string(SyncOutcome o);
/* "none", "http_5xx", "unavailable", "rate_limited", "http_other", "upstream_config", "rejected",
 * "timeout", "connection", "dns", "tls", "unknown_outcome", "other": usable as metric labels. */
const char *sync_failure_to_string(SyncFailure f);
SyncFailure sync_failure_from_string(const char *s);
