/* SPDX-License-Identifier: MIT */
/* The emulated register driven directly through its driver functions, as the worker thread drives it:
 * numbering and its persistence across reopening, fiscal signs, the QR string, shifts and reports, and
 * each fault, natural or injected. The register's clock is faked where shifts age. */

#include <dirent.h>
#include <limits.h>
#include <sqlite3.h>

#include "device-emulator.h"
#include "device.h"
#include "json-util.h"
#include "receipt.h"
#include "tests.h"
#include "time-util.h"

#define FN_NUMBER "9999078900000001"
#define TIMEOUT (200 * USEC_PER_MSEC)
/* 2026-11-29T03:17:26Z */
#define T0 (UINT64_C(1795922246) * USEC_PER_SEC)

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

        *e = (Env) {};
        snprintf(e->dir, sizeof e->dir, "%s/test-device-emulator-XXXXXX", tmp);
        ASSERT_NOT_NULL(mkdtemp(e->dir));
        snprintf(e->path, sizeof e->path, "%s/emulator-fn.db", e->dir);
        e->options = (DeviceOptions) {
                .driver = "emulator",
                .timeout = TIMEOUT,
                .serial = "00000000000012345",
                .fn_number = FN_NUMBER,
                .registration_number = "0000000001000001",
                .inn = "7700000000",
                .emulator_path = e->path,
                .clock = env_clock,
                .clock_userdata = e,
        };
}

static void env_teardown(Env *e) {
        DIR *d = opendir(e->dir);
        struct dirent *de;

        ASSERT_NOT_NULL(d);
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        ASSERT_OK(unlinkat(dirfd(d), de->d_name, 0));
        closedir(d);
        ASSERT_OK(rmdir(e->dir));
}

static const DeviceDriver *drv(void) {
        return &device_emulator_driver;
}

static void *emu_open(Env *e) {
        DeviceFault f = DEVICE_FAULT_NONE;
        void *state = NULL;

        ASSERT_OK(drv()->open(&state, &e->options, &f));
        ASSERT_NOT_NULL(state);
        return state;
}

/* A canonical receipt, as the store hands it to the device. */
static char *canonical(const char *type, const char *amount) {
        _cleanup_(receipt_freep) Receipt *r = NULL;
        _cleanup_free_ char *body = NULL;
        char *text = NULL;

        ASSERT_TRUE(asprintf(&body,
                             "{\"pos_id\":\"POS-1\",\"type\":\"%s\","
                             "\"items\":[{\"name\":\"Frame\",\"price\":%s,"
                             "\"quantity\":1,\"total\":%s,\"vat_rate\":20}],"
                             "\"payments\":[{\"type\":\"cash\",\"amount\":%s}]}",
                             type, amount, amount, amount) >= 0);
        ASSERT_OK(receipt_parse(body, strlen(body), NULL, &r, NULL));
        ASSERT_OK(receipt_canonical(r, &text));
        return text;
}

static int print(void *state, const char *receipt_id, const char *type, const char *amount,
                 DeviceDocument *doc, DeviceFault *fault) {
        _cleanup_free_ char *json = canonical(type, amount);

        *fault = DEVICE_FAULT_NONE;
        *doc = (DeviceDocument) {};
        return drv()->print_receipt(state, receipt_id, json, doc, fault);
}

static void print_ok(void *state, const char *receipt_id, DeviceDocument *doc) {
        DeviceFault f;

        ASSERT_OK(print(state, receipt_id, "sale", "1500.00", doc, &f));
        ASSERT_EQ(f, DEVICE_FAULT_NONE);
}

static uint32_t last_fd(void *state) {
        DeviceFault f = DEVICE_FAULT_NONE;
        DeviceStatus s;

        ASSERT_OK(drv()->status(state, &s, &f));
        return s.last_fiscal_document;
}

static bool is_digits(const char *s, size_t n) {
        if (strlen(s) != n)
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return true;
}

/* ---- numbering ---- */

