/* SPDX-License-Identifier: MIT */
/* The store at run time: a writer and a reader thread with a connection each, the job queues between them
 * and the loop, group commit on the writer, and the receipt jobs (submit with the checks of a return,
 * get, resolve, mark printed/synced, the print rejections an admin retries or cancels). */

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <systemd/sd-id128.h>

#include "hlc.h"
#include "json-util.h"
#include "key-index.h"
#include "log.h"
#include "sqlite-util.h"
#include "store-schema.h"
#include "store-vfs.h"
#include "store.h"

#define BUSY_TIMEOUT_DEFAULT (5 * USEC_PER_SEC)
#define CHECKPOINT_PAGES_DEFAULT 4096U
/* WAL size, in multiples of the checkpoint threshold, at which the writer stops leaving the checkpoints to
 * the checkpointer and catches up itself, so the WAL stays bounded even when commits never pause. */
#define CHECKPOINT_HARD_FACTOR 2U
/* Random bytes fetched per getrandom() call: 10 per receipt id, so one call serves 64 receipts. */
#define RANDOM_POOL_SIZE 640

typedef enum JobType {
        JOB_SUBMIT,
        JOB_GET,
        JOB_WRITE,
        JOB_READ,
        JOB_RESOLVE,      /* writer: it holds the key index */
        JOB_RETRY_PRINT,  /* writer */
        JOB_CANCEL,       /* writer */
        JOB_LIST_REJECTED, /* reader */
} JobType;

typedef struct Job Job;

struct Job {
        Job *next;
        JobType type;
        int result;
        void *userdata;
        union {
                StoreSubmitCallback submit;
                StoreGetCallback get;
                StoreDoneCallback done;
                StoreListCallback list;
        } cb;

        /* JOB_SUBMIT input, copied from the caller's StoreReceiptNew */
        char *idempotency_key;
        char *request_hash;
        char *pos_id;
        char *receipt_type;
        char *receipt_data;
        int64_t total_kopecks;
        char *original;
        char *original_type;
        usec_t original_before;
        bool refuse_new;
        unsigned response_status;
        char *response;

        /* JOB_GET, JOB_RETRY_PRINT, JOB_CANCEL input: the receipt id; JOB_RESOLVE: the reference */
        char *id;
        char *note;
        char *who;

        /* JOB_LIST_REJECTED */
        unsigned limit;
        StoreReceipt *receipts;
        size_t n_receipts;

        /* JOB_WRITE, JOB_READ */
        StoreJobFunc fn;
        void *job_data;

        /* JOB_SUBMIT, JOB_GET, JOB_RESOLVE, JOB_RETRY_PRINT, JOB_CANCEL output */
        StoreSubmitOutcome outcome;
        StoreReceipt receipt;
        bool have_receipt;
};

/* Keyed by the text alone: callers also build SQL in buffers of their own (the pragmas of
 * store_open_writer() share one), so a pointer says nothing about what it points to now. */
typedef struct CachedStmt {
        char *sql;
        sqlite3_stmt *stmt;
} CachedStmt;

struct StoreConn {
        Store *store;
        sqlite3 *db;
        CachedStmt *stmts;
        size_t n_stmts;
        size_t n_allocated;
};

/* What one pass of a worker hands back to the loop besides the jobs. */
typedef struct GroupResult {
        bool committed;
        size_t n_jobs;
        StoreCounters counters;
} GroupResult;

typedef struct Worker {
        Store *store;
        bool is_writer;
        StoreConn conn;

        pthread_t thread;
        bool thread_started;
        bool lock_initialized;
        pthread_mutex_t lock;
        pthread_cond_t cond;

        /* Loop only: jobs queued during this loop iteration, handed to the thread together by a defer
         * source, so that the thread wakes once per iteration (and the writer starts a group with all
         * of them) instead of once per job. */
        Job *handoff_head, *handoff_tail;
        sd_event_source *handoff_source;

        /* Under lock: jobs waiting for the thread, jobs waiting for the loop, and what the last commits
         * left behind for the loop's copy. */
        Job *queue_head, *queue_tail;
        Job *done_head, *done_tail;
        bool quit;
        bool have_counters;
        StoreCounters counters;
        StoreStats stats;

        int event_fd;
        sd_event_source *event_source;
} Worker;

/* Copies the WAL back into the database file on a connection and thread of its own, so that neither the
 * copying nor (with synchronous=FULL) the database file's fsync holds up the writer's commits. */
typedef struct Checkpointer {
        Store *store;
        sqlite3 *db;
        pthread_t thread;
        bool thread_started;
        bool lock_initialized;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        /* Under lock. */
        bool requested;
        bool quit;
        unsigned request_epoch; /* the WAL's (see Store.wal_epoch) when the round was asked for */
        bool round_done;        /* a round ended since the last request, having copied... */
        int backfilled;         /* ...this many frames of the WAL of... */
        unsigned done_epoch;    /* ...this epoch */
} Checkpointer;

struct Store {
        sd_event *event;
        char *path;
        StoreOptions options;

        Worker writer;
        Worker reader;
        Checkpointer checkpointer;

        /* Writer thread only, once the threads run. */
        KeyIndex *keys;
        Hlc hlc;
        uint64_t hlc_persisted; /* config.hlc_last as committed */
        uint64_t hlc_written;   /* config.hlc_last as written by the open transaction */
        uint8_t random_pool[RANDOM_POOL_SIZE];
        size_t random_used;
        int wal_frames;              /* in the WAL after the last commit */
        unsigned wal_epoch;          /* counts the restarts of the WAL */
        int checkpoint_requested_at; /* WAL frames when the checkpointer was last asked; 0: not yet */

        /* Loop thread only. */
        StoreCounters counters;
        StoreStats stats;
        unsigned n_outstanding;
        bool shutting_down;
        StoreIdleCallback idle_cb;
        void *idle_userdata;
};

static const char *const status_table[_STORE_STATUS_MAX] = {
        [STORE_STATUS_PENDING] = "pending",
        [STORE_STATUS_SYNCED] = "synced",
        [STORE_STATUS_FAILED] = "failed",
        [STORE_STATUS_DLQ] = "dlq",
        [STORE_STATUS_CANCELLED] = "cancelled",
};

static const char *const print_status_table[_STORE_PRINT_MAX] = {
        [STORE_PRINT_UNPRINTED] = "unprinted",
        [STORE_PRINT_PRINTED] = "printed",
        [STORE_PRINT_FAILED] = "print_failed",
        [STORE_PRINT_REJECTED] = "print_rejected",
};

static const char *const submit_outcome_table[_STORE_SUBMIT_OUTCOME_MAX] = {
        [STORE_SUBMIT_CREATED] = "created",
        [STORE_SUBMIT_REPLAY] = "replay",
        [STORE_SUBMIT_KEY_MISMATCH] = "key-mismatch",
        [STORE_SUBMIT_FULL] = "full",
        [STORE_SUBMIT_REFUSED] = "refused",
        [STORE_SUBMIT_ORIGINAL_UNKNOWN] = "original-unknown",
        [STORE_SUBMIT_ORIGINAL_MISMATCH] = "original-mismatch",
        [STORE_SUBMIT_REFUND_EXCEEDS] = "refund-exceeds",
        [STORE_SUBMIT_ORIGINAL_TOO_NEW] = "original-too-new",
};

static const char *table_to_string(const char *const *table, size_t n, int i) {
        return i >= 0 && (size_t) i < n ? table[i] : NULL;
}

static int table_from_string(const char *const *table, size_t n, const char *s) {
        if (s)
                for (size_t i = 0; i < n; i++)
                        if (table[i] && streq(table[i], s))
                                return (int) i;
        return -EINVAL;
}

const char *store_status_to_string(StoreStatus s) {
        return table_to_string(status_table, ELEMENTSOF(status_table), s);
}

StoreStatus store_status_from_string(const char *s) {
        return table_from_string(status_table, ELEMENTSOF(status_table), s);
}

const char *store_print_status_to_string(StorePrintStatus s) {
        return table_to_string(print_status_table, ELEMENTSOF(print_status_table), s);
}

StorePrintStatus store_print_status_from_string(const char *s) {
        return table_from_string(print_status_table, ELEMENTSOF(print_status_table), s);
}

const char *store_submit_outcome_to_string(StoreSubmitOutcome o) {
        return table_to_string(submit_outcome_table, ELEMENTSOF(submit_outcome_table), o);
}

void store_receipt_done(StoreReceipt *r) {
        if (!r)
                return;
        free(r->id);
        free(r->pos_id);
        free(r->receipt_type);
        free(r->receipt_data);
        free(r->created_at);
        free(r->updated_at);
        free(r->printed_at);
        free(r->synced_at);
        free(r->next_retry_at);
        free(r->last_error);
        free(r->fiscal_doc);
        free(r->ofd_response);
        free(r->original_id);
        free(r->response);
        *r = (StoreReceipt) {};
}

static void receipts_free(StoreReceipt *r, size_t n) {
        for (size_t i = 0; i < n; i++)
                store_receipt_done(r + i);
        free(r);
}

static void job_reset_output(Job *j) {
        store_receipt_done(&j->receipt);
        j->have_receipt = false;
        receipts_free(j->receipts, j->n_receipts);
        j->receipts = NULL;
        j->n_receipts = 0;
}

