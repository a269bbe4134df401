/* SPDX-License-Identifier: MIT */
/* Owns libmicrohttpd inside sd-event: one MHD daemon per listening socket in external-epoll mode, its epoll
 * fd as an io source and MHD_get_timeout() as a relative timer; TLS, the refusal of a listener on the
 * network without it, bearer-token authorization of each route; request bodies, limits, routing, and
 * answers given while the handler runs or later from a suspended connection. It also follows every
 * connection through its phases to hold each to its own deadline, to count connections per peer address,
 * and to evict the least useful one when a new one needs its place. */

#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <search.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include "http.h"
#include "json-util.h"
#include "log.h"
#include "token.h"

#define HTTP_MAX_ARGS 4
/* MHD's own hard limit on connections sits above ours: evicted connections stay MHD's until its next run,
 * and the ones refused (over a limit with nothing to evict) still get a 503 with a JSON body instead of a
 * closed socket. */
#define HTTP_CONNECTION_HEADROOM 64U
/* MHD takes no answer while a body is being received, so a body without Content-Length that outgrows the
 * limit is read to its end (within the body's deadline) and dropped, then answered 413; past this much
 * more, the connection is closed. */
#define HTTP_DISCARD_MAX (16U * 1024U * 1024U)
/* MHD answers headers that outgrow its per-connection memory with its own HTML page, and offers no hook to
 * change it. Its memory is sized well above [HTTP] MaxHeaderSize= so that we see the headers first and
 * answer a JSON 431 ourselves; only headers past this many times the limit still meet MHD's page. */
#define HTTP_HEADER_POOL_FACTOR 4U
#define HTTP_HEADER_POOL_EXTRA (16U * 1024U) /* header records, the answer's headers */
#define HTTP_HEADER_POOL_MAX_EXTRA (1024U * 1024U)
/* MHD's own inactivity timeout, as the longest any of our deadlines may be ([HTTP] *Timeout= allow 1h). */
#define HTTP_MHD_TIMEOUT USEC_PER_HOUR
/* The deadline timer may fire this much late: deadlines are whole seconds, a connection is closed in a
 * batch with its neighbours. */
#define HTTP_DEADLINE_ACCURACY (100 * USEC_PER_MSEC)

/* Where a connection is; the first ones have deadlines and a list each, in the order they entered it. */
typedef enum HttpPhase {
        HTTP_PHASE_HEADERS, /* sending its request line and headers */
        HTTP_PHASE_BODY,    /* sending its body */
        HTTP_PHASE_IDLE,    /* kept alive between requests */
        HTTP_PHASE_ANSWER,  /* taking its answer */
        HTTP_PHASE_REFUSED, /* over a limit with nothing to evict: sending the request its 503 answers */
        _HTTP_PHASE_TIMED,
        HTTP_PHASE_WORKING = _HTTP_PHASE_TIMED, /* its request is with a handler */
        HTTP_PHASE_CLOSING,                     /* shut down by us, MHD has not noticed yet */
} HttpPhase;

typedef struct HttpConnection HttpConnection;

/* Connections from one address, IPv4-mapped IPv6 counted as IPv4. */
typedef struct HttpPeer {
        int family;
        union {
                struct in_addr in;
                struct in6_addr in6;
        } address;
        unsigned n_admitted;
        HttpConnection *connections; /* all of them, admitted or not */
} HttpPeer;

struct HttpConnection {
        HttpServer *server;
        struct HttpListener *listener;
        struct MHD_Connection *connection;
        int fd;
        HttpPeer *peer; /* NULL: not an IP connection */
        HttpConnection *peer_prev, *peer_next;

        HttpPhase phase;
        usec_t since; /* when the phase's clock started */
        HttpConnection *phase_prev, *phase_next;
        bool admitted; /* counted against the limits */
        bool refused_per_address;
};
/* TLS 1.2 and 1.3 only, GnuTLS's default ciphers for them. */
#define HTTP_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define HTTP_AUTH_REALM "Bearer realm=\"kkt-adapter\""

