/* Reconcile: desired state (rules over present devices), recorded state (open database rows) and
 * actual state (what each VM reports) are compared per VM; every difference becomes one plan item,
 * decided by recon_decide(). Actions go through the attach/detach transaction (xact.h). */
#include "reconcile.h"

#include <errno.h>
#include <libudev.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup-types.h"
#include "db.h"
#include "legacy.h"
#include "lock.h"
#include "util.h"
#include "vmm.h"

#define RECON_MAX_DEVICES 65536

struct present {
        struct dev *dev;
        struct rule_decision dec;
        char id[VMM_ID_MAX];
        bool waiting; /* its entry asks the user to choose a VM, and nobody has yet */
};

struct state {
        const struct recon_opts *o;
        struct db *db;
        struct present *present;
        size_t n_present;
        struct db_attachment *rows;
        size_t n_rows;
        struct recon_plan *plan;
        bool boot; /* the first full reconcile of this boot: waiting devices get their
                    * entry's first VM, as the older daemon's start did */
        char boot_id[64];
};

#define META_RECONCILED_BOOT "reconciled_boot" /* boot id of the last full reconcile */

const char *recon_op_name(enum recon_op op) {
        static const char *const names[] = {
                "none",  "attach",  "reattach", "adopt",        "detach",    "remove",
                "close", "foreign", "vm-down",  "auth-default", "authorize", "deauthorize",
        };
        return names[op];
}

enum recon_op recon_decide(const struct recon_facts *f, const char **ret_why) {
        bool attached_here = f->row_here && f->row_state == DB_ATTACHED;

        if (f->desired) {
                if (f->in_vm) {
                        *ret_why = f->row_state >= 0 ? "attached in the VM, not recorded as attached"
                                                     : "attached in the VM, no record";
                        return attached_here ? RECON_NONE : RECON_ADOPT;
                }
                if (attached_here) {
                        *ret_why = "recorded as attached but the VM does not have it (VM restarted?)";
                        return RECON_REATTACH;
                }
                *ret_why = f->row_state < 0 ? "present and claimed by the rules, not attached"
                           : !f->row_here   ? "recorded for another VM; the rules give it to this one"
                           : f->row_state == DB_PENDING ? "pending attach, VM is running"
                                                        : "unfinished attach";
                return RECON_ATTACH;
        }
        if (f->row_here) {
                if (f->in_vm && f->cold_plugged && f->present && !f->kept_detached && !f->suspended) {
                        /* Given on the VM's command line (an IOMMU group member no rule claims, or
                         * a device the rules no longer name): it stays until the VM stops. A device
                         * on the root bus could not be unplugged anyway. */
                        *ret_why = "";
                        return RECON_NONE;
                }
                if (f->in_vm) {
                        *ret_why = !f->present        ? "device gone from the host"
                                   : f->kept_detached ? "user asked to keep it detached"
                                   : f->suspended     ? "suspended: resume puts it back"
                                                      : "no longer claimed by the rules for this VM";
                        return RECON_DETACH;
                }
                *ret_why = f->row_state == DB_DETACHING ? "detach finished: the VM no longer has it"
                                                        : "the VM does not have it";
                return RECON_CLOSE;
        }
        *ret_why = "";
        return RECON_NONE;
}

static bool vm_in_scope(const struct recon_opts *o, const char *vm) {
        if (o->n_vms == 0)
                return true;
        for (size_t i = 0; i < o->n_vms; i++)
                if (strcmp(o->vms[i], vm) == 0)
                        return true;
        return false;
}

static struct recon_item *add_item(struct recon_plan *p, enum recon_op op, const char *vm,
                                   const char *devpath, const char *what, const char *id, int port,
                                   const char *why) {
        struct recon_item *it;
        if (p->n % 32 == 0) {
                it = realloc(p->items, (p->n + 32) * sizeof(*it));
                if (!it)
                        return NULL;
                p->items = it;
        }
        it = &p->items[p->n++];
        *it = (struct recon_item){.op = op, .port = port};
        str_copy(it->vm, sizeof(it->vm), vm);
        str_copy(it->devpath, sizeof(it->devpath), devpath);
        str_copy(it->what, sizeof(it->what), what);
        str_copy(it->id, sizeof(it->id), id);
        str_copy(it->why, sizeof(it->why), why);
        return it;
}