static Job *job_free(Job *j) {
        if (!j)
                return NULL;
        free(j->idempotency_key);
        free(j->request_hash);
        free(j->pos_id);
        free(j->receipt_type);
        free(j->receipt_data);
        free(j->original);
        free(j->original_type);
        free(j->id);
        free(j->note);
        free(j->who);
        free(j->response);
        job_reset_output(j);
        return mfree(j);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(Job *, job_free);

/* The jobs of the fiscal day's admin work, below with the other state changes. */
static int resolve_run(StoreConn *c, Job *j);
static int retry_print_run(StoreConn *c, Job *j);
static int cancel_run(StoreConn *c, Job *j);
static int list_rejected_run(StoreConn *c, Job *j);

/* ---- receipt ids ---- */

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

/* ---- connections ---- */

static int conn_error(StoreConn *c, int rc) {
        /* The message is the only place SQLite says which constraint or file failed. */
        log_debug("SQLite error %i: %s", rc, sqlite3_errmsg(c->db));
        return sqlite_result_to_errno(rc) ?: -EIO;
}

sqlite3 *store_conn_get_db(StoreConn *c) {
        assert(c);
        return c->db;
}

int store_conn_prepare(StoreConn *c, const char *sql, sqlite3_stmt **ret) {
        sqlite3_stmt *stmt = NULL;
        int rc;

        assert(c);
        assert(sql);
        assert(ret);

        for (size_t i = 0; i < c->n_stmts; i++)
                if (streq(c->stmts[i].sql, sql)) {
                        (void) sqlite3_reset(c->stmts[i].stmt);
                        (void) sqlite3_clear_bindings(c->stmts[i].stmt);
                        *ret = c->stmts[i].stmt;
                        return 0;
                }

        if (c->n_stmts == c->n_allocated) {
                size_t n = MAX(c->n_allocated * 2, (size_t) 16);
                CachedStmt *a = reallocarray(c->stmts, n, sizeof(CachedStmt));
                if (!a)
                        return -ENOMEM;
                c->stmts = a;
                c->n_allocated = n;
        }

        _cleanup_free_ char *copy = strdup(sql);
        if (!copy)
                return -ENOMEM;
        rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL);
        if (rc != SQLITE_OK)
                return conn_error(c, rc);
        if (!stmt) /* only whitespace or a comment */
                return -EINVAL;

        c->stmts[c->n_stmts++] = (CachedStmt) { .sql = TAKE_PTR(copy), .stmt = stmt };
        *ret = stmt;
        return 0;
}

int store_conn_step_done(StoreConn *c, sqlite3_stmt *stmt) {
        int rc;

        assert(c);
        assert(stmt);

        rc = sqlite3_step(stmt);
        (void) sqlite3_reset(stmt);
        if (IN_SET(rc, SQLITE_DONE, SQLITE_ROW))
                return 0;
        return conn_error(c, rc);
}

static int conn_exec(StoreConn *c, const char *sql) {
        sqlite3_stmt *stmt;
        int r;

        r = store_conn_prepare(c, sql, &stmt);
        if (r < 0)
                return r;
        return store_conn_step_done(c, stmt);
}

/* A statement stepped but not reset keeps its snapshot (and in WAL mode holds back checkpoints). */
static void conn_reset_busy(StoreConn *c) {
        for (size_t i = 0; i < c->n_stmts; i++)
                if (sqlite3_stmt_busy(c->stmts[i].stmt))
                        (void) sqlite3_reset(c->stmts[i].stmt);
}

static int conn_open(StoreConn *c, Store *s, int flags, const char *vfs) {
        sqlite3 *db = NULL;
        int rc, r;

        c->store = s;
        rc = sqlite3_open_v2(s->path, &db, flags | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE, vfs);
        if (rc != SQLITE_OK) {
                /* For "cannot open", the OS error says more (ENOENT, EACCES, EISDIR...). */
                r = db && (rc & 0xff) == SQLITE_CANTOPEN && sqlite3_system_errno(db) > 0
                            ? -sqlite3_system_errno(db)
                            : sqlite_result_to_errno(rc);
                (void) sqlite3_close(db);
                return r ?: -EIO;
        }
        c->db = db;
        (void) sqlite3_busy_timeout(db,
                                    (int) MIN(s->options.busy_timeout / USEC_PER_MSEC, (usec_t) INT_MAX));
        return 0;
}

static void conn_close(StoreConn *c) {
        for (size_t i = 0; i < c->n_stmts; i++) {
                (void) sqlite3_finalize(c->stmts[i].stmt);
                free(c->stmts[i].sql);
        }
        c->stmts = mfree(c->stmts);
        c->n_stmts = c->n_allocated = 0;
        if (c->db) {
                (void) sqlite3_close(c->db);
                c->db = NULL;
        }
}

int store_conn_bind(StoreConn *c, sqlite3_stmt *stmt, const char *types, ...) {
        va_list ap;
        int rc = SQLITE_OK, i = 1;

        va_start(ap, types);
        for (const char *t = types; *t && rc == SQLITE_OK; t++, i++)
                switch (*t) {
                case 't':
                        rc = sqlite3_bind_text(stmt, i, va_arg(ap, const char *), -1, SQLITE_STATIC);
                        break;
                case 'i':
                        rc = sqlite3_bind_int64(stmt, i, va_arg(ap, int64_t));
                        break;
                case 'u':
                        /* Stamps stay below 2^63 until the year 4 million; the bits round-trip anyway. */
                        rc = sqlite3_bind_int64(stmt, i, (int64_t) va_arg(ap, uint64_t));
                        break;
                default:
                        assert(!"bad bind type");
                        rc = SQLITE_MISUSE;
                }
        va_end(ap);

        return rc == SQLITE_OK ? 0 : conn_error(c, rc);
}

int store_column_strdup(sqlite3_stmt *stmt, int i, char **ret) {
        const unsigned char *t = sqlite3_column_text(stmt, i);

        if (!t) {
                *ret = NULL;
                return sqlite3_column_type(stmt, i) == SQLITE_NULL ? 0 : -ENOMEM;
        }
        *ret = strdup((const char *) t);
        return *ret ? 0 : -ENOMEM;
}

int store_receipt_from_row(sqlite3_stmt *stmt, StoreReceipt *ret) {
        _cleanup_(store_receipt_done) StoreReceipt r = {};
        _cleanup_free_ char *status = NULL, *print_status = NULL;
        int64_t fd;
        int k;

        assert(stmt);
        assert(ret);

        /* The order of STORE_RECEIPT_COLUMNS. */
        if (store_column_strdup(stmt, 0, &r.id) < 0 || store_column_strdup(stmt, 1, &r.pos_id) < 0 ||
            store_column_strdup(stmt, 2, &r.receipt_type) < 0 ||
            store_column_strdup(stmt, 4, &r.receipt_data) < 0 ||
            store_column_strdup(stmt, 5, &status) < 0 || store_column_strdup(stmt, 6, &print_status) < 0 ||
            store_column_strdup(stmt, 8, &r.created_at) < 0 ||
            store_column_strdup(stmt, 9, &r.updated_at) < 0 ||
            store_column_strdup(stmt, 10, &r.printed_at) < 0 ||
            store_column_strdup(stmt, 11, &r.synced_at) < 0 ||
            store_column_strdup(stmt, 12, &r.next_retry_at) < 0 ||
            store_column_strdup(stmt, 14, &r.last_error) < 0 ||
            store_column_strdup(stmt, 15, &r.fiscal_doc) < 0 ||
            store_column_strdup(stmt, 16, &r.ofd_response) < 0 ||
            store_column_strdup(stmt, 18, &r.original_id) < 0)
                return -ENOMEM;

        r.total_kopecks = sqlite3_column_int64(stmt, 3);
        r.status = store_status_from_string(status);
        r.print_status = store_print_status_from_string(print_status);
        r.hlc = (uint64_t) sqlite3_column_int64(stmt, 7);
        k = sqlite3_column_int(stmt, 13);
        r.attempts = k > 0 ? (unsigned) k : 0;
        fd = sqlite3_column_int64(stmt, 17);
        r.fiscal_document_number = fd > 0 && fd <= UINT32_MAX ? (uint32_t) fd : 0;

        *ret = r;
        r = (StoreReceipt) {};
        return 0;
}

int store_conn_get_receipt(StoreConn *c, const char *id, StoreReceipt *ret) {
        sqlite3_stmt *stmt;
        int rc, r;

        assert(c);
        assert(id);
        assert(ret);

        r = store_conn_prepare(c, "SELECT " STORE_RECEIPT_COLUMNS " FROM receipts WHERE id = ?", &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "t", id);
        if (r < 0)
                return r;
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW)
                r = store_receipt_from_row(stmt, ret);
        else
                r = rc == SQLITE_DONE ? -ENOENT : conn_error(c, rc);
        (void) sqlite3_reset(stmt);
        return r;
}

int store_conn_log_event(StoreConn *c, const char *receipt_id, const char *event, const char *details) {
        char ts[FORMAT_ISO8601_MAX];
        sqlite3_stmt *stmt;
        int r;

        assert(c);
        assert(event);

        r = store_conn_prepare(c,
                               "INSERT INTO buffer_events (receipt_id, event, details, created_at) "
                               "VALUES (?, ?, ?, ?)",
                               &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "tttt", receipt_id, event, details,
                            format_iso8601_utc(ts, sizeof ts, now(CLOCK_REALTIME)));
        if (r < 0)
                return r;
        return store_conn_step_done(c, stmt);
}

static int conn_read_oldest_unsynced(StoreConn *c, usec_t *ret);

