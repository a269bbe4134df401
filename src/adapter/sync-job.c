/* SPDX-License-Identifier: MIT */
/* The sync worker's store jobs: each stays on its Sync's list until the store's callback hands it to the
 * piece that queued it; sync_free() detaches what is still outstanding. Also what every piece uses: the
 * counters-changed and idle notifications and the duration buckets. */

#include "sync-internal.h"

const usec_t sync_duration_bounds[SYNC_DURATION_BUCKETS] = {
        10 * USEC_PER_MSEC,  50 * USEC_PER_MSEC, 100 * USEC_PER_MSEC, 250 * USEC_PER_MSEC,
        500 * USEC_PER_MSEC, 1 * USEC_PER_SEC,   2500 * USEC_PER_MSEC, 5 * USEC_PER_SEC,
        10 * USEC_PER_SEC,   30 * USEC_PER_SEC,  60 * USEC_PER_SEC,
};

SyncJob *sync_job_new(SyncJobType type, SyncJobDoneFunc done) {
        SyncJob *j = new0(SyncJob, 1);

        if (j) {
                j->type = type;
                j->done = done;
        }
        return j;
}

SyncJob *sync_job_free(SyncJob *j) {
        if (!j)
                return NULL;

        switch (j->type) {
        case SYNC_JOB_SELECT:
                sync_store_batch_done(&j->u.batch);
                break;
        case SYNC_JOB_RECORD:
                sync_store_attempt_done(&j->u.attempt);
                break;
        case SYNC_JOB_DLQ_LIST:
                sync_store_dlq_list_done(&j->u.list);
                break;
        case SYNC_JOB_DLQ_RETRY:
        case SYNC_JOB_DLQ_RESOLVE:
                sync_store_dlq_change_done(&j->u.change);
                break;
        case SYNC_JOB_PRUNE:
                break;
        }
        return mfree(j);
}

static void sync_job_unlink(SyncJob *j) {
        Sync *s = j->sync;

        if (!s)
                return;
        LIST_REMOVE(jobs, s->jobs, j);
        j->sync = NULL;
}

void sync_jobs_detach(Sync *s) {
        SyncJob *j;

        while ((j = s->jobs)) {
                LIST_REMOVE(jobs, s->jobs, j);
                j->sync = NULL;
        }
}

static void sync_on_job_done(Store *store, int result, void *userdata) {
        _cleanup_(sync_job_freep) SyncJob *j = userdata;
        Sync *s = j->sync;

        if (!s)
                return; /* detached by sync_free() */
        sync_job_unlink(j);

        j->done(s, j, result);
        sync_check_idle(s);
}

int sync_job_queue(Sync *s, SyncJob *j, StoreJobFunc fn, bool write) {
        _cleanup_(sync_job_freep) SyncJob *job = j;
        int r;

        if (!job)
                return -ENOMEM;
        assert(job->done);

        r = (write ? store_write : store_read)(s->store, fn, &job->u, sync_on_job_done, job);
        if (r < 0)
                return r;

        job->sync = s;
        LIST_PREPEND(jobs, s->jobs, job);
        TAKE_PTR(job);
        return 0;
}

void sync_mark_counters_changed(Sync *s) {
        (void) sd_event_source_set_enabled(s->notify, SD_EVENT_ONESHOT);
}

int sync_on_notify(sd_event_source *source, void *userdata) {
        Sync *s = userdata;

        if (s->cbs.counters_changed)
                s->cbs.counters_changed(s, s->userdata);
        return 0;
}

bool sync_is_idle(Sync *s) {
        assert(s);
        return !s->jobs && s->pass.n_in_flight == 0;
}

void sync_check_idle(Sync *s) {
        if (!s->stopped || s->idle_notified || !sync_is_idle(s))
                return;
        s->idle_notified = true;
        if (s->cbs.idle)
                s->cbs.idle(s, s->userdata);
}
