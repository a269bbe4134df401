/* SPDX-License-Identifier: MIT */
/* Receipt validation: one failing case per rule (return code and the field named in the detail), the
 * tolerance boundaries, the limits, the canonical text and its fingerprint. */

#include <errno.h>
#include <json-c/json_pointer.h>
#include <stdarg.h>
#include <time.h>

#include "json-util.h"
#include "money.h"
#include "receipt.h"
#include "tests.h"

/* 22 %: 20 % no longer applies to a sale from 2026-01-01, and the tests run at a fixed day of 2026. */
static const char base[] =
        "{\"pos_id\":\"POS-1\",\"type\":\"sale\","
        "\"items\":[{\"name\":\"Frame\",\"price\":1500.00,\"quantity\":1,\"total\":1500.00,"
        "\"vat_rate\":22}],"
        "\"payments\":[{\"type\":\"cash\",\"amount\":1500.00}]}";

/* The clock of the sale: fixed, so that no test depends on the day it runs. main() sets TZ to Moscow time
 * (UTC+3, no DST) for the tests of where the local day begins. */
#define NOW_2026 ((usec_t) 1781514000 * USEC_PER_SEC)          /* 2026-06-15 12:00 MSK */
#define NOW_2025 ((usec_t) 1750064400 * USEC_PER_SEC)          /* 2025-06-16 12:00 MSK */
#define LAST_SECOND_OF_2025 ((usec_t) 1767214799 * USEC_PER_SEC) /* 2025-12-31 23:59:59 MSK */
#define FIRST_SECOND_OF_2026 ((usec_t) 1767214800 * USEC_PER_SEC) /* 2026-01-01 00:00:00 MSK */

static const ReceiptOptions test_options = { .now = NOW_2026 };
static const ReceiptOptions options_2025 = { .now = NOW_2025 };
static const ReceiptOptions options_ignore = { .now = NOW_2026,
                                               .unknown_fields = RECEIPT_UNKNOWN_FIELDS_IGNORE };

/* Marks a JSON pointer for removal in edit(). */
static const char DELETE[] = "<delete>";

/* Returns body with each (JSON pointer, JSON value text) pair applied, the list ending with NULL. Values
 * are parsed by json-c's tokener, so numbers keep the text given here. */
_sentinel_ static char *edit(const char *body, ...) {
        _cleanup_(json_object_putp) json_object *o = json_tokener_parse(body);
        const char *pointer;
        va_list ap;

        ASSERT_NOT_NULL(o);

        va_start(ap, body);
        while ((pointer = va_arg(ap, const char *))) {
                const char *value = va_arg(ap, const char *);

                if (value == DELETE) {
                        _cleanup_free_ char *parent_pointer = strdup(pointer);
                        char *slash = strrchr(parent_pointer, '/');
                        json_object *parent = NULL;

                        ASSERT_NOT_NULL(slash);
                        *slash = '\0';
                        ASSERT_OK(json_pointer_get(o, parent_pointer, &parent));
                        if (json_object_is_type(parent, json_type_array))
                                ASSERT_OK(json_object_array_del_idx(parent, strtoul(slash + 1, NULL, 10),
                                                                    1));
                        else
                                json_object_object_del(parent, slash + 1);
                } else {
                        _cleanup_free_ char *wrapped = NULL;
                        json_object *a, *v;

                        ASSERT_TRUE(asprintf(&wrapped, "[%s]", value) >= 0);
                        a = json_tokener_parse(wrapped);
                        ASSERT_NOT_NULL(a);
                        v = json_object_get(json_object_array_get_idx(a, 0));
                        json_object_put(a);
                        ASSERT_OK(json_pointer_set(&o, pointer, v));
                }
        }
        va_end(ap);

        return strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
}

/* The base receipt with (JSON pointer, value) pairs applied. */
#define WITH(...) edit(base, __VA_ARGS__, NULL)

/* A JSON string literal holding n copies of s. */
static char *json_repeat(const char *s, size_t n) {
        size_t l = strlen(s);
        char *j = malloc(n * l + 3), *p = j;

        ASSERT_NOT_NULL(j);
        *p++ = '"';
        for (size_t i = 0; i < n; i++, p += l)
                memcpy(p, s, l);
        *p++ = '"';
        *p = '\0';
        return j;
}

static Receipt *parse_ok_with(const char *body, const ReceiptOptions *o) {
        char *detail = (char *) "untouched";
        Receipt *r = NULL;
        int k;

        k = receipt_parse_with(body, strlen(body), o, &r, &detail);
        if (k < 0)
                fprintf(stderr, "   unexpected %s: %s\n   body: %s\n", strerror(-k), strna(detail), body);
        ASSERT_OK(k);
        ASSERT_NOT_NULL(r);
        ASSERT_NULL(detail);
        return r;
}

/* Through receipt_parse(), the wrapper the daemon calls. */
static Receipt *parse_ok_limits(const char *body, const ReceiptLimits *limits) {
        char *detail = (char *) "untouched";
        Receipt *r = NULL;
        int k;

        k = receipt_parse(body, strlen(body), limits, &r, &detail);
        if (k < 0)
                fprintf(stderr, "   unexpected %s: %s\n   body: %s\n", strerror(-k), strna(detail), body);
        ASSERT_OK(k);
        ASSERT_NOT_NULL(r);
        ASSERT_NULL(detail);
        return r;
}

static Receipt *parse_ok(const char *body) {
        return parse_ok_with(body, &test_options);
}

/* Takes ownership of body, so that ACCEPT(WITH(...)) leaks nothing. */
static Receipt *parse_ok_free(char *body, const ReceiptOptions *o) {
        _cleanup_free_ char *b = body;

        return parse_ok_with(b, o);
}
#define ACCEPT(body) parse_ok_free(body, &test_options)
#define ACCEPT_WITH(o, body) parse_ok_free(body, o)

static void expect_fail_with(const char *body, size_t size, const ReceiptOptions *o, int err,
                             const char *expected) {
        _cleanup_free_ char *detail = NULL;
        Receipt *r = NULL;
        int k;

        k = receipt_parse_with(body, size, o, &r, &detail);
        fprintf(stderr, "   -> %s: %s\n", k < 0 ? strerror(-k) : "accepted", strna(detail));
        ASSERT_ERROR(k, err);
        ASSERT_NULL(r);
        ASSERT_STREQ(detail, expected);
}

static void expect_fail_limits(const char *body, size_t size, const ReceiptLimits *limits, int err,
                               const char *expected) {
        _cleanup_free_ char *detail = NULL;
        Receipt *r = NULL;
        int k;

        k = receipt_parse(body, size, limits, &r, &detail);
        fprintf(stderr, "   -> %s: %s\n", k < 0 ? strerror(-k) : "accepted", strna(detail));
        ASSERT_ERROR(k, err);
        ASSERT_NULL(r);
        ASSERT_STREQ(detail, expected);
}

/* Takes ownership of body, like ACCEPT(). */
static void expect_fail(char *body, const ReceiptOptions *o, int err, const char *expected) {
        _cleanup_free_ char *b = body;

        expect_fail_with(b, strlen(b), o, err, expected);
}
#define REJECT(body, message) expect_fail(body, &test_options, EINVAL, message)
#define REJECT_WITH(o, body, message) expect_fail(body, o, EINVAL, message)
#define REJECT_BODY(text, message) expect_fail(strdup(text), &test_options, EBADMSG, message)

static char *canonical_with(const Receipt *r, ReceiptCanonicalFlags flags) {
        char *c = NULL;

        ASSERT_OK(receipt_canonical_with(r, flags, &c));
        return c;
}

static char *canonical_of_with(const char *body, const ReceiptOptions *o, ReceiptCanonicalFlags flags) {
        _cleanup_(receipt_freep) Receipt *r = parse_ok_with(body, o);

        return canonical_with(r, flags);
}

static char *canonical_of(const char *body) {
        return canonical_of_with(body, &test_options, 0);
}

