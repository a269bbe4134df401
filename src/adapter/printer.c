/* SPDX-License-Identifier: MIT */
/* Owns the queue of documents waiting for the fiscal register and the rules around a print: one at a time,
 * store the fiscal document before telling anyone, retry the register's faults and set its refusals aside,
 * ask the register after an unknown outcome instead of printing blindly again, open the shift before a
 * receipt, queue Z reports behind the receipts before them, and hold receipts back from a shift about to
 * pass 24 hours. */

#include <inttypes.h>
#include <search.h>

#include "json-util.h"
#include "list.h"
#include "log.h"
#include "message-ids.h"
#include "printer.h"
#include "sqlite-util.h"

#define PRINT_RETRY_MIN (2 * USEC_PER_SEC)
#define PRINT_RETRY_MAX (60 * USEC_PER_SEC)

typedef enum PrintJobKind {
        JOB_RECEIPT,
        JOB_CLOSE_SHIFT,
} PrintJobKind;

typedef struct PrintJob PrintJob;
struct PrintJob {
        LIST_FIELDS(PrintJob, queue);
        PrintJobKind kind;

        /* JOB_RECEIPT */
        char *receipt_id;
        char *canonical;
        PrinterWaiterCallback waiter;
        void *waiter_userdata;
        bool unknown_outcome;  /* the register may have made it: ask (FIND) before printing */
        bool guard_reported;   /* held back by the 24-hour rule: said once */
        bool shift_checked;    /* the register said a shift is open (OPEN_SHIFT answered 0 or -EALREADY) */
        char *fiscal_json;     /* printed, but storing it failed: store again, never print again */
        usec_t printed_at;

        /* JOB_CLOSE_SHIFT */
        uint32_t shift_number; /* the shift to close; 0: the open one when it starts */
        bool close_unknown;    /* an attempt's answer was lost: "closed already" may mean by that attempt */
        char *cashier, *cashier_inn;
        PrinterReportCallback report_cb;
        void *report_userdata;
};

struct Printer {
        sd_event *event;
        Store *store;
        Device *device;
        PrinterOptions options;

        PrintJob *head, *tail;
        void *index;           /* tsearch() tree of the queued receipts by id: the queue can be long */
        PrintJob *current;     /* at the register or being stored */
        bool stopping;
        bool loading;          /* the unprinted receipts are being read from the store */
        usec_t retry_delay;
        sd_event_source *retry_source;
        bool holding;          /* the retry timer runs because the 24-hour rule holds the head back */
        usec_t progress_at;    /* CLOCK_MONOTONIC of the last finished job, or when the queue filled */

        PrinterEventCallback event_cb;
        void *event_userdata;
        PrinterShiftCallback shift_cb;
        void *shift_userdata;
        PrinterStats stats;
        RateLimit log_ratelimit;
};

static void printer_next(Printer *p);
static void printer_run(Printer *p);

static PrintJob *print_job_free(PrintJob *j) {
        if (!j)
                return NULL;
        free(j->receipt_id);
        free(j->canonical);
        free(j->fiscal_json);
        free(j->cashier);
        free(j->cashier_inn);
        return mfree(j);
}

static int print_job_compare(const void *a, const void *b) {
        return strcmp(((const PrintJob *) a)->receipt_id, ((const PrintJob *) b)->receipt_id);
}

/* Every queued receipt is in the index too; failing to index one only makes it invisible to
 * printer_find(), which the callers' own checks tolerate. */
static void printer_index(Printer *p, PrintJob *j) {
        if (j->kind == JOB_RECEIPT)
                (void) tsearch(j, &p->index, print_job_compare);
}

static void printer_unindex(Printer *p, PrintJob *j) {
        if (j->kind == JOB_RECEIPT)
                (void) tdelete(j, &p->index, print_job_compare);
}

static bool printer_has_work(Printer *p) {
        return p->head || p->current;
}

static void printer_push(Printer *p, PrintJob *j) {
        if (!printer_has_work(p))
                p->progress_at = now(CLOCK_MONOTONIC);
        printer_index(p, j);
        LIST_APPEND(queue, p->head, p->tail, j);
        p->stats.queued++;
}

/* Puts j first in the queue (the current job back, a Z report ahead of receipts). */
static void printer_push_front(Printer *p, PrintJob *j) {
        if (!printer_has_work(p))
                p->progress_at = now(CLOCK_MONOTONIC);
        printer_index(p, j);
        if (p->tail)
                LIST_PREPEND(queue, p->head, j);
        else
                LIST_APPEND(queue, p->head, p->tail, j);
        p->stats.queued++;
}

