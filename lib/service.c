/* The helper's service loop: accept, read one event per connection, queue, fork a child per event
 * (one device's events one after another), reap, exit when idle. One thread; poll() on the
 * listening socket and a signalfd (SIGCHLD, SIGTERM, SIGINT). */
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "addr.h"
#include "cleanup.h"

#define RECV_TIMEOUT_S 2  /* a connection that sends nothing does not hold the queue longer */
#define FORK_RETRY_MS 100 /* fork failed with nothing running: try again after this long */
#define FORK_RETRY_MAX 50 /* ... this many times, then drop the event */

int svc_event_parse(const void *msg, size_t len, struct svc_event **ret) {
        const char *m = msg;
        size_t n = 0;

        if (len == 0)
                return -ENODATA;
        if (len > SVC_MSG_MAX)
                return -EMSGSIZE;
        /* Entries: NUL-separated, empty ones skipped; the last one may lack its NUL. */
        for (size_t i = 0; i < len; i++)
                if (m[i] != 0 && (i == 0 || m[i - 1] == 0))
                        n++;
        if (n > SVC_ENV_MAX)
                return -E2BIG;

        size_t head = sizeof(struct svc_event) + (n + 1) * sizeof(char *);
        struct svc_event *ev = calloc(1, head + len + 1);
        if (!ev)
                return -ENOMEM;
        ev->envp = (char **)(ev + 1);
        char *buf = (char *)ev + head;
        memcpy(buf, m, len);
        buf[len] = 0;

        for (char *p = buf; p < buf + len; p += strlen(p) + 1) {
                char *eq = strchr(p, '=');
                if (!eq || eq == p || (size_t)(eq - p) > SVC_KEY_MAX)
                        continue;
                ev->envp[ev->n_env++] = p;
                if (!ev->devpath && eq - p == 7 && memcmp(p, "DEVPATH", 7) == 0)
                        ev->devpath = eq + 1;
        }
        ev->envp[ev->n_env] = NULL;
        if (!ev->devpath || !ev->devpath[0]) {
                free(ev);
                return -EBADMSG;
        }
        *ret = ev;
        return 0;
}

void svc_event_free(struct svc_event *ev) {
        free(ev);
}

static int is_seqpacket_listener(int fd) {
        int v;
        socklen_t l = sizeof(v);
        if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &l) < 0 || v != AF_UNIX)
                return false;
        l = sizeof(v);
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l) < 0 || v != SOCK_SEQPACKET)
                return false;
        l = sizeof(v);
        return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) == 0 && v == 1;
}

int svc_listen_fd_from_env(int *ret_fd) {
        const char *pid = secure_getenv("LISTEN_PID"), *fds = secure_getenv("LISTEN_FDS");
        int r = 0;

        if (pid && fds) {
                char *end;
                errno = 0;
                unsigned long p = strtoul(pid, &end, 10);
                if (errno || *end || end == pid || p != (unsigned long)getpid())
                        r = 0; /* meant for another process */
                else if (strcmp(fds, "1") != 0 || !is_seqpacket_listener(3))
                        r = -EINVAL;
                else if (fcntl(3, F_SETFD, FD_CLOEXEC) < 0)
                        r = -errno;
                else
                        r = 1;
        }
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
        if (r == 1)
                *ret_fd = 3;
        return r;
}

/* Whether someone listens on the socket file at sa: 1 in use, 0 not (refused: left behind). */
static int socket_in_use(const struct sockaddr_un *sa) {
        _cleanup_close_ int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (probe < 0)
                return -errno;
        if (connect(probe, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
                return 1;
        return errno == ECONNREFUSED || errno == ENOENT ? 0 : 1; /* e.g. a full backlog: in use */
}

int svc_listen_path(const char *path, int *ret_fd) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;
        struct stat st;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path));
        if (lstat(path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode))
                        return -EEXIST;
                r = socket_in_use(&sa);
                if (r != 0)
                        return r < 0 ? r : -EADDRINUSE;
        } else if (errno != ENOENT)
                return -errno;

        /* The socket appears at PATH only once it listens: a RUN client never finds a file that
         * refuses it. */
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        r = addr_listen_unix_fd(fd, path, 0600, (uid_t)-1, (gid_t)-1);
        if (r < 0)
                return r;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

struct child {
        pid_t pid;
        struct svc_event *ev;
};

