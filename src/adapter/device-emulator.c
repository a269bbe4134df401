/* SPDX-License-Identifier: MIT */
/* The emulated register: its fiscal memory in SQLite (counters, shift, last document; one transaction per
 * document, committed with synchronous=FULL before the document counts as made), fiscal signs, the QR
 * string, print latency and the faults a real register gives, natural (FN full, shift over 24 h) or
 * injected. Everything but interrupt and inject_fault runs on the device's worker thread. */

#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "device-emulator.h"
#include "json-util.h"
#include "money.h"
#include "sqlite-util.h"

#define EMULATOR_SCHEMA_VERSION 1
#define SHIFT_MAX_USEC (24 * USEC_PER_HOUR)

/* Where an injected fault shows: documents are receipts and reports (they need paper), queries are status
 * and last_document (they need only the connection). */
typedef enum EmulatorOp {
        EMULATOR_OP_RECEIPT,
        EMULATOR_OP_REPORT,
        EMULATOR_OP_QUERY,
} EmulatorOp;

typedef struct Emulator {
        sqlite3 *db;
        char serial[DEVICE_SERIAL_MAX + 1];
        char fn_number[DEVICE_FN_NUMBER_MAX + 1];
        char registration_number[DEVICE_REGISTRATION_NUMBER_MAX + 1];
        char inn[DEVICE_INN_MAX + 1];
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
        int64_t shift_sales;
        int64_t shift_refunds;
} FiscalMemory;

static const char schema_sql[] =
        "CREATE TABLE fiscal_memory ("
        "        fn_number TEXT PRIMARY KEY NOT NULL,"
        "        last_fd INTEGER NOT NULL DEFAULT 0,"
        "        shift_number INTEGER NOT NULL DEFAULT 0,"
        "        shift_open INTEGER NOT NULL DEFAULT 0,"
        "        shift_open_usec INTEGER NOT NULL DEFAULT 0,"
        "        shift_receipts INTEGER NOT NULL DEFAULT 0,"
        "        shift_sales INTEGER NOT NULL DEFAULT 0,"
        "        shift_refunds INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE last_document ("
        "        fn_number TEXT PRIMARY KEY NOT NULL REFERENCES fiscal_memory (fn_number),"
        "        receipt_id TEXT NOT NULL,"
        "        fd INTEGER NOT NULL,"
        "        fiscal_sign TEXT NOT NULL,"
        "        shift_number INTEGER NOT NULL,"
        "        number_in_shift INTEGER NOT NULL,"
        "        registration_number TEXT NOT NULL,"
        "        inn TEXT NOT NULL,"
        "        serial TEXT NOT NULL,"
        "        datetime_usec INTEGER NOT NULL,"
        "        total INTEGER NOT NULL,"
        "        receipt_type TEXT NOT NULL,"
        "        qr TEXT NOT NULL);"
        "PRAGMA user_version = 1;";

static int fail(DeviceFault *ret_fault, DeviceFault f, int error) {
        *ret_fault = f;
        return error;
}

static int fail_fault(DeviceFault *ret_fault, DeviceFault f) {
        return fail(ret_fault, f, device_fault_to_errno(f));
}

/* ---- the clock, waits and injected faults ---- */

static usec_t emulator_now(Emulator *e) {
        usec_t t = e->clock ? e->clock(e->clock_userdata) : now(CLOCK_REALTIME);

        /* The register's clock counts whole seconds (tag 1012 is a UnixTime). */
        return t / USEC_PER_SEC * USEC_PER_SEC;
}

/* Sleeps on the worker thread; an interrupt (the device is going away) ends it early. */
static void emulator_wait(Emulator *e, usec_t usec) {
        usec_t deadline = usec_add(now(CLOCK_MONOTONIC), usec);

        pthread_mutex_lock(&e->lock);
        while (!e->interrupted) {
                usec_t n = now(CLOCK_MONOTONIC);
                struct timespec ts;

                if (n >= deadline)
                        break;
                ts = (struct timespec) {
                        .tv_sec = (time_t) (deadline / USEC_PER_SEC),
                        .tv_nsec = (long) (deadline % USEC_PER_SEC * NSEC_PER_USEC),
                };
                (void) pthread_cond_timedwait(&e->cond, &e->lock, &ts);
        }
        pthread_mutex_unlock(&e->lock);
}

