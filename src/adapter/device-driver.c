/* SPDX-License-Identifier: MIT */
/* The driver interface's values: the names of faults, states, payment forms, reports and operations, a
 * shift's totals and their JSON, a document's JSON, and the copy of the options a driver is created with. */

#include "device-driver.h"
#include "device-json.h"
#include "json-util.h"
#include "memory-util.h"
#include "money.h"
#include "string-table.h"

/* ---- names ---- */

static const char *const device_fault_table[_DEVICE_FAULT_MAX] = {
        [DEVICE_FAULT_NONE] = "none",
        [DEVICE_FAULT_PAPER_OUT] = "paper-out",
        [DEVICE_FAULT_TIMEOUT_BEFORE] = "timeout-before",
        [DEVICE_FAULT_TIMEOUT_UNKNOWN] = "timeout-unknown",
        [DEVICE_FAULT_FN_FULL] = "fn-full",
        [DEVICE_FAULT_SHIFT_EXPIRED] = "shift-expired",
        [DEVICE_FAULT_NOT_CONNECTED] = "not-connected",
        [DEVICE_FAULT_REJECTED] = "rejected",
        [DEVICE_FAULT_ERROR] = "error",
        [DEVICE_FAULT_COVER_OPEN] = "cover-open",
        [DEVICE_FAULT_OFD_BLOCKED] = "ofd-blocked",
};

static const char *const device_fault_text_table[_DEVICE_FAULT_MAX] = {
        [DEVICE_FAULT_NONE] = "no fault",
        [DEVICE_FAULT_PAPER_OUT] = "paper out",
        [DEVICE_FAULT_TIMEOUT_BEFORE] = "timed out before the document was made",
        [DEVICE_FAULT_TIMEOUT_UNKNOWN] = "timed out after the document was sent, outcome unknown",
        [DEVICE_FAULT_FN_FULL] = "fiscal drive (FN) full or expired",
        [DEVICE_FAULT_SHIFT_EXPIRED] = "shift open for more than 24 hours, a Z report is needed",
        [DEVICE_FAULT_NOT_CONNECTED] = "not connected",
        [DEVICE_FAULT_REJECTED] = "document rejected by the register",
        [DEVICE_FAULT_ERROR] = "register error",
        [DEVICE_FAULT_COVER_OPEN] = "cover open",
        [DEVICE_FAULT_OFD_BLOCKED] = "documents unsent to the OFD for 30 days, the fiscal drive is blocked",
};

static const char *const device_state_table[_DEVICE_STATE_MAX] = {
        [DEVICE_STATE_READY] = "ready",
        [DEVICE_STATE_PRINTING] = "printing",
        [DEVICE_STATE_FAULT] = "fault",
        [DEVICE_STATE_UNKNOWN] = "unknown",
};

static const char *const device_payment_form_table[_DEVICE_PAYMENT_MAX] = {
        [DEVICE_PAYMENT_CASH] = "cash",
        [DEVICE_PAYMENT_ELECTRONIC] = "card",
        [DEVICE_PAYMENT_PREPAYMENT] = "prepayment",
        [DEVICE_PAYMENT_CREDIT] = "credit",
        [DEVICE_PAYMENT_OTHER] = "other",
};

static const char *const device_report_type_table[_DEVICE_REPORT_MAX] = {
        [DEVICE_REPORT_X] = "x",
        [DEVICE_REPORT_Z] = "z",
        [DEVICE_REPORT_OPEN] = "open",
};

static const char *const device_operation_table[_DEVICE_OP_MAX] = {
        [DEVICE_OP_OPEN] = "open",
        [DEVICE_OP_STATUS] = "status",
        [DEVICE_OP_PRINT] = "print",
        [DEVICE_OP_FIND] = "find",
        [DEVICE_OP_OPEN_SHIFT] = "open-shift",
        [DEVICE_OP_REPORT_X] = "report-x",
        [DEVICE_OP_CLOSE_SHIFT] = "close-shift",
        [DEVICE_OP_DEBUG] = "debug",
};

DEFINE_STRING_TABLE_LOOKUP(device_fault, DeviceFault);
DEFINE_STRING_TABLE_LOOKUP(device_state, DeviceState);
DEFINE_STRING_TABLE_LOOKUP(device_payment_form, DevicePaymentForm);
DEFINE_STRING_TABLE_LOOKUP(device_report_type, DeviceReportType);
DEFINE_STRING_TABLE_LOOKUP(device_operation, DeviceOperation);

const char *device_fault_to_text(DeviceFault f) {
        return string_table_lookup_to_string(device_fault_text_table, ELEMENTSOF(device_fault_text_table),
                                             f);
}

