/* SPDX-License-Identifier: MIT */
/* Owns the health verdict: every component's status and detail, the overall one, and the body of
 * GET /v1/health (which the metrics' kkt_health_state repeats), read from the modules. */

#include <libgen.h>
#include <sys/statvfs.h>

#include "health.h"
#include "json-util.h"
#include "string-table.h"
#include "time-util.h"

static const char *const health_table[_HEALTH_MAX] = {
        [HEALTH_HEALTHY] = "healthy",
        [HEALTH_DEGRADED] = "degraded",
        [HEALTH_UNHEALTHY] = "unhealthy",
};

DEFINE_STRING_TABLE_LOOKUP(health, Health)

/* Adds components[name] = {"status", "detail"}; *ret (may be NULL) is that object, for more keys. */
static int health_add_component(json_object *components, const char *name, Health h,
                                const char *detail, Health *overall, json_object **ret) {
        json_object *c = json_object_new_object();

        if (!c)
                return -ENOMEM;
        json_object_object_add(c, "status", json_object_new_string(health_to_string(h)));
        json_object_object_add(c, "detail", json_object_new_string(detail));
        if (json_object_object_add(components, name, c) < 0) {
                json_object_put(c);
                return -ENOMEM;
        }
        if (h > *overall)
                *overall = h;
        if (ret)
                *ret = c;
        return 0;
}

static int health_add(json_object *components, const char *name, Health h, const char *detail,
                      Health *overall) {
        return health_add_component(components, name, h, detail, overall, NULL);
}

