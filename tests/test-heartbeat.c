/* SPDX-License-Identifier: MIT */
/* Runs the heartbeat inside a real sd-event loop against tests/fake-upstream.py (started as a child, fed
 * failure modes through its /_control API) and against a port that refuses: the state walk, the payload
 * and token at the ERP, timeouts that neither block the loop nor overlap, the logging, reloads, stopping. */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* memfd_create, asprintf */
#endif

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "curl-glue.h"
#include "heartbeat.h"
#include "json-util.h"
#include "log.h"
#include "fake-upstream-client.h"
#include "tests.h"

#define ADAPTER_ID "kkt-test-0001"


/* ---- a heartbeat on a loop ---- */

typedef struct Beat {
        HeartbeatChange what;
        HeartbeatState state;
        unsigned successes, failures;
        usec_t when; /* CLOCK_MONOTONIC start of the beat */
        char result[32];
} Beat;

typedef struct Ctx {
        sd_event *event;
        CurlGlue *glue;
        Heartbeat *h;
        Beat beats[128];
        size_t n_beats;
        int payload_error;
        bool free_in_changed;
} Ctx;

static int on_payload(Heartbeat *h, json_object **ret_buffer, const char **ret_circuit_breaker,
                      void *userdata) {
        Ctx *c = userdata;
        json_object *b;

        if (c->payload_error < 0)
                return c->payload_error;

        b = json_object_new_object();
        ASSERT_NOT_NULL(b);
        ASSERT_OK(json_object_object_add(b, "pending", json_object_new_int64(3)));
        ASSERT_OK(json_object_object_add(b, "dead_lettered", json_object_new_int64(1)));
        ASSERT_OK(json_object_object_add(b, "capacity", json_object_new_int64(10000)));
        *ret_buffer = b;
        *ret_circuit_breaker = "half-open";
        return 0;
}

static void on_changed(Heartbeat *h, HeartbeatChange what, void *userdata) {
        Ctx *c = userdata;
        Beat *b;

        ASSERT_TRUE(h == c->h);
        ASSERT_TRUE(c->n_beats < ELEMENTSOF(c->beats));
        b = &c->beats[c->n_beats++];
        *b = (Beat) {
                .what = what,
                .state = heartbeat_get_state(h),
                .successes = heartbeat_get_consecutive_successes(h),
                .failures = heartbeat_get_consecutive_failures(h),
                /* The heartbeat's own start of the beat that ended: now() here comes later by however
                 * long the answer waited on a loaded machine, and not by the same amount each time. */
                .when = heartbeat_get_last_start(h),
        };
        snprintf(b->result, sizeof b->result, "%s", strna(heartbeat_get_last_result(h)));

        if (c->free_in_changed)
                c->h = heartbeat_free(h);
}

static HeartbeatOptions options(const char *url, usec_t interval, usec_t timeout, const char *token) {
        return (HeartbeatOptions) {
                .url = url,
                .interval = interval,
                .timeout = timeout,
                .online_threshold = 2,
                .offline_threshold = 3,
                .adapter_id = ADAPTER_ID,
                .token = token,
        };
}

static char *fake_url(const char *path) {
        char *u = NULL;

        ASSERT_TRUE(asprintf(&u, "http://127.0.0.1:%u%s", fake_port, path) > 0);
        return u;
}

static void ctx_init(Ctx *c, const char *url, usec_t interval, usec_t timeout, const char *token) {
        HeartbeatOptions o = options(url, interval, timeout, token);

        *c = (Ctx) {};
        ASSERT_OK(sd_event_new(&c->event));
        ASSERT_OK(curl_glue_new(&c->glue, c->event));
        ASSERT_OK(heartbeat_new(&c->h, c->event, c->glue, &o, on_payload, on_changed, c));
}

static void ctx_done(Ctx *c) {
        c->h = heartbeat_free(c->h);
        c->glue = curl_glue_free(c->glue);
        c->event = sd_event_unref(c->event);
}

typedef bool (*Predicate)(Ctx *c);

/* Runs the loop until pred holds; fails the test after `limit`. */
static void run_until(Ctx *c, Predicate pred, usec_t limit) {
        usec_t end = now(CLOCK_MONOTONIC) + limit;

        while (!pred(c)) {
                ASSERT_TRUE(now(CLOCK_MONOTONIC) < end);
                ASSERT_OK(sd_event_run(c->event, 10 * USEC_PER_MSEC));
        }
}