static int conn_read_counters(StoreConn *c, unsigned capacity, StoreCounters *ret) {
        StoreCounters counters = { .capacity = capacity };
        sqlite3_stmt *stmt;
        int rc, r;

        r = store_conn_prepare(c, "SELECT status, n FROM receipt_counts", &stmt);
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
                const char *status = (const char *) sqlite3_column_text(stmt, 0);
                int64_t n = sqlite3_column_int64(stmt, 1);
                uint64_t v = n > 0 ? (uint64_t) n : 0;

                if (streq_ptr(status, STORE_COUNT_PRINT_REJECTED)) { /* a subset of pending, not a status */
                        counters.print_rejected = v;
                        continue;
                }
                counters.total += v;
                switch (store_status_from_string(status)) {
                case STORE_STATUS_PENDING:
                        counters.pending = v;
                        break;
                case STORE_STATUS_SYNCED:
                        counters.synced = v;
                        break;
                case STORE_STATUS_FAILED:
                        counters.failed = v;
                        break;
                case STORE_STATUS_DLQ:
                        counters.dlq = v;
                        break;
                case STORE_STATUS_CANCELLED:
                        counters.cancelled = v;
                        break;
                default: /* a status the prototype invented: only in the total */
                        break;
                }
        }
        (void) sqlite3_reset(stmt);
        if (rc != SQLITE_DONE)
                return conn_error(c, rc);

        r = conn_read_oldest_unsynced(c, &counters.oldest_unsynced);
        if (r < 0)
                return r;

        *ret = counters;
        return 0;
}

/* ---- jobs on the writer ---- */

/* The first answer stored with the key of receipt `id`, into r->response_status and r->response (NULL when
 * none was stored). Replays only: a primary key lookup in idempotency_keys. */
static int conn_get_response(StoreConn *c, const char *id, StoreReceipt *r) {
        sqlite3_stmt *stmt;
        int rc, k;

        k = store_conn_prepare(
                c, "SELECT response_status, response FROM idempotency_keys WHERE receipt_id = ?", &stmt);
        if (k < 0)
                return k;
        k = store_conn_bind(c, stmt, "t", id);
        if (k < 0)
                return k;
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
                int64_t status = sqlite3_column_int64(stmt, 0);

                k = store_column_strdup(stmt, 1, &r->response);
                r->response_status = r->response && status >= 100 && status <= 599 ? (unsigned) status : 0;
        } else if (rc != SQLITE_DONE)
                k = conn_error(c, rc);
        (void) sqlite3_reset(stmt);
        return k;
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
        sqlite3_stmt *stmt;
        int rc, r;

        r = store_conn_prepare(c, "SELECT n FROM receipt_counts WHERE status = 'pending'", &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
                int64_t n = sqlite3_column_int64(stmt, 0);
                *ret = n > 0 ? (uint64_t) n : 0;
        } else if (rc == SQLITE_DONE)
                *ret = 0;
        else
                r = conn_error(c, rc);
        (void) sqlite3_reset(stmt);
        return r;
}

/* ---- finding the receipt a client names, and the checks of a return ---- */

/* created_at as CLOCK_REALTIME microseconds: ours ("2026-11-29T03:17:26.123Z") and the prototype's forms
 * ("2026-11-28 09:00:00", fractions of up to 6 digits, with or without the Z; all UTC). -EINVAL
 * otherwise. */
static int parse_created_at(const char *t, usec_t *ret) {
        struct tm tm = {};
        unsigned frac = 0, digits = 0;
        const char *p;
        time_t sec;
        int n = 0;

        if (!t)
                return -EINVAL;
        if (sscanf(t, "%4d-%2d-%2d%*1[T ]%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                   &tm.tm_min, &tm.tm_sec, &n) != 6 ||
            n == 0)
                return -EINVAL;
        p = t + n;
        if (*p == '.') {
                for (p++; isdigit((unsigned char) *p); p++)
                        if (digits < 6) {
                                frac = frac * 10 + (unsigned) (*p - '0');
                                digits++;
                        }
                if (digits == 0)
                        return -EINVAL;
                for (; digits < 6; digits++)
                        frac *= 10;
        }
        if (*p == 'Z')
                p++;
        if (*p != 0)
                return -EINVAL;

        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        sec = timegm(&tm);
        if (sec == (time_t) -1 || sec < 0)
                return -EINVAL;
        *ret = (usec_t) sec * USEC_PER_SEC + frac;
        return 0;
}

/* When the receipt was created; from its stamp when created_at cannot be read (the stamp's time is never
 * earlier). */
static usec_t receipt_created_usec(const StoreReceipt *r) {
        usec_t t;

        if (parse_created_at(r->created_at, &t) >= 0)
                return t;
        return hlc_physical_ms(r->hlc) * USEC_PER_MSEC;
}

/* The first receipt in HLC order of each status the OFD has yet to acknowledge: two lookups in
 * idx_receipts_status_hlc, cheap enough for every group commit. */
static int conn_read_oldest_unsynced(StoreConn *c, usec_t *ret) {
        static const StoreStatus statuses[] = { STORE_STATUS_PENDING, STORE_STATUS_FAILED };
        usec_t oldest = 0;
        sqlite3_stmt *stmt;
        int rc, r;

        r = store_conn_prepare(c, "SELECT created_at, hlc FROM receipts WHERE status = ? ORDER BY hlc LIMIT 1",
                               &stmt);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(statuses); i++) {
                StoreReceipt row = {};

                r = store_conn_bind(c, stmt, "t", store_status_to_string(statuses[i]));
                if (r < 0)
                        return r;
                rc = sqlite3_step(stmt);
                if (rc == SQLITE_ROW) {
                        usec_t t;

                        row.created_at = (char *) sqlite3_column_text(stmt, 0);
                        row.hlc = (uint64_t) sqlite3_column_int64(stmt, 1);
                        t = receipt_created_usec(&row);
                        if (t > 0 && (oldest == 0 || t < oldest))
                                oldest = t;
                }
                (void) sqlite3_reset(stmt);
                if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                        return conn_error(c, rc);
        }
        *ret = oldest;
        return 0;
}

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
        sqlite3_stmt *stmt;
        int rc, r;

        r = store_conn_prepare(c,
                               "SELECT COALESCE(SUM(total_kopecks), 0) FROM receipts "
                               "WHERE original_id = ? AND status <> 'cancelled'",
                               &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "t", id);
        if (r < 0)
                return r;
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW)
                *ret = sqlite3_column_int64(stmt, 0);
        else
                r = conn_error(c, rc);
        (void) sqlite3_reset(stmt);
        return r;
}

static int conn_get_by_fiscal_document_number(StoreConn *c, uint32_t number, StoreReceipt *ret) {
        sqlite3_stmt *stmt;
        int rc, r;

        /* Numbers start again with each fiscal storage: the newest receipt with it, the last entry of its
         * range in idx_receipts_fiscal_document_number. */
        r = store_conn_prepare(c,
                               "SELECT " STORE_RECEIPT_COLUMNS " FROM receipts "
                               "WHERE fiscal_document_number = ? ORDER BY hlc DESC LIMIT 1",
                               &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "i", (int64_t) number);
        if (r < 0)
                return r;
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW)
                r = store_receipt_from_row(stmt, ret);
        else
                r = rc == SQLITE_DONE ? -ENOENT : conn_error(c, rc);
        (void) sqlite3_reset(stmt);
        return r;
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
        else if (j->original_before != 0 && receipt_created_usec(&o) >= j->original_before)
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
        r = store_conn_prepare(c,
                               "INSERT INTO receipts (id, pos_id, receipt_data, status, created_at, "
                               "updated_at, retry_count, hlc_timestamp, hlc, total_kopecks, receipt_type, "
                               "print_status, attempts, original_id) "
                               "VALUES (?, ?, ?, 'pending', ?, ?, 0, ?, ?, ?, ?, 'unprinted', 0, ?)",
                               &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "ttttttuitt", id, j->pos_id, j->receipt_data, created, created,
                            hlc_text, stamp, j->total_kopecks, j->receipt_type, *original_id);
        if (r < 0)
                return r;
        r = store_conn_step_done(c, stmt);
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

        r = store_conn_prepare(c,
                               "INSERT INTO buffer_events (receipt_id, event, details, created_at) "
                               "VALUES (?, 'received', json_object('idempotency_key', ?, 'hlc', ?), ?)",
                               &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "tttt", id, j->idempotency_key, hlc_text, created);
        if (r < 0)
                return r;
        r = store_conn_step_done(c, stmt);
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

int store_conn_persist_hlc(StoreConn *c) {
        Store *s;
        char value[32];
        sqlite3_stmt *stmt;
        int r;

        assert(c);
        s = c->store;
        if (s->hlc.last == s->hlc_written)
                return 0;

        r = store_conn_prepare(c,
                               "INSERT INTO config (key, value) VALUES ('hlc_last', ?) "
                               "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                               &stmt);
        if (r < 0)
                return r;
        snprintf(value, sizeof value, "%" PRIu64, s->hlc.last);
        r = store_conn_bind(c, stmt, "t", value);
        if (r < 0)
                return r;
        r = store_conn_step_done(c, stmt);
        if (r < 0)
                return r;
        s->hlc_written = s->hlc.last;
        return 0;
}

int store_conn_delete_keys_of(StoreConn *c, const char *receipt_id) {
        sqlite3_stmt *stmt;
        int rc, r;

        assert(c);
        assert(receipt_id);

        r = store_conn_prepare(c, "DELETE FROM idempotency_keys WHERE receipt_id = ? RETURNING key", &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "t", receipt_id);
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
                const char *key = (const char *) sqlite3_column_text(stmt, 0);

                if (!key)
                        continue;
                r = key_index_remove(c->store->keys, key, receipt_id);
                if (r == -ENOENT) { /* the index mirrors the table: cannot be, but is no reason to fail */
                        log_debug("Idempotency key of receipt %s was not in the index.", receipt_id);
                        r = 0;
                } else if (r < 0)
                        break;
        }
        if (r >= 0 && rc != SQLITE_DONE)
                r = conn_error(c, rc);
        (void) sqlite3_reset(stmt);
        return r;
}

