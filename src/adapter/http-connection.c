/* SPDX-License-Identifier: MIT */
/* Owns the HTTP server's view of its connections: each one's phase (headers, body, idle, answer) and the
 * deadline of that phase, the connections per peer address, and which one to evict when a new one needs
 * its place or to refuse when none may go. */

#include <search.h>

#include "http-internal.h"
#include "string-table.h"

/* What a connection in each phase is doing, for the log. */
static const char *const http_phase_table[_HTTP_PHASE_MAX] = {
        [HTTP_PHASE_HEADERS] = "sending its headers",
        [HTTP_PHASE_BODY] = "sending its body",
        [HTTP_PHASE_IDLE] = "idle",
        [HTTP_PHASE_ANSWER] = "taking its answer",
        [HTTP_PHASE_REFUSED] = "refused",
        [HTTP_PHASE_WORKING] = "being answered",
        [HTTP_PHASE_CLOSING] = "closing",
};

DEFINE_STRING_TABLE_LOOKUP_TO_STRING(http_phase, HttpPhase, static)

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

HttpConnection *http_connection_of(struct MHD_Connection *connection) {
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
        LIST_REMOVE_QUEUED(phase, s->phase_head[c->phase], s->phase_tail[c->phase], c);
}

/* Moves the connection into `phase` and starts that phase's clock. */
void http_connection_enter(HttpConnection *c, HttpPhase phase) {
        HttpServer *s = c->server;

        if (c->phase == HTTP_PHASE_CLOSING)
                return;
        http_connection_unlink_phase(c);
        c->phase = phase;
        c->since = now(CLOCK_MONOTONIC);
        if (phase >= _HTTP_PHASE_TIMED)
                return;
        LIST_APPEND(phase, s->phase_head[phase], s->phase_tail[phase], c);
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
void http_connection_forget(HttpConnection *c) {
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

const char *http_peer_to_string(const HttpPeer *p, char buf[static INET6_ADDRSTRLEN]) {
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
        if (c->peer)
                LIST_PREPEND(peer, c->peer->connections, c);
        return c;
}

static void http_connection_free(HttpConnection *c) {
        HttpServer *s;

        if (!c)
                return;
        s = c->server;
        http_connection_forget(c);
        if (c->peer) {
                LIST_REMOVE(peer, c->peer->connections, c);
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
                LIST_FOREACH(peer, c, peer->connections)
                        if (http_connection_evictable(c) &&
                            (!best || http_connection_deadline(c) < best_deadline)) {
                                best = c;
                                best_deadline = http_connection_deadline(c);
                        }
                return best;
        }
        /* Each list is in deadline order: only its first admitted connection can be the nearest. */
        for (HttpPhase p = HTTP_PHASE_HEADERS; p <= HTTP_PHASE_IDLE; p++)
                LIST_FOREACH(phase, c, s->phase_head[p])
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

void http_server_arm_deadlines(HttpServer *s) {
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

int http_server_on_deadline(sd_event_source *source, uint64_t usec, void *userdata) {
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

void *http_on_request_line(void *cls, const char *uri, struct MHD_Connection *connection) {
        HttpConnection *c = http_connection_of(connection);

        if (c && c->phase == HTTP_PHASE_IDLE)
                http_connection_enter(c, HTTP_PHASE_HEADERS);
        return NULL; /* the access handler's first call still sees no request */
}

void http_on_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
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
