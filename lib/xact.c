/* The attach/detach transaction: see xact.h for the sequence and who calls it.
 *
 * Locks: the caller holds the device lock; the VM lock is taken here around each conversation
 * with the VMM only (one attempt), never across a back-off sleep, so that the events of other
 * devices of the same VM proceed while one waits for QEMU to see its device. */
#include "xact.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup-types.h"
#include "errmsg.h"
#include "lock.h"
#include "log.h"
#include "util.h"
#include "vfio.h"

#define VFIO_BIND_TIMEOUT_MS 5000
#define RETRY_START_MS 20 /* first back-off after "failed to find host usb device" */
#define RETRY_MAX_MS 500
#define CONFIRM_START_MS 20 /* first look after device_del (QEMU lets a USB device go in ~50 ms) */
#define CONFIRM_MAX_MS 100

void xact_log_class(const struct xact_result *res, int *ret_level, const char **ret_msgid) {
        int level = LOG_INFO;
        const char *msgid = NULL;

        switch (res->outcome) {
        case XACT_DONE:
                msgid = res->action == XACT_ATTACH ? LOG_MSGID_ATTACH : LOG_MSGID_DETACH;
                break;
        case XACT_PENDING:
                level = LOG_NOTICE;
                msgid = LOG_MSGID_DEFERRED;
                break;
        case XACT_FAILED:
                level = LOG_ERR;
                msgid = LOG_MSGID_REFUSED;
                break;
        case XACT_DECIDED:
                level = LOG_DEBUG; /* a dry run: its answer is on stdout */
                break;
        case XACT_WAITING:
                level = LOG_NOTICE; /* somebody has to choose a VM for it */
                break;
        default:
                break;
        }
        if (res->action == XACT_IGNORE && res->outcome != XACT_FAILED)
                msgid = LOG_MSGID_IGNORE;
        *ret_level = level;
        *ret_msgid = msgid;
}

const char *xact_action_name(enum xact_action a) {
        static const char *const names[] = {"ignore", "attach", "detach"};
        return names[a];
}

const char *xact_outcome_name(enum xact_outcome o) {
        static const char *const names[] = {
                "decided",       "done",   "already", "pending", "stale",
                "kept-detached", "failed", "skipped", "waiting", "suspended",
        };
        return names[o];
}

void xact_result_init(struct xact_result *res, enum dev_kind kind) {
        *res = (struct xact_result){.crosvm_port = -1};
        res->decision = (struct rule_decision){.kind = kind, .entry_index = -1, .rule_index = -1};
}

static int stale(struct xact_result *res) {
        res->outcome = XACT_STALE;
        str_copy(res->decision.reason, sizeof(res->decision.reason),
                 "stale event: a newer event for this device was already handled");
        return 0;
}

/* Sets the outcome and, when what is given, the error: "WHAT[ NAME]: DETAIL", detail being a VMM's
 * or vfio's words, else strerror(r). */
static void settle(struct xact_result *res, enum xact_outcome o, int r, const char *what, const char *name,
                   const char *detail) {
        res->outcome = o;
        if (!what)
                return;
        snprintf(res->error, sizeof(res->error), "%s%s%s: %s", what, name ? " " : "", name ? name : "",
                 detail && *detail ? detail : strerror(r < 0 ? -r : r));
}

int xact_check_order(const struct xact_ctx *ctx, struct db *db, struct xact_result *res) {
        int r = ctx->order ? db_event_seqnum_check(db, ctx->order) : 0;

        if (r < 0)
                settle(res, XACT_FAILED, r, "cannot check event order", NULL, db_strerror(r));
        else if (r > 0)
                stale(res);
        return r;
}

int xact_open_db(const struct xact_ctx *ctx, bool check, struct db **ret, struct xact_result *res) {
        const char *path = ctx->db_path ? ctx->db_path : ctx->cfg->general.database;
        char moved[PATH_MAX];
        unsigned flags = (check ? DB_QUICK_CHECK : 0) | (ctx->no_strict_perms ? DB_NO_STRICT_PERMS : 0);
        int r = db_open_repair(path, flags, ret, moved, sizeof(moved));

        if (r < 0) {
                snprintf(res->error, sizeof(res->error), "cannot open state database %s: %s", path,
                         db_strerror(r));
                return r;
        }
        if (r > 0)
                snprintf(res->notice, sizeof(res->notice),
                         "state database was corrupt: moved aside to %s; a new one was started", moved);
        db_set_requested_by(*ret, ctx->requested_by);
        return 0;
}

