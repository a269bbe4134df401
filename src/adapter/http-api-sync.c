/* SPDX-License-Identifier: MIT */
/* Owns the HTTP API of the OFD leg: a sync on demand (and the wait for it), the worker's status, the
 * dead-letter queue and its admin's retry and resolve, the circuit breaker's reset. */

#include "http-api-internal.h"
#include "json-util.h"
#include "log.h"
#include "modules.h"

/* The longest ?wait= of POST /v1/kkt/buffer/sync. */
#define API_SYNC_WAIT_MAX 60U

typedef struct SyncWait {
        Modules *modules;
        HttpRequest *req;
        SyncTriggerResult trigger;
        SyncWaiter *waiter;
        sd_event_source *timer;
        unsigned seconds;
} SyncWait;

static void sync_wait_free(SyncWait *w) {
        sync_waiter_free(w->waiter);
        sd_event_source_disable_unref(w->timer);
        free(w);
}

/* Seconds with two decimals from microseconds, as the prototype rounded them, written exactly. */
static json_object *json_seconds_2(usec_t usec) {
        uint64_t hundredths = (usec + 5000) / 10000;
        char text[32];

        snprintf(text, sizeof text, "%" PRIu64 ".%02" PRIu64, hundredths / 100, hundredths % 100);
        return json_object_new_double_s(strtod(text, NULL), text);
}

static const char *sync_pass_message(const SyncPassStats *st, uint64_t pending) {
        switch (st->result) {
        case SYNC_PASS_OK:
                return "Manual sync completed successfully";
        case SYNC_PASS_NOTHING:
                /* Printed receipts are sent when their retry is due; the others wait for the register. */
                return pending == 0 ? "No pending receipts"
                                    : "No receipts due to be sent now: the pending ones wait for their next "
                                      "retry "
                                      "or for printing";
        case SYNC_PASS_FAILURES:
                return "Manual sync completed; some receipts failed and will be retried (see GET "
                       "/v1/kkt/dlq for "
                       "dead letters)";
        case SYNC_PASS_CIRCUIT_OPEN:
                return "The OFD circuit breaker is open: nothing was sent";
        case SYNC_PASS_HELD:
                return "The OFD asked to wait (Retry-After): nothing was sent";
        case SYNC_PASS_ERROR:
                return "The receipt buffer could not be read";
        default:
                return "The sync worker stopped";
        }
}

/* The answer of POST /v1/kkt/buffer/sync: ours (status, pending, circuit_breaker) and the prototype's
 * (synced, failed, skipped, duration_seconds, message); the counts are the pass's when it is known. */
static int api_sync_answer(HttpRequest *req, Modules *m, const char *status, const SyncPassStats *st,
                           const char *message) {
        json_object *o = json_object_new_object();
        unsigned failed = 0, skipped = 0;

        if (!o)
                return -ENOMEM;
        if (st) {
                failed = st->retried + st->dead_lettered;
                skipped = st->selected > st->synced + failed ? st->selected - st->synced - failed : 0;
        }
        json_object_object_add(o, "status", json_object_new_string(status));
        json_object_object_add(o, "synced", json_object_new_uint64(st ? st->synced : 0));
        json_object_object_add(o, "failed", json_object_new_uint64(failed));
        json_object_object_add(o, "skipped", json_object_new_uint64(skipped));
        json_object_object_add(o, "duration_seconds", json_seconds_2(st ? st->duration : 0));
        json_object_object_add(o, "message", json_object_new_string(message));
        if (st)
                json_object_object_add(o, "result",
                                       json_object_new_string(sync_pass_result_to_string(st->result)));
        json_object_object_add(o, "pending", json_object_new_uint64(store_get_counters(m->store)->pending));
        json_object_object_add(o, "circuit_breaker",
                               json_object_new_string(breaker_state_to_string(sync_get_breaker_state(m->sync))));
        /* 202 as before, and as the prototype declared, whether or not the pass is over. */
        return api_reply(req, 202, o);
}

static void api_on_sync_done(Sync *s, int error, const SyncPassStats *stats, void *userdata) {
        SyncWait *w = userdata;

        w->waiter = NULL; /* freed by the sync after this call */
        if (error < 0)
                (void) http_request_reply_error(w->req, 503, "The sync worker is stopping");
        else
                (void) api_sync_answer(
                        w->req, w->modules, "completed", stats,
                        sync_pass_message(stats, store_get_counters(w->modules->store)->pending));
        sync_wait_free(w);
}

