/* SPDX-License-Identifier: MIT */
/* kktctl: the command line, the bus connection and the verbs of kktctl(1). Each verb is one call into
 * org.opticserp.KktAdapter1 whose answer becomes output on stdout and whose failure an exit status. */

#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <systemd/sd-id128.h>

#include "bus-json.h"
#include "cli.h"
#include "json-util.h"
#include "manager-bus.h"
#include "message-ids.h"
#include "monitor.h"
#include "output.h"
#include "report.h"
#include "show.h"
#include "status.h"
#include "string-table.h"
#include "time-util.h"
#include "timestamp.h"

/* Far above any receipt, below the system bus's message limit: a guard against `kktctl submit /dev/zero`. */
#define SUBMIT_MAX_SIZE (16U * 1024U * 1024U)

/* A report waits for the register, a Z report also for the receipts queued before it: as long as HTTP waits
 * (120 s), and a little more, rather than sd-bus's 25 s. */
#define REPORT_CALL_TIMEOUT (130 * USEC_PER_SEC)

#define NEEDS_POS "membership of the group kkt-pos or kkt-admin, or root"
#define NEEDS_ADMIN "membership of the group kkt-admin, or root"

typedef enum BusKind {
        BUS_KIND_SYSTEM,
        BUS_KIND_USER,
        BUS_KIND_ADDRESS,
        _BUS_KIND_MAX,
        _BUS_KIND_INVALID = -EINVAL,
} BusKind;

/* The names --bus= takes; an address has none (anything with a ':' is one). */
static const char *const bus_kind_table[_BUS_KIND_MAX] = {
        [BUS_KIND_SYSTEM] = "system",
        [BUS_KIND_USER] = "user",
};

DEFINE_STRING_TABLE_LOOKUP_FROM_STRING(bus_kind, BusKind, static)

static BusKind arg_bus_kind = BUS_KIND_SYSTEM;
static const char *arg_bus_address = NULL; /* --bus=ADDRESS */
static const char *arg_address = NULL;     /* --address=, which wins over any --bus= */
static bool arg_json = false;
static const char *arg_key = NULL;
static bool arg_all = false; /* dlq list --all: the resolved dead letters too */
static bool arg_utc = false;

typedef struct Verb {
        const char *name;
        int min_args; /* after the verb's name */
        int max_args;
        ExitStatus (*run)(sd_bus *bus, char **args);
} Verb;

static void help(void) {
        printf("%s [OPTIONS...] COMMAND ...\n\n"
               "Query and control the kkt-adapterd fiscal receipt gateway.\n\n"
               "Commands:\n"
               "  status                  Show the state, counters, breaker and register (default)\n"
               "  submit [--key=KEY] FILE|-\n"
               "                          Submit the receipt in FILE (- for standard input)\n"
               "  show ID                 Show one receipt (--json: as the daemon has it)\n"
               "  sync                    Start sending pending receipts to the OFD now\n"
               "  breaker reset           Close the OFD circuit breaker and send again now\n"
               "  dlq list [--all]        List the unresolved dead letters (--all: resolved ones too)\n"
               "  dlq retry ID            Put a dead-lettered receipt back to pending\n"
               "  dlq resolve ID NOTE     Mark a dead letter as handled outside the adapter\n"
               "  shift                   Show the register's shift\n"
               "  shift open              Open a shift\n"
               "  shift close             Close the shift with a Z report and show its figures\n"
               "  report x                Show the X report: the open shift's figures so far\n"
               "  report z                The same as shift close\n"
               "  refund-check ID         May the receipt ID be refunded now? (exit 0: yes, 9: no)\n"
               "  receipt rejected        List the receipts the register rejected\n"
               "  receipt retry ID        Put a rejected receipt back into the print queue\n"
               "  receipt cancel ID NOTE  Cancel a rejected receipt for good\n"
               "  device                  Show the register: shift, fiscal drive, OFD exchange\n"
               "  monitor                 Follow changes and receipt signals until interrupted\n\n"
               "Options:\n"
               "  -h --help               Show this help\n"
               "     --version            Show the version\n"
               "     --json               Print JSON instead of text\n"
               "     --utc                Print times in UTC instead of local time\n"
               "     --no-pager           Accepted for systemctl's sake; kktctl never pages\n"
               "     --bus=BUS            system (default), user, or a D-Bus address\n"
               "     --address=ADDRESS    Connect to the bus at this D-Bus address\n"
               "     --key=KEY            With submit: the idempotency key (default: a new random one)\n"
               "     --all                With dlq list: the resolved dead letters too\n"
               "\nSee the kktctl(1) manual page for the output and the exit statuses.\n",
               program_invocation_short_name);
}