void xact_record_of(const struct dev *d, char key[static DEV_KEY_MAX], struct db_device *ret) {
        bool usb = d->kind == DEV_USB;

        dev_key(d, key, DEV_KEY_MAX);
        *ret = (struct db_device){
                .kind = dev_kind_name(d->kind),
                .devpath = d->devpath,
                .key = key,
                .has_ids = d->has_ids,
                .vendor_id = d->vendor_id,
                .product_id = d->product_id,
                .vendor_name = d->vendor_name,
                /* an input device has no product name: its name stands in */
                .product_name = d->product_name || d->kind != DEV_EVDEV ? d->product_name : d->name,
                .serial = d->serial,
                .busnum = usb ? d->busnum : 0,
                .devnum = usb ? d->devnum : 0,
                .port_path = d->port_path,
                .pci_address = d->pci_address,
                .devnode = d->devnode,
        };
}

struct db_rule_ref xact_rule_ref_of(const struct rule_decision *dec) {
        return (struct db_rule_ref){
                .section = cfg_section_name(dec->kind),
                .entry = dec->entry_index,
                .allow = dec->rule_index,
                .description = dec->rule_description,
        };
}

int xact_record_ignored(struct db *db, const struct dev *d, const char *reason) {
        struct db_device rec;
        char key[DEV_KEY_MAX];

        if (!dev_kind_name(d->kind))
                return 0;
        xact_record_of(d, key, &rec);
        return db_record_ignored(db, &rec, reason);
}

int xact_complete(const struct xact_ctx *ctx, struct db *db, struct dev *d, struct rule_decision *dec) {
        _cleanup_free_ char *vm = NULL;
        char key[DEV_KEY_MAX];
        bool keep = false;
        int r;

        if (dec->action != RULE_ATTACH)
                return 0;
        if (db) {
                char boot_id[BOOT_ID_MAX];

                dev_key(d, key, sizeof(key));
                r = db_user_choice_get(db, key, &vm, &keep);
                if (r < 0)
                        return r;
                (void)rule_choose_vm(dec, vm);
                dec->keep_detached = keep;
                boot_id_read(boot_id, sizeof(boot_id));
                r = db_suspended_check(db, d->devpath, boot_id);
                if (r < 0)
                        return r;
                dec->suspended = r > 0;
        }
        /* Only a device about to be passed is worth the (costlier) look at the mount table. */
        if ((d->kind == DEV_USB || d->kind == DEV_PCI) &&
            dev_find_host_mount(d, ctx->mountinfo, ctx->cfg->general.host_mounts,
                                ctx->cfg->general.n_host_mounts) > 0)
                (void)rule_recheck(d, dec);
        return 0;
}

char *xact_allowed_vms_json(const struct rule_decision *dec) {
        _cleanup_cjson_ cJSON *a = cJSON_CreateArray();

        if (!a)
                return NULL;
        for (size_t i = 0; dec->entry && i < dec->entry->n_vms; i++)
                if (!cJSON_AddItemToArray(a, cJSON_CreateString(dec->entry->vms[i]->name)))
                        return NULL;
        return cJSON_PrintUnformatted(a);
}

int xact_prompt(const struct xact_ctx *ctx, struct db *db, const struct dev *d,
                const struct rule_decision *dec, struct xact_result *res) {
        _cleanup_free_ char *vms = xact_allowed_vms_json(dec);
        struct db_rule_ref ref = xact_rule_ref_of(dec);
        struct db_device rec;
        char key[DEV_KEY_MAX], detail[256];
        size_t len = 0;
        bool added = false;
        int r;

        res->action = XACT_IGNORE;
        res->decision = *dec;
        res->vm[0] = '\0';
        len = (size_t)snprintf(detail, sizeof(detail), "waiting for the user to choose a VM among");
        for (size_t i = 0; dec->entry && i < dec->entry->n_vms && len < sizeof(detail); i++)
                len += (size_t)snprintf(detail + len, sizeof(detail) - len, "%s %s", i ? "," : "",
                                        dec->entry->vms[i]->name);
        str_copy(res->decision.reason, sizeof(res->decision.reason), detail);
        if (!vms) {
                settle(res, XACT_FAILED, -ENOMEM, "cannot record the prompt", NULL, NULL);
                return -ENOMEM;
        }
        xact_record_of(d, key, &rec);
        r = db_prompt_add(db, ctx->order, &rec, &ref, vms, detail, &added);
        if (r < 0) {
                settle(res, XACT_FAILED, r, "cannot record the prompt", NULL, db_strerror(r));
                return r;
        }
        if (r > 0)
                return stale(res);
        res->outcome = XACT_WAITING;
        return 0;
}

