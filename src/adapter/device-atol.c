/* SPDX-License-Identifier: MIT */
/* The atol-web driver: our receipts and shift documents as ATOL JSON tasks for ATOL's web server, the
 * request queue (POST /api/v2/requests, GET /api/v2/requests/{uuid}, DELETE for a request still waiting) on
 * the loop through curl-glue, the reading of the register's answers (fiscal parameters, status, documents
 * from its fiscal drive), and the decision after an unknown outcome: the web server's record of our uuid
 * first, the register's own documents after the number noted before the request second, never a guess.
 *
 * Sources, cited at each mapping below with these keys (see also the man page's ATOL WEB SERVER section):
 *   [KSL]  ExLuzZziVo/KKTServiceLib, KKTServiceLib.Atol/Types: a typed C# model of ATOL's JSON tasks written
 *          "in accordance with documentation version 10.10.7.0";
 *   [NAR]  pbardov/node-atol-rpc, src/types: a typed TypeScript model of the same tasks;
 *   [AWS]  ArchDemons/atolwebserver (develop): a reconstruction of ATOL's web server on libfptr10
 *          (JsonTaskServlet: the request queue; workers/DriverWorker: execution, blocking, recovery);
 *   [ERR]  the LIBFPTR_ERROR_* codes as ATOL's libfptr10.py and KKTServiceLib's KKTErrorType.cs both number
 *          them (identical for every code used here);
 *   [SMP]  ATOL's sample code for an unknown document state (checkDocumentClosed, cancelReceipt,
 *          continuePrint), reproduced with its comments in several clients;
 *   [OFDC] ofdcomparer's DTO10Helper (PyPI): getFnStatus and getFnDocument as ATOL's test tooling uses them.
 * ATOL's own web-server chapter could not be read; where only one source or none says a thing, the comment
 * says "assumption".
 *
 * This file holds the operations (status, reports, shift documents, receipts, the prelude before each) and
 * the DeviceDriver; the task building is device-atol-task.c, the answers device-atol-answer.c, the exchange
 * with the web server device-atol-transport.c, the fiscal requests and their reconciliation
 * device-atol-fiscal.c. */

#include "device-atol-internal.h"
#include "memory-util.h"

static void atol_start_prelude(Atol *a);

/* ---- the operations ---- */

/* {"name": ..., "vatin": ...} of a report or shift document: the request's cashier, else the default. */
static int operator_json(Atol *a, json_object *task) {
        const char *name = a->req_cashier ?: a->cashier,
                   *inn = a->req_cashier ? a->req_cashier_inn : a->cashier_inn;
        _cleanup_(json_object_putp) json_object *op = NULL;
        int r;

        if (isempty(name))
                return 0;
        op = json_object_new_object();
        if (!op)
                return -ENOMEM;
        if ((r = atol_add_string(op, "name", name)) < 0 ||
            (!isempty(inn) && (r = atol_add_string(op, "vatin", inn)) < 0))
                return r;
        return json_add(task, "operator", TAKE_PTR(op));
}

