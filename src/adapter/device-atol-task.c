/* SPDX-License-Identifier: MIT */
/* The atol-web driver's requests: our canonical receipt as ATOL's JSON task (types, taxation, positions,
 * payments, marks, the operator), and the request uuids derived from receipt ids and shifts. Pure functions;
 * the sources cited as [KSL], [NAR], ... are listed at the top of device-atol.c. */

#include <openssl/evp.h>
#include <sys/random.h>

#include "device-atol-internal.h"
#include "vat.h"

/* ---- mapping our receipt to ATOL's task ---- */

/* Task types by receipt type [KSL FiscalReceiptType, CorrectionReceiptType; NAR json-task-type.ts]. */
static const char *const task_type_table[_RECEIPT_TYPE_MAX] = {
        [RECEIPT_TYPE_SALE] = "sell",
        [RECEIPT_TYPE_REFUND] = "sellReturn",
        [RECEIPT_TYPE_PURCHASE] = "buy",
        [RECEIPT_TYPE_PURCHASE_REFUND] = "buyReturn",
        [RECEIPT_TYPE_SALE_CORRECTION] = "sellCorrection",
        [RECEIPT_TYPE_REFUND_CORRECTION] = "sellReturnCorrection",
        [RECEIPT_TYPE_PURCHASE_CORRECTION] = "buyCorrection",
        [RECEIPT_TYPE_PURCHASE_REFUND_CORRECTION] = "buyReturnCorrection",
};

typedef struct IntName {
        int value;
        const char *name;
} IntName;

static const char *int_name_lookup(const IntName *t, size_t n, int value) {
        for (size_t i = 0; i < n; i++)
                if (t[i].value == value)
                        return t[i].name;
        return NULL;
}

/* taxationType by FFD tag 1055 bit [KSL TaxationType, NAR taxation-type.ts]. ЕНВД (8) is gone from both. */
static const IntName taxation_table[] = {
        { TAXATION_OSN, "osn" },
        { TAXATION_USN_INCOME, "usnIncome" },
        { TAXATION_USN_INCOME_OUTCOME, "usnIncomeOutcome" },
        { TAXATION_ESN, "esn" },
        { TAXATION_PATENT, "patent" },
};

/* paymentMethod by FFD tag 1214 [KSL PaymentMethodType, NAR]: the order of both equals 1..7. */
static const IntName payment_method_table[] = {
        { 1, "fullPrepayment" }, { 2, "prepayment" }, { 3, "advance" },       { 4, "fullPayment" },
        { 5, "partialPayment" }, { 6, "credit" },     { 7, "creditPayment" },
};

/* paymentObject by FFD tag 1212 [KSL PaymentObjectType, whose numbers are the 1212 values; its names are
 * written camel-case by its JsonCamelCaseStringEnumConverter]. NAR sends the numbers and names 16 and 18
 * differently (insuranceContributions/otherContributions, resortFee): the spellings of 16 and 21..25 are the
 * least certain. */
static const IntName payment_object_table[] = {
        { 1, "commodity" },
        { 2, "excise" },
        { 3, "job" },
        { 4, "service" },
        { 5, "gamblingBet" },
        { 6, "gamblingPrize" },
        { 7, "lottery" },
        { 8, "lotteryPrize" },
        { 9, "intellectualActivity" },
        { 10, "payment" },
        { 11, "agentCommission" },
        { 12, "composite" },
        { 13, "another" },
        { 14, "proprietaryLaw" },
        { 15, "nonOperatingIncome" },
        { 16, "otherContributions" },
        { 17, "merchantTax" },
        { 18, "resortFee" },
        { 19, "deposit" },
        { 20, "consumption" },
        { 21, "soleProprietorCpiContributions" },
        { 22, "cpiContributions" },
        { 23, "soleProprietorCmiContributions" },
        { 24, "cmiContributions" },
        { 25, "csiContributions" },
        { 26, "casinoPayment" },
        { 27, "fundsIssuance" },
        { 30, "exciseWithoutMarking" },
        { 31, "exciseWithMarking" },
        { 32, "commodityWithoutMarking" },
        { 33, "commodityWithMarking" },
};

/* measurementUnit by FFD tag 2108 [KSL ItemUnitType, camel-case names; most clients send strings, NAR
 * accepts numbers as well]. */