int device_fault_to_errno(DeviceFault f) {
        switch (f) {
        case DEVICE_FAULT_PAPER_OUT:
                return -ENOMEDIUM;
        case DEVICE_FAULT_TIMEOUT_BEFORE:
        case DEVICE_FAULT_TIMEOUT_UNKNOWN:
                return -ETIMEDOUT;
        case DEVICE_FAULT_FN_FULL:
                return -ENOSPC;
        case DEVICE_FAULT_SHIFT_EXPIRED:
                return -ESTALE;
        case DEVICE_FAULT_NOT_CONNECTED:
                return -ENOTCONN;
        case DEVICE_FAULT_COVER_OPEN:
                return -EAGAIN;
        case DEVICE_FAULT_OFD_BLOCKED:
                return -EKEYEXPIRED;
        default:
                return -EIO;
        }
}

bool device_fault_is_permanent(DeviceFault f) {
        return f == DEVICE_FAULT_REJECTED;
}

/* ---- totals ---- */

uint32_t device_totals_receipts(const DeviceTotals *t) {
        uint32_t n = 0;

        for (size_t i = 0; i < _RECEIPT_TYPE_MAX; i++)
                n += t->by_type[i].count;
        return n;
}

int64_t device_totals_net(const DeviceTotals *t, DevicePaymentForm f) {
        int64_t n = 0;

        /* Income (sale, return of a purchase) brings money in; its returns and expenses take it out. */
        for (ReceiptType type = 0; type < _RECEIPT_TYPE_MAX; type++) {
                ReceiptType s = receipt_type_settlement(type);
                int64_t v = t->by_type[type].payments[f];

                n += IN_SET(s, RECEIPT_TYPE_SALE, RECEIPT_TYPE_PURCHASE_REFUND) ? v : -v;
        }
        return n;
}

int device_totals_add(DeviceTotals *t, ReceiptType type, int64_t total,
                      const int64_t payments[static _DEVICE_PAYMENT_MAX]) {
        DeviceTypeTotals n;

        assert(type >= 0 && type < _RECEIPT_TYPE_MAX);

        n = t->by_type[type];
        if (n.count == UINT32_MAX || __builtin_add_overflow(n.total, total, &n.total))
                return -EOVERFLOW;
        for (size_t f = 0; f < _DEVICE_PAYMENT_MAX; f++)
                if (__builtin_add_overflow(n.payments[f], payments[f], &n.payments[f]))
                        return -EOVERFLOW;
        n.count++;
        t->by_type[type] = n;
        return 0;
}

/* ---- JSON ---- */

/* The prototype's names for our keys: its clients read these. */
static const struct {
        const char *ours, *prototype;
} prototype_aliases[] = {
        { "fiscal_document_number", "fiscal_doc_number" },
        { "datetime", "fiscal_datetime" },
        { "qr", "qr_code_data" },
        { "serial", "kkt_number" },
        { "registration_number", "rn_kkt" },
        { "document_number_in_shift", "receipt_number" },
};

int device_document_add_prototype_keys(json_object *doc) {
        json_object *v;
        int r;

        assert(doc);

        if (!json_object_is_type(doc, json_type_object))
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(prototype_aliases); i++) {
                if (!json_object_object_get_ex(doc, prototype_aliases[i].ours, &v) ||
                    json_object_object_get_ex(doc, prototype_aliases[i].prototype, NULL))
                        continue;
                /* The same value under both names; JSON null stays null. */
                if (json_object_object_add(doc, prototype_aliases[i].prototype, json_object_get(v)) < 0) {
                        json_object_put(v);
                        return -ENOMEM;
                }
        }
        /* The prototype's mock register named its OFD; ours knows none, and says so with an empty name
         * rather than a made-up one. */
        if (!json_object_object_get_ex(doc, "ofd_name", NULL) &&
            (r = json_add(doc, "ofd_name", json_object_new_string(""))) < 0)
                return r;
        /* "total" was a JSON number there: documents written before carry our decimal string, which becomes
         * the same text as a number token. */
        if (json_object_object_get_ex(doc, "total", &v) && json_object_is_type(v, json_type_string)) {
                int64_t kopecks;

                if (money_parse_decimal(json_object_get_string(v), MONEY_SCALE_KOPECKS, &kopecks) < 0)
                        return -EBADMSG;
                r = json_add(doc, "total",
                             json_number_from_decimal(MONEY_FORMAT(kopecks, MONEY_SCALE_KOPECKS)));
                if (r < 0)
                        return r;
        }
        return 0;
}

