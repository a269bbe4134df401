/* SPDX-License-Identifier: MIT */
/* Owns the HTTP server and its requests: TLS and bearer-token authorization of each route, request bodies
 * and limits, routing, and answers given while the handler runs or later from a suspended connection.
 * The MHD daemons in sd-event are http-listener.c's; the connections' phases, deadlines and per-address
 * limits are http-connection.c's. */

#include <fcntl.h>
#include <search.h>
#include <stdarg.h>
#include <systemd/sd-daemon.h>

#include "http-internal.h"
#include "json-util.h"
#include "memory-util.h"
#include "string-table.h"
#include "token.h"

/* Takes a request off the server's list of parked ones. */
static void http_request_unpark(HttpRequest *req) {
        HttpServer *s = req->server;

        if (!req->suspended)
                return;
        req->suspended = false;
        LIST_REMOVE(suspended, s->suspended, req);
}

static HttpRequest *http_request_free(HttpRequest *req) {
        if (!req)
                return NULL;
        if (req->response)
                MHD_destroy_response(req->response);
        for (unsigned i = 0; i < req->n_args; i++)
                free(req->args[i]);
        free(req->body);
        free(req->path);
        return mfree(req);
}

/* The request is done for us: answered and handed to MHD, or its connection is gone. */
static void http_request_finish(HttpRequest *req) {
        HttpServer *s = req->server;

        assert(s->in_flight > 0);
        s->in_flight--;
        http_request_unpark(req);
        http_request_free(req);
}

HttpMethod http_request_method(HttpRequest *req) {
        return req->method;
}

const char *http_request_path(HttpRequest *req) {
        return req->path;
}

const char *http_request_arg(HttpRequest *req, unsigned n) {
        return n < req->n_args ? req->args[n] : NULL;
}

const char *http_request_header(HttpRequest *req, const char *name) {
        if (!req->connection)
                return NULL;
        return MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, name);
}

