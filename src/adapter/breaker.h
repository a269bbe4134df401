/* SPDX-License-Identifier: MIT */
#pragma once

/* The circuit breaker of the OFD leg: closed -> open -> half-open -> closed, pure state with counters. No
 * clock is read in here: every call that depends on time takes "now" (CLOCK_MONOTONIC usec_t). */

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"
#include "time-util.h"

typedef enum BreakerState {
        BREAKER_CLOSED,
        BREAKER_OPEN,
        BREAKER_HALF_OPEN,
        _BREAKER_STATE_MAX,
        _BREAKER_STATE_INVALID = -EINVAL,
} BreakerState;

#define BREAKER_FAILURE_THRESHOLD_DEFAULT 5U
#define BREAKER_OPEN_TIMEOUT_DEFAULT (60 * USEC_PER_SEC)
#define BREAKER_CLOSE_AFTER_DEFAULT 2U
#define BREAKER_HALF_OPEN_MAX_TRIALS_DEFAULT 1U

typedef struct BreakerOptions {
        unsigned failure_threshold;     /* consecutive failures that open a closed breaker, >= 1 */
        usec_t open_timeout;            /* how long it stays open before trial sends, > 0 */
        unsigned close_after;           /* successful trials in half-open that close it, >= 1 */
        unsigned half_open_max_trials;  /* trial sends in flight at once in half-open, >= 1 */
} BreakerOptions;

#define BREAKER_OPTIONS_DEFAULT                                                 \
        ((BreakerOptions) {                                                     \
                .failure_threshold = BREAKER_FAILURE_THRESHOLD_DEFAULT,         \
                .open_timeout = BREAKER_OPEN_TIMEOUT_DEFAULT,                   \
                .close_after = BREAKER_CLOSE_AFTER_DEFAULT,                     \
                .half_open_max_trials = BREAKER_HALF_OPEN_MAX_TRIALS_DEFAULT,   \
        })

/* What breaker_allow() hands out with a send. Results are recorded against it: a result whose permit
 * dates from before the last change of state (a send that was already in flight when the breaker opened,
 * closed or was reset) is counted, but moves nothing. */
typedef struct BreakerPermit {
        bool allowed;
        bool trial;      /* handed out in half-open: holds one of the trial slots */
        uint64_t epoch;
} BreakerPermit;

typedef struct Breaker {
        BreakerOptions options;
        BreakerState state;
        uint64_t epoch;                 /* bumped by every change of state */
        usec_t opened_at;               /* when it last opened; meaningful while open */
        usec_t changed_at;              /* the now of its last change of state; 0 after a reset or none */
        unsigned consecutive_failures;  /* closed: towards failure_threshold */
        unsigned trial_successes;       /* half-open: towards close_after */
        unsigned trials_in_flight;      /* half-open: permits out */

        /* Since breaker_init(), whatever the epoch. */
        uint64_t n_successes;
        uint64_t n_failures;
        uint64_t n_rejected;            /* breaker_allow() said no */
        uint64_t n_opened;
        uint64_t n_closed;              /* half-open -> closed (not resets) */
        uint64_t n_resets;
} Breaker;

/* Closed, counters zero. The options must be valid (see breaker_options_valid()). */
void breaker_init(Breaker *b, const BreakerOptions *o);
bool breaker_options_valid(const BreakerOptions *o);
/* New thresholds for what comes next; the state is kept (an open breaker keeps its opened_at and uses the
 * new timeout; counts already past a new, lower threshold act on the next result). -EINVAL: unchanged. */
int breaker_set_options(Breaker *b, const BreakerOptions *o);

/* Open -> half-open once open_timeout has passed since it opened. Returns true when the state changed. */
bool breaker_update(Breaker *b, usec_t now);

/* Whether a send may go out now (calls breaker_update() first; compare the state before and after to see
 * a change). Closed: always. Open: never (counted in n_rejected). Half-open: while fewer than
 * half_open_max_trials trial sends are in flight. *ret is the permit to record the result against; it is
 * filled also when not allowed (then allowed is false). Returns ret->allowed. */
bool breaker_allow(Breaker *b, usec_t now, BreakerPermit *ret);

/* The result of a send made with *p. Closed: a success resets the consecutive failures, a failure counts
 * and the failure_threshold-th opens it. Half-open (trial permits only): a failure opens it again, the
 * close_after-th success closes it. Returns true when the state changed. */
bool breaker_record(Breaker *b, const BreakerPermit *p, bool success, usec_t now);
/* A permitted send that never went out (cancelled): frees its trial slot, counts nothing. */
void breaker_release(Breaker *b, const BreakerPermit *p);

/* Manual reset: closed with zeroed consecutive counts, whatever it was. Returns true when the state
 * changed. Permits handed out before are stale afterwards. */
bool breaker_reset(Breaker *b);

/* When an open breaker lets trial sends through (opened_at + open_timeout); USEC_INFINITY when not open. */
usec_t breaker_open_until(const Breaker *b);

/* "closed", "open", "half_open"; NULL out of range. */
const char *breaker_state_to_string(BreakerState s);
/* The inverse; -EINVAL for anything else (NULL too). */
BreakerState breaker_state_from_string(const char *s);