static const IntName measure_table[] = {
        { 0, "piece" },
        { 10, "gram" },
        { 11, "kilogram" },
        { 12, "ton" },
        { 20, "centimeter" },
        { 21, "decimeter" },
        { 22, "meter" },
        { 30, "squareCentimeter" },
        { 31, "squareDecimeter" },
        { 32, "squareMeter" },
        { 40, "milliliter" },
        { 41, "liter" },
        { 42, "cubicMeter" },
        { 50, "kilowattHour" },
        { 51, "gkal" },
        { 70, "day" },
        { 71, "hour" },
        { 72, "minute" },
        { 73, "second" },
        { 80, "kilobyte" },
        { 81, "megabyte" },
        { 82, "gigabyte" },
        { 83, "terabyte" },
        { 255, "otherUnits" },
};

/* payments[].type by the FFD tag the amount is reported in [KSL PaymentType: cash 0, electronically 1,
 * prepaid 2, credit 3, other 4; NAR; the 1C module]; the canonical receipt carries the tag as amount_tag. */
static const IntName payment_type_table[] = {
        { 1031, "cash" },   { 1081, "electronically" }, { 1215, "prepaid" },
        { 1216, "credit" }, { 1217, "other" },
};

/* Our payment names, for a receipt that carries no amount_tag. */
static int payment_tag_from_name(const char *s) {
        static const IntName names[] = {
                { 1031, "cash" },       { 1081, "card" },   { 1081, "electronic" },
                { 1215, "prepayment" }, { 1216, "credit" }, { 1217, "other" },
        };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (streq(names[i].name, s))
                        return names[i].value;
        return -EINVAL;
}

/* tax.type: ATOL spells the VAT codes as our table does [KSL WatType: none, vat0, vat10, vat110, vat20,
 * vat120, vat5, vat105, vat7, vat107; NAR tax.ts and the 1C module add vat22 and vat122, which need a 2026
 * driver and firmware]. */
static const char *const atol_vat_names[] = {
        "none",  "vat0",   "vat5",   "vat7",   "vat10",  "vat20",
        "vat22", "vat105", "vat107", "vat110", "vat120", "vat122",
};

static bool atol_vat_known(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(atol_vat_names); i++)
                if (streq(atol_vat_names[i], name))
                        return true;
        return false;
}

/* ---- the canonical receipt ---- */

static int money_field(json_object *o, const char *key, unsigned scale, int64_t *ret) {
        json_object *v = atol_get_key(o, key);

        if (!v)
                return -ENODATA;
        return money_from_json(v, scale, ret) < 0 ? -EINVAL : 0;
}

static int tag_field(json_object *o, const char *key, int *ret) {
        int64_t i;

        if (!atol_get_int64(o, key, &i) || i < 0 || i > INT_MAX)
                return -EINVAL;
        *ret = (int) i;
        return 0;
}

/* "YYYY-MM-DD" -> "YYYY.MM.DD": correctionBaseDate is written yyyy.MM.dd [KSL CustomDateTimeConverter
 * ("yyyy.MM.dd"); NAR atol-date.ts]. */
static int atol_date(const char *s, char buf[static 11]) {
        unsigned y, m, d;
        int n = 0;

        if (!s || sscanf(s, "%4u-%2u-%2u%n", &y, &m, &d, &n) != 3 || n != 10 || s[n] != 0)
                return -EINVAL;
        snprintf(buf, 11, "%04u.%02u.%02u", y, m, d);
        return 0;
}

int atol_base64_encode(const char *s, char **ret) {
        size_t n = strlen(s);
        char *b;

        if (n > INT_MAX / 2)
                return -E2BIG;
        b = malloc(4 * ((n + 2) / 3) + 1);
        if (!b)
                return -ENOMEM;
        (void) EVP_EncodeBlock((unsigned char *) b, (const unsigned char *) s, (int) n);
        *ret = b;
        return 0;
}

/* The planned status of a marked item (FFD tag 2003) [KSL ItemEstimatedStatus: itemPieceSold 1,
 * itemDryForSale 2, itemPieceReturn 3, itemDryReturn 4, itemPieceForSale 5, itemDrySold 6,
 * itemStatusUnchanged 255]. Which one a purchase needs is an assumption: unchanged. */
