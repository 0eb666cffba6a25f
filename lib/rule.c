/* Rule engine: AND of the fields present in a rule, interface fields on one interface,
 * first claiming entry wins, a deny only affects its own entry. */
#include "rule.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "modalias.h"

static bool regex_holds(const regex_t *re, const char *s) {
        return s && regexec(re, s, 0, NULL, 0) == 0;
}

/* True when one interface satisfies every interface field present in r. */
static bool iface_matches(const struct cfg_rule *r, const struct dev *d) {
        for (size_t i = 0; i < d->n_ifaces; i++) {
                const struct dev_iface *f = &d->ifaces[i];
                if ((r->fields & RF_IF_CLASS) && f->cls != r->if_class)
                        continue;
                if ((r->fields & RF_IF_SUBCLASS) && f->subclass != r->if_subclass)
                        continue;
                if ((r->fields & RF_IF_PROTOCOL) && f->protocol != r->if_protocol)
                        continue;
                return true;
        }
        return false;
}

/* The older daemon consulted driverPath only for a device with no interface whose class says what
 * it is: every interface of class 0 or 255 (vendor specific), or none at all. */
static bool has_telling_interface(const struct dev *d) {
        for (size_t i = 0; i < d->n_ifaces; i++)
                if (d->ifaces[i].cls != 0 && d->ifaces[i].cls != 0xff)
                        return true;
        return false;
}

/* driverPath: the file of a kernel module that would drive d, looked up once per device. */
static bool driver_path_holds(const struct cfg *c, const struct cfg_rule *r, const struct dev *d) {
        const struct dev_modules *m;

        if (has_telling_interface(d))
                return false;
        (void)mod_driver_paths(c ? c->general.modules_dir : NULL, d, &m); /* an error leaves no paths */
        for (size_t i = 0; m && i < m->n_paths; i++)
                if (regex_holds(&r->driver_path, m->paths[i]))
                        return true;
        return false;
}

/* The class triple (USB: deviceClass/Subclass/Protocol; PCI: class/subclass/prog-if). */
static bool class_holds(const struct cfg_rule *r, const struct dev *d) {
        unsigned f = r->fields;
        return !((f & RF_DEV_CLASS) && d->dev_class != r->dev_class) &&
               !((f & RF_DEV_SUBCLASS) && d->dev_subclass != r->dev_subclass) &&
               !((f & RF_DEV_PROTOCOL) && d->dev_protocol != r->dev_protocol);
}

static bool usb_matches(const struct cfg *c, const struct cfg_rule *r, const struct dev *d) {
        unsigned f = r->fields;
        if ((f & RF_VENDOR_ID) && (!d->has_ids || d->vendor_id != r->vendor_id))
                return false;
        if ((f & RF_PRODUCT_ID) && (!d->has_ids || d->product_id != r->product_id))
                return false;
        if ((f & RF_VENDOR_NAME) && !regex_holds(&r->vendor_name, d->vendor_name))
                return false;
        if ((f & RF_PRODUCT_NAME) && !regex_holds(&r->product_name, d->product_name))
                return false;
        if ((f & RF_SERIAL) && (!d->serial || strcmp(d->serial, r->serial) != 0))
                return false;
        if ((f & RF_BUS) && d->busnum != r->bus)
                return false;
        if ((f & RF_PORT) && (d->port <= 0 || d->port != r->port))
                return false;
        if ((f & RF_PORT_PATH) && (!d->port_path || strcmp(d->port_path, r->port_path) != 0))
                return false;
        if (!class_holds(r, d))
                return false;
        if ((f & (RF_IF_CLASS | RF_IF_SUBCLASS | RF_IF_PROTOCOL)) && !iface_matches(r, d))
                return false;
        if ((f & RF_REMOVABLE) && !(r->removable & (1u << d->removable)))
                return false;
        /* last: the only field that may read files */
        if ((f & RF_DRIVER_PATH) && !driver_path_holds(c, r, d))
                return false;
        return true;
}

static bool pci_matches(const struct cfg_rule *r, const struct dev *d) {
        unsigned f = r->fields;
        if ((f & RF_ADDRESS) && (!d->pci_address || strcmp(d->pci_address, r->address) != 0))
                return false;
        if ((f & RF_VENDOR_ID) && (!d->has_ids || d->vendor_id != r->vendor_id))
                return false;
        if ((f & RF_PRODUCT_ID) && (!d->has_ids || d->product_id != r->product_id))
                return false;
        return class_holds(r, d);
}

static bool evdev_matches(const struct cfg_rule *r, const struct dev *d) {
        unsigned f = r->fields;
        if ((f & RF_NAME) && !regex_holds(&r->name, d->name))
                return false;
        if ((f & RF_PATH_TAG) && !regex_holds(&r->path_tag, d->path_tag))
                return false;
        if (f & RF_PROPERTY) {
                const char *v = dev_prop(d, r->property);
                if (!v || strcasecmp(v, r->value) != 0)
                        return false;
        }
        return true;
}