/* Returns 1 to go on, 0 to exit successfully, -EINVAL on a usage error (already reported). */
static int parse_argv(int argc, char *argv[]) {
        enum {
                ARG_VERSION = 0x100,
                ARG_JSON,
                ARG_BUS,
                ARG_ADDRESS,
                ARG_KEY,
                ARG_ALL,
                ARG_UTC,
                ARG_NO_PAGER,
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "json", no_argument, NULL, ARG_JSON },
                { "bus", required_argument, NULL, ARG_BUS },
                { "address", required_argument, NULL, ARG_ADDRESS },
                { "key", required_argument, NULL, ARG_KEY },
                { "all", no_argument, NULL, ARG_ALL },
                { "utc", no_argument, NULL, ARG_UTC },
                { "no-pager", no_argument, NULL, ARG_NO_PAGER },
                {},
        };
        int c;

        /* Our own messages, so they start with "kktctl:" like every other. */
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("kktctl (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
                        return 0;
                case ARG_JSON:
                        arg_json = true;
                        break;
                case ARG_BUS:
                        if (bus_kind_from_string(optarg) >= 0)
                                arg_bus_kind = bus_kind_from_string(optarg);
                        else if (strchr(optarg, ':')) {
                                /* As the daemon's --bus= takes it, so one value serves both. */
                                arg_bus_kind = BUS_KIND_ADDRESS;
                                arg_bus_address = optarg;
                        } else {
                                cli_error(0, "--bus= needs system, user or a D-Bus address, not '%s'.",
                                          optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_ADDRESS:
                        if (isempty(optarg)) {
                                cli_error(0, "--address= needs a D-Bus address.");
                                return -EINVAL;
                        }
                        arg_address = optarg;
                        break;
                case ARG_KEY:
                        if (isempty(optarg)) {
                                cli_error(0, "--key= needs a non-empty idempotency key.");
                                return -EINVAL;
                        }
                        arg_key = optarg;
                        break;
                case ARG_ALL:
                        arg_all = true;
                        break;
                case ARG_UTC:
                        arg_utc = true;
                        break;
                case ARG_NO_PAGER:
                        /* Nothing to turn off: output goes straight to stdout. Accepted so that habits and
                         * scripts written for systemctl and journalctl work here too. */
                        break;
                case ':':
                        cli_error(0, "Option '%s' needs an argument; see --help.", argv[optind - 1]);
                        return -EINVAL;
                case '?':
                        if (optopt > 0 && optopt < 0x100)
                                cli_error(0, "Unknown option '-%c'; see --help.", optopt);
                        else
                                cli_error(0, "Unknown option '%s'; see --help.", argv[optind - 1]);
                        return -EINVAL;
                default:
                        assert(!"unhandled option");
                }

        if (arg_address)
                arg_bus_kind = BUS_KIND_ADDRESS;
        else if (arg_bus_kind == BUS_KIND_ADDRESS)
                arg_address = arg_bus_address;
        return 1;
}

static int bus_connect(sd_bus **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        switch (arg_bus_kind) {
        case BUS_KIND_SYSTEM:
                return sd_bus_open_system_with_description(ret, "kktctl");
        case BUS_KIND_USER:
                return sd_bus_open_user_with_description(ret, "kktctl");
        case BUS_KIND_ADDRESS:
                r = sd_bus_new(&bus);
                if (r < 0)
                        return r;
                r = sd_bus_set_address(bus, arg_address);
                if (r < 0)
                        return r;
                r = sd_bus_set_bus_client(bus, true);
                if (r < 0)
                        return r;
                (void) sd_bus_set_description(bus, "kktctl");
                r = sd_bus_start(bus);
                if (r < 0)
                        return r;
                *ret = TAKE_PTR(bus);
                return 0;
        default:
                assert(!"unknown bus kind");
                return -EINVAL;
        }
}

static const char *bus_name(void) {
        switch (arg_bus_kind) {
        case BUS_KIND_SYSTEM:
                return "the system bus";
        case BUS_KIND_USER:
                return "the user bus";
        default:
                return arg_address;
        }
}

static ExitStatus verb_status(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(json_object_putp) json_object *properties = NULL;
        int r;

        r = status_fetch(bus, &error, &properties);
        if (r < 0)
                return cli_report_bus_error("read the state of kkt-adapterd", NULL, &error, r);

        if (arg_json) {
                r = output_json(properties, false);
                if (r < 0) {
                        cli_error(r, "Failed to format the state: %m");
                        return EXIT_STATUS_FAILED;
                }
        } else
                status_print(properties, stdout, arg_utc);
        return EXIT_STATUS_OK;
}

/* `shift` and `device`: a part of the properties, in one GetAll() call. */
static ExitStatus show_properties(sd_bus *bus, int (*select)(json_object *p, json_object **ret),
                                  void (*print)(json_object *p, FILE *f, bool utc)) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(json_object_putp) json_object *properties = NULL, *part = NULL;
        int r;

        r = status_fetch(bus, &error, &properties);
        if (r < 0)
                return cli_report_bus_error("read the state of kkt-adapterd", NULL, &error, r);

        if (!arg_json) {
                print(properties, stdout, arg_utc);
                return EXIT_STATUS_OK;
        }
        r = select(properties, &part);
        if (r >= 0)
                r = output_json(part, false);
        if (r < 0) {
                cli_error(r, "Failed to format the state: %m");
                return EXIT_STATUS_FAILED;
        }
        return EXIT_STATUS_OK;
}

