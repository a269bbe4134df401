/* SPDX-License-Identifier: MIT */
/* Owns the mapping of HTTP paths to the modules (the route table) and the JSON each answers with; the OFD
 * leg's handlers (sync, DLQ, breaker) are http-api-sync.c's. */

#include <sys/statvfs.h>

#include "health.h"
#include "http-api-internal.h"
#include "http-api.h"
#include "intake.h"
#include "json-util.h"
#include "log.h"
#include "metrics.h"
#include "modules.h"
#include "refund.h"

/* JavaScript reads a JSON number into a double: an integer beyond 2^53 would lose digits there, so it is
 * written as a string. Our stamps (hlc) are strings anyway; this catches whatever else might get there. */
#define JSON_SAFE_INTEGER_MAX (UINT64_C(1) << 53)

static void api_safe_integers(json_object *o) {
        if (json_object_is_type(o, json_type_object)) {
                json_object_object_foreach(o, key, v) {
                        if (json_object_is_type(v, json_type_int)) {
                                int64_t i = json_object_get_int64(v);

                                if ((i >= 0 && json_object_get_uint64(v) > JSON_SAFE_INTEGER_MAX) ||
                                    (i < 0 && (uint64_t) - (i + 1) >= JSON_SAFE_INTEGER_MAX))
                                        /* Replacing the value of a key keeps the table as it is. */
                                        (void) json_object_object_add(
                                                o, key, json_object_new_string(json_object_get_string(v)));
                        } else
                                api_safe_integers(v);
                }
        } else if (json_object_is_type(o, json_type_array))
                for (size_t i = 0, n = json_object_array_length(o); i < n; i++) {
                        json_object *v = json_object_array_get_idx(o, i);
                        int64_t k;

                        if (!json_object_is_type(v, json_type_int)) {
                                api_safe_integers(v);
                                continue;
                        }
                        k = json_object_get_int64(v);
                        if ((k >= 0 && json_object_get_uint64(v) > JSON_SAFE_INTEGER_MAX) ||
                            (k < 0 && (uint64_t) - (k + 1) >= JSON_SAFE_INTEGER_MAX))
                                (void) json_object_array_put_idx(
                                        o, i, json_object_new_string(json_object_get_string(v)));
                }
}

int api_reply(HttpRequest *req, unsigned status, json_object *o) {
        if (o)
                api_safe_integers(o);
        return http_request_reply_json(req, status, o);
}

static int api_root(HttpRequest *req, void *userdata) {
        json_object *o = json_object_new_object();

        if (!o)
                return -ENOMEM;
        /* The prototype's keys, then ours. */
        json_object_object_add(o, "message", json_object_new_string("KKT Adapter API"));
        json_object_object_add(o, "version", json_object_new_string(PACKAGE_VERSION));
        json_object_object_add(o, "docs", json_object_new_string("/docs"));
        json_object_object_add(o, "health", json_object_new_string("/v1/health"));
        json_object_object_add(o, "status", json_object_new_string("operational"));
        json_object_object_add(o, "name", json_object_new_string(PACKAGE_NAME));
        return api_reply(req, 200, o);
}

/* GET /docs: where the prototype served its OpenAPI pages; here the paths this daemon answers, who may call
 * each (ACCESS in kkt-adapterd(8)) and where they are described. */
static int api_docs(HttpRequest *req, void *userdata) {
        json_object *o = json_object_new_object(), *paths = json_object_new_array();

        if (!o || !paths) {
                json_object_put(o);
                json_object_put(paths);
                return -ENOMEM;
        }
        for (const HttpRoute *route = http_api_routes; route->pattern; route++) {
                static const struct {
                        HttpMethod method;
                        const char *name;
                } methods[] = { { HTTP_GET, "GET" },
                                { HTTP_POST, "POST" },
                                { HTTP_PUT, "PUT" },
                                { HTTP_DELETE, "DELETE" } };
                char path[256];
                size_t l = 0;

                for (const char *p = route->pattern; *p && l + 5 < sizeof path; p++)
                        if (*p == '*') {
                                memcpy(path + l, "{id}", 4);
                                l += 4;
                        } else
                                path[l++] = *p;
                path[l] = 0;
                for (size_t i = 0; i < ELEMENTSOF(methods); i++) {
                        json_object *e;

                        if (!(route->method & methods[i].method))
                                continue;
                        e = json_object_new_object();
                        if (!e || json_add(e, "method", json_object_new_string(methods[i].name)) < 0 ||
                            json_add(e, "path", json_object_new_string(path)) < 0 ||
                            json_add(e, "access", json_object_new_string(http_access_to_string(route->access))) < 0 ||
                            json_object_array_add(paths, e) < 0) {
                                json_object_put(e);
                                json_object_put(paths);
                                json_object_put(o);
                                return -ENOMEM;
                        }
                }
        }
        json_object_object_add(o, "paths", paths);
        json_object_object_add(o, "manual", json_object_new_string("man 8 kkt-adapterd"));
        return api_reply(req, 200, o);
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
        (void) api_reply(req, 200, o);
}

