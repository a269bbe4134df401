/* SPDX-License-Identifier: MIT */
/* Runs CurlGlue inside a real sd-event loop against a loopback HTTP/1.1 server living in a thread of this
 * test (answers, 503 + Retry-After, hangs, closes without answering, counts connections) and against a
 * port nobody listens on. */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* memmem, strcasestr, accept4, pipe2, asprintf */
#endif

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "curl-glue.h"
#include "tests.h"

/* ---- the loopback server ---- */

#define SERVER_MAX_CONNECTIONS 64
#define SERVER_MAX_REQUEST (4U * 1024U * 1024U)

typedef struct ServerConnection {
        int fd;
        size_t size, allocated;
        char *buf;
} ServerConnection;

typedef struct TestServer {
        int listen_fd;
        int stop_pipe[2];
        uint16_t port;
        pthread_t thread;
        atomic_uint connections;
        atomic_uint requests;
        ServerConnection *conns[SERVER_MAX_CONNECTIONS];
} TestServer;

static void send_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

                if (k <= 0)
                        return; /* the client went away; nothing to assert from the server side */
                p += k;
                n -= (size_t) k;
        }
}

static void send_response(int fd, const char *status, const char *extra_headers, const char *body,
                          size_t n) {
        char head[512];
        int k;

        k = snprintf(head, sizeof head, "HTTP/1.1 %s\r\nContent-Length: %zu\r\n%s\r\n", status, n,
                     extra_headers ?: "");
        ASSERT_TRUE(k > 0 && (size_t) k < sizeof head);
        send_all(fd, head, (size_t) k);
        send_all(fd, body, n);
}

/* Answers one complete request; returns false when the connection is to be closed now. */
static bool server_handle(TestServer *s, ServerConnection *c, const char *headers, size_t header_size,
                          const char *body, size_t body_size) {
        char method[16], path[256], reply[512];
        const char *p;

        atomic_fetch_add(&s->requests, 1);

        if (sscanf(headers, "%15s %255s", method, path) != 2)
                return false;

        if (startswith(path, "/ok")) {
                int k = snprintf(reply, sizeof reply, "ok %s %s", method, path);

                send_response(c->fd, "200 OK", NULL, reply, (size_t) k);
        } else if (streq(path, "/echo"))
                send_response(c->fd, "200 OK", NULL, body, body_size);
        else if (streq(path, "/headers"))
                send_response(c->fd, "200 OK", NULL, headers, header_size);
        else if (streq(path, "/busy")) {
                static const char detail[] = "{\"detail\":\"busy\"}";

                send_response(c->fd, "503 Service Unavailable",
                              "Retry-After: 7\r\nContent-Type: application/json\r\n",
                              detail, strlen(detail));
        } else if ((p = startswith(path, "/status/"))) {
                (void) snprintf(reply, sizeof reply, "%s Whatever", p);
                send_response(c->fd, reply, NULL, "{}", 2);
        } else if (streq(path, "/hang"))
                ; /* never answer; the client gives up and closes */
        else if (streq(path, "/close"))
                return false;
        else if (streq(path, "/big") || streq(path, "/big-declared")) {
                static char big[4000];
                bool declared = streq(path, "/big-declared");

                memset(big, 'x', sizeof big);
                if (declared)
                        send_response(c->fd, "200 OK", NULL, big, sizeof big);
                else {
                        /* No Content-Length: the size is only known by reading to the end. */
                        static const char head[] = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";

                        send_all(c->fd, head, strlen(head));
                        send_all(c->fd, big, sizeof big);
                        return false;
                }
        } else
                send_response(c->fd, "404 Not Found", NULL, "{}", 2);

        return true;
}

/* Consumes every complete request in the buffer; false when the connection is to be closed. */
static bool server_process(TestServer *s, ServerConnection *c) {
        for (;;) {
                _cleanup_free_ char *headers = NULL;
                size_t header_size, body_size = 0, total;
                const char *cl;
                char *end;

                end = memmem(c->buf, c->size, "\r\n\r\n", 4);
                if (!end)
                        return c->size < SERVER_MAX_REQUEST;
                header_size = (size_t) (end - c->buf) + 4;

                headers = strndup(c->buf, header_size);
                ASSERT_NOT_NULL(headers);
                cl = strcasestr(headers, "\r\nContent-Length:");
                if (cl)
                        body_size = strtoul(cl + strlen("\r\nContent-Length:"), NULL, 10);

                total = header_size + body_size;
                if (total > SERVER_MAX_REQUEST)
                        return false;
                if (c->size < total)
                        return true;

                if (!server_handle(s, c, headers, header_size, c->buf + header_size, body_size))
                        return false;

                memmove(c->buf, c->buf + total, c->size - total);
                c->size -= total;
        }
}

static void server_drop(TestServer *s, size_t i) {
        safe_close(s->conns[i]->fd);
        free(s->conns[i]->buf);
        s->conns[i] = mfree(s->conns[i]);
}

