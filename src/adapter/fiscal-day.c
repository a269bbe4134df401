/* SPDX-License-Identifier: MIT */
/* Owns the shop's fiscal day around the register: report requests and their answers, the schedule that
 * closes the shift, the early refusal of sales before the 24-hour limit, the periodic status read, and the
 * health verdicts on the shift, the fiscal drive and the print queue. */

#include <ctype.h>
#include <inttypes.h>
#include <time.h>

#include "device-emulator.h"
#include "fiscal-day.h"
#include "json-util.h"
#include "list.h"
#include "log.h"
#include "message-ids.h"
#include "money.h"
#include "string-table.h"

/* How often the fiscal day looks at the queue and the ages of things; the register's status is read every
 * [Device] StatusInterval=. */
#define FISCAL_DAY_TICK (5 * USEC_PER_SEC)

typedef struct ReportRequest ReportRequest;
struct ReportRequest {
        FiscalDay *fiscal_day;
        LIST_FIELDS(ReportRequest, requests);
        FiscalDayReportCallback cb;
        void *userdata;
};

typedef enum DriveLevel {
        DRIVE_OK,
        DRIVE_WARNING,
        DRIVE_CRITICAL,
} DriveLevel;

struct FiscalDay {
        sd_event *event;
        Device *device;
        Printer *printer;
        FiscalDayOptions options;

        sd_event_source *close_source;  /* CLOCK_REALTIME: the next closing on schedule */
        sd_event_source *tick_source;   /* CLOCK_MONOTONIC: the periodic look at the register and the queue */
        usec_t status_requested;        /* CLOCK_MONOTONIC of the last status read asked for */
        bool status_pending;
        bool stuck_logged;              /* the print queue's head was said to be stuck */
        bool stopping;

        ReportRequest *requests;        /* waiting for the register */
        DriveLevel drive_level;         /* last logged */

        FiscalDayChangeCallback change_cb;
        void *change_userdata;
};

/* ---- AutoCloseShift= ---- */

/* The modes with a fixed name; AUTO_CLOSE_DAILY is written as its time. */
static const char *const auto_close_mode_table[_AUTO_CLOSE_MAX] = {
        [AUTO_CLOSE_OFF] = "off",
        [AUTO_CLOSE_LIMIT] = "24h",
};

DEFINE_PRIVATE_STRING_TABLE_LOOKUP(auto_close_mode, AutoCloseMode)

int auto_close_from_string(const char *s, AutoClose *ret) {
        AutoCloseMode mode;
        unsigned h, m;
        int n = 0;

        if (!s)
                return -EINVAL;
        /* "no" and "" read as "off". */
        mode = streq(s, "no") || isempty(s) ? AUTO_CLOSE_OFF : auto_close_mode_from_string(s);
        if (mode >= 0) {
                *ret = (AutoClose) { .mode = mode };
                return 0;
        }
        /* Exactly HH:MM: sscanf() alone would also take blanks and signs (" 1:05", "+1:05"). */
        if (strlen(s) != 5 || !isdigit((unsigned char) s[0]) || !isdigit((unsigned char) s[1]) || s[2] != ':' ||
            !isdigit((unsigned char) s[3]) || !isdigit((unsigned char) s[4]) ||
            sscanf(s, "%2u:%2u%n", &h, &m, &n) != 2 || n != 5 || h > 23 || m > 59)
                return -EINVAL;
        *ret = (AutoClose) { .mode = AUTO_CLOSE_DAILY, .minute_of_day = h * 60 + m };
        return 0;
}

const char *auto_close_to_string(const AutoClose *a, char buf[static 8]) {
        if (a->mode == AUTO_CLOSE_DAILY) {
                snprintf(buf, 8, "%02u:%02u", (a->minute_of_day / 60) % 24, a->minute_of_day % 60);
                return buf;
        }
        return strcpy(buf, auto_close_mode_to_string(a->mode) ?: "off");
}

/* ---- requests ---- */

