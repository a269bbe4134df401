/* SPDX-License-Identifier: MIT */
#pragma once

/* What the pieces of the emulated register share: its state, its fiscal memory's rows, and the functions
 * one piece calls in another. Private to them. Dependencies run one way: device-emulator.c (the driver,
 * receipts, FIND, test hooks) -> device-emulator-shift.c (shift documents) -> device-emulator-state.c
 * (waits, faults, status, transactions) -> device-emulator-memory.c (the fiscal memory, sign and QR). */

#include <pthread.h>
#include <sqlite3.h>

#include "device-emulator.h"
#include "json-util.h"
#include "money.h"

#define EMULATOR_SCHEMA_VERSION 2
#define EMULATOR_MODEL "kkt-adapter emulator"

/* Where an injected fault shows: receipts, the documents of a shift (open, close), the X report (it needs
 * paper but makes no document), and queries (status, find: only the connection). */
typedef enum EmulatorOp {
        EMULATOR_OP_RECEIPT,
        EMULATOR_OP_SHIFT_DOCUMENT,
        EMULATOR_OP_REPORT,
        EMULATOR_OP_QUERY,
} EmulatorOp;

typedef struct Emulator {
        sqlite3 *db;
        char serial[DEVICE_SERIAL_MAX + 1];
        char fn_number[DEVICE_FN_NUMBER_MAX + 1];
        char registration_number[DEVICE_REGISTRATION_NUMBER_MAX + 1];
        char inn[DEVICE_INN_MAX + 1];
        unsigned taxations;
        usec_t latency_min, latency_max;
        usec_t timeout;
        uint32_t fn_capacity;
        usec_t (*clock)(void *userdata);
        void *clock_userdata;

        bool lock_initialized;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        /* Under lock: the loop thread writes them while the worker runs. */
        bool interrupted;
        DeviceFault fault;
        unsigned fault_count;
} Emulator;

/* The fiscal memory's row for one FN. */
typedef struct FiscalMemory {
        uint32_t last_fd;
        uint32_t shift_number;
        bool shift_open;
        usec_t shift_open_usec;
        uint32_t shift_receipts;
        usec_t fn_valid_until;
        bool ofd_online;
} FiscalMemory;

/* Sets the result's error and fault; returns the error. */
static inline int fail(DeviceResult *result, DeviceFault f, int error) {
        result->error = error;
        result->fault = f;
        return error;
}

static inline int fail_fault(DeviceResult *result, DeviceFault f) {
        return fail(result, f, device_fault_to_errno(f));
}

/* One row of the journal. */
typedef struct EmulatorDocument {
        uint32_t fd;
        const char *kind;         /* "receipt", "open_shift", "close_shift" */
        const char *receipt_id;   /* receipts */
        ReceiptType receipt_type; /* receipts */
        uint32_t shift_number;
        uint32_t number_in_shift;
        usec_t datetime;
        int64_t total, change;
        const char *fiscal_sign;
        const char *qr; /* receipts */
        bool ofd_confirmed;
} EmulatorDocument;

/* The register's clock, in whole seconds (tag 1012 is a UnixTime). */
static inline usec_t emulator_now(Emulator *e) {
        usec_t t = e->clock ? e->clock(e->clock_userdata) : now(CLOCK_REALTIME);

        return t / USEC_PER_SEC * USEC_PER_SEC;
}

/* device-emulator-state.c: waits, faults, status, the transaction around a document */
bool emulator_fault_injectable(DeviceFault f);
bool emulator_shift_expired(const FiscalMemory *m, usec_t t);
int emulator_read_status(Emulator *e, DeviceStatus *ret);
void emulator_wait(Emulator *e, usec_t usec);
usec_t emulator_latency(Emulator *e);
DeviceFault emulator_take_fault(Emulator *e, EmulatorOp op);
int emulator_apply_fault(Emulator *e, DeviceFault f, DeviceResult *result);
void emulator_refresh_status(Emulator *e, DeviceResult *result);
int emulator_begin(Emulator *e, FiscalMemory *m, DeviceResult *result);
int emulator_commit(Emulator *e, DeviceResult *result);
int emulator_check_drive(Emulator *e, const FiscalMemory *m, usec_t t, uint32_t documents,
                         DeviceResult *result);

/* device-emulator-memory.c: the fiscal memory (all but setup and rollback return a negative errno) */
int emulator_db_error(Emulator *e, int rc);
int emulator_db_exec(Emulator *e, const char *sql);
int emulator_db_prepare(Emulator *e, const char *sql, sqlite3_stmt **ret);
int emulator_db_step_done(Emulator *e, sqlite3_stmt *stmt);
void emulator_db_rollback(Emulator *e);
int emulator_db_read_memory(Emulator *e, FiscalMemory *ret);
int emulator_db_write_memory(Emulator *e, const FiscalMemory *m);
int emulator_db_insert_document(Emulator *e, const EmulatorDocument *d);
int emulator_copy_column(sqlite3_stmt *stmt, int i, char *buf, size_t l);
int emulator_db_find_receipt(Emulator *e, const char *receipt_id, DeviceDocument *ret);
int emulator_db_read_totals(Emulator *e, uint32_t shift, DeviceTotals *ret);
int emulator_db_write_type_totals(Emulator *e, uint32_t shift, ReceiptType type, const DeviceTypeTotals *tt);
int emulator_db_ofd_queue(Emulator *e, const FiscalMemory *m, DeviceOfdQueue *ret);
int emulator_db_setup(Emulator *e);

/* device-emulator-shift.c */
int emulator_open_shift_locked(Emulator *e, FiscalMemory *m, usec_t t, DeviceReport *ret);
void emulator_open_shift(Emulator *e, DeviceResult *result);
void emulator_report_x(Emulator *e, DeviceResult *result);
void emulator_close_shift(Emulator *e, const DeviceRequest *req, DeviceResult *result);
