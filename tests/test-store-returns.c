/* SPDX-License-Identifier: MIT */
/* Returns and their originals: the fiscal document number of a printed receipt, resolving what a client
 * names, and the checks of a return (what is left of the total, the type, cancelled, too new). */

#include "log.h"
#include "store.h"
#include "test-store-util.h"
#include "tests.h"

static void resolve_sync(Env *e, Store *s, const char *ref, Got *ret) {
        *ret = (Got) {};
        ASSERT_OK(store_resolve_receipt(s, ref, on_get, ret));
        run_until_idle(e, s);
        ASSERT_TRUE(ret->done);
}

static StoreReceiptNew return_new(const char *key, const char *original, int64_t total) {
        StoreReceiptNew r = receipt_new(key, "h");

        r.type = "refund";
        r.total_kopecks = total;
        r.original = original;
        r.original_type = "sale";
        return r;
}

static void submit_return(Env *e, Store *s, const StoreReceiptNew *r, Submitted *ret) {
        *ret = (Submitted) {};
        ASSERT_OK(store_submit_receipt(s, r, on_submit, ret));
        run_until_idle(e, s);
        ASSERT_TRUE(ret->done);
        ASSERT_OK(ret->error);
}

static void test_mark_printed_keeps_the_fiscal_document_number_of_the_document(void) {
        static const struct {
                const char *doc;
                uint32_t fd;
        } docs[] = {
                { "{\"fiscal_document_number\":4294967295}", UINT32_MAX },
                { "{\"fiscal_document_number\":1,\"fiscal_sign\":\"7\"}", 1 },
                { "{\"fiscal_document_number\":\"12\"}", 0 },         /* text */
                { "{\"fiscal_document_number\":0}", 0 },              /* never a document's */
                { "{\"fiscal_document_number\":4294967296}", 0 },     /* past 32 bits */
                { "{\"fiscal_document_number\":true}", 0 },
                { "{\"fd\":12}", 0 },
                { "not json at all", 0 },                             /* stored all the same */
        };
        char key[32], sql[160];
        Submitted x;
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        for (size_t i = 0; i < ELEMENTSOF(docs); i++) {
                snprintf(key, sizeof key, "fd-%zu", i);
                submit_ok(&e, s, key, "h", &x);
                ASSERT_OK(mark_printed_sync(&e, s, x.id, docs[i].doc));
                get_receipt(&e, s, x.id, &g);
                ASSERT_OK(g.error);
                ASSERT_EQ(g.r.print_status, STORE_PRINT_PRINTED);
                ASSERT_STREQ(g.r.fiscal_doc, docs[i].doc);
                ASSERT_EQ_U(g.r.fiscal_document_number, docs[i].fd);
                ASSERT_NULL(g.r.original_id);
                store_receipt_done(&g.r);
                snprintf(sql, sizeof sql,
                         "SELECT fiscal_document_number IS NULL FROM receipts WHERE id = '%s'", x.id);
                ASSERT_EQ(db_int(e.path, sql), docs[i].fd == 0);
        }
        store_free(s);
        env_teardown(&e);
}

