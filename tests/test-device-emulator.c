/* SPDX-License-Identifier: MIT */
/* The emulated register driven directly through its blocking driver (device_emulator_thread_driver), on the
 * test's thread as its worker thread would: numbering, the document journal and its persistence, the fiscal
 * memory's versions, fiscal signs and the QR string, refusals, shift totals, shifts and their reports, the
 * OFD exchange and the FN's validity, and each fault, natural or injected. The register's clock is faked. */

#include <limits.h>
#include <sqlite3.h>
#include <unistd.h>

#include "device-emulator.h"
#include "device.h"
#include "json-util.h"
#include "receipt.h"
#include "sqlite-util.h"
#include "test-util.h"
#include "tests.h"
#include "time-util.h"

#define FN_NUMBER "9999078900000001"
#define SERIAL "00000000000012345"
#define REGISTRATION_NUMBER "0000000001000001"
#define INN "7700000000"
#define TIMEOUT (200 * USEC_PER_MSEC)
/* 2026-11-29T03:17:26Z */
#define T0 (UINT64_C(1795922246) * USEC_PER_SEC)

#define PAY(type, amount) "{\"type\":\"" type "\",\"amount\":\"" amount "\"}"

typedef struct Env {
        char dir[PATH_MAX / 2];
        char path[PATH_MAX];
        usec_t clock;           /* the register's clock; 0: the real one */
        DeviceOptions options;
} Env;

static usec_t env_clock(void *userdata) {
        Env *e = userdata;

        return e->clock ?: now(CLOCK_REALTIME);
}

static void env_setup(Env *e) {
        const char *tmp = getenv("TMPDIR") ?: "/tmp";

        *e = (Env) { .clock = T0 };
        snprintf(e->dir, sizeof e->dir, "%s/test-device-emulator-XXXXXX", tmp);
        ASSERT_NOT_NULL(mkdtemp(e->dir));
        snprintf(e->path, sizeof e->path, "%s/emulator-fn.db", e->dir);
        e->options = (DeviceOptions) {
                .driver = "emulator",
                .timeout = TIMEOUT,
                .serial = SERIAL,
                .fn_number = FN_NUMBER,
                .registration_number = REGISTRATION_NUMBER,
                .inn = INN,
                .emulator_path = e->path,
                .clock = env_clock,
                .clock_userdata = e,
        };
}

static void env_teardown(Env *e) {
        test_rm_rf(e->dir);
}

/* ---- driving the emulator ---- */

static const DeviceThreadDriver *drv(void) {
        return &device_emulator_thread_driver;
}

static void *emu_open(Env *e) {
        DeviceFault f = DEVICE_FAULT_ERROR;
        void *state = NULL;

        ASSERT_OK(drv()->open(&state, &e->options, &f));
        ASSERT_NOT_NULL(state);
        ASSERT_EQ(f, DEVICE_FAULT_NONE);
        return state;
}

static DeviceResult run(void *s, const DeviceRequest *req) {
        DeviceResult r = {};

        drv()->run(s, req, &r);
        return r;
}

static DeviceResult run_op(void *s, DeviceOperation op) {
        return run(s, &(DeviceRequest) { .op = op });
}

static DeviceResult print(void *s, const char *receipt_id, const char *json) {
        return run(s, &(DeviceRequest) { .op = DEVICE_OP_PRINT, .receipt_id = receipt_id,
                                         .receipt_json = json });
}

static DeviceResult find(void *s, const char *receipt_id) {
        return run(s, &(DeviceRequest) { .op = DEVICE_OP_FIND, .receipt_id = receipt_id,
                                         .receipt_json = "{}" });
}

static DeviceResult close_shift(void *s, uint32_t shift_number) {
        return run(s, &(DeviceRequest) { .op = DEVICE_OP_CLOSE_SHIFT, .shift_number = shift_number });
}

static DeviceResult debug(void *s, const char *settings) {
        return run(s, &(DeviceRequest) { .op = DEVICE_OP_DEBUG, .receipt_json = settings });
}

static DeviceStatus status(void *s) {
        DeviceResult r = run_op(s, DEVICE_OP_STATUS);

        ASSERT_OK(r.error);
        ASSERT_TRUE(r.have_status);
        return r.status;
}

static uint32_t last_fd(void *s) {
        return status(s).last_fiscal_document;
}

/* The DeviceResult at r failed with -err and fault flt; ASSERT_RESULT_OK: it succeeded. Macros, so that a
 * failure names the caller's line. */
#define ASSERT_RESULT(r, err, flt)                                                                      \
        do {                                                                                            \
                const DeviceResult *_res_ = (r);                                                        \
                ASSERT_EQ(_res_->error, -(err));                                                        \
                ASSERT_EQ(_res_->fault, (flt));                                                         \
        } while (0)
#define ASSERT_RESULT_OK(r) ASSERT_RESULT(r, 0, DEVICE_FAULT_NONE)

/* A receipt in the canonical shape (as receipt_canonical() writes it): the register reads its type,
 * taxation, total, payments and change. change NULL: none. */
static char *receipt_json(const char *type, const char *taxation, const char *total, const char *payments,
                          const char *change) {
        char *s = NULL;

        ASSERT_TRUE(asprintf(&s,
                             "{\"pos_id\":\"P\",\"type\":\"%s\",\"taxation\":\"%s\","
                             "\"items\":[{\"name\":\"Frame\",\"price\":\"%s\",\"quantity\":\"1.000\","
                             "\"total\":\"%s\",\"vat\":\"vat22\"}],\"payments\":[%s],"
                             "\"total\":\"%s\"%s%s%s}",
                             type, taxation, total, total, payments, total, change ? ",\"change\":\"" : "",
                             change ?: "", change ? "\"" : "") >= 0);
        return s;
}

static DeviceDocument print_ok(void *s, const char *receipt_id, const char *json) {
        DeviceResult r = print(s, receipt_id, json);

        ASSERT_RESULT_OK(&r);
        ASSERT_TRUE(r.have_status);
        ASSERT_STREQ(r.doc.receipt_id, receipt_id);
        return r.doc;
}

/* A sale of 1500.00 paid by card. */
static DeviceDocument sell(void *s, const char *receipt_id) {
        _cleanup_free_ char *json = receipt_json("sale", "osn", "1500.00", PAY("card", "1500.00"), NULL);

        return print_ok(s, receipt_id, json);
}

static DeviceResult try_sell(void *s, const char *receipt_id) {
        _cleanup_free_ char *json = receipt_json("sale", "osn", "10.00", PAY("card", "10.00"), NULL);

        return print(s, receipt_id, json);
}

/* ---- the fiscal memory, read behind the emulator's back (once it is closed: it locks the file) ---- */

/* The rows of a query, columns joined by '|', rows by ';' (NULL as ""). */
static char *journal(Env *e, const char *sql) {
        _cleanup_(sqlite3_close_v2p) sqlite3 *db = NULL;
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        char *buf = NULL;
        size_t size = 0;
        FILE *f;
        int rc;

        ASSERT_EQ(sqlite3_open_v2(e->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
        f = open_memstream(&buf, &size);
        ASSERT_NOT_NULL(f);
        for (unsigned row = 0; (rc = sqlite3_step(stmt)) == SQLITE_ROW; row++) {
                if (row > 0)
                        fputc(';', f);
                for (int i = 0; i < sqlite3_column_count(stmt); i++) {
                        const char *t = (const char *) sqlite3_column_text(stmt, i);

                        fprintf(f, "%s%s", i > 0 ? "|" : "", t ?: "");
                }
        }
        ASSERT_EQ(rc, SQLITE_DONE);
        ASSERT_EQ(fclose(f), 0);
        return buf;
}

static bool is_digits(const char *s, size_t n) {
        if (strlen(s) != n)
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return true;
}

static void assert_totals_eq(const DeviceTotals *a, const DeviceTotals *b) {
        for (int t = 0; t < _RECEIPT_TYPE_MAX; t++) {
                ASSERT_EQ_U(a->by_type[t].count, b->by_type[t].count);
                ASSERT_EQ(a->by_type[t].total, b->by_type[t].total);
                for (int f = 0; f < _DEVICE_PAYMENT_MAX; f++)
                        ASSERT_EQ(a->by_type[t].payments[f], b->by_type[t].payments[f]);
        }
}

static bool totals_are_zero(const DeviceTotals *t) {
        static const DeviceTotals zero = {};

        return memcmp(t, &zero, sizeof zero) == 0;
}

/* ---- numbering and the journal ---- */

static void test_numbering_is_consecutive_from_one(void) {
        DeviceDocument doc;
        char id[32];
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);

        r = find(s, "receipt-1");
        ASSERT_RESULT(&r, ENOENT, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(last_fd(s), 0);

        /* FD 1 is the opening of shift 1, made in front of the first receipt. */
        for (unsigned i = 1; i <= 10; i++) {
                snprintf(id, sizeof id, "receipt-%u", i);
                doc = sell(s, id);
                ASSERT_EQ_U(doc.fiscal_document_number, i + 1);
                ASSERT_EQ_U(doc.document_number_in_shift, i);
                ASSERT_EQ_U(doc.shift_number, 1);
                ASSERT_STREQ(doc.fn_number, FN_NUMBER);
                ASSERT_STREQ(doc.serial, SERIAL);
                ASSERT_STREQ(doc.registration_number, REGISTRATION_NUMBER);
                ASSERT_STREQ(doc.inn, INN);
                ASSERT_EQ(doc.total, 150000);
                ASSERT_EQ(doc.change, 0);
                ASSERT_EQ(doc.receipt_type, RECEIPT_TYPE_SALE);
                ASSERT_EQ_U(doc.datetime, T0);
                ASSERT_TRUE(is_digits(doc.fiscal_sign, DEVICE_FISCAL_SIGN_LEN));
        }
        ASSERT_EQ_U(last_fd(s), 11);

        drv()->close(s);
        env_teardown(&e);
}

static void test_first_receipt_of_a_closed_shift_first_makes_an_opening_document(void) {
        _cleanup_free_ char *rows = NULL, *sign = NULL;
        char open_sign[DEVICE_FISCAL_SIGN_LEN + 1];
        DeviceDocument doc;
        DeviceStatus st;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        st = status(s);
        ASSERT_FALSE(st.shift_open);
        ASSERT_EQ_U(st.shift_number, 0);

        doc = sell(s, "a");
        ASSERT_EQ_U(doc.fiscal_document_number, 2);
        ASSERT_EQ_U(doc.shift_number, 1);
        ASSERT_EQ_U(doc.document_number_in_shift, 1);
        st = status(s);
        ASSERT_TRUE(st.shift_open);
        ASSERT_EQ_U(st.shift_number, 1);
        ASSERT_EQ_U(st.shift_open_usec, T0);
        drv()->close(s);

        /* The journal holds both documents, the opening signed as one. */
        rows = journal(&e, "SELECT fd, kind, receipt_id, receipt_type, shift_number, number_in_shift, "
                           "datetime_usec, total FROM documents ORDER BY fd");
        ASSERT_STREQ(rows, "1|open_shift|||1|0|1795922246000000|0;"
                           "2|receipt|a|sale|1|1|1795922246000000|150000");
        sign = journal(&e, "SELECT fiscal_sign FROM documents WHERE fd = 1");
        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 1, T0, 0, "open_shift", open_sign));
        ASSERT_STREQ(sign, open_sign);
        env_teardown(&e);
}

