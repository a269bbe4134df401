/* SPDX-License-Identifier: MIT */
/* Reading ATOL's answers: its error codes as our faults, a task's status and result, its dates, fiscal
 * signs and identifiers, the QR string, and the register's state from a request of queries (shift, totals,
 * fiscal drive, OFD exchange). Pure functions; sources as cited at the top of device-atol.c. */

#include <limits.h>
#include <time.h>

#include "device-atol-internal.h"
#include "string-table.h"

/* ---- ATOL's error codes ---- */

typedef struct AtolError {
        int code;
        DeviceFault fault;
        bool uncertain;
} AtolError;

/* LIBFPTR_ERROR_* [ERR]. "uncertain": the task may have made its document all the same, so the register is
 * asked. These are the codes on which ATOL's web server itself stops its queue and later compares the fiscal
 * drive's last document number with the one noted before the task [AWS DriverWorker.isNeedBlock: 2, 3, 4,
 * 15, 115-122, 124, 133-138, 141, 142, 159], the connection and interruption codes a Web Requests clone
 * blocks on as well (1, 241, 166, 177), and the printer's own (44-47, 114, 150), because a printer can fail
 * after the fiscal drive committed the document (assumption; ATOL's answer for that case is a ready task
 * with warnings.notPrinted [KSL WarningFlags], but asking costs one query). Every code not listed is
 * uncertain. */
static const AtolError atol_errors[] = {
        { 1, DEVICE_FAULT_NOT_CONNECTED, true },   /* CONNECTION_DISABLED */
        { 2, DEVICE_FAULT_NOT_CONNECTED, true },   /* NO_CONNECTION */
        { 3, DEVICE_FAULT_NOT_CONNECTED, true },   /* PORT_BUSY */
        { 4, DEVICE_FAULT_NOT_CONNECTED, true },   /* PORT_NOT_AVAILABLE */
        { 8, DEVICE_FAULT_REJECTED, false },       /* NO_REQUIRED_PARAM */
        { 13, DEVICE_FAULT_REJECTED, false },      /* INVALID_PARAM */
        { 16, DEVICE_FAULT_REJECTED, false },      /* INVALID_SUM */
        { 17, DEVICE_FAULT_REJECTED, false },      /* INVALID_QUANTITY */
        { 44, DEVICE_FAULT_PAPER_OUT, true },      /* NO_PAPER */
        { 45, DEVICE_FAULT_COVER_OPEN, true },     /* COVER_OPENED */
        { 46, DEVICE_FAULT_ERROR, true },          /* PRINTER_FAULT */
        { 47, DEVICE_FAULT_ERROR, true },          /* MECHANICAL_FAULT */
        { 52, DEVICE_FAULT_REJECTED, false },      /* NONCACH_PAYMENTS_TOO_MUCH */
        { 53, DEVICE_FAULT_REJECTED, false },      /* RETURN_DENIED */
        { 54, DEVICE_FAULT_REJECTED, false },      /* PAYMENTS_OVERFLOW */
        { 55, DEVICE_FAULT_ERROR, false },         /* BUSY */
        { 60, DEVICE_FAULT_REJECTED, false },      /* INVALID_PAYMENT_TYPE */
        { 66, DEVICE_FAULT_REJECTED, false },      /* NOT_FULLY_PAID */
        { 68, DEVICE_FAULT_SHIFT_EXPIRED, false }, /* SHIFT_EXPIRED */
        { 70, DEVICE_FAULT_FN_FULL, false },       /* FISCAL_MEMORY_OVERFLOW */
        { 73, DEVICE_FAULT_ERROR, false },         /* DENIED_IN_CLOSED_SHIFT */
        { 79, DEVICE_FAULT_REJECTED, false },      /* CHANGE_CALCULATION */
        { 80, DEVICE_FAULT_REJECTED, false },      /* NO_CASH */
        { 81, DEVICE_FAULT_ERROR, false },         /* DENIED_IN_CLOSED_RECEIPT */
        { 82, DEVICE_FAULT_ERROR, false },         /* DENIED_IN_OPENED_RECEIPT: another document is open */
        { 83, DEVICE_FAULT_ERROR, false },         /* DENIED_IN_OPENED_SHIFT */
        { 98, DEVICE_FAULT_REJECTED, false },      /* CLOSE_RECEIPT_DENIED */
        { 114, DEVICE_FAULT_ERROR, true },         /* PRINTER_OVERHEAT */
        { 120, DEVICE_FAULT_FN_FULL, true },       /* FN_EXPIRED */
        { 121, DEVICE_FAULT_FN_FULL, true },       /* FN_OVERFLOW */
        { 136, DEVICE_FAULT_FN_FULL, true },       /* FN_CRYPTO_HAS_EXPIRED */
        { 137, DEVICE_FAULT_FN_FULL, true },       /* FN_RESOURCE_HAS_EXPIRED */
        { 141, DEVICE_FAULT_SHIFT_EXPIRED, true }, /* FN_SHIFT_EXPIRED */
        { 143, DEVICE_FAULT_REJECTED, false },     /* INVALID_TAXATION_TYPE */
        { 144, DEVICE_FAULT_REJECTED, false },     /* INVALID_TAX_TYPE */
        { 150, DEVICE_FAULT_ERROR, true },         /* CUTTER_FAULT */
        { 172, DEVICE_FAULT_ERROR, false },        /* NO_ACTIVE_OPERATOR */
        { 195, DEVICE_FAULT_REJECTED, false },     /* FISCAL_PROPERTIES_COMBINATION */
        { 205, DEVICE_FAULT_REJECTED, false },     /* TOTAL_REQUIRED */
        { 216, DEVICE_FAULT_REJECTED, false },     /* INVALID_FISCAL_PROPERTY_VALUE_1214 */
        { 217, DEVICE_FAULT_REJECTED, false },     /* INVALID_FISCAL_PROPERTY_VALUE_1212 */
        { 219, DEVICE_FAULT_REJECTED, false },     /* VAT18_VAT20_IN_RECEIPT */
        { 227, DEVICE_FAULT_REJECTED, false },     /* INVALID_TOTAL */
        { 241, DEVICE_FAULT_NOT_CONNECTED, true }, /* CONNECTION_LOST */
        { 243, DEVICE_FAULT_REJECTED, false },     /* INVALID_TAX_SUM */
        { 249, DEVICE_FAULT_ERROR, false },        /* DOCUMENT_CANCELED */
        { 412, DEVICE_FAULT_REJECTED, false },     /* INVALID_MEASUREMENT_UNIT */
        { 413, DEVICE_FAULT_REJECTED, false },     /* OPERATION_DENIED_IN_CURRENT_FFD */
        { 501, DEVICE_FAULT_REJECTED, false }, /* RECEIPT_PARSE_ERROR: the web server cannot read the task */
        { 502, DEVICE_FAULT_ERROR, false },    /* INTERRUPTED_BY_PREVIOUS_ERRORS */
        { 503, DEVICE_FAULT_ERROR, false },    /* DRIVER_SCRIPT_ERROR */
        { 504, DEVICE_FAULT_ERROR, false },    /* VALIDATE_FUNC_NOT_FOUND */
        { 505, DEVICE_FAULT_ERROR, false },    /* WEB_FAIL */
};

