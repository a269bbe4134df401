/* SPDX-License-Identifier: MIT */
/* Owns the configuration table: every [Section] Key=, its type, range and default, how it is parsed from
 * INI files and the environment, and how it is printed back. */

#include <assert.h>
#include <dirent.h>
#include <ini.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>

#include "conf.h"
#include "device.h"
#include "fiscal-day.h"
#include "receipt.h"
#include "log.h"

typedef enum ConfigType {
        CONFIG_STRING,     /* any text, empty allowed where the default is NULL */
        CONFIG_URL,        /* http:// or https:// */
        CONFIG_PATH,       /* absolute path */
        CONFIG_TIMESPAN,   /* usec_t */
        CONFIG_SIZE,       /* uint64_t bytes */
        CONFIG_UNSIGNED,   /* unsigned */
        CONFIG_LOG_LEVEL,  /* int syslog level */
        CONFIG_LISTEN,     /* host:port */
        CONFIG_BUS,        /* system|user|none|address */
        CONFIG_DRIVER,     /* a known device driver */
        CONFIG_TAXATIONS,  /* taxation systems (FFD tag 1055 names), separated by commas or spaces */
        CONFIG_AUTO_CLOSE, /* off, 24h or HH:MM */
        CONFIG_CASHIER,    /* a cashier's name as tag 1021 takes it */
        CONFIG_INN,        /* an INN with a valid checksum (a cashier's: 12 digits) */
        CONFIG_UNKNOWN_FIELDS, /* reject or ignore */
        CONFIG_CREDENTIAL, /* a systemd credential's name, or an absolute path */
        CONFIG_BOOLEAN,    /* bool: yes/no, true/false, on/off, 1/0 */
} ConfigType;

typedef struct ConfigItem {
        const char *section;
        const char *key;
        ConfigType type;
        size_t offset;
        const char *def; /* parsed like a file value; NULL: unset */
        uint64_t min, max;
        const char *env; /* the prototype's environment variable, if any */
} ConfigItem;

#define C(field) offsetof(Config, field)
#define NOLIMIT 0, UINT64_MAX