static void test_numbering_survives_reopen_and_never_repeats(void) {
        _cleanup_free_ char *fds = NULL;
        DeviceDocument doc;
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);

        s = emu_open(&e);
        sell(s, "a");
        sell(s, "b");
        doc = sell(s, "c");
        ASSERT_EQ_U(doc.fiscal_document_number, 4);
        drv()->close(s);

        /* The open shift and the journal are in the fiscal memory too. */
        s = emu_open(&e);
        r = find(s, "c");
        ASSERT_RESULT_OK(&r);
        ASSERT_EQ_U(r.doc.fiscal_document_number, 4);
        ASSERT_STREQ(r.doc.fiscal_sign, doc.fiscal_sign);
        doc = sell(s, "d");
        ASSERT_EQ_U(doc.fiscal_document_number, 5);
        ASSERT_EQ_U(doc.shift_number, 1);
        ASSERT_EQ_U(doc.document_number_in_shift, 4);
        r = close_shift(s, 0);
        ASSERT_RESULT_OK(&r);
        ASSERT_EQ_U(r.report.fiscal_document_number, 6);
        drv()->close(s);

        /* A closed shift stays closed: the next receipt opens shift 2. */
        s = emu_open(&e);
        ASSERT_FALSE(status(s).shift_open);
        doc = sell(s, "e");
        ASSERT_EQ_U(doc.fiscal_document_number, 8);
        ASSERT_EQ_U(doc.shift_number, 2);
        ASSERT_EQ_U(doc.document_number_in_shift, 1);
        drv()->close(s);

        fds = journal(&e, "SELECT COUNT(*), COUNT(DISTINCT fd), MIN(fd), MAX(fd) FROM documents");
        ASSERT_STREQ(fds, "8|8|1|8");
        env_teardown(&e);
}

static void test_second_instance_on_the_same_file_fails(void) {
        DeviceFault f = DEVICE_FAULT_NONE;
        void *s, *other = NULL;
        Env e;

        env_setup(&e);
        s = emu_open(&e);
        sell(s, "a");

        /* Two registers sharing one fiscal memory would hand out the same numbers. */
        ASSERT_ERROR(drv()->open(&other, &e.options, &f), EBUSY);
        ASSERT_NULL(other);
        ASSERT_EQ(f, DEVICE_FAULT_ERROR);

        /* The first is unharmed. */
        ASSERT_EQ_U(sell(s, "b").fiscal_document_number, 3);
        drv()->close(s);
        env_teardown(&e);
}

static void test_each_fn_has_its_own_numbering(void) {
        DeviceDocument doc;
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        sell(s, "a");
        sell(s, "b");
        drv()->close(s);

        /* A new FN starts at 1 with its own shifts, as a real one does; the pair (FN, FD) never repeats. */
        e.options.fn_number = "9999078900000002";
        s = emu_open(&e);
        ASSERT_EQ_U(last_fd(s), 0);
        r = find(s, "a");
        ASSERT_RESULT(&r, ENOENT, DEVICE_FAULT_NONE);
        doc = sell(s, "c");
        ASSERT_EQ_U(doc.fiscal_document_number, 2);
        ASSERT_EQ_U(doc.shift_number, 1);
        ASSERT_STREQ(doc.fn_number, "9999078900000002");
        drv()->close(s);

        e.options.fn_number = FN_NUMBER;
        s = emu_open(&e);
        doc = sell(s, "d");
        ASSERT_EQ_U(doc.fiscal_document_number, 4);
        r = find(s, "c");
        ASSERT_RESULT(&r, ENOENT, DEVICE_FAULT_NONE);
        drv()->close(s);

        env_teardown(&e);
}

static void test_newer_fiscal_memory_is_refused(void) {
        DeviceFault f = DEVICE_FAULT_NONE;
        void *state = NULL;
        sqlite3 *db = NULL;
        Env e;

        env_setup(&e);
        ASSERT_EQ(sqlite3_open(e.path, &db), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 3", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);

        ASSERT_ERROR(drv()->open(&state, &e.options, &f), EPROTO);
        ASSERT_NULL(state);
        ASSERT_EQ(f, DEVICE_FAULT_ERROR);
        env_teardown(&e);
}

/* The emulator's first fiscal memory: counters and the last document only. */
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
        "        qr TEXT NOT NULL);"
        "INSERT INTO fiscal_memory VALUES ('" FN_NUMBER "', 7, 2, 1, 1795900000000000, 3, 45000, 0);"
        "INSERT INTO last_document VALUES ('" FN_NUMBER "', 'old-7', 7, '0123456789', 2, 3, "
        "'" REGISTRATION_NUMBER "', '" INN "', '" SERIAL "', 1795920000000000, 15000, 'refund', "
        "'t=20261129T0240&s=150.00&fn=" FN_NUMBER "&i=7&fp=0123456789&n=2');"
        "PRAGMA user_version = 1;";

static void test_version_1_fiscal_memory_migrates_and_its_last_document_is_found(void) {
        _cleanup_free_ char *version = NULL, *tables = NULL;
        DeviceDocument doc;
        DeviceStatus st;
        sqlite3 *db = NULL;
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        ASSERT_EQ(sqlite3_open(e.path, &db), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(db, schema_v1, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);

        s = emu_open(&e);
        r = find(s, "old-7");
        ASSERT_RESULT_OK(&r);
        ASSERT_EQ_U(r.doc.fiscal_document_number, 7);
        ASSERT_STREQ(r.doc.fiscal_sign, "0123456789");
        ASSERT_EQ_U(r.doc.shift_number, 2);
        ASSERT_EQ_U(r.doc.document_number_in_shift, 3);
        ASSERT_EQ_U(r.doc.datetime, UINT64_C(1795920000000000));
        ASSERT_EQ(r.doc.total, 15000);
        ASSERT_EQ(r.doc.receipt_type, RECEIPT_TYPE_REFUND);
        ASSERT_STREQ(r.doc.qr, "t=20261129T0240&s=150.00&fn=" FN_NUMBER "&i=7&fp=0123456789&n=2");
        ASSERT_STREQ(r.doc.fn_number, FN_NUMBER);

        /* The counters carry on; the FN's validity starts now, the OFD has what v1 made. */
        st = status(s);
        ASSERT_EQ_U(st.last_fiscal_document, 7);
        ASSERT_TRUE(st.shift_open);
        ASSERT_EQ_U(st.shift_number, 2);
        ASSERT_EQ_U(st.shift_open_usec, UINT64_C(1795900000000000));
        ASSERT_EQ_U(st.fn_valid_until, T0 + DEVICE_EMULATOR_FN_VALIDITY);
        ASSERT_EQ_U(st.ofd.unsent, 0);
        ASSERT_TRUE(totals_are_zero(&st.shift_totals));

        doc = sell(s, "new-8");
        ASSERT_EQ_U(doc.fiscal_document_number, 8);
        ASSERT_EQ_U(doc.shift_number, 2);
        ASSERT_EQ_U(doc.document_number_in_shift, 4);
        drv()->close(s);

        version = journal(&e, "PRAGMA user_version");
        ASSERT_STREQ(version, "2");
        tables = journal(&e, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
        ASSERT_STREQ(tables, "documents;fiscal_memory;shift_totals");

        /* Opening it again migrates nothing twice. */
        s = emu_open(&e);
        r = find(s, "old-7");
        ASSERT_RESULT_OK(&r);
        ASSERT_EQ_U(last_fd(s), 8);
        drv()->close(s);
        env_teardown(&e);
}

/* ---- fiscal sign and QR ---- */

static void test_fiscal_sign_is_deterministic_10_digits(void) {
        char a[DEVICE_FISCAL_SIGN_LEN + 1], b[DEVICE_FISCAL_SIGN_LEN + 1];
        _cleanup_free_ char *signs = NULL;
        DeviceDocument doc;
        unsigned differ = 0;
        Env e;
        void *s;

        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 17, T0, 150000, "sale", a));
        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 17, T0, 150000, "sale", b));
        ASSERT_STREQ(a, b);
        ASSERT_TRUE(is_digits(a, DEVICE_FISCAL_SIGN_LEN));
        /* Pinned: computed independently (Python hmac) from the algorithm in device-emulator-memory.c, so
         * the signs of documents already made never change under a refactoring. */
        ASSERT_STREQ(a, "5192745669");

        /* Every input is signed: changing any one changes the sign. */
        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 18, T0, 150000, "sale", b));
        ASSERT_FALSE(streq(a, b));
        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 17, T0 + USEC_PER_SEC, 150000, "sale", b));
        ASSERT_FALSE(streq(a, b));
        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 17, T0, 150001, "sale", b));
        ASSERT_FALSE(streq(a, b));
        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 17, T0, 150000, "refund", b));
        ASSERT_FALSE(streq(a, b));
        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 17, T0, 150000, "close_shift", b));
        ASSERT_FALSE(streq(a, b));
        ASSERT_OK(device_emulator_fiscal_sign("9999078900000002", 17, T0, 150000, "sale", b));
        ASSERT_FALSE(streq(a, b));
        ASSERT_ERROR(device_emulator_fiscal_sign("99990789000000012", 17, T0, 150000, "sale", b), EINVAL);

        /* Always 10 digits, leading zeros kept, and spread over the range. */
        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 1, T0, 0, "open_shift", b));
        ASSERT_STREQ(b, "0004425730");
        for (uint32_t fd = 1; fd <= 200; fd++) {
                ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, fd, T0, 100, "sale", b));
                ASSERT_TRUE(is_digits(b, DEVICE_FISCAL_SIGN_LEN));
                differ += !streq(a, b);
        }
        ASSERT_EQ(differ, 200);

        /* The register signs what it made: the receipt by its type, the shift documents by their kind. */
        env_setup(&e);
        s = emu_open(&e);
        doc = sell(s, "a");
        ASSERT_EQ_U(doc.datetime, T0);
        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 2, T0, 150000, "sale", b));
        ASSERT_STREQ(doc.fiscal_sign, b);
        ASSERT_STREQ(doc.fiscal_sign, "3220063215");
        {
                DeviceResult z = close_shift(s, 0);

                ASSERT_RESULT_OK(&z);
                ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 3, T0, 0, "close_shift", b));
                ASSERT_STREQ(z.report.fiscal_sign, b);
        }
        drv()->close(s);
        signs = journal(&e, "SELECT fiscal_sign FROM documents ORDER BY fd");
        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 3, T0, 0, "close_shift", b));
        {
                char expected[64];

                snprintf(expected, sizeof expected, "0004425730;3220063215;%s", b);
                ASSERT_STREQ(signs, expected);
        }
        env_teardown(&e);
}

