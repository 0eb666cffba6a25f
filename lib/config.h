/* Configuration: loading, validation, and the in-memory form the rule engine reads. */
#pragma once

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device.h"
#include "util.h"

/* make SYSCONFDIR=... passes -DVHP_SYSCONFDIR; the default is /etc. */
#ifndef VHP_SYSCONFDIR
#define VHP_SYSCONFDIR "/etc"
#endif
#define CFG_DEFAULT_PATH VHP_SYSCONFDIR "/vhotplug.conf"
#define CFG_DEFAULT_DATABASE "/var/lib/vhotplug/state.db"
#define CFG_DEFAULT_LOCK_DIR "/run/vhotplug"
#define CFG_DEFAULT_CROSVM "crosvm"
#define CFG_DEFAULT_QMP_TIMEOUT_MS 5000
#define CFG_DEFAULT_ATTACH_RETRIES 10
#define CFG_MAX_FILE_SIZE (16u << 20)

/* Bounds on what a configuration may hold; larger values are configuration errors. */
#define CFG_MAX_STRING 4096          /* bytes in one string value */
#define CFG_MAX_VM_NAME 64           /* bytes in a VM name ([A-Za-z0-9._:@+-]) */
#define CFG_MAX_VMS 1024
#define CFG_MAX_ENTRIES 10000        /* entries per passthrough section */
#define CFG_MAX_RULES 100000         /* allow + deny rules over all sections */
#define CFG_MAX_HOST_MOUNTS 256
#define CFG_MAX_WARNINGS 100         /* further warnings are summarized in one line */

/* Match fields of a rule (bit set = field present). */
enum {
        RF_VENDOR_ID = 1u << 0,
        RF_PRODUCT_ID = 1u << 1,   /* USB productId, PCI deviceId */
        RF_VENDOR_NAME = 1u << 2,
        RF_PRODUCT_NAME = 1u << 3,
        RF_SERIAL = 1u << 4,
        RF_BUS = 1u << 5,
        RF_PORT = 1u << 6,
        RF_PORT_PATH = 1u << 7,
        RF_DEV_CLASS = 1u << 8,    /* USB deviceClass, PCI deviceClass */
        RF_DEV_SUBCLASS = 1u << 9, /* USB deviceSubclass, PCI deviceSubclass */
        RF_DEV_PROTOCOL = 1u << 10,/* USB deviceProtocol, PCI deviceProgIf */
        RF_IF_CLASS = 1u << 11,
        RF_IF_SUBCLASS = 1u << 12,
        RF_IF_PROTOCOL = 1u << 13,
        RF_REMOVABLE = 1u << 14,
        RF_ADDRESS = 1u << 15,
        RF_NAME = 1u << 16,
        RF_PATH_TAG = 1u << 17,
        RF_PROPERTY = 1u << 18,
};

struct cfg_rule {
        char *description;     /* may be NULL */
        bool enabled;
        unsigned fields;       /* RF_* present */
        uint16_t vendor_id, product_id;
        regex_t vendor_name, product_name, name, path_tag; /* compiled when the field is present */
        char *serial;
        int bus, port;
        char *port_path;
        int dev_class, dev_subclass, dev_protocol;
        int if_class, if_subclass, if_protocol;
        unsigned removable;    /* bit (1 << enum dev_removable) per accepted value */
        char address[PCI_ADDRESS_LEN];      /* normalized PCI address */
        char *property, *value;
};

enum vmm_type { VMM_QEMU = 0, VMM_CROSVM };

struct cfg_vm {
        char *name;
        enum vmm_type type;
        char *socket;
};

struct cfg_entry {
        char *description;      /* may be NULL */
        bool enabled;
        size_t n_vms;           /* 1 for targetVm; allowedVms may list several */
        const struct cfg_vm **vms;
        struct cfg_rule *allow;
        size_t n_allow;
        struct cfg_rule *deny;
        size_t n_deny;
        char *tag;
        bool skip_on_suspend;
        bool iommu_add_all, iommu_skip_if_shared, use_root_bus; /* PCI */
        bool legacy_all_inputs; /* object-form evdevPassthrough: every non-USB ID_INPUT=1 device */
};

struct cfg_general {
        char *database, *crosvm, *lock_dir;
        char **host_mounts;     /* "/", "/boot", "/usr" plus hostRequiredMounts */
        size_t n_host_mounts;
        int qmp_timeout_ms;
        int attach_retries;
};

struct cfg {
        char *path;
        struct cfg_entry *entries[DEV_KIND_MAX]; /* indexed by enum dev_kind */
        size_t n_entries[DEV_KIND_MAX];
        struct cfg_vm *vms;
        size_t n_vms;
        struct cfg_general general;
        char **warnings;        /* "FILE: PATH: message" lines for unknown or ineffective keys */
        size_t n_warnings;
};

/* Skip the owner/permission check (tests, and configs read by a non-root user). */
#define CFG_NO_STRICT_PERMS (1u << 0)

struct cfg_error {
        char msg[1024];         /* "FILE: JSON.PATH: what was expected" or "FILE:LINE:COL: ..." */
};

/* Loads and validates path. Before reading, refuses a file that is not a regular file (-EINVAL),
 * not owned by root or writable by group or others (-EPERM, unless flags has CFG_NO_STRICT_PERMS),
 * or larger than CFG_MAX_FILE_SIZE (-EFBIG). On failure returns -errno (-ENOENT for a missing file,
 * -EINVAL for invalid content), fills err (may be NULL) and leaves *ret untouched. On success the
 * caller should show (*ret)->warnings. */
int cfg_load(const char *path, unsigned flags, struct cfg **ret, struct cfg_error *err);

/* Same for a configuration held in memory (len bytes, need not be NUL-terminated); name (NULL:
 * "<string>") is used in messages and as cfg->path. No ownership check. */
int cfg_load_string(const char *text, size_t len, const char *name, struct cfg **ret, struct cfg_error *err);

/* Frees a configuration; NULL-safe. */
void cfg_free(struct cfg *c);

/* Returns the VM named name, or NULL. */
const struct cfg_vm *cfg_find_vm(const struct cfg *c, const char *name);

/* Returns the config section name of a device kind: "usbPassthrough", ... */
const char *cfg_section_name(enum dev_kind k);
