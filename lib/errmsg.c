#include "errmsg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int errmsg_set(char **ret_error, int r, const char *fmt, ...) {
        va_list ap;
        char *s;

        if (!ret_error)
                return r;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        free(*ret_error);
        *ret_error = s;
        return r;
}

int errmsg_take(char **ret_error, int r, char *msg) {
        if (!ret_error) {
                free(msg);
                return r;
        }
        free(*ret_error);
        *ret_error = msg;
        return r;
}