const char *http_request_query(HttpRequest *req, const char *name) {
        if (!req->connection)
                return NULL;
        return MHD_lookup_connection_value(req->connection, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_request_body(HttpRequest *req, size_t *ret_size) {
        if (ret_size)
                *ret_size = req->body_size;
        return req->body ?: "";
}

bool http_request_is_answered(HttpRequest *req) {
        return req->answered;
}

static int http_request_ensure_response(HttpRequest *req) {
        if (!req->response) {
                req->response = MHD_create_response_from_buffer(0, (void *) "", MHD_RESPMEM_PERSISTENT);
                if (!req->response)
                        return -ENOMEM;
        }
        return 0;
}

int http_request_add_header(HttpRequest *req, const char *name, const char *value) {
        int r;

        assert(!req->answered);
        /* Headers given before the body: keep them on a placeholder response and copy them over. */
        r = http_request_ensure_response(req);
        if (r < 0)
                return r;
        return MHD_add_response_header(req->response, name, value) == MHD_YES ? 0 : -ENOMEM;
}

static enum MHD_Result http_request_copy_headers(void *cls, enum MHD_ValueKind kind, const char *key,
                                                 const char *value) {
        struct MHD_Response *to = cls;

        (void) MHD_add_response_header(to, key, value);
        return MHD_YES;
}

static void http_server_count_status(HttpServer *s, unsigned status) {
        if (status < 300)
                s->stats.responses_2xx++;
        else if (status < 500)
                s->stats.responses_4xx++;
        else
                s->stats.responses_5xx++;
}

/* Hands the prepared answer to MHD: during the handler directly, else by resuming the connection, whose
 * next access-handler call queues it. */
static int http_request_deliver(HttpRequest *req) {
        if (!req->connection) {
                /* The client went away while we worked; nobody listens for the answer any more. */
                http_request_finish(req);
                return 0;
        }
        if (req->suspended) {
                http_request_unpark(req);
                MHD_resume_connection(req->connection);
                /* In external polling mode MHD only notices a resumed connection in its next MHD_run(). */
                http_listener_run_soon(req->listener);
        }
        return 0;
}

int http_request_reply_text(HttpRequest *req, unsigned status, const char *content_type, const char *text) {
        struct MHD_Response *response;
        size_t l = text ? strlen(text) : 0;

        assert(!req->answered);

        response = MHD_create_response_from_buffer(l, (void *) (text ?: ""), MHD_RESPMEM_MUST_COPY);
        if (!response)
                return -ENOMEM;
        if (content_type && l > 0)
                (void) MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
        if (req->response) {
                (void) MHD_get_response_headers(req->response, http_request_copy_headers, response);
                MHD_destroy_response(req->response);
        }
        req->response = response;
        req->status = status;
        req->answered = true;
        http_server_count_status(req->server, status);
        return http_request_deliver(req);
}

int http_request_reply_json(HttpRequest *req, unsigned status, json_object *body) {
        _cleanup_(json_object_putp) json_object *b = body;
        _cleanup_free_ char *text = NULL;

        /* Ends with a newline, so that a terminal's prompt does not follow the answer on its line. */
        if (b && asprintf(&text, "%s\n",
                          json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN |
                                                                    JSON_C_TO_STRING_NOSLASHESCAPE)) < 0)
                return -ENOMEM;
        return http_request_reply_text(req, status, "application/json", text);
}

int http_request_reply_error(HttpRequest *req, unsigned status, const char *format, ...) {
        _cleanup_free_ char *detail = NULL;
        json_object *o;
        va_list ap;

        va_start(ap, format);
        if (vasprintf(&detail, format, ap) < 0)
                detail = NULL;
        va_end(ap);

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        json_object_object_add(o, "detail", json_object_new_string(detail ?: "error"));
        return http_request_reply_json(req, status, o);
}

static HttpMethod http_method_from_string(const char *m) {
        if (streq(m, MHD_HTTP_METHOD_GET) || streq(m, MHD_HTTP_METHOD_HEAD))
                return HTTP_GET;
        if (streq(m, MHD_HTTP_METHOD_POST))
                return HTTP_POST;
        if (streq(m, MHD_HTTP_METHOD_PUT))
                return HTTP_PUT;
        if (streq(m, MHD_HTTP_METHOD_DELETE))
                return HTTP_DELETE;
        return 0;
}

static const char *http_method_to_string(HttpMethod m) {
        switch (m) {
        case HTTP_GET:
                return "GET, HEAD";
        case HTTP_POST:
                return "POST";
        case HTTP_PUT:
                return "PUT";
        case HTTP_DELETE:
                return "DELETE";
        }
        return NULL;
}

/* Matches `path` against `pattern`, where '*' is exactly one non-empty segment; stores the segments in
 * req->args when `req` is given. */
static bool http_route_match(const char *pattern, const char *path, HttpRequest *req) {
        const char *p = pattern, *u = path;
        unsigned n = 0;

        while (*p && *u) {
                if (*p == '*') {
                        size_t l = strcspn(u, "/");
                        if (l == 0 || n >= HTTP_MAX_ARGS)
                                return false;
                        if (req) {
                                req->args[n] = strndup(u, l);
                                if (!req->args[n])
                                        return false;
                                req->n_args = n + 1;
                        }
                        n++;
                        u += l;
                        p++;
                        continue;
                }
                if (*p != *u)
                        return false;
                p++;
                u++;
        }
        /* A trailing slash is the same resource. */
        if (*u == '/' && u[1] == 0)
                u++;
        return *p == 0 && *u == 0;
}

static void http_server_dispatch(HttpServer *s, HttpRequest *req) {
        unsigned allowed = 0;
        int r;

        for (const HttpRoute *route = s->routes; route && route->pattern; route++) {
                if (!http_route_match(route->pattern, req->path, NULL))
                        continue;
                if (route->method != req->method) {
                        allowed |= route->method;
                        continue;
                }
                if (!http_route_match(route->pattern, req->path, req)) {
                        (void) http_request_reply_error(req, 500, "Out of memory");
                        return;
                }
                r = route->handler(req, s->userdata);
                if (r < 0 && !req->answered) {
                        if (ratelimit_below(&s->log_ratelimit, NULL))
                                log_warning_errno(r, "Handler for %s failed: %m", req->path);
                        (void) http_request_reply_error(req, 500, "Internal error: %s", strerror(-r));
                }
                return;
        }

        if (allowed == 0) {
                (void) http_request_reply_error(req, 404, "Not found: %s", req->path);
                return;
        }

        char allow[64] = "";
        for (unsigned bit = HTTP_GET; bit <= HTTP_DELETE; bit <<= 1)
                if (allowed & bit) {
                        if (allow[0])
                                strcat(allow, ", ");
                        strcat(allow, http_method_to_string(bit));
                }
        (void) http_request_add_header(req, MHD_HTTP_HEADER_ALLOW, allow);
        (void) http_request_reply_error(req, 405, "Method not allowed; allowed: %s", allow);
}

static enum MHD_Result http_request_queue(HttpRequest *req) {
        HttpConnection *c = http_connection_of(req->connection);

        if (c)
                http_connection_enter(c, HTTP_PHASE_ANSWER);
        req->queued = true;
        return MHD_queue_response(req->connection, req->status, req->response);
}

static const char *const http_access_table[_HTTP_ACCESS_MAX] = {
        [HTTP_ACCESS_ADMIN] = "admin",
        [HTTP_ACCESS_POS] = "pos",
        [HTTP_ACCESS_PUBLIC] = "public",
};

DEFINE_STRING_TABLE_LOOKUP(http_access, HttpAccess)

/* The route the request will be dispatched to, NULL when none matches path and method (404 and 405 are
 * answered after the body, as before). */
static const HttpRoute *http_server_find_route(HttpServer *s, HttpRequest *req) {
        for (const HttpRoute *route = s->routes; route && route->pattern; route++)
                if (route->method == req->method && http_route_match(route->pattern, req->path, NULL))
                        return route;
        return NULL;
}

static void http_request_peer(HttpRequest *req, char *buf, size_t l) {
        const union MHD_ConnectionInfo *info =
                MHD_get_connection_info(req->connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const struct sockaddr *sa = info ? info->client_addr : NULL;

        if (sa && sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, buf, (socklen_t) l);
        else if (sa && sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, buf, (socklen_t) l);
        else
                snprintf(buf, l, "a local peer");
}

/* The token of "Authorization: Bearer TOKEN" (RFC 6750: the scheme in any case), NULL for none or another
 * scheme. Points into MHD's copy of the header. */
static const char *http_request_bearer(HttpRequest *req, size_t *ret_len) {
        const char *h = MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND,
                                                    MHD_HTTP_HEADER_AUTHORIZATION);
        size_t l;

        if (!h || strncasecmp(h, "Bearer", 6) != 0 || !IN_SET(h[6], ' ', '\t'))
                return NULL;
        h += 6;
        h += strspn(h, " \t");
        l = strlen(h);
        while (l > 0 && IN_SET(h[l - 1], ' ', '\t'))
                l--;
        if (l == 0)
                return NULL;
        *ret_len = l;
        return h;
}

/* Answers 401 or 403 unless the request may call a route of this access class. Tokens are compared in
 * constant time and never logged. Returns true when the request may go on. */
static bool http_request_check_access(HttpRequest *req, HttpAccess access) {
        HttpServer *s = req->server;
        _cleanup_(erase_and_freep) char *token = NULL;
        bool is_admin = false, is_pos = false;
        const char *bearer, *challenge, *why;
        char peer[INET6_ADDRSTRLEN + 1];
        unsigned status;
        size_t l = 0;

        if (access == HTTP_ACCESS_PUBLIC)
                return true;
        if (access == HTTP_ACCESS_POS && !s->pos_token)
                return true; /* no POS token configured: open, as on loopback it always was */

        bearer = http_request_bearer(req, &l);
        if (bearer) {
                token = strndup(bearer, l);
                if (!token) {
                        (void) http_request_reply_error(req, 500, "Out of memory");
                        return false;
                }
                /* Both compared, so the time does not tell which one matched. */
                is_admin = s->admin_token && token_equal(token, s->admin_token);
                is_pos = s->pos_token && token_equal(token, s->pos_token);
        }

        if (is_admin || (access == HTTP_ACCESS_POS && is_pos))
                return true;

        if (access == HTTP_ACCESS_ADMIN && !s->admin_token) {
                status = 403;
                challenge = NULL;
                why = "Administrative operations over HTTP are disabled: no admin token is configured "
                      "([HTTP] AdminToken=, credential admin-token); use kktctl over D-Bus as a member of "
                      "kkt-admin";
        } else if (is_pos) {
                status = 403;
                challenge = HTTP_AUTH_REALM ", error=\"insufficient_scope\"";
                why = "This needs the admin token; the POS token does not allow it";
        } else {
                status = 401;
                challenge = bearer ? HTTP_AUTH_REALM ", error=\"invalid_token\"" : HTTP_AUTH_REALM;
                if (bearer)
                        why = "The bearer token is not valid";
                else if (access == HTTP_ACCESS_ADMIN)
                        why = "This needs the admin token: Authorization: Bearer TOKEN";
                else
                        why = "This needs a token: Authorization: Bearer TOKEN";
        }

        if (ratelimit_below(&s->log_ratelimit, NULL)) {
                http_request_peer(req, peer, sizeof peer);
                log_full(bearer && !is_pos ? LOG_NOTICE : LOG_DEBUG, "HTTP: refused %s from %s with %u: %s.",
                         req->path, peer, status,
                         bearer && !is_pos ? "a bearer token that matches none" : why);
        }
        if (challenge)
                (void) http_request_add_header(req, MHD_HTTP_HEADER_WWW_AUTHENTICATE, challenge);
        /* The body, if any, is not read: the connection cannot be used for another request. */
        if (req->method != HTTP_GET)
                (void) http_request_add_header(req, MHD_HTTP_HEADER_CONNECTION, "close");
        (void) http_request_reply_error(req, status, "%s", why);
        return false;
}

enum MHD_Result http_on_access(void *cls, struct MHD_Connection *connection, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **con_cls) {
        HttpListener *l = cls;
        HttpServer *s = l->server;
        HttpRequest *req = *con_cls;
        HttpConnection *c = http_connection_of(connection);

        if (!req) {
                const HttpRoute *route;
                const union MHD_ConnectionInfo *info;
                const char *cl;

                req = new0(HttpRequest, 1);
                if (!req)
                        return MHD_NO;
                req->server = s;
                req->listener = l;
                req->connection = connection;
                req->method = http_method_from_string(method);
                req->path = strdup(url);
                if (!req->path) {
                        free(req);
                        return MHD_NO;
                }
                *con_cls = req;
                s->in_flight++;
                s->stats.requests++;

                if (c && c->phase == HTTP_PHASE_REFUSED) {
                        char buf[INET6_ADDRSTRLEN];

                        (void) http_request_add_header(req, MHD_HTTP_HEADER_CONNECTION, "close");
                        (void) http_request_add_header(req, MHD_HTTP_HEADER_RETRY_AFTER, "1");
                        if (c->refused_per_address)
                                (void) http_request_reply_error(
                                        req, 503, "Too many connections from %s (limit %u), all busy",
                                        http_peer_to_string(c->peer, buf),
                                        s->options.limits.max_connections_per_address);
                        else
                                (void) http_request_reply_error(req, 503,
                                                                "Too many connections (limit %u), all busy",
                                                                s->options.limits.max_connections);
                        return http_request_queue(req);
                }
                /* MHD's memory holds several times the limit, so headers past it arrive here and are refused
                 * with a JSON body rather than MHD's HTML page. */
                info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
                if (info && info->header_size > s->options.limits.max_header_size) {
                        (void) http_request_add_header(req, MHD_HTTP_HEADER_CONNECTION, "close");
                        (void) http_request_reply_error(
                                req, 431, "Request header fields too large: %zu bytes, limit %" PRIu64,
                                info->header_size, s->options.limits.max_header_size);
                        return http_request_queue(req);
                }
                if (req->method == 0) {
                        (void) http_request_add_header(req, MHD_HTTP_HEADER_ALLOW, "GET, HEAD, POST");
                        (void) http_request_reply_error(req, 405, "Method %s not allowed", method);
                        return http_request_queue(req);
                }
                route = http_server_find_route(s, req);
                if (route && !http_request_check_access(req, route->access))
                        return http_request_queue(req);

                /* Refuse an announced oversized body before reading any of it. */
                cl = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
                if (cl) {
                        char *end;
                        unsigned long long v;

                        errno = 0;
                        v = strtoull(cl, &end, 10);
                        if (errno == 0 && *end == 0 && v > s->options.limits.max_body_size) {
                                (void) http_request_add_header(req, MHD_HTTP_HEADER_CONNECTION, "close");
                                (void) http_request_reply_error(req, 413, "Body too large: %llu bytes, limit %" PRIu64,
                                                                v, s->options.limits.max_body_size);
                                return http_request_queue(req);
                        }
                }
                if (c)
                        http_connection_enter(c, HTTP_PHASE_BODY);
                return MHD_YES;
        }

        if (req->answered && !req->queued)
                return http_request_queue(req);

        if (*upload_data_size > 0) {
                size_t n = *upload_data_size;

                *upload_data_size = 0;
                if (req->body_too_large || req->body_size + n > s->options.limits.max_body_size) {
                        /* A chunked body that grew past the limit. MHD_queue_response() refuses an answer
                         * until the body ended (and failing here would reset the connection without any),
                         * so keep nothing more, drop the rest and answer 413 at its end. */
                        if (!req->body_too_large) {
                                req->body_too_large = true;
                                req->discarded = req->body_size;
                                req->body = mfree(req->body);
                                req->body_size = 0;
                        }
                        req->discarded += n;
                        if (req->discarded > s->options.limits.max_body_size + HTTP_DISCARD_MAX)
                                return MHD_NO;
                        return MHD_YES; /* and BodyTimeout= bounds how long */
                }
                char *b = realloc(req->body, req->body_size + n + 1);
                if (!b)
                        return MHD_NO;
                memcpy(b + req->body_size, upload_data, n);
                req->body = b;
                req->body_size += n;
                req->body[req->body_size] = 0;
                return MHD_YES;
        }

        if (req->body_too_large) {
                (void) http_request_add_header(req, MHD_HTTP_HEADER_CONNECTION, "close");
                (void) http_request_reply_error(req, 413,
                                                "Body too large: %" PRIu64 " bytes, limit %" PRIu64,
                                                req->discarded, s->options.limits.max_body_size);
                return http_request_queue(req);
        }

        if (req->dispatched && !req->answered)
                /* Resumed without an answer: given up on at shutdown. */
                return MHD_NO;
        if (!req->dispatched) {
                req->dispatched = true;
                if (c)
                        http_connection_enter(c, HTTP_PHASE_WORKING);
                http_server_dispatch(s, req);
        }
        if (req->answered)
                return http_request_queue(req);

        /* The handler keeps the request: park the connection until the answer is ready. */
        req->suspended = true;
        LIST_PREPEND(suspended, s->suspended, req);
        MHD_suspend_connection(connection);
        return MHD_YES;
}

void http_on_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                       enum MHD_RequestTerminationCode toe) {
        HttpRequest *req = *con_cls;
        HttpConnection *c = http_connection_of(connection);

        /* Also said when the connection closes after the answer; it is forgotten soon after in that case. */
        if (c && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
                http_connection_enter(c, c->admitted ? HTTP_PHASE_IDLE : HTTP_PHASE_REFUSED);
        else if (c)
                http_connection_forget(c);

        if (!req)
                return;
        *con_cls = NULL;
        req->connection = NULL;
        if (req->dispatched && !req->answered)
                return; /* still being worked on: freed when the answer comes */
        http_request_finish(req);
}

/* The request line is in: on a kept-alive connection, the headers' clock starts now. */
static int secret_dup(const char *s, char **ret) {
        *ret = NULL;
        if (!s)
                return 0;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int http_server_new(HttpServer **ret, sd_event *event, const HttpServerOptions *options, const HttpRoute *routes,
                    void *userdata) {
        _cleanup_(http_server_freep) HttpServer *s = NULL;
        char **names = NULL;
        bool refused = false;
        int n, r = 0;

        s = new0(HttpServer, 1);
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(event);
        s->options = *options;
        s->options.listen = NULL;
        s->options.pos_token = s->options.admin_token = NULL;
        s->options.tls_certificate = s->options.tls_key = NULL;
        s->routes = routes;
        s->userdata = userdata;
        s->log_ratelimit = RATELIMIT_INIT(10 * USEC_PER_SEC, 20);
        s->limit_ratelimit = RATELIMIT_INIT(60 * USEC_PER_SEC, 1);

        s->mhd_connection_limit = options->limits.max_connections + HTTP_CONNECTION_HEADROOM;
        s->mhd_max_header_size = options->limits.max_header_size;
        s->mhd_pool_size = (size_t) MIN(options->limits.max_header_size * HTTP_HEADER_POOL_FACTOR,
                                        options->limits.max_header_size + HTTP_HEADER_POOL_MAX_EXTRA) +
                           HTTP_HEADER_POOL_EXTRA;

        r = sd_event_add_time(s->event, &s->deadline_source, CLOCK_MONOTONIC, USEC_INFINITY,
                              HTTP_DEADLINE_ACCURACY, http_server_on_deadline, s);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the HTTP deadline timer: %m");
        (void) sd_event_source_set_enabled(s->deadline_source, SD_EVENT_OFF);
        (void) sd_event_source_set_description(s->deadline_source, "http-deadlines");

        if (secret_dup(options->pos_token, &s->pos_token) < 0 ||
            secret_dup(options->admin_token, &s->admin_token) < 0 ||
            secret_dup(options->tls_certificate, &s->tls_certificate) < 0 ||
            secret_dup(options->tls_key, &s->tls_key) < 0)
                return log_oom();
        if (!s->tls_certificate != !s->tls_key)
                return log_error_errno(EINVAL,
                                       "TLS needs both a certificate and its key ([HTTP] TLSCertificate= "
                                       "and TLSKey=), only the %s was given.",
                                       s->tls_key ? "key" : "certificate");
        if (s->tls_key && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
                return log_error_errno(EOPNOTSUPP,
                                       "libmicrohttpd was built without TLS; [HTTP] TLSCertificate= and "
                                       "TLSKey= cannot be used.");

        n = sd_listen_fds_with_names(true, &names);
        if (n < 0)
                return log_error_errno(n, "Failed to read the sockets passed by systemd: %m");
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                struct sockaddr_storage ss;
                socklen_t sl = sizeof ss;
                _cleanup_free_ char *what = NULL;

                /* Whatever systemd passed, listening yet or not: it is served only if it may be. */
                if (getsockname(fd, (struct sockaddr *) &ss, &sl) >= 0 &&
                    IN_SET(ss.ss_family, AF_INET, AF_INET6)) {
                        (void) http_describe_fd(fd, &what);
                        r = http_server_check_exposure(s, (struct sockaddr *) &ss, sl, strna(what));
                        if (r < 0) {
                                refused = true;
                                for (int j = i; j < n; j++)
                                        safe_close(SD_LISTEN_FDS_START + j);
                                break;
                        }
                }

                if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
                        log_warning("Ignoring passed fd %i (%s): not a listening stream socket.", fd,
                                    names ? names[i] : "unnamed");
                        safe_close(fd);
                        continue;
                }
                (void) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
                r = http_server_add_listener(s, fd);
                if (r < 0) {
                        for (int j = i + 1; j < n; j++)
                                safe_close(SD_LISTEN_FDS_START + j);
                        break;
                }
        }
        if (names) {
                for (int i = 0; i < n; i++)
                        free(names[i]);
                free(names);
        }
        if (refused)
                return r; /* logged with its reason */
        if (n > 0 && r < 0)
                return log_error_errno(r, "Failed to serve HTTP on the passed socket: %m");

        if (s->n_listeners == 0) {
                int fd = -1;

                r = http_bind(s, options->listen, &fd);
                if (r < 0)
                        return r;
                r = http_server_add_listener(s, fd);
                if (r < 0)
                        return log_error_errno(r, "Failed to serve HTTP on %s: %m", options->listen);
        }

        *ret = TAKE_PTR(s);
        return 0;
}

HttpServer *http_server_free(HttpServer *s) {
        if (!s)
                return NULL;

        /* MHD_stop_daemon() aborts the process while a connection is still suspended. Whoever kept these
         * requests is gone by now (the server is freed last), so answer them here, which resumes their
         * connections, and let MHD take them off its suspended list before it stops. */
        s->closing = true;
        {
                while (s->suspended) {
                        HttpRequest *req = s->suspended;

                        if (http_request_reply_error(req, 503, "Shutting down; retry shortly") < 0) {
                                /* No memory for an answer: resumed without one, MHD drops the connection. */
                                http_request_unpark(req);
                                MHD_resume_connection(req->connection);
                        }
                }
        }
        /* The loop is over: give answers that were given during the teardown (or above) one last run, so
         * MHD takes resumed connections off its suspended list and writes what it can. */
        for (size_t i = 0; i < s->n_listeners; i++)
                if (s->listeners[i].daemon)
                        for (unsigned k = 0; k < 2; k++)
                                (void) MHD_run(s->listeners[i].daemon);

        /* MHD says each of its connections closed while it stops. */
        for (size_t i = 0; i < s->n_listeners; i++)
                http_listener_done(&s->listeners[i]);
        /* Empty by now: each peer went with its last connection. */
        tdestroy(s->peers, free);
        s->deadline_source = sd_event_source_disable_unref(s->deadline_source);
        free(s->listeners);
        free(s->description);
        erase_and_free(s->pos_token);
        erase_and_free(s->admin_token);
        erase_and_free(s->tls_certificate);
        erase_and_free(s->tls_key);
        sd_event_unref(s->event);
        return mfree(s);
}

void http_server_set_limits(HttpServer *s, const HttpServerLimits *limits) {
        unsigned max_connections = s->mhd_connection_limit - HTTP_CONNECTION_HEADROOM;
        HttpServerLimits l = *limits;

        if (l.max_connections > max_connections || l.max_header_size > s->mhd_max_header_size) {
                log_notice("[HTTP] MaxConnections=%u and MaxHeaderSize=%" PRIu64
                           " above their values at start (%u, %" PRIu64 ") take effect after a restart; "
                           "keeping those until then.",
                           l.max_connections, l.max_header_size, max_connections, s->mhd_max_header_size);
                l.max_connections = MIN(l.max_connections, max_connections);
                l.max_header_size = MIN(l.max_header_size, s->mhd_max_header_size);
        }
        /* Connections over a lowered limit stay until they end or a new one needs a place. */
        s->options.limits = l;
        http_server_arm_deadlines(s);
}

void http_server_stop_accepting(HttpServer *s) {
        for (size_t i = 0; i < s->n_listeners; i++) {
                HttpListener *l = &s->listeners[i];

                if (!l->daemon || l->fd < 0)
                        continue;
                /* MHD stops listening and hands the socket back; connections already open go on. */
                if (MHD_quiesce_daemon(l->daemon) >= 0)
                        l->fd = safe_close(l->fd);
        }
}

unsigned http_server_requests_in_flight(HttpServer *s) {
        return s->in_flight;
}

const HttpServerStats *http_server_get_stats(HttpServer *s) {
        return &s->stats;
}

const char *http_server_describe(HttpServer *s) {
        return strna(s->description);
}
