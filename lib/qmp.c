/* QMP client: stream parser, connection with greeting, command execution, event waiting. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cleanup-types.h"
#include "qmp.h"
#include "util.h"

#define QMP_CHUNK 4096
#define QMP_ERROR_MAX 1024 /* longest error text kept from QEMU */

struct qmp {
        int fd;
        int timeout_ms;
        unsigned long next_id;
        size_t budget; /* bytes the current operation may still read */
        struct qmp_parser parser;
        cJSON *events[QMP_EVENTS_MAX];
        size_t n_events;
};

/* ---- parser ---- */

void qmp_parser_init(struct qmp_parser *p) {
        *p = (struct qmp_parser){.max = QMP_MSG_MAX};
}

void qmp_parser_done(struct qmp_parser *p) {
        size_t max = p->max;

        free(p->buf);
        qmp_parser_init(p);
        p->max = max;
}

int qmp_parser_feed(struct qmp_parser *p, const void *data, size_t len) {
        size_t limit = 2 * p->max;

        if (p->len > limit || len > limit - p->len)
                return -EMSGSIZE;
        if (p->len + len > p->cap) {
                size_t cap = p->cap ? p->cap : QMP_CHUNK;
                while (cap < p->len + len)
                        cap *= 2;
                char *b = realloc(p->buf, cap);
                if (!b)
                        return -ENOMEM;
                p->buf = b;
                p->cap = cap;
        }
        memcpy(p->buf + p->len, data, len);
        p->len += len;
        return 0;
}

static void parser_consume(struct qmp_parser *p, size_t n) {
        if (n == 0)
                return;
        memmove(p->buf, p->buf + n, p->len - n);
        p->len -= n;
        p->pos = p->pos > n ? p->pos - n : 0;
}

static bool is_separator(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Drops whitespace before the next message. Returns 1 when a message starts, 0 when the buffer is
 * empty, -EPROTO when something other than an object starts. */
static int parser_skip_separators(struct qmp_parser *p) {
        size_t i = 0;

        while (i < p->len && is_separator(p->buf[i]))
                i++;
        parser_consume(p, i);
        if (p->len == 0)
                return 0;
        return p->buf[0] == '{' ? 1 : -EPROTO;
}

/* Advances the scanner by one byte. Returns true when that byte closed the outermost object. */
static bool parser_scan_byte(struct qmp_parser *p, char c) {
        if (p->in_string) {
                if (p->escape)
                        p->escape = false;
                else if (c == '\\')
                        p->escape = true;
                else if (c == '"')
                        p->in_string = false;
                return false;
        }
        switch (c) {
        case '"':
                p->in_string = true;
                return false;
        case '{':
        case '[':
                p->depth++;
                return false;
        case '}':
        case ']':
                return --p->depth == 0;
        default:
                return false;
        }
}

int qmp_parser_next(struct qmp_parser *p, cJSON **ret) {
        if (p->depth == 0 && p->pos == 0) {
                int r = parser_skip_separators(p);
                if (r <= 0)
                        return r;
        }
        while (p->pos < p->len) {
                bool done = parser_scan_byte(p, p->buf[p->pos++]);
                if (p->pos > p->max)
                        return -EMSGSIZE;
                if (!done)
                        continue;

                size_t n = p->pos;
                cJSON *m = cJSON_ParseWithLength(p->buf, n);
                parser_consume(p, n);
                p->pos = 0;
                if (!m)
                        return -EPROTO;
                if (!cJSON_IsObject(m)) {
                        cJSON_Delete(m);
                        return -EPROTO;
                }
                *ret = m;
                return 1;
        }
        return 0;
}

/* ---- time and fds ---- */

/* Waits until fd is ready for events or deadline passes (-ETIMEDOUT). */
static int wait_fd(int fd, short events, int64_t deadline) {
        for (;;) {
                int64_t left = deadline - now_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                struct pollfd pfd = {.fd = fd, .events = events};
                int r = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r > 0)
                        return 0;
        }
}

static bool vm_absent_errno(int e) {
        return e == ENOENT || e == ECONNREFUSED || e == ECONNRESET || e == ENOTSOCK || e == EPIPE;
}