static int api_post_receipt(HttpRequest *req, void *userdata) {
        Modules *m = userdata;
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
        (void) api_reply(req, 200, o);
}

static int api_get_receipt(HttpRequest *req, void *userdata) {
        Modules *m = userdata;

        return store_get_receipt(m->store, http_request_arg(req, 0), api_on_receipt, req);
}

static int api_buffer_status(HttpRequest *req, void *userdata) {
        Modules *m = userdata;
        const StoreCounters *c = store_get_counters(m->store);
        json_object *o = json_object_new_object();

        if (!o)
                return -ENOMEM;
        /* The prototype's keys, then the ones the ERP side reads. */
        json_object_object_add(o, "total_capacity", json_object_new_uint64(c->capacity));
        json_object_object_add(o, "current_queued", json_object_new_uint64(c->pending));
        json_object_object_add(o, "percent_full", modules_percent_full_to_json(m));
        json_object_object_add(o, "network_status",
                               json_object_new_string(modules_buffer_network_status(m)));
        json_object_object_add(o, "total_receipts", json_object_new_uint64(c->total));
        json_object_object_add(o, "pending", json_object_new_uint64(c->pending));
        json_object_object_add(o, "synced", json_object_new_uint64(c->synced));
        json_object_object_add(o, "failed", json_object_new_uint64(c->failed));
        json_object_object_add(o, "dlq_size", json_object_new_uint64(c->dlq));
        json_object_object_add(o, "print_rejected", json_object_new_uint64(c->print_rejected));
        json_object_object_add(o, "cancelled", json_object_new_uint64(c->cancelled));
        json_object_object_add(o, "buffer_percent", modules_percent_full_to_json(m));
        json_object_object_add(o, "buffer_count", json_object_new_uint64(c->pending));
        /* The ERP module's offline indicator compares with "OPEN", as the prototype spelt it. */
        json_object_object_add(o, "cb_state", json_string_or_null(modules_circuit_state_upper(m)));
        return api_reply(req, 200, o);
}

static int api_heartbeat_status(HttpRequest *req, void *userdata) {
        Modules *m = userdata;
        json_object *o = NULL;
        int r;

        r = heartbeat_to_json(m->heartbeat, &o);
        if (r < 0)
                return r;
        return api_reply(req, 200, o);
}

static int api_device_status(HttpRequest *req, void *userdata) {
        Modules *m = userdata;
        json_object *o = NULL;
        int r;

        r = device_state_to_json(m->device, &o);
        if (r < 0)
                return r;
        return api_reply(req, 200, o);
}

#if ENABLE_DEBUG_HOOKS
/* Test builds only: {"fault": "paper_out", "count": 0} makes the register fail until cleared with
 * {"fault": "none"}. */
static int api_debug_device_fault(HttpRequest *req, void *userdata) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        Modules *m = userdata;
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
        return api_reply(req, 200, json_object_get(o));
}
#endif

/* ---- the fiscal day ---- */

/* How long a report request waits for the register; a Z report queued behind receipts that cannot print
 * (paper out) stays queued after that, and the answer says so. */
#define API_REPORT_WAIT (120 * USEC_PER_SEC)

typedef struct ReportWait {
        Modules *modules;
        HttpRequest *req;
        DeviceOperation op;
        sd_event_source *timer;
} ReportWait;

static void report_wait_free(ReportWait *w) {
        sd_event_source_disable_unref(w->timer);
        free(w);
}

