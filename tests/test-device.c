/* SPDX-License-Identifier: MIT */
/* The device front end on a real sd-event loop with the emulator behind it: order and numbering of many
 * prints, the loop staying free during a long print, the loop-side timeout and the late document, faults
 * and their recovery, the state the loop keeps, and shutting down in the middle of a print. */

#include <dirent.h>
#include <limits.h>
#include <sys/stat.h>
#include <systemd/sd-event.h>

#include "device.h"
#include "json-util.h"
#include "receipt.h"
#include "tests.h"
#include "time-util.h"

#define SALE "{\"pos_id\":\"POS-1\",\"type\":\"sale\",\"total\":\"1500.00\"}"

typedef struct Env {
        char dir[PATH_MAX / 2];
        char path[PATH_MAX];
        sd_event *event;
        DeviceOptions options;
} Env;

/* What one callback saw. */
typedef struct Result {
        bool done;
        int error;
        DeviceFault fault;
        DeviceDocument doc;
        DeviceStatus status;
        DeviceReport report;
        usec_t at;              /* CLOCK_MONOTONIC when it ran */
        DeviceState state;      /* device_get_state() in the callback */
} Result;

static void env_setup(Env *e) {
        const char *tmp = getenv("TMPDIR") ?: "/tmp";

        *e = (Env) {};
        snprintf(e->dir, sizeof e->dir, "%s/test-device-XXXXXX", tmp);
        ASSERT_NOT_NULL(mkdtemp(e->dir));
        snprintf(e->path, sizeof e->path, "%s/emulator-fn.db", e->dir);
        ASSERT_OK(sd_event_new(&e->event));
        e->options = (DeviceOptions) {
                .driver = "emulator",
                .timeout = 5 * USEC_PER_SEC,
                .emulator_path = e->path,
                .print_latency_min = 0,
                .print_latency_max = 5 * USEC_PER_MSEC,
        };
}

static void rm_rf(const char *path) {
        DIR *d = opendir(path);
        struct dirent *de;

        ASSERT_NOT_NULL(d);
        while ((de = readdir(d))) {
                char sub[PATH_MAX];
                struct stat st;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
                ASSERT_OK(lstat(sub, &st));
                if (S_ISDIR(st.st_mode))
                        rm_rf(sub);
                else
                        ASSERT_OK(unlink(sub));
        }
        closedir(d);
        ASSERT_OK(rmdir(path));
}

static void env_teardown(Env *e) {
        rm_rf(e->dir);
        e->event = sd_event_unref(e->event);
}

static void run_until(Env *e, const bool *flag) {
        usec_t deadline = now(CLOCK_MONOTONIC) + 30 * USEC_PER_SEC;

        while (!*flag) {
                ASSERT_TRUE(now(CLOCK_MONOTONIC) < deadline);
                ASSERT_OK(sd_event_run(e->event, 100 * USEC_PER_MSEC));
        }
}

static void run_until_idle(Env *e, Device *d) {
        usec_t deadline = now(CLOCK_MONOTONIC) + 30 * USEC_PER_SEC;

        while (!device_is_idle(d)) {
                ASSERT_TRUE(now(CLOCK_MONOTONIC) < deadline);
                ASSERT_OK(sd_event_run(e->event, 100 * USEC_PER_MSEC));
        }
        /* and the deferred change notification */
        ASSERT_OK(sd_event_run(e->event, 0));
}

static void on_print(Device *d, int error, DeviceFault fault, const DeviceDocument *doc, void *userdata) {
        Result *r = userdata;

        ASSERT_FALSE(r->done);
        ASSERT_TRUE((error >= 0) == (doc != NULL));
        *r = (Result) {
                .done = true,
                .error = error,
                .fault = fault,
                .at = now(CLOCK_MONOTONIC),
                .state = device_get_state(d),
        };
        if (doc)
                r->doc = *doc;
}

