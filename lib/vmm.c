/* The VMM-neutral face of attach/detach/list: device ids, options, and dispatch to the back end
 * of the VM's type. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crosvm.h"
#include "errmsg.h"
#include "vmm-internal.h"

static const struct vmm_backend *backend_of(const struct cfg_vm *vm) {
        return vm->type == VMM_CROSVM ? &vmm_crosvm_backend : &vmm_qemu_backend;
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
                return id_compose(buf, len, "vhp-evdev-", d->sysname ? d->sysname : basename_of(d->devnode),
                                  true);
        default:
                return -EINVAL;
        }
}

int vmm_attachment_id(const struct cfg_vm *vm, const struct dev *d, char *buf, size_t len) {
        if (vm->type == VMM_QEMU)
                return vmm_device_id(d, buf, len);
        if (d->kind == DEV_PCI)
                return crosvm_vfio_path(d->pci_address, buf, MIN(len, (size_t)VMM_ID_MAX)) < 0 ? -EINVAL : 0;
        if (len == 0)
                return -EINVAL;
        buf[0] = '\0';
        return 0;
}

struct vmm_opts vmm_opts_from_cfg(const struct cfg_general *g) {
        return (struct vmm_opts){
                .timeout_ms = g->qmp_timeout_ms,
                .crosvm_bin = g->crosvm,
                .detach_timeout_ms = g->qmp_timeout_ms,
        };
}

int vmm_timeout_ms(const struct vmm_conn *c) {
        return c->o.timeout_ms > 0 ? c->o.timeout_ms : CFG_DEFAULT_QMP_TIMEOUT_MS;
}

int vmm_detach_timeout_ms(const struct vmm_conn *c) {
        return c->o.detach_timeout_ms > 0 ? c->o.detach_timeout_ms : CFG_DEFAULT_QMP_TIMEOUT_MS;
}

void vmm_list_clear(struct vmm_list *l) {
        free(l->items);
        *l = (struct vmm_list){0};
}

struct vmm_device *vmm_list_append(struct vmm_list *l) {
        struct vmm_device *items = realloc(l->items, (l->n + 1) * sizeof(*items));
        if (!items)
                return NULL;
        l->items = items;
        struct vmm_device *v = &items[l->n++];
        *v = (struct vmm_device){.port = -1, .hostbus = -1, .hostaddr = -1};
        return v;
}

int vmm_connect(const struct cfg_vm *vm, const struct vmm_opts *o, struct vmm_conn **ret, char **ret_error) {
        struct vmm_conn *c;
        int r;

        if (ret_error)
                *ret_error = NULL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->vm = vm;
        c->o = o ? *o : (struct vmm_opts){0};
        r = backend_of(vm)->connect(c, ret_error);
        if (r < 0) {
                vmm_disconnect(c);
                return r;
        }
        *ret = c;
        return 0;
}

void vmm_disconnect(struct vmm_conn *c) {
        if (!c)
                return;
        if (backend_of(c->vm)->disconnect)
                backend_of(c->vm)->disconnect(c);
        free(c);
}

const struct cfg_vm *vmm_conn_vm(const struct vmm_conn *c) {
        return c->vm;
}

int vmm_attach(struct vmm_conn *c, const struct dev *d, const char *id, bool root_bus,
               struct vmm_attachment *ret, char **ret_error) {
        if (ret_error)
                *ret_error = NULL;
        *ret = (struct vmm_attachment){.port = -1};
        return backend_of(c->vm)->attach(c, d, id, root_bus, ret, ret_error);
}

int vmm_detach(struct vmm_conn *c, const struct vmm_attachment *a, char **ret_error) {
        if (ret_error)
                *ret_error = NULL;
        return backend_of(c->vm)->detach(c, a, ret_error);
}

int vmm_has(struct vmm_conn *c, const struct vmm_attachment *a, char **ret_error) {
        if (ret_error)
                *ret_error = NULL;
        return backend_of(c->vm)->has(c, a, ret_error);
}

int vmm_list(struct vmm_conn *c, struct vmm_list *ret, char **ret_error) {
        int r;

        if (ret_error)
                *ret_error = NULL;
        *ret = (struct vmm_list){0};
        r = backend_of(c->vm)->list(c, ret, ret_error);
        if (r < 0)
                vmm_list_clear(ret);
        return r;
}
