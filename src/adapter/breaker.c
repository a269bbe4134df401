/* SPDX-License-Identifier: MIT */
/* The breaker's transitions and counters. Everything is decided from the arguments: the caller supplies
 * the time, so the tests can walk every transition without sleeping. */

#include "breaker.h"
#include "string-table.h"

static const char *const breaker_state_table[_BREAKER_STATE_MAX] = {
        [BREAKER_CLOSED] = "closed",
        [BREAKER_OPEN] = "open",
        [BREAKER_HALF_OPEN] = "half_open",
};

DEFINE_STRING_TABLE_LOOKUP(breaker_state, BreakerState)

bool breaker_options_valid(const BreakerOptions *o) {
        return o && o->failure_threshold > 0 && o->open_timeout > 0 && o->close_after > 0 &&
               o->half_open_max_trials > 0;
}

void breaker_init(Breaker *b, const BreakerOptions *o) {
        assert(b);
        assert(breaker_options_valid(o));

        *b = (Breaker) {
                .options = *o,
                .state = BREAKER_CLOSED,
        };
}

int breaker_set_options(Breaker *b, const BreakerOptions *o) {
        assert(b);

        if (!breaker_options_valid(o))
                return -EINVAL;
        b->options = *o;
        return 0;
}

/* Every change of state starts a new epoch with fresh per-state counts. */
static void breaker_enter(Breaker *b, BreakerState state, usec_t now) {
        b->state = state;
        b->epoch++;
        b->changed_at = now;
        b->consecutive_failures = 0;
        b->trial_successes = 0;
        b->trials_in_flight = 0;
        if (state == BREAKER_OPEN) {
                b->opened_at = now;
                b->n_opened++;
        }
}

usec_t breaker_open_until(const Breaker *b) {
        assert(b);

        if (b->state != BREAKER_OPEN)
                return USEC_INFINITY;
        return usec_add(b->opened_at, b->options.open_timeout);
}

bool breaker_update(Breaker *b, usec_t now) {
        assert(b);

        if (b->state != BREAKER_OPEN || now < breaker_open_until(b))
                return false;
        breaker_enter(b, BREAKER_HALF_OPEN, now);
        return true;
}

bool breaker_allow(Breaker *b, usec_t now, BreakerPermit *ret) {
        assert(b);
        assert(ret);

        (void) breaker_update(b, now);

        *ret = (BreakerPermit) { .epoch = b->epoch };
        switch (b->state) {
        case BREAKER_CLOSED:
                ret->allowed = true;
                break;
        case BREAKER_OPEN:
                b->n_rejected++;
                break;
        case BREAKER_HALF_OPEN:
                /* A full set of trials in flight is a wait for their results, not a rejection. */
                if (b->trials_in_flight < b->options.half_open_max_trials) {
                        b->trials_in_flight++;
                        ret->allowed = ret->trial = true;
                }
                break;
        default:
                assert(!"bad breaker state");
        }
        return ret->allowed;
}

static bool permit_is_current(const Breaker *b, const BreakerPermit *p) {
        return p->allowed && p->epoch == b->epoch;
}

void breaker_release(Breaker *b, const BreakerPermit *p) {
        assert(b);
        assert(p);

        if (permit_is_current(b, p) && p->trial && b->trials_in_flight > 0)
                b->trials_in_flight--;
}

bool breaker_record(Breaker *b, const BreakerPermit *p, bool success, usec_t now) {
        assert(b);
        assert(p);

        if (success)
                b->n_successes++;
        else
                b->n_failures++;

        /* A result of a send made before the last change of state says nothing about the state now: a
         * late success of a send that was in flight when the breaker opened must not close it. */
        if (!permit_is_current(b, p))
                return false;

        switch (b->state) {
        case BREAKER_CLOSED:
                if (success) {
                        b->consecutive_failures = 0;
                        return false;
                }
                b->consecutive_failures++;
                if (b->consecutive_failures < b->options.failure_threshold)
                        return false;
                breaker_enter(b, BREAKER_OPEN, now);
                return true;

        case BREAKER_HALF_OPEN:
                if (!p->trial)
                        return false;
                if (b->trials_in_flight > 0)
                        b->trials_in_flight--;
                if (!success) {
                        breaker_enter(b, BREAKER_OPEN, now);
                        return true;
                }
                b->trial_successes++;
                if (b->trial_successes < b->options.close_after)
                        return false;
                breaker_enter(b, BREAKER_CLOSED, now);
                b->n_closed++;
                return true;

        case BREAKER_OPEN:
                /* Permits are not handed out while open, so a current one cannot exist here. */
                return false;

        default:
                assert(!"bad breaker state");
                return false;
        }
}

bool breaker_reset(Breaker *b) {
        BreakerState old;

        assert(b);

        old = b->state;
        /* Always a new epoch: results of sends made before the reset move nothing. */
        breaker_enter(b, BREAKER_CLOSED, 0);
        b->n_resets++;
        return old != BREAKER_CLOSED;
}