static void on_status(Device *d, int error, DeviceFault fault, const DeviceStatus *status, void *userdata) {
        Result *r = userdata;

        ASSERT_FALSE(r->done);
        *r = (Result) { .done = true, .error = error, .fault = fault, .at = now(CLOCK_MONOTONIC) };
        if (status)
                r->status = *status;
}

static void on_report(Device *d, int error, DeviceFault fault, const DeviceReport *report, void *userdata) {
        Result *r = userdata;

        ASSERT_FALSE(r->done);
        *r = (Result) { .done = true, .error = error, .fault = fault, .at = now(CLOCK_MONOTONIC) };
        if (report)
                r->report = *report;
}

static void print_sync(Env *e, Device *d, const char *receipt_id, Result *r) {
        *r = (Result) {};
        ASSERT_OK(device_print(d, receipt_id, SALE, on_print, r));
        run_until(e, &r->done);
}

/* ---- order and numbering ---- */

typedef struct Fifty {
        unsigned n;
        uint32_t fd[50];
        char ids[50][DEVICE_RECEIPT_ID_MAX + 1];
        bool done;
} Fifty;

static void on_print_fifty(Device *d, int error, DeviceFault fault, const DeviceDocument *doc,
                           void *userdata) {
        Fifty *f = userdata;

        ASSERT_OK(error);
        ASSERT_TRUE(f->n < 50);
        f->fd[f->n] = doc->fiscal_document_number;
        snprintf(f->ids[f->n], sizeof f->ids[f->n], "%s", doc->receipt_id);
        f->done = ++f->n == 50;
}

static void test_fifty_prints_complete_in_order_with_consecutive_numbers(void) {
        _cleanup_(device_freep) Device *d = NULL;
        Fifty f = {};
        char id[16];
        Env e;

        env_setup(&e);
        ASSERT_OK(device_new(&d, e.event, &e.options));
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_UNKNOWN);

        for (unsigned i = 0; i < 50; i++) {
                snprintf(id, sizeof id, "r-%u", i);
                ASSERT_OK(device_print(d, id, SALE, on_print_fifty, &f));
        }
        run_until(&e, &f.done);

        for (unsigned i = 0; i < 50; i++) {
                snprintf(id, sizeof id, "r-%u", i);
                ASSERT_STREQ(f.ids[i], id);
                ASSERT_EQ_U(f.fd[i], i + 1);
        }
        run_until_idle(&e, d);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_READY);
        ASSERT_EQ_U(device_get_last_fiscal_document(d), 50);
        ASSERT_EQ_U(device_get_shift_number(d), 1);
        ASSERT_TRUE(device_get_shift_open(d));
        ASSERT_TRUE(device_get_shift_open_usec(d) > 0);
        ASSERT_TRUE(device_get_shift_open_usec(d) <= now(CLOCK_REALTIME));
        d = device_free(d);

        /* A restart continues the numbering. */
        ASSERT_OK(device_new(&d, e.event, &e.options));
        f = (Fifty) {};
        for (unsigned i = 0; i < 50; i++) {
                snprintf(id, sizeof id, "s-%u", i);
                ASSERT_OK(device_print(d, id, SALE, on_print_fifty, &f));
        }
        run_until(&e, &f.done);
        for (unsigned i = 0; i < 50; i++)
                ASSERT_EQ_U(f.fd[i], 51 + i);
        d = device_free(d);

        env_teardown(&e);
}

/* ---- the loop stays free ---- */

typedef struct Ticker {
        unsigned ticks;
        unsigned printing_ticks; /* ticks that saw the state "printing" */
        Device *device;
} Ticker;

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        Ticker *t = userdata;

        t->ticks++;
        if (device_get_state(t->device) == DEVICE_STATE_PRINTING)
                t->printing_ticks++;
        ASSERT_OK(sd_event_source_set_time_relative(s, 10 * USEC_PER_MSEC));
        ASSERT_OK(sd_event_source_set_enabled(s, SD_EVENT_ONESHOT));
        return 0;
}

