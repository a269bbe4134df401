/* SPDX-License-Identifier: MIT */
#pragma once

/* libcurl's multi interface driven by an sd-event loop: every upstream HTTP request of the daemon (OFD sync,
 * ERP heartbeat) runs through one CurlGlue, so nothing ever blocks the loop and connections are reused. */

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "macro.h"
#include "time-util.h"

typedef struct CurlGlue CurlGlue;
typedef struct CurlRequest CurlRequest;

#define CURL_GLUE_CONNECT_TIMEOUT_DEFAULT_USEC (10 * USEC_PER_SEC)
#define CURL_GLUE_TIMEOUT_DEFAULT_USEC (30 * USEC_PER_SEC)
#define CURL_GLUE_MAX_RESPONSE_DEFAULT ((size_t) 1024 * 1024)
/* Per upstream host; further requests to the same host wait inside libcurl for a free connection (their
 * timeout keeps running meanwhile). */
#define CURL_GLUE_MAX_HOST_CONNECTIONS 6L
#define CURL_GLUE_MAX_CACHED_CONNECTIONS 16L

/* Called once when a request completes, from a defer source of the loop, never from inside
 * curl_glue_request_new() or libcurl. error is 0 when an HTTP response arrived (whatever its status; then
 * http_status is set and body is the NUL-terminated response body, "" if empty), or a negative errno:
 * -ETIMEDOUT, -ECONNREFUSED, -ECONNRESET (connection closed without an answer), -EHOSTUNREACH (name
 * lookup failed), -EFBIG (response larger than allowed), -EPROTO (TLS), -EINVAL (unsupported scheme), ...
 * On error http_status is whatever status line had arrived (usually 0) and body is NULL.
 * The body stays valid until the request is freed. The callback may free its own request (unless it was
 * started floating), start new ones, or free the whole CurlGlue. */
typedef void (*CurlRequestCallback)(CurlRequest *req, int error, long http_status, const char *body,
                                    size_t body_size, void *userdata);

typedef struct CurlRequestOptions {
        const void *body;               /* copied; NULL/0 for none */
        size_t body_size;
        const char *content_type;       /* e.g. "application/json"; NULL: no Content-Type header */
        const char *bearer_token;       /* "Authorization: Bearer ..."; NULL: none. Never logged. */
        usec_t connect_timeout;         /* 0: CURL_GLUE_CONNECT_TIMEOUT_DEFAULT_USEC */
        usec_t timeout;                 /* whole request incl. connect; 0: CURL_GLUE_TIMEOUT_DEFAULT_USEC */
        const char *const *headers;     /* extra "Name: value" lines, NULL-terminated; may be NULL */
        size_t max_response_size;       /* 0: CURL_GLUE_MAX_RESPONSE_DEFAULT */
} CurlRequestOptions;

int curl_glue_new(CurlGlue **ret, sd_event *event);
/* Cancels what is still running (no callback fires afterwards) and frees the requests started floating.
 * Requests the caller holds stay valid, detached; the caller still frees them. */
CurlGlue *curl_glue_free(CurlGlue *g);
DEFINE_TRIVIAL_CLEANUP_FUNC(CurlGlue *, curl_glue_free);

/* Starts a request at once. method is "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"; url http:// or
 * https:// (others fail with -EINVAL in the callback). o may be NULL for all defaults.
 * With ret the caller owns the request and frees it (curl_request_free() also cancels it); with ret NULL
 * the request is floating: the glue frees it after the callback returned. Fails with -EINVAL for a bad
 * method, a body on GET/HEAD, or CR/LF inside a header or the token; -ENOMEM; -EIO for libcurl failures. */
int curl_glue_request_new(CurlGlue *g, CurlRequest **ret, const char *method, const char *url,
                          const CurlRequestOptions *o, CurlRequestCallback cb, void *userdata);

/* Stops the transfer if it is still running; the callback will not be called. Idempotent. */
void curl_request_cancel(CurlRequest *r);
/* Cancels and frees; accepts NULL; may be called from the request's own callback. */
CurlRequest *curl_request_free(CurlRequest *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(CurlRequest *, curl_request_free);

/* The following are meaningful once the callback has been called, and stay valid until the free. */

/* Last value of a response header, case-insensitive name. -ENOENT if absent. *ret stays valid until the
 * next call for this request. */
int curl_request_get_header(CurlRequest *r, const char *name, const char **ret);
/* Retry-After (delta-seconds or HTTP-date) as a relative time; -ENODATA when absent or zero. */
int curl_request_get_retry_after(CurlRequest *r, usec_t *ret);
/* True when the request line, headers and the whole body had been handed to the connection before the
 * transfer ended: a failure after that is an unknown outcome (the upstream may have acted on it), while a
 * failure before it means the upstream cannot have seen the complete request — of the last attempt only:
 * when a kept-alive connection dies without an answer, libcurl sends the request again on a new one and
 * reports that attempt, so the upstream may have received an earlier copy. Callers whose requests are not
 * idempotent by themselves make them so (an Idempotency-Key, a request uuid) and ask after any failure. */
bool curl_request_was_sent(CurlRequest *r);
/* Wall time of the whole transfer, name lookup to last byte (or failure). */
usec_t curl_request_get_total_time(CurlRequest *r);
/* libcurl's description of a failure, for logs; "" when there was none. Never contains the token. */
const char *curl_request_get_error_message(CurlRequest *r);
const char *curl_request_get_url(CurlRequest *r);