static const char *mark_status(ReceiptType type, int measure) {
        bool piece = measure == 0;

        switch (receipt_type_settlement(type)) {
        case RECEIPT_TYPE_SALE:
                return piece ? "itemPieceSold" : "itemDrySold";
        case RECEIPT_TYPE_REFUND:
                return piece ? "itemPieceReturn" : "itemDryReturn";
        default:
                return "itemStatusUnchanged";
        }
}

/* One items[] element {"type": "position", ...} [KSL PositionDocumentParams_12; NAR
 * document-item.position.ts; the 1C module's GetPositionStructure]. tax.sum is left to the register ("sum
 * ... для позиций необязательна (по умолчанию рассчитывается автоматически)" [NAR tax.ts]): it computes the
 * same rounding as our vat_amount, and a disagreement would refuse every receipt. */
static int item_to_position(json_object *item, ReceiptType type, json_object **ret, const char **why) {
        _cleanup_(json_object_putp) json_object *p = NULL, *tax = NULL;
        const char *name, *vat, *s;
        int64_t price, quantity, total, discount;
        int method, object, measure, r;

        name = atol_get_string(item, "name");
        vat = atol_get_string(item, "vat");
        if (!name || !vat) {
                *why = "an item without name or vat";
                return -EINVAL;
        }
        if (money_field(item, "price", MONEY_SCALE_KOPECKS, &price) < 0 ||
            money_field(item, "quantity", MONEY_SCALE_QUANTITY, &quantity) < 0 ||
            money_field(item, "total", MONEY_SCALE_KOPECKS, &total) < 0) {
                *why = "an item's price, quantity or total is not an exact decimal";
                return -EINVAL;
        }
        if (!vat_from_name(vat) || !atol_vat_known(vat)) {
                *why = "a VAT code ATOL has no tax type for";
                return -EINVAL;
        }
        if (tag_field(item, "payment_method_tag1214", &method) < 0) {
                s = atol_get_string(item, "payment_method");
                method = s ? (int) payment_method_from_string(s) : -EINVAL;
        }
        if (tag_field(item, "payment_object_tag1212", &object) < 0) {
                s = atol_get_string(item, "payment_object");
                object = s ? (int) payment_object_from_string(s) : -EINVAL;
        }
        if (tag_field(item, "measure_tag2108", &measure) < 0) {
                s = atol_get_string(item, "measure");
                measure = s ? (int) measure_from_string(s) : 0;
        }
        if (!int_name_lookup(payment_method_table, ELEMENTSOF(payment_method_table), method) ||
            !int_name_lookup(payment_object_table, ELEMENTSOF(payment_object_table), object) ||
            !int_name_lookup(measure_table, ELEMENTSOF(measure_table), measure)) {
                *why = "an item's payment method, payment object or measure has no ATOL name";
                return -EINVAL;
        }

        p = json_object_new_object();
        tax = json_object_new_object();
        if (!p || !tax)
                return -ENOMEM;
        if ((r = atol_add_string(p, "type", "position")) < 0 || (r = atol_add_string(p, "name", name)) < 0 ||
            (r = atol_add_decimal(p, "price", price, MONEY_SCALE_KOPECKS)) < 0 ||
            (r = atol_add_decimal(p, "quantity", quantity, MONEY_SCALE_QUANTITY)) < 0 ||
            (r = atol_add_decimal(p, "amount", total, MONEY_SCALE_KOPECKS)) < 0)
                return r;
        /* infoDiscountAmount: the discount for the printout only; amount is already net of it [KSL]. */
        if (money_field(item, "discount", MONEY_SCALE_KOPECKS, &discount) >= 0 && discount > 0 &&
            (r = atol_add_decimal(p, "infoDiscountAmount", discount, MONEY_SCALE_KOPECKS)) < 0)
                return r;
        if ((r = atol_add_string(tax, "type", vat)) < 0 || (r = json_add(p, "tax", TAKE_PTR(tax))) < 0 ||
            (r = atol_add_string(
                     p, "paymentMethod",
                     int_name_lookup(payment_method_table, ELEMENTSOF(payment_method_table), method))) < 0 ||
            (r = atol_add_string(
                     p, "paymentObject",
                     int_name_lookup(payment_object_table, ELEMENTSOF(payment_object_table), object))) < 0 ||
            (r = atol_add_string(p, "measurementUnit",
                                 int_name_lookup(measure_table, ELEMENTSOF(measure_table), measure))) < 0)
                return r;

        s = atol_get_string(item, "mark_code");
        if (s) {
                /* FFD 1.2 marking: imcParams {imcType "auto", imc: the code in base64, itemEstimatedStatus,
                 * imcModeProcessing 0} [KSL MarkingCodeParams_12, ImcType; NAR imc-params.ts]. */
                _cleanup_(json_object_putp) json_object *imc = json_object_new_object();
                _cleanup_free_ char *b64 = NULL;

                if (!imc)
                        return -ENOMEM;
                r = atol_base64_encode(s, &b64);
                if (r < 0)
                        return r;
                if ((r = atol_add_string(imc, "imcType", "auto")) < 0 ||
                    (r = atol_add_string(imc, "imc", b64)) < 0 ||
                    (r = atol_add_string(imc, "itemEstimatedStatus", mark_status(type, measure))) < 0 ||
                    (r = json_add(imc, "imcModeProcessing", json_object_new_int(0))) < 0 ||
                    (r = json_add(p, "imcParams", TAKE_PTR(imc))) < 0)
                        return r;
        }

        *ret = TAKE_PTR(p);
        return 0;
}

