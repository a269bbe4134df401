/* SPDX-License-Identifier: MIT */
#pragma once

/* The fiscal register: the driver interface (a vtable whose functions run on the device's worker thread,
 * one document at a time) and the asynchronous front end on the sd-event loop: a queue of operations, a
 * per-operation timeout enforced from the loop, results and the register's state kept on the loop. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "macro.h"
#include "receipt.h"
#include "time-util.h"

#define DEVICE_DRIVER_DEFAULT "emulator"
#define DEVICE_TIMEOUT_DEFAULT (10 * USEC_PER_SEC)

/* Sizes of the register's identifiers as the FFD defines them (the configuration enforces the same). */
#define DEVICE_RECEIPT_ID_MAX 64U
#define DEVICE_FISCAL_SIGN_LEN 10U
#define DEVICE_FN_NUMBER_MAX 16U
#define DEVICE_REGISTRATION_NUMBER_MAX 20U
#define DEVICE_INN_MAX 12U
#define DEVICE_SERIAL_MAX 20U
#define DEVICE_QR_MAX 127U

/* Why an operation failed. Every fault but DEVICE_FAULT_TIMEOUT_UNKNOWN means that no document was made.
 * The errno that comes with it is device_fault_to_errno()'s, except for NONE, REJECTED and ERROR, which
 * carry the driver's own (e.g. -ENOENT: no document yet; -EINVAL: a receipt the register refuses). */
typedef enum DeviceFault {
        DEVICE_FAULT_NONE,              /* the failure says nothing about the register (e.g. -ENOENT) */
        DEVICE_FAULT_PAPER_OUT,         /* -ENOMEDIUM, until paper is loaded */
        DEVICE_FAULT_TIMEOUT_BEFORE,    /* -ETIMEDOUT, before the document was made: nothing printed */
        DEVICE_FAULT_TIMEOUT_UNKNOWN,   /* -ETIMEDOUT, after it was sent: it may have been made; match with
                                         * device_last_document() before printing it again */
        DEVICE_FAULT_FN_FULL,           /* -ENOSPC, the fiscal memory takes no more documents */
        DEVICE_FAULT_SHIFT_EXPIRED,     /* -ESTALE, the shift is older than 24 h: a Z report closes it */
        DEVICE_FAULT_NOT_CONNECTED,     /* -ENOTCONN */
        DEVICE_FAULT_REJECTED,          /* the register refused this request (bad document, shift closed) */
        DEVICE_FAULT_ERROR,             /* any other failure of the register or its driver */
        _DEVICE_FAULT_MAX,
        _DEVICE_FAULT_INVALID = -EINVAL,
} DeviceFault;

/* "paper-out", "timeout-before", "timeout-unknown", "fn-full", "shift-expired", ... */
const char *device_fault_to_string(DeviceFault f);
DeviceFault device_fault_from_string(const char *s);
/* A sentence for operators and health reports: "paper out", ... */
const char *device_fault_to_text(DeviceFault f);
/* The negative errno that goes with a fault; -EIO for NONE, REJECTED and ERROR. */
int device_fault_to_errno(DeviceFault f);

typedef enum DeviceState {
        DEVICE_STATE_READY,
        DEVICE_STATE_PRINTING,  /* a receipt is at the register */
        DEVICE_STATE_FAULT,     /* the last operation failed with a fault: device_get_fault() says which */
        DEVICE_STATE_UNKNOWN,   /* not opened yet, or an operation timed out and has not come back */
        _DEVICE_STATE_MAX,
        _DEVICE_STATE_INVALID = -EINVAL,
} DeviceState;

const char *device_state_to_string(DeviceState s);
DeviceState device_state_from_string(const char *s);

/* The fiscal attributes of one receipt, as the register made it. Fixed-size strings, so the document is
 * copied between threads by assignment. */
typedef struct DeviceDocument {
        char receipt_id[DEVICE_RECEIPT_ID_MAX + 1];     /* what the caller passed to print */
        uint32_t fiscal_document_number;                /* FD, tag 1040 */
        char fiscal_sign[DEVICE_FISCAL_SIGN_LEN + 1];   /* FS/ФП, tag 1077: 10 decimal digits */
        uint32_t shift_number;                          /* tag 1038 */
        uint32_t document_number_in_shift;              /* tag 1042 */
        char fn_number[DEVICE_FN_NUMBER_MAX + 1];       /* tag 1041 */
        char registration_number[DEVICE_REGISTRATION_NUMBER_MAX + 1]; /* tag 1037 */
        char inn[DEVICE_INN_MAX + 1];                   /* tag 1018 */
        char serial[DEVICE_SERIAL_MAX + 1];             /* tag 1013 */
        usec_t datetime;                                /* CLOCK_REALTIME, whole seconds, tag 1012 */
        int64_t total;                                  /* kopecks, tag 1020 */
        ReceiptType receipt_type;
        char qr[DEVICE_QR_MAX + 1];                     /* the FNS QR string */
} DeviceDocument;