/* The one JSON text a method answered, parsed; it must be of `type` (json_type_null: any). With --json the
 * text is printed as it came (re-encoding could change how the daemon wrote an amount) and *ret stays NULL:
 * the caller is done. Returns EXIT_STATUS_OK, or the status to exit with after saying why. */
static ExitStatus json_reply(sd_bus_message *reply, const char *method, const char *action, json_type type,
                             json_object **ret) {
        json_object *o;
        const char *json;
        int r;

        *ret = NULL;
        r = sd_bus_message_read(reply, "s", &json);
        if (r < 0) {
                cli_error(r, "Failed to read the answer to %s(): %m", method);
                return EXIT_STATUS_FAILED;
        }
        o = json_tokener_parse(json);
        if (!o || (type != json_type_null && !json_object_is_type(o, type))) {
                json_object_put(o);
                cli_error(0, "Failed to %s: kkt-adapterd's answer is not %s.", action,
                          type == json_type_array ? "a JSON array" : type == json_type_object ? "a JSON object" : "JSON");
                return EXIT_STATUS_FAILED;
        }
        if (arg_json) {
                json_object_put(o);
                puts(json);
                return EXIT_STATUS_OK;
        }
        *ret = o;
        return EXIT_STATUS_OK;
}

/* The register as it reports itself: GetDeviceStatus(), the JSON of GET /v1/kkt/device/status. */
static ExitStatus verb_device(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_object_putp) json_object *o = NULL;
        ExitStatus e;
        int r;

        r = sd_bus_call_method(bus, KKT_BUS_NAME, KKT_BUS_PATH, KKT_BUS_INTERFACE, "GetDeviceStatus", &error,
                               &reply, NULL);
        if (r < 0)
                return cli_report_bus_error("read the register's state", NULL, &error, r);
        e = json_reply(reply, "GetDeviceStatus", "read the register's state", json_type_object, &o);
        if (e != EXIT_STATUS_OK || !o)
                return e;
        status_print_device_json(o, stdout, arg_utc);
        return EXIT_STATUS_OK;
}

/* Reads all of path ("-": stdin) into a NUL-terminated buffer; -EFBIG beyond SUBMIT_MAX_SIZE. */
static int read_input(const char *path, char **ret, size_t *ret_size) {
        _cleanup_fclose_ FILE *opened = NULL;
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, allocated = 0;
        FILE *f;

        if (streq(path, "-"))
                f = stdin;
        else {
                opened = fopen(path, "re");
                if (!opened)
                        return negative_errno();
                f = opened;
        }

        for (;;) {
                size_t n;

                if (allocated - size < 4096) {
                        size_t a = MAX(allocated * 2, (size_t) 64 * 1024);
                        char *p = realloc(buf, a + 1);

                        if (!p)
                                return -ENOMEM;
                        buf = p;
                        allocated = a;
                }
                n = fread(buf + size, 1, allocated - size, f);
                size += n;
                if (size > SUBMIT_MAX_SIZE)
                        return -EFBIG;
                if (n == 0) {
                        if (ferror(f))
                                return errno > 0 ? -errno : -EIO;
                        break;
                }
        }

        buf[size] = '\0';
        *ret = TAKE_PTR(buf);
        *ret_size = size;
        return 0;
}

