/* SPDX-License-Identifier: MIT */
/* Owns what org.opticserp.KktAdapter1 looks like on the bus: properties read from the modules, methods that
 * call into them, and who may call what (checked here again, behind the bus policy). The connection and the
 * signals are manager-bus.c's. */

#include "intake.h"
#include "json-util.h"
#include "log.h"
#include "manager-bus-object.h"
#include "manager-bus.h"
#include "modules.h"
#include "refund.h"

typedef enum Privilege {
        PRIVILEGE_POS,   /* submit and read receipts: group kkt-pos */
        PRIVILEGE_ADMIN, /* everything: group kkt-admin */
} Privilege;

static bool gid_allowed(Modules *m, gid_t gid, Privilege p) {
        return (p == PRIVILEGE_POS && gid_is_valid(m->pos_gid) && gid == m->pos_gid) ||
                (gid_is_valid(m->admin_gid) && gid == m->admin_gid);
}

/* The caller as the bus vouches for it, asked of the bus driver itself (GetConnectionCredentials): the
 * uid, and the groups (UnixGroupIDs: dbus-daemon and dbus-broker take them from the kernel, SO_PEERGROUPS,
 * when the caller connects; -ENODATA with the uid set when this bus does not send them). sd-bus's own
 * query (libsystemd 252) keeps the uid but drops the groups, and fills them from /proc only when asked to
 * augment: not done here, since the sender's PID may already be another process's by then, and the
 * unit's ProtectProc=invisible hides other users' processes anyway. */
static int bus_caller_credentials(sd_bus_message *message, uid_t *ret_uid, uint32_t **ret_gids,
                                  size_t *ret_n_gids) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ uint32_t *gids = NULL;
        const char *sender = sd_bus_message_get_sender(message);
        bool have_uid = false, have_gids = false;
        size_t n_gids = 0;
        int r;

        if (!sender)
                return -ENXIO; /* not from a bus: nobody vouches for it */
        r = sd_bus_call_method(sd_bus_message_get_bus(message), "org.freedesktop.DBus",
                               "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetConnectionCredentials",
                               &error, &reply, "s", sender);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *key;

                r = sd_bus_message_read(reply, "s", &key);
                if (r < 0)
                        return r;
                if (streq(key, "UnixUserID")) {
                        uint32_t u;

                        r = sd_bus_message_read(reply, "v", "u", &u);
                        if (r < 0)
                                return r;
                        *ret_uid = (uid_t) u;
                        have_uid = true;
                } else if (streq(key, "UnixGroupIDs")) {
                        const void *p;
                        size_t size;

                        r = sd_bus_message_enter_container(reply, 'v', "au");
                        if (r >= 0)
                                r = sd_bus_message_read_array(reply, 'u', &p, &size);
                        if (r >= 0)
                                r = sd_bus_message_exit_container(reply);
                        if (r < 0)
                                return r;
                        free(gids);
                        gids = malloc(MAX(size, 1U));
                        if (!gids)
                                return -ENOMEM;
                        memcpy(gids, p, size);
                        n_gids = size / sizeof(uint32_t);
                        have_gids = true;
                } else {
                        r = sd_bus_message_skip(reply, "v");
                        if (r < 0)
                                return r;
                }
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        if (!have_uid)
                return -ENODATA;
        *ret_n_gids = n_gids;
        *ret_gids = TAKE_PTR(gids);
        return have_gids ? 0 : -ENODATA;
}

/* Defence in depth: the bus policy already filtered, but a misconfigured bus must not open the door. Only
 * what the bus vouches for counts: root and our own user by uid, everyone else by the groups the bus says
 * the caller's process had when it connected (so a new member of kkt-pos logs in again, as for the bus
 * policy). *ret_uid (may be NULL) is the caller's uid, for the record of who did it. */