typedef struct HttpListener {
        HttpServer *server;
        struct MHD_Daemon *daemon;
        int fd;
        sd_event_source *io_source;
        sd_event_source *timer_source;
        sd_event_source *defer_source; /* MHD_run() in the next loop iteration */
} HttpListener;

struct HttpServer {
        sd_event *event;
        HttpServerOptions options;
        const HttpRoute *routes;
        void *userdata;

        HttpListener *listeners;
        size_t n_listeners;

        unsigned in_flight;
        HttpRequest *suspended; /* requests whose connection is parked until they are answered */
        bool closing;           /* being freed: MHD is run directly, the loop may be over */
        HttpServerStats stats;
        char *description;
        RateLimit log_ratelimit;
        bool starting; /* MHD's messages while a listener starts explain a failure: logged louder */

        /* Our copies of the secrets in options, wiped in http_server_free(). */
        char *pos_token, *admin_token;
        char *tls_certificate, *tls_key;

        RateLimit limit_ratelimit; /* the notice that a limit was reached */

        unsigned mhd_connection_limit; /* what MHD was started with */
        uint64_t mhd_max_header_size;
        size_t mhd_pool_size;

        HttpConnection *phase_head[_HTTP_PHASE_TIMED], *phase_tail[_HTTP_PHASE_TIMED];
        unsigned n_admitted;
        void *peers; /* tsearch() tree of HttpPeer */
        sd_event_source *deadline_source;
};

struct HttpRequest {
        HttpServer *server;
        HttpListener *listener;
        struct MHD_Connection *connection; /* NULL once MHD has finished with the connection */
        HttpMethod method;
        char *path;

        char *body;
        size_t body_size;
        bool body_too_large;
        uint64_t discarded;

        char *args[HTTP_MAX_ARGS];
        unsigned n_args;

        bool dispatched;
        bool suspended;
        HttpRequest *suspended_prev, *suspended_next;
        bool answered;
        bool queued;
        unsigned status;
        struct MHD_Response *response;
};