static int cmp_present(const void *a, const void *b) {
        return strcmp(((const struct present *)a)->dev->devpath, ((const struct present *)b)->dev->devpath);
}

static int cmp_rule_order(const void *a, const void *b) {
        const struct present *x = *(const struct present *const *)a, *y = *(const struct present *const *)b;
        if (x->dec.kind != y->dec.kind)
                return x->dec.kind - y->dec.kind;
        if (x->dec.entry_index != y->dec.entry_index)
                return x->dec.entry_index - y->dec.entry_index;
        if (x->dec.rule_index != y->dec.rule_index)
                return x->dec.rule_index - y->dec.rule_index;
        return strcmp(x->dev->devpath, y->dev->devpath);
}

static struct present *find_present(const struct state *s, const char *devpath) {
        struct dev key_dev = {.devpath = (char *)devpath};
        struct present key = {.dev = &key_dev};
        return bsearch(&key, s->present, s->n_present, sizeof(key), cmp_present);
}

/* Only the nodes vhotplug handles: USB devices (not interfaces), PCI functions, evdev nodes. */
static bool wanted_syspath(const char *syspath) {
        const char *name = strrchr(syspath, '/');
        name = name ? name + 1 : syspath;
        if (strstr(syspath, "/input/"))
                return strncmp(name, "event", 5) == 0;
        if (strncmp(name, "usb", 3) == 0)
                return false; /* root hubs */
        return true;
}

static struct db_attachment *row_of(const struct state *s, const char *devpath) {
        for (size_t i = 0; i < s->n_rows; i++)
                if (strcmp(s->rows[i].devpath, devpath) == 0)
                        return &s->rows[i];
        return NULL;
}

static int enumerate(struct state *s) {
        const struct xact_ctx *ctx = &s->o->ctx;
        _cleanup_udev_enumerate_ struct udev_enumerate *e = udev_enumerate_new(s->o->ctx.udev);
        struct udev_list_entry *it;
        size_t cap = 0;
        int r;

        if (!e)
                return -ENOMEM;
        if (udev_enumerate_add_match_subsystem(e, "usb") < 0 ||
            udev_enumerate_add_match_subsystem(e, "pci") < 0 ||
            udev_enumerate_add_match_subsystem(e, "input") < 0 || udev_enumerate_scan_devices(e) < 0)
                return -EIO;
        udev_list_entry_foreach(it, udev_enumerate_get_list_entry(e)) {
                const char *syspath = udev_list_entry_get_name(it);
                struct present *p;
                struct dev *d = NULL;

                if (!wanted_syspath(syspath) || s->n_present >= RECON_MAX_DEVICES)
                        continue;
                if (dev_new_from_syspath(s->o->ctx.udev, syspath, &d) < 0)
                        continue; /* vanished meanwhile */
                if (d->kind == DEV_UNKNOWN) {
                        dev_free(d);
                        continue;
                }
                if (s->n_present == cap) {
                        cap = cap ? cap * 2 : 64;
                        p = realloc(s->present, cap * sizeof(*p));
                        if (!p) {
                                dev_free(d);
                                return -ENOMEM;
                        }
                        s->present = p;
                }
                p = &s->present[s->n_present++];
                *p = (struct present){.dev = d};
                rule_decide(ctx->cfg, d, NULL, &p->dec);
                r = xact_complete(ctx, s->db, d, &p->dec);
                if (r < 0)
                        return r;
                if (p->dec.action == RULE_ATTACH && p->dec.choice_needed && !p->dec.keep_detached) {
                        /* A device that has a VM keeps it; after boot, one that has none waits for the
                         * user to choose (a prompt), as a hot-plugged one does. */
                        struct db_attachment *row = row_of(s, d->devpath);
                        if (row)
                                (void)rule_choose_vm(&p->dec, row->vm);
                        else
                                p->waiting = !s->boot;
                }
                if (p->dec.action == RULE_ATTACH)
                        (void)vmm_device_id(d, p->id, sizeof(p->id));
        }
        qsort(s->present, s->n_present, sizeof(*s->present), cmp_present);
        s->plan->n_devices = s->n_present;
        return 0;
}

