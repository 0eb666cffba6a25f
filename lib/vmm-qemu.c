/* The QEMU back end of vmm: QMP commands over one connection (qmp.h).
 *   USB:   device_add usb-host hostbus/hostaddr
 *   PCI:   device_add vfio-pci host=ADDR into a free pcie-root-port (or the root bus)
 *   evdev: device_add virtio-input-host-pci evdev=NODE, placed like PCI
 *   detach: device_del, then DEVICE_DELETED; list: qom-list /machine/peripheral + qom-get. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cleanup-types.h"
#include "errmsg.h"
#include "qmp.h"
#include "util.h"
#include "vmm-internal.h"

#define VMM_PORTS_MAX 256        /* pcie-root-ports examined */
#define VMM_PERIPHERALS_MAX 1024 /* devices accepted from one qom-list */

/* Words for what went wrong in the conversation itself. */
static const char *qemu_strerror(int r) {
        switch (r) {
        case -EMSGSIZE:
                return "QEMU sent more than " QMP_READ_MAX_TEXT " without answering (an event flood?)";
        case -EPROTO:
                return "QEMU answered with something that is not QMP";
        case -ETIMEDOUT:
                return "QEMU did not answer in time";
        case -EHOSTDOWN:
                return "QEMU closed the connection";
        default:
                return strerror(-r);
        }
}

static int qemu_connect(struct vmm_conn *c, char **ret_error) {
        int r = qmp_connect(c->vm->socket, vmm_timeout_ms(c), &c->qmp);
        if (r == -EHOSTDOWN)
                return errmsg_set(ret_error, r, "VM %s is not running (no QMP answer on %s)", c->vm->name,
                                  c->vm->socket);
        if (r == -ETIMEDOUT)
                return errmsg_set(
                        ret_error, r,
                        "VM %s could not be reached: no QMP greeting on %s within %d ms (QEMU hung, "
                        "or another client holds its monitor)",
                        c->vm->name, c->vm->socket, vmm_timeout_ms(c));
        if (r < 0)
                return errmsg_set(ret_error, r, "VM %s: QMP connection to %s failed: %s", c->vm->name,
                                  c->vm->socket, qemu_strerror(r));
        return 0;
}

/* Runs a command; QEMU's error text lands in *ret_error, other failures are described. */
static int qemu_execute(struct qmp *q, const char *cmd, const cJSON *args, cJSON **ret, char **ret_class,
                        char **ret_error) {
        char *desc = NULL;
        int r = qmp_execute(q, cmd, args, ret, ret_class, &desc);
        if (r == -EREMOTEIO)
                return errmsg_take(ret_error, r, desc);
        if (r < 0)
                return errmsg_set(ret_error, r, "QMP %s failed: %s", cmd, qemu_strerror(r));
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
        return errmsg_take(ret_error, r, msg);
}

static int qemu_attach_usb(struct vmm_conn *c, const struct dev *d, const char *id, char **ret_error) {
        _cleanup_cjson_ cJSON *args = cJSON_CreateObject();
        char *msg = NULL;
        int r;

        if (!args || !cJSON_AddStringToObject(args, "driver", "usb-host") ||
            !cJSON_AddNumberToObject(args, "hostbus", d->busnum) ||
            !cJSON_AddNumberToObject(args, "hostaddr", d->devnum) ||
            !cJSON_AddStringToObject(args, "id", id))
                return -ENOMEM;
        r = qemu_device_add(c->qmp, args, &msg);
        /* QEMU's libusb sees the device only once udev has handled it. */
        if (r == -EREMOTEIO && msg && strstr(msg, "failed to find host usb device"))
                r = -EAGAIN;
        return errmsg_take(ret_error, r, msg);
}

static int strverscmp_p(const void *a, const void *b) {
        return strverscmp(*(char *const *)a, *(char *const *)b);
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

        char **ports = calloc(VMM_PORTS_MAX + 1, sizeof(*ports));
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
                        strv_free(ports);
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
                errmsg_take(ret_error, r, msg);
                if (r == 0)
                        str_copy(ret->bus, sizeof(ret->bus), ports[i]);
                break;
        }
        strv_free(ports);
        if (r == -ENOSPC)
                return errmsg_set(ret_error, r, "VM %s has no free pcie-root-port", vm_name);
        return r;
}