static usec_t emulator_latency(Emulator *e) {
        usec_t span = e->latency_max - e->latency_min;

        /* The configuration caps latencies at a minute, far below 2^32 usec. */
        return e->latency_min + arc4random_uniform((uint32_t) MIN(span, (usec_t) UINT32_MAX - 1) + 1);
}

static bool fault_applies(DeviceFault f, EmulatorOp op) {
        switch (f) {
        case DEVICE_FAULT_NOT_CONNECTED:
                return true;
        case DEVICE_FAULT_PAPER_OUT:
                return op != EMULATOR_OP_QUERY;
        case DEVICE_FAULT_TIMEOUT_BEFORE:
        case DEVICE_FAULT_TIMEOUT_UNKNOWN:
        case DEVICE_FAULT_FN_FULL:
        case DEVICE_FAULT_SHIFT_EXPIRED:
                return op == EMULATOR_OP_RECEIPT;
        default:
                return false;
        }
}

/* The injected fault that hits this operation, if any; a counted one is used up by it. */
static DeviceFault emulator_take_fault(Emulator *e, EmulatorOp op) {
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

/* ---- fiscal sign and QR ---- */

int device_emulator_fiscal_sign(const char *fn_number, uint32_t fd, usec_t datetime, int64_t total,
                                ReceiptType type, char ret[static DEVICE_FISCAL_SIGN_LEN + 1]) {
        static const char key_prefix[] = "kkt-adapter emulator FN key:";
        unsigned char key[EVP_MAX_MD_SIZE], mac[EVP_MAX_MD_SIZE];
        unsigned key_len = 0, mac_len = 0;
        char data[128], key_data[sizeof key_prefix + DEVICE_FN_NUMBER_MAX];
        uint64_t v = 0;
        int n;

        assert(fn_number);

        /* The key stands in for the FN's secret: derived from its number, so each FN signs differently. */
        n = snprintf(key_data, sizeof key_data, "%s%s", key_prefix, fn_number);
        if (n < 0 || (size_t) n >= sizeof key_data)
                return -EINVAL;
        if (EVP_Digest(key_data, (size_t) n, key, &key_len, EVP_sha256(), NULL) != 1)
                return -EIO;

        n = snprintf(data, sizeof data, "%" PRIu32 "|%" PRIu64 "|%" PRIi64 "|%s", fd, datetime, total,
                     strempty(receipt_type_to_string(type)));
        if (n < 0 || (size_t) n >= sizeof data)
                return -EINVAL;
        if (!HMAC(EVP_sha256(), key, (int) key_len, (const unsigned char *) data, (size_t) n, mac,
                  &mac_len) ||
            mac_len < 8)
                return -EIO;

        for (unsigned i = 0; i < 8; i++)
                v = v << 8 | mac[i];
        snprintf(ret, DEVICE_FISCAL_SIGN_LEN + 1, "%010" PRIu64, v % UINT64_C(10000000000));
        return 0;
}

int device_emulator_format_qr(char *buf, size_t l, usec_t datetime, int64_t total, const char *fn_number,
                              uint32_t fd, const char *fiscal_sign, ReceiptType type) {
        time_t sec = (time_t) (datetime / USEC_PER_SEC);
        struct tm tm;
        int n;

        assert(buf);
        assert(fn_number);
        assert(fiscal_sign);

        if (!gmtime_r(&sec, &tm))
                return -ERANGE;
        /* n is the payment kind (tag 1054): 1 income, 2 return of income. A correction corrects income. */
        n = snprintf(buf, l, "t=%04d%02d%02dT%02d%02d&s=%s&fn=%s&i=%" PRIu32 "&fp=%s&n=%d",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     MONEY_FORMAT(total, MONEY_SCALE_KOPECKS), fn_number, fd, fiscal_sign,
                     receipt_type_to_ffd(type));
        if (n < 0 || (size_t) n >= l)
                return -ENOBUFS;
        return 0;
}

/* ---- the fiscal memory ---- */

static int db_exec(Emulator *e, const char *sql) {
        int rc = sqlite3_exec(e->db, sql, NULL, NULL, NULL);

        return rc == SQLITE_OK ? 0 : sqlite_result_to_errno(rc) ?: -EIO;
}

static int db_prepare(Emulator *e, const char *sql, sqlite3_stmt **ret) {
        int rc = sqlite3_prepare_v2(e->db, sql, -1, ret, NULL);

        return rc == SQLITE_OK ? 0 : sqlite_result_to_errno(rc) ?: -EIO;
}

static void db_rollback(Emulator *e) {
        if (!sqlite3_get_autocommit(e->db))
                (void) db_exec(e, "ROLLBACK");
}

static int db_read_memory(Emulator *e, FiscalMemory *ret) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int rc, r;

        r = db_prepare(e,
                       "SELECT last_fd, shift_number, shift_open, shift_open_usec, shift_receipts, "
                       "shift_sales, shift_refunds FROM fiscal_memory WHERE fn_number = ?",
                       &stmt);
        if (r < 0)
                return r;
        (void) sqlite3_bind_text(stmt, 1, e->fn_number, -1, SQLITE_STATIC);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        if (rc != SQLITE_ROW)
                return sqlite_result_to_errno(rc) ?: -EIO;

        *ret = (FiscalMemory) {
                .last_fd = (uint32_t) sqlite3_column_int64(stmt, 0),
                .shift_number = (uint32_t) sqlite3_column_int64(stmt, 1),
                .shift_open = sqlite3_column_int(stmt, 2) != 0,
                .shift_open_usec = (usec_t) sqlite3_column_int64(stmt, 3),
                .shift_receipts = (uint32_t) sqlite3_column_int64(stmt, 4),
                .shift_sales = sqlite3_column_int64(stmt, 5),
                .shift_refunds = sqlite3_column_int64(stmt, 6),
        };
        return 0;
}

