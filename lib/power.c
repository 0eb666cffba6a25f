/* Suspend and resume (see power.h). Each device is handled under its device lock, as a helper
 * handles it, and its record is read again under the lock: an event may have acted meanwhile. */
#include "power.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "errmsg.h"
#include "lock.h"
#include "util.h"
#include "vfio.h"

struct run {
        const struct xact_ctx *ctx;
        struct udev *udev;
        enum dev_kind kind;
        struct db *db;
        char boot_id[BOOT_ID_MAX];
        struct power_result *res;
};

void power_result_clear(struct power_result *r) {
        if (!r)
                return;
        free(r->items);
        *r = (struct power_result){0};
}

static struct power_item *item_new(struct power_result *res, const char *devpath, const char *vm,
                                   enum xact_action action) {
        struct power_item *it;

        if (res->n % 16 == 0) {
                it = reallocarray(res->items, res->n + 16, sizeof(*it));
                if (!it)
                        return NULL;
                res->items = it;
        }
        it = &res->items[res->n++];
        *it = (struct power_item){.action = action, .outcome = XACT_SKIPPED, .port = -1};
        str_copy(it->devpath, sizeof(it->devpath), devpath);
        str_copy(it->what, sizeof(it->what), devpath);
        str_copy(it->vm, sizeof(it->vm), vm);
        return it;
}

/* Copies the transaction's result into the item. */
static void item_settle(struct power_result *res, struct power_item *it, const struct xact_result *x) {
        it->outcome = x->outcome;
        str_copy(it->id, sizeof(it->id), x->vmm_id);
        it->port = x->crosvm_port;
        str_copy(it->error, sizeof(it->error), x->error);
        res->n_failed += x->outcome == XACT_FAILED;
}

static int open_run(struct run *p, const struct xact_ctx *ctx, struct udev *udev, enum dev_kind kind,
                    const char *vm, struct power_result *res, char **ret_error) {
        struct xact_result x;
        int r;

        if (ret_error)
                *ret_error = NULL;
        *p = (struct run){.ctx = ctx, .udev = udev ? udev : ctx->udev, .kind = kind, .res = res};
        *res = (struct power_result){0};
        if (!p->udev)
                return errmsg_set(ret_error, -EINVAL, "no udev context");
        if (kind != DEV_USB && kind != DEV_PCI && kind != DEV_EVDEV)
                return errmsg_set(ret_error, -EINVAL, "suspend and resume take usb, pci or evdev devices");
        if (vm && !cfg_find_vm(ctx->cfg, vm))
                return errmsg_set(ret_error, -ENOENT, "VM %.64s is not found in the config file", vm);
        xact_result_init(&x, kind);
        r = xact_open_db(ctx, false, &p->db, &x);
        if (r < 0)
                return errmsg_set(ret_error, r, "%s", x.error);
        boot_id_read(p->boot_id, sizeof(p->boot_id));
        r = db_suspended_forget_boots(p->db, p->boot_id);
        if (r < 0)
                return errmsg_set(ret_error, r, "cannot forget the suspensions of earlier boots: %s",
                                  db_strerror(r));
        return 0;
}

/* Ends a run: its result goes to ret on success, r is returned. */
static int close_run(struct run *p, int r, struct power_result *ret) {
        db_close(p->db);
        if (r < 0) {
                power_result_clear(p->res);
                return r;
        }
        *ret = *p->res;
        return 0;
}

/* The entry of a's kind at index i, or NULL. */
static const struct cfg_entry *entry_at(const struct cfg *c, enum dev_kind kind, int i) {
        return i >= 0 && (size_t)i < c->n_entries[kind] ? &c->entries[kind][i] : NULL;
}

/* ---- suspend ---- */

/* The entry that gave a to its VM: the one claiming the present device now, else (an IOMMU group
 * member no rule claims) the one its record names. */
static const struct cfg_entry *giving_entry(struct run *p, const struct db_attachment *a,
                                            const struct dev *d, int *ret_index) {
        struct rule_decision dec;

        if (d) {
                rule_decide(p->ctx->cfg, d, NULL, &dec);
                if (dec.entry) {
                        *ret_index = dec.entry_index;
                        return dec.entry;
                }
        }
        *ret_index = a->rule_entry;
        return entry_at(p->ctx->cfg, p->kind, a->rule_entry);
}

