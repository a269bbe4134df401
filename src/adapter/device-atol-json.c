/* SPDX-License-Identifier: MIT */
/* The JSON readers and writers the atol-web driver's pieces share: typed keys of ATOL's answers, ATOL's
 * amounts (JSON numbers, read through their text, never a double), bounded copies of its strings. */

#include "device-atol-internal.h"

/* ---- JSON helpers ---- */

json_object *atol_get_key(json_object *o, const char *key) {
        json_object *v = NULL;

        if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v))
                return NULL;
        return v;
}

const char *atol_get_string(json_object *o, const char *key) {
        json_object *v = atol_get_key(o, key);

        return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

bool atol_get_int64(json_object *o, const char *key, int64_t *ret) {
        json_object *v = atol_get_key(o, key);

        if (!v || !json_object_is_type(v, json_type_int))
                return false;
        *ret = json_object_get_int64(v);
        return true;
}

bool atol_get_bool(json_object *o, const char *key, bool *ret) {
        json_object *v = atol_get_key(o, key);

        if (!v || !json_object_is_type(v, json_type_boolean))
                return false;
        *ret = json_object_get_boolean(v);
        return true;
}

bool atol_get_u32(json_object *o, const char *key, uint32_t *ret) {
        int64_t i;

        if (!atol_get_int64(o, key, &i) || i < 0 || i > UINT32_MAX)
                return false;
        *ret = (uint32_t) i;
        return true;
}

int atol_add_string(json_object *o, const char *key, const char *s) {
        return json_add(o, key, json_object_new_string(s));
}

/* An exact decimal number token: the text is written as it is (json-c's userdata serializer). The double
 * beside it is never read; no amount passes through floating point. */
int atol_add_decimal(json_object *o, const char *key, int64_t v, unsigned scale) {
        char buf[MONEY_FORMAT_MAX];

        if (!money_format(buf, sizeof buf, v, scale))
                return -EINVAL;
        return json_add(o, key, json_object_new_double_s(0.0, buf));
}

/* Amounts as ATOL answers them: JSON numbers in roubles ("1500.5", "0.17" [OFDC]). Read from the number's
 * own text and rounded half up to kopecks, in case the web server printed a binary fraction
 * ("99.99000000000001"); they are the register's figures, not ours. */
int atol_money(json_object *v, int64_t *ret) {
        const char *s, *p;
        int64_t units = 0, frac = 0;
        unsigned digits = 0;
        bool neg = false, round_up = false;

        if (!v)
                return -ENODATA;
        if (json_object_is_type(v, json_type_int)) {
                int64_t i = json_object_get_int64(v);

                if (__builtin_mul_overflow(i, 100, ret))
                        return -ERANGE;
                return 0;
        }
        if (json_object_is_type(v, json_type_double))
                s = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
        else if (json_object_is_type(v, json_type_string))
                s = json_object_get_string(v);
        else
                return -EINVAL;

        p = s;
        if (*p == '-') {
                neg = true;
                p++;
        }
        if (*p < '0' || *p > '9')
                return -EINVAL;
        for (; *p >= '0' && *p <= '9'; p++)
                if (__builtin_mul_overflow(units, 10, &units) ||
                    __builtin_add_overflow(units, *p - '0', &units))
                        return -ERANGE;
        if (*p == '.') {
                for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
                        if (digits < 2)
                                frac = frac * 10 + (*p - '0');
                        else if (digits == 2)
                                round_up = *p >= '5';
                }
                if (digits == 0)
                        return -EINVAL;
        }
        if (*p != 0)
                return -EINVAL; /* an exponent or garbage: not an amount we read */
        if (digits == 1)
                frac *= 10;
        if (__builtin_mul_overflow(units, 100, &units) ||
            __builtin_add_overflow(units, frac + round_up, &units))
                return -ERANGE;
        *ret = neg ? -units : units;
        return 0;
}

void atol_copy_text(char *buf, size_t l, const char *s) {
        size_t n;

        assert(l > 0);
        if (!s) {
                buf[0] = 0;
                return;
        }
        n = strlen(s);
        if (n >= l) {
                /* Cut at a UTF-8 character boundary: ATOL's descriptions are Russian. */
                n = l - 1;
                while (n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80)
                        n--;
        }
        memcpy(buf, s, n);
        buf[n] = 0;
}
