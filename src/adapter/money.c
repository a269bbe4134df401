/* SPDX-License-Identifier: MIT */
/* Exact decimal amounts. Every amount is parsed from its decimal text into a scaled int64: a double would
 * turn 0.29 into 0.28999999999999998 and a kopeck would be lost or invented somewhere down the line. */

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "macro.h"
#include "money.h"

static bool char_is_digit(char c) {
        return c >= '0' && c <= '9';
}

int money_parse_decimal(const char *text, unsigned scale, int64_t *ret) {
        const char *p, *int_begin, *frac_begin = NULL;
        size_t n_int, n_frac = 0;
        uint64_t magnitude = 0, limit;
        bool negative = false;

        assert(text);
        assert(scale <= MONEY_SCALE_MAX);
        assert(ret);

        /* First the whole grammar, so that "1.5x" is a syntax error and not "too many decimals". */
        p = text;
        if (*p == '-') {
                negative = true;
                p++;
        }
        int_begin = p;
        while (char_is_digit(*p))
                p++;
        n_int = (size_t) (p - int_begin);
        if (n_int == 0)
                return -EINVAL;
        if (n_int > 1 && int_begin[0] == '0')
                return -EINVAL; /* JSON forbids leading zeros; "007" is likelier a mistake than a price */
        if (*p == '.') {
                frac_begin = ++p;
                while (char_is_digit(*p))
                        p++;
                n_frac = (size_t) (p - frac_begin);
                if (n_frac == 0)
                        return -EINVAL;
        }
        if (*p != '\0')
                return -EINVAL;

        if (n_frac > scale)
                return -EDOM;

        /* A negative value may reach one further than a positive one (INT64_MIN). */
        limit = negative ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;

        for (size_t i = 0; i < n_int + scale; i++) {
                unsigned d;

                if (i < n_int)
                        d = (unsigned) (int_begin[i] - '0');
                else if (i - n_int < n_frac)
                        d = (unsigned) (frac_begin[i - n_int] - '0');
                else
                        d = 0; /* pad the fraction up to the scale: "1.5" at scale 2 is 150 */

                if (magnitude > (limit - d) / 10)
                        return -ERANGE;
                magnitude = magnitude * 10 + d;
        }

        if (negative)
                *ret = magnitude == (uint64_t) INT64_MAX + 1 ? INT64_MIN : -(int64_t) magnitude;
        else
                *ret = (int64_t) magnitude;
        return 0;
}

int money_from_json(json_object *v, unsigned scale, int64_t *ret) {
        assert(scale <= MONEY_SCALE_MAX);
        assert(ret);

        switch (json_object_get_type(v)) {

        case json_type_int: {
                int64_t i = json_object_get_int64(v), factor = 1, r;

                if (i == INT64_MAX || i == INT64_MIN)
                        return -ERANGE;
                for (unsigned k = 0; k < scale; k++)
                        factor *= 10;
                if (__builtin_mul_overflow(i, factor, &r))
                        return -ERANGE;
                *ret = r;
                return 0;
        }

        case json_type_double:
                /* json_tokener keeps the number's original text as the serialization of a double. */
                return money_parse_decimal(json_object_to_json_string(v), scale, ret);

        case json_type_string: {
                const char *s = json_object_get_string(v);

                /* "1\u00005" must not be read as "1". */
                if ((size_t) json_object_get_string_len(v) != strlen(s))
                        return -EINVAL;
                return money_parse_decimal(s, scale, ret);
        }

        default:
                return -EMEDIUMTYPE;
        }
}

char *money_format(char *buf, size_t l, int64_t v, unsigned scale) {
        char digits[MONEY_FORMAT_MAX];
        size_t n = 0, need, k = 0;
        uint64_t magnitude;

        assert(buf || l == 0);
        assert(scale <= MONEY_SCALE_MAX);

        magnitude = v < 0 ? (uint64_t) -(v + 1) + 1 : (uint64_t) v;

        /* Least significant digit first, at least scale + 1 of them so that there is a leading "0.". */
        do {
                digits[n++] = (char) ('0' + magnitude % 10);
                magnitude /= 10;
        } while (magnitude > 0 || n < scale + 1);

        need = (v < 0) + n + (scale > 0) + 1;
        if (need > l)
                return NULL;

        if (v < 0)
                buf[k++] = '-';
        while (n > 0) {
                buf[k++] = digits[--n];
                if (n == scale && scale > 0)
                        buf[k++] = '.';
        }
        buf[k] = '\0';
        return buf;
}

/* The 128-bit product of two 64-bit values, from four 32 x 32 -> 64 bit products. */
static void mul_64_64(uint64_t a, uint64_t b, uint64_t *ret_hi, uint64_t *ret_lo) {
        uint64_t a_lo = a & UINT32_MAX, a_hi = a >> 32, b_lo = b & UINT32_MAX, b_hi = b >> 32;
        uint64_t p0 = a_lo * b_lo, p1 = a_lo * b_hi, p2 = a_hi * b_lo, p3 = a_hi * b_hi;
        /* At most 3 * (2^32 - 1): the middle column cannot overflow. */
        uint64_t mid = (p0 >> 32) + (p1 & UINT32_MAX) + (p2 & UINT32_MAX);

        *ret_lo = mid << 32 | (p0 & UINT32_MAX);
        *ret_hi = p3 + (p1 >> 32) + (p2 >> 32) + (mid >> 32);
}

int money_mul_div(uint64_t a, uint64_t b, uint64_t c, uint64_t *ret_quotient, uint64_t *ret_remainder) {
        uint64_t hi, lo, q = 0;

        assert(c > 0);
        assert(ret_quotient);

        mul_64_64(a, b, &hi, &lo);
        if (hi >= c)
                return -ERANGE; /* the quotient needs more than 64 bits */

        /* Long division, one bit of the low half at a time; hi is the running remainder, always < c. Shifted
         * left it may pass 2^64: the bit that falls out says it is >= c, and the wrapped subtraction then
         * gives the right remainder. */
        for (unsigned i = 64; i > 0; i--) {
                bool carry = hi >> 63;

                hi = hi << 1 | (lo >> (i - 1) & 1);
                q <<= 1;
                if (carry || hi >= c) {
                        hi -= c;
                        q |= 1;
                }
        }

        *ret_quotient = q;
        if (ret_remainder)
                *ret_remainder = hi;
        return 0;
}
