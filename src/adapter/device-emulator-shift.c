/* SPDX-License-Identifier: MIT */
/* The emulator's shift documents: opening a shift (on request, or before the first receipt of one), the X
 * report, and closing a shift with its Z report (idempotent: a shift closed already answers with its Z
 * report from the journal). Runs on the emulator's worker thread. */

#include <inttypes.h>

#include "device-emulator-internal.h"
#include "sqlite-util.h"

/* Adds the opening of a shift to the journal (inside the transaction) and opens it in *m. */
int emulator_open_shift_locked(Emulator *e, FiscalMemory *m, usec_t t, DeviceReport *ret) {
        char sign[DEVICE_FISCAL_SIGN_LEN + 1];
        int r;

        m->last_fd++;
        m->shift_number++;
        m->shift_open = true;
        m->shift_open_usec = t;
        m->shift_receipts = 0;

        r = device_emulator_fiscal_sign(e->fn_number, m->last_fd, t, 0, "open_shift", sign);
        if (r < 0)
                return r;
        r = emulator_db_insert_document(e, &(EmulatorDocument){
                                                   .fd = m->last_fd,
                                                   .kind = "open_shift",
                                                   .shift_number = m->shift_number,
                                                   .datetime = t,
                                                   .fiscal_sign = sign,
                                                   .ofd_confirmed = m->ofd_online,
                                           });
        if (r < 0)
                return r;
        if (ret) {
                *ret = (DeviceReport){
                        .type = DEVICE_REPORT_OPEN,
                        .shift_open = true,
                        .shift_number = m->shift_number,
                        .shift_open_usec = t,
                        .datetime = t,
                        .fiscal_document_number = m->last_fd,
                        .last_fiscal_document = m->last_fd,
                };
                strcpy(ret->fiscal_sign, sign);
        }
        return 0;
}

void emulator_open_shift(Emulator *e, DeviceResult *result) {
        FiscalMemory m;
        DeviceFault f;
        usec_t t;
        int r;

        f = emulator_take_fault(e, EMULATOR_OP_SHIFT_DOCUMENT);
        if (emulator_apply_fault(e, f, result) < 0)
                return;
        emulator_wait(e, emulator_latency(e));

        if (emulator_begin(e, &m, result) < 0)
                return;
        t = emulator_now(e);
        if (m.shift_open) {
                emulator_db_rollback(e);
                result->report = (DeviceReport){
                        .type = DEVICE_REPORT_OPEN,
                        .shift_open = true,
                        .shift_number = m.shift_number,
                        .shift_open_usec = m.shift_open_usec,
                        .last_fiscal_document = m.last_fd,
                };
                (void) fail(result, DEVICE_FAULT_NONE, -EALREADY);
                emulator_refresh_status(e, result);
                return;
        }
        if (emulator_check_drive(e, &m, t, 1, result) < 0) {
                emulator_db_rollback(e);
                return;
        }
        r = emulator_open_shift_locked(e, &m, t, &result->report);
        if (r >= 0)
                r = emulator_db_write_memory(e, &m);
        if (r < 0) {
                emulator_db_rollback(e);
                (void) fail(result, DEVICE_FAULT_ERROR, r);
                return;
        }
        if (emulator_commit(e, result) < 0)
                return;
        if (f == DEVICE_FAULT_TIMEOUT_UNKNOWN)
                emulator_wait(e, usec_add(e->timeout, e->timeout / 2));
        emulator_refresh_status(e, result);
}

void emulator_report_x(Emulator *e, DeviceResult *result) {
        DeviceReport report = { .type = DEVICE_REPORT_X };
        FiscalMemory m;
        DeviceFault f;
        int r;

        f = emulator_take_fault(e, EMULATOR_OP_REPORT);
        if (f != DEVICE_FAULT_NONE) {
                (void) fail_fault(result, f);
                return;
        }
        emulator_wait(e, emulator_latency(e));

        r = emulator_db_read_memory(e, &m);
        if (r >= 0 && m.shift_open)
                r = emulator_db_read_totals(e, m.shift_number, &report.totals);
        if (r >= 0)
                r = emulator_db_ofd_queue(e, &m, &report.ofd);
        if (r < 0) {
                (void) fail(result, DEVICE_FAULT_ERROR, r);
                return;
        }
        report.shift_open = m.shift_open;
        report.shift_number = m.shift_number;
        report.shift_open_usec = m.shift_open ? m.shift_open_usec : 0;
        report.datetime = emulator_now(e);
        report.last_fiscal_document = m.last_fd;
        result->report = report;
        emulator_refresh_status(e, result);
}

