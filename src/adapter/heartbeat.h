/* SPDX-License-Identifier: MIT */
#pragma once

/* The ERP heartbeat: a POST every Interval through CurlGlue, the ONLINE/OFFLINE hysteresis fed with the
 * results, and the journal entries for its changes. No D-Bus and no HTTP server in here: the Manager
 * publishes what the changed callback reports. */

#include <json-c/json.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "curl-glue.h"
#include "heartbeat-state.h"
#include "macro.h"
#include "time-util.h"

typedef struct Heartbeat Heartbeat;

typedef struct HeartbeatOptions {
        const char *url;                /* http:// or https://, required */
        usec_t interval;                /* from the start of one beat to the start of the next, > 0 */
        usec_t timeout;                 /* per beat, connect included, > 0 */
        unsigned online_threshold;      /* >= 1 */
        unsigned offline_threshold;     /* >= 1 */
        const char *adapter_id;         /* required */
        const char *token;              /* "Authorization: Bearer ..."; NULL: none. Never logged. */
} HeartbeatOptions;

typedef enum HeartbeatChange {
        HEARTBEAT_CHANGE_BEAT = 1 << 0,  /* a beat finished: counters, last beat time and result */
        HEARTBEAT_CHANGE_STATE = 1 << 1, /* the state (unknown/online/offline) changed with that beat */
} HeartbeatChange;

/* Fills the Manager's part of the payload: *ret_buffer becomes the "buffer" object (ownership passes to
 * the heartbeat), *ret_circuit_breaker the breaker state name (borrowed, copied before returning). Either
 * may be left NULL, which sends JSON null. A negative return sends null for both and the beat still goes
 * out: the ERP learns we are alive even when the buffer cannot be read. */
typedef int (*HeartbeatPayloadFunc)(Heartbeat *h, json_object **ret_buffer, const char **ret_circuit_breaker,
                                    void *userdata);

/* Called on the loop after every finished beat, with HEARTBEAT_CHANGE_BEAT, plus HEARTBEAT_CHANGE_STATE
 * when that beat changed the state. It is the last thing the heartbeat does in that dispatch, so it may
 * even free the Heartbeat. */
typedef void (*HeartbeatChangedFunc)(Heartbeat *h, HeartbeatChange what, void *userdata);

/* Copies the options; payload and changed may be NULL. Does not beat until heartbeat_start().
 * -EINVAL for missing or zero options. */
int heartbeat_new(Heartbeat **ret, sd_event *event, CurlGlue *glue, const HeartbeatOptions *o,
                  HeartbeatPayloadFunc payload, HeartbeatChangedFunc changed, void *userdata);
/* Cancels an in-flight beat (no callback fires) and releases the timer. Accepts NULL. */
Heartbeat *heartbeat_free(Heartbeat *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(Heartbeat *, heartbeat_free);

/* The first beat goes out on the next loop iteration, then one every Interval measured from the start of
 * the previous beat. A tick that comes while the previous beat is still running (only possible with
 * Timeout > Interval) is skipped and counts as nothing: beats never overlap and never queue up; the next
 * beat starts on the first tick after the running one finished. Idempotent. */
int heartbeat_start(Heartbeat *h);
/* Cancels an in-flight beat (it counts as nothing) and stops the timer; state and counters are kept. */
void heartbeat_stop(Heartbeat *h);

/* For a reload. The new URL, timeout, token and adapter id are used from the next beat on (a beat in
 * flight finishes with the old ones); the next beat is rescheduled to the start of the last beat plus the
 * new interval (at once if that has passed). New thresholds apply to the next result; state and counters
 * are kept. -EINVAL as heartbeat_new(), and then nothing changed. */
int heartbeat_set_options(Heartbeat *h, const HeartbeatOptions *o);

HeartbeatState heartbeat_get_state(Heartbeat *h);
unsigned heartbeat_get_consecutive_successes(Heartbeat *h);
unsigned heartbeat_get_consecutive_failures(Heartbeat *h);
/* CLOCK_REALTIME when the last beat finished; 0 before the first one. */
usec_t heartbeat_get_last_beat(Heartbeat *h);
/* CLOCK_MONOTONIC (the loop's time of the tick) when the last beat started; 0 before the first one since
 * heartbeat_start(). The grid of ticks counts from here. */
usec_t heartbeat_get_last_start(Heartbeat *h);
/* "ok", "http 500", "timeout", "connection refused", "connection reset", "name lookup failed", ...;
 * NULL before the first beat. */
const char *heartbeat_get_last_result(Heartbeat *h);
bool heartbeat_is_running(Heartbeat *h);
/* True while a beat waits for its answer. */
bool heartbeat_is_beating(Heartbeat *h);
/* Finished beats, and ticks skipped because the previous beat was still running, since heartbeat_new(). */
uint64_t heartbeat_get_beats(Heartbeat *h);
uint64_t heartbeat_get_skipped(Heartbeat *h);
/* The URL as logged and shown: without user:password@ and without the query string. */
const char *heartbeat_get_url(Heartbeat *h);

/* For GET /v1/kkt/heartbeat/status: {"running", "state", "consecutive_successes", "consecutive_failures",
 * "last_beat" (ISO 8601 UTC or null), "last_result" (or null), "interval_sec" (whole seconds, rounded
 * down), "interval_usec" (exact), "url"}. */
int heartbeat_to_json(Heartbeat *h, json_object **ret);

/* The body a beat sends at CLOCK_REALTIME `realtime`: {"timestamp", "adapter_id", "buffer",
 * "circuit_breaker"}; calls the payload callback. */
int heartbeat_build_payload(Heartbeat *h, usec_t realtime, json_object **ret);
