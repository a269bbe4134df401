/* SPDX-License-Identifier: MIT */
#pragma once

/* The fiscal register's driver interface: what a driver is (DeviceDriver: asynchronous operations started on
 * the sd-event loop, one at a time, each finishing exactly once), what it is given (DeviceOptions,
 * DeviceContext) and what it tells (documents, reports, status), with their names and JSON. Drivers include
 * this and nothing above it; the front end the daemon uses (Device) is device.h.
 *
 * Writing a driver. A driver implements every operation of DeviceOperation for its register:
 *   - start() is called on the loop and must not block. It either finishes at once or later, on the loop,
 *     through done(); never twice, never from inside start() itself after having returned an error.
 *   - A driver that must block (a serial line, a vendor library, SQLite) runs its work on a thread of its
 *     own: device-thread.h does that for it, see the emulator.
 *   - A driver that speaks a network protocol runs on the loop through curl-glue (DeviceContext.glue).
 *   - Never two fiscal documents for one receipt: PRINT is only called for a receipt that the register has
 *     not made yet as far as the caller knows; after any unknown outcome (timeout, crash, lost answer) the
 *     caller first asks FIND, and only prints when FIND says -ENOENT. FIND is the driver's decision: the
 *     emulator looks its document journal up by receipt id, a real register by what it keeps (a request
 *     id derived from the receipt id, its last fiscal document...). When FIND cannot decide, it fails with a
 *     fault and the caller asks again later: it never prints on a guess.
 *   - CLOSE_SHIFT is idempotent per shift: asked to close shift N when N is closed already, it answers
 *     -EALREADY with that shift's figures where the register still has them, never a second Z report.
 * The emulator (device-emulator.c) is the reference for every operation. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "curl-glue.h"
#include "macro.h"
#include "receipt.h"
#include "time-util.h"

#define DEVICE_DRIVER_DEFAULT "emulator"
#define DEVICE_TIMEOUT_DEFAULT (10 * USEC_PER_SEC)
/* A register refuses sales in a shift open for 24 hours or more (54-FZ, art. 4.3). */
#define DEVICE_SHIFT_MAX_USEC (24 * USEC_PER_HOUR)

/* Sizes of the register's identifiers as the FFD defines them (the configuration enforces the same). */
#define DEVICE_RECEIPT_ID_MAX 64U
#define DEVICE_FISCAL_SIGN_LEN 10U
#define DEVICE_FN_NUMBER_MAX 16U
#define DEVICE_REGISTRATION_NUMBER_MAX 20U
#define DEVICE_INN_MAX 12U
#define DEVICE_SERIAL_MAX 20U
#define DEVICE_MODEL_MAX 63U
#define DEVICE_QR_MAX 127U
#define DEVICE_CASHIER_MAX 64U

/* Why an operation failed. Every fault but DEVICE_FAULT_TIMEOUT_UNKNOWN means that no document was made.
 * The errno that comes with it is device_fault_to_errno()'s, except for NONE, REJECTED and ERROR, which
 * carry the driver's own (e.g. -ENOENT: no such document; -EALREADY: shift closed already). */