/* A fiscal document as JSON: the object the daemon sent, or null while the receipt is not printed. */
static json_object *fiscal_doc_to_json(const char *fiscal_json) {
        json_object *o;

        if (isempty(fiscal_json) || streq(fiscal_json, "null"))
                return NULL;
        o = json_tokener_parse(fiscal_json);
        /* Not JSON would be the daemon's bug; keep what it said rather than lose it. */
        return o ?: json_object_new_string(fiscal_json);
}

static ExitStatus verb_submit(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        _cleanup_(json_object_putp) json_object *fiscal = NULL;
        _cleanup_free_ char *body = NULL;
        char generated[SD_ID128_UUID_STRING_MAX];
        const char *path = args[0], *key = arg_key, *id, *status, *fiscal_json;
        size_t size;
        int r;

        r = read_input(path, &body, &size);
        if (r == -EFBIG) {
                cli_error(0, "Failed to read %s: larger than %u bytes, not a receipt.",
                          streq(path, "-") ? "standard input" : path, SUBMIT_MAX_SIZE);
                return EXIT_STATUS_USAGE;
        }
        if (r < 0) {
                cli_error(r, "Failed to read %s: %m", streq(path, "-") ? "standard input" : path);
                return EXIT_STATUS_USAGE;
        }
        if (memchr(body, 0, size)) {
                cli_error(0, "Receipt refused: %s contains a NUL byte, it is not JSON text.",
                          streq(path, "-") ? "standard input" : path);
                return EXIT_STATUS_REFUSED;
        }

        if (!key) {
                sd_id128_t k;

                r = sd_id128_randomize(&k);
                if (r < 0) {
                        cli_error(r, "Failed to generate an idempotency key: %m");
                        return EXIT_STATUS_FAILED;
                }
                key = sd_id128_to_uuid_string(k, generated);
                /* Before the call: if its outcome is unclear, the key is what makes a retry safe. */
                fprintf(stderr, "Idempotency-Key: %s\n", key);
        }

        r = sd_bus_message_new_method_call(bus, &call, KKT_BUS_NAME, KKT_BUS_PATH, KKT_BUS_INTERFACE,
                                           "SubmitReceipt");
        if (r < 0) {
                cli_error(r, "Failed to build the SubmitReceipt() call: %m");
                return EXIT_STATUS_FAILED;
        }
        /* D-Bus strings are UTF-8: sd-bus refuses anything else (-EINVAL) before it is sent. */
        r = sd_bus_message_append(call, "s", key);
        if (r == -EINVAL) {
                cli_error(0, "--key= must be valid UTF-8 text.");
                return EXIT_STATUS_USAGE;
        }
        if (r >= 0)
                r = sd_bus_message_append(call, "s", body);
        if (r == -EINVAL) {
                cli_error(0, "Receipt refused: %s is not valid UTF-8 text.",
                          streq(path, "-") ? "standard input" : path);
                return EXIT_STATUS_REFUSED;
        }
        if (r < 0) {
                cli_error(r, "Failed to build the SubmitReceipt() call: %m");
                return EXIT_STATUS_FAILED;
        }

        r = sd_bus_call(bus, call, 0, &error, &reply);
        if (r < 0)
                return cli_report_bus_error("submit the receipt", NEEDS_POS, &error, r);
        r = sd_bus_message_read(reply, "sss", &id, &status, &fiscal_json);
        if (r < 0) {
                cli_error(r, "Failed to read the answer to SubmitReceipt(): %m");
                return EXIT_STATUS_FAILED;
        }
        fiscal = fiscal_doc_to_json(fiscal_json);

        if (arg_json) {
                _cleanup_(json_object_putp) json_object *o = json_object_new_object();

                if (!o || json_object_object_add(o, "receipt_id", json_object_new_string(id)) < 0 ||
                    json_object_object_add(o, "status", json_object_new_string(status)) < 0 ||
                    json_object_object_add(o, "idempotency_key", json_object_new_string(key)) < 0 ||
                    json_object_object_add(o, "fiscal_doc", json_object_get(fiscal)) < 0 ||
                    output_json(o, false) < 0) {
                        cli_error(ENOMEM, "Failed to format the answer: %m");
                        return EXIT_STATUS_FAILED;
                }
                return EXIT_STATUS_OK;
        }

        printf("     Receipt ID: %s\n"
               "         Status: %s\n"
               "Idempotency-Key: %s\n",
               id, status, key);
        if (fiscal)
                printf("Fiscal document: %s\n",
                       json_object_to_json_string_ext(fiscal, JSON_PLAIN));
        return EXIT_STATUS_OK;
}

