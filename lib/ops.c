/* The control plane's operations (see ops.h). Selecting devices reads sysfs through libudev and
 * the rules; acting on one goes through the transaction (xact.h) under its device lock, with the
 * database opened for that device alone, so that one slow VM holds up nothing but its own
 * request. */
#include "ops.h"

#include <errno.h>
#include <libudev.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup-types.h"
#include "errmsg.h"
#include "lock.h"
#include "util.h"

#define OPS_MAX_DEVICES 4096 /* present devices of one kind looked at */
#define STATUS_LOCK_MS 5000  /* how long status waits for a VM busy with an attach */

const char *ops_state_name(enum ops_state s) {
        static const char *const names[] = {
                "on-host", "attached", "under-way", "waiting", "kept-detached",
        };
        return names[s];
}

void ops_list_clear(struct ops_list *l) {
        for (size_t i = 0; l && i < l->n; i++)
                dev_free(l->items[i].dev);
        if (l) {
                free(l->items);
                *l = (struct ops_list){0};
        }
}

void ops_report_clear(struct ops_report *r) {
        if (!r)
                return;
        free(r->items);
        *r = (struct ops_report){0};
}

static struct ops_device *list_add(struct ops_list *l, struct dev *d) {
        struct ops_device *it;

        if (l->n % 32 == 0) {
                it = reallocarray(l->items, l->n + 32, sizeof(*it));
                if (!it)
                        return NULL;
                l->items = it;
        }
        it = &l->items[l->n++];
        *it = (struct ops_device){.dev = d};
        return it;
}

/* "/dev/bus/usb/BBB/DDD" -> bus and device number; -EINVAL for anything else. */
static int parse_usb_node(const char *node, int *ret_bus, int *ret_dev) {
        unsigned b, d;
        int n = 0;

        if (!node || sscanf(node, "/dev/bus/usb/%3u/%3u%n", &b, &d, &n) != 2 || node[n] || b == 0 || d == 0)
                return -EINVAL;
        *ret_bus = (int)b;
        *ret_dev = (int)d;
        return 0;
}

/* Whether a USB sysname ("2-4.1") sits behind root port port of bus bus. */
static bool behind_port(const char *sysname, int bus, int port) {
        char prefix[32];
        size_t n = (size_t)snprintf(prefix, sizeof(prefix), "%d-%d", bus, port);
        return strncmp(sysname, prefix, n) == 0 && (sysname[n] == '\0' || sysname[n] == '.');
}

/* The USB device behind a device node, found by its device number (/sys/dev/char): no scan. 0 and
 * the device, or -ENOENT (then the caller scans: a node that does not say, as umockdev's). */
static int device_of_node(const struct ops_ctx *c, const char *node, struct dev **ret) {
        _cleanup_udev_device_ struct udev_device *u = NULL;
        struct stat st;
        int b, n;

        if (parse_usb_node(node, &b, &n) < 0 || stat(node, &st) < 0 || !S_ISCHR(st.st_mode) ||
            st.st_rdev == 0)
                return -ENOENT;
        u = udev_device_new_from_devnum(c->udev, 'c', st.st_rdev);
        if (!u || dev_new_from_syspath(c->udev, udev_device_get_syspath(u), ret) < 0)
                return -ENOENT;
        if ((*ret)->kind != DEV_USB || !(*ret)->devnode || strcmp((*ret)->devnode, node) != 0) {
                dev_free(*ret);
                *ret = NULL;
                return -ENOENT;
        }
        return 0;
}

/* The present devices of kind, each with the rules' decision (not yet completed with the
 * database). USB: devices, not interfaces or root hubs. hint (may be NULL) narrows the scan before
 * any device is read in full: a device node names its bus and device numbers, a bus and port the
 * devices behind that port (udev's properties and the sysfs names are enough to tell). */
