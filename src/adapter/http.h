/* SPDX-License-Identifier: MIT */
#pragma once

/* The HTTP server: libmicrohttpd on our sd-event loop (its epoll fd as an io source, its timeout as a
 * relative timer), listeners from socket activation or bound from [HTTP] Listen=, TLS, who may call each
 * route (bearer tokens), the limits (body size, connections, idle time, header size), a route table, and
 * requests that a handler may answer later (the connection is suspended meanwhile). It knows nothing of
 * receipts. */

#include <json-c/json.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>

#include "macro.h"
#include "time-util.h"

typedef struct HttpServer HttpServer;
typedef struct HttpRequest HttpRequest;

typedef enum HttpMethod {
        HTTP_GET = 1 << 0,
        HTTP_POST = 1 << 1,
        HTTP_PUT = 1 << 2,
        HTTP_DELETE = 1 << 3,
} HttpMethod;

/* Answers at once with http_request_reply*(), or later: a handler that returns without answering keeps the
 * request, whose connection is suspended until the answer. A negative return answers 500. */
typedef int (*HttpHandler)(HttpRequest *req, void *userdata);

/* Who may call a route, checked before the handler runs (and before a body is read). ADMIN is 0 on purpose:
 * a route that does not say is closed, not open. */
typedef enum HttpAccess {
        HTTP_ACCESS_ADMIN = 0, /* the admin token; 403 while none is configured */
        HTTP_ACCESS_POS,       /* the POS or the admin token while a POS token is configured; else open */
        HTTP_ACCESS_PUBLIC,    /* whoever reaches the listener */
} HttpAccess;

typedef struct HttpRoute {
        HttpMethod method;
        const char *pattern; /* "/v1/kkt/receipt/ *" without the space: '*' is one path segment */
        HttpHandler handler;
        HttpAccess access;
} HttpRoute;

typedef struct HttpServerOptions {
        uint64_t max_body_size;
        unsigned max_connections;
        usec_t connection_timeout;
        uint64_t max_header_size;
        const char *listen; /* used when no socket was passed in */

        /* Bearer tokens (NULL: not configured) and the TLS certificate chain and private key in PEM (both or
         * neither; with them every listener speaks TLS 1.2 or 1.3 only). Copied; the copies are wiped when
         * the server is freed. */
        const char *pos_token;
        const char *admin_token;
        const char *tls_certificate;
        const char *tls_key;
        /* A listener on anything but loopback is refused (before a configured address is bound) unless TLS
         * and a POS token are configured, or this is set. */
        bool allow_insecure;
} HttpServerOptions;

/* `routes` ends with an entry whose pattern is NULL; it and `userdata` must outlive the server. Takes the
 * listening sockets passed by systemd, or binds options->listen when there are none. */
int http_server_new(HttpServer **ret, sd_event *event, const HttpServerOptions *options, const HttpRoute *routes,
                    void *userdata);
HttpServer *http_server_free(HttpServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpServer *, http_server_free);

/* Stops accepting new connections; requests in flight are still answered. */
void http_server_stop_accepting(HttpServer *s);

/* Requests received and not yet answered. */
unsigned http_server_requests_in_flight(HttpServer *s);

/* Counters for /metrics. */
typedef struct HttpServerStats {
        uint64_t requests;
        uint64_t responses_2xx, responses_4xx, responses_5xx;
        unsigned connections;
} HttpServerStats;
const HttpServerStats *http_server_get_stats(HttpServer *s);

/* A description of the listeners, e.g. "127.0.0.1:8000", for STATUS= and the log. */
const char *http_server_describe(HttpServer *s);

/* Whether only this machine can reach the address: 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104, AF_UNIX. */
bool http_sockaddr_is_loopback(const struct sockaddr *sa, socklen_t len);

const char *http_access_to_string(HttpAccess a);

HttpMethod http_request_method(HttpRequest *req);
const char *http_request_path(HttpRequest *req);
/* The n-th '*' segment of the matched pattern, URL-decoded. */
const char *http_request_arg(HttpRequest *req, unsigned n);
const char *http_request_header(HttpRequest *req, const char *name);
const char *http_request_query(HttpRequest *req, const char *name);
const char *http_request_body(HttpRequest *req, size_t *ret_size);
/* The peer's credentials are not known over TCP; this says which listener the request came through. */

/* Adds a header to the answer; call before replying. */
int http_request_add_header(HttpRequest *req, const char *name, const char *value);

/* Answers with `body` (ownership taken; NULL: empty). Works during the handler and after it returned. */
int http_request_reply_json(HttpRequest *req, unsigned status, json_object *body);
int http_request_reply_text(HttpRequest *req, unsigned status, const char *content_type, const char *text);
int http_request_reply_error(HttpRequest *req, unsigned status, const char *format, ...) _printf_(3, 4);

/* A kept request must stay valid until answered even if the client went away; the owner of the pending
 * work answers it (the answer is dropped if nobody listens any more). */
bool http_request_is_answered(HttpRequest *req);