/* The Z report of a shift already closed, from the journal. -ENOENT: the journal has none. */
static int db_read_close(Emulator *e, uint32_t shift, DeviceReport *ret) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        DeviceReport z = { .type = DEVICE_REPORT_Z, .shift_number = shift };
        int rc, r;

        r = emulator_db_prepare(
                e,
                "SELECT fd, datetime_usec, fiscal_sign, (SELECT datetime_usec FROM documents o "
                "WHERE o.fn_number = c.fn_number AND o.kind = 'open_shift' AND o.shift_number = "
                "c.shift_number) "
                "FROM documents c WHERE fn_number = ? AND kind = 'close_shift' AND shift_number = ?",
                &stmt);
        if (r < 0)
                return r;
        (void) sqlite3_bind_text(stmt, 1, e->fn_number, -1, SQLITE_STATIC);
        (void) sqlite3_bind_int64(stmt, 2, shift);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        if (rc != SQLITE_ROW)
                return emulator_db_error(e, rc);
        z.fiscal_document_number = (uint32_t) sqlite3_column_int64(stmt, 0);
        z.datetime = (usec_t) sqlite3_column_int64(stmt, 1);
        if (emulator_copy_column(stmt, 2, z.fiscal_sign, sizeof z.fiscal_sign) < 0)
                return -EBADMSG;
        z.shift_open_usec = (usec_t) sqlite3_column_int64(stmt, 3);
        r = emulator_db_read_totals(e, shift, &z.totals);
        if (r < 0)
                return r;
        *ret = z;
        return 0;
}

void emulator_close_shift(Emulator *e, const DeviceRequest *req, DeviceResult *result) {
        DeviceReport z = { .type = DEVICE_REPORT_Z };
        FiscalMemory m;
        DeviceFault f;
        usec_t t;
        int r;

        f = emulator_take_fault(e, EMULATOR_OP_SHIFT_DOCUMENT);
        if (emulator_apply_fault(e, f, result) < 0)
                return;
        emulator_wait(e, emulator_latency(e));

        if (emulator_begin(e, &m, result) < 0)
                return;

        /* Asked to close a shift that is closed already (a repeated request after an unknown outcome, or
         * one that a closing on schedule beat): its Z report, never a second one. */
        if (!m.shift_open || (req->shift_number != 0 && req->shift_number != m.shift_number)) {
                uint32_t shift = req->shift_number != 0 ? req->shift_number : m.shift_number;

                emulator_db_rollback(e);
                if (shift == 0 || shift > m.shift_number) {
                        (void) fail(result, DEVICE_FAULT_NONE, -ENOENT);
                        return;
                }
                r = db_read_close(e, shift, &z);
                if (r < 0 && r != -ENOENT) {
                        (void) fail(result, DEVICE_FAULT_ERROR, r);
                        return;
                }
                z.type = DEVICE_REPORT_Z;
                z.shift_number = shift;
                z.last_fiscal_document = m.last_fd;
                result->report = z;
                (void) fail(result, DEVICE_FAULT_NONE, -EALREADY);
                emulator_refresh_status(e, result);
                return;
        }

        t = emulator_now(e);
        r = emulator_db_read_totals(e, m.shift_number, &z.totals);
        if (r < 0)
                goto fail;
        m.last_fd++;
        z.shift_open = false;
        z.shift_number = m.shift_number;
        z.shift_open_usec = m.shift_open_usec;
        z.datetime = t;
        z.fiscal_document_number = m.last_fd;
        z.last_fiscal_document = m.last_fd;
        r = device_emulator_fiscal_sign(e->fn_number, m.last_fd, t, 0, "close_shift", z.fiscal_sign);
        if (r < 0)
                goto fail;
        m.shift_open = false;
        m.shift_open_usec = 0;
        r = emulator_db_write_memory(e, &m);
        if (r >= 0)
                r = emulator_db_insert_document(e, &(EmulatorDocument){
                                                           .fd = m.last_fd,
                                                           .kind = "close_shift",
                                                           .shift_number = z.shift_number,
                                                           .datetime = t,
                                                           .fiscal_sign = z.fiscal_sign,
                                                           .ofd_confirmed = m.ofd_online,
                                                   });
        if (r < 0)
                goto fail;
        if (emulator_commit(e, result) < 0)
                return;

        /* Closing the shift is what ends "shift over 24 h", injected or not. */
        pthread_mutex_lock(&e->lock);
        if (e->fault == DEVICE_FAULT_SHIFT_EXPIRED) {
                e->fault = DEVICE_FAULT_NONE;
                e->fault_count = 0;
        }
        pthread_mutex_unlock(&e->lock);

        r = emulator_db_ofd_queue(e, &m, &z.ofd);
        if (r < 0)
                z.ofd = (DeviceOfdQueue){};
        result->report = z;
        if (f == DEVICE_FAULT_TIMEOUT_UNKNOWN)
                emulator_wait(e, usec_add(e->timeout, e->timeout / 2));
        emulator_refresh_status(e, result);
        return;

fail:
        emulator_db_rollback(e);
        (void) fail(result, DEVICE_FAULT_ERROR, r);
}