static int db_write_memory(Emulator *e, const FiscalMemory *m) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int rc, r;

        r = db_prepare(e,
                       "UPDATE fiscal_memory SET last_fd = ?, shift_number = ?, shift_open = ?, "
                       "shift_open_usec = ?, shift_receipts = ?, shift_sales = ?, shift_refunds = ? "
                       "WHERE fn_number = ?",
                       &stmt);
        if (r < 0)
                return r;
        (void) sqlite3_bind_int64(stmt, 1, m->last_fd);
        (void) sqlite3_bind_int64(stmt, 2, m->shift_number);
        (void) sqlite3_bind_int(stmt, 3, m->shift_open);
        (void) sqlite3_bind_int64(stmt, 4, (int64_t) m->shift_open_usec);
        (void) sqlite3_bind_int64(stmt, 5, m->shift_receipts);
        (void) sqlite3_bind_int64(stmt, 6, m->shift_sales);
        (void) sqlite3_bind_int64(stmt, 7, m->shift_refunds);
        (void) sqlite3_bind_text(stmt, 8, e->fn_number, -1, SQLITE_STATIC);
        rc = sqlite3_step(stmt);
        return rc == SQLITE_DONE ? 0 : sqlite_result_to_errno(rc) ?: -EIO;
}

static int db_write_last_document(Emulator *e, const DeviceDocument *d) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int rc, r;

        r = db_prepare(e,
                       "INSERT OR REPLACE INTO last_document (fn_number, receipt_id, fd, fiscal_sign, "
                       "shift_number, number_in_shift, registration_number, inn, serial, datetime_usec, "
                       "total, receipt_type, qr) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       &stmt);
        if (r < 0)
                return r;
        (void) sqlite3_bind_text(stmt, 1, d->fn_number, -1, SQLITE_STATIC);
        (void) sqlite3_bind_text(stmt, 2, d->receipt_id, -1, SQLITE_STATIC);
        (void) sqlite3_bind_int64(stmt, 3, d->fiscal_document_number);
        (void) sqlite3_bind_text(stmt, 4, d->fiscal_sign, -1, SQLITE_STATIC);
        (void) sqlite3_bind_int64(stmt, 5, d->shift_number);
        (void) sqlite3_bind_int64(stmt, 6, d->document_number_in_shift);
        (void) sqlite3_bind_text(stmt, 7, d->registration_number, -1, SQLITE_STATIC);
        (void) sqlite3_bind_text(stmt, 8, d->inn, -1, SQLITE_STATIC);
        (void) sqlite3_bind_text(stmt, 9, d->serial, -1, SQLITE_STATIC);
        (void) sqlite3_bind_int64(stmt, 10, (int64_t) d->datetime);
        (void) sqlite3_bind_int64(stmt, 11, d->total);
        (void) sqlite3_bind_text(stmt, 12, receipt_type_to_string(d->receipt_type), -1, SQLITE_STATIC);
        (void) sqlite3_bind_text(stmt, 13, d->qr, -1, SQLITE_STATIC);
        rc = sqlite3_step(stmt);
        return rc == SQLITE_DONE ? 0 : sqlite_result_to_errno(rc) ?: -EIO;
}

