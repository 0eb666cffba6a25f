/* The vhotplug-api server (see api.h): an accept loop on the listening sockets, and one thread per
 * connection that reads request lines, answers each through the dispatch table, and, once the
 * client enabled notifications, also waits on its notification sources (notify.h).
 *
 * A slow or hostile client holds only its own thread: lines are bounded (PROTO_MAX_LINE), a silent
 * client is closed, a client that does not read is closed when a write times out, and the number
 * of connections is bounded. An operation runs to its end even when its client has gone (the
 * reply is simply not delivered). Helpers never wait for the API: they only write the database. */
#include "api.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libudev.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "cleanup-types.h"
#include "coldplug.h"
#include "errmsg.h"
#include "notify.h"
#include "power.h"
#include "util.h"

#define SYSTEMD_FDS_START 3
#define MAX_CLIENT_NAME 48  /* bytes of a request's "client" label kept */
#define STOP_GRACE_MS 30000 /* how long a stop waits for requests under way */
#define HISTORY_DEFAULT 50

struct server {
        const struct api_opts *o;
        pthread_mutex_t lock;
        pthread_cond_t idle;
        int active;           /* connection threads running */
        int wake_rd, wake_wr; /* a thread ended: the accept loop looks at the idle clock */
};

struct api_conn {
        struct server *srv;
        int fd;
        char peer[96];
        uint32_t cid;
        struct udev *udev;
        struct notify *notify; /* once the client enabled notifications */
        bool announce;         /* enable_notifications just answered: send the prompts next */
        bool failed;           /* a write failed: close */
        char *buf;
        size_t len;
};

static int stop_pipe[2] = {-1, -1};

void api_stop(void) {
        if (stop_pipe[1] >= 0) {
                ssize_t n = write(stop_pipe[1], "x", 1);
                (void)n;
        }
}

