/* A client of vhotplug-api's protocol (see client.h). */
#include "client.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "cleanup-types.h"
#include "errmsg.h"
#include "json.h"
#include "util.h"

#define CLIENT_MAX_LINE (16u << 20) /* a reply line (a long list) may be large, but not unbounded */

struct client {
        int fd;
        char *buf;
        size_t len, cap;
};

int client_connect(const char *spec, int timeout_ms, struct client **ret, char **ret_error) {
        struct addr a;
        struct client *c;
        int fd, r;

        r = addr_parse(spec, false, &a, ret_error);
        if (r < 0)
                return r;
        r = addr_connect(&a, timeout_ms, &fd, ret_error);
        if (r < 0)
                return r;
        c = calloc(1, sizeof(*c));
        if (!c) {
                close(fd);
                return errmsg_set(ret_error, -ENOMEM, "out of memory");
        }
        c->fd = fd;
        *ret = c;
        return 0;
}

void client_free(struct client *c) {
        if (!c)
                return;
        close(c->fd);
        free(c->buf);
        free(c);
}

int client_send(struct client *c, cJSON *req, char **ret_error) {
        _cleanup_free_ char *s = json_print(req);
        size_t len;
        char *p;

        if (!s)
                return errmsg_set(ret_error, -ENOMEM, "out of memory");
        len = strlen(s);
        p = realloc(TAKE_PTR(s), len + 2);
        if (!p)
                return errmsg_set(ret_error, -ENOMEM, "out of memory");
        s = p;
        s[len++] = '\n';
        s[len] = '\0';
        for (size_t off = 0; off < len;) {
                ssize_t n = send(c->fd, s + off, len - off, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return errmsg_set(ret_error, -errno, "Failed to send: %s", strerror(errno));
                off += (size_t)n;
        }
        return 0;
}

/* One line from the buffer, when it holds a whole one: moved into *ret (malloc'd). */
static int take_line(struct client *c, char **ret) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        size_t n;

        if (!nl)
                return 0;
        n = (size_t)(nl - c->buf);
        *ret = strndup(c->buf, n);
        if (!*ret)
                return -ENOMEM;
        memmove(c->buf, nl + 1, c->len - n - 1);
        c->len -= n + 1;
        return 1;
}

int client_read(struct client *c, int timeout_ms, cJSON **ret, char **ret_error) {
        int64_t deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : 0;

        for (;;) {
                _cleanup_free_ char *line = NULL;
                struct pollfd p = {.fd = c->fd, .events = POLLIN};
                ssize_t n;
                int r = take_line(c, &line);

                if (r < 0)
                        return errmsg_set(ret_error, r, "out of memory");
                if (r > 0) {
                        cJSON *o = cJSON_Parse(line);
                        if (!cJSON_IsObject(o)) {
                                cJSON_Delete(o);
                                return errmsg_set(ret_error, -EBADMSG,
                                                  "the server sent something that is not a JSON object");
                        }
                        *ret = o;
                        return 0;
                }
                if (c->len >= CLIENT_MAX_LINE)
                        return errmsg_set(ret_error, -EBADMSG, "the server sent a line longer than %u bytes",
                                          CLIENT_MAX_LINE);
                if (c->cap - c->len < 4096) {
                        size_t cap = c->cap ? c->cap * 2 : 65536;
                        char *b = realloc(c->buf, cap);
                        if (!b)
                                return errmsg_set(ret_error, -ENOMEM, "out of memory");
                        c->buf = b;
                        c->cap = cap;
                }
                r = poll(&p, 1, timeout_ms >= 0 ? (int)ms_left(deadline) : -1);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return errmsg_set(ret_error, -errno, "poll: %s", strerror(errno));
                if (r == 0)
                        return errmsg_set(ret_error, -ETIMEDOUT, "no answer from the server within %d ms",
                                          timeout_ms);
                n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return errmsg_set(ret_error, -errno, "Failed to receive: %s", strerror(errno));
                if (n == 0)
                        return errmsg_set(ret_error, -ECONNRESET, "API connection closed by remote");
                c->len += (size_t)n;
        }
}

int client_request(struct client *c, cJSON *req, int timeout_ms, cJSON **ret, char **ret_error) {
        int r = client_send(c, req, ret_error);

        while (r >= 0) {
                cJSON *o = NULL;
                r = client_read(c, timeout_ms, &o, ret_error);
                if (r < 0)
                        break;
                if (cJSON_GetObjectItemCaseSensitive(o, "result")) {
                        *ret = o;
                        return 0;
                }
                cJSON_Delete(o); /* an event: not the answer */
        }
        return r;
}