static void test_qr_format_is_exact_for_each_settlement(void) {
        static const struct {
                ReceiptType type;
                const char *name;
                unsigned n;
        } types[] = {
                { RECEIPT_TYPE_SALE, "sale", 1 },
                { RECEIPT_TYPE_REFUND, "refund", 2 },
                { RECEIPT_TYPE_PURCHASE, "purchase", 3 },
                { RECEIPT_TYPE_PURCHASE_REFUND, "purchase_refund", 4 },
                { RECEIPT_TYPE_SALE_CORRECTION, "sale_correction", 1 },
                { RECEIPT_TYPE_REFUND_CORRECTION, "refund_correction", 2 },
                { RECEIPT_TYPE_PURCHASE_CORRECTION, "purchase_correction", 3 },
                { RECEIPT_TYPE_PURCHASE_REFUND_CORRECTION, "purchase_refund_correction", 4 },
        };
        char qr[DEVICE_QR_MAX + 1], small[20], expected[DEVICE_QR_MAX + 1];
        Env e;
        void *s;

        ASSERT_OK(device_emulator_format_qr(qr, sizeof qr, T0, 150000, FN_NUMBER, 17, "0123456789",
                                            RECEIPT_TYPE_SALE));
        ASSERT_STREQ(qr, "t=20261129T0317&s=1500.00&fn=9999078900000001&i=17&fp=0123456789&n=1");
        ASSERT_OK(device_emulator_format_qr(qr, sizeof qr, T0, 5, FN_NUMBER, 18, "0000000042",
                                            RECEIPT_TYPE_REFUND));
        ASSERT_STREQ(qr, "t=20261129T0317&s=0.05&fn=9999078900000001&i=18&fp=0000000042&n=2");
        ASSERT_OK(device_emulator_format_qr(qr, sizeof qr, T0, 250000, FN_NUMBER, 19, "1111111111",
                                            RECEIPT_TYPE_PURCHASE));
        ASSERT_STREQ(qr, "t=20261129T0317&s=2500.00&fn=9999078900000001&i=19&fp=1111111111&n=3");
        ASSERT_OK(device_emulator_format_qr(qr, sizeof qr, T0, 100, FN_NUMBER, 20, "2222222222",
                                            RECEIPT_TYPE_PURCHASE_REFUND));
        ASSERT_STREQ(qr, "t=20261129T0317&s=1.00&fn=9999078900000001&i=20&fp=2222222222&n=4");
        ASSERT_OK(device_emulator_format_qr(qr, sizeof qr, T0, 100, FN_NUMBER, 21, "3333333333",
                                            RECEIPT_TYPE_PURCHASE_CORRECTION));
        ASSERT_STREQ(qr, "t=20261129T0317&s=1.00&fn=9999078900000001&i=21&fp=3333333333&n=3");
        ASSERT_ERROR(device_emulator_format_qr(small, sizeof small, T0, 5, FN_NUMBER, 18, "0000000042",
                                               RECEIPT_TYPE_REFUND),
                     ENOBUFS);

        /* What the register prints, with its clock half a second past T0 (the QR has minutes). */
        env_setup(&e);
        e.clock = T0 + 500 * USEC_PER_MSEC;
        s = emu_open(&e);
        for (size_t i = 0; i < ELEMENTSOF(types); i++) {
                _cleanup_free_ char *json = receipt_json(types[i].name, "osn", "200.50",
                                                         PAY("cash", "200.50"), NULL);
                DeviceDocument doc = print_ok(s, types[i].name, json);

                ASSERT_EQ(doc.receipt_type, types[i].type);
                ASSERT_EQ(doc.total, 20050);
                ASSERT_EQ_U(doc.datetime, T0);
                snprintf(expected, sizeof expected,
                         "t=20261129T0317&s=200.50&fn=9999078900000001&i=%u&fp=%s&n=%u",
                         (unsigned) doc.fiscal_document_number, doc.fiscal_sign, types[i].n);
                ASSERT_STREQ(doc.qr, expected);
        }
        drv()->close(s);
        env_teardown(&e);
}

/* ---- PRINT and FIND ---- */

static void assert_json_string(json_object *o, const char *key, const char *expected) {
        json_object *v;

        ASSERT_TRUE(json_object_object_get_ex(o, key, &v));
        ASSERT_TRUE(json_object_is_type(v, json_type_string));
        ASSERT_STREQ(json_object_get_string(v), expected);
}

/* A JSON number whose token is exactly `expected` (money written from kopecks, not through a double). */
static void assert_json_number_token(json_object *o, const char *key, const char *expected) {
        json_object *v;

        ASSERT_TRUE(json_object_object_get_ex(o, key, &v));
        ASSERT_TRUE(json_object_is_type(v, json_type_double));
        ASSERT_STREQ(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), expected);
}

static void assert_json_int(json_object *o, const char *key, int64_t expected) {
        json_object *v;

        ASSERT_TRUE(json_object_object_get_ex(o, key, &v));
        ASSERT_TRUE(json_object_is_type(v, json_type_int));
        ASSERT_EQ(json_object_get_int64(v), expected);
}

static void test_document_json_has_the_fiscal_attributes(void) {
        _cleanup_(json_object_putp) json_object *o = NULL, *c = NULL;
        _cleanup_free_ char *with_change = receipt_json("sale", "osn", "1500.00", PAY("cash", "2000.00"),
                                                        "500.00");
        DeviceDocument doc, changed;
        json_object *v;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        doc = sell(s, "receipt-1");
        changed = print_ok(s, "receipt-2", with_change);
        drv()->close(s);
        env_teardown(&e);

        ASSERT_OK(device_document_to_json(&doc, &o));
        assert_json_string(o, "receipt_id", "receipt-1");
        assert_json_int(o, "fiscal_document_number", 2);
        assert_json_string(o, "fiscal_sign", doc.fiscal_sign);
        assert_json_string(o, "fn_number", FN_NUMBER);
        assert_json_int(o, "shift_number", 1);
        assert_json_int(o, "document_number_in_shift", 1);
        assert_json_string(o, "registration_number", REGISTRATION_NUMBER);
        assert_json_string(o, "inn", INN);
        assert_json_string(o, "serial", SERIAL);
        assert_json_string(o, "datetime", "2026-11-29T03:17:26.000Z");
        assert_json_number_token(o, "total", "1500.00");
        assert_json_string(o, "receipt_type", "sale");
        assert_json_string(o, "qr", doc.qr);
        ASSERT_FALSE(json_object_object_get_ex(o, "change", &v));
        /* The prototype's names beside ours, for its clients. */
        assert_json_int(o, "fiscal_doc_number", 2);
        assert_json_string(o, "fiscal_datetime", "2026-11-29T03:17:26.000Z");
        assert_json_string(o, "qr_code_data", doc.qr);
        assert_json_string(o, "kkt_number", SERIAL);
        assert_json_string(o, "rn_kkt", REGISTRATION_NUMBER);
        assert_json_int(o, "receipt_number", 1);
        assert_json_string(o, "ofd_name", "");
        ASSERT_EQ(json_object_object_length(o), 13 + 7);

        /* Cash above the total: the change is an attribute of its own. */
        ASSERT_EQ(changed.change, 50000);
        ASSERT_EQ(changed.total, 150000);
        ASSERT_OK(device_document_to_json(&changed, &c));
        assert_json_string(c, "change", "500.00");
        assert_json_number_token(c, "total", "1500.00");
        assert_json_int(c, "fiscal_document_number", 3);
        ASSERT_EQ(json_object_object_length(c), 14 + 7);

        /* A document stored before the prototype's keys were written gets them, its total as a number. */
        {
                _cleanup_(json_object_putp) json_object *old = json_tokener_parse(
                        "{\"fiscal_document_number\":7,\"datetime\":null,\"qr\":\"t=1\",\"serial\":\"S\","
                        "\"registration_number\":\"R\",\"document_number_in_shift\":3,\"total\":\"12.30\"}");

                ASSERT_OK(device_document_add_prototype_keys(old));
                assert_json_int(old, "fiscal_doc_number", 7);
                ASSERT_TRUE(json_object_object_get_ex(old, "fiscal_datetime", &v));
                ASSERT_NULL(v);
                assert_json_string(old, "qr_code_data", "t=1");
                assert_json_string(old, "kkt_number", "S");
                assert_json_string(old, "rn_kkt", "R");
                assert_json_int(old, "receipt_number", 3);
                assert_json_number_token(old, "total", "12.30");
                /* Idempotent. */
                ASSERT_OK(device_document_add_prototype_keys(old));
                ASSERT_EQ(json_object_object_length(old), 7 + 7);
        }

        doc.receipt_type = _RECEIPT_TYPE_MAX;
        ASSERT_ERROR(device_document_to_json(&doc, &o), EINVAL);
}

static void test_canonical_receipt_from_the_receipt_module_is_printed(void) {
        static const char body[] = "{\"pos_id\":\"POS-1\",\"type\":\"sale\","
                                   "\"items\":[{\"name\":\"Frame\",\"price\":1500.00,\"quantity\":1,"
                                   "\"total\":1500.00,\"vat_rate\":22}],"
                                   "\"payments\":[{\"type\":\"cash\",\"amount\":1100.00},"
                                   "{\"type\":\"card\",\"amount\":500.00}]}";
        _cleanup_(json_object_putp) json_object *o = NULL;
        _cleanup_(receipt_freep) Receipt *receipt = NULL;
        _cleanup_free_ char *text = NULL;
        DeviceDocument doc;
        DeviceStatus st;
        Env e;
        void *s;

        /* What the store hands the device is receipt_canonical()'s text, not the POS's body; cash above the
         * total is change there. */
        ASSERT_OK(receipt_parse_with(body, strlen(body), &(ReceiptOptions) { .now = T0 }, &receipt, NULL));
        ASSERT_OK(receipt_canonical(receipt, &text));
        ASSERT_NOT_NULL(strstr(text, "\"change\":\"100.00\""));

        env_setup(&e);
        s = emu_open(&e);
        doc = print_ok(s, "canonical-1", text);
        ASSERT_EQ(doc.total, 150000);
        ASSERT_EQ(doc.change, 10000);
        ASSERT_EQ(doc.receipt_type, RECEIPT_TYPE_SALE);
        st = status(s);
        ASSERT_EQ(st.shift_totals.by_type[RECEIPT_TYPE_SALE].payments[DEVICE_PAYMENT_CASH], 100000);
        ASSERT_EQ(st.shift_totals.by_type[RECEIPT_TYPE_SALE].payments[DEVICE_PAYMENT_ELECTRONIC], 50000);
        drv()->close(s);
        env_teardown(&e);

        ASSERT_OK(device_document_to_json(&doc, &o));
        assert_json_string(o, "change", "100.00");
        assert_json_number_token(o, "total", "1500.00");
}

