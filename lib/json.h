/* JSON text that is safe to hand to others: device strings, VMM messages and configuration
 * descriptions may hold any bytes, and cJSON prints bytes that are not UTF-8 as they are. */
#pragma once

#include <stddef.h>

struct cJSON;

/* Replaces, in every string value and member name of item and below, each byte that is not part of
 * valid UTF-8 by U+FFFD. Returns 0 or -ENOMEM. */
int json_fix_utf8(struct cJSON *item);

/* Prints item on one line as valid UTF-8 JSON text (json_fix_utf8 first). Returns a malloc'd
 * string, or NULL when out of memory. */
char *json_print(struct cJSON *item);

/* cJSON turns "\u0000" into a NUL that silently cuts the string ("vm1\u0000evil" reads "vm1"): finds
 * one in any string or key of the (valid) JSON text of len bytes. Returns its offset, or len. */
size_t json_find_escaped_nul(const char *text, size_t len);