/* Takes a request off the server's list of parked ones. */
static void http_request_unpark(HttpRequest *req) {
        HttpServer *s = req->server;

        if (!req->suspended)
                return;
        req->suspended = false;
        if (req->suspended_prev)
                req->suspended_prev->suspended_next = req->suspended_next;
        else
                s->suspended = req->suspended_next;
        if (req->suspended_next)
                req->suspended_next->suspended_prev = req->suspended_prev;
        req->suspended_prev = req->suspended_next = NULL;
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

static void http_listener_run_soon(HttpListener *l) {
        int r;

        /* After the loop finished, http_server_free() gives MHD its last run. */
        if (l->server->closing || sd_event_get_state(l->server->event) == SD_EVENT_FINISHED)
                return;
        /* A defer source, not the timer: no timerfd to program, and answers given in one loop iteration
         * share one MHD_run(). */
        r = sd_event_source_set_enabled(l->defer_source, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "Failed to schedule the HTTP server: %m");
}

/* ---- connections: phases, deadlines, limits ---------------------------------------------------------- */

static const char *http_phase_to_string(HttpPhase p) {
        switch (p) {
        case HTTP_PHASE_HEADERS:
                return "sending its headers";
        case HTTP_PHASE_BODY:
                return "sending its body";
        case HTTP_PHASE_IDLE:
                return "idle";
        case HTTP_PHASE_ANSWER:
                return "taking its answer";
        case HTTP_PHASE_REFUSED:
                return "refused";
        case HTTP_PHASE_WORKING:
                return "being answered";
        case HTTP_PHASE_CLOSING:
                return "closing";
        }
        return "unknown";
}

static usec_t http_phase_timeout(const HttpServer *s, HttpPhase p) {
        switch (p) {
        case HTTP_PHASE_HEADERS:
        case HTTP_PHASE_REFUSED:
                return s->options.limits.header_timeout;
        case HTTP_PHASE_BODY:
        case HTTP_PHASE_ANSWER:
                return s->options.limits.body_timeout;
        case HTTP_PHASE_IDLE:
                return s->options.limits.idle_timeout;
        default:
                return USEC_INFINITY;
        }
}

/* Computed rather than stored: new limits apply to open connections, and each phase's list, in the order
 * its connections entered it, stays in the order of their deadlines. */
static usec_t http_connection_deadline(const HttpConnection *c) {
        return usec_add(c->since, http_phase_timeout(c->server, c->phase));
}

static HttpConnection *http_connection_of(struct MHD_Connection *connection) {
        const union MHD_ConnectionInfo *i;

        if (!connection)
                return NULL;
        i = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        return i ? i->socket_context : NULL;
}

static void http_connection_unlink_phase(HttpConnection *c) {
        HttpServer *s = c->server;

        if (c->phase >= _HTTP_PHASE_TIMED)
                return;
        if (c->phase_prev)
                c->phase_prev->phase_next = c->phase_next;
        else
                s->phase_head[c->phase] = c->phase_next;
        if (c->phase_next)
                c->phase_next->phase_prev = c->phase_prev;
        else
                s->phase_tail[c->phase] = c->phase_prev;
        c->phase_prev = c->phase_next = NULL;
}

/* Moves the connection into `phase` and starts that phase's clock. */
static void http_connection_enter(HttpConnection *c, HttpPhase phase) {
        HttpServer *s = c->server;

        if (c->phase == HTTP_PHASE_CLOSING)
                return;
        http_connection_unlink_phase(c);
        c->phase = phase;
        c->since = now(CLOCK_MONOTONIC);
        if (phase >= _HTTP_PHASE_TIMED)
                return;
        c->phase_prev = s->phase_tail[phase];
        if (s->phase_tail[phase])
                s->phase_tail[phase]->phase_next = c;
        else
                s->phase_head[phase] = c;
        s->phase_tail[phase] = c;
}

static void http_connection_unadmit(HttpConnection *c) {
        HttpServer *s = c->server;

        if (!c->admitted)
                return;
        c->admitted = false;
        assert(s->n_admitted > 0);
        s->n_admitted--;
        if (c->peer) {
                assert(c->peer->n_admitted > 0);
                c->peer->n_admitted--;
        }
}

/* MHD is closing the connection by itself: it no longer counts, and has no deadline. */
static void http_connection_forget(HttpConnection *c) {
        http_connection_unadmit(c);
        http_connection_unlink_phase(c);
        c->phase = HTTP_PHASE_CLOSING;
}

/* Closes the connection from outside MHD's callbacks for it: shutting the socket down makes it readable at
 * end of file (and hung up), which MHD handles in its next run as a client gone. The socket stays MHD's,
 * open until MHD says the connection is closed, so the descriptor cannot be another one's by then. */
static void http_connection_close(HttpConnection *c) {
        if (c->phase == HTTP_PHASE_CLOSING)
                return;
        http_connection_forget(c);
        (void) shutdown(c->fd, SHUT_RDWR);
        http_listener_run_soon(c->listener);
}

static const char *http_peer_to_string(const HttpPeer *p, char buf[static INET6_ADDRSTRLEN]) {
        if (!p)
                return "a local socket";
        return inet_ntop(p->family, &p->address, buf, INET6_ADDRSTRLEN) ?: "an unknown address";
}

static int http_peer_compare(const void *a, const void *b) {
        const HttpPeer *x = a, *y = b;

        if (x->family != y->family)
                return x->family < y->family ? -1 : 1;
        return memcmp(&x->address, &y->address,
                      x->family == AF_INET ? sizeof(struct in_addr) : sizeof(struct in6_addr));
}

/* The peer for a client address, made on its first connection; NULL when not an IP address, or without
 * memory (that connection then counts against MaxConnections= only). */
static HttpPeer *http_server_get_peer(HttpServer *s, const struct sockaddr *sa) {
        HttpPeer key = {}, *p;
        void *found;

        if (!sa)
                return NULL;
        if (sa->sa_family == AF_INET) {
                key.family = AF_INET;
                key.address.in = ((const struct sockaddr_in *) sa)->sin_addr;
        } else if (sa->sa_family == AF_INET6) {
                const struct in6_addr *a = &((const struct sockaddr_in6 *) sa)->sin6_addr;

                if (IN6_IS_ADDR_V4MAPPED(a)) {
                        key.family = AF_INET;
                        memcpy(&key.address.in, a->s6_addr + 12, sizeof(struct in_addr));
                } else {
                        key.family = AF_INET6;
                        key.address.in6 = *a;
                }
        } else
                return NULL;

        found = tfind(&key, &s->peers, http_peer_compare);
        if (found)
                return *(HttpPeer **) found;
        p = new0(HttpPeer, 1);
        if (!p)
                return NULL;
        *p = key;
        if (!tsearch(p, &s->peers, http_peer_compare))
                return mfree(p);
        return p;
}

static HttpConnection *http_connection_new(HttpListener *l, struct MHD_Connection *connection) {
        const union MHD_ConnectionInfo *i;
        HttpConnection *c;

        i = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!i)
                return NULL;
        c = new0(HttpConnection, 1);
        if (!c)
                return NULL;
        c->server = l->server;
        c->listener = l;
        c->connection = connection;
        c->fd = i->connect_fd;
        c->phase = HTTP_PHASE_WORKING; /* untimed until admitted or refused */

        i = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        c->peer = http_server_get_peer(l->server, i ? i->client_addr : NULL);
        if (c->peer) {
                c->peer_next = c->peer->connections;
                if (c->peer_next)
                        c->peer_next->peer_prev = c;
                c->peer->connections = c;
        }
        return c;
}

