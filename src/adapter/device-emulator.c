/* SPDX-License-Identifier: MIT */
/* The emulated register: its fiscal memory in SQLite (counters, shifts and their totals, a journal of every
 * document; one transaction per document, committed with synchronous=FULL before the document counts as
 * made), fiscal signs, the QR string, print latency, the refusals of a register (taxation it is not
 * registered for, payments short of the total), and its faults, natural (fiscal drive full or expired,
 * shift over 24 h, documents unsent to the OFD for 30 days) or injected. A blocking driver: everything but
 * interrupt and inject_fault runs on its worker thread (device-thread.c). */

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

/* Version 1: counters and the last document. */
static const char schema_v1[] =
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
        "        qr TEXT NOT NULL);";

/* Version 2: a journal of every document, as a fiscal drive keeps its archive (receipts are found in it by
 * our receipt id: the emulator's own way to answer "did you make it?"), the shifts' totals by receipt type
 * and payment form, the drive's validity and its OFD exchange. The v1 file's last document moves into the
 * journal; the totals of a shift open during the upgrade start from zero. */
static const char schema_v2[] =
        "ALTER TABLE fiscal_memory ADD COLUMN fn_valid_until_usec INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE fiscal_memory ADD COLUMN ofd_online INTEGER NOT NULL DEFAULT 1;"
        "CREATE TABLE documents ("
        "        fn_number TEXT NOT NULL,"
        "        fd INTEGER NOT NULL,"
        "        kind TEXT NOT NULL CHECK (kind IN ('receipt', 'open_shift', 'close_shift')),"
        "        receipt_id TEXT,"
        "        receipt_type TEXT,"
        "        shift_number INTEGER NOT NULL,"
        "        number_in_shift INTEGER NOT NULL DEFAULT 0,"
        "        datetime_usec INTEGER NOT NULL,"
        "        total INTEGER NOT NULL DEFAULT 0,"
        "        change INTEGER NOT NULL DEFAULT 0,"
        "        fiscal_sign TEXT NOT NULL,"
        "        qr TEXT,"
        "        ofd_confirmed INTEGER NOT NULL DEFAULT 0,"
        "        PRIMARY KEY (fn_number, fd)) WITHOUT ROWID;"
        "CREATE INDEX documents_receipt_id ON documents (receipt_id) WHERE receipt_id IS NOT NULL;"
        "CREATE INDEX documents_unconfirmed ON documents (fn_number, fd) WHERE ofd_confirmed = 0;"
        "CREATE TABLE shift_totals ("
        "        fn_number TEXT NOT NULL,"
        "        shift_number INTEGER NOT NULL,"
        "        receipt_type TEXT NOT NULL,"
        "        count INTEGER NOT NULL DEFAULT 0,"
        "        total INTEGER NOT NULL DEFAULT 0,"
        "        cash INTEGER NOT NULL DEFAULT 0,"
        "        electronic INTEGER NOT NULL DEFAULT 0,"
        "        prepayment INTEGER NOT NULL DEFAULT 0,"
        "        credit INTEGER NOT NULL DEFAULT 0,"
        "        other INTEGER NOT NULL DEFAULT 0,"
        "        PRIMARY KEY (fn_number, shift_number, receipt_type)) WITHOUT ROWID;"
        "INSERT INTO documents (fn_number, fd, kind, receipt_id, receipt_type, shift_number, number_in_shift,"
        "                       datetime_usec, total, fiscal_sign, qr, ofd_confirmed)"
        "        SELECT fn_number, fd, 'receipt', receipt_id, receipt_type, shift_number, number_in_shift,"
        "               datetime_usec, total, fiscal_sign, qr, 1 FROM last_document;"
        "DROP TABLE last_document;";

static const char *const schema_steps[EMULATOR_SCHEMA_VERSION] = { schema_v1, schema_v2 };

static int fail(DeviceResult *result, DeviceFault f, int error) {
        result->error = error;
        result->fault = f;
        return error;
}

