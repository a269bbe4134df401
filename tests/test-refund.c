/* SPDX-License-Identifier: MIT */
/* The refund check against a real Store in a temporary directory on a real sd-event loop: the original named
 * by receipt id, Idempotency-Key or fiscal document number; the verdict from its OFD state and type; the
 * answer's JSON with exact money after earlier returns; bad references. */

#include <dirent.h>
#include <limits.h>
#include <sys/stat.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "json-util.h"
#include "refund.h"
#include "store.h"
#include "tests.h"
#include "time-util.h"

#define NO_SUCH_ID "01900000-0000-7000-8000-000000000000"

typedef struct Env {
        char dir[PATH_MAX / 2];
        char path[PATH_MAX];
        sd_event *event;
        Store *store;
} Env;

/* What the check answered: the verdict, and the original's fields copied out of the callback. */
typedef struct Check {
        bool done;
        int error;
        bool allowed;
        char sync_status[32];
        char reason[256];
        bool have_original;
        char original_id[STORE_RECEIPT_ID_MAX];
        json_object *json;      /* refund_check_to_json() inside the callback; NULL on error */
} Check;

static void env_setup(Env *e) {
        const char *tmp = getenv("TMPDIR") ?: "/tmp";

        *e = (Env) {};
        snprintf(e->dir, sizeof e->dir, "%s/test-refund-XXXXXX", tmp);
        ASSERT_NOT_NULL(mkdtemp(e->dir));
        snprintf(e->path, sizeof e->path, "%s/buffer.db", e->dir);
        ASSERT_OK(sd_event_new(&e->event));
        ASSERT_OK(store_open(&e->store, e->event, e->path, &(StoreOptions) {}));
}

static void env_teardown(Env *e) {
        DIR *d;
        struct dirent *de;

        e->store = store_free(e->store);
        e->event = sd_event_unref(e->event);
        d = opendir(e->dir);
        ASSERT_NOT_NULL(d);
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        ASSERT_OK(unlinkat(dirfd(d), de->d_name, 0));
        closedir(d);
        ASSERT_OK(rmdir(e->dir));
}

#define RUN_UNTIL(e, cond)                                                                              \
        do {                                                                                            \
                usec_t _deadline_ = now(CLOCK_MONOTONIC) + 30 * USEC_PER_SEC;                           \
                while (!(cond)) {                                                                       \
                        if (now(CLOCK_MONOTONIC) >= _deadline_) {                                       \
                                fprintf(stderr, "%s:%d: gave up waiting for %s\n", __FILE__, __LINE__,  \
                                        #cond);                                                         \
                                exit(EXIT_FAILURE);                                                     \
                        }                                                                               \
                        ASSERT_OK(sd_event_run((e)->event, 100 * USEC_PER_MSEC));                       \
                }                                                                                       \
        } while (0)

/* ---- receipts in the store ---- */

typedef struct Submitted {
        bool done;
        int error;
        StoreSubmitOutcome outcome;
        char id[STORE_RECEIPT_ID_MAX];
} Submitted;

static void on_submit(Store *s, int error, StoreSubmitOutcome outcome, const StoreReceipt *r,
                      void *userdata) {
        Submitted *x = userdata;

        x->done = true;
        x->error = error;
        x->outcome = outcome;
        if (r && outcome == STORE_SUBMIT_CREATED)
                snprintf(x->id, sizeof x->id, "%s", r->id);
}

/* A receipt of `type` for `total` kopecks under Idempotency-Key `key`; a return names its `original`. */
static void submit(Env *e, const char *key, const char *type, int64_t total, const char *original,
                   char *ret_id) {
        const char *original_type = !original ? NULL : streq(type, "refund") ? "sale" : "purchase";
        Submitted x = {};

        ASSERT_OK(store_submit_receipt(e->store,
                                       &(StoreReceiptNew) {
                                               .idempotency_key = key,
                                               .request_hash = key,
                                               .pos_id = "POS-1",
                                               .type = type,
                                               .total_kopecks = total,
                                               .receipt_data = "{}",
                                               .original = original,
                                               .original_type = original_type,
                                       },
                                       on_submit, &x));
        RUN_UNTIL(e, x.done);
        ASSERT_OK(x.error);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_CREATED);
        strcpy(ret_id, x.id);
}

typedef struct Done {
        bool done;
        int result;
} Done;

static void on_done(Store *s, int result, void *userdata) {
        Done *d = userdata;

        d->done = true;
        d->result = result;
}

static void on_admin(Store *s, int error, const StoreReceipt *r, void *userdata) {
        Done *d = userdata;

        d->done = true;
        d->result = error;
}

