/* SPDX-License-Identifier: MIT */
/* The store's two workers: the jobs and the queues that carry them between the loop and a thread (a
 * hand-off per loop iteration, the thread's queue, the done list), the threads themselves, group commit on
 * the writer (one transaction per batch, a savepoint per job) and the reader's batches, and the callbacks
 * that run on the loop once a worker is done. */

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "store-internal.h"

/* What one pass of a worker hands back to the loop besides the jobs. */
typedef struct GroupResult {
        bool committed;
        size_t n_jobs;
        StoreCounters counters;
} GroupResult;

void job_reset_output(Job *j) {
        store_receipt_done(&j->receipt);
        j->have_receipt = false;
        store_receipts_free(j->receipts, j->n_receipts);
        j->receipts = NULL;
        j->n_receipts = 0;
}

Job *job_free(Job *j) {
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

static int writer_run_job(StoreConn *c, Job *j) {
        int r;

        r = store_conn_exec(c, "SAVEPOINT job");
        if (r < 0)
                return r;

        r = j->run ? j->run(c, j) : j->fn(c, j->job_data);
        store_conn_reset_busy(c);

        if (r >= 0) {
                int q = store_conn_exec(c, "RELEASE job");
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
        LIST_FOREACH(queue, j, batch)
                ret->n_jobs++;

        r = store_conn_exec(c, "BEGIN IMMEDIATE");
        if (r < 0)
                goto fail;

        LIST_FOREACH(queue, j, batch) {
                size_t mark = key_index_mark(s->keys);

                r = writer_run_job(c, j);
                j->result = r;
                if (r >= 0)
                        continue;

                job_reset_output(j);
                if (sqlite3_get_autocommit(c->db))
                        goto fail; /* SQLite rolled the whole transaction back (disk full, I/O error) */
                key_index_rollback(s->keys, mark);
                r = store_conn_exec(c, "ROLLBACK TO job");
                if (r >= 0)
                        r = store_conn_exec(c, "RELEASE job");
                if (r < 0)
                        goto fail;
        }

        r = store_conn_read_counters(c, s->options.capacity, &ret->counters);
        if (r < 0)
                goto fail;
        r = store_conn_exec(c, "COMMIT");
        if (r < 0)
                goto fail;

        key_index_commit(s->keys);
        s->hlc_persisted = s->hlc_written;
        ret->committed = true;
        return;

fail:
        store_conn_reset_busy(c);
        if (!sqlite3_get_autocommit(c->db))
                (void) store_conn_exec(c, "ROLLBACK");
        key_index_rollback(s->keys, 0);
        s->hlc_written = s->hlc_persisted;
        LIST_FOREACH(queue, j, batch) {
                j->result = r;
                job_reset_output(j);
        }
}

/* ---- jobs on the reader ---- */

static int reader_run_job(StoreConn *c, Job *j) {
        int r, q;

        if (j->run) /* one statement: one snapshot */
                return j->run(c, j);

        r = store_conn_exec(c, "BEGIN");
        if (r < 0)
                return r;
        r = j->fn(c, j->job_data);
        store_conn_reset_busy(c);
        q = store_conn_exec(c, r < 0 ? "ROLLBACK" : "COMMIT");
        return r < 0 ? r : (q < 0 ? q : r);
}

static void reader_run_batch(Worker *w, Job *batch) {
        LIST_FOREACH(queue, j, batch) {
                j->result = reader_run_job(&w->conn, j);
                store_conn_reset_busy(&w->conn);
        }
}

/* ---- worker threads ---- */

static void *worker_main(void *userdata) {
        Worker *w = userdata;

        for (;;) {
                GroupResult g = {};
                Job *batch = NULL, *batch_tail = NULL;

                pthread_mutex_lock(&w->lock);
                while (!w->queue_head && !w->quit)
                        pthread_cond_wait(&w->cond, &w->lock);
                /* Everything queued so far: what arrives while this runs (and syncs) waits for the next. */
                LIST_JOIN(queue, batch, batch_tail, w->queue_head, w->queue_tail);
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
                LIST_JOIN(queue, w->done_head, w->done_tail, batch, batch_tail);
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
void store_worker_dispatch(Worker *w) {
        Store *s = w->store;
        Job *list = NULL, *list_tail = NULL;

        pthread_mutex_lock(&w->lock);
        LIST_JOIN(queue, list, list_tail, w->done_head, w->done_tail);
        if (w->is_writer) {
                if (w->have_counters)
                        s->counters = w->counters;
                s->stats = w->stats;
        }
        pthread_mutex_unlock(&w->lock);

        if (!list)
                return;

        for (;;) {
                _cleanup_(job_freep) Job *j = LIST_POP(queue, list, list_tail);

                if (!j)
                        break;
                assert(s->n_outstanding > 0);
                s->n_outstanding--;
                job_complete(s, j);
        }

        if (s->n_outstanding == 0 && s->idle_cb && !s->shutting_down)
                s->idle_cb(s, s->idle_userdata);
}

/* Hands the jobs queued on the loop to the thread, waking it once for all of them. */
static void worker_handoff(Worker *w) {
        if (!w->handoff_head)
                return;

        pthread_mutex_lock(&w->lock);
        LIST_JOIN(queue, w->queue_head, w->queue_tail, w->handoff_head, w->handoff_tail);
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
        store_worker_dispatch(w);
        return 0;
}

int store_worker_init(Worker *w, Store *s, bool is_writer) {
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

int store_thread_start(pthread_t *ret, void *(*fn)(void *), void *arg, const char *name) {
        sigset_t all, saved;
        int r;

        /* The thread inherits a mask with every signal blocked: signals are the loop's (signalfd). */
        sigfillset(&all);
        r = pthread_sigmask(SIG_SETMASK, &all, &saved);
        if (r != 0)
                return -r;
        r = pthread_create(ret, NULL, fn, arg);
        (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r != 0)
                return -r;
        (void) pthread_setname_np(*ret, name);
        return 0;
}

int store_worker_start(Worker *w) {
        int r;

        r = store_thread_start(&w->thread, worker_main, w, w->is_writer ? "store-writer" : "store-reader");
        if (r < 0)
                return r;
        w->thread_started = true;
        return 0;
}

void store_worker_stop(Worker *w) {
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

void store_worker_done(Worker *w) {
        Store *s = w->store;

        if (!w->lock_initialized)
                return;

        /* Only when the thread never ran: its queue could not be worked off. */
        worker_handoff(w);
        for (;;) {
                _cleanup_(job_freep) Job *j = LIST_POP(queue, w->queue_head, w->queue_tail);

                if (!j)
                        break;
                j->result = -ECANCELED;
                s->n_outstanding--;
                job_complete(s, j);
        }

        w->event_source = sd_event_source_disable_unref(w->event_source);
        w->handoff_source = sd_event_source_disable_unref(w->handoff_source);
        w->event_fd = safe_close(w->event_fd);
        store_conn_close(&w->conn);
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        w->lock_initialized = false;
}

int store_enqueue(Store *s, Worker *w, Job *j) {
        if (s->shutting_down)
                return -ESHUTDOWN;

        LIST_APPEND(queue, w->handoff_head, w->handoff_tail, j);
        s->n_outstanding++;

        if (sd_event_source_set_enabled(w->handoff_source, SD_EVENT_ONESHOT) < 0)
                worker_handoff(w); /* no batching then, but no job left behind either */
        return 0;
}

int store_queue_receipt_job(Store *s, Worker *w, JobType type, JobRunFunc run, const char *id,
                            const char *note, const char *who, StoreGetCallback cb, void *userdata) {
        _cleanup_(job_freep) Job *j = NULL;
        int r;

        j = new0(Job, 1);
        if (!j)
                return -ENOMEM;
        *j = (Job) {
                .type = type,
                .run = run,
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