static int enumerate(const struct ops_ctx *c, enum dev_kind kind, const struct ops_selector *hint,
                     struct ops_list *ret) {
        _cleanup_udev_enumerate_ struct udev_enumerate *e = udev_enumerate_new(c->udev);
        struct udev_list_entry *it;
        char num[16];
        int bus = 0, devnum = 0;

        *ret = (struct ops_list){0};
        if (!e)
                return -ENOMEM;
        if (hint && kind == DEV_USB && hint->by == OPS_BY_NODE) {
                struct dev *d = NULL;
                struct ops_device *o;
                if (device_of_node(c, hint->node, &d) == 0) {
                        o = list_add(ret, d);
                        if (!o) {
                                dev_free(d);
                                return -ENOMEM;
                        }
                        rule_decide(c->x.cfg, d, NULL, &o->dec);
                        return 0;
                }
        }
        if (udev_enumerate_add_match_subsystem(e, kind == DEV_USB ? "usb" : "pci") < 0 ||
            (kind == DEV_USB && udev_enumerate_add_match_property(e, "DEVTYPE", "usb_device") < 0))
                return -EIO;
        if (hint && kind == DEV_USB && hint->by == OPS_BY_NODE &&
            parse_usb_node(hint->node, &bus, &devnum) == 0) {
                snprintf(num, sizeof(num), "%03d", devnum);
                if (udev_enumerate_add_match_property(e, "DEVNUM", num) < 0)
                        return -EIO;
        }
        if (hint && kind == DEV_USB && (hint->by == OPS_BY_BUS_PORT || bus > 0)) {
                snprintf(num, sizeof(num), "%03d", bus > 0 ? bus : hint->bus);
                if (udev_enumerate_add_match_property(e, "BUSNUM", num) < 0)
                        return -EIO;
        }
        if (udev_enumerate_scan_devices(e) < 0)
                return -EIO;
        udev_list_entry_foreach(it, udev_enumerate_get_list_entry(e)) {
                const char *syspath = udev_list_entry_get_name(it);
                const char *name = strrchr(syspath, '/');
                struct ops_device *o;
                struct dev *d = NULL;

                if (ret->n >= OPS_MAX_DEVICES)
                        break;
                name = name ? name + 1 : syspath;
                if (kind == DEV_USB && strncmp(name, "usb", 3) == 0)
                        continue; /* root hub */
                if (hint && kind == DEV_USB && hint->by == OPS_BY_BUS_PORT &&
                    !behind_port(name, hint->bus, hint->port))
                        continue;
                if (dev_new_from_syspath(c->udev, syspath, &d) < 0)
                        continue; /* gone meanwhile */
                if (d->kind != kind) {
                        dev_free(d);
                        continue;
                }
                o = list_add(ret, d);
                if (!o) {
                        dev_free(d);
                        ops_list_clear(ret);
                        return -ENOMEM;
                }
                rule_decide(c->x.cfg, d, NULL, &o->dec);
        }
        return 0;
}

/* The prompt of devpath, if any, in the list ps (n). */
static const struct db_prompt *prompt_of(const struct db_prompt *ps, size_t n, const char *devpath) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(ps[i].devpath, devpath) == 0)
                        return &ps[i];
        return NULL;
}

static const struct db_attachment *row_of(const struct db_attachment *rows, size_t n, const char *devpath) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(rows[i].devpath, devpath) == 0)
                        return &rows[i];
        return NULL;
}

/* Completes o's decision with the database (stored choice, keep detached, host mount) and says
 * where it is, from its open record (row, may be NULL) and prompt. */
static int settle_state(const struct ops_ctx *c, struct db *db, struct ops_device *o,
                        const struct db_attachment *row, bool waiting) {
        int r = xact_complete(&c->x, db, o->dev, &o->dec);

        if (r < 0)
                return r;
        o->vm[0] = '\0';
        o->record_state[0] = '\0';
        if (o->dec.action != RULE_ATTACH)
                return 0;
        if (row)
                str_copy(o->record_state, sizeof(o->record_state), db_state_name(row->state));
        if (o->dec.keep_detached) {
                o->state = OPS_KEPT_DETACHED;
        } else if (row) {
                o->state = row->state == DB_ATTACHED ? OPS_ATTACHED : OPS_UNDER_WAY;
                str_copy(o->vm, sizeof(o->vm), row->vm);
        } else if (waiting || o->dec.choice_needed) {
                o->state = OPS_WAITING;
        } else {
                o->state = OPS_ON_HOST;
                str_copy(o->vm, sizeof(o->vm), o->dec.vm->name);
        }
        return 0;
}

static int cmp_usb(const void *a, const void *b) {
        return strcmp(((const struct ops_device *)a)->dev->devpath,
                      ((const struct ops_device *)b)->dev->devpath);
}

static int cmp_pci(const void *a, const void *b) {
        const struct dev *x = ((const struct ops_device *)a)->dev, *y = ((const struct ops_device *)b)->dev;
        return strcmp(x->pci_address ? x->pci_address : "", y->pci_address ? y->pci_address : "");
}

static bool listed(const struct ops_list *l, const char *pci_address) {
        for (size_t i = 0; i < l->n; i++)
                if (l->items[i].dev->pci_address && strcmp(l->items[i].dev->pci_address, pci_address) == 0)
                        return true;
        return false;
}

