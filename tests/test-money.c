/* SPDX-License-Identifier: MIT */
/* Exact amounts: decimal text to scaled int64 and back, every edge of the grammar and of int64. */

#include <errno.h>
#include <stdint.h>

#include "json-util.h"
#include "money.h"
#include "tests.h"

static int64_t parse_ok(const char *text, unsigned scale) {
        int64_t v = 0x5a5a;

        ASSERT_OK(money_parse_decimal(text, scale, &v));
        return v;
}

static int parse_err(const char *text, unsigned scale) {
        int64_t v = 0x5a5a;
        int r;

        r = money_parse_decimal(text, scale, &v);
        ASSERT_TRUE(r < 0);
        ASSERT_EQ(v, 0x5a5a); /* a failure leaves the output alone */
        return r;
}

/* Parses one JSON value strictly, the way receipt bodies are parsed, wrapped in an array because json-c
 * cannot tell where a bare top-level number ends. */
static json_object *json_value(const char *text) {
        _cleanup_(json_tokener_freep) json_tokener *tok = json_tokener_new();
        _cleanup_(json_object_putp) json_object *a = NULL;
        _cleanup_free_ char *wrapped = NULL;

        ASSERT_NOT_NULL(tok);
        ASSERT_TRUE(asprintf(&wrapped, "[%s]", text) >= 0);
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        a = json_tokener_parse_ex(tok, wrapped, (int) strlen(wrapped));
        ASSERT_NOT_NULL(a);
        ASSERT_EQ(json_object_array_length(a), 1);
        return json_object_get(json_object_array_get_idx(a, 0));
}

static int from_json(const char *text, unsigned scale, int64_t *ret) {
        _cleanup_(json_object_putp) json_object *v = json_value(text);

        return money_from_json(v, scale, ret);
}

static void test_parse_plain_values(void) {
        ASSERT_EQ(parse_ok("0", 2), 0);
        ASSERT_EQ(parse_ok("0.1", 2), 10);
        ASSERT_EQ(parse_ok("0.10", 2), 10);
        ASSERT_EQ(parse_ok("0.01", 2), 1);
        ASSERT_EQ(parse_ok("1500", 2), 150000);
        ASSERT_EQ(parse_ok("1500.5", 2), 150050);
        ASSERT_EQ(parse_ok("1500.50", 2), 150050);
        ASSERT_EQ(parse_ok("0.29", 2), 29); /* 0.29 * 100 is 28.999999999999996 in double */
        ASSERT_EQ(parse_ok("1.250", 3), 1250);
        ASSERT_EQ(parse_ok("0.001", 3), 1);
        ASSERT_EQ(parse_ok("7", 0), 7);
        ASSERT_EQ(parse_ok("10", 0), 10);
}

static void test_parse_negative_values(void) {
        ASSERT_EQ(parse_ok("-1", 2), -100);
        ASSERT_EQ(parse_ok("-0.05", 2), -5);
        ASSERT_EQ(parse_ok("-0", 2), 0);
        ASSERT_EQ(parse_ok("-0.00", 2), 0);
}

static void test_parse_rejects_more_decimals_than_scale(void) {
        ASSERT_ERROR(parse_err("0.105", 2), EDOM);
        ASSERT_ERROR(parse_err("1.001", 2), EDOM);
        /* Never rounded, not even when the extra digits are zeros. */
        ASSERT_ERROR(parse_err("1500.000", 2), EDOM);
        ASSERT_ERROR(parse_err("0.0005", 3), EDOM);
        ASSERT_ERROR(parse_err("1.5", 0), EDOM);
        ASSERT_ERROR(parse_err("-0.001", 2), EDOM);
}

