/* SPDX-License-Identifier: MIT */
/* The device front end on a real sd-event loop with the emulator behind it: order and numbering of many
 * prints, the loop staying free during a long print, the loop-side timeout and the late document, faults
 * and their recovery, the internal OPEN, shifts, the state the loop keeps and its JSON, and shutting down in
 * the middle of a print. */

#include <limits.h>
#include <sys/stat.h>
#include <sqlite3.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "device.h"
#include "json-util.h"
#include "receipt.h"
#include "sqlite-util.h"
#include "test-util.h"
#include "tests.h"
#include "time-util.h"

/* A canonical receipt, as the store hands it over. */
#define SALE                                                                                            \
        "{\"pos_id\":\"POS-1\",\"type\":\"sale\",\"taxation\":\"osn\",\"items\":[{"                    \
        "\"name\":\"Frame\",\"price\":\"1500.00\",\"quantity\":\"1.000\",\"total\":\"1500.00\","      \
        "\"vat\":\"vat22\"}],\"payments\":[{\"type\":\"card\",\"amount\":\"1500.00\"}],"                \
        "\"total\":\"1500.00\"}"

typedef struct Env {
        char dir[PATH_MAX / 2];
        char path[PATH_MAX];
        sd_event *event;
        DeviceContext ctx;
        DeviceOptions options;
} Env;

/* What one callback saw. */
typedef struct Result {
        bool done;
        DeviceResult r;
        usec_t at;              /* CLOCK_MONOTONIC when it ran */
        DeviceState state;      /* device_get_state() in the callback */
        int resubmit;           /* what device_submit() answered from inside the callback, when asked to */
        bool try_resubmit;
} Result;

static void env_setup(Env *e) {
        const char *tmp = getenv("TMPDIR") ?: "/tmp";

        *e = (Env) {};
        snprintf(e->dir, sizeof e->dir, "%s/test-device-XXXXXX", tmp);
        ASSERT_NOT_NULL(mkdtemp(e->dir));
        snprintf(e->path, sizeof e->path, "%s/emulator-fn.db", e->dir);
        ASSERT_OK(sd_event_new(&e->event));
        e->ctx = (DeviceContext) { .event = e->event };
        e->options = (DeviceOptions) {
                .driver = "emulator",
                .timeout = 5 * USEC_PER_SEC,
                .emulator_path = e->path,
                .print_latency_min = 0,
                .print_latency_max = 5 * USEC_PER_MSEC,
        };
}

static void env_teardown(Env *e) {
        test_rm_rf(e->dir);
        e->event = sd_event_unref(e->event);
}

static Device *device_new_ok(Env *e) {
        Device *d = NULL;

        ASSERT_OK(device_new(&d, &e->ctx, &e->options));
        ASSERT_NOT_NULL(d);
        return d;
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

static void run_for(Env *e, usec_t usec) {
        usec_t deadline = now(CLOCK_MONOTONIC) + usec, n;

        while ((n = now(CLOCK_MONOTONIC)) < deadline)
                ASSERT_OK(sd_event_run(e->event, deadline - n));
}

static void on_result(Device *d, const DeviceResult *result, void *userdata) {
        Result *r = userdata;

        ASSERT_FALSE(r->done); /* exactly once */
        r->done = true;
        r->r = *result;
        r->at = now(CLOCK_MONOTONIC);
        r->state = device_get_state(d);
        if (r->try_resubmit)
                r->resubmit = device_submit(d, &(DeviceRequest) { .op = DEVICE_OP_STATUS }, on_result, r);
}

static void submit(Device *d, const DeviceRequest *req, Result *r) {
        *r = (Result) {};
        ASSERT_OK(device_submit(d, req, on_result, r));
        ASSERT_FALSE(r->done); /* never from inside device_submit() */
}

static void submit_sync(Env *e, Device *d, const DeviceRequest *req, Result *r) {
        submit(d, req, r);
        run_until(e, &r->done);
}

static DeviceRequest print_request(const char *receipt_id) {
        return (DeviceRequest) { .op = DEVICE_OP_PRINT, .receipt_id = receipt_id, .receipt_json = SALE };
}

static DeviceRequest find_request(const char *receipt_id) {
        return (DeviceRequest) { .op = DEVICE_OP_FIND, .receipt_id = receipt_id, .receipt_json = SALE };
}

static void print_sync(Env *e, Device *d, const char *receipt_id, Result *r) {
        DeviceRequest req = print_request(receipt_id);

        submit_sync(e, d, &req, r);
}

/* The callback of the Result at res ran, with -err (0: success) and fault flt. A macro, so that a failure
 * names the caller's line. */
#define ASSERT_RESULT(res, err, flt)                                                                    \
        do {                                                                                            \
                const Result *_res_ = (res);                                                            \
                ASSERT_TRUE(_res_->done);                                                               \
                ASSERT_EQ(_res_->r.error, -(err));                                                      \
                ASSERT_EQ(_res_->r.fault, (flt));                                                       \
        } while (0)

static json_object *json_get(json_object *o, const char *key) {
        json_object *v = NULL;

        if (!json_object_object_get_ex(o, key, &v)) {
                fprintf(stderr, "missing key \"%s\" in %s\n", key, json_object_to_json_string(o));
                ASSERT_TRUE(false);
        }
        return v;
}

/* ---- order and numbering ---- */

typedef struct Fifty {
        unsigned n;
        uint32_t fd[50];
        char ids[50][DEVICE_RECEIPT_ID_MAX + 1];
        bool done;
} Fifty;

static void on_print_fifty(Device *d, const DeviceResult *result, void *userdata) {
        Fifty *f = userdata;

        ASSERT_OK(result->error);
        ASSERT_TRUE(f->n < 50);
        f->fd[f->n] = result->doc.fiscal_document_number;
        snprintf(f->ids[f->n], sizeof f->ids[f->n], "%s", result->doc.receipt_id);
        f->done = ++f->n == 50;
}

static void print_fifty(Env *e, Device *d, const char *prefix, Fifty *f) {
        char id[16];

        *f = (Fifty) {};
        for (unsigned i = 0; i < 50; i++) {
                DeviceRequest req;

                snprintf(id, sizeof id, "%s-%u", prefix, i);
                req = print_request(id);
                ASSERT_OK(device_submit(d, &req, on_print_fifty, f));
        }
        run_until(e, &f->done);
        for (unsigned i = 0; i < 50; i++) {
                snprintf(id, sizeof id, "%s-%u", prefix, i);
                ASSERT_STREQ(f->ids[i], id);
        }
}

static void test_fifty_prints_complete_in_order_with_consecutive_numbers(void) {
        _cleanup_(device_freep) Device *d = NULL;
        Fifty f;
        Env e;

        env_setup(&e);
        d = device_new_ok(&e);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_UNKNOWN);

        /* FD 1 is the opening of the shift, made in front of the first receipt. */
        print_fifty(&e, d, "r", &f);
        for (unsigned i = 0; i < 50; i++)
                ASSERT_EQ_U(f.fd[i], i + 2);
        run_until_idle(&e, d);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_READY);
        ASSERT_EQ_U(device_get_last_fiscal_document(d), 51);
        ASSERT_EQ_U(device_get_shift_number(d), 1);
        ASSERT_TRUE(device_get_shift_open(d));
        ASSERT_TRUE(device_get_shift_open_usec(d) > 0);
        ASSERT_TRUE(device_get_shift_open_usec(d) <= now(CLOCK_REALTIME));
        ASSERT_EQ_U(device_get_status(d)->shift_totals.by_type[RECEIPT_TYPE_SALE].count, 50);
        d = device_free(d);

        /* A restart continues the numbering, in the same shift. */
        d = device_new_ok(&e);
        print_fifty(&e, d, "s", &f);
        for (unsigned i = 0; i < 50; i++)
                ASSERT_EQ_U(f.fd[i], 52 + i);
        run_until_idle(&e, d);
        ASSERT_EQ_U(device_get_shift_number(d), 1);
        d = device_free(d);

        env_teardown(&e);
}

