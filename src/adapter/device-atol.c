/* SPDX-License-Identifier: MIT */
/* The atol-web driver: our receipts and shift documents as ATOL JSON tasks for ATOL's web server, the
 * request queue (POST /api/v2/requests, GET /api/v2/requests/{uuid}, DELETE for a request still waiting) on
 * the loop through curl-glue, the reading of the register's answers (fiscal parameters, status, documents
 * from its fiscal drive), and the decision after an unknown outcome: the web server's record of our uuid
 * first, the register's own documents after the number noted before the request second, never a guess.
 *
 * Sources, cited at each mapping below with these keys (see also the man page's ATOL WEB SERVER section):
 *   [KSL]  ExLuzZziVo/KKTServiceLib, KKTServiceLib.Atol/Types: a typed C# model of ATOL's JSON tasks written
 *          "in accordance with documentation version 10.10.7.0";
 *   [NAR]  pbardov/node-atol-rpc, src/types: a typed TypeScript model of the same tasks;
 *   [AWS]  ArchDemons/atolwebserver (develop): a reconstruction of ATOL's web server on libfptr10
 *          (JsonTaskServlet: the request queue; workers/DriverWorker: execution, blocking, recovery);
 *   [ERR]  the LIBFPTR_ERROR_* codes as ATOL's libfptr10.py and KKTServiceLib's KKTErrorType.cs both number
 *          them (identical for every code used here);
 *   [SMP]  ATOL's sample code for an unknown document state (checkDocumentClosed, cancelReceipt,
 *          continuePrint), reproduced with its comments in several clients;
 *   [OFDC] ofdcomparer's DTO10Helper (PyPI): getFnStatus and getFnDocument as ATOL's test tooling uses them.
 * ATOL's own web-server chapter could not be read; where only one source or none says a thing, the comment
 * says "assumption". */

#include <inttypes.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#include "device-atol.h"
#include "json-util.h"
#include "log.h"
#include "money.h"
#include "receipt.h"
#include "vat.h"

/* The driver finishes an operation within this share of [Device] Timeout=, so that it reports what it knows
 * before the device front end gives up on it; the rest is for cancelling a request that still waits. */
#define ATOL_BUDGET_NUM 3
#define ATOL_BUDGET_DEN 4
#define ATOL_HARD_NUM 9
#define ATOL_HARD_DEN 10
#define ATOL_POLL_MIN (20 * USEC_PER_MSEC)
#define ATOL_POLL_MAX (400 * USEC_PER_MSEC)
#define ATOL_CONNECT_TIMEOUT_MAX (3 * USEC_PER_SEC)
#define ATOL_HTTP_TIMEOUT_MIN (50 * USEC_PER_MSEC)
#define ATOL_MAX_RESPONSE ((size_t) 4 * 1024 * 1024)
/* The register's wall clock as the QR string shows it, "YYYYMMDDTHHMM" (with room to spare). */
#define ATOL_LOCAL_MAX 32
/* The fiscal drive stops signing when a document has waited this long for the OFD (54-FZ art. 4.1, as the
 * emulator models it). */
#define ATOL_OFD_BLOCK_AFTER (30 * USEC_PER_DAY)

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

/* ---- JSON helpers ---- */

static json_object *get_key(json_object *o, const char *key) {
        json_object *v = NULL;

        if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v))
                return NULL;
        return v;
}

static const char *get_string(json_object *o, const char *key) {
        json_object *v = get_key(o, key);

        return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static bool get_int64(json_object *o, const char *key, int64_t *ret) {
        json_object *v = get_key(o, key);

        if (!v || !json_object_is_type(v, json_type_int))
                return false;
        *ret = json_object_get_int64(v);
        return true;
}

static bool get_bool(json_object *o, const char *key, bool *ret) {
        json_object *v = get_key(o, key);

        if (!v || !json_object_is_type(v, json_type_boolean))
                return false;
        *ret = json_object_get_boolean(v);
        return true;
}

static bool get_u32(json_object *o, const char *key, uint32_t *ret) {
        int64_t i;

        if (!get_int64(o, key, &i) || i < 0 || i > UINT32_MAX)
                return false;
        *ret = (uint32_t) i;
        return true;
}

static int add_string(json_object *o, const char *key, const char *s) {
        return json_add(o, key, json_object_new_string(s));
}

/* An exact decimal number token: the text is written as it is (json-c's userdata serializer). The double
 * beside it is never read; no amount passes through floating point. */
static int add_decimal(json_object *o, const char *key, int64_t v, unsigned scale) {
        char buf[MONEY_FORMAT_MAX];

        if (!money_format(buf, sizeof buf, v, scale))
                return -EINVAL;
        return json_add(o, key, json_object_new_double_s(0.0, buf));
}

/* Amounts as ATOL answers them: JSON numbers in roubles ("1500.5", "0.17" [OFDC]). Read from the number's
 * own text and rounded half up to kopecks, in case the web server printed a binary fraction
 * ("99.99000000000001"); they are the register's figures, not ours. */
static int atol_money(json_object *v, int64_t *ret) {
        const char *s, *p;
        int64_t units = 0, frac = 0;
        unsigned digits = 0;
        bool neg = false, round_up = false;

        if (!v)
                return -ENODATA;
        if (json_object_is_type(v, json_type_int)) {
                int64_t i = json_object_get_int64(v);

                if (__builtin_mul_overflow(i, 100, ret))
                        return -ERANGE;
                return 0;
        }
        if (json_object_is_type(v, json_type_double))
                s = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
        else if (json_object_is_type(v, json_type_string))
                s = json_object_get_string(v);
        else
                return -EINVAL;

        p = s;
        if (*p == '-') {
                neg = true;
                p++;
        }
        if (*p < '0' || *p > '9')
                return -EINVAL;
        for (; *p >= '0' && *p <= '9'; p++)
                if (__builtin_mul_overflow(units, 10, &units) ||
                    __builtin_add_overflow(units, *p - '0', &units))
                        return -ERANGE;
        if (*p == '.') {
                for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
                        if (digits < 2)
                                frac = frac * 10 + (*p - '0');
                        else if (digits == 2)
                                round_up = *p >= '5';
                }
                if (digits == 0)
                        return -EINVAL;
        }
        if (*p != 0)
                return -EINVAL; /* an exponent or garbage: not an amount we read */
        if (digits == 1)
                frac *= 10;
        if (__builtin_mul_overflow(units, 100, &units) ||
            __builtin_add_overflow(units, frac + round_up, &units))
                return -ERANGE;
        *ret = neg ? -units : units;
        return 0;
}

static void copy_text(char *buf, size_t l, const char *s) {
        size_t n;

        assert(l > 0);
        if (!s) {
                buf[0] = 0;
                return;
        }
        n = strlen(s);
        if (n >= l) {
                /* Cut at a UTF-8 character boundary: ATOL's descriptions are Russian. */
                n = l - 1;
                while (n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80)
                        n--;
        }
        memcpy(buf, s, n);
        buf[n] = 0;
}

/* ---- the canonical receipt ---- */

/* What the driver keeps of a receipt besides its task: enough to recognise its document in the fiscal drive
 * and to fill DeviceDocument. */
typedef struct AtolReceipt {
        ReceiptType type;
        int64_t total;
        int64_t change;
} AtolReceipt;

static int money_field(json_object *o, const char *key, unsigned scale, int64_t *ret) {
        json_object *v = get_key(o, key);

        if (!v)
                return -ENODATA;
        return money_from_json(v, scale, ret) < 0 ? -EINVAL : 0;
}