/* Takes j out of the queue, wherever it is; a job not queued (the current one) is left alone. */
static void printer_unlink(Printer *p, PrintJob *j) {
        if (!LIST_IS_LINKED(queue, p->head, j))
                return;
        LIST_REMOVE_QUEUED(queue, p->head, p->tail, j);
        p->stats.queued--;
        printer_unindex(p, j);
}

static PrintJob *printer_find(Printer *p, const char *receipt_id) {
        if (p->current && p->current->kind == JOB_RECEIPT && streq(p->current->receipt_id, receipt_id))
                return p->current;
        PrintJob key = { .receipt_id = (char *) receipt_id };
        void *node = tfind(&key, &p->index, print_job_compare);

        return node ? *(PrintJob **) node : NULL;
}

static PrintJob *printer_find_close(Printer *p) {
        if (p->current && p->current->kind == JOB_CLOSE_SHIFT)
                return p->current;
        LIST_FOREACH(queue, j, p->head)
                if (j->kind == JOB_CLOSE_SHIFT)
                        return j;
        return NULL;
}

static void printer_notify_waiter(Printer *p, PrintJob *j, ReceiptState state, const char *fiscal_json,
                                  const char *reason) {
        PrinterWaiterCallback cb = j->waiter;

        if (!cb)
                return;
        /* A waiter hears once: it answers its client with the first outcome. */
        j->waiter = NULL;
        cb(p, j->receipt_id, state, fiscal_json, reason, j->waiter_userdata);
}

static void printer_emit(Printer *p, const char *receipt_id, ReceiptState state, const char *reason) {
        if (p->event_cb)
                p->event_cb(p, receipt_id, state, reason, p->event_userdata);
}

static int printer_on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Printer *p = userdata;

        p->holding = false;
        printer_next(p);
        return 0;
}

/* A receipt held back by the 24-hour rule waits on the retry timer; what can release it (a Z report queued,
 * AutoCloseShift= turned on) goes at once instead of after that wait. */
static void printer_release_hold(Printer *p) {
        if (!p->holding)
                return;
        p->holding = false;
        if (p->retry_source)
                (void) sd_event_source_set_enabled(p->retry_source, SD_EVENT_OFF);
}

static void printer_schedule_retry(Printer *p) {
        int r;

        p->retry_delay = p->retry_delay == 0 ? PRINT_RETRY_MIN : MIN(p->retry_delay * 2, PRINT_RETRY_MAX);
        if (!p->retry_source) {
                r = sd_event_add_time_relative(p->event, &p->retry_source, CLOCK_MONOTONIC, p->retry_delay, 0,
                                               printer_on_retry, p);
                if (r < 0) {
                        log_error_errno(r, "Failed to schedule the next print attempt: %m");
                        return;
                }
                (void) sd_event_source_set_description(p->retry_source, "printer-retry");
        } else
                (void) sd_event_source_set_time_relative(p->retry_source, p->retry_delay);
        (void) sd_event_source_set_enabled(p->retry_source, SD_EVENT_ONESHOT);
}

/* Puts the current job back at the head and tries again later: a register that failed (paper out) fails
 * the same way for the next receipt, and printing out of order would only confuse the shift. */
static void printer_retry_later(Printer *p) {
        PrintJob *j = TAKE_PTR(p->current);

        /* Not printer_push_front(): going back to the head is no progress. */
        printer_index(p, j);
        if (p->tail)
                LIST_PREPEND(queue, p->head, j);
        else
                LIST_APPEND(queue, p->head, p->tail, j);
        p->stats.queued++;
        printer_schedule_retry(p);
}

/* The current job's next step goes through the queue's checks again (shift open, 24-hour rule) at once. */
static void printer_again_now(Printer *p) {
        PrintJob *j = TAKE_PTR(p->current);

        printer_push_front(p, j);
        printer_next(p);
}

/* The current job is over (done, or set aside): the next one. */
static void printer_finish_current(Printer *p) {
        print_job_free(TAKE_PTR(p->current));
        p->retry_delay = 0;
        p->progress_at = now(CLOCK_MONOTONIC);
        printer_next(p);
}

/* ---- flags in the store ---- */

typedef struct MarkFailedJob {
        char *receipt_id;
        char *reason;
} MarkFailedJob;

static int mark_failed_run(StoreConn *c, void *job_data) {
        MarkFailedJob *m = job_data;
        sqlite3_stmt *stmt;
        int r;

        r = store_conn_prepare(c,
                               "UPDATE receipts SET print_status = 'print_failed', last_error = ?1, "
                               "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                               "WHERE id = ?2 AND print_status IN ('unprinted', 'print_failed') "
                               "AND status = 'pending'",
                               &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "tt", m->reason, m->receipt_id);
        if (r < 0)
                return r;
        r = store_conn_step_done(c, stmt);
        if (r < 0)
                return r;
        return store_conn_log_event(c, m->receipt_id, "print_failed", NULL);
}

