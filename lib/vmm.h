/* VMM-neutral attach/detach/list. A caller connects to one VM (vmm_connect), acts, and
 * disconnects; the back ends are QEMU over QMP (vmm-qemu.c) and crosvm's CLI (vmm-crosvm.c).
 * One attempt per call: retrying and locking are the caller's (xact.c), so that no lock is held
 * while it waits. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "device.h"

#define VMM_ID_MAX 64

/* Values <= 0 select defaults (CFG_DEFAULT_QMP_TIMEOUT_MS; "crosvm" for a NULL bin). */
struct vmm_opts {
        int timeout_ms;         /* bound for connect/greeting/each reply and for crosvm runs */
        const char *crosvm_bin; /* crosvm executable (absolute, or looked up in a fixed PATH) */
        int detach_timeout_ms;  /* bound for DEVICE_DELETED after device_del */
};

/* A device as attached in a VM. */
struct vmm_attachment {
        char id[VMM_ID_MAX];  /* QEMU device id ("vhp-usb-001-005"); crosvm: the sysfs path of
                               * a PCI device, "" for USB */
        int port;             /* crosvm port; QEMU: -1 */
        char bus[VMM_ID_MAX]; /* QEMU pcie-root-port the device went into, "" for USB/root bus */
};

/* What a VM reports it has. */
struct vmm_device {
        char id[VMM_ID_MAX];   /* QEMU id; crosvm: a PCI device's sysfs path, else "" */
        enum dev_kind kind;    /* DEV_UNKNOWN for drivers vhotplug does not manage */
        char driver[32];       /* "usb-host", "vfio-pci", "virtio-input-host-pci", crosvm: "usb", "vfio" */
        bool ours;             /* id made by vmm_device_id() (prefix "vhp-"); crosvm has no ids:
                                * every device it lists counts as ours */
        int hostbus, hostaddr; /* usb-host */
        char host[32];         /* vfio-pci host address */
        char evdev[256];       /* virtio-input-host evdev path */
        int port;              /* crosvm port, else -1 */
        uint16_t vendor_id, product_id; /* crosvm */
};

struct vmm_list {
        struct vmm_device *items;
        size_t n;
        unsigned unlisted; /* bit (1u << enum dev_kind) per kind this VM cannot list: crosvm
                            * lists no input devices, and PCI ones only with `vfio list`
                            * (Ghaf's fork); records of those kinds are taken on trust */
};

/* An open line to one VM: a QMP connection for QEMU; for crosvm, which runs one command per
 * request, only what the commands need. */
struct vmm_conn;

/* The options the configuration's general section sets (qmpTimeoutMs bounds detaches too). */
struct vmm_opts vmm_opts_from_cfg(const struct cfg_general *g);

/* Deterministic, collision-free QEMU id for a device: "vhp-usb-001-005", "vhp-pci-0000-00-14.3",
 * "vhp-evdev-event3" (sanitized). Returns 0, or -EINVAL when the device lacks what the id needs. */
int vmm_device_id(const struct dev *d, char *buf, size_t len);

/* The id an attachment of d to vm is recorded under: for QEMU, vmm_device_id(); for a PCI device
 * of another VMM, its sysfs directory ("/sys/bus/pci/devices/0000:01:00.0", what `crosvm vfio`
 * takes); "" otherwise (a crosvm USB device is known by its port). Returns 0 or -EINVAL. */
int vmm_attachment_id(const struct cfg_vm *vm, const struct dev *d, char *buf, size_t len);

/* Connects to vm (QEMU: QMP greeting and capabilities; crosvm: its control socket must exist).
 * Returns 0; -EHOSTDOWN when the VM is not running (socket missing or refused); -ETIMEDOUT when
 * it could not be reached (no greeting in time: hung, or its monitor busy with another client);
 * -EPROTO when the peer does not speak QMP; -EACCES... *ret_error as below. */
int vmm_connect(const struct cfg_vm *vm, const struct vmm_opts *o, struct vmm_conn **ret, char **ret_error);

/* Closes the connection; NULL-safe. */
void vmm_disconnect(struct vmm_conn *c);

/* The VM the connection goes to. */
const struct cfg_vm *vmm_conn_vm(const struct vmm_conn *c);

/* Attaches d under id (QEMU; from vmm_device_id()), one attempt. root_bus: PCI/evdev into the root
 * bus instead of a free pcie-root-port. PCI: the device (and its IOMMU group) must already be bound
 * to vfio-pci (vfio.h). Returns 0 and fills ret; -EAGAIN when QEMU does not see the USB device yet
 * ("failed to find host usb device": udev has not finished with it; crosvm: the guest has not set
 * up its USB controller yet, the refused device's port was freed again; try again later);
 * -EEXIST when the device is already attached under that id (ret->id is filled); -EBUSY when an
 * evdev is held exclusively elsewhere; -ENOSPC when no port is free (crosvm: no_available_port);
 * -EREMOTEIO when the VMM refused (its message in *ret_error); -EHOSTDOWN when the VM went away;
 * -ETIMEDOUT; -EPROTO when the peer spoke garbage (-EMSGSIZE when it sent too much). crosvm also:
 * -ENOENT when the device node is gone (no_such_device), -EACCES, -EOPNOTSUPP for a device other
 * than USB, -ENOEXEC when the crosvm binary cannot be run. crosvm takes USB devices
 * (`usb attach`) and PCI devices (`vfio add`, ret->id the sysfs path); input devices only on its
 * command line (-EOPNOTSUPP).
 * *ret_error (set to NULL on entry; malloc'd, may be set on any failure; caller frees; ret_error may
 * be NULL) says what happened in words. */
int vmm_attach(struct vmm_conn *c, const struct dev *d, const char *id, bool root_bus,
               struct vmm_attachment *ret, char **ret_error);

/* Asks the VM to let go of a. QEMU: device_del, without waiting for the guest to release the device
 * (the monitor serves one client at a time: the caller confirms later with vmm_has() on a new
 * connection, so that siblings are not held up); crosvm detaches a->port (USB) or removes the PCI
 * device a->id names (`vfio remove`) at once. Returns 0 when
 * the device is gone already, 1 when the VM accepted (or an earlier device_del of it is still
 * under way) and the release is to be confirmed; -ENOENT when the VM has no such device (already
 * gone: success for callers; crosvm: no_such_port); -EHOSTDOWN, -EREMOTEIO, -ETIMEDOUT, -EPROTO
 * as for attach. */
int vmm_detach(struct vmm_conn *c, const struct vmm_attachment *a, char **ret_error);

/* Whether the VM still has the attachment a (QEMU: its id under /machine/peripheral; crosvm: a
 * device on its port, or the PCI device in `vfio list`). Returns 1, 0, or -errno as for attach;
 * 1 for what the VM cannot list (see vmm_list.unlisted): the record is trusted. */
int vmm_has(struct vmm_conn *c, const struct vmm_attachment *a, char **ret_error);

/* Lists the devices the VM has (QEMU: qom-list /machine/peripheral + qom-get; crosvm: usb list and,
 * where it exists, vfio list; ret->unlisted says what could not be listed).
 * QEMU: every device with an id, those vhotplug does not manage with kind DEV_UNKNOWN (xhci, ports).
 * *ret is emptied on failure; free it with vmm_list_clear(). */
int vmm_list(struct vmm_conn *c, struct vmm_list *ret, char **ret_error);

/* Frees the items of a list and empties it. */
void vmm_list_clear(struct vmm_list *l);