typedef enum DeviceFault {
        DEVICE_FAULT_NONE,              /* the failure says nothing about the register (e.g. -ENOENT) */
        DEVICE_FAULT_PAPER_OUT,         /* -ENOMEDIUM, until paper is loaded */
        DEVICE_FAULT_TIMEOUT_BEFORE,    /* -ETIMEDOUT, before the document was made: nothing printed */
        DEVICE_FAULT_TIMEOUT_UNKNOWN,   /* -ETIMEDOUT, after it was sent: it may have been made; ask FIND
                                         * before printing it again */
        DEVICE_FAULT_FN_FULL,           /* -ENOSPC, the fiscal drive takes no more documents (full, expired) */
        DEVICE_FAULT_SHIFT_EXPIRED,     /* -ESTALE, the shift is older than 24 h: a Z report closes it */
        DEVICE_FAULT_NOT_CONNECTED,     /* -ENOTCONN */
        DEVICE_FAULT_REJECTED,          /* the register refused this request for good (bad document) */
        DEVICE_FAULT_ERROR,             /* any other failure of the register or its driver */
        DEVICE_FAULT_COVER_OPEN,        /* -EAGAIN, until the cover is closed */
        DEVICE_FAULT_OFD_BLOCKED,       /* -EKEYEXPIRED, documents unsent to the OFD for 30 days: the fiscal
                                         * drive blocks until they are sent */
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
/* Whether a receipt that failed with this fault should leave the print queue: only a rejection of the
 * document itself. Everything else (paper, cover, link, timeouts, a full drive, an expired shift) is the
 * register's state, which the next receipt would meet as well: retried. */
bool device_fault_is_permanent(DeviceFault f);

typedef enum DeviceState {
        DEVICE_STATE_READY,
        DEVICE_STATE_PRINTING,  /* a document is at the register */
        DEVICE_STATE_FAULT,     /* the last operation failed with a fault: device_get_fault() says which */
        DEVICE_STATE_UNKNOWN,   /* not opened yet, or an operation timed out and has not come back */
        _DEVICE_STATE_MAX,
        _DEVICE_STATE_INVALID = -EINVAL,
} DeviceState;

const char *device_state_to_string(DeviceState s);
DeviceState device_state_from_string(const char *s);

/* Money by payment form (kopecks), as registers count it. Cash is what stays in the drawer: cash received
 * minus the change given. */
typedef enum DevicePaymentForm {
        DEVICE_PAYMENT_CASH,            /* tag 1031 */
        DEVICE_PAYMENT_ELECTRONIC,      /* tag 1081 */
        DEVICE_PAYMENT_PREPAYMENT,      /* tag 1215 */
        DEVICE_PAYMENT_CREDIT,          /* tag 1216 */
        DEVICE_PAYMENT_OTHER,           /* tag 1217 */
        _DEVICE_PAYMENT_MAX,
        _DEVICE_PAYMENT_INVALID = -EINVAL,
} DevicePaymentForm;

const char *device_payment_form_to_string(DevicePaymentForm f);
DevicePaymentForm device_payment_form_from_string(const char *s);

/* A shift's counters for one receipt type. */
typedef struct DeviceTypeTotals {
        uint32_t count;
        int64_t total;                  /* kopecks, the sum of tag 1020 */
        int64_t payments[_DEVICE_PAYMENT_MAX];
} DeviceTypeTotals;

typedef struct DeviceTotals {
        DeviceTypeTotals by_type[_RECEIPT_TYPE_MAX];
} DeviceTotals;

/* Receipts of every type in the shift. */
uint32_t device_totals_receipts(const DeviceTotals *t);
/* Money that came in by one payment form, net: sales and returns of purchases add, returns of sales and
 * purchases subtract (corrections count as what they correct). */
int64_t device_totals_net(const DeviceTotals *t, DevicePaymentForm f);
/* Adds one receipt to the totals: its type, total and payments by form, cash net of the change given;
 * -EOVERFLOW. */
int device_totals_add(DeviceTotals *t, ReceiptType type, int64_t total, const int64_t payments[static _DEVICE_PAYMENT_MAX]);
/* A shift's totals as JSON: per type {count, total, payments by form} and the net per payment form. */
int device_totals_to_json(const DeviceTotals *t, json_object **ret);

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
        int64_t change;                                 /* kopecks, cash given back; 0: none */
        ReceiptType receipt_type;
        char qr[DEVICE_QR_MAX + 1];                     /* the FNS QR string */
} DeviceDocument;

/* {"fiscal_document_number": 17, "fiscal_sign": "0123456789", "fn_number": "...", "shift_number": 2,
 *  "document_number_in_shift": 5, "registration_number": "...", "inn": "...", "serial": "...",
 *  "datetime": "2026-11-29T03:17:26.000Z", "total": 1500.00, "change": "0.50" (when any),
 *  "receipt_type": "sale", "qr": "t=..."} plus "receipt_id", and the prototype's keys (below). "total" is a
 * JSON number token written from kopecks ("1500.00", never through a double), as the prototype's was; the
 * other amounts are decimal strings. */
int device_document_to_json(const DeviceDocument *doc, json_object **ret);

/* Adds the prototype's keys to a document of ours where they are missing, for its clients:
 * "fiscal_doc_number" (= fiscal_document_number), "fiscal_datetime" (= datetime), "qr_code_data" (= qr),
 * "kkt_number" (= serial), "rn_kkt" (= registration_number), "receipt_number" (= document_number_in_shift),
 * "ofd_name" (empty: the register does not tell us) and "total" as a JSON number (a document stored before
 * had it as a string). fiscal_sign, fn_number, inn and shift_number have the same names in both. -EBADMSG
 * for a "total" string that is not an amount. */