static void test_numbering_is_consecutive_from_one(void) {
        DeviceDocument doc, last;
        DeviceFault f = DEVICE_FAULT_NONE;
        char id[32];
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);

        ASSERT_ERROR(drv()->last_document(s, &last, &f), ENOENT);
        ASSERT_EQ(f, DEVICE_FAULT_NONE);

        for (unsigned i = 1; i <= 10; i++) {
                snprintf(id, sizeof id, "receipt-%u", i);
                print_ok(s, id, &doc);
                ASSERT_EQ_U(doc.fiscal_document_number, i);
                ASSERT_EQ_U(doc.document_number_in_shift, i);
                ASSERT_EQ_U(doc.shift_number, 1);
                ASSERT_STREQ(doc.receipt_id, id);
                ASSERT_STREQ(doc.fn_number, FN_NUMBER);
                ASSERT_STREQ(doc.serial, "00000000000012345");
                ASSERT_STREQ(doc.registration_number, "0000000001000001");
                ASSERT_STREQ(doc.inn, "7700000000");
                ASSERT_EQ(doc.total, 150000);
                ASSERT_EQ(doc.receipt_type, RECEIPT_TYPE_SALE);
                ASSERT_TRUE(is_digits(doc.fiscal_sign, DEVICE_FISCAL_SIGN_LEN));
        }

        ASSERT_OK(drv()->last_document(s, &last, &f));
        ASSERT_STREQ(last.receipt_id, "receipt-10");
        ASSERT_EQ_U(last.fiscal_document_number, 10);
        ASSERT_STREQ(last.fiscal_sign, doc.fiscal_sign);
        ASSERT_STREQ(last.qr, doc.qr);
        ASSERT_EQ_U(last.datetime, doc.datetime);
        ASSERT_EQ(last_fd(s), 10);

        drv()->close(s);
        env_teardown(&e);
}

static void test_numbering_survives_reopen_and_never_repeats(void) {
        DeviceDocument doc, last;
        DeviceFault f = DEVICE_FAULT_NONE;
        DeviceReport report;
        Env e;
        void *s;

        env_setup(&e);

        s = emu_open(&e);
        print_ok(s, "a", &doc);
        print_ok(s, "b", &doc);
        print_ok(s, "c", &doc);
        ASSERT_EQ_U(doc.fiscal_document_number, 3);
        drv()->close(s);

        /* The open shift and the last document are in the fiscal memory too. */
        s = emu_open(&e);
        ASSERT_OK(drv()->last_document(s, &last, &f));
        ASSERT_STREQ(last.receipt_id, "c");
        ASSERT_EQ_U(last.fiscal_document_number, 3);
        print_ok(s, "d", &doc);
        ASSERT_EQ_U(doc.fiscal_document_number, 4);
        ASSERT_EQ_U(doc.shift_number, 1);
        ASSERT_EQ_U(doc.document_number_in_shift, 4);
        ASSERT_OK(drv()->report_z(s, &report, &f));
        drv()->close(s);

        /* A closed shift stays closed: the next document opens shift 2. */
        s = emu_open(&e);
        print_ok(s, "e", &doc);
        ASSERT_EQ_U(doc.fiscal_document_number, 5);
        ASSERT_EQ_U(doc.shift_number, 2);
        ASSERT_EQ_U(doc.document_number_in_shift, 1);
        drv()->close(s);

        env_teardown(&e);
}

static void test_second_instance_on_the_same_file_fails(void) {
        DeviceFault f = DEVICE_FAULT_NONE;
        void *s, *other = NULL;
        DeviceDocument doc;
        Env e;

        env_setup(&e);
        s = emu_open(&e);
        print_ok(s, "a", &doc);

        /* Two registers sharing one fiscal memory would hand out the same numbers. */
        ASSERT_ERROR(drv()->open(&other, &e.options, &f), EBUSY);
        ASSERT_NULL(other);
        ASSERT_EQ(f, DEVICE_FAULT_ERROR);

        drv()->close(s);
        env_teardown(&e);
}

static void test_each_fn_has_its_own_numbering(void) {
        DeviceDocument doc;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        print_ok(s, "a", &doc);
        print_ok(s, "b", &doc);
        drv()->close(s);

        /* A new FN starts at 1, as a real one does; the pair (FN, FD) never repeats. */
        e.options.fn_number = "9999078900000002";
        s = emu_open(&e);
        print_ok(s, "c", &doc);
        ASSERT_EQ_U(doc.fiscal_document_number, 1);
        ASSERT_STREQ(doc.fn_number, "9999078900000002");
        drv()->close(s);

        e.options.fn_number = FN_NUMBER;
        s = emu_open(&e);
        print_ok(s, "d", &doc);
        ASSERT_EQ_U(doc.fiscal_document_number, 3);
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
        ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);

        ASSERT_ERROR(drv()->open(&state, &e.options, &f), EPROTO);
        ASSERT_EQ(f, DEVICE_FAULT_ERROR);
        env_teardown(&e);
}