static int fail_fault(DeviceResult *result, DeviceFault f) {
        return fail(result, f, device_fault_to_errno(f));
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

static bool fault_injectable(DeviceFault f) {
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

/* Faults that make the document anyway or make nothing at all. TIMEOUT_UNKNOWN: go on, answer late. */
static int emulator_apply_fault(Emulator *e, DeviceFault f, DeviceResult *result) {
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

/* ---- fiscal sign and QR ---- */

int device_emulator_fiscal_sign(const char *fn_number, uint32_t fd, usec_t datetime, int64_t total,
                                const char *kind, char ret[static DEVICE_FISCAL_SIGN_LEN + 1]) {
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
                     strempty(kind));
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
        /* n is the settlement (tag 1054). */
        n = snprintf(buf, l, "t=%04d%02d%02dT%02d%02d&s=%s&fn=%s&i=%" PRIu32 "&fp=%s&n=%u",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     MONEY_FORMAT(total, MONEY_SCALE_KOPECKS), fn_number, fd, fiscal_sign,
                     receipt_type_to_ffd(type));
        if (n < 0 || (size_t) n >= l)
                return -ENOBUFS;
        return 0;
}

/* ---- the fiscal memory ---- */

static int db_error(Emulator *e, int rc) {
        return sqlite_result_to_errno(rc) ?: -EIO;
}

static int db_exec(Emulator *e, const char *sql) {
        int rc = sqlite3_exec(e->db, sql, NULL, NULL, NULL);

        return rc == SQLITE_OK ? 0 : db_error(e, rc);
}

static int db_prepare(Emulator *e, const char *sql, sqlite3_stmt **ret) {
        int rc = sqlite3_prepare_v2(e->db, sql, -1, ret, NULL);

        return rc == SQLITE_OK ? 0 : db_error(e, rc);
}

static int db_step_done(Emulator *e, sqlite3_stmt *stmt) {
        int rc = sqlite3_step(stmt);

        return rc == SQLITE_DONE ? 0 : db_error(e, rc);
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
                       "fn_valid_until_usec, ofd_online FROM fiscal_memory WHERE fn_number = ?",
                       &stmt);
        if (r < 0)
                return r;
        (void) sqlite3_bind_text(stmt, 1, e->fn_number, -1, SQLITE_STATIC);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        if (rc != SQLITE_ROW)
                return db_error(e, rc);

        *ret = (FiscalMemory) {
                .last_fd = (uint32_t) sqlite3_column_int64(stmt, 0),
                .shift_number = (uint32_t) sqlite3_column_int64(stmt, 1),
                .shift_open = sqlite3_column_int(stmt, 2) != 0,
                .shift_open_usec = (usec_t) sqlite3_column_int64(stmt, 3),
                .shift_receipts = (uint32_t) sqlite3_column_int64(stmt, 4),
                .fn_valid_until = (usec_t) sqlite3_column_int64(stmt, 5),
                .ofd_online = sqlite3_column_int(stmt, 6) != 0,
        };
        return 0;
}

static int db_write_memory(Emulator *e, const FiscalMemory *m) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int r;

        r = db_prepare(e,
                       "UPDATE fiscal_memory SET last_fd = ?, shift_number = ?, shift_open = ?, "
                       "shift_open_usec = ?, shift_receipts = ?, fn_valid_until_usec = ?, ofd_online = ? "
                       "WHERE fn_number = ?",
                       &stmt);
        if (r < 0)
                return r;
        (void) sqlite3_bind_int64(stmt, 1, m->last_fd);
        (void) sqlite3_bind_int64(stmt, 2, m->shift_number);
        (void) sqlite3_bind_int(stmt, 3, m->shift_open);
        (void) sqlite3_bind_int64(stmt, 4, (int64_t) m->shift_open_usec);
        (void) sqlite3_bind_int64(stmt, 5, m->shift_receipts);
        (void) sqlite3_bind_int64(stmt, 6, (int64_t) m->fn_valid_until);
        (void) sqlite3_bind_int(stmt, 7, m->ofd_online);
        (void) sqlite3_bind_text(stmt, 8, e->fn_number, -1, SQLITE_STATIC);
        return db_step_done(e, stmt);
}

/* One row of the journal. */
typedef struct EmulatorDocument {
        uint32_t fd;
        const char *kind;               /* "receipt", "open_shift", "close_shift" */
        const char *receipt_id;         /* receipts */
        ReceiptType receipt_type;       /* receipts */
        uint32_t shift_number;
        uint32_t number_in_shift;
        usec_t datetime;
        int64_t total, change;
        const char *fiscal_sign;
        const char *qr;                 /* receipts */
        bool ofd_confirmed;
} EmulatorDocument;

