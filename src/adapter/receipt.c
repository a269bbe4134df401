/* SPDX-License-Identifier: MIT */
/* The receipt's FFD enumerations and their names, what a receipt type means, and receipt_free(). Parsing is
 * in receipt-parse.c and receipt-validate.c, the canonical text in receipt-canonical.c. */

#include "receipt.h"
#include "string-table.h"

static const char *const receipt_type_table[_RECEIPT_TYPE_MAX] = {
        [RECEIPT_TYPE_SALE] = "sale",
        [RECEIPT_TYPE_REFUND] = "refund",
        [RECEIPT_TYPE_PURCHASE] = "purchase",
        [RECEIPT_TYPE_PURCHASE_REFUND] = "purchase_refund",
        [RECEIPT_TYPE_SALE_CORRECTION] = "sale_correction",
        [RECEIPT_TYPE_REFUND_CORRECTION] = "refund_correction",
        [RECEIPT_TYPE_PURCHASE_CORRECTION] = "purchase_correction",
        [RECEIPT_TYPE_PURCHASE_REFUND_CORRECTION] = "purchase_refund_correction",
};

/* FFD 1.2, tags 1031 (cash), 1081 (electronic), 1215 (prepayment: offset of an advance or earlier payments),
 * 1216 (postpayment, credit), 1217 (other consideration): tag names of FFD-derived dictionaries, e.g. Yandex
 * OFD's table, https://yandex.ru/support/ofd-client/ru/parameter-table. */
static const char *const payment_type_table[_PAYMENT_TYPE_MAX] = {
        [PAYMENT_TYPE_CASH] = "cash",
        [PAYMENT_TYPE_CARD] = "card",
        [PAYMENT_TYPE_PREPAYMENT] = "prepayment",
        [PAYMENT_TYPE_CREDIT] = "credit",
        [PAYMENT_TYPE_OTHER] = "other",
};

static const char *const payment_method_table[_PAYMENT_METHOD_MAX] = {
        [PAYMENT_METHOD_FULL_PREPAYMENT] = "full_prepayment",
        [PAYMENT_METHOD_PREPAYMENT] = "prepayment",
        [PAYMENT_METHOD_ADVANCE] = "advance",
        [PAYMENT_METHOD_FULL_PAYMENT] = "full_payment",
        [PAYMENT_METHOD_PARTIAL_PAYMENT] = "partial_payment",
        [PAYMENT_METHOD_CREDIT] = "credit",
        [PAYMENT_METHOD_CREDIT_PAYMENT] = "credit_payment",
};

/* FFD 1.2, tag 1212. Names follow the ones the Russian online-cash-register APIs use where they have one. */
static const char *const payment_object_table[_PAYMENT_OBJECT_MAX] = {
        [PAYMENT_OBJECT_COMMODITY] = "commodity",
        [PAYMENT_OBJECT_EXCISE] = "excise",
        [PAYMENT_OBJECT_JOB] = "job",
        [PAYMENT_OBJECT_SERVICE] = "service",
        [5] = "gambling_bet",
        [6] = "gambling_prize",
        [7] = "lottery",
        [8] = "lottery_prize",
        [9] = "intellectual_activity",
        [PAYMENT_OBJECT_PAYMENT] = "payment",
        [PAYMENT_OBJECT_AGENT_COMMISSION] = "agent_commission",
        [PAYMENT_OBJECT_COMPOSITE] = "composite",
        [PAYMENT_OBJECT_ANOTHER] = "another",
        [14] = "property_right",
        [15] = "non-operating_gain",
        [16] = "insurance_premium",
        [17] = "sales_tax",
        [18] = "resort_fee",
        [19] = "deposit",
        [20] = "expense",
        [21] = "pension_insurance_ip",
        [22] = "pension_insurance",
        [23] = "medical_insurance_ip",
        [24] = "medical_insurance",
        [25] = "social_insurance",
        [26] = "casino_payment",
        [27] = "cash_withdrawal",
        [30] = "excise_unmarked",
        [31] = "excise_marked",
        [32] = "commodity_unmarked",
        [33] = "commodity_marked",
};

