/* SPDX-License-Identifier: MIT */
#pragma once

/* `kktctl status` and `kktctl shift`: the daemon's properties fetched in one GetAll() call, and their views
 * for people; `kktctl device`: the register's own report. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <systemd/sd-bus.h>

/* All properties of org.opticserp.KktAdapter1 as an object keyed by property name; *error says why not. */
int status_fetch(sd_bus *bus, sd_bus_error *error, json_object **ret);

/* The properties `kktctl shift` shows, as a new object (the --json output); those the daemon did not send
 * are left out. */
int status_select_shift(json_object *properties, json_object **ret);

/* Aligned "Label: value" lines like timedatectl's; a property the daemon did not send shows as "n/a". */
/* Times in local time, or in UTC when utc. */
void status_print(json_object *properties, FILE *f, bool utc);
void status_print_shift(json_object *properties, FILE *f, bool utc);

/* `kktctl device`: the register as GetDeviceStatus() reports it (the JSON of GET /v1/kkt/device/status). */
void status_print_device_json(json_object *o, FILE *f, bool utc);
