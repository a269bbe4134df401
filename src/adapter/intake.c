/* SPDX-License-Identifier: MIT */
/* Owns the path of a receipt from the request to the durable store: the key checks, validation, the set of
 * keys in flight (409), and the mapping of store outcomes to answers. */

#include <search.h>

#include "intake.h"
#include "json-util.h"
#include "list.h"
#include "log.h"
#include "message-ids.h"
#include "money.h"
#include "receipt-state.h"

#define IDEMPOTENCY_KEY_MAX 255U

/* From validation alone (a few ms) to a print wait of [Device] ResponseTimeout= (seconds). */
const usec_t intake_latency_bounds[INTAKE_LATENCY_BUCKETS] = {
        1 * USEC_PER_MSEC,   2500 /* 2.5 ms */, 5 * USEC_PER_MSEC,   10 * USEC_PER_MSEC,  25 * USEC_PER_MSEC,
        50 * USEC_PER_MSEC,  100 * USEC_PER_MSEC, 250 * USEC_PER_MSEC, 500 * USEC_PER_MSEC, 1 * USEC_PER_SEC,
        2500 * USEC_PER_MSEC, 5 * USEC_PER_SEC,   10 * USEC_PER_SEC,   30 * USEC_PER_SEC,
};

struct Intake {
        Store *store;
        ReceiptOptions options;   /* its strings are the copies below */
        char *default_cashier, *default_cashier_inn;
        void *keys_in_flight; /* tsearch() tree of char* */
        unsigned n_in_flight;
        bool shutting_down;
        IntakeStats stats;
        IntakeStoredCallback stored_cb;
        void *stored_userdata;
        RateLimit full_ratelimit;
        RateLimit error_ratelimit; /* a failing disk fails every receipt: one line each would flood */

        Printer *printer;          /* NULL: answer once durable, without printing */
        sd_event *event;
        usec_t response_timeout;   /* how long an answer waits for the print */
        struct IntakeJob *printing; /* jobs whose answer waits for the register */
        IntakeAdmissionCallback admission_cb;
        void *admission_userdata;
};

typedef struct IntakeJob {
        Intake *intake;
        char *key;
        IntakeCallback cb;
        void *userdata;

        const char *refusal;           /* static: why the register refuses new receipts now, or NULL */
        int64_t change;                /* kopecks: the cash given back, said in the answer */
        LIST_FIELDS(struct IntakeJob, printing); /* in Intake.printing while receipt_id is set */
        char *receipt_id;
        sd_event_source *timeout_source;
        usec_t started;                /* CLOCK_MONOTONIC, when intake_submit() was called */

        /* The answer, once decided: what it says, kept while it is stored with the key (a replay says the
         * same), or, when it went into the key's INSERT, from the submit on. */
        bool answer_in_insert;
        char *answer_id;
        ReceiptState answer_state;
        char *answer_message;
        char *answer_fiscal_doc;
        bool answer_replayed;
} IntakeJob;

static void intake_job_free(IntakeJob *job);

/* One answer given, `started` being when its submission came in. */
static void intake_observe(Intake *in, usec_t started) {
        usec_t v = usec_sub_unsigned(now(CLOCK_MONOTONIC), started);

        for (size_t i = 0; i < INTAKE_LATENCY_BUCKETS; i++)
                if (v <= intake_latency_bounds[i])
                        in->stats.latency.le[i]++;
        in->stats.latency.count++;
        in->stats.latency.sum = usec_add(in->stats.latency.sum, v);
}

static int key_compare(const void *a, const void *b) {
        return strcmp(a, b);
}

int intake_set_options(Intake *in, const ReceiptOptions *o) {
        _cleanup_free_ char *cashier = NULL, *inn = NULL;

        if ((o->default_cashier && !(cashier = strdup(o->default_cashier))) ||
            (o->default_cashier_inn && !(inn = strdup(o->default_cashier_inn))))
                return -ENOMEM;
        free(in->default_cashier);
        in->default_cashier = TAKE_PTR(cashier);
        free(in->default_cashier_inn);
        in->default_cashier_inn = TAKE_PTR(inn);
        in->options = *o;
        in->options.default_cashier = in->default_cashier;
        in->options.default_cashier_inn = in->default_cashier_inn;
        return 0;
}