static void test_parse_rejects_bad_syntax(void) {
        static const char *const bad[] = {
                "", "-", "+1", ".5", "5.", "-.5", "00.5", "007", "-01", "1e2", "1E2", "1.5e3", "1.5E-3",
                "NaN", "nan", "Infinity", "-Infinity", "inf", "0x10", "0X1A", "1 ", " 1", "1,5", "1.2.3",
                "1_000", "--1", "1-", "abc", "\xd9\xa1", /* ARABIC-INDIC DIGIT ONE */
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                fprintf(stderr, "   rejecting '%s'\n", bad[i]);
                ASSERT_ERROR(parse_err(bad[i], 2), EINVAL);
        }
}

static void test_parse_reports_syntax_before_decimals_and_decimals_before_range(void) {
        ASSERT_ERROR(parse_err("1.234x", 2), EINVAL);
        ASSERT_ERROR(parse_err("99999999999999999999.999", 2), EDOM);
}

static void test_parse_int64_boundaries(void) {
        /* INT64_MAX is 9223372036854775807: at scale 2 the largest amount is 92233720368547758.07. */
        ASSERT_EQ(parse_ok("92233720368547758.07", 2), INT64_MAX);
        ASSERT_ERROR(parse_err("92233720368547758.08", 2), ERANGE);
        ASSERT_ERROR(parse_err("92233720368547759", 2), ERANGE);
        ASSERT_EQ(parse_ok("92233720368547758", 2), INT64_C(9223372036854775800));
        ASSERT_EQ(parse_ok("-92233720368547758.08", 2), INT64_MIN);
        ASSERT_ERROR(parse_err("-92233720368547758.09", 2), ERANGE);
        ASSERT_EQ(parse_ok("9223372036854775807", 0), INT64_MAX);
        ASSERT_ERROR(parse_err("9223372036854775808", 0), ERANGE);
        ASSERT_EQ(parse_ok("-9223372036854775808", 0), INT64_MIN);
        ASSERT_ERROR(parse_err("-9223372036854775809", 0), ERANGE);
        ASSERT_ERROR(parse_err("100000000000000000000000000000", 2), ERANGE);
        ASSERT_EQ(parse_ok("9.223372036854775807", 18), INT64_MAX);
        ASSERT_ERROR(parse_err("10", 18), ERANGE);
}

static void test_from_json_integer_is_exact(void) {
        int64_t v;

        ASSERT_OK(from_json("1500", 2, &v));
        ASSERT_EQ(v, 150000);
        ASSERT_OK(from_json("-3", 3, &v));
        ASSERT_EQ(v, -3000);
        ASSERT_OK(from_json("20", 0, &v));
        ASSERT_EQ(v, 20);
        ASSERT_OK(from_json("92233720368547758", 2, &v));
        ASSERT_EQ(v, INT64_C(9223372036854775800));
        ASSERT_ERROR(from_json("92233720368547759", 2, &v), ERANGE);
        ASSERT_ERROR(from_json("-92233720368547759", 2, &v), ERANGE);
}

static void test_from_json_integer_clamped_by_json_c_is_out_of_range(void) {
        int64_t v;

        /* json-c turns these into INT64_MAX/UINT64_MAX/INT64_MIN without telling anyone. */
        ASSERT_ERROR(from_json("99999999999999999999", 0, &v), ERANGE);
        ASSERT_ERROR(from_json("9223372036854775808", 0, &v), ERANGE);
        ASSERT_ERROR(from_json("-99999999999999999999", 0, &v), ERANGE);
        ASSERT_ERROR(from_json("9223372036854775807", 0, &v), ERANGE);
}

