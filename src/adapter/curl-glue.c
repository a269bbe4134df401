/* SPDX-License-Identifier: MIT */
/* Owns the libcurl multi handle and the sd-event sources that drive it: one io source per socket libcurl
 * wants watched, one timer for libcurl's timeout, one defer source that hands finished transfers to their
 * callbacks. Also owns each request's easy handle, request body copy and response buffer. */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* asprintf */
#endif

#include <assert.h>
#include <limits.h>
#include <sys/epoll.h>

#include "curl-glue.h"
#include "curl-util.h"
#include "list.h"
#include "log.h"

typedef struct CurlSocket CurlSocket;

struct CurlSocket {
        CurlGlue *glue;
        curl_socket_t fd;
        sd_event_source *source;
        LIST_FIELDS(CurlSocket, sockets);
};

struct CurlGlue {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        sd_event_source *defer;
        CurlSocket *sockets;
        CurlRequest *requests;
        RateLimit warn_ratelimit;
        bool curl_initialized;
};

struct CurlRequest {
        CurlGlue *glue; /* NULL once detached by curl_glue_free() */
        LIST_FIELDS(CurlRequest, requests);

        CURL *easy;
        struct curl_slist *headers;
        char *url;
        char *body;
        size_t body_size;

        char *response;
        size_t response_size, response_allocated, max_response_size;
        bool response_too_large;
        bool response_oom;

        CurlRequestCallback callback;
        void *userdata;

        bool floating;          /* freed by the glue after the callback */
        bool in_multi;          /* added to the multi handle, callback still pending */
        bool dispatching;       /* inside its callback */
        bool curl_initialized;
        CURLcode result;
        char error_buffer[CURL_ERROR_SIZE];
};

static CurlSocket *curl_socket_free(CurlSocket *s) {
        if (!s)
                return NULL;

        if (s->glue)
                LIST_REMOVE(sockets, s->glue->sockets, s);
        sd_event_source_disable_unref(s->source);
        return mfree(s);
}

static void curl_glue_kick(CurlGlue *g) {
        /* Finished transfers are collected from a defer source rather than right here, so that user
         * callbacks never run nested inside libcurl calls or inside another callback of ours. */
        (void) sd_event_source_set_enabled(g->defer, SD_EVENT_ONESHOT);
}

static int curl_glue_on_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        CurlGlue *g = userdata;
        int action = 0, running = 0;
        CURLMcode mc;

        assert(g);

        if (revents & EPOLLIN)
                action |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                action |= CURL_CSELECT_OUT;
        if (revents & (EPOLLERR | EPOLLHUP))
                action |= CURL_CSELECT_ERR;

        /* May free this very source (CURL_POLL_REMOVE); sd-event copes, we must not touch it afterwards. */
        mc = curl_multi_socket_action(g->multi, fd, action, &running);
        if (mc != CURLM_OK && ratelimit_below(&g->warn_ratelimit, NULL))
                log_warning("libcurl failed to process an event on socket %i: %s", fd,
                            curl_multi_strerror(mc));

        curl_glue_kick(g);
        return 0;
}

static int curl_glue_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        CurlGlue *g = userp;
        CurlSocket *s = socketp;
        uint32_t events = 0;
        int r;

        assert(g);

        if (what == CURL_POLL_REMOVE) {
                curl_socket_free(s);
                return 0;
        }

        if (what & CURL_POLL_IN)
                events |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                events |= EPOLLOUT;

        if (s) {
                r = sd_event_source_set_io_events(s->source, events);
                if (r < 0) {
                        log_debug("Failed to change events of socket %i: %s", fd, strerror(-r));
                        return -1;
                }
                return 0;
        }

        s = new0(CurlSocket, 1);
        if (!s)
                return -1;
        s->fd = fd;

        r = sd_event_add_io(g->event, &s->source, fd, events, curl_glue_on_io, g);
        if (r < 0) {
                log_debug("Failed to watch socket %i: %s", fd, strerror(-r));
                curl_socket_free(s);
                return -1;
        }
        (void) sd_event_source_set_description(s->source, "curl-socket");

        if (curl_multi_assign(g->multi, fd, s) != CURLM_OK) {
                curl_socket_free(s);
                return -1;
        }

        s->glue = g;
        LIST_PREPEND(sockets, g->sockets, s);
        return 0;
}