static const ConfigItem config_items[] = {
        { "Adapter", "Id", CONFIG_STRING, C(adapter_id), NULL, 0, 64, NULL },
        { "Adapter", "LogLevel", CONFIG_LOG_LEVEL, C(log_level), "info", NOLIMIT, NULL },

        { "HTTP", "Listen", CONFIG_LISTEN, C(http_listen), "127.0.0.1:8000", NOLIMIT, NULL },
        { "HTTP", "PosToken", CONFIG_CREDENTIAL, C(http_pos_token), "pos-token", NOLIMIT, NULL },
        { "HTTP", "AdminToken", CONFIG_CREDENTIAL, C(http_admin_token), "admin-token", NOLIMIT, NULL },
        { "HTTP", "TLSCertificate", CONFIG_CREDENTIAL, C(http_tls_certificate), "tls-certificate", NOLIMIT,
          NULL },
        { "HTTP", "TLSKey", CONFIG_CREDENTIAL, C(http_tls_key), "tls-key", NOLIMIT, NULL },
        { "HTTP", "AllowInsecure", CONFIG_BOOLEAN, C(http_allow_insecure), "no", NOLIMIT, NULL },
        { "HTTP", "MaxBodySize", CONFIG_SIZE, C(http_max_body_size), "256K", 1024, 64ULL << 20, NULL },
        { "HTTP", "MaxConnections", CONFIG_UNSIGNED, C(http_max_connections), "256", 1, 65536, NULL },
        { "HTTP", "MaxConnectionsPerAddress", CONFIG_UNSIGNED, C(http_max_connections_per_address), "64", 1,
          65536, NULL },
        { "HTTP", "HeaderTimeout", CONFIG_TIMESPAN, C(http_header_timeout), "10s", USEC_PER_SEC,
          USEC_PER_HOUR, NULL },
        { "HTTP", "BodyTimeout", CONFIG_TIMESPAN, C(http_body_timeout), "30s", USEC_PER_SEC, USEC_PER_HOUR,
          NULL },
        { "HTTP", "IdleTimeout", CONFIG_TIMESPAN, C(http_idle_timeout), "15s", USEC_PER_SEC, USEC_PER_HOUR,
          NULL },
        /* Deprecated: before the three above, one timeout for all. */
        { "HTTP", "ConnectionTimeout", CONFIG_TIMESPAN, C(http_connection_timeout), NULL, USEC_PER_SEC,
          USEC_PER_HOUR, NULL },
        { "HTTP", "MaxHeaderSize", CONFIG_SIZE, C(http_max_header_size), "16K", 1024, 1ULL << 20, NULL },

        { "Buffer", "Path", CONFIG_PATH, C(buffer_path), NULL, NOLIMIT, "BUFFER_DB_PATH" },
        { "Buffer", "Capacity", CONFIG_UNSIGNED, C(buffer_capacity), "200", 1, 10000000, NULL },
        { "Buffer", "MaxItems", CONFIG_UNSIGNED, C(buffer_max_items), "1000", 1, 100000, NULL },
        { "Buffer", "MinFreeDisk", CONFIG_SIZE, C(buffer_min_free_disk), "64M", NOLIMIT, NULL },
        { "Buffer", "SyncedRetention", CONFIG_TIMESPAN, C(buffer_synced_retention), "7d", USEC_PER_HOUR,
          USEC_INFINITY, NULL },
        { "Buffer", "DeadLetterRetention", CONFIG_TIMESPAN, C(buffer_dead_letter_retention), "90d",
          USEC_PER_DAY, USEC_INFINITY, NULL },

        { "Device", "Driver", CONFIG_DRIVER, C(device_driver), "emulator", NOLIMIT, NULL },
        { "Device", "Timeout", CONFIG_TIMESPAN, C(device_timeout), "10s", 100 * USEC_PER_MSEC,
          10 * USEC_PER_MINUTE, NULL },
        { "Device", "ResponseTimeout", CONFIG_TIMESPAN, C(device_response_timeout), "7s", 0,
          10 * USEC_PER_MINUTE, NULL },
        { "Device", "PrintLatencyMin", CONFIG_TIMESPAN, C(device_print_latency_min), "200ms", 0,
          USEC_PER_MINUTE, NULL },
        { "Device", "PrintLatencyMax", CONFIG_TIMESPAN, C(device_print_latency_max), "500ms", 0,
          USEC_PER_MINUTE, NULL },
        { "Device", "Serial", CONFIG_STRING, C(device_serial), "0000000000000001", 1, 20, NULL },
        { "Device", "FnNumber", CONFIG_STRING, C(device_fn_number), "9999078900000001", 16, 16, NULL },
        { "Device", "RegistrationNumber", CONFIG_STRING, C(device_registration_number), "0000000001000001",
          1, 20, NULL },
        { "Device", "Inn", CONFIG_STRING, C(device_inn), "7700000000", 10, 12, NULL },
        { "Device", "Taxation", CONFIG_TAXATIONS, C(device_taxation), "osn", NOLIMIT, NULL },
        { "Device", "Cashier", CONFIG_CASHIER, C(device_cashier), NULL, NOLIMIT, NULL },
        { "Device", "CashierInn", CONFIG_INN, C(device_cashier_inn), NULL, NOLIMIT, NULL },
        { "Device", "AutoCloseShift", CONFIG_AUTO_CLOSE, C(device_auto_close_shift), "off", NOLIMIT, NULL },
        { "Device", "StuckAfter", CONFIG_TIMESPAN, C(device_stuck_after), "60s", USEC_PER_SEC, USEC_PER_DAY,
          NULL },
        { "Device", "StatusInterval", CONFIG_TIMESPAN, C(device_status_interval), "60s", USEC_PER_SEC,
          USEC_PER_HOUR, NULL },
        { "Device", "URL", CONFIG_URL, C(device_url), "http://127.0.0.1:16732", NOLIMIT, NULL },
        { "Device", "AuthFile", CONFIG_PATH, C(device_auth_file), NULL, NOLIMIT, NULL },

        { "Intake", "UnknownFields", CONFIG_UNKNOWN_FIELDS, C(intake_unknown_fields), "reject", NOLIMIT, NULL },

        { "OFD", "URL", CONFIG_URL, C(ofd_url), "http://localhost:9000", NOLIMIT, "OFD_BASE_URL" },
        { "OFD", "Timeout", CONFIG_TIMESPAN, C(ofd_timeout), "10s", 100 * USEC_PER_MSEC, 10 * USEC_PER_MINUTE,
          "OFD_TIMEOUT" },
        { "OFD", "TokenFile", CONFIG_PATH, C(ofd_token_file), NULL, NOLIMIT, NULL },

        { "Heartbeat", "URL", CONFIG_URL, C(heartbeat_url), "http://localhost:8069/api/v1/kkt/heartbeat",
          NOLIMIT, "HEARTBEAT_URL" },
        { "Heartbeat", "Interval", CONFIG_TIMESPAN, C(heartbeat_interval), "30s", 100 * USEC_PER_MSEC,
          USEC_PER_DAY, "HEARTBEAT_INTERVAL" },
        { "Heartbeat", "Timeout", CONFIG_TIMESPAN, C(heartbeat_timeout), "5s", 100 * USEC_PER_MSEC,
          10 * USEC_PER_MINUTE, "HEARTBEAT_TIMEOUT" },
        { "Heartbeat", "OnlineThreshold", CONFIG_UNSIGNED, C(heartbeat_online_threshold), "2", 1, 100, NULL },
        { "Heartbeat", "OfflineThreshold", CONFIG_UNSIGNED, C(heartbeat_offline_threshold), "3", 1, 100, NULL },
        { "Heartbeat", "TokenFile", CONFIG_PATH, C(heartbeat_token_file), NULL, NOLIMIT, NULL },

        { "Sync", "Interval", CONFIG_TIMESPAN, C(sync_interval), "10s", 100 * USEC_PER_MSEC, USEC_PER_DAY, NULL },
        { "Sync", "BatchSize", CONFIG_UNSIGNED, C(sync_batch_size), "50", 1, 10000, NULL },
        { "Sync", "MaxInFlight", CONFIG_UNSIGNED, C(sync_max_in_flight), "6", 1, 6, NULL },
        { "Sync", "InitialBackoff", CONFIG_TIMESPAN, C(sync_initial_backoff), "5s", 10 * USEC_PER_MSEC,
          USEC_PER_DAY, NULL },
        { "Sync", "MaxBackoff", CONFIG_TIMESPAN, C(sync_max_backoff), "300s", 10 * USEC_PER_MSEC, USEC_PER_DAY,
          NULL },
        { "Sync", "MaxAttempts", CONFIG_UNSIGNED, C(sync_max_attempts), "20", 1, 1000, NULL },
        { "Sync", "FailureThreshold", CONFIG_UNSIGNED, C(sync_failure_threshold), "5", 1, 1000, NULL },
        { "Sync", "OpenTimeout", CONFIG_TIMESPAN, C(sync_open_timeout), "60s", 10 * USEC_PER_MSEC, USEC_PER_DAY,
          NULL },
        { "Sync", "CloseAfter", CONFIG_UNSIGNED, C(sync_close_after), "2", 1, 1000, NULL },

        { "Bus", "Address", CONFIG_BUS, C(bus_address), "system", NOLIMIT, NULL },
};

