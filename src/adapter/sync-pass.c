/* SPDX-License-Identifier: MIT */
/* One pass of the sync worker: the batch read from the store, the sends it lets out (as many at once as
 * allowed, while the breaker and the OFD's Retry-After let them), the recording of every answer, the end of
 * the pass with its stats, and the manual syncs waiting for it. */

#include "string-table.h"
#include "sync-internal.h"

static const char *const sync_pass_result_table[_SYNC_PASS_RESULT_MAX] = {
        [SYNC_PASS_OK] = "ok",
        [SYNC_PASS_NOTHING] = "nothing_to_send",
        [SYNC_PASS_FAILURES] = "failures",
        [SYNC_PASS_CIRCUIT_OPEN] = "circuit_open",
        [SYNC_PASS_HELD] = "held",
        [SYNC_PASS_ERROR] = "error",
        [SYNC_PASS_STOPPED] = "stopped",
};

DEFINE_STRING_TABLE_LOOKUP_TO_STRING(sync_pass_result, SyncPassResult, )

static void sync_pump(Sync *s);
static void sync_on_recorded(Sync *s, SyncJob *j, int result);
static void sync_on_selected(Sync *s, SyncJob *j, int result);

void sync_pass_release(Sync *s) {
        SyncPass *p = &s->pass;

        if (p->sends)
                for (size_t i = 0; i < p->batch.n_items; i++)
                        p->sends[i].request = curl_request_free(p->sends[i].request);
        p->sends = mfree(p->sends);
        sync_store_batch_done(&p->batch);
}

static void sync_waiter_unlink(SyncWaiter *w) {
        LIST_REMOVE(waiters, w->sync->waiters, w);
}

SyncWaiter *sync_waiter_free(SyncWaiter *w) {
        if (!w)
                return NULL;
        sync_waiter_unlink(w);
        return mfree(w);
}

/* Tells the waiters for passes up to `last` (stats: that pass's), or with error, those for `first` and
 * later. One at a time from the head: a callback may free other waiters or add new ones. */
void sync_notify_waiters(Sync *s, int error, uint64_t first, uint64_t last,
                                const SyncPassStats *stats) {
        for (;;) {
                SyncWaiter *w;

                for (w = s->waiters; w; w = w->waiters_next)
                        if (error < 0 ? w->pass >= first : w->pass <= last)
                                break;
                if (!w)
                        return;
                sync_waiter_unlink(w);
                w->cb(s, error, error < 0 ? NULL : stats, w->userdata);
                free(w);
        }
}

static void sync_pass_finish(Sync *s) {
        SyncPass *p = &s->pass;
        SyncPassStats *st = &p->stats;
        usec_t earliest_retry;
        bool more;

        /* A pass that read nothing learnt nothing about retries: what the last one knew still holds. */
        earliest_retry = p->did_read ? MIN(p->earliest_retry, p->next_due) : s->earliest_retry;

        st->finished = now(CLOCK_REALTIME);
        st->duration = usec_sub_unsigned(now(CLOCK_MONOTONIC), p->started);
        if (p->forced >= 0)
                st->result = p->forced;
        else if (st->selected == 0)
                st->result = SYNC_PASS_NOTHING;
        else if (st->retried > 0 || st->dead_lettered > 0 || p->record_errors > 0 || p->next < st->selected)
                st->result = SYNC_PASS_FAILURES;
        else
                st->result = SYNC_PASS_OK;

        if (IN_SET(st->result, SYNC_PASS_OK, SYNC_PASS_NOTHING))
                s->last_sync = st->finished;
        if (st->sent > 0)
                sync_histogram_observe(&s->metrics.pass_duration, st->duration);

        /* Progress with a full batch means more is waiting (without progress, going again at once would
         * spin on whatever kept the batch from moving); a Retry-After held receipts back until it ends. */
        more = (st->selected >= s->options.batch_size && st->synced + st->dead_lettered > 0 &&
                !p->stop_sending && st->result != SYNC_PASS_ERROR) ||
               p->held || st->result == SYNC_PASS_HELD;

        s->last_pass = *st;
        s->have_last_pass = true;
        s->earliest_retry = earliest_retry;
        sync_pass_release(s);
        p->running = false;

        log_debug("OFD sync pass: %s, %u selected, %u sent, %u synced, %u retried, %u dead-lettered.",
                  sync_pass_result_to_string(st->result), st->selected, st->sent, st->synced, st->retried,
                  st->dead_lettered);

        sync_schedule_next(s, more, earliest_retry);

        if (s->cbs.pass_finished)
                s->cbs.pass_finished(s, &s->last_pass, s->userdata);
        sync_notify_waiters(s, 0, 0, s->metrics.passes, &s->last_pass);
}

static void sync_pass_maybe_finish(Sync *s) {
        SyncPass *p = &s->pass;

        /* Called after every attempt to send more: with nothing in flight and nothing being recorded, no
         * event is left that could move the pass on. */
        if (!p->running || p->reading || p->n_in_flight > 0 || p->n_recording > 0)
                return;
        sync_pass_finish(s);
}

