/* VMM-neutral attach/detach/list over QMP (QEMU) or the crosvm CLI. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cleanup-types.h"
#include "errmsg.h"
#include "crosvm.h"
#include "qmp.h"
#include "vmm.h"

#define VMM_BACKOFF_START_MS 20
#define VMM_BACKOFF_MAX_MS 500
#define VMM_PORTS_MAX 256          /* pcie-root-ports examined */
#define VMM_PERIPHERALS_MAX 1024   /* devices accepted from one qom-list */
#define VMM_ERROR_MAX 1024

/* ---- small helpers ---- */


/* Hands a message over as the error text (taking ownership). */
static int take_error(char **ret_error, int r, char *msg) {
        if (ret_error) {
                free(*ret_error);
                *ret_error = msg;
        } else
                free(msg);
        return r;
}

static void clear_error(char **ret_error) {
        if (ret_error)
                *ret_error = NULL;
}

static const char *crosvm_bin_of(const struct vmm_opts *o) {
        return o && o->crosvm_bin ? o->crosvm_bin : CFG_DEFAULT_CROSVM;
}

static int timeout_of(const struct vmm_opts *o) {
        return o && o->timeout_ms > 0 ? o->timeout_ms : CFG_DEFAULT_QMP_TIMEOUT_MS;
}

static int detach_timeout_of(const struct vmm_opts *o) {
        return o && o->detach_timeout_ms > 0 ? o->detach_timeout_ms : CFG_DEFAULT_QMP_TIMEOUT_MS;
}

