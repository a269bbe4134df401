/* SPDX-License-Identifier: MIT */
/* Owns the daemon's bus connection: connecting (and reconnecting with backoff when it drops), the name
 * org.opticserp.KktAdapter1 (owned or queued behind another owner), and every signal the daemon emits. */

#include "log.h"
#include "manager-bus-object.h"
#include "manager-bus.h"

#define BUS_RECONNECT_MIN (1 * USEC_PER_SEC)
#define BUS_RECONNECT_MAX (30 * USEC_PER_SEC)

/* The answers of org.freedesktop.DBus.RequestName (the D-Bus specification). */
enum {
        BUS_REQUEST_NAME_PRIMARY_OWNER = 1,
        BUS_REQUEST_NAME_IN_QUEUE = 2,
        BUS_REQUEST_NAME_EXISTS = 3,
        BUS_REQUEST_NAME_ALREADY_OWNER = 4,
};

struct ManagerBus {
        Modules *modules;
        char *address;

        sd_bus *bus;
        sd_event_source *reconnect_source;
        usec_t reconnect_delay;
        bool name_acquired;
};

int manager_bus_new(ManagerBus **ret, Modules *modules, const char *address) {
        _cleanup_(manager_bus_freep) ManagerBus *b = NULL;

        assert(ret);
        assert(modules);
        assert(address);

        b = new0(ManagerBus, 1);
        if (!b)
                return -ENOMEM;
        b->modules = modules;
        b->address = strdup(address);
        if (!b->address)
                return -ENOMEM;
        *ret = TAKE_PTR(b);
        return 0;
}

ManagerBus *manager_bus_free(ManagerBus *b) {
        if (!b)
                return NULL;
        sd_event_source_disable_unref(b->reconnect_source);
        sd_bus_flush_close_unref(b->bus);
        free(b->address);
        return mfree(b);
}

bool manager_bus_name_owned(const ManagerBus *b) {
        return b && b->bus && b->name_acquired;
}

static void manager_bus_schedule_reconnect(ManagerBus *b);

static int manager_bus_on_disconnected(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        ManagerBus *b = userdata;

        log_warning("Lost the connection to the bus; receipts are still taken over HTTP. Reconnecting.");
        b->name_acquired = false;
        b->bus = sd_bus_flush_close_unref(b->bus);
        manager_bus_schedule_reconnect(b);
        return 0;
}

static void manager_bus_on_name_owned(ManagerBus *b) {
        if (b->name_acquired)
                return;
        b->name_acquired = true;
        b->reconnect_delay = 0;
        log_info("Acquired bus name %s on %s.", KKT_BUS_NAME, b->address);
}

static int manager_bus_on_name_acquired(sd_bus_message *message, void *userdata, sd_bus_error *ret_error) {
        ManagerBus *b = userdata;
        const char *name;

        if (sd_bus_message_read(message, "s", &name) >= 0 && streq(name, KKT_BUS_NAME))
                manager_bus_on_name_owned(b);
        return 0;
}

/* The reply of RequestName says whether the name is ours or we wait in its queue. */
static int manager_bus_on_request_name(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        ManagerBus *b = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        uint32_t result;
        int r;

        if (e) {
                log_error("Failed to acquire the bus name %s: %s", KKT_BUS_NAME, e->message ?: e->name);
                return 0;
        }
        r = sd_bus_message_read(reply, "u", &result);
        if (r < 0) {
                log_error_errno(r, "Failed to parse the answer to RequestName(): %m");
                return 0;
        }
        switch (result) {
        case BUS_REQUEST_NAME_PRIMARY_OWNER:
        case BUS_REQUEST_NAME_ALREADY_OWNER:
                manager_bus_on_name_owned(b);
                break;
        case BUS_REQUEST_NAME_IN_QUEUE: /* NameAcquired tells us when it is ours */
                log_warning("Bus name %s is owned by another process; waiting in the queue for it.",
                            KKT_BUS_NAME);
                break;
        default: /* BUS_REQUEST_NAME_EXISTS: not asked for (we queue), so not expected */
                log_error("Failed to acquire the bus name %s: RequestName() answered %" PRIu32 ".",
                          KKT_BUS_NAME, result);
                break;
        }
        return 0;
}

static int manager_bus_connect(ManagerBus *b) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        if (streq(b->address, "system"))
                r = sd_bus_open_system_with_description(&bus, "kkt-adapter");
        else if (streq(b->address, "user"))
                r = sd_bus_open_user_with_description(&bus, "kkt-adapter");
        else {
                r = sd_bus_new(&bus);
                if (r >= 0)
                        r = sd_bus_set_address(bus, b->address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus, true);
                if (r >= 0)
                        r = sd_bus_start(bus);
        }
        if (r < 0)
                return r;

        r = sd_bus_attach_event(bus, b->modules->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;
        r = sd_bus_add_object_vtable(bus, NULL, KKT_BUS_PATH, KKT_BUS_INTERFACE, manager_bus_vtable, b->modules);
        if (r < 0)
                return r;
        r = sd_bus_match_signal_async(bus, NULL, "org.freedesktop.DBus.Local", "/org/freedesktop/DBus/Local",
                                      "org.freedesktop.DBus.Local", "Disconnected", manager_bus_on_disconnected,
                                      NULL, b);
        if (r < 0)
                return r;
        r = sd_bus_match_signal_async(bus, NULL, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                      "org.freedesktop.DBus", "NameAcquired", manager_bus_on_name_acquired,
                                      NULL, b);
        if (r < 0)
                return r;
        /* Queued behind another owner rather than refused: the reply says which, NameAcquired when our
         * turn comes. */
        r = sd_bus_request_name_async(bus, NULL, KKT_BUS_NAME, SD_BUS_NAME_QUEUE, manager_bus_on_request_name, b);
        if (r < 0)
                return r;

        b->bus = TAKE_PTR(bus);
        return 0;
}