static void mark_failed_done(Store *s, int result, void *userdata) {
        MarkFailedJob *m = userdata;

        if (result < 0)
                log_warning_errno(result, "Failed to flag receipt %s as print_failed: %m", m->receipt_id);
        free(m->receipt_id);
        free(m->reason);
        free(m);
}

static void printer_flag_failed(Printer *p, PrintJob *j, const char *reason) {
        MarkFailedJob *m;

        m = new0(MarkFailedJob, 1);
        if (!m)
                return;
        m->receipt_id = strdup(j->receipt_id);
        m->reason = strdup(reason);
        if (!m->receipt_id || !m->reason || store_write(p->store, mark_failed_run, m, mark_failed_done, m) < 0)
                mark_failed_done(p->store, -ENOMEM, m);
}

static void printer_on_rejected_stored(Store *s, int result, void *userdata) {
        char *receipt_id = userdata;

        /* Not stored: after a restart it is loaded as unprinted and the register refuses it again. */
        if (result < 0 && result != -EALREADY)
                log_error_errno(result, "Failed to set receipt %s aside as print_rejected: %m", receipt_id);
        free(receipt_id);
}

/* The register refused the current receipt for good: out of the queue, visible, and the next one prints. */
static void printer_reject_current(Printer *p, const char *reason) {
        PrintJob *j = p->current;
        char *id;
        int r;

        p->stats.rejected++;
        log_struct(LOG_ERR, MESSAGE_ID_PRINT_REJECTED,
                   LOG_FIELDS(LOG_RECEIPT_STATE_FIELDS(j->receipt_id, RECEIPT_STATE_PRINT_REJECTED)),
                   "The fiscal register rejected receipt %s (%s); it is set aside as print_rejected and the "
                   "next receipt prints. Fix it and retry, or cancel it: kktctl receipt retry|cancel %s.",
                   j->receipt_id, reason, j->receipt_id);

        id = strdup(j->receipt_id);
        r = id ? store_set_print_rejected(p->store, j->receipt_id, reason, printer_on_rejected_stored, id) : -ENOMEM;
        if (r < 0) {
                log_error_errno(r, "Failed to set receipt %s aside as print_rejected: %m", j->receipt_id);
                free(id);
        }

        printer_notify_waiter(p, j, RECEIPT_STATE_PRINT_REJECTED, NULL, reason);
        printer_emit(p, j->receipt_id, RECEIPT_STATE_PRINT_REJECTED, reason);
        printer_finish_current(p);
}

static void printer_on_marked(Store *s, int result, void *userdata) {
        Printer *p = userdata;
        PrintJob *j = p->current;

        assert(j);
        /* -EALREADY: printed before (matched after an unknown outcome): the stored document stands.
         * -ESTALE: cancelled meanwhile; the register made it, so it is kept as printed by nobody: said. */
        if (result == -ESTALE)
                log_error("Receipt %s was printed (FD in its fiscal document) but had been cancelled; the "
                          "document stands at the register, check it.", j->receipt_id);
        else if (result < 0 && result != -EALREADY) {
                log_error_errno(result, "Receipt %s was printed but storing its fiscal document failed, "
                                "retrying (it will not be printed again): %m", j->receipt_id);
                printer_retry_later(p);
                return;
        }

        p->stats.printed++;
        printer_notify_waiter(p, j, RECEIPT_STATE_PRINTED, j->fiscal_json, NULL);
        printer_emit(p, j->receipt_id, RECEIPT_STATE_PRINTED, NULL);
        printer_finish_current(p);
}

static void printer_store_document(Printer *p) {
        PrintJob *j = p->current;
        int r;

        r = store_mark_printed(p->store, j->receipt_id, j->fiscal_json, j->printed_at, printer_on_marked, p);
        if (r < 0) {
                log_error_errno(r, "Failed to queue the fiscal document of %s: %m", j->receipt_id);
                printer_retry_later(p);
        }
}