static void sync_record(Sync *s, SyncJob *j) {
        const char *id = j ? j->u.attempt.id : NULL;
        int r;

        if (j)
                j->done = sync_on_recorded;
        r = sync_job_queue(s, j, sync_store_record_attempt, true);
        if (r < 0) {
                /* Lost only in memory: the receipt stays pending and goes again next time. */
                s->pass.record_errors++;
                if (ratelimit_below(&s->log_ratelimit, NULL))
                        log_warning_errno(r, "Failed to queue the result of sending receipt %s: %m",
                                          strna(id));
                return;
        }
        s->pass.n_recording++;
}

static void sync_on_response(CurlRequest *req, int error, long http_status, const char *body,
                             size_t body_size, void *userdata) {
        SyncSend *send = userdata;
        Sync *s = send->sync;
        SyncPass *p = &s->pass;
        SyncStoreItem *item = p->batch.items + send->index;
        usec_t n = now(CLOCK_MONOTONIC);
        BreakerState old;
        SyncVerdict v;
        SyncJob *j;

        assert(req == send->request);

        j = sync_ofd_answer(s, send, item, n, error, http_status, body, body_size, &v);

        send->request = curl_request_free(send->request);
        assert(p->n_in_flight > 0);
        p->n_in_flight--;

        old = s->breaker.state;
        (void) breaker_record(&s->breaker, &send->permit, v.breaker_success, n);
        sync_breaker_changed(s, old, v.reason, false);

        if (j)
                sync_record(s, j);
        else {
                p->record_errors++;
                log_oom();
        }

        sync_pump(s); /* may finish the pass: send and item are gone afterwards */
        sync_check_idle(s);
}

static int sync_send(Sync *s, size_t index) {
        SyncPass *p = &s->pass;
        SyncSend *send = p->sends + index;
        int r;

        send->index = index;
        r = sync_ofd_send(s, send, p->batch.items + index, sync_on_response);
        if (r < 0)
                return r;
        p->n_in_flight++;
        p->stats.sent++;
        s->metrics.sent++;
        return 0;
}

static void sync_pump(Sync *s) {
        SyncPass *p = &s->pass;

        if (!p->running || p->reading)
                return;

        while (!p->stop_sending && p->next < p->batch.n_items && p->n_in_flight < s->options.max_in_flight) {
                SyncStoreItem *item = p->batch.items + p->next;
                usec_t n = now(CLOCK_MONOTONIC);
                BreakerState old;
                bool allowed;
                int r;

                if (!s->started) {
                        p->stop_sending = true;
                        if (p->forced < 0)
                                p->forced = SYNC_PASS_STOPPED;
                        break;
                }

                if (item->error) {
                        /* Nothing that could be sent: not the OFD's failure, and not getting better. */
                        p->next++;
                        sync_record(s,
                                    sync_record_job_new(item->id, SYNC_STORE_ACTION_PERMANENT, item->error));
                        continue;
                }

                if (s->hold_until > n) {
                        p->stop_sending = p->held = true;
                        if (p->stats.sent == 0 && p->forced < 0)
                                p->forced = SYNC_PASS_HELD;
                        break;
                }

                old = s->breaker.state;
                allowed = breaker_allow(&s->breaker, n, &p->sends[p->next].permit);
                sync_breaker_changed(s, old, NULL, false);
                if (!allowed) {
                        /* Half-open with its trial sends out: their results decide, wait for them. */
                        if (s->breaker.state == BREAKER_OPEN) {
                                p->stop_sending = true;
                                if (p->stats.sent == 0 && p->forced < 0)
                                        p->forced = SYNC_PASS_CIRCUIT_OPEN;
                        }
                        break;
                }

                r = sync_send(s, p->next);
                if (r < 0) {
                        breaker_release(&s->breaker, &p->sends[p->next].permit);
                        if (r == -EINVAL) {
                                /* The glue refuses a header with a line break: this receipt's id. */
                                p->next++;
                                sync_record(s, sync_record_job_new(item->id, SYNC_STORE_ACTION_PERMANENT,
                                                                   "the receipt id cannot be sent as an "
                                                                   "Idempotency-Key"));
                                continue;
                        }
                        if (ratelimit_below(&s->log_ratelimit, NULL))
                                log_warning_errno(r, "Failed to start sending receipt %s: %m", item->id);
                        p->record_errors++;
                        p->stop_sending = true;
                        break;
                }
                p->next++;
        }

        sync_pass_maybe_finish(s);
}

