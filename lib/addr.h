/* Socket addresses of vhotplug-api as people write them, and the sockets behind them:
 *   unix:PATH        a unix stream socket
 *   vsock:PORT       listening on a vsock port, any CID (vsock:CID:PORT when connecting)
 *   tcp:HOST:PORT    TCP ("tcp:127.0.0.1:2000", "tcp:[::1]:2000")
 * Used by vhotplug-api (listening) and vhotplugctl (connecting). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define ADDR_TEXT_MAX 160

struct addr {
        int family; /* AF_UNIX, AF_VSOCK, AF_INET or AF_INET6 */
        struct sockaddr_storage ss;
        socklen_t len;
        char text[ADDR_TEXT_MAX]; /* as given, for messages */
};

/* Parses spec (see above; listening: "vsock:PORT", else "vsock:CID:PORT"). Returns 0, or -EINVAL
 * with *ret_error saying what was expected. */
int addr_parse(const char *spec, bool listening, struct addr *ret, char **ret_error);

/* Binds and listens (close-on-exec). A unix socket file left by an earlier run is replaced (only
 * a socket: any other file is an error), then given mode (< 0: 0600) and, when uid/gid are not -1,
 * that owner. Returns 0 and the fd, or -errno with *ret_error. */
int addr_listen(const struct addr *a, int mode, uid_t uid, gid_t gid, int *ret_fd, char **ret_error);

/* Makes the unbound AF_UNIX socket fd (any type) listen at path: bound under a temporary name
 * beside it, given mode and (when uid/gid are not -1) owner, listening, then renamed into place,
 * so that the file appears only once it listens, with its final mode. Whatever is at path is
 * replaced: the caller decides first whether it may be. Returns 0 or -errno. */
int addr_listen_unix_fd(int fd, const char *path, mode_t mode, uid_t uid, gid_t gid);

/* Connects within timeout_ms. Returns 0 and the fd (blocking, close-on-exec), or -errno with
 * *ret_error ("Failed to connect: ..."). */
int addr_connect(const struct addr *a, int timeout_ms, int *ret_fd, char **ret_error);

/* The address family of a socket fd, or -errno. */
int addr_family_of(int fd);

/* Describes the peer of a connected fd, for history ("unix uid=1000 pid=42", "vsock cid=5",
 * "tcp 127.0.0.1:40000"); *ret_cid receives a vsock peer's CID (UINT32_MAX for other families). */
void addr_peer(int fd, char *buf, size_t len, uint32_t *ret_cid);