static void *server_thread(void *userdata) {
        TestServer *s = userdata;

        for (;;) {
                struct pollfd pfd[SERVER_MAX_CONNECTIONS + 2] = {
                        { .fd = s->stop_pipe[0], .events = POLLIN },
                        { .fd = s->listen_fd, .events = POLLIN },
                };
                size_t idx[SERVER_MAX_CONNECTIONS], n = 2;

                for (size_t i = 0; i < SERVER_MAX_CONNECTIONS; i++)
                        if (s->conns[i]) {
                                idx[n - 2] = i;
                                pfd[n++] = (struct pollfd) { .fd = s->conns[i]->fd, .events = POLLIN };
                        }

                ASSERT_TRUE(poll(pfd, n, -1) >= 0);

                if (pfd[0].revents)
                        break;

                if (pfd[1].revents & POLLIN) {
                        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);

                        ASSERT_TRUE(fd >= 0);
                        atomic_fetch_add(&s->connections, 1);
                        for (size_t i = 0; i < SERVER_MAX_CONNECTIONS; i++)
                                if (!s->conns[i]) {
                                        s->conns[i] = new0(ServerConnection, 1);
                                        ASSERT_NOT_NULL(s->conns[i]);
                                        s->conns[i]->fd = TAKE_FD(fd);
                                        break;
                                }
                        safe_close(fd); /* full: refuse by closing */
                }

                for (size_t j = 2; j < n; j++) {
                        ServerConnection *c;
                        ssize_t k;

                        if (!pfd[j].revents)
                                continue;
                        c = s->conns[idx[j - 2]];
                        if (c->allocated - c->size < 65536) {
                                c->allocated = MAX(c->allocated * 2, (size_t) 131072);
                                c->buf = realloc(c->buf, c->allocated);
                                ASSERT_NOT_NULL(c->buf);
                        }
                        k = recv(c->fd, c->buf + c->size, c->allocated - c->size, 0);
                        if (k <= 0) {
                                server_drop(s, idx[j - 2]);
                                continue;
                        }
                        c->size += (size_t) k;
                        if (!server_process(s, c))
                                server_drop(s, idx[j - 2]);
                }
        }

        for (size_t i = 0; i < SERVER_MAX_CONNECTIONS; i++)
                if (s->conns[i])
                        server_drop(s, i);
        return NULL;
}

static TestServer *server_start(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t l = sizeof a;
        TestServer *s;

        s = new0(TestServer, 1);
        ASSERT_NOT_NULL(s);
        s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(s->listen_fd >= 0);
        ASSERT_OK(bind(s->listen_fd, (struct sockaddr *) &a, sizeof a));
        ASSERT_OK(listen(s->listen_fd, 128));
        ASSERT_OK(getsockname(s->listen_fd, (struct sockaddr *) &a, &l));
        s->port = ntohs(a.sin_port);
        ASSERT_OK(pipe2(s->stop_pipe, O_CLOEXEC));
        ASSERT_EQ(pthread_create(&s->thread, NULL, server_thread, s), 0);
        return s;
}

static void server_stop(TestServer *s) {
        ASSERT_EQ(write(s->stop_pipe[1], "x", 1), 1);
        ASSERT_EQ(pthread_join(s->thread, NULL), 0);
        safe_close(s->listen_fd);
        safe_close(s->stop_pipe[0]);
        safe_close(s->stop_pipe[1]);
        free(s);
}

static char *server_url(TestServer *s, const char *path) {
        char *u;

        ASSERT_TRUE(asprintf(&u, "http://127.0.0.1:%u%s", s->port, path) > 0);
        return u;
}

/* ---- loop helpers ---- */

typedef struct Outcome {
        unsigned calls;
        int error;
        long status;
        char *body;
        size_t body_size;
        bool body_was_null;
        bool was_sent;
        usec_t total_time;
        usec_t finished_at;
        unsigned *counter; /* shared completion counter, if any */
        bool free_in_callback;
        CurlRequest *req;
} Outcome;

static void outcome_done(Outcome *o) {
        free(o->body);
        *o = (Outcome) {};
}

static void on_done(CurlRequest *req, int error, long status, const char *body, size_t body_size,
                    void *userdata) {
        Outcome *o = userdata;

        o->calls++;
        o->error = error;
        o->status = status;
        o->body_was_null = !body;
        free(o->body);
        o->body = body ? strndup(body, body_size) : NULL;
        o->body_size = body_size;
        o->was_sent = curl_request_was_sent(req);
        o->total_time = curl_request_get_total_time(req);
        o->finished_at = now(CLOCK_MONOTONIC);
        if (o->counter)
                (*o->counter)++;
        if (o->free_in_callback) {
                ASSERT_TRUE(o->req == req);
                o->req = curl_request_free(req);
        }
}

/* Runs the loop until *counter reaches target (counter NULL: for the whole limit). */
static void run_until(sd_event *e, const unsigned *counter, unsigned target, usec_t limit) {
        usec_t end = now(CLOCK_MONOTONIC) + limit;

        for (;;) {
                usec_t n = now(CLOCK_MONOTONIC);

                if ((counter && *counter >= target) || n >= end)
                        return;
                ASSERT_OK(sd_event_run(e, end - n));
        }
}

typedef struct Fixture {
        sd_event *event;
        CurlGlue *glue;
        TestServer *server;
} Fixture;