/* Optional body {"cashier": {"name": "...", "inn": "..."}}: who is named on the report. */
static int api_report_body(HttpRequest *req, json_object **ret, const char **ret_name, const char **ret_inn) {
        size_t size;
        const char *body = http_request_body(req, &size);
        json_object *o, *c, *v;

        *ret = NULL;
        *ret_name = *ret_inn = NULL;
        if (size == 0)
                return 0;
        o = json_tokener_parse(body);
        if (!o || !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return -EBADMSG;
        }
        *ret = o;
        if (!json_object_object_get_ex(o, "cashier", &c) || !c)
                return 0;
        if (!json_object_is_type(c, json_type_object) || !json_object_object_get_ex(c, "name", &v) ||
            !json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0 ||
            json_object_get_string_len(v) > 256)
                return -EINVAL;
        *ret_name = json_object_get_string(v);
        if (json_object_object_get_ex(c, "inn", &v) && v) {
                const char *inn = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";

                if (!IN_SET(strlen(inn), 10U, 12U) || strspn(inn, "0123456789") != strlen(inn))
                        return -EINVAL;
                *ret_inn = inn;
        }
        return 0;
}

static const char *report_fault_text(const DeviceResult *result, char *buf, size_t l) {
        if (!isempty(result->message))
                snprintf(buf, l, "%s (%s)", strna(device_fault_to_text(result->fault)), result->message);
        else if (result->fault != DEVICE_FAULT_NONE)
                snprintf(buf, l, "%s", strna(device_fault_to_text(result->fault)));
        else
                snprintf(buf, l, "%s", strerror(-result->error));
        return buf;
}

static void api_on_report(FiscalDay *f, const DeviceResult *result, void *userdata) {
        ReportWait *w = userdata;
        HttpRequest *req = w->req;
        Modules *m = w->modules;
        json_object *o = NULL;
        char why[256];
        int r;

        if (result->error < 0 && result->error != -EALREADY) {
                if (w->op == DEVICE_OP_CLOSE_SHIFT && result->error == -ENOENT && result->fault == DEVICE_FAULT_NONE)
                        (void) http_request_reply_error(req, 409, "No shift is open");
                else {
                        (void) http_request_add_header(req, "Retry-After", "30");
                        (void) http_request_reply_error(req, 503, "The fiscal register could not make the %s: %s",
                                                        w->op == DEVICE_OP_REPORT_X      ? "X report"
                                                        : w->op == DEVICE_OP_OPEN_SHIFT ? "shift opening"
                                                                                         : "Z report",
                                                        report_fault_text(result, why, sizeof why));
                }
                report_wait_free(w);
                return;
        }

        r = fiscal_day_report_to_json(&result->report, modules_ofd_offline(m), &o);
        if (r >= 0 && w->op != DEVICE_OP_REPORT_X)
                r = json_add(o, w->op == DEVICE_OP_OPEN_SHIFT ? "already_open" : "already_closed",
                             json_object_new_boolean(result->error == -EALREADY));
        if (r < 0) {
                json_object_put(o);
                (void) http_request_reply_error(req, 500, "Failed to render the report: %s", strerror(-r));
        } else
                (void) api_reply(req, 200, o);
        report_wait_free(w);
}

static int api_on_report_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        ReportWait *w = userdata;

        /* The request goes; the Z report stays queued and is made once the receipts before it print. */
        fiscal_day_forget(w->modules->fiscal_day, w);
        (void) http_request_add_header(w->req, "Retry-After", "60");
        (void) http_request_reply_error(w->req, 504,
                                        "The %s is still waiting for the fiscal register (%u documents ahead, "
                                        "register %s); it will be made when they are printed",
                                        w->op == DEVICE_OP_CLOSE_SHIFT ? "Z report" : "report",
                                        printer_get_stats(w->modules->printer)->queued,
                                        device_state_to_string(device_get_state(w->modules->device)));
        report_wait_free(w);
        return 0;
}

