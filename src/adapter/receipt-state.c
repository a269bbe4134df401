/* SPDX-License-Identifier: MIT */
/* Owns the names of the receipt states and their mapping from and to the store's buffer and print
 * status columns. */

#include "receipt-state.h"
#include "string-table.h"

static const char *const receipt_state_table[_RECEIPT_STATE_MAX] = {
        [RECEIPT_STATE_BUFFERED] = "buffered",
        [RECEIPT_STATE_PRINTED] = "printed",
        [RECEIPT_STATE_PRINT_FAILED] = "print_failed",
        [RECEIPT_STATE_PRINT_REJECTED] = "print_rejected",
        [RECEIPT_STATE_CANCELLED] = "cancelled",
        [RECEIPT_STATE_SYNCED] = "synced",
        [RECEIPT_STATE_DEAD_LETTER] = "dead_letter",
};

DEFINE_STRING_TABLE_LOOKUP(receipt_state, ReceiptState)

ReceiptState receipt_state_from_store(StoreStatus status, StorePrintStatus print_status) {
        /* The buffer's final and OFD states first: a synced or dead-lettered receipt was printed. */
        switch (status) {
        case STORE_STATUS_SYNCED:
                return RECEIPT_STATE_SYNCED;
        case STORE_STATUS_DLQ:
                return RECEIPT_STATE_DEAD_LETTER;
        case STORE_STATUS_CANCELLED:
                return RECEIPT_STATE_CANCELLED;
        default:
                break;
        }
        switch (print_status) {
        case STORE_PRINT_PRINTED:
                return RECEIPT_STATE_PRINTED;
        case STORE_PRINT_FAILED:
                return RECEIPT_STATE_PRINT_FAILED;
        case STORE_PRINT_REJECTED:
                return RECEIPT_STATE_PRINT_REJECTED;
        default:
                return RECEIPT_STATE_BUFFERED;
        }
}

int receipt_state_to_store(ReceiptState s, StoreStatus *ret_status, StorePrintStatus *ret_print_status) {
        static const struct {
                StoreStatus status;
                StorePrintStatus print_status;
        } table[_RECEIPT_STATE_MAX] = {
                [RECEIPT_STATE_BUFFERED] = { STORE_STATUS_PENDING, STORE_PRINT_UNPRINTED },
                [RECEIPT_STATE_PRINTED] = { STORE_STATUS_PENDING, STORE_PRINT_PRINTED },
                [RECEIPT_STATE_PRINT_FAILED] = { STORE_STATUS_PENDING, STORE_PRINT_FAILED },
                [RECEIPT_STATE_PRINT_REJECTED] = { STORE_STATUS_PENDING, STORE_PRINT_REJECTED },
                [RECEIPT_STATE_CANCELLED] = { STORE_STATUS_CANCELLED, STORE_PRINT_REJECTED },
                [RECEIPT_STATE_SYNCED] = { STORE_STATUS_SYNCED, STORE_PRINT_PRINTED },
                [RECEIPT_STATE_DEAD_LETTER] = { STORE_STATUS_DLQ, STORE_PRINT_PRINTED },
        };

        if (s < 0 || s >= _RECEIPT_STATE_MAX)
                return -EINVAL;
        *ret_status = table[s].status;
        *ret_print_status = table[s].print_status;
        return 0;
}
