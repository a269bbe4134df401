/* SPDX-License-Identifier: MIT */
/* Owns the queue of receipts waiting for the fiscal register and the rules around a print: one at a time,
 * store the fiscal document before telling anyone, flag and retry failures, and after an unknown outcome
 * ask the register what it last printed instead of printing blindly again. */

#include <search.h>

#include "json-util.h"
#include "log.h"
#include "printer.h"
#include "sqlite-util.h"

#define PRINT_RETRY_MIN (2 * USEC_PER_SEC)
#define PRINT_RETRY_MAX (60 * USEC_PER_SEC)

typedef struct PrintJob PrintJob;
struct PrintJob {
        PrintJob *next;
        char *receipt_id;
        char *canonical;
        PrinterWaiterCallback waiter;
        void *waiter_userdata;
        bool unknown_outcome;  /* the last attempt may have printed it: check before printing again */
        char *fiscal_json;     /* printed, but storing it failed: store again, never print again */
        usec_t printed_at;
};

struct Printer {
        sd_event *event;
        Store *store;
        Device *device;

        PrintJob *head, *tail;
        void *index;           /* tsearch() tree of the queued jobs by receipt id: the queue can be long */
        PrintJob *current;     /* at the register or being stored */
        bool stopping;
        /* After a start, nothing is printed until the register said what it made last: the daemon may have
         * died between the register making a document and the store keeping it. */
        bool loading;          /* the unprinted receipts are being read from the store */
        bool recovering;       /* the register's last document is to be matched against them */
        bool querying;         /* that question is at the register */
        usec_t retry_delay;
        sd_event_source *retry_source;

        PrinterEventCallback event_cb;
        void *event_userdata;
        PrinterStats stats;
        RateLimit log_ratelimit;
};

static void printer_next(Printer *p);

static PrintJob *print_job_free(PrintJob *j) {
        if (!j)
                return NULL;
        free(j->receipt_id);
        free(j->canonical);
        free(j->fiscal_json);
        return mfree(j);
}

static int print_job_compare(const void *a, const void *b) {
        return strcmp(((const PrintJob *) a)->receipt_id, ((const PrintJob *) b)->receipt_id);
}

/* Every job in the queue is in the index too; failing to index one only makes it invisible to
 * printer_find(), which the callers' own checks tolerate. */
static void printer_index(Printer *p, PrintJob *j) {
        (void) tsearch(j, &p->index, print_job_compare);
}

static void printer_push(Printer *p, PrintJob *j) {
        printer_index(p, j);
        if (p->tail)
                p->tail->next = j;
        else
                p->head = j;
        p->tail = j;
        p->stats.queued++;
}

static PrintJob *printer_pop(Printer *p) {
        PrintJob *j = p->head;

        if (!j)
                return NULL;
        p->head = j->next;
        if (!p->head)
                p->tail = NULL;
        j->next = NULL;
        p->stats.queued--;
        (void) tdelete(j, &p->index, print_job_compare);
        return j;
}

static PrintJob *printer_find(Printer *p, const char *receipt_id) {
        if (p->current && streq(p->current->receipt_id, receipt_id))
                return p->current;
        PrintJob key = { .receipt_id = (char *) receipt_id };
        void *node = tfind(&key, &p->index, print_job_compare);

        return node ? *(PrintJob **) node : NULL;
}

static void printer_notify_waiter(Printer *p, PrintJob *j, int error, const char *fiscal_json,
                                  const char *reason) {
        PrinterWaiterCallback cb = j->waiter;

        if (!cb)
                return;
        /* A waiter hears once: it answers its client with the first outcome. */
        j->waiter = NULL;
        cb(p, j->receipt_id, error, fiscal_json, reason, j->waiter_userdata);
}

static void printer_emit(Printer *p, const char *receipt_id, const char *status, const char *reason) {
        if (p->event_cb)
                p->event_cb(p, receipt_id, status, reason, p->event_userdata);
}

static int printer_on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        printer_next(userdata);
        return 0;
}