static bool desired_in(const struct present *p, const char *vm) {
        return p && p->dec.action == RULE_ATTACH && !p->dec.keep_detached && !p->dec.suspended &&
               !p->waiting && strcmp(p->dec.vm->name, vm) == 0;
}

/* The VM's device that a record or a present device corresponds to, or -1. QEMU: by our id.
 * crosvm (no ids): PCI by its sysfs path (id), USB by the recorded port, else (adoption) by
 * vendor:product among unclaimed ports. */
static ssize_t vm_index(const struct cfg_vm *vm, const struct vmm_list *l, const bool *claimed,
                        const char *id, int port, const struct dev *d) {
        for (size_t i = 0; i < l->n; i++) {
                if (claimed[i])
                        continue;
                if (id && *id && strcmp(l->items[i].id, id) == 0)
                        return (ssize_t)i;
                if (vm->type == VMM_CROSVM && port >= 0 && l->items[i].port == port)
                        return (ssize_t)i;
        }
        if (vm->type == VMM_CROSVM && port < 0 && d && d->has_ids)
                for (size_t i = 0; i < l->n; i++)
                        if (!claimed[i] && l->items[i].vendor_id == d->vendor_id &&
                            l->items[i].product_id == d->product_id)
                                return (ssize_t)i;
        return -1;
}

/* Whether a record is taken on trust: the VM cannot list devices of its kind (crosvm: input
 * devices given on its command line, PCI devices without `vfio list`) and it says attached. */
static bool trusted(const struct vmm_list *l, const struct db_attachment *row) {
        enum dev_kind kind = dev_kind_from_name(row->kind);
        return row->state == DB_ATTACHED && kind > DEV_UNKNOWN && (l->unlisted & (1u << kind));
}