/* ---- fiscal sign and QR ---- */

static void test_fiscal_sign_is_deterministic_10_digits(void) {
        char a[DEVICE_FISCAL_SIGN_LEN + 1], b[DEVICE_FISCAL_SIGN_LEN + 1];
        DeviceDocument doc;
        unsigned differ = 0;
        Env e;
        void *s;

        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 17, T0, 150000, RECEIPT_TYPE_SALE, a));
        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 17, T0, 150000, RECEIPT_TYPE_SALE, b));
        ASSERT_STREQ(a, b);
        ASSERT_TRUE(is_digits(a, DEVICE_FISCAL_SIGN_LEN));

        /* Every input is signed: changing any one changes the sign. */
        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 18, T0, 150000, RECEIPT_TYPE_SALE, b));
        ASSERT_FALSE(streq(a, b));
        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 17, T0 + USEC_PER_SEC, 150000, RECEIPT_TYPE_SALE,
                                              b));
        ASSERT_FALSE(streq(a, b));
        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 17, T0, 150001, RECEIPT_TYPE_SALE, b));
        ASSERT_FALSE(streq(a, b));
        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 17, T0, 150000, RECEIPT_TYPE_REFUND, b));
        ASSERT_FALSE(streq(a, b));
        ASSERT_OK(device_emulator_fiscal_sign("9999078900000002", 17, T0, 150000, RECEIPT_TYPE_SALE, b));
        ASSERT_FALSE(streq(a, b));

        /* Always 10 digits, leading zeros kept, and spread over the range. */
        for (uint32_t fd = 1; fd <= 200; fd++) {
                ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, fd, T0, 100, RECEIPT_TYPE_SALE, b));
                ASSERT_TRUE(is_digits(b, DEVICE_FISCAL_SIGN_LEN));
                differ += !streq(a, b);
        }
        ASSERT_EQ(differ, 200);

        /* The register signs what it printed. */
        env_setup(&e);
        e.clock = T0;
        s = emu_open(&e);
        print_ok(s, "a", &doc);
        ASSERT_EQ_U(doc.datetime, T0);
        ASSERT_OK(device_emulator_fiscal_sign(FN_NUMBER, 1, T0, 150000, RECEIPT_TYPE_SALE, b));
        ASSERT_STREQ(doc.fiscal_sign, b);
        drv()->close(s);
        env_teardown(&e);
}

static void test_qr_format_is_exact_for_sale_and_refund(void) {
        char qr[DEVICE_QR_MAX + 1], small[20];
        DeviceDocument doc;
        DeviceFault f;
        Env e;
        void *s;

        ASSERT_OK(device_emulator_format_qr(qr, sizeof qr, T0, 150000, FN_NUMBER, 17, "0123456789",
                                            RECEIPT_TYPE_SALE));
        ASSERT_STREQ(qr, "t=20261129T0317&s=1500.00&fn=9999078900000001&i=17&fp=0123456789&n=1");
        ASSERT_OK(device_emulator_format_qr(qr, sizeof qr, T0, 5, FN_NUMBER, 18, "0000000042",
                                            RECEIPT_TYPE_REFUND));
        ASSERT_STREQ(qr, "t=20261129T0317&s=0.05&fn=9999078900000001&i=18&fp=0000000042&n=2");
        ASSERT_ERROR(device_emulator_format_qr(small, sizeof small, T0, 5, FN_NUMBER, 18, "0000000042",
                                               RECEIPT_TYPE_REFUND),
                     ENOBUFS);

        /* What the register prints, with its clock at T0 (seconds are not in the QR). */
        env_setup(&e);
        e.clock = T0 + 500 * USEC_PER_MSEC;
        s = emu_open(&e);
        print_ok(s, "sale-1", &doc);
        ASSERT_EQ_U(doc.datetime, T0);
        snprintf(qr, sizeof qr, "t=20261129T0317&s=1500.00&fn=9999078900000001&i=1&fp=%s&n=1",
                 doc.fiscal_sign);
        ASSERT_STREQ(doc.qr, qr);

        ASSERT_OK(print(s, "refund-1", "refund", "200.50", &doc, &f));
        ASSERT_EQ(doc.receipt_type, RECEIPT_TYPE_REFUND);
        ASSERT_EQ(doc.total, 20050);
        snprintf(qr, sizeof qr, "t=20261129T0317&s=200.50&fn=9999078900000001&i=2&fp=%s&n=2",
                 doc.fiscal_sign);
        ASSERT_STREQ(doc.qr, qr);
        drv()->close(s);
        env_teardown(&e);
}

