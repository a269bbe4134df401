/* SPDX-License-Identifier: MIT */
/* Receipt intake: the body is parsed strictly, every field is checked and converted to exact integers, and
 * a canonical text is derived that the store keeps, the OFD receives and idempotency compares. */

#include <assert.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <threads.h>

#include "json-util.h"
#include "money.h"
#include "receipt.h"

typedef struct NameValue {
        const char *name;
        int value;
} NameValue;

static const NameValue receipt_type_table[] = {
        { "sale", RECEIPT_TYPE_SALE },
        { "refund", RECEIPT_TYPE_REFUND },
        { "purchase", RECEIPT_TYPE_PURCHASE },
        { "purchase_refund", RECEIPT_TYPE_PURCHASE_REFUND },
        { "sale_correction", RECEIPT_TYPE_SALE_CORRECTION },
        { "refund_correction", RECEIPT_TYPE_REFUND_CORRECTION },
        { "purchase_correction", RECEIPT_TYPE_PURCHASE_CORRECTION },
        { "purchase_refund_correction", RECEIPT_TYPE_PURCHASE_REFUND_CORRECTION },
        { "correction", RECEIPT_TYPE_SALE_CORRECTION }, /* the prototype's name: read, never written */
};

/* FFD 1.2, tags 1031 (cash), 1081 (electronic), 1215 (prepayment: offset of an advance or earlier payments),
 * 1216 (postpayment, credit), 1217 (other consideration): tag names of FFD-derived dictionaries, e.g. Yandex
 * OFD's table, https://yandex.ru/support/ofd-client/ru/parameter-table. */
static const NameValue payment_type_table[] = {
        { "cash", PAYMENT_TYPE_CASH },
        { "card", PAYMENT_TYPE_CARD },
        { "electronic", PAYMENT_TYPE_CARD }, /* FFD's own word for tag 1081: read, never written */
        { "prepayment", PAYMENT_TYPE_PREPAYMENT },
        { "credit", PAYMENT_TYPE_CREDIT },
        { "other", PAYMENT_TYPE_OTHER },
};

static const NameValue payment_method_table[] = {
        { "full_prepayment", PAYMENT_METHOD_FULL_PREPAYMENT },
        { "prepayment", PAYMENT_METHOD_PREPAYMENT },
        { "advance", PAYMENT_METHOD_ADVANCE },
        { "full_payment", PAYMENT_METHOD_FULL_PAYMENT },
        { "partial_payment", PAYMENT_METHOD_PARTIAL_PAYMENT },
        { "credit", PAYMENT_METHOD_CREDIT },
        { "credit_payment", PAYMENT_METHOD_CREDIT_PAYMENT },
};

/* FFD 1.2, tag 1212. Names follow the ones the Russian online-cash-register APIs use where they have one. */
static const NameValue payment_object_table[] = {
        { "commodity", PAYMENT_OBJECT_COMMODITY },
        { "excise", PAYMENT_OBJECT_EXCISE },
        { "job", PAYMENT_OBJECT_JOB },
        { "service", PAYMENT_OBJECT_SERVICE },
        { "gambling_bet", 5 },
        { "gambling_prize", 6 },
        { "lottery", 7 },
        { "lottery_prize", 8 },
        { "intellectual_activity", 9 },
        { "payment", PAYMENT_OBJECT_PAYMENT },
        { "agent_commission", PAYMENT_OBJECT_AGENT_COMMISSION },
        { "composite", PAYMENT_OBJECT_COMPOSITE },
        { "another", PAYMENT_OBJECT_ANOTHER },
        { "property_right", 14 },
        { "non-operating_gain", 15 },
        { "insurance_premium", 16 },
        { "sales_tax", 17 },
        { "resort_fee", 18 },
        { "deposit", 19 },
        { "expense", 20 },
        { "pension_insurance_ip", 21 },
        { "pension_insurance", 22 },
        { "medical_insurance_ip", 23 },
        { "medical_insurance", 24 },
        { "social_insurance", 25 },
        { "casino_payment", 26 },
        { "cash_withdrawal", 27 },
        { "excise_unmarked", 30 },
        { "excise_marked", 31 },
        { "commodity_unmarked", 32 },
        { "commodity_marked", 33 },
};

/* FFD 1.2, tag 2108. */
static const NameValue measure_table[] = {
        { "piece", MEASURE_PIECE },
        { "gram", MEASURE_GRAM },
        { "kilogram", MEASURE_KILOGRAM },
        { "ton", 12 },
        { "centimeter", 20 },
        { "decimeter", 21 },
        { "meter", MEASURE_METER },
        { "square_centimeter", 30 },
        { "square_decimeter", 31 },
        { "square_meter", 32 },
        { "milliliter", 40 },
        { "liter", MEASURE_LITER },
        { "cubic_meter", 42 },
        { "kilowatt_hour", 50 },
        { "gigacalorie", 51 },
        { "day", 70 },
        { "hour", 71 },
        { "minute", 72 },
        { "second", 73 },
        { "kilobyte", 80 },
        { "megabyte", 81 },
        { "gigabyte", 82 },
        { "terabyte", 83 },
        { "other", MEASURE_OTHER },
};

/* FFD 1.2, tag 1055, one bit of the registered set 1062; 8 (ЕНВД, abolished in 2021) is left out. */
static const NameValue taxation_table[] = {
        { "osn", TAXATION_OSN },
        { "usn_income", TAXATION_USN_INCOME },
        { "usn_income_outcome", TAXATION_USN_INCOME_OUTCOME },
        { "esn", TAXATION_ESN },
        { "patent", TAXATION_PATENT },
};

/* FFD 1.2, tag 1173: 0 on one's own initiative («самостоятельно»), 1 by order of the tax authority («по
 * предписанию») — FFD-derived code tables. */
static const NameValue correction_type_table[] = {
        { "self", CORRECTION_TYPE_SELF },
        { "by_order", CORRECTION_TYPE_BY_ORDER },
};

static const char *table_to_string(const NameValue *table, size_t n, int value) {
        for (size_t i = 0; i < n; i++)
                if (table[i].value == value)
                        return table[i].name;
        return NULL;
}

static int table_from_string(const NameValue *table, size_t n, const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (streq(table[i].name, s))
                        return table[i].value;
        return -EINVAL;
}

#define DEFINE_STRING_TABLE(prefix, type, table)                                        \
        const char *prefix##_to_string(type v) {                                        \
                return table_to_string(table, ELEMENTSOF(table), (int) v);              \
        }                                                                               \
        type prefix##_from_string(const char *s) {                                      \
                return (type) table_from_string(table, ELEMENTSOF(table), s);           \
        }

DEFINE_STRING_TABLE(receipt_type, ReceiptType, receipt_type_table)

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
DEFINE_STRING_TABLE(payment_type, PaymentType, payment_type_table)
DEFINE_STRING_TABLE(payment_method, PaymentMethod, payment_method_table)
DEFINE_STRING_TABLE(payment_object, PaymentObject, payment_object_table)
DEFINE_STRING_TABLE(measure, Measure, measure_table)
DEFINE_STRING_TABLE(taxation, Taxation, taxation_table)
DEFINE_STRING_TABLE(correction_type, CorrectionType, correction_type_table)

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

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. json-c's own check lets the
 * first two through. */