int device_document_to_json(const DeviceDocument *doc, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        const char *type;
        int r;

        assert(doc);
        assert(ret);

        type = receipt_type_to_string(doc->receipt_type);
        if (!type)
                return -EINVAL;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if ((r = json_add_string(o, "receipt_id", doc->receipt_id)) < 0 ||
            (r = json_add_int(o, "fiscal_document_number", doc->fiscal_document_number)) < 0 ||
            (r = json_add_string(o, "fiscal_sign", doc->fiscal_sign)) < 0 ||
            (r = json_add_string(o, "fn_number", doc->fn_number)) < 0 ||
            (r = json_add_int(o, "shift_number", doc->shift_number)) < 0 ||
            (r = json_add_int(o, "document_number_in_shift", doc->document_number_in_shift)) < 0 ||
            (r = json_add_string(o, "registration_number", doc->registration_number)) < 0 ||
            (r = json_add_string(o, "inn", doc->inn)) < 0 ||
            (r = json_add_string(o, "serial", doc->serial)) < 0 ||
            (r = json_add_time(o, "datetime", doc->datetime)) < 0 ||
            (r = json_add(o, "total",
                          json_number_from_decimal(MONEY_FORMAT(doc->total, MONEY_SCALE_KOPECKS)))) < 0)
                return r;
        if (doc->change > 0 && (r = json_add_money(o, "change", doc->change)) < 0)
                return r;
        if ((r = json_add_string(o, "receipt_type", type)) < 0 ||
            (r = json_add_string(o, "qr", doc->qr)) < 0)
                return r;
        r = device_document_add_prototype_keys(o);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

int device_totals_to_json(const DeviceTotals *t, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *types = NULL, *net = NULL;
        int r;

        o = json_object_new_object();
        types = json_object_new_object();
        net = json_object_new_object();
        if (!o || !types || !net)
                return -ENOMEM;

        for (ReceiptType type = 0; type < _RECEIPT_TYPE_MAX; type++) {
                const DeviceTypeTotals *tt = t->by_type + type;
                _cleanup_(json_object_putp) json_object *e = NULL, *p = NULL;

                e = json_object_new_object();
                p = json_object_new_object();
                if (!e || !p)
                        return -ENOMEM;
                for (DevicePaymentForm f = 0; f < _DEVICE_PAYMENT_MAX; f++)
                        if ((r = json_add_money(p, device_payment_form_to_string(f), tt->payments[f])) < 0)
                                return r;
                if ((r = json_add_int(e, "count", tt->count)) < 0 ||
                    (r = json_add_money(e, "total", tt->total)) < 0 ||
                    (r = json_add(e, "payments", TAKE_PTR(p))) < 0 ||
                    (r = json_add(types, receipt_type_to_string(type), TAKE_PTR(e))) < 0)
                        return r;
        }
        for (DevicePaymentForm f = 0; f < _DEVICE_PAYMENT_MAX; f++)
                if ((r = json_add_money(net, device_payment_form_to_string(f), device_totals_net(t, f))) < 0)
                        return r;

        if ((r = json_add_int(o, "receipts", device_totals_receipts(t))) < 0 ||
            (r = json_add(o, "by_type", TAKE_PTR(types))) < 0 || (r = json_add(o, "net", TAKE_PTR(net))) < 0)
                return r;
        *ret = TAKE_PTR(o);
        return 0;
}

/* ---- options ---- */

static int strdup_option(const char *s, size_t max, const char **ret) {
        char *copy = NULL;

        if (s) {
                if (max > 0 && strlen(s) > max)
                        return -EINVAL;
                copy = strdup(s);
                if (!copy)
                        return -ENOMEM;
        }
        *ret = copy;
        return 0;
}

int device_options_copy(const DeviceOptions *o, DeviceOptions **ret) {
        _cleanup_(device_options_freep) DeviceOptions *c = NULL;
        int r;

        assert(o);
        assert(ret);

        c = new0(DeviceOptions, 1);
        if (!c)
                return -ENOMEM;
        *c = *o;
        /* The copy owns each string from here on, NULL until copied: a failure frees only copies. */
        c->driver = c->serial = c->fn_number = c->registration_number = c->inn = c->cashier =
                c->cashier_inn = c->emulator_path = c->url = c->token = NULL;
        if ((r = strdup_option(o->driver, 0, &c->driver)) < 0 ||
            (r = strdup_option(o->serial, DEVICE_SERIAL_MAX, &c->serial)) < 0 ||
            (r = strdup_option(o->fn_number, DEVICE_FN_NUMBER_MAX, &c->fn_number)) < 0 ||
            (r = strdup_option(o->registration_number, DEVICE_REGISTRATION_NUMBER_MAX,
                               &c->registration_number)) < 0 ||
            (r = strdup_option(o->inn, DEVICE_INN_MAX, &c->inn)) < 0 ||
            (r = strdup_option(o->cashier, DEVICE_CASHIER_MAX, &c->cashier)) < 0 ||
            (r = strdup_option(o->cashier_inn, DEVICE_INN_MAX, &c->cashier_inn)) < 0 ||
            (r = strdup_option(o->emulator_path, 0, &c->emulator_path)) < 0 ||
            (r = strdup_option(o->url, 0, &c->url)) < 0 || (r = strdup_option(o->token, 0, &c->token)) < 0)
                return r;

        *ret = TAKE_PTR(c);
        return 0;
}

DeviceOptions *device_options_free(DeviceOptions *o) {
        if (!o)
                return NULL;
        free((char *) o->driver);
        free((char *) o->serial);
        free((char *) o->fn_number);
        free((char *) o->registration_number);
        free((char *) o->inn);
        free((char *) o->cashier);
        free((char *) o->cashier_inn);
        free((char *) o->emulator_path);
        free((char *) o->url);
        erase_and_free((char *) o->token);
        return mfree(o);
}