/* pciIommuAddAll: the members of a claimed device's IOMMU group go with it, and are listed so. */
static int add_iommu_members(const struct ops_ctx *c, struct ops_list *l) {
        size_t n = l->n;

        for (size_t i = 0; i < n; i++) {
                struct ops_device *o = &l->items[i];
                if (!o->dec.entry || !o->dec.entry->iommu_add_all)
                        continue;
                dev_add_details(o->dev);
                for (size_t k = 0; k < o->dev->n_group; k++) {
                        char path[64];
                        struct ops_device *m;
                        struct dev *d = NULL;

                        if (listed(l, o->dev->group[k]))
                                continue;
                        snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", o->dev->group[k]);
                        if (dev_new_from_syspath(c->udev, path, &d) < 0)
                                continue;
                        m = list_add(l, d);
                        if (!m) {
                                dev_free(d);
                                return -ENOMEM;
                        }
                        o = &l->items[i]; /* the array may have moved */
                        m->dec = o->dec;
                        m->state = o->state;
                        m->iommu_member = true;
                        memcpy(m->vm, o->vm, sizeof(m->vm));
                        memcpy(m->record_state, o->record_state, sizeof(m->record_state));
                }
        }
        return 0;
}

static bool has_tag(const struct rule_decision *dec, const char *tag) {
        return dec->entry && dec->entry->tag && strcmp(dec->entry->tag, tag) == 0;
}

static int open_db(const struct ops_ctx *c, struct db **ret, char **ret_error) {
        struct xact_result res;
        int r;

        xact_result_init(&res, DEV_UNKNOWN);
        r = xact_open_db(&c->x, false, ret, &res);
        if (r < 0)
                return errmsg_set(ret_error, r, "%s", res.error);
        return 0;
}

int ops_list(const struct ops_ctx *c, enum dev_kind kind, int disconnected, const char *tag,
             struct ops_list *ret, char **ret_error) {
        struct ops_list all = {0}, out = {0};
        struct db_attachment *rows = NULL;
        struct db_prompt *prompts = NULL;
        size_t n_rows = 0, n_prompts = 0;
        struct db *db = NULL;
        int r;

        *ret = (struct ops_list){0};
        r = enumerate(c, kind, NULL, &all);
        if (r < 0)
                return errmsg_set(ret_error, r, "cannot enumerate devices: %s", strerror(-r));
        r = open_db(c, &db, ret_error);
        if (r >= 0 && (r = db_attachment_list(db, NULL, &rows, &n_rows)) >= 0)
                r = db_prompt_list(db, &prompts, &n_prompts);
        if (r < 0 && ret_error && !*ret_error)
                errmsg_set(ret_error, r, "cannot read the state database: %s", db_strerror(r));
        for (size_t i = 0; r >= 0 && i < all.n; i++) {
                struct ops_device *o = &all.items[i], *k;

                if (o->dec.action != RULE_ATTACH || (tag && !has_tag(&o->dec, tag)))
                        continue;
                r = settle_state(c, db, o, row_of(rows, n_rows, o->dev->devpath),
                                 prompt_of(prompts, n_prompts, o->dev->devpath) != NULL);
                if (r < 0) {
                        errmsg_set(ret_error, r, "cannot read the stored choices: %s", db_strerror(r));
                        break;
                }
                if (o->dec.action != RULE_ATTACH) /* holds a host-required mount */
                        continue;
                if (disconnected >= 0 && (o->state == OPS_KEPT_DETACHED) != (disconnected > 0))
                        continue;
                k = list_add(&out, o->dev);
                if (!k) {
                        r = errmsg_set(ret_error, -ENOMEM, "out of memory");
                        break;
                }
                *k = *o;
                o->dev = NULL; /* moved */
        }
        if (r >= 0 && kind == DEV_PCI)
                r = add_iommu_members(c, &out);
        /* PCI names (pci.ids through libpci, read once) and IOMMU groups, for the listed ones only. */
        for (size_t i = 0; r >= 0 && i < out.n; i++)
                dev_add_details(out.items[i].dev);
        if (r >= 0 && out.n > 1)
                qsort(out.items, out.n, sizeof(*out.items), kind == DEV_USB ? cmp_usb : cmp_pci);
        db_attachment_list_free(rows, n_rows);
        db_prompt_list_free(prompts, n_prompts);
        db_close(db);
        ops_list_clear(&all);
        if (r < 0) {
                ops_list_clear(&out);
                if (ret_error && !*ret_error)
                        errmsg_set(ret_error, r, "%s", strerror(-r));
                return r;
        }
        *ret = out;
        return 0;
}

/* ---- selecting ---- */

static const char *kind_word(enum dev_kind k) {
        return k == DEV_USB ? "USB" : "PCI";
}

/* "1-3.2 (1209:0001, /dev/bus/usb/001/005)" for error messages (sysname and ids are kernel-made). */
static void name_candidate(const struct dev *d, char *buf, size_t len) {
        if (d->kind == DEV_USB)
                snprintf(buf, len, "%.32s (%04x:%04x, %.40s)", d->sysname ? d->sysname : "?", d->vendor_id,
                         d->product_id, d->devnode ? d->devnode : "no device node");
        else
                snprintf(buf, len, "%.32s (%04x:%04x)", d->pci_address ? d->pci_address : "?", d->vendor_id,
                         d->product_id);
}