static Fixture fixture_new(void) {
        Fixture f = {};

        ASSERT_OK(sd_event_new(&f.event));
        ASSERT_OK(curl_glue_new(&f.glue, f.event));
        f.server = server_start();
        return f;
}

static void fixture_done(Fixture *f) {
        f->glue = curl_glue_free(f->glue);
        /* Every source of the glue must be gone; a leftover one would keep the loop alive and leak it. */
        f->event = sd_event_unref(f->event);
        server_stop(f->server);
}

/* One request, run to completion. */
static Outcome fetch(Fixture *f, const char *method, const char *path, const CurlRequestOptions *o) {
        _cleanup_(curl_request_freep) CurlRequest *r = NULL;
        _cleanup_free_ char *url = server_url(f->server, path);
        Outcome out = {};

        ASSERT_OK(curl_glue_request_new(f->glue, &r, method, url, o, on_done, &out));
        ASSERT_STREQ(curl_request_get_url(r), url);
        /* Nothing is called back synchronously. */
        ASSERT_EQ(out.calls, 0);
        run_until(f->event, &out.calls, 1, 10 * USEC_PER_SEC);
        ASSERT_EQ(out.calls, 1);
        return out;
}

/* ---- tests ---- */

static void test_get_delivers_status_and_body(void) {
        Fixture f = fixture_new();
        Outcome o = fetch(&f, "GET", "/ok", NULL);

        ASSERT_EQ(o.error, 0);
        ASSERT_EQ(o.status, 200);
        ASSERT_STREQ(o.body, "ok GET /ok");
        ASSERT_EQ(o.body_size, strlen("ok GET /ok"));
        ASSERT_TRUE(o.was_sent);
        ASSERT_TRUE(o.total_time > 0);
        ASSERT_TRUE(o.total_time < 5 * USEC_PER_SEC);

        outcome_done(&o);
        fixture_done(&f);
}

static void test_host_name_is_resolved_without_blocking(void) {
        _cleanup_(curl_request_freep) CurlRequest *r = NULL;
        _cleanup_free_ char *url = NULL;
        Fixture f = fixture_new();
        Outcome o = {};

        /* A name, not an address: goes through libcurl's threaded resolver, whose wake-up socket is one more
         * io source on our loop. "localhost" may yield ::1 first, where nobody listens; libcurl moves on. */
        ASSERT_TRUE(asprintf(&url, "http://localhost:%u/ok/name", f.server->port) > 0);
        ASSERT_OK(curl_glue_request_new(f.glue, &r, "GET", url, NULL, on_done, &o));
        run_until(f.event, &o.calls, 1, 10 * USEC_PER_SEC);
        ASSERT_EQ(o.calls, 1);
        ASSERT_EQ(o.error, 0);
        ASSERT_STREQ(o.body, "ok GET /ok/name");

        outcome_done(&o);
        r = curl_request_free(r);
        fixture_done(&f);
}

static void test_post_sends_body_content_type_token_and_headers(void) {
        static const char json[] = "{\"receipt\":\"r-1\",\"total\":12345}";
        const char *const extra[] = { "Idempotency-Key: r-1", "X-Test: yes", NULL };
        CurlRequestOptions opts = {
                .body = json,
                .body_size = strlen(json),
                .content_type = "application/json",
                .bearer_token = "s3cret-token",
                .headers = extra,
        };
        const size_t big_size = 1200000;
        _cleanup_free_ char *big = NULL;
        Fixture f = fixture_new();
        Outcome o;

        o = fetch(&f, "POST", "/echo", &opts);
        ASSERT_EQ(o.error, 0);
        ASSERT_EQ(o.status, 200);
        ASSERT_STREQ(o.body, json);
        ASSERT_TRUE(o.was_sent);
        outcome_done(&o);

        o = fetch(&f, "POST", "/headers", &opts);
        ASSERT_EQ(o.error, 0);
        ASSERT_TRUE(startswith(o.body, "POST /headers HTTP/1.1\r\n"));
        ASSERT_NOT_NULL(strstr(o.body, "\r\nAuthorization: Bearer s3cret-token\r\n"));
        ASSERT_NOT_NULL(strstr(o.body, "\r\nContent-Type: application/json\r\n"));
        ASSERT_NOT_NULL(strstr(o.body, "\r\nIdempotency-Key: r-1\r\n"));
        ASSERT_NOT_NULL(strstr(o.body, "\r\nX-Test: yes\r\n"));
        ASSERT_NOT_NULL(strstr(o.body, "\r\nUser-Agent: " PACKAGE_NAME "/" PACKAGE_VERSION "\r\n"));
        ASSERT_NULL(strcasestr(o.body, "\r\nExpect:"));
        outcome_done(&o);

        /* Without a content type libcurl must not invent a form one. */
        opts.content_type = NULL;
        opts.bearer_token = NULL;
        o = fetch(&f, "PUT", "/headers", &opts);
        ASSERT_TRUE(startswith(o.body, "PUT /headers HTTP/1.1\r\n"));
        ASSERT_NULL(strcasestr(o.body, "\r\nContent-Type:"));
        ASSERT_NULL(strcasestr(o.body, "\r\nAuthorization:"));
        ASSERT_NOT_NULL(strstr(o.body, "\r\nContent-Length: 31\r\n"));
        outcome_done(&o);

        /* Above 1 MiB libcurl would ask "Expect: 100-continue" and wait for a server that may never say
         * it; the whole request goes out in one go instead. */
        big = malloc(big_size);
        ASSERT_NOT_NULL(big);
        memset(big, 'a', big_size);
        opts.body = big;
        opts.body_size = big_size;
        o = fetch(&f, "POST", "/headers", &opts);
        ASSERT_EQ(o.status, 200);
        ASSERT_NOT_NULL(strstr(o.body, "\r\nContent-Length: 1200000\r\n"));
        ASSERT_NULL(strcasestr(o.body, "\r\nExpect:"));
        ASSERT_TRUE(o.was_sent);
        outcome_done(&o);

        fixture_done(&f);
}

