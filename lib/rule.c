/* Rule engine: AND of the fields present in a rule, interface fields on one interface,
 * first claiming entry wins, a deny only affects its own entry. */
#include "rule.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

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

static bool usb_matches(const struct cfg_rule *r, const struct dev *d) {
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
        if ((f & RF_DEV_CLASS) && d->dev_class != r->dev_class)
                return false;
        if ((f & RF_DEV_SUBCLASS) && d->dev_subclass != r->dev_subclass)
                return false;
        if ((f & RF_DEV_PROTOCOL) && d->dev_protocol != r->dev_protocol)
                return false;
        if ((f & (RF_IF_CLASS | RF_IF_SUBCLASS | RF_IF_PROTOCOL)) && !iface_matches(r, d))
                return false;
        if ((f & RF_REMOVABLE) && !(r->removable & (1u << d->removable)))
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
        if ((f & RF_DEV_CLASS) && d->dev_class != r->dev_class)
                return false;
        if ((f & RF_DEV_SUBCLASS) && d->dev_subclass != r->dev_subclass)
                return false;
        if ((f & RF_DEV_PROTOCOL) && d->dev_protocol != r->dev_protocol)
                return false;
        return true;
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

bool rule_matches(const struct cfg_rule *r, enum dev_kind kind, const struct dev *d) {
        if (!r->enabled || r->fields == 0 || d->kind != kind)
                return false;
        switch (kind) {
        case DEV_USB:
                return usb_matches(r, d);
        case DEV_PCI:
                return pci_matches(r, d);
        case DEV_EVDEV:
                return evdev_matches(r, d);
        default:
                return false;
        }
}

static bool is_usb_hub(const struct dev *d) {
        if (d->dev_class == 9)
                return true;
        for (size_t i = 0; i < d->n_ifaces; i++)
                if (d->ifaces[i].cls == 9)
                        return true;
        return false;
}

/* Fills the reason when a device is never passed through; returns true then. */
static bool excluded(const struct dev *d, struct rule_decision *ret) {
        const char *why = NULL;
        if (d->kind == DEV_USB && is_usb_hub(d))
                why = "USB hub";
        else if (d->kind == DEV_USB && d->host_mount)
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
static int first_match(const struct cfg_rule *rules, size_t n, enum dev_kind kind, const struct dev *d) {
        for (size_t i = 0; i < n; i++)
                if (rule_matches(&rules[i], kind, d))
                        return (int)i;
        return -1;
}

void rule_decide(const struct cfg *c, const struct dev *d, const char *preferred_vm, struct rule_decision *ret) {
        int first_deny_entry = -1, first_deny_rule = -1;

        *ret = (struct rule_decision){ .kind = d->kind, .entry_index = -1, .rule_index = -1 };
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
                if (!e->enabled)
                        continue;
                if (e->legacy_all_inputs) {
                        allow = -1;
                } else {
                        allow = first_match(e->allow, e->n_allow, d->kind, d);
                        if (allow < 0)
                                continue;
                }
                deny = first_match(e->deny, e->n_deny, d->kind, d);
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
                ret->rule_description = allow >= 0 && e->allow[allow].description ? e->allow[allow].description
                                                                                   : e->description;
                ret->vm = pick_vm(e, preferred_vm);
                if (allow >= 0)
                        snprintf(ret->reason, sizeof(ret->reason), "allowed by %s[%zu] rule %d",
                                 cfg_section_name(d->kind), i, allow);
                else
                        snprintf(ret->reason, sizeof(ret->reason), "all non-USB input devices (%s[%zu])",
                                 cfg_section_name(d->kind), i);
                return;
        }
        ret->action = RULE_IGNORE;
        if (first_deny_entry >= 0)
                snprintf(ret->reason, sizeof(ret->reason), "denied by %s[%d] deny rule %d",
                         cfg_section_name(d->kind), first_deny_entry, first_deny_rule);
        else
                snprintf(ret->reason, sizeof(ret->reason), "no %s entry matched", cfg_section_name(d->kind));
}

bool rule_choose_vm(struct rule_decision *dec, const char *vm) {
        const struct cfg_vm *v;

        if (dec->action != RULE_ATTACH || !dec->entry || !vm)
                return false;
        v = pick_vm(dec->entry, vm);
        if (!v || strcmp(v->name, vm) != 0)
                return false;
        dec->vm = v;
        return true;
}

bool rule_recheck(const struct dev *d, struct rule_decision *dec) {
        if (dec->action != RULE_ATTACH || !excluded(d, dec))
                return false;
        *dec = (struct rule_decision){ .action = RULE_IGNORE, .kind = dec->kind, .entry_index = -1, .rule_index = -1 };
        excluded(d, dec); /* the reason, into the cleared decision */
        return true;
}
