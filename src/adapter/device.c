/* SPDX-License-Identifier: MIT */
/* The device front end: the queue of operations on the loop, one at a time at the driver, the loop-side
 * timeout for each, and the register's state as the loop knows it from the results. The driver comes from
 * the registry by name; what drivers are and what they report is device-driver.c. */

#include <inttypes.h>

#include "device-json.h"
#include "device.h"
#include "list.h"
#include "log.h"
#include "message-ids.h"

typedef struct Op Op;

struct Op {
        LIST_FIELDS(Op, queue);
        DeviceRequest req;      /* its strings are the copies below */
        char *receipt_id, *receipt_json, *cashier, *cashier_inn;
        usec_t queued_at;       /* CLOCK_MONOTONIC */
        DeviceCallback cb;
        void *userdata;
        bool internal;          /* an OPEN the device put in front of another operation */
        bool reported;          /* its callback ran (a timeout reports before the driver is done) */
};

struct Device {
        sd_event *event;
        const DeviceDriver *driver;
        void *driver_state;
        DeviceOptions *options; /* a copy, owning its strings, for the driver's life */

        sd_event_source *timer_source;
        sd_event_source *notify_source;

        Op *current;            /* at the driver; at most one */
        bool current_abandoned; /* its timeout was reported; what it returns is late */
        Op *queue_head, *queue_tail;
        bool freeing;
        bool opened;            /* an OPEN succeeded */

        DeviceState condition;  /* READY, FAULT or UNKNOWN; PRINTING is derived from current */
        DeviceFault fault;
        char *last_fault_text;
        DeviceStatus status;
        bool have_status;

        bool notify_pending;
        DeviceLateCallback late_cb;
        void *late_userdata;
        DeviceChangeCallback change_cb;
        void *change_userdata;
};

/* ---- operations ---- */

