/* SPDX-License-Identifier: MIT */
/* The emulated register as a driver: opening and closing it, receipts (the refusals of a register: taxation
 * it is not registered for, payments short of the total; one transaction per document, committed before the
 * document counts as made), FIND, STATUS, the test hooks, and the asynchronous face. A blocking driver:
 * everything but interrupt and inject_fault runs on its worker thread (device-thread.c). Its fiscal memory
 * is device-emulator-memory.c, its state and faults device-emulator-state.c, its shift documents
 * device-emulator-shift.c. */

#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>

#include "device-emulator-internal.h"
#include "sqlite-util.h"

/* ---- the driver ---- */

static Emulator *emulator_free(Emulator *e) {
        if (!e)
                return NULL;
        if (e->db)
                (void) sqlite3_close(e->db);
        if (e->lock_initialized) {
                pthread_cond_destroy(&e->cond);
                pthread_mutex_destroy(&e->lock);
        }
        return mfree(e);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(Emulator *, emulator_free);

static int copy_identifier(char *buf, size_t l, const char *value, const char *def) {
        const char *v = value ?: def;

        if (isempty(v) || strlen(v) >= l)
                return -EINVAL;
        strcpy(buf, v);
        return 0;
}

static int emulator_open(void **ret_state, const DeviceOptions *o, DeviceFault *ret_fault) {
        _cleanup_(emulator_freep) Emulator *e = NULL;
        pthread_condattr_t attr;
        sqlite3 *db = NULL;
        int rc, r;

        assert(ret_state);
        assert(o);
        assert(ret_fault);

        *ret_fault = DEVICE_FAULT_ERROR;
        if (isempty(o->emulator_path))
                return -EINVAL;
        if (o->print_latency_min > o->print_latency_max)
                return -EINVAL;

        e = new0(Emulator, 1);
        if (!e)
                return -ENOMEM;
        *e = (Emulator){
                .taxations = o->taxations ?: TAXATION_OSN,
                .latency_min = o->print_latency_min,
                .latency_max = o->print_latency_max,
                .timeout = o->timeout ?: DEVICE_TIMEOUT_DEFAULT,
                .fn_capacity = o->emulator_fn_capacity,
                .clock = o->clock,
                .clock_userdata = o->clock_userdata,
                .fault = o->fault,
                .fault_count = o->fault_count,
        };
        if (copy_identifier(e->serial, sizeof e->serial, o->serial, "0000000000000001") < 0 ||
            copy_identifier(e->fn_number, sizeof e->fn_number, o->fn_number, "9999078900000001") < 0 ||
            copy_identifier(e->registration_number, sizeof e->registration_number, o->registration_number,
                            "0000000001000001") < 0 ||
            copy_identifier(e->inn, sizeof e->inn, o->inn, "7700000000") < 0)
                return -EINVAL;
        if (!emulator_fault_injectable(e->fault))
                return -EINVAL;

        r = pthread_mutex_init(&e->lock, NULL);
        if (r != 0)
                return -r;
        /* Waits are measured on CLOCK_MONOTONIC: a step of the wall clock must not stretch a latency. */
        (void) pthread_condattr_init(&attr);
        (void) pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        r = pthread_cond_init(&e->cond, &attr);
        (void) pthread_condattr_destroy(&attr);
        if (r != 0) {
                pthread_mutex_destroy(&e->lock);
                return -r;
        }
        e->lock_initialized = true;

        rc = sqlite3_open_v2(o->emulator_path, &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                                     SQLITE_OPEN_EXRESCODE,
                             NULL);
        if (rc != SQLITE_OK) {
                r = db && (rc & 0xff) == SQLITE_CANTOPEN && sqlite3_system_errno(db) > 0
                            ? -sqlite3_system_errno(db)
                            : sqlite_result_to_errno(rc);
                (void) sqlite3_close(db);
                return r ?: -EIO;
        }
        e->db = db;
        (void) sqlite3_busy_timeout(db, 1000);

        r = emulator_db_setup(e);
        if (r < 0)
                return r;

        *ret_fault = DEVICE_FAULT_NONE;
        *ret_state = TAKE_PTR(e);
        return 0;
}

static void emulator_close(void *state) {
        emulator_free(state);
}

static void emulator_interrupt(void *state) {
        Emulator *e = state;

        pthread_mutex_lock(&e->lock);
        e->interrupted = true;
        pthread_cond_broadcast(&e->cond);
        pthread_mutex_unlock(&e->lock);
}

static int emulator_inject_fault(void *state, DeviceFault f, unsigned count) {
        Emulator *e = state;

        if (!emulator_fault_injectable(f))
                return -EINVAL;

        pthread_mutex_lock(&e->lock);
        e->fault = f;
        e->fault_count = f == DEVICE_FAULT_NONE ? 0 : count;
        pthread_mutex_unlock(&e->lock);
        return 0;
}

/* What the emulator reads of a canonical receipt, as a register reads the document it is given. */
typedef struct EmulatorReceipt {
        ReceiptType type;
        Taxation taxation;
        int64_t total, change;
        int64_t payments[_DEVICE_PAYMENT_MAX]; /* cash net of the change */
} EmulatorReceipt;

static int parse_money_field(json_object *o, const char *key, bool required, int64_t *ret) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !v) {
                if (required)
                        return -EINVAL;
                *ret = 0;
                return 0;
        }
        if (money_from_json(v, MONEY_SCALE_KOPECKS, ret) < 0 || *ret < 0)
                return -EINVAL;
        return 0;
}