static int suspend_one(struct run *p, const struct db_attachment *listed, const char *why,
                       const char *requested_by) {
        const struct cfg *c = p->ctx->cfg;
        _cleanup_dev_ struct dev *d = NULL;
        struct db_attachment a = {0};
        const struct cfg_entry *e;
        const struct cfg_vm *vm;
        struct power_item *it;
        struct xact_result x;
        char key[DEV_KEY_MAX];
        int r, lock, idx;

        it = item_new(p->res, listed->devpath, listed->vm, XACT_DETACH);
        if (!it)
                return -ENOMEM;
        if (dev_new_from_syspath(p->udev, listed->devpath, &d) == 0)
                dev_describe(d, it->what, sizeof(it->what));
        else
                d = NULL;
        e = giving_entry(p, listed, d, &idx);
        vm = cfg_find_vm(c, listed->vm);
        if (vm && !cfg_vm_can_hotplug(vm)) {
                it->action = XACT_IGNORE;
                snprintf(it->note, sizeof(it->note), "kept: a %s VM takes devices only at its start",
                         cfg_vm_type_name(vm->type));
                return 0;
        }
        if (e && e->skip_on_suspend) {
                it->action = XACT_IGNORE;
                snprintf(it->note, sizeof(it->note), "kept: skipOnSuspend (%s[%d])",
                         cfg_section_name(p->kind), idx);
                return 0;
        }
        lock = lock_take_device(c->general.lock_dir, listed->devpath, LOCK_TIMEOUT_MS);
        if (lock < 0) {
                it->outcome = XACT_FAILED;
                p->res->n_failed++;
                snprintf(it->error, sizeof(it->error), "cannot lock device: %s", strerror(-lock));
                return 0;
        }
        r = db_attachment_get(p->db, listed->devpath, &a);
        if (r == 0 || (r > 0 && a.id != listed->id)) {
                it->action = XACT_IGNORE;
                str_copy(it->note, sizeof(it->note), "its record changed meanwhile; left as it is");
                r = 0;
                goto out;
        }
        if (r < 0)
                goto out;
        /* The key of user_choices, as the helper would compute it; from the record's identity
         * when the device is gone. */
        if (d)
                dev_key(d, key, sizeof(key));
        else
                str_copy(key, sizeof(key), listed->devpath);
        r = db_suspended_add(p->db, a.devpath, key, a.kind, a.vm, p->boot_id, requested_by);
        if (r < 0)
                goto out;
        xact_result_init(&x, p->kind);
        r = xact_detach(p->ctx, p->db, &a, why, &x);
        item_settle(p->res, it, &x);
        /* Still in the VM: nothing for resume to put back. */
        if (x.outcome == XACT_FAILED || x.outcome == XACT_STALE) {
                int q = db_suspended_remove(p->db, a.devpath);
                if (r >= 0)
                        r = q;
        }
out:
        db_attachment_clear(&a);
        lock_release(lock);
        return r;
}

/* A PCI device given back while another device of its IOMMU group was still in the VM may have
 * found its host driver refused: now that the group is out, once more (only such devices). */
static void reprobe_shared_groups(const struct db_attachment *list, size_t n) {
        _cleanup_free_ int *group = calloc(n ? n : 1, sizeof(*group));

        for (size_t i = 0; group && i < n; i++)
                group[i] = list[i].pci_address ? vfio_iommu_group(NULL, list[i].pci_address) : -1;
        for (size_t i = 0; group && i < n; i++)
                for (size_t j = 0; group[i] >= 0 && j < n; j++)
                        if (j != i && group[j] == group[i]) {
                                xact_pci_reprobe(list[i].pci_address);
                                break;
                        }
}

int power_suspend(const struct xact_ctx *ctx, struct udev *udev, enum dev_kind kind, const char *vm,
                  const char *requested_by, struct power_result *ret, char **ret_error) {
        struct power_result res = {0};
        struct db_attachment *list = NULL;
        char why[64];
        size_t n = 0;
        struct run p;
        int r;

        r = open_run(&p, ctx, udev, kind, vm, &res, ret_error);
        if (r >= 0) {
                r = db_attachment_list(p.db, vm, &list, &n);
                if (r < 0)
                        errmsg_set(ret_error, r, "cannot read attachments: %s", db_strerror(r));
        }
        snprintf(why, sizeof(why), "suspended (%s suspend)",
                 dev_kind_name(kind) ? dev_kind_name(kind) : "?");
        for (size_t i = 0; i < n && r >= 0; i++) {
                if (dev_kind_from_name(list[i].kind) != kind)
                        continue;
                r = suspend_one(&p, &list[i], why, requested_by);
                if (r < 0)
                        errmsg_set(ret_error, r, "cannot suspend %s: %s", list[i].devpath, db_strerror(r));
        }
        if (r >= 0 && kind == DEV_PCI)
                reprobe_shared_groups(list, n);
        db_attachment_list_free(list, n);
        return close_run(&p, r, ret);
}

/* ---- resume ---- */

/* The decision that puts d back into vm: the rules', moved to vm when its entry allows it; for a
 * device no rule claims (an IOMMU group member), the entry that gave it before the suspend. */
