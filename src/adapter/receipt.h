/* SPDX-License-Identifier: MIT */
#pragma once

/* A receipt as the POS sends it: strict parsing and validation into exact integers, the FFD enumerations
 * as tables, and the canonical JSON text (and its SHA-256) that the store keeps and the OFD receives. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "time-util.h"
#include "vat.h"

/* Enumerations whose values are the FFD values: the canonical receipt carries both name and number. */

/* A receipt's kind: the settlement (FFD tag 1054: 1 income, 2 return of income, 3 expense, 4 return of
 * expense) and whether it is a correction receipt (FFD 1.2, "кассовый чек коррекции"). The names are what the
 * POS sends; "correction", the prototype's name, reads as sale_correction. */
typedef enum ReceiptType {
        RECEIPT_TYPE_SALE,                      /* 1054 = 1 */
        RECEIPT_TYPE_REFUND,                    /* 1054 = 2, the return of a sale */
        RECEIPT_TYPE_PURCHASE,                  /* 1054 = 3 */
        RECEIPT_TYPE_PURCHASE_REFUND,           /* 1054 = 4 */
        RECEIPT_TYPE_SALE_CORRECTION,           /* correction receipts, 1054 = 1..4 */
        RECEIPT_TYPE_REFUND_CORRECTION,
        RECEIPT_TYPE_PURCHASE_CORRECTION,
        RECEIPT_TYPE_PURCHASE_REFUND_CORRECTION,
        _RECEIPT_TYPE_MAX,
        _RECEIPT_TYPE_INVALID = -EINVAL,
} ReceiptType;

/* FFD tag 1054 of a receipt type: 1..4; 0 for a value out of range. */
unsigned receipt_type_to_ffd(ReceiptType t);
/* A correction receipt; its settlement is receipt_type_settlement(). */
bool receipt_type_is_correction(ReceiptType t);
/* The settlement a correction corrects (sale_correction -> sale); other types map to themselves. */
ReceiptType receipt_type_settlement(ReceiptType t);
/* Money goes back to the customer (refund) or back from the supplier (purchase_refund), corrections of
 * those included. */
bool receipt_type_is_return(ReceiptType t);

/* A payment's kind is the FFD tag its amount is reported in. */
typedef enum PaymentType {
        PAYMENT_TYPE_CASH = 1031,       /* cash */
        PAYMENT_TYPE_CARD = 1081,       /* electronic; the POS may also call it "electronic" */
        PAYMENT_TYPE_PREPAYMENT = 1215, /* offset of an advance paid earlier */
        PAYMENT_TYPE_CREDIT = 1216,     /* postpayment: the customer pays later */
        PAYMENT_TYPE_OTHER = 1217,      /* other consideration */
        _PAYMENT_TYPE_MAX,              /* the name tables are indexed by the FFD values: one past the last */
        _PAYMENT_TYPE_INVALID = -EINVAL,
} PaymentType;

typedef enum PaymentMethod { /* FFD tag 1214 */
        PAYMENT_METHOD_FULL_PREPAYMENT = 1,
        PAYMENT_METHOD_PREPAYMENT = 2,
        PAYMENT_METHOD_ADVANCE = 3,
        PAYMENT_METHOD_FULL_PAYMENT = 4,
        PAYMENT_METHOD_PARTIAL_PAYMENT = 5,
        PAYMENT_METHOD_CREDIT = 6,
        PAYMENT_METHOD_CREDIT_PAYMENT = 7,
        _PAYMENT_METHOD_MAX,
        _PAYMENT_METHOD_INVALID = -EINVAL,
} PaymentMethod;

typedef enum PaymentObject { /* FFD tag 1212; the full list is the table in receipt.c */
        PAYMENT_OBJECT_COMMODITY = 1,
        PAYMENT_OBJECT_EXCISE = 2,
        PAYMENT_OBJECT_JOB = 3,
        PAYMENT_OBJECT_SERVICE = 4,
        PAYMENT_OBJECT_PAYMENT = 10,
        PAYMENT_OBJECT_AGENT_COMMISSION = 11,
        PAYMENT_OBJECT_COMPOSITE = 12,
        PAYMENT_OBJECT_ANOTHER = 13,
        _PAYMENT_OBJECT_MAX = 34,       /* the table goes up to 33, commodity_marked */
        _PAYMENT_OBJECT_INVALID = -EINVAL,
} PaymentObject;

typedef enum Measure { /* FFD tag 2108; the full list is the table in receipt.c */
        MEASURE_PIECE = 0,
        MEASURE_GRAM = 10,
        MEASURE_KILOGRAM = 11,
        MEASURE_METER = 22,
        MEASURE_LITER = 41,
        MEASURE_OTHER = 255,
        _MEASURE_MAX,
        _MEASURE_INVALID = -EINVAL,
} Measure;