DeviceFault device_atol_error_fault(int code, bool *ret_uncertain) {
        bool uncertain = true;
        DeviceFault f = DEVICE_FAULT_ERROR;

        for (size_t i = 0; i < ELEMENTSOF(atol_errors); i++)
                if (atol_errors[i].code == code) {
                        f = atol_errors[i].fault;
                        uncertain = atol_errors[i].uncertain;
                        break;
                }
        /* The marking-code refusals of FFD 1.2 (400..426 [ERR]) are about the document itself. */
        if (code >= 400 && code <= 426 && code != 411) {
                f = DEVICE_FAULT_REJECTED;
                uncertain = false;
        }
        if (ret_uncertain)
                *ret_uncertain = uncertain;
        return f;
}

/* ---- reading the web server's answers ---- */

/* UNKNOWN has no name: it is what any other text reads as. */
static const char *const atol_status_table[] = {
        [ATOL_STATUS_WAIT] = "wait",
        [ATOL_STATUS_IN_PROGRESS] = "inProgress",
        [ATOL_STATUS_READY] = "ready",
        [ATOL_STATUS_ERROR] = "error",
        [ATOL_STATUS_INTERRUPTED] = "interrupted",
        [ATOL_STATUS_BLOCKED] = "blocked",
        [ATOL_STATUS_CANCELED] = "canceled",
};

DEFINE_STRING_TABLE_LOOKUP_FROM_STRING(atol_status, AtolStatus, static);

AtolStatus atol_status(json_object *e) {
        AtolStatus s = atol_status_from_string(atol_get_string(e, "status"));

        return s < 0 ? ATOL_STATUS_UNKNOWN : s;
}

