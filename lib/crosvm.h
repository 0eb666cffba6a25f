/* crosvm client: runs `crosvm usb attach|detach|list` and `crosvm vfio add|remove|list` (execve, never a
 * shell) with a time bound and parses what it prints. The output formats are crosvm's UsbControlResult
 * Display strings: ok <port> | no_available_port | no_such_device | no_such_port | failed_to_open_device |
 *   failed_to_init_host_device | devices [<port> <vid:04x> <pid:04x>]...
 * and, with exit status 1, "error <text>" (e.g. "error socket failed" when the control socket is
 * unusable, "error failed to open device PATH: ..." when crosvm cannot open the device node). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define CROSVM_OUTPUT_MAX 4096      /* bytes of crosvm output kept; the rest is read and dropped */
#define CROSVM_PORTS_MAX 256        /* devices accepted from one `usb list` */
#define CROSVM_EXIT_INVALID_ARGS 35 /* crosvm's status when its argument parser refuses the command */
#define CROSVM_VFIO_SYSFS "/sys/bus/pci/devices/" /* what `crosvm vfio` takes: this + the address */
#define CROSVM_SAFE_PATH "/run/current-system/sw/bin:/usr/local/bin:/usr/bin:/bin"

struct crosvm_usb_device {
        int port;
        uint16_t vendor_id, product_id;
};

/* Resolves the crosvm binary: a name with '/' is used as is, otherwise it is looked up in
 * CROSVM_SAFE_PATH (udev gives no PATH). Returns 0 and a malloc'd path, or -ENOEXEC. */
int crosvm_find_binary(const char *name, char **ret);

/* Parses the output of `usb attach` (exit status 0). Returns 0 and the port; -ENOSPC
 * (no_available_port); -ENOENT (no_such_device); -EREMOTEIO (failed_to_open_device,
 * failed_to_init_host_device); -EPROTO for anything else. */
int crosvm_parse_attach_output(const char *out, int *ret_port);

/* Parses the output of `usb detach` (exit status 0): "ok [<port>]" is 0; no_such_device (what
 * crosvm answers for an empty port) and no_such_port are -ENOENT; anything else -EPROTO. */
int crosvm_parse_detach_output(const char *out);

/* Parses the output of `usb list` into at most max devices. Returns 0 and the count, -EPROTO for
 * anything malformed, -E2BIG when more than max devices are listed. */
int crosvm_parse_list_output(const char *out, struct crosvm_usb_device *devs, size_t max, size_t *ret_n);

/* Classifies the "error ..." line crosvm prints when it exits with status 1: the device node could
 * not be opened (-ENOENT when missing, -EACCES when not permitted, else -EREMOTEIO), an unexpected
 * response (-EPROTO), anything else is a transport failure: the VM is not there (-EHOSTDOWN). */
int crosvm_parse_error_output(const char *out);

/* Attaches the USB device node devnode to the VM whose control socket is socket. Returns 0 and the
 * port; the parse errors above; -EHOSTDOWN when the VM is not there; -ETIMEDOUT when crosvm did not
 * finish within timeout_ms (it is killed); -ENOEXEC when crosvm cannot be run. *ret_error
 * (malloc'd, when ret_error is not NULL) says what happened on failure. */
int crosvm_usb_attach(const char *bin, const char *socket, const char *devnode, int timeout_ms,
                      int *ret_port, char **ret_error);

/* Detaches the device on port. Errors as for crosvm_usb_attach; -ENOENT when no device is there. */
int crosvm_usb_detach(const char *bin, const char *socket, int port, int timeout_ms, char **ret_error);

/* Lists the attached devices (*ret malloc'd, may be NULL when *ret_n is 0). */
int crosvm_usb_list(const char *bin, const char *socket, int timeout_ms, struct crosvm_usb_device **ret,
                    size_t *ret_n, char **ret_error);

/* PCI hot-plug. crosvm names a device by its sysfs directory, CROSVM_VFIO_SYSFS + address; the VM
 * must have been started with a hot-plug capable PCI bus for it (else crosvm answers
 * "error: Invalid argument"). Upstream crosvm has `vfio add` and `vfio remove` only; Ghaf's fork
 * (tiiuae/ghaf-crosvm) adds `vfio list`, answered "devices[ <sysfs path>]...". */

/* Writes CROSVM_VFIO_SYSFS + the normalized pci_addr into buf. Returns 0, -EINVAL, -ENAMETOOLONG. */
int crosvm_vfio_path(const char *pci_addr, char *buf, size_t len);

/* Parses the output of `vfio list` into at most max PCI addresses. Returns 0 and the count, -EPROTO
 * for anything but "devices" followed by canonical sysfs paths, -E2BIG past max. */
int crosvm_parse_vfio_list_output(const char *out, char (*addrs)[PCI_ADDRESS_LEN], size_t max,
                                  size_t *ret_n);

/* Adds (removes) the PCI device at pci_addr, bound to vfio-pci already, to (from) the VM. Returns 0;
 * -EREMOTEIO when crosvm refused (its answer in *ret_error) or failed without an answer; the run
 * errors of crosvm_usb_attach (-ENOEXEC, -ETIMEDOUT, -EPROTO for a death by signal). */
int crosvm_vfio_add(const char *bin, const char *socket, const char *pci_addr, int timeout_ms,
                    char **ret_error);
int crosvm_vfio_remove(const char *bin, const char *socket, const char *pci_addr, int timeout_ms,
                       char **ret_error);

/* Lists the PCI addresses of the VFIO devices the VM has (*ret malloc'd, NULL when *ret_n is 0).
 * -EOPNOTSUPP when this crosvm has no `vfio list` (upstream); -EHOSTDOWN when it answered "error
 * ..." (the socket); -EPROTO for an answer it cannot parse; run errors as above. */
int crosvm_vfio_list(const char *bin, const char *socket, int timeout_ms, char (**ret)[PCI_ADDRESS_LEN],
                     size_t *ret_n, char **ret_error);
