/* SPDX-License-Identifier: MIT */
/* A receipt's life in the store after the submit: replays and the stored answer, capacity, get, printed
 * and synced, the oldest unsynced, retention, and the print rejections an admin retries, cancels and
 * lists. */

#include "hlc.h"
#include "log.h"
#include "store.h"
#include "sync-store.h"
#include "test-store-util.h"
#include "tests.h"

static void test_replay_with_same_key_and_hash_returns_existing_receipt(void) {
        Submitted first, again;
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);

        submit_ok(&e, s, "key-r", "hash-r", &first);
        ASSERT_EQ(first.outcome, STORE_SUBMIT_CREATED);
        ASSERT_OK(mark_printed_sync(&e, s, first.id, "{\"fd\":1}"));

        submit_ok(&e, s, "key-r", "hash-r", &again);
        ASSERT_EQ(again.outcome, STORE_SUBMIT_REPLAY);
        ASSERT_TRUE(again.have_receipt);
        ASSERT_STREQ(again.id, first.id);
        ASSERT_EQ_U(again.hlc, first.hlc);
        ASSERT_STREQ(again.created_at, first.created_at);
        ASSERT_EQ(again.print_status, STORE_PRINT_PRINTED); /* the receipt as it is now */

        ASSERT_EQ(count_receipts(e.path), 1);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM buffer_events WHERE event = 'received'"), 1);
        ASSERT_EQ_U(store_get_counters(s)->total, 1);
        store_free(s);
        env_teardown(&e);
}

static int set_response_sync(Env *e, Store *s, const char *id, const char *response) {
        Done d = {};

        ASSERT_OK(store_set_response(s, id, 200, response, on_done, &d));
        run_until_idle(e, s);
        ASSERT_TRUE(d.done);
        return d.result;
}

static void test_replay_returns_the_first_answer_stored_by_the_insert_or_later(void) {
        StoreReceiptNew r = receipt_new("key-answered", "h");
        Submitted first = {}, again;
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);

        /* Known before the commit: written by the INSERT. */
        r.response_status = 200;
        r.response = "{\"status\":\"buffered\"}";
        ASSERT_OK(store_submit_receipt(s, &r, on_submit, &first));
        run_until_idle(&e, s);
        ASSERT_EQ(first.outcome, STORE_SUBMIT_CREATED);
        ASSERT_EQ_U(first.response_status, 0); /* only replays carry it */
        submit_ok(&e, s, "key-answered", "h", &again);
        ASSERT_EQ(again.outcome, STORE_SUBMIT_REPLAY);
        ASSERT_EQ_U(again.response_status, 200);
        ASSERT_STREQ(again.response, "{\"status\":\"buffered\"}");
        /* The first answer stays, whatever comes later. */
        ASSERT_EQ(set_response_sync(&e, s, first.id, "{\"status\":\"printed\"}"), 0);
        submit_ok(&e, s, "key-answered", "h", &again);
        ASSERT_STREQ(again.response, "{\"status\":\"buffered\"}");

        /* Decided after the commit: stored by an UPDATE of the key's row. */
        submit_ok(&e, s, "key-later", "h", &first);
        submit_ok(&e, s, "key-later", "h", &again);
        ASSERT_EQ(again.outcome, STORE_SUBMIT_REPLAY);
        ASSERT_EQ_U(again.response_status, 0);
        ASSERT_STREQ(again.response, "");
        ASSERT_EQ(set_response_sync(&e, s, first.id, "{\"status\":\"printed\"}"), 1);
        ASSERT_ERROR(set_response_sync(&e, s, "no-such-receipt", "{}"), ENOENT);
        store_free(s);

        /* On disk, across a restart. */
        s = store_open_ok(&e, 0);
        submit_ok(&e, s, "key-later", "h", &again);
        ASSERT_EQ_U(again.response_status, 200);
        ASSERT_STREQ(again.response, "{\"status\":\"printed\"}");
        ASSERT_EQ(count_receipts(e.path), 2);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM idempotency_keys WHERE response_status = 200"), 2);
        store_free(s);
        env_teardown(&e);
}