static int writer_run_job(StoreConn *c, Job *j) {
        int r;

        r = conn_exec(c, "SAVEPOINT job");
        if (r < 0)
                return r;

        switch (j->type) {
        case JOB_SUBMIT:
                r = submit_run(c, j);
                break;
        case JOB_RESOLVE:
                r = resolve_run(c, j);
                break;
        case JOB_RETRY_PRINT:
                r = retry_print_run(c, j);
                break;
        case JOB_CANCEL:
                r = cancel_run(c, j);
                break;
        default:
                r = j->fn(c, j->job_data);
        }
        conn_reset_busy(c);

        if (r >= 0) {
                int q = conn_exec(c, "RELEASE job");
                return q < 0 ? q : r;
        }
        return r;
}

/* One transaction for the whole batch, a savepoint per job. Every job's result is final only with the
 * COMMIT: if anything takes the transaction down, every job of the group reports that error, since
 * none of it reached the disk. */
static void writer_run_group(Worker *w, Job *batch, GroupResult *ret) {
        StoreConn *c = &w->conn;
        Store *s = w->store;
        int r;

        *ret = (GroupResult) {};
        for (Job *j = batch; j; j = j->next)
                ret->n_jobs++;

        r = conn_exec(c, "BEGIN IMMEDIATE");
        if (r < 0)
                goto fail;

        for (Job *j = batch; j; j = j->next) {
                size_t mark = key_index_mark(s->keys);

                r = writer_run_job(c, j);
                j->result = r;
                if (r >= 0)
                        continue;

                job_reset_output(j);
                if (sqlite3_get_autocommit(c->db))
                        goto fail; /* SQLite rolled the whole transaction back (disk full, I/O error) */
                key_index_rollback(s->keys, mark);
                r = conn_exec(c, "ROLLBACK TO job");
                if (r >= 0)
                        r = conn_exec(c, "RELEASE job");
                if (r < 0)
                        goto fail;
        }

        r = conn_read_counters(c, s->options.capacity, &ret->counters);
        if (r < 0)
                goto fail;
        r = conn_exec(c, "COMMIT");
        if (r < 0)
                goto fail;

        key_index_commit(s->keys);
        s->hlc_persisted = s->hlc_written;
        ret->committed = true;
        return;

fail:
        conn_reset_busy(c);
        if (!sqlite3_get_autocommit(c->db))
                (void) conn_exec(c, "ROLLBACK");
        key_index_rollback(s->keys, 0);
        s->hlc_written = s->hlc_persisted;
        for (Job *j = batch; j; j = j->next) {
                j->result = r;
                job_reset_output(j);
        }
}

/* ---- jobs on the reader ---- */

static int reader_run_job(StoreConn *c, Job *j) {
        int r, q;

        if (j->type == JOB_GET) {
                r = store_conn_get_receipt(c, j->id, &j->receipt);
                j->have_receipt = r >= 0;
                return r;
        }
        if (j->type == JOB_LIST_REJECTED) /* one statement: one snapshot */
                return list_rejected_run(c, j);

        r = conn_exec(c, "BEGIN");
        if (r < 0)
                return r;
        r = j->fn(c, j->job_data);
        conn_reset_busy(c);
        q = conn_exec(c, r < 0 ? "ROLLBACK" : "COMMIT");
        return r < 0 ? r : (q < 0 ? q : r);
}

static void reader_run_batch(Worker *w, Job *batch) {
        for (Job *j = batch; j; j = j->next) {
                j->result = reader_run_job(&w->conn, j);
                conn_reset_busy(&w->conn);
        }
}

/* ---- worker threads ---- */

static void *worker_main(void *userdata) {
        Worker *w = userdata;

        for (;;) {
                GroupResult g = {};
                Job *batch;

                pthread_mutex_lock(&w->lock);
                while (!w->queue_head && !w->quit)
                        pthread_cond_wait(&w->cond, &w->lock);
                /* Everything queued so far: what arrives while this runs (and syncs) waits for the next. */
                batch = w->queue_head;
                w->queue_head = w->queue_tail = NULL;
                pthread_mutex_unlock(&w->lock);

                if (!batch)
                        break; /* told to quit, and the queue is drained */

                if (w->is_writer)
                        writer_run_group(w, batch, &g);
                else
                        reader_run_batch(w, batch);

                pthread_mutex_lock(&w->lock);
                if (w->is_writer) {
                        if (g.committed) {
                                w->counters = g.counters;
                                w->have_counters = true;
                                w->stats.n_transactions++;
                                w->stats.n_jobs += g.n_jobs;
                                w->stats.max_jobs_per_transaction =
                                        MAX(w->stats.max_jobs_per_transaction, (uint64_t) g.n_jobs);
                        } else
                                w->stats.n_failed_transactions++;
                }
                if (w->done_tail)
                        w->done_tail->next = batch;
                else
                        w->done_head = batch;
                while (batch->next)
                        batch = batch->next;
                w->done_tail = batch;
                pthread_mutex_unlock(&w->lock);

                (void) !write(w->event_fd, &(uint64_t) { 1 }, sizeof(uint64_t));
        }

        return NULL;
}

static void job_complete(Store *s, Job *j) {
        int error = MIN(j->result, 0);

        switch (j->type) {
        case JOB_SUBMIT:
                if (j->cb.submit)
                        j->cb.submit(s, error, j->outcome,
                                     error >= 0 && j->have_receipt ? &j->receipt : NULL, j->userdata);
                break;
        case JOB_GET:
        case JOB_RESOLVE:
        case JOB_RETRY_PRINT:
        case JOB_CANCEL:
                if (j->cb.get)
                        j->cb.get(s, error, error >= 0 && j->have_receipt ? &j->receipt : NULL, j->userdata);
                break;
        case JOB_LIST_REJECTED:
                if (j->cb.list)
                        j->cb.list(s, error, error >= 0 ? j->receipts : NULL, error >= 0 ? j->n_receipts : 0,
                                   j->userdata);
                break;
        case JOB_WRITE:
        case JOB_READ:
                if (j->cb.done)
                        j->cb.done(s, j->result, j->userdata);
                break;
        }
}

/* Runs the callbacks of everything the worker finished. The counters are updated first, so a callback
 * already sees the state its own commit produced. */
static void worker_dispatch(Worker *w) {
        Store *s = w->store;
        Job *list;

        pthread_mutex_lock(&w->lock);
        list = w->done_head;
        w->done_head = w->done_tail = NULL;
        if (w->is_writer) {
                if (w->have_counters)
                        s->counters = w->counters;
                s->stats = w->stats;
        }
        pthread_mutex_unlock(&w->lock);

        if (!list)
                return;

        while (list) {
                _cleanup_(job_freep) Job *j = list;

                list = j->next;
                assert(s->n_outstanding > 0);
                s->n_outstanding--;
                job_complete(s, j);
        }

        if (s->n_outstanding == 0 && s->idle_cb && !s->shutting_down)
                s->idle_cb(s, s->idle_userdata);
}

/* Hands the jobs queued on the loop to the thread, waking it once for all of them. */
static void worker_handoff(Worker *w) {
        Job *head = TAKE_PTR(w->handoff_head), *tail = TAKE_PTR(w->handoff_tail);

        if (!head)
                return;

        pthread_mutex_lock(&w->lock);
        if (w->queue_tail)
                w->queue_tail->next = head;
        else
                w->queue_head = head;
        w->queue_tail = tail;
        pthread_mutex_unlock(&w->lock);
        /* After the unlock: a thread woken while the lock is still held only blocks on it again, one more
         * futex call and context switch on each side. The thread rechecks its queue under the lock. */
        pthread_cond_signal(&w->cond);
}

static int worker_on_handoff(sd_event_source *source, void *userdata) {
        worker_handoff(userdata);
        return 0;
}

/* The same, before the next iteration polls: sd-event dispatches one source per iteration, and each
 * iteration costs system calls, so the hand-off does not take one of its own. What was queued in the
 * iteration before goes to the thread together, as with the dispatch. */
static int worker_on_handoff_prepare(sd_event_source *source, void *userdata) {
        worker_handoff(userdata);
        (void) sd_event_source_set_enabled(source, SD_EVENT_OFF);
        return 0;
}

static int worker_on_event(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        Worker *w = userdata;
        uint64_t v;

        /* Drain the eventfd before taking the list: a completion posted in between wakes us again. */
        (void) !read(fd, &v, sizeof v);
        worker_dispatch(w);
        return 0;
}

