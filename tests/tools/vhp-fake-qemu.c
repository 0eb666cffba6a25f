/* vhp-fake-qemu QEMU-ARGS...: a STAND-IN for a QEMU started with cold-plug arguments, for the
 * tests of `vmm args` where a real QEMU cannot take the devices: the umockdev testbed's VFIO group
 * nodes are plain files, so a real QEMU stops at "failed to get group N status". It is not QEMU and
 * runs no guest. It checks the command line the way QEMU would before it starts, then serves the
 * part of QMP vhotplug uses, with the devices of the command line as /machine/peripheral.
 *
 * Checked, each failure printed as QEMU prints it ("qemu-system-x86_64: -device ARG: why", exit 1):
 *   -device DRIVER,KEY=VALUE,...   ",," is a comma inside a value; an id may appear once
 *     pcie-root-port               id required; it is a bus for one device
 *     vfio-pci                     host=ADDR: /sys/bus/pci/devices/ADDR exists, is bound to vfio-pci,
 *                                  and /dev/vfio/GROUP (its iommu_group) exists; bus= names a
 *                                  root port given earlier and still free
 *     virtio-input-host-pci        evdev=NODE opens read-write
 *   -drive if=pflash,...,file=F    F opens for reading
 *   -acpitable file=F              F opens for reading and holds at least an ACPI header (36 bytes)
 *   -qmp unix:PATH,server=on,wait=off   required; the socket it serves
 * Other options are ignored (-S, -nodefaults and -no-reboot take no value, all others one).
 *
 * QMP (one client at a time, as QEMU): qmp_capabilities, qom-list (/machine/peripheral, a device,
 * a root port's bus), qom-get (host, evdev, hostbus, hostaddr), device_add, device_del (with its
 * DEVICE_DELETED event), quit; anything else is CommandNotFound. Every command received is appended
 * as one JSON line to the file VHP_FAKE_QEMU_LOG names, when set. Runs until quit or SIGTERM. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup-types.h"
#include "qmp.h"
#include "util.h"

#define MAX_DEVS 64
#define MAX_KV 16

struct device {
        char driver[64], id[64], bus[64];
        char *key[MAX_KV], *val[MAX_KV];
        size_t n_kv;
        bool used; /* a root port holding a device */
};

static struct device devs[MAX_DEVS];
static size_t n_devs;
static const char *opt_now; /* "-device ARG", for messages */

__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "qemu-system-x86_64: %s: ", opt_now ? opt_now : "");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(1);
}

/* Splits "a,k=v,k2=v,,w" into the first field and key/value pairs (",," kept as ","). */
static void split_opts(const char *s, char *first, size_t len, struct device *d) {
        char buf[4096], *fields[MAX_KV + 1];
        size_t n = 0, o = 0;

        fields[n++] = buf;
        for (const char *p = s; *p && o < sizeof(buf) - 1; p++) {
                if (*p == ',' && p[1] == ',') {
                        buf[o++] = ',';
                        p++;
                } else if (*p == ',') {
                        buf[o++] = '\0';
                        if (n == MAX_KV + 1)
                                die("too many options");
                        fields[n++] = buf + o;
                } else
                        buf[o++] = *p;
        }
        buf[o] = '\0';
        str_copy(first, len, fields[0]);
        for (size_t i = 1; i < n; i++) {
                char *eq = strchr(fields[i], '=');
                if (!eq)
                        die("option '%s' has no value", fields[i]);
                *eq = '\0';
                d->key[d->n_kv] = strdup(fields[i]);
                d->val[d->n_kv] = strdup(eq + 1);
                d->n_kv++;
        }
}

static const char *kv(const struct device *d, const char *key) {
        for (size_t i = 0; i < d->n_kv; i++)
                if (strcmp(d->key[i], key) == 0)
                        return d->val[i];
        return NULL;
}

static struct device *find(const char *id) {
        for (size_t i = 0; i < n_devs; i++)
                if (devs[i].id[0] && strcmp(devs[i].id, id) == 0)
                        return &devs[i];
        return NULL;
}

static void link_base(const char *path, char *buf, size_t len) {
        char t[PATH_MAX];
        ssize_t n = readlink(path, t, sizeof(t) - 1);

        buf[0] = '\0';
        if (n < 0)
                return;
        t[n] = '\0';
        str_copy(buf, len, strrchr(t, '/') ? strrchr(t, '/') + 1 : t);
}