static void test_document_json_has_the_fiscal_attributes(void) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        DeviceDocument doc;
        json_object *v;
        Env e;
        void *s;

        env_setup(&e);
        e.clock = T0;
        s = emu_open(&e);
        print_ok(s, "receipt-1", &doc);
        drv()->close(s);
        env_teardown(&e);

        ASSERT_OK(device_document_to_json(&doc, &o));
        ASSERT_TRUE(json_object_object_get_ex(o, "fiscal_document_number", &v));
        ASSERT_EQ(json_object_get_int64(v), 1);
        ASSERT_TRUE(json_object_object_get_ex(o, "fiscal_sign", &v));
        ASSERT_STREQ(json_object_get_string(v), doc.fiscal_sign);
        ASSERT_TRUE(json_object_object_get_ex(o, "fn_number", &v));
        ASSERT_STREQ(json_object_get_string(v), FN_NUMBER);
        ASSERT_TRUE(json_object_object_get_ex(o, "shift_number", &v));
        ASSERT_EQ(json_object_get_int64(v), 1);
        ASSERT_TRUE(json_object_object_get_ex(o, "document_number_in_shift", &v));
        ASSERT_EQ(json_object_get_int64(v), 1);
        ASSERT_TRUE(json_object_object_get_ex(o, "registration_number", &v));
        ASSERT_STREQ(json_object_get_string(v), "0000000001000001");
        ASSERT_TRUE(json_object_object_get_ex(o, "inn", &v));
        ASSERT_STREQ(json_object_get_string(v), "7700000000");
        ASSERT_TRUE(json_object_object_get_ex(o, "serial", &v));
        ASSERT_STREQ(json_object_get_string(v), "00000000000012345");
        ASSERT_TRUE(json_object_object_get_ex(o, "datetime", &v));
        ASSERT_STREQ(json_object_get_string(v), "2026-11-29T03:17:26.000Z");
        ASSERT_TRUE(json_object_object_get_ex(o, "total", &v));
        ASSERT_TRUE(json_object_is_type(v, json_type_string));
        ASSERT_STREQ(json_object_get_string(v), "1500.00");
        ASSERT_TRUE(json_object_object_get_ex(o, "receipt_type", &v));
        ASSERT_STREQ(json_object_get_string(v), "sale");
        ASSERT_TRUE(json_object_object_get_ex(o, "qr", &v));
        ASSERT_STREQ(json_object_get_string(v), doc.qr);
        ASSERT_TRUE(json_object_object_get_ex(o, "receipt_id", &v));
        ASSERT_STREQ(json_object_get_string(v), "receipt-1");
}

static void test_latency_is_within_the_configured_range(void) {
        DeviceDocument doc;
        Env e;
        void *s;

        env_setup(&e);
        e.options.print_latency_min = 30 * USEC_PER_MSEC;
        e.options.print_latency_max = 60 * USEC_PER_MSEC;
        s = emu_open(&e);
        for (unsigned i = 0; i < 5; i++) {
                usec_t t = now(CLOCK_MONOTONIC), elapsed;

                print_ok(s, "r", &doc);
                elapsed = now(CLOCK_MONOTONIC) - t;
                ASSERT_TRUE(elapsed >= 30 * USEC_PER_MSEC);
                ASSERT_TRUE(elapsed < 60 * USEC_PER_MSEC + 500 * USEC_PER_MSEC); /* plus an fsync or two */
        }
        drv()->close(s);
        env_teardown(&e);
}

/* ---- rejected requests ---- */