static int copy_column(sqlite3_stmt *stmt, int i, char *buf, size_t l) {
        const char *t = (const char *) sqlite3_column_text(stmt, i);

        if (!t || strlen(t) >= l)
                return -EBADMSG;
        strcpy(buf, t);
        return 0;
}

static int db_read_last_document(Emulator *e, DeviceDocument *ret) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        DeviceDocument d = {};
        const char *type;
        int rc, r;

        r = db_prepare(e,
                       "SELECT fn_number, receipt_id, fd, fiscal_sign, shift_number, number_in_shift, "
                       "registration_number, inn, serial, datetime_usec, total, receipt_type, qr "
                       "FROM last_document WHERE fn_number = ?",
                       &stmt);
        if (r < 0)
                return r;
        (void) sqlite3_bind_text(stmt, 1, e->fn_number, -1, SQLITE_STATIC);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        if (rc != SQLITE_ROW)
                return sqlite_result_to_errno(rc) ?: -EIO;

        if (copy_column(stmt, 0, d.fn_number, sizeof d.fn_number) < 0 ||
            copy_column(stmt, 1, d.receipt_id, sizeof d.receipt_id) < 0 ||
            copy_column(stmt, 3, d.fiscal_sign, sizeof d.fiscal_sign) < 0 ||
            copy_column(stmt, 6, d.registration_number, sizeof d.registration_number) < 0 ||
            copy_column(stmt, 7, d.inn, sizeof d.inn) < 0 ||
            copy_column(stmt, 8, d.serial, sizeof d.serial) < 0 ||
            copy_column(stmt, 12, d.qr, sizeof d.qr) < 0)
                return -EBADMSG;
        d.fiscal_document_number = (uint32_t) sqlite3_column_int64(stmt, 2);
        d.shift_number = (uint32_t) sqlite3_column_int64(stmt, 4);
        d.document_number_in_shift = (uint32_t) sqlite3_column_int64(stmt, 5);
        d.datetime = (usec_t) sqlite3_column_int64(stmt, 9);
        d.total = sqlite3_column_int64(stmt, 10);
        type = (const char *) sqlite3_column_text(stmt, 11);
        d.receipt_type = receipt_type_from_string(type);
        if (d.receipt_type < 0)
                return -EBADMSG;

        *ret = d;
        return 0;
}