static void request_free(ReportRequest *q) {
        LIST_REMOVE(requests, q->fiscal_day->requests, q);
        free(q);
}

static int request_new(FiscalDay *f, FiscalDayReportCallback cb, void *userdata, ReportRequest **ret) {
        ReportRequest *q = new0(ReportRequest, 1);

        if (!q)
                return -ENOMEM;
        *q = (ReportRequest) { .fiscal_day = f, .cb = cb, .userdata = userdata };
        LIST_PREPEND(requests, f->requests, q);
        *ret = q;
        return 0;
}

static void request_finish(ReportRequest *q, const DeviceResult *result) {
        FiscalDay *f = q->fiscal_day;
        FiscalDayReportCallback cb = q->cb;
        void *userdata = q->userdata;

        request_free(q);
        if (cb)
                cb(f, result, userdata);
}

void fiscal_day_forget(FiscalDay *f, void *userdata) {
        LIST_FOREACH(requests, q, f->requests)
                if (q->userdata == userdata)
                        q->cb = NULL;
        printer_forget_report(f->printer, userdata);
}

static void fiscal_day_changed(FiscalDay *f) {
        if (f->change_cb)
                f->change_cb(f, f->change_userdata);
}

static void fiscal_day_on_device_result(Device *d, const DeviceResult *result, void *userdata) {
        ReportRequest *q = userdata;

        request_finish(q, result);
}

static void fiscal_day_log_shift(FiscalDay *f, DeviceOperation op, const DeviceResult *result) {
        const DeviceReport *r = &result->report;
        char fd[16], shift[16];

        if (result->error < 0)
                return;
        snprintf(fd, sizeof fd, "%" PRIu32, r->fiscal_document_number);
        snprintf(shift, sizeof shift, "%" PRIu32, r->shift_number);
        if (op == DEVICE_OP_OPEN_SHIFT)
                log_struct(LOG_INFO, MESSAGE_ID_SHIFT_OPENED,
                           LOG_FIELDS({ "SHIFT_NUMBER", shift }, { "FISCAL_DOCUMENT_NUMBER", fd }),
                           "Shift %s opened (fiscal document %s).", shift, fd);
        else if (op == DEVICE_OP_CLOSE_SHIFT)
                log_struct(LOG_INFO, MESSAGE_ID_SHIFT_CLOSED,
                           LOG_FIELDS({ "SHIFT_NUMBER", shift }, { "FISCAL_DOCUMENT_NUMBER", fd }),
                           "Shift %s closed with a Z report (fiscal document %s): %" PRIu32 " receipts.", shift,
                           fd, device_totals_receipts(&r->totals));
}

static void fiscal_day_on_opened(Device *d, const DeviceResult *result, void *userdata) {
        ReportRequest *q = userdata;

        fiscal_day_log_shift(q->fiscal_day, DEVICE_OP_OPEN_SHIFT, result);
        request_finish(q, result);
}

/* An X report or an opening, straight to the register (nothing in the print queue waits for them). */
static int fiscal_day_submit(FiscalDay *f, DeviceOperation op, const char *cashier, const char *cashier_inn,
                             FiscalDayReportCallback cb, void *userdata) {
        ReportRequest *q;
        int r;

        if (f->stopping)
                return -ESHUTDOWN;
        r = request_new(f, cb, userdata, &q);
        if (r < 0)
                return r;
        r = device_submit(f->device,
                          &(DeviceRequest) { .op = op, .cashier = cashier, .cashier_inn = cashier_inn },
                          op == DEVICE_OP_OPEN_SHIFT ? fiscal_day_on_opened : fiscal_day_on_device_result, q);
        if (r < 0)
                request_free(q);
        return r;
}

int fiscal_day_report_x(FiscalDay *f, const char *cashier, const char *cashier_inn, FiscalDayReportCallback cb,
                        void *userdata) {
        return fiscal_day_submit(f, DEVICE_OP_REPORT_X, cashier, cashier_inn, cb, userdata);
}

