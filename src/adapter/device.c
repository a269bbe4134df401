/* SPDX-License-Identifier: MIT */
/* The device front end: a worker thread that runs the driver one operation at a time, the queue on the
 * loop that feeds it, the loop-side timeout for each operation, and the register's state as the loop
 * knows it from the completions. */

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "device-emulator.h"
#include "device.h"
#include "json-util.h"
#include "log.h"
#include "message-ids.h"
#include "money.h"

typedef enum OpType {
        OP_OPEN,
        OP_STATUS,
        OP_PRINT,
        OP_LAST_DOCUMENT,
        OP_REPORT_X,
        OP_REPORT_Z,
} OpType;

typedef union OpCallback {
        DevicePrintCallback print;
        DeviceStatusCallback status;
        DeviceReportCallback report;
} OpCallback;

typedef struct Op Op;

struct Op {
        Op *next;
        OpType type;
        char *receipt_id;
        char *json;
        usec_t queued_at;       /* CLOCK_MONOTONIC */
        OpCallback cb;          /* the member for its type */
        void *userdata;
        bool reported;          /* its callback ran (a timeout reports before the worker returns) */

        /* Written by the worker, read on the loop once the worker handed it back. */
        int result;
        DeviceFault fault;
        DeviceDocument doc;
        DeviceReport report;
        DeviceStatus status;
        bool have_status;
};

/* What the change callback reports on. */
typedef struct DeviceSnapshot {
        DeviceState state;
        DeviceFault fault;
        bool shift_open;
        uint32_t shift_number;
        usec_t shift_open_usec;
        uint32_t last_fd;
} DeviceSnapshot;

struct Device {
        sd_event *event;
        const DeviceDriver *driver;
        DeviceOptions options;  /* its strings point into the copies below */
        char *serial, *fn_number, *registration_number, *inn, *emulator_path;

        pthread_t thread;
        bool thread_started;
        bool lock_initialized;
        pthread_mutex_t lock;
        pthread_cond_t cond;

        /* Under lock. driver_state is written by the worker only, so the worker reads it without. */
        Op *handed;             /* for the worker to run */
        Op *finished;           /* run, for the loop to collect */
        bool quit;
        void *driver_state;     /* NULL until the driver is open */
        bool have_pending_fault; /* injected before the driver was open: applied once it is */
        DeviceFault pending_fault;
        unsigned pending_fault_count;

        int event_fd;
        sd_event_source *event_source;
        sd_event_source *timer_source;
        sd_event_source *notify_source;

        /* Loop thread only. */
        Op *current;            /* at the worker; at most one */
        bool current_abandoned; /* its timeout was reported; what it returns is late */
        Op *queue_head, *queue_tail;
        bool freeing;

        DeviceState condition;  /* READY, FAULT or UNKNOWN; PRINTING is derived from current */
        DeviceFault fault;
        char *last_fault_text;
        bool shift_open;
        uint32_t shift_number;
        usec_t shift_open_usec;
        uint32_t last_fd;

        DeviceSnapshot notified;
        DeviceLateCallback late_cb;
        void *late_userdata;
        DeviceChangeCallback change_cb;
        void *change_userdata;
};

/* ---- names ---- */

static const char *const fault_table[_DEVICE_FAULT_MAX] = {
        [DEVICE_FAULT_NONE] = "none",
        [DEVICE_FAULT_PAPER_OUT] = "paper-out",
        [DEVICE_FAULT_TIMEOUT_BEFORE] = "timeout-before",
        [DEVICE_FAULT_TIMEOUT_UNKNOWN] = "timeout-unknown",
        [DEVICE_FAULT_FN_FULL] = "fn-full",
        [DEVICE_FAULT_SHIFT_EXPIRED] = "shift-expired",
        [DEVICE_FAULT_NOT_CONNECTED] = "not-connected",
        [DEVICE_FAULT_REJECTED] = "rejected",
        [DEVICE_FAULT_ERROR] = "error",
};