static ExitStatus verb_show(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_object_putp) json_object *o = NULL;
        ExitStatus e;
        int r;

        if (isempty(args[0])) {
                cli_error(0, "show needs a receipt id, not an empty string.");
                return EXIT_STATUS_USAGE;
        }

        r = sd_bus_call_method(bus, KKT_BUS_NAME, KKT_BUS_PATH, KKT_BUS_INTERFACE, "GetReceipt", &error,
                               &reply, "s", args[0]);
        if (r < 0)
                return cli_report_bus_error("show the receipt", NEEDS_POS, &error, r);
        e = json_reply(reply, "GetReceipt", "show the receipt", json_type_null, &o);
        if (e != EXIT_STATUS_OK || !o)
                return e;
        show_print_receipt(o, stdout, arg_utc);
        return EXIT_STATUS_OK;
}

/* The methods without an answer: success prints nothing, like systemctl start. With conflict_is_final, the
 * daemon's Conflict means that the object is not in a state the method applies to (a receipt that is not
 * rejected, or cancelled; a dead letter resolved already, or a receipt not in the dead-letter queue): doing
 * it again will not help, so that is "refused", not "try again later". */
static ExitStatus call_admin_method(sd_bus *bus, bool conflict_is_final, const char *action,
                                    const char *method, const char *types, ...) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        va_list ap;
        int r;

        r = sd_bus_message_new_method_call(bus, &call, KKT_BUS_NAME, KKT_BUS_PATH, KKT_BUS_INTERFACE,
                                           method);
        if (r >= 0 && types) {
                va_start(ap, types);
                r = sd_bus_message_appendv(call, types, ap);
                va_end(ap);
        }
        if (r == -EINVAL) {
                cli_error(0, "Failed to %s: the arguments are not valid UTF-8 text.", action);
                return EXIT_STATUS_USAGE;
        }
        if (r < 0) {
                cli_error(r, "Failed to build the %s() call: %m", method);
                return EXIT_STATUS_FAILED;
        }
        r = sd_bus_call(bus, call, 0, &error, &reply);
        if (r < 0 && conflict_is_final && sd_bus_error_has_name(&error, KKT_BUS_ERROR("Conflict"))) {
                cli_error(0, "Failed to %s, refused: %s", action, strna(error.message));
                return EXIT_STATUS_REFUSED;
        }
        if (r < 0)
                return cli_report_bus_error(action, NEEDS_ADMIN, &error, r);
        return EXIT_STATUS_OK;
}

static ExitStatus verb_sync(sd_bus *bus, char **args) {
        return call_admin_method(bus, false, "start a sync", "SyncNow", NULL);
}

static ExitStatus verb_breaker(sd_bus *bus, char **args) {
        if (streq(args[0], "reset"))
                return call_admin_method(bus, false, "reset the circuit breaker", "ResetCircuitBreaker", NULL);
        cli_error(0, "Unknown breaker command '%s': use breaker reset.", args[0]);
        return EXIT_STATUS_USAGE;
}

static const char *json_field(json_object *o, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return "-";
        return json_object_get_string(v);
}