static int worker_init(Worker *w, Store *s, bool is_writer) {
        int r;

        *w = (Worker) {
                .store = s,
                .is_writer = is_writer,
                .event_fd = -1,
        };

        r = pthread_mutex_init(&w->lock, NULL);
        if (r != 0)
                return -r;
        r = pthread_cond_init(&w->cond, NULL);
        if (r != 0) {
                pthread_mutex_destroy(&w->lock);
                return -r;
        }
        w->lock_initialized = true;

        w->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->event_fd < 0)
                return -errno;

        r = sd_event_add_io(s->event, &w->event_source, w->event_fd, EPOLLIN, worker_on_event, w);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(w->event_source, is_writer ? "store-writer" : "store-reader");

        /* Same priority as the sources whose callbacks queue jobs: it runs after the ones already pending
         * when the first job of a batch came, and cannot be starved by a busy loop. */
        r = sd_event_add_defer(s->event, &w->handoff_source, worker_on_handoff, w);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(w->handoff_source, SD_EVENT_OFF);
        (void) sd_event_source_set_description(w->handoff_source,
                                               is_writer ? "store-writer-handoff" : "store-reader-handoff");
        return sd_event_source_set_prepare(w->handoff_source, worker_on_handoff_prepare);
}

static int worker_start(Worker *w) {
        sigset_t all, saved;
        int r;

        /* The thread inherits a mask with every signal blocked: signals are the loop's (signalfd). */
        sigfillset(&all);
        r = pthread_sigmask(SIG_SETMASK, &all, &saved);
        if (r != 0)
                return -r;
        r = pthread_create(&w->thread, NULL, worker_main, w);
        (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r != 0)
                return -r;
        w->thread_started = true;
        (void) pthread_setname_np(w->thread, w->is_writer ? "store-writer" : "store-reader");
        return 0;
}

static void worker_stop(Worker *w) {
        if (!w->thread_started)
                return;

        worker_handoff(w);
        pthread_mutex_lock(&w->lock);
        w->quit = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);

        (void) pthread_join(w->thread, NULL);
        w->thread_started = false;
}

static void worker_done(Worker *w) {
        Store *s = w->store;

        if (!w->lock_initialized)
                return;

        /* Only when the thread never ran: its queue could not be worked off. */
        worker_handoff(w);
        while (w->queue_head) {
                _cleanup_(job_freep) Job *j = w->queue_head;

                w->queue_head = j->next;
                j->result = -ECANCELED;
                s->n_outstanding--;
                job_complete(s, j);
        }

        w->event_source = sd_event_source_disable_unref(w->event_source);
        w->handoff_source = sd_event_source_disable_unref(w->handoff_source);
        w->event_fd = safe_close(w->event_fd);
        conn_close(&w->conn);
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        w->lock_initialized = false;
}

/* ---- the checkpointer ---- */

static void *checkpointer_main(void *userdata) {
        Checkpointer *k = userdata;

        for (;;) {
                int rc, n_backfilled = 0;
                unsigned epoch;

                pthread_mutex_lock(&k->lock);
                while (!k->requested && !k->quit)
                        pthread_cond_wait(&k->cond, &k->lock);
                k->requested = false;
                epoch = k->request_epoch;
                if (k->quit) {
                        pthread_mutex_unlock(&k->lock);
                        break;
                }
                pthread_mutex_unlock(&k->lock);

                /* PASSIVE: copies what no reader still needs, never waits for the writer or a reader. The
                 * writer restarts the WAL at its next transaction once everything was copied. */
                rc = sqlite3_wal_checkpoint_v2(k->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, &n_backfilled);
                if (rc != SQLITE_OK && rc != SQLITE_BUSY)
                        log_debug("Background checkpoint of %s failed: %s", k->store->path,
                                  sqlite3_errmsg(k->db));

                /* A round that ends after the WAL restarted counted frames of the old one, or of the new
                 * one from an unknown start: the epoch tells the writer to ignore it. */
                pthread_mutex_lock(&k->lock);
                k->round_done = rc == SQLITE_OK;
                k->backfilled = n_backfilled;
                k->done_epoch = epoch;
                pthread_mutex_unlock(&k->lock);
        }
        return NULL;
}

/* The WAL hook of the writer's connection, called on the writer thread after each commit with the frames
 * in the WAL. The checkpointer copies behind the writer, a round per pages/4 new frames (each round syncs
 * the WAL and the database file: one per commit would double the syncs). The WAL only restarts from its
 * beginning when a transaction starts with every frame copied, which a copy running behind never achieves
 * while commits keep coming: so once a round has left little behind, the writer copies that rest itself,
 * a short pause instead of the whole checkpoint on the writer. */
static int writer_on_wal_commit(void *userdata, sqlite3 *db, const char *name, int n_frames) {
        Store *s = userdata;
        Checkpointer *k = &s->checkpointer;
        int pages = (int) MIN(s->options.checkpoint_pages, (unsigned) INT_MAX / CHECKPOINT_HARD_FACTOR);

        if (n_frames < s->wal_frames) {
                s->wal_epoch++; /* the WAL restarted */
                s->checkpoint_requested_at = 0;
        }
        s->wal_frames = n_frames;
        if (n_frames < pages)
                return SQLITE_OK;

        /* Commits came without a pause for so long that the WAL grew regardless; or there is no
         * checkpointer (yet, during the migrations, or any more, while the store is being freed). */
        if (n_frames >= pages * (int) CHECKPOINT_HARD_FACTOR || !k->lock_initialized)
                goto inline_checkpoint;

        pthread_mutex_lock(&k->lock);
        if (k->quit || (k->round_done && k->done_epoch == s->wal_epoch && n_frames >= k->backfilled &&
                        n_frames - k->backfilled <= pages / 16)) {
                k->round_done = false;
                pthread_mutex_unlock(&k->lock);
                goto inline_checkpoint;
        }
        if (s->checkpoint_requested_at == 0 || n_frames >= s->checkpoint_requested_at + pages / 4) {
                k->requested = true;
                k->request_epoch = s->wal_epoch;
                k->round_done = false;
                s->checkpoint_requested_at = n_frames;
                pthread_cond_signal(&k->cond);
        }
        pthread_mutex_unlock(&k->lock);
        return SQLITE_OK;

inline_checkpoint:
        (void) sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return SQLITE_OK;
}

static int checkpointer_start(Checkpointer *k, Store *s) {
        sigset_t all, saved;
        sqlite3 *db = NULL;
        char sql[64];
        int r;

        *k = (Checkpointer) { .store = s };
        r = pthread_mutex_init(&k->lock, NULL);
        if (r != 0)
                return -r;
        r = pthread_cond_init(&k->cond, NULL);
        if (r != 0) {
                pthread_mutex_destroy(&k->lock);
                return -r;
        }
        k->lock_initialized = true;

        r = sqlite3_open_v2(s->path, &db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE, NULL);
        if (r != SQLITE_OK) {
                (void) sqlite3_close(db);
                return sqlite_result_to_errno(r) ?: -EIO;
        }
        k->db = db;
        /* The same durability as the writer: with FULL, the database file is synced before the WAL that
         * the copy came from may be reused. */
        snprintf(sql, sizeof sql, "PRAGMA synchronous = %s",
                 s->options.synchronous == STORE_SYNCHRONOUS_OFF ? "OFF" : "FULL");
        r = sqlite3_exec(db, sql, NULL, NULL, NULL);
        if (r != SQLITE_OK)
                return sqlite_result_to_errno(r) ?: -EIO;

        sigfillset(&all);
        r = pthread_sigmask(SIG_SETMASK, &all, &saved);
        if (r != 0)
                return -r;
        r = pthread_create(&k->thread, NULL, checkpointer_main, k);
        (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r != 0)
                return -r;
        k->thread_started = true;
        (void) pthread_setname_np(k->thread, "store-checkpt");
        return 0;
}

static void checkpointer_stop(Checkpointer *k) {
        if (!k->thread_started)
                return;

        pthread_mutex_lock(&k->lock);
        k->quit = true;
        pthread_cond_signal(&k->cond);
        pthread_mutex_unlock(&k->lock);
        (void) pthread_join(k->thread, NULL); /* from now on the writer checkpoints itself */
        k->thread_started = false;
}

/* After the writer thread is gone: its WAL hook may signal until then. */
static void checkpointer_done(Checkpointer *k) {
        if (k->db) {
                (void) sqlite3_close(k->db);
                k->db = NULL;
        }
        if (k->lock_initialized) {
                pthread_cond_destroy(&k->cond);
                pthread_mutex_destroy(&k->lock);
                k->lock_initialized = false;
        }
}

/* ---- the Store ---- */

static int store_load_keys(Store *s) {
        StoreConn *c = &s->writer.conn;
        sqlite3_stmt *stmt;
        int rc, r;

        r = key_index_new(&s->keys);
        if (r < 0)
                return r;
        r = store_conn_prepare(c, "SELECT key, request_hash, receipt_id FROM idempotency_keys ORDER BY receipt_id",
                               &stmt);
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
                const char *key = (const char *) sqlite3_column_text(stmt, 0),
                           *hash = (const char *) sqlite3_column_text(stmt, 1),
                           *id = (const char *) sqlite3_column_text(stmt, 2);

                if (!key || !hash || !id) { /* NOT NULL columns */
                        r = -EBADMSG;
                        break;
                }
                r = key_index_add(s->keys, key, hash, id);
                if (r == -EEXIST) {
                        /* Only a program other than the daemon can have written that. The receipts are all
                         * kept; a replay of the key answers with the first one. */
                        log_warning("Idempotency key '%s' of receipt %s is in %s twice, keeping the first.",
                                    key, id, s->path);
                        r = 0;
                } else if (r < 0)
                        break;
        }
        if (r >= 0 && rc != SQLITE_DONE)
                r = conn_error(c, rc);
        (void) sqlite3_reset(stmt);
        if (r < 0)
                return r;
        key_index_commit(s->keys);
        log_debug("Loaded %zu idempotency keys from %s.", key_index_size(s->keys), s->path);
        return 0;
}