static void http_connection_free(HttpConnection *c) {
        HttpServer *s;

        if (!c)
                return;
        s = c->server;
        http_connection_forget(c);
        if (c->peer) {
                if (c->peer_prev)
                        c->peer_prev->peer_next = c->peer_next;
                else
                        c->peer->connections = c->peer_next;
                if (c->peer_next)
                        c->peer_next->peer_prev = c->peer_prev;
                if (!c->peer->connections) {
                        (void) tdelete(c->peer, &s->peers, http_peer_compare);
                        free(c->peer);
                }
        }
        free(c);
}

static bool http_connection_evictable(const HttpConnection *c) {
        return c->admitted && IN_SET(c->phase, HTTP_PHASE_IDLE, HTTP_PHASE_HEADERS, HTTP_PHASE_BODY);
}

/* The connection to give up for a new one: among those idle or still sending their request (never one whose
 * request is being answered), the one nearest its deadline, that is the longest idle or the slowest
 * relative to what its phase allows; only `peer`'s when given. NULL: none. */
static HttpConnection *http_server_pick_victim(HttpServer *s, HttpPeer *peer) {
        HttpConnection *best = NULL;
        usec_t best_deadline = USEC_INFINITY;

        if (peer) {
                for (HttpConnection *c = peer->connections; c; c = c->peer_next)
                        if (http_connection_evictable(c) &&
                            (!best || http_connection_deadline(c) < best_deadline)) {
                                best = c;
                                best_deadline = http_connection_deadline(c);
                        }
                return best;
        }
        /* Each list is in deadline order: only its first admitted connection can be the nearest. */
        for (HttpPhase p = HTTP_PHASE_HEADERS; p <= HTTP_PHASE_IDLE; p++)
                for (HttpConnection *c = s->phase_head[p]; c; c = c->phase_next)
                        if (http_connection_evictable(c)) {
                                if (!best || http_connection_deadline(c) < best_deadline) {
                                        best = c;
                                        best_deadline = http_connection_deadline(c);
                                }
                                break;
                        }
        return best;
}

