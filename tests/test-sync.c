/* SPDX-License-Identifier: MIT */
/* The sync worker on a real sd-event loop, with a real buffer file in a temporary directory and
 * tests/fake-upstream.py as the OFD (a child on loopback, switched between failure modes through its
 * /_control API): delivery once each in HLC order, printing as the precondition, backoff, dead letters and
 * their retry/resolve, Retry-After, the breaker's walk, hangs and dropped answers, coalesced triggers,
 * stopping, and retention. */

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "json-util.h"
#include "log.h"
#include "store.h"
#include "sync.h"
#include "fake-upstream-client.h"
#include "tests.h"

#define MSEC USEC_PER_MSEC
#define TOKEN "test-token"
#define OLD "2020-01-01T00:00:00.000Z"


/* How often the fake stored (not: saw) this Idempotency-Key. */
static unsigned ofd_key_count(const char *id) {
        _cleanup_(json_object_putp) json_object *root = NULL;
        json_object *keys;
        unsigned n = 0;

        ASSERT_TRUE(json_object_object_get_ex(fake_state("ofd", &root), "keys", &keys));
        for (size_t i = 0; i < json_object_array_length(keys); i++)
                if (streq(json_object_get_string(json_object_array_get_idx(keys, i)), id))
                        n++;
        return n;
}

/* ---- the environment: a directory, a loop, a store, a glue, the worker and what it reported ---- */

#define MAX_RECEIPTS 1200

typedef struct Env {
        char dir[PATH_MAX / 2];
        char path[PATH_MAX];
        sd_event *event;
        Store *store;
        CurlGlue *glue;
        Sync *sync;

        unsigned n_passes;
        SyncPassStats last_pass;
        unsigned n_changed[_STORE_STATUS_MAX];
        unsigned n_dead;
        char last_dead_id[64];
        char last_dead_reason[SYNC_REASON_MAX + 64];
        BreakerState breaker_changes[32];
        usec_t breaker_change_times[32];  /* CLOCK_MONOTONIC */
        size_t n_breaker_changes;
        unsigned n_counters;
        bool idle;

        /* what an operation handed back */
        bool done;
        int error;
        SyncRetentionStats retention;
        size_t n_dlq;
        char dlq_ids[8][64];
        bool dlq_resolved[8];
} Env;

static uint64_t random_zero(void *userdata) {
        /* The bottom of every jitter range: backoffs are exactly base - base / 2. */
        return 0;
}

static SyncOptions test_options(void) {
        static char url[64];
        SyncOptions o = SYNC_OPTIONS_DEFAULT;

        snprintf(url, sizeof url, "http://127.0.0.1:%u", fake_port);
        o.url = url;
        o.token = TOKEN;
        o.timeout = 2 * USEC_PER_SEC;
        /* Long: in these tests only triggers, retries and the breaker start passes. */
        o.interval = USEC_PER_HOUR;
        o.initial_backoff = 100 * MSEC;
        o.max_backoff = 400 * MSEC;
        o.retention_first_delay = USEC_PER_HOUR;
        o.random = random_zero;
        return o;
}

static void on_receipt_changed(Sync *s, const char *id, StoreStatus status, void *userdata) {
        Env *e = userdata;

        ASSERT_TRUE(status >= 0 && status < _STORE_STATUS_MAX);
        e->n_changed[status]++;
}

static void on_dead_lettered(Sync *s, const char *id, const char *reason, void *userdata) {
        Env *e = userdata;

        e->n_dead++;
        snprintf(e->last_dead_id, sizeof e->last_dead_id, "%s", id);
        snprintf(e->last_dead_reason, sizeof e->last_dead_reason, "%s", reason);
}

static void on_breaker_changed(Sync *s, BreakerState state, void *userdata) {
        Env *e = userdata;

        ASSERT_EQ(state, sync_get_breaker_state(s));
        ASSERT_TRUE(e->n_breaker_changes < ELEMENTSOF(e->breaker_changes));
        /* When it changed is the breaker's own time, the "now" its transition was decided with (its open
         * timeout counts from there), taken before the send's result or the pass start was handled: now()
         * here can be later by however long that took on a loaded machine. */
        e->breaker_change_times[e->n_breaker_changes] = sync_get_breaker(s)->changed_at;
        e->breaker_changes[e->n_breaker_changes++] = state;
}

static void on_counters_changed(Sync *s, void *userdata) {
        Env *e = userdata;
        e->n_counters++;
}

static void on_pass_finished(Sync *s, const SyncPassStats *stats, void *userdata) {
        Env *e = userdata;

        e->n_passes++;
        e->last_pass = *stats;
        ASSERT_FALSE(sync_is_syncing(s));
}

static void on_idle(Sync *s, void *userdata) {
        Env *e = userdata;

        ASSERT_TRUE(sync_is_idle(s));
        e->idle = true;
}

static const SyncCallbacks callbacks = {
        .receipt_changed = on_receipt_changed,
        .dead_lettered = on_dead_lettered,
        .breaker_changed = on_breaker_changed,
        .counters_changed = on_counters_changed,
        .pass_finished = on_pass_finished,
        .idle = on_idle,
};

static void env_setup(Env *e) {
        const char *tmp = getenv("TMPDIR") ?: "/tmp";

        *e = (Env) {};
        snprintf(e->dir, sizeof e->dir, "%s/test-sync-XXXXXX", tmp);
        ASSERT_NOT_NULL(mkdtemp(e->dir));
        snprintf(e->path, sizeof e->path, "%s/buffer.db", e->dir);
        ASSERT_OK(sd_event_new(&e->event));
        ASSERT_OK(store_open(&e->store, e->event, e->path, &(StoreOptions) { .capacity = 5000 }));
        ASSERT_OK(curl_glue_new(&e->glue, e->event));
        fake_reset();
}

typedef bool (*Predicate)(Env *e);

static void run_until(Env *e, Predicate p, usec_t timeout) {
        usec_t deadline = now(CLOCK_MONOTONIC) + timeout;

        while (!p(e)) {
                if (now(CLOCK_MONOTONIC) >= deadline) {
                        fprintf(stderr, "condition not reached within %" PRIu64 " ms\n", timeout / MSEC);
                        exit(EXIT_FAILURE);
                }
                ASSERT_OK(sd_event_run(e->event, 10 * MSEC));
        }
}

static void run_for(Env *e, usec_t duration) {
        usec_t end = now(CLOCK_MONOTONIC) + duration;

        while (now(CLOCK_MONOTONIC) < end)
                ASSERT_OK(sd_event_run(e->event, 10 * MSEC));
}

static bool store_idle(Env *e) {
        return store_is_idle(e->store);
}

static bool op_done(Env *e) {
        return e->done;
}

static bool dead_lettered_one(Env *e) {
        return e->n_dead >= 1;
}

static bool request_in_flight(Env *e) {
        return sync_get_in_flight(e->sync) > 0;
}

static bool not_syncing(Env *e) {
        return !sync_is_syncing(e->sync);
}

static bool idle_reported(Env *e) {
        return e->idle;
}

static unsigned wanted_passes;
static bool passes_reached(Env *e) {
        return e->n_passes >= wanted_passes;
}

static void run_passes(Env *e, unsigned n, usec_t timeout) {
        wanted_passes = e->n_passes + n;
        run_until(e, passes_reached, timeout);
}

/* The worker, started, with its first pass (on an empty buffer, or whatever is in it) done. */
static void env_start(Env *e, const SyncOptions *o) {
        ASSERT_OK(sync_new(&e->sync, e->event, e->store, e->glue, o, callbacks, e));
        ASSERT_FALSE(sync_is_running(e->sync));
        ASSERT_OK(sync_start(e->sync));
        ASSERT_TRUE(sync_is_running(e->sync));
        run_passes(e, 1, 5 * USEC_PER_SEC);
}