static int manager_bus_on_reconnect(sd_event_source *s, uint64_t usec, void *userdata) {
        ManagerBus *b = userdata;
        int r;

        r = manager_bus_connect(b);
        if (r < 0) {
                log_debug_errno(r, "Reconnecting to the bus failed: %m");
                manager_bus_schedule_reconnect(b);
        }
        return 0;
}

static void manager_bus_schedule_reconnect(ManagerBus *b) {
        int r;

        if (b->modules->stopping)
                return;
        b->reconnect_delay = b->reconnect_delay == 0 ? BUS_RECONNECT_MIN
                                                     : MIN(b->reconnect_delay * 2, BUS_RECONNECT_MAX);
        if (!b->reconnect_source) {
                r = sd_event_add_time_relative(b->modules->event, &b->reconnect_source, CLOCK_MONOTONIC,
                                               b->reconnect_delay, 0, manager_bus_on_reconnect, b);
                if (r < 0) {
                        log_error_errno(r, "Failed to schedule the bus reconnection: %m");
                        return;
                }
                (void) sd_event_source_set_description(b->reconnect_source, "manager-bus-reconnect");
        } else
                (void) sd_event_source_set_time_relative(b->reconnect_source, b->reconnect_delay);
        (void) sd_event_source_set_enabled(b->reconnect_source, SD_EVENT_ONESHOT);
}

void manager_bus_start(ManagerBus *b) {
        int r;

        if (streq(b->address, "none"))
                return;
        r = manager_bus_connect(b);
        if (r < 0) {
                log_warning_errno(r, "Failed to connect to the bus %s, will retry: %m", b->address);
                b->bus = sd_bus_flush_close_unref(b->bus);
                manager_bus_schedule_reconnect(b);
        }
}

/* ---- what the daemon tells the bus ---- */

static void manager_bus_emit_properties(ManagerBus *b, char **names) {
        int r;

        if (!manager_bus_name_owned(b) || !names[0])
                return;
        r = sd_bus_emit_properties_changed_strv(b->bus, KKT_BUS_PATH, KKT_BUS_INTERFACE, names);
        if (r < 0)
                log_debug_errno(r, "Failed to emit PropertiesChanged: %m");
}

static void manager_bus_emit_signal(ManagerBus *b, const char *member, const char *id, const char *text) {
        int r;

        if (!manager_bus_name_owned(b))
                return;
        r = sd_bus_emit_signal(b->bus, KKT_BUS_PATH, KKT_BUS_INTERFACE, member, "ss", id, strempty(text));
        if (r < 0)
                log_debug_errno(r, "Failed to emit %s: %m", member);
}

void manager_bus_heartbeat_changed(ManagerBus *b, bool state) {
        char *names[] = { "State", "LastHeartbeatUSec", "LastHeartbeatResult", "ConsecutiveSuccesses",
                          "ConsecutiveFailures", NULL };

        manager_bus_emit_properties(b, state ? names : names + 1);
}

void manager_bus_counters_changed(ManagerBus *b, const StoreCounters *before, const StoreCounters *now) {
        char *changed[7];
        size_t n = 0;

        if (now->pending != before->pending)
                changed[n++] = (char *) "Pending";
        if (now->synced != before->synced)
                changed[n++] = (char *) "Synced";
        if (now->failed != before->failed)
                changed[n++] = (char *) "Failed";
        if (now->dlq != before->dlq)
                changed[n++] = (char *) "DeadLettered";
        if (now->capacity != before->capacity)
                changed[n++] = (char *) "Capacity";
        if (now->print_rejected != before->print_rejected)
                changed[n++] = (char *) "PrintRejected";
        changed[n] = NULL;
        manager_bus_emit_properties(b, changed);
}

void manager_bus_device_changed(ManagerBus *b) {
        manager_bus_emit_properties(b, (char *[]) { "DeviceState", "ShiftNumber", "ShiftOpenUSec",
                                                    "LastFiscalDocument", "ShiftOpen", "ShiftExpiresUSec",
                                                    "ShiftReceipts", "FnValidUntilUSec", "OfdUnsent",
                                                    "OfdFirstUnsentUSec", NULL });
}

void manager_bus_breaker_changed(ManagerBus *b) {
        manager_bus_emit_properties(b, (char *[]) { "CircuitState", NULL });
}

void manager_bus_last_sync_changed(ManagerBus *b) {
        manager_bus_emit_properties(b, (char *[]) { "LastSyncUSec", NULL });
}

void manager_bus_receipt_state_changed(ManagerBus *b, const char *id, ReceiptState state) {
        manager_bus_emit_signal(b, "ReceiptStateChanged", id, receipt_state_to_string(state));
}

void manager_bus_print_rejected(ManagerBus *b, const char *id, const char *reason) {
        manager_bus_emit_signal(b, "PrintRejected", id, reason);
}

void manager_bus_dead_lettered(ManagerBus *b, const char *id, const char *reason) {
        manager_bus_emit_signal(b, "DeadLettered", id, reason);
}
