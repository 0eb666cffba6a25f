/* Cold-plug arguments (see coldplug.h). The order of the output is the older daemon's: OVMF, PCI
 * devices (in the order of the rules, then by address; a device's IOMMU group members right after
 * it), ACPI tables, input devices. Each device is bound and recorded under its device lock, as a
 * helper would, so that an event of the same device waits. */
#include "coldplug.h"

#include <errno.h>
#include <grp.h>
#include <libudev.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup-types.h"
#include "db.h"
#include "errmsg.h"
#include "lock.h"
#include "util.h"

#define COLD_MAX_DEVICES 4096 /* PCI and input devices looked at */
#define NVIDIA_VENDOR_ID 0x10de
#define PCI_CLASS_DISPLAY 0x03
#define NAME_BUF_MAX 4096 /* getpwnam_r/getgrnam_r buffer */

struct present {
        struct dev *dev;
        struct rule_decision dec;
        bool claimed; /* by the rules, for this VM */
        bool emitted; /* handed to the VM (or tried) */
};

struct state {
        const struct xact_ctx *ctx;
        const struct cfg_vm *vm;
        struct udev *udev;
        struct db *db;
        struct present *present;
        size_t n_present;
        const char *prefix;    /* NULL: no bus= */
        int bus_index;         /* the next PREFIXn */
        bool ovmf;             /* an autoOvmf entry gave the VM an NVIDIA display device */
        struct cold_args out;  /* PCI and input arguments */
        struct cold_args acpi; /* ACPI table arguments (they go between the two) */
        size_t pci_end;        /* out.argc after the PCI devices */
};

/* ---- string lists ---- */

static int strv_append(char ***v, size_t *n, char *s) {
        char **nv;

        if (!s)
                return -ENOMEM;
        nv = realloc(*v, (*n + 2) * sizeof(char *));
        if (!nv) {
                free(s);
                return -ENOMEM;
        }
        nv[(*n)++] = s;
        nv[*n] = NULL;
        *v = nv;
        return 0;
}

/* Appends the formatted text to v. */
__attribute__((format(printf, 3, 0))) static int strv_appendv(char ***v, size_t *n, const char *fmt,
                                                              va_list ap) {
        char *s;

        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        return strv_append(v, n, s);
}

__attribute__((format(printf, 2, 3))) static int arg(struct cold_args *a, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = strv_appendv(&a->argv, &a->argc, fmt, ap);
        va_end(ap);
        return r;
}

__attribute__((format(printf, 2, 3))) static int warn(struct state *s, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = strv_appendv(&s->out.warnings, &s->out.n_warnings, fmt, ap);
        va_end(ap);
        return r;
}

void cold_args_clear(struct cold_args *a) {
        if (!a)
                return;
        strv_free(a->argv);
        strv_free(a->warnings);
        *a = (struct cold_args){0};
}

/* A value inside a QEMU option string ("evdev=VALUE"): QEMU takes a doubled comma as a comma. */
static char *qemu_opt_value(const char *v) {
        size_t n = strlen(v), extra = 0;
        char *out, *o;

        for (size_t i = 0; i < n; i++)
                extra += v[i] == ',';
        out = malloc(n + extra + 1);
        if (!out)
                return NULL;
        o = out;
        for (size_t i = 0; i < n; i++) {
                *o++ = v[i];
                if (v[i] == ',')
                        *o++ = ',';
        }
        *o = '\0';
        return out;
}

static bool prefix_ok(const char *p) {
        size_t n = strlen(p);

        if (n > COLD_BUS_PREFIX_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') ||
                      (p[i] >= '0' && p[i] <= '9') || p[i] == '-' || p[i] == '_' || p[i] == '.'))
                        return false;
        return true;
}

/* ---- the devices ---- */

static bool wanted_syspath(const char *syspath) {
        const char *name = strrchr(syspath, '/');
        name = name ? name + 1 : syspath;
        return !strstr(syspath, "/input/") || strncmp(name, "event", 5) == 0;
}

/* Claimed for the VM: by an entry naming it (a cloud-hypervisor VM's devices are claimed too,
 * though rule_decide() leaves them on the host for hot-plug), not kept detached, not suspended. */
