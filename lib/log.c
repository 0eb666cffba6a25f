#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool use_stderr = true;
static int max_level = LOG_INFO;
static const char *log_ident = "vhotplug";

void log_setup(const char *ident, bool debug, bool to_stderr) {
        log_ident = ident;
        max_level = debug ? LOG_DEBUG : LOG_INFO;
        /* stderr is right for a terminal, a pipe or file, and for systemd (JOURNAL_STREAM: it is the
         * journal). Closed or /dev/null (udev's RUN) means nobody reads it: use syslog. */
        struct stat st;
        use_stderr = to_stderr || isatty(STDERR_FILENO) || getenv("JOURNAL_STREAM") ||
                     (fstat(STDERR_FILENO, &st) == 0 && !S_ISCHR(st.st_mode));
        if (!use_stderr)
                openlog(ident, LOG_PID, LOG_DAEMON);
}

int log_full_errno(int level, int err, const char *fmt, ...) {
        int saved = errno;
        if (err < 0)
                err = -err;
        if (level <= max_level) {
                char msg[2048], safe[4096];
                va_list ap;
                errno = err;
                va_start(ap, fmt);
                vsnprintf(msg, sizeof(msg), fmt, ap);
                va_end(ap);
                /* Messages carry untrusted words (device strings, QEMU's errors, paths): one line,
                 * no control characters, valid UTF-8, so nothing can forge a record. */
                str_escape(msg, safe, sizeof(safe));
                if (use_stderr)
                        fprintf(stderr, "%s: %s\n", log_ident, safe);
                else
                        syslog(level, "%s", safe);
        }
        errno = saved;
        return -err;
}