static void test_same_key_twice_in_one_group_inserts_once(void) {
        StoreReceiptNew r = receipt_new("key-twice", "hash");
        Submitted a = {}, b = {};
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        ASSERT_OK(store_submit_receipt(s, &r, on_submit, &a));
        ASSERT_OK(store_submit_receipt(s, &r, on_submit, &b));
        run_until_idle(&e, s);

        ASSERT_OK(a.error);
        ASSERT_OK(b.error);
        ASSERT_EQ(a.outcome, STORE_SUBMIT_CREATED);
        ASSERT_EQ(b.outcome, STORE_SUBMIT_REPLAY);
        ASSERT_STREQ(a.id, b.id);
        ASSERT_EQ(count_receipts(e.path), 1);
        store_free(s);
        env_teardown(&e);
}

static void test_same_key_with_other_hash_is_key_mismatch(void) {
        Submitted first, other;
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        submit_ok(&e, s, "key-m", "hash-1", &first);
        submit_ok(&e, s, "key-m", "hash-2", &other);

        ASSERT_EQ(other.outcome, STORE_SUBMIT_KEY_MISMATCH);
        ASSERT_FALSE(other.have_receipt);
        ASSERT_EQ(count_receipts(e.path), 1);
        assert_db_text(e.path, "SELECT request_hash FROM idempotency_keys WHERE key = 'key-m'", "hash-1");
        ASSERT_EQ_U(store_get_counters(s)->pending, 1);
        store_free(s);
        env_teardown(&e);
}

static void test_capacity_reached_is_full_and_inserts_nothing(void) {
        Submitted x[3], full, replay, after;
        char key[32];
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 3);
        ASSERT_EQ_U(store_get_counters(s)->capacity, 3);
        for (unsigned i = 0; i < 3; i++) {
                snprintf(key, sizeof key, "cap-%u", i);
                submit_ok(&e, s, key, "h", &x[i]);
                ASSERT_EQ(x[i].outcome, STORE_SUBMIT_CREATED);
        }

        submit_ok(&e, s, "cap-3", "h", &full);
        ASSERT_EQ(full.outcome, STORE_SUBMIT_FULL);
        ASSERT_FALSE(full.have_receipt);
        ASSERT_EQ(count_receipts(e.path), 3);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM idempotency_keys WHERE key = 'cap-3'"), 0);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM buffer_events"), 3);

        /* A replay is answered even when full: it adds nothing. */
        submit_ok(&e, s, "cap-1", "h", &replay);
        ASSERT_EQ(replay.outcome, STORE_SUBMIT_REPLAY);
        ASSERT_STREQ(replay.id, x[1].id);

        /* Once one leaves the pending state there is room again. */
        ASSERT_OK(mark_printed_sync(&e, s, x[0].id, "{}"));
        ASSERT_OK(mark_synced_sync(&e, s, x[0].id, NULL));
        submit_ok(&e, s, "cap-3", "h", &after);
        ASSERT_EQ(after.outcome, STORE_SUBMIT_CREATED);
        ASSERT_EQ_U(store_get_counters(s)->pending, 3);
        ASSERT_EQ_U(store_get_counters(s)->total, 4);
        store_free(s);
        assert_db_healthy(e.path);
        env_teardown(&e);
}

static int prune_synced_sync(Env *e, Store *s) {
        SyncStorePrune p = { .cutoff = now(CLOCK_REALTIME) + USEC_PER_HOUR, .limit = 500 };
        Done d = {};

        ASSERT_OK(store_write(s, sync_store_prune_synced, &p, on_done, &d));
        run_until_idle(e, s);
        return d.result;
}

/* Retention takes the keys with their receipts, from the file and from the index in memory, and writes
 * the clock down first: the stamps never go back, even when every receipt is gone. */