static void test_get_status_is_null_before_the_first_open_answer_then_set(void) {
        _cleanup_(device_freep) Device *d = NULL;
        const DeviceStatus *s;
        Env e;

        env_setup(&e);
        d = device_new_ok(&e);
        ASSERT_NULL(device_get_status(d));
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_UNKNOWN);
        ASSERT_FALSE(device_is_idle(d)); /* the OPEN */
        ASSERT_STREQ(device_get_driver_name(d), "emulator");

        run_until_idle(&e, d);
        s = device_get_status(d);
        ASSERT_NOT_NULL(s);
        ASSERT_EQ(s->condition, DEVICE_FAULT_NONE);
        ASSERT_STREQ(s->model, "kkt-adapter emulator");
        ASSERT_STREQ(s->fn_number, "9999078900000001");
        ASSERT_FALSE(s->shift_open);
        ASSERT_EQ_U(s->last_fiscal_document, 0);
        ASSERT_TRUE(s->fn_valid_until > now(CLOCK_REALTIME));
        ASSERT_EQ(s->taxations, TAXATION_OSN);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_READY);
        ASSERT_EQ(device_get_fault(d), DEVICE_FAULT_NONE);
        ASSERT_NULL(device_get_last_fault_text(d));

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
        Result r;
        usec_t start;
        Env e;

        env_setup(&e);
        e.options.print_latency_min = e.options.print_latency_max = 2 * USEC_PER_SEC;
        d = device_new_ok(&e);
        run_until_idle(&e, d);
        t.device = d;
        /* accuracy 1 us: the default (250 ms) would bunch the ticks */
        ASSERT_OK(sd_event_add_time_relative(e.event, &tick, CLOCK_MONOTONIC, 10 * USEC_PER_MSEC, 1, on_tick,
                                             &t));

        start = now(CLOCK_MONOTONIC);
        print_sync(&e, d, "slow", &r);
        ASSERT_RESULT(&r, 0, DEVICE_FAULT_NONE);
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
        unsigned calls;
        bool done;
        char receipt_id[DEVICE_RECEIPT_ID_MAX + 1];
        DeviceResult r;
        usec_t at;
} Late;

static void on_late(Device *d, const char *receipt_id, const DeviceResult *result, void *userdata) {
        Late *l = userdata;

        l->calls++;
        l->done = true;
        snprintf(l->receipt_id, sizeof l->receipt_id, "%s", receipt_id);
        l->r = *result;
        l->at = now(CLOCK_MONOTONIC);
}

static void test_timeout_after_print_is_unknown_and_find_matches_it(void) {
        _cleanup_(device_freep) Device *d = NULL;
        Result r, found, again;
        DeviceRequest req;
        Late late = {};
        usec_t start;
        Env e;

        env_setup(&e);
        e.options.timeout = 600 * USEC_PER_MSEC;
        d = device_new_ok(&e);
        device_set_late_callback(d, on_late, &late);
        ASSERT_OK(device_debug_inject_fault(d, DEVICE_FAULT_TIMEOUT_UNKNOWN, 1));

        start = now(CLOCK_MONOTONIC);
        print_sync(&e, d, "receipt-1", &r);
        ASSERT_RESULT(&r, ETIMEDOUT, DEVICE_FAULT_TIMEOUT_UNKNOWN);
        ASSERT_TRUE(r.at - start >= 600 * USEC_PER_MSEC);
        ASSERT_EQ(r.state, DEVICE_STATE_UNKNOWN);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_UNKNOWN);
        ASSERT_EQ(device_get_fault(d), DEVICE_FAULT_TIMEOUT_UNKNOWN);
        ASSERT_FALSE(device_is_idle(d)); /* the register still has it */
        ASSERT_FALSE(late.done);

        /* Before printing it again, ask the register: FIND waits for the register to come back. */
        req = find_request("receipt-1");
        submit_sync(&e, d, &req, &found);
        ASSERT_RESULT(&found, 0, DEVICE_FAULT_NONE);
        ASSERT_STREQ(found.r.doc.receipt_id, "receipt-1");
        ASSERT_EQ_U(found.r.doc.fiscal_document_number, 2);

        /* The late answer came first, with the same document. */
        ASSERT_EQ(late.calls, 1);
        ASSERT_TRUE(late.at <= found.at);
        ASSERT_OK(late.r.error);
        ASSERT_STREQ(late.receipt_id, "receipt-1");
        ASSERT_EQ_U(late.r.doc.fiscal_document_number, 2);
        ASSERT_STREQ(late.r.doc.fiscal_sign, found.r.doc.fiscal_sign);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_READY);
        ASSERT_EQ(device_get_fault(d), DEVICE_FAULT_NONE);
        ASSERT_EQ_U(device_get_last_fiscal_document(d), 2);

        print_sync(&e, d, "receipt-2", &again);
        ASSERT_RESULT(&again, 0, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(again.r.doc.fiscal_document_number, 3);

        d = device_free(d);
        env_teardown(&e);
}

