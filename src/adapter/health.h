/* SPDX-License-Identifier: MIT */
#pragma once

/* The health of the daemon's components, as GET /v1/health and the metrics tell it. */

#include <errno.h>
#include <stdint.h>

#include <json-c/json.h>

#include "modules.h"

typedef enum Health {
        HEALTH_HEALTHY,
        HEALTH_DEGRADED,   /* working, but an operator should look */
        HEALTH_UNHEALTHY,  /* cannot take receipts */
        _HEALTH_MAX,
        _HEALTH_INVALID = -EINVAL,
} Health;

const char *health_to_string(Health h);
Health health_from_string(const char *s);

/* A dead-letter queue longer than this makes the health "degraded" (the prototype's threshold). */
#define HEALTH_DEAD_LETTERS_DEGRADED 50U

/* The health of every component; *ret_json is the body of GET /v1/health: ours ("store", "disk",
 * "buffer", "device", the fiscal day's, "ofd", "heartbeat", "dead_letters") and the prototype's
 * ("buffer" with percent_full, dlq_size and pending; "circuit_breaker" with state and failure_count;
 * "database" with type and mode), the overall "status" and "version", and "circuit_breaker_state" as the
 * prototype spelt it. dead_letters_open: the dead letters not resolved (UINT64_MAX: not known, the
 * receipts in the DLQ count instead). */
int health_build(const Modules *m, uint64_t dead_letters_open, Health *ret, json_object **ret_json);
