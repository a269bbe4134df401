/* SPDX-License-Identifier: MIT */
#pragma once

/* `kktctl status`: the daemon's properties fetched in one GetAll() call, and their view for people. */

#include <json-c/json.h>
#include <stdio.h>
#include <systemd/sd-bus.h>

/* All properties of org.opticserp.KktAdapter1 as an object keyed by property name; *error says why not. */
int status_fetch(sd_bus *bus, sd_bus_error *error, json_object **ret);

/* Aligned "Label: value" lines like timedatectl's; a property the daemon did not send shows as "n/a". */
void status_print(json_object *properties, FILE *f);