/* Checks one device as QEMU does at start; returns an error text, or NULL. */
static const char *check_device(struct device *d, char *msg, size_t len) {
        if (d->id[0] && find(d->id) != d)
                return snprintf(msg, len, "Duplicate ID '%s' for device", d->id), msg;
        if (d->bus[0]) {
                struct device *b = find(d->bus);
                if (!b || strcmp(b->driver, "pcie-root-port") != 0)
                        return snprintf(msg, len, "Bus '%s' not found", d->bus), msg;
                if (b->used)
                        return snprintf(msg, len,
                                        "PCI: slot 0 function 0 not available for %s, in use by another "
                                        "device",
                                        d->driver),
                               msg;
                b->used = true;
        }
        if (strcmp(d->driver, "pcie-root-port") == 0 && !d->id[0])
                return "a pcie-root-port needs an id here";
        if (strcmp(d->driver, "vfio-pci") == 0) {
                const char *host = kv(d, "host");
                char addr[PCI_ADDRESS_LEN], path[128], base[64];
                struct stat st;

                if (!host || pci_address_normalize(host, addr) < 0)
                        return "vfio-pci needs host=ADDR";
                snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", addr);
                if (stat(path, &st) < 0)
                        return snprintf(msg, len, "vfio %s: no such host device: %s", path, strerror(errno)),
                               msg;
                snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", addr);
                link_base(path, base, sizeof(base));
                if (strcmp(base, "vfio-pci") != 0)
                        return snprintf(msg, len, "vfio %s: not bound to vfio-pci (driver: %s)", addr,
                                        base[0] ? base : "none"),
                               msg;
                snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", addr);
                link_base(path, base, sizeof(base));
                snprintf(path, sizeof(path), "/dev/vfio/%s", base);
                if (!base[0] || access(path, F_OK) < 0)
                        return snprintf(msg, len, "vfio %s: group %s is not viable (/dev/vfio/%s missing)",
                                        addr, base, base),
                               msg;
        }
        if (strcmp(d->driver, "virtio-input-host-pci") == 0) {
                const char *node = kv(d, "evdev");
                int fd = node ? open(node, O_RDWR | O_CLOEXEC) : -1;
                if (fd < 0)
                        return snprintf(msg, len, "Failed to open evdev device %s: %s",
                                        node ? node : "(none)", strerror(errno)),
                               msg;
                close(fd);
        }
        return NULL;
}

static void add_device(const char *arg, bool check) {
        struct device *d;
        const char *v, *err;
        char msg[1024];

        if (n_devs == MAX_DEVS)
                die("too many devices");
        d = &devs[n_devs++];
        *d = (struct device){0};
        split_opts(arg, d->driver, sizeof(d->driver), d);
        if ((v = kv(d, "id")))
                str_copy(d->id, sizeof(d->id), v);
        if ((v = kv(d, "bus")))
                str_copy(d->bus, sizeof(d->bus), v);
        if (check && (err = check_device(d, msg, sizeof(msg))))
                die("%s", err);
}

static void check_file(const char *opt, const char *what, size_t min) {
        struct device tmp = {0};
        char first[256];
        const char *file;
        struct stat st;
        int fd;

        split_opts(opt, first, sizeof(first), &tmp);
        if (strncmp(first, "file=", 5) == 0)
                file = first + 5;
        else
                file = kv(&tmp, "file");
        if (!file)
                die("%s needs file=", what);
        fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                die("Could not open '%s': %s", file, strerror(errno));
        if ((size_t)st.st_size < min)
                die("%s %s is too short (%lld bytes)", what, file, (long long)st.st_size);
        close(fd);
}

/* ---- QMP ---- */

static FILE *cmdlog;

static void send_json(int fd, cJSON *j) {
        char *s = cJSON_PrintUnformatted(j);
        if (s) {
                size_t n = strlen(s);
                s[n] = '\n';
                (void)!write(fd, s, n + 1);
        }
        free(s);
        cJSON_Delete(j);
}

static void reply(int fd, const cJSON *id, cJSON *ret) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddItemToObject(r, "return", ret);
        if (id)
                cJSON_AddItemToObject(r, "id", cJSON_Duplicate(id, true));
        send_json(fd, r);
}

static void reply_error(int fd, const cJSON *id, const char *cls, const char *desc) {
        cJSON *r = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(r, "error");
        cJSON_AddStringToObject(e, "class", cls);
        cJSON_AddStringToObject(e, "desc", desc);
        if (id)
                cJSON_AddItemToObject(r, "id", cJSON_Duplicate(id, true));
        send_json(fd, r);
}