int fiscal_day_open_shift(FiscalDay *f, const char *cashier, const char *cashier_inn, FiscalDayReportCallback cb,
                          void *userdata) {
        return fiscal_day_submit(f, DEVICE_OP_OPEN_SHIFT, cashier, cashier_inn, cb, userdata);
}

static void fiscal_day_on_closed(Printer *p, const DeviceResult *result, void *userdata) {
        request_finish(userdata, result);
}

int fiscal_day_close_shift(FiscalDay *f, const char *cashier, const char *cashier_inn, FiscalDayReportCallback cb,
                           void *userdata) {
        const PrinterStats *ps = printer_get_stats(f->printer);
        ReportRequest *q;
        int r;

        if (f->stopping)
                return -ESHUTDOWN;
        if (printer_close_pending(f->printer))
                return -EBUSY;
        /* Nothing to close: no shift open, and no receipt waiting that would open one first. */
        if (device_get_status(f->device) && !device_get_shift_open(f->device) && ps->queued == 0 &&
            printer_is_idle(f->printer))
                return -ENOENT;

        r = request_new(f, cb, userdata, &q);
        if (r < 0)
                return r;
        r = printer_close_shift(f->printer, cashier, cashier_inn, fiscal_day_on_closed, q);
        if (r < 0)
                request_free(q);
        return r;
}

/* Everything the printer made of the shift, asked for or not (an opening before a receipt, a Z on
 * schedule): logged here once. */
static void fiscal_day_on_shift_document(Printer *p, DeviceOperation op, const DeviceResult *result,
                                         void *userdata) {
        FiscalDay *f = userdata;

        if (result->error >= 0)
                fiscal_day_log_shift(f, op, result);
        else if (op == DEVICE_OP_CLOSE_SHIFT && result->error != -EALREADY)
                log_struct(LOG_WARNING, MESSAGE_ID_DEVICE_FAULT, NULL,
                           "The Z report could not be made (%s); it is retried.",
                           strna(device_fault_to_text(result->fault)));
        fiscal_day_changed(f);
}

/* ---- the schedule ---- */

static void fiscal_day_on_scheduled_close(Printer *p, const DeviceResult *result, void *userdata) {
        /* Logged by fiscal_day_on_shift_document(); nobody waits for it. */
}

static int fiscal_day_on_close_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* The next local HH:MM after `from` (CLOCK_REALTIME). */
static usec_t next_daily(unsigned minute_of_day, usec_t from) {
        time_t t = (time_t) (from / USEC_PER_SEC);
        struct tm tm;

        for (int day = 0; day < 3; day++) {
                time_t when;

                if (!localtime_r(&t, &tm))
                        return USEC_INFINITY;
                tm.tm_mday += day;
                tm.tm_hour = (int) (minute_of_day / 60);
                tm.tm_min = (int) (minute_of_day % 60);
                tm.tm_sec = 0;
                tm.tm_isdst = -1;
                when = mktime(&tm);
                if (when != (time_t) -1 && (usec_t) when * USEC_PER_SEC > from)
                        return (usec_t) when * USEC_PER_SEC;
        }
        return USEC_INFINITY;
}

static void fiscal_day_arm_close(FiscalDay *f) {
        const DeviceStatus *s = device_get_status(f->device);
        usec_t margin = f->options.shift_margin ?: PRINTER_SHIFT_MARGIN_DEFAULT, when = USEC_INFINITY;
        int r;

        switch (f->options.auto_close.mode) {
        case AUTO_CLOSE_DAILY:
                when = next_daily(f->options.auto_close.minute_of_day, now(CLOCK_REALTIME));
                break;
        case AUTO_CLOSE_LIMIT:
                if (s && s->shift_open && s->shift_open_usec > 0)
                        when = usec_sub_unsigned(usec_add(s->shift_open_usec, DEVICE_SHIFT_MAX_USEC), margin);
                break;
        default:
                break;
        }

        if (when == USEC_INFINITY || f->stopping) {
                if (f->close_source)
                        (void) sd_event_source_set_enabled(f->close_source, SD_EVENT_OFF);
                return;
        }
        if (!f->close_source) {
                r = sd_event_add_time(f->event, &f->close_source, CLOCK_REALTIME, when, USEC_PER_SEC,
                                      fiscal_day_on_close_timer, f);
                if (r < 0) {
                        log_warning_errno(r, "Failed to schedule closing the shift: %m");
                        return;
                }
                (void) sd_event_source_set_description(f->close_source, "fiscal-day-close");
        } else
                (void) sd_event_source_set_time(f->close_source, when);
        (void) sd_event_source_set_enabled(f->close_source, SD_EVENT_ONESHOT);
}