static int db_insert_document(Emulator *e, const EmulatorDocument *d) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int r;

        r = db_prepare(e,
                       "INSERT INTO documents (fn_number, fd, kind, receipt_id, receipt_type, shift_number, "
                       "number_in_shift, datetime_usec, total, change, fiscal_sign, qr, ofd_confirmed) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       &stmt);
        if (r < 0)
                return r;
        (void) sqlite3_bind_text(stmt, 1, e->fn_number, -1, SQLITE_STATIC);
        (void) sqlite3_bind_int64(stmt, 2, d->fd);
        (void) sqlite3_bind_text(stmt, 3, d->kind, -1, SQLITE_STATIC);
        (void) sqlite3_bind_text(stmt, 4, d->receipt_id, -1, SQLITE_STATIC);
        (void) sqlite3_bind_text(stmt, 5, d->receipt_id ? receipt_type_to_string(d->receipt_type) : NULL, -1,
                                 SQLITE_STATIC);
        (void) sqlite3_bind_int64(stmt, 6, d->shift_number);
        (void) sqlite3_bind_int64(stmt, 7, d->number_in_shift);
        (void) sqlite3_bind_int64(stmt, 8, (int64_t) d->datetime);
        (void) sqlite3_bind_int64(stmt, 9, d->total);
        (void) sqlite3_bind_int64(stmt, 10, d->change);
        (void) sqlite3_bind_text(stmt, 11, d->fiscal_sign, -1, SQLITE_STATIC);
        (void) sqlite3_bind_text(stmt, 12, d->qr, -1, SQLITE_STATIC);
        (void) sqlite3_bind_int(stmt, 13, d->ofd_confirmed);
        return db_step_done(e, stmt);
}

static int copy_column(sqlite3_stmt *stmt, int i, char *buf, size_t l) {
        const char *t = (const char *) sqlite3_column_text(stmt, i);

        if (!t || strlen(t) >= l)
                return -EBADMSG;
        strcpy(buf, t);
        return 0;
}

/* The receipt document made for receipt_id; -ENOENT when there is none. */
static int db_find_receipt(Emulator *e, const char *receipt_id, DeviceDocument *ret) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        DeviceDocument d = {};
        int rc, r;

        r = db_prepare(e,
                       "SELECT fd, fiscal_sign, shift_number, number_in_shift, datetime_usec, total, change, "
                       "receipt_type, qr FROM documents WHERE receipt_id = ? AND fn_number = ? AND kind = 'receipt'",
                       &stmt);
        if (r < 0)
                return r;
        (void) sqlite3_bind_text(stmt, 1, receipt_id, -1, SQLITE_STATIC);
        (void) sqlite3_bind_text(stmt, 2, e->fn_number, -1, SQLITE_STATIC);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        if (rc != SQLITE_ROW)
                return db_error(e, rc);

        if (strlen(receipt_id) >= sizeof d.receipt_id || copy_column(stmt, 1, d.fiscal_sign, sizeof d.fiscal_sign) < 0 ||
            copy_column(stmt, 8, d.qr, sizeof d.qr) < 0)
                return -EBADMSG;
        strcpy(d.receipt_id, receipt_id);
        d.fiscal_document_number = (uint32_t) sqlite3_column_int64(stmt, 0);
        d.shift_number = (uint32_t) sqlite3_column_int64(stmt, 2);
        d.document_number_in_shift = (uint32_t) sqlite3_column_int64(stmt, 3);
        d.datetime = (usec_t) sqlite3_column_int64(stmt, 4);
        d.total = sqlite3_column_int64(stmt, 5);
        d.change = sqlite3_column_int64(stmt, 6);
        d.receipt_type = receipt_type_from_string((const char *) sqlite3_column_text(stmt, 7));
        if (d.receipt_type < 0)
                return -EBADMSG;
        strcpy(d.fn_number, e->fn_number);
        strcpy(d.registration_number, e->registration_number);
        strcpy(d.inn, e->inn);
        strcpy(d.serial, e->serial);

        *ret = d;
        return 0;
}

