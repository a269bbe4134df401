/* SPDX-License-Identifier: MIT */
#pragma once

/* The D-Bus object org.opticserp.KktAdapter1 at /org/opticserp/KktAdapter1: only the vtable, property
 * getters and method handlers; the Manager owns the connection. */

#include <systemd/sd-bus.h>

#define KKT_BUS_NAME "org.opticserp.KktAdapter1"
#define KKT_BUS_PATH "/org/opticserp/KktAdapter1"
#define KKT_BUS_INTERFACE "org.opticserp.KktAdapter1"
#define KKT_BUS_ERROR(name) "org.opticserp.KktAdapter1.Error." name

extern const sd_bus_vtable manager_vtable[];
