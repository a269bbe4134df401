/* SPDX-License-Identifier: MIT */
/* Owns `kktctl monitor`: an sd-event loop with the bus attached, matches on the daemon's signals and on its
 * name's owner, and the line printed for each event (key=value words, or one JSON object with --json). */

#include <signal.h>
#include <systemd/sd-event.h>

#include "bus-json.h"
#include "json-util.h"
#include "manager-bus.h"
#include "monitor.h"
#include "output.h"
#include "time-util.h"
#include "timestamp.h"

struct Monitor {
        sd_event *event;
        sd_bus *bus;
        FILE *out;
        bool json;
        bool utc;
        bool daemon_running;
        /* The last value seen of each property: a PropertiesChanged shows only what differs from it. */
        json_object *known;

        sd_bus_slot *properties_slot;
        sd_bus_slot *receipt_slot;
        sd_bus_slot *dead_letter_slot;
        sd_bus_slot *print_rejected_slot;
        sd_bus_slot *owner_slot;
        sd_bus_slot *disconnect_slot;

        sd_event_source *sigint_source;
        sd_event_source *sigterm_source;
};

/* Our name's comings and goings, so a restart of the daemon shows up in the stream. */
#define MATCH_NAME_OWNER_CHANGED                                                                        \
        "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"                     \
        "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='" KKT_BUS_NAME "'"

/* Only our interface's changes; arg0 lets the bus drop the others before they reach us. */
#define MATCH_PROPERTIES_CHANGED                                                                        \
        "type='signal',sender='" KKT_BUS_NAME "',path='" KKT_BUS_PATH "',"                              \
        "interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',arg0='" KKT_BUS_INTERFACE "'"

Monitor *monitor_free(Monitor *m) {
        if (!m)
                return NULL;

        sd_bus_slot_unref(m->properties_slot);
        sd_bus_slot_unref(m->receipt_slot);
        sd_bus_slot_unref(m->dead_letter_slot);
        sd_bus_slot_unref(m->print_rejected_slot);
        sd_bus_slot_unref(m->owner_slot);
        sd_bus_slot_unref(m->disconnect_slot);
        sd_event_source_disable_unref(m->sigint_source);
        sd_event_source_disable_unref(m->sigterm_source);
        if (m->bus) {
                (void) sd_bus_detach_event(m->bus);
                sd_bus_unref(m->bus);
        }
        sd_event_unref(m->event);
        json_object_put(m->known);
        return mfree(m);
}

/* A string as one word: bare when that is unambiguous, else JSON-quoted. */
static void monitor_put_value(FILE *f, json_object *v) {
        const char *s;

        if (!v) {
                fputs("(invalidated)", f);
                return;
        }
        if (json_object_is_type(v, json_type_string)) {
                s = json_object_get_string(v);
                if (!isempty(s) && !s[strcspn(s, " \t\n\"\\=")]) {
                        fputs(s, f);
                        return;
                }
        }
        fputs(json_object_to_json_string_ext(v, JSON_PLAIN), f);
}

/* Prints one event: `fields` (may be NULL) are its members; nested objects (the changed properties) are
 * flattened into Name=value words in the text form. */
static int monitor_emit(Monitor *m, const char *event, json_object *fields) {
        usec_t t = now(CLOCK_REALTIME);

        if (m->json) {
                _cleanup_(json_object_putp) json_object *o = json_object_new_object();

                if (!o || json_object_object_add(o, "time_usec", json_object_new_uint64(t)) < 0 ||
                    json_object_object_add(o, "event", json_object_new_string(event)) < 0)
                        return -ENOMEM;
                if (fields) {
                        json_object_object_foreach(fields, key, value)
                                if (json_object_object_add(o, key, json_object_get(value)) < 0) {
                                        json_object_put(value);
                                        return -ENOMEM;
                                }
                }
                fprintf(m->out, "%s\n", json_object_to_json_string_ext(o, JSON_PLAIN));
        } else {
                char when[TIMESTAMP_MAX];

                fprintf(m->out, "%s %s", timestamp_format(when, sizeof when, t, m->utc), event);
                if (fields) {
                        json_object_object_foreach(fields, key, value) {
                                if (!json_object_is_type(value, json_type_object)) {
                                        fprintf(m->out, " %s=", key);
                                        monitor_put_value(m->out, value);
                                        continue;
                                }
                                json_object_object_foreach(value, name, v) {
                                        fprintf(m->out, " %s=", name);
                                        monitor_put_value(m->out, v);
                                }
                        }
                }
                fputc('\n', m->out);
        }

        /* Someone is reading this as it happens (often through a pipe): no block buffering. */
        if (fflush(m->out) != 0 || ferror(m->out))
                return negative_errno();
        return 0;
}

