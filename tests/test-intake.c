/* SPDX-License-Identifier: MIT */
/* Intake on a real sd-event loop with a real Store in a temporary directory, and for the print paths the
 * emulator behind a real Device and Printer: a new receipt answered once durable, a replay answered with the
 * first answer (not the receipt's state now), a key with another body, a key still in flight, a full
 * buffer, a missing key, the answer after a print and the one when the print outlasts the response
 * timeout, and shutdown. What integration tests saw only through HTTP. */

#include <limits.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "device.h"
#include "intake.h"
#include "json-util.h"
#include "printer.h"
#include "receipt-state.h"
#include "store.h"
#include "test-loop.h"
#include "test-util.h"
#include "tests.h"
#include "time-util.h"

typedef struct Env {
        char dir[PATH_MAX / 2];
        char db_path[PATH_MAX];
        char fn_path[PATH_MAX];
        sd_event *event;
        Store *store;
        Intake *intake;
        Device *device;
        Printer *printer;
} Env;

/* What one submission's callback heard: its reply, copied. */
typedef struct Answer {
        unsigned n_heard;
        IntakeError error;
        bool replayed;
        char id[STORE_RECEIPT_ID_MAX];
        ReceiptState state;
        bool fiscal_doc;
        char message[512];
        char detail[512];
} Answer;

#define RUN_UNTIL(e, cond) TEST_RUN_UNTIL((e)->event, cond)

static bool env_quiet(Env *e) {
        return (!e->printer || printer_is_idle(e->printer)) && (!e->device || device_is_idle(e->device)) &&
               intake_in_flight(e->intake) == 0 && store_is_idle(e->store);
}

/* A store of `capacity` (0: the default) and intake, no register. */
static void env_setup(Env *e, unsigned capacity) {
        const char *tmp = getenv("TMPDIR") ?: "/tmp";

        *e = (Env) {};
        snprintf(e->dir, sizeof e->dir, "%s/test-intake-XXXXXX", tmp);
        ASSERT_NOT_NULL(mkdtemp(e->dir));
        snprintf(e->db_path, sizeof e->db_path, "%s/buffer.db", e->dir);
        snprintf(e->fn_path, sizeof e->fn_path, "%s/emulator-fn.db", e->dir);
        ASSERT_OK(sd_event_new(&e->event));
        ASSERT_OK(store_open(&e->store, e->event, e->db_path, &(StoreOptions) { .capacity = capacity }));
        ASSERT_OK(intake_new(&e->intake, e->store, &(ReceiptOptions) {}));
}

/* The same with the emulator (each print taking print_latency) and a printer that intake waits for up to
 * response_timeout. */
static void env_setup_printing(Env *e, usec_t print_latency, usec_t response_timeout) {
        env_setup(e, 0);
        ASSERT_OK(device_new(&e->device, &(DeviceContext) { .event = e->event },
                             &(DeviceOptions) {
                                     .driver = "emulator",
                                     .timeout = 30 * USEC_PER_SEC,
                                     .emulator_path = e->fn_path,
                                     .print_latency_min = print_latency,
                                     .print_latency_max = print_latency,
                             }));
        RUN_UNTIL(e, device_get_status(e->device));
        ASSERT_OK(printer_new(&e->printer, e->event, e->store, e->device, NULL));
        intake_set_printer(e->intake, e->printer, e->event, response_timeout);
        ASSERT_OK(printer_start(e->printer));
        RUN_UNTIL(e, env_quiet(e));
}

/* In the Manager's order: the register first, then the store, then intake and the printer. */
static void env_teardown(Env *e) {
        RUN_UNTIL(e, env_quiet(e));
        if (e->printer)
                printer_stop(e->printer);
        e->device = device_free(e->device);
        e->store = store_free(e->store);
        e->intake = intake_free(e->intake);
        e->printer = printer_free(e->printer);
        e->event = sd_event_unref(e->event);
        test_rm_rf(e->dir);
}

static void on_answer(const IntakeReply *reply, void *userdata) {
        Answer *a = userdata;

        a->n_heard++;
        a->error = reply->error;
        a->replayed = reply->replayed;
        snprintf(a->detail, sizeof a->detail, "%s", strempty(reply->detail));
        if (reply->error != INTAKE_OK)
                return;
        ASSERT_NOT_NULL(reply->receipt);
        ASSERT_NOT_NULL(reply->message);
        snprintf(a->id, sizeof a->id, "%s", reply->receipt->id);
        a->state = receipt_state_of(reply->receipt);
        a->fiscal_doc = reply->receipt->fiscal_doc != NULL;
        snprintf(a->message, sizeof a->message, "%s", reply->message);
}

