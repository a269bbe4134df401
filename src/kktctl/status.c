/* SPDX-License-Identifier: MIT */
/* Owns `kktctl status`: fetching every property at once (so the view is one consistent snapshot) and laying
 * it out for people. The JSON form is the fetched object itself. */

#include <inttypes.h>
#include <stdarg.h>

#include "bus-json.h"
#include "json-util.h"
#include "manager-bus.h"
#include "status.h"
#include "time-util.h"

/* strlen("Last fiscal document"), the longest label, so the colons line up. */
#define LABEL_WIDTH 20

int status_fetch(sd_bus *bus, sd_bus_error *error, json_object **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        assert(bus);
        assert(ret);

        r = sd_bus_call_method(bus, KKT_BUS_NAME, KKT_BUS_PATH, "org.freedesktop.DBus.Properties", "GetAll",
                               error, &reply, "s", KKT_BUS_INTERFACE);
        if (r < 0)
                return r;
        return bus_message_read_properties_json(reply, ret);
}

static const char *prop_string(json_object *p, const char *name) {
        json_object *v;

        if (!json_object_object_get_ex(p, name, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static bool prop_u64(json_object *p, const char *name, uint64_t *ret) {
        json_object *v;

        if (!json_object_object_get_ex(p, name, &v) || !json_object_is_type(v, json_type_int))
                return false;
        *ret = json_object_get_uint64(v);
        return true;
}

static void field(FILE *f, const char *label, const char *format, ...) _printf_(3, 4);

static void field(FILE *f, const char *label, const char *format, ...) {
        va_list ap;

        fprintf(f, "%*s: ", LABEL_WIDTH, label);
        va_start(ap, format);
        vfprintf(f, format, ap);
        va_end(ap);
        fputc('\n', f);
}

static const char *format_when(char *buf, size_t l, json_object *p, const char *name) {
        uint64_t usec;

        if (!prop_u64(p, name, &usec))
                return "n/a";
        if (usec == 0)
                return "never";
        return format_iso8601_utc(buf, l, usec);
}

void status_print(json_object *p, FILE *f) {
        char when[FORMAT_ISO8601_MAX];
        uint64_t a, b, c, d, e;
        const char *s;

        assert(p);
        assert(f);

        field(f, "State", "%s", strna(prop_string(p, "State")));

        s = prop_string(p, "LastHeartbeatResult");
        field(f, "Last heartbeat", "%s%s%s%s", format_when(when, sizeof when, p, "LastHeartbeatUSec"),
              isempty(s) ? "" : " (", strempty(s), isempty(s) ? "" : ")");

        if (prop_u64(p, "ConsecutiveSuccesses", &a) && prop_u64(p, "ConsecutiveFailures", &b))
                field(f, "Consecutive", "%" PRIu64 " succeeded, %" PRIu64 " failed", a, b);
        else
                field(f, "Consecutive", "n/a");

        if (prop_u64(p, "Pending", &a) && prop_u64(p, "Capacity", &b) && prop_u64(p, "Synced", &c) &&
            prop_u64(p, "Failed", &d) && prop_u64(p, "DeadLettered", &e))
                field(f, "Receipts",
                      "%" PRIu64 " pending of %" PRIu64 ", %" PRIu64 " synced, %" PRIu64 " failed, %" PRIu64
                      " dead-lettered",
                      a, b, c, d, e);
        else
                field(f, "Receipts", "n/a");

        field(f, "Circuit breaker", "%s", strna(prop_string(p, "CircuitState")));
        field(f, "Last sync", "%s", format_when(when, sizeof when, p, "LastSyncUSec"));
        field(f, "Register", "%s", strna(prop_string(p, "DeviceState")));

        if (!prop_u64(p, "ShiftNumber", &a))
                field(f, "Shift", "n/a");
        else if (a == 0)
                field(f, "Shift", "none open");
        else if (prop_u64(p, "ShiftOpenUSec", &b) && b > 0)
                field(f, "Shift", "%" PRIu64 ", opened %s", a, format_iso8601_utc(when, sizeof when, b));
        else
                field(f, "Shift", "%" PRIu64, a);

        if (!prop_u64(p, "LastFiscalDocument", &a))
                field(f, "Last fiscal document", "n/a");
        else if (a == 0)
                field(f, "Last fiscal document", "none");
        else
                field(f, "Last fiscal document", "%" PRIu64, a);

        field(f, "Adapter ID", "%s", strna(prop_string(p, "AdapterId")));
        field(f, "Version", "%s", strna(prop_string(p, "Version")));
}
