/* vhotplug-generator: a systemd generator (systemd.generator(7)). At boot and at every
 * "systemctl daemon-reload" it reads the configuration and writes the API's socket unit and a path
 * unit per VM. All the work is in lib/generator.c.
 *
 *   vhotplug-generator NORMAL_DIR [EARLY_DIR LATE_DIR]     (as systemd runs it)
 *   vhotplug-generator [-c FILE] [--no-strict-perms] DIR    (tests) */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "config.h"
#include "generator.h"
#include "log.h"

static int run(int argc, char **argv) {
        enum { ARG_NO_STRICT = 0x100 };
        static const struct option longopts[] = {
                {"config", required_argument, NULL, 'c'},
                {"no-strict-perms", no_argument, NULL, ARG_NO_STRICT},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        const char *config = CFG_DEFAULT_PATH;
        _cleanup_free_ char *warnings = NULL, *err = NULL;
        unsigned flags = 0;
        struct cfg *cfg = NULL;
        struct cfg_error cerr;
        int c, r;

        while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        config = optarg;
                        break;
                case ARG_NO_STRICT:
                        flags |= CFG_NO_STRICT_PERMS;
                        break;
                case 'h':
                        printf("Usage: vhotplug-generator [-c FILE] NORMAL_DIR [EARLY_DIR LATE_DIR]\n"
                               "Writes vhotplug-api.socket and a vhotplug-vm-NAME.path per VM from the "
                               "configuration\n"
                               "(default " CFG_DEFAULT_PATH
                               ") into NORMAL_DIR. Run by systemd; see vhotplug-api(8).\n");
                        return 0;
                default:
                        return 2;
                }
        }
        if (argc - optind != 1 && argc - optind != 3) {
                fprintf(stderr, "vhotplug-generator: expected NORMAL_DIR [EARLY_DIR LATE_DIR]\n");
                return 2;
        }
        /* systemd logs a generator's stderr to the kernel log. */
        log_setup("vhotplug-generator", false, true);
        r = cfg_load(config, flags, &cfg, &cerr);
        if (r == -ENOENT)
                return 0; /* not configured: nothing to generate */
        if (r < 0) {
                log_error("%s: no units written", cerr.msg);
                return 1;
        }
        r = gen_write_units(cfg, argv[optind], &warnings, &err);
        cfg_free(cfg);
        for (char *line = warnings ? strtok(warnings, "\n") : NULL; line; line = strtok(NULL, "\n"))
                log_warning("%s", line);
        if (r < 0) {
                log_error("%s", err ? err : strerror(-r));
                return 1;
        }
        return 0;
}

int main(int argc, char **argv) {
        return run(argc, argv);
}