/* A sale of `rubles` paid by card. */
static void sale(char *buf, size_t l, unsigned rubles) {
        snprintf(buf, l,
                 "{\"pos_id\":\"POS-1\",\"type\":\"sale\",\"taxation\":\"osn\","
                 "\"items\":[{\"name\":\"Frame\",\"price\":\"%u.00\",\"quantity\":\"1.000\",\"total\":\"%u.00\","
                 "\"vat\":\"vat22\"}],"
                 "\"payments\":[{\"type\":\"card\",\"amount\":\"%u.00\"}],\"total\":\"%u.00\"}",
                 rubles, rubles, rubles, rubles);
}

static void submit(Env *e, const char *key, const char *body, Answer *a) {
        *a = (Answer) {};
        ASSERT_OK(intake_submit(e->intake, key, body, strlen(body), on_answer, a));
}

static void submit_and_wait(Env *e, const char *key, const char *body, Answer *a) {
        submit(e, key, body, a);
        RUN_UNTIL(e, a->n_heard > 0);
        ASSERT_EQ(a->n_heard, 1U);
}

/* A sale of 1 ruble under key1, answered OK, then one of 2 rubles under key2: its answer in *ret. */
static void submit_two(Env *e, const char *key1, const char *key2, Answer *ret) {
        char body[512];
        Answer first;

        sale(body, sizeof body, 1);
        submit_and_wait(e, key1, body, &first);
        ASSERT_EQ(first.error, INTAKE_OK);
        sale(body, sizeof body, 2);
        submit_and_wait(e, key2, body, ret);
}

/* The submission was refused with `error`, which HTTP answers with `http_status`. */
static void assert_refused(const Answer *a, IntakeError error, unsigned http_status) {
        ASSERT_EQ(a->n_heard, 1U);
        ASSERT_EQ(a->error, error);
        ASSERT_EQ(intake_error_to_http_status(a->error), http_status);
}

/* ---- without a register ---- */

static void test_new_receipt_is_answered_buffered_once_durable(void) {
        Env e;
        Answer a;
        char body[512];

        env_setup(&e, 0);
        sale(body, sizeof body, 100);
        submit_and_wait(&e, "key-1", body, &a);
        ASSERT_EQ(a.error, INTAKE_OK);
        ASSERT_FALSE(a.replayed);
        ASSERT_EQ(a.state, RECEIPT_STATE_BUFFERED);
        ASSERT_FALSE(a.fiscal_doc);
        ASSERT_STREQ(a.message, "Receipt stored durably; it will be printed and sent to the OFD");
        ASSERT_TRUE(a.id[0] != 0);
        ASSERT_EQ(store_get_counters(e.store)->pending, 1U);
        ASSERT_EQ(intake_get_stats(e.intake)->accepted, 1U);
        env_teardown(&e);
}

static void test_replay_with_the_same_body_returns_the_first_answer(void) {
        Env e;
        Answer first, again;
        char body[512];

        env_setup(&e, 0);
        sale(body, sizeof body, 100);
        submit_and_wait(&e, "key-1", body, &first);
        submit_and_wait(&e, "key-1", body, &again);
        ASSERT_EQ(again.error, INTAKE_OK);
        ASSERT_TRUE(again.replayed);
        ASSERT_STREQ(again.id, first.id);
        ASSERT_EQ(again.state, first.state);
        ASSERT_STREQ(again.message, first.message);
        /* Nothing stored twice. */
        ASSERT_EQ(store_get_counters(e.store)->pending, 1U);
        ASSERT_EQ(intake_get_stats(e.intake)->replayed, 1U);
        env_teardown(&e);
}

static void test_same_key_with_another_body_is_a_key_mismatch(void) {
        Env e;
        Answer other;

        env_setup(&e, 0);
        submit_two(&e, "key-1", "key-1", &other);
        assert_refused(&other, INTAKE_KEY_MISMATCH, 422);
        ASSERT_STREQ(intake_error_to_bus_error(other.error), "KeyMismatch");
        ASSERT_EQ(store_get_counters(e.store)->pending, 1U);
        env_teardown(&e);
}

static void test_same_key_while_the_first_is_in_flight_is_a_conflict(void) {
        Env e;
        Answer first, second;
        char body[512];

        env_setup(&e, 0);
        sale(body, sizeof body, 100);
        /* The store commits on its writer thread: the first is still in flight when the second comes. */
        submit(&e, "key-1", body, &first);
        submit(&e, "key-1", body, &second);
        RUN_UNTIL(&e, first.n_heard > 0 && second.n_heard > 0);
        ASSERT_EQ(first.error, INTAKE_OK);
        assert_refused(&second, INTAKE_CONFLICT, 409);
        env_teardown(&e);
}

