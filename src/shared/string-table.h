/* SPDX-License-Identifier: MIT */
#pragma once

/* Enum <-> name tables, after systemd's string-table.h: the one way every enum of ours gets its names.
 * A table is `static const char *const name##_table[_TYPE_MAX] = { [VALUE] = "name", ... };` and the enum has
 * `_TYPE_INVALID = -EINVAL`. Header-only. */

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "macro.h"

static inline const char *string_table_lookup_to_string(const char *const *table, size_t len, int i) {
        if (i < 0 || (size_t) i >= len)
                return NULL;
        return table[i];
}

/* The index of s in the table, or -EINVAL (s NULL or not found). */
static inline int string_table_lookup_from_string(const char *const *table, size_t len, const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < len; i++)
                if (table[i] && strcmp(table[i], s) == 0)
                        return (int) i;
        return -EINVAL;
}

#define DEFINE_STRING_TABLE_LOOKUP_TO_STRING(name, type, scope)                                          \
        scope const char *name##_to_string(type i) {                                                     \
                return string_table_lookup_to_string(name##_table, ELEMENTSOF(name##_table), (int) i);   \
        }

#define DEFINE_STRING_TABLE_LOOKUP_FROM_STRING(name, type, scope)                                        \
        scope type name##_from_string(const char *s) {                                                   \
                return (type) string_table_lookup_from_string(name##_table, ELEMENTSOF(name##_table), s); \
        }

#define DEFINE_STRING_TABLE_LOOKUP(name, type)                                                           \
        DEFINE_STRING_TABLE_LOOKUP_TO_STRING(name, type, )                                               \
        DEFINE_STRING_TABLE_LOOKUP_FROM_STRING(name, type, )

#define DEFINE_PRIVATE_STRING_TABLE_LOOKUP(name, type)                                                   \
        DEFINE_STRING_TABLE_LOOKUP_TO_STRING(name, type, static)                                         \
        DEFINE_STRING_TABLE_LOOKUP_FROM_STRING(name, type, static)