static Op *op_free(Op *op) {
        if (!op)
                return NULL;
        free(op->receipt_id);
        free(op->receipt_json);
        free(op->cashier);
        free(op->cashier_inn);
        return mfree(op);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(Op *, op_free);

static bool op_makes_document(const Op *op) {
        return IN_SET(op->req.op, DEVICE_OP_PRINT, DEVICE_OP_OPEN_SHIFT, DEVICE_OP_CLOSE_SHIFT);
}

/* Calls the operation's callback, once. */
static void op_report(Device *d, Op *op, const DeviceResult *result) {
        if (op->reported)
                return;
        op->reported = true;
        if (op->cb)
                op->cb(d, result, op->userdata);
}

static void op_report_error(Device *d, Op *op, int error, DeviceFault fault) {
        op_report(d, op, &(DeviceResult) { .error = error, .fault = fault });
}

/* ---- state on the loop ---- */

/* The change callback runs from a defer source, never from inside one of our functions the caller
 * called, and once for a burst of changes. */
static void device_schedule_notify(Device *d) {
        d->notify_pending = true;
        if (d->change_cb && !d->freeing)
                (void) sd_event_source_set_enabled(d->notify_source, SD_EVENT_ONESHOT);
}

static int device_on_notify(sd_event_source *s, void *userdata) {
        Device *d = userdata;

        if (!d->notify_pending)
                return 0;
        d->notify_pending = false;
        if (d->change_cb)
                d->change_cb(d, d->change_userdata);
        return 0;
}

/* receipt_id (may be NULL): the receipt whose operation showed the fault, for the journal. */
static void device_set_condition(Device *d, DeviceState condition, DeviceFault fault, int error,
                                 const char *receipt_id) {
        assert(IN_SET(condition, DEVICE_STATE_READY, DEVICE_STATE_FAULT, DEVICE_STATE_UNKNOWN));

        if (condition == d->condition && fault == d->fault)
                return;

        if (condition == DEVICE_STATE_READY)
                log_info("Fiscal register %s is ready.", d->driver->name);
        else if (fault != DEVICE_FAULT_NONE) {
                _cleanup_free_ char *text = NULL;
                const char *receipt_status;

                if (fault == DEVICE_FAULT_ERROR && error < 0)
                        (void) asprintf(&text, "%s: %s", device_fault_to_text(fault), strerror(-error));
                else
                        text = strdup(device_fault_to_text(fault));
                if (text) {
                        free(d->last_fault_text);
                        d->last_fault_text = TAKE_PTR(text);
                }
                /* Logged on the change only, so a retried print does not repeat it. Without a receipt the
                 * NULL key ends the field list early. The receipt's status is the printer's verdict on
                 * such a fault: set aside for a permanent one, retried otherwise. */
                receipt_status = receipt_state_to_string(
                        device_fault_is_permanent(fault) ? RECEIPT_STATE_PRINT_REJECTED : RECEIPT_STATE_PRINT_FAILED);
                log_struct(LOG_WARNING, MESSAGE_ID_DEVICE_FAULT,
                           LOG_FIELDS({ "DEVICE_FAULT", device_fault_to_string(fault) },
                                      { receipt_id ? "RECEIPT_ID" : NULL, receipt_id },
                                      { "RECEIPT_STATUS", receipt_status }),
                           "Fiscal register %s: %s%s%s.", d->driver->name, strna(d->last_fault_text),
                           receipt_id ? ", receipt " : "", strempty(receipt_id));
        }

        d->condition = condition;
        d->fault = fault;
        device_schedule_notify(d);
}

static void device_apply_status(Device *d, const DeviceStatus *s) {
        d->status = *s;
        d->have_status = true;
        if (s->condition == DEVICE_FAULT_NONE)
                device_set_condition(d, DEVICE_STATE_READY, DEVICE_FAULT_NONE, 0, NULL);
        else
                device_set_condition(d, DEVICE_STATE_FAULT, s->condition, 0, NULL);
        device_schedule_notify(d);
}

/* What an operation that came back (in time or late) tells about the register. */
static void device_apply_result(Device *d, const Op *op, const DeviceResult *result) {
        if (result->error < 0) {
                switch (result->fault) {
                case DEVICE_FAULT_NONE:     /* e.g. no such document, shift closed already: it answered */
                case DEVICE_FAULT_REJECTED: /* about the request, not the register */
                        if (result->have_status)
                                device_apply_status(d, &result->status);
                        break;
                case DEVICE_FAULT_TIMEOUT_UNKNOWN:
                        device_set_condition(d, DEVICE_STATE_UNKNOWN, result->fault, result->error,
                                             op->req.receipt_id);
                        break;
                default:
                        device_set_condition(d, DEVICE_STATE_FAULT, result->fault, result->error,
                                             op->req.receipt_id);
                }
                return;
        }

        if (op->req.op == DEVICE_OP_OPEN)
                d->opened = true;

        if (result->have_status) {
                device_apply_status(d, &result->status);
                return;
        }

        /* A driver that does not report its status after every operation: what the result itself says. */
        switch (op->req.op) {
        case DEVICE_OP_PRINT:
                d->status.shift_open = true;
                d->status.shift_number = result->doc.shift_number;
                d->status.last_fiscal_document = MAX(d->status.last_fiscal_document,
                                                     result->doc.fiscal_document_number);
                break;
        case DEVICE_OP_OPEN_SHIFT:
                d->status.shift_open = true;
                d->status.shift_number = result->report.shift_number;
                d->status.shift_open_usec = result->report.shift_open_usec;
                d->status.shift_totals = (DeviceTotals) {};
                d->status.last_fiscal_document = MAX(d->status.last_fiscal_document,
                                                     result->report.last_fiscal_document);
                break;
        case DEVICE_OP_CLOSE_SHIFT:
                d->status.shift_open = false;
                d->status.shift_number = result->report.shift_number;
                d->status.shift_open_usec = 0;
                d->status.shift_totals = (DeviceTotals) {};
                d->status.last_fiscal_document = MAX(d->status.last_fiscal_document,
                                                     result->report.last_fiscal_document);
                break;
        default:
                break;
        }
        device_set_condition(d, DEVICE_STATE_READY, DEVICE_FAULT_NONE, 0, NULL);
        device_schedule_notify(d);
}

static void device_disarm(Device *d) {
        (void) sd_event_source_set_enabled(d->timer_source, SD_EVENT_OFF);
}

static void device_arm(Device *d, usec_t when) {
        int r;

        r = sd_event_source_set_time(d->timer_source, when);
        if (r >= 0)
                r = sd_event_source_set_enabled(d->timer_source, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "Failed to arm the fiscal register's timeout, continuing without: %m");
}

/* While the driver is stuck in an operation whose timeout was reported, the queue's head fails `timeout`
 * after it was queued. */
static void device_arm_queue(Device *d) {
        if (d->current_abandoned && d->queue_head)
                device_arm(d, usec_add(d->queue_head->queued_at, d->options->timeout));
        else
                device_disarm(d);
}

static void device_on_done(const DeviceResult *result, void *userdata);

static Op *device_pop(Device *d) {
        return LIST_POP(queue, d->queue_head, d->queue_tail);
}

static void device_push_front(Device *d, Op *op) {
        LIST_PREPEND(queue, d->queue_head, op);
        if (!d->queue_tail)
                d->queue_tail = op;
}

/* An internal OPEN failed: the operation it stood in front of fails the same way, unsent. */
static void device_fail_behind_open(Device *d, const DeviceResult *result) {
        _cleanup_(op_freep) Op *op = device_pop(d);

        if (op)
                op_report_error(d, op, result->error, result->fault);
}

/* Hands the next operation to the driver when it is free. */
static void device_kick(Device *d) {
        int r;

        while (!d->current && d->queue_head && !d->freeing) {
                Op *op = d->queue_head;

                /* A register that never opened is opened first; the operation waits behind its OPEN. */
                if (!d->opened && op->req.op != DEVICE_OP_OPEN) {
                        Op *open = new0(Op, 1);

                        if (!open) {
                                op = device_pop(d);
                                op_report_error(d, op, -ENOMEM, DEVICE_FAULT_NONE);
                                op_free(op);
                                continue;
                        }
                        open->req.op = DEVICE_OP_OPEN;
                        open->internal = true;
                        open->queued_at = op->queued_at;
                        device_push_front(d, open);
                }

                op = device_pop(d);
                d->current = op;
                d->current_abandoned = false;
                device_arm(d, usec_add(now(CLOCK_MONOTONIC), d->options->timeout));
                r = d->driver->start(d->driver_state, &op->req, device_on_done, d);
                if (r < 0) {
                        /* Nothing was sent. Drivers refuse only what they cannot even try (out of memory), so
                         * this is the one place a callback may run from inside device_submit(). */
                        log_warning_errno(r, "Fiscal register driver %s refused to start %s: %m", d->driver->name,
                                          device_operation_to_string(op->req.op));
                        d->current = NULL;
                        device_disarm(d);
                        if (op->internal)
                                device_fail_behind_open(d, &(DeviceResult) { .error = r,
                                                                             .fault = DEVICE_FAULT_ERROR });
                        else
                                op_report_error(d, op, r, DEVICE_FAULT_ERROR);
                        op_free(op);
                        continue;
                }
                if (op->req.op == DEVICE_OP_PRINT)
                        device_schedule_notify(d);
        }
}

static void device_on_done(const DeviceResult *result, void *userdata) {
        Device *d = userdata;
        _cleanup_(op_freep) Op *op = TAKE_PTR(d->current);
        bool late = d->current_abandoned;

        assert(op);
        d->current_abandoned = false;
        device_disarm(d);
        device_apply_result(d, op, result);

        if (op->internal) {
                /* After a timeout the operation behind it was failed already by device_on_timer(). */
                if (result->error < 0 && !late)
                        device_fail_behind_open(d, result);
                device_kick(d);
                return;
        }

        if (!late) {
                device_kick(d);
                op_report(d, op, result);
                return;
        }

        device_kick(d);
        if (op->req.op == DEVICE_OP_PRINT) {
                if (result->error >= 0)
                        log_notice("Fiscal register made document %" PRIu32 " for receipt %s after its "
                                   "timeout.",
                                   result->doc.fiscal_document_number, op->req.receipt_id);
                if (d->late_cb)
                        d->late_cb(d, op->req.receipt_id, result, d->late_userdata);
        } else if (op_makes_document(op) && result->error >= 0)
                log_notice("Fiscal register made its %s document %" PRIu32 " after the timeout.",
                           device_operation_to_string(op->req.op), result->report.fiscal_document_number);
}

static void device_expire_queue(Device *d) {
        usec_t n = now(CLOCK_MONOTONIC);

        while (d->current_abandoned && d->queue_head &&
               usec_add(d->queue_head->queued_at, d->options->timeout) <= n) {
                _cleanup_(op_freep) Op *op = device_pop(d);

                op_report_error(d, op, -ETIMEDOUT, DEVICE_FAULT_TIMEOUT_BEFORE);
        }
        device_arm_queue(d);
}

static int device_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Device *d = userdata;
        Op *op = d->current;

        if (!op || d->current_abandoned) {
                device_expire_queue(d);
                return 0;
        }

        /* The driver cannot be stopped in the middle of an operation: it stays at the register, and what
         * it brings back is late. The caller learns now that the outcome is unknown. */
        d->current_abandoned = true;
        device_set_condition(d, DEVICE_STATE_UNKNOWN, DEVICE_FAULT_TIMEOUT_UNKNOWN, -ETIMEDOUT,
                             op->req.receipt_id);
        device_arm_queue(d);
        if (op->internal)
                device_fail_behind_open(d, &(DeviceResult) { .error = -ETIMEDOUT,
                                                             .fault = DEVICE_FAULT_TIMEOUT_BEFORE });
        else
                /* Only a document-making operation may have made something; the others made nothing. */
                op_report_error(d, op, -ETIMEDOUT,
                                op_makes_document(op) ? DEVICE_FAULT_TIMEOUT_UNKNOWN : DEVICE_FAULT_TIMEOUT_BEFORE);
        return 0;
}