/* {"fiscal_document_number": 17, "fiscal_sign": "0123456789", "fn_number": "...", "shift_number": 2,
 *  "document_number_in_shift": 5, "registration_number": "...", "inn": "...", "serial": "...",
 *  "datetime": "2026-11-29T03:17:26.000Z", "total": "1500.00", "receipt_type": "sale", "qr": "t=..."}
 * plus "receipt_id". The total is a decimal string, as in the canonical receipt: money never passes
 * through a double. */
int device_document_to_json(const DeviceDocument *doc, json_object **ret);

/* What the register says about itself. */
typedef struct DeviceStatus {
        DeviceFault condition;          /* a standing fault (PAPER_OUT, FN_FULL, SHIFT_EXPIRED) or NONE */
        bool shift_open;
        uint32_t shift_number;          /* the open shift, else the last one closed; 0: never opened */
        usec_t shift_open_usec;         /* CLOCK_REALTIME when the open shift was opened; 0 when closed */
        uint32_t last_fiscal_document;  /* 0: none yet */
        char fn_number[DEVICE_FN_NUMBER_MAX + 1];
        char serial[DEVICE_SERIAL_MAX + 1];
} DeviceStatus;

/* An X report (the shift so far, no side effects) or a Z report (and the shift is closed). */
typedef struct DeviceReport {
        bool closed;                    /* a Z report closed the shift */
        bool shift_open;                /* X report: whether a shift is open (else the figures are zero) */
        uint32_t shift_number;
        usec_t shift_open_usec;
        uint32_t n_receipts;
        int64_t sales_total;            /* kopecks: sales and corrections */
        int64_t refunds_total;          /* kopecks */
        uint32_t last_fiscal_document;
} DeviceReport;

/* The device's configuration: [Device] plus where the emulator keeps its fiscal memory. The strings are
 * copied by device_new(). */
typedef struct DeviceOptions {
        const char *driver;             /* NULL: DEVICE_DRIVER_DEFAULT */
        usec_t timeout;                 /* per operation; 0: DEVICE_TIMEOUT_DEFAULT */
        const char *serial;             /* NULL: the defaults of the configuration */
        const char *fn_number;
        const char *registration_number;
        const char *inn;

        /* The emulator. */
        const char *emulator_path;      /* its fiscal memory, e.g. <state dir>/emulator-fn.db; required */
        usec_t print_latency_min;
        usec_t print_latency_max;
        uint32_t emulator_fn_capacity;  /* documents the fiscal memory holds; 0: unlimited */
        DeviceFault fault;              /* a fault present from the start (NONE: none) ... */
        unsigned fault_count;           /* ... for this many documents; 0: until cleared */
        /* Tests only: the register's clock (CLOCK_REALTIME usec); NULL: the real one. Called on the worker
         * thread. */
        usec_t (*clock)(void *userdata);
        void *clock_userdata;
} DeviceOptions;

/* A driver. Every function but interrupt and inject_fault runs on the device's worker thread, one at a
 * time; they may block (for at most about the operation timeout). On failure they return a negative errno
 * and set *ret_fault (left DEVICE_FAULT_NONE when the failure says nothing about the register). */
typedef struct DeviceDriver {
        const char *name;
        int (*open)(void **ret_state, const DeviceOptions *o, DeviceFault *ret_fault);
        int (*status)(void *state, DeviceStatus *ret, DeviceFault *ret_fault);
        /* Makes the fiscal document for the canonical receipt JSON; only once it is made (persisted in the
         * fiscal memory) may it return success. */
        int (*print_receipt)(void *state, const char *receipt_id, const char *canonical_json,
                             DeviceDocument *ret, DeviceFault *ret_fault);
        /* The last document made, whichever call made it; -ENOENT when none. */
        int (*last_document)(void *state, DeviceDocument *ret, DeviceFault *ret_fault);
        int (*report_x)(void *state, DeviceReport *ret, DeviceFault *ret_fault);
        int (*report_z)(void *state, DeviceReport *ret, DeviceFault *ret_fault);
        void (*close)(void *state);

        /* May be NULL. Called from the loop thread while a worker function may be running. interrupt: the
         * device is going away, cut waits short (a document being made is still made). inject_fault: as
         * device_debug_inject_fault(). */
        void (*interrupt)(void *state);
        int (*inject_fault)(void *state, DeviceFault f, unsigned count);
} DeviceDriver;