/* Compares, for one VM: the devices desired there, its records, and what it has. */
static int plan_vm(struct state *s, const struct cfg_vm *vm) {
        const struct xact_ctx *ctx = &s->o->ctx;
        struct vmm_opts vo = vmm_opts_from_cfg(&ctx->cfg->general);
        struct vmm_list l = {0};
        struct vmm_conn *conn = NULL;
        _cleanup_free_ char *err = NULL;
        _cleanup_free_ bool *claimed = NULL;
        _cleanup_free_ struct present **order = NULL;
        char what[160], vid[VMM_ID_MAX];
        const char *why;
        int r;

        r = vmm_connect(vm, &vo, &conn, &err);
        if (r >= 0)
                r = vmm_list(conn, &l, &err);
        vmm_disconnect(conn);
        if (r < 0) {
                struct recon_item *it = add_item(s->plan, RECON_VM_DOWN, vm->name, NULL, NULL, NULL, -1,
                                                 err ? err : strerror(-r));
                if (it && r != -EHOSTDOWN)
                        it->failed = true; /* running but not answering sensibly */
                return it ? 0 : -ENOMEM;
        }
        claimed = calloc(l.n + 1, sizeof(bool));
        /* Desired here: present, claimed by the rules for this VM; in file order of the rules, then
         * by path (PCI: by address), so devices land in the VM's ports in a stable order. */
        order = malloc((s->n_present + 1) * sizeof(*order));
        if (!claimed || !order)
                goto oom;
        for (size_t i = 0; i < s->n_present; i++)
                order[i] = &s->present[i];
        qsort(order, s->n_present, sizeof(*order), cmp_rule_order);
        for (size_t i = 0; i < s->n_present; i++) {
                struct present *p = order[i];
                struct db_attachment *row;
                struct recon_facts f;
                enum recon_op op;
                ssize_t k;

                if (!desired_in(p, vm->name))
                        continue;
                row = row_of(s, p->dev->devpath);
                f = (struct recon_facts){
                        .present = true,
                        .desired = true,
                        .row_state = row ? (int)row->state : -1,
                        .row_here = row && strcmp(row->vm, vm->name) == 0,
                        .cold_plugged = row && row->cold_plugged,
                };
                if (vm->type != VMM_QEMU && vmm_attachment_id(vm, p->dev, vid, sizeof(vid)) < 0)
                        vid[0] = '\0';
                k = vm_index(vm, &l, claimed, vm->type == VMM_QEMU ? p->id : vid,
                             f.row_here ? row->crosvm_port : -1, p->dev);
                f.in_vm = k >= 0 || (f.row_here && trusted(&l, row));
                if (k >= 0)
                        claimed[k] = true;
                op = recon_decide(&f, &why);
                if (op == RECON_NONE)
                        continue;
                dev_describe(p->dev, what, sizeof(what));
                if (!add_item(s->plan, op, vm->name, p->dev->devpath, what,
                              vm->type == VMM_QEMU ? p->id : NULL, k >= 0 ? l.items[k].port : -1, why))
                        goto oom;
        }

        /* Recorded here but not desired here any more. */
        for (size_t i = 0; i < s->n_rows; i++) {
                struct db_attachment *row = &s->rows[i];
                struct present *p;
                struct recon_facts f;
                enum recon_op op;
                ssize_t k;

                if (strcmp(row->vm, vm->name) != 0)
                        continue;
                p = find_present(s, row->devpath);
                if (desired_in(p, vm->name))
                        continue;
                k = vm_index(vm, &l, claimed, row->vmm_id, row->crosvm_port, NULL);
                if (k >= 0)
                        claimed[k] = true;
                f = (struct recon_facts){
                        .present = p != NULL,
                        .kept_detached = p && p->dec.keep_detached,
                        .suspended = p && p->dec.suspended,
                        .cold_plugged = row->cold_plugged,
                        .row_state = (int)row->state,
                        .row_here = true,
                        .in_vm = k >= 0 || trusted(&l, row),
                };
                op = recon_decide(&f, &why);
                str_copy(what, sizeof(what), row->devpath);
                if (p)
                        dev_describe(p->dev, what, sizeof(what));
                if (op != RECON_NONE &&
                    !add_item(s->plan, op, vm->name, row->devpath, what, row->vmm_id, row->crosvm_port, why))
                        goto oom;
        }

        /* In the VM and accounted for by nothing above. */
        for (size_t i = 0; i < l.n; i++) {
                const struct vmm_device *v = &l.items[i];
                char port[32];

                if (claimed[i])
                        continue;
                snprintf(port, sizeof(port), "port %d", v->port);
                if (vm->type == VMM_QEMU && v->ours && v->kind != DEV_UNKNOWN) {
                        if (!add_item(s->plan, RECON_REMOVE, vm->name, NULL, v->id, v->id, -1,
                                      "our device id with no record and no claiming device on the host"))
                                goto oom;
                } else if (v->kind != DEV_UNKNOWN || vm->type == VMM_CROSVM) {
                        if (!add_item(s->plan, RECON_FOREIGN, vm->name, NULL,
                                      vm->type == VMM_CROSVM ? port : v->id, v->id, v->port,
                                      "attached by someone else; left alone"))
                                goto oom;
                }
        }
        vmm_list_clear(&l);
        return 0;
oom:
        vmm_list_clear(&l);
        return -ENOMEM;
}

static void state_free(struct state *s) {
        for (size_t i = 0; i < s->n_present; i++)
                dev_free(s->present[i].dev);
        free(s->present);
        db_attachment_list_free(s->rows, s->n_rows);
        db_close(s->db);
}

/* Records every present device the rules leave on the host, and why (the helper does not: an
 * unclaimed device's event must stay cheap). One transaction; bounded by the ignored table. */
static int record_ignored(struct state *s) {
        _cleanup_free_ struct db_device *devs = calloc(s->n_present + 1, sizeof(*devs));
        _cleanup_free_ const char **reasons = calloc(s->n_present + 1, sizeof(*reasons));
        _cleanup_free_ char(*keys)[DEV_KEY_MAX] = calloc(s->n_present + 1, sizeof(*keys));
        size_t n = 0;

        if (!s->db)
                return 0;
        if (!devs || !reasons || !keys)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_present; i++) {
                if (s->present[i].dec.action == RULE_ATTACH)
                        continue;
                xact_record_of(s->present[i].dev, keys[n], &devs[n]);
                reasons[n++] = s->present[i].dec.reason;
        }
        return db_record_ignored_many(s->db, devs, reasons, n);
}

/* Records a prompt for each device that waits for the user to choose a VM (once: a prompt that
 * exists is left alone), under its device lock. */
