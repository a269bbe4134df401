/* SPDX-License-Identifier: MIT */
/* Owns the path of a receipt from the request to the durable store: the key checks, validation, the set of
 * keys in flight (409), and the mapping of store outcomes to answers. */

#include <search.h>

#include "intake.h"
#include "json-util.h"
#include "log.h"
#include "message-ids.h"
#include "money.h"

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
        struct IntakeJob *prev, *next; /* in Intake.printing */
        char *receipt_id;
        sd_event_source *timeout_source;
        usec_t started;                /* CLOCK_MONOTONIC, when intake_submit() was called */
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

const char *intake_receipt_status(const StoreReceipt *r) {
        if (r->status == STORE_STATUS_SYNCED)
                return "synced";
        if (r->status == STORE_STATUS_DLQ)
                return "dead_letter";
        if (r->status == STORE_STATUS_CANCELLED)
                return "cancelled";
        if (r->print_status == STORE_PRINT_PRINTED)
                return "printed";
        if (r->print_status == STORE_PRINT_FAILED)
                return "print_failed";
        if (r->print_status == STORE_PRINT_REJECTED)
                return "print_rejected";
        return "buffered";
}

int intake_reply_to_json(const IntakeReply *reply, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *fiscal = NULL;
        _cleanup_free_ char *failed = NULL;
        const StoreReceipt *r = reply->receipt;
        const char *status, *message;

        assert(reply->error == INTAKE_OK && r);

        if (r->fiscal_doc) {
                fiscal = json_tokener_parse(r->fiscal_doc);
                if (!fiscal)
                        return -EBADMSG;
        }
        status = intake_receipt_status(r);
        if (reply->replayed)
                message = "Receipt already accepted under this Idempotency-Key";
        else if (streq(status, "printed"))
                message = "Receipt printed and stored; it will be sent to the OFD";
        else if (streq(status, "print_failed")) {
                if (asprintf(&failed, "Printing failed (%s); the receipt is stored and will be printed when the "
                             "register is ready", strna(reply->detail)) < 0)
                        return -ENOMEM;
                message = failed;
        } else if (streq(status, "print_rejected")) {
                if (asprintf(&failed, "The fiscal register rejected this receipt (%s); it is stored, set aside and "
                             "not printed until an administrator retries or cancels it", strna(reply->detail)) < 0)
                        return -ENOMEM;
                message = failed;
        } else
                message = "Receipt stored durably; it will be printed and sent to the OFD";

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if (json_object_object_add(o, "status", json_object_new_string(status)) < 0 ||
            json_object_object_add(o, "receipt_id", json_object_new_string(r->id)) < 0 ||
            json_object_object_add(o, "fiscal_doc", TAKE_PTR(fiscal)) < 0 ||
            json_object_object_add(o, "message", json_object_new_string(message)) < 0)
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

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if (r->receipt_data && !(doc = json_tokener_parse(r->receipt_data)))
                return -EBADMSG;
        JSON_ADD(o, "receipt_id", json_object_new_string(r->id));
        JSON_ADD(o, "status", json_object_new_string(intake_receipt_status(r)));
        JSON_ADD(o, "buffer_status", json_object_new_string(store_status_to_string(r->status)));
        JSON_ADD(o, "print_status", json_object_new_string(store_print_status_to_string(r->print_status)));
        JSON_ADD(o, "pos_id", json_string_or_null(r->pos_id));
        JSON_ADD(o, "type", json_string_or_null(r->receipt_type));
        JSON_ADD(o, "hlc", json_object_new_uint64(r->hlc));
        JSON_ADD(o, "created_at", json_string_or_null(r->created_at));
        JSON_ADD(o, "updated_at", json_string_or_null(r->updated_at));
        JSON_ADD(o, "printed_at", json_string_or_null(r->printed_at));
        JSON_ADD(o, "synced_at", json_string_or_null(r->synced_at));
        JSON_ADD(o, "next_retry_at", json_string_or_null(r->next_retry_at));
        JSON_ADD(o, "attempts", json_object_new_int64(r->attempts));
        JSON_ADD(o, "last_error", json_string_or_null(r->last_error));
        if (r->fiscal_doc && !(fiscal = json_tokener_parse(r->fiscal_doc))) {
                json_object_put(doc);
                return -EBADMSG;
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

static void intake_job_free(IntakeJob *job) {
        Intake *in = job->intake;
        void *node;

        if (job->receipt_id) {
                /* It was waiting for the register: unlink it. */
                if (job->prev)
                        job->prev->next = job->next;
                else
                        in->printing = job->next;
                if (job->next)
                        job->next->prev = job->prev;
                free(job->receipt_id);
        }
        sd_event_source_disable_unref(job->timeout_source);

        node = tfind(job->key, &in->keys_in_flight, key_compare);
        if (node) {
                char *stored = *(char **) node;
                tdelete(job->key, &in->keys_in_flight, key_compare);
                free(stored);
        }
        assert(in->n_in_flight > 0);
        in->n_in_flight--;
        free(job->key);
        free(job);
}

/* The answer for a receipt that is durable, with the first outcome of its print, or none yet (NULL). */
static void intake_answer_printed(IntakeJob *job, const char *status, const char *fiscal_json, const char *reason) {
        StoreReceipt r = {
                .id = job->receipt_id,
                .status = STORE_STATUS_PENDING,
                .print_status = streq_ptr(status, "printed")          ? STORE_PRINT_PRINTED
                                : streq_ptr(status, "print_rejected") ? STORE_PRINT_REJECTED
                                : status                              ? STORE_PRINT_FAILED
                                                                      : STORE_PRINT_UNPRINTED,
                .fiscal_doc = (char *) fiscal_json,
        };

        job->cb(&(IntakeReply) { .error = INTAKE_OK, .receipt = &r, .detail = reason, .change = job->change },
                job->userdata);
        intake_observe(job->intake, job->started);
}

static void intake_on_printed(Printer *p, const char *receipt_id, const char *status, const char *fiscal_json,
                              const char *reason, void *userdata) {
        IntakeJob *job = userdata;

        intake_answer_printed(job, status, fiscal_json, reason);
        intake_job_free(job);
}

static int intake_on_print_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        IntakeJob *job = userdata;

        /* The receipt is durable; the register is slow. Answer now, printing goes on. */
        printer_forget_waiter(job->intake->printer, job->receipt_id);
        intake_answer_printed(job, NULL, NULL, NULL);
        intake_job_free(job);
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
        job->next = in->printing;
        if (in->printing)
                in->printing->prev = job;
        in->printing = job;

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
                /* Unlink again: the caller answers and frees the job as for a store-only intake. */
                in->printing = job->next;
                if (job->next)
                        job->next->prev = NULL;
                job->next = NULL;
                job->timeout_source = sd_event_source_disable_unref(job->timeout_source);
                job->receipt_id = mfree(job->receipt_id);
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
        intake_answer(job->cb, job->userdata, INTAKE_INVALID, detail);
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
                intake_answer(job->cb, job->userdata, INTAKE_DISK_FULL,
                              "Insufficient storage: the receipt buffer's disk is full");
        } else if (error < 0) {
                in->stats.failed++;
                if (ratelimit_below(&in->error_ratelimit, NULL))
                        log_error_errno(error, "Failed to store a receipt: %m");
                snprintf(detail, sizeof detail, "Receipt buffer unavailable: %s", strerror(-error));
                intake_answer(job->cb, job->userdata, INTAKE_UNAVAILABLE, detail);
        } else
                switch (outcome) {
                case STORE_SUBMIT_CREATED:
                case STORE_SUBMIT_REPLAY:
                        if (outcome == STORE_SUBMIT_CREATED) {
                                in->stats.accepted++;
                                if (in->stored_cb)
                                        in->stored_cb(receipt, in->stored_userdata);
                                if (in->printer && intake_wait_for_print(in, job, receipt) >= 0)
                                        return; /* answered once printed, or when the wait is over */
                        } else
                                in->stats.replayed++;
                        job->cb(&(IntakeReply) { .error = INTAKE_OK,
                                                 .replayed = outcome == STORE_SUBMIT_REPLAY,
                                                 .receipt = receipt,
                                                 .change = job->change },
                                job->userdata);
                        break;
                case STORE_SUBMIT_KEY_MISMATCH:
                        in->stats.rejected_invalid++;
                        intake_answer(job->cb, job->userdata, INTAKE_KEY_MISMATCH,
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
                        intake_answer(job->cb, job->userdata, INTAKE_SHIFT_EXPIRED, job->refusal);
                        break;
                case STORE_SUBMIT_FULL:
                        in->stats.rejected_full++;
                        c = store_get_counters(s);
                        if (ratelimit_below(&in->full_ratelimit, NULL))
                                log_struct(LOG_WARNING, MESSAGE_ID_BUFFER_FULL, NULL,
                                           "Receipt buffer full (%" PRIu64 " pending, capacity %" PRIu64
                                           "): refusing new receipts until some are sent.",
                                           c->pending, c->capacity);
                        snprintf(detail, sizeof detail,
                                 "Receipt buffer full: %" PRIu64 " receipts pending, capacity %" PRIu64, c->pending,
                                 c->capacity);
                        intake_answer(job->cb, job->userdata, INTAKE_BUFFER_FULL, detail);
                        break;
                default:
                        assert(false);
                }

        intake_observe(in, job->started);
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
        _cleanup_free_ char *detail = NULL, *canonical = NULL, *as_given = NULL, *key_copy = NULL;
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

        r = store_submit_receipt(in->store,
                                 &(StoreReceiptNew) {
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
