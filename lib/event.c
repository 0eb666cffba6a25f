/* The helper's event flow.
 *
 * add:    decide → device lock → stale check → VM lock → record intent → VMM → record outcome
 * remove: device lock → stale check → open row by DEVPATH → VM lock → detach → record
 *
 * The device lock serializes the events of one device (udev's own ordering is gone after the
 * hand-off); the SEQNUM check drops an event older than one already handled; the open row makes a
 * replayed add a no-op. */
#include "event.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup-types.h"
#include "db.h"
#include "lock.h"
#include "qmp.h"
#include "vfio.h"
#include "vmm.h"

#define LOCK_TIMEOUT_MS 120000
#define VFIO_BIND_TIMEOUT_MS 5000

const char *event_action_name(enum event_action a) {
        static const char *const names[] = { "ignore", "attach", "detach" };
        return names[a];
}

const char *event_outcome_name(enum event_outcome o) {
        static const char *const names[] = {
                "decided", "done", "already", "pending", "stale", "kept-detached", "failed", "skipped",
        };
        return names[o];
}

static const char *env_get(char *const *envp, const char *key) {
        size_t len = strlen(key);
        for (size_t i = 0; envp && envp[i]; i++)
                if (strncmp(envp[i], key, len) == 0 && envp[i][len] == '=')
                        return envp[i] + len + 1;
        return NULL;
}

static bool is_add_like(const char *action) {
        return strcmp(action, "add") == 0 || strcmp(action, "bind") == 0 || strcmp(action, "change") == 0;
}

static int new_minimal(const char *devpath, struct dev **ret) {
        _cleanup_free_ char *dp = NULL;
        if (asprintf(&dp, "DEVPATH=%s", devpath) < 0)
                return -ENOMEM;
        char *const env[] = { dp, (char *)"SUBSYSTEM=unknown", NULL };
        return dev_new_from_environ(env, ret);
}

int event_new(struct udev *udev, const char *action, const char *devpath, char *const *envp, struct event *ret,
              char *err, size_t errlen) {
        const char *seq;
        int r;

        *ret = (struct event){ 0 };
        if (!action) {
                action = env_get(envp, "ACTION");
                devpath = env_get(envp, "DEVPATH");
                if (!action || !devpath) {
                        snprintf(err, errlen, "no ACTION and DEVPATH given, in arguments or environment");
                        return -EINVAL;
                }
                seq = env_get(envp, "SEQNUM");
                if (seq) {
                        char *end;
                        errno = 0;
                        ret->seqnum = strtoull(seq, &end, 10);
                        if (errno || *end || end == seq) {
                                snprintf(err, errlen, "invalid SEQNUM");
                                return -EINVAL;
                        }
                }
        } else {
                envp = NULL; /* a manual run describes the device by its path only */
        }
        if (strcmp(action, "remove") != 0 && !is_add_like(action)) {
                snprintf(err, errlen, "unsupported action '%.32s' (expected add, remove, bind or change)", action);
                return -EINVAL;
        }
        snprintf(ret->action, sizeof(ret->action), "%s", action);

        if (is_add_like(action)) {
                r = dev_new_from_syspath(udev, devpath, &ret->dev);
                if (r == -ENODEV && envp)
                        r = dev_new_from_environ(envp, &ret->dev); /* gone already: decide from the event */
                else if (r == 0 && envp)
                        dev_merge_environ(ret->dev, envp);
        } else if (envp) {
                r = dev_new_from_environ(envp, &ret->dev);
        } else {
                /* A manual remove: sysfs may still describe the device; else all we know is the
                 * path, and the database knows the rest. */
                r = dev_new_from_syspath(udev, devpath, &ret->dev);
                if (r == -ENODEV)
                        r = new_minimal(devpath, &ret->dev);
        }
        if (r == -EINVAL)
                snprintf(err, errlen, "invalid DEVPATH '%.200s' (expected /devices/...)", devpath ? devpath : "");
        else if (r == -ENODEV)
                snprintf(err, errlen, "no device at %.200s", devpath);
        else if (r < 0)
                snprintf(err, errlen, "cannot read device %.200s: %s", devpath, strerror(-r));
        return r;
}

void event_clear(struct event *ev) {
        dev_free(ev->dev);
        ev->dev = NULL;
}