static void test_find_finds_a_printed_receipt_and_enoent_for_another(void) {
        DeviceDocument doc;
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        doc = sell(s, "printed");
        sell(s, "other");
        ASSERT_OK(close_shift(s, 0).error);

        /* Found by receipt id, with every attribute it was printed with, also after its shift closed. */
        e.clock = T0 + USEC_PER_HOUR;
        r = find(s, "printed");
        ASSERT_RESULT_OK(&r);
        ASSERT_STREQ(r.doc.receipt_id, "printed");
        ASSERT_EQ_U(r.doc.fiscal_document_number, doc.fiscal_document_number);
        ASSERT_STREQ(r.doc.fiscal_sign, doc.fiscal_sign);
        ASSERT_EQ_U(r.doc.shift_number, doc.shift_number);
        ASSERT_EQ_U(r.doc.document_number_in_shift, doc.document_number_in_shift);
        ASSERT_EQ_U(r.doc.datetime, doc.datetime);
        ASSERT_EQ(r.doc.total, doc.total);
        ASSERT_EQ(r.doc.change, doc.change);
        ASSERT_EQ(r.doc.receipt_type, doc.receipt_type);
        ASSERT_STREQ(r.doc.qr, doc.qr);
        ASSERT_STREQ(r.doc.fn_number, FN_NUMBER);
        ASSERT_STREQ(r.doc.registration_number, REGISTRATION_NUMBER);
        ASSERT_STREQ(r.doc.inn, INN);
        ASSERT_STREQ(r.doc.serial, SERIAL);

        /* Another receipt: an answer, not a fault of the register. */
        r = find(s, "never-printed");
        ASSERT_RESULT(&r, ENOENT, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(r.doc.fiscal_document_number, 0);
        drv()->close(s);
        env_teardown(&e);
}

static void assert_refused(void *s, const char *json, const char *why) {
        DeviceResult r = print(s, "refused", json);

        ASSERT_RESULT(&r, EINVAL, DEVICE_FAULT_REJECTED);
        ASSERT_STREQ(r.message, why);
        ASSERT_EQ_U(r.doc.fiscal_document_number, 0);
}

static void test_refusals_are_rejected_with_a_message_and_use_no_number(void) {
        _cleanup_free_ char *usn = receipt_json("sale", "usn_income", "10.00", PAY("card", "10.00"), NULL),
                            *short_ = receipt_json("sale", "osn", "10.00", PAY("card", "9.99"), NULL),
                            *short_split = receipt_json("sale", "osn", "10.00",
                                                        PAY("card", "5.00") "," PAY("cash", "4.99"), NULL),
                            *noncash = receipt_json("sale", "osn", "10.00", PAY("card", "15.00"), "5.00"),
                            *no_change = receipt_json("sale", "osn", "10.00", PAY("cash", "15.00"), NULL),
                            *wrong_change = receipt_json("sale", "osn", "10.00", PAY("cash", "15.00"),
                                                         "4.00"),
                            *change_not_cash = receipt_json("sale", "osn", "10.00",
                                                            PAY("card", "10.00") "," PAY("cash", "0.00"),
                                                            "0.01"),
                            *ok_change = receipt_json("sale", "usn_income", "10.00",
                                                      PAY("card", "5.00") "," PAY("cash", "10.00"), "5.00");
        DeviceDocument doc;
        DeviceStatus st;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);

        /* Registered for the default (OSN) only. */
        ASSERT_EQ(status(s).taxations, TAXATION_OSN);
        assert_refused(s, usn, "taxation system the register is not registered for");
        assert_refused(s, short_, "payments short of the total");
        assert_refused(s, short_split, "payments short of the total");
        assert_refused(s, noncash, "non-cash payments above the total");
        assert_refused(s, no_change, "change does not match the cash paid");
        assert_refused(s, wrong_change, "change does not match the cash paid");
        assert_refused(s, change_not_cash, "change does not match the cash paid");

        /* Nothing was made, not even the opening of a shift. */
        st = status(s);
        ASSERT_EQ_U(st.last_fiscal_document, 0);
        ASSERT_FALSE(st.shift_open);
        drv()->close(s);

        /* A register registered for both takes the USN receipt. */
        e.options.taxations = TAXATION_OSN | TAXATION_USN_INCOME;
        s = emu_open(&e);
        ASSERT_EQ(status(s).taxations, TAXATION_OSN | TAXATION_USN_INCOME);
        doc = print_ok(s, "usn", ok_change);
        ASSERT_EQ_U(doc.fiscal_document_number, 2);
        ASSERT_EQ(doc.change, 500);
        drv()->close(s);
        env_teardown(&e);
}

static void test_unreadable_receipt_is_rejected_without_a_number(void) {
        static const char *const unreadable[] = {
                "not json",
                "[1, 2]",
                "{\"type\":\"barter\",\"total\":\"1.00\",\"payments\":[]}",
                "{\"type\":\"sale\",\"total\":\"1.001\",\"payments\":[" PAY("card", "1.001") "]}",
                "{\"type\":\"sale\",\"total\":\"-1.00\",\"payments\":[]}",
                "{\"type\":\"sale\",\"payments\":[" PAY("card", "1.00") "]}",
                "{\"type\":\"sale\",\"total\":\"1.00\"}",
                "{\"type\":\"sale\",\"total\":\"1.00\",\"payments\":[" PAY("bitcoin", "1.00") "]}",
                "{\"type\":\"sale\",\"total\":\"1.00\",\"taxation\":\"flat\","
                "\"payments\":[" PAY("card", "1.00") "]}",
        };
        char long_id[DEVICE_RECEIPT_ID_MAX + 2];
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);

        for (size_t i = 0; i < ELEMENTSOF(unreadable); i++) {
                r = print(s, "a", unreadable[i]);
                ASSERT_RESULT(&r, EINVAL, DEVICE_FAULT_REJECTED);
                ASSERT_STREQ(r.message, "not a receipt the register can read");
        }
        memset(long_id, 'x', sizeof long_id - 1);
        long_id[sizeof long_id - 1] = 0;
        r = try_sell(s, long_id);
        ASSERT_RESULT(&r, EINVAL, DEVICE_FAULT_REJECTED);
        r = try_sell(s, "");
        ASSERT_RESULT(&r, EINVAL, DEVICE_FAULT_REJECTED);
        r = print(s, "a", NULL);
        ASSERT_RESULT(&r, EINVAL, DEVICE_FAULT_REJECTED);
        ASSERT_EQ_U(last_fd(s), 0);

        ASSERT_EQ_U(sell(s, "b").fiscal_document_number, 2);
        drv()->close(s);
        env_teardown(&e);
}

/* ---- shift totals and reports ---- */

/* One shift's receipts of every kind of money movement, and what a register counts of them. */
static void print_mixed_shift(void *s, DeviceTotals *expected) {
        static const struct {
                const char *id, *type, *total, *payments, *change;
        } receipts[] = {
                { "s1", "sale", "100.00", PAY("card", "100.00"), NULL },
                { "s2", "sale", "50.00", PAY("cash", "60.00"), "10.00" },
                { "s3", "sale", "30.00", PAY("prepayment", "20.00") "," PAY("credit", "10.00"), NULL },
                { "s4", "sale", "7.00", PAY("other", "7.00"), NULL },
                { "r1", "refund", "40.00", PAY("cash", "40.00"), NULL },
                { "p1", "purchase", "25.00", PAY("cash", "25.00"), NULL },
                { "q1", "purchase_refund", "5.00", PAY("electronic", "5.00"), NULL },
                { "c1", "sale_correction", "3.00", PAY("cash", "3.00"), NULL },
        };
        DeviceTypeTotals *t;

        for (size_t i = 0; i < ELEMENTSOF(receipts); i++) {
                _cleanup_free_ char *json = receipt_json(receipts[i].type, "osn", receipts[i].total,
                                                         receipts[i].payments, receipts[i].change);

                print_ok(s, receipts[i].id, json);
        }

        *expected = (DeviceTotals) {};
        t = expected->by_type + RECEIPT_TYPE_SALE;
        t->count = 4;
        t->total = 10000 + 5000 + 3000 + 700;
        t->payments[DEVICE_PAYMENT_ELECTRONIC] = 10000;
        t->payments[DEVICE_PAYMENT_CASH] = 5000; /* 60.00 received, 10.00 given back */
        t->payments[DEVICE_PAYMENT_PREPAYMENT] = 2000;
        t->payments[DEVICE_PAYMENT_CREDIT] = 1000;
        t->payments[DEVICE_PAYMENT_OTHER] = 700;
        t = expected->by_type + RECEIPT_TYPE_REFUND;
        t->count = 1;
        t->total = 4000;
        t->payments[DEVICE_PAYMENT_CASH] = 4000;
        t = expected->by_type + RECEIPT_TYPE_PURCHASE;
        t->count = 1;
        t->total = 2500;
        t->payments[DEVICE_PAYMENT_CASH] = 2500;
        t = expected->by_type + RECEIPT_TYPE_PURCHASE_REFUND;
        t->count = 1;
        t->total = 500;
        t->payments[DEVICE_PAYMENT_ELECTRONIC] = 500;
        t = expected->by_type + RECEIPT_TYPE_SALE_CORRECTION;
        t->count = 1;
        t->total = 300;
        t->payments[DEVICE_PAYMENT_CASH] = 300;
}

