/* Notifications for one connection (see notify.h). */
#include "notify.h"

#include <errno.h>
#include <libudev.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "cleanup-types.h"
#include "config.h"
#include "db.h"
#include "errmsg.h"
#include "proto.h"
#include "rule.h"
#include "util.h"

#define HISTORY_BATCH 256
#define MONITOR_BATCH 256 /* udev events handled per wake-up before history gets its turn */
#define MAX_ENV 512

struct notify {
        const struct cfg *cfg;
        struct udev *udev;
        char *db_path;
        bool no_strict_perms;
        struct udev_monitor *mon;
        int inotify_fd;
        char db_name[NAME_MAX + 1];
        int64_t last_id;
};

/* The database, opened for one look only: a connection held for as long as a client listens would
 * hold up a repair of the file (it waits until nobody has it open). */
static int open_db(const struct notify *n, struct db **ret) {
        return db_open(n->db_path, n->no_strict_perms ? DB_NO_STRICT_PERMS : 0, ret);
}

void notify_free(struct notify *n) {
        if (!n)
                return;
        if (n->mon)
                udev_monitor_unref(n->mon);
        if (n->inotify_fd >= 0)
                close(n->inotify_fd);
        free(n->db_path);
        free(n);
}

int notify_new(const struct cfg *cfg, const char *db_path, bool no_strict_perms, struct udev *udev,
               struct notify **ret, char **ret_error) {
        const char *path = db_path ? db_path : cfg->general.database;
        _cleanup_free_ char *dir = NULL;
        struct db *db = NULL;
        struct notify *n;
        char *slash;
        int r;

        n = calloc(1, sizeof(*n));
        if (!n)
                return errmsg_set(ret_error, -ENOMEM, "out of memory");
        *n = (struct notify){.cfg = cfg, .udev = udev, .inotify_fd = -1, .no_strict_perms = no_strict_perms};
        dir = strdup(path);
        n->db_path = strdup(path);
        if (!dir || !n->db_path) {
                notify_free(n);
                return errmsg_set(ret_error, -ENOMEM, "out of memory");
        }
        slash = strrchr(dir, '/');
        str_copy(n->db_name, sizeof(n->db_name), slash ? slash + 1 : dir);
        if (slash == dir)
                dir[1] = '\0';
        else if (slash)
                *slash = '\0';
        else
                strcpy(dir, ".");

        r = open_db(n, &db);
        if (r >= 0)
                r = db_history_last_id(db, &n->last_id);
        db_close(db);
        if (r < 0) {
                notify_free(n);
                return errmsg_set(ret_error, r, "cannot read the state database %s: %s", path,
                                  db_strerror(r));
        }
        /* SQLite writes every commit into the -wal file (and, when checkpointing, the file itself):
         * a write to either wakes us. Not the -shm file nor the lock files, nor a close: readers
         * (ourselves included) touch those, and would wake us for nothing, over and over. A new
         * file (a database moved aside and started again) wakes us too. */
        n->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (n->inotify_fd < 0 ||
            inotify_add_watch(n->inotify_fd, dir, IN_MODIFY | IN_CREATE | IN_MOVED_TO) < 0) {
                r = -errno;
                notify_free(n);
                return errmsg_set(ret_error, r, "cannot watch %s: %s", dir, strerror(-r));
        }
        n->mon = udev_monitor_new_from_netlink(udev, "udev");
        if (!n->mon || udev_monitor_filter_add_match_subsystem_devtype(n->mon, "usb", "usb_device") < 0 ||
            udev_monitor_enable_receiving(n->mon) < 0) {
                notify_free(n);
                return errmsg_set(ret_error, -EIO, "cannot listen to udev");
        }
        *ret = n;
        return 0;
}

void notify_fds(const struct notify *n, int ret_fds[2]) {
        ret_fds[0] = udev_monitor_get_fd(n->mon);
        ret_fds[1] = n->inotify_fd;
}

