/* SPDX-License-Identifier: MIT */
/* The atol-web driver's fiscal requests: reading the documents it made (fiscal parameters, the fiscal
 * drive's TLV), posting a fiscal request behind its getFnStatus, and deciding an unknown outcome: the web
 * server's record of our uuids first (walking the attempts), the register's documents after the one noted
 * before second, never a guess. */

#include <inttypes.h>

#include "device-atol-internal.h"

/* ---- the documents ---- */

void atol_note_fd(Atol *a, uint32_t fd) {
        a->last_fd = MAX(a->last_fd, fd);
}

/* fiscalParams {fiscalDocumentNumber, fiscalDocumentSign, fiscalDocumentDateTime, fiscalReceiptNumber,
 * shiftNumber, fnNumber, registrationNumber, total, fnsUrl} [KSL FiscalDocumentParams,
 * ReceiptFiscalDocumentParams; NAR fiscal-params.ts] into the receipt's document. */
static int document_from_params(Atol *a, json_object *fp, DeviceDocument *ret) {
        DeviceDocument d = {};
        char local[ATOL_LOCAL_MAX];
        int r;

        if (!atol_get_u32(fp, "fiscalDocumentNumber", &d.fiscal_document_number) ||
            atol_fiscal_sign(atol_get_key(fp, "fiscalDocumentSign"), d.fiscal_sign) < 0 ||
            atol_datetime(atol_get_string(fp, "fiscalDocumentDateTime"), &d.datetime, local) < 0)
                return -EBADMSG;
        (void) atol_get_u32(fp, "shiftNumber", &d.shift_number);
        (void) atol_get_u32(fp, "fiscalReceiptNumber", &d.document_number_in_shift);
        if (atol_copy_id(d.fn_number, sizeof d.fn_number, atol_get_key(fp, "fnNumber")) < 0)
                strcpy(d.fn_number, a->fn_number);
        r = atol_copy_id(d.registration_number, sizeof d.registration_number,
                         atol_get_key(fp, "registrationNumber"));
        if (r < 0)
                strcpy(d.registration_number, a->registration_number);
        r = atol_money(atol_get_key(fp, "total"), &d.total);
        if (r < 0)
                d.total = a->receipt.total;
        else if (d.total != a->receipt.total)
                log_warning("atol-web: the register's total of receipt %s is %s, ours %s.", a->receipt_id,
                            MONEY_FORMAT(d.total, MONEY_SCALE_KOPECKS),
                            MONEY_FORMAT(a->receipt.total, MONEY_SCALE_KOPECKS));
        strcpy(d.inn, a->inn);
        strcpy(d.serial, a->serial);
        d.change = a->receipt.change;
        d.receipt_type = a->receipt.type;
        atol_copy_text(d.receipt_id, sizeof d.receipt_id, a->receipt_id);
        atol_qr(&d, local);
        *ret = d;
        return 0;
}

static json_object *tlv_get(json_object *tlv, unsigned tag) {
        char key[8];

        snprintf(key, sizeof key, "%u", tag);
        return atol_get_key(tlv, key);
}

static bool tlv_u32(json_object *tlv, unsigned tag, uint32_t *ret) {
        char key[8];

        snprintf(key, sizeof key, "%u", tag);
        return atol_get_u32(tlv, key, ret);
}

/* The date of a document in documentTLV (tag 1012): a date-time string, or Unix time (assumption: not
 * shown in any source). */
