/* vhp-ops: drives lib/coldplug.h and lib/power.h from the command line, for integration tests,
 * until vhotplugctl and the API call them.
 *
 *   vhp-ops CONFIG vmm-args VM [PREFIX [START_INDEX]]
 *       prints the arguments one a line; warnings on stderr as "warning: ..."
 *   vhp-ops CONFIG suspend|resume usb|pci [VM]
 *       prints one line per device:
 *       "ACTION OUTCOME VM DEVPATH id=ID port=PORT[ note=NOTE][ error=ERROR]"
 *
 * The configuration is read without the ownership check and so is the database (tests run as
 * whoever runs them). Exit status 0, 1 on failure (message on stderr), 3 when an item failed, 2 for
 * usage. */
#include <errno.h>
#include <libudev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coldplug.h"
#include "power.h"

static int usage(void) {
        fprintf(stderr,
                "usage: vhp-ops CONFIG vmm-args VM [PREFIX [START]] | suspend|resume usb|pci [VM]\n");
        return 2;
}

static int vmm_args(const struct xact_ctx *ctx, struct udev *udev, int argc, char **argv) {
        struct cold_args a = {0};
        char *err = NULL;
        int r;

        if (argc < 1 || argc > 3)
                return usage();
        r = cold_vmm_args(ctx, udev, argv[0], argc > 1 ? argv[1] : NULL, argc > 2 ? atoi(argv[2]) : 0, &a,
                          &err);
        if (r < 0) {
                fprintf(stderr, "error: %s\n", err ? err : strerror(-r));
                free(err);
                return 1;
        }
        for (size_t i = 0; i < a.n_warnings; i++)
                fprintf(stderr, "warning: %s\n", a.warnings[i]);
        for (size_t i = 0; i < a.argc; i++)
                printf("%s\n", a.argv[i]);
        cold_args_clear(&a);
        return 0;
}

static int power(const struct xact_ctx *ctx, struct udev *udev, bool suspend, int argc, char **argv) {
        struct power_result res = {0};
        enum dev_kind kind;
        char *err = NULL;
        int r;

        if (argc < 1 || argc > 2)
                return usage();
        kind = dev_kind_from_name(argv[0]);
        r = suspend ? power_suspend(ctx, udev, kind, argc > 1 ? argv[1] : NULL, "vhp-ops", &res, &err)
                    : power_resume(ctx, udev, kind, argc > 1 ? argv[1] : NULL, &res, &err);
        if (r < 0) {
                fprintf(stderr, "error: %s\n", err ? err : strerror(-r));
                free(err);
                return 1;
        }
        for (size_t i = 0; i < res.n; i++) {
                const struct power_item *it = &res.items[i];
                printf("%s %s %s %s id=%s port=%d%s%s%s%s\n", xact_action_name(it->action),
                       xact_outcome_name(it->outcome), it->vm, it->devpath, it->id, it->port,
                       it->note[0] ? " note=" : "", it->note, it->error[0] ? " error=" : "", it->error);
        }
        r = res.n_failed ? 3 : 0;
        power_result_clear(&res);
        return r;
}

int main(int argc, char **argv) {
        struct cfg *cfg = NULL;
        struct cfg_error cerr;
        struct udev *udev;
        int r;

        if (argc < 3)
                return usage();
        if (cfg_load(argv[1], CFG_NO_STRICT_PERMS, &cfg, &cerr) < 0) {
                fprintf(stderr, "error: %s\n", cerr.msg);
                return 1;
        }
        udev = udev_new();
        if (!udev) {
                cfg_free(cfg);
                return 1;
        }
        /* VHP_OPS_MOUNTINFO: a mount table for the host-mount checks (tests). */
        struct xact_ctx ctx = {
                .cfg = cfg, .no_strict_perms = true, .mountinfo = getenv("VHP_OPS_MOUNTINFO")};
        if (strcmp(argv[2], "vmm-args") == 0)
                r = vmm_args(&ctx, udev, argc - 3, argv + 3);
        else if (strcmp(argv[2], "suspend") == 0 || strcmp(argv[2], "resume") == 0)
                r = power(&ctx, udev, strcmp(argv[2], "suspend") == 0, argc - 3, argv + 3);
        else
                r = usage();
        udev_unref(udev);
        cfg_free(cfg);
        return r;
}
