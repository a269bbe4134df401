/* SPDX-License-Identifier: MIT */
/* Owns the views built from the daemon's properties: `kktctl status`, `kktctl shift` and `kktctl device`.
 * All properties are fetched at once (so each view is one consistent snapshot) and laid out for people;
 * the JSON form is the fetched object itself, or the part of it that the view shows. */

#include <inttypes.h>

#include "bus-json.h"
#include "json-util.h"
#include "manager-bus.h"
#include "output.h"
#include "status.h"
#include "time-util.h"
#include "timestamp.h"

/* strlen("Last fiscal document"), the longest label, so the colons line up. */
#define LABEL_WIDTH 20

/* The shift's part: what `kktctl shift` shows. */
static const char *const shift_properties[] = {
        "ShiftOpen", "ShiftNumber", "ShiftOpenUSec", "ShiftExpiresUSec", "ShiftReceipts", NULL,
};

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

static int status_select(json_object *p, const char *const *names, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();

        if (!o)
                return -ENOMEM;
        for (const char *const *n = names; *n; n++) {
                json_object *v;

                /* A daemon older than this kktctl lacks some: left out, as GetAll() left them out. */
                if (!json_object_object_get_ex(p, *n, &v))
                        continue;
                if (json_object_object_add(o, *n, json_object_get(v)) < 0) {
                        json_object_put(v);
                        return -ENOMEM;
                }
        }
        *ret = TAKE_PTR(o);
        return 0;
}