static void test_from_json_double_uses_the_original_text(void) {
        _cleanup_(json_object_putp) json_object *d = json_value("1500.10");
        int64_t v;

        /* The premise: json-c's tokener keeps a double's text and hands it back. */
        ASSERT_TRUE(json_object_is_type(d, json_type_double));
        ASSERT_STREQ(json_object_to_json_string(d), "1500.10");

        ASSERT_OK(from_json("1500.0", 2, &v));
        ASSERT_EQ(v, 150000);
        ASSERT_OK(from_json("1500.00", 2, &v));
        ASSERT_EQ(v, 150000);
        ASSERT_OK(from_json("0.1", 2, &v));
        ASSERT_EQ(v, 10);
        ASSERT_OK(from_json("0.29", 2, &v));
        ASSERT_EQ(v, 29);
        ASSERT_OK(from_json("-0.05", 2, &v));
        ASSERT_EQ(v, -5);
        /* 18 significant digits: more than a double holds, exact here. */
        ASSERT_OK(from_json("1234567890123456.78", 2, &v));
        ASSERT_EQ(v, INT64_C(123456789012345678));
        ASSERT_OK(from_json("0.333", 3, &v));
        ASSERT_EQ(v, 333);
}

static void test_from_json_double_rejects_what_the_grammar_rejects(void) {
        int64_t v;

        ASSERT_ERROR(from_json("0.105", 2, &v), EDOM);
        ASSERT_ERROR(from_json("1e2", 2, &v), EINVAL);
        ASSERT_ERROR(from_json("1.5E+3", 2, &v), EINVAL);
        ASSERT_ERROR(from_json("NaN", 2, &v), EINVAL);
        ASSERT_ERROR(from_json("Infinity", 2, &v), EINVAL);
        ASSERT_ERROR(from_json("-Infinity", 2, &v), EINVAL);
        /* json-c accepts these even in strict mode; JSON does not. */
        ASSERT_ERROR(from_json("5.", 2, &v), EINVAL);
        ASSERT_ERROR(from_json("00.5", 2, &v), EINVAL);
        ASSERT_ERROR(from_json("92233720368547758.08", 2, &v), ERANGE);
        ASSERT_ERROR(from_json("20.5", 0, &v), EDOM);
}

static void test_from_json_string_holding_a_decimal(void) {
        int64_t v;

        ASSERT_OK(from_json("\"1500.50\"", 2, &v));
        ASSERT_EQ(v, 150050);
        ASSERT_OK(from_json("\"1500\"", 2, &v));
        ASSERT_EQ(v, 150000);
        ASSERT_OK(from_json("\"2.5\"", 3, &v));
        ASSERT_EQ(v, 2500);
        ASSERT_ERROR(from_json("\"0.105\"", 2, &v), EDOM);
        ASSERT_ERROR(from_json("\"\"", 2, &v), EINVAL);
        ASSERT_ERROR(from_json("\" 1\"", 2, &v), EINVAL);
        ASSERT_ERROR(from_json("\"1e2\"", 2, &v), EINVAL);
        ASSERT_ERROR(from_json("\"NaN\"", 2, &v), EINVAL);
        ASSERT_ERROR(from_json("\"0x10\"", 2, &v), EINVAL);
        ASSERT_ERROR(from_json("\"+1\"", 2, &v), EINVAL);
        /* Without the length check this would read as "1". */
        ASSERT_ERROR(from_json("\"1\\u00005\"", 2, &v), EINVAL);
        ASSERT_ERROR(from_json("\"92233720368547758.08\"", 2, &v), ERANGE);
}

static void test_from_json_wrong_type(void) {
        int64_t v;

        ASSERT_ERROR(money_from_json(NULL, 2, &v), EMEDIUMTYPE);
        ASSERT_ERROR(from_json("null", 2, &v), EMEDIUMTYPE);
        ASSERT_ERROR(from_json("true", 2, &v), EMEDIUMTYPE);
        ASSERT_ERROR(from_json("false", 2, &v), EMEDIUMTYPE);
        ASSERT_ERROR(from_json("[1]", 2, &v), EMEDIUMTYPE);
        ASSERT_ERROR(from_json("{\"a\":1}", 2, &v), EMEDIUMTYPE);
}