static void test_late_callback_gets_the_result_of_a_print_that_timed_out(void) {
        _cleanup_(device_freep) Device *d = NULL;
        Late late = {};
        Result r;
        Env e;

        env_setup(&e);
        e.options.timeout = 300 * USEC_PER_MSEC;
        e.options.print_latency_min = e.options.print_latency_max = 900 * USEC_PER_MSEC;
        d = device_new_ok(&e);
        device_set_late_callback(d, on_late, &late);

        print_sync(&e, d, "slow-1", &r);
        ASSERT_RESULT(&r, ETIMEDOUT, DEVICE_FAULT_TIMEOUT_UNKNOWN);
        ASSERT_FALSE(late.done);

        run_until(&e, &late.done);
        ASSERT_EQ(late.calls, 1);
        ASSERT_STREQ(late.receipt_id, "slow-1");
        ASSERT_OK(late.r.error);
        ASSERT_EQ(late.r.fault, DEVICE_FAULT_NONE);
        ASSERT_STREQ(late.r.doc.receipt_id, "slow-1");
        ASSERT_EQ_U(late.r.doc.fiscal_document_number, 2);
        ASSERT_EQ(late.r.doc.total, 150000);

        /* What the late result says is the device's state now; the print's own callback ran only once. */
        run_until_idle(&e, d);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_READY);
        ASSERT_EQ_U(device_get_last_fiscal_document(d), 2);
        ASSERT_EQ(late.calls, 1);

        d = device_free(d);
        env_teardown(&e);
}

static void test_timeout_before_print_is_reported_as_nothing_printed(void) {
        _cleanup_(device_freep) Device *d = NULL;
        Result r, found;
        DeviceRequest req;
        Late late = {};
        Env e;

        env_setup(&e);
        e.options.timeout = 300 * USEC_PER_MSEC;
        d = device_new_ok(&e);
        device_set_late_callback(d, on_late, &late);
        ASSERT_OK(device_debug_inject_fault(d, DEVICE_FAULT_TIMEOUT_BEFORE, 1));

        print_sync(&e, d, "receipt-1", &r);
        ASSERT_RESULT(&r, ETIMEDOUT, DEVICE_FAULT_TIMEOUT_BEFORE);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_FAULT);
        ASSERT_EQ(device_get_fault(d), DEVICE_FAULT_TIMEOUT_BEFORE);
        ASSERT_TRUE(device_is_idle(d));

        req = find_request("receipt-1");
        submit_sync(&e, d, &req, &found);
        ASSERT_RESULT(&found, ENOENT, DEVICE_FAULT_NONE);

        print_sync(&e, d, "receipt-1", &r);
        ASSERT_RESULT(&r, 0, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(r.r.doc.fiscal_document_number, 2);
        ASSERT_FALSE(late.done);

        d = device_free(d);
        env_teardown(&e);
}