static void test_empty_post_is_sent_and_answered(void) {
        Fixture f = fixture_new();
        Outcome o = fetch(&f, "POST", "/ok/heartbeat", NULL);

        ASSERT_EQ(o.error, 0);
        ASSERT_EQ(o.status, 200);
        ASSERT_STREQ(o.body, "ok POST /ok/heartbeat");
        ASSERT_TRUE(o.was_sent);

        outcome_done(&o);
        fixture_done(&f);
}

static void test_status_and_retry_after_are_seen(void) {
        _cleanup_(curl_request_freep) CurlRequest *r = NULL, *r2 = NULL;
        Fixture f = fixture_new();
        _cleanup_free_ char *url = server_url(f.server, "/busy");
        _cleanup_free_ char *url2 = server_url(f.server, "/status/422");
        Outcome o = {}, o2 = {};
        const char *v = NULL;
        usec_t ra = 0;

        ASSERT_OK(curl_glue_request_new(f.glue, &r, "POST", url, NULL, on_done, &o));
        run_until(f.event, &o.calls, 1, 10 * USEC_PER_SEC);
        ASSERT_EQ(o.calls, 1);
        /* An HTTP error status is an answer, not a transport failure. */
        ASSERT_EQ(o.error, 0);
        ASSERT_EQ(o.status, 503);
        ASSERT_STREQ(o.body, "{\"detail\":\"busy\"}");
        ASSERT_OK(curl_request_get_header(r, "Retry-After", &v));
        ASSERT_STREQ(v, "7");
        ASSERT_OK(curl_request_get_header(r, "retry-after", &v));
        ASSERT_STREQ(v, "7");
        ASSERT_OK(curl_request_get_header(r, "content-type", &v));
        ASSERT_STREQ(v, "application/json");
        ASSERT_ERROR(curl_request_get_header(r, "X-Missing", &v), ENOENT);
        ASSERT_OK(curl_request_get_retry_after(r, &ra));
        ASSERT_EQ_U(ra, 7 * USEC_PER_SEC);

        ASSERT_OK(curl_glue_request_new(f.glue, &r2, "GET", url2, NULL, on_done, &o2));
        run_until(f.event, &o2.calls, 1, 10 * USEC_PER_SEC);
        ASSERT_EQ(o2.error, 0);
        ASSERT_EQ(o2.status, 422);
        ASSERT_ERROR(curl_request_get_retry_after(r2, &ra), ENODATA);
        ASSERT_ERROR(curl_request_get_header(r2, "Retry-After", &v), ENOENT);

        outcome_done(&o);
        outcome_done(&o2);
        r = curl_request_free(r);
        r2 = curl_request_free(r2);
        fixture_done(&f);
}

typedef struct Ticker {
        unsigned ticks;
        usec_t max_late;
} Ticker;

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        Ticker *t = userdata;
        usec_t n = now(CLOCK_MONOTONIC);

        t->ticks++;
        t->max_late = MAX(t->max_late, usec_sub_unsigned(n, usec));
        ASSERT_OK(sd_event_source_set_time(s, usec + 50 * USEC_PER_MSEC));
        ASSERT_OK(sd_event_source_set_enabled(s, SD_EVENT_ONESHOT));
        return 0;
}

static void test_hang_times_out_while_loop_keeps_running(void) {
        _cleanup_(sd_event_source_disable_unrefp) sd_event_source *tick = NULL;
        CurlRequestOptions opts = { .timeout = 600 * USEC_PER_MSEC };
        Fixture f = fixture_new();
        Ticker t = {};
        usec_t start;
        Outcome o;

        ASSERT_OK(sd_event_add_time_relative(f.event, &tick, CLOCK_MONOTONIC, 50 * USEC_PER_MSEC, 1,
                                             on_tick, &t));
        start = now(CLOCK_MONOTONIC);
        o = fetch(&f, "POST", "/hang", &opts);

        ASSERT_ERROR(o.error, ETIMEDOUT);
        ASSERT_EQ(o.status, 0);
        ASSERT_TRUE(o.body_was_null);
        /* The server read the whole request before it went silent: an unknown outcome. */
        ASSERT_TRUE(o.was_sent);
        ASSERT_TRUE(o.finished_at - start >= 600 * USEC_PER_MSEC);
        ASSERT_TRUE(o.finished_at - start < 1600 * USEC_PER_MSEC);
        /* 50 ms ticks over >= 600 ms, each on time: the loop was never blocked by the transfer. */
        fprintf(stderr, "   ticks=%u max_late=%" PRIu64 "us\n", t.ticks, t.max_late);
        ASSERT_TRUE(t.ticks >= 10);
        ASSERT_TRUE(t.max_late < 40 * USEC_PER_MSEC);

        outcome_done(&o);
        tick = sd_event_source_disable_unref(tick);
        fixture_done(&f);
}

