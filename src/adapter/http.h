/* SPDX-License-Identifier: MIT */
#pragma once

/* The HTTP server: libmicrohttpd on our sd-event loop (its epoll fd as an io source, its timeout as a
 * relative timer), listeners from socket activation or bound from [HTTP] Listen=, TLS, who may call each
 * route (bearer tokens), the limits (body size, header size, connections in all and per peer address, a
 * deadline for each phase of a connection), a route table, and requests that a handler may answer later (the
 * connection is suspended meanwhile). It knows nothing of receipts. */

#include <errno.h>
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
        _HTTP_ACCESS_MAX,
        _HTTP_ACCESS_INVALID = -EINVAL,
} HttpAccess;

typedef struct HttpRoute {
        HttpMethod method;
        const char *pattern; /* "/v1/kkt/receipt/ *" without the space: '*' is one path segment */
        HttpHandler handler;
        HttpAccess access;
} HttpRoute;

/* What a client may take. Each connection is in one phase at a time, and the loop closes it when the phase
 * outlasts its deadline: the request line and headers (from the connection's opening, or on a kept-alive
 * connection from the request line), the body (from the end of the headers), the answer being taken, and
 * the wait between requests on a kept-alive connection. A request with its handler has no deadline. */
typedef struct HttpServerLimits {
        uint64_t max_body_size;
        uint64_t max_header_size; /* request line and headers */
        unsigned max_connections; /* at the limit, a new connection evicts the one nearest its deadline
                                   * among those idle or still sending their request */
        unsigned max_connections_per_address;
        usec_t header_timeout;
        usec_t body_timeout; /* also the time the client has to take the answer */
        usec_t idle_timeout;
} HttpServerLimits;

typedef struct HttpServerOptions {
        HttpServerLimits limits;
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

/* Applies new limits (on reload) to every connection, open ones included. MaxConnections= and
 * MaxHeaderSize= size libmicrohttpd when it starts: above those first values they take effect after a
 * restart, which is logged. */
void http_server_set_limits(HttpServer *s, const HttpServerLimits *limits);

/* Stops accepting new connections; requests in flight are still answered. */
void http_server_stop_accepting(HttpServer *s);

/* Requests received and not yet answered. */
unsigned http_server_requests_in_flight(HttpServer *s);

/* Counters for /metrics. */
typedef struct HttpServerStats {
        uint64_t requests;
        uint64_t responses_2xx, responses_4xx, responses_5xx;
        unsigned connections;
        uint64_t evicted; /* closed to admit a new connection */
        uint64_t refused; /* over a limit with nothing to evict: answered 503 */
        uint64_t timed_out_headers, timed_out_body, timed_out_idle, timed_out_answer;
} HttpServerStats;
const HttpServerStats *http_server_get_stats(HttpServer *s);

/* A description of the listeners, e.g. "127.0.0.1:8000", for STATUS= and the log. */
const char *http_server_describe(HttpServer *s);

/* Whether only this machine can reach the address: 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104, AF_UNIX. */
bool http_sockaddr_is_loopback(const struct sockaddr *sa, socklen_t len);

const char *http_access_to_string(HttpAccess a);
HttpAccess http_access_from_string(const char *s);

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