int health_build(const Modules *m, uint64_t dead_letters_open, Health *ret, json_object **ret_json) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *components, *component;
        const StoreCounters *c = store_get_counters(m->store);
        const IntakeStats *is = intake_get_stats(m->intake);
        Health overall = HEALTH_HEALTHY, h;
        _cleanup_free_ char *dir = NULL;
        struct statvfs sv;
        char detail[256], b1[FORMAT_SIZE_MAX], b2[FORMAT_SIZE_MAX];
        int r;

        o = json_object_new_object();
        components = json_object_new_object();
        if (!o || !components || json_object_object_add(o, "components", components) < 0)
                return -ENOMEM;

        /* The store: a failed commit means receipts cannot be made durable. */
        if (m->stopping) {
                h = HEALTH_UNHEALTHY;
                snprintf(detail, sizeof detail, "shutting down");
        } else if (is->last_error < 0) {
                h = HEALTH_UNHEALTHY;
                snprintf(detail, sizeof detail, "the last commit to %s failed: %s", store_get_path(m->store),
                         strerror(-is->last_error));
        } else {
                h = HEALTH_HEALTHY;
                snprintf(detail, sizeof detail, "%s writable", store_get_path(m->store));
        }
        r = health_add(components, "store", h, detail, &overall);
        if (r < 0)
                return r;
        /* The prototype's name for it, with what its clients read. */
        r = health_add_component(components, "database", h, detail, &overall, &component);
        if (r >= 0)
                r = json_add(component, "type", json_object_new_string("SQLite"));
        if (r >= 0)
                r = json_add(component, "mode", json_object_new_string("WAL"));
        if (r < 0)
                return r;

        /* Disk space where the buffer lives. */
        dir = strdup(store_get_path(m->store));
        if (!dir)
                return -ENOMEM;
        if (statvfs(dirname(dir), &sv) < 0) {
                h = HEALTH_DEGRADED;
                snprintf(detail, sizeof detail, "cannot check free space: %s", strerror(errno));
        } else {
                uint64_t avail = (uint64_t) sv.f_bavail * sv.f_frsize;
                h = avail < m->config->buffer_min_free_disk ? HEALTH_DEGRADED : HEALTH_HEALTHY;
                snprintf(detail, sizeof detail, "%s free, minimum %s", format_size(b1, sizeof b1, avail),
                         format_size(b2, sizeof b2, m->config->buffer_min_free_disk));
        }
        r = health_add(components, "disk", h, detail, &overall);
        if (r < 0)
                return r;

        /* Buffer fill: full means new receipts are refused. */
        if (c->pending >= c->capacity)
                h = HEALTH_UNHEALTHY;
        else if (c->pending * 10 >= c->capacity * 8)
                h = HEALTH_DEGRADED;
        else
                h = HEALTH_HEALTHY;
        snprintf(detail, sizeof detail, "%" PRIu64 " of %" PRIu64 " pending", c->pending, c->capacity);
        if (dead_letters_open == UINT64_MAX)
                dead_letters_open = c->dlq;
        r = health_add_component(components, "buffer", h, detail, &overall, &component);
        if (r >= 0)
                r = json_add(component, "percent_full", modules_percent_full_to_json(m));
        if (r >= 0)
                r = json_add(component, "dlq_size", json_object_new_uint64(dead_letters_open));
        if (r >= 0)
                r = json_add(component, "pending", json_object_new_uint64(c->pending));
        if (r < 0)
                return r;

        /* Dead letters wait for an administrator; receipts still come in, but a growing queue means someone
         * should look (the prototype's rule and threshold). */
        h = dead_letters_open > HEALTH_DEAD_LETTERS_DEGRADED ? HEALTH_DEGRADED : HEALTH_HEALTHY;
        snprintf(detail, sizeof detail, "%" PRIu64 " receipts in the dead-letter queue, not resolved%s",
                 dead_letters_open, h == HEALTH_DEGRADED ? "; see GET /v1/kkt/dlq" : "");
        r = health_add(components, "dead_letters", h, detail, &overall);
        if (r < 0)
                return r;

        /* The fiscal register: a fault stops printing, receipts still become durable. */
        if (m->device) {
                DeviceState ds = device_get_state(m->device);

                h = ds == DEVICE_STATE_READY || ds == DEVICE_STATE_PRINTING ? HEALTH_HEALTHY : HEALTH_DEGRADED;
                if (ds == DEVICE_STATE_FAULT)
                        snprintf(detail, sizeof detail, "fault: %s; receipts are buffered and printed later",
                                 device_fault_to_text(device_get_fault(m->device)));
                else
                        snprintf(detail, sizeof detail, "%s (%s)", device_state_to_string(ds),
                                 device_get_driver_name(m->device));
                r = health_add(components, "device", h, detail, &overall);
                if (r < 0)
                        return r;
        }

        /* The fiscal day: the shift (24-hour rule), the fiscal drive (expiry, OFD exchange), the print queue
         * (rejected receipts, a head that does not move). */
        if (m->fiscal_day) {
                static const char *const parts[] = { "shift", "fiscal_drive", "print_queue" };

                for (size_t i = 0; i < ELEMENTSOF(parts); i++) {
                        FiscalDayHealth fh = fiscal_day_health(m->fiscal_day, parts[i], c->print_rejected, detail,
                                                               sizeof detail);

                        h = fh == FISCAL_DAY_UNHEALTHY ? HEALTH_UNHEALTHY
                            : fh == FISCAL_DAY_DEGRADED ? HEALTH_DEGRADED
                                                         : HEALTH_HEALTHY;
                        r = health_add(components, parts[i], h, detail, &overall);
                        if (r < 0)
                                return r;
                }
        }

        /* The OFD leg: an open breaker means receipts wait; they are safe, but someone should look. */
        if (m->sync) {
                BreakerState bs = sync_get_breaker_state(m->sync);

                h = bs == BREAKER_CLOSED ? HEALTH_HEALTHY : HEALTH_DEGRADED;
                snprintf(detail, sizeof detail, "circuit breaker %s", breaker_state_to_string(bs));
                r = health_add(components, "ofd", h, detail, &overall);
                if (r < 0)
                        return r;

                /* The prototype's view of the same breaker: failures and successes since the start. */
                r = health_add_component(components, "circuit_breaker", h, detail, &overall, &component);
                if (r >= 0)
                        r = json_add(component, "state",
                                     json_object_new_string(modules_circuit_state_upper(m)));
                if (r >= 0)
                        r = json_add(component, "failure_count",
                                     json_object_new_uint64(sync_get_breaker(m->sync)->n_failures));
                if (r >= 0)
                        r = json_add(component, "success_count",
                                     json_object_new_uint64(sync_get_breaker(m->sync)->n_successes));
                if (r < 0)
                        return r;
        }

        /* The ERP heartbeat: offline means receipts wait in the buffer, which is what it is for. */
        switch (m->heartbeat ? heartbeat_get_state(m->heartbeat) : HEARTBEAT_UNKNOWN) {
        case HEARTBEAT_ONLINE:
                h = HEALTH_HEALTHY;
                snprintf(detail, sizeof detail, "online");
                break;
        case HEARTBEAT_OFFLINE:
                h = HEALTH_DEGRADED;
                snprintf(detail, sizeof detail, "offline: %s; receipts are buffered",
                         strempty(heartbeat_get_last_result(m->heartbeat)));
                break;
        default:
                h = HEALTH_HEALTHY;
                snprintf(detail, sizeof detail, "no verdict yet");
                break;
        }
        r = health_add(components, "heartbeat", h, detail, &overall);
        if (r < 0)
                return r;

        json_object_object_add(o, "status", json_object_new_string(health_to_string(overall)));
        json_object_object_add(o, "version", json_object_new_string(PACKAGE_VERSION));
        /* What the chain's desk monitor reads. */
        json_object_object_add(o, "circuit_breaker_state",
                               json_object_new_string(modules_circuit_state_upper(m) ?: "UNKNOWN"));
        *ret = overall;
        *ret_json = TAKE_PTR(o);
        return 0;
}