static void sleep_ms(int ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Copies src into dst, cut to fit. */
static void str_copy(char *dst, size_t len, const char *src) {
        size_t n = strnlen(src, len - 1);

        memcpy(dst, src, n);
        dst[n] = '\0';
}

static bool id_char_ok(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
               c == '.' || c == '_';
}

/* ---- ids ---- */

/* Writes prefix + s into buf, mapping ':' to '-' and, when sanitize, any other invalid byte to '_'.
 * Without sanitize an invalid byte is -EINVAL. */
static int id_compose(char *buf, size_t len, const char *prefix, const char *s, bool sanitize) {
        size_t n = strlen(prefix), max = len < VMM_ID_MAX ? len : VMM_ID_MAX;

        if (!s || !*s || n + strlen(s) + 1 > max)
                return -EINVAL;
        memcpy(buf, prefix, n);
        for (; *s; s++) {
                char c = *s == ':' ? '-' : *s;
                if (!id_char_ok(c) && !sanitize)
                        return -EINVAL;
                buf[n++] = id_char_ok(c) ? c : '_';
        }
        buf[n] = '\0';
        return 0;
}

static const char *basename_of(const char *path) {
        const char *slash = path ? strrchr(path, '/') : NULL;
        return slash ? slash + 1 : path;
}

int vmm_device_id(const struct dev *d, char *buf, size_t len) {
        switch (d->kind) {
        case DEV_USB:
                if (d->busnum <= 0 || d->devnum <= 0 || d->busnum > 999 || d->devnum > 999 || len < 16)
                        return -EINVAL;
                snprintf(buf, len, "vhp-usb-%03d-%03d", d->busnum, d->devnum);
                return 0;
        case DEV_PCI:
                return id_compose(buf, len, "vhp-pci-", d->pci_address, false);
        case DEV_EVDEV:
                return id_compose(buf, len, "vhp-evdev-", d->sysname ? d->sysname : basename_of(d->devnode), true);
        default:
                return -EINVAL;
        }
}

struct vmm_opts vmm_opts_from_cfg(const struct cfg_general *g) {
        return (struct vmm_opts){
                .timeout_ms = g->qmp_timeout_ms,
                .attach_retries = g->attach_retries,
                .crosvm_bin = g->crosvm,
                .detach_timeout_ms = g->qmp_timeout_ms,
        };
}

void vmm_list_clear(struct vmm_list *l) {
        free(l->items);
        l->items = NULL;
        l->n = 0;
}

static struct vmm_device *list_append(struct vmm_list *l) {
        struct vmm_device *items = realloc(l->items, (l->n + 1) * sizeof(*items));
        if (!items)
                return NULL;
        l->items = items;
        struct vmm_device *v = &items[l->n++];
        *v = (struct vmm_device){ .port = -1, .hostbus = -1, .hostaddr = -1 };
        return v;
}

/* ---- QEMU ---- */

static int qemu_open(const struct cfg_vm *vm, const struct vmm_opts *o, struct qmp **ret, char **ret_error) {
        int r = qmp_connect(vm->socket, timeout_of(o), ret);
        if (r == -EHOSTDOWN)
                return errmsg_set(ret_error, r, "VM %s is not running (no QMP answer on %s)", vm->name,
                                 vm->socket);
        if (r < 0)
                return errmsg_set(ret_error, r, "VM %s: QMP connection to %s failed: %s", vm->name, vm->socket,
                                 strerror(-r));
        return 0;
}

/* Runs a command; QEMU's error text lands in *ret_error, other failures are described. */
static int qemu_execute(struct qmp *q, const char *cmd, const cJSON *args, cJSON **ret, char **ret_class,
                        char **ret_error) {
        char *desc = NULL;
        int r = qmp_execute(q, cmd, args, ret, ret_class, &desc);
        if (r == -EREMOTEIO)
                return take_error(ret_error, r, desc);
        if (r < 0)
                return errmsg_set(ret_error, r, "QMP %s failed: %s", cmd, strerror(-r));
        return 0;
}

static int qemu_qom(struct qmp *q, const char *cmd, const char *path, const char *property, cJSON **ret,
                    char **ret_error) {
        _cleanup_cjson_ cJSON *args = cJSON_CreateObject();
        if (!args || !cJSON_AddStringToObject(args, "path", path))
                return -ENOMEM;
        if (property && !cJSON_AddStringToObject(args, "property", property))
                return -ENOMEM;
        return qemu_execute(q, cmd, args, ret, NULL, ret_error);
}

/* Classifies a device_add refusal. */
static int qemu_add_error(const char *msg) {
        if (!msg)
                return -EREMOTEIO;
        if (strcasestr(msg, "duplicate"))
                return -EEXIST;
        if (strstr(msg, "failed to get exclusive access"))
                return -EBUSY;
        return -EREMOTEIO;
}

static bool qemu_port_taken_error(const char *msg) {
        return msg && (strstr(msg, "already occupied by") || strstr(msg, "not available for"));
}

static int qemu_device_add(struct qmp *q, const cJSON *args, char **ret_error) {
        char *msg = NULL;
        int r = qemu_execute(q, "device_add", args, NULL, NULL, &msg);
        if (r == -EREMOTEIO)
                r = qemu_add_error(msg);
        return take_error(ret_error, r, msg);
}

static int qemu_attach_usb(const struct cfg_vm *vm, const struct vmm_opts *o, const struct dev *d,
                           const char *id, char **ret_error) {
        _cleanup_cjson_ cJSON *args = cJSON_CreateObject();
        if (!args || !cJSON_AddStringToObject(args, "driver", "usb-host") ||
            !cJSON_AddNumberToObject(args, "hostbus", d->busnum) ||
            !cJSON_AddNumberToObject(args, "hostaddr", d->devnum) || !cJSON_AddStringToObject(args, "id", id))
                return -ENOMEM;

        int retries = o && o->attach_retries > 0 ? o->attach_retries : 0;
        int delay = VMM_BACKOFF_START_MS;
        for (int attempt = 0;; attempt++) {
                _cleanup_qmp_ struct qmp *q = NULL;
                char *msg = NULL;
                int r = qemu_open(vm, o, &q, ret_error);
                if (r < 0)
                        return r;
                r = qemu_device_add(q, args, &msg);
                /* QEMU's libusb sees the device only once udev has handled it: retry that. */
                bool not_yet = r == -EREMOTEIO && msg && strstr(msg, "failed to find host usb device");
                if (!not_yet || attempt >= retries)
                        return take_error(ret_error, r, msg);
                free(msg);
                qmp_close(TAKE_PTR(q)); /* do not hold the monitor while waiting */
                sleep_ms(delay);
                delay = delay * 2 > VMM_BACKOFF_MAX_MS ? VMM_BACKOFF_MAX_MS : delay * 2;
        }
}

static int strverscmp_p(const void *a, const void *b) {
        return strverscmp(*(char *const *)a, *(char *const *)b);
}

static void free_strv(char **v, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

/* Returns the name of the QEMU type in a "child<TYPE>" qom-list entry, or NULL. */
static const char *child_type(const cJSON *entry, char *buf, size_t len) {
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(entry, "type"));
        size_t n;

        if (!t || strncmp(t, "child<", 6) != 0 || (n = strlen(t)) < 8 || t[n - 1] != '>' || n - 7 >= len)
                return NULL;
        memcpy(buf, t + 6, n - 7);
        buf[n - 7] = '\0';
        return buf;
}

/* A usable QEMU id from qom-list: bounded and free of '/'. */
static const char *entry_name(const cJSON *entry) {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(entry, "name"));
        if (!name || !*name || strlen(name) >= VMM_ID_MAX || strchr(name, '/'))
                return NULL;
        return name;
}

