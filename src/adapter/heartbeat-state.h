/* SPDX-License-Identifier: MIT */
#pragma once

/* The ONLINE/OFFLINE hysteresis of the ERP heartbeat: pure state, no I/O, no clock. The heartbeat module
 * feeds it one result per beat and publishes the state it reports. */

#include <stdbool.h>

#include "macro.h"

typedef enum HeartbeatState {
        HEARTBEAT_UNKNOWN,
        HEARTBEAT_ONLINE,
        HEARTBEAT_OFFLINE,
        _HEARTBEAT_STATE_MAX,
        _HEARTBEAT_STATE_INVALID = -EINVAL,
} HeartbeatState;

#define HEARTBEAT_ONLINE_THRESHOLD_DEFAULT 2U
#define HEARTBEAT_OFFLINE_THRESHOLD_DEFAULT 3U

typedef struct HeartbeatMachine {
        HeartbeatState state;
        unsigned consecutive_successes;
        unsigned consecutive_failures;
        unsigned online_threshold;  /* consecutive successes that make us online */
        unsigned offline_threshold; /* consecutive failures that make us offline */
} HeartbeatMachine;

#define HEARTBEAT_MACHINE_INIT                                                  \
        ((HeartbeatMachine) {                                                   \
                .state = HEARTBEAT_UNKNOWN,                                     \
                .online_threshold = HEARTBEAT_ONLINE_THRESHOLD_DEFAULT,         \
                .offline_threshold = HEARTBEAT_OFFLINE_THRESHOLD_DEFAULT,       \
        })

/* Starts over in HEARTBEAT_UNKNOWN with zeroed counters; both thresholds must be at least 1. */
void heartbeat_machine_init(HeartbeatMachine *m, unsigned online_threshold, unsigned offline_threshold);

/* Feeds one heartbeat result. Returns true exactly when m->state changed. */
bool heartbeat_machine_record(HeartbeatMachine *m, bool success);

/* "unknown", "online", "offline"; NULL for values out of range. */
const char *heartbeat_state_to_string(HeartbeatState s);
/* The inverse; -EINVAL for anything else (including NULL). */
HeartbeatState heartbeat_state_from_string(const char *s);