static void test_resolve_finds_by_id_then_key_then_newest_fiscal_document_number(void) {
        Submitted s1, s2, s3, digits, ret;
        StoreReceiptNew r;
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        sale_ok(&e, s, "sale-1", 501, &s1);
        sale_ok(&e, s, "sale-2", 502, &s2);

        resolve_sync(&e, s, s1.id, &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.id, s1.id);
        ASSERT_EQ_U(g.r.fiscal_document_number, 501);
        ASSERT_EQ(g.r.refunded_kopecks, 0);
        ASSERT_STREQ(g.r.receipt_data, receipt_new("", "").receipt_data);
        store_receipt_done(&g.r);
        resolve_sync(&e, s, "sale-2", &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.id, s2.id);
        store_receipt_done(&g.r);
        resolve_sync(&e, s, "501", &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.id, s1.id);
        store_receipt_done(&g.r);
        resolve_sync(&e, s, "000502", &g); /* the digits' value */
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.id, s2.id);
        store_receipt_done(&g.r);

        /* A new fiscal storage numbers from 1 again: the newest receipt with the number. */
        sale_ok(&e, s, "sale-3", 501, &s3);
        resolve_sync(&e, s, "501", &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.id, s3.id);
        store_receipt_done(&g.r);

        /* A key of digits is a key first. */
        sale_ok(&e, s, "502", 0, &digits);
        resolve_sync(&e, s, "502", &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.id, digits.id);
        store_receipt_done(&g.r);

        /* With what its returns add up to. */
        r = return_new("ret-1", s1.id, 300);
        submit_return(&e, s, &r, &ret);
        ASSERT_EQ(ret.outcome, STORE_SUBMIT_CREATED);
        resolve_sync(&e, s, "sale-1", &g);
        ASSERT_OK(g.error);
        ASSERT_EQ(g.r.refunded_kopecks, 300);
        store_receipt_done(&g.r);

        static const char *const unknown[] = { "no-such-thing", "999", "0", "4294967296", "", "12a" };
        for (size_t i = 0; i < ELEMENTSOF(unknown); i++) {
                resolve_sync(&e, s, unknown[i], &g);
                ASSERT_ERROR(g.error, ENOENT);
        }
        store_free(s);

        /* The lookups use the partial indexes, not a scan (nor a sort). */
        assert_plan(e.path,
                    "SELECT id FROM receipts WHERE fiscal_document_number = ? ORDER BY hlc DESC LIMIT 1",
                    "SEARCH receipts USING INDEX idx_receipts_fiscal_document_number (fiscal_document_number=?)");
        assert_plan(e.path,
                    "SELECT SUM(total_kopecks) FROM receipts WHERE original_id = ? AND status <> 'cancelled'",
                    "SEARCH receipts USING INDEX idx_receipts_original_id (original_id=?)");
        /* Sales are in neither. */
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM receipts WHERE original_id IS NOT NULL"), 1);
        env_teardown(&e);
}

static void test_return_within_the_original_total_is_accepted_and_linked(void) {
        Submitted sale, ret, replay;
        StoreReceiptNew r;
        char sql[160];
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        sale_ok(&e, s, "sale", 77, &sale);

        /* Named by its key... */
        r = return_new("ret-by-key", "sale", 5000);
        submit_return(&e, s, &r, &ret);
        ASSERT_EQ(ret.outcome, STORE_SUBMIT_CREATED);
        ASSERT_STREQ(ret.original_id, sale.id);
        ASSERT_STREQ(ret.receipt_type, "refund");
        ASSERT_EQ(ret.total_kopecks, 5000);
        get_receipt(&e, s, ret.id, &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.original_id, sale.id);
        store_receipt_done(&g.r);
        snprintf(sql, sizeof sql, "SELECT original_id FROM receipts WHERE id = '%s'", ret.id);
        assert_db_text(e.path, sql, sale.id);

        /* ...by its fiscal document number, and by id, up to exactly what is left. */
        r = return_new("ret-by-fd", "77", 4000);
        submit_return(&e, s, &r, &ret);
        ASSERT_EQ(ret.outcome, STORE_SUBMIT_CREATED);
        ASSERT_STREQ(ret.original_id, sale.id);
        r = return_new("ret-by-id", sale.id, 12345 - 9000);
        submit_return(&e, s, &r, &ret);
        ASSERT_EQ(ret.outcome, STORE_SUBMIT_CREATED);
        ASSERT_EQ_U(store_get_counters(s)->pending, 4);

        /* A replay is a replay, though the original has nothing left now. */
        r = return_new("ret-by-key", "sale", 5000);
        submit_return(&e, s, &r, &replay);
        ASSERT_EQ(replay.outcome, STORE_SUBMIT_REPLAY);
        ASSERT_STREQ(replay.original_id, sale.id);
        store_free(s);
        ASSERT_EQ(db_int(e.path, "SELECT SUM(total_kopecks) FROM receipts WHERE receipt_type = 'refund'"), 12345);
        assert_db_healthy(e.path);
        env_teardown(&e);
}

