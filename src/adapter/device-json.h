/* SPDX-License-Identifier: MIT */
#pragma once

/* The small JSON writers the device's front end and its driver interface share: strings, integers, amounts
 * and times under a key. Private to src/adapter/device*.c. */

#include <errno.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>

#include "json-util.h"
#include "money.h"
#include "time-util.h"

static inline int json_add_string(json_object *o, const char *key, const char *s) {
        return json_add(o, key, json_object_new_string(s));
}

static inline int json_add_int(json_object *o, const char *key, int64_t i) {
        return json_add(o, key, json_object_new_int64(i));
}

static inline int json_add_money(json_object *o, const char *key, int64_t v) {
        return json_add_string(o, key, MONEY_FORMAT(v, MONEY_SCALE_KOPECKS));
}

/* A JSON number token that is the exact decimal text ("1500.00"); the double beside it is only what json-c
 * hands a reader that asks for one, never what is written. */
static inline json_object *json_number_from_decimal(const char *text) {
        return json_object_new_double_s(strtod(text, NULL), text);
}

static inline int json_add_time(json_object *o, const char *key, usec_t t) {
        char ts[FORMAT_ISO8601_MAX];

        if (t == 0)
                return json_object_object_add(o, key, NULL) < 0 ? -ENOMEM : 0; /* JSON null */
        return json_add_string(o, key, format_iso8601_utc(ts, sizeof ts, t));
}