static void env_teardown(Env *e) {
        DIR *d;
        struct dirent *de;

        e->sync = sync_free(e->sync);
        run_until(e, store_idle, 10 * USEC_PER_SEC);
        e->glue = curl_glue_free(e->glue);
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

static void trigger_expect(Env *e, SyncTriggerResult expected) {
        SyncTriggerResult r;

        ASSERT_OK(sync_trigger(e->sync, &r));
        if (r != expected)
                fprintf(stderr, "trigger: %s, expected %s\n", sync_trigger_result_to_string(r),
                        sync_trigger_result_to_string(expected));
        ASSERT_EQ(r, expected);
}

/* ---- the buffer: receipts in, state read back through a connection of our own ---- */

typedef struct Receipts {
        unsigned n;
        unsigned n_done;
        char ids[MAX_RECEIPTS][64];
} Receipts;

static unsigned receipt_serial;

static void on_submitted(Store *s, int error, StoreSubmitOutcome outcome, const StoreReceipt *receipt,
                         void *userdata) {
        char *slot = userdata;

        ASSERT_OK(error);
        ASSERT_EQ(outcome, STORE_SUBMIT_CREATED);
        snprintf(slot, 64, "%s", receipt->id);
}

static void on_printed(Store *s, int result, void *userdata) {
        ASSERT_OK(result);
}

/* n receipts in the buffer, in this order (hence HLC order: one writer stamps them in queue order),
 * printed or not. */
static void make_receipts(Env *e, Receipts *r, unsigned n, bool printed) {
        unsigned first = r->n;

        ASSERT_TRUE(first + n <= MAX_RECEIPTS);
        for (unsigned i = 0; i < n; i++) {
                char key[64], hash[64], data[128];
                unsigned serial = ++receipt_serial;

                snprintf(key, sizeof key, "key-%u", serial);
                snprintf(hash, sizeof hash, "hash-%u", serial);
                snprintf(data, sizeof data,
                         "{\"serial\":%u,\"items\":[{\"name\":\"tea\",\"price\":\"1.00\"}]}", serial);
                ASSERT_OK(store_submit_receipt(e->store,
                                               &(StoreReceiptNew) {
                                                       .idempotency_key = key,
                                                       .request_hash = hash,
                                                       .pos_id = "pos-7",
                                                       .type = "sale",
                                                       .total_kopecks = 100,
                                                       .receipt_data = data,
                                               },
                                               on_submitted, r->ids[first + i]));
        }
        run_until(e, store_idle, 10 * USEC_PER_SEC);
        r->n += n;

        if (!printed)
                return;
        for (unsigned i = first; i < r->n; i++) {
                char doc[96];

                snprintf(doc, sizeof doc, "{\"fn\":\"9999078900001234\",\"fd\":%u,\"fpd\":\"12345\"}",
                         i + 1);
                ASSERT_OK(
                        store_mark_printed(e->store, r->ids[i], doc, now(CLOCK_REALTIME), on_printed, NULL));
        }
        run_until(e, store_idle, 10 * USEC_PER_SEC);
}

static void print_receipt(Env *e, const char *id) {
        ASSERT_OK(store_mark_printed(e->store, id, "{\"fn\":\"1\",\"fd\":1}", now(CLOCK_REALTIME),
                                     on_printed, NULL));
        run_until(e, store_idle, 10 * USEC_PER_SEC);
}

static sqlite3 *db_open(Env *e) {
        sqlite3 *db = NULL;

        ASSERT_EQ(sqlite3_open_v2(e->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        return db;
}

static void db_exec(Env *e, const char *sql) {
        sqlite3 *db = db_open(e);
        char *error = NULL;

        if (sqlite3_exec(db, sql, NULL, NULL, &error) != SQLITE_OK) {
                fprintf(stderr, "SQL failed: %s\n%s\n", error, sql);
                exit(EXIT_FAILURE);
        }
        sqlite3_close(db);
}

static int job_exec_sql(StoreConn *c, void *sql) {
        char *error = NULL;

        if (sqlite3_exec(store_conn_get_db(c), sql, NULL, NULL, &error) != SQLITE_OK) {
                fprintf(stderr, "SQL failed: %s\n%s\n", error, (const char *) sql);
                exit(EXIT_FAILURE);
        }
        return 0;
}

static void on_exec_done(Store *s, int result, void *userdata) {
        int *ret = userdata;

        *ret = result;
}

/* SQL on the daemon's own writer connection, in its transaction: rows that only the daemon writes, as in
 * production (the counts and the key index follow the writer's own writes). */
static void writer_exec(Env *e, const char *sql) {
        int result = INT_MIN;

        ASSERT_OK(store_write(e->store, job_exec_sql, (void *) sql, on_exec_done, &result));
        while (result == INT_MIN)
                ASSERT_OK(sd_event_run(e->event, UINT64_MAX));
        ASSERT_OK(result);
}

/* The first column of the first row, with "%s" in sql replaced by the (quoted) id. */
static int64_t db_int(Env *e, const char *sql, const char *id) {
        sqlite3 *db = db_open(e);
        sqlite3_stmt *stmt = NULL;
        int64_t v;

        ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
        if (id)
                ASSERT_EQ(sqlite3_bind_text(stmt, 1, id, -1, SQLITE_TRANSIENT), SQLITE_OK);
        ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
        v = sqlite3_column_int64(stmt, 0);
        sqlite3_finalize(stmt);
        sqlite3_close(db);
        return v;
}

static char *db_text(Env *e, const char *sql, const char *id) {
        sqlite3 *db = db_open(e);
        sqlite3_stmt *stmt = NULL;
        char *v = NULL;

        ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
        if (id)
                ASSERT_EQ(sqlite3_bind_text(stmt, 1, id, -1, SQLITE_TRANSIENT), SQLITE_OK);
        if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0))
                v = strdup((const char *) sqlite3_column_text(stmt, 0));
        sqlite3_finalize(stmt);
        sqlite3_close(db);
        return v;
}

static void assert_status(Env *e, const char *id, const char *status) {
        _cleanup_free_ char *v = db_text(e, "SELECT status FROM receipts WHERE id = ?", id);
        ASSERT_STREQ(v, status);
}

static int64_t attempts_of(Env *e, const char *id) {
        return db_int(e, "SELECT attempts FROM receipts WHERE id = ?", id);
}

static int64_t count_status(Env *e, const char *status) {
        return db_int(e, "SELECT COUNT(*) FROM receipts WHERE status = ?", status);
}

/* Milliseconds from now to the receipt's next_retry_at. */
/* A receipt's next_retry_at as CLOCK_REALTIME microseconds. */
static int64_t retry_at(Env *e, const char *id) {
        return db_int(e,
                      "SELECT CAST(ROUND((julianday(next_retry_at) - 2440587.5) * 86400000000.0) "
                      "AS INTEGER) FROM receipts WHERE id = ?",
                      id);
}

/* The retry was set lo_ms..hi_ms after the failed attempt, which the worker handled between before and
 * after (CLOCK_REALTIME, read by the test around the pass). Bounds from both ends instead of a distance
 * from the test's own later clock, which a loaded machine stretches; 1 ms for the stored milliseconds. */
static void assert_retry_in(Env *e, const char *id, usec_t before, usec_t after, int64_t lo_ms,
                            int64_t hi_ms) {
        int64_t at = retry_at(e, id);

        ASSERT_TRUE(after >= before);
        ASSERT_TRUE(at - (int64_t) before >= (lo_ms - 1) * (int64_t) MSEC);
        ASSERT_TRUE(at - (int64_t) after <= (hi_ms + 1) * (int64_t) MSEC);
}

static void assert_db_healthy(Env *e) {
        _cleanup_free_ char *v = db_text(e, "PRAGMA integrity_check", NULL);

        ASSERT_STREQ(v, "ok");
        ASSERT_EQ(db_int(e, "SELECT COUNT(*) FROM pragma_foreign_key_check", NULL), 0);
}

static unsigned wanted_synced;
static bool synced_reached(Env *e) {
        return e->n_changed[STORE_STATUS_SYNCED] >= wanted_synced;
}

static void run_until_synced(Env *e, unsigned n, usec_t timeout) {
        wanted_synced = n;
        run_until(e, synced_reached, timeout);
}

/* ---- DLQ operation callbacks ---- */

static void on_done(Sync *s, int error, void *userdata) {
        Env *e = userdata;

        e->done = true;
        e->error = error;
}

static void on_dlq_list(Sync *s, int error, const SyncDeadLetter *entries, size_t n, void *userdata) {
        Env *e = userdata;

        e->done = true;
        e->error = error;
        e->n_dlq = n;
        for (size_t i = 0; i < n && i < ELEMENTSOF(e->dlq_ids); i++) {
                snprintf(e->dlq_ids[i], sizeof e->dlq_ids[i], "%s", entries[i].receipt_id);
                e->dlq_resolved[i] = entries[i].resolved;
        }
        if (n > 0) {
                _cleanup_(json_object_putp) json_object *a = NULL;
                json_object *first, *v;

                ASSERT_OK(sync_dead_letters_to_json(entries, n, &a));
                ASSERT_EQ(json_object_array_length(a), n);
                first = json_object_array_get_idx(a, 0);
                ASSERT_TRUE(json_object_object_get_ex(first, "receipt_id", &v));
                ASSERT_STREQ(json_object_get_string(v), entries[0].receipt_id);
                ASSERT_TRUE(json_object_object_get_ex(first, "reason", &v));
                ASSERT_STREQ(json_object_get_string(v), entries[0].reason);
        }
}

static int dlq_retry(Env *e, const char *id) {
        e->done = false;
        ASSERT_OK(sync_dlq_retry(e->sync, id, "admin", on_done, e));
        run_until(e, op_done, 5 * USEC_PER_SEC);
        return e->error;
}

static int dlq_resolve(Env *e, const char *id, const char *note) {
        e->done = false;
        ASSERT_OK(sync_dlq_resolve(e->sync, id, note, "ops", on_done, e));
        run_until(e, op_done, 5 * USEC_PER_SEC);
        return e->error;
}

static void dlq_list(Env *e, bool unresolved_only) {
        e->done = false;
        ASSERT_OK(sync_dlq_list(e->sync, 0, unresolved_only, on_dlq_list, e));
        run_until(e, op_done, 5 * USEC_PER_SEC);
        ASSERT_OK(e->error);
}

/* ---- the tests ---- */

static void test_pending_receipts_sync_once_each_in_hlc_order(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        _cleanup_(json_object_putp) json_object *root = NULL, *status = NULL;
        SyncOptions o = test_options();
        json_object *ofd, *keys, *bodies, *body, *v, *v2;
        Env e;

        env_setup(&e);
        o.max_in_flight = 1;
        env_start(&e, &o);
        ASSERT_EQ(e.last_pass.result, SYNC_PASS_NOTHING);
        ASSERT_TRUE(sync_get_last_sync_usec(e.sync) > 0);

        make_receipts(&e, r, 50, true);
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        /* Never inside the caller. */
        ASSERT_EQ(e.n_passes, 1);
        run_passes(&e, 1, 20 * USEC_PER_SEC);

        ASSERT_EQ(e.last_pass.result, SYNC_PASS_OK);
        ASSERT_EQ(e.last_pass.selected, 50);
        ASSERT_EQ(e.last_pass.sent, 50);
        ASSERT_EQ(e.last_pass.synced, 50);
        ASSERT_EQ(e.n_changed[STORE_STATUS_SYNCED], 50);
        ASSERT_EQ(count_status(&e, "synced"), 50);
        ASSERT_EQ_U(store_get_counters(e.store)->synced, 50);
        ASSERT_EQ_U(store_get_counters(e.store)->pending, 0);
        ASSERT_EQ_U(sync_get_metrics(e.sync)->synced, 50);
        ASSERT_EQ_U(sync_get_metrics(e.sync)->sent, 50);
        ASSERT_EQ_U(sync_get_metrics(e.sync)->request_duration.count, 50);
        ASSERT_EQ_U(sync_get_metrics(e.sync)->pass_duration.count, 1);
        ASSERT_TRUE(e.n_counters >= 1);

        /* The OFD stored each key once, in HLC order, one request at a time. */
        ofd = fake_state("ofd", &root);
        ASSERT_TRUE(json_object_object_get_ex(ofd, "keys", &keys));
        ASSERT_EQ(json_object_array_length(keys), 50);
        for (unsigned i = 0; i < 50; i++)
                ASSERT_STREQ(json_object_get_string(json_object_array_get_idx(keys, i)), r->ids[i]);
        ASSERT_TRUE(json_object_object_get_ex(ofd, "duplicates", &v));
        ASSERT_EQ(json_object_get_int(v), 0);
        ASSERT_TRUE(json_object_object_get_ex(ofd, "max_in_flight", &v));
        ASSERT_EQ(json_object_get_int(v), 1);
        ASSERT_TRUE(json_object_object_get_ex(ofd, "last_authorization", &v));
        ASSERT_STREQ(json_object_get_string(v), "Bearer " TOKEN);
        ASSERT_TRUE(json_object_object_get_ex(ofd, "last_content_type", &v));
        ASSERT_STREQ(json_object_get_string(v), "application/json");

        /* The body: ids, the HLC, the receipt and the fiscal document as objects. */
        ASSERT_TRUE(json_object_object_get_ex(ofd, "bodies", &bodies));
        body = json_object_array_get_idx(bodies, 0);
        ASSERT_TRUE(json_object_object_get_ex(body, "receipt_id", &v));
        ASSERT_STREQ(json_object_get_string(v), r->ids[0]);
        ASSERT_TRUE(json_object_object_get_ex(body, "pos_id", &v));
        ASSERT_STREQ(json_object_get_string(v), "pos-7");
        ASSERT_TRUE(json_object_object_get_ex(body, "hlc", &v));
        ASSERT_TRUE(json_object_is_type(v, json_type_string));
        {
                _cleanup_free_ char *hlc = db_text(&e, "SELECT hlc_timestamp FROM receipts WHERE id = ?",
                                                   r->ids[0]);
                ASSERT_STREQ(json_object_get_string(v), hlc);
        }
        ASSERT_TRUE(json_object_object_get_ex(body, "receipt", &v));
        ASSERT_TRUE(json_object_is_type(v, json_type_object));
        ASSERT_TRUE(json_object_object_get_ex(v, "items", &v2));
        ASSERT_TRUE(json_object_object_get_ex(body, "fiscal_doc", &v));
        ASSERT_TRUE(json_object_object_get_ex(v, "fd", &v2));
        ASSERT_EQ(json_object_get_int(v2), 1);

        /* The OFD's answer and the time are kept. */
        {
                _cleanup_free_ char *resp = db_text(&e, "SELECT ofd_response FROM receipts WHERE id = ?",
                                                    r->ids[0]);
                ASSERT_NOT_NULL(resp);
                ASSERT_TRUE(strstr(resp, "\"ofd_id\"") != NULL);
                ASSERT_EQ(db_int(&e, "SELECT synced_at IS NOT NULL AND last_error IS NULL FROM receipts "
                                     "WHERE id = ?",
                                 r->ids[49]),
                          1);
                ASSERT_EQ(db_int(&e, "SELECT COUNT(*) FROM buffer_events WHERE event = 'synced'", NULL), 50);
        }

        /* The status document. */
        ASSERT_OK(sync_to_json(e.sync, &status));
        ASSERT_TRUE(json_object_object_get_ex(status, "running", &v));
        ASSERT_TRUE(json_object_get_boolean(v));
        ASSERT_TRUE(json_object_object_get_ex(status, "last_result", &v));
        ASSERT_STREQ(json_object_get_string(v), "ok");
        ASSERT_TRUE(json_object_object_get_ex(status, "next_pass", &v));
        ASSERT_NOT_NULL(v);
        ASSERT_TRUE(json_object_object_get_ex(status, "totals", &v));
        ASSERT_TRUE(json_object_object_get_ex(v, "synced", &v2));
        ASSERT_EQ(json_object_get_int(v2), 50);
        ASSERT_TRUE(json_object_object_get_ex(status, "last_pass", &v));
        ASSERT_TRUE(json_object_object_get_ex(v, "sent", &v2));
        ASSERT_EQ(json_object_get_int(v2), 50);
        ASSERT_TRUE(json_object_object_get_ex(status, "circuit_breaker", &v));
        ASSERT_TRUE(json_object_object_get_ex(v, "state", &v2));
        ASSERT_STREQ(json_object_get_string(v2), "closed");
        ASSERT_TRUE(json_object_object_get_ex(v, "open_until", &v2));
        ASSERT_NULL(v2);

        /* Nothing left: another pass sends nothing. */
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 5 * USEC_PER_SEC);
        ASSERT_EQ(e.last_pass.result, SYNC_PASS_NOTHING);
        ASSERT_EQ(fake_int("ofd", "requests"), 50);
        assert_db_healthy(&e);
        env_teardown(&e);
}

