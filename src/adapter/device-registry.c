/* SPDX-License-Identifier: MIT */
/* The registry of the built-in drivers: the one table that names them. The front end looks the configured
 * driver up here; the drivers depend only on the driver interface (device-driver.h). */

#include "device-registry.h"
#include "device-atol.h"
#include "device-emulator.h"

/* In the order device_driver_names() gives them, the default first. */
static const DeviceDriver *const drivers[] = {
        &device_emulator_driver,
        &device_atol_driver,
};

const DeviceDriver *device_driver_find(const char *name) {
        if (!name)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(drivers); i++)
                if (streq(drivers[i]->name, name))
                        return drivers[i];
        return NULL;
}

const char *const *device_driver_names(void) {
        static const char *names[ELEMENTSOF(drivers) + 1];

        /* Filled from the table, so a driver added there is named here as well. */
        if (!names[0])
                for (size_t i = 0; i < ELEMENTSOF(drivers); i++)
                        names[i] = drivers[i]->name;
        return names;
}