static void test_operation_waiting_behind_a_stuck_one_fails_unsent(void) {
        _cleanup_(device_freep) Device *d = NULL;
        Result first, second, third, found;
        usec_t queued, queued_third;
        DeviceRequest req;
        Late late = {};
        Env e;

        env_setup(&e);
        e.options.timeout = 300 * USEC_PER_MSEC;
        e.options.print_latency_min = e.options.print_latency_max = 1500 * USEC_PER_MSEC;
        d = device_new_ok(&e);
        device_set_late_callback(d, on_late, &late);

        print_sync(&e, d, "first", &first);
        ASSERT_RESULT(&first, ETIMEDOUT, DEVICE_FAULT_TIMEOUT_UNKNOWN);

        /* The register is still busy with the first one for more than a second. Each operation waiting
         * behind it fails `timeout` after it was queued, in order. */
        queued = now(CLOCK_MONOTONIC);
        req = print_request("second");
        submit(d, &req, &second);
        run_for(&e, 150 * USEC_PER_MSEC);
        queued_third = now(CLOCK_MONOTONIC);
        req = print_request("third");
        submit(d, &req, &third);
        run_until(&e, &second.done);
        ASSERT_RESULT(&second, ETIMEDOUT, DEVICE_FAULT_TIMEOUT_BEFORE);
        ASSERT_TRUE(second.at - queued >= 300 * USEC_PER_MSEC);
        ASSERT_TRUE(second.at - queued < 1000 * USEC_PER_MSEC);
        ASSERT_FALSE(third.done);
        run_until(&e, &third.done);
        ASSERT_RESULT(&third, ETIMEDOUT, DEVICE_FAULT_TIMEOUT_BEFORE);
        ASSERT_TRUE(third.at - queued_third >= 300 * USEC_PER_MSEC);
        ASSERT_TRUE(third.at - second.at >= 100 * USEC_PER_MSEC);
        ASSERT_FALSE(late.done);

        run_until(&e, &late.done);
        ASSERT_OK(late.r.error);
        ASSERT_STREQ(late.receipt_id, "first");
        ASSERT_EQ_U(late.r.doc.fiscal_document_number, 2);

        /* "second" and "third" never reached the register. */
        req = find_request("second");
        submit_sync(&e, d, &req, &found);
        ASSERT_RESULT(&found, ENOENT, DEVICE_FAULT_NONE);
        req = find_request("third");
        submit_sync(&e, d, &req, &found);
        ASSERT_RESULT(&found, ENOENT, DEVICE_FAULT_NONE);
        req = find_request("first");
        submit_sync(&e, d, &req, &found);
        ASSERT_RESULT(&found, 0, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(found.r.doc.fiscal_document_number, 2);

        d = device_free(d);
        env_teardown(&e);
}

/* ---- faults ---- */

static void test_paper_out_then_cleared_prints_again(void) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        _cleanup_(device_freep) Device *d = NULL;
        Result r, status;
        Env e;

        env_setup(&e);
        d = device_new_ok(&e);
        run_until_idle(&e, d);
        ASSERT_NULL(device_get_last_fault_text(d));
        ASSERT_OK(device_debug_inject_fault(d, DEVICE_FAULT_PAPER_OUT, 0));

        for (unsigned i = 0; i < 2; i++) {
                print_sync(&e, d, "receipt-1", &r);
                ASSERT_RESULT(&r, ENOMEDIUM, DEVICE_FAULT_PAPER_OUT);
                ASSERT_EQ(r.state, DEVICE_STATE_FAULT);
                ASSERT_EQ(device_get_fault(d), DEVICE_FAULT_PAPER_OUT);
                ASSERT_STREQ(device_get_last_fault_text(d), "paper out");
        }

        submit_sync(&e, d, &(DeviceRequest) { .op = DEVICE_OP_STATUS }, &status);
        ASSERT_RESULT(&status, 0, DEVICE_FAULT_NONE);
        ASSERT_TRUE(status.r.have_status);
        ASSERT_EQ(status.r.status.condition, DEVICE_FAULT_PAPER_OUT);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_FAULT);
        ASSERT_EQ(device_get_fault(d), DEVICE_FAULT_PAPER_OUT);

        ASSERT_OK(device_state_to_json(d, &o));
        ASSERT_STREQ(json_object_get_string(json_get(o, "state")), "fault");
        ASSERT_STREQ(json_object_get_string(json_get(o, "fault")), "paper-out");
        ASSERT_STREQ(json_object_get_string(json_get(o, "last_fault")), "paper out");

        ASSERT_OK(device_debug_inject_fault(d, DEVICE_FAULT_NONE, 0));
        print_sync(&e, d, "receipt-1", &r);
        ASSERT_RESULT(&r, 0, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(r.r.doc.fiscal_document_number, 2);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_READY);
        ASSERT_EQ(device_get_fault(d), DEVICE_FAULT_NONE);
        /* Kept for the operator: what went wrong last. */
        ASSERT_STREQ(device_get_last_fault_text(d), "paper out");

        d = device_free(d);
        env_teardown(&e);
}

static void test_fault_injected_before_the_driver_is_open_applies(void) {
        _cleanup_(device_freep) Device *d = NULL;
        char sub[PATH_MAX / 2 + 8];
        Result r;
        Env e;

        env_setup(&e);
        /* Right after device_new(): the OPEN is queued or running on the worker. */
        d = device_new_ok(&e);
        ASSERT_OK(device_debug_inject_fault(d, DEVICE_FAULT_FN_FULL, 1));
        ASSERT_ERROR(device_debug_inject_fault(d, DEVICE_FAULT_ERROR, 1), EINVAL);
        ASSERT_ERROR(device_debug_inject_fault(d, DEVICE_FAULT_OFD_BLOCKED, 1), EINVAL);
        ASSERT_ERROR(device_debug_inject_fault(d, _DEVICE_FAULT_MAX, 1), EINVAL);

        print_sync(&e, d, "a", &r);
        ASSERT_RESULT(&r, ENOSPC, DEVICE_FAULT_FN_FULL);
        print_sync(&e, d, "a", &r);
        ASSERT_RESULT(&r, 0, DEVICE_FAULT_NONE);
        d = device_free(d);
        env_teardown(&e);

        /* Certainly before the open: the first one failed, the injection waits for the next. */
        env_setup(&e);
        snprintf(sub, sizeof sub, "%s/sub", e.dir);
        snprintf(e.path, sizeof e.path, "%s/emulator-fn.db", sub);
        d = device_new_ok(&e);
        run_until_idle(&e, d);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_FAULT);
        ASSERT_OK(device_debug_inject_fault(d, DEVICE_FAULT_PAPER_OUT, 1));
        ASSERT_OK(mkdir(sub, 0700));

        print_sync(&e, d, "a", &r);
        ASSERT_RESULT(&r, ENOMEDIUM, DEVICE_FAULT_PAPER_OUT);
        /* The OPEN in front of it saw the injected condition already. */
        ASSERT_NOT_NULL(device_get_status(d));
        print_sync(&e, d, "a", &r);
        ASSERT_RESULT(&r, 0, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(r.r.doc.fiscal_document_number, 2);
        d = device_free(d);
        env_teardown(&e);
}

static void test_failed_open_is_a_fault_and_the_next_operation_opens_again(void) {
        _cleanup_(device_freep) Device *d = NULL;
        char sub[PATH_MAX / 2 + 8];
        Result r;
        Env e;

        env_setup(&e);
        snprintf(sub, sizeof sub, "%s/sub", e.dir);
        snprintf(e.path, sizeof e.path, "%s/emulator-fn.db", sub);
        d = device_new_ok(&e);
        run_until_idle(&e, d);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_FAULT);
        ASSERT_EQ(device_get_fault(d), DEVICE_FAULT_ERROR);
        ASSERT_NULL(device_get_status(d));

        /* An OPEN goes in front of the print, and its failure is the print's: not "not connected". */
        print_sync(&e, d, "a", &r);
        ASSERT_RESULT(&r, ENOENT, DEVICE_FAULT_ERROR);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_FAULT);
        ASSERT_NOT_NULL(strstr(device_get_last_fault_text(d), "No such file"));
        ASSERT_TRUE(device_is_idle(d));

        ASSERT_OK(mkdir(sub, 0700));
        print_sync(&e, d, "a", &r);
        ASSERT_RESULT(&r, 0, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(r.r.doc.fiscal_document_number, 2);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_READY);
        ASSERT_NOT_NULL(device_get_status(d));

        /* Open now: the next one goes straight to the register. */
        print_sync(&e, d, "b", &r);
        ASSERT_RESULT(&r, 0, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(r.r.doc.fiscal_document_number, 3);

        d = device_free(d);
        env_teardown(&e);
}