static int api_on_sync_wait_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        SyncWait *w = userdata;
        char message[160];

        snprintf(message, sizeof message,
                 "The sync pass is still running after %u s; GET /v1/kkt/worker/status "
                 "shows its result",
                 w->seconds);
        (void) api_sync_answer(w->req, w->modules, "running", NULL, message);
        sync_wait_free(w);
        return 0;
}

/* ?wait=SECONDS: whole seconds, 0..API_SYNC_WAIT_MAX. */
static int parse_wait(const char *t, unsigned *ret) {
        unsigned v = 0;

        if (isempty(t))
                return -EINVAL;
        for (const char *p = t; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                v = v * 10 + (unsigned) (*p - '0');
                if (v > API_SYNC_WAIT_MAX)
                        return -ERANGE;
        }
        *ret = v;
        return 0;
}

int api_sync_now(HttpRequest *req, void *userdata) {
        Modules *m = userdata;
        const char *wait = http_request_query(req, "wait");
        unsigned seconds = 0;
        SyncTriggerResult t;
        SyncWait *w;
        int r;

        if (wait && parse_wait(wait, &seconds) < 0)
                return http_request_reply_error(req, 400, "wait: expected whole seconds, 0 to %u",
                                                API_SYNC_WAIT_MAX);

        if (seconds == 0) {
                r = sync_trigger(m->sync, &t);
                if (r == -ESHUTDOWN)
                        return http_request_reply_error(req, 503, "The sync worker is stopping");
                if (r < 0)
                        return r;
                /* 202: the pass runs on the loop after this answer, never inside the request. */
                return api_sync_answer(
                        req, m, sync_trigger_result_to_string(t), NULL,
                        t == SYNC_TRIGGER_CIRCUIT_OPEN
                                ? "The OFD circuit breaker is open: nothing was started"
                                : "Sync started in the background; ?wait=SECONDS waits for its result");
        }

        /* The request waits (suspended) for the end of the pass; nothing waits on the loop. */
        w = new0(SyncWait, 1);
        if (!w)
                return -ENOMEM;
        *w = (SyncWait) { .modules = m, .req = req, .seconds = seconds };
        r = sync_trigger_wait(m->sync, &w->trigger, api_on_sync_done, w, &w->waiter);
        if (r < 0) {
                free(w);
                if (r == -ESHUTDOWN)
                        return http_request_reply_error(req, 503, "The sync worker is stopping");
                return r;
        }
        if (!w->waiter) {
                t = w->trigger;
                free(w);
                return api_sync_answer(req, m, sync_trigger_result_to_string(t), NULL,
                                       "The OFD circuit breaker is open: nothing was started");
        }
        r = sd_event_add_time_relative(m->event, &w->timer, CLOCK_MONOTONIC, seconds * USEC_PER_SEC,
                                       USEC_PER_MSEC, api_on_sync_wait_timeout, w);
        if (r < 0) {
                sync_wait_free(w);
                return r;
        }
        (void) sd_event_source_set_description(w->timer, "http-sync-wait");
        return 0;
}

int api_worker_status(HttpRequest *req, void *userdata) {
        Modules *m = userdata;
        json_object *o = NULL;
        int r;

        r = sync_to_json(m->sync, &o);
        if (r >= 0)
                /* The prototype's: its worker task "running" or "stopped". */
                r = json_add(o, "task_status",
                             json_object_new_string(sync_is_running(m->sync) ? "running" : "stopped"));
        if (r < 0) {
                json_object_put(o);
                return r;
        }
        return api_reply(req, 200, o);
}

static void api_on_dlq_list(Sync *s, int error, const SyncDeadLetter *entries, size_t n_entries, void *userdata) {
        HttpRequest *req = userdata;
        json_object *a = NULL, *o;
        int r;

        if (error < 0) {
                (void) http_request_reply_error(req, 503, "Receipt buffer unavailable: %s", strerror(-error));
                return;
        }
        r = sync_dead_letters_to_json(entries, n_entries, &a);
        o = r >= 0 ? json_object_new_object() : NULL;
        if (!o) {
                json_object_put(a);
                (void) http_request_reply_error(req, 500, "Failed to render the dead letters");
                return;
        }
        json_object_object_add(o, "count", json_object_new_uint64(n_entries));
        json_object_object_add(o, "dead_letters", a);
        (void) api_reply(req, 200, o);
}

