/* SPDX-License-Identifier: MIT */
/* Owns the heartbeat's timer, its one in-flight request, the hysteresis machine it feeds, and the copies of
 * its options. Decides what counts as a success (HTTP 200, nothing else) and what gets logged. */

#include <assert.h>
#include <string.h>

#include "heartbeat.h"
#include "json-util.h"
#include "log.h"
#include "memory-util.h"
#include "message-ids.h"

/* Rate limit for failure and recovery messages; a change of the failure kind is what gets logged at all,
 * this only keeps a flapping ERP from filling the journal. */
#define HEARTBEAT_LOG_INTERVAL_USEC (10 * USEC_PER_MINUTE)
#define HEARTBEAT_LOG_BURST 10U

/* The ERP's answer is not used; a big one is a misconfigured URL, not a heartbeat. */
#define HEARTBEAT_MAX_RESPONSE ((size_t) 64 * 1024)

struct Heartbeat {
        sd_event *event;
        CurlGlue *glue;

        char *url;
        char *url_display;
        usec_t interval;
        usec_t timeout;
        char *adapter_id;
        char *token;

        HeartbeatPayloadFunc payload;
        HeartbeatChangedFunc changed;
        void *userdata;

        sd_event_source *timer;
        CurlRequest *request;
        bool running;
        usec_t last_start; /* CLOCK_MONOTONIC start of the last beat; 0: none since heartbeat_start() */

        HeartbeatMachine machine;
        usec_t last_beat;
        char *last_result;
        uint64_t n_beats;
        uint64_t n_skipped;

        char *logged_failure; /* the failure kind last logged; NULL after a success */
        RateLimit log_ratelimit;
        RateLimit payload_ratelimit;
};

static int options_validate(const HeartbeatOptions *o) {
        assert(o);

        if (isempty(o->url) || isempty(o->adapter_id))
                return -EINVAL;
        if (o->interval == 0 || o->interval == USEC_INFINITY || o->timeout == 0)
                return -EINVAL;
        if (o->online_threshold == 0 || o->offline_threshold == 0)
                return -EINVAL;
        return 0;
}

/* scheme://host[:port]/path: drops user:password@ and the query and fragment, which are the places where a
 * URL can carry a secret. */
static char *url_make_display(const char *url) {
        const char *sep, *authority, *end, *at, *tail;
        size_t scheme_len;
        char *d, *p;

        sep = strstr(url, "://");
        scheme_len = sep ? (size_t) (sep + 3 - url) : 0;
        authority = url + scheme_len;
        end = authority + strcspn(authority, "/?#");
        at = memrchr(authority, '@', (size_t) (end - authority));
        if (at)
                authority = at + 1;
        tail = end + strcspn(end, "?#");

        d = malloc(strlen(url) + 1);
        if (!d)
                return NULL;
        p = mempcpy(d, url, scheme_len);
        p = mempcpy(p, authority, (size_t) (tail - authority));
        *p = 0;
        return d;
}

static int heartbeat_apply_options(Heartbeat *h, const HeartbeatOptions *o) {
        _cleanup_free_ char *url = NULL, *display = NULL, *adapter_id = NULL;
        _cleanup_(erase_and_freep) char *token = NULL;
        int r;

        r = options_validate(o);
        if (r < 0)
                return r;

        url = strdup(o->url);
        display = url_make_display(o->url);
        adapter_id = strdup(o->adapter_id);
        if (!url || !display || !adapter_id)
                return -ENOMEM;
        if (o->token) {
                token = strdup(o->token);
                if (!token)
                        return -ENOMEM;
        }

        free(h->url);
        free(h->url_display);
        free(h->adapter_id);
        erase_and_free(h->token);
        h->url = TAKE_PTR(url);
        h->url_display = TAKE_PTR(display);
        h->adapter_id = TAKE_PTR(adapter_id);
        h->token = TAKE_PTR(token);
        h->interval = o->interval;
        h->timeout = o->timeout;
        h->machine.online_threshold = o->online_threshold;
        h->machine.offline_threshold = o->offline_threshold;
        return 0;
}

static usec_t heartbeat_timer_accuracy(Heartbeat *h) {
        /* Precise enough that the beats of a short test interval stay on time, coarse enough to let the
         * kernel coalesce the wake-ups of a 30 s interval. 0 would mean sd-event's default of 250 ms. */
        return CLAMP(h->interval / 100, (usec_t) 1, 100 * USEC_PER_MSEC);
}