/* Parses the canonical receipt and builds its task. ret_task may be NULL (FIND needs only the receipt). */
int atol_receipt_parse(const char *receipt_json, const char *cashier, const char *cashier_inn,
                       AtolReceipt *ret, char **ret_task, const char **why) {
        _cleanup_(json_object_putp) json_object *o = NULL, *task = NULL, *items = NULL, *payments = NULL;
        json_object *v, *arr;
        AtolReceipt rc = {};
        const char *s;
        int64_t paid = 0;
        int r;

        *why = NULL;
        o = json_tokener_parse(receipt_json);
        if (!o || !json_object_is_type(o, json_type_object)) {
                *why = "not a JSON object";
                return -EINVAL;
        }
        s = atol_get_string(o, "type");
        rc.type = s ? receipt_type_from_string(s) : _RECEIPT_TYPE_INVALID;
        if (rc.type < 0) {
                *why = "unknown receipt type";
                return -EINVAL;
        }
        if (money_field(o, "total", MONEY_SCALE_KOPECKS, &rc.total) < 0) {
                *why = "total is not an exact decimal";
                return -EINVAL;
        }
        if (atol_get_key(o, "change") &&
            (money_field(o, "change", MONEY_SCALE_KOPECKS, &rc.change) < 0 || rc.change < 0)) {
                *why = "change is not an exact decimal";
                return -EINVAL;
        }

        task = json_object_new_object();
        items = json_object_new_array();
        payments = json_object_new_array();
        if (!task || !items || !payments)
                return -ENOMEM;
        if ((r = atol_add_string(task, "type", task_type_table[rc.type])) < 0)
                return r;

        /* taxationType; without one the register applies its default [NAR: optional]. */
        v = atol_get_key(o, "taxation_tag1055");
        if (v || atol_get_key(o, "taxation")) {
                int64_t bit = -1;
                const char *name;

                if (!atol_get_int64(o, "taxation_tag1055", &bit)) {
                        s = atol_get_string(o, "taxation");
                        bit = s ? (int64_t) taxation_from_string(s) : -1;
                }
                name = bit > 0 && bit < INT_MAX
                               ? int_name_lookup(taxation_table, ELEMENTSOF(taxation_table), (int) bit)
                               : NULL;
                if (!name) {
                        *why = "a taxation system ATOL has no name for";
                        return -EINVAL;
                }
                if ((r = atol_add_string(task, "taxationType", name)) < 0)
                        return r;
        }

        /* operator {name, vatin}: tags 1021, 1203 [KSL OperatorParams; the 1C module sends vatin only when
         * filled]. The receipt's cashier, else the configured default, else none (the register's own). */
        v = atol_get_key(o, "cashier");
        if (v && atol_get_string(v, "name")) {
                cashier = atol_get_string(v, "name");
                cashier_inn = atol_get_string(v, "inn");
        }
        if (!isempty(cashier)) {
                _cleanup_(json_object_putp) json_object *op = json_object_new_object();

                if (!op)
                        return -ENOMEM;
                if ((r = atol_add_string(op, "name", cashier)) < 0 ||
                    (!isempty(cashier_inn) && (r = atol_add_string(op, "vatin", cashier_inn)) < 0) ||
                    (r = json_add(task, "operator", TAKE_PTR(op))) < 0)
                        return r;
        }

        /* Corrections: correctionType self|instruction (tag 1173), correctionBaseDate (1178),
         * correctionBaseNumber (1179, by order only) [KSL CreateCorrectionReceiptOperation,
         * CorrectionReceiptCorrectionType; NAR correction.task.ts, correction-type.ts]. */
        v = atol_get_key(o, "correction");
        if (receipt_type_is_correction(rc.type)) {
                char date[11];
                const char *ctype = atol_get_string(v, "type");
                int64_t tag = -1;

                if (!ctype && atol_get_int64(v, "type_tag1173", &tag))
                        ctype = tag == 0 ? "self" : tag == 1 ? "by_order" : NULL;
                if (!v || !ctype || (!streq(ctype, "self") && !streq(ctype, "by_order"))) {
                        *why = "a correction receipt without its correction type";
                        return -EINVAL;
                }
                if (atol_date(atol_get_string(v, "date"), date) < 0) {
                        *why = "a correction receipt without the date of the corrected settlement";
                        return -EINVAL;
                }
                /* "self" is the register's word too; "by_order" is its "instruction". */
                r = atol_add_string(task, "correctionType", streq(ctype, "self") ? "self" : "instruction");
                if (r < 0 || (r = atol_add_string(task, "correctionBaseDate", date)) < 0)
                        return r;
                s = atol_get_string(v, "order_number");
                if (streq(ctype, "by_order")) {
                        if (isempty(s)) {
                                *why = "a correction by order without the order's number";
                                return -EINVAL;
                        }
                        if ((r = atol_add_string(task, "correctionBaseNumber", s)) < 0)
                                return r;
                }
        }

        /* clientInfo.emailOrPhone (tag 1008: one contact) [KSL BuyerParams; NAR client-info.ts]. */
        v = atol_get_key(o, "customer");
        s = atol_get_string(v, "email") ?: atol_get_string(v, "phone");
        if (s) {
                _cleanup_(json_object_putp) json_object *ci = json_object_new_object();

                if (!ci)
                        return -ENOMEM;
                if ((r = atol_add_string(ci, "emailOrPhone", s)) < 0 ||
                    (r = json_add(task, "clientInfo", TAKE_PTR(ci))) < 0)
                        return r;
        }

        arr = atol_get_key(o, "items");
        if (!arr || !json_object_is_type(arr, json_type_array) || json_object_array_length(arr) == 0) {
                *why = "no items";
                return -EINVAL;
        }
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
                json_object *p = NULL;

                r = item_to_position(json_object_array_get_idx(arr, i), rc.type, &p, why);
                if (r < 0)
                        return r;
                if (json_object_array_add(items, p) < 0) {
                        json_object_put(p);
                        return -ENOMEM;
                }
        }

        /* payments [{type, sum}]: cash as paid, the register computes the change [KSL PaymentParams]. */
        arr = atol_get_key(o, "payments");
        if (!arr || !json_object_is_type(arr, json_type_array) || json_object_array_length(arr) == 0) {
                *why = "no payments";
                return -EINVAL;
        }
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
                _cleanup_(json_object_putp) json_object *pay = json_object_new_object();
                json_object *e = json_object_array_get_idx(arr, i);
                int64_t amount, tag = -1;
                const char *name;

                if (!pay)
                        return -ENOMEM;
                if (!atol_get_int64(e, "amount_tag", &tag)) {
                        s = atol_get_string(e, "type");
                        tag = s ? payment_tag_from_name(s) : -1;
                }
                name = tag > 0 && tag < INT_MAX ? int_name_lookup(payment_type_table,
                                                                  ELEMENTSOF(payment_type_table), (int) tag)
                                                : NULL;
                if (!name || money_field(e, "amount", MONEY_SCALE_KOPECKS, &amount) < 0) {
                        *why = "a payment of a type ATOL has no name for, or an inexact amount";
                        return -EINVAL;
                }
                if (__builtin_add_overflow(paid, amount, &paid))
                        return -EINVAL;
                if ((r = atol_add_string(pay, "type", name)) < 0 ||
                    (r = atol_add_decimal(pay, "sum", amount, MONEY_SCALE_KOPECKS)) < 0)
                        return r;
                if (json_object_array_add(payments, TAKE_PTR(pay)) < 0)
                        return -ENOMEM;
        }
        if (!atol_get_key(o, "change") && paid > rc.total)
                rc.change = paid - rc.total;

        if ((r = json_add(task, "items", TAKE_PTR(items))) < 0 ||
            (r = json_add(task, "payments", TAKE_PTR(payments))) < 0 ||
            /* total: the register checks it against the items (error 227 INVALID_TOTAL) [KSL: optional]. */
            (r = atol_add_decimal(task, "total", rc.total, MONEY_SCALE_KOPECKS)) < 0)
                return r;

        if (ret_task) {
                *ret_task = strdup(json_object_to_json_string_ext(
                        task, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
                if (!*ret_task)
                        return -ENOMEM;
        }
        *ret = rc;
        return 0;
}

int device_atol_receipt_task(const char *receipt_json, const char *cashier, const char *cashier_inn,
                             char **ret, const char **ret_why) {
        AtolReceipt rc;
        const char *why = NULL;
        int r;

        assert(receipt_json);
        assert(ret);

        r = atol_receipt_parse(receipt_json, cashier, cashier_inn, &rc, ret, &why);
        if (ret_why)
                *ret_why = why;
        return r;
}

/* ---- uuids ---- */

DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_MD_CTX *, EVP_MD_CTX_free);