int api_dlq_list(HttpRequest *req, void *userdata) {
        Modules *m = userdata;
        const char *all = http_request_query(req, "all");

        return sync_dlq_list(m->sync, 0, !(all && (streq(all, "1") || streq(all, "true"))), api_on_dlq_list, req);
}

static void api_on_dlq_change(Sync *s, int error, void *userdata) {
        HttpRequest *req = userdata;
        const char *id = http_request_arg(req, 0);
        json_object *o;

        if (error == -ENOENT) {
                (void) http_request_reply_error(req, 404, "Receipt %s not found", id);
                return;
        }
        if (error == -EALREADY) {
                (void) http_request_reply_error(req, 409, "Receipt %s is not in the dead-letter queue", id);
                return;
        }
        if (error == -ESTALE) {
                (void) http_request_reply_error(req, 409,
                                                "The dead letter of receipt %s is resolved: it was handled "
                                                "outside the adapter, and that is final",
                                                id);
                return;
        }
        if (error < 0) {
                (void) http_request_reply_error(req, 503, "Receipt buffer unavailable: %s", strerror(-error));
                return;
        }
        o = json_object_new_object();
        if (!o) {
                (void) http_request_reply_error(req, 500, "Out of memory");
                return;
        }
        json_object_object_add(o, "receipt_id", json_object_new_string(id));
        json_object_object_add(o, "status", json_object_new_string(
                strstr(http_request_path(req), "/retry") ? "pending" : "resolved"));
        (void) api_reply(req, 200, o);
}

/* {"note": "...", "resolved_by": "..."}, both optional for retry; the note is required to resolve. */
static int api_dlq_body(HttpRequest *req, json_object **ret_body, const char **ret_note, const char **ret_who) {
        size_t size;
        const char *body = http_request_body(req, &size);
        json_object *o = NULL, *v;

        *ret_note = NULL;
        *ret_who = "http";
        if (size > 0) {
                o = json_tokener_parse(body);
                if (!o || !json_object_is_type(o, json_type_object)) {
                        json_object_put(o);
                        return -EBADMSG;
                }
                if (json_object_object_get_ex(o, "note", &v) && json_object_is_type(v, json_type_string))
                        *ret_note = json_object_get_string(v);
                if (json_object_object_get_ex(o, "resolved_by", &v) && json_object_is_type(v, json_type_string) &&
                    json_object_get_string_len(v) > 0)
                        *ret_who = json_object_get_string(v);
        }
        *ret_body = o;
        return 0;
}

int api_dlq_retry(HttpRequest *req, void *userdata) {
        _cleanup_(json_object_putp) json_object *body = NULL;
        Modules *m = userdata;
        const char *note, *who;

        if (api_dlq_body(req, &body, &note, &who) < 0)
                return http_request_reply_error(req, 400, "Body must be a JSON object");
        return sync_dlq_retry(m->sync, http_request_arg(req, 0), who, api_on_dlq_change, req);
}

int api_dlq_resolve(HttpRequest *req, void *userdata) {
        _cleanup_(json_object_putp) json_object *body = NULL;
        Modules *m = userdata;
        const char *note, *who;

        if (api_dlq_body(req, &body, &note, &who) < 0)
                return http_request_reply_error(req, 400, "Body must be a JSON object");
        if (isempty(note))
                return http_request_reply_error(req, 422, "note: required, say how the receipt was resolved");
        return sync_dlq_resolve(m->sync, http_request_arg(req, 0), note, who, api_on_dlq_change, req);
}

int api_breaker_reset(HttpRequest *req, void *userdata) {
        Modules *m = userdata;
        json_object *o;
        int r;

        r = sync_reset_breaker(m->sync);
        if (r < 0)
                return r;
        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        json_object_object_add(o, "status", json_object_new_string(breaker_state_to_string(sync_get_breaker_state(m->sync))));
        json_object_object_add(o, "changed", json_object_new_boolean(r > 0));
        return api_reply(req, 200, o);
}
