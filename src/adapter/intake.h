/* SPDX-License-Identifier: MIT */
#pragma once

/* One receipt submission, whichever door it came through (HTTP or D-Bus): the Idempotency-Key, validation,
 * the keys in flight, the durable store, and one answer that each door renders in its own terms. */

#include <json-c/json.h>

#include "macro.h"
#include "printer.h"
#include "receipt.h"
#include "store.h"

typedef struct Intake Intake;

typedef enum IntakeError {
        INTAKE_OK,
        INTAKE_BAD_REQUEST,   /* 400: no or bad Idempotency-Key, body not JSON */
        INTAKE_INVALID,       /* 422: validation failed */
        INTAKE_KEY_MISMATCH,  /* 422: key reused with another body */
        INTAKE_CONFLICT,      /* 409: the same key is still in flight */
        INTAKE_BUFFER_FULL,   /* 503 + Retry-After */
        INTAKE_DISK_FULL,     /* 507 */
        INTAKE_UNAVAILABLE,   /* 503: shutting down, store failing */
        INTAKE_SHIFT_EXPIRED, /* 409: the shift reaches 24 hours and must be closed first */
        _INTAKE_ERROR_MAX,
} IntakeError;

typedef struct IntakeReply {
        IntakeError error;
        const char *detail;            /* for errors */
        bool replayed;                 /* the stored answer to an earlier request with this key */
        /* On success: the receipt as the answer shows it (a replay: as the first answer showed it, which is
         * what is stored with the key, not its state now), the cash given back (0: none) and the message. */
        const StoreReceipt *receipt;
        int64_t change;
        const char *message;
} IntakeReply;

/* Called exactly once per submission, possibly before intake_submit() returns. */
typedef void (*IntakeCallback)(const IntakeReply *reply, void *userdata);

/* Cumulative buckets of the time from a submission to its answer, for a Prometheus histogram: le[i] counts
 * answers given within intake_latency_bounds[i]; the +Inf bucket is count. */
#define INTAKE_LATENCY_BUCKETS 14
extern const usec_t intake_latency_bounds[INTAKE_LATENCY_BUCKETS];

typedef struct IntakeLatency {
        uint64_t le[INTAKE_LATENCY_BUCKETS];
        uint64_t count;
        usec_t sum;
} IntakeLatency;

typedef struct IntakeStats {
        uint64_t accepted, replayed, rejected_invalid, rejected_conflict, rejected_full, rejected_refused, failed;
        int last_error; /* of the last store commit: 0 after a success */
        /* Every answered submission, whatever the answer, from intake_submit() to the callback (CLOCK_MONOTONIC,
         * on the loop): validation, the group commit and, with a printer, the wait for the print. */
        IntakeLatency latency;
} IntakeStats;

/* The options are copied (strings included). */
int intake_new(Intake **ret, Store *store, const ReceiptOptions *options);
Intake *intake_free(Intake *in);
DEFINE_TRIVIAL_CLEANUP_FUNC(Intake *, intake_free);

int intake_submit(Intake *in, const char *idempotency_key, const char *body, size_t size, IntakeCallback cb,
                  void *userdata);

/* With a printer, a new receipt is answered once printed ("printed" with the fiscal document, or
 * "print_failed"), or after response_timeout as "buffered" while printing goes on. */
void intake_set_printer(Intake *in, Printer *printer, sd_event *event, usec_t response_timeout);

/* Told about every receipt newly made durable (not replays), before its submitter is answered. */
typedef void (*IntakeStoredCallback)(const StoreReceipt *receipt, void *userdata);
void intake_set_stored_callback(Intake *in, IntakeStoredCallback cb, void *userdata);

/* Asked before a valid receipt is stored: true refuses it with INTAKE_SHIFT_EXPIRED and *ret_detail (static
 * storage) as the answer's detail. */
typedef bool (*IntakeAdmissionCallback)(void *userdata, const char **ret_detail);
void intake_set_admission(Intake *in, IntakeAdmissionCallback cb, void *userdata);

/* After this, every submission is answered INTAKE_UNAVAILABLE. */
void intake_shutdown(Intake *in);
unsigned intake_in_flight(Intake *in);
const IntakeStats *intake_get_stats(Intake *in);
int intake_set_options(Intake *in, const ReceiptOptions *options);

unsigned intake_error_to_http_status(IntakeError e);
/* "InvalidReceipt", "Conflict", ... appended to org.opticserp.KktAdapter1.Error. */
const char *intake_error_to_bus_error(IntakeError e);

/* The prototype's answer: {status, receipt_id, fiscal_doc, message}, and "change" when cash is given back.
 * fiscal_doc carries the prototype's keys beside ours (device_document_add_prototype_keys()). */
int intake_reply_to_json(const IntakeReply *reply, json_object **ret);

/* A stored receipt as GET /v1/kkt/receipt/{id} and GetReceipt() show it: its state now; "hlc" as a decimal
 * string (stamps exceed 2^53). */
int intake_receipt_to_json(const StoreReceipt *r, json_object **ret);
