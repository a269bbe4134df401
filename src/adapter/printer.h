/* SPDX-License-Identifier: MIT */
#pragma once

/* The print phase: every durable receipt that is not printed yet goes to the fiscal register, one document
 * at a time and in order; the fiscal attributes are stored before anyone hears "printed"; the register's
 * faults are retried, its refusals of one document set that receipt aside (print_rejected) so the others
 * print; after an unknown outcome the register is asked whether it made the document before anything is
 * printed again. The shift follows the receipts: a closed shift is opened before a receipt, a Z report
 * queued behind the receipts before it, and no receipt is sent into a shift about to pass 24 hours. */

#include <systemd/sd-event.h>

#include "device.h"
#include "macro.h"
#include "receipt-state.h"
#include "store.h"

typedef struct Printer Printer;

/* The first outcome of a receipt's print: RECEIPT_STATE_PRINTED (fiscal_json is the stored fiscal document),
 * RECEIPT_STATE_PRINT_FAILED (a fault of the register; it stays queued and is retried) or
 * RECEIPT_STATE_PRINT_REJECTED (the register refused it for good; an admin retries or cancels it). reason
 * says why it failed. */
typedef void (*PrinterWaiterCallback)(Printer *p, const char *receipt_id, ReceiptState state,
                                      const char *fiscal_json, const char *reason, void *userdata);

/* For the Manager, about every receipt, waiter or not: printed, print_failed, print_rejected, buffered (back
 * in the queue after an admin's retry), cancelled. */
typedef void (*PrinterEventCallback)(Printer *p, const char *receipt_id, ReceiptState state, const char *reason,
                                     void *userdata);

/* A shift document the printer had made (an opening before a receipt, a Z report), or a Z that failed. */
typedef void (*PrinterShiftCallback)(Printer *p, DeviceOperation op, const DeviceResult *result, void *userdata);

/* The result of a Z report queued with printer_close_shift(): error 0 (made), -EALREADY (that shift was
 * closed already; the report is its Z where the register still has it), or another error. */
typedef void (*PrinterReportCallback)(Printer *p, const DeviceResult *result, void *userdata);

typedef struct PrinterStats {
        uint64_t printed, failed_attempts, matched_after_unknown, rejected;
        unsigned queued;
} PrinterStats;

typedef struct PrinterOptions {
        /* Close the shift with a Z report, before a receipt would be printed into a shift that reaches
         * 24 hours within `shift_margin`, instead of holding the receipt until someone closes it. */
        bool auto_close;
        usec_t shift_margin;            /* 0: PRINTER_SHIFT_MARGIN_DEFAULT */
} PrinterOptions;

#define PRINTER_SHIFT_MARGIN_DEFAULT (5 * USEC_PER_MINUTE)

int printer_new(Printer **ret, sd_event *event, Store *store, Device *device, const PrinterOptions *o);
Printer *printer_free(Printer *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(Printer *, printer_free);

void printer_set_options(Printer *p, const PrinterOptions *o);
void printer_set_event_callback(Printer *p, PrinterEventCallback cb, void *userdata);
void printer_set_shift_callback(Printer *p, PrinterShiftCallback cb, void *userdata);

/* Queues every pending receipt that is not printed (after a restart or a crash), each to be asked about at
 * the register before it is printed, and starts printing. */
int printer_start(Printer *p);

/* Queues a receipt that was just made durable; the waiter (may be NULL) hears once about its first attempt.
 * -EEXIST: queued already. */
int printer_enqueue(Printer *p, const char *receipt_id, const char *canonical_json, PrinterWaiterCallback cb,
                    void *userdata);

/* The waiter of this receipt is not interested any more (it answered on its own); printing goes on. */
void printer_forget_waiter(Printer *p, const char *receipt_id);

/* Queues a Z report behind the receipts queued so far (they print first, into the shift it closes). A receipt
 * that the 24-hour rule holds back lets a queued Z report go first. cb (may be NULL) hears once.
 * -EBUSY: a Z report is queued or at the register already. */
int printer_close_shift(Printer *p, const char *cashier, const char *cashier_inn, PrinterReportCallback cb,
                        void *userdata);
/* A queued Z report has no waiter any more (its requester stopped waiting); it is still made. */
void printer_forget_report(Printer *p, void *userdata);
bool printer_close_pending(Printer *p);

/* An admin puts a rejected receipt back into the queue, or cancels it for good (never printed, never sent).
 * Errors as store_retry_print() and store_cancel_receipt(). */
typedef void (*PrinterAdminCallback)(Printer *p, int error, const StoreReceipt *receipt, void *userdata);
int printer_retry_rejected(Printer *p, const char *receipt_id, const char *who, PrinterAdminCallback cb,
                           void *userdata);
int printer_cancel_rejected(Printer *p, const char *receipt_id, const char *note, const char *who,
                            PrinterAdminCallback cb, void *userdata);

/* Whether the 24-hour rule holds receipts back now: the shift reaches 24 hours within the margin, or the
 * register says it did. */
bool printer_shift_guard(Printer *p);

/* How long the head of the queue has waited for the register (0: nothing queued). */
usec_t printer_head_wait(Printer *p);

/* Starts no new document; the one at the register finishes. */
void printer_stop(Printer *p);
bool printer_is_idle(Printer *p);
const PrinterStats *printer_get_stats(Printer *p);