static void test_format(void) {
        char buf[MONEY_FORMAT_MAX];

        ASSERT_STREQ(money_format(buf, sizeof buf, 150000, 2), "1500.00");
        ASSERT_STREQ(money_format(buf, sizeof buf, 150050, 2), "1500.50");
        ASSERT_STREQ(money_format(buf, sizeof buf, -5, 2), "-0.05");
        ASSERT_STREQ(money_format(buf, sizeof buf, 0, 2), "0.00");
        ASSERT_STREQ(money_format(buf, sizeof buf, 1, 2), "0.01");
        ASSERT_STREQ(money_format(buf, sizeof buf, 1250, 3), "1.250");
        ASSERT_STREQ(money_format(buf, sizeof buf, 1, 3), "0.001");
        ASSERT_STREQ(money_format(buf, sizeof buf, 7, 0), "7");
        ASSERT_STREQ(money_format(buf, sizeof buf, -7, 0), "-7");
        ASSERT_STREQ(money_format(buf, sizeof buf, 0, 0), "0");
        ASSERT_STREQ(MONEY_FORMAT(-100, 2), "-1.00");
}

static void test_format_extremes_fit_money_format_max(void) {
        char buf[MONEY_FORMAT_MAX];

        ASSERT_STREQ(money_format(buf, sizeof buf, INT64_MAX, 2), "92233720368547758.07");
        ASSERT_STREQ(money_format(buf, sizeof buf, INT64_MIN, 2), "-92233720368547758.08");
        ASSERT_STREQ(money_format(buf, sizeof buf, INT64_MIN, 0), "-9223372036854775808");
        ASSERT_STREQ(money_format(buf, sizeof buf, INT64_MIN, 18), "-9.223372036854775808");
        ASSERT_STREQ(money_format(buf, sizeof buf, -1, 18), "-0.000000000000000001");
        ASSERT_EQ(strlen("-0.000000000000000001") + 1, MONEY_FORMAT_MAX);
}

static void test_format_refuses_a_short_buffer(void) {
        char buf[8];

        ASSERT_STREQ(money_format(buf, 8, 150000, 2), "1500.00"); /* 7 characters and the NUL */
        ASSERT_NULL(money_format(buf, 7, 150000, 2));
        ASSERT_NULL(money_format(buf, 0, 0, 0));
        ASSERT_STREQ(money_format(buf, 2, 0, 0), "0");
}

static void test_format_and_parse_round_trip(void) {
        static const int64_t values[] = {
                0, 1, -1, 9, 10, 99, 100, 101, 150050, -150050, INT64_MAX, INT64_MIN,
        };

        for (unsigned scale = 0; scale <= MONEY_SCALE_MAX; scale++)
                for (size_t i = 0; i < ELEMENTSOF(values); i++) {
                        char buf[MONEY_FORMAT_MAX];
                        int64_t v;

                        ASSERT_NOT_NULL(money_format(buf, sizeof buf, values[i], scale));
                        ASSERT_OK(money_parse_decimal(buf, scale, &v));
                        ASSERT_EQ(v, values[i]);
                }
}

static void mul_div(uint64_t a, uint64_t b, uint64_t c, uint64_t q, uint64_t r) {
        uint64_t got_q = 0, got_r = 0;

        ASSERT_OK(money_mul_div(a, b, c, &got_q, &got_r));
        ASSERT_EQ_U(got_q, q);
        ASSERT_EQ_U(got_r, r);
}

static void test_mul_div_is_exact_where_the_product_overflows(void) {
        mul_div(0, 5, 7, 0, 0);
        mul_div(10000, 3333, 9999, 3333, 3333);   /* 100.00 over a third of 99.99 */
        mul_div(7, 5, 1, 35, 0);
        /* (2^64 - 1)^2 / (2^64 - 1) = 2^64 - 1, the product needing all 128 bits */
        mul_div(UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, 0);
        /* INT64_MAX * (INT64_MAX - 1) / INT64_MAX: the remainder is what a double would lose */
        mul_div(INT64_MAX, INT64_MAX - 1, INT64_MAX, INT64_MAX - 1, 0);
        mul_div(INT64_MAX - 1, INT64_MAX - 2, INT64_MAX, INT64_MAX - 3, 2);
        /* 2^63 * 3 / 2^62 = 6, the product crossing the 64-bit boundary exactly */
        mul_div(UINT64_C(1) << 63, 3, UINT64_C(1) << 62, 6, 0);
        /* the shifted remainder passes 2^64 during the division */
        mul_div(UINT64_MAX, 2, UINT64_MAX - 1, 2, 2);
        mul_div(UINT64_C(0xfffffffffffffff0), UINT64_C(0xffffffff), UINT64_C(0xfffffffffffffff1),
                UINT64_C(0xfffffffe), UINT64_C(0xfffffffefffffff2));
}