static void mark_printed(Env *e, const char *id, uint32_t fd) {
        char doc[128];
        Done d = {};

        snprintf(doc, sizeof doc, "{\"fiscal_document_number\":%" PRIu32 ",\"fiscal_sign\":\"0123456789\"}",
                 fd);
        ASSERT_OK(store_mark_printed(e->store, id, doc, now(CLOCK_REALTIME), on_done, &d));
        RUN_UNTIL(e, d.done);
        ASSERT_OK(d.result);
}

static void mark_synced(Env *e, const char *id) {
        Done d = {};

        ASSERT_OK(store_mark_synced(e->store, id, "{\"status\":\"accepted\"}", on_done, &d));
        RUN_UNTIL(e, d.done);
        ASSERT_OK(d.result);
}

/* ---- the check ---- */

static void on_check(const RefundCheck *c, void *userdata) {
        Check *x = userdata;

        ASSERT_FALSE(x->done);
        x->done = true;
        x->error = c->error;
        x->allowed = c->allowed;
        snprintf(x->sync_status, sizeof x->sync_status, "%s", strempty(c->sync_status));
        snprintf(x->reason, sizeof x->reason, "%s", c->reason);
        x->have_original = c->original != NULL;
        ASSERT_EQ(c->error >= 0, c->original != NULL);
        if (c->original) {
                snprintf(x->original_id, sizeof x->original_id, "%s", c->original->id);
                ASSERT_OK(refund_check_to_json(c, &x->json));
        }
}

static void check(Env *e, const char *ref, Check *ret) {
        *ret = (Check) {};
        ASSERT_OK(refund_check(e->store, ref, on_check, ret));
        ASSERT_FALSE(ret->done); /* never from inside the call */
        RUN_UNTIL(e, ret->done);
}

static void check_done(Check *c) {
        json_object_put(c->json);
        c->json = NULL;
}

static json_object *json_get(json_object *o, const char *key) {
        json_object *v = NULL;

        if (!json_object_object_get_ex(o, key, &v)) {
                fprintf(stderr, "missing key \"%s\" in %s\n", key, json_object_to_json_string(o));
                ASSERT_TRUE(false);
        }
        return v;
}

static const char *json_string(json_object *o, const char *key) {
        json_object *v = json_get(o, key);

        ASSERT_TRUE(json_object_is_type(v, json_type_string));
        return json_object_get_string(v);
}

static bool json_has(json_object *o, const char *key) {
        return json_object_object_get_ex(o, key, NULL);
}

/* ---- tests ---- */

static void test_unknown_reference_is_enoent(void) {
        Check c;
        Env e;

        env_setup(&e);
        check(&e, NO_SUCH_ID, &c);
        ASSERT_ERROR(c.error, ENOENT);
        ASSERT_FALSE(c.allowed);
        ASSERT_FALSE(c.have_original);
        ASSERT_NULL(c.json);
        check(&e, "no-such-key", &c);
        ASSERT_ERROR(c.error, ENOENT);
        check(&e, "424242", &c); /* digits: no such fiscal document either */
        ASSERT_ERROR(c.error, ENOENT);
        env_teardown(&e);
}

static void test_pending_sale_is_not_allowed_and_the_reason_names_it(void) {
        char id[STORE_RECEIPT_ID_MAX], expected[256];
        Check c;
        Env e;

        env_setup(&e);
        submit(&e, "sale-1", "sale", 150000, NULL, id);
        check(&e, id, &c);
        ASSERT_OK(c.error);
        ASSERT_FALSE(c.allowed);
        ASSERT_STREQ(c.sync_status, "pending");
        snprintf(expected, sizeof expected,
                 "Refund blocked: original receipt %s not synced to the OFD (pending)", id);
        ASSERT_STREQ(c.reason, expected);
        ASSERT_STREQ(c.original_id, id);
        ASSERT_FALSE(json_object_get_boolean(json_get(c.json, "allowed")));
        ASSERT_STREQ(json_string(c.json, "sync_status"), "pending");
        ASSERT_STREQ(json_string(c.json, "reason"), expected);
        check_done(&c);

        /* Printed is not enough: the OFD must have acknowledged it. */
        mark_printed(&e, id, 7);
        check(&e, id, &c);
        ASSERT_FALSE(c.allowed);
        ASSERT_STREQ(c.sync_status, "pending");
        check_done(&c);
        env_teardown(&e);
}

