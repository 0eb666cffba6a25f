/* Socket addresses and the sockets behind them (see addr.h). */
#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/vm_sockets.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "errmsg.h"
#include "util.h"

static int parse_port(const char *s, uint32_t max, uint32_t *ret) {
        uint64_t v;

        if (parse_u64(s, max, &v) < 0 || v == 0)
                return -EINVAL;
        *ret = (uint32_t)v;
        return 0;
}

static int parse_tcp(const char *rest, struct addr *ret, char **ret_error) {
        _cleanup_free_ char *host = NULL;
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res = NULL;
        const char *colon;
        uint32_t port;
        size_t hlen;
        int r;

        if (rest[0] == '[') { /* [v6]:port */
                const char *close = strchr(rest, ']');
                if (!close || close[1] != ':')
                        return -EINVAL;
                hlen = (size_t)(close - rest - 1);
                host = strndup(rest + 1, hlen);
                colon = close + 1;
        } else {
                colon = strrchr(rest, ':');
                if (!colon)
                        return -EINVAL;
                host = strndup(rest, (size_t)(colon - rest));
        }
        if (!host)
                return -ENOMEM;
        if (!*host || parse_port(colon + 1, 65535, &port) < 0)
                return -EINVAL;
        r = getaddrinfo(host, colon + 1, &hints, &res);
        if (r != 0 || !res)
                return errmsg_set(ret_error, -EADDRNOTAVAIL, "cannot resolve %.64s: %s", host,
                                  gai_strerror(r));
        memcpy(&ret->ss, res->ai_addr, res->ai_addrlen);
        ret->len = res->ai_addrlen;
        ret->family = res->ai_family;
        freeaddrinfo(res);
        return 0;
}

int addr_parse(const char *spec, bool listening, struct addr *ret, char **ret_error) {
        int r = -EINVAL;

        *ret = (struct addr){0};
        if (!spec)
                return errmsg_set(ret_error, -EINVAL, "no address given");
        str_copy(ret->text, sizeof(ret->text), spec);
        if (strncmp(spec, "unix:", 5) == 0) {
                struct sockaddr_un *un = (struct sockaddr_un *)&ret->ss;
                size_t n = strlen(spec + 5);
                if (n == 0 || n >= sizeof(un->sun_path))
                        return errmsg_set(ret_error, -EINVAL,
                                          "unix socket path empty or longer than %zu bytes",
                                          sizeof(un->sun_path) - 1);
                un->sun_family = AF_UNIX;
                memcpy(un->sun_path, spec + 5, n + 1);
                ret->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
                ret->family = AF_UNIX;
                return 0;
        }
        if (strncmp(spec, "vsock:", 6) == 0) {
                struct sockaddr_vm *vm = (struct sockaddr_vm *)&ret->ss;
                const char *rest = spec + 6, *colon = strchr(rest, ':');
                uint32_t cid = VMADDR_CID_ANY, port = 0;
                _cleanup_free_ char *c = colon ? strndup(rest, (size_t)(colon - rest)) : NULL;

                if (colon && c)
                        r = parse_port(c, UINT32_MAX - 1, &cid) < 0
                                    ? -EINVAL
                                    : parse_port(colon + 1, UINT32_MAX - 1, &port);
                else if (!colon && listening)
                        r = parse_port(rest, UINT32_MAX - 1, &port);
                if (r < 0)
                        return errmsg_set(ret_error, -EINVAL, "expected %s, got '%.64s'",
                                          listening ? "vsock:PORT" : "vsock:CID:PORT", spec);
                vm->svm_family = AF_VSOCK;
                vm->svm_cid = cid;
                vm->svm_port = port;
                ret->len = sizeof(*vm);
                ret->family = AF_VSOCK;
                return 0;
        }
        if (strncmp(spec, "tcp:", 4) == 0) {
                r = parse_tcp(spec + 4, ret, ret_error);
                if (r == -EINVAL)
                        return errmsg_set(ret_error, r, "expected tcp:HOST:PORT, got '%.64s'", spec);
                return r;
        }
        return errmsg_set(ret_error, -EINVAL,
                          "unknown address '%.64s': expected unix:PATH, vsock:%sPORT or tcp:HOST:PORT", spec,
                          listening ? "" : "CID:");
}

/* Removes a socket file left by an earlier run; anything else at path is not ours to remove. */
static int remove_old_socket(const char *path, char **ret_error) {
        struct stat st;

        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : errmsg_set(ret_error, -errno, "%s: %s", path, strerror(errno));
        if (!S_ISSOCK(st.st_mode))
                return errmsg_set(ret_error, -EEXIST, "%s exists and is not a socket: not replacing it",
                                  path);
        if (unlink(path) < 0)
                return errmsg_set(ret_error, -errno, "cannot remove the old socket %s: %s", path,
                                  strerror(errno));
        return 0;
}

