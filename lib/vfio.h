/* Host side of PCI passthrough: IOMMU groups and binding devices to vfio-pci through sysfs.
 *
 * Every function takes root, a prefix put before "/sys/..." and "/dev/..." (NULL or "" for the
 * real system, or a directory holding a recorded tree; under umockdev-wrapper "" already sees the
 * testbed). PCI addresses are "dddd:bb:dd.f" or "bb:dd.f" (domain 0000), any case.
 *
 * Binding one device (vfio_bind): write "vfio-pci" to its driver_override, unbind it from its host
 * driver (/sys/bus/pci/drivers/DRIVER/unbind), write its address to /sys/bus/pci/drivers_probe and
 * wait until /dev/vfio/GROUP exists. A failure undoes what was done (driver_override cleared, the
 * device probed again so its host driver takes it back) and says so in the message.
 *
 * Messages (*ret_error) are malloc'd, set on failure only, and owned by the caller; pass a pointer
 * to NULL (a message already there is freed and replaced). ret_error may be NULL. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define VFIO_DRIVER "vfio-pci"
#define VFIO_DEFAULT_TIMEOUT_MS 5000 /* wait for /dev/vfio/GROUP when timeout_ms < 0 */
#define VFIO_MAX_GROUP 256           /* IOMMU group members handled */

struct vfio_policy {
        bool add_all;        /* pciIommuAddAll: bind every other non-bridge member too */
        bool skip_if_shared; /* pciIommuSkipIfShared: refuse when the group has other members */
};

struct vfio_member {
        char *addr;   /* "0000:01:00.1" */
        char *driver; /* host driver when the plan was made, NULL when none */
};

/* What binding a device takes: the members to bind, in order (the device itself first). */
struct vfio_plan {
        int group; /* IOMMU group number */
        size_t n;
        struct vfio_member *members;
};

/* Returns the IOMMU group number of the device (>= 0, from the basename of its iommu_group link),
 * -ENODEV when there is no such PCI device, -EOPNOTSUPP when it has no IOMMU group (IOMMU off),
 * -EINVAL for a malformed address. */
int vfio_iommu_group(const char *root, const char *pci_addr);

/* The name of the driver the device is bound to into buf ("" when none). Returns 0, -ENODEV when
 * there is no such PCI device, -EINVAL for a malformed address, or -errno. */
int vfio_driver(const char *root, const char *pci_addr, char *buf, size_t len);

/* Lists the PCI addresses in the device's IOMMU group, the device included, sorted. Read from
 * /sys/kernel/iommu_groups/N/devices; when that directory is missing, from the iommu_group links of
 * all PCI devices. Returns 0 and a NULL-terminated, malloc'd array (free with strv_free, util.h) and
 * its length, or -errno as vfio_iommu_group(), -E2BIG past VFIO_MAX_GROUP members. */
int vfio_group_members(const char *root, const char *pci_addr, char ***ret, size_t *ret_n);

/* Decides what binding pci_addr to vfio-pci takes. Bridges (class 0x0604) in the group are left
 * with their host driver, as the kernel allows. When other members remain: add_all puts them in the
 * plan; skip_if_shared refuses with -EXDEV; otherwise -EBUSY when one of them is bound to a host
 * driver (other than vfio-pci or pci-stub). -EINVAL when the device itself is a bridge.
 * On success fills *ret (release with vfio_plan_clear); ret is untouched on failure. */
int vfio_prepare(const char *root, const char *pci_addr, const struct vfio_policy *policy,
                 struct vfio_plan *ret, char **ret_error);

/* Frees what a plan holds and empties it; NULL-safe. */
void vfio_plan_clear(struct vfio_plan *plan);

/* Binds one device to vfio-pci and waits (bounded by timeout_ms, < 0 for the default) for
 * /dev/vfio/GROUP and for vfio-pci to hold the device (the node alone may belong to a sibling).
 * Already bound to vfio-pci: nothing to do, returns 0. Errors: -errno of the failing write (the
 * message names the path), -ENOENT when the vfio-pci driver is not loaded, -ETIMEDOUT when vfio-pci
 * did not take the device or the node did not appear, and those of vfio_iommu_group(). On failure
 * the device is given back to its host driver as far as possible; the message says what was
 * restored, or what could not be. The unbind goes through /sys/bus/pci/drivers/DRIVER/unbind,
 * DRIVER being the basename of the device's driver link. */
int vfio_bind(const char *root, const char *pci_addr, int timeout_ms, char **ret_error);

/* Gives a device back to the host: clears driver_override, unbinds it from vfio-pci and probes it
 * again. A device bound to another driver only gets its driver_override cleared. Returns 0 or
 * -errno of the first failing step (the message names the path); later steps are still tried. */
int vfio_unbind(const char *root, const char *pci_addr, char **ret_error);

/* Binds every member of the plan in order. When one fails, the members this call bound are given
 * back (reverse order) and the error is returned, its message naming the member and the rollback. */
int vfio_apply(const char *root, const struct vfio_plan *plan, int timeout_ms, char **ret_error);