static int db_setup(Emulator *e) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int version, rc, r;

        /* One register, one process: the lock is taken with the first write and kept until close, so a
         * second instance on the same file fails instead of sharing the numbering. Set before WAL, so the
         * WAL needs no shared memory. */
        r = db_exec(e, "PRAGMA locking_mode = EXCLUSIVE");
        if (r < 0)
                return r;
        r = db_exec(e, "PRAGMA journal_mode = WAL");
        if (r < 0)
                return r;
        r = db_exec(e, "PRAGMA synchronous = FULL");
        if (r < 0)
                return r;
        r = db_exec(e, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;

        r = db_prepare(e, "PRAGMA user_version", &stmt);
        if (r < 0)
                goto fail;
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW) {
                r = sqlite_result_to_errno(rc) ?: -EIO;
                goto fail;
        }
        version = sqlite3_column_int(stmt, 0);
        (void) sqlite3_finalize(stmt);
        stmt = NULL;

        if (version > EMULATOR_SCHEMA_VERSION) {
                r = -EPROTO;
                goto fail;
        }
        if (version == 0) {
                r = db_exec(e, schema_sql);
                if (r < 0)
                        goto fail;
        }

        r = db_prepare(e, "INSERT OR IGNORE INTO fiscal_memory (fn_number) VALUES (?)", &stmt);
        if (r < 0)
                goto fail;
        (void) sqlite3_bind_text(stmt, 1, e->fn_number, -1, SQLITE_STATIC);
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_DONE) {
                r = sqlite_result_to_errno(rc) ?: -EIO;
                goto fail;
        }
        return db_exec(e, "COMMIT");

fail:
        db_rollback(e);
        return r;
}

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

        if (isempty(o->emulator_path))
                return fail(ret_fault, DEVICE_FAULT_ERROR, -EINVAL);
        if (o->print_latency_min > o->print_latency_max)
                return fail(ret_fault, DEVICE_FAULT_ERROR, -EINVAL);

        e = new0(Emulator, 1);
        if (!e)
                return fail(ret_fault, DEVICE_FAULT_ERROR, -ENOMEM);
        *e = (Emulator) {
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
                return fail(ret_fault, DEVICE_FAULT_ERROR, -EINVAL);
        if (!IN_SET(e->fault, DEVICE_FAULT_NONE, DEVICE_FAULT_PAPER_OUT, DEVICE_FAULT_TIMEOUT_BEFORE,
                    DEVICE_FAULT_TIMEOUT_UNKNOWN, DEVICE_FAULT_FN_FULL, DEVICE_FAULT_SHIFT_EXPIRED,
                    DEVICE_FAULT_NOT_CONNECTED))
                return fail(ret_fault, DEVICE_FAULT_ERROR, -EINVAL);

        r = pthread_mutex_init(&e->lock, NULL);
        if (r != 0)
                return fail(ret_fault, DEVICE_FAULT_ERROR, -r);
        /* Waits are measured on CLOCK_MONOTONIC: a step of the wall clock must not stretch a latency. */
        (void) pthread_condattr_init(&attr);
        (void) pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        r = pthread_cond_init(&e->cond, &attr);
        (void) pthread_condattr_destroy(&attr);
        if (r != 0) {
                pthread_mutex_destroy(&e->lock);
                return fail(ret_fault, DEVICE_FAULT_ERROR, -r);
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
                return fail(ret_fault, DEVICE_FAULT_ERROR, r ?: -EIO);
        }
        e->db = db;
        (void) sqlite3_busy_timeout(db, 1000);

        r = db_setup(e);
        if (r < 0)
                return fail(ret_fault, DEVICE_FAULT_ERROR, r);

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

        if (!IN_SET(f, DEVICE_FAULT_NONE, DEVICE_FAULT_PAPER_OUT, DEVICE_FAULT_TIMEOUT_BEFORE,
                    DEVICE_FAULT_TIMEOUT_UNKNOWN, DEVICE_FAULT_FN_FULL, DEVICE_FAULT_SHIFT_EXPIRED,
                    DEVICE_FAULT_NOT_CONNECTED))
                return -EINVAL;

        pthread_mutex_lock(&e->lock);
        e->fault = f;
        e->fault_count = f == DEVICE_FAULT_NONE ? 0 : count;
        pthread_mutex_unlock(&e->lock);
        return 0;
}