/* Both writers write the same bytes for r. */
static void assert_writers_agree(const Receipt *r, ReceiptCanonicalFlags flags) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        _cleanup_free_ char *c = canonical_with(r, flags);

        ASSERT_OK(receipt_to_json_with(r, flags, &o));
        ASSERT_STREQ(c, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                  JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* The canonical text, full and as given, parses back under the same options to a receipt with the same
 * texts, and both writers agree on every one of them. Returns the full text. */
static char *assert_round_trip(const char *body, const ReceiptOptions *o) {
        _cleanup_(receipt_freep) Receipt *r1 = parse_ok_with(body, o), *r2 = NULL, *r3 = NULL;
        _cleanup_free_ char *full = canonical_with(r1, 0),
                            *given = canonical_with(r1, RECEIPT_CANONICAL_AS_GIVEN);
        _cleanup_free_ char *full2 = NULL, *given2 = NULL, *full3 = NULL, *given3 = NULL;

        assert_writers_agree(r1, 0);
        assert_writers_agree(r1, RECEIPT_CANONICAL_AS_GIVEN);

        r2 = parse_ok_with(full, o);
        full2 = canonical_with(r2, 0);
        ASSERT_STREQ(full2, full);
        ASSERT_EQ(r2->needs_pre2026_original, r1->needs_pre2026_original);
        ASSERT_EQ(r2->paid, r1->paid);

        r3 = parse_ok_with(given, o);
        full3 = canonical_with(r3, 0);
        given3 = canonical_with(r3, RECEIPT_CANONICAL_AS_GIVEN);
        ASSERT_STREQ(full3, full);
        ASSERT_STREQ(given3, given);
        ASSERT_EQ(r3->taxation_given, r1->taxation_given);
        ASSERT_EQ(r3->cashier_given, r1->cashier_given);
        /* The full text gives everything: parsed back, nothing is left to come from the options. */
        given2 = canonical_with(r2, RECEIPT_CANONICAL_AS_GIVEN);
        ASSERT_STREQ(given2, full);

        return TAKE_PTR(full);
}

static void test_valid_receipt_fields_and_defaults(void) {
        _cleanup_(receipt_freep) Receipt *r = parse_ok(base);

        ASSERT_STREQ(r->pos_id, "POS-1");
        ASSERT_EQ(r->type, RECEIPT_TYPE_SALE);
        ASSERT_EQ(r->taxation, TAXATION_OSN);
        ASSERT_EQ(r->n_items, 1);
        ASSERT_STREQ(r->items[0].name, "Frame");
        ASSERT_EQ(r->items[0].price, 150000);
        ASSERT_EQ(r->items[0].quantity, 1000);
        ASSERT_EQ(r->items[0].total, 150000);
        ASSERT_EQ(r->items[0].discount, 0);
        ASSERT_TRUE(r->items[0].vat == vat_from_name("vat22"));
        ASSERT_EQ(r->items[0].vat_amount, 27049);
        ASSERT_EQ(r->items[0].payment_method, PAYMENT_METHOD_FULL_PAYMENT);
        ASSERT_EQ(r->items[0].payment_object, PAYMENT_OBJECT_COMMODITY);
        ASSERT_EQ(r->items[0].measure, MEASURE_PIECE);
        ASSERT_NULL(r->items[0].mark_code);
        ASSERT_EQ(r->n_payments, 1);
        ASSERT_EQ(r->payments[0].type, PAYMENT_TYPE_CASH);
        ASSERT_EQ(r->payments[0].amount, 150000);
        ASSERT_EQ(r->total, 150000);
        ASSERT_EQ(r->paid, 150000);
        ASSERT_EQ(r->change, 0);
        ASSERT_NULL(r->customer_email);
        ASSERT_NULL(r->customer_phone);
        /* What the options fill in, and what is absent. */
        ASSERT_FALSE(r->taxation_given);
        ASSERT_NULL(r->cashier_name);
        ASSERT_NULL(r->cashier_inn);
        ASSERT_FALSE(r->cashier_given);
        ASSERT_FALSE(r->has_correction);
        ASSERT_NULL(r->original);
        ASSERT_EQ(r->original_date, 0);
        ASSERT_FALSE(r->needs_pre2026_original);
        ASSERT_EQ(r->n_vat_sums, 1);
        ASSERT_TRUE(r->vat_sums[0].vat == vat_from_name("vat22"));
        ASSERT_EQ(r->vat_sums[0].base, 150000);
        ASSERT_EQ(r->vat_sums[0].amount, 27049);
}

static void test_detail_may_be_null(void) {
        _cleanup_(receipt_freep) Receipt *r = NULL;

        ASSERT_OK(receipt_parse(base, strlen(base), NULL, &r, NULL));
        ASSERT_ERROR(receipt_parse("{", 1, NULL, &r, NULL), EBADMSG);
        ASSERT_ERROR(receipt_parse("{}", 2, NULL, &r, NULL), EINVAL);
}

static void test_body_need_not_be_nul_terminated(void) {
        _cleanup_(receipt_freep) Receipt *r = NULL;
        _cleanup_free_ char *copy = malloc(strlen(base));

        ASSERT_NOT_NULL(copy);
        memcpy(copy, base, strlen(base)); /* no NUL: ASan catches a read past the end */
        ASSERT_OK(receipt_parse(copy, strlen(base), NULL, &r, NULL));
        ASSERT_STREQ(r->pos_id, "POS-1");
}

static void test_full_receipt_with_ffd_attributes(void) {
        static const char body[] =
                "{\"pos_id\":\"POS-7\",\"type\":\"refund\",\"taxation\":\"usn_income\","
                "\"items\":["
                "{\"name\":\"Линза\",\"price\":\"99.90\",\"quantity\":2.5,\"total\":249.75,"
                " \"vat\":\"vat122\",\"payment_method\":\"advance\",\"payment_object\":\"service\","
                " \"measure\":\"kilogram\",\"mark_code\":\"010460\\u001d91EE\"},"
                "{\"name\":\"Case\",\"price\":0,\"quantity\":1,\"total\":0,\"vat\":\"none\"}],"
                "\"payments\":[{\"type\":\"card\",\"amount\":200},"
                "{\"type\":\"other\",\"amount\":\"49.75\"}],"
                "\"customer\":{\"email\":\"a.b@example.ru\",\"phone\":\"+79991234567\"}}";
        _cleanup_(receipt_freep) Receipt *r = parse_ok(body);

        ASSERT_EQ(r->type, RECEIPT_TYPE_REFUND);
        ASSERT_EQ(r->taxation, TAXATION_USN_INCOME);
        ASSERT_EQ(r->n_items, 2);
        ASSERT_STREQ(r->items[0].name, "Линза");
        ASSERT_EQ(r->items[0].price, 9990);
        ASSERT_EQ(r->items[0].quantity, 2500);
        ASSERT_EQ(r->items[0].total, 24975);
        ASSERT_TRUE(r->items[0].vat == vat_from_name("vat122"));
        ASSERT_EQ(r->items[0].payment_method, 3);
        ASSERT_EQ(r->items[0].payment_object, 4);
        ASSERT_EQ(r->items[0].measure, 11);
        ASSERT_STREQ(r->items[0].mark_code, "010460\x1d"
                                            "91EE");
        ASSERT_EQ(r->items[1].price, 0);
        ASSERT_EQ(r->items[1].total, 0);
        ASSERT_TRUE(r->items[1].vat == vat_from_name("none"));
        ASSERT_EQ(r->n_payments, 2);
        ASSERT_EQ(r->payments[0].type, PAYMENT_TYPE_CARD);
        ASSERT_EQ(r->payments[0].amount, 20000);
        ASSERT_EQ(r->payments[1].type, PAYMENT_TYPE_OTHER);
        ASSERT_EQ(r->payments[1].amount, 4975);
        ASSERT_EQ(r->total, 24975);
        ASSERT_STREQ(r->customer_email, "a.b@example.ru");
        ASSERT_STREQ(r->customer_phone, "+79991234567");
}

static void test_canonical_text(void) {
        _cleanup_free_ char *c = canonical_of(base);

        ASSERT_STREQ(c,
                     "{\"pos_id\":\"POS-1\",\"type\":\"sale\",\"type_tag1054\":1,"
                     "\"taxation\":\"osn\",\"taxation_tag1055\":1,"
                     "\"items\":[{\"name\":\"Frame\",\"price\":\"1500.00\",\"quantity\":\"1.000\","
                     "\"total\":\"1500.00\",\"vat\":\"vat22\",\"vat_tag1199\":11,\"vat_amount\":\"270.49\","
                     "\"payment_method\":\"full_payment\",\"payment_method_tag1214\":4,"
                     "\"payment_object\":\"commodity\",\"payment_object_tag1212\":1,"
                     "\"measure\":\"piece\",\"measure_tag2108\":0}],"
                     "\"payments\":[{\"type\":\"cash\",\"amount\":\"1500.00\",\"amount_tag\":1031}],"
                     "\"total\":\"1500.00\","
                     "\"vat_amounts\":[{\"vat\":\"vat22\",\"tag1199\":11,\"base\":\"1500.00\","
                     "\"amount\":\"270.49\"}]}");
}

static void test_canonical_text_with_optional_fields(void) {
        _cleanup_free_ char *body = WITH("/items/0/mark_code", "\"0104/60\\u001d\"",
                                         "/items/0/name", "\"Оправа \\\"Люкс\\\"\"",
                                         "/customer", "{\"phone\":\"+79991234567\",\"email\":\"x@y.ru\"}");
        _cleanup_free_ char *c = canonical_of(body);

        /* Fixed key order whatever the body's; '/' unescaped, controls as \u00XX, UTF-8 as it is. */
        ASSERT_STREQ(c,
                     "{\"pos_id\":\"POS-1\",\"type\":\"sale\",\"type_tag1054\":1,"
                     "\"taxation\":\"osn\",\"taxation_tag1055\":1,"
                     "\"items\":[{\"name\":\"Оправа \\\"Люкс\\\"\",\"price\":\"1500.00\","
                     "\"quantity\":\"1.000\",\"total\":\"1500.00\",\"vat\":\"vat22\",\"vat_tag1199\":11,"
                     "\"vat_amount\":\"270.49\","
                     "\"payment_method\":\"full_payment\",\"payment_method_tag1214\":4,"
                     "\"payment_object\":\"commodity\",\"payment_object_tag1212\":1,"
                     "\"measure\":\"piece\",\"measure_tag2108\":0,\"mark_code\":\"0104/60\\u001d\"}],"
                     "\"payments\":[{\"type\":\"cash\",\"amount\":\"1500.00\",\"amount_tag\":1031}],"
                     "\"total\":\"1500.00\","
                     "\"vat_amounts\":[{\"vat\":\"vat22\",\"tag1199\":11,\"base\":\"1500.00\","
                     "\"amount\":\"270.49\"}],"
                     "\"customer\":{\"email\":\"x@y.ru\",\"phone\":\"+79991234567\"}}");
}

/* The texts of the receipt model as json_object_to_json_string_ext() with JSON_C_TO_STRING_PLAIN |
 * JSON_C_TO_STRING_NOSLASHESCAPE writes receipt_to_json()'s tree: the store keeps them and compares their
 * fingerprints for idempotency, so however the text comes to be written, these must stay byte for byte.
 * That the two writers agree is the invariant; these pins catch a change to both at once. */

/* ASCII only, every optional field, non-default enums: a correction by order with a cashier, an item
 * discount, change */
static const char pinned_ascii_body[] =
        "{\"pos_id\":\"POS-42\",\"type\":\"sale_correction\",\"taxation\":\"usn_income_outcome\","
        "\"cashier\":{\"inn\":\"500100732259\",\"name\":\"Ivanov I.I. \\\"senior\\\"\"},"
        "\"correction\":{\"order_number\":\"01-12/345\",\"date\":\"2025-11-20\",\"type\":\"by_order\"},"
        "\"items\":[{\"name\":\"Lens 1.5/67 \\\"AR\\\"\",\"price\":\"120.50\",\"quantity\":\"2.250\","
        "\"total\":\"271.13\",\"vat\":\"vat110\",\"payment_method\":\"credit_payment\","
        "\"payment_object\":\"commodity_marked\",\"measure\":\"other\","
        "\"mark_code\":\"0104600439931256\\u001d21ABC/def\\u001d91EE06\"},"
        "{\"name\":\"Cloth\",\"price\":0.50,\"quantity\":1,\"total\":0.01,\"discount\":0.49,"
        "\"vat_rate\":0}],"
        "\"payments\":[{\"type\":\"card\",\"amount\":\"200.00\"},{\"type\":\"cash\",\"amount\":72},"
        "{\"type\":\"other\",\"amount\":\"0.10\"}],"
        "\"customer\":{\"phone\":\"+79991234567\",\"email\":\"buyer+tag@example.com\"}}";
static const char pinned_ascii_canonical[] =
        "{\"pos_id\":\"POS-42\",\"type\":\"sale_correction\",\"type_tag1054\":1,\"taxation\":\"usn_"
        "income_outcome\",\"taxation_tag1055\":4,\"cashier\":{\"name\":\"Ivanov I.I. \\\"senior\\\""
        "\",\"inn\":\"500100732259\"},\"correction\":{\"type\":\"by_order\",\"type_tag1173\":1,\"da"
        "te\":\"2025-11-20\",\"order_number\":\"01-12/345\"},\"items\":[{\"name\":\"Lens 1.5/67 \\"
        "\"AR\\\"\",\"price\":\"120.50\",\"quantity\":\"2.250\",\"total\":\"271.13\",\"vat\":\"vat1"
        "10\",\"vat_tag1199\":4,\"vat_amount\":\"24.65\",\"payment_method\":\"credit_payment\",\"pa"
        "yment_method_tag1214\":7,\"payment_object\":\"commodity_marked\",\"payment_object_tag1212"
        "\":33,\"measure\":\"other\",\"measure_tag2108\":255,\"mark_code\":\"0104600439931256\\u001"
        "d21ABC/def\\u001d91EE06\"},{\"name\":\"Cloth\",\"price\":\"0.50\",\"quantity\":\"1.000\","
        "\"total\":\"0.01\",\"discount\":\"0.49\",\"vat\":\"vat0\",\"vat_tag1199\":5,\"vat_amount\""
        ":\"0.00\",\"payment_method\":\"full_payment\",\"payment_method_tag1214\":4,\"payment_objec"
        "t\":\"commodity\",\"payment_object_tag1212\":1,\"measure\":\"piece\",\"measure_tag2108\":0"
        "}],\"payments\":[{\"type\":\"card\",\"amount\":\"200.00\",\"amount_tag\":1081},{\"type\":"
        "\"cash\",\"amount\":\"72.00\",\"amount_tag\":1031},{\"type\":\"other\",\"amount\":\"0.10\""
        ",\"amount_tag\":1217}],\"total\":\"271.14\",\"change\":\"0.96\",\"vat_amounts\":[{\"vat\":"
        "\"vat110\",\"tag1199\":4,\"base\":\"271.13\",\"amount\":\"24.65\"},{\"vat\":\"vat0\",\"tag"
        "1199\":5,\"base\":\"0.01\",\"amount\":\"0.00\"}],\"customer\":{\"email\":\"buyer+tag@examp"
        "le.com\",\"phone\":\"+79991234567\"}}";

/* Cyrillic, 4-byte UTF-8, U+2028, DEL, every escape json-c writes, '/' and '\'; a return of a 2025 sale
 * at 20 % */
static const char pinned_escapes_body[] =
        "{\"pos_id\":\"Касса/№1 \\\"Л\\\"\\\\x\",\"type\":\"refund\","
        "\"original\":\"R/7\\\"\\\\\",\"original_date\":\"2025-12-31\","
        "\"cashier\":{\"name\":\"Кассир \\\"№1\\\" \\\\ 1/2 \xf0\x9f\x98\x80\"},"
        "\"items\":[{\"name\":\"Оправа \\\"Люкс\\\" \\\\ 1/2 \\u0001\\b\\f\\n\\r\\t\\u001f\x7f"
        "\\u2028 "
        "\xf0\x9f\x98\x80 \\u00e9\\/\",\"price\":1500,\"quantity\":1,\"total\":1500,\"vat_rate\":20,"
        "\"mark_code\":\"\\u001d01046\\u001d\\u001d\"}],"
        "\"payments\":[{\"type\":\"cash\",\"amount\":1500}],"
        "\"customer\":{\"email\":\"a\\\"b\\\\c/d@пример.рф\"}}";
static const char pinned_escapes_canonical[] =
        "{\"pos_id\":\"Касса/№1 \\\"Л\\\"\\\\x\",\"type\":\"refund\",\"type_tag1054\":2,\"taxation"
        "\":\"osn\",\"taxation_tag1055\":1,\"cashier\":{\"name\":\"Кассир \\\"№1\\\" \\\\ 1/2 \xf0" ""
        "\x9f" "\x98" "\x80" "\"},\"original\":\"R/7\\\"\\\\\",\"original_date\":\"2025-12-31\",\"i"
        "tems\":[{\"name\":\"Оправа \\\"Люкс\\\" \\\\ 1/2 \\u0001\\b\\f\\n\\r\\t\\u001f\x7f" "\xe2" ""
        "\x80" "\xa8" " \xf0" "\x9f" "\x98" "\x80" " é/\",\"price\":\"1500.00\",\"quantity\":\"1.00"
        "0\",\"total\":\"1500.00\",\"vat\":\"vat20\",\"vat_tag1199\":1,\"vat_amount\":\"250.00\",\""
        "payment_method\":\"full_payment\",\"payment_method_tag1214\":4,\"payment_object\":\"commod"
        "ity\",\"payment_object_tag1212\":1,\"measure\":\"piece\",\"measure_tag2108\":0,\"mark_code"
        "\":\"\\u001d01046\\u001d\\u001d\"}],\"payments\":[{\"type\":\"cash\",\"amount\":\"1500.00"
        "\",\"amount_tag\":1031}],\"total\":\"1500.00\",\"vat_amounts\":[{\"vat\":\"vat20\",\"tag11"
        "99\":1,\"base\":\"1500.00\",\"amount\":\"250.00\"}],\"customer\":{\"email\":\"a\\\"b\\\\c/"
        "d@пример.рф\"}}";

/* large amounts, weights, several items, a receipt discount, an advance offset, credit, phone only */
static const char pinned_amounts_body[] =
        "{\"pos_id\":\"P\",\"type\":\"sale\",\"taxation\":\"patent\",\"items\":["
        "{\"name\":\"Gold\",\"price\":\"9999999999.99\",\"quantity\":\"0.001\",\"total\":\"10000000.00\","
        "\"vat\":\"vat122\",\"measure\":\"gram\"},"
        "{\"name\":\"Сыр\",\"price\":\"899.90\",\"quantity\":0.335,\"total\":301.47,\"vat_rate\":10,"
        "\"measure\":\"kilogram\",\"payment_object\":\"excise\",\"payment_method\":\"advance\"},"
        "{\"name\":\"Service\",\"price\":100,\"quantity\":3,\"total\":300,\"vat\":\"none\","
        "\"payment_object\":\"service\",\"measure\":\"hour\"}],"
        "\"discount\":\"1000.00\","
        "\"payments\":[{\"type\":\"electronic\",\"amount\":\"1000.00\"},"
        "{\"type\":\"prepayment\",\"amount\":5000000},{\"type\":\"credit\",\"amount\":\"4998601.47\"}],"
        "\"customer\":{\"phone\":\"+123456789012345\"}}";
static const char pinned_amounts_canonical[] =
        "{\"pos_id\":\"P\",\"type\":\"sale\",\"type_tag1054\":1,\"taxation\":\"patent\",\"taxation_"
        "tag1055\":32,\"items\":[{\"name\":\"Gold\",\"price\":\"9999999999.99\",\"quantity\":\"0.00"
        "1\",\"total\":\"9999000.06\",\"discount\":\"999.94\",\"vat\":\"vat122\",\"vat_tag1199\":12"
        ",\"vat_amount\":\"1803098.37\",\"payment_method\":\"full_payment\",\"payment_method_tag121"
        "4\":4,\"payment_object\":\"commodity\",\"payment_object_tag1212\":1,\"measure\":\"gram\","
        "\"measure_tag2108\":10},{\"name\":\"Сыр\",\"price\":\"899.90\",\"quantity\":\"0.335\",\"to"
        "tal\":\"301.44\",\"discount\":\"0.03\",\"vat\":\"vat10\",\"vat_tag1199\":2,\"vat_amount\":"
        "\"27.40\",\"payment_method\":\"advance\",\"payment_method_tag1214\":3,\"payment_object\":"
        "\"excise\",\"payment_object_tag1212\":2,\"measure\":\"kilogram\",\"measure_tag2108\":11},{"
        "\"name\":\"Service\",\"price\":\"100.00\",\"quantity\":\"3.000\",\"total\":\"299.97\",\"di"
        "scount\":\"0.03\",\"vat\":\"none\",\"vat_tag1199\":6,\"vat_amount\":\"0.00\",\"payment_met"
        "hod\":\"full_payment\",\"payment_method_tag1214\":4,\"payment_object\":\"service\",\"payme"
        "nt_object_tag1212\":4,\"measure\":\"hour\",\"measure_tag2108\":71}],\"payments\":[{\"type"
        "\":\"card\",\"amount\":\"1000.00\",\"amount_tag\":1081},{\"type\":\"prepayment\",\"amount"
        "\":\"5000000.00\",\"amount_tag\":1215},{\"type\":\"credit\",\"amount\":\"4998601.47\",\"am"
        "ount_tag\":1216}],\"total\":\"9999601.47\",\"vat_amounts\":[{\"vat\":\"vat10\",\"tag1199\""
        ":2,\"base\":\"301.44\",\"amount\":\"27.40\"},{\"vat\":\"none\",\"tag1199\":6,\"base\":\"29"
        "9.97\",\"amount\":\"0.00\"},{\"vat\":\"vat122\",\"tag1199\":12,\"base\":\"9999000.06\",\"a"
        "mount\":\"1803098.37\"}],\"customer\":{\"phone\":\"+123456789012345\"}}";

static const struct {
        const char *body;
        const char *canonical;
        const char *fingerprint;
} pinned[] = {
        { pinned_ascii_body, pinned_ascii_canonical,
          "5136123b9496a06fff613dd358368d5f9e4dabd9d3c20ade0f3d35925b5e9848" },
        { pinned_escapes_body, pinned_escapes_canonical,
          "1f28187048bd2372ebd03aca1592c8678c95b5dfc81fa56e02eea7959e9882dd" },
        { pinned_amounts_body, pinned_amounts_canonical,
          "efd244b17f65a7f3f50e15b9af120bef528a3f297e5c807df9e32c4c1799e9c0" },
};

static void test_canonical_text_is_pinned_byte_for_byte(void) {
        for (size_t i = 0; i < ELEMENTSOF(pinned); i++) {
                _cleanup_free_ char *c = canonical_of(pinned[i].body);
                char f[65];

                fprintf(stderr, "   pinned %zu\n", i);
                ASSERT_STREQ(c, pinned[i].canonical);
                ASSERT_OK(receipt_fingerprint(c, f));
                ASSERT_STREQ(f, pinned[i].fingerprint);
        }
}

/* A register with defaults for what the body leaves out. */
static const ReceiptOptions options_shop = {
        .now = NOW_2026,
        .default_taxation = TAXATION_USN_INCOME,
        .allowed_taxations = TAXATION_USN_INCOME | TAXATION_PATENT,
        .default_cashier = "Петрова А. \"старший\" кассир",
        .default_cashier_inn = "500100732259",
};

/* The text is written directly, not by json-c: it must still be what json-c makes of receipt_to_json()'s
 * tree, for every byte a string may hold, for strings long enough to outgrow the first buffer, for every
 * optional part, and with and without RECEIPT_CANONICAL_AS_GIVEN. */
static void test_canonical_text_is_what_json_c_writes_for_the_tree(void) {
        _cleanup_free_ char *all_bytes = NULL, *long_escapes = NULL, *body1 = NULL, *body2 = NULL;
        const char *bodies[] = {
                pinned_ascii_body, pinned_escapes_body, pinned_amounts_body, NULL, NULL, base
        };
        char *p;

        /* Every byte but NUL from 0x01 to 0x7f as JSON text, escaped where JSON requires it. */
        p = all_bytes = malloc(0x80 * 6 + 3);
        ASSERT_NOT_NULL(p);
        *p++ = '"';
        for (int c = 1; c < 0x80; c++)
                p += c < 0x20 || c == '"' || c == '\\' ? sprintf(p, "\\u%04x", c) : sprintf(p, "%c", c);
        strcpy(p, "\"");
        long_escapes = json_repeat("\\u0001", RECEIPT_ITEM_NAME_MAX);

        bodies[3] = body1 = WITH("/items/0/name", all_bytes, "/items/0/mark_code", all_bytes,
                                 "/pos_id", "\"/\\\\\\\"\"");
        bodies[4] = body2 = edit(pinned_amounts_body, "/items/2/name", long_escapes, NULL);

        for (size_t i = 0; i < ELEMENTSOF(bodies); i++) {
                /* With the shop's defaults where the body leaves them out; the patent of the amounts. */
                const ReceiptOptions *o = i == 5 ? &options_shop : &test_options;
                _cleanup_(receipt_freep) Receipt *r = parse_ok_with(bodies[i], o);

                fprintf(stderr, "   body %zu\n", i);
                assert_writers_agree(r, 0);
                assert_writers_agree(r, RECEIPT_CANONICAL_AS_GIVEN);
        }
        ASSERT_TRUE(strlen(long_escapes) > 1024);
}

/* The tokener is kept between calls: whatever state a failed parse left it in must not leak into the next
 * one. */
static void test_parse_after_failed_parse_starts_afresh(void) {
        static const char *const bad[] = { "{\"pos_id\":\"POS-1\",", "{\"pos_id\":[[[[", "{\"a\":tru}",
                                           "{\"a\":1}}", "[1,2" };
        _cleanup_free_ char *expected = canonical_of(base);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *c = NULL;
                Receipt *r = NULL;

                ASSERT_ERROR(receipt_parse(bad[i], strlen(bad[i]), NULL, &r, NULL), EBADMSG);
                ASSERT_NULL(r);
                c = canonical_of(base);
                ASSERT_STREQ(c, expected);
        }
}

