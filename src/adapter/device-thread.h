/* SPDX-License-Identifier: MIT */
#pragma once

/* A blocking register driver on a worker thread of its own, presented to the loop as an asynchronous
 * DeviceDriver: start() hands the request to the thread, its result comes back through an eventfd and
 * done() runs on the loop. For drivers that wait on a device, a serial line, a vendor library or a file. */

#include <systemd/sd-event.h>

#include "device-driver.h"
#include "macro.h"

/* A blocking driver. open, run and close run on the worker thread, one at a time; interrupt and
 * inject_fault on the loop thread, possibly while run is running (the driver locks what they share). */
typedef struct DeviceThreadDriver {
        /* Connects; on failure returns a negative errno and sets *ret_fault (ERROR when nothing better). */
        int (*open)(void **ret_state, const DeviceOptions *o, DeviceFault *ret_fault);
        /* Runs one request (never OPEN: the thread opens, then runs STATUS) and fills result. */
        void (*run)(void *state, const DeviceRequest *req, DeviceResult *result);
        void (*close)(void *state);
        void (*interrupt)(void *state);                                 /* may be NULL */
        int (*inject_fault)(void *state, DeviceFault f, unsigned count); /* may be NULL */
} DeviceThreadDriver;

typedef struct DeviceThread DeviceThread;

/* o (and its strings) must outlive the thread. Starts the thread; opens nothing yet. */
int device_thread_new(DeviceThread **ret, sd_event *event, const DeviceThreadDriver *driver,
                      const DeviceOptions *o);
/* Waits for the request at the worker (after interrupting the driver), calls its done with the result,
 * closes the driver and joins the thread. */
DeviceThread *device_thread_free(DeviceThread *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(DeviceThread *, device_thread_free);

/* As DeviceDriver.start: -EBUSY when a request is outstanding. OPEN opens the driver if it is not open (a
 * failed open is retried by the next OPEN); every other request fails with -ENOTCONN/NOT_CONNECTED while
 * it is not open. */
int device_thread_start(DeviceThread *t, const DeviceRequest *req, DeviceDriverDone done, void *userdata);
void device_thread_interrupt(DeviceThread *t);
/* As DeviceDriver.inject_fault; before the driver is open the injection waits for the open. */
int device_thread_inject_fault(DeviceThread *t, DeviceFault f, unsigned count);
