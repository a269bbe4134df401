/* SPDX-License-Identifier: MIT */
/* The emulated register's state: its waits (print latency, cut short by an interrupt), the faults injected
 * into it and where they show, its natural faults (fiscal drive full or expired, shift over 24 h, documents
 * unsent to the OFD for 30 days), its status, and the transaction around a document. Runs on the worker
 * thread, but for the injection (under the lock, from the loop). */

#include "device-emulator-internal.h"

/* ---- waits and injected faults ---- */

/* Sleeps on the worker thread; an interrupt (the device is going away) ends it early. */
void emulator_wait(Emulator *e, usec_t usec) {
        usec_t deadline = usec_add(now(CLOCK_MONOTONIC), usec);

        pthread_mutex_lock(&e->lock);
        while (!e->interrupted) {
                usec_t n = now(CLOCK_MONOTONIC);
                struct timespec ts;

                if (n >= deadline)
                        break;
                ts = (struct timespec){
                        .tv_sec = (time_t) (deadline / USEC_PER_SEC),
                        .tv_nsec = (long) (deadline % USEC_PER_SEC * NSEC_PER_USEC),
                };
                (void) pthread_cond_timedwait(&e->cond, &e->lock, &ts);
        }
        pthread_mutex_unlock(&e->lock);
}

usec_t emulator_latency(Emulator *e) {
        usec_t span = e->latency_max - e->latency_min;

        /* The configuration caps latencies at a minute, far below 2^32 usec. */
        return e->latency_min + arc4random_uniform((uint32_t) MIN(span, (usec_t) UINT32_MAX - 1) + 1);
}

bool emulator_fault_injectable(DeviceFault f) {
        return IN_SET(f, DEVICE_FAULT_NONE, DEVICE_FAULT_PAPER_OUT, DEVICE_FAULT_COVER_OPEN,
                      DEVICE_FAULT_TIMEOUT_BEFORE, DEVICE_FAULT_TIMEOUT_UNKNOWN, DEVICE_FAULT_FN_FULL,
                      DEVICE_FAULT_SHIFT_EXPIRED, DEVICE_FAULT_NOT_CONNECTED, DEVICE_FAULT_REJECTED);
}

static bool fault_applies(DeviceFault f, EmulatorOp op) {
        switch (f) {
        case DEVICE_FAULT_NOT_CONNECTED:
                return true;
        case DEVICE_FAULT_PAPER_OUT:
        case DEVICE_FAULT_COVER_OPEN:
                return op != EMULATOR_OP_QUERY;
        case DEVICE_FAULT_TIMEOUT_BEFORE:
        case DEVICE_FAULT_TIMEOUT_UNKNOWN:
                return IN_SET(op, EMULATOR_OP_RECEIPT, EMULATOR_OP_SHIFT_DOCUMENT);
        case DEVICE_FAULT_FN_FULL:
        case DEVICE_FAULT_SHIFT_EXPIRED:
        case DEVICE_FAULT_REJECTED:
                return op == EMULATOR_OP_RECEIPT;
        default:
                return false;
        }
}

/* The injected fault that hits this operation, if any; a counted one is used up by it. */
DeviceFault emulator_take_fault(Emulator *e, EmulatorOp op) {
        DeviceFault f = DEVICE_FAULT_NONE;

        pthread_mutex_lock(&e->lock);
        if (fault_applies(e->fault, op)) {
                f = e->fault;
                if (e->fault_count > 0 && --e->fault_count == 0)
                        e->fault = DEVICE_FAULT_NONE;
        }
        pthread_mutex_unlock(&e->lock);
        return f;
}

static DeviceFault emulator_peek_fault(Emulator *e) {
        DeviceFault f;

        pthread_mutex_lock(&e->lock);
        f = e->fault;
        pthread_mutex_unlock(&e->lock);
        return f;
}

/* Faults that make the document anyway or make nothing at all. TIMEOUT_UNKNOWN: go on, answer late. */
int emulator_apply_fault(Emulator *e, DeviceFault f, DeviceResult *result) {
        switch (f) {
        case DEVICE_FAULT_NONE:
        case DEVICE_FAULT_TIMEOUT_UNKNOWN:
                return 0;
        case DEVICE_FAULT_TIMEOUT_BEFORE:
                /* As a driver whose own read timed out before the register took the document: within the
                 * operation's timeout, so the caller learns that nothing was made. */
                emulator_wait(e, e->timeout / 2);
                return fail_fault(result, f);
        case DEVICE_FAULT_REJECTED:
                return fail(result, f, -EINVAL);
        default:
                return fail_fault(result, f);
        }
}

bool emulator_shift_expired(const FiscalMemory *m, usec_t t) {
        return m->shift_open && usec_sub_unsigned(t, m->shift_open_usec) >= DEVICE_SHIFT_MAX_USEC;
}