static void test_canonical_text_parses_back_to_itself(void) {
        _cleanup_free_ char *body = WITH("/items/0/mark_code", "\"01046\\u001d91\"",
                                         "/items/0/measure", "\"liter\"",
                                         "/items/0/quantity", "0.5",
                                         "/items/0/total", "750",
                                         "/payments/0/amount", "750",
                                         "/customer", "{\"email\":\"x@y.ru\"}",
                                         "/taxation", "\"patent\"");
        _cleanup_free_ char *c1 = canonical_of(body);
        _cleanup_free_ char *c2 = canonical_of(c1);

        ASSERT_STREQ(c1, c2);
        free(assert_round_trip(body, &test_options));
}

static void test_receipt_to_json_carries_ffd_values(void) {
        _cleanup_free_ char *body = WITH("/taxation", "\"usn_income_outcome\"", "/items/0/vat_rate", "22");
        _cleanup_(receipt_freep) Receipt *r = parse_ok(body);
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *v;

        ASSERT_OK(receipt_to_json(r, &o));
        ASSERT_OK(json_pointer_get(o, "/taxation_tag1055", &v));
        ASSERT_EQ(json_object_get_int(v), 4);
        ASSERT_OK(json_pointer_get(o, "/items/0/vat", &v));
        ASSERT_STREQ(json_object_get_string(v), "vat22");
        ASSERT_OK(json_pointer_get(o, "/items/0/vat_tag1199", &v));
        ASSERT_EQ(json_object_get_int(v), 11);
}

static void test_canonical_equal_for_equivalent_bodies(void) {
        static const char *const equivalent[] = {
                /* whitespace and key order */
                "{ \"type\" : \"sale\",\n\t\"payments\": [ {\"amount\": 1500.00, \"type\": \"cash\"} ],\r\n"
                "  \"items\": [ {\"vat_rate\": 22, \"total\": 1500.00, \"quantity\": 1, \"price\": 1500.00,"
                "  \"name\": \"Frame\"} ], \"pos_id\": \"POS-1\" }  ",
                /* 1500 vs 1500.0 vs "1500.00", 1 vs 1.000 vs "1", 22 vs "22" */
                "{\"pos_id\":\"POS-1\",\"type\":\"sale\",\"items\":[{\"name\":\"Frame\",\"price\":1500,"
                "\"quantity\":1.000,\"total\":\"1500.00\",\"vat_rate\":22}],"
                "\"payments\":[{\"type\":\"cash\",\"amount\":1500.0}]}",
                "{\"pos_id\":\"POS-1\",\"type\":\"sale\",\"items\":[{\"name\":\"Frame\",\"price\":\"1500\","
                "\"quantity\":\"1\",\"total\":1500,\"vat_rate\":\"22\"}],"
                "\"payments\":[{\"type\":\"cash\",\"amount\":\"1500.00\"}]}",
                /* vat by name */
                "{\"pos_id\":\"POS-1\",\"type\":\"sale\",\"items\":[{\"name\":\"Frame\",\"price\":1500.00,"
                "\"quantity\":1,\"total\":1500.00,\"vat\":\"vat22\"}],"
                "\"payments\":[{\"type\":\"cash\",\"amount\":1500.00}]}",
                /* vat both ways, defaults spelled out, nulls for absent fields, a zero discount, and the
                 * derived keys of the canonical text (the tags and VAT amounts ignored, whatever they say;
                 * a stated total and change must be right) */
                "{\"pos_id\":\"POS-1\",\"type\":\"sale\",\"type_tag1054\":3,\"taxation\":\"osn\","
                "\"taxation_tag1055\":32,\"items\":[{"
                "\"name\":\"Frame\",\"price\":1500.00,\"quantity\":1,\"total\":1500.00,\"vat_rate\":22,"
                "\"vat\":\"vat22\",\"vat_tag1199\":1,\"vat_amount\":\"1.00\","
                "\"payment_method\":\"full_payment\","
                "\"payment_method_tag1214\":1,\"payment_object\":\"commodity\",\"payment_object_tag1212\":1,"
                "\"measure\":\"piece\",\"measure_tag2108\":1,\"mark_code\":null,\"discount\":0}],"
                "\"payments\":[{\"type\":\"cash\",\"amount\":1500.00,\"amount_tag\":1081}],"
                "\"customer\":null,\"cashier\":null,\"correction\":null,\"original\":null,"
                "\"original_date\":null,\"discount\":0,"
                "\"total\":\"1500.00\",\"change\":\"0.00\",\"vat_amounts\":[{\"vat\":\"x\"}]}",
        };
        _cleanup_free_ char *expected = canonical_of(base);

        for (size_t i = 0; i < ELEMENTSOF(equivalent); i++) {
                _cleanup_free_ char *c = canonical_of(equivalent[i]);

                fprintf(stderr, "   variant %zu\n", i);
                ASSERT_STREQ(c, expected);
        }
}

