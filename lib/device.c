/* Device model: builds struct dev from libudev (sysfs) or from a udev event environment.
 *
 * Properties are collected first (from udev or the environment); sysfs attributes then fill the
 * fields, and properties fill whatever sysfs could not tell (always the case on remove). */
#include "device.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <unistd.h>
#include <fcntl.h>
#include <limits.h>
#include <pci/pci.h>
#include <libusb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <sys/types.h>

#include "cleanup-types.h"
#include "dl.h"
#include "util.h"
#include "vfio.h"

static const char *const kind_names[DEV_KIND_MAX] = {
        [DEV_USB] = "usb",
        [DEV_PCI] = "pci",
        [DEV_EVDEV] = "evdev",
};

const char *dev_kind_name(enum dev_kind k) {
        return k > DEV_UNKNOWN && k < DEV_KIND_MAX ? kind_names[k] : NULL;
}

enum dev_kind dev_kind_from_name(const char *name) {
        for (int k = DEV_UNKNOWN + 1; name && k < DEV_KIND_MAX; k++)
                if (strcmp(name, kind_names[k]) == 0)
                        return (enum dev_kind)k;
        return DEV_UNKNOWN;
}

void dev_key(const struct dev *d, char *buf, size_t len) {
        switch (d->kind) {
        case DEV_USB:
                if (d->serial && d->serial[0])
                        snprintf(buf, len, "usb:%04x:%04x:%s", d->vendor_id, d->product_id, d->serial);
                else
                        snprintf(buf, len, "usb:%04x:%04x@%s", d->vendor_id, d->product_id,
                                 d->port_path ? d->port_path : "");
                break;
        case DEV_PCI:
                snprintf(buf, len, "pci:%s", d->pci_address ? d->pci_address : "");
                break;
        case DEV_EVDEV:
                snprintf(buf, len, "evdev:%s@%s", d->name ? d->name : "", d->path_tag ? d->path_tag : "");
                break;
        default:
                snprintf(buf, len, "unknown:%s", d->devpath ? d->devpath : "");
                break;
        }
}

/* Copies at most DEV_STR_MAX bytes of s; NULL stays NULL. */
static char *bounded_strdup(const char *s) {
        return s ? strndup(s, DEV_STR_MAX) : NULL;
}

static void set_str(char **field, const char *value) {
        if (*field || !value || !*value)
                return;
        *field = bounded_strdup(value);
}

const char *dev_prop(const struct dev *d, const char *key) {
        for (size_t i = 0; i < d->n_props; i++)
                if (strcmp(d->props[i].key, key) == 0)
                        return d->props[i].value;
        return NULL;
}

/* Adds KEY=VALUE unless KEY is present or the table is full. */
static int add_prop(struct dev *d, const char *key, size_t keylen, const char *value) {
        struct dev_prop *p;
        if (keylen == 0 || keylen > 128)
                return 0;
        for (size_t i = 0; i < d->n_props; i++)
                if (strlen(d->props[i].key) == keylen && memcmp(d->props[i].key, key, keylen) == 0)
                        return 0;
        if (d->n_props >= DEV_MAX_PROPS)
                return 0;
        if (d->n_props % 16 == 0) {
                p = realloc(d->props, (d->n_props + 16) * sizeof(*p));
                if (!p)
                        return -ENOMEM;
                d->props = p;
        }
        p = &d->props[d->n_props];
        p->key = strndup(key, keylen);
        p->value = bounded_strdup(value);
        if (!p->key || !p->value) {
                free(p->key);
                free(p->value);
                return -ENOMEM;
        }
        d->n_props++;
        return 0;
}

/* Whether an environment variable is a udev property: the process's own environment (PATH, HOME,
 * LD_PRELOAD, INVOCATION_ID...) must not pass for the device's. */
static bool is_udev_key(const char *key, size_t len) {
        static const char *const prefixes[] = {"ID_", "PCI_",  "USB_",   "LIBINPUT_", "MOUSE_", "KEYBOARD_",
                                               "XKB", "UDEV_", "SOUND_", "MEDIA_",    "DM_"};
        static const char *const names[] = {
                "ACTION",
                "DEVPATH",
                "SUBSYSTEM",
                "DEVTYPE",
                "DEVNAME",
                "SEQNUM",
                "MAJOR",
                "MINOR",
                "PRODUCT",
                "TYPE",
                "INTERFACE",
                "BUSNUM",
                "DEVNUM",
                "DRIVER",
                "MODALIAS",
                "NAME",
                "PHYS",
                "UNIQ",
                "PROP",
                "EV",
                "KEY",
                "REL",
                "ABS",
                "MSC",
                "LED",
                "SND",
                "FF",
                "SW",
                "TAGS",
                "CURRENT_TAGS",
                "USEC_INITIALIZED",
                "DEVLINKS",
                "SYNTH_UUID",
        };
        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++)
                if (len > strlen(prefixes[i]) && strncmp(key, prefixes[i], strlen(prefixes[i])) == 0)
                        return true;
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (len == strlen(names[i]) && strncmp(key, names[i], len) == 0)
                        return true;
        return false;
}

static int add_environ(struct dev *d, char *const *envp) {
        for (size_t i = 0; envp && envp[i] && i < 4 * DEV_MAX_PROPS; i++) {
                const char *eq = strchr(envp[i], '=');
                /* An empty value (a property udev lacked, passed on as KEY=) counts as absent. */
                if (!eq || !eq[1] || !is_udev_key(envp[i], (size_t)(eq - envp[i])))
                        continue;
                int r = add_prop(d, envp[i], (size_t)(eq - envp[i]), eq + 1);
                if (r < 0)
                        return r;
        }
        return 0;
}