static int api_report(HttpRequest *req, Modules *m, DeviceOperation op) {
        _cleanup_(json_object_putp) json_object *body = NULL;
        const char *cashier, *inn;
        ReportWait *w;
        int r;

        if (!m->fiscal_day)
                return http_request_reply_error(req, 503, "The fiscal register is not set up");
        r = api_report_body(req, &body, &cashier, &inn);
        if (r == -EBADMSG)
                return http_request_reply_error(req, 400, "Body must be a JSON object");
        if (r < 0)
                return http_request_reply_error(req, 422, "cashier: expected {\"name\": \"...\", \"inn\": "
                                                          "\"10 or 12 digits\"}");

        w = new0(ReportWait, 1);
        if (!w)
                return -ENOMEM;
        *w = (ReportWait) { .modules = m, .req = req, .op = op };
        switch (op) {
        case DEVICE_OP_REPORT_X:
                r = fiscal_day_report_x(m->fiscal_day, cashier, inn, api_on_report, w);
                break;
        case DEVICE_OP_OPEN_SHIFT:
                r = fiscal_day_open_shift(m->fiscal_day, cashier, inn, api_on_report, w);
                break;
        default:
                r = fiscal_day_close_shift(m->fiscal_day, cashier, inn, api_on_report, w);
        }
        if (r < 0) {
                free(w);
                if (r == -EBUSY)
                        return http_request_reply_error(req, 409, "A Z report is already queued or running");
                if (r == -ENOENT)
                        return http_request_reply_error(req, 409, "No shift is open");
                if (r == -ESHUTDOWN)
                        return http_request_reply_error(req, 503, "Shutting down");
                return r;
        }
        r = sd_event_add_time_relative(m->event, &w->timer, CLOCK_MONOTONIC, API_REPORT_WAIT, USEC_PER_SEC,
                                       api_on_report_timeout, w);
        if (r >= 0)
                (void) sd_event_source_set_description(w->timer, "http-report-wait");
        return 0;
}

static int api_report_x(HttpRequest *req, void *userdata) {
        return api_report(req, userdata, DEVICE_OP_REPORT_X);
}

static int api_report_z(HttpRequest *req, void *userdata) {
        return api_report(req, userdata, DEVICE_OP_CLOSE_SHIFT);
}

static int api_shift_open(HttpRequest *req, void *userdata) {
        return api_report(req, userdata, DEVICE_OP_OPEN_SHIFT);
}

static int api_shift_status(HttpRequest *req, void *userdata) {
        Modules *m = userdata;
        json_object *o = NULL;
        int r;

        r = modules_shift_to_json(m, &o);
        if (r < 0)
                return r;
        return api_reply(req, 200, o);
}

#if ENABLE_DEBUG_HOOKS
/* Test builds only: settings for the register's driver (the emulator: ofd_online, unsent_age_days,
 * shift_age_seconds, fn_days_left). */
static void api_on_debug_device(Device *d, const DeviceResult *result, void *userdata) {
        HttpRequest *req = userdata;
        json_object *o = NULL;

        if (result->error < 0) {
                (void) http_request_reply_error(req, 422, "The driver refused the settings: %s", strerror(-result->error));
                return;
        }
        if (device_state_to_json(d, &o) < 0) {
                (void) http_request_reply_error(req, 500, "Failed to render the device");
                return;
        }
        (void) api_reply(req, 200, o);
}

static int api_debug_device_settings(HttpRequest *req, void *userdata) {
        Modules *m = userdata;
        const char *body = http_request_body(req, NULL);
        int r;

        r = device_submit(m->device, &(DeviceRequest) { .op = DEVICE_OP_DEBUG, .receipt_json = strempty(body) },
                          api_on_debug_device, req);
        if (r < 0)
                return http_request_reply_error(req, 422, "Cannot pass the settings: %s", strerror(-r));
        return 0;
}
#endif

/* ---- refunds and the receipts the register rejected ---- */

static void api_on_refund_check(const RefundCheck *check, void *userdata) {
        HttpRequest *req = userdata;
        json_object *o = NULL;
        int r;

        if (check->error == -ENOENT) {
                (void) http_request_reply_error(req, 404, "Original receipt not found (by receipt id, "
                                                          "Idempotency-Key or fiscal document number)");
                return;
        }
        if (check->error < 0) {
                (void) http_request_reply_error(req, 503, "Receipt buffer unavailable: %s", strerror(-check->error));
                return;
        }
        r = refund_check_to_json(check, &o);
        if (r >= 0 && !check->allowed)
                r = json_add(o, "detail", json_object_new_string(check->reason));
        if (r < 0) {
                json_object_put(o);
                (void) http_request_reply_error(req, 500, "Failed to render the answer: %s", strerror(-r));
                return;
        }
        (void) api_reply(req, check->allowed ? 200 : 409, o);
}