static int fiscal_day_on_close_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        FiscalDay *f = userdata;
        int r;

        if (device_get_shift_open(f->device) && !printer_close_pending(f->printer)) {
                char buf[8];

                log_notice("Closing shift %" PRIu32 " on schedule ([Device] AutoCloseShift=%s).",
                           device_get_shift_number(f->device), auto_close_to_string(&f->options.auto_close, buf));
                r = printer_close_shift(f->printer, NULL, NULL, fiscal_day_on_scheduled_close, f);
                if (r < 0)
                        log_warning_errno(r, "Failed to queue the scheduled Z report: %m");
        }
        /* The daily time comes again tomorrow; the 24-hour one when the next shift opens. */
        if (f->options.auto_close.mode == AUTO_CLOSE_DAILY)
                fiscal_day_arm_close(f);
        return 0;
}

/* ---- status ---- */

static DriveLevel drive_level(const DeviceStatus *s, usec_t n, char *buf, size_t l) {
        if (s->condition == DEVICE_FAULT_FN_FULL || (s->fn_valid_until > 0 && n >= s->fn_valid_until)) {
                snprintf(buf, l, "the fiscal drive (FN %s) is full or expired: the register makes no more "
                         "documents until it is replaced", s->fn_number);
                return DRIVE_CRITICAL;
        }
        if (s->condition == DEVICE_FAULT_OFD_BLOCKED ||
            (s->ofd.unsent > 0 && usec_sub_unsigned(n, s->ofd.first_unsent_usec) >= DEVICE_OFD_BLOCK_AFTER)) {
                snprintf(buf, l, "%" PRIu32 " documents unsent to the OFD since fiscal document %" PRIu32
                         " (30 days or more): the register blocks until they are sent", s->ofd.unsent,
                         s->ofd.first_unsent);
                return DRIVE_CRITICAL;
        }
        if (s->ofd.unsent > 0 && usec_sub_unsigned(n, s->ofd.first_unsent_usec) >= FISCAL_DAY_OFD_WARN_AFTER) {
                snprintf(buf, l, "%" PRIu32 " documents unsent to the OFD for %" PRIu64 " days (the register "
                         "blocks at 30): check its connection to the OFD", s->ofd.unsent,
                         (uint64_t) (usec_sub_unsigned(n, s->ofd.first_unsent_usec) / USEC_PER_DAY));
                return DRIVE_WARNING;
        }
        if (s->fn_valid_until > 0 && s->fn_valid_until - n <= FISCAL_DAY_FN_WARN_BEFORE) {
                snprintf(buf, l, "the fiscal drive (FN %s) expires in %" PRIu64 " days: order its replacement",
                         s->fn_number, (uint64_t) ((s->fn_valid_until - n) / USEC_PER_DAY));
                return DRIVE_WARNING;
        }
        if (s->fn_valid_until > 0)
                snprintf(buf, l, "FN %s valid for %" PRIu64 " more days, %" PRIu32 " documents unsent to the OFD",
                         s->fn_number, (uint64_t) ((s->fn_valid_until - n) / USEC_PER_DAY), s->ofd.unsent);
        else
                snprintf(buf, l, "FN %s, %" PRIu32 " documents unsent to the OFD", s->fn_number, s->ofd.unsent);
        return DRIVE_OK;
}

