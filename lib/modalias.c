/* Kernel module lookup for driverPath rules (see modalias.h). The older daemon ran `modprobe -R`
 * and `modinfo -n` per interface; libkmod reads the same indexes in-process. */
#include "modalias.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libkmod.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "dl.h"

/* libkmod is opened when a driverPath rule first needs it (see dl.h). */
static typeof(kmod_new) *sym_kmod_new;
static typeof(kmod_unref) *sym_kmod_unref;
static typeof(kmod_set_log_fn) *sym_kmod_set_log_fn;
static typeof(kmod_get_dirname) *sym_kmod_get_dirname;
static typeof(kmod_load_resources) *sym_kmod_load_resources;
static typeof(kmod_module_new_from_lookup) *sym_kmod_module_new_from_lookup;
static typeof(kmod_module_get_module) *sym_kmod_module_get_module;
static typeof(kmod_module_get_path) *sym_kmod_module_get_path;
static typeof(kmod_module_unref) *sym_kmod_module_unref;
static typeof(kmod_module_unref_list) *sym_kmod_module_unref_list;
static typeof(kmod_list_next) *sym_kmod_list_next;
static const struct dl_sym kmod_syms[] = {
        {"kmod_new", (void **)&sym_kmod_new},
        {"kmod_unref", (void **)&sym_kmod_unref},
        {"kmod_set_log_fn", (void **)&sym_kmod_set_log_fn},
        {"kmod_get_dirname", (void **)&sym_kmod_get_dirname},
        {"kmod_load_resources", (void **)&sym_kmod_load_resources},
        {"kmod_module_new_from_lookup", (void **)&sym_kmod_module_new_from_lookup},
        {"kmod_module_get_module", (void **)&sym_kmod_module_get_module},
        {"kmod_module_get_path", (void **)&sym_kmod_module_get_path},
        {"kmod_module_unref", (void **)&sym_kmod_module_unref},
        {"kmod_module_unref_list", (void **)&sym_kmod_module_unref_list},
        {"kmod_list_next", (void **)&sym_kmod_list_next},
};
static struct dl_lib libkmod = {VHP_LIBKMOD_SONAME, kmod_syms, sizeof(kmod_syms) / sizeof(kmod_syms[0]), 0};

struct mod_ctx {
        struct kmod_ctx *kmod;
};

/* libkmod logs to stderr by default; lib/ never prints. */
__attribute__((format(printf, 6, 0))) static void quiet(void *data, int priority, const char *file, int line,
                                                        const char *fn, const char *format, va_list args) {
}

int mod_ctx_new(const char *dir, struct mod_ctx **ret) {
        static const char *const no_config[] = {NULL};
        _cleanup_free_ char *index = NULL;
        struct mod_ctx *m;
        struct stat st;

        int r = dl_load(&libkmod);
        if (r < 0)
                return r;
        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        /* A given directory stands alone: the host's modprobe.d must not change what a test tree says. */
        m->kmod = sym_kmod_new(dir, dir ? no_config : NULL);
        if (!m->kmod) {
                free(m);
                return -ENOMEM;
        }
        sym_kmod_set_log_fn(m->kmod, quiet, NULL);
        /* Without the index every lookup would quietly find nothing: say why instead. */
        if (asprintf(&index, "%s/modules.alias.bin", sym_kmod_get_dirname(m->kmod)) < 0) {
                mod_ctx_free(m);
                return -ENOMEM;
        }
        if (stat(index, &st) < 0) {
                int e = errno;
                mod_ctx_free(m);
                return -e;
        }
        /* Maps the indexes once; a device's interfaces then cost ~20 us each. */
        (void)sym_kmod_load_resources(m->kmod);
        *ret = m;
        return 0;
}

void mod_ctx_free(struct mod_ctx *m) {
        if (!m)
                return;
        sym_kmod_unref(m->kmod);
        free(m);
}

int mod_lookup(struct mod_ctx *m, const char *modalias, char **paths, size_t *n, size_t max) {
        struct kmod_list *list = NULL, *it;
        int r, added = 0;

        r = sym_kmod_module_new_from_lookup(m->kmod, modalias, &list);
        if (r < 0)
                return r;
        for (it = list; it; it = sym_kmod_list_next(list, it)) {
                struct kmod_module *mod = sym_kmod_module_get_module(it);
                const char *path = sym_kmod_module_get_path(mod);
                bool seen = false;

                for (size_t i = 0; path && i < *n && !seen; i++)
                        seen = strcmp(paths[i], path) == 0;
                if (path && !seen && *n < max) {
                        paths[*n] = strdup(path);
                        if (!paths[*n]) {
                                sym_kmod_module_unref(mod);
                                sym_kmod_module_unref_list(list);
                                return -ENOMEM;
                        }
                        (*n)++;
                        added++;
                }
                sym_kmod_module_unref(mod);
        }
        sym_kmod_module_unref_list(list);
        return added;
}