int status_select_shift(json_object *p, json_object **ret) {
        return status_select(p, shift_properties, ret);
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

static bool prop_bool(json_object *p, const char *name, bool *ret) {
        json_object *v;

        if (!json_object_object_get_ex(p, name, &v) || !json_object_is_type(v, json_type_boolean))
                return false;
        *ret = json_object_get_boolean(v);
        return true;
}

#define field(f, label, ...) output_field(f, LABEL_WIDTH, label, __VA_ARGS__)

static const char *format_when(char *buf, size_t l, json_object *p, const char *name, bool utc) {
        uint64_t usec;

        if (!prop_u64(p, name, &usec))
                return "n/a";
        if (usec == 0)
                return "never";
        return timestamp_format(buf, l, usec, utc);
}

/* A span for people, to the minute (or the second under a minute): "3h 12min", "2d 4h", "45s". */
#define FORMAT_AGE_MAX 32
static const char *format_age(char *buf, size_t l, usec_t t) {
        uint64_t d = t / USEC_PER_DAY, h = t % USEC_PER_DAY / USEC_PER_HOUR,
                 m = t % USEC_PER_HOUR / USEC_PER_MINUTE;

        if (d > 0)
                snprintf(buf, l, "%" PRIu64 "d %" PRIu64 "h", d, h);
        else if (h > 0)
                snprintf(buf, l, "%" PRIu64 "h %" PRIu64 "min", h, m);
        else if (m > 0)
                snprintf(buf, l, "%" PRIu64 "min", m);
        else
                snprintf(buf, l, "%" PRIu64 "s", t / USEC_PER_SEC);
        return buf;
}

/* Whole days, rounded towards minus infinity as the daemon's fn_days_left is: half a day left is day 0, an
 * hour overdue is -1. */
static int64_t days_between(usec_t from, usec_t to) {
        if (to >= from)
                return (int64_t) ((to - from) / USEC_PER_DAY);
        return -(int64_t) ((from - to + USEC_PER_DAY - 1) / USEC_PER_DAY);
}

/* "open": from ShiftOpen where the daemon has it, else (older daemons) from a shift number. */
static bool shift_is_open(json_object *p, uint64_t number) {
        bool open;

        return prop_bool(p, "ShiftOpen", &open) ? open : number > 0;
}

/* No shift open; ShiftNumber is then the last one closed, 0 when none ever was. */
static void shift_none(FILE *f, const char *label, uint64_t last) {
        if (last > 0)
                field(f, label, "none open (last: %" PRIu64 ")", last);
        else
                field(f, label, "none open, never opened");
}

/* One line for the shift: "12, opened ..., 3 receipts" or "none open (last: 11)". */
static void shift_summary(json_object *p, FILE *f, const char *label, bool utc) {
        char when[TIMESTAMP_MAX];
        uint64_t number, opened, receipts;

        if (!prop_u64(p, "ShiftNumber", &number))
                field(f, label, "n/a");
        else if (!shift_is_open(p, number))
                shift_none(f, label, number);
        else if (prop_u64(p, "ShiftOpenUSec", &opened) && opened > 0) {
                if (prop_u64(p, "ShiftReceipts", &receipts))
                        field(f, label, "%" PRIu64 ", opened %s, %" PRIu64 " receipt%s", number,
                              timestamp_format(when, sizeof when, opened, utc), receipts,
                              receipts == 1 ? "" : "s");
                else
                        field(f, label, "%" PRIu64 ", opened %s", number,
                              timestamp_format(when, sizeof when, opened, utc));
        } else
                field(f, label, "%" PRIu64, number);
}

/* When the open shift reaches 24 hours, and how far off that is; nothing when no shift is open. */
static void shift_expiry(json_object *p, FILE *f, usec_t n, bool utc) {
        char when[TIMESTAMP_MAX], age[FORMAT_AGE_MAX];
        uint64_t number = 0, expires;

        if (!prop_u64(p, "ShiftExpiresUSec", &expires) || expires == 0 ||
            (prop_u64(p, "ShiftNumber", &number) && !shift_is_open(p, number)))
                return;
        if (n < expires)
                field(f, "Shift expires", "%s (in %s)", timestamp_format(when, sizeof when, expires, utc),
                      format_age(age, sizeof age, expires - n));
        else
                field(f, "Shift expires", "%s (%s ago: the register refuses sales, kktctl shift close)",
                      timestamp_format(when, sizeof when, expires, utc),
                      format_age(age, sizeof age, n - expires));
}

static void fiscal_drive(json_object *p, FILE *f, usec_t n, bool utc) {
        char when[TIMESTAMP_MAX];
        uint64_t until;
        int64_t days;

        if (!prop_u64(p, "FnValidUntilUSec", &until))
                field(f, "Fiscal drive", "n/a");
        else if (until == 0)
                field(f, "Fiscal drive", "expiry not known");
        else if ((days = days_between(n, until)) >= 0)
                field(f, "Fiscal drive", "valid until %s, %" PRIi64 " day%s left",
                      timestamp_format(when, sizeof when, until, utc), days, days == 1 ? "" : "s");
        else
                field(f, "Fiscal drive", "expired %s: the register makes no documents until it is replaced",
                      timestamp_format(when, sizeof when, until, utc));
}

static void ofd_exchange(json_object *p, FILE *f, usec_t n, bool utc) {
        char when[TIMESTAMP_MAX];
        uint64_t unsent, first;
        int64_t days;

        if (!prop_u64(p, "OfdUnsent", &unsent))
                field(f, "OFD exchange", "n/a");
        else if (unsent == 0)
                field(f, "OFD exchange", "every document confirmed by the OFD");
        else if (!prop_u64(p, "OfdFirstUnsentUSec", &first) || first == 0)
                field(f, "OFD exchange", "%" PRIu64 " document%s not confirmed by the OFD", unsent,
                      unsent == 1 ? "" : "s");
        else {
                /* The register blocks 30 days after the oldest; the daemon's health warns from 25. */
                days = days_between(first, n);
                field(f, "OFD exchange",
                      "%" PRIu64 " document%s not confirmed by the OFD, the oldest from %s "
                      "(%" PRIi64 " day%s ago%s)",
                      unsent, unsent == 1 ? "" : "s", timestamp_format(when, sizeof when, first, utc), days,
                      days == 1 ? "" : "s",
                      days >= 30   ? ": the register blocks until they are sent"
                      : days >= 25 ? ": the register blocks at 30 days"
                                   : "");
        }
}

static void last_fiscal_document(json_object *p, FILE *f) {
        uint64_t a;

        if (!prop_u64(p, "LastFiscalDocument", &a))
                field(f, "Last fiscal document", "n/a");
        else if (a == 0)
                field(f, "Last fiscal document", "none");
        else
                field(f, "Last fiscal document", "%" PRIu64, a);
}

void status_print(json_object *p, FILE *f, bool utc) {
        char when[TIMESTAMP_MAX];
        usec_t n = now(CLOCK_REALTIME);
        uint64_t a, b, c, d, e;
        const char *s;

        assert(p);
        assert(f);

        field(f, "State", "%s", strna(prop_string(p, "State")));

        s = prop_string(p, "LastHeartbeatResult");
        field(f, "Last heartbeat", "%s%s%s%s", format_when(when, sizeof when, p, "LastHeartbeatUSec", utc),
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

        if (!prop_u64(p, "PrintRejected", &a))
                field(f, "Print rejected", "n/a");
        else if (a == 0)
                field(f, "Print rejected", "none");
        else
                field(f, "Print rejected",
                      "%" PRIu64 " receipt%s set aside for an administrator (kktctl receipt rejected)", a,
                      a == 1 ? "" : "s");

        field(f, "Circuit breaker", "%s", strna(prop_string(p, "CircuitState")));
        field(f, "Last sync", "%s", format_when(when, sizeof when, p, "LastSyncUSec", utc));
        field(f, "Register", "%s", strna(prop_string(p, "DeviceState")));
        shift_summary(p, f, "Shift", utc);
        shift_expiry(p, f, n, utc);
        last_fiscal_document(p, f);
        fiscal_drive(p, f, n, utc);
        ofd_exchange(p, f, n, utc);
        field(f, "Adapter ID", "%s", strna(prop_string(p, "AdapterId")));
        field(f, "Version", "%s", strna(prop_string(p, "Version")));
}

void status_print_shift(json_object *p, FILE *f, bool utc) {
        char when[TIMESTAMP_MAX];
        uint64_t number, opened, receipts;

        assert(p);
        assert(f);

        if (!prop_u64(p, "ShiftNumber", &number)) {
                field(f, "Shift", "n/a");
                return;
        }
        if (!shift_is_open(p, number)) {
                shift_none(f, "Shift", number);
                return;
        }
        field(f, "Shift", "%" PRIu64 ", open", number);
        if (prop_u64(p, "ShiftOpenUSec", &opened) && opened > 0)
                field(f, "Opened", "%s", timestamp_format(when, sizeof when, opened, utc));
        shift_expiry(p, f, now(CLOCK_REALTIME), utc);
        if (prop_u64(p, "ShiftReceipts", &receipts))
                field(f, "Receipts", "%" PRIu64, receipts);
}

static bool json_i64(json_object *o, const char *key, int64_t *ret) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !v || !json_object_is_type(v, json_type_int))
                return false;
        *ret = json_object_get_int64(v);
        return true;
}