/* Lists the ids of the pcie-root-ports in /machine/peripheral, in natural order (rp2 before rp10). */
static int qemu_list_ports(struct qmp *q, char ***ret, size_t *ret_n, char **ret_error) {
        _cleanup_cjson_ cJSON *list = NULL;
        int r = qemu_qom(q, "qom-list", "/machine/peripheral", NULL, &list, ret_error);
        if (r < 0)
                return r;

        char **ports = calloc(VMM_PORTS_MAX, sizeof(*ports));
        size_t n = 0;
        const cJSON *e;
        if (!ports)
                return -ENOMEM;
        cJSON_ArrayForEach(e, list) {
                char type[64];
                const char *name = entry_name(e);
                if (!name || !child_type(e, type, sizeof(type)) || strcmp(type, "pcie-root-port") != 0)
                        continue;
                if (n == VMM_PORTS_MAX)
                        break;
                if (!(ports[n] = strdup(name))) {
                        free_strv(ports, n);
                        return -ENOMEM;
                }
                n++;
        }
        qsort(ports, n, sizeof(*ports), strverscmp_p);
        *ret = ports;
        *ret_n = n;
        return 0;
}

/* A port is free when its bus (/machine/peripheral/P/P) lists no child[...] link. Returns 1 free,
 * 0 taken, or -errno. */
static int qemu_port_free(struct qmp *q, const char *port, char **ret_error) {
        _cleanup_free_ char *path = NULL;
        _cleanup_cjson_ cJSON *list = NULL;
        const cJSON *e;

        if (asprintf(&path, "/machine/peripheral/%s/%s", port, port) < 0)
                return -ENOMEM;
        int r = qemu_qom(q, "qom-list", path, NULL, &list, ret_error);
        if (r < 0)
                return r;
        cJSON_ArrayForEach(e, list) {
                const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "name"));
                if (name && strncmp(name, "child[", 6) == 0)
                        return 0;
        }
        return 1;
}

/* Tries the free pcie-root-ports in order; "occupied" refusals move on to the next one. */
static int qemu_add_to_free_port(struct qmp *q, cJSON *args, const char *vm_name, struct vmm_attachment *ret,
                                 char **ret_error) {
        char **ports = NULL;
        size_t n = 0;
        int r = qemu_list_ports(q, &ports, &n, ret_error);
        if (r < 0)
                return r;

        r = -ENOSPC;
        for (size_t i = 0; i < n; i++) {
                int f = qemu_port_free(q, ports[i], ret_error);
                if (f < 0) {
                        r = f;
                        break;
                }
                if (f == 0)
                        continue;
                cJSON_DeleteItemFromObjectCaseSensitive(args, "bus");
                if (!cJSON_AddStringToObject(args, "bus", ports[i])) {
                        r = -ENOMEM;
                        break;
                }
                char *msg = NULL;
                r = qemu_device_add(q, args, &msg);
                if (r == -EREMOTEIO && qemu_port_taken_error(msg)) {
                        free(msg);
                        r = -ENOSPC;
                        continue;
                }
                take_error(ret_error, r, msg);
                if (r == 0)
                        str_copy(ret->bus, sizeof(ret->bus), ports[i]);
                break;
        }
        free_strv(ports, n);
        if (r == -ENOSPC)
                return errmsg_set(ret_error, r, "VM %s has no free pcie-root-port", vm_name);
        return r;
}

static int qemu_attach_pci_like(const struct cfg_vm *vm, const struct vmm_opts *o, const struct dev *d,
                                const char *id, bool root_bus, struct vmm_attachment *ret, char **ret_error) {
        _cleanup_cjson_ cJSON *args = cJSON_CreateObject();
        bool pci = d->kind == DEV_PCI;
        const char *value = pci ? d->pci_address : d->devnode;

        if (!value)
                return errmsg_set(ret_error, -EINVAL, "device has no %s", pci ? "PCI address" : "device node");
        if (!args || !cJSON_AddStringToObject(args, "driver", pci ? "vfio-pci" : "virtio-input-host-pci") ||
            !cJSON_AddStringToObject(args, pci ? "host" : "evdev", value) ||
            !cJSON_AddStringToObject(args, "id", id))
                return -ENOMEM;

        _cleanup_qmp_ struct qmp *q = NULL;
        int r = qemu_open(vm, o, &q, ret_error);
        if (r < 0)
                return r;
        if (root_bus)
                return qemu_device_add(q, args, ret_error);
        if (!cJSON_AddStringToObject(args, "addr", "0"))
                return -ENOMEM;
        return qemu_add_to_free_port(q, args, vm->name, ret, ret_error);
}

