/* SPDX-License-Identifier: MIT */
/* The Store as a whole: the names of its enums, opening buffer.db (the writer's connection with its
 * pragmas, the schema check and migrations, the key index and the HLC loaded, then the reader, the
 * checkpointer and the threads), the debug hooks of test builds, and closing it all in order. */

#include <inttypes.h>
#include <limits.h>

#include "log.h"
#include "sqlite-util.h"
#include "store-internal.h"
#include "store-schema.h"
#include "store-vfs.h"
#include "string-table.h"

static const char *const store_status_table[_STORE_STATUS_MAX] = {
        [STORE_STATUS_PENDING] = "pending",
        [STORE_STATUS_SYNCED] = "synced",
        [STORE_STATUS_FAILED] = "failed",
        [STORE_STATUS_DLQ] = "dlq",
        [STORE_STATUS_CANCELLED] = "cancelled",
};

static const char *const store_print_status_table[_STORE_PRINT_MAX] = {
        [STORE_PRINT_UNPRINTED] = "unprinted",
        [STORE_PRINT_PRINTED] = "printed",
        [STORE_PRINT_FAILED] = "print_failed",
        [STORE_PRINT_REJECTED] = "print_rejected",
};

static const char *const store_submit_outcome_table[_STORE_SUBMIT_OUTCOME_MAX] = {
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

static const char *const store_synchronous_table[_STORE_SYNCHRONOUS_MAX] = {
        [STORE_SYNCHRONOUS_FULL] = "full",
        [STORE_SYNCHRONOUS_OFF] = "off",
};

DEFINE_STRING_TABLE_LOOKUP(store_synchronous, StoreSynchronous);
DEFINE_STRING_TABLE_LOOKUP(store_status, StoreStatus);
DEFINE_STRING_TABLE_LOOKUP(store_print_status, StorePrintStatus);
DEFINE_STRING_TABLE_LOOKUP_TO_STRING(store_submit_outcome, StoreSubmitOutcome, );

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
                r = store_conn_error(c, rc);
        (void) sqlite3_reset(stmt);
        if (r < 0)
                return r;
        key_index_commit(s->keys);
        log_debug("Loaded %zu idempotency keys from %s.", key_index_size(s->keys), s->path);
        return 0;
}

static int store_load_hlc(Store *s) {
        StoreConn *c = &s->writer.conn;
        _cleanup_free_ char *v = NULL;
        int64_t max;
        int r;

        r = store_conn_query_one(c, "SELECT value FROM config WHERE key = 'hlc_last'", sqlite_row_text, &v, "");
        if (r < 0)
                return r;
        if (r > 0) {
                char *end = NULL;
                unsigned long long u;

                errno = 0;
                u = v ? strtoull(v, &end, 10) : 0;
                if (v && errno == 0 && end != v && *end == 0) {
                        hlc_observe(&s->hlc, u);
                        s->hlc_persisted = s->hlc_written = u;
                } else
                        log_debug("Ignoring unparsable hlc_last '%s' in %s.", strna(v), s->path);
        }

        /* The stamps themselves too, should the config row lag behind or be gone. */
        r = store_conn_query_int64(c, "SELECT MAX(hlc) FROM receipts", &max, "");
        if (r < 0)
                return r;
        hlc_observe(&s->hlc, (uint64_t) max);
        return 0;
}

#if ENABLE_DEBUG_HOOKS
/* KKT_ADAPTER_DEBUG_SYNCHRONOUS=off|full overrides the options, for the benchmark's ceiling. */
static int store_debug_synchronous(Store *s) {
        const char *e = getenv("KKT_ADAPTER_DEBUG_SYNCHRONOUS");
        StoreSynchronous v;

        if (!e)
                return 0;
        v = store_synchronous_from_string(e);
        if (v < 0) {
                log_debug("KKT_ADAPTER_DEBUG_SYNCHRONOUS=%s: expected off or full.", e);
                return -EINVAL;
        }
        s->options.synchronous = v;
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
        return store_conn_exec(c, sql);
}
#endif