/* The payment form's name, or "electronic" as canonical receipts may also call the card. */
static int payment_form_from_name(const char *s) {
        if (streq(s, "electronic"))
                return DEVICE_PAYMENT_ELECTRONIC;
        return device_payment_form_from_string(s);
}

/* -EINVAL: not a receipt this register can read; -EDOM: it reads it and refuses it (detail in *ret_why). */
static int parse_receipt(Emulator *e, const char *json, EmulatorReceipt *ret, const char **ret_why) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *v, *payments;
        EmulatorReceipt rc = {};
        int64_t paid = 0, noncash = 0;
        int r;

        o = json_tokener_parse(json);
        if (!o || !json_object_is_type(o, json_type_object))
                return -EINVAL;
        if (!json_object_object_get_ex(o, "type", &v) || !json_object_is_type(v, json_type_string))
                return -EINVAL;
        rc.type = receipt_type_from_string(json_object_get_string(v));
        if (rc.type < 0)
                return -EINVAL;
        if ((r = parse_money_field(o, "total", true, &rc.total)) < 0 ||
            (r = parse_money_field(o, "change", false, &rc.change)) < 0)
                return r;

        rc.taxation = TAXATION_OSN;
        if (json_object_object_get_ex(o, "taxation", &v) && v) {
                if (!json_object_is_type(v, json_type_string))
                        return -EINVAL;
                rc.taxation = taxation_from_string(json_object_get_string(v));
                if ((int) rc.taxation < 0)
                        return -EINVAL;
        }

        if (!json_object_object_get_ex(o, "payments", &payments) ||
            !json_object_is_type(payments, json_type_array))
                return -EINVAL;
        for (size_t i = 0; i < json_object_array_length(payments); i++) {
                json_object *p = json_object_array_get_idx(payments, i), *t;
                int64_t amount;
                int f;

                if (!json_object_is_type(p, json_type_object) || !json_object_object_get_ex(p, "type", &t) ||
                    !json_object_is_type(t, json_type_string))
                        return -EINVAL;
                f = payment_form_from_name(json_object_get_string(t));
                if (f < 0 || parse_money_field(p, "amount", true, &amount) < 0)
                        return -EINVAL;
                if (__builtin_add_overflow(rc.payments[f], amount, &rc.payments[f]) ||
                    __builtin_add_overflow(paid, amount, &paid) ||
                    (f != DEVICE_PAYMENT_CASH && __builtin_add_overflow(noncash, amount, &noncash)))
                        return -EINVAL;
        }

        /* What a register refuses of a document it can read. */
        if (!(e->taxations & (unsigned) rc.taxation)) {
                *ret_why = "taxation system the register is not registered for";
                return -EDOM;
        }
        if (paid < rc.total) {
                *ret_why = "payments short of the total";
                return -EDOM;
        }
        if (noncash > rc.total) {
                *ret_why = "non-cash payments above the total";
                return -EDOM;
        }
        if (paid - rc.total != rc.change || rc.change > rc.payments[DEVICE_PAYMENT_CASH]) {
                *ret_why = "change does not match the cash paid";
                return -EDOM;
        }
        rc.payments[DEVICE_PAYMENT_CASH] -= rc.change;

        *ret = rc;
        return 0;
}