/* The devices of all (indexes into it, in picked) that sel names. Hubs are never picked. One
 * device for a single-device selector: when several match, the claimed ones decide, and several
 * claimed is an error naming them. */
static int select_devices(const struct ops_ctx *c, const struct ops_selector *sel,
                          const struct ops_list *all, size_t *picked, size_t *ret_n, char **ret_error) {
        size_t n = 0, claimed = 0;
        char buf[1024];
        size_t len = 0;

        if (sel->by == OPS_BY_TAG) {
                bool known = false;
                for (size_t i = 0; i < c->x.cfg->n_entries[sel->kind]; i++)
                        known |= c->x.cfg->entries[sel->kind][i].tag &&
                                 strcmp(c->x.cfg->entries[sel->kind][i].tag, sel->tag) == 0;
                if (!known)
                        return errmsg_set(ret_error, -ENOENT, "no %s entry has the tag '%.64s'",
                                          cfg_section_name(sel->kind), sel->tag);
        }
        for (size_t i = 0; i < all->n; i++) {
                const struct dev *d = all->items[i].dev;
                bool match = false;

                if (dev_is_usb_hub(d))
                        continue;
                switch (sel->by) {
                case OPS_BY_NODE:
                        match = d->devnode && strcmp(d->devnode, sel->node) == 0;
                        break;
                case OPS_BY_BUS_PORT:
                        match = d->busnum == sel->bus && d->port == sel->port;
                        break;
                case OPS_BY_IDS:
                        match = d->has_ids && d->vendor_id == sel->vendor_id &&
                                d->product_id == sel->product_id;
                        break;
                case OPS_BY_ADDRESS:
                        match = d->pci_address && strcmp(d->pci_address, sel->address) == 0;
                        break;
                case OPS_BY_TAG:
                        match = all->items[i].dec.action == RULE_ATTACH &&
                                has_tag(&all->items[i].dec, sel->tag);
                        break;
                }
                if (!match)
                        continue;
                picked[n++] = i;
                claimed += all->items[i].dec.action == RULE_ATTACH;
        }
        if (sel->by == OPS_BY_TAG || n <= 1) {
                if (n == 0 && sel->by != OPS_BY_TAG) {
                        switch (sel->by) {
                        case OPS_BY_NODE:
                                return errmsg_set(ret_error, -ENOENT,
                                                  "USB device %.200s not found in the system", sel->node);
                        case OPS_BY_BUS_PORT:
                                return errmsg_set(
                                        ret_error, -ENOENT,
                                        "USB device with bus %d and port %d not found in the system",
                                        sel->bus, sel->port);
                        case OPS_BY_IDS:
                                return errmsg_set(ret_error, -ENOENT,
                                                  "%s device %04x:%04x not found in the system",
                                                  kind_word(sel->kind), sel->vendor_id, sel->product_id);
                        default:
                                return errmsg_set(ret_error, -ENOENT,
                                                  "PCI device %s not found in the system", sel->address);
                        }
                }
                *ret_n = n;
                return 0;
        }
        /* Several: the one the rules claim, if it is one. */
        if (claimed == 1) {
                for (size_t i = 0; i < n; i++)
                        if (all->items[picked[i]].dec.action == RULE_ATTACH) {
                                picked[0] = picked[i];
                                break;
                        }
                *ret_n = 1;
                return 0;
        }
        for (size_t i = 0; i < n && len < sizeof(buf) - 128; i++) {
                const struct ops_device *o = &all->items[picked[i]];
                if (claimed > 0 && o->dec.action != RULE_ATTACH)
                        continue;
                len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s", len ? ", " : "");
                name_candidate(o->dev, buf + len, sizeof(buf) - len);
                len += strlen(buf + len);
        }
        if (sel->by == OPS_BY_BUS_PORT)
                return errmsg_set(ret_error, -ENOTUNIQ,
                                  "several USB devices on bus %d port %d: %s; name one by its device node",
                                  sel->bus, sel->port, buf);
        return errmsg_set(ret_error, -ENOTUNIQ, "several %s devices %04x:%04x: %s; name one by its %s",
                          kind_word(sel->kind), sel->vendor_id, sel->product_id, buf,
                          sel->kind == DEV_USB ? "device node" : "address");
}

/* ---- acting ---- */

enum act { ACT_ATTACH, ACT_DETACH };

static void result_of(struct ops_result *out, const struct dev *d) {
        dev_describe(d, out->what, sizeof(out->what));
        str_copy(out->devnode, sizeof(out->devnode), d->devnode ? d->devnode : d->pci_address);
        str_copy(out->devpath, sizeof(out->devpath), d->devpath ? d->devpath : "");
        xact_result_init(&out->res, d->kind);
}

/* Why the rules leave d on the host, in words for the user. */
static int refused(const struct dev *d, const struct rule_decision *dec, char **ret_error) {
        char what[160];

        dev_describe(d, what, sizeof(what));
        if (dev_is_usb_hub(d))
                return errmsg_set(ret_error, -EPERM, "%s is a USB hub: hubs stay on the host", what);
        return errmsg_set(ret_error, -EPERM, "%s is not passed to any VM: %s", what, dec->reason);
}