/* POST /v1/pos/refund {"original_fiscal_doc_id": "..."}: the ERP's question before a return. */
static int api_refund_check(HttpRequest *req, void *userdata) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        Modules *m = userdata;
        size_t size;
        const char *body = http_request_body(req, &size), *ref;
        json_object *v;
        int r;

        o = size > 0 ? json_tokener_parse(body) : NULL;
        if (!o || !json_object_is_type(o, json_type_object))
                return http_request_reply_error(req, 400, "Body must be a JSON object with original_fiscal_doc_id");
        if (!json_object_object_get_ex(o, "original_fiscal_doc_id", &v) || !v)
                return http_request_reply_error(req, 422, "original_fiscal_doc_id: missing");
        if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) > 0)
                /* A fiscal document number sent as a JSON number. */
                ref = json_object_get_string(v);
        else if (json_object_is_type(v, json_type_string))
                ref = json_object_get_string(v);
        else
                return http_request_reply_error(req, 422, "original_fiscal_doc_id: must be a string");
        r = refund_check(m->store, ref, api_on_refund_check, req);
        if (r == -EINVAL)
                return http_request_reply_error(req, 422, "original_fiscal_doc_id: must be 1..255 characters");
        return r;
}

static void api_on_print_admin(Printer *p, int error, const StoreReceipt *receipt, void *userdata) {
        HttpRequest *req = userdata;
        json_object *o = NULL;
        int r;

        switch (error) {
        case 0:
                break;
        case -ENOENT:
                (void) http_request_reply_error(req, 404, "Receipt %s not found", http_request_arg(req, 0));
                return;
        case -EBUSY:
                (void) http_request_reply_error(req, 409, "Receipt %s is not set aside as print_rejected",
                                                http_request_arg(req, 0));
                return;
        case -ESTALE:
                (void) http_request_reply_error(req, 409, "Receipt %s is cancelled; that is final",
                                                http_request_arg(req, 0));
                return;
        default:
                (void) http_request_reply_error(req, 503, "Receipt buffer unavailable: %s", strerror(-error));
                return;
        }
        r = intake_receipt_to_json(receipt, &o);
        if (r < 0) {
                (void) http_request_reply_error(req, 500, "Failed to render the receipt: %s", strerror(-r));
                return;
        }
        (void) api_reply(req, 200, o);
}

/* POST /v1/kkt/receipt/{id}/retry: a rejected receipt back into the print queue. */
static int api_receipt_retry(HttpRequest *req, void *userdata) {
        Modules *m = userdata;

        return printer_retry_rejected(m->printer, http_request_arg(req, 0), "http", api_on_print_admin, req);
}

/* POST /v1/kkt/receipt/{id}/cancel {"note": "...", "cancelled_by": "..."}: never printed, never sent. */
static int api_receipt_cancel(HttpRequest *req, void *userdata) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        Modules *m = userdata;
        size_t size;
        const char *body = http_request_body(req, &size), *note = NULL, *who = "http";
        json_object *v;

        o = size > 0 ? json_tokener_parse(body) : NULL;
        if (size > 0 && (!o || !json_object_is_type(o, json_type_object)))
                return http_request_reply_error(req, 400, "Body must be a JSON object");
        if (o && json_object_object_get_ex(o, "note", &v) && json_object_is_type(v, json_type_string))
                note = json_object_get_string(v);
        if (o && json_object_object_get_ex(o, "cancelled_by", &v) && json_object_is_type(v, json_type_string) &&
            json_object_get_string_len(v) > 0)
                who = json_object_get_string(v);
        if (isempty(note))
                return http_request_reply_error(req, 422, "note: required, say why the receipt is cancelled");
        return printer_cancel_rejected(m->printer, http_request_arg(req, 0), note, who, api_on_print_admin, req);
}

