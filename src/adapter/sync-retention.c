/* SPDX-License-Identifier: MIT */
/* Buffer retention: synced receipts, resolved dead letters and the buffer events of what was pruned go, in
 * transactions of SYNC_RETENTION_BATCH rows, one store job at a time, daily and on demand. */

#include <inttypes.h>

#include "sync-internal.h"

static void sync_on_pruned(Sync *s, SyncJob *j, int result);

static void sync_retention_finish(Sync *s, int error) {
        SyncRetention *t = &s->retention;
        SyncRetentionCallback cb = t->cb;
        void *userdata = t->userdata;
        SyncRetentionStats stats = t->stats;

        t->running = false;
        t->cb = NULL;
        t->userdata = NULL;

        if (error < 0)
                log_warning_errno(error, "Buffer retention stopped early: %m");
        if (stats.synced + stats.dead_letters + stats.dlq_rows + stats.events > 0) {
                log_info("Buffer retention pruned %" PRIu64 " synced receipts, %" PRIu64 " dead-lettered "
                         "receipts, %" PRIu64 " resolved dead letters and %" PRIu64 " buffer events.",
                         stats.synced, stats.dead_letters, stats.dlq_rows, stats.events);
                sync_mark_counters_changed(s);
        }

        if (cb)
                cb(s, error, &stats, userdata);
}

/* Queues the next step: 0 queued, 1 nothing left, < 0 error. */
static int sync_retention_queue(Sync *s) {
        static const StoreJobFunc step_func[_SYNC_RETENTION_STEP_MAX] = {
                [SYNC_RETENTION_SYNCED] = sync_store_prune_synced,
                [SYNC_RETENTION_DEAD_LETTERS] = sync_store_prune_dead_letters,
                [SYNC_RETENTION_DLQ_ROWS] = sync_store_prune_dlq_rows,
                [SYNC_RETENTION_EVENTS] = sync_store_prune_events,
        };
        SyncRetention *t = &s->retention;
        SyncJob *j;
        int r;

        /* A period of "infinity" keeps everything of its kind. */
        while (t->step < _SYNC_RETENTION_STEP_MAX &&
               ((t->step == SYNC_RETENTION_SYNCED && t->synced_cutoff == 0) ||
                (IN_SET(t->step, SYNC_RETENTION_DEAD_LETTERS, SYNC_RETENTION_DLQ_ROWS) &&
                 t->dead_letter_cutoff == 0)))
                t->step++;
        if (t->step >= _SYNC_RETENTION_STEP_MAX)
                return 1;

        j = sync_job_new(SYNC_JOB_PRUNE, sync_on_pruned);
        if (j) {
                j->step = t->step;
                j->u.prune = (SyncStorePrune) {
                        .cutoff =
                                t->step == SYNC_RETENTION_SYNCED ? t->synced_cutoff : t->dead_letter_cutoff,
                        .limit = t->step == SYNC_RETENTION_EVENTS ? 4 * SYNC_RETENTION_BATCH
                                                                  : SYNC_RETENTION_BATCH,
                        .cursor = t->event_cursor,
                };
        }
        r = sync_job_queue(s, j, step_func[t->step], true);
        return r < 0 ? r : 0;
}

static void sync_on_pruned(Sync *s, SyncJob *j, int result) {
        SyncRetention *t = &s->retention;
        int r;

        if (result < 0) {
                sync_retention_finish(s, result);
                return;
        }

        switch (j->step) {
        case SYNC_RETENTION_SYNCED:
                t->stats.synced += j->u.prune.n_deleted;
                break;
        case SYNC_RETENTION_DEAD_LETTERS:
                t->stats.dead_letters += j->u.prune.n_deleted;
                break;
        case SYNC_RETENTION_DLQ_ROWS:
                t->stats.dlq_rows += j->u.prune.n_deleted;
                break;
        case SYNC_RETENTION_EVENTS:
                t->stats.events += j->u.prune.n_deleted;
                t->event_cursor = j->u.prune.cursor;
                break;
        default:
                assert(!"bad retention step");
        }

        if ((unsigned) result < j->u.prune.limit)
                t->step++;
        if (s->stopped) {
                sync_retention_finish(s, -ECANCELED);
                return;
        }
        r = sync_retention_queue(s);
        if (r != 0)
                sync_retention_finish(s, MIN(r, 0));
}

int sync_run_retention(Sync *s, SyncRetentionCallback cb, void *userdata) {
        SyncRetention *t = &s->retention;
        usec_t real = now(CLOCK_REALTIME);
        int r;

        assert(s);

        if (t->running)
                return -EBUSY;

        *t = (SyncRetention) {
                .running = true,
                .cb = cb,
                .userdata = userdata,
                /* 0 means "keep": also what a period longer than the epoch gives. */
                .synced_cutoff = s->options.synced_retention == USEC_INFINITY
                                         ? 0
                                         : usec_sub_unsigned(real, s->options.synced_retention),
                .dead_letter_cutoff = s->options.dead_letter_retention == USEC_INFINITY
                                              ? 0
                                              : usec_sub_unsigned(real, s->options.dead_letter_retention),
        };

        /* The events step always runs, so something is queued and cb runs from the loop, never here. */
        r = sync_retention_queue(s);
        assert(r <= 0);
        if (r < 0) {
                *t = (SyncRetention) {};
                return r;
        }
        return 0;
}

int sync_on_retention_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        Sync *s = userdata;
        int r;

        r = sd_event_source_set_time(source, usec_add(now(CLOCK_MONOTONIC), s->options.retention_interval));
        if (r >= 0)
                r = sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
        if (r < 0)
                log_error_errno(r, "Failed to schedule the next buffer retention run: %m");

        if (!s->retention.running) {
                r = sync_run_retention(s, NULL, NULL);
                if (r < 0)
                        log_warning_errno(r, "Failed to start buffer retention: %m");
        }
        return 0;
}
