/* SPDX-License-Identifier: MIT */
#pragma once

/* What the pieces of the atol-web driver share: its limits, the driver's state (Atol) and its operation in
 * flight, and the functions one piece calls in another. Private to src/adapter/device-atol*.c. Dependencies
 * run one way: device-atol.c (operations, driver) -> device-atol-fiscal.c -> device-atol-transport.c ->
 * device-atol-answer.c -> device-atol-task.c -> device-atol-json.c. */

#include <inttypes.h>
#include <stdlib.h>

#include "device-atol.h"
#include "json-util.h"
#include "log.h"
#include "money.h"
#include "receipt.h"

/* The driver finishes an operation within this share of [Device] Timeout=, so that it reports what it knows
 * before the device front end gives up on it; the rest is for cancelling a request that still waits. */
#define ATOL_BUDGET_NUM 3
#define ATOL_BUDGET_DEN 4
#define ATOL_HARD_NUM 9
#define ATOL_HARD_DEN 10
#define ATOL_POLL_MIN (20 * USEC_PER_MSEC)
#define ATOL_POLL_MAX (400 * USEC_PER_MSEC)
#define ATOL_CONNECT_TIMEOUT_MAX (3 * USEC_PER_SEC)
#define ATOL_HTTP_TIMEOUT_MIN (50 * USEC_PER_MSEC)
#define ATOL_MAX_RESPONSE ((size_t) 4 * 1024 * 1024)
/* The register's wall clock as the QR string shows it, "YYYYMMDDTHHMM" (with room to spare). */
#define ATOL_LOCAL_MAX 32
/* The fiscal drive stops signing when a document has waited this long for the OFD (54-FZ art. 4.1, as the
 * emulator models it). */
#define ATOL_OFD_BLOCK_AFTER (30 * USEC_PER_DAY)

/* What the driver keeps of a receipt besides its task: enough to recognise its document in the fiscal drive
 * and to fill DeviceDocument. */
typedef struct AtolReceipt {
        ReceiptType type;
        int64_t total;
        int64_t change;
} AtolReceipt;

/* A task's status in GET /api/v2/requests/{uuid} [AWS Consts, Utils.getStatusString; the 1C client]. */
typedef enum AtolStatus {
        ATOL_STATUS_WAIT,
        ATOL_STATUS_IN_PROGRESS,
        ATOL_STATUS_READY,
        ATOL_STATUS_ERROR,
        ATOL_STATUS_INTERRUPTED, /* not run: an earlier task of the request failed (error 502) */
        ATOL_STATUS_BLOCKED,     /* outcome unknown, the queue stopped until the server resolves it */
        ATOL_STATUS_CANCELED,    /* DELETE while it still waited */
        ATOL_STATUS_UNKNOWN,
        _ATOL_STATUS_INVALID = -EINVAL,
} AtolStatus;

/* The state the register reports, gathered from one request of queries. */
typedef struct AtolState {
        DeviceStatus status;
        bool have_shift, shift_expired, paper_out, cover_open, fn_full, have_totals, have_fd;
        DeviceOfdQueue ofd;
} AtolState;
typedef struct Atol Atol;

typedef enum AtolOutcome {
        ATOL_REPLY_RESULTS,      /* the request's results (final or not: see AtolReply.final) */
        ATOL_REPLY_UNKNOWN_UUID, /* GET answered 404: the web server has no such request */
        ATOL_REPLY_REFUSED,      /* an HTTP error answer: the request was not taken (or not readable) */
        ATOL_REPLY_FAILED,       /* no answer (connection refused, timeout, reset) */
} AtolOutcome;

typedef struct AtolReply {
        AtolOutcome outcome;
        int error; /* FAILED */
        long http_status;
        bool sent;     /* our POST was handed over: the server may have taken it */
        bool final;    /* RESULTS: every task is ready, error, interrupted or canceled */
        bool all_wait; /* RESULTS: no task has started yet */
        json_object *root;
        json_object *results; /* RESULTS: the "results" array, one element per task */
        char message[128];    /* REFUSED: the server's words */
} AtolReply;

typedef void (*AtolHandler)(Atol *a, AtolReply *r);

/* What an unknown outcome turned out to be. */
typedef enum AtolVerdict {
        ATOL_MADE,
        ATOL_NOT_MADE,
        ATOL_UNDECIDED, /* the register could not be asked, or too much happened since: ask again later */
} AtolVerdict;

typedef void (*AtolVerdictHandler)(Atol *a, AtolVerdict v);

/* Which fiscal document an operation makes (and looks for). */
typedef enum AtolKind {
        ATOL_KIND_RECEIPT,
        ATOL_KIND_OPEN_SHIFT,
        ATOL_KIND_CLOSE_SHIFT,
} AtolKind;

struct Atol {
        sd_event *event;
        CurlGlue *glue;
        char *url_requests; /* <URL>/api/v2/requests */
        char *auth_header;  /* "Authorization: Basic ..."; NULL: none. Never logged. */
        usec_t timeout;
        char *cashier, *cashier_inn;