static void test_synced_sale_is_allowed(void) {
        char id[STORE_RECEIPT_ID_MAX];
        Check c;
        Env e;

        env_setup(&e);
        submit(&e, "sale-1", "sale", 150000, NULL, id);
        mark_printed(&e, id, 7);
        mark_synced(&e, id);
        check(&e, id, &c);
        ASSERT_OK(c.error);
        ASSERT_TRUE(c.allowed);
        ASSERT_STREQ(c.sync_status, "synced");
        ASSERT_STREQ(c.reason, "");
        ASSERT_TRUE(json_object_get_boolean(json_get(c.json, "allowed")));
        ASSERT_STREQ(json_string(c.json, "sync_status"), "synced");
        ASSERT_FALSE(json_has(c.json, "reason"));
        check_done(&c);
        env_teardown(&e);
}

static void test_a_purchase_is_refundable_by_the_same_rule(void) {
        char id[STORE_RECEIPT_ID_MAX];
        Check c;
        Env e;

        env_setup(&e);
        submit(&e, "purchase-1", "purchase", 5000, NULL, id);
        check(&e, id, &c);
        ASSERT_FALSE(c.allowed);
        check_done(&c);
        mark_printed(&e, id, 3);
        mark_synced(&e, id);
        check(&e, id, &c);
        ASSERT_TRUE(c.allowed);
        ASSERT_STREQ(json_string(c.json, "original_type"), "purchase");
        check_done(&c);
        env_teardown(&e);
}

static void test_a_refund_as_original_is_not_a_sale(void) {
        char sale[STORE_RECEIPT_ID_MAX], refund[STORE_RECEIPT_ID_MAX];
        Check c;
        Env e;

        env_setup(&e);
        submit(&e, "sale-1", "sale", 10000, NULL, sale);
        submit(&e, "refund-1", "refund", 4000, sale, refund);
        /* even once it is acknowledged */
        mark_printed(&e, refund, 9);
        mark_synced(&e, refund);
        check(&e, refund, &c);
        ASSERT_OK(c.error);
        ASSERT_FALSE(c.allowed);
        ASSERT_STREQ(c.sync_status, "synced");
        ASSERT_NOT_NULL(strstr(c.reason, "not a sale"));
        ASSERT_NOT_NULL(strstr(c.reason, refund));
        ASSERT_STREQ(json_string(c.json, "original_type"), "refund");
        ASSERT_NOT_NULL(strstr(json_string(c.json, "reason"), "not a sale"));
        check_done(&c);
        env_teardown(&e);
}

static void test_a_cancelled_original_is_not_allowed(void) {
        char id[STORE_RECEIPT_ID_MAX];
        Done d = {};
        Check c;
        Env e;

        env_setup(&e);
        submit(&e, "sale-1", "sale", 10000, NULL, id);
        ASSERT_OK(store_set_print_rejected(e.store, id, "bad", on_done, &d));
        RUN_UNTIL(&e, d.done);
        ASSERT_OK(d.result);
        d = (Done) {};
        ASSERT_OK(store_cancel_receipt(e.store, id, "wrong", "admin", on_admin, &d));
        RUN_UNTIL(&e, d.done);
        ASSERT_OK(d.result);
        check(&e, id, &c);
        ASSERT_FALSE(c.allowed);
        ASSERT_STREQ(c.sync_status, "cancelled");
        ASSERT_NOT_NULL(strstr(c.reason, "Refund blocked"));
        check_done(&c);
        env_teardown(&e);
}

static void test_original_is_found_by_idempotency_key(void) {
        char id[STORE_RECEIPT_ID_MAX];
        Check c;
        Env e;

        env_setup(&e);
        submit(&e, "order-2026-0042", "sale", 10000, NULL, id);
        check(&e, "order-2026-0042", &c);
        ASSERT_OK(c.error);
        ASSERT_STREQ(c.original_id, id);
        ASSERT_FALSE(c.allowed);
        check_done(&c);
        mark_printed(&e, id, 11);
        mark_synced(&e, id);
        check(&e, "order-2026-0042", &c);
        ASSERT_TRUE(c.allowed);
        ASSERT_STREQ(json_string(c.json, "original_receipt_id"), id);
        check_done(&c);
        env_teardown(&e);
}