static int bus_check_caller(Modules *m, sd_bus_message *message, Privilege p, uid_t *ret_uid,
                                sd_bus_error *error) {
        _cleanup_free_ uint32_t *gids = NULL;
        size_t n_gids = 0;
        uid_t uid = (uid_t) -1;
        int r;

        r = bus_caller_credentials(message, &uid, &gids, &n_gids);
        if (r < 0 && !(r == -ENODATA && uid != (uid_t) -1)) {
                log_debug_errno(r, "Cannot ask the bus who %s is: %m",
                                strna(sd_bus_message_get_sender(message)));
                return sd_bus_error_set(error, KKT_BUS_ERROR("AccessDenied"),
                                        "Caller's identity is unknown");
        }
        if (ret_uid)
                *ret_uid = uid;
        if (uid == 0 || uid == geteuid())
                return 0;

        if (r == -ENODATA)
                return sd_bus_error_setf(error, KKT_BUS_ERROR("AccessDenied"),
                                         "Only root and members of %s may do this, and this bus does not "
                                         "say which groups the caller is in",
                                         p == PRIVILEGE_POS ? "kkt-pos or kkt-admin" : "kkt-admin");
        for (size_t i = 0; i < n_gids; i++)
                if (gid_allowed(m, (gid_t) gids[i], p))
                        return 0;

        return sd_bus_error_setf(error, KKT_BUS_ERROR("AccessDenied"),
                                 "Only root and members of %s may do this",
                                 p == PRIVILEGE_POS ? "kkt-pos or kkt-admin" : "kkt-admin");
}

/* Answers a method with one JSON text, as the HTTP API writes it. */
static int reply_json(sd_bus_message *message, json_object *o) {
        return sd_bus_reply_method_return(message, "s",
                                          json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                                    JSON_C_TO_STRING_NOSLASHESCAPE));
}

static int property_get_state(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", modules_network_status(userdata));
}

static int property_get_last_heartbeat(sd_bus *bus, const char *path, const char *interface,
                                       const char *property, sd_bus_message *reply, void *userdata,
                                       sd_bus_error *error) {
        Modules *m = userdata;

        return sd_bus_message_append(reply, "t", m->heartbeat ? heartbeat_get_last_beat(m->heartbeat) : 0);
}

static int property_get_last_result(sd_bus *bus, const char *path, const char *interface, const char *property,
                                    sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Modules *m = userdata;

        return sd_bus_message_append(reply, "s",
                                     m->heartbeat ? strempty(heartbeat_get_last_result(m->heartbeat)) : "");
}

static int property_get_consecutive(sd_bus *bus, const char *path, const char *interface, const char *property,
                                    sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Modules *m = userdata;
        unsigned v = 0;

        if (m->heartbeat)
                v = streq(property, "ConsecutiveSuccesses") ? heartbeat_get_consecutive_successes(m->heartbeat)
                                                            : heartbeat_get_consecutive_failures(m->heartbeat);
        return sd_bus_message_append(reply, "u", (uint32_t) v);
}

static int property_get_counter(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Modules *m = userdata;
        const StoreCounters *c = store_get_counters(m->store);
        uint64_t v;

        if (streq(property, "Pending"))
                v = c->pending;
        else if (streq(property, "Synced"))
                v = c->synced;
        else if (streq(property, "Failed"))
                v = c->failed;
        else if (streq(property, "DeadLettered"))
                v = c->dlq;
        else
                v = c->capacity;
        return sd_bus_message_append(reply, "t", v);
}

static int property_get_circuit_state(sd_bus *bus, const char *path, const char *interface,
                                      const char *property, sd_bus_message *reply, void *userdata,
                                      sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", modules_circuit_state(userdata) ?: "unknown");
}

static int property_get_last_sync(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Modules *m = userdata;

        return sd_bus_message_append(reply, "t", m->sync ? sync_get_last_sync_usec(m->sync) : 0);
}

static int property_get_device_state(sd_bus *bus, const char *path, const char *interface,
                                     const char *property, sd_bus_message *reply, void *userdata,
                                     sd_bus_error *error) {
        Modules *m = userdata;

        return sd_bus_message_append(reply, "s",
                                     device_state_to_string(m->device ? device_get_state(m->device)
                                                                      : DEVICE_STATE_UNKNOWN));
}

static int property_get_device_number(sd_bus *bus, const char *path, const char *interface,
                                      const char *property, sd_bus_message *reply, void *userdata,
                                      sd_bus_error *error) {
        Modules *m = userdata;
        uint32_t v = 0;

        if (m->device)
                v = streq(property, "ShiftNumber") ? device_get_shift_number(m->device)
                                                   : device_get_last_fiscal_document(m->device);
        return sd_bus_message_append(reply, "u", v);
}