size_t dev_parse_usb_interfaces(const char *s, struct dev_iface *ifaces, size_t max) {
        size_t n = 0;
        if (!s)
                return 0;
        /* ":CCSSPP:CCSSPP:" — each group is exactly six hex digits between colons. */
        for (const char *p = s; *p && n < max;) {
                const char *q;
                if (*p == ':') {
                        p++;
                        continue;
                }
                q = p;
                while (*q && *q != ':')
                        q++;
                if (q - p == 6) {
                        char buf[7];
                        unsigned v;
                        char *end;
                        memcpy(buf, p, 6);
                        buf[6] = 0;
                        v = (unsigned)strtoul(buf, &end, 16);
                        if (*end == 0 && isxdigit((unsigned char)buf[0])) {
                                ifaces[n].cls = (uint8_t)(v >> 16);
                                ifaces[n].subclass = (uint8_t)(v >> 8);
                                ifaces[n].protocol = (uint8_t)v;
                                n++;
                        }
                }
                p = q;
        }
        return n;
}

int dev_parse_usb_sysname(const char *sysname, int *ret_bus, int *ret_port, char *ret_path, size_t pathlen) {
        const char *dash, *p;
        long bus, port;
        size_t len;

        if (!sysname || !isdigit((unsigned char)sysname[0]) || strchr(sysname, ':'))
                return -EINVAL;
        dash = strchr(sysname, '-');
        if (!dash || !dash[1])
                return -EINVAL;
        bus = strtol(sysname, NULL, 10);
        /* The port path is dot-separated decimal numbers, each 1..255. */
        for (p = dash + 1; *p; p++) {
                if (!isdigit((unsigned char)*p) && !(*p == '.' && p[-1] != '.' && p[1] && p[1] != '.'))
                        return -EINVAL;
        }
        if (dash[1] == '.')
                return -EINVAL;
        port = strtol(dash + 1, NULL, 10);
        len = strlen(dash + 1);
        if (bus <= 0 || bus > 65535 || port <= 0 || port > 255 || len >= pathlen)
                return -EINVAL;
        *ret_bus = (int)bus;
        *ret_port = (int)port;
        memcpy(ret_path, dash + 1, len + 1);
        return 0;
}

static struct dev *dev_alloc(void) {
        struct dev *d = calloc(1, sizeof(*d));
        if (!d)
                return NULL;
        d->dev_class = d->dev_subclass = d->dev_protocol = -1;
        d->iommu_group = -1;
        d->modules = calloc(1, sizeof(*d->modules));
        if (!d->modules) {
                free(d);
                return NULL;
        }
        return d;
}

void dev_free(struct dev *d) {
        if (!d)
                return;
        free(d->devpath);
        free(d->sysname);
        free(d->subsystem);
        free(d->devtype);
        free(d->devnode);
        free(d->driver);
        free(d->vendor_name);
        free(d->product_name);
        free(d->serial);
        free(d->port_path);
        free(d->pci_address);
        for (size_t i = 0; i < d->n_group; i++)
                free(d->group[i]);
        free(d->name);
        free(d->path_tag);
        free(d->id_bus);
        for (size_t i = 0; i < d->n_props; i++) {
                free(d->props[i].key);
                free(d->props[i].value);
        }
        free(d->props);
        free(d->host_mount);
        for (size_t i = 0; d->modules && i < d->modules->n_paths; i++)
                free(d->modules->paths[i]);
        if (d->modules)
                free(d->modules->paths);
        free(d->modules);
        free(d);
}

static enum dev_kind classify(const struct dev *d) {
        if (!d->subsystem)
                return DEV_UNKNOWN;
        if (strcmp(d->subsystem, "usb") == 0)
                return d->devtype && strcmp(d->devtype, "usb_device") == 0 ? DEV_USB : DEV_UNKNOWN;
        if (strcmp(d->subsystem, "pci") == 0)
                return DEV_PCI;
        if (strcmp(d->subsystem, "input") == 0)
                return d->sysname && strncmp(d->sysname, "event", 5) == 0 ? DEV_EVDEV : DEV_UNKNOWN;
        return DEV_UNKNOWN;
}

/* "PRODUCT=46d/c52b/1201" (hex, no padding) → ids. */
static void ids_from_product(struct dev *d, const char *product) {
        unsigned v, p;
        if (product && sscanf(product, "%x/%x/", &v, &p) == 2 && v <= 0xffff && p <= 0xffff) {
                d->vendor_id = (uint16_t)v;
                d->product_id = (uint16_t)p;
                d->has_ids = true;
        }
}

static void set_ids(struct dev *d, const char *vendor, const char *product) {
        long v = parse_attr_num(vendor, 16, 0xffff), p = parse_attr_num(product, 16, 0xffff);
        if (d->has_ids || v < 0 || p < 0)
                return;
        d->vendor_id = (uint16_t)v;
        d->product_id = (uint16_t)p;
        d->has_ids = true;
}