struct svc {
        const struct svc_params *p;
        const struct svc_ops *ops;
        void *userdata;
        struct svc_stats stats;
        struct svc_event *head, *tail; /* accepted, not started; arrival order */
        unsigned n_queued;
        struct child *children; /* max_children slots; pid 0 = free */
        unsigned n_running;
        unsigned fork_failures;
        int sfd;
        sigset_t oldmask;
        char *buf; /* SVC_MSG_MAX + 1 */
};

static void problem(struct svc *s, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void problem(struct svc *s, int r, const char *fmt, ...) {
        char what[512];
        va_list ap;
        if (!s->ops->problem)
                return;
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        s->ops->problem(s->userdata, r, what);
}

/* Reads the one message of a new connection and queues its event. */
static void receive(struct svc *s, int fd) {
        struct timeval tv = {.tv_sec = RECV_TIMEOUT_S};
        struct iovec iov = {.iov_base = s->buf, .iov_len = SVC_MSG_MAX + 1};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        struct svc_event *ev;
        ssize_t n;
        int r;

        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        do
                n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        s->stats.received++;
        if (n < 0) {
                s->stats.dropped++;
                problem(s, -errno, "event message not received: %s", strerror(errno));
                return;
        }
        r = (mh.msg_flags & MSG_TRUNC) || (size_t)n > SVC_MSG_MAX ? -EMSGSIZE
                                                                  : svc_event_parse(s->buf, n, &ev);
        if (r < 0) {
                s->stats.dropped++;
                problem(s, r, "event message of %zd bytes dropped: %s", n,
                        r == -EBADMSG   ? "no DEVPATH"
                        : r == -ENODATA ? "empty"
                                        : strerror(-r));
                return;
        }
        if (s->tail)
                s->tail->next = ev;
        else
                s->head = ev;
        s->tail = ev;
        s->n_queued++;
}

static bool device_busy(const struct svc *s, const char *devpath) {
        for (unsigned i = 0; i < s->p->max_children; i++)
                if (s->children[i].pid > 0 && strcmp(s->children[i].ev->devpath, devpath) == 0)
                        return true;
        return false;
}

static void unqueue(struct svc *s, struct svc_event *prev, struct svc_event *ev) {
        if (prev)
                prev->next = ev->next;
        else
                s->head = ev->next;
        if (s->tail == ev)
                s->tail = prev;
        ev->next = NULL;
        s->n_queued--;
}

static _Noreturn void child_main(struct svc *s, struct svc_event *ev) {
        sigprocmask(SIG_SETMASK, &s->oldmask, NULL);
        close(s->sfd);
        close(s->p->fd);
        exit(s->ops->handle(s->userdata, ev));
}

/* Starts children for the queued events that may run now, oldest first. Returns the poll timeout
 * a failed fork asks for (-1: none). */
static int dispatch(struct svc *s) {
        struct svc_event *prev = NULL, *ev = s->head;

        while (ev && s->n_running < s->p->max_children) {
                struct svc_event *next = ev->next;
                if (device_busy(s, ev->devpath)) { /* this device's earlier event still runs */
                        prev = ev;
                        ev = next;
                        continue;
                }
                if (s->ops->prepare && s->ops->prepare(s->userdata, ev) < 0) {
                        unqueue(s, prev, ev);
                        svc_event_free(ev);
                        s->stats.dropped++;
                        ev = next;
                        continue;
                }
                fflush(NULL); /* nothing buffered may be written twice */
                pid_t pid = fork();
                if (pid == 0)
                        child_main(s, ev);
                if (pid < 0) {
                        int r = -errno;
                        if (s->n_running > 0)
                                return -1; /* retried when a child exits */
                        if (++s->fork_failures < FORK_RETRY_MAX)
                                return FORK_RETRY_MS;
                        problem(s, r, "event for %s dropped: cannot start a process: %s", ev->devpath,
                                strerror(-r));
                        unqueue(s, prev, ev);
                        svc_event_free(ev);
                        s->stats.dropped++;
                        s->fork_failures = 0;
                        ev = next;
                        continue;
                }
                s->fork_failures = 0;
                unqueue(s, prev, ev);
                for (unsigned i = 0; i < s->p->max_children; i++)
                        if (s->children[i].pid == 0) {
                                s->children[i] = (struct child){.pid = pid, .ev = ev};
                                break;
                        }
                s->n_running++;
                ev = next;
        }
        return -1;
}

static void reap(struct svc *s) {
        for (unsigned i = 0; i < s->p->max_children; i++) {
                struct child *c = &s->children[i];
                struct rusage ru;
                int status;
                if (c->pid <= 0 || wait4(c->pid, &status, WNOHANG, &ru) != c->pid)
                        continue;
                s->stats.handled++;
                if (ru.ru_maxrss > s->stats.child_maxrss_kb)
                        s->stats.child_maxrss_kb = ru.ru_maxrss;
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        s->stats.failed++;
                if (WIFSIGNALED(status))
                        problem(s, -EINTR, "event for %s: handler killed by signal %d", c->ev->devpath,
                                WTERMSIG(status));
                svc_event_free(c->ev);
                *c = (struct child){0};
                s->n_running--;
        }
}

static void svc_clear(struct svc *s) {
        while (s->head) {
                struct svc_event *ev = s->head;
                s->head = ev->next;
                svc_event_free(ev);
        }
        free(s->children);
        free(s->buf);
        if (s->sfd >= 0)
                close(s->sfd);
}

int svc_run(const struct svc_params *params, const struct svc_ops *ops, void *userdata,
            struct svc_stats *ret_stats) {
        struct svc s = {.p = params, .ops = ops, .userdata = userdata, .sfd = -1};
        bool stopping = false;
        sigset_t mask;
        int r = 0;

        if (params->max_children < 1 || params->max_queued < 1 || !ops->handle)
                return -EINVAL;
        s.children = calloc(params->max_children, sizeof(*s.children));
        s.buf = malloc(SVC_MSG_MAX + 1);
        if (!s.children || !s.buf) {
                svc_clear(&s);
                return -ENOMEM;
        }
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, &s.oldmask);
        s.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (s.sfd < 0) {
                r = -errno;
                sigprocmask(SIG_SETMASK, &s.oldmask, NULL);
                svc_clear(&s);
                return r;
        }

        for (;;) {
                int timeout = dispatch(&s);
                bool idle = s.n_queued == 0 && s.n_running == 0;
                if (idle && (stopping || r < 0))
                        break;
                if (idle && timeout < 0)
                        timeout = params->idle_exit_ms;
                bool accepting = !stopping && r == 0 && s.n_queued < params->max_queued;
                struct pollfd pfd[2] = {
                        {.fd = s.sfd, .events = POLLIN},
                        {.fd = params->fd, .events = POLLIN},
                };
                int n = poll(pfd, accepting ? 2 : 1, timeout);
                if (n < 0 && errno != EINTR) {
                        r = -errno;
                        break; /* cannot wait for children any more either */
                }
                if (n == 0 && idle)
                        break;
                if (n <= 0)
                        continue;
                if (pfd[0].revents & POLLIN) {
                        struct signalfd_siginfo si;
                        while (read(s.sfd, &si, sizeof(si)) == sizeof(si))
                                if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
                                        stopping = true;
                        reap(&s);
                }
                if (accepting && (pfd[1].revents & (POLLIN | POLLERR | POLLHUP))) {
                        int cfd = accept4(params->fd, NULL, NULL, SOCK_CLOEXEC);
                        if (cfd >= 0) {
                                receive(&s, cfd);
                                close(cfd);
                        } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
                                r = -errno;
                                problem(&s, r, "cannot accept events: %s", strerror(errno));
                        }
                }
        }
        sigprocmask(SIG_SETMASK, &s.oldmask, NULL);
        if (ret_stats)
                *ret_stats = s.stats;
        svc_clear(&s);
        return r;
}

static bool same_file(const struct stat *a, const struct stat *b) {
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
               a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
               a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

int svc_config_refresh(struct svc_config *c, struct cfg_error *err) {
        struct stat st = {0};
        struct cfg *cfg = NULL;
        int r;

        if (stat(c->path, &st) < 0) {
                r = -errno;
                if (c->read && !c->cfg && c->r == r && c->st.st_ino == 0)
                        return 0; /* still missing (or unreadable) the same way */
                st = (struct stat){0};
        } else if (c->read && c->st.st_ino != 0 && same_file(&st, &c->st)) {
                return 0;
        }
        r = cfg_load(c->path, c->flags, &cfg, err);
        cfg_free(c->cfg);
        c->cfg = r < 0 ? NULL : cfg;
        c->st = st;
        c->r = r < 0 ? r : 0;
        c->read = true;
        return 1;
}

void svc_config_clear(struct svc_config *c) {
        cfg_free(c->cfg);
        c->cfg = NULL;
        c->read = false;
}
