/* The wire protocol of vhotplug-api (see proto.h). Requests are untrusted: every argument is typed
 * and bounded here, before anything acts on it. */
#include "proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup-types.h"
#include "errmsg.h"
#include "json.h"
#include "util.h"

#define MAX_NODE 256 /* a device node path */
#define MAX_TAG 256

int proto_parse(const char *line, size_t len, struct proto_request *ret, char **ret_error) {
        _cleanup_free_ char *buf = NULL;
        _cleanup_cjson_ cJSON *o = NULL;
        const char *end = NULL;
        const cJSON *a;

        *ret = (struct proto_request){0};
        if (len > 0 && line[len - 1] == '\r')
                len--;
        if (len > PROTO_MAX_LINE)
                return errmsg_set(ret_error, -EINVAL, "request longer than %d bytes", PROTO_MAX_LINE);
        if (memchr(line, '\0', len))
                return errmsg_set(ret_error, -EINVAL, "invalid request: a NUL byte in the line");
        /* cJSON needs the text NUL-terminated even when given its length. */
        buf = malloc(len + 1);
        if (!buf)
                return errmsg_set(ret_error, -ENOMEM, "out of memory");
        memcpy(buf, line, len);
        buf[len] = '\0';
        if (strspn(buf, " \t") == len)
                return errmsg_set(ret_error, -EINVAL,
                                  "invalid request: an empty line (expected a JSON object)");
        o = cJSON_ParseWithLengthOpts(buf, len, &end, false);
        if (!o)
                return errmsg_set(ret_error, -EINVAL, "invalid request: not JSON (syntax error at byte %zu)",
                                  end && end >= buf ? (size_t)(end - buf) + 1 : (size_t)1);
        end += strspn(end, " \t");
        if (*end)
                return errmsg_set(ret_error, -EINVAL,
                                  "invalid request: text after the JSON object at byte %zu",
                                  (size_t)(end - buf) + 1);
        if (!cJSON_IsObject(o))
                return errmsg_set(ret_error, -EINVAL, "invalid request: expected a JSON object");
        if (json_find_escaped_nul(buf, len) < len)
                return errmsg_set(ret_error, -EINVAL, "invalid request: \\u0000 inside a string");
        a = cJSON_GetObjectItemCaseSensitive(o, "action");
        if (!a || cJSON_IsNull(a) || (cJSON_IsString(a) && !*a->valuestring))
                return errmsg_set(ret_error, -EINVAL, "No action specified");
        if (!cJSON_IsString(a))
                return errmsg_set(ret_error, -EINVAL, "invalid request: \"action\" must be a string");
        ret->json = TAKE_PTR(o);
        ret->action = a->valuestring;
        return 0;
}

void proto_request_clear(struct proto_request *r) {
        if (!r)
                return;
        cJSON_Delete(r->json);
        *r = (struct proto_request){0};
}

/* The value of key, NULL when absent or null. A key given twice is refused: which one counts
 * would depend on the parser. */
static int get(const struct proto_request *r, const char *key, const cJSON **ret, char **ret_error) {
        const cJSON *v = NULL;
        int n = 0;

        for (const cJSON *it = r->json ? r->json->child : NULL; it; it = it->next)
                if (it->string && strcmp(it->string, key) == 0) {
                        v = it;
                        n++;
                }
        if (n > 1)
                return errmsg_set(ret_error, -EINVAL, "\"%s\" is given twice", key);
        *ret = v && !cJSON_IsNull(v) ? v : NULL;
        return 0;
}

int proto_get_string(const struct proto_request *r, const char *key, size_t max, const char **ret,
                     char **ret_error) {
        const cJSON *v;
        int k = get(r, key, &v, ret_error);

        if (k < 0 || !v)
                return k;
        if (!cJSON_IsString(v))
                return errmsg_set(ret_error, -EINVAL, "\"%s\" must be a string", key);
        if (strlen(v->valuestring) > max)
                return errmsg_set(ret_error, -EINVAL, "\"%s\" is longer than %zu bytes", key, max);
        if (!*v->valuestring)
                return 0;
        *ret = v->valuestring;
        return 1;
}