int intake_new(Intake **ret, Store *store, const ReceiptOptions *options) {
        Intake *in;
        int r;

        in = new0(Intake, 1);
        if (!in)
                return -ENOMEM;
        in->store = store;
        r = intake_set_options(in, options);
        if (r < 0) {
                free(in);
                return r;
        }
        in->full_ratelimit = RATELIMIT_INIT(60 * USEC_PER_SEC, 1);
        in->error_ratelimit = RATELIMIT_INIT(10 * USEC_PER_SEC, 5);
        *ret = in;
        return 0;
}

static void free_key(void *p) {
        free(p);
}

Intake *intake_free(Intake *in) {
        if (!in)
                return NULL;
        /* Jobs still waiting for a print: their clients are gone with us. */
        while (in->printing)
                intake_job_free(in->printing);
        tdestroy(in->keys_in_flight, free_key);
        free(in->default_cashier);
        free(in->default_cashier_inn);
        return mfree(in);
}

void intake_set_printer(Intake *in, Printer *printer, sd_event *event, usec_t response_timeout) {
        in->printer = printer;
        in->event = event;
        in->response_timeout = response_timeout;
}

void intake_set_stored_callback(Intake *in, IntakeStoredCallback cb, void *userdata) {
        in->stored_cb = cb;
        in->stored_userdata = userdata;
}

void intake_set_admission(Intake *in, IntakeAdmissionCallback cb, void *userdata) {
        in->admission_cb = cb;
        in->admission_userdata = userdata;
}

void intake_shutdown(Intake *in) {
        in->shutting_down = true;
}

unsigned intake_in_flight(Intake *in) {
        return in->n_in_flight;
}

const IntakeStats *intake_get_stats(Intake *in) {
        return &in->stats;
}


unsigned intake_error_to_http_status(IntakeError e) {
        static const unsigned table[_INTAKE_ERROR_MAX] = {
                [INTAKE_OK] = 200,          [INTAKE_BAD_REQUEST] = 400, [INTAKE_INVALID] = 422,
                [INTAKE_KEY_MISMATCH] = 422, [INTAKE_CONFLICT] = 409,    [INTAKE_BUFFER_FULL] = 503,
                [INTAKE_DISK_FULL] = 507,   [INTAKE_UNAVAILABLE] = 503, [INTAKE_SHIFT_EXPIRED] = 409,
        };
        return e < _INTAKE_ERROR_MAX ? table[e] : 500;
}

const char *intake_error_to_bus_error(IntakeError e) {
        static const char *const table[_INTAKE_ERROR_MAX] = {
                [INTAKE_OK] = NULL,
                [INTAKE_BAD_REQUEST] = "InvalidArgument",
                [INTAKE_INVALID] = "InvalidReceipt",
                [INTAKE_KEY_MISMATCH] = "KeyMismatch",
                [INTAKE_CONFLICT] = "Conflict",
                [INTAKE_BUFFER_FULL] = "BufferFull",
                [INTAKE_DISK_FULL] = "DiskFull",
                [INTAKE_UNAVAILABLE] = "Unavailable",
                [INTAKE_SHIFT_EXPIRED] = "ShiftExpired",
        };
        return e < _INTAKE_ERROR_MAX ? table[e] : "Failed";
}

/* A stored fiscal document for an answer, with the prototype's keys (a document stored before they were
 * written lacks them); NULL text: JSON null. */
static int fiscal_doc_to_json(const char *text, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        int r;

        *ret = NULL;
        if (!text)
                return 0;
        o = json_tokener_parse(text);
        if (!o || !json_object_is_type(o, json_type_object))
                return -EBADMSG;
        r = device_document_add_prototype_keys(o);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(o);
        return 0;
}

/* The message of an answer in this state (printed, buffered, print_failed, print_rejected; any other, such
 * as _RECEIPT_STATE_INVALID: a replay of a key whose first answer is not on record); detail says why
 * printing failed. */
static int intake_answer_message(ReceiptState state, const char *detail, char **ret) {
        char *m = NULL;
        int k = 0;

        assert(ret);

        switch (state) {
        case RECEIPT_STATE_PRINTED:
                m = strdup("Receipt printed successfully"); /* the prototype's words, which its clients
                                                               compare */
                break;
        case RECEIPT_STATE_PRINT_FAILED:
                k = asprintf(&m,
                             "Printing failed (%s); the receipt is stored and will be printed when the "
                             "register is ready",
                             strna(detail));
                break;
        case RECEIPT_STATE_PRINT_REJECTED:
                k = asprintf(
                        &m,
                        "The fiscal register rejected this receipt (%s); it is stored, set aside and not "
                        "printed until an administrator retries or cancels it",
                        strna(detail));
                break;
        case RECEIPT_STATE_BUFFERED:
                m = strdup("Receipt stored durably; it will be printed and sent to the OFD");
                break;
        default:
                m = strdup("Receipt already accepted under this Idempotency-Key");
        }
        if (k < 0 || !m)
                return -ENOMEM;
        *ret = m;
        return 0;
}