static int property_get_shift_open(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Modules *m = userdata;

        return sd_bus_message_append(reply, "t", m->device ? device_get_shift_open_usec(m->device) : 0);
}

static int property_get_shift_bool(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Modules *m = userdata;

        return sd_bus_message_append(reply, "b", m->device && device_get_shift_open(m->device));
}

static int property_get_device_status_t(sd_bus *bus, const char *path, const char *interface,
                                        const char *property, sd_bus_message *reply, void *userdata,
                                        sd_bus_error *error) {
        Modules *m = userdata;
        const DeviceStatus *s = m->device ? device_get_status(m->device) : NULL;
        uint64_t v = 0;

        if (s && streq(property, "ShiftExpiresUSec"))
                v = s->shift_open && s->shift_open_usec ? usec_add(s->shift_open_usec, DEVICE_SHIFT_MAX_USEC) : 0;
        else if (s && streq(property, "FnValidUntilUSec"))
                v = s->fn_valid_until;
        else if (s && streq(property, "OfdFirstUnsentUSec"))
                v = s->ofd.first_unsent_usec;
        return sd_bus_message_append(reply, "t", v);
}

static int property_get_device_status_u(sd_bus *bus, const char *path, const char *interface,
                                        const char *property, sd_bus_message *reply, void *userdata,
                                        sd_bus_error *error) {
        Modules *m = userdata;
        const DeviceStatus *s = m->device ? device_get_status(m->device) : NULL;
        uint32_t v = 0;

        if (s && streq(property, "ShiftReceipts"))
                v = s->shift_open ? device_totals_receipts(&s->shift_totals) : 0;
        else if (s && streq(property, "OfdUnsent"))
                v = s->ofd.unsent;
        return sd_bus_message_append(reply, "u", v);
}

static int property_get_print_rejected(sd_bus *bus, const char *path, const char *interface, const char *property,
                                       sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Modules *m = userdata;

        return sd_bus_message_append(reply, "t", store_get_counters(m->store)->print_rejected);
}

static int property_get_adapter_id(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Modules *m = userdata;

        return sd_bus_message_append(reply, "s", m->adapter_id);
}

static int property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
}

static void method_submit_on_intake(const IntakeReply *reply, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *message = userdata;
        char error_name[128];
        int r;

        if (reply->error != INTAKE_OK) {
                snprintf(error_name, sizeof error_name, KKT_BUS_ERROR("%s"), intake_error_to_bus_error(reply->error));
                r = sd_bus_reply_method_errorf(message, error_name, "%s", reply->detail);
        } else
                /* fiscal_json is JSON in every case, so a client can parse it without looking at status. */
                r = sd_bus_reply_method_return(message, "sss", reply->receipt->id,
                                               receipt_state_to_string(receipt_state_of(reply->receipt)),
                                               reply->receipt->fiscal_doc ?: "null");
        if (r < 0)
                log_debug_errno(r, "Failed to answer SubmitReceipt(): %m");
}

static int method_submit_receipt(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Modules *m = userdata;
        const char *key, *json;
        int r;

        r = bus_check_caller(userdata, message, PRIVILEGE_POS, NULL, error);
        if (r < 0)
                return r;
        r = sd_bus_message_read(message, "ss", &key, &json);
        if (r < 0)
                return r;
        /* The limit POST /v1/kkt/receipt has: a bus message may be far larger than any receipt. */
        if (strlen(json) > m->config->http_max_body_size)
                return sd_bus_error_setf(error, KKT_BUS_ERROR("ReceiptTooLarge"),
                                         "The receipt is %zu bytes, more than the %" PRIu64 " [HTTP] "
                                         "MaxBodySize= allows",
                                         strlen(json), m->config->http_max_body_size);

        /* The answer comes once the receipt is durable; the message is kept until then. */
        sd_bus_message_ref(message);
        r = intake_submit(m->intake, key, json, strlen(json), method_submit_on_intake, message);
        if (r < 0) {
                sd_bus_message_unref(message);
                return r;
        }
        return 1;
}

