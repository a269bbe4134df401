/* SPDX-License-Identifier: MIT */
/* Owns the refund check: naming the original through the store, and the verdict from its OFD state. */

#include "json-util.h"
#include "money.h"
#include "refund.h"

typedef struct RefundContext {
        RefundCheckCallback cb;
        void *userdata;
} RefundContext;

static void refund_on_resolved(Store *s, int error, const StoreReceipt *receipt, void *userdata) {
        RefundContext *ctx = userdata;
        RefundCheck c = { .error = error };

        if (error >= 0) {
                c.original = receipt;
                c.sync_status = store_status_to_string(receipt->status);
                /* A purchase is refunded by a purchase_refund: the same rule. */
                if (!streq_ptr(receipt->receipt_type, "sale") && !streq_ptr(receipt->receipt_type, "purchase"))
                        snprintf(c.reason, sizeof c.reason, "Refund blocked: receipt %s is a %s, not a sale",
                                 receipt->id, strna(receipt->receipt_type));
                else if (receipt->status != STORE_STATUS_SYNCED)
                        snprintf(c.reason, sizeof c.reason,
                                 "Refund blocked: original receipt %s not synced to the OFD (%s)", receipt->id,
                                 c.sync_status);
                else
                        c.allowed = true;
        }
        ctx->cb(&c, ctx->userdata);
        free(ctx);
}

int refund_check(Store *s, const char *ref, RefundCheckCallback cb, void *userdata) {
        RefundContext *ctx;
        int r;

        if (isempty(ref) || strlen(ref) > 255)
                return -EINVAL;
        ctx = new0(RefundContext, 1);
        if (!ctx)
                return -ENOMEM;
        *ctx = (RefundContext) { .cb = cb, .userdata = userdata };
        r = store_resolve_receipt(s, ref, refund_on_resolved, ctx);
        if (r < 0)
                free(ctx);
        return r;
}

int refund_check_to_json(const RefundCheck *check, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        const StoreReceipt *r = check->original;
        int k;

        assert(check->error >= 0 && r);

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if ((k = json_add(o, "allowed", json_object_new_boolean(check->allowed))) < 0 ||
            (k = json_add(o, "sync_status", json_object_new_string(strna(check->sync_status)))) < 0)
                return k;
        if (!check->allowed && (k = json_add(o, "reason", json_object_new_string(check->reason))) < 0)
                return k;
        if ((k = json_add(o, "original_receipt_id", json_object_new_string(r->id))) < 0 ||
            (k = json_add_string_or_null(o, "original_type", r->receipt_type)) < 0 ||
            (k = json_add(o, "original_total", json_object_new_string(MONEY_FORMAT(r->total_kopecks, MONEY_SCALE_KOPECKS)))) < 0 ||
            (k = json_add(o, "refunded", json_object_new_string(MONEY_FORMAT(r->refunded_kopecks, MONEY_SCALE_KOPECKS)))) < 0 ||
            (k = json_add(o, "refundable",
                          json_object_new_string(MONEY_FORMAT(MAX(r->total_kopecks - r->refunded_kopecks, 0),
                                                              MONEY_SCALE_KOPECKS)))) < 0)
                return k;
        if (r->fiscal_document_number > 0 &&
            (k = json_add(o, "fiscal_document_number", json_object_new_int64(r->fiscal_document_number))) < 0)
                return k;
        *ret = TAKE_PTR(o);
        return 0;
}