static void test_sends_overlap_up_to_max_in_flight_and_no_more(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        SyncOptions o = test_options();
        int64_t max;
        Env e;

        env_setup(&e);
        o.max_in_flight = 50; /* clamped to the glue's connections per host */
        env_start(&e, &o);
        make_receipts(&e, r, 24, true);
        fake_mode("{\"target\": \"ofd\", \"mode\": \"slow\", \"delay\": 0.15}");
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 20 * USEC_PER_SEC);

        ASSERT_EQ(e.last_pass.synced, 24);
        max = fake_int("ofd", "max_in_flight");
        ASSERT_TRUE(max >= 2);
        ASSERT_TRUE(max <= (int64_t) SYNC_MAX_IN_FLIGHT_MAX);
        ASSERT_EQ(fake_int("ofd", "count"), 24);
        ASSERT_EQ(fake_int("ofd", "duplicates"), 0);
        env_teardown(&e);
}

static void test_unprinted_receipts_are_never_sent(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        SyncOptions o = test_options();
        char sql[256];
        Env e;

        env_setup(&e);
        env_start(&e, &o);
        make_receipts(&e, r, 3, false);
        make_receipts(&e, r, 2, true);
        /* A document without the printed state (a print that failed half-way) does not count either. */
        snprintf(sql, sizeof sql,
                 "UPDATE receipts SET fiscal_doc = '{\"fd\": 9}', print_status = 'print_failed' WHERE id = "
                 "'%s'",
                 r->ids[2]);
        db_exec(&e, sql);
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 5 * USEC_PER_SEC);

        ASSERT_EQ(e.last_pass.selected, 2);
        ASSERT_EQ(fake_int("ofd", "requests"), 2);
        for (unsigned i = 0; i < 3; i++) {
                assert_status(&e, r->ids[i], "pending");
                ASSERT_EQ(ofd_key_count(r->ids[i]), 0);
        }
        assert_status(&e, r->ids[3], "synced");
        assert_status(&e, r->ids[4], "synced");

        /* Printed later: sent then, once. */
        print_receipt(&e, r->ids[1]);
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 5 * USEC_PER_SEC);
        ASSERT_EQ(e.last_pass.synced, 1);
        assert_status(&e, r->ids[1], "synced");
        assert_status(&e, r->ids[0], "pending");
        ASSERT_EQ(fake_int("ofd", "requests"), 3);
        env_teardown(&e);
}