/* The entry's VMs, "a, b", for messages. */
static void vm_names(const struct cfg_entry *e, char *buf, size_t len) {
        size_t n = 0;

        buf[0] = '\0';
        for (size_t i = 0; e && i < e->n_vms && n < len; i++)
                n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? ", " : "", e->vms[i]->name);
}

/* Makes vm the target of dec when the entry allows it. */
static int choose(const struct ops_ctx *c, const struct dev *d, struct rule_decision *dec, const char *vm,
                  char **ret_error) {
        char what[160], names[512];

        if (rule_choose_vm(dec, vm))
                return 0;
        dev_describe(d, what, sizeof(what));
        vm_names(dec->entry, names, sizeof(names));
        if (!cfg_find_vm(c->x.cfg, vm))
                return errmsg_set(ret_error, -ENOENT, "VM %.64s is not found in the configuration file", vm);
        return errmsg_set(ret_error, -EPERM, "Selected VM %.64s is not allowed for %s: %s[%d] allows %s", vm,
                          what, cfg_section_name(d->kind), dec->entry_index, names);
}

/* Takes a's device out of its VM (moving it elsewhere). Returns 0 when it left, else -errno with
 * res and *ret_error saying why. */
static int leave_vm(const struct ops_ctx *c, struct db *db, const struct db_attachment *a, const char *why,
                    struct xact_result *res, char **ret_error) {
        int r = xact_detach(&c->x, db, a, why, res);

        if (r < 0)
                return errmsg_set(ret_error, r, "%s", res->error);
        if (res->outcome == XACT_FAILED)
                return errmsg_set(ret_error, -EREMOTEIO, "cannot take it out of %s: %s", a->vm, res->error);
        if (res->outcome == XACT_PENDING)
                return errmsg_set(ret_error, -EBUSY, "still leaving %s: %s", a->vm, res->error);
        return 0;
}

static int attach_locked(const struct ops_ctx *c, struct db *db, struct dev *d, const char *vm,
                         struct xact_result *res, char **ret_error) {
        struct rule_decision dec;
        struct db_attachment cur = {0};
        struct db_device rec;
        char key[DEV_KEY_MAX], detail[160];
        bool was_kept;
        int r, found;

        rule_decide(c->x.cfg, d, NULL, &dec);
        r = xact_complete(&c->x, db, d, &dec);
        if (r < 0)
                return errmsg_set(ret_error, r, "cannot read the stored choice: %s", db_strerror(r));
        if (dec.action != RULE_ATTACH)
                return refused(d, &dec, ret_error);
        was_kept = dec.keep_detached;
        if (vm) {
                r = choose(c, d, &dec, vm, ret_error);
                if (r < 0)
                        return r;
        }
        dev_add_details(d);
        r = found = db_attachment_get(db, d->devpath, &cur);
        if (r < 0)
                return errmsg_set(ret_error, r, "cannot read the record: %s", db_strerror(r));
        /* The user's answer: remembered before anything moves, so that a replug meanwhile follows it. */
        if (vm || was_kept) {
                xact_record_of(d, key, &rec);
                snprintf(detail, sizeof(detail), "attach requested%s%.64s%s", vm ? ": VM " : "",
                         vm ? vm : "", was_kept ? " (keep detached cleared)" : "");
                r = db_choice_record(db, &rec, vm, false, detail);
                if (r < 0) {
                        db_attachment_clear(&cur);
                        return errmsg_set(ret_error, r, "cannot store the choice: %s", db_strerror(r));
                }
        }
        dec.keep_detached = false;
        if (!vm && found > 0)
                (void)rule_choose_vm(&dec, cur.vm); /* no VM named: it stays where it is */
        dec.choice_needed = false;
        if (found > 0 && strcmp(cur.vm, dec.vm->name) == 0 && cur.state == DB_ATTACHED) {
                _cleanup_free_ char *err = NULL;
                int has = xact_confirm(&c->x, &cur, &err);
                if (has != 0) {
                        res->action = XACT_ATTACH;
                        res->outcome = XACT_ALREADY;
                        str_copy(res->vm, sizeof(res->vm), cur.vm);
                        str_copy(res->vmm_id, sizeof(res->vmm_id), cur.vmm_id);
                        res->crosvm_port = cur.crosvm_port;
                        db_attachment_clear(&cur);
                        return 0;
                }
                r = xact_close(db, &cur, "the VM no longer has it (restarted?)");
        } else if (found > 0 && strcmp(cur.vm, dec.vm->name) != 0) {
                char why[160];
                snprintf(why, sizeof(why), "moved to %.64s by request", dec.vm->name);
                r = leave_vm(c, db, &cur, why, res, ret_error);
        }
        db_attachment_clear(&cur);
        if (r < 0) {
                if (ret_error && !*ret_error)
                        errmsg_set(ret_error, r, "cannot record: %s", db_strerror(r));
                return r;
        }
        r = xact_attach(&c->x, db, d, &dec, res);
        if (r < 0)
                return errmsg_set(ret_error, r, "%s", res->error);
        if (res->outcome == XACT_FAILED)
                return errmsg_set(ret_error, -EREMOTEIO, "%s", res->error);
        return 0;
}