int intake_reply_to_json(const IntakeReply *reply, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *fiscal = NULL;
        const StoreReceipt *r = reply->receipt;
        int k;

        assert(reply->error == INTAKE_OK && r && reply->message);

        k = fiscal_doc_to_json(r->fiscal_doc, &fiscal);
        if (k < 0)
                return k;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if (json_object_object_add(o, "status", json_object_new_string(receipt_state_to_string(receipt_state_of(r)))) < 0 ||
            json_object_object_add(o, "receipt_id", json_object_new_string(r->id)) < 0 ||
            json_object_object_add(o, "fiscal_doc", TAKE_PTR(fiscal)) < 0 ||
            json_object_object_add(o, "message", json_object_new_string(reply->message)) < 0)
                return -ENOMEM;
        if (reply->change > 0 &&
            json_object_object_add(o, "change",
                                   json_object_new_string(MONEY_FORMAT(reply->change, MONEY_SCALE_KOPECKS))) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

#define JSON_ADD(o, k, v)                                                                               \
        do {                                                                                            \
                if (json_object_object_add((o), (k), (v)) < 0)                                          \
                        return -ENOMEM;                                                                 \
        } while (0)

int intake_receipt_to_json(const StoreReceipt *r, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *doc = NULL, *fiscal = NULL, *ofd = NULL;
        char hlc[24]; /* 2^64 has 20 digits */
        int k;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if (r->receipt_data && !(doc = json_tokener_parse(r->receipt_data)))
                return -EBADMSG;
        JSON_ADD(o, "receipt_id", json_object_new_string(r->id));
        JSON_ADD(o, "status", json_object_new_string(receipt_state_to_string(receipt_state_of(r))));
        JSON_ADD(o, "buffer_status", json_object_new_string(store_status_to_string(r->status)));
        JSON_ADD(o, "print_status", json_object_new_string(store_print_status_to_string(r->print_status)));
        JSON_ADD(o, "pos_id", json_string_or_null(r->pos_id));
        JSON_ADD(o, "type", json_string_or_null(r->receipt_type));
        /* A string: stamps are above 2^53, where JavaScript's numbers lose digits. */
        snprintf(hlc, sizeof hlc, "%" PRIu64, r->hlc);
        JSON_ADD(o, "hlc", json_object_new_string(hlc));
        JSON_ADD(o, "created_at", json_string_or_null(r->created_at));
        JSON_ADD(o, "updated_at", json_string_or_null(r->updated_at));
        JSON_ADD(o, "printed_at", json_string_or_null(r->printed_at));
        JSON_ADD(o, "synced_at", json_string_or_null(r->synced_at));
        JSON_ADD(o, "next_retry_at", json_string_or_null(r->next_retry_at));
        JSON_ADD(o, "attempts", json_object_new_int64(r->attempts));
        JSON_ADD(o, "last_error", json_string_or_null(r->last_error));
        k = fiscal_doc_to_json(r->fiscal_doc, &fiscal);
        if (k < 0) {
                json_object_put(doc);
                return k;
        }
        JSON_ADD(o, "fiscal_doc", fiscal);
        if (r->ofd_response && !(ofd = json_tokener_parse(r->ofd_response)))
                ofd = json_object_new_string(r->ofd_response);
        JSON_ADD(o, "ofd_response", ofd);
        JSON_ADD(o, "receipt", doc);
        *ret = TAKE_PTR(o);
        return 0;
}

static void intake_answer(IntakeCallback cb, void *userdata, IntakeError error, const char *detail) {
        cb(&(IntakeReply) { .error = error, .detail = detail }, userdata);
}

/* A job's answer, its latency observed; the caller then frees the job. */
static void intake_job_reply(IntakeJob *job, const IntakeReply *reply) {
        job->cb(reply, job->userdata);
        intake_observe(job->intake, job->started);
}

static void intake_job_fail(IntakeJob *job, IntakeError error, const char *detail) {
        intake_job_reply(job, &(IntakeReply) { .error = error, .detail = detail });
}

/* Off the list of jobs waiting for the register, its timeout gone: nothing answers it from there now. */
static void intake_job_detach(IntakeJob *job) {
        Intake *in = job->intake;

        if (job->receipt_id) {
                LIST_REMOVE(printing, in->printing, job);
                job->receipt_id = mfree(job->receipt_id);
        }
        job->timeout_source = sd_event_source_disable_unref(job->timeout_source);
}

static void intake_job_free(IntakeJob *job) {
        Intake *in = job->intake;
        void *node;

        intake_job_detach(job);
        node = tfind(job->key, &in->keys_in_flight, key_compare);
        if (node) {
                char *stored = *(char **) node;
                tdelete(job->key, &in->keys_in_flight, key_compare);
                free(stored);
        }
        assert(in->n_in_flight > 0);
        in->n_in_flight--;
        free(job->answer_id);
        free(job->answer_message);
        free(job->answer_fiscal_doc);
        free(job->key);
        free(job);
}

/* ---- the first answer, stored with the key ---- */

/* The answer as idempotency_keys.response keeps it: {"status", "message", "fiscal_doc": true or null,
 * "change" (when any)}. Its receipt id is the key's receipt, and "fiscal_doc": true stands for the receipt's
 * fiscal document, which is never overwritten once printed. */
static int stored_answer_format(ReceiptState state, const char *message, bool fiscal_doc, int64_t change,
                                char **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        char *t;

        o = json_object_new_object();
        if (!o || json_add(o, "status", json_object_new_string(receipt_state_to_string(state))) < 0 ||
            json_add(o, "message", json_object_new_string(message)) < 0 ||
            json_object_object_add(o, "fiscal_doc", fiscal_doc ? json_object_new_boolean(true) : NULL) < 0 ||
            (change > 0 &&
             json_add(o, "change", json_object_new_string(MONEY_FORMAT(change, MONEY_SCALE_KOPECKS))) < 0))
                return -ENOMEM;
        t = strdup(
                json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        if (!t)
                return -ENOMEM;
        *ret = t;
        return 0;
}

/* Gives the answer the job holds and ends the job. */
static void intake_job_give_answer(IntakeJob *job) {
        StoreReceipt r = {
                .id = job->answer_id,
                .fiscal_doc = job->answer_fiscal_doc,
        };

        if (receipt_state_to_store(job->answer_state, &r.status, &r.print_status) < 0)
                assert(!"an answer in no state");
        intake_job_reply(job, &(IntakeReply) { .error = INTAKE_OK,
                                               .replayed = job->answer_replayed,
                                               .receipt = &r,
                                               .change = job->change,
                                               .message = job->answer_message });
        intake_job_free(job);
}

static void intake_on_answer_stored(Store *s, int result, void *userdata) {
        IntakeJob *job = userdata;

        if (result < 0 && ratelimit_below(&job->intake->error_ratelimit, NULL))
                log_warning_errno(result,
                                  "Failed to store the answer to receipt %s with its Idempotency-Key, a "
                                  "replay will answer from the receipt's state: %m",
                                  job->answer_id);
        intake_job_give_answer(job);
}

/* The answer for receipt `id` is decided: keeps it in the job, stores it with the key, and gives it once
 * that is committed (a replay after a crash then says the same). The strings are copied. */
static void intake_job_answer(IntakeJob *job, const char *id, ReceiptState state, const char *fiscal_doc,
                              const char *message, bool replayed) {
        _cleanup_free_ char *stored = NULL;
        int r;

        intake_job_detach(job);
        job->answer_state = state;
        if (!(job->answer_id = strdup(id)) || !(job->answer_message = strdup(message)) ||
            (fiscal_doc && !(job->answer_fiscal_doc = strdup(fiscal_doc)))) {
                intake_job_fail(job, INTAKE_UNAVAILABLE, "Out of memory");
                intake_job_free(job);
                return;
        }
        job->answer_replayed = replayed;

        r = stored_answer_format(state, message, fiscal_doc, job->change, &stored);
        if (r >= 0)
                r = store_set_response(job->intake->store, id, 200, stored, intake_on_answer_stored, job);
        if (r < 0)
                intake_on_answer_stored(job->intake->store, r, job);
}

/* The answer for a receipt that is durable, with the first outcome of its print, or none yet (buffered). */
static void intake_answer_printed(IntakeJob *job, const char *receipt_id, ReceiptState state,
                                  const char *fiscal_json, const char *reason) {
        _cleanup_free_ char *id = NULL, *message = NULL;

        id = strdup(receipt_id); /* the job's copy goes when it stops waiting for the register */
        if (!id || intake_answer_message(state, reason, &message) < 0) {
                intake_job_fail(job, INTAKE_UNAVAILABLE, "Out of memory");
                intake_job_free(job);
                return;
        }
        intake_job_answer(job, id, state, state == RECEIPT_STATE_PRINTED ? fiscal_json : NULL, message, false);
}

static void intake_on_printed(Printer *p, const char *receipt_id, ReceiptState state,
                              const char *fiscal_json, const char *reason, void *userdata) {
        intake_answer_printed(userdata, receipt_id, state, fiscal_json, reason);
}

static int intake_on_print_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        IntakeJob *job = userdata;

        /* The receipt is durable; the register is slow. Answer now, printing goes on. */
        printer_forget_waiter(job->intake->printer, job->receipt_id);
        intake_answer_printed(job, job->receipt_id, RECEIPT_STATE_BUFFERED, NULL, NULL);
        return 0;
}

static int intake_wait_for_print(Intake *in, IntakeJob *job, const StoreReceipt *receipt) {
        int r;

        if (in->response_timeout == 0) {
                /* Nobody waits for the print: queue it and answer now, without registering a waiter only
                 * to look it up again in the print queue to forget it. */
                r = printer_enqueue(in->printer, receipt->id, receipt->receipt_data, NULL, NULL);
                if (r < 0)
                        log_warning_errno(r, "Failed to queue %s for printing: %m", receipt->id);
                return -EAGAIN;
        }

        job->receipt_id = strdup(receipt->id);
        if (!job->receipt_id)
                return -ENOMEM;
        LIST_PREPEND(printing, in->printing, job);

        r = printer_enqueue(in->printer, receipt->id, receipt->receipt_data,
                            in->response_timeout > 0 ? intake_on_printed : NULL, job);
        /* 1 ms accuracy: the default (0 = 250 ms) would let the client wait past the promised bound. */
        if (r >= 0 && in->response_timeout > 0)
                r = sd_event_add_time_relative(in->event, &job->timeout_source, CLOCK_MONOTONIC,
                                               in->response_timeout, USEC_PER_MSEC, intake_on_print_timeout,
                                               job);
        if (r < 0 || in->response_timeout == 0) {
                if (r < 0)
                        log_warning_errno(r, "Failed to wait for the print of %s, answering now: %m", receipt->id);
                printer_forget_waiter(in->printer, receipt->id);
                /* Unlink again: the caller answers as for a store-only intake. */
                intake_job_detach(job);
                return -EAGAIN;
        }
        (void) sd_event_source_set_description(job->timeout_source, "intake-print-wait");
        return 0;
}

/* A return whose original does not allow it: 422 naming the original. */
static void intake_answer_original(IntakeJob *job, StoreSubmitOutcome outcome, const StoreReceipt *original) {
        char detail[384];

        switch (outcome) {
        case STORE_SUBMIT_ORIGINAL_UNKNOWN:
                snprintf(detail, sizeof detail, "original: no receipt with this id, Idempotency-Key or fiscal "
                         "document number");
                break;
        case STORE_SUBMIT_ORIGINAL_MISMATCH:
                snprintf(detail, sizeof detail, "original: receipt %s is a %s%s, which this return cannot refund",
                         original->id, strna(original->receipt_type),
                         original->status == STORE_STATUS_CANCELLED ? " (cancelled)" : "");
                break;
        case STORE_SUBMIT_REFUND_EXCEEDS:
                snprintf(detail, sizeof detail, "original: receipt %s was %s, %s of it returned already; %s is left to "
                         "return", original->id, MONEY_FORMAT(original->total_kopecks, MONEY_SCALE_KOPECKS),
                         MONEY_FORMAT(original->refunded_kopecks, MONEY_SCALE_KOPECKS),
                         MONEY_FORMAT(MAX(original->total_kopecks - original->refunded_kopecks, 0), MONEY_SCALE_KOPECKS));
                break;
        default:
                snprintf(detail, sizeof detail, "original: receipt %s is from 2026 or later: its returns take the "
                         "VAT it was sold with, not 20 %%", original->id);
        }
        intake_job_fail(job, INTAKE_INVALID, detail);
}

/* The same key with the same body: the first answer again, as stored with the key. A key without one (from
 * an older version, or whose first answer never went out) answers from the receipt's state, which is then
 * stored as its answer. */
static void intake_replay(IntakeJob *job, const StoreReceipt *receipt) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        _cleanup_free_ char *message = NULL;
        json_object *status, *msg, *fiscal;
        StoreStatus st;
        StorePrintStatus pst;

        if (receipt->response) {
                o = json_tokener_parse(receipt->response);
                if (o && json_object_object_get_ex(o, "status", &status) &&
                    receipt_state_to_store(receipt_state_from_string(json_object_get_string(status)), &st,
                                           &pst) >= 0 &&
                    json_object_object_get_ex(o, "message", &msg) &&
                    json_object_is_type(msg, json_type_string)) {
                        StoreReceipt r = {
                                .id = receipt->id,
                                .status = st,
                                .print_status = pst,
                                .fiscal_doc = json_object_object_get_ex(o, "fiscal_doc", &fiscal) &&
                                                              json_object_get_boolean(fiscal)
                                                      ? receipt->fiscal_doc
                                                      : NULL,
                        };

                        intake_job_reply(job, &(IntakeReply) { .error = INTAKE_OK,
                                                               .replayed = true,
                                                               .receipt = &r,
                                                               .change = job->change,
                                                               .message = json_object_get_string(msg) });
                        intake_job_free(job);
                        return;
                }
                if (ratelimit_below(&job->intake->error_ratelimit, NULL))
                        log_warning(
                                "The stored answer to receipt %s cannot be read, answering from its state.",
                                receipt->id);
        }

        if (intake_answer_message(_RECEIPT_STATE_INVALID, NULL, &message) < 0) {
                intake_job_fail(job, INTAKE_UNAVAILABLE, "Out of memory");
                intake_job_free(job);
                return;
        }
        intake_job_answer(job, receipt->id, receipt_state_of(receipt), receipt->fiscal_doc, message,
                          true);
}

static void intake_on_stored(Store *s, int error, StoreSubmitOutcome outcome, const StoreReceipt *receipt,
                             void *userdata) {
        IntakeJob *job = userdata;
        Intake *in = job->intake;
        const StoreCounters *c;
        char detail[160];

        in->stats.last_error = error < 0 ? error : 0;
        if (error == -ENOSPC) {
                in->stats.failed++;
                if (ratelimit_below(&in->error_ratelimit, NULL))
                        log_struct_errno(LOG_ERR, error, MESSAGE_ID_BUFFER_FULL, NULL,
                                         "Disk full: a receipt could not be stored: %m");
                intake_job_fail(job, INTAKE_DISK_FULL,
                              "Insufficient storage: the receipt buffer's disk is full");
        } else if (error < 0) {
                in->stats.failed++;
                if (ratelimit_below(&in->error_ratelimit, NULL))
                        log_error_errno(error, "Failed to store a receipt: %m");
                snprintf(detail, sizeof detail, "Receipt buffer unavailable: %s", strerror(-error));
                intake_job_fail(job, INTAKE_UNAVAILABLE, detail);
        } else
                switch (outcome) {
                case STORE_SUBMIT_CREATED:
                        in->stats.accepted++;
                        if (in->stored_cb)
                                in->stored_cb(receipt, in->stored_userdata);
                        if (in->printer && intake_wait_for_print(in, job, receipt) >= 0)
                                return; /* answered once printed, or when the wait is over */
                        if (job->answer_in_insert) {
                                /* Stored by the INSERT already. */
                                job->answer_id = strdup(receipt->id);
                                if (job->answer_id) {
                                        intake_job_give_answer(job);
                                        return;
                                }
                                intake_job_fail(job, INTAKE_UNAVAILABLE, "Out of memory");
                                break;
                        }
                        intake_answer_printed(job, receipt->id, RECEIPT_STATE_BUFFERED, NULL, NULL);
                        return;
                case STORE_SUBMIT_REPLAY:
                        in->stats.replayed++;
                        intake_replay(job, receipt);
                        return;
                case STORE_SUBMIT_KEY_MISMATCH:
                        in->stats.rejected_invalid++;
                        intake_job_fail(job, INTAKE_KEY_MISMATCH,
                                      "Idempotency-Key was already used with a different request body");
                        break;
                case STORE_SUBMIT_ORIGINAL_UNKNOWN:
                case STORE_SUBMIT_ORIGINAL_MISMATCH:
                case STORE_SUBMIT_REFUND_EXCEEDS:
                case STORE_SUBMIT_ORIGINAL_TOO_NEW:
                        in->stats.rejected_invalid++;
                        intake_answer_original(job, outcome, receipt);
                        break;
                case STORE_SUBMIT_REFUSED:
                        in->stats.rejected_refused++;
                        intake_job_fail(job, INTAKE_SHIFT_EXPIRED, job->refusal);
                        break;
                case STORE_SUBMIT_FULL:
                        in->stats.rejected_full++;
                        c = store_get_counters(s);
                        if (ratelimit_below(&in->full_ratelimit, NULL))
                                log_struct(LOG_WARNING, MESSAGE_ID_BUFFER_FULL, NULL,
                                           "Receipt buffer full (%" PRIu64 " pending, capacity %" PRIu64
                                           "): refusing new receipts until some are sent.",
                                           c->pending, c->capacity);
                        /* "Buffer full" and pending/capacity: the prototype's words, which its clients look
                         * for. */
                        snprintf(detail, sizeof detail,
                                 "Buffer full: %" PRIu64 "/%" PRIu64
                                 " receipts pending. Cannot accept new receipts "
                                 "until some are sent to the OFD.",
                                 c->pending, c->capacity);
                        intake_job_fail(job, INTAKE_BUFFER_FULL, detail);
                        break;
                default:
                        assert(false);
                }

        intake_job_free(job);
}

/* What a return's original must be: a sale for a refund, a purchase for a purchase_refund. */
static const char *original_type(ReceiptType t) {
        return receipt_type_settlement(t) == RECEIPT_TYPE_PURCHASE_REFUND ? "purchase" : "sale";
}

/* The instant 20 % VAT ended for new sales: 2026-01-01 00:00 local time (the register's day). */
static usec_t vat_cutoff(void) {
        struct tm tm = { .tm_year = 2026 - 1900, .tm_mon = 0, .tm_mday = 1, .tm_isdst = -1 };
        time_t t = mktime(&tm);

        return t == (time_t) -1 ? 0 : (usec_t) t * USEC_PER_SEC;
}

static bool idempotency_key_valid(const char *key) {
        size_t l = strlen(key);

        if (l == 0 || l > IDEMPOTENCY_KEY_MAX)
                return false;
        for (const char *p = key; *p; p++)
                if (*p < 0x21 || *p > 0x7e) /* visible ASCII, as a header value and a log field can carry */
                        return false;
        return true;
}

/* The key without the spaces and tabs around it (a header value's optional whitespace, RFC 9110 5.5), so
 * that " k " and "k" are one key; NULL stays NULL. */
static int idempotency_key_trim(const char *key, char **ret) {
        size_t l;

        if (!key) {
                *ret = NULL;
                return 0;
        }
        key += strspn(key, " \t");
        l = strlen(key);
        while (l > 0 && IN_SET(key[l - 1], ' ', '\t'))
                l--;
        *ret = strndup(key, l);
        return *ret ? 0 : -ENOMEM;
}

/* 0: answered before returning; 1: a job answers later (and observes its latency then). */
static int intake_submit_one(Intake *in, usec_t started, const char *idempotency_key, const char *body, size_t size,
                             IntakeCallback cb, void *userdata) {
        _cleanup_(receipt_freep) Receipt *receipt = NULL;
        _cleanup_free_ char *detail = NULL, *canonical = NULL, *as_given = NULL, *key_copy = NULL,
                            *answer = NULL;
        char fingerprint[65];
        IntakeJob *job;
        void *node;
        int r;

        if (in->shutting_down) {
                intake_answer(cb, userdata, INTAKE_UNAVAILABLE, "Shutting down; retry shortly");
                return 0;
        }
        if (isempty(idempotency_key)) {
                in->stats.rejected_invalid++;
                intake_answer(cb, userdata, INTAKE_BAD_REQUEST, "Idempotency-Key header is required");
                return 0;
        }
        if (!idempotency_key_valid(idempotency_key)) {
                in->stats.rejected_invalid++;
                intake_answer(cb, userdata, INTAKE_BAD_REQUEST,
                              "Idempotency-Key must be 1..255 visible ASCII characters");
                return 0;
        }

        r = receipt_parse_with(body, size, &in->options, &receipt, &detail);
        if (r == -EBADMSG || r == -EINVAL) {
                in->stats.rejected_invalid++;
                intake_answer(cb, userdata, r == -EBADMSG ? INTAKE_BAD_REQUEST : INTAKE_INVALID,
                              detail ?: "Invalid receipt");
                return 0;
        }
        if (r < 0)
                return r;

        /* The store keeps the receipt with the register's defaults filled in; the key is compared on the text
         * as the client gave it, so a retry still matches after [Device] Cashier= or Taxation= changed. */
        r = receipt_canonical(receipt, &canonical);
        if (r < 0)
                return r;
        r = receipt_canonical_with(receipt, RECEIPT_CANONICAL_AS_GIVEN, &as_given);
        if (r < 0)
                return r;
        r = receipt_fingerprint(as_given, fingerprint);
        if (r < 0)
                return r;

        /* The same key while its first request is still being stored (or printed): 409, as the draft says. */
        if (tfind(idempotency_key, &in->keys_in_flight, key_compare)) {
                in->stats.rejected_conflict++;
                intake_answer(cb, userdata, INTAKE_CONFLICT,
                              "A request with this Idempotency-Key is still being processed; retry shortly");
                return 0;
        }

        key_copy = strdup(idempotency_key);
        job = new0(IntakeJob, 1);
        if (!key_copy || !job) {
                free(job);
                return -ENOMEM;
        }
        job->key = strdup(idempotency_key);
        if (!job->key) {
                free(job);
                return -ENOMEM;
        }
        node = tsearch(key_copy, &in->keys_in_flight, key_compare);
        if (!node) {
                free(job->key);
                free(job);
                return -ENOMEM;
        }
        TAKE_PTR(key_copy);
        job->intake = in;
        job->cb = cb;
        job->userdata = userdata;
        job->started = started;
        job->change = receipt->change;
        /* A receipt the register would refuse anyway is said now instead of being stored to wait; a replay of
         * one accepted before still answers as it did. */
        if (in->admission_cb && in->admission_cb(in->admission_userdata, &job->refusal))
                job->refusal = job->refusal ?: "The register refuses sales now";
        else
                job->refusal = NULL;
        in->n_in_flight++;

        /* Answered once durable (no register, or nobody waits for the print): the answer is known now and
         * goes into the key's INSERT, without a write of its own. */
        if (!in->printer || in->response_timeout == 0) {
                job->answer_in_insert = true;
                job->answer_state = RECEIPT_STATE_BUFFERED;
                r = intake_answer_message(RECEIPT_STATE_BUFFERED, NULL, &job->answer_message);
                if (r >= 0)
                        r = stored_answer_format(RECEIPT_STATE_BUFFERED, job->answer_message, false,
                                                 job->change, &answer);
                if (r < 0) {
                        intake_job_free(job);
                        return r;
                }
        }

        r = store_submit_receipt(
                in->store,
                &(StoreReceiptNew){
                        .idempotency_key = idempotency_key,
                        .request_hash = fingerprint,
                        .pos_id = receipt->pos_id,
                        .type = receipt_type_to_string(receipt->type),
                        .total_kopecks = receipt->total,
                        .receipt_data = canonical,
                        .original = receipt->original,
                        .original_type = receipt->original ? original_type(receipt->type) : NULL,
                        .original_before = receipt->needs_pre2026_original ? vat_cutoff() : 0,
                        .refuse_new = job->refusal != NULL,
                        .response_status = answer ? 200 : 0,
                        .response = answer,
                },
                intake_on_stored, job);
        if (r < 0) {
                intake_job_free(job);
                return r;
        }
        return 1;
}

int intake_submit(Intake *in, const char *idempotency_key, const char *body, size_t size, IntakeCallback cb,
                  void *userdata) {
        _cleanup_free_ char *key = NULL;
        usec_t started = now(CLOCK_MONOTONIC);
        int r;

        r = idempotency_key_trim(idempotency_key, &key);
        if (r < 0)
                return r;
        r = intake_submit_one(in, started, key, body, size, cb, userdata);
        if (r == 0)
                intake_observe(in, started);
        return MIN(r, 0);
}
