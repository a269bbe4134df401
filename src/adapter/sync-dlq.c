/* SPDX-License-Identifier: MIT */
/* The dead-letter queue as the worker's admin sees it: listing, retrying and resolving, each a store job
 * whose end is logged, counted and reported. */

#include "sync-internal.h"

static void sync_on_dlq_done(Sync *s, SyncJob *j, int result) {
        switch (j->type) {
        case SYNC_JOB_DLQ_LIST:
                if (j->list_cb)
                        j->list_cb(s, MIN(result, 0), result < 0 ? NULL : j->u.list.entries,
                                   result < 0 ? 0 : j->u.list.n_entries, j->userdata);
                break;

        case SYNC_JOB_DLQ_RETRY:
                if (result >= 0) {
                        log_struct(LOG_INFO, NULL,
                                   LOG_FIELDS(LOG_RECEIPT_STATE_FIELDS(j->u.change.receipt_id, RECEIPT_STATE_PRINTED)),
                                   "Receipt %s retried from the dead-letter queue%s%s.",
                                   j->u.change.receipt_id, j->u.change.who ? " by " : "",
                                   strempty(j->u.change.who));
                        sync_mark_counters_changed(s);
                        if (s->cbs.receipt_changed)
                                s->cbs.receipt_changed(s, j->u.change.receipt_id, STORE_STATUS_PENDING,
                                                       s->userdata);
                        if (s->breaker.state != BREAKER_OPEN)
                                (void) sync_request_pass(s);
                }
                if (j->done_cb)
                        j->done_cb(s, MIN(result, 0), j->userdata);
                break;

        case SYNC_JOB_DLQ_RESOLVE:
                if (result >= 0) {
                        log_struct(LOG_INFO, NULL,
                                   LOG_FIELDS(LOG_RECEIPT_STATE_FIELDS(j->u.change.receipt_id, RECEIPT_STATE_DEAD_LETTER)),
                                   "Dead letter of receipt %s resolved%s%s.", j->u.change.receipt_id,
                                   j->u.change.who ? " by " : "", strempty(j->u.change.who));
                        sync_mark_counters_changed(s);
                }
                if (j->done_cb)
                        j->done_cb(s, MIN(result, 0), j->userdata);
                break;

        default:
                assert(!"not a DLQ job");
        }
}

int sync_dlq_list(Sync *s, unsigned limit, bool unresolved_only, SyncDlqListCallback cb, void *userdata) {
        SyncJob *j;

        assert(s);

        j = sync_job_new(SYNC_JOB_DLQ_LIST, sync_on_dlq_done);
        if (j) {
                j->u.list.limit = limit;
                j->u.list.unresolved_only = unresolved_only;
                j->list_cb = cb;
                j->userdata = userdata;
        }
        return sync_job_queue(s, j, sync_store_dlq_list, false);
}

static int sync_dlq_change(Sync *s, SyncJobType type, const char *id, const char *note, const char *who,
                           SyncDoneCallback cb, void *userdata) {
        _cleanup_(sync_job_freep) SyncJob *j = NULL;

        assert(s);
        assert(id);

        j = sync_job_new(type, sync_on_dlq_done);
        if (!j)
                return -ENOMEM;
        j->done_cb = cb;
        j->userdata = userdata;
        j->u.change.receipt_id = strdup(id);
        if (!j->u.change.receipt_id || free_and_strdup(&j->u.change.note, note) < 0 ||
            free_and_strdup(&j->u.change.who, who) < 0)
                return -ENOMEM;

        return sync_job_queue(s, TAKE_PTR(j),
                              type == SYNC_JOB_DLQ_RETRY ? sync_store_dlq_retry : sync_store_dlq_resolve,
                              true);
}

int sync_dlq_retry(Sync *s, const char *id, const char *who, SyncDoneCallback cb, void *userdata) {
        return sync_dlq_change(s, SYNC_JOB_DLQ_RETRY, id, NULL, who, cb, userdata);
}

int sync_dlq_resolve(Sync *s, const char *id, const char *note, const char *who, SyncDoneCallback cb,
                     void *userdata) {
        return sync_dlq_change(s, SYNC_JOB_DLQ_RESOLVE, id, note, who, cb, userdata);
}

int sync_dead_letters_to_json(const SyncDeadLetter *entries, size_t n_entries, json_object **ret) {
        _cleanup_(json_object_putp) json_object *a = NULL;
        int r;

        assert(entries || n_entries == 0);
        assert(ret);

        a = json_object_new_array_ext((int) MIN(n_entries, (size_t) INT32_MAX));
        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < n_entries; i++) {
                json_object *o = NULL;

                r = sync_dead_letter_to_json(entries + i, &o);
                if (r < 0)
                        return r;
                if (json_object_array_add(a, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
        }

        *ret = TAKE_PTR(a);
        return 0;
}