typedef enum Taxation { /* FFD tag 1055, a bit each */
        TAXATION_OSN = 1,
        TAXATION_USN_INCOME = 2,
        TAXATION_USN_INCOME_OUTCOME = 4,
        TAXATION_ESN = 16,
        TAXATION_PATENT = 32,
        _TAXATION_MAX,
        _TAXATION_INVALID = -EINVAL,
} Taxation;

/* Every Taxation bit: the widest ReceiptOptions.allowed_taxations. */
#define TAXATION_ALL (TAXATION_OSN | TAXATION_USN_INCOME | TAXATION_USN_INCOME_OUTCOME | TAXATION_ESN | \
                      TAXATION_PATENT)

typedef enum CorrectionType { /* FFD tag 1173 */
        CORRECTION_TYPE_SELF = 0,       /* on the business's own initiative */
        CORRECTION_TYPE_BY_ORDER = 1,   /* by order of the tax authority */
        _CORRECTION_TYPE_MAX,
        _CORRECTION_TYPE_INVALID = -EINVAL,
} CorrectionType;

/* to_string: NULL for a value not in the table; from_string: the value, or -EINVAL. */
const char *receipt_type_to_string(ReceiptType t);
ReceiptType receipt_type_from_string(const char *s);
const char *payment_type_to_string(PaymentType t);
PaymentType payment_type_from_string(const char *s);
const char *payment_method_to_string(PaymentMethod m);
PaymentMethod payment_method_from_string(const char *s);
const char *payment_object_to_string(PaymentObject o);
PaymentObject payment_object_from_string(const char *s);
const char *measure_to_string(Measure m);
Measure measure_from_string(const char *s);
const char *taxation_to_string(Taxation t);
Taxation taxation_from_string(const char *s);
const char *correction_type_to_string(CorrectionType t);
CorrectionType correction_type_from_string(const char *s);

#define RECEIPT_POS_ID_MAX 64U          /* characters */
#define RECEIPT_ITEM_NAME_MAX 255U      /* characters */
#define RECEIPT_MARK_CODE_MAX 256U      /* characters; marking codes are ASCII with GS (0x1d) separators */
#define RECEIPT_CUSTOMER_MAX 64U        /* email or phone: tag 1008 holds at most 64 characters */
#define RECEIPT_CASHIER_MAX 64U         /* tag 1021 */
#define RECEIPT_ORDER_NUMBER_MAX 32U    /* tag 1179 */
#define RECEIPT_ORIGINAL_MAX 64U        /* our own: a receipt id, an Idempotency-Key or a document number */

/* Both must be > 0. */
typedef struct ReceiptLimits {
        size_t max_items;
        size_t max_payments;
} ReceiptLimits;

/* An initializer: ReceiptLimits l = RECEIPT_LIMITS_DEFAULT; also what receipt_parse() uses for NULL. */
#define RECEIPT_LIMITS_DEFAULT { .max_items = 1000, .max_payments = 16 }

typedef enum ReceiptUnknownFields {
        RECEIPT_UNKNOWN_FIELDS_REJECT,  /* a key not known at its level is a 422 naming every such key */
        RECEIPT_UNKNOWN_FIELDS_IGNORE,  /* skipped silently, as the prototype did */
        _RECEIPT_UNKNOWN_FIELDS_MAX,
        _RECEIPT_UNKNOWN_FIELDS_INVALID = -EINVAL,
} ReceiptUnknownFields;

/* What the register and the shop add to every body. All zero is a valid set: the defaults below. */
typedef struct ReceiptOptions {
        size_t max_items, max_payments;         /* as ReceiptLimits; 0: RECEIPT_LIMITS_DEFAULT's */
        Taxation default_taxation;              /* when the body has no "taxation"; 0: TAXATION_OSN */
        unsigned allowed_taxations;             /* Taxation bits the register is registered for; 0: any */
        const char *default_cashier;            /* tag 1021 when the body has no cashier; NULL: none */
        const char *default_cashier_inn;        /* tag 1203, only with default_cashier; NULL: none */
        ReceiptUnknownFields unknown_fields;
        usec_t now;                             /* CLOCK_REALTIME of the sale, for the 2026 VAT rule and
                                                 * the dates that must not lie ahead; 0: now() */
} ReceiptOptions;

/* What conf.c checks [Device] Cashier= and CashierINN= with, so that a default never fails a receipt:
 * 0, or -EINVAL with a static reason ("checksum does not match"). */
int receipt_check_cashier_name(const char *name, const char **ret_reason);
int receipt_check_inn(const char *inn, const char **ret_reason);