static void http_server_evict(HttpServer *s, HttpConnection *victim, const char *which, unsigned limit) {
        char buf[INET6_ADDRSTRLEN];

        s->stats.evicted++;
        /* Operators should learn that a limit is being hit, not about each connection it costs. */
        if (ratelimit_below(&s->limit_ratelimit, NULL))
                log_notice("HTTP %s limit (%u) reached: closed a connection from %s, %s for %" PRIu64
                           " s, to admit a new one (%" PRIu64 " evicted since start).",
                           which, limit, http_peer_to_string(victim->peer, buf),
                           http_phase_to_string(victim->phase),
                           (now(CLOCK_MONOTONIC) - victim->since) / USEC_PER_SEC, s->stats.evicted);
        http_connection_close(victim);
}

/* A new connection takes its place, making room when needed; one over a limit with nothing to evict is
 * refused: its request gets a 503. */
static void http_server_admit(HttpServer *s, HttpConnection *c) {
        HttpConnection *victim;

        while (c->peer && c->peer->n_admitted >= s->options.limits.max_connections_per_address) {
                victim = http_server_pick_victim(s, c->peer);
                if (!victim) {
                        c->refused_per_address = true;
                        s->stats.refused++;
                        http_connection_enter(c, HTTP_PHASE_REFUSED);
                        return;
                }
                http_server_evict(s, victim, "per-address connection",
                                  s->options.limits.max_connections_per_address);
        }
        while (s->n_admitted >= s->options.limits.max_connections) {
                victim = http_server_pick_victim(s, NULL);
                if (!victim) {
                        s->stats.refused++;
                        http_connection_enter(c, HTTP_PHASE_REFUSED);
                        return;
                }
                http_server_evict(s, victim, "connection", s->options.limits.max_connections);
        }
        c->admitted = true;
        s->n_admitted++;
        if (c->peer)
                c->peer->n_admitted++;
        /* A new connection's headers are due within HeaderTimeout= of its opening. */
        http_connection_enter(c, HTTP_PHASE_HEADERS);
}

static void http_server_arm_deadlines(HttpServer *s) {
        usec_t next = USEC_INFINITY;
        int r;

        if (!s->deadline_source)
                return;
        for (HttpPhase p = 0; p < _HTTP_PHASE_TIMED; p++)
                if (s->phase_head[p])
                        next = MIN(next, http_connection_deadline(s->phase_head[p]));
        if (next == USEC_INFINITY) {
                (void) sd_event_source_set_enabled(s->deadline_source, SD_EVENT_OFF);
                return;
        }
        r = sd_event_source_set_time(s->deadline_source, next);
        if (r >= 0)
                r = sd_event_source_set_enabled(s->deadline_source, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "Failed to arm the HTTP deadline timer: %m");
}

static int http_server_on_deadline(sd_event_source *source, uint64_t usec, void *userdata) {
        HttpServer *s = userdata;
        usec_t n = now(CLOCK_MONOTONIC);

        for (HttpPhase p = 0; p < _HTTP_PHASE_TIMED; p++) {
                HttpConnection *c;

                while ((c = s->phase_head[p]) && http_connection_deadline(c) <= n) {
                        char buf[INET6_ADDRSTRLEN];

                        switch (p) {
                        case HTTP_PHASE_HEADERS:
                        case HTTP_PHASE_REFUSED:
                                s->stats.timed_out_headers++;
                                break;
                        case HTTP_PHASE_BODY:
                                s->stats.timed_out_body++;
                                break;
                        case HTTP_PHASE_IDLE:
                                s->stats.timed_out_idle++;
                                break;
                        default:
                                s->stats.timed_out_answer++;
                                break;
                        }
                        if (p != HTTP_PHASE_IDLE && ratelimit_below(&s->log_ratelimit, NULL))
                                log_debug("HTTP: closing the connection from %s, %s past its deadline.",
                                          http_peer_to_string(c->peer, buf), http_phase_to_string(p));
                        http_connection_close(c);
                }
        }
        http_server_arm_deadlines(s);
        return 0;
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

const char *http_access_to_string(HttpAccess a) {
        switch (a) {
        case HTTP_ACCESS_ADMIN:
                return "admin";
        case HTTP_ACCESS_POS:
                return "pos";
        case HTTP_ACCESS_PUBLIC:
                return "public";
        }
        return NULL;
}

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
        _cleanup_(token_freep) char *token = NULL;
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

static enum MHD_Result http_on_access(void *cls, struct MHD_Connection *connection, const char *url,
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
        req->suspended_next = s->suspended;
        if (s->suspended)
                s->suspended->suspended_prev = req;
        s->suspended = req;
        MHD_suspend_connection(connection);
        return MHD_YES;
}

static void http_on_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
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
static void *http_on_request_line(void *cls, const char *uri, struct MHD_Connection *connection) {
        HttpConnection *c = http_connection_of(connection);

        if (c && c->phase == HTTP_PHASE_IDLE)
                http_connection_enter(c, HTTP_PHASE_HEADERS);
        return NULL; /* the access handler's first call still sees no request */
}

static void http_on_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                               enum MHD_ConnectionNotificationCode toe) {
        HttpListener *l = cls;
        HttpServer *s = l->server;

        if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
                HttpConnection *c;

                s->stats.connections++;
                c = http_connection_new(l, connection);
                if (!c) {
                        /* Without memory to follow it, it would escape every limit: closed at once. */
                        const union MHD_ConnectionInfo *i =
                                MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
                        if (i)
                                (void) shutdown(i->connect_fd, SHUT_RDWR);
                        return;
                }
                *socket_context = c;
                http_server_admit(s, c);
                return;
        }
        if (s->stats.connections > 0)
                s->stats.connections--;
        http_connection_free(*socket_context);
        *socket_context = NULL;
}