static void method_get_on_receipt(Store *s, int error, const StoreReceipt *receipt, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *message = userdata;
        json_object *o = NULL;
        int r;

        if (error == -ENOENT)
                r = sd_bus_reply_method_errorf(message, KKT_BUS_ERROR("NotFound"), "No receipt with this id");
        else if (error < 0)
                r = sd_bus_reply_method_errorf(message, KKT_BUS_ERROR("Unavailable"),
                                               "Receipt buffer unavailable: %s", strerror(-error));
        else if ((r = intake_receipt_to_json(receipt, &o)) < 0)
                r = sd_bus_reply_method_errnof(message, r, "Failed to render the receipt: %m");
        else {
                r = reply_json(message, o);
                json_object_put(o);
        }
        if (r < 0)
                log_debug_errno(r, "Failed to answer GetReceipt(): %m");
}

static int method_get_receipt(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Modules *m = userdata;
        const char *id;
        int r;

        r = bus_check_caller(userdata, message, PRIVILEGE_POS, NULL, error);
        if (r < 0)
                return r;
        r = sd_bus_message_read(message, "s", &id);
        if (r < 0)
                return r;
        if (isempty(id))
                return sd_bus_error_set(error, KKT_BUS_ERROR("InvalidArgument"), "Receipt id must not be empty");

        sd_bus_message_ref(message);
        r = store_get_receipt(m->store, id, method_get_on_receipt, message);
        if (r < 0) {
                sd_bus_message_unref(message);
                return r;
        }
        return 1;
}

static int method_sync_now(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Modules *m = userdata;
        SyncTriggerResult t;
        int r;

        r = bus_check_caller(userdata, message, PRIVILEGE_ADMIN, NULL, error);
        if (r < 0)
                return r;
        r = sync_trigger(m->sync, &t);
        if (r == -ESHUTDOWN)
                return sd_bus_error_set(error, KKT_BUS_ERROR("Unavailable"), "The sync worker is stopping");
        if (r < 0)
                return r;
        if (t == SYNC_TRIGGER_CIRCUIT_OPEN)
                return sd_bus_error_set(error, KKT_BUS_ERROR("Unavailable"),
                                        "The OFD circuit breaker is open; ResetCircuitBreaker() to retry now");
        /* Started or joined a running pass: it runs after this answer, never inside the call. */
        return sd_bus_reply_method_return(message, NULL);
}

/* Who did it, for the dead-letter queue's resolved_by: the caller's uid as the bus vouched for it. */
static void caller_name(uid_t uid, char *buf, size_t l) {
        if (uid != (uid_t) -1)
                snprintf(buf, l, "dbus:uid=%u", (unsigned) uid);
        else
                snprintf(buf, l, "dbus");
}

static void method_on_dlq_change(Sync *s, int error, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *message = userdata;
        int r;

        if (error == -ENOENT)
                r = sd_bus_reply_method_errorf(message, KKT_BUS_ERROR("NotFound"), "No receipt with this id");
        else if (error == -EALREADY)
                r = sd_bus_reply_method_errorf(message, KKT_BUS_ERROR("Conflict"),
                                               "The receipt is not in the dead-letter queue");
        else if (error == -ESTALE)
                r = sd_bus_reply_method_errorf(message, KKT_BUS_ERROR("Conflict"),
                                               "The dead letter is resolved: it was handled outside the "
                                               "adapter, and that is final");
        else if (error < 0)
                r = sd_bus_reply_method_errorf(message, KKT_BUS_ERROR("Unavailable"),
                                               "Receipt buffer unavailable: %s", strerror(-error));
        else
                r = sd_bus_reply_method_return(message, NULL);
        if (r < 0)
                log_debug_errno(r, "Failed to answer %s(): %m", sd_bus_message_get_member(message));
}