static int claim(struct state *s, struct present *p) {
        struct rule_decision *dec = &p->dec;
        char what[160];
        bool looked;
        int r;

        rule_decide(s->ctx->cfg, p->dev, NULL, dec);
        if (!dec->entry || !dec->vm)
                return 0;
        looked = dec->action == RULE_ATTACH; /* xact_complete() reads the mount table then */
        r = xact_complete(s->ctx, s->db, p->dev, dec);
        if (r < 0)
                return r;
        if (!dec->entry || dec->vm != s->vm)
                return 0;
        dev_describe(p->dev, what, sizeof(what));
        /* A VM that cannot hot-plug had no look at the mount table above: the disk the host needs
         * stays, and the user hears why. */
        if (p->dev->host_mount ||
            (!looked && dev_find_host_mount(p->dev, s->ctx->mountinfo, s->ctx->cfg->general.host_mounts,
                                            s->ctx->cfg->general.n_host_mounts) > 0))
                return warn(s, "%s left out: it holds the host-required mount %s", what, p->dev->host_mount);
        if (dec->action != RULE_ATTACH && cfg_vm_can_hotplug(dec->vm))
                return 0; /* refused on a closer look */
        if (dec->keep_detached)
                return warn(s, "%s left out: the user asked to keep it on the host", what);
        if (dec->suspended)
                return warn(s, "%s left out: suspended; resume gives it back", what);
        p->claimed = true;
        return 0;
}