static int printer_keep_document(PrintJob *j, const DeviceDocument *doc) {
        _cleanup_(json_object_putp) json_object *o = NULL, *receipt = NULL;
        json_object *vat;
        int r;

        r = device_document_to_json(doc, &o);
        if (r < 0)
                return r;
        /* The VAT sums per rate (tags 1102-1107 and their successors) are the receipt's, computed exactly at
         * intake: the document carries them as the register printed them. */
        receipt = json_tokener_parse(j->canonical);
        if (receipt && json_object_object_get_ex(receipt, "vat_amounts", &vat) &&
            json_object_is_type(vat, json_type_array)) {
                r = json_add(o, "vat_amounts", json_object_get(vat));
                if (r < 0)
                        return r;
        }
        free(j->fiscal_json);
        j->fiscal_json = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                          JSON_C_TO_STRING_NOSLASHESCAPE));
        if (!j->fiscal_json)
                return -ENOMEM;
        j->printed_at = doc->datetime;
        j->unknown_outcome = false;
        return 0;
}

/* A receipt's attempt failed at the register (or before it): flagged, said once to its waiter, retried. */
static void printer_fail_current(Printer *p, int error, const char *reason) {
        PrintJob *j = p->current;

        p->stats.failed_attempts++;
        if (ratelimit_below(&p->log_ratelimit, NULL))
                log_struct_errno(LOG_WARNING, error, NULL,
                                 LOG_FIELDS(LOG_RECEIPT_STATE_FIELDS(j->receipt_id, RECEIPT_STATE_PRINT_FAILED)),
                                 "Printing receipt %s failed: %s; it stays buffered and is retried.",
                                 j->receipt_id, reason);
        printer_flag_failed(p, j, reason);
        printer_notify_waiter(p, j, RECEIPT_STATE_PRINT_FAILED, NULL, reason);
        printer_emit(p, j->receipt_id, RECEIPT_STATE_PRINT_FAILED, reason);
        printer_retry_later(p);
}

static const char *result_reason(const DeviceResult *result, char *buf, size_t l) {
        if (!isempty(result->message))
                snprintf(buf, l, "%s: %s", strna(device_fault_to_text(result->fault)), result->message);
        else if (result->fault == DEVICE_FAULT_NONE || result->fault == DEVICE_FAULT_ERROR)
                snprintf(buf, l, "%s: %s", strna(device_fault_to_text(DEVICE_FAULT_ERROR)), strerror(-result->error));
        else
                snprintf(buf, l, "%s", strna(device_fault_to_text(result->fault)));
        return buf;
}

static void printer_on_printed(Device *d, const DeviceResult *result, void *userdata) {
        Printer *p = userdata;
        PrintJob *j = p->current;
        char reason[256];
        int r;

        assert(j);

        if (result->error >= 0) {
                r = printer_keep_document(j, &result->doc);
                if (r < 0) {
                        /* The register made the document; we could not even render it. Ask again later. */
                        log_error_errno(r, "Failed to render the fiscal document of %s: %m", j->receipt_id);
                        j->unknown_outcome = true;
                        printer_retry_later(p);
                        return;
                }
                printer_store_document(p);
                return;
        }

        result_reason(result, reason, sizeof reason);
        if (device_fault_is_permanent(result->fault)) {
                printer_reject_current(p, reason);
                return;
        }
        if (result->fault == DEVICE_FAULT_TIMEOUT_UNKNOWN)
                j->unknown_outcome = true;
        printer_fail_current(p, result->error, reason);
}

static void printer_on_found(Device *d, const DeviceResult *result, void *userdata) {
        Printer *p = userdata;
        PrintJob *j = p->current;
        int r;

        assert(j);

        if (result->error >= 0) {
                log_info("Receipt %s was made by the register before its answer was lost: FD %" PRIu32 ".",
                         j->receipt_id, result->doc.fiscal_document_number);
                p->stats.matched_after_unknown++;
                r = printer_keep_document(j, &result->doc);
                if (r < 0) {
                        printer_retry_later(p);
                        return;
                }
                printer_store_document(p);
                return;
        }
        if (result->error != -ENOENT || result->fault != DEVICE_FAULT_NONE) {
                /* Without knowing what the register did, printing again could make a second document. */
                if (ratelimit_below(&p->log_ratelimit, NULL))
                        log_warning("Cannot ask the register whether it made receipt %s (%s); asking again "
                                    "before printing it.", j->receipt_id,
                                    strna(device_fault_to_text(result->fault)));
                printer_retry_later(p);
                return;
        }

        /* The register has not made it: print it now, as any receipt at the head of the queue. */
        j->unknown_outcome = false;
        printer_again_now(p);
}

static void printer_on_opened(Device *d, const DeviceResult *result, void *userdata) {
        Printer *p = userdata;
        char reason[256], why[200];

        assert(p->current);

        if (result->error >= 0 && p->shift_cb)
                p->shift_cb(p, DEVICE_OP_OPEN_SHIFT, result, p->shift_userdata);
        if (result->error >= 0 || result->error == -EALREADY) {
                /* Open now, by us or already: the receipt follows. */
                p->current->shift_checked = true;
                printer_again_now(p);
                return;
        }
        snprintf(reason, sizeof reason, "opening the shift failed: %s", result_reason(result, why, sizeof why));
        printer_fail_current(p, result->error, reason);
}