static void test_refused_port_fails_with_econnrefused(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        _cleanup_(curl_request_freep) CurlRequest *r = NULL;
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *url = NULL;
        socklen_t l = sizeof a;
        sd_event *e = NULL;
        CurlRequestOptions opts;
        CurlGlue *g = NULL;
        Outcome o = {};

        /* Bound but not listening: connections are refused and no one else can take the port meanwhile. */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &a, sizeof a));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &a, &l));
        ASSERT_TRUE(asprintf(&url, "http://127.0.0.1:%u/ofd/v1/receipt", ntohs(a.sin_port)) > 0);

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(curl_glue_new(&g, e));
        opts = (CurlRequestOptions) { .body = "{}", .body_size = 2 };
        ASSERT_OK(curl_glue_request_new(g, &r, "POST", url, &opts, on_done, &o));
        run_until(e, &o.calls, 1, 10 * USEC_PER_SEC);
        ASSERT_EQ(o.calls, 1);
        ASSERT_ERROR(o.error, ECONNREFUSED);
        ASSERT_EQ(o.status, 0);
        ASSERT_TRUE(o.body_was_null);
        /* Never reached the upstream: safe to resend without any doubt. */
        ASSERT_FALSE(o.was_sent);
        ASSERT_TRUE(strlen(curl_request_get_error_message(r)) > 0);

        outcome_done(&o);
        r = curl_request_free(r);

        /* Without a body "sent" still needs the request headers to have gone out. */
        ASSERT_OK(curl_glue_request_new(g, &r, "POST", url, NULL, on_done, &o));
        run_until(e, &o.calls, 1, 10 * USEC_PER_SEC);
        ASSERT_ERROR(o.error, ECONNREFUSED);
        ASSERT_FALSE(o.was_sent);

        outcome_done(&o);
        r = curl_request_free(r);
        curl_glue_free(g);
        sd_event_unref(e);
}

static void test_body_stuck_in_transit_is_not_sent(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        const size_t big_size = 64U * 1024U * 1024U;
        _cleanup_(curl_request_freep) CurlRequest *r = NULL;
        _cleanup_free_ char *url = NULL, *big = NULL;
        _cleanup_close_ int fd = -1;
        socklen_t l = sizeof a;
        sd_event *e = NULL;
        CurlGlue *g = NULL;
        Outcome o = {};

        /* A listener that never accepts: the kernel completes the handshake and buffers a few MiB, then the
         * upload stalls. The headers went out, the body did not: the upstream cannot have acted on it. */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &a, sizeof a));
        ASSERT_OK(listen(fd, 4));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &a, &l));
        ASSERT_TRUE(asprintf(&url, "http://127.0.0.1:%u/ofd/v1/receipt", ntohs(a.sin_port)) > 0);
        big = calloc(1, big_size);
        ASSERT_NOT_NULL(big);

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(curl_glue_new(&g, e));
        ASSERT_OK(curl_glue_request_new(g, &r, "POST", url,
                                        &(CurlRequestOptions) { .body = big, .body_size = big_size,
                                                                .timeout = 700 * USEC_PER_MSEC },
                                        on_done, &o));
        run_until(e, &o.calls, 1, 10 * USEC_PER_SEC);
        ASSERT_EQ(o.calls, 1);
        ASSERT_ERROR(o.error, ETIMEDOUT);
        ASSERT_FALSE(o.was_sent);

        outcome_done(&o);
        r = curl_request_free(r);
        curl_glue_free(g);
        sd_event_unref(e);
}

static void test_close_without_answer_fails_with_econnreset_after_sending(void) {
        CurlRequestOptions opts = {
                .body = "{\"a\":1}",
                .body_size = 7,
                .content_type = "application/json",
        };
        Fixture f = fixture_new();
        Outcome o = fetch(&f, "POST", "/close", &opts);

        ASSERT_ERROR(o.error, ECONNRESET);
        ASSERT_TRUE(o.was_sent);
        ASSERT_TRUE(o.body_was_null);

        outcome_done(&o);
        fixture_done(&f);
}