bool rule_matches(const struct cfg *c, const struct cfg_rule *r, enum dev_kind kind, const struct dev *d) {
        if (!r->enabled || r->fields == 0 || d->kind != kind)
                return false;
        switch (kind) {
        case DEV_USB:
                return usb_matches(c, r, d);
        case DEV_PCI:
                return pci_matches(r, d);
        case DEV_EVDEV:
                return evdev_matches(r, d);
        default:
                return false;
        }
}

/* Fills the reason when a device is never passed through; returns true then. */
static bool excluded(const struct dev *d, struct rule_decision *ret) {
        const char *why = NULL;
        if (dev_is_usb_hub(d))
                why = "USB hub";
        else if (d->host_mount)
                why = "holds a host-required mount";
        else if (d->kind == DEV_EVDEV && d->id_bus && strcmp(d->id_bus, "usb") == 0)
                why = "input node of a USB device (the USB device itself is passed through)";
        else if (d->kind == DEV_EVDEV && !d->id_input)
                why = "not an input device udev marks ID_INPUT=1";
        if (!why)
                return false;
        if (d->host_mount)
                snprintf(ret->reason, sizeof(ret->reason), "%s (%s)", why, d->host_mount);
        else
                snprintf(ret->reason, sizeof(ret->reason), "%s", why);
        return true;
}

static const struct cfg_vm *pick_vm(const struct cfg_entry *e, const char *preferred_vm) {
        if (e->n_vms == 0)
                return NULL;
        for (size_t i = 0; preferred_vm && i < e->n_vms; i++)
                if (strcmp(e->vms[i]->name, preferred_vm) == 0)
                        return e->vms[i];
        return e->vms[0];
}

/* Returns the index of the first enabled rule of rules[] matching d, or -1. */
static int first_match(const struct cfg *c, const struct cfg_rule *rules, size_t n, enum dev_kind kind,
                       const struct dev *d) {
        for (size_t i = 0; i < n; i++)
                if (rule_matches(c, &rules[i], kind, d))
                        return (int)i;
        return -1;
}

void rule_decide(const struct cfg *c, const struct dev *d, const char *preferred_vm,
                 struct rule_decision *ret) {
        int first_deny_entry = -1, first_deny_rule = -1;

        *ret = (struct rule_decision){.kind = d->kind, .entry_index = -1, .rule_index = -1};
        if (d->kind <= DEV_UNKNOWN || d->kind >= DEV_KIND_MAX) {
                snprintf(ret->reason, sizeof(ret->reason), "not a handled device (subsystem %s)",
                         d->subsystem ? d->subsystem : "unknown");
                return;
        }
        if (excluded(d, ret))
                return;

        for (size_t i = 0; i < c->n_entries[d->kind]; i++) {
                const struct cfg_entry *e = &c->entries[d->kind][i];
                int allow, deny;
                if (!e->enabled || e->n_vms == 0) /* an entry naming no VM claims nothing */
                        continue;
                if (e->legacy_all_inputs) {
                        allow = -1;
                } else {
                        allow = first_match(c, e->allow, e->n_allow, d->kind, d);
                        if (allow < 0)
                                continue;
                }
                deny = first_match(c, e->deny, e->n_deny, d->kind, d);
                if (deny >= 0) {
                        if (first_deny_entry < 0) {
                                first_deny_entry = (int)i;
                                first_deny_rule = deny;
                        }
                        continue;
                }
                ret->action = RULE_ATTACH;
                ret->entry = e;
                ret->entry_index = (int)i;
                ret->rule_index = allow;
                ret->rule_description = allow >= 0 && e->allow[allow].description
                                                ? e->allow[allow].description
                                                : e->description;
                ret->vm = pick_vm(e, preferred_vm);
                ret->choice_needed =
                        e->ask_vm && !(preferred_vm && strcmp(ret->vm->name, preferred_vm) == 0);
                if (allow >= 0)
                        snprintf(ret->reason, sizeof(ret->reason), "allowed by %s[%zu] rule %d",
                                 cfg_section_name(d->kind), i, allow);
                else
                        snprintf(ret->reason, sizeof(ret->reason), "all non-USB input devices (%s[%zu])",
                                 cfg_section_name(d->kind), i);
                if (!cfg_vm_can_hotplug(ret->vm)) {
                        /* claimed, but for a VM that only takes devices at start (cloud-hypervisor) */
                        ret->action = RULE_IGNORE;
                        snprintf(ret->reason, sizeof(ret->reason),
                                 "%s[%zu] names %.64s, a %s VM: its type cannot "
                                 "be hot-plugged",
                                 cfg_section_name(d->kind), i, ret->vm->name,
                                 cfg_vm_type_name(ret->vm->type));
                }
                return;
        }
        ret->action = RULE_IGNORE;
        if (first_deny_entry >= 0)
                snprintf(ret->reason, sizeof(ret->reason), "denied by %s[%d] deny rule %d",
                         cfg_section_name(d->kind), first_deny_entry, first_deny_rule);
        else
                snprintf(ret->reason, sizeof(ret->reason), "no %s entry matched", cfg_section_name(d->kind));
        if (d->modules && d->modules->error < 0) {
                size_t len = strlen(ret->reason);
                snprintf(ret->reason + len, sizeof(ret->reason) - len,
                         " (driverPath: kernel module lookup failed: %s)", strerror(-d->modules->error));
        }
}