/* Connects without blocking past deadline. A full backlog (EAGAIN) is retried. */
static int connect_unix(const char *path, int64_t deadline) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);

        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        for (;;) {
                if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
                        return TAKE_FD(fd);
                int e = errno;
                if (e == EINTR)
                        continue;
                if (e == EAGAIN) {
                        int64_t left = deadline - now_ms();
                        if (left <= 0)
                                return -ETIMEDOUT; /* listening, but its backlog stays full */
                        sleep_ms(left < 5 ? left : 5);
                        continue;
                }
                if (e != EINPROGRESS)
                        return vm_absent_errno(e) ? -EHOSTDOWN : -e;

                int r = wait_fd(fd, POLLOUT, deadline);
                if (r < 0)
                        return r;
                socklen_t sl = sizeof(e);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) < 0)
                        return -errno;
                if (e != 0)
                        return vm_absent_errno(e) ? -EHOSTDOWN : -e;
                return TAKE_FD(fd);
        }
}

/* ---- messages ---- */

/* Reads until one complete message is parsed. Returns 1 with *ret set, or -errno. A closed
 * connection is -EHOSTDOWN: QEMU went away. */
static int qmp_read_message(struct qmp *q, int64_t deadline, cJSON **ret) {
        for (;;) {
                int r = qmp_parser_next(&q->parser, ret);
                if (r != 0)
                        return r;
                if (q->budget == 0)
                        return -EMSGSIZE;
                r = wait_fd(q->fd, POLLIN, deadline);
                if (r < 0)
                        return r;

                char buf[QMP_CHUNK];
                ssize_t n = read(q->fd, buf, q->budget < sizeof(buf) ? q->budget : sizeof(buf));
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (n < 0)
                        return vm_absent_errno(errno) ? -EHOSTDOWN : -errno;
                if (n == 0)
                        return -EHOSTDOWN;
                q->budget -= (size_t)n;
                r = qmp_parser_feed(&q->parser, buf, (size_t)n);
                if (r < 0)
                        return r;
        }
}

static int qmp_send(struct qmp *q, const cJSON *msg, int64_t deadline) {
        _cleanup_free_ char *text = cJSON_PrintUnformatted(msg);
        if (!text)
                return -ENOMEM;

        size_t len = strlen(text), off = 0;
        while (off < len) {
                ssize_t n = send(q->fd, text + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        int r = wait_fd(q->fd, POLLOUT, deadline);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (n < 0)
                        return vm_absent_errno(errno) ? -EHOSTDOWN : -errno;
                off += (size_t)n;
        }
        return 0;
}

static bool msg_is_event(const cJSON *m) {
        return cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "event"));
}

static void qmp_queue_event(struct qmp *q, cJSON *ev) {
        if (q->n_events == QMP_EVENTS_MAX) {
                cJSON_Delete(q->events[0]);
                memmove(q->events, q->events + 1, (QMP_EVENTS_MAX - 1) * sizeof(q->events[0]));
                q->n_events--;
        }
        q->events[q->n_events++] = ev;
}

static char *dup_capped(const char *s) {
        return strndup(s, QMP_ERROR_MAX);
}

/* Turns a reply into the caller's results. Takes ownership of m. */
static int qmp_take_reply(cJSON *m, cJSON **ret_return, char **ret_class, char **ret_error) {
        _cleanup_cjson_ cJSON *reply = m;
        cJSON *ret = cJSON_GetObjectItemCaseSensitive(reply, "return");

        if (ret) {
                if (ret_return)
                        *ret_return = cJSON_DetachItemViaPointer(reply, ret);
                return 0;
        }

        cJSON *err = cJSON_GetObjectItemCaseSensitive(reply, "error");
        if (!cJSON_IsObject(err))
                return -EPROTO;
        const char *cls = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(err, "class"));
        const char *desc = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(err, "desc"));
        if (ret_class)
                *ret_class = dup_capped(cls ? cls : "");
        if (ret_error)
                *ret_error = dup_capped(desc ? desc : "QEMU error without description");
        return -EREMOTEIO;
}

static int qmp_execute_until(struct qmp *q, const char *command, const cJSON *arguments, int64_t deadline,
                             cJSON **ret_return, char **ret_class, char **ret_error) {
        unsigned long id = ++q->next_id;
        _cleanup_cjson_ cJSON *cmd = cJSON_CreateObject();

        if (!cmd || !cJSON_AddStringToObject(cmd, "execute", command) ||
            !cJSON_AddNumberToObject(cmd, "id", (double)id))
                return -ENOMEM;
        /* A reference: the caller keeps ownership of its arguments. */
        if (arguments && !cJSON_AddItemReferenceToObject(cmd, "arguments", (cJSON *)arguments))
                return -ENOMEM;

        q->budget = QMP_READ_MAX;
        int r = qmp_send(q, cmd, deadline);
        if (r < 0)
                return r;

        for (;;) {
                cJSON *m;
                r = qmp_read_message(q, deadline, &m);
                if (r < 0)
                        return r;
                if (msg_is_event(m)) {
                        qmp_queue_event(q, m);
                        continue;
                }
                const cJSON *mid = cJSON_GetObjectItemCaseSensitive(m, "id");
                if (!cJSON_IsNumber(mid) || mid->valuedouble != (double)id) {
                        cJSON_Delete(m); /* a stale reply or a late greeting */
                        continue;
                }
                return qmp_take_reply(m, ret_return, ret_class, ret_error);
        }
}

