/* SPDX-License-Identifier: MIT */
/* The fiscal day: AutoCloseShift= as text, the report's JSON for the ERP built from a report made by hand,
 * and, on a real sd-event loop with a real Store, the emulator behind a real Device and a real Printer: X
 * reports, opening and closing the shift, the early refusal of sales, the health verdicts on the shift, the
 * fiscal drive and the print queue, and closing on schedule (24h and HH:MM). */

#include <limits.h>
#include <sqlite3.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "device.h"
#include "fiscal-day.h"
#include "json-util.h"
#include "money.h"
#include "printer.h"
#include "store.h"
#include "test-util.h"
#include "tests.h"
#include "time-util.h"

typedef struct Env {
        char dir[PATH_MAX / 2];
        char db_path[PATH_MAX];
        char fn_path[PATH_MAX];
        sd_event *event;
        Store *store;
        Device *device;
        Printer *printer;
        FiscalDay *fiscal_day;
        unsigned n_keys;
        unsigned n_changes;
} Env;

/* A receipt in the store, and what its waiter heard. */
typedef struct Slip {
        char id[STORE_RECEIPT_ID_MAX];
        char json[512];
        unsigned n_heard;
        char status[32];
} Slip;

/* What a report request was answered. */
typedef struct Answer {
        unsigned n;
        DeviceResult r;
} Answer;

/* ---- the environment ---- */