static void test_failures_are_retried_with_backoff_then_synced(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        _cleanup_free_ char *error = NULL;
        SyncOptions o = test_options();
        usec_t start, before;
        Env e;

        env_setup(&e);
        o.initial_backoff = 200 * MSEC;
        env_start(&e, &o);
        make_receipts(&e, r, 1, true);
        fake_mode("{\"target\": \"ofd\", \"mode\": \"fail_next\", \"count\": 3}");

        start = now(CLOCK_MONOTONIC);
        before = now(CLOCK_REALTIME);
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 5 * USEC_PER_SEC);

        /* The first failure, as recorded: one attempt, the OFD's reason, a retry time one backoff out. */
        ASSERT_EQ(e.last_pass.result, SYNC_PASS_FAILURES);
        ASSERT_EQ(e.last_pass.retried, 1);
        ASSERT_EQ(e.last_pass.unknown, 0);
        assert_status(&e, r->ids[0], "pending");
        ASSERT_EQ(attempts_of(&e, r->ids[0]), 1);
        error = db_text(&e, "SELECT last_error FROM receipts WHERE id = ?", r->ids[0]);
        ASSERT_STREQ(error, "HTTP 500: injected failure");
        assert_retry_in(&e, r->ids[0], before, now(CLOCK_REALTIME), 1, 100);
        ASSERT_EQ_U(sync_get_metrics(e.sync)->failures[SYNC_FAILURE_HTTP_5XX], 1);

        /* Not due yet: a pass on demand leaves it alone. */
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 5 * USEC_PER_SEC);
        ASSERT_EQ(e.last_pass.result, SYNC_PASS_NOTHING);
        ASSERT_EQ(fake_int("ofd", "requests"), 1);

        /* The retries come by themselves, 100, 200 and 200 ms apart (no jitter in this test, 400 ms cap). */
        run_until_synced(&e, 1, 5 * USEC_PER_SEC);
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - start >= 500 * MSEC);
        ASSERT_EQ(fake_int("ofd", "requests"), 4);
        ASSERT_EQ(ofd_key_count(r->ids[0]), 1);
        assert_status(&e, r->ids[0], "synced");
        ASSERT_EQ(attempts_of(&e, r->ids[0]), 3);
        ASSERT_EQ(db_int(&e,
                         "SELECT last_error IS NULL AND next_retry_at IS NULL FROM receipts WHERE id = ?",
                         r->ids[0]),
                  1);
        ASSERT_EQ(db_int(&e,
                         "SELECT COUNT(*) FROM buffer_events WHERE event = 'sync_failed' AND receipt_id = ?",
                         r->ids[0]),
                  3);
        ASSERT_EQ_U(sync_get_metrics(e.sync)->failed_attempts, 3);
        ASSERT_EQ(sync_get_breaker_state(e.sync), BREAKER_CLOSED);
        ASSERT_EQ(e.n_breaker_changes, 0);
        env_teardown(&e);
}

static void test_rejected_receipt_is_dead_lettered_and_retried_from_the_dlq(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        SyncOptions o = test_options();
        Env e;

        env_setup(&e);
        env_start(&e, &o);
        make_receipts(&e, r, 1, true);
        fake_mode("{\"target\": \"ofd\", \"mode\": \"status\", \"status\": 422}");
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 5 * USEC_PER_SEC);

        /* At once: one request, no retry. */
        ASSERT_EQ(e.last_pass.dead_lettered, 1);
        ASSERT_EQ(fake_int("ofd", "requests"), 1);
        assert_status(&e, r->ids[0], "dlq");
        ASSERT_EQ(attempts_of(&e, r->ids[0]), 1);
        ASSERT_EQ(e.n_dead, 1);
        ASSERT_STREQ(e.last_dead_id, r->ids[0]);
        ASSERT_STREQ(e.last_dead_reason, "HTTP 422: injected status 422");
        ASSERT_EQ(e.n_changed[STORE_STATUS_DLQ], 1);
        ASSERT_EQ_U(store_get_counters(e.store)->dlq, 1);
        {
                _cleanup_free_ char *reason = db_text(
                        &e, "SELECT reason FROM dlq WHERE receipt_id = ? AND resolved = 0", r->ids[0]);
                ASSERT_STREQ(reason, "HTTP 422: injected status 422");
        }
        ASSERT_EQ(
                db_int(&e,
                       "SELECT COUNT(*) FROM buffer_events WHERE event = 'dead_lettered' AND receipt_id = ?",
                       r->ids[0]),
                1);
        /* A healthy OFD refusing one receipt says nothing against the OFD. */
        ASSERT_EQ(sync_get_breaker(e.sync)->consecutive_failures, 0);

        dlq_list(&e, false);
        ASSERT_EQ(e.n_dlq, 1);
        ASSERT_STREQ(e.dlq_ids[0], r->ids[0]);
        ASSERT_FALSE(e.dlq_resolved[0]);

        /* Fixed at the OFD, retried by an admin: pending again, then synced by the pass that follows. */
        fake_mode("{\"target\": \"ofd\", \"mode\": \"accept\"}");
        ASSERT_OK(dlq_retry(&e, r->ids[0]));
        ASSERT_EQ(e.n_changed[STORE_STATUS_PENDING], 1);
        run_until_synced(&e, 1, 5 * USEC_PER_SEC);
        assert_status(&e, r->ids[0], "synced");
        ASSERT_EQ(ofd_key_count(r->ids[0]), 1);
        {
                _cleanup_free_ char *note =
                        db_text(&e,
                                "SELECT resolution_note || '/' || resolved_by FROM dlq WHERE receipt_id = ? "
                                "AND resolved = 1",
                                r->ids[0]);
                ASSERT_STREQ(note, "retried/admin");
        }

        /* Retried and synced: out of the DLQ, so neither retried nor resolved again (not "resolved"). */
        ASSERT_ERROR(dlq_retry(&e, r->ids[0]), EALREADY);
        ASSERT_ERROR(dlq_resolve(&e, r->ids[0], "late"), EALREADY);
        ASSERT_ERROR(dlq_retry(&e, "00000000-0000-7000-8000-000000000000"), ENOENT);
        dlq_list(&e, true);
        ASSERT_EQ(e.n_dlq, 0);
        dlq_list(&e, false);
        ASSERT_EQ(e.n_dlq, 1);
        ASSERT_TRUE(e.dlq_resolved[0]);
        env_teardown(&e);
}

static void test_resolved_dead_letter_keeps_its_receipt_in_the_dlq_for_good(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        _cleanup_free_ char *row = NULL;
        SyncOptions o = test_options();
        Env e;

        env_setup(&e);
        env_start(&e, &o);
        make_receipts(&e, r, 2, true);
        fake_mode("{\"target\": \"ofd\", \"mode\": \"status\", \"status\": 400}");
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 5 * USEC_PER_SEC);
        ASSERT_EQ(e.last_pass.dead_lettered, 2);

        ASSERT_OK(dlq_resolve(&e, r->ids[0], "filed on paper"));
        assert_status(&e, r->ids[0], "dlq");
        row = db_text(&e, "SELECT resolved || '/' || resolution_note || '/' || resolved_by FROM dlq "
                          "WHERE receipt_id = ?",
                      r->ids[0]);
        ASSERT_STREQ(row, "1/filed on paper/ops");
        /* Resolved is final: not resolved again nor retried (that would send what was handled by hand). */
        ASSERT_ERROR(dlq_resolve(&e, r->ids[0], "again"), ESTALE);
        ASSERT_ERROR(dlq_retry(&e, r->ids[0]), ESTALE);
        assert_status(&e, r->ids[0], "dlq");
        ASSERT_ERROR(dlq_resolve(&e, "00000000-0000-7000-8000-000000000000", NULL), ENOENT);

        /* Unresolved first. */
        dlq_list(&e, false);
        ASSERT_EQ(e.n_dlq, 2);
        ASSERT_STREQ(e.dlq_ids[0], r->ids[1]);
        ASSERT_FALSE(e.dlq_resolved[0]);
        ASSERT_STREQ(e.dlq_ids[1], r->ids[0]);
        ASSERT_TRUE(e.dlq_resolved[1]);
        dlq_list(&e, true);
        ASSERT_EQ(e.n_dlq, 1);

        /* A receipt that never was in the DLQ cannot be retried from it. */
        make_receipts(&e, r, 1, false);
        ASSERT_ERROR(dlq_retry(&e, r->ids[2]), EALREADY);
        ASSERT_ERROR(dlq_resolve(&e, r->ids[2], NULL), EALREADY);
        env_teardown(&e);
}

static void test_rate_limit_retry_after_is_honoured(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        _cleanup_(json_object_putp) json_object *status = NULL;
        SyncOptions o = test_options();
        json_object *v, *v2;
        usec_t limited, before;
        Env e;

        env_setup(&e);
        o.max_in_flight = 1;
        env_start(&e, &o);
        make_receipts(&e, r, 2, true);
        fake_mode("{\"target\": \"ofd\", \"mode\": \"ratelimit\", \"retry_after\": 1}");
        /* Before the 429 came: the hold counts from its handling, which is later. */
        limited = now(CLOCK_MONOTONIC);
        before = now(CLOCK_REALTIME);
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 5 * USEC_PER_SEC);

        /* The first got 429 and waits a second, not a backoff; the second was not sent at all. */
        ASSERT_EQ(e.last_pass.sent, 1);
        ASSERT_EQ(e.last_pass.retried, 1);
        ASSERT_EQ(fake_int("ofd", "requests"), 1);
        assert_retry_in(&e, r->ids[0], before, now(CLOCK_REALTIME), 1000, 1000);
        ASSERT_EQ(attempts_of(&e, r->ids[0]), 1);
        ASSERT_EQ(attempts_of(&e, r->ids[1]), 0);
        ASSERT_EQ_U(sync_get_metrics(e.sync)->failures[SYNC_FAILURE_RATE_LIMITED], 1);
        ASSERT_OK(sync_to_json(e.sync, &status));
        ASSERT_TRUE(json_object_object_get_ex(status, "backoff", &v));
        ASSERT_TRUE(json_object_object_get_ex(v, "hold_until", &v2));
        ASSERT_NOT_NULL(v2);

        /* While the OFD's hold lasts, nothing goes out, not even on demand. */
        fake_mode("{\"target\": \"ofd\", \"mode\": \"accept\"}");
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 5 * USEC_PER_SEC);
        ASSERT_EQ(e.last_pass.result, SYNC_PASS_HELD);
        run_for(&e, 500 * MSEC);
        ASSERT_EQ(fake_int("ofd", "requests"), 1);

        run_until_synced(&e, 2, 5 * USEC_PER_SEC);
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - limited >= 900 * MSEC);
        ASSERT_EQ(fake_int("ofd", "requests"), 3);
        env_teardown(&e);
}

