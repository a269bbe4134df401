/* SPDX-License-Identifier: MIT */
#pragma once

/* `kktctl show ID` for people: the receipt as GetReceipt() answers it (the JSON of GET
 * /v1/kkt/receipt/{id}), laid out as aligned "Label: value" lines. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>

/* Its id, states, times (local, or UTC when utc), attempts and last error, fiscal document, and the
 * receipt's lines and payments with amounts as the POS wrote them. */
void show_print_receipt(json_object *receipt, FILE *f, bool utc);