static void test_fingerprint(void) {
        _cleanup_free_ char *one_kopeck_more = WITH("/items/0/price", "1500.01", "/items/0/total", "1500.01",
                                                    "/payments/0/amount", "1500.01");
        _cleanup_free_ char *reordered = WITH("/pos_id", DELETE, "/pos_id", "\"POS-1\"");
        _cleanup_free_ char *c1 = canonical_of(base), *c2 = canonical_of(one_kopeck_more),
                            *c3 = canonical_of(reordered);
        char f1[65], f2[65], f3[65], known[65];

        ASSERT_OK(receipt_fingerprint(c1, f1));
        ASSERT_OK(receipt_fingerprint(c2, f2));
        ASSERT_OK(receipt_fingerprint(c3, f3));
        ASSERT_EQ(strlen(f1), 64);
        ASSERT_TRUE(strcmp(f1, f2) != 0);
        ASSERT_STREQ(f1, f3);

        /* FIPS 180-2's example: it is SHA-256 and it is lower-case hex. */
        ASSERT_OK(receipt_fingerprint("abc", known));
        ASSERT_STREQ(known, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_body_not_json(void) {
        static const char nul_inside[] = "{\"pos_id\":\"POS-1\"}\0{}";

        expect_fail_limits("", 0, NULL, EBADMSG, "body: empty");
        REJECT_BODY("hello", "body: not valid JSON (unexpected character at offset 0)");
        REJECT_BODY("{\"pos_id\":", "body: not valid JSON (truncated)");
        REJECT_BODY("{", "body: not valid JSON (truncated)");
        REJECT_BODY("[1", "body: not valid JSON (truncated)");
        REJECT_BODY("{\"a\":1,}", "body: not valid JSON (unexpected character at offset 7)");
        REJECT_BODY("{\"a\":1} x", "body: not valid JSON (unexpected character at offset 8)");
        REJECT_BODY("{\"a\":1}{\"b\":2}", "body: not valid JSON (unexpected character at offset 7)");
        expect_fail_limits(nul_inside, sizeof nul_inside - 1, NULL, EBADMSG,
                           "body: not valid JSON (control character at offset 18)");
}

static void test_body_nesting_is_bounded(void) {
        char deep[200] = "{\"x\":";
        size_t l = strlen(deep);

        /* json-c's default depth limit of 32 keeps a hostile body from recursing without end. */
        for (size_t i = 0; i < 40; i++)
                deep[l++] = '[';
        for (size_t i = 0; i < 40; i++)
                deep[l++] = ']';
        deep[l++] = '}';
        expect_fail_limits(deep, l, NULL, EBADMSG, "body: not valid JSON (nesting too deep at offset 36)");
}

static void test_body_with_what_json_c_lets_through(void) {
        _cleanup_(receipt_freep) Receipt *r = NULL;

        /* Raw control characters in strings, and single quotes: json-c takes both even when strict. */
        REJECT_BODY("{\"pos_id\":\"a\x01z\"}", "body: not valid JSON (control character at offset 12)");
        REJECT_BODY("{\"pos_id\":\"a\tz\"}", "body: not valid JSON (control character at offset 12)");
        REJECT_BODY("{'pos_id':\"POS-1\"}", "body: not valid JSON (single quote at offset 1)");
        /* ...but a quote inside a string, an escaped one, and whitespace between tokens are fine. */
        r = ACCEPT(WITH("/items/0/name", "\"O'Neil \\\"Frame\\\"\""));
        ASSERT_STREQ(r->items[0].name, "O'Neil \"Frame\"");
}

static void test_body_not_an_object(void) {
        REJECT_BODY("[]", "body: not a JSON object");
        REJECT_BODY("\"sale\"", "body: not a JSON object");
        REJECT_BODY("null", "body: not a JSON object");
        REJECT_BODY("1500", "body: not a JSON object");
        REJECT_BODY(" true ", "body: not a JSON object");
}

static void test_body_not_utf8(void) {
        REJECT_BODY("{\"pos_id\":\"\xff\"}", "body: not valid UTF-8");
        REJECT_BODY("{\"pos_id\":\"\xd0\"}", "body: not valid UTF-8");                 /* cut short */
        REJECT_BODY("{\"pos_id\":\"\xc0\x80\"}", "body: not valid UTF-8");             /* overlong NUL */
        REJECT_BODY("{\"pos_id\":\"\xed\xa0\x80\"}", "body: not valid UTF-8");         /* surrogate */
        REJECT_BODY("{\"pos_id\":\"\xf4\x90\x80\x80\"}", "body: not valid UTF-8");     /* above U+10FFFF */
        REJECT_BODY("{\"x\":\"\xe2\x82\"}", "body: not valid UTF-8");                  /* unknown key too */
}

static void test_pos_id(void) {
        _cleanup_free_ char *max = json_repeat("p", RECEIPT_POS_ID_MAX),
                            *over = json_repeat("p", RECEIPT_POS_ID_MAX + 1),
                            *cyrillic = json_repeat("ж", RECEIPT_POS_ID_MAX);
        _cleanup_(receipt_freep) Receipt *r1 = NULL, *r2 = NULL;

        REJECT(WITH("/pos_id", DELETE), "pos_id: missing");
        REJECT(WITH("/pos_id", "null"), "pos_id: missing");
        REJECT(WITH("/pos_id", "\"\""), "pos_id: must not be empty");
        REJECT(WITH("/pos_id", "1"), "pos_id: must be a string");
        REJECT(WITH("/pos_id", "\"POS\\u0000-1\""), "pos_id: contains a NUL character");
        REJECT(WITH("/pos_id", "\"POS\\n1\""), "pos_id: contains a control character");
        REJECT(WITH("/pos_id", over), "pos_id: longer than 64 characters");

        /* 64 characters pass; Cyrillic letters count once although they take two bytes each. */
        r1 = ACCEPT(WITH("/pos_id", max));
        ASSERT_EQ(strlen(r1->pos_id), 64);
        r2 = ACCEPT(WITH("/pos_id", cyrillic));
        ASSERT_EQ(strlen(r2->pos_id), 128);
}

static void test_type(void) {
        _cleanup_free_ char *long_value = json_repeat("ы", 100);
        _cleanup_(receipt_freep) Receipt *r1 = NULL, *r2 = NULL;

        REJECT(WITH("/type", DELETE), "type: missing");
        REJECT(WITH("/type", "\"gift\""), "type: unknown value 'gift'");
        REJECT(WITH("/type", "\"Sale\""), "type: unknown value 'Sale'");
        REJECT(WITH("/type", "2"), "type: must be a string");
        /* A long value is quoted in part, never cutting a character in half. */
        REJECT(WITH("/type", long_value), "type: unknown value 'ыыыыыыыыыыыыыыыыыыыы...'");

        r1 = ACCEPT(WITH("/type", "\"refund\""));
        ASSERT_EQ(r1->type, RECEIPT_TYPE_REFUND);
        r2 = ACCEPT(WITH("/type", "\"correction\"", "/correction",
                         "{\"type\":\"self\",\"date\":\"2025-11-20\"}"));
        ASSERT_EQ(r2->type, RECEIPT_TYPE_SALE_CORRECTION);
}

static void test_taxation(void) {
        static const struct {
                const char *json;
                Taxation value;
        } known[] = {
                { "\"osn\"", 1 },  { "\"usn_income\"", 2 }, { "\"usn_income_outcome\"", 4 },
                { "\"esn\"", 16 }, { "\"patent\"", 32 },    { "null", 1 },
        };

        for (size_t i = 0; i < ELEMENTSOF(known); i++) {
                _cleanup_(receipt_freep) Receipt *r = ACCEPT(WITH("/taxation", known[i].json));

                ASSERT_EQ(r->taxation, known[i].value);
        }
        REJECT(WITH("/taxation", "\"envd\""), "taxation: unknown value 'envd'");
        REJECT(WITH("/taxation", "1"), "taxation: must be a string");
}

static void test_items_shape(void) {
        REJECT(WITH("/items", DELETE), "items: missing");
        REJECT(WITH("/items", "{}"), "items: must be an array");
        REJECT(WITH("/items", "[]"), "items: must not be empty");
        REJECT(WITH("/items/-", "\"Frame\""), "items[1]: must be an object");
}

static void test_items_limit_boundary(void) {
        static const char item[] = "{\"name\":\"x\",\"price\":1,\"quantity\":1,\"total\":1,\"vat_rate\":0}";
        const ReceiptLimits limits = { .max_items = 3, .max_payments = 1 };
        _cleanup_free_ char *three = WITH("/items", "[]", "/items/-", item, "/items/-", item,
                                          "/items/-", item, "/payments/0/amount", "3");
        _cleanup_free_ char *four = edit(three, "/items/-", item, "/payments/0/amount", "4", NULL);
        _cleanup_(receipt_freep) Receipt *r = parse_ok_limits(three, &limits);

        ASSERT_EQ(r->n_items, 3);
        ASSERT_EQ(r->total, 300);
        expect_fail_limits(four, strlen(four), &limits, EINVAL, "items: more than 3 items");
}

static void test_item_name(void) {
        _cleanup_free_ char *max = json_repeat("ё", RECEIPT_ITEM_NAME_MAX),
                            *over = json_repeat("a", RECEIPT_ITEM_NAME_MAX + 1);
        _cleanup_(receipt_freep) Receipt *r = NULL;

        REJECT(WITH("/items/0/name", DELETE), "items[0].name: missing");
        REJECT(WITH("/items/0/name", "\"\""), "items[0].name: must not be empty");
        REJECT(WITH("/items/0/name", "42"), "items[0].name: must be a string");
        REJECT(WITH("/items/0/name", over), "items[0].name: longer than 255 characters");
        REJECT(WITH("/items/0/name", "\"Fr\\u0000ame\""), "items[0].name: contains a NUL character");

        /* 255 two-byte characters: 510 bytes, still within the limit. */
        r = ACCEPT(WITH("/items/0/name", max));
        ASSERT_EQ(strlen(r->items[0].name), 2 * RECEIPT_ITEM_NAME_MAX);
}

static void test_item_price(void) {
        static const char good[] = "{\"name\":\"a\",\"price\":1,\"quantity\":1,\"total\":1,\"vat_rate\":0}";
        static const char zero[] = "{\"name\":\"Box\",\"price\":0,\"quantity\":1,\"total\":0,"
                                   "\"vat\":\"none\"}";
        _cleanup_(receipt_freep) Receipt *r = NULL;

        REJECT(WITH("/items/0/price", DELETE), "items[0].price: missing");
        REJECT(WITH("/items/0/price", "1500.005"), "items[0].price: more than 2 decimal places");
        REJECT(WITH("/items/0/price", "-1500.00"), "items[0].price: must not be negative");
        REJECT(WITH("/items/0/price", "1.5e3"), "items[0].price: not a plain decimal number");
        REJECT(WITH("/items/0/price", "\"1 500\""), "items[0].price: not a plain decimal number");
        REJECT(WITH("/items/0/price", "true"), "items[0].price: must be a number");
        REJECT(WITH("/items/0/price", "92233720368547758.08"), "items[0].price: out of range");

        /* The path names the right item. */
        REJECT(WITH("/items/-", good, "/items/-", "{\"name\":\"b\",\"price\":0.001}"),
               "items[2].price: more than 2 decimal places");

        /* Zero-priced lines are allowed. */
        r = ACCEPT(WITH("/items/-", zero));
        ASSERT_EQ(r->n_items, 2);
        ASSERT_EQ(r->items[1].price, 0);
}

static void test_item_quantity(void) {
        _cleanup_(receipt_freep) Receipt *r = NULL;

        REJECT(WITH("/items/0/quantity", DELETE), "items[0].quantity: missing");
        REJECT(WITH("/items/0/quantity", "0"), "items[0].quantity: must be greater than zero");
        REJECT(WITH("/items/0/quantity", "-1"), "items[0].quantity: must be greater than zero");
        REJECT(WITH("/items/0/quantity", "1.0005"), "items[0].quantity: more than 3 decimal places");

        r = ACCEPT(WITH("/items/0/quantity", "0.001", "/items/0/price", "1500000",
                        "/items/0/total", "1500"));
        ASSERT_EQ(r->items[0].quantity, 1);
}

static void test_item_total(void) {
        REJECT(WITH("/items/0/total", DELETE), "items[0].total: missing");
        REJECT(WITH("/items/0/total", "-0.01", "/items/0/price", "0"),
               "items[0].total: must not be negative");
        REJECT(WITH("/items/0/total", "1500.001"), "items[0].total: more than 2 decimal places");
}

/* 10.00 x 0.333 = 3.33 exactly; the line total and the payment are set to `total`. */
static char *with_line_total(const char *total) {
        return WITH("/items/0/price", "10.00", "/items/0/quantity", "0.333", "/items/0/total", total,
                    "/payments/0/amount", total);
}

static void test_item_total_tolerance_is_one_kopeck_each_way(void) {
        static const char *const accepted[] = { "3.32", "3.33", "3.34" };

        for (size_t i = 0; i < ELEMENTSOF(accepted); i++) {
                _cleanup_(receipt_freep) Receipt *r = ACCEPT(with_line_total(accepted[i]));

                ASSERT_EQ(r->total, r->payments[0].amount);
        }
        REJECT(with_line_total("3.31"), "items[0].total: 3.31 does not match price * quantity = 3.33");
        REJECT(with_line_total("3.35"), "items[0].total: 3.35 does not match price * quantity = 3.33");
}

static void test_item_line_amount_rounds_half_up(void) {
        _cleanup_(receipt_freep) Receipt *r = NULL;

        /* 0.01 x 1.500 = 1.5 kopecks -> 2. Truncating gives 1, which would accept 0.00 and refuse 0.03. */
        r = ACCEPT(WITH("/items/0/price", "0.01", "/items/0/quantity", "1.5", "/items/0/total", "0.03",
                        "/payments/0/amount", "0.03"));
        ASSERT_EQ(r->items[0].total, 3);
        REJECT(WITH("/items/0/price", "0.01", "/items/0/quantity", "1.5", "/items/0/total", "0",
                    "/payments/0/amount", "0.01"),
               "items[0].total: 0.00 does not match price * quantity = 0.02");
        /* 0.01 x 1.499 = 1.499 kopecks -> 1. */
        REJECT(WITH("/items/0/price", "0.01", "/items/0/quantity", "1.499", "/items/0/total", "0.03",
                    "/payments/0/amount", "0.03"),
               "items[0].total: 0.03 does not match price * quantity = 0.01");
}

static void test_item_amount_overflow(void) {
        REJECT(WITH("/items/0/price", "92233720368547758.07", "/items/0/quantity", "2"),
               "items[0]: price * quantity out of range");
        /* Kopecks times thousandths: the product overflows long before the price does. */
        REJECT(WITH("/items/0/price", "92233720368547.76", "/items/0/total", "92233720368547.76"),
               "items[0]: price * quantity out of range");
}

static void test_items_sum_overflow(void) {
        /* price * quantity caps a line at INT64_MAX / 1000 kopecks, so it takes more than 1000 lines. */
        static const char item[] = "{\"name\":\"b\",\"price\":92233720368547.75,\"quantity\":1,"
                                   "\"total\":92233720368547.75,\"vat_rate\":0}";
        const ReceiptLimits limits = { .max_items = 2000, .max_payments = 1 };
        _cleanup_(json_object_putp) json_object *o = json_tokener_parse(base),
                                                *items = json_object_new_array();
        const char *body;

        ASSERT_NOT_NULL(o);
        ASSERT_NOT_NULL(items);
        for (size_t i = 0; i < 1001; i++)
                ASSERT_OK(json_object_array_add(items, json_tokener_parse(item)));
        ASSERT_OK(json_object_object_add(o, "items", TAKE_PTR(items)));
        body = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);

        expect_fail_limits(body, strlen(body), &limits, EINVAL, "items: sum of totals out of range");
}

static void test_item_vat(void) {
        _cleanup_(receipt_freep) Receipt *r1 = NULL, *r2 = NULL, *r3 = NULL, *r4 = NULL;

        REJECT(WITH("/items/0/vat_rate", DELETE), "items[0].vat_rate: missing (or give vat)");
        REJECT(WITH("/items/0/vat_rate", "15"), "items[0].vat_rate: unsupported rate 15");
        REJECT(WITH("/items/0/vat_rate", "-20"), "items[0].vat_rate: unsupported rate -20");
        REJECT(WITH("/items/0/vat_rate", "20.5"), "items[0].vat_rate: must be a whole number");
        REJECT(WITH("/items/0/vat_rate", "\"twenty\""), "items[0].vat_rate: not a plain decimal number");
        REJECT(WITH("/items/0/vat_rate", DELETE, "/items/0/vat", "\"vat15\""),
               "items[0].vat: unknown value 'vat15'");
        REJECT(WITH("/items/0/vat_rate", DELETE, "/items/0/vat", "20"), "items[0].vat: must be a string");
        REJECT(WITH("/items/0/vat", "\"vat10\""), "items[0].vat: 'vat10' does not match vat_rate 22");
        REJECT(WITH("/items/0/vat", "\"vat122\""), "items[0].vat: 'vat122' does not match vat_rate 22");

        r1 = ACCEPT(WITH("/items/0/vat_rate", "10"));
        ASSERT_TRUE(r1->items[0].vat == vat_from_name("vat10"));
        r2 = ACCEPT(WITH("/items/0/vat_rate", DELETE, "/items/0/vat", "\"vat122\""));
        ASSERT_TRUE(r2->items[0].vat == vat_from_name("vat122"));
        r3 = ACCEPT(WITH("/items/0/vat", "\"vat22\""));
        ASSERT_TRUE(r3->items[0].vat == vat_from_name("vat22"));
        r4 = ACCEPT(WITH("/items/0/vat_rate", "0"));
        ASSERT_TRUE(r4->items[0].vat == vat_from_name("vat0"));
}

static void test_item_enum_attributes(void) {
        _cleanup_(receipt_freep) Receipt *r = NULL;

        REJECT(WITH("/items/0/payment_method", "\"barter\""),
               "items[0].payment_method: unknown value 'barter'");
        REJECT(WITH("/items/0/payment_object", "\"ship\""), "items[0].payment_object: unknown value 'ship'");
        REJECT(WITH("/items/0/measure", "\"parsec\""), "items[0].measure: unknown value 'parsec'");
        REJECT(WITH("/items/0/measure", "11"), "items[0].measure: must be a string");

        r = ACCEPT(WITH("/items/0/payment_method", "\"credit_payment\"",
                        "/items/0/payment_object", "\"agent_commission\"",
                        "/items/0/measure", "\"milliliter\""));
        ASSERT_EQ(r->items[0].payment_method, 7);
        ASSERT_EQ(r->items[0].payment_object, 11);
        ASSERT_EQ(r->items[0].measure, 40);
}

static void test_item_mark_code(void) {
        _cleanup_free_ char *max = json_repeat("0", RECEIPT_MARK_CODE_MAX),
                            *over = json_repeat("0", RECEIPT_MARK_CODE_MAX + 1);
        _cleanup_(receipt_freep) Receipt *r1 = NULL, *r2 = NULL;

        REJECT(WITH("/items/0/mark_code", "\"\""), "items[0].mark_code: must not be empty");
        REJECT(WITH("/items/0/mark_code", over), "items[0].mark_code: longer than 256 characters");
        REJECT(WITH("/items/0/mark_code", "[]"), "items[0].mark_code: must be a string");
        REJECT(WITH("/items/0/mark_code", "\"01\\u0000\""), "items[0].mark_code: contains a NUL character");

        /* The GS separator of GS1 DataMatrix codes is a control character that must pass. */
        r1 = ACCEPT(WITH("/items/0/mark_code", "\"0104600000000000215abc\\u001d93dGVz\""));
        ASSERT_STREQ(r1->items[0].mark_code, "0104600000000000215abc\x1d"
                                             "93dGVz");
        r2 = ACCEPT(WITH("/items/0/mark_code", max));
        ASSERT_EQ(strlen(r2->items[0].mark_code), RECEIPT_MARK_CODE_MAX);
}

static void test_payments_shape(void) {
        REJECT(WITH("/payments", DELETE), "payments: missing");
        REJECT(WITH("/payments", "{}"), "payments: must be an array");
        REJECT(WITH("/payments", "[]"), "payments: must not be empty");
        REJECT(WITH("/payments/0", "1500"), "payments[0]: must be an object");
        REJECT(WITH("/payments/0/type", DELETE), "payments[0].type: missing");
        REJECT(WITH("/payments/0/type", "\"crypto\""), "payments[0].type: unknown value 'crypto'");
        REJECT(WITH("/payments/0/amount", DELETE), "payments[0].amount: missing");
        REJECT(WITH("/payments/0/amount", "0"), "payments[0].amount: must be greater than zero");
        REJECT(WITH("/payments/0/amount", "-1500"), "payments[0].amount: must be greater than zero");
        REJECT(WITH("/payments/0/amount", "1500.001"), "payments[0].amount: more than 2 decimal places");
        REJECT(WITH("/payments/-", "{\"type\":\"card\",\"amount\":\"x\"}"),
               "payments[1].amount: not a plain decimal number");
}

static void test_payments_limit_boundary(void) {
        static const char half[] = "{\"type\":\"card\",\"amount\":750}";
        const ReceiptLimits limits = { .max_items = 10, .max_payments = 2 };
        _cleanup_free_ char *two = WITH("/payments", "[]", "/payments/-", half, "/payments/-", half);
        /* The count is checked before the amounts are summed. */
        _cleanup_free_ char *three = edit(two, "/payments/-", half, NULL);
        _cleanup_(receipt_freep) Receipt *r = parse_ok_limits(two, &limits);

        ASSERT_EQ(r->n_payments, 2);
        expect_fail_limits(three, strlen(three), &limits, EINVAL, "payments: more than 2 payments");
}

/* The prototype let payments differ from the total by a kopeck either way; a register takes no less than
 * the total, and what is paid above it is change. */
static void test_payments_short_by_one_kopeck_refused(void) {
        REJECT(WITH("/payments/0/amount", "1499.99"),
               "payments: sum 1499.99 is less than the total 1500.00 (short by 0.01)");
        /* Split payments are summed. */
        REJECT(WITH("/payments/0/amount", "1000", "/payments/-", "{\"type\":\"card\",\"amount\":499.98}"),
               "payments: sum 1499.98 is less than the total 1500.00 (short by 0.02)");
        /* The brief's case: 99.98 for 99.99. */
        REJECT(WITH("/items/0/price", "99.99", "/items/0/total", "99.99", "/payments/0/amount", "99.98"),
               "payments: sum 99.98 is less than the total 99.99 (short by 0.01)");
        REJECT(WITH("/payments/0/amount", "92233720368547758",
                    "/payments/-", "{\"type\":\"card\",\"amount\":92233720368547758}"),
               "payments: sum out of range");
}

static void test_payments_exact_total_accepted_without_change(void) {
        _cleanup_(receipt_freep) Receipt *r = ACCEPT(
                WITH("/items/0/price", "99.99", "/items/0/total", "99.99", "/payments/0/amount", "99.99"));
        _cleanup_free_ char *c = canonical_with(r, 0);

        ASSERT_EQ(r->total, 9999);
        ASSERT_EQ(r->paid, 9999);
        ASSERT_EQ(r->change, 0);
        ASSERT_NULL(strstr(c, "\"change\""));
}

static void test_cash_above_the_total_is_change(void) {
        _cleanup_free_ char *body = WITH("/payments/0/amount", "1000", "/payments/-",
                                         "{\"type\":\"card\",\"amount\":499.50}",
                                         "/payments/-", "{\"type\":\"cash\",\"amount\":\"1.00\"}");
        _cleanup_(receipt_freep) Receipt *r = parse_ok(body);
        _cleanup_free_ char *c = assert_round_trip(body, &test_options);

        ASSERT_EQ(r->total, 150000);
        ASSERT_EQ(r->paid, 150050);
        ASSERT_EQ(r->change, 50);
        ASSERT_NOT_NULL(strstr(c, "\"total\":\"1500.00\",\"change\":\"0.50\",\"vat_amounts\""));
}

static void test_non_cash_above_the_total_refused(void) {
        static const char *const non_cash[] = { "card", "electronic", "prepayment", "credit", "other" };

        REJECT(WITH("/items/0/price", "100", "/items/0/total", "100",
                    "/payments/0", "{\"type\":\"card\",\"amount\":120}"),
               "payments: non-cash payments 120.00 exceed the total 100.00");
        /* Each non-cash kind counts, and so does a mix; cash beside them does not help. */
        for (size_t i = 0; i < ELEMENTSOF(non_cash); i++) {
                _cleanup_free_ char *payment = NULL;

                ASSERT_TRUE(asprintf(&payment, "{\"type\":\"%s\",\"amount\":0.01}", non_cash[i]) >= 0);
                fprintf(stderr, "   %s\n", non_cash[i]);
                REJECT(WITH("/payments/0", "{\"type\":\"card\",\"amount\":1500}", "/payments/-", payment,
                            "/payments/-", "{\"type\":\"cash\",\"amount\":5}"),
                       "payments: non-cash payments 1500.01 exceed the total 1500.00");
        }
}

/* The optics flow: an advance at the order (a receipt of its own, earlier), the balance at pickup by card,
 * the advance offset against the goods (tag 1215). */
static void test_prepayment_offset_and_card_balance(void) {
        _cleanup_free_ char *body = WITH("/items/0/price", "12000", "/items/0/total", "12000",
                                         "/payments/0", "{\"type\":\"prepayment\",\"amount\":\"5000.00\"}",
                                         "/payments/-", "{\"type\":\"card\",\"amount\":7000}");
        _cleanup_(receipt_freep) Receipt *r = parse_ok(body);
        _cleanup_free_ char *c = assert_round_trip(body, &test_options);

        ASSERT_EQ(r->n_payments, 2);
        ASSERT_EQ(r->payments[0].type, PAYMENT_TYPE_PREPAYMENT);
        ASSERT_EQ(r->payments[0].amount, 500000);
        ASSERT_EQ(r->payments[1].type, PAYMENT_TYPE_CARD);
        ASSERT_EQ(r->paid, 1200000);
        ASSERT_EQ(r->change, 0);
        ASSERT_NOT_NULL(strstr(c, "\"payments\":[{\"type\":\"prepayment\",\"amount\":\"5000.00\","
                                  "\"amount_tag\":1215},{\"type\":\"card\",\"amount\":\"7000.00\","
                                  "\"amount_tag\":1081}]"));
}

/* Postpayment: handed over now, paid later (tag 1216), here with a part paid in cash. */
static void test_credit_postpayment(void) {
        _cleanup_free_ char *body = WITH("/items/0/payment_method", "\"credit\"",
                                         "/payments/0/amount", "500",
                                         "/payments/-", "{\"type\":\"credit\",\"amount\":1000}");
        _cleanup_(receipt_freep) Receipt *r = parse_ok(body);
        _cleanup_free_ char *c = assert_round_trip(body, &test_options);

        ASSERT_EQ(r->payments[1].type, PAYMENT_TYPE_CREDIT);
        ASSERT_EQ(r->payments[1].amount, 100000);
        ASSERT_EQ(r->items[0].payment_method, PAYMENT_METHOD_CREDIT);
        ASSERT_NOT_NULL(strstr(c, "{\"type\":\"credit\",\"amount\":\"1000.00\",\"amount_tag\":1216}"));
}

static void test_electronic_reads_as_card(void) {
        _cleanup_free_ char *body = WITH("/payments/0/type", "\"electronic\"");
        _cleanup_(receipt_freep) Receipt *r = parse_ok(body);
        _cleanup_free_ char *c = assert_round_trip(body, &test_options);

        ASSERT_EQ(r->payments[0].type, PAYMENT_TYPE_CARD);
        ASSERT_NOT_NULL(strstr(c, "{\"type\":\"card\",\"amount\":\"1500.00\",\"amount_tag\":1081}"));
        ASSERT_NULL(strstr(c, "electronic"));
}

static void test_customer(void) {
        static const char *const bad_emails[] = {
                "\"foo\"", "\"@b.ru\"",     "\"a@\"",      "\"a@b\"",        "\"a@b.\"",
                "\"a@.ru\"", "\"a b@c.ru\"", "\"a@b@c.ru\"", "\"a@b.ru\\t\"",
        };
        static const char *const bad_phones[] = {
                "\"89991234567\"",        "\"+7999123\"", "\"+7 999 123-45-67\"",
                "\"+7999123456789012\"", "\"+\"",        "\"+7999123456a\"",
        };
        _cleanup_(receipt_freep) Receipt *r1 = NULL, *r2 = NULL, *r3 = NULL;

        REJECT(WITH("/customer", "\"a@b.ru\""), "customer: must be an object");
        REJECT(WITH("/customer", "{}"), "customer: needs an email or a phone");
        REJECT(WITH("/customer", "{\"email\":null,\"phone\":null}"), "customer: needs an email or a phone");
        REJECT(WITH("/customer", "{\"email\":5}"), "customer.email: must be a string");
        for (size_t i = 0; i < ELEMENTSOF(bad_emails); i++)
                REJECT(WITH("/customer", "{}", "/customer/email", bad_emails[i]),
                       "customer.email: not an e-mail address");
        for (size_t i = 0; i < ELEMENTSOF(bad_phones); i++)
                REJECT(WITH("/customer", "{}", "/customer/phone", bad_phones[i]),
                       "customer.phone: not a phone number like +79991234567");

        r1 = ACCEPT(WITH("/customer", "{\"email\":\"ivan@example.com\"}"));
        ASSERT_STREQ(r1->customer_email, "ivan@example.com");
        ASSERT_NULL(r1->customer_phone);
        r2 = ACCEPT(WITH("/customer", "{\"phone\":\"+79991234567\"}"));
        ASSERT_STREQ(r2->customer_phone, "+79991234567");
        ASSERT_NULL(r2->customer_email);
        r3 = ACCEPT(WITH("/customer", "null"));
        ASSERT_NULL(r3->customer_email);
}

/* ---- options ---- */

static void test_options_all_zero_are_the_defaults_of_receipt_parse(void) {
        static const ReceiptOptions zero = {};
        _cleanup_(receipt_freep) Receipt *r1 = NULL, *r2 = NULL;
        _cleanup_free_ char *c1 = NULL, *c2 = NULL;

        /* vat22 on a sale is right whatever day it runs, so the clock (now()) does not matter here. */
        ASSERT_OK(receipt_parse_with(base, strlen(base), &zero, &r1, NULL));
        ASSERT_OK(receipt_parse_with(base, strlen(base), NULL, &r2, NULL));
        r1 = receipt_free(r1);
        r1 = parse_ok_limits(base, NULL);
        c1 = canonical_with(r1, 0);
        c2 = canonical_with(r2, 0);
        ASSERT_STREQ(c1, c2);
        ASSERT_EQ(r1->taxation, TAXATION_OSN);
        ASSERT_FALSE(r1->taxation_given);
        ASSERT_NULL(r1->cashier_name);
}

/* receipt_parse(), as the daemon calls it, rejects unknown fields; its limits still apply. */
static void test_receipt_parse_rejects_unknown_fields(void) {
        _cleanup_free_ char *body = WITH("/operator", "\"Ivan\"");
        const ReceiptLimits limits = { .max_items = 1, .max_payments = 1 };
        _cleanup_free_ char *two = WITH("/items/-", "{\"name\":\"x\",\"price\":1,\"quantity\":1,\"total\":1,"
                                                    "\"vat_rate\":0}");

        expect_fail_limits(body, strlen(body), NULL, EINVAL, "unknown fields 'operator'");
        expect_fail_limits(two, strlen(two), &limits, EINVAL, "items: more than 1 items");
}

static void test_options_limits(void) {
        const ReceiptOptions o = { .now = NOW_2026, .max_items = 1, .max_payments = 1 };

        REJECT_WITH(
                &o,
                WITH("/items/-", "{\"name\":\"x\",\"price\":1,\"quantity\":1,\"total\":1,\"vat_rate\":0}"),
                "items: more than 1 items");
        REJECT_WITH(&o, WITH("/payments/-", "{\"type\":\"cash\",\"amount\":1}"),
                    "payments: more than 1 payments");
}

/* ---- receipt types and corrections (FFD tags 1054, 1173, 1174, 1178, 1179) ---- */

static const char correction_self[] = "{\"type\":\"self\",\"date\":\"2025-11-20\"}";

static void test_correction_receipt_without_correction_refused(void) {
        static const char *const types[] = { "\"correction\"", "\"sale_correction\"",
                                             "\"refund_correction\"", "\"purchase_correction\"",
                                             "\"purchase_refund_correction\"" };

        for (size_t i = 0; i < ELEMENTSOF(types); i++)
                REJECT(WITH("/type", types[i]),
                       "correction: missing (a correction receipt needs its type, date and, by order, "
                       "order_number)");
        REJECT(WITH("/type", "\"sale_correction\"", "/correction", "null"),
               "correction: missing (a correction receipt needs its type, date and, by order, "
               "order_number)");
        REJECT(WITH("/type", "\"sale_correction\"", "/correction", "\"self\""),
               "correction: must be an object");
}

static void test_correction_needs_type_and_date(void) {
        REJECT(WITH("/type", "\"sale_correction\"", "/correction", "{\"date\":\"2025-11-20\"}"),
               "correction.type: missing");
        REJECT(WITH("/type", "\"sale_correction\"", "/correction",
                    "{\"type\":\"own\",\"date\":\"2025-11-20\"}"),
               "correction.type: unknown value 'own'");
        REJECT(WITH("/type", "\"sale_correction\"", "/correction", "{\"type\":0,\"date\":\"2025-11-20\"}"),
               "correction.type: must be a string");
        REJECT(WITH("/type", "\"sale_correction\"", "/correction", "{\"type\":\"self\"}"),
               "correction.date: missing");
}

static void test_correction_date_is_a_past_calendar_day(void) {
        static const char *const not_dates[] = {
                "\"20.11.2025\"", "\"2025-11-2\"", "\"2025/11/20\"",
                "\"2025-11-20T10:00\"", "\"+025-11-20\"", "\"2025-1a-20\"",
        };

        for (size_t i = 0; i < ELEMENTSOF(not_dates); i++)
                REJECT(WITH("/type", "\"sale_correction\"", "/correction", correction_self,
                            "/correction/date", not_dates[i]),
                       "correction.date: not a date like 2025-12-31");
        REJECT(WITH("/type", "\"sale_correction\"", "/correction", correction_self, "/correction/date",
                    "20251120"),
               "correction.date: must be a string");
        REJECT(WITH("/type", "\"sale_correction\"", "/correction", correction_self,
                    "/correction/date", "\"2025-02-29\""),
               "correction.date: 2025-02-29 is not a day of the calendar");
        REJECT(WITH("/type", "\"sale_correction\"", "/correction", correction_self,
                    "/correction/date", "\"2025-13-01\""),
               "correction.date: 2025-13-01 is not a day of the calendar");
        REJECT(WITH("/type", "\"sale_correction\"", "/correction", correction_self,
                    "/correction/date", "\"0000-01-01\""),
               "correction.date: 0000-01-01 is not a day of the calendar");
        /* Not after the day of options.now (2026-06-15 in Moscow). */
        REJECT(WITH("/type", "\"sale_correction\"", "/correction", correction_self,
                    "/correction/date", "\"2026-06-16\""),
               "correction.date: 2026-06-16 is after today, 2026-06-15");

        receipt_free(ACCEPT(WITH("/type", "\"sale_correction\"", "/correction", correction_self,
                         "/correction/date", "\"2026-06-15\"")));
        receipt_free(ACCEPT(WITH("/type", "\"sale_correction\"", "/correction", correction_self,
                         "/correction/date", "\"2024-02-29\"")));
}

static void test_correction_by_order_needs_order_number(void) {
        _cleanup_free_ char *max = json_repeat("7", RECEIPT_ORDER_NUMBER_MAX),
                            *over = json_repeat("7", RECEIPT_ORDER_NUMBER_MAX + 1);
        _cleanup_(receipt_freep) Receipt *r = NULL;

        REJECT(WITH("/type", "\"sale_correction\"", "/correction",
                    "{\"type\":\"by_order\",\"date\":\"2025-11-20\"}"),
               "correction.order_number: missing (a correction by order needs it)");
        REJECT(WITH("/type", "\"sale_correction\"", "/correction",
                    "{\"type\":\"by_order\",\"date\":\"2025-11-20\"}", "/correction/order_number", over),
               "correction.order_number: longer than 32 characters");
        REJECT(WITH("/type", "\"sale_correction\"", "/correction",
                    "{\"type\":\"by_order\",\"date\":\"2025-11-20\"}", "/correction/order_number", "\"\""),
               "correction.order_number: must not be empty");
        REJECT(WITH("/type", "\"sale_correction\"", "/correction",
                    "{\"type\":\"by_order\",\"date\":\"2025-11-20\"}", "/correction/order_number",
                    "\"12\\n34\""),
               "correction.order_number: contains a control character");

        r = ACCEPT(WITH("/type", "\"sale_correction\"",
                        "/correction", "{\"type\":\"by_order\",\"date\":\"2025-11-20\"}",
                        "/correction/order_number", max));
        ASSERT_EQ(strlen(r->correction.order_number), RECEIPT_ORDER_NUMBER_MAX);
}

static void test_correction_fields_and_canonical(void) {
        _cleanup_free_ char *self =
                WITH("/type", "\"purchase_refund_correction\"", "/correction", correction_self);
        _cleanup_free_ char *by_order = WITH("/type", "\"correction\"", "/correction",
                                             "{\"order_number\":\"ИФНС-77/1\",\"type\":\"by_order\","
                                             "\"date\":\"2025-12-31\"}");
        _cleanup_(receipt_freep) Receipt *r1 = parse_ok(self), *r2 = parse_ok(by_order);
        _cleanup_free_ char *c1 = assert_round_trip(self, &test_options),
                            *c2 = assert_round_trip(by_order, &test_options);

        ASSERT_TRUE(r1->has_correction);
        ASSERT_EQ(r1->correction.type, CORRECTION_TYPE_SELF);
        ASSERT_EQ(r1->correction.date, 20251120);
        ASSERT_NULL(r1->correction.order_number);
        ASSERT_NOT_NULL(
                strstr(c1, "\"type\":\"purchase_refund_correction\",\"type_tag1054\":4,"
                           "\"taxation\":\"osn\",\"taxation_tag1055\":1,"
                           "\"correction\":{\"type\":\"self\",\"type_tag1173\":0,\"date\":\"2025-11-20\"},"
                           "\"items\":"));

        ASSERT_EQ(r2->type, RECEIPT_TYPE_SALE_CORRECTION);
        ASSERT_EQ(r2->correction.type, CORRECTION_TYPE_BY_ORDER);
        ASSERT_EQ(r2->correction.date, 20251231);
        ASSERT_STREQ(r2->correction.order_number, "ИФНС-77/1");
        ASSERT_NOT_NULL(strstr(c2, "\"type\":\"sale_correction\",\"type_tag1054\":1,"
                                   "\"taxation\":\"osn\",\"taxation_tag1055\":1,"
                                   "\"correction\":{\"type\":\"by_order\",\"type_tag1173\":1,"
                                   "\"date\":\"2025-12-31\",\"order_number\":\"ИФНС-77/1\"},\"items\":"));
}

static void test_correction_on_other_types_refused(void) {
        REJECT(WITH("/correction", correction_self),
               "correction: only a correction receipt has one (type is sale)");
        REJECT(WITH("/type", "\"refund\"", "/correction", correction_self),
               "correction: only a correction receipt has one (type is refund)");
}

static void test_type_tag1054_for_every_type(void) {
        static const struct {
                const char *type;
                unsigned tag;
        } types[] = {
                { "sale", 1 }, { "refund", 2 }, { "purchase", 3 }, { "purchase_refund", 4 },
                { "sale_correction", 1 }, { "refund_correction", 2 }, { "purchase_correction", 3 },
                { "purchase_refund_correction", 4 },
        };

        for (size_t i = 0; i < ELEMENTSOF(types); i++) {
                _cleanup_free_ char *type = NULL, *body = NULL, *c = NULL, *expected = NULL;

                ASSERT_TRUE(asprintf(&type, "\"%s\"", types[i].type) >= 0);
                ASSERT_TRUE(asprintf(&expected, "\"type\":\"%s\",\"type_tag1054\":%u,", types[i].type,
                                     types[i].tag) >= 0);
                body = strstr(types[i].type, "correction")
                               ? WITH("/type", type, "/correction", correction_self)
                               : WITH("/type", type);
                c = assert_round_trip(body, &test_options);
                ASSERT_NOT_NULL(strstr(c, expected));
        }
}

/* ---- discounts and VAT amounts (tag 1200) ---- */

/* 40.00 x 1 with a discount of 5.00 is 35.00, exactly. */
static char *with_item_discount(const char *discount, const char *total) {
        return WITH("/items/0/price", "40", "/items/0/total", total, "/items/0/discount", discount,
                    "/payments/0/amount", "100");
}

static void test_item_discount_exact_accepted(void) {
        _cleanup_free_ char *body = with_item_discount("5", "35");
        _cleanup_(receipt_freep) Receipt *r = parse_ok(body);
        _cleanup_free_ char *c = assert_round_trip(body, &test_options);

        ASSERT_EQ(r->items[0].total, 3500);
        ASSERT_EQ(r->items[0].discount, 500);
        ASSERT_EQ(r->total, 3500);
        ASSERT_EQ(r->change, 6500);
        ASSERT_NOT_NULL(strstr(c, "\"total\":\"35.00\",\"discount\":\"5.00\",\"vat\":\"vat22\""));
        /* The whole line as a discount: a gift. */
        r = receipt_free(r);
        r = ACCEPT(with_item_discount("40", "0"));
        ASSERT_EQ(r->items[0].total, 0);
}

static void test_item_discount_off_by_one_kopeck_refused(void) {
        /* No tolerance once a discount explains the difference. */
        REJECT(with_item_discount("5", "35.01"),
               "items[0].total: 35.01 does not match price * quantity - discount = 35.00");
        REJECT(with_item_discount("5", "34.99"),
               "items[0].total: 34.99 does not match price * quantity - discount = 35.00");
        /* An explicit zero discount asks for the exact line as well. */
        REJECT(with_item_discount("0", "39.99"),
               "items[0].total: 39.99 does not match price * quantity - discount = 40.00");
        /* Without one, the kopeck of tolerance stays. */
        receipt_free(ACCEPT(WITH("/items/0/price", "40", "/items/0/total", "39.99",
                                 "/payments/0/amount", "40")));
}

static void test_item_discount_larger_than_the_line_refused(void) {
        REJECT(WITH("/items/-", "{\"name\":\"Case\",\"price\":40,\"quantity\":1,\"total\":0,\"discount\":50,"
                                "\"vat_rate\":22}"),
               "items[1].discount: 50.00 is larger than the line 40.00");
        REJECT(with_item_discount("-1", "41"), "items[0].discount: must not be negative");
        REJECT(with_item_discount("0.001", "40"), "items[0].discount: more than 2 decimal places");
        REJECT(with_item_discount("\"five\"", "35"), "items[0].discount: not a plain decimal number");
}

/* Three lines of 50.00 each: n items of price p. */
static char *lines(size_t n, const char *const *prices, const char *discount, const char *paid) {
        _cleanup_(json_object_putp) json_object *o = json_tokener_parse(base);
        json_object *items = json_object_new_array();

        ASSERT_NOT_NULL(o);
        ASSERT_NOT_NULL(items);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *item = NULL;

                ASSERT_TRUE(asprintf(&item,
                                     "{\"name\":\"Line %zu\",\"price\":%s,\"quantity\":1,\"total\":%s,"
                                     "\"vat_rate\":22}",
                                     i, prices[i], prices[i]) >= 0);
                ASSERT_OK(json_object_array_add(items, json_tokener_parse(item)));
        }
        ASSERT_OK(json_object_object_add(o, "items", items));
        if (discount)
                ASSERT_OK(json_object_object_add(o, "discount", json_object_new_string(discount)));
        ASSERT_OK(json_object_object_add(json_object_array_get_idx(json_object_object_get(o, "payments"), 0),
                                         "amount", json_object_new_string(paid)));
        return strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
}

