/* Suspend and resume: taking a VM's passthrough devices out before the host sleeps and putting the
 * same devices back after (`usb_suspend`, `usb_resume`, `pci_suspend`, `pci_resume` of the API,
 * `vhotplugctl usb|pci suspend|resume [--vm NAME]`).
 *
 * Suspend detaches, through the transaction (xact_detach), every device of one kind that the
 * records put in the VM (every VM when none is named), except those of entries with skipOnSuspend
 * (an IOMMU group member follows the entry that gave it); PCI devices go back to their host
 * drivers. Each is recorded in the suspended table first, so that neither a helper's add nor
 * reconcile puts it back meanwhile (xact_complete() marks it suspended). Resume attaches exactly
 * those devices back (xact_attach: the same ids, the same VM where its entry still allows it);
 * a device unplugged meanwhile only has its suspension closed; a VM that is down gets its devices
 * pending, like any attach. A suspension ends with the boot it was made in (the boot id). */
#pragma once

#include <stddef.h>

#include "xact.h"

struct udev;

/* What suspend or resume did with one device. */
struct power_item {
        char devpath[512];
        char what[160]; /* dev_describe(), or the devpath of a device not present */
        char vm[CFG_MAX_VM_NAME + 1];
        enum xact_action action;   /* XACT_DETACH (suspend), XACT_ATTACH (resume), XACT_IGNORE: left */
        enum xact_outcome outcome; /* the transaction's; XACT_SKIPPED when left alone */
        char id[VMM_ID_MAX];       /* QEMU id or crosvm PCI path, "" when none */
        int port;                  /* crosvm port, -1 when none */
        char note[256];            /* why it was left alone ("skipOnSuspend ...", "unplugged ...") */
        char error[512];           /* what failed */
};

struct power_result {
        struct power_item *items;
        size_t n;
        size_t n_failed; /* items whose outcome is XACT_FAILED */
};

/* Suspends the devices of kind (DEV_USB, DEV_PCI) of vm (NULL: every VM); udev NULL takes ctx->udev;
 * a cloud-hypervisor VM's devices are left where they are; requested_by (may be
 * NULL) is kept with each suspension. Returns 0 with what happened to each device in *ret (free
 * with power_result_clear; a device that failed to detach is not suspended), or -errno with
 * *ret_error set: -ENOENT for a VM not in the configuration, -EINVAL for another kind, the
 * database's errors. */
int power_suspend(const struct xact_ctx *ctx, struct udev *udev, enum dev_kind kind, const char *vm,
                  const char *requested_by, struct power_result *ret, char **ret_error);

/* Resumes what power_suspend() took out in this boot, of kind and vm (NULL: every VM), in the order
 * it was taken out. Returns as power_suspend(). */
int power_resume(const struct xact_ctx *ctx, struct udev *udev, enum dev_kind kind, const char *vm,
                 struct power_result *ret, char **ret_error);

/* Frees a result and empties it; NULL-safe. */
void power_result_clear(struct power_result *r);