/* Fills what is still unknown from the udev properties. */
static void fill_from_props(struct dev *d) {
        set_str(&d->devnode, dev_prop(d, "DEVNAME"));
        set_str(&d->driver, dev_prop(d, "DRIVER"));
        set_str(&d->vendor_name, dev_prop(d, "ID_VENDOR_FROM_DATABASE"));
        set_str(&d->product_name, dev_prop(d, "ID_MODEL_FROM_DATABASE"));
        set_str(&d->vendor_name, dev_prop(d, "ID_VENDOR"));
        set_str(&d->product_name, dev_prop(d, "ID_MODEL"));

        switch (d->kind) {
        case DEV_USB: {
                const char *type = dev_prop(d, "TYPE");
                unsigned c, s, p;
                set_ids(d, dev_prop(d, "ID_VENDOR_ID"), dev_prop(d, "ID_MODEL_ID"));
                if (!d->has_ids)
                        ids_from_product(d, dev_prop(d, "PRODUCT"));
                set_str(&d->serial, dev_prop(d, "ID_SERIAL_SHORT"));
                if (d->busnum <= 0)
                        d->busnum = (int)parse_attr_num(dev_prop(d, "BUSNUM"), 10, 65535);
                if (d->devnum <= 0)
                        d->devnum = (int)parse_attr_num(dev_prop(d, "DEVNUM"), 10, 65535);
                if (d->busnum < 0)
                        d->busnum = 0;
                if (d->devnum < 0)
                        d->devnum = 0;
                if (d->dev_class < 0 && type && sscanf(type, "%u/%u/%u", &c, &s, &p) == 3 && c < 256 &&
                    s < 256 && p < 256) {
                        d->dev_class = (int)c;
                        d->dev_subclass = (int)s;
                        d->dev_protocol = (int)p;
                }
                if (d->n_ifaces == 0)
                        d->n_ifaces = dev_parse_usb_interfaces(dev_prop(d, "ID_USB_INTERFACES"), d->ifaces,
                                                               DEV_MAX_IFACES);
                break;
        }
        case DEV_PCI: {
                const char *id = dev_prop(d, "PCI_ID");
                const char *cls = dev_prop(d, "PCI_CLASS");
                unsigned v, p;
                if (!d->has_ids && id && sscanf(id, "%4x:%4x", &v, &p) == 2) {
                        d->vendor_id = (uint16_t)v;
                        d->product_id = (uint16_t)p;
                        d->has_ids = true;
                }
                if (d->dev_class < 0 && cls) {
                        long c = parse_attr_num(cls, 16, 0xffffff);
                        if (c >= 0) {
                                d->dev_class = (int)(c >> 16);
                                d->dev_subclass = (int)((c >> 8) & 0xff);
                                d->dev_protocol = (int)(c & 0xff);
                        }
                }
                set_str(&d->pci_address, dev_prop(d, "PCI_SLOT_NAME"));
                break;
        }
        case DEV_EVDEV:
                set_ids(d, dev_prop(d, "ID_VENDOR_ID"), dev_prop(d, "ID_MODEL_ID"));
                set_str(&d->path_tag, dev_prop(d, "ID_PATH_TAG"));
                set_str(&d->id_bus, dev_prop(d, "ID_BUS"));
                set_str(&d->serial, dev_prop(d, "ID_SERIAL_SHORT"));
                if (!d->id_input)
                        d->id_input = dev_prop(d, "ID_INPUT") && strcmp(dev_prop(d, "ID_INPUT"), "1") == 0;
                break;
        default:
                break;
        }
}

/* The sysname is the last component of the devpath. */
static int set_identity(struct dev *d, const char *devpath, const char *subsystem, const char *devtype) {
        const char *slash;
        d->devpath = bounded_strdup(devpath);
        d->subsystem = bounded_strdup(subsystem);
        d->devtype = bounded_strdup(devtype);
        if (!d->devpath || (subsystem && !d->subsystem) || (devtype && !d->devtype))
                return -ENOMEM;
        slash = strrchr(d->devpath, '/');
        d->sysname = strdup(slash ? slash + 1 : d->devpath);
        if (!d->sysname)
                return -ENOMEM;
        d->kind = classify(d);
        if (d->kind == DEV_USB) {
                char path[64];
                if (dev_parse_usb_sysname(d->sysname, &d->busnum, &d->port, path, sizeof(path)) == 0)
                        d->port_path = strdup(path);
                d->busnum = 0; /* taken from busnum/BUSNUM, not the name */
        }
        if (d->kind == DEV_PCI) {
                char addr[PCI_ADDRESS_LEN];
                if (pci_address_normalize(d->sysname, addr) == 0)
                        d->pci_address = strdup(addr);
        }
        return 0;
}

/* Checks that a devpath looks like udev's "/devices/..." and holds no tricks. */
static int check_devpath(const char *devpath) {
        if (!devpath || strncmp(devpath, "/devices/", 9) != 0 || strlen(devpath) >= PATH_MAX - 8)
                return -EINVAL;
        if (strstr(devpath, "/../") || strstr(devpath, "/./") || strstr(devpath, "//"))
                return -EINVAL;
        size_t len = strlen(devpath);
        if (len >= 3 && strcmp(devpath + len - 3, "/..") == 0)
                return -EINVAL;
        return 0;
}

void dev_merge_environ(struct dev *d, char *const *envp) {
        if (add_environ(d, envp) == 0)
                fill_from_props(d);
}