static int db_read_totals(Emulator *e, uint32_t shift, DeviceTotals *ret) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        DeviceTotals t = {};
        int rc, r;

        r = db_prepare(e,
                       "SELECT receipt_type, count, total, cash, electronic, prepayment, credit, other "
                       "FROM shift_totals WHERE fn_number = ? AND shift_number = ?",
                       &stmt);
        if (r < 0)
                return r;
        (void) sqlite3_bind_text(stmt, 1, e->fn_number, -1, SQLITE_STATIC);
        (void) sqlite3_bind_int64(stmt, 2, shift);
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
                ReceiptType type = receipt_type_from_string((const char *) sqlite3_column_text(stmt, 0));
                DeviceTypeTotals *tt;

                if (type < 0)
                        return -EBADMSG;
                tt = t.by_type + type;
                tt->count = (uint32_t) sqlite3_column_int64(stmt, 1);
                tt->total = sqlite3_column_int64(stmt, 2);
                for (int f = 0; f < _DEVICE_PAYMENT_MAX; f++)
                        tt->payments[f] = sqlite3_column_int64(stmt, 3 + f);
        }
        if (rc != SQLITE_DONE)
                return db_error(e, rc);
        *ret = t;
        return 0;
}

static int db_write_type_totals(Emulator *e, uint32_t shift, ReceiptType type, const DeviceTypeTotals *tt) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int r;

        r = db_prepare(e,
                       "INSERT OR REPLACE INTO shift_totals (fn_number, shift_number, receipt_type, count, total, "
                       "cash, electronic, prepayment, credit, other) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       &stmt);
        if (r < 0)
                return r;
        (void) sqlite3_bind_text(stmt, 1, e->fn_number, -1, SQLITE_STATIC);
        (void) sqlite3_bind_int64(stmt, 2, shift);
        (void) sqlite3_bind_text(stmt, 3, receipt_type_to_string(type), -1, SQLITE_STATIC);
        (void) sqlite3_bind_int64(stmt, 4, tt->count);
        (void) sqlite3_bind_int64(stmt, 5, tt->total);
        for (int f = 0; f < _DEVICE_PAYMENT_MAX; f++)
                (void) sqlite3_bind_int64(stmt, 6 + f, tt->payments[f]);
        return db_step_done(e, stmt);
}

/* Documents the OFD has not confirmed. With the channel online they are confirmed now: the register's link
 * caught up. */