/* Numbers the document and commits it to the fiscal memory; only then is it made. */
static int emulator_make_receipt(Emulator *e, const char *receipt_id, const EmulatorReceipt *rc,
                                 DeviceDocument *ret, DeviceResult *result) {
        DeviceDocument d = {};
        DeviceTotals totals;
        FiscalMemory m;
        usec_t t;
        int r;

        r = emulator_begin(e, &m, result);
        if (r < 0)
                return r;

        t = emulator_now(e);
        r = emulator_check_drive(e, &m, t, m.shift_open ? 1 : 2, result);
        if (r < 0) {
                emulator_db_rollback(e);
                return r;
        }
        if (emulator_shift_expired(&m, t)) {
                emulator_db_rollback(e);
                return fail_fault(result, DEVICE_FAULT_SHIFT_EXPIRED);
        }

        /* A receipt in a closed shift opens one first, as registers do. */
        if (!m.shift_open) {
                r = emulator_open_shift_locked(e, &m, t, NULL);
                if (r < 0)
                        goto fail;
        }
        r = emulator_db_read_totals(e, m.shift_number, &totals);
        if (r < 0)
                goto fail;
        if (device_totals_add(&totals, rc->type, rc->total, rc->payments) < 0) {
                emulator_db_rollback(e);
                return fail(result, DEVICE_FAULT_REJECTED, -EOVERFLOW);
        }
        m.last_fd++;
        m.shift_receipts++;

        d = (DeviceDocument){
                .fiscal_document_number = m.last_fd,
                .shift_number = m.shift_number,
                .document_number_in_shift = m.shift_receipts,
                .datetime = t,
                .total = rc->total,
                .change = rc->change,
                .receipt_type = rc->type,
        };
        strcpy(d.receipt_id, receipt_id);
        strcpy(d.fn_number, e->fn_number);
        strcpy(d.registration_number, e->registration_number);
        strcpy(d.inn, e->inn);
        strcpy(d.serial, e->serial);
        r = device_emulator_fiscal_sign(e->fn_number, d.fiscal_document_number, t, rc->total,
                                        receipt_type_to_string(rc->type), d.fiscal_sign);
        if (r >= 0)
                r = device_emulator_format_qr(d.qr, sizeof d.qr, t, rc->total, e->fn_number,
                                              d.fiscal_document_number, d.fiscal_sign, rc->type);
        if (r >= 0)
                r = emulator_db_write_memory(e, &m);
        if (r >= 0)
                r = emulator_db_write_type_totals(e, m.shift_number, rc->type, totals.by_type + rc->type);
        if (r >= 0)
                r = emulator_db_insert_document(e, &(EmulatorDocument){
                                                           .fd = d.fiscal_document_number,
                                                           .kind = "receipt",
                                                           .receipt_id = receipt_id,
                                                           .receipt_type = rc->type,
                                                           .shift_number = d.shift_number,
                                                           .number_in_shift = d.document_number_in_shift,
                                                           .datetime = t,
                                                           .total = rc->total,
                                                           .change = rc->change,
                                                           .fiscal_sign = d.fiscal_sign,
                                                           .qr = d.qr,
                                                           .ofd_confirmed = m.ofd_online,
                                                   });
        if (r < 0)
                goto fail;
        r = emulator_commit(e, result);
        if (r < 0)
                return r;

        *ret = d;
        return 0;

fail:
        emulator_db_rollback(e);
        return fail(result, DEVICE_FAULT_ERROR, r);
}

