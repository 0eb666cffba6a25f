/* The control plane's operations, once for every front end (vhotplug-api, and through it
 * vhotplugctl): list the claimed devices, attach (moving between VMs, storing the choice, clearing
 * "keep detached"), detach and keep detached, by device node, bus+port, vid+pid, PCI address,
 * vid+did or tag; what each VM has (status), why a device is where it is, and the history.
 *
 * Each device is acted on under its device lock, through the attach/detach transaction (xact.h),
 * as the helper and reconcile act: no operation talks to a VM or writes an attachment itself. The
 * database remembers the user's choices, user detaches and devices waiting for a choice. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xact.h"

struct udev;

struct ops_ctx {
        struct xact_ctx x; /* cfg, db_path, no_strict_perms, mountinfo, requested_by */
        struct udev *udev; /* the caller's (libudev contexts are not shared between threads) */
};

/* How a request names its devices. */
enum ops_by {
        OPS_BY_NODE,     /* USB device node: "/dev/bus/usb/001/005" */
        OPS_BY_BUS_PORT, /* USB bus number and root port */
        OPS_BY_IDS,      /* vendor and product (PCI: device) id */
        OPS_BY_ADDRESS,  /* PCI address */
        OPS_BY_TAG,      /* every present device whose entry has the tag */
};

struct ops_selector {
        enum dev_kind kind; /* DEV_USB or DEV_PCI */
        enum ops_by by;
        const char *node;
        int bus, port;
        uint16_t vendor_id, product_id;
        char address[PCI_ADDRESS_LEN];
        const char *tag;
};

/* Where a claimed device is, as the records say. */
enum ops_state {
        OPS_ON_HOST, /* not attached (its VM may be down, or no event reached us) */
        OPS_ATTACHED,
        OPS_UNDER_WAY,     /* an open record not attached: pending (VM down), attaching, detaching */
        OPS_WAITING,       /* waiting for the user to choose a VM */
        OPS_KEPT_DETACHED, /* the user detached it: stays on the host */
};

/* "on-host", "attached", ... as the API and vhotplugctl show it. */
const char *ops_state_name(enum ops_state s);

struct ops_device {
        struct dev *dev;          /* owned */
        struct rule_decision dec; /* with the stored choice applied */
        enum ops_state state;
        char record_state[12];        /* the open record's state ("pending", ...), "" when none */
        char vm[CFG_MAX_VM_NAME + 1]; /* attached to (record) or chosen for; "" when none */
        bool iommu_member;            /* PCI: listed because it shares a claimed device's IOMMU
                                       * group (pciIommuAddAll) */
};

struct ops_list {
        struct ops_device *items;
        size_t n;
};

void ops_list_clear(struct ops_list *l);

/* Lists the present devices of kind (DEV_USB or DEV_PCI) that an entry claims (never hubs nor
 * devices holding a host-required mount), sorted (USB by devpath, PCI by address). disconnected:
 * 1 only the ones kept detached, 0 only the others, -1 all; tag: only those of entries with that
 * tag (NULL: any). Returns 0, or -errno with *ret_error set. */
int ops_list(const struct ops_ctx *c, enum dev_kind kind, int disconnected, const char *tag,
             struct ops_list *ret, char **ret_error);

/* What became of one device of a request. */
struct ops_result {
        char what[160];    /* dev_describe() */
        char devnode[64];  /* USB: the device node; PCI: the address */
        char devpath[512]; /* udev's DEVPATH */
        struct xact_result res;
};

struct ops_report {
        struct ops_result *items;
        size_t n;
        size_t n_failed;
};

void ops_report_clear(struct ops_report *r);

/* Attaches the selected devices now: to vm when given (it must be one of the device's entry's VMs;
 * the choice is stored), else to the stored choice, else to the entry's first VM. A device in
 * another VM leaves it first; "keep detached" is cleared; a device already there is left alone.
 * By tag, every present device of the entries with that tag (vm must be NULL). Returns 0 when every
 * device ended attached, already there, or pending (its VM is not running); else -errno with
 * *ret_error set: -ENOENT nothing found (or no such VM or tag), -ENOTUNIQ the selector names
 * several devices, -EPERM the rules refuse the device or the VM, -EREMOTEIO a VM refused, or the
 * error of the database or a lock. ret (may be NULL) says what became of each device. */
int ops_attach(const struct ops_ctx *c, const struct ops_selector *sel, const char *vm,
               struct ops_report *ret, char **ret_error);

/* Detaches the selected devices now and keeps them on the host (across replugs and reboots) until
 * an attach by request. A device that is not attached is only marked. Returns as ops_attach(). */
int ops_detach(const struct ops_ctx *c, const struct ops_selector *sel, struct ops_report *ret,
               char **ret_error);

/* Finds one present device by what a user types: a device node, a devpath or /sys path, a USB
 * sysname ("1-3.2") or a PCI address. Returns 0 and the device (caller frees), or -ENOENT with
 * *ret_error set. */
int ops_find_device(const struct ops_ctx *c, const char *spec, struct dev **ret, char **ret_error);

/* Why a device is where it is. */
struct ops_why {
        struct ops_device d; /* decision and state */
        bool has_choice;
        struct db_choice_info choice;
        bool has_prompt;
        struct db_prompt prompt;
        bool has_record;
        struct db_attachment record;
        struct db_history *history; /* newest rows, oldest first */
        size_t n_history;
};

void ops_why_clear(struct ops_why *w);

/* Fills w for the device spec names (ops_find_device), with its last max_history history rows. */
int ops_why(const struct ops_ctx *c, const char *spec, size_t max_history, struct ops_why *ret,
            char **ret_error);

/* One VM as it is now: asked, not taken from the records. */
struct ops_vm_status {
        const struct cfg_vm *vm;
        bool running;
        char error[256];            /* why it could not be asked ("" when running) */
        struct vmm_list list;       /* what it has (empty when not running) */
        struct db_attachment *rows; /* its open records */
        size_t n_rows;
};

struct ops_status {
        struct ops_vm_status *vms;
        size_t n;
};

void ops_status_clear(struct ops_status *s);

/* Asks every VM (or only vm) what it has, beside its open records. Returns 0, or -ENOENT for an
 * unknown vm, or the database's error. */
int ops_status(const struct ops_ctx *c, const char *vm, struct ops_status *ret, char **ret_error);

/* The newest max history rows (of the device spec names; NULL: of all devices), oldest first. */
int ops_history(const struct ops_ctx *c, const char *spec, size_t max, struct db_history **ret,
                size_t *ret_n, char **ret_error);
