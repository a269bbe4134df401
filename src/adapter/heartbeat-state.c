/* SPDX-License-Identifier: MIT */
/* Owns the heartbeat hysteresis: a few lost beats do not flip an online desk to offline, and one lucky
 * beat does not flip an offline desk back. */

#include <assert.h>
#include <limits.h>

#include "heartbeat-state.h"
#include "string-table.h"

static const char *const heartbeat_state_table[_HEARTBEAT_STATE_MAX] = {
        [HEARTBEAT_UNKNOWN] = "unknown",
        [HEARTBEAT_ONLINE] = "online",
        [HEARTBEAT_OFFLINE] = "offline",
};

void heartbeat_machine_init(HeartbeatMachine *m, unsigned online_threshold, unsigned offline_threshold) {
        assert(m);
        assert(online_threshold > 0);
        assert(offline_threshold > 0);

        *m = (HeartbeatMachine) {
                .state = HEARTBEAT_UNKNOWN,
                .online_threshold = online_threshold,
                .offline_threshold = offline_threshold,
        };
}

static unsigned counter_inc(unsigned c) {
        /* Saturate: a desk that stays online for years must not wrap around to a short streak. */
        return c < UINT_MAX ? c + 1 : c;
}

bool heartbeat_machine_record(HeartbeatMachine *m, bool success) {
        HeartbeatState old;

        assert(m);
        assert(m->online_threshold > 0);
        assert(m->offline_threshold > 0);

        old = m->state;

        if (success) {
                m->consecutive_failures = 0;
                m->consecutive_successes = counter_inc(m->consecutive_successes);
                if (m->consecutive_successes >= m->online_threshold)
                        m->state = HEARTBEAT_ONLINE;
        } else {
                m->consecutive_successes = 0;
                m->consecutive_failures = counter_inc(m->consecutive_failures);
                if (m->consecutive_failures >= m->offline_threshold)
                        m->state = HEARTBEAT_OFFLINE;
        }

        return m->state != old;
}

DEFINE_STRING_TABLE_LOOKUP(heartbeat_state, HeartbeatState)
