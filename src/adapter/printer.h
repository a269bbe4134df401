/* SPDX-License-Identifier: MIT */
#pragma once

/* The print phase: every durable receipt that is not printed yet goes to the fiscal register, one document
 * at a time and in HLC order; the fiscal attributes are stored before anyone hears "printed"; failures are
 * flagged and retried; an unknown outcome is matched against the register's last document before printing
 * again, so nothing is printed twice. */

#include <systemd/sd-event.h>

#include "device.h"
#include "macro.h"
#include "store.h"

typedef struct Printer Printer;

/* error 0: printed, fiscal_json is the stored fiscal document. Otherwise the receipt stays durable and
 * unprinted, and `reason` says why (paper out, ...); it is retried. */
typedef void (*PrinterWaiterCallback)(Printer *p, const char *receipt_id, int error, const char *fiscal_json,
                                      const char *reason, void *userdata);

/* For the Manager: "printed" or "print_failed" (with the reason) for every receipt, waiter or not. */
typedef void (*PrinterEventCallback)(Printer *p, const char *receipt_id, const char *status, const char *reason,
                                     void *userdata);

typedef struct PrinterStats {
        uint64_t printed, failed_attempts, matched_after_unknown;
        unsigned queued;
} PrinterStats;

int printer_new(Printer **ret, sd_event *event, Store *store, Device *device);
Printer *printer_free(Printer *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(Printer *, printer_free);

void printer_set_event_callback(Printer *p, PrinterEventCallback cb, void *userdata);

/* Queues every pending receipt that is not printed (after a restart or a crash) and starts printing. */
int printer_start(Printer *p);

/* Queues a receipt that was just made durable; the waiter (may be NULL) hears once about its first attempt. */
int printer_enqueue(Printer *p, const char *receipt_id, const char *canonical_json, PrinterWaiterCallback cb,
                    void *userdata);

/* The waiter of this receipt is not interested any more (it answered on its own); printing goes on. */
void printer_forget_waiter(Printer *p, const char *receipt_id);

/* Starts no new document; the one at the register finishes. */
void printer_stop(Printer *p);
bool printer_is_idle(Printer *p);
const PrinterStats *printer_get_stats(Printer *p);
