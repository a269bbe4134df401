/* SPDX-License-Identifier: MIT */
/* A receipt's rules: the fields of each part (cashier, taxation, correction, original, items, payments,
 * customer), exact line amounts, the discount spread over the lines, VAT per line and per code, payments
 * against the total; and receipt_parse(), which reads the body and applies them. */

#include <inttypes.h>

#include "receipt-internal.h"

/* price * quantity in kopecks, rounded half up: quantity is in thousandths. */
static int line_amount(int64_t price, int64_t quantity, int64_t *ret) {
        int64_t p;

        assert(price >= 0 && quantity >= 0);

        if (__builtin_mul_overflow(price, quantity, &p))
                return -ERANGE;
        *ret = p / 1000 + (p % 1000 >= 500);
        return 0;
}

/* Every key a level knows, the derived ones the canonical text writes included: those are accepted and
 * ignored, so that the canonical text parses back. */
static const char *const receipt_fields[] = {
        "pos_id",     "type",     "type_tag1054",  "taxation", "taxation_tag1055", "cashier",
        "correction", "original", "original_date", "items",    "payments",         "discount",
        "total",      "change",   "vat_amounts",   "customer",
};
static const char *const item_fields[] = {
        "name",
        "price",
        "quantity",
        "total",
        "discount",
        "vat",
        "vat_rate",
        "vat_tag1199",
        "vat_amount",
        "payment_method",
        "payment_method_tag1214",
        "payment_object",
        "payment_object_tag1212",
        "measure",
        "measure_tag2108",
        "mark_code",
};
static const char *const payment_fields[] = { "type", "amount", "amount_tag" };
static const char *const cashier_fields[] = { "name", "inn" };
static const char *const correction_fields[] = { "type", "type_tag1173", "date", "order_number" };
static const char *const customer_fields[] = { "email", "phone" };

int receipt_check_cashier_name(const char *name, const char **ret_reason) {
        size_t n = 0, l;

        assert(name);
        assert(ret_reason);

        l = strlen(name);
        if (!receipt_utf8_is_valid(name, l)) {
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
                        return receipt_fail(detail, -EINVAL,
                                            "cashier.name: the register's default cashier: %s", reason);
                r->cashier_name = strdup(o->default_cashier);
                if (!r->cashier_name)
                        return -ENOMEM;
                if (o->default_cashier_inn) {
                        if (receipt_check_inn(o->default_cashier_inn, &reason) < 0)
                                return receipt_fail(detail, -EINVAL,
                                                    "cashier.inn: the register's default cashier: %s",
                                                    reason);
                        r->cashier_inn = strdup(o->default_cashier_inn);
                        if (!r->cashier_inn)
                                return -ENOMEM;
                }
                return 0;
        }

        if (!json_object_is_type(v, json_type_object))
                return receipt_fail(detail, -EINVAL, "cashier: must be an object");
        k = receipt_check_fields(c, v, "cashier", cashier_fields, ELEMENTSOF(cashier_fields), detail);
        if (k < 0)
                return k;
        r->cashier_given = true;

        k = receipt_parse_string_dup(receipt_field_get(v, "name"), "cashier", "name", RECEIPT_CASHIER_MAX,
                                     STRING_NO_CONTROL, &r->cashier_name, detail);
        if (k < 0)
                return k;

        inn = receipt_field_get(v, "inn");
        if (inn) {
                k = receipt_parse_string_dup(inn, "cashier", "inn", SIZE_MAX, 0, &r->cashier_inn, detail);
                if (k < 0)
                        return k;
                if (receipt_check_inn(r->cashier_inn, &reason) < 0)
                        return receipt_fail(detail, -EINVAL, "cashier.inn: %s", reason);
        }
        return 0;
}