static void sync_pass_start(Sync *s) {
        SyncPass *p = &s->pass;
        usec_t n = now(CLOCK_MONOTONIC);
        BreakerState old;
        SyncJob *j;
        int r;

        assert(!p->running);

        *p = (SyncPass) {
                .running = true,
                .forced = _SYNC_PASS_RESULT_INVALID,
                .started = n,
                .earliest_retry = USEC_INFINITY,
                .next_due = USEC_INFINITY,
                .stats.started = now(CLOCK_REALTIME),
        };
        s->pass_requested = false;
        s->next_pass = 0;
        s->last_pass_start = n;
        s->metrics.passes++;

        old = s->breaker.state;
        (void) breaker_update(&s->breaker, n);
        sync_breaker_changed(s, old, NULL, false);

        if (s->breaker.state == BREAKER_OPEN) {
                /* Nothing goes out and nothing is counted against the receipts. */
                p->forced = SYNC_PASS_CIRCUIT_OPEN;
                sync_pass_finish(s);
                return;
        }
        if (s->hold_until > n) {
                p->forced = SYNC_PASS_HELD;
                sync_pass_finish(s);
                return;
        }

        j = sync_job_new(SYNC_JOB_SELECT, sync_on_selected);
        if (j) {
                j->u.batch.limit = s->options.batch_size;
                j->u.batch.now = usec_add(now(CLOCK_REALTIME), SYNC_DUE_SLACK_USEC);
        }
        r = sync_job_queue(s, j, sync_store_select_batch, false);
        if (r < 0) {
                if (ratelimit_below(&s->log_ratelimit, NULL))
                        log_warning_errno(r, "Failed to queue the OFD sync pass's read of the buffer: %m");
                p->forced = SYNC_PASS_ERROR;
                sync_pass_finish(s);
                return;
        }
        p->reading = true;
}

static void sync_on_selected(Sync *s, SyncJob *j, int result) {
        SyncPass *p = &s->pass;

        assert(p->running && p->reading);
        p->reading = false;

        if (result < 0) {
                if (ratelimit_below(&s->log_ratelimit, NULL))
                        log_warning_errno(result, "Failed to read the buffer for an OFD sync pass: %m");
                p->forced = SYNC_PASS_ERROR;
                sync_pass_maybe_finish(s);
                return;
        }

        p->did_read = true;
        p->batch = j->u.batch;
        j->u.batch = (SyncStoreBatch) {};
        p->stats.selected = (unsigned) p->batch.n_items;
        p->next_due = sync_realtime_to_monotonic(p->batch.next_due);

        if (p->batch.n_items > 0) {
                p->sends = new0(SyncSend, p->batch.n_items);
                if (!p->sends) {
                        log_oom();
                        p->forced = SYNC_PASS_ERROR;
                        p->stop_sending = true;
                }
        }
        sync_pump(s);
}

static void sync_on_recorded(Sync *s, SyncJob *j, int result) {
        SyncPass *p = &s->pass;
        SyncStoreAttempt *a = &j->u.attempt;
        unsigned suppressed = 0;

        assert(p->running);
        assert(p->n_recording > 0);
        p->n_recording--;

        if (result < 0) {
                p->record_errors++;
                if (ratelimit_below(&s->log_ratelimit, NULL))
                        log_warning_errno(result, "Failed to record the result for receipt %s: %m", a->id);
                sync_pump(s);
                return;
        }

        switch (a->recorded) {
        case SYNC_STORE_RECORDED_SYNCED:
                p->stats.synced++;
                s->metrics.synced++;
                if (a->duplicate) {
                        p->stats.duplicates++;
                        s->metrics.duplicates++;
                }
                if (s->cbs.receipt_changed)
                        s->cbs.receipt_changed(s, a->id, STORE_STATUS_SYNCED, s->userdata);
                break;

        case SYNC_STORE_RECORDED_RETRY:
                p->stats.retried++;
                if (j->unknown)
                        p->stats.unknown++;
                s->metrics.failed_attempts++;
                p->earliest_retry = MIN(p->earliest_retry, j->due);
                break;

        case SYNC_STORE_RECORDED_DEAD_LETTERED:
                p->stats.dead_lettered++;
                s->metrics.dead_lettered++;
                s->metrics.failed_attempts++;
                if (ratelimit_below(&s->dead_ratelimit, &suppressed))
                        log_struct(LOG_WARNING, MESSAGE_ID_DEAD_LETTERED,
                                   LOG_FIELDS(LOG_RECEIPT_STATE_FIELDS(a->id, RECEIPT_STATE_DEAD_LETTER),
                                              { "DLQ_REASON", a->dead_reason }),
                                   "Receipt %s moved to the dead-letter queue after %u attempt%s: %s%s",
                                   a->id, a->attempts, a->attempts == 1 ? "" : "s", strna(a->dead_reason),
                                   suppressed > 0 ? " (Earlier messages were suppressed.)" : "");
                if (s->cbs.dead_lettered)
                        s->cbs.dead_lettered(s, a->id, strempty(a->dead_reason), s->userdata);
                if (s->cbs.receipt_changed)
                        s->cbs.receipt_changed(s, a->id, STORE_STATUS_DLQ, s->userdata);
                break;

        case SYNC_STORE_RECORDED_SKIPPED:
                p->stats.skipped++;
                break;

        default:
                assert(!"bad recorded value");
        }

        sync_mark_counters_changed(s);
        sync_pump(s);
}

int sync_on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        Sync *s = userdata;

        s->next_pass = 0;
        if (!s->started || s->pass.running) {
                s->pass_requested = false;
                return 0;
        }
        sync_pass_start(s);
        return 0;
}