static void printer_report(Printer *p, PrintJob *j, const DeviceResult *result) {
        PrinterReportCallback cb = TAKE_PTR(j->report_cb);

        if (p->shift_cb)
                p->shift_cb(p, DEVICE_OP_CLOSE_SHIFT, result, p->shift_userdata);
        if (cb)
                cb(p, result, j->report_userdata);
}

static void printer_on_closed(Device *d, const DeviceResult *result, void *userdata) {
        Printer *p = userdata;
        PrintJob *j = p->current;

        assert(j && j->kind == JOB_CLOSE_SHIFT);

        if (result->error == -EALREADY && j->close_unknown && result->report.fiscal_document_number > 0) {
                /* The attempt whose answer was lost made this Z: it is ours, not an earlier one. */
                DeviceResult made = *result;

                made.error = 0;
                printer_report(p, j, &made);
                printer_finish_current(p);
                return;
        }
        if (result->error >= 0 || result->error == -EALREADY || (result->error == -ENOENT && result->fault == DEVICE_FAULT_NONE)) {
                printer_report(p, j, result);
                printer_finish_current(p);
                return;
        }
        if (result->fault == DEVICE_FAULT_TIMEOUT_UNKNOWN)
                j->close_unknown = true;

        /* An unknown outcome is asked again with the same shift number, which the register answers with
         * the Z it made, if it made one: never two. Any other fault: retried when the register recovers. */
        if (ratelimit_below(&p->log_ratelimit, NULL))
                log_warning("The Z report of shift %" PRIu32 " failed (%s); retrying.", j->shift_number,
                            strna(device_fault_to_text(result->fault)));
        if (result->fault != DEVICE_FAULT_TIMEOUT_UNKNOWN && p->shift_cb)
                p->shift_cb(p, DEVICE_OP_CLOSE_SHIFT, result, p->shift_userdata);
        printer_retry_later(p);
}

bool printer_shift_guard(Printer *p) {
        const DeviceStatus *s = device_get_status(p->device);
        usec_t margin = p->options.shift_margin ?: PRINTER_SHIFT_MARGIN_DEFAULT;

        if (device_get_fault(p->device) == DEVICE_FAULT_SHIFT_EXPIRED)
                return true;
        if (!s || !s->shift_open || s->shift_open_usec == 0)
                return false;
        return now(CLOCK_REALTIME) >= usec_sub_unsigned(usec_add(s->shift_open_usec, DEVICE_SHIFT_MAX_USEC), margin);
}

static PrintJob *close_job_new(const char *cashier, const char *cashier_inn) {
        PrintJob *j = new0(PrintJob, 1);

        if (!j)
                return NULL;
        j->kind = JOB_CLOSE_SHIFT;
        if ((cashier && !(j->cashier = strdup(cashier))) || (cashier_inn && !(j->cashier_inn = strdup(cashier_inn))))
                return print_job_free(j);
        return j;
}

/* Starts the current job's next step at the register. */
static void printer_run(Printer *p) {
        PrintJob *j = p->current;
        const DeviceStatus *s;
        int r;

        if (j->kind == JOB_CLOSE_SHIFT) {
                s = device_get_status(p->device);
                /* Pinned to a number at its first attempt: a repeated request then closes that shift or
                 * answers with its Z, never a shift opened later. */
                if (j->shift_number == 0 && s && s->shift_open)
                        j->shift_number = s->shift_number;
                r = device_submit(p->device,
                                  &(DeviceRequest) { .op = DEVICE_OP_CLOSE_SHIFT,
                                                     .shift_number = j->shift_number,
                                                     .cashier = j->cashier,
                                                     .cashier_inn = j->cashier_inn },
                                  printer_on_closed, p);
        } else if (j->fiscal_json) /* printed already; only storing it failed */
                r = store_mark_printed(p->store, j->receipt_id, j->fiscal_json, j->printed_at, printer_on_marked, p);
        else if (j->unknown_outcome)
                r = device_submit(p->device,
                                  &(DeviceRequest) { .op = DEVICE_OP_FIND,
                                                     .receipt_id = j->receipt_id,
                                                     .receipt_json = j->canonical },
                                  printer_on_found, p);
        else if (!j->shift_checked && (!(s = device_get_status(p->device)) || !s->shift_open))
                /* The shift is opened on its own, before the receipt: a document of its own. Also when the
                 * register has not said yet whether one is open: it answers -EALREADY if so. */
                r = device_submit(p->device, &(DeviceRequest) { .op = DEVICE_OP_OPEN_SHIFT }, printer_on_opened, p);
        else
                r = device_submit(p->device,
                                  &(DeviceRequest) { .op = DEVICE_OP_PRINT,
                                                     .receipt_id = j->receipt_id,
                                                     .receipt_json = j->canonical },
                                  printer_on_printed, p);
        if (r < 0) {
                log_error_errno(r, "Failed to start a document at the register: %m");
                printer_retry_later(p);
        }
}

