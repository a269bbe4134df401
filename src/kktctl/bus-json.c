/* SPDX-License-Identifier: MIT */
/* Owns the translation of D-Bus values into JSON for kktctl's machine-readable output: basic types and
 * variants of them, and property dictionaries. */

#include "bus-json.h"
#include "json-util.h"
#include "macro.h"

static json_object *json_from_basic(char type, const void *p) {
        switch (type) {
        case SD_BUS_TYPE_BOOLEAN:
                return json_object_new_boolean(*(const int *) p);
        case SD_BUS_TYPE_BYTE:
                return json_object_new_int64(*(const uint8_t *) p);
        case SD_BUS_TYPE_INT16:
                return json_object_new_int64(*(const int16_t *) p);
        case SD_BUS_TYPE_UINT16:
                return json_object_new_int64(*(const uint16_t *) p);
        case SD_BUS_TYPE_INT32:
                return json_object_new_int64(*(const int32_t *) p);
        case SD_BUS_TYPE_UINT32:
                return json_object_new_int64(*(const uint32_t *) p);
        case SD_BUS_TYPE_INT64:
                return json_object_new_int64(*(const int64_t *) p);
        case SD_BUS_TYPE_UINT64:
                return json_object_new_uint64(*(const uint64_t *) p);
        case SD_BUS_TYPE_DOUBLE:
                return json_object_new_double(*(const double *) p);
        default: /* string, object path, signature */
                return json_object_new_string(*(const char *const *) p);
        }
}

int bus_message_read_json(sd_bus_message *m, json_object **ret) {
        _cleanup_(json_object_putp) json_object *v = NULL;
        union {
                uint8_t y;
                int b;
                int16_t n;
                uint16_t q;
                int32_t i;
                uint32_t u;
                int64_t x;
                uint64_t t;
                double d;
                const char *s;
        } value;
        const char *contents;
        char type;
        int r;

        assert(m);
        assert(ret);

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENXIO; /* nothing left in this container */

        if (type == SD_BUS_TYPE_VARIANT) {
                r = sd_bus_message_enter_container(m, SD_BUS_TYPE_VARIANT, contents);
                if (r < 0)
                        return r;
                r = bus_message_read_json(m, &v);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
                *ret = TAKE_PTR(v);
                return 0;
        }

        if (!strchr("ybnqiuxtdsog", type)) {
                /* Containers (and fds) do not occur in our API; a newer daemon may add one: skip it. */
                r = sd_bus_message_skip(m, NULL);
                if (r < 0)
                        return r;
                *ret = NULL;
                return 0;
        }

        r = sd_bus_message_read_basic(m, type, &value);
        if (r < 0)
                return r;
        v = json_from_basic(type, &value);
        if (!v)
                return -ENOMEM;
        *ret = TAKE_PTR(v);
        return 0;
}

int bus_message_read_properties_json(sd_bus_message *m, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        int r;

        assert(m);
        assert(ret);

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;

        r = sd_bus_message_enter_container(m, SD_BUS_TYPE_ARRAY, "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, "sv")) > 0) {
                _cleanup_(json_object_putp) json_object *v = NULL;
                const char *name;

                r = sd_bus_message_read_basic(m, SD_BUS_TYPE_STRING, &name);
                if (r < 0)
                        return r;
                r = bus_message_read_json(m, &v);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
                if (json_object_object_add(o, name, v) < 0)
                        return -ENOMEM;
                v = NULL; /* the object owns it now */
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}
