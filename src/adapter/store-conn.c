/* SPDX-License-Identifier: MIT */
/* A worker's connection: opening it, the statement cache keyed by the SQL text, binding and stepping, a
 * receipt from its row, and what every commit reads back for the loop (the per-status counters and the
 * oldest receipt the OFD has not acknowledged). */

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>

#include "json-util.h"
#include "log.h"
#include "sqlite-util.h"
#include "store-internal.h"
#include "store-schema.h"

int store_conn_error(StoreConn *c, int rc) {
        return sqlite_step_error(c->db, rc);
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
                return store_conn_error(c, rc);
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
        return store_conn_error(c, rc);
}

int store_conn_exec(StoreConn *c, const char *sql) {
        sqlite3_stmt *stmt;
        int r;

        r = store_conn_prepare(c, sql, &stmt);
        if (r < 0)
                return r;
        return store_conn_step_done(c, stmt);
}

/* A statement stepped but not reset keeps its snapshot (and in WAL mode holds back checkpoints). */
void store_conn_reset_busy(StoreConn *c) {
        for (size_t i = 0; i < c->n_stmts; i++)
                if (sqlite3_stmt_busy(c->stmts[i].stmt))
                        (void) sqlite3_reset(c->stmts[i].stmt);
}

int store_conn_open(StoreConn *c, Store *s, int flags, const char *vfs) {
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

void store_conn_close(StoreConn *c) {
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

int store_conn_bindv(StoreConn *c, sqlite3_stmt *stmt, const char *types, va_list ap) {
        int rc = SQLITE_OK, i = 1;

        assert(c);
        assert(stmt);
        assert(types);

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

        return rc == SQLITE_OK ? 0 : store_conn_error(c, rc);
}

int store_conn_bind(StoreConn *c, sqlite3_stmt *stmt, const char *types, ...) {
        va_list ap;
        int r;

        va_start(ap, types);
        r = store_conn_bindv(c, stmt, types, ap);
        va_end(ap);
        return r;
}

static int conn_query_onev(StoreConn *c, const char *sql, SqliteRowFunc read, void *userdata,
                           const char *types, va_list ap) {
        sqlite3_stmt *stmt;
        int r;

        r = store_conn_prepare(c, sql, &stmt);
        if (r < 0)
                return r;
        r = store_conn_bindv(c, stmt, types, ap);
        if (r < 0)
                return r;
        return sqlite_step_one(stmt, read, userdata);
}

int store_conn_query_one(StoreConn *c, const char *sql, SqliteRowFunc read, void *userdata,
                         const char *types, ...) {
        va_list ap;
        int r;

        va_start(ap, types);
        r = conn_query_onev(c, sql, read, userdata, types, ap);
        va_end(ap);
        return r;
}

int store_conn_run(StoreConn *c, const char *sql, const char *types, ...) {
        sqlite3_stmt *stmt;
        va_list ap;
        int r;

        r = store_conn_prepare(c, sql, &stmt);
        if (r < 0)
                return r;
        va_start(ap, types);
        r = store_conn_bindv(c, stmt, types, ap);
        va_end(ap);
        if (r < 0)
                return r;
        r = store_conn_step_done(c, stmt);
        if (r < 0)
                return r;
        return sqlite3_changes(c->db);
}

int store_conn_query_int64(StoreConn *c, const char *sql, int64_t *ret, const char *types, ...) {
        va_list ap;
        int r;

        assert(ret);

        *ret = 0;
        va_start(ap, types);
        r = conn_query_onev(c, sql, sqlite_row_int64, ret, types, ap);
        va_end(ap);
        return r;
}

int store_column_strdup(sqlite3_stmt *stmt, int i, char **ret) {
        return sqlite_column_strdup(stmt, i, ret);
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

int store_receipt_row(sqlite3_stmt *stmt, void *userdata) {
        return store_receipt_from_row(stmt, userdata);
}

int store_conn_get_receipt(StoreConn *c, const char *id, StoreReceipt *ret) {
        int r;

        assert(c);
        assert(id);
        assert(ret);

        r = store_conn_query_one(c, "SELECT " STORE_RECEIPT_COLUMNS " FROM receipts WHERE id = ?",
                                 store_receipt_row, ret, "t", id);
        return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

int store_conn_log_event(StoreConn *c, const char *receipt_id, const char *event, const char *details) {
        char ts[FORMAT_ISO8601_MAX];
        int r;

        assert(c);
        assert(event);

        r = store_conn_run(c,
                           "INSERT INTO buffer_events (receipt_id, event, details, created_at) "
                           "VALUES (?, ?, ?, ?)",
                           "tttt", receipt_id, event, details,
                           format_iso8601_utc(ts, sizeof ts, now(CLOCK_REALTIME)));
        return MIN(r, 0);
}

int store_conn_log_event_fields(StoreConn *c, const char *receipt_id, const char *event, const char *k1,
                                const char *v1, const char *k2, const char *v2, const char *kn, int64_t n) {
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
        if (r >= 0 && kn)
                r = json_add(o, kn, json_object_new_int64(n));
        if (r < 0)
                return r;

        details = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!details)
                return -ENOMEM;
        return store_conn_log_event(c, receipt_id, event, details);
}

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
usec_t store_receipt_created_usec(const StoreReceipt *r) {
        usec_t t;

        if (parse_created_at(r->created_at, &t) >= 0)
                return t;
        return hlc_physical_ms(r->hlc) * USEC_PER_MSEC;
}

/* The first receipt in HLC order of each status the OFD has yet to acknowledge: two lookups in
 * idx_receipts_status_hlc, cheap enough for every group commit. */
static int read_created(sqlite3_stmt *stmt, void *userdata) {
        StoreReceipt row = {
                .created_at = (char *) sqlite3_column_text(stmt, 0),
                .hlc = (uint64_t) sqlite3_column_int64(stmt, 1),
        };

        *(usec_t *) userdata = store_receipt_created_usec(&row);
        return 0;
}

static int conn_read_oldest_unsynced(StoreConn *c, usec_t *ret) {
        static const StoreStatus statuses[] = { STORE_STATUS_PENDING, STORE_STATUS_FAILED };
        usec_t oldest = 0;
        sqlite3_stmt *stmt;
        int r;

        r = store_conn_prepare(c, "SELECT created_at, hlc FROM receipts WHERE status = ? ORDER BY hlc LIMIT 1",
                               &stmt);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(statuses); i++) {
                usec_t t = 0;

                r = store_conn_bind(c, stmt, "t", store_status_to_string(statuses[i]));
                if (r < 0)
                        return r;
                r = sqlite_step_one(stmt, read_created, &t);
                if (r < 0)
                        return r;
                if (t > 0 && (oldest == 0 || t < oldest))
                        oldest = t;
        }
        *ret = oldest;
        return 0;
}

int store_conn_read_counters(StoreConn *c, unsigned capacity, StoreCounters *ret) {
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
                return store_conn_error(c, rc);

        r = conn_read_oldest_unsynced(c, &counters.oldest_unsynced);
        if (r < 0)
                return r;

        *ret = counters;
        return 0;
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

void store_receipts_free(StoreReceipt *r, size_t n) {
        for (size_t i = 0; i < n; i++)
                store_receipt_done(r + i);
        free(r);
}

