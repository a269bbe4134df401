/* SPDX-License-Identifier: MIT */
/* The emulator's fiscal memory: its SQLite schema and migrations, the counters of its fiscal drive, the
 * journal of every document it made, a shift's totals, the OFD queue; and the fiscal sign and QR string of a
 * document. Runs on the emulator's worker thread; knows nothing of the loop. */

#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <time.h>

#include "device-emulator-internal.h"
#include "sqlite-util.h"

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
        "INSERT INTO documents (fn_number, fd, kind, receipt_id, receipt_type, shift_number, "
        "number_in_shift,"
        "                       datetime_usec, total, fiscal_sign, qr, ofd_confirmed)"
        "        SELECT fn_number, fd, 'receipt', receipt_id, receipt_type, shift_number, number_in_shift,"
        "               datetime_usec, total, fiscal_sign, qr, 1 FROM last_document;"
        "DROP TABLE last_document;";

static const char *const schema_steps[EMULATOR_SCHEMA_VERSION] = { schema_v1, schema_v2 };

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

int emulator_db_error(Emulator *e, int rc) {
        return sqlite_result_to_errno(rc) ?: -EIO;
}

int emulator_db_exec(Emulator *e, const char *sql) {
        int rc = sqlite3_exec(e->db, sql, NULL, NULL, NULL);

        return rc == SQLITE_OK ? 0 : emulator_db_error(e, rc);
}

int emulator_db_prepare(Emulator *e, const char *sql, sqlite3_stmt **ret) {
        int rc = sqlite3_prepare_v2(e->db, sql, -1, ret, NULL);

        return rc == SQLITE_OK ? 0 : emulator_db_error(e, rc);
}

int emulator_db_step_done(Emulator *e, sqlite3_stmt *stmt) {
        int rc = sqlite3_step(stmt);

        return rc == SQLITE_DONE ? 0 : emulator_db_error(e, rc);
}

void emulator_db_rollback(Emulator *e) {
        if (!sqlite3_get_autocommit(e->db))
                (void) emulator_db_exec(e, "ROLLBACK");
}

int emulator_db_read_memory(Emulator *e, FiscalMemory *ret) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int rc, r;

        r = emulator_db_prepare(e,
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
                return emulator_db_error(e, rc);

        *ret = (FiscalMemory){
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

int emulator_db_write_memory(Emulator *e, const FiscalMemory *m) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int r;

        r = emulator_db_prepare(
                e,
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
        return emulator_db_step_done(e, stmt);
}

int emulator_db_insert_document(Emulator *e, const EmulatorDocument *d) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int r;

        r = emulator_db_prepare(
                e,
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
        return emulator_db_step_done(e, stmt);
}

int emulator_copy_column(sqlite3_stmt *stmt, int i, char *buf, size_t l) {
        const char *t = (const char *) sqlite3_column_text(stmt, i);

        if (!t || strlen(t) >= l)
                return -EBADMSG;
        strcpy(buf, t);
        return 0;
}

/* The receipt document made for receipt_id; -ENOENT when there is none. */
int emulator_db_find_receipt(Emulator *e, const char *receipt_id, DeviceDocument *ret) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        DeviceDocument d = {};
        int rc, r;

        r = emulator_db_prepare(
                e,
                "SELECT fd, fiscal_sign, shift_number, number_in_shift, datetime_usec, total, change, "
                "receipt_type, qr FROM documents WHERE receipt_id = ? AND fn_number = ? AND kind = "
                "'receipt'",
                &stmt);
        if (r < 0)
                return r;
        (void) sqlite3_bind_text(stmt, 1, receipt_id, -1, SQLITE_STATIC);
        (void) sqlite3_bind_text(stmt, 2, e->fn_number, -1, SQLITE_STATIC);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        if (rc != SQLITE_ROW)
                return emulator_db_error(e, rc);

        if (strlen(receipt_id) >= sizeof d.receipt_id ||
            emulator_copy_column(stmt, 1, d.fiscal_sign, sizeof d.fiscal_sign) < 0 ||
            emulator_copy_column(stmt, 8, d.qr, sizeof d.qr) < 0)
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

int emulator_db_read_totals(Emulator *e, uint32_t shift, DeviceTotals *ret) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        DeviceTotals t = {};
        int rc, r;

        r = emulator_db_prepare(
                e,
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
                return emulator_db_error(e, rc);
        *ret = t;
        return 0;
}

int emulator_db_write_type_totals(Emulator *e, uint32_t shift, ReceiptType type,
                                  const DeviceTypeTotals *tt) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int r;

        r = emulator_db_prepare(
                e,
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
        return emulator_db_step_done(e, stmt);
}

/* Documents the OFD has not confirmed. With the channel online they are confirmed now: the register's link
 * caught up. */
int emulator_db_ofd_queue(Emulator *e, const FiscalMemory *m, DeviceOfdQueue *ret) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        DeviceOfdQueue q = {};
        int rc, r;

        r = emulator_db_prepare(
                e, "SELECT COUNT(*), MIN(fd) FROM documents WHERE fn_number = ? AND ofd_confirmed = 0",
                &stmt);
        if (r < 0)
                return r;
        (void) sqlite3_bind_text(stmt, 1, e->fn_number, -1, SQLITE_STATIC);
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW)
                return emulator_db_error(e, rc);
        q.unsent = (uint32_t) sqlite3_column_int64(stmt, 0);
        q.first_unsent = (uint32_t) sqlite3_column_int64(stmt, 1);
        sqlite3_finalize(TAKE_PTR(stmt));

        if (q.unsent > 0) {
                r = emulator_db_prepare(
                        e, "SELECT datetime_usec FROM documents WHERE fn_number = ? AND fd = ?", &stmt);
                if (r < 0)
                        return r;
                (void) sqlite3_bind_text(stmt, 1, e->fn_number, -1, SQLITE_STATIC);
                (void) sqlite3_bind_int64(stmt, 2, q.first_unsent);
                rc = sqlite3_step(stmt);
                if (rc != SQLITE_ROW)
                        return rc == SQLITE_DONE ? -EBADMSG : emulator_db_error(e, rc);
                q.first_unsent_usec = (usec_t) sqlite3_column_int64(stmt, 0);
                sqlite3_finalize(TAKE_PTR(stmt));
        }

        if (q.unsent > 0 && m->ofd_online) {
                r = emulator_db_exec(e, "BEGIN IMMEDIATE");
                if (r < 0)
                        return r;
                r = emulator_db_prepare(
                        e,
                        "UPDATE documents SET ofd_confirmed = 1 WHERE fn_number = ? AND ofd_confirmed = 0",
                        &stmt);
                if (r >= 0) {
                        (void) sqlite3_bind_text(stmt, 1, e->fn_number, -1, SQLITE_STATIC);
                        r = emulator_db_step_done(e, stmt);
                }
                if (r >= 0)
                        r = emulator_db_exec(e, "COMMIT");
                if (r < 0) {
                        emulator_db_rollback(e);
                        return r;
                }
                q = (DeviceOfdQueue){};
        }

        *ret = q;
        return 0;
}