/* Ends the loop when printing failed (a full disk; a closed pipe when SIGPIPE is ignored): following on
 * without anyone to tell would be pointless. */
static int monitor_emit_or_exit(Monitor *m, const char *event, json_object *fields) {
        int r = monitor_emit(m, event, fields);

        if (r < 0)
                (void) sd_event_exit(m->event, r);
        return r;
}

/* The daemon announces a group of properties together (the register's ten on every document): removes from
 * `changed` those whose value is the one seen last, and remembers the others. Returns how many are left. */
static int monitor_drop_unchanged(Monitor *m, json_object *changed) {
        _cleanup_(json_object_putp) json_object *same = json_object_new_array();
        json_object *old;

        if (!same)
                return -ENOMEM;
        json_object_object_foreach(changed, name, value) {
                if (!value) {
                        /* Invalidated: its value is unknown from now on. */
                        json_object_object_del(m->known, name);
                        continue;
                }
                if (json_object_object_get_ex(m->known, name, &old) && json_object_equal(old, value)) {
                        if (json_object_array_add(same, json_object_new_string(name)) < 0)
                                return -ENOMEM;
                        continue;
                }
                if (json_object_object_add(m->known, name, json_object_get(value)) < 0) {
                        json_object_put(value);
                        return -ENOMEM;
                }
        }
        for (size_t i = 0; i < json_object_array_length(same); i++)
                json_object_object_del(changed, json_object_get_string(json_object_array_get_idx(same, i)));
        return json_object_object_length(changed);
}

/* What the daemon holds now, so that the first announcement after ours is compared with something. A
 * daemon that cannot be asked leaves it empty: then its first announcements show in full. */
static void monitor_learn_properties(Monitor *m) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        json_object *properties = NULL;

        if (sd_bus_call_method(m->bus, KKT_BUS_NAME, KKT_BUS_PATH, "org.freedesktop.DBus.Properties", "GetAll",
                               NULL, &reply, "s", KKT_BUS_INTERFACE) < 0 ||
            bus_message_read_properties_json(reply, &properties) < 0)
                return;
        json_object_put(m->known);
        m->known = properties;
}

static int monitor_on_properties_changed(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_(json_object_putp) json_object *fields = NULL, *changed = NULL;
        Monitor *m = userdata;
        const char *interface, *name;
        int r;

        r = sd_bus_message_read(message, "s", &interface);
        if (r < 0)
                return r;
        if (!streq(interface, KKT_BUS_INTERFACE))
                return 0;
        r = bus_message_read_properties_json(message, &changed);
        if (r < 0)
                return r;

        /* Properties that changed without their value travelling along show as null. */
        r = sd_bus_message_enter_container(message, SD_BUS_TYPE_ARRAY, "s");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read_basic(message, SD_BUS_TYPE_STRING, &name)) > 0)
                if (json_object_object_add(changed, name, NULL) < 0)
                        return -ENOMEM;
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(message);
        if (r < 0)
                return r;

        r = monitor_drop_unchanged(m, changed);
        if (r <= 0)
                return r;

        fields = json_object_new_object();
        if (!fields)
                return -ENOMEM;
        if (json_object_object_add(fields, "properties", TAKE_PTR(changed)) < 0)
                return -ENOMEM;
        return monitor_emit_or_exit(m, "PropertiesChanged", fields);
}

/* ReceiptStateChanged(id, status), DeadLettered(id, reason) and PrintRejected(id, reason) have the same
 * shape. */
static int monitor_on_receipt_signal(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_(json_object_putp) json_object *fields = NULL;
        Monitor *m = userdata;
        const char *member = sd_bus_message_get_member(message);
        bool state = streq_ptr(member, "ReceiptStateChanged");
        const char *id, *what;
        int r;

        r = sd_bus_message_read(message, "ss", &id, &what);
        if (r < 0)
                return r;

        fields = json_object_new_object();
        if (!fields || json_object_object_add(fields, "id", json_object_new_string(id)) < 0 ||
            json_object_object_add(fields, state ? "status" : "reason", json_object_new_string(what)) < 0)
                return -ENOMEM;
        return monitor_emit_or_exit(m, member, fields);
}