/* {"event":NAME,KEY:DEV(,"vm":VM)} */
static cJSON *event_new(const char *name, const char *key, cJSON *dev, const char *vm) {
        cJSON *e = cJSON_CreateObject();

        if (!e || !dev) {
                cJSON_Delete(e);
                cJSON_Delete(dev);
                return NULL;
        }
        cJSON_AddStringToObject(e, "event", name);
        cJSON_AddItemToObject(e, key, dev);
        if (vm)
                cJSON_AddStringToObject(e, "vm", vm);
        return e;
}

static int emit(notify_emit_fn fn, void *userdata, cJSON *e) {
        return e ? fn(userdata, e) : -ENOMEM;
}

/* usb_select_vm for d, claimed by an entry that asks. */
static int emit_select(struct notify *n, const struct dev *d, const struct cfg_entry *e, notify_emit_fn fn,
                       void *userdata) {
        cJSON *ev = event_new("usb_select_vm", "usb_device", proto_usb_device(d), NULL);
        cJSON *vms = ev ? proto_allowed_vms(e) : NULL;

        if (ev && !vms) {
                cJSON_Delete(ev);
                ev = NULL;
        }
        if (ev)
                cJSON_AddItemToObject(ev, "allowed_vms", vms);
        return emit(fn, userdata, ev);
}

int notify_announce_prompts(struct notify *n, notify_emit_fn fn, void *userdata) {
        struct db_prompt *ps = NULL;
        struct db *db = NULL;
        size_t np = 0;
        int r;

        r = open_db(n, &db);
        if (r >= 0)
                r = db_prompt_list(db, &ps, &np);
        db_close(db);
        for (size_t i = 0; r >= 0 && i < np; i++) {
                _cleanup_dev_ struct dev *d = NULL;
                struct rule_decision dec;

                if (dev_kind_from_name(ps[i].kind) != DEV_USB ||
                    dev_new_from_syspath(n->udev, ps[i].devpath, &d) < 0)
                        continue; /* gone: nothing to choose for */
                rule_decide(n->cfg, d, NULL, &dec);
                if (dec.action != RULE_ATTACH || !dec.choice_needed)
                        continue; /* the configuration changed since */
                r = emit_select(n, d, dec.entry, fn, userdata);
        }
        db_prompt_list_free(ps, np);
        return r;
}

/* The present device of a history row (more than the row knows), or NULL. */
static struct dev *present(struct notify *n, const struct db_history *h) {
        struct dev *d = NULL;

        if (!h->devpath || dev_new_from_syspath(n->udev, h->devpath, &d) < 0)
                return NULL;
        return d;
}

/* The entry a history row names, when it still exists. */
static const struct cfg_entry *entry_of(struct notify *n, const struct db_history *h, enum dev_kind kind) {
        if (!h->rule_section || strcmp(h->rule_section, cfg_section_name(kind)) != 0 || h->rule_entry < 0 ||
            (size_t)h->rule_entry >= n->cfg->n_entries[kind])
                return NULL;
        return &n->cfg->entries[kind][h->rule_entry];
}

static int emit_row(struct notify *n, const struct db_history *h, notify_emit_fn fn, void *userdata) {
        enum dev_kind kind = dev_kind_from_name(h->kind);
        bool attached = strcmp(h->action, "attach") == 0 && strcmp(h->outcome, "attached") == 0;
        /* (a detach that closes an attach which never reached the VM, a pending one, is no news) */
        bool detached =
                strcmp(h->action, "detach") == 0 && strcmp(h->outcome, "detached") == 0 && h->was_attached;
        bool waiting = strcmp(h->action, "prompt") == 0 && strcmp(h->outcome, "waiting") == 0;
        _cleanup_dev_ struct dev *d = NULL;

        if (kind == DEV_USB && (attached || detached)) {
                d = attached ? present(n, h) : NULL;
                return emit(fn, userdata,
                            event_new(attached ? "usb_attached" : "usb_detached", "usb_device",
                                      d ? proto_usb_device(d) : proto_usb_device_from_history(h), h->vm));
        }
        if (kind == DEV_PCI && (attached || detached)) {
                d = present(n, h);
                return emit(fn, userdata,
                            event_new(attached ? "pci_attached" : "pci_detached", "pci_device",
                                      d ? proto_pci_device(d) : proto_pci_device_from_history(h), h->vm));
        }
        if (kind == DEV_USB && waiting) {
                const struct cfg_entry *e = entry_of(n, h, kind);
                d = present(n, h);
                if (!d || !e)
                        return 0; /* gone already, or the configuration changed */
                return emit_select(n, d, e, fn, userdata);
        }
        return 0;
}

