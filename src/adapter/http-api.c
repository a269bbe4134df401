/* SPDX-License-Identifier: MIT */
/* Owns the mapping of HTTP paths to the Manager's modules and the JSON each answers with. */

#include <sys/statvfs.h>

#include "http-api.h"
#include "intake.h"
#include "json-util.h"
#include "log.h"
#include "manager.h"

static int api_root(HttpRequest *req, void *userdata) {
        json_object *o = json_object_new_object();

        if (!o)
                return -ENOMEM;
        json_object_object_add(o, "name", json_object_new_string(PACKAGE_NAME));
        json_object_object_add(o, "version", json_object_new_string(PACKAGE_VERSION));
        return http_request_reply_json(req, 200, o);
}

static void api_on_intake(const IntakeReply *reply, void *userdata) {
        HttpRequest *req = userdata;
        json_object *o = NULL;
        int r;

        if (reply->error != INTAKE_OK) {
                if (reply->error == INTAKE_BUFFER_FULL || reply->error == INTAKE_UNAVAILABLE)
                        (void) http_request_add_header(req, "Retry-After", "30");
                (void) http_request_reply_error(req, intake_error_to_http_status(reply->error), "%s",
                                                reply->detail);
                return;
        }

        r = intake_reply_to_json(reply, &o);
        if (r < 0) {
                (void) http_request_reply_error(req, 500, "Failed to render the answer: %s", strerror(-r));
                return;
        }
        if (reply->replayed)
                (void) http_request_add_header(req, "Idempotent-Replayed", "true");
        (void) http_request_reply_json(req, 200, o);
}

static int api_post_receipt(HttpRequest *req, void *userdata) {
        Manager *m = userdata;
        const char *body;
        size_t size;

        body = http_request_body(req, &size);
        return intake_submit(m->intake, http_request_header(req, "Idempotency-Key"), body, size, api_on_intake,
                             req);
}

static void api_on_receipt(Store *s, int error, const StoreReceipt *receipt, void *userdata) {
        HttpRequest *req = userdata;
        json_object *o = NULL;
        int r;

        if (error == -ENOENT) {
                (void) http_request_reply_error(req, 404, "Receipt %s not found", http_request_arg(req, 0));
                return;
        }
        if (error < 0) {
                (void) http_request_reply_error(req, 503, "Receipt buffer unavailable: %s", strerror(-error));
                return;
        }
        r = intake_receipt_to_json(receipt, &o);
        if (r < 0) {
                (void) http_request_reply_error(req, 500, "Failed to render receipt: %s", strerror(-r));
                return;
        }
        (void) http_request_reply_json(req, 200, o);
}

static int api_get_receipt(HttpRequest *req, void *userdata) {
        Manager *m = userdata;

        return store_get_receipt(m->store, http_request_arg(req, 0), api_on_receipt, req);
}

static int api_buffer_status(HttpRequest *req, void *userdata) {
        Manager *m = userdata;
        const StoreCounters *c = store_get_counters(m->store);
        double percent = c->capacity > 0 ? 100.0 * (double) c->pending / (double) c->capacity : 0;
        json_object *o = json_object_new_object();

        if (!o)
                return -ENOMEM;
        /* The prototype's keys, then the ones the ERP side reads. */
        json_object_object_add(o, "total_capacity", json_object_new_uint64(c->capacity));
        json_object_object_add(o, "current_queued", json_object_new_uint64(c->pending));
        json_object_object_add(o, "percent_full", json_object_new_double(percent));
        json_object_object_add(o, "network_status", json_object_new_string(manager_network_status(m)));
        json_object_object_add(o, "total_receipts", json_object_new_uint64(c->total));
        json_object_object_add(o, "pending", json_object_new_uint64(c->pending));
        json_object_object_add(o, "synced", json_object_new_uint64(c->synced));
        json_object_object_add(o, "failed", json_object_new_uint64(c->failed));
        json_object_object_add(o, "dlq_size", json_object_new_uint64(c->dlq));
        json_object_object_add(o, "buffer_percent", json_object_new_double(percent));
        json_object_object_add(o, "buffer_count", json_object_new_uint64(c->pending));
        json_object_object_add(o, "cb_state", json_string_or_null(manager_circuit_state(m)));
        return http_request_reply_json(req, 200, o);
}

static int api_heartbeat_status(HttpRequest *req, void *userdata) {
        Manager *m = userdata;
        json_object *o = NULL;
        int r;

        r = heartbeat_to_json(m->heartbeat, &o);
        if (r < 0)
                return r;
        return http_request_reply_json(req, 200, o);
}

static int api_device_status(HttpRequest *req, void *userdata) {
        Manager *m = userdata;
        json_object *o = NULL;
        int r;

        r = device_state_to_json(m->device, &o);
        if (r < 0)
                return r;
        return http_request_reply_json(req, 200, o);
}

#if ENABLE_DEBUG_HOOKS
/* Test builds only: {"fault": "paper_out", "count": 0} makes the register fail until cleared with
 * {"fault": "none"}. */