int heartbeat_new(Heartbeat **ret, sd_event *event, CurlGlue *glue, const HeartbeatOptions *o,
                  HeartbeatPayloadFunc payload, HeartbeatChangedFunc changed, void *userdata) {
        _cleanup_(heartbeat_freep) Heartbeat *h = NULL;
        int r;

        assert(ret);
        assert(event);
        assert(glue);
        assert(o);

        r = options_validate(o);
        if (r < 0)
                return r;

        h = new0(Heartbeat, 1);
        if (!h)
                return -ENOMEM;

        h->event = sd_event_ref(event);
        h->glue = glue;
        h->payload = payload;
        h->changed = changed;
        h->userdata = userdata;
        h->log_ratelimit = RATELIMIT_INIT(HEARTBEAT_LOG_INTERVAL_USEC, HEARTBEAT_LOG_BURST);
        h->payload_ratelimit = RATELIMIT_INIT(HEARTBEAT_LOG_INTERVAL_USEC, 1);
        heartbeat_machine_init(&h->machine, o->online_threshold, o->offline_threshold);

        r = heartbeat_apply_options(h, o);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(h);
        return 0;
}

Heartbeat *heartbeat_free(Heartbeat *h) {
        if (!h)
                return NULL;

        curl_request_free(h->request);
        sd_event_source_disable_unref(h->timer);
        sd_event_unref(h->event);

        free(h->url);
        free(h->url_display);
        free(h->adapter_id);
        erase_and_free(h->token);
        free(h->last_result);
        free(h->logged_failure);
        return mfree(h);
}

