/* Rule engine: decides what to do with a device under a configuration. Pure: no I/O. */
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
        char reason[256];
};

/* Returns true when every present field of rule r holds for d (interface fields on one interface). */
bool rule_matches(const struct cfg_rule *r, enum dev_kind kind, const struct dev *d);

/* Decides for device d. preferred_vm: the user's stored choice among an entry's allowedVms (may be
 * NULL; ignored unless the claiming entry allows it). Always fills ret. */
void rule_decide(const struct cfg *c, const struct dev *d, const char *preferred_vm, struct rule_decision *ret);

/* Makes vm the decision's target when the claiming entry allows it (a user's stored choice among
 * allowedVms); returns false (decision unchanged) otherwise. */
bool rule_choose_vm(struct rule_decision *dec, const char *vm);

/* Applies the never-passed-through checks again after d learned more about itself (its host-required
 * mount): an attach decision for such a device becomes ignore, with the reason. Returns true when
 * it did. */
bool rule_recheck(const struct dev *d, struct rule_decision *dec);