int device_document_add_prototype_keys(json_object *doc);

typedef enum DeviceReportType {
        DEVICE_REPORT_X,        /* the shift so far; not a fiscal document, changes nothing */
        DEVICE_REPORT_Z,        /* closes the shift: a fiscal document */
        DEVICE_REPORT_OPEN,     /* opens a shift: a fiscal document */
        _DEVICE_REPORT_MAX,
        _DEVICE_REPORT_INVALID = -EINVAL,
} DeviceReportType;

/* What the register tells of its exchange with the OFD: documents its fiscal drive has not had confirmed. */
typedef struct DeviceOfdQueue {
        uint32_t unsent;                /* documents not confirmed by the OFD */
        uint32_t first_unsent;          /* FD number of the oldest; 0: none */
        usec_t first_unsent_usec;       /* CLOCK_REALTIME when it was made; 0: none */
} DeviceOfdQueue;

typedef struct DeviceReport {
        DeviceReportType type;
        bool shift_open;                /* X: whether a shift is open (else the figures are zero) */
        uint32_t shift_number;
        usec_t shift_open_usec;         /* CLOCK_REALTIME when the shift was opened */
        usec_t datetime;                /* when the report was made (whole seconds) */
        uint32_t fiscal_document_number; /* Z and open: its FD; X: 0 */
        char fiscal_sign[DEVICE_FISCAL_SIGN_LEN + 1]; /* Z and open; X: "" */
        uint32_t last_fiscal_document;  /* the register's last FD after the report */
        DeviceTotals totals;            /* X and Z: the shift's receipts; open: zero */
        DeviceOfdQueue ofd;
} DeviceReport;

const char *device_report_type_to_string(DeviceReportType t);
DeviceReportType device_report_type_from_string(const char *s);

/* What the register says about itself. Fields a driver cannot read stay 0 / "". */
typedef struct DeviceStatus {
        DeviceFault condition;          /* a standing fault (PAPER_OUT, COVER_OPEN, FN_FULL, SHIFT_EXPIRED,
                                         * OFD_BLOCKED) or NONE */
        bool shift_open;
        uint32_t shift_number;          /* the open shift, else the last one closed; 0: never opened */
        usec_t shift_open_usec;         /* CLOCK_REALTIME when the open shift was opened; 0 when closed */
        DeviceTotals shift_totals;      /* the open shift's receipts; zero when closed */
        uint32_t last_fiscal_document;  /* 0: none yet */
        char model[DEVICE_MODEL_MAX + 1];
        char serial[DEVICE_SERIAL_MAX + 1];
        char fn_number[DEVICE_FN_NUMBER_MAX + 1];
        char registration_number[DEVICE_REGISTRATION_NUMBER_MAX + 1];
        char inn[DEVICE_INN_MAX + 1];
        usec_t fn_valid_until;          /* CLOCK_REALTIME the fiscal drive expires; 0: unknown */
        uint32_t fn_documents;          /* documents the drive holds; with fn_capacity its fullness */
        uint32_t fn_capacity;           /* 0: unknown */
        DeviceOfdQueue ofd;
        unsigned taxations;             /* Taxation bits the register is registered for; 0: unknown */
} DeviceStatus;

typedef enum DeviceOperation {
        DEVICE_OP_OPEN,         /* connect, then as STATUS */
        DEVICE_OP_STATUS,       /* -> status */
        DEVICE_OP_PRINT,        /* receipt_id, receipt_json -> doc */
        DEVICE_OP_FIND,         /* receipt_id, receipt_json -> doc, or -ENOENT: not made */
        DEVICE_OP_OPEN_SHIFT,   /* cashier -> report (type OPEN); -EALREADY: a shift is open (report: none) */
        DEVICE_OP_REPORT_X,     /* cashier -> report (type X); zero figures when no shift is open */
        DEVICE_OP_CLOSE_SHIFT,  /* shift_number (0: the open one), cashier -> report (type Z); -EALREADY
                                 * with the report of that shift's Z when it is closed already (where the
                                 * register still knows it, else zero figures); -ENOENT: never opened */
        DEVICE_OP_DEBUG,        /* test builds: receipt_json is a JSON object of driver settings */
        _DEVICE_OP_MAX,
        _DEVICE_OP_INVALID = -EINVAL,
} DeviceOperation;

const char *device_operation_to_string(DeviceOperation o);
DeviceOperation device_operation_from_string(const char *s);

