/* SPDX-License-Identifier: MIT */
/* The atol-web driver's exchange with the web server on the loop: finishing an operation (once, from a
 * defer source), its deadlines and poll timer, and the request queue over curl-glue: POST a request, GET its
 * result until final, DELETE a request that still waits, and the HTTP and task failures as faults. */

#include "device-atol-internal.h"

static usec_t atol_left(Atol *a, bool hard) {
        usec_t n = now(CLOCK_MONOTONIC), d = hard ? a->hard_deadline : a->deadline;

        return d > n ? d - n : 0;
}

/* ---- finishing an operation ---- */

void atol_clear_op(Atol *a) {
        a->receipt_id = mfree(a->receipt_id);
        a->receipt_json = mfree(a->receipt_json);
        a->req_cashier = mfree(a->req_cashier);
        a->req_cashier_inn = mfree(a->req_cashier_inn);
        a->task = mfree(a->task);
        if (a->last_results) {
                json_object_put(a->last_results);
                a->last_results = NULL;
        }
        if (a->found_tlv) {
                json_object_put(a->found_tlv);
                a->found_tlv = NULL;
        }
        a->busy = false;
}

/* done() runs from a defer source: never from inside start(), never twice. */
void atol_finish(Atol *a) {
        int r;

        (void) sd_event_source_set_enabled(a->timer_source, SD_EVENT_OFF);
        r = sd_event_source_set_enabled(a->done_source, SD_EVENT_ONESHOT);
        if (r < 0)
                log_error_errno(r, "atol-web: failed to schedule the end of an operation: %m");
}

void atol_fail(Atol *a, int error, DeviceFault fault, const char *message) {
        a->result.error = error;
        a->result.fault = fault;
        atol_copy_text(a->result.message, sizeof a->result.message, message);
        atol_finish(a);
}

void atol_fail_fault(Atol *a, DeviceFault fault, const char *message) {
        atol_fail(a, device_fault_to_errno(fault), fault, message);
}

int atol_on_done(sd_event_source *s, void *userdata) {
        Atol *a = userdata;
        DeviceDriverDone done = a->done;
        void *u = a->userdata;
        DeviceResult result = a->result;

        assert(a->busy);
        atol_clear_op(a);
        if (result.error < 0)
                log_debug("atol-web: %s failed: %s (%s) %s", device_operation_to_string(a->op),
                          strerror(-result.error), strna(device_fault_to_string(result.fault)),
                          result.message);
        done(&result, u);
        return 0;
}

/* ---- the exchange with the web server ---- */

void atol_schedule(Atol *a, usec_t delay, void (*fn)(Atol *a)) {
        int r;

        a->timer_fn = fn;
        r = sd_event_source_set_time_relative(a->timer_source, delay);
        if (r >= 0)
                r = sd_event_source_set_enabled(a->timer_source, SD_EVENT_ONESHOT);
        if (r < 0) {
                log_error_errno(r, "atol-web: failed to arm a timer: %m");
                atol_fail(a, r, DEVICE_FAULT_ERROR, NULL);
        }
}

int atol_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Atol *a = userdata;
        void (*fn)(Atol * a) = a->timer_fn;

        a->timer_fn = NULL;
        if (fn)
                fn(a);
        return 0;
}

static void atol_reply(Atol *a, AtolReply *r) {
        AtolHandler h = a->handler;

        a->handler = NULL;
        r->sent = r->sent || a->posted;
        h(a, r);
        json_object_put(r->root);
}

static void atol_reply_simple(Atol *a, AtolOutcome outcome, int error, long status, const char *message) {
        AtolReply r = { .outcome = outcome, .error = error, .http_status = status };

        atol_copy_text(r.message, sizeof r.message, message);
        atol_reply(a, &r);
}

/* The server's words from an error answer: {"error": {"code", "description"}} or a text body. */
static void http_message(const char *body, char *buf, size_t l) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        const char *d = NULL;

        buf[0] = 0;
        if (isempty(body))
                return;
        o = json_tokener_parse(body);
        if (o) {
                (void) atol_error(o, &d);
                if (!d)
                        d = atol_get_string(o, "description") ?: atol_get_string(o, "message");
        }
        atol_copy_text(buf, l, d ?: (o ? NULL : body));
}

typedef void (*CurlDone)(CurlRequest *req, int error, long status, const char *body, size_t size,
                         void *userdata);

static int atol_http(Atol *a, const char *method, const char *url, const char *body, bool hard,
                     CurlDone cb) {
        const char *headers[] = { a->auth_header, NULL };
        usec_t left = MAX(atol_left(a, hard), ATOL_HTTP_TIMEOUT_MIN);

        assert(!a->http);
        return curl_glue_request_new(a->glue, &a->http, method, url,
                                     &(CurlRequestOptions){
                                             .body = body,
                                             .body_size = body ? strlen(body) : 0,
                                             .content_type = body ? "application/json" : NULL,
                                             .connect_timeout = MIN(left, ATOL_CONNECT_TIMEOUT_MAX),
                                             .timeout = left,
                                             .headers = a->auth_header ? headers : NULL,
                                             .max_response_size = ATOL_MAX_RESPONSE,
                                     },
                                     cb, a);
}