/* Our namespace for version 5 UUIDs (RFC 4122 4.3); any fixed value would do, this one was drawn once. */
static const uint8_t atol_uuid_namespace[16] = {
        0x2d, 0x20, 0xaa, 0x2a, 0x1f, 0xca, 0x43, 0xc1, 0xac, 0x47, 0x3a, 0xe3, 0x47, 0x15, 0x69, 0x11,
};

static void uuid_format(const uint8_t b[16], char ret[static DEVICE_ATOL_UUID_MAX]) {
        snprintf(ret, DEVICE_ATOL_UUID_MAX,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
                 b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static int uuid_v5(const char *name, char ret[static DEVICE_ATOL_UUID_MAX]) {
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = NULL;
        uint8_t md[EVP_MAX_MD_SIZE];
        unsigned n = 0;

        ctx = EVP_MD_CTX_new();
        if (!ctx)
                return -ENOMEM;
        if (EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 ||
            EVP_DigestUpdate(ctx, atol_uuid_namespace, sizeof atol_uuid_namespace) != 1 ||
            EVP_DigestUpdate(ctx, name, strlen(name)) != 1 || EVP_DigestFinal_ex(ctx, md, &n) != 1 || n < 16)
                return -EIO;
        md[6] = (md[6] & 0x0f) | 0x50; /* version 5 */
        md[8] = (md[8] & 0x3f) | 0x80; /* RFC 4122 variant */
        uuid_format(md, ret);
        return 0;
}

int device_atol_receipt_uuid(const char *receipt_id, unsigned attempt,
                             char ret[static DEVICE_ATOL_UUID_MAX]) {
        _cleanup_free_ char *name = NULL;

        assert(receipt_id);
        if (asprintf(&name, "receipt:%s:%u", receipt_id, attempt) < 0)
                return -ENOMEM;
        return uuid_v5(name, ret);
}

int device_atol_shift_uuid(const char *op, const char *fn_number, uint32_t shift, unsigned attempt,
                           char ret[static DEVICE_ATOL_UUID_MAX]) {
        _cleanup_free_ char *name = NULL;

        assert(op);
        if (asprintf(&name, "%s:%s:%" PRIu32 ":%u", op, strempty(fn_number), shift, attempt) < 0)
                return -ENOMEM;
        return uuid_v5(name, ret);
}

/* Queries are not idempotent-critical: a fresh random (version 4) uuid each. */
int atol_uuid_random(char ret[static DEVICE_ATOL_UUID_MAX]) {
        uint8_t b[16];

        if (getrandom(b, sizeof b, 0) != (ssize_t) sizeof b)
                return -errno ?: -EIO;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        uuid_format(b, ret);
        return 0;
}

unsigned atol_taxation_bit(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(taxation_table); i++)
                if (streq(taxation_table[i].name, name))
                        return (unsigned) taxation_table[i].value;
        return 0;
}