/* Emits the history rows written since the last look. */
static int flush_history(struct notify *n, notify_emit_fn fn, void *userdata) {
        for (;;) {
                struct db_history *rows = NULL;
                struct db *db = NULL;
                size_t nr = 0;
                int64_t last = 0;
                int r = open_db(n, &db);

                /* A database started afresh (the old one was corrupt) counts from 1 again. */
                if (r >= 0 && (r = db_history_last_id(db, &last)) >= 0 && last < n->last_id)
                        n->last_id = 0;
                if (r >= 0)
                        r = db_history_after(db, n->last_id, HISTORY_BATCH, &rows, &nr);
                db_close(db);
                if (r < 0)
                        return 0; /* a busy or repaired database: the next change wakes us again */
                for (size_t i = 0; i < nr && r >= 0; i++) {
                        n->last_id = rows[i].id;
                        r = emit_row(n, &rows[i], fn, userdata);
                }
                db_history_list_free(rows, nr);
                if (r < 0)
                        return r;
                if (nr < HISTORY_BATCH)
                        return 0;
        }
}

/* A device from a udev event's properties (on remove sysfs is gone). */
static int dev_of_event(struct notify *n, struct udev_device *u, struct dev **ret) {
        char *env[MAX_ENV + 1];
        struct udev_list_entry *it;
        size_t k = 0;
        int r;

        if (strcmp(udev_device_get_action(u) ?: "", "remove") != 0 &&
            dev_new_from_syspath(n->udev, udev_device_get_devpath(u), ret) == 0)
                return 0;
        udev_list_entry_foreach(it, udev_device_get_properties_list_entry(u)) {
                if (k == MAX_ENV)
                        break;
                if (asprintf(&env[k], "%s=%s", udev_list_entry_get_name(it),
                             udev_list_entry_get_value(it) ?: "") < 0)
                        break;
                k++;
        }
        env[k] = NULL;
        r = dev_new_from_environ(env, ret);
        for (size_t i = 0; i < k; i++)
                free(env[i]);
        return r;
}

static int handle_uevent(struct notify *n, struct udev_device *u, notify_emit_fn fn, void *userdata) {
        const char *action = udev_device_get_action(u);
        _cleanup_dev_ struct dev *d = NULL;
        struct rule_decision dec;
        bool add;

        if (!action || (strcmp(action, "add") != 0 && strcmp(action, "remove") != 0))
                return 0;
        add = strcmp(action, "add") == 0;
        if (dev_of_event(n, u, &d) < 0 || d->kind != DEV_USB)
                return 0;
        /* Only what usb_list would show: claimed devices, never hubs. */
        rule_decide(n->cfg, d, NULL, &dec);
        if (dec.action != RULE_ATTACH)
                return 0;
        return emit(fn, userdata,
                    event_new(add ? "usb_connected" : "usb_disconnected", "usb_device", proto_usb_device(d),
                              NULL));
}

int notify_process(struct notify *n, notify_emit_fn fn, void *userdata) {
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        bool changed = false;
        ssize_t len;
        int r = 0;

        for (int i = 0; i < MONITOR_BATCH && r >= 0; i++) {
                struct udev_device *u = udev_monitor_receive_device(n->mon);
                if (!u)
                        break;
                r = handle_uevent(n, u, fn, userdata);
                udev_device_unref(u);
        }
        while (r >= 0 && (len = read(n->inotify_fd, buf, sizeof(buf))) > 0) {
                for (char *p = buf; p < buf + len;) {
                        const struct inotify_event *ev = (const struct inotify_event *)p;
                        size_t k = strlen(n->db_name);
                        if (ev->len && strncmp(ev->name, n->db_name, k) == 0 &&
                            (ev->name[k] == '\0' || strcmp(ev->name + k, "-wal") == 0))
                                changed = true;
                        p += sizeof(*ev) + ev->len;
                }
        }
        if (r >= 0 && changed)
                r = flush_history(n, fn, userdata);
        return r;
}