static int store_load_hlc(Store *s) {
        StoreConn *c = &s->writer.conn;
        sqlite3_stmt *stmt;
        int rc, r;

        r = store_conn_prepare(c, "SELECT value FROM config WHERE key = 'hlc_last'", &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
                const char *v = (const char *) sqlite3_column_text(stmt, 0);
                char *end = NULL;
                unsigned long long u;

                errno = 0;
                u = v ? strtoull(v, &end, 10) : 0;
                if (v && errno == 0 && end != v && *end == 0) {
                        hlc_observe(&s->hlc, u);
                        s->hlc_persisted = s->hlc_written = u;
                } else
                        log_debug("Ignoring unparsable hlc_last '%s' in %s.", strna(v), s->path);
        } else if (rc != SQLITE_DONE)
                r = conn_error(c, rc);
        (void) sqlite3_reset(stmt);
        if (r < 0)
                return r;

        /* The stamps themselves too, should the config row lag behind or be gone. */
        r = store_conn_prepare(c, "SELECT MAX(hlc) FROM receipts", &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW)
                hlc_observe(&s->hlc, (uint64_t) sqlite3_column_int64(stmt, 0));
        else
                r = conn_error(c, rc);
        (void) sqlite3_reset(stmt);
        return r;
}

#if ENABLE_DEBUG_HOOKS
/* KKT_ADAPTER_DEBUG_SYNCHRONOUS=off|full overrides the options, for the benchmark's ceiling. */
static int store_debug_synchronous(Store *s) {
        const char *e = getenv("KKT_ADAPTER_DEBUG_SYNCHRONOUS");

        if (!e)
                return 0;
        if (streq(e, "off"))
                s->options.synchronous = STORE_SYNCHRONOUS_OFF;
        else if (streq(e, "full"))
                s->options.synchronous = STORE_SYNCHRONOUS_FULL;
        else {
                log_debug("KKT_ADAPTER_DEBUG_SYNCHRONOUS=%s: expected off or full.", e);
                return -EINVAL;
        }
        log_warning("Debug hook: buffer database with synchronous=%s.", e);
        return 0;
}

/* KKT_ADAPTER_DEBUG_MAX_PAGES=N caps the file at N pages, so tests can fill the "disk" (SQLITE_FULL). */
static int store_debug_max_pages(StoreConn *c) {
        const char *e = getenv("KKT_ADAPTER_DEBUG_MAX_PAGES");
        unsigned long long n;
        char sql[64], *end = NULL;

        if (!e)
                return 0;
        errno = 0;
        n = strtoull(e, &end, 10);
        if (errno != 0 || end == e || *end != 0 || n == 0 || n > UINT32_MAX) {
                log_debug("KKT_ADAPTER_DEBUG_MAX_PAGES=%s: expected a page count.", e);
                return -EINVAL;
        }
        log_warning("Debug hook: buffer database limited to %llu pages.", n);
        /* SQLite raises a limit below the current size to the current size. */
        snprintf(sql, sizeof sql, "PRAGMA max_page_count = %llu", n);
        return conn_exec(c, sql);
}
#endif

static int store_open_writer(Store *s) {
        StoreConn *c = &s->writer.conn;
        const char *mode, *vfs = NULL;
        sqlite3_stmt *stmt;
        char pragmas[128];
        int version, rc, r;

        /* With synchronous=FULL, the WAL's writes are gathered into one per commit (store-vfs.h). */
        if (s->options.synchronous == STORE_SYNCHRONOUS_FULL) {
                r = store_vfs_register();
                if (r < 0)
                        log_debug_errno(r, "Cannot register the WAL write-gathering VFS, using the default: %m");
                else
                        vfs = STORE_VFS_NAME;
        }
        r = conn_open(c, s, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs);
        if (r < 0)
                return r;
        if (sqlite3_db_readonly(c->db, "main") > 0)
                return -EROFS;

        /* Before anything writes to the file: a newer version's file stays as it is. */
        r = store_schema_get_version(c->db, &version);
        if (r < 0)
                return r;
        if (version > STORE_SCHEMA_VERSION)
                return -EPROTO;
        r = store_schema_check(c->db);
        if (r < 0)
                return r;

        r = store_conn_prepare(c, "PRAGMA journal_mode = WAL", &stmt);
        if (r < 0)
                return r;
        rc = sqlite3_step(stmt);
        mode = rc == SQLITE_ROW ? (const char *) sqlite3_column_text(stmt, 0) : NULL;
        r = mode && streq(mode, "wal") ? 0 : rc == SQLITE_ROW ? -EOPNOTSUPP : conn_error(c, rc);
        (void) sqlite3_reset(stmt);
        if (r < 0)
                return r;

        snprintf(pragmas, sizeof pragmas, "PRAGMA synchronous = %s",
                 s->options.synchronous == STORE_SYNCHRONOUS_OFF ? "OFF" : "FULL");
        r = conn_exec(c, pragmas);
        if (r < 0)
                return r;
        r = conn_exec(c, "PRAGMA foreign_keys = ON");
        if (r < 0)
                return r;
        r = conn_exec(c, "PRAGMA cache_size = -16384");
        if (r < 0)
                return r;
        /* Each job's savepoint journals the pages it changes; in a temporary file that tripled the write
         * syscalls per receipt. The group's size bounds what this holds in memory. */
        r = conn_exec(c, "PRAGMA temp_store = MEMORY");
        if (r < 0)
                return r;
        /* Checkpoints run on the checkpointer's thread once the WAL holds checkpoint_pages (by default
         * 16 MiB: fewer, larger checkpoints write hot pages, such as the counts and the right edge of the
         * indexes, once instead of many times); see writer_on_wal_commit(). The WAL never grows much past
         * the hard limit, which is kept as the file's size across restarts of the WAL: writing into space
         * already allocated spares each commit's fdatasync() a metadata update. */
        (void) sqlite3_wal_hook(c->db, writer_on_wal_commit, s);
        snprintf(pragmas, sizeof pragmas, "PRAGMA journal_size_limit = %" PRIu64,
                 (uint64_t) s->options.checkpoint_pages * CHECKPOINT_HARD_FACTOR * (4096 + 24));
        r = conn_exec(c, pragmas);
        if (r < 0)
                return r;

        r = store_schema_migrate(c->db);
        if (r < 0)
                return r;
        r = store_schema_create_counts(c->db);
        if (r < 0)
                return r;
        r = store_load_keys(s);
        if (r < 0)
                return r;
#if ENABLE_DEBUG_HOOKS
        r = store_debug_max_pages(c);
        if (r < 0)
                return r;
#endif

        r = conn_read_counters(c, s->options.capacity, &s->counters);
        if (r < 0)
                return r;
        return store_load_hlc(s);
}