static bool utf8_is_valid(const char *s, size_t n) {
        const uint8_t *p = (const uint8_t *) s, *e = p + n;

        while (p < e) {
                uint32_t cp, min;
                size_t len;

                if (*p < 0x80) {
                        p++;
                        continue;
                }
                if ((*p & 0xe0) == 0xc0) {
                        len = 2;
                        cp = *p & 0x1f;
                        min = 0x80;
                } else if ((*p & 0xf0) == 0xe0) {
                        len = 3;
                        cp = *p & 0x0f;
                        min = 0x800;
                } else if ((*p & 0xf8) == 0xf0) {
                        len = 4;
                        cp = *p & 0x07;
                        min = 0x10000;
                } else
                        return false;

                if ((size_t) (e - p) < len)
                        return false;
                for (size_t i = 1; i < len; i++) {
                        if ((p[i] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (p[i] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                p += len;
        }
        return true;
}

/* A growing text: the canonical writer's buffer, and messages that list things. */
typedef struct Text {
        char *data;
        size_t size;
        size_t allocated;
        bool oom;       /* sticky: checked once at the end instead of after every append */
} Text;

static bool text_reserve(Text *t, size_t n) {
        size_t a;
        char *d;

        if (t->oom)
                return false;
        if (t->allocated - t->size >= n)
                return true;

        a = MAX(t->allocated * 2, t->size + n);
        d = realloc(t->data, a);
        if (!d) {
                t->oom = true;
                return false;
        }
        t->data = d;
        t->allocated = a;
        return true;
}

static void text_append(Text *t, const char *s, size_t n) {
        if (!text_reserve(t, n))
                return;
        memcpy(t->data + t->size, s, n);
        t->size += n;
}

/* For literals only: the length is known at compile time. */
#define text_append_literal(t, s) text_append((t), "" s "", sizeof(s) - 1)

/* Returns r, always negative. gcc -O3 cannot see that through the call and warns that the out-parameters
 * of the parse_*() functions may be used uninitialised after "if (r < 0) return r;": their callers
 * initialise them. */
static int fail(char **detail, int r, const char *format, ...) _printf_(3, 4);
static int fail(char **detail, int r, const char *format, ...) {
        va_list ap;
        char *s;
        int k;

        va_start(ap, format);
        k = vasprintf(&s, format, ap);
        va_end(ap);
        if (k < 0)
                return -ENOMEM;

        free(*detail);
        *detail = s;
        return r;
}

/* How much of a client's string a message quotes: at most 40 bytes, never cutting a character in half, so
 * that the message stays short whatever the client sent. *ret_cut tells whether the string goes on. */
static int quote_length(const char *s, bool *ret_cut) {
        size_t l = strlen(s), n = MIN(l, 40U);

        while (n > 0 && n < l && ((uint8_t) s[n] & 0xc0) == 0x80)
                n--;
        *ret_cut = n < l;
        return (int) n;
}

static int fail_unknown(char **detail, const char *prefix, const char *key, const char *value) {
        bool cut;
        int n = quote_length(value, &cut);

        return fail(detail, -EINVAL, "%s%s%s: unknown value '%.*s%s'", strempty(prefix), prefix ? "." : "",
                    key, n, value, cut ? "..." : "");
}

/* Absent and JSON null mean the same, "not given", as they did to the prototype's optional fields. */
static json_object *field_get(json_object *o, const char *key) {
        json_object *v = NULL;

        (void) json_object_object_get_ex(o, key, &v);
        return v;
}

typedef enum StringFlags {
        STRING_NO_CONTROL = 1 << 0, /* identifiers that end up in logs and journal fields */
} StringFlags;

/* A field's path in messages is "prefix.key", or "key" at the top level (prefix NULL). It is only put
 * together when a message needs it: formatting it for every field of every receipt cost more than the
 * checks themselves. */
#define PATH_FMT "%s%s%s"
#define PATH_ARGS(prefix, key) strempty(prefix), (prefix) ? "." : "", (key)

/* A non-empty string of at most max characters; *ret points into v and *ret_len is its length in bytes.
 * The whole body was checked to be valid UTF-8 already, and json-c turns even a lone surrogate escape into
 * U+FFFD. */
static int parse_string(json_object *v, const char *prefix, const char *key, size_t max, StringFlags flags,
                        const char **ret, size_t *ret_len, char **detail) {
        const char *s;
        size_t l, n = 0;

        if (!v)
                return fail(detail, -EINVAL, PATH_FMT ": missing", PATH_ARGS(prefix, key));
        if (!json_object_is_type(v, json_type_string))
                return fail(detail, -EINVAL, PATH_FMT ": must be a string", PATH_ARGS(prefix, key));

        s = json_object_get_string(v);
        l = (size_t) json_object_get_string_len(v);

        /* One pass for the NUL check, the control characters and the length in characters. */
        for (size_t i = 0; i < l; i++) {
                uint8_t c = (uint8_t) s[i];

                if (c == '\0')
                        return fail(detail, -EINVAL, PATH_FMT ": contains a NUL character",
                                    PATH_ARGS(prefix, key));
                if ((flags & STRING_NO_CONTROL) && (c < 0x20 || c == 0x7f))
                        return fail(detail, -EINVAL, PATH_FMT ": contains a control character",
                                    PATH_ARGS(prefix, key));
                n += (c & 0xc0) != 0x80; /* valid UTF-8: every byte but continuation bytes starts one */
        }
        if (n == 0)
                return fail(detail, -EINVAL, PATH_FMT ": must not be empty", PATH_ARGS(prefix, key));
        if (n > max)
                return fail(detail, -EINVAL, PATH_FMT ": longer than %zu characters", PATH_ARGS(prefix, key),
                            max);

        *ret = s;
        if (ret_len)
                *ret_len = l;
        return 0;
}

static int parse_string_dup(json_object *v, const char *prefix, const char *key, size_t max,
                            StringFlags flags, char **ret, char **detail) {
        const char *s = NULL;
        size_t l = 0;
        char *c;
        int r;

        r = parse_string(v, prefix, key, max, flags, &s, &l, detail);
        if (r < 0)
                return r;

        c = strndup(s, l);
        if (!c)
                return -ENOMEM;
        *ret = c;
        return 0;
}

/* An enumeration by name; def is used when the field is absent (def < 0: the field is required). */
static int parse_enum(json_object *v, const char *prefix, const char *key, const NameValue *table, size_t n,
                      int def, int *ret, char **detail) {
        const char *s = NULL;
        int r, value;

        if (!v && def >= 0) {
                *ret = def;
                return 0;
        }

        r = parse_string(v, prefix, key, SIZE_MAX, 0, &s, NULL, detail);
        if (r < 0)
                return r;

        value = table_from_string(table, n, s);
        if (value < 0)
                return fail_unknown(detail, prefix, key, s);
        *ret = value;
        return 0;
}

static int parse_decimal(json_object *v, const char *prefix, const char *key, unsigned scale, int64_t *ret,
                         char **detail) {
        int r;

        if (!v)
                return fail(detail, -EINVAL, PATH_FMT ": missing", PATH_ARGS(prefix, key));

        r = money_from_json(v, scale, ret);
        switch (r) {
        case 0:
                return 0;
        case -EMEDIUMTYPE:
                return fail(detail, -EINVAL, PATH_FMT ": must be a number", PATH_ARGS(prefix, key));
        case -EINVAL:
                return fail(detail, -EINVAL, PATH_FMT ": not a plain decimal number",
                            PATH_ARGS(prefix, key));
        case -EDOM:
                if (scale == 0)
                        return fail(detail, -EINVAL, PATH_FMT ": must be a whole number",
                                    PATH_ARGS(prefix, key));
                return fail(detail, -EINVAL, PATH_FMT ": more than %u decimal places",
                            PATH_ARGS(prefix, key), scale);
        case -ERANGE:
                return fail(detail, -EINVAL, PATH_FMT ": out of range", PATH_ARGS(prefix, key));
        default:
                return r;
        }
}

/* price * quantity in kopecks, rounded half up: quantity is in thousandths. */
static int line_amount(int64_t price, int64_t quantity, int64_t *ret) {
        int64_t p;

        assert(price >= 0 && quantity >= 0);

        if (__builtin_mul_overflow(price, quantity, &p))
                return -ERANGE;
        *ret = p / 1000 + (p % 1000 >= 500);
        return 0;
}

/* What one parse needs besides the body. */
typedef struct ParseContext {
        ReceiptOptions options;         /* with the defaults filled in, now excepted */
        unsigned today;                 /* options.now as a local YYYYMMDD; 0 until something needs it */
} ParseContext;

/* Every key a level knows, the derived ones the canonical text writes included: those are accepted and
 * ignored, so that the canonical text parses back. */
static const char *const receipt_fields[] = {
        "pos_id", "type", "type_tag1054", "taxation", "taxation_tag1055", "cashier", "correction",
        "original", "original_date", "items", "payments", "discount", "total", "change", "vat_amounts",
        "customer",
};
static const char *const item_fields[] = {
        "name", "price", "quantity", "total", "discount", "vat", "vat_rate", "vat_tag1199", "vat_amount",
        "payment_method", "payment_method_tag1214", "payment_object", "payment_object_tag1212", "measure",
        "measure_tag2108", "mark_code",
};
static const char *const payment_fields[] = { "type", "amount", "amount_tag" };
static const char *const cashier_fields[] = { "name", "inn" };
static const char *const correction_fields[] = { "type", "type_tag1173", "date", "order_number" };
static const char *const customer_fields[] = { "email", "phone" };

/* A body with thousands of unknown keys must not get a message of the same size. */
#define UNKNOWN_FIELDS_QUOTED_MAX 8U

static bool key_is_known(const char *key, const char *const *known, size_t n_known) {
        for (size_t i = 0; i < n_known; i++)
                if (streq(known[i], key))
                        return true;
        return false;
}

/* With RECEIPT_UNKNOWN_FIELDS_REJECT, o's keys that are not known at its level (prefix NULL: the top), all
 * of them named in one message, in the body's order: a misspelt "discout" would otherwise be silently
 * dropped and the receipt printed without its discount. */
static int check_fields(const ParseContext *c, json_object *o, const char *prefix, const char *const *known,
                        size_t n_known, char **detail) {
        _cleanup_free_ char *list = NULL;
        size_t n_unknown = 0;
        Text t = {};

        if (c->options.unknown_fields == RECEIPT_UNKNOWN_FIELDS_IGNORE)
                return 0;

        json_object_object_foreach(o, key, value) {
                bool cut;
                int n;

                (void) value;
                if (key_is_known(key, known, n_known))
                        continue;
                if (++n_unknown > UNKNOWN_FIELDS_QUOTED_MAX)
                        continue;

                n = quote_length(key, &cut);
                if (n_unknown > 1)
                        text_append_literal(&t, ", ");
                text_append_literal(&t, "'");
                text_append(&t, key, (size_t) n);
                if (cut)
                        text_append_literal(&t, "...");
                text_append_literal(&t, "'");
        }
        if (n_unknown == 0)
                return 0;

        text_append(&t, "", 1);
        list = t.data;
        if (t.oom)
                return -ENOMEM;
        if (n_unknown > UNKNOWN_FIELDS_QUOTED_MAX)
                return fail(detail, -EINVAL, "%s%sunknown fields %s and %zu more", strempty(prefix),
                            prefix ? ": " : "", list, n_unknown - UNKNOWN_FIELDS_QUOTED_MAX);
        return fail(detail, -EINVAL, "%s%sunknown fields %s", strempty(prefix), prefix ? ": " : "", list);
}

/* Days are unsigned YYYYMMDD integers: they compare as dates do. */
#define DATE_FORMAT_MAX 11U
static char *date_format(char buf[static DATE_FORMAT_MAX], unsigned date) {
        snprintf(buf, DATE_FORMAT_MAX, "%04u-%02u-%02u", date / 10000 % 10000, date / 100 % 100, date % 100);
        return buf;
}
#define DATE_FORMAT(d) date_format((char[DATE_FORMAT_MAX]) {}, (d))

static bool date_is_in_calendar(unsigned y, unsigned m, unsigned d) {
        static const uint8_t days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

        if (y == 0 || m < 1 || m > 12 || d < 1)
                return false;
        if (m == 2 && d == 29)
                return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        return d <= days[m - 1];
}

/* options.now as the local calendar day: the law counts days where the sale is made. */
static int context_today(ParseContext *c, unsigned *ret) {
        usec_t u;
        time_t t;
        struct tm tm;

        if (c->today == 0) {
                u = c->options.now > 0 ? c->options.now : now(CLOCK_REALTIME);
                t = (time_t) (u / USEC_PER_SEC);
                if ((uint64_t) t != u / USEC_PER_SEC) /* a 32-bit time_t after 2038 */
                        return -EOVERFLOW;
                if (!localtime_r(&t, &tm))
                        return -EOVERFLOW;
                if (tm.tm_year < 1 - 1900 || tm.tm_year > 9999 - 1900)
                        return -EOVERFLOW;
                c->today = (unsigned) (tm.tm_year + 1900) * 10000 + (unsigned) (tm.tm_mon + 1) * 100 +
                           (unsigned) tm.tm_mday;
        }
        *ret = c->today;
        return 0;
}

/* A day of the calendar as "YYYY-MM-DD" (tag 1178 is a date; the POS sends it as ISO 8601 text), not after
 * options.now's day: a settlement being corrected or returned cannot lie ahead. */
static int parse_date(ParseContext *c, json_object *v, const char *prefix, const char *key, unsigned *ret,
                      char **detail) {
        const char *s = NULL;
        unsigned date = 0, today;
        size_t l = 0;
        int r;

        r = parse_string(v, prefix, key, SIZE_MAX, 0, &s, &l, detail);
        if (r < 0)
                return r;
        if (l != 10)
                return fail(detail, -EINVAL, PATH_FMT ": not a date like 2025-12-31",
                            PATH_ARGS(prefix, key));
        for (size_t i = 0; i < l; i++) {
                if (i == 4 || i == 7) {
                        if (s[i] != '-')
                                return fail(detail, -EINVAL, PATH_FMT ": not a date like 2025-12-31",
                                            PATH_ARGS(prefix, key));
                        continue;
                }
                if (s[i] < '0' || s[i] > '9')
                        return fail(detail, -EINVAL, PATH_FMT ": not a date like 2025-12-31",
                                    PATH_ARGS(prefix, key));
                date = date * 10 + (unsigned) (s[i] - '0');
        }
        if (!date_is_in_calendar(date / 10000, date / 100 % 100, date % 100))
                return fail(detail, -EINVAL, PATH_FMT ": %s is not a day of the calendar",
                            PATH_ARGS(prefix, key), DATE_FORMAT(date));

        r = context_today(c, &today);
        if (r < 0)
                return r;
        if (date > today)
                return fail(detail, -EINVAL, PATH_FMT ": %s is after today, %s", PATH_ARGS(prefix, key),
                            DATE_FORMAT(date), DATE_FORMAT(today));

        *ret = date;
        return 0;
}

int receipt_check_cashier_name(const char *name, const char **ret_reason) {
        size_t n = 0, l;

        assert(name);
        assert(ret_reason);

        l = strlen(name);
        if (!utf8_is_valid(name, l)) {
                *ret_reason = "not valid UTF-8";
                return -EINVAL;
        }
        for (size_t i = 0; i < l; i++) {
                uint8_t c = (uint8_t) name[i];

                if (c < 0x20 || c == 0x7f) {
                        *ret_reason = "contains a control character";
                        return -EINVAL;
                }
                n += (c & 0xc0) != 0x80;
        }
        if (n == 0) {
                *ret_reason = "must not be empty";
                return -EINVAL;
        }
        if (n > RECEIPT_CASHIER_MAX) {
                *ret_reason = "longer than 64 characters";
                return -EINVAL;
        }
        return 0;
}

/* The INN check digits: the weighted sum of the digits before it, mod 11, mod 10. Each check digit uses the
 * last k weights of the one list for the k digits before it (9 for a legal entity's 10th digit, 10 and 11
 * for a person's 11th and 12th): https://developers.tochka.com/docs/cyclops/validation ("Алгоритм проверки
 * ИНН"). */
static unsigned inn_check_digit(const char *digits, size_t k) {
        static const unsigned weights[11] = { 3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8 };
        unsigned sum = 0;

        assert(k <= ELEMENTSOF(weights));
        for (size_t i = 0; i < k; i++)
                sum += (unsigned) (digits[i] - '0') * weights[ELEMENTSOF(weights) - k + i];
        return sum % 11 % 10;
}

/* FFD tag 1203 is the INN of the cashier («ИНН кассира»), and a cashier is a person: a person's INN has 12
 * digits. A 10-digit INN is a legal entity's, so it is refused even with a valid check digit (our decision:
 * the FFD table for 1203 was not available to check; a company's INN in 1203 would be a POS mistake). */
int receipt_check_inn(const char *inn, const char **ret_reason) {
        size_t l;

        assert(inn);
        assert(ret_reason);

        l = strlen(inn);
        for (size_t i = 0; i < l; i++)
                if (inn[i] < '0' || inn[i] > '9') {
                        *ret_reason = "must be 12 digits";
                        return -EINVAL;
                }
        if (l != 12) {
                *ret_reason = "must be 12 digits";
                return -EINVAL;
        }
        if (inn_check_digit(inn, 10) != (unsigned) (inn[10] - '0') ||
            inn_check_digit(inn, 11) != (unsigned) (inn[11] - '0')) {
                *ret_reason = "checksum does not match";
                return -EINVAL;
        }
        return 0;
}

/* FFD 1.2, tags 1021 (cashier) and 1203 (cashier's INN). */
static int parse_cashier(ParseContext *c, json_object *v, Receipt *r, char **detail) {
        const ReceiptOptions *o = &c->options;
        const char *reason = NULL;
        json_object *inn;
        int k;

        if (!v) {
                /* The register's defaults, as a pair: the INN belongs to the default cashier and to no
                 * cashier the body names. Checked again here, so that a bad default fails loudly instead of
                 * reaching the register. */
                if (!o->default_cashier)
                        return 0;
                if (receipt_check_cashier_name(o->default_cashier, &reason) < 0)
                        return fail(detail, -EINVAL, "cashier.name: the register's default cashier: %s",
                                    reason);
                r->cashier_name = strdup(o->default_cashier);
                if (!r->cashier_name)
                        return -ENOMEM;
                if (o->default_cashier_inn) {
                        if (receipt_check_inn(o->default_cashier_inn, &reason) < 0)
                                return fail(detail, -EINVAL,
                                            "cashier.inn: the register's default cashier: %s", reason);
                        r->cashier_inn = strdup(o->default_cashier_inn);
                        if (!r->cashier_inn)
                                return -ENOMEM;
                }
                return 0;
        }

        if (!json_object_is_type(v, json_type_object))
                return fail(detail, -EINVAL, "cashier: must be an object");
        k = check_fields(c, v, "cashier", cashier_fields, ELEMENTSOF(cashier_fields), detail);
        if (k < 0)
                return k;
        r->cashier_given = true;

        k = parse_string_dup(field_get(v, "name"), "cashier", "name", RECEIPT_CASHIER_MAX, STRING_NO_CONTROL,
                             &r->cashier_name, detail);
        if (k < 0)
                return k;

        inn = field_get(v, "inn");
        if (inn) {
                k = parse_string_dup(inn, "cashier", "inn", SIZE_MAX, 0, &r->cashier_inn, detail);
                if (k < 0)
                        return k;
                if (receipt_check_inn(r->cashier_inn, &reason) < 0)
                        return fail(detail, -EINVAL, "cashier.inn: %s", reason);
        }
        return 0;
}

static int parse_taxation(ParseContext *c, json_object *v, Receipt *r, char **detail) {
        unsigned allowed = c->options.allowed_taxations;
        char names[128] = "";
        int k, value = 0;

        if (v) {
                k = parse_enum(v, NULL, "taxation", taxation_table, ELEMENTSOF(taxation_table), -1, &value,
                               detail);
                if (k < 0)
                        return k;
                r->taxation = value;
                r->taxation_given = true;
        } else
                r->taxation = c->options.default_taxation;

        if (allowed == 0 || (allowed & (unsigned) r->taxation))
                return 0;

        for (size_t i = 0; i < ELEMENTSOF(taxation_table); i++)
                if (allowed & (unsigned) taxation_table[i].value) {
                        if (names[0])
                                strncat(names, " or ", sizeof names - strlen(names) - 1);
                        strncat(names, taxation_table[i].name, sizeof names - strlen(names) - 1);
                }
        return fail(detail, -EINVAL, "taxation: the register is registered for %s only", names);
}

/* FFD 1.2, tags 1173 (type of correction) and 1174 (basis), a structure holding 1178 (date of the corrected
 * settlement) and 1179 (number of the tax authority's order). Which of them FFD 1.2 makes mandatory was not
 * found (FFD 1.05: 1174 mandatory, 1179 mandatory in the electronic form); our rule, like ATOL's own client
 * library: type and date always, order_number when by order, kept when given for a correction of one's
 * own. */
static int parse_correction(ParseContext *c, json_object *v, Receipt *r, char **detail) {
        json_object *order;
        int k, value = 0;

        if (!receipt_type_is_correction(r->type)) {
                if (v)
                        return fail(detail, -EINVAL,
                                    "correction: only a correction receipt has one (type is %s)",
                                    receipt_type_to_string(r->type));
                return 0;
        }
        if (!v)
                return fail(detail, -EINVAL,
                            "correction: missing (a correction receipt needs its type, date and, by order, "
                            "order_number)");
        if (!json_object_is_type(v, json_type_object))
                return fail(detail, -EINVAL, "correction: must be an object");
        k = check_fields(c, v, "correction", correction_fields, ELEMENTSOF(correction_fields), detail);
        if (k < 0)
                return k;
        r->has_correction = true;

        k = parse_enum(field_get(v, "type"), "correction", "type", correction_type_table,
                       ELEMENTSOF(correction_type_table), -1, &value, detail);
        if (k < 0)
                return k;
        r->correction.type = value;

        k = parse_date(c, field_get(v, "date"), "correction", "date", &r->correction.date, detail);
        if (k < 0)
                return k;

        order = field_get(v, "order_number");
        if (!order && r->correction.type == CORRECTION_TYPE_BY_ORDER)
                return fail(detail, -EINVAL,
                            "correction.order_number: missing (a correction by order needs it)");
        if (order) {
                k = parse_string_dup(order, "correction", "order_number", RECEIPT_ORDER_NUMBER_MAX,
                                     STRING_NO_CONTROL, &r->correction.order_number, detail);
                if (k < 0)
                        return k;
        }
        return 0;
}

/* The original of a return, as the POS knows it; the store resolves it. Only returns name one. */
static int parse_original(ParseContext *c, json_object *top, Receipt *r, char **detail) {
        json_object *original = field_get(top, "original"), *date = field_get(top, "original_date");
        const char *s = NULL;
        size_t l = 0;
        int k;

        if (!original && !date)
                return 0;
        if (!receipt_type_is_return(r->type))
                return fail(detail, -EINVAL,
                            "%s: only a return (refund, purchase_refund) refers to an original (type is %s)",
                            original ? "original" : "original_date", receipt_type_to_string(r->type));

        if (original) {
                k = parse_string(original, NULL, "original", RECEIPT_ORIGINAL_MAX, 0, &s, &l, detail);
                if (k < 0)
                        return k;
                /* Visible ASCII, as intake.c takes an Idempotency-Key: it is one of those, a receipt id or a
                 * document number, and it is logged and looked up. */
                for (size_t i = 0; i < l; i++)
                        if ((uint8_t) s[i] < 0x21 || (uint8_t) s[i] > 0x7e)
                                return fail(detail, -EINVAL, "original: only visible ASCII characters, no spaces");
                r->original = strndup(s, l);
                if (!r->original)
                        return -ENOMEM;
        }

        if (date) {
                k = parse_date(c, date, NULL, "original_date", &r->original_date, detail);
                if (k < 0)
                        return k;
        }
        return 0;
}

/* "20 %" for a nominal rate, "20/120" for a calculated one: how the law and the messages name it. */
static char *vat_rate_format(char buf[static 16], const VatCode *vat) {
        if (vat->percent >= 0)
                snprintf(buf, 16, "%i %%", vat->percent);
        else
                snprintf(buf, 16, "%u/%u", vat->numerator, vat->denominator);
        return buf;
}

/* *ret_key is the field that named the code, for messages: vat_rate when both did. */
static int parse_vat(json_object *item, const char *prefix, const VatCode **ret, const char **ret_key,
                     char **detail) {
        json_object *v_rate = field_get(item, "vat_rate"), *v_name = field_get(item, "vat");
        const VatCode *by_rate = NULL, *by_name = NULL;
        int r;

        if (!v_rate && !v_name)
                return fail(detail, -EINVAL, "%s.vat_rate: missing (or give vat)", prefix);

        if (v_rate) {
                int64_t rate = 0;

                r = parse_decimal(v_rate, prefix, "vat_rate", 0, &rate, detail);
                if (r < 0)
                        return r;
                if (rate >= 0 && rate <= INT_MAX)
                        by_rate = vat_from_rate((int) rate);
                if (!by_rate)
                        return fail(detail, -EINVAL, "%s.vat_rate: unsupported rate %" PRIi64, prefix, rate);
        }

        if (v_name) {
                const char *s = NULL;

                r = parse_string(v_name, prefix, "vat", SIZE_MAX, 0, &s, NULL, detail);
                if (r < 0)
                        return r;
                by_name = vat_from_name(s);
                if (!by_name)
                        return fail_unknown(detail, prefix, "vat", s);
        }

        if (by_rate && by_name && by_rate != by_name)
                return fail(detail, -EINVAL, "%s.vat: '%s' does not match vat_rate %i", prefix,
                            by_name->name, by_rate->percent);

        *ret = by_name ?: by_rate;
        *ret_key = by_rate ? "vat_rate" : "vat";
        return 0;
}

/* A code the law has ended (20 % and 20/120 from 2026-01-01, VatCode.until) stays right for what settles a
 * sale made before that day (FNS letter 15.12.2025 № АБ-4-20/11248@, see vat.c), and for nothing else:
 *  - a sale or purchase: its own day, options.now;
 *  - a correction: the day of the settlement it corrects, correction.date (tag 1178);
 *  - a return: the day of the original sale, original_date; or the original itself, which the store must
 *    then check (needs_pre2026_original). */
static int check_vat_in_force(ParseContext *c, Receipt *r, const char *prefix, const char *key,
                              const VatCode *vat, char **detail) {
        char rate[16];
        unsigned today;
        int k;

        if (vat->until == 0)
                return 0;

        if (r->has_correction) {
                if (r->correction.date < vat->until)
                        return 0;
                return fail(detail, -EINVAL,
                            "%s.%s: %s no longer applies from %s and correction.date is %s; use %s", prefix,
                            key, vat_rate_format(rate, vat), DATE_FORMAT(vat->until),
                            DATE_FORMAT(r->correction.date), vat->successor);
        }

        k = context_today(c, &today);
        if (k < 0)
                return k;
        if (today < vat->until)
                return 0;

        if (!receipt_type_is_return(r->type))
                return fail(detail, -EINVAL, "%s.%s: %s no longer applies from %s; use %s", prefix, key,
                            vat_rate_format(rate, vat), DATE_FORMAT(vat->until), vat->successor);

        if (r->original_date > 0) {
                if (r->original_date < vat->until)
                        return 0;
                return fail(detail, -EINVAL,
                            "%s.%s: %s no longer applies from %s and original_date is %s; use %s", prefix,
                            key, vat_rate_format(rate, vat), DATE_FORMAT(vat->until),
                            DATE_FORMAT(r->original_date), vat->successor);
        }
        if (r->original) {
                r->needs_pre2026_original = true;
                return 0;
        }
        return fail(detail, -EINVAL,
                    "%s.%s: %s no longer applies from %s; a return may use it only for a sale made before "
                    "then: give original_date (YYYY-MM-DD) or original (the original receipt), or use %s",
                    prefix, key, vat_rate_format(rate, vat), DATE_FORMAT(vat->until), vat->successor);
}

static int parse_item(ParseContext *c, Receipt *r, json_object *o, size_t index, ReceiptItem *item,
                      char **detail) {
        const char *vat_key = NULL;
        char prefix[32];
        int64_t expected, discount = 0;
        int k, value = 0;
        json_object *v, *v_discount;

        snprintf(prefix, sizeof prefix, "items[%zu]", index);
        if (!json_object_is_type(o, json_type_object))
                return fail(detail, -EINVAL, "%s: must be an object", prefix);
        k = check_fields(c, o, prefix, item_fields, ELEMENTSOF(item_fields), detail);
        if (k < 0)
                return k;

        k = parse_string_dup(field_get(o, "name"), prefix, "name", RECEIPT_ITEM_NAME_MAX, 0, &item->name,
                             detail);
        if (k < 0)
                return k;

        k = parse_decimal(field_get(o, "price"), prefix, "price", MONEY_SCALE_KOPECKS, &item->price, detail);
        if (k < 0)
                return k;
        if (item->price < 0)
                return fail(detail, -EINVAL, "%s.price: must not be negative", prefix);

        k = parse_decimal(field_get(o, "quantity"), prefix, "quantity", MONEY_SCALE_QUANTITY,
                          &item->quantity, detail);
        if (k < 0)
                return k;
        if (item->quantity <= 0)
                return fail(detail, -EINVAL, "%s.quantity: must be greater than zero", prefix);

        k = parse_decimal(field_get(o, "total"), prefix, "total", MONEY_SCALE_KOPECKS, &item->total, detail);
        if (k < 0)
                return k;
        if (item->total < 0)
                return fail(detail, -EINVAL, "%s.total: must not be negative", prefix);

        v_discount = field_get(o, "discount");
        if (v_discount) {
                k = parse_decimal(v_discount, prefix, "discount", MONEY_SCALE_KOPECKS, &discount, detail);
                if (k < 0)
                        return k;
                if (discount < 0)
                        return fail(detail, -EINVAL, "%s.discount: must not be negative", prefix);
        }

        if (line_amount(item->price, item->quantity, &expected) < 0)
                return fail(detail, -EINVAL, "%s: price * quantity out of range", prefix);
        if (v_discount) {
                /* A discount explains the difference, so it must explain it exactly. */
                if (discount > expected)
                        return fail(detail, -EINVAL, "%s.discount: %s is larger than the line %s", prefix,
                                    MONEY_FORMAT(discount, MONEY_SCALE_KOPECKS),
                                    MONEY_FORMAT(expected, MONEY_SCALE_KOPECKS));
                if (item->total != expected - discount)
                        return fail(detail, -EINVAL,
                                    "%s.total: %s does not match price * quantity - discount = %s", prefix,
                                    MONEY_FORMAT(item->total, MONEY_SCALE_KOPECKS),
                                    MONEY_FORMAT(expected - discount, MONEY_SCALE_KOPECKS));
                item->discount = discount;
        } else if (item->total > expected + 1 || item->total < expected - 1)
                /* The prototype's tolerance: POS software rounds lines its own way, by at most a kopeck. */
                return fail(detail, -EINVAL, "%s.total: %s does not match price * quantity = %s", prefix,
                            MONEY_FORMAT(item->total, MONEY_SCALE_KOPECKS),
                            MONEY_FORMAT(expected, MONEY_SCALE_KOPECKS));

        k = parse_vat(o, prefix, &item->vat, &vat_key, detail);
        if (k < 0)
                return k;
        k = check_vat_in_force(c, r, prefix, vat_key, item->vat, detail);
        if (k < 0)
                return k;

        k = parse_enum(field_get(o, "payment_method"), prefix, "payment_method", payment_method_table,
                       ELEMENTSOF(payment_method_table), PAYMENT_METHOD_FULL_PAYMENT, &value, detail);
        if (k < 0)
                return k;
        item->payment_method = value;

        k = parse_enum(field_get(o, "payment_object"), prefix, "payment_object", payment_object_table,
                       ELEMENTSOF(payment_object_table), PAYMENT_OBJECT_COMMODITY, &value, detail);
        if (k < 0)
                return k;
        item->payment_object = value;

        k = parse_enum(field_get(o, "measure"), prefix, "measure", measure_table, ELEMENTSOF(measure_table),
                       MEASURE_PIECE, &value, detail);
        if (k < 0)
                return k;
        item->measure = value;

        v = field_get(o, "mark_code");
        if (v) {
                k = parse_string_dup(v, prefix, "mark_code", RECEIPT_MARK_CODE_MAX, 0, &item->mark_code,
                                     detail);
                if (k < 0)
                        return k;
        }

        return 0;
}

static int parse_payment(ParseContext *c, json_object *o, size_t index, ReceiptPayment *payment,
                         char **detail) {
        char prefix[32];
        int r, value = 0;

        snprintf(prefix, sizeof prefix, "payments[%zu]", index);
        if (!json_object_is_type(o, json_type_object))
                return fail(detail, -EINVAL, "%s: must be an object", prefix);
        r = check_fields(c, o, prefix, payment_fields, ELEMENTSOF(payment_fields), detail);
        if (r < 0)
                return r;

        r = parse_enum(field_get(o, "type"), prefix, "type", payment_type_table,
                       ELEMENTSOF(payment_type_table), -1, &value, detail);
        if (r < 0)
                return r;
        payment->type = value;

        r = parse_decimal(field_get(o, "amount"), prefix, "amount", MONEY_SCALE_KOPECKS, &payment->amount,
                          detail);
        if (r < 0)
                return r;
        if (payment->amount <= 0)
                return fail(detail, -EINVAL, "%s.amount: must be greater than zero", prefix);

        return 0;
}

/* Shape only: one '@' with something on both sides, a dot inside the domain, no spaces or controls. */
static bool email_is_plausible(const char *s) {
        const char *at = strchr(s, '@'), *dot;

        if (!at || at == s || strchr(at + 1, '@'))
                return false;
        dot = strrchr(at + 1, '.');
        if (!dot || dot == at + 1 || dot[1] == '\0')
                return false;
        for (const char *p = s; *p; p++)
                if ((uint8_t) *p <= ' ' || *p == 0x7f)
                        return false;
        return true;
}

/* E.164 as tag 1008 wants it: '+' and 10..15 digits, nothing else. */
static bool phone_is_plausible(const char *s) {
        size_t n = 0;

        if (*s != '+')
                return false;
        for (s++; *s; s++, n++)
                if (*s < '0' || *s > '9')
                        return false;
        return n >= 10 && n <= 15;
}

static int parse_customer(ParseContext *c, json_object *o, Receipt *r, char **detail) {
        json_object *email, *phone;
        int k;

        if (!json_object_is_type(o, json_type_object))
                return fail(detail, -EINVAL, "customer: must be an object");
        k = check_fields(c, o, "customer", customer_fields, ELEMENTSOF(customer_fields), detail);
        if (k < 0)
                return k;

        email = field_get(o, "email");
        phone = field_get(o, "phone");
        if (!email && !phone)
                return fail(detail, -EINVAL, "customer: needs an email or a phone");

        if (email) {
                k = parse_string_dup(email, "customer", "email", RECEIPT_CUSTOMER_MAX, 0, &r->customer_email,
                                     detail);
                if (k < 0)
                        return k;
                if (!email_is_plausible(r->customer_email))
                        return fail(detail, -EINVAL, "customer.email: not an e-mail address");
        }

        if (phone) {
                k = parse_string_dup(phone, "customer", "phone", RECEIPT_CUSTOMER_MAX, 0, &r->customer_phone,
                                     detail);
                if (k < 0)
                        return k;
                if (!phone_is_plausible(r->customer_phone))
                        return fail(detail, -EINVAL, "customer.phone: not a phone number like +79991234567");
        }

        return 0;
}

/* What json-c lets through even in strict mode although JSON forbids it: raw control characters inside
 * strings (a NUL would also end json-c's view of the text early) and single-quoted strings. Returns the
 * offending byte's offset and what it is, or -1. */
static ssize_t find_non_json(const char *body, size_t size, const char **ret_what) {
        bool in_string = false;

        for (size_t i = 0; i < size; i++) {
                char c = body[i];

                if ((uint8_t) c < 0x20 && (in_string || (c != '\t' && c != '\n' && c != '\r'))) {
                        *ret_what = "control character";
                        return (ssize_t) i;
                }
                if (in_string) {
                        if (c == '\\')
                                i++; /* an escaped character cannot end the string; json-c checks it */
                        else if (c == '"')
                                in_string = false;
                } else if (c == '"') {
                        in_string = true;
                } else if (c == '\'') {
                        *ret_what = "single quote";
                        return (ssize_t) i;
                }
        }
        return -1;
}

/* One tokener per thread, kept between requests: allocating one per request (its parse stack and buffer)
 * and freeing it again sent glibc into malloc_consolidate() on the loop thread. */
static thread_local json_tokener *cached_tokener = NULL;

static void tokener_release(json_tokener **tok) {
        if (!*tok)
                return;
        /* Taken out while in use, so a nested call would simply get its own. Reset here too, so that a
         * failed parse's half-built objects are not kept until the next request. */
        if (!cached_tokener) {
                json_tokener_reset(*tok);
                cached_tokener = TAKE_PTR(*tok);
        } else
                json_tokener_free(TAKE_PTR(*tok));
}

static int parse_json_body(const char *body, size_t size, json_object **ret, char **detail) {
        _cleanup_(tokener_release) json_tokener *tok = NULL;
        _cleanup_(json_object_putp) json_object *o = NULL;
        enum json_tokener_error e;
        const char *what;
        ssize_t bad;

        if (size == 0)
                return fail(detail, -EBADMSG, "body: empty");
        if (size > INT_MAX)
                return fail(detail, -EBADMSG, "body: too large");
        if (!utf8_is_valid(body, size))
                return fail(detail, -EBADMSG, "body: not valid UTF-8");
        bad = find_non_json(body, size, &what);
        if (bad >= 0)
                return fail(detail, -EBADMSG, "body: not valid JSON (%s at offset %zi)", what, bad);

        tok = TAKE_PTR(cached_tokener);
        if (tok)
                json_tokener_reset(tok);
        else {
                tok = json_tokener_new();
                if (!tok)
                        return -ENOMEM;
                /* No JSON_TOKENER_VALIDATE_UTF8: utf8_is_valid() checked the whole body, more strictly. */
                json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        }

        o = json_tokener_parse_ex(tok, body, (int) size);
        e = json_tokener_get_error(tok);
        if (e == json_tokener_continue) {
                /* A bare top-level scalar ("null", "42") ends only with one more byte; an object does not
                 * need that. */
                o = json_tokener_parse_ex(tok, "", 1);
                if (json_tokener_get_error(tok) != json_tokener_success)
                        return fail(detail, -EBADMSG, "body: not valid JSON (truncated)");
                return fail(detail, -EBADMSG, "body: not a JSON object");
        }
        if (!o || e != json_tokener_success)
                return fail(detail, -EBADMSG, "body: not valid JSON (%s at offset %zu)",
                            json_tokener_error_desc(e), json_tokener_get_parse_end(tok));
        /* Strict mode refuses trailing characters itself; this backs up find_non_json() in case json-c
         * ever stops at a byte it does not report. */
        if (json_tokener_get_parse_end(tok) != size)
                return fail(detail, -EBADMSG, "body: not valid JSON (trailing data at offset %zu)",
                            json_tokener_get_parse_end(tok));
        if (!json_object_is_type(o, json_type_object))
                return fail(detail, -EBADMSG, "body: not a JSON object");

        *ret = TAKE_PTR(o);
        return 0;
}

typedef struct DiscountShare {
        uint64_t share;     /* kopecks */
        uint64_t remainder; /* of discount * total / sum: what the largest-remainder method ranks by */
        size_t index;
} DiscountShare;

static int discount_share_compare(const void *a, const void *b) {
        const DiscountShare *x = a, *y = b;

        if (x->remainder != y->remainder)
                return x->remainder > y->remainder ? -1 : 1;
        return x->index < y->index ? -1 : x->index > y->index;
}

/* The receipt's discount spread over its lines in proportion to their totals, to the kopeck. Our own rule
 * (no receipt-level discount tag was found in FFD 1.2: the register gets each line with its final total),
 * the largest-remainder method: line i first gets floor(discount * total_i / sum); the kopecks still missing
 * (fewer than the lines) go one each to the lines with the largest remainders of that division, ties to the
 * lower index. The shares add up to the discount exactly, none exceeds its line (discount <= sum), and the
 * same body always gives the same split. 100.00 over three lines of 50.00 gives 33.34, 33.33, 33.33. */
static int spread_discount(Receipt *r, int64_t discount) {
        _cleanup_free_ DiscountShare *shares = NULL;
        uint64_t left = (uint64_t) discount;

        assert(discount > 0 && discount <= r->total);

        shares = new(DiscountShare, r->n_items);
        if (!shares)
                return -ENOMEM;

        for (size_t i = 0; i < r->n_items; i++) {
                int k;

                shares[i].index = i;
                /* discount <= sum: the quotient is at most total_i and always fits. */
                k = money_mul_div((uint64_t) discount, (uint64_t) r->items[i].total, (uint64_t) r->total,
                                  &shares[i].share, &shares[i].remainder);
                assert(k >= 0);
                left -= shares[i].share;
        }

        assert(left < r->n_items);
        qsort(shares, r->n_items, sizeof *shares, discount_share_compare);
        for (size_t j = 0; j < left; j++)
                shares[j].share++;

        for (size_t j = 0; j < r->n_items; j++) {
                ReceiptItem *item = r->items + shares[j].index;
                int64_t line = 0;

                if (shares[j].share == 0)
                        continue;
                /* Checked when the item was parsed, so it cannot fail now. */
                (void) line_amount(item->price, item->quantity, &line);
                item->total -= (int64_t) shares[j].share;
                /* The whole discount of the line, so that the canonical text parses back exactly: the item's
                 * own plus its share, and the kopeck of the POS's rounding when it had no discount of its
                 * own (then total may differ from price * quantity by that kopeck). */
                item->discount = line - item->total;
        }

        r->total -= discount;
        return 0;
}

/* Tag 1200 per item, and the sums per code over the receipt. A code's sum is the sum of its items' 1200,
 * not the VAT of the code's base: our decision, so that the receipt's figures add up to its lines (the two
 * can differ by a kopeck per line; a register computes its own receipt sums, tags 1102..1107, from the
 * items). */
static int compute_vat(Receipt *r) {
        size_t n_table = 0;

        (void) vat_table(&n_table);
        r->vat_sums = new0(ReceiptVatSum, MIN(n_table, r->n_items));
        if (!r->vat_sums)
                return -ENOMEM;

        for (size_t i = 0; i < r->n_items; i++) {
                ReceiptItem *item = r->items + i;
                ReceiptVatSum *sum = NULL;
                size_t j;

                item->vat_amount = vat_amount(item->vat, item->total);

                /* A handful of codes at most: kept ordered by tag 1199 as they come. */
                for (j = 0; j < r->n_vat_sums && r->vat_sums[j].vat->tag1199 <= item->vat->tag1199; j++)
                        if (r->vat_sums[j].vat == item->vat) {
                                sum = r->vat_sums + j;
                                break;
                        }
                if (!sum) {
                        memmove(r->vat_sums + j + 1, r->vat_sums + j, (r->n_vat_sums - j) * sizeof *sum);
                        sum = r->vat_sums + j;
                        *sum = (ReceiptVatSum) { .vat = item->vat };
                        r->n_vat_sums++;
                }
                /* Both stay within the receipt's total, which fits. */
                sum->base += item->total;
                sum->amount += item->vat_amount;
        }
        return 0;
}

static bool payment_is_cash(const ReceiptPayment *p) {
        return p->type == PAYMENT_TYPE_CASH;
}

/* A derived amount the body states: absent is fine, present must equal what the receipt adds up to. */
static int check_stated(json_object *o, const char *key, int64_t computed, char **detail) {
        json_object *v = field_get(o, key);
        int64_t stated = 0;
        int k;

        if (!v)
                return 0;
        k = parse_decimal(v, NULL, key, MONEY_SCALE_KOPECKS, &stated, detail);
        if (k < 0)
                return k;
        if (stated != computed)
                return fail(detail, -EINVAL, "%s: %s does not match the receipt's %s", key,
                            MONEY_FORMAT(stated, MONEY_SCALE_KOPECKS), MONEY_FORMAT(computed, MONEY_SCALE_KOPECKS));
        return 0;
}

static int receipt_validate(ParseContext *c, json_object *o, Receipt *r, char **detail) {
        json_object *v;
        int k, value = 0;
        int64_t paid = 0, non_cash = 0;

        k = check_fields(c, o, NULL, receipt_fields, ELEMENTSOF(receipt_fields), detail);
        if (k < 0)
                return k;

        k = parse_string_dup(field_get(o, "pos_id"), NULL, "pos_id", RECEIPT_POS_ID_MAX, STRING_NO_CONTROL,
                             &r->pos_id, detail);
        if (k < 0)
                return k;

        k = parse_enum(field_get(o, "type"), NULL, "type", receipt_type_table,
                       ELEMENTSOF(receipt_type_table), -1, &value, detail);
        if (k < 0)
                return k;
        r->type = value;

        k = parse_taxation(c, field_get(o, "taxation"), r, detail);
        if (k < 0)
                return k;

        k = parse_cashier(c, field_get(o, "cashier"), r, detail);
        if (k < 0)
                return k;

        /* Before the items: whether an item's VAT code is still in force depends on them. */
        k = parse_correction(c, field_get(o, "correction"), r, detail);
        if (k < 0)
                return k;

        k = parse_original(c, o, r, detail);
        if (k < 0)
                return k;

        v = field_get(o, "items");
        if (!v)
                return fail(detail, -EINVAL, "items: missing");
        if (!json_object_is_type(v, json_type_array))
                return fail(detail, -EINVAL, "items: must be an array");
        if (json_object_array_length(v) == 0)
                return fail(detail, -EINVAL, "items: must not be empty");
        if (json_object_array_length(v) > c->options.max_items)
                return fail(detail, -EINVAL, "items: more than %zu items", c->options.max_items);

        r->items = new0(ReceiptItem, json_object_array_length(v));
        if (!r->items)
                return -ENOMEM;
        for (size_t i = 0; i < json_object_array_length(v); i++) {
                ReceiptItem *item = r->items + i;

                /* Counted before parsing, so that receipt_free() releases a half-filled item. */
                r->n_items++;
                k = parse_item(c, r, json_object_array_get_idx(v, i), i, item, detail);
                if (k < 0)
                        return k;
                if (__builtin_add_overflow(r->total, item->total, &r->total))
                        return fail(detail, -EINVAL, "items: sum of totals out of range");
        }

        v = field_get(o, "discount");
        if (v) {
                int64_t discount = 0;

                k = parse_decimal(v, NULL, "discount", MONEY_SCALE_KOPECKS, &discount, detail);
                if (k < 0)
                        return k;
                if (discount < 0)
                        return fail(detail, -EINVAL, "discount: must not be negative");
                if (discount > r->total)
                        return fail(detail, -EINVAL, "discount: %s is larger than the sum of the lines %s",
                                    MONEY_FORMAT(discount, MONEY_SCALE_KOPECKS),
                                    MONEY_FORMAT(r->total, MONEY_SCALE_KOPECKS));
                if (discount > 0) {
                        k = spread_discount(r, discount);
                        if (k < 0)
                                return k;
                }
        }

        k = compute_vat(r);
        if (k < 0)
                return k;

        v = field_get(o, "payments");
        if (!v)
                return fail(detail, -EINVAL, "payments: missing");
        if (!json_object_is_type(v, json_type_array))
                return fail(detail, -EINVAL, "payments: must be an array");
        if (json_object_array_length(v) == 0)
                return fail(detail, -EINVAL, "payments: must not be empty");
        if (json_object_array_length(v) > c->options.max_payments)
                return fail(detail, -EINVAL, "payments: more than %zu payments", c->options.max_payments);

        r->payments = new0(ReceiptPayment, json_object_array_length(v));
        if (!r->payments)
                return -ENOMEM;
        for (size_t i = 0; i < json_object_array_length(v); i++) {
                ReceiptPayment *payment = r->payments + i;

                r->n_payments++;
                k = parse_payment(c, json_object_array_get_idx(v, i), i, payment, detail);
                if (k < 0)
                        return k;
                if (__builtin_add_overflow(paid, payment->amount, &paid))
                        return fail(detail, -EINVAL, "payments: sum out of range");
                if (!payment_is_cash(payment))
                        non_cash += payment->amount; /* <= paid, which did not overflow */
        }

        /* A register takes no less than the total and gives change only in cash: a card, an advance or a
         * credit above the total would have nowhere to go. No tolerance either way: the register has none.
         * Register behaviour rather than FFD text: ATOL's errors 66 «Чек оплачен не полностью» and 52
         * «Сумма не наличных платежей превышает сумму чека» (ATOL driver error table). */
        if (non_cash > r->total)
                return fail(detail, -EINVAL, "payments: non-cash payments %s exceed the total %s",
                            MONEY_FORMAT(non_cash, MONEY_SCALE_KOPECKS),
                            MONEY_FORMAT(r->total, MONEY_SCALE_KOPECKS));
        if (paid < r->total)
                return fail(detail, -EINVAL, "payments: sum %s is less than the total %s (short by %s)",
                            MONEY_FORMAT(paid, MONEY_SCALE_KOPECKS),
                            MONEY_FORMAT(r->total, MONEY_SCALE_KOPECKS),
                            MONEY_FORMAT(r->total - paid, MONEY_SCALE_KOPECKS));
        r->paid = paid;
        r->change = paid - r->total;

        /* The totals the text itself carries (a POS that states them, or a canonical text read back) must be
         * ours: a receipt whose sender counts differently is a mistake to show, not to print. */
        k = check_stated(o, "total", r->total, detail);
        if (k < 0)
                return k;
        k = check_stated(o, "change", r->change, detail);
        if (k < 0)
                return k;

        v = field_get(o, "customer");
        if (v) {
                k = parse_customer(c, v, r, detail);
                if (k < 0)
                        return k;
        }

        return 0;
}

int receipt_parse_with(const char *body, size_t size, const ReceiptOptions *o, Receipt **ret,
                       char **ret_detail) {
        static const ReceiptLimits limits_default = RECEIPT_LIMITS_DEFAULT;
        _cleanup_(json_object_putp) json_object *j = NULL;
        _cleanup_(receipt_freep) Receipt *r = NULL;
        _cleanup_free_ char *detail = NULL;
        ParseContext c = {};
        int k;

        assert(body || size == 0);
        assert(ret);

        if (o)
                c.options = *o;
        if (c.options.max_items == 0)
                c.options.max_items = limits_default.max_items;
        if (c.options.max_payments == 0)
                c.options.max_payments = limits_default.max_payments;
        if (c.options.default_taxation == 0)
                c.options.default_taxation = TAXATION_OSN;
        assert(taxation_to_string(c.options.default_taxation));
        assert((c.options.allowed_taxations & ~(unsigned) TAXATION_ALL) == 0);
        assert(c.options.unknown_fields >= 0 && c.options.unknown_fields < _RECEIPT_UNKNOWN_FIELDS_MAX);

        k = parse_json_body(body, size, &j, &detail);
        if (k >= 0) {
                r = new0(Receipt, 1);
                if (!r)
                        k = -ENOMEM;
                else
                        k = receipt_validate(&c, j, r, &detail);
        }

        if (k < 0) {
                /* A message is only promised for the two validation errors. */
                if (ret_detail)
                        *ret_detail = k == -EBADMSG || k == -EINVAL ? TAKE_PTR(detail) : NULL;
                return k;
        }

        if (ret_detail)
                *ret_detail = NULL;
        *ret = TAKE_PTR(r);
        return 0;
}

int receipt_parse(const char *body, size_t size, const ReceiptLimits *limits, Receipt **ret,
                  char **ret_detail) {
        ReceiptOptions o = {};

        if (limits) {
                assert(limits->max_items > 0 && limits->max_payments > 0);
                o.max_items = limits->max_items;
                o.max_payments = limits->max_payments;
        }
        return receipt_parse_with(body, size, &o, ret, ret_detail);
}

static int json_add_string(json_object *o, const char *key, const char *s) {
        return json_add(o, key, json_object_new_string(s));
}

static int json_add_int(json_object *o, const char *key, int64_t i) {
        return json_add(o, key, json_object_new_int64(i));
}

static int json_add_decimal(json_object *o, const char *key, int64_t v, unsigned scale) {
        return json_add_string(o, key, MONEY_FORMAT(v, scale));
}

static int json_add_date(json_object *o, const char *key, unsigned date) {
        return json_add_string(o, key, DATE_FORMAT(date));
}

/* What AS_GIVEN leaves out: what the options filled in. */
static bool show_taxation(const Receipt *r, ReceiptCanonicalFlags flags) {
        return r->taxation_given || !(flags & RECEIPT_CANONICAL_AS_GIVEN);
}

static bool show_cashier(const Receipt *r, ReceiptCanonicalFlags flags) {
        return r->cashier_name && (r->cashier_given || !(flags & RECEIPT_CANONICAL_AS_GIVEN));
}

static int item_to_json(const ReceiptItem *item, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        int r;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;

        if ((r = json_add_string(o, "name", item->name)) < 0 ||
            (r = json_add_decimal(o, "price", item->price, MONEY_SCALE_KOPECKS)) < 0 ||
            (r = json_add_decimal(o, "quantity", item->quantity, MONEY_SCALE_QUANTITY)) < 0 ||
            (r = json_add_decimal(o, "total", item->total, MONEY_SCALE_KOPECKS)) < 0)
                return r;
        if (item->discount > 0 &&
            (r = json_add_decimal(o, "discount", item->discount, MONEY_SCALE_KOPECKS)) < 0)
                return r;
        if ((r = json_add_string(o, "vat", item->vat->name)) < 0 ||
            (r = json_add_int(o, "vat_tag1199", item->vat->tag1199)) < 0 ||
            (r = json_add_decimal(o, "vat_amount", item->vat_amount, MONEY_SCALE_KOPECKS)) < 0 ||
            (r = json_add_string(o, "payment_method", payment_method_to_string(item->payment_method))) < 0 ||
            (r = json_add_int(o, "payment_method_tag1214", item->payment_method)) < 0 ||
            (r = json_add_string(o, "payment_object", payment_object_to_string(item->payment_object))) < 0 ||
            (r = json_add_int(o, "payment_object_tag1212", item->payment_object)) < 0 ||
            (r = json_add_string(o, "measure", measure_to_string(item->measure))) < 0 ||
            (r = json_add_int(o, "measure_tag2108", item->measure)) < 0)
                return r;
        if (item->mark_code) {
                r = json_add_string(o, "mark_code", item->mark_code);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(o);
        return 0;
}

static int payment_to_json(const ReceiptPayment *payment, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        int r;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;

        if ((r = json_add_string(o, "type", payment_type_to_string(payment->type))) < 0 ||
            (r = json_add_decimal(o, "amount", payment->amount, MONEY_SCALE_KOPECKS)) < 0 ||
            (r = json_add_int(o, "amount_tag", payment->type)) < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

static int vat_sum_to_json(const ReceiptVatSum *sum, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        int r;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;

        if ((r = json_add_string(o, "vat", sum->vat->name)) < 0 ||
            (r = json_add_int(o, "tag1199", sum->vat->tag1199)) < 0 ||
            (r = json_add_decimal(o, "base", sum->base, MONEY_SCALE_KOPECKS)) < 0 ||
            (r = json_add_decimal(o, "amount", sum->amount, MONEY_SCALE_KOPECKS)) < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

/* Appends what to_json() makes of each of n elements of size bytes from a to a new array at o[key]. */
static int json_add_array(json_object *o, const char *key, const void *a, size_t n, size_t size,
                          int (*to_json)(const void *element, json_object **ret)) {
        _cleanup_(json_object_putp) json_object *array = json_object_new_array();
        int k;

        if (!array)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *e = NULL;

                k = to_json((const uint8_t *) a + i * size, &e);
                if (k < 0)
                        return k;
                if (json_object_array_add(array, e) < 0) {
                        json_object_put(e);
                        return -ENOMEM;
                }
        }
        return json_add(o, key, TAKE_PTR(array));
}

static int item_to_json_any(const void *e, json_object **ret) {
        return item_to_json(e, ret);
}

static int payment_to_json_any(const void *e, json_object **ret) {
        return payment_to_json(e, ret);
}

static int vat_sum_to_json_any(const void *e, json_object **ret) {
        return vat_sum_to_json(e, ret);
}

int receipt_to_json_with(const Receipt *r, ReceiptCanonicalFlags flags, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        int k;

        assert(r);
        assert(ret);

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;

        if ((k = json_add_string(o, "pos_id", r->pos_id)) < 0 ||
            (k = json_add_string(o, "type", receipt_type_to_string(r->type))) < 0 ||
            (k = json_add_int(o, "type_tag1054", receipt_type_to_ffd(r->type))) < 0)
                return k;
        if (show_taxation(r, flags) &&
            ((k = json_add_string(o, "taxation", taxation_to_string(r->taxation))) < 0 ||
             (k = json_add_int(o, "taxation_tag1055", r->taxation)) < 0))
                return k;

        if (show_cashier(r, flags)) {
                _cleanup_(json_object_putp) json_object *cashier = json_object_new_object();

                if (!cashier)
                        return -ENOMEM;
                if ((k = json_add_string(cashier, "name", r->cashier_name)) < 0)
                        return k;
                if (r->cashier_inn && (k = json_add_string(cashier, "inn", r->cashier_inn)) < 0)
                        return k;
                if ((k = json_add(o, "cashier", TAKE_PTR(cashier))) < 0)
                        return k;
        }

        if (r->has_correction) {
                _cleanup_(json_object_putp) json_object *correction = json_object_new_object();

                if (!correction)
                        return -ENOMEM;
                if ((k = json_add_string(correction, "type",
                                         correction_type_to_string(r->correction.type))) < 0 ||
                    (k = json_add_int(correction, "type_tag1173", r->correction.type)) < 0 ||
                    (k = json_add_date(correction, "date", r->correction.date)) < 0)
                        return k;
                if (r->correction.order_number &&
                    (k = json_add_string(correction, "order_number", r->correction.order_number)) < 0)
                        return k;
                if ((k = json_add(o, "correction", TAKE_PTR(correction))) < 0)
                        return k;
        }

        if (r->original && (k = json_add_string(o, "original", r->original)) < 0)
                return k;
        if (r->original_date > 0 && (k = json_add_date(o, "original_date", r->original_date)) < 0)
                return k;

        if ((k = json_add_array(o, "items", r->items, r->n_items, sizeof *r->items, item_to_json_any)) < 0 ||
            (k = json_add_array(o, "payments", r->payments, r->n_payments, sizeof *r->payments,
                                payment_to_json_any)) < 0 ||
            (k = json_add_decimal(o, "total", r->total, MONEY_SCALE_KOPECKS)) < 0)
                return k;
        if (r->change > 0 && (k = json_add_decimal(o, "change", r->change, MONEY_SCALE_KOPECKS)) < 0)
                return k;
        if ((k = json_add_array(o, "vat_amounts", r->vat_sums, r->n_vat_sums, sizeof *r->vat_sums,
                                vat_sum_to_json_any)) < 0)
                return k;

        if (r->customer_email || r->customer_phone) {
                _cleanup_(json_object_putp) json_object *customer = json_object_new_object();

                if (!customer)
                        return -ENOMEM;
                if (r->customer_email && (k = json_add_string(customer, "email", r->customer_email)) < 0)
                        return k;
                if (r->customer_phone && (k = json_add_string(customer, "phone", r->customer_phone)) < 0)
                        return k;
                k = json_add(o, "customer", TAKE_PTR(customer));
                if (k < 0)
                        return k;
        }

        *ret = TAKE_PTR(o);
        return 0;
}

int receipt_to_json(const Receipt *r, json_object **ret) {
        return receipt_to_json_with(r, 0, ret);
}

/* The canonical text, written straight into one buffer instead of through a json-c tree: building the tree
 * (an allocation and a hash insertion per field) and serialising it was a fifth of the loop thread's time
 * at 64 connections. The bytes must stay exactly what json_object_to_json_string_ext() with
 * JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE wrote for receipt_to_json()'s tree: stored
 * receipts are compared by the fingerprint of this text. test-receipt pins examples of it. */

/* A JSON string as json-c escapes it: '"', '\\' and the controls with a short form as \" \\ \b \f \n \r
 * \t, every other byte below 0x20 as \u00xx with lower-case hex; '/' (NOSLASHESCAPE), DEL and everything
 * from 0x80 up (UTF-8) as they are. */
static void text_append_string(Text *t, const char *s) {
        static const char hex[] = "0123456789abcdef";
        const char *run = s;

        text_append_literal(t, "\"");
        for (; *s; s++) {
                uint8_t c = (uint8_t) *s;
                char esc[6] = { '\\' };
                size_t n = 2;

                if (c >= 0x20 && c != '"' && c != '\\')
                        continue;

                switch (c) {
                case '"':
                case '\\':
                        esc[1] = (char) c;
                        break;
                case '\b':
                        esc[1] = 'b';
                        break;
                case '\f':
                        esc[1] = 'f';
                        break;
                case '\n':
                        esc[1] = 'n';
                        break;
                case '\r':
                        esc[1] = 'r';
                        break;
                case '\t':
                        esc[1] = 't';
                        break;
                default:
                        memcpy(esc + 1, "u00", 3);
                        esc[4] = hex[c >> 4];
                        esc[5] = hex[c & 0xf];
                        n = 6;
                }
                text_append(t, run, (size_t) (s - run));
                text_append(t, esc, n);
                run = s + 1;
        }
        text_append(t, run, (size_t) (s - run));
        text_append_literal(t, "\"");
}

/* Names from the tables and money_format()'s decimals: nothing in them needs escaping. */
static void text_append_name(Text *t, const char *s) {
        assert(s);
        text_append_literal(t, "\"");
        text_append(t, s, strlen(s));
        text_append_literal(t, "\"");
}

/* money_format() with scale 0 writes what json-c's "%" PRId64 does, without printf's machinery. */
static void text_append_int(Text *t, int64_t v) {
        char buf[MONEY_FORMAT_MAX];
        const char *s = money_format(buf, sizeof buf, v, 0);

        assert(s);
        text_append(t, s, strlen(s));
}

/* Amounts are JSON strings: "1500.00". */
static void text_append_decimal(Text *t, int64_t v, unsigned scale) {
        text_append_name(t, money_format((char[MONEY_FORMAT_MAX]) {}, MONEY_FORMAT_MAX, v, scale));
}

static void text_append_date(Text *t, unsigned date) {
        text_append_name(t, DATE_FORMAT(date));
}

static void text_append_item(Text *t, const ReceiptItem *item) {
        text_append_literal(t, "{\"name\":");
        text_append_string(t, item->name);
        text_append_literal(t, ",\"price\":");
        text_append_decimal(t, item->price, MONEY_SCALE_KOPECKS);
        text_append_literal(t, ",\"quantity\":");
        text_append_decimal(t, item->quantity, MONEY_SCALE_QUANTITY);
        text_append_literal(t, ",\"total\":");
        text_append_decimal(t, item->total, MONEY_SCALE_KOPECKS);
        if (item->discount > 0) {
                text_append_literal(t, ",\"discount\":");
                text_append_decimal(t, item->discount, MONEY_SCALE_KOPECKS);
        }
        text_append_literal(t, ",\"vat\":");
        text_append_name(t, item->vat->name);
        text_append_literal(t, ",\"vat_tag1199\":");
        text_append_int(t, item->vat->tag1199);
        text_append_literal(t, ",\"vat_amount\":");
        text_append_decimal(t, item->vat_amount, MONEY_SCALE_KOPECKS);
        text_append_literal(t, ",\"payment_method\":");
        text_append_name(t, payment_method_to_string(item->payment_method));
        text_append_literal(t, ",\"payment_method_tag1214\":");
        text_append_int(t, item->payment_method);
        text_append_literal(t, ",\"payment_object\":");
        text_append_name(t, payment_object_to_string(item->payment_object));
        text_append_literal(t, ",\"payment_object_tag1212\":");
        text_append_int(t, item->payment_object);
        text_append_literal(t, ",\"measure\":");
        text_append_name(t, measure_to_string(item->measure));
        text_append_literal(t, ",\"measure_tag2108\":");
        text_append_int(t, item->measure);
        if (item->mark_code) {
                text_append_literal(t, ",\"mark_code\":");
                text_append_string(t, item->mark_code);
        }
        text_append_literal(t, "}");
}

int receipt_canonical_with(const Receipt *r, ReceiptCanonicalFlags flags, char **ret) {
        Text t = {};

        assert(r);
        assert(ret);

        /* The two-item sale is about 900 bytes: one allocation for the common case. */
        if (!text_reserve(&t, 640 + 512 * r->n_items))
                return -ENOMEM;

        text_append_literal(&t, "{\"pos_id\":");
        text_append_string(&t, r->pos_id);
        text_append_literal(&t, ",\"type\":");
        text_append_name(&t, receipt_type_to_string(r->type));
        text_append_literal(&t, ",\"type_tag1054\":");
        text_append_int(&t, receipt_type_to_ffd(r->type));
        if (show_taxation(r, flags)) {
                text_append_literal(&t, ",\"taxation\":");
                text_append_name(&t, taxation_to_string(r->taxation));
                text_append_literal(&t, ",\"taxation_tag1055\":");
                text_append_int(&t, r->taxation);
        }

        if (show_cashier(r, flags)) {
                text_append_literal(&t, ",\"cashier\":{\"name\":");
                text_append_string(&t, r->cashier_name);
                if (r->cashier_inn) {
                        text_append_literal(&t, ",\"inn\":");
                        text_append_string(&t, r->cashier_inn);
                }
                text_append_literal(&t, "}");
        }

        if (r->has_correction) {
                text_append_literal(&t, ",\"correction\":{\"type\":");
                text_append_name(&t, correction_type_to_string(r->correction.type));
                text_append_literal(&t, ",\"type_tag1173\":");
                text_append_int(&t, r->correction.type);
                text_append_literal(&t, ",\"date\":");
                text_append_date(&t, r->correction.date);
                if (r->correction.order_number) {
                        text_append_literal(&t, ",\"order_number\":");
                        text_append_string(&t, r->correction.order_number);
                }
                text_append_literal(&t, "}");
        }

        if (r->original) {
                text_append_literal(&t, ",\"original\":");
                text_append_string(&t, r->original);
        }
        if (r->original_date > 0) {
                text_append_literal(&t, ",\"original_date\":");
                text_append_date(&t, r->original_date);
        }

        text_append_literal(&t, ",\"items\":[");
        for (size_t i = 0; i < r->n_items; i++) {
                if (i > 0)
                        text_append_literal(&t, ",");
                text_append_item(&t, r->items + i);
        }

        text_append_literal(&t, "],\"payments\":[");
        for (size_t i = 0; i < r->n_payments; i++) {
                const ReceiptPayment *p = r->payments + i;

                if (i > 0)
                        text_append_literal(&t, ",");
                text_append_literal(&t, "{\"type\":");
                text_append_name(&t, payment_type_to_string(p->type));
                text_append_literal(&t, ",\"amount\":");
                text_append_decimal(&t, p->amount, MONEY_SCALE_KOPECKS);
                text_append_literal(&t, ",\"amount_tag\":");
                text_append_int(&t, p->type);
                text_append_literal(&t, "}");
        }

        text_append_literal(&t, "],\"total\":");
        text_append_decimal(&t, r->total, MONEY_SCALE_KOPECKS);
        if (r->change > 0) {
                text_append_literal(&t, ",\"change\":");
                text_append_decimal(&t, r->change, MONEY_SCALE_KOPECKS);
        }

        text_append_literal(&t, ",\"vat_amounts\":[");
        for (size_t i = 0; i < r->n_vat_sums; i++) {
                const ReceiptVatSum *v = r->vat_sums + i;

                if (i > 0)
                        text_append_literal(&t, ",");
                text_append_literal(&t, "{\"vat\":");
                text_append_name(&t, v->vat->name);
                text_append_literal(&t, ",\"tag1199\":");
                text_append_int(&t, v->vat->tag1199);
                text_append_literal(&t, ",\"base\":");
                text_append_decimal(&t, v->base, MONEY_SCALE_KOPECKS);
                text_append_literal(&t, ",\"amount\":");
                text_append_decimal(&t, v->amount, MONEY_SCALE_KOPECKS);
                text_append_literal(&t, "}");
        }
        text_append_literal(&t, "]");

        if (r->customer_email || r->customer_phone) {
                text_append_literal(&t, ",\"customer\":{");
                if (r->customer_email) {
                        text_append_literal(&t, "\"email\":");
                        text_append_string(&t, r->customer_email);
                }
                if (r->customer_phone) {
                        if (r->customer_email)
                                text_append_literal(&t, ",");
                        text_append_literal(&t, "\"phone\":");
                        text_append_string(&t, r->customer_phone);
                }
                text_append_literal(&t, "}");
        }
        text_append(&t, "}", 2); /* with the NUL */

        if (t.oom) {
                free(t.data);
                return -ENOMEM;
        }
        *ret = t.data;
        return 0;
}

int receipt_canonical(const Receipt *r, char **ret) {
        return receipt_canonical_with(r, 0, ret);
}

/* Per thread, kept for the life of the thread like the tokener. */
static thread_local EVP_MD *cached_sha256 = NULL;
static thread_local EVP_MD_CTX *cached_md_ctx = NULL;

int receipt_fingerprint(const char *canonical, char ret[static 65]) {
        static const char hex[] = "0123456789abcdef";
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned n = 0;

        assert(canonical);

        /* EVP_Digest() with EVP_sha256() allocates a context and, in OpenSSL 3, looks the provider's
         * implementation up again (a locked property query) on every call. */
        if (!cached_sha256) {
                cached_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
                if (!cached_sha256)
                        return -EIO;
        }
        if (!cached_md_ctx) {
                cached_md_ctx = EVP_MD_CTX_new();
                if (!cached_md_ctx)
                        return -ENOMEM;
        }

        if (EVP_DigestInit_ex2(cached_md_ctx, cached_sha256, NULL) != 1 ||
            EVP_DigestUpdate(cached_md_ctx, canonical, strlen(canonical)) != 1 ||
            EVP_DigestFinal_ex(cached_md_ctx, md, &n) != 1 || n != 32)
                return -EIO;

        for (unsigned i = 0; i < n; i++) {
                ret[2 * i] = hex[md[i] >> 4];
                ret[2 * i + 1] = hex[md[i] & 0xf];
        }
        ret[64] = '\0';
        return 0;
}