int dev_new_from_environ(char *const *envp, struct dev **ret) {
        _cleanup_dev_ struct dev *d = dev_alloc();
        const char *devpath;
        int r;

        if (!d)
                return -ENOMEM;
        r = add_environ(d, envp);
        if (r < 0)
                return r;
        devpath = dev_prop(d, "DEVPATH");
        if (devpath && strncmp(devpath, "/sys/devices/", 13) == 0)
                devpath += 4;
        r = check_devpath(devpath);
        if (r < 0)
                return r;
        if (!dev_prop(d, "SUBSYSTEM"))
                return -EINVAL;
        r = set_identity(d, devpath, dev_prop(d, "SUBSYSTEM"), dev_prop(d, "DEVTYPE"));
        if (r < 0)
                return r;
        if (d->kind == DEV_EVDEV)
                set_str(&d->name, dev_prop(d, "NAME"));
        fill_from_props(d);
        *ret = TAKE_PTR(d);
        return 0;
}

static const char *attr(struct udev_device *u, const char *name) {
        return udev_device_get_sysattr_value(u, name);
}

/* Interface list from the interface children's sysfs attributes. */
static void usb_ifaces_from_children(struct dev *d, struct udev_device *u) {
        _cleanup_udev_enumerate_ struct udev_enumerate *e = udev_enumerate_new(udev_device_get_udev(u));
        struct udev_list_entry *it;
        if (!e || udev_enumerate_add_match_parent(e, u) < 0 ||
            udev_enumerate_add_match_property(e, "DEVTYPE", "usb_interface") < 0 ||
            udev_enumerate_scan_devices(e) < 0)
                return;
        udev_list_entry_foreach(it, udev_enumerate_get_list_entry(e)) {
                _cleanup_udev_device_ struct udev_device *c =
                        udev_device_new_from_syspath(udev_device_get_udev(u), udev_list_entry_get_name(it));
                long cls, sub, proto;
                if (!c || d->n_ifaces >= DEV_MAX_IFACES)
                        continue;
                cls = parse_attr_num(attr(c, "bInterfaceClass"), 16, 255);
                sub = parse_attr_num(attr(c, "bInterfaceSubClass"), 16, 255);
                proto = parse_attr_num(attr(c, "bInterfaceProtocol"), 16, 255);
                if (cls < 0 || sub < 0 || proto < 0)
                        continue;
                d->ifaces[d->n_ifaces++] = (struct dev_iface){(uint8_t)cls, (uint8_t)sub, (uint8_t)proto};
        }
}

/* libusb and libpci are fallbacks (descriptors udev did not list, names hwdb did not give): they
 * are opened when first needed (see dl.h), not loaded by every helper at start-up. */
static typeof(libusb_init) *sym_libusb_init;
static typeof(libusb_exit) *sym_libusb_exit;
static typeof(libusb_get_device_list) *sym_libusb_get_device_list;
static typeof(libusb_free_device_list) *sym_libusb_free_device_list;
static typeof(libusb_get_bus_number) *sym_libusb_get_bus_number;
static typeof(libusb_get_device_address) *sym_libusb_get_device_address;
static typeof(libusb_get_active_config_descriptor) *sym_libusb_get_active_config_descriptor;
static typeof(libusb_get_config_descriptor) *sym_libusb_get_config_descriptor;
static typeof(libusb_free_config_descriptor) *sym_libusb_free_config_descriptor;
static const struct dl_sym libusb_syms[] = {
        {"libusb_init", (void **)&sym_libusb_init},
        {"libusb_exit", (void **)&sym_libusb_exit},
        {"libusb_get_device_list", (void **)&sym_libusb_get_device_list},
        {"libusb_free_device_list", (void **)&sym_libusb_free_device_list},
        {"libusb_get_bus_number", (void **)&sym_libusb_get_bus_number},
        {"libusb_get_device_address", (void **)&sym_libusb_get_device_address},
        {"libusb_get_active_config_descriptor", (void **)&sym_libusb_get_active_config_descriptor},
        {"libusb_get_config_descriptor", (void **)&sym_libusb_get_config_descriptor},
        {"libusb_free_config_descriptor", (void **)&sym_libusb_free_config_descriptor},
};
static struct dl_lib libusb = {VHP_LIBUSB_SONAME, libusb_syms, ELEMENTSOF(libusb_syms), 0};

static typeof(pci_alloc) *sym_pci_alloc;
static typeof(pci_init) *sym_pci_init;
static typeof(pci_cleanup) *sym_pci_cleanup;
static typeof(pci_lookup_name) *sym_pci_lookup_name;
static const struct dl_sym libpci_syms[] = {
        {"pci_alloc", (void **)&sym_pci_alloc},
        {"pci_init", (void **)&sym_pci_init},
        {"pci_cleanup", (void **)&sym_pci_cleanup},
        {"pci_lookup_name", (void **)&sym_pci_lookup_name},
};
static struct dl_lib libpci = {VHP_LIBPCI_SONAME, libpci_syms, ELEMENTSOF(libpci_syms), 0};

static void libusb_exitp(libusb_context **c) {
        if (*c)
                sym_libusb_exit(*c);
}
static void libusb_free_device_listp(libusb_device ***l) {
        if (*l)
                sym_libusb_free_device_list(*l, 1);
}
static void libusb_free_config_descriptorp(struct libusb_config_descriptor **c) {
        if (*c)
                sym_libusb_free_config_descriptor(*c);
}
static void pci_cleanupp(struct pci_access **p) {
        if (*p)
                sym_pci_cleanup(*p);
}

/* Interface list from the descriptors the kernel cached, read through libusb (which on Linux takes
 * them from sysfs: the device is never opened). */