static void http_on_mhd_log(void *cls, const char *format, va_list ap) {
        HttpServer *s = cls;
        char buf[512];

        if (!s->starting && !ratelimit_below(&s->log_ratelimit, NULL))
                return;
        vsnprintf(buf, sizeof buf, format, ap);
        buf[strcspn(buf, "\n")] = 0;
        log_full(s->starting ? LOG_WARNING : LOG_DEBUG, "HTTP: %s", buf);
}

static void http_listener_arm_timer(HttpListener *l) {
        MHD_UNSIGNED_LONG_LONG ms;
        int r;

        if (MHD_get_timeout(l->daemon, &ms) != MHD_YES) {
                (void) sd_event_source_set_enabled(l->timer_source, SD_EVENT_OFF);
                return;
        }
        if (ms == 0) {
                /* Work already pending (a connection with data MHD has not processed yet): the timer's
                 * coarse accuracy would let it wait up to 250 ms. */
                http_listener_run_soon(l);
                return;
        }
        /* MHD says how long from now, so the timer is relative too. */
        r = sd_event_source_set_time_relative(l->timer_source, (usec_t) ms * USEC_PER_MSEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(l->timer_source, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "Failed to arm the HTTP timer: %m");
}

static int http_listener_run(HttpListener *l) {
        if (MHD_run(l->daemon) != MHD_YES)
                log_debug("MHD_run() reported a failure.");
        http_listener_arm_timer(l);
        /* Connections came, went and changed phase in that run. */
        http_server_arm_deadlines(l->server);
        return 0;
}

static int http_on_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        return http_listener_run(userdata);
}

static int http_on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        return http_listener_run(userdata);
}

static int http_on_defer(sd_event_source *source, void *userdata) {
        return http_listener_run(userdata);
}

/* Before the next iteration polls, rather than in an iteration of its own (each costs system calls):
 * the answers given during the last dispatch go out now. */
static int http_on_defer_prepare(sd_event_source *source, void *userdata) {
        (void) sd_event_source_set_enabled(source, SD_EVENT_OFF);
        return http_listener_run(userdata);
}