static void read_boot_id(char *buf, size_t len) {
        _cleanup_close_ int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, len - 1) : -1;
        if (n <= 0)
                n = 0;
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
}


static void set_error(struct event_result *res, int r, const char *what, const char *detail) {
        snprintf(res->error, sizeof(res->error), "%s: %s", what, detail && *detail ? detail : strerror(-r));
}

/* Binds a PCI device (and, per the entry's policy, its IOMMU group) to vfio-pci. */
static int pci_bind(const struct cfg_entry *e, const struct dev *d, struct vfio_plan *plan, char **ret_error) {
        struct vfio_policy policy = {
                .add_all = e && e->iommu_add_all,
                .skip_if_shared = e && e->iommu_skip_if_shared,
        };
        int r = vfio_prepare(NULL, d->pci_address, &policy, plan, ret_error);
        if (r < 0)
                return r;
        return vfio_apply(NULL, plan, VFIO_BIND_TIMEOUT_MS, ret_error);
}

/* Returns the plan's devices that were on a host driver to it (best effort: the attach failed). */
static void pci_give_back(const struct vfio_plan *plan) {
        for (size_t i = 0; i < plan->n; i++) {
                char *err = NULL;
                if (plan->members[i].driver && strcmp(plan->members[i].driver, "vfio-pci") != 0)
                        (void)vfio_unbind(NULL, plan->members[i].addr, &err);
                free(err);
        }
}

/* Returns 0 when the QEMU of vm answers on its QMP socket, -EHOSTDOWN (and a message) when it is not
 * running, other -errno when it answers badly (left for vmm_attach to report). */
static int qemu_probe(const struct cfg_vm *vm, const struct vmm_opts *o, char **ret_error) {
        _cleanup_qmp_ struct qmp *q = NULL;
        int r = qmp_connect(vm->socket, o->timeout_ms > 0 ? o->timeout_ms : CFG_DEFAULT_QMP_TIMEOUT_MS, &q);
        if (r == -EHOSTDOWN && asprintf(ret_error, "VM %s is not running (no QMP answer on %s)", vm->name,
                                        vm->socket) < 0)
                *ret_error = NULL;
        return r;
}

int event_attach(const struct event_ctx *ctx, struct db *db, struct dev *d, struct event_result *res) {
        const struct cfg_vm *vm = res->decision.vm;
        struct vmm_opts o = vmm_opts_from_cfg(&ctx->cfg->general);
        struct vmm_attachment at = { .port = -1 };
        struct vfio_plan plan = { 0 };
        _cleanup_free_ char *verr = NULL;
        int64_t id;
        int r, lock;

        r = vmm_device_id(d, res->vmm_id, sizeof(res->vmm_id));
        if (r < 0) {
                res->outcome = EVENT_FAILED;
                set_error(res, r, "cannot name the device for the VM", "device lacks bus/address or path");
                return 0;
        }
        r = db_attach_begin(db, d, &res->decision, res->vmm_id, DB_ATTACHING, &id);
        if (r < 0)
                return set_error(res, r, "cannot record attach intent", db_errmsg(db)), r;

        lock = lock_take_vm(ctx->cfg->general.lock_dir, vm->name, LOCK_TIMEOUT_MS);
        if (lock < 0) {
                set_error(res, lock, "cannot lock VM", NULL);
                db_attach_finish(db, id, DB_FAILED, -1, NULL, res->error);
                return lock;
        }
        if (d->kind == DEV_PCI && vm->type == VMM_QEMU) {
                /* A VM that is not running gets nothing: the host keeps the device until it is up
                 * (reconcile binds and attaches it then). Ask before binding, not after. */
                r = qemu_probe(vm, &o, &verr);
                if (r == -EHOSTDOWN) {
                        lock_release(lock);
                        res->outcome = EVENT_PENDING;
                        set_error(res, r, "VM not running", verr);
                        r = db_attach_finish(db, id, DB_PENDING, -1, NULL, res->error);
                        if (r < 0)
                                set_error(res, r, "cannot record attach outcome", db_errmsg(db));
                        return r;
                }
                free(TAKE_PTR(verr));
                r = pci_bind(res->decision.entry, d, &plan, &verr);
                if (r < 0) {
                        lock_release(lock);
                        res->outcome = EVENT_FAILED;
                        set_error(res, r, "cannot hand the device to vfio-pci", verr);
                        r = db_attach_finish(db, id, DB_FAILED, -1, NULL, res->error);
                        return r < 0 ? r : 0;
                }
        }
        r = vmm_attach(vm, &o, d, res->decision.entry && res->decision.entry->use_root_bus, &at, &verr);
        if (r < 0 && r != -EEXIST)
                pci_give_back(&plan); /* nothing left half-done (not even when the VM went away
                                       * meanwhile): the host gets its devices back */
        vfio_plan_clear(&plan);
        lock_release(lock);

        switch (r) {
        case 0:
        case -EEXIST: /* already there under our id: the wanted state */
                res->outcome = EVENT_DONE;
                if (at.port >= 0)
                        snprintf(res->vmm_id, sizeof(res->vmm_id), "port %d", at.port);
                r = db_attach_finish(db, id, DB_ATTACHED, at.port, at.bus, NULL);
                break;
        case -EHOSTDOWN:
                res->outcome = EVENT_PENDING;
                set_error(res, r, "VM not running", verr);
                r = db_attach_finish(db, id, DB_PENDING, -1, NULL, res->error);
                break;
        default:
                res->outcome = EVENT_FAILED;
                set_error(res, r, "VM refused the device", verr);
                r = db_attach_finish(db, id, DB_FAILED, -1, NULL, res->error);
                break;
        }
        if (r < 0)
                set_error(res, r, "cannot record attach outcome", db_errmsg(db));
        return r;
}