static void store_configure_sqlite(void) {
        /* Without the memory statistics (which nothing reads) every SQLite allocation skips a global
         * mutex. Only possible before SQLite initializes; later it fails harmlessly with SQLITE_MISUSE. */
        (void) sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int store_open(Store **ret, sd_event *event, const char *path, const StoreOptions *opts) {
        static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;
        _cleanup_(store_freep) Store *s = NULL;
        int r;

        assert(ret);
        assert(event);
        assert(path);

        (void) pthread_once(&sqlite_once, store_configure_sqlite);

        s = new0(Store, 1);
        if (!s)
                return -ENOMEM;
        if (opts)
                s->options = *opts;
        if (s->options.capacity == 0)
                s->options.capacity = STORE_CAPACITY_DEFAULT;
        if (s->options.busy_timeout == 0)
                s->options.busy_timeout = BUSY_TIMEOUT_DEFAULT;
        if (s->options.checkpoint_pages == 0)
                s->options.checkpoint_pages = CHECKPOINT_PAGES_DEFAULT;
#if ENABLE_DEBUG_HOOKS
        r = store_debug_synchronous(s);
        if (r < 0)
                return r;
#endif
        if ((int) s->options.synchronous < 0 || s->options.synchronous >= _STORE_SYNCHRONOUS_MAX)
                return -EINVAL;
        s->random_used = sizeof s->random_pool; /* empty: filled on first use */
        s->path = strdup(path);
        if (!s->path)
                return -ENOMEM;
        s->event = sd_event_ref(event);

        r = worker_init(&s->writer, s, true);
        if (r < 0)
                return r;
        r = worker_init(&s->reader, s, false);
        if (r < 0)
                return r;

        r = store_open_writer(s);
        if (r < 0)
                return r;

        /* Opened after the writer switched the file to WAL, which a read-only connection cannot do. */
        r = conn_open(&s->reader.conn, s, SQLITE_OPEN_READONLY, NULL);
        if (r < 0)
                return r;
        r = conn_exec(&s->reader.conn, "PRAGMA cache_size = -8192");
        if (r < 0)
                return r;

        r = checkpointer_start(&s->checkpointer, s);
        if (r < 0)
                return r;
        r = worker_start(&s->writer);
        if (r < 0)
                return r;
        r = worker_start(&s->reader);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(s);
        return 0;
}

Store *store_free(Store *s) {
        if (!s)
                return NULL;

        s->shutting_down = true;

        /* The threads work off their queues before they exit; then every callback still owed runs. */
        checkpointer_stop(&s->checkpointer);
        worker_stop(&s->reader);
        worker_stop(&s->writer);
        if (s->reader.lock_initialized)
                worker_dispatch(&s->reader);
        if (s->writer.lock_initialized)
                worker_dispatch(&s->writer);

        /* The writer's connection closes last, so SQLite checkpoints the WAL into the file. */
        checkpointer_done(&s->checkpointer);
        worker_done(&s->reader);
        worker_done(&s->writer);
        key_index_free(s->keys);

        sd_event_unref(s->event);
        free(s->path);
        return mfree(s);
}

bool store_is_idle(Store *s) {
        assert(s);
        return s->n_outstanding == 0;
}

void store_set_idle_callback(Store *s, StoreIdleCallback cb, void *userdata) {
        assert(s);
        s->idle_cb = cb;
        s->idle_userdata = userdata;
}

const StoreCounters *store_get_counters(Store *s) {
        assert(s);
        return &s->counters;
}

const StoreStats *store_get_stats(Store *s) {
        assert(s);
        return &s->stats;
}

const char *store_get_path(Store *s) {
        assert(s);
        return s->path;
}

static int store_enqueue(Store *s, Worker *w, Job *j) {
        if (s->shutting_down)
                return -ESHUTDOWN;

        if (w->handoff_tail)
                w->handoff_tail->next = j;
        else
                w->handoff_head = j;
        w->handoff_tail = j;
        s->n_outstanding++;

        if (sd_event_source_set_enabled(w->handoff_source, SD_EVENT_ONESHOT) < 0)
                worker_handoff(w); /* no batching then, but no job left behind either */
        return 0;
}

static int strdup_or_null(const char *s, char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
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

int store_get_receipt(Store *s, const char *id, StoreGetCallback cb, void *userdata) {
        _cleanup_(job_freep) Job *j = NULL;
        int r;

        assert(s);
        assert(id);

        j = new0(Job, 1);
        if (!j)
                return -ENOMEM;
        *j = (Job) {
                .type = JOB_GET,
                .cb.get = cb,
                .userdata = userdata,
                .id = strdup(id),
        };
        if (!j->id)
                return -ENOMEM;

        r = store_enqueue(s, &s->reader, j);
        if (r < 0)
                return r;
        TAKE_PTR(j);
        return 0;
}

/* A job about one receipt (or reference) that calls back with a receipt. */
static int store_queue_receipt_job(Store *s, Worker *w, JobType type, const char *id, const char *note,
                                   const char *who, StoreGetCallback cb, void *userdata) {
        _cleanup_(job_freep) Job *j = NULL;
        int r;

        j = new0(Job, 1);
        if (!j)
                return -ENOMEM;
        *j = (Job) {
                .type = type,
                .cb.get = cb,
                .userdata = userdata,
        };
        if (strdup_or_null(id, &j->id) < 0 || strdup_or_null(note, &j->note) < 0 ||
            strdup_or_null(who, &j->who) < 0)
                return -ENOMEM;

        r = store_enqueue(s, w, j);
        if (r < 0)
                return r;
        TAKE_PTR(j);
        return 0;
}

int store_resolve_receipt(Store *s, const char *ref, StoreGetCallback cb, void *userdata) {
        assert(s);
        assert(ref);

        return store_queue_receipt_job(s, &s->writer, JOB_RESOLVE, ref, NULL, NULL, cb, userdata);
}

int store_retry_print(Store *s, const char *id, const char *who, StoreGetCallback cb, void *userdata) {
        assert(s);
        assert(id);

        return store_queue_receipt_job(s, &s->writer, JOB_RETRY_PRINT, id, NULL, who, cb, userdata);
}

int store_cancel_receipt(Store *s, const char *id, const char *note, const char *who, StoreGetCallback cb,
                         void *userdata) {
        assert(s);
        assert(id);

        return store_queue_receipt_job(s, &s->writer, JOB_CANCEL, id, note, who, cb, userdata);
}

int store_list_print_rejected(Store *s, unsigned limit, StoreListCallback cb, void *userdata) {
        _cleanup_(job_freep) Job *j = NULL;
        int r;

        assert(s);

        j = new0(Job, 1);
        if (!j)
                return -ENOMEM;
        *j = (Job) {
                .type = JOB_LIST_REJECTED,
                .cb.list = cb,
                .userdata = userdata,
                .limit = limit == 0 ? STORE_LIST_LIMIT_DEFAULT : limit,
        };

        r = store_enqueue(s, &s->reader, j);
        if (r < 0)
                return r;
        TAKE_PTR(j);
        return 0;
}

static int store_queue_func(Store *s, Worker *w, JobType type, StoreJobFunc fn, void *job_data,
                            StoreDoneCallback cb, void *userdata) {
        _cleanup_(job_freep) Job *j = NULL;
        int r;

        assert(s);
        assert(fn);

        j = new0(Job, 1);
        if (!j)
                return -ENOMEM;
        *j = (Job) {
                .type = type,
                .fn = fn,
                .job_data = job_data,
                .cb.done = cb,
                .userdata = userdata,
        };

        r = store_enqueue(s, w, j);
        if (r < 0)
                return r;
        TAKE_PTR(j);
        return 0;
}

int store_write(Store *s, StoreJobFunc fn, void *job_data, StoreDoneCallback cb, void *userdata) {
        return store_queue_func(s, &s->writer, JOB_WRITE, fn, job_data, cb, userdata);
}

int store_read(Store *s, StoreJobFunc fn, void *job_data, StoreDoneCallback cb, void *userdata) {
        return store_queue_func(s, &s->reader, JOB_READ, fn, job_data, cb, userdata);
}

/* ---- state changes built on store_write() ---- */

typedef struct MarkJob {
        char *id;
        char *document; /* fiscal_doc, ofd_response or an answer */
        usec_t at;
        unsigned status; /* an answer's HTTP status */
        StoreDoneCallback cb;
        void *userdata;
} MarkJob;

static MarkJob *mark_job_free(MarkJob *m) {
        if (!m)
                return NULL;
        free(m->id);
        free(m->document);
        return mfree(m);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(MarkJob *, mark_job_free);

static void mark_on_done(Store *s, int result, void *userdata) {
        _cleanup_(mark_job_freep) MarkJob *m = userdata;

        if (m->cb)
                m->cb(s, result, m->userdata);
}

static int mark_queue(Store *s, StoreJobFunc fn, const char *id, const char *document, usec_t at,
                      StoreDoneCallback cb, void *userdata) {
        _cleanup_(mark_job_freep) MarkJob *m = NULL;
        int r;

        m = new0(MarkJob, 1);
        if (!m)
                return -ENOMEM;
        *m = (MarkJob) { .at = at, .cb = cb, .userdata = userdata };
        if (strdup_or_null(id, &m->id) < 0 || strdup_or_null(document, &m->document) < 0)
                return -ENOMEM;

        r = store_write(s, fn, m, mark_on_done, m);
        if (r < 0)
                return r;
        TAKE_PTR(m);
        return 0;
}

/* When an UPDATE matched nothing: why. */
static int mark_explain(StoreConn *c, const char *id, int (*explain)(StoreStatus, StorePrintStatus)) {
        sqlite3_stmt *stmt;
        int rc, r;

        r = store_conn_prepare(c, "SELECT status, print_status FROM receipts WHERE id = ?", &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "t", id);
        if (r < 0)
                return r;
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW)
                r = explain(store_status_from_string((const char *) sqlite3_column_text(stmt, 0)),
                            store_print_status_from_string((const char *) sqlite3_column_text(stmt, 1)));
        else
                r = rc == SQLITE_DONE ? -ENOENT : conn_error(c, rc);
        (void) sqlite3_reset(stmt);
        return r;
}

static int mark_printed_explain(StoreStatus status, StorePrintStatus print_status) {
        if (status == STORE_STATUS_CANCELLED || print_status == STORE_PRINT_REJECTED)
                return -ESTALE;
        return -EALREADY;
}

static int mark_printed_run(StoreConn *c, void *job_data) {
        MarkJob *m = job_data;
        char at[FORMAT_ISO8601_MAX], updated[FORMAT_ISO8601_MAX];
        sqlite3_stmt *stmt;
        int r;

        r = store_conn_prepare(c,
                               "UPDATE receipts SET print_status = 'printed', fiscal_doc = ?1, "
                               "fiscal_document_number = " STORE_SQL_FISCAL_DOCUMENT_NUMBER("?1") ", "
                               "printed_at = ?2, updated_at = ?3 WHERE id = ?4 "
                               "AND print_status IN ('unprinted', 'print_failed') AND status <> 'cancelled'",
                               &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "tttt", m->document, format_iso8601_utc(at, sizeof at, m->at),
                            format_iso8601_utc(updated, sizeof updated, now(CLOCK_REALTIME)), m->id);
        if (r < 0)
                return r;
        r = store_conn_step_done(c, stmt);
        if (r < 0)
                return r;
        if (sqlite3_changes(c->db) == 0)
                return mark_explain(c, m->id, mark_printed_explain);

        return store_conn_log_event(c, m->id, "printed", NULL);
}

int store_mark_printed(Store *s, const char *id, const char *fiscal_doc, usec_t printed_at,
                       StoreDoneCallback cb, void *userdata) {
        assert(s);
        assert(id);
        assert(fiscal_doc);

        return mark_queue(s, mark_printed_run, id, fiscal_doc, printed_at, cb, userdata);
}

static int set_response_run(StoreConn *c, void *job_data) {
        MarkJob *m = job_data;
        sqlite3_stmt *stmt;
        int rc, r;

        /* The first answer stays: a key keeps what it was answered with. */
        r = store_conn_prepare(c,
                               "UPDATE idempotency_keys SET response_status = ?, response = ? "
                               "WHERE receipt_id = ? AND response IS NULL",
                               &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "itt", (int64_t) m->status, m->document, m->id);
        if (r < 0)
                return r;
        r = store_conn_step_done(c, stmt);
        if (r < 0)
                return r;
        if (sqlite3_changes(c->db) > 0)
                return 1;

        r = store_conn_prepare(c, "SELECT 1 FROM idempotency_keys WHERE receipt_id = ?", &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "t", m->id);
        if (r < 0)
                return r;
        rc = sqlite3_step(stmt);
        r = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : conn_error(c, rc);
        (void) sqlite3_reset(stmt);
        return r;
}

int store_set_response(Store *s, const char *id, unsigned status, const char *response, StoreDoneCallback cb,
                       void *userdata) {
        _cleanup_(mark_job_freep) MarkJob *m = NULL;
        int r;

        assert(s);
        assert(id);
        assert(response);

        m = new0(MarkJob, 1);
        if (!m)
                return -ENOMEM;
        *m = (MarkJob) { .status = status, .cb = cb, .userdata = userdata };
        if (strdup_or_null(id, &m->id) < 0 || strdup_or_null(response, &m->document) < 0)
                return -ENOMEM;
        r = store_write(s, set_response_run, m, mark_on_done, m);
        if (r < 0)
                return r;
        TAKE_PTR(m);
        return 0;
}

static int mark_synced_explain(StoreStatus status, StorePrintStatus print_status) {
        if (status == STORE_STATUS_SYNCED)
                return -EALREADY;
        if (!IN_SET(status, STORE_STATUS_PENDING, STORE_STATUS_FAILED))
                return -ESTALE;
        return -EPERM; /* not printed */
}

int store_conn_set_synced(StoreConn *c, const char *id, const char *ofd_response) {
        char ts[FORMAT_ISO8601_MAX];
        sqlite3_stmt *stmt;
        int r;

        assert(c);
        assert(id);

        r = store_conn_prepare(c,
                               "UPDATE receipts SET status = 'synced', synced_at = ?1, updated_at = ?1, "
                               "ofd_response = ?2, last_error = NULL, next_retry_at = NULL "
                               "WHERE id = ?3 AND status IN ('pending', 'failed') "
                               "AND print_status = 'printed'",
                               &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "ttt", format_iso8601_utc(ts, sizeof ts, now(CLOCK_REALTIME)),
                            ofd_response, id);
        if (r < 0)
                return r;
        r = store_conn_step_done(c, stmt);
        if (r < 0)
                return r;
        return sqlite3_changes(c->db) > 0;
}

static int mark_synced_run(StoreConn *c, void *job_data) {
        MarkJob *m = job_data;
        int r;

        r = store_conn_set_synced(c, m->id, m->document);
        if (r < 0)
                return r;
        if (r == 0)
                return mark_explain(c, m->id, mark_synced_explain);

        return store_conn_log_event(c, m->id, "synced", NULL);
}

int store_mark_synced(Store *s, const char *id, const char *ofd_response, StoreDoneCallback cb,
                      void *userdata) {
        assert(s);
        assert(id);

        return mark_queue(s, mark_synced_run, id, ofd_response, 0, cb, userdata);
}

/* ---- the print rejections an admin resolves ---- */

/* A buffer_events row with details {k1: v1, k2: v2}; a NULL key leaves its member out, a NULL value is
 * null. */
static int conn_log_event_fields(StoreConn *c, const char *id, const char *event, const char *k1,
                                 const char *v1, const char *k2, const char *v2) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        const char *details;
        int r = 0;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if (k1)
                r = json_add_string_or_null(o, k1, v1);
        if (r >= 0 && k2)
                r = json_add_string_or_null(o, k2, v2);
        if (r < 0)
                return r;
        details = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!details)
                return -ENOMEM;
        return store_conn_log_event(c, id, event, details);
}

