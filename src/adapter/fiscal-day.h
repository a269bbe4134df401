/* SPDX-License-Identifier: MIT */
#pragma once

/* The shop's fiscal day around the register: X reports, opening and closing the shift (Z reports queued
 * behind the receipts of the shift), closing it on schedule ([Device] AutoCloseShift=), refusing sales
 * early before the 24-hour limit instead of letting the print queue jam, a periodic look at the register's
 * status (fiscal drive, OFD exchange), and the health verdicts an operator acts on. */

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "device.h"
#include "macro.h"
#include "printer.h"

typedef struct FiscalDay FiscalDay;

typedef enum AutoCloseMode {
        AUTO_CLOSE_OFF,
        AUTO_CLOSE_LIMIT,       /* "24h": just before the shift reaches 24 hours */
        AUTO_CLOSE_DAILY,       /* "HH:MM": every day at that local time */
        _AUTO_CLOSE_MAX,
        _AUTO_CLOSE_INVALID = -EINVAL,
} AutoCloseMode;

typedef struct AutoClose {
        AutoCloseMode mode;
        unsigned minute_of_day; /* AUTO_CLOSE_DAILY: 0..1439, local time */
} AutoClose;

/* "off", "24h" or "HH:MM" (00:00..23:59). -EINVAL otherwise. */
int auto_close_from_string(const char *s, AutoClose *ret);
/* Into buf: "off", "24h" or "HH:MM". */
const char *auto_close_to_string(const AutoClose *a, char buf[static 8]);

typedef struct FiscalDayOptions {
        AutoClose auto_close;
        usec_t stuck_after;     /* the head of the print queue waiting longer is "stuck"; 0: 60 s */
        usec_t status_interval; /* how often the register's status is read; 0: 60 s */
        usec_t shift_margin;    /* 0: PRINTER_SHIFT_MARGIN_DEFAULT */
} FiscalDayOptions;

#define FISCAL_DAY_STUCK_AFTER_DEFAULT (60 * USEC_PER_SEC)
#define FISCAL_DAY_STATUS_INTERVAL_DEFAULT (60 * USEC_PER_SEC)
/* The OFD exchange: documents waiting this long make the register's health degraded; at
 * DEVICE_OFD_BLOCK_AFTER (30 days) the fiscal drive blocks and the health is unhealthy. */
#define FISCAL_DAY_OFD_WARN_AFTER (25 * USEC_PER_DAY)
/* The fiscal drive: this close to its expiry the health is degraded. */
#define FISCAL_DAY_FN_WARN_BEFORE (30 * USEC_PER_DAY)

/* The result of a report request: the register's result (error 0, or -EALREADY for a shift closed already,
 * ...). For the Z report and the opening also what the requester should be told when it failed before the
 * register (-EBUSY, -ENOENT) through error alone. */
typedef void (*FiscalDayReportCallback)(FiscalDay *f, const DeviceResult *result, void *userdata);

int fiscal_day_new(FiscalDay **ret, sd_event *event, Device *device, Printer *printer, const FiscalDayOptions *o);
FiscalDay *fiscal_day_free(FiscalDay *f);
DEFINE_TRIVIAL_CLEANUP_FUNC(FiscalDay *, fiscal_day_free);

int fiscal_day_set_options(FiscalDay *f, const FiscalDayOptions *o);
void fiscal_day_stop(FiscalDay *f);

/* Called when anything the health or the D-Bus properties show may have changed. */
typedef void (*FiscalDayChangeCallback)(FiscalDay *f, void *userdata);
void fiscal_day_set_change_callback(FiscalDay *f, FiscalDayChangeCallback cb, void *userdata);

/* The register's X report. cb is called once, never from inside this call. */
int fiscal_day_report_x(FiscalDay *f, const char *cashier, const char *cashier_inn, FiscalDayReportCallback cb,
                        void *userdata);
/* Opens a shift (-EALREADY in the result when one is open). */
int fiscal_day_open_shift(FiscalDay *f, const char *cashier, const char *cashier_inn, FiscalDayReportCallback cb,
                          void *userdata);
/* The Z report, behind the receipts queued before it. -EBUSY: a Z report is queued or running already;
 * -ENOENT: no shift is open and no receipt is waiting to open one. */
int fiscal_day_close_shift(FiscalDay *f, const char *cashier, const char *cashier_inn, FiscalDayReportCallback cb,
                           void *userdata);
/* The requester of a report stopped waiting (its client went away); the report is still made. */
void fiscal_day_forget(FiscalDay *f, void *userdata);

/* Whether intake must refuse a sale now, because the shift is about to reach 24 hours and nothing will close
 * it first (AutoCloseShift=off). *ret_detail (static storage) says what to do. */
bool fiscal_day_refuses_sales(FiscalDay *f, const char **ret_detail);

typedef enum FiscalDayHealth {
        FISCAL_DAY_HEALTHY,
        FISCAL_DAY_DEGRADED,
        FISCAL_DAY_UNHEALTHY,
} FiscalDayHealth;

/* The verdict on one component: "shift", "fiscal_drive", "print_queue". print_rejected is the count of
 * receipts set aside. detail is written into buf. */
FiscalDayHealth fiscal_day_health(FiscalDay *f, const char *component, uint64_t print_rejected, char *buf,
                                  size_t l);

/* The answer to an X or Z report, as the ERP reads it: {"reportType": 1|2, "shiftNumber", "dateTime",
 * "cashTotal", "cardTotal", "totalSales", "totalRefunds", "receiptCounts" {...}, "offline",
 * "fiscalDocumentNumber", "fiscalSign" (Z), and the same in snake case, plus "totals" in detail}. offline:
 * whether the OFD is unreachable now. */
int fiscal_day_report_to_json(const DeviceReport *r, bool offline, json_object **ret);
