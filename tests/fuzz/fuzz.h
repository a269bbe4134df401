/* SPDX-License-Identifier: MIT */
#pragma once

/* What every fuzz target shares: libFuzzer's entry point and a check that holds with NDEBUG as well, so a
 * broken property is a crash the fuzzer keeps (and fuzz-main.c replays). */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(expr)                                                                        \
        do {                                                                                    \
                if (!(expr)) {                                                                  \
                        fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, #expr); \
                        abort();                                                                \
                }                                                                               \
        } while (0)
