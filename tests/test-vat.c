/* SPDX-License-Identifier: MIT */
/* The VAT table: lookups by name, FFD tag 1199 and the prototype's vat_rate, the 2026 codes, VAT amounts. */

#include "tests.h"
#include "macro.h"
#include "vat.h"

/* The FFD tag 1199 values as the law lists them, written out independently of the table under test. */
static const struct {
        const char *name;
        unsigned tag;
} ffd_1199[] = {
        { "vat20", 1 },  { "vat10", 2 },   { "vat120", 3 }, { "vat110", 4 },
        { "vat0", 5 },   { "none", 6 },    { "vat5", 7 },   { "vat7", 8 },
        { "vat105", 9 }, { "vat107", 10 }, { "vat22", 11 }, { "vat122", 12 },
};

static void test_every_name_has_its_ffd_tag(void) {
        for (size_t i = 0; i < ELEMENTSOF(ffd_1199); i++) {
                const VatCode *c = vat_from_name(ffd_1199[i].name);

                fprintf(stderr, "   %s\n", ffd_1199[i].name);
                ASSERT_NOT_NULL(c);
                ASSERT_STREQ(c->name, ffd_1199[i].name);
                ASSERT_EQ(c->tag1199, ffd_1199[i].tag);
                ASSERT_TRUE(vat_from_tag(ffd_1199[i].tag) == c);
        }
}

static void test_table_has_exactly_the_listed_codes(void) {
        size_t n;
        const VatCode *t = vat_table(&n);

        ASSERT_EQ(n, ELEMENTSOF(ffd_1199));
        for (size_t i = 0; i < n; i++) {
                ASSERT_TRUE(vat_from_name(t[i].name) == t + i); /* names unique */
                ASSERT_TRUE(vat_from_tag(t[i].tag1199) == t + i); /* tags unique */
                ASSERT_NOT_NULL(t[i].label);
                ASSERT_TRUE(t[i].numerator <= t[i].denominator);
        }
}

static void test_unknown_names_and_tags(void) {
        ASSERT_NULL(vat_from_name("vat15"));
        ASSERT_NULL(vat_from_name("VAT20"));
        ASSERT_NULL(vat_from_name(""));
        ASSERT_NULL(vat_from_name("vat20 "));
        ASSERT_NULL(vat_from_tag(0));
        ASSERT_NULL(vat_from_tag(13));
}

static void test_2026_codes(void) {
        const VatCode *c;

        c = vat_from_name("vat22");
        ASSERT_NOT_NULL(c);
        ASSERT_EQ(c->tag1199, 11);
        ASSERT_EQ(c->percent, 22);
        ASSERT_EQ(c->numerator, 22);
        ASSERT_EQ(c->denominator, 122);
        ASSERT_STREQ(c->label, "НДС 22%");

        c = vat_from_name("vat122");
        ASSERT_NOT_NULL(c);
        ASSERT_EQ(c->tag1199, 12);
        ASSERT_EQ(c->percent, -1);
        ASSERT_EQ(c->numerator, 22);
        ASSERT_EQ(c->denominator, 122);
        ASSERT_STREQ(c->label, "НДС 22/122");
}

/* From 2026-01-01 new sales use 22 %; 20 % stays in the table for what settles a 2025 sale. */
static void test_20_percent_ends_for_new_sales_in_2026(void) {
        size_t n;
        const VatCode *t = vat_table(&n);

        for (size_t i = 0; i < n; i++) {
                bool ends = streq(t[i].name, "vat20") || streq(t[i].name, "vat120");

                fprintf(stderr, "   %s\n", t[i].name);
                ASSERT_EQ(t[i].until, ends ? 20260101 : 0);
                if (ends)
                        ASSERT_STREQ(t[i].successor, "22 (vat22) or 22/122 (vat122)");
                else
                        ASSERT_NULL(t[i].successor);
        }
        /* Still found by every lookup: returns and corrections of 2025 need them. */
        ASSERT_TRUE(vat_from_rate(20) == vat_from_name("vat20"));
        ASSERT_TRUE(vat_from_tag(3) == vat_from_name("vat120"));
}