/* One operation for a driver. The strings stay valid until done() was called. */
typedef struct DeviceRequest {
        DeviceOperation op;
        const char *receipt_id;         /* PRINT, FIND */
        const char *receipt_json;       /* PRINT, FIND: the canonical receipt; DEBUG: settings */
        uint32_t shift_number;          /* CLOSE_SHIFT */
        const char *cashier;            /* OPEN_SHIFT, REPORT_X, CLOSE_SHIFT: tag 1021; NULL: the default */
        const char *cashier_inn;        /* tag 1203; NULL: the default */
} DeviceRequest;

/* What an operation brought back. */
typedef struct DeviceResult {
        int error;                      /* 0 or a negative errno */
        DeviceFault fault;              /* NONE on success */
        char message[128];              /* on failure, the register's own words, if any ("" when none) */
        DeviceDocument doc;             /* PRINT, FIND */
        DeviceReport report;            /* OPEN_SHIFT, REPORT_X, CLOSE_SHIFT */
        DeviceStatus status;            /* OPEN, STATUS; after the others when have_status */
        bool have_status;               /* status holds what the register says now */
} DeviceResult;

/* The device's configuration: [Device]. The strings are copied by device_new(). */
typedef struct DeviceOptions {
        const char *driver;             /* NULL: DEVICE_DRIVER_DEFAULT */
        usec_t timeout;                 /* per operation; 0: DEVICE_TIMEOUT_DEFAULT */
        const char *serial;             /* NULL: the defaults of the configuration */
        const char *fn_number;
        const char *registration_number;
        const char *inn;
        const char *cashier;            /* tag 1021 on reports when the request has none */
        const char *cashier_inn;
        unsigned taxations;             /* Taxation bits: the emulator is registered for these; 0: osn */

        /* The emulator. */
        const char *emulator_path;      /* its fiscal memory, e.g. <state dir>/emulator-fn.db; required */
        usec_t print_latency_min;
        usec_t print_latency_max;
        uint32_t emulator_fn_capacity;  /* documents the fiscal memory holds; 0: unlimited */
        DeviceFault fault;              /* a fault present from the start (NONE: none) ... */
        unsigned fault_count;           /* ... for this many documents; 0: until cleared */
        /* Tests only: the register's clock (CLOCK_REALTIME usec); NULL: the real one. Called from the
         * driver's thread. */
        usec_t (*clock)(void *userdata);
        void *clock_userdata;

        /* A driver on the network (ATOL's web server). */
        const char *url;
        const char *token;              /* NULL: none */
} DeviceOptions;

/* A copy of o that owns its strings, for a driver's life; -EINVAL: an identifier longer than the FFD allows
 * (serial, FN number, registration number, INN, cashier, cashier's INN), -ENOMEM. */
int device_options_copy(const DeviceOptions *o, DeviceOptions **ret);
/* Frees a copy made by device_options_copy(), wiping the token; accepts NULL. */
DeviceOptions *device_options_free(DeviceOptions *o);
DEFINE_TRIVIAL_CLEANUP_FUNC(DeviceOptions *, device_options_free);

/* What a driver gets from the daemon besides its options. */
typedef struct DeviceContext {
        sd_event *event;
        CurlGlue *glue;                 /* NULL where the driver needs none (tests of the emulator) */
} DeviceContext;

/* Called on the loop when an operation finished; result is valid during the call. */
typedef void (*DeviceDriverDone)(const DeviceResult *result, void *userdata);

typedef struct DeviceDriver {
        const char *name;
        /* On the loop; must not block (connecting is the job of OPEN). */
        int (*create)(void **ret_state, const DeviceContext *ctx, const DeviceOptions *o);
        /* Starts req; at most one operation is outstanding. done is called exactly once, on the loop, later
         * than start() returned. Returns < 0 only when nothing was started (done is not called). */
        int (*start)(void *state, const DeviceRequest *req, DeviceDriverDone done, void *userdata);
        /* May be NULL. The device is going away: cut waits short. What is at the register still finishes. */
        void (*interrupt)(void *state);
        /* Finishes the outstanding operation first (calling its done, with its result or -ECANCELED), then
         * frees. */
        void (*free)(void *state);
        /* May be NULL. Test builds: the register fails with f on the next count operations it hits (0: until
         * cleared); NONE clears. Called on the loop, also while an operation is outstanding. */
        int (*inject_fault)(void *state, DeviceFault f, unsigned count);
} DeviceDriver;