static void record_waiting(struct state *s) {
        for (size_t i = 0; i < s->n_present && s->db; i++) {
                struct present *p = &s->present[i];
                struct xact_result res;
                int dlock;

                if (!p->waiting)
                        continue;
                dlock = lock_take_device(s->o->ctx.cfg->general.lock_dir, p->dev->devpath, LOCK_TIMEOUT_MS);
                if (dlock < 0)
                        continue;
                xact_result_init(&res, p->dev->kind);
                dev_add_details(p->dev);
                (void)xact_prompt(&s->o->ctx, s->db, p->dev, &p->dec, &res);
                lock_release(dlock);
        }
}

/* Whether this is the first full reconcile of this boot (see struct state). */
static int read_boot(struct state *s) {
        _cleanup_free_ char *last = NULL;
        int r;

        boot_id_read(s->boot_id, sizeof(s->boot_id));
        s->boot = true;
        if (!s->db)
                return 0;
        r = db_meta_get(s->db, META_RECONCILED_BOOT, &last);
        if (r < 0)
                return r;
        s->boot = !(r > 0 && last && s->boot_id[0] && strcmp(last, s->boot_id) == 0);
        return 0;
}

/* Whether the plan found vm not running. */
static bool vm_down(const struct recon_plan *p, const char *vm) {
        for (size_t i = 0; i < p->n; i++)
                if (p->items[i].op == RECON_VM_DOWN && strcmp(p->items[i].vm, vm) == 0)
                        return true;
        return false;
}

/* usbAuthorization (whole-host runs only, not a VM's start hook): the kernel's default for new
 * devices, then what each present USB device's "authorized" should be (rule_usb_auth at the
 * reconcile moment: hubs and hostAllow matches authorized; with deauthorizeUnmatched, what no VM
 * has or is about to get, and no hostAllow keeps, is deauthorized: also a device claimed for a VM
 * that is down). Only what differs becomes an item. Planned after the VMs. */
static int plan_usb_auth(struct state *s) {
        const struct cfg *cfg = s->o->ctx.cfg;

        if (!cfg->usb_auth.enabled || s->o->n_vms > 0)
                return 0;
        if (dev_usb_default_is_unauthorized() != 1 &&
            !add_item(s->plan, RECON_AUTH_DEFAULT, "", NULL, "usbcore and root hubs: authorized_default=0",
                      NULL, -1, "usbAuthorization: new USB devices start unauthorized"))
                return -ENOMEM;
        for (size_t i = 0; i < s->n_present; i++) {
                struct present *p = &s->present[i];
                struct rule_auth_decision ad;
                char what[160];
                int now;

                if (p->dev->kind != DEV_USB)
                        continue;
                bool for_vm = p->dec.action == RULE_ATTACH && !p->dec.keep_detached &&
                              cfg_vm_can_hotplug(p->dec.vm) && !vm_down(s->plan, p->dec.vm->name);
                rule_usb_auth(cfg, p->dev, RULE_AUTH_RECONCILE, for_vm, &ad);
                now = dev_usb_read_authorized(p->dev->devpath);
                if (ad.action == RULE_AUTH_KEEP || now == (ad.action == RULE_AUTH_AUTHORIZE))
                        continue;
                dev_describe(p->dev, what, sizeof(what));
                if (!add_item(s->plan,
                              ad.action == RULE_AUTH_AUTHORIZE ? RECON_AUTHORIZE : RECON_DEAUTHORIZE, "",
                              p->dev->devpath, what, NULL, -1, ad.reason))
                        return -ENOMEM;
        }
        return 0;
}

/* The older daemon's state file (its users' VM choices and detached devices), imported once into
 * the stored choices before anything is decided. A corrupt or hostile file is reported, once, and
 * left alone. */