static void test_long_print_does_not_block_the_loop(void) {
        _cleanup_(device_freep) Device *d = NULL;
        _cleanup_(sd_event_source_unrefp) sd_event_source *tick = NULL;
        Ticker t = {};
        Result r = {};
        usec_t start;
        Env e;

        env_setup(&e);
        e.options.print_latency_min = e.options.print_latency_max = 2 * USEC_PER_SEC;
        ASSERT_OK(device_new(&d, e.event, &e.options));
        t.device = d;
        /* accuracy 1 us: the default (250 ms) would bunch the ticks */
        ASSERT_OK(sd_event_add_time_relative(e.event, &tick, CLOCK_MONOTONIC, 10 * USEC_PER_MSEC, 1, on_tick,
                                             &t));

        start = now(CLOCK_MONOTONIC);
        ASSERT_OK(device_print(d, "slow", SALE, on_print, &r));
        run_until(&e, &r.done);
        ASSERT_OK(r.error);
        ASSERT_TRUE(r.at - start >= 2 * USEC_PER_SEC);

        /* About 200 ticks of 10 ms in 2 s; half of them is plenty of margin for a slow machine. */
        ASSERT_TRUE(t.ticks >= 100);
        ASSERT_TRUE(t.printing_ticks >= 100);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_READY);

        tick = sd_event_source_disable_unref(tick);
        d = device_free(d);
        env_teardown(&e);
}

/* ---- timeouts ---- */

typedef struct Late {
        bool done;
        char receipt_id[DEVICE_RECEIPT_ID_MAX + 1];
        int error;
        DeviceDocument doc;
        usec_t at;
} Late;

static void on_late(Device *d, const char *receipt_id, int error, DeviceFault fault,
                    const DeviceDocument *doc, void *userdata) {
        Late *l = userdata;

        ASSERT_FALSE(l->done);
        l->done = true;
        snprintf(l->receipt_id, sizeof l->receipt_id, "%s", receipt_id);
        l->error = error;
        l->at = now(CLOCK_MONOTONIC);
        if (doc)
                l->doc = *doc;
}

static void test_timeout_after_print_is_unknown_and_last_document_matches(void) {
        _cleanup_(device_freep) Device *d = NULL;
        Result r = {}, last = {}, again = {};
        Late late = {};
        usec_t start;
        Env e;

        env_setup(&e);
        e.options.timeout = 300 * USEC_PER_MSEC;
        ASSERT_OK(device_new(&d, e.event, &e.options));
        device_set_late_callback(d, on_late, &late);
        ASSERT_OK(device_debug_inject_fault(d, DEVICE_FAULT_TIMEOUT_UNKNOWN, 1));

        start = now(CLOCK_MONOTONIC);
        ASSERT_OK(device_print(d, "receipt-1", SALE, on_print, &r));
        run_until(&e, &r.done);
        ASSERT_ERROR(r.error, ETIMEDOUT);
        ASSERT_EQ(r.fault, DEVICE_FAULT_TIMEOUT_UNKNOWN);
        ASSERT_TRUE(r.at - start >= 300 * USEC_PER_MSEC);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_UNKNOWN);
        ASSERT_EQ(device_get_fault(d), DEVICE_FAULT_TIMEOUT_UNKNOWN);
        ASSERT_FALSE(device_is_idle(d)); /* the register still has it */
        ASSERT_FALSE(late.done);

        /* Before printing it again, ask the register: it waits for the register to come back. */
        ASSERT_OK(device_last_document(d, on_print, &last));
        run_until(&e, &last.done);
        ASSERT_OK(last.error);
        ASSERT_STREQ(last.doc.receipt_id, "receipt-1");
        ASSERT_EQ_U(last.doc.fiscal_document_number, 1);

        /* The late answer came first, with the same document. */
        ASSERT_TRUE(late.done);
        ASSERT_TRUE(late.at <= last.at);
        ASSERT_OK(late.error);
        ASSERT_STREQ(late.receipt_id, "receipt-1");
        ASSERT_EQ_U(late.doc.fiscal_document_number, 1);
        ASSERT_STREQ(late.doc.fiscal_sign, last.doc.fiscal_sign);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_READY);
        ASSERT_EQ(device_get_fault(d), DEVICE_FAULT_NONE);
        ASSERT_EQ_U(device_get_last_fiscal_document(d), 1);

        print_sync(&e, d, "receipt-2", &again);
        ASSERT_OK(again.error);
        ASSERT_EQ_U(again.doc.fiscal_document_number, 2);

        d = device_free(d);
        env_teardown(&e);
}