bool atol_status_final(AtolStatus s) {
        return IN_SET(s, ATOL_STATUS_READY, ATOL_STATUS_ERROR, ATOL_STATUS_INTERRUPTED,
                      ATOL_STATUS_CANCELED);
}

/* The error of a task: /api/v2 answers {"error": {"code", "description"}}, the older /requests
 * {"errorCode", "errorDescription"} [AWS Result.toJson; the 1C client and a PHP client read both]. */
int atol_error(json_object *e, const char **ret_description) {
        json_object *err = atol_get_key(e, "error");
        int64_t code = 0;

        if (err && json_object_is_type(err, json_type_object)) {
                (void) atol_get_int64(err, "code", &code);
                *ret_description = atol_get_string(err, "description");
        } else {
                (void) atol_get_int64(e, "errorCode", &code);
                *ret_description = atol_get_string(e, "errorDescription");
        }
        return code < 0 || code > INT_MAX ? INT_MAX : (int) code;
}

json_object *atol_task_result(json_object *results, size_t i) {
        json_object *e = json_object_array_get_idx(results, i);

        return atol_status(e) == ATOL_STATUS_READY ? atol_get_key(e, "result") : NULL;
}

/* "2018-03-06T13:52:00+03:00" (fiscalDocumentDateTime: minute precision, the register's offset [KSL, the
 * web server MOCK examples]) into CLOCK_REALTIME usec and the register's wall clock "YYYYMMDDTHHMM" as the
 * FNS QR string shows it. Seconds, fractions and "Z" are accepted; without an offset the time is taken as
 * UTC (assumption). A date alone ("2025-01-31", "2025.01.31") is midnight. */
int atol_datetime(const char *s, usec_t *ret, char *local) {
        int y, mo, d, h = 0, mi = 0, sec = 0, n = 0, off = 0;
        struct tm tm = {};
        const char *p;
        time_t t;

        if (!s)
                return -EINVAL;
        if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 &&
            sscanf(s, "%4d.%2d.%2d%n", &y, &mo, &d, &n) != 3)
                return -EINVAL;
        p = s + n;
        if (*p == 'T' || *p == ' ') {
                n = 0;
                if (sscanf(p + 1, "%2d:%2d%n", &h, &mi, &n) != 2)
                        return -EINVAL;
                p += 1 + n;
                if (*p == ':') {
                        n = 0;
                        if (sscanf(p + 1, "%2d%n", &sec, &n) != 1)
                                return -EINVAL;
                        p += 1 + n;
                }
                if (*p == '.')
                        for (p++; *p >= '0' && *p <= '9'; p++)
                                ;
                if (*p == 'Z')
                        p++;
                else if (*p == '+' || *p == '-') {
                        int oh, om = 0;

                        n = 0;
                        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) != 2 &&
                            sscanf(p + 1, "%2d%2d%n", &oh, &om, &n) != 2)
                                return -EINVAL;
                        off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
                        p += 1 + n;
                }
        }
        if (*p != 0 || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
                return -EINVAL;

        tm = (struct tm){ .tm_year = y - 1900,
                          .tm_mon = mo - 1,
                          .tm_mday = d,
                          .tm_hour = h,
                          .tm_min = mi,
                          .tm_sec = sec };
        t = timegm(&tm);
        if (t == (time_t) -1 || t - off < 0)
                return -EINVAL;
        *ret = (usec_t) (t - off) * USEC_PER_SEC;
        if (local)
                snprintf(local, ATOL_LOCAL_MAX, "%04d%02d%02dT%02d%02d", y, mo, d, h, mi);
        return 0;
}

/* A fiscal sign as ATOL gives it: a string with leading zeros ("0024109209") in fiscalParams [KSL, MOCK], a
 * number or a string in documentTLV; FFD's is at most 10 digits (54-FZ art. 4.1), we keep all 10. */
int atol_fiscal_sign(json_object *v, char ret[static DEVICE_FISCAL_SIGN_LEN + 1]) {
        const char *s;
        size_t n;

        if (!v)
                return -ENODATA;
        if (json_object_is_type(v, json_type_int))
                s = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
        else if (json_object_is_type(v, json_type_string))
                s = json_object_get_string(v);
        else
                return -EINVAL;
        n = strlen(s);
        if (n == 0 || n > DEVICE_FISCAL_SIGN_LEN || strspn(s, "0123456789") != n)
                return -EINVAL;
        memset(ret, '0', DEVICE_FISCAL_SIGN_LEN - n);
        memcpy(ret + DEVICE_FISCAL_SIGN_LEN - n, s, n + 1);
        return 0;
}