static void test_retention_forgets_keys_and_keeps_the_clock(void) {
        Submitted a, b, again;
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        submit_ok(&e, s, "pruned-key", "h", &a);
        submit_ok(&e, s, "kept-key", "h", &b);
        ASSERT_OK(mark_printed_sync(&e, s, a.id, "{\"fd\":1}"));
        ASSERT_OK(mark_synced_sync(&e, s, a.id, NULL));

        ASSERT_EQ(prune_synced_sync(&e, s), 1);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM idempotency_keys WHERE key = 'pruned-key'"), 0);
        ASSERT_EQ(db_int(e.path, "SELECT CAST(value AS INTEGER) FROM config WHERE key = 'hlc_last'"),
                  (int64_t) b.hlc);

        /* The pruned key is new again; the other one still replays. */
        submit_ok(&e, s, "pruned-key", "other-hash", &again);
        ASSERT_EQ(again.outcome, STORE_SUBMIT_CREATED);
        ASSERT_FALSE(streq(again.id, a.id));
        submit_ok(&e, s, "kept-key", "h", &again);
        ASSERT_EQ(again.outcome, STORE_SUBMIT_REPLAY);
        store_free(s);

        /* Every receipt gone, the clock an hour ahead of the wall clock when it stamped them. */
        uint64_t future = hlc_make(now(CLOCK_REALTIME) / USEC_PER_MSEC + 3600 * 1000, 0);
        char sql[160];

        snprintf(sql, sizeof sql, "UPDATE receipts SET hlc = %" PRIu64 " + rowid, status = 'synced', "
                 "print_status = 'printed', synced_at = created_at", future);
        db_exec(e.path, sql);
        int64_t newest = db_int(e.path, "SELECT MAX(hlc) FROM receipts");
        ASSERT_TRUE(newest > (int64_t) future);
        s = store_open_ok(&e, 0);
        ASSERT_EQ(prune_synced_sync(&e, s), 2);
        ASSERT_EQ(count_receipts(e.path), 0);
        ASSERT_EQ_U(store_get_counters(s)->total, 0);
        store_free(s);

        s = store_open_ok(&e, 0);
        submit_ok(&e, s, "after-everything-pruned", "h", &again);
        ASSERT_TRUE(again.hlc > (uint64_t) newest);
        store_free(s);
        assert_db_healthy(e.path);
        env_teardown(&e);
}

static void test_get_receipt_unknown_is_enoent_and_known_returns_all_fields(void) {
        Submitted x;
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);

        get_receipt(&e, s, "00000000-0000-4000-8000-000000000000", &g);
        ASSERT_ERROR(g.error, ENOENT);

        submit_ok(&e, s, "get-1", "h", &x);
        get_receipt(&e, s, x.id, &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.id, x.id);
        ASSERT_STREQ(g.r.pos_id, "pos-7");
        ASSERT_STREQ(g.r.receipt_type, "sale");
        ASSERT_EQ(g.r.total_kopecks, 12345);
        ASSERT_STREQ(g.r.receipt_data, receipt_new("", "").receipt_data);
        ASSERT_EQ(g.r.status, STORE_STATUS_PENDING);
        ASSERT_EQ(g.r.print_status, STORE_PRINT_UNPRINTED);
        ASSERT_EQ_U(g.r.hlc, x.hlc);
        ASSERT_STREQ(g.r.created_at, x.created_at);
        ASSERT_STREQ(g.r.updated_at, x.created_at);
        ASSERT_NULL(g.r.printed_at);
        ASSERT_NULL(g.r.synced_at);
        ASSERT_NULL(g.r.fiscal_doc);
        ASSERT_NULL(g.r.last_error);
        ASSERT_EQ(g.r.attempts, 0);
        store_receipt_done(&g.r);
        store_free(s);
        env_teardown(&e);
}

