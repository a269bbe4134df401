/* SPDX-License-Identifier: MIT */
#pragma once

/* The daemon's modules as the Manager holds them, handed down to what renders and drives them (the D-Bus
 * object, the HTTP API, health, metrics), so that those need nothing of the Manager. The Manager owns every
 * one and keeps this current; a module not set up (yet, or any more) is NULL. Also the small views of their
 * state that HTTP, D-Bus and STATUS= share. */

#include <stdbool.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include <json-c/json.h>

#include "conf.h"
#include "device.h"
#include "fiscal-day.h"
#include "heartbeat.h"
#include "http.h"
#include "intake.h"
#include "printer.h"
#include "store.h"
#include "sync.h"

typedef struct Modules {
        sd_event *event;
        Config *config;   /* replaced on reload */
        Store *store;
        Intake *intake;
        HttpServer *http;
        Heartbeat *heartbeat;
        Device *device;
        Printer *printer;
        FiscalDay *fiscal_day;
        Sync *sync;

        char *adapter_id;
        gid_t pos_gid, admin_gid; /* kkt-pos and kkt-admin, looked up once: no NSS on the loop */
        bool stopping;            /* a graceful stop began */
} Modules;

static inline bool gid_is_valid(gid_t gid) {
        return gid != (gid_t) -1;
}

/* "online", "offline" or "unknown" (no heartbeat yet): the ERP heartbeat's state. */
const char *modules_network_status(const Modules *s);
/* network_status of GET /v1/kkt/buffer/status, by the prototype's rule: "offline" when the heartbeat says
 * so or half the capacity is pending, "degraded" while fewer receipts wait for the OFD, else the
 * heartbeat's state. */
const char *modules_buffer_network_status(const Modules *s);
/* The buffer's percent_full as the prototype gave it: pending / capacity * 100 rounded to two decimals, a
 * JSON number token written exactly ("0.50"). */
json_object *modules_percent_full_to_json(const Modules *s);

/* Whether the OFD counts as unreachable now (its circuit breaker is not closed): reports say "offline". */
bool modules_ofd_offline(const Modules *s);
/* The OFD circuit breaker's state, or NULL while there is no sync module. */
const char *modules_circuit_state(const Modules *s);
/* The same as the prototype spelt it: "CLOSED", "OPEN", "HALF_OPEN". */
const char *modules_circuit_state_upper(const Modules *s);

/* GET /v1/kkt/shift: the shift as the register last told it, its totals, whether sales are refused. */
int modules_shift_to_json(const Modules *s, json_object **ret);
