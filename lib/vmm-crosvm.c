/* The crosvm back end of vmm: `crosvm usb attach|detach|list` through crosvm.h. crosvm has no
 * device ids: an attachment is its port. */
#include <errno.h>
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

static int crosvm_attach(struct vmm_conn *c, const struct dev *d, const char *id, bool root_bus,
                         struct vmm_attachment *ret, char **ret_error) {
        if (d->kind != DEV_USB)
                return errmsg_set(ret_error, -EOPNOTSUPP, "crosvm VM %s takes USB devices only", c->vm->name);
        if (!d->devnode)
                return errmsg_set(ret_error, -EINVAL, "USB device has no device node");
        return crosvm_usb_attach(crosvm_bin(c), c->vm->socket, d->devnode, vmm_timeout_ms(c), &ret->port,
                                 ret_error);
}

static int crosvm_detach(struct vmm_conn *c, const struct vmm_attachment *a, char **ret_error) {
        return crosvm_usb_detach(crosvm_bin(c), c->vm->socket, a->port, vmm_timeout_ms(c), ret_error);
}

static int crosvm_list(struct vmm_conn *c, struct vmm_list *ret, char **ret_error) {
        _cleanup_free_ struct crosvm_usb_device *devs = NULL;
        size_t n = 0;

        int r = crosvm_usb_list(crosvm_bin(c), c->vm->socket, vmm_timeout_ms(c), &devs, &n, ret_error);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                struct vmm_device *v = vmm_list_append(ret);
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


static int crosvm_has(struct vmm_conn *c, const struct vmm_attachment *a, char **ret_error) {
        struct vmm_list l = { 0 };
        int r = crosvm_list(c, &l, ret_error);

        for (size_t i = 0; r >= 0 && i < l.n; i++)
                if (l.items[i].port == a->port)
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
