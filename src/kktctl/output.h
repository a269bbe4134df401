/* SPDX-License-Identifier: MIT */
#pragma once

/* kktctl's output primitives: aligned "Label: value" lines like timedatectl's, members of the daemon's JSON
 * read for display, and JSON printed compact (--json) or pretty. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "macro.h"

#define JSON_PLAIN (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define JSON_PRETTY (JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE)

/* "<label right-aligned in width>: <value>\n". */
void output_field(FILE *f, int width, const char *label, const char *format, ...) _printf_(4, 5);

/* The member key of o, or NULL when o is NULL, lacks it or it is JSON null. */
json_object *output_get(json_object *o, const char *key);
/* Its text (a number's as the daemon wrote it), or NULL. */
const char *output_get_string(json_object *o, const char *key);
/* Its value when it is an integer, else 0. */
int64_t output_get_int(json_object *o, const char *key);

/* One line on stdout; -ENOMEM when json-c could not format it. */
int output_json(json_object *o, bool pretty);