static int resume_decision(struct run *p, const struct db_suspension *sp, struct dev *d,
                           const struct cfg_vm *vm, struct rule_decision *dec, char *note, size_t len) {
        const struct cfg_entry *e;
        int r;

        rule_decide(p->ctx->cfg, d, NULL, dec);
        r = xact_complete(p->ctx, p->db, d, dec);
        if (r < 0)
                return r;
        dec->suspended = false; /* this is the resume */
        if (dec->action == RULE_ATTACH) {
                if (dec->keep_detached) {
                        str_copy(note, len, "the user asked to keep it on the host");
                        return 0;
                }
                if (!rule_choose_vm(dec, vm->name) && dec->vm != vm)
                        snprintf(note, len, "its entry no longer allows VM %s: attached to %s", vm->name,
                                 dec->vm->name);
                return 1;
        }
        e = entry_at(p->ctx->cfg, p->kind, sp->rule_entry);
        if (!e || !e->enabled || dec->entry) {
                snprintf(note, len, "no entry gives it to VM %s any more: %.150s", vm->name, dec->reason);
                return 0;
        }
        for (size_t i = 0; i < e->n_vms; i++)
                if (e->vms[i] == vm) {
                        *dec = (struct rule_decision){
                                .action = RULE_ATTACH,
                                .kind = p->kind,
                                .entry = e,
                                .entry_index = sp->rule_entry,
                                .rule_index = -1,
                                .rule_description = e->description,
                                .vm = vm,
                        };
                        snprintf(dec->reason, sizeof(dec->reason),
                                 "resumed: %s[%d] gave it to %s before the suspend",
                                 cfg_section_name(p->kind), sp->rule_entry, vm->name);
                        return 1;
                }
        snprintf(note, len, "%s[%d] no longer names VM %s", cfg_section_name(p->kind), sp->rule_entry,
                 vm->name);
        return 0;
}

static int resume_one(struct run *p, const struct db_suspension *sp) {
        const struct cfg_vm *vm = cfg_find_vm(p->ctx->cfg, sp->vm);
        _cleanup_dev_ struct dev *d = NULL;
        struct db_attachment a = {0};
        struct rule_decision dec;
        struct power_item *it;
        struct xact_result x;
        int r, lock, found;

        it = item_new(p->res, sp->devpath, sp->vm, XACT_ATTACH);
        if (!it)
                return -ENOMEM;
        lock = lock_take_device(p->ctx->cfg->general.lock_dir, sp->devpath, LOCK_TIMEOUT_MS);
        if (lock < 0) {
                it->outcome = XACT_FAILED;
                p->res->n_failed++;
                snprintf(it->error, sizeof(it->error), "cannot lock device: %s", strerror(-lock));
                return 0;
        }
        r = db_suspended_check(p->db, sp->devpath, p->boot_id);
        if (r <= 0) {
                it->action = XACT_IGNORE;
                str_copy(it->note, sizeof(it->note), "resumed meanwhile");
                goto out;
        }
        r = found = db_attachment_get(p->db, sp->devpath, &a);
        if (r < 0)
                goto out;
        it->action = XACT_IGNORE;
        if (found && a.state != DB_PENDING)
                snprintf(it->note, sizeof(it->note), "recorded in VM %s already", a.vm);
        else if (!vm)
                snprintf(it->note, sizeof(it->note), "VM %s is no longer configured", sp->vm);
        else if (dev_new_from_syspath(p->udev, sp->devpath, &d) < 0)
                str_copy(it->note, sizeof(it->note), "unplugged while suspended");
        else {
                dev_describe(d, it->what, sizeof(it->what));
                r = resume_decision(p, sp, d, vm, &dec, it->note, sizeof(it->note));
                if (r > 0) {
                        it->action = XACT_ATTACH;
                        str_copy(it->vm, sizeof(it->vm), dec.vm->name);
                        dev_add_details(d);
                        xact_result_init(&x, p->kind);
                        r = xact_attach(p->ctx, p->db, d, &dec, &x);
                        item_settle(p->res, it, &x);
                }
        }
        /* Whatever became of it, the suspension is over: a failed attach is reconcile's to retry. */
        if (r >= 0)
                r = db_suspended_remove(p->db, sp->devpath);
out:
        db_attachment_clear(&a);
        lock_release(lock);
        return r;
}

int power_resume(const struct xact_ctx *ctx, struct udev *udev, enum dev_kind kind, const char *vm,
                 struct power_result *ret, char **ret_error) {
        struct power_result res = {0};
        struct db_suspension *list = NULL;
        size_t n = 0;
        struct run p;
        int r;

        r = open_run(&p, ctx, udev, kind, vm, &res, ret_error);
        if (r >= 0) {
                r = db_suspended_list(p.db, dev_kind_name(kind), vm, p.boot_id, &list, &n);
                if (r < 0)
                        errmsg_set(ret_error, r, "cannot read the suspended devices: %s", db_strerror(r));
        }
        for (size_t i = 0; i < n && r >= 0; i++) {
                r = resume_one(&p, &list[i]);
                if (r < 0)
                        errmsg_set(ret_error, r, "cannot resume %s: %s", list[i].devpath, db_strerror(r));
        }
        db_suspension_list_free(list, n);
        return close_run(&p, r, ret);
}
