/* Rule engine: decides what to do with a device under a configuration. Pure but for one
 * field: a driverPath rule looks up kernel modules (lib/modalias.c) the first time it meets a
 * device, and the device keeps the answer. */
#pragma once

#include <stdbool.h>

#include "config.h"
#include "device.h"

enum rule_action { RULE_IGNORE = 0, RULE_ATTACH };

struct rule_decision {
        enum rule_action action;
        enum dev_kind kind;
        const struct cfg_entry *entry; /* the claiming entry, or NULL */
        int entry_index;               /* index in its section, -1 when none */
        int rule_index;                /* allow rule index, -1 when none (or legacy evdev) */
        const char *rule_description;  /* the allow rule's, else the entry's; may be NULL */
        const struct cfg_vm *vm;       /* target VM when attaching */
        bool keep_detached;            /* claimed, but the user asked to keep it on the host */
        bool choice_needed;            /* the entry asks the user to choose among its VMs (allowedVms,
                                        * no targetVm) and no choice was given: vm is only the first */
        bool suspended;                /* claimed, but a suspend took it out: only resume puts it back */
        char reason[256];
};

/* Returns true when every present field of rule r holds for d (interface fields on one interface).
 * c gives general.modulesDir for driverPath (NULL: the running kernel's modules). driverPath holds
 * only for a device none of whose interfaces has a class other than 0 or 255 (as the older daemon
 * did), when the file of a module that would drive one of its interfaces matches. */
bool rule_matches(const struct cfg *c, const struct cfg_rule *r, enum dev_kind kind, const struct dev *d);

/* Decides for device d. preferred_vm: the user's stored choice among an entry's allowedVms (may be
 * NULL; ignored unless the claiming entry allows it). Entries naming no VM claim nothing; a device
 * claimed for a VM that cannot be hot-plugged (cloud-hypervisor) is ignored, the reason says so.
 * Always fills ret. */
void rule_decide(const struct cfg *c, const struct dev *d, const char *preferred_vm,
                 struct rule_decision *ret);

/* Makes vm the decision's target when the claiming entry allows it (a user's stored choice among
 * allowedVms; the choice is then no longer needed); returns false (decision unchanged) otherwise. */
bool rule_choose_vm(struct rule_decision *dec, const char *vm);

/* Applies the never-passed-through checks again after d learned more about itself (its host-required
 * mount): an attach decision for such a device becomes ignore, with the reason. Returns true when
 * it did. */
bool rule_recheck(const struct dev *d, struct rule_decision *dec);

/* Returns the index of the first usbAuthorization.hostAllow rule matching d, or -1. */
int rule_host_allowed(const struct cfg *c, const struct dev *d);

/* USB authorization (usbAuthorization, the older daemon's semantics): what to write to a USB
 * device's sysfs "authorized" at each moment. The caller writes; root hubs' authorized_default is
 * 0 whenever c->usb_auth.enabled (reconcile sets it, with usbcore's parameter). */
enum rule_auth_moment {
        RULE_AUTH_ADD,           /* helper, add event; for_vm: a VM entry claims the device */
        RULE_AUTH_BEFORE_ATTACH, /* helper/reconcile, right before attaching it to a VM */
        RULE_AUTH_ATTACH_FAILED, /* the attach failed */
        RULE_AUTH_DETACHED,      /* detached from its VM (by request) and still present */
        RULE_AUTH_RECONCILE,     /* reconcile pass over present devices; for_vm: recorded attached */
};

enum rule_auth_action {
        RULE_AUTH_KEEP = 0,    /* write nothing */
        RULE_AUTH_AUTHORIZE,   /* write "1" */
        RULE_AUTH_DEAUTHORIZE, /* write "0" */
};

struct rule_auth_decision {
        enum rule_auth_action action;
        int host_allow; /* matching hostAllow rule, -1 when none */
        char reason[128];
};

/* Decides the authorization write for d. Hubs are always authorized; a device holding a
 * host-required mount (d->host_mount, set by dev_find_host_mount()) is never deauthorized; a
 * hostAllow match is authorized for the host; a device for a VM is authorized right before its
 * attach and deauthorized when the attach fails or it is detached; with deauthorizeUnmatched,
 * reconcile deauthorizes the rest. Nothing is decided (KEEP) when authorization is off. Always
 * fills ret. */
void rule_usb_auth(const struct cfg *c, const struct dev *d, enum rule_auth_moment when, bool for_vm,
                   struct rule_auth_decision *ret);