int proto_get_bool(const struct proto_request *r, const char *key, bool *ret, char **ret_error) {
        const cJSON *v;
        int k = get(r, key, &v, ret_error);

        if (k < 0 || !v)
                return k;
        if (!cJSON_IsBool(v))
                return errmsg_set(ret_error, -EINVAL, "\"%s\" must be true, false or null", key);
        *ret = cJSON_IsTrue(v);
        return 1;
}

int proto_get_uint_min(const struct proto_request *r, const char *key, uint32_t min, uint32_t max,
                       uint32_t *ret, char **ret_error) {
        const cJSON *v;
        uint64_t u;
        int k = get(r, key, &v, ret_error);

        if (k < 0 || !v)
                return k;
        if (cJSON_IsNumber(v)) {
                double d = v->valuedouble;
                if (!(d >= min && d <= max) || d != (double)(uint64_t)d)
                        return errmsg_set(ret_error, -EINVAL, "\"%s\" must be a whole number from %u to %u",
                                          key, min, max);
                *ret = (uint32_t)d;
                return 1;
        }
        /* The older daemon's documentation writes numbers as strings. */
        if (cJSON_IsString(v) && parse_u64(v->valuestring, max, &u) == 0 && u >= min) {
                *ret = (uint32_t)u;
                return 1;
        }
        return errmsg_set(ret_error, -EINVAL,
                          "\"%s\" must be a whole number from %u to %u (a number or a decimal string)", key,
                          min, max);
}

int proto_get_uint(const struct proto_request *r, const char *key, uint32_t max, uint32_t *ret,
                   char **ret_error) {
        return proto_get_uint_min(r, key, 1, max, ret, ret_error);
}

int proto_get_hex4(const struct proto_request *r, const char *key, uint16_t *ret, char **ret_error) {
        const char *s = NULL;
        size_t n;
        int k = proto_get_string(r, key, 16, &s, ret_error);

        if (k <= 0)
                return k;
        if ((s[0] == '0' && (s[1] == 'x' || s[1] == 'X')))
                s += 2;
        n = strlen(s);
        if (n == 0 || n > 4 || strspn(s, "0123456789abcdefABCDEF") != n)
                return errmsg_set(ret_error, -EINVAL, "\"%s\" must be a hexadecimal id such as \"046d\"",
                                  key);
        *ret = (uint16_t)strtoul(s, NULL, 16);
        return 1;
}

/* Both of a pair, or neither (0); one alone is an error naming the other. */
static int pair(int a, int b, const char *ka, const char *kb, char **ret_error) {
        if (a < 0 || b < 0)
                return a < 0 ? a : b;
        if (a != b)
                return errmsg_set(ret_error, -EINVAL, "\"%s\" needs \"%s\"", a ? ka : kb, a ? kb : ka);
        return a;
}

int proto_usb_selector(const struct proto_request *r, struct ops_selector *ret, char **ret_error) {
        uint32_t bus = 0, port = 0;
        uint16_t vid = 0, pid = 0;
        const char *node = NULL, *tag = NULL;
        int k_node, k_bus, k_port, k_vid, k_pid, k_tag, k;

        *ret = (struct ops_selector){.kind = DEV_USB};
        k_node = proto_get_string(r, "device_node", MAX_NODE, &node, ret_error);
        if (k_node < 0)
                return k_node;
        if (k_node > 0) {
                ret->by = OPS_BY_NODE;
                ret->node = node;
                return 0;
        }
        k_bus = proto_get_uint(r, "bus", 65535, &bus, ret_error);
        k_port = k_bus < 0 ? 0 : proto_get_uint(r, "port", 255, &port, ret_error);
        k = pair(k_bus, k_port, "bus", "port", ret_error);
        if (k < 0)
                return k;
        if (k > 0) {
                ret->by = OPS_BY_BUS_PORT;
                ret->bus = (int)bus;
                ret->port = (int)port;
                return 0;
        }
        k_vid = proto_get_hex4(r, "vid", &vid, ret_error);
        k_pid = k_vid < 0 ? 0 : proto_get_hex4(r, "pid", &pid, ret_error);
        k = pair(k_vid, k_pid, "vid", "pid", ret_error);
        if (k < 0)
                return k;
        if (k > 0) {
                ret->by = OPS_BY_IDS;
                ret->vendor_id = vid;
                ret->product_id = pid;
                return 0;
        }
        k_tag = proto_get_string(r, "tag", MAX_TAG, &tag, ret_error);
        if (k_tag < 0)
                return k_tag;
        if (k_tag > 0) {
                ret->by = OPS_BY_TAG;
                ret->tag = tag;
                return 0;
        }
        return errmsg_set(ret_error, -EINVAL,
                          "no device named: give \"device_node\", \"bus\" and \"port\", \"vid\" and "
                          "\"pid\", or \"tag\"");
}

