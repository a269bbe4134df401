/* SPDX-License-Identifier: MIT */
#pragma once

/* The device front end the daemon uses (Device): a queue of operations handed to a driver one at a time,
 * a per-operation timeout enforced from the loop, and the register's state as the loop knows it from the
 * results. What a driver is, and what a register tells, is device-driver.h. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "device-driver.h"
#include "device-registry.h"
#include "macro.h"

typedef struct Device Device;

/* The result of an operation: valid during the call. */
typedef void (*DeviceCallback)(Device *d, const DeviceResult *result, void *userdata);
/* The result of a PRINT that was already reported as timed out: the document it made (error 0), or it
 * failed after all (nothing was made). */
typedef void (*DeviceLateCallback)(Device *d, const char *receipt_id, const DeviceResult *result, void *userdata);
/* Called when the state, the fault, the shift or what the last status said changed. */
typedef void (*DeviceChangeCallback)(Device *d, void *userdata);

/* Creates the driver and queues OPEN; does not block. Until OPEN returns the state is "unknown"; if it fails,
 * the state is "fault" and every operation is preceded by another OPEN.
 * -ENOPKG: no such driver; -EINVAL: an identifier longer than the FFD allows. */
int device_new(Device **ret, const DeviceContext *ctx, const DeviceOptions *o);

/* Interrupts the driver and frees it, which waits for the operation at the register. The callbacks still
 * owed are called from here: the one at the register with its result, the queued ones with -ECANCELED
 * (nothing was sent). Free the device before what its callbacks touch; not from a device callback. */
Device *device_free(Device *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(Device *, device_free);

/* Queues an operation; they run in order, one at a time. Each has `timeout` at the register; an operation
 * that waits behind one that timed out and has not come back fails after `timeout` in the queue with
 * -ETIMEDOUT/DEVICE_FAULT_TIMEOUT_BEFORE (it was never sent). Returns 0 when queued (cb is called exactly
 * once, never from inside this call), -EINVAL for a bad request (receipt id longer than
 * DEVICE_RECEIPT_ID_MAX, missing receipt), -ESHUTDOWN while freeing, -ENOMEM. */
int device_submit(Device *d, const DeviceRequest *req, DeviceCallback cb, void *userdata);

void device_set_late_callback(Device *d, DeviceLateCallback cb, void *userdata);
void device_set_change_callback(Device *d, DeviceChangeCallback cb, void *userdata);

/* Kept on the loop from the results; reading them touches nothing else. */
const char *device_get_driver_name(Device *d);
DeviceState device_get_state(Device *d);
DeviceFault device_get_fault(Device *d);                /* as of the last result; NONE when ready */
const char *device_get_last_fault_text(Device *d);      /* the last fault seen, even if gone; NULL: none */
/* The last status the register gave, updated by every document and report since; NULL before the first. */
const DeviceStatus *device_get_status(Device *d);
uint32_t device_get_shift_number(Device *d);            /* 0: not known yet */
bool device_get_shift_open(Device *d);
usec_t device_get_shift_open_usec(Device *d);           /* 0: no shift open, or not known */
uint32_t device_get_last_fiscal_document(Device *d);    /* 0: none, or not known yet */
/* Nothing queued and nothing at the register (not even an operation that timed out). */
bool device_is_idle(Device *d);

/* {"driver", "state", "fault" (absent when none), "last_fault", "shift_number", "shift_open",
 *  "shift_open_time" (ISO 8601, absent when closed), "last_fiscal_document", and from the last status:
 *  "model", "serial", "fn_number", "registration_number", "fn_valid_until", "fn_days_left", "fn_documents",
 *  "fn_capacity", "ofd_unsent", "ofd_first_unsent", "ofd_first_unsent_time", "ofd_unsent_days",
 *  "taxations", "shift": {receipts, totals}} */
int device_state_to_json(Device *d, json_object **ret);

#if ENABLE_DEBUG_HOOKS
/* Makes the register fail with fault f on the next `count` operations it hits (0: until cleared),
 * replacing an earlier injection; NONE clears. Takes effect at once, even while an operation is at the
 * register. -EINVAL: not a fault a register shows (ERROR); -EOPNOTSUPP: the driver cannot. */
int device_debug_inject_fault(Device *d, DeviceFault f, unsigned count);
#endif