static void test_mark_printed_then_synced_moves_states_and_counters(void) {
        usec_t printed_at = UINT64_C(1795922246123) * USEC_PER_MSEC;
        Submitted x;
        Done d = {};
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        submit_ok(&e, s, "mark-1", "h", &x);

        ASSERT_ERROR(mark_printed_sync(&e, s, "unknown", "{}"), ENOENT);
        ASSERT_ERROR(mark_synced_sync(&e, s, "unknown", NULL), ENOENT);
        /* Never to the OFD without fiscal attributes. */
        ASSERT_ERROR(mark_synced_sync(&e, s, x.id, NULL), EPERM);

        ASSERT_OK(store_mark_printed(s, x.id, "{\"fd\":42}", printed_at, on_done, &d));
        run_until_idle(&e, s);
        ASSERT_OK(d.result);
        /* A fiscal document is never overwritten. */
        ASSERT_ERROR(mark_printed_sync(&e, s, x.id, "{\"fd\":43}"), EALREADY);
        ASSERT_EQ_U(store_get_counters(s)->pending, 1);

        ASSERT_OK(mark_synced_sync(&e, s, x.id, "{\"ofd\":\"ok\"}"));
        ASSERT_EQ_U(store_get_counters(s)->pending, 0);
        ASSERT_EQ_U(store_get_counters(s)->synced, 1);
        ASSERT_ERROR(mark_synced_sync(&e, s, x.id, NULL), EALREADY);

        get_receipt(&e, s, x.id, &g);
        ASSERT_OK(g.error);
        ASSERT_EQ(g.r.status, STORE_STATUS_SYNCED);
        ASSERT_EQ(g.r.print_status, STORE_PRINT_PRINTED);
        ASSERT_STREQ(g.r.fiscal_doc, "{\"fd\":42}");
        ASSERT_STREQ(g.r.printed_at, "2026-11-29T03:17:26.123Z");
        ASSERT_STREQ(g.r.ofd_response, "{\"ofd\":\"ok\"}");
        ASSERT_NOT_NULL(g.r.synced_at);
        store_receipt_done(&g.r);
        store_free(s);

        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM buffer_events WHERE event IN ('printed', 'synced')"),
                  2);
        db_exec(e.path, "UPDATE receipts SET status = 'dlq'");
        s = store_open_ok(&e, 0);
        ASSERT_EQ_U(store_get_counters(s)->dlq, 1);
        ASSERT_EQ_U(store_get_counters(s)->synced, 0);
        ASSERT_ERROR(mark_synced_sync(&e, s, x.id, NULL), ESTALE);
        store_free(s);
        env_teardown(&e);
}

static void test_oldest_unsynced_follows_the_oldest_receipt_the_ofd_has_not_acknowledged(void) {
        usec_t before, after, t2026 = UINT64_C(1767225600) * USEC_PER_SEC; /* 2026-01-01T00:00:00Z */
        Submitted a, b;
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        ASSERT_EQ_U(store_get_counters(s)->oldest_unsynced, 0);

        before = now(CLOCK_REALTIME);
        submit_ok(&e, s, "old-a", "h", &a);
        submit_ok(&e, s, "old-b", "h", &b);
        after = now(CLOCK_REALTIME);
        /* created_at keeps milliseconds. */
        ASSERT_TRUE(store_get_counters(s)->oldest_unsynced + USEC_PER_MSEC >= before);
        ASSERT_TRUE(store_get_counters(s)->oldest_unsynced <= after);
        store_free(s);

        /* What the file says counts, after a restart too; the prototype's form of created_at is read. */
        db_exec(e.path, "UPDATE receipts SET created_at = '2026-01-01 00:00:00' WHERE id = (SELECT id FROM "
                        "receipts ORDER BY hlc LIMIT 1)");
        s = store_open_ok(&e, 0);
        ASSERT_EQ_U(store_get_counters(s)->oldest_unsynced, t2026);

        /* Acknowledged by the OFD: the next one is the oldest, and the commit that synced it says so. */
        ASSERT_OK(mark_printed_sync(&e, s, a.id, "{\"fd\":1}"));
        ASSERT_EQ_U(store_get_counters(s)->oldest_unsynced, t2026);
        ASSERT_OK(mark_synced_sync(&e, s, a.id, NULL));
        ASSERT_TRUE(store_get_counters(s)->oldest_unsynced > t2026);
        ASSERT_TRUE(store_get_counters(s)->oldest_unsynced <= after);
        store_free(s);

        /* failed counts (it is retried); the DLQ and cancelled receipts do not. */
        db_exec(e.path, "UPDATE receipts SET status = 'failed', created_at = '2026-01-01T00:00:00.500Z' "
                        "WHERE status = 'pending'");
        s = store_open_ok(&e, 0);
        ASSERT_EQ_U(store_get_counters(s)->oldest_unsynced, t2026 + 500 * USEC_PER_MSEC);
        store_free(s);
        db_exec(e.path, "UPDATE receipts SET status = 'dlq' WHERE status = 'failed'");
        s = store_open_ok(&e, 0);
        ASSERT_EQ_U(store_get_counters(s)->oldest_unsynced, 0);
        store_free(s);

        /* Two lookups in the status index, not a scan of the buffer, for every group commit. */
        assert_plan(e.path, "SELECT created_at, hlc FROM receipts WHERE status = ? ORDER BY hlc LIMIT 1",
                    "SEARCH receipts USING INDEX idx_receipts_status_hlc (status=?)");
        env_teardown(&e);
}