/* ---- shifts ---- */

static void test_close_shift_closes_the_shift_and_the_next_print_opens_one(void) {
        _cleanup_(device_freep) Device *d = NULL;
        Result r, z, x, again, open;
        Env e;

        env_setup(&e);
        d = device_new_ok(&e);
        print_sync(&e, d, "a", &r);
        ASSERT_RESULT(&r, 0, DEVICE_FAULT_NONE);
        run_until_idle(&e, d);
        ASSERT_TRUE(device_get_shift_open(d));

        submit_sync(&e, d, &(DeviceRequest) { .op = DEVICE_OP_OPEN_SHIFT }, &open);
        ASSERT_RESULT(&open, EALREADY, DEVICE_FAULT_NONE);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_READY);

        submit_sync(&e, d, &(DeviceRequest) { .op = DEVICE_OP_REPORT_X, .cashier = "Ivanova" }, &x);
        ASSERT_RESULT(&x, 0, DEVICE_FAULT_NONE);
        ASSERT_EQ(x.r.report.type, DEVICE_REPORT_X);
        ASSERT_TRUE(x.r.report.shift_open);
        ASSERT_EQ_U(device_totals_receipts(&x.r.report.totals), 1);
        ASSERT_TRUE(device_get_shift_open(d));

        submit_sync(&e, d, &(DeviceRequest) { .op = DEVICE_OP_CLOSE_SHIFT, .shift_number = 1 }, &z);
        ASSERT_RESULT(&z, 0, DEVICE_FAULT_NONE);
        ASSERT_EQ(z.r.report.type, DEVICE_REPORT_Z);
        ASSERT_EQ_U(z.r.report.shift_number, 1);
        ASSERT_EQ_U(z.r.report.fiscal_document_number, 3);
        ASSERT_EQ(z.r.report.totals.by_type[RECEIPT_TYPE_SALE].total, 150000);
        run_until_idle(&e, d);
        ASSERT_FALSE(device_get_shift_open(d));
        ASSERT_EQ_U(device_get_shift_open_usec(d), 0);
        ASSERT_EQ_U(device_get_shift_number(d), 1);
        ASSERT_EQ_U(device_get_last_fiscal_document(d), 3);
        ASSERT_EQ_U(device_totals_receipts(&device_get_status(d)->shift_totals), 0);

        /* Again: the same Z, an answer and not a fault. */
        submit_sync(&e, d, &(DeviceRequest) { .op = DEVICE_OP_CLOSE_SHIFT, .shift_number = 1 }, &again);
        ASSERT_RESULT(&again, EALREADY, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(again.r.report.fiscal_document_number, 3);
        ASSERT_STREQ(again.r.report.fiscal_sign, z.r.report.fiscal_sign);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_READY);

        print_sync(&e, d, "b", &r);
        ASSERT_RESULT(&r, 0, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(r.r.doc.shift_number, 2);
        ASSERT_EQ_U(r.r.doc.fiscal_document_number, 5);
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
        DeviceState states[8];
} Changes;

static void on_change(Device *d, void *userdata) {
        Changes *c = userdata;

        if (c->n < ELEMENTSOF(c->states))
                c->states[c->n] = device_get_state(d);
        c->n++;
        c->last_state = device_get_state(d);
        c->last_fd = device_get_last_fiscal_document(d);
}

static void test_change_notifications_coalesce(void) {
        _cleanup_(device_freep) Device *d = NULL;
        Changes c = {};
        Result r;
        Env e;

        env_setup(&e);
        e.options.print_latency_min = e.options.print_latency_max = 200 * USEC_PER_MSEC;
        d = device_new_ok(&e);
        device_set_change_callback(d, on_change, &c);

        /* The OPEN's answer changes the state (unknown -> ready) and the status at once: said once. */
        run_until_idle(&e, d);
        ASSERT_EQ(c.n, 1);
        ASSERT_EQ(c.last_state, DEVICE_STATE_READY);

        /* A print: "printing" when it goes to the register, then its document, state and status in one. */
        c = (Changes) {};
        print_sync(&e, d, "a", &r);
        run_until_idle(&e, d);
        ASSERT_EQ(c.n, 2);
        ASSERT_EQ(c.states[0], DEVICE_STATE_PRINTING);
        ASSERT_EQ(c.states[1], DEVICE_STATE_READY);
        ASSERT_EQ_U(c.last_fd, 2);

        /* Nothing changed, nothing said. */
        c = (Changes) {};
        run_for(&e, 50 * USEC_PER_MSEC);
        ASSERT_EQ(c.n, 0);

        /* Never from inside a call of ours: only from the loop. */
        ASSERT_OK(device_debug_inject_fault(d, DEVICE_FAULT_PAPER_OUT, 0));
        submit(d, &(DeviceRequest) { .op = DEVICE_OP_STATUS }, &r);
        ASSERT_EQ(c.n, 0);
        run_until(&e, &r.done);
        run_until_idle(&e, d);
        ASSERT_EQ(c.n, 1);
        ASSERT_EQ(c.last_state, DEVICE_STATE_FAULT);

        d = device_free(d);
        env_teardown(&e);
}