static int curl_glue_on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        CurlGlue *g = userdata;
        int running = 0;
        CURLMcode mc;

        assert(g);

        mc = curl_multi_socket_action(g->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        if (mc != CURLM_OK && ratelimit_below(&g->warn_ratelimit, NULL))
                log_warning("libcurl failed to process its timeout: %s", curl_multi_strerror(mc));

        curl_glue_kick(g);
        return 0;
}

static int curl_glue_on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
        CurlGlue *g = userp;
        int r;

        assert(g);

        /* Only when curl_glue_new() failed half-way and the multi handle is being cleaned up. */
        if (!g->timer)
                return timeout_ms < 0 ? 0 : -1;

        /* libcurl must not be called back from here; only (re)arm our single timer. */
        if (timeout_ms < 0)
                return sd_event_source_set_enabled(g->timer, SD_EVENT_OFF) < 0 ? -1 : 0;

        r = sd_event_source_set_time_relative(g->timer, (usec_t) timeout_ms * USEC_PER_MSEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(g->timer, SD_EVENT_ONESHOT);
        if (r < 0) {
                log_debug("Failed to arm the libcurl timer: %s", strerror(-r));
                return -1;
        }
        return 0;
}

static void curl_request_unlink(CurlRequest *r) {
        CurlGlue *g = r->glue;

        if (!g)
                return;
        LIST_REMOVE(requests, g->requests, r);
        r->glue = NULL;
}

static int curl_request_error(CurlRequest *r) {
        if (r->response_oom)
                return -ENOMEM;
        if (r->response_too_large || r->result == CURLE_FILESIZE_EXCEEDED)
                return -EFBIG;
        return curl_code_to_errno(r->result);
}

static void curl_request_complete(CurlRequest *r, CURLcode result) {
        long status = 0;
        bool floating;
        int error;

        assert(r->glue);
        assert(r->in_multi);

        (void) curl_multi_remove_handle(r->glue->multi, r->easy);
        r->in_multi = false;
        r->result = result;

        (void) curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        error = curl_request_error(r);

        /* A callback may free a request it owns; only a floating one is still ours afterwards. */
        floating = r->floating;
        r->dispatching = true;
        if (error < 0)
                r->callback(r, error, status, NULL, 0, r->userdata);
        else
                r->callback(r, 0, status, r->response ?: "", r->response_size, r->userdata);

        if (floating) {
                r->dispatching = false;
                curl_request_free(r);
        }
}

static int curl_glue_on_defer(sd_event_source *source, void *userdata) {
        CurlGlue *g = userdata;
        CURLMsg *msg;
        int left = 0;

        assert(g);

        /* One transfer per dispatch: the callback may free g, after which nothing here may be touched. */
        for (;;) {
                char *p = NULL;

                msg = curl_multi_info_read(g->multi, &left);
                if (!msg)
                        return 0;
                if (msg->msg != CURLMSG_DONE)
                        continue;

                if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &p) != CURLE_OK || !p) {
                        log_warning("libcurl reported a finished transfer we do not know, ignoring.");
                        continue;
                }

                if (left > 0)
                        (void) sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);

                curl_request_complete((CurlRequest *) p, msg->data.result);
                return 0;
        }
}

