/* SPDX-License-Identifier: MIT */
/* Fuzz target for the receipt parser (receipt_parse_with(), what intake runs on every POST body): any bytes
 * give 0 or a documented error, never a crash or a leak; a parsed receipt keeps its sums consistent, and its
 * canonical texts (full and as given) parse back, under the same options, to the same canonical text. */

#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "macro.h"
#include "receipt.h"

/* A fixed moment (2026-03-02 09:00 UTC), so that a crasher replays the same way on any day. */
#define FUZZ_NOW (UINT64_C(1772442000) * USEC_PER_SEC)

static void check_round_trip(const Receipt *r, const ReceiptOptions *o, ReceiptCanonicalFlags flags) {
        _cleanup_(receipt_freep) Receipt *again = NULL;
        _cleanup_free_ char *text = NULL, *text_again = NULL, *detail = NULL;
        int k;

        k = receipt_canonical_with(r, flags, &text);
        if (k == -ENOMEM)
                return;
        FUZZ_CHECK(k >= 0 && text);

        k = receipt_parse_with(text, strlen(text), o, &again, &detail);
        if (k == -ENOMEM)
                return;
        if (k < 0)
                fprintf(stderr, "canonical text refused (%s): %s\n", strempty(detail), text);
        FUZZ_CHECK(k >= 0);

        k = receipt_canonical_with(again, flags, &text_again);
        if (k == -ENOMEM)
                return;
        FUZZ_CHECK(k >= 0);
        if (!streq(text, text_again))
                fprintf(stderr, "first:  %s\nsecond: %s\n", text, text_again);
        FUZZ_CHECK(streq(text, text_again));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(receipt_freep) Receipt *r = NULL;
        _cleanup_free_ char *detail = NULL;
        char fingerprint[65];
        /* The shop's additions the daemon may pass: a default cashier, a taxation, both unknown-field
         * policies; the first byte picks, the rest is the body. */
        ReceiptOptions o = { .now = FUZZ_NOW };
        uint8_t mode;
        int k;

        if (size < 1)
                return 0;
        mode = data[0];
        data++, size--;
        if (mode & 1)
                o.unknown_fields = RECEIPT_UNKNOWN_FIELDS_IGNORE;
        if (mode & 2) {
                o.default_cashier = "Иванова И. И.";
                o.default_cashier_inn = "500100732259";
        }
        if (mode & 4)
                o.default_taxation = TAXATION_USN_INCOME;
        if (mode & 8) {
                o.max_items = 3;
                o.max_payments = 2;
        }

        k = receipt_parse_with((const char *) data, size, &o, &r, &detail);
        if (k == -ENOMEM)
                return 0;
        if (k < 0) {
                FUZZ_CHECK(IN_SET(k, -EBADMSG, -EINVAL));
                FUZZ_CHECK(!r);
                FUZZ_CHECK(detail); /* the 400/422 names what was wrong */
                return 0;
        }
        FUZZ_CHECK(r && !detail);
        FUZZ_CHECK(r->n_items >= 1 && r->n_items <= (o.max_items ?: 1000));
        FUZZ_CHECK(r->n_payments <= (o.max_payments ?: 16));
        FUZZ_CHECK(r->total >= 0 && r->paid >= r->total && r->change == r->paid - r->total);

        check_round_trip(r, &o, 0);
        check_round_trip(r, &o, RECEIPT_CANONICAL_AS_GIVEN);

        {
                _cleanup_free_ char *text = NULL;

                if (receipt_canonical(r, &text) >= 0)
                        FUZZ_CHECK(receipt_fingerprint(text, fingerprint) >= 0 && strlen(fingerprint) == 64);
        }
        return 0;
}
