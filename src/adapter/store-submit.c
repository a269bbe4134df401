/* SPDX-License-Identifier: MIT */
/* A receipt coming in, on the writer: its id (UUID v7 from the HLC stamp), the idempotency check against
 * the key index, a return's original found and checked, the capacity, and the insert; and the receipt a
 * client names (by id, key or fiscal document number), which needs the same key index. */

#include <inttypes.h>
#include <sys/random.h>
#include <systemd/sd-id128.h>

#include "sqlite-util.h"
#include "store-internal.h"

char *store_receipt_id_new_at(uint64_t unix_ms, const uint8_t random_bytes[static 10],
                              char ret[static STORE_RECEIPT_ID_MAX]) {
        sd_id128_t u;

        assert(random_bytes);
        assert(ret);

        /* RFC 9562 section 5.7: unix_ts_ms (48 bits, big-endian) | ver (4) | rand_a (12) | var (2) |
         * rand_b (62). */
        unix_ms &= (UINT64_C(1) << 48) - 1;
        for (unsigned i = 0; i < 6; i++)
                u.bytes[i] = (uint8_t) (unix_ms >> (40 - 8 * i));
        memcpy(u.bytes + 6, random_bytes, 10);
        u.bytes[6] = (uint8_t) (0x70 | (u.bytes[6] & 0x0f));
        u.bytes[8] = (uint8_t) (0x80 | (u.bytes[8] & 0x3f));
        return sd_id128_to_uuid_string(u, ret);
}

/* Ten random bytes for an id (74 bits of them survive). A getrandom() per receipt was a syscall per
 * receipt on the writer; the pool fetches them in bulk. GRND_INSECURE never blocks, not even early at
 * boot: the ids need to be unique, not secret. */
static int writer_random_bytes(Store *s, const uint8_t **ret) {
        if (s->random_used + 10 > sizeof s->random_pool) {
                ssize_t n = getrandom(s->random_pool, sizeof s->random_pool, GRND_INSECURE);

                if (n != (ssize_t) sizeof s->random_pool)
                        /* A kernel older than 5.6 rejects the flag: libsystemd knows the fallbacks. */
                        for (size_t i = 0; i + sizeof(sd_id128_t) <= sizeof s->random_pool;
                             i += sizeof(sd_id128_t)) {
                                sd_id128_t u;
                                int r = sd_id128_randomize(&u);

                                if (r < 0)
                                        return r;
                                memcpy(s->random_pool + i, u.bytes, sizeof u.bytes);
                        }
                s->random_used = 0;
        }
        *ret = s->random_pool + s->random_used;
        s->random_used += 10;
        return 0;
}

/* ---- jobs on the writer ---- */

/* The first answer stored with the key of receipt `id`, into r->response_status and r->response (NULL when
 * none was stored). Replays only: a primary key lookup in idempotency_keys. */
static int read_response(sqlite3_stmt *stmt, void *userdata) {
        StoreReceipt *r = userdata;
        int64_t status = sqlite3_column_int64(stmt, 0);
        int k;

        k = store_column_strdup(stmt, 1, &r->response);
        r->response_status = r->response && status >= 100 && status <= 599 ? (unsigned) status : 0;
        return k;
}

static int conn_get_response(StoreConn *c, const char *id, StoreReceipt *r) {
        int k;

        k = store_conn_query_one(c,
                                 "SELECT response_status, response FROM idempotency_keys "
                                 "WHERE receipt_id = ?",
                                 read_response, r, "t", id);
        return MIN(k, 0);
}

