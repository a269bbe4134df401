/* SPDX-License-Identifier: MIT */
#pragma once

/* What the pieces of the HTTP server share: its structures (the server, its listeners, connections, peers
 * and requests) and the functions each piece offers the others. Not for use outside http*.c. */

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "http.h"
#include "list.h"
#include "log.h"

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
        _HTTP_PHASE_MAX,
        _HTTP_PHASE_INVALID = -EINVAL,
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
        LIST_FIELDS(HttpConnection, peer); /* in HttpPeer.connections */

        HttpPhase phase;
        usec_t since; /* when the phase's clock started */
        LIST_FIELDS(HttpConnection, phase); /* in HttpServer.phase_head[phase] */
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
        LIST_FIELDS(HttpRequest, suspended); /* in HttpServer.suspended */
        bool answered;
        bool queued;
        unsigned status;
        struct MHD_Response *response;
};

/* http-connection.c: connections through their phases, per-address counts, eviction, deadlines. */
HttpConnection *http_connection_of(struct MHD_Connection *connection);
/* Moves the connection into `phase` and starts that phase's clock. */
void http_connection_enter(HttpConnection *c, HttpPhase phase);
/* MHD is closing the connection by itself: it no longer counts, and has no deadline. */
void http_connection_forget(HttpConnection *c);
const char *http_peer_to_string(const HttpPeer *p, char buf[static INET6_ADDRSTRLEN]);
void http_server_arm_deadlines(HttpServer *s);
int http_server_on_deadline(sd_event_source *source, uint64_t usec, void *userdata);
/* MHD's callbacks for connections (the listener is the closure). */
void *http_on_request_line(void *cls, const char *uri, struct MHD_Connection *connection);
void http_on_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe);

/* http-listener.c: MHD daemons inside sd-event, binding, the exposure check. */
/* MHD_run() in the next loop iteration, for answers given and connections closed. */
void http_listener_run_soon(HttpListener *l);
void http_listener_done(HttpListener *l);
int http_server_add_listener(HttpServer *s, int fd);
int http_server_check_exposure(HttpServer *s, const struct sockaddr *sa, socklen_t len, const char *what);
int http_bind(HttpServer *s, const char *listen_address, int *ret_fd);
int http_describe_fd(int fd, char **ret);

/* http.c: MHD's callbacks for requests (the listener is the closure). */
enum MHD_Result http_on_access(void *cls, struct MHD_Connection *connection, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **con_cls);
void http_on_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                       enum MHD_RequestTerminationCode toe);