static int detach_locked(const struct ops_ctx *c, struct db *db, struct dev *d, struct xact_result *res,
                         char **ret_error) {
        struct rule_decision dec;
        struct db_attachment cur = {0};
        struct db_device rec;
        char key[DEV_KEY_MAX];
        int r, found;

        rule_decide(c->x.cfg, d, NULL, &dec);
        r = xact_complete(&c->x, db, d, &dec);
        if (r < 0)
                return errmsg_set(ret_error, r, "cannot read the stored choice: %s", db_strerror(r));
        r = found = db_attachment_get(db, d->devpath, &cur);
        if (r < 0)
                return errmsg_set(ret_error, r, "cannot read the record: %s", db_strerror(r));
        if (dec.action != RULE_ATTACH && found == 0)
                return refused(d, &dec, ret_error);
        dev_add_details(d);
        xact_record_of(d, key, &rec);
        r = db_choice_record(db, &rec, NULL, true, "detach requested: kept on the host");
        if (r < 0) {
                db_attachment_clear(&cur);
                return errmsg_set(ret_error, r, "cannot store the choice: %s", db_strerror(r));
        }
        res->decision = dec;
        if (found == 0) {
                res->action = XACT_IGNORE;
                res->outcome = XACT_KEPT_DETACHED;
                return 0;
        }
        r = xact_detach(&c->x, db, &cur, "detached by request", res);
        db_attachment_clear(&cur);
        if (r < 0)
                return errmsg_set(ret_error, r, "%s", res->error);
        if (res->outcome == XACT_FAILED)
                return errmsg_set(ret_error, -EREMOTEIO, "%s", res->error);
        return 0;
}

/* One device, under its device lock, with a database connection of its own. */
static int act_one(const struct ops_ctx *ctx, enum act act, struct dev *d, const char *vm,
                   struct ops_result *out, char **ret_error) {
        struct ops_ctx one = *ctx;
        const struct ops_ctx *c = &one;
        struct db *db = NULL;
        int r, dlock;

        /* Each device has the time budget of an event: lock waits, the VM's replies, retries. */
        one.x.udev = ctx->udev;
        if (ctx->x.cfg->general.event_timeout_ms > 0)
                one.x.deadline = now_ms() + ctx->x.cfg->general.event_timeout_ms;
        result_of(out, d);
        dlock = lock_take_device(c->x.cfg->general.lock_dir, d->devpath,
                                 one.x.deadline ? (int)MIN((int64_t)LOCK_TIMEOUT_MS, ms_left(one.x.deadline))
                                                : LOCK_TIMEOUT_MS);
        if (dlock < 0) {
                out->res.outcome = XACT_FAILED;
                snprintf(out->res.error, sizeof(out->res.error), "cannot lock device: %s", strerror(-dlock));
                return errmsg_set(ret_error, dlock, "%s: %s", out->what, out->res.error);
        }
        r = open_db(c, &db, ret_error);
        if (r >= 0)
                r = act == ACT_ATTACH ? attach_locked(c, db, d, vm, &out->res, ret_error)
                                      : detach_locked(c, db, d, &out->res, ret_error);
        db_close(db);
        lock_release(dlock);
        if (r < 0) {
                out->res.outcome = XACT_FAILED;
                if (ret_error && *ret_error)
                        str_copy(out->res.error, sizeof(out->res.error), *ret_error);
        }
        return r;
}

