/* libFuzzer target: the QMP stream parser. The input is fed in chunks whose sizes come from the
 * input itself (first byte), draining complete messages in between, as qmp.c does on a socket. */
#include <stddef.h>
#include <stdint.h>

#include "qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct qmp_parser p;
        size_t chunk, off = 0;
        int r = 0;

        if (size < 1)
                return 0;
        chunk = 1 + data[0] % 64;
        data++, size--;
        qmp_parser_init(&p);
        p.max = 4096; /* small limit so the size checks are reached too */
        while (off < size && r >= 0) {
                size_t n = size - off < chunk ? size - off : chunk;
                r = qmp_parser_feed(&p, data + off, n);
                off += n;
                while (r >= 0) {
                        cJSON *msg = NULL;
                        r = qmp_parser_next(&p, &msg);
                        if (r <= 0)
                                break;
                        cJSON_Delete(msg);
                }
        }
        qmp_parser_done(&p);
        return 0;
}
