/* SPDX-License-Identifier: MIT */
#pragma once

/* The configuration: its defaults, the INI files (main file, then drop-ins in lexical order), the
 * prototype's environment variables on top, validation with file/line/key messages, and the dump. */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "macro.h"
#include "time-util.h"

typedef struct Config {
        /* [Adapter] */
        char *adapter_id; /* NULL: derived from the machine id */
        int log_level;

        /* [HTTP] */
        char *http_listen;
        /* Each a credential name (in $CREDENTIALS_DIRECTORY) or an absolute path; a credential that was not
         * passed (or is empty) means "not configured". */
        char *http_pos_token;
        char *http_admin_token;
        char *http_tls_certificate;
        char *http_tls_key;
        bool http_allow_insecure; /* serve a non-loopback address without TLS and a POS token */
        uint64_t http_max_body_size;
        unsigned http_max_connections;
        unsigned http_max_connections_per_address;
        usec_t http_connection_timeout; /* 0: unset; deprecated, the three below when they are not given */
        usec_t http_header_timeout;
        usec_t http_body_timeout;
        usec_t http_idle_timeout;
        uint64_t http_max_header_size;

        /* [Buffer] */
        char *buffer_path;
        unsigned buffer_capacity;
        unsigned buffer_max_items;
        uint64_t buffer_min_free_disk;
        usec_t buffer_synced_retention;
        usec_t buffer_dead_letter_retention;

        /* [Device] */
        char *device_driver;
        usec_t device_timeout;
        usec_t device_response_timeout;
        usec_t device_print_latency_min;
        usec_t device_print_latency_max;
        char *device_serial;
        char *device_fn_number;
        char *device_registration_number;
        char *device_inn;
        char *device_taxation;          /* "osn", "usn_income,patent", ...: what the register is registered for */
        char *device_cashier;           /* tag 1021 when a receipt or report names none; NULL: none */
        char *device_cashier_inn;       /* tag 1203; NULL: none */
        char *device_auto_close_shift;  /* "off", "24h" or "HH:MM" */
        usec_t device_stuck_after;
        usec_t device_status_interval;
        char *device_url;               /* a networked register's service (atol-web) */
        char *device_auth_file;         /* its HTTP Basic credential "login:password" (the systemd credential
                                         * "atol-web-auth" first, like the OFD token); NULL: none */

        /* [Intake] */
        char *intake_unknown_fields;    /* "reject" or "ignore" */

        /* [OFD] */
        char *ofd_url;
        usec_t ofd_timeout;
        char *ofd_token_file;

        /* [Heartbeat] */
        char *heartbeat_url;
        usec_t heartbeat_interval;
        usec_t heartbeat_timeout;
        unsigned heartbeat_online_threshold;
        unsigned heartbeat_offline_threshold;
        char *heartbeat_token_file;

        /* [Sync] */
        usec_t sync_interval;
        unsigned sync_batch_size;
        unsigned sync_max_in_flight;
        usec_t sync_initial_backoff;
        usec_t sync_max_backoff;
        unsigned sync_max_attempts;
        unsigned sync_failure_threshold;
        usec_t sync_open_timeout;
        unsigned sync_close_after;

        /* [Bus] */
        char *bus_address; /* "system", "user", "none" or a D-Bus address */
} Config;

#define CONFIG_MAIN_FILE PKGSYSCONFDIR "/kkt-adapter.conf"

Config *config_free(Config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Config *, config_free);

/* A configuration holding every default. */
int config_new(Config **ret);

/* Reads `path` (NULL: CONFIG_MAIN_FILE, which may be missing) and then every "*.conf" in "<path>.d/" in
 * lexical order, later files winning, then the environment overrides. On a bad file, key or value returns
 * -EINVAL (or the errno of an unreadable file) and *ret_error names file, line, key and the problem. */
int config_load(const char *path, Config **ret, char **ret_error);

/* Applies one "[Section] Key=value" as if read from `source` line `line`; for tests and --set style use. */
int config_set(Config *c, const char *section, const char *key, const char *value, const char *source,
               unsigned line, char **ret_error);

/* "osn, patent" -> TAXATION_OSN | TAXATION_PATENT; -EINVAL for an unknown name or an empty list. */
int taxations_from_string(const char *s, unsigned *ret);

/* Writes the effective configuration as a loadable INI file. */
int config_dump(const Config *c, FILE *f);