static void import_legacy_state(struct state *s) {
        const struct cfg_general *g = &s->o->ctx.cfg->general;
        struct legacy_state ls = {0};
        _cleanup_free_ struct db_choice *choices = NULL;
        _cleanup_free_ char *err = NULL;
        size_t stored = 0;
        int r;

        if (!s->db || s->o->ctx.dry_run || !g->persistency || !g->state_path)
                return;
        r = legacy_read_state(g->state_path, s->o->ctx.cfg, &ls, &err);
        if (r == -ENOENT)
                return;
        choices = calloc(ls.n + 1, sizeof(*choices));
        if (!choices)
                goto out;
        for (size_t i = 0; i < ls.n; i++)
                choices[i] =
                        (struct db_choice){ls.choices[i].key, ls.choices[i].vm, ls.choices[i].keep_detached};
        if (db_import_choices(s->db, g->state_path, choices, ls.n, "reconcile (import)", &stored) != 0)
                goto out; /* imported before (1), or the database will say so elsewhere */
        if (r < 0)
                snprintf(s->plan->notice, sizeof(s->plan->notice),
                         "older daemon's state file not imported: %s", err ? err : strerror(-r));
        else {
                int n = snprintf(s->plan->info, sizeof(s->plan->info), "imported %zu of %zu choices from %s",
                                 stored, ls.n, g->state_path);
                for (size_t i = 0; i < ls.n_skipped && n > 0 && (size_t)n < sizeof(s->plan->info); i++)
                        n += snprintf(s->plan->info + n, sizeof(s->plan->info) - (size_t)n, "%s%s",
                                      i ? "; " : "; left out: ", ls.skipped[i]);
        }
out:
        legacy_state_clear(&ls);
}

/* Reconcile is the repair tool: it checks the whole database file and moves a corrupt one aside
 * (the VMs then tell what is attached). A dry run changes no file: with no database, it plans
 * from an empty record. */
static int open_db(const struct recon_opts *o, struct state *s, char *err, size_t errlen) {
        const char *path = o->ctx.db_path ? o->ctx.db_path : o->ctx.cfg->general.database;
        struct xact_result res;
        int r;

        if (o->ctx.dry_run) {
                if (access(path, F_OK) < 0 && errno == ENOENT)
                        return 0;
                r = db_open(path, o->ctx.no_strict_perms ? DB_NO_STRICT_PERMS : 0, &s->db);
                if (r < 0)
                        snprintf(err, errlen, "cannot open state database %s: %s", path, db_strerror(r));
                return r;
        }
        xact_result_init(&res, DEV_UNKNOWN);
        r = xact_open_db(&o->ctx, true, &s->db, &res);
        if (r < 0) {
                snprintf(err, errlen, "%s", res.error);
                return r;
        }
        str_copy(s->plan->notice, sizeof(s->plan->notice), res.notice);
        if (!o->ctx.requested_by)
                db_set_requested_by(s->db, "reconcile");
        return 0;
}

int recon_plan(const struct recon_opts *o, struct recon_plan *ret, char *err, size_t errlen) {
        const struct cfg *cfg = o->ctx.cfg;
        struct state *s;
        int r;

        *ret = (struct recon_plan){0};
        for (size_t i = 0; i < o->n_vms; i++)
                if (!cfg_find_vm(cfg, o->vms[i])) {
                        snprintf(err, errlen, "no VM named '%.64s' in %s", o->vms[i],
                                 cfg->path ? cfg->path : "the configuration");
                        return -ENOENT;
                }
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        *s = (struct state){.o = o, .plan = ret};
        ret->priv = s;
        r = open_db(o, s, err, errlen);
        if (r < 0)
                goto out;
        import_legacy_state(s);
        r = s->db ? db_attachment_list(s->db, NULL, &s->rows, &s->n_rows) : 0;
        if (r >= 0)
                r = read_boot(s);
        if (r < 0) {
                snprintf(err, errlen, "cannot read attachments: %s", db_strerror(r));
                goto out;
        }
        r = enumerate(s);
        if (r < 0) {
                snprintf(err, errlen, "cannot enumerate devices: %s", strerror(-r));
                goto out;
        }
        if (!o->ctx.dry_run && o->n_vms == 0)
                (void)record_ignored(s); /* history only: a failure here changes no plan */
        if (!o->ctx.dry_run)
                record_waiting(s);
        /* A VM that takes devices only at start (cloud-hypervisor) has no conversation to plan:
         * what its command line gave it stays recorded until it is detached by request. */
        for (size_t i = 0; i < cfg->n_vms && r >= 0; i++)
                if (vm_in_scope(o, cfg->vms[i].name) && cfg_vm_can_hotplug(&cfg->vms[i]))
                        r = plan_vm(s, &cfg->vms[i]);
        if (r >= 0)
                r = plan_usb_auth(s);
        /* Records of VMs that left the configuration. */
        for (size_t i = 0; i < s->n_rows && r >= 0 && o->n_vms == 0; i++)
                if (!cfg_find_vm(cfg, s->rows[i].vm) &&
                    !add_item(ret, RECON_CLOSE, s->rows[i].vm, s->rows[i].devpath, s->rows[i].devpath,
                              s->rows[i].vmm_id, s->rows[i].crosvm_port, "VM no longer configured"))
                        r = -ENOMEM;
        if (r < 0)
                snprintf(err, errlen, "cannot plan: %s", strerror(-r));
out:
        if (r < 0)
                recon_plan_clear(ret);
        return r;
}