static void run_for(Ctx *c, usec_t duration) {
        usec_t end = now(CLOCK_MONOTONIC) + duration;

        while (now(CLOCK_MONOTONIC) < end)
                ASSERT_OK(sd_event_run(c->event, 10 * USEC_PER_MSEC));
}

static size_t beats_wanted;
static bool have_beats(Ctx *c) {
        return c->n_beats >= beats_wanted;
}

static void run_beats(Ctx *c, size_t total, usec_t limit) {
        beats_wanted = total;
        run_until(c, have_beats, limit);
}

static HeartbeatState state_wanted;
static bool have_state(Ctx *c) {
        return heartbeat_get_state(c->h) == state_wanted;
}

/* ---- unit tests ---- */

static void test_options_are_validated(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(curl_glue_freep) CurlGlue *g = NULL;
        Heartbeat *h = NULL;
        HeartbeatOptions o;

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(curl_glue_new(&g, e));

        o = options(NULL, USEC_PER_SEC, USEC_PER_SEC, NULL);
        ASSERT_ERROR(heartbeat_new(&h, e, g, &o, NULL, NULL, NULL), EINVAL);
        o = options("", USEC_PER_SEC, USEC_PER_SEC, NULL);
        ASSERT_ERROR(heartbeat_new(&h, e, g, &o, NULL, NULL, NULL), EINVAL);
        o = options("http://127.0.0.1:1/", 0, USEC_PER_SEC, NULL);
        ASSERT_ERROR(heartbeat_new(&h, e, g, &o, NULL, NULL, NULL), EINVAL);
        o = options("http://127.0.0.1:1/", USEC_PER_SEC, 0, NULL);
        ASSERT_ERROR(heartbeat_new(&h, e, g, &o, NULL, NULL, NULL), EINVAL);
        o = options("http://127.0.0.1:1/", USEC_PER_SEC, USEC_PER_SEC, NULL);
        o.online_threshold = 0;
        ASSERT_ERROR(heartbeat_new(&h, e, g, &o, NULL, NULL, NULL), EINVAL);
        o = options("http://127.0.0.1:1/", USEC_PER_SEC, USEC_PER_SEC, NULL);
        o.offline_threshold = 0;
        ASSERT_ERROR(heartbeat_new(&h, e, g, &o, NULL, NULL, NULL), EINVAL);
        o = options("http://127.0.0.1:1/", USEC_PER_SEC, USEC_PER_SEC, NULL);
        o.adapter_id = NULL;
        ASSERT_ERROR(heartbeat_new(&h, e, g, &o, NULL, NULL, NULL), EINVAL);
        ASSERT_NULL(h);

        o = options("http://127.0.0.1:1/", USEC_PER_SEC, USEC_PER_SEC, NULL);
        ASSERT_OK(heartbeat_new(&h, e, g, &o, NULL, NULL, NULL));
        ASSERT_EQ(heartbeat_get_state(h), HEARTBEAT_UNKNOWN);
        ASSERT_FALSE(heartbeat_is_running(h));
        ASSERT_EQ(heartbeat_get_last_beat(h), 0);
        ASSERT_NULL(heartbeat_get_last_result(h));

        /* A rejected reload changes nothing. */
        o = options("http://127.0.0.1:2/other", 0, USEC_PER_SEC, NULL);
        ASSERT_ERROR(heartbeat_set_options(h, &o), EINVAL);
        ASSERT_STREQ(heartbeat_get_url(h), "http://127.0.0.1:1/");
        heartbeat_free(h);
}

static void test_payload_has_timestamp_adapter_id_buffer_and_circuit_breaker(void) {
        _cleanup_(json_object_putp) json_object *p = NULL;
        Ctx c;

        ctx_init(&c, "http://127.0.0.1:1/hb", USEC_PER_SEC, USEC_PER_SEC, NULL);
        /* 2025-11-29 03:17:26.123456 UTC */
        ASSERT_OK(heartbeat_build_payload(c.h, 1764386246123456ULL, &p));
        ASSERT_STREQ(json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN),
                     "{\"timestamp\":\"2025-11-29T03:17:26.123Z\",\"adapter_id\":\"" ADAPTER_ID "\","
                     "\"buffer\":{\"pending\":3,\"dead_lettered\":1,\"capacity\":10000},"
                     "\"circuit_breaker\":\"half-open\"}");
        ctx_done(&c);
}