static void test_return_beyond_what_is_left_is_refused_with_the_refunded_sum(void) {
        Submitted sale, ret, refused;
        StoreReceiptNew r;
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        sale_ok(&e, s, "sale", 0, &sale);
        r = return_new("ret-1", "sale", 5000);
        submit_return(&e, s, &r, &ret);
        ASSERT_EQ(ret.outcome, STORE_SUBMIT_CREATED);

        r = return_new("ret-2", "sale", 12345 - 5000 + 1);
        submit_return(&e, s, &r, &refused);
        ASSERT_EQ(refused.outcome, STORE_SUBMIT_REFUND_EXCEEDS);
        ASSERT_TRUE(refused.have_receipt);
        ASSERT_STREQ(refused.id, sale.id); /* the original... */
        ASSERT_EQ(refused.total_kopecks, 12345);
        ASSERT_EQ(refused.refunded_kopecks, 5000); /* ...and what was returned of it */
        /* Nothing of the refused one was kept: not the row, not its key, not an event. */
        ASSERT_EQ(count_receipts(e.path), 2);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM idempotency_keys WHERE key = 'ret-2'"), 0);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM buffer_events"), 2);

        /* The key was not taken: the same key with what is left goes through. */
        r = return_new("ret-2", "sale", 12345 - 5000);
        submit_return(&e, s, &r, &ret);
        ASSERT_EQ(ret.outcome, STORE_SUBMIT_CREATED);
        r = return_new("ret-3", "sale", 1);
        submit_return(&e, s, &r, &refused);
        ASSERT_EQ(refused.outcome, STORE_SUBMIT_REFUND_EXCEEDS);
        ASSERT_EQ(refused.refunded_kopecks, 12345);
        store_free(s);
        env_teardown(&e);
}

static void test_two_returns_in_one_group_commit_where_only_one_fits(void) {
        Submitted sale, a = {}, b = {};
        StoreReceiptNew ra, rb;
        uint64_t transactions;
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        sale_ok(&e, s, "sale", 0, &sale);
        transactions = store_get_stats(s)->n_transactions;

        /* Queued in one loop iteration: one group, one transaction. */
        ra = return_new("ret-a", "sale", 7000);
        rb = return_new("ret-b", sale.id, 7000);
        ASSERT_OK(store_submit_receipt(s, &ra, on_submit, &a));
        ASSERT_OK(store_submit_receipt(s, &rb, on_submit, &b));
        run_until_idle(&e, s);
        ASSERT_EQ_U(store_get_stats(s)->n_transactions, transactions + 1);
        ASSERT_TRUE(store_get_stats(s)->max_jobs_per_transaction >= 2);

        ASSERT_OK(a.error);
        ASSERT_OK(b.error);
        ASSERT_EQ(a.outcome, STORE_SUBMIT_CREATED);
        ASSERT_EQ(b.outcome, STORE_SUBMIT_REFUND_EXCEEDS);
        ASSERT_EQ(b.refunded_kopecks, 7000);
        ASSERT_STREQ(b.id, sale.id);
        store_free(s);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM receipts WHERE original_id IS NOT NULL"), 1);
        env_teardown(&e);
}

static void test_return_of_unknown_original_inserts_nothing(void) {
        Submitted x;
        StoreReceiptNew r = return_new("ret", "no-such-original", 100);
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        submit_return(&e, s, &r, &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_ORIGINAL_UNKNOWN);
        ASSERT_FALSE(x.have_receipt);
        ASSERT_EQ_U(store_get_counters(s)->total, 0);
        store_free(s);
        ASSERT_EQ(count_receipts(e.path), 0);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM idempotency_keys"), 0);
        env_teardown(&e);
}