static int db_ofd_queue(Emulator *e, const FiscalMemory *m, DeviceOfdQueue *ret) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        DeviceOfdQueue q = {};
        int rc, r;

        r = db_prepare(e,
                       "SELECT COUNT(*), MIN(fd) FROM documents WHERE fn_number = ? AND ofd_confirmed = 0", &stmt);
        if (r < 0)
                return r;
        (void) sqlite3_bind_text(stmt, 1, e->fn_number, -1, SQLITE_STATIC);
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW)
                return db_error(e, rc);
        q.unsent = (uint32_t) sqlite3_column_int64(stmt, 0);
        q.first_unsent = (uint32_t) sqlite3_column_int64(stmt, 1);
        sqlite3_finalize(TAKE_PTR(stmt));

        if (q.unsent > 0) {
                r = db_prepare(e, "SELECT datetime_usec FROM documents WHERE fn_number = ? AND fd = ?", &stmt);
                if (r < 0)
                        return r;
                (void) sqlite3_bind_text(stmt, 1, e->fn_number, -1, SQLITE_STATIC);
                (void) sqlite3_bind_int64(stmt, 2, q.first_unsent);
                rc = sqlite3_step(stmt);
                if (rc != SQLITE_ROW)
                        return rc == SQLITE_DONE ? -EBADMSG : db_error(e, rc);
                q.first_unsent_usec = (usec_t) sqlite3_column_int64(stmt, 0);
                sqlite3_finalize(TAKE_PTR(stmt));
        }

        if (q.unsent > 0 && m->ofd_online) {
                r = db_exec(e, "BEGIN IMMEDIATE");
                if (r < 0)
                        return r;
                r = db_prepare(e, "UPDATE documents SET ofd_confirmed = 1 WHERE fn_number = ? AND ofd_confirmed = 0",
                               &stmt);
                if (r >= 0) {
                        (void) sqlite3_bind_text(stmt, 1, e->fn_number, -1, SQLITE_STATIC);
                        r = db_step_done(e, stmt);
                }
                if (r >= 0)
                        r = db_exec(e, "COMMIT");
                if (r < 0) {
                        db_rollback(e);
                        return r;
                }
                q = (DeviceOfdQueue) {};
        }

        *ret = q;
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
                r = db_error(e, rc);
                goto fail;
        }
        version = sqlite3_column_int(stmt, 0);
        sqlite3_finalize(TAKE_PTR(stmt));

        if (version > EMULATOR_SCHEMA_VERSION || version < 0) {
                r = -EPROTO;
                goto fail;
        }
        for (int v = version; v < EMULATOR_SCHEMA_VERSION; v++) {
                r = db_exec(e, schema_steps[v]);
                if (r < 0)
                        goto fail;
        }
        if (version < EMULATOR_SCHEMA_VERSION) {
                char sql[64];

                snprintf(sql, sizeof sql, "PRAGMA user_version = %i", EMULATOR_SCHEMA_VERSION);
                r = db_exec(e, sql);
                if (r < 0)
                        goto fail;
        }

        /* A new fiscal drive is valid for DEVICE_EMULATOR_FN_VALIDITY from its first use. */
        r = db_prepare(e, "INSERT OR IGNORE INTO fiscal_memory (fn_number) VALUES (?)", &stmt);
        if (r < 0)
                goto fail;
        (void) sqlite3_bind_text(stmt, 1, e->fn_number, -1, SQLITE_STATIC);
        r = db_step_done(e, stmt);
        if (r < 0)
                goto fail;
        sqlite3_finalize(TAKE_PTR(stmt));
        r = db_prepare(e, "UPDATE fiscal_memory SET fn_valid_until_usec = ? WHERE fn_number = ? "
                          "AND fn_valid_until_usec = 0", &stmt);
        if (r < 0)
                goto fail;
        (void) sqlite3_bind_int64(stmt, 1, (int64_t) usec_add(emulator_now(e), DEVICE_EMULATOR_FN_VALIDITY));
        (void) sqlite3_bind_text(stmt, 2, e->fn_number, -1, SQLITE_STATIC);
        r = db_step_done(e, stmt);
        if (r < 0)
                goto fail;
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

        *ret_fault = DEVICE_FAULT_ERROR;
        if (isempty(o->emulator_path))
                return -EINVAL;
        if (o->print_latency_min > o->print_latency_max)
                return -EINVAL;

        e = new0(Emulator, 1);
        if (!e)
                return -ENOMEM;
        *e = (Emulator) {
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
        if (!fault_injectable(e->fault))
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

        r = db_setup(e);
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

        if (!fault_injectable(f))
                return -EINVAL;

        pthread_mutex_lock(&e->lock);
        e->fault = f;
        e->fault_count = f == DEVICE_FAULT_NONE ? 0 : count;
        pthread_mutex_unlock(&e->lock);
        return 0;
}

static bool shift_expired(const FiscalMemory *m, usec_t t) {
        return m->shift_open && usec_sub_unsigned(t, m->shift_open_usec) >= DEVICE_SHIFT_MAX_USEC;
}

/* Whether the drive has room for `documents` more (a receipt in a closed shift needs two: the opening and
 * itself) and is still valid. */
static bool fn_exhausted_for(Emulator *e, const FiscalMemory *m, usec_t t, uint32_t documents) {
        return (e->fn_capacity > 0 && (uint64_t) m->last_fd + documents > e->fn_capacity) ||
               (uint64_t) m->last_fd + documents > UINT32_MAX || (m->fn_valid_until > 0 && t >= m->fn_valid_until);
}

static bool fn_exhausted(Emulator *e, const FiscalMemory *m, usec_t t) {
        return fn_exhausted_for(e, m, t, 1);
}

static bool ofd_blocked(const DeviceOfdQueue *q, usec_t t) {
        return q->unsent > 0 && usec_sub_unsigned(t, q->first_unsent_usec) >= DEVICE_OFD_BLOCK_AFTER;
}

/* The standing condition a status shows: injected faults first, then what the fiscal memory says. */
static DeviceFault emulator_condition(Emulator *e, const FiscalMemory *m, const DeviceOfdQueue *q, usec_t t) {
        DeviceFault f = emulator_peek_fault(e);

        if (IN_SET(f, DEVICE_FAULT_PAPER_OUT, DEVICE_FAULT_COVER_OPEN, DEVICE_FAULT_FN_FULL,
                   DEVICE_FAULT_SHIFT_EXPIRED))
                return f;
        if (fn_exhausted(e, m, t))
                return DEVICE_FAULT_FN_FULL;
        if (ofd_blocked(q, t))
                return DEVICE_FAULT_OFD_BLOCKED;
        if (shift_expired(m, t))
                return DEVICE_FAULT_SHIFT_EXPIRED;
        return DEVICE_FAULT_NONE;
}

