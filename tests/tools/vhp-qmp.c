/* vhp-qmp SOCKET COMMAND [ARGS-JSON]: runs one QMP command and prints its "return" value as JSON
 * (exit 0) or QEMU's error text / the failure (exit 1). Integration tests use it to check QEMU state
 * (qom-list, qom-get). Environment: VHP_QMP_TIMEOUT_MS (default 10000). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup-types.h"
#include "qmp.h"

int main(int argc, char **argv) {
        _cleanup_cjson_ cJSON *args = NULL, *ret = NULL;
        _cleanup_qmp_ struct qmp *q = NULL;
        _cleanup_free_ char *cls = NULL, *err = NULL, *text = NULL;
        const char *t = getenv("VHP_QMP_TIMEOUT_MS");
        int timeout = t ? atoi(t) : 10000;

        if (argc < 3 || argc > 4) {
                fprintf(stderr, "usage: %s SOCKET COMMAND [ARGS-JSON]\n", argv[0]);
                return 2;
        }
        if (argc == 4 && !(args = cJSON_Parse(argv[3]))) {
                fprintf(stderr, "invalid JSON arguments: %s\n", argv[3]);
                return 2;
        }
        int r = qmp_connect(argv[1], timeout > 0 ? timeout : 10000, &q);
        if (r < 0) {
                fprintf(stderr, "error: connect %s: %s\n", argv[1], strerror(-r));
                return 1;
        }
        r = qmp_execute(q, argv[2], args, &ret, &cls, &err);
        if (r == -EREMOTEIO) {
                printf("error: %s: %s\n", cls, err);
                return 1;
        }
        if (r < 0) {
                fprintf(stderr, "error: %s: %s\n", argv[2], strerror(-r));
                return 1;
        }
        text = cJSON_PrintUnformatted(ret);
        printf("%s\n", text ? text : "null");
        return 0;
}
