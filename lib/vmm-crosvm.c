/* The crosvm back end of vmm: `crosvm usb attach|detach|list` and `crosvm vfio add|remove|list`
 * through crosvm.h. crosvm has no device ids: a USB attachment is its port, a PCI attachment the
 * device's sysfs path (what `crosvm vfio` takes).
 *
 * A guest that has not set up its xHCI controller yet (a crosvm started a moment ago) cannot take a
 * USB device: crosvm puts the device into a free port first, fails to tell the guest (its event
 * ring is not initialized), and answers no_available_port with status 0, leaving the port occupied
 * (devices/src/usb/xhci/usb_hub.rs: UsbPort::attach stores the backend before
 * send_device_connected_event fails). Each further try would fill one more port. So every USB
 * attach lists the ports before and, after a no_available_port, again: a port that appeared
 * between the two holds what this attempt left behind (the caller holds the VM lock, so no other
 * vhotplug attach ran in between), and only that port is detached again; the answer is then -EAGAIN
 * and the caller tries again after a back-off. A no_available_port that leaves no port behind
 * means every port of the device's speed is really taken: -ENOSPC, and no other device is touched.
 * (The older daemon detached every listed port and retried: that takes devices away from a
 * running guest, other VMs' choices and the user's included, to make room for one.) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "crosvm.h"
#include "errmsg.h"
#include "util.h"
#include "vmm-internal.h"

static const char *crosvm_bin(const struct vmm_conn *c) {
        return c->o.crosvm_bin ? c->o.crosvm_bin : CFG_DEFAULT_CROSVM;
}

/* crosvm has no connection to keep: each request runs `crosvm ... SOCKET`. A missing control
 * socket means the VM is not running; anything else (a stale socket) is for the request to find
 * out, as crosvm's "error socket failed". */
static int crosvm_connect(struct vmm_conn *c, char **ret_error) {
        struct stat st;

        if (lstat(c->vm->socket, &st) < 0)
                return errmsg_set(ret_error, -EHOSTDOWN, "VM %s is not running (no control socket %s)",
                                  c->vm->name, c->vm->socket);
        return 0;
}

static void drop_error(char **ret_error) {
        if (ret_error) {
                free(*ret_error);
                *ret_error = NULL;
        }
}

struct ports {
        struct crosvm_usb_device *devs;
        size_t n;
};

static void ports_clear(struct ports *p) {
        free(p->devs);
        *p = (struct ports){0};
}

static int ports_list(struct vmm_conn *c, struct ports *ret, char **ret_error) {
        *ret = (struct ports){0};
        return crosvm_usb_list(crosvm_bin(c), c->vm->socket, vmm_timeout_ms(c), &ret->devs, &ret->n,
                               ret_error);
}

static bool ports_have(const struct ports *p, int port) {
        for (size_t i = 0; i < p->n; i++)
                if (p->devs[i].port == port)
                        return true;
        return false;
}

/* After a no_available_port: frees the ports that appeared since before was listed and hold a
 * device with d's ids (when known). Returns how many it found (0: a real refusal), or -errno when
 * the ports could not be listed. *ret_ports names them ("3, 4"). */
static int free_left_behind(struct vmm_conn *c, const struct dev *d, const struct ports *before,
                            char *ret_ports, size_t len, char **ret_error) {
        struct ports after;
        int found = 0;
        int r = ports_list(c, &after, ret_error);

        if (r < 0)
                return r;
        ret_ports[0] = '\0';
        for (size_t i = 0; i < after.n; i++) {
                const struct crosvm_usb_device *p = &after.devs[i];
                _cleanup_free_ char *err = NULL;
                size_t used = strlen(ret_ports);

                if (ports_have(before, p->port) ||
                    (d->has_ids && (p->vendor_id != d->vendor_id || p->product_id != d->product_id)))
                        continue;
                /* crosvm may answer no_such_device here while the guest is not ready either; the
                 * port is emptied all the same (handle_detach_device takes the backend out first). */
                (void)crosvm_usb_detach(crosvm_bin(c), c->vm->socket, p->port, vmm_timeout_ms(c), &err);
                snprintf(ret_ports + used, len - used, "%s%d", used ? ", " : "", p->port);
                found++;
        }
        ports_clear(&after);
        return found;
}

static int crosvm_attach_usb(struct vmm_conn *c, const struct dev *d, struct vmm_attachment *ret,
                             char **ret_error) {
        struct ports before;
        char left[64];
        int r, found;

        if (!d->devnode)
                return errmsg_set(ret_error, -EINVAL, "USB device has no device node");
        r = ports_list(c, &before, ret_error);
        if (r < 0)
                return r;
        r = crosvm_usb_attach(crosvm_bin(c), c->vm->socket, d->devnode, vmm_timeout_ms(c), &ret->port,
                              ret_error);
        if (r == -ENOSPC) {
                drop_error(ret_error);
                found = free_left_behind(c, d, &before, left, sizeof(left), ret_error);
                if (found > 0)
                        r = errmsg_set(
                                ret_error, -EAGAIN,
                                "crosvm VM %s answered no_available_port and left the device on port %s: "
                                "its guest has not set up its USB controller yet (still booting?); the "
                                "port was freed again",
                                c->vm->name, left);
                else if (found == 0)
                        r = errmsg_set(
                                ret_error, -ENOSPC,
                                "crosvm VM %s answered no_available_port: every USB port for the "
                                "device's speed is taken (%zu in use); no device was taken out to make "
                                "room",
                                c->vm->name, before.n);
                else
                        r = found;
        }
        ports_clear(&before);
        return r;
}