int curl_glue_new(CurlGlue **ret, sd_event *event) {
        _cleanup_(curl_glue_freep) CurlGlue *g = NULL;
        const curl_version_info_data *info;
        int r;

        assert(ret);
        assert(event);

        g = new0(CurlGlue, 1);
        if (!g)
                return -ENOMEM;
        g->event = sd_event_ref(event);
        g->warn_ratelimit = RATELIMIT_INIT(10 * USEC_PER_SEC, 5);

        /* Reference counted and thread-safe since libcurl 7.84. */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -EIO;
        g->curl_initialized = true;

        info = curl_version_info(CURLVERSION_NOW);
        if (!(info->features & CURL_VERSION_ASYNCHDNS))
                log_warning("libcurl %s resolves names synchronously, a slow DNS server will stall the "
                            "loop.", info->version);

        g->multi = curl_multi_init();
        if (!g->multi)
                return -ENOMEM;

        if (curl_multi_setopt(g->multi, CURLMOPT_SOCKETFUNCTION, curl_glue_on_socket) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_SOCKETDATA, g) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_TIMERFUNCTION, curl_glue_on_curl_timer) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_TIMERDATA, g) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_MAX_HOST_CONNECTIONS, CURL_GLUE_MAX_HOST_CONNECTIONS) !=
                    CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_MAXCONNECTS, CURL_GLUE_MAX_CACHED_CONNECTIONS) != CURLM_OK)
                return -EIO;

        /* Accuracy of 1 ms: libcurl's timeouts are short and the default 250 ms slack would stretch them. */
        r = sd_event_add_time_relative(event, &g->timer, CLOCK_MONOTONIC, 0, USEC_PER_MSEC,
                                       curl_glue_on_timer, g);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(g->timer, SD_EVENT_OFF);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(g->timer, "curl-timer");

        r = sd_event_add_defer(event, &g->defer, curl_glue_on_defer, g);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(g->defer, SD_EVENT_OFF);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(g->defer, "curl-done");

        *ret = TAKE_PTR(g);
        return 0;
}

CurlGlue *curl_glue_free(CurlGlue *g) {
        if (!g)
                return NULL;

        while (g->requests) {
                CurlRequest *r = g->requests;

                curl_request_cancel(r);
                curl_request_unlink(r);
                /* A floating request inside its callback is freed by curl_request_complete() afterwards. */
                if (r->floating && !r->dispatching)
                        curl_request_free(r);
        }

        /* May still call our socket and timer callbacks, so those stay intact until it returned. */
        curl_multi_cleanup(g->multi);

        while (g->sockets)
                curl_socket_free(g->sockets);

        sd_event_source_disable_unref(g->timer);
        sd_event_source_disable_unref(g->defer);
        sd_event_unref(g->event);

        if (g->curl_initialized)
                curl_global_cleanup();

        return mfree(g);
}

static size_t curl_request_on_body(char *data, size_t size, size_t nmemb, void *userdata) {
        CurlRequest *r = userdata;
        size_t n = size * nmemb;

        assert(r);

        if (n == 0)
                return 0;

        /* Returning less than n makes libcurl fail the transfer with CURLE_WRITE_ERROR. */
        if (n > r->max_response_size - r->response_size) {
                r->response_too_large = true;
                return 0;
        }

        if (r->response_size + n + 1 > r->response_allocated) {
                size_t a = MAX(r->response_size + n + 1,
                               MIN(r->response_allocated * 2, r->max_response_size + 1));
                char *p = realloc(r->response, a);

                if (!p) {
                        r->response_oom = true;
                        return 0;
                }
                r->response = p;
                r->response_allocated = a;
        }

        memcpy(r->response + r->response_size, data, n);
        r->response_size += n;
        r->response[r->response_size] = 0;
        return n;
}

static bool string_has_cr_or_lf(const char *s) {
        return s && strpbrk(s, "\r\n");
}

static bool method_is_valid(const char *method) {
        static const char *const methods[] = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE" };

        for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                if (streq(method, methods[i]))
                        return true;
        return false;
}

static long usec_to_msec_long(usec_t u) {
        usec_t ms = u / USEC_PER_MSEC + (u % USEC_PER_MSEC > 0);

        /* 0 would mean "no timeout" to libcurl. */
        return (long) CLAMP(ms, (usec_t) 1, (usec_t) LONG_MAX);
}

static int curl_request_add_header(CurlRequest *r, const char *line) {
        struct curl_slist *l = curl_slist_append(r->headers, line);

        if (!l)
                return -ENOMEM;
        r->headers = l;
        return 0;
}

