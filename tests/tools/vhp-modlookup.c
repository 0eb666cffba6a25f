/* vhp-modlookup: what driverPath rules see, and what finding it costs.
 *
 *   vhp-modlookup [-d DIR] MODALIAS...        module files each alias resolves to
 *   vhp-modlookup [-d DIR] --devpath PATH     a USB device's interface modaliases and module files,
 *                                             read the way the helper reads them (sysfs through udev)
 *   vhp-modlookup [-d DIR] --devpath PATH --bench N
 *                                             N times: build the device, resolve it, free it; prints
 *                                             the time per device (what a driverPath rule adds to an event)
 *
 * DIR is a module directory (general.modulesDir); default /lib/modules/`uname -r`. */
#include <errno.h>
#include <getopt.h>
#include <libudev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "device.h"
#include "modalias.h"

static double now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static int show_device(struct udev *udev, const char *dir, const char *devpath) {
        char aliases[DEV_MAX_IFACES][MOD_ALIAS_MAX];
        const struct dev_modules *m;
        struct dev *d = NULL;
        int r;

        r = dev_new_from_syspath(udev, devpath, &d);
        if (r < 0) {
                fprintf(stderr, "vhp-modlookup: %s: %s\n", devpath, strerror(-r));
                return 1;
        }
        size_t n = mod_usb_modaliases(d, aliases, DEV_MAX_IFACES);
        for (size_t i = 0; i < n; i++)
                printf("modalias %s\n", aliases[i]);
        r = mod_driver_paths(dir, d, &m);
        for (size_t i = 0; i < m->n_paths; i++)
                printf("module %s\n", m->paths[i]);
        if (r < 0)
                fprintf(stderr, "vhp-modlookup: lookup failed: %s\n", strerror(-r));
        dev_free(d);
        return r < 0 ? 1 : 0;
}

static int bench(struct udev *udev, const char *dir, const char *devpath, int n) {
        double *t = calloc((size_t)n, sizeof(*t)), total = 0;
        size_t paths = 0;

        if (!t)
                return 1;
        for (int i = 0; i < n; i++) {
                const struct dev_modules *m;
                struct dev *d = NULL;
                if (dev_new_from_syspath(udev, devpath, &d) < 0) {
                        fprintf(stderr, "vhp-modlookup: %s: no such device\n", devpath);
                        free(t);
                        return 1;
                }
                /* Only the lookup: building the device is paid by every event anyway. */
                double t0 = now_us();
                int r = mod_driver_paths(dir, d, &m);
                t[i] = now_us() - t0;
                paths = m->n_paths;
                dev_free(d);
                if (r < 0) {
                        fprintf(stderr, "vhp-modlookup: lookup failed: %s\n", strerror(-r));
                        free(t);
                        return 1;
                }
                total += t[i];
        }
        qsort(t, (size_t)n, sizeof(*t), cmp_double);
        printf("driverPath lookup: %d devices, %zu module file(s) each: median %.1f us, p95 %.1f us, max "
               "%.1f us, "
               "mean %.1f us\n",
               n, paths, t[n / 2], t[n * 95 / 100], t[n - 1], total / n);
        free(t);
        return 0;
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                {"dir", required_argument, NULL, 'd'},
                {"devpath", required_argument, NULL, 'p'},
                {"bench", required_argument, NULL, 'b'},
                {},
        };
        const char *dir = NULL, *devpath = NULL;
        int c, n = 0, rc = 0;

        while ((c = getopt_long(argc, argv, "d:", opts, NULL)) >= 0) {
                switch (c) {
                case 'd':
                        dir = optarg;
                        break;
                case 'p':
                        devpath = optarg;
                        break;
                case 'b':
                        n = atoi(optarg);
                        break;
                default:
                        return 2;
                }
        }
        if (devpath) {
                struct udev *udev = udev_new();
                if (!udev)
                        return 1;
                rc = n > 0 ? bench(udev, dir, devpath, n) : show_device(udev, dir, devpath);
                udev_unref(udev);
                return rc;
        }
        struct mod_ctx *m = NULL;
        int r = mod_ctx_new(dir, &m);
        if (r < 0) {
                fprintf(stderr, "vhp-modlookup: %s: %s\n", dir ? dir : "/lib/modules/`uname -r`",
                        strerror(-r));
                return 1;
        }
        for (int i = optind; i < argc; i++) {
                char *paths[MOD_MAX_PATHS];
                size_t np = 0;
                r = mod_lookup(m, argv[i], paths, &np, MOD_MAX_PATHS);
                if (r < 0) {
                        fprintf(stderr, "vhp-modlookup: %s: %s\n", argv[i], strerror(-r));
                        rc = 1;
                }
                for (size_t k = 0; k < np; k++) {
                        printf("%s %s\n", argv[i], paths[k]);
                        free(paths[k]);
                }
        }
        mod_ctx_free(m);
        return rc;
}