static void usb_ifaces_from_libusb(struct dev *d) {
        _cleanup_(libusb_exitp) libusb_context *ctx = NULL;
        _cleanup_(libusb_free_device_listp) libusb_device **list = NULL;
        ssize_t n;

        if (d->busnum <= 0 || d->devnum <= 0 || dl_load(&libusb) < 0 || sym_libusb_init(&ctx) < 0)
                return;
        n = sym_libusb_get_device_list(ctx, &list);
        for (ssize_t i = 0; i < n; i++) {
                _cleanup_(libusb_free_config_descriptorp) struct libusb_config_descriptor *cfg = NULL;
                if (sym_libusb_get_bus_number(list[i]) != d->busnum ||
                    sym_libusb_get_device_address(list[i]) != d->devnum)
                        continue;
                if (sym_libusb_get_active_config_descriptor(list[i], &cfg) != 0 &&
                    sym_libusb_get_config_descriptor(list[i], 0, &cfg) != 0)
                        break;
                for (int j = 0; j < cfg->bNumInterfaces && d->n_ifaces < DEV_MAX_IFACES; j++) {
                        const struct libusb_interface *itf = &cfg->interface[j];
                        for (int k = 0; k < itf->num_altsetting && d->n_ifaces < DEV_MAX_IFACES; k++) {
                                const struct libusb_interface_descriptor *a = &itf->altsetting[k];
                                d->ifaces[d->n_ifaces++] = (struct dev_iface){
                                        a->bInterfaceClass, a->bInterfaceSubClass, a->bInterfaceProtocol};
                        }
                }
                break;
        }
}

/* udev's properties (the uevent file and udev's database) tell most; each sysfs attribute is a
 * file read, so only what they lack is read from sysfs. */
static void fill_usb_from_sysfs(struct dev *d, struct udev_device *u) {
        const char *rem;
        long v;

        fill_from_props(d);
        if (!d->has_ids)
                set_ids(d, attr(u, "idVendor"), attr(u, "idProduct"));
        if (d->busnum <= 0 && (v = parse_attr_num(attr(u, "busnum"), 10, 65535)) > 0)
                d->busnum = (int)v;
        if (d->devnum <= 0 && (v = parse_attr_num(attr(u, "devnum"), 10, 65535)) > 0)
                d->devnum = (int)v;
        if (d->dev_class < 0) {
                d->dev_class = (int)parse_attr_num(attr(u, "bDeviceClass"), 16, 255);
                d->dev_subclass = (int)parse_attr_num(attr(u, "bDeviceSubClass"), 16, 255);
                d->dev_protocol = (int)parse_attr_num(attr(u, "bDeviceProtocol"), 16, 255);
                if (d->dev_class < 0 || d->dev_subclass < 0 || d->dev_protocol < 0)
                        d->dev_class = d->dev_subclass = d->dev_protocol = -1;
        }
        rem = attr(u, "removable");
        if (rem && strncmp(rem, "removable", 9) == 0)
                d->removable = DEV_REMOVABLE_REMOVABLE;
        else if (rem && strncmp(rem, "fixed", 5) == 0)
                d->removable = DEV_REMOVABLE_FIXED;
        /* Without udev's names: the device's own strings. */
        if (!d->vendor_name)
                set_str(&d->vendor_name, attr(u, "manufacturer"));
        if (!d->product_name)
                set_str(&d->product_name, attr(u, "product"));
        if (!d->serial)
                set_str(&d->serial, attr(u, "serial"));
        if (d->n_ifaces == 0)
                usb_ifaces_from_children(d, u);
        if (d->n_ifaces == 0)
                usb_ifaces_from_libusb(d);
}

/* The IOMMU group and its members, as vfio.c reads them for binding. */
static void fill_pci_group(struct dev *d) {
        char **members = NULL;
        size_t n = 0;
        int g;

        if (!d->pci_address)
                return;
        g = vfio_iommu_group(NULL, d->pci_address);
        if (g < 0)
                return;
        d->iommu_group = g;
        if (vfio_group_members(NULL, d->pci_address, &members, &n) < 0)
                return;
        for (size_t i = 0; i < n && d->n_group < DEV_MAX_GROUP; i++)
                d->group[d->n_group++] = TAKE_PTR(members[i]);
        strv_free(members);
}

/* Names from pci.ids when udev's hwdb gave none. */
static void fill_pci_names(struct dev *d) {
        _cleanup_(pci_cleanupp) struct pci_access *pa = NULL;
        char buf[256];
        if ((d->vendor_name && d->product_name) || !d->has_ids || dl_load(&libpci) < 0)
                return;
        pa = sym_pci_alloc();
        if (!pa)
                return;
        pa->numeric_ids = 0;
        sym_pci_init(pa);
        if (!d->vendor_name && sym_pci_lookup_name(pa, buf, sizeof(buf),
                                                   PCI_LOOKUP_VENDOR | PCI_LOOKUP_NO_NUMBERS, d->vendor_id))
                d->vendor_name = strdup(buf);
        if (!d->product_name &&
            sym_pci_lookup_name(pa, buf, sizeof(buf), PCI_LOOKUP_DEVICE | PCI_LOOKUP_NO_NUMBERS,
                                d->vendor_id, d->product_id))
                d->product_name = strdup(buf);
}

void dev_add_details(struct dev *d) {
        if (d->kind != DEV_PCI || d->details)
                return;
        d->details = true;
        fill_pci_group(d);
        fill_pci_names(d);
}

