/* Logging for the programs (helper/, reconcile/). lib/ and db/ never log. */
#pragma once

#include <stdbool.h>
#include <syslog.h>

/* Chooses the sink: stderr when attached to a terminal or forced, syslog otherwise. */
void log_setup(const char *ident, bool debug, bool to_stderr);

/* Logs at LOG_* level; returns -abs(err) so callers can `return log_error_errno(r, ...)`.
 * The format may use %m, which prints strerror(err). */
int log_full_errno(int level, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_debug(...)   log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...)    log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...)  log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...)   log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_errno(LOG_ERR, (e), __VA_ARGS__)