static void test_state_json_has_the_register_keys(void) {
        _cleanup_(json_object_putp) json_object *before = NULL, *o = NULL;
        _cleanup_(device_freep) Device *d = NULL;
        DeviceRequest req;
        json_object *v, *shift;
        int64_t days;
        Result r;
        Env e;

        env_setup(&e);
        e.options.taxations = TAXATION_OSN | TAXATION_USN_INCOME;
        d = device_new_ok(&e);

        /* Before the first status: the loop's own state only. */
        ASSERT_OK(device_state_to_json(d, &before));
        ASSERT_STREQ(json_object_get_string(json_get(before, "driver")), "emulator");
        ASSERT_STREQ(json_object_get_string(json_get(before, "state")), "unknown");
        ASSERT_FALSE(json_object_object_get_ex(before, "model", &v));
        ASSERT_FALSE(json_object_object_get_ex(before, "shift", &v));

        run_until_idle(&e, d);
        req = (DeviceRequest) { .op = DEVICE_OP_DEBUG, .receipt_json = "{\"ofd_online\": false}" };
        submit_sync(&e, d, &req, &r);
        ASSERT_RESULT(&r, 0, DEVICE_FAULT_NONE);
        print_sync(&e, d, "a", &r);
        ASSERT_RESULT(&r, 0, DEVICE_FAULT_NONE);
        run_until_idle(&e, d);

        ASSERT_OK(device_state_to_json(d, &o));
        ASSERT_STREQ(json_object_get_string(json_get(o, "driver")), "emulator");
        ASSERT_STREQ(json_object_get_string(json_get(o, "state")), "ready");
        ASSERT_FALSE(json_object_object_get_ex(o, "fault", &v));
        ASSERT_NULL(json_get(o, "last_fault"));
        ASSERT_EQ(json_object_get_int64(json_get(o, "shift_number")), 1);
        ASSERT_TRUE(json_object_get_boolean(json_get(o, "shift_open")));
        ASSERT_EQ(strlen(json_object_get_string(json_get(o, "shift_open_time"))),
                  strlen("2026-11-29T03:17:26.000Z"));
        ASSERT_NOT_NULL(json_get(o, "shift_expires_time"));
        ASSERT_EQ(json_object_get_int64(json_get(o, "last_fiscal_document")), 2);

        ASSERT_STREQ(json_object_get_string(json_get(o, "model")), "kkt-adapter emulator");
        ASSERT_STREQ(json_object_get_string(json_get(o, "serial")), "0000000000000001");
        ASSERT_STREQ(json_object_get_string(json_get(o, "fn_number")), "9999078900000001");
        ASSERT_STREQ(json_object_get_string(json_get(o, "registration_number")), "0000000001000001");
        ASSERT_STREQ(json_object_get_string(json_get(o, "inn")), "7700000000");
        ASSERT_TRUE(json_object_is_type(json_get(o, "fn_valid_until"), json_type_string));
        /* 456 days from the first use a moment ago, in whole days rounded down. */
        days = json_object_get_int64(json_get(o, "fn_days_left"));
        ASSERT_TRUE(days == 455 || days == 456);
        ASSERT_EQ(json_object_get_int64(json_get(o, "fn_documents")), 2);
        ASSERT_EQ(json_object_get_int64(json_get(o, "fn_capacity")), 0);
        ASSERT_EQ(json_object_get_int64(json_get(o, "ofd_unsent")), 2);
        ASSERT_EQ(json_object_get_int64(json_get(o, "ofd_first_unsent")), 1);
        ASSERT_TRUE(json_object_is_type(json_get(o, "ofd_first_unsent_time"), json_type_string));
        ASSERT_EQ(json_object_get_int64(json_get(o, "ofd_unsent_days")), 0);

        v = json_get(o, "taxations");
        ASSERT_TRUE(json_object_is_type(v, json_type_array));
        ASSERT_EQ(json_object_array_length(v), 2);
        ASSERT_STREQ(json_object_get_string(json_object_array_get_idx(v, 0)), "osn");
        ASSERT_STREQ(json_object_get_string(json_object_array_get_idx(v, 1)), "usn_income");

        shift = json_get(o, "shift");
        ASSERT_EQ(json_object_get_int64(json_get(shift, "receipts")), 1);
        v = json_get(json_get(shift, "by_type"), "sale");
        ASSERT_EQ(json_object_get_int64(json_get(v, "count")), 1);
        ASSERT_STREQ(json_object_get_string(json_get(v, "total")), "1500.00");
        ASSERT_STREQ(json_object_get_string(json_get(json_get(v, "payments"), "card")), "1500.00");
        ASSERT_STREQ(json_object_get_string(json_get(json_get(v, "payments"), "cash")), "0.00");
        v = json_get(json_get(shift, "by_type"), "refund");
        ASSERT_EQ(json_object_get_int64(json_get(v, "count")), 0);
        ASSERT_STREQ(json_object_get_string(json_get(json_get(shift, "net"), "card")), "1500.00");
        ASSERT_STREQ(json_object_get_string(json_get(json_get(shift, "net"), "cash")), "0.00");

        d = device_free(d);
        env_teardown(&e);
}