static void test_cancelled_requests_never_call_back(void) {
        CurlRequest *before_loop = NULL, *in_flight = NULL;
        Fixture f = fixture_new();
        _cleanup_free_ char *hang = server_url(f.server, "/hang"), *ok = server_url(f.server, "/ok");
        Outcome o1 = {}, o2 = {}, o3 = {};

        ASSERT_OK(curl_glue_request_new(f.glue, &before_loop, "GET", ok, NULL, on_done, &o1));
        curl_request_cancel(before_loop);
        curl_request_cancel(before_loop); /* idempotent */

        ASSERT_OK(curl_glue_request_new(f.glue, &in_flight, "POST", hang, NULL, on_done, &o2));
        run_until(f.event, NULL, 0, 200 * USEC_PER_MSEC);
        ASSERT_EQ(atomic_load(&f.server->requests), 1); /* the hanging one reached the server */
        curl_request_cancel(in_flight);

        /* A request started afterwards completes normally, so the loop did run on. */
        o3 = fetch(&f, "GET", "/ok", NULL);
        ASSERT_EQ(o3.status, 200);
        run_until(f.event, NULL, 0, 200 * USEC_PER_MSEC);

        ASSERT_EQ(o1.calls, 0);
        ASSERT_EQ(o2.calls, 0);
        /* The "before the loop" one never reached the server: 1 hang + 1 ok. */
        ASSERT_EQ(atomic_load(&f.server->requests), 2);

        curl_request_free(before_loop);
        curl_request_free(in_flight);
        outcome_done(&o3);
        fixture_done(&f);
}

static void test_simultaneous_completions_are_all_delivered(void) {
        CurlRequestOptions opts = { .timeout = 300 * USEC_PER_MSEC };
        CurlRequest *reqs[8] = {};
        Outcome outs[8] = {};
        Fixture f = fixture_new();
        _cleanup_free_ char *hang = server_url(f.server, "/hang");
        unsigned done = 0;

        /* They all time out in one libcurl timer run; after that nothing else happens on the loop, so every
         * queued completion must be drained without further socket or timer events. */
        for (size_t i = 0; i < ELEMENTSOF(reqs); i++) {
                outs[i].counter = &done;
                ASSERT_OK(curl_glue_request_new(f.glue, &reqs[i], "POST", hang, &opts, on_done, &outs[i]));
        }
        run_until(f.event, &done, ELEMENTSOF(reqs), 3 * USEC_PER_SEC);
        ASSERT_EQ(done, ELEMENTSOF(reqs));
        for (size_t i = 0; i < ELEMENTSOF(reqs); i++) {
                ASSERT_EQ(outs[i].calls, 1);
                ASSERT_ERROR(outs[i].error, ETIMEDOUT);
                outcome_done(&outs[i]);
                curl_request_free(reqs[i]);
        }
        fixture_done(&f);
}

typedef struct Group {
        CurlRequest *reqs[10];
        unsigned calls;
} Group;

static void on_group_done(CurlRequest *req, int error, long status, const char *body, size_t body_size,
                          void *userdata) {
        Group *gr = userdata;

        gr->calls++;
        /* The first one to finish frees all the others, some of which may already be finished and queued. */
        for (size_t i = 0; i < ELEMENTSOF(gr->reqs); i++)
                if (gr->reqs[i] != req)
                        gr->reqs[i] = curl_request_free(gr->reqs[i]);
}

static void test_freeing_other_requests_from_a_callback_silences_them(void) {
        CurlRequestOptions opts = { .timeout = 300 * USEC_PER_MSEC };
        Fixture f = fixture_new();
        _cleanup_free_ char *hang = server_url(f.server, "/hang");
        Group gr = {};

        /* Equal timeouts expire in the same libcurl timer run, so when the first callback runs the others
         * are finished too, queued in libcurl: freeing them must drop those messages (or ASan complains). */
        for (size_t i = 0; i < ELEMENTSOF(gr.reqs); i++)
                ASSERT_OK(curl_glue_request_new(f.glue, &gr.reqs[i], "GET", hang, &opts, on_group_done,
                                                &gr));
        run_until(f.event, NULL, 0, 800 * USEC_PER_MSEC);
        ASSERT_EQ(gr.calls, 1);

        for (size_t i = 0; i < ELEMENTSOF(gr.reqs); i++)
                curl_request_free(gr.reqs[i]);
        fixture_done(&f);
}

static void test_twenty_parallel_requests_all_complete_on_few_connections(void) {
        CurlRequest *reqs[20] = {};
        Outcome outs[20] = {};
        Fixture f = fixture_new();
        unsigned done = 0;

        for (size_t i = 0; i < ELEMENTSOF(reqs); i++) {
                _cleanup_free_ char *path = NULL, *url = NULL;

                ASSERT_TRUE(asprintf(&path, "/ok/%zu", i) > 0);
                url = server_url(f.server, path);
                outs[i].counter = &done;
                CurlRequestOptions opts = { .body = path, .body_size = strlen(path) };

                ASSERT_OK(curl_glue_request_new(f.glue, &reqs[i], "POST", url, &opts, on_done, &outs[i]));
        }
        run_until(f.event, &done, ELEMENTSOF(reqs), 10 * USEC_PER_SEC);
        ASSERT_EQ(done, ELEMENTSOF(reqs));

        for (size_t i = 0; i < ELEMENTSOF(reqs); i++) {
                char expected[64];

                snprintf(expected, sizeof expected, "ok POST /ok/%zu", i);
                ASSERT_EQ(outs[i].calls, 1);
                ASSERT_EQ(outs[i].error, 0);
                ASSERT_EQ(outs[i].status, 200);
                ASSERT_STREQ(outs[i].body, expected);
                outcome_done(&outs[i]);
                curl_request_free(reqs[i]);
        }

        fprintf(stderr, "   connections=%u for 20 requests\n", atomic_load(&f.server->connections));
        ASSERT_EQ(atomic_load(&f.server->requests), 20);
        ASSERT_TRUE(atomic_load(&f.server->connections) <= (unsigned) CURL_GLUE_MAX_HOST_CONNECTIONS);
        fixture_done(&f);
}