static void test_payload_without_buffer_status_sends_nulls(void) {
        _cleanup_(json_object_putp) json_object *p = NULL, *q = NULL;
        HeartbeatOptions o = options("http://127.0.0.1:1/hb", USEC_PER_SEC, USEC_PER_SEC, NULL);
        Heartbeat *h = NULL;
        Ctx c;

        ctx_init(&c, "http://127.0.0.1:1/hb", USEC_PER_SEC, USEC_PER_SEC, NULL);
        c.payload_error = -EIO;
        ASSERT_OK(heartbeat_build_payload(c.h, 0, &p));
        ASSERT_STREQ(json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN),
                     "{\"timestamp\":\"1970-01-01T00:00:00.000Z\",\"adapter_id\":\"" ADAPTER_ID "\","
                     "\"buffer\":null,\"circuit_breaker\":null}");

        /* No payload callback at all: the same shape. */
        ASSERT_OK(heartbeat_new(&h, c.event, c.glue, &o, NULL, NULL, NULL));
        ASSERT_OK(heartbeat_build_payload(h, 0, &q));
        ASSERT_TRUE(json_object_equal(p, q));
        heartbeat_free(h);
        ctx_done(&c);
}

static void test_url_shown_without_credentials_or_query(void) {
        static const struct {
                const char *url, *shown;
        } cases[] = {
                { "http://erp:pw@odoo.example:8069/api/v1/kkt/heartbeat?token=abc#x",
                  "http://odoo.example:8069/api/v1/kkt/heartbeat" },
                { "https://odoo.example/hb", "https://odoo.example/hb" },
                { "http://u@[::1]:8069?k=v", "http://[::1]:8069" },
                { "http://localhost:8069/a@b/c", "http://localhost:8069/a@b/c" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Ctx c;

                ctx_init(&c, cases[i].url, USEC_PER_SEC, USEC_PER_SEC, NULL);
                ASSERT_STREQ(heartbeat_get_url(c.h), cases[i].shown);
                ctx_done(&c);
        }
}

/* ---- against the fake ERP ---- */

static void test_state_goes_online_then_offline_then_online_again(void) {
        _cleanup_free_ char *url = fake_url("/heartbeat");
        Ctx c;

        fake_reset();
        ctx_init(&c, url, 200 * USEC_PER_MSEC, USEC_PER_SEC, NULL);
        ASSERT_EQ(heartbeat_get_state(c.h), HEARTBEAT_UNKNOWN);
        ASSERT_OK(heartbeat_start(c.h));
        ASSERT_TRUE(heartbeat_is_running(c.h));

        state_wanted = HEARTBEAT_ONLINE;
        run_until(&c, have_state, 5 * USEC_PER_SEC);
        ASSERT_EQ(c.n_beats, 2);
        ASSERT_EQ(c.beats[0].what, HEARTBEAT_CHANGE_BEAT);
        ASSERT_EQ(c.beats[0].state, HEARTBEAT_UNKNOWN);
        ASSERT_STREQ(c.beats[0].result, "ok");
        ASSERT_EQ(c.beats[1].what, HEARTBEAT_CHANGE_BEAT | HEARTBEAT_CHANGE_STATE);
        ASSERT_EQ(c.beats[1].successes, 2);

        fake_mode("{\"target\": \"erp\", \"mode\": \"fail\"}");
        state_wanted = HEARTBEAT_OFFLINE;
        run_until(&c, have_state, 5 * USEC_PER_SEC);
        ASSERT_EQ(c.n_beats, 5);
        for (size_t i = 2; i < 4; i++) {
                ASSERT_EQ(c.beats[i].what, HEARTBEAT_CHANGE_BEAT);
                ASSERT_EQ(c.beats[i].state, HEARTBEAT_ONLINE); /* 1 and 2 failures do not flip it */
                ASSERT_STREQ(c.beats[i].result, "http 500");
                ASSERT_EQ(c.beats[i].successes, 0);
                ASSERT_EQ(c.beats[i].failures, i - 1);
        }
        ASSERT_EQ(c.beats[4].what, HEARTBEAT_CHANGE_BEAT | HEARTBEAT_CHANGE_STATE);
        ASSERT_EQ(c.beats[4].failures, 3);

        fake_mode("{\"target\": \"erp\", \"mode\": \"accept\"}");
        state_wanted = HEARTBEAT_ONLINE;
        run_until(&c, have_state, 5 * USEC_PER_SEC);
        ASSERT_EQ(c.n_beats, 7);
        ASSERT_EQ(c.beats[5].what, HEARTBEAT_CHANGE_BEAT);
        ASSERT_EQ(c.beats[5].state, HEARTBEAT_OFFLINE); /* one success does not flip it */
        ASSERT_EQ(c.beats[5].failures, 0);
        ASSERT_EQ(c.beats[6].what, HEARTBEAT_CHANGE_BEAT | HEARTBEAT_CHANGE_STATE);

        ASSERT_EQ(heartbeat_get_beats(c.h), 7);
        ASSERT_EQ(fake_int("erp", "requests"), 7);
        ASSERT_EQ(heartbeat_get_skipped(c.h), 0);
        ctx_done(&c);
}

static void test_payload_and_token_arrive_at_erp(void) {
        _cleanup_(json_object_putp) json_object *root = NULL, *expected = NULL;
        _cleanup_free_ char *url = fake_url("/api/v1/kkt/heartbeat");
        json_object *erp, *bodies, *body, *v;
        const char *ts;
        Ctx c;

        fake_reset();
        ctx_init(&c, url, 10 * USEC_PER_SEC, USEC_PER_SEC, "tok-123.ABC");
        ASSERT_OK(heartbeat_start(c.h));
        run_beats(&c, 1, 5 * USEC_PER_SEC);
        ASSERT_STREQ(c.beats[0].result, "ok");

        erp = fake_state("erp", &root);
        ASSERT_TRUE(json_object_object_get_ex(erp, "bodies", &bodies));
        ASSERT_EQ(json_object_array_length(bodies), 1);
        body = json_object_array_get_idx(bodies, 0);

        ASSERT_TRUE(json_object_object_get_ex(body, "timestamp", &v));
        ts = json_object_get_string(v);
        ASSERT_EQ(strlen(ts), strlen("2025-11-29T03:17:26.123Z"));
        ASSERT_TRUE(ts[4] == '-' && ts[10] == 'T' && ts[19] == '.' && ts[23] == 'Z');
        ASSERT_TRUE(strncmp(ts, "20", 2) == 0);

        ASSERT_TRUE(json_object_object_get_ex(body, "adapter_id", &v));
        ASSERT_STREQ(json_object_get_string(v), ADAPTER_ID);
        ASSERT_TRUE(json_object_object_get_ex(body, "circuit_breaker", &v));
        ASSERT_STREQ(json_object_get_string(v), "half-open");
        ASSERT_TRUE(json_object_object_get_ex(body, "buffer", &v));
        expected = json_tokener_parse("{\"pending\": 3, \"dead_lettered\": 1, \"capacity\": 10000}");
        ASSERT_TRUE(json_object_equal(v, expected));

        ASSERT_TRUE(json_object_object_get_ex(erp, "last_authorization", &v));
        ASSERT_STREQ(json_object_get_string(v), "Bearer tok-123.ABC");
        ASSERT_TRUE(json_object_object_get_ex(erp, "last_content_type", &v));
        ASSERT_STREQ(json_object_get_string(v), "application/json");
        ASSERT_TRUE(json_object_object_get_ex(erp, "paths", &v));
        ASSERT_STREQ(json_object_get_string(json_object_array_get_idx(v, 0)), "/api/v1/kkt/heartbeat");
        ctx_done(&c);
}

static void test_without_token_no_authorization_header(void) {
        _cleanup_(json_object_putp) json_object *root = NULL;
        _cleanup_free_ char *url = fake_url("/heartbeat");
        json_object *erp, *v;
        Ctx c;

        fake_reset();
        ctx_init(&c, url, 10 * USEC_PER_SEC, USEC_PER_SEC, NULL);
        ASSERT_OK(heartbeat_start(c.h));
        run_beats(&c, 1, 5 * USEC_PER_SEC);

        erp = fake_state("erp", &root);
        ASSERT_EQ(json_object_get_int64(json_object_object_get(erp, "requests")), 1);
        ASSERT_TRUE(json_object_object_get_ex(erp, "last_authorization", &v));
        ASSERT_NULL(v);
        ctx_done(&c);
}

static void test_status_other_than_200_is_failure(void) {
        _cleanup_free_ char *url = fake_url("/heartbeat");
        Ctx c;

        fake_reset();
        fake_mode("{\"target\": \"erp\", \"mode\": \"status\", \"status\": 202}");
        ctx_init(&c, url, 100 * USEC_PER_MSEC, USEC_PER_SEC, NULL);
        ASSERT_OK(heartbeat_start(c.h));
        run_beats(&c, 3, 5 * USEC_PER_SEC);
        for (size_t i = 0; i < 3; i++)
                ASSERT_STREQ(c.beats[i].result, "http 202");
        ASSERT_EQ(heartbeat_get_consecutive_failures(c.h), 3);
        ASSERT_EQ(heartbeat_get_state(c.h), HEARTBEAT_OFFLINE);
        ctx_done(&c);
}

static void test_refused_connection_is_failure(void) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t l = sizeof sa;
        _cleanup_free_ char *url = NULL;
        _cleanup_close_ int fd = -1;
        Ctx c;

        /* Bound but not listening: the port stays ours and every connect is refused. */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &sa, &l));
        ASSERT_TRUE(asprintf(&url, "http://127.0.0.1:%u/heartbeat", ntohs(sa.sin_port)) > 0);

        ctx_init(&c, url, 100 * USEC_PER_MSEC, USEC_PER_SEC, NULL);
        ASSERT_OK(heartbeat_start(c.h));
        run_beats(&c, 3, 5 * USEC_PER_SEC);
        ASSERT_STREQ(c.beats[0].result, "connection refused");
        ASSERT_EQ(c.beats[2].what, HEARTBEAT_CHANGE_BEAT | HEARTBEAT_CHANGE_STATE);
        ASSERT_EQ(heartbeat_get_state(c.h), HEARTBEAT_OFFLINE);
        ctx_done(&c);
}