static int emulator_read_status(Emulator *e, DeviceStatus *ret) {
        DeviceStatus s = {};
        FiscalMemory m;
        int r;

        r = db_read_memory(e, &m);
        if (r < 0)
                return r;
        r = db_ofd_queue(e, &m, &s.ofd);
        if (r < 0)
                return r;
        if (m.shift_open) {
                r = db_read_totals(e, m.shift_number, &s.shift_totals);
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
static void emulator_refresh_status(Emulator *e, DeviceResult *result) {
        result->have_status = emulator_read_status(e, &result->status) >= 0;
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

        if (!json_object_object_get_ex(o, "payments", &payments) || !json_object_is_type(payments, json_type_array))
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

static int emulator_begin(Emulator *e, FiscalMemory *m, DeviceResult *result) {
        int r;

        r = db_exec(e, "BEGIN IMMEDIATE");
        if (r < 0)
                return fail(result, DEVICE_FAULT_ERROR, r);
        r = db_read_memory(e, m);
        if (r < 0) {
                db_rollback(e);
                return fail(result, DEVICE_FAULT_ERROR, r);
        }
        return 0;
}

static int emulator_commit(Emulator *e, DeviceResult *result) {
        int r = db_exec(e, "COMMIT");

        if (r < 0) {
                db_rollback(e);
                return fail(result, DEVICE_FAULT_ERROR, r);
        }
        return 0;
}

/* Whether the drive takes another document now (inside the transaction): full, expired, or blocked by the
 * OFD rule. */
static int emulator_check_drive(Emulator *e, const FiscalMemory *m, usec_t t, uint32_t documents,
                                DeviceResult *result) {
        DeviceOfdQueue q;
        int r;

        if (fn_exhausted_for(e, m, t, documents))
                return fail_fault(result, DEVICE_FAULT_FN_FULL);
        r = db_ofd_queue(e, &(FiscalMemory) { .ofd_online = false }, &q);
        if (r < 0)
                return fail(result, DEVICE_FAULT_ERROR, r);
        if (ofd_blocked(&q, t))
                return fail_fault(result, DEVICE_FAULT_OFD_BLOCKED);
        return 0;
}

/* Adds the opening of a shift to the journal (inside the transaction) and opens it in *m. */
static int emulator_open_shift_locked(Emulator *e, FiscalMemory *m, usec_t t, DeviceReport *ret) {
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
        r = db_insert_document(e, &(EmulatorDocument) {
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
                *ret = (DeviceReport) {
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
                db_rollback(e);
                return r;
        }
        if (shift_expired(&m, t)) {
                db_rollback(e);
                return fail_fault(result, DEVICE_FAULT_SHIFT_EXPIRED);
        }

        /* A receipt in a closed shift opens one first, as registers do. */
        if (!m.shift_open) {
                r = emulator_open_shift_locked(e, &m, t, NULL);
                if (r < 0)
                        goto fail;
        }
        r = db_read_totals(e, m.shift_number, &totals);
        if (r < 0)
                goto fail;
        if (device_totals_add(&totals, rc->type, rc->total, rc->payments) < 0) {
                db_rollback(e);
                return fail(result, DEVICE_FAULT_REJECTED, -EOVERFLOW);
        }
        m.last_fd++;
        m.shift_receipts++;

        d = (DeviceDocument) {
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
                r = db_write_memory(e, &m);
        if (r >= 0)
                r = db_write_type_totals(e, m.shift_number, rc->type, totals.by_type + rc->type);
        if (r >= 0)
                r = db_insert_document(e, &(EmulatorDocument) {
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
        db_rollback(e);
        return fail(result, DEVICE_FAULT_ERROR, r);
}

static void emulator_print(Emulator *e, const DeviceRequest *req, DeviceResult *result) {
        const char *why = NULL;
        EmulatorReceipt rc;
        DeviceFault f;
        int r;

        if (isempty(req->receipt_id) || strlen(req->receipt_id) > DEVICE_RECEIPT_ID_MAX || !req->receipt_json) {
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

        r = db_find_receipt(e, req->receipt_id, &result->doc);
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

static void emulator_open_shift(Emulator *e, DeviceResult *result) {
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
                db_rollback(e);
                result->report = (DeviceReport) {
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
                db_rollback(e);
                return;
        }
        r = emulator_open_shift_locked(e, &m, t, &result->report);
        if (r >= 0)
                r = db_write_memory(e, &m);
        if (r < 0) {
                db_rollback(e);
                (void) fail(result, DEVICE_FAULT_ERROR, r);
                return;
        }
        if (emulator_commit(e, result) < 0)
                return;
        if (f == DEVICE_FAULT_TIMEOUT_UNKNOWN)
                emulator_wait(e, usec_add(e->timeout, e->timeout / 2));
        emulator_refresh_status(e, result);
}

static void emulator_report_x(Emulator *e, DeviceResult *result) {
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

        r = db_read_memory(e, &m);
        if (r >= 0 && m.shift_open)
                r = db_read_totals(e, m.shift_number, &report.totals);
        if (r >= 0)
                r = db_ofd_queue(e, &m, &report.ofd);
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

        r = db_prepare(e,
                       "SELECT fd, datetime_usec, fiscal_sign, (SELECT datetime_usec FROM documents o "
                       "WHERE o.fn_number = c.fn_number AND o.kind = 'open_shift' AND o.shift_number = c.shift_number) "
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
                return db_error(e, rc);
        z.fiscal_document_number = (uint32_t) sqlite3_column_int64(stmt, 0);
        z.datetime = (usec_t) sqlite3_column_int64(stmt, 1);
        if (copy_column(stmt, 2, z.fiscal_sign, sizeof z.fiscal_sign) < 0)
                return -EBADMSG;
        z.shift_open_usec = (usec_t) sqlite3_column_int64(stmt, 3);
        r = db_read_totals(e, shift, &z.totals);
        if (r < 0)
                return r;
        *ret = z;
        return 0;
}

static void emulator_close_shift(Emulator *e, const DeviceRequest *req, DeviceResult *result) {
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

                db_rollback(e);
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
        r = db_read_totals(e, m.shift_number, &z.totals);
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
        r = db_write_memory(e, &m);
        if (r >= 0)
                r = db_insert_document(e, &(EmulatorDocument) {
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

        r = db_ofd_queue(e, &m, &z.ofd);
        if (r < 0)
                z.ofd = (DeviceOfdQueue) {};
        result->report = z;
        if (f == DEVICE_FAULT_TIMEOUT_UNKNOWN)
                emulator_wait(e, usec_add(e->timeout, e->timeout / 2));
        emulator_refresh_status(e, result);
        return;

fail:
        db_rollback(e);
        (void) fail(result, DEVICE_FAULT_ERROR, r);
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

        r = db_read_memory(e, &m);
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
        r = db_write_memory(e, &m);
        if (r < 0)
                return r;

        if (json_object_object_get_ex(o, "unsent_age_days", &v)) {
                r = db_prepare(e, "UPDATE documents SET datetime_usec = datetime_usec - ? "
                                  "WHERE fn_number = ? AND ofd_confirmed = 0", &stmt);
                if (r < 0)
                        return r;
                (void) sqlite3_bind_int64(stmt, 1, json_object_get_int64(v) * (int64_t) USEC_PER_DAY);
                (void) sqlite3_bind_text(stmt, 2, e->fn_number, -1, SQLITE_STATIC);
                r = db_step_done(e, stmt);
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
        r = db_exec(e, "BEGIN IMMEDIATE");
        if (r >= 0) {
                r = emulator_debug_apply(e, o);
                r = r >= 0 ? db_exec(e, "COMMIT") : r;
        }
        if (r < 0) {
                db_rollback(e);
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

static int emulator_driver_start(void *state, const DeviceRequest *req, DeviceDriverDone done, void *userdata) {
        return device_thread_start(state, req, done, userdata);
}

static void emulator_driver_interrupt(void *state) {
        device_thread_interrupt(state);
}

static void emulator_driver_free(void *state) {
        device_thread_free(state);
}

static int emulator_driver_inject_fault(void *state, DeviceFault f, unsigned count) {
        if (!fault_injectable(f))
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