static bool shift_expired(const FiscalMemory *m, usec_t t) {
        return m->shift_open && usec_sub_unsigned(t, m->shift_open_usec) >= SHIFT_MAX_USEC;
}

/* The standing condition a status shows: injected faults first, then what the fiscal memory says. */
static DeviceFault emulator_condition(Emulator *e, const FiscalMemory *m) {
        DeviceFault f = emulator_peek_fault(e);

        if (IN_SET(f, DEVICE_FAULT_PAPER_OUT, DEVICE_FAULT_FN_FULL, DEVICE_FAULT_SHIFT_EXPIRED))
                return f;
        if (e->fn_capacity > 0 && m->last_fd >= e->fn_capacity)
                return DEVICE_FAULT_FN_FULL;
        if (shift_expired(m, emulator_now(e)))
                return DEVICE_FAULT_SHIFT_EXPIRED;
        return DEVICE_FAULT_NONE;
}

static int emulator_status(void *state, DeviceStatus *ret, DeviceFault *ret_fault) {
        Emulator *e = state;
        FiscalMemory m;
        DeviceFault f;
        int r;

        f = emulator_take_fault(e, EMULATOR_OP_QUERY);
        if (f != DEVICE_FAULT_NONE)
                return fail_fault(ret_fault, f);

        r = db_read_memory(e, &m);
        if (r < 0)
                return fail(ret_fault, DEVICE_FAULT_ERROR, r);

        *ret = (DeviceStatus) {
                .condition = emulator_condition(e, &m),
                .shift_open = m.shift_open,
                .shift_number = m.shift_number,
                .shift_open_usec = m.shift_open ? m.shift_open_usec : 0,
                .last_fiscal_document = m.last_fd,
        };
        strcpy(ret->fn_number, e->fn_number);
        strcpy(ret->serial, e->serial);
        return 0;
}

static int parse_receipt(const char *json, ReceiptType *ret_type, int64_t *ret_total) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *type, *total;
        ReceiptType t;
        int64_t v;
        int r;

        o = json_tokener_parse(json);
        if (!o || !json_object_is_type(o, json_type_object))
                return -EINVAL;
        if (!json_object_object_get_ex(o, "type", &type) || !json_object_is_type(type, json_type_string))
                return -EINVAL;
        t = receipt_type_from_string(json_object_get_string(type));
        if (t < 0)
                return -EINVAL;
        if (!json_object_object_get_ex(o, "total", &total))
                return -EINVAL;
        r = money_from_json(total, MONEY_SCALE_KOPECKS, &v);
        if (r < 0)
                return -EINVAL;
        if (v < 0)
                return -EINVAL;

        *ret_type = t;
        *ret_total = v;
        return 0;
}

