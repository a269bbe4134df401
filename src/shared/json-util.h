/* SPDX-License-Identifier: MIT */
#pragma once

/* Cleanup for json-c objects, and adding members without leaking them on failure. */

#include <json-c/json.h>

#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);
DEFINE_TRIVIAL_CLEANUP_FUNC(json_tokener *, json_tokener_free);

/* Adds v (ownership taken, also on failure) as o[key]; -ENOMEM when v is NULL or adding fails. */
int json_add(json_object *o, const char *key, json_object *v);
/* o[key] = s as a JSON string, or null when s is NULL. */
int json_add_string_or_null(json_object *o, const char *key, const char *s);
/* A JSON string for s, or NULL (JSON null) when s is NULL. */
json_object *json_string_or_null(const char *s);