typedef struct Ticker {
        usec_t last, max_gap;
        unsigned n;
} Ticker;

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        Ticker *t = userdata;
        usec_t n = now(CLOCK_MONOTONIC);

        if (t->n++ > 0)
                t->max_gap = MAX(t->max_gap, n - t->last);
        t->last = n;
        ASSERT_OK(sd_event_source_set_time(s, n + 50 * USEC_PER_MSEC));
        ASSERT_OK(sd_event_source_set_enabled(s, SD_EVENT_ONESHOT));
        return 0;
}

static void test_hanging_erp_times_out_without_delaying_the_loop_or_overlapping(void) {
        _cleanup_(sd_event_source_disable_unrefp) sd_event_source *tick = NULL;
        _cleanup_free_ char *url = fake_url("/heartbeat");
        Ticker t = {};
        Ctx c;

        fake_reset();
        fake_mode("{\"target\": \"erp\", \"mode\": \"hang\"}");
        /* Timeout > Interval: ticks come while a beat hangs. Beats start at 0, 600, 1200, 1800 ms. */
        ctx_init(&c, url, 200 * USEC_PER_MSEC, 450 * USEC_PER_MSEC, NULL);
        ASSERT_OK(sd_event_add_time_relative(c.event, &tick, CLOCK_MONOTONIC, 50 * USEC_PER_MSEC, 1, on_tick,
                                             &t));
        ASSERT_OK(heartbeat_start(c.h));

        run_beats(&c, 3, 5 * USEC_PER_SEC);
        for (size_t i = 0; i < 3; i++)
                ASSERT_STREQ(c.beats[i].result, "timeout");
        /* Each timeout ended 450 ms after its start, and the next beat waited for the next tick: 600 ms from
         * start to start. */
        for (size_t i = 1; i < 3; i++)
                ASSERT_TRUE(c.beats[i].when - c.beats[i - 1].when >= 550 * USEC_PER_MSEC);
        ASSERT_EQ(heartbeat_get_state(c.h), HEARTBEAT_OFFLINE);
        ASSERT_TRUE(heartbeat_get_skipped(c.h) >= 4);

        /* The other timer on the loop kept its 50 ms rhythm all along. */
        ASSERT_TRUE(t.n >= 20);
        fprintf(stderr, "ticks %u, largest gap %" PRIu64 " ms\n", t.n, t.max_gap / USEC_PER_MSEC);
        ASSERT_TRUE(t.max_gap < 150 * USEC_PER_MSEC);

        /* The ERP never had two heartbeats at once. */
        ASSERT_EQ(fake_int("erp", "max_in_flight"), 1);
        ASSERT_TRUE(fake_int("erp", "hung") >= 3);
        ctx_done(&c);
}