        /* What the register said about itself, for the documents. */
        char fn_number[DEVICE_FN_NUMBER_MAX + 1];
        char registration_number[DEVICE_REGISTRATION_NUMBER_MAX + 1];
        char inn[DEVICE_INN_MAX + 1];
        char serial[DEVICE_SERIAL_MAX + 1];
        uint32_t last_fd;
        bool continue_print; /* a document was closed but not fully printed: continuePrint first */

        /* The receipt seen last: its requests [0, cache_free) exist and made nothing. */
        char cache_receipt[DEVICE_RECEIPT_ID_MAX + 1];
        unsigned cache_free;

        sd_event_source *timer_source;
        sd_event_source *done_source;
        CurlRequest *http;

        /* The exchange with the web server under way. */
        char uuid[DEVICE_ATOL_UUID_MAX];
        bool poll;      /* GET until every task is final (or the budget is spent) */
        bool posted;    /* a POST of this exchange was handed over */
        bool duplicate; /* the POST met a uuid the server has (409) */
        bool accepted;  /* the POST was answered 201 */
        usec_t interval;
        AtolHandler handler;
        void (*timer_fn)(Atol *a);

        /* The operation. */
        bool busy;
        bool interrupted;
        DeviceOperation op;
        char *receipt_id, *receipt_json, *req_cashier, *req_cashier_inn;
        uint32_t req_shift;
        DeviceDriverDone done;
        void *userdata;
        DeviceResult result;
        usec_t deadline, hard_deadline; /* CLOCK_MONOTONIC */
        bool maybe_made;                /* a fiscal request of this operation may have been taken */
        void (*after_prelude)(Atol *a);

        AtolKind kind;
        AtolReceipt receipt;
        char *task;                /* the fiscal task, JSON */
        uint32_t shift;            /* the shift a shift document's uuid names */
        unsigned attempt;          /* the request (slot) of the walk */
        bool lookup_only;          /* the walk only looks for a document (Z of a closed shift) */
        json_object *last_results; /* the walk: the results of the slot before `attempt` */
        bool walk_unasked;         /* the walk failed to reach the web server at all */
        uint32_t before;           /* reconciling: the register's last document before the request */
        uint32_t rec_last;
        unsigned rec_count;
        AtolVerdictHandler on_verdict;
        json_object *found_tlv; /* reconciling: the document that is ours */
        int fail_code;          /* the ATOL error of a request that made nothing */
        char fail_message[128];
        AtolState state; /* shift operations: what the register said before */
};

/* device-atol-json.c */
json_object *atol_get_key(json_object *o, const char *key);
const char *atol_get_string(json_object *o, const char *key);
bool atol_get_int64(json_object *o, const char *key, int64_t *ret);
bool atol_get_bool(json_object *o, const char *key, bool *ret);
bool atol_get_u32(json_object *o, const char *key, uint32_t *ret);
int atol_add_string(json_object *o, const char *key, const char *s);
int atol_add_decimal(json_object *o, const char *key, int64_t v, unsigned scale);
int atol_money(json_object *v, int64_t *ret);
void atol_copy_text(char *buf, size_t l, const char *s);

/* device-atol-task.c */
int atol_base64_encode(const char *s, char **ret);
int atol_receipt_parse(const char *receipt_json, const char *cashier, const char *cashier_inn,
                       AtolReceipt *ret, char **ret_task, const char **why);
int atol_uuid_random(char ret[static DEVICE_ATOL_UUID_MAX]);
unsigned atol_taxation_bit(const char *name);

/* device-atol-answer.c */
AtolStatus atol_status(json_object *e);
bool atol_status_final(AtolStatus s);
int atol_error(json_object *e, const char **ret_description);
json_object *atol_task_result(json_object *results, size_t i);
int atol_datetime(const char *s, usec_t *ret, char *local);
int atol_fiscal_sign(json_object *v, char ret[static DEVICE_FISCAL_SIGN_LEN + 1]);
int atol_copy_id(char *buf, size_t l, json_object *v);
void atol_qr(DeviceDocument *d, const char *local);
void atol_read_query(const char *type, json_object *res, AtolState *st);
DeviceFault atol_state_condition(const AtolState *st);

/* device-atol-transport.c */
void atol_clear_op(Atol *a);
void atol_finish(Atol *a);
void atol_fail(Atol *a, int error, DeviceFault fault, const char *message);
void atol_fail_fault(Atol *a, DeviceFault fault, const char *message);
int atol_on_done(sd_event_source *s, void *userdata);
void atol_schedule(Atol *a, usec_t delay, void (*fn)(Atol *a));
int atol_on_timer(sd_event_source *s, uint64_t usec, void *userdata);
void atol_fetch(Atol *a, const char *uuid, bool poll, AtolHandler handler);
void atol_submit(Atol *a, const char *uuid, const char *tasks, AtolHandler handler);
void atol_query(Atol *a, const char *tasks, AtolHandler handler);
void atol_cancel(Atol *a, const char *uuid, AtolHandler handler);
void atol_fail_http(Atol *a, const AtolReply *r);
void atol_fail_task(Atol *a, int code, const char *description);

/* device-atol-fiscal.c */
void atol_note_fd(Atol *a, uint32_t fd);
void atol_walk_start(Atol *a, unsigned from);