/* Whether the drive has room for `documents` more (a receipt in a closed shift needs two: the opening and
 * itself) and is still valid. */
static bool fn_exhausted_for(Emulator *e, const FiscalMemory *m, usec_t t, uint32_t documents) {
        return (e->fn_capacity > 0 && (uint64_t) m->last_fd + documents > e->fn_capacity) ||
               (uint64_t) m->last_fd + documents > UINT32_MAX ||
               (m->fn_valid_until > 0 && t >= m->fn_valid_until);
}

static bool fn_exhausted(Emulator *e, const FiscalMemory *m, usec_t t) {
        return fn_exhausted_for(e, m, t, 1);
}

static bool ofd_blocked(const DeviceOfdQueue *q, usec_t t) {
        return q->unsent > 0 && usec_sub_unsigned(t, q->first_unsent_usec) >= DEVICE_OFD_BLOCK_AFTER;
}

/* The standing condition a status shows: injected faults first, then what the fiscal memory says. */
static DeviceFault emulator_condition(Emulator *e, const FiscalMemory *m, const DeviceOfdQueue *q,
                                      usec_t t) {
        DeviceFault f = emulator_peek_fault(e);

        if (IN_SET(f, DEVICE_FAULT_PAPER_OUT, DEVICE_FAULT_COVER_OPEN, DEVICE_FAULT_FN_FULL,
                   DEVICE_FAULT_SHIFT_EXPIRED))
                return f;
        if (fn_exhausted(e, m, t))
                return DEVICE_FAULT_FN_FULL;
        if (ofd_blocked(q, t))
                return DEVICE_FAULT_OFD_BLOCKED;
        if (emulator_shift_expired(m, t))
                return DEVICE_FAULT_SHIFT_EXPIRED;
        return DEVICE_FAULT_NONE;
}

int emulator_read_status(Emulator *e, DeviceStatus *ret) {
        DeviceStatus s = {};
        FiscalMemory m;
        int r;

        r = emulator_db_read_memory(e, &m);
        if (r < 0)
                return r;
        r = emulator_db_ofd_queue(e, &m, &s.ofd);
        if (r < 0)
                return r;
        if (m.shift_open) {
                r = emulator_db_read_totals(e, m.shift_number, &s.shift_totals);
                if (r < 0)
                        return r;
        }

        s.condition = emulator_condition(e, &m, &s.ofd, emulator_now(e));
        s.shift_open = m.shift_open;
        s.shift_number = m.shift_number;
        s.shift_open_usec = m.shift_open ? m.shift_open_usec : 0;
        s.last_fiscal_document = m.last_fd;
        s.fn_valid_until = m.fn_valid_until;
        s.fn_documents = m.last_fd;
        s.fn_capacity = e->fn_capacity;
        s.taxations = e->taxations;
        strcpy(s.model, EMULATOR_MODEL);
        strcpy(s.serial, e->serial);
        strcpy(s.fn_number, e->fn_number);
        strcpy(s.registration_number, e->registration_number);
        strcpy(s.inn, e->inn);
        *ret = s;
        return 0;
}

/* After an operation that made a document: what the register says now. A failure here does not fail the
 * operation, which is done. */
void emulator_refresh_status(Emulator *e, DeviceResult *result) {
        result->have_status = emulator_read_status(e, &result->status) >= 0;
}

int emulator_begin(Emulator *e, FiscalMemory *m, DeviceResult *result) {
        int r;

        r = emulator_db_exec(e, "BEGIN IMMEDIATE");
        if (r < 0)
                return fail(result, DEVICE_FAULT_ERROR, r);
        r = emulator_db_read_memory(e, m);
        if (r < 0) {
                emulator_db_rollback(e);
                return fail(result, DEVICE_FAULT_ERROR, r);
        }
        return 0;
}

int emulator_commit(Emulator *e, DeviceResult *result) {
        int r = emulator_db_exec(e, "COMMIT");

        if (r < 0) {
                emulator_db_rollback(e);
                return fail(result, DEVICE_FAULT_ERROR, r);
        }
        return 0;
}

/* Whether the drive takes another document now (inside the transaction): full, expired, or blocked by the
 * OFD rule. */
int emulator_check_drive(Emulator *e, const FiscalMemory *m, usec_t t, uint32_t documents,
                         DeviceResult *result) {
        DeviceOfdQueue q;
        int r;

        if (fn_exhausted_for(e, m, t, documents))
                return fail_fault(result, DEVICE_FAULT_FN_FULL);
        r = emulator_db_ofd_queue(e, &(FiscalMemory){ .ofd_online = false }, &q);
        if (r < 0)
                return fail(result, DEVICE_FAULT_ERROR, r);
        if (ofd_blocked(&q, t))
                return fail_fault(result, DEVICE_FAULT_OFD_BLOCKED);
        return 0;
}
