/* SPDX-License-Identifier: MIT */
/* The OFD leg of one receipt: the request (the receipt id as its Idempotency-Key) and what its answer
 * means: the job that records the attempt, the backoff and Retry-After hold it sets, the counters and the
 * rate-limited log line. No pass logic: the pass decides what comes next. */

#include "sync-internal.h"

static void sync_log_failure(Sync *s, const char *id, const SyncVerdict *v, unsigned attempt,
                             const char *detail) {
        unsigned suppressed = 0;

        if (!ratelimit_below(&s->log_ratelimit, &suppressed))
                return;
        /* Still printed and pending: retried, or dead-lettered (said by its own entry). */
        log_struct(LOG_WARNING, NULL, LOG_FIELDS(LOG_RECEIPT_STATE_FIELDS(id, RECEIPT_STATE_PRINTED)),
                   "Sending receipt %s to the OFD failed (attempt %u): %s%s%s%s%s", id, attempt, v->reason,
                   isempty(detail) ? "" : " (", strempty(detail), isempty(detail) ? "" : ")",
                   suppressed > 0 ? " (Earlier messages were suppressed.)" : "");
}


/* The OFD's answer as ofd_response: its JSON as it is, anything else as a JSON string. */
static char *sync_normalize_response(const char *body, size_t size) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_(json_object_putp) json_object *o = NULL;
        const char *text;

        if (!body || size == 0)
                return NULL;

        tok = json_tokener_new();
        if (tok && size <= INT32_MAX) {
                o = json_tokener_parse_ex(tok, body, (int) size);
                if (o && (json_tokener_get_error(tok) != json_tokener_success ||
                          strspn(body + json_tokener_get_parse_end(tok), " \t\r\n") !=
                                  size - json_tokener_get_parse_end(tok)))
                        o = (json_object_put(o), NULL);
        }
        if (o)
                return strndup(body, json_tokener_get_parse_end(tok));

        o = json_object_new_string_len(body, (int) MIN(size, (size_t) INT32_MAX));
        text = o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN) : NULL;
        return text ? strdup(text) : NULL;
}


/* A job recording one attempt; sync_record() queues it. */
SyncJob *sync_record_job_new(const char *id, SyncStoreAction action, const char *error) {
        _cleanup_(sync_job_freep) SyncJob *j = NULL;

        j = sync_job_new(SYNC_JOB_RECORD, NULL);
        if (!j)
                return NULL;
        j->u.attempt.action = action;
        j->due = USEC_INFINITY;
        j->u.attempt.id = strdup(id);
        if (!j->u.attempt.id)
                return NULL;
        if (error) {
                j->u.attempt.error = strdup(error);
                if (!j->u.attempt.error)
                        return NULL;
        }
        return TAKE_PTR(j);
}


/* Starts the request for one receipt; cb hears the answer, with send as its userdata. */
int sync_ofd_send(Sync *s, SyncSend *send, SyncStoreItem *item, CurlRequestCallback cb) {
        _cleanup_free_ char *key = NULL;
        const char *headers[3];
        CurlRequestOptions o;
        int r;

        if (asprintf(&key, "Idempotency-Key: %s", item->id) < 0)
                return -ENOMEM;
        headers[0] = key;
        headers[1] = "Accept: application/json";
        headers[2] = NULL;

        o = (CurlRequestOptions) {
                .body = item->body,
                .body_size = item->body_size,
                .content_type = "application/json",
                .bearer_token = s->token,
                .connect_timeout = s->options.timeout,
                .timeout = s->options.timeout,
                .headers = headers,
                .max_response_size = SYNC_MAX_RESPONSE,
        };

        send->sync = s;
        send->started = now(CLOCK_MONOTONIC);
        r = curl_glue_request_new(s->glue, &send->request, "POST", s->endpoint, &o, cb, send);
        if (r < 0)
                return r;

        /* The glue copied it. */
        item->body = mfree(item->body);
        return 0;
}

/* The answer to one send, at CLOCK_MONOTONIC n, as the job that records it (NULL: out of memory) and the
 * verdict the breaker hears. */
SyncJob *sync_ofd_answer(Sync *s, SyncSend *send, const SyncStoreItem *item, usec_t n, int error,
                         long http_status, const char *body, size_t body_size, SyncVerdict *ret_verdict) {
        CurlRequest *req = send->request;
        SyncVerdict *v = ret_verdict;
        usec_t retry_after = 0, delay;
        SyncJob *j = NULL;

        if (error < 0 || curl_request_get_retry_after(req, &retry_after) < 0)
                retry_after = 0;
        sync_policy_classify(error, http_status, curl_request_was_sent(req), body, body_size, v);
        sync_histogram_observe(&s->metrics.request_duration, usec_sub_unsigned(n, send->started));

        switch (v->outcome) {
        case SYNC_OUTCOME_SYNCED:
                s->last_backoff = 0;
                j = sync_record_job_new(item->id, SYNC_STORE_ACTION_SYNCED, NULL);
                if (j) {
                        j->u.attempt.duplicate = v->duplicate;
                        j->u.attempt.response = sync_normalize_response(body, body_size);
                        if (body_size > 0 && !j->u.attempt.response)
                                j = sync_job_free(j);
                }
                break;

        case SYNC_OUTCOME_PERMANENT:
                s->metrics.failures[v->failure]++;
                sync_log_failure(s, item->id, v, item->attempts + 1, NULL);
                j = sync_record_job_new(item->id, SYNC_STORE_ACTION_PERMANENT, v->reason);
                break;

        case SYNC_OUTCOME_RETRY:
        case SYNC_OUTCOME_UNKNOWN:
                s->metrics.failures[v->failure]++;
                sync_log_failure(s, item->id, v, item->attempts + 1,
                                 error < 0 ? curl_request_get_error_message(req) : NULL);
                delay = sync_policy_retry_delay(v, item->attempts + 1, retry_after,
                                                s->options.initial_backoff, s->options.max_backoff,
                                                s->options.random(s->options.random_userdata));
                s->last_backoff = delay;
                if (v->retry_after_applies && retry_after > 0) {
                        /* The OFD asked everyone to wait, not only this receipt. */
                        s->hold_until = MAX(s->hold_until, usec_add(n, delay));
                        s->pass.stop_sending = s->pass.held = true;
                }
                j = sync_record_job_new(item->id, SYNC_STORE_ACTION_RETRY, v->reason);
                if (j) {
                        j->u.attempt.next_retry_at = usec_add(now(CLOCK_REALTIME), delay);
                        j->u.attempt.max_attempts = s->options.max_attempts;
                        j->due = usec_add(n, delay);
                        j->unknown = v->outcome == SYNC_OUTCOME_UNKNOWN;
                }
                break;

        default:
                assert(!"bad outcome");
        }

        return j;
}