static void note(const struct server *s, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void note(const struct server *s, int level, const char *fmt, ...) {
        char msg[512], safe[1024];
        va_list ap;

        if (!s->o->note)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        s->o->note(s->o->note_userdata, level, str_escape(msg, safe, sizeof(safe)));
}

/* Hands one device's result to the program's log (a request without a connection: none). */
static void record(const struct api_call *c, const char *devpath, const char *what,
                   const struct xact_result *res) {
        const struct api_opts *o = c->conn ? c->conn->srv->o : NULL;

        if (o && o->record)
                o->record(o->note_userdata, c->req->action, c->ctx->x.requested_by, devpath, what, res);
}

/* ---- the actions ---- */

static int get_disconnected(const struct api_call *c, int *ret) {
        bool v = false;
        int k = proto_get_bool(c->req, "disconnected", &v, c->error);

        if (k < 0)
                return k;
        *ret = k == 0 ? -1 : v;
        return 0;
}

static int act_list(struct api_call *c, enum dev_kind kind) {
        struct ops_list l = {0};
        const char *tag = NULL;
        cJSON *a;
        int disconnected, r;

        r = get_disconnected(c, &disconnected);
        if (r >= 0)
                r = proto_get_string(c->req, "tag", 256, &tag, c->error);
        if (r < 0)
                return r;
        r = ops_list(c->ctx, kind, disconnected, tag, &l, c->error);
        if (r < 0)
                return r;
        a = cJSON_AddArrayToObject(c->reply, kind == DEV_USB ? "usb_devices" : "pci_devices");
        for (size_t i = 0; a && i < l.n; i++) {
                cJSON *it = proto_list_item(&l.items[i]);
                if (!it || !cJSON_AddItemToArray(a, it)) {
                        cJSON_Delete(it);
                        a = NULL;
                }
        }
        ops_list_clear(&l);
        return a ? 0 : errmsg_set(c->error, -ENOMEM, "out of memory");
}

static int act_usb_list(struct api_call *c) {
        return act_list(c, DEV_USB);
}

static int act_pci_list(struct api_call *c) {
        return act_list(c, DEV_PCI);
}

/* "results": what became of each device (beyond the older protocol; its clients ignore it). */
static void add_results(cJSON *reply, const struct ops_report *rep) {
        cJSON *a = cJSON_AddArrayToObject(reply, "results");

        for (size_t i = 0; a && i < rep->n; i++) {
                const struct ops_result *it = &rep->items[i];
                cJSON *o = cJSON_CreateObject();
                if (!o)
                        return;
                cJSON_AddStringToObject(o, "device", it->what);
                cJSON_AddStringToObject(o, it->res.decision.kind == DEV_PCI ? "address" : "device_node",
                                        it->devnode);
                if (it->res.vm[0])
                        cJSON_AddStringToObject(o, "vm", it->res.vm);
                else
                        cJSON_AddNullToObject(o, "vm");
                cJSON_AddStringToObject(o, "outcome", xact_outcome_name(it->res.outcome));
                if (it->res.error[0])
                        cJSON_AddStringToObject(o, "error", it->res.error);
                cJSON_AddItemToArray(a, o);
        }
}

static int act_attach_detach(struct api_call *c, enum dev_kind kind, bool attach) {
        struct ops_selector sel;
        struct ops_report rep = {0};
        const char *vm = NULL;
        int r;

        r = kind == DEV_USB ? proto_usb_selector(c->req, &sel, c->error)
                            : proto_pci_selector(c->req, &sel, c->error);
        if (r >= 0 && attach)
                r = proto_get_string(c->req, "vm", CFG_MAX_VM_NAME, &vm, c->error);
        if (r < 0)
                return r;
        r = attach ? ops_attach(c->ctx, &sel, vm, &rep, c->error) : ops_detach(c->ctx, &sel, &rep, c->error);
        if (r >= 0)
                add_results(c->reply, &rep);
        for (size_t i = 0; i < rep.n; i++)
                record(c, rep.items[i].devpath, rep.items[i].what, &rep.items[i].res);
        ops_report_clear(&rep);
        return r;
}

static int act_usb_attach(struct api_call *c) {
        return act_attach_detach(c, DEV_USB, true);
}

static int act_usb_detach(struct api_call *c) {
        return act_attach_detach(c, DEV_USB, false);
}

static int act_pci_attach(struct api_call *c) {
        return act_attach_detach(c, DEV_PCI, true);
}

static int act_pci_detach(struct api_call *c) {
        return act_attach_detach(c, DEV_PCI, false);
}

/* usb_suspend, usb_resume, pci_suspend, pci_resume {vm?}: lib/power.c. The reply's "results" say
 * what became of each device; a device that failed fails the request (after the others were
 * done), so that a power script can act on it. */
static int act_power(struct api_call *c, enum dev_kind kind, bool resume) {
        struct power_result res = {0};
        const char *vm = NULL;
        char summary[1024];
        size_t len = 0;
        cJSON *a;
        int r;

        r = proto_get_string(c->req, "vm", CFG_MAX_VM_NAME, &vm, c->error);
        if (r < 0)
                return r;
        r = resume ? power_resume(&c->ctx->x, c->ctx->udev, kind, vm, &res, c->error)
                   : power_suspend(&c->ctx->x, c->ctx->udev, kind, vm, c->ctx->x.requested_by, &res,
                                   c->error);
        if (r < 0)
                return r;
        a = cJSON_AddArrayToObject(c->reply, "results");
        summary[0] = '\0';
        for (size_t i = 0; i < res.n; i++) {
                const struct power_item *it = &res.items[i];
                struct xact_result x;
                cJSON *o;

                xact_result_init(&x, kind);
                x.action = it->action;
                x.outcome = it->outcome;
                x.crosvm_port = it->port;
                str_copy(x.vm, sizeof(x.vm), it->vm);
                str_copy(x.vmm_id, sizeof(x.vmm_id), it->id);
                str_copy(x.error, sizeof(x.error), it->error);
                str_copy(x.decision.reason, sizeof(x.decision.reason), it->note);
                record(c, it->devpath, it->what, &x);
                o = cJSON_CreateObject();
                if (!o || !a)
                        break;
                cJSON_AddStringToObject(o, "device", it->what);
                cJSON_AddStringToObject(o, "devpath", it->devpath);
                if (it->vm[0])
                        cJSON_AddStringToObject(o, "vm", it->vm);
                else
                        cJSON_AddNullToObject(o, "vm");
                cJSON_AddStringToObject(o, "outcome", xact_outcome_name(it->outcome));
                if (it->note[0])
                        cJSON_AddStringToObject(o, "note", it->note);
                if (it->error[0])
                        cJSON_AddStringToObject(o, "error", it->error);
                cJSON_AddItemToArray(a, o);
                if (it->outcome == XACT_FAILED && len < sizeof(summary) - 1)
                        len += (size_t)snprintf(summary + len, sizeof(summary) - len, "%s%s: %s",
                                                len ? "; " : "", it->what, it->error);
        }
        if (res.n_failed > 0)
                r = errmsg_set(c->error, -EREMOTEIO, "%zu of %zu devices failed to %s: %s", res.n_failed,
                               res.n, resume ? "resume" : "suspend", summary);
        power_result_clear(&res);
        return r;
}

static int act_usb_suspend(struct api_call *c) {
        return act_power(c, DEV_USB, false);
}

static int act_usb_resume(struct api_call *c) {
        return act_power(c, DEV_USB, true);
}

static int act_pci_suspend(struct api_call *c) {
        return act_power(c, DEV_PCI, false);
}

static int act_pci_resume(struct api_call *c) {
        return act_power(c, DEV_PCI, true);
}

/* vmm_args {vm, qemu_bus_prefix?, qemu_bus_start_index?}: lib/coldplug.c. null means absent (the
 * older daemon failed a null start index; its client always sent the key). */
static int act_vmm_args(struct api_call *c) {
        struct cold_args args = {0};
        const char *vm = NULL, *prefix = NULL;
        uint32_t index = 0;
        cJSON *a, *w;
        int r;

        r = proto_get_string(c->req, "vm", CFG_MAX_VM_NAME, &vm, c->error);
        if (r == 0)
                r = errmsg_set(c->error, -EINVAL, "VM name is required");
        if (r >= 0)
                r = proto_get_string(c->req, "qemu_bus_prefix", COLD_BUS_PREFIX_MAX, &prefix, c->error);
        if (r >= 0)
                r = proto_get_uint_min(c->req, "qemu_bus_start_index", 0, COLD_BUS_INDEX_MAX, &index,
                                       c->error);
        if (r < 0)
                return r;
        r = cold_vmm_args(&c->ctx->x, c->ctx->udev, vm, prefix, (int)index, &args, c->error);
        if (r < 0)
                return r;
        a = cJSON_AddArrayToObject(c->reply, "vmm_args");
        for (size_t i = 0; a && i < args.argc; i++)
                cJSON_AddItemToArray(a, cJSON_CreateString(args.argv[i]));
        if (args.n_warnings > 0) {
                w = cJSON_AddArrayToObject(c->reply, "warnings");
                for (size_t i = 0; w && i < args.n_warnings; i++)
                        cJSON_AddItemToArray(w, cJSON_CreateString(args.warnings[i]));
        }
        cold_args_clear(&args);
        return a ? 0 : errmsg_set(c->error, -ENOMEM, "out of memory");
}

static int act_enable_notifications(struct api_call *c) {
        struct api_conn *conn = c->conn;
        int r;

        if (!conn)
                return errmsg_set(c->error, -EINVAL, "notifications need a connection");
        if (!conn->notify) {
                r = notify_new(c->ctx->x.cfg, c->ctx->x.db_path, c->ctx->x.no_strict_perms, conn->udev,
                               &conn->notify, c->error);
                if (r < 0)
                        return r;
        }
        conn->announce = true;
        return 0;
}

static cJSON *device_json(const struct dev *d) {
        cJSON *j = NULL;

        if (d->kind == DEV_USB)
                return proto_usb_device(d);
        if (d->kind == DEV_PCI)
                return proto_pci_device(d);
        return dev_to_json(d, &j) < 0 ? NULL : j;
}

static void add_rule(cJSON *o, const struct rule_decision *dec) {
        char rule[96];

        if (dec->entry_index < 0) {
                cJSON_AddNullToObject(o, "rule");
                return;
        }
        if (dec->rule_index >= 0)
                snprintf(rule, sizeof(rule), "%s[%d].allow[%d]", cfg_section_name(dec->kind),
                         dec->entry_index, dec->rule_index);
        else
                snprintf(rule, sizeof(rule), "%s[%d]", cfg_section_name(dec->kind), dec->entry_index);
        cJSON_AddStringToObject(o, "rule", rule);
        if (dec->rule_description)
                cJSON_AddStringToObject(o, "description", dec->rule_description);
        else
                cJSON_AddNullToObject(o, "description");
}

static int act_why(struct api_call *c) {
        struct ops_why w;
        const char *spec = NULL;
        uint32_t limit = 10;
        cJSON *dec, *h;
        int r;

        r = proto_get_string(c->req, "device", 4096, &spec, c->error);
        if (r == 0)
                r = errmsg_set(c->error, -EINVAL, "\"device\" is required");
        if (r >= 0)
                r = proto_get_uint(c->req, "limit", DB_HISTORY_MAX_ROWS, &limit, c->error);
        if (r < 0)
                return r;
        r = ops_why(c->ctx, spec, limit, &w, c->error);
        if (r < 0)
                return r;
        cJSON_AddStringToObject(c->reply, "kind", dev_kind_name(w.d.dev->kind));
        cJSON_AddStringToObject(c->reply, "devpath", w.d.dev->devpath);
        cJSON_AddItemToObject(c->reply, "device", device_json(w.d.dev));
        dec = cJSON_AddObjectToObject(c->reply, "decision");
        if (dec) {
                cJSON_AddStringToObject(dec, "action", w.d.dec.action == RULE_ATTACH ? "attach" : "ignore");
                if (w.d.dec.action == RULE_ATTACH && w.d.dec.vm)
                        cJSON_AddStringToObject(dec, "vm", w.d.dec.vm->name);
                else
                        cJSON_AddNullToObject(dec, "vm");
                add_rule(dec, &w.d.dec);
                cJSON_AddStringToObject(dec, "reason", w.d.dec.reason);
                cJSON_AddBoolToObject(dec, "asks_for_vm", w.d.dec.entry && w.d.dec.entry->ask_vm);
        }
        if (w.d.dec.action == RULE_ATTACH) {
                cJSON_AddItemToObject(c->reply, "allowed_vms", proto_allowed_vms(w.d.dec.entry));
                cJSON_AddStringToObject(c->reply, "state", ops_state_name(w.d.state));
        } else {
                cJSON_AddNullToObject(c->reply, "allowed_vms");
                cJSON_AddStringToObject(c->reply, "state", "not-claimed");
        }
        if (w.d.vm[0])
                cJSON_AddStringToObject(c->reply, "vm", w.d.vm);
        else
                cJSON_AddNullToObject(c->reply, "vm");
        if (w.has_choice) {
                cJSON *o = cJSON_AddObjectToObject(c->reply, "choice");
                if (o) {
                        if (w.choice.vm)
                                cJSON_AddStringToObject(o, "vm", w.choice.vm);
                        else
                                cJSON_AddNullToObject(o, "vm");
                        cJSON_AddBoolToObject(o, "keep_detached", w.choice.keep_detached);
                        if (w.choice.set_by)
                                cJSON_AddStringToObject(o, "set_by", w.choice.set_by);
                        if (w.choice.updated_at)
                                cJSON_AddStringToObject(o, "updated_at", w.choice.updated_at);
                }
        } else {
                cJSON_AddNullToObject(c->reply, "choice");
        }
        if (w.has_prompt) {
                cJSON *o = cJSON_AddObjectToObject(c->reply, "prompt");
                if (o) {
                        cJSON_AddItemToObject(o, "allowed_vms", cJSON_Parse(w.prompt.allowed_vms));
                        if (w.prompt.since)
                                cJSON_AddStringToObject(o, "since", w.prompt.since);
                }
        } else {
                cJSON_AddNullToObject(c->reply, "prompt");
        }
        if (w.has_record) {
                cJSON *o = cJSON_AddObjectToObject(c->reply, "record");
                if (o) {
                        cJSON_AddStringToObject(o, "vm", w.record.vm);
                        cJSON_AddStringToObject(o, "state", db_state_name(w.record.state));
                        if (w.record.vmm_id && *w.record.vmm_id)
                                cJSON_AddStringToObject(o, "id", w.record.vmm_id);
                        if (w.record.crosvm_port >= 0)
                                cJSON_AddNumberToObject(o, "port", w.record.crosvm_port);
                        if (w.record.error)
                                cJSON_AddStringToObject(o, "error", w.record.error);
                }
        } else {
                cJSON_AddNullToObject(c->reply, "record");
        }
        h = cJSON_AddArrayToObject(c->reply, "history");
        for (size_t i = 0; h && i < w.n_history; i++)
                cJSON_AddItemToArray(h, proto_history_row(&w.history[i]));
        ops_why_clear(&w);
        return 0;
}

static int act_history(struct api_call *c) {
        struct db_history *rows = NULL;
        const char *spec = NULL;
        uint32_t limit = HISTORY_DEFAULT;
        size_t n = 0;
        cJSON *a;
        int r;

        r = proto_get_string(c->req, "device", 4096, &spec, c->error);
        if (r >= 0)
                r = proto_get_uint(c->req, "limit", DB_HISTORY_MAX_ROWS, &limit, c->error);
        if (r >= 0)
                r = ops_history(c->ctx, spec, limit, &rows, &n, c->error);
        if (r < 0)
                return r;
        a = cJSON_AddArrayToObject(c->reply, "history");
        for (size_t i = 0; a && i < n; i++)
                cJSON_AddItemToArray(a, proto_history_row(&rows[i]));
        db_history_list_free(rows, n);
        return 0;
}

/* A record as status shows it. */
static cJSON *record_json(const struct db_attachment *a) {
        cJSON *o = cJSON_CreateObject();
        char ids[16];

        if (!o)
                return NULL;
        cJSON_AddStringToObject(o, "kind", a->kind);
        cJSON_AddStringToObject(o, "devpath", a->devpath);
        snprintf(ids, sizeof(ids), "%04x:%04x", a->vendor_id, a->product_id);
        cJSON_AddStringToObject(o, "ids", ids);
        if (a->serial)
                cJSON_AddStringToObject(o, "serial", a->serial);
        if (a->devnode)
                cJSON_AddStringToObject(o, "device_node", a->devnode);
        if (a->pci_address)
                cJSON_AddStringToObject(o, "pci_address", a->pci_address);
        cJSON_AddStringToObject(o, "state", db_state_name(a->state));
        if (a->error)
                cJSON_AddStringToObject(o, "error", a->error);
        return o;
}

/* The record that the VM's device v is, if any (QEMU: by id; crosvm: by port). */
static const struct db_attachment *record_of(const struct ops_vm_status *v, const struct vmm_device *d,
                                             bool *used) {
        for (size_t i = 0; i < v->n_rows; i++) {
                const struct db_attachment *a = &v->rows[i];
                if (used[i])
                        continue;
                if ((v->vm->type == VMM_QEMU && d->id[0] && a->vmm_id && strcmp(a->vmm_id, d->id) == 0) ||
                    (v->vm->type == VMM_CROSVM && d->port >= 0 && a->crosvm_port == d->port)) {
                        used[i] = true;
                        return a;
                }
        }
        return NULL;
}

static cJSON *vm_status_json(const struct ops_vm_status *v) {
        cJSON *o = cJSON_CreateObject(), *devs, *missing;
        _cleanup_free_ bool *used = calloc(v->n_rows + 1, sizeof(bool));

        if (!o || !used) {
                cJSON_Delete(o);
                return NULL;
        }
        cJSON_AddStringToObject(o, "name", v->vm->name);
        cJSON_AddStringToObject(o, "type", cfg_vm_type_name(v->vm->type));
        cJSON_AddBoolToObject(o, "running", v->running);
        if (v->error[0])
                cJSON_AddStringToObject(o, "error", v->error);
        else
                cJSON_AddNullToObject(o, "error");
        devs = cJSON_AddArrayToObject(o, "devices");
        for (size_t i = 0; devs && i < v->list.n; i++) {
                const struct vmm_device *d = &v->list.items[i];
                const struct db_attachment *a;
                cJSON *j;

                if (d->kind == DEV_UNKNOWN && v->vm->type == VMM_QEMU)
                        continue; /* controllers, ports */
                j = cJSON_CreateObject();
                if (!j)
                        break;
                if (d->id[0])
                        cJSON_AddStringToObject(j, "id", d->id);
                cJSON_AddStringToObject(j, "kind",
                                        dev_kind_name(d->kind) ? dev_kind_name(d->kind) : "other");
                cJSON_AddStringToObject(j, "driver", d->driver);
                cJSON_AddBoolToObject(j, "ours", d->ours);
                if (d->port >= 0)
                        cJSON_AddNumberToObject(j, "port", d->port);
                if (d->hostbus > 0) {
                        cJSON_AddNumberToObject(j, "hostbus", d->hostbus);
                        cJSON_AddNumberToObject(j, "hostaddr", d->hostaddr);
                }
                if (d->host[0])
                        cJSON_AddStringToObject(j, "host", d->host);
                if (d->evdev[0])
                        cJSON_AddStringToObject(j, "evdev", d->evdev);
                a = record_of(v, d, used);
                if (a)
                        cJSON_AddItemToObject(j, "record", record_json(a));
                else
                        cJSON_AddNullToObject(j, "record");
                cJSON_AddItemToArray(devs, j);
        }
        /* What the records say this VM has but it does not: never shown as attached. */
        missing = cJSON_AddArrayToObject(o, "recorded_not_in_vm");
        for (size_t i = 0; missing && i < v->n_rows; i++)
                if (!used[i])
                        cJSON_AddItemToArray(missing, record_json(&v->rows[i]));
        return o;
}

static int act_status(struct api_call *c) {
        struct ops_status s = {0};
        const char *vm = NULL;
        cJSON *a;
        int r;

        r = proto_get_string(c->req, "vm", CFG_MAX_VM_NAME, &vm, c->error);
        if (r >= 0)
                r = ops_status(c->ctx, vm, &s, c->error);
        if (r < 0)
                return r;
        a = cJSON_AddArrayToObject(c->reply, "vms");
        for (size_t i = 0; a && i < s.n; i++)
                cJSON_AddItemToArray(a, vm_status_json(&s.vms[i]));
        ops_status_clear(&s);
        return 0;
}

/* The dispatch table. Adding an action is one line here (and its handler above). */
static const struct {
        const char *name;
        api_handler fn; /* NULL: known, not implemented yet */
} actions[] = {
        {"enable_notifications", act_enable_notifications},
        {"usb_list", act_usb_list},
        {"usb_attach", act_usb_attach},
        {"usb_detach", act_usb_detach},
        {"usb_suspend", act_usb_suspend},
        {"usb_resume", act_usb_resume},
        {"pci_list", act_pci_list},
        {"pci_attach", act_pci_attach},
        {"pci_detach", act_pci_detach},
        {"pci_suspend", act_pci_suspend},
        {"pci_resume", act_pci_resume},
        {"vmm_args", act_vmm_args},
        /* beyond the older protocol: for vhotplugctl */
        {"status", act_status},
        {"why", act_why},
        {"history", act_history},
};

char *api_handle_line(const struct ops_ctx *ctx, struct api_conn *conn, const char *line, size_t len) {
        struct proto_request req;
        _cleanup_free_ char *err = NULL;
        _cleanup_cjson_ cJSON *reply = NULL;
        char safe[160];
        struct api_call call;
        size_t i;
        int r;

        r = proto_parse(line, len, &req, &err);
        if (r < 0)
                return proto_failed_line(err ? err : "invalid request");
        for (i = 0; i < ELEMENTSOF(actions); i++)
                if (strcmp(actions[i].name, req.action) == 0)
                        break;
        if (i == ELEMENTSOF(actions)) {
                errmsg_set(&err, -EINVAL, "Unknown message: %s", str_escape(req.action, safe, 80));
                proto_request_clear(&req);
                return proto_failed_line(err);
        }
        if (!actions[i].fn) {
                errmsg_set(&err, -EOPNOTSUPP, "%s is not implemented yet", actions[i].name);
                proto_request_clear(&req);
                return proto_failed_line(err);
        }
        reply = proto_ok();
        if (!reply) {
                proto_request_clear(&req);
                return proto_failed_line("out of memory");
        }
        call = (struct api_call){.ctx = ctx, .req = &req, .reply = reply, .error = &err, .conn = conn};
        r = actions[i].fn(&call);
        proto_request_clear(&req);
        if (r < 0)
                return proto_failed_line(err ? err : strerror(-r));
        return proto_line(reply);
}

/* ---- listening sockets ---- */

bool api_cid_allowed(const struct cfg_api *api, uint32_t cid) {
        if (api->n_allowed_cids == 0)
                return true;
        for (size_t i = 0; i < api->n_allowed_cids; i++)
                if (api->allowed_cids[i] == cid)
                        return true;
        return false;
}

int api_listeners_from_systemd(struct api_listener **ret, size_t *ret_n, char **ret_error) {
        const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
        struct api_listener *l;
        uint64_t p, n;

        *ret = NULL;
        *ret_n = 0;
        if (!pid || !fds || parse_u64(pid, INT32_MAX, &p) < 0 || (pid_t)p != getpid())
                return 0;
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
        if (parse_u64(fds, 64, &n) < 0 || n == 0)
                return errmsg_set(ret_error, -EINVAL, "LISTEN_FDS=%.16s: expected 1 to 64 sockets", fds);
        l = calloc(n, sizeof(*l));
        if (!l)
                return errmsg_set(ret_error, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                int fd = SYSTEMD_FDS_START + (int)i, type = 0, listening = 0;
                socklen_t len = sizeof(int);

                if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM ||
                    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening) {
                        free(l);
                        return errmsg_set(
                                ret_error, -EINVAL,
                                "socket %d from systemd is not a listening stream socket (Accept=no, "
                                "ListenStream=)",
                                fd);
                }
                (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
                l[i].fd = fd;
                l[i].family = addr_family_of(fd);
                snprintf(l[i].name, sizeof(l[i].name), "systemd socket %d", fd);
        }
        *ret = l;
        *ret_n = n;
        return (int)n;
}

int api_listener_open(const char *spec, const struct cfg_api *api, struct api_listener *ret,
                      char **ret_warning, char **ret_error) {
        struct addr a;
        uid_t uid = (uid_t)-1;
        gid_t gid = (gid_t)-1;
        int fd, r;

        r = addr_parse(spec, true, &a, ret_error);
        if (r < 0)
                return r;
        if (a.family == AF_UNIX && api) {
                /* Names from a configuration made elsewhere may not exist here: warn, go on. */
                struct passwd *pw = api->unix_user ? getpwnam(api->unix_user) : NULL;
                struct group *gr = api->unix_group ? getgrnam(api->unix_group) : NULL;
                if (pw)
                        uid = pw->pw_uid;
                if (gr)
                        gid = gr->gr_gid;
                if ((api->unix_user && !pw) || (api->unix_group && !gr))
                        errmsg_set(ret_warning, 0, "%s: no %s '%.64s' here: the socket keeps owner root",
                                   spec, api->unix_user && !pw ? "user" : "group",
                                   api->unix_user && !pw ? api->unix_user : api->unix_group);
        }
        r = addr_listen(&a, a.family == AF_UNIX && api ? api->unix_mode : -1, uid, gid, &fd, ret_error);
        if (r < 0)
                return r;
        *ret = (struct api_listener){.fd = fd, .family = a.family};
        str_copy(ret->name, sizeof(ret->name), spec);
        return 0;
}

int api_specs_from_config(const struct cfg_api *api, char ***ret) {
        char **v = calloc(4, sizeof(char *));
        size_t n = 0;
        int r = 0;

        if (!v)
                return -ENOMEM;
        if (api->enabled && (api->transports & CFG_API_UNIX))
                r |= asprintf(&v[n++], "unix:%s", api->unix_socket) < 0;
        if (api->enabled && (api->transports & CFG_API_VSOCK))
                r |= asprintf(&v[n++], "vsock:%u", api->port) < 0;
        if (api->enabled && (api->transports & CFG_API_TCP))
                r |= asprintf(&v[n++], strchr(api->host, ':') ? "tcp:[%s]:%u" : "tcp:%s:%u", api->host,
                              api->port) < 0;
        if (r) {
                strv_free(v);
                return -ENOMEM;
        }
        *ret = v;
        return 0;
}

/* ---- connections ---- */

static int send_all(struct api_conn *c, const char *s, size_t len) {
        while (len > 0) {
                ssize_t n = send(c->fd, s, len, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        c->failed = true;
                        return -errno;
                }
                s += n;
                len -= (size_t)n;
        }
        return 0;
}

static int send_line(struct api_conn *c, char *line) {
        int r = line ? send_all(c, line, strlen(line)) : -ENOMEM;

        free(line);
        return r;
}

static int emit_event(void *userdata, cJSON *event) {
        struct api_conn *c = userdata;
        int r = send_line(c, proto_line(event));

        cJSON_Delete(event);
        return r;
}

static void handle(struct api_conn *c, const char *line, size_t len) {
        char requested_by[DB_REQUESTER_MAX];
        struct ops_ctx ctx = {
                .x =
                        {
                                .cfg = c->srv->o->cfg,
                                .udev = c->udev,
                                .db_path = c->srv->o->db_path,
                                .mountinfo = c->srv->o->mountinfo,
                                .no_strict_perms = c->srv->o->no_strict_perms,
                                .requested_by = requested_by,
                        },
                .udev = c->udev,
        };
        char *reply;

        snprintf(requested_by, sizeof(requested_by), "api %s", c->peer);
        reply = api_handle_line(&ctx, c, line, len);
        (void)send_line(c, reply);
        if (c->announce && !c->failed) {
                c->announce = false;
                (void)notify_announce_prompts(c->notify, emit_event, c);
        }
}

/* Answers every complete line in the buffer; keeps a partial one. Returns false to close. */
static bool handle_lines(struct api_conn *c) {
        size_t start = 0;
        char *nl;

        while (!c->failed && (nl = memchr(c->buf + start, '\n', c->len - start))) {
                size_t n = (size_t)(nl - (c->buf + start));
                handle(c, c->buf + start, n);
                start += n + 1;
        }
        memmove(c->buf, c->buf + start, c->len - start);
        c->len -= start;
        if (c->len > PROTO_MAX_LINE) {
                char msg[96];
                snprintf(msg, sizeof(msg), "request line longer than %d bytes: closing the connection",
                         PROTO_MAX_LINE);
                (void)send_line(c, proto_failed_line(msg));
                note(c->srv, LOG_WARNING, "%s: request line longer than %d bytes: closed", c->peer,
                     PROTO_MAX_LINE);
                return false;
        }
        return !c->failed;
}

static void serve_conn(struct api_conn *c) {
        const struct api_opts *o = c->srv->o;
        int timeout = o->client_timeout_ms > 0 ? o->client_timeout_ms : API_CLIENT_TIMEOUT_MS;
        int64_t deadline = now_ms() + timeout;

        for (;;) {
                struct pollfd p[4] = {
                        {.fd = c->fd, .events = POLLIN},
                        {.fd = stop_pipe[0], .events = POLLIN},
                        {.fd = -1},
                        {.fd = -1},
                };
                int fds[2], r;

                if (c->notify) {
                        notify_fds(c->notify, fds);
                        p[2] = (struct pollfd){.fd = fds[0], .events = POLLIN};
                        p[3] = (struct pollfd){.fd = fds[1], .events = POLLIN};
                }
                /* A listener may be silent for ever; any other client must say something. */
                r = poll(p, 4, c->notify ? -1 : (int)ms_left(deadline));
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0 || (p[1].revents & POLLIN))
                        return;
                if (r == 0) {
                        char msg[96];
                        snprintf(msg, sizeof(msg), "no request for %d s: closing the connection",
                                 timeout / 1000);
                        (void)send_line(c, proto_failed_line(msg));
                        return;
                }
                if ((p[2].revents | p[3].revents) & POLLIN) {
                        if (notify_process(c->notify, emit_event, c) < 0 || c->failed)
                                return;
                }
                if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                        ssize_t n = recv(c->fd, c->buf + c->len, PROTO_MAX_LINE + 2 - c->len, 0);
                        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                                continue;
                        if (n <= 0) {
                                /* The end: a last request without its newline is still answered. */
                                if (n == 0 && c->len > 0 && c->len <= PROTO_MAX_LINE)
                                        handle(c, c->buf, c->len);
                                return;
                        }
                        c->len += (size_t)n;
                        deadline = now_ms() + timeout;
                        if (!handle_lines(c))
                                return;
                }
        }
}