/* The key index in memory equals idempotency_keys within the writer's transaction (key-index.h). */
static int submit_find_key(StoreConn *c, Job *j, bool *ret_found) {
        const KeyIndexEntry *e;
        int r;

        e = key_index_get(c->store->keys, j->idempotency_key);
        *ret_found = e;
        if (!e)
                return 0;

        if (!streq(e->request_hash, j->request_hash)) {
                j->outcome = STORE_SUBMIT_KEY_MISMATCH;
                return 0;
        }
        r = store_conn_get_receipt(c, e->receipt_id, &j->receipt);
        if (r < 0)
                return r == -ENOENT ? -EBADMSG : r; /* the foreign key makes this impossible */
        j->have_receipt = true;
        j->outcome = STORE_SUBMIT_REPLAY;
        return conn_get_response(c, e->receipt_id, &j->receipt);
}

static int submit_count_pending(StoreConn *c, uint64_t *ret) {
        int64_t n;
        int r;

        r = store_conn_query_int64(c, "SELECT n FROM receipt_counts WHERE status = 'pending'", &n, "");
        if (r < 0)
                return r;
        *ret = n > 0 ? (uint64_t) n : 0; /* no row: none pending */
        return 0;
}

/* ---- finding the receipt a client names, and the checks of a return ---- */

/* A fiscal document number as a client writes it: decimal digits only, 1..2^32-1. */
static bool parse_fiscal_document_number(const char *ref, uint32_t *ret) {
        uint64_t v = 0;

        if (!ref || !*ref)
                return false;
        for (const char *p = ref; *p; p++) {
                if (*p < '0' || *p > '9')
                        return false;
                v = v * 10 + (uint64_t) (*p - '0');
                if (v > UINT32_MAX)
                        return false;
        }
        if (v == 0)
                return false;
        *ret = (uint32_t) v;
        return true;
}

/* What the returns of receipt `id` that are not cancelled add up to, including those inserted earlier in
 * the open transaction. */
static int conn_refunded_kopecks(StoreConn *c, const char *id, int64_t *ret) {
        int r;

        r = store_conn_query_int64(c,
                                   "SELECT COALESCE(SUM(total_kopecks), 0) FROM receipts "
                                   "WHERE original_id = ? AND status <> 'cancelled'",
                                   ret, "t", id);
        return MIN(r, 0);
}