#define RUN_UNTIL_WITHIN(e, cond, usec)                                                                 \
        do {                                                                                            \
                usec_t _deadline_ = now(CLOCK_MONOTONIC) + (usec);                                      \
                while (!(cond)) {                                                                       \
                        if (now(CLOCK_MONOTONIC) >= _deadline_) {                                       \
                                fprintf(stderr, "%s:%d: gave up waiting for %s\n", __FILE__, __LINE__,  \
                                        #cond);                                                         \
                                exit(EXIT_FAILURE);                                                     \
                        }                                                                               \
                        ASSERT_OK(sd_event_run((e)->event, 100 * USEC_PER_MSEC));                       \
                }                                                                                       \
        } while (0)

#define RUN_UNTIL(e, cond) RUN_UNTIL_WITHIN(e, cond, 30 * USEC_PER_SEC)

static void run_for(Env *e, usec_t usec) {
        usec_t deadline = now(CLOCK_MONOTONIC) + usec, n;

        while ((n = now(CLOCK_MONOTONIC)) < deadline)
                ASSERT_OK(sd_event_run(e->event, deadline - n));
}

static bool env_quiet(Env *e) {
        return printer_is_idle(e->printer) && printer_get_stats(e->printer)->queued == 0 &&
               device_is_idle(e->device) && store_is_idle(e->store);
}

static void on_change(FiscalDay *f, void *userdata) {
        Env *e = userdata;

        e->n_changes++;
}

/* A store, the register (its first status known unless `wait_open` is false), a printer that has started
 * and the fiscal day on top. */
static void env_setup_full(Env *e, const FiscalDayOptions *o, bool wait_open) {
        const char *tmp = getenv("TMPDIR") ?: "/tmp";

        *e = (Env) {};
        snprintf(e->dir, sizeof e->dir, "%s/test-fiscal-day-XXXXXX", tmp);
        ASSERT_NOT_NULL(mkdtemp(e->dir));
        snprintf(e->db_path, sizeof e->db_path, "%s/buffer.db", e->dir);
        snprintf(e->fn_path, sizeof e->fn_path, "%s/emulator-fn.db", e->dir);
        ASSERT_OK(sd_event_new(&e->event));
        ASSERT_OK(store_open(&e->store, e->event, e->db_path, &(StoreOptions) {}));
        ASSERT_OK(device_new(&e->device, &(DeviceContext) { .event = e->event },
                             &(DeviceOptions) {
                                     .driver = "emulator",
                                     .timeout = 5 * USEC_PER_SEC,
                                     .emulator_path = e->fn_path,
                                     .print_latency_min = 0,
                                     .print_latency_max = 2 * USEC_PER_MSEC,
                             }));
        ASSERT_OK(printer_new(&e->printer, e->event, e->store, e->device, NULL));
        ASSERT_OK(fiscal_day_new(&e->fiscal_day, e->event, e->device, e->printer,
                                 o ?: &(FiscalDayOptions) {}));
        fiscal_day_set_change_callback(e->fiscal_day, on_change, e);
        if (!wait_open)
                return;
        ASSERT_OK(printer_start(e->printer));
        RUN_UNTIL(e, device_get_status(e->device) && env_quiet(e));
}

static void env_setup_with(Env *e, const FiscalDayOptions *o) {
        env_setup_full(e, o, true);
}

static void env_setup(Env *e) {
        env_setup_with(e, NULL);
}

/* As the manager tears down: stop, the register, the store, then the printer and the fiscal day. */
static void env_close(Env *e) {
        RUN_UNTIL(e, env_quiet(e));
        fiscal_day_stop(e->fiscal_day);
        printer_stop(e->printer);
        e->device = device_free(e->device);
        e->store = store_free(e->store);
        e->printer = printer_free(e->printer);
        e->fiscal_day = fiscal_day_free(e->fiscal_day);
}

static void env_teardown(Env *e) {
        if (e->device)
                env_close(e);
        e->event = sd_event_unref(e->event);
        test_rm_rf(e->dir);
}

/* The first column of the first row of a query on the fiscal memory, once the register is closed (it holds
 * the file exclusively). */
static int64_t journal_int(Env *e, const char *sql) {
        sqlite3 *db = NULL;
        sqlite3_stmt *stmt = NULL;
        int64_t v;

        ASSERT_NULL(e->device);
        ASSERT_EQ(sqlite3_open_v2(e->fn_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
        v = sqlite3_column_int64(stmt, 0);
        sqlite3_finalize(stmt);
        sqlite3_close(db);
        return v;
}

/* ---- receipts and the register ---- */

static void on_submitted(Store *s, int error, StoreSubmitOutcome outcome, const StoreReceipt *r,
                         void *userdata) {
        Slip *x = userdata;

        ASSERT_OK(error);
        ASSERT_EQ(outcome, STORE_SUBMIT_CREATED);
        snprintf(x->id, sizeof x->id, "%s", r->id);
}

static void on_waiter(Printer *p, const char *receipt_id, ReceiptState state, const char *fiscal_json,
                      const char *reason, void *userdata) {
        Slip *x = userdata;

        x->n_heard++;
        snprintf(x->status, sizeof x->status, "%s", receipt_state_to_string(state));
}

/* A receipt of `type` for `total`, paid as `payments` (a JSON array) with `change` given back, stored (not
 * queued). Money as decimal text. */
static void slip_new(Env *e, Slip *x, const char *type, const char *total, const char *payments,
                     const char *change) {
        char key[32];
        int64_t kopecks;

        *x = (Slip) {};
        ASSERT_OK(money_parse_decimal(total, 2, &kopecks));
        snprintf(x->json, sizeof x->json,
                 "{\"pos_id\":\"POS-1\",\"type\":\"%s\",\"taxation\":\"osn\",\"items\":[{\"name\":\"Lens\","
                 "\"price\":\"%s\",\"quantity\":\"1.000\",\"total\":\"%s\",\"vat\":\"vat22\"}],"
                 "\"payments\":%s,\"total\":\"%s\"%s%s%s}",
                 type, total, total, payments, total, change ? ",\"change\":\"" : "", strempty(change),
                 change ? "\"" : "");
        snprintf(key, sizeof key, "key-%u", ++e->n_keys);
        ASSERT_OK(store_submit_receipt(e->store,
                                       &(StoreReceiptNew) { .idempotency_key = key,
                                                            .request_hash = key,
                                                            .pos_id = "POS-1",
                                                            .type = type,
                                                            .total_kopecks = kopecks,
                                                            .receipt_data = x->json },
                                       on_submitted, x));
        RUN_UNTIL(e, x->id[0]);
}

static void slip_queue(Env *e, Slip *x) {
        ASSERT_OK(printer_enqueue(e->printer, x->id, x->json, on_waiter, x));
}

/* The same, queued for the printer. */
static void slip_enqueue(Env *e, Slip *x, const char *type, const char *total, const char *payments,
                         const char *change) {
        slip_new(e, x, type, total, payments, change);
        slip_queue(e, x);
}

static void sell_by_card(Env *e, Slip *x, const char *total) {
        char payments[128];

        snprintf(payments, sizeof payments, "[{\"type\":\"card\",\"amount\":\"%s\"}]", total);
        slip_enqueue(e, x, "sale", total, payments, NULL);
}

static void print_all(Env *e, Slip *last) {
        RUN_UNTIL(e, last->n_heard > 0 && env_quiet(e));
        ASSERT_STREQ(last->status, "printed");
}

typedef struct DeviceDone {
        bool done;
        DeviceResult r;
} DeviceDone;

static void on_device(Device *d, const DeviceResult *result, void *userdata) {
        DeviceDone *x = userdata;

        x->done = true;
        x->r = *result;
}

/* The emulator's test hooks; the status it answers with is the device's, and the change is told. */
static void device_debug(Env *e, const char *settings) {
        DeviceDone x = {};

        ASSERT_OK(device_submit(e->device,
                                &(DeviceRequest) { .op = DEVICE_OP_DEBUG, .receipt_json = settings },
                                on_device, &x));
        RUN_UNTIL(e, x.done);
        ASSERT_OK(x.r.error);
        ASSERT_OK(sd_event_run(e->event, 0));
}

static void on_answer(FiscalDay *f, const DeviceResult *result, void *userdata) {
        Answer *a = userdata;

        a->n++;
        a->r = *result;
}

static void set_auto_close(Env *e, AutoCloseMode mode, unsigned minute_of_day) {
        FiscalDayOptions o = { .auto_close = { .mode = mode, .minute_of_day = minute_of_day } };

        ASSERT_OK(fiscal_day_set_options(e->fiscal_day, &o));
}

/* The verdict on a component, its detail into detail. */
static FiscalDayHealth health(Env *e, const char *component, uint64_t print_rejected,
                              char detail[static 512]) {
        return fiscal_day_health(e->fiscal_day, component, print_rejected, detail, 512);
}

static void open_shift(Env *e) {
        Answer a = {};

        ASSERT_OK(fiscal_day_open_shift(e->fiscal_day, NULL, NULL, on_answer, &a));
        RUN_UNTIL(e, a.n > 0 && env_quiet(e));
        ASSERT_OK(a.r.error);
        ASSERT_TRUE(device_get_shift_open(e->device));
}

/* ---- JSON helpers ---- */

static json_object *json_get(json_object *o, const char *key) {
        json_object *v = NULL;

        if (!json_object_object_get_ex(o, key, &v)) {
                fprintf(stderr, "missing key \"%s\" in %s\n", key, json_object_to_json_string(o));
                ASSERT_TRUE(false);
        }
        return v;
}

static bool json_has(json_object *o, const char *key) {
        return json_object_object_get_ex(o, key, NULL);
}

static const char *json_string(json_object *o, const char *key) {
        json_object *v = json_get(o, key);

        ASSERT_TRUE(json_object_is_type(v, json_type_string));
        return json_object_get_string(v);
}

static int64_t json_integer(json_object *o, const char *key) {
        json_object *v = json_get(o, key);

        ASSERT_TRUE(json_object_is_type(v, json_type_int));
        return json_object_get_int64(v);
}

static bool json_boolean(json_object *o, const char *key) {
        json_object *v = json_get(o, key);

        ASSERT_TRUE(json_object_is_type(v, json_type_boolean));
        return json_object_get_boolean(v);
}

/* The camelCase key and its snake_case twin hold the same value. */
static void assert_twins(json_object *o, const char *camel, const char *snake) {
        ASSERT_TRUE(json_object_equal(json_get(o, camel), json_get(o, snake)));
}

/* ---- AutoCloseShift= ---- */

static void assert_auto_close(const char *text, AutoCloseMode mode, unsigned minute, const char *written) {
        AutoClose a = { .mode = _AUTO_CLOSE_MAX, .minute_of_day = 9999 };
        char buf[8];

        ASSERT_OK(auto_close_from_string(text, &a));
        ASSERT_EQ(a.mode, mode);
        if (mode == AUTO_CLOSE_DAILY)
                ASSERT_EQ_U(a.minute_of_day, minute);
        ASSERT_STREQ(auto_close_to_string(&a, buf), written);
}

static void test_auto_close_accepts_off_24h_and_times_and_writes_them_back(void) {
        assert_auto_close("off", AUTO_CLOSE_OFF, 0, "off");
        assert_auto_close("", AUTO_CLOSE_OFF, 0, "off");
        assert_auto_close("24h", AUTO_CLOSE_LIMIT, 0, "24h");
        assert_auto_close("00:00", AUTO_CLOSE_DAILY, 0, "00:00");
        assert_auto_close("23:59", AUTO_CLOSE_DAILY, 23 * 60 + 59, "23:59");
        assert_auto_close("23:55", AUTO_CLOSE_DAILY, 23 * 60 + 55, "23:55");
        assert_auto_close("07:05", AUTO_CLOSE_DAILY, 7 * 60 + 5, "07:05");
        assert_auto_close("12:00", AUTO_CLOSE_DAILY, 12 * 60, "12:00");
}

static void test_auto_close_refuses_what_is_not_off_24h_or_hh_mm(void) {
        static const char *const bad[] = {
                "24:00", "23:60", "99:99", "7:5", "7:05", "07:5", "12:3x", "1x:30", "12:30x", "12:300",
                "1230", "12-30", "12.30", "12:30:00", "::", "ab:cd", "on", "yes", "24", "24H", "25h", "0h",
                "off ", "OFF", "-1:00", "12:-5",
        };
        AutoClose a = { .mode = AUTO_CLOSE_LIMIT };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                if (auto_close_from_string(bad[i], &a) != -EINVAL) {
                        fprintf(stderr, "\"%s\" was accepted\n", bad[i]);
                        ASSERT_TRUE(false);
                }
                ASSERT_EQ(a.mode, AUTO_CLOSE_LIMIT); /* untouched */
        }
        ASSERT_ERROR(auto_close_from_string(NULL, &a), EINVAL);
}

/* A sign or a blank inside the digits passes sscanf("%2u:%2u"): " 1:05", "+1:05", "01: 5" and "01:+5" are
 * taken as 01:05 instead of being refused as the documented HH:MM. */
static void test_auto_close_refuses_signs_and_blanks_in_the_time(void) {
        static const char *const bad[] = { " 1:05", "+1:05", "01: 5", "01:+5", "+0:+0" };
        AutoClose a;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                if (auto_close_from_string(bad[i], &a) != -EINVAL) {
                        fprintf(stderr, "\"%s\" was accepted\n", bad[i]);
                        ASSERT_TRUE(false);
                }
        }
}

/* ---- the report's JSON ---- */

#define T_REPORT (UINT64_C(1773480413) * USEC_PER_SEC)         /* 2026-03-14T09:26:53Z */
#define T_OPENED (UINT64_C(1773435605) * USEC_PER_SEC)         /* 2026-03-13T21:00:05Z */

/* A shift with every kind of receipt: sales paid by cash (net of the change given), card and an advance
 * offset, a return of a sale, a purchase, a return of a purchase and a correction of a sale. */
static DeviceReport report_by_hand(DeviceReportType type) {
        DeviceReport r = {
                .type = type,
                .shift_open = true,
                .shift_number = 42,
                .shift_open_usec = T_OPENED,
                .datetime = T_REPORT,
                .last_fiscal_document = 1234,
                .ofd = { .unsent = 3, .first_unsent = 1232, .first_unsent_usec = T_REPORT },
        };
        DeviceTypeTotals *t = r.totals.by_type;

        t[RECEIPT_TYPE_SALE] = (DeviceTypeTotals) {
                .count = 3,
                .total = 1234567,
                .payments = { [DEVICE_PAYMENT_CASH] = 300001, [DEVICE_PAYMENT_ELECTRONIC] = 900000,
                              [DEVICE_PAYMENT_PREPAYMENT] = 34566 },
        };
        t[RECEIPT_TYPE_REFUND] = (DeviceTypeTotals) {
                .count = 1,
                .total = 50050,
                .payments = { [DEVICE_PAYMENT_CASH] = 50050 },
        };
        t[RECEIPT_TYPE_PURCHASE] = (DeviceTypeTotals) {
                .count = 1,
                .total = 10000,
                .payments = { [DEVICE_PAYMENT_CASH] = 10000 },
        };
        t[RECEIPT_TYPE_PURCHASE_REFUND] = (DeviceTypeTotals) {
                .count = 1,
                .total = 2000,
                .payments = { [DEVICE_PAYMENT_ELECTRONIC] = 2000 },
        };
        t[RECEIPT_TYPE_SALE_CORRECTION] = (DeviceTypeTotals) {
                .count = 1,
                .total = 700,
                .payments = { [DEVICE_PAYMENT_CASH] = 700 },
        };
        if (type != DEVICE_REPORT_X) {
                r.fiscal_document_number = 1234;
                strcpy(r.fiscal_sign, "0123456789");
        }
        return r;
}

static void test_report_json_of_a_z_report_has_exact_money_and_both_spellings(void) {
        DeviceReport r = report_by_hand(DEVICE_REPORT_Z);
        json_object *o = NULL, *counts;

        ASSERT_OK(fiscal_day_report_to_json(&r, true, &o));

        ASSERT_EQ(json_integer(o, "reportType"), 2);
        ASSERT_EQ(json_integer(o, "shiftNumber"), 42);
        ASSERT_STREQ(json_string(o, "dateTime"), "2026-03-14T09:26:53.000Z");
        /* cash: 3000.01 - 500.50 (return) - 100.00 (purchase) + 7.00 (a correction counts as a sale) */
        ASSERT_STREQ(json_string(o, "cashTotal"), "2406.51");
        /* card: 9000.00 + 20.00 (return of a purchase brings money in) */
        ASSERT_STREQ(json_string(o, "cardTotal"), "9020.00");
        /* sales gross (the advance offset included), the correction not a sale */
        ASSERT_STREQ(json_string(o, "totalSales"), "12345.67");
        ASSERT_STREQ(json_string(o, "totalRefunds"), "500.50");
        ASSERT_STREQ(json_string(o, "total_purchases"), "100.00");
        ASSERT_STREQ(json_string(o, "total_purchase_refunds"), "20.00");
        counts = json_get(o, "receiptCounts");
        ASSERT_EQ(json_integer(counts, "sale"), 3);
        ASSERT_EQ(json_integer(counts, "refund"), 1);
        ASSERT_EQ(json_integer(counts, "purchase"), 1);
        ASSERT_EQ(json_integer(counts, "purchase_refund"), 1);
        ASSERT_EQ(json_integer(counts, "sale_correction"), 1);
        ASSERT_EQ(json_integer(counts, "refund_correction"), 0);
        ASSERT_EQ(json_object_object_length(counts), _RECEIPT_TYPE_MAX);
        ASSERT_EQ(json_integer(o, "receipts"), 7);
        ASSERT_TRUE(json_boolean(o, "offline"));
        ASSERT_EQ(json_integer(o, "fiscalDocumentNumber"), 1234);
        ASSERT_STREQ(json_string(o, "fiscalSign"), "0123456789");

        assert_twins(o, "reportType", "report_type");
        assert_twins(o, "shiftNumber", "shift_number");
        assert_twins(o, "dateTime", "date_time");
        assert_twins(o, "cashTotal", "cash_total");
        assert_twins(o, "cardTotal", "card_total");
        assert_twins(o, "totalSales", "total_sales");
        assert_twins(o, "totalRefunds", "total_refunds");
        assert_twins(o, "receiptCounts", "receipt_counts");
        assert_twins(o, "fiscalDocumentNumber", "fiscal_document_number");
        assert_twins(o, "fiscalSign", "fiscal_sign");

        ASSERT_STREQ(json_string(o, "report"), "z");
        ASSERT_FALSE(json_boolean(o, "shift_open")); /* a Z closes it */
        ASSERT_STREQ(json_string(o, "shift_open_time"), "2026-03-13T21:00:05.000Z");
        ASSERT_EQ(json_integer(o, "ofd_unsent"), 3);
        ASSERT_EQ(json_integer(o, "last_fiscal_document"), 1234);
        /* the detail: per type and net per payment form, the same money */
        ASSERT_STREQ(json_string(json_get(json_get(o, "totals"), "net"), "cash"), "2406.51");
        ASSERT_STREQ(json_string(json_get(json_get(o, "totals"), "net"), "prepayment"), "345.66");
        json_object_put(o);
}

static void test_report_json_of_an_x_report_has_no_fiscal_attributes(void) {
        DeviceReport r = report_by_hand(DEVICE_REPORT_X);
        json_object *o = NULL;

        ASSERT_OK(fiscal_day_report_to_json(&r, false, &o));
        ASSERT_EQ(json_integer(o, "reportType"), 1);
        ASSERT_EQ(json_integer(o, "report_type"), 1);
        ASSERT_STREQ(json_string(o, "report"), "x");
        ASSERT_FALSE(json_boolean(o, "offline"));
        ASSERT_TRUE(json_boolean(o, "shift_open"));
        ASSERT_STREQ(json_string(o, "cashTotal"), "2406.51");
        ASSERT_FALSE(json_has(o, "fiscalDocumentNumber"));
        ASSERT_FALSE(json_has(o, "fiscalSign"));
        ASSERT_FALSE(json_has(o, "fiscal_document_number"));
        ASSERT_FALSE(json_has(o, "fiscal_sign"));
        json_object_put(o);
}

static void test_report_json_money_is_signed_and_exact_to_the_kopeck(void) {
        DeviceReport r = { .type = DEVICE_REPORT_X, .datetime = T_REPORT + 250 * USEC_PER_MSEC };
        json_object *o = NULL;

        /* More returned in cash than taken: the drawer is short by 5.01; one kopeck by card. */
        r.totals.by_type[RECEIPT_TYPE_SALE] = (DeviceTypeTotals) {
                .count = 1, .total = 1, .payments = { [DEVICE_PAYMENT_ELECTRONIC] = 1 } };
        r.totals.by_type[RECEIPT_TYPE_REFUND] = (DeviceTypeTotals) {
                .count = 1, .total = 501, .payments = { [DEVICE_PAYMENT_CASH] = 501 } };
        ASSERT_OK(fiscal_day_report_to_json(&r, false, &o));
        ASSERT_STREQ(json_string(o, "cashTotal"), "-5.01");
        ASSERT_STREQ(json_string(o, "cardTotal"), "0.01");
        ASSERT_STREQ(json_string(o, "totalSales"), "0.01");
        ASSERT_STREQ(json_string(o, "totalRefunds"), "5.01");
        ASSERT_STREQ(json_string(o, "dateTime"), "2026-03-14T09:26:53.250Z");
        ASSERT_FALSE(json_boolean(o, "shift_open"));
        ASSERT_TRUE(json_object_is_type(json_get(o, "shift_open_time"), json_type_null));
        json_object_put(o);

        /* An empty shift: zeros, not absent keys. A Z without a number of its own (the register's answer
         * for a shift closed already, where it no longer has the figures): no fiscal attributes. */
        r = (DeviceReport) { .type = DEVICE_REPORT_Z, .shift_number = 1, .datetime = T_REPORT };
        ASSERT_OK(fiscal_day_report_to_json(&r, false, &o));
        ASSERT_STREQ(json_string(o, "cashTotal"), "0.00");
        ASSERT_STREQ(json_string(o, "totalSales"), "0.00");
        ASSERT_EQ(json_integer(json_get(o, "receiptCounts"), "sale"), 0);
        ASSERT_FALSE(json_has(o, "fiscalDocumentNumber"));
        ASSERT_FALSE(json_has(o, "fiscalSign"));
        ASSERT_FALSE(json_has(o, "fiscal_document_number"));
        json_object_put(o);

        /* No time (an opening answered "already open" made no document): null, in both spellings. */
        r = (DeviceReport) { .type = DEVICE_REPORT_OPEN, .shift_number = 3 };
        ASSERT_OK(fiscal_day_report_to_json(&r, false, &o));
        ASSERT_TRUE(json_object_is_type(json_get(o, "dateTime"), json_type_null));
        ASSERT_TRUE(json_object_is_type(json_get(o, "date_time"), json_type_null));
        ASSERT_FALSE(json_has(o, "fiscalDocumentNumber"));
        json_object_put(o);
}

static void test_report_json_of_an_opening_has_no_report_type(void) {
        DeviceReport r = report_by_hand(DEVICE_REPORT_OPEN);
        json_object *o = NULL;

        r.totals = (DeviceTotals) {};
        ASSERT_OK(fiscal_day_report_to_json(&r, false, &o));
        ASSERT_FALSE(json_has(o, "reportType"));
        ASSERT_FALSE(json_has(o, "report_type"));
        ASSERT_STREQ(json_string(o, "report"), "open");
        ASSERT_TRUE(json_boolean(o, "shift_open"));
        ASSERT_EQ(json_integer(o, "fiscalDocumentNumber"), 1234);
        json_object_put(o);
}

/* ---- reports and the shift, at the register ---- */

static void test_report_x_answers_with_the_shift_so_far_and_makes_no_document(void) {
        Slip card, cash;
        uint32_t last;
        Answer a = {};
        json_object *o = NULL;
        Env e;

        env_setup(&e);
        sell_by_card(&e, &card, "1500.00");
        /* 2000.00 in cash for 1234.56: 765.44 given back */
        slip_enqueue(&e, &cash, "sale", "1234.56", "[{\"type\":\"cash\",\"amount\":\"2000.00\"}]", "765.44");
        print_all(&e, &cash);
        last = device_get_last_fiscal_document(e.device);

        ASSERT_OK(fiscal_day_report_x(e.fiscal_day, "Ivanova", NULL, on_answer, &a));
        ASSERT_EQ(a.n, 0); /* never from inside the call */
        RUN_UNTIL(&e, a.n > 0 && env_quiet(&e));
        ASSERT_EQ(a.n, 1);
        ASSERT_OK(a.r.error);
        ASSERT_EQ(a.r.report.type, DEVICE_REPORT_X);
        ASSERT_TRUE(a.r.report.shift_open);
        ASSERT_EQ_U(a.r.report.shift_number, 1);
        ASSERT_EQ_U(a.r.report.fiscal_document_number, 0);
        ASSERT_EQ_U(a.r.report.totals.by_type[RECEIPT_TYPE_SALE].count, 2);
        ASSERT_EQ_U(device_get_last_fiscal_document(e.device), last);
        ASSERT_TRUE(device_get_shift_open(e.device));

        ASSERT_OK(fiscal_day_report_to_json(&a.r.report, false, &o));
        ASSERT_EQ(json_integer(o, "reportType"), 1);
        ASSERT_STREQ(json_string(o, "cashTotal"), "1234.56");
        ASSERT_STREQ(json_string(o, "cardTotal"), "1500.00");
        ASSERT_STREQ(json_string(o, "totalSales"), "2734.56");
        ASSERT_STREQ(json_string(o, "totalRefunds"), "0.00");
        ASSERT_EQ(json_integer(json_get(o, "receiptCounts"), "sale"), 2);
        json_object_put(o);
        env_teardown(&e);
}

static void test_open_shift_opens_one_then_answers_ealready(void) {
        Answer a = {}, b = {};
        Env e;

        env_setup(&e);
        ASSERT_FALSE(device_get_shift_open(e.device));
        ASSERT_OK(fiscal_day_open_shift(e.fiscal_day, "Ivanova", "500100732259", on_answer, &a));
        RUN_UNTIL(&e, a.n > 0 && env_quiet(&e));
        ASSERT_OK(a.r.error);
        ASSERT_EQ(a.r.report.type, DEVICE_REPORT_OPEN);
        ASSERT_EQ_U(a.r.report.shift_number, 1);
        ASSERT_EQ_U(a.r.report.fiscal_document_number, 1);
        ASSERT_TRUE(device_get_shift_open(e.device));

        ASSERT_OK(fiscal_day_open_shift(e.fiscal_day, NULL, NULL, on_answer, &b));
        RUN_UNTIL(&e, b.n > 0 && env_quiet(&e));
        ASSERT_ERROR(b.r.error, EALREADY);
        ASSERT_EQ_U(device_get_last_fiscal_document(e.device), 1);
        ASSERT_EQ(a.n, 1);
        env_close(&e);
        ASSERT_EQ(journal_int(&e, "SELECT COUNT(*) FROM documents WHERE kind = 'open_shift'"), 1);
        env_teardown(&e);
}

static void test_close_shift_without_an_open_shift_or_a_waiting_receipt_is_enoent(void) {
        Answer a = {};
        Env e;

        env_setup(&e);
        ASSERT_ERROR(fiscal_day_close_shift(e.fiscal_day, NULL, NULL, on_answer, &a), ENOENT);
        open_shift(&e);
        ASSERT_OK(fiscal_day_close_shift(e.fiscal_day, NULL, NULL, on_answer, &a));
        RUN_UNTIL(&e, a.n > 0 && env_quiet(&e));
        ASSERT_OK(a.r.error);
        ASSERT_ERROR(fiscal_day_close_shift(e.fiscal_day, NULL, NULL, on_answer, &a), ENOENT);
        run_for(&e, 50 * USEC_PER_MSEC);
        ASSERT_EQ(a.n, 1); /* refused in the call: no answer */
        env_teardown(&e);
}

static void test_close_shift_goes_behind_a_waiting_receipt_and_a_second_is_ebusy(void) {
        Answer z = {}, z2 = {};
        Slip a;
        Env e;

        env_setup(&e);
        /* No shift open, but a receipt waits to open one: the Z goes behind it, not -ENOENT. */
        ASSERT_OK(device_debug_inject_fault(e.device, DEVICE_FAULT_PAPER_OUT, 0));
        sell_by_card(&e, &a, "99.99");
        RUN_UNTIL(&e, a.n_heard > 0);
        ASSERT_STREQ(a.status, "print_failed");
        ASSERT_FALSE(device_get_shift_open(e.device));

        ASSERT_OK(fiscal_day_close_shift(e.fiscal_day, "Ivanova", NULL, on_answer, &z));
        ASSERT_ERROR(fiscal_day_close_shift(e.fiscal_day, NULL, NULL, on_answer, &z2), EBUSY);
        ASSERT_OK(device_debug_inject_fault(e.device, DEVICE_FAULT_NONE, 0));
        RUN_UNTIL(&e, z.n > 0 && env_quiet(&e));

        ASSERT_EQ(z.n, 1);
        ASSERT_OK(z.r.error);
        ASSERT_EQ(z.r.report.type, DEVICE_REPORT_Z);
        ASSERT_EQ_U(z.r.report.shift_number, 1);
        ASSERT_EQ_U(z.r.report.totals.by_type[RECEIPT_TYPE_SALE].count, 1);
        ASSERT_EQ(z.r.report.totals.by_type[RECEIPT_TYPE_SALE].total, 9999);
        ASSERT_EQ(z2.n, 0);
        ASSERT_FALSE(device_get_shift_open(e.device));
        env_teardown(&e);
}

static void test_forgotten_requests_are_made_but_not_answered(void) {
        Answer x = {}, z = {};
        Env e;

        env_setup(&e);
        open_shift(&e);
        ASSERT_OK(fiscal_day_report_x(e.fiscal_day, NULL, NULL, on_answer, &x));
        ASSERT_OK(fiscal_day_close_shift(e.fiscal_day, NULL, NULL, on_answer, &z));
        fiscal_day_forget(e.fiscal_day, &x);
        fiscal_day_forget(e.fiscal_day, &z);
        RUN_UNTIL(&e, !device_get_shift_open(e.device) && env_quiet(&e));
        run_for(&e, 50 * USEC_PER_MSEC);
        ASSERT_EQ(x.n, 0);
        ASSERT_EQ(z.n, 0);
        env_close(&e);
        ASSERT_EQ(journal_int(&e, "SELECT COUNT(*) FROM documents WHERE kind = 'close_shift'"), 1);
        env_teardown(&e);
}

/* ---- the 24-hour rule ---- */

static void test_refuses_sales_only_when_the_guard_holds_and_auto_close_is_off(void) {
        const char *detail = NULL;
        Env e;

        env_setup(&e);
        ASSERT_FALSE(fiscal_day_refuses_sales(e.fiscal_day, &detail)); /* no shift */
        ASSERT_NULL(detail);
        open_shift(&e);
        ASSERT_FALSE(fiscal_day_refuses_sales(e.fiscal_day, &detail));
        device_debug(&e, "{\"shift_age_seconds\": 85000}"); /* 23 h 37 min: not yet */
        ASSERT_FALSE(fiscal_day_refuses_sales(e.fiscal_day, &detail));
        ASSERT_NULL(detail);

        device_debug(&e, "{\"shift_age_seconds\": 86340}");
        ASSERT_TRUE(fiscal_day_refuses_sales(e.fiscal_day, &detail));
        ASSERT_NOT_NULL(detail);
        ASSERT_NOT_NULL(strstr(detail, "kktctl shift close"));
        ASSERT_NOT_NULL(strstr(detail, "Z report"));
        ASSERT_TRUE(fiscal_day_refuses_sales(e.fiscal_day, NULL));

        /* With a close on schedule nothing is refused: the adapter closes the shift first. (Checked before
         * the loop runs again: 24h queues the Z at once.) */
        set_auto_close(&e, AUTO_CLOSE_LIMIT, 0);
        ASSERT_FALSE(fiscal_day_refuses_sales(e.fiscal_day, NULL));
        set_auto_close(&e, AUTO_CLOSE_DAILY, 0);
        ASSERT_FALSE(fiscal_day_refuses_sales(e.fiscal_day, NULL));
        set_auto_close(&e, AUTO_CLOSE_OFF, 0);
        ASSERT_TRUE(fiscal_day_refuses_sales(e.fiscal_day, NULL));
        run_for(&e, 100 * USEC_PER_MSEC);
        ASSERT_TRUE(device_get_shift_open(e.device)); /* nothing closed it */
        env_teardown(&e);
}

static void test_auto_close_24h_closes_the_shift_by_itself_before_the_limit(void) {
        FiscalDayOptions o = { .auto_close = { .mode = AUTO_CLOSE_LIMIT } };
        char detail[512];
        Env e;

        env_setup_with(&e, &o);
        open_shift(&e);
        run_for(&e, 200 * USEC_PER_MSEC);
        ASSERT_TRUE(device_get_shift_open(e.device)); /* 24 hours ahead */
        ASSERT_FALSE(printer_close_pending(e.printer));

        /* A minute short of 24 hours: the health says it is being closed, and the timer closes it. */
        device_debug(&e, "{\"shift_age_seconds\": 86340}");
        ASSERT_EQ(health(&e, "shift", 0, detail), FISCAL_DAY_DEGRADED);
        ASSERT_NOT_NULL(strstr(detail, "being closed"));
        RUN_UNTIL(&e, !device_get_shift_open(e.device) && env_quiet(&e));
        ASSERT_EQ_U(device_get_shift_number(e.device), 1);
        ASSERT_EQ(health(&e, "shift", 0, detail), FISCAL_DAY_HEALTHY);
        ASSERT_NOT_NULL(strstr(detail, "no shift open"));

        /* Once, and not again while no shift is open. */
        run_for(&e, 200 * USEC_PER_MSEC);
        env_close(&e);
        ASSERT_EQ(journal_int(&e, "SELECT COUNT(*) FROM documents WHERE kind = 'close_shift'"), 1);
        env_teardown(&e);
}

/* ---- health ---- */

static void test_health_of_the_shift(void) {
        char detail[512];
        Env e;

        /* Before the register's first status. */
        env_setup_full(&e, NULL, false);
        ASSERT_EQ(health(&e, "shift", 0, detail), FISCAL_DAY_HEALTHY);
        ASSERT_STREQ(detail, "not known yet");
        ASSERT_OK(printer_start(e.printer));
        RUN_UNTIL(&e, device_get_status(e.device) && env_quiet(&e));

        ASSERT_EQ(health(&e, "shift", 0, detail), FISCAL_DAY_HEALTHY);
        ASSERT_STREQ(detail, "no shift open (last: 0)");
        open_shift(&e);
        ASSERT_EQ(health(&e, "shift", 0, detail), FISCAL_DAY_HEALTHY);
        ASSERT_NOT_NULL(strstr(detail, "shift 1 open since"));
        ASSERT_NOT_NULL(strstr(detail, "0 receipts"));

        /* From 23 hours: degraded; within the margin of 24 hours: unhealthy, naming the fix. */
        device_debug(&e, "{\"shift_age_seconds\": 84600}");
        ASSERT_EQ(health(&e, "shift", 0, detail), FISCAL_DAY_DEGRADED);
        ASSERT_NOT_NULL(strstr(detail, "shift 1 open since"));
        device_debug(&e, "{\"shift_age_seconds\": 86340}");
        ASSERT_EQ(health(&e, "shift", 0, detail), FISCAL_DAY_UNHEALTHY);
        ASSERT_NOT_NULL(strstr(detail, "kktctl shift close"));

        /* With a close on schedule it is being closed: degraded (before the loop lets the timer run). */
        set_auto_close(&e, AUTO_CLOSE_LIMIT, 0);
        ASSERT_EQ(health(&e, "shift", 0, detail), FISCAL_DAY_DEGRADED);
        ASSERT_NOT_NULL(strstr(detail, "being closed"));
        set_auto_close(&e, AUTO_CLOSE_OFF, 0);
        ASSERT_EQ(health(&e, "shift", 0, detail), FISCAL_DAY_UNHEALTHY);
        env_teardown(&e);
}

static void test_health_of_the_fiscal_drive(void) {
        char detail[512];
        Slip a;
        Env e;

        env_setup(&e);
        ASSERT_EQ(health(&e, "fiscal_drive", 0, detail), FISCAL_DAY_HEALTHY);
        ASSERT_NOT_NULL(strstr(detail, "valid for"));

        device_debug(&e, "{\"fn_days_left\": 10}");
        ASSERT_EQ(health(&e, "fiscal_drive", 0, detail), FISCAL_DAY_DEGRADED);
        ASSERT_NOT_NULL(strstr(detail, "expires in"));
        device_debug(&e, "{\"fn_days_left\": -1}");
        ASSERT_EQ(health(&e, "fiscal_drive", 0, detail), FISCAL_DAY_UNHEALTHY);
        ASSERT_NOT_NULL(strstr(detail, "full or expired"));
        device_debug(&e, "{\"fn_days_left\": 400}");
        ASSERT_EQ(health(&e, "fiscal_drive", 0, detail), FISCAL_DAY_HEALTHY);

        /* Documents the OFD has not confirmed: fine when fresh, degraded at 25 days, unhealthy at 30. */
        device_debug(&e, "{\"ofd_online\": false}");
        sell_by_card(&e, &a, "10.00");
        print_all(&e, &a);
        ASSERT_EQ(health(&e, "fiscal_drive", 0, detail), FISCAL_DAY_HEALTHY);
        ASSERT_NOT_NULL(strstr(detail, "2 documents unsent"));
        device_debug(&e, "{\"unsent_age_days\": 26}");
        ASSERT_EQ(health(&e, "fiscal_drive", 0, detail), FISCAL_DAY_DEGRADED);
        ASSERT_NOT_NULL(strstr(detail, "for 26 days"));
        /* The hook ages them further: 31 days in all. */
        device_debug(&e, "{\"unsent_age_days\": 5}");
        ASSERT_EQ(health(&e, "fiscal_drive", 0, detail), FISCAL_DAY_UNHEALTHY);
        ASSERT_NOT_NULL(strstr(detail, "30 days or more"));

        /* Back online, the drive sends them. */
        device_debug(&e, "{\"ofd_online\": true}");
        ASSERT_EQ(health(&e, "fiscal_drive", 0, detail), FISCAL_DAY_HEALTHY);
        env_teardown(&e);
}

static void test_health_of_the_print_queue(void) {
        FiscalDayOptions o = { .stuck_after = 300 * USEC_PER_MSEC };
        char detail[512];
        Slip a;
        Env e;

        env_setup_with(&e, &o);
        ASSERT_EQ(health(&e, "print_queue", 0, detail), FISCAL_DAY_HEALTHY);
        ASSERT_STREQ(detail, "0 queued");
        ASSERT_EQ(health(&e, "print_queue", 2, detail), FISCAL_DAY_DEGRADED);
        ASSERT_NOT_NULL(strstr(detail, "2 receipt(s) rejected"));

        /* The head waits for paper longer than StuckAfter=. */
        ASSERT_OK(device_debug_inject_fault(e.device, DEVICE_FAULT_PAPER_OUT, 0));
        sell_by_card(&e, &a, "10.00");
        RUN_UNTIL(&e, a.n_heard > 0);
        run_for(&e, 400 * USEC_PER_MSEC);
        ASSERT_EQ(health(&e, "print_queue", 0, detail), FISCAL_DAY_DEGRADED);
        ASSERT_NOT_NULL(strstr(detail, "has waited"));
        ASSERT_NOT_NULL(strstr(detail, "1 queued"));

        ASSERT_OK(device_debug_inject_fault(e.device, DEVICE_FAULT_NONE, 0));
        RUN_UNTIL(&e, printer_get_stats(e.printer)->printed == 1 && env_quiet(&e));
        ASSERT_EQ(health(&e, "print_queue", 0, detail), FISCAL_DAY_HEALTHY);
        ASSERT_STREQ(detail, "0 queued");
        env_teardown(&e);
}

/* ---- AutoCloseShift=HH:MM ----
 * The schedule is in local minutes. Instead of waiting up to a minute for the next one, the test moves the
 * local time: TZ is set to a POSIX zone whose offset has seconds ("KKT-0:00:SS" is UTC+SS s), chosen so
 * that the next local minute starts a few seconds from now. The real code path runs: localtime_r()/mktime()
 * in next_daily(), a CLOCK_REALTIME sd-event timer, the Z queued in the printer and made by the emulator. */

typedef struct LocalMinute {
        unsigned minute_of_day; /* the next local minute */
        usec_t at;              /* CLOCK_REALTIME when it starts */
} LocalMinute;

/* Sets TZ so that the next local minute starts `lead` seconds (1..50) from now, give or take a second. */
static LocalMinute local_minute_in(unsigned lead) {
        usec_t n = now(CLOCK_REALTIME);
        time_t sec = (time_t) (n / USEC_PER_SEC), at;
        unsigned offset = (unsigned) ((60 - lead - sec % 60 + 120) % 60);
        char tz[32];
        struct tm tm;

        snprintf(tz, sizeof tz, "KKT-0:00:%02u", offset);
        ASSERT_OK(setenv("TZ", tz, 1));
        tzset();
        ASSERT_NOT_NULL(localtime_r(&sec, &tm));
        ASSERT_EQ(tm.tm_sec, (int) ((60 - lead) % 60));
        at = sec + (60 - tm.tm_sec);
        ASSERT_NOT_NULL(localtime_r(&at, &tm));
        ASSERT_EQ(tm.tm_sec, 0);
        return (LocalMinute) { .minute_of_day = (unsigned) (tm.tm_hour * 60 + tm.tm_min),
                               .at = (usec_t) at * USEC_PER_SEC };
}

static void local_time_restore(void) {
        ASSERT_OK(unsetenv("TZ"));
        tzset();
}

static void test_auto_close_daily_closes_the_shift_at_that_local_time(void) {
        char buf[8];
        LocalMinute m;
        usec_t closed_at;
        Env e;

        env_setup(&e);
        open_shift(&e);
        m = local_minute_in(4);
        set_auto_close(&e, AUTO_CLOSE_DAILY, m.minute_of_day);
        fprintf(stderr, "   AutoCloseShift=%s in TZ=%s\n",
                auto_close_to_string(&(AutoClose) { AUTO_CLOSE_DAILY, m.minute_of_day }, buf), getenv("TZ"));

        RUN_UNTIL(&e, !device_get_shift_open(e.device) && env_quiet(&e));
        closed_at = now(CLOCK_REALTIME);
        ASSERT_TRUE(closed_at >= m.at);
        ASSERT_TRUE(e.n_changes > 0);

        /* Tomorrow's is armed; nothing more today. */
        run_for(&e, 200 * USEC_PER_MSEC);
        env_close(&e);
        local_time_restore();
        ASSERT_EQ(journal_int(&e, "SELECT COUNT(*) FROM documents WHERE kind = 'close_shift'"), 1);
        /* made at the scheduled minute, by the register's clock (whole seconds) */
        closed_at = (usec_t) journal_int(&e, "SELECT datetime_usec FROM documents WHERE kind = 'close_shift'");
        ASSERT_TRUE(closed_at >= m.at);
        env_teardown(&e);
}

/* fiscal_day_arm_close() computes the next HH:MM from now at every device change (and every
 * fiscal_day_set_options()). A change notification that is dispatched in the loop iteration in which the
 * day's timer has elapsed (here: a receipt sent to the register just before the minute, the loop busy
 * until after it) moves the timer to tomorrow before it is dispatched: that day's Z report is skipped. */
static void test_daily_close_is_not_skipped_by_a_device_change_at_that_minute(void) {
        LocalMinute m;
        Slip a;
        Env e;

        env_setup(&e);
        open_shift(&e);
        slip_new(&e, &a, "sale", "10.00", "[{\"type\":\"card\",\"amount\":\"10.00\"}]", NULL);
        m = local_minute_in(3);
        set_auto_close(&e, AUTO_CLOSE_DAILY, m.minute_of_day);
        /* A sale goes to the register (its "printing" change notification is pending) ... */
        slip_queue(&e, &a);
        ASSERT_FALSE(device_is_idle(e.device));
        ASSERT_TRUE(now(CLOCK_REALTIME) < m.at);
        /* ... and the loop gets to it only after the minute began. */
        while (now(CLOCK_REALTIME) < m.at + 300 * USEC_PER_MSEC)
                (void) usleep(50 * 1000);

        RUN_UNTIL_WITHIN(&e, !device_get_shift_open(e.device) && env_quiet(&e), 10 * USEC_PER_SEC);
        local_time_restore();
        env_teardown(&e);
}


int main(void) {


#if !ENABLE_DEBUG_HOOKS
        return EXIT_TEST_SKIP; /* the emulator's DEBUG hooks and fault injection are test builds only */
#endif
        TEST_RUN(test_auto_close_accepts_off_24h_and_times_and_writes_them_back);
        TEST_RUN(test_auto_close_refuses_what_is_not_off_24h_or_hh_mm);
        TEST_RUN(test_report_json_of_a_z_report_has_exact_money_and_both_spellings);
        TEST_RUN(test_report_json_of_an_x_report_has_no_fiscal_attributes);
        TEST_RUN(test_report_json_money_is_signed_and_exact_to_the_kopeck);
        TEST_RUN(test_report_json_of_an_opening_has_no_report_type);
        TEST_RUN(test_report_x_answers_with_the_shift_so_far_and_makes_no_document);
        TEST_RUN(test_open_shift_opens_one_then_answers_ealready);
        TEST_RUN(test_close_shift_without_an_open_shift_or_a_waiting_receipt_is_enoent);
        TEST_RUN(test_close_shift_goes_behind_a_waiting_receipt_and_a_second_is_ebusy);
        TEST_RUN(test_forgotten_requests_are_made_but_not_answered);
        TEST_RUN(test_refuses_sales_only_when_the_guard_holds_and_auto_close_is_off);
        TEST_RUN(test_auto_close_24h_closes_the_shift_by_itself_before_the_limit);
        TEST_RUN(test_health_of_the_shift);
        TEST_RUN(test_health_of_the_fiscal_drive);
        TEST_RUN(test_health_of_the_print_queue);
        TEST_RUN(test_auto_close_daily_closes_the_shift_at_that_local_time);

        TEST_RUN(test_auto_close_refuses_signs_and_blanks_in_the_time);
        TEST_RUN(test_daily_close_is_not_skipped_by_a_device_change_at_that_minute);
        return EXIT_SUCCESS;
}