static void test_timeout_before_print_is_reported_as_nothing_printed(void) {
        _cleanup_(device_freep) Device *d = NULL;
        Result r = {};
        Late late = {};
        Env e;

        env_setup(&e);
        e.options.timeout = 300 * USEC_PER_MSEC;
        ASSERT_OK(device_new(&d, e.event, &e.options));
        device_set_late_callback(d, on_late, &late);
        ASSERT_OK(device_debug_inject_fault(d, DEVICE_FAULT_TIMEOUT_BEFORE, 1));

        print_sync(&e, d, "receipt-1", &r);
        ASSERT_ERROR(r.error, ETIMEDOUT);
        ASSERT_EQ(r.fault, DEVICE_FAULT_TIMEOUT_BEFORE);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_FAULT);
        ASSERT_TRUE(device_is_idle(d));

        print_sync(&e, d, "receipt-1", &r);
        ASSERT_OK(r.error);
        ASSERT_EQ_U(r.doc.fiscal_document_number, 1);
        ASSERT_FALSE(late.done);

        d = device_free(d);
        env_teardown(&e);
}

static void test_operation_waiting_behind_a_stuck_one_fails_unsent(void) {
        _cleanup_(device_freep) Device *d = NULL;
        Result first = {}, second = {}, last = {};
        Late late = {};
        usec_t queued;
        Env e;

        env_setup(&e);
        e.options.timeout = 200 * USEC_PER_MSEC;
        e.options.print_latency_min = e.options.print_latency_max = USEC_PER_SEC;
        ASSERT_OK(device_new(&d, e.event, &e.options));
        device_set_late_callback(d, on_late, &late);

        ASSERT_OK(device_print(d, "first", SALE, on_print, &first));
        run_until(&e, &first.done);
        ASSERT_EQ(first.fault, DEVICE_FAULT_TIMEOUT_UNKNOWN);

        /* The register is still busy with the first one for most of a second. */
        queued = now(CLOCK_MONOTONIC);
        ASSERT_OK(device_print(d, "second", SALE, on_print, &second));
        run_until(&e, &second.done);
        ASSERT_ERROR(second.error, ETIMEDOUT);
        ASSERT_EQ(second.fault, DEVICE_FAULT_TIMEOUT_BEFORE);
        ASSERT_TRUE(second.at - queued >= 200 * USEC_PER_MSEC);
        ASSERT_FALSE(late.done);

        run_until(&e, &late.done);
        ASSERT_OK(late.error);
        ASSERT_STREQ(late.receipt_id, "first");
        ASSERT_EQ_U(late.doc.fiscal_document_number, 1);

        /* "second" never reached the register. */
        ASSERT_OK(device_last_document(d, on_print, &last));
        run_until(&e, &last.done);
        ASSERT_OK(last.error);
        ASSERT_STREQ(last.doc.receipt_id, "first");

        d = device_free(d);
        env_teardown(&e);
}

/* ---- faults ---- */

