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
#define CFG_DEFAULT_EVENT_TIMEOUT_MS 30000 /* all one event (or one request) may take, waits included */
#define CFG_DEFAULT_ATTACH_RETRIES 10
#define CFG_DEFAULT_STATE_PATH "/var/lib/vhotplug/vhotplug.state" /* the older daemon's state file */
#define CFG_DEFAULT_API_SOCKET "/var/lib/vhotplug/vhotplug.sock"
#define CFG_DEFAULT_API_PORT 2000
#define CFG_DEFAULT_API_HOST "127.0.0.1"
#define CFG_MAX_FILE_SIZE (16u << 20)

/* Bounds on what a configuration may hold; larger values are configuration errors. */
#define CFG_MAX_STRING 4096 /* bytes in one string value */
#define CFG_MAX_VM_NAME 64  /* bytes in a VM name ([A-Za-z0-9._:@+-]) */
#define CFG_MAX_VMS 1024
#define CFG_MAX_ENTRIES 10000 /* entries per passthrough section */
#define CFG_MAX_RULES 100000  /* allow + deny rules over all sections */
#define CFG_MAX_HOST_MOUNTS 256
#define CFG_MAX_WARNINGS 100    /* further warnings are summarized in one line */
#define CFG_MAX_NOTES 100       /* likewise for notes */
#define CFG_MAX_ACPI_TABLES 256 /* acpiPassthrough tables over all entries */
#define CFG_MAX_CIDS 1024       /* general.api.allowedCids */

/* What compiling regular expressions may cost (glibc's regcomp grows quadratically with repeat
 * counts: ".{0,9999}" takes 1.6 GB). Units are the estimate of cfg_regex_compile(); one unit is
 * roughly 20 bytes of compiled automaton. */
#define CFG_REGEX_MAX_REPEAT 255            /* a {m,n} bound: POSIX's RE_DUP_MAX minimum */
#define CFG_REGEX_MAX_COST (1u << 18)       /* one pattern: ".{0,255}" costs 65 280 */
#define CFG_REGEX_MAX_TOTAL_COST (1u << 22) /* all patterns of a configuration */

/* Match fields of a rule (bit set = field present). */
enum {
        RF_VENDOR_ID = 1u << 0,
        RF_PRODUCT_ID = 1u << 1, /* USB productId, PCI deviceId */
        RF_VENDOR_NAME = 1u << 2,
        RF_PRODUCT_NAME = 1u << 3,
        RF_SERIAL = 1u << 4,
        RF_BUS = 1u << 5,
        RF_PORT = 1u << 6,
        RF_PORT_PATH = 1u << 7,
        RF_DEV_CLASS = 1u << 8,     /* USB deviceClass, PCI deviceClass */
        RF_DEV_SUBCLASS = 1u << 9,  /* USB deviceSubclass, PCI deviceSubclass */
        RF_DEV_PROTOCOL = 1u << 10, /* USB deviceProtocol, PCI deviceProgIf */
        RF_IF_CLASS = 1u << 11,
        RF_IF_SUBCLASS = 1u << 12,
        RF_IF_PROTOCOL = 1u << 13,
        RF_REMOVABLE = 1u << 14,
        RF_ADDRESS = 1u << 15,
        RF_NAME = 1u << 16,
        RF_PATH_TAG = 1u << 17,
        RF_PROPERTY = 1u << 18,
        RF_DRIVER_PATH = 1u << 19, /* USB: file of the kernel module that would drive the device */
};

struct cfg_rule {
        char *description; /* may be NULL */
        bool enabled;
        unsigned fields; /* RF_* present */
        uint16_t vendor_id, product_id;
        regex_t vendor_name, product_name, name, path_tag, driver_path; /* compiled when present */
        char *serial;
        int bus, port;
        char *port_path;
        int dev_class, dev_subclass, dev_protocol;
        int if_class, if_subclass, if_protocol;
        unsigned removable;            /* bit (1 << enum dev_removable) per accepted value */
        char address[PCI_ADDRESS_LEN]; /* normalized PCI address */
        char *property, *value;
};

/* VMM_CLOUD_HYPERVISOR VMs are accepted for cold-plug arguments only: nothing is hot-plugged into
 * them (rule_decide() ignores devices for them; see cfg_vm_can_hotplug()). */
enum vmm_type { VMM_QEMU = 0, VMM_CROSVM, VMM_CLOUD_HYPERVISOR };

struct cfg_vm {
        char *name;
        enum vmm_type type;
        char *socket;
};

struct cfg_entry {
        char *description; /* may be NULL */
        bool enabled;
        size_t n_vms;              /* 1 for targetVm; allowedVms may list several */
        const struct cfg_vm **vms; /* targetVm (when given) first */
        bool ask_vm;               /* allowedVms without targetVm: a hot-plugged device waits for the
                                    * user to choose a VM (vhotplug-api's "which VM?" prompt) */
        struct cfg_rule *allow;
        size_t n_allow;
        struct cfg_rule *deny;
        size_t n_deny;
        char *tag;
        bool skip_on_suspend;
        bool iommu_add_all, iommu_skip_if_shared, use_root_bus; /* PCI */
        bool auto_ovmf, crosvm_use_root_bus; /* PCI, for cold-plug arguments (vhotplug-api) */
        bool legacy_all_inputs; /* object-form evdevPassthrough: every non-USB ID_INPUT=1 device */
};