/* Numbers the document and commits it to the fiscal memory; only then is it made. */
static int emulator_make_document(Emulator *e, const char *receipt_id, ReceiptType type, int64_t total,
                                  DeviceDocument *ret, DeviceFault *ret_fault) {
        DeviceDocument d = {};
        FiscalMemory m;
        usec_t t;
        int r;

        r = db_exec(e, "BEGIN IMMEDIATE");
        if (r < 0)
                return fail(ret_fault, DEVICE_FAULT_ERROR, r);
        r = db_read_memory(e, &m);
        if (r < 0) {
                db_rollback(e);
                return fail(ret_fault, DEVICE_FAULT_ERROR, r);
        }

        t = emulator_now(e);
        if ((e->fn_capacity > 0 && m.last_fd >= e->fn_capacity) || m.last_fd == UINT32_MAX) {
                db_rollback(e);
                return fail_fault(ret_fault, DEVICE_FAULT_FN_FULL);
        }
        if (shift_expired(&m, t)) {
                db_rollback(e);
                return fail_fault(ret_fault, DEVICE_FAULT_SHIFT_EXPIRED);
        }

        /* The first document after a Z report opens the next shift. */
        if (!m.shift_open) {
                m.shift_number++;
                m.shift_open = true;
                m.shift_open_usec = t;
                m.shift_receipts = 0;
                m.shift_sales = 0;
                m.shift_refunds = 0;
        }
        m.last_fd++;
        m.shift_receipts++;
        if (__builtin_add_overflow(type == RECEIPT_TYPE_REFUND ? m.shift_refunds : m.shift_sales, total,
                                   type == RECEIPT_TYPE_REFUND ? &m.shift_refunds : &m.shift_sales)) {
                db_rollback(e);
                return fail(ret_fault, DEVICE_FAULT_REJECTED, -EOVERFLOW);
        }

        d = (DeviceDocument) {
                .fiscal_document_number = m.last_fd,
                .shift_number = m.shift_number,
                .document_number_in_shift = m.shift_receipts,
                .datetime = t,
                .total = total,
                .receipt_type = type,
        };
        strcpy(d.receipt_id, receipt_id);
        strcpy(d.fn_number, e->fn_number);
        strcpy(d.registration_number, e->registration_number);
        strcpy(d.inn, e->inn);
        strcpy(d.serial, e->serial);
        r = device_emulator_fiscal_sign(e->fn_number, d.fiscal_document_number, t, total, type,
                                        d.fiscal_sign);
        if (r >= 0)
                r = device_emulator_format_qr(d.qr, sizeof d.qr, t, total, e->fn_number,
                                              d.fiscal_document_number, d.fiscal_sign, type);
        if (r >= 0)
                r = db_write_memory(e, &m);
        if (r >= 0)
                r = db_write_last_document(e, &d);
        if (r >= 0)
                r = db_exec(e, "COMMIT");
        if (r < 0) {
                db_rollback(e);
                return fail(ret_fault, DEVICE_FAULT_ERROR, r);
        }

        *ret = d;
        return 0;
}

static int emulator_print_receipt(void *state, const char *receipt_id, const char *canonical_json,
                                  DeviceDocument *ret, DeviceFault *ret_fault) {
        Emulator *e = state;
        DeviceDocument d;
        ReceiptType type;
        DeviceFault f;
        int64_t total;
        int r;

        assert(e);
        assert(receipt_id);
        assert(canonical_json);
        assert(ret);
        assert(ret_fault);

        if (isempty(receipt_id) || strlen(receipt_id) > DEVICE_RECEIPT_ID_MAX)
                return fail(ret_fault, DEVICE_FAULT_REJECTED, -EINVAL);
        r = parse_receipt(canonical_json, &type, &total);
        if (r < 0)
                return fail(ret_fault, DEVICE_FAULT_REJECTED, r);

        f = emulator_take_fault(e, EMULATOR_OP_RECEIPT);
        switch (f) {
        case DEVICE_FAULT_NONE:
        case DEVICE_FAULT_TIMEOUT_UNKNOWN:
                break;
        case DEVICE_FAULT_TIMEOUT_BEFORE:
                /* As a driver whose own read timed out before the register took the document: within the
                 * operation's timeout, so the caller learns that nothing was printed. */
                emulator_wait(e, e->timeout / 2);
                return fail_fault(ret_fault, f);
        default:
                return fail_fault(ret_fault, f);
        }

        emulator_wait(e, emulator_latency(e));

        r = emulator_make_document(e, receipt_id, type, total, &d, ret_fault);
        if (r < 0)
                return r;

        if (f == DEVICE_FAULT_TIMEOUT_UNKNOWN)
                /* The document is made and in the fiscal memory, but the answer comes only after the
                 * caller gave up on it. */
                emulator_wait(e, usec_add(e->timeout, e->timeout / 2));

        *ret = d;
        return 0;
}

