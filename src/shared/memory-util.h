/* SPDX-License-Identifier: MIT */
#pragma once

/* Memory that held a secret: overwritten before it is freed, in a way the compiler may not drop. */

#include <stdlib.h>
#include <string.h>

/* Overwrites a NUL-terminated secret and frees it; accepts NULL; returns NULL. */
static inline char *erase_and_free(char *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
        return NULL;
}

static inline void erase_and_freep(char **p) {
        *p = erase_and_free(*p);
}

/* Overwrites n bytes that held a secret, the buffer staying allocated. */
static inline void erase(void *p, size_t n) {
        if (p)
                explicit_bzero(p, n);
}