int event_check_host_mount(const struct event_ctx *ctx, struct dev *d) {
        if (d->kind != DEV_USB)
                return 0;
        return dev_find_host_mount(d, ctx->mountinfo, ctx->cfg->general.host_mounts,
                                   ctx->cfg->general.n_host_mounts);
}

static int handle_add(const struct event_ctx *ctx, struct db *db, struct dev *d, struct event_result *res) {
        struct db_attachment cur = { 0 };
        _cleanup_free_ char *preferred = NULL;
        bool keep_detached = false;
        int r;

        if (db) {
                r = db_user_choice_get(db, d, &preferred, &keep_detached);
                if (r < 0)
                        return set_error(res, r, "cannot read user choice", db_errmsg(db)), r;
        }
        rule_decide(ctx->cfg, d, preferred, &res->decision);
        /* Only a device about to be passed needs the (costlier) look at the mount table. */
        if (res->decision.action == RULE_ATTACH && event_check_host_mount(ctx, d) > 0)
                rule_decide(ctx->cfg, d, preferred, &res->decision);
        if (res->decision.action != RULE_ATTACH) {
                res->action = EVENT_IGNORE;
                res->outcome = ctx->dry_run ? EVENT_DECIDED : EVENT_SKIPPED;
                if (db)
                        (void)db_record_ignored(db, d, res->decision.reason);
                return 0;
        }
        res->action = EVENT_ATTACH;
        snprintf(res->vm, sizeof(res->vm), "%s", res->decision.vm->name);
        if (ctx->dry_run) {
                res->outcome = EVENT_DECIDED;
                (void)vmm_device_id(d, res->vmm_id, sizeof(res->vmm_id));
                return 0;
        }
        if (keep_detached) {
                res->outcome = EVENT_KEPT_DETACHED;
                return 0;
        }
        r = db_attachment_get(db, d->devpath, &cur);
        if (r < 0)
                return set_error(res, r, "cannot read attachment", db_errmsg(db)), r;
        if (r > 0 && cur.state == DB_ATTACHED) {
                /* Replayed add (udevadm trigger, duplicate event): nothing to send. */
                res->outcome = EVENT_ALREADY;
                snprintf(res->vm, sizeof(res->vm), "%s", cur.vm);
                snprintf(res->vmm_id, sizeof(res->vmm_id), "%s", cur.vmm_id ? cur.vmm_id : "");
                db_attachment_clear(&cur);
                return 0;
        }
        db_attachment_clear(&cur);
        return event_attach(ctx, db, d, res);
}

void event_give_back(const struct db_attachment *a) {
        char *err = NULL;
        /* A PCI device still on the host goes back to its driver; one that left needs nothing. */
        if (a->kind == DEV_PCI && a->pci_address)
                (void)vfio_unbind(NULL, a->pci_address, &err);
        free(err);
}