static int conn_get_by_fiscal_document_number(StoreConn *c, uint32_t number, StoreReceipt *ret) {
        int r;

        /* Numbers start again with each fiscal storage: the newest receipt with it, the last entry of its
         * range in idx_receipts_fiscal_document_number. */
        r = store_conn_query_one(c,
                                 "SELECT " STORE_RECEIPT_COLUMNS " FROM receipts "
                                 "WHERE fiscal_document_number = ? ORDER BY hlc DESC LIMIT 1",
                                 store_receipt_row, ret, "i", (int64_t) number);
        return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

/* The receipt `ref` names: by id, else by Idempotency-Key (the writer's key index), else, all digits, by
 * fiscal document number; with refunded_kopecks. Writer only. -ENOENT: none. */
static int conn_resolve_receipt(StoreConn *c, const char *ref, StoreReceipt *ret) {
        _cleanup_(store_receipt_done) StoreReceipt r = {};
        const KeyIndexEntry *e;
        uint32_t number;
        int k;

        assert(c->store->keys);

        k = store_conn_get_receipt(c, ref, &r);
        if (k == -ENOENT && (e = key_index_get(c->store->keys, ref)))
                k = store_conn_get_receipt(c, e->receipt_id, &r);
        if (k == -ENOENT && parse_fiscal_document_number(ref, &number))
                k = conn_get_by_fiscal_document_number(c, number, &r);
        if (k < 0)
                return k;

        k = conn_refunded_kopecks(c, r.id, &r.refunded_kopecks);
        if (k < 0)
                return k;
        *ret = r;
        r = (StoreReceipt) {};
        return 0;
}

/* 1: the return may be inserted, linked to *ret_original_id. 0: it may not, j->outcome says why, with the
 * original as j->receipt where the outcome has one. */
static int submit_check_original(StoreConn *c, Job *j, char **ret_original_id) {
        _cleanup_(store_receipt_done) StoreReceipt o = {};
        int64_t rest;
        int r;

        r = conn_resolve_receipt(c, j->original, &o);
        if (r == -ENOENT) {
                j->outcome = STORE_SUBMIT_ORIGINAL_UNKNOWN;
                return 0;
        }
        if (r < 0)
                return r;

        if (o.status == STORE_STATUS_CANCELLED ||
            (j->original_type && !streq_ptr(o.receipt_type, j->original_type)))
                j->outcome = STORE_SUBMIT_ORIGINAL_MISMATCH;
        else if (j->original_before != 0 && store_receipt_created_usec(&o) >= j->original_before)
                j->outcome = STORE_SUBMIT_ORIGINAL_TOO_NEW;
        else if (__builtin_sub_overflow(o.total_kopecks, o.refunded_kopecks, &rest) ||
                 j->total_kopecks > rest)
                j->outcome = STORE_SUBMIT_REFUND_EXCEEDS;
        else {
                *ret_original_id = TAKE_PTR(o.id);
                return 1;
        }

        j->receipt = o;
        o = (StoreReceipt) {};
        j->have_receipt = true;
        return 0;
}

static int submit_insert(StoreConn *c, Job *j, char **original_id) {
        Store *s = c->store;
        char id[STORE_RECEIPT_ID_MAX], created[FORMAT_ISO8601_MAX], hlc_text[HLC_FORMAT_MAX];
        const uint8_t *random_bytes;
        sqlite3_stmt *stmt;
        uint64_t stamp;
        usec_t ts;
        int r;

        /* Stamped here, on the one thread that inserts, so stamps increase in commit order. */
        ts = now(CLOCK_REALTIME);
        stamp = hlc_tick(&s->hlc, ts);
        format_iso8601_utc(created, sizeof created, ts);
        hlc_format(hlc_text, sizeof hlc_text, stamp);

        /* The id's time is the stamp's: it never goes back, not even when the wall clock does, so new keys
         * always land at the right edge of the primary key's B-tree. */
        r = writer_random_bytes(s, &random_bytes);
        if (r < 0)
                return r;
        store_receipt_id_new_at(hlc_physical_ms(stamp), random_bytes, id);

        /* INSERT, never INSERT OR REPLACE: an acknowledged receipt is never overwritten. */
        r = store_conn_run(c,
                           "INSERT INTO receipts (id, pos_id, receipt_data, status, created_at, "
                           "updated_at, retry_count, hlc_timestamp, hlc, total_kopecks, receipt_type, "
                           "print_status, attempts, original_id) "
                           "VALUES (?, ?, ?, 'pending', ?, ?, 0, ?, ?, ?, ?, 'unprinted', 0, ?)",
                           "ttttttuitt", id, j->pos_id, j->receipt_data, created, created, hlc_text, stamp,
                           j->total_kopecks, j->receipt_type, *original_id);
        if (r < 0)
                return r;

        r = store_conn_prepare(c,
                               "INSERT INTO idempotency_keys (receipt_id, key, request_hash, created_at, "
                               "response_status, response) VALUES (?, ?, ?, ?, ?, ?)",
                               &stmt);
        if (r < 0)
                return r;
        r = j->response ? store_conn_bind(c, stmt, "ttttit", id, j->idempotency_key, j->request_hash,
                                          created, (int64_t) j->response_status, j->response)
                        : store_conn_bind(c, stmt, "tttt", id, j->idempotency_key, j->request_hash, created);
        if (r < 0)
                return r;
        r = store_conn_step_done(c, stmt);
        if (r < 0)
                return r;
        r = key_index_add(s->keys, j->idempotency_key, j->request_hash, id);
        if (r < 0)
                return r;

        r = store_conn_run(c,
                           "INSERT INTO buffer_events (receipt_id, event, details, created_at) "
                           "VALUES (?, 'received', json_object('idempotency_key', ?, 'hlc', ?), ?)",
                           "tttt", id, j->idempotency_key, hlc_text, created);
        if (r < 0)
                return r;

        j->receipt = (StoreReceipt) {
                .id = strdup(id),
                .created_at = strdup(created),
                .updated_at = strdup(created),
                .total_kopecks = j->total_kopecks,
                .status = STORE_STATUS_PENDING,
                .print_status = STORE_PRINT_UNPRINTED,
                .hlc = stamp,
        };
        j->have_receipt = true;
        if (!j->receipt.id || !j->receipt.created_at || !j->receipt.updated_at)
                return -ENOMEM;
        /* The input is not needed any more: the result takes it over instead of copying it. */
        j->receipt.pos_id = TAKE_PTR(j->pos_id);
        j->receipt.receipt_type = TAKE_PTR(j->receipt_type);
        j->receipt.receipt_data = TAKE_PTR(j->receipt_data);
        j->receipt.original_id = TAKE_PTR(*original_id);
        j->outcome = STORE_SUBMIT_CREATED;
        return 0;
}

/* Idempotency, a return's checks, capacity and the insert are decided in the same transaction, so two
 * submits of one key in one group cannot both insert, two returns of one original in one group see each
 * other, and the capacity counts what the group itself added. A return is checked before the capacity: its
 * refusal is final, a full buffer's is not. */
static int submit_run(StoreConn *c, Job *j) {
        _cleanup_free_ char *original_id = NULL;
        uint64_t pending = 0;
        bool found;
        int r;

        r = submit_find_key(c, j, &found);
        if (r < 0 || found)
                return r;
        if (j->refuse_new) {
                j->outcome = STORE_SUBMIT_REFUSED;
                return 0;
        }

        if (j->original) {
                r = submit_check_original(c, j, &original_id);
                if (r <= 0)
                        return r;
        }

        r = submit_count_pending(c, &pending);
        if (r < 0)
                return r;
        if (pending >= c->store->options.capacity) {
                j->outcome = STORE_SUBMIT_FULL;
                return 0;
        }

        return submit_insert(c, j, &original_id);
}

static int resolve_run(StoreConn *c, Job *j) {
        int r;

        r = conn_resolve_receipt(c, j->id, &j->receipt);
        j->have_receipt = r >= 0;
        return r;
}

int store_submit_receipt(Store *s, const StoreReceiptNew *r, StoreSubmitCallback cb, void *userdata) {
        _cleanup_(job_freep) Job *j = NULL;
        int k;

        assert(s);
        assert(r);
        assert(r->idempotency_key);
        assert(r->request_hash);
        assert(r->pos_id);
        assert(r->receipt_data);

        j = new0(Job, 1);
        if (!j)
                return -ENOMEM;
        *j = (Job) {
                .type = JOB_SUBMIT,
                .run = submit_run,
                .cb.submit = cb,
                .userdata = userdata,
                .total_kopecks = r->total_kopecks,
        };
        if (strdup_or_null(r->idempotency_key, &j->idempotency_key) < 0 ||
            strdup_or_null(r->request_hash, &j->request_hash) < 0 ||
            strdup_or_null(r->pos_id, &j->pos_id) < 0 ||
            strdup_or_null(r->type, &j->receipt_type) < 0 ||
            strdup_or_null(r->receipt_data, &j->receipt_data) < 0 ||
            strdup_or_null(r->original, &j->original) < 0 ||
            strdup_or_null(r->original_type, &j->original_type) < 0 ||
            strdup_or_null(r->response, &j->response) < 0)
                return -ENOMEM;
        j->original_before = r->original_before;
        j->refuse_new = r->refuse_new;
        j->response_status = r->response_status;

        k = store_enqueue(s, &s->writer, j);
        if (k < 0)
                return k;
        TAKE_PTR(j);
        return 0;
}

int store_resolve_receipt(Store *s, const char *ref, StoreGetCallback cb, void *userdata) {
        assert(s);
        assert(ref);

        return store_queue_receipt_job(s, &s->writer, JOB_RESOLVE, resolve_run, ref, NULL, NULL, cb,
                                       userdata);
}