static void test_shift_totals_count_by_type_and_payment_form(void) {
        DeviceTotals expected;
        DeviceStatus st;
        DeviceResult x;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        print_mixed_shift(s, &expected);

        st = status(s);
        ASSERT_TRUE(st.shift_open);
        assert_totals_eq(&st.shift_totals, &expected);
        ASSERT_EQ_U(device_totals_receipts(&st.shift_totals), 8);

        x = run_op(s, DEVICE_OP_REPORT_X);
        ASSERT_RESULT_OK(&x);
        ASSERT_EQ(x.report.type, DEVICE_REPORT_X);
        ASSERT_TRUE(x.report.shift_open);
        assert_totals_eq(&x.report.totals, &expected);

        /* Net by form: sales and returns of purchases bring money in, refunds and purchases take it out;
         * a correction counts as what it corrects. Cash is net of the change. */
        ASSERT_EQ(device_totals_net(&st.shift_totals, DEVICE_PAYMENT_CASH), 5000 - 4000 - 2500 + 300);
        ASSERT_EQ(device_totals_net(&st.shift_totals, DEVICE_PAYMENT_ELECTRONIC), 10000 + 500);
        ASSERT_EQ(device_totals_net(&st.shift_totals, DEVICE_PAYMENT_PREPAYMENT), 2000);
        ASSERT_EQ(device_totals_net(&st.shift_totals, DEVICE_PAYMENT_CREDIT), 1000);
        ASSERT_EQ(device_totals_net(&st.shift_totals, DEVICE_PAYMENT_OTHER), 700);

        /* The totals are in the fiscal memory: a restart keeps them. */
        drv()->close(s);
        s = emu_open(&e);
        st = status(s);
        assert_totals_eq(&st.shift_totals, &expected);
        drv()->close(s);
        env_teardown(&e);
}

static void test_totals_net_signs_by_settlement(void) {
        static const struct {
                ReceiptType type;
                int sign;
        } signs[] = {
                { RECEIPT_TYPE_SALE, +1 },
                { RECEIPT_TYPE_REFUND, -1 },
                { RECEIPT_TYPE_PURCHASE, -1 },
                { RECEIPT_TYPE_PURCHASE_REFUND, +1 },
                { RECEIPT_TYPE_SALE_CORRECTION, +1 },
                { RECEIPT_TYPE_REFUND_CORRECTION, -1 },
                { RECEIPT_TYPE_PURCHASE_CORRECTION, -1 },
                { RECEIPT_TYPE_PURCHASE_REFUND_CORRECTION, +1 },
        };
        int64_t payments[_DEVICE_PAYMENT_MAX] = {};

        for (size_t i = 0; i < ELEMENTSOF(signs); i++) {
                DeviceTotals t = {};

                for (int f = 0; f < _DEVICE_PAYMENT_MAX; f++)
                        payments[f] = 100 * (f + 1);
                ASSERT_OK(device_totals_add(&t, signs[i].type, 1500, payments));
                ASSERT_OK(device_totals_add(&t, signs[i].type, 1500, payments));
                ASSERT_EQ_U(t.by_type[signs[i].type].count, 2);
                ASSERT_EQ(t.by_type[signs[i].type].total, 3000);
                ASSERT_EQ_U(device_totals_receipts(&t), 2);
                for (int f = 0; f < _DEVICE_PAYMENT_MAX; f++)
                        ASSERT_EQ(device_totals_net(&t, f), signs[i].sign * 200 * (f + 1));
        }

        /* Overflow is refused and leaves the totals as they were. */
        {
                DeviceTotals t = {};

                payments[DEVICE_PAYMENT_CASH] = INT64_MAX;
                ASSERT_OK(device_totals_add(&t, RECEIPT_TYPE_SALE, 1, payments));
                ASSERT_ERROR(device_totals_add(&t, RECEIPT_TYPE_SALE, 1, payments), EOVERFLOW);
                ASSERT_EQ_U(t.by_type[RECEIPT_TYPE_SALE].count, 1);
                ASSERT_EQ(t.by_type[RECEIPT_TYPE_SALE].total, 1);
        }
}

static void test_report_x_has_no_side_effects(void) {
        DeviceResult x1, x2;
        DeviceTotals expected;
        DeviceDocument doc;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        print_mixed_shift(s, &expected); /* FD 1 opening, 2..9 receipts */

        e.clock = T0 + 5 * USEC_PER_MINUTE;
        x1 = run_op(s, DEVICE_OP_REPORT_X);
        x2 = run_op(s, DEVICE_OP_REPORT_X);
        ASSERT_RESULT_OK(&x1);
        ASSERT_RESULT_OK(&x2);
        ASSERT_EQ(x1.report.type, DEVICE_REPORT_X);
        ASSERT_TRUE(x1.report.shift_open);
        ASSERT_EQ_U(x1.report.shift_number, 1);
        ASSERT_EQ_U(x1.report.shift_open_usec, T0);
        ASSERT_EQ_U(x1.report.datetime, T0 + 5 * USEC_PER_MINUTE);
        ASSERT_EQ_U(x1.report.fiscal_document_number, 0);
        ASSERT_STREQ(x1.report.fiscal_sign, "");
        ASSERT_EQ_U(x1.report.last_fiscal_document, 9);
        ASSERT_EQ_U(x2.report.last_fiscal_document, 9);
        assert_totals_eq(&x1.report.totals, &x2.report.totals);
        ASSERT_EQ_U(last_fd(s), 9);

        /* X left the shift as it was: the next receipt is the ninth of shift 1 and takes FD 10. */
        doc = sell(s, "after-x");
        ASSERT_EQ_U(doc.fiscal_document_number, 10);
        ASSERT_EQ_U(doc.shift_number, 1);
        ASSERT_EQ_U(doc.document_number_in_shift, 9);
        drv()->close(s);
        env_teardown(&e);
}

static void test_report_x_when_closed_reports_zero_figures(void) {
        DeviceResult x;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);

        x = run_op(s, DEVICE_OP_REPORT_X);
        ASSERT_RESULT_OK(&x);
        ASSERT_FALSE(x.report.shift_open);
        ASSERT_EQ_U(x.report.shift_number, 0);
        ASSERT_EQ_U(x.report.shift_open_usec, 0);
        ASSERT_EQ_U(x.report.last_fiscal_document, 0);
        ASSERT_TRUE(totals_are_zero(&x.report.totals));

        sell(s, "a");
        ASSERT_OK(close_shift(s, 0).error);
        x = run_op(s, DEVICE_OP_REPORT_X);
        ASSERT_RESULT_OK(&x);
        ASSERT_FALSE(x.report.shift_open);
        ASSERT_EQ_U(x.report.shift_number, 1);
        ASSERT_EQ_U(x.report.shift_open_usec, 0);
        ASSERT_EQ_U(x.report.last_fiscal_document, 3);
        ASSERT_TRUE(totals_are_zero(&x.report.totals));
        ASSERT_EQ_U(last_fd(s), 3);
        drv()->close(s);
        env_teardown(&e);
}

/* ---- opening and closing shifts ---- */

static void test_open_shift_makes_a_document_and_ealready_when_open(void) {
        char sign[DEVICE_FISCAL_SIGN_LEN + 1];
        DeviceDocument doc;
        DeviceResult r;
        DeviceStatus st;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);

        r = run_op(s, DEVICE_OP_OPEN_SHIFT);
        ASSERT_RESULT_OK(&r);
        ASSERT_EQ(r.report.type, DEVICE_REPORT_OPEN);
        ASSERT_TRUE(r.report.shift_open);
        ASSERT_EQ_U(r.report.shift_number, 1);
        ASSERT_EQ_U(r.report.fiscal_document_number, 1);
        ASSERT_EQ_U(r.report.last_fiscal_document, 1);
        ASSERT_EQ_U(r.report.datetime, T0);
        ASSERT_EQ_U(r.report.shift_open_usec, T0);
        ASSERT_TRUE(totals_are_zero(&r.report.totals));
        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 1, T0, 0, "open_shift", sign));
        ASSERT_STREQ(r.report.fiscal_sign, sign);
        ASSERT_TRUE(r.have_status);
        ASSERT_TRUE(r.status.shift_open);
        ASSERT_EQ_U(r.status.last_fiscal_document, 1);

        /* Open already: an answer with the open shift, no document. */
        e.clock = T0 + USEC_PER_MINUTE;
        r = run_op(s, DEVICE_OP_OPEN_SHIFT);
        ASSERT_RESULT(&r, EALREADY, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(r.report.shift_number, 1);
        ASSERT_EQ_U(r.report.shift_open_usec, T0);
        ASSERT_EQ_U(r.report.fiscal_document_number, 0);
        ASSERT_STREQ(r.report.fiscal_sign, "");
        ASSERT_TRUE(r.have_status);

        /* The first receipt goes into the shift opened by hand. */
        doc = sell(s, "a");
        ASSERT_EQ_U(doc.fiscal_document_number, 2);
        ASSERT_EQ_U(doc.document_number_in_shift, 1);
        st = status(s);
        ASSERT_EQ_U(st.shift_open_usec, T0);
        drv()->close(s);
        env_teardown(&e);
}

static void test_close_shift_makes_the_z_report(void) {
        _cleanup_free_ char *rows = NULL;
        char sign[DEVICE_FISCAL_SIGN_LEN + 1];
        DeviceTotals expected;
        DeviceResult z;
        DeviceStatus st;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        print_mixed_shift(s, &expected); /* FD 1..9 */

        e.clock = T0 + 8 * USEC_PER_HOUR;
        z = close_shift(s, 1);
        ASSERT_RESULT_OK(&z);
        ASSERT_EQ(z.report.type, DEVICE_REPORT_Z);
        ASSERT_FALSE(z.report.shift_open);
        ASSERT_EQ_U(z.report.shift_number, 1);
        ASSERT_EQ_U(z.report.shift_open_usec, T0);
        ASSERT_EQ_U(z.report.datetime, T0 + 8 * USEC_PER_HOUR);
        ASSERT_EQ_U(z.report.fiscal_document_number, 10);
        ASSERT_EQ_U(z.report.last_fiscal_document, 10);
        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 10, T0 + 8 * USEC_PER_HOUR, 0, "close_shift",
                                              sign));
        ASSERT_STREQ(z.report.fiscal_sign, sign);
        assert_totals_eq(&z.report.totals, &expected);

        ASSERT_TRUE(z.have_status);
        st = z.status;
        ASSERT_FALSE(st.shift_open);
        ASSERT_EQ_U(st.shift_number, 1);
        ASSERT_EQ_U(st.shift_open_usec, 0);
        ASSERT_EQ_U(st.last_fiscal_document, 10);
        ASSERT_TRUE(totals_are_zero(&st.shift_totals));
        drv()->close(s);

        rows = journal(&e, "SELECT fd, kind, shift_number, datetime_usec FROM documents "
                           "WHERE kind != 'receipt' ORDER BY fd");
        ASSERT_STREQ(rows, "1|open_shift|1|1795922246000000;10|close_shift|1|1795951046000000");
        env_teardown(&e);
}