/* One ACPI table handed to a VM at start (acpiPassthrough; cold-plug arguments of vhotplug-api). */
struct cfg_acpi_table {
        char *description; /* may be NULL */
        bool enabled;
        char *path;                 /* acpiTable: "/sys/firmware/acpi/tables/NHLT" */
        char *set_user, *set_group; /* owner to give the file first; may be NULL */
};

struct cfg_acpi_entry {
        char *description; /* may be NULL */
        bool enabled;
        const struct cfg_vm *vm; /* NULL: the entry names no VM and hands out nothing */
        struct cfg_acpi_table *tables;
        size_t n_tables;
};

enum {
        CFG_API_UNIX = 1u << 0,
        CFG_API_VSOCK = 1u << 1,
        CFG_API_TCP = 1u << 2,
};

/* general.api: where vhotplug-api listens (the older daemon's keys). */
struct cfg_api {
        bool enabled;                 /* the key is present and not disabled */
        unsigned transports;          /* CFG_API_* */
        char *unix_socket;            /* CFG_DEFAULT_API_SOCKET unless set */
        char *unix_user, *unix_group; /* owner of the socket; NULL: unchanged */
        int unix_mode;                /* -1: unchanged */
        uint32_t port;                /* vsock and tcp; CFG_DEFAULT_API_PORT unless set */
        uint32_t *allowed_cids;       /* vsock peers allowed; none listed: any */
        size_t n_allowed_cids;
        char *host; /* tcp; CFG_DEFAULT_API_HOST unless set */
};

/* usbAuthorization: USB devices stay unauthorized on the host unless a VM claims them or a
 * hostAllow rule keeps them (the older daemon's semantics; see rule_usb_auth()). */
struct cfg_usb_auth {
        bool enabled;
        bool deauthorize_unmatched;
        struct cfg_rule *host_allow; /* USB rules */
        size_t n_host_allow;
};

struct cfg_general {
        char *database, *crosvm, *lock_dir;
        char **host_mounts; /* "/", "/boot", "/usr" plus hostRequiredMounts */
        size_t n_host_mounts;
        int qmp_timeout_ms;
        int event_timeout_ms; /* budget of one event or request, lock waits and retries included */
        int attach_retries;
        char *modules_dir;           /* driverPath lookups; NULL: /lib/modules/`uname -r` */
        char *ovmf_code, *ovmf_vars; /* firmware for autoOvmf entries; may be NULL */
        char *state_path;            /* the older daemon's state file: CFG_DEFAULT_STATE_PATH unless set */
        bool persistency;            /* the older daemon's switch for that file (default true) */
        struct cfg_api api;
};

struct cfg {
        char *path;
        struct cfg_entry *entries[DEV_KIND_MAX]; /* indexed by enum dev_kind */
        size_t n_entries[DEV_KIND_MAX];
        struct cfg_vm *vms;
        size_t n_vms;
        struct cfg_acpi_entry *acpi;
        size_t n_acpi;
        struct cfg_usb_auth usb_auth;
        struct cfg_general general;
        char **warnings; /* "FILE: PATH: message" lines for unknown or ineffective keys */
        size_t n_warnings;
        char **notes; /* "FILE: PATH: message" lines that explain, e.g. AND of a rule's fields */
        size_t n_notes;
};

/* Skip the owner/permission check (tests, and configs read by a non-root user). */
#define CFG_NO_STRICT_PERMS (1u << 0)
/* Also check what depends on this host and warn (--check-config): users and groups that do not
 * exist, files and executables that are missing, a hostAllow list that keeps no USB keyboard. */
#define CFG_CHECK_HOST (1u << 1)

struct cfg_error {
        char msg[1024]; /* "FILE: JSON.PATH: what was expected" or "FILE:LINE:COL: ..." */
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

/* Same with flags (CFG_CHECK_HOST; CFG_NO_STRICT_PERMS does not apply). */
int cfg_load_string_flags(const char *text, size_t len, const char *name, unsigned flags, struct cfg **ret,
                          struct cfg_error *err);

/* Compiles pattern as rule fields are compiled: POSIX extended, case-insensitive, anchored at the
 * start. Refuses, before regcomp sees it, what glibc compiles badly or too expensively: back-references,
 * stacked repetitions, deep nesting, {m,n} bounds above CFG_REGEX_MAX_REPEAT, and an estimated cost
 * above CFG_REGEX_MAX_COST. On success returns 0, fills *ret and, when ret_cost is not NULL, the
 * estimated cost; on failure returns -EINVAL (or -ENOMEM) with the reason in why. */
int cfg_regex_compile(const char *pattern, regex_t *ret, unsigned *ret_cost, char *why, size_t whylen);

/* Frees a configuration; NULL-safe. */
void cfg_free(struct cfg *c);

/* Returns the VM named name, or NULL. */
const struct cfg_vm *cfg_find_vm(const struct cfg *c, const char *name);

/* Whether devices can be hot-plugged into vm (false for cloud-hypervisor: cold-plug only). */
bool cfg_vm_can_hotplug(const struct cfg_vm *vm);

/* "qemu", "crosvm", "cloud-hypervisor". */
const char *cfg_vm_type_name(enum vmm_type t);

/* Returns the config section name of a device kind: "usbPassthrough", ... */
const char *cfg_section_name(enum dev_kind k);