static int qemu_attach(const struct cfg_vm *vm, const struct vmm_opts *o, const struct dev *d, bool root_bus,
                       struct vmm_attachment *ret, char **ret_error) {
        int r = vmm_device_id(d, ret->id, sizeof(ret->id));
        if (r < 0)
                return errmsg_set(ret_error, r, "device has no usable id");
        if (d->kind == DEV_USB)
                return qemu_attach_usb(vm, o, d, ret->id, ret_error);
        return qemu_attach_pci_like(vm, o, d, ret->id, root_bus, ret, ret_error);
}

static int qemu_detach(const struct cfg_vm *vm, const struct vmm_opts *o, const char *id, char **ret_error) {
        _cleanup_cjson_ cJSON *args = cJSON_CreateObject();
        _cleanup_free_ char *cls = NULL;
        _cleanup_qmp_ struct qmp *q = NULL;

        if (!args || !cJSON_AddStringToObject(args, "id", id))
                return -ENOMEM;
        int r = qemu_open(vm, o, &q, ret_error);
        if (r < 0)
                return r;
        char *msg = NULL;
        r = qemu_execute(q, "device_del", args, NULL, &cls, &msg);
        if (r == -EREMOTEIO && ((cls && strcmp(cls, "DeviceNotFound") == 0) || (msg && strstr(msg, "not found"))))
                r = -ENOENT;
        else if (r == -EREMOTEIO && msg && strstr(msg, "in the process of unplug"))
                r = -EINPROGRESS; /* an earlier device_del still waits for the guest */
        if (r < 0)
                return take_error(ret_error, r, msg);

        r = qmp_wait_event(q, "DEVICE_DELETED", id, detach_timeout_of(o), NULL);
        if (r == -ETIMEDOUT)
                return errmsg_set(ret_error, -EINPROGRESS,
                                 "VM %s accepted device_del of %s but has not released it within %d ms",
                                 vm->name, id, detach_timeout_of(o));
        if (r < 0)
                return errmsg_set(ret_error, r, "waiting for DEVICE_DELETED of %s failed: %s", id, strerror(-r));
        return 0;
}

static enum dev_kind kind_of_driver(const char *driver) {
        if (strcmp(driver, "usb-host") == 0)
                return DEV_USB;
        if (strcmp(driver, "vfio-pci") == 0)
                return DEV_PCI;
        if (strcmp(driver, "virtio-input-host-pci") == 0)
                return DEV_EVDEV;
        return DEV_UNKNOWN;
}

static int qemu_get_int(struct qmp *q, const char *path, const char *prop, int *ret, char **ret_error) {
        _cleanup_cjson_ cJSON *v = NULL;
        int r = qemu_qom(q, "qom-get", path, prop, &v, ret_error);
        if (r < 0)
                return r;
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 65535)
                return errmsg_set(ret_error, -EPROTO, "qom-get %s %s: not a small integer", path, prop);
        *ret = v->valueint;
        return 0;
}

static int qemu_get_str(struct qmp *q, const char *path, const char *prop, char *buf, size_t len,
                        char **ret_error) {
        _cleanup_cjson_ cJSON *v = NULL;
        int r = qemu_qom(q, "qom-get", path, prop, &v, ret_error);
        if (r < 0)
                return r;
        if (!cJSON_IsString(v))
                return errmsg_set(ret_error, -EPROTO, "qom-get %s %s: not a string", path, prop);
        str_copy(buf, len, v->valuestring);
        return 0;
}