/* USB authorization (usbAuthorization): writes what rule_usb_auth() decides for d at when. Returns
 * 0, or -errno of a write that was needed and failed (its words in err). */
static int authorize(const struct xact_ctx *ctx, const struct dev *d, enum rule_auth_moment when,
                     bool for_vm, char *err, size_t errlen) {
        struct rule_auth_decision ad;
        int r;

        rule_usb_auth(ctx->cfg, d, when, for_vm, &ad);
        if (ad.action == RULE_AUTH_KEEP)
                return 0;
        r = dev_usb_write_authorized(d->devpath, ad.action == RULE_AUTH_AUTHORIZE);
        if (r < 0)
                snprintf(err, errlen, "cannot %s the USB device (%s): %s",
                         ad.action == RULE_AUTH_AUTHORIZE ? "authorize" : "deauthorize", ad.reason,
                         strerror(-r));
        return r;
}

/* authorize(), for a moment where a failure changes no outcome: it becomes res's notice. */
static void auth_notice(const struct xact_ctx *ctx, const struct dev *d, enum rule_auth_moment when,
                        struct xact_result *res) {
        char err[256];

        if (authorize(ctx, d, when, true, err, sizeof(err)) < 0)
                snprintf(res->notice, sizeof(res->notice), "%s", err);
}

/* After a detach: a USB device still on the host is taken back from it unless hostAllow keeps it
 * there (USB authorization). */
static void auth_after_detach(const struct xact_ctx *ctx, const struct db_attachment *a,
                              struct xact_result *res) {
        _cleanup_dev_ struct dev *d = NULL;

        if (!ctx->udev || !ctx->cfg->usb_auth.enabled || dev_kind_from_name(a->kind) != DEV_USB ||
            dev_new_from_syspath(ctx->udev, a->devpath, &d) < 0 || d->kind != DEV_USB)
                return;
        (void)dev_find_host_mount(d, ctx->mountinfo, ctx->cfg->general.host_mounts,
                                  ctx->cfg->general.n_host_mounts);
        auth_notice(ctx, d, RULE_AUTH_DETACHED, res);
}

void xact_pci_reprobe(const char *pci_address) {
        _cleanup_free_ char *err = NULL;
        char drv[64];

        if (vfio_driver(NULL, pci_address, drv, sizeof(drv)) == 0 && !drv[0])
                (void)vfio_unbind(NULL, pci_address, &err);
}

/* -EBUSY (with the words) when a member of the plan has a host-required mount below it: binding
 * it to vfio-pci would take the host's disk away. */
static int plan_keeps_host_mounts(const struct xact_ctx *ctx, const struct vfio_plan *plan,
                                  char **ret_error) {
        for (size_t i = 0; i < plan->n; i++) {
                _cleanup_free_ char *real = NULL, *mount = NULL;
                char link[96];
                int r;

                snprintf(link, sizeof(link), "/sys/bus/pci/devices/%s", plan->members[i].addr);
                real = realpath(link, NULL);
                if (!real)
                        continue; /* gone: nothing below it either */
                r = dev_host_mount_below(real, ctx->mountinfo, ctx->cfg->general.host_mounts,
                                         ctx->cfg->general.n_host_mounts, &mount);
                if (r > 0)
                        return errmsg_set(
                                ret_error, -EBUSY,
                                "IOMMU group %d: %s holds the host-required mount %s, so the group "
                                "stays on the host",
                                plan->group, plan->members[i].addr, mount);
        }
        return 0;
}

