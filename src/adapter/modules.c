/* SPDX-License-Identifier: MIT */
/* Owns the views of the modules' state that HTTP, D-Bus, health and STATUS= share: the network and buffer
 * words of the prototype, the circuit breaker's names, the shift. */

#include "json-util.h"
#include "modules.h"
#include "string-table.h"
#include "time-util.h"

const char *modules_network_status(const Modules *m) {
        return heartbeat_state_to_string(m->heartbeat ? heartbeat_get_state(m->heartbeat) : HEARTBEAT_UNKNOWN);
}

const char *modules_buffer_network_status(const Modules *m) {
        const StoreCounters *c = store_get_counters(m->store);
        HeartbeatState h = m->heartbeat ? heartbeat_get_state(m->heartbeat) : HEARTBEAT_UNKNOWN;

        if (h == HEARTBEAT_OFFLINE)
                return "offline";
        /* The prototype's rule, which its clients know: receipts still waiting for the OFD make the link
         * "degraded", half the capacity waiting or more "offline". */
        if (c->pending > 0)
                return c->pending * 2 < c->capacity ? "degraded" : "offline";
        return heartbeat_state_to_string(h);
}

json_object *modules_percent_full_to_json(const Modules *m) {
        const StoreCounters *c = store_get_counters(m->store);
        uint64_t hundredths = 0;
        char text[32];

        /* pending / capacity * 100 rounded to two decimals, as the prototype's view did, in integers; the
         * number token is that text. */
        if (c->capacity > 0)
                hundredths = (MIN(c->pending, UINT64_MAX / 20000) * 20000 / c->capacity + 1) / 2;
        snprintf(text, sizeof text, "%" PRIu64 ".%02" PRIu64, hundredths / 100, hundredths % 100);
        return json_object_new_double_s(strtod(text, NULL), text);
}

static const char *const breaker_state_upper_table[_BREAKER_STATE_MAX] = {
        [BREAKER_CLOSED] = "CLOSED",
        [BREAKER_OPEN] = "OPEN",
        [BREAKER_HALF_OPEN] = "HALF_OPEN",
};

DEFINE_STRING_TABLE_LOOKUP_TO_STRING(breaker_state_upper, BreakerState, static)

const char *modules_circuit_state_upper(const Modules *m) {
        return m->sync ? breaker_state_upper_to_string(sync_get_breaker_state(m->sync)) : NULL;
}

bool modules_ofd_offline(const Modules *m) {
        return m->sync && sync_get_breaker_state(m->sync) != BREAKER_CLOSED;
}

int modules_shift_to_json(const Modules *m, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *totals = NULL;
        const DeviceStatus *s = m->device ? device_get_status(m->device) : NULL;
        int r;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if ((r = json_add(o, "known", json_object_new_boolean(s != NULL))) < 0 ||
            (r = json_add(o, "shift_number", json_object_new_int64(s ? s->shift_number : 0))) < 0 ||
            (r = json_add(o, "shift_open", json_object_new_boolean(s && s->shift_open))) < 0)
                return r;
        if (s && s->shift_open && s->shift_open_usec > 0) {
                char t1[FORMAT_ISO8601_MAX], t2[FORMAT_ISO8601_MAX];

                if ((r = json_add(o, "opened_at", json_object_new_string(format_iso8601_utc(t1, sizeof t1, s->shift_open_usec)))) < 0 ||
                    (r = json_add(o, "expires_at",
                                  json_object_new_string(format_iso8601_utc(
                                          t2, sizeof t2, usec_add(s->shift_open_usec, DEVICE_SHIFT_MAX_USEC))))) < 0)
                        return r;
        }
        r = device_totals_to_json(s ? &s->shift_totals : &(DeviceTotals) {}, &totals);
        if (r < 0)
                return r;
        if ((r = json_add(o, "totals", TAKE_PTR(totals))) < 0 ||
            (r = json_add(o, "sales_refused", json_object_new_boolean(m->fiscal_day && fiscal_day_refuses_sales(m->fiscal_day, NULL)))) < 0 ||
            (r = json_add(o, "close_pending", json_object_new_boolean(m->printer && printer_close_pending(m->printer)))) < 0 ||
            (r = json_add(o, "auto_close", json_object_new_string(m->config->device_auto_close_shift))) < 0)
                return r;
        *ret = TAKE_PTR(o);
        return 0;
}

const char *modules_circuit_state(const Modules *m) {
        return m->sync ? breaker_state_to_string(sync_get_breaker_state(m->sync)) : NULL;
}
