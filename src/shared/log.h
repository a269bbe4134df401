/* SPDX-License-Identifier: MIT */
#pragma once

/* Logging to the journal (native protocol, structured fields) when our stderr is the journal's stream,
 * otherwise to stderr with "<N>" priority prefixes that journald and systemd understand. */

#include <stdbool.h>
#include <syslog.h>

#include "macro.h"

typedef enum LogTarget {
        LOG_TARGET_AUTO,
        LOG_TARGET_CONSOLE,
        LOG_TARGET_JOURNAL,
} LogTarget;

/* One structured journal field; lists of them end with {}. */
typedef struct LogField {
        const char *key;
        const char *value;
} LogField;

#define LOG_FIELDS(...) ((const LogField[]) { __VA_ARGS__, {} })

void log_setup(LogTarget target);
void log_set_max_level(int level);
int log_get_max_level(void);
LogTarget log_get_target(void);
void log_set_identifier(const char *identifier);

int log_level_from_string(const char *s);
const char *log_level_to_string(int level);

/* True when stderr is the stream journald gave us, i.e. $JOURNAL_STREAM names our stderr's device:inode. */
bool log_stderr_is_journal(void);

/* Returns -abs(error), so that "return log_error_errno(r, ...)" passes the error on. */
int log_internal(int level, int error, const char *file, int line, const char *func, const char *format, ...)
        _printf_(6, 7);
int log_struct_internal(int level, int error, const char *file, int line, const char *func,
                        const char *message_id, const LogField *fields, const char *format, ...)
        _printf_(8, 9);

#define log_full_errno(level, error, ...)                                                               \
        ({                                                                                              \
                int _level_ = (level), _e_ = (error);                                                   \
                _level_ <= log_get_max_level()                                                          \
                        ? log_internal(_level_, _e_, __FILE__, __LINE__, __func__, __VA_ARGS__)         \
                        : -abs(_e_);                                                                    \
        })

#define log_full(level, ...) ((void) log_full_errno((level), 0, __VA_ARGS__))

#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(error, ...) log_full_errno(LOG_DEBUG, error, __VA_ARGS__)
#define log_info_errno(error, ...) log_full_errno(LOG_INFO, error, __VA_ARGS__)
#define log_notice_errno(error, ...) log_full_errno(LOG_NOTICE, error, __VA_ARGS__)
#define log_warning_errno(error, ...) log_full_errno(LOG_WARNING, error, __VA_ARGS__)
#define log_error_errno(error, ...) log_full_errno(LOG_ERR, error, __VA_ARGS__)

#define log_oom() log_error_errno(ENOMEM, "Out of memory.")

/* A message with a MESSAGE_ID (may be NULL) and extra fields (may be NULL), e.g.
 *     log_struct(LOG_NOTICE, MESSAGE_ID_DEAD_LETTERED, LOG_FIELDS({"RECEIPT_ID", id}), "Receipt %s ...", id); */
#define log_struct_errno(level, error, message_id, fields, ...)                                        \
        ({                                                                                              \
                int _level_ = (level), _e_ = (error);                                                   \
                _level_ <= log_get_max_level()                                                          \
                        ? log_struct_internal(_level_, _e_, __FILE__, __LINE__, __func__, message_id,   \
                                              fields, __VA_ARGS__)                                      \
                        : -abs(_e_);                                                                    \
        })
#define log_struct(level, message_id, fields, ...)                                                      \
        ((void) log_struct_errno(level, 0, message_id, fields, __VA_ARGS__))

/* At most `burst` messages per `interval_usec`; a suppressed count is reported with the next one let
 * through. Used for per-request and per-retry messages. */
typedef struct RateLimit {
        uint64_t interval_usec;
        unsigned burst;
        unsigned num;
        unsigned suppressed;
        uint64_t begin;
} RateLimit;

#define RATELIMIT_INIT(interval, b) ((RateLimit) { .interval_usec = (interval), .burst = (b) })

/* True when the message may be logged; *ret_suppressed (may be NULL) gets how many were dropped before. */
bool ratelimit_below(RateLimit *rl, unsigned *ret_suppressed);
