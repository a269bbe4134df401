/* SPDX-License-Identifier: MIT */
/* The VAT code table (FFD tag 1199). Adding a code is adding a row here; nothing else switches on rates. */

#include <assert.h>
#include <stdlib.h>

#include "macro.h"
#include "vat.h"

static const VatCode vat_codes[] = {
        /* name      1199  vat_rate  fraction   label */
        { "vat20",   1,    20,       20, 120,   "НДС 20%" },
        { "vat10",   2,    10,       10, 110,   "НДС 10%" },
        { "vat120",  3,    -1,       20, 120,   "НДС 20/120" },
        { "vat110",  4,    -1,       10, 110,   "НДС 10/110" },
        { "vat0",    5,    0,        0,  100,   "НДС 0%" },
        { "none",    6,    -1,       0,  0,     "Без НДС" },
        { "vat5",    7,    5,        5,  105,   "НДС 5%" },
        { "vat7",    8,    7,        7,  107,   "НДС 7%" },
        { "vat105",  9,    -1,       5,  105,   "НДС 5/105" },
        { "vat107",  10,   -1,       7,  107,   "НДС 7/107" },
        { "vat22",   11,   22,       22, 122,   "НДС 22%" }, /* from 2026 */
        { "vat122",  12,   -1,       22, 122,   "НДС 22/122" }, /* from 2026 */
};

const VatCode *vat_from_name(const char *name) {
        assert(name);

        for (size_t i = 0; i < ELEMENTSOF(vat_codes); i++)
                if (streq(vat_codes[i].name, name))
                        return vat_codes + i;
        return NULL;
}

const VatCode *vat_from_tag(unsigned tag1199) {
        for (size_t i = 0; i < ELEMENTSOF(vat_codes); i++)
                if (vat_codes[i].tag1199 == tag1199)
                        return vat_codes + i;
        return NULL;
}

const VatCode *vat_from_rate(int percent) {
        if (percent < 0)
                return NULL;

        for (size_t i = 0; i < ELEMENTSOF(vat_codes); i++)
                if (vat_codes[i].percent == percent)
                        return vat_codes + i;
        return NULL;
}

const VatCode *vat_table(size_t *ret_n) {
        assert(ret_n);

        *ret_n = ELEMENTSOF(vat_codes);
        return vat_codes;
}

int64_t vat_amount(const VatCode *code, int64_t amount) {
        uint64_t a, whole, part, rem;

        assert(code);

        if (code->denominator == 0 || code->numerator == 0)
                return 0;

        /* a * n / d split as (a / d) * n + (a % d) * n / d, so that nothing overflows and no 128-bit type
         * is needed (32-bit targets have none). */
        a = amount < 0 ? (uint64_t) -(amount + 1) + 1 : (uint64_t) amount;
        whole = a / code->denominator * code->numerator;
        part = a % code->denominator * code->numerator;
        rem = part % code->denominator;
        whole += part / code->denominator + (rem * 2 >= code->denominator);

        return amount < 0 ? -(int64_t) whole : (int64_t) whole;
}