static int emulator_last_document(void *state, DeviceDocument *ret, DeviceFault *ret_fault) {
        Emulator *e = state;
        DeviceFault f;
        int r;

        f = emulator_take_fault(e, EMULATOR_OP_QUERY);
        if (f != DEVICE_FAULT_NONE)
                return fail_fault(ret_fault, f);

        r = db_read_last_document(e, ret);
        if (r == -ENOENT)
                return fail(ret_fault, DEVICE_FAULT_NONE, r);
        if (r < 0)
                return fail(ret_fault, DEVICE_FAULT_ERROR, r);
        return 0;
}

static void report_fill(const FiscalMemory *m, DeviceReport *ret) {
        *ret = (DeviceReport) {
                .shift_open = m->shift_open,
                .shift_number = m->shift_number,
                .shift_open_usec = m->shift_open ? m->shift_open_usec : 0,
                .last_fiscal_document = m->last_fd,
        };
        if (m->shift_open) {
                ret->n_receipts = m->shift_receipts;
                ret->sales_total = m->shift_sales;
                ret->refunds_total = m->shift_refunds;
        }
}

static int emulator_report_x(void *state, DeviceReport *ret, DeviceFault *ret_fault) {
        Emulator *e = state;
        FiscalMemory m;
        DeviceFault f;
        int r;

        f = emulator_take_fault(e, EMULATOR_OP_REPORT);
        if (f != DEVICE_FAULT_NONE)
                return fail_fault(ret_fault, f);

        emulator_wait(e, emulator_latency(e));

        r = db_read_memory(e, &m);
        if (r < 0)
                return fail(ret_fault, DEVICE_FAULT_ERROR, r);
        report_fill(&m, ret);
        return 0;
}

static int emulator_report_z(void *state, DeviceReport *ret, DeviceFault *ret_fault) {
        Emulator *e = state;
        DeviceReport report;
        FiscalMemory m;
        DeviceFault f;
        int r;

        f = emulator_take_fault(e, EMULATOR_OP_REPORT);
        if (f != DEVICE_FAULT_NONE)
                return fail_fault(ret_fault, f);

        emulator_wait(e, emulator_latency(e));

        r = db_exec(e, "BEGIN IMMEDIATE");
        if (r < 0)
                return fail(ret_fault, DEVICE_FAULT_ERROR, r);
        r = db_read_memory(e, &m);
        if (r < 0) {
                db_rollback(e);
                return fail(ret_fault, DEVICE_FAULT_ERROR, r);
        }
        if (!m.shift_open) {
                db_rollback(e);
                return fail(ret_fault, DEVICE_FAULT_REJECTED, -EALREADY);
        }

        report_fill(&m, &report);
        report.closed = true;
        m.shift_open = false;
        m.shift_open_usec = 0;
        r = db_write_memory(e, &m);
        if (r >= 0)
                r = db_exec(e, "COMMIT");
        if (r < 0) {
                db_rollback(e);
                return fail(ret_fault, DEVICE_FAULT_ERROR, r);
        }

        /* Closing the shift is what ends "shift over 24 h", injected or not. */
        pthread_mutex_lock(&e->lock);
        if (e->fault == DEVICE_FAULT_SHIFT_EXPIRED) {
                e->fault = DEVICE_FAULT_NONE;
                e->fault_count = 0;
        }
        pthread_mutex_unlock(&e->lock);

        *ret = report;
        return 0;
}

const DeviceDriver device_emulator_driver = {
        .name = "emulator",
        .open = emulator_open,
        .status = emulator_status,
        .print_receipt = emulator_print_receipt,
        .last_document = emulator_last_document,
        .report_x = emulator_report_x,
        .report_z = emulator_report_z,
        .close = emulator_close,
        .interrupt = emulator_interrupt,
        .inject_fault = emulator_inject_fault,
};