static int parse_taxation(ParseContext *c, json_object *v, Receipt *r, char **detail) {
        unsigned allowed = c->options.allowed_taxations;
        char names[128] = "";
        int k, value = 0;

        if (v) {
                k = PARSE_ENUM(v, NULL, "taxation", taxation_from_string, -1, &value, detail);
                if (k < 0)
                        return k;
                r->taxation = value;
                r->taxation_given = true;
        } else
                r->taxation = c->options.default_taxation;

        if (allowed == 0 || (allowed & (unsigned) r->taxation))
                return 0;

        /* The names in the order of their bits. */
        for (unsigned bit = 1; bit <= (unsigned) TAXATION_ALL; bit <<= 1)
                if ((allowed & bit) && taxation_to_string((Taxation) bit)) {
                        if (names[0])
                                strncat(names, " or ", sizeof names - strlen(names) - 1);
                        strncat(names, taxation_to_string((Taxation) bit), sizeof names - strlen(names) - 1);
                }
        return receipt_fail(detail, -EINVAL, "taxation: the register is registered for %s only", names);
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
                        return receipt_fail(detail, -EINVAL,
                                            "correction: only a correction receipt has one (type is %s)",
                                            receipt_type_to_string(r->type));
                return 0;
        }
        if (!v)
                return receipt_fail(
                        detail, -EINVAL,
                        "correction: missing (a correction receipt needs its type, date and, by order, "
                        "order_number)");
        if (!json_object_is_type(v, json_type_object))
                return receipt_fail(detail, -EINVAL, "correction: must be an object");
        k = receipt_check_fields(c, v, "correction", correction_fields, ELEMENTSOF(correction_fields),
                                 detail);
        if (k < 0)
                return k;
        r->has_correction = true;

        k = PARSE_ENUM(receipt_field_get(v, "type"), "correction", "type", correction_type_from_string, -1,
                       &value, detail);
        if (k < 0)
                return k;
        r->correction.type = value;

        k = receipt_parse_date(c, receipt_field_get(v, "date"), "correction", "date", &r->correction.date,
                               detail);
        if (k < 0)
                return k;

        order = receipt_field_get(v, "order_number");
        if (!order && r->correction.type == CORRECTION_TYPE_BY_ORDER)
                return receipt_fail(detail, -EINVAL,
                                    "correction.order_number: missing (a correction by order needs it)");
        if (order) {
                k = receipt_parse_string_dup(order, "correction", "order_number", RECEIPT_ORDER_NUMBER_MAX,
                                             STRING_NO_CONTROL, &r->correction.order_number, detail);
                if (k < 0)
                        return k;
        }
        return 0;
}