int qmp_execute(struct qmp *q, const char *command, const cJSON *arguments, cJSON **ret_return,
                char **ret_class, char **ret_error) {
        return qmp_execute_until(q, command, arguments, now_ms() + q->timeout_ms, ret_return, ret_class,
                                 ret_error);
}

static int qmp_handshake(struct qmp *q, int64_t deadline) {
        cJSON *m = NULL;

        q->budget = QMP_READ_MAX;
        /* A QEMU that accepted but does not greet in time is there, hung or busy with another
         * client (its monitor serves one at a time): -ETIMEDOUT, not -EHOSTDOWN. */
        int r = qmp_read_message(q, deadline, &m);
        /* QEMU switches a monitor back to negotiation only when the next client's connection is
         * open: an event emitted in between (the previous client's DEVICE_DELETED) can reach this
         * client before its greeting. It was meant for the previous one and is dropped. */
        while (r > 0 && msg_is_event(m)) {
                cJSON_Delete(m);
                r = qmp_read_message(q, deadline, &m);
        }
        if (r < 0)
                return r;
        bool greeting = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(m, "QMP"));
        cJSON_Delete(m);
        if (!greeting)
                return -EPROTO;

        r = qmp_execute_until(q, "qmp_capabilities", NULL, deadline, NULL, NULL, NULL);
        return r == -EREMOTEIO ? -EPROTO : r;
}

int qmp_connect(const char *path, int timeout_ms, struct qmp **ret) {
        int64_t deadline = now_ms() + timeout_ms;
        int fd = connect_unix(path, deadline);
        if (fd < 0)
                return fd;

        _cleanup_qmp_ struct qmp *q = calloc(1, sizeof(*q));
        if (!q) {
                close(fd);
                return -ENOMEM;
        }
        q->fd = fd;
        q->timeout_ms = timeout_ms;
        qmp_parser_init(&q->parser);

        int r = qmp_handshake(q, deadline);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(q);
        return 0;
}

void qmp_close(struct qmp *q) {
        if (!q)
                return;
        if (q->fd >= 0)
                close(q->fd);
        qmp_parser_done(&q->parser);
        for (size_t i = 0; i < q->n_events; i++)
                cJSON_Delete(q->events[i]);
        free(q);
}

static bool event_matches(const cJSON *ev, const char *name, const char *device) {
        const char *n = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "event"));
        if (!n || strcmp(n, name) != 0)
                return false;
        if (!device)
                return true;
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(ev, "data");
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "device"));
        return d && strcmp(d, device) == 0;
}

/* Takes a matching event out of the queue, or returns NULL. */
static cJSON *qmp_take_queued(struct qmp *q, const char *name, const char *device) {
        for (size_t i = 0; i < q->n_events; i++) {
                cJSON *ev = q->events[i];
                if (!event_matches(ev, name, device))
                        continue;
                memmove(q->events + i, q->events + i + 1, (q->n_events - i - 1) * sizeof(q->events[0]));
                q->n_events--;
                return ev;
        }
        return NULL;
}

static int qmp_deliver(cJSON *ev, cJSON **ret) {
        if (ret)
                *ret = ev;
        else
                cJSON_Delete(ev);
        return 0;
}

int qmp_wait_event(struct qmp *q, const char *name, const char *device, int timeout_ms, cJSON **ret) {
        cJSON *ev = qmp_take_queued(q, name, device);
        if (ev)
                return qmp_deliver(ev, ret);

        int64_t deadline = now_ms() + timeout_ms;
        q->budget = QMP_READ_MAX;
        for (;;) {
                cJSON *m;
                int r = qmp_read_message(q, deadline, &m);
                if (r < 0)
                        return r;
                if (event_matches(m, name, device))
                        return qmp_deliver(m, ret);
                if (msg_is_event(m))
                        qmp_queue_event(q, m);
                else
                        cJSON_Delete(m);
        }
}