int addr_listen_unix_fd(int fd, const char *path, mode_t mode, uid_t uid, gid_t gid) {
        struct sockaddr_un tmp = {.sun_family = AF_UNIX};
        int r;

        if (snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.%d~", path, (int)getpid()) >=
            (int)sizeof(tmp.sun_path))
                return -ENAMETOOLONG;
        (void)unlink(tmp.sun_path);
        if (bind(fd, (const struct sockaddr *)&tmp, sizeof(tmp)) < 0)
                return -errno;
        /* Mode and owner are set before listen(): until then every connect() is refused. */
        if (chmod(tmp.sun_path, mode) < 0 ||
            ((uid != (uid_t)-1 || gid != (gid_t)-1) && chown(tmp.sun_path, uid, gid) < 0) ||
            listen(fd, SOMAXCONN) < 0 || rename(tmp.sun_path, path) < 0) {
                r = -errno;
                (void)unlink(tmp.sun_path);
                return r;
        }
        return 0;
}

int addr_listen(const struct addr *a, int mode, uid_t uid, gid_t gid, int *ret_fd, char **ret_error) {
        _cleanup_close_ int fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        const char *path = a->family == AF_UNIX ? ((const struct sockaddr_un *)&a->ss)->sun_path : NULL;
        int one = 1, r;

        if (fd < 0)
                return errmsg_set(ret_error, -errno, "%s: cannot create the socket: %s", a->text,
                                  strerror(errno));
        if (a->family != AF_UNIX) {
                (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
                        return errmsg_set(ret_error, -errno, "%s: cannot bind: %s", a->text,
                                          strerror(errno));
                if (listen(fd, SOMAXCONN) < 0)
                        return errmsg_set(ret_error, -errno, "%s: cannot listen: %s", a->text,
                                          strerror(errno));
                *ret_fd = TAKE_FD(fd);
                return 0;
        }
        r = remove_old_socket(path, ret_error);
        if (r < 0)
                return r;
        r = addr_listen_unix_fd(fd, path, mode >= 0 ? (mode_t)mode : 0600, uid, gid);
        if (r == -ENAMETOOLONG)
                return errmsg_set(ret_error, r, "%s: path too long", a->text);
        if (r < 0)
                return errmsg_set(ret_error, r, "%s: cannot set up the socket: %s", a->text, strerror(-r));
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int addr_connect(const struct addr *a, int timeout_ms, int *ret_fd, char **ret_error) {
        _cleanup_close_ int fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        struct pollfd p = {.events = POLLOUT};
        socklen_t len = sizeof(int);
        int err = 0;

        if (fd < 0)
                return errmsg_set(ret_error, -errno, "Failed to connect: %s", strerror(errno));
        if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
                if (errno != EINPROGRESS && errno != EAGAIN)
                        return errmsg_set(ret_error, -errno, "Failed to connect to %s: %s", a->text,
                                          strerror(errno));
                p.fd = fd;
                if (poll(&p, 1, timeout_ms) <= 0)
                        return errmsg_set(ret_error, -ETIMEDOUT,
                                          "Failed to connect to %s: no answer within %d ms", a->text,
                                          timeout_ms);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                        err = errno;
                if (err)
                        return errmsg_set(ret_error, -err, "Failed to connect to %s: %s", a->text,
                                          strerror(err));
        }
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
                return errmsg_set(ret_error, -errno, "Failed to connect: %s", strerror(errno));
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int addr_family_of(int fd) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);

        if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
                return -errno;
        return ss.ss_family;
}

void addr_peer(int fd, char *buf, size_t len, uint32_t *ret_cid) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        char host[INET6_ADDRSTRLEN] = "?";

        *ret_cid = UINT32_MAX;
        if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0) {
                snprintf(buf, len, "unknown peer");
                return;
        }
        switch (ss.ss_family) {
        case AF_UNIX: {
                struct ucred cred;
                socklen_t cl = sizeof(cred);
                if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0)
                        snprintf(buf, len, "unix uid=%u pid=%d", (unsigned)cred.uid, (int)cred.pid);
                else
                        snprintf(buf, len, "unix");
                break;
        }
        case AF_VSOCK: {
                const struct sockaddr_vm *vm = (const struct sockaddr_vm *)&ss;
                *ret_cid = vm->svm_cid;
                snprintf(buf, len, "vsock cid=%u", vm->svm_cid);
                break;
        }
        case AF_INET: {
                const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
                snprintf(buf, len, "tcp %s:%u", host, ntohs(in->sin_port));
                break;
        }
        case AF_INET6: {
                const struct sockaddr_in6 *in = (const struct sockaddr_in6 *)&ss;
                inet_ntop(AF_INET6, &in->sin6_addr, host, sizeof(host));
                snprintf(buf, len, "tcp [%s]:%u", host, ntohs(in->sin6_port));
                break;
        }
        default:
                snprintf(buf, len, "family %d", ss.ss_family);
                break;
        }
}
