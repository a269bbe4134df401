/* SPDX-License-Identifier: MIT */
#pragma once

/* How kktctl fails: the exit statuses kktctl(1) promises to scripts, the mapping of D-Bus errors onto
 * them, and the one-line "kktctl: ..." messages on stderr. */

#include <systemd/sd-bus.h>

#include "macro.h"

/* The values of kktctl(1)'s EXIT STATUS; scripts rely on them, so never renumber. */
typedef enum ExitStatus {
        EXIT_STATUS_OK = 0,
        EXIT_STATUS_FAILED = 1,
        EXIT_STATUS_USAGE = 2,
        EXIT_STATUS_NOT_FOUND = 3,
        EXIT_STATUS_ACCESS_DENIED = 4,
        EXIT_STATUS_NOT_RUNNING = 5,
        EXIT_STATUS_REFUSED = 6,
        EXIT_STATUS_RETRY = 7,
        EXIT_STATUS_NOT_SUPPORTED = 8,
        EXIT_STATUS_NOT_ALLOWED = 9,    /* refund-check: the answer is no (not an error of the call) */
        EXIT_STATUS_SHIFT_EXPIRED = 10, /* the register takes no receipt until the shift is closed */
} ExitStatus;

/* Prints "kktctl: <message>" on stderr (after flushing stdout); %m is strerror(error). */
void cli_error(int error, const char *format, ...) _printf_(2, 3);

/* The exit status for a failed call: by the error's name when it has one, else by the errno r. */
ExitStatus cli_exit_status_from_bus_error(const sd_bus_error *error, int r);

/* Reports a failed D-Bus call on stderr and returns its exit status. `action` says what failed ("submit
 * the receipt"); `needs` names who may do it ("the group kkt-pos"), for the permission message, or NULL
 * when everyone may. */
ExitStatus cli_report_bus_error(const char *action, const char *needs, const sd_bus_error *error, int r);