int event_detach(const struct event_ctx *ctx, struct db *db, const struct db_attachment *a, const char *why,
                 struct event_result *res) {
        const struct cfg_vm *vm = cfg_find_vm(ctx->cfg, a->vm);
        struct vmm_opts o = vmm_opts_from_cfg(&ctx->cfg->general);
        struct vmm_attachment at = { .port = a->crosvm_port };
        _cleanup_free_ char *verr = NULL;
        int r, lock;

        res->action = EVENT_DETACH;
        snprintf(res->vm, sizeof(res->vm), "%s", a->vm);
        snprintf(res->vmm_id, sizeof(res->vmm_id), "%s", a->vmm_id ? a->vmm_id : "");
        r = db_detach_begin(db, a->id, vm ? why : "VM no longer configured");
        if (r < 0)
                return set_error(res, r, "cannot record detach", db_errmsg(db)), r;
        if (a->state == DB_PENDING || !vm) {
                /* Never reached the VM (or the VM left the config): only the record is closed. */
                res->outcome = EVENT_DONE;
                r = db_detach_finish(db, a->id, DB_DETACHED, NULL);
                goto out;
        }
        snprintf(at.id, sizeof(at.id), "%s", a->vmm_id ? a->vmm_id : "");
        snprintf(at.bus, sizeof(at.bus), "%s", a->bus ? a->bus : "");

        lock = lock_take_vm(ctx->cfg->general.lock_dir, vm->name, LOCK_TIMEOUT_MS);
        if (lock < 0) {
                set_error(res, lock, "cannot lock VM", NULL);
                res->outcome = EVENT_FAILED;
                r = db_detach_finish(db, a->id, DB_DETACHING, res->error);
                goto out;
        }
        r = vmm_detach(vm, &o, &at, &verr);
        lock_release(lock);
        switch (r) {
        case 0:
        case -ENOENT:    /* the VM no longer has it */
        case -EHOSTDOWN: /* the VM is gone, and the device with it */
                res->outcome = EVENT_DONE;
                event_give_back(a);
                r = db_detach_finish(db, a->id, DB_DETACHED, r == 0 ? NULL : verr);
                break;
        case -EINPROGRESS:
                res->outcome = EVENT_PENDING;
                set_error(res, r, "guest has not released the device yet", verr);
                r = db_detach_finish(db, a->id, DB_DETACHING, res->error);
                break;
        default:
                res->outcome = EVENT_FAILED;
                set_error(res, r, "detach failed", verr);
                r = db_detach_finish(db, a->id, DB_DETACHING, res->error);
                break;
        }
out:
        if (r < 0)
                set_error(res, r, "cannot record detach", db_errmsg(db));
        return r < 0 ? r : 0;
}

static int handle_remove(const struct event_ctx *ctx, struct db *db, struct dev *d, struct event_result *res) {
        struct db_attachment a = { 0 };
        int r;

        if (ctx->dry_run) {
                rule_decide(ctx->cfg, d, NULL, &res->decision);
                res->action = res->decision.action == RULE_ATTACH ? EVENT_DETACH : EVENT_IGNORE;
                if (res->decision.vm)
                        snprintf(res->vm, sizeof(res->vm), "%s", res->decision.vm->name);
                res->outcome = EVENT_DECIDED;
                return 0;
        }
        r = db_attachment_get(db, d->devpath, &a);
        if (r < 0)
                return set_error(res, r, "cannot read attachment", db_errmsg(db)), r;
        if (r == 0) {
                res->action = EVENT_IGNORE;
                res->outcome = EVENT_SKIPPED;
                snprintf(res->decision.reason, sizeof(res->decision.reason), "nothing attached for this device");
                return 0;
        }
        snprintf(res->decision.reason, sizeof(res->decision.reason), "device removed from the host");
        r = event_detach(ctx, db, &a, "device removed from the host", res);
        db_attachment_clear(&a);
        return r;
}

static int open_db(const struct event_ctx *ctx, struct db **ret, struct event_result *res) {
        char moved[PATH_MAX];
        int r = db_open_repair(ctx->db_path ? ctx->db_path : ctx->cfg->general.database, false, ret, moved,
                               sizeof(moved));
        if (r < 0)
                return set_error(res, r, "cannot open state database", NULL), r;
        if (r > 0)
                snprintf(res->notice, sizeof(res->notice),
                         "state database was corrupt: moved aside to %s, starting a new one", moved);
        return 0;
}

