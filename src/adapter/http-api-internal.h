/* SPDX-License-Identifier: MIT */
#pragma once

/* What the pieces of the HTTP API share: the JSON answer and the handlers http-api-sync.c offers the route
 * table. The routes' userdata is the Modules. */

#include <json-c/json.h>

#include "http.h"

/* Answers with `o` (taking it), integers beyond JavaScript's 2^53 written as strings. */
int api_reply(HttpRequest *req, unsigned status, json_object *o);

/* http-api-sync.c: the OFD leg. */
int api_sync_now(HttpRequest *req, void *userdata);
int api_worker_status(HttpRequest *req, void *userdata);
int api_dlq_list(HttpRequest *req, void *userdata);
int api_dlq_retry(HttpRequest *req, void *userdata);
int api_dlq_resolve(HttpRequest *req, void *userdata);
int api_breaker_reset(HttpRequest *req, void *userdata);