/* json_object_object_add() takes a NULL value for JSON null: a failed allocation must be caught first. */
int heartbeat_build_payload(Heartbeat *h, usec_t realtime, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *buffer = NULL;
        const char *circuit_breaker = NULL;
        char ts[FORMAT_ISO8601_MAX];
        int r;

        assert(h);
        assert(ret);

        if (h->payload) {
                r = h->payload(h, &buffer, &circuit_breaker, h->userdata);
                if (r < 0) {
                        json_object_put(TAKE_PTR(buffer));
                        circuit_breaker = NULL;
                        if (ratelimit_below(&h->payload_ratelimit, NULL))
                                log_warning_errno(r, "Failed to gather the heartbeat's buffer status, "
                                                  "sending the heartbeat without it: %m");
                }
        }

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;

        r = json_add_string_or_null(o, "timestamp", format_iso8601_utc(ts, sizeof ts, realtime));
        if (r >= 0)
                r = json_add_string_or_null(o, "adapter_id", h->adapter_id);
        if (r >= 0) {
                r = json_object_object_add(o, "buffer", buffer) < 0 ? -ENOMEM : 0;
                if (r >= 0)
                        TAKE_PTR(buffer);
        }
        if (r >= 0)
                r = json_add_string_or_null(o, "circuit_breaker", circuit_breaker);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

static const char *heartbeat_error_to_result(int error) {
        switch (error) {
        case -ETIMEDOUT:
                return "timeout";
        case -ECONNREFUSED:
                return "connection refused";
        case -ECONNRESET:
                return "connection reset";
        case -EPIPE:
                return "connection lost while sending";
        case -EHOSTUNREACH:
                return "name lookup failed";
        case -EPROTO:
                return "TLS failure";
        case -EFBIG:
                return "response too large";
        case -EINVAL:
                return "invalid URL";
        case -ENOMEM:
                return "out of memory";
        default:
                return "transfer failed";
        }
}

static void heartbeat_log_result(Heartbeat *h, bool success, const char *result, const char *detail) {
        unsigned suppressed = 0;

        if (success) {
                if (!h->logged_failure)
                        return;
                if (ratelimit_below(&h->log_ratelimit, &suppressed))
                        log_info("Heartbeat to %s succeeded again after \"%s\".%s", h->url_display,
                                 h->logged_failure,
                                 suppressed > 0 ? " (Earlier messages were suppressed.)" : "");
                h->logged_failure = mfree(h->logged_failure);
                return;
        }

        /* Once per kind of failure: the hundredth timeout in a row tells the operator nothing new, a
         * change from "timeout" to "http 401" does. */
        if (streq_ptr(h->logged_failure, result))
                return;
        if (ratelimit_below(&h->log_ratelimit, &suppressed))
                log_warning("Heartbeat to %s failed: %s%s%s%s.%s", h->url_display, result,
                            isempty(detail) ? "" : " (", strempty(detail), isempty(detail) ? "" : ")",
                            suppressed > 0 ? " (Earlier messages were suppressed.)" : "");
        (void) free_and_strdup(&h->logged_failure, result);
}

static void heartbeat_log_state(Heartbeat *h) {
        HeartbeatState s = h->machine.state;
        const char *name = heartbeat_state_to_string(s);

        if (s == HEARTBEAT_ONLINE)
                log_struct(LOG_INFO, MESSAGE_ID_ONLINE,
                           LOG_FIELDS({ "HEARTBEAT_STATE", name }, { "HEARTBEAT_URL", h->url_display }),
                           "ERP heartbeat is online: %u consecutive successful beats to %s.",
                           h->machine.consecutive_successes, h->url_display);
        else if (s == HEARTBEAT_OFFLINE)
                log_struct(LOG_NOTICE, MESSAGE_ID_OFFLINE,
                           LOG_FIELDS({ "HEARTBEAT_STATE", name }, { "HEARTBEAT_URL", h->url_display },
                                      { "HEARTBEAT_RESULT", h->last_result }),
                           "ERP heartbeat is offline: %u consecutive failed beats to %s, last: %s.",
                           h->machine.consecutive_failures, h->url_display, strna(h->last_result));
}

/* Must be the last thing its caller does: the changed callback may free h. */
static void heartbeat_record(Heartbeat *h, bool success, const char *result, const char *detail) {
        HeartbeatChange what = HEARTBEAT_CHANGE_BEAT;

        h->n_beats++;
        h->last_beat = now(CLOCK_REALTIME);
        if (free_and_strdup(&h->last_result, result) < 0)
                h->last_result = mfree(h->last_result);

        heartbeat_log_result(h, success, result, detail);

        if (heartbeat_machine_record(&h->machine, success)) {
                what |= HEARTBEAT_CHANGE_STATE;
                heartbeat_log_state(h);
        }

        if (h->changed)
                h->changed(h, what, h->userdata);
}

static void heartbeat_on_response(CurlRequest *req, int error, long http_status, const char *body,
                                  size_t body_size, void *userdata) {
        Heartbeat *h = userdata;
        char result[32], detail[256];
        bool success;

        assert(h);
        assert(req == h->request);

        if (error < 0) {
                success = false;
                snprintf(result, sizeof result, "%s", heartbeat_error_to_result(error));
                snprintf(detail, sizeof detail, "%s", curl_request_get_error_message(req));
        } else {
                success = http_status == 200;
                if (success)
                        snprintf(result, sizeof result, "ok");
                else
                        snprintf(result, sizeof result, "http %ld", http_status);
                detail[0] = 0;
        }

        h->request = curl_request_free(h->request);
        heartbeat_record(h, success, result, detail);
}

/* Must be the last thing its caller does, see heartbeat_record(). */
static void heartbeat_beat(Heartbeat *h) {
        _cleanup_(json_object_putp) json_object *payload = NULL;
        CurlRequestOptions o;
        const char *body;
        size_t body_size;
        int r;

        assert(!h->request);

        r = heartbeat_build_payload(h, now(CLOCK_REALTIME), &payload);
        body = r < 0 ? NULL : json_object_to_json_string_length(payload, JSON_C_TO_STRING_PLAIN, &body_size);
        if (!body) {
                heartbeat_record(h, false, "out of memory", NULL);
                return;
        }

        o = (CurlRequestOptions) {
                .body = body,
                .body_size = body_size,
                .content_type = "application/json",
                .bearer_token = h->token,
                .connect_timeout = h->timeout,
                .timeout = h->timeout,
                .max_response_size = HEARTBEAT_MAX_RESPONSE,
        };

        r = curl_glue_request_new(h->glue, &h->request, "POST", h->url, &o, heartbeat_on_response, h);
        if (r < 0)
                /* Could not even start (a token with a line break, no memory): the ERP was not reached,
                 * which is what a failed beat means. */
                heartbeat_record(h, false, r == -EINVAL ? "invalid request" : "transfer failed",
                                 strerror(-r));
}

static int heartbeat_schedule(Heartbeat *h, usec_t next) {
        int r;

        assert(h->timer);

        r = sd_event_source_set_time(h->timer, next);
        if (r < 0)
                return r;
        r = sd_event_source_set_time_accuracy(h->timer, heartbeat_timer_accuracy(h));
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(h->timer, SD_EVENT_ONESHOT);
}

/* The first tick of the grid last_start + k * interval that is still ahead: after a stalled loop the
 * missed ticks are not fired in a burst. */
static usec_t heartbeat_next_tick(Heartbeat *h) {
        usec_t n = now(CLOCK_MONOTONIC), k;

        if (n < h->last_start)
                return usec_add(h->last_start, h->interval);
        k = (n - h->last_start) / h->interval + 1;
        if (k > (USEC_INFINITY - h->last_start) / h->interval)
                return USEC_INFINITY;
        return h->last_start + k * h->interval;
}

static int heartbeat_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Heartbeat *h = userdata;
        usec_t start;
        int r;

        assert(h);

        if (h->request) {
                /* Skipped rather than queued: a late beat would bunch up with the next one, and the beat
                 * in flight will report the ERP's condition anyway. The grid of ticks stays. */
                h->n_skipped++;
                r = heartbeat_schedule(h, heartbeat_next_tick(h));
                if (r < 0) {
                        h->running = false;
                        log_error_errno(r, "Failed to schedule the next heartbeat, heartbeat stopped: %m");
                }
                return 0;
        }

        r = sd_event_now(h->event, CLOCK_MONOTONIC, &start);
        if (r < 0)
                start = now(CLOCK_MONOTONIC);
        h->last_start = start;

        /* Armed before the beat, which may end in the changed callback freeing h. */
        r = heartbeat_schedule(h, usec_add(start, h->interval));
        if (r < 0) {
                h->running = false;
                log_error_errno(r, "Failed to schedule the next heartbeat, stopping after this one: %m");
        }

        heartbeat_beat(h);
        return 0;
}

