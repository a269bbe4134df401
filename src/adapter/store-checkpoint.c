/* SPDX-License-Identifier: MIT */
/* The WAL's way back into the database file: the checkpointer's thread and connection, and the writer's
 * WAL hook that asks it for rounds or, when the WAL has grown too far, checkpoints on the writer itself. */

#include <limits.h>

#include "log.h"
#include "sqlite-util.h"
#include "store-internal.h"

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
int store_writer_on_wal_commit(void *userdata, sqlite3 *db, const char *name, int n_frames) {
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

int store_checkpointer_start(Checkpointer *k, Store *s) {
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
                 store_synchronous_to_string(s->options.synchronous));
        r = sqlite3_exec(db, sql, NULL, NULL, NULL);
        if (r != SQLITE_OK)
                return sqlite_result_to_errno(r) ?: -EIO;

        r = store_thread_start(&k->thread, checkpointer_main, k, "store-checkpt");
        if (r < 0)
                return r;
        k->thread_started = true;
        return 0;
}

void store_checkpointer_stop(Checkpointer *k) {
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
void store_checkpointer_done(Checkpointer *k) {
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

