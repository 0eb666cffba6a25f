/* The wire protocol of vhotplug-api, the older daemon's (SPEC §10): one JSON object per line each
 * way (UTF-8, ending in "\n"). A request has an "action" and its arguments, where null means the
 * same as absent; a reply is {"result":"ok",...} or {"result":"failed","error":"..."}; an event is
 * {"event":"...",...}. This module parses requests (untrusted: any bytes) and builds replies,
 * events and the device objects both carry. It does no I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ops.h"

struct cJSON;

#define PROTO_MAX_LINE 65536 /* bytes of one request line, its "\n" not counted */

struct proto_request {
        struct cJSON *json; /* the request object (owned) */
        const char *action; /* its "action" */
};

/* Parses one request line (len bytes, without its "\n"; a trailing "\r" is ignored). Returns 0,
 * or -EINVAL with *ret_error saying what is wrong: not JSON, not an object, no "action" (the older
 * daemon's "No action specified"), or an action that is not a string. */
int proto_parse(const char *line, size_t len, struct proto_request *ret, char **ret_error);

/* Frees the request's JSON. */
void proto_request_clear(struct proto_request *r);

/* Arguments. Each returns 1 and sets *ret when key holds a value, 0 when it is absent or null
 * (*ret untouched), or -EINVAL with *ret_error naming the key when it holds the wrong type.
 *   string: a JSON string without NUL bytes, at most max bytes (an empty string counts as absent,
 *           as it did for the older daemon);
 *   bool:   true or false;
 *   uint:   a whole number in 1..max, or the same as a decimal string ("bus": "3");
 *   hex4:   a string of one to four hex digits, any case, optionally "0x"-prefixed. */
int proto_get_string(const struct proto_request *r, const char *key, size_t max, const char **ret,
                     char **ret_error);
int proto_get_bool(const struct proto_request *r, const char *key, bool *ret, char **ret_error);
int proto_get_uint(const struct proto_request *r, const char *key, uint32_t max, uint32_t *ret,
                   char **ret_error);
/* The same in min..max (proto_get_uint is 1..max). */
int proto_get_uint_min(const struct proto_request *r, const char *key, uint32_t min, uint32_t max,
                       uint32_t *ret, char **ret_error);
int proto_get_hex4(const struct proto_request *r, const char *key, uint16_t *ret, char **ret_error);

/* The device a usb_attach / usb_detach request names: device_node, else bus and port, else vid and
 * pid, else tag. Strings in ret point into r. Returns 0, or -EINVAL with *ret_error. */
int proto_usb_selector(const struct proto_request *r, struct ops_selector *ret, char **ret_error);

/* The same for pci_attach / pci_detach: address, else vid and did, else tag. */
int proto_pci_selector(const struct proto_request *r, struct ops_selector *ret, char **ret_error);

/* {"result":"ok"}; NULL when out of memory. */
struct cJSON *proto_ok(void);

/* One line of JSON text for o, valid UTF-8, with its "\n" (malloc'd; NULL when out of memory). */
char *proto_line(struct cJSON *o);

/* The line {"result":"failed","error":ERROR}\n (malloc'd; NULL when out of memory). */
char *proto_failed_line(const char *error);

/* Device objects: USB (device_node, vid, pid, vendor_name, product_name, interfaces, device_class,
 * device_subclass, device_protocol, busnum, devnum, portnum, serial, sys_name) and PCI (address,
 * driver, vendor_id, device_id, vid, did, vendor_name, device_name, pci_class, pci_subclass,
 * pci_prog_if, pci_subsystem_vendor_id, pci_subsystem_id). NULL when out of memory. */
struct cJSON *proto_usb_device(const struct dev *d);
struct cJSON *proto_pci_device(const struct dev *d);

/* The same from a history row, for a device that may be gone (what the row knows; the rest null). */
struct cJSON *proto_usb_device_from_history(const struct db_history *h);
struct cJSON *proto_pci_device_from_history(const struct db_history *h);

/* An item of usb_devices / pci_devices: the device object plus allowed_vms, vm and state
 * (PCI: iommu_member when true). */
struct cJSON *proto_list_item(const struct ops_device *o);

/* The VMs of an entry, as allowed_vms: ["gui-vm", "chrome-vm"]. */
struct cJSON *proto_allowed_vms(const struct cfg_entry *e);

/* A history row as vhotplugctl history shows it. */
struct cJSON *proto_history_row(const struct db_history *h);