/* {"type": type, "operator": {...}} as text. */
static int simple_task(Atol *a, const char *type, char **ret) {
        _cleanup_(json_object_putp) json_object *t = json_object_new_object();
        int r;

        if (!t)
                return -ENOMEM;
        if ((r = atol_add_string(t, "type", type)) < 0 || (r = operator_json(a, t)) < 0)
                return r;
        *ret = strdup(
                json_object_to_json_string_ext(t, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        return *ret ? 0 : -ENOMEM;
}

static int tasks_text(const char *const *types, size_t n, const char *tail, char **ret) {
        size_t l = 3 + (tail ? strlen(tail) + 1 : 0);
        char *s, *p;

        for (size_t i = 0; i < n; i++)
                l += strlen(types[i]) + 12;
        s = p = malloc(l);
        if (!s)
                return -ENOMEM;
        *p++ = '[';
        for (size_t i = 0; i < n; i++)
                p += sprintf(p, "%s{\"type\":\"%s\"}", i > 0 ? "," : "", types[i]);
        if (tail)
                p += sprintf(p, "%s%s", n > 0 ? "," : "", tail);
        strcpy(p, "]");
        *ret = s;
        return 0;
}

/* Reads a request of queries; returns the index of the first task that failed (its error in *ret_code),
 * or -1 when all are ready. */
static int read_state(Atol *a, json_object *results, const char *const *types, size_t n, AtolState *st,
                      int *ret_code, const char **ret_description) {
        int failed = -1;

        *st = (AtolState){};
        for (size_t i = 0; i < n && i < json_object_array_length(results); i++) {
                json_object *e = json_object_array_get_idx(results, i);

                if (atol_status(e) != ATOL_STATUS_READY) {
                        if (failed < 0) {
                                failed = (int) i;
                                *ret_code = atol_error(e, ret_description);
                        }
                        continue;
                }
                atol_read_query(types[i], atol_get_key(e, "result"), st);
        }
        st->status.condition = atol_state_condition(st);
        /* What the documents need later. */
        if (!isempty(st->status.fn_number))
                strcpy(a->fn_number, st->status.fn_number);
        if (!isempty(st->status.registration_number))
                strcpy(a->registration_number, st->status.registration_number);
        if (!isempty(st->status.inn))
                strcpy(a->inn, st->status.inn);
        if (!isempty(st->status.serial))
                strcpy(a->serial, st->status.serial);
        if (st->have_fd)
                atol_note_fd(a, st->status.last_fiscal_document);
        return failed;
}

/* A request of queries that could not be read in full: its fault. */
static bool query_failed(Atol *a, AtolReply *r) {
        if (r->outcome != ATOL_REPLY_RESULTS) {
                atol_fail_http(a, r);
                return true;
        }
        if (!r->final) {
                atol_fail_fault(a, DEVICE_FAULT_NOT_CONNECTED,
                                "the ATOL web server's queue does not move (blocked or busy)");
                return true;
        }
        return false;
}

/* OPEN, STATUS: getShiftStatus, getFnStatus, getDeviceStatus, getShiftTotals, getFnInfo, ofdExchangeStatus,
 * getDeviceInfo, getRegistrationInfo in one request (queries may share one; only fiscal tasks may not [AWS
 * JsonTaskServlet: "Too many fiscal sub-tasks"]), the most needed first: after a failed task the rest are
 * interrupted [AWS DriverWorker]. */
static const char *const status_types[] = {
        "getShiftStatus", "getFnStatus",       "getDeviceStatus", "getShiftTotals",
        "getFnInfo",      "ofdExchangeStatus", "getDeviceInfo",   "getRegistrationInfo",
};

static void status_on_reply(Atol *a, AtolReply *r) {
        const char *desc = NULL;
        AtolState st;
        int code = 0, failed;

        if (query_failed(a, r))
                return;
        failed = read_state(a, r->results, status_types, ELEMENTSOF(status_types), &st, &code, &desc);
        if (failed == 0) {
                atol_fail_task(a, code, desc);
                return;
        }
        if (failed > 0)
                log_debug("atol-web: %s failed (%d: %s); its part of the status stays unknown.",
                          status_types[failed], code, strna(desc));
        if (!st.have_totals)
                st.status.shift_totals = (DeviceTotals){};
        /* The documents the drive holds are its document numbers so far; its capacity is not reported. */
        st.status.fn_documents = st.status.last_fiscal_document;
        a->result.status = st.status;
        a->result.have_status = true;
        atol_finish(a);
}

static void op_status(Atol *a) {
        _cleanup_free_ char *tasks = NULL;
        int r;

        r = tasks_text(status_types, ELEMENTSOF(status_types), NULL, &tasks);
        if (r < 0) {
                atol_fail(a, r, DEVICE_FAULT_ERROR, NULL);
                return;
        }
        atol_query(a, tasks, status_on_reply);
}

/* REPORT_X: the shift's figures, then reportX (not a fiscal document [KSL: Operations/NonFiscal; AWS does
 * not count it as fiscal]). */
static const char *const report_x_types[] = { "getShiftStatus", "getShiftTotals", "getFnStatus",
                                              "ofdExchangeStatus" };

static void report_x_on_reply(Atol *a, AtolReply *r) {
        DeviceReport *rep = &a->result.report;
        const char *desc = NULL;
        AtolState st;
        int code = 0, failed;

        if (query_failed(a, r))
                return;
        failed = read_state(a, r->results, report_x_types, ELEMENTSOF(report_x_types), &st, &code, &desc);
        if (failed >= 0 || atol_status(json_object_array_get_idx(r->results, ELEMENTSOF(report_x_types))) !=
                                   ATOL_STATUS_READY) {
                if (failed < 0)
                        code = atol_error(json_object_array_get_idx(r->results, ELEMENTSOF(report_x_types)),
                                          &desc);
                atol_fail_task(a, code, desc);
                return;
        }
        *rep = (DeviceReport){
                .type = DEVICE_REPORT_X,
                .shift_open = st.status.shift_open,
                .shift_number = st.status.shift_number,
                .shift_open_usec = st.status.shift_open ? st.status.shift_open_usec : 0,
                .datetime = now(CLOCK_REALTIME) / USEC_PER_SEC * USEC_PER_SEC,
                .last_fiscal_document = st.status.last_fiscal_document,
                .totals = st.status.shift_open ? st.status.shift_totals : (DeviceTotals){},
                .ofd = st.ofd,
        };
        atol_finish(a);
}

static void op_report_x(Atol *a) {
        _cleanup_free_ char *x = NULL, *tasks = NULL;
        int r;

        r = simple_task(a, "reportX", &x);
        if (r >= 0)
                r = tasks_text(report_x_types, ELEMENTSOF(report_x_types), x, &tasks);
        if (r < 0) {
                atol_fail(a, r, DEVICE_FAULT_ERROR, NULL);
                return;
        }
        atol_query(a, tasks, report_x_on_reply);
}

/* OPEN_SHIFT: the shift's state and the fiscal drive first (its number and the next shift's name the
 * uuid), then openShift [KSL OpenShiftOperation; NAR]. */
static const char *const shift_types[] = { "getShiftStatus", "getFnStatus", "getFnInfo", "getShiftTotals",
                                           "ofdExchangeStatus" };

static bool shift_state(Atol *a, AtolReply *r) {
        const char *desc = NULL;
        int code = 0, failed;

        if (query_failed(a, r))
                return false;
        failed = read_state(a, r->results, shift_types, ELEMENTSOF(shift_types), &a->state, &code, &desc);
        if (failed == 0 || failed == 1) {
                atol_fail_task(a, code, desc);
                return false;
        }
        return true;
}

static void open_shift_on_state(Atol *a, AtolReply *r) {
        const DeviceStatus *s = &a->state.status;
        int k;

        if (!shift_state(a, r))
                return;
        if (s->shift_open) {
                a->result.report = (DeviceReport){
                        .type = DEVICE_REPORT_OPEN,
                        .shift_open = true,
                        .shift_number = s->shift_number,
                        .shift_open_usec = s->shift_open_usec,
                        .last_fiscal_document = s->last_fiscal_document,
                };
                atol_fail(a, -EALREADY, DEVICE_FAULT_NONE, NULL);
                return;
        }
        a->kind = ATOL_KIND_OPEN_SHIFT;
        a->shift = s->shift_number + 1;
        k = simple_task(a, "openShift", &a->task);
        if (k < 0) {
                atol_fail(a, k, DEVICE_FAULT_ERROR, NULL);
                return;
        }
        atol_walk_start(a, 0);
}

static void op_open_shift(Atol *a) {
        _cleanup_free_ char *tasks = NULL;
        int r;

        r = tasks_text(shift_types, 3, NULL, &tasks);
        if (r < 0) {
                atol_fail(a, r, DEVICE_FAULT_ERROR, NULL);
                return;
        }
        atol_query(a, tasks, open_shift_on_state);
}

/* CLOSE_SHIFT, idempotent per shift: a shift closed already is answered with -EALREADY and, where our own
 * request for its Z is still at the web server, that Z's figures; never a second closeShift. */
static void close_shift_on_state(Atol *a, AtolReply *r) {
        const DeviceStatus *s = &a->state.status;
        uint32_t target;
        int k;

        if (!shift_state(a, r))
                return;
        target = a->req_shift != 0 ? a->req_shift : s->shift_number;
        if (target == 0 || target > s->shift_number) {
                atol_fail(a, -ENOENT, DEVICE_FAULT_NONE, NULL);
                return;
        }
        a->kind = ATOL_KIND_CLOSE_SHIFT;
        a->shift = target;
        if (!s->shift_open || target != s->shift_number) {
                a->result.report = (DeviceReport){
                        .type = DEVICE_REPORT_Z,
                        .shift_number = target,
                        .last_fiscal_document = s->last_fiscal_document,
                };
                a->result.error = -EALREADY;
                a->result.fault = DEVICE_FAULT_NONE;
                a->lookup_only = true;
                atol_walk_start(a, 0);
                return;
        }
        k = simple_task(a, "closeShift", &a->task);
        if (k < 0) {
                atol_fail(a, k, DEVICE_FAULT_ERROR, NULL);
                return;
        }
        atol_walk_start(a, 0);
}

static void op_close_shift(Atol *a) {
        _cleanup_free_ char *tasks = NULL;
        int r;

        r = tasks_text(shift_types, ELEMENTSOF(shift_types), NULL, &tasks);
        if (r < 0) {
                atol_fail(a, r, DEVICE_FAULT_ERROR, NULL);
                return;
        }
        atol_query(a, tasks, close_shift_on_state);
}

/* PRINT and FIND: the walk over the receipt's requests decides; PRINT posts a new one only when every
 * earlier one certainly made nothing. */
static void op_receipt(Atol *a) {
        const char *why = NULL;
        unsigned from = 0;
        int r;

        a->kind = ATOL_KIND_RECEIPT;
        r = atol_receipt_parse(a->receipt_json, a->cashier, a->cashier_inn, &a->receipt,
                               a->op == DEVICE_OP_PRINT ? &a->task : NULL, &why);
        if (r == -ENOMEM) {
                atol_fail(a, r, DEVICE_FAULT_ERROR, NULL);
                return;
        }
        if (r < 0) {
                if (a->op == DEVICE_OP_PRINT) {
                        char m[128];

                        snprintf(m, sizeof m, "receipt not mappable to an ATOL task: %s", strna(why));
                        atol_fail(a, -EINVAL, DEVICE_FAULT_REJECTED, m);
                        return;
                }
                /* FIND still finds by uuid; a receipt we cannot read was never printed by us. */
                a->receipt = (AtolReceipt){ .type = _RECEIPT_TYPE_INVALID };
        }
        if (streq(a->cache_receipt, a->receipt_id))
                from = a->cache_free;
        atol_walk_start(a, from);
}

static void prelude_on_reply(Atol *a, AtolReply *r) {
        const char *desc = NULL;

        if (r->outcome == ATOL_REPLY_RESULTS && r->final &&
            atol_status(json_object_array_get_idx(r->results, 0)) == ATOL_STATUS_READY) {
                a->continue_print = false;
                log_info("atol-web: the interrupted document was printed to the end (continuePrint).");
        } else if (r->outcome == ATOL_REPLY_RESULTS && r->final) {
                int code = atol_error(json_object_array_get_idx(r->results, 0), &desc);

                /* Nothing to continue (or paper still out): the register says so and prints nothing. */
                log_warning("atol-web: continuePrint failed (%d: %s).", code, strna(desc));
                if (device_atol_error_fault(code, NULL) != DEVICE_FAULT_PAPER_OUT &&
                    device_atol_error_fault(code, NULL) != DEVICE_FAULT_COVER_OPEN)
                        a->continue_print = false;
        }
        a->after_prelude(a);
}

/* A document left unprinted is printed to the end before anything else [SMP: "можно сразу вызвать метод
 * допечатывания документа"]; its failure does not stop the operation. */
static void atol_start_prelude(Atol *a) {
        if (!a->continue_print || IN_SET(a->op, DEVICE_OP_STATUS, DEVICE_OP_FIND)) {
                a->after_prelude(a);
                return;
        }
        atol_query(a, "[{\"type\":\"continuePrint\"}]", prelude_on_reply);
}

/* ---- the driver ---- */

static void atol_free_state(Atol *a) {
        if (!a)
                return;
        a->http = curl_request_free(a->http);
        a->timer_source = sd_event_source_disable_unref(a->timer_source);
        a->done_source = sd_event_source_disable_unref(a->done_source);
        atol_clear_op(a);
        sd_event_unref(a->event);
        free(a->url_requests);
        erase_and_free(a->auth_header);
        free(a->cashier);
        free(a->cashier_inn);
        free(a);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(Atol *, atol_free_state);

static int atol_create(void **ret_state, const DeviceContext *ctx, const DeviceOptions *o) {
        _cleanup_(atol_free_statep) Atol *a = NULL;
        const char *url = o->url ?: DEVICE_ATOL_URL_DEFAULT;
        size_t l;
        int r;

        assert(ret_state);
        assert(ctx);

        if (!ctx->glue || !ctx->event)
                return -EINVAL;
        if (!startswith(url, "http://") && !startswith(url, "https://"))
                return -EINVAL;

        a = new0(Atol, 1);
        if (!a)
                return -ENOMEM;
        a->event = sd_event_ref(ctx->event);
        a->glue = ctx->glue;
        a->timeout = o->timeout ?: DEVICE_TIMEOUT_DEFAULT;

        l = strlen(url);
        while (l > 0 && url[l - 1] == '/')
                l--;
        if (asprintf(&a->url_requests, "%.*s/api/v2/requests", (int) l, url) < 0)
                return -ENOMEM;
        if ((o->cashier && !(a->cashier = strdup(o->cashier))) ||
            (o->cashier_inn && !(a->cashier_inn = strdup(o->cashier_inn))))
                return -ENOMEM;
        if (!isempty(o->token)) {
                /* The web server's optional HTTP Basic authentication [the 1C client's HTTPConnection(host,
                 * port, login, password); a Node agent's ATOL_USE_AUTH]; the credential is "login:password".
                 */
                _cleanup_(erase_and_freep) char *b64 = NULL;

                if (!strchr(o->token, ':'))
                        return -EINVAL;
                r = atol_base64_encode(o->token, &b64);
                if (r < 0)
                        return r;
                if (asprintf(&a->auth_header, "Authorization: Basic %s", b64) < 0)
                        return -ENOMEM;
        }

        r = sd_event_add_time(a->event, &a->timer_source, CLOCK_MONOTONIC, USEC_INFINITY, USEC_PER_MSEC,
                              atol_on_timer, a);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(a->timer_source, "atol-web-poll");
        r = sd_event_source_set_enabled(a->timer_source, SD_EVENT_OFF);
        if (r < 0)
                return r;
        r = sd_event_add_defer(a->event, &a->done_source, atol_on_done, a);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(a->done_source, "atol-web-done");
        r = sd_event_source_set_enabled(a->done_source, SD_EVENT_OFF);
        if (r < 0)
                return r;

        *ret_state = TAKE_PTR(a);
        return 0;
}

static int strdup_maybe(const char *s, char **ret) {
        *ret = NULL;
        if (!s)
                return 0;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static int atol_start(void *state, const DeviceRequest *req, DeviceDriverDone done, void *userdata) {
        Atol *a = state;
        usec_t n = now(CLOCK_MONOTONIC);

        assert(a);
        assert(req);
        assert(done);

        if (a->busy)
                return -EBUSY;
        if (IN_SET(req->op, DEVICE_OP_PRINT, DEVICE_OP_FIND) &&
            (isempty(req->receipt_id) || !req->receipt_json ||
             strlen(req->receipt_id) > DEVICE_RECEIPT_ID_MAX))
                return -EINVAL;
        if (strdup_maybe(req->receipt_id, &a->receipt_id) < 0 ||
            strdup_maybe(req->receipt_json, &a->receipt_json) < 0 ||
            strdup_maybe(req->cashier, &a->req_cashier) < 0 ||
            strdup_maybe(req->cashier_inn, &a->req_cashier_inn) < 0) {
                atol_clear_op(a);
                return -ENOMEM;
        }

        a->busy = true;
        a->interrupted = false;
        a->op = req->op;
        a->req_shift = req->shift_number;
        a->done = done;
        a->userdata = userdata;
        a->result = (DeviceResult){};
        a->deadline = n + a->timeout / ATOL_BUDGET_DEN * ATOL_BUDGET_NUM;
        a->hard_deadline = n + a->timeout / ATOL_HARD_DEN * ATOL_HARD_NUM;
        a->maybe_made = false;
        a->lookup_only = false;
        a->kind = ATOL_KIND_RECEIPT;
        a->receipt = (AtolReceipt){ .type = _RECEIPT_TYPE_INVALID };
        a->fail_code = 0;
        a->fail_message[0] = 0;

        switch (req->op) {
        case DEVICE_OP_OPEN:
        case DEVICE_OP_STATUS:
                a->after_prelude = op_status;
                break;
        case DEVICE_OP_PRINT:
        case DEVICE_OP_FIND:
                a->after_prelude = op_receipt;
                break;
        case DEVICE_OP_OPEN_SHIFT:
                a->after_prelude = op_open_shift;
                break;
        case DEVICE_OP_REPORT_X:
                a->after_prelude = op_report_x;
                break;
        case DEVICE_OP_CLOSE_SHIFT:
                a->after_prelude = op_close_shift;
                break;
        default:
                atol_fail(a, -EOPNOTSUPP, DEVICE_FAULT_NONE, NULL);
                return 0;
        }
        atol_start_prelude(a);
        return 0;
}

static void atol_interrupt(void *state) {
        Atol *a = state;

        if (!a->busy)
                return;
        /* Waits are cut short; an HTTP request in flight ends within its own timeout. */
        a->interrupted = true;
        a->deadline = a->hard_deadline = now(CLOCK_MONOTONIC);
        if (a->timer_fn)
                atol_schedule(a, 0, a->timer_fn);
}

static void atol_free(void *state) {
        Atol *a = state;

        if (!a)
                return;
        if (a->busy) {
                DeviceDriverDone done = a->done;
                void *u = a->userdata;
                DeviceResult result = a->result;

                /* Nothing can be waited for here: what is in flight is dropped. A fiscal request that may
                 * have been taken leaves an unknown outcome, which FIND decides later. */
                a->http = curl_request_free(a->http);
                (void) sd_event_source_set_enabled(a->timer_source, SD_EVENT_OFF);
                if (sd_event_source_get_enabled(a->done_source, NULL) <= 0) {
                        result = (DeviceResult){
                                .error = -ECANCELED,
                                .fault = a->maybe_made ? DEVICE_FAULT_TIMEOUT_UNKNOWN : DEVICE_FAULT_NONE,
                        };
                }
                atol_clear_op(a);
                done(&result, u);
        }
        atol_free_state(a);
}

const DeviceDriver device_atol_driver = {
        .name = "atol-web",
        .create = atol_create,
        .start = atol_start,
        .interrupt = atol_interrupt,
        .free = atol_free,
};