static void printer_schedule_retry(Printer *p) {
        int r;

        p->retry_delay = p->retry_delay == 0 ? PRINT_RETRY_MIN : MIN(p->retry_delay * 2, PRINT_RETRY_MAX);
        if (!p->retry_source) {
                r = sd_event_add_time_relative(p->event, &p->retry_source, CLOCK_MONOTONIC, p->retry_delay, 0,
                                               printer_on_retry, p);
                if (r < 0) {
                        log_error_errno(r, "Failed to schedule the next print attempt: %m");
                        return;
                }
                (void) sd_event_source_set_description(p->retry_source, "printer-retry");
        } else
                (void) sd_event_source_set_time_relative(p->retry_source, p->retry_delay);
        (void) sd_event_source_set_enabled(p->retry_source, SD_EVENT_ONESHOT);
}

/* Puts the current job back at the head and tries again later: a register that failed (paper out) fails
 * the same way for the next receipt, and printing out of order would only confuse the shift. */
static void printer_retry_later(Printer *p) {
        PrintJob *j = TAKE_PTR(p->current);

        printer_index(p, j);
        j->next = p->head;
        p->head = j;
        if (!p->tail)
                p->tail = j;
        p->stats.queued++;
        printer_schedule_retry(p);
}

typedef struct MarkFailedJob {
        char *receipt_id;
        char *reason;
} MarkFailedJob;

static int mark_failed_run(StoreConn *c, void *job_data) {
        MarkFailedJob *m = job_data;
        sqlite3_stmt *stmt;
        int r;

        r = store_conn_prepare(c,
                               "UPDATE receipts SET print_status = 'print_failed', last_error = ?1, "
                               "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                               "WHERE id = ?2 AND print_status IN ('unprinted', 'print_failed')",
                               &stmt);
        if (r < 0)
                return r;
        r = store_conn_bind(c, stmt, "tt", m->reason, m->receipt_id);
        if (r < 0)
                return r;
        r = store_conn_step_done(c, stmt);
        if (r < 0)
                return r;
        return store_conn_log_event(c, m->receipt_id, "print_failed", NULL);
}

static void mark_failed_done(Store *s, int result, void *userdata) {
        MarkFailedJob *m = userdata;

        if (result < 0)
                log_warning_errno(result, "Failed to flag receipt %s as print_failed: %m", m->receipt_id);
        free(m->receipt_id);
        free(m->reason);
        free(m);
}

static void printer_flag_failed(Printer *p, PrintJob *j, const char *reason) {
        MarkFailedJob *m;

        m = new0(MarkFailedJob, 1);
        if (!m)
                return;
        m->receipt_id = strdup(j->receipt_id);
        m->reason = strdup(reason);
        if (!m->receipt_id || !m->reason || store_write(p->store, mark_failed_run, m, mark_failed_done, m) < 0)
                mark_failed_done(p->store, -ENOMEM, m);
}

static void printer_on_marked(Store *s, int result, void *userdata) {
        Printer *p = userdata;
        PrintJob *j = p->current;

        assert(j);
        /* -EALREADY: printed before (matched after an unknown outcome): the stored document stands. */
        if (result < 0 && result != -EALREADY) {
                log_error_errno(result, "Receipt %s was printed but storing its fiscal document failed, "
                                "retrying (it will not be printed again): %m", j->receipt_id);
                printer_retry_later(p);
                return;
        }

        p->stats.printed++;
        p->retry_delay = 0;
        printer_notify_waiter(p, j, 0, j->fiscal_json, NULL);
        printer_emit(p, j->receipt_id, "printed", NULL);
        print_job_free(TAKE_PTR(p->current));
        printer_next(p);
}

static void printer_store_document(Printer *p) {
        PrintJob *j = p->current;
        int r;

        r = store_mark_printed(p->store, j->receipt_id, j->fiscal_json, j->printed_at, printer_on_marked, p);
        if (r < 0) {
                log_error_errno(r, "Failed to queue the fiscal document of %s: %m", j->receipt_id);
                printer_retry_later(p);
        }
}

