/* SPDX-License-Identifier: MIT */
#pragma once

/* Our own small toolbox: cleanup attributes, ownership transfer and allocation helpers.
 * Everything here is header-only and free of any knowledge of the daemon. */

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _sentinel_ __attribute__((sentinel))
#define _noreturn_ __attribute__((noreturn))
#define _likely_(x) (__builtin_expect(!!(x), 1))
#define _unlikely_(x) (__builtin_expect(!!(x), 0))
#define _fallthrough_ __attribute__((fallthrough))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define CLAMP(x, lo, hi) ((x) < (lo) ? (lo) : ((x) > (hi) ? (hi) : (x)))

/* True when x equals one of the listed values. */
#define IN_SET(x, first, ...)                                                   \
        ({                                                                      \
                const typeof(x) _x_ = (x);                                      \
                const typeof(x) _set_[] = { first, __VA_ARGS__ };               \
                bool _found_ = false;                                           \
                for (size_t _i_ = 0; _i_ < ELEMENTSOF(_set_); _i_++)            \
                        if (_set_[_i_] == _x_) {                                \
                                _found_ = true;                                 \
                                break;                                          \
                        }                                                       \
                _found_;                                                        \
        })

/* Zeroed allocation of n objects of type t; never asks calloc() for zero bytes. */
#define new0(t, n) ((t *) calloc((n) > 0 ? (size_t) (n) : 1, sizeof(t)))
#define new(t, n) ((t *) reallocarray(NULL, (n) > 0 ? (size_t) (n) : 1, sizeof(t)))

/* Hands the pointer over to the caller and leaves NULL behind, so a _cleanup_ does not free it. */
#define TAKE_PTR(p)                                     \
        ({                                              \
                typeof(p) *_pp_ = &(p);                 \
                typeof(p) _p_ = *_pp_;                  \
                *_pp_ = NULL;                           \
                _p_;                                    \
        })

#define TAKE_FD(fd)                                     \
        ({                                              \
                int *_fdp_ = &(fd);                     \
                int _fd_ = *_fdp_;                      \
                *_fdp_ = -1;                            \
                _fd_;                                   \
        })

/* Defines funcp(type *p) calling func(*p) when *p is set, for use with _cleanup_(funcp). */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)         \
        static inline void func##p(type *p) {           \
                if (*p)                                 \
                        func(*p);                       \
        }

static inline void freep(void *p) {
        free(*(void **) p);
}

static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void) close(fd);
                errno = saved;
        }
        return -1;
}

static inline void closep(int *fd) {
        safe_close(*fd);
}

static inline void fclosep(FILE **f) {
        if (*f)
                (void) fclose(*f);
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

static inline bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}

static inline bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return streq(a, b);
}

static inline const char *strempty(const char *s) {
        return s ?: "";
}

static inline const char *strna(const char *s) {
        return s ?: "n/a";
}

static inline bool isempty(const char *s) {
        return !s || !*s;
}

/* Returns the part of s after prefix, or NULL when s does not start with it. */
static inline const char *startswith(const char *s, const char *prefix) {
        size_t l = strlen(prefix);
        return strncmp(s, prefix, l) == 0 ? s + l : NULL;
}

/* Replaces *p with a copy of s (NULL allowed); -ENOMEM on failure, *p unchanged then. */
static inline int free_and_strdup(char **p, const char *s) {
        char *c = NULL;

        if (s) {
                c = strdup(s);
                if (!c)
                        return -ENOMEM;
        }
        free(*p);
        *p = c;
        return 0;
}

static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

/* errno as a negative value, never 0, for paths where a call failed but might not have set errno. */
static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}

#define PTR_TO_UINT64(p) ((uint64_t) (uintptr_t) (p))
#define UINT64_TO_PTR(u) ((void *) (uintptr_t) (u))
