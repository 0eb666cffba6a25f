/* libFuzzer target: the parsers of crosvm's `usb attach|detach|list` and `vfio list` output and error
 * lines. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crosvm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct crosvm_usb_device devs[8];
        char addrs[4][PCI_ADDRESS_LEN];
        size_t n;
        int port;
        char *s;

        /* crosvm.c keeps at most CROSVM_OUTPUT_MAX bytes, NUL-terminated */
        if (size > CROSVM_OUTPUT_MAX)
                size = CROSVM_OUTPUT_MAX;
        s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        crosvm_parse_attach_output(s, &port);
        crosvm_parse_detach_output(s);
        crosvm_parse_list_output(s, devs, 8, &n);
        crosvm_parse_list_output(s, devs, 1, &n);
        crosvm_parse_error_output(s);
        crosvm_parse_vfio_list_output(s, addrs, 4, &n);
        free(s);
        return 0;
}