/* Logs the fiscal drive's verdict when it changes, so an operator hears once, not every minute. */
static void fiscal_day_check_drive(FiscalDay *f) {
        const DeviceStatus *s = device_get_status(f->device);
        char detail[256];
        DriveLevel level;

        if (!s)
                return;
        level = drive_level(s, now(CLOCK_REALTIME), detail, sizeof detail);
        if (level == f->drive_level)
                return;
        f->drive_level = level;
        if (level == DRIVE_OK)
                log_info("Fiscal drive: %s.", detail);
        else
                log_struct(level == DRIVE_CRITICAL ? LOG_ERR : LOG_WARNING, MESSAGE_ID_FN_WARNING,
                           LOG_FIELDS({ "FN_NUMBER", s->fn_number }), "Fiscal drive: %s.", detail);
}

static void fiscal_day_on_status(Device *d, const DeviceResult *result, void *userdata) {
        FiscalDay *f = userdata;

        f->status_pending = false;
        /* The device applied the status; its change callback tells the rest. */
}

/* The print queue's head has not moved for [Device] StuckAfter=: said once, until it moves again. */
static void fiscal_day_check_stuck(FiscalDay *f) {
        usec_t wait = printer_head_wait(f->printer), limit = f->options.stuck_after ?: FISCAL_DAY_STUCK_AFTER_DEFAULT;
        char span[FORMAT_TIMESPAN_MAX];

        if (wait <= limit) {
                f->stuck_logged = false;
                return;
        }
        if (f->stuck_logged)
                return;
        f->stuck_logged = true;
        log_struct(LOG_WARNING, MESSAGE_ID_PRINT_STUCK, NULL,
                   "The print queue has not moved for %s: the register is %s%s%s; %u documents wait.",
                   format_timespan(span, sizeof span, wait / USEC_PER_SEC * USEC_PER_SEC),
                   device_state_to_string(device_get_state(f->device)),
                   device_get_fault(f->device) != DEVICE_FAULT_NONE ? ", " : "",
                   device_get_fault(f->device) != DEVICE_FAULT_NONE ? device_fault_to_text(device_get_fault(f->device)) : "",
                   printer_get_stats(f->printer)->queued + !printer_is_idle(f->printer));
}

static int fiscal_day_on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        FiscalDay *f = userdata;
        usec_t n = now(CLOCK_MONOTONIC), interval = f->options.status_interval ?: FISCAL_DAY_STATUS_INTERVAL_DEFAULT;
        int r;

        if (!f->status_pending && !f->stopping && usec_sub_unsigned(n, f->status_requested) >= interval) {
                r = device_submit(f->device, &(DeviceRequest) { .op = DEVICE_OP_STATUS }, fiscal_day_on_status, f);
                if (r >= 0) {
                        f->status_pending = true;
                        f->status_requested = n;
                }
        }
        (void) sd_event_source_set_time_relative(s, FISCAL_DAY_TICK);
        (void) sd_event_source_set_enabled(s, f->stopping ? SD_EVENT_OFF : SD_EVENT_ONESHOT);
        /* Ages change with time alone: the verdicts are looked at again even without a new status. */
        fiscal_day_check_drive(f);
        fiscal_day_check_stuck(f);
        fiscal_day_changed(f);
        return 0;
}

static void fiscal_day_on_device_change(Device *d, void *userdata) {
        FiscalDay *f = userdata;

        /* Only the 24-hour closing moves with the shift; the daily one stays where it is (re-arming it now
         * could push a timer that is due this very moment to tomorrow). */
        if (f->options.auto_close.mode == AUTO_CLOSE_LIMIT)
                fiscal_day_arm_close(f);
        fiscal_day_check_drive(f);
        fiscal_day_changed(f);
}

/* ---- the object ---- */