/* The head receipt may not go into the shift: a queued Z report goes first, or one is queued (AutoClose),
 * or the receipt waits, said once. Returns true when the head was dealt with. */
static bool printer_hold_for_shift(Printer *p) {
        PrintJob *close, *j = p->head;
        char reason[256], ts[FORMAT_ISO8601_MAX];
        const DeviceStatus *s;

        close = printer_find_close(p);
        if (close) {
                if (close != p->head) {
                        printer_unlink(p, close);
                        printer_push_front(p, close);
                }
                return false; /* the Z report is the head now: it runs */
        }
        if (p->options.auto_close) {
                close = close_job_new(NULL, NULL);
                if (close) {
                        log_notice("Closing shift %" PRIu32 " before it reaches 24 hours ([Device] AutoCloseShift=).",
                                   device_get_shift_number(p->device));
                        printer_push_front(p, close);
                        return false;
                }
        }

        s = device_get_status(p->device);
        snprintf(reason, sizeof reason,
                 "shift %" PRIu32 " open since %s reaches 24 hours, when the register refuses sales: close it "
                 "with a Z report (kktctl shift close)",
                 device_get_shift_number(p->device),
                 s && s->shift_open_usec ? format_iso8601_utc(ts, sizeof ts, s->shift_open_usec) : "unknown");
        if (!j->guard_reported) {
                j->guard_reported = true;
                log_struct(LOG_WARNING, MESSAGE_ID_SHIFT_EXPIRING,
                           LOG_FIELDS(LOG_RECEIPT_STATE_FIELDS(j->receipt_id, RECEIPT_STATE_PRINT_FAILED)),
                           "Receipt %s waits: %s.", j->receipt_id, reason);
                printer_flag_failed(p, j, reason);
                printer_notify_waiter(p, j, RECEIPT_STATE_PRINT_FAILED, NULL, reason);
                printer_emit(p, j->receipt_id, RECEIPT_STATE_PRINT_FAILED, reason);
        }
        printer_schedule_retry(p);
        p->holding = true;
        return true;
}

static void printer_next(Printer *p) {
        PrintJob *j;

        if (p->current || p->stopping || p->loading)
                return;
        if (p->retry_source && sd_event_source_get_enabled(p->retry_source, NULL) > 0)
                return; /* waiting before the next attempt */
        if (!p->head)
                return;
        if (p->head->kind == JOB_RECEIPT && !p->head->unknown_outcome && !p->head->fiscal_json &&
            printer_shift_guard(p) && printer_hold_for_shift(p))
                return;

        j = LIST_POP(queue, p->head, p->tail);
        p->stats.queued--;
        printer_unindex(p, j);
        p->current = j;
        printer_run(p);
}

static void printer_on_late(Device *d, const char *receipt_id, const DeviceResult *result, void *userdata) {
        /* A document that came back after its timeout: the job is flagged unknown_outcome, and its next
         * attempt asks the register (FIND), which finds this one. Only logged here. */
        if (result->error >= 0)
                log_info("The register finished receipt %s after its timeout: FD %" PRIu32 ".", receipt_id,
                         result->doc.fiscal_document_number);
}

static int print_job_new(PrintJob **ret, const char *receipt_id, const char *canonical_json) {
        PrintJob *j;

        j = new0(PrintJob, 1);
        if (!j)
                return -ENOMEM;
        j->kind = JOB_RECEIPT;
        j->receipt_id = strdup(receipt_id);
        j->canonical = strdup(canonical_json);
        if (!j->receipt_id || !j->canonical) {
                print_job_free(j);
                return -ENOMEM;
        }
        *ret = j;
        return 0;
}

int printer_enqueue(Printer *p, const char *receipt_id, const char *canonical_json, PrinterWaiterCallback cb,
                    void *userdata) {
        PrintJob *j;
        int r;

        if (printer_find(p, receipt_id))
                return -EEXIST;
        r = print_job_new(&j, receipt_id, canonical_json);
        if (r < 0)
                return r;
        j->waiter = cb;
        j->waiter_userdata = userdata;
        printer_push(p, j);
        printer_next(p);
        return 0;
}