int rule_host_allowed(const struct cfg *c, const struct dev *d) {
        for (size_t i = 0; i < c->usb_auth.n_host_allow; i++)
                if (rule_matches(c, &c->usb_auth.host_allow[i], DEV_USB, d))
                        return (int)i;
        return -1;
}

void rule_usb_auth(const struct cfg *c, const struct dev *d, enum rule_auth_moment when, bool for_vm,
                   struct rule_auth_decision *ret) {
        int allow;

        *ret = (struct rule_auth_decision){.action = RULE_AUTH_KEEP, .host_allow = -1};
        if (!c->usb_auth.enabled || d->kind != DEV_USB) {
                snprintf(ret->reason, sizeof(ret->reason), "%s",
                         d->kind != DEV_USB ? "not a USB device" : "USB authorization is not enabled");
                return;
        }
        /* Hubs always: the devices behind them must enumerate to be decided at all. */
        if (dev_is_usb_hub(d)) {
                ret->action = RULE_AUTH_AUTHORIZE;
                snprintf(ret->reason, sizeof(ret->reason), "USB hub");
                return;
        }
        /* Mounted by the host (so authorized already): never taken away. */
        if (d->host_mount) {
                snprintf(ret->reason, sizeof(ret->reason), "holds the host-required mount %.64s",
                         d->host_mount);
                return;
        }
        allow = rule_host_allowed(c, d);
        ret->host_allow = allow;
        switch (when) {
        case RULE_AUTH_BEFORE_ATTACH:
                ret->action = RULE_AUTH_AUTHORIZE;
                snprintf(ret->reason, sizeof(ret->reason), "about to be attached to a VM");
                return;
        case RULE_AUTH_ADD:
                if (for_vm) {
                        snprintf(ret->reason, sizeof(ret->reason),
                                 "claimed for a VM: authorized just before the attach");
                        return;
                }
                break;
        case RULE_AUTH_RECONCILE:
                if (for_vm) {
                        snprintf(ret->reason, sizeof(ret->reason), "attached to a VM");
                        return;
                }
                break;
        case RULE_AUTH_ATTACH_FAILED:
        case RULE_AUTH_DETACHED:
                break;
        }
        if (allow >= 0) {
                ret->action = RULE_AUTH_AUTHORIZE;
                snprintf(ret->reason, sizeof(ret->reason),
                         "kept on the host by usbAuthorization.hostAllow[%d]", allow);
                return;
        }
        if (when == RULE_AUTH_ATTACH_FAILED || when == RULE_AUTH_DETACHED ||
            (when == RULE_AUTH_RECONCILE && c->usb_auth.deauthorize_unmatched)) {
                ret->action = RULE_AUTH_DEAUTHORIZE;
                snprintf(ret->reason, sizeof(ret->reason), "%s and no hostAllow rule keeps it on the host",
                         when == RULE_AUTH_ATTACH_FAILED ? "attach failed"
                         : when == RULE_AUTH_DETACHED    ? "detached from its VM"
                                                         : "no VM claims it");
                return;
        }
        snprintf(ret->reason, sizeof(ret->reason),
                 "left unauthorized: no VM claims it and no hostAllow rule keeps it");
}

bool rule_choose_vm(struct rule_decision *dec, const char *vm) {
        const struct cfg_vm *v;

        if (dec->action != RULE_ATTACH || !dec->entry || !vm)
                return false;
        v = pick_vm(dec->entry, vm);
        if (!v || strcmp(v->name, vm) != 0)
                return false;
        dec->vm = v;
        dec->choice_needed = false;
        return true;
}

bool rule_recheck(const struct dev *d, struct rule_decision *dec) {
        if (dec->action != RULE_ATTACH || !excluded(d, dec))
                return false;
        *dec = (struct rule_decision){
                .action = RULE_IGNORE, .kind = dec->kind, .entry_index = -1, .rule_index = -1};
        excluded(d, dec); /* the reason, into the cleared decision */
        return true;
}
