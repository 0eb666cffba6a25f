/* A fake QMP peer for unit tests: a forked child serving a unix socket in a temporary directory.
 *
 *   struct fake_qmp f;
 *   fake_qmp_start(&f, serve_fn, userdata);   // serve_fn(listen_fd, userdata) runs in the child and
 *   ... client code against f.path ...       // returns the child's exit status (0 = all as expected)
 *   assert_int_equal(fake_qmp_finish(&f), 0);
 *
 * Scripted servers use fake_qmp_script(): a list of steps, each expecting a command (and substrings
 * of its JSON text) and answering with a reply; the id of the request is added to the reply. */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <sys/file.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qmp.h"

#define FAKE_GREETING                                                                                       \
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}}, "                  \
        "\"capabilities\": [\"oob\"]}}\r\n"

struct fake_qmp {
        char dir[64];
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
        pid_t pid;
};

typedef int (*fake_qmp_fn)(int listen_fd, const void *userdata);

static inline void fake_qmp_start(struct fake_qmp *f, fake_qmp_fn fn, const void *userdata) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        snprintf(f->dir, sizeof(f->dir), "/tmp/vhp-fakeqmp.XXXXXX");
        if (!mkdtemp(f->dir))
                abort();
        snprintf(f->path, sizeof(f->path), "%s/qmp.sock", f->dir);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 8) < 0)
                abort();
        fflush(NULL);
        f->pid = fork();
        if (f->pid < 0)
                abort();
        if (f->pid == 0) {
                signal(SIGPIPE, SIG_IGN);
                alarm(30); /* never outlive a broken test */
                int code = fn(lfd, userdata);
                char arg[16];
                snprintf(arg, sizeof(arg), "%d", code);
                /* Leave through exec: the child inherited the test's heap, which a leak checker
                 * (valgrind follows forks) would otherwise count against it. */
                execl("/bin/sh", "sh", "-c", "exit \"$1\"", "sh", arg, (char *)NULL);
                _exit(code);
        }
        close(lfd);
}

/* Waits for the child (killing it after timeout_ms) and removes the socket. Returns its exit status,
 * or -1 when it had to be killed or died of a signal. */
static inline int fake_qmp_finish_within(struct fake_qmp *f, int timeout_ms) {
        int status = 0;

        for (int waited = 0; waitpid(f->pid, &status, WNOHANG) == 0; waited += 10) {
                if (waited >= timeout_ms) {
                        kill(f->pid, SIGKILL);
                        waitpid(f->pid, &status, 0);
                        break;
                }
                usleep(10000);
        }
        unlink(f->path);
        rmdir(f->dir);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static inline int fake_qmp_finish(struct fake_qmp *f) {
        return fake_qmp_finish_within(f, 10000);
}

/* ---- helpers for the child ---- */

static inline int fake_accept(int lfd) {
        return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

static inline int fake_send(int fd, const char *text) {
        size_t len = strlen(text), off = 0;

        while (off < len) {
                ssize_t n = write(fd, text + off, len - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                off += (size_t)n;
        }
        return 0;
}

/* Reads the next message from the client; NULL on EOF or garbage. */
static inline cJSON *fake_recv(int fd, struct qmp_parser *p) {
        for (;;) {
                cJSON *m = NULL;
                int r = qmp_parser_next(p, &m);
                if (r > 0)
                        return m;
                if (r < 0)
                        return NULL;
                char buf[4096];
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0 || qmp_parser_feed(p, buf, (size_t)n) < 0)
                        return NULL;
        }
}

/* Answers req with body ("\"return\": {}" or "\"error\": {...}"), adding req's id. */
static inline int fake_reply(int fd, const cJSON *req, const char *body) {
        char *id = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(req, "id"));
        char *text = NULL;
        int r = -1;

        if (asprintf(&text, "{%s, \"id\": %s}\r\n", body, id ? id : "null") >= 0)
                r = fake_send(fd, text);
        free(text);
        free(id);
        return r;
}

static inline const char *fake_command(const cJSON *req) {
        return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "execute"));
}

/* Sends the greeting and answers qmp_capabilities. Returns 0, or -1 when the client misbehaved. */
static inline int fake_handshake(int fd, struct qmp_parser *p) {
        if (fake_send(fd, FAKE_GREETING) < 0)
                return -1;
        cJSON *req = fake_recv(fd, p);
        int r = req && fake_command(req) && strcmp(fake_command(req), "qmp_capabilities") == 0
                        ? fake_reply(fd, req, "\"return\": {}")
                        : -1;
        cJSON_Delete(req);
        return r;
}

