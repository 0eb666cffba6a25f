#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(int64_t ms) {
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

        if (ms <= 0)
                return;
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

int64_t ms_left(int64_t deadline) {
        int64_t left = deadline - now_ms();
        return left > 0 ? left : 0;
}

int64_t backoff_next(int64_t *delay_ms, int64_t max_ms) {
        int64_t d = *delay_ms > 0 ? *delay_ms : 1;
        int64_t jitter = (int64_t)(((unsigned)getpid() * 2654435761u) % (unsigned)(d / 2 + 1));

        *delay_ms = d * 2 > max_ms ? max_ms : d * 2;
        return d + jitter;
}

int parse_u64(const char *s, uint64_t max, uint64_t *ret) {
        unsigned long long v;
        char *end;

        if (!s || !isdigit((unsigned char)*s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (*end)
                return -EINVAL;
        if (errno == ERANGE || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

int parse_hex4(const char *s, uint16_t *ret) {
        unsigned v = 0;

        if (!s || strlen(s) != 4)
                return -EINVAL;
        for (int i = 0; i < 4; i++) {
                if (!isxdigit((unsigned char)s[i]))
                        return -EINVAL;
                v = v * 16 + (unsigned)(isdigit((unsigned char)s[i])
                                                ? s[i] - '0'
                                                : tolower((unsigned char)s[i]) - 'a' + 10);
        }
        *ret = (uint16_t)v;
        return 0;
}

long parse_attr_num(const char *s, int base, long max) {
        char *end;
        long v;

        if (!s)
                return -1;
        while (isspace((unsigned char)*s))
                s++;
        if (!isxdigit((unsigned char)*s))
                return -1;
        errno = 0;
        v = strtol(s, &end, base);
        while (isspace((unsigned char)*end))
                end++;
        if (errno || *end || v < 0 || v > max)
                return -1;
        return v;
}

void str_copy(char *dst, size_t len, const char *src) {
        size_t n = src ? strnlen(src, len - 1) : 0;

        if (n)
                memcpy(dst, src, n);
        dst[n] = '\0';
}

void strv_free(char **strv) {
        for (char **p = strv; p && *p; p++)
                free(*p);
        free(strv);
}

int pci_address_normalize(const char *in, char out[static PCI_ADDRESS_LEN]) {
        unsigned dom = 0, bus, slot, fn;
        size_t len = in ? strlen(in) : 0;
        int n = 0;

        /* sscanf's %x accepts a sign and "0x": require plain hex digits and separators first. */
        if (len != 12 && len != 7)
                return -EINVAL;
        for (const char *p = in; *p; p++)
                if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
                        return -EINVAL;
        if (len == 12) {
                if (sscanf(in, "%4x:%2x:%2x.%1x%n", &dom, &bus, &slot, &fn, &n) != 4 || n != 12)
                        return -EINVAL;
        } else if (sscanf(in, "%2x:%2x.%1x%n", &bus, &slot, &fn, &n) != 3 || n != 7) {
                return -EINVAL;
        }
        if (slot > 0x1f || fn > 7)
                return -EINVAL;
        snprintf(out, PCI_ADDRESS_LEN, "%04x:%02x:%02x.%x", dom, bus, slot, fn);
        return 0;
}

size_t utf8_seq_len(const char *s) {
        const unsigned char *p = (const unsigned char *)s;
        size_t n;
        uint32_t c;

        if (p[0] < 0x80)
                return 1;
        if (p[0] >= 0xc2 && p[0] <= 0xdf)
                n = 2, c = p[0] & 0x1f;
        else if (p[0] >= 0xe0 && p[0] <= 0xef)
                n = 3, c = p[0] & 0x0f;
        else if (p[0] >= 0xf0 && p[0] <= 0xf4)
                n = 4, c = p[0] & 0x07;
        else
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                c = c << 6 | (p[i] & 0x3f);
        }
        if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10ffff)) ||
            (c >= 0xd800 && c <= 0xdfff))
                return 0;
        return n;
}

bool utf8_valid(const char *s) {
        for (size_t n; *s; s += n)
                if ((n = utf8_seq_len(s)) == 0)
                        return false;
        return true;
}

char *str_escape(const char *in, char *out, size_t len) {
        size_t o = 0;

        for (const char *p = in ? in : ""; *p;) {
                unsigned char c = (unsigned char)*p;
                size_t n = utf8_seq_len(p);
                char esc[5];

                if (n > 1 || (n == 1 && c >= 0x20 && c != 0x7f && c != '\\')) {
                        if (o + n >= len)
                                break;
                        memcpy(out + o, p, n);
                        o += n;
                        p += n;
                        continue;
                }
                if (c == '\\')
                        memcpy(esc, "\\\\", 3);
                else
                        snprintf(esc, sizeof(esc), "\\x%02x", c);
                n = strlen(esc);
                if (o + n >= len)
                        break;
                memcpy(out + o, esc, n);
                o += n;
                p++;
        }
        out[o] = '\0';
        return out;
}

char *utf8_fix(const char *s) {
        size_t len = strlen(s), o = 0;
        char *out = malloc(len * 3 + 1); /* each bad byte becomes three bytes */

        if (!out)
                return NULL;
        for (const char *p = s; *p;) {
                size_t n = utf8_seq_len(p);
                if (n == 0) {
                        memcpy(out + o, "\xef\xbf\xbd", 3);
                        o += 3;
                        p++;
                        continue;
                }
                memcpy(out + o, p, n);
                o += n;
                p += n;
        }
        out[o] = '\0';
        return out;
}

void boot_id_read(char *buf, size_t len) {
        _cleanup_close_ int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, len - 1) : -1;

        if (n <= 0)
                n = 0;
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
}
