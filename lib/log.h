/* Logging for the programs (helper/, reconcile/). lib/ and db/ never log.
 *
 * Where records go (decided once by log_setup()):
 *   - stderr when asked to (to_stderr) or when stderr is a terminal: someone is watching;
 *   - the systemd journal, natively (sd_journal_send: priority, MESSAGE_ID and fields), when the
 *     program runs under systemd: $JOURNAL_STREAM names stderr's device and inode, or
 *     $INVOCATION_ID is set (a service whose stderr goes elsewhere);
 *   - else stderr when it is a pipe or a file (tests, scripts), syslog when it leads nowhere
 *     (closed or /dev/null).
 * A record the journal does not take (no journald listening) goes to stderr instead. */
#pragma once

#include <stdbool.h>
#include <syslog.h>

/* MESSAGE_IDs of the helper's per-event records (vhotplug(7) lists them; journalctl
 * MESSAGE_ID=... finds them). Fixed forever: never change one, add new ones. */
#define LOG_MSGID_ATTACH "e60188ef211a4909ba07d2d17dba5b75"   /* device attached to a VM */
#define LOG_MSGID_DETACH "b5e3b5c7b1d14b82bc529392bb83d0f2"   /* device detached from a VM */
#define LOG_MSGID_REFUSED "72bd8d8c001640b48b1c5f6b6fea3b37"  /* attach/detach failed or refused */
#define LOG_MSGID_IGNORE "1a6a14166c194981815e38040eae920d"   /* device left on the host */
#define LOG_MSGID_DEFERRED "3247a1c95aaa4652b21b46c3ed6514fb" /* VM not running: done later */

enum log_target { LOG_TARGET_STDERR, LOG_TARGET_JOURNAL, LOG_TARGET_SYSLOG };

/* Chooses the sink (see above). debug: also LOG_DEBUG records. */
void log_setup(const char *ident, bool debug, bool to_stderr);

/* Records of this process and of the children it forks name pid (the service's main process) as
 * OBJECT_PID: journald resolves a sender's unit from /proc when the record arrives, and a child
 * that exits right after logging would leave its record without _SYSTEMD_UNIT (journalctl -u would
 * miss it); OBJECT_PID gives it OBJECT_SYSTEMD_UNIT, which journalctl -u also matches. 0: none. */
void log_set_object_pid(int pid);

/* The sink log_setup() chose. */
enum log_target log_target(void);

/* Logs at LOG_* level; returns -abs(err) so callers can `return log_error_errno(r, ...)`.
 * The format may use %m, which prints strerror(err). */
int log_full_errno(int level, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A field of a structured record. name: a journal field name (A-Z, 0-9, _; not starting with _);
 * value: any bytes up to LOG_FIELD_MAX (longer is cut), NULL or "" leaves the field out. */
struct log_field {
        const char *name;
        const char *value;
};
#define LOG_FIELD_MAX 2048

/* One structured record: MESSAGE from fmt (escaped, one line, like every message), PRIORITY
 * level, MESSAGE_ID msgid (NULL: none) and fields, an array ended by { NULL }. In the journal the
 * fields are stored as given (raw values); on stderr and syslog only MESSAGE is written. */
void log_event(int level, const char *msgid, const struct log_field *fields, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

#define log_debug(...) log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...) log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, (e), __VA_ARGS__)