static void test_bad_arguments_are_einval(void) {
        char long_id[DEVICE_RECEIPT_ID_MAX + 2], long_cashier[DEVICE_CASHIER_MAX * 4 + 2];
        Device *d = NULL;
        DeviceOptions o;
        Result r = {};
        Env e;

        env_setup(&e);
        o = e.options;
        o.driver = "atol-v10";
        ASSERT_ERROR(device_new(&d, &e.ctx, &o), ENOPKG);
        ASSERT_NULL(d);
        o = e.options;
        o.inn = "7700000000000";
        ASSERT_ERROR(device_new(&d, &e.ctx, &o), EINVAL);
        ASSERT_NULL(d);
        o = e.options;
        o.fn_number = "99990789000000012";
        ASSERT_ERROR(device_new(&d, &e.ctx, &o), EINVAL);
        ASSERT_NULL(d);

        d = device_new_ok(&e);
        memset(long_id, 'x', sizeof long_id - 1);
        long_id[sizeof long_id - 1] = 0;
        memset(long_cashier, 'c', sizeof long_cashier - 1);
        long_cashier[sizeof long_cashier - 1] = 0;
        for (DeviceOperation op = DEVICE_OP_PRINT; op <= DEVICE_OP_FIND; op++) {
                const DeviceRequest bad[] = {
                        { .op = op, .receipt_json = SALE },                     /* no receipt id */
                        { .op = op, .receipt_id = "", .receipt_json = SALE },
                        { .op = op, .receipt_id = long_id, .receipt_json = SALE },
                        { .op = op, .receipt_id = "a" },                        /* no receipt */
                };

                for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                        ASSERT_ERROR(device_submit(d, bad + i, on_result, &r), EINVAL);
        }
        {
                const DeviceRequest bad[] = {
                        { .op = DEVICE_OP_DEBUG },                              /* no settings */
                        { .op = _DEVICE_OP_MAX },
                        { .op = (DeviceOperation) -1 },
                        { .op = DEVICE_OP_REPORT_X, .cashier = long_cashier },
                        { .op = DEVICE_OP_REPORT_X, .cashier_inn = "7700000000000" },
                };

                for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                        ASSERT_ERROR(device_submit(d, bad + i, on_result, &r), EINVAL);
        }
        run_until_idle(&e, d);
        ASSERT_FALSE(r.done); /* none of them was called back */

        /* A receipt id of exactly the maximum is fine. */
        long_id[DEVICE_RECEIPT_ID_MAX] = 0;
        print_sync(&e, d, long_id, &r);
        ASSERT_RESULT(&r, 0, DEVICE_FAULT_NONE);
        ASSERT_STREQ(r.r.doc.receipt_id, long_id);
        d = device_free(d);

        ASSERT_STREQ(device_fault_to_string(DEVICE_FAULT_TIMEOUT_UNKNOWN), "timeout-unknown");
        ASSERT_STREQ(device_fault_to_string(DEVICE_FAULT_OFD_BLOCKED), "ofd-blocked");
        ASSERT_NULL(device_fault_to_string(_DEVICE_FAULT_MAX));
        ASSERT_EQ(device_fault_from_string("paper-out"), DEVICE_FAULT_PAPER_OUT);
        ASSERT_EQ(device_fault_from_string("cover-open"), DEVICE_FAULT_COVER_OPEN);
        ASSERT_EQ(device_fault_from_string("nonsense"), -EINVAL);
        ASSERT_EQ(device_fault_from_string(NULL), -EINVAL);
        ASSERT_EQ(device_state_from_string("printing"), DEVICE_STATE_PRINTING);
        ASSERT_EQ(device_fault_to_errno(DEVICE_FAULT_FN_FULL), -ENOSPC);
        ASSERT_EQ(device_fault_to_errno(DEVICE_FAULT_OFD_BLOCKED), -EKEYEXPIRED);
        ASSERT_EQ(device_fault_to_errno(DEVICE_FAULT_REJECTED), -EIO);
        ASSERT_TRUE(device_fault_is_permanent(DEVICE_FAULT_REJECTED));
        ASSERT_FALSE(device_fault_is_permanent(DEVICE_FAULT_OFD_BLOCKED));
        ASSERT_STREQ(device_operation_to_string(DEVICE_OP_CLOSE_SHIFT), "close-shift");
        ASSERT_STREQ(device_payment_form_to_string(DEVICE_PAYMENT_ELECTRONIC), "card");
        ASSERT_STREQ(device_report_type_to_string(DEVICE_REPORT_Z), "z");
        ASSERT_NOT_NULL(device_driver_find("emulator"));
        ASSERT_NULL(device_driver_find("atol-v10"));
        ASSERT_NOT_NULL(device_driver_find("atol-web"));
        ASSERT_STREQ(device_driver_names()[0], "emulator");
        ASSERT_STREQ(device_driver_names()[1], "atol-web");
        ASSERT_NULL(device_driver_names()[2]);
        env_teardown(&e);
}

/* ---- shutting down ---- */

static void test_free_during_a_long_print_finishes_it_and_cancels_the_rest(void) {
        Result first, second;
        DeviceRequest req;
        Device *d = NULL;
        usec_t start;
        Env e;

        env_setup(&e);
        e.options.timeout = 60 * USEC_PER_SEC;
        e.options.print_latency_min = e.options.print_latency_max = 30 * USEC_PER_SEC;
        d = device_new_ok(&e);
        req = print_request("first");
        submit(d, &req, &first);
        req = print_request("second");
        submit(d, &req, &second);
        second.try_resubmit = true;
        {
                usec_t deadline = now(CLOCK_MONOTONIC) + 10 * USEC_PER_SEC;

                while (device_get_state(d) != DEVICE_STATE_PRINTING) {
                        ASSERT_TRUE(now(CLOCK_MONOTONIC) < deadline);
                        ASSERT_OK(sd_event_run(e.event, 100 * USEC_PER_MSEC));
                }
        }

        start = now(CLOCK_MONOTONIC);
        d = device_free(d);
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - start < 5 * USEC_PER_SEC);

        /* The register made the first document anyway; the second was never sent. */
        ASSERT_RESULT(&first, 0, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(first.r.doc.fiscal_document_number, 2);
        ASSERT_RESULT(&second, ECANCELED, DEVICE_FAULT_NONE);
        /* Once freeing began, nothing new is taken. */
        ASSERT_EQ(second.resubmit, -ESHUTDOWN);

        env_teardown(&e);
}

