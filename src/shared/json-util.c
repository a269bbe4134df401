/* SPDX-License-Identifier: MIT */
/* Building JSON objects with json-c without leaking a member when adding it fails. */

#include "json-util.h"

int json_add(json_object *o, const char *key, json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

int json_add_string_or_null(json_object *o, const char *key, const char *s) {
        if (!s)
                return json_object_object_add(o, key, NULL) < 0 ? -ENOMEM : 0;
        return json_add(o, key, json_object_new_string(s));
}

json_object *json_string_or_null(const char *s) {
        return s ? json_object_new_string(s) : NULL;
}