static int store_open_writer(Store *s) {
        StoreConn *c = &s->writer.conn;
        _cleanup_free_ char *mode = NULL;
        const char *vfs = NULL;
        char pragmas[128];
        int version, r;

        /* With synchronous=FULL, the WAL's writes are gathered into one per commit (store-vfs.h). */
        if (s->options.synchronous == STORE_SYNCHRONOUS_FULL) {
                r = store_vfs_register();
                if (r < 0)
                        log_debug_errno(r, "Cannot register the WAL write-gathering VFS, using the default: %m");
                else
                        vfs = STORE_VFS_NAME;
        }
        r = store_conn_open(c, s, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs);
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

        r = sqlite_query_one_text(c->db, "PRAGMA journal_mode = WAL", &mode);
        if (r < 0)
                return r;
        if (!streq_ptr(mode, "wal"))
                return -EOPNOTSUPP;

        snprintf(pragmas, sizeof pragmas, "PRAGMA synchronous = %s",
                 store_synchronous_to_string(s->options.synchronous));
        r = store_conn_exec(c, pragmas);
        if (r < 0)
                return r;
        r = store_conn_exec(c, "PRAGMA foreign_keys = ON");
        if (r < 0)
                return r;
        r = store_conn_exec(c, "PRAGMA cache_size = -16384");
        if (r < 0)
                return r;
        /* Each job's savepoint journals the pages it changes; in a temporary file that tripled the write
         * syscalls per receipt. The group's size bounds what this holds in memory. */
        r = store_conn_exec(c, "PRAGMA temp_store = MEMORY");
        if (r < 0)
                return r;
        /* Checkpoints run on the checkpointer's thread once the WAL holds checkpoint_pages (by default
         * 16 MiB: fewer, larger checkpoints write hot pages, such as the counts and the right edge of the
         * indexes, once instead of many times); see store_writer_on_wal_commit(). The WAL never grows much past
         * the hard limit, which is kept as the file's size across restarts of the WAL: writing into space
         * already allocated spares each commit's fdatasync() a metadata update. */
        (void) sqlite3_wal_hook(c->db, store_writer_on_wal_commit, s);
        snprintf(pragmas, sizeof pragmas, "PRAGMA journal_size_limit = %" PRIu64,
                 (uint64_t) s->options.checkpoint_pages * CHECKPOINT_HARD_FACTOR * (4096 + 24));
        r = store_conn_exec(c, pragmas);
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

        r = store_conn_read_counters(c, s->options.capacity, &s->counters);
        if (r < 0)
                return r;
        return store_load_hlc(s);
}

/* Everything that opens a file of the buffer. */
static int store_open_connections(Store *s) {
        int r;

        r = store_open_writer(s);
        if (r < 0)
                return r;

        /* Opened after the writer switched the file to WAL, which a read-only connection cannot do. */
        r = store_conn_open(&s->reader.conn, s, SQLITE_OPEN_READONLY, NULL);
        if (r < 0)
                return r;
        r = store_conn_exec(&s->reader.conn, "PRAGMA cache_size = -8192");
        if (r < 0)
                return r;

        return store_checkpointer_start(&s->checkpointer, s);
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

        r = store_worker_init(&s->writer, s, true);
        if (r < 0)
                return r;
        r = store_worker_init(&s->reader, s, false);
        if (r < 0)
                return r;

        r = store_open_connections(s);
        if (r < 0)
                return store_access_error(path, r);

        r = store_worker_start(&s->writer);
        if (r < 0)
                return r;
        r = store_worker_start(&s->reader);
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
        store_checkpointer_stop(&s->checkpointer);
        store_worker_stop(&s->reader);
        store_worker_stop(&s->writer);
        if (s->reader.lock_initialized)
                store_worker_dispatch(&s->reader);
        if (s->writer.lock_initialized)
                store_worker_dispatch(&s->writer);

        /* The writer's connection closes last, so SQLite checkpoints the WAL into the file. */
        store_checkpointer_done(&s->checkpointer);
        store_worker_done(&s->reader);
        store_worker_done(&s->writer);
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