static void retry_print_sync(Env *e, Store *s, const char *id, const char *who, Got *ret) {
        *ret = (Got) {};
        ASSERT_OK(store_retry_print(s, id, who, on_get, ret));
        run_until_idle(e, s);
        ASSERT_TRUE(ret->done);
}

static int64_t count_rows(const char *path, const char *table, const char *where_id_is, const char *id) {
        char sql[256];

        snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s WHERE %s = '%s'", table, where_id_is, id);
        return db_int(path, sql);
}

static void test_set_print_rejected_counts_the_receipt_and_keeps_it_pending(void) {
        Submitted a, b, c, d;
        StoreCounters counters;
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 3);
        sale_ok(&e, s, "a", 0, &a);
        sale_ok(&e, s, "b", 0, &b);
        ASSERT_OK(set_print_rejected_sync(&e, s, a.id, "FN is full"));
        ASSERT_EQ_U(store_get_counters(s)->print_rejected, 1);
        ASSERT_EQ_U(store_get_counters(s)->pending, 2); /* still needs an admin: still pending */
        ASSERT_EQ_U(store_get_counters(s)->total, 2);

        get_receipt(&e, s, a.id, &g);
        ASSERT_OK(g.error);
        ASSERT_EQ(g.r.status, STORE_STATUS_PENDING);
        ASSERT_EQ(g.r.print_status, STORE_PRINT_REJECTED);
        ASSERT_STREQ(g.r.last_error, "FN is full");
        store_receipt_done(&g.r);
        assert_db_text(e.path,
                       "SELECT json_extract(details, '$.reason') FROM buffer_events "
                       "WHERE event = 'print_rejected'",
                       "FN is full");

        /* From print_failed too; it counts against the capacity like any pending receipt. */
        sale_ok(&e, s, "c", 0, &c);
        db_exec(e.path, "UPDATE receipts SET print_status = 'print_failed' WHERE id IN "
                        "(SELECT id FROM receipts ORDER BY hlc DESC LIMIT 1)");
        ASSERT_OK(set_print_rejected_sync(&e, s, c.id, "wrong VAT"));
        ASSERT_EQ_U(store_get_counters(s)->print_rejected, 2);
        submit_ok(&e, s, "d", "h", &d);
        ASSERT_EQ(d.outcome, STORE_SUBMIT_FULL);

        /* The register cannot print it any more: a fiscal document for it is refused. */
        ASSERT_ERROR(mark_printed_sync(&e, s, a.id, "{\"fiscal_document_number\":1}"), ESTALE);
        ASSERT_ERROR(set_print_rejected_sync(&e, s, a.id, "again"), EALREADY);
        ASSERT_ERROR(set_print_rejected_sync(&e, s, "no-such-receipt", "x"), ENOENT);
        ASSERT_OK(mark_printed_sync(&e, s, b.id, "{}"));
        ASSERT_ERROR(set_print_rejected_sync(&e, s, b.id, "late"), EALREADY);
        ASSERT_EQ_U(store_get_counters(s)->print_rejected, 2);
        counters = *store_get_counters(s);
        store_free(s);

        /* Counted again from the file at open. */
        s = store_open_ok(&e, 3);
        ASSERT_EQ(memcmp(store_get_counters(s), &counters, sizeof counters), 0);
        store_free(s);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM receipts WHERE print_status = 'print_rejected'"), 2);
        env_teardown(&e);
}

static void test_retry_print_puts_the_receipt_back_in_the_queue(void) {
        Submitted a;
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        sale_ok(&e, s, "a", 0, &a);
        db_exec(e.path, "UPDATE receipts SET attempts = 3");
        ASSERT_OK(set_print_rejected_sync(&e, s, a.id, "paper jam, for good"));

        retry_print_sync(&e, s, a.id, "admin", &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.id, a.id);
        ASSERT_EQ(g.r.status, STORE_STATUS_PENDING);
        ASSERT_EQ(g.r.print_status, STORE_PRINT_UNPRINTED);
        ASSERT_STREQ(g.r.receipt_data, receipt_new("", "").receipt_data); /* what the printer needs */
        ASSERT_EQ(g.r.attempts, 3);
        store_receipt_done(&g.r);
        ASSERT_EQ_U(store_get_counters(s)->print_rejected, 0);
        ASSERT_EQ_U(store_get_counters(s)->pending, 1);
        assert_db_text(e.path,
                       "SELECT json_extract(details, '$.by') FROM buffer_events WHERE event = 'print_retried'",
                       "admin");

        /* Not in print_rejected (any more): busy, not retried twice. */
        retry_print_sync(&e, s, a.id, "admin", &g);
        ASSERT_ERROR(g.error, EBUSY);
        retry_print_sync(&e, s, "no-such-receipt", "admin", &g);
        ASSERT_ERROR(g.error, ENOENT);

        /* It prints as any other. */
        ASSERT_OK(mark_printed_sync(&e, s, a.id, "{\"fiscal_document_number\":9}"));
        retry_print_sync(&e, s, a.id, NULL, &g);
        ASSERT_ERROR(g.error, EBUSY);
        store_free(s);
        env_teardown(&e);
}

