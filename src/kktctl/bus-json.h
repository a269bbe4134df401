/* SPDX-License-Identifier: MIT */
#pragma once

/* D-Bus values as JSON: what `kktctl --json status` and `kktctl --json monitor` print, keyed by the
 * D-Bus property names, with numbers as JSON numbers. */

#include <json-c/json.h>
#include <systemd/sd-bus.h>

/* Reads the value at the message's cursor, a basic type or a variant holding one, into a JSON value
 * (*ret is NULL, i.e. JSON null, for containers, which our API does not use and which are skipped). */
int bus_message_read_json(sd_bus_message *m, json_object **ret);

/* Reads an a{sv}, as GetAll() answers and PropertiesChanged carries, into an object keyed by name, in the
 * order the daemon sent them. */
int bus_message_read_properties_json(sd_bus_message *m, json_object **ret);