static void test_unreadable_receipt_is_rejected_without_a_number(void) {
        DeviceFault f = DEVICE_FAULT_NONE;
        char long_id[DEVICE_RECEIPT_ID_MAX + 2];
        DeviceDocument doc;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);

        ASSERT_ERROR(drv()->print_receipt(s, "a", "not json", &doc, &f), EINVAL);
        ASSERT_EQ(f, DEVICE_FAULT_REJECTED);
        f = DEVICE_FAULT_NONE;
        ASSERT_ERROR(drv()->print_receipt(s, "a", "{\"type\":\"barter\",\"total\":\"1.00\"}", &doc, &f),
                     EINVAL);
        ASSERT_EQ(f, DEVICE_FAULT_REJECTED);
        f = DEVICE_FAULT_NONE;
        ASSERT_ERROR(drv()->print_receipt(s, "a", "{\"type\":\"sale\",\"total\":\"1.001\"}", &doc, &f),
                     EINVAL);
        ASSERT_EQ(f, DEVICE_FAULT_REJECTED);
        memset(long_id, 'x', sizeof long_id - 1);
        long_id[sizeof long_id - 1] = 0;
        f = DEVICE_FAULT_NONE;
        ASSERT_ERROR(drv()->print_receipt(s, long_id, "{\"type\":\"sale\",\"total\":\"1.00\"}", &doc, &f),
                     EINVAL);
        ASSERT_EQ(f, DEVICE_FAULT_REJECTED);
        ASSERT_EQ(last_fd(s), 0);

        print_ok(s, "b", &doc);
        ASSERT_EQ_U(doc.fiscal_document_number, 1);
        drv()->close(s);
        env_teardown(&e);
}

/* ---- faults ---- */

static void test_paper_out_until_cleared(void) {
        DeviceFault f = DEVICE_FAULT_NONE;
        DeviceDocument doc, last;
        DeviceReport report;
        DeviceStatus status;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        print_ok(s, "a", &doc);

        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_PAPER_OUT, 0));
        for (unsigned i = 0; i < 3; i++) {
                ASSERT_ERROR(print(s, "b", "sale", "10.00", &doc, &f), ENOMEDIUM);
                ASSERT_EQ(f, DEVICE_FAULT_PAPER_OUT);
        }
        f = DEVICE_FAULT_NONE;
        ASSERT_ERROR(drv()->report_x(s, &report, &f), ENOMEDIUM);
        ASSERT_EQ(f, DEVICE_FAULT_PAPER_OUT);

        /* Queries need no paper: the status shows the condition, the last document is still there. */
        ASSERT_OK(drv()->status(s, &status, &f));
        ASSERT_EQ(status.condition, DEVICE_FAULT_PAPER_OUT);
        ASSERT_OK(drv()->last_document(s, &last, &f));
        ASSERT_STREQ(last.receipt_id, "a");

        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_NONE, 0));
        ASSERT_OK(drv()->status(s, &status, &f));
        ASSERT_EQ(status.condition, DEVICE_FAULT_NONE);
        print_ok(s, "b", &doc);
        ASSERT_EQ_U(doc.fiscal_document_number, 2); /* the failed attempts used no number */
        drv()->close(s);
        env_teardown(&e);
}

static void test_counted_fault_hits_that_many_documents(void) {
        DeviceFault f = DEVICE_FAULT_NONE;
        DeviceDocument doc;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_PAPER_OUT, 2));
        ASSERT_ERROR(print(s, "a", "sale", "10.00", &doc, &f), ENOMEDIUM);
        ASSERT_ERROR(print(s, "a", "sale", "10.00", &doc, &f), ENOMEDIUM);
        print_ok(s, "a", &doc);
        ASSERT_EQ_U(doc.fiscal_document_number, 1);

        ASSERT_ERROR(drv()->inject_fault(s, DEVICE_FAULT_REJECTED, 1), EINVAL);
        drv()->close(s);
        env_teardown(&e);
}

static void test_fault_from_options(void) {
        DeviceFault f = DEVICE_FAULT_NONE;
        DeviceDocument doc;
        Env e;
        void *s;

        env_setup(&e);
        e.options.fault = DEVICE_FAULT_FN_FULL;
        e.options.fault_count = 1;
        s = emu_open(&e);
        ASSERT_ERROR(print(s, "a", "sale", "10.00", &doc, &f), ENOSPC);
        ASSERT_EQ(f, DEVICE_FAULT_FN_FULL);
        print_ok(s, "a", &doc);
        drv()->close(s);
        env_teardown(&e);
}