static int printer_keep_document(PrintJob *j, const DeviceDocument *doc) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        int r;

        r = device_document_to_json(doc, &o);
        if (r < 0)
                return r;
        free(j->fiscal_json);
        j->fiscal_json = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                          JSON_C_TO_STRING_NOSLASHESCAPE));
        if (!j->fiscal_json)
                return -ENOMEM;
        j->printed_at = doc->datetime;
        j->unknown_outcome = false;
        return 0;
}

static void printer_on_printed(Device *d, int error, DeviceFault fault, const DeviceDocument *doc,
                               void *userdata) {
        Printer *p = userdata;
        PrintJob *j = p->current;
        const char *reason;
        int r;

        assert(j);

        if (error >= 0) {
                r = printer_keep_document(j, doc);
                if (r < 0) {
                        /* The register made the document; we could not even render it. Match it later. */
                        log_error_errno(r, "Failed to render the fiscal document of %s: %m", j->receipt_id);
                        j->unknown_outcome = true;
                        printer_retry_later(p);
                        return;
                }
                printer_store_document(p);
                return;
        }

        p->stats.failed_attempts++;
        reason = device_fault_to_text(fault);
        if (fault == DEVICE_FAULT_TIMEOUT_UNKNOWN)
                j->unknown_outcome = true;
        if (ratelimit_below(&p->log_ratelimit, NULL))
                log_struct_errno(LOG_WARNING, error, NULL, LOG_FIELDS({ "RECEIPT_ID", j->receipt_id }),
                                 "Printing receipt %s failed: %s; it stays buffered and is retried.",
                                 j->receipt_id, reason);
        printer_flag_failed(p, j, reason);
        printer_notify_waiter(p, j, error, NULL, reason);
        printer_emit(p, j->receipt_id, "print_failed", reason);
        printer_retry_later(p);
}

static void printer_on_last_document(Device *d, int error, DeviceFault fault, const DeviceDocument *doc,
                                     void *userdata) {
        Printer *p = userdata;
        PrintJob *j = p->current;
        int r;

        assert(j);
        /* -ENOENT without a fault: the register has made no document at all, so not ours either. */
        if (error < 0 && !(error == -ENOENT && fault == DEVICE_FAULT_NONE)) {
                /* Without knowing what the register did, printing again could make a second document. */
                log_warning("Cannot ask the register for its last document (%s); retrying before printing %s.",
                            device_fault_to_text(fault), j->receipt_id);
                printer_retry_later(p);
                return;
        }
        if (error >= 0 && doc && streq(doc->receipt_id, j->receipt_id)) {
                log_info("Receipt %s was printed before the register's answer was lost: FD %" PRIu32 ".",
                         j->receipt_id, doc->fiscal_document_number);
                p->stats.matched_after_unknown++;
                r = printer_keep_document(j, doc);
                if (r < 0) {
                        printer_retry_later(p);
                        return;
                }
                printer_store_document(p);
                return;
        }

        /* The register's last document is another one: ours was not made. Print it now. */
        j->unknown_outcome = false;
        r = device_print(p->device, j->receipt_id, j->canonical, printer_on_printed, p);
        if (r < 0) {
                log_error_errno(r, "Failed to send receipt %s to the register: %m", j->receipt_id);
                printer_retry_later(p);
        }
}

static void printer_on_recovered(Device *d, int error, DeviceFault fault, const DeviceDocument *doc,
                                 void *userdata) {
        Printer *p = userdata;
        PrintJob *j;
        int r;

        p->querying = false;
        if (error < 0 && !(error == -ENOENT && fault == DEVICE_FAULT_NONE)) {
                if (ratelimit_below(&p->log_ratelimit, NULL))
                        log_warning("Cannot ask the register for its last document (%s); printing waits, "
                                    "since a receipt may have been printed just before the restart.",
                                    device_fault_to_text(fault));
                printer_schedule_retry(p);
                return;
        }

        p->recovering = false;
        p->retry_delay = 0;
        j = error >= 0 && doc ? printer_find(p, doc->receipt_id) : NULL;
        if (j && !j->fiscal_json) {
                r = printer_keep_document(j, doc);
                if (r < 0)
                        /* Its turn asks the register again instead of printing it. */
                        j->unknown_outcome = true;
                else {
                        log_info("Receipt %s was printed before the restart, but its fiscal document was "
                                 "not stored: FD %" PRIu32 ".", j->receipt_id, doc->fiscal_document_number);
                        p->stats.matched_after_unknown++;
                }
        }
        printer_next(p);
}