static const char *config_driver_list(void) {
        static char list[128];

        if (!list[0])
                for (const char *const *d = device_driver_names(); *d; d++) {
                        if (list[0])
                                strncat(list, ", ", sizeof list - strlen(list) - 1);
                        strncat(list, *d, sizeof list - strlen(list) - 1);
                }
        return list;
}

int taxations_from_string(const char *s, unsigned *ret) {
        _cleanup_free_ char *copy = NULL;
        unsigned bits = 0;
        char *saveptr = NULL;

        copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        for (char *w = strtok_r(copy, ", \t", &saveptr); w; w = strtok_r(NULL, ", \t", &saveptr)) {
                Taxation t = taxation_from_string(w);

                if ((int) t < 0)
                        return -EINVAL;
                bits |= (unsigned) t;
        }
        if (bits == 0)
                return -EINVAL;
        *ret = bits;
        return 0;
}

static bool config_type_is_string(ConfigType t) {
        return !IN_SET(t, CONFIG_TIMESPAN, CONFIG_SIZE, CONFIG_UNSIGNED, CONFIG_LOG_LEVEL, CONFIG_BOOLEAN);
}

static int config_error(char **ret_error, const char *source, unsigned line, const ConfigItem *item,
                        const char *section, const char *key, const char *value, const char *format, ...)
        _printf_(8, 9);