static void test_timeout_before_printing_makes_nothing(void) {
        DeviceFault f = DEVICE_FAULT_NONE;
        DeviceDocument doc;
        usec_t t, elapsed;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_TIMEOUT_BEFORE, 1));

        t = now(CLOCK_MONOTONIC);
        ASSERT_ERROR(print(s, "a", "sale", "10.00", &doc, &f), ETIMEDOUT);
        elapsed = now(CLOCK_MONOTONIC) - t;
        ASSERT_EQ(f, DEVICE_FAULT_TIMEOUT_BEFORE);
        /* Within the operation's timeout, so the front end hears it before its own timer fires. */
        ASSERT_TRUE(elapsed >= TIMEOUT / 2);
        ASSERT_TRUE(elapsed < TIMEOUT);
        ASSERT_EQ(last_fd(s), 0);

        print_ok(s, "a", &doc);
        ASSERT_EQ_U(doc.fiscal_document_number, 1);
        drv()->close(s);
        env_teardown(&e);
}

static void test_timeout_after_printing_makes_the_document_and_answers_late(void) {
        DeviceFault f = DEVICE_FAULT_NONE;
        DeviceDocument doc, last;
        usec_t t, elapsed;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_TIMEOUT_UNKNOWN, 1));

        t = now(CLOCK_MONOTONIC);
        ASSERT_OK(print(s, "late-1", "sale", "10.00", &doc, &f));
        elapsed = now(CLOCK_MONOTONIC) - t;
        ASSERT_TRUE(elapsed > TIMEOUT);
        ASSERT_EQ_U(doc.fiscal_document_number, 1);
        ASSERT_STREQ(doc.receipt_id, "late-1");

        ASSERT_OK(drv()->last_document(s, &last, &f));
        ASSERT_STREQ(last.receipt_id, "late-1");
        ASSERT_STREQ(last.fiscal_sign, doc.fiscal_sign);

        /* Used up: the next one answers in time. */
        t = now(CLOCK_MONOTONIC);
        print_ok(s, "b", &doc);
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - t < TIMEOUT);
        drv()->close(s);
        env_teardown(&e);
}

static void test_interrupt_cuts_waits_short(void) {
        DeviceFault f = DEVICE_FAULT_NONE;
        DeviceDocument doc;
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
        ASSERT_OK(print(s, "a", "sale", "10.00", &doc, &f));
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - t < USEC_PER_SEC);
        ASSERT_EQ_U(doc.fiscal_document_number, 1);
        drv()->close(s);
        env_teardown(&e);
}

static void test_fn_full_injected_and_at_capacity(void) {
        DeviceFault f = DEVICE_FAULT_NONE;
        DeviceDocument doc;
        DeviceStatus status;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_FN_FULL, 0));
        ASSERT_ERROR(print(s, "a", "sale", "10.00", &doc, &f), ENOSPC);
        ASSERT_EQ(f, DEVICE_FAULT_FN_FULL);
        ASSERT_OK(drv()->status(s, &status, &f));
        ASSERT_EQ(status.condition, DEVICE_FAULT_FN_FULL);
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_NONE, 0));
        drv()->close(s);

        /* A fiscal memory that holds three documents. */
        e.options.emulator_fn_capacity = 3;
        s = emu_open(&e);
        print_ok(s, "a", &doc);
        print_ok(s, "b", &doc);
        ASSERT_OK(drv()->status(s, &status, &f));
        ASSERT_EQ(status.condition, DEVICE_FAULT_NONE);
        print_ok(s, "c", &doc);
        ASSERT_OK(drv()->status(s, &status, &f));
        ASSERT_EQ(status.condition, DEVICE_FAULT_FN_FULL);
        ASSERT_ERROR(print(s, "d", "sale", "10.00", &doc, &f), ENOSPC);
        ASSERT_EQ(f, DEVICE_FAULT_FN_FULL);
        ASSERT_EQ(last_fd(s), 3);
        drv()->close(s);
        env_teardown(&e);
}

static void test_not_connected_fails_everything(void) {
        DeviceFault f = DEVICE_FAULT_NONE;
        DeviceDocument doc;
        DeviceStatus status;
        DeviceReport report;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_NOT_CONNECTED, 0));
        ASSERT_ERROR(print(s, "a", "sale", "10.00", &doc, &f), ENOTCONN);
        ASSERT_EQ(f, DEVICE_FAULT_NOT_CONNECTED);
        f = DEVICE_FAULT_NONE;
        ASSERT_ERROR(drv()->status(s, &status, &f), ENOTCONN);
        ASSERT_EQ(f, DEVICE_FAULT_NOT_CONNECTED);
        f = DEVICE_FAULT_NONE;
        ASSERT_ERROR(drv()->last_document(s, &doc, &f), ENOTCONN);
        ASSERT_EQ(f, DEVICE_FAULT_NOT_CONNECTED);
        f = DEVICE_FAULT_NONE;
        ASSERT_ERROR(drv()->report_z(s, &report, &f), ENOTCONN);
        ASSERT_EQ(f, DEVICE_FAULT_NOT_CONNECTED);
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_NONE, 0));
        print_ok(s, "a", &doc);
        drv()->close(s);
        env_teardown(&e);
}

