/* Error texts handed out of lib/ through `char **ret_error` out-parameters. */
#pragma once

/* Replaces *ret_error (which may hold an earlier message) with the formatted text and returns r,
 * so callers can `return errmsg_set(ret_error, -EIO, "...")`. ret_error may be NULL. */
int errmsg_set(char **ret_error, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Hands msg (malloc'd, may be NULL) over as the error text, replacing an earlier one, and returns
 * r. With ret_error NULL, msg is freed. */
int errmsg_take(char **ret_error, int r, char *msg);