static ExitStatus dlq_list(sd_bus *bus) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_object_putp) json_object *a = NULL;
        ExitStatus e;
        size_t n;
        int r;

        r = sd_bus_call_method(bus, KKT_BUS_NAME, KKT_BUS_PATH, KKT_BUS_INTERFACE, "ListDeadLetters", &error,
                               &reply, "b", arg_all);
        if (r < 0)
                return cli_report_bus_error("list the dead letters", NEEDS_ADMIN, &error, r);
        e = json_reply(reply, "ListDeadLetters", "list the dead letters", json_type_array, &a);
        if (e != EXIT_STATUS_OK || !a)
                return e;

        n = json_object_array_length(a);
        if (n == 0) {
                puts(arg_all ? "No dead letters." : "No unresolved dead letters.");
                return EXIT_STATUS_OK;
        }
        printf("%-36s %-29s %-8s %s\n", "RECEIPT", "MOVED", "STATE", "REASON");
        for (size_t i = 0; i < n; i++) {
                json_object *d = json_object_array_get_idx(a, i), *v;
                bool resolved = json_object_object_get_ex(d, "resolved", &v) && json_object_get_boolean(v);
                char when[TIMESTAMP_MAX];

                printf("%-36s %-29s %-8s %s\n", json_field(d, "receipt_id"),
                       timestamp_reformat(when, sizeof when, json_field(d, "moved_at"), arg_utc),
                       resolved ? "resolved" : "open", json_field(d, "reason"));
        }
        return EXIT_STATUS_OK;
}

static ExitStatus verb_dlq(sd_bus *bus, char **args) {
        const char *what = args[0];

        if (streq(what, "list") && !args[1])
                return dlq_list(bus);
        if (streq(what, "retry") && args[1] && !args[2]) {
                if (isempty(args[1])) {
                        cli_error(0, "dlq retry needs a receipt id, not an empty string.");
                        return EXIT_STATUS_USAGE;
                }
                return call_admin_method(bus, true, "retry the dead letter", "RetryDeadLetter", "s",
                                         args[1]);
        }
        if (streq(what, "resolve") && args[1] && args[2]) {
                if (isempty(args[1]) || isempty(args[2])) {
                        cli_error(0, "dlq resolve needs a receipt id and a note saying how it was handled.");
                        return EXIT_STATUS_USAGE;
                }
                return call_admin_method(bus, true, "resolve the dead letter", "ResolveDeadLetter", "ss",
                                         args[1], args[2]);
        }

        if (!streq(what, "list") && !streq(what, "retry") && !streq(what, "resolve"))
                cli_error(0, "Unknown dlq command '%s': use list, retry ID or resolve ID NOTE.", what);
        else
                cli_error(0, "Wrong number of arguments: use dlq list, retry ID or resolve ID NOTE.");
        return EXIT_STATUS_USAGE;
}

/* ---- the fiscal day ---- */

/* OpenShift(), PrintXReport(), CloseShift(): one call that answers with the report as JSON. */
static ExitStatus call_report(sd_bus *bus, const char *method, const char *action) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        _cleanup_(json_object_putp) json_object *o = NULL;
        ExitStatus e;
        int r;

        r = sd_bus_message_new_method_call(bus, &call, KKT_BUS_NAME, KKT_BUS_PATH, KKT_BUS_INTERFACE,
                                           method);
        if (r < 0) {
                cli_error(r, "Failed to build the %s() call: %m", method);
                return EXIT_STATUS_FAILED;
        }
        r = sd_bus_call(bus, call, REPORT_CALL_TIMEOUT, &error, &reply);
        if (r < 0)
                return cli_report_bus_error(action, NEEDS_POS, &error, r);
        e = json_reply(reply, method, action, json_type_object, &o);
        if (e != EXIT_STATUS_OK || !o)
                return e;
        report_print(o, stdout, arg_utc);
        return EXIT_STATUS_OK;
}

static ExitStatus verb_shift(sd_bus *bus, char **args) {
        if (!args[0])
                return show_properties(bus, status_select_shift, status_print_shift);
        if (streq(args[0], "open") && !args[1])
                return call_report(bus, "OpenShift", "open the shift");
        if (streq(args[0], "close") && !args[1])
                return call_report(bus, "CloseShift", "close the shift");

        if (!streq(args[0], "open") && !streq(args[0], "close"))
                cli_error(0, "Unknown shift command '%s': use shift, shift open or shift close.", args[0]);
        else
                cli_error(0, "Wrong number of arguments: use shift, shift open or shift close.");
        return EXIT_STATUS_USAGE;
}

static ExitStatus verb_report(sd_bus *bus, char **args) {
        if (streq(args[0], "x"))
                return call_report(bus, "PrintXReport", "make the X report");
        if (streq(args[0], "z"))
                return call_report(bus, "CloseShift", "close the shift");
        cli_error(0, "Unknown report '%s': use report x, or report z (shift close).", args[0]);
        return EXIT_STATUS_USAGE;
}