static int config_error(char **ret_error, const char *source, unsigned line, const ConfigItem *item,
                        const char *section, const char *key, const char *value, const char *format, ...) {
        _cleanup_free_ char *what = NULL, *where = NULL;
        va_list ap;

        va_start(ap, format);
        if (vasprintf(&what, format, ap) < 0)
                what = NULL;
        va_end(ap);

        if (line > 0) {
                if (asprintf(&where, "%s:%u", source, line) < 0)
                        where = NULL;
        } else if (!(where = strdup(source)))
                return -ENOMEM;

        if (ret_error) {
                int r;
                free(*ret_error);
                if (item && item->env && streq(source, "environment"))
                        r = asprintf(ret_error, "%s: %s=%s: %s", strna(where), item->env, value, strna(what));
                else if (key)
                        r = asprintf(ret_error, "%s: [%s] %s=%s: %s", strna(where), section, key, strempty(value),
                                     strna(what));
                else
                        r = asprintf(ret_error, "%s: %s", strna(where), strna(what));
                if (r < 0)
                        *ret_error = NULL;
        }
        return -EINVAL;
}

static const ConfigItem *config_find(const char *section, const char *key, bool *ret_section_known) {
        bool known = false;

        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                if (strcasecmp(config_items[i].section, section) != 0)
                        continue;
                known = true;
                if (key && strcasecmp(config_items[i].key, key) == 0) {
                        if (ret_section_known)
                                *ret_section_known = true;
                        return &config_items[i];
                }
        }
        if (ret_section_known)
                *ret_section_known = known;
        return NULL;
}

static int parse_unsigned64(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (isempty(s) || *s == '-' || *s == '+' || *s == ' ')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (errno != 0 || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

static bool listen_address_valid(const char *s) {
        const char *colon = strrchr(s, ':');
        uint64_t port;

        if (!colon || colon == s)
                return false;
        if (parse_unsigned64(colon + 1, &port) < 0 || port == 0 || port > 65535)
                return false;
        if (s[0] == '[') /* [::1]:8000 */
                return colon[-1] == ']';
        return true;
}

/* A file name inside $CREDENTIALS_DIRECTORY as LoadCredential= names it, or an absolute path. */
static bool credential_valid(const char *s) {
        if (s[0] == '/')
                return true;
        if (strlen(s) > 255 || streq(s, ".") || streq(s, ".."))
                return false;
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p <= ' ' || *p == '/' || *p == 0x7f)
                        return false;
        return true;
}

static int boolean_from_string(const char *s) {
        static const char *const yes[] = { "yes", "true", "on", "1" };
        static const char *const no[] = { "no", "false", "off", "0" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0)
                        return 1;
                if (strcasecmp(s, no[i]) == 0)
                        return 0;
        }
        return -EINVAL;
}

static bool url_valid(const char *s) {
        const char *rest = startswith(s, "http://") ?: startswith(s, "https://");

        return rest && *rest && !strpbrk(s, " \t\r\n");
}

