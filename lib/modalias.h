/* Kernel module lookup for driverPath rules: the file of the kernel module that would drive a USB
 * device, found from its interfaces' modaliases through libkmod (modules.alias.bin, then
 * modules.dep.bin for the path), as `modprobe -R ALIAS` + `modinfo -n MODULE` would. Never logs. */
#pragma once

#include <stddef.h>

#include "device.h"

#define MOD_MAX_PATHS 32 /* module files kept per device */
#define MOD_ALIAS_MAX 96 /* "usb:v0BDAp8153d3000dc00dsc00dp00icFFiscFFip00in00" is 51 bytes */

struct mod_ctx;

/* Opens the module directory dir (NULL: /lib/modules/`uname -r`, with the system's modprobe.d
 * configuration; a given dir is used alone, without any configuration, so a test tree is
 * self-contained). Returns -ENOENT when the directory has no modules.alias.bin (depmod never ran
 * there), -ENOPKG when libkmod cannot be loaded (it is opened at the first call), -ENOMEM. */
int mod_ctx_new(const char *dir, struct mod_ctx **ret);

/* Frees a context; NULL-safe. */
void mod_ctx_free(struct mod_ctx *m);

/* Appends to paths[] (capacity max, *n used) the files of the modules that alias modalias, each
 * once; built-in modules (no file) are skipped. Returns the number added or -errno. */
int mod_lookup(struct mod_ctx *m, const char *modalias, char **paths, size_t *n, size_t max);

/* Writes into aliases[] (capacity max) the modaliases of a USB device's interfaces as the kernel
 * prints them: the interfaces' MODALIAS in sysfs when the device is there, else built from d
 * the way the older daemon did (vendor/product/bcdDevice from PRODUCT, device class, interface
 * triples numbered in order). Returns how many were written (0 when nothing is known). */
size_t mod_usb_modaliases(const struct dev *d, char (*aliases)[MOD_ALIAS_MAX], size_t max);

/* The module files of USB device d, resolved once and cached in d->modules (later calls only read
 * the cache). dir as for mod_ctx_new(). Returns 0 or the lookup's -errno (also cached). */
int mod_driver_paths(const char *dir, const struct dev *d, const struct dev_modules **ret);