/* ---- the Device ---- */

static int strdup_or_null(const char *s, char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int device_new(Device **ret, const DeviceContext *ctx, const DeviceOptions *o) {
        _cleanup_(device_freep) Device *d = NULL;
        DeviceOptions named;
        int r;

        assert(ret);
        assert(ctx);
        assert(ctx->event);
        assert(o);

        d = new0(Device, 1);
        if (!d)
                return -ENOMEM;
        d->event = sd_event_ref(ctx->event);
        d->condition = DEVICE_STATE_UNKNOWN;

        d->driver = device_driver_find(o->driver ?: DEVICE_DRIVER_DEFAULT);
        if (!d->driver)
                return -ENOPKG;

        named = *o;
        named.driver = d->driver->name;
        named.timeout = o->timeout ?: DEVICE_TIMEOUT_DEFAULT;
        r = device_options_copy(&named, &d->options);
        if (r < 0)
                return r;

        r = sd_event_add_time(d->event, &d->timer_source, CLOCK_MONOTONIC, USEC_INFINITY, USEC_PER_MSEC,
                              device_on_timer, d);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(d->timer_source, "device-timeout");
        r = sd_event_source_set_enabled(d->timer_source, SD_EVENT_OFF);
        if (r < 0)
                return r;

        r = sd_event_add_defer(d->event, &d->notify_source, device_on_notify, d);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(d->notify_source, "device-notify");
        r = sd_event_source_set_enabled(d->notify_source, SD_EVENT_OFF);
        if (r < 0)
                return r;

        r = d->driver->create(&d->driver_state, ctx, d->options);
        if (r < 0)
                return r;

        r = device_submit(d, &(DeviceRequest) { .op = DEVICE_OP_OPEN }, NULL, NULL);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(d);
        return 0;
}

Device *device_free(Device *d) {
        if (!d)
                return NULL;

        d->freeing = true;

        /* Waits for the operation at the register, whose done() reports it; then what never left. */
        if (d->driver_state) {
                if (d->driver->interrupt)
                        d->driver->interrupt(d->driver_state);
                d->driver->free(TAKE_PTR(d->driver_state));
        }
        assert(!d->current);
        while (d->queue_head) {
                _cleanup_(op_freep) Op *op = device_pop(d);

                op_report_error(d, op, -ECANCELED, DEVICE_FAULT_NONE);
        }

        d->timer_source = sd_event_source_disable_unref(d->timer_source);
        d->notify_source = sd_event_source_disable_unref(d->notify_source);
        d->event = sd_event_unref(d->event);

        d->options = device_options_free(d->options);
        free(d->last_fault_text);
        return mfree(d);
}

int device_submit(Device *d, const DeviceRequest *req, DeviceCallback cb, void *userdata) {
        _cleanup_(op_freep) Op *op = NULL;
        int r;

        assert(d);
        assert(req);

        if (d->freeing)
                return -ESHUTDOWN;
        if (req->op < 0 || req->op >= _DEVICE_OP_MAX)
                return -EINVAL;
        if (IN_SET(req->op, DEVICE_OP_PRINT, DEVICE_OP_FIND)) {
                if (isempty(req->receipt_id) || strlen(req->receipt_id) > DEVICE_RECEIPT_ID_MAX ||
                    !req->receipt_json)
                        return -EINVAL;
        }
        if (req->op == DEVICE_OP_DEBUG && !req->receipt_json)
                return -EINVAL;
        if ((req->cashier && strlen(req->cashier) > DEVICE_CASHIER_MAX * 4) ||
            (req->cashier_inn && strlen(req->cashier_inn) > DEVICE_INN_MAX))
                return -EINVAL;

        op = new0(Op, 1);
        if (!op)
                return -ENOMEM;
        op->req = *req;
        op->queued_at = now(CLOCK_MONOTONIC);
        op->cb = cb;
        op->userdata = userdata;
        if ((r = strdup_or_null(req->receipt_id, &op->receipt_id)) < 0 ||
            (r = strdup_or_null(req->receipt_json, &op->receipt_json)) < 0 ||
            (r = strdup_or_null(req->cashier, &op->cashier)) < 0 ||
            (r = strdup_or_null(req->cashier_inn, &op->cashier_inn)) < 0)
                return r;
        op->req.receipt_id = op->receipt_id;
        op->req.receipt_json = op->receipt_json;
        op->req.cashier = op->cashier;
        op->req.cashier_inn = op->cashier_inn;

        LIST_APPEND(queue, d->queue_head, d->queue_tail, op);
        TAKE_PTR(op);

        /* Started from a defer-like path: the driver finishes later than this call in any case, so the
         * callback never runs from inside it. */
        device_kick(d);
        if (d->current_abandoned && d->queue_head == d->queue_tail)
                device_arm_queue(d); /* the first to wait behind a stuck operation */
        return 0;
}

void device_set_late_callback(Device *d, DeviceLateCallback cb, void *userdata) {
        assert(d);
        d->late_cb = cb;
        d->late_userdata = userdata;
}

void device_set_change_callback(Device *d, DeviceChangeCallback cb, void *userdata) {
        assert(d);
        d->change_cb = cb;
        d->change_userdata = userdata;
}

const char *device_get_driver_name(Device *d) {
        assert(d);
        return d->driver->name;
}

DeviceState device_get_state(Device *d) {
        assert(d);
        if (d->current && !d->current_abandoned && op_makes_document(d->current))
                return DEVICE_STATE_PRINTING;
        return d->condition;
}

DeviceFault device_get_fault(Device *d) {
        assert(d);
        return d->fault;
}

const char *device_get_last_fault_text(Device *d) {
        assert(d);
        return d->last_fault_text;
}

const DeviceStatus *device_get_status(Device *d) {
        assert(d);
        return d->have_status ? &d->status : NULL;
}

uint32_t device_get_shift_number(Device *d) {
        assert(d);
        return d->status.shift_number;
}

bool device_get_shift_open(Device *d) {
        assert(d);
        return d->status.shift_open;
}

usec_t device_get_shift_open_usec(Device *d) {
        assert(d);
        return d->status.shift_open ? d->status.shift_open_usec : 0;
}

uint32_t device_get_last_fiscal_document(Device *d) {
        assert(d);
        return d->status.last_fiscal_document;
}

bool device_is_idle(Device *d) {
        assert(d);
        return !d->current && !d->queue_head;
}

static int json_add_days(json_object *o, const char *key, int64_t usec) {
        /* Whole days, rounded towards minus infinity: 0.5 days left is day 0, an hour overdue is -1. */
        int64_t days = usec >= 0 ? usec / (int64_t) USEC_PER_DAY : -((-usec + (int64_t) USEC_PER_DAY - 1) /
                                                                       (int64_t) USEC_PER_DAY);
        return json_add_int(o, key, days);
}

int device_state_to_json(Device *d, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *tax = NULL, *shift = NULL;
        const DeviceStatus *s = &d->status;
        usec_t n = now(CLOCK_REALTIME);
        int r;

        assert(d);
        assert(ret);

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if ((r = json_add_string(o, "driver", d->driver->name)) < 0 ||
            (r = json_add_string(o, "state", device_state_to_string(device_get_state(d)))) < 0)
                return r;
        if (d->fault != DEVICE_FAULT_NONE) {
                r = json_add_string(o, "fault", device_fault_to_string(d->fault));
                if (r < 0)
                        return r;
        }
        if ((r = json_add_string_or_null(o, "last_fault", d->last_fault_text)) < 0 ||
            (r = json_add_int(o, "shift_number", s->shift_number)) < 0 ||
            (r = json_add(o, "shift_open", json_object_new_boolean(s->shift_open))) < 0)
                return r;
        if (s->shift_open && s->shift_open_usec > 0) {
                if ((r = json_add_time(o, "shift_open_time", s->shift_open_usec)) < 0 ||
                    (r = json_add_time(o, "shift_expires_time",
                                       usec_add(s->shift_open_usec, DEVICE_SHIFT_MAX_USEC))) < 0)
                        return r;
        }
        if ((r = json_add_int(o, "last_fiscal_document", s->last_fiscal_document)) < 0)
                return r;
        if (!d->have_status) {
                *ret = TAKE_PTR(o);
                return 0;
        }

        if ((r = json_add_string(o, "model", s->model)) < 0 || (r = json_add_string(o, "serial", s->serial)) < 0 ||
            (r = json_add_string(o, "fn_number", s->fn_number)) < 0 ||
            (r = json_add_string(o, "registration_number", s->registration_number)) < 0 ||
            (r = json_add_string(o, "inn", s->inn)) < 0 || (r = json_add_time(o, "fn_valid_until", s->fn_valid_until)) < 0)
                return r;
        if (s->fn_valid_until > 0)
                r = json_add_days(o, "fn_days_left", (int64_t) s->fn_valid_until - (int64_t) n);
        else
                r = json_add_string_or_null(o, "fn_days_left", NULL);
        if (r < 0)
                return r;
        if ((r = json_add_int(o, "fn_documents", s->fn_documents)) < 0 ||
            (r = json_add_int(o, "fn_capacity", s->fn_capacity)) < 0 ||
            (r = json_add_int(o, "ofd_unsent", s->ofd.unsent)) < 0 ||
            (r = json_add_int(o, "ofd_first_unsent", s->ofd.first_unsent)) < 0 ||
            (r = json_add_time(o, "ofd_first_unsent_time", s->ofd.first_unsent_usec)) < 0)
                return r;
        if (s->ofd.first_unsent_usec > 0)
                r = json_add_days(o, "ofd_unsent_days", (int64_t) n - (int64_t) s->ofd.first_unsent_usec);
        else
                r = json_add_int(o, "ofd_unsent_days", 0);
        if (r < 0)
                return r;

        tax = json_object_new_array();
        if (!tax)
                return -ENOMEM;
        for (unsigned bit = 1; bit <= TAXATION_PATENT; bit <<= 1)
                if ((s->taxations & bit) && taxation_to_string((Taxation) bit) &&
                    json_object_array_add(tax, json_object_new_string(taxation_to_string((Taxation) bit))) < 0)
                        return -ENOMEM;
        if ((r = json_add(o, "taxations", TAKE_PTR(tax))) < 0)
                return r;

        r = device_totals_to_json(&s->shift_totals, &shift);
        if (r < 0)
                return r;
        if ((r = json_add(o, "shift", TAKE_PTR(shift))) < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

#if ENABLE_DEBUG_HOOKS
int device_debug_inject_fault(Device *d, DeviceFault f, unsigned count) {
        int r;

        assert(d);

        if (!d->driver->inject_fault)
                return -EOPNOTSUPP;
        if (f < 0 || f >= _DEVICE_FAULT_MAX || f == DEVICE_FAULT_ERROR)
                return -EINVAL;

        r = d->driver->inject_fault(d->driver_state, f, count);
        if (r < 0)
                return r;
        if (f == DEVICE_FAULT_NONE)
                log_notice("Debug: injected fiscal register faults cleared.");
        else if (count == 0)
                log_notice("Debug: fiscal register fault %s injected until cleared.",
                           device_fault_to_string(f));
        else
                log_notice("Debug: fiscal register fault %s injected for %u operations.",
                           device_fault_to_string(f), count);
        return 0;
}
#endif