static void test_interval_is_measured_from_the_start_of_each_beat(void) {
        _cleanup_free_ char *url = fake_url("/heartbeat");
        usec_t span;
        Ctx c;

        fake_reset();
        fake_mode("{\"target\": \"erp\", \"mode\": \"slow\", \"delay\": 0.15}");
        ctx_init(&c, url, 250 * USEC_PER_MSEC, 2 * USEC_PER_SEC, NULL);
        ASSERT_OK(heartbeat_start(c.h));
        run_beats(&c, 5, 5 * USEC_PER_SEC);

        /* Four intervals: 1000 ms from start to start; 1600 ms if measured from the end of each beat. */
        span = c.beats[4].when - c.beats[0].when;
        fprintf(stderr, "4 intervals took %" PRIu64 " ms\n", span / USEC_PER_MSEC);
        ASSERT_TRUE(span >= 950 * USEC_PER_MSEC);
        ASSERT_TRUE(span < 1300 * USEC_PER_MSEC);
        ASSERT_STREQ(c.beats[4].result, "ok");
        ASSERT_EQ(heartbeat_get_skipped(c.h), 0);
        ctx_done(&c);
}

static size_t count_lines_with(const char *text, const char *needle) {
        size_t n = 0;

        for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

static void test_failures_logged_once_per_kind_and_token_never(void) {
        _cleanup_free_ char *url = fake_url("/heartbeat"), *text = NULL;
        int saved, memfd;
        off_t size;
        Ctx c;

        fake_reset();
        memfd = memfd_create("log", MFD_CLOEXEC);
        ASSERT_TRUE(memfd >= 0);
        saved = dup(STDERR_FILENO);
        ASSERT_TRUE(saved >= 0);
        ASSERT_TRUE(dup2(memfd, STDERR_FILENO) >= 0);

        fake_mode("{\"target\": \"erp\", \"mode\": \"fail\"}");
        ctx_init(&c, url, 100 * USEC_PER_MSEC, USEC_PER_SEC, "s3cret-t0ken");
        ASSERT_OK(heartbeat_start(c.h));
        run_beats(&c, 5, 5 * USEC_PER_SEC);
        fake_mode("{\"target\": \"erp\", \"mode\": \"status\", \"status\": 503}");
        run_beats(&c, 8, 5 * USEC_PER_SEC);
        fake_mode("{\"target\": \"erp\", \"mode\": \"accept\"}");
        run_beats(&c, 11, 5 * USEC_PER_SEC);
        ctx_done(&c);

        ASSERT_TRUE(dup2(saved, STDERR_FILENO) >= 0);
        close(saved);
        size = lseek(memfd, 0, SEEK_END);
        ASSERT_TRUE(size > 0);
        text = malloc((size_t) size + 1);
        ASSERT_NOT_NULL(text);
        ASSERT_EQ(pread(memfd, text, (size_t) size, 0), size);
        text[size] = 0;
        close(memfd);
        fprintf(stderr, "%s", text);

        /* The beats that land on the mode switches may still see the old mode; the counts hold anyway. */
        ASSERT_EQ(count_lines_with(text, "failed: http 500"), 1);
        ASSERT_EQ(count_lines_with(text, "failed: http 503"), 1);
        ASSERT_EQ(count_lines_with(text, "succeeded again after \"http 503\""), 1);
        ASSERT_EQ(count_lines_with(text, "ERP heartbeat is offline"), 1);
        ASSERT_EQ(count_lines_with(text, "ERP heartbeat is online"), 1);
        ASSERT_EQ(count_lines_with(text, "s3cret"), 0);
}

static void test_reload_applies_from_the_next_beat(void) {
        _cleanup_(json_object_putp) json_object *root = NULL;
        _cleanup_free_ char *a = fake_url("/hb-a"), *b = fake_url("/hb-b?x=1"), *shown = NULL;
        HeartbeatOptions o;
        json_object *paths;
        Ctx c;

        fake_reset();
        ctx_init(&c, a, 150 * USEC_PER_MSEC, USEC_PER_SEC, NULL);
        ASSERT_OK(heartbeat_start(c.h));
        run_beats(&c, 1, 5 * USEC_PER_SEC);

        o = options(b, 700 * USEC_PER_MSEC, USEC_PER_SEC, "new-token");
        o.online_threshold = 1;
        ASSERT_OK(heartbeat_set_options(c.h, &o));
        ASSERT_TRUE(asprintf(&shown, "http://127.0.0.1:%u/hb-b", fake_port) > 0);
        ASSERT_STREQ(heartbeat_get_url(c.h), shown);
        run_beats(&c, 2, 5 * USEC_PER_SEC);

        /* The next beat came after the new interval, went to the new URL with the new token, and the new
         * threshold of 1 turned its success into online at once. */
        ASSERT_TRUE(c.beats[1].when - c.beats[0].when >= 600 * USEC_PER_MSEC);
        ASSERT_EQ(c.beats[1].what, HEARTBEAT_CHANGE_BEAT | HEARTBEAT_CHANGE_STATE);
        ASSERT_EQ(heartbeat_get_state(c.h), HEARTBEAT_ONLINE);
        fake_state("erp", &root);
        ASSERT_TRUE(json_object_object_get_ex(json_object_object_get(root, "erp"), "paths", &paths));
        ASSERT_EQ(json_object_array_length(paths), 2);
        ASSERT_STREQ(json_object_get_string(json_object_array_get_idx(paths, 0)), "/hb-a");
        ASSERT_STREQ(json_object_get_string(json_object_array_get_idx(paths, 1)), "/hb-b?x=1");
        ASSERT_STREQ(json_object_get_string(json_object_object_get(json_object_object_get(root, "erp"),
                                                                    "last_authorization")),
                     "Bearer new-token");
        ctx_done(&c);
}

static bool erp_has_one_request(Ctx *c) {
        return fake_int("erp", "requests") == 1;
}

static bool beating(Ctx *c) {
        return heartbeat_is_beating(c->h);
}

static bool erp_connection_closed(Ctx *c) {
        return fake_int("erp", "in_flight") == 0;
}

static void test_stop_and_free_cancel_the_beat_in_flight(void) {
        _cleanup_free_ char *url = fake_url("/heartbeat");
        Ctx c;

        fake_reset();
        fake_mode("{\"target\": \"erp\", \"mode\": \"hang\"}");
        ctx_init(&c, url, 100 * USEC_PER_MSEC, 5 * USEC_PER_SEC, NULL);
        ASSERT_OK(heartbeat_start(c.h));
        run_until(&c, erp_has_one_request, 5 * USEC_PER_SEC);
        ASSERT_TRUE(heartbeat_is_beating(c.h));

        heartbeat_stop(c.h);
        ASSERT_FALSE(heartbeat_is_running(c.h));
        ASSERT_FALSE(heartbeat_is_beating(c.h));
        /* The hung request's connection went away, and no beat and no callback came after the stop. */
        run_until(&c, erp_connection_closed, 3 * USEC_PER_SEC);
        run_for(&c, 300 * USEC_PER_MSEC);
        ASSERT_EQ(c.n_beats, 0);
        ASSERT_EQ(fake_int("erp", "requests"), 1);

        /* Started again: the first beat goes out at once; freed while it hangs. */
        ASSERT_OK(heartbeat_start(c.h));
        ASSERT_OK(heartbeat_start(c.h)); /* idempotent */
        run_until(&c, beating, 3 * USEC_PER_SEC);
        c.h = heartbeat_free(c.h);
        run_until(&c, erp_connection_closed, 3 * USEC_PER_SEC);
        ASSERT_EQ(c.n_beats, 0);
        ctx_done(&c);
}

static void test_changed_callback_may_free_the_heartbeat(void) {
        _cleanup_free_ char *url = fake_url("/heartbeat");
        Ctx c;

        fake_reset();
        ctx_init(&c, url, 100 * USEC_PER_MSEC, USEC_PER_SEC, NULL);
        c.free_in_changed = true;
        ASSERT_OK(heartbeat_start(c.h));
        run_beats(&c, 1, 5 * USEC_PER_SEC);
        ASSERT_NULL(c.h);
        run_for(&c, 300 * USEC_PER_MSEC);
        ASSERT_EQ(c.n_beats, 1);
        ctx_done(&c);
}

static void test_status_json(void) {
        _cleanup_(json_object_putp) json_object *before = NULL, *after = NULL;
        _cleanup_free_ char *url = fake_url("/heartbeat?secret=1"), *expected = NULL;
        const char *ts;
        Ctx c;

        fake_reset();
        ctx_init(&c, url, 2500 * USEC_PER_MSEC, USEC_PER_SEC, NULL);
        ASSERT_OK(heartbeat_to_json(c.h, &before));
        ASSERT_TRUE(asprintf(&expected,
                             "{\"running\":false,\"state\":\"unknown\",\"consecutive_successes\":0,"
                             "\"consecutive_failures\":0,\"last_beat\":null,\"last_result\":null,"
                             "\"interval_sec\":2,\"interval_usec\":2500000,"
                             "\"url\":\"http:\\/\\/127.0.0.1:%u\\/heartbeat\"}", fake_port) > 0);
        ASSERT_STREQ(json_object_to_json_string_ext(before, JSON_C_TO_STRING_PLAIN), expected);

        ASSERT_OK(heartbeat_start(c.h));
        run_beats(&c, 1, 5 * USEC_PER_SEC);
        ASSERT_OK(heartbeat_to_json(c.h, &after));
        ASSERT_TRUE(json_object_get_boolean(json_object_object_get(after, "running")));
        ASSERT_STREQ(json_object_get_string(json_object_object_get(after, "state")), "unknown");
        ASSERT_EQ(json_object_get_int64(json_object_object_get(after, "consecutive_successes")), 1);
        ASSERT_EQ(json_object_get_int64(json_object_object_get(after, "consecutive_failures")), 0);
        ASSERT_STREQ(json_object_get_string(json_object_object_get(after, "last_result")), "ok");
        ts = json_object_get_string(json_object_object_get(after, "last_beat"));
        ASSERT_NOT_NULL(ts);
        ASSERT_EQ(strlen(ts), strlen("2025-11-29T03:17:26.123Z"));
        ASSERT_TRUE(heartbeat_get_last_beat(c.h) > 0);
        ASSERT_TRUE(heartbeat_get_last_beat(c.h) <= now(CLOCK_REALTIME));
        ctx_done(&c);
}

int main(void) {
        log_setup(LOG_TARGET_CONSOLE);

        TEST_RUN(test_options_are_validated);
        TEST_RUN(test_payload_has_timestamp_adapter_id_buffer_and_circuit_breaker);
        TEST_RUN(test_payload_without_buffer_status_sends_nulls);
        TEST_RUN(test_url_shown_without_credentials_or_query);

        fake_start();
        TEST_RUN(test_state_goes_online_then_offline_then_online_again);
        TEST_RUN(test_payload_and_token_arrive_at_erp);
        TEST_RUN(test_without_token_no_authorization_header);
        TEST_RUN(test_status_other_than_200_is_failure);
        TEST_RUN(test_refused_connection_is_failure);
        TEST_RUN(test_hanging_erp_times_out_without_delaying_the_loop_or_overlapping);
        TEST_RUN(test_interval_is_measured_from_the_start_of_each_beat);
        TEST_RUN(test_failures_logged_once_per_kind_and_token_never);
        TEST_RUN(test_reload_applies_from_the_next_beat);
        TEST_RUN(test_stop_and_free_cancel_the_beat_in_flight);
        TEST_RUN(test_changed_callback_may_free_the_heartbeat);
        TEST_RUN(test_status_json);
        fake_stop();
        return 0;
}