int fiscal_day_new(FiscalDay **ret, sd_event *event, Device *device, Printer *printer, const FiscalDayOptions *o) {
        _cleanup_(fiscal_day_freep) FiscalDay *f = NULL;
        int r;

        f = new0(FiscalDay, 1);
        if (!f)
                return -ENOMEM;
        f->event = sd_event_ref(event);
        f->device = device;
        f->printer = printer;
        f->options = *o;

        /* The first status comes with the register's OPEN; the next after the interval. */
        f->status_requested = now(CLOCK_MONOTONIC);
        r = sd_event_add_time_relative(event, &f->tick_source, CLOCK_MONOTONIC, FISCAL_DAY_TICK, USEC_PER_SEC,
                                       fiscal_day_on_tick, f);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(f->tick_source, "fiscal-day-tick");

        device_set_change_callback(device, fiscal_day_on_device_change, f);
        printer_set_shift_callback(printer, fiscal_day_on_shift_document, f);
        printer_set_options(printer, &(PrinterOptions) { .auto_close = o->auto_close.mode != AUTO_CLOSE_OFF,
                                                         .shift_margin = o->shift_margin });
        fiscal_day_arm_close(f);

        *ret = TAKE_PTR(f);
        return 0;
}

FiscalDay *fiscal_day_free(FiscalDay *f) {
        if (!f)
                return NULL;
        /* Requests still waiting belong to clients that are gone with us. */
        while (f->requests)
                request_free(f->requests);
        f->close_source = sd_event_source_disable_unref(f->close_source);
        f->tick_source = sd_event_source_disable_unref(f->tick_source);
        sd_event_unref(f->event);
        return mfree(f);
}

int fiscal_day_set_options(FiscalDay *f, const FiscalDayOptions *o) {
        bool same_close = o->auto_close.mode == f->options.auto_close.mode &&
                          o->auto_close.minute_of_day == f->options.auto_close.minute_of_day &&
                          o->shift_margin == f->options.shift_margin;

        f->options = *o;
        printer_set_options(f->printer, &(PrinterOptions) { .auto_close = o->auto_close.mode != AUTO_CLOSE_OFF,
                                                            .shift_margin = o->shift_margin });
        /* A reload that keeps AutoCloseShift= keeps its timer, due or not. */
        if (!same_close)
                fiscal_day_arm_close(f);
        return 0;
}

void fiscal_day_stop(FiscalDay *f) {
        f->stopping = true;
        if (f->close_source)
                (void) sd_event_source_set_enabled(f->close_source, SD_EVENT_OFF);
        if (f->tick_source)
                (void) sd_event_source_set_enabled(f->tick_source, SD_EVENT_OFF);
}

void fiscal_day_set_change_callback(FiscalDay *f, FiscalDayChangeCallback cb, void *userdata) {
        f->change_cb = cb;
        f->change_userdata = userdata;
}

bool fiscal_day_refuses_sales(FiscalDay *f, const char **ret_detail) {
        if (f->options.auto_close.mode != AUTO_CLOSE_OFF || !printer_shift_guard(f->printer))
                return false;
        if (ret_detail)
                *ret_detail = "The shift reaches 24 hours, after which the fiscal register refuses sales: close "
                              "it with a Z report (kktctl shift close, or POST /v1/kkt/report/z), then send the "
                              "receipt again";
        return true;
}