static int curl_request_setup(CurlRequest *r, const char *method, const CurlRequestOptions *o) {
        bool with_body = !streq(method, "GET") && !streq(method, "HEAD");
        CURLcode c;
        int k;

/* Every option is required: a request that silently lost its timeout or TLS verification is worse than
 * none. */
#define SET(option, value)                                                      \
        do {                                                                    \
                c = curl_easy_setopt(r->easy, option, value);                   \
                if (c != CURLE_OK)                                              \
                        return curl_code_to_errno(c);                           \
        } while (0)

        SET(CURLOPT_PRIVATE, r);
        SET(CURLOPT_URL, r->url);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_PROTOCOLS_STR, "http,https");
        SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        SET(CURLOPT_SSL_VERIFYPEER, 1L);
        SET(CURLOPT_SSL_VERIFYHOST, 2L);
        SET(CURLOPT_CONNECTTIMEOUT_MS,
            usec_to_msec_long(o->connect_timeout ?: CURL_GLUE_CONNECT_TIMEOUT_DEFAULT_USEC));
        SET(CURLOPT_TIMEOUT_MS, usec_to_msec_long(o->timeout ?: CURL_GLUE_TIMEOUT_DEFAULT_USEC));
        SET(CURLOPT_TCP_KEEPALIVE, 1L);
        SET(CURLOPT_USERAGENT, PACKAGE_NAME "/" PACKAGE_VERSION);
        SET(CURLOPT_ERRORBUFFER, r->error_buffer);
        SET(CURLOPT_WRITEFUNCTION, curl_request_on_body);
        SET(CURLOPT_WRITEDATA, r);
        /* Refuses a too large response before its body arrives when Content-Length says so. */
        SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) r->max_response_size);

        if (streq(method, "GET"))
                SET(CURLOPT_HTTPGET, 1L);
        else if (streq(method, "HEAD"))
                SET(CURLOPT_NOBODY, 1L);
        else {
                SET(CURLOPT_POST, 1L);
                SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) r->body_size);
                SET(CURLOPT_POSTFIELDS, r->body);
                if (!streq(method, "POST"))
                        SET(CURLOPT_CUSTOMREQUEST, method);
        }

        if (o->bearer_token) {
                SET(CURLOPT_HTTPAUTH, (long) CURLAUTH_BEARER);
                SET(CURLOPT_XOAUTH2_BEARER, o->bearer_token);
        }
#undef SET

        if (with_body) {
                /* No "Expect: 100-continue" (libcurl asks it above 1 MiB, then waits a second for an
                 * upstream that may never say it), and no form content type invented by libcurl. */
                k = curl_request_add_header(r, "Expect:");
                if (k < 0)
                        return k;
                if (!o->content_type) {
                        k = curl_request_add_header(r, "Content-Type:");
                        if (k < 0)
                                return k;
                }
        }

        if (o->content_type) {
                _cleanup_free_ char *line = NULL;

                if (asprintf(&line, "Content-Type: %s", o->content_type) < 0)
                        return -ENOMEM;
                k = curl_request_add_header(r, line);
                if (k < 0)
                        return k;
        }

        for (const char *const *h = o->headers; h && *h; h++) {
                k = curl_request_add_header(r, *h);
                if (k < 0)
                        return k;
        }

        if (r->headers) {
                c = curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
                if (c != CURLE_OK)
                        return curl_code_to_errno(c);
        }

        return 0;
}

int curl_glue_request_new(CurlGlue *g, CurlRequest **ret, const char *method, const char *url,
                          const CurlRequestOptions *o, CurlRequestCallback cb, void *userdata) {
        static const CurlRequestOptions defaults = {};
        _cleanup_(curl_request_freep) CurlRequest *r = NULL;
        int k;

        assert(g);
        assert(method);
        assert(url);
        assert(cb);

        if (!o)
                o = &defaults;

        if (!method_is_valid(method))
                return -EINVAL;
        if (o->body_size > 0 && (streq(method, "GET") || streq(method, "HEAD")))
                return -EINVAL;
        if (o->body_size > 0 && !o->body)
                return -EINVAL;
        if (string_has_cr_or_lf(o->bearer_token) || string_has_cr_or_lf(o->content_type))
                return -EINVAL;
        for (const char *const *h = o->headers; h && *h; h++)
                if (string_has_cr_or_lf(*h) || !strchr(*h, ':'))
                        return -EINVAL;

        r = new0(CurlRequest, 1);
        if (!r)
                return -ENOMEM;

        /* A request may outlive its glue (detached by curl_glue_free()); its easy handle needs libcurl
         * initialized until it is freed. */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -EIO;
        r->curl_initialized = true;

        r->callback = cb;
        r->userdata = userdata;
        r->max_response_size = o->max_response_size ?: CURL_GLUE_MAX_RESPONSE_DEFAULT;

        r->url = strdup(url);
        if (!r->url)
                return -ENOMEM;

        /* Always a buffer, even for an empty body: libcurl would read stdin for a NULL POSTFIELDS. */
        r->body = malloc(o->body_size + 1);
        if (!r->body)
                return -ENOMEM;
        if (o->body_size > 0)
                memcpy(r->body, o->body, o->body_size);
        r->body[o->body_size] = 0;
        r->body_size = o->body_size;

        r->easy = curl_easy_init();
        if (!r->easy)
                return -ENOMEM;

        k = curl_request_setup(r, method, o);
        if (k < 0)
                return k;

        if (curl_multi_add_handle(g->multi, r->easy) != CURLM_OK)
                return -EIO;
        r->in_multi = true;

        r->glue = g;
        LIST_PREPEND(requests, g->requests, r);

        if (ret)
                *ret = TAKE_PTR(r);
        else
                TAKE_PTR(r)->floating = true;
        return 0;
}