static void test_retry_after_as_http_date_is_honoured(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        SyncOptions o = test_options();
        char date[64], mode[160];
        time_t t = time(NULL) + 4;
        struct tm tm;
        usec_t before;
        int64_t at;
        Env e;

        env_setup(&e);
        env_start(&e, &o);
        make_receipts(&e, r, 1, true);
        ASSERT_NOT_NULL(gmtime_r(&t, &tm));
        ASSERT_TRUE(strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm) > 0);
        snprintf(mode, sizeof mode,
                 "{\"target\": \"ofd\", \"mode\": \"status\", \"status\": 503, \"retry_after\": \"%s\"}",
                 date);
        fake_mode(mode);
        before = now(CLOCK_REALTIME);
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 5 * USEC_PER_SEC);

        ASSERT_EQ(e.last_pass.retried, 1);
        /* The OFD's date itself, not the 50 ms backoff: libcurl counts whole seconds from when the header
         * came, the worker adds them to when it handled the answer (at most the pass later). Not measured
         * from the test's own clock now, which a loaded machine makes late. */
        at = retry_at(&e, r->ids[0]);
        ASSERT_TRUE(at >= ((int64_t) t - 1) * (int64_t) USEC_PER_SEC);
        ASSERT_TRUE(at <= ((int64_t) t + 1) * (int64_t) USEC_PER_SEC +
                                  (int64_t) (now(CLOCK_REALTIME) - before));
        ASSERT_EQ_U(sync_get_metrics(e.sync)->failures[SYNC_FAILURE_UNAVAILABLE], 1);
        env_teardown(&e);
}

static void test_persistent_failure_dead_letters_after_max_attempts(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        SyncOptions o = test_options();
        Env e;

        env_setup(&e);
        o.max_attempts = 3;
        o.breaker.failure_threshold = 10;
        env_start(&e, &o);
        make_receipts(&e, r, 1, true);
        fake_mode("{\"target\": \"ofd\", \"mode\": \"fail\"}");
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_until(&e, dead_lettered_one, 5 * USEC_PER_SEC);

        ASSERT_EQ(fake_int("ofd", "requests"), 3);
        assert_status(&e, r->ids[0], "dlq");
        ASSERT_EQ(attempts_of(&e, r->ids[0]), 3);
        ASSERT_STREQ(e.last_dead_reason, "gave up after 3 attempts, last: HTTP 500: injected failure");
        ASSERT_EQ(db_int(&e, "SELECT COUNT(*) FROM dlq WHERE receipt_id = ?", r->ids[0]), 1);
        ASSERT_EQ_U(sync_get_metrics(e.sync)->dead_lettered, 1);
        ASSERT_EQ_U(sync_get_metrics(e.sync)->failed_attempts, 3);

        /* Nothing more is sent for it. */
        run_for(&e, 300 * MSEC);
        ASSERT_EQ(fake_int("ofd", "requests"), 3);
        env_teardown(&e);
}

static bool breaker_changes_reached(Env *e) {
        return e->n_breaker_changes >= wanted_passes;
}

static void run_until_breaker_changes(Env *e, size_t n, usec_t timeout) {
        wanted_passes = (unsigned) n;
        run_until(e, breaker_changes_reached, timeout);
}

static void test_breaker_opens_stops_sending_and_closes_after_trials(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        SyncOptions o = test_options();
        Env e;

        env_setup(&e);
        o.max_in_flight = 1;
        o.breaker.failure_threshold = 3;
        o.breaker.open_timeout = 300 * MSEC;
        o.breaker.close_after = 2;
        o.initial_backoff = 20 * MSEC;
        o.max_backoff = 40 * MSEC;
        env_start(&e, &o);
        make_receipts(&e, r, 8, true);
        fake_mode("{\"target\": \"ofd\", \"mode\": \"fail\"}");

        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 5 * USEC_PER_SEC);

        /* Three failures open it; the other five are neither sent nor charged an attempt. */
        ASSERT_EQ(e.last_pass.sent, 3);
        ASSERT_EQ(e.last_pass.retried, 3);
        ASSERT_EQ(sync_get_breaker_state(e.sync), BREAKER_OPEN);
        ASSERT_EQ(e.n_breaker_changes, 1);
        ASSERT_EQ(e.breaker_changes[0], BREAKER_OPEN);
        ASSERT_EQ(fake_int("ofd", "requests"), 3);
        for (unsigned i = 3; i < 8; i++)
                ASSERT_EQ(attempts_of(&e, r->ids[i]), 0);

        /* Open: no pass on demand, nothing sent however long it lasts. */
        trigger_expect(&e, SYNC_TRIGGER_CIRCUIT_OPEN);
        run_for(&e, 150 * MSEC);
        ASSERT_EQ(fake_int("ofd", "requests"), 3);

        /* Half-open after the timeout: one trial, it fails, open again. */
        run_until_breaker_changes(&e, 3, 5 * USEC_PER_SEC);
        ASSERT_EQ(e.breaker_changes[1], BREAKER_HALF_OPEN);
        ASSERT_TRUE(e.breaker_change_times[1] - e.breaker_change_times[0] >= 300 * MSEC);
        ASSERT_EQ(e.breaker_changes[2], BREAKER_OPEN);
        ASSERT_EQ(fake_int("ofd", "requests"), 4);
        ASSERT_EQ(sync_get_breaker(e.sync)->n_opened, 2);

        /* The OFD is back: half-open, two successful trials close it, then everything goes. */
        fake_mode("{\"target\": \"ofd\", \"mode\": \"accept\"}");
        run_until_breaker_changes(&e, 5, 5 * USEC_PER_SEC);
        ASSERT_EQ(e.breaker_changes[3], BREAKER_HALF_OPEN);
        ASSERT_TRUE(e.breaker_change_times[3] - e.breaker_change_times[2] >= 300 * MSEC);
        ASSERT_EQ(e.breaker_changes[4], BREAKER_CLOSED);
        ASSERT_EQ(fake_int("ofd", "requests"), 6);

        run_until_synced(&e, 8, 5 * USEC_PER_SEC);
        ASSERT_EQ(count_status(&e, "synced"), 8);
        ASSERT_EQ(fake_int("ofd", "count"), 8);
        ASSERT_EQ(fake_int("ofd", "duplicates"), 0);
        ASSERT_EQ(sync_get_breaker(e.sync)->n_closed, 1);
        ASSERT_TRUE(sync_get_breaker(e.sync)->n_rejected >= 1);
        env_teardown(&e);
}

static void test_reset_breaker_closes_it_and_starts_a_pass(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        SyncOptions o = test_options();
        Env e;

        env_setup(&e);
        o.breaker.failure_threshold = 1;
        o.breaker.open_timeout = USEC_PER_HOUR;
        env_start(&e, &o);
        make_receipts(&e, r, 2, true);
        fake_mode("{\"target\": \"ofd\", \"mode\": \"fail_next\", \"count\": 1}");
        o.max_in_flight = 1;
        ASSERT_OK(sync_set_options(e.sync, &o));
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 5 * USEC_PER_SEC);
        ASSERT_EQ(sync_get_breaker_state(e.sync), BREAKER_OPEN);
        ASSERT_EQ(fake_int("ofd", "requests"), 1);

        /* The breaker_changed callback comes from inside the call, and a pass follows. */
        ASSERT_EQ(sync_reset_breaker(e.sync), 1);
        ASSERT_EQ(e.breaker_changes[e.n_breaker_changes - 1], BREAKER_CLOSED);
        ASSERT_EQ(sync_get_breaker(e.sync)->n_resets, 1);
        run_passes(&e, 1, 5 * USEC_PER_SEC);
        /* The other goes now, the failed one when its backoff is over. */
        ASSERT_TRUE(e.last_pass.synced >= 1);
        run_until_synced(&e, 2, 5 * USEC_PER_SEC);
        ASSERT_EQ(sync_reset_breaker(e.sync), 0);
        env_teardown(&e);
}

typedef struct Ticker {
        sd_event_source *source;
        unsigned ticks;
        usec_t last;
        usec_t max_gap;
} Ticker;

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        Ticker *t = userdata;
        usec_t n = now(CLOCK_MONOTONIC);

        if (t->last > 0)
                t->max_gap = MAX(t->max_gap, n - t->last);
        t->last = n;
        t->ticks++;
        ASSERT_OK(sd_event_source_set_time_relative(s, 20 * MSEC));
        ASSERT_OK(sd_event_source_set_enabled(s, SD_EVENT_ONESHOT));
        return 0;
}

static void test_hang_times_out_as_unknown_outcome_without_blocking_the_loop(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        _cleanup_free_ char *error = NULL;
        SyncOptions o = test_options();
        Ticker t = {};
        usec_t start;
        Env e;

        env_setup(&e);
        o.timeout = 500 * MSEC;
        env_start(&e, &o);
        make_receipts(&e, r, 1, true);
        fake_mode("{\"target\": \"ofd\", \"mode\": \"hang\"}");
        ASSERT_OK(sd_event_add_time_relative(e.event, &t.source, CLOCK_MONOTONIC, 20 * MSEC, MSEC, on_tick,
                                             &t));

        start = now(CLOCK_MONOTONIC);
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 5 * USEC_PER_SEC);

        ASSERT_TRUE(now(CLOCK_MONOTONIC) - start >= 450 * MSEC);
        ASSERT_EQ(e.last_pass.retried, 1);
        ASSERT_EQ(e.last_pass.unknown, 1);
        error = db_text(&e, "SELECT last_error FROM receipts WHERE id = ?", r->ids[0]);
        ASSERT_STREQ(error, "timeout after the request was sent, outcome unknown");
        ASSERT_EQ_U(sync_get_metrics(e.sync)->failures[SYNC_FAILURE_UNKNOWN_OUTCOME], 1);
        /* The loop kept running its other sources while the request hung. */
        ASSERT_TRUE(t.ticks >= 15);
        ASSERT_TRUE(t.max_gap < 200 * MSEC);

        fake_mode("{\"target\": \"ofd\", \"mode\": \"accept\"}");
        run_until_synced(&e, 1, 5 * USEC_PER_SEC);
        ASSERT_EQ(ofd_key_count(r->ids[0]), 1);
        t.source = sd_event_source_disable_unref(t.source);
        env_teardown(&e);
}

