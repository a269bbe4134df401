/* SPDX-License-Identifier: MIT */
#pragma once

/* What the store's tests (test-store*.c) share; see test-store-util.c. */

#include <limits.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "store.h"

typedef struct Env {
        char dir[PATH_MAX / 2];
        char path[PATH_MAX];
        sd_event *event;
} Env;

typedef struct Submitted {
        bool done;
        int error;
        StoreSubmitOutcome outcome;
        bool have_receipt;
        char id[64];
        uint64_t hlc;
        StoreStatus status;
        StorePrintStatus print_status;
        char created_at[64];
        int64_t total_kopecks;
        int64_t refunded_kopecks;
        uint32_t fiscal_document_number;
        char original_id[64];
        char receipt_type[32];
        unsigned response_status;
        char response[256];
        /* When set, the callback counts this receipt's rows through a connection of its own. */
        const char *check_path;
        int64_t rows_at_callback;
} Submitted;

typedef struct Done {
        bool done;
        int result;
} Done;

typedef struct Got {
        bool done;
        int error;
        StoreReceipt r;
} Got;

void env_setup(Env *e);
void env_teardown(Env *e);
void run_until_idle(Env *e, Store *s);
sqlite3 *db_open(const char *path);
void db_exec(const char *path, const char *sql);
int64_t db_int(const char *path, const char *sql);
char *db_text(const char *path, const char *sql);
void assert_db_text(const char *path, const char *sql, const char *expected);
void assert_plan(const char *path, const char *sql, const char *expected);
void assert_db_healthy(const char *path);
Store *store_open_ok(Env *e, unsigned capacity);
void on_submit(Store *s, int error, StoreSubmitOutcome outcome, const StoreReceipt *r, void *userdata);
void on_done(Store *s, int result, void *userdata);
char *strdup_null(const char *s);
void on_get(Store *s, int error, const StoreReceipt *r, void *userdata);
StoreReceiptNew receipt_new(const char *key, const char *hash);
void submit_ok(Env *e, Store *s, const char *key, const char *hash, Submitted *ret);
void get_receipt(Env *e, Store *s, const char *id, Got *ret);
int mark_printed_sync(Env *e, Store *s, const char *id, const char *doc);
int mark_synced_sync(Env *e, Store *s, const char *id, const char *response);
int64_t count_receipts(const char *path);
int set_print_rejected_sync(Env *e, Store *s, const char *id, const char *reason);
void cancel_sync(Env *e, Store *s, const char *id, const char *note, const char *who, Got *ret);
void sale_ok(Env *e, Store *s, const char *key, uint32_t fd, Submitted *ret);