static void test_receipt_discount_spread_over_equal_lines(void) {
        static const char *const prices[] = { "50", "50", "50" };
        _cleanup_free_ char *body = lines(3, prices, "100.00", "50.00");
        _cleanup_(receipt_freep) Receipt *r = parse_ok(body);
        _cleanup_free_ char *c = assert_round_trip(body, &test_options);

        /* 100.00 / 3 = 33.33 each and a kopeck left: equal remainders, so the first line takes it. */
        ASSERT_EQ(r->items[0].discount, 3334);
        ASSERT_EQ(r->items[1].discount, 3333);
        ASSERT_EQ(r->items[2].discount, 3333);
        ASSERT_EQ(r->items[0].total, 1666);
        ASSERT_EQ(r->items[1].total, 1667);
        ASSERT_EQ(r->items[2].total, 1667);
        ASSERT_EQ(r->total, 5000);
        ASSERT_NOT_NULL(strstr(c, "\"total\":\"16.66\",\"discount\":\"33.34\""));
        ASSERT_NOT_NULL(strstr(c, "\"total\":\"16.67\",\"discount\":\"33.33\""));
        /* The receipt-level discount is not written: it lives in the lines, and would apply twice. */
        ASSERT_NULL(strstr(c, "],\"discount\""));
}