static int api_debug_device_fault(HttpRequest *req, void *userdata) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        Manager *m = userdata;
        json_object *f, *c;
        DeviceFault fault;
        int r;

        o = json_tokener_parse(http_request_body(req, NULL));
        if (!o || !json_object_object_get_ex(o, "fault", &f) || !json_object_is_type(f, json_type_string))
                return http_request_reply_error(req, 400, "Expected {\"fault\": NAME, \"count\": N}");
        fault = device_fault_from_string(json_object_get_string(f));
        if ((int) fault < 0)
                return http_request_reply_error(req, 422, "fault: unknown value");
        c = json_object_object_get(o, "count");
        r = device_debug_inject_fault(m->device, fault, c ? (unsigned) json_object_get_int(c) : 0);
        if (r < 0)
                return http_request_reply_error(req, 422, "Cannot inject %s: %s", json_object_get_string(f),
                                                strerror(-r));
        return http_request_reply_json(req, 200, json_object_get(o));
}
#endif

static int api_sync_now(HttpRequest *req, void *userdata) {
        Manager *m = userdata;
        SyncTriggerResult t;
        json_object *o;
        int r;

        r = sync_trigger(m->sync, &t);
        if (r == -ESHUTDOWN)
                return http_request_reply_error(req, 503, "The sync worker is stopping");
        if (r < 0)
                return r;
        /* 202: the pass runs on the loop after this answer, never inside the request. */
        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        json_object_object_add(o, "status", json_object_new_string(sync_trigger_result_to_string(t)));
        json_object_object_add(o, "pending", json_object_new_uint64(store_get_counters(m->store)->pending));
        json_object_object_add(o, "circuit_breaker",
                               json_object_new_string(breaker_state_to_string(sync_get_breaker_state(m->sync))));
        return http_request_reply_json(req, 202, o);
}

static int api_worker_status(HttpRequest *req, void *userdata) {
        Manager *m = userdata;
        json_object *o = NULL;
        int r;

        r = sync_to_json(m->sync, &o);
        if (r < 0)
                return r;
        return http_request_reply_json(req, 200, o);
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
        (void) http_request_reply_json(req, 200, o);
}

static int api_dlq_list(HttpRequest *req, void *userdata) {
        Manager *m = userdata;
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
                (void) http_request_reply_error(req, 409, "Receipt %s has no open dead letter", id);
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
        (void) http_request_reply_json(req, 200, o);
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

static int api_dlq_retry(HttpRequest *req, void *userdata) {
        _cleanup_(json_object_putp) json_object *body = NULL;
        Manager *m = userdata;
        const char *note, *who;

        if (api_dlq_body(req, &body, &note, &who) < 0)
                return http_request_reply_error(req, 400, "Body must be a JSON object");
        return sync_dlq_retry(m->sync, http_request_arg(req, 0), who, api_on_dlq_change, req);
}

static int api_dlq_resolve(HttpRequest *req, void *userdata) {
        _cleanup_(json_object_putp) json_object *body = NULL;
        Manager *m = userdata;
        const char *note, *who;

        if (api_dlq_body(req, &body, &note, &who) < 0)
                return http_request_reply_error(req, 400, "Body must be a JSON object");
        if (isempty(note))
                return http_request_reply_error(req, 422, "note: required, say how the receipt was resolved");
        return sync_dlq_resolve(m->sync, http_request_arg(req, 0), note, who, api_on_dlq_change, req);
}

static int api_breaker_reset(HttpRequest *req, void *userdata) {
        Manager *m = userdata;
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
        return http_request_reply_json(req, 200, o);
}

static int api_health(HttpRequest *req, void *userdata) {
        Manager *m = userdata;
        json_object *o = NULL;
        ManagerHealth h;
        int r;

        r = manager_health(m, &h, &o);
        if (r < 0)
                return r;
        return http_request_reply_json(req, h == MANAGER_UNHEALTHY ? 503 : 200, o);
}

static int api_metrics(HttpRequest *req, void *userdata) {
        Manager *m = userdata;
        _cleanup_free_ char *text = NULL;
        int r;

        r = manager_metrics(m, &text);
        if (r < 0)
                return r;
        return http_request_reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", text);
}

const HttpRoute http_api_routes[] = {
        { HTTP_GET, "/", api_root },
        { HTTP_POST, "/v1/kkt/receipt", api_post_receipt },
        { HTTP_GET, "/v1/kkt/receipt/*", api_get_receipt },
        { HTTP_GET, "/v1/kkt/buffer/status", api_buffer_status },
        { HTTP_GET, "/v1/kkt/heartbeat/status", api_heartbeat_status },
        { HTTP_GET, "/v1/kkt/device/status", api_device_status },
        { HTTP_POST, "/v1/kkt/buffer/sync", api_sync_now },
        { HTTP_GET, "/v1/kkt/worker/status", api_worker_status },
        { HTTP_GET, "/v1/kkt/dlq", api_dlq_list },
        { HTTP_POST, "/v1/kkt/dlq/*/retry", api_dlq_retry },
        { HTTP_POST, "/v1/kkt/dlq/*/resolve", api_dlq_resolve },
        { HTTP_POST, "/v1/kkt/circuit_breaker/reset", api_breaker_reset },
#if ENABLE_DEBUG_HOOKS
        { HTTP_POST, "/v1/kkt/debug/device/fault", api_debug_device_fault },
#endif
        { HTTP_GET, "/v1/health", api_health },
        { HTTP_GET, "/health", api_health },
        { HTTP_GET, "/metrics", api_metrics },
        {},
};