static void test_close_shift_again_is_idempotent_and_never_a_second_z(void) {
        _cleanup_free_ char *closes = NULL;
        DeviceResult z, again, zero;
        DeviceTotals expected;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        print_mixed_shift(s, &expected);
        z = close_shift(s, 1);
        ASSERT_RESULT_OK(&z);

        /* The same shift again (a repeat after an unknown outcome): its Z, not a new one. */
        e.clock = T0 + USEC_PER_HOUR;
        for (unsigned i = 0; i < 2; i++) {
                again = close_shift(s, 1);
                ASSERT_RESULT(&again, EALREADY, DEVICE_FAULT_NONE);
                ASSERT_EQ(again.report.type, DEVICE_REPORT_Z);
                ASSERT_EQ_U(again.report.shift_number, 1);
                ASSERT_EQ_U(again.report.fiscal_document_number, z.report.fiscal_document_number);
                ASSERT_STREQ(again.report.fiscal_sign, z.report.fiscal_sign);
                ASSERT_EQ_U(again.report.datetime, z.report.datetime);
                ASSERT_EQ_U(again.report.shift_open_usec, T0);
                assert_totals_eq(&again.report.totals, &expected);
                ASSERT_TRUE(again.have_status);
                ASSERT_FALSE(again.status.shift_open);
        }

        /* 0 means "the open one": none is open, so the last one's Z. */
        zero = close_shift(s, 0);
        ASSERT_RESULT(&zero, EALREADY, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(zero.report.shift_number, 1);
        ASSERT_EQ_U(zero.report.fiscal_document_number, z.report.fiscal_document_number);
        ASSERT_STREQ(zero.report.fiscal_sign, z.report.fiscal_sign);
        assert_totals_eq(&zero.report.totals, &expected);

        /* Shift 1 asked for while shift 2 is open: still shift 1's Z, and shift 2 stays open. */
        sell(s, "shift-2");
        again = close_shift(s, 1);
        ASSERT_RESULT(&again, EALREADY, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(again.report.fiscal_document_number, z.report.fiscal_document_number);
        ASSERT_TRUE(status(s).shift_open);
        ASSERT_EQ_U(status(s).shift_number, 2);

        /* A shift that never was. */
        again = close_shift(s, 3);
        ASSERT_RESULT(&again, ENOENT, DEVICE_FAULT_NONE);
        drv()->close(s);

        closes = journal(&e, "SELECT COUNT(*) FROM documents WHERE kind = 'close_shift'");
        ASSERT_STREQ(closes, "1");
        env_teardown(&e);
}

static void test_close_shift_on_a_never_opened_register_is_enoent(void) {
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        r = close_shift(s, 0);
        ASSERT_RESULT(&r, ENOENT, DEVICE_FAULT_NONE);
        r = close_shift(s, 1);
        ASSERT_RESULT(&r, ENOENT, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(last_fd(s), 0);
        drv()->close(s);
        env_teardown(&e);
}

static void test_next_receipt_after_z_opens_shift_2(void) {
        DeviceDocument doc;
        DeviceStatus st;
        DeviceResult x;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        sell(s, "a");
        ASSERT_OK(close_shift(s, 0).error); /* FD 3 */

        e.clock = T0 + USEC_PER_HOUR;
        doc = sell(s, "b");
        ASSERT_EQ_U(doc.fiscal_document_number, 5); /* 4 opened shift 2 */
        ASSERT_EQ_U(doc.shift_number, 2);
        ASSERT_EQ_U(doc.document_number_in_shift, 1);
        st = status(s);
        ASSERT_TRUE(st.shift_open);
        ASSERT_EQ_U(st.shift_number, 2);
        ASSERT_EQ_U(st.shift_open_usec, T0 + USEC_PER_HOUR);
        ASSERT_EQ_U(st.shift_totals.by_type[RECEIPT_TYPE_SALE].count, 1);
        ASSERT_EQ(st.shift_totals.by_type[RECEIPT_TYPE_SALE].total, 150000);

        x = run_op(s, DEVICE_OP_REPORT_X);
        ASSERT_RESULT_OK(&x);
        ASSERT_EQ_U(device_totals_receipts(&x.report.totals), 1);
        ASSERT_EQ_U(x.report.shift_open_usec, T0 + USEC_PER_HOUR);
        drv()->close(s);
        env_teardown(&e);
}

/* ---- faults ---- */

static void test_latency_is_within_the_configured_range(void) {
        Env e;
        void *s;

        env_setup(&e);
        e.options.print_latency_min = 30 * USEC_PER_MSEC;
        e.options.print_latency_max = 60 * USEC_PER_MSEC;
        s = emu_open(&e);
        for (unsigned i = 0; i < 5; i++) {
                usec_t t = now(CLOCK_MONOTONIC), elapsed;
                char id[16];

                snprintf(id, sizeof id, "r-%u", i);
                sell(s, id);
                elapsed = now(CLOCK_MONOTONIC) - t;
                ASSERT_TRUE(elapsed >= 30 * USEC_PER_MSEC);
                ASSERT_TRUE(elapsed < 60 * USEC_PER_MSEC + 500 * USEC_PER_MSEC); /* plus an fsync or two */
        }
        drv()->close(s);

        /* A minimum above the maximum is a bad configuration. */
        e.options.print_latency_min = 61 * USEC_PER_MSEC;
        {
                DeviceFault f = DEVICE_FAULT_NONE;
                void *state = NULL;

                ASSERT_ERROR(drv()->open(&state, &e.options, &f), EINVAL);
                ASSERT_EQ(f, DEVICE_FAULT_ERROR);
        }
        env_teardown(&e);
}

static void test_standing_fault_until_cleared(DeviceFault fault, int error) {
        DeviceDocument doc;
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        sell(s, "a");

        ASSERT_OK(drv()->inject_fault(s, fault, 0));
        for (unsigned i = 0; i < 3; i++) {
                r = try_sell(s, "b");
                ASSERT_RESULT(&r, error, fault);
        }
        r = run_op(s, DEVICE_OP_REPORT_X);
        ASSERT_RESULT(&r, error, fault);
        r = close_shift(s, 0);
        ASSERT_RESULT(&r, error, fault);
        r = run_op(s, DEVICE_OP_OPEN_SHIFT);
        ASSERT_RESULT(&r, error, fault);

        /* Queries need no paper and no closed cover: the status shows the condition, FIND still finds. */
        ASSERT_EQ(status(s).condition, fault);
        r = find(s, "a");
        ASSERT_RESULT_OK(&r);

        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_NONE, 0));
        ASSERT_EQ(status(s).condition, DEVICE_FAULT_NONE);
        doc = sell(s, "b");
        ASSERT_EQ_U(doc.fiscal_document_number, 3); /* the failed attempts used no number */
        ASSERT_TRUE(status(s).shift_open);
        drv()->close(s);
        env_teardown(&e);
}

static void test_paper_out_until_cleared(void) {
        test_standing_fault_until_cleared(DEVICE_FAULT_PAPER_OUT, ENOMEDIUM);
}

static void test_cover_open_until_cleared(void) {
        test_standing_fault_until_cleared(DEVICE_FAULT_COVER_OPEN, EAGAIN);
}

static void test_counted_fault_hits_that_many_operations(void) {
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_PAPER_OUT, 2));
        r = try_sell(s, "a");
        ASSERT_RESULT(&r, ENOMEDIUM, DEVICE_FAULT_PAPER_OUT);
        /* A query is not hit, so it uses up nothing. */
        ASSERT_EQ(status(s).condition, DEVICE_FAULT_PAPER_OUT);
        r = try_sell(s, "a");
        ASSERT_RESULT(&r, ENOMEDIUM, DEVICE_FAULT_PAPER_OUT);
        ASSERT_EQ(status(s).condition, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(sell(s, "a").fiscal_document_number, 2);

        /* A register shows no "error" or OFD blocking on demand; NONE clears whatever was set. */
        ASSERT_ERROR(drv()->inject_fault(s, DEVICE_FAULT_ERROR, 1), EINVAL);
        ASSERT_ERROR(drv()->inject_fault(s, DEVICE_FAULT_OFD_BLOCKED, 1), EINVAL);
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_COVER_OPEN, 5));
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_NONE, 5));
        ASSERT_EQ_U(sell(s, "b").fiscal_document_number, 3);
        drv()->close(s);
        env_teardown(&e);
}

static void test_fault_from_options(void) {
        DeviceFault f = DEVICE_FAULT_NONE;
        void *state = NULL;
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        e.options.fault = DEVICE_FAULT_FN_FULL;
        e.options.fault_count = 1;
        s = emu_open(&e);
        r = try_sell(s, "a");
        ASSERT_RESULT(&r, ENOSPC, DEVICE_FAULT_FN_FULL);
        ASSERT_EQ_U(sell(s, "a").fiscal_document_number, 2);
        drv()->close(s);

        e.options.fault = DEVICE_FAULT_OFD_BLOCKED;
        ASSERT_ERROR(drv()->open(&state, &e.options, &f), EINVAL);
        ASSERT_NULL(state);
        env_teardown(&e);
}

static void test_timeout_before_printing_makes_nothing(void) {
        usec_t t, elapsed;
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_TIMEOUT_BEFORE, 1));

        t = now(CLOCK_MONOTONIC);
        r = try_sell(s, "a");
        elapsed = now(CLOCK_MONOTONIC) - t;
        ASSERT_RESULT(&r, ETIMEDOUT, DEVICE_FAULT_TIMEOUT_BEFORE);
        /* Within the operation's timeout, so the front end hears it before its own timer fires. */
        ASSERT_TRUE(elapsed >= TIMEOUT / 2);
        ASSERT_TRUE(elapsed < TIMEOUT);
        ASSERT_EQ_U(last_fd(s), 0);
        r = find(s, "a");
        ASSERT_RESULT(&r, ENOENT, DEVICE_FAULT_NONE);

        /* The same for the Z report: the shift stays open. */
        sell(s, "a");
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_TIMEOUT_BEFORE, 1));
        r = close_shift(s, 0);
        ASSERT_RESULT(&r, ETIMEDOUT, DEVICE_FAULT_TIMEOUT_BEFORE);
        ASSERT_TRUE(status(s).shift_open);
        ASSERT_EQ_U(last_fd(s), 2);
        drv()->close(s);
        env_teardown(&e);
}

