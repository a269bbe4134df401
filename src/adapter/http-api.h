/* SPDX-License-Identifier: MIT */
#pragma once

/* The HTTP API of kkt-adapter (the prototype's v1 paths): the route table and its handlers. Like
 * manager-bus-object.c for D-Bus, it holds no state of its own: it renders what the modules know. The routes'
 * userdata is the Modules (modules.h). */

#include "http.h"

extern const HttpRoute http_api_routes[];