/* The arguments of an admin's call on one receipt: (id) or (id, note), both not empty, and who called. */
static int read_admin_call(sd_bus_message *message, Modules *m, bool with_note, const char *note_required,
                           const char **ret_id, const char **ret_note, char who[static 64], sd_bus_error *error) {
        uid_t uid = (uid_t) -1;
        int r;

        r = bus_check_caller(m, message, PRIVILEGE_ADMIN, &uid, error);
        if (r < 0)
                return r;
        *ret_note = NULL;
        r = with_note ? sd_bus_message_read(message, "ss", ret_id, ret_note) : sd_bus_message_read(message, "s", ret_id);
        if (r < 0)
                return r;
        if (isempty(*ret_id))
                return sd_bus_error_set(error, KKT_BUS_ERROR("InvalidArgument"), "Receipt id must not be empty");
        if (with_note && isempty(*ret_note))
                return sd_bus_error_set(error, KKT_BUS_ERROR("InvalidArgument"), note_required);
        caller_name(uid, who, 64);
        return 0;
}

static int method_dead_letter(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Modules *m = userdata;
        const char *id, *note;
        char who[64];
        bool resolve = streq(sd_bus_message_get_member(message), "ResolveDeadLetter");
        int r;

        r = read_admin_call(message, m, resolve, "A note saying how the receipt was resolved is required", &id,
                            &note, who, error);
        if (r < 0)
                return r;

        sd_bus_message_ref(message);
        r = resolve ? sync_dlq_resolve(m->sync, id, note, who, method_on_dlq_change, message)
                    : sync_dlq_retry(m->sync, id, who, method_on_dlq_change, message);
        if (r < 0) {
                sd_bus_message_unref(message);
                return r;
        }
        return 1;
}

static void method_on_dlq_list(Sync *s, int error, const SyncDeadLetter *entries, size_t n_entries,
                               void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *message = userdata;
        json_object *a = NULL;
        int r;

        if (error < 0)
                r = sd_bus_reply_method_errorf(message, KKT_BUS_ERROR("Unavailable"),
                                               "Receipt buffer unavailable: %s", strerror(-error));
        else if ((r = sync_dead_letters_to_json(entries, n_entries, &a)) < 0)
                r = sd_bus_reply_method_errnof(message, r, "Failed to render the dead letters: %m");
        else {
                r = reply_json(message, a);
                json_object_put(a);
        }
        if (r < 0)
                log_debug_errno(r, "Failed to answer ListDeadLetters(): %m");
}

static int method_list_dead_letters(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Modules *m = userdata;
        int all, r;

        r = bus_check_caller(userdata, message, PRIVILEGE_ADMIN, NULL, error);
        if (r < 0)
                return r;
        r = sd_bus_message_read(message, "b", &all);
        if (r < 0)
                return r;
        sd_bus_message_ref(message);
        r = sync_dlq_list(m->sync, 0, !all, method_on_dlq_list, message);
        if (r < 0) {
                sd_bus_message_unref(message);
                return r;
        }
        return 1;
}

static int method_reset_breaker(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Modules *m = userdata;
        int r;

        r = bus_check_caller(userdata, message, PRIVILEGE_ADMIN, NULL, error);
        if (r < 0)
                return r;
        r = sync_reset_breaker(m->sync);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(message, NULL);
}

/* ---- the fiscal day ---- */

/* A report call on the bus: answered with the register's result, or after REPORT_CALL_WAIT with the same
 * word HTTP gives (the Z report stays queued). */
#define REPORT_CALL_WAIT (120 * USEC_PER_SEC)

typedef struct ReportCall {
        Modules *modules;
        sd_bus_message *message;
        sd_event_source *timer;
} ReportCall;

static void report_call_free(ReportCall *c) {
        sd_event_source_disable_unref(c->timer);
        sd_bus_message_unref(c->message);
        free(c);
}

static void method_on_report(FiscalDay *f, const DeviceResult *result, void *userdata) {
        ReportCall *c = userdata;
        sd_bus_message *message = c->message;
        const char *member = sd_bus_message_get_member(message);
        json_object *o = NULL;
        int r;

        if (result->error == -ENOENT && result->fault == DEVICE_FAULT_NONE && streq(member, "CloseShift"))
                r = sd_bus_reply_method_errorf(message, KKT_BUS_ERROR("NoShift"), "No shift is open");
        else if (result->error < 0 && result->error != -EALREADY)
                r = sd_bus_reply_method_errorf(message, KKT_BUS_ERROR("DeviceFault"),
                                               "The fiscal register failed: %s%s%s",
                                               result->fault != DEVICE_FAULT_NONE ? device_fault_to_text(result->fault)
                                                                                  : strerror(-result->error),
                                               isempty(result->message) ? "" : ": ", result->message);
        else if ((r = fiscal_day_report_to_json(&result->report, modules_ofd_offline(c->modules), &o)) < 0 ||
                 (!streq(member, "PrintXReport") &&
                  (r = json_add(o, streq(member, "OpenShift") ? "already_open" : "already_closed",
                                json_object_new_boolean(result->error == -EALREADY))) < 0))
                r = sd_bus_reply_method_errnof(message, r, "Failed to render the report: %m");
        else
                r = reply_json(message, o);
        json_object_put(o);
        if (r < 0)
                log_debug_errno(r, "Failed to answer %s(): %m", member);
        report_call_free(c);
}