int xact_vfio_bind(const struct xact_ctx *ctx, const struct cfg_entry *e, const char *pci_address,
                   struct vfio_plan *plan, char **ret_error) {
        struct vfio_policy policy = {
                .add_all = e && e->iommu_add_all,
                .skip_if_shared = e && e->iommu_skip_if_shared,
        };
        int r = vfio_prepare(NULL, pci_address, &policy, plan, ret_error);
        if (r < 0)
                return r;
        r = plan_keeps_host_mounts(ctx, plan, ret_error);
        if (r < 0) {
                vfio_plan_clear(plan);
                return r;
        }
        r = vfio_apply(NULL, plan, VFIO_BIND_TIMEOUT_MS, ret_error);
        if (r < 0)
                vfio_plan_clear(plan);
        return r;
}

/* Gives the plan's devices that had a host driver back to it (best effort: the attach failed). */
static void pci_give_back(const struct vfio_plan *plan) {
        for (size_t i = 0; i < plan->n; i++) {
                _cleanup_free_ char *err = NULL;
                if (plan->members[i].driver && strcmp(plan->members[i].driver, VFIO_DRIVER) != 0)
                        (void)vfio_unbind(NULL, plan->members[i].addr, &err);
        }
}

/* What is left of the request's time budget (general.eventTimeoutMs), at most cap ms; cap when
 * the request has no budget. */
static int budget_ms(const struct xact_ctx *ctx, int cap) {
        return ctx->deadline ? (int)MIN((int64_t)cap, ms_left(ctx->deadline)) : cap;
}

enum vm_op { VM_ATTACH, VM_DETACH, VM_HAS };

/* One conversation with a VM: what to do, on what. */
struct vm_call {
        enum vm_op op;
        const struct cfg_vm *vm;
        const struct dev *d;             /* VM_ATTACH */
        const struct rule_decision *dec; /* VM_ATTACH */
        struct vmm_attachment *at;       /* VM_ATTACH: filled; else: what to detach or look for */
        const char *what;                /* VM_ATTACH: the step that failed, for the record */
};

/* VM_ATTACH under the VM lock: (PCI: bind to vfio-pci), device_add. A VM that is not running gets
 * nothing bound (the host keeps the device until the VM is up); what fails leaves nothing
 * half-done: the host gets back what was bound for it. */
static int attach_in(const struct xact_ctx *ctx, struct vmm_conn *conn, struct vm_call *call,
                     char **ret_error) {
        const struct dev *d = call->d;
        struct vfio_plan plan = {0};
        int r = 0;

        if (d->kind == DEV_PCI) {
                r = xact_vfio_bind(ctx, call->dec->entry, d->pci_address, &plan, ret_error);
                if (r < 0)
                        call->what = "cannot hand the device to vfio-pci";
        }
        if (r >= 0) {
                char id[VMM_ID_MAX];
                str_copy(id, sizeof(id), call->at->id); /* vmm_attach() fills *call->at afresh */
                r = vmm_attach(conn, d, id, call->dec->entry && call->dec->entry->use_root_bus, call->at,
                               ret_error);
        }
        if (r < 0 && r != -EEXIST)
                pci_give_back(&plan);
        vfio_plan_clear(&plan);
        return r;
}

/* One short conversation with the VM under its lock, within the request's time budget: connect,
 * then attach, device_del (vmm_detach) or ask whether it has the device (vmm_has). *ret_lock is
 * the error of a VM lock that could not be had (then nothing was asked), else 0. */
static int vm_ask(const struct xact_ctx *ctx, struct vm_call *call, int *ret_lock, char **ret_error) {
        struct vmm_opts o = vmm_opts_from_cfg(&ctx->cfg->general);
        struct vmm_attachment keep = *call->at;
        struct vmm_conn *conn = NULL;
        int lock, r;

        free(*ret_error);
        *ret_error = NULL;
        lock = lock_take_vm(ctx->cfg->general.lock_dir, call->vm->name, budget_ms(ctx, LOCK_TIMEOUT_MS));
        if (lock < 0) {
                *ret_lock = lock;
                return lock;
        }
        o.timeout_ms = budget_ms(ctx, o.timeout_ms > 0 ? o.timeout_ms : CFG_DEFAULT_QMP_TIMEOUT_MS);
        r = o.timeout_ms > 0 ? vmm_connect(call->vm, &o, &conn, ret_error)
                             : errmsg_set(ret_error, -ETIMEDOUT, "the time budget of the request is spent");
        if (r >= 0) {
                switch (call->op) {
                case VM_ATTACH:
                        r = attach_in(ctx, conn, call, ret_error);
                        if (r < 0 && r != -EEXIST)
                                *call->at = keep; /* no half-filled attachment */
                        break;
                case VM_DETACH:
                        r = vmm_detach(conn, call->at, ret_error);
                        break;
                case VM_HAS:
                        r = vmm_has(conn, call->at, ret_error);
                        break;
                }
        }
        vmm_disconnect(conn);
        lock_release(lock);
        return r;
}

