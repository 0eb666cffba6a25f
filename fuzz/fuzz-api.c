/* libFuzzer target: a request line of vhotplug-api as a client sends it (proto_parse), every
 * argument read the way the handlers read them, the USB and PCI selectors, and the reply that
 * carries the error back (one line of valid UTF-8 JSON whatever the words). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_line(char *line) {
        size_t n;

        if (!line)
                return;
        n = strlen(line);
        /* exactly one line, ending in its newline, parsing back as a JSON object */
        if (n == 0 || line[n - 1] != '\n' || memchr(line, '\n', n - 1))
                __builtin_trap();
        cJSON *o = cJSON_ParseWithLength(line, n);
        if (!cJSON_IsObject(o))
                __builtin_trap();
        cJSON_Delete(o);
        free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const strings[] = {"device_node", "tag",    "vm",
                                              "address",     "device", "qemu_bus_prefix"};
        static const char *const uints[] = {"bus", "port", "limit", "qemu_bus_start_index"};
        static const char *const hexes[] = {"vid", "pid", "did"};
        struct proto_request r;
        struct ops_selector sel;
        char *err = NULL;
        const char *s;
        uint32_t u;
        uint16_t h;
        bool b;

        if (proto_parse((const char *)data, size, &r, &err) < 0) {
                check_line(proto_failed_line(err));
                free(err);
                return 0;
        }
        if (!r.action || !*r.action)
                __builtin_trap(); /* the parse promises an action */
        for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
                if (proto_get_string(&r, strings[i], 4096, &s, &err) > 0 && (!s || !*s || strlen(s) > 4096))
                        __builtin_trap();
        for (size_t i = 0; i < sizeof(uints) / sizeof(uints[0]); i++)
                if (proto_get_uint(&r, uints[i], 65535, &u, &err) > 0 && (u < 1 || u > 65535))
                        __builtin_trap();
        for (size_t i = 0; i < sizeof(hexes) / sizeof(hexes[0]); i++)
                (void)proto_get_hex4(&r, hexes[i], &h, &err);
        (void)proto_get_bool(&r, "disconnected", &b, &err);
        if (proto_usb_selector(&r, &sel, &err) == 0 && sel.by == OPS_BY_NODE && !sel.node)
                __builtin_trap();
        if (proto_pci_selector(&r, &sel, &err) == 0 && sel.by == OPS_BY_ADDRESS && strlen(sel.address) != 12)
                __builtin_trap();
        check_line(proto_failed_line(err ? err : r.action));
        free(err);
        proto_request_clear(&r);
        return 0;
}