static int method_on_report_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        ReportCall *c = userdata;
        int r;

        fiscal_day_forget(c->modules->fiscal_day, c);
        r = sd_bus_reply_method_errorf(c->message, KKT_BUS_ERROR("Unavailable"),
                                       "Still waiting for the fiscal register (%u documents ahead); a Z report "
                                       "stays queued and is made when they are printed",
                                       printer_get_stats(c->modules->printer)->queued);
        if (r < 0)
                log_debug_errno(r, "Failed to answer %s(): %m", sd_bus_message_get_member(c->message));
        report_call_free(c);
        return 0;
}

/* OpenShift(), PrintXReport(), CloseShift(): for the cashier (group kkt-pos) and admins. */
static int method_report(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Modules *m = userdata;
        const char *member = sd_bus_message_get_member(message);
        ReportCall *c;
        int r;

        r = bus_check_caller(userdata, message, PRIVILEGE_POS, NULL, error);
        if (r < 0)
                return r;
        if (!m->fiscal_day)
                return sd_bus_error_set(error, KKT_BUS_ERROR("Unavailable"), "The fiscal register is not set up");

        c = new0(ReportCall, 1);
        if (!c)
                return -ENOMEM;
        c->modules = m;
        c->message = sd_bus_message_ref(message);
        if (streq(member, "OpenShift"))
                r = fiscal_day_open_shift(m->fiscal_day, NULL, NULL, method_on_report, c);
        else if (streq(member, "PrintXReport"))
                r = fiscal_day_report_x(m->fiscal_day, NULL, NULL, method_on_report, c);
        else
                r = fiscal_day_close_shift(m->fiscal_day, NULL, NULL, method_on_report, c);
        if (r < 0) {
                report_call_free(c);
                if (r == -EBUSY)
                        return sd_bus_error_set(error, KKT_BUS_ERROR("Conflict"), "A Z report is already queued or running");
                if (r == -ENOENT)
                        return sd_bus_error_set(error, KKT_BUS_ERROR("NoShift"), "No shift is open");
                if (r == -ESHUTDOWN)
                        return sd_bus_error_set(error, KKT_BUS_ERROR("Unavailable"), "Shutting down");
                return r;
        }
        r = sd_event_add_time_relative(m->event, &c->timer, CLOCK_MONOTONIC, REPORT_CALL_WAIT, USEC_PER_SEC,
                                       method_on_report_timeout, c);
        if (r >= 0)
                (void) sd_event_source_set_description(c->timer, "bus-report-wait");
        return 1;
}

/* GetDeviceStatus(), GetShift(): what GET /v1/kkt/device/status and GET /v1/kkt/shift answer. */
static int method_get_json(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        Modules *m = userdata;
        int r;

        if (!m->device)
                return sd_bus_error_set(error, KKT_BUS_ERROR("Unavailable"), "The fiscal register is not set up");
        r = streq(sd_bus_message_get_member(message), "GetShift") ? modules_shift_to_json(m, &o)
                                                                    : device_state_to_json(m->device, &o);
        if (r < 0)
                return r;
        return reply_json(message, o);
}

static void method_on_refund_check(const RefundCheck *check, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *message = userdata;
        int r;

        if (check->error == -ENOENT)
                r = sd_bus_reply_method_errorf(message, KKT_BUS_ERROR("NotFound"), "No such original receipt");
        else if (check->error < 0)
                r = sd_bus_reply_method_errorf(message, KKT_BUS_ERROR("Unavailable"),
                                               "Receipt buffer unavailable: %s", strerror(-check->error));
        else
                r = sd_bus_reply_method_return(message, "bss", check->allowed, strna(check->sync_status),
                                               check->reason);
        if (r < 0)
                log_debug_errno(r, "Failed to answer CheckRefund(): %m");
}