static void test_receipt_discount_spread_by_largest_remainder(void) {
        static const char *const prices[] = { "10.00", "20.00", "30.01", "0", "39.99" };
        _cleanup_free_ char *body = lines(5, prices, "10.00", "90.00");
        _cleanup_(receipt_freep) Receipt *r = parse_ok(body);
        int64_t shares = 0;

        free(assert_round_trip(body, &test_options));
        /* 1000 kopecks over 10000: 100, 200, 300.1, 0, 399.9 -> floors 100, 200, 300, 0, 399 and one kopeck
         * left, to the largest remainder: the fifth line (.9), not the third (.1). */
        ASSERT_EQ(r->items[0].discount, 100);
        ASSERT_EQ(r->items[1].discount, 200);
        ASSERT_EQ(r->items[2].discount, 300);
        ASSERT_EQ(r->items[3].discount, 0);
        ASSERT_EQ(r->items[4].discount, 400);
        for (size_t i = 0; i < r->n_items; i++)
                shares += r->items[i].discount;
        ASSERT_EQ(shares, 1000);
        ASSERT_EQ(r->total, 9000);
}

/* The item's own discount first, then its share of the receipt's, in proportion to the discounted line. */
static void test_receipt_discount_with_item_discount(void) {
        _cleanup_free_ char *body = WITH("/items/0/discount", "500", "/items/0/total", "1000",
                                         "/items/-", "{\"name\":\"Lens\",\"price\":1000,\"quantity\":2,"
                                                     "\"total\":2000,\"vat\":\"vat22\"}",
                                         "/discount", "300", "/payments/0/amount", "2700");
        _cleanup_(receipt_freep) Receipt *r = parse_ok(body);

        free(assert_round_trip(body, &test_options));
        ASSERT_EQ(r->items[0].total, 90000);
        ASSERT_EQ(r->items[0].discount, 60000); /* 500 of its own, 100 of the receipt's */
        ASSERT_EQ(r->items[1].total, 180000);
        ASSERT_EQ(r->items[1].discount, 20000);
        ASSERT_EQ(r->total, 270000);
        ASSERT_EQ(r->vat_sums[0].base, 270000);
}

/* A line within the kopeck of tolerance keeps that kopeck in its discount, so that the canonical line is
 * exact. */
static void test_receipt_discount_on_a_tolerated_line_parses_back(void) {
        _cleanup_free_ char *body =
                WITH("/items/0/price", "10.00", "/items/0/quantity", "0.333", "/items/0/total", "3.34",
                     "/discount", "1.00", "/payments/0/amount", "2.34");
        _cleanup_(receipt_freep) Receipt *r = parse_ok(body);

        free(assert_round_trip(body, &test_options));
        /* price * quantity = 3.33; the POS said 3.34, the receipt's discount takes 1.00 of it. */
        ASSERT_EQ(r->items[0].total, 234);
        ASSERT_EQ(r->items[0].discount, 99);
}

static void test_receipt_discount_larger_than_the_lines_refused(void) {
        _cleanup_(receipt_freep) Receipt *r = NULL;

        REJECT(WITH("/discount", "1500.01"),
               "discount: 1500.01 is larger than the sum of the lines 1500.00");
        REJECT(WITH("/discount", "-1"), "discount: must not be negative");
        REJECT(WITH("/discount", "0.001"), "discount: more than 2 decimal places");
        /* All of it: nothing to pay, but the register wants a payment; cash, given back as change. */
        r = ACCEPT(WITH("/discount", "1500", "/payments/0/amount", "0.01"));
        ASSERT_EQ(r->total, 0);
        ASSERT_EQ(r->items[0].discount, 150000);
        ASSERT_EQ(r->change, 1);
}

/* Over many receipts: the shares add up to the discount, none exceeds its line, every line's whole discount
 * is exact, and the text parses back. Amounts near the limits must not overflow on the way. */
static void test_receipt_discount_spread_preserves_the_sum(void) {
        /* The largest lines price * quantity allows: discount * line needs 110 bits. */
        static const char *const big[] = { "92233720368547.75", "92233720368547.74", "0.01" };
        uint64_t x = UINT64_C(0x2545f4914f6cdd1d);
        _cleanup_free_ char *huge = lines(3, big, "184467440737095.49", "0.01");
        _cleanup_(receipt_freep) Receipt *h = parse_ok(huge);

        free(assert_round_trip(huge, &test_options));
        ASSERT_EQ(h->total, 1);
        ASSERT_EQ(h->items[0].discount + h->items[1].discount + h->items[2].discount,
                  INT64_C(18446744073709549));
        /* Floors ...774, ...773 and 0 leave two kopecks; the remainders rank the third line (just under a
         * whole kopeck) first, then the second (a hair above a half), then the first (a hair below). */
        ASSERT_EQ(h->items[0].total, 1);
        ASSERT_EQ(h->items[1].total, 0);
        ASSERT_EQ(h->items[2].total, 0);

        for (unsigned round = 0; round < 300; round++) {
                char prices[7][24], discount[24];
                const char *p[7];
                size_t n = 1 + round % 7;
                int64_t sum = 0, d, shares = 0;

                for (size_t i = 0; i < n; i++) {
                        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                        snprintf(prices[i], sizeof prices[i], "%" PRIu64 ".%02" PRIu64, x % 100000,
                                 (x >> 20) % 100);
                        p[i] = prices[i];
                        sum += (int64_t) (x % 100000) * 100 + (int64_t) ((x >> 20) % 100);
                }
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                d = sum == 0 ? 0 : (int64_t) (x % (uint64_t) (sum + 1));
                snprintf(discount, sizeof discount, "%" PRIi64 ".%02" PRIi64, d / 100, d % 100);

                _cleanup_free_ char *paid = strdup(MONEY_FORMAT(sum - d + 1, MONEY_SCALE_KOPECKS));
                _cleanup_free_ char *body = lines(n, p, discount, paid);
                _cleanup_(receipt_freep) Receipt *r = parse_ok(body);

                free(assert_round_trip(body, &test_options));
                for (size_t i = 0; i < n; i++) {
                        ASSERT_TRUE(r->items[i].discount >= 0);
                        ASSERT_TRUE(r->items[i].total >= 0);
                        ASSERT_EQ(r->items[i].total + r->items[i].discount, r->items[i].price);
                        shares += r->items[i].discount;
                }
                ASSERT_EQ(shares, d);
                ASSERT_EQ(r->total, sum - d);
        }
}

/* Tag 1200 per item on its final total, and per code the sums ordered by tag 1199, "none" included. */
static void test_vat_amounts_per_item_and_per_code(void) {
        _cleanup_free_ char *body = WITH(
                "/items/0/price", "100", "/items/0/total", "100", "/items/-",
                "{\"name\":\"b\",\"price\":\"0.03\",\"quantity\":1,\"total\":0.03,\"vat\":\"vat122\"}",
                "/items/-",
                "{\"name\":\"c\",\"price\":\"99.99\",\"quantity\":1,\"total\":99.99,\"vat_rate\":10}",
                "/items/-", "{\"name\":\"d\",\"price\":\"10\",\"quantity\":1,\"total\":10,\"vat\":\"none\"}",
                "/items/-",
                "{\"name\":\"e\",\"price\":\"0.03\",\"quantity\":1,\"total\":0.03,\"vat\":\"vat122\"}",
                "/items/-", "{\"name\":\"f\",\"price\":\"5.00\",\"quantity\":1,\"total\":5,\"vat_rate\":0}",
                "/items/-",
                "{\"name\":\"g\",\"price\":\"21\",\"quantity\":1,\"total\":21,\"vat\":\"vat105\"}",
                "/items/-",
                "{\"name\":\"h\",\"price\":\"10.70\",\"quantity\":1,\"total\":10.70,\"vat_rate\":7}",
                "/payments/0/amount", "246.75");
        _cleanup_(receipt_freep) Receipt *r = parse_ok(body);
        _cleanup_free_ char *c = assert_round_trip(body, &test_options);
        static const int64_t item_vat[] = { 1803, 1, 909, 0, 1, 0, 100, 70 };

        ASSERT_EQ(r->n_items, ELEMENTSOF(item_vat));
        for (size_t i = 0; i < r->n_items; i++)
                ASSERT_EQ(r->items[i].vat_amount, item_vat[i]);
        ASSERT_NOT_NULL(strstr(c,
                "\"vat_amounts\":["
                "{\"vat\":\"vat10\",\"tag1199\":2,\"base\":\"99.99\",\"amount\":\"9.09\"},"
                "{\"vat\":\"vat0\",\"tag1199\":5,\"base\":\"5.00\",\"amount\":\"0.00\"},"
                "{\"vat\":\"none\",\"tag1199\":6,\"base\":\"10.00\",\"amount\":\"0.00\"},"
                "{\"vat\":\"vat7\",\"tag1199\":8,\"base\":\"10.70\",\"amount\":\"0.70\"},"
                "{\"vat\":\"vat105\",\"tag1199\":9,\"base\":\"21.00\",\"amount\":\"1.00\"},"
                "{\"vat\":\"vat22\",\"tag1199\":11,\"base\":\"100.00\",\"amount\":\"18.03\"},"
                "{\"vat\":\"vat122\",\"tag1199\":12,\"base\":\"0.06\",\"amount\":\"0.02\"}]"));
        ASSERT_EQ(r->n_vat_sums, 7);
        ASSERT_TRUE(r->vat_sums[6].vat == vat_from_name("vat122"));
        ASSERT_EQ(r->vat_sums[6].base, 6);
        ASSERT_EQ(r->vat_sums[6].amount, 2);
        ASSERT_NOT_NULL(strstr(
                c, "\"total\":\"100.00\",\"vat\":\"vat22\",\"vat_tag1199\":11,\"vat_amount\":\"18.03\""));
}

/* ---- cashier (tags 1021, 1203) ---- */

static const ReceiptOptions options_cashier = {
        .now = NOW_2026,
        .default_cashier = "Сидорова Е.",
        .default_cashier_inn = "773612345650",
};

static void test_cashier_default_from_options(void) {
        _cleanup_(receipt_freep) Receipt *r = parse_ok_with(base, &options_cashier);
        _cleanup_free_ char *c = assert_round_trip(base, &options_cashier);
        _cleanup_free_ char *name_only = NULL;
        ReceiptOptions o = options_cashier;

        ASSERT_STREQ(r->cashier_name, "Сидорова Е.");
        ASSERT_STREQ(r->cashier_inn, "773612345650");
        ASSERT_FALSE(r->cashier_given);
        ASSERT_NOT_NULL(strstr(c, "\"taxation_tag1055\":1,\"cashier\":{\"name\":\"Сидорова Е.\","
                                  "\"inn\":\"773612345650\"},\"items\":"));

        /* Without a default INN, the name alone. */
        o.default_cashier_inn = NULL;
        free(assert_round_trip(base, &o));
        name_only = canonical_of_with(base, &o, 0);
        ASSERT_NOT_NULL(strstr(name_only, "\"cashier\":{\"name\":\"Сидорова Е.\"},\"items\":"));
        /* An INN without a name is no cashier. */
        o.default_cashier = NULL;
        o.default_cashier_inn = "773612345650";
        r = receipt_free(r);
        r = parse_ok_with(base, &o);
        ASSERT_NULL(r->cashier_name);
        ASSERT_NULL(r->cashier_inn);
}

static void test_cashier_given_replaces_the_default(void) {
        _cleanup_free_ char *body = WITH("/cashier", "{\"name\":\"Петров П.\"}");
        _cleanup_(receipt_freep) Receipt *r = parse_ok_with(body, &options_cashier);

        free(assert_round_trip(body, &options_cashier));
        ASSERT_STREQ(r->cashier_name, "Петров П.");
        /* The default's INN is the default cashier's, not this one's. */
        ASSERT_NULL(r->cashier_inn);
        ASSERT_TRUE(r->cashier_given);

        r = receipt_free(r);
        r = ACCEPT(WITH("/cashier", "{\"name\":\"Петров П.\",\"inn\":\"500100732259\"}"));
        ASSERT_STREQ(r->cashier_inn, "500100732259");
}

static void test_cashier_name(void) {
        _cleanup_free_ char *max = json_repeat("ё", RECEIPT_CASHIER_MAX),
                            *over = json_repeat("ё", RECEIPT_CASHIER_MAX + 1);

        REJECT(WITH("/cashier", "\"Ivan\""), "cashier: must be an object");
        REJECT(WITH("/cashier", "{}"), "cashier.name: missing");
        REJECT(WITH("/cashier", "{\"inn\":\"500100732259\"}"), "cashier.name: missing");
        REJECT(WITH("/cashier", "{\"name\":\"\"}"), "cashier.name: must not be empty");
        REJECT(WITH("/cashier", "{\"name\":\"Iv\\nan\"}"), "cashier.name: contains a control character");
        REJECT(WITH("/cashier", "{\"name\":\"Iv\\u007fan\"}"), "cashier.name: contains a control character");
        REJECT(WITH("/cashier", "{}", "/cashier/name", over), "cashier.name: longer than 64 characters");
        receipt_free(ACCEPT(WITH("/cashier", "{}", "/cashier/name", max)));
}

/* FFD tag 1203 is the INN of the cashier, a person: 12 digits and two check digits. */
static void test_cashier_inn_checksum(void) {
        static const char *const valid[] = { "500100732259", "773612345650", "770708389324" };
        static const char *const bad_checksum[] = {
                "500100732258", /* last digit */
                "500100732269", /* 11th digit */
                "500100732295", /* two digits swapped */
                "773612345651",
        };

        for (size_t i = 0; i < ELEMENTSOF(valid); i++) {
                _cleanup_free_ char *cashier = NULL;
                _cleanup_(receipt_freep) Receipt *r = NULL;
                const char *reason = NULL;

                ASSERT_OK(receipt_check_inn(valid[i], &reason));
                ASSERT_TRUE(asprintf(&cashier, "{\"name\":\"Ivan\",\"inn\":\"%s\"}", valid[i]) >= 0);
                r = ACCEPT(WITH("/cashier", cashier));
                ASSERT_STREQ(r->cashier_inn, valid[i]);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad_checksum); i++) {
                _cleanup_free_ char *cashier = NULL;
                const char *reason = NULL;

                ASSERT_ERROR(receipt_check_inn(bad_checksum[i], &reason), EINVAL);
                ASSERT_STREQ(reason, "checksum does not match");
                ASSERT_TRUE(asprintf(&cashier, "{\"name\":\"Ivan\",\"inn\":\"%s\"}", bad_checksum[i]) >= 0);
                REJECT(WITH("/cashier", cashier), "cashier.inn: checksum does not match");
        }

        /* A legal entity's 10-digit INN, even with a valid check digit (7707083893), is not a cashier's. */
        REJECT(WITH("/cashier", "{\"name\":\"Ivan\",\"inn\":\"7707083893\"}"),
               "cashier.inn: must be 12 digits");
        REJECT(WITH("/cashier", "{\"name\":\"Ivan\",\"inn\":\"7707083894\"}"),
               "cashier.inn: must be 12 digits");
        REJECT(WITH("/cashier", "{\"name\":\"Ivan\",\"inn\":\"50010073225\"}"),
               "cashier.inn: must be 12 digits");
        REJECT(WITH("/cashier", "{\"name\":\"Ivan\",\"inn\":\"5001007322590\"}"),
               "cashier.inn: must be 12 digits");
        REJECT(WITH("/cashier", "{\"name\":\"Ivan\",\"inn\":\"50010073225 \"}"),
               "cashier.inn: must be 12 digits");
        REJECT(WITH("/cashier", "{\"name\":\"Ivan\",\"inn\":500100732259}"),
               "cashier.inn: must be a string");
        REJECT(WITH("/cashier", "{\"name\":\"Ivan\",\"inn\":\"\"}"), "cashier.inn: must not be empty");
}