static void *conn_main(void *arg) {
        struct api_conn *c = arg;
        struct server *s = c->srv;
        sigset_t all;

        /* Signals are the main thread's (stop); lock.c's per-thread timer unblocks SIGALRM itself. */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, NULL);
        c->udev = udev_new();
        c->buf = malloc(PROTO_MAX_LINE + 2);
        if (c->udev && c->buf)
                serve_conn(c);
        notify_free(c->notify);
        udev_unref(c->udev);
        free(c->buf);
        close(c->fd);
        free(c);

        pthread_mutex_lock(&s->lock);
        s->active--;
        pthread_cond_broadcast(&s->idle);
        pthread_mutex_unlock(&s->lock);
        if (write(s->wake_wr, "x", 1) < 0) {
                /* the accept loop looks at the clock on its next wake-up anyway */
        }
        return NULL;
}

static void refuse(struct server *s, int fd, const char *why) {
        char *line = proto_failed_line(why);
        if (line)
                (void)send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
        free(line);
        close(fd);
        note(s, LOG_WARNING, "%s", why);
}

static void accept_one(struct server *s, const struct api_listener *l) {
        const struct api_opts *o = s->o;
        int max = o->max_clients > 0 ? o->max_clients : API_MAX_CLIENTS;
        struct timeval tv = {0};
        int send_ms = o->send_timeout_ms > 0 ? o->send_timeout_ms : API_SEND_TIMEOUT_MS;
        struct api_conn *c;
        pthread_attr_t attr;
        pthread_t t;
        char peer[96];
        uint32_t cid;
        int fd, r;

        fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
                if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS) {
                        /* The connection stays queued: try again shortly instead of spinning. */
                        note(s, LOG_WARNING, "cannot accept a connection: %s", strerror(errno));
                        sleep_ms(100);
                }
                return;
        }
        addr_peer(fd, peer, sizeof(peer), &cid);
        /* Before a byte is read: a vsock peer must be an allowed VM. */
        if (l->family == AF_VSOCK && !api_cid_allowed(&o->cfg->general.api, cid)) {
                close(fd);
                note(s, LOG_WARNING, "rejected vsock client with CID %u (not in general.api.allowedCids)",
                     cid);
                return;
        }
        pthread_mutex_lock(&s->lock);
        r = s->active < max ? ++s->active : -1;
        pthread_mutex_unlock(&s->lock);
        if (r < 0) {
                char msg[96];
                snprintf(msg, sizeof(msg), "too many clients (%d): try again later", max);
                refuse(s, fd, msg);
                return;
        }
        tv.tv_sec = send_ms / 1000;
        tv.tv_usec = (send_ms % 1000) * 1000;
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        c = calloc(1, sizeof(*c));
        if (c) {
                *c = (struct api_conn){.srv = s, .fd = fd, .cid = cid};
                str_copy(c->peer, sizeof(c->peer), peer);
        }
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 1024 * 1024);
        r = c ? pthread_create(&t, &attr, conn_main, c) : ENOMEM;
        pthread_attr_destroy(&attr);
        if (r != 0) {
                free(c);
                pthread_mutex_lock(&s->lock);
                s->active--;
                pthread_mutex_unlock(&s->lock);
                refuse(s, fd, "cannot serve this connection (out of resources)");
        }
}