static int method_check_refund(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Modules *m = userdata;
        const char *id;
        int r;

        r = bus_check_caller(userdata, message, PRIVILEGE_POS, NULL, error);
        if (r < 0)
                return r;
        r = sd_bus_message_read(message, "s", &id);
        if (r < 0)
                return r;
        sd_bus_message_ref(message);
        r = refund_check(m->store, id, method_on_refund_check, message);
        if (r < 0) {
                sd_bus_message_unref(message);
                if (r == -EINVAL)
                        return sd_bus_error_set(error, KKT_BUS_ERROR("InvalidArgument"),
                                                "The original must be named by 1..255 characters");
                return r;
        }
        return 1;
}

static void method_on_print_admin(Printer *p, int error, const StoreReceipt *receipt, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *message = userdata;
        int r;

        if (error == -ENOENT)
                r = sd_bus_reply_method_errorf(message, KKT_BUS_ERROR("NotFound"), "No receipt with this id");
        else if (error == -EBUSY)
                r = sd_bus_reply_method_errorf(message, KKT_BUS_ERROR("Conflict"),
                                               "The receipt is not set aside as print_rejected");
        else if (error == -ESTALE)
                r = sd_bus_reply_method_errorf(message, KKT_BUS_ERROR("Conflict"), "The receipt is cancelled; that is final");
        else if (error < 0)
                r = sd_bus_reply_method_errorf(message, KKT_BUS_ERROR("Unavailable"),
                                               "Receipt buffer unavailable: %s", strerror(-error));
        else
                r = sd_bus_reply_method_return(message, NULL);
        if (r < 0)
                log_debug_errno(r, "Failed to answer %s(): %m", sd_bus_message_get_member(message));
}

/* RetryPrint(id), CancelReceipt(id, note): admins. */
static int method_print_admin(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Modules *m = userdata;
        bool cancel = streq(sd_bus_message_get_member(message), "CancelReceipt");
        const char *id, *note;
        char who[64];
        int r;

        r = read_admin_call(message, m, cancel, "A note saying why the receipt is cancelled is required", &id,
                            &note, who, error);
        if (r < 0)
                return r;

        sd_bus_message_ref(message);
        r = cancel ? printer_cancel_rejected(m->printer, id, note, who, method_on_print_admin, message)
                   : printer_retry_rejected(m->printer, id, who, method_on_print_admin, message);
        if (r < 0) {
                sd_bus_message_unref(message);
                return r;
        }
        return 1;
}

static void method_on_rejected_list(Store *s, int error, const StoreReceipt *receipts, size_t n, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *message = userdata;
        _cleanup_(json_object_putp) json_object *a = NULL;
        int r;

        if (error < 0) {
                r = sd_bus_reply_method_errorf(message, KKT_BUS_ERROR("Unavailable"),
                                               "Receipt buffer unavailable: %s", strerror(-error));
                goto finish;
        }
        a = json_object_new_array();
        if (!a) {
                r = sd_bus_reply_method_errnof(message, ENOMEM, "Out of memory");
                goto finish;
        }
        for (size_t i = 0; i < n; i++) {
                json_object *e = NULL;

                if (intake_receipt_to_json(receipts + i, &e) < 0 || json_object_array_add(a, e) < 0) {
                        json_object_put(e);
                        r = sd_bus_reply_method_errnof(message, ENOMEM, "Out of memory");
                        goto finish;
                }
        }
        r = reply_json(message, a);
finish:
        if (r < 0)
                log_debug_errno(r, "Failed to answer ListRejected(): %m");
}

static int method_list_rejected(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Modules *m = userdata;
        int r;

        r = bus_check_caller(userdata, message, PRIVILEGE_ADMIN, NULL, error);
        if (r < 0)
                return r;
        sd_bus_message_ref(message);
        r = store_list_print_rejected(m->store, 0, method_on_rejected_list, message);
        if (r < 0) {
                sd_bus_message_unref(message);
                return r;
        }
        return 1;
}