static ExitStatus verb_refund_check(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *sync_status, *reason;
        int allowed, r;

        if (isempty(args[0])) {
                cli_error(0, "refund-check needs the original's receipt id, Idempotency-Key or fiscal "
                          "document number, not an empty string.");
                return EXIT_STATUS_USAGE;
        }
        r = sd_bus_call_method(bus, KKT_BUS_NAME, KKT_BUS_PATH, KKT_BUS_INTERFACE, "CheckRefund", &error,
                               &reply, "s", args[0]);
        if (r == -EINVAL && !sd_bus_error_is_set(&error)) {
                cli_error(0, "Failed to check the refund: the id is not valid UTF-8 text.");
                return EXIT_STATUS_USAGE;
        }
        if (r < 0)
                return cli_report_bus_error("check the refund", NEEDS_POS, &error, r);
        r = sd_bus_message_read(reply, "bss", &allowed, &sync_status, &reason);
        if (r < 0) {
                cli_error(r, "Failed to read the answer to CheckRefund(): %m");
                return EXIT_STATUS_FAILED;
        }

        if (arg_json) {
                _cleanup_(json_object_putp) json_object *o = json_object_new_object();

                if (!o || json_object_object_add(o, "allowed", json_object_new_boolean(allowed)) < 0 ||
                    json_object_object_add(o, "sync_status", json_object_new_string(sync_status)) < 0 ||
                    json_object_object_add(o, "reason", json_object_new_string(reason)) < 0 ||
                    output_json(o, false) < 0) {
                        cli_error(ENOMEM, "Failed to format the answer: %m");
                        return EXIT_STATUS_FAILED;
                }
        } else {
                printf("Refund: %s\n"
                       "Status: %s\n",
                       allowed ? "allowed" : "not allowed", sync_status);
                if (!isempty(reason))
                        printf("Reason: %s\n", reason);
        }
        /* The answer "no" is not a failure of kktctl, but a script must be able to tell it apart. */
        return allowed ? EXIT_STATUS_OK : EXIT_STATUS_NOT_ALLOWED;
}

static ExitStatus receipt_rejected(sd_bus *bus) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_object_putp) json_object *a = NULL;
        ExitStatus e;
        size_t n;
        int r;

        r = sd_bus_call_method(bus, KKT_BUS_NAME, KKT_BUS_PATH, KKT_BUS_INTERFACE, "ListRejected", &error,
                               &reply, NULL);
        if (r < 0)
                return cli_report_bus_error("list the rejected receipts", NEEDS_ADMIN, &error, r);
        e = json_reply(reply, "ListRejected", "list the rejected receipts", json_type_array, &a);
        if (e != EXIT_STATUS_OK || !a)
                return e;

        n = json_object_array_length(a);
        if (n == 0) {
                puts("No rejected receipts.");
                return EXIT_STATUS_OK;
        }
        printf("%-36s %-16s %-29s %s\n", "RECEIPT", "POS", "SET ASIDE", "REASON");
        for (size_t i = 0; i < n; i++) {
                json_object *d = json_object_array_get_idx(a, i);
                char when[TIMESTAMP_MAX];

                printf("%-36s %-16s %-29s %s\n", json_field(d, "receipt_id"), json_field(d, "pos_id"),
                       timestamp_reformat(when, sizeof when, json_field(d, "updated_at"), arg_utc),
                       json_field(d, "last_error"));
        }
        return EXIT_STATUS_OK;
}

static ExitStatus verb_receipt(sd_bus *bus, char **args) {
        const char *what = args[0];

        if (streq(what, "rejected") && !args[1])
                return receipt_rejected(bus);
        if (streq(what, "retry") && args[1] && !args[2]) {
                if (isempty(args[1])) {
                        cli_error(0, "receipt retry needs a receipt id, not an empty string.");
                        return EXIT_STATUS_USAGE;
                }
                return call_admin_method(bus, true, "retry the print", "RetryPrint", "s", args[1]);
        }
        if (streq(what, "cancel") && args[1] && args[2]) {
                if (isempty(args[1]) || isempty(args[2])) {
                        cli_error(0, "receipt cancel needs a receipt id and a note saying why it is "
                                  "cancelled.");
                        return EXIT_STATUS_USAGE;
                }
                return call_admin_method(bus, true, "cancel the receipt", "CancelReceipt", "ss", args[1],
                                         args[2]);
        }

        if (!streq(what, "rejected") && !streq(what, "retry") && !streq(what, "cancel"))
                cli_error(0, "Unknown receipt command '%s': use rejected, retry ID or cancel ID NOTE.",
                          what);
        else
                cli_error(0, "Wrong number of arguments: use receipt rejected, retry ID or cancel ID NOTE.");
        return EXIT_STATUS_USAGE;
}