int proto_pci_selector(const struct proto_request *r, struct ops_selector *ret, char **ret_error) {
        uint16_t vid = 0, did = 0;
        const char *address = NULL, *tag = NULL;
        int k, k_vid, k_did;

        *ret = (struct ops_selector){.kind = DEV_PCI};
        k = proto_get_string(r, "address", 64, &address, ret_error);
        if (k < 0)
                return k;
        if (k > 0) {
                if (pci_address_normalize(address, ret->address) < 0)
                        return errmsg_set(ret_error, -EINVAL,
                                          "\"address\" must be a PCI address such as \"0000:00:14.3\"");
                ret->by = OPS_BY_ADDRESS;
                return 0;
        }
        k_vid = proto_get_hex4(r, "vid", &vid, ret_error);
        k_did = k_vid < 0 ? 0 : proto_get_hex4(r, "did", &did, ret_error);
        k = pair(k_vid, k_did, "vid", "did", ret_error);
        if (k < 0)
                return k;
        if (k > 0) {
                ret->by = OPS_BY_IDS;
                ret->vendor_id = vid;
                ret->product_id = did;
                return 0;
        }
        k = proto_get_string(r, "tag", MAX_TAG, &tag, ret_error);
        if (k < 0)
                return k;
        if (k > 0) {
                ret->by = OPS_BY_TAG;
                ret->tag = tag;
                return 0;
        }
        return errmsg_set(ret_error, -EINVAL,
                          "no device named: give \"address\", \"vid\" and \"did\", or \"tag\"");
}

cJSON *proto_ok(void) {
        cJSON *o = cJSON_CreateObject();

        if (o && !cJSON_AddStringToObject(o, "result", "ok")) {
                cJSON_Delete(o);
                return NULL;
        }
        return o;
}

char *proto_line(cJSON *o) {
        _cleanup_free_ char *s = json_print(o);
        char *line;

        if (!s || asprintf(&line, "%s\n", s) < 0)
                return NULL;
        return line;
}

char *proto_failed_line(const char *error) {
        _cleanup_cjson_ cJSON *o = cJSON_CreateObject();

        if (!o || !cJSON_AddStringToObject(o, "result", "failed") ||
            !cJSON_AddStringToObject(o, "error", error ? error : "failed"))
                return NULL;
        return proto_line(o);
}

static void add_str(cJSON *o, const char *k, const char *v) {
        if (v)
                cJSON_AddStringToObject(o, k, v);
        else
                cJSON_AddNullToObject(o, k);
}

static void add_int(cJSON *o, const char *k, int v) {
        if (v < 0)
                cJSON_AddNullToObject(o, k);
        else
                cJSON_AddNumberToObject(o, k, v);
}

static void add_hex(cJSON *o, const char *k, bool known, uint16_t v, bool upper) {
        char buf[8];

        if (!known) {
                cJSON_AddNullToObject(o, k);
                return;
        }
        snprintf(buf, sizeof(buf), upper ? "%04X" : "%04x", v);
        cJSON_AddStringToObject(o, k, buf);
}

