/* SPDX-License-Identifier: MIT */
#pragma once

/* Driving a real sd-event loop from a unit test: until a condition holds, with a bound. */

#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-event.h>

#include "tests.h"
#include "time-util.h"

/* How long TEST_RUN_UNTIL() waits before it fails the test. */
#define TEST_RUN_UNTIL_MAX (30 * USEC_PER_SEC)

/* Runs `event` until `cond` holds; after TEST_RUN_UNTIL_MAX the test fails, naming the condition. */
#define TEST_RUN_UNTIL(event, cond)                                                                     \
        do {                                                                                            \
                usec_t _deadline_ = now(CLOCK_MONOTONIC) + TEST_RUN_UNTIL_MAX;                          \
                while (!(cond)) {                                                                       \
                        if (now(CLOCK_MONOTONIC) >= _deadline_) {                                       \
                                fprintf(stderr, "%s:%d: gave up waiting for %s\n", __FILE__, __LINE__,  \
                                        #cond);                                                         \
                                exit(EXIT_FAILURE);                                                     \
                        }                                                                               \
                        ASSERT_OK(sd_event_run((event), 100 * USEC_PER_MSEC));                          \
                }                                                                                       \
        } while (0)