static const char *const fault_text_table[_DEVICE_FAULT_MAX] = {
        [DEVICE_FAULT_NONE] = "no fault",
        [DEVICE_FAULT_PAPER_OUT] = "paper out",
        [DEVICE_FAULT_TIMEOUT_BEFORE] = "timed out before the document was made",
        [DEVICE_FAULT_TIMEOUT_UNKNOWN] = "timed out after the document was sent, outcome unknown",
        [DEVICE_FAULT_FN_FULL] = "fiscal memory (FN) full",
        [DEVICE_FAULT_SHIFT_EXPIRED] = "shift open for more than 24 hours, a Z report is needed",
        [DEVICE_FAULT_NOT_CONNECTED] = "not connected",
        [DEVICE_FAULT_REJECTED] = "request rejected by the register",
        [DEVICE_FAULT_ERROR] = "register error",
};

static const char *const state_table[_DEVICE_STATE_MAX] = {
        [DEVICE_STATE_READY] = "ready",
        [DEVICE_STATE_PRINTING] = "printing",
        [DEVICE_STATE_FAULT] = "fault",
        [DEVICE_STATE_UNKNOWN] = "unknown",
};

const char *device_fault_to_string(DeviceFault f) {
        return f >= 0 && f < _DEVICE_FAULT_MAX ? fault_table[f] : NULL;
}

DeviceFault device_fault_from_string(const char *s) {
        if (s)
                for (int i = 0; i < _DEVICE_FAULT_MAX; i++)
                        if (streq(fault_table[i], s))
                                return (DeviceFault) i;
        return _DEVICE_FAULT_INVALID;
}

const char *device_fault_to_text(DeviceFault f) {
        return f >= 0 && f < _DEVICE_FAULT_MAX ? fault_text_table[f] : NULL;
}

int device_fault_to_errno(DeviceFault f) {
        switch (f) {
        case DEVICE_FAULT_PAPER_OUT:
                return -ENOMEDIUM;
        case DEVICE_FAULT_TIMEOUT_BEFORE:
        case DEVICE_FAULT_TIMEOUT_UNKNOWN:
                return -ETIMEDOUT;
        case DEVICE_FAULT_FN_FULL:
                return -ENOSPC;
        case DEVICE_FAULT_SHIFT_EXPIRED:
                return -ESTALE;
        case DEVICE_FAULT_NOT_CONNECTED:
                return -ENOTCONN;
        default:
                return -EIO;
        }
}

const char *device_state_to_string(DeviceState s) {
        return s >= 0 && s < _DEVICE_STATE_MAX ? state_table[s] : NULL;
}

DeviceState device_state_from_string(const char *s) {
        if (s)
                for (int i = 0; i < _DEVICE_STATE_MAX; i++)
                        if (streq(state_table[i], s))
                                return (DeviceState) i;
        return _DEVICE_STATE_INVALID;
}

const DeviceDriver *device_driver_find(const char *name) {
        static const DeviceDriver *const drivers[] = {
                &device_emulator_driver,
        };

        if (!name)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(drivers); i++)
                if (streq(drivers[i]->name, name))
                        return drivers[i];
        return NULL;
}

/* ---- JSON ---- */

static int json_add_string(json_object *o, const char *key, const char *s) {
        return json_add(o, key, json_object_new_string(s));
}

static int json_add_int(json_object *o, const char *key, int64_t i) {
        return json_add(o, key, json_object_new_int64(i));
}

