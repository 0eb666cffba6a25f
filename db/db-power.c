/* The statements of the control plane's power and cold-plug memory: attachments given on a VM's
 * command line (attachments.cold_plugged), and devices a suspend took out of their VM (the
 * suspended table, whose rows end with the boot they were made in). Plumbing: db-stmt.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "cleanup.h"
#include "db-internal.h"
#include "util.h"

#define OPEN_STATES "('pending', 'attaching', 'attached', 'detaching')"

static const char q_set_cold_plugged[] =
        "UPDATE attachments SET cold_plugged = 1 WHERE id = ?1 AND state IN " OPEN_STATES;

/* A suspension of an earlier boot means nothing any more: the device was never detached by
 * this boot's suspend (written so that a comparison, not a function, decides). */
static const char q_suspended_forget_boots[] = "DELETE FROM suspended WHERE boot_id < ?1 OR boot_id > ?1";

static const char q_suspended_add[] =
        "INSERT INTO suspended (devpath, device_key, kind, vm, boot_id, requested_by) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
        "ON CONFLICT (devpath) DO UPDATE SET device_key = excluded.device_key, kind = excluded.kind, "
        "vm = excluded.vm, boot_id = excluded.boot_id, requested_by = excluded.requested_by, "
        "since = excluded.since";

static const char q_suspended_remove[] = "DELETE FROM suspended WHERE devpath = ?1";

static const char q_suspended_check[] = "SELECT 1 FROM suspended WHERE devpath = ?1 AND boot_id = ?2";

/* In the order suspend took them out; with the entry of the last attachment of the device, which
 * says what gave it to the VM (an IOMMU group member no rule claims has only that). */
static const char q_suspended_list[] =
        "SELECT s.devpath, s.device_key, s.kind, s.vm, s.requested_by, s.since, "
        "(SELECT a.rule_entry FROM attachments a WHERE a.devpath = s.devpath AND a.vm = s.vm "
        " ORDER BY a.id DESC LIMIT 1) "
        "FROM suspended s WHERE s.boot_id = ?1 AND (?2 IS NULL OR s.kind = ?2) "
        "AND (?3 IS NULL OR s.vm = ?3) ORDER BY s.rowid";

int db_attachment_set_cold_plugged(struct db *db, int64_t id) {
        int r;

        if (!db)
                return -EINVAL;
        r = db_tx_begin(db);
        if (r < 0)
                return r;
        r = db_exec1(db, q_set_cold_plugged, NULL, id);
        if (r >= 0 && sqlite3_changes(db->sql) != 1)
                r = -ENOENT;
        return db_tx_end(db, r);
}

int db_suspended_forget_boots(struct db *db, const char *boot_id) {
        int r;

        if (!db || !boot_id)
                return -EINVAL;
        r = db_tx_begin(db);
        if (r < 0)
                return r;
        return db_tx_end(db, db_exec1(db, q_suspended_forget_boots, boot_id, 0));
}

int db_suspended_add(struct db *db, const char *devpath, const char *device_key, const char *kind,
                     const char *vm, const char *boot_id, const char *requested_by) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int rc = SQLITE_OK, r;

        if (!db || !devpath || !device_key || !kind || !vm || !boot_id)
                return -EINVAL;
        r = db_tx_begin(db);
        if (r < 0)
                return r;
        r = db_prepare(db, q_suspended_add, &st);
        if (r >= 0) {
                rc |= db_bind_text(st, 1, devpath);
                rc |= db_bind_text(st, 2, device_key);
                rc |= db_bind_text(st, 3, kind);
                rc |= db_bind_text(st, 4, vm);
                rc |= db_bind_text(st, 5, boot_id);
                rc |= db_bind_text(st, 6, requested_by);
                r = db_bind_check(db, rc);
        }
        if (r >= 0)
                r = db_step_done(db, st);
        return db_tx_end(db, r);
}

int db_suspended_remove(struct db *db, const char *devpath) {
        int r;

        if (!db || !devpath)
                return -EINVAL;
        r = db_tx_begin(db);
        if (r < 0)
                return r;
        return db_tx_end(db, db_exec1(db, q_suspended_remove, devpath, 0));
}

int db_suspended_check(struct db *db, const char *devpath, const char *boot_id) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r, rc;

        if (!db || !devpath || !boot_id)
                return -EINVAL;
        r = db_prepare(db, q_suspended_check, &s);
        if (r < 0)
                return r;
        r = db_bind_check(db, db_bind_text(s, 1, devpath) | db_bind_text(s, 2, boot_id));
        if (r < 0)
                return r;
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
                return 1;
        return rc == SQLITE_DONE ? 0 : db_errno(db->sql, rc);
}

void db_suspension_list_free(struct db_suspension *list, size_t n) {
        for (size_t i = 0; list && i < n; i++) {
                free(list[i].devpath);
                free(list[i].device_key);
                free(list[i].vm);
                free(list[i].requested_by);
                free(list[i].since);
        }
        free(list);
}

static int suspension_from_row(sqlite3_stmt *s, struct db_suspension *ret) {
        bool oom = false;
        struct db_suspension x = {
                .devpath = db_column_strdup(s, 0, &oom),
                .device_key = db_column_strdup(s, 1, &oom),
                .vm = db_column_strdup(s, 3, &oom),
                .requested_by = db_column_strdup(s, 4, &oom),
                .since = db_column_strdup(s, 5, &oom),
                .rule_entry = db_column_int_or(s, 6, -1),
        };

        str_copy(x.kind, sizeof(x.kind), (const char *)sqlite3_column_text(s, 2));
        if (oom || !x.devpath || !x.device_key || !x.vm) {
                free(x.devpath);
                free(x.device_key);
                free(x.vm);
                free(x.requested_by);
                free(x.since);
                return oom ? -ENOMEM : -EUCLEAN;
        }
        *ret = x;
        return 0;
}

int db_suspended_list(struct db *db, const char *kind, const char *vm, const char *boot_id,
                      struct db_suspension **ret, size_t *ret_n) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        struct db_suspension *list = NULL;
        size_t n = 0, cap = 0;
        int r, rc = SQLITE_DONE;

        if (!db || !boot_id || !ret || !ret_n)
                return -EINVAL;
        r = db_prepare(db, q_suspended_list, &s);
        if (r >= 0)
                r = db_bind_check(db, db_bind_text(s, 1, boot_id) | db_bind_text(s, 2, kind) |
                                              db_bind_text(s, 3, vm));
        while (r >= 0 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
                if (n == cap) {
                        size_t c = cap ? cap * 2 : 8;
                        struct db_suspension *l = reallocarray(list, c, sizeof(*list));
                        if (!l) {
                                r = -ENOMEM;
                                break;
                        }
                        list = l;
                        cap = c;
                }
                r = suspension_from_row(s, &list[n]);
                if (r >= 0)
                        n++;
        }
        if (r >= 0 && rc != SQLITE_DONE)
                r = db_errno(db->sql, rc);
        if (r < 0) {
                db_suspension_list_free(list, n);
                return r;
        }
        *ret = list;
        *ret_n = n;
        return 0;
}