void status_print_device_json(json_object *o, FILE *f, bool utc) {
        json_object *tax, *shift;
        int64_t v, capacity = 0, days;
        const char *fault = output_get_string(o, "fault");
        char when[TIMESTAMP_MAX], opened[TIMESTAMP_MAX];

        assert(o);
        assert(f);

        field(f, "Driver", "%s", strna(output_get_string(o, "driver")));
        field(f, "State", "%s%s%s", strna(output_get_string(o, "state")), fault ? ", fault " : "", strempty(fault));
        if (output_get_string(o, "last_fault"))
                field(f, "Last fault", "%s", output_get_string(o, "last_fault"));
        if (!output_get_string(o, "model")) {
                field(f, "Register", "has not answered yet");
                return;
        }
        field(f, "Model", "%s", output_get_string(o, "model"));
        field(f, "Serial", "%s", strna(output_get_string(o, "serial")));
        field(f, "Registration", "%s, INN %s", strna(output_get_string(o, "registration_number")), strna(output_get_string(o, "inn")));
        if (json_object_object_get_ex(o, "taxations", &tax) && json_object_is_type(tax, json_type_array)) {
                char list[128] = "";

                for (size_t i = 0; i < json_object_array_length(tax); i++) {
                        if (i > 0)
                                strncat(list, ", ", sizeof list - strlen(list) - 1);
                        strncat(list, json_object_get_string(json_object_array_get_idx(tax, i)),
                                sizeof list - strlen(list) - 1);
                }
                field(f, "Taxation", "%s", isempty(list) ? "n/a" : list);
        }
        if (json_i64(o, "fn_days_left", &days))
                field(f, "Fiscal drive", "FN %s, valid until %s, %" PRIi64 " day%s left", strna(output_get_string(o, "fn_number")),
                      strna(timestamp_reformat(when, sizeof when, output_get_string(o, "fn_valid_until"), utc)), days, days == 1 ? "" : "s");
        else
                field(f, "Fiscal drive", "FN %s, expiry not known", strna(output_get_string(o, "fn_number")));
        if (json_i64(o, "fn_documents", &v)) {
                if (json_i64(o, "fn_capacity", &capacity) && capacity > 0)
                        field(f, "Documents", "%" PRIi64 " of %" PRIi64, v, capacity);
                else
                        field(f, "Documents", "%" PRIi64, v);
        }
        if (json_i64(o, "ofd_unsent", &v) && v > 0 && json_i64(o, "ofd_unsent_days", &days))
                field(f, "OFD exchange", "%" PRIi64 " document%s unsent, the oldest (FD %s) %" PRIi64 " day%s old",
                      v, v == 1 ? "" : "s", strna(output_get_string(o, "ofd_first_unsent")), days, days == 1 ? "" : "s");
        else
                field(f, "OFD exchange", "every document confirmed by the OFD");
        if (json_object_object_get_ex(o, "shift_open", &shift) && json_object_get_boolean(shift))
                field(f, "Shift", "%s open since %s, expires %s", strna(output_get_string(o, "shift_number")),
                      strna(timestamp_reformat(opened, sizeof opened, output_get_string(o, "shift_open_time"), utc)),
                      strna(timestamp_reformat(when, sizeof when, output_get_string(o, "shift_expires_time"), utc)));
        else
                field(f, "Shift", "closed (last %s)", strna(output_get_string(o, "shift_number")));
        field(f, "Last document", "%s", strna(output_get_string(o, "last_fiscal_document")));
}