static void fill_pci_from_sysfs(struct dev *d, struct udev_device *u) {
        const char *subsys = dev_prop(d, "PCI_SUBSYS_ID");
        unsigned sv, sd;

        fill_from_props(d);
        if (!d->has_ids)
                set_ids(d, attr(u, "vendor"), attr(u, "device"));
        if (d->dev_class < 0) {
                long c = parse_attr_num(attr(u, "class"), 16, 0xffffff);
                if (c >= 0) {
                        d->dev_class = (int)(c >> 16);
                        d->dev_subclass = (int)((c >> 8) & 0xff);
                        d->dev_protocol = (int)(c & 0xff);
                }
        }
        if (subsys && sscanf(subsys, "%4x:%4x", &sv, &sd) == 2) {
                d->subsys_vendor_id = (uint16_t)sv;
                d->subsys_device_id = (uint16_t)sd;
        } else {
                long v = parse_attr_num(attr(u, "subsystem_vendor"), 16, 0xffff);
                long w = parse_attr_num(attr(u, "subsystem_device"), 16, 0xffff);
                if (v >= 0 && w >= 0) {
                        d->subsys_vendor_id = (uint16_t)v;
                        d->subsys_device_id = (uint16_t)w;
                }
        }
        if (!d->driver)
                set_str(&d->driver, udev_device_get_driver(u));
}

static void fill_evdev_from_sysfs(struct dev *d, struct udev_device *u) {
        struct udev_device *parent = udev_device_get_parent_with_subsystem_devtype(u, "input", NULL);
        if (parent) {
                struct udev_list_entry *it;
                set_str(&d->name, attr(parent, "name"));
                set_ids(d, attr(parent, "id/vendor"), attr(parent, "id/product"));
                /* The parent's properties (NAME, PRODUCT...) complete the event node's. */
                udev_list_entry_foreach(it, udev_device_get_properties_list_entry(parent)) {
                        const char *k = udev_list_entry_get_name(it);
                        if (add_prop(d, k, strlen(k), udev_list_entry_get_value(it)) < 0)
                                break;
                }
        }
        fill_from_props(d);
        if (!d->name) {
                /* NAME="..." as udev quotes it on the parent. */
                const char *n = dev_prop(d, "NAME");
                size_t len = n ? strlen(n) : 0;
                if (len >= 2 && n[0] == '"' && n[len - 1] == '"')
                        d->name = strndup(n + 1, len - 2);
                else
                        set_str(&d->name, n);
        }
}

/* A path below /sys outside /sys/devices, a link such as /sys/bus/pci/devices/0000:00:14.3 or
 * /sys/class/input/event3: resolved to where it points (/sys/devices/..., checked by the caller).
 * Plain names only: no "." or ".." components, no empty ones. */
static int resolve_sys_link(const char *path, char **ret) {
        size_t len = strnlen(path, PATH_MAX);

        if (len >= PATH_MAX - 8 || strstr(path, "/../") || strstr(path, "/./") || strstr(path, "//") ||
            (len >= 3 && strcmp(path + len - 3, "/..") == 0) ||
            (len >= 2 && strcmp(path + len - 2, "/.") == 0))
                return -EINVAL;
        *ret = realpath(path, NULL);
        if (!*ret)
                return errno == ENOMEM ? -ENOMEM : -ENODEV;
        return 0;
}

int dev_new_from_syspath(struct udev *udev, const char *path, struct dev **ret) {
        _cleanup_dev_ struct dev *d = dev_alloc();
        _cleanup_udev_device_ struct udev_device *u = NULL;
        _cleanup_free_ char *syspath = NULL, *resolved = NULL;
        struct udev_list_entry *it;
        const char *devpath;
        int r;

        if (!d)
                return -ENOMEM;
        if (path && strncmp(path, "/sys/", 5) == 0 && strncmp(path, "/sys/devices/", 13) != 0) {
                r = resolve_sys_link(path, &resolved);
                if (r < 0)
                        return r;
                path = resolved;
        }
        devpath = path && strncmp(path, "/sys/devices/", 13) == 0 ? path + 4 : path;
        r = check_devpath(devpath);
        if (r < 0)
                return r;
        if (asprintf(&syspath, "/sys%s", devpath) < 0)
                return -ENOMEM;
        u = udev_device_new_from_syspath(udev, syspath);
        if (!u)
                return errno == ENOMEM ? -ENOMEM : -ENODEV;

        udev_list_entry_foreach(it, udev_device_get_properties_list_entry(u)) {
                const char *k = udev_list_entry_get_name(it);
                r = add_prop(d, k, strlen(k), udev_list_entry_get_value(it));
                if (r < 0)
                        return r;
        }
        r = set_identity(d, udev_device_get_devpath(u), udev_device_get_subsystem(u),
                         udev_device_get_devtype(u));
        if (r < 0)
                return r;
        set_str(&d->devnode, udev_device_get_devnode(u));
        set_str(&d->driver, udev_device_get_driver(u));

        switch (d->kind) {
        case DEV_USB:
                fill_usb_from_sysfs(d, u);
                break;
        case DEV_PCI:
                fill_pci_from_sysfs(d, u);
                break;
        case DEV_EVDEV:
                fill_evdev_from_sysfs(d, u);
                break;
        default:
                fill_from_props(d);
                break;
        }
        *ret = TAKE_PTR(d);
        return 0;
}

/* Unescapes mountinfo's octal escapes (\040 for space) in place. */
static void unescape_mount(char *s) {
        char *w = s;
        for (char *r = s; *r; r++) {
                if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
                    r[3] >= '0' && r[3] <= '7') {
                        *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
                        r += 3;
                } else {
                        *w++ = *r;
                }
        }
        *w = 0;
}