static void test_dropped_answer_is_resent_with_the_same_key_and_synced_once(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        SyncOptions o = test_options();
        Env e;

        env_setup(&e);
        env_start(&e, &o);
        make_receipts(&e, r, 1, true);
        fake_mode("{\"target\": \"ofd\", \"mode\": \"drop\"}");
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 5 * USEC_PER_SEC);

        /* The OFD has it, we could not know: a failure with an unknown outcome. */
        ASSERT_EQ(e.last_pass.unknown, 1);
        assert_status(&e, r->ids[0], "pending");
        ASSERT_EQ(ofd_key_count(r->ids[0]), 1);
        ASSERT_TRUE(fake_int("ofd", "dropped") >= 1);

        fake_mode("{\"target\": \"ofd\", \"mode\": \"accept\"}");
        run_until_synced(&e, 1, 5 * USEC_PER_SEC);
        assert_status(&e, r->ids[0], "synced");
        ASSERT_EQ(e.last_pass.duplicates, 1);
        ASSERT_EQ_U(sync_get_metrics(e.sync)->duplicates, 1);
        /* Stored once at the OFD; the resend carried the same key and was recognized. */
        ASSERT_EQ(ofd_key_count(r->ids[0]), 1);
        ASSERT_TRUE(fake_int("ofd", "duplicates") >= 1);
        {
                _cleanup_free_ char *resp = db_text(&e, "SELECT ofd_response FROM receipts WHERE id = ?",
                                                    r->ids[0]);
                ASSERT_TRUE(resp && strstr(resp, "already have it"));
        }
        env_teardown(&e);
}

static void test_concurrent_triggers_coalesce_into_one_pass(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        SyncOptions o = test_options();
        unsigned passes;
        Env e;

        env_setup(&e);
        env_start(&e, &o);
        make_receipts(&e, r, 20, true);
        fake_mode("{\"target\": \"ofd\", \"mode\": \"slow\", \"delay\": 0.05}");
        passes = e.n_passes;

        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        trigger_expect(&e, SYNC_TRIGGER_ALREADY_RUNNING);
        trigger_expect(&e, SYNC_TRIGGER_ALREADY_RUNNING);
        /* And once it really runs, with requests out. */
        run_until(&e, request_in_flight, 5 * USEC_PER_SEC);
        ASSERT_TRUE(sync_is_syncing(e.sync));
        trigger_expect(&e, SYNC_TRIGGER_ALREADY_RUNNING);

        run_until_synced(&e, 20, 10 * USEC_PER_SEC);
        run_until(&e, not_syncing, 5 * USEC_PER_SEC);
        ASSERT_EQ(e.n_passes, passes + 1);
        ASSERT_EQ(fake_int("ofd", "requests"), 20);
        ASSERT_EQ(fake_int("ofd", "count"), 20);
        ASSERT_EQ(fake_int("ofd", "duplicates"), 0);
        env_teardown(&e);
}

typedef struct Waited {
        unsigned calls;
        int error;
        SyncPassStats stats;
} Waited;

static void on_waited(Sync *s, int error, const SyncPassStats *stats, void *userdata) {
        Waited *w = userdata;

        w->calls++;
        w->error = error;
        ASSERT_TRUE((error < 0) == (stats == NULL));
        if (stats)
                w->stats = *stats;
        /* Told after the pass's end, not from inside it. */
        ASSERT_FALSE(sync_is_syncing(s));
}

static Waited *waited_list[3];
static bool waited_all(Env *e) {
        for (size_t i = 0; i < ELEMENTSOF(waited_list); i++)
                if (waited_list[i] && waited_list[i]->calls == 0)
                        return false;
        return true;
}

static void test_trigger_wait_reports_the_pass_it_started_or_joined(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        SyncOptions o = test_options();
        Waited a = {}, b = {}, c = {}, gone = {};
        SyncWaiter *wa, *wb, *wc, *wgone;
        SyncTriggerResult t;
        unsigned passes;
        Env e;

        env_setup(&e);
        env_start(&e, &o);
        make_receipts(&e, r, 5, true);
        fake_mode("{\"target\": \"ofd\", \"mode\": \"slow\", \"delay\": 0.05}");
        passes = e.n_passes;

        /* The first starts a pass; the second joins it before it runs; nothing is called from inside. */
        ASSERT_OK(sync_trigger_wait(e.sync, &t, on_waited, &a, &wa));
        ASSERT_EQ(t, SYNC_TRIGGER_STARTED);
        ASSERT_OK(sync_trigger_wait(e.sync, &t, on_waited, &b, &wb));
        ASSERT_EQ(t, SYNC_TRIGGER_ALREADY_RUNNING);
        ASSERT_NOT_NULL(wa);
        ASSERT_NOT_NULL(wb);
        ASSERT_EQ(a.calls + b.calls, 0U);
        /* One that gives up is never called. */
        ASSERT_OK(sync_trigger_wait(e.sync, &t, on_waited, &gone, &wgone));
        ASSERT_NULL(sync_waiter_free(wgone));
        /* One that comes while the pass is running joins that pass. */
        run_until(&e, request_in_flight, 5 * USEC_PER_SEC);
        ASSERT_OK(sync_trigger_wait(e.sync, &t, on_waited, &c, &wc));
        ASSERT_EQ(t, SYNC_TRIGGER_ALREADY_RUNNING);

        waited_list[0] = &a;
        waited_list[1] = &b;
        waited_list[2] = &c;
        run_until(&e, waited_all, 10 * USEC_PER_SEC);
        ASSERT_EQ(e.n_passes, passes + 1);
        ASSERT_EQ(a.calls, 1U);
        ASSERT_EQ(b.calls, 1U);
        ASSERT_EQ(c.calls, 1U);
        ASSERT_EQ(gone.calls, 0U);
        ASSERT_OK(a.error);
        ASSERT_EQ(a.stats.synced, 5U);
        ASSERT_EQ(a.stats.result, SYNC_PASS_OK);
        ASSERT_EQ(b.stats.synced, 5U);
        ASSERT_EQ(c.stats.synced, 5U);

        /* A pass asked for and then stopped before it started: its waiter hears -ESHUTDOWN, at once. */
        a = (Waited){};
        ASSERT_OK(sync_trigger_wait(e.sync, &t, on_waited, &a, &wa));
        ASSERT_EQ(t, SYNC_TRIGGER_STARTED);
        sync_stop(e.sync);
        ASSERT_EQ(a.calls, 1U);
        ASSERT_ERROR(a.error, ESHUTDOWN);
        ASSERT_ERROR(sync_trigger_wait(e.sync, &t, on_waited, &b, &wb), ESHUTDOWN);

        /* Freed with a waiter: it hears -ESHUTDOWN too. */
        ASSERT_OK(sync_start(e.sync));
        a = (Waited){};
        ASSERT_OK(sync_trigger_wait(e.sync, &t, on_waited, &a, &wa));
        e.sync = sync_free(e.sync);
        ASSERT_EQ(a.calls, 1U);
        ASSERT_ERROR(a.error, ESHUTDOWN);
        memset(waited_list, 0, sizeof waited_list);
        env_teardown(&e);
}

static void test_stop_lets_the_request_finish_and_keeps_the_receipt(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        SyncOptions o = test_options();
        SyncTriggerResult t;
        Env e;

        env_setup(&e);
        o.timeout = 300 * MSEC;
        env_start(&e, &o);
        make_receipts(&e, r, 3, true);
        fake_mode("{\"target\": \"ofd\", \"mode\": \"hang\"}");
        o.max_in_flight = 1;
        ASSERT_OK(sync_set_options(e.sync, &o));
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_until(&e, request_in_flight, 5 * USEC_PER_SEC);

        sync_stop(e.sync);
        ASSERT_FALSE(sync_is_running(e.sync));
        ASSERT_FALSE(sync_is_idle(e.sync));
        ASSERT_ERROR(sync_trigger(e.sync, &t), ESHUTDOWN);
        run_until(&e, idle_reported, 5 * USEC_PER_SEC);

        /* The one in flight ended (as an unknown outcome) and was recorded; the rest were never started. */
        ASSERT_EQ(fake_int("ofd", "requests"), 1);
        for (unsigned i = 0; i < 3; i++)
                assert_status(&e, r->ids[i], "pending");
        ASSERT_EQ(attempts_of(&e, r->ids[0]), 1);
        ASSERT_EQ(attempts_of(&e, r->ids[1]), 0);
        ASSERT_EQ(e.last_pass.sent, 1);

        /* Started again, it goes on. */
        fake_mode("{\"target\": \"ofd\", \"mode\": \"accept\"}");
        ASSERT_OK(sync_start(e.sync));
        run_until_synced(&e, 3, 5 * USEC_PER_SEC);
        env_teardown(&e);
}