int heartbeat_start(Heartbeat *h) {
        int r;

        assert(h);

        if (h->running)
                return 0;

        if (!h->timer) {
                r = sd_event_add_time(h->event, &h->timer, CLOCK_MONOTONIC, 0, heartbeat_timer_accuracy(h),
                                      heartbeat_on_timer, h);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_description(h->timer, "heartbeat-timer");
        }

        /* An elapsed time: the first beat goes out on the next iteration of the loop. */
        r = heartbeat_schedule(h, 1);
        if (r < 0)
                return r;

        h->last_start = 0;
        h->running = true;
        return 0;
}

void heartbeat_stop(Heartbeat *h) {
        assert(h);

        h->request = curl_request_free(h->request);
        if (h->timer)
                (void) sd_event_source_set_enabled(h->timer, SD_EVENT_OFF);
        h->running = false;
}

int heartbeat_set_options(Heartbeat *h, const HeartbeatOptions *o) {
        usec_t next;
        int r;

        assert(h);
        assert(o);

        r = heartbeat_apply_options(h, o);
        if (r < 0)
                return r;

        /* Before the first beat the timer already fires at once. */
        if (!h->running || h->last_start == 0)
                return 0;

        next = usec_add(h->last_start, h->interval);
        return heartbeat_schedule(h, MAX(next, (usec_t) 1));
}

HeartbeatState heartbeat_get_state(Heartbeat *h) {
        assert(h);
        return h->machine.state;
}

unsigned heartbeat_get_consecutive_successes(Heartbeat *h) {
        assert(h);
        return h->machine.consecutive_successes;
}

unsigned heartbeat_get_consecutive_failures(Heartbeat *h) {
        assert(h);
        return h->machine.consecutive_failures;
}

usec_t heartbeat_get_last_beat(Heartbeat *h) {
        assert(h);
        return h->last_beat;
}

usec_t heartbeat_get_last_start(Heartbeat *h) {
        assert(h);
        return h->last_start;
}

const char *heartbeat_get_last_result(Heartbeat *h) {
        assert(h);
        return h->last_result;
}

bool heartbeat_is_running(Heartbeat *h) {
        assert(h);
        return h->running;
}

bool heartbeat_is_beating(Heartbeat *h) {
        assert(h);
        return h->request;
}

uint64_t heartbeat_get_beats(Heartbeat *h) {
        assert(h);
        return h->n_beats;
}

uint64_t heartbeat_get_skipped(Heartbeat *h) {
        assert(h);
        return h->n_skipped;
}

const char *heartbeat_get_url(Heartbeat *h) {
        assert(h);
        return h->url_display;
}

int heartbeat_to_json(Heartbeat *h, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        char ts[FORMAT_ISO8601_MAX];
        int r;

        assert(h);
        assert(ret);

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;

        r = json_add(o, "running", json_object_new_boolean(h->running));
        if (r >= 0)
                r = json_add_string_or_null(o, "state", heartbeat_state_to_string(h->machine.state));
        if (r >= 0)
                r = json_add(o, "consecutive_successes",
                             json_object_new_int64(h->machine.consecutive_successes));
        if (r >= 0)
                r = json_add(o, "consecutive_failures",
                             json_object_new_int64(h->machine.consecutive_failures));
        if (r >= 0)
                r = json_add_string_or_null(
                                o, "last_beat",
                                h->last_beat > 0 ? format_iso8601_utc(ts, sizeof ts, h->last_beat) : NULL);
        if (r >= 0)
                r = json_add_string_or_null(o, "last_result", h->last_result);
        if (r >= 0)
                r = json_add(o, "interval_sec",
                             json_object_new_int64((int64_t) (h->interval / USEC_PER_SEC)));
        if (r >= 0)
                r = json_add(o, "interval_usec", json_object_new_uint64(h->interval));
        if (r >= 0)
                r = json_add_string_or_null(o, "url", h->url_display);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}
