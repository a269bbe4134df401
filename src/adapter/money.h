/* SPDX-License-Identifier: MIT */
#pragma once

/* Exact decimal amounts: JSON number text or decimal strings to scaled int64 (kopecks, thousandths) and
 * back, without ever passing through a double. */

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#define MONEY_SCALE_KOPECKS 2U  /* amounts: 1500.50 -> 150050 */
#define MONEY_SCALE_QUANTITY 3U /* quantities: 1.250 -> 1250 */
#define MONEY_SCALE_MAX 18U     /* 10^18 is the largest power of ten in an int64 */

/* "-9223372036854775808" as "-9.223372036854775808" plus NUL; also the widest "-0.000..." for any scale. */
#define MONEY_FORMAT_MAX 22U

/* Parses a plain decimal (JSON number grammar without exponent: -?(0|[1-9][0-9]*)(\.[0-9]+)?) into an
 * integer scaled by 10^scale. Returns 0, -EINVAL for anything else (empty, '+', exponent, ".5", "5.",
 * "00.5", NaN, whitespace), -EDOM for more fractional digits than scale (even zeros: never rounded),
 * -ERANGE when the scaled value does not fit an int64. */
int money_parse_decimal(const char *text, unsigned scale, int64_t *ret);

/* The same for a json-c value from json_tokener: an integer (exact already), a double (its original text,
 * which the tokener keeps, is parsed; a double built with json_object_new_double() has no such text and
 * is parsed from its %.17g rendering, so it may fail with -EDOM), or a string holding a plain decimal.
 * -EMEDIUMTYPE for NULL (JSON null) or any other type. An integer at INT64_MIN/INT64_MAX gives -ERANGE,
 * because json-c clamps out-of-range integers to those values and the two cannot be told apart. */
int money_from_json(json_object *v, unsigned scale, int64_t *ret);

/* Writes v / 10^scale with exactly scale decimals ("1500.00", "-0.05", "1.250", "7" for scale 0).
 * Returns buf, or NULL when l is too small (MONEY_FORMAT_MAX always suffices). */
char *money_format(char *buf, size_t l, int64_t v, unsigned scale);

/* a * b / c exactly, for c > 0: the quotient and the remainder, through a 128-bit intermediate built from
 * 64-bit halves (32-bit targets have no 128-bit type). Returns 0, or -ERANGE when the quotient does not
 * fit 64 bits (never when a <= c or b <= c). Splitting a discount in proportion to line totals needs it:
 * discount * line overflows an int64 long before either does. */
int money_mul_div(uint64_t a, uint64_t b, uint64_t c, uint64_t *ret_quotient, uint64_t *ret_remainder);

/* For messages: formats into an unnamed buffer that lives until the end of the enclosing block. */
#define MONEY_FORMAT(v, scale) money_format((char[MONEY_FORMAT_MAX]) {}, MONEY_FORMAT_MAX, (v), (scale))