static int act(const struct ops_ctx *c, enum act a, const struct ops_selector *sel, const char *vm,
               struct ops_report *ret, char **ret_error) {
        struct ops_list all = {0};
        struct ops_report rep = {0};
        _cleanup_free_ size_t *picked = NULL;
        size_t n = 0;
        char summary[1024];
        size_t len = 0;
        int r, first = 0;

        if (ret)
                *ret = (struct ops_report){0};
        if (sel->kind != DEV_USB && sel->kind != DEV_PCI)
                return errmsg_set(ret_error, -EINVAL, "only USB and PCI devices are handled here");
        if (sel->by == OPS_BY_TAG && vm)
                return errmsg_set(ret_error, -EINVAL,
                                  "a VM cannot be named with a tag: each device goes to its own VM");
        r = enumerate(c, sel->kind, sel, &all);
        if (r < 0)
                return errmsg_set(ret_error, r, "cannot enumerate devices: %s", strerror(-r));
        picked = calloc(all.n + 1, sizeof(*picked));
        if (!picked) {
                ops_list_clear(&all);
                return errmsg_set(ret_error, -ENOMEM, "out of memory");
        }
        r = select_devices(c, sel, &all, picked, &n, ret_error);
        if (r >= 0 && n > 0 && !(rep.items = calloc(n, sizeof(*rep.items))))
                r = errmsg_set(ret_error, -ENOMEM, "out of memory");
        for (size_t i = 0; r >= 0 && i < n; i++) {
                _cleanup_free_ char *err = NULL;
                int k = act_one(c, a, all.items[picked[i]].dev, vm, &rep.items[rep.n++], &err);
                if (k >= 0)
                        continue;
                rep.n_failed++;
                if (!first)
                        first = k;
                if (n == 1) {
                        errmsg_take(ret_error, k, TAKE_PTR(err));
                } else if (len < sizeof(summary) - 1) {
                        len += (size_t)snprintf(summary + len, sizeof(summary) - len, "%s%s: %s",
                                                len ? "; " : "", rep.items[rep.n - 1].what,
                                                err ? err : strerror(-k));
                }
        }
        if (r >= 0 && rep.n_failed > 0) {
                r = first;
                if (n > 1)
                        errmsg_set(ret_error, r, "%zu of %zu devices failed: %s", rep.n_failed, n, summary);
        }
        ops_list_clear(&all);
        if (ret)
                *ret = rep;
        else
                ops_report_clear(&rep);
        return r;
}

int ops_attach(const struct ops_ctx *c, const struct ops_selector *sel, const char *vm,
               struct ops_report *ret, char **ret_error) {
        return act(c, ACT_ATTACH, sel, vm, ret, ret_error);
}

int ops_detach(const struct ops_ctx *c, const struct ops_selector *sel, struct ops_report *ret,
               char **ret_error) {
        return act(c, ACT_DETACH, sel, NULL, ret, ret_error);
}

/* ---- one device by what a user types ---- */

int ops_find_device(const struct ops_ctx *c, const char *spec, struct dev **ret, char **ret_error) {
        char path[PATH_MAX], addr[PCI_ADDRESS_LEN];
        struct ops_list all = {0};
        int r = -ENODEV;

        if (!spec || !*spec || strlen(spec) >= sizeof(path) - 32)
                return errmsg_set(ret_error, -EINVAL, "no device named");
        if (strncmp(spec, "/dev/", 5) == 0) {
                struct ops_selector hint = {.kind = DEV_USB, .by = OPS_BY_NODE, .node = spec};
                if (enumerate(c, DEV_USB, &hint, &all) >= 0)
                        for (size_t i = 0; i < all.n; i++)
                                if (all.items[i].dev->devnode &&
                                    strcmp(all.items[i].dev->devnode, spec) == 0) {
                                        *ret = TAKE_PTR(all.items[i].dev);
                                        r = 0;
                                        break;
                                }
                ops_list_clear(&all);
        } else if (spec[0] == '/') {
                r = dev_new_from_syspath(c->udev, spec, ret);
        } else if (pci_address_normalize(spec, addr) == 0) {
                snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", addr);
                r = dev_new_from_syspath(c->udev, path, ret);
        } else if (!strchr(spec, '/') && strcmp(spec, ".") != 0 && strcmp(spec, "..") != 0) {
                snprintf(path, sizeof(path), "/sys/bus/usb/devices/%s", spec);
                r = dev_new_from_syspath(c->udev, path, ret);
        }
        if (r == 0 && (*ret)->kind == DEV_UNKNOWN) {
                dev_free(*ret);
                *ret = NULL;
                r = -ENODEV;
        }
        if (r < 0)
                return errmsg_set(
                        ret_error, -ENOENT,
                        "no device %.200s here (give a device node, a sysfs path, a USB name such as "
                        "1-3.2, or a PCI address)",
                        spec);
        return 0;
}

void ops_why_clear(struct ops_why *w) {
        if (!w)
                return;
        dev_free(w->d.dev);
        db_choice_info_clear(&w->choice);
        db_prompt_clear(&w->prompt);
        db_attachment_clear(&w->record);
        db_history_list_free(w->history, w->n_history);
        *w = (struct ops_why){0};
}

