/* The helper's event flow (see event.h). The device lock serializes the events of one device
 * (udev's own ordering is gone after the hand-off); the SEQNUM check drops an event older than one
 * already handled; the open record makes a replayed add a no-op. */
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
#include "util.h"

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
        char *const env[] = {dp, (char *)"SUBSYSTEM=unknown", NULL};
        return dev_new_from_environ(env, ret);
}

int event_new(struct udev *udev, const char *action, const char *devpath, char *const *envp,
              struct event *ret, char *err, size_t errlen) {
        const char *seq;
        int r;

        *ret = (struct event){0};
        if (!action) {
                action = env_get(envp, "ACTION");
                devpath = env_get(envp, "DEVPATH");
                if (!action || !devpath) {
                        snprintf(err, errlen, "no ACTION and DEVPATH given, in arguments or environment");
                        return -EINVAL;
                }
                seq = env_get(envp, "SEQNUM");
                /* The database keeps it as a signed 64-bit number. */
                if (seq && parse_u64(seq, INT64_MAX, &ret->seqnum) < 0) {
                        snprintf(err, errlen,
                                 "invalid SEQNUM '%.32s' (expected a decimal number below 2^63)", seq);
                        return -EINVAL;
                }
        } else {
                envp = NULL; /* a manual run describes the device by its path only */
        }
        if (strcmp(action, "remove") != 0 && !is_add_like(action)) {
                snprintf(err, errlen, "unsupported action '%.32s' (expected add, remove, bind or change)",
                         action);
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
                snprintf(err, errlen, "invalid DEVPATH '%.200s' (expected /devices/...)",
                         devpath ? devpath : "");
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

static void set_error(struct xact_result *res, int r, const char *what, const char *detail) {
        snprintf(res->error, sizeof(res->error), "%s: %s", what, detail ? detail : strerror(-r));
}

/* The stored choices a dry run takes into account: the database when it exists and can be read,
 * never created or repaired (a dry run changes no file). NULL when there is none. */
static struct db *dry_run_db(const struct xact_ctx *ctx) {
        const char *path = ctx->db_path ? ctx->db_path : ctx->cfg->general.database;
        struct db *db = NULL;

        if (access(path, F_OK) < 0)
                return NULL;
        if (db_open(path, ctx->no_strict_perms ? DB_NO_STRICT_PERMS : 0, &db) < 0)
                return NULL;
        return db;
}

/* The verdict of a claimed device that is not attached on its own: kept detached by the user, or
 * taken out by a suspend. Returns true when d stays on the host (res says why). */
static bool stays_on_host(const struct rule_decision *dec, struct xact_result *res) {
        if (dec->keep_detached) {
                res->action = XACT_IGNORE;
                res->outcome = XACT_KEPT_DETACHED;
                snprintf(res->decision.reason, sizeof(res->decision.reason),
                         "kept detached: the user detached it from %.64s (an attach by request undoes that)",
                         dec->vm->name);
                return true;
        }
        if (dec->suspended) {
                res->action = XACT_IGNORE;
                res->outcome = XACT_SUSPENDED;
                snprintf(res->decision.reason, sizeof(res->decision.reason),
                         "suspended: a suspend took it out of %.64s; only a resume puts it back",
                         dec->vm->name);
                return true;
        }
        return false;
}

/* A dry run decides as a real run would, with what it can know without changing anything: the
 * rules, the stored choices (when the database exists) and the host mounts. */
static int handle_dry_run(const struct xact_ctx *ctx, const struct event *ev, bool add,
                          struct xact_result *res) {
        struct dev *d = ev->dev;
        struct db *db = NULL;
        int r;

        res->outcome = XACT_DECIDED;
        dev_add_details(d);
        if (!add) {
                rule_decide(ctx->cfg, d, NULL, &res->decision);
                res->action = res->decision.action == RULE_ATTACH ? XACT_DETACH : XACT_IGNORE;
                if (res->decision.vm)
                        str_copy(res->vm, sizeof(res->vm), res->decision.vm->name);
                return 0;
        }
        rule_decide(ctx->cfg, d, NULL, &res->decision);
        if (res->decision.action == RULE_ATTACH)
                db = dry_run_db(ctx);
        r = xact_complete(ctx, db, d, &res->decision);
        db_close(db);
        if (r < 0)
                return set_error(res, r, "cannot decide", NULL), r;
        if (res->decision.action != RULE_ATTACH)
                return 0;
        str_copy(res->vm, sizeof(res->vm), res->decision.vm->name);
        if (stays_on_host(&res->decision, res))
                return 0;
        if (res->decision.choice_needed) {
                char *vms = xact_allowed_vms_json(&res->decision);
                res->action = XACT_IGNORE;
                res->outcome = XACT_WAITING;
                res->vm[0] = '\0';
                snprintf(res->decision.reason, sizeof(res->decision.reason),
                         "waiting for a choice: %s[%d] lets the user choose among %.160s",
                         cfg_section_name(d->kind), res->decision.entry_index, vms ? vms : "its allowedVms");
                free(vms);
                return 0;
        }
        res->action = XACT_ATTACH;
        if (res->decision.vm->type == VMM_QEMU)
                (void)vmm_device_id(d, res->vmm_id, sizeof(res->vmm_id));
        return 0;
}

static int handle_add(const struct xact_ctx *ctx, struct db *db, struct dev *d, struct xact_result *res) {
        struct db_attachment cur = {0};
        int r, found;

        r = xact_complete(ctx, db, d, &res->decision);
        if (r < 0)
                return set_error(res, r, "cannot read user choice", db_strerror(r)), r;
        if (res->decision.action != RULE_ATTACH) {
                /* Claimed by the rules, refused on a closer look (it holds a host mount). */
                res->action = XACT_IGNORE;
                res->outcome = XACT_SKIPPED;
                r = xact_check_order(ctx, db, res);
                if (r == 0)
                        (void)xact_record_ignored(db, d, res->decision.reason);
                return r < 0 ? r : 0;
        }
        str_copy(res->vm, sizeof(res->vm), res->decision.vm->name);
        if (stays_on_host(&res->decision, res)) {
                r = xact_check_order(ctx, db, res);
                return r < 0 ? r : 0;
        }
        r = found = db_attachment_get(db, d->devpath, &cur);
        if (r < 0)
                return set_error(res, r, "cannot read attachment", db_strerror(r)), r;
        if (r > 0 && cur.state == DB_ATTACHED) {
                /* A replayed add (udevadm trigger, a duplicate event), or the VM restarted and lost
                 * the device: the record is not the truth, the VM is. */
                _cleanup_free_ char *err = NULL;
                int has = xact_confirm(ctx, &cur, &err);
                if (has != 0) {
                        res->outcome = XACT_ALREADY;
                        str_copy(res->vm, sizeof(res->vm), cur.vm);
                        str_copy(res->vmm_id, sizeof(res->vmm_id), cur.vmm_id);
                        res->crosvm_port = cur.crosvm_port;
                        if (has < 0) /* could not ask: the record stands, reconcile looks again */
                                snprintf(res->error, sizeof(res->error), "could not confirm with the VM: %s",
                                         err ? err : strerror(-has));
                        db_attachment_clear(&cur);
                        r = xact_check_order(ctx, db, res);
                        return r < 0 ? r : 0;
                }
                r = xact_close(db, &cur, "the VM no longer has it (restarted?)");
                if (r < 0) {
                        db_attachment_clear(&cur);
                        return set_error(res, r, "cannot close the record", db_strerror(r)), r;
                }
        }
        /* A device that had a VM keeps it; one that had none waits for the user to choose. */
        if (found > 0)
                (void)rule_choose_vm(&res->decision, cur.vm);
        db_attachment_clear(&cur);
        if (res->decision.choice_needed)
                return xact_prompt(ctx, db, d, &res->decision, res);
        /* The event's order is checked in the intent's own transaction. */
        return xact_attach(ctx, db, d, &res->decision, res);
}

static int handle_remove(const struct xact_ctx *ctx, struct db *db, struct dev *d, struct xact_result *res) {
        struct db_attachment a = {0};
        struct db_prompt p = {0};
        int r;

        r = db_prompt_get(db, d->devpath, &p);
        if (r > 0)
                r = db_prompt_remove(db, d->devpath); /* gone: nothing to choose for any more */
        db_prompt_clear(&p);
        if (r < 0)
                return set_error(res, r, "cannot forget the prompt", db_strerror(r)), r;
        r = db_attachment_get(db, d->devpath, &a);
        if (r < 0)
                return set_error(res, r, "cannot read attachment", db_strerror(r)), r;
        if (r == 0) {
                res->action = XACT_IGNORE;
                res->outcome = XACT_SKIPPED;
                str_copy(res->decision.reason, sizeof(res->decision.reason),
                         "nothing attached for this device");
                r = xact_check_order(ctx, db, res);
                return r < 0 ? r : 0;
        }
        str_copy(res->decision.reason, sizeof(res->decision.reason), "device removed from the host");
        r = xact_detach(ctx, db, &a, "device removed from the host", res);
        db_attachment_clear(&a);
        return r;
}

/* USB authorization for a device no entry claims (only when usbAuthorization is enabled): hubs
 * and hostAllow matches are authorized for the host; anything else stays as the kernel left it
 * (unauthorized) and is recorded with the reason. */
static int usb_auth_unclaimed(const struct xact_ctx *ctx, struct dev *d, struct xact_result *res) {
        struct rule_auth_decision ad;
        struct db *db = NULL;
        char why[sizeof(res->decision.reason) + sizeof(ad.reason) + 64];
        int r;

        if (!ctx->cfg->usb_auth.enabled || d->kind != DEV_USB)
                return 0;
        (void)dev_find_host_mount(d, ctx->mountinfo, ctx->cfg->general.host_mounts,
                                  ctx->cfg->general.n_host_mounts);
        rule_usb_auth(ctx->cfg, d, RULE_AUTH_ADD, false, &ad);
        if (ad.action != RULE_AUTH_KEEP) {
                r = dev_usb_write_authorized(d->devpath, ad.action == RULE_AUTH_AUTHORIZE);
                if (r < 0) {
                        res->outcome = XACT_FAILED;
                        snprintf(res->error, sizeof(res->error), "cannot %s the USB device (%s): %s",
                                 ad.action == RULE_AUTH_AUTHORIZE ? "authorize" : "deauthorize", ad.reason,
                                 strerror(-r));
                        return r;
                }
                snprintf(why, sizeof(why), "%s; %s for the host (%s)", res->decision.reason,
                         ad.action == RULE_AUTH_AUTHORIZE ? "authorized" : "deauthorized", ad.reason);
                str_copy(res->decision.reason, sizeof(res->decision.reason), why);
                return 0;
        }
        snprintf(why, sizeof(why), "%s; %s", res->decision.reason, ad.reason);
        str_copy(res->decision.reason, sizeof(res->decision.reason), why);
        /* History only: a failure to record changes no decision. */
        if (xact_open_db(ctx, false, &db, res) >= 0)
                (void)xact_record_ignored(db, d, why);
        db_close(db);
        return 0;
}

int event_handle(const struct xact_ctx *ctx, const struct event *ev, struct xact_result *res) {
        struct dev *d = ev->dev;
        bool add = is_add_like(ev->action);
        struct db *db = NULL;
        char boot_id[BOOT_ID_MAX];
        struct db_event_order order = {.devpath = d->devpath, .seqnum = ev->seqnum, .boot_id = boot_id};
        struct xact_ctx ectx = *ctx;
        int r, dlock;

        xact_result_init(res, d->kind);
        /* The event's whole time budget: waits for locks, QEMU's replies and retries fit in it. */
        ectx.deadline = now_ms() + ctx->cfg->general.event_timeout_ms;
        if (!ectx.requested_by)
                ectx.requested_by = ev->seqnum ? "udev" : "vhotplug-helper";
        ctx = &ectx;
        if (ctx->dry_run)
                return handle_dry_run(ctx, ev, add, res);
        if (add) {
                /* The one rule decision of this event. An add no entry claims changes nothing: no
                 * lock, no database (its cost would be paid by every event of every device on the
                 * host); reconcile records the devices left on the host. A stored choice only
                 * picks among an entry's VMs: it cannot change this verdict. */
                rule_decide(ctx->cfg, d, NULL, &res->decision);
                if (res->decision.action != RULE_ATTACH) {
                        res->outcome = XACT_SKIPPED;
                        return usb_auth_unclaimed(ctx, d, res);
                }
                res->action = XACT_ATTACH;
                str_copy(res->vm, sizeof(res->vm), res->decision.vm->name);
                dev_add_details(d);
        } else {
                res->action = XACT_DETACH;
        }

        dlock = lock_take_device(ctx->cfg->general.lock_dir, d->devpath,
                                 (int)MIN((int64_t)LOCK_TIMEOUT_MS, ms_left(ectx.deadline)));
        if (dlock < 0) {
                res->outcome = XACT_FAILED;
                return set_error(res, dlock, "cannot lock device", NULL), dlock;
        }
        r = xact_open_db(ctx, false, &db, res);
        if (r >= 0) {
                boot_id_read(boot_id, sizeof(boot_id));
                ectx.order = &order;
                r = add ? handle_add(&ectx, db, d, res) : handle_remove(&ectx, db, d, res);
        }
        if (r < 0)
                res->outcome = XACT_FAILED;
        db_close(db);
        lock_release(dlock);
        return r;
}

int event_result_to_json(const struct event *ev, const struct xact_result *r, cJSON **ret) {
        _cleanup_cjson_ cJSON *o = cJSON_CreateObject();
        const struct rule_decision *dec = &r->decision;
        const char *kind = dev_kind_name(ev->dev->kind);
        cJSON *dev = NULL;

        if (!o)
                return -ENOMEM;
        cJSON_AddStringToObject(o, "action", xact_action_name(r->action));
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
        cJSON_AddStringToObject(o, "outcome", xact_outcome_name(r->outcome));
        if (r->vmm_id[0])
                cJSON_AddStringToObject(o, "id", r->vmm_id);
        else if (r->crosvm_port >= 0)
                cJSON_AddNumberToObject(o, "port", r->crosvm_port);
        if (r->error[0])
                cJSON_AddStringToObject(o, "error", r->error);
        if (dev_to_json(ev->dev, &dev) < 0)
                return -ENOMEM;
        cJSON_AddItemToObject(o, "device", dev);
        *ret = TAKE_PTR(o);
        return 0;
}
