/* SPDX-License-Identifier: MIT */
#pragma once

/* Assertions for the unit tests: each failure names the expression, the values and the line, and exits 1.
 * Exit code 77 means skipped, as meson expects. */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_TEST_SKIP 77

#define ASSERT_TRUE(expr)                                                                               \
        do {                                                                                            \
                if (!(expr)) {                                                                          \
                        fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #expr);    \
                        exit(EXIT_FAILURE);                                                             \
                }                                                                                       \
        } while (0)

#define ASSERT_FALSE(expr) ASSERT_TRUE(!(expr))

#define ASSERT_EQ(a, b)                                                                                 \
        do {                                                                                            \
                intmax_t _a_ = (intmax_t) (a), _b_ = (intmax_t) (b);                                    \
                if (_a_ != _b_) {                                                                       \
                        fprintf(stderr, "%s:%d: %s == %s failed: %jd != %jd\n", __FILE__, __LINE__, #a, #b, \
                                _a_, _b_);                                                              \
                        exit(EXIT_FAILURE);                                                             \
                }                                                                                       \
        } while (0)

#define ASSERT_EQ_U(a, b)                                                                               \
        do {                                                                                            \
                uintmax_t _a_ = (uintmax_t) (a), _b_ = (uintmax_t) (b);                                 \
                if (_a_ != _b_) {                                                                       \
                        fprintf(stderr, "%s:%d: %s == %s failed: %ju != %ju\n", __FILE__, __LINE__, #a, #b, \
                                _a_, _b_);                                                              \
                        exit(EXIT_FAILURE);                                                             \
                }                                                                                       \
        } while (0)

#define ASSERT_OK(expr)                                                                                 \
        do {                                                                                            \
                intmax_t _r_ = (intmax_t) (expr);                                                       \
                if (_r_ < 0) {                                                                          \
                        fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr,            \
                                strerror((int) -_r_));                                                  \
                        exit(EXIT_FAILURE);                                                             \
                }                                                                                       \
        } while (0)

/* expr must fail with exactly -err. */
#define ASSERT_ERROR(expr, err)                                                                         \
        do {                                                                                            \
                intmax_t _r_ = (intmax_t) (expr);                                                       \
                if (_r_ != -(intmax_t) (err)) {                                                         \
                        fprintf(stderr, "%s:%d: %s returned %jd, expected -%s\n", __FILE__, __LINE__, #expr, \
                                _r_, #err);                                                             \
                        exit(EXIT_FAILURE);                                                             \
                }                                                                                       \
        } while (0)

#define ASSERT_STREQ(a, b)                                                                              \
        do {                                                                                            \
                const char *_a_ = (a), *_b_ = (b);                                                      \
                if (!_a_ || !_b_ || strcmp(_a_, _b_) != 0) {                                            \
                        fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a, \
                                #b, _a_ ?: "(null)", _b_ ?: "(null)");                                   \
                        exit(EXIT_FAILURE);                                                             \
                }                                                                                       \
        } while (0)

#define ASSERT_NULL(p) ASSERT_TRUE((p) == NULL)
#define ASSERT_NOT_NULL(p) ASSERT_TRUE((p) != NULL)

/* Runs one named test function, printing its name so a failure in the log says which behaviour broke. */
#define TEST_RUN(fn)                                                                                    \
        do {                                                                                            \
                fprintf(stderr, "== %s\n", #fn);                                                        \
                fn();                                                                                   \
        } while (0)