/* Attempts until the VMM takes the device, the retries or the time budget are used up, or another
 * answer comes; the VM lock is held for each attempt only. -EAGAIN is QEMU not seeing a fresh USB
 * device yet (udev's work, milliseconds: attachRetries attempts) or a crosvm guest that has not
 * set up its USB controller (a VM started a moment ago: tried for XACT_CROSVM_BOOT_WAIT_MS as
 * well, within the request's time budget). Returns the last attempt's result; *ret_lock as for
 * vm_ask(). */
static int attach_with_retries(const struct xact_ctx *ctx, struct vm_call *call, int *ret_lock,
                               char **ret_error) {
        int retries = ctx->cfg->general.attach_retries > 0 ? ctx->cfg->general.attach_retries : 0;
        int64_t delay = RETRY_START_MS, pause;
        int64_t boot_deadline = now_ms() + (call->vm->type == VMM_CROSVM ? XACT_CROSVM_BOOT_WAIT_MS : 0);
        int r;

        for (int attempt = 0;; attempt++) {
                r = vm_ask(ctx, call, ret_lock, ret_error);
                if (r != -EAGAIN || (attempt >= retries && ms_left(boot_deadline) == 0))
                        return r;
                pause = backoff_next(&delay, RETRY_MAX_MS);
                if (budget_ms(ctx, INT32_MAX) <= pause)
                        return r; /* no time left for another try: QEMU's last answer stands */
                sleep_ms(pause);
        }
}

int xact_attach(const struct xact_ctx *ctx, struct db *db, const struct dev *d,
                const struct rule_decision *dec, struct xact_result *res) {
        struct vmm_attachment at = {.port = -1};
        _cleanup_free_ char *verr = NULL;
        struct db_rule_ref ref = xact_rule_ref_of(dec);
        struct db_device rec;
        char key[DEV_KEY_MAX];
        enum db_state state;
        struct vm_call call = {.op = VM_ATTACH,
                               .vm = dec->vm,
                               .d = d,
                               .dec = dec,
                               .at = &at,
                               .what = "VM refused the device"};
        int64_t id = 0;
        int r, rv, lock = 0;

        res->action = XACT_ATTACH;
        res->decision = *dec;
        str_copy(res->vm, sizeof(res->vm), dec->vm->name);
        r = vmm_attachment_id(dec->vm, d, res->vmm_id, sizeof(res->vmm_id));
        if (r < 0) {
                settle(res, XACT_FAILED, r, "cannot name the device for the VM", NULL,
                       "device lacks bus/address or path");
                return 0;
        }
        xact_record_of(d, key, &rec);
        r = db_attach_begin(db, ctx->order, &rec, &ref, dec->vm->name, res->vmm_id, DB_ATTACHING, &id);
        if (r < 0) {
                settle(res, XACT_FAILED, r, "cannot record the attach intent", NULL, db_strerror(r));
                return r;
        }
        if (r > 0)
                return stale(res);

        str_copy(at.id, sizeof(at.id), res->vmm_id);
        rv = authorize(ctx, d, RULE_AUTH_BEFORE_ATTACH, true, res->error, sizeof(res->error));
        if (rv < 0)
                call.what = NULL; /* the host would not let the VM have it: res->error says why */
        else
                rv = attach_with_retries(ctx, &call, &lock, &verr);
        if (lock < 0) {
                /* This host's trouble, not the VM's answer: an internal error. */
                settle(res, XACT_FAILED, lock, "cannot lock VM", dec->vm->name, NULL);
                state = DB_FAILED;
                rv = lock;
        } else if (rv == 0 || rv == -EEXIST) { /* -EEXIST: there under our id already */
                settle(res, XACT_DONE, 0, NULL, NULL, NULL);
                res->crosvm_port = at.port;
                state = DB_ATTACHED;
                rv = 0;
        } else if (rv == -EHOSTDOWN || rv == -ETIMEDOUT) {
                /* Not running, or not answering (then the add may or may not have happened):
                 * reconcile finishes it either way once the VM answers. */
                settle(res, XACT_PENDING, rv, rv == -EHOSTDOWN ? "VM not running" : "VM not answering", NULL,
                       verr);
                state = DB_PENDING;
                rv = 0;
        } else {
                if (call.what)
                        settle(res, XACT_FAILED, rv, call.what, NULL, verr);
                else
                        res->outcome = XACT_FAILED;
                state = DB_FAILED;
                rv = 0;
        }
        /* A device that did not reach its VM is taken away from the host again. */
        if (state != DB_ATTACHED)
                auth_notice(ctx, d, RULE_AUTH_ATTACH_FAILED, res);
        r = db_attach_finish(db, id, state, at.port, state == DB_ATTACHED ? at.bus : NULL,
                             state == DB_ATTACHED ? NULL : res->error);
        if (r < 0) {
                settle(res, XACT_FAILED, r, "cannot record the attach outcome",
                       xact_outcome_name(res->outcome), db_strerror(r));
                return r;
        }
        return rv;
}

