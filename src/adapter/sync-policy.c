/* SPDX-License-Identifier: MIT */
/* The backoff arithmetic and the table that maps an OFD answer (HTTP status, or the transfer's errno and
 * whether the request had been sent) to what happens to the receipt and to the breaker. */

#include <json-c/json.h>
#include <sys/random.h>

#include "json-util.h"
#include "string-table.h"
#include "sync-policy.h"

static const char *const sync_outcome_table[_SYNC_OUTCOME_MAX] = {
        [SYNC_OUTCOME_SYNCED] = "synced",
        [SYNC_OUTCOME_RETRY] = "retry",
        [SYNC_OUTCOME_UNKNOWN] = "unknown",
        [SYNC_OUTCOME_PERMANENT] = "permanent",
};

static const char *const sync_failure_table[_SYNC_FAILURE_MAX] = {
        [SYNC_FAILURE_NONE] = "none",
        [SYNC_FAILURE_HTTP_5XX] = "http_5xx",
        [SYNC_FAILURE_UNAVAILABLE] = "unavailable",
        [SYNC_FAILURE_RATE_LIMITED] = "rate_limited",
        [SYNC_FAILURE_HTTP_OTHER] = "http_other",
        [SYNC_FAILURE_UPSTREAM_CONFIG] = "upstream_config",
        [SYNC_FAILURE_REJECTED] = "rejected",
        [SYNC_FAILURE_TIMEOUT] = "timeout",
        [SYNC_FAILURE_CONNECTION] = "connection",
        [SYNC_FAILURE_DNS] = "dns",
        [SYNC_FAILURE_TLS] = "tls",
        [SYNC_FAILURE_UNKNOWN_OUTCOME] = "unknown_outcome",
        [SYNC_FAILURE_OTHER] = "other",
};

DEFINE_STRING_TABLE_LOOKUP_TO_STRING(sync_outcome, SyncOutcome, )
DEFINE_STRING_TABLE_LOOKUP(sync_failure, SyncFailure)

uint64_t sync_policy_random(void *userdata) {
        /* Jitter needs no secrets, only values that differ between the daemons of a chain; the fallback is
         * splitmix64, for the boot-time case where the entropy pool is not ready yet. */
        static _Thread_local uint64_t state;
        uint64_t v, z;

        if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t) sizeof v)
                return v;

        if (state == 0)
                state = now(CLOCK_MONOTONIC) ^ now(CLOCK_REALTIME) ^ ((uint64_t) getpid() << 32);
        state += UINT64_C(0x9e3779b97f4a7c15);
        z = state;
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

usec_t sync_policy_backoff(unsigned attempt, usec_t initial, usec_t max, uint64_t random) {
        usec_t base, half;

        base = MIN(initial, max);
        /* Doubling with saturation: a large attempt count must neither overflow nor loop for long. */
        for (unsigned i = 1; i < attempt && base < max; i++)
                base = base > max / 2 ? max : base * 2;

        half = base / 2;
        return base - half + random % (half + 1);
}

usec_t sync_policy_retry_delay(const SyncVerdict *v, unsigned attempt, usec_t retry_after, usec_t initial,
                               usec_t max, uint64_t random) {
        assert(v);

        if (v->retry_after_applies && retry_after > 0)
                return MIN(retry_after, SYNC_RETRY_AFTER_MAX);
        return sync_policy_backoff(attempt, initial, max, random);
}

/* Length of the valid UTF-8 sequence at s (at most n bytes available), 0 when it is not one. */
static size_t utf8_sequence_length(const unsigned char *s, size_t n) {
        size_t len;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                len = 2;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                len = 3;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                len = 4;
        else
                return 0;
        if (len > n)
                return 0;
        for (size_t i = 1; i < len; i++)
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
        return len;
}

static bool char_is_control(unsigned char c) {
        return c < 0x20 || c == 0x7f;
}

/* The text lands in the database, the journal and JSON answers: no control characters, no broken UTF-8
 * (invalid bytes become '?'), bounded. */
static void copy_sanitized(const char *text, size_t n, char *buf, size_t size) {
        const unsigned char *s = (const unsigned char *) text;
        size_t limit, i = 0, o = 0;
        bool truncated = false;

        assert(buf);
        assert(size > 0);

        limit = MIN((size_t) SYNC_DETAIL_MAX, size > 4 ? size - 4 : 0);

        while (i < n && (char_is_control(s[i]) || s[i] == ' '))
                i++;

        while (i < n) {
                size_t len = utf8_sequence_length(s + i, n - i);
                char replacement = 0;

                if (char_is_control(s[i])) {
                        replacement = ' ';
                        len = 1;
                } else if (len == 0) {
                        replacement = '?';
                        len = 1;
                }

                if (o + (replacement ? 1 : len) > limit) {
                        truncated = true;
                        break;
                }
                if (replacement)
                        buf[o++] = replacement;
                else {
                        memcpy(buf + o, s + i, len);
                        o += len;
                }
                i += len;
        }

        while (o > 0 && buf[o - 1] == ' ')
                o--;
        if (truncated && size >= 4) {
                memcpy(buf + o, "...", 3);
                o += 3;
        }
        buf[o] = 0;
}