typedef struct ReceiptItem {
        char *name;
        int64_t price;                  /* kopecks */
        int64_t quantity;               /* thousandths */
        int64_t total;                  /* kopecks, after every discount */
        /* kopecks: price * quantity (rounded half up) - total when the body gave the item a discount or the
         * receipt's discount reached the line, else 0 (a line within the 1-kopeck tolerance keeps it) */
        int64_t discount;
        const VatCode *vat;
        int64_t vat_amount;             /* tag 1200: the VAT in total, kopecks */
        PaymentMethod payment_method;
        PaymentObject payment_object;
        Measure measure;
        char *mark_code;                /* NULL when absent */
} ReceiptItem;

typedef struct ReceiptPayment {
        PaymentType type;
        int64_t amount;                 /* kopecks */
} ReceiptPayment;

/* The VAT of one code over the whole receipt; the register reports it in VatCode.tag_sum (1102..1107). */
typedef struct ReceiptVatSum {
        const VatCode *vat;
        int64_t base;                   /* sum of the totals of the items with this code, kopecks */
        int64_t amount;                 /* sum of their vat_amount, kopecks */
} ReceiptVatSum;

typedef struct ReceiptCorrection { /* FFD tag 1174, correction receipts only */
        CorrectionType type;            /* tag 1173 */
        unsigned date;                  /* tag 1178, the corrected settlement's day as YYYYMMDD */
        char *order_number;             /* tag 1179; NULL when absent (always set for by_order) */
} ReceiptCorrection;

typedef struct Receipt {
        char *pos_id;
        ReceiptType type;
        Taxation taxation;
        bool taxation_given;            /* false: options.default_taxation */
        char *cashier_name;             /* tag 1021; NULL when neither the body nor the options name one */
        char *cashier_inn;              /* tag 1203; NULL when absent */
        bool cashier_given;             /* false: from the options (or none) */
        bool has_correction;            /* receipt_type_is_correction(type), with correction filled in */
        ReceiptCorrection correction;
        char *original;                 /* a return's original receipt as the POS names it; NULL: absent */
        unsigned original_date;         /* its day as YYYYMMDD; 0: not given */
        /* A return in 2026 or later with a 20 % (or 20/120) item that named its original but not the
         * original's date: the store must check that the original was made before 2026-01-01. */
        bool needs_pre2026_original;
        ReceiptItem *items;
        size_t n_items;
        ReceiptPayment *payments;
        size_t n_payments;
        int64_t total;                  /* sum of the item totals, kopecks */
        int64_t paid;                   /* sum of the payments, kopecks: >= total */
        int64_t change;                 /* paid - total, kopecks; only ever cash */
        ReceiptVatSum *vat_sums;        /* one per VAT code present, ordered by tag 1199 */
        size_t n_vat_sums;
        char *customer_email;           /* NULL when absent */
        char *customer_phone;           /* NULL when absent */
} Receipt;

Receipt *receipt_free(Receipt *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(Receipt *, receipt_free);

/* Parses and validates a request body (size bytes, need not be NUL-terminated). o NULL: all defaults.
 * Returns 0 and *ret; -EBADMSG when the body is not valid UTF-8, not JSON, or not a JSON object (HTTP 400);
 * -EINVAL when a field fails validation (HTTP 422); -ENOMEM; -EOVERFLOW when options.now is no local day
 * (years 1..9999) this machine's time_t can name. On -EBADMSG/-EINVAL *ret_detail (may be NULL)
 * gets a malloc'ed message that starts with the field's path, e.g. "items[2].price: more than 2 decimal
 * places" (indexes count from 0); otherwise it is set to NULL. */
int receipt_parse_with(const char *body, size_t size, const ReceiptOptions *o, Receipt **ret,
                       char **ret_detail);
/* receipt_parse_with() with the default options and these limits (NULL: the defaults). */
int receipt_parse(const char *body, size_t size, const ReceiptLimits *limits, Receipt **ret,
                  char **ret_detail);

/* The canonical form: fixed key order, amounts as decimal strings ("1500.00"), quantities "1.000", enums
 * by name plus their FFD value, defaults filled in, absent optional fields left out. Equivalent bodies give
 * byte-identical text, and the text is itself a valid body that parses back to the same receipt. */
int receipt_to_json(const Receipt *r, json_object **ret);
int receipt_canonical(const Receipt *r, char **ret);

typedef enum ReceiptCanonicalFlags {
        /* Leaves out taxation and cashier when they came from the options rather than the body: the text
         * to fingerprint for idempotency, so that a changed [Device] Cashier= does not turn a client's retry
         * into "key reused with another body". It parses back to the same receipt under the same options. */
        RECEIPT_CANONICAL_AS_GIVEN = 1 << 0,
} ReceiptCanonicalFlags;

int receipt_to_json_with(const Receipt *r, ReceiptCanonicalFlags flags, json_object **ret);
int receipt_canonical_with(const Receipt *r, ReceiptCanonicalFlags flags, char **ret);

/* Lower-case hex SHA-256 of the canonical text; -EIO if libcrypto fails. */
int receipt_fingerprint(const char *canonical, char ret[static 65]);