static bool ofd_has_request_open(Env *e) {
        return fake_int("ofd", "in_flight") > 0;
}

static void test_restart_in_the_middle_of_a_send_loses_nothing_and_stores_nothing_twice(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        SyncOptions o = test_options();
        Env e;

        env_setup(&e);
        env_start(&e, &o);
        make_receipts(&e, r, 1, true);
        /* The OFD stores it at once and answers later: it has it when we go away. */
        fake_mode("{\"target\": \"ofd\", \"mode\": \"slow\", \"delay\": 1}");
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_until(&e, ofd_has_request_open, 5 * USEC_PER_SEC);
        ASSERT_EQ(sync_get_in_flight(e.sync), 1);

        e.sync = sync_free(e.sync);
        run_until(&e, store_idle, 5 * USEC_PER_SEC);
        assert_status(&e, r->ids[0], "pending");
        ASSERT_EQ(attempts_of(&e, r->ids[0]), 0);
        ASSERT_EQ(ofd_key_count(r->ids[0]), 1);

        /* A new worker (the restart) sends it again with the same key: recognized, synced, stored once. */
        fake_mode("{\"target\": \"ofd\", \"mode\": \"accept\"}");
        env_start(&e, &o);
        ASSERT_EQ(e.last_pass.synced, 1);
        ASSERT_EQ(e.last_pass.duplicates, 1);
        assert_status(&e, r->ids[0], "synced");
        ASSERT_EQ(ofd_key_count(r->ids[0]), 1);
        env_teardown(&e);
}

static void test_flapping_ofd_opens_and_closes_the_breaker_and_everything_arrives_once(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        SyncOptions o = test_options();
        Env e;

        env_setup(&e);
        o.max_in_flight = 1;
        o.breaker.failure_threshold = 3;
        o.breaker.open_timeout = 100 * MSEC;
        o.breaker.close_after = 2;
        o.initial_backoff = 20 * MSEC;
        o.max_backoff = 40 * MSEC;
        env_start(&e, &o);
        make_receipts(&e, r, 20, true);
        /* Three accepted, three failed, and so on. */
        fake_mode("{\"target\": \"ofd\", \"mode\": \"flap\", \"count\": 3}");
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_until_synced(&e, 20, 15 * USEC_PER_SEC);

        ASSERT_EQ(count_status(&e, "synced"), 20);
        ASSERT_EQ(fake_int("ofd", "count"), 20);
        ASSERT_EQ(fake_int("ofd", "duplicates"), 0);
        ASSERT_TRUE(sync_get_breaker(e.sync)->n_opened >= 2);
        ASSERT_TRUE(sync_get_breaker(e.sync)->n_closed >= 1);
        env_teardown(&e);
}

static void test_refused_connection_is_a_plain_retry(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t l = sizeof sa;
        SyncOptions o = test_options();
        char url[64];
        int fd;
        Env e;

        /* A port nobody listens on: bound, never listened to, closed. */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &sa, &l));
        snprintf(url, sizeof url, "http://127.0.0.1:%u/", ntohs(sa.sin_port));
        close(fd);

        env_setup(&e);
        o.url = url;
        env_start(&e, &o);
        make_receipts(&e, r, 1, true);
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 5 * USEC_PER_SEC);

        ASSERT_EQ(e.last_pass.retried, 1);
        ASSERT_EQ(e.last_pass.unknown, 0);
        ASSERT_EQ_U(sync_get_metrics(e.sync)->failures[SYNC_FAILURE_CONNECTION], 1);
        {
                _cleanup_free_ char *error = db_text(&e, "SELECT last_error FROM receipts WHERE id = ?",
                                                     r->ids[0]);
                ASSERT_STREQ(error, "connection refused");
        }
        env_teardown(&e);
}

static void test_unusable_stored_data_is_dead_lettered_without_sending(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        SyncOptions o = test_options();
        char sql[256];
        Env e;

        env_setup(&e);
        env_start(&e, &o);
        make_receipts(&e, r, 2, true);
        snprintf(sql, sizeof sql, "UPDATE receipts SET receipt_data = '{broken' WHERE id = '%s'", r->ids[0]);
        db_exec(&e, sql);
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 5 * USEC_PER_SEC);

        ASSERT_EQ(e.last_pass.dead_lettered, 1);
        ASSERT_EQ(e.last_pass.synced, 1);
        ASSERT_EQ(fake_int("ofd", "requests"), 1);
        ASSERT_EQ(ofd_key_count(r->ids[0]), 0);
        assert_status(&e, r->ids[0], "dlq");
        ASSERT_STREQ(e.last_dead_reason, "the stored receipt or fiscal document is not a JSON object");
        env_teardown(&e);
}

static void on_retention(Sync *s, int error, const SyncRetentionStats *stats, void *userdata) {
        Env *e = userdata;

        e->done = true;
        e->error = error;
        e->retention = *stats;
}

static void run_retention(Env *e) {
        e->done = false;
        ASSERT_OK(sync_run_retention(e->sync, on_retention, e));
        ASSERT_FALSE(e->done);
        ASSERT_ERROR(sync_run_retention(e->sync, NULL, NULL), EBUSY);
        run_until(e, op_done, 20 * USEC_PER_SEC);
        ASSERT_OK(e->error);
}

static void test_retention_prunes_old_synced_and_resolved_and_keeps_the_rest(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        SyncOptions o = test_options();
        uint64_t transactions;
        char sql[1024];
        Env e;

        env_setup(&e);
        env_start(&e, &o);

        /* r0, r1: dead letters, r0's resolved long ago, r1's open. */
        make_receipts(&e, r, 2, true);
        fake_mode("{\"target\": \"ofd\", \"mode\": \"status\", \"status\": 422}");
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 5 * USEC_PER_SEC);
        ASSERT_EQ(e.last_pass.dead_lettered, 2);
        ASSERT_OK(dlq_resolve(&e, r->ids[0], "done"));

        /* r2, r3: synced long ago; r4: synced now; r5: pending (never printed) and old. */
        fake_mode("{\"target\": \"ofd\", \"mode\": \"accept\"}");
        make_receipts(&e, r, 3, true);
        make_receipts(&e, r, 1, false);
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 5 * USEC_PER_SEC);
        ASSERT_EQ(e.last_pass.synced, 3);

        snprintf(sql, sizeof sql,
                 "UPDATE receipts SET created_at = '" OLD "', synced_at = '" OLD
                 "' WHERE id IN ('%s', '%s');"
                 "UPDATE receipts SET created_at = '" OLD "' WHERE id IN ('%s', '%s', '%s');"
                 "UPDATE dlq SET moved_at = '" OLD "', resolved_at = CASE WHEN resolved THEN '" OLD "' END;",
                 r->ids[2], r->ids[3], r->ids[5], r->ids[0], r->ids[1]);
        db_exec(&e, sql);

        /* Many more old synced ones, written directly: more than one transaction's worth. */
        writer_exec(&e, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1100) "
                    "INSERT INTO receipts (id, pos_id, receipt_data, status, created_at, synced_at, hlc, "
                    "print_status) SELECT 'bulk-' || i, 'pos-7', '{}', 'synced', '" OLD "', '" OLD "', i, "
                    "'printed' FROM n;"
                    "INSERT INTO idempotency_keys (key, request_hash, receipt_id, created_at) "
                    "SELECT 'bulk-key-' || substr(id, 6), 'h', id, '" OLD "' FROM receipts "
                    "WHERE id LIKE 'bulk-%';"
                    "INSERT INTO buffer_events (receipt_id, event, created_at) "
                    "SELECT id, 'received', '" OLD "' FROM receipts WHERE id LIKE 'bulk-%';");

        transactions = store_get_stats(e.store)->n_transactions;
        run_retention(&e);

        ASSERT_EQ_U(e.retention.synced, 1102);
        ASSERT_EQ_U(e.retention.dead_letters, 1);
        ASSERT_EQ_U(e.retention.dlq_rows, 0);
        ASSERT_TRUE(e.retention.events >= 1100 + 2 * 3 + 3);
        /* Small transactions: 500 receipts at most in each. */
        ASSERT_TRUE(store_get_stats(e.store)->n_transactions - transactions >= 3 + 1 + 1 + 1);

        /* Gone, with their keys, events and dead letters. */
        for (unsigned i = 0; i < 4; i++) {
                bool pruned = IN_SET(i, 0u, 2u, 3u);

                ASSERT_EQ(db_int(&e, "SELECT COUNT(*) FROM receipts WHERE id = ?", r->ids[i]), !pruned);
                ASSERT_EQ(
                        db_int(&e, "SELECT COUNT(*) FROM idempotency_keys WHERE receipt_id = ?", r->ids[i]),
                        !pruned);
                ASSERT_EQ(db_int(&e, "SELECT COUNT(*) FROM buffer_events WHERE receipt_id = ?", r->ids[i]) >
                                  0,
                          !pruned);
        }
        ASSERT_EQ(db_int(&e, "SELECT COUNT(*) FROM dlq WHERE receipt_id = ?", r->ids[0]), 0);
        ASSERT_EQ(db_int(&e, "SELECT COUNT(*) FROM receipts WHERE id LIKE 'bulk-%'", NULL), 0);
        ASSERT_EQ(db_int(&e, "SELECT COUNT(*) FROM idempotency_keys WHERE receipt_id LIKE 'bulk-%'", NULL),
                  0);
        ASSERT_EQ(db_int(&e, "SELECT COUNT(*) FROM buffer_events WHERE receipt_id LIKE 'bulk-%'", NULL), 0);

        /* Kept: the open dead letter, the recent synced one, the pending one however old. */
        assert_status(&e, r->ids[1], "dlq");
        ASSERT_EQ(db_int(&e, "SELECT COUNT(*) FROM dlq WHERE receipt_id = ? AND resolved = 0", r->ids[1]),
                  1);
        assert_status(&e, r->ids[4], "synced");
        assert_status(&e, r->ids[5], "pending");
        ASSERT_EQ(db_int(&e, "SELECT COUNT(*) FROM idempotency_keys WHERE receipt_id = ?", r->ids[5]), 1);
        assert_db_healthy(&e);
        /* The buffer's counters follow. */
        run_for(&e, 20 * MSEC);
        ASSERT_EQ_U(store_get_counters(e.store)->synced, 1);
        ASSERT_EQ_U(store_get_counters(e.store)->dlq, 1);
        ASSERT_EQ_U(store_get_counters(e.store)->pending, 1);

        /* A second run has nothing to do. */
        run_retention(&e);
        ASSERT_EQ_U(e.retention.synced + e.retention.dead_letters + e.retention.dlq_rows +
                            e.retention.events,
                    0);
        env_teardown(&e);
}