static void emulator_print(Emulator *e, const DeviceRequest *req, DeviceResult *result) {
        const char *why = NULL;
        EmulatorReceipt rc;
        DeviceFault f;
        int r;

        if (isempty(req->receipt_id) || strlen(req->receipt_id) > DEVICE_RECEIPT_ID_MAX ||
            !req->receipt_json) {
                (void) fail(result, DEVICE_FAULT_REJECTED, -EINVAL);
                return;
        }
        r = parse_receipt(e, req->receipt_json, &rc, &why);
        if (r < 0) {
                snprintf(result->message, sizeof result->message, "%s",
                         why ?: "not a receipt the register can read");
                (void) fail(result, DEVICE_FAULT_REJECTED, -EINVAL);
                return;
        }

        f = emulator_take_fault(e, EMULATOR_OP_RECEIPT);
        if (emulator_apply_fault(e, f, result) < 0)
                return;

        emulator_wait(e, emulator_latency(e));

        if (emulator_make_receipt(e, req->receipt_id, &rc, &result->doc, result) < 0)
                return;

        if (f == DEVICE_FAULT_TIMEOUT_UNKNOWN)
                /* The document is made and in the fiscal memory, but the answer comes only after the
                 * caller gave up on it. */
                emulator_wait(e, usec_add(e->timeout, e->timeout / 2));
        emulator_refresh_status(e, result);
}

static void emulator_find(Emulator *e, const DeviceRequest *req, DeviceResult *result) {
        DeviceFault f;
        int r;

        f = emulator_take_fault(e, EMULATOR_OP_QUERY);
        if (f != DEVICE_FAULT_NONE) {
                (void) fail_fault(result, f);
                return;
        }

        r = emulator_db_find_receipt(e, req->receipt_id, &result->doc);
        if (r == -ENOENT)
                (void) fail(result, DEVICE_FAULT_NONE, r);
        else if (r < 0)
                (void) fail(result, DEVICE_FAULT_ERROR, r);
}

static void emulator_status(Emulator *e, DeviceResult *result) {
        DeviceFault f;
        int r;

        f = emulator_take_fault(e, EMULATOR_OP_QUERY);
        if (f != DEVICE_FAULT_NONE) {
                (void) fail_fault(result, f);
                return;
        }
        r = emulator_read_status(e, &result->status);
        if (r < 0) {
                (void) fail(result, DEVICE_FAULT_ERROR, r);
                return;
        }
        result->have_status = true;
}

/* Test hooks: {"ofd_online": false} (documents stay unconfirmed by the OFD), {"unsent_age_days": N} (the
 * unconfirmed documents were made N days earlier), {"shift_age_seconds": N} (the open shift was opened N
 * seconds ago), {"fn_days_left": N} (the fiscal drive expires in N days). */