/* Gives a PCI device that left its VM back to its host driver (best effort). Other kinds need
 * nothing. */
static void give_back(const struct db_attachment *a) {
        _cleanup_free_ char *err = NULL;

        if (dev_kind_from_name(a->kind) == DEV_PCI && a->pci_address)
                (void)vfio_unbind(NULL, a->pci_address, &err);
}

/* device_del, then the confirmation that the VM let go, asked on fresh connections while the
 * monitor and the VM lock stay free for others in between (a dock unplug sends many removes at
 * once). Returns 0 when gone, -EINPROGRESS when the VM has not let go within the detach bound,
 * or the error of the conversation. */
static int detach_in_vm(const struct xact_ctx *ctx, const struct cfg_vm *vm, const struct vmm_attachment *at,
                        int *ret_lock, char **ret_error) {
        int bound = vmm_opts_from_cfg(&ctx->cfg->general).detach_timeout_ms;
        struct vmm_attachment a = *at;
        struct vm_call call = {.op = VM_DETACH, .vm = vm, .at = &a};
        int64_t deadline, delay = CONFIRM_START_MS;
        int r;

        bound = budget_ms(ctx, bound > 0 ? bound : CFG_DEFAULT_QMP_TIMEOUT_MS);
        deadline = now_ms() + bound;
        r = vm_ask(ctx, &call, ret_lock, ret_error);
        call.op = VM_HAS;
        while (r == 1) {
                if (now_ms() >= deadline)
                        return errmsg_set(
                                ret_error, -EINPROGRESS,
                                "VM %s accepted device_del of %s but has not released it within %d ms",
                                vm->name, at->id, bound);
                sleep_ms(MIN(backoff_next(&delay, CONFIRM_MAX_MS), ms_left(deadline)));
                r = vm_ask(ctx, &call, ret_lock, ret_error);
        }
        return r;
}