static void printer_next(Printer *p) {
        PrintJob *j;
        int r;

        if (p->current || p->stopping || p->loading || p->querying)
                return;
        if (p->retry_source && sd_event_source_get_enabled(p->retry_source, NULL) > 0)
                return; /* waiting before the next attempt */
        if (p->recovering) {
                r = device_last_document(p->device, printer_on_recovered, p);
                if (r < 0) {
                        log_error_errno(r, "Failed to ask the register for its last document: %m");
                        printer_schedule_retry(p);
                        return;
                }
                p->querying = true;
                return;
        }
        j = printer_pop(p);
        if (!j)
                return;
        p->current = j;

        if (j->fiscal_json) /* printed already; only storing it failed */
                r = store_mark_printed(p->store, j->receipt_id, j->fiscal_json, j->printed_at, printer_on_marked, p);
        else if (j->unknown_outcome)
                r = device_last_document(p->device, printer_on_last_document, p);
        else
                r = device_print(p->device, j->receipt_id, j->canonical, printer_on_printed, p);
        if (r < 0) {
                log_error_errno(r, "Failed to start printing receipt %s: %m", j->receipt_id);
                printer_retry_later(p);
        }
}

static void printer_on_late(Device *d, const char *receipt_id, int error, DeviceFault fault,
                            const DeviceDocument *doc, void *userdata) {
        /* A document that came back after its timeout: the job is flagged unknown_outcome, and the next
         * attempt asks the register for its last document, which finds this one. Only logged here. */
        if (error >= 0 && doc)
                log_info("The register finished receipt %s after its timeout: FD %" PRIu32 ".", receipt_id,
                         doc->fiscal_document_number);
}

static int print_job_new(PrintJob **ret, const char *receipt_id, const char *canonical_json) {
        PrintJob *j;

        j = new0(PrintJob, 1);
        if (!j)
                return -ENOMEM;
        j->receipt_id = strdup(receipt_id);
        j->canonical = strdup(canonical_json);
        if (!j->receipt_id || !j->canonical) {
                print_job_free(j);
                return -ENOMEM;
        }
        *ret = j;
        return 0;
}

int printer_enqueue(Printer *p, const char *receipt_id, const char *canonical_json, PrinterWaiterCallback cb,
                    void *userdata) {
        PrintJob *j;
        int r;

        if (printer_find(p, receipt_id))
                return -EEXIST;
        r = print_job_new(&j, receipt_id, canonical_json);
        if (r < 0)
                return r;
        j->waiter = cb;
        j->waiter_userdata = userdata;
        printer_push(p, j);
        printer_next(p);
        return 0;
}

void printer_forget_waiter(Printer *p, const char *receipt_id) {
        PrintJob *j = printer_find(p, receipt_id);

        if (j)
                j->waiter = NULL;
}

typedef struct LoadJob {
        char **ids;
        char **docs;
        size_t n;
} LoadJob;

