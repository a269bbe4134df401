/* SPDX-License-Identifier: MIT */
#pragma once

/* The D-Bus object org.opticserp.KktAdapter1 at /org/opticserp/KktAdapter1: its vtable, whose userdata is
 * the Modules it reads and drives. */

#include <systemd/sd-bus.h>

extern const sd_bus_vtable manager_bus_vtable[];