static int qemu_attach_pci_like(struct vmm_conn *c, const struct dev *d, const char *id, bool root_bus,
                                struct vmm_attachment *ret, char **ret_error) {
        _cleanup_cjson_ cJSON *args = cJSON_CreateObject();
        bool pci = d->kind == DEV_PCI;
        const char *value = pci ? d->pci_address : d->devnode;

        if (!value)
                return errmsg_set(ret_error, -EINVAL, "device has no %s",
                                  pci ? "PCI address" : "device node");
        if (!args || !cJSON_AddStringToObject(args, "driver", pci ? "vfio-pci" : "virtio-input-host-pci") ||
            !cJSON_AddStringToObject(args, pci ? "host" : "evdev", value) ||
            !cJSON_AddStringToObject(args, "id", id))
                return -ENOMEM;
        if (root_bus)
                return qemu_device_add(c->qmp, args, ret_error);
        if (!cJSON_AddStringToObject(args, "addr", "0"))
                return -ENOMEM;
        return qemu_add_to_free_port(c->qmp, args, c->vm->name, ret, ret_error);
}

static int qemu_attach(struct vmm_conn *c, const struct dev *d, const char *id, bool root_bus,
                       struct vmm_attachment *ret, char **ret_error) {
        if (!id || !*id)
                return errmsg_set(ret_error, -EINVAL, "device has no usable id");
        str_copy(ret->id, sizeof(ret->id), id);
        if (d->kind == DEV_USB)
                return qemu_attach_usb(c, d, id, ret_error);
        return qemu_attach_pci_like(c, d, id, root_bus, ret, ret_error);
}

/* device_del, without waiting for the guest: the monitor serves one client at a time, and a
 * sibling's detach must not queue behind this one's DEVICE_DELETED (a USB unplug takes ~50 ms).
 * 0 when the event came with the reply, 1 when it is still to come (the caller confirms later
 * with qemu_has()). */
static int qemu_detach(struct vmm_conn *c, const struct vmm_attachment *a, char **ret_error) {
        _cleanup_cjson_ cJSON *args = cJSON_CreateObject();
        _cleanup_free_ char *cls = NULL;
        const char *id = a->id;
        char *msg = NULL;
        int r;

        if (!id[0])
                return errmsg_set(ret_error, -EINVAL, "attachment has no QEMU device id");
        if (!args || !cJSON_AddStringToObject(args, "id", id))
                return -ENOMEM;
        r = qemu_execute(c->qmp, "device_del", args, NULL, &cls, &msg);
        if (r == -EREMOTEIO &&
            ((cls && strcmp(cls, "DeviceNotFound") == 0) || (msg && strstr(msg, "not found"))))
                return errmsg_take(ret_error, -ENOENT, msg);
        if (r == -EREMOTEIO && msg && strstr(msg, "in the process of unplug")) {
                free(msg); /* an earlier device_del still waits for the guest: the same wait */
                return 1;
        }
        if (r < 0)
                return errmsg_take(ret_error, r, msg);
        r = qmp_wait_event(c->qmp, "DEVICE_DELETED", id, 0, NULL); /* only what has arrived */
        if (r == -ETIMEDOUT)
                return 1;
        if (r < 0)
                return errmsg_set(ret_error, r, "reading QEMU's events after device_del of %s failed: %s",
                                  id, qemu_strerror(r));
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

static int qemu_list(struct vmm_conn *c, struct vmm_list *ret, char **ret_error) {
        _cleanup_cjson_ cJSON *list = NULL;
        struct qmp *q = c->qmp;
        const cJSON *e;

        int r = qemu_qom(q, "qom-list", "/machine/peripheral", NULL, &list, ret_error);
        if (r < 0)
                return r;
        cJSON_ArrayForEach(e, list) {
                char type[128];
                const char *name = entry_name(e);
                if (!name || !child_type(e, type, sizeof(type)))
                        continue;
                if (ret->n == VMM_PERIPHERALS_MAX)
                        break;
                struct vmm_device *v = vmm_list_append(ret);
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

static int qemu_has(struct vmm_conn *c, const struct vmm_attachment *a, char **ret_error) {
        _cleanup_free_ char *path = NULL, *cls = NULL, *msg = NULL;
        _cleanup_cjson_ cJSON *args = cJSON_CreateObject(), *list = NULL;
        int r;

        if (!a->id[0])
                return errmsg_set(ret_error, -EINVAL, "attachment has no QEMU device id");
        if (asprintf(&path, "/machine/peripheral/%s", a->id) < 0 || !args ||
            !cJSON_AddStringToObject(args, "path", path))
                return -ENOMEM;
        r = qemu_execute(c->qmp, "qom-list", args, &list, &cls, &msg);
        if (r == -EREMOTEIO && cls && strcmp(cls, "DeviceNotFound") == 0)
                return 0;
        if (r < 0)
                return errmsg_take(ret_error, r, TAKE_PTR(msg));
        return 1;
}

static void qemu_disconnect(struct vmm_conn *c) {
        qmp_close(c->qmp);
        c->qmp = NULL;
}

const struct vmm_backend vmm_qemu_backend = {
        .connect = qemu_connect,
        .disconnect = qemu_disconnect,
        .attach = qemu_attach,
        .detach = qemu_detach,
        .list = qemu_list,
        .has = qemu_has,
};