static int job_select_batch(StoreConn *c, void *data) {
        return sync_store_select_batch(c, data);
}

static void test_cancel_frees_capacity_and_is_final(void) {
        SyncStoreBatch batch = { .limit = 50 };
        Submitted a, b, full, after;
        Done d = {};
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 2);
        sale_ok(&e, s, "a", 0, &a);
        sale_ok(&e, s, "b", 0, &b);
        submit_ok(&e, s, "c", "h", &full);
        ASSERT_EQ(full.outcome, STORE_SUBMIT_FULL);

        /* Only from print_rejected. */
        cancel_sync(&e, s, a.id, "duplicate", "admin", &g);
        ASSERT_ERROR(g.error, EBUSY);
        cancel_sync(&e, s, "no-such-receipt", NULL, NULL, &g);
        ASSERT_ERROR(g.error, ENOENT);

        ASSERT_OK(set_print_rejected_sync(&e, s, a.id, "rejected"));
        cancel_sync(&e, s, a.id, "duplicate of b", "admin", &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.id, a.id);
        ASSERT_EQ(g.r.status, STORE_STATUS_CANCELLED);
        ASSERT_STREQ(g.r.last_error, "cancelled by admin: duplicate of b");
        store_receipt_done(&g.r);
        ASSERT_EQ_U(store_get_counters(s)->pending, 1);
        ASSERT_EQ_U(store_get_counters(s)->cancelled, 1);
        ASSERT_EQ_U(store_get_counters(s)->print_rejected, 0);
        ASSERT_EQ_U(store_get_counters(s)->total, 2);
        assert_db_text(e.path,
                       "SELECT json_extract(details, '$.by') || ': ' || json_extract(details, '$.note') "
                       "FROM buffer_events WHERE event = 'cancelled'",
                       "admin: duplicate of b");

        /* Room for one more. */
        submit_ok(&e, s, "c", "h", &after);
        ASSERT_EQ(after.outcome, STORE_SUBMIT_CREATED);

        /* Final: nothing prints it, sends it, or takes it back. */
        ASSERT_ERROR(mark_printed_sync(&e, s, a.id, "{\"fiscal_document_number\":3}"), ESTALE);
        ASSERT_ERROR(mark_synced_sync(&e, s, a.id, NULL), ESTALE);
        ASSERT_ERROR(set_print_rejected_sync(&e, s, a.id, "again"), ESTALE);
        cancel_sync(&e, s, a.id, NULL, "admin", &g);
        ASSERT_ERROR(g.error, ESTALE);
        retry_print_sync(&e, s, a.id, "admin", &g);
        ASSERT_ERROR(g.error, ESTALE);

        /* Not even when its row says printed (another program's doing): the batch takes pending only. */
        db_exec(e.path,
                "UPDATE receipts SET print_status = 'printed', fiscal_doc = '{}' WHERE status = 'cancelled'");
        batch.now = now(CLOCK_REALTIME);
        ASSERT_OK(store_read(s, job_select_batch, &batch, on_done, &d));
        run_until_idle(&e, s);
        ASSERT_EQ(d.result, 0);
        sync_store_batch_done(&batch);
        store_free(s);

        s = store_open_ok(&e, 2);
        ASSERT_EQ_U(store_get_counters(s)->cancelled, 1);
        ASSERT_EQ_U(store_get_counters(s)->pending, 2);
        store_free(s);
        ASSERT_EQ(db_int(e.path, "SELECT COUNT(*) FROM receipts WHERE status = 'cancelled'"), 1);
        env_teardown(&e);
}

