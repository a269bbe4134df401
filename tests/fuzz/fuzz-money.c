/* SPDX-License-Identifier: MIT */
/* Fuzz target for the money parser (money.h, every amount and quantity of a receipt): a decimal parses
 * exactly or fails with a documented error, formats back to text that parses to the same value, and a JSON
 * number agrees with its text; money_mul_div() agrees with 128-bit arithmetic. The first byte picks: 0..18
 * a scale for the text that follows, 19 money_mul_div() on the next 24 bytes. */

#include <errno.h>
#include <json-c/json.h>
#include <string.h>

#include "fuzz.h"
#include "json-util.h"
#include "macro.h"
#include "money.h"

static void check_mul_div(const uint8_t *data, size_t size) {
        uint64_t a, b, c, q = 0, rem = 0;
        unsigned __int128 p;
        int r;

        if (size < 3 * sizeof(uint64_t))
                return;
        memcpy(&a, data, sizeof a);
        memcpy(&b, data + 8, sizeof b);
        memcpy(&c, data + 16, sizeof c);
        if (c == 0) /* outside the contract: c > 0 */
                return;

        p = (unsigned __int128) a * b;
        r = money_mul_div(a, b, c, &q, &rem);
        if (p / c > UINT64_MAX) {
                FUZZ_CHECK(r == -ERANGE);
                return;
        }
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(q == (uint64_t) (p / c) && rem == (uint64_t) (p % c));
}

static void check_decimal(const char *text, unsigned scale) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        char buf[MONEY_FORMAT_MAX], small[4];
        int64_t v = 0, again = 0, from_json = 0;
        int r, k;

        r = money_parse_decimal(text, scale, &v);
        FUZZ_CHECK(IN_SET(r, 0, -EINVAL, -EDOM, -ERANGE));
        if (r == 0) {
                FUZZ_CHECK(money_format(buf, sizeof buf, v, scale));
                FUZZ_CHECK(money_parse_decimal(buf, scale, &again) == 0 && again == v);
                /* Too small a buffer is refused, never overrun (ASan watches). */
                if (strlen(buf) >= sizeof small)
                        FUZZ_CHECK(!money_format(small, sizeof small, v, scale));
        }

        /* The same text as a JSON value: where both accept it, they agree. */
        o = json_tokener_parse(text);
        k = money_from_json(o, scale, &from_json);
        FUZZ_CHECK(IN_SET(k, 0, -EINVAL, -EDOM, -ERANGE, -EMEDIUMTYPE));
        if (k == 0 && r == 0 && !json_object_is_type(o, json_type_string))
                FUZZ_CHECK(from_json == v);
        if (k == 0 && json_object_is_type(o, json_type_string)) {
                FUZZ_CHECK(money_parse_decimal(json_object_get_string(o), scale, &again) == 0);
                FUZZ_CHECK(again == from_json);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *text = NULL;
        unsigned mode;

        if (size < 1 || size > 4096)
                return 0;
        mode = data[0] % (MONEY_SCALE_MAX + 2);
        if (mode == MONEY_SCALE_MAX + 1) {
                check_mul_div(data + 1, size - 1);
                return 0;
        }

        text = strndup((const char *) data + 1, size - 1);
        if (!text)
                return 0;
        check_decimal(text, mode);
        return 0;
}
