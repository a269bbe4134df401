/* SPDX-License-Identifier: MIT */
#pragma once

/* A receipt's state as clients see it: the one vocabulary of HTTP answers, intake's stored first answers,
 * the D-Bus signals and the printer's events. The store keeps its own columns (buffer and print status);
 * the mapping between the two is here, once. The names are on the wire: clients compare them. */

#include <errno.h>

#include "store.h"

typedef enum ReceiptState {
        RECEIPT_STATE_BUFFERED,       /* durable, not printed yet (or back in the print queue) */
        RECEIPT_STATE_PRINTED,        /* printed, on its way to the OFD */
        RECEIPT_STATE_PRINT_FAILED,   /* a fault of the register; it stays queued and is retried */
        RECEIPT_STATE_PRINT_REJECTED, /* the register refused it; an admin retries or cancels it */
        RECEIPT_STATE_CANCELLED,      /* cancelled by an admin after a rejection; final */
        RECEIPT_STATE_SYNCED,         /* acknowledged by the OFD */
        RECEIPT_STATE_DEAD_LETTER,    /* the OFD leg gave up; an admin retries or resolves it */
        _RECEIPT_STATE_MAX,
        _RECEIPT_STATE_INVALID = -EINVAL,
} ReceiptState;

const char *receipt_state_to_string(ReceiptState s);
ReceiptState receipt_state_from_string(const char *s);

/* The state of a stored receipt with these columns. */
ReceiptState receipt_state_from_store(StoreStatus status, StorePrintStatus print_status);
static inline ReceiptState receipt_state_of(const StoreReceipt *r) {
        return receipt_state_from_store(r->status, r->print_status);
}

/* Columns that receipt_state_from_store() turns into s: the inverse, for an answer stored as its state.
 * -EINVAL for an invalid s. */
int receipt_state_to_store(ReceiptState s, StoreStatus *ret_status, StorePrintStatus *ret_print_status);