static void note_result(struct recon_item *it, int r, const struct xact_result *res) {
        it->done = true;
        if (r < 0 || res->outcome == XACT_FAILED) {
                it->failed = true;
                str_copy(it->error, sizeof(it->error), res->error[0] ? res->error : strerror(-r));
        } else if (res->outcome == XACT_PENDING) {
                str_copy(it->error, sizeof(it->error), res->error);
        }
        if (res->vmm_id[0])
                str_copy(it->id, sizeof(it->id), res->vmm_id);
        if (res->crosvm_port >= 0)
                it->port = res->crosvm_port;
}

/* Deletes one of our devices that nothing accounts for. */
static void apply_remove(const struct recon_opts *o, struct recon_item *it) {
        _cleanup_free_ char *err = NULL;
        int r = xact_remove_unaccounted(&o->ctx, cfg_find_vm(o->ctx.cfg, it->vm), it->id, &err);

        it->done = true;
        if (r < 0) {
                it->failed = r != -EINPROGRESS;
                str_copy(it->error, sizeof(it->error), err ? err : strerror(-r));
        }
}

/* One item under its device lock. A helper may have acted since the plan was made: the record is
 * read again under the lock. */
static void apply_item(const struct recon_opts *o, struct db *db, struct present *p, struct recon_item *it) {
        struct xact_ctx ctx = o->ctx;
        struct db_attachment row = {0};
        struct xact_result res;
        int r, dlock, found;

        /* Each item gets the time budget of one event. */
        ctx.deadline = now_ms() + o->ctx.cfg->general.event_timeout_ms;
        dlock = lock_take_device(o->ctx.cfg->general.lock_dir, it->devpath,
                                 o->ctx.cfg->general.event_timeout_ms);
        if (dlock < 0) {
                it->failed = true;
                snprintf(it->error, sizeof(it->error), "cannot lock device: %s", strerror(-dlock));
                return;
        }
        xact_result_init(&res, p ? p->dev->kind : DEV_UNKNOWN);
        r = found = db_attachment_get(db, it->devpath, &row);
        if (r >= 0) {
                switch (it->op) {
                case RECON_ATTACH:
                case RECON_REATTACH:
                        if (found && row.state == DB_ATTACHED && it->op == RECON_ATTACH) {
                                it->done = true; /* a helper attached it meanwhile */
                                break;
                        }
                        if (found && it->op == RECON_REATTACH)
                                r = xact_close(db, &row, "the VM no longer has it");
                        if (r >= 0) {
                                dev_add_details(p->dev); /* names for the record */
                                r = xact_attach(&ctx, db, p->dev, &p->dec, &res);
                                note_result(it, r, &res);
                        }
                        break;
                case RECON_ADOPT:
                        dev_add_details(p->dev);
                        r = xact_adopt(db, p->dev, &p->dec, it->id, it->port, "adopted by reconcile");
                        it->done = true;
                        break;
                case RECON_CLOSE:
                        if (found)
                                r = xact_close(db, &row, it->why);
                        it->done = true; /* (or closed meanwhile) */
                        break;
                case RECON_DETACH:
                        if (!found) {
                                it->done = true; /* closed meanwhile */
                                break;
                        }
                        r = xact_detach(&ctx, db, &row, it->why, &res);
                        note_result(it, r, &res);
                        break;
                default:
                        break;
                }
        }
        if (r < 0 && !it->failed) {
                it->failed = true;
                snprintf(it->error, sizeof(it->error), "cannot record: %s", db_strerror(r));
        }
        db_attachment_clear(&row);
        lock_release(dlock);
}