const sd_bus_vtable manager_bus_vtable[] = {
        SD_BUS_VTABLE_START(0),

        SD_BUS_PROPERTY("State", "s", property_get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastHeartbeatUSec", "t", property_get_last_heartbeat, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastHeartbeatResult", "s", property_get_last_result, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ConsecutiveSuccesses", "u", property_get_consecutive, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ConsecutiveFailures", "u", property_get_consecutive, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Pending", "t", property_get_counter, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Synced", "t", property_get_counter, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Failed", "t", property_get_counter, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("DeadLettered", "t", property_get_counter, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Capacity", "t", property_get_counter, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("CircuitState", "s", property_get_circuit_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastSyncUSec", "t", property_get_last_sync, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("AdapterId", "s", property_get_adapter_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("DeviceState", "s", property_get_device_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ShiftNumber", "u", property_get_device_number, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ShiftOpenUSec", "t", property_get_shift_open, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastFiscalDocument", "u", property_get_device_number, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ShiftOpen", "b", property_get_shift_bool, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ShiftExpiresUSec", "t", property_get_device_status_t, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ShiftReceipts", "u", property_get_device_status_u, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("PrintRejected", "t", property_get_print_rejected, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("FnValidUntilUSec", "t", property_get_device_status_t, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("OfdUnsent", "u", property_get_device_status_u, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("OfdFirstUnsentUSec", "t", property_get_device_status_t, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),

        SD_BUS_METHOD_WITH_NAMES("SubmitReceipt", "ss", SD_BUS_PARAM(idempotency_key) SD_BUS_PARAM(receipt_json),
                                 "sss", SD_BUS_PARAM(receipt_id) SD_BUS_PARAM(status) SD_BUS_PARAM(fiscal_json),
                                 method_submit_receipt, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetReceipt", "s", SD_BUS_PARAM(id), "s", SD_BUS_PARAM(json), method_get_receipt,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("SyncNow", NULL, NULL, method_sync_now, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("RetryDeadLetter", "s", SD_BUS_PARAM(id), NULL, , method_dead_letter,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("ResolveDeadLetter", "ss", SD_BUS_PARAM(id) SD_BUS_PARAM(note), NULL, ,
                                 method_dead_letter, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("ResetCircuitBreaker", NULL, NULL, method_reset_breaker, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("ListDeadLetters", "b", SD_BUS_PARAM(all), "s", SD_BUS_PARAM(json),
                                 method_list_dead_letters, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("OpenShift", NULL, , "s", SD_BUS_PARAM(json), method_report,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("PrintXReport", NULL, , "s", SD_BUS_PARAM(json), method_report,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("CloseShift", NULL, , "s", SD_BUS_PARAM(json), method_report,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("CheckRefund", "s", SD_BUS_PARAM(id), "bss",
                                 SD_BUS_PARAM(allowed) SD_BUS_PARAM(sync_status) SD_BUS_PARAM(reason),
                                 method_check_refund, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("RetryPrint", "s", SD_BUS_PARAM(id), NULL, , method_print_admin,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("CancelReceipt", "ss", SD_BUS_PARAM(id) SD_BUS_PARAM(note), NULL, ,
                                 method_print_admin, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("ListRejected", NULL, , "s", SD_BUS_PARAM(json), method_list_rejected,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetDeviceStatus", NULL, , "s", SD_BUS_PARAM(json), method_get_json,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetShift", NULL, , "s", SD_BUS_PARAM(json), method_get_json,
                                 SD_BUS_VTABLE_UNPRIVILEGED),

        SD_BUS_SIGNAL_WITH_NAMES("ReceiptStateChanged", "ss", SD_BUS_PARAM(id) SD_BUS_PARAM(status), 0),
        SD_BUS_SIGNAL_WITH_NAMES("DeadLettered", "ss", SD_BUS_PARAM(id) SD_BUS_PARAM(reason), 0),
        SD_BUS_SIGNAL_WITH_NAMES("PrintRejected", "ss", SD_BUS_PARAM(id) SD_BUS_PARAM(reason), 0),

        SD_BUS_VTABLE_END,
};