/* A bad default fails every receipt loudly rather than reaching the register; conf.c checks it first. */
static void test_cashier_default_checked(void) {
        ReceiptOptions o = options_cashier;
        const char *reason = NULL;

        o.default_cashier_inn = "773612345651";
        REJECT_WITH(&o, strdup(base),
                    "cashier.inn: the register's default cashier: checksum does not match");
        o.default_cashier_inn = NULL;
        o.default_cashier = "";
        REJECT_WITH(&o, strdup(base), "cashier.name: the register's default cashier: must not be empty");
        o.default_cashier = "a\tb";
        REJECT_WITH(&o, strdup(base),
                    "cashier.name: the register's default cashier: contains a control character");

        ASSERT_ERROR(receipt_check_cashier_name("\xff", &reason), EINVAL);
        ASSERT_STREQ(reason, "not valid UTF-8");
        ASSERT_OK(receipt_check_cashier_name("Сидорова Е.", &reason));
}

/* ---- taxation (tag 1055) ---- */

static void test_taxation_default_from_options(void) {
        const ReceiptOptions o = { .now = NOW_2026, .default_taxation = TAXATION_USN_INCOME };
        _cleanup_(receipt_freep) Receipt *r = parse_ok_with(base, &o), *given = NULL;
        _cleanup_free_ char *c = assert_round_trip(base, &o);

        ASSERT_EQ(r->taxation, TAXATION_USN_INCOME);
        ASSERT_FALSE(r->taxation_given);
        ASSERT_NOT_NULL(strstr(c, "\"taxation\":\"usn_income\",\"taxation_tag1055\":2,"));

        given = ACCEPT_WITH(&o, WITH("/taxation", "\"osn\""));
        ASSERT_EQ(given->taxation, TAXATION_OSN);
        ASSERT_TRUE(given->taxation_given);
}

static void test_taxation_not_registered_refused(void) {
        const ReceiptOptions usn = { .now = NOW_2026, .default_taxation = TAXATION_USN_INCOME,
                                     .allowed_taxations = TAXATION_USN_INCOME };
        const ReceiptOptions two = { .now = NOW_2026, .allowed_taxations = TAXATION_OSN | TAXATION_PATENT };
        _cleanup_(receipt_freep) Receipt *r1 = NULL, *r2 = NULL;

        REJECT_WITH(&usn, WITH("/taxation", "\"osn\""),
                    "taxation: the register is registered for usn_income only");
        REJECT_WITH(&two, WITH("/taxation", "\"usn_income_outcome\""),
                    "taxation: the register is registered for osn or patent only");
        /* The default is checked like a given one. */
        REJECT_WITH(&options_shop, WITH("/taxation", DELETE, "/taxation", "\"osn\""),
                    "taxation: the register is registered for usn_income or patent only");

        r1 = ACCEPT_WITH(&usn, strdup(base));
        ASSERT_EQ(r1->taxation, TAXATION_USN_INCOME);
        r2 = ACCEPT_WITH(&two, WITH("/taxation", "\"patent\""));
        ASSERT_EQ(r2->taxation, TAXATION_PATENT);
}

/* ---- the 2026 VAT change ---- */

static void test_vat20_on_a_2026_sale_refused(void) {
        REJECT(WITH("/items/0/vat_rate", "20"), "items[0].vat_rate: 20 % no longer applies from 2026-01-01; "
                                                "use 22 (vat22) or 22/122 (vat122)");
        REJECT(WITH("/items/0/vat_rate", DELETE, "/items/0/vat", "\"vat20\""),
               "items[0].vat: 20 % no longer applies from 2026-01-01; use 22 (vat22) or 22/122 (vat122)");
        REJECT(WITH("/items/0/vat_rate", DELETE, "/items/0/vat", "\"vat120\""),
               "items[0].vat: 20/120 no longer applies from 2026-01-01; use 22 (vat22) or 22/122 (vat122)");
        REJECT(WITH("/type", "\"purchase\"", "/items/-",
                    "{\"name\":\"x\",\"price\":1,\"quantity\":1,\"total\":1,\"vat_rate\":20}",
                    "/payments/0/amount", "1500.01"),
               "items[1].vat_rate: 20 % no longer applies from 2026-01-01; "
               "use 22 (vat22) or 22/122 (vat122)");
}

static void test_vat20_on_a_2025_sale_allowed(void) {
        _cleanup_free_ char *body = WITH("/items/0/vat_rate", "20");
        _cleanup_(receipt_freep) Receipt *r = parse_ok_with(body, &options_2025);

        ASSERT_TRUE(r->items[0].vat == vat_from_name("vat20"));
        ASSERT_EQ(r->items[0].vat_amount, 25000);
        ASSERT_FALSE(r->needs_pre2026_original);
        free(assert_round_trip(body, &options_2025));
}

/* The day is the local one: the last second of 2025 in Moscow is 20:59:59 UTC. */
static void test_vat20_ends_at_local_midnight(void) {
        const ReceiptOptions last = { .now = LAST_SECOND_OF_2025 }, first = { .now = FIRST_SECOND_OF_2026 };

        receipt_free(ACCEPT_WITH(&last, WITH("/items/0/vat_rate", "20")));
        REJECT_WITH(&first, WITH("/items/0/vat_rate", "20"),
                    "items[0].vat_rate: 20 % no longer applies from 2026-01-01; "
                    "use 22 (vat22) or 22/122 (vat122)");
}

static void test_vat20_on_a_correction_of_2025_allowed(void) {
        _cleanup_free_ char *body = WITH("/type", "\"sale_correction\"", "/correction", correction_self,
                                         "/correction/date", "\"2025-12-31\"", "/items/0/vat_rate", "20");
        _cleanup_(receipt_freep) Receipt *r = parse_ok(body);

        free(assert_round_trip(body, &test_options));
        ASSERT_TRUE(r->items[0].vat == vat_from_name("vat20"));
        ASSERT_FALSE(r->needs_pre2026_original);
        REJECT(WITH("/type", "\"refund_correction\"", "/correction", correction_self, "/correction/date",
                    "\"2026-01-01\"", "/items/0/vat_rate", "20"),
               "items[0].vat_rate: 20 % no longer applies from 2026-01-01 "
               "and correction.date is 2026-01-01; "
               "use 22 (vat22) or 22/122 (vat122)");
}

static void test_vat20_on_a_return_of_a_2025_sale_allowed(void) {
        _cleanup_free_ char *body = WITH("/type", "\"refund\"", "/original_date", "\"2025-12-31\"",
                                         "/items/0/vat_rate", "20");
        _cleanup_(receipt_freep) Receipt *r = parse_ok(body);

        free(assert_round_trip(body, &test_options));
        ASSERT_EQ(r->original_date, 20251231);
        ASSERT_FALSE(r->needs_pre2026_original);
        REJECT(WITH("/type", "\"purchase_refund\"", "/original_date", "\"2026-01-01\"", "/items/0/vat_rate",
                    "20"),
               "items[0].vat_rate: 20 % no longer applies from 2026-01-01 and original_date is 2026-01-01; "
               "use 22 (vat22) or 22/122 (vat122)");
}

/* Only the original's own record can tell its day: the store checks it. */
static void test_vat20_on_a_return_naming_its_original_is_flagged(void) {
        _cleanup_free_ char *body = WITH("/type", "\"refund\"", "/original", "\"R-2025-000123\"",
                                         "/items/0/vat_rate", "20");
        _cleanup_(receipt_freep) Receipt *r = parse_ok(body), *vat22 = NULL, *in_2025 = NULL;

        free(assert_round_trip(body, &test_options));
        ASSERT_TRUE(r->needs_pre2026_original);
        ASSERT_STREQ(r->original, "R-2025-000123");
        /* Nothing to check without a 20 % line, or when the return itself is made in 2025. */
        vat22 = ACCEPT(WITH("/type", "\"refund\"", "/original", "\"R-2025-000123\""));
        ASSERT_FALSE(vat22->needs_pre2026_original);
        in_2025 = ACCEPT_WITH(&options_2025, WITH("/type", "\"refund\"", "/original", "\"R-1\"",
                                                  "/items/0/vat_rate", "20"));
        ASSERT_FALSE(in_2025->needs_pre2026_original);
}

static void test_vat20_on_a_2026_return_without_its_original_refused(void) {
        REJECT(WITH("/type", "\"refund\"", "/items/0/vat_rate", "20"),
               "items[0].vat_rate: 20 % no longer applies from 2026-01-01; "
               "a return may use it only for a sale made before then: "
               "give original_date (YYYY-MM-DD) or original (the original receipt), or use "
               "22 (vat22) or 22/122 (vat122)");
}

/* ---- returns and their originals ---- */

static void test_original_only_on_returns(void) {
        static const char *const returns[] = { "\"refund\"", "\"purchase_refund\"" };
        _cleanup_free_ char *id_max = json_repeat("x", RECEIPT_ORIGINAL_MAX),
                            *id_over = json_repeat("x", RECEIPT_ORIGINAL_MAX + 1);

        REJECT(WITH("/original", "\"R-1\""),
               "original: only a return (refund, purchase_refund) refers to an original (type is sale)");
        REJECT(WITH("/type", "\"purchase\"", "/original_date", "\"2025-01-01\""),
               "original_date: only a return (refund, purchase_refund) refers to an original "
               "(type is purchase)");

        for (size_t i = 0; i < ELEMENTSOF(returns); i++) {
                _cleanup_free_ char *body = WITH("/type", returns[i], "/original", "\"01HZY3K/fd:1042\"",
                                                 "/original_date", "\"2026-06-15\"");
                _cleanup_(receipt_freep) Receipt *r = parse_ok(body);
                _cleanup_free_ char *c = assert_round_trip(body, &test_options);

                ASSERT_STREQ(r->original, "01HZY3K/fd:1042");
                ASSERT_EQ(r->original_date, 20260615);
                ASSERT_NOT_NULL(strstr(c, "\"taxation_tag1055\":1,\"original\":\"01HZY3K/fd:1042\","
                                          "\"original_date\":\"2026-06-15\",\"items\":"));
        }

        REJECT(WITH("/type", "\"refund\"", "/original", "\"\""), "original: must not be empty");
        REJECT(WITH("/type", "\"refund\"", "/original", "\"R 1\""),
               "original: only visible ASCII characters, no spaces");
        REJECT(WITH("/type", "\"refund\"", "/original", "\"R\\t1\""),
               "original: only visible ASCII characters, no spaces");
        REJECT(WITH("/type", "\"refund\"", "/original", "\"чек-1\""),
               "original: only visible ASCII characters, no spaces");
        REJECT(WITH("/type", "\"refund\"", "/original", "\"R\\u00a01\""),
               "original: only visible ASCII characters, no spaces");
        REJECT(WITH("/type", "\"refund\"", "/original", "42"), "original: must be a string");
        REJECT(WITH("/type", "\"refund\"", "/original", id_over), "original: longer than 64 characters");
        receipt_free(ACCEPT(WITH("/type", "\"refund\"", "/original", id_max)));
        REJECT(WITH("/type", "\"refund\"", "/original_date", "\"2026-06-16\""),
               "original_date: 2026-06-16 is after today, 2026-06-15");
        REJECT(WITH("/type", "\"refund\"", "/original_date", "\"15.06.2026\""),
               "original_date: not a date like 2025-12-31");
}

/* ---- unknown fields ---- */

static void test_unknown_fields_named_at_every_level(void) {
        REJECT(WITH("/operator", "\"Ivan\""), "unknown fields 'operator'");
        REJECT(WITH("/items/0/discout", "5", "/items/0/colour", "\"red\""),
               "items[0]: unknown fields 'discout', 'colour'");
        REJECT(WITH("/items/-",
                    "{\"name\":\"x\",\"price\":1,\"quantity\":1,\"total\":1,\"vat_rate\":0,\"sku\":1}"),
               "items[1]: unknown fields 'sku'");
        REJECT(WITH("/payments/0/note", "\"x\""), "payments[0]: unknown fields 'note'");
        REJECT(WITH("/customer", "{\"email\":\"a@b.ru\",\"name\":\"Ivan\"}"),
               "customer: unknown fields 'name'");
        REJECT(WITH("/cashier", "{\"name\":\"Ivan\",\"position\":\"senior\"}"),
               "cashier: unknown fields 'position'");
        REJECT(WITH("/type", "\"sale_correction\"", "/correction", correction_self, "/correction/basis",
                    "\"x\""),
               "correction: unknown fields 'basis'");
        /* A null value is no excuse for a misspelt name. */
        REJECT(WITH("/comment", "null"), "unknown fields 'comment'");
        /* Before any other check of the same object: the typo is likelier the cause. */
        REJECT(WITH("/items/0/discout", "5", "/items/0/total", "1495"),
               "items[0]: unknown fields 'discout'");
}

static void test_unknown_fields_list_is_bounded(void) {
        _cleanup_free_ char *long_key = json_repeat("ж", 30);
        _cleanup_free_ char *body = WITH("/a", "1", "/b", "2", "/c", "3", "/d", "4", "/e", "5", "/f", "6",
                                         "/g", "7", "/h", "8", "/i", "9", "/j", "10");
        _cleanup_free_ char *pointer = NULL, *long_body = NULL;

        REJECT(strdup(body), "unknown fields 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h' and 2 more");
        /* Long names are cut after 40 bytes, between characters. */
        ASSERT_TRUE(asprintf(&pointer, "/%.*s", (int) strlen(long_key) - 2, long_key + 1) >= 0);
        long_body = edit(base, pointer, "1", NULL);
        REJECT(strdup(long_body), "unknown fields 'жжжжжжжжжжжжжжжжжжжж...'");
}

static void test_unknown_fields_ignored_with_ignore(void) {
        _cleanup_free_ char *body = WITH(
                "/operator", "\"Ivan\"", "/items/0/colour", "\"red\"", "/payments/0/note", "\"x\"",
                "/customer", "{\"email\":\"a@b.ru\",\"x\":1}", "/cashier", "{\"name\":\"Ivan\",\"y\":2}");
        _cleanup_(receipt_freep) Receipt *r = parse_ok_with(body, &options_ignore);
        _cleanup_free_ char *c = canonical_with(r, 0);

        ASSERT_STREQ(r->cashier_name, "Ivan");
        ASSERT_NULL(strstr(c, "operator"));
        ASSERT_NULL(strstr(c, "colour"));
        ASSERT_NULL(strstr(c, "note"));
}

static void test_stated_total_and_change_must_match(void) {
        _cleanup_(receipt_freep) Receipt *r = NULL;

        /* The base receipt totals 1500.00, paid exactly by card. */
        r = ACCEPT(WITH("/total", "1500.00"));
        ASSERT_EQ(r->total, 150000);
        receipt_free(TAKE_PTR(r));
        r = ACCEPT(WITH("/total", "\"1500.00\"", "/change", "0"));
        ASSERT_EQ(r->change, 0);
        REJECT(WITH("/total", "1499.99"), "total: 1499.99 does not match the receipt's 1500.00");
        REJECT(WITH("/change", "0.01"), "change: 0.01 does not match the receipt's 0.00");
}

/* ---- the canonical text as given ---- */

