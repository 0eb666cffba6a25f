/* libFuzzer target: device parsers fed from udev. The input is NUL-separated KEY=VALUE strings
 * (a udev event environment) for dev_new_from_environ(); each string is also given to
 * dev_parse_usb_interfaces(), dev_parse_usb_sysname() and pci_address_normalize(). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "util.h"

#define MAX_VARS 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void parse_one(const char *s) {
        struct dev_iface ifaces[DEV_MAX_IFACES];
        char path[64], pci[PCI_ADDRESS_LEN];
        int bus, port;
        const char *v = strchr(s, '=');

        dev_parse_usb_interfaces(s, ifaces, DEV_MAX_IFACES);
        dev_parse_usb_interfaces(s, ifaces, 2);
        dev_parse_usb_sysname(s, &bus, &port, path, sizeof(path));
        dev_parse_usb_sysname(s, &bus, &port, path, 4);
        pci_address_normalize(s, pci);
        if (v)
                dev_parse_usb_interfaces(v + 1, ifaces, DEV_MAX_IFACES);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *buf, *envp[MAX_VARS + 1];
        size_t n = 0;
        struct dev *d = NULL;

        if (size > (64u << 10))
                return 0;
        buf = malloc(size + 1);
        if (!buf)
                return 0;
        memcpy(buf, data, size);
        buf[size] = '\0';
        for (char *s = buf; s < buf + size + 1 && n < MAX_VARS; s += strlen(s) + 1) {
                if (!*s)
                        continue;
                envp[n++] = s;
                parse_one(s);
        }
        envp[n] = NULL;
        if (dev_new_from_environ(envp, &d) == 0) {
                char line[256];
                dev_describe(d, line, sizeof(line));
                dev_free(d);
        }
        free(buf);
        return 0;
}
