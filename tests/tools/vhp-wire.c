/* vhp-wire: a test client that speaks vhotplug-api's wire protocol byte for byte, the way the
 * older daemon's clients do (and the way hostile ones might): it sends exactly the bytes it is
 * given and prints exactly the lines it receives.
 *
 *   vhp-wire [-t MS] [-n CLIENTS] [-T] ADDR STEP...
 *
 * ADDR: unix:PATH, tcp:HOST:PORT or vsock:CID:PORT. STEPs run in order:
 *   send:TEXT       send TEXT, with C escapes (\n \r \t \\ \xNN)
 *   repeat:N:TEXT   send TEXT N times (one long line)
 *   line            read one line and print it
 *   lines:N         read N lines and print them
 *   until:TEXT      read and print lines until one contains TEXT
 *   sleep:MS        wait
 *   shut            shut the sending side (the server sees the end of the requests)
 *   eof             wait for the server to close: prints "EOF"
 *   close           close the connection
 * With -n, CLIENTS connections are opened first, all at once; then each runs the steps in turn and
 * all stay open until the end (so the server holds them all at the same time). Waiting for a line
 * or the end that does not come within -t (default 10000 ms) prints "TIMEOUT" and fails; a closed
 * connection while waiting for a line prints "EOF" and fails. -T puts the time each line arrived
 * (milliseconds since the epoch, CLOCK_REALTIME, as SQLite's timestamps) before it (benchmarks).
 * Exit: 0, 1 failed, 2 usage. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "util.h"

struct conn {
        int fd;
        char buf[1 << 20];
        size_t len;
};

static int timeout_ms = 10000;
static bool stamp;

static size_t unescape(const char *in, char *out) {
        size_t n = 0;

        for (; *in; in++) {
                if (*in != '\\' || !in[1]) {
                        out[n++] = *in;
                        continue;
                }
                switch (*++in) {
                case 'n':
                        out[n++] = '\n';
                        break;
                case 'r':
                        out[n++] = '\r';
                        break;
                case 't':
                        out[n++] = '\t';
                        break;
                case 'x': {
                        char hex[3] = {in[1], in[1] ? in[2] : 0, 0};
                        out[n++] = (char)strtoul(hex, NULL, 16);
                        in += 2;
                        break;
                }
                default:
                        out[n++] = *in;
                        break;
                }
        }
        return n;
}

static int send_bytes(struct conn *c, const char *s, size_t len) {
        while (len > 0) {
                ssize_t n = send(c->fd, s, len, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        /* The server may close while we still send (a line it refuses): say so,
                         * and go on to read what it answered before. */
                        printf("SENDFAIL %s\n", strerror(errno));
                        return 0;
                }
                s += n;
                len -= (size_t)n;
        }
        return 0;
}

/* Reads one line into out (without "\n"); 1 got one, 0 EOF, -1 timeout. */
static int read_line(struct conn *c, char **out) {
        int64_t deadline = now_ms() + timeout_ms;

        for (;;) {
                char *nl = memchr(c->buf, '\n', c->len);
                struct pollfd p = {.fd = c->fd, .events = POLLIN};
                ssize_t n;

                if (nl) {
                        size_t k = (size_t)(nl - c->buf);
                        *out = strndup(c->buf, k);
                        memmove(c->buf, nl + 1, c->len - k - 1);
                        c->len -= k + 1;
                        return 1;
                }
                if (poll(&p, 1, (int)ms_left(deadline)) <= 0)
                        return -1;
                n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
                if (n <= 0)
                        return 0;
                c->len += (size_t)n;
        }
}

