/* SPDX-License-Identifier: MIT */
#pragma once

/* The daemon on D-Bus: the connection (reconnected with backoff when it drops), the name
 * org.opticserp.KktAdapter1, and the signals it emits. The object's vtable, getters and methods are in
 * manager-bus-object.c; both read the modules, never the Manager. */

#include <systemd/sd-bus.h>

#include "macro.h"
#include "modules.h"
#include "receipt-state.h"

#define KKT_BUS_NAME "org.opticserp.KktAdapter1"
#define KKT_BUS_PATH "/org/opticserp/KktAdapter1"
#define KKT_BUS_INTERFACE "org.opticserp.KktAdapter1"
#define KKT_BUS_ERROR(name) "org.opticserp.KktAdapter1.Error." name

typedef struct ManagerBus ManagerBus;

/* `modules` must outlive it. `address`: "system", "user", "none" (no bus) or a D-Bus address. */
int manager_bus_new(ManagerBus **ret, Modules *modules, const char *address);
ManagerBus *manager_bus_free(ManagerBus *b);
DEFINE_TRIVIAL_CLEANUP_FUNC(ManagerBus *, manager_bus_free);

/* Connects and asks for the name. The bus is a second door, not a precondition: a failure is logged and
 * retried with backoff (until modules->stopping). */
void manager_bus_start(ManagerBus *b);

/* Whether the name is ours, so that signals go out. */
bool manager_bus_name_owned(const ManagerBus *b);

/* PropertiesChanged of the heartbeat's properties; `state` too when its state changed. */
void manager_bus_heartbeat_changed(ManagerBus *b, bool state);
/* PropertiesChanged of the counters that differ between `before` and `now`. */
void manager_bus_counters_changed(ManagerBus *b, const StoreCounters *before, const StoreCounters *now);
/* PropertiesChanged of the register's and the shift's properties. */
void manager_bus_device_changed(ManagerBus *b);
void manager_bus_breaker_changed(ManagerBus *b);
void manager_bus_last_sync_changed(ManagerBus *b);

/* The signals ReceiptStateChanged, PrintRejected and DeadLettered. */
void manager_bus_receipt_state_changed(ManagerBus *b, const char *id, ReceiptState state);
void manager_bus_print_rejected(ManagerBus *b, const char *id, const char *reason);
void manager_bus_dead_lettered(ManagerBus *b, const char *id, const char *reason);