/* Reads what identifies the host device behind a peripheral of a kind vhotplug manages. */
static int qemu_fill_device(struct qmp *q, struct vmm_device *v, char **ret_error) {
        _cleanup_free_ char *path = NULL;
        int r = 0;

        if (asprintf(&path, "/machine/peripheral/%s", v->id) < 0)
                return -ENOMEM;
        if (v->kind == DEV_USB) {
                r = qemu_get_int(q, path, "hostbus", &v->hostbus, ret_error);
                if (r >= 0)
                        r = qemu_get_int(q, path, "hostaddr", &v->hostaddr, ret_error);
        } else if (v->kind == DEV_PCI)
                r = qemu_get_str(q, path, "host", v->host, sizeof(v->host), ret_error);
        else if (v->kind == DEV_EVDEV)
                r = qemu_get_str(q, path, "evdev", v->evdev, sizeof(v->evdev), ret_error);
        return r;
}

static int qemu_list(const struct cfg_vm *vm, const struct vmm_opts *o, struct vmm_list *ret,
                     char **ret_error) {
        _cleanup_qmp_ struct qmp *q = NULL;
        _cleanup_cjson_ cJSON *list = NULL;
        const cJSON *e;

        int r = qemu_open(vm, o, &q, ret_error);
        if (r < 0)
                return r;
        r = qemu_qom(q, "qom-list", "/machine/peripheral", NULL, &list, ret_error);
        if (r < 0)
                return r;
        cJSON_ArrayForEach(e, list) {
                char type[128];
                const char *name = entry_name(e);
                if (!name || !child_type(e, type, sizeof(type)))
                        continue;
                if (ret->n == VMM_PERIPHERALS_MAX)
                        break;
                struct vmm_device *v = list_append(ret);
                if (!v)
                        return -ENOMEM;
                str_copy(v->id, sizeof(v->id), name);
                str_copy(v->driver, sizeof(v->driver), type);
                v->kind = kind_of_driver(type);
                v->ours = strncmp(name, "vhp-", 4) == 0;
                r = qemu_fill_device(q, v, ret_error);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- crosvm ---- */

static int crosvm_attach(const struct cfg_vm *vm, const struct vmm_opts *o, const struct dev *d,
                         struct vmm_attachment *ret, char **ret_error) {
        if (d->kind != DEV_USB)
                return errmsg_set(ret_error, -EOPNOTSUPP, "crosvm VM %s takes USB devices only", vm->name);
        if (!d->devnode)
                return errmsg_set(ret_error, -EINVAL, "USB device has no device node");
        return crosvm_usb_attach(crosvm_bin_of(o), vm->socket, d->devnode, timeout_of(o), &ret->port,
                                 ret_error);
}

static int crosvm_list(const struct cfg_vm *vm, const struct vmm_opts *o, struct vmm_list *ret,
                       char **ret_error) {
        _cleanup_free_ struct crosvm_usb_device *devs = NULL;
        size_t n = 0;

        int r = crosvm_usb_list(crosvm_bin_of(o), vm->socket, timeout_of(o), &devs, &n, ret_error);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                struct vmm_device *v = list_append(ret);
                if (!v)
                        return -ENOMEM;
                v->kind = DEV_USB;
                str_copy(v->driver, sizeof(v->driver), "usb");
                v->ours = true;
                v->port = devs[i].port;
                v->vendor_id = devs[i].vendor_id;
                v->product_id = devs[i].product_id;
        }
        return 0;
}

/* ---- dispatch ---- */

int vmm_attach(const struct cfg_vm *vm, const struct vmm_opts *o, const struct dev *d, bool root_bus,
               struct vmm_attachment *ret, char **ret_error) {
        clear_error(ret_error);
        *ret = (struct vmm_attachment){ .port = -1 };
        if (vm->type == VMM_CROSVM)
                return crosvm_attach(vm, o, d, ret, ret_error);
        return qemu_attach(vm, o, d, root_bus, ret, ret_error);
}

int vmm_detach(const struct cfg_vm *vm, const struct vmm_opts *o, const struct vmm_attachment *a,
               char **ret_error) {
        clear_error(ret_error);
        if (vm->type == VMM_CROSVM)
                return crosvm_usb_detach(crosvm_bin_of(o), vm->socket, a->port, timeout_of(o), ret_error);
        if (!a->id[0])
                return errmsg_set(ret_error, -EINVAL, "attachment has no QEMU device id");
        return qemu_detach(vm, o, a->id, ret_error);
}

int vmm_list(const struct cfg_vm *vm, const struct vmm_opts *o, struct vmm_list *ret, char **ret_error) {
        clear_error(ret_error);
        *ret = (struct vmm_list){ 0 };
        int r = vm->type == VMM_CROSVM ? crosvm_list(vm, o, ret, ret_error) : qemu_list(vm, o, ret, ret_error);
        if (r < 0)
                vmm_list_clear(ret);
        return r;
}