static void atol_get_now(Atol *a);

static void atol_on_get(CurlRequest *req, int error, long status, const char *body, size_t size,
                        void *userdata) {
        Atol *a = userdata;
        /* The body lives as long as the request: freed when this returns. */
        _cleanup_(curl_request_freep) CurlRequest *owned = TAKE_PTR(a->http);
        AtolReply r = { .outcome = ATOL_REPLY_RESULTS, .http_status = status };
        bool hard = a->posted; /* learning the fate of our own POST may use the reserve */

        if (error < 0 || status >= 500) {
                /* The server may be restarting: ask again while the budget lasts. */
                if (atol_left(a, hard) > a->interval) {
                        atol_schedule(a, a->interval, atol_get_now);
                        a->interval = MIN(a->interval * 2, ATOL_POLL_MAX);
                        return;
                }
                atol_reply_simple(a, ATOL_REPLY_FAILED, error < 0 ? error : -EIO, status, NULL);
                return;
        }
        if (status == 404) {
                /* A 409 without such a uuid is not a duplicate: Web Requests answers 409 for a register that
                 * is not connected ("ККТ [id] не подключена") as well. */
                if (a->duplicate)
                        atol_reply_simple(a, ATOL_REPLY_REFUSED, -ENOTCONN, 409,
                                          "the register is not connected");
                else
                        atol_reply_simple(a, ATOL_REPLY_UNKNOWN_UUID, 0, status, NULL);
                return;
        }
        if (status != 200) {
                char m[128];

                http_message(body, m, sizeof m);
                atol_reply_simple(a, ATOL_REPLY_REFUSED, -EIO, status, m);
                return;
        }

        r.root = json_tokener_parse(body);
        r.results = atol_get_key(r.root, "results");
        if (!r.results || !json_object_is_type(r.results, json_type_array) ||
            json_object_array_length(r.results) == 0) {
                json_object_put(r.root);
                log_debug("atol-web: unreadable answer to GET %s: %.200s", a->uuid, strna(body));
                atol_reply_simple(a, ATOL_REPLY_FAILED, -EBADMSG, status, "unreadable answer");
                return;
        }
        r.final = r.all_wait = true;
        for (size_t i = 0; i < json_object_array_length(r.results); i++) {
                AtolStatus st = atol_status(json_object_array_get_idx(r.results, i));

                if (!atol_status_final(st))
                        r.final = false;
                if (st != ATOL_STATUS_WAIT)
                        r.all_wait = false;
        }
        if (!r.final && a->poll && atol_left(a, false) > a->interval && !a->interrupted) {
                json_object_put(r.root);
                atol_schedule(a, a->interval, atol_get_now);
                a->interval = MIN(a->interval * 2, ATOL_POLL_MAX);
                return;
        }
        atol_reply(a, &r);
}

static void atol_get_now(Atol *a) {
        _cleanup_free_ char *url = NULL;
        int r;

        if (asprintf(&url, "%s/%s", a->url_requests, a->uuid) < 0) {
                atol_reply_simple(a, ATOL_REPLY_FAILED, -ENOMEM, 0, NULL);
                return;
        }
        r = atol_http(a, "GET", url, NULL, a->posted, atol_on_get);
        if (r < 0)
                atol_reply_simple(a, ATOL_REPLY_FAILED, r, 0, NULL);
}

/* GET /api/v2/requests/{uuid} [AWS JsonTaskServlet.doGet]; with poll, again until every task is final. */
void atol_fetch(Atol *a, const char *uuid, bool poll, AtolHandler handler) {
        assert(!a->handler);
        strcpy(a->uuid, uuid);
        a->poll = poll;
        a->posted = a->duplicate = a->accepted = false;
        a->interval = ATOL_POLL_MIN;
        a->handler = handler;
        atol_get_now(a);
}

static void atol_on_post(CurlRequest *req, int error, long status, const char *body, size_t size,
                         void *userdata) {
        Atol *a = userdata;
        char m[128];

        if (error >= 0 && !IN_SET(status, 201, 409))
                http_message(body, m, sizeof m);
        a->http = curl_request_free(a->http);

        if (error < 0) {
                /* Whether the server took it is for GET to tell, even when libcurl says it was not sent:
                 * libcurl re-sends a request whose reused connection died without an answer, and then
                 * reports only that last attempt ("connection refused" after the first one was taken). */
                a->posted = true;
                atol_get_now(a);
                return;
        }
        if (status == 201) { /* Created [AWS: SC_CREATED; the 1C and FAD clients check 201] */
                a->posted = a->accepted = true;
                atol_schedule(a, a->interval, atol_get_now);
                return;
        }
        if (status == 409) { /* a uuid the server has [AWS: NotUniqueKeyException -> SC_CONFLICT] */
                a->posted = a->duplicate = true;
                atol_get_now(a);
                return;
        }
        if (status >= 500) {
                /* An internal error may come after the request was stored: ask. */
                a->posted = true;
                atol_get_now(a);
                return;
        }
        atol_reply_simple(a, ATOL_REPLY_REFUSED, -EIO, status, m);
}

