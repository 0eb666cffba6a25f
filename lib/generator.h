/* vhotplug-generator's work: systemd units written from the configuration at boot and at every
 * "systemctl daemon-reload" (systemd.generator(7)).
 *   vhotplug-api.socket           the API's sockets from general.api (paths, owner, group, mode,
 *                                 vsock port, TCP address), enabled through sockets.target
 *   vhotplug-vm-NAME.path         per VM that can be hot-plugged: starts
 *                                 vhotplug-reconcile@NAME.service whenever the VM's QMP or control
 *                                 socket is created or re-created (the VM started), enabled
 *                                 through paths.target
 * The service units they start (vhotplug-api.service, vhotplug-reconcile@.service) are installed
 * as files; only what depends on the configuration is generated. */
#pragma once

#include "config.h"

#define GEN_API_SOCKET_UNIT "vhotplug-api.socket"

/* Writes the units for cfg into dir (the generator's "normal" directory), with their .wants links.
 * Problems that leave one unit out (a VM name that cannot be a unit name, a user unknown here)
 * are reported, one per line, in *ret_warnings (malloc'd, may be NULL) and do not fail the rest.
 * Returns the number of units written, or -errno with *ret_error. */
int gen_write_units(const struct cfg *cfg, const char *dir, char **ret_warnings, char **ret_error);

/* The unit name of vm's path unit ("vhotplug-vm-gui-vm.path") into buf; -EINVAL when the VM's name
 * cannot be one unchanged (it must pass to vhotplug-reconcile@NAME.service as it is). */
int gen_path_unit_name(const struct cfg_vm *vm, char *buf, size_t len);