static void test_canonical_as_given_leaves_out_defaulted_taxation_and_cashier(void) {
        _cleanup_(receipt_freep) Receipt *r = parse_ok_with(base, &options_shop);
        _cleanup_free_ char *full = canonical_with(r, 0),
                            *given = canonical_with(r, RECEIPT_CANONICAL_AS_GIVEN);
        _cleanup_free_ char *plain = canonical_of(base);

        ASSERT_NOT_NULL(strstr(full, "\"type_tag1054\":1,\"taxation\":\"usn_income\",\"taxation_tag1055\":2,"
                                     "\"cashier\":{\"name\":\"Петрова А. \\\"старший\\\" кассир\","
                                     "\"inn\":\"500100732259\"},\"items\":"));
        ASSERT_NOT_NULL(strstr(given, "\"type_tag1054\":1,\"items\":"));
        ASSERT_NULL(strstr(given, "taxation"));
        ASSERT_NULL(strstr(given, "cashier"));
        /* Everything else is the same text. */
        ASSERT_STREQ(strstr(given, "\"items\""), strstr(full, "\"items\""));
        ASSERT_STREQ(strstr(given, "\"items\""), strstr(plain, "\"items\""));
        free(assert_round_trip(base, &options_shop));
}

static void test_canonical_as_given_keeps_what_the_body_gave(void) {
        _cleanup_free_ char *body = WITH("/taxation", "\"patent\"", "/cashier", "{\"name\":\"Ivan\"}");
        _cleanup_(receipt_freep) Receipt *r = parse_ok_with(body, &options_shop);
        _cleanup_free_ char *full = canonical_with(r, 0),
                            *given = canonical_with(r, RECEIPT_CANONICAL_AS_GIVEN);

        ASSERT_STREQ(given, full);
        ASSERT_NOT_NULL(strstr(given, "\"taxation\":\"patent\",\"taxation_tag1055\":32,"
                                      "\"cashier\":{\"name\":\"Ivan\"},\"items\":"));
}

/* The daemon fingerprints the text as given: a changed [Device] Cashier= must not turn a retry into "key
 * reused with another body". The full text does change, as it should. */
static void test_canonical_as_given_fingerprint_survives_a_changed_default_cashier(void) {
        ReceiptOptions before = options_shop, after = options_shop;
        _cleanup_free_ char *g1 = NULL, *g2 = NULL, *f1 = NULL, *f2 = NULL;

        after.default_cashier = "Иванов И.";
        after.default_cashier_inn = NULL;
        g1 = canonical_of_with(base, &before, RECEIPT_CANONICAL_AS_GIVEN);
        g2 = canonical_of_with(base, &after, RECEIPT_CANONICAL_AS_GIVEN);
        f1 = canonical_of_with(base, &before, 0);
        f2 = canonical_of_with(base, &after, 0);
        ASSERT_STREQ(g1, g2);
        ASSERT_TRUE(strcmp(f1, f2) != 0);
}

/* Every new field at once, under every option: the text parses back to the same receipt. */
static void test_canonical_parses_back_for_every_new_field(void) {
        _cleanup_free_ char *body = WITH(
                "/cashier", "{\"name\":\"Ivan\",\"inn\":\"500100732259\"}", "/taxation", "\"usn_income\"",
                "/items/0/discount", "100", "/items/0/total", "1400", "/items/-",
                "{\"name\":\"b\",\"price\":\"10\",\"quantity\":3,\"total\":30,\"vat\":\"vat122\"}",
                "/discount", "10.00",
                "/payments/0/amount", "410", "/payments/-", "{\"type\":\"prepayment\",\"amount\":500}",
                "/payments/-", "{\"type\":\"credit\",\"amount\":500}",
                "/payments/-", "{\"type\":\"electronic\",\"amount\":10}",
                "/payments/-", "{\"type\":\"other\",\"amount\":10}",
                "/customer", "{\"email\":\"x@y.ru\"}");
        _cleanup_free_ char *refund = WITH("/type", "\"refund\"", "/original", "\"R-7\"",
                                           "/original_date", "\"2025-12-30\"", "/items/0/vat_rate", "20");
        _cleanup_free_ char *correction = WITH("/type", "\"purchase_correction\"", "/correction",
                                               "{\"type\":\"by_order\",\"date\":\"2025-01-31\","
                                               "\"order_number\":\"7/2025\"}",
                                               "/items/0/vat", "\"vat120\"", "/items/0/vat_rate", DELETE);
        _cleanup_free_ char *flagged = WITH("/type", "\"purchase_refund\"", "/original", "\"fd:1042\"",
                                            "/items/0/vat_rate", "20");
        _cleanup_free_ char *c = assert_round_trip(body, &options_shop);
        _cleanup_(receipt_freep) Receipt *r = parse_ok_with(c, &options_shop);

        ASSERT_EQ(r->change, 1000);
        ASSERT_EQ(r->total, 142000);
        free(assert_round_trip(body, &test_options));
        free(assert_round_trip(refund, &options_shop));
        free(assert_round_trip(correction, &test_options));
        free(assert_round_trip(correction, &options_shop));
        free(assert_round_trip(flagged, &options_cashier));
        free(assert_round_trip(pinned_ascii_body, &test_options));
        free(assert_round_trip(pinned_escapes_body, &test_options));
        free(assert_round_trip(pinned_amounts_body, &test_options));
}

static void test_enum_string_tables(void) {
        ASSERT_STREQ(receipt_type_to_string(RECEIPT_TYPE_SALE), "sale");
        ASSERT_STREQ(receipt_type_to_string(RECEIPT_TYPE_SALE_CORRECTION), "sale_correction");
        /* The prototype's name is read as a sale correction and never written. */
        ASSERT_EQ(receipt_type_from_string("correction"), RECEIPT_TYPE_SALE_CORRECTION);
        ASSERT_EQ(receipt_type_from_string("purchase_refund_correction"),
                  RECEIPT_TYPE_PURCHASE_REFUND_CORRECTION);
        ASSERT_EQ_U(receipt_type_to_ffd(RECEIPT_TYPE_SALE), 1);
        ASSERT_EQ_U(receipt_type_to_ffd(RECEIPT_TYPE_REFUND), 2);
        ASSERT_EQ_U(receipt_type_to_ffd(RECEIPT_TYPE_PURCHASE), 3);
        ASSERT_EQ_U(receipt_type_to_ffd(RECEIPT_TYPE_PURCHASE_REFUND), 4);
        ASSERT_EQ_U(receipt_type_to_ffd(RECEIPT_TYPE_REFUND_CORRECTION), 2);
        ASSERT_EQ_U(receipt_type_to_ffd(RECEIPT_TYPE_PURCHASE_REFUND_CORRECTION), 4);
        ASSERT_EQ_U(receipt_type_to_ffd(_RECEIPT_TYPE_MAX), 0);
        ASSERT_TRUE(receipt_type_is_correction(RECEIPT_TYPE_PURCHASE_CORRECTION));
        ASSERT_FALSE(receipt_type_is_correction(RECEIPT_TYPE_PURCHASE_REFUND));
        ASSERT_TRUE(receipt_type_is_return(RECEIPT_TYPE_REFUND_CORRECTION));
        ASSERT_TRUE(receipt_type_is_return(RECEIPT_TYPE_PURCHASE_REFUND));
        ASSERT_FALSE(receipt_type_is_return(RECEIPT_TYPE_PURCHASE));
        ASSERT_NULL(receipt_type_to_string(_RECEIPT_TYPE_MAX));
        ASSERT_EQ(receipt_type_from_string("refund"), RECEIPT_TYPE_REFUND);
        ASSERT_EQ(receipt_type_from_string("gift"), -EINVAL);
        ASSERT_EQ(receipt_type_from_string(NULL), -EINVAL);

        ASSERT_STREQ(payment_type_to_string(PAYMENT_TYPE_CARD), "card");
        ASSERT_EQ(payment_type_from_string("electronic"), PAYMENT_TYPE_CARD); /* read, never written */
        ASSERT_STREQ(payment_type_to_string(PAYMENT_TYPE_PREPAYMENT), "prepayment");
        ASSERT_EQ(payment_type_from_string("prepayment"), 1215);
        ASSERT_STREQ(payment_type_to_string(PAYMENT_TYPE_CREDIT), "credit");
        ASSERT_EQ(payment_type_from_string("credit"), 1216);
        ASSERT_EQ(payment_type_from_string("other"), 1217);
        ASSERT_STREQ(correction_type_to_string(CORRECTION_TYPE_SELF), "self");
        ASSERT_STREQ(correction_type_to_string(CORRECTION_TYPE_BY_ORDER), "by_order");
        ASSERT_EQ(correction_type_from_string("by_order"), 1);
        ASSERT_EQ(correction_type_from_string("order"), -EINVAL);
        ASSERT_STREQ(payment_method_to_string(4), "full_payment");
        ASSERT_EQ(payment_method_from_string("full_prepayment"), 1);
        ASSERT_STREQ(payment_object_to_string(13), "another");
        ASSERT_EQ(payment_object_from_string("composite"), 12);
        ASSERT_EQ(payment_object_from_string("commodity_marked"), 33);
        ASSERT_NULL(payment_object_to_string(28));
        ASSERT_STREQ(measure_to_string(0), "piece");
        ASSERT_EQ(measure_from_string("ton"), 12);
        ASSERT_EQ(measure_from_string("other"), 255);
        ASSERT_STREQ(taxation_to_string(32), "patent");
        ASSERT_EQ(taxation_from_string("esn"), 16);
        ASSERT_EQ(taxation_from_string("envd"), -EINVAL);
}

/* The tables are indexed by the FFD values themselves: the values between and around the named ones have
 * no name, and nothing out of range reaches past a table. */
static void test_enum_tables_leave_unnamed_values_and_ranges_unnamed(void) {
        ASSERT_NULL(payment_type_to_string(0));
        ASSERT_NULL(payment_type_to_string(1100));
        ASSERT_NULL(payment_type_to_string(_PAYMENT_TYPE_MAX));
        ASSERT_NULL(payment_type_to_string(_PAYMENT_TYPE_INVALID));
        ASSERT_STREQ(payment_type_to_string(PAYMENT_TYPE_OTHER), "other");
        ASSERT_EQ(payment_type_from_string(NULL), -EINVAL);
        ASSERT_NULL(payment_method_to_string(0));
        ASSERT_NULL(payment_method_to_string(8));
        ASSERT_NULL(payment_object_to_string(0));
        ASSERT_STREQ(payment_object_to_string(33), "commodity_marked");
        ASSERT_NULL(payment_object_to_string(34));
        ASSERT_NULL(measure_to_string(13));
        ASSERT_NULL(measure_to_string(256));
        ASSERT_NULL(taxation_to_string(0));
        ASSERT_NULL(taxation_to_string(3));
        ASSERT_NULL(taxation_to_string(8));
        ASSERT_NULL(taxation_to_string(64));
        ASSERT_NULL(correction_type_to_string(2));
        ASSERT_NULL(correction_type_to_string(-1));
        /* The read-only aliases are never written back. */
        ASSERT_STREQ(receipt_type_to_string(receipt_type_from_string("correction")), "sale_correction");
        ASSERT_STREQ(payment_type_to_string(payment_type_from_string("electronic")), "card");
}

int main(void) {
        /* Moscow time, without needing tzdata: where the local day of the 2026 rule begins. */
        ASSERT_OK(setenv("TZ", "MSK-3", 1));
        tzset();

        TEST_RUN(test_valid_receipt_fields_and_defaults);
        TEST_RUN(test_detail_may_be_null);
        TEST_RUN(test_body_need_not_be_nul_terminated);
        TEST_RUN(test_full_receipt_with_ffd_attributes);
        TEST_RUN(test_canonical_text);
        TEST_RUN(test_canonical_text_with_optional_fields);
        TEST_RUN(test_canonical_text_is_pinned_byte_for_byte);
        TEST_RUN(test_canonical_text_is_what_json_c_writes_for_the_tree);
        TEST_RUN(test_parse_after_failed_parse_starts_afresh);
        TEST_RUN(test_canonical_text_parses_back_to_itself);
        TEST_RUN(test_receipt_to_json_carries_ffd_values);
        TEST_RUN(test_canonical_equal_for_equivalent_bodies);
        TEST_RUN(test_fingerprint);
        TEST_RUN(test_body_not_json);
        TEST_RUN(test_body_nesting_is_bounded);
        TEST_RUN(test_body_with_what_json_c_lets_through);
        TEST_RUN(test_body_not_an_object);
        TEST_RUN(test_body_not_utf8);
        TEST_RUN(test_pos_id);
        TEST_RUN(test_type);
        TEST_RUN(test_taxation);
        TEST_RUN(test_items_shape);
        TEST_RUN(test_items_limit_boundary);
        TEST_RUN(test_item_name);
        TEST_RUN(test_item_price);
        TEST_RUN(test_item_quantity);
        TEST_RUN(test_item_total);
        TEST_RUN(test_item_total_tolerance_is_one_kopeck_each_way);
        TEST_RUN(test_item_line_amount_rounds_half_up);
        TEST_RUN(test_item_amount_overflow);
        TEST_RUN(test_items_sum_overflow);
        TEST_RUN(test_item_vat);
        TEST_RUN(test_item_enum_attributes);
        TEST_RUN(test_item_mark_code);
        TEST_RUN(test_payments_shape);
        TEST_RUN(test_payments_limit_boundary);
        TEST_RUN(test_payments_short_by_one_kopeck_refused);
        TEST_RUN(test_payments_exact_total_accepted_without_change);
        TEST_RUN(test_cash_above_the_total_is_change);
        TEST_RUN(test_non_cash_above_the_total_refused);
        TEST_RUN(test_prepayment_offset_and_card_balance);
        TEST_RUN(test_credit_postpayment);
        TEST_RUN(test_electronic_reads_as_card);
        TEST_RUN(test_customer);
        TEST_RUN(test_options_all_zero_are_the_defaults_of_receipt_parse);
        TEST_RUN(test_receipt_parse_rejects_unknown_fields);
        TEST_RUN(test_options_limits);
        TEST_RUN(test_correction_receipt_without_correction_refused);
        TEST_RUN(test_correction_needs_type_and_date);
        TEST_RUN(test_correction_date_is_a_past_calendar_day);
        TEST_RUN(test_correction_by_order_needs_order_number);
        TEST_RUN(test_correction_fields_and_canonical);
        TEST_RUN(test_correction_on_other_types_refused);
        TEST_RUN(test_type_tag1054_for_every_type);
        TEST_RUN(test_item_discount_exact_accepted);
        TEST_RUN(test_item_discount_off_by_one_kopeck_refused);
        TEST_RUN(test_item_discount_larger_than_the_line_refused);
        TEST_RUN(test_receipt_discount_spread_over_equal_lines);
        TEST_RUN(test_receipt_discount_spread_by_largest_remainder);
        TEST_RUN(test_receipt_discount_with_item_discount);
        TEST_RUN(test_receipt_discount_on_a_tolerated_line_parses_back);
        TEST_RUN(test_receipt_discount_larger_than_the_lines_refused);
        TEST_RUN(test_receipt_discount_spread_preserves_the_sum);
        TEST_RUN(test_vat_amounts_per_item_and_per_code);
        TEST_RUN(test_cashier_default_from_options);
        TEST_RUN(test_cashier_given_replaces_the_default);
        TEST_RUN(test_cashier_name);
        TEST_RUN(test_cashier_inn_checksum);
        TEST_RUN(test_cashier_default_checked);
        TEST_RUN(test_taxation_default_from_options);
        TEST_RUN(test_taxation_not_registered_refused);
        TEST_RUN(test_vat20_on_a_2026_sale_refused);
        TEST_RUN(test_vat20_on_a_2025_sale_allowed);
        TEST_RUN(test_vat20_ends_at_local_midnight);
        TEST_RUN(test_vat20_on_a_correction_of_2025_allowed);
        TEST_RUN(test_vat20_on_a_return_of_a_2025_sale_allowed);
        TEST_RUN(test_vat20_on_a_return_naming_its_original_is_flagged);
        TEST_RUN(test_vat20_on_a_2026_return_without_its_original_refused);
        TEST_RUN(test_original_only_on_returns);
        TEST_RUN(test_unknown_fields_named_at_every_level);
        TEST_RUN(test_unknown_fields_list_is_bounded);
        TEST_RUN(test_unknown_fields_ignored_with_ignore);
        TEST_RUN(test_stated_total_and_change_must_match);
        TEST_RUN(test_canonical_as_given_leaves_out_defaulted_taxation_and_cashier);
        TEST_RUN(test_canonical_as_given_keeps_what_the_body_gave);
        TEST_RUN(test_canonical_as_given_fingerprint_survives_a_changed_default_cashier);
        TEST_RUN(test_canonical_parses_back_for_every_new_field);
        TEST_RUN(test_enum_string_tables);
        TEST_RUN(test_enum_tables_leave_unnamed_values_and_ranges_unnamed);
        return 0;
}