int ops_why(const struct ops_ctx *c, const char *spec, size_t max_history, struct ops_why *ret,
            char **ret_error) {
        struct ops_why w = {0};
        char key[DEV_KEY_MAX];
        struct db *db = NULL;
        int r;

        *ret = (struct ops_why){0};
        r = ops_find_device(c, spec, &w.d.dev, ret_error);
        if (r < 0)
                return r;
        r = open_db(c, &db, ret_error);
        if (r < 0) {
                ops_why_clear(&w);
                return r;
        }
        dev_add_details(w.d.dev);
        dev_key(w.d.dev, key, sizeof(key));
        rule_decide(c->x.cfg, w.d.dev, NULL, &w.d.dec);
        r = db_choice_info_get(db, key, &w.choice);
        if (r >= 0)
                w.has_choice = r > 0;
        if (r >= 0 && (r = db_prompt_get(db, w.d.dev->devpath, &w.prompt)) >= 0)
                w.has_prompt = r > 0;
        if (r >= 0 && (r = db_attachment_get(db, w.d.dev->devpath, &w.record)) >= 0)
                w.has_record = r > 0;
        if (r >= 0)
                r = settle_state(c, db, &w.d, w.has_record ? &w.record : NULL, w.has_prompt);
        if (r >= 0)
                r = db_history_recent(db, w.d.dev->devpath, max_history, &w.history, &w.n_history);
        db_close(db);
        if (r < 0) {
                ops_why_clear(&w);
                return errmsg_set(ret_error, r, "cannot read the state database: %s", db_strerror(r));
        }
        *ret = w;
        return 0;
}

void ops_status_clear(struct ops_status *s) {
        for (size_t i = 0; s && i < s->n; i++) {
                vmm_list_clear(&s->vms[i].list);
                db_attachment_list_free(s->vms[i].rows, s->vms[i].n_rows);
        }
        if (s) {
                free(s->vms);
                *s = (struct ops_status){0};
        }
}

/* Asks one VM what it has, under its VM lock (as the transaction does: one conversation at a time). */
static void ask_vm(const struct ops_ctx *c, struct ops_vm_status *v) {
        struct vmm_opts o = vmm_opts_from_cfg(&c->x.cfg->general);
        struct vmm_conn *conn = NULL;
        _cleanup_free_ char *err = NULL;
        int lock, r;

        if (!cfg_vm_can_hotplug(v->vm)) {
                snprintf(v->error, sizeof(v->error), "a %s VM: not asked (devices are given at its start)",
                         cfg_vm_type_name(v->vm->type));
                return;
        }
        lock = lock_take_vm(c->x.cfg->general.lock_dir, v->vm->name, STATUS_LOCK_MS);
        if (lock < 0) {
                snprintf(v->error, sizeof(v->error), "busy: %s", strerror(-lock));
                return;
        }
        r = vmm_connect(v->vm, &o, &conn, &err);
        if (r >= 0)
                r = vmm_list(conn, &v->list, &err);
        vmm_disconnect(conn);
        lock_release(lock);
        v->running = r >= 0;
        if (r < 0)
                snprintf(v->error, sizeof(v->error), "%s",
                         err               ? err
                         : r == -EHOSTDOWN ? "not running"
                                           : strerror(-r));
}

int ops_status(const struct ops_ctx *c, const char *vm, struct ops_status *ret, char **ret_error) {
        const struct cfg *cfg = c->x.cfg;
        struct ops_status s = {0};
        struct db *db = NULL;
        int r;

        *ret = (struct ops_status){0};
        if (vm && !cfg_find_vm(cfg, vm))
                return errmsg_set(ret_error, -ENOENT, "VM %.64s is not found in the configuration file", vm);
        s.vms = calloc(cfg->n_vms + 1, sizeof(*s.vms));
        if (!s.vms)
                return errmsg_set(ret_error, -ENOMEM, "out of memory");
        r = open_db(c, &db, ret_error);
        for (size_t i = 0; r >= 0 && i < cfg->n_vms; i++) {
                struct ops_vm_status *v = &s.vms[s.n];
                if (vm && strcmp(vm, cfg->vms[i].name) != 0)
                        continue;
                s.n++;
                v->vm = &cfg->vms[i];
                r = db_attachment_list(db, v->vm->name, &v->rows, &v->n_rows);
                if (r < 0)
                        errmsg_set(ret_error, r, "cannot read the records: %s", db_strerror(r));
                else
                        ask_vm(c, v);
        }
        db_close(db);
        if (r < 0) {
                ops_status_clear(&s);
                return r;
        }
        *ret = s;
        return 0;
}

int ops_history(const struct ops_ctx *c, const char *spec, size_t max, struct db_history **ret,
                size_t *ret_n, char **ret_error) {
        _cleanup_dev_ struct dev *d = NULL;
        struct db *db = NULL;
        int r;

        if (spec) {
                /* A device gone from the host still has its history: a devpath names it. */
                if (strncmp(spec, "/devices/", 9) != 0) {
                        r = ops_find_device(c, spec, &d, ret_error);
                        if (r < 0)
                                return r;
                }
        }
        r = open_db(c, &db, ret_error);
        if (r < 0)
                return r;
        r = db_history_recent(db, d ? d->devpath : spec, max, ret, ret_n);
        db_close(db);
        if (r < 0)
                return errmsg_set(ret_error, r, "cannot read the history: %s", db_strerror(r));
        return 0;
}