/* Whether the block device at syspath (a real path under /sys), or any device it is stacked on
 * (device-mapper, md: its "slaves"), lies below the device directory prefix. */
static bool block_below(const char *syspath, const char *prefix, size_t plen, int depth) {
        char path[PATH_MAX];
        DIR *dir;
        struct dirent *de;
        bool found = false;

        if (strncmp(syspath, prefix, plen) == 0 && syspath[plen] == '/')
                return true;
        if (depth >= 8 || snprintf(path, sizeof(path), "%s/slaves", syspath) >= (int)sizeof(path))
                return false;
        dir = opendir(path);
        if (!dir)
                return false;
        while (!found && (de = readdir(dir))) {
                char link[PATH_MAX + 256], *real;
                if (de->d_name[0] == '.')
                        continue;
                snprintf(link, sizeof(link), "%s/%s", path, de->d_name);
                real = realpath(link, NULL);
                if (real)
                        found = block_below(real, prefix, plen, depth + 1);
                free(real);
        }
        closedir(dir);
        return found;
}

int dev_find_host_mount(struct dev *d, const char *mountinfo, char *const *mounts, size_t n_mounts) {
        _cleanup_free_ char *syspath = NULL;

        /* A USB device, or a PCI function with a disk below it (its controller, or a bridge
         * above that): either takes the disk with it. */
        if ((d->kind != DEV_USB && d->kind != DEV_PCI) || !d->devpath)
                return 0;
        if (asprintf(&syspath, "/sys%s", d->devpath) < 0)
                return -ENOMEM;
        return dev_host_mount_below(syspath, mountinfo, mounts, n_mounts, &d->host_mount);
}

int dev_host_mount_below(const char *syspath, const char *mountinfo, char *const *mounts, size_t n_mounts,
                         char **ret_mount) {
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *line = NULL;
        size_t cap = 0, plen = strlen(syspath);

        f = fopen(mountinfo ? mountinfo : "/proc/self/mountinfo", "re");
        if (!f)
                return -errno;
        /* "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": the device of each
         * required mount point, resolved through /sys/dev/block to where it sits in sysfs. */
        while (getline(&line, &cap, f) > 0) {
                unsigned maj, min;
                char point[PATH_MAX], link[64], *real;
                bool required = false, below;

                if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, point) != 3)
                        continue;
                unescape_mount(point);
                for (size_t i = 0; i < n_mounts && !required; i++)
                        required = strcmp(point, mounts[i]) == 0;
                if (!required)
                        continue;
                snprintf(link, sizeof(link), "/sys/dev/block/%u:%u", maj, min);
                real = realpath(link, NULL);
                below = real && block_below(real, syspath, plen, 0);
                free(real);
                if (below) {
                        *ret_mount = strdup(point);
                        return *ret_mount ? 1 : -ENOMEM;
                }
        }
        return 0;
}

static void json_add_str(cJSON *o, const char *k, const char *v) {
        if (v)
                cJSON_AddStringToObject(o, k, v);
        else
                cJSON_AddNullToObject(o, k);
}

static void json_add_hex(cJSON *o, const char *k, bool known, uint16_t v) {
        char buf[8];
        if (!known) {
                cJSON_AddNullToObject(o, k);
                return;
        }
        snprintf(buf, sizeof(buf), "%04x", v);
        cJSON_AddStringToObject(o, k, buf);
}

static void json_add_int(cJSON *o, const char *k, int v) {
        if (v < 0)
                cJSON_AddNullToObject(o, k);
        else
                cJSON_AddNumberToObject(o, k, v);
}