static int http_listener_start(HttpServer *s, HttpListener *l, int fd) {
        const union MHD_DaemonInfo *info;
        int r;

        l->server = s;
        l->fd = fd;

        /* MHD hands the key and certificate to GnuTLS when the daemon starts; our copies outlive it. */
        struct MHD_OptionItem tls_options[] = {
                { MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key },
                { MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_certificate },
                { MHD_OPTION_HTTPS_PRIORITIES, 0, (void *) HTTP_TLS_PRIORITIES },
                { MHD_OPTION_END, 0, NULL },
        };

        s->starting = true;
        l->daemon = MHD_start_daemon(
                MHD_USE_EPOLL | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_TURBO |
                        (s->tls_key ? MHD_USE_TLS : 0),
                0, NULL, NULL, http_on_access, l,
                MHD_OPTION_EXTERNAL_LOGGER, http_on_mhd_log, s, /* first, so that no message escapes it */
                MHD_OPTION_LISTEN_SOCKET, fd,
                MHD_OPTION_CONNECTION_LIMIT, s->mhd_connection_limit,
                /* MHD's one timeout counts from a connection's last activity, which a slow client keeps
                 * fresh: the deadlines are ours (http_server_on_deadline()). Its own stays as a backstop,
                 * at the most any of ours may be. */
                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) (HTTP_MHD_TIMEOUT / USEC_PER_SEC),
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, s->mhd_pool_size,
                MHD_OPTION_URI_LOG_CALLBACK, http_on_request_line, l,
                MHD_OPTION_NOTIFY_COMPLETED, http_on_completed, l,
                MHD_OPTION_NOTIFY_CONNECTION, http_on_connection, l,
                MHD_OPTION_ARRAY, s->tls_key ? tls_options : tls_options + 3,
                MHD_OPTION_END);
        s->starting = false;
        if (!l->daemon)
                return -EIO;

        info = MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info)
                return -EIO;

        r = sd_event_add_io(s->event, &l->io_source, info->epoll_fd, EPOLLIN, http_on_io, l);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(l->io_source, "http-epoll");

        /* Only MHD's own timeouts (idle connections, in seconds) use the timer: the default accuracy
         * (250 ms) lets sd-event keep the timerfd as it is while every MHD_run() moves the deadline a
         * little. Work due now goes through the defer source instead. */
        r = sd_event_add_time_relative(s->event, &l->timer_source, CLOCK_MONOTONIC, 0, 0, http_on_timer, l);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(l->timer_source, "http-timer");

        r = sd_event_add_defer(s->event, &l->defer_source, http_on_defer, l);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(l->defer_source, SD_EVENT_OFF);
        (void) sd_event_source_set_description(l->defer_source, "http-run-soon");
        r = sd_event_source_set_prepare(l->defer_source, http_on_defer_prepare);
        if (r < 0)
                return r;
        http_listener_arm_timer(l);
        return 0;
}

static void http_listener_done(HttpListener *l) {
        l->io_source = sd_event_source_disable_unref(l->io_source);
        l->timer_source = sd_event_source_disable_unref(l->timer_source);
        l->defer_source = sd_event_source_disable_unref(l->defer_source);
        if (l->daemon) {
                MHD_stop_daemon(l->daemon);
                l->daemon = NULL;
        }
        l->fd = safe_close(l->fd);
}

bool http_sockaddr_is_loopback(const struct sockaddr *sa, socklen_t len) {
        if (sa->sa_family == AF_UNIX)
                return true;
        if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in))
                return (ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr) >> 24) == 127;
        if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
                const struct in6_addr *a = &((const struct sockaddr_in6 *) sa)->sin6_addr;

                return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
        }
        return false; /* the wildcard, a real address, or a family we do not know */
}

/* A listener other machines can reach carries receipts and bearer tokens over the network: only with TLS
 * and a POS token, unless the configuration accepts the risk. */