typedef struct Chain {
        CurlGlue *glue;
        const char *url;
        CurlRequest *current;
        unsigned left, ok;
} Chain;

static void on_chain_done(CurlRequest *req, int error, long status, const char *body, size_t body_size,
                          void *userdata) {
        Chain *c = userdata;

        if (error == 0 && status == 200)
                c->ok++;
        ASSERT_TRUE(c->current == req);
        c->current = curl_request_free(req);
        if (--c->left > 0)
                ASSERT_OK(curl_glue_request_new(c->glue, &c->current, "POST", c->url, NULL, on_chain_done,
                                                c));
}

static void test_sequential_requests_reuse_one_connection(void) {
        Fixture f = fixture_new();
        _cleanup_free_ char *url = server_url(f.server, "/ok/seq");
        Chain c = { .glue = f.glue, .url = url, .left = 5 };

        /* Each request is started from the previous one's callback. */
        ASSERT_OK(curl_glue_request_new(f.glue, &c.current, "POST", url, NULL, on_chain_done, &c));
        run_until(f.event, &c.ok, 5, 10 * USEC_PER_SEC);
        ASSERT_EQ(c.ok, 5);
        ASSERT_NULL(c.current);
        ASSERT_EQ(atomic_load(&f.server->requests), 5);
        ASSERT_EQ(atomic_load(&f.server->connections), 1);
        fixture_done(&f);
}

static void test_response_over_the_limit_fails_with_efbig(void) {
        CurlRequestOptions opts = { .max_response_size = 1000 };
        Fixture f = fixture_new();
        Outcome o;

        o = fetch(&f, "GET", "/big", &opts);
        ASSERT_ERROR(o.error, EFBIG);
        ASSERT_TRUE(o.body_was_null);
        outcome_done(&o);

        o = fetch(&f, "GET", "/big-declared", &opts);
        ASSERT_ERROR(o.error, EFBIG);
        outcome_done(&o);

        /* Exactly at the limit is fine. */
        opts.max_response_size = 4000;
        o = fetch(&f, "GET", "/big", &opts);
        ASSERT_EQ(o.error, 0);
        ASSERT_EQ(o.body_size, 4000);
        outcome_done(&o);

        fixture_done(&f);
}

static void test_other_schemes_are_refused(void) {
        static const char *const urls[] = {
                "file:///etc/hostname",
                "ftp://127.0.0.1/",
                "gopher://127.0.0.1/",
        };
        sd_event *e = NULL;
        CurlGlue *g = NULL;

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(curl_glue_new(&g, e));
        for (size_t i = 0; i < ELEMENTSOF(urls); i++) {
                _cleanup_(curl_request_freep) CurlRequest *r = NULL;
                Outcome o = {};

                ASSERT_OK(curl_glue_request_new(g, &r, "GET", urls[i], NULL, on_done, &o));
                run_until(e, &o.calls, 1, 5 * USEC_PER_SEC);
                ASSERT_EQ(o.calls, 1);
                ASSERT_ERROR(o.error, EINVAL);
                ASSERT_TRUE(o.body_was_null);
                outcome_done(&o);
        }
        curl_glue_free(g);
        sd_event_unref(e);
}

static void test_invalid_arguments_are_rejected(void) {
        static const char *const bad_header[] = { "X-A: 1\r\nX-Injected: 2", NULL };
        static const char *const no_colon[] = { "X-A 1", NULL };
        static const struct {
                const char *method;
                CurlRequestOptions opts;
        } cases[] = {
                { "FETCH", {} },
                { "get", {} },
                { "GET", { .body = "x", .body_size = 1 } },
                { "HEAD", { .body = "x", .body_size = 1 } },
                { "POST", { .body_size = 1 } },
                { "POST", { .headers = bad_header } },
                { "POST", { .headers = no_colon } },
                { "POST", { .bearer_token = "a\nb" } },
                { "POST", { .content_type = "text/plain\r\nX-Injected: 1" } },
        };
        sd_event *e = NULL;
        CurlGlue *g = NULL;
        Outcome o = {};

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(curl_glue_new(&g, e));
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                CurlRequest *r = NULL;

                ASSERT_ERROR(curl_glue_request_new(g, &r, cases[i].method, "http://127.0.0.1:9/",
                                                   &cases[i].opts, on_done, &o),
                             EINVAL);
                ASSERT_NULL(r);
        }
        run_until(e, NULL, 0, 100 * USEC_PER_MSEC);
        ASSERT_EQ(o.calls, 0);
        curl_glue_free(g);
        sd_event_unref(e);
}

