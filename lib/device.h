/* Device model: what vhotplug knows of a USB, PCI or input (evdev) device.
 * Built from sysfs through libudev, or from a udev event's environment. Every string in it comes
 * from the device or udev and is untrusted: it is length-capped (DEV_STR_MAX) but may hold any byte. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct udev;
struct cJSON;

enum dev_kind { DEV_UNKNOWN = 0, DEV_USB, DEV_PCI, DEV_EVDEV, DEV_KIND_MAX };

enum dev_removable { DEV_REMOVABLE_UNKNOWN = 0, DEV_REMOVABLE_FIXED, DEV_REMOVABLE_REMOVABLE };

#define DEV_STR_MAX 4096  /* longest string kept from a device or udev property */
#define DEV_MAX_IFACES 64 /* interfaces kept per USB device */
#define DEV_MAX_PROPS 256 /* udev properties kept per device */
#define DEV_MAX_GROUP 64  /* IOMMU group members kept */

struct dev_iface {
        uint8_t cls, subclass, protocol;
};

struct dev_prop {
        char *key, *value;
};

/* The kernel modules that would drive a USB device (driverPath rules): resolved on first use by
 * mod_driver_paths() and kept here. Behind a pointer so that code holding a const dev fills it. */
struct dev_modules {
        bool resolved;
        int error; /* -errno of the lookup, 0 when it worked */
        size_t n_paths;
        char **paths; /* module files, ".../kernel/drivers/net/usb/r8152.ko" */
};

struct dev {
        enum dev_kind kind;
        char *devpath; /* udev form: "/devices/..." */
        char *sysname; /* "1-3.2", "0000:00:14.3", "event3" */
        char *subsystem, *devtype, *devnode, *driver;
        char *vendor_name, *product_name; /* hwdb names, else udev's, else the device's strings */
        char *serial;
        bool has_ids;                   /* vendor_id/product_id are known */
        uint16_t vendor_id, product_id; /* PCI: vendor and device id */

        /* USB */
        int busnum, devnum; /* 0 when unknown */
        int port;           /* root port: first number of the port path; 0 for root hubs */
        char *port_path;    /* "3.2" */
        int dev_class, dev_subclass, dev_protocol; /* -1 when unknown */
        size_t n_ifaces;
        struct dev_iface ifaces[DEV_MAX_IFACES];
        enum dev_removable removable;

        /* PCI (dev_class/dev_subclass/dev_protocol hold class/subclass/prog-if) */
        char *pci_address; /* "0000:00:14.3" */
        uint16_t subsys_vendor_id, subsys_device_id;
        bool details;    /* dev_add_details() ran */
        int iommu_group; /* -1 when none (or not read yet: dev_add_details) */
        size_t n_group;
        char *group[DEV_MAX_GROUP]; /* PCI addresses in the IOMMU group, this device included */

        /* evdev */
        char *name;     /* the parent input device's name */
        char *path_tag; /* ID_PATH_TAG */
        char *id_bus;   /* ID_BUS */
        bool id_input;  /* ID_INPUT=1 */

        /* All udev properties (evdev `property` rules, and the JSON view). */
        size_t n_props;
        struct dev_prop *props;

        /* Set by dev_find_host_mount(): the host-required mount point this device holds. */
        char *host_mount;

        struct dev_modules *modules; /* allocated with the device, filled lazily */
};

#define DEV_KEY_MAX (2 * DEV_STR_MAX + 32) /* buffer size that holds any dev_key() */

/* Returns the name used in config sections and JSON: "usb", "pci", "evdev", or NULL. */
const char *dev_kind_name(enum dev_kind k);

/* The kind named "usb", "pci" or "evdev"; DEV_UNKNOWN for anything else (NULL included). */
enum dev_kind dev_kind_from_name(const char *name);

/* Builds a device from sysfs. path: "/devices/...", "/sys/devices/..." or a link below /sys that
 * points there ("/sys/bus/pci/devices/0000:00:14.3", resolved first).
 * Returns -ENODEV when no such device exists, -EINVAL for a path outside /devices. A device of a
 * kind vhotplug does not handle is returned with kind DEV_UNKNOWN. */
int dev_new_from_syspath(struct udev *udev, const char *path, struct dev **ret);

