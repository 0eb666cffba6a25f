/* Small helpers shared by lib/ and db/: time, sleeping, number parsing, strings, PCI addresses.
 * Nothing here knows about devices, rules or VMs. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"

#define PCI_ADDRESS_LEN 13 /* "dddd:bb:dd.f" and its NUL */

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t now_ms(void);

/* Sleeps ms milliseconds (<= 0: not at all), resuming after signals. */
void sleep_ms(int64_t ms);

/* Milliseconds left until deadline (a now_ms() value), never negative. */
int64_t ms_left(int64_t deadline);

/* Next delay of a bounded exponential back-off: doubles *delay_ms up to max_ms and returns the
 * delay to sleep now, with up to 50% jitter (per process) so that many waiters do not retry in
 * step. */
int64_t backoff_next(int64_t *delay_ms, int64_t max_ms);

/* Parses a whole decimal number (no sign, no blanks) into *ret when it is <= max.
 * Returns 0, or -EINVAL (empty, junk, sign) / -ERANGE (larger than max). *ret untouched on error. */
int parse_u64(const char *s, uint64_t max, uint64_t *ret);

/* Parses exactly four hex digits (any case), as USB and PCI ids are written. Returns 0 or -EINVAL. */
int parse_hex4(const char *s, uint16_t *ret);

/* Parses a whole unsigned number of base 10 or 16 with optional surrounding blanks (sysfs
 * attributes end with a newline). Returns the value, or -1 when malformed or above max. */
long parse_attr_num(const char *s, int base, long max);

/* Copies src into dst (len > 0), cut to fit; always terminated. NULL src gives "". */
void str_copy(char *dst, size_t len, const char *src);

/* Frees a NULL-terminated string array; NULL-safe. */
void strv_free(char **strv);
static inline void strv_freep(char ***p) {
        strv_free(*p);
}
#define _cleanup_strv_ _cleanup_(strv_freep)

/* Length of the valid UTF-8 sequence at s (1 for ASCII, 2..4), or 0 when s does not start one
 * (stray continuation byte, overlong form, surrogate, past U+10FFFF, cut short). */
size_t utf8_seq_len(const char *s);

/* Whether s is valid UTF-8 throughout. */
bool utf8_valid(const char *s);

/* Copies in (untrusted: any bytes) to out (len > 0) so that it is one safe line of valid UTF-8:
 * control characters, DEL, backslash and bytes that are not valid UTF-8 become \xNN (backslash
 * as \\); valid multibyte characters pass. Cut to fit, never inside an escape or a character.
 * Returns out. */
char *str_escape(const char *in, char *out, size_t len);

/* Returns a malloc'd copy of s in which every byte that is not part of valid UTF-8 is replaced by
 * U+FFFD, or NULL when out of memory. */
char *utf8_fix(const char *s);

#define BOOT_ID_MAX 64 /* buffer for boot_id_read() */

/* Reads the kernel's boot id (a UUID that changes with every boot) into buf; "" when unreadable. */
void boot_id_read(char *buf, size_t len);

/* Normalizes a PCI address ("00:14.3" or "0000:00:14.3", any case) into "dddd:bb:dd.f".
 * Returns 0 or -EINVAL. */
int pci_address_normalize(const char *in, char out[static PCI_ADDRESS_LEN]);
