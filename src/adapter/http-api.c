/* SPDX-License-Identifier: MIT */
/* Owns the mapping of HTTP paths to the Manager's modules and the JSON each answers with. */

#include <sys/statvfs.h>

#include "http-api.h"
#include "intake.h"
#include "json-util.h"
#include "log.h"
#include "manager.h"
#include "refund.h"

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
        json_object_object_add(o, "print_rejected", json_object_new_uint64(c->print_rejected));
        json_object_object_add(o, "cancelled", json_object_new_uint64(c->cancelled));
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

/* ---- the fiscal day ---- */

/* How long a report request waits for the register; a Z report queued behind receipts that cannot print
 * (paper out) stays queued after that, and the answer says so. */
#define API_REPORT_WAIT (120 * USEC_PER_SEC)

typedef struct ReportWait {
        Manager *manager;
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
        Manager *m = w->manager;
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

        r = fiscal_day_report_to_json(&result->report, manager_ofd_offline(m), &o);
        if (r >= 0 && w->op != DEVICE_OP_REPORT_X)
                r = json_add(o, w->op == DEVICE_OP_OPEN_SHIFT ? "already_open" : "already_closed",
                             json_object_new_boolean(result->error == -EALREADY));
        if (r < 0) {
                json_object_put(o);
                (void) http_request_reply_error(req, 500, "Failed to render the report: %s", strerror(-r));
        } else
                (void) http_request_reply_json(req, 200, o);
        report_wait_free(w);
}

static int api_on_report_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        ReportWait *w = userdata;

        /* The request goes; the Z report stays queued and is made once the receipts before it print. */
        fiscal_day_forget(w->manager->fiscal_day, w);
        (void) http_request_add_header(w->req, "Retry-After", "60");
        (void) http_request_reply_error(w->req, 504,
                                        "The %s is still waiting for the fiscal register (%u documents ahead, "
                                        "register %s); it will be made when they are printed",
                                        w->op == DEVICE_OP_CLOSE_SHIFT ? "Z report" : "report",
                                        printer_get_stats(w->manager->printer)->queued,
                                        device_state_to_string(device_get_state(w->manager->device)));
        report_wait_free(w);
        return 0;
}

static int api_report(HttpRequest *req, Manager *m, DeviceOperation op) {
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
        *w = (ReportWait) { .manager = m, .req = req, .op = op };
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
        Manager *m = userdata;
        json_object *o = NULL;
        int r;

        r = manager_shift_to_json(m, &o);
        if (r < 0)
                return r;
        return http_request_reply_json(req, 200, o);
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
        (void) http_request_reply_json(req, 200, o);
}

static int api_debug_device_settings(HttpRequest *req, void *userdata) {
        Manager *m = userdata;
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
        (void) http_request_reply_json(req, check->allowed ? 200 : 409, o);
}

/* POST /v1/pos/refund {"original_fiscal_doc_id": "..."}: the ERP's question before a return. */
static int api_refund_check(HttpRequest *req, void *userdata) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        Manager *m = userdata;
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
        (void) http_request_reply_json(req, 200, o);
}

/* POST /v1/kkt/receipt/{id}/retry: a rejected receipt back into the print queue. */
static int api_receipt_retry(HttpRequest *req, void *userdata) {
        Manager *m = userdata;

        return printer_retry_rejected(m->printer, http_request_arg(req, 0), "http", api_on_print_admin, req);
}

/* POST /v1/kkt/receipt/{id}/cancel {"note": "...", "cancelled_by": "..."}: never printed, never sent. */
static int api_receipt_cancel(HttpRequest *req, void *userdata) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        Manager *m = userdata;
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
        (void) http_request_reply_json(req, 200, o);
        return;
oom:
        json_object_put(a);
        json_object_put(o);
        (void) http_request_reply_error(req, 500, "Out of memory");
}

/* GET /v1/kkt/receipts/rejected: what waits for an admin. */
static int api_rejected_list(HttpRequest *req, void *userdata) {
        Manager *m = userdata;

        return store_list_print_rejected(m->store, 0, api_on_rejected_list, req);
}

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

/* Who may call what. The classes are those of the D-Bus policy (org.opticserp.KktAdapter1(5)): what group
 * kkt-pos may call over the bus needs the POS token here (when one is configured), what only kkt-admin and
 * root may call needs the admin token (and is closed while none is configured); what everyone may read on
 * the bus as properties (the register, the shift, the counters) is a POS read here, since the status paths
 * are the POS's and the ERP's. The shift (open, X, Z) is the cashier's, as on the bus. Health, metrics and
 * the name stay open for monitoring: counts and states, no receipt, no id. */
const HttpRoute http_api_routes[] = {
        { HTTP_GET, "/", api_root, HTTP_ACCESS_PUBLIC },
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