FiscalDayHealth fiscal_day_health(FiscalDay *f, const char *component, uint64_t print_rejected, char *buf,
                                  size_t l) {
        const DeviceStatus *s = device_get_status(f->device);
        usec_t n = now(CLOCK_REALTIME);
        char ts[FORMAT_ISO8601_MAX], span[FORMAT_TIMESPAN_MAX];

        if (streq(component, "shift")) {
                if (!s) {
                        snprintf(buf, l, "not known yet");
                        return FISCAL_DAY_HEALTHY;
                }
                if (!s->shift_open) {
                        snprintf(buf, l, "no shift open (last: %" PRIu32 ")", s->shift_number);
                        return FISCAL_DAY_HEALTHY;
                }
                format_iso8601_utc(ts, sizeof ts, s->shift_open_usec);
                if (printer_shift_guard(f->printer)) {
                        if (f->options.auto_close.mode == AUTO_CLOSE_OFF) {
                                snprintf(buf, l, "shift %" PRIu32 " open since %s reaches 24 hours: sales are "
                                         "refused until it is closed (kktctl shift close)", s->shift_number, ts);
                                return FISCAL_DAY_UNHEALTHY;
                        }
                        snprintf(buf, l, "shift %" PRIu32 " open since %s is being closed before 24 hours",
                                 s->shift_number, ts);
                        return FISCAL_DAY_DEGRADED;
                }
                snprintf(buf, l, "shift %" PRIu32 " open since %s, %" PRIu32 " receipts", s->shift_number, ts,
                         device_totals_receipts(&s->shift_totals));
                return usec_sub_unsigned(n, s->shift_open_usec) >= 23 * USEC_PER_HOUR ? FISCAL_DAY_DEGRADED
                                                                                       : FISCAL_DAY_HEALTHY;
        }

        if (streq(component, "fiscal_drive")) {
                if (!s) {
                        snprintf(buf, l, "not known yet");
                        return FISCAL_DAY_HEALTHY;
                }
                switch (drive_level(s, n, buf, l)) {
                case DRIVE_CRITICAL:
                        return FISCAL_DAY_UNHEALTHY;
                case DRIVE_WARNING:
                        return FISCAL_DAY_DEGRADED;
                default:
                        return FISCAL_DAY_HEALTHY;
                }
        }

        /* print_queue */
        if (print_rejected > 0) {
                snprintf(buf, l, "%" PRIu64 " receipt(s) rejected by the register wait for an admin "
                         "(kktctl receipt rejected; retry or cancel)", print_rejected);
                return FISCAL_DAY_DEGRADED;
        }
        if (printer_head_wait(f->printer) > (f->options.stuck_after ?: FISCAL_DAY_STUCK_AFTER_DEFAULT)) {
                snprintf(buf, l, "the next document has waited %s for the register (%u queued)",
                         format_timespan(span, sizeof span, printer_head_wait(f->printer) / USEC_PER_SEC * USEC_PER_SEC),
                         printer_get_stats(f->printer)->queued + !printer_is_idle(f->printer));
                return FISCAL_DAY_DEGRADED;
        }
        snprintf(buf, l, "%u queued", printer_get_stats(f->printer)->queued + !printer_is_idle(f->printer));
        return FISCAL_DAY_HEALTHY;
}

/* ---- answers ---- */

static int json_add_money(json_object *o, const char *key, int64_t v) {
        return json_add(o, key, json_object_new_string(MONEY_FORMAT(v, MONEY_SCALE_KOPECKS)));
}