/* Writes what a usbAuthorization item says. */
static void apply_auth(struct recon_item *it) {
        int r = it->op == RECON_AUTH_DEFAULT
                        ? dev_usb_default_unauthorized()
                        : dev_usb_write_authorized(it->devpath, it->op == RECON_AUTHORIZE);
        it->done = true;
        if (r < 0) {
                it->failed = true;
                snprintf(it->error, sizeof(it->error), "cannot write: %s", strerror(-r));
        }
}

int recon_apply(const struct recon_opts *o, struct recon_plan *plan) {
        struct state *s = plan->priv;
        int failed = 0;

        /* The kernel's default for new USB devices first; detaches before attaches (a device moving
         * between VMs must leave the old one before the new one opens it); the host's own USB
         * devices' authorization last, once the VMs have what is theirs. */
        for (int pass = 0; pass < 3 && !o->ctx.dry_run && s; pass++) {
                for (size_t i = 0; i < plan->n; i++) {
                        struct recon_item *it = &plan->items[i];
                        bool detachish = it->op == RECON_DETACH || it->op == RECON_REMOVE ||
                                         it->op == RECON_CLOSE || it->op == RECON_AUTH_DEFAULT;
                        bool attachish =
                                it->op == RECON_ATTACH || it->op == RECON_REATTACH || it->op == RECON_ADOPT;
                        bool authish = it->op == RECON_AUTHORIZE || it->op == RECON_DEAUTHORIZE;
                        struct present *p = NULL;
                        if ((pass == 0 && !detachish) || (pass == 1 && !attachish) ||
                            (pass == 2 && !authish))
                                continue;
                        if (it->op == RECON_AUTH_DEFAULT || authish) {
                                apply_auth(it);
                                continue;
                        }
                        if (attachish && !(p = find_present(s, it->devpath)))
                                continue;
                        if (it->op == RECON_REMOVE)
                                apply_remove(o, it);
                        else
                                apply_item(o, s->db, p, it);
                }
        }
        for (size_t i = 0; i < plan->n; i++)
                failed += plan->items[i].failed;
        /* From now on in this boot, devices that wait for a choice are left waiting. */
        if (!o->ctx.dry_run && s && s->db && o->n_vms == 0 && s->boot_id[0])
                (void)db_meta_set(s->db, META_RECONCILED_BOOT, s->boot_id);
        return failed;
}

void recon_plan_clear(struct recon_plan *plan) {
        if (plan->priv) {
                state_free(plan->priv);
                free(plan->priv);
        }
        free(plan->items);
        *plan = (struct recon_plan){0};
}

int recon_plan_to_json(const struct recon_plan *plan, bool dry_run, cJSON **ret) {
        _cleanup_cjson_ cJSON *o = cJSON_CreateObject();
        cJSON *a;
        if (!o)
                return -ENOMEM;
        cJSON_AddBoolToObject(o, "dryRun", dry_run);
        cJSON_AddNumberToObject(o, "devices", (double)plan->n_devices);
        a = cJSON_AddArrayToObject(o, "actions");
        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < plan->n; i++) {
                const struct recon_item *it = &plan->items[i];
                cJSON *j = cJSON_CreateObject();
                if (!j)
                        return -ENOMEM;
                cJSON_AddItemToArray(a, j);
                cJSON_AddStringToObject(j, "op", recon_op_name(it->op));
                cJSON_AddStringToObject(j, "vm", it->vm);
                if (it->devpath[0])
                        cJSON_AddStringToObject(j, "devpath", it->devpath);
                cJSON_AddStringToObject(j, "device", it->what);
                if (it->id[0])
                        cJSON_AddStringToObject(j, "id", it->id);
                if (it->port >= 0)
                        cJSON_AddNumberToObject(j, "port", it->port);
                cJSON_AddStringToObject(j, "reason", it->why);
                cJSON_AddStringToObject(j, "result", it->failed ? "failed" : it->done ? "done" : "planned");
                if (it->error[0])
                        cJSON_AddStringToObject(j, "error", it->error);
        }
        *ret = TAKE_PTR(o);
        return 0;
}
