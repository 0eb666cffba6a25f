/* The systemd units vhotplug-generator writes (see generator.h). Values from the configuration
 * reach unit files only after checks: no control characters, no newline (which would start a new
 * setting), '%' doubled (systemd's specifier character). */
#include "generator.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "errmsg.h"
#include "util.h"

#define HEADER                                                                                              \
        "# Written by vhotplug-generator from %s; do not edit (edit the configuration and run\n"            \
        "# \"systemctl daemon-reload\").\n"

struct out {
        char *warnings;
        size_t len;
};

static void warn(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(struct out *o, const char *fmt, ...) {
        char line[512], safe[1024];
        va_list ap;
        char *w;

        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        str_escape(line, safe, sizeof(safe));
        w = realloc(o->warnings, o->len + strlen(safe) + 2);
        if (!w)
                return;
        o->warnings = w;
        o->len += (size_t)sprintf(w + o->len, "%s\n", safe);
}

/* A value for a unit file: printable, one line; '%' doubled. NULL when it cannot be one. */
static char *unit_value(const char *s) {
        size_t n = 0;
        char *v;

        for (const char *p = s; *p; p++) {
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        return NULL;
                n += *p == '%' ? 2 : 1;
        }
        v = malloc(n + 1);
        if (!v)
                return NULL;
        n = 0;
        for (const char *p = s; *p; p++) {
                v[n++] = *p;
                if (*p == '%')
                        v[n++] = '%';
        }
        v[n] = '\0';
        /* Trailing blanks would be dropped by systemd's parser: the path would differ. */
        if (n == 0 || v[n - 1] == ' ' || v[n - 1] == '\t' || v[0] == ' ') {
                free(v);
                return NULL;
        }
        return v;
}

/* Writes dir/name atomically (a temporary file renamed into place). */
static int write_file(const char *dir, const char *name, const char *text, char **ret_error) {
        char path[PATH_MAX], tmp[PATH_MAX + 16];
        _cleanup_close_ int fd = -1;
        size_t len = strlen(text);

        if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path) ||
            snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
                return errmsg_set(ret_error, -ENAMETOOLONG, "%s/%s: path too long", dir, name);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return errmsg_set(ret_error, -errno, "cannot write %s: %s", tmp, strerror(errno));
        if (write(fd, text, len) != (ssize_t)len || fsync(fd) < 0 || rename(tmp, path) < 0) {
                int r = -errno;
                (void)unlink(tmp);
                return errmsg_set(ret_error, r ? r : -EIO, "cannot write %s: %s", path,
                                  strerror(r ? -r : EIO));
        }
        return 0;
}

/* dir/TARGET.wants/unit -> ../unit */
static int want(const char *dir, const char *target, const char *unit, char **ret_error) {
        char wants[PATH_MAX], link[PATH_MAX], dest[PATH_MAX];

        if (snprintf(wants, sizeof(wants), "%s/%s.wants", dir, target) >= (int)sizeof(wants) ||
            snprintf(link, sizeof(link), "%s/%s", wants, unit) >= (int)sizeof(link) ||
            snprintf(dest, sizeof(dest), "../%s", unit) >= (int)sizeof(dest))
                return errmsg_set(ret_error, -ENAMETOOLONG, "%s: path too long", dir);
        if (mkdir(wants, 0755) < 0 && errno != EEXIST)
                return errmsg_set(ret_error, -errno, "cannot create %s: %s", wants, strerror(errno));
        (void)unlink(link);
        if (symlink(dest, link) < 0)
                return errmsg_set(ret_error, -errno, "cannot link %s: %s", link, strerror(errno));
        return 0;
}