/* The receipt-level sum tags that are known; 0 for the codes whose tag was not found. */
static void test_receipt_sum_tags(void) {
        static const struct {
                const char *name;
                unsigned tag;
        } sums[] = {
                { "vat20", 1102 }, { "vat10", 1103 }, { "vat0", 1104 }, { "none", 1105 }, { "vat120", 1106 },
                { "vat110", 1107 }, { "vat5", 0 }, { "vat7", 0 }, { "vat105", 0 }, { "vat107", 0 },
                { "vat22", 0 }, { "vat122", 0 },
        };

        for (size_t i = 0; i < ELEMENTSOF(sums); i++)
                ASSERT_EQ(vat_from_name(sums[i].name)->tag_sum, sums[i].tag);
}

static void test_rate_maps_to_nominal_codes(void) {
        ASSERT_TRUE(vat_from_rate(0) == vat_from_name("vat0"));
        ASSERT_TRUE(vat_from_rate(5) == vat_from_name("vat5"));
        ASSERT_TRUE(vat_from_rate(7) == vat_from_name("vat7"));
        ASSERT_TRUE(vat_from_rate(10) == vat_from_name("vat10"));
        ASSERT_TRUE(vat_from_rate(20) == vat_from_name("vat20"));
        ASSERT_TRUE(vat_from_rate(22) == vat_from_name("vat22"));
}

static void test_rate_does_not_map_to_calculated_or_unknown_codes(void) {
        ASSERT_NULL(vat_from_rate(-1));
        ASSERT_NULL(vat_from_rate(18));
        ASSERT_NULL(vat_from_rate(120));
        ASSERT_NULL(vat_from_rate(122));
        ASSERT_NULL(vat_from_rate(6));
}

static void test_none_is_without_vat(void) {
        const VatCode *c = vat_from_name("none");

        ASSERT_NOT_NULL(c);
        ASSERT_EQ(c->denominator, 0);
        ASSERT_STREQ(c->label, "Без НДС");
        ASSERT_EQ(vat_amount(c, 150000), 0);
}

static void test_amount_is_the_included_vat_rounded_half_up(void) {
        ASSERT_EQ(vat_amount(vat_from_name("vat20"), 12000), 2000);
        ASSERT_EQ(vat_amount(vat_from_name("vat120"), 12000), 2000);
        ASSERT_EQ(vat_amount(vat_from_name("vat20"), 100), 17);         /* 16.67 */
        ASSERT_EQ(vat_amount(vat_from_name("vat20"), 3), 1);            /* 0.5 */
        ASSERT_EQ(vat_amount(vat_from_name("vat20"), 2), 0);            /* 0.33 */
        ASSERT_EQ(vat_amount(vat_from_name("vat10"), 11000), 1000);
        ASSERT_EQ(vat_amount(vat_from_name("vat22"), 12200), 2200);
        ASSERT_EQ(vat_amount(vat_from_name("vat122"), 1000), 180);      /* 180.33 */
        ASSERT_EQ(vat_amount(vat_from_name("vat5"), 10500), 500);
        ASSERT_EQ(vat_amount(vat_from_name("vat7"), 10700), 700);
        ASSERT_EQ(vat_amount(vat_from_name("vat0"), 10000), 0);
        ASSERT_EQ(vat_amount(vat_from_name("vat20"), -100), -17);
        ASSERT_EQ(vat_amount(vat_from_name("vat20"), -3), -1);
}

static void test_amount_does_not_overflow(void) {
        /* INT64_MAX * 20 does not fit 64 bits; the result, a sixth of it, does. */
        ASSERT_EQ(vat_amount(vat_from_name("vat20"), INT64_MAX), INT64_C(1537228672809129301));
        ASSERT_EQ(vat_amount(vat_from_name("vat20"), INT64_MIN), INT64_C(-1537228672809129301));
        ASSERT_EQ(vat_amount(vat_from_name("vat22"), INT64_MAX), INT64_C(1663231023039385801));
}

int main(void) {
        TEST_RUN(test_every_name_has_its_ffd_tag);
        TEST_RUN(test_table_has_exactly_the_listed_codes);
        TEST_RUN(test_unknown_names_and_tags);
        TEST_RUN(test_2026_codes);
        TEST_RUN(test_20_percent_ends_for_new_sales_in_2026);
        TEST_RUN(test_receipt_sum_tags);
        TEST_RUN(test_rate_maps_to_nominal_codes);
        TEST_RUN(test_rate_does_not_map_to_calculated_or_unknown_codes);
        TEST_RUN(test_none_is_without_vat);
        TEST_RUN(test_amount_is_the_included_vat_rounded_half_up);
        TEST_RUN(test_amount_does_not_overflow);
        return 0;
}