static void test_original_is_found_by_fiscal_document_number(void) {
        char a[STORE_RECEIPT_ID_MAX], b[STORE_RECEIPT_ID_MAX], digits[STORE_RECEIPT_ID_MAX];
        Check c;
        Env e;

        env_setup(&e);
        submit(&e, "sale-a", "sale", 10000, NULL, a);
        submit(&e, "sale-b", "sale", 20000, NULL, b);
        mark_printed(&e, a, 17);
        mark_printed(&e, b, 18);
        mark_synced(&e, b);
        check(&e, "17", &c);
        ASSERT_OK(c.error);
        ASSERT_STREQ(c.original_id, a);
        ASSERT_FALSE(c.allowed);
        ASSERT_EQ(json_object_get_int64(json_get(c.json, "fiscal_document_number")), 17);
        check_done(&c);
        check(&e, "18", &c);
        ASSERT_STREQ(c.original_id, b);
        ASSERT_TRUE(c.allowed);
        check_done(&c);
        check(&e, "19", &c);
        ASSERT_ERROR(c.error, ENOENT);

        /* An Idempotency-Key made of digits is a key first. */
        submit(&e, "17", "sale", 30000, NULL, digits);
        check(&e, "17", &c);
        ASSERT_STREQ(c.original_id, digits);
        ASSERT_FALSE(json_has(c.json, "fiscal_document_number")); /* not printed */
        check_done(&c);
        env_teardown(&e);
}

static void test_json_has_exact_money_after_earlier_returns(void) {
        char sale[STORE_RECEIPT_ID_MAX], r1[STORE_RECEIPT_ID_MAX], r2[STORE_RECEIPT_ID_MAX];
        char r3[STORE_RECEIPT_ID_MAX];
        Check c;
        Env e;

        env_setup(&e);
        submit(&e, "sale-1", "sale", 1234567, NULL, sale); /* 12345.67 */
        mark_printed(&e, sale, 21);
        mark_synced(&e, sale);

        check(&e, sale, &c);
        ASSERT_TRUE(c.allowed);
        ASSERT_STREQ(json_string(c.json, "original_receipt_id"), sale);
        ASSERT_STREQ(json_string(c.json, "original_type"), "sale");
        ASSERT_STREQ(json_string(c.json, "original_total"), "12345.67");
        ASSERT_STREQ(json_string(c.json, "refunded"), "0.00");
        ASSERT_STREQ(json_string(c.json, "refundable"), "12345.67");
        ASSERT_EQ(json_object_get_int64(json_get(c.json, "fiscal_document_number")), 21);
        check_done(&c);

        /* Returns count from when they are stored, printed or not. */
        submit(&e, "refund-1", "refund", 1, sale, r1);
        submit(&e, "refund-2", "refund", 1000000, sale, r2);
        check(&e, "sale-1", &c);
        ASSERT_TRUE(c.allowed);
        ASSERT_STREQ(json_string(c.json, "original_total"), "12345.67");
        ASSERT_STREQ(json_string(c.json, "refunded"), "10000.01");
        ASSERT_STREQ(json_string(c.json, "refundable"), "2345.66");
        check_done(&c);

        /* The rest returned: nothing refundable, never negative. */
        submit(&e, "refund-3", "refund", 234566, sale, r3);
        check(&e, "21", &c);
        ASSERT_STREQ(json_string(c.json, "refunded"), "12345.67");
        ASSERT_STREQ(json_string(c.json, "refundable"), "0.00");
        check_done(&c);
        env_teardown(&e);
}

static void test_empty_or_overlong_reference_is_einval(void) {
        char ref[258];
        Check c = {};
        Env e;

        env_setup(&e);
        ASSERT_ERROR(refund_check(e.store, "", on_check, &c), EINVAL);
        memset(ref, 'k', 256);
        ref[256] = 0;
        ASSERT_ERROR(refund_check(e.store, ref, on_check, &c), EINVAL);
        ASSERT_FALSE(c.done);

        /* 255 characters is a reference like any other. */
        ref[255] = 0;
        check(&e, ref, &c);
        ASSERT_ERROR(c.error, ENOENT);
        env_teardown(&e);
}

int main(void) {
        TEST_RUN(test_unknown_reference_is_enoent);
        TEST_RUN(test_pending_sale_is_not_allowed_and_the_reason_names_it);
        TEST_RUN(test_synced_sale_is_allowed);
        TEST_RUN(test_a_purchase_is_refundable_by_the_same_rule);
        TEST_RUN(test_a_refund_as_original_is_not_a_sale);
        TEST_RUN(test_a_cancelled_original_is_not_allowed);
        TEST_RUN(test_original_is_found_by_idempotency_key);
        TEST_RUN(test_original_is_found_by_fiscal_document_number);
        TEST_RUN(test_json_has_exact_money_after_earlier_returns);
        TEST_RUN(test_empty_or_overlong_reference_is_einval);
        return EXIT_SUCCESS;
}