int fiscal_day_report_to_json(const DeviceReport *r, bool offline, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *counts = NULL, *counts2 = NULL, *totals = NULL;
        const DeviceTotals *t = &r->totals;
        char ts[FORMAT_ISO8601_MAX] = "", ts_open[FORMAT_ISO8601_MAX];
        int64_t cash = device_totals_net(t, DEVICE_PAYMENT_CASH), card = device_totals_net(t, DEVICE_PAYMENT_ELECTRONIC);
        int report_type = r->type == DEVICE_REPORT_Z ? 2 : r->type == DEVICE_REPORT_X ? 1 : 0;
        int k;

        o = json_object_new_object();
        counts = json_object_new_object();
        if (!o || !counts)
                return -ENOMEM;
        for (ReceiptType type = 0; type < _RECEIPT_TYPE_MAX; type++)
                if ((k = json_add(counts, receipt_type_to_string(type), json_object_new_int64(t->by_type[type].count))) < 0)
                        return k;
        counts2 = json_object_get(counts);
        k = device_totals_to_json(t, &totals);
        if (k < 0)
                return k;

        /* An opening answered "already open" made no document: no time, number or sign of its own. */
        if (r->datetime > 0)
                format_iso8601_utc(ts, sizeof ts, r->datetime);
        /* The ERP's keys (camelCase), then the same in snake case. Money as exact decimal strings. */
        /* The ERP's report types: 1 X, 2 Z; an opening of the shift has none. */
        if (report_type > 0 && (k = json_add(o, "reportType", json_object_new_int(report_type))) < 0)
                return k;
        if ((k = json_add(o, "shiftNumber", json_object_new_int64(r->shift_number))) < 0 ||
            (k = json_add_string_or_null(o, "dateTime", r->datetime > 0 ? ts : NULL)) < 0 ||
            (k = json_add_money(o, "cashTotal", cash)) < 0 || (k = json_add_money(o, "cardTotal", card)) < 0 ||
            (k = json_add_money(o, "totalSales", t->by_type[RECEIPT_TYPE_SALE].total)) < 0 ||
            (k = json_add_money(o, "totalRefunds", t->by_type[RECEIPT_TYPE_REFUND].total)) < 0 ||
            (k = json_add(o, "receiptCounts", TAKE_PTR(counts))) < 0 ||
            (k = json_add(o, "offline", json_object_new_boolean(offline))) < 0)
                return k;
        if (r->type != DEVICE_REPORT_X && r->fiscal_document_number > 0 &&
            ((k = json_add(o, "fiscalDocumentNumber", json_object_new_int64(r->fiscal_document_number))) < 0 ||
             (k = json_add(o, "fiscalSign", json_object_new_string(r->fiscal_sign))) < 0))
                return k;

        if (report_type > 0 && (k = json_add(o, "report_type", json_object_new_int(report_type))) < 0)
                return k;
        if ((k = json_add(o, "report", json_object_new_string(device_report_type_to_string(r->type)))) < 0 ||
            (k = json_add(o, "shift_number", json_object_new_int64(r->shift_number))) < 0 ||
            (k = json_add(o, "shift_open", json_object_new_boolean(r->type == DEVICE_REPORT_X ? r->shift_open
                                                                                                : r->type == DEVICE_REPORT_OPEN))) < 0 ||
            (k = json_add_string_or_null(o, "shift_open_time",
                                         r->shift_open_usec ? format_iso8601_utc(ts_open, sizeof ts_open,
                                                                                 r->shift_open_usec)
                                                            : NULL)) < 0 ||
            (k = json_add_string_or_null(o, "date_time", r->datetime > 0 ? ts : NULL)) < 0 ||
            (k = json_add_money(o, "cash_total", cash)) < 0 || (k = json_add_money(o, "card_total", card)) < 0 ||
            (k = json_add_money(o, "total_sales", t->by_type[RECEIPT_TYPE_SALE].total)) < 0 ||
            (k = json_add_money(o, "total_refunds", t->by_type[RECEIPT_TYPE_REFUND].total)) < 0 ||
            (k = json_add_money(o, "total_purchases", t->by_type[RECEIPT_TYPE_PURCHASE].total)) < 0 ||
            (k = json_add_money(o, "total_purchase_refunds", t->by_type[RECEIPT_TYPE_PURCHASE_REFUND].total)) < 0 ||
            (k = json_add(o, "receipt_counts", TAKE_PTR(counts2))) < 0 ||
            (k = json_add(o, "receipts", json_object_new_int64(device_totals_receipts(t)))) < 0 ||
            (k = json_add(o, "totals", TAKE_PTR(totals))) < 0 ||
            (k = json_add(o, "ofd_unsent", json_object_new_int64(r->ofd.unsent))) < 0 ||
            (k = json_add(o, "last_fiscal_document", json_object_new_int64(r->last_fiscal_document))) < 0)
                return k;
        if (r->type != DEVICE_REPORT_X && r->fiscal_document_number > 0 &&
            ((k = json_add(o, "fiscal_document_number", json_object_new_int64(r->fiscal_document_number))) < 0 ||
             (k = json_add(o, "fiscal_sign", json_object_new_string(r->fiscal_sign))) < 0))
                return k;

        *ret = TAKE_PTR(o);
        return 0;
}
