/* libFuzzer target: an event message as the helper's service reads it from its socket
 * (svc_event_parse), and the event it gives through the device model (dev_new_from_environ). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "device.h"
#include "service.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct svc_event *ev = NULL;
        struct dev *d = NULL;

        if (svc_event_parse(data, size, &ev) < 0)
                return 0;
        /* the parse promises: entries are KEY=VALUE, NULL-terminated, a non-empty DEVPATH */
        for (size_t i = 0; i < ev->n_env; i++)
                if (!strchr(ev->envp[i], '=') || ev->envp[i][0] == '=')
                        __builtin_trap();
        if (ev->envp[ev->n_env] || !ev->devpath[0])
                __builtin_trap();
        if (dev_new_from_environ(ev->envp, &d) == 0)
                dev_free(d);
        svc_event_free(ev);
        return 0;
}