static int http_server_check_exposure(HttpServer *s, const struct sockaddr *sa, socklen_t len,
                                      const char *what) {
        const char *missing;

        if (http_sockaddr_is_loopback(sa, len) || (s->tls_key && s->pos_token))
                return 0;
        missing = !s->tls_key && !s->pos_token ? "neither TLS nor a POS token is configured"
                  : !s->tls_key                ? "TLS is not configured"
                                               : "no POS token is configured";
        if (s->options.allow_insecure) {
                log_warning("Serving HTTP on %s, which is not a loopback address, although %s ([HTTP] "
                            "AllowInsecure=yes): anyone on the network can read what crosses it or submit "
                            "receipts.", what, missing);
                return 0;
        }
        return log_error_errno(EPERM,
                               "Refusing to serve HTTP on %s: it is not a loopback address and %s. Set "
                               "[HTTP] TLSCertificate= and TLSKey= (credentials tls-certificate and "
                               "tls-key) and [HTTP] PosToken= (credential pos-token), or [HTTP] "
                               "AllowInsecure=yes to serve it anyway.",
                               what, missing);
}

static int http_bind(HttpServer *s, const char *listen_address, int *ret_fd) {
        _cleanup_free_ char *host = NULL;
        _cleanup_close_ int fd = -1;
        struct addrinfo hints = {
                .ai_family = AF_UNSPEC,
                .ai_socktype = SOCK_STREAM,
                .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
        };
        struct addrinfo *res = NULL;
        const char *colon = strrchr(listen_address, ':');
        int r;

        if (!colon)
                return log_error_errno(EINVAL, "Not an address with a port: %s", listen_address);
        if (listen_address[0] == '[')
                host = strndup(listen_address + 1, (size_t) (colon - listen_address - 2));
        else
                host = strndup(listen_address, (size_t) (colon - listen_address));
        if (!host)
                return log_oom();

        r = getaddrinfo(host, colon + 1, &hints, &res);
        if (r != 0)
                return log_error_errno(r == EAI_SYSTEM ? errno : EADDRNOTAVAIL, "Failed to resolve %s: %s",
                                       listen_address, r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));

        /* Before anything is bound: a refused address is never listened on, not even for a moment. */
        r = http_server_check_exposure(s, res->ai_addr, res->ai_addrlen, listen_address);
        if (r < 0) {
                freeaddrinfo(res);
                return r;
        }

        fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                r = -errno;
                freeaddrinfo(res);
                return r;
        }
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int) { 1 }, sizeof(int));
        if (res->ai_family == AF_INET6)
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &(int) { 1 }, sizeof(int));
        if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                freeaddrinfo(res);
                return log_error_errno(r, "Failed to listen on %s: %m", listen_address);
        }
        freeaddrinfo(res);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int http_describe_fd(int fd, char **ret) {
        struct sockaddr_storage ss;
        socklen_t l = sizeof ss;
        char host[INET6_ADDRSTRLEN];

        if (getsockname(fd, (struct sockaddr *) &ss, &l) < 0)
                return -errno;
        if (ss.ss_family == AF_INET) {
                struct sockaddr_in *in = (struct sockaddr_in *) &ss;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
                return asprintf(ret, "%s:%u", host, ntohs(in->sin_port)) < 0 ? -ENOMEM : 0;
        }
        if (ss.ss_family == AF_INET6) {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;
                inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
                return asprintf(ret, "[%s]:%u", host, ntohs(in6->sin6_port)) < 0 ? -ENOMEM : 0;
        }
        return asprintf(ret, "fd %i", fd) < 0 ? -ENOMEM : 0;
}

static int http_server_add_listener(HttpServer *s, int fd) {
        _cleanup_free_ char *d = NULL;
        HttpListener *l;
        int r;

        l = reallocarray(s->listeners, s->n_listeners + 1, sizeof(HttpListener));
        if (!l)
                return -ENOMEM;
        s->listeners = l;
        l = &s->listeners[s->n_listeners];
        *l = (HttpListener) { .fd = -1 };
        s->n_listeners++;

        r = http_listener_start(s, l, fd);
        if (r < 0)
                return r;

        if (http_describe_fd(fd, &d) >= 0) {
                char *joined;
                if (asprintf(&joined, "%s%s%s", strempty(s->description), s->description ? ", " : "", d) >= 0) {
                        free(s->description);
                        s->description = joined;
                }
        }
        return 0;
}

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
        token_free(s->pos_token);
        token_free(s->admin_token);
        token_free(s->tls_certificate);
        token_free(s->tls_key);
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
