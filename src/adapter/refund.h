/* SPDX-License-Identifier: MIT */
#pragma once

/* The refund check the ERP asks before a return: may a receipt be refunded now? Only once the OFD has
 * acknowledged it (the prototype's rule, kept: the shop's ERP module depends on it). The original may be
 * named by its receipt id, its Idempotency-Key or its fiscal document number. */

#include <json-c/json.h>
#include <stdbool.h>

#include "store.h"

typedef struct RefundCheck {
        int error;                      /* 0, -ENOENT (no such receipt), or the store's error */
        bool allowed;
        const char *sync_status;        /* "pending", "synced", "failed", "dlq", "cancelled" */
        char reason[256];               /* why not; "" when allowed */
        const StoreReceipt *original;   /* valid during the callback; NULL on error */
} RefundCheck;

typedef void (*RefundCheckCallback)(const RefundCheck *check, void *userdata);

/* -EINVAL: ref empty or longer than 255 characters. cb is called once, never from inside this call. */
int refund_check(Store *s, const char *ref, RefundCheckCallback cb, void *userdata);

/* {"allowed": ..., "sync_status": ..., "reason": ... (when not), "original_receipt_id", "original_type",
 *  "original_total", "refunded", "refundable", "fiscal_document_number"} */
int refund_check_to_json(const RefundCheck *check, json_object **ret);