static int crosvm_attach(struct vmm_conn *c, const struct dev *d, const char *id, bool root_bus,
                         struct vmm_attachment *ret, char **ret_error) {
        int r;

        switch (d->kind) {
        case DEV_USB:
                return crosvm_attach_usb(c, d, ret, ret_error);
        case DEV_PCI:
                r = crosvm_vfio_path(d->pci_address, ret->id, sizeof(ret->id));
                if (r < 0)
                        return errmsg_set(ret_error, -EINVAL, "PCI device has no valid address");
                return crosvm_vfio_add(crosvm_bin(c), c->vm->socket, d->pci_address, vmm_timeout_ms(c),
                                       ret_error);
        default:
                return errmsg_set(ret_error, -EOPNOTSUPP,
                                  "crosvm VM %s takes input devices only on its command line (--input)",
                                  c->vm->name);
        }
}

/* The PCI address behind a recorded crosvm id (a sysfs path), or NULL. */
static const char *pci_of_id(const char *id) {
        size_t n = strlen(CROSVM_VFIO_SYSFS);
        return strncmp(id, CROSVM_VFIO_SYSFS, n) == 0 && id[n] ? id + n : NULL;
}

static int crosvm_detach(struct vmm_conn *c, const struct vmm_attachment *a, char **ret_error) {
        const char *pci = pci_of_id(a->id);

        if (pci)
                return crosvm_vfio_remove(crosvm_bin(c), c->vm->socket, pci, vmm_timeout_ms(c), ret_error);
        if (a->port < 0)
                return errmsg_set(ret_error, -EOPNOTSUPP,
                                  "crosvm VM %s cannot give back a device it took on its command line",
                                  c->vm->name);
        return crosvm_usb_detach(crosvm_bin(c), c->vm->socket, a->port, vmm_timeout_ms(c), ret_error);
}

static int list_pci(struct vmm_conn *c, struct vmm_list *ret, char **ret_error) {
        _cleanup_free_ char(*addrs)[PCI_ADDRESS_LEN] = NULL;
        size_t n = 0;
        int r = crosvm_vfio_list(crosvm_bin(c), c->vm->socket, vmm_timeout_ms(c), &addrs, &n, ret_error);

        if (r == -EOPNOTSUPP) {
                drop_error(ret_error);
                ret->unlisted |= 1u << DEV_PCI;
                return 0;
        }
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                struct vmm_device *v = vmm_list_append(ret);
                if (!v)
                        return -ENOMEM;
                v->kind = DEV_PCI;
                str_copy(v->driver, sizeof(v->driver), "vfio");
                v->ours = true;
                str_copy(v->host, sizeof(v->host), addrs[i]);
                (void)crosvm_vfio_path(addrs[i], v->id, sizeof(v->id));
        }
        return 0;
}

static int list_usb(struct vmm_conn *c, struct vmm_list *ret, char **ret_error) {
        struct ports p;
        int r = ports_list(c, &p, ret_error);

        if (r < 0)
                return r;
        for (size_t i = 0; i < p.n; i++) {
                struct vmm_device *v = vmm_list_append(ret);
                if (!v) {
                        ports_clear(&p);
                        return -ENOMEM;
                }
                v->kind = DEV_USB;
                str_copy(v->driver, sizeof(v->driver), "usb");
                v->ours = true;
                v->port = p.devs[i].port;
                v->vendor_id = p.devs[i].vendor_id;
                v->product_id = p.devs[i].product_id;
        }
        ports_clear(&p);
        return 0;
}

static int crosvm_list(struct vmm_conn *c, struct vmm_list *ret, char **ret_error) {
        int r = list_usb(c, ret, ret_error);

        ret->unlisted |= 1u << DEV_EVDEV;
        return r < 0 ? r : list_pci(c, ret, ret_error);
}

static int crosvm_has(struct vmm_conn *c, const struct vmm_attachment *a, char **ret_error) {
        const char *pci = pci_of_id(a->id);
        struct vmm_list l = {0};
        int r;

        if (!pci && a->port < 0)
                return 1; /* given on its command line (an input device): crosvm cannot tell */
        r = pci ? list_pci(c, &l, ret_error) : list_usb(c, &l, ret_error);
        if (r >= 0 && pci && (l.unlisted & (1u << DEV_PCI)))
                r = 1;
        for (size_t i = 0; r == 0 && i < l.n; i++)
                if (pci ? strcmp(l.items[i].id, a->id) == 0 : l.items[i].port == a->port)
                        r = 1;
        vmm_list_clear(&l);
        return r;
}

const struct vmm_backend vmm_crosvm_backend = {
        .connect = crosvm_connect,
        .attach = crosvm_attach,
        .detach = crosvm_detach,
        .list = crosvm_list,
        .has = crosvm_has,
};
