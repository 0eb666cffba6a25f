/* Reconcile: desired state (rules over present devices), recorded state (open database rows) and
 * actual state (what each VM reports) are compared per VM; every difference becomes one plan item. */
#include "reconcile.h"

#include <errno.h>
#include <libudev.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "cleanup-types.h"
#include "db.h"
#include "lock.h"
#include "vmm.h"

#define LOCK_TIMEOUT_MS 120000
#define RECON_MAX_DEVICES 65536

struct present {
        struct dev *dev;
        struct rule_decision dec;
        bool keep_detached;
        char id[VMM_ID_MAX];
};

struct state {
        const struct recon_opts *o;
        struct db *db;
        struct present *present;
        size_t n_present;
        struct db_attachment *rows;
        size_t n_rows;
        struct recon_plan *plan;
};

const char *recon_op_name(enum recon_op op) {
        static const char *const names[] = {
                "attach", "reattach", "adopt", "detach", "remove", "close", "foreign", "vm-down",
        };
        return names[op];
}

static bool vm_in_scope(const struct recon_opts *o, const char *vm) {
        if (o->n_vms == 0)
                return true;
        for (size_t i = 0; i < o->n_vms; i++)
                if (strcmp(o->vms[i], vm) == 0)
                        return true;
        return false;
}