static int enumerate(struct state *s) {
        _cleanup_udev_enumerate_ struct udev_enumerate *e = udev_enumerate_new(s->udev);
        struct udev_list_entry *it;
        size_t cap = 0;
        int r;

        if (!e)
                return -ENOMEM;
        if (udev_enumerate_add_match_subsystem(e, "pci") < 0 ||
            udev_enumerate_add_match_subsystem(e, "input") < 0 || udev_enumerate_scan_devices(e) < 0)
                return -EIO;
        udev_list_entry_foreach(it, udev_enumerate_get_list_entry(e)) {
                const char *syspath = udev_list_entry_get_name(it);
                struct dev *d = NULL;

                if (!wanted_syspath(syspath) || s->n_present >= COLD_MAX_DEVICES)
                        continue;
                if (dev_new_from_syspath(s->udev, syspath, &d) < 0)
                        continue; /* vanished meanwhile */
                if (d->kind != DEV_PCI && d->kind != DEV_EVDEV) {
                        dev_free(d);
                        continue;
                }
                if (s->n_present == cap) {
                        struct present *np = reallocarray(s->present, cap ? cap * 2 : 64, sizeof(*np));
                        if (!np) {
                                dev_free(d);
                                return -ENOMEM;
                        }
                        s->present = np;
                        cap = cap ? cap * 2 : 64;
                }
                s->present[s->n_present] = (struct present){.dev = d};
                r = claim(s, &s->present[s->n_present++]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* PCI devices first, then input devices; each in the order of the rules, then by address (path). */
static int cmp_order(const void *a, const void *b) {
        const struct present *x = a, *y = b;
        const char *kx = x->dev->pci_address ? x->dev->pci_address : x->dev->devpath;
        const char *ky = y->dev->pci_address ? y->dev->pci_address : y->dev->devpath;

        if (x->claimed != y->claimed)
                return x->claimed ? -1 : 1;
        if (x->dev->kind != y->dev->kind)
                return x->dev->kind == DEV_PCI ? -1 : 1;
        if (x->dec.entry_index != y->dec.entry_index)
                return x->dec.entry_index - y->dec.entry_index;
        if (x->dec.rule_index != y->dec.rule_index)
                return x->dec.rule_index - y->dec.rule_index;
        return strcmp(kx, ky);
}

static struct present *find_pci(struct state *s, const char *addr) {
        for (size_t i = 0; i < s->n_present; i++)
                if (s->present[i].dev->pci_address && strcmp(s->present[i].dev->pci_address, addr) == 0)
                        return &s->present[i];
        return NULL;
}

static bool needs_ovmf(const struct present *p) {
        const struct dev *d = p->dev;
        return p->dec.entry && p->dec.entry->auto_ovmf && d->kind == DEV_PCI && d->has_ids &&
               d->vendor_id == NVIDIA_VENDOR_ID && d->dev_class == PCI_CLASS_DISPLAY;
}

/* Whether the record of d puts it in another VM now: then it is not given to this one. */
static int in_other_vm(struct state *s, const struct dev *d, char *vm, size_t len) {
        struct db_attachment a = {0};
        int r = db_attachment_get(s->db, d->devpath, &a);

        if (r <= 0)
                return r;
        r = strcmp(a.vm, s->vm->name) != 0 && a.state != DB_PENDING;
        str_copy(vm, len, a.vm);
        db_attachment_clear(&a);
        return r;
}

/* Records d as attached to the VM under id and bus, cold-plugged, with why in history. */
static int record(struct state *s, const struct dev *d, const struct rule_decision *dec, bool member,
                  const char *id, const char *bus, const char *why) {
        struct db_rule_ref ref = xact_rule_ref_of(dec);
        int64_t row;
        int r;

        if (member)
                ref.allow = -1; /* a group member matched no allow rule */
        r = xact_record_begin(s->db, d, &ref, s->vm->name, id, &row);
        if (r >= 0)
                r = db_attachment_set_cold_plugged(s->db, row);
        if (r >= 0)
                r = db_attach_adopted(s->db, row, -1, bus, why);
        return r;
}

/* Records that d could not be handed over (its binding was refused). */
static int record_failed(struct state *s, const struct dev *d, const struct rule_decision *dec,
                         const char *error) {
        struct db_rule_ref ref = xact_rule_ref_of(dec);
        int64_t row;
        int r;

        r = xact_record_begin(s->db, d, &ref, s->vm->name, NULL, &row);
        return r < 0 ? r : db_attach_finish(s->db, row, DB_FAILED, -1, NULL, error);
}

/* The arguments of one PCI device, and its record. dec is the claiming device's decision;
 * member_of names the claiming device when d is one of its IOMMU group members. */
static int emit_pci(struct state *s, const struct dev *d, const struct rule_decision *dec,
                    const char *member_of) {
        char id[VMM_ID_MAX], bus[COLD_BUS_PREFIX_MAX + 16] = "", why[128];
        bool root = dec->entry && dec->entry->use_root_bus;
        int r;

        r = vmm_attachment_id(s->vm, d, id, sizeof(id));
        if (r < 0)
                return warn(s, "PCI %s left out: no usable id", d->pci_address);
        switch (s->vm->type) {
        case VMM_QEMU:
                if (s->prefix && !root)
                        snprintf(bus, sizeof(bus), "%s%d", s->prefix, s->bus_index);
                s->bus_index++;
                r = arg(&s->out, "-device");
                if (r >= 0)
                        r = arg(&s->out, "vfio-pci,host=%s,multifunction=on,id=%s%s%s", d->pci_address, id,
                                bus[0] ? ",bus=" : "", bus);
                break;
        case VMM_CROSVM:
                r = arg(&s->out, "--vfio");
                if (r >= 0)
                        r = arg(&s->out, "%s,iommu=viommu", id);
                break;
        case VMM_CLOUD_HYPERVISOR:
                r = arg(&s->out, "--device");
                if (r >= 0)
                        r = arg(&s->out, "path=%s", id);
                break;
        }
        if (r < 0)
                return r;
        if (member_of)
                snprintf(why, sizeof(why), "cold-plugged: IOMMU group member of %s (pciIommuAddAll)",
                         member_of);
        else
                snprintf(why, sizeof(why), "cold-plugged: on the VM's command line");
        return record(s, d, dec, member_of != NULL, id, bus, why);
}

/* The IOMMU group members the policy bound with p (plan->members[1..]), right after it. */
static int emit_members(struct state *s, const struct present *p, const struct vfio_plan *plan) {
        for (size_t i = 1; i < plan->n; i++) {
                const char *addr = plan->members[i].addr;
                struct present *m = find_pci(s, addr);
                _cleanup_dev_ struct dev *own = NULL;
                const struct dev *d;
                char path[64];
                int r;

                if (m && m->emitted)
                        continue;
                if (m && m->dec.entry && m->dec.vm && m->dec.vm != s->vm) {
                        r = warn(s, "PCI %s (IOMMU group member of %s) left out: claimed for VM %s", addr,
                                 p->dev->pci_address, m->dec.vm->name);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (m) {
                        m->emitted = true;
                        d = m->dev;
                } else {
                        snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", addr);
                        if (dev_new_from_syspath(s->udev, path, &own) < 0 || own->kind != DEV_PCI)
                                continue;
                        d = own;
                }
                /* claimed in its own right: recorded with its own decision */
                r = m && m->claimed ? emit_pci(s, d, &m->dec, NULL)
                                    : emit_pci(s, d, &p->dec, p->dev->pci_address);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Binds one claimed PCI device (and its group, per its entry) and emits it, under its device lock. */
static int hand_over_pci(struct state *s, struct present *p) {
        struct vfio_plan plan = {0};
        _cleanup_free_ char *err = NULL;
        char what[160], other[CFG_MAX_VM_NAME + 1], msg[1024];
        int r, lock;

        dev_describe(p->dev, what, sizeof(what));
        lock = lock_take_device(s->ctx->cfg->general.lock_dir, p->dev->devpath, LOCK_TIMEOUT_MS);
        if (lock < 0)
                return warn(s, "%s left out: cannot lock the device: %s", what, strerror(-lock));
        dev_add_details(p->dev);
        r = in_other_vm(s, p->dev, other, sizeof(other));
        if (r > 0) {
                r = warn(s, "%s left out: recorded in VM %s", what, other);
                goto out;
        }
        if (r < 0)
                goto out;
        r = xact_vfio_bind(s->ctx, p->dec.entry, p->dev->pci_address, &plan, &err);
        if (r < 0) {
                snprintf(msg, sizeof(msg), "cannot hand the device to vfio-pci: %s",
                         err ? err : strerror(-r));
                r = record_failed(s, p->dev, &p->dec, msg);
                if (r >= 0)
                        r = warn(s, "%s left out: %s", what, msg);
                goto out;
        }
        s->ovmf |= s->vm->type == VMM_QEMU && needs_ovmf(p);
        r = emit_pci(s, p->dev, &p->dec, NULL);
        if (r >= 0)
                r = emit_members(s, p, &plan);
out:
        vfio_plan_clear(&plan);
        lock_release(lock);
        return r;
}

static int hand_over_evdev(struct state *s, struct present *p) {
        const struct dev *d = p->dev;
        _cleanup_free_ char *node = NULL;
        char id[VMM_ID_MAX], what[160], other[CFG_MAX_VM_NAME + 1];
        int r, lock;

        dev_describe(d, what, sizeof(what));
        if (!d->devnode)
                return warn(s, "%s left out: no device node", what);
        if (s->vm->type == VMM_CLOUD_HYPERVISOR)
                return warn(s, "%s left out: cloud-hypervisor takes no input devices", what);
        if (s->vm->type == VMM_CROSVM && strpbrk(d->devnode, ",[]"))
                return warn(s, "%s left out: its node %s cannot be written in crosvm's --input", what,
                            d->devnode);
        if (vmm_attachment_id(s->vm, d, id, sizeof(id)) < 0)
                return warn(s, "%s left out: no usable id", what);
        lock = lock_take_device(s->ctx->cfg->general.lock_dir, d->devpath, LOCK_TIMEOUT_MS);
        if (lock < 0)
                return warn(s, "%s left out: cannot lock the device: %s", what, strerror(-lock));
        r = in_other_vm(s, d, other, sizeof(other));
        if (r > 0) {
                r = warn(s, "%s left out: recorded in VM %s", what, other);
                goto out;
        }
        if (r < 0)
                goto out;
        if (s->vm->type == VMM_QEMU) {
                node = qemu_opt_value(d->devnode);
                r = node ? arg(&s->out, "-device") : -ENOMEM;
                if (r >= 0)
                        r = arg(&s->out, "virtio-input-host-pci,evdev=%s,id=%s", node, id);
        } else {
                r = arg(&s->out, "--input");
                if (r >= 0)
                        r = arg(&s->out, "evdev[path=%s]", d->devnode);
        }
        if (r >= 0)
                r = record(s, d, &p->dec, false, id, "", "cold-plugged: on the VM's command line");
out:
        lock_release(lock);
        return r;
}

/* ---- ACPI tables ---- */

/* Resolves a user or group name (a number passes as is); -ENOENT when unknown here. */
static int lookup_id(const char *name, bool group, unsigned *ret) {
        char buf[NAME_BUF_MAX];
        uint64_t v;
        int r;

        if (parse_u64(name, UINT32_MAX - 1, &v) == 0) {
                *ret = (unsigned)v;
                return 0;
        }
        if (group) {
                struct group g, *res = NULL;
                r = getgrnam_r(name, &g, buf, sizeof(buf), &res);
                if (r == 0 && res)
                        *ret = res->gr_gid;
                return r ? -r : res ? 0 : -ENOENT;
        }
        struct passwd pw, *res = NULL;
        r = getpwnam_r(name, &pw, buf, sizeof(buf), &res);
        if (r == 0 && res)
                *ret = res->pw_uid;
        return r ? -r : res ? 0 : -ENOENT;
}

static int give_table(struct state *s, const struct cfg_acpi_table *t, const char *where) {
        unsigned uid = (unsigned)-1, gid = (unsigned)-1;
        struct stat st;
        char *safe;
        int r;

        if (stat(t->path, &st) < 0)
                return warn(s, "ACPI table %s (%s) left out: %s", t->path, where, strerror(errno));
        if (t->set_user && lookup_id(t->set_user, false, &uid) < 0)
                return warn(s, "ACPI table %s (%s) left out: no user '%s' on this host", t->path, where,
                            t->set_user);
        if (t->set_group && lookup_id(t->set_group, true, &gid) < 0)
                return warn(s, "ACPI table %s (%s) left out: no group '%s' on this host", t->path, where,
                            t->set_group);
        if ((t->set_user || t->set_group) && chown(t->path, (uid_t)uid, (gid_t)gid) < 0)
                return warn(s, "ACPI table %s (%s) left out: cannot give it to %s%s%s: %s", t->path, where,
                            t->set_user ? t->set_user : "", t->set_group ? ":" : "",
                            t->set_group ? t->set_group : "", strerror(errno));
        switch (s->vm->type) {
        case VMM_QEMU:
                safe = qemu_opt_value(t->path);
                r = safe ? arg(&s->acpi, "-acpitable") : -ENOMEM;
                if (r >= 0)
                        r = arg(&s->acpi, "file=%s", safe);
                free(safe);
                return r;
        case VMM_CROSVM:
                r = arg(&s->acpi, "--acpi-table");
                return r < 0 ? r : arg(&s->acpi, "%s", t->path);
        default:
                return warn(s, "ACPI table %s (%s) left out: cloud-hypervisor takes no ACPI tables", t->path,
                            where);
        }
}

static int hand_over_acpi(struct state *s) {
        const struct cfg *c = s->ctx->cfg;
        char where[64];
        int r = 0;

        for (size_t i = 0; i < c->n_acpi && r >= 0; i++) {
                const struct cfg_acpi_entry *e = &c->acpi[i];
                if (!e->enabled || e->vm != s->vm)
                        continue;
                for (size_t k = 0; k < e->n_tables && r >= 0; k++) {
                        if (!e->tables[k].enabled)
                                continue;
                        snprintf(where, sizeof(where), "acpiPassthrough[%zu]", i);
                        r = give_table(s, &e->tables[k], where);
                }
        }
        return r;
}

/* ---- the whole ---- */

/* Appends src's arguments to dst (src is emptied). */
static int append_all(struct cold_args *dst, struct cold_args *src) {
        int r = 0;

        for (size_t i = 0; i < src->argc && r >= 0; i++) {
                r = strv_append(&dst->argv, &dst->argc, src->argv[i]);
                src->argv[i] = NULL;
        }
        return r;
}

/* OVMF first, then the PCI devices, the ACPI tables, the input devices. */
static int assemble(struct state *s, struct cold_args *ret) {
        const struct cfg_general *g = &s->ctx->cfg->general;
        struct cold_args a = {0}, rest = {0};
        int r = 0;

        if (s->ovmf) {
                r = arg(&a, "-drive");
                if (r >= 0)
                        r = arg(&a, "if=pflash,format=raw,unit=0,readonly=on,file=%s", g->ovmf_code);
                if (r >= 0)
                        r = arg(&a, "-drive");
                if (r >= 0)
                        r = arg(&a, "if=pflash,format=raw,unit=1,readonly=on,file=%s", g->ovmf_vars);
        }
        /* s->out holds PCI arguments up to pci_end, input devices after */
        for (size_t i = s->pci_end; i < s->out.argc && r >= 0; i++) {
                r = strv_append(&rest.argv, &rest.argc, s->out.argv[i]);
                s->out.argv[i] = NULL;
        }
        s->out.argc = s->pci_end;
        if (r >= 0)
                r = append_all(&a, &s->out);
        if (r >= 0)
                r = append_all(&a, &s->acpi);
        if (r >= 0)
                r = append_all(&a, &rest);
        cold_args_clear(&rest);
        if (r < 0) {
                cold_args_clear(&a);
                return r;
        }
        if (!a.argv && !(a.argv = calloc(1, sizeof(char *)))) /* an empty list, not NULL */
                return -ENOMEM;
        a.warnings = TAKE_PTR(s->out.warnings);
        a.n_warnings = s->out.n_warnings;
        s->out.n_warnings = 0;
        *ret = a;
        return 0;
}

/* OVMF is needed when a claimed device is an autoOvmf NVIDIA display device: refuse before anything
 * is bound when the firmware is not configured. */
static int check_ovmf(struct state *s, char **ret_error) {
        const struct cfg_general *g = &s->ctx->cfg->general;

        for (size_t i = 0; i < s->n_present; i++) {
                if (!s->present[i].claimed || !needs_ovmf(&s->present[i]))
                        continue;
                if (s->vm->type != VMM_QEMU)
                        return warn(s,
                                    "autoOvmf (%s[%d]) applies to QEMU VMs only; no firmware arguments for "
                                    "%s VM %s",
                                    cfg_section_name(DEV_PCI), s->present[i].dec.entry_index,
                                    cfg_vm_type_name(s->vm->type), s->vm->name);
                if (!g->ovmf_code)
                        return errmsg_set(ret_error, -EINVAL, "General ovmfCode is not defined");
                if (!g->ovmf_vars)
                        return errmsg_set(ret_error, -EINVAL, "General ovmfVars is not defined");
                return 0;
        }
        return 0;
}

static int run(struct state *s, char **ret_error) {
        struct xact_result res;
        int r;

        xact_result_init(&res, DEV_UNKNOWN);
        r = xact_open_db(s->ctx, false, &s->db, &res);
        if (r < 0)
                return errmsg_set(ret_error, r, "%s", res.error);
        r = enumerate(s);
        if (r < 0)
                return errmsg_set(ret_error, r, "cannot enumerate devices: %s",
                                  r == -EIO      ? "udev failed"
                                  : r == -ENOMEM ? strerror(-r)
                                                 : db_strerror(r));
        qsort(s->present, s->n_present, sizeof(*s->present), cmp_order);
        r = check_ovmf(s, ret_error);
        if (r < 0)
                return r;
        for (size_t i = 0; i < s->n_present && r >= 0; i++) {
                struct present *p = &s->present[i];
                if (!p->claimed || p->dev->kind != DEV_PCI || p->emitted)
                        continue;
                p->emitted = true;
                r = hand_over_pci(s, p);
        }
        s->pci_end = s->out.argc;
        if (r >= 0)
                r = hand_over_acpi(s);
        for (size_t i = 0; i < s->n_present && r >= 0; i++)
                if (s->present[i].claimed && s->present[i].dev->kind == DEV_EVDEV)
                        r = hand_over_evdev(s, &s->present[i]);
        if (r < 0)
                return errmsg_set(ret_error, r, "cannot hand the devices to VM %s: %s", s->vm->name,
                                  r == -ENOMEM ? strerror(-r) : db_strerror(r));
        return 0;
}

int cold_vmm_args(const struct xact_ctx *ctx, struct udev *udev, const char *vm, const char *bus_prefix,
                  int bus_start_index, struct cold_args *ret, char **ret_error) {
        struct state s = {.ctx = ctx, .udev = udev ? udev : ctx->udev, .bus_index = bus_start_index};
        int r;

        if (ret_error)
                *ret_error = NULL;
        if (!s.udev)
                return errmsg_set(ret_error, -EINVAL, "no udev context");
        if (!vm || !*vm)
                return errmsg_set(ret_error, -EINVAL, "VM name is required");
        s.vm = cfg_find_vm(ctx->cfg, vm);
        if (!s.vm)
                return errmsg_set(ret_error, -ENOENT, "VM %.64s is not found in the config file", vm);
        if (ctx->dry_run)
                return errmsg_set(ret_error, -EOPNOTSUPP,
                                  "cold-plug arguments have no dry run: they bind devices");
        if (bus_prefix && *bus_prefix && !prefix_ok(bus_prefix))
                return errmsg_set(ret_error, -EINVAL,
                                  "invalid qemu_bus_prefix (at most %d of A-Z a-z 0-9 . _ -)",
                                  COLD_BUS_PREFIX_MAX);
        if (bus_start_index < 0 || bus_start_index > COLD_BUS_INDEX_MAX)
                return errmsg_set(ret_error, -EINVAL, "invalid qemu_bus_start_index %d (0 to %d)",
                                  bus_start_index, COLD_BUS_INDEX_MAX);
        s.prefix = bus_prefix && *bus_prefix ? bus_prefix : NULL;

        r = run(&s, ret_error);
        if (r >= 0)
                r = assemble(&s, ret);
        if (r < 0 && ret_error && !*ret_error)
                errmsg_set(ret_error, r, "%s", strerror(-r));
        for (size_t i = 0; i < s.n_present; i++)
                dev_free(s.present[i].dev);
        free(s.present);
        cold_args_clear(&s.out);
        cold_args_clear(&s.acpi);
        db_close(s.db);
        return r;
}
