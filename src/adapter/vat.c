/* SPDX-License-Identifier: MIT */
/* The VAT code table (FFD tag 1199). Adding a code is adding a row here; nothing else switches on rates. */

#include <assert.h>
#include <stdlib.h>

#include "macro.h"
#include "vat.h"

/* FFD 1.2, tag 1199 («ставка НДС»): 1..6 as FFD-derived code tables and Yandex Pay's table give them
 * (https://pay.yandex.ru/docs/ru/custom/fns); 7..10 (5 %, 7 %, 5/105, 7/107) are inferred from the numbering
 * of 11/12, not seen in a primary text; 11 (22 %) and 12 (22/122): FNS order 08.12.2025 № ЕД-7-20/1050@,
 * table 8, applied from 2026-01-05 (https://www.klerk.ru/buh/news/674683/).
 *
 * 22 % replaces 20 % from 2026-01-01: Federal Law 28.11.2025 № 425-FZ. FNS letter 15.12.2025
 * № АБ-4-20/11248@ keeps 20 % (20/120) for a 2026 return of a 2025 sale and for the correction of a 2025
 * receipt (https://consdata.ru/2025/12/19/stavka-nds-22-s-2026-g-fns-poyasnila-kak-formirovat-kassovye-cheki):
 * hence "until" rather than dropping the rows; 1199 values 1 and 3 keep meaning 20 %.
 *
 * Receipt-level sums (tag_sum): 1102 VAT 20 %, 1103 VAT 10 %, 1104 settled at 0 %, 1105 settled without
 * VAT, 1106 VAT 20/120, 1107 VAT 10/110 (tag names of FFD-derived dictionaries; Yandex OFD's table,
 * https://yandex.ru/support/ofd-client/ru/parameter-table). The tags for 5 %, 7 %, 5/105, 7/107, 22 % and
 * 22/122 were not found: 0 here; a register computes its receipt sums from the items' 1199 itself. */

#define VAT_2026_SUCCESSOR "22 (vat22) or 22/122 (vat122)"

static const VatCode vat_codes[] = {
        /* name      1199  vat_rate  fraction   label           sum   until     successor */
        { "vat20",   1,    20,       20, 120,   "НДС 20%",      1102, 20260101, VAT_2026_SUCCESSOR },
        { "vat10",   2,    10,       10, 110,   "НДС 10%",      1103, 0,        NULL },
        { "vat120",  3,    -1,       20, 120,   "НДС 20/120",   1106, 20260101, VAT_2026_SUCCESSOR },
        { "vat110",  4,    -1,       10, 110,   "НДС 10/110",   1107, 0,        NULL },
        { "vat0",    5,    0,        0,  100,   "НДС 0%",       1104, 0,        NULL },
        { "none",    6,    -1,       0,  0,     "Без НДС",      1105, 0,        NULL },
        { "vat5",    7,    5,        5,  105,   "НДС 5%",       0,    0,        NULL },
        { "vat7",    8,    7,        7,  107,   "НДС 7%",       0,    0,        NULL },
        { "vat105",  9,    -1,       5,  105,   "НДС 5/105",    0,    0,        NULL },
        { "vat107",  10,   -1,       7,  107,   "НДС 7/107",    0,    0,        NULL },
        { "vat22",   11,   22,       22, 122,   "НДС 22%",      0,    0,        NULL }, /* from 2026 */
        { "vat122",  12,   -1,       22, 122,   "НДС 22/122",   0,    0,        NULL }, /* from 2026 */
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