/* The cancellation's text without a note or a name. */
static void test_cancel_without_note_or_who_says_so(void) {
        Submitted a;
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        sale_ok(&e, s, "a", 0, &a);
        ASSERT_OK(set_print_rejected_sync(&e, s, a.id, "rejected"));
        cancel_sync(&e, s, a.id, "", NULL, &g);
        ASSERT_OK(g.error);
        ASSERT_STREQ(g.r.last_error, "cancelled by unknown");
        store_receipt_done(&g.r);
        store_free(s);
        env_teardown(&e);
}

typedef struct Listed {
        bool done;
        int error;
        size_t n;
        char ids[8][64];
        StorePrintStatus print_status[8];
} Listed;

static void on_list(Store *s, int error, const StoreReceipt *receipts, size_t n, void *userdata) {
        Listed *l = userdata;

        ASSERT_FALSE(l->done);
        l->done = true;
        l->error = error;
        l->n = n;
        ASSERT_TRUE(n <= ELEMENTSOF(l->ids));
        for (size_t i = 0; i < n; i++) {
                snprintf(l->ids[i], sizeof l->ids[i], "%s", receipts[i].id);
                l->print_status[i] = receipts[i].print_status;
        }
}

static void list_sync(Env *e, Store *s, unsigned limit, Listed *ret) {
        *ret = (Listed) {};
        ASSERT_OK(store_list_print_rejected(s, limit, on_list, ret));
        run_until_idle(e, s);
        ASSERT_TRUE(ret->done);
        ASSERT_OK(ret->error);
}

static void test_list_print_rejected_oldest_first_up_to_the_limit(void) {
        Submitted x[5];
        char key[16];
        Listed l;
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        list_sync(&e, s, 0, &l);
        ASSERT_EQ(l.n, 0);

        for (unsigned i = 0; i < ELEMENTSOF(x); i++) {
                snprintf(key, sizeof key, "list-%u", i);
                sale_ok(&e, s, key, 0, &x[i]);
        }
        /* Rejected out of order; one rejected and cancelled, one rejected and retried. */
        ASSERT_OK(set_print_rejected_sync(&e, s, x[4].id, "r"));
        ASSERT_OK(set_print_rejected_sync(&e, s, x[1].id, "r"));
        ASSERT_OK(set_print_rejected_sync(&e, s, x[3].id, "r"));
        ASSERT_OK(set_print_rejected_sync(&e, s, x[0].id, "r"));
        ASSERT_OK(set_print_rejected_sync(&e, s, x[2].id, "r"));
        cancel_sync(&e, s, x[0].id, NULL, "admin", &g);
        store_receipt_done(&g.r);
        retry_print_sync(&e, s, x[2].id, "admin", &g);
        store_receipt_done(&g.r);

        list_sync(&e, s, 0, &l);
        ASSERT_EQ(l.n, 3);
        ASSERT_STREQ(l.ids[0], x[1].id);
        ASSERT_STREQ(l.ids[1], x[3].id);
        ASSERT_STREQ(l.ids[2], x[4].id);
        ASSERT_EQ(l.print_status[0], STORE_PRINT_REJECTED);

        list_sync(&e, s, 2, &l);
        ASSERT_EQ(l.n, 2);
        ASSERT_STREQ(l.ids[0], x[1].id);
        ASSERT_STREQ(l.ids[1], x[3].id);
        list_sync(&e, s, 1, &l);
        ASSERT_EQ(l.n, 1);
        ASSERT_STREQ(l.ids[0], x[1].id);
        store_free(s);
        env_teardown(&e);
}