static void test_request_freed_in_its_own_callback(void) {
        Fixture f = fixture_new();
        _cleanup_free_ char *url = server_url(f.server, "/ok");
        Outcome o = { .free_in_callback = true };

        ASSERT_OK(curl_glue_request_new(f.glue, &o.req, "GET", url, NULL, on_done, &o));
        run_until(f.event, &o.calls, 1, 10 * USEC_PER_SEC);
        ASSERT_EQ(o.calls, 1);
        ASSERT_EQ(o.status, 200);
        ASSERT_NULL(o.req);
        outcome_done(&o);
        fixture_done(&f);
}

static void test_floating_requests_complete_and_are_freed(void) {
        Fixture f = fixture_new();
        _cleanup_free_ char *url = server_url(f.server, "/ok/floating");
        Outcome o = {};

        ASSERT_OK(curl_glue_request_new(f.glue, NULL, "POST", url, NULL, on_done, &o));
        run_until(f.event, &o.calls, 1, 10 * USEC_PER_SEC);
        ASSERT_EQ(o.calls, 1);
        ASSERT_STREQ(o.body, "ok POST /ok/floating");
        /* LeakSanitizer fails the test if the glue did not free it. */
        outcome_done(&o);
        fixture_done(&f);
}

static void test_glue_free_cancels_requests_in_flight(void) {
        Fixture f = fixture_new();
        _cleanup_free_ char *hang = server_url(f.server, "/hang");
        CurlRequest *owned = NULL;
        Outcome o1 = {}, o2 = {};

        ASSERT_OK(curl_glue_request_new(f.glue, NULL, "POST", hang, NULL, on_done, &o1));
        ASSERT_OK(curl_glue_request_new(f.glue, &owned, "POST", hang, NULL, on_done, &o2));
        run_until(f.event, NULL, 0, 200 * USEC_PER_MSEC);
        ASSERT_EQ(atomic_load(&f.server->requests), 2);

        f.glue = curl_glue_free(f.glue);
        run_until(f.event, NULL, 0, 100 * USEC_PER_MSEC);
        ASSERT_EQ(o1.calls, 0);
        ASSERT_EQ(o2.calls, 0);
        /* The owned request outlives the glue, detached, and is freed by its owner. */
        ASSERT_STREQ(curl_request_get_url(owned), hang);
        curl_request_free(owned);
        fixture_done(&f);
}

typedef struct Killer {
        CurlGlue **glue;
        unsigned calls;
} Killer;

static void on_free_glue(CurlRequest *req, int error, long status, const char *body, size_t body_size,
                         void *userdata) {
        Killer *k = userdata;

        k->calls++;
        /* The owner goes away as soon as it has its answer, taking its floating siblings with it. */
        *k->glue = curl_glue_free(*k->glue);
}

static void test_glue_freed_from_inside_a_callback(void) {
        Fixture f = fixture_new();
        _cleanup_free_ char *hang = server_url(f.server, "/hang");
        CurlRequestOptions opts = { .timeout = 300 * USEC_PER_MSEC };
        Killer k = { .glue = &f.glue };

        /* Finished together (equal timeouts), so floating siblings are queued when the glue goes away. */
        for (unsigned i = 0; i < 4; i++)
                ASSERT_OK(curl_glue_request_new(f.glue, NULL, "POST", hang, &opts, on_free_glue, &k));
        /* And one still in flight. */
        opts.timeout = 5 * USEC_PER_SEC;
        ASSERT_OK(curl_glue_request_new(f.glue, NULL, "POST", hang, &opts, on_free_glue, &k));
        run_until(f.event, NULL, 0, 800 * USEC_PER_MSEC);
        ASSERT_EQ(k.calls, 1);
        ASSERT_NULL(f.glue);
        fixture_done(&f);
}

int main(void) {
        TEST_RUN(test_get_delivers_status_and_body);
        TEST_RUN(test_host_name_is_resolved_without_blocking);
        TEST_RUN(test_post_sends_body_content_type_token_and_headers);
        TEST_RUN(test_empty_post_is_sent_and_answered);
        TEST_RUN(test_status_and_retry_after_are_seen);
        TEST_RUN(test_hang_times_out_while_loop_keeps_running);
        TEST_RUN(test_refused_port_fails_with_econnrefused);
        TEST_RUN(test_body_stuck_in_transit_is_not_sent);
        TEST_RUN(test_close_without_answer_fails_with_econnreset_after_sending);
        TEST_RUN(test_cancelled_requests_never_call_back);
        TEST_RUN(test_simultaneous_completions_are_all_delivered);
        TEST_RUN(test_freeing_other_requests_from_a_callback_silences_them);
        TEST_RUN(test_twenty_parallel_requests_all_complete_on_few_connections);
        TEST_RUN(test_sequential_requests_reuse_one_connection);
        TEST_RUN(test_response_over_the_limit_fails_with_efbig);
        TEST_RUN(test_other_schemes_are_refused);
        TEST_RUN(test_invalid_arguments_are_rejected);
        TEST_RUN(test_request_freed_in_its_own_callback);
        TEST_RUN(test_floating_requests_complete_and_are_freed);
        TEST_RUN(test_glue_free_cancels_requests_in_flight);
        TEST_RUN(test_glue_freed_from_inside_a_callback);
        return EXIT_SUCCESS;
}
