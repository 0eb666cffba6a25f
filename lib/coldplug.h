/* Cold-plug arguments: what a VM start script appends to its VMM's command line so that the VM
 * starts with its devices in place (the `vmm_args` request of the API, `vhotplugctl vmm args`):
 *
 *   OVMF firmware   -drive if=pflash,...  (QEMU, when an autoOvmf entry holds an NVIDIA display device)
 *   PCI devices     -device vfio-pci,host=ADDR,multifunction=on,id=vhp-pci-...[,bus=PREFIXn]
 *                   --vfio /sys/bus/pci/devices/ADDR,iommu=viommu          (crosvm)
 *                   --device path=/sys/bus/pci/devices/ADDR                (cloud-hypervisor)
 *   ACPI tables     -acpitable file=PATH | --acpi-table PATH              (acpiPassthrough)
 *   input devices   -device virtio-input-host-pci,evdev=NODE,id=vhp-evdev-... | --input evdev[path=NODE]
 *
 * The PCI devices the rules claim for the VM are bound to vfio-pci first, with their IOMMU group as
 * the entry's policy says (xact_vfio_bind(), the binding of hot-plug); group members the policy binds
 * (pciIommuAddAll) are given to the VM too, as the older daemon did. Every device handed over is
 * recorded as attached and cold-plugged, under the id hot-plug would give it, so that list, status,
 * detach, suspend and reconcile see it, and reconcile does not add it a second time. */
#pragma once

#include <stddef.h>

#include "xact.h"

struct udev;

#define COLD_BUS_PREFIX_MAX 32  /* bytes of a qemu_bus_prefix ([A-Za-z0-9._-]) */
#define COLD_BUS_INDEX_MAX 9999 /* highest qemu_bus_start_index */

struct cold_args {
        char **argv; /* NULL-terminated: the arguments, in command-line order */
        size_t argc;
        char **warnings; /* NULL-terminated: what was left out, and why (for the log) */
        size_t n_warnings;
};

/* Computes the cold-plug arguments of vm, binds its PCI devices to vfio-pci, gives its ACPI tables
 * to their setUser/setGroup, and records each device handed over (attached, cold-plugged).
 * bus_prefix (NULL or "": none) and bus_start_index name the QEMU bus of each PCI device
 * (PREFIXn, n counting up from bus_start_index; none for entries with qemuUseRootBus). Devices
 * enumerated through udev. A device that cannot be handed over (binding refused, already in
 * another VM, kept detached by the user, suspended) and a missing ACPI table are left out with a
 * warning, not a failure; a failed binding is also recorded in history. udev NULL takes ctx->udev.
 * Returns 0 and fills *ret (release with cold_args_clear), or -errno with *ret_error set (malloc'd):
 * -ENOENT for a VM not in the configuration, -EINVAL for a bus prefix or index out of bounds, or
 * OVMF firmware needed but general.ovmfCode/ovmfVars not set, -EOPNOTSUPP for a dry run, or the
 * database's and udev's errors. *ret is untouched on failure. */
int cold_vmm_args(const struct xact_ctx *ctx, struct udev *udev, const char *vm, const char *bus_prefix,
                  int bus_start_index, struct cold_args *ret, char **ret_error);

/* Frees what a result holds and empties it; NULL-safe. */
void cold_args_clear(struct cold_args *a);
