/* SPDX-License-Identifier: MIT */
/* Owns the text form of the register's reports in kktctl: an opening, an X report, a Z report, each read
 * from the JSON the daemon answers with. Amounts are printed as the daemon wrote them, never re-computed. */

#include <inttypes.h>

#include "macro.h"
#include "output.h"
#include "report.h"
#include "timestamp.h"

/* strlen("Purchase refunds"), the longest label. */
#define LABEL_WIDTH 16

#define field(f, label, ...) output_field(f, LABEL_WIDTH, label, __VA_ARGS__)

static bool get_bool(json_object *o, const char *key) {
        json_object *v = output_get(o, key);

        return v && json_object_get_boolean(v);
}

/* An amount the daemon wrote as a decimal string; zero is "0.00" or absent. */
static bool amount_is_zero(const char *s) {
        return !s || strspn(s, "0.-") == strlen(s);
}

/* "14: 12 sale, 1 refund, 1 purchase_refund" from {"sale": 12, "refund": 1, ...}. */
static void receipt_counts(json_object *o, FILE *f) {
        json_object *counts = output_get(o, "receiptCounts") ?: output_get(o, "receipt_counts");
        int64_t total = 0;
        bool first = true;

        if (!counts || !json_object_is_type(counts, json_type_object))
                return;
        json_object_object_foreach(counts, k, v) {
                (void) k;
                total += json_object_get_int64(v);
        }
        fprintf(f, "%*s: %" PRIi64, LABEL_WIDTH, "Receipts", total);
        json_object_object_foreach(counts, type, n) {
                if (json_object_get_int64(n) == 0)
                        continue;
                fprintf(f, "%s%" PRIi64 " %s", first ? ": " : ", ", json_object_get_int64(n), type);
                first = false;
        }
        fputc('\n', f);
}

void report_print(json_object *o, FILE *f, bool utc) {
        const char *kind = output_get_string(o, "report"), *s;
        json_object *net = output_get(output_get(o, "totals"), "net");
        int64_t shift = output_get_int(o, "shiftNumber") ?: output_get_int(o, "shift_number");
        bool open = kind && streq(kind, "open"), z = kind && streq(kind, "z");
        char when[TIMESTAMP_MAX];

        assert(o);
        assert(f);

        if (open) {
                if (get_bool(o, "already_open")) {
                        field(f, "Shift", "%" PRIi64 " was open already; no document was made", shift);
                        return;
                }
                field(f, "Shift", "%" PRIi64 " opened", shift);
        } else if (z) {
                if (get_bool(o, "already_closed"))
                        field(f, "Report", "Z, shift %" PRIi64 " was closed already; its figures:", shift);
                else
                        field(f, "Report", "Z, shift %" PRIi64 " closed", shift);
        } else if (output_get(o, "shift_open") && !get_bool(o, "shift_open"))
                field(f, "Report", "X, no shift open");
        else if ((s = output_get_string(o, "shift_open_time")))
                field(f, "Report", "X, shift %" PRIi64 " open since %s", shift,
                      timestamp_reformat(when, sizeof when, s, utc));
        else
                field(f, "Report", "X, shift %" PRIi64, shift);

        if ((s = output_get_string(o, "dateTime") ?: output_get_string(o, "date_time")))
                field(f, "Time", "%s", timestamp_reformat(when, sizeof when, s, utc));

        if (!open) {
                receipt_counts(o, f);
                field(f, "Sales", "%s", strna(output_get_string(o, "totalSales")));
                field(f, "Refunds", "%s", strna(output_get_string(o, "totalRefunds")));
                if (!amount_is_zero(s = output_get_string(o, "total_purchases")))
                        field(f, "Purchases", "%s", s);
                if (!amount_is_zero(s = output_get_string(o, "total_purchase_refunds")))
                        field(f, "Purchase refunds", "%s", s);
                /* Net by payment form: what came in minus what went out. */
                field(f, "Cash", "%s", strna(output_get_string(o, "cashTotal")));
                field(f, "Card", "%s", strna(output_get_string(o, "cardTotal")));
                if (!amount_is_zero(s = output_get_string(net, "prepayment")))
                        field(f, "Prepayment", "%s", s);
                if (!amount_is_zero(s = output_get_string(net, "credit")))
                        field(f, "Credit", "%s", s);
                if (!amount_is_zero(s = output_get_string(net, "other")))
                        field(f, "Other", "%s", s);
        }

        if ((open || z) && output_get_int(o, "fiscalDocumentNumber") > 0)
                field(f, "Fiscal document", "%" PRIi64 ", fiscal sign %s",
                      output_get_int(o, "fiscalDocumentNumber"), strna(output_get_string(o, "fiscalSign")));

        if (output_get(o, "offline"))
                field(f, "OFD", "%s, %" PRIi64 " document%s not confirmed yet",
                      get_bool(o, "offline") ? "unreachable (offline)" : "reachable",
                      output_get_int(o, "ofd_unsent"), output_get_int(o, "ofd_unsent") == 1 ? "" : "s");
}