int emulator_db_setup(Emulator *e) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int version, rc, r;

        /* One register, one process: the lock is taken with the first write and kept until close, so a
         * second instance on the same file fails instead of sharing the numbering. Set before WAL, so the
         * WAL needs no shared memory. */
        r = emulator_db_exec(e, "PRAGMA locking_mode = EXCLUSIVE");
        if (r < 0)
                return r;
        r = emulator_db_exec(e, "PRAGMA journal_mode = WAL");
        if (r < 0)
                return r;
        r = emulator_db_exec(e, "PRAGMA synchronous = FULL");
        if (r < 0)
                return r;
        r = emulator_db_exec(e, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;

        r = emulator_db_prepare(e, "PRAGMA user_version", &stmt);
        if (r < 0)
                goto fail;
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW) {
                r = emulator_db_error(e, rc);
                goto fail;
        }
        version = sqlite3_column_int(stmt, 0);
        sqlite3_finalize(TAKE_PTR(stmt));

        if (version > EMULATOR_SCHEMA_VERSION || version < 0) {
                r = -EPROTO;
                goto fail;
        }
        for (int v = version; v < EMULATOR_SCHEMA_VERSION; v++) {
                r = emulator_db_exec(e, schema_steps[v]);
                if (r < 0)
                        goto fail;
        }
        if (version < EMULATOR_SCHEMA_VERSION) {
                char sql[64];

                snprintf(sql, sizeof sql, "PRAGMA user_version = %i", EMULATOR_SCHEMA_VERSION);
                r = emulator_db_exec(e, sql);
                if (r < 0)
                        goto fail;
        }

        /* A new fiscal drive is valid for DEVICE_EMULATOR_FN_VALIDITY from its first use. */
        r = emulator_db_prepare(e, "INSERT OR IGNORE INTO fiscal_memory (fn_number) VALUES (?)", &stmt);
        if (r < 0)
                goto fail;
        (void) sqlite3_bind_text(stmt, 1, e->fn_number, -1, SQLITE_STATIC);
        r = emulator_db_step_done(e, stmt);
        if (r < 0)
                goto fail;
        sqlite3_finalize(TAKE_PTR(stmt));
        r = emulator_db_prepare(e,
                                "UPDATE fiscal_memory SET fn_valid_until_usec = ? WHERE fn_number = ? "
                                "AND fn_valid_until_usec = 0",
                                &stmt);
        if (r < 0)
                goto fail;
        (void) sqlite3_bind_int64(stmt, 1, (int64_t) usec_add(emulator_now(e), DEVICE_EMULATOR_FN_VALIDITY));
        (void) sqlite3_bind_text(stmt, 2, e->fn_number, -1, SQLITE_STATIC);
        r = emulator_db_step_done(e, stmt);
        if (r < 0)
                goto fail;
        return emulator_db_exec(e, "COMMIT");

fail:
        emulator_db_rollback(e);
        return r;
}