static void test_shift_over_24h_needs_a_z_report(void) {
        DeviceFault f = DEVICE_FAULT_NONE;
        DeviceDocument doc;
        DeviceStatus status;
        DeviceReport report;
        Env e;
        void *s;

        env_setup(&e);
        e.clock = T0;
        s = emu_open(&e);
        print_ok(s, "a", &doc);
        ASSERT_OK(drv()->status(s, &status, &f));
        ASSERT_TRUE(status.shift_open);
        ASSERT_EQ_U(status.shift_number, 1);
        ASSERT_EQ_U(status.shift_open_usec, T0);

        /* Just under 24 h: still fine. */
        e.clock = T0 + 24 * USEC_PER_HOUR - USEC_PER_SEC;
        print_ok(s, "b", &doc);
        ASSERT_EQ_U(doc.shift_number, 1);

        e.clock = T0 + 24 * USEC_PER_HOUR;
        ASSERT_ERROR(print(s, "c", "sale", "10.00", &doc, &f), ESTALE);
        ASSERT_EQ(f, DEVICE_FAULT_SHIFT_EXPIRED);
        ASSERT_OK(drv()->status(s, &status, &f));
        ASSERT_EQ(status.condition, DEVICE_FAULT_SHIFT_EXPIRED);
        ASSERT_EQ(last_fd(s), 2);

        ASSERT_OK(drv()->report_z(s, &report, &f));
        ASSERT_TRUE(report.closed);
        ASSERT_EQ_U(report.shift_number, 1);
        ASSERT_EQ_U(report.n_receipts, 2);
        ASSERT_OK(drv()->status(s, &status, &f));
        ASSERT_EQ(status.condition, DEVICE_FAULT_NONE);
        ASSERT_FALSE(status.shift_open);
        ASSERT_EQ_U(status.shift_open_usec, 0);

        print_ok(s, "c", &doc);
        ASSERT_EQ_U(doc.shift_number, 2);
        ASSERT_EQ_U(doc.document_number_in_shift, 1);
        ASSERT_EQ_U(doc.fiscal_document_number, 3);
        ASSERT_OK(drv()->status(s, &status, &f));
        ASSERT_EQ_U(status.shift_open_usec, T0 + 24 * USEC_PER_HOUR);
        drv()->close(s);
        env_teardown(&e);
}

static void test_injected_shift_expired_ends_with_z_report(void) {
        DeviceFault f = DEVICE_FAULT_NONE;
        DeviceDocument doc;
        DeviceReport report;
        Env e;
        void *s;

        env_setup(&e);
        s = emu_open(&e);
        print_ok(s, "a", &doc);
        ASSERT_OK(drv()->inject_fault(s, DEVICE_FAULT_SHIFT_EXPIRED, 0));
        ASSERT_ERROR(print(s, "b", "sale", "10.00", &doc, &f), ESTALE);
        ASSERT_ERROR(print(s, "b", "sale", "10.00", &doc, &f), ESTALE);
        ASSERT_OK(drv()->report_z(s, &report, &f));
        print_ok(s, "b", &doc);
        ASSERT_EQ_U(doc.shift_number, 2);
        drv()->close(s);
        env_teardown(&e);
}