/* NULL when there is no driver of that name. */
const DeviceDriver *device_driver_find(const char *name);

typedef struct Device Device;

/* For print and last_document: error < 0 and fault as above, or 0 and the document (valid during the call).
 * A print that timed out reports -ETIMEDOUT/DEVICE_FAULT_TIMEOUT_UNKNOWN from the loop's timer; its real
 * result, whenever it comes back, goes to the late callback. */
typedef void (*DevicePrintCallback)(Device *d, int error, DeviceFault fault, const DeviceDocument *doc,
                                    void *userdata);
typedef void (*DeviceStatusCallback)(Device *d, int error, DeviceFault fault, const DeviceStatus *status,
                                     void *userdata);
typedef void (*DeviceReportCallback)(Device *d, int error, DeviceFault fault, const DeviceReport *report,
                                     void *userdata);
/* The result of a print that was already reported as timed out: doc is the document it made (error 0), or
 * it failed after all (error < 0, doc NULL: nothing was made). */
typedef void (*DeviceLateCallback)(Device *d, const char *receipt_id, int error, DeviceFault fault,
                                   const DeviceDocument *doc, void *userdata);
/* Called when the state, the fault, the shift or the last fiscal document changed. */
typedef void (*DeviceChangeCallback)(Device *d, void *userdata);

/* Starts the worker thread, which opens the driver; does not block. Until that open returns the state is
 * "unknown"; if it fails, the state is "fault" and every operation tries to open again first.
 * -ENOPKG: no such driver; -EINVAL: an identifier longer than the FFD allows. */
int device_new(Device **ret, sd_event *event, const DeviceOptions *o);

/* Waits for the operation at the register to return (the driver is interrupted, so the emulator cuts its
 * latency short), closes the driver and joins the thread. The callbacks still owed are called from here:
 * the one at the register with its result, the queued ones with -ECANCELED (nothing was sent). So free the
 * device before what its callbacks touch; not to be called from a device callback. */
Device *device_free(Device *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(Device *, device_free);

/* Operations, queued in order and run one at a time. Each has `timeout` at the register; an operation that
 * waits behind one that timed out and has not come back fails after `timeout` in the queue with
 * -ETIMEDOUT/DEVICE_FAULT_TIMEOUT_BEFORE (it was never sent). Return 0 when queued (the callback will be
 * called exactly once), -EINVAL for a receipt id longer than DEVICE_RECEIPT_ID_MAX, -ENOMEM. */
int device_print(Device *d, const char *receipt_id, const char *canonical_json, DevicePrintCallback cb,
                 void *userdata);
int device_last_document(Device *d, DevicePrintCallback cb, void *userdata);
int device_status(Device *d, DeviceStatusCallback cb, void *userdata);
int device_report_x(Device *d, DeviceReportCallback cb, void *userdata);
int device_report_z(Device *d, DeviceReportCallback cb, void *userdata);

void device_set_late_callback(Device *d, DeviceLateCallback cb, void *userdata);
void device_set_change_callback(Device *d, DeviceChangeCallback cb, void *userdata);

/* Kept on the loop from the completions; reading them touches nothing else. */
const char *device_get_driver_name(Device *d);
DeviceState device_get_state(Device *d);
DeviceFault device_get_fault(Device *d);                /* as of the last completion; NONE when ready */
const char *device_get_last_fault_text(Device *d);      /* the last fault seen, even if gone; NULL: none */
uint32_t device_get_shift_number(Device *d);            /* 0: not known yet */
bool device_get_shift_open(Device *d);
usec_t device_get_shift_open_usec(Device *d);           /* 0: no shift open, or not known */
uint32_t device_get_last_fiscal_document(Device *d);    /* 0: none, or not known yet */
/* Nothing queued and nothing at the register (not even an operation that timed out). */
bool device_is_idle(Device *d);

/* {"driver", "state", "fault" (absent when none), "last_fault", "shift_number", "shift_open",
 *  "shift_open_time" (ISO 8601, absent when closed), "last_fiscal_document"} */
int device_state_to_json(Device *d, json_object **ret);

#if ENABLE_DEBUG_HOOKS
/* Makes the register fail with fault f on the next `count` operations it hits (0: until cleared),
 * replacing an earlier injection; NONE clears. Paper out hits receipts and reports, not connected every
 * operation, the others receipts only; a Z report ends an injected shift-expired. Takes effect at once,
 * even while an operation is at the register. -EINVAL: not a fault a register shows (REJECTED, ERROR);
 * -EOPNOTSUPP: the driver cannot. */
int device_debug_inject_fault(Device *d, DeviceFault f, unsigned count);
#endif