/* FFD 1.2, tag 2108. */
static const char *const measure_table[_MEASURE_MAX] = {
        [MEASURE_PIECE] = "piece",
        [MEASURE_GRAM] = "gram",
        [MEASURE_KILOGRAM] = "kilogram",
        [12] = "ton",
        [20] = "centimeter",
        [21] = "decimeter",
        [MEASURE_METER] = "meter",
        [30] = "square_centimeter",
        [31] = "square_decimeter",
        [32] = "square_meter",
        [40] = "milliliter",
        [MEASURE_LITER] = "liter",
        [42] = "cubic_meter",
        [50] = "kilowatt_hour",
        [51] = "gigacalorie",
        [70] = "day",
        [71] = "hour",
        [72] = "minute",
        [73] = "second",
        [80] = "kilobyte",
        [81] = "megabyte",
        [82] = "gigabyte",
        [83] = "terabyte",
        [MEASURE_OTHER] = "other",
};

/* FFD 1.2, tag 1055, one bit of the registered set 1062; 8 (ЕНВД, abolished in 2021) is left out. */
static const char *const taxation_table[_TAXATION_MAX] = {
        [TAXATION_OSN] = "osn",
        [TAXATION_USN_INCOME] = "usn_income",
        [TAXATION_USN_INCOME_OUTCOME] = "usn_income_outcome",
        [TAXATION_ESN] = "esn",
        [TAXATION_PATENT] = "patent",
};

/* FFD 1.2, tag 1173: 0 on one's own initiative («самостоятельно»), 1 by order of the tax authority («по
 * предписанию») — FFD-derived code tables. */
static const char *const correction_type_table[_CORRECTION_TYPE_MAX] = {
        [CORRECTION_TYPE_SELF] = "self",
        [CORRECTION_TYPE_BY_ORDER] = "by_order",
};

DEFINE_STRING_TABLE_LOOKUP_TO_STRING(receipt_type, ReceiptType, )
DEFINE_STRING_TABLE_LOOKUP_TO_STRING(payment_type, PaymentType, )
DEFINE_STRING_TABLE_LOOKUP(payment_method, PaymentMethod)
DEFINE_STRING_TABLE_LOOKUP(payment_object, PaymentObject)
DEFINE_STRING_TABLE_LOOKUP(measure, Measure)
DEFINE_STRING_TABLE_LOOKUP(taxation, Taxation)
DEFINE_STRING_TABLE_LOOKUP(correction_type, CorrectionType)

/* Two names are read but never written: the prototype's "correction" and FFD's own "electronic". */
ReceiptType receipt_type_from_string(const char *s) {
        if (streq_ptr(s, "correction"))
                return RECEIPT_TYPE_SALE_CORRECTION;
        return (ReceiptType) string_table_lookup_from_string(receipt_type_table,
                                                             ELEMENTSOF(receipt_type_table), s);
}

PaymentType payment_type_from_string(const char *s) {
        if (streq_ptr(s, "electronic"))
                return PAYMENT_TYPE_CARD;
        return (PaymentType) string_table_lookup_from_string(payment_type_table,
                                                             ELEMENTSOF(payment_type_table), s);
}

ReceiptType receipt_type_settlement(ReceiptType t) {
        return receipt_type_is_correction(t) ? t - RECEIPT_TYPE_SALE_CORRECTION : t;
}

unsigned receipt_type_to_ffd(ReceiptType t) {
        if (t < 0 || t >= _RECEIPT_TYPE_MAX)
                return 0;
        return (unsigned) receipt_type_settlement(t) + 1;
}

bool receipt_type_is_correction(ReceiptType t) {
        return t >= RECEIPT_TYPE_SALE_CORRECTION && t < _RECEIPT_TYPE_MAX;
}

bool receipt_type_is_return(ReceiptType t) {
        return IN_SET(receipt_type_settlement(t), RECEIPT_TYPE_REFUND, RECEIPT_TYPE_PURCHASE_REFUND);
}

Receipt *receipt_free(Receipt *r) {
        if (!r)
                return NULL;

        for (size_t i = 0; i < r->n_items; i++) {
                free(r->items[i].name);
                free(r->items[i].mark_code);
        }
        free(r->items);
        free(r->payments);
        free(r->vat_sums);
        free(r->pos_id);
        free(r->cashier_name);
        free(r->cashier_inn);
        free(r->correction.order_number);
        free(r->original);
        free(r->customer_email);
        free(r->customer_phone);
        return mfree(r);
}