/* "/dev/bus/usb/BBB/DDD": always present, as the older daemon's clients expect. */
static void add_node(cJSON *o, const char *devnode, int busnum, int devnum) {
        char buf[64];

        if (devnode) {
                cJSON_AddStringToObject(o, "device_node", devnode);
                return;
        }
        snprintf(buf, sizeof(buf), "/dev/bus/usb/%03d/%03d", busnum > 0 ? busnum : 0,
                 devnum > 0 ? devnum : 0);
        cJSON_AddStringToObject(o, "device_node", buf);
}

static const char *sys_name_of(const char *devpath) {
        const char *s = devpath ? strrchr(devpath, '/') : NULL;
        return s ? s + 1 : devpath;
}

/* The root port: the first number of a port path ("3.2" -> 3), -1 when unknown. */
static int port_of(const char *port_path) {
        long v = port_path ? strtol(port_path, NULL, 10) : 0;
        return v > 0 && v < 256 ? (int)v : -1;
}

cJSON *proto_usb_device(const struct dev *d) {
        cJSON *o = cJSON_CreateObject();
        const char *ifs = dev_prop(d, "ID_USB_INTERFACES");
        char buf[DEV_MAX_IFACES * 7 + 2];

        if (!o)
                return NULL;
        add_node(o, d->devnode, d->busnum, d->devnum);
        add_hex(o, "vid", d->has_ids, d->vendor_id, false);
        add_hex(o, "pid", d->has_ids, d->product_id, false);
        add_str(o, "vendor_name", d->vendor_name);
        add_str(o, "product_name", d->product_name);
        if (!ifs && d->n_ifaces > 0) {
                size_t n = 0;
                buf[n++] = ':';
                for (size_t i = 0; i < d->n_ifaces; i++)
                        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%02x%02x%02x:", d->ifaces[i].cls,
                                              d->ifaces[i].subclass, d->ifaces[i].protocol);
                ifs = buf;
        }
        add_str(o, "interfaces", ifs);
        add_int(o, "device_class", d->dev_class);
        add_int(o, "device_subclass", d->dev_subclass);
        add_int(o, "device_protocol", d->dev_protocol);
        add_int(o, "busnum", d->busnum > 0 ? d->busnum : -1);
        add_int(o, "devnum", d->devnum > 0 ? d->devnum : -1);
        add_int(o, "portnum", d->port > 0 ? d->port : -1);
        add_str(o, "serial", d->serial);
        add_str(o, "sys_name", d->sysname);
        return o;
}

cJSON *proto_pci_device(const struct dev *d) {
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        add_str(o, "address", d->pci_address);
        add_str(o, "driver", d->driver);
        add_int(o, "vendor_id", d->has_ids ? d->vendor_id : -1);
        add_int(o, "device_id", d->has_ids ? d->product_id : -1);
        /* The kernel writes PCI ids in capitals (PCI_ID), and so did the older daemon. */
        add_hex(o, "vid", d->has_ids, d->vendor_id, true);
        add_hex(o, "did", d->has_ids, d->product_id, true);
        add_str(o, "vendor_name", d->vendor_name);
        add_str(o, "device_name", d->product_name);
        add_int(o, "pci_class", d->dev_class);
        add_int(o, "pci_subclass", d->dev_subclass);
        add_int(o, "pci_prog_if", d->dev_protocol);
        add_hex(o, "pci_subsystem_vendor_id", d->subsys_vendor_id || d->subsys_device_id,
                d->subsys_vendor_id, true);
        add_hex(o, "pci_subsystem_id", d->subsys_vendor_id || d->subsys_device_id, d->subsys_device_id,
                true);
        return o;
}

cJSON *proto_usb_device_from_history(const struct db_history *h) {
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        add_node(o, h->devnode, h->busnum, h->devnum);
        add_hex(o, "vid", h->has_ids, h->vendor_id, false);
        add_hex(o, "pid", h->has_ids, h->product_id, false);
        add_str(o, "vendor_name", h->vendor_name);
        add_str(o, "product_name", h->product_name);
        cJSON_AddNullToObject(o, "interfaces");
        cJSON_AddNullToObject(o, "device_class");
        cJSON_AddNullToObject(o, "device_subclass");
        cJSON_AddNullToObject(o, "device_protocol");
        add_int(o, "busnum", h->busnum > 0 ? h->busnum : -1);
        add_int(o, "devnum", h->devnum > 0 ? h->devnum : -1);
        add_int(o, "portnum", port_of(h->port_path));
        add_str(o, "serial", h->serial);
        add_str(o, "sys_name", sys_name_of(h->devpath));
        return o;
}