static void test_return_of_an_original_of_another_type_or_cancelled_is_a_mismatch(void) {
        Submitted sale, ret, x, y;
        StoreReceiptNew r;
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        sale_ok(&e, s, "sale", 0, &sale);
        r = return_new("ret", "sale", 100);
        submit_return(&e, s, &r, &ret);
        ASSERT_EQ(ret.outcome, STORE_SUBMIT_CREATED);

        /* A return of a return. */
        r = return_new("ret-of-ret", ret.id, 50);
        submit_return(&e, s, &r, &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_ORIGINAL_MISMATCH);
        ASSERT_STREQ(x.id, ret.id);
        ASSERT_STREQ(x.receipt_type, "refund");
        /* A purchase_refund needs a purchase. */
        r = return_new("purchase-ret", "sale", 50);
        r.type = "purchase_refund";
        r.original_type = "purchase";
        submit_return(&e, s, &r, &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_ORIGINAL_MISMATCH);
        ASSERT_STREQ(x.id, sale.id);
        /* Without original_type, any type will do. */
        r = return_new("any-type", "sale", 50);
        r.original_type = NULL;
        submit_return(&e, s, &r, &y);
        ASSERT_EQ(y.outcome, STORE_SUBMIT_CREATED);

        /* A cancelled original. */
        ASSERT_OK(set_print_rejected_sync(&e, s, sale.id, "rejected"));
        cancel_sync(&e, s, sale.id, NULL, "admin", &g);
        ASSERT_OK(g.error);
        store_receipt_done(&g.r);
        r = return_new("ret-of-cancelled", "sale", 10);
        submit_return(&e, s, &r, &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_ORIGINAL_MISMATCH);
        ASSERT_STREQ(x.id, sale.id);
        ASSERT_EQ(x.status, STORE_STATUS_CANCELLED);
        ASSERT_EQ(x.refunded_kopecks, 150);
        store_free(s);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM receipts WHERE original_id IS NOT NULL"), 2);
        env_teardown(&e);
}

/* CLOCK_REALTIME microseconds of "2026-11-29T03:17:26.123Z". */
static usec_t parse_iso8601(const char *t) {
        struct tm tm = {};
        unsigned ms = 0;

        ASSERT_EQ(sscanf(t, "%d-%d-%dT%d:%d:%d.%3uZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                         &tm.tm_min, &tm.tm_sec, &ms),
                  7);
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        return (usec_t) timegm(&tm) * USEC_PER_SEC + ms * USEC_PER_MSEC;
}

static void test_return_of_an_original_not_created_before_original_before_is_too_new(void) {
        Submitted sale, x;
        StoreReceiptNew r;
        usec_t created;
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        sale_ok(&e, s, "sale", 0, &sale);
        created = parse_iso8601(sale.created_at);

        r = return_new("ret", "sale", 100);
        r.original_before = created - 1;
        submit_return(&e, s, &r, &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_ORIGINAL_TOO_NEW);
        ASSERT_STREQ(x.id, sale.id);
        r.original_before = created; /* not older: the same instant */
        submit_return(&e, s, &r, &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_ORIGINAL_TOO_NEW);
        r.original_before = created + 1;
        submit_return(&e, s, &r, &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_CREATED);
        store_free(s);

        /* A row of the prototype with its own spelling of the time. */
        db_exec(e.path, "UPDATE receipts SET created_at = '2026-11-28 09:00:00.5' WHERE receipt_type = 'sale'");
        s = store_open_ok(&e, 0);
        r = return_new("ret-2", "sale", 100);
        r.original_before = UINT64_C(1795856400500000); /* 2026-11-28T09:00:00.500Z */
        submit_return(&e, s, &r, &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_ORIGINAL_TOO_NEW);
        r.original_before++;
        submit_return(&e, s, &r, &x);
        ASSERT_EQ(x.outcome, STORE_SUBMIT_CREATED);
        store_free(s);
        env_teardown(&e);
}

int main(void) {
        if (getenv("TEST_DEBUG"))
                log_set_max_level(LOG_DEBUG);

        TEST_RUN(test_mark_printed_keeps_the_fiscal_document_number_of_the_document);
        TEST_RUN(test_resolve_finds_by_id_then_key_then_newest_fiscal_document_number);
        TEST_RUN(test_return_within_the_original_total_is_accepted_and_linked);
        TEST_RUN(test_return_beyond_what_is_left_is_refused_with_the_refunded_sum);
        TEST_RUN(test_two_returns_in_one_group_commit_where_only_one_fits);
        TEST_RUN(test_return_of_unknown_original_inserts_nothing);
        TEST_RUN(test_return_of_an_original_of_another_type_or_cancelled_is_a_mismatch);
        TEST_RUN(test_return_of_an_original_not_created_before_original_before_is_too_new);
        return 0;
}
