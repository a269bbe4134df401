/* SPDX-License-Identifier: MIT */
/* Reading a receipt's JSON: the body (strict UTF-8, one JSON object and nothing after it), the readers of
 * strings, decimals and dates with their limits, unknown keys, and the wording of every message. Knows no
 * receipt rule: receipt-validate.c does. */

#include <inttypes.h>
#include <threads.h>

#include "receipt-internal.h"

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. json-c's own check lets the
 * first two through. */
bool receipt_utf8_is_valid(const char *s, size_t n) {
        const uint8_t *p = (const uint8_t *) s, *e = p + n;

        while (p < e) {
                uint32_t cp, min;
                size_t len;

                if (*p < 0x80) {
                        p++;
                        continue;
                }
                if ((*p & 0xe0) == 0xc0) {
                        len = 2;
                        cp = *p & 0x1f;
                        min = 0x80;
                } else if ((*p & 0xf0) == 0xe0) {
                        len = 3;
                        cp = *p & 0x0f;
                        min = 0x800;
                } else if ((*p & 0xf8) == 0xf0) {
                        len = 4;
                        cp = *p & 0x07;
                        min = 0x10000;
                } else
                        return false;

                if ((size_t) (e - p) < len)
                        return false;
                for (size_t i = 1; i < len; i++) {
                        if ((p[i] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (p[i] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                p += len;
        }
        return true;
}

int receipt_fail(char **detail, int r, const char *format, ...) {
        va_list ap;
        char *s;
        int k;

        va_start(ap, format);
        k = vasprintf(&s, format, ap);
        va_end(ap);
        if (k < 0)
                return -ENOMEM;

        free(*detail);
        *detail = s;
        return r;
}

/* How much of a client's string a message quotes: at most 40 bytes, never cutting a character in half, so
 * that the message stays short whatever the client sent. *ret_cut tells whether the string goes on. */
static int quote_length(const char *s, bool *ret_cut) {
        size_t l = strlen(s), n = MIN(l, 40U);

        while (n > 0 && n < l && ((uint8_t) s[n] & 0xc0) == 0x80)
                n--;
        *ret_cut = n < l;
        return (int) n;
}

int receipt_fail_unknown(char **detail, const char *prefix, const char *key, const char *value) {
        bool cut;
        int n = quote_length(value, &cut);

        return receipt_fail(detail, -EINVAL, "%s%s%s: unknown value '%.*s%s'", strempty(prefix),
                            prefix ? "." : "", key, n, value, cut ? "..." : "");
}

/* Absent and JSON null mean the same, "not given", as they did to the prototype's optional fields. */
json_object *receipt_field_get(json_object *o, const char *key) {
        json_object *v = NULL;

        (void) json_object_object_get_ex(o, key, &v);
        return v;
}

/* A non-empty string of at most max characters; *ret points into v and *ret_len is its length in bytes.
 * The whole body was checked to be valid UTF-8 already, and json-c turns even a lone surrogate escape into
 * U+FFFD. */
int receipt_parse_string(json_object *v, const char *prefix, const char *key, size_t max, StringFlags flags,
                         const char **ret, size_t *ret_len, char **detail) {
        const char *s;
        size_t l, n = 0;

        if (!v)
                return receipt_fail(detail, -EINVAL, PATH_FMT ": missing", PATH_ARGS(prefix, key));
        if (!json_object_is_type(v, json_type_string))
                return receipt_fail(detail, -EINVAL, PATH_FMT ": must be a string", PATH_ARGS(prefix, key));

        s = json_object_get_string(v);
        l = (size_t) json_object_get_string_len(v);

        /* One pass for the NUL check, the control characters and the length in characters. */
        for (size_t i = 0; i < l; i++) {
                uint8_t c = (uint8_t) s[i];

                if (c == '\0')
                        return receipt_fail(detail, -EINVAL, PATH_FMT ": contains a NUL character",
                                            PATH_ARGS(prefix, key));
                if ((flags & STRING_NO_CONTROL) && (c < 0x20 || c == 0x7f))
                        return receipt_fail(detail, -EINVAL, PATH_FMT ": contains a control character",
                                            PATH_ARGS(prefix, key));
                n += (c & 0xc0) != 0x80; /* valid UTF-8: every byte but continuation bytes starts one */
        }
        if (n == 0)
                return receipt_fail(detail, -EINVAL, PATH_FMT ": must not be empty", PATH_ARGS(prefix, key));
        if (n > max)
                return receipt_fail(detail, -EINVAL, PATH_FMT ": longer than %zu characters",
                                    PATH_ARGS(prefix, key), max);

        *ret = s;
        if (ret_len)
                *ret_len = l;
        return 0;
}

int receipt_parse_string_dup(json_object *v, const char *prefix, const char *key, size_t max,
                             StringFlags flags, char **ret, char **detail) {
        const char *s = NULL;
        size_t l = 0;
        char *c;
        int r;

        r = receipt_parse_string(v, prefix, key, max, flags, &s, &l, detail);
        if (r < 0)
                return r;

        c = strndup(s, l);
        if (!c)
                return -ENOMEM;
        *ret = c;
        return 0;
}

int receipt_parse_decimal(json_object *v, const char *prefix, const char *key, unsigned scale, int64_t *ret,
                          char **detail) {
        int r;

        if (!v)
                return receipt_fail(detail, -EINVAL, PATH_FMT ": missing", PATH_ARGS(prefix, key));

        r = money_from_json(v, scale, ret);
        switch (r) {
        case 0:
                return 0;
        case -EMEDIUMTYPE:
                return receipt_fail(detail, -EINVAL, PATH_FMT ": must be a number", PATH_ARGS(prefix, key));
        case -EINVAL:
                return receipt_fail(detail, -EINVAL, PATH_FMT ": not a plain decimal number",
                                    PATH_ARGS(prefix, key));
        case -EDOM:
                if (scale == 0)
                        return receipt_fail(detail, -EINVAL, PATH_FMT ": must be a whole number",
                                            PATH_ARGS(prefix, key));
                return receipt_fail(detail, -EINVAL, PATH_FMT ": more than %u decimal places",
                                    PATH_ARGS(prefix, key), scale);
        case -ERANGE:
                return receipt_fail(detail, -EINVAL, PATH_FMT ": out of range", PATH_ARGS(prefix, key));
        default:
                return r;
        }
}

/* A body with thousands of unknown keys must not get a message of the same size. */
#define UNKNOWN_FIELDS_QUOTED_MAX 8U

static bool key_is_known(const char *key, const char *const *known, size_t n_known) {
        for (size_t i = 0; i < n_known; i++)
                if (streq(known[i], key))
                        return true;
        return false;
}

/* With RECEIPT_UNKNOWN_FIELDS_REJECT, o's keys that are not known at its level (prefix NULL: the top), all
 * of them named in one message, in the body's order: a misspelt "discout" would otherwise be silently
 * dropped and the receipt printed without its discount. */
int receipt_check_fields(const ParseContext *c, json_object *o, const char *prefix, const char *const *known,
                         size_t n_known, char **detail) {
        _cleanup_free_ char *list = NULL;
        size_t n_unknown = 0;
        Text t = {};

        if (c->options.unknown_fields == RECEIPT_UNKNOWN_FIELDS_IGNORE)
                return 0;

        json_object_object_foreach(o, key, value) {
                bool cut;
                int n;

                (void) value;
                if (key_is_known(key, known, n_known))
                        continue;
                if (++n_unknown > UNKNOWN_FIELDS_QUOTED_MAX)
                        continue;

                n = quote_length(key, &cut);
                if (n_unknown > 1)
                        text_append_literal(&t, ", ");
                text_append_literal(&t, "'");
                text_append(&t, key, (size_t) n);
                if (cut)
                        text_append_literal(&t, "...");
                text_append_literal(&t, "'");
        }
        if (n_unknown == 0)
                return 0;

        text_append(&t, "", 1);
        list = t.data;
        if (t.oom)
                return -ENOMEM;
        if (n_unknown > UNKNOWN_FIELDS_QUOTED_MAX)
                return receipt_fail(detail, -EINVAL, "%s%sunknown fields %s and %zu more", strempty(prefix),
                                    prefix ? ": " : "", list, n_unknown - UNKNOWN_FIELDS_QUOTED_MAX);
        return receipt_fail(detail, -EINVAL, "%s%sunknown fields %s", strempty(prefix), prefix ? ": " : "",
                            list);
}

static bool date_is_in_calendar(unsigned y, unsigned m, unsigned d) {
        static const uint8_t days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

        if (y == 0 || m < 1 || m > 12 || d < 1)
                return false;
        if (m == 2 && d == 29)
                return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        return d <= days[m - 1];
}

/* options.now as the local calendar day: the law counts days where the sale is made. */
int receipt_context_today(ParseContext *c, unsigned *ret) {
        usec_t u;
        time_t t;
        struct tm tm;

        if (c->today == 0) {
                u = c->options.now > 0 ? c->options.now : now(CLOCK_REALTIME);
                t = (time_t) (u / USEC_PER_SEC);
                if ((uint64_t) t != u / USEC_PER_SEC) /* a 32-bit time_t after 2038 */
                        return -EOVERFLOW;
                if (!localtime_r(&t, &tm))
                        return -EOVERFLOW;
                if (tm.tm_year < 1 - 1900 || tm.tm_year > 9999 - 1900)
                        return -EOVERFLOW;
                c->today = (unsigned) (tm.tm_year + 1900) * 10000 + (unsigned) (tm.tm_mon + 1) * 100 +
                           (unsigned) tm.tm_mday;
        }
        *ret = c->today;
        return 0;
}

/* A day of the calendar as "YYYY-MM-DD" (tag 1178 is a date; the POS sends it as ISO 8601 text), not after
 * options.now's day: a settlement being corrected or returned cannot lie ahead. */
int receipt_parse_date(ParseContext *c, json_object *v, const char *prefix, const char *key, unsigned *ret,
                       char **detail) {
        const char *s = NULL;
        unsigned date = 0, today;
        size_t l = 0;
        int r;

        r = receipt_parse_string(v, prefix, key, SIZE_MAX, 0, &s, &l, detail);
        if (r < 0)
                return r;
        if (l != 10)
                return receipt_fail(detail, -EINVAL, PATH_FMT ": not a date like 2025-12-31",
                                    PATH_ARGS(prefix, key));
        for (size_t i = 0; i < l; i++) {
                if (i == 4 || i == 7) {
                        if (s[i] != '-')
                                return receipt_fail(detail, -EINVAL, PATH_FMT ": not a date like 2025-12-31",
                                                    PATH_ARGS(prefix, key));
                        continue;
                }
                if (s[i] < '0' || s[i] > '9')
                        return receipt_fail(detail, -EINVAL, PATH_FMT ": not a date like 2025-12-31",
                                            PATH_ARGS(prefix, key));
                date = date * 10 + (unsigned) (s[i] - '0');
        }
        if (!date_is_in_calendar(date / 10000, date / 100 % 100, date % 100))
                return receipt_fail(detail, -EINVAL, PATH_FMT ": %s is not a day of the calendar",
                                    PATH_ARGS(prefix, key), DATE_FORMAT(date));

        r = receipt_context_today(c, &today);
        if (r < 0)
                return r;
        if (date > today)
                return receipt_fail(detail, -EINVAL, PATH_FMT ": %s is after today, %s",
                                    PATH_ARGS(prefix, key), DATE_FORMAT(date), DATE_FORMAT(today));

        *ret = date;
        return 0;
}

/* What json-c lets through even in strict mode although JSON forbids it: raw control characters inside
 * strings (a NUL would also end json-c's view of the text early) and single-quoted strings. Returns the
 * offending byte's offset and what it is, or -1. */
static ssize_t find_non_json(const char *body, size_t size, const char **ret_what) {
        bool in_string = false;

        for (size_t i = 0; i < size; i++) {
                char c = body[i];

                if ((uint8_t) c < 0x20 && (in_string || (c != '\t' && c != '\n' && c != '\r'))) {
                        *ret_what = "control character";
                        return (ssize_t) i;
                }
                if (in_string) {
                        if (c == '\\')
                                i++; /* an escaped character cannot end the string; json-c checks it */
                        else if (c == '"')
                                in_string = false;
                } else if (c == '"') {
                        in_string = true;
                } else if (c == '\'') {
                        *ret_what = "single quote";
                        return (ssize_t) i;
                }
        }
        return -1;
}

/* One tokener per thread, kept between requests: allocating one per request (its parse stack and buffer)
 * and freeing it again sent glibc into malloc_consolidate() on the loop thread. */
static thread_local json_tokener *cached_tokener = NULL;

static void tokener_release(json_tokener **tok) {
        if (!*tok)
                return;
        /* Taken out while in use, so a nested call would simply get its own. Reset here too, so that a
         * failed parse's half-built objects are not kept until the next request. */
        if (!cached_tokener) {
                json_tokener_reset(*tok);
                cached_tokener = TAKE_PTR(*tok);
        } else
                json_tokener_free(TAKE_PTR(*tok));
}

int receipt_parse_json_body(const char *body, size_t size, json_object **ret, char **detail) {
        _cleanup_(tokener_release) json_tokener *tok = NULL;
        _cleanup_(json_object_putp) json_object *o = NULL;
        enum json_tokener_error e;
        const char *what;
        ssize_t bad;

        if (size == 0)
                return receipt_fail(detail, -EBADMSG, "body: empty");
        if (size > INT_MAX)
                return receipt_fail(detail, -EBADMSG, "body: too large");
        if (!receipt_utf8_is_valid(body, size))
                return receipt_fail(detail, -EBADMSG, "body: not valid UTF-8");
        bad = find_non_json(body, size, &what);
        if (bad >= 0)
                return receipt_fail(detail, -EBADMSG, "body: not valid JSON (%s at offset %zi)", what, bad);

        tok = TAKE_PTR(cached_tokener);
        if (tok)
                json_tokener_reset(tok);
        else {
                tok = json_tokener_new();
                if (!tok)
                        return -ENOMEM;
                /* No JSON_TOKENER_VALIDATE_UTF8: receipt_utf8_is_valid() checked the whole body, more
                 * strictly. */
                json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        }

        o = json_tokener_parse_ex(tok, body, (int) size);
        e = json_tokener_get_error(tok);
        if (e == json_tokener_continue) {
                /* A bare top-level scalar ("null", "42") ends only with one more byte; an object does not
                 * need that. */
                o = json_tokener_parse_ex(tok, "", 1);
                if (json_tokener_get_error(tok) != json_tokener_success)
                        return receipt_fail(detail, -EBADMSG, "body: not valid JSON (truncated)");
                return receipt_fail(detail, -EBADMSG, "body: not a JSON object");
        }
        if (!o || e != json_tokener_success)
                return receipt_fail(detail, -EBADMSG, "body: not valid JSON (%s at offset %zu)",
                                    json_tokener_error_desc(e), json_tokener_get_parse_end(tok));
        /* Strict mode refuses trailing characters itself; this backs up find_non_json() in case json-c
         * ever stops at a byte it does not report. */
        if (json_tokener_get_parse_end(tok) != size)
                return receipt_fail(detail, -EBADMSG, "body: not valid JSON (trailing data at offset %zu)",
                                    json_tokener_get_parse_end(tok));
        if (!json_object_is_type(o, json_type_object))
                return receipt_fail(detail, -EBADMSG, "body: not a JSON object");

        *ret = TAKE_PTR(o);
        return 0;
}