static void api_on_rejected_list(Store *s, int error, const StoreReceipt *receipts, size_t n, void *userdata) {
        HttpRequest *req = userdata;
        json_object *o, *a;

        if (error < 0) {
                (void) http_request_reply_error(req, 503, "Receipt buffer unavailable: %s", strerror(-error));
                return;
        }
        o = json_object_new_object();
        a = json_object_new_array();
        if (!o || !a)
                goto oom;
        for (size_t i = 0; i < n; i++) {
                json_object *e = NULL;

                if (intake_receipt_to_json(receipts + i, &e) < 0 || json_object_array_add(a, e) < 0) {
                        json_object_put(e);
                        goto oom;
                }
        }
        if (json_add(o, "count", json_object_new_uint64(n)) < 0 || json_add(o, "receipts", TAKE_PTR(a)) < 0)
                goto oom;
        (void) api_reply(req, 200, o);
        return;
oom:
        json_object_put(a);
        json_object_put(o);
        (void) http_request_reply_error(req, 500, "Out of memory");
}

/* GET /v1/kkt/receipts/rejected: what waits for an admin. */
static int api_rejected_list(HttpRequest *req, void *userdata) {
        Modules *m = userdata;

        return store_list_print_rejected(m->store, 0, api_on_rejected_list, req);
}

/* /v1/health and /metrics answer with the dead letters not resolved, which only the store knows: counted on
 * the reader, then answered on the loop. */
typedef void (*DeadLettersReply)(HttpRequest *req, Modules *m, uint64_t dead_letters_open);

typedef struct DeadLettersCount {
        Modules *modules;
        HttpRequest *req;
        DeadLettersReply reply;
        int64_t n;
} DeadLettersCount;

/* On the reader: the dead letters not resolved, as the prototype counted its dead-letter queue. */
static int api_count_dead_letters(StoreConn *c, void *job_data) {
        DeadLettersCount *dc = job_data;
        sqlite3_stmt *stmt;
        int rc, r;

        r = store_conn_prepare(c, "SELECT COUNT(*) FROM dlq WHERE resolved = 0", &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW)
                dc->n = sqlite3_column_int64(stmt, 0);
        else
                r = -EIO;
        (void) sqlite3_reset(stmt);
        return r;
}

static void api_on_dead_letters_counted(Store *s, int result, void *userdata) {
        DeadLettersCount *dc = userdata;

        /* Without the count, the answer says what it can (UINT64_MAX: not known). */
        dc->reply(dc->req, dc->modules, result >= 0 && dc->n >= 0 ? (uint64_t) dc->n : UINT64_MAX);
        free(dc);
}

static int api_with_dead_letters(HttpRequest *req, Modules *m, DeadLettersReply reply) {
        DeadLettersCount *dc;
        int r;

        dc = new(DeadLettersCount, 1);
        if (!dc)
                return -ENOMEM;
        *dc = (DeadLettersCount) { .modules = m, .req = req, .reply = reply, .n = -1 };
        r = store_read(m->store, api_count_dead_letters, dc, api_on_dead_letters_counted, dc);
        if (r < 0) {
                free(dc);
                reply(req, m, UINT64_MAX);
        }
        return 0;
}

static void api_health_reply(HttpRequest *req, Modules *m, uint64_t dead_letters_open) {
        json_object *o = NULL;
        Health h;
        int r;

        r = health_build(m, dead_letters_open, &h, &o);
        if (r < 0)
                (void) http_request_reply_error(req, 500, "Failed to check the health: %s", strerror(-r));
        else
                (void) api_reply(req, h == HEALTH_UNHEALTHY ? 503 : 200, o);
}

static int api_health(HttpRequest *req, void *userdata) {
        return api_with_dead_letters(req, userdata, api_health_reply);
}

static void api_metrics_reply(HttpRequest *req, Modules *m, uint64_t dead_letters_open) {
        _cleanup_free_ char *text = NULL;
        int r;

        r = metrics_build(m, dead_letters_open, &text);
        if (r < 0)
                (void) http_request_reply_error(req, 500, "Failed to render the metrics: %s", strerror(-r));
        else
                (void) http_request_reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", text);
}

static int api_metrics(HttpRequest *req, void *userdata) {
        return api_with_dead_letters(req, userdata, api_metrics_reply);
}