static int append(char **buf, size_t *len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int append(char **buf, size_t *len, const char *fmt, ...) {
        va_list ap;
        char *s = NULL, *b;
        int n;

        va_start(ap, fmt);
        n = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        b = realloc(*buf, *len + (size_t)n + 1);
        if (!b) {
                free(s);
                return -ENOMEM;
        }
        memcpy(b + *len, s, (size_t)n + 1);
        *buf = b;
        *len += (size_t)n;
        free(s);
        return 0;
}

static bool numeric_ip(const char *host) {
        unsigned char buf[sizeof(struct in6_addr)];
        return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static int api_socket(const struct cfg *cfg, const char *dir, struct out *o, char **ret_error) {
        const struct cfg_api *a = &cfg->general.api;
        _cleanup_free_ char *text = NULL, *path = NULL,
                            *src = unit_value(cfg->path ? cfg->path : "the configuration");
        size_t len = 0;
        int listens = 0, r = 0;

        if (!a->enabled || a->transports == 0)
                return 0;
        r |= append(&text, &len, HEADER, src ? src : "the configuration");
        r |= append(&text, &len,
                    "\n[Unit]\n"
                    "Description=vhotplug API socket\n"
                    "Documentation=man:vhotplug-api(8)\n"
                    "\n[Socket]\n");
        if (a->transports & CFG_API_UNIX) {
                path = unit_value(a->unix_socket);
                if (!path || a->unix_socket[0] != '/') {
                        warn(o, "general.api.unixSocket: not an absolute path usable in a unit file: no "
                                "unix socket");
                } else {
                        r |= append(&text, &len, "ListenStream=%s\n", path);
                        listens++;
                        if (a->unix_user && getpwnam(a->unix_user))
                                r |= append(&text, &len, "SocketUser=%s\n", a->unix_user);
                        else if (a->unix_user)
                                warn(o,
                                     "general.api.unixSocketUser: no user '%.64s' here: the socket keeps "
                                     "owner root",
                                     a->unix_user);
                        if (a->unix_group && getgrnam(a->unix_group))
                                r |= append(&text, &len, "SocketGroup=%s\n", a->unix_group);
                        else if (a->unix_group)
                                warn(o,
                                     "general.api.unixSocketGroup: no group '%.64s' here: the socket keeps "
                                     "group root",
                                     a->unix_group);
                        /* Only root, unless the configuration says otherwise (systemd's default is 0666). */
                        r |= append(&text, &len, "SocketMode=%04o\nRemoveOnStop=yes\n",
                                    a->unix_mode >= 0 ? a->unix_mode : 0600);
                }
        }
        if (a->transports & CFG_API_VSOCK) {
                r |= append(&text, &len, "ListenStream=vsock::%u\n", a->port);
                listens++;
        }
        if (a->transports & CFG_API_TCP) {
                if (!numeric_ip(a->host)) {
                        warn(o,
                             "general.api.host: '%.64s' is not an IP address (a socket unit needs one): no "
                             "TCP socket",
                             a->host);
                } else {
                        r |= append(&text, &len,
                                    strchr(a->host, ':') ? "ListenStream=[%s]:%u\n" : "ListenStream=%s:%u\n",
                                    a->host, a->port);
                        listens++;
                }
        }
        r |= append(&text, &len,
                    "Accept=no\n"
                    "# vhotplug-api.service serves every connection and exits when idle.\n"
                    "Service=vhotplug-api.service\n");
        if (r)
                return errmsg_set(ret_error, -ENOMEM, "out of memory");
        if (listens == 0)
                return 0;
        r = write_file(dir, GEN_API_SOCKET_UNIT, text, ret_error);
        if (r >= 0)
                r = want(dir, "sockets.target", GEN_API_SOCKET_UNIT, ret_error);
        return r < 0 ? r : 1;
}

int gen_path_unit_name(const struct cfg_vm *vm, char *buf, size_t len) {
        /* The name passes to vhotplug-reconcile@NAME.service unchanged (%i): only characters a
         * unit instance holds as they are. */
        if (!vm->name[0] ||
            strspn(vm->name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789:_.-") !=
                    strlen(vm->name))
                return -EINVAL;
        if (snprintf(buf, len, "vhotplug-vm-%s.path", vm->name) >= (int)len)
                return -ENAMETOOLONG;
        return 0;
}

static int vm_path(const struct cfg *cfg, const struct cfg_vm *vm, const char *dir, struct out *o,
                   char **ret_error) {
        _cleanup_free_ char *text = NULL, *sock = NULL,
                            *src = unit_value(cfg->path ? cfg->path : "the configuration");
        char name[256];
        size_t len = 0;
        int r;

        if (!cfg_vm_can_hotplug(vm))
                return 0; /* devices reach it at start only: nothing to redo when it starts */
        if (gen_path_unit_name(vm, name, sizeof(name)) < 0 || strlen(name) > 200) {
                warn(o,
                     "VM '%.64s': its name cannot be a unit instance as it is (use letters, digits, ':', "
                     "'_', '.', "
                     "'-'): no path unit",
                     vm->name);
                return 0;
        }
        sock = unit_value(vm->socket ? vm->socket : "");
        if (!sock || vm->socket[0] != '/') {
                warn(o, "VM '%.64s': its socket is not an absolute path usable in a unit file: no path unit",
                     vm->name);
                return 0;
        }
        r = append(&text, &len,
                   HEADER "\n[Unit]\n"
                          "Description=vhotplug: give VM %s its devices when it starts\n"
                          "Documentation=man:vhotplug-reconcile(8)\n"
                          "\n[Path]\n"
                          "# The VM creates its %s socket when it starts (again).\n"
                          "PathChanged=%s\n"
                          "Unit=vhotplug-reconcile@%s.service\n",
                   src ? src : "the configuration", vm->name, vm->type == VMM_CROSVM ? "control" : "QMP",
                   sock, vm->name);
        if (r < 0)
                return errmsg_set(ret_error, -ENOMEM, "out of memory");
        r = write_file(dir, name, text, ret_error);
        if (r >= 0)
                r = want(dir, "paths.target", name, ret_error);
        return r < 0 ? r : 1;
}

int gen_write_units(const struct cfg *cfg, const char *dir, char **ret_warnings, char **ret_error) {
        struct out o = {0};
        int n = 0, r;

        r = api_socket(cfg, dir, &o, ret_error);
        if (r > 0)
                n += r;
        for (size_t i = 0; r >= 0 && i < cfg->n_vms; i++) {
                r = vm_path(cfg, &cfg->vms[i], dir, &o, ret_error);
                if (r > 0)
                        n += r;
        }
        if (ret_warnings)
                *ret_warnings = o.warnings;
        else
                free(o.warnings);
        return r < 0 ? r : n;
}
