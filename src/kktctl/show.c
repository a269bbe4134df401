/* SPDX-License-Identifier: MIT */
/* Owns the text view of one receipt in `kktctl show`: which of the daemon's members are shown, under which
 * label and in which order. Times are re-read and shown in local time (or UTC); nothing is re-computed. */

#include <inttypes.h>

#include "output.h"
#include "show.h"
#include "timestamp.h"

/* strlen("Fiscal document"), the longest label. */
#define LABEL_WIDTH 15

#define field(f, label, ...) output_field(f, LABEL_WIDTH, label, __VA_ARGS__)

/* A time member, shown only when the receipt has got that far. */
static void show_time(json_object *o, FILE *f, const char *label, const char *key, bool utc) {
        char when[TIMESTAMP_MAX];
        const char *s = output_get_string(o, key);

        if (s)
                field(f, label, "%s", timestamp_reformat(when, sizeof when, s, utc));
}

/* A nested document (the fiscal document, the OFD's answer) on one line, as the daemon sent it. */
static void show_document(json_object *o, FILE *f, const char *label, const char *key) {
        json_object *v = output_get(o, key);

        if (v)
                field(f, label, "%s", json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                                                 : json_object_to_json_string_ext(v, JSON_PLAIN));
}

static void show_item(json_object *item, FILE *f) {
        field(f, "Item", "%s, %s x %s = %s, %s", strna(output_get_string(item, "name")),
              strna(output_get_string(item, "quantity")), strna(output_get_string(item, "price")),
              strna(output_get_string(item, "total")), strna(output_get_string(item, "vat")));
}

static void show_payment(json_object *payment, FILE *f) {
        field(f, "Payment", "%s %s", strna(output_get_string(payment, "type")),
              strna(output_get_string(payment, "amount")));
}

/* One line per element of the receipt's array `key` (its items, its payments). */
static void show_each(json_object *body, const char *key, FILE *f, void (*show)(json_object *o, FILE *f)) {
        json_object *a = output_get(body, key);

        if (!a || !json_object_is_type(a, json_type_array))
                return;
        for (size_t i = 0; i < json_object_array_length(a); i++)
                show(json_object_array_get_idx(a, i), f);
}

void show_print_receipt(json_object *o, FILE *f, bool utc) {
        json_object *body = output_get(o, "receipt");
        const char *s;

        assert(o);
        assert(f);

        field(f, "Receipt ID", "%s", strna(output_get_string(o, "receipt_id")));
        field(f, "Status", "%s (buffer: %s, print: %s)", strna(output_get_string(o, "status")),
              strna(output_get_string(o, "buffer_status")), strna(output_get_string(o, "print_status")));
        field(f, "POS", "%s", strna(output_get_string(o, "pos_id") ?: output_get_string(body, "pos_id")));
        field(f, "Type", "%s", strna(output_get_string(o, "type") ?: output_get_string(body, "type")));
        show_time(o, f, "Created", "created_at", utc);
        show_time(o, f, "Updated", "updated_at", utc);
        show_time(o, f, "Printed", "printed_at", utc);
        show_time(o, f, "Synced", "synced_at", utc);
        show_time(o, f, "Next retry", "next_retry_at", utc);
        field(f, "Attempts", "%" PRIi64, output_get_int(o, "attempts"));
        if ((s = output_get_string(o, "last_error")))
                field(f, "Last error", "%s", s);
        if (output_get(o, "fiscal_doc"))
                show_document(o, f, "Fiscal document", "fiscal_doc");
        else
                field(f, "Fiscal document", "none yet");
        show_document(o, f, "OFD response", "ofd_response");
        show_each(body, "items", f, show_item);
        show_each(body, "payments", f, show_payment);
}