static int load_run(StoreConn *c, void *job_data) {
        LoadJob *l = job_data;
        sqlite3_stmt *stmt;
        int r;

        r = store_conn_prepare(c,
                               "SELECT id, receipt_data FROM receipts WHERE status = 'pending' "
                               "AND print_status IN ('unprinted', 'print_failed') ORDER BY hlc",
                               &stmt);
        if (r < 0)
                return r;
        while ((r = sqlite3_step(stmt)) == SQLITE_ROW) {
                char **ids = reallocarray(l->ids, l->n + 1, sizeof(char *));
                char **docs;

                if (!ids)
                        return -ENOMEM;
                l->ids = ids;
                docs = reallocarray(l->docs, l->n + 1, sizeof(char *));
                if (!docs)
                        return -ENOMEM;
                l->docs = docs;
                l->ids[l->n] = strdup((const char *) sqlite3_column_text(stmt, 0));
                l->docs[l->n] = strdup((const char *) sqlite3_column_text(stmt, 1) ?: "{}");
                l->n++;
                if (!l->ids[l->n - 1] || !l->docs[l->n - 1])
                        return -ENOMEM;
        }
        return r == SQLITE_DONE ? 0 : sqlite_result_to_errno(r);
}

typedef struct LoadContext {
        Printer *printer;
        LoadJob job;
} LoadContext;

static void load_context_done(Store *s, int result, void *userdata) {
        LoadContext *ctx = userdata;
        Printer *p = ctx->printer;
        PrintJob *loaded = NULL, *last = NULL;
        unsigned n = 0;

        if (result < 0)
                log_error_errno(result, "Failed to read the receipts waiting for the register: %m");
        else if (ctx->job.n > 0)
                log_info("%zu buffered receipt(s) are not printed yet; printing them now.", ctx->job.n);
        for (size_t i = 0; i < ctx->job.n; i++) {
                PrintJob *j;

                /* In HLC order, ahead of receipts that arrived while they were being read (newer ones). */
                if (result >= 0 && ctx->job.ids[i] && ctx->job.docs[i] &&
                    !printer_find(p, ctx->job.ids[i]) &&
                    print_job_new(&j, ctx->job.ids[i], ctx->job.docs[i]) >= 0) {
                        printer_index(p, j);
                        if (last)
                                last->next = j;
                        else
                                loaded = j;
                        last = j;
                        n++;
                }
                free(ctx->job.ids[i]);
                free(ctx->job.docs[i]);
        }
        free(ctx->job.ids);
        free(ctx->job.docs);
        free(ctx);

        if (loaded) {
                last->next = p->head;
                if (!p->head)
                        p->tail = last;
                p->head = loaded;
                p->stats.queued += n;
                p->recovering = true;
        }
        p->loading = false;
        printer_next(p);
}

int printer_start(Printer *p) {
        LoadContext *ctx;
        int r;

        ctx = new0(LoadContext, 1);
        if (!ctx)
                return -ENOMEM;
        ctx->printer = p;
        p->loading = true;
        r = store_read(p->store, load_run, &ctx->job, load_context_done, ctx);
        if (r < 0) {
                p->loading = false;
                free(ctx);
                return r;
        }
        return 0;
}

int printer_new(Printer **ret, sd_event *event, Store *store, Device *device) {
        Printer *p;

        p = new0(Printer, 1);
        if (!p)
                return -ENOMEM;
        p->event = sd_event_ref(event);
        p->store = store;
        p->device = device;
        p->log_ratelimit = RATELIMIT_INIT(60 * USEC_PER_SEC, 10);
        device_set_late_callback(device, printer_on_late, p);
        *ret = p;
        return 0;
}

Printer *printer_free(Printer *p) {
        PrintJob *j;

        if (!p)
                return NULL;
        sd_event_source_disable_unref(p->retry_source);
        print_job_free(p->current);
        while ((j = printer_pop(p)))
                print_job_free(j);
        sd_event_unref(p->event);
        return mfree(p);
}

void printer_set_event_callback(Printer *p, PrinterEventCallback cb, void *userdata) {
        p->event_cb = cb;
        p->event_userdata = userdata;
}

void printer_stop(Printer *p) {
        p->stopping = true;
        if (p->retry_source)
                (void) sd_event_source_set_enabled(p->retry_source, SD_EVENT_OFF);
}

bool printer_is_idle(Printer *p) {
        return !p->current && !p->querying;
}

const PrinterStats *printer_get_stats(Printer *p) {
        return &p->stats;
}