void printer_forget_waiter(Printer *p, const char *receipt_id) {
        PrintJob *j = printer_find(p, receipt_id);

        if (j)
                j->waiter = NULL;
}

int printer_close_shift(Printer *p, const char *cashier, const char *cashier_inn, PrinterReportCallback cb,
                        void *userdata) {
        PrintJob *j;

        if (p->stopping)
                return -ESHUTDOWN;
        if (printer_find_close(p))
                return -EBUSY;
        j = close_job_new(cashier, cashier_inn);
        if (!j)
                return -ENOMEM;
        j->report_cb = cb;
        j->report_userdata = userdata;
        printer_push(p, j);
        printer_release_hold(p);
        printer_next(p);
        return 0;
}

void printer_forget_report(Printer *p, void *userdata) {
        PrintJob *j = printer_find_close(p);

        if (j && j->report_userdata == userdata)
                j->report_cb = NULL;
}

bool printer_close_pending(Printer *p) {
        return printer_find_close(p);
}

/* ---- admin ---- */

typedef struct AdminContext {
        Printer *printer;
        PrinterAdminCallback cb;
        void *userdata;
        bool retry;
} AdminContext;

static void printer_on_admin(Store *s, int error, const StoreReceipt *receipt, void *userdata) {
        AdminContext *ctx = userdata;
        Printer *p = ctx->printer;
        int r;

        if (error >= 0 && ctx->retry) {
                /* Back in the queue; the register is asked before it is printed, as after any doubt. */
                r = printer_enqueue(p, receipt->id, receipt->receipt_data, NULL, NULL);
                if (r < 0 && r != -EEXIST)
                        log_error_errno(r, "Failed to queue receipt %s again: %m", receipt->id);
                else {
                        PrintJob *j = printer_find(p, receipt->id);

                        if (j && j != p->current)
                                j->unknown_outcome = true;
                }
                printer_emit(p, receipt->id, RECEIPT_STATE_BUFFERED, NULL);
        } else if (error >= 0)
                printer_emit(p, receipt->id, RECEIPT_STATE_CANCELLED, receipt->last_error);

        if (ctx->cb)
                ctx->cb(p, error, error >= 0 ? receipt : NULL, ctx->userdata);
        free(ctx);
}

static int printer_admin(Printer *p, const char *receipt_id, const char *note, const char *who, bool retry,
                         PrinterAdminCallback cb, void *userdata) {
        AdminContext *ctx;
        int r;

        ctx = new0(AdminContext, 1);
        if (!ctx)
                return -ENOMEM;
        *ctx = (AdminContext) { .printer = p, .cb = cb, .userdata = userdata, .retry = retry };
        r = retry ? store_retry_print(p->store, receipt_id, who, printer_on_admin, ctx)
                  : store_cancel_receipt(p->store, receipt_id, note, who, printer_on_admin, ctx);
        if (r < 0)
                free(ctx);
        return r;
}

int printer_retry_rejected(Printer *p, const char *receipt_id, const char *who, PrinterAdminCallback cb,
                           void *userdata) {
        return printer_admin(p, receipt_id, NULL, who, true, cb, userdata);
}

int printer_cancel_rejected(Printer *p, const char *receipt_id, const char *note, const char *who,
                            PrinterAdminCallback cb, void *userdata) {
        return printer_admin(p, receipt_id, note, who, false, cb, userdata);
}

/* ---- loading at start ---- */

typedef struct LoadJob {
        char **ids;
        char **docs;
        size_t n;
} LoadJob;

static int load_run(StoreConn *c, void *job_data) {
        LoadJob *l = job_data;
        sqlite3_stmt *stmt;
        int r;

        r = store_conn_prepare(c,
                               "SELECT id, receipt_data FROM receipts WHERE status = 'pending' "
                               "AND print_status IN ('unprinted', 'print_failed') ORDER BY hlc",
                               &stmt);
        if (r < 0)
                return r;
        while ((r = sqlite3_step(stmt)) == SQLITE_ROW) {
                char **ids = reallocarray(l->ids, l->n + 1, sizeof(char *));
                char **docs;

                if (!ids)
                        return -ENOMEM;
                l->ids = ids;
                docs = reallocarray(l->docs, l->n + 1, sizeof(char *));
                if (!docs)
                        return -ENOMEM;
                l->docs = docs;
                l->ids[l->n] = strdup((const char *) sqlite3_column_text(stmt, 0));
                l->docs[l->n] = strdup((const char *) sqlite3_column_text(stmt, 1) ?: "{}");
                l->n++;
                if (!l->ids[l->n - 1] || !l->docs[l->n - 1])
                        return -ENOMEM;
        }
        return r == SQLITE_DONE ? 0 : sqlite_result_to_errno(r);
}