static void test_paper_out_then_cleared_prints_again(void) {
        _cleanup_(device_freep) Device *d = NULL;
        Result r = {}, status = {};
        Env e;

        env_setup(&e);
        ASSERT_OK(device_new(&d, e.event, &e.options));
        ASSERT_NULL(device_get_last_fault_text(d));
        ASSERT_OK(device_debug_inject_fault(d, DEVICE_FAULT_PAPER_OUT, 0));

        for (unsigned i = 0; i < 2; i++) {
                print_sync(&e, d, "receipt-1", &r);
                ASSERT_ERROR(r.error, ENOMEDIUM);
                ASSERT_EQ(r.fault, DEVICE_FAULT_PAPER_OUT);
                ASSERT_EQ(r.state, DEVICE_STATE_FAULT);
                ASSERT_EQ(device_get_fault(d), DEVICE_FAULT_PAPER_OUT);
                ASSERT_STREQ(device_get_last_fault_text(d), "paper out");
        }

        ASSERT_OK(device_status(d, on_status, &status));
        run_until(&e, &status.done);
        ASSERT_OK(status.error);
        ASSERT_EQ(status.status.condition, DEVICE_FAULT_PAPER_OUT);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_FAULT);

        ASSERT_OK(device_debug_inject_fault(d, DEVICE_FAULT_NONE, 0));
        print_sync(&e, d, "receipt-1", &r);
        ASSERT_OK(r.error);
        ASSERT_EQ_U(r.doc.fiscal_document_number, 1);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_READY);
        ASSERT_EQ(device_get_fault(d), DEVICE_FAULT_NONE);
        /* Kept for the operator: what went wrong last. */
        ASSERT_STREQ(device_get_last_fault_text(d), "paper out");

        d = device_free(d);
        env_teardown(&e);
}

static void test_fault_injected_before_the_driver_is_open_applies(void) {
        _cleanup_(device_freep) Device *d = NULL;
        Result r = {};
        Env e;

        env_setup(&e);
        /* The open is still queued or running on the worker when this runs. */
        ASSERT_OK(device_new(&d, e.event, &e.options));
        ASSERT_OK(device_debug_inject_fault(d, DEVICE_FAULT_FN_FULL, 1));
        ASSERT_ERROR(device_debug_inject_fault(d, DEVICE_FAULT_REJECTED, 1), EINVAL);

        print_sync(&e, d, "a", &r);
        ASSERT_ERROR(r.error, ENOSPC);
        ASSERT_EQ(r.fault, DEVICE_FAULT_FN_FULL);
        print_sync(&e, d, "a", &r);
        ASSERT_OK(r.error);

        d = device_free(d);
        env_teardown(&e);
}

static void test_failed_open_is_a_fault_and_the_next_operation_opens_again(void) {
        _cleanup_(device_freep) Device *d = NULL;
        char sub[PATH_MAX / 2 + 8];
        Result r = {};
        Env e;

        env_setup(&e);
        snprintf(sub, sizeof sub, "%s/sub", e.dir);
        snprintf(e.path, sizeof e.path, "%s/emulator-fn.db", sub);
        ASSERT_OK(device_new(&d, e.event, &e.options));

        print_sync(&e, d, "a", &r);
        ASSERT_ERROR(r.error, ENOENT);
        ASSERT_EQ(r.fault, DEVICE_FAULT_ERROR);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_FAULT);
        ASSERT_NOT_NULL(strstr(device_get_last_fault_text(d), "No such file"));

        ASSERT_OK(mkdir(sub, 0700));
        print_sync(&e, d, "a", &r);
        ASSERT_OK(r.error);
        ASSERT_EQ_U(r.doc.fiscal_document_number, 1);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_READY);

        d = device_free(d);
        env_teardown(&e);
}