cJSON *proto_pci_device_from_history(const struct db_history *h) {
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        add_str(o, "address", h->pci_address);
        cJSON_AddNullToObject(o, "driver");
        add_int(o, "vendor_id", h->has_ids ? h->vendor_id : -1);
        add_int(o, "device_id", h->has_ids ? h->product_id : -1);
        add_hex(o, "vid", h->has_ids, h->vendor_id, true);
        add_hex(o, "did", h->has_ids, h->product_id, true);
        add_str(o, "vendor_name", h->vendor_name);
        add_str(o, "device_name", h->product_name);
        cJSON_AddNullToObject(o, "pci_class");
        cJSON_AddNullToObject(o, "pci_subclass");
        cJSON_AddNullToObject(o, "pci_prog_if");
        cJSON_AddNullToObject(o, "pci_subsystem_vendor_id");
        cJSON_AddNullToObject(o, "pci_subsystem_id");
        return o;
}

cJSON *proto_allowed_vms(const struct cfg_entry *e) {
        cJSON *a = cJSON_CreateArray();

        for (size_t i = 0; a && e && i < e->n_vms; i++)
                cJSON_AddItemToArray(a, cJSON_CreateString(e->vms[i]->name));
        return a;
}

cJSON *proto_list_item(const struct ops_device *o) {
        cJSON *j = o->dev->kind == DEV_PCI ? proto_pci_device(o->dev) : proto_usb_device(o->dev);
        cJSON *vms;

        if (!j)
                return NULL;
        if (o->iommu_member)
                cJSON_AddBoolToObject(j, "iommu_member", true);
        vms = proto_allowed_vms(o->dec.entry);
        if (!vms) {
                cJSON_Delete(j);
                return NULL;
        }
        cJSON_AddItemToObject(j, "allowed_vms", vms);
        add_str(j, "vm", o->vm[0] ? o->vm : NULL);
        cJSON_AddStringToObject(j, "state", ops_state_name(o->state));
        return j;
}

cJSON *proto_history_row(const struct db_history *h) {
        cJSON *o = cJSON_CreateObject();
        char rule[96];

        if (!o)
                return NULL;
        cJSON_AddNumberToObject(o, "id", (double)h->id);
        cJSON_AddStringToObject(o, "time", h->time);
        cJSON_AddStringToObject(o, "action", h->action);
        cJSON_AddStringToObject(o, "outcome", h->outcome);
        add_str(o, "vm", h->vm);
        add_str(o, "kind", h->kind[0] ? h->kind : NULL);
        add_str(o, "devpath", h->devpath);
        add_hex(o, "vid", h->has_ids, h->vendor_id, false);
        add_hex(o, "pid", h->has_ids, h->product_id, false);
        add_str(o, "vendor_name", h->vendor_name);
        add_str(o, "product_name", h->product_name);
        add_str(o, "serial", h->serial);
        add_str(o, "device_node", h->devnode);
        add_str(o, "pci_address", h->pci_address);
        add_str(o, "id_in_vm", h->vmm_id);
        if (h->rule_section && h->rule_entry >= 0) {
                if (h->rule_allow >= 0)
                        snprintf(rule, sizeof(rule), "%.32s[%d].allow[%d]", h->rule_section, h->rule_entry,
                                 h->rule_allow);
                else
                        snprintf(rule, sizeof(rule), "%.32s[%d]", h->rule_section, h->rule_entry);
                cJSON_AddStringToObject(o, "rule", rule);
        } else {
                cJSON_AddNullToObject(o, "rule");
        }
        add_str(o, "detail", h->detail);
        add_str(o, "error", h->error);
        add_str(o, "requested_by", h->requested_by);
        return o;
}