typedef struct LoadContext {
        Printer *printer;
        LoadJob job;
} LoadContext;

static void load_context_done(Store *s, int result, void *userdata) {
        LoadContext *ctx = userdata;
        Printer *p = ctx->printer;
        PrintJob *loaded = NULL, *loaded_tail = NULL;
        unsigned n = 0;

        if (result < 0)
                log_error_errno(result, "Failed to read the receipts waiting for the register: %m");
        else if (ctx->job.n > 0)
                log_info("%zu buffered receipt(s) are not printed yet; asking the register about them before "
                         "printing them.", ctx->job.n);
        for (size_t i = 0; i < ctx->job.n; i++) {
                PrintJob *j;

                /* In HLC order, ahead of receipts that arrived while they were being read (newer ones). Each
                 * may have been at the register when the daemon stopped: FIND before PRINT. */
                if (result >= 0 && ctx->job.ids[i] && ctx->job.docs[i] &&
                    !printer_find(p, ctx->job.ids[i]) &&
                    print_job_new(&j, ctx->job.ids[i], ctx->job.docs[i]) >= 0) {
                        j->unknown_outcome = true;
                        printer_index(p, j);
                        LIST_APPEND(queue, loaded, loaded_tail, j);
                        n++;
                }
                free(ctx->job.ids[i]);
                free(ctx->job.docs[i]);
        }
        free(ctx->job.ids);
        free(ctx->job.docs);
        free(ctx);

        if (loaded) {
                if (!printer_has_work(p))
                        p->progress_at = now(CLOCK_MONOTONIC);
                /* Ahead of what is queued: join that behind the loaded ones. */
                LIST_JOIN(queue, loaded, loaded_tail, p->head, p->tail);
                p->head = loaded;
                p->tail = loaded_tail;
                p->stats.queued += n;
        }
        p->loading = false;
        printer_next(p);
}

int printer_start(Printer *p) {
        LoadContext *ctx;
        int r;

        ctx = new0(LoadContext, 1);
        if (!ctx)
                return -ENOMEM;
        ctx->printer = p;
        p->loading = true;
        r = store_read(p->store, load_run, &ctx->job, load_context_done, ctx);
        if (r < 0) {
                p->loading = false;
                free(ctx);
                return r;
        }
        return 0;
}

int printer_new(Printer **ret, sd_event *event, Store *store, Device *device, const PrinterOptions *o) {
        Printer *p;

        p = new0(Printer, 1);
        if (!p)
                return -ENOMEM;
        p->event = sd_event_ref(event);
        p->store = store;
        p->device = device;
        p->options = o ? *o : (PrinterOptions) {};
        p->log_ratelimit = RATELIMIT_INIT(60 * USEC_PER_SEC, 10);
        device_set_late_callback(device, printer_on_late, p);
        *ret = p;
        return 0;
}

Printer *printer_free(Printer *p) {
        if (!p)
                return NULL;
        sd_event_source_disable_unref(p->retry_source);
        print_job_free(p->current);
        for (PrintJob *j; (j = LIST_POP(queue, p->head, p->tail));) {
                printer_unindex(p, j);
                /* A Z report that was never sent: its requester hears that it will not be made. */
                if (j->kind == JOB_CLOSE_SHIFT && j->report_cb)
                        j->report_cb(p, &(DeviceResult) { .error = -ECANCELED }, j->report_userdata);
                print_job_free(j);
        }
        sd_event_unref(p->event);
        return mfree(p);
}

void printer_set_options(Printer *p, const PrinterOptions *o) {
        p->options = *o;
        if (o->auto_close)
                printer_release_hold(p);
        printer_next(p);
}

void printer_set_event_callback(Printer *p, PrinterEventCallback cb, void *userdata) {
        p->event_cb = cb;
        p->event_userdata = userdata;
}

void printer_set_shift_callback(Printer *p, PrinterShiftCallback cb, void *userdata) {
        p->shift_cb = cb;
        p->shift_userdata = userdata;
}

usec_t printer_head_wait(Printer *p) {
        if (!printer_has_work(p))
                return 0;
        return usec_sub_unsigned(now(CLOCK_MONOTONIC), p->progress_at);
}

void printer_stop(Printer *p) {
        p->stopping = true;
        if (p->retry_source)
                (void) sd_event_source_set_enabled(p->retry_source, SD_EVENT_OFF);
}

bool printer_is_idle(Printer *p) {
        return !p->current;
}

const PrinterStats *printer_get_stats(Printer *p) {
        return &p->stats;
}