static void test_report_z_closes_the_shift_and_the_next_print_opens_one(void) {
        _cleanup_(device_freep) Device *d = NULL;
        Result r = {}, z = {}, x = {};
        Env e;

        env_setup(&e);
        ASSERT_OK(device_new(&d, e.event, &e.options));
        print_sync(&e, d, "a", &r);
        ASSERT_OK(r.error);
        run_until_idle(&e, d);
        ASSERT_TRUE(device_get_shift_open(d));

        ASSERT_OK(device_report_x(d, on_report, &x));
        run_until(&e, &x.done);
        ASSERT_OK(x.error);
        ASSERT_FALSE(x.report.closed);
        ASSERT_EQ_U(x.report.n_receipts, 1);
        ASSERT_TRUE(device_get_shift_open(d));

        ASSERT_OK(device_report_z(d, on_report, &z));
        run_until(&e, &z.done);
        ASSERT_OK(z.error);
        ASSERT_TRUE(z.report.closed);
        ASSERT_EQ_U(z.report.shift_number, 1);
        run_until_idle(&e, d);
        ASSERT_FALSE(device_get_shift_open(d));
        ASSERT_EQ_U(device_get_shift_open_usec(d), 0);
        ASSERT_EQ_U(device_get_shift_number(d), 1);

        print_sync(&e, d, "b", &r);
        ASSERT_OK(r.error);
        ASSERT_EQ_U(r.doc.shift_number, 2);
        run_until_idle(&e, d);
        ASSERT_EQ_U(device_get_shift_number(d), 2);
        ASSERT_TRUE(device_get_shift_open(d));

        d = device_free(d);
        env_teardown(&e);
}

/* ---- state for the outside ---- */

typedef struct Changes {
        unsigned n;
        DeviceState last_state;
        uint32_t last_fd;
} Changes;

static void on_change(Device *d, void *userdata) {
        Changes *c = userdata;

        c->n++;
        c->last_state = device_get_state(d);
        c->last_fd = device_get_last_fiscal_document(d);
}

static void test_changes_are_notified_and_state_is_json(void) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        _cleanup_(device_freep) Device *d = NULL;
        Changes c = {};
        Result r = {};
        json_object *v;
        Env e;

        env_setup(&e);
        ASSERT_OK(device_new(&d, e.event, &e.options));
        device_set_change_callback(d, on_change, &c);
        run_until_idle(&e, d);
        ASSERT_TRUE(c.n >= 1); /* unknown -> ready once the driver is open */
        ASSERT_EQ(c.last_state, DEVICE_STATE_READY);

        c.n = 0;
        print_sync(&e, d, "a", &r);
        run_until_idle(&e, d);
        ASSERT_TRUE(c.n >= 1);
        ASSERT_EQ(c.last_state, DEVICE_STATE_READY);
        ASSERT_EQ_U(c.last_fd, 1);

        /* Nothing changed, nothing said. */
        c.n = 0;
        ASSERT_OK(sd_event_run(e.event, 50 * USEC_PER_MSEC));
        ASSERT_EQ(c.n, 0);

        ASSERT_OK(device_state_to_json(d, &o));
        ASSERT_TRUE(json_object_object_get_ex(o, "driver", &v));
        ASSERT_STREQ(json_object_get_string(v), "emulator");
        ASSERT_TRUE(json_object_object_get_ex(o, "state", &v));
        ASSERT_STREQ(json_object_get_string(v), "ready");
        ASSERT_FALSE(json_object_object_get_ex(o, "fault", &v));
        ASSERT_TRUE(json_object_object_get_ex(o, "last_fault", &v));
        ASSERT_NULL(v);
        ASSERT_TRUE(json_object_object_get_ex(o, "shift_number", &v));
        ASSERT_EQ(json_object_get_int64(v), 1);
        ASSERT_TRUE(json_object_object_get_ex(o, "shift_open", &v));
        ASSERT_TRUE(json_object_get_boolean(v));
        ASSERT_TRUE(json_object_object_get_ex(o, "shift_open_time", &v));
        ASSERT_EQ(strlen(json_object_get_string(v)), strlen("2026-11-29T03:17:26.000Z"));
        ASSERT_TRUE(json_object_object_get_ex(o, "last_fiscal_document", &v));
        ASSERT_EQ(json_object_get_int64(v), 1);

        d = device_free(d);
        env_teardown(&e);
}