int xact_detach(const struct xact_ctx *ctx, struct db *db, const struct db_attachment *a, const char *why,
                struct xact_result *res) {
        const struct cfg_vm *vm = cfg_find_vm(ctx->cfg, a->vm);
        struct vmm_attachment at = {.port = a->crosvm_port};
        _cleanup_free_ char *verr = NULL;
        enum db_state state = DB_DETACHED;
        int r, rv = 0, lock = 0;

        res->action = XACT_DETACH;
        str_copy(res->vm, sizeof(res->vm), a->vm);
        str_copy(res->vmm_id, sizeof(res->vmm_id), a->vmm_id);
        res->crosvm_port = a->crosvm_port;
        r = db_detach_begin(db, ctx->order, a->id, vm ? why : "VM no longer configured");
        if (r < 0) {
                settle(res, XACT_FAILED, r, "cannot record the detach intent", NULL, db_strerror(r));
                return r;
        }
        if (r > 0)
                return stale(res);
        res->outcome = XACT_DONE;
        if (a->state != DB_PENDING && vm) {
                /* It reached the VM (a pending one never did; a VM gone from the configuration
                 * cannot be asked): take it out. */
                str_copy(at.id, sizeof(at.id), a->vmm_id);
                str_copy(at.bus, sizeof(at.bus), a->bus);
                rv = detach_in_vm(ctx, vm, &at, &lock, &verr);
        }
        if (lock < 0) {
                /* Nothing was sent: the record stays open for a later try. */
                settle(res, XACT_FAILED, lock, "cannot lock VM", vm->name, NULL);
                state = DB_DETACHING;
                rv = lock;
        } else if (rv == 0 || rv == -ENOENT || rv == -EHOSTDOWN) {
                /* -ENOENT: the VM no longer has it; -EHOSTDOWN: the VM is gone, and the device with it */
                give_back(a);
                auth_after_detach(ctx, a, res);
                rv = 0;
        } else {
                /* The record stays open (detaching), with the error, for reconcile to finish:
                 * a guest that has not let go yet, or a VM that could not be reached, is not
                 * a VM without the device. */
                bool later = rv == -EINPROGRESS || rv == -ETIMEDOUT;
                settle(res, later ? XACT_PENDING : XACT_FAILED, rv,
                       rv == -EINPROGRESS ? "guest has not released the device yet"
                       : rv == -ETIMEDOUT ? "VM not answering"
                                          : "detach failed",
                       NULL, verr);
                state = DB_DETACHING;
                rv = 0;
        }
        r = db_detach_finish(db, a->id, state,
                             state == DB_DETACHED ? (rv == 0 && verr ? verr : NULL) : res->error);
        if (r < 0) {
                settle(res, XACT_FAILED, r, "cannot record the detach outcome",
                       xact_outcome_name(res->outcome), db_strerror(r));
                return r;
        }
        return rv;
}

int xact_confirm(const struct xact_ctx *ctx, const struct db_attachment *a, char **ret_error) {
        const struct cfg_vm *vm = cfg_find_vm(ctx->cfg, a->vm);
        struct vmm_attachment at = {.port = a->crosvm_port};
        int lock = 0, r;

        if (!vm)
                return 0;
        struct vm_call call = {.op = VM_HAS, .vm = vm, .at = &at};

        str_copy(at.id, sizeof(at.id), a->vmm_id);
        r = vm_ask(ctx, &call, &lock, ret_error);
        if (lock < 0)
                return errmsg_set(ret_error, lock, "cannot lock VM %s: %s", vm->name, strerror(-lock));
        return r == -EHOSTDOWN ? 0 : r; /* a VM that is not running has nothing */
}

int xact_close(struct db *db, const struct db_attachment *a, const char *why) {
        int r = db_detach_begin(db, NULL, a->id, why);
        if (r < 0)
                return r;
        if (a->state == DB_DETACHING)
                give_back(a); /* the guest released it at last */
        return db_detach_finish(db, a->id, DB_DETACHED, NULL);
}

int xact_record_begin(struct db *db, const struct dev *d, const struct db_rule_ref *ref, const char *vm,
                      const char *id, int64_t *row) {
        struct db_device rec;
        char key[DEV_KEY_MAX];

        xact_record_of(d, key, &rec);
        return db_attach_begin(db, NULL, &rec, ref, vm, id, DB_ATTACHING, row);
}

int xact_adopt(struct db *db, const struct dev *d, const struct rule_decision *dec, const char *id, int port,
               const char *why) {
        struct db_rule_ref ref = xact_rule_ref_of(dec);
        int64_t row;
        int r;

        r = xact_record_begin(db, d, &ref, dec->vm->name, port >= 0 ? "" : id, &row);
        if (r < 0)
                return r;
        return db_attach_adopted(db, row, port, NULL, why);
}

int xact_remove_unaccounted(const struct xact_ctx *ctx, const struct cfg_vm *vm, const char *id,
                            char **ret_error) {
        struct vmm_attachment at = {.port = -1};
        int lock = 0, r;

        str_copy(at.id, sizeof(at.id), id);
        r = detach_in_vm(ctx, vm, &at, &lock, ret_error);
        if (lock < 0)
                return errmsg_set(ret_error, lock, "cannot lock VM %s: %s", vm->name, strerror(-lock));
        return r == -ENOENT ? 0 : r;
}