int device_document_to_json(const DeviceDocument *doc, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        char ts[FORMAT_ISO8601_MAX];
        const char *type;
        int r;

        assert(doc);
        assert(ret);

        type = receipt_type_to_string(doc->receipt_type);
        if (!type)
                return -EINVAL;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if ((r = json_add_string(o, "receipt_id", doc->receipt_id)) < 0 ||
            (r = json_add_int(o, "fiscal_document_number", doc->fiscal_document_number)) < 0 ||
            (r = json_add_string(o, "fiscal_sign", doc->fiscal_sign)) < 0 ||
            (r = json_add_string(o, "fn_number", doc->fn_number)) < 0 ||
            (r = json_add_int(o, "shift_number", doc->shift_number)) < 0 ||
            (r = json_add_int(o, "document_number_in_shift", doc->document_number_in_shift)) < 0 ||
            (r = json_add_string(o, "registration_number", doc->registration_number)) < 0 ||
            (r = json_add_string(o, "inn", doc->inn)) < 0 ||
            (r = json_add_string(o, "serial", doc->serial)) < 0 ||
            (r = json_add_string(o, "datetime", format_iso8601_utc(ts, sizeof ts, doc->datetime))) < 0 ||
            (r = json_add_string(o, "total", MONEY_FORMAT(doc->total, MONEY_SCALE_KOPECKS))) < 0 ||
            (r = json_add_string(o, "receipt_type", type)) < 0 ||
            (r = json_add_string(o, "qr", doc->qr)) < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

/* ---- operations ---- */

static Op *op_free(Op *op) {
        if (!op)
                return NULL;
        free(op->receipt_id);
        free(op->json);
        return mfree(op);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(Op *, op_free);

/* Calls the operation's callback, once. */
static void op_report(Device *d, Op *op, int error, DeviceFault fault) {
        if (op->reported)
                return;
        op->reported = true;

        error = MIN(error, 0);
        if (error >= 0)
                fault = DEVICE_FAULT_NONE;

        switch (op->type) {
        case OP_OPEN:
                break;
        case OP_STATUS:
                if (op->cb.status)
                        op->cb.status(d, error, fault, error >= 0 ? &op->status : NULL, op->userdata);
                break;
        case OP_PRINT:
        case OP_LAST_DOCUMENT:
                if (op->cb.print)
                        op->cb.print(d, error, fault, error >= 0 ? &op->doc : NULL, op->userdata);
                break;
        case OP_REPORT_X:
        case OP_REPORT_Z:
                if (op->cb.report)
                        op->cb.report(d, error, fault, error >= 0 ? &op->report : NULL, op->userdata);
                break;
        }
}

/* ---- the worker thread ---- */

static int worker_open(Device *d, DeviceFault *ret_fault) {
        DeviceFault f = DEVICE_FAULT_NONE;
        void *state = NULL;
        int r;

        if (d->driver_state)
                return 0;

        r = d->driver->open(&state, &d->options, &f);
        if (r < 0) {
                *ret_fault = f == DEVICE_FAULT_NONE ? DEVICE_FAULT_ERROR : f;
                return r;
        }

        pthread_mutex_lock(&d->lock);
        d->driver_state = state;
        if (d->have_pending_fault && d->driver->inject_fault)
                (void) d->driver->inject_fault(state, d->pending_fault, d->pending_fault_count);
        d->have_pending_fault = false;
        pthread_mutex_unlock(&d->lock);
        return 0;
}

/* After an operation that may have changed the shift or the counters: what the register says now. A
 * failure here does not fail the operation, which is done. */
static void worker_refresh_status(Device *d, Op *op) {
        DeviceFault f = DEVICE_FAULT_NONE;

        op->have_status = d->driver->status(d->driver_state, &op->status, &f) >= 0;
}

static void worker_run(Device *d, Op *op) {
        DeviceFault f = DEVICE_FAULT_NONE;
        int r;

        r = worker_open(d, &f);
        if (r >= 0)
                switch (op->type) {
                case OP_OPEN:
                        worker_refresh_status(d, op);
                        break;
                case OP_STATUS:
                        r = d->driver->status(d->driver_state, &op->status, &f);
                        op->have_status = r >= 0;
                        break;
                case OP_PRINT:
                        r = d->driver->print_receipt(d->driver_state, op->receipt_id, op->json, &op->doc,
                                                     &f);
                        if (r >= 0)
                                worker_refresh_status(d, op);
                        break;
                case OP_LAST_DOCUMENT:
                        r = d->driver->last_document(d->driver_state, &op->doc, &f);
                        break;
                case OP_REPORT_X:
                        r = d->driver->report_x(d->driver_state, &op->report, &f);
                        break;
                case OP_REPORT_Z:
                        r = d->driver->report_z(d->driver_state, &op->report, &f);
                        if (r >= 0)
                                worker_refresh_status(d, op);
                        break;
                }

        op->result = r;
        op->fault = r < 0 ? f : DEVICE_FAULT_NONE;
}

static void *worker_main(void *userdata) {
        Device *d = userdata;
        void *state;

        for (;;) {
                Op *op;

                pthread_mutex_lock(&d->lock);
                while (!d->handed && !d->quit)
                        pthread_cond_wait(&d->cond, &d->lock);
                /* An operation already handed over runs even when told to quit: it was sent. */
                op = TAKE_PTR(d->handed);
                pthread_mutex_unlock(&d->lock);

                if (!op)
                        break;

                worker_run(d, op);

                pthread_mutex_lock(&d->lock);
                d->finished = op;
                pthread_mutex_unlock(&d->lock);
                (void) !write(d->event_fd, &(uint64_t) { 1 }, sizeof(uint64_t));
        }

        pthread_mutex_lock(&d->lock);
        state = TAKE_PTR(d->driver_state);
        pthread_mutex_unlock(&d->lock);
        if (state)
                d->driver->close(state);
        return NULL;
}

/* ---- state on the loop ---- */

static DeviceSnapshot device_snapshot(Device *d) {
        return (DeviceSnapshot) {
                .state = device_get_state(d),
                .fault = device_get_fault(d),
                .shift_open = d->shift_open,
                .shift_number = d->shift_number,
                .shift_open_usec = d->shift_open_usec,
                .last_fd = d->last_fd,
        };
}

static bool snapshot_equal(const DeviceSnapshot *a, const DeviceSnapshot *b) {
        return a->state == b->state && a->fault == b->fault && a->shift_open == b->shift_open &&
               a->shift_number == b->shift_number && a->shift_open_usec == b->shift_open_usec &&
               a->last_fd == b->last_fd;
}

/* The change callback runs from a defer source, never from inside one of our functions the caller
 * called, and once for a burst of changes. */
static void device_schedule_notify(Device *d) {
        if (d->change_cb && !d->freeing)
                (void) sd_event_source_set_enabled(d->notify_source, SD_EVENT_ONESHOT);
}

static int device_on_notify(sd_event_source *s, void *userdata) {
        Device *d = userdata;
        DeviceSnapshot n = device_snapshot(d);

        if (snapshot_equal(&n, &d->notified))
                return 0;
        d->notified = n;
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

                if (fault == DEVICE_FAULT_ERROR && error < 0)
                        (void) asprintf(&text, "%s: %s", device_fault_to_text(fault), strerror(-error));
                else
                        text = strdup(device_fault_to_text(fault));
                if (text) {
                        free(d->last_fault_text);
                        d->last_fault_text = TAKE_PTR(text);
                }
                /* Logged on the change only, so a retried print does not repeat it. Without a receipt the
                 * NULL key ends the field list early. */
                log_struct(LOG_WARNING, MESSAGE_ID_DEVICE_FAULT,
                           LOG_FIELDS({ "DEVICE_FAULT", device_fault_to_string(fault) },
                                      { receipt_id ? "RECEIPT_ID" : NULL, receipt_id }),
                           "Fiscal register %s: %s%s%s.", d->driver->name, strna(d->last_fault_text),
                           receipt_id ? ", receipt " : "", strempty(receipt_id));
        }

        d->condition = condition;
        d->fault = fault;
        device_schedule_notify(d);
}

static void device_apply_status(Device *d, const DeviceStatus *s) {
        d->shift_open = s->shift_open;
        d->shift_number = s->shift_number;
        d->shift_open_usec = s->shift_open_usec;
        d->last_fd = s->last_fiscal_document;
        if (s->condition == DEVICE_FAULT_NONE)
                device_set_condition(d, DEVICE_STATE_READY, DEVICE_FAULT_NONE, 0, NULL);
        else
                device_set_condition(d, DEVICE_STATE_FAULT, s->condition, 0, NULL);
}

/* What an operation that came back (in time or late) tells about the register. */
static void device_apply_result(Device *d, const Op *op) {
        if (op->result < 0) {
                switch (op->fault) {
                case DEVICE_FAULT_NONE:     /* e.g. no document yet: the register answered */
                case DEVICE_FAULT_REJECTED: /* about the request, not the register */
                        break;
                case DEVICE_FAULT_TIMEOUT_UNKNOWN:
                        device_set_condition(d, DEVICE_STATE_UNKNOWN, op->fault, op->result, op->receipt_id);
                        break;
                default:
                        device_set_condition(d, DEVICE_STATE_FAULT, op->fault, op->result, op->receipt_id);
                }
                return;
        }

        switch (op->type) {
        case OP_PRINT:
                d->shift_open = true;
                d->shift_number = op->doc.shift_number;
                d->last_fd = MAX(d->last_fd, op->doc.fiscal_document_number);
                break;
        case OP_LAST_DOCUMENT:
                d->last_fd = MAX(d->last_fd, op->doc.fiscal_document_number);
                break;
        case OP_REPORT_Z:
                d->shift_open = false;
                d->shift_number = op->report.shift_number;
                d->shift_open_usec = 0;
                break;
        default:
                break;
        }

        if (op->have_status)
                device_apply_status(d, &op->status);
        else
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

/* While the worker is stuck in an operation whose timeout was reported, the queue's head fails `timeout`
 * after it was queued. */
static void device_arm_queue(Device *d) {
        if (d->current_abandoned && d->queue_head)
                device_arm(d, usec_add(d->queue_head->queued_at, d->options.timeout));
        else
                device_disarm(d);
}

/* Hands the next operation to the worker when it is free. */
static void device_kick(Device *d) {
        Op *op;

        if (d->current || !d->queue_head || d->freeing)
                return;

        op = d->queue_head;
        d->queue_head = op->next;
        if (!d->queue_head)
                d->queue_tail = NULL;
        op->next = NULL;

        d->current = op;
        d->current_abandoned = false;
        pthread_mutex_lock(&d->lock);
        d->handed = op;
        pthread_cond_signal(&d->cond);
        pthread_mutex_unlock(&d->lock);

        device_arm(d, usec_add(now(CLOCK_MONOTONIC), d->options.timeout));
        if (op->type == OP_PRINT)
                device_schedule_notify(d);
}

/* The worker handed an operation back: the state, the next operation, then the caller's callback. */
static void device_finish(Device *d, Op *o) {
        _cleanup_(op_freep) Op *op = o;
        bool late = d->current_abandoned;

        assert(op == d->current);
        d->current = NULL;
        d->current_abandoned = false;
        device_disarm(d);

        device_apply_result(d, op);
        device_kick(d);

        if (!late) {
                op_report(d, op, op->result, op->fault);
                return;
        }

        if (op->type == OP_PRINT) {
                if (op->result >= 0)
                        log_notice("Fiscal register made document %" PRIu32 " for receipt %s after its "
                                   "timeout.",
                                   op->doc.fiscal_document_number, op->receipt_id);
                if (d->late_cb)
                        d->late_cb(d, op->receipt_id, MIN(op->result, 0),
                                   op->result < 0 ? op->fault : DEVICE_FAULT_NONE,
                                   op->result >= 0 ? &op->doc : NULL, d->late_userdata);
        }
}

static int device_on_event(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Device *d = userdata;
        uint64_t v;
        Op *op;

        (void) !read(fd, &v, sizeof v);

        pthread_mutex_lock(&d->lock);
        op = TAKE_PTR(d->finished);
        pthread_mutex_unlock(&d->lock);

        if (op)
                device_finish(d, op);
        return 0;
}

static void device_expire_queue(Device *d) {
        usec_t n = now(CLOCK_MONOTONIC);

        while (d->current_abandoned && d->queue_head &&
               usec_add(d->queue_head->queued_at, d->options.timeout) <= n) {
                _cleanup_(op_freep) Op *op = d->queue_head;

                d->queue_head = op->next;
                if (!d->queue_head)
                        d->queue_tail = NULL;
                op_report(d, op, -ETIMEDOUT, DEVICE_FAULT_TIMEOUT_BEFORE);
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

        /* The worker cannot be stopped in the middle of an operation: it stays at the register, and what
         * it brings back is late. The caller learns now that the outcome is unknown. */
        d->current_abandoned = true;
        device_set_condition(d, DEVICE_STATE_UNKNOWN, DEVICE_FAULT_TIMEOUT_UNKNOWN, -ETIMEDOUT,
                             op->receipt_id);
        device_arm_queue(d);
        op_report(d, op, -ETIMEDOUT, DEVICE_FAULT_TIMEOUT_UNKNOWN);
        return 0;
}

/* ---- the Device ---- */

static int device_enqueue(Device *d, OpType type, const char *receipt_id, const char *json, OpCallback cb,
                          void *userdata) {
        _cleanup_(op_freep) Op *op = NULL;

        if (d->freeing)
                return -ESHUTDOWN;

        op = new0(Op, 1);
        if (!op)
                return -ENOMEM;
        op->type = type;
        op->queued_at = now(CLOCK_MONOTONIC);
        op->cb = cb;
        op->userdata = userdata;
        if (receipt_id) {
                op->receipt_id = strdup(receipt_id);
                if (!op->receipt_id)
                        return -ENOMEM;
        }
        if (json) {
                op->json = strdup(json);
                if (!op->json)
                        return -ENOMEM;
        }

        if (d->queue_tail)
                d->queue_tail->next = op;
        else
                d->queue_head = op;
        d->queue_tail = TAKE_PTR(op);

        device_kick(d);
        if (d->current_abandoned && d->queue_head == d->queue_tail)
                device_arm_queue(d); /* the first to wait behind a stuck operation */
        return 0;
}

static int strdup_option(const char *s, size_t max, char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        if (max > 0 && strlen(s) > max)
                return -EINVAL;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int device_new(Device **ret, sd_event *event, const DeviceOptions *o) {
        _cleanup_(device_freep) Device *d = NULL;
        sigset_t all, saved;
        int r;

        assert(ret);
        assert(event);
        assert(o);

        d = new0(Device, 1);
        if (!d)
                return -ENOMEM;
        d->event = sd_event_ref(event);
        d->event_fd = -1;
        d->condition = DEVICE_STATE_UNKNOWN;

        d->driver = device_driver_find(o->driver ?: DEVICE_DRIVER_DEFAULT);
        if (!d->driver)
                return -ENOPKG;

        d->options = *o;
        d->options.driver = d->driver->name;
        d->options.timeout = o->timeout ?: DEVICE_TIMEOUT_DEFAULT;
        if ((r = strdup_option(o->serial, DEVICE_SERIAL_MAX, &d->serial)) < 0 ||
            (r = strdup_option(o->fn_number, DEVICE_FN_NUMBER_MAX, &d->fn_number)) < 0 ||
            (r = strdup_option(o->registration_number, DEVICE_REGISTRATION_NUMBER_MAX,
                               &d->registration_number)) < 0 ||
            (r = strdup_option(o->inn, DEVICE_INN_MAX, &d->inn)) < 0 ||
            (r = strdup_option(o->emulator_path, 0, &d->emulator_path)) < 0)
                return r;
        d->options.serial = d->serial;
        d->options.fn_number = d->fn_number;
        d->options.registration_number = d->registration_number;
        d->options.inn = d->inn;
        d->options.emulator_path = d->emulator_path;

        r = pthread_mutex_init(&d->lock, NULL);
        if (r != 0)
                return -r;
        r = pthread_cond_init(&d->cond, NULL);
        if (r != 0) {
                pthread_mutex_destroy(&d->lock);
                return -r;
        }
        d->lock_initialized = true;

        d->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (d->event_fd < 0)
                return -errno;
        r = sd_event_add_io(event, &d->event_source, d->event_fd, EPOLLIN, device_on_event, d);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(d->event_source, "device-worker");

        r = sd_event_add_time(event, &d->timer_source, CLOCK_MONOTONIC, USEC_INFINITY, USEC_PER_MSEC,
                              device_on_timer, d);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(d->timer_source, "device-timeout");
        r = sd_event_source_set_enabled(d->timer_source, SD_EVENT_OFF);
        if (r < 0)
                return r;

        r = sd_event_add_defer(event, &d->notify_source, device_on_notify, d);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(d->notify_source, "device-notify");
        r = sd_event_source_set_enabled(d->notify_source, SD_EVENT_OFF);
        if (r < 0)
                return r;
        d->notified = device_snapshot(d);

        /* Signals are the loop's (signalfd): the thread starts with all of them blocked. */
        sigfillset(&all);
        r = pthread_sigmask(SIG_SETMASK, &all, &saved);
        if (r != 0)
                return -r;
        r = pthread_create(&d->thread, NULL, worker_main, d);
        (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r != 0)
                return -r;
        d->thread_started = true;
        (void) pthread_setname_np(d->thread, "device");

        r = device_enqueue(d, OP_OPEN, NULL, NULL, (OpCallback) {}, NULL);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(d);
        return 0;
}

Device *device_free(Device *d) {
        Op *op;

        if (!d)
                return NULL;

        d->freeing = true;

        if (d->thread_started) {
                pthread_mutex_lock(&d->lock);
                d->quit = true;
                if (d->driver_state && d->driver->interrupt)
                        d->driver->interrupt(d->driver_state);
                pthread_cond_signal(&d->cond);
                pthread_mutex_unlock(&d->lock);

                (void) pthread_join(d->thread, NULL);
                d->thread_started = false;
        }

        /* The thread is gone: what it brought back, then what it never saw. */
        op = TAKE_PTR(d->finished);
        assert(op == d->current);
        if (op)
                device_finish(d, op);
        while (d->queue_head) {
                _cleanup_(op_freep) Op *q = d->queue_head;

                d->queue_head = q->next;
                op_report(d, q, -ECANCELED, DEVICE_FAULT_NONE);
        }
        d->queue_tail = NULL;

        d->event_source = sd_event_source_disable_unref(d->event_source);
        d->timer_source = sd_event_source_disable_unref(d->timer_source);
        d->notify_source = sd_event_source_disable_unref(d->notify_source);
        d->event_fd = safe_close(d->event_fd);
        if (d->lock_initialized) {
                pthread_cond_destroy(&d->cond);
                pthread_mutex_destroy(&d->lock);
        }
        d->event = sd_event_unref(d->event);

        free(d->serial);
        free(d->fn_number);
        free(d->registration_number);
        free(d->inn);
        free(d->emulator_path);
        free(d->last_fault_text);
        return mfree(d);
}

int device_print(Device *d, const char *receipt_id, const char *canonical_json, DevicePrintCallback cb,
                 void *userdata) {
        assert(d);
        assert(receipt_id);
        assert(canonical_json);

        if (isempty(receipt_id) || strlen(receipt_id) > DEVICE_RECEIPT_ID_MAX)
                return -EINVAL;
        return device_enqueue(d, OP_PRINT, receipt_id, canonical_json, (OpCallback) { .print = cb },
                              userdata);
}

int device_last_document(Device *d, DevicePrintCallback cb, void *userdata) {
        assert(d);
        return device_enqueue(d, OP_LAST_DOCUMENT, NULL, NULL, (OpCallback) { .print = cb }, userdata);
}

int device_status(Device *d, DeviceStatusCallback cb, void *userdata) {
        assert(d);
        return device_enqueue(d, OP_STATUS, NULL, NULL, (OpCallback) { .status = cb }, userdata);
}

int device_report_x(Device *d, DeviceReportCallback cb, void *userdata) {
        assert(d);
        return device_enqueue(d, OP_REPORT_X, NULL, NULL, (OpCallback) { .report = cb }, userdata);
}

int device_report_z(Device *d, DeviceReportCallback cb, void *userdata) {
        assert(d);
        return device_enqueue(d, OP_REPORT_Z, NULL, NULL, (OpCallback) { .report = cb }, userdata);
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
        d->notified = device_snapshot(d);
}

const char *device_get_driver_name(Device *d) {
        assert(d);
        return d->driver->name;
}

DeviceState device_get_state(Device *d) {
        assert(d);
        if (d->current && !d->current_abandoned && d->current->type == OP_PRINT)
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

uint32_t device_get_shift_number(Device *d) {
        assert(d);
        return d->shift_number;
}

bool device_get_shift_open(Device *d) {
        assert(d);
        return d->shift_open;
}

usec_t device_get_shift_open_usec(Device *d) {
        assert(d);
        return d->shift_open ? d->shift_open_usec : 0;
}

uint32_t device_get_last_fiscal_document(Device *d) {
        assert(d);
        return d->last_fd;
}

bool device_is_idle(Device *d) {
        assert(d);
        return !d->current && !d->queue_head;
}

int device_state_to_json(Device *d, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        char ts[FORMAT_ISO8601_MAX];
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
        if (d->last_fault_text)
                r = json_add_string(o, "last_fault", d->last_fault_text);
        else
                r = json_object_object_add(o, "last_fault", NULL) < 0 ? -ENOMEM : 0; /* JSON null */
        if (r < 0)
                return r;
        if ((r = json_add_int(o, "shift_number", d->shift_number)) < 0 ||
            (r = json_add(o, "shift_open", json_object_new_boolean(d->shift_open))) < 0)
                return r;
        if (d->shift_open && d->shift_open_usec > 0) {
                r = json_add_string(o, "shift_open_time",
                                    format_iso8601_utc(ts, sizeof ts, d->shift_open_usec));
                if (r < 0)
                        return r;
        }
        if ((r = json_add_int(o, "last_fiscal_document", d->last_fd)) < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

#if ENABLE_DEBUG_HOOKS
int device_debug_inject_fault(Device *d, DeviceFault f, unsigned count) {
        int r = 0;

        assert(d);

        if (!d->driver->inject_fault)
                return -EOPNOTSUPP;
        if (!IN_SET(f, DEVICE_FAULT_NONE, DEVICE_FAULT_PAPER_OUT, DEVICE_FAULT_TIMEOUT_BEFORE,
                    DEVICE_FAULT_TIMEOUT_UNKNOWN, DEVICE_FAULT_FN_FULL, DEVICE_FAULT_SHIFT_EXPIRED,
                    DEVICE_FAULT_NOT_CONNECTED))
                return -EINVAL;

        pthread_mutex_lock(&d->lock);
        if (d->driver_state)
                r = d->driver->inject_fault(d->driver_state, f, count);
        else {
                d->have_pending_fault = true;
                d->pending_fault = f;
                d->pending_fault_count = count;
        }
        pthread_mutex_unlock(&d->lock);
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