void sync_policy_extract_detail(const char *body, size_t body_size, char *buf, size_t size) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *detail = NULL;
        const char *text = body;
        size_t n = body_size;

        assert(buf);
        assert(size > 0);

        if (!body || body_size == 0) {
                buf[0] = 0;
                return;
        }

        tok = json_tokener_new();
        if (tok && body_size <= INT32_MAX) {
                o = json_tokener_parse_ex(tok, body, (int) body_size);
                if (o && json_tokener_get_error(tok) != json_tokener_success)
                        o = (json_object_put(o), NULL);
        }

        if (o && json_object_is_type(o, json_type_object) &&
            json_object_object_get_ex(o, "detail", &detail) && detail) {
                if (json_object_is_type(detail, json_type_string)) {
                        text = json_object_get_string(detail);
                        n = (size_t) json_object_get_string_len(detail);
                } else {
                        /* FastAPI-style validation errors: a list of objects. */
                        text = json_object_to_json_string_ext(detail, JSON_C_TO_STRING_PLAIN);
                        n = text ? strlen(text) : 0;
                }
        }

        copy_sanitized(text ?: "", text ? n : 0, buf, size);
}

static void verdict_set_error(SyncVerdict *v, int error, bool was_sent) {
        const char *what;
        SyncFailure failure;

        switch (error) {
        case -ETIMEDOUT:
                what = "timeout";
                failure = SYNC_FAILURE_TIMEOUT;
                break;
        case -ECONNREFUSED:
                what = "connection refused";
                failure = SYNC_FAILURE_CONNECTION;
                break;
        case -ECONNRESET:
                what = "connection closed without an answer";
                failure = SYNC_FAILURE_CONNECTION;
                break;
        case -EPIPE:
                what = "connection lost while sending";
                failure = SYNC_FAILURE_CONNECTION;
                break;
        case -EHOSTUNREACH:
                what = "name lookup failed";
                failure = SYNC_FAILURE_DNS;
                break;
        case -EPROTO:
                what = "TLS failure";
                failure = SYNC_FAILURE_TLS;
                break;
        case -EFBIG:
                what = "answer too large";
                failure = SYNC_FAILURE_OTHER;
                break;
        case -EINVAL:
                what = "unsupported URL";
                failure = SYNC_FAILURE_UPSTREAM_CONFIG;
                break;
        case -ENOMEM:
                what = "out of memory";
                failure = SYNC_FAILURE_OTHER;
                break;
        default:
                what = "transfer failed";
                failure = SYNC_FAILURE_OTHER;
        }

        if (was_sent) {
                v->outcome = SYNC_OUTCOME_UNKNOWN;
                v->failure = SYNC_FAILURE_UNKNOWN_OUTCOME;
                snprintf(v->reason, sizeof v->reason, "%s after the request was sent, outcome unknown",
                         what);
        } else {
                v->outcome = SYNC_OUTCOME_RETRY;
                v->failure = failure;
                snprintf(v->reason, sizeof v->reason, "%s", what);
        }
}

void sync_policy_classify(int error, long http_status, bool was_sent, const char *body, size_t body_size,
                          SyncVerdict *ret) {
        char detail[SYNC_DETAIL_MAX + 4];
        long s = http_status;

        assert(ret);

        *ret = (SyncVerdict) {};

        if (error < 0) {
                verdict_set_error(ret, error, was_sent);
                return;
        }

        if ((s >= 200 && s <= 299) || s == 409) {
                ret->outcome = SYNC_OUTCOME_SYNCED;
                ret->failure = SYNC_FAILURE_NONE;
                ret->duplicate = s == 409;
                ret->breaker_success = true;
                return;
        }

        ret->outcome = SYNC_OUTCOME_RETRY;
        if (s == 429) {
                ret->failure = SYNC_FAILURE_RATE_LIMITED;
                ret->retry_after_applies = true;
        } else if (s == 503) {
                ret->failure = SYNC_FAILURE_UNAVAILABLE;
                ret->retry_after_applies = true;
        } else if (s >= 500 && s <= 599)
                ret->failure = SYNC_FAILURE_HTTP_5XX;
        else if (IN_SET(s, 408L, 425L))
                ret->failure = SYNC_FAILURE_HTTP_OTHER;
        else if (IN_SET(s, 401L, 403L, 404L, 405L))
                ret->failure = SYNC_FAILURE_UPSTREAM_CONFIG;
        else if (s >= 400 && s <= 499) {
                /* The OFD looked at this receipt and refused it: sending it again changes nothing. */
                ret->outcome = SYNC_OUTCOME_PERMANENT;
                ret->failure = SYNC_FAILURE_REJECTED;
                ret->breaker_success = true;
        } else
                ret->failure = SYNC_FAILURE_HTTP_OTHER;

        sync_policy_extract_detail(body, body_size, detail, sizeof detail);
        if (detail[0])
                snprintf(ret->reason, sizeof ret->reason, "HTTP %ld: %s", s, detail);
        else
                snprintf(ret->reason, sizeof ret->reason, "HTTP %ld", s);
}