/* The original of a return, as the POS knows it; the store resolves it. Only returns name one. */
static int parse_original(ParseContext *c, json_object *top, Receipt *r, char **detail) {
        json_object *original = receipt_field_get(top, "original"),
                    *date = receipt_field_get(top, "original_date");
        const char *s = NULL;
        size_t l = 0;
        int k;

        if (!original && !date)
                return 0;
        if (!receipt_type_is_return(r->type))
                return receipt_fail(
                        detail, -EINVAL,
                        "%s: only a return (refund, purchase_refund) refers to an original (type is %s)",
                        original ? "original" : "original_date", receipt_type_to_string(r->type));

        if (original) {
                k = receipt_parse_string(original, NULL, "original", RECEIPT_ORIGINAL_MAX, 0, &s, &l,
                                         detail);
                if (k < 0)
                        return k;
                /* Visible ASCII, as intake.c takes an Idempotency-Key: it is one of those, a receipt id or a
                 * document number, and it is logged and looked up. */
                for (size_t i = 0; i < l; i++)
                        if ((uint8_t) s[i] < 0x21 || (uint8_t) s[i] > 0x7e)
                                return receipt_fail(detail, -EINVAL,
                                                    "original: only visible ASCII characters, no spaces");
                r->original = strndup(s, l);
                if (!r->original)
                        return -ENOMEM;
        }

        if (date) {
                k = receipt_parse_date(c, date, NULL, "original_date", &r->original_date, detail);
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
        json_object *v_rate = receipt_field_get(item, "vat_rate"), *v_name = receipt_field_get(item, "vat");
        const VatCode *by_rate = NULL, *by_name = NULL;
        int r;

        if (!v_rate && !v_name)
                return receipt_fail(detail, -EINVAL, "%s.vat_rate: missing (or give vat)", prefix);

        if (v_rate) {
                int64_t rate = 0;

                r = receipt_parse_decimal(v_rate, prefix, "vat_rate", 0, &rate, detail);
                if (r < 0)
                        return r;
                if (rate >= 0 && rate <= INT_MAX)
                        by_rate = vat_from_rate((int) rate);
                if (!by_rate)
                        return receipt_fail(detail, -EINVAL, "%s.vat_rate: unsupported rate %" PRIi64,
                                            prefix, rate);
        }

        if (v_name) {
                const char *s = NULL;

                r = receipt_parse_string(v_name, prefix, "vat", SIZE_MAX, 0, &s, NULL, detail);
                if (r < 0)
                        return r;
                by_name = vat_from_name(s);
                if (!by_name)
                        return receipt_fail_unknown(detail, prefix, "vat", s);
        }

        if (by_rate && by_name && by_rate != by_name)
                return receipt_fail(detail, -EINVAL, "%s.vat: '%s' does not match vat_rate %i", prefix,
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
                return receipt_fail(detail, -EINVAL,
                                    "%s.%s: %s no longer applies from %s and correction.date is %s; use %s",
                                    prefix, key, vat_rate_format(rate, vat), DATE_FORMAT(vat->until),
                                    DATE_FORMAT(r->correction.date), vat->successor);
        }

        k = receipt_context_today(c, &today);
        if (k < 0)
                return k;
        if (today < vat->until)
                return 0;

        if (!receipt_type_is_return(r->type))
                return receipt_fail(detail, -EINVAL, "%s.%s: %s no longer applies from %s; use %s", prefix,
                                    key, vat_rate_format(rate, vat), DATE_FORMAT(vat->until),
                                    vat->successor);

        if (r->original_date > 0) {
                if (r->original_date < vat->until)
                        return 0;
                return receipt_fail(detail, -EINVAL,
                                    "%s.%s: %s no longer applies from %s and original_date is %s; use %s",
                                    prefix, key, vat_rate_format(rate, vat), DATE_FORMAT(vat->until),
                                    DATE_FORMAT(r->original_date), vat->successor);
        }
        if (r->original) {
                r->needs_pre2026_original = true;
                return 0;
        }
        return receipt_fail(
                detail, -EINVAL,
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
                return receipt_fail(detail, -EINVAL, "%s: must be an object", prefix);
        k = receipt_check_fields(c, o, prefix, item_fields, ELEMENTSOF(item_fields), detail);
        if (k < 0)
                return k;

        k = receipt_parse_string_dup(receipt_field_get(o, "name"), prefix, "name", RECEIPT_ITEM_NAME_MAX, 0,
                                     &item->name, detail);
        if (k < 0)
                return k;

        k = receipt_parse_decimal(receipt_field_get(o, "price"), prefix, "price", MONEY_SCALE_KOPECKS,
                                  &item->price, detail);
        if (k < 0)
                return k;
        if (item->price < 0)
                return receipt_fail(detail, -EINVAL, "%s.price: must not be negative", prefix);

        k = receipt_parse_decimal(receipt_field_get(o, "quantity"), prefix, "quantity", MONEY_SCALE_QUANTITY,
                                  &item->quantity, detail);
        if (k < 0)
                return k;
        if (item->quantity <= 0)
                return receipt_fail(detail, -EINVAL, "%s.quantity: must be greater than zero", prefix);

        k = receipt_parse_decimal(receipt_field_get(o, "total"), prefix, "total", MONEY_SCALE_KOPECKS,
                                  &item->total, detail);
        if (k < 0)
                return k;
        if (item->total < 0)
                return receipt_fail(detail, -EINVAL, "%s.total: must not be negative", prefix);

        v_discount = receipt_field_get(o, "discount");
        if (v_discount) {
                k = receipt_parse_decimal(v_discount, prefix, "discount", MONEY_SCALE_KOPECKS, &discount,
                                          detail);
                if (k < 0)
                        return k;
                if (discount < 0)
                        return receipt_fail(detail, -EINVAL, "%s.discount: must not be negative", prefix);
        }

        if (line_amount(item->price, item->quantity, &expected) < 0)
                return receipt_fail(detail, -EINVAL, "%s: price * quantity out of range", prefix);
        if (v_discount) {
                /* A discount explains the difference, so it must explain it exactly. */
                if (discount > expected)
                        return receipt_fail(detail, -EINVAL, "%s.discount: %s is larger than the line %s",
                                            prefix, MONEY_FORMAT(discount, MONEY_SCALE_KOPECKS),
                                            MONEY_FORMAT(expected, MONEY_SCALE_KOPECKS));
                if (item->total != expected - discount)
                        return receipt_fail(detail, -EINVAL,
                                            "%s.total: %s does not match price * quantity - discount = %s",
                                            prefix, MONEY_FORMAT(item->total, MONEY_SCALE_KOPECKS),
                                            MONEY_FORMAT(expected - discount, MONEY_SCALE_KOPECKS));
                item->discount = discount;
        } else if (item->total > expected + 1 || item->total < expected - 1)
                /* The prototype's tolerance: POS software rounds lines its own way, by at most a kopeck. */
                return receipt_fail(detail, -EINVAL, "%s.total: %s does not match price * quantity = %s",
                                    prefix, MONEY_FORMAT(item->total, MONEY_SCALE_KOPECKS),
                                    MONEY_FORMAT(expected, MONEY_SCALE_KOPECKS));

        k = parse_vat(o, prefix, &item->vat, &vat_key, detail);
        if (k < 0)
                return k;
        k = check_vat_in_force(c, r, prefix, vat_key, item->vat, detail);
        if (k < 0)
                return k;

        k = PARSE_ENUM(receipt_field_get(o, "payment_method"), prefix, "payment_method",
                       payment_method_from_string, PAYMENT_METHOD_FULL_PAYMENT, &value, detail);
        if (k < 0)
                return k;
        item->payment_method = value;

        k = PARSE_ENUM(receipt_field_get(o, "payment_object"), prefix, "payment_object",
                       payment_object_from_string, PAYMENT_OBJECT_COMMODITY, &value, detail);
        if (k < 0)
                return k;
        item->payment_object = value;

        k = PARSE_ENUM(receipt_field_get(o, "measure"), prefix, "measure", measure_from_string,
                       MEASURE_PIECE, &value, detail);
        if (k < 0)
                return k;
        item->measure = value;

        v = receipt_field_get(o, "mark_code");
        if (v) {
                k = receipt_parse_string_dup(v, prefix, "mark_code", RECEIPT_MARK_CODE_MAX, 0,
                                             &item->mark_code, detail);
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
                return receipt_fail(detail, -EINVAL, "%s: must be an object", prefix);
        r = receipt_check_fields(c, o, prefix, payment_fields, ELEMENTSOF(payment_fields), detail);
        if (r < 0)
                return r;

        r = PARSE_ENUM(receipt_field_get(o, "type"), prefix, "type", payment_type_from_string, -1, &value,
                       detail);
        if (r < 0)
                return r;
        payment->type = value;

        r = receipt_parse_decimal(receipt_field_get(o, "amount"), prefix, "amount", MONEY_SCALE_KOPECKS,
                                  &payment->amount, detail);
        if (r < 0)
                return r;
        if (payment->amount <= 0)
                return receipt_fail(detail, -EINVAL, "%s.amount: must be greater than zero", prefix);

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
                return receipt_fail(detail, -EINVAL, "customer: must be an object");
        k = receipt_check_fields(c, o, "customer", customer_fields, ELEMENTSOF(customer_fields), detail);
        if (k < 0)
                return k;

        email = receipt_field_get(o, "email");
        phone = receipt_field_get(o, "phone");
        if (!email && !phone)
                return receipt_fail(detail, -EINVAL, "customer: needs an email or a phone");

        if (email) {
                k = receipt_parse_string_dup(email, "customer", "email", RECEIPT_CUSTOMER_MAX, 0,
                                             &r->customer_email, detail);
                if (k < 0)
                        return k;
                if (!email_is_plausible(r->customer_email))
                        return receipt_fail(detail, -EINVAL, "customer.email: not an e-mail address");
        }

        if (phone) {
                k = receipt_parse_string_dup(phone, "customer", "phone", RECEIPT_CUSTOMER_MAX, 0,
                                             &r->customer_phone, detail);
                if (k < 0)
                        return k;
                if (!phone_is_plausible(r->customer_phone))
                        return receipt_fail(detail, -EINVAL,
                                            "customer.phone: not a phone number like +79991234567");
        }

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

        shares = new (DiscountShare, r->n_items);
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
                        *sum = (ReceiptVatSum){ .vat = item->vat };
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
        json_object *v = receipt_field_get(o, key);
        int64_t stated = 0;
        int k;

        if (!v)
                return 0;
        k = receipt_parse_decimal(v, NULL, key, MONEY_SCALE_KOPECKS, &stated, detail);
        if (k < 0)
                return k;
        if (stated != computed)
                return receipt_fail(detail, -EINVAL, "%s: %s does not match the receipt's %s", key,
                                    MONEY_FORMAT(stated, MONEY_SCALE_KOPECKS),
                                    MONEY_FORMAT(computed, MONEY_SCALE_KOPECKS));
        return 0;
}

static int receipt_validate(ParseContext *c, json_object *o, Receipt *r, char **detail) {
        json_object *v;
        int k, value = 0;
        int64_t paid = 0, non_cash = 0;

        k = receipt_check_fields(c, o, NULL, receipt_fields, ELEMENTSOF(receipt_fields), detail);
        if (k < 0)
                return k;

        k = receipt_parse_string_dup(receipt_field_get(o, "pos_id"), NULL, "pos_id", RECEIPT_POS_ID_MAX,
                                     STRING_NO_CONTROL, &r->pos_id, detail);
        if (k < 0)
                return k;

        k = PARSE_ENUM(receipt_field_get(o, "type"), NULL, "type", receipt_type_from_string, -1, &value,
                       detail);
        if (k < 0)
                return k;
        r->type = value;

        k = parse_taxation(c, receipt_field_get(o, "taxation"), r, detail);
        if (k < 0)
                return k;

        k = parse_cashier(c, receipt_field_get(o, "cashier"), r, detail);
        if (k < 0)
                return k;

        /* Before the items: whether an item's VAT code is still in force depends on them. */
        k = parse_correction(c, receipt_field_get(o, "correction"), r, detail);
        if (k < 0)
                return k;

        k = parse_original(c, o, r, detail);
        if (k < 0)
                return k;

        v = receipt_field_get(o, "items");
        if (!v)
                return receipt_fail(detail, -EINVAL, "items: missing");
        if (!json_object_is_type(v, json_type_array))
                return receipt_fail(detail, -EINVAL, "items: must be an array");
        if (json_object_array_length(v) == 0)
                return receipt_fail(detail, -EINVAL, "items: must not be empty");
        if (json_object_array_length(v) > c->options.max_items)
                return receipt_fail(detail, -EINVAL, "items: more than %zu items", c->options.max_items);

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
                        return receipt_fail(detail, -EINVAL, "items: sum of totals out of range");
        }

        v = receipt_field_get(o, "discount");
        if (v) {
                int64_t discount = 0;

                k = receipt_parse_decimal(v, NULL, "discount", MONEY_SCALE_KOPECKS, &discount, detail);
                if (k < 0)
                        return k;
                if (discount < 0)
                        return receipt_fail(detail, -EINVAL, "discount: must not be negative");
                if (discount > r->total)
                        return receipt_fail(detail, -EINVAL,
                                            "discount: %s is larger than the sum of the lines %s",
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

        v = receipt_field_get(o, "payments");
        if (!v)
                return receipt_fail(detail, -EINVAL, "payments: missing");
        if (!json_object_is_type(v, json_type_array))
                return receipt_fail(detail, -EINVAL, "payments: must be an array");
        if (json_object_array_length(v) == 0)
                return receipt_fail(detail, -EINVAL, "payments: must not be empty");
        if (json_object_array_length(v) > c->options.max_payments)
                return receipt_fail(detail, -EINVAL, "payments: more than %zu payments",
                                    c->options.max_payments);

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
                        return receipt_fail(detail, -EINVAL, "payments: sum out of range");
                if (!payment_is_cash(payment))
                        non_cash += payment->amount; /* <= paid, which did not overflow */
        }

        /* A register takes no less than the total and gives change only in cash: a card, an advance or a
         * credit above the total would have nowhere to go. No tolerance either way: the register has none.
         * Register behaviour rather than FFD text: ATOL's errors 66 «Чек оплачен не полностью» and 52
         * «Сумма не наличных платежей превышает сумму чека» (ATOL driver error table). */
        if (non_cash > r->total)
                return receipt_fail(detail, -EINVAL, "payments: non-cash payments %s exceed the total %s",
                                    MONEY_FORMAT(non_cash, MONEY_SCALE_KOPECKS),
                                    MONEY_FORMAT(r->total, MONEY_SCALE_KOPECKS));
        if (paid < r->total)
                return receipt_fail(
                        detail, -EINVAL, "payments: sum %s is less than the total %s (short by %s)",
                        MONEY_FORMAT(paid, MONEY_SCALE_KOPECKS), MONEY_FORMAT(r->total, MONEY_SCALE_KOPECKS),
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

        v = receipt_field_get(o, "customer");
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

        k = receipt_parse_json_body(body, size, &j, &detail);
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
