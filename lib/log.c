#include "log.h"
#include "dl.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#define SD_JOURNAL_SUPPRESS_LOCATION /* CODE_FILE=lib/log.c would say nothing */
#include <systemd/sd-journal.h>
#include <unistd.h>

#define LOG_MAX_FIELDS 17
/* Where sd_journal_send() writes (fixed in libsystemd), which ignores a missing socket. */
#define JOURNAL_SOCKET "/run/systemd/journal/socket"

/* libsystemd is opened at the first journal record (see dl.h). */
static typeof(sd_journal_sendv) *sym_sd_journal_sendv;
static const struct dl_sym systemd_syms[] = {{"sd_journal_sendv", (void **)&sym_sd_journal_sendv}};
static struct dl_lib libsystemd = {VHP_LIBSYSTEMD_SONAME, systemd_syms, 1, 0};

static enum log_target target = LOG_TARGET_STDERR;
static int max_level = LOG_INFO;
static const char *log_ident = "vhotplug";
static int object_pid;

/* $JOURNAL_STREAM is "DEV:INODE" of the stream systemd connected: only when stderr is still that
 * stream (not redirected by a script in between) is stderr the journal. */
static bool stderr_is_journal(void) {
        const char *js = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;
        char c;

        return js && sscanf(js, "%llu:%llu%c", &dev, &ino, &c) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
               (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_setup(const char *ident, bool debug, bool to_stderr) {
        struct stat st;

        log_ident = ident;
        max_level = debug ? LOG_DEBUG : LOG_INFO;
        if (to_stderr || isatty(STDERR_FILENO))
                target = LOG_TARGET_STDERR;
        else if ((stderr_is_journal() || getenv("INVOCATION_ID")) && stat(JOURNAL_SOCKET, &st) == 0 &&
                 S_ISSOCK(st.st_mode))
                target = LOG_TARGET_JOURNAL;
        /* A pipe or a file is read by someone; closed or /dev/null (udev's RUN) is not: syslog. */
        else if (fstat(STDERR_FILENO, &st) == 0 && !S_ISCHR(st.st_mode))
                target = LOG_TARGET_STDERR;
        else
                target = LOG_TARGET_SYSLOG;
        if (target == LOG_TARGET_SYSLOG)
                openlog(ident, LOG_PID, LOG_DAEMON);
}

void log_set_object_pid(int pid) {
        object_pid = pid > 0 ? pid : 0;
}

enum log_target log_target(void) {
        return target;
}

/* Appends "NAME=value" to iov (bounded; the journal protocol takes any bytes in a value). */
static void add_field(struct iovec *iov, size_t *n, char *buf, size_t len, const char *name,
                      const char *value) {
        if (*n >= LOG_MAX_FIELDS || !value || !value[0])
                return;
        int k = snprintf(buf, len, "%s=%.*s", name, LOG_FIELD_MAX, value);
        if (k < 0)
                return;
        iov[*n] = (struct iovec){.iov_base = buf, .iov_len = (size_t)k < len ? (size_t)k : len - 1};
        (*n)++;
}

/* Sends one record to the journal; false when journald did not take it. */
static bool journal_send(int level, int err, const char *msgid, const struct log_field *fields,
                         const char *safe) {
        char bufs[LOG_MAX_FIELDS][LOG_FIELD_MAX + 64];
        struct iovec iov[LOG_MAX_FIELDS];
        char prio[2] = {(char)('0' + (level & 7)), 0}, errno_s[16] = "", opid[16] = "";
        size_t n = 0, b = 0;

        if (err > 0)
                snprintf(errno_s, sizeof(errno_s), "%d", err);
        add_field(iov, &n, bufs[b++], sizeof(bufs[0]), "MESSAGE", safe);
        add_field(iov, &n, bufs[b++], sizeof(bufs[0]), "PRIORITY", prio);
        add_field(iov, &n, bufs[b++], sizeof(bufs[0]), "SYSLOG_IDENTIFIER", log_ident);
        add_field(iov, &n, bufs[b++], sizeof(bufs[0]), "MESSAGE_ID", msgid);
        add_field(iov, &n, bufs[b++], sizeof(bufs[0]), "ERRNO", errno_s);
        if (object_pid > 0 && object_pid != getpid())
                snprintf(opid, sizeof(opid), "%d", object_pid);
        add_field(iov, &n, bufs[b++], sizeof(bufs[0]), "OBJECT_PID", opid);
        for (const struct log_field *f = fields; f && f->name && b < LOG_MAX_FIELDS; f++)
                add_field(iov, &n, bufs[b++], sizeof(bufs[0]), f->name, f->value);
        return dl_load(&libsystemd) >= 0 && sym_sd_journal_sendv(iov, (int)n) >= 0;
}

/* Writes one record whose message is msg (untrusted words inside). */
static void emit(int level, int err, const char *msgid, const struct log_field *fields, const char *msg) {
        char safe[4096];

        /* Messages carry untrusted words (device strings, QEMU's errors, paths): one line, no
         * control characters, valid UTF-8, so nothing can forge a record. */
        str_escape(msg, safe, sizeof(safe));
        switch (target) {
        case LOG_TARGET_JOURNAL:
                if (journal_send(level, err, msgid, fields, safe))
                        return;
                break; /* journald is not there: stderr */
        case LOG_TARGET_SYSLOG:
                syslog(level, "%s", safe);
                return;
        case LOG_TARGET_STDERR:
                break;
        }
        fprintf(stderr, "%s: %s\n", log_ident, safe);
}

int log_full_errno(int level, int err, const char *fmt, ...) {
        int saved = errno;
        if (err < 0)
                err = -err;
        if (level <= max_level) {
                char msg[2048];
                va_list ap;
                errno = err;
                va_start(ap, fmt);
                vsnprintf(msg, sizeof(msg), fmt, ap);
                va_end(ap);
                emit(level, err, NULL, NULL, msg);
        }
        errno = saved;
        return -err;
}

void log_event(int level, const char *msgid, const struct log_field *fields, const char *fmt, ...) {
        char msg[2048];
        va_list ap;
        int saved = errno;

        if (level > max_level)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        emit(level, 0, msgid, fields, msg);
        errno = saved;
}