static void test_bad_arguments(void) {
        char long_id[DEVICE_RECEIPT_ID_MAX + 2];
        Device *d = NULL;
        DeviceOptions o;
        Env e;

        env_setup(&e);
        o = e.options;
        o.driver = "atol";
        ASSERT_ERROR(device_new(&d, e.event, &o), ENOPKG);
        o = e.options;
        o.inn = "7700000000000";
        ASSERT_ERROR(device_new(&d, e.event, &o), EINVAL);
        ASSERT_NULL(d);

        ASSERT_OK(device_new(&d, e.event, &e.options));
        memset(long_id, 'x', sizeof long_id - 1);
        long_id[sizeof long_id - 1] = 0;
        ASSERT_ERROR(device_print(d, long_id, SALE, on_print, NULL), EINVAL);
        ASSERT_ERROR(device_print(d, "", SALE, on_print, NULL), EINVAL);
        d = device_free(d);

        ASSERT_STREQ(device_fault_to_string(DEVICE_FAULT_TIMEOUT_UNKNOWN), "timeout-unknown");
        ASSERT_EQ(device_fault_from_string("paper-out"), DEVICE_FAULT_PAPER_OUT);
        ASSERT_EQ(device_fault_from_string("nonsense"), -EINVAL);
        ASSERT_EQ(device_state_from_string("printing"), DEVICE_STATE_PRINTING);
        ASSERT_EQ(device_fault_to_errno(DEVICE_FAULT_FN_FULL), -ENOSPC);
        env_teardown(&e);
}

/* ---- shutting down ---- */

static void test_free_during_a_long_print_finishes_it_and_cancels_the_rest(void) {
        Result first = {}, second = {};
        Device *d = NULL;
        usec_t start;
        Env e;

        env_setup(&e);
        e.options.timeout = 60 * USEC_PER_SEC;
        e.options.print_latency_min = e.options.print_latency_max = 30 * USEC_PER_SEC;
        ASSERT_OK(device_new(&d, e.event, &e.options));
        ASSERT_OK(device_print(d, "first", SALE, on_print, &first));
        ASSERT_OK(device_print(d, "second", SALE, on_print, &second));
        while (device_get_state(d) != DEVICE_STATE_PRINTING)
                ASSERT_OK(sd_event_run(e.event, 100 * USEC_PER_MSEC));

        start = now(CLOCK_MONOTONIC);
        d = device_free(d);
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - start < 5 * USEC_PER_SEC);

        /* The register made the first document anyway; the second was never sent. */
        ASSERT_TRUE(first.done);
        ASSERT_OK(first.error);
        ASSERT_EQ_U(first.doc.fiscal_document_number, 1);
        ASSERT_TRUE(second.done);
        ASSERT_ERROR(second.error, ECANCELED);

        env_teardown(&e);
}

int main(void) {
#if !ENABLE_DEBUG_HOOKS
        return EXIT_TEST_SKIP; /* the fault injection is only there with the debug hooks */
#endif
        TEST_RUN(test_fifty_prints_complete_in_order_with_consecutive_numbers);
        TEST_RUN(test_long_print_does_not_block_the_loop);
        TEST_RUN(test_timeout_after_print_is_unknown_and_last_document_matches);
        TEST_RUN(test_timeout_before_print_is_reported_as_nothing_printed);
        TEST_RUN(test_operation_waiting_behind_a_stuck_one_fails_unsent);
        TEST_RUN(test_paper_out_then_cleared_prints_again);
        TEST_RUN(test_fault_injected_before_the_driver_is_open_applies);
        TEST_RUN(test_failed_open_is_a_fault_and_the_next_operation_opens_again);
        TEST_RUN(test_report_z_closes_the_shift_and_the_next_print_opens_one);
        TEST_RUN(test_changes_are_notified_and_state_is_json);
        TEST_RUN(test_bad_arguments);
        TEST_RUN(test_free_during_a_long_print_finishes_it_and_cancels_the_rest);
        return 0;
}