static void drain(int fd) {
        char buf[64];
        while (read(fd, buf, sizeof(buf)) > 0) {
        }
}

int api_serve(const struct api_opts *o, char **ret_error) {
        struct server s = {.o = o, .wake_rd = -1, .wake_wr = -1};
        _cleanup_free_ struct pollfd *p = calloc(o->n_listeners + 2, sizeof(*p));
        int64_t idle_since = now_ms();
        int wake[2], r = 0;

        if (!p)
                return errmsg_set(ret_error, -ENOMEM, "out of memory");
        if (o->n_listeners == 0)
                return errmsg_set(ret_error, -EINVAL, "no socket to listen on");
        if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(wake, O_CLOEXEC | O_NONBLOCK) < 0)
                return errmsg_set(ret_error, -errno, "cannot create a pipe: %s", strerror(errno));
        s.wake_rd = wake[0];
        s.wake_wr = wake[1];
        pthread_mutex_init(&s.lock, NULL);
        pthread_cond_init(&s.idle, NULL);
        signal(SIGPIPE, SIG_IGN);

        for (size_t i = 0; i < o->n_listeners; i++)
                p[i] = (struct pollfd){.fd = o->listeners[i].fd, .events = POLLIN};
        p[o->n_listeners] = (struct pollfd){.fd = stop_pipe[0], .events = POLLIN};
        p[o->n_listeners + 1] = (struct pollfd){.fd = s.wake_rd, .events = POLLIN};
        for (;;) {
                int active, timeout = -1, n;

                pthread_mutex_lock(&s.lock);
                active = s.active;
                pthread_mutex_unlock(&s.lock);
                if (active > 0)
                        idle_since = now_ms();
                else if (o->idle_exit_ms > 0) {
                        int64_t left = ms_left(idle_since + o->idle_exit_ms);
                        if (left == 0)
                                break; /* idle: systemd starts us again on the next connection */
                        timeout = (int)left;
                }
                n = poll(p, o->n_listeners + 2, timeout);
                if (n < 0 && errno != EINTR) {
                        r = errmsg_set(ret_error, -errno, "poll: %s", strerror(errno));
                        break;
                }
                if (n <= 0)
                        continue;
                if (p[o->n_listeners].revents & POLLIN)
                        break;
                if (p[o->n_listeners + 1].revents & POLLIN) {
                        drain(s.wake_rd);
                        idle_since = now_ms();
                }
                for (size_t i = 0; i < o->n_listeners; i++)
                        if (p[i].revents & POLLIN)
                                accept_one(&s, &o->listeners[i]);
        }

        /* Requests under way finish (their threads see the stop pipe when they next wait). */
        api_stop();
        pthread_mutex_lock(&s.lock);
        for (int64_t deadline = now_ms() + STOP_GRACE_MS; s.active > 0 && ms_left(deadline) > 0;) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += 1;
                pthread_cond_timedwait(&s.idle, &s.lock, &ts);
        }
        if (r >= 0 && s.active > 0)
                r = 1;
        pthread_mutex_unlock(&s.lock);
        /* Threads still running (a very slow VM) keep the pipes: they end with the process. */
        return r;
}