static int set_print_rejected_explain(StoreStatus status, StorePrintStatus print_status) {
        if (status == STORE_STATUS_CANCELLED)
                return -ESTALE;
        if (IN_SET(print_status, STORE_PRINT_PRINTED, STORE_PRINT_REJECTED))
                return -EALREADY;
        return -ESTALE; /* a row of the prototype that is not pending: nothing prints it */
}

static int set_print_rejected_run(StoreConn *c, void *job_data) {
        MarkJob *m = job_data;
        char ts[FORMAT_ISO8601_MAX];
        sqlite3_stmt *stmt;
        int r;

        r = store_conn_prepare(c,
                               "UPDATE receipts SET print_status = 'print_rejected', last_error = ?1, "
                               "updated_at = ?2 WHERE id = ?3 AND status = 'pending' "
                               "AND print_status IN ('unprinted', 'print_failed')",
                               &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "ttt", m->document,
                            format_iso8601_utc(ts, sizeof ts, now(CLOCK_REALTIME)), m->id);
        if (r < 0)
                return r;
        r = store_conn_step_done(c, stmt);
        if (r < 0)
                return r;
        if (sqlite3_changes(c->db) == 0)
                return mark_explain(c, m->id, set_print_rejected_explain);

        return conn_log_event_fields(c, m->id, "print_rejected", "reason", m->document, NULL, NULL);
}

int store_set_print_rejected(Store *s, const char *id, const char *reason, StoreDoneCallback cb,
                             void *userdata) {
        assert(s);
        assert(id);

        return mark_queue(s, set_print_rejected_run, id, reason, 0, cb, userdata);
}

/* For retry and cancel, which both start from print_rejected. */
static int from_rejected_explain(StoreStatus status, StorePrintStatus print_status) {
        return status == STORE_STATUS_CANCELLED ? -ESTALE : -EBUSY;
}

static int resolve_run(StoreConn *c, Job *j) {
        int r;

        r = conn_resolve_receipt(c, j->id, &j->receipt);
        j->have_receipt = r >= 0;
        return r;
}

/* The receipt as the job left it, for the callback. */
static int job_take_receipt(StoreConn *c, Job *j) {
        int r;

        r = store_conn_get_receipt(c, j->id, &j->receipt);
        j->have_receipt = r >= 0;
        return r;
}

static int retry_print_run(StoreConn *c, Job *j) {
        char ts[FORMAT_ISO8601_MAX];
        sqlite3_stmt *stmt;
        int r;

        r = store_conn_prepare(c,
                               "UPDATE receipts SET print_status = 'unprinted', updated_at = ?1 "
                               "WHERE id = ?2 AND status = 'pending' AND print_status = 'print_rejected'",
                               &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "tt", format_iso8601_utc(ts, sizeof ts, now(CLOCK_REALTIME)), j->id);
        if (r < 0)
                return r;
        r = store_conn_step_done(c, stmt);
        if (r < 0)
                return r;
        if (sqlite3_changes(c->db) == 0)
                return mark_explain(c, j->id, from_rejected_explain);

        r = conn_log_event_fields(c, j->id, "print_retried", "by", j->who, NULL, NULL);
        if (r < 0)
                return r;
        return job_take_receipt(c, j);
}

static int cancel_run(StoreConn *c, Job *j) {
        _cleanup_free_ char *error = NULL;
        char ts[FORMAT_ISO8601_MAX];
        sqlite3_stmt *stmt;
        int r;

        if (asprintf(&error, "cancelled by %s%s%s", j->who ?: "unknown", isempty(j->note) ? "" : ": ",
                     strempty(j->note)) < 0)
                return -ENOMEM;

        r = store_conn_prepare(c,
                               "UPDATE receipts SET status = 'cancelled', last_error = ?1, "
                               "next_retry_at = NULL, updated_at = ?2 WHERE id = ?3 "
                               "AND status = 'pending' AND print_status = 'print_rejected'",
                               &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "ttt", error, format_iso8601_utc(ts, sizeof ts, now(CLOCK_REALTIME)),
                            j->id);
        if (r < 0)
                return r;
        r = store_conn_step_done(c, stmt);
        if (r < 0)
                return r;
        if (sqlite3_changes(c->db) == 0)
                return mark_explain(c, j->id, from_rejected_explain);

        r = conn_log_event_fields(c, j->id, "cancelled", "by", j->who, "note", j->note);
        if (r < 0)
                return r;
        return job_take_receipt(c, j);
}

static int list_rejected_run(StoreConn *c, Job *j) {
        sqlite3_stmt *stmt;
        size_t allocated = 0;
        int rc = SQLITE_DONE, r;

        r = store_conn_prepare(c,
                               "SELECT " STORE_RECEIPT_COLUMNS " FROM receipts "
                               "WHERE status = 'pending' AND print_status = 'print_rejected' "
                               "ORDER BY hlc LIMIT ?",
                               &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "i", (int64_t) j->limit);
        if (r < 0)
                return r;

        while (j->n_receipts < j->limit && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
                if (j->n_receipts == allocated) {
                        size_t n = MIN(MAX(allocated * 2, (size_t) 16), (size_t) j->limit);
                        StoreReceipt *a = reallocarray(j->receipts, n, sizeof(StoreReceipt));

                        if (!a)
                                return -ENOMEM;
                        j->receipts = a;
                        allocated = n;
                }
                r = store_receipt_from_row(stmt, j->receipts + j->n_receipts);
                if (r < 0)
                        return r;
                j->n_receipts++;
        }
        if (j->n_receipts < j->limit && rc != SQLITE_DONE)
                return conn_error(c, rc);
        return (int) MIN(j->n_receipts, (size_t) INT_MAX);
}