static int emulator_debug_apply(Emulator *e, json_object *o) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        usec_t t = emulator_now(e);
        json_object *v;
        FiscalMemory m;
        int r;

        r = emulator_db_read_memory(e, &m);
        if (r < 0)
                return r;
        if (json_object_object_get_ex(o, "ofd_online", &v))
                m.ofd_online = json_object_get_boolean(v);
        if (json_object_object_get_ex(o, "shift_age_seconds", &v) && m.shift_open)
                m.shift_open_usec = usec_sub_unsigned(t, (usec_t) json_object_get_int64(v) * USEC_PER_SEC);
        if (json_object_object_get_ex(o, "fn_days_left", &v)) {
                int64_t days = json_object_get_int64(v);

                /* Negative: expired that many days ago. */
                m.fn_valid_until = days >= 0 ? usec_add(t, (usec_t) days * USEC_PER_DAY)
                                             : usec_sub_unsigned(t, (usec_t) -days * USEC_PER_DAY);
        }
        r = emulator_db_write_memory(e, &m);
        if (r < 0)
                return r;

        if (json_object_object_get_ex(o, "unsent_age_days", &v)) {
                r = emulator_db_prepare(e,
                                        "UPDATE documents SET datetime_usec = datetime_usec - ? "
                                        "WHERE fn_number = ? AND ofd_confirmed = 0",
                                        &stmt);
                if (r < 0)
                        return r;
                (void) sqlite3_bind_int64(stmt, 1, json_object_get_int64(v) * (int64_t) USEC_PER_DAY);
                (void) sqlite3_bind_text(stmt, 2, e->fn_number, -1, SQLITE_STATIC);
                r = emulator_db_step_done(e, stmt);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void emulator_debug(Emulator *e, const DeviceRequest *req, DeviceResult *result) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        int r;

        o = json_tokener_parse(req->receipt_json);
        if (!o || !json_object_is_type(o, json_type_object)) {
                (void) fail(result, DEVICE_FAULT_NONE, -EINVAL);
                return;
        }
        r = emulator_db_exec(e, "BEGIN IMMEDIATE");
        if (r >= 0) {
                r = emulator_debug_apply(e, o);
                r = r >= 0 ? emulator_db_exec(e, "COMMIT") : r;
        }
        if (r < 0) {
                emulator_db_rollback(e);
                (void) fail(result, DEVICE_FAULT_ERROR, r);
                return;
        }
        emulator_refresh_status(e, result);
}

static void emulator_run(void *state, const DeviceRequest *req, DeviceResult *result) {
        Emulator *e = state;

        assert(e);
        assert(req);
        assert(result);

        switch (req->op) {
        case DEVICE_OP_STATUS:
                emulator_status(e, result);
                break;
        case DEVICE_OP_PRINT:
                emulator_print(e, req, result);
                break;
        case DEVICE_OP_FIND:
                emulator_find(e, req, result);
                break;
        case DEVICE_OP_OPEN_SHIFT:
                emulator_open_shift(e, result);
                break;
        case DEVICE_OP_REPORT_X:
                emulator_report_x(e, result);
                break;
        case DEVICE_OP_CLOSE_SHIFT:
                emulator_close_shift(e, req, result);
                break;
        case DEVICE_OP_DEBUG:
                emulator_debug(e, req, result);
                break;
        default:
                (void) fail(result, DEVICE_FAULT_NONE, -EOPNOTSUPP);
        }
}

const DeviceThreadDriver device_emulator_thread_driver = {
        .open = emulator_open,
        .run = emulator_run,
        .close = emulator_close,
        .interrupt = emulator_interrupt,
        .inject_fault = emulator_inject_fault,
};

/* The asynchronous face: the blocking driver above on a thread of its own. */

static int emulator_driver_new(void **ret_state, const DeviceContext *ctx, const DeviceOptions *o) {
        return device_thread_new((DeviceThread **) ret_state, ctx->event, &device_emulator_thread_driver, o);
}

static int emulator_driver_start(void *state, const DeviceRequest *req, DeviceDriverDone done,
                                 void *userdata) {
        return device_thread_start(state, req, done, userdata);
}

static void emulator_driver_interrupt(void *state) {
        device_thread_interrupt(state);
}

static void emulator_driver_free(void *state) {
        device_thread_free(state);
}

static int emulator_driver_inject_fault(void *state, DeviceFault f, unsigned count) {
        if (!emulator_fault_injectable(f))
                return -EINVAL;
        return device_thread_inject_fault(state, f, count);
}

const DeviceDriver device_emulator_driver = {
        .name = "emulator",
        .create = emulator_driver_new,
        .start = emulator_driver_start,
        .interrupt = emulator_driver_interrupt,
        .free = emulator_driver_free,
        .inject_fault = emulator_driver_inject_fault,
};