static ExitStatus verb_monitor(sd_bus *bus, char **args) {
        _cleanup_(monitor_freep) Monitor *m = NULL;
        int r;

        r = monitor_new(&m, bus, arg_json, arg_utc, stdout);
        if (r < 0)
                return cli_report_bus_error("follow kkt-adapterd", NULL, NULL, r);

        /* On stderr, so the data stays clean; a script waits for this line to know nothing is missed. */
        fprintf(stderr, "Following kkt-adapterd on %s%s; press Ctrl-C to stop.\n", bus_name(),
                monitor_daemon_running(m) ? "" : " (not running yet, waiting for it)");

        r = monitor_run(m);
        if (r == -ECONNRESET) {
                cli_error(0, "Lost the connection to %s.", bus_name());
                return EXIT_STATUS_NOT_RUNNING;
        }
        if (r < 0) {
                cli_error(r, "Failed to follow kkt-adapterd: %m");
                return EXIT_STATUS_FAILED;
        }
        return EXIT_STATUS_OK;
}

static const Verb verbs[] = {
        { "status", 0, 0, verb_status },
        { "submit", 1, 1, verb_submit },
        { "show", 1, 1, verb_show },
        { "sync", 0, 0, verb_sync },
        { "breaker", 1, 1, verb_breaker },
        { "dlq", 1, 3, verb_dlq },
        { "shift", 0, 1, verb_shift },
        { "report", 1, 1, verb_report },
        { "refund-check", 1, 1, verb_refund_check },
        { "receipt", 1, 3, verb_receipt },
        { "device", 0, 0, verb_device },
        { "monitor", 0, 0, verb_monitor },
};

static const Verb *verb_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(verbs[i].name, name))
                        return &verbs[i];
        return NULL;
}

static ExitStatus run(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        static char *no_args[] = { NULL };
        const Verb *verb;
        char **args;
        int n, r;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_STATUS_USAGE : EXIT_STATUS_OK;

        if (optind < argc) {
                verb = verb_find(argv[optind]);
                if (!verb) {
                        cli_error(0, "Unknown command '%s'; see --help.", argv[optind]);
                        return EXIT_STATUS_USAGE;
                }
                args = argv + optind + 1;
                n = argc - optind - 1;
        } else {
                verb = verb_find("status");
                args = no_args;
                n = 0;
        }
        if (n < verb->min_args || n > verb->max_args) {
                cli_error(0, "%s %s; see --help.", verb->name,
                          n < verb->min_args ? "needs more arguments" : "takes fewer arguments");
                return EXIT_STATUS_USAGE;
        }
        if (arg_key && !streq(verb->name, "submit")) {
                cli_error(0, "--key= goes with submit only.");
                return EXIT_STATUS_USAGE;
        }
        if (arg_all && !(streq(verb->name, "dlq") && streq(args[0], "list"))) {
                cli_error(0, "--all goes with dlq list only.");
                return EXIT_STATUS_USAGE;
        }

        r = bus_connect(&bus);
        if (r == -EINVAL && arg_bus_kind == BUS_KIND_ADDRESS) {
                cli_error(0, "Failed to connect to '%s': not a valid D-Bus address.", arg_address);
                return EXIT_STATUS_USAGE;
        }
        if (r < 0) {
                cli_error(r, "Failed to connect to %s: %m; kkt-adapterd is not running or cannot be reached "
                          "there.", bus_name());
                return EXIT_STATUS_NOT_RUNNING;
        }

        return verb->run(bus, args);
}

int main(int argc, char *argv[]) {
        ExitStatus status = run(argc, argv);

        /* Output that did not arrive is a failure a script must see (a full disk, a closed pipe). */
        if (fflush(stdout) != 0 || ferror(stdout)) {
                cli_error(errno, "Failed to write the output: %m");
                if (status == EXIT_STATUS_OK)
                        status = EXIT_STATUS_FAILED;
        }
        return status;
}