/* Waits until the client closes its end (so it is never cut off early). */
static inline void fake_drain(int fd) {
        char buf[4096];
        struct pollfd pfd = {.fd = fd, .events = POLLIN};

        while (poll(&pfd, 1, 5000) > 0 && read(fd, buf, sizeof(buf)) > 0)
                ;
}

/* ---- scripted server ---- */

/* The lock file a lock_free step checks (set before fake_qmp_start). */
static const char *fake_lock_path;

/* Takes and releases fake_lock_path within 2 s. Returns 0, or -1 when it stayed locked. */
static inline int fake_take_lock(void) {
        int fd = fake_lock_path ? open(fake_lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
        int r = -1;

        for (int i = 0; fd >= 0 && i < 2000 && r < 0; i++) {
                r = flock(fd, LOCK_EX | LOCK_NB);
                if (r < 0)
                        usleep(1000);
        }
        if (fd >= 0)
                close(fd);
        return r;
}

struct fake_step {
        const char *command;   /* expected "execute"; NULL: close, accept the next connection, handshake */
        bool lock_free;        /* (with command NULL) fake_lock_path must be free while the client is
                                * away: the server takes it (trying for 2 s) before accepting again */
        const char *expect[4]; /* substrings the request's JSON text must contain */
        const char *reply;     /* "\"return\": ..." or "\"error\": ..."; NULL: no reply */
        const char *after;     /* raw text sent after the reply (events), or NULL */
};

static inline int fake_check_step(const cJSON *req, const struct fake_step *s) {
        char *text = cJSON_PrintUnformatted(req);
        int ok = text && fake_command(req) && strcmp(fake_command(req), s->command) == 0;

        for (size_t i = 0; ok && i < 4 && s->expect[i]; i++)
                ok = strstr(text, s->expect[i]) != NULL;
        if (!ok)
                fprintf(stderr, "fake QMP: expected %s %s, got %s\n", s->command,
                        s->expect[0] ? s->expect[0] : "", text ? text : "(nothing)");
        free(text);
        return ok ? 0 : -1;
}

/* Serves steps (an array ending with a step whose command and reply are both NULL and after is
 * "END"). Exit status: 0, or 10 + the index of the step that went wrong. */
static inline int fake_qmp_script(int lfd, const void *userdata) {
        const struct fake_step *steps = userdata;
        struct qmp_parser p;
        int fd = fake_accept(lfd);

        qmp_parser_init(&p);
        if (fd < 0 || fake_handshake(fd, &p) < 0)
                return 2;
        for (int i = 0; !(steps[i].after && strcmp(steps[i].after, "END") == 0); i++) {
                const struct fake_step *s = &steps[i];
                if (!s->command) {
                        fake_drain(fd);
                        close(fd);
                        if (s->lock_free && fake_take_lock() < 0)
                                return 10 + i;
                        qmp_parser_done(&p);
                        qmp_parser_init(&p);
                        fd = fake_accept(lfd);
                        if (fd < 0 || fake_handshake(fd, &p) < 0)
                                return 10 + i;
                        continue;
                }
                cJSON *req = fake_recv(fd, &p);
                int r = req ? fake_check_step(req, s) : -1;
                if (r == 0 && s->reply)
                        r = fake_reply(fd, req, s->reply);
                if (r == 0 && s->after)
                        (void)fake_send(fd, s->after); /* a client that has all it needs may be gone */
                cJSON_Delete(req);
                if (r < 0)
                        return 10 + i;
        }
        fake_drain(fd);
        qmp_parser_done(&p);
        return 0;
}

#define FAKE_FLOOD_TOTAL (100u << 20)

struct fake_flood {
        const char *prefix, *pattern;
};

/* A peer that answers the first command after the handshake with an endless stream: prefix, then
 * pattern repeated (up to FAKE_FLOOD_TOTAL bytes). Exit 0 when the client hung up before the end. */
static inline int fake_qmp_flood(int lfd, const void *ud) {
        const struct fake_flood *fl = ud;
        struct qmp_parser p;
        int fd = fake_accept(lfd);
        char buf[65536];
        size_t plen = strlen(fl->pattern), sent = 0;

        qmp_parser_init(&p);
        if (fake_handshake(fd, &p) < 0)
                return 1;
        cJSON_Delete(fake_recv(fd, &p));
        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = fl->pattern[i % plen];
        fake_send(fd, fl->prefix);
        while (sent < FAKE_FLOOD_TOTAL) {
                ssize_t n = write(fd, buf, sizeof(buf) - sizeof(buf) % plen);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return 0; /* the client gave up: what we want */
                sent += (size_t)n;
        }
        return 3;
}

#define FAKE_END                                                                                            \
        { .after = "END" }
#define FAKE_RECONNECT                                                                                      \
        { .command = NULL }
