/* SPDX-License-Identifier: MIT */
#pragma once

/* The HTTP API of kkt-adapter (the prototype's v1 paths): the route table and its handlers. Like
 * manager-bus.c for D-Bus, it holds no state of its own: it renders what the Manager's modules know. */

#include "http.h"

extern const HttpRoute http_api_routes[];