static void test_retention_prunes_resolved_rows_of_retried_receipts(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        SyncOptions o = test_options();
        Env e;

        env_setup(&e);
        o.synced_retention = USEC_INFINITY; /* keep the receipt: only its old dead letter goes */
        env_start(&e, &o);
        make_receipts(&e, r, 1, true);
        fake_mode("{\"target\": \"ofd\", \"mode\": \"status\", \"status\": 422}");
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_passes(&e, 1, 5 * USEC_PER_SEC);
        fake_mode("{\"target\": \"ofd\", \"mode\": \"accept\"}");
        ASSERT_OK(dlq_retry(&e, r->ids[0]));
        run_until_synced(&e, 1, 5 * USEC_PER_SEC);
        db_exec(&e, "UPDATE dlq SET moved_at = '" OLD "', resolved_at = '" OLD "'; "
                    "UPDATE receipts SET synced_at = '" OLD "', created_at = '" OLD "';");

        run_retention(&e);
        ASSERT_EQ_U(e.retention.synced, 0);
        ASSERT_EQ_U(e.retention.dlq_rows, 1);
        assert_status(&e, r->ids[0], "synced");
        ASSERT_EQ(db_int(&e, "SELECT COUNT(*) FROM dlq", NULL), 0);
        env_teardown(&e);
}

static void test_reload_applies_to_the_next_request_and_reschedules(void) {
        _cleanup_free_ Receipts *r = new0(Receipts, 1);
        _cleanup_(json_object_putp) json_object *root = NULL;
        SyncOptions o = test_options();
        char url[80];
        json_object *ofd, *v;
        usec_t reloaded;
        Env e;

        env_setup(&e);
        env_start(&e, &o);
        make_receipts(&e, r, 1, true);
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_until_synced(&e, 1, 5 * USEC_PER_SEC);

        /* New token, no token, a URL with a trailing slash: from the next request on. */
        snprintf(url, sizeof url, "%s/", o.url);
        o.url = url;
        o.token = "second-token";
        ASSERT_OK(sync_set_options(e.sync, &o));
        make_receipts(&e, r, 1, true);
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_until_synced(&e, 2, 5 * USEC_PER_SEC);
        ofd = fake_state("ofd", &root);
        ASSERT_TRUE(json_object_object_get_ex(ofd, "last_authorization", &v));
        ASSERT_STREQ(json_object_get_string(v), "Bearer second-token");
        ASSERT_TRUE(json_object_object_get_ex(ofd, "paths", &v));
        ASSERT_STREQ(json_object_get_string(json_object_array_get_idx(v, 1)), "/ofd/v1/receipt");

        o.token = NULL;
        ASSERT_OK(sync_set_options(e.sync, &o));
        make_receipts(&e, r, 1, true);
        trigger_expect(&e, SYNC_TRIGGER_STARTED);
        run_until_synced(&e, 3, 5 * USEC_PER_SEC);
        json_object_put(TAKE_PTR(root));
        ofd = fake_state("ofd", &root);
        ASSERT_TRUE(json_object_object_get_ex(ofd, "last_authorization", &v));
        ASSERT_NULL(v);

        /* A shorter interval moves the next pass (an hour away) to the last start plus the new interval;
         * from then on passes come by themselves and pick up new receipts. */
        o.interval = 100 * MSEC;
        reloaded = now(CLOCK_MONOTONIC);
        ASSERT_OK(sync_set_options(e.sync, &o));
        make_receipts(&e, r, 1, true);
        run_until_synced(&e, 4, 5 * USEC_PER_SEC);
        run_passes(&e, 3, 5 * USEC_PER_SEC);
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - reloaded >= 200 * MSEC);
        ASSERT_EQ(fake_int("ofd", "count"), 4);
        env_teardown(&e);
}

static void test_options_are_validated(void) {
        SyncOptions o = test_options(), bad;
        Sync *s = NULL;
        Env e;

        env_setup(&e);
        bad = o;
        bad.url = NULL;
        ASSERT_ERROR(sync_new(&s, e.event, e.store, e.glue, &bad, callbacks, &e), EINVAL);
        bad = o;
        bad.token = "a\nb";
        ASSERT_ERROR(sync_new(&s, e.event, e.store, e.glue, &bad, callbacks, &e), EINVAL);
        bad = o;
        bad.batch_size = 0;
        ASSERT_ERROR(sync_new(&s, e.event, e.store, e.glue, &bad, callbacks, &e), EINVAL);
        bad = o;
        bad.initial_backoff = bad.max_backoff + 1;
        ASSERT_ERROR(sync_new(&s, e.event, e.store, e.glue, &bad, callbacks, &e), EINVAL);
        bad = o;
        bad.breaker.close_after = 0;
        ASSERT_ERROR(sync_new(&s, e.event, e.store, e.glue, &bad, callbacks, &e), EINVAL);
        bad = o;
        bad.max_attempts = 0;
        ASSERT_ERROR(sync_new(&s, e.event, e.store, e.glue, &bad, callbacks, &e), EINVAL);
        ASSERT_NULL(s);

        env_start(&e, &o);
        bad = o;
        bad.interval = 0;
        ASSERT_ERROR(sync_set_options(e.sync, &bad), EINVAL);
        ASSERT_TRUE(sync_is_running(e.sync));

        /* Idempotent start; a trigger on a stopped worker is refused. */
        ASSERT_OK(sync_start(e.sync));
        sync_stop(e.sync);
        ASSERT_ERROR(sync_trigger(e.sync, NULL), ESHUTDOWN);
        ASSERT_STREQ(sync_trigger_result_to_string(SYNC_TRIGGER_ALREADY_RUNNING), "already_running");
        ASSERT_STREQ(sync_pass_result_to_string(SYNC_PASS_NOTHING), "nothing_to_send");
        env_teardown(&e);
}

int main(void) {
        log_set_max_level(getenv("SYSTEMD_LOG_LEVEL") ? log_level_from_string(getenv("SYSTEMD_LOG_LEVEL"))
                                                       : LOG_ERR);
        ASSERT_EQ(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
        fake_start();

        TEST_RUN(test_pending_receipts_sync_once_each_in_hlc_order);
        TEST_RUN(test_sends_overlap_up_to_max_in_flight_and_no_more);
        TEST_RUN(test_unprinted_receipts_are_never_sent);
        TEST_RUN(test_failures_are_retried_with_backoff_then_synced);
        TEST_RUN(test_rejected_receipt_is_dead_lettered_and_retried_from_the_dlq);
        TEST_RUN(test_resolved_dead_letter_keeps_its_receipt_in_the_dlq_for_good);
        TEST_RUN(test_rate_limit_retry_after_is_honoured);
        TEST_RUN(test_retry_after_as_http_date_is_honoured);
        TEST_RUN(test_persistent_failure_dead_letters_after_max_attempts);
        TEST_RUN(test_breaker_opens_stops_sending_and_closes_after_trials);
        TEST_RUN(test_reset_breaker_closes_it_and_starts_a_pass);
        TEST_RUN(test_hang_times_out_as_unknown_outcome_without_blocking_the_loop);
        TEST_RUN(test_dropped_answer_is_resent_with_the_same_key_and_synced_once);
        TEST_RUN(test_concurrent_triggers_coalesce_into_one_pass);
        TEST_RUN(test_trigger_wait_reports_the_pass_it_started_or_joined);
        TEST_RUN(test_stop_lets_the_request_finish_and_keeps_the_receipt);
        TEST_RUN(test_restart_in_the_middle_of_a_send_loses_nothing_and_stores_nothing_twice);
        TEST_RUN(test_flapping_ofd_opens_and_closes_the_breaker_and_everything_arrives_once);
        TEST_RUN(test_refused_connection_is_a_plain_retry);
        TEST_RUN(test_unusable_stored_data_is_dead_lettered_without_sending);
        TEST_RUN(test_retention_prunes_old_synced_and_resolved_and_keeps_the_rest);
        TEST_RUN(test_retention_prunes_resolved_rows_of_retried_receipts);
        TEST_RUN(test_reload_applies_to_the_next_request_and_reschedules);
        TEST_RUN(test_options_are_validated);

        fake_stop();
        curl_global_cleanup();
        return 0;
}
