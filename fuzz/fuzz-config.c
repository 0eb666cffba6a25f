/* libFuzzer target: the configuration loader (JSON text -> validated struct cfg). */
#include <stddef.h>
#include <stdint.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct cfg_error err;
        struct cfg *c = NULL;

        if (size > (256u << 10))
                return 0;
        if (cfg_load_string((const char *)data, size, "fuzz.conf", &c, &err) == 0)
                cfg_free(c);
        return 0;
}