static void test_mul_div_refuses_a_quotient_beyond_64_bits(void) {
        uint64_t q = 42;

        ASSERT_ERROR(money_mul_div(UINT64_MAX, 2, 1, &q, NULL), ERANGE);
        ASSERT_ERROR(money_mul_div(UINT64_C(1) << 32, UINT64_C(1) << 32, 1, &q, NULL), ERANGE);
        ASSERT_EQ_U(q, 42); /* a failure leaves the output alone */
        ASSERT_OK(money_mul_div(UINT64_C(1) << 32, (UINT64_C(1) << 32) - 1, 1, &q, NULL));
        ASSERT_EQ_U(q, UINT64_MAX - UINT32_MAX);
}

/* Against the compiler's 128-bit arithmetic where there is one, over a pseudo-random spread of operands. */
static void test_mul_div_agrees_with_128_bit_arithmetic(void) {
#ifdef __SIZEOF_INT128__
        uint64_t x = UINT64_C(0x9e3779b97f4a7c15);

        for (unsigned i = 0; i < 100000; i++) {
                uint64_t a, b, c, q = 0, r = 0;
                unsigned __int128 p;

                /* xorshift64, shifted by varying amounts so that small operands come up as well */
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                a = x >> (i % 64);
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                b = x >> (i / 64 % 64);
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                c = (x >> (i / 7 % 64)) | 1;

                p = (unsigned __int128) a * b;
                if (p / c > UINT64_MAX) {
                        ASSERT_ERROR(money_mul_div(a, b, c, &q, &r), ERANGE);
                        continue;
                }
                ASSERT_OK(money_mul_div(a, b, c, &q, &r));
                ASSERT_EQ_U(q, (uint64_t) (p / c));
                ASSERT_EQ_U(r, (uint64_t) (p % c));
        }
#else
        fprintf(stderr, "   no 128-bit type here: covered by the fixed cases only\n");
#endif
}

int main(void) {
        TEST_RUN(test_parse_plain_values);
        TEST_RUN(test_parse_negative_values);
        TEST_RUN(test_parse_rejects_more_decimals_than_scale);
        TEST_RUN(test_parse_rejects_bad_syntax);
        TEST_RUN(test_parse_reports_syntax_before_decimals_and_decimals_before_range);
        TEST_RUN(test_parse_int64_boundaries);
        TEST_RUN(test_from_json_integer_is_exact);
        TEST_RUN(test_from_json_integer_clamped_by_json_c_is_out_of_range);
        TEST_RUN(test_from_json_double_uses_the_original_text);
        TEST_RUN(test_from_json_double_rejects_what_the_grammar_rejects);
        TEST_RUN(test_from_json_string_holding_a_decimal);
        TEST_RUN(test_from_json_wrong_type);
        TEST_RUN(test_format);
        TEST_RUN(test_format_extremes_fit_money_format_max);
        TEST_RUN(test_format_refuses_a_short_buffer);
        TEST_RUN(test_format_and_parse_round_trip);
        TEST_RUN(test_mul_div_is_exact_where_the_product_overflows);
        TEST_RUN(test_mul_div_refuses_a_quotient_beyond_64_bits);
        TEST_RUN(test_mul_div_agrees_with_128_bit_arithmetic);
        return 0;
}