static void test_reports_x_has_no_side_effects_z_opens_a_new_shift(void) {
        DeviceFault f = DEVICE_FAULT_NONE;
        DeviceReport x1, x2, z;
        DeviceDocument doc;
        DeviceStatus status;
        Env e;
        void *s;

        env_setup(&e);
        e.clock = T0;
        s = emu_open(&e);

        ASSERT_OK(drv()->report_x(s, &x1, &f));
        ASSERT_FALSE(x1.shift_open);
        ASSERT_EQ_U(x1.shift_number, 0);
        ASSERT_ERROR(drv()->report_z(s, &z, &f), EALREADY);
        ASSERT_EQ(f, DEVICE_FAULT_REJECTED);

        print_ok(s, "a", &doc);
        ASSERT_OK(print(s, "b", "refund", "200.00", &doc, &f));
        ASSERT_OK(print(s, "c", "sale", "0.50", &doc, &f));

        ASSERT_OK(drv()->report_x(s, &x1, &f));
        ASSERT_OK(drv()->report_x(s, &x2, &f));
        ASSERT_EQ(x1.shift_open, x2.shift_open);
        ASSERT_EQ_U(x1.shift_number, x2.shift_number);
        ASSERT_EQ_U(x1.n_receipts, x2.n_receipts);
        ASSERT_EQ(x1.sales_total, x2.sales_total);
        ASSERT_EQ(x1.refunds_total, x2.refunds_total);
        ASSERT_EQ_U(x1.last_fiscal_document, x2.last_fiscal_document);
        ASSERT_TRUE(x1.shift_open);
        ASSERT_FALSE(x1.closed);
        ASSERT_EQ_U(x1.shift_number, 1);
        ASSERT_EQ_U(x1.shift_open_usec, T0);
        ASSERT_EQ_U(x1.n_receipts, 3);
        ASSERT_EQ(x1.sales_total, 150050);
        ASSERT_EQ(x1.refunds_total, 20000);
        ASSERT_EQ_U(x1.last_fiscal_document, 3);

        /* X left the shift as it was: the next receipt is the fourth of shift 1. */
        print_ok(s, "d", &doc);
        ASSERT_EQ_U(doc.shift_number, 1);
        ASSERT_EQ_U(doc.document_number_in_shift, 4);

        ASSERT_OK(drv()->report_z(s, &z, &f));
        ASSERT_TRUE(z.closed);
        ASSERT_EQ_U(z.shift_number, 1);
        ASSERT_EQ_U(z.n_receipts, 4);
        ASSERT_EQ(z.sales_total, 300050);
        ASSERT_EQ(z.refunds_total, 20000);
        ASSERT_OK(drv()->status(s, &status, &f));
        ASSERT_FALSE(status.shift_open);
        ASSERT_EQ_U(status.shift_number, 1);
        ASSERT_ERROR(drv()->report_z(s, &z, &f), EALREADY);

        e.clock = T0 + USEC_PER_HOUR;
        print_ok(s, "e", &doc);
        ASSERT_EQ_U(doc.shift_number, 2);
        ASSERT_EQ_U(doc.document_number_in_shift, 1);
        ASSERT_EQ_U(doc.fiscal_document_number, 5);
        ASSERT_OK(drv()->report_x(s, &x1, &f));
        ASSERT_EQ_U(x1.n_receipts, 1);
        ASSERT_EQ(x1.sales_total, 150000);
        ASSERT_EQ(x1.refunds_total, 0);
        ASSERT_EQ_U(x1.shift_open_usec, T0 + USEC_PER_HOUR);
        drv()->close(s);
        env_teardown(&e);
}

int main(void) {
        TEST_RUN(test_numbering_is_consecutive_from_one);
        TEST_RUN(test_numbering_survives_reopen_and_never_repeats);
        TEST_RUN(test_second_instance_on_the_same_file_fails);
        TEST_RUN(test_each_fn_has_its_own_numbering);
        TEST_RUN(test_newer_fiscal_memory_is_refused);
        TEST_RUN(test_fiscal_sign_is_deterministic_10_digits);
        TEST_RUN(test_qr_format_is_exact_for_sale_and_refund);
        TEST_RUN(test_document_json_has_the_fiscal_attributes);
        TEST_RUN(test_latency_is_within_the_configured_range);
        TEST_RUN(test_unreadable_receipt_is_rejected_without_a_number);
        TEST_RUN(test_paper_out_until_cleared);
        TEST_RUN(test_counted_fault_hits_that_many_documents);
        TEST_RUN(test_fault_from_options);
        TEST_RUN(test_timeout_before_printing_makes_nothing);
        TEST_RUN(test_timeout_after_printing_makes_the_document_and_answers_late);
        TEST_RUN(test_interrupt_cuts_waits_short);
        TEST_RUN(test_fn_full_injected_and_at_capacity);
        TEST_RUN(test_not_connected_fails_everything);
        TEST_RUN(test_shift_over_24h_needs_a_z_report);
        TEST_RUN(test_injected_shift_expired_ends_with_z_report);
        TEST_RUN(test_reports_x_has_no_side_effects_z_opens_a_new_shift);
        return 0;
}
