/* SPDX-License-Identifier: MIT */
#pragma once

/* What the pieces of receipt parsing share, included by receipt*.c only. From the bottom up:
 * receipt-parse.c reads the JSON (the body, strings, enums, decimals, dates, unknown keys) and words the
 * messages; receipt-validate.c applies the receipt's rules and holds receipt_parse(); receipt-canonical.c
 * writes the canonical text and JSON. receipt.c (names, receipt_free()) is below them all. */

#include <assert.h>
#include <limits.h>
#include <stdarg.h>

#include "json-util.h"
#include "money.h"
#include "receipt.h"

/* A growing text: the canonical writer's buffer, and messages that list things. */
typedef struct Text {
        char *data;
        size_t size;
        size_t allocated;
        bool oom; /* sticky: checked once at the end instead of after every append */
} Text;

static inline bool text_reserve(Text *t, size_t n) {
        size_t a;
        char *d;

        if (t->oom)
                return false;
        if (t->allocated - t->size >= n)
                return true;

        a = MAX(t->allocated * 2, t->size + n);
        d = realloc(t->data, a);
        if (!d) {
                t->oom = true;
                return false;
        }
        t->data = d;
        t->allocated = a;
        return true;
}

static inline void text_append(Text *t, const char *s, size_t n) {
        if (!text_reserve(t, n))
                return;
        memcpy(t->data + t->size, s, n);
        t->size += n;
}

/* For literals only: the length is known at compile time. */
#define text_append_literal(t, s) text_append((t), "" s "", sizeof(s) - 1)

/* Days are unsigned YYYYMMDD integers: they compare as dates do. */
#define DATE_FORMAT_MAX 11U
static inline char *date_format(char buf[static DATE_FORMAT_MAX], unsigned date) {
        snprintf(buf, DATE_FORMAT_MAX, "%04u-%02u-%02u", date / 10000 % 10000, date / 100 % 100, date % 100);
        return buf;
}
#define DATE_FORMAT(d) date_format((char[DATE_FORMAT_MAX]){}, (d))

/* What one parse needs besides the body. */
typedef struct ParseContext {
        ReceiptOptions options; /* with the defaults filled in, now excepted */
        unsigned today;         /* options.now as a local YYYYMMDD; 0 until something needs it */
} ParseContext;

typedef enum StringFlags {
        STRING_NO_CONTROL = 1 << 0, /* identifiers that end up in logs and journal fields */
} StringFlags;

/* A field's path in messages is "prefix.key", or "key" at the top level (prefix NULL). It is only put
 * together when a message needs it: formatting it for every field of every receipt cost more than the
 * checks themselves. */
#define PATH_FMT "%s%s%s"
#define PATH_ARGS(prefix, key) strempty(prefix), (prefix) ? "." : "", (key)

/* receipt-parse.c */
bool receipt_utf8_is_valid(const char *s, size_t n);
/* Returns r, always negative. gcc -O3 cannot see that through the call and warns that the out-parameters
 * of the receipt_parse_*() functions may be used uninitialised after "if (r < 0) return r;": their callers
 * initialise them. */
int receipt_fail(char **detail, int r, const char *format, ...) _printf_(3, 4);
int receipt_fail_unknown(char **detail, const char *prefix, const char *key, const char *value);
json_object *receipt_field_get(json_object *o, const char *key);
int receipt_parse_string(json_object *v, const char *prefix, const char *key, size_t max, StringFlags flags,
                         const char **ret, size_t *ret_len, char **detail);
int receipt_parse_string_dup(json_object *v, const char *prefix, const char *key, size_t max,
                             StringFlags flags, char **ret, char **detail);
int receipt_parse_decimal(json_object *v, const char *prefix, const char *key, unsigned scale, int64_t *ret,
                          char **detail);
int receipt_check_fields(const ParseContext *c, json_object *o, const char *prefix, const char *const *known,
                         size_t n_known, char **detail);
int receipt_context_today(ParseContext *c, unsigned *ret);
int receipt_parse_date(ParseContext *c, json_object *v, const char *prefix, const char *key, unsigned *ret,
                       char **detail);
int receipt_parse_json_body(const char *body, size_t size, json_object **ret, char **detail);

/* An enumeration by name through its from_string() (value < 0: unknown); def is used when the field is
 * absent (def < 0: the field is required). */
#define PARSE_ENUM(v, prefix, key, from_string, def, ret, detail)                                           \
        ({                                                                                                  \
                json_object *_v_ = (v);                                                                     \
                const char *_s_ = NULL;                                                                     \
                int _r_ = 0, _def_ = (def);                                                                 \
                if (!_v_ && _def_ >= 0)                                                                     \
                        *(ret) = _def_;                                                                     \
                else {                                                                                      \
                        _r_ = receipt_parse_string(_v_, (prefix), (key), SIZE_MAX, 0, &_s_, NULL,           \
                                                   (detail));                                               \
                        if (_r_ >= 0) {                                                                     \
                                int _value_ = (int) from_string(_s_);                                       \
                                if (_value_ < 0)                                                            \
                                        _r_ = receipt_fail_unknown((detail), (prefix), (key), _s_);         \
                                else                                                                        \
                                        *(ret) = _value_;                                                   \
                        }                                                                                   \
                }                                                                                           \
                _r_;                                                                                        \
        })