/* Who may call what. The classes are those of the D-Bus policy (org.opticserp.KktAdapter1(5)): what group
 * kkt-pos may call over the bus needs the POS token here (when one is configured), what only kkt-admin and
 * root may call needs the admin token (and is closed while none is configured); what everyone may read on
 * the bus as properties (the register, the shift, the counters) is a POS read here, since the status paths
 * are the POS's and the ERP's. The shift (open, X, Z) is the cashier's, as on the bus. Health, metrics and
 * the name stay open for monitoring: counts and states, no receipt, no id. */
const HttpRoute http_api_routes[] = {
        { HTTP_GET, "/", api_root, HTTP_ACCESS_PUBLIC },
        { HTTP_GET, "/docs", api_docs, HTTP_ACCESS_PUBLIC },
        { HTTP_POST, "/v1/kkt/receipt", api_post_receipt, HTTP_ACCESS_POS },
        { HTTP_GET, "/v1/kkt/receipt/*", api_get_receipt, HTTP_ACCESS_POS },
        { HTTP_GET, "/v1/kkt/buffer/status", api_buffer_status, HTTP_ACCESS_POS },
        { HTTP_GET, "/v1/kkt/heartbeat/status", api_heartbeat_status, HTTP_ACCESS_POS },
        { HTTP_GET, "/v1/kkt/device/status", api_device_status, HTTP_ACCESS_POS },
        { HTTP_POST, "/v1/kkt/buffer/sync", api_sync_now, HTTP_ACCESS_ADMIN },
        { HTTP_GET, "/v1/kkt/worker/status", api_worker_status, HTTP_ACCESS_POS },
        { HTTP_GET, "/v1/kkt/dlq", api_dlq_list, HTTP_ACCESS_ADMIN },
        { HTTP_POST, "/v1/kkt/dlq/*/retry", api_dlq_retry, HTTP_ACCESS_ADMIN },
        { HTTP_POST, "/v1/kkt/dlq/*/resolve", api_dlq_resolve, HTTP_ACCESS_ADMIN },
        { HTTP_POST, "/v1/kkt/circuit_breaker/reset", api_breaker_reset, HTTP_ACCESS_ADMIN },
        { HTTP_POST, "/v1/kkt/report/x", api_report_x, HTTP_ACCESS_POS },
        { HTTP_POST, "/v1/kkt/x_report", api_report_x, HTTP_ACCESS_POS },
        { HTTP_POST, "/v1/kkt/report/z", api_report_z, HTTP_ACCESS_POS },
        { HTTP_POST, "/v1/kkt/z_report", api_report_z, HTTP_ACCESS_POS },
        { HTTP_POST, "/v1/kkt/shift/close", api_report_z, HTTP_ACCESS_POS },
        { HTTP_POST, "/v1/kkt/shift/open", api_shift_open, HTTP_ACCESS_POS },
        { HTTP_GET, "/v1/kkt/shift", api_shift_status, HTTP_ACCESS_POS },
        { HTTP_POST, "/v1/pos/refund", api_refund_check, HTTP_ACCESS_POS },
        { HTTP_POST, "/v1/kkt/receipt/*/retry", api_receipt_retry, HTTP_ACCESS_ADMIN },
        { HTTP_POST, "/v1/kkt/receipt/*/cancel", api_receipt_cancel, HTTP_ACCESS_ADMIN },
        { HTTP_GET, "/v1/kkt/receipts/rejected", api_rejected_list, HTTP_ACCESS_ADMIN },
#if ENABLE_DEBUG_HOOKS
        /* Test builds only; they make the register fail or age: an admin's business. */
        { HTTP_POST, "/v1/kkt/debug/device/fault", api_debug_device_fault, HTTP_ACCESS_ADMIN },
        { HTTP_POST, "/v1/kkt/debug/device/settings", api_debug_device_settings, HTTP_ACCESS_ADMIN },
#endif
        { HTTP_GET, "/v1/health", api_health, HTTP_ACCESS_PUBLIC },
        { HTTP_GET, "/health", api_health, HTTP_ACCESS_PUBLIC },
        { HTTP_GET, "/metrics", api_metrics, HTTP_ACCESS_PUBLIC },
        {},
};