/* The interfaces' own MODALIAS, from the uevent files of the device's interface directories
 * ("1-3:1.0" beside the device's attributes): fewer reads than udev's enumeration. */
static size_t modaliases_from_sysfs(const struct dev *d, char (*aliases)[MOD_ALIAS_MAX], size_t max) {
        _cleanup_free_ char *dirpath = NULL;
        size_t n = 0, namelen;
        struct dirent *de;
        DIR *dir;

        if (!d->sysname || asprintf(&dirpath, "/sys%s", d->devpath) < 0)
                return 0;
        dir = opendir(dirpath);
        if (!dir)
                return 0;
        namelen = strlen(d->sysname);
        while (n < max && (de = readdir(dir))) {
                char path[PATH_MAX], buf[2048], *line;
                ssize_t len;
                int fd;

                if (strncmp(de->d_name, d->sysname, namelen) != 0 || de->d_name[namelen] != ':')
                        continue;
                if (snprintf(path, sizeof(path), "%s/%s/uevent", dirpath, de->d_name) >= (int)sizeof(path))
                        continue;
                fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0)
                        continue;
                len = read(fd, buf, sizeof(buf) - 1);
                close(fd);
                if (len <= 0)
                        continue;
                buf[len] = '\0';
                for (line = buf; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
                        size_t l = strcspn(line, "\n");
                        /* kernel-made, but keep the shape a modalias has */
                        if (l > 13 && l < MOD_ALIAS_MAX + 9 && strncmp(line, "MODALIAS=usb:", 13) == 0) {
                                snprintf(aliases[n++], MOD_ALIAS_MAX, "%.*s", (int)(l - 9), line + 9);
                                break;
                        }
                }
        }
        closedir(dir);
        return n;
}

/* The older daemon's construction: interface triples numbered in ID_USB_INTERFACES order. */
static size_t modaliases_from_fields(const struct dev *d, char (*aliases)[MOD_ALIAS_MAX], size_t max) {
        const char *product = dev_prop(d, "PRODUCT");
        unsigned v, p, bcd;
        size_t n = 0;

        /* PRODUCT=bda/8153/3000: idVendor/idProduct/bcdDevice in hex, as the kernel's uevent says. */
        if (!d->has_ids || d->dev_class < 0 || !product || sscanf(product, "%x/%x/%x", &v, &p, &bcd) != 3 ||
            bcd > 0xffff)
                return 0;
        for (size_t i = 0; i < d->n_ifaces && n < max; i++)
                snprintf(aliases[n++], MOD_ALIAS_MAX,
                         "usb:v%04Xp%04Xd%04Xdc%02Xdsc%02Xdp%02Xic%02Xisc%02Xip%02Xin%02zX", d->vendor_id,
                         d->product_id, bcd, (unsigned)d->dev_class, (unsigned)d->dev_subclass,
                         (unsigned)d->dev_protocol, d->ifaces[i].cls, d->ifaces[i].subclass,
                         d->ifaces[i].protocol, i & 0xff);
        return n;
}

size_t mod_usb_modaliases(const struct dev *d, char (*aliases)[MOD_ALIAS_MAX], size_t max) {
        size_t n;

        if (d->kind != DEV_USB || !d->devpath)
                return 0;
        n = modaliases_from_sysfs(d, aliases, max);
        return n > 0 ? n : modaliases_from_fields(d, aliases, max);
}

static int resolve(const char *dir, const struct dev *d, struct dev_modules *out) {
        char aliases[DEV_MAX_IFACES][MOD_ALIAS_MAX];
        struct mod_ctx *m = NULL;
        size_t n;
        int r;

        n = mod_usb_modaliases(d, aliases, DEV_MAX_IFACES);
        if (n == 0)
                return 0;
        out->paths = calloc(MOD_MAX_PATHS, sizeof(*out->paths));
        if (!out->paths)
                return -ENOMEM;
        r = mod_ctx_new(dir, &m);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n && r >= 0; i++)
                r = mod_lookup(m, aliases[i], out->paths, &out->n_paths, MOD_MAX_PATHS);
        mod_ctx_free(m);
        return r < 0 ? r : 0;
}

int mod_driver_paths(const char *dir, const struct dev *d, const struct dev_modules **ret) {
        struct dev_modules *cache = d->modules;

        if (!cache)
                return -EINVAL;
        if (!cache->resolved) {
                cache->error = resolve(dir, d, cache);
                cache->resolved = true;
        }
        *ret = cache;
        return cache->error;
}