static void test_free_with_a_timed_out_print_at_the_register_reports_it_late(void) {
        Result first, queued;
        DeviceRequest req;
        Device *d = NULL;
        Late late = {};
        usec_t start;
        Env e;

        env_setup(&e);
        e.options.timeout = 200 * USEC_PER_MSEC;
        e.options.print_latency_min = e.options.print_latency_max = 30 * USEC_PER_SEC;
        d = device_new_ok(&e);
        device_set_late_callback(d, on_late, &late);
        print_sync(&e, d, "stuck", &first);
        ASSERT_RESULT(&first, ETIMEDOUT, DEVICE_FAULT_TIMEOUT_UNKNOWN);
        req = print_request("queued");
        submit(d, &req, &queued);

        /* What the register still owes comes back through the late callback, from inside device_free(). */
        start = now(CLOCK_MONOTONIC);
        d = device_free(d);
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - start < 5 * USEC_PER_SEC);
        ASSERT_EQ(late.calls, 1);
        ASSERT_STREQ(late.receipt_id, "stuck");
        ASSERT_OK(late.r.error);
        ASSERT_EQ_U(late.r.doc.fiscal_document_number, 2);
        ASSERT_RESULT(&queued, ECANCELED, DEVICE_FAULT_NONE);

        env_teardown(&e);
}

/* ---- known bugs ---- */

static void test_find_of_an_earlier_receipt_leaves_the_shift_closed(void) {
        _cleanup_(device_freep) Device *d = NULL;
        DeviceRequest req;
        Result r;
        Env e;

        env_setup(&e);
        d = device_new_ok(&e);
        print_sync(&e, d, "a", &r);
        ASSERT_RESULT(&r, 0, DEVICE_FAULT_NONE);
        submit_sync(&e, d, &(DeviceRequest) { .op = DEVICE_OP_CLOSE_SHIFT }, &r);
        ASSERT_RESULT(&r, 0, DEVICE_FAULT_NONE);
        run_until_idle(&e, d);
        ASSERT_FALSE(device_get_shift_open(d));

        req = find_request("a");
        submit_sync(&e, d, &req, &r);
        ASSERT_RESULT(&r, 0, DEVICE_FAULT_NONE);
        ASSERT_EQ_U(r.r.doc.shift_number, 1);
        run_until_idle(&e, d);
        ASSERT_FALSE(device_get_shift_open(d));
        ASSERT_FALSE(device_get_status(d)->shift_open);

        d = device_free(d);
        env_teardown(&e);
}

static void test_late_failed_internal_open_fails_only_the_operation_behind_it(void) {
        _cleanup_(device_freep) Device *d = NULL;
        _cleanup_(sqlite3_close_v2p) sqlite3 *holder = NULL;
        char sub[PATH_MAX / 2 + 8];
        Result a, b, found;
        DeviceRequest req;
        Env e;

        env_setup(&e);
        e.options.timeout = 700 * USEC_PER_MSEC;
        snprintf(sub, sizeof sub, "%s/sub", e.dir);
        snprintf(e.path, sizeof e.path, "%s/emulator-fn.db", sub);
        d = device_new_ok(&e);
        run_until_idle(&e, d);
        ASSERT_EQ(device_get_state(d), DEVICE_STATE_FAULT); /* not open: every operation gets an OPEN */

        /* Another holder of the fiscal memory makes the next open wait out the emulator's busy timeout
         * (1 s, longer than the operation's timeout) and fail. */
        ASSERT_OK(mkdir(sub, 0700));
        ASSERT_EQ(sqlite3_open(e.path, &holder), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(holder, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);

        /* a: its OPEN times out, so a fails unsent. */
        print_sync(&e, d, "a", &a);
        ASSERT_RESULT(&a, ETIMEDOUT, DEVICE_FAULT_TIMEOUT_BEFORE);

        /* b, queued while that OPEN is still at the driver, waits for it; when the OPEN comes back failed, b
         * deserves an OPEN of its own, which succeeds once the holder is gone. */
        req = print_request("b");
        submit(d, &req, &b);
        {
                usec_t deadline = now(CLOCK_MONOTONIC) + 10 * USEC_PER_SEC;

                while (!b.done && device_get_fault(d) != DEVICE_FAULT_ERROR) {
                        ASSERT_TRUE(now(CLOCK_MONOTONIC) < deadline);
                        ASSERT_OK(sd_event_run(e.event, 10 * USEC_PER_MSEC));
                }
        }
        ASSERT_EQ(sqlite3_exec(holder, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
        (void) sqlite3_close_v2(TAKE_PTR(holder));
        run_until(&e, &b.done);
        ASSERT_RESULT(&b, 0, DEVICE_FAULT_NONE);

        req = find_request("a");
        submit_sync(&e, d, &req, &found);
        ASSERT_RESULT(&found, ENOENT, DEVICE_FAULT_NONE);

        d = device_free(d);
        env_teardown(&e);
}

int main(void) {
#if !ENABLE_DEBUG_HOOKS
        return EXIT_TEST_SKIP; /* the fault injection is only there with the debug hooks */
#endif
        TEST_RUN(test_fifty_prints_complete_in_order_with_consecutive_numbers);
        TEST_RUN(test_get_status_is_null_before_the_first_open_answer_then_set);
        TEST_RUN(test_long_print_does_not_block_the_loop);
        TEST_RUN(test_timeout_after_print_is_unknown_and_find_matches_it);
        TEST_RUN(test_late_callback_gets_the_result_of_a_print_that_timed_out);
        TEST_RUN(test_timeout_before_print_is_reported_as_nothing_printed);
        TEST_RUN(test_operation_waiting_behind_a_stuck_one_fails_unsent);
        TEST_RUN(test_paper_out_then_cleared_prints_again);
        TEST_RUN(test_fault_injected_before_the_driver_is_open_applies);
        TEST_RUN(test_failed_open_is_a_fault_and_the_next_operation_opens_again);
        TEST_RUN(test_close_shift_closes_the_shift_and_the_next_print_opens_one);
        TEST_RUN(test_change_notifications_coalesce);
        TEST_RUN(test_state_json_has_the_register_keys);
        TEST_RUN(test_bad_arguments_are_einval);
        TEST_RUN(test_free_during_a_long_print_finishes_it_and_cancels_the_rest);
        TEST_RUN(test_free_with_a_timed_out_print_at_the_register_reports_it_late);

        TEST_RUN(test_find_of_an_earlier_receipt_leaves_the_shift_closed);
        TEST_RUN(test_late_failed_internal_open_fails_only_the_operation_behind_it);
        return EXIT_SUCCESS;
}
