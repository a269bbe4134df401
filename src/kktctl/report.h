/* SPDX-License-Identifier: MIT */
#pragma once

/* The register's reports as kktctl shows them: the JSON that OpenShift(), PrintXReport() and CloseShift()
 * answer with (the same as POST /v1/kkt/shift/open, /v1/kkt/report/x and /v1/kkt/report/z), laid out for
 * people. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>

/* Aligned "Label: value" lines: which report, the shift, the time, the receipts by type, the totals (exact
 * decimal strings as the daemon sent them), the fiscal document of an opening or a Z report, the OFD. Times
 * are local, or UTC when utc. */
void report_print(json_object *report, FILE *f, bool utc);