static void test_timeout_after_printing_makes_the_document_and_answers_late(void) {
        usec_t t, elapsed;
        DeviceResult r, found;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_TIMEOUT_UNKNOWN, 1));

        t = now(CLOCK_MONOTONIC);
        r = try_sell(s, "late-1");
        elapsed = now(CLOCK_MONOTONIC) - t;
        ASSERT_RESULT_OK(&r);
        ASSERT_TRUE(elapsed > TIMEOUT);
        ASSERT_EQ_U(r.doc.fiscal_document_number, 2);
        ASSERT_STREQ(r.doc.receipt_id, "late-1");

        found = find(s, "late-1");
        ASSERT_RESULT_OK(&found);
        ASSERT_EQ_U(found.doc.fiscal_document_number, 2);
        ASSERT_STREQ(found.doc.fiscal_sign, r.doc.fiscal_sign);

        /* Used up: the next one answers in time. */
        t = now(CLOCK_MONOTONIC);
        sell(s, "b");
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - t < TIMEOUT);
        drv()->close(s);
        env_teardown(&e);
}

static void test_timeout_after_close_shift_makes_the_z_and_answers_late(void) {
        _cleanup_free_ char *closes = NULL;
        usec_t t, elapsed;
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        sell(s, "a");
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_TIMEOUT_UNKNOWN, 1));

        t = now(CLOCK_MONOTONIC);
        r = close_shift(s, 1);
        elapsed = now(CLOCK_MONOTONIC) - t;
        ASSERT_RESULT_OK(&r);
        ASSERT_TRUE(elapsed > TIMEOUT);
        ASSERT_EQ_U(r.report.fiscal_document_number, 3);
        ASSERT_FALSE(status(s).shift_open);

        /* Asked again after the unknown outcome: the same Z. */
        {
                DeviceResult again = close_shift(s, 1);

                ASSERT_RESULT(&again, EALREADY, DEVICE_FAULT_NONE);
                ASSERT_EQ_U(again.report.fiscal_document_number, 3);
                ASSERT_STREQ(again.report.fiscal_sign, r.report.fiscal_sign);
        }

        /* And for opening a shift. */
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_TIMEOUT_UNKNOWN, 1));
        t = now(CLOCK_MONOTONIC);
        r = run_op(s, DEVICE_OP_OPEN_SHIFT);
        ASSERT_RESULT_OK(&r);
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - t > TIMEOUT);
        ASSERT_EQ_U(r.report.fiscal_document_number, 4);
        drv()->close(s);

        closes = journal(&e, "SELECT COUNT(*) FROM documents WHERE kind = 'close_shift'");
        ASSERT_STREQ(closes, "1");
        env_teardown(&e);
}

static void test_interrupt_cuts_waits_short(void) {
        DeviceResult r;
        usec_t t;
        Env e;
        void *s;

        env_setup(&e);
        e.options.print_latency_min = e.options.print_latency_max = 10 * USEC_PER_SEC;
        s = emu_open(&e);
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_TIMEOUT_UNKNOWN, 1));
        drv()->interrupt(s);

        /* A document being made is still made, only without the waiting. */
        t = now(CLOCK_MONOTONIC);
        r = try_sell(s, "a");
        ASSERT_RESULT_OK(&r);
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - t < USEC_PER_SEC);
        ASSERT_EQ_U(r.doc.fiscal_document_number, 2);
        drv()->close(s);
        env_teardown(&e);
}

static void test_fn_full_injected_and_at_capacity(void) {
        DeviceStatus st;
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_FN_FULL, 0));
        r = try_sell(s, "a");
        ASSERT_RESULT(&r, ENOSPC, DEVICE_FAULT_FN_FULL);
        ASSERT_EQ(status(s).condition, DEVICE_FAULT_FN_FULL);
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_NONE, 0));
        drv()->close(s);

        /* A fiscal memory that holds three documents: the opening and two receipts. */
        e.options.emulator_fn_capacity = 3;
        s = emu_open(&e);
        sell(s, "a");
        st = status(s);
        ASSERT_EQ(st.condition, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(st.fn_capacity, 3);
        ASSERT_EQ_U(st.fn_documents, 2);
        sell(s, "b");
        st = status(s);
        ASSERT_EQ(st.condition, DEVICE_FAULT_FN_FULL);
        ASSERT_EQ_U(st.fn_documents, 3);
        r = try_sell(s, "c");
        ASSERT_RESULT(&r, ENOSPC, DEVICE_FAULT_FN_FULL);
        ASSERT_EQ_U(last_fd(s), 3);
        drv()->close(s);
        env_teardown(&e);
}

static void test_fn_expired_by_the_clock_is_fn_full(void) {
        DeviceStatus st;
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        ASSERT_EQ_U(status(s).fn_valid_until, T0 + DEVICE_EMULATOR_FN_VALIDITY);

        e.clock = T0 + DEVICE_EMULATOR_FN_VALIDITY - USEC_PER_SEC;
        ASSERT_EQ(status(s).condition, DEVICE_FAULT_NONE);
        sell(s, "a");
        ASSERT_OK(close_shift(s, 0).error);

        e.clock = T0 + DEVICE_EMULATOR_FN_VALIDITY;
        st = status(s);
        ASSERT_EQ(st.condition, DEVICE_FAULT_FN_FULL);
        r = try_sell(s, "b");
        ASSERT_RESULT(&r, ENOSPC, DEVICE_FAULT_FN_FULL);
        r = run_op(s, DEVICE_OP_OPEN_SHIFT);
        ASSERT_RESULT(&r, ENOSPC, DEVICE_FAULT_FN_FULL);
        ASSERT_EQ_U(last_fd(s), 3);
        drv()->close(s);
        env_teardown(&e);
}

static void test_not_connected_fails_everything(void) {
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        sell(s, "a");
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_NOT_CONNECTED, 0));

        r = try_sell(s, "b");
        ASSERT_RESULT(&r, ENOTCONN, DEVICE_FAULT_NOT_CONNECTED);
        r = run_op(s, DEVICE_OP_STATUS);
        ASSERT_RESULT(&r, ENOTCONN, DEVICE_FAULT_NOT_CONNECTED);
        ASSERT_FALSE(r.have_status);
        r = find(s, "a");
        ASSERT_RESULT(&r, ENOTCONN, DEVICE_FAULT_NOT_CONNECTED);
        r = run_op(s, DEVICE_OP_REPORT_X);
        ASSERT_RESULT(&r, ENOTCONN, DEVICE_FAULT_NOT_CONNECTED);
        r = close_shift(s, 0);
        ASSERT_RESULT(&r, ENOTCONN, DEVICE_FAULT_NOT_CONNECTED);
        r = run_op(s, DEVICE_OP_OPEN_SHIFT);
        ASSERT_RESULT(&r, ENOTCONN, DEVICE_FAULT_NOT_CONNECTED);

        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_NONE, 0));
        ASSERT_EQ_U(sell(s, "b").fiscal_document_number, 3);
        ASSERT_TRUE(status(s).shift_open);
        drv()->close(s);
        env_teardown(&e);
}

static void test_shift_over_24h_needs_a_z_report(void) {
        DeviceDocument doc;
        DeviceStatus st;
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        sell(s, "a");
        st = status(s);
        ASSERT_TRUE(st.shift_open);
        ASSERT_EQ_U(st.shift_number, 1);
        ASSERT_EQ_U(st.shift_open_usec, T0);

        /* Just under 24 h: still fine. */
        e.clock = T0 + DEVICE_SHIFT_MAX_USEC - USEC_PER_SEC;
        doc = sell(s, "b");
        ASSERT_EQ_U(doc.shift_number, 1);

        e.clock = T0 + DEVICE_SHIFT_MAX_USEC;
        r = try_sell(s, "c");
        ASSERT_RESULT(&r, ESTALE, DEVICE_FAULT_SHIFT_EXPIRED);
        st = status(s);
        ASSERT_EQ(st.condition, DEVICE_FAULT_SHIFT_EXPIRED);
        ASSERT_EQ_U(st.last_fiscal_document, 3);

        /* Only a Z report ends it; the shift's figures are in it. */
        r = close_shift(s, 0);
        ASSERT_RESULT_OK(&r);
        ASSERT_EQ_U(r.report.shift_number, 1);
        ASSERT_EQ_U(r.report.fiscal_document_number, 4);
        ASSERT_EQ_U(r.report.totals.by_type[RECEIPT_TYPE_SALE].count, 2);
        st = status(s);
        ASSERT_EQ(st.condition, DEVICE_FAULT_NONE);
        ASSERT_FALSE(st.shift_open);
        ASSERT_EQ_U(st.shift_open_usec, 0);

        doc = sell(s, "c");
        ASSERT_EQ_U(doc.shift_number, 2);
        ASSERT_EQ_U(doc.document_number_in_shift, 1);
        ASSERT_EQ_U(doc.fiscal_document_number, 6);
        ASSERT_EQ_U(status(s).shift_open_usec, T0 + DEVICE_SHIFT_MAX_USEC);

        /* The test hook ages the open shift the same way. */
        r = debug(s, "{\"shift_age_seconds\": 86400}");
        ASSERT_RESULT_OK(&r);
        ASSERT_EQ(r.status.condition, DEVICE_FAULT_SHIFT_EXPIRED);
        r = try_sell(s, "d");
        ASSERT_RESULT(&r, ESTALE, DEVICE_FAULT_SHIFT_EXPIRED);
        drv()->close(s);
        env_teardown(&e);
}

static void test_injected_shift_expired_ends_with_z_report(void) {
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        sell(s, "a");
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_SHIFT_EXPIRED, 0));
        r = try_sell(s, "b");
        ASSERT_RESULT(&r, ESTALE, DEVICE_FAULT_SHIFT_EXPIRED);
        r = try_sell(s, "b");
        ASSERT_RESULT(&r, ESTALE, DEVICE_FAULT_SHIFT_EXPIRED);
        ASSERT_EQ(status(s).condition, DEVICE_FAULT_SHIFT_EXPIRED);

        r = close_shift(s, 0);
        ASSERT_RESULT_OK(&r);
        ASSERT_EQ(status(s).condition, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(sell(s, "b").shift_number, 2);
        drv()->close(s);
        env_teardown(&e);
}

static void test_rejected_is_injectable_for_receipts(void) {
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_REJECTED, 1));

        /* Shift documents are not receipts: neither refused nor using it up. */
        r = run_op(s, DEVICE_OP_OPEN_SHIFT);
        ASSERT_RESULT_OK(&r);
        ASSERT_EQ_U(r.report.fiscal_document_number, 1);

        r = try_sell(s, "a");
        ASSERT_RESULT(&r, EINVAL, DEVICE_FAULT_REJECTED);
        ASSERT_EQ_U(last_fd(s), 1);
        ASSERT_EQ_U(sell(s, "a").fiscal_document_number, 2);
        drv()->close(s);
        env_teardown(&e);
}

