/* SPDX-License-Identifier: MIT */
#pragma once

/* The VAT codes (FFD tag 1199) as data: one table row per code, because the law changes them (2026 added
 * 22 % and 22/122, and ended 20 % and 20/120 for new sales). Lookups by our name, by the FFD value and by
 * the prototype's numeric vat_rate. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct VatCode {
        const char *name;       /* what the POS sends and the canonical receipt carries: "vat20" */
        unsigned tag1199;       /* FFD tag 1199 value */
        int percent;            /* the prototype's numeric vat_rate that selects this code, -1 if none */
        /* The VAT contained in a VAT-inclusive amount is amount * numerator / denominator: 20/120 for both
         * "20 %" and the calculated rate "20/120". denominator == 0: no VAT at all ("none"). */
        unsigned numerator;
        unsigned denominator;
        const char *label;      /* as printed on a receipt */
        /* The FFD tag of the receipt's sum for the code, 0 where it is not known: the VAT (1102, 1103,
         * 1106, 1107), or for 0 % and "none" the amount settled (1104, 1105). */
        unsigned tag_sum;
        /* The first day (YYYYMMDD) from which new settlements may no longer use the code, 0 if none; what
         * settles an earlier sale (a return, a correction) still may. successor says what to use instead,
         * for messages. */
        unsigned until;
        const char *successor;
} VatCode;

const VatCode *vat_from_name(const char *name);
const VatCode *vat_from_tag(unsigned tag1199);
/* Only the nominal rates map (0, 5, 7, 10, 20, 22); the calculated x/1xx ones and "none" need a name. */
const VatCode *vat_from_rate(int percent);

/* The whole table, for iteration. */
const VatCode *vat_table(size_t *ret_n);

/* The VAT contained in a VAT-inclusive amount in kopecks, rounded half away from zero; 0 for "none". */
int64_t vat_amount(const VatCode *code, int64_t amount);
