/* SPDX-License-Identifier: MIT */
/* Owns how kktctl fails: which D-Bus error becomes which exit status of kktctl(1), and the wording of the
 * one line on stderr that goes with it. */

#include <stdarg.h>

#include "cli.h"
#include "manager-bus.h"

void cli_error(int error, const char *format, ...) {
        char message[2048];
        int saved_errno = errno;
        va_list ap;

        /* So that %m prints the error we were given, as the daemon's log helpers do. */
        errno = abs(error);
        va_start(ap, format);
        vsnprintf(message, sizeof message, format, ap);
        va_end(ap);
        errno = saved_errno;

        fflush(stdout);
        /* Always "kktctl:", whatever argv[0] was: kktctl(1) promises that prefix. */
        fprintf(stderr, "kktctl: %s\n", message);
}

static const struct {
        const char *name;
        ExitStatus status;
} bus_error_table[] = {
        { SD_BUS_ERROR_SERVICE_UNKNOWN, EXIT_STATUS_NOT_RUNNING },
        { SD_BUS_ERROR_NAME_HAS_NO_OWNER, EXIT_STATUS_NOT_RUNNING },
        { SD_BUS_ERROR_DISCONNECTED, EXIT_STATUS_NOT_RUNNING },
        { SD_BUS_ERROR_ACCESS_DENIED, EXIT_STATUS_ACCESS_DENIED },
        { KKT_BUS_ERROR("AccessDenied"), EXIT_STATUS_ACCESS_DENIED },
        { KKT_BUS_ERROR("NotFound"), EXIT_STATUS_NOT_FOUND },
        { KKT_BUS_ERROR("InvalidArgument"), EXIT_STATUS_REFUSED },
        { KKT_BUS_ERROR("InvalidReceipt"), EXIT_STATUS_REFUSED },
        { KKT_BUS_ERROR("KeyMismatch"), EXIT_STATUS_REFUSED },
        /* Over [HTTP] MaxBodySize=: the same receipt will not fit next time either. */
        { KKT_BUS_ERROR("ReceiptTooLarge"), EXIT_STATUS_REFUSED },
        { KKT_BUS_ERROR("BufferFull"), EXIT_STATUS_RETRY },
        { KKT_BUS_ERROR("DiskFull"), EXIT_STATUS_RETRY },
        { KKT_BUS_ERROR("Conflict"), EXIT_STATUS_RETRY },
        { KKT_BUS_ERROR("Unavailable"), EXIT_STATUS_RETRY },
        /* The register failed (paper out, no link, ...): once it is put right, the same call works. */
        { KKT_BUS_ERROR("DeviceFault"), EXIT_STATUS_RETRY },
        /* shift close with no shift open: there is nothing of that name to act on. */
        { KKT_BUS_ERROR("NoShift"), EXIT_STATUS_NOT_FOUND },
        /* Retrying does not help until someone closes the shift: a status of its own, so a script can. */
        { KKT_BUS_ERROR("ShiftExpired"), EXIT_STATUS_SHIFT_EXPIRED },
        /* No answer in time: the outcome is unknown, and a retry (with the same key) is the way out. */
        { SD_BUS_ERROR_NO_REPLY, EXIT_STATUS_RETRY },
        { SD_BUS_ERROR_TIMEOUT, EXIT_STATUS_RETRY },
        { KKT_BUS_ERROR("NotSupported"), EXIT_STATUS_NOT_SUPPORTED },
        /* A daemon older than this kktctl does not know the method at all. */
        { SD_BUS_ERROR_UNKNOWN_METHOD, EXIT_STATUS_NOT_SUPPORTED },
        { KKT_BUS_ERROR("Failed"), EXIT_STATUS_FAILED },
};

static ExitStatus exit_status_from_errno(int r) {
        switch (abs(r)) {
        case ENOENT:
        case ECONNREFUSED:
        case ECONNRESET:
        case ENOTCONN:
        case ESHUTDOWN:
        case EPIPE:
                return EXIT_STATUS_NOT_RUNNING;
        case EACCES:
        case EPERM:
                return EXIT_STATUS_ACCESS_DENIED;
        case ETIMEDOUT:
                return EXIT_STATUS_RETRY;
        default:
                return EXIT_STATUS_FAILED;
        }
}

ExitStatus cli_exit_status_from_bus_error(const sd_bus_error *error, int r) {
        if (sd_bus_error_is_set(error)) {
                for (size_t i = 0; i < ELEMENTSOF(bus_error_table); i++)
                        if (sd_bus_error_has_name(error, bus_error_table[i].name))
                                return bus_error_table[i].status;
                /* The bus could not start the daemon through its activation file. */
                if (startswith(error->name, "org.freedesktop.DBus.Error.Spawn."))
                        return EXIT_STATUS_NOT_RUNNING;
                return EXIT_STATUS_FAILED;
        }
        return exit_status_from_errno(r);
}

ExitStatus cli_report_bus_error(const char *action, const char *needs, const sd_bus_error *error, int r) {
        ExitStatus status = cli_exit_status_from_bus_error(error, r);
        _cleanup_free_ char *detail = NULL;

        assert(action);

        if (sd_bus_error_is_set(error))
                detail = strdup(!isempty(error->message) ? error->message : error->name);
        else
                detail = strdup(strerror(abs(r)));
        if (!detail) {
                cli_error(ENOMEM, "Failed to %s: %m", action);
                return EXIT_STATUS_FAILED;
        }

        switch (status) {
        case EXIT_STATUS_NOT_RUNNING:
                cli_error(0, "Failed to %s: kkt-adapterd is not running or cannot be reached (%s)", action,
                          detail);
                break;
        case EXIT_STATUS_ACCESS_DENIED:
                if (needs)
                        cli_error(0, "Failed to %s: permission denied, this needs %s (%s)", action, needs,
                                  detail);
                else
                        cli_error(0, "Failed to %s: permission denied (%s)", action, detail);
                break;
        case EXIT_STATUS_NOT_SUPPORTED:
                cli_error(0, "Failed to %s: not supported by this kkt-adapterd (%s)", action, detail);
                break;
        case EXIT_STATUS_REFUSED:
                cli_error(0, "Failed to %s, refused: %s", action, detail);
                break;
        case EXIT_STATUS_RETRY:
                cli_error(0, "Failed to %s, try again later: %s", action, detail);
                break;
        case EXIT_STATUS_SHIFT_EXPIRED:
                cli_error(0, "Failed to %s, the shift must be closed first (kktctl shift close): %s", action,
                          detail);
                break;
        default:
                cli_error(0, "Failed to %s: %s", action, detail);
        }
        return status;
}
