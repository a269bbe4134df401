/* SPDX-License-Identifier: MIT */
/* The receipt states: their names on the wire (clients compare them), and the mapping from the store's
 * columns and back, which intake's stored first answers rely on. */

#include "receipt-state.h"
#include "tests.h"

static void test_names_are_the_wire_strings(void) {
        static const char *const names[_RECEIPT_STATE_MAX] = {
                [RECEIPT_STATE_BUFFERED] = "buffered",       [RECEIPT_STATE_PRINTED] = "printed",
                [RECEIPT_STATE_PRINT_FAILED] = "print_failed", [RECEIPT_STATE_PRINT_REJECTED] = "print_rejected",
                [RECEIPT_STATE_CANCELLED] = "cancelled",     [RECEIPT_STATE_SYNCED] = "synced",
                [RECEIPT_STATE_DEAD_LETTER] = "dead_letter",
        };

        for (ReceiptState s = 0; s < _RECEIPT_STATE_MAX; s++) {
                ASSERT_STREQ(receipt_state_to_string(s), names[s]);
                ASSERT_EQ(receipt_state_from_string(names[s]), s);
        }
        ASSERT_NULL(receipt_state_to_string(_RECEIPT_STATE_MAX));
        ASSERT_NULL(receipt_state_to_string(_RECEIPT_STATE_INVALID));
        ASSERT_EQ(receipt_state_from_string("pending"), _RECEIPT_STATE_INVALID);
        ASSERT_EQ(receipt_state_from_string(NULL), _RECEIPT_STATE_INVALID);
}

static void test_store_columns_map_to_one_state(void) {
        /* The buffer's OFD and final states win over the print status. */
        ASSERT_EQ(receipt_state_from_store(STORE_STATUS_SYNCED, STORE_PRINT_PRINTED), RECEIPT_STATE_SYNCED);
        ASSERT_EQ(receipt_state_from_store(STORE_STATUS_DLQ, STORE_PRINT_PRINTED), RECEIPT_STATE_DEAD_LETTER);
        ASSERT_EQ(receipt_state_from_store(STORE_STATUS_CANCELLED, STORE_PRINT_REJECTED),
                  RECEIPT_STATE_CANCELLED);
        ASSERT_EQ(receipt_state_from_store(STORE_STATUS_PENDING, STORE_PRINT_UNPRINTED), RECEIPT_STATE_BUFFERED);
        ASSERT_EQ(receipt_state_from_store(STORE_STATUS_PENDING, STORE_PRINT_PRINTED), RECEIPT_STATE_PRINTED);
        ASSERT_EQ(receipt_state_from_store(STORE_STATUS_PENDING, STORE_PRINT_FAILED), RECEIPT_STATE_PRINT_FAILED);
        ASSERT_EQ(receipt_state_from_store(STORE_STATUS_PENDING, STORE_PRINT_REJECTED),
                  RECEIPT_STATE_PRINT_REJECTED);
        /* A failed send of a printed receipt is still on its way to the OFD. */
        ASSERT_EQ(receipt_state_from_store(STORE_STATUS_FAILED, STORE_PRINT_PRINTED), RECEIPT_STATE_PRINTED);
}

static void test_every_state_goes_to_the_store_and_back(void) {
        StoreStatus st;
        StorePrintStatus pst;

        for (ReceiptState s = 0; s < _RECEIPT_STATE_MAX; s++) {
                ASSERT_OK(receipt_state_to_store(s, &st, &pst));
                ASSERT_EQ(receipt_state_from_store(st, pst), s);
        }
        ASSERT_ERROR(receipt_state_to_store(_RECEIPT_STATE_INVALID, &st, &pst), EINVAL);
        ASSERT_ERROR(receipt_state_to_store(_RECEIPT_STATE_MAX, &st, &pst), EINVAL);
}

int main(void) {
        TEST_RUN(test_names_are_the_wire_strings);
        TEST_RUN(test_store_columns_map_to_one_state);
        TEST_RUN(test_every_state_goes_to_the_store_and_back);
        return 0;
}
