/* SPDX-License-Identifier: MIT */
/* Owns where log lines go: the journal's native socket or stderr, and the maximum level. */

#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <time.h>

#include "log.h"
#include "string-table.h"
#include "time-util.h"

/* Written by the loop (SIGHUP reloads the configuration) and read by every thread that logs, the store's
 * writer, reader and checkpointer among them: atomic, or that is a data race. Relaxed is enough: the level
 * guards nothing but whether a line is written, so no other memory needs to be ordered with it, and a
 * thread that sees the new level a little later only writes or skips a line or two more. */
static atomic_int log_max_level = LOG_INFO;
static LogTarget log_target = LOG_TARGET_CONSOLE;
static const char *log_identifier = NULL;

static const char *const log_level_table[] = {
        [LOG_EMERG] = "emerg",   [LOG_ALERT] = "alert",   [LOG_CRIT] = "crit",  [LOG_ERR] = "err",
        [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

DEFINE_STRING_TABLE_LOOKUP_TO_STRING(log_level, int, );

int log_level_from_string(const char *s) {
        int level = string_table_lookup_from_string(log_level_table, ELEMENTSOF(log_level_table), s);

        if (level >= 0)
                return level;
        /* The spellings people type as well. */
        if (streq_ptr(s, "error"))
                return LOG_ERR;
        if (streq_ptr(s, "warn"))
                return LOG_WARNING;
        return -EINVAL;
}

bool log_stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void log_setup(LogTarget target) {
        if (target == LOG_TARGET_AUTO)
                target = log_stderr_is_journal() ? LOG_TARGET_JOURNAL : LOG_TARGET_CONSOLE;
        log_target = target;
}

void log_set_max_level(int level) {
        atomic_store_explicit(&log_max_level, CLAMP(level, LOG_EMERG, LOG_DEBUG), memory_order_relaxed);
}

int log_get_max_level(void) {
        return atomic_load_explicit(&log_max_level, memory_order_relaxed);
}

LogTarget log_get_target(void) {
        return log_target;
}

void log_set_identifier(const char *identifier) {
        log_identifier = identifier;
}

static void write_console(int level, const char *message) {
        /* One write per line, so lines from several threads do not interleave. */
        char buf[LINE_MAX + 16];
        int n = snprintf(buf, sizeof buf, "<%i>%s\n", level, message);

        if (n < 0)
                return;
        if ((size_t) n >= sizeof buf) {
                n = sizeof buf - 1;
                buf[n - 1] = '\n';
        }
        (void) !write(STDERR_FILENO, buf, (size_t) n);
}

static void write_journal(int level, int error, const char *file, int line, const char *func,
                          const char *message_id, const LogField *fields, const char *message) {
        char priority[32], code_file[PATH_MAX + 16], code_line[32], code_func[256], errno_field[32],
                mid[64], ident[128];
        struct iovec iov[64];
        size_t n = 0;
        _cleanup_free_ char *m = NULL;
        char *extra[48];
        size_t n_extra = 0;

        m = malloc(strlen("MESSAGE=") + strlen(message) + 1);
        if (!m)
                return write_console(level, message);
        strcpy(stpcpy(m, "MESSAGE="), message);

#define IOV_STR(s) iov[n++] = (struct iovec) { .iov_base = (char *) (s), .iov_len = strlen(s) }
        IOV_STR(m);
        snprintf(priority, sizeof priority, "PRIORITY=%i", level);
        IOV_STR(priority);
        if (log_identifier) {
                snprintf(ident, sizeof ident, "SYSLOG_IDENTIFIER=%s", log_identifier);
                IOV_STR(ident);
        }
        if (file) {
                snprintf(code_file, sizeof code_file, "CODE_FILE=%s", file);
                snprintf(code_line, sizeof code_line, "CODE_LINE=%i", line);
                snprintf(code_func, sizeof code_func, "CODE_FUNC=%s", func);
                IOV_STR(code_file);
                IOV_STR(code_line);
                IOV_STR(code_func);
        }
        if (error != 0) {
                snprintf(errno_field, sizeof errno_field, "ERRNO=%i", abs(error));
                IOV_STR(errno_field);
        }
        if (message_id) {
                snprintf(mid, sizeof mid, "MESSAGE_ID=%s", message_id);
                IOV_STR(mid);
        }
        for (const LogField *f = fields; f && f->key && n_extra < ELEMENTSOF(extra); f++) {
                if (asprintf(&extra[n_extra], "%s=%s", f->key, strempty(f->value)) < 0)
                        break;
                IOV_STR(extra[n_extra]);
                n_extra++;
        }
#undef IOV_STR

        if (sd_journal_sendv(iov, (int) n) < 0)
                write_console(level, message);
        for (size_t i = 0; i < n_extra; i++)
                free(extra[i]);
}

static int log_dispatch(int level, int error, const char *file, int line, const char *func,
                        const char *message_id, const LogField *fields, const char *format, va_list ap) {
        char message[LINE_MAX];
        int saved_errno = errno;

        /* Make %m print the error we were given. */
        errno = abs(error);
        vsnprintf(message, sizeof message, format, ap);
        errno = saved_errno;

        if (log_target == LOG_TARGET_JOURNAL)
                write_journal(level, error, file, line, func, message_id, fields, message);
        else
                write_console(level, message);

        return -abs(error);
}

int log_internal(int level, int error, const char *file, int line, const char *func, const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = log_dispatch(level, error, file, line, func, NULL, NULL, format, ap);
        va_end(ap);
        return r;
}

int log_struct_internal(int level, int error, const char *file, int line, const char *func,
                        const char *message_id, const LogField *fields, const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = log_dispatch(level, error, file, line, func, message_id, fields, format, ap);
        va_end(ap);
        return r;
}

bool ratelimit_below(RateLimit *rl, unsigned *ret_suppressed) {
        usec_t ts = now(CLOCK_MONOTONIC);

        if (rl->begin == 0 || ts - rl->begin >= rl->interval_usec) {
                if (ret_suppressed)
                        *ret_suppressed = rl->suppressed;
                rl->begin = ts;
                rl->num = 1;
                rl->suppressed = 0;
                return true;
        }
        if (rl->num < rl->burst) {
                rl->num++;
                if (ret_suppressed)
                        *ret_suppressed = 0;
                return true;
        }
        rl->suppressed++;
        return false;
}