static int monitor_on_name_owner_changed(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Monitor *m = userdata;
        const char *name, *old_owner, *new_owner;
        int r;

        r = sd_bus_message_read(message, "sss", &name, &old_owner, &new_owner);
        if (r < 0)
                return r;
        if (!streq(name, KKT_BUS_NAME))
                return 0;

        /* A hand-over from one instance to the next is a stop and a start. */
        if (!isempty(old_owner)) {
                _cleanup_(json_object_putp) json_object *empty = json_object_new_object();

                if (!empty)
                        return -ENOMEM;
                /* The next instance starts from its own state: everything it announces is news. */
                json_object_put(m->known);
                m->known = TAKE_PTR(empty);
                m->daemon_running = false;
                r = monitor_emit_or_exit(m, "DaemonStopped", NULL);
                if (r < 0)
                        return r;
        }
        if (!isempty(new_owner)) {
                m->daemon_running = true;
                r = monitor_emit_or_exit(m, "DaemonStarted", NULL);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int monitor_on_message(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Monitor *m = userdata;

        /* sd-bus's own note that the connection is gone; nothing more will come. */
        if (sd_bus_message_is_signal(message, "org.freedesktop.DBus.Local", "Disconnected"))
                (void) sd_event_exit(m->event, -ECONNRESET);
        return 0;
}

static int monitor_on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Monitor *m = userdata;

        return sd_event_exit(m->event, 0);
}

int monitor_new(Monitor **ret, sd_bus *bus, bool json, bool utc, FILE *out) {
        _cleanup_(monitor_freep) Monitor *m = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sigset_t mask;
        int r, has_owner;

        assert(ret);
        assert(bus);
        assert(out);

        m = new0(Monitor, 1);
        if (!m)
                return -ENOMEM;
        m->bus = sd_bus_ref(bus);
        m->json = json;
        m->utc = utc;
        m->out = out;
        m->known = json_object_new_object();
        if (!m->known)
                return -ENOMEM;

        r = sd_event_new(&m->event);
        if (r < 0)
                return r;

        /* sd-event takes signals through a signalfd, which sees only blocked signals. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return negative_errno();
        r = sd_event_add_signal(m->event, &m->sigint_source, SIGINT, monitor_on_signal, m);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(m->sigint_source, "monitor-sigint");
        r = sd_event_add_signal(m->event, &m->sigterm_source, SIGTERM, monitor_on_signal, m);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(m->sigterm_source, "monitor-sigterm");

        r = sd_bus_attach_event(m->bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;
        r = sd_bus_add_filter(m->bus, &m->disconnect_slot, monitor_on_message, m);
        if (r < 0)
                return r;

        /* Synchronous AddMatch calls: once they return, the bus routes every later signal to us. */
        r = sd_bus_add_match(m->bus, &m->owner_slot, MATCH_NAME_OWNER_CHANGED, monitor_on_name_owner_changed,
                             m);
        if (r < 0)
                return r;
        r = sd_bus_add_match(m->bus, &m->properties_slot, MATCH_PROPERTIES_CHANGED,
                             monitor_on_properties_changed, m);
        if (r < 0)
                return r;
        r = sd_bus_match_signal(m->bus, &m->receipt_slot, KKT_BUS_NAME, KKT_BUS_PATH, KKT_BUS_INTERFACE,
                                "ReceiptStateChanged", monitor_on_receipt_signal, m);
        if (r < 0)
                return r;
        r = sd_bus_match_signal(m->bus, &m->dead_letter_slot, KKT_BUS_NAME, KKT_BUS_PATH, KKT_BUS_INTERFACE,
                                "DeadLettered", monitor_on_receipt_signal, m);
        if (r < 0)
                return r;
        r = sd_bus_match_signal(m->bus, &m->print_rejected_slot, KKT_BUS_NAME, KKT_BUS_PATH,
                                KKT_BUS_INTERFACE, "PrintRejected", monitor_on_receipt_signal, m);
        if (r < 0)
                return r;

        /* Asked after the matches are in place, so a start in between is not lost. */
        r = sd_bus_call_method(m->bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                               "org.freedesktop.DBus", "NameHasOwner", NULL, &reply, "s", KKT_BUS_NAME);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "b", &has_owner);
        if (r < 0)
                return r;
        m->daemon_running = has_owner;
        if (has_owner)
                monitor_learn_properties(m);

        *ret = TAKE_PTR(m);
        return 0;
}

bool monitor_daemon_running(Monitor *m) {
        assert(m);
        return m->daemon_running;
}

int monitor_run(Monitor *m) {
        assert(m);
        return sd_event_loop(m->event);
}