/* POST /api/v2/requests {"uuid": ..., "request": [tasks]} [AWS JsonTaskServlet.doPost], then GET until
 * every task is final. */
void atol_submit(Atol *a, const char *uuid, const char *tasks, AtolHandler handler) {
        _cleanup_free_ char *body = NULL;
        int r;

        assert(!a->handler);
        strcpy(a->uuid, uuid);
        a->poll = true;
        a->posted = a->duplicate = a->accepted = false;
        a->interval = ATOL_POLL_MIN;
        a->handler = handler;
        if (asprintf(&body, "{\"uuid\":\"%s\",\"request\":%s}", uuid, tasks) < 0) {
                atol_reply_simple(a, ATOL_REPLY_FAILED, -ENOMEM, 0, NULL);
                return;
        }
        r = atol_http(a, "POST", a->url_requests, body, false, atol_on_post);
        if (r < 0)
                atol_reply_simple(a, ATOL_REPLY_FAILED, r, 0, NULL);
}

/* A request of queries (nothing fiscal) under a fresh uuid. */
void atol_query(Atol *a, const char *tasks, AtolHandler handler) {
        char uuid[DEVICE_ATOL_UUID_MAX];
        int r;

        r = atol_uuid_random(uuid);
        if (r < 0) {
                a->handler = handler;
                atol_reply_simple(a, ATOL_REPLY_FAILED, r, 0, NULL);
                return;
        }
        atol_submit(a, uuid, tasks, handler);
}

static void atol_on_delete(CurlRequest *req, int error, long status, const char *body, size_t size,
                           void *userdata) {
        Atol *a = userdata;

        a->http = curl_request_free(a->http);
        /* 200: every task was still waiting and is cancelled now; anything else (405 in AWS, 409 in Web
         * Requests: started or done) is "not cancelled". */
        atol_reply_simple(a, error >= 0 && status == 200 ? ATOL_REPLY_RESULTS : ATOL_REPLY_REFUSED,
                          error < 0 ? error : 0, status, NULL);
}

/* DELETE /api/v2/requests/{uuid}: only a request whose tasks all still wait [AWS JsonTaskServlet.doDelete;
 * the 1C client cancels a task that did not start in time]. */
void atol_cancel(Atol *a, const char *uuid, AtolHandler handler) {
        _cleanup_free_ char *url = NULL;
        int r;

        assert(!a->handler);
        strcpy(a->uuid, uuid);
        a->posted = false;
        a->handler = handler;
        if (asprintf(&url, "%s/%s", a->url_requests, uuid) < 0) {
                atol_reply_simple(a, ATOL_REPLY_FAILED, -ENOMEM, 0, NULL);
                return;
        }
        r = atol_http(a, "DELETE", url, NULL, true, atol_on_delete);
        if (r < 0)
                atol_reply_simple(a, ATOL_REPLY_FAILED, r, 0, NULL);
}

/* A failure to reach or use the web server, as a fault. */
void atol_fail_http(Atol *a, const AtolReply *r) {
        char m[160];

        if (r->outcome == ATOL_REPLY_FAILED) {
                snprintf(m, sizeof m, "ATOL web server: %s", strerror(-r->error));
                atol_fail_fault(a, DEVICE_FAULT_NOT_CONNECTED, m);
        } else if (IN_SET(r->http_status, 401, 403)) {
                snprintf(m, sizeof m, "ATOL web server refused our credentials (HTTP %ld)", r->http_status);
                atol_fail(a, -EACCES, DEVICE_FAULT_ERROR, m);
        } else if (IN_SET(r->http_status, 404, 409) || r->error == -ENOTCONN) {
                /* 404: no such device; 409 without our uuid: the register is not connected [Web Requests as
                 * KKTSITE reproduces it]. */
                snprintf(m, sizeof m, "ATOL web server (HTTP %ld): %s", r->http_status,
                         isempty(r->message) ? "the register is not available" : r->message);
                atol_fail_fault(a, DEVICE_FAULT_NOT_CONNECTED, m);
        } else {
                snprintf(m, sizeof m, "ATOL web server (HTTP %ld): %s", r->http_status, r->message);
                atol_fail(a, -EIO, DEVICE_FAULT_ERROR, m);
        }
}

/* A task that failed, as a fault; the register's own words as the message. */
void atol_fail_task(Atol *a, int code, const char *description) {
        char m[160];
        DeviceFault f = device_atol_error_fault(code, NULL);

        if (f == DEVICE_FAULT_REJECTED)
                /* The register's errorDescription as it is: the receipt's print_rejected reason. */
                snprintf(m, sizeof m, "%s", strempty(description));
        else
                snprintf(m, sizeof m, "ATOL error %d: %s", code, strempty(description));
        atol_fail(a, f == DEVICE_FAULT_REJECTED ? -EINVAL : device_fault_to_errno(f), f, m);
}