static int tag_field(json_object *o, const char *key, int *ret) {
        int64_t i;

        if (!get_int64(o, key, &i) || i < 0 || i > INT_MAX)
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

static int base64_encode(const char *s, char **ret) {
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

        name = get_string(item, "name");
        vat = get_string(item, "vat");
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
                s = get_string(item, "payment_method");
                method = s ? (int) payment_method_from_string(s) : -EINVAL;
        }
        if (tag_field(item, "payment_object_tag1212", &object) < 0) {
                s = get_string(item, "payment_object");
                object = s ? (int) payment_object_from_string(s) : -EINVAL;
        }
        if (tag_field(item, "measure_tag2108", &measure) < 0) {
                s = get_string(item, "measure");
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
        if ((r = add_string(p, "type", "position")) < 0 || (r = add_string(p, "name", name)) < 0 ||
            (r = add_decimal(p, "price", price, MONEY_SCALE_KOPECKS)) < 0 ||
            (r = add_decimal(p, "quantity", quantity, MONEY_SCALE_QUANTITY)) < 0 ||
            (r = add_decimal(p, "amount", total, MONEY_SCALE_KOPECKS)) < 0)
                return r;
        /* infoDiscountAmount: the discount for the printout only; amount is already net of it [KSL]. */
        if (money_field(item, "discount", MONEY_SCALE_KOPECKS, &discount) >= 0 && discount > 0 &&
            (r = add_decimal(p, "infoDiscountAmount", discount, MONEY_SCALE_KOPECKS)) < 0)
                return r;
        if ((r = add_string(tax, "type", vat)) < 0 || (r = json_add(p, "tax", TAKE_PTR(tax))) < 0 ||
            (r = add_string(
                     p, "paymentMethod",
                     int_name_lookup(payment_method_table, ELEMENTSOF(payment_method_table), method))) < 0 ||
            (r = add_string(
                     p, "paymentObject",
                     int_name_lookup(payment_object_table, ELEMENTSOF(payment_object_table), object))) < 0 ||
            (r = add_string(p, "measurementUnit",
                            int_name_lookup(measure_table, ELEMENTSOF(measure_table), measure))) < 0)
                return r;

        s = get_string(item, "mark_code");
        if (s) {
                /* FFD 1.2 marking: imcParams {imcType "auto", imc: the code in base64, itemEstimatedStatus,
                 * imcModeProcessing 0} [KSL MarkingCodeParams_12, ImcType; NAR imc-params.ts]. */
                _cleanup_(json_object_putp) json_object *imc = json_object_new_object();
                _cleanup_free_ char *b64 = NULL;

                if (!imc)
                        return -ENOMEM;
                r = base64_encode(s, &b64);
                if (r < 0)
                        return r;
                if ((r = add_string(imc, "imcType", "auto")) < 0 || (r = add_string(imc, "imc", b64)) < 0 ||
                    (r = add_string(imc, "itemEstimatedStatus", mark_status(type, measure))) < 0 ||
                    (r = json_add(imc, "imcModeProcessing", json_object_new_int(0))) < 0 ||
                    (r = json_add(p, "imcParams", TAKE_PTR(imc))) < 0)
                        return r;
        }

        *ret = TAKE_PTR(p);
        return 0;
}

/* Parses the canonical receipt and builds its task. ret_task may be NULL (FIND needs only the receipt). */
static int atol_receipt_parse(const char *receipt_json, const char *cashier, const char *cashier_inn,
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
        s = get_string(o, "type");
        rc.type = s ? receipt_type_from_string(s) : _RECEIPT_TYPE_INVALID;
        if (rc.type < 0) {
                *why = "unknown receipt type";
                return -EINVAL;
        }
        if (money_field(o, "total", MONEY_SCALE_KOPECKS, &rc.total) < 0) {
                *why = "total is not an exact decimal";
                return -EINVAL;
        }
        if (get_key(o, "change") &&
            (money_field(o, "change", MONEY_SCALE_KOPECKS, &rc.change) < 0 || rc.change < 0)) {
                *why = "change is not an exact decimal";
                return -EINVAL;
        }

        task = json_object_new_object();
        items = json_object_new_array();
        payments = json_object_new_array();
        if (!task || !items || !payments)
                return -ENOMEM;
        if ((r = add_string(task, "type", task_type_table[rc.type])) < 0)
                return r;

        /* taxationType; without one the register applies its default [NAR: optional]. */
        v = get_key(o, "taxation_tag1055");
        if (v || get_key(o, "taxation")) {
                int64_t bit = -1;
                const char *name;

                if (!get_int64(o, "taxation_tag1055", &bit)) {
                        s = get_string(o, "taxation");
                        bit = s ? (int64_t) taxation_from_string(s) : -1;
                }
                name = bit > 0 && bit < INT_MAX
                               ? int_name_lookup(taxation_table, ELEMENTSOF(taxation_table), (int) bit)
                               : NULL;
                if (!name) {
                        *why = "a taxation system ATOL has no name for";
                        return -EINVAL;
                }
                if ((r = add_string(task, "taxationType", name)) < 0)
                        return r;
        }

        /* operator {name, vatin}: tags 1021, 1203 [KSL OperatorParams; the 1C module sends vatin only when
         * filled]. The receipt's cashier, else the configured default, else none (the register's own). */
        v = get_key(o, "cashier");
        if (v && get_string(v, "name")) {
                cashier = get_string(v, "name");
                cashier_inn = get_string(v, "inn");
        }
        if (!isempty(cashier)) {
                _cleanup_(json_object_putp) json_object *op = json_object_new_object();

                if (!op)
                        return -ENOMEM;
                if ((r = add_string(op, "name", cashier)) < 0 ||
                    (!isempty(cashier_inn) && (r = add_string(op, "vatin", cashier_inn)) < 0) ||
                    (r = json_add(task, "operator", TAKE_PTR(op))) < 0)
                        return r;
        }

        /* Corrections: correctionType self|instruction (tag 1173), correctionBaseDate (1178),
         * correctionBaseNumber (1179, by order only) [KSL CreateCorrectionReceiptOperation,
         * CorrectionReceiptCorrectionType; NAR correction.task.ts, correction-type.ts]. */
        v = get_key(o, "correction");
        if (receipt_type_is_correction(rc.type)) {
                char date[11];
                const char *ctype = get_string(v, "type");
                int64_t tag = -1;

                if (!ctype && get_int64(v, "type_tag1173", &tag))
                        ctype = tag == 0 ? "self" : tag == 1 ? "by_order" : NULL;
                if (!v || !ctype || (!streq(ctype, "self") && !streq(ctype, "by_order"))) {
                        *why = "a correction receipt without its correction type";
                        return -EINVAL;
                }
                if (atol_date(get_string(v, "date"), date) < 0) {
                        *why = "a correction receipt without the date of the corrected settlement";
                        return -EINVAL;
                }
                /* "self" is the register's word too; "by_order" is its "instruction". */
                r = add_string(task, "correctionType", streq(ctype, "self") ? "self" : "instruction");
                if (r < 0 || (r = add_string(task, "correctionBaseDate", date)) < 0)
                        return r;
                s = get_string(v, "order_number");
                if (streq(ctype, "by_order")) {
                        if (isempty(s)) {
                                *why = "a correction by order without the order's number";
                                return -EINVAL;
                        }
                        if ((r = add_string(task, "correctionBaseNumber", s)) < 0)
                                return r;
                }
        }

        /* clientInfo.emailOrPhone (tag 1008: one contact) [KSL BuyerParams; NAR client-info.ts]. */
        v = get_key(o, "customer");
        s = get_string(v, "email") ?: get_string(v, "phone");
        if (s) {
                _cleanup_(json_object_putp) json_object *ci = json_object_new_object();

                if (!ci)
                        return -ENOMEM;
                if ((r = add_string(ci, "emailOrPhone", s)) < 0 ||
                    (r = json_add(task, "clientInfo", TAKE_PTR(ci))) < 0)
                        return r;
        }

        arr = get_key(o, "items");
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
        arr = get_key(o, "payments");
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
                if (!get_int64(e, "amount_tag", &tag)) {
                        s = get_string(e, "type");
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
                if ((r = add_string(pay, "type", name)) < 0 ||
                    (r = add_decimal(pay, "sum", amount, MONEY_SCALE_KOPECKS)) < 0)
                        return r;
                if (json_object_array_add(payments, TAKE_PTR(pay)) < 0)
                        return -ENOMEM;
        }
        if (!get_key(o, "change") && paid > rc.total)
                rc.change = paid - rc.total;

        if ((r = json_add(task, "items", TAKE_PTR(items))) < 0 ||
            (r = json_add(task, "payments", TAKE_PTR(payments))) < 0 ||
            /* total: the register checks it against the items (error 227 INVALID_TOTAL) [KSL: optional]. */
            (r = add_decimal(task, "total", rc.total, MONEY_SCALE_KOPECKS)) < 0)
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
static int uuid_random(char ret[static DEVICE_ATOL_UUID_MAX]) {
        uint8_t b[16];

        if (getrandom(b, sizeof b, 0) != (ssize_t) sizeof b)
                return -errno ?: -EIO;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        uuid_format(b, ret);
        return 0;
}

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

/* A task's status in GET /api/v2/requests/{uuid} [AWS Consts, Utils.getStatusString; the 1C client]. */
typedef enum AtolStatus {
        ATOL_STATUS_WAIT,
        ATOL_STATUS_IN_PROGRESS,
        ATOL_STATUS_READY,
        ATOL_STATUS_ERROR,
        ATOL_STATUS_INTERRUPTED, /* not run: an earlier task of the request failed (error 502) */
        ATOL_STATUS_BLOCKED,     /* outcome unknown, the queue stopped until the server resolves it */
        ATOL_STATUS_CANCELED,    /* DELETE while it still waited */
        ATOL_STATUS_UNKNOWN,
} AtolStatus;

static AtolStatus atol_status(json_object *e) {
        static const char *const names[] = {
                [ATOL_STATUS_WAIT] = "wait",
                [ATOL_STATUS_IN_PROGRESS] = "inProgress",
                [ATOL_STATUS_READY] = "ready",
                [ATOL_STATUS_ERROR] = "error",
                [ATOL_STATUS_INTERRUPTED] = "interrupted",
                [ATOL_STATUS_BLOCKED] = "blocked",
                [ATOL_STATUS_CANCELED] = "canceled",
        };
        const char *s = get_string(e, "status");

        if (s)
                for (size_t i = 0; i < ELEMENTSOF(names); i++)
                        if (streq(names[i], s))
                                return (AtolStatus) i;
        return ATOL_STATUS_UNKNOWN;
}

static bool atol_status_final(AtolStatus s) {
        return IN_SET(s, ATOL_STATUS_READY, ATOL_STATUS_ERROR, ATOL_STATUS_INTERRUPTED,
                      ATOL_STATUS_CANCELED);
}

/* The error of a task: /api/v2 answers {"error": {"code", "description"}}, the older /requests
 * {"errorCode", "errorDescription"} [AWS Result.toJson; the 1C client and a PHP client read both]. */
static int atol_error(json_object *e, const char **ret_description) {
        json_object *err = get_key(e, "error");
        int64_t code = 0;

        if (err && json_object_is_type(err, json_type_object)) {
                (void) get_int64(err, "code", &code);
                *ret_description = get_string(err, "description");
        } else {
                (void) get_int64(e, "errorCode", &code);
                *ret_description = get_string(e, "errorDescription");
        }
        return code < 0 || code > INT_MAX ? INT_MAX : (int) code;
}

static json_object *atol_task_result(json_object *results, size_t i) {
        json_object *e = json_object_array_get_idx(results, i);

        return atol_status(e) == ATOL_STATUS_READY ? get_key(e, "result") : NULL;
}

/* "2018-03-06T13:52:00+03:00" (fiscalDocumentDateTime: minute precision, the register's offset [KSL, the
 * web server MOCK examples]) into CLOCK_REALTIME usec and the register's wall clock "YYYYMMDDTHHMM" as the
 * FNS QR string shows it. Seconds, fractions and "Z" are accepted; without an offset the time is taken as
 * UTC (assumption). A date alone ("2025-01-31", "2025.01.31") is midnight. */
static int atol_datetime(const char *s, usec_t *ret, char *local) {
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
static int atol_fiscal_sign(json_object *v, char ret[static DEVICE_FISCAL_SIGN_LEN + 1]) {
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

static int copy_id(char *buf, size_t l, json_object *v) {
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
static void atol_qr(DeviceDocument *d, const char *local) {
        snprintf(d->qr, sizeof d->qr, "t=%s&s=%s&fn=%s&i=%" PRIu32 "&fp=%s&n=%u", local,
                 MONEY_FORMAT(d->total, MONEY_SCALE_KOPECKS), d->fn_number, d->fiscal_document_number,
                 d->fiscal_sign, receipt_type_to_ffd(d->receipt_type));
}

/* The state the register reports, gathered from one request of queries. */
typedef struct AtolState {
        DeviceStatus status;
        bool have_shift, shift_expired, paper_out, cover_open, fn_full, have_totals, have_fd;
        DeviceOfdQueue ofd;
} AtolState;

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
        json_object *receipts = get_key(get_key(res, "shiftTotals"), "receipts");
        DeviceTotals t = {};

        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                json_object *k = get_key(receipts, kinds[i].key), *p = get_key(k, "payments");
                DeviceTypeTotals *tt = t.by_type + kinds[i].type;

                (void) get_u32(k, "count", &tt->count);
                (void) atol_money(get_key(k, "sum"), &tt->total);
                for (size_t f = 0; f < _DEVICE_PAYMENT_MAX; f++)
                        (void) atol_money(get_key(p, forms[f]), &tt->payments[f]);
        }
        *ret = t;
}

static unsigned taxation_bit(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(taxation_table); i++)
                if (streq(taxation_table[i].name, name))
                        return (unsigned) taxation_table[i].value;
        return 0;
}

/* One query task's result into the state. */
static void read_query(const char *type, json_object *res, AtolState *st) {
        DeviceStatus *s = &st->status;
        json_object *o, *w;
        const char *v;
        bool b;

        if (streq(type, "getShiftStatus")) {
                /* shiftStatus {state closed|opened|expired, number, expiredTime} [KSL ShiftStatus; NAR;
                 * the FAD client reads state]. */
                o = get_key(res, "shiftStatus");
                v = get_string(o, "state");
                if (!v)
                        return;
                st->have_shift = true;
                s->shift_open = streq(v, "opened") || streq(v, "expired");
                st->shift_expired = streq(v, "expired");
                (void) get_u32(o, "number", &s->shift_number);
                /* The shift's opening is not reported; its expiry is, 24 hours later (54-FZ art. 4.3):
                 * the opening is derived from it (assumption). */
                if (s->shift_open) {
                        usec_t t;

                        if (atol_datetime(get_string(o, "expiredTime"), &t, NULL) >= 0 &&
                            t > DEVICE_SHIFT_MAX_USEC)
                                s->shift_open_usec = t - DEVICE_SHIFT_MAX_USEC;
                }
        } else if (streq(type, "getFnStatus")) {
                /* fnStatus.fiscalDocumentNumber: the last document [NAR fn-status.ts; OFDC
                 * get_last_fd_number]. */
                if (get_u32(get_key(res, "fnStatus"), "fiscalDocumentNumber", &s->last_fiscal_document))
                        st->have_fd = true;
        } else if (streq(type, "getDeviceStatus")) {
                /* deviceStatus {paperPresent, coverOpened, shift, ...} [KSL KKTStatus; NAR device-status.ts;
                 * the 1C client reads paperPresent]. */
                o = get_key(res, "deviceStatus");
                if (get_bool(o, "paperPresent", &b))
                        st->paper_out = !b;
                if (get_bool(o, "coverOpened", &b))
                        st->cover_open = b;
                v = get_string(o, "shift");
                if (v && streq(v, "expired"))
                        st->shift_expired = true;
        } else if (streq(type, "getShiftTotals")) {
                read_totals(res, &s->shift_totals);
                st->have_totals = true;
        } else if (streq(type, "getFnInfo")) {
                /* fnInfo {serial, validityDate, livePhase, warnings{memoryOverflow, resourceExhausted,
                 * needReplacement, ...}} [KSL FnInfo, FnLivePhaseType, FnWarning; NAR fn-info.ts]. */
                o = get_key(res, "fnInfo");
                copy_text(s->fn_number, sizeof s->fn_number, get_string(o, "serial"));
                (void) atol_datetime(get_string(o, "validityDate"), &s->fn_valid_until, NULL);
                v = get_string(o, "livePhase");
                w = get_key(o, "warnings");
                if ((v && (streq(v, "postFiscalMode") || streq(v, "accessArchive"))) ||
                    (get_bool(w, "memoryOverflow", &b) && b))
                        st->fn_full = true;
        } else if (streq(type, "ofdExchangeStatus")) {
                /* status {notSentCount, notSentFirstDocNumber, notSentFirstDocDateTime} [KSL ExchangeStatus;
                 * NAR ofd-status.ts]. */
                o = get_key(res, "status");
                (void) get_u32(o, "notSentCount", &st->ofd.unsent);
                (void) get_u32(o, "notSentFirstDocNumber", &st->ofd.first_unsent);
                if (st->ofd.unsent > 0)
                        (void) atol_datetime(get_string(o, "notSentFirstDocDateTime"),
                                             &st->ofd.first_unsent_usec, NULL);
                s->ofd = st->ofd;
        } else if (streq(type, "getDeviceInfo")) {
                /* deviceInfo {model, modelName, serial, firmwareVersion, ...} [KSL KKTInfo]. */
                o = get_key(res, "deviceInfo");
                copy_text(s->model, sizeof s->model, get_string(o, "modelName"));
                copy_text(s->serial, sizeof s->serial, get_string(o, "serial"));
        } else if (streq(type, "getRegistrationInfo")) {
                /* organization {vatin, taxationTypes[]}, device {registrationNumber} [KSL
                 * GetKKTRegistrationInfoResult, OrganizationParams, KKTParams]. */
                o = get_key(res, "organization");
                copy_text(s->inn, sizeof s->inn, get_string(o, "vatin"));
                w = get_key(o, "taxationTypes");
                if (w && json_object_is_type(w, json_type_array))
                        for (size_t i = 0; i < json_object_array_length(w); i++) {
                                json_object *e = json_object_array_get_idx(w, i);

                                if (json_object_is_type(e, json_type_string))
                                        s->taxations |= taxation_bit(json_object_get_string(e));
                        }
                copy_text(s->registration_number, sizeof s->registration_number,
                          get_string(get_key(res, "device"), "registrationNumber"));
        }
}

/* The standing condition, worst first. */
static DeviceFault state_condition(const AtolState *st) {
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

/* ---- the driver's state ---- */

typedef struct Atol Atol;

typedef enum AtolOutcome {
        ATOL_REPLY_RESULTS,      /* the request's results (final or not: see AtolReply.final) */
        ATOL_REPLY_UNKNOWN_UUID, /* GET answered 404: the web server has no such request */
        ATOL_REPLY_REFUSED,      /* an HTTP error answer: the request was not taken (or not readable) */
        ATOL_REPLY_FAILED,       /* no answer (connection refused, timeout, reset) */
} AtolOutcome;

typedef struct AtolReply {
        AtolOutcome outcome;
        int error; /* FAILED */
        long http_status;
        bool sent;     /* our POST was handed over: the server may have taken it */
        bool final;    /* RESULTS: every task is ready, error, interrupted or canceled */
        bool all_wait; /* RESULTS: no task has started yet */
        json_object *root;
        json_object *results; /* RESULTS: the "results" array, one element per task */
        char message[128];    /* REFUSED: the server's words */
} AtolReply;

typedef void (*AtolHandler)(Atol *a, AtolReply *r);

/* What an unknown outcome turned out to be. */
typedef enum AtolVerdict {
        ATOL_MADE,
        ATOL_NOT_MADE,
        ATOL_UNDECIDED, /* the register could not be asked, or too much happened since: ask again later */
} AtolVerdict;

typedef void (*AtolVerdictHandler)(Atol *a, AtolVerdict v);

/* Which fiscal document an operation makes (and looks for). */
typedef enum AtolKind {
        ATOL_KIND_RECEIPT,
        ATOL_KIND_OPEN_SHIFT,
        ATOL_KIND_CLOSE_SHIFT,
} AtolKind;

struct Atol {
        sd_event *event;
        CurlGlue *glue;
        char *url_requests; /* <URL>/api/v2/requests */
        char *auth_header;  /* "Authorization: Basic ..."; NULL: none. Never logged. */
        usec_t timeout;
        char *cashier, *cashier_inn;

        /* What the register said about itself, for the documents. */
        char fn_number[DEVICE_FN_NUMBER_MAX + 1];
        char registration_number[DEVICE_REGISTRATION_NUMBER_MAX + 1];
        char inn[DEVICE_INN_MAX + 1];
        char serial[DEVICE_SERIAL_MAX + 1];
        uint32_t last_fd;
        bool continue_print; /* a document was closed but not fully printed: continuePrint first */

        /* The receipt seen last: its requests [0, cache_free) exist and made nothing. */
        char cache_receipt[DEVICE_RECEIPT_ID_MAX + 1];
        unsigned cache_free;

        sd_event_source *timer_source;
        sd_event_source *done_source;
        CurlRequest *http;

        /* The exchange with the web server under way. */
        char uuid[DEVICE_ATOL_UUID_MAX];
        bool poll;      /* GET until every task is final (or the budget is spent) */
        bool posted;    /* a POST of this exchange was handed over */
        bool duplicate; /* the POST met a uuid the server has (409) */
        bool accepted;  /* the POST was answered 201 */
        usec_t interval;
        AtolHandler handler;
        void (*timer_fn)(Atol *a);

        /* The operation. */
        bool busy;
        bool interrupted;
        DeviceOperation op;
        char *receipt_id, *receipt_json, *req_cashier, *req_cashier_inn;
        uint32_t req_shift;
        DeviceDriverDone done;
        void *userdata;
        DeviceResult result;
        usec_t deadline, hard_deadline; /* CLOCK_MONOTONIC */
        bool maybe_made;                /* a fiscal request of this operation may have been taken */
        void (*after_prelude)(Atol *a);

        AtolKind kind;
        AtolReceipt receipt;
        char *task;                /* the fiscal task, JSON */
        uint32_t shift;            /* the shift a shift document's uuid names */
        unsigned attempt;          /* the request (slot) of the walk */
        bool lookup_only;          /* the walk only looks for a document (Z of a closed shift) */
        json_object *last_results; /* the walk: the results of the slot before `attempt` */
        bool walk_unasked;         /* the walk failed to reach the web server at all */
        uint32_t before;           /* reconciling: the register's last document before the request */
        uint32_t rec_last;
        unsigned rec_count;
        AtolVerdictHandler on_verdict;
        json_object *found_tlv; /* reconciling: the document that is ours */
        int fail_code;          /* the ATOL error of a request that made nothing */
        char fail_message[128];
        AtolState state; /* shift operations: what the register said before */
};

static void atol_start_prelude(Atol *a);

static usec_t atol_left(Atol *a, bool hard) {
        usec_t n = now(CLOCK_MONOTONIC), d = hard ? a->hard_deadline : a->deadline;

        return d > n ? d - n : 0;
}

/* ---- finishing an operation ---- */

static void atol_clear_op(Atol *a) {
        a->receipt_id = mfree(a->receipt_id);
        a->receipt_json = mfree(a->receipt_json);
        a->req_cashier = mfree(a->req_cashier);
        a->req_cashier_inn = mfree(a->req_cashier_inn);
        a->task = mfree(a->task);
        if (a->last_results) {
                json_object_put(a->last_results);
                a->last_results = NULL;
        }
        if (a->found_tlv) {
                json_object_put(a->found_tlv);
                a->found_tlv = NULL;
        }
        a->busy = false;
}

/* done() runs from a defer source: never from inside start(), never twice. */
static void atol_finish(Atol *a) {
        int r;

        (void) sd_event_source_set_enabled(a->timer_source, SD_EVENT_OFF);
        r = sd_event_source_set_enabled(a->done_source, SD_EVENT_ONESHOT);
        if (r < 0)
                log_error_errno(r, "atol-web: failed to schedule the end of an operation: %m");
}

static void atol_fail(Atol *a, int error, DeviceFault fault, const char *message) {
        a->result.error = error;
        a->result.fault = fault;
        copy_text(a->result.message, sizeof a->result.message, message);
        atol_finish(a);
}

static void atol_fail_fault(Atol *a, DeviceFault fault, const char *message) {
        atol_fail(a, device_fault_to_errno(fault), fault, message);
}

static int atol_on_done(sd_event_source *s, void *userdata) {
        Atol *a = userdata;
        DeviceDriverDone done = a->done;
        void *u = a->userdata;
        DeviceResult result = a->result;

        assert(a->busy);
        atol_clear_op(a);
        if (result.error < 0)
                log_debug("atol-web: %s failed: %s (%s) %s", device_operation_to_string(a->op),
                          strerror(-result.error), strna(device_fault_to_string(result.fault)),
                          result.message);
        done(&result, u);
        return 0;
}

/* ---- the exchange with the web server ---- */

static void atol_schedule(Atol *a, usec_t delay, void (*fn)(Atol *a)) {
        int r;

        a->timer_fn = fn;
        r = sd_event_source_set_time_relative(a->timer_source, delay);
        if (r >= 0)
                r = sd_event_source_set_enabled(a->timer_source, SD_EVENT_ONESHOT);
        if (r < 0) {
                log_error_errno(r, "atol-web: failed to arm a timer: %m");
                atol_fail(a, r, DEVICE_FAULT_ERROR, NULL);
        }
}

static int atol_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Atol *a = userdata;
        void (*fn)(Atol * a) = a->timer_fn;

        a->timer_fn = NULL;
        if (fn)
                fn(a);
        return 0;
}

static void atol_reply(Atol *a, AtolReply *r) {
        AtolHandler h = a->handler;

        a->handler = NULL;
        r->sent = r->sent || a->posted;
        h(a, r);
        json_object_put(r->root);
}

static void atol_reply_simple(Atol *a, AtolOutcome outcome, int error, long status, const char *message) {
        AtolReply r = { .outcome = outcome, .error = error, .http_status = status };

        copy_text(r.message, sizeof r.message, message);
        atol_reply(a, &r);
}

/* The server's words from an error answer: {"error": {"code", "description"}} or a text body. */
static void http_message(const char *body, char *buf, size_t l) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        const char *d = NULL;

        buf[0] = 0;
        if (isempty(body))
                return;
        o = json_tokener_parse(body);
        if (o) {
                (void) atol_error(o, &d);
                if (!d)
                        d = get_string(o, "description") ?: get_string(o, "message");
        }
        copy_text(buf, l, d ?: (o ? NULL : body));
}

typedef void (*CurlDone)(CurlRequest *req, int error, long status, const char *body, size_t size,
                         void *userdata);

static int atol_http(Atol *a, const char *method, const char *url, const char *body, bool hard,
                     CurlDone cb) {
        const char *headers[] = { a->auth_header, NULL };
        usec_t left = MAX(atol_left(a, hard), ATOL_HTTP_TIMEOUT_MIN);

        assert(!a->http);
        return curl_glue_request_new(a->glue, &a->http, method, url,
                                     &(CurlRequestOptions){
                                             .body = body,
                                             .body_size = body ? strlen(body) : 0,
                                             .content_type = body ? "application/json" : NULL,
                                             .connect_timeout = MIN(left, ATOL_CONNECT_TIMEOUT_MAX),
                                             .timeout = left,
                                             .headers = a->auth_header ? headers : NULL,
                                             .max_response_size = ATOL_MAX_RESPONSE,
                                     },
                                     cb, a);
}

static void atol_get_now(Atol *a);

static void atol_on_get(CurlRequest *req, int error, long status, const char *body, size_t size,
                        void *userdata) {
        Atol *a = userdata;
        /* The body lives as long as the request: freed when this returns. */
        _cleanup_(curl_request_freep) CurlRequest *owned = TAKE_PTR(a->http);
        AtolReply r = { .outcome = ATOL_REPLY_RESULTS, .http_status = status };
        bool hard = a->posted; /* learning the fate of our own POST may use the reserve */

        if (error < 0 || status >= 500) {
                /* The server may be restarting: ask again while the budget lasts. */
                if (atol_left(a, hard) > a->interval) {
                        atol_schedule(a, a->interval, atol_get_now);
                        a->interval = MIN(a->interval * 2, ATOL_POLL_MAX);
                        return;
                }
                atol_reply_simple(a, ATOL_REPLY_FAILED, error < 0 ? error : -EIO, status, NULL);
                return;
        }
        if (status == 404) {
                /* A 409 without such a uuid is not a duplicate: Web Requests answers 409 for a register that
                 * is not connected ("ККТ [id] не подключена") as well. */
                if (a->duplicate)
                        atol_reply_simple(a, ATOL_REPLY_REFUSED, -ENOTCONN, 409,
                                          "the register is not connected");
                else
                        atol_reply_simple(a, ATOL_REPLY_UNKNOWN_UUID, 0, status, NULL);
                return;
        }
        if (status != 200) {
                char m[128];

                http_message(body, m, sizeof m);
                atol_reply_simple(a, ATOL_REPLY_REFUSED, -EIO, status, m);
                return;
        }

        r.root = json_tokener_parse(body);
        r.results = get_key(r.root, "results");
        if (!r.results || !json_object_is_type(r.results, json_type_array) ||
            json_object_array_length(r.results) == 0) {
                json_object_put(r.root);
                log_debug("atol-web: unreadable answer to GET %s: %.200s", a->uuid, strna(body));
                atol_reply_simple(a, ATOL_REPLY_FAILED, -EBADMSG, status, "unreadable answer");
                return;
        }
        r.final = r.all_wait = true;
        for (size_t i = 0; i < json_object_array_length(r.results); i++) {
                AtolStatus st = atol_status(json_object_array_get_idx(r.results, i));

                if (!atol_status_final(st))
                        r.final = false;
                if (st != ATOL_STATUS_WAIT)
                        r.all_wait = false;
        }
        if (!r.final && a->poll && atol_left(a, false) > a->interval && !a->interrupted) {
                json_object_put(r.root);
                atol_schedule(a, a->interval, atol_get_now);
                a->interval = MIN(a->interval * 2, ATOL_POLL_MAX);
                return;
        }
        atol_reply(a, &r);
}

static void atol_get_now(Atol *a) {
        _cleanup_free_ char *url = NULL;
        int r;

        if (asprintf(&url, "%s/%s", a->url_requests, a->uuid) < 0) {
                atol_reply_simple(a, ATOL_REPLY_FAILED, -ENOMEM, 0, NULL);
                return;
        }
        r = atol_http(a, "GET", url, NULL, a->posted, atol_on_get);
        if (r < 0)
                atol_reply_simple(a, ATOL_REPLY_FAILED, r, 0, NULL);
}

/* GET /api/v2/requests/{uuid} [AWS JsonTaskServlet.doGet]; with poll, again until every task is final. */
static void atol_fetch(Atol *a, const char *uuid, bool poll, AtolHandler handler) {
        assert(!a->handler);
        strcpy(a->uuid, uuid);
        a->poll = poll;
        a->posted = a->duplicate = a->accepted = false;
        a->interval = ATOL_POLL_MIN;
        a->handler = handler;
        atol_get_now(a);
}

static void atol_on_post(CurlRequest *req, int error, long status, const char *body, size_t size,
                         void *userdata) {
        Atol *a = userdata;
        char m[128];

        if (error >= 0 && !IN_SET(status, 201, 409))
                http_message(body, m, sizeof m);
        a->http = curl_request_free(a->http);

        if (error < 0) {
                /* Whether the server took it is for GET to tell, even when libcurl says it was not sent:
                 * libcurl re-sends a request whose reused connection died without an answer, and then
                 * reports only that last attempt ("connection refused" after the first one was taken). */
                a->posted = true;
                atol_get_now(a);
                return;
        }
        if (status == 201) { /* Created [AWS: SC_CREATED; the 1C and FAD clients check 201] */
                a->posted = a->accepted = true;
                atol_schedule(a, a->interval, atol_get_now);
                return;
        }
        if (status == 409) { /* a uuid the server has [AWS: NotUniqueKeyException -> SC_CONFLICT] */
                a->posted = a->duplicate = true;
                atol_get_now(a);
                return;
        }
        if (status >= 500) {
                /* An internal error may come after the request was stored: ask. */
                a->posted = true;
                atol_get_now(a);
                return;
        }
        atol_reply_simple(a, ATOL_REPLY_REFUSED, -EIO, status, m);
}

/* POST /api/v2/requests {"uuid": ..., "request": [tasks]} [AWS JsonTaskServlet.doPost], then GET until
 * every task is final. */
static void atol_submit(Atol *a, const char *uuid, const char *tasks, AtolHandler handler) {
        _cleanup_free_ char *body = NULL;
        int r;

        assert(!a->handler);
        strcpy(a->uuid, uuid);
        a->poll = true;
        a->posted = a->duplicate = a->accepted = false;
        a->interval = ATOL_POLL_MIN;
        a->handler = handler;
        if (asprintf(&body, "{\"uuid\":\"%s\",\"request\":%s}", uuid, tasks) < 0) {
                atol_reply_simple(a, ATOL_REPLY_FAILED, -ENOMEM, 0, NULL);
                return;
        }
        r = atol_http(a, "POST", a->url_requests, body, false, atol_on_post);
        if (r < 0)
                atol_reply_simple(a, ATOL_REPLY_FAILED, r, 0, NULL);
}

/* A request of queries (nothing fiscal) under a fresh uuid. */
static void atol_query(Atol *a, const char *tasks, AtolHandler handler) {
        char uuid[DEVICE_ATOL_UUID_MAX];
        int r;

        r = uuid_random(uuid);
        if (r < 0) {
                a->handler = handler;
                atol_reply_simple(a, ATOL_REPLY_FAILED, r, 0, NULL);
                return;
        }
        atol_submit(a, uuid, tasks, handler);
}

static void atol_on_delete(CurlRequest *req, int error, long status, const char *body, size_t size,
                           void *userdata) {
        Atol *a = userdata;

        a->http = curl_request_free(a->http);
        /* 200: every task was still waiting and is cancelled now; anything else (405 in AWS, 409 in Web
         * Requests: started or done) is "not cancelled". */
        atol_reply_simple(a, error >= 0 && status == 200 ? ATOL_REPLY_RESULTS : ATOL_REPLY_REFUSED,
                          error < 0 ? error : 0, status, NULL);
}

/* DELETE /api/v2/requests/{uuid}: only a request whose tasks all still wait [AWS JsonTaskServlet.doDelete;
 * the 1C client cancels a task that did not start in time]. */
static void atol_cancel(Atol *a, const char *uuid, AtolHandler handler) {
        _cleanup_free_ char *url = NULL;
        int r;

        assert(!a->handler);
        strcpy(a->uuid, uuid);
        a->posted = false;
        a->handler = handler;
        if (asprintf(&url, "%s/%s", a->url_requests, uuid) < 0) {
                atol_reply_simple(a, ATOL_REPLY_FAILED, -ENOMEM, 0, NULL);
                return;
        }
        r = atol_http(a, "DELETE", url, NULL, true, atol_on_delete);
        if (r < 0)
                atol_reply_simple(a, ATOL_REPLY_FAILED, r, 0, NULL);
}

/* A failure to reach or use the web server, as a fault. */
static void atol_fail_http(Atol *a, const AtolReply *r) {
        char m[160];

        if (r->outcome == ATOL_REPLY_FAILED) {
                snprintf(m, sizeof m, "ATOL web server: %s", strerror(-r->error));
                atol_fail_fault(a, DEVICE_FAULT_NOT_CONNECTED, m);
        } else if (IN_SET(r->http_status, 401, 403)) {
                snprintf(m, sizeof m, "ATOL web server refused our credentials (HTTP %ld)", r->http_status);
                atol_fail(a, -EACCES, DEVICE_FAULT_ERROR, m);
        } else if (IN_SET(r->http_status, 404, 409) || r->error == -ENOTCONN) {
                /* 404: no such device; 409 without our uuid: the register is not connected [Web Requests as
                 * KKTSITE reproduces it]. */
                snprintf(m, sizeof m, "ATOL web server (HTTP %ld): %s", r->http_status,
                         isempty(r->message) ? "the register is not available" : r->message);
                atol_fail_fault(a, DEVICE_FAULT_NOT_CONNECTED, m);
        } else {
                snprintf(m, sizeof m, "ATOL web server (HTTP %ld): %s", r->http_status, r->message);
                atol_fail(a, -EIO, DEVICE_FAULT_ERROR, m);
        }
}

/* A task that failed, as a fault; the register's own words as the message. */
static void atol_fail_task(Atol *a, int code, const char *description) {
        char m[160];
        DeviceFault f = device_atol_error_fault(code, NULL);

        if (f == DEVICE_FAULT_REJECTED)
                /* The register's errorDescription as it is: the receipt's print_rejected reason. */
                snprintf(m, sizeof m, "%s", strempty(description));
        else
                snprintf(m, sizeof m, "ATOL error %d: %s", code, strempty(description));
        atol_fail(a, f == DEVICE_FAULT_REJECTED ? -EINVAL : device_fault_to_errno(f), f, m);
}

/* ---- the documents ---- */

static void atol_note_fd(Atol *a, uint32_t fd) {
        a->last_fd = MAX(a->last_fd, fd);
}

/* fiscalParams {fiscalDocumentNumber, fiscalDocumentSign, fiscalDocumentDateTime, fiscalReceiptNumber,
 * shiftNumber, fnNumber, registrationNumber, total, fnsUrl} [KSL FiscalDocumentParams,
 * ReceiptFiscalDocumentParams; NAR fiscal-params.ts] into the receipt's document. */
static int document_from_params(Atol *a, json_object *fp, DeviceDocument *ret) {
        DeviceDocument d = {};
        char local[ATOL_LOCAL_MAX];
        int r;

        if (!get_u32(fp, "fiscalDocumentNumber", &d.fiscal_document_number) ||
            atol_fiscal_sign(get_key(fp, "fiscalDocumentSign"), d.fiscal_sign) < 0 ||
            atol_datetime(get_string(fp, "fiscalDocumentDateTime"), &d.datetime, local) < 0)
                return -EBADMSG;
        (void) get_u32(fp, "shiftNumber", &d.shift_number);
        (void) get_u32(fp, "fiscalReceiptNumber", &d.document_number_in_shift);
        if (copy_id(d.fn_number, sizeof d.fn_number, get_key(fp, "fnNumber")) < 0)
                strcpy(d.fn_number, a->fn_number);
        r = copy_id(d.registration_number, sizeof d.registration_number, get_key(fp, "registrationNumber"));
        if (r < 0)
                strcpy(d.registration_number, a->registration_number);
        r = atol_money(get_key(fp, "total"), &d.total);
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
        copy_text(d.receipt_id, sizeof d.receipt_id, a->receipt_id);
        atol_qr(&d, local);
        *ret = d;
        return 0;
}

static json_object *tlv_get(json_object *tlv, unsigned tag) {
        char key[8];

        snprintf(key, sizeof key, "%u", tag);
        return get_key(tlv, key);
}

static bool tlv_u32(json_object *tlv, unsigned tag, uint32_t *ret) {
        char key[8];

        snprintf(key, sizeof key, "%u", tag);
        return get_u32(tlv, key, ret);
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
        if (copy_id(d.fn_number, sizeof d.fn_number, tlv_get(tlv, 1041)) < 0)
                strcpy(d.fn_number, a->fn_number);
        if (copy_id(d.registration_number, sizeof d.registration_number, tlv_get(tlv, 1037)) < 0)
                strcpy(d.registration_number, a->registration_number);
        if (copy_id(d.inn, sizeof d.inn, tlv_get(tlv, 1018)) < 0)
                strcpy(d.inn, a->inn);
        strcpy(d.serial, a->serial);
        d.change = a->receipt.change;
        d.receipt_type = a->receipt.type;
        copy_text(d.receipt_id, sizeof d.receipt_id, a->receipt_id);
        atol_qr(&d, local);
        *ret = d;
        return 0;
}

/* Whether a document read back is the one this operation makes: its form and, for a receipt, the
 * settlement (1054) and the total (1020). Within DEVICE_ATOL_RECONCILE_WINDOW documents of the number noted
 * before our request, with nothing of ours printed meanwhile, that is ours (assumption: nobody else prints
 * on this register at the same time). */
static bool tlv_is_ours(Atol *a, json_object *tlv) {
        const char *form = get_string(tlv, "fiscalDocumentType");
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
                (void) get_u32(get_key(atol_task_result(results, 0), "fnStatus"), "fiscalDocumentNumber",
                               ret_before);

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
                json_object *tlv = get_key(atol_task_result(r->results, i), "documentTLV");

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
                     ? get_key(atol_task_result(r->results, 0), "fnStatus")
                     : NULL;
        if (!fs || !get_u32(fs, "fiscalDocumentNumber", &a->rec_last)) {
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
                if (!get_u32(fp, "fiscalDocumentNumber", &rep->fiscal_document_number) ||
                    atol_fiscal_sign(get_key(fp, "fiscalDocumentSign"), rep->fiscal_sign) < 0 ||
                    atol_datetime(get_string(fp, "fiscalDocumentDateTime"), &rep->datetime, local) < 0)
                        return -EBADMSG;
                if (!get_u32(fp, "shiftNumber", &rep->shift_number))
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
        json_object *fp = task_result ? get_key(task_result, "fiscalParams") : NULL;
        bool b;
        int r;

        if (!tlv && !get_key(fp, "fiscalDocumentNumber")) {
                reconcile(a, before, made_on_reconciled);
                return;
        }

        /* warnings.notPrinted: "Документ закрыт, но не допечатан" [KSL WarningFlags]: the fiscal drive has
         * it, the paper copy is incomplete: continuePrint ("Допечатать документ" [KSL], which "завершится с
         * ошибкой, если это невозможно" [SMP]) before the next operation. A document found only in the
         * fiscal drive may be unprinted as well. */
        if ((get_bool(get_key(task_result, "warnings"), "notPrinted", &b) && b) || tlv)
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
        copy_text(a->cache_receipt, sizeof a->cache_receipt, a->receipt_id);
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
        copy_text(a->fail_message, sizeof a->fail_message, desc);
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
                                get_key(atol_task_result(results, json_object_array_length(results) - 1),
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
static void walk_start(Atol *a, unsigned from) {
        a->attempt = from;
        a->walk_unasked = false;
        if (a->last_results) {
                json_object_put(a->last_results);
                a->last_results = NULL;
        }
        walk_next(a);
}

/* ---- the operations ---- */

/* {"name": ..., "vatin": ...} of a report or shift document: the request's cashier, else the default. */
static int operator_json(Atol *a, json_object *task) {
        const char *name = a->req_cashier ?: a->cashier,
                   *inn = a->req_cashier ? a->req_cashier_inn : a->cashier_inn;
        _cleanup_(json_object_putp) json_object *op = NULL;
        int r;

        if (isempty(name))
                return 0;
        op = json_object_new_object();
        if (!op)
                return -ENOMEM;
        if ((r = add_string(op, "name", name)) < 0 ||
            (!isempty(inn) && (r = add_string(op, "vatin", inn)) < 0))
                return r;
        return json_add(task, "operator", TAKE_PTR(op));
}

/* {"type": type, "operator": {...}} as text. */
static int simple_task(Atol *a, const char *type, char **ret) {
        _cleanup_(json_object_putp) json_object *t = json_object_new_object();
        int r;

        if (!t)
                return -ENOMEM;
        if ((r = add_string(t, "type", type)) < 0 || (r = operator_json(a, t)) < 0)
                return r;
        *ret = strdup(
                json_object_to_json_string_ext(t, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        return *ret ? 0 : -ENOMEM;
}

static int tasks_text(const char *const *types, size_t n, const char *tail, char **ret) {
        size_t l = 3 + (tail ? strlen(tail) + 1 : 0);
        char *s, *p;

        for (size_t i = 0; i < n; i++)
                l += strlen(types[i]) + 12;
        s = p = malloc(l);
        if (!s)
                return -ENOMEM;
        *p++ = '[';
        for (size_t i = 0; i < n; i++)
                p += sprintf(p, "%s{\"type\":\"%s\"}", i > 0 ? "," : "", types[i]);
        if (tail)
                p += sprintf(p, "%s%s", n > 0 ? "," : "", tail);
        strcpy(p, "]");
        *ret = s;
        return 0;
}

/* Reads a request of queries; returns the index of the first task that failed (its error in *ret_code),
 * or -1 when all are ready. */
static int read_state(Atol *a, json_object *results, const char *const *types, size_t n, AtolState *st,
                      int *ret_code, const char **ret_description) {
        int failed = -1;

        *st = (AtolState){};
        for (size_t i = 0; i < n && i < json_object_array_length(results); i++) {
                json_object *e = json_object_array_get_idx(results, i);

                if (atol_status(e) != ATOL_STATUS_READY) {
                        if (failed < 0) {
                                failed = (int) i;
                                *ret_code = atol_error(e, ret_description);
                        }
                        continue;
                }
                read_query(types[i], get_key(e, "result"), st);
        }
        st->status.condition = state_condition(st);
        /* What the documents need later. */
        if (!isempty(st->status.fn_number))
                strcpy(a->fn_number, st->status.fn_number);
        if (!isempty(st->status.registration_number))
                strcpy(a->registration_number, st->status.registration_number);
        if (!isempty(st->status.inn))
                strcpy(a->inn, st->status.inn);
        if (!isempty(st->status.serial))
                strcpy(a->serial, st->status.serial);
        if (st->have_fd)
                atol_note_fd(a, st->status.last_fiscal_document);
        return failed;
}

/* A request of queries that could not be read in full: its fault. */
static bool query_failed(Atol *a, AtolReply *r) {
        if (r->outcome != ATOL_REPLY_RESULTS) {
                atol_fail_http(a, r);
                return true;
        }
        if (!r->final) {
                atol_fail_fault(a, DEVICE_FAULT_NOT_CONNECTED,
                                "the ATOL web server's queue does not move (blocked or busy)");
                return true;
        }
        return false;
}

/* OPEN, STATUS: getShiftStatus, getFnStatus, getDeviceStatus, getShiftTotals, getFnInfo, ofdExchangeStatus,
 * getDeviceInfo, getRegistrationInfo in one request (queries may share one; only fiscal tasks may not [AWS
 * JsonTaskServlet: "Too many fiscal sub-tasks"]), the most needed first: after a failed task the rest are
 * interrupted [AWS DriverWorker]. */
static const char *const status_types[] = {
        "getShiftStatus", "getFnStatus",       "getDeviceStatus", "getShiftTotals",
        "getFnInfo",      "ofdExchangeStatus", "getDeviceInfo",   "getRegistrationInfo",
};

static void status_on_reply(Atol *a, AtolReply *r) {
        const char *desc = NULL;
        AtolState st;
        int code = 0, failed;

        if (query_failed(a, r))
                return;
        failed = read_state(a, r->results, status_types, ELEMENTSOF(status_types), &st, &code, &desc);
        if (failed == 0) {
                atol_fail_task(a, code, desc);
                return;
        }
        if (failed > 0)
                log_debug("atol-web: %s failed (%d: %s); its part of the status stays unknown.",
                          status_types[failed], code, strna(desc));
        if (!st.have_totals)
                st.status.shift_totals = (DeviceTotals){};
        /* The documents the drive holds are its document numbers so far; its capacity is not reported. */
        st.status.fn_documents = st.status.last_fiscal_document;
        a->result.status = st.status;
        a->result.have_status = true;
        atol_finish(a);
}

static void op_status(Atol *a) {
        _cleanup_free_ char *tasks = NULL;
        int r;

        r = tasks_text(status_types, ELEMENTSOF(status_types), NULL, &tasks);
        if (r < 0) {
                atol_fail(a, r, DEVICE_FAULT_ERROR, NULL);
                return;
        }
        atol_query(a, tasks, status_on_reply);
}

/* REPORT_X: the shift's figures, then reportX (not a fiscal document [KSL: Operations/NonFiscal; AWS does
 * not count it as fiscal]). */
static const char *const report_x_types[] = { "getShiftStatus", "getShiftTotals", "getFnStatus",
                                              "ofdExchangeStatus" };

static void report_x_on_reply(Atol *a, AtolReply *r) {
        DeviceReport *rep = &a->result.report;
        const char *desc = NULL;
        AtolState st;
        int code = 0, failed;

        if (query_failed(a, r))
                return;
        failed = read_state(a, r->results, report_x_types, ELEMENTSOF(report_x_types), &st, &code, &desc);
        if (failed >= 0 || atol_status(json_object_array_get_idx(r->results, ELEMENTSOF(report_x_types))) !=
                                   ATOL_STATUS_READY) {
                if (failed < 0)
                        code = atol_error(json_object_array_get_idx(r->results, ELEMENTSOF(report_x_types)),
                                          &desc);
                atol_fail_task(a, code, desc);
                return;
        }
        *rep = (DeviceReport){
                .type = DEVICE_REPORT_X,
                .shift_open = st.status.shift_open,
                .shift_number = st.status.shift_number,
                .shift_open_usec = st.status.shift_open ? st.status.shift_open_usec : 0,
                .datetime = now(CLOCK_REALTIME) / USEC_PER_SEC * USEC_PER_SEC,
                .last_fiscal_document = st.status.last_fiscal_document,
                .totals = st.status.shift_open ? st.status.shift_totals : (DeviceTotals){},
                .ofd = st.ofd,
        };
        atol_finish(a);
}

static void op_report_x(Atol *a) {
        _cleanup_free_ char *x = NULL, *tasks = NULL;
        int r;

        r = simple_task(a, "reportX", &x);
        if (r >= 0)
                r = tasks_text(report_x_types, ELEMENTSOF(report_x_types), x, &tasks);
        if (r < 0) {
                atol_fail(a, r, DEVICE_FAULT_ERROR, NULL);
                return;
        }
        atol_query(a, tasks, report_x_on_reply);
}

/* OPEN_SHIFT: the shift's state and the fiscal drive first (its number and the next shift's name the
 * uuid), then openShift [KSL OpenShiftOperation; NAR]. */
static const char *const shift_types[] = { "getShiftStatus", "getFnStatus", "getFnInfo", "getShiftTotals",
                                           "ofdExchangeStatus" };

static bool shift_state(Atol *a, AtolReply *r) {
        const char *desc = NULL;
        int code = 0, failed;

        if (query_failed(a, r))
                return false;
        failed = read_state(a, r->results, shift_types, ELEMENTSOF(shift_types), &a->state, &code, &desc);
        if (failed == 0 || failed == 1) {
                atol_fail_task(a, code, desc);
                return false;
        }
        return true;
}

static void open_shift_on_state(Atol *a, AtolReply *r) {
        const DeviceStatus *s = &a->state.status;
        int k;

        if (!shift_state(a, r))
                return;
        if (s->shift_open) {
                a->result.report = (DeviceReport){
                        .type = DEVICE_REPORT_OPEN,
                        .shift_open = true,
                        .shift_number = s->shift_number,
                        .shift_open_usec = s->shift_open_usec,
                        .last_fiscal_document = s->last_fiscal_document,
                };
                atol_fail(a, -EALREADY, DEVICE_FAULT_NONE, NULL);
                return;
        }
        a->kind = ATOL_KIND_OPEN_SHIFT;
        a->shift = s->shift_number + 1;
        k = simple_task(a, "openShift", &a->task);
        if (k < 0) {
                atol_fail(a, k, DEVICE_FAULT_ERROR, NULL);
                return;
        }
        walk_start(a, 0);
}

static void op_open_shift(Atol *a) {
        _cleanup_free_ char *tasks = NULL;
        int r;

        r = tasks_text(shift_types, 3, NULL, &tasks);
        if (r < 0) {
                atol_fail(a, r, DEVICE_FAULT_ERROR, NULL);
                return;
        }
        atol_query(a, tasks, open_shift_on_state);
}

/* CLOSE_SHIFT, idempotent per shift: a shift closed already is answered with -EALREADY and, where our own
 * request for its Z is still at the web server, that Z's figures; never a second closeShift. */
static void close_shift_on_state(Atol *a, AtolReply *r) {
        const DeviceStatus *s = &a->state.status;
        uint32_t target;
        int k;

        if (!shift_state(a, r))
                return;
        target = a->req_shift != 0 ? a->req_shift : s->shift_number;
        if (target == 0 || target > s->shift_number) {
                atol_fail(a, -ENOENT, DEVICE_FAULT_NONE, NULL);
                return;
        }
        a->kind = ATOL_KIND_CLOSE_SHIFT;
        a->shift = target;
        if (!s->shift_open || target != s->shift_number) {
                a->result.report = (DeviceReport){
                        .type = DEVICE_REPORT_Z,
                        .shift_number = target,
                        .last_fiscal_document = s->last_fiscal_document,
                };
                a->result.error = -EALREADY;
                a->result.fault = DEVICE_FAULT_NONE;
                a->lookup_only = true;
                walk_start(a, 0);
                return;
        }
        k = simple_task(a, "closeShift", &a->task);
        if (k < 0) {
                atol_fail(a, k, DEVICE_FAULT_ERROR, NULL);
                return;
        }
        walk_start(a, 0);
}

static void op_close_shift(Atol *a) {
        _cleanup_free_ char *tasks = NULL;
        int r;

        r = tasks_text(shift_types, ELEMENTSOF(shift_types), NULL, &tasks);
        if (r < 0) {
                atol_fail(a, r, DEVICE_FAULT_ERROR, NULL);
                return;
        }
        atol_query(a, tasks, close_shift_on_state);
}

/* PRINT and FIND: the walk over the receipt's requests decides; PRINT posts a new one only when every
 * earlier one certainly made nothing. */
static void op_receipt(Atol *a) {
        const char *why = NULL;
        unsigned from = 0;
        int r;

        a->kind = ATOL_KIND_RECEIPT;
        r = atol_receipt_parse(a->receipt_json, a->cashier, a->cashier_inn, &a->receipt,
                               a->op == DEVICE_OP_PRINT ? &a->task : NULL, &why);
        if (r == -ENOMEM) {
                atol_fail(a, r, DEVICE_FAULT_ERROR, NULL);
                return;
        }
        if (r < 0) {
                if (a->op == DEVICE_OP_PRINT) {
                        char m[128];

                        snprintf(m, sizeof m, "receipt not mappable to an ATOL task: %s", strna(why));
                        atol_fail(a, -EINVAL, DEVICE_FAULT_REJECTED, m);
                        return;
                }
                /* FIND still finds by uuid; a receipt we cannot read was never printed by us. */
                a->receipt = (AtolReceipt){ .type = _RECEIPT_TYPE_INVALID };
        }
        if (streq(a->cache_receipt, a->receipt_id))
                from = a->cache_free;
        walk_start(a, from);
}

static void prelude_on_reply(Atol *a, AtolReply *r) {
        const char *desc = NULL;

        if (r->outcome == ATOL_REPLY_RESULTS && r->final &&
            atol_status(json_object_array_get_idx(r->results, 0)) == ATOL_STATUS_READY) {
                a->continue_print = false;
                log_info("atol-web: the interrupted document was printed to the end (continuePrint).");
        } else if (r->outcome == ATOL_REPLY_RESULTS && r->final) {
                int code = atol_error(json_object_array_get_idx(r->results, 0), &desc);

                /* Nothing to continue (or paper still out): the register says so and prints nothing. */
                log_warning("atol-web: continuePrint failed (%d: %s).", code, strna(desc));
                if (device_atol_error_fault(code, NULL) != DEVICE_FAULT_PAPER_OUT &&
                    device_atol_error_fault(code, NULL) != DEVICE_FAULT_COVER_OPEN)
                        a->continue_print = false;
        }
        a->after_prelude(a);
}

/* A document left unprinted is printed to the end before anything else [SMP: "можно сразу вызвать метод
 * допечатывания документа"]; its failure does not stop the operation. */
static void atol_start_prelude(Atol *a) {
        if (!a->continue_print || IN_SET(a->op, DEVICE_OP_STATUS, DEVICE_OP_FIND)) {
                a->after_prelude(a);
                return;
        }
        atol_query(a, "[{\"type\":\"continuePrint\"}]", prelude_on_reply);
}

/* ---- the driver ---- */

static void atol_free_state(Atol *a) {
        if (!a)
                return;
        a->http = curl_request_free(a->http);
        a->timer_source = sd_event_source_disable_unref(a->timer_source);
        a->done_source = sd_event_source_disable_unref(a->done_source);
        atol_clear_op(a);
        sd_event_unref(a->event);
        free(a->url_requests);
        if (a->auth_header)
                explicit_bzero(a->auth_header, strlen(a->auth_header));
        free(a->auth_header);
        free(a->cashier);
        free(a->cashier_inn);
        free(a);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(Atol *, atol_free_state);

static int atol_create(void **ret_state, const DeviceContext *ctx, const DeviceOptions *o) {
        _cleanup_(atol_free_statep) Atol *a = NULL;
        const char *url = o->url ?: DEVICE_ATOL_URL_DEFAULT;
        size_t l;
        int r;

        assert(ret_state);
        assert(ctx);

        if (!ctx->glue || !ctx->event)
                return -EINVAL;
        if (!startswith(url, "http://") && !startswith(url, "https://"))
                return -EINVAL;

        a = new0(Atol, 1);
        if (!a)
                return -ENOMEM;
        a->event = sd_event_ref(ctx->event);
        a->glue = ctx->glue;
        a->timeout = o->timeout ?: DEVICE_TIMEOUT_DEFAULT;

        l = strlen(url);
        while (l > 0 && url[l - 1] == '/')
                l--;
        if (asprintf(&a->url_requests, "%.*s/api/v2/requests", (int) l, url) < 0)
                return -ENOMEM;
        if ((o->cashier && !(a->cashier = strdup(o->cashier))) ||
            (o->cashier_inn && !(a->cashier_inn = strdup(o->cashier_inn))))
                return -ENOMEM;
        if (!isempty(o->token)) {
                /* The web server's optional HTTP Basic authentication [the 1C client's HTTPConnection(host,
                 * port, login, password); a Node agent's ATOL_USE_AUTH]; the credential is "login:password".
                 */
                _cleanup_free_ char *b64 = NULL;

                if (!strchr(o->token, ':'))
                        return -EINVAL;
                r = base64_encode(o->token, &b64);
                if (r < 0)
                        return r;
                if (asprintf(&a->auth_header, "Authorization: Basic %s", b64) < 0)
                        return -ENOMEM;
                explicit_bzero(b64, strlen(b64));
        }

        r = sd_event_add_time(a->event, &a->timer_source, CLOCK_MONOTONIC, USEC_INFINITY, USEC_PER_MSEC,
                              atol_on_timer, a);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(a->timer_source, "atol-web-poll");
        r = sd_event_source_set_enabled(a->timer_source, SD_EVENT_OFF);
        if (r < 0)
                return r;
        r = sd_event_add_defer(a->event, &a->done_source, atol_on_done, a);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(a->done_source, "atol-web-done");
        r = sd_event_source_set_enabled(a->done_source, SD_EVENT_OFF);
        if (r < 0)
                return r;

        *ret_state = TAKE_PTR(a);
        return 0;
}

static int strdup_maybe(const char *s, char **ret) {
        *ret = NULL;
        if (!s)
                return 0;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static int atol_start(void *state, const DeviceRequest *req, DeviceDriverDone done, void *userdata) {
        Atol *a = state;
        usec_t n = now(CLOCK_MONOTONIC);

        assert(a);
        assert(req);
        assert(done);

        if (a->busy)
                return -EBUSY;
        if (IN_SET(req->op, DEVICE_OP_PRINT, DEVICE_OP_FIND) &&
            (isempty(req->receipt_id) || !req->receipt_json ||
             strlen(req->receipt_id) > DEVICE_RECEIPT_ID_MAX))
                return -EINVAL;
        if (strdup_maybe(req->receipt_id, &a->receipt_id) < 0 ||
            strdup_maybe(req->receipt_json, &a->receipt_json) < 0 ||
            strdup_maybe(req->cashier, &a->req_cashier) < 0 ||
            strdup_maybe(req->cashier_inn, &a->req_cashier_inn) < 0) {
                atol_clear_op(a);
                return -ENOMEM;
        }

        a->busy = true;
        a->interrupted = false;
        a->op = req->op;
        a->req_shift = req->shift_number;
        a->done = done;
        a->userdata = userdata;
        a->result = (DeviceResult){};
        a->deadline = n + a->timeout / ATOL_BUDGET_DEN * ATOL_BUDGET_NUM;
        a->hard_deadline = n + a->timeout / ATOL_HARD_DEN * ATOL_HARD_NUM;
        a->maybe_made = false;
        a->lookup_only = false;
        a->kind = ATOL_KIND_RECEIPT;
        a->receipt = (AtolReceipt){ .type = _RECEIPT_TYPE_INVALID };
        a->fail_code = 0;
        a->fail_message[0] = 0;

        switch (req->op) {
        case DEVICE_OP_OPEN:
        case DEVICE_OP_STATUS:
                a->after_prelude = op_status;
                break;
        case DEVICE_OP_PRINT:
        case DEVICE_OP_FIND:
                a->after_prelude = op_receipt;
                break;
        case DEVICE_OP_OPEN_SHIFT:
                a->after_prelude = op_open_shift;
                break;
        case DEVICE_OP_REPORT_X:
                a->after_prelude = op_report_x;
                break;
        case DEVICE_OP_CLOSE_SHIFT:
                a->after_prelude = op_close_shift;
                break;
        default:
                atol_fail(a, -EOPNOTSUPP, DEVICE_FAULT_NONE, NULL);
                return 0;
        }
        atol_start_prelude(a);
        return 0;
}

static void atol_interrupt(void *state) {
        Atol *a = state;

        if (!a->busy)
                return;
        /* Waits are cut short; an HTTP request in flight ends within its own timeout. */
        a->interrupted = true;
        a->deadline = a->hard_deadline = now(CLOCK_MONOTONIC);
        if (a->timer_fn)
                atol_schedule(a, 0, a->timer_fn);
}

static void atol_free(void *state) {
        Atol *a = state;

        if (!a)
                return;
        if (a->busy) {
                DeviceDriverDone done = a->done;
                void *u = a->userdata;
                DeviceResult result = a->result;

                /* Nothing can be waited for here: what is in flight is dropped. A fiscal request that may
                 * have been taken leaves an unknown outcome, which FIND decides later. */
                a->http = curl_request_free(a->http);
                (void) sd_event_source_set_enabled(a->timer_source, SD_EVENT_OFF);
                if (sd_event_source_get_enabled(a->done_source, NULL) <= 0) {
                        result = (DeviceResult){
                                .error = -ECANCELED,
                                .fault = a->maybe_made ? DEVICE_FAULT_TIMEOUT_UNKNOWN : DEVICE_FAULT_NONE,
                        };
                }
                atol_clear_op(a);
                done(&result, u);
        }
        atol_free_state(a);
}

const DeviceDriver device_atol_driver = {
        .name = "atol-web",
        .create = atol_create,
        .start = atol_start,
        .interrupt = atol_interrupt,
        .free = atol_free,
};