/* A qom-list entry; child: type "child<TYPE>", else TYPE. */
static cJSON *entry(const char *name, bool child, const char *type) {
        cJSON *e = cJSON_CreateObject();
        char t[128];
        snprintf(t, sizeof(t), "%s%.64s%s", child ? "child<" : "", type, child ? ">" : "");
        cJSON_AddStringToObject(e, "name", name);
        cJSON_AddStringToObject(e, "type", t);
        return e;
}

static void qom_list(int fd, const cJSON *id, const char *path) {
        const char *pre = "/machine/peripheral";
        cJSON *list = cJSON_CreateArray();
        char a[128], b[128];

        if (strcmp(path, pre) == 0) {
                for (size_t i = 0; i < n_devs; i++)
                        if (devs[i].id[0])
                                cJSON_AddItemToArray(list, entry(devs[i].id, true, devs[i].driver));
                return reply(fd, id, list);
        }
        if (strncmp(path, pre, strlen(pre)) == 0 && path[strlen(pre)] == '/') {
                int n = sscanf(path + strlen(pre) + 1, "%127[^/]/%127s", a, b);
                struct device *d = n >= 1 ? find(a) : NULL;
                if (d && n == 1) {
                        cJSON_AddItemToArray(list, entry("type", false, "string"));
                        return reply(fd, id, list);
                }
                if (d && n == 2 && strcmp(a, b) == 0 && strcmp(d->driver, "pcie-root-port") == 0) {
                        for (size_t i = 0; i < n_devs; i++)
                                if (strcmp(devs[i].bus, a) == 0)
                                        cJSON_AddItemToArray(list, entry("child[0]", true, devs[i].driver));
                        return reply(fd, id, list);
                }
        }
        cJSON_Delete(list);
        char desc[300];
        snprintf(desc, sizeof(desc), "Device '%.200s' not found", path);
        reply_error(fd, id, "DeviceNotFound", desc);
}

static void qom_get(int fd, const cJSON *id, const char *path, const char *prop) {
        const char *pre = "/machine/peripheral/";
        struct device *d = strncmp(path, pre, strlen(pre)) == 0 ? find(path + strlen(pre)) : NULL;
        const char *v = d ? kv(d, prop) : NULL;

        if (!v)
                return reply_error(fd, id, "GenericError", "Property not found");
        if (strcmp(prop, "hostbus") == 0 || strcmp(prop, "hostaddr") == 0)
                return reply(fd, id, cJSON_CreateNumber(atoi(v)));
        reply(fd, id, cJSON_CreateString(v));
}

static void device_add(int fd, const cJSON *id, const cJSON *args) {
        char opt[1024];
        size_t o = 0;
        const cJSON *it;
        const char *drv = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(args, "driver"));

        if (!drv)
                return reply_error(fd, id, "GenericError", "Parameter 'driver' is missing");
        o += (size_t)snprintf(opt + o, sizeof(opt) - o, "%s", drv);
        cJSON_ArrayForEach(it, args) {
                if (strcmp(it->string, "driver") == 0 || o >= sizeof(opt))
                        continue;
                if (cJSON_IsNumber(it))
                        o += (size_t)snprintf(opt + o, sizeof(opt) - o, ",%s=%d", it->string, it->valueint);
                else if (cJSON_IsString(it))
                        o += (size_t)snprintf(opt + o, sizeof(opt) - o, ",%s=%s", it->string,
                                              it->valuestring);
        }
        add_device(opt, false);
        reply(fd, id, cJSON_CreateObject());
}

static void device_del(int fd, const cJSON *id, const char *dev) {
        struct device *d = dev ? find(dev) : NULL;
        char desc[128];

        if (!d) {
                snprintf(desc, sizeof(desc), "Device '%.64s' not found", dev ? dev : "");
                return reply_error(fd, id, "DeviceNotFound", desc);
        }
        reply(fd, id, cJSON_CreateObject());
        cJSON *ev = cJSON_CreateObject(), *data = cJSON_AddObjectToObject(ev, "data");
        cJSON_AddStringToObject(ev, "event", "DEVICE_DELETED");
        cJSON_AddStringToObject(data, "device", d->id);
        send_json(fd, ev);
        for (size_t i = 0; i < n_devs; i++)
                if (strcmp(devs[i].id, d->bus) == 0)
                        devs[i].used = false;
        for (size_t i = 0; i < d->n_kv; i++) {
                free(d->key[i]);
                free(d->val[i]);
        }
        *d = devs[--n_devs];
}

