/* SPDX-License-Identifier: MIT */
#pragma once

/* MESSAGE_ID= values of the journal entries an operator acts on; each has an entry in the catalog
 * (man/kkt-adapter.catalog). Never change a published id: tools and alerts match on them. */

#include "receipt-state.h"

#define MESSAGE_ID_STARTED      "55f78f4a987a4ce49299121c18098547"
#define MESSAGE_ID_STOPPING     "1fbc056ae4a949bb8f8063779674ccb4"
#define MESSAGE_ID_RELOADED     "0e9d3b6454694ee6bff6bd2d8cb438a5"
#define MESSAGE_ID_RELOAD_FAILED "3f8fad31b4b64a6ab29874b19175e6b1"
#define MESSAGE_ID_ONLINE       "6802adaf9cac4b49bd10a268e5c8db4c"
#define MESSAGE_ID_OFFLINE      "1cd66e3b8d9e4bd8997c844817358962"
#define MESSAGE_ID_BUFFER_FULL  "0ef033905c0440208a05197536062e5c"
#define MESSAGE_ID_DEAD_LETTERED "e4e7c41abe5f4070896f478162d415a2"
#define MESSAGE_ID_DEVICE_FAULT "21a46c63b2994964ab06cf1dc46094bc"
#define MESSAGE_ID_BREAKER_OPENED "7b3c1df37ef84daf890bbd5368c09a2d"
#define MESSAGE_ID_BREAKER_CLOSED "7230587086e84ceea23c5c081cbabd8a"
#define MESSAGE_ID_PRINT_REJECTED "e79af5ce732e4e8ba1193ba82e9152b4"
#define MESSAGE_ID_SHIFT_EXPIRING "a538088e0fed4d00a3ed64748df6b135"
#define MESSAGE_ID_SHIFT_OPENED "e86a3b96bf684d48b5462077523cb844"
#define MESSAGE_ID_SHIFT_CLOSED "27d3800fd06848a9ad0107b448e53866"
#define MESSAGE_ID_FN_WARNING   "9a0550b506494694a4976d087899d3de"
#define MESSAGE_ID_PRINT_STUCK  "2041a6e86ca6459f91b4b3ab5f853e63"

/* The fields of every journal entry about one receipt, for LOG_FIELDS(): its id, and its state as clients
 * see it after the event (receipt-state.h: "buffered", "printed", "print_failed", "print_rejected",
 * "cancelled", "synced", "dead_letter"). journalctl and Loki queries select on them (README, "Monitoring a
 * fleet"). LOG_RECEIPT_STATE_FIELDS() takes the ReceiptState; LOG_RECEIPT_FIELDS() its name. */
#define LOG_RECEIPT_FIELDS(id, status) { "RECEIPT_ID", (id) }, { "RECEIPT_STATUS", (status) }
#define LOG_RECEIPT_STATE_FIELDS(id, state) LOG_RECEIPT_FIELDS(id, receipt_state_to_string(state))