/* Retention takes cancelled receipts like synced ones, keys and all; the pending ones stay. */
static void test_retention_prunes_cancelled_receipts_with_their_keys(void) {
        Submitted a, b, again;
        Env e;
        Store *s;
        Got g;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        sale_ok(&e, s, "cancelled-key", 0, &a);
        sale_ok(&e, s, "pending-key", 0, &b);
        ASSERT_OK(set_print_rejected_sync(&e, s, a.id, "rejected"));
        ASSERT_OK(set_print_rejected_sync(&e, s, b.id, "rejected"));
        cancel_sync(&e, s, a.id, NULL, "admin", &g);
        ASSERT_OK(g.error);
        store_receipt_done(&g.r);

        ASSERT_EQ(prune_synced_sync(&e, s), 1);
        ASSERT_EQ(count_rows(e.path, "receipts", "id", a.id), 0);
        ASSERT_EQ(count_rows(e.path, "idempotency_keys", "receipt_id", a.id), 0);
        ASSERT_EQ(count_rows(e.path, "receipts", "id", b.id), 1);
        ASSERT_EQ_U(store_get_counters(s)->cancelled, 0);
        ASSERT_EQ_U(store_get_counters(s)->print_rejected, 1);
        ASSERT_EQ_U(store_get_counters(s)->total, 1);

        /* Its key is new again. */
        submit_ok(&e, s, "cancelled-key", "h", &again);
        ASSERT_EQ(again.outcome, STORE_SUBMIT_CREATED);
        store_free(s);
        assert_db_healthy(e.path);
        env_teardown(&e);
}


static int job_query_one(StoreConn *c, void *data) {
        _cleanup_free_ char *text = NULL;
        int64_t n = -1;

        /* Bound, stepped once, read and reset: the same cached statement serves again at once. */
        for (unsigned i = 0; i < 2; i++) {
                ASSERT_EQ(store_conn_query_int64(c, "SELECT COUNT(*) FROM receipts WHERE pos_id = ?", &n, "t",
                                                 "pos-7"),
                          1);
                ASSERT_EQ(n, 1);
        }
        ASSERT_EQ(store_conn_query_int64(c, "SELECT hlc FROM receipts WHERE id = ?", &n, "t", "no-such-id"), 0);
        ASSERT_EQ(n, 0);
        ASSERT_EQ(store_conn_query_one(c, "SELECT pos_id FROM receipts WHERE total_kopecks = ?", sqlite_row_text,
                                       &text, "i", (int64_t) 12345),
                  1);
        ASSERT_STREQ(text, "pos-7");
        ASSERT_EQ(store_conn_query_one(c, "SELECT 1 FROM receipts WHERE id = ?", NULL, NULL, "t", "nope"), 0);
        ASSERT_EQ(store_conn_query_one(c, "SELECT nonsense FROM nowhere", NULL, NULL, ""), -EIO);
        return 0;
}

static void test_conn_query_one_binds_steps_once_and_resets(void) {
        Submitted x;
        Done d = {};
        Env e;
        Store *s;

        env_setup(&e);
        s = store_open_ok(&e, 0);
        submit_ok(&e, s, "query-one", "h", &x);
        ASSERT_OK(store_read(s, job_query_one, NULL, on_done, &d));
        run_until_idle(&e, s);
        ASSERT_TRUE(d.done);
        ASSERT_OK(d.result);
        store_free(s);
        env_teardown(&e);
}

int main(void) {
        if (getenv("TEST_DEBUG"))
                log_set_max_level(LOG_DEBUG);

        TEST_RUN(test_replay_with_same_key_and_hash_returns_existing_receipt);
        TEST_RUN(test_replay_returns_the_first_answer_stored_by_the_insert_or_later);
        TEST_RUN(test_same_key_twice_in_one_group_inserts_once);
        TEST_RUN(test_same_key_with_other_hash_is_key_mismatch);
        TEST_RUN(test_capacity_reached_is_full_and_inserts_nothing);
        TEST_RUN(test_retention_forgets_keys_and_keeps_the_clock);
        TEST_RUN(test_get_receipt_unknown_is_enoent_and_known_returns_all_fields);
        TEST_RUN(test_mark_printed_then_synced_moves_states_and_counters);
        TEST_RUN(test_oldest_unsynced_follows_the_oldest_receipt_the_ofd_has_not_acknowledged);
        TEST_RUN(test_set_print_rejected_counts_the_receipt_and_keeps_it_pending);
        TEST_RUN(test_retry_print_puts_the_receipt_back_in_the_queue);
        TEST_RUN(test_cancel_frees_capacity_and_is_final);
        TEST_RUN(test_cancel_without_note_or_who_says_so);
        TEST_RUN(test_list_print_rejected_oldest_first_up_to_the_limit);
        TEST_RUN(test_retention_prunes_cancelled_receipts_with_their_keys);
        TEST_RUN(test_conn_query_one_binds_steps_once_and_resets);
        return 0;
}