static int tlv_datetime(json_object *tlv, usec_t *ret, char local[static ATOL_LOCAL_MAX]) {
        json_object *v = tlv_get(tlv, 1012);

        if (v && json_object_is_type(v, json_type_int)) {
                time_t t = (time_t) json_object_get_int64(v);
                struct tm tm;

                if (t < 0 || !gmtime_r(&t, &tm))
                        return -EINVAL;
                *ret = (usec_t) t * USEC_PER_SEC;
                snprintf(local, ATOL_LOCAL_MAX, "%04d%02d%02dT%02d%02d", (tm.tm_year + 1900) % 10000,
                         (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100);
                return 0;
        }
        return atol_datetime(v && json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                                           : NULL,
                             ret, local);
}

/* A document read back from the fiscal drive (getFnDocument's documentTLV: FFD tags as keys, amounts in
 * roubles, plus fiscalDocumentType [NAR document-tlv.ts; OFDC]) into the receipt's document. */
static int document_from_tlv(Atol *a, json_object *tlv, DeviceDocument *ret) {
        DeviceDocument d = {};
        char local[ATOL_LOCAL_MAX];

        if (!tlv_u32(tlv, 1040, &d.fiscal_document_number) ||
            atol_fiscal_sign(tlv_get(tlv, 1077), d.fiscal_sign) < 0 ||
            tlv_datetime(tlv, &d.datetime, local) < 0 || atol_money(tlv_get(tlv, 1020), &d.total) < 0)
                return -EBADMSG;
        (void) tlv_u32(tlv, 1038, &d.shift_number);
        (void) tlv_u32(tlv, 1042, &d.document_number_in_shift);
        if (atol_copy_id(d.fn_number, sizeof d.fn_number, tlv_get(tlv, 1041)) < 0)
                strcpy(d.fn_number, a->fn_number);
        if (atol_copy_id(d.registration_number, sizeof d.registration_number, tlv_get(tlv, 1037)) < 0)
                strcpy(d.registration_number, a->registration_number);
        if (atol_copy_id(d.inn, sizeof d.inn, tlv_get(tlv, 1018)) < 0)
                strcpy(d.inn, a->inn);
        strcpy(d.serial, a->serial);
        d.change = a->receipt.change;
        d.receipt_type = a->receipt.type;
        atol_copy_text(d.receipt_id, sizeof d.receipt_id, a->receipt_id);
        atol_qr(&d, local);
        *ret = d;
        return 0;
}

/* Whether a document read back is the one this operation makes: its form and, for a receipt, the
 * settlement (1054) and the total (1020). Within DEVICE_ATOL_RECONCILE_WINDOW documents of the number noted
 * before our request, with nothing of ours printed meanwhile, that is ours (assumption: nobody else prints
 * on this register at the same time). */
static bool tlv_is_ours(Atol *a, json_object *tlv) {
        const char *form = atol_get_string(tlv, "fiscalDocumentType");
        uint32_t settlement = 0;
        int64_t total;

        if (!form)
                return false;
        switch (a->kind) {
        case ATOL_KIND_OPEN_SHIFT:
                return streq(form, "openShift");
        case ATOL_KIND_CLOSE_SHIFT:
                return streq(form, "closeShift");
        case ATOL_KIND_RECEIPT:
                if (!streq(form,
                           receipt_type_is_correction(a->receipt.type) ? "receiptCorrection" : "receipt"))
                        return false;
                return tlv_u32(tlv, 1054, &settlement) &&
                       settlement == receipt_type_to_ffd(a->receipt.type) &&
                       atol_money(tlv_get(tlv, 1020), &total) >= 0 && total == a->receipt.total;
        }
        return false;
}

/* ---- what a request of ours made ---- */

/* A fiscal request is [getFnStatus, <fiscal task>]: the first task notes the register's last document
 * before the second runs, in the web server's own record of the request. */
static AtolVerdict judge(json_object *results, uint32_t *ret_before, int *ret_code,
                         const char **ret_description, bool *ret_final) {
        size_t n = json_object_array_length(results);
        json_object *e = json_object_array_get_idx(results, n - 1);
        AtolStatus st = atol_status(e);
        bool uncertain = true;

        *ret_final = atol_status_final(st);
        *ret_code = 0;
        *ret_description = NULL;
        *ret_before = 0;
        if (n >= 2)
                (void) atol_get_u32(atol_get_key(atol_task_result(results, 0), "fnStatus"),
                                    "fiscalDocumentNumber", ret_before);

        switch (st) {
        case ATOL_STATUS_READY:
                return ATOL_MADE;
        case ATOL_STATUS_INTERRUPTED: /* never ran [AWS: wasError] */
        case ATOL_STATUS_CANCELED:
                *ret_code = atol_error(e, ret_description);
                return ATOL_NOT_MADE;
        case ATOL_STATUS_ERROR:
                *ret_code = atol_error(e, ret_description);
                (void) device_atol_error_fault(*ret_code, &uncertain);
                /* Without the number noted before, there is nothing to compare the register with. */
                return uncertain ? ATOL_UNDECIDED : ATOL_NOT_MADE;
        default:
                /* wait, inProgress, blocked: not decided yet. blocked is the server's own unknown outcome,
                 * which it resolves itself once the register answers again [AWS DriverWorker]. */
                return ATOL_UNDECIDED;
        }
}

/* The register's documents after `before` [OFDC: getFnStatus, getFnDocument]. */
static void rec_on_docs(Atol *a, AtolReply *r) {
        AtolVerdictHandler cont = a->on_verdict;
        bool complete = true;

        if (r->outcome != ATOL_REPLY_RESULTS || !r->final) {
                cont(a, ATOL_UNDECIDED);
                return;
        }
        for (size_t i = 0; i < json_object_array_length(r->results); i++) {
                json_object *tlv = atol_get_key(atol_task_result(r->results, i), "documentTLV");

                if (!tlv) {
                        complete = false;
                        continue;
                }
                if (tlv_is_ours(a, tlv)) {
                        a->found_tlv = json_object_get(tlv);
                        log_notice("atol-web: document %" PRIu32
                                   " in the fiscal drive is ours (%s), made before "
                                   "its answer was lost.",
                                   a->before + 1 + (uint32_t) i, a->receipt_id ?: "shift document");
                        cont(a, ATOL_MADE);
                        return;
                }
        }
        cont(a, complete && a->rec_last - a->before <= DEVICE_ATOL_RECONCILE_WINDOW ? ATOL_NOT_MADE
                                                                                    : ATOL_UNDECIDED);
}

static void rec_on_status(Atol *a, AtolReply *r) {
        _cleanup_free_ char *tasks = NULL;
        json_object *fs;
        size_t n = 0;

        fs = r->outcome == ATOL_REPLY_RESULTS && r->final
                     ? atol_get_key(atol_task_result(r->results, 0), "fnStatus")
                     : NULL;
        if (!fs || !atol_get_u32(fs, "fiscalDocumentNumber", &a->rec_last)) {
                a->on_verdict(a, ATOL_UNDECIDED);
                return;
        }
        atol_note_fd(a, a->rec_last);
        if (a->rec_last <= a->before) {
                /* No document since the number noted before the request: it made nothing. */
                a->on_verdict(a, ATOL_NOT_MADE);
                return;
        }
        a->rec_count = MIN(a->rec_last - a->before, DEVICE_ATOL_RECONCILE_WINDOW);
        for (unsigned i = 0; i < a->rec_count; i++) {
                char *t;

                if (asprintf(&t, "%s%s{\"type\":\"getFnDocument\",\"fiscalDocumentNumber\":%" PRIu32 "}",
                             strempty(tasks), i > 0 ? "," : "", a->before + 1 + i) < 0) {
                        a->on_verdict(a, ATOL_UNDECIDED);
                        return;
                }
                free(tasks);
                tasks = t;
                n++;
        }
        {
                _cleanup_free_ char *list = NULL;

                if (asprintf(&list, "[%s]", tasks) < 0) {
                        a->on_verdict(a, ATOL_UNDECIDED);
                        return;
                }
                atol_query(a, list, rec_on_docs);
        }
}

/* Decides an unknown outcome by the register, as ATOL's web server decides its own blocked tasks (a last
 * document number above the one noted before means the document was closed [AWS DriverWorker]) and with its
 * sample's advice (a document not closed was not made [SMP]); the document itself is read back to be sure it
 * is ours. */
static void reconcile(Atol *a, uint32_t before, AtolVerdictHandler cont) {
        a->before = before;
        a->on_verdict = cont;
        if (a->found_tlv) {
                json_object_put(a->found_tlv);
                a->found_tlv = NULL;
        }
        atol_query(a, "[{\"type\":\"getFnStatus\"}]", rec_on_status);
}

/* ---- the operations: results ---- */

/* The report of a shift document from its fiscal parameters or its record in the fiscal drive. */
static int report_from(Atol *a, json_object *fp, json_object *tlv, DeviceReport *rep) {
        char local[ATOL_LOCAL_MAX];

        rep->type = a->kind == ATOL_KIND_OPEN_SHIFT ? DEVICE_REPORT_OPEN : DEVICE_REPORT_Z;
        if (fp) {
                if (!atol_get_u32(fp, "fiscalDocumentNumber", &rep->fiscal_document_number) ||
                    atol_fiscal_sign(atol_get_key(fp, "fiscalDocumentSign"), rep->fiscal_sign) < 0 ||
                    atol_datetime(atol_get_string(fp, "fiscalDocumentDateTime"), &rep->datetime, local) < 0)
                        return -EBADMSG;
                if (!atol_get_u32(fp, "shiftNumber", &rep->shift_number))
                        rep->shift_number = a->shift;
        } else {
                if (!tlv_u32(tlv, 1040, &rep->fiscal_document_number) ||
                    atol_fiscal_sign(tlv_get(tlv, 1077), rep->fiscal_sign) < 0 ||
                    tlv_datetime(tlv, &rep->datetime, local) < 0)
                        return -EBADMSG;
                if (!tlv_u32(tlv, 1038, &rep->shift_number))
                        rep->shift_number = a->shift;
        }
        rep->last_fiscal_document = MAX(rep->fiscal_document_number, a->last_fd);
        atol_note_fd(a, rep->fiscal_document_number);
        if (a->kind == ATOL_KIND_OPEN_SHIFT) {
                rep->shift_open = true;
                rep->shift_open_usec = rep->datetime;
        } else {
                rep->shift_open = false;
                rep->shift_open_usec = a->state.status.shift_open_usec;
                rep->totals = a->state.status.shift_totals;
                rep->ofd = a->state.ofd;
        }
        return 0;
}

static void atol_made(Atol *a, json_object *task_result, json_object *tlv, uint32_t before);

static void made_on_reconciled(Atol *a, AtolVerdict v) {
        if (v == ATOL_MADE) {
                atol_made(a, NULL, a->found_tlv, 0);
                return;
        }
        /* The web server says made, the register shows nothing we recognise: not for us to settle. */
        if (a->lookup_only) {
                atol_finish(a);
                return;
        }
        atol_fail_fault(a, a->op == DEVICE_OP_FIND ? DEVICE_FAULT_ERROR : DEVICE_FAULT_TIMEOUT_UNKNOWN,
                        "the web server reports the document made, its fiscal data cannot be read");
}

/* The document is made: fiscal parameters (fp) or its record in the fiscal drive (tlv). A result without
 * readable fiscal parameters (a server's own recovery may leave none [AWS: getLastFiscalParams]) is read
 * back from the fiscal drive, after the number noted before the request. */
static void atol_made(Atol *a, json_object *task_result, json_object *tlv, uint32_t before) {
        json_object *fp = task_result ? atol_get_key(task_result, "fiscalParams") : NULL;
        bool b;
        int r;

        if (!tlv && !atol_get_key(fp, "fiscalDocumentNumber")) {
                reconcile(a, before, made_on_reconciled);
                return;
        }

        /* warnings.notPrinted: "Документ закрыт, но не допечатан" [KSL WarningFlags]: the fiscal drive has
         * it, the paper copy is incomplete: continuePrint ("Допечатать документ" [KSL], which "завершится с
         * ошибкой, если это невозможно" [SMP]) before the next operation. A document found only in the
         * fiscal drive may be unprinted as well. */
        if ((atol_get_bool(atol_get_key(task_result, "warnings"), "notPrinted", &b) && b) || tlv)
                a->continue_print = true;

        if (a->kind == ATOL_KIND_RECEIPT) {
                r = fp ? document_from_params(a, fp, &a->result.doc)
                       : document_from_tlv(a, tlv, &a->result.doc);
                if (r >= 0)
                        atol_note_fd(a, a->result.doc.fiscal_document_number);
        } else
                r = report_from(a, fp, tlv, &a->result.report);
        if (r < 0) {
                /* Made, but its attributes cannot be read: never "not made". Asked again (FIND). */
                atol_fail_fault(a, DEVICE_FAULT_TIMEOUT_UNKNOWN,
                                "the register made the document, its answer is unreadable");
                return;
        }
        if (a->kind == ATOL_KIND_RECEIPT) {
                a->cache_receipt[0] = 0;
                log_debug("atol-web: receipt %s is document %" PRIu32 ".", a->receipt_id,
                          a->result.doc.fiscal_document_number);
        }
        a->result.error = 0;
        a->result.fault = DEVICE_FAULT_NONE;
        atol_finish(a);
}

static void atol_note_attempts(Atol *a, unsigned free_slot) {
        if (a->kind != ATOL_KIND_RECEIPT)
                return;
        atol_copy_text(a->cache_receipt, sizeof a->cache_receipt, a->receipt_id);
        a->cache_free = free_slot;
}

static int slot_uuid(Atol *a, unsigned k, char ret[static DEVICE_ATOL_UUID_MAX]) {
        switch (a->kind) {
        case ATOL_KIND_RECEIPT:
                return device_atol_receipt_uuid(a->receipt_id, k, ret);
        case ATOL_KIND_OPEN_SHIFT:
                return device_atol_shift_uuid("open-shift", a->fn_number, a->shift, k, ret);
        case ATOL_KIND_CLOSE_SHIFT:
                return device_atol_shift_uuid("close-shift", a->fn_number, a->shift, k, ret);
        }
        return -EINVAL;
}

/* ---- posting a fiscal request ---- */

static void post_finish_not_made(Atol *a) {
        /* The request made nothing: the next attempt is a new request. */
        atol_note_attempts(a, a->attempt + 1);
        if (a->kind == ATOL_KIND_OPEN_SHIFT && a->fail_code == 83) { /* DENIED_IN_OPENED_SHIFT */
                a->result.report = (DeviceReport){ .type = DEVICE_REPORT_OPEN,
                                                   .shift_open = true,
                                                   .shift_number = a->shift,
                                                   .last_fiscal_document = a->last_fd };
                atol_fail(a, -EALREADY, DEVICE_FAULT_NONE, NULL);
                return;
        }
        if (a->kind == ATOL_KIND_CLOSE_SHIFT && a->fail_code == 73) { /* DENIED_IN_CLOSED_SHIFT */
                a->result.report = (DeviceReport){ .type = DEVICE_REPORT_Z,
                                                   .shift_number = a->shift,
                                                   .last_fiscal_document = a->last_fd };
                atol_fail(a, -EALREADY, DEVICE_FAULT_NONE, NULL);
                return;
        }
        atol_fail_task(a, a->fail_code, a->fail_message);
}

static void post_on_reconciled(Atol *a, AtolVerdict v) {
        switch (v) {
        case ATOL_MADE:
                atol_made(a, NULL, a->found_tlv, 0);
                break;
        case ATOL_NOT_MADE:
                post_finish_not_made(a);
                break;
        default:
                atol_fail_fault(a, DEVICE_FAULT_TIMEOUT_UNKNOWN, a->fail_message);
        }
}

static void post_on_cancelled(Atol *a, AtolReply *r) {
        if (r->outcome == ATOL_REPLY_RESULTS) {
                /* It never started and never will: nothing was made. */
                atol_note_attempts(a, a->attempt + 1);
                atol_fail_fault(a, DEVICE_FAULT_TIMEOUT_BEFORE,
                                "the web server's queue did not reach the request");
        } else
                atol_fail_fault(a, DEVICE_FAULT_TIMEOUT_UNKNOWN, NULL);
}

static void post_on_reply(Atol *a, AtolReply *r) {
        const char *desc;
        uint32_t before;
        bool final;
        AtolVerdict v;

        switch (r->outcome) {
        case ATOL_REPLY_UNKNOWN_UUID:
                if (a->accepted) {
                        /* Taken (201), then unknown: the server lost its record; the register decides later.
                         */
                        atol_fail_fault(a, DEVICE_FAULT_TIMEOUT_UNKNOWN,
                                        "the web server lost the request it took");
                        return;
                }
                /* Sent, the answer lost, and the server has no such request: it never took it. */
                atol_fail_fault(a, DEVICE_FAULT_TIMEOUT_BEFORE, "the web server did not take the request");
                return;
        case ATOL_REPLY_FAILED:
                if (r->sent)
                        atol_fail_fault(a, DEVICE_FAULT_TIMEOUT_UNKNOWN,
                                        "no answer from the ATOL web server");
                else
                        atol_fail_http(a, r);
                return;
        case ATOL_REPLY_REFUSED:
                if (r->http_status == 400) {
                        /* A request the server cannot read or take (more than one fiscal task, bad JSON
                         * [AWS; the 1C client's message for 400]): this document, for good. */
                        char m[128];

                        snprintf(m, sizeof m, "%s",
                                 isempty(r->message) ? "the web server refused the request" : r->message);
                        atol_fail(a, -EINVAL, DEVICE_FAULT_REJECTED, m);
                } else
                        atol_fail_http(a, r);
                return;
        case ATOL_REPLY_RESULTS:
                break;
        }

        v = judge(r->results, &before, &a->fail_code, &desc, &final);
        atol_copy_text(a->fail_message, sizeof a->fail_message, desc);
        if (!final) {
                /* The budget is spent with the request still queued or running. One that has not started
                 * is withdrawn (then nothing was made for sure); one that runs or is blocked may make it. */
                if (r->all_wait) {
                        char uuid[DEVICE_ATOL_UUID_MAX];

                        strcpy(uuid, a->uuid);
                        atol_cancel(a, uuid, post_on_cancelled);
                } else
                        atol_fail_fault(a, DEVICE_FAULT_TIMEOUT_UNKNOWN,
                                        "the register did not finish in time");
                return;
        }
        switch (v) {
        case ATOL_MADE:
                atol_made(a, atol_task_result(r->results, json_object_array_length(r->results) - 1), NULL,
                          before);
                break;
        case ATOL_NOT_MADE:
                post_finish_not_made(a);
                break;
        default:
                reconcile(a, before, post_on_reconciled);
        }
}

static void post_fiscal(Atol *a) {
        _cleanup_free_ char *tasks = NULL;
        char uuid[DEVICE_ATOL_UUID_MAX];
        int r;

        r = slot_uuid(a, a->attempt, uuid);
        if (r < 0 || asprintf(&tasks, "[{\"type\":\"getFnStatus\"},%s]", a->task) < 0) {
                atol_fail(a, r < 0 ? r : -ENOMEM, DEVICE_FAULT_ERROR, NULL);
                return;
        }
        a->maybe_made = true;
        atol_submit(a, uuid, tasks, post_on_reply);
}

/* ---- walking the requests an operation may have made before ---- */

/* The walk ends: no request of ours made the document, and `attempt` is the first unused uuid. */
static void walk_free(Atol *a) {
        atol_note_attempts(a, a->attempt);
        if (a->lookup_only) {
                atol_finish(a); /* the caller prepared its answer */
                return;
        }
        if (a->op == DEVICE_OP_FIND) {
                /* The web server has no request of ours that made it, and every earlier one certainly made
                 * nothing: not made. */
                atol_fail(a, -ENOENT, DEVICE_FAULT_NONE, NULL);
                return;
        }
        post_fiscal(a);
}

static void walk_undecided(Atol *a, DeviceFault fault, const char *message) {
        if (a->lookup_only) {
                atol_finish(a);
                return;
        }
        if (fault == DEVICE_FAULT_NOT_CONNECTED && a->walk_unasked) {
                /* The web server did not answer at all: this operation sent nothing and made nothing. */
                atol_fail_fault(a, fault, message);
                return;
        }
        /* An earlier request's fate is unknown: never a new one on a guess. PRINT hands the question to
         * FIND. */
        if (a->op == DEVICE_OP_FIND)
                atol_fail_fault(a, fault, message);
        else
                atol_fail_fault(a, DEVICE_FAULT_TIMEOUT_UNKNOWN, message);
}

static void walk_on_reconciled(Atol *a, AtolVerdict v) {
        switch (v) {
        case ATOL_MADE:
                if (a->lookup_only) {
                        json_object *tlv = a->found_tlv;
                        (void) report_from(a, NULL, tlv, &a->result.report);
                        atol_finish(a);
                } else
                        atol_made(a, NULL, a->found_tlv, 0);
                break;
        case ATOL_NOT_MADE:
                walk_free(a);
                break;
        default:
                walk_undecided(a, DEVICE_FAULT_NOT_CONNECTED,
                               "cannot tell whether the register made the document");
        }
}

/* The last request of the walk, decided. */
static void walk_judge(Atol *a, json_object *results) {
        const char *desc;
        uint32_t before;
        bool final;
        int code;
        AtolVerdict v = judge(results, &before, &code, &desc, &final);

        if (!final) {
                walk_undecided(a, DEVICE_FAULT_NOT_CONNECTED,
                               "an earlier request is still at the ATOL web server");
                return;
        }
        switch (v) {
        case ATOL_MADE:
                if (a->lookup_only) {
                        (void) report_from(
                                a,
                                atol_get_key(
                                        atol_task_result(results, json_object_array_length(results) - 1),
                                        "fiscalParams"),
                                NULL, &a->result.report);
                        atol_finish(a);
                } else
                        atol_made(a, atol_task_result(results, json_object_array_length(results) - 1), NULL,
                                  before);
                break;
        case ATOL_NOT_MADE:
                walk_free(a);
                break;
        default:
                reconcile(a, before, walk_on_reconciled);
        }
}

static void walk_on_last(Atol *a, AtolReply *r) {
        if (r->outcome != ATOL_REPLY_RESULTS) {
                walk_undecided(a, DEVICE_FAULT_NOT_CONNECTED, "cannot ask the ATOL web server");
                return;
        }
        walk_judge(a, r->results);
}

static void walk_next(Atol *a);

static void walk_on_slot(Atol *a, AtolReply *r) {
        char uuid[DEVICE_ATOL_UUID_MAX];
        const char *desc;
        uint32_t before;
        bool final;
        int code;

        switch (r->outcome) {
        case ATOL_REPLY_UNKNOWN_UUID:
                if (!a->last_results) {
                        /* No request at all, or only earlier ones known to have made nothing. */
                        walk_free(a);
                        return;
                }
                /* The previous one is the last request of ours: only it can be undecided, because a new
                 * request is made only after the previous one certainly made nothing. */
                (void) judge(a->last_results, &before, &code, &desc, &final);
                if (final) {
                        json_object *last = json_object_get(a->last_results);

                        walk_judge(a, last);
                        json_object_put(last);
                        return;
                }
                a->attempt--;
                if (slot_uuid(a, a->attempt, uuid) < 0) {
                        walk_undecided(a, DEVICE_FAULT_ERROR, NULL);
                        return;
                }
                a->attempt++;
                atol_fetch(a, uuid, true, walk_on_last);
                return;
        case ATOL_REPLY_RESULTS:
                /* A request that made the document ends the walk whatever follows it. */
                if (atol_status(json_object_array_get_idx(r->results, json_object_array_length(r->results) -
                                                                              1)) == ATOL_STATUS_READY) {
                        walk_judge(a, r->results);
                        return;
                }
                if (a->last_results)
                        json_object_put(a->last_results);
                a->last_results = json_object_get(r->results);
                a->attempt++;
                walk_next(a);
                return;
        case ATOL_REPLY_FAILED:
                a->walk_unasked = true;
                walk_undecided(a, DEVICE_FAULT_NOT_CONNECTED, "cannot ask the ATOL web server");
                return;
        case ATOL_REPLY_REFUSED:
                if (a->lookup_only)
                        atol_finish(a);
                else
                        atol_fail_http(a, r);
                return;
        }
}

static void walk_next(Atol *a) {
        char uuid[DEVICE_ATOL_UUID_MAX];
        int r;

        if (a->attempt >= DEVICE_ATOL_MAX_ATTEMPTS) {
                if (a->lookup_only)
                        atol_finish(a);
                else
                        atol_fail(a, -E2BIG, DEVICE_FAULT_ERROR,
                                  "too many failed attempts for one document");
                return;
        }
        r = slot_uuid(a, a->attempt, uuid);
        if (r < 0) {
                atol_fail(a, r, DEVICE_FAULT_ERROR, NULL);
                return;
        }
        atol_fetch(a, uuid, false, walk_on_slot);
}

/* Walks the requests this document may have had, from the first one not known to have made nothing. */
void atol_walk_start(Atol *a, unsigned from) {
        a->attempt = from;
        a->walk_unasked = false;
        if (a->last_results) {
                json_object_put(a->last_results);
                a->last_results = NULL;
        }
        walk_next(a);
}