/* Parses `value` for `item` into `c`. Empty resets to the default. */
static int config_assign(Config *c, const ConfigItem *item, const char *value, const char *source,
                         unsigned line, char **ret_error) {
        void *p = (uint8_t *) c + item->offset;
        char buf[FORMAT_TIMESPAN_MAX];
        uint64_t u;
        int r;

        if (isempty(value)) {
                if (!item->def) {
                        if (item->type == CONFIG_TIMESPAN) {
                                *(usec_t *) p = 0;
                                return 0;
                        }
                        assert(config_type_is_string(item->type));
                        free(*(char **) p);
                        *(char **) p = NULL;
                        return 0;
                }
                value = item->def;
        }

#define FAIL(...) config_error(ret_error, source, line, item, item->section, item->key, value, __VA_ARGS__)

        switch (item->type) {
        case CONFIG_STRING:
                if (strlen(value) < item->min || strlen(value) > item->max)
                        return FAIL("length must be %" PRIu64 "..%" PRIu64 " characters", item->min, item->max);
                return free_and_strdup(p, value);

        case CONFIG_URL:
                if (!url_valid(value))
                        return FAIL("not an http:// or https:// URL");
                return free_and_strdup(p, value);

        case CONFIG_PATH:
                if (value[0] != '/')
                        return FAIL("not an absolute path");
                return free_and_strdup(p, value);

        case CONFIG_TIMESPAN:
                r = parse_timespan(value, &u);
                if (r == -ERANGE)
                        return FAIL("time span too large");
                if (r < 0)
                        return FAIL("not a time span (expected e.g. 500ms, 30s, 5min)");
                if (u < item->min)
                        return FAIL("must be at least %s", format_timespan(buf, sizeof buf, item->min));
                if (u > item->max)
                        return FAIL("must be at most %s", format_timespan(buf, sizeof buf, item->max));
                *(usec_t *) p = u;
                return 0;

        case CONFIG_SIZE:
                r = parse_size(value, &u);
                if (r == -ERANGE)
                        return FAIL("size too large");
                if (r < 0)
                        return FAIL("not a size (expected e.g. 512, 64K, 1M)");
                if (u < item->min)
                        return FAIL("must be at least %s", format_size(buf, sizeof buf, item->min));
                if (u > item->max)
                        return FAIL("must be at most %s", format_size(buf, sizeof buf, item->max));
                *(uint64_t *) p = u;
                return 0;

        case CONFIG_UNSIGNED:
                r = parse_unsigned64(value, &u);
                if (r < 0)
                        return FAIL("not a non-negative integer");
                if (u < item->min || u > item->max)
                        return FAIL("must be in the range %" PRIu64 "..%" PRIu64, item->min, item->max);
                *(unsigned *) p = (unsigned) u;
                return 0;

        case CONFIG_LOG_LEVEL:
                r = log_level_from_string(value);
                if (r < 0)
                        return FAIL("not a log level (emerg, alert, crit, err, warning, notice, info, debug)");
                *(int *) p = r;
                return 0;

        case CONFIG_LISTEN:
                if (!listen_address_valid(value))
                        return FAIL("not an address with port (expected e.g. 127.0.0.1:8000 or [::1]:8000)");
                return free_and_strdup(p, value);

        case CONFIG_BUS:
                if (!streq(value, "system") && !streq(value, "user") && !streq(value, "none") &&
                    !strchr(value, ':'))
                        return FAIL("not a bus (expected system, user, none or a D-Bus address)");
                return free_and_strdup(p, value);

        case CONFIG_DRIVER:
                for (const char *const *d = device_driver_names(); *d; d++)
                        if (streq(value, *d))
                                return free_and_strdup(p, value);
                return FAIL("unknown driver (known: %s)", config_driver_list());

        case CONFIG_TAXATIONS: {
                unsigned bits;

                r = taxations_from_string(value, &bits);
                if (r < 0)
                        return FAIL("not a list of taxation systems (osn, usn_income, usn_income_outcome, esn, "
                                    "patent)");
                return free_and_strdup(p, value);
        }

        case CONFIG_AUTO_CLOSE: {
                AutoClose a;

                if (auto_close_from_string(value, &a) < 0)
                        return FAIL("expected off, 24h or a time of day HH:MM");
                return free_and_strdup(p, value);
        }

        case CONFIG_CASHIER:
        case CONFIG_INN: {
                const char *why = NULL;

                r = item->type == CONFIG_CASHIER ? receipt_check_cashier_name(value, &why)
                                                 : receipt_check_inn(value, &why);
                if (r < 0)
                        return FAIL("%s", why ?: "not valid");
                return free_and_strdup(p, value);
        }

        case CONFIG_UNKNOWN_FIELDS:
                if (!streq(value, "reject") && !streq(value, "ignore"))
                        return FAIL("expected reject or ignore");
                return free_and_strdup(p, value);

        case CONFIG_CREDENTIAL:
                if (!credential_valid(value))
                        return FAIL("not a credential name (a file name without '/' or spaces) or an "
                                    "absolute path");
                return free_and_strdup(p, value);

        case CONFIG_BOOLEAN:
                r = boolean_from_string(value);
                if (r < 0)
                        return FAIL("not a boolean (expected yes or no)");
                *(bool *) p = r;
                return 0;
        }
#undef FAIL
        assert(false);
        return -EINVAL;
}

int config_set(Config *c, const char *section, const char *key, const char *value, const char *source,
               unsigned line, char **ret_error) {
        const ConfigItem *item;
        bool section_known;

        item = config_find(section, key, &section_known);
        if (!item) {
                if (!section_known)
                        return config_error(ret_error, source, line, NULL, section, key, value,
                                            "unknown section [%s]", section);
                return config_error(ret_error, source, line, NULL, section, key, value, "unknown key");
        }
        return config_assign(c, item, value, source, line, ret_error);
}

Config *config_free(Config *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                if (config_type_is_string(config_items[i].type))
                        free(*(char **) ((uint8_t *) c + config_items[i].offset));
        }
        return mfree(c);
}