static struct recon_item *add_item(struct recon_plan *p, enum recon_op op, const char *vm, const char *devpath,
                                   const char *what, const char *id, const char *why) {
        struct recon_item *it;
        if (p->n % 32 == 0) {
                it = realloc(p->items, (p->n + 32) * sizeof(*it));
                if (!it)
                        return NULL;
                p->items = it;
        }
        it = &p->items[p->n++];
        *it = (struct recon_item){ .op = op };
        snprintf(it->vm, sizeof(it->vm), "%s", vm ? vm : "");
        snprintf(it->devpath, sizeof(it->devpath), "%s", devpath ? devpath : "");
        snprintf(it->what, sizeof(it->what), "%s", what ? what : "");
        snprintf(it->id, sizeof(it->id), "%s", id ? id : "");
        snprintf(it->why, sizeof(it->why), "%s", why ? why : "");
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
        struct dev key_dev = { .devpath = (char *)devpath };
        struct present key = { .dev = &key_dev };
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

static int enumerate(struct state *s) {
        const struct event_ctx *ctx = &s->o->ctx;
        _cleanup_udev_enumerate_ struct udev_enumerate *e = udev_enumerate_new(ctx->udev);
        struct udev_list_entry *it;
        size_t cap = 0;
        int r;

        if (!e)
                return -ENOMEM;
        if (udev_enumerate_add_match_subsystem(e, "usb") < 0 || udev_enumerate_add_match_subsystem(e, "pci") < 0 ||
            udev_enumerate_add_match_subsystem(e, "input") < 0 || udev_enumerate_scan_devices(e) < 0)
                return -EIO;
        udev_list_entry_foreach(it, udev_enumerate_get_list_entry(e)) {
                const char *syspath = udev_list_entry_get_name(it);
                struct present *p;
                struct dev *d = NULL;
                _cleanup_free_ char *vm = NULL;

                if (!wanted_syspath(syspath) || s->n_present >= RECON_MAX_DEVICES)
                        continue;
                if (dev_new_from_syspath(ctx->udev, syspath, &d) < 0)
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
                *p = (struct present){ .dev = d };
                r = s->db ? db_user_choice_get(s->db, d, &vm, &p->keep_detached) : 0;
                if (r < 0)
                        return r;
                rule_decide(ctx->cfg, d, vm, &p->dec);
                if (p->dec.action == RULE_ATTACH && event_check_host_mount(ctx, d) > 0)
                        rule_decide(ctx->cfg, d, vm, &p->dec);
                if (p->dec.action == RULE_ATTACH) {
                        dev_add_details(d);
                        (void)vmm_device_id(d, p->id, sizeof(p->id));
                }
        }
        qsort(s->present, s->n_present, sizeof(*s->present), cmp_present);
        s->plan->n_devices = s->n_present;
        return 0;
}

static bool desired_in(const struct present *p, const char *vm) {
        return p && p->dec.action == RULE_ATTACH && !p->keep_detached && strcmp(p->dec.vm->name, vm) == 0;
}

static struct db_attachment *row_of(const struct state *s, const char *devpath) {
        for (size_t i = 0; i < s->n_rows; i++)
                if (strcmp(s->rows[i].devpath, devpath) == 0)
                        return &s->rows[i];
        return NULL;
}

/* The VM's device that a record or a present device corresponds to, or -1. QEMU: by our id.
 * crosvm (no ids): by the recorded port, else (adoption) by vendor:product among unclaimed ports. */
static ssize_t vm_index(const struct cfg_vm *vm, const struct vmm_list *l, const bool *claimed, const char *id,
                        int port, const struct dev *d) {
        for (size_t i = 0; i < l->n; i++) {
                if (claimed[i])
                        continue;
                if (vm->type == VMM_QEMU && id && *id && strcmp(l->items[i].id, id) == 0)
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

static int plan_vm(struct state *s, const struct cfg_vm *vm) {
        const struct event_ctx *ctx = &s->o->ctx;
        struct vmm_opts vo = vmm_opts_from_cfg(&ctx->cfg->general);
        struct vmm_list l = { 0 };
        _cleanup_free_ char *err = NULL;
        _cleanup_free_ bool *claimed = NULL;
        _cleanup_free_ struct present **order = NULL;
        char what[160], port[32];
        int r;

        r = vmm_list(vm, &vo, &l, &err);
        if (r < 0) {
                struct recon_item *it = add_item(s->plan, RECON_VM_DOWN, vm->name, NULL, NULL, NULL,
                                                 err ? err : strerror(-r));
                if (it && r != -EHOSTDOWN)
                        it->failed = true; /* running but not answering sensibly */
                return it ? 0 : -ENOMEM;
        }
        claimed = calloc(l.n + 1, sizeof(bool));
        if (!claimed) {
                vmm_list_clear(&l);
                return -ENOMEM;
        }

        /* Desired here: present, claimed by the rules for this VM; in file order of the rules, then
         * by path (PCI: by address), so devices land in the VM's ports in a stable order. */
        order = malloc((s->n_present + 1) * sizeof(*order));
        if (!order)
                goto oom;
        for (size_t i = 0; i < s->n_present; i++)
                order[i] = &s->present[i];
        qsort(order, s->n_present, sizeof(*order), cmp_rule_order);
        for (size_t i = 0; i < s->n_present; i++) {
                struct present *p = order[i];
                struct db_attachment *row;
                ssize_t k;
                bool recorded;

                if (!desired_in(p, vm->name))
                        continue;
                row = row_of(s, p->dev->devpath);
                recorded = row && strcmp(row->vm, vm->name) == 0;
                k = vm_index(vm, &l, claimed, p->id, recorded ? row->crosvm_port : -1, p->dev);
                dev_describe(p->dev, what, sizeof(what));
                if (k >= 0) {
                        claimed[k] = true;
                        if (recorded && row->state == DB_ATTACHED)
                                continue;
                        snprintf(port, sizeof(port), "port %d", l.items[k].port);
                        if (!add_item(s->plan, RECON_ADOPT, vm->name, p->dev->devpath, what,
                                      vm->type == VMM_CROSVM ? port : p->id,
                                      row ? "attached in the VM, not recorded as attached" : "attached in the VM, no record"))
                                goto oom;
                        continue;
                }
                if (recorded && row->state == DB_ATTACHED) {
                        if (!add_item(s->plan, RECON_REATTACH, vm->name, p->dev->devpath, what, p->id,
                                      "recorded as attached but the VM does not have it (VM restarted?)"))
                                goto oom;
                } else if (!add_item(s->plan, RECON_ATTACH, vm->name, p->dev->devpath, what, p->id,
                                     row ? (row->state == DB_PENDING ? "pending attach, VM is running"
                                                                     : "unfinished attach")
                                         : "present and claimed by the rules, not attached")) {
                        goto oom;
                }
        }

        /* Recorded here but not desired here any more. */
        for (size_t i = 0; i < s->n_rows; i++) {
                struct db_attachment *row = &s->rows[i];
                struct present *p;
                ssize_t k;
                const char *why;

                if (strcmp(row->vm, vm->name) != 0)
                        continue;
                p = find_present(s, row->devpath);
                if (desired_in(p, vm->name))
                        continue;
                k = vm_index(vm, &l, claimed, row->vmm_id, row->crosvm_port, NULL);
                why = !p ? "device gone from the host" :
                      p->keep_detached ? "user asked to keep it detached" :
                      "no longer claimed by the rules for this VM";
                snprintf(what, sizeof(what), "%s", row->devpath);
                if (p)
                        dev_describe(p->dev, what, sizeof(what));
                if (k >= 0) {
                        claimed[k] = true;
                        if (!add_item(s->plan, RECON_DETACH, vm->name, row->devpath, what, row->vmm_id, why))
                                goto oom;
                } else if (!add_item(s->plan, RECON_CLOSE, vm->name, row->devpath, what, row->vmm_id,
                                     row->state == DB_DETACHING ? "detach finished: the VM no longer has it"
                                                                : "the VM does not have it")) {
                        goto oom;
                }
        }

        /* In the VM and accounted for by nothing above. */
        for (size_t i = 0; i < l.n; i++) {
                const struct vmm_device *v = &l.items[i];
                if (claimed[i])
                        continue;
                snprintf(port, sizeof(port), "port %d", v->port);
                if (vm->type == VMM_QEMU && v->ours && v->kind != DEV_UNKNOWN) {
                        if (!add_item(s->plan, RECON_REMOVE, vm->name, NULL, v->id, v->id,
                                      "our device id with no record and no claiming device on the host"))
                                goto oom;
                } else if (v->kind != DEV_UNKNOWN || vm->type == VMM_CROSVM) {
                        if (!add_item(s->plan, RECON_FOREIGN, vm->name, NULL, vm->type == VMM_CROSVM ? port : v->id,
                                      vm->type == VMM_CROSVM ? port : v->id, "attached by someone else; left alone"))
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
        _cleanup_free_ const struct dev **devs = calloc(s->n_present + 1, sizeof(*devs));
        _cleanup_free_ const char **reasons = calloc(s->n_present + 1, sizeof(*reasons));
        size_t n = 0;

        if (!s->db)
                return 0;
        if (!devs || !reasons)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_present; i++) {
                if (s->present[i].dec.action == RULE_ATTACH)
                        continue;
                devs[n] = s->present[i].dev;
                reasons[n++] = s->present[i].dec.reason;
        }
        return db_record_ignored_many(s->db, devs, reasons, n);
}

/* Reconcile is the repair tool: it checks the whole database file and moves a corrupt one aside
 * (the VMs then tell what is attached). A dry run changes no file: with no database, it plans
 * from an empty record. */
static int open_db(const struct recon_opts *o, struct state *s, char *notice, size_t len) {
        const char *path = o->ctx.db_path ? o->ctx.db_path : o->ctx.cfg->general.database;
        char moved[PATH_MAX];
        int r;

        if (o->ctx.dry_run) {
                if (access(path, F_OK) < 0 && errno == ENOENT)
                        return 0;
                return db_open(path, &s->db);
        }
        r = db_open_repair(path, true, &s->db, moved, sizeof(moved));
        if (r > 0)
                snprintf(notice, len, "state database was corrupt: moved aside to %s, rebuilding from the VMs",
                         moved);
        return r < 0 ? r : 0;
}

int recon_plan(const struct recon_opts *o, struct recon_plan *ret, char *err, size_t errlen) {
        const struct cfg *cfg = o->ctx.cfg;
        struct state *s;
        int r;

        *ret = (struct recon_plan){ 0 };
        for (size_t i = 0; i < o->n_vms; i++)
                if (!cfg_find_vm(cfg, o->vms[i])) {
                        snprintf(err, errlen, "no VM named '%.64s' in %s", o->vms[i],
                                 cfg->path ? cfg->path : "the configuration");
                        return -ENOENT;
                }
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        *s = (struct state){ .o = o, .plan = ret };
        ret->priv = s;
        r = open_db(o, s, ret->notice, sizeof(ret->notice));
        if (r < 0) {
                snprintf(err, errlen, "cannot open state database: %s", strerror(-r));
                goto out;
        }
        r = s->db ? db_attachment_list(s->db, NULL, &s->rows, &s->n_rows) : 0;
        if (r < 0) {
                snprintf(err, errlen, "cannot read attachments: %s", db_errmsg(s->db));
                goto out;
        }
        r = enumerate(s);
        if (r < 0) {
                snprintf(err, errlen, "cannot enumerate devices: %s", strerror(-r));
                goto out;
        }
        if (!o->ctx.dry_run && o->n_vms == 0)
                (void)record_ignored(s); /* history only: a failure here changes no plan */
        for (size_t i = 0; i < cfg->n_vms && r >= 0; i++)
                if (vm_in_scope(o, cfg->vms[i].name))
                        r = plan_vm(s, &cfg->vms[i]);
        /* Records of VMs that left the configuration. */
        for (size_t i = 0; i < s->n_rows && r >= 0 && o->n_vms == 0; i++)
                if (!cfg_find_vm(cfg, s->rows[i].vm) &&
                    !add_item(ret, RECON_CLOSE, s->rows[i].vm, s->rows[i].devpath, s->rows[i].devpath,
                              s->rows[i].vmm_id, "VM no longer configured"))
                        r = -ENOMEM;
        if (r < 0)
                snprintf(err, errlen, "cannot plan: %s", strerror(-r));
out:
        if (r < 0)
                recon_plan_clear(ret);
        return r;
}

static void note_result(struct recon_item *it, int r, const struct event_result *res) {
        it->done = true;
        if (r < 0 || res->outcome == EVENT_FAILED) {
                it->failed = true;
                snprintf(it->error, sizeof(it->error), "%s", res->error[0] ? res->error : strerror(-r));
        } else if (res->outcome == EVENT_PENDING) {
                snprintf(it->error, sizeof(it->error), "%s", res->error);
        }
        if (res->vmm_id[0])
                snprintf(it->id, sizeof(it->id), "%s", res->vmm_id);
}

/* Deletes one of our devices that nothing accounts for. */
static int apply_remove(const struct recon_opts *o, struct recon_item *it) {
        const struct cfg_vm *vm = cfg_find_vm(o->ctx.cfg, it->vm);
        struct vmm_opts vo = vmm_opts_from_cfg(&o->ctx.cfg->general);
        struct vmm_attachment at = { .port = -1 };
        _cleanup_free_ char *err = NULL;
        int lock, r;

        snprintf(at.id, sizeof(at.id), "%s", it->id);
        lock = lock_take_vm(o->ctx.cfg->general.lock_dir, it->vm, LOCK_TIMEOUT_MS);
        if (lock < 0)
                return lock;
        r = vmm_detach(vm, &vo, &at, &err);
        lock_release(lock);
        it->done = true;
        if (r < 0 && r != -ENOENT) {
                it->failed = r != -EINPROGRESS;
                snprintf(it->error, sizeof(it->error), "%s", err ? err : strerror(-r));
        }
        return 0;
}

/* Records an attachment the VM already has. */
static int apply_adopt(struct db *db, struct present *p, struct recon_item *it) {
        int64_t id;
        int port = -1, r;
        if (strncmp(it->id, "port ", 5) == 0)
                port = atoi(it->id + 5);
        r = db_attach_begin(db, p->dev, &p->dec, port >= 0 ? "" : it->id, DB_ATTACHING, &id);
        if (r >= 0)
                r = db_attach_adopted(db, id, port, NULL, "adopted by reconcile");
        it->done = true;
        if (r < 0) {
                it->failed = true;
                snprintf(it->error, sizeof(it->error), "cannot record: %s", db_errmsg(db));
        }
        return r;
}

static int apply_item(const struct recon_opts *o, struct db *db, struct present *p, struct recon_item *it) {
        struct db_attachment row = { 0 };
        struct event_result res = { 0 };
        int r, dlock;

        if (it->op == RECON_REMOVE)
                return apply_remove(o, it);
        dlock = lock_take_device(o->ctx.cfg->general.lock_dir, it->devpath, LOCK_TIMEOUT_MS);
        if (dlock < 0) {
                it->failed = true;
                snprintf(it->error, sizeof(it->error), "cannot lock device: %s", strerror(-dlock));
                return 0;
        }
        /* A helper may have acted since the plan was made: look again under the lock. */
        r = db_attachment_get(db, it->devpath, &row);
        if (r < 0)
                goto out;
        switch (it->op) {
        case RECON_ATTACH:
        case RECON_REATTACH:
                if (r > 0 && row.state == DB_ATTACHED && it->op == RECON_ATTACH) {
                        it->done = true; /* a helper attached it meanwhile */
                        break;
                }
                if (r > 0 && it->op == RECON_REATTACH) {
                        r = db_detach_begin(db, row.id, "the VM no longer has it");
                        if (r >= 0)
                                r = db_detach_finish(db, row.id, DB_DETACHED, NULL);
                        if (r < 0)
                                break;
                }
                res.decision = p->dec;
                r = event_attach(&o->ctx, db, p->dev, &res);
                note_result(it, r, &res);
                break;
        case RECON_ADOPT:
                r = apply_adopt(db, p, it);
                break;
        case RECON_DETACH:
        case RECON_CLOSE:
                if (r == 0) {
                        it->done = true; /* closed meanwhile */
                        break;
                }
                if (it->op == RECON_CLOSE) {
                        r = db_detach_begin(db, row.id, it->why);
                        if (r >= 0 && row.state == DB_DETACHING)
                                event_give_back(&row); /* the guest released it at last */
                        if (r >= 0)
                                r = db_detach_finish(db, row.id, DB_DETACHED, NULL);
                        it->done = true;
                        break;
                }
                r = event_detach(&o->ctx, db, &row, it->why, &res);
                note_result(it, r, &res);
                break;
        default:
                break;
        }
out:
        if (r < 0 && !it->failed) {
                it->failed = true;
                snprintf(it->error, sizeof(it->error), "%s", db_errmsg(db));
        }
        db_attachment_clear(&row);
        lock_release(dlock);
        return 0;
}

int recon_apply(const struct recon_opts *o, struct recon_plan *plan) {
        struct state *s = plan->priv;
        int failed = 0;

        /* Detaches first: a device moving between VMs must leave the old one before the new one
         * opens it. */
        for (int pass = 0; pass < 2 && !o->ctx.dry_run && s; pass++) {
                for (size_t i = 0; i < plan->n; i++) {
                        struct recon_item *it = &plan->items[i];
                        bool detachish = it->op == RECON_DETACH || it->op == RECON_REMOVE || it->op == RECON_CLOSE;
                        bool attachish = it->op == RECON_ATTACH || it->op == RECON_REATTACH || it->op == RECON_ADOPT;
                        struct present *p = NULL;
                        if ((pass == 0 && !detachish) || (pass == 1 && !attachish))
                                continue;
                        if (attachish && !(p = find_present(s, it->devpath)))
                                continue;
                        apply_item(o, s->db, p, it);
                }
        }
        for (size_t i = 0; i < plan->n; i++)
                failed += plan->items[i].failed;
        return failed;
}

void recon_plan_clear(struct recon_plan *plan) {
        if (plan->priv) {
                state_free(plan->priv);
                free(plan->priv);
        }
        free(plan->items);
        *plan = (struct recon_plan){ 0 };
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
                cJSON_AddStringToObject(j, "reason", it->why);
                cJSON_AddStringToObject(j, "result", it->failed ? "failed" : it->done ? "done" : "planned");
                if (it->error[0])
                        cJSON_AddStringToObject(j, "error", it->error);
        }
        *ret = TAKE_PTR(o);
        return 0;
}