void curl_request_cancel(CurlRequest *r) {
        if (!r || !r->in_multi)
                return;

        assert(r->glue);
        /* Also drops a finished-but-not-yet-dispatched message of this handle from libcurl's queue. */
        (void) curl_multi_remove_handle(r->glue->multi, r->easy);
        r->in_multi = false;
}

CurlRequest *curl_request_free(CurlRequest *r) {
        if (!r)
                return NULL;

        curl_request_cancel(r);
        curl_request_unlink(r);

        if (r->easy)
                curl_easy_cleanup(r->easy);
        curl_slist_free_all(r->headers);
        free(r->url);
        free(r->body);
        free(r->response);
        if (r->curl_initialized)
                curl_global_cleanup();
        return mfree(r);
}

int curl_request_get_header(CurlRequest *r, const char *name, const char **ret) {
        struct curl_header *h = NULL;

        assert(r);
        assert(name);
        assert(ret);

        /* Request -1 is the last response (after a redirect or "100 Continue"), and of a repeated header
         * the last instance counts, as for any HTTP client. */
        if (curl_easy_header(r->easy, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h)
                return -ENOENT;
        if (h->amount > 1 &&
            curl_easy_header(r->easy, name, h->amount - 1, CURLH_HEADER, -1, &h) != CURLHE_OK)
                return -ENOENT;

        *ret = h->value;
        return 0;
}

int curl_request_get_retry_after(CurlRequest *r, usec_t *ret) {
        curl_off_t seconds = 0;

        assert(r);
        assert(ret);

        if (curl_easy_getinfo(r->easy, CURLINFO_RETRY_AFTER, &seconds) != CURLE_OK || seconds <= 0)
                return -ENODATA;

        *ret = (usec_t) seconds > USEC_INFINITY / USEC_PER_SEC - 1 ? USEC_INFINITY
                                                                    : (usec_t) seconds * USEC_PER_SEC;
        return 0;
}

bool curl_request_was_sent(CurlRequest *r) {
        curl_off_t uploaded = 0;
        long header_bytes = 0;

        assert(r);

        if (curl_easy_getinfo(r->easy, CURLINFO_REQUEST_SIZE, &header_bytes) != CURLE_OK ||
            curl_easy_getinfo(r->easy, CURLINFO_SIZE_UPLOAD_T, &uploaded) != CURLE_OK)
                return false;

        return header_bytes > 0 && uploaded >= (curl_off_t) r->body_size;
}

usec_t curl_request_get_total_time(CurlRequest *r) {
        curl_off_t t = 0;

        assert(r);

        if (curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME_T, &t) != CURLE_OK || t < 0)
                return 0;
        return (usec_t) t;
}

const char *curl_request_get_error_message(CurlRequest *r) {
        assert(r);

        if (r->error_buffer[0])
                return r->error_buffer;
        if (r->in_multi || r->result == CURLE_OK)
                return "";
        return curl_easy_strerror(r->result);
}

const char *curl_request_get_url(CurlRequest *r) {
        assert(r);
        return r->url;
}
