/* SPDX-License-Identifier: MIT */
/* Owns the pieces every view of kktctl is written with: the aligned label lines, the lenient reading of the
 * daemon's JSON for display (a member it did not send is shown as missing, never a failure), JSON output. */

#include <stdarg.h>

#include "output.h"

void output_field(FILE *f, int width, const char *label, const char *format, ...) {
        va_list ap;

        fprintf(f, "%*s: ", width, label);
        va_start(ap, format);
        vfprintf(f, format, ap);
        va_end(ap);
        fputc('\n', f);
}

json_object *output_get(json_object *o, const char *key) {
        json_object *v = NULL;

        if (!o || !json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return NULL;
        return v;
}

const char *output_get_string(json_object *o, const char *key) {
        json_object *v = output_get(o, key);

        return v ? json_object_get_string(v) : NULL;
}

int64_t output_get_int(json_object *o, const char *key) {
        json_object *v = output_get(o, key);

        return v && json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : 0;
}

int output_json(json_object *o, bool pretty) {
        const char *s = json_object_to_json_string_ext(o, pretty ? JSON_PRETTY : JSON_PLAIN);

        if (!s)
                return -ENOMEM;
        puts(s);
        return 0;
}
