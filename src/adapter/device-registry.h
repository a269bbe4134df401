/* SPDX-License-Identifier: MIT */
#pragma once

/* The registry of the drivers built into the daemon: which names the configuration may give in Driver=,
 * and the DeviceDriver each stands for. The one place that knows every driver; the front end (device.c)
 * asks it, the drivers know nothing of it. */

#include "device-driver.h"

/* NULL when there is no driver of that name. */
const DeviceDriver *device_driver_find(const char *name);
/* The names of the drivers, NULL-terminated. */
const char *const *device_driver_names(void);