/* Serves one client until it closes. Returns false after quit. */
static bool serve(int fd) {
        struct qmp_parser p;
        char buf[4096];
        bool go_on = true;

        send_json(
                fd,
                cJSON_Parse("{\"QMP\":{\"version\":{\"package\":\"vhp-fake-qemu\"},\"capabilities\":[]}}"));
        qmp_parser_init(&p);
        for (;;) {
                cJSON *m = NULL;
                int r = qmp_parser_next(&p, &m);
                if (r < 0)
                        break;
                if (r == 0) {
                        ssize_t n = read(fd, buf, sizeof(buf));
                        if (n <= 0 || qmp_parser_feed(&p, buf, (size_t)n) < 0)
                                break;
                        continue;
                }
                const char *cmd = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "execute"));
                const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
                const cJSON *args = cJSON_GetObjectItemCaseSensitive(m, "arguments");
                const char *path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(args, "path"));
                if (cmdlog) {
                        char *s = cJSON_PrintUnformatted(m);
                        fprintf(cmdlog, "%s\n", s ? s : "");
                        fflush(cmdlog);
                        free(s);
                }
                if (!cmd)
                        reply_error(fd, id, "GenericError", "Expected 'execute'");
                else if (strcmp(cmd, "qmp_capabilities") == 0)
                        reply(fd, id, cJSON_CreateObject());
                else if (strcmp(cmd, "qom-list") == 0 && path)
                        qom_list(fd, id, path);
                else if (strcmp(cmd, "qom-get") == 0 && path)
                        qom_get(fd, id, path,
                                cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(args, "property"))
                                        ?: "");
                else if (strcmp(cmd, "device_add") == 0)
                        device_add(fd, id, args);
                else if (strcmp(cmd, "device_del") == 0)
                        device_del(fd, id,
                                   cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(args, "id")));
                else if (strcmp(cmd, "quit") == 0) {
                        reply(fd, id, cJSON_CreateObject());
                        go_on = false;
                } else {
                        char desc[128];
                        snprintf(desc, sizeof(desc), "The command %.64s has not been found", cmd);
                        reply_error(fd, id, "CommandNotFound", desc);
                }
                cJSON_Delete(m);
                if (!go_on)
                        break;
        }
        qmp_parser_done(&p);
        return go_on;
}

int main(int argc, char **argv) {
        const char *qmp = NULL, *logpath = getenv("VHP_FAKE_QEMU_LOG");
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char opt[4200];
        int lfd;

        signal(SIGPIPE, SIG_IGN);
        for (int i = 1; i < argc; i++) {
                const char *o = argv[i];
                if (strcmp(o, "-S") == 0 || strcmp(o, "-nodefaults") == 0 || strcmp(o, "-no-reboot") == 0)
                        continue;
                if (i + 1 >= argc) {
                        fprintf(stderr, "qemu-system-x86_64: %s: requires an argument\n", o);
                        return 1;
                }
                const char *v = argv[++i];
                snprintf(opt, sizeof(opt), "%s %s", o, v);
                opt_now = opt;
                if (strcmp(o, "-device") == 0)
                        add_device(v, true);
                else if (strcmp(o, "-drive") == 0 && strstr(v, "if=pflash"))
                        check_file(v, "pflash", 1);
                else if (strcmp(o, "-acpitable") == 0)
                        check_file(v, "ACPI table", 36);
                else if (strcmp(o, "-qmp") == 0)
                        qmp = v;
        }
        opt_now = NULL;
        if (!qmp || strncmp(qmp, "unix:", 5) != 0) {
                fprintf(stderr, "vhp-fake-qemu: -qmp unix:PATH,server=on,wait=off is required\n");
                return 1;
        }
        size_t plen = strcspn(qmp + 5, ",");
        if (plen >= sizeof(sa.sun_path))
                return 1;
        memcpy(sa.sun_path, qmp + 5, plen);
        if (logpath)
                cmdlog = fopen(logpath, "a");
        unlink(sa.sun_path);
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 16) < 0) {
                perror("vhp-fake-qemu: socket");
                return 1;
        }
        for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EINTR)
                                continue;
                        return 1;
                }
                bool go_on = serve(fd);
                close(fd);
                if (!go_on)
                        break;
        }
        unlink(sa.sun_path);
        return 0;
}