static int step(struct conn *c, const char *s) {
        char *line = NULL;
        int r;

        if (strncmp(s, "send:", 5) == 0) {
                char *buf = malloc(strlen(s) + 1);
                size_t n = unescape(s + 5, buf);
                r = send_bytes(c, buf, n);
                free(buf);
                return r;
        }
        if (strncmp(s, "repeat:", 7) == 0) {
                char *end, *buf;
                unsigned long times = strtoul(s + 7, &end, 10);
                size_t n;
                if (*end != ':')
                        return -2;
                buf = malloc(strlen(end) + 1);
                n = unescape(end + 1, buf);
                for (unsigned long i = 0; i < times && (r = send_bytes(c, buf, n)) == 0; i++) {
                }
                free(buf);
                return r;
        }
        if (strcmp(s, "line") == 0 || strncmp(s, "lines:", 6) == 0 || strncmp(s, "until:", 6) == 0) {
                long count = s[4] == 's' ? strtol(s + 6, NULL, 10) : 1;
                bool until = s[0] == 'u';
                for (long i = 0; until || i < count; i++) {
                        r = read_line(c, &line);
                        if (r <= 0) {
                                printf("%s\n", r == 0 ? "EOF" : "TIMEOUT");
                                return -1;
                        }
                        if (stamp) {
                                struct timespec ts;
                                clock_gettime(CLOCK_REALTIME, &ts);
                                printf("%lld.%03ld ", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
                                       (ts.tv_nsec / 1000) % 1000);
                        }
                        printf("%s\n", line);
                        fflush(stdout);
                        r = until && strstr(line, s + 6);
                        free(line);
                        if (r)
                                break;
                }
                return 0;
        }
        if (strncmp(s, "sleep:", 6) == 0) {
                sleep_ms(strtol(s + 6, NULL, 10));
                return 0;
        }
        if (strcmp(s, "shut") == 0)
                return shutdown(c->fd, SHUT_WR) < 0 ? -1 : 0;
        if (strcmp(s, "close") == 0) {
                close(c->fd);
                c->fd = -1;
                return 0;
        }
        if (strcmp(s, "eof") == 0) {
                int64_t deadline = now_ms() + timeout_ms;
                for (;;) {
                        struct pollfd p = {.fd = c->fd, .events = POLLIN};
                        char b[4096];
                        if (poll(&p, 1, (int)ms_left(deadline)) <= 0) {
                                printf("TIMEOUT\n");
                                return -1;
                        }
                        ssize_t n = recv(c->fd, b, sizeof(b), 0);
                        if (n <= 0) {
                                printf("EOF\n");
                                return 0;
                        }
                        fwrite(b, 1, (size_t)n, stdout);
                }
        }
        return -2;
}

int main(int argc, char **argv) {
        struct addr a;
        struct conn **cs;
        char *err = NULL;
        int opt, n = 1, first, rc = 0;

        while ((opt = getopt(argc, argv, "+t:n:T")) >= 0) {
                if (opt == 'T')
                        stamp = true;
                else if (opt == 't')
                        timeout_ms = atoi(optarg);
                else if (opt == 'n')
                        n = atoi(optarg);
                else
                        return 2;
        }
        if (optind >= argc || n < 1) {
                fprintf(stderr, "usage: vhp-wire [-t MS] [-n CLIENTS] ADDR STEP...\n");
                return 2;
        }
        if (addr_parse(argv[optind], false, &a, &err) < 0) {
                fprintf(stderr, "vhp-wire: %s\n", err);
                free(err);
                return 2;
        }
        first = optind + 1;
        cs = calloc((size_t)n, sizeof(*cs));
        for (int i = 0; cs && i < n && rc == 0; i++) {
                cs[i] = calloc(1, sizeof(**cs));
                if (cs[i])
                        cs[i]->fd = -1;
                if (!cs[i] || addr_connect(&a, timeout_ms, &cs[i]->fd, &err) < 0) {
                        printf("CONNECTFAIL %d %s\n", i, err ? err : "out of memory");
                        rc = 1;
                }
        }
        for (int i = 0; cs && i < n && rc == 0; i++)
                for (int k = first; k < argc && rc == 0; k++) {
                        int r = step(cs[i], argv[k]);
                        if (r == -2) {
                                fprintf(stderr, "vhp-wire: unknown step '%s'\n", argv[k]);
                                rc = 2;
                        } else
                                rc = r < 0;
                }
        for (int i = 0; cs && i < n; i++) {
                if (cs[i] && cs[i]->fd >= 0)
                        close(cs[i]->fd);
                free(cs[i]);
        }
        free(cs);
        free(err);
        return rc;
}
