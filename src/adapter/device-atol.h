/* SPDX-License-Identifier: MIT */
#pragma once

/* The driver for ATOL's web server (driver package 10, "АТОЛ. Web-сервер драйвера ККТ" / Web Requests): our
 * canonical receipts as ATOL JSON tasks queued with POST /api/v2/requests and polled with GET
 * /api/v2/requests/{uuid}, entirely through curl-glue on the loop. The request uuid of a receipt is derived
 * from its receipt id, so a request repeated after a crash or a lost answer is the same request, and every
 * fiscal task travels behind a getFnStatus task, so the web server keeps the register's last document number
 * from just before it: the driver decides an unknown outcome by the register itself (its documents after
 * that number), never by a guess. */

#include <stdbool.h>
#include <stdint.h>

#include "device-driver.h"

extern const DeviceDriver device_atol_driver;

#define DEVICE_ATOL_URL_DEFAULT "http://127.0.0.1:16732"
/* "xxxxxxxx-xxxx-5xxx-yxxx-xxxxxxxxxxxx" plus NUL. */
#define DEVICE_ATOL_UUID_MAX 37U
/* How many requests the driver makes for one receipt (or one shift document) at most: a new one only after
 * the previous one certainly made nothing (paper out, a refusal of the register...). */
#define DEVICE_ATOL_MAX_ATTEMPTS 512U
/* After an unknown outcome, how many documents after the one before the request the driver reads to find
 * its own. More than that were made meanwhile: someone else uses the register, and the driver says so
 * instead of guessing. */
#define DEVICE_ATOL_RECONCILE_WINDOW 4U

/* The uuid of attempt `attempt` (0, 1, ...) of a receipt: an RFC 4122 version 5 UUID (SHA-1, a namespace of
 * our own) of "receipt:<receipt_id>:<attempt>". The same receipt gets the same uuids in every process. */
int device_atol_receipt_uuid(const char *receipt_id, unsigned attempt,
                             char ret[static DEVICE_ATOL_UUID_MAX]);
/* The same for a shift document: op "open-shift" or "close-shift", the fiscal drive's number, the shift. */
int device_atol_shift_uuid(const char *op, const char *fn_number, uint32_t shift, unsigned attempt,
                           char ret[static DEVICE_ATOL_UUID_MAX]);

/* The ATOL JSON task (one object: {"type": "sell", ...}) for a canonical receipt, as PRINT sends it;
 * cashier/cashier_inn are the defaults for a receipt that names no cashier (NULL: none). -EINVAL with a
 * reason in *ret_why (static text) for a receipt the driver cannot map; -ENOMEM. */
int device_atol_receipt_task(const char *receipt_json, const char *cashier, const char *cashier_inn,
                             char **ret, const char **ret_why);

/* How the driver reads an ATOL error code (LIBFPTR_ERROR_*): the fault it stands for, and whether a fiscal
 * task that failed with it may have made its document all the same (then the register is asked). */
DeviceFault device_atol_error_fault(int code, bool *ret_uncertain);
