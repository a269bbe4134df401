/* SPDX-License-Identifier: MIT */
#pragma once

/* tests/fake-upstream.py as a child of a C test: the fake OFD and ERP with their failure modes. */

#include <json-c/json.h>
#include <stdint.h>
#include <sys/types.h>

extern pid_t fake_pid;     /* -1 when not running */
extern unsigned fake_port; /* where it listens on 127.0.0.1 */

/* Exits 77 (skipped) when /usr/bin/python3 is missing. */
void fake_start(void);
/* Closes its stdin, which makes it exit, and reaps it. */
void fake_stop(void);

/* A request to its /_control API that must answer 200; the JSON answer is the caller's to put. */
json_object *fake_control(const char *method, const char *path, const char *body);
/* POST /_control/mode with a JSON body such as {"target": "ofd", "mode": "fail"}. */
void fake_mode(const char *json);
void fake_reset(void);
/* The "ofd" or "erp" part of /_control/state; *ret_root is the caller's to put. */
json_object *fake_state(const char *target, json_object **ret_root);
/* One integer of that part, e.g. fake_int("ofd", "count"). */
int64_t fake_int(const char *target, const char *key);