static void test_full_buffer_refuses_with_buffer_full(void) {
        Env e;
        Answer b;

        env_setup(&e, 1);
        submit_two(&e, "key-1", "key-2", &b);
        assert_refused(&b, INTAKE_BUFFER_FULL, 503);
        ASSERT_EQ(store_get_counters(e.store)->pending, 1U);
        ASSERT_EQ(intake_get_stats(e.intake)->rejected_full, 1U);
        env_teardown(&e);
}

static void test_missing_key_and_bad_body_are_bad_requests(void) {
        Env e;
        Answer a;
        char body[512];

        env_setup(&e, 0);
        sale(body, sizeof body, 100);
        submit_and_wait(&e, NULL, body, &a);
        assert_refused(&a, INTAKE_BAD_REQUEST, 400);
        submit_and_wait(&e, "key-1", "{not json", &a);
        assert_refused(&a, INTAKE_BAD_REQUEST, 400);
        ASSERT_EQ(store_get_counters(e.store)->pending, 0U);
        env_teardown(&e);
}

static void test_shutdown_answers_unavailable(void) {
        Env e;
        Answer a;
        char body[512];

        env_setup(&e, 0);
        sale(body, sizeof body, 100);
        intake_shutdown(e.intake);
        submit_and_wait(&e, "key-1", body, &a);
        assert_refused(&a, INTAKE_UNAVAILABLE, 503);
        ASSERT_EQ(store_get_counters(e.store)->pending, 0U);
        env_teardown(&e);
}

/* ---- with a register ---- */

static void test_printed_receipt_is_answered_with_its_fiscal_document(void) {
        Env e;
        Answer a, again;
        char body[512];

        env_setup_printing(&e, 0, 10 * USEC_PER_SEC);
        sale(body, sizeof body, 100);
        submit_and_wait(&e, "key-1", body, &a);
        ASSERT_EQ(a.error, INTAKE_OK);
        ASSERT_EQ(a.state, RECEIPT_STATE_PRINTED);
        ASSERT_TRUE(a.fiscal_doc);
        ASSERT_STREQ(a.message, "Receipt printed successfully");

        submit_and_wait(&e, "key-1", body, &again);
        ASSERT_TRUE(again.replayed);
        ASSERT_EQ(again.state, RECEIPT_STATE_PRINTED);
        ASSERT_TRUE(again.fiscal_doc);
        ASSERT_STREQ(again.id, a.id);
        env_teardown(&e);
}

static void test_print_slower_than_the_response_timeout_is_answered_buffered(void) {
        Env e;
        Answer a, again;
        char body[512];
        usec_t start;

        env_setup_printing(&e, 2 * USEC_PER_SEC, 100 * USEC_PER_MSEC);
        sale(body, sizeof body, 100);
        start = now(CLOCK_MONOTONIC);
        submit_and_wait(&e, "key-1", body, &a);
        ASSERT_EQ(a.error, INTAKE_OK);
        ASSERT_EQ(a.state, RECEIPT_STATE_BUFFERED);
        ASSERT_FALSE(a.fiscal_doc);
        /* Answered at the timeout, not when the register finished. */
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - start < 2 * USEC_PER_SEC);

        /* Printing went on; the replay still says what the first answer said. */
        RUN_UNTIL(&e, printer_get_stats(e.printer)->printed == 1 && env_quiet(&e));
        submit_and_wait(&e, "key-1", body, &again);
        ASSERT_TRUE(again.replayed);
        ASSERT_STREQ(again.id, a.id);
        ASSERT_EQ(again.state, RECEIPT_STATE_BUFFERED);
        ASSERT_STREQ(again.message, a.message);
        env_teardown(&e);
}

int main(void) {
        TEST_RUN(test_new_receipt_is_answered_buffered_once_durable);
        TEST_RUN(test_replay_with_the_same_body_returns_the_first_answer);
        TEST_RUN(test_same_key_with_another_body_is_a_key_mismatch);
        TEST_RUN(test_same_key_while_the_first_is_in_flight_is_a_conflict);
        TEST_RUN(test_full_buffer_refuses_with_buffer_full);
        TEST_RUN(test_missing_key_and_bad_body_are_bad_requests);
        TEST_RUN(test_shutdown_answers_unavailable);
        TEST_RUN(test_printed_receipt_is_answered_with_its_fiscal_document);
        TEST_RUN(test_print_slower_than_the_response_timeout_is_answered_buffered);
        return 0;
}