int dev_to_json(const struct dev *d, cJSON **ret) {
        _cleanup_cjson_ cJSON *o = cJSON_CreateObject();
        cJSON *a, *props;
        static const char *const removable[] = {"unknown", "fixed", "removable"};

        if (!o)
                return -ENOMEM;
        json_add_str(o, "kind", dev_kind_name(d->kind));
        json_add_str(o, "devpath", d->devpath);
        json_add_str(o, "sysname", d->sysname);
        json_add_str(o, "subsystem", d->subsystem);
        json_add_str(o, "devnode", d->devnode);
        json_add_str(o, "driver", d->driver);
        json_add_hex(o, "vendorId", d->has_ids, d->vendor_id);
        json_add_hex(o, d->kind == DEV_PCI ? "deviceId" : "productId", d->has_ids, d->product_id);
        json_add_str(o, "vendorName", d->vendor_name);
        json_add_str(o, "productName", d->product_name);
        json_add_str(o, "serial", d->serial);
        switch (d->kind) {
        case DEV_USB:
                json_add_int(o, "bus", d->busnum > 0 ? d->busnum : -1);
                json_add_int(o, "devnum", d->devnum > 0 ? d->devnum : -1);
                json_add_int(o, "port", d->port > 0 ? d->port : -1);
                json_add_str(o, "portPath", d->port_path);
                json_add_int(o, "deviceClass", d->dev_class);
                json_add_int(o, "deviceSubclass", d->dev_subclass);
                json_add_int(o, "deviceProtocol", d->dev_protocol);
                a = cJSON_AddArrayToObject(o, "interfaces");
                for (size_t i = 0; a && i < d->n_ifaces; i++) {
                        cJSON *it = cJSON_CreateObject();
                        cJSON_AddNumberToObject(it, "class", d->ifaces[i].cls);
                        cJSON_AddNumberToObject(it, "subclass", d->ifaces[i].subclass);
                        cJSON_AddNumberToObject(it, "protocol", d->ifaces[i].protocol);
                        cJSON_AddItemToArray(a, it);
                }
                cJSON_AddStringToObject(o, "removable", removable[d->removable]);
                break;
        case DEV_PCI:
                json_add_str(o, "address", d->pci_address);
                json_add_int(o, "deviceClass", d->dev_class);
                json_add_int(o, "deviceSubclass", d->dev_subclass);
                json_add_int(o, "deviceProgIf", d->dev_protocol);
                json_add_int(o, "iommuGroup", d->iommu_group);
                a = cJSON_AddArrayToObject(o, "iommuGroupDevices");
                for (size_t i = 0; a && i < d->n_group; i++)
                        cJSON_AddItemToArray(a, cJSON_CreateString(d->group[i]));
                break;
        case DEV_EVDEV:
                json_add_str(o, "name", d->name);
                json_add_str(o, "pathTag", d->path_tag);
                json_add_str(o, "bus", d->id_bus);
                cJSON_AddBoolToObject(o, "input", d->id_input);
                break;
        default:
                break;
        }
        if (d->host_mount)
                cJSON_AddStringToObject(o, "hostMount", d->host_mount);
        props = cJSON_AddObjectToObject(o, "properties");
        for (size_t i = 0; props && i < d->n_props; i++)
                cJSON_AddStringToObject(props, d->props[i].key, d->props[i].value);
        if (!props)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

bool dev_is_usb_hub(const struct dev *d) {
        if (d->kind != DEV_USB)
                return false;
        if (d->dev_class == 9)
                return true;
        for (size_t i = 0; i < d->n_ifaces; i++)
                if (d->ifaces[i].cls == 9)
                        return true;
        return false;
}

void dev_describe(const struct dev *d, char *buf, size_t len) {
        const char *kind = dev_kind_name(d->kind);
        /* Device strings can hold anything; the sysname is kernel-made and safe to print. */
        if (d->has_ids)
                snprintf(buf, len, "%s %.64s %04x:%04x",
                         kind           ? kind
                         : d->subsystem ? d->subsystem
                                        : "device",
                         d->sysname ? d->sysname : "?", d->vendor_id, d->product_id);
        else
                snprintf(buf, len, "%s %.64s",
                         kind           ? kind
                         : d->subsystem ? d->subsystem
                                        : "device",
                         d->sysname ? d->sysname : "?");
}

/* Writes value into an existing sysfs attribute (no O_CREAT: a missing device stays missing). */
static int write_attr(const char *path, const char *value) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        size_t len = strlen(value);

        if (fd < 0)
                return -errno;
        if (write(fd, value, len) != (ssize_t)len)
                return errno ? -errno : -EIO;
        return 0;
}

int dev_usb_write_authorized(const char *devpath, bool authorized) {
        char path[PATH_MAX];

        if (!devpath || strstr(devpath, "..") ||
            snprintf(path, sizeof(path), "/sys%s/authorized", devpath) >= (int)sizeof(path))
                return -EINVAL;
        return write_attr(path, authorized ? "1" : "0");
}

/* Reads a small integer sysfs attribute. */
static int read_attr_int(const char *path) {
        char buf[32];
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        ssize_t n;

        if (fd < 0)
                return -errno;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n < 0)
                return -errno;
        buf[n] = '\0';
        n = parse_attr_num(buf, 10, INT32_MAX);
        return n < 0 ? -EINVAL : (int)n;
}

int dev_usb_read_authorized(const char *devpath) {
        char path[PATH_MAX];

        if (!devpath || strstr(devpath, "..") ||
            snprintf(path, sizeof(path), "/sys%s/authorized", devpath) >= (int)sizeof(path))
                return -EINVAL;
        return read_attr_int(path);
}

/* Calls fn on the authorized_default attribute of every root hub (usbN); the first error wins. */
static int for_root_hubs(int (*fn)(const char *path, void *userdata), void *userdata) {
        _cleanup_closedir_ DIR *dir = opendir("/sys/bus/usb/devices");
        struct dirent *de;
        int r = 0;

        if (!dir)
                return -errno;
        while ((de = readdir(dir))) {
                char path[PATH_MAX];
                int k;
                /* root hubs are usbN (their interfaces usbN:1.0) */
                if (strncmp(de->d_name, "usb", 3) != 0 || !de->d_name[3] ||
                    strspn(de->d_name + 3, "0123456789") != strlen(de->d_name + 3))
                        continue;
                snprintf(path, sizeof(path), "/sys/bus/usb/devices/%s/authorized_default", de->d_name);
                k = fn(path, userdata);
                if (k < 0 && r == 0)
                        r = k;
        }
        return r;
}

static int zero_default(const char *path, void *userdata) {
        (void)userdata;
        return write_attr(path, "0");
}

static int check_default(const char *path, void *userdata) {
        int v = read_attr_int(path);
        if (v > 0)
                *(bool *)userdata = false;
        return v < 0 ? v : 0;
}

int dev_usb_default_is_unauthorized(void) {
        bool off = read_attr_int("/sys/module/usbcore/parameters/authorized_default") == 0;
        int r = for_root_hubs(check_default, &off);

        return r < 0 ? r : off;
}

int dev_usb_default_unauthorized(void) {
        int r = write_attr("/sys/module/usbcore/parameters/authorized_default", "0");
        int k = for_root_hubs(zero_default, NULL);

        return r < 0 ? r : k;
}