/* ---- the OFD exchange and the FN's validity ---- */

static void test_ofd_offline_keeps_documents_unsent_and_blocks_after_30_days(void) {
        DeviceStatus st;
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);

        r = debug(s, "{\"ofd_online\": false}");
        ASSERT_RESULT_OK(&r);
        ASSERT_TRUE(r.have_status);
        sell(s, "a");
        sell(s, "b");
        ASSERT_OK(close_shift(s, 0).error); /* FD 1..4, none confirmed */

        st = status(s);
        ASSERT_EQ_U(st.ofd.unsent, 4);
        ASSERT_EQ_U(st.ofd.first_unsent, 1);
        ASSERT_EQ_U(st.ofd.first_unsent_usec, T0);
        ASSERT_EQ(st.condition, DEVICE_FAULT_NONE);
        r = run_op(s, DEVICE_OP_REPORT_X);
        ASSERT_RESULT_OK(&r);
        ASSERT_EQ_U(r.report.ofd.unsent, 4);
        ASSERT_EQ_U(r.report.ofd.first_unsent, 1);

        /* Made 26 days ago; at 30 days (the clock moves on) the fiscal drive blocks. */
        r = debug(s, "{\"unsent_age_days\": 26}");
        ASSERT_RESULT_OK(&r);
        st = status(s);
        ASSERT_EQ_U(st.ofd.unsent, 4);
        ASSERT_EQ_U(st.ofd.first_unsent_usec, T0 - 26 * USEC_PER_DAY);
        ASSERT_EQ(st.condition, DEVICE_FAULT_NONE);

        e.clock = T0 + 4 * USEC_PER_DAY - USEC_PER_SEC;
        ASSERT_EQ(status(s).condition, DEVICE_FAULT_NONE);
        e.clock = T0 + 4 * USEC_PER_DAY;
        st = status(s);
        ASSERT_EQ(st.condition, DEVICE_FAULT_OFD_BLOCKED);
        r = try_sell(s, "c");
        ASSERT_RESULT(&r, EKEYEXPIRED, DEVICE_FAULT_OFD_BLOCKED);
        r = run_op(s, DEVICE_OP_OPEN_SHIFT);
        ASSERT_RESULT(&r, EKEYEXPIRED, DEVICE_FAULT_OFD_BLOCKED);
        ASSERT_EQ_U(last_fd(s), 4);

        /* Back online, the drive sends them: the next status has none unsent, and receipts go again. */
        r = debug(s, "{\"ofd_online\": true}");
        ASSERT_RESULT_OK(&r);
        st = status(s);
        ASSERT_EQ_U(st.ofd.unsent, 0);
        ASSERT_EQ_U(st.ofd.first_unsent, 0);
        ASSERT_EQ_U(st.ofd.first_unsent_usec, 0);
        ASSERT_EQ(st.condition, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(sell(s, "c").fiscal_document_number, 6);
        ASSERT_EQ_U(status(s).ofd.unsent, 0);
        drv()->close(s);
        env_teardown(&e);
}

static void test_ofd_unsent_age_blocks_at_30_days(void) {
        DeviceStatus st;
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        r = debug(s, "{\"ofd_online\": false}");
        ASSERT_RESULT_OK(&r);
        sell(s, "a"); /* FD 1, 2 */

        r = debug(s, "{\"unsent_age_days\": 26}");
        ASSERT_RESULT_OK(&r);
        ASSERT_EQ(status(s).condition, DEVICE_FAULT_NONE);
        sell(s, "b"); /* FD 3, made now */
        st = status(s);
        ASSERT_EQ_U(st.ofd.unsent, 3);
        ASSERT_EQ_U(st.ofd.first_unsent, 1);
        ASSERT_EQ_U(st.ofd.first_unsent_usec, T0 - 26 * USEC_PER_DAY);

        r = debug(s, "{\"unsent_age_days\": 4}");
        ASSERT_RESULT_OK(&r);
        st = status(s);
        ASSERT_EQ_U(st.ofd.first_unsent_usec, T0 - 30 * USEC_PER_DAY);
        ASSERT_EQ(st.condition, DEVICE_FAULT_OFD_BLOCKED);
        r = try_sell(s, "c");
        ASSERT_RESULT(&r, EKEYEXPIRED, DEVICE_FAULT_OFD_BLOCKED);
        ASSERT_EQ_U(last_fd(s), 3);
        drv()->close(s);
        env_teardown(&e);
}

static void test_fn_validity_is_set_at_first_use_and_moved_by_debug(void) {
        DeviceStatus st;
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        st = status(s);
        ASSERT_EQ_U(st.fn_valid_until, T0 + DEVICE_EMULATOR_FN_VALIDITY);
        ASSERT_STREQ(st.model, "kkt-adapter emulator");
        ASSERT_STREQ(st.fn_number, FN_NUMBER);
        ASSERT_STREQ(st.serial, SERIAL);
        ASSERT_STREQ(st.registration_number, REGISTRATION_NUMBER);
        ASSERT_STREQ(st.inn, INN);
        drv()->close(s);

        /* Set once: reopening later does not extend it. */
        e.clock = T0 + 10 * USEC_PER_DAY;
        s = emu_open(&e);
        ASSERT_EQ_U(status(s).fn_valid_until, T0 + DEVICE_EMULATOR_FN_VALIDITY);

        r = debug(s, "{\"fn_days_left\": 2}");
        ASSERT_RESULT_OK(&r);
        ASSERT_EQ_U(r.status.fn_valid_until, T0 + 12 * USEC_PER_DAY);
        st = status(s);
        ASSERT_EQ_U(st.fn_valid_until, T0 + 12 * USEC_PER_DAY);
        ASSERT_EQ(st.condition, DEVICE_FAULT_NONE);
        sell(s, "a");

        e.clock = T0 + 12 * USEC_PER_DAY;
        ASSERT_EQ(status(s).condition, DEVICE_FAULT_FN_FULL);

        /* Unreadable settings are refused. */
        r = debug(s, "not json");
        ASSERT_ERROR(r.error, EINVAL);
        drv()->close(s);
        env_teardown(&e);
}

static void test_fn_days_left_negative_expires_the_fn(void) {
        DeviceStatus st;
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        r = debug(s, "{\"fn_days_left\": -1}");
        ASSERT_RESULT_OK(&r);
        st = status(s);
        ASSERT_EQ_U(st.fn_valid_until, T0 - USEC_PER_DAY);
        ASSERT_EQ(st.condition, DEVICE_FAULT_FN_FULL);
        r = try_sell(s, "a");
        ASSERT_RESULT(&r, ENOSPC, DEVICE_FAULT_FN_FULL);
        drv()->close(s);
        env_teardown(&e);
}

static void test_fn_never_holds_more_than_its_capacity(void) {
        DeviceResult r;
        Env e;
        void *s;

        env_setup(&e);
        e.options.emulator_fn_capacity = 4;
        s = emu_open(&e);
        sell(s, "a");                           /* FD 1 opening, FD 2 */
        ASSERT_OK(close_shift(s, 0).error);     /* FD 3 */

        /* One place left, and the receipt needs two. */
        r = try_sell(s, "b");
        ASSERT_RESULT(&r, ENOSPC, DEVICE_FAULT_FN_FULL);
        ASSERT_TRUE(last_fd(s) <= 4);
        drv()->close(s);
        env_teardown(&e);
}

int main(void) {
        TEST_RUN(test_numbering_is_consecutive_from_one);
        TEST_RUN(test_first_receipt_of_a_closed_shift_first_makes_an_opening_document);
        TEST_RUN(test_numbering_survives_reopen_and_never_repeats);
        TEST_RUN(test_second_instance_on_the_same_file_fails);
        TEST_RUN(test_each_fn_has_its_own_numbering);
        TEST_RUN(test_newer_fiscal_memory_is_refused);
        TEST_RUN(test_version_1_fiscal_memory_migrates_and_its_last_document_is_found);
        TEST_RUN(test_fiscal_sign_is_deterministic_10_digits);
        TEST_RUN(test_qr_format_is_exact_for_each_settlement);
        TEST_RUN(test_document_json_has_the_fiscal_attributes);
        TEST_RUN(test_canonical_receipt_from_the_receipt_module_is_printed);
        TEST_RUN(test_find_finds_a_printed_receipt_and_enoent_for_another);
        TEST_RUN(test_refusals_are_rejected_with_a_message_and_use_no_number);
        TEST_RUN(test_unreadable_receipt_is_rejected_without_a_number);
        TEST_RUN(test_shift_totals_count_by_type_and_payment_form);
        TEST_RUN(test_totals_net_signs_by_settlement);
        TEST_RUN(test_report_x_has_no_side_effects);
        TEST_RUN(test_report_x_when_closed_reports_zero_figures);
        TEST_RUN(test_open_shift_makes_a_document_and_ealready_when_open);
        TEST_RUN(test_close_shift_makes_the_z_report);
        TEST_RUN(test_close_shift_again_is_idempotent_and_never_a_second_z);
        TEST_RUN(test_close_shift_on_a_never_opened_register_is_enoent);
        TEST_RUN(test_next_receipt_after_z_opens_shift_2);
        TEST_RUN(test_latency_is_within_the_configured_range);
        TEST_RUN(test_paper_out_until_cleared);
        TEST_RUN(test_cover_open_until_cleared);
        TEST_RUN(test_counted_fault_hits_that_many_operations);
        TEST_RUN(test_fault_from_options);
        TEST_RUN(test_timeout_before_printing_makes_nothing);
        TEST_RUN(test_timeout_after_printing_makes_the_document_and_answers_late);
        TEST_RUN(test_timeout_after_close_shift_makes_the_z_and_answers_late);
        TEST_RUN(test_interrupt_cuts_waits_short);
        TEST_RUN(test_fn_full_injected_and_at_capacity);
        TEST_RUN(test_fn_expired_by_the_clock_is_fn_full);
        TEST_RUN(test_not_connected_fails_everything);
        TEST_RUN(test_shift_over_24h_needs_a_z_report);
        TEST_RUN(test_injected_shift_expired_ends_with_z_report);
        TEST_RUN(test_rejected_is_injectable_for_receipts);
        TEST_RUN(test_ofd_offline_keeps_documents_unsent_and_blocks_after_30_days);
        TEST_RUN(test_ofd_unsent_age_blocks_at_30_days);
        TEST_RUN(test_fn_validity_is_set_at_first_use_and_moved_by_debug);

        TEST_RUN(test_fn_days_left_negative_expires_the_fn);
        TEST_RUN(test_fn_never_holds_more_than_its_capacity);
        return EXIT_SUCCESS;
}
