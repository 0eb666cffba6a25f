/* The older daemon's state file (general.statePath, default /var/lib/vhotplug/vhotplug.state):
 * per device, the VM a user chose and whether the user detached it for good, keyed
 * "usb-VID:PID:SERIAL" (SERIAL the text "None" when the device had none) or "pci-ADDRESS":
 *
 *   { "selected_vms": { "usb-046d:c52b:None": "chrome-vm" },
 *     "disconnected_devices": [ "usb-04f2:b751:0001", "pci-0000:00:14.3" ] }
 *
 * Read once, on first use, into vhotplug's stored choices. The file is untrusted input. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define LEGACY_MAX_FILE (1u << 20) /* bytes read from a state file */
#define LEGACY_MAX_ENTRIES 4096    /* choices taken from one */

struct legacy_choice {
        char *key; /* our device key: "usb:vid:pid:SERIAL", "usb:vid:pid@*" (no serial), "pci:ADDR" */
        char *vm;  /* chosen VM, NULL when none */
        bool keep_detached;
};

struct legacy_state {
        struct legacy_choice *choices;
        size_t n;
        char **skipped; /* what was left out and why ("selected_vms.usb-x: ..."), for the log */
        size_t n_skipped;
};

/* Reads path into ret. Entries that do not make sense (a key of unknown form, a VM this
 * configuration does not have or that the device's entries could not choose, a wrong type) are
 * skipped and listed in ret->skipped. Returns 0; -ENOENT when there is no such file; -EINVAL for a
 * file that is not a JSON object of that shape (corrupt), -EFBIG past LEGACY_MAX_FILE, with
 * *ret_error saying why; ret is untouched on failure. */
int legacy_read_state(const char *path, const struct cfg *c, struct legacy_state *ret, char **ret_error);

/* Frees what ret holds and empties it. */
void legacy_state_clear(struct legacy_state *s);