int atol_copy_id(char *buf, size_t l, json_object *v) {
        const char *s;

        if (!v)
                return -ENODATA;
        if (json_object_is_type(v, json_type_int))
                s = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
        else if (json_object_is_type(v, json_type_string))
                s = json_object_get_string(v);
        else
                return -EINVAL;
        if (strlen(s) >= l)
                return -EINVAL;
        strcpy(buf, s);
        return 0;
}

/* The FNS QR string: t (the register's wall clock), s (total), fn, i (FD), fp (sign), n (tag 1054). */
void atol_qr(DeviceDocument *d, const char *local) {
        snprintf(d->qr, sizeof d->qr, "t=%s&s=%s&fn=%s&i=%" PRIu32 "&fp=%s&n=%u", local,
                 MONEY_FORMAT(d->total, MONEY_SCALE_KOPECKS), d->fn_number, d->fiscal_document_number,
                 d->fiscal_sign, receipt_type_to_ffd(d->receipt_type));
}

/* getShiftTotals: shiftTotals.receipts.{sell, sellReturn, buy, buyReturn}.{count, sum, payments{cash,
 * electronically, prepaid, credit, other}} [KSL ShiftTotals, ReceiptsStat, PaymentsShiftTotals; NAR
 * shift-totals.ts]. ATOL counts corrections within these four (assumption: they are not told apart). */