int event_handle(const struct event_ctx *ctx, const struct event *ev, struct event_result *res) {
        struct db *db = NULL;
        char boot_id[64];
        int r, dlock;
        bool add = is_add_like(ev->action);

        *res = (struct event_result){ 0 };
        res->decision.entry_index = res->decision.rule_index = -1;
        res->decision.kind = ev->dev->kind;
        if (ctx->dry_run) {
                dev_add_details(ev->dev);
                return add ? handle_add(ctx, NULL, ev->dev, res) : handle_remove(ctx, NULL, ev->dev, res);
        }
        if (add) {
                /* An add no entry claims changes nothing: no lock, no database (its cost would be
                 * paid by every event of every device on the host). Reconcile records the devices
                 * left on the host. A user's stored choice only picks among an entry's VMs, so it
                 * cannot change this decision. */
                rule_decide(ctx->cfg, ev->dev, NULL, &res->decision);
                if (res->decision.action != RULE_ATTACH) {
                        res->outcome = EVENT_SKIPPED;
                        return 0;
                }
                dev_add_details(ev->dev);
        }

        dlock = lock_take_device(ctx->cfg->general.lock_dir, ev->dev->devpath, LOCK_TIMEOUT_MS);
        if (dlock < 0)
                return set_error(res, dlock, "cannot lock device", NULL), dlock;
        r = open_db(ctx, &db, res);
        if (r < 0)
                goto out;
        read_boot_id(boot_id, sizeof(boot_id));
        r = db_event_seqnum_check(db, ev->dev->devpath, ev->seqnum, boot_id);
        if (r < 0) {
                set_error(res, r, "cannot check event order", db_errmsg(db));
                goto out;
        }
        if (r > 0) {
                res->outcome = EVENT_STALE;
                snprintf(res->decision.reason, sizeof(res->decision.reason),
                         "stale event: a newer event for this device was already handled");
                r = 0;
                goto out;
        }
        r = add ? handle_add(ctx, db, ev->dev, res) : handle_remove(ctx, db, ev->dev, res);
out:
        db_close(db);
        lock_release(dlock);
        return r;
}

int event_result_to_json(const struct event *ev, const struct event_result *r, cJSON **ret) {
        _cleanup_cjson_ cJSON *o = cJSON_CreateObject();
        const struct rule_decision *dec = &r->decision;
        const char *kind = dev_kind_name(ev->dev->kind);
        cJSON *dev = NULL;

        if (!o)
                return -ENOMEM;
        cJSON_AddStringToObject(o, "action", event_action_name(r->action));
        if (kind)
                cJSON_AddStringToObject(o, "kind", kind);
        else
                cJSON_AddNullToObject(o, "kind");
        if (r->vm[0])
                cJSON_AddStringToObject(o, "vm", r->vm);
        else
                cJSON_AddNullToObject(o, "vm");
        if (dec->entry_index >= 0) {
                cJSON *rule = cJSON_AddObjectToObject(o, "rule");
                cJSON_AddStringToObject(rule, "section", cfg_section_name(dec->kind));
                cJSON_AddNumberToObject(rule, "entry", dec->entry_index);
                if (dec->rule_index >= 0)
                        cJSON_AddNumberToObject(rule, "allow", dec->rule_index);
                else
                        cJSON_AddNullToObject(rule, "allow");
                if (dec->rule_description)
                        cJSON_AddStringToObject(rule, "description", dec->rule_description);
                else
                        cJSON_AddNullToObject(rule, "description");
        } else {
                cJSON_AddNullToObject(o, "rule");
        }
        cJSON_AddStringToObject(o, "reason", dec->reason);
        cJSON_AddStringToObject(o, "outcome", event_outcome_name(r->outcome));
        if (r->vmm_id[0])
                cJSON_AddStringToObject(o, "id", r->vmm_id);
        if (r->error[0])
                cJSON_AddStringToObject(o, "error", r->error);
        if (dev_to_json(ev->dev, &dev) < 0)
                return -ENOMEM;
        cJSON_AddItemToObject(o, "device", dev);
        *ret = TAKE_PTR(o);
        return 0;
}
