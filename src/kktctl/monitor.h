/* SPDX-License-Identifier: MIT */
#pragma once

/* `kktctl monitor`: follows the daemon's PropertiesChanged, ReceiptStateChanged, DeadLettered and
 * PrintRejected signals and its coming and going on the bus, one line per event, until SIGINT or SIGTERM. */

#include <stdbool.h>
#include <stdio.h>
#include <systemd/sd-bus.h>

#include "macro.h"

typedef struct Monitor Monitor;

/* Takes a reference on bus and installs the matches before it returns, so no event after that is missed.
 * Blocks SIGINT and SIGTERM in the calling thread: they end monitor_run(). A property announced with the
 * value it had already is not shown, and an announcement with nothing new is not shown at all. Times are
 * local, or UTC when utc. */
int monitor_new(Monitor **ret, sd_bus *bus, bool json, bool utc, FILE *out);
Monitor *monitor_free(Monitor *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Monitor *, monitor_free);

/* Whether the daemon owns its name right now (asked once in monitor_new()). */
bool monitor_daemon_running(Monitor *m);

/* Runs until SIGINT/SIGTERM (returns 0) or until the bus connection is lost (-ECONNRESET), or until
 * writing an event fails (that error). */
int monitor_run(Monitor *m);