static void read_totals(json_object *res, DeviceTotals *ret) {
        static const struct {
                const char *key;
                ReceiptType type;
        } kinds[] = {
                { "sell", RECEIPT_TYPE_SALE },
                { "sellReturn", RECEIPT_TYPE_REFUND },
                { "buy", RECEIPT_TYPE_PURCHASE },
                { "buyReturn", RECEIPT_TYPE_PURCHASE_REFUND },
        };
        static const char *const forms[_DEVICE_PAYMENT_MAX] = {
                [DEVICE_PAYMENT_CASH] = "cash",          [DEVICE_PAYMENT_ELECTRONIC] = "electronically",
                [DEVICE_PAYMENT_PREPAYMENT] = "prepaid", [DEVICE_PAYMENT_CREDIT] = "credit",
                [DEVICE_PAYMENT_OTHER] = "other",
        };
        json_object *receipts = atol_get_key(atol_get_key(res, "shiftTotals"), "receipts");
        DeviceTotals t = {};

        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                json_object *k = atol_get_key(receipts, kinds[i].key), *p = atol_get_key(k, "payments");
                DeviceTypeTotals *tt = t.by_type + kinds[i].type;

                (void) atol_get_u32(k, "count", &tt->count);
                (void) atol_money(atol_get_key(k, "sum"), &tt->total);
                for (size_t f = 0; f < _DEVICE_PAYMENT_MAX; f++)
                        (void) atol_money(atol_get_key(p, forms[f]), &tt->payments[f]);
        }
        *ret = t;
}
/* One query task's result into the state. */
void atol_read_query(const char *type, json_object *res, AtolState *st) {
        DeviceStatus *s = &st->status;
        json_object *o, *w;
        const char *v;
        bool b;

        if (streq(type, "getShiftStatus")) {
                /* shiftStatus {state closed|opened|expired, number, expiredTime} [KSL ShiftStatus; NAR;
                 * the FAD client reads state]. */
                o = atol_get_key(res, "shiftStatus");
                v = atol_get_string(o, "state");
                if (!v)
                        return;
                st->have_shift = true;
                s->shift_open = streq(v, "opened") || streq(v, "expired");
                st->shift_expired = streq(v, "expired");
                (void) atol_get_u32(o, "number", &s->shift_number);
                /* The shift's opening is not reported; its expiry is, 24 hours later (54-FZ art. 4.3):
                 * the opening is derived from it (assumption). */
                if (s->shift_open) {
                        usec_t t;

                        if (atol_datetime(atol_get_string(o, "expiredTime"), &t, NULL) >= 0 &&
                            t > DEVICE_SHIFT_MAX_USEC)
                                s->shift_open_usec = t - DEVICE_SHIFT_MAX_USEC;
                }
        } else if (streq(type, "getFnStatus")) {
                /* fnStatus.fiscalDocumentNumber: the last document [NAR fn-status.ts; OFDC
                 * get_last_fd_number]. */
                if (atol_get_u32(atol_get_key(res, "fnStatus"), "fiscalDocumentNumber",
                                 &s->last_fiscal_document))
                        st->have_fd = true;
        } else if (streq(type, "getDeviceStatus")) {
                /* deviceStatus {paperPresent, coverOpened, shift, ...} [KSL KKTStatus; NAR device-status.ts;
                 * the 1C client reads paperPresent]. */
                o = atol_get_key(res, "deviceStatus");
                if (atol_get_bool(o, "paperPresent", &b))
                        st->paper_out = !b;
                if (atol_get_bool(o, "coverOpened", &b))
                        st->cover_open = b;
                v = atol_get_string(o, "shift");
                if (v && streq(v, "expired"))
                        st->shift_expired = true;
        } else if (streq(type, "getShiftTotals")) {
                read_totals(res, &s->shift_totals);
                st->have_totals = true;
        } else if (streq(type, "getFnInfo")) {
                /* fnInfo {serial, validityDate, livePhase, warnings{memoryOverflow, resourceExhausted,
                 * needReplacement, ...}} [KSL FnInfo, FnLivePhaseType, FnWarning; NAR fn-info.ts]. */
                o = atol_get_key(res, "fnInfo");
                atol_copy_text(s->fn_number, sizeof s->fn_number, atol_get_string(o, "serial"));
                (void) atol_datetime(atol_get_string(o, "validityDate"), &s->fn_valid_until, NULL);
                v = atol_get_string(o, "livePhase");
                w = atol_get_key(o, "warnings");
                if ((v && (streq(v, "postFiscalMode") || streq(v, "accessArchive"))) ||
                    (atol_get_bool(w, "memoryOverflow", &b) && b))
                        st->fn_full = true;
        } else if (streq(type, "ofdExchangeStatus")) {
                /* status {notSentCount, notSentFirstDocNumber, notSentFirstDocDateTime} [KSL ExchangeStatus;
                 * NAR ofd-status.ts]. */
                o = atol_get_key(res, "status");
                (void) atol_get_u32(o, "notSentCount", &st->ofd.unsent);
                (void) atol_get_u32(o, "notSentFirstDocNumber", &st->ofd.first_unsent);
                if (st->ofd.unsent > 0)
                        (void) atol_datetime(atol_get_string(o, "notSentFirstDocDateTime"),
                                             &st->ofd.first_unsent_usec, NULL);
                s->ofd = st->ofd;
        } else if (streq(type, "getDeviceInfo")) {
                /* deviceInfo {model, modelName, serial, firmwareVersion, ...} [KSL KKTInfo]. */
                o = atol_get_key(res, "deviceInfo");
                atol_copy_text(s->model, sizeof s->model, atol_get_string(o, "modelName"));
                atol_copy_text(s->serial, sizeof s->serial, atol_get_string(o, "serial"));
        } else if (streq(type, "getRegistrationInfo")) {
                /* organization {vatin, taxationTypes[]}, device {registrationNumber} [KSL
                 * GetKKTRegistrationInfoResult, OrganizationParams, KKTParams]. */
                o = atol_get_key(res, "organization");
                atol_copy_text(s->inn, sizeof s->inn, atol_get_string(o, "vatin"));
                w = atol_get_key(o, "taxationTypes");
                if (w && json_object_is_type(w, json_type_array))
                        for (size_t i = 0; i < json_object_array_length(w); i++) {
                                json_object *e = json_object_array_get_idx(w, i);

                                if (json_object_is_type(e, json_type_string))
                                        s->taxations |= atol_taxation_bit(json_object_get_string(e));
                        }
                atol_copy_text(s->registration_number, sizeof s->registration_number,
                               atol_get_string(atol_get_key(res, "device"), "registrationNumber"));
        }
}

/* The standing condition, worst first. */
DeviceFault atol_state_condition(const AtolState *st) {
        usec_t n = now(CLOCK_REALTIME);

        if (st->paper_out)
                return DEVICE_FAULT_PAPER_OUT;
        if (st->cover_open)
                return DEVICE_FAULT_COVER_OPEN;
        if (st->fn_full || (st->status.fn_valid_until > 0 && n >= st->status.fn_valid_until))
                return DEVICE_FAULT_FN_FULL;
        /* The fiscal drive stops signing when a document waited 30 days for the OFD (54-FZ art. 4.1, as
         * the emulator models it); the register reports the oldest unsent document's date. */
        if (st->ofd.unsent > 0 && st->ofd.first_unsent_usec > 0 &&
            usec_sub_unsigned(n, st->ofd.first_unsent_usec) >= ATOL_OFD_BLOCK_AFTER)
                return DEVICE_FAULT_OFD_BLOCKED;
        if (st->shift_expired)
                return DEVICE_FAULT_SHIFT_EXPIRED;
        return DEVICE_FAULT_NONE;
}