/* Builds a device from a udev event's properties (NULL-terminated "KEY=VALUE" array), as seen on
 * remove when sysfs is gone. Requires DEVPATH and SUBSYSTEM. */
int dev_new_from_environ(char *const *envp, struct dev **ret);

/* Fills what the event environment knows but sysfs lost or never had (used on add, where the udev
 * database may be missing). Existing values are kept. */
void dev_merge_environ(struct dev *d, char *const *envp);

/* Reads what no rule looks at but records and output show: a PCI device's IOMMU group and its
 * names from pci.ids when udev's hwdb gave none. Costly (a directory scan, parsing pci.ids), so
 * left out of the per-event path of devices no rule claims. Idempotent. */
void dev_add_details(struct dev *d);

/* Frees a device; NULL-safe. */
void dev_free(struct dev *d);
static inline void dev_freep(struct dev **d) {
        dev_free(*d);
}
#define _cleanup_dev_ __attribute__((cleanup(dev_freep)))

/* Returns the value of udev property key, or NULL. */
const char *dev_prop(const struct dev *d, const char *key);

/* Checks whether a block device below d (or a device-mapper/md device stacked on one) is mounted
 * on one of mounts (e.g. "/", "/boot"). mountinfo: path of a mountinfo file (NULL =
 * /proc/self/mountinfo). Sets d->host_mount. Returns 1 when found, 0 when not, -errno on error. */
int dev_find_host_mount(struct dev *d, const char *mountinfo, char *const *mounts, size_t n_mounts);

/* The same for the sysfs directory syspath ("/sys/devices/...", links resolved): 1 and the mount
 * point in *ret_mount (malloc'd) when a block device below it holds one of mounts, 0 when none. */
int dev_host_mount_below(const char *syspath, const char *mountinfo, char *const *mounts, size_t n_mounts,
                         char **ret_mount);

/* Writes "1" or "0" to the USB device's sysfs "authorized" attribute (/sys + devpath). Returns 0, or
 * -errno (-ENOENT when the device is gone). */
int dev_usb_write_authorized(const char *devpath, bool authorized);

/* Reads the USB device's sysfs "authorized" attribute: 1, 0, or -errno. */
int dev_usb_read_authorized(const char *devpath);

/* Whether the kernel leaves new USB devices unauthorized already (usbcore's authorized_default and
 * every root hub's are 0): 1, 0, or -errno. */
int dev_usb_default_is_unauthorized(void);

/* Makes the kernel leave new USB devices unauthorized: "0" into usbcore's authorized_default
 * parameter and into every root hub's authorized_default. Returns 0, or the first -errno (the
 * other writes are still tried). */
int dev_usb_default_unauthorized(void);

/* Builds the JSON view of a device ({"kind":"usb","devpath":...}). */
int dev_to_json(const struct dev *d, struct cJSON **ret);

/* Stable key of a device for stored user choices: "usb:VID:PID:SERIAL" when it has a serial, else
 * "usb:VID:PID@PORTPATH"; "pci:ADDRESS"; "evdev:NAME@PATHTAG" (VID/PID: 4 lower-case hex digits;
 * missing strings are empty; other kinds: "unknown:DEVPATH"). Writes into buf, cut to len. */
void dev_key(const struct dev *d, char *buf, size_t len);

/* A USB hub (device class 9, or a hub interface); false for every other kind of device. */
bool dev_is_usb_hub(const struct dev *d);

/* One-line identity for logs: "usb 1-3.2 046d:c52b", "pci 0000:00:14.3 8086:a0f0", "evdev event3". */
void dev_describe(const struct dev *d, char *buf, size_t len);

/* Parses udev's ID_USB_INTERFACES (":030102:030000:"). Malformed groups are skipped.
 * Returns the number of interfaces stored (at most max). */
size_t dev_parse_usb_interfaces(const char *s, struct dev_iface *ifaces, size_t max);

/* Parses a USB sysname ("1-3.2") into bus, root port and port path ("3.2").
 * Returns 0, or -EINVAL (root hubs "usb1" and interfaces "1-3:1.0" are invalid here). */
int dev_parse_usb_sysname(const char *sysname, int *ret_bus, int *ret_port, char *ret_path, size_t pathlen);