int config_new(Config **ret) {
        _cleanup_(config_freep) Config *c = NULL;
        int r;

        c = new0(Config, 1);
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                r = config_assign(c, &config_items[i], NULL, "defaults", 0, NULL);
                if (r < 0)
                        return r; /* a bad built-in default is a programming error caught by the tests */
        }
        *ret = TAKE_PTR(c);
        return 0;
}

typedef struct ParseContext {
        Config *config;
        const char *source;
        char *error;
        int r;
        unsigned line;
} ParseContext;

static int config_ini_handler(void *userdata, const char *section, const char *key, const char *value) {
        ParseContext *ctx = userdata;

        if (ctx->r < 0)
                return 1; /* report only the first problem */
        /* inih returns the first failing line: remember our message for it, the line comes back from inih. */
        ctx->r = config_set(ctx->config, section, key, value, ctx->source, 0, &ctx->error);
        return ctx->r >= 0;
}

static int config_parse_file(Config *c, const char *path, bool missing_ok, char **ret_error) {
        _cleanup_fclose_ FILE *f = NULL;
        ParseContext ctx = { .config = c, .source = path };
        int line;

        f = fopen(path, "re");
        if (!f) {
                int r = -errno;
                if (r == -ENOENT && missing_ok)
                        return 0;
                if (ret_error && asprintf(ret_error, "%s: cannot read: %s", path, strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }

        struct stat st;
        if (fstat(fileno(f), &st) < 0 || S_ISDIR(st.st_mode)) {
                int r = S_ISDIR(st.st_mode) ? -EISDIR : -errno;
                if (ret_error && asprintf(ret_error, "%s: cannot read: %s", path, strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }

        line = ini_parse_file(f, config_ini_handler, &ctx);
        if (line == 0 && ferror(f))
                line = -1;
        if (line == 0)
                return 0;
        if (line < 0) {
                if (ret_error && asprintf(ret_error, "%s: cannot read", path) < 0)
                        *ret_error = NULL;
                free(ctx.error);
                return -EIO;
        }
        if (ret_error) {
                free(*ret_error);
                *ret_error = NULL;
                /* Our message starts with "<path>: "; insert the line number inih found. */
                if (ctx.error && startswith(ctx.error, path)) {
                        if (asprintf(ret_error, "%s:%d%s", path, line, ctx.error + strlen(path)) < 0)
                                *ret_error = NULL;
                } else if (asprintf(ret_error, "%s:%d: syntax error (expected [Section] or Key=value)", path,
                                    line) < 0)
                        *ret_error = NULL;
        }
        free(ctx.error);
        return -EINVAL;
}

static int dropin_filter(const struct dirent *de) {
        size_t l = strlen(de->d_name);

        return de->d_name[0] != '.' && l > 5 && streq(de->d_name + l - 5, ".conf");
}

static int config_parse_dropins(Config *c, const char *main_path, char **ret_error) {
        _cleanup_free_ char *dir = NULL;
        struct dirent **entries = NULL;
        int n, r = 0;

        if (asprintf(&dir, "%s.d", main_path) < 0)
                return -ENOMEM;

        n = scandir(dir, &entries, dropin_filter, alphasort);
        if (n < 0) {
                if (errno == ENOENT || errno == ENOTDIR)
                        return 0;
                r = -errno;
                if (ret_error && asprintf(ret_error, "%s: cannot read: %s", dir, strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }

        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *p = NULL;

                if (r >= 0) {
                        if (asprintf(&p, "%s/%s", dir, entries[i]->d_name) < 0)
                                r = -ENOMEM;
                        else
                                r = config_parse_file(c, p, false, ret_error);
                }
                free(entries[i]);
        }
        free(entries);
        return r;
}

static int config_parse_environment(Config *c, char **ret_error) {
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                const ConfigItem *item = &config_items[i];
                const char *v;
                int r;

                if (!item->env || !(v = getenv(item->env)))
                        continue;
                r = config_assign(c, item, v, "environment", 0, ret_error);
                if (r < 0)
                        return r;
        }
        return 0;
}

static const char *const http_timeout_keys[] = { "HeaderTimeout", "BodyTimeout", "IdleTimeout" };

static usec_t *config_http_timeout(Config *c, const char *key) {
        const ConfigItem *item = config_find("HTTP", key, NULL);

        assert(item && item->type == CONFIG_TIMESPAN);
        return (usec_t *) ((uint8_t *) c + item->offset);
}

int config_load(const char *path, Config **ret, char **ret_error) {
        _cleanup_(config_freep) Config *c = NULL;
        const char *main_path = path ?: CONFIG_MAIN_FILE;
        int r;

        r = config_new(&c);
        if (r < 0)
                return r;

        /* Marked "not given" (no file can set this), to tell which follow [HTTP] ConnectionTimeout=. */
        for (size_t i = 0; i < ELEMENTSOF(http_timeout_keys); i++)
                *config_http_timeout(c, http_timeout_keys[i]) = USEC_INFINITY;

        /* An explicitly named file must exist; the default one may be absent (all defaults apply). */
        r = config_parse_file(c, main_path, !path, ret_error);
        if (r < 0)
                return r;
        r = config_parse_dropins(c, main_path, ret_error);
        if (r < 0)
                return r;
        r = config_parse_environment(c, ret_error);
        if (r < 0)
                return r;

        /* The deprecated ConnectionTimeout= stands for each of the three that no file gave; an explicit one
         * wins, whichever comes first in the files. */
        for (size_t i = 0; i < ELEMENTSOF(http_timeout_keys); i++) {
                usec_t *t = config_http_timeout(c, http_timeout_keys[i]);

                if (*t != USEC_INFINITY)
                        continue;
                if (c->http_connection_timeout > 0)
                        *t = c->http_connection_timeout;
                else {
                        r = config_assign(c, config_find("HTTP", http_timeout_keys[i], NULL), NULL,
                                          "defaults", 0, ret_error);
                        if (r < 0)
                                return r;
                }
        }

        if (!c->buffer_path) {
                /* systemd's StateDirectory= tells us where our state lives; else the compiled-in default. */
                const char *state = getenv("STATE_DIRECTORY");
                size_t l = state ? strcspn(state, ":") : 0;

                if (l > 0)
                        r = asprintf(&c->buffer_path, "%.*s/buffer.db", (int) l, state);
                else
                        r = asprintf(&c->buffer_path, "%s/buffer.db", PKGSTATEDIR);
                if (r < 0) {
                        c->buffer_path = NULL;
                        return -ENOMEM;
                }
        }

        if (c->device_print_latency_min > c->device_print_latency_max) {
                free(*ret_error);
                if (asprintf(ret_error, "%s: [Device] PrintLatencyMin= must not exceed PrintLatencyMax=",
                             main_path) < 0)
                        *ret_error = NULL;
                return -EINVAL;
        }
        if (c->sync_initial_backoff > c->sync_max_backoff) {
                free(*ret_error);
                if (asprintf(ret_error, "%s: [Sync] InitialBackoff= must not exceed MaxBackoff=", main_path) < 0)
                        *ret_error = NULL;
                return -EINVAL;
        }

        *ret = TAKE_PTR(c);
        return 0;
}

int config_dump(const Config *c, FILE *f) {
        const char *section = NULL;
        char buf[FORMAT_TIMESPAN_MAX];

        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                const ConfigItem *item = &config_items[i];
                const void *p = (const uint8_t *) c + item->offset;

                if (!streq_ptr(section, item->section)) {
                        fprintf(f, "%s[%s]\n", section ? "\n" : "", item->section);
                        section = item->section;
                }
                fprintf(f, "%s=", item->key);
                switch (item->type) {
                case CONFIG_TIMESPAN:
                        /* Unset (0 where there is no default) is written empty, which reads back unset. */
                        if (item->def || *(const usec_t *) p != 0)
                                fputs(format_timespan(buf, sizeof buf, *(const usec_t *) p), f);
                        break;
                case CONFIG_SIZE:
                        fputs(format_size(buf, sizeof buf, *(const uint64_t *) p), f);
                        break;
                case CONFIG_UNSIGNED:
                        fprintf(f, "%u", *(const unsigned *) p);
                        break;
                case CONFIG_LOG_LEVEL:
                        fputs(log_level_to_string(*(const int *) p), f);
                        break;
                case CONFIG_BOOLEAN:
                        fputs(*(const bool *) p ? "yes" : "no", f);
                        break;
                default:
                        fputs(strempty(*(char *const *) p), f);
                        break;
                }
                fputc('\n', f);
        }
        return ferror(f) ? -EIO : 0;
}
