/* The statements of the control plane: who asks (requested_by), the user's choices, devices
 * waiting for a choice (prompts), reading the history (notifications, vhotplugctl history and why)
 * and facts about the database (meta). Same rules as db.c: values bound, never pasted; every write
 * one BEGIN IMMEDIATE transaction. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "cleanup.h"
#include "db-internal.h"
#include "util.h"

#define NOW "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
#define IDENTITY                                                                                            \
        "kind, vendor_id, product_id, vendor_name, product_name, serial, busnum, devnum, "                  \
        "port_path, pci_address, devnode"

#define HISTORY_COLUMNS                                                                                     \
        "id, time, action, outcome, kind, vendor_id, product_id, busnum, devnum, crosvm_port, "             \
        "rule_entry, rule_allow, vm, devpath, vendor_name, product_name, serial, port_path, "               \
        "pci_address, devnode, vmm_id, rule_section, rule_description, detail, error, requested_by, "       \
        "(SELECT a.attached_at IS NOT NULL FROM attachments a WHERE a.id = history.attachment_id)"

#define PROMPT_COLUMNS                                                                                      \
        "devpath, device_key, allowed_vms, kind, vendor_id, product_id, vendor_name, product_name, "        \
        "serial, busnum, devnum, port_path, devnode, since"

/* As db.c's: the device's own key first, else a choice for its ids on any port. */
static const char q_choice_get[] = "SELECT vm, keep_detached, set_by, updated_at, device_key FROM "
                                   "user_choices WHERE device_key IN (?1, ?2) "
                                   "ORDER BY device_key = ?1 DESC LIMIT 1";
/* vm NULL keeps the VM chosen before (a keep-detached flag changes alone). */
static const char q_choice_record[] =
        "INSERT INTO user_choices (device_key, vm, keep_detached, set_by, updated_at) "
        "VALUES (?1, ?2, ?3, ?4, " NOW ") "
        "ON CONFLICT (device_key) DO UPDATE SET vm = coalesce(excluded.vm, user_choices.vm), "
        "keep_detached = excluded.keep_detached, set_by = excluded.set_by, updated_at = excluded.updated_at";
static const char q_history_note[] =
        "INSERT INTO history (action, outcome, vm, devpath, " IDENTITY ", rule_section, rule_entry, "
        "rule_allow, rule_description, detail, requested_by) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, "
        "?21)";
static const char q_prompt_insert[] = "INSERT INTO prompts (devpath, device_key, allowed_vms, " IDENTITY ") "
                                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) "
                                      "ON CONFLICT (devpath) DO NOTHING";
static const char q_prompt_delete[] = "DELETE FROM prompts WHERE devpath = ?1";
static const char q_prompt_get[] = "SELECT " PROMPT_COLUMNS " FROM prompts WHERE devpath = ?1";
static const char q_prompt_list[] =
        "SELECT " PROMPT_COLUMNS " FROM prompts WHERE ?1 IS NULL ORDER BY since, devpath";
static const char q_history_after[] =
        "SELECT " HISTORY_COLUMNS " FROM history WHERE id > ?1 ORDER BY id LIMIT ?2";
static const char q_history_recent[] =
        "SELECT * FROM (SELECT " HISTORY_COLUMNS " FROM history WHERE ?1 IS NULL OR devpath = ?1 "
        "ORDER BY id DESC LIMIT ?2) ORDER BY id";
static const char q_history_last[] = "SELECT coalesce(max(id), 0) FROM history";
static const char q_meta_get[] = "SELECT value FROM meta WHERE key = ?1";
static const char q_meta_set[] =
        "INSERT INTO meta (key, value, updated_at) VALUES (?1, ?2, " NOW ") "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at";

void db_set_requested_by(struct db *db, const char *who) {
        if (db)
                str_copy(db->requested_by, sizeof(db->requested_by), who);
}

const char *db_requester(const struct db *db) {
        return db->requested_by[0] ? db->requested_by : NULL;
}

void db_choice_info_clear(struct db_choice_info *c) {
        if (!c)
                return;
        free(c->key);
        free(c->vm);
        free(c->set_by);
        free(c->updated_at);
        *c = (struct db_choice_info){0};
}

int db_choice_info_get(struct db *db, const char *key, struct db_choice_info *ret) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        _cleanup_free_ char *any_port = NULL;
        struct db_choice_info c = {0};
        const char *at;
        bool oom = false;
        int r, rc;

        if (!db || !key || !ret)
                return -EINVAL;
        *ret = (struct db_choice_info){0};
        at = strncmp(key, "usb:", 4) == 0 ? strchr(key, '@') : NULL;
        if (at && asprintf(&any_port, "%.*s@*", (int)(at - key), key) < 0)
                return -ENOMEM;
        r = db_prepare(db, q_choice_get, &s);
        if (r >= 0)
                r = db_bind_check(db, db_bind_text(s, 1, key) | db_bind_text(s, 2, any_port));
        if (r < 0)
                return r;
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
                return 0;
        if (rc != SQLITE_ROW)
                return db_errno(db->sql, rc);
        c.vm = db_column_strdup(s, 0, &oom);
        c.keep_detached = sqlite3_column_int(s, 1) != 0;
        c.set_by = db_column_strdup(s, 2, &oom);
        c.updated_at = db_column_strdup(s, 3, &oom);
        c.key = db_column_strdup(s, 4, &oom);
        if (oom) {
                db_choice_info_clear(&c);
                return -ENOMEM;
        }
        *ret = c;
        return 1;
}

/* Within a transaction: a history row that no attachment owns (a choice, a prompt). */
static int history_note(struct db *db, const char *action, const char *outcome, const char *vm,
                        const struct db_device *d, const struct db_rule_ref *rule, const char *detail) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        bool has_rule = rule && rule->section;
        int rc = SQLITE_OK, r;

        r = db_prepare(db, q_history_note, &s);
        if (r < 0)
                return r;
        rc |= db_bind_text(s, 1, action);
        rc |= db_bind_text(s, 2, outcome);
        rc |= db_bind_text(s, 3, vm);
        rc |= db_bind_text(s, 4, d->devpath);
        rc |= db_bind_device(s, 5, d);
        rc |= db_bind_text(s, 16, has_rule ? rule->section : NULL);
        rc |= db_bind_int_if(s, 17, has_rule && rule->entry >= 0, has_rule ? rule->entry : 0);
        rc |= db_bind_int_if(s, 18, has_rule && rule->allow >= 0, has_rule ? rule->allow : 0);
        rc |= db_bind_text(s, 19, has_rule ? rule->description : NULL);
        rc |= db_bind_text(s, 20, detail);
        rc |= db_bind_text(s, 21, db_requester(db));
        if (rc != SQLITE_OK)
                return db_errno(db->sql, sqlite3_errcode(db->sql));
        return db_step_done(db, s);
}

int db_prompt_delete_tx(struct db *db, const char *devpath) {
        return db_exec1(db, q_prompt_delete, devpath, 0);
}

int db_choice_record(struct db *db, const struct db_device *d, const char *vm, bool keep_detached,
                     const char *detail) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r;

        if (!db || !d || !d->key || !d->devpath || !d->kind)
                return -EINVAL;
        r = db_tx_begin(db);
        if (r < 0)
                return r;
        r = db_prepare(db, q_choice_record, &s);
        if (r >= 0)
                r = db_bind_check(db, db_bind_text(s, 1, d->key) | db_bind_text(s, 2, vm) |
                                              sqlite3_bind_int(s, 3, keep_detached) |
                                              db_bind_text(s, 4, db_requester(db)));
        if (r >= 0)
                r = db_step_done(db, s);
        if (r >= 0)
                r = history_note(db, "choice", "recorded", vm, d, NULL, detail);
        if (r >= 0 && keep_detached)
                r = db_prompt_delete_tx(db, d->devpath);
        return db_tx_end(db, r);
}

int db_prompt_add(struct db *db, const struct db_event_order *order, const struct db_device *d,
                  const struct db_rule_ref *rule, const char *allowed_vms, const char *detail,
                  bool *ret_new) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r, rc = SQLITE_OK, stale = 0;
        bool added = false;

        if (!db || !d || !d->devpath || !d->kind || !allowed_vms)
                return -EINVAL;
        r = db_tx_begin(db);
        if (r < 0)
                return r;
        if (order)
                r = stale = db_event_order_check_tx(db, order);
        if (r == 0)
                r = db_prepare(db, q_prompt_insert, &s);
        if (r == 0) {
                rc |= db_bind_text(s, 1, d->devpath);
                rc |= db_bind_text(s, 2, d->key ? d->key : "");
                rc |= db_bind_text(s, 3, allowed_vms);
                rc |= db_bind_device(s, 4, d);
                r = db_bind_check(db, rc);
        }
        if (r == 0)
                r = db_step_done(db, s);
        if (r == 0 && sqlite3_changes(db->sql) > 0) {
                added = true;
                r = history_note(db, "prompt", "waiting", NULL, d, rule, detail);
        }
        r = db_tx_end(db, r);
        if (r < 0 || stale)
                return r;
        if (ret_new)
                *ret_new = added;
        return 0;
}

int db_prompt_remove(struct db *db, const char *devpath) {
        int r;

        if (!db || !devpath)
                return -EINVAL;
        r = db_tx_begin(db);
        if (r < 0)
                return r;
        return db_tx_end(db, db_prompt_delete_tx(db, devpath));
}

void db_prompt_clear(struct db_prompt *p) {
        if (!p)
                return;
        free(p->devpath);
        free(p->device_key);
        free(p->allowed_vms);
        free(p->vendor_name);
        free(p->product_name);
        free(p->serial);
        free(p->port_path);
        free(p->devnode);
        free(p->since);
        *p = (struct db_prompt){0};
}

void db_prompt_list_free(struct db_prompt *p, size_t n) {
        for (size_t i = 0; p && i < n; i++)
                db_prompt_clear(&p[i]);
        free(p);
}

static int prompt_from_row(sqlite3_stmt *s, struct db_prompt *ret) {
        bool oom = false;
        struct db_prompt p = {
                .devpath = db_column_strdup(s, 0, &oom),
                .device_key = db_column_strdup(s, 1, &oom),
                .allowed_vms = db_column_strdup(s, 2, &oom),
                .has_ids = sqlite3_column_type(s, 4) != SQLITE_NULL,
                .vendor_id = db_column_hex4(s, 4),
                .product_id = db_column_hex4(s, 5),
                .vendor_name = db_column_strdup(s, 6, &oom),
                .product_name = db_column_strdup(s, 7, &oom),
                .serial = db_column_strdup(s, 8, &oom),
                .busnum = sqlite3_column_int(s, 9),
                .devnum = sqlite3_column_int(s, 10),
                .port_path = db_column_strdup(s, 11, &oom),
                .devnode = db_column_strdup(s, 12, &oom),
                .since = db_column_strdup(s, 13, &oom),
        };

        str_copy(p.kind, sizeof(p.kind), (const char *)sqlite3_column_text(s, 3));
        if (oom || !p.devpath) {
                db_prompt_clear(&p);
                return -ENOMEM;
        }
        *ret = p;
        return 0;
}

/* Steps s (bound) and reads its rows with from_row into a growing array of size elem. */
static int read_rows(struct db *db, sqlite3_stmt *s, size_t elem, size_t max,
                     int (*from_row)(sqlite3_stmt *, void *), void (*clear)(void *), void **ret,
                     size_t *ret_n) {
        char *list = NULL;
        size_t n = 0, cap = 0;
        int r = 0, rc = SQLITE_DONE;

        while (n < max && (rc = sqlite3_step(s)) == SQLITE_ROW) {
                if (n == cap) {
                        size_t c = cap ? cap * 2 : 8;
                        char *l = reallocarray(list, c, elem);
                        if (!l) {
                                r = -ENOMEM;
                                break;
                        }
                        list = l;
                        cap = c;
                }
                r = from_row(s, list + n * elem);
                if (r < 0)
                        break;
                n++;
        }
        if (r >= 0 && n < max && rc != SQLITE_DONE)
                r = db_errno(db->sql, rc);
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        clear(list + i * elem);
                free(list);
                return r;
        }
        *ret = list;
        *ret_n = n;
        return 0;
}

static int prompt_row(sqlite3_stmt *s, void *p) {
        return prompt_from_row(s, p);
}

static void prompt_clear(void *p) {
        db_prompt_clear(p);
}

int db_prompt_get(struct db *db, const char *devpath, struct db_prompt *ret) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        struct db_prompt *list = NULL;
        size_t n = 0;
        int r;

        if (!db || !devpath || !ret)
                return -EINVAL;
        r = db_prepare(db, q_prompt_get, &s);
        if (r >= 0)
                r = db_bind_check(db, db_bind_text(s, 1, devpath));
        if (r >= 0)
                r = read_rows(db, s, sizeof(*list), 1, prompt_row, prompt_clear, (void **)&list, &n);
        if (r < 0 || n == 0)
                return r;
        *ret = list[0];
        free(list);
        return 1;
}

int db_prompt_list(struct db *db, struct db_prompt **ret, size_t *ret_n) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r;

        if (!db || !ret || !ret_n)
                return -EINVAL;
        r = db_prepare(db, q_prompt_list, &s);
        if (r >= 0)
                r = read_rows(db, s, sizeof(**ret), SIZE_MAX, prompt_row, prompt_clear, (void **)ret, ret_n);
        return r;
}

static void history_clear(void *p) {
        struct db_history *h = p;
        free(h->vm);
        free(h->devpath);
        free(h->vendor_name);
        free(h->product_name);
        free(h->serial);
        free(h->port_path);
        free(h->pci_address);
        free(h->devnode);
        free(h->vmm_id);
        free(h->rule_section);
        free(h->rule_description);
        free(h->detail);
        free(h->error);
        free(h->requested_by);
}

void db_history_list_free(struct db_history *h, size_t n) {
        for (size_t i = 0; h && i < n; i++)
                history_clear(&h[i]);
        free(h);
}

static int history_row(sqlite3_stmt *s, void *p) {
        bool oom = false;
        struct db_history h = {
                .id = sqlite3_column_int64(s, 0),
                .has_ids = sqlite3_column_type(s, 5) != SQLITE_NULL,
                .vendor_id = db_column_hex4(s, 5),
                .product_id = db_column_hex4(s, 6),
                .busnum = db_column_int_or(s, 7, 0),
                .devnum = db_column_int_or(s, 8, 0),
                .crosvm_port = db_column_int_or(s, 9, -1),
                .rule_entry = db_column_int_or(s, 10, -1),
                .rule_allow = db_column_int_or(s, 11, -1),
                .vm = db_column_strdup(s, 12, &oom),
                .devpath = db_column_strdup(s, 13, &oom),
                .vendor_name = db_column_strdup(s, 14, &oom),
                .product_name = db_column_strdup(s, 15, &oom),
                .serial = db_column_strdup(s, 16, &oom),
                .port_path = db_column_strdup(s, 17, &oom),
                .pci_address = db_column_strdup(s, 18, &oom),
                .devnode = db_column_strdup(s, 19, &oom),
                .vmm_id = db_column_strdup(s, 20, &oom),
                .rule_section = db_column_strdup(s, 21, &oom),
                .rule_description = db_column_strdup(s, 22, &oom),
                .detail = db_column_strdup(s, 23, &oom),
                .error = db_column_strdup(s, 24, &oom),
                .requested_by = db_column_strdup(s, 25, &oom),
                .was_attached = sqlite3_column_int(s, 26) != 0,
        };

        str_copy(h.time, sizeof(h.time), (const char *)sqlite3_column_text(s, 1));
        str_copy(h.action, sizeof(h.action), (const char *)sqlite3_column_text(s, 2));
        str_copy(h.outcome, sizeof(h.outcome), (const char *)sqlite3_column_text(s, 3));
        str_copy(h.kind, sizeof(h.kind), (const char *)sqlite3_column_text(s, 4));
        if (oom) {
                history_clear(&h);
                return -ENOMEM;
        }
        *(struct db_history *)p = h;
        return 0;
}

int db_history_after(struct db *db, int64_t after_id, size_t max, struct db_history **ret, size_t *ret_n) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r;

        if (!db || !ret || !ret_n)
                return -EINVAL;
        max = MIN(max, (size_t)DB_HISTORY_MAX_ROWS);
        r = db_prepare(db, q_history_after, &s);
        if (r >= 0)
                r = db_bind_check(db, sqlite3_bind_int64(s, 1, after_id) |
                                              sqlite3_bind_int64(s, 2, (int64_t)max));
        if (r >= 0)
                r = read_rows(db, s, sizeof(**ret), max, history_row, history_clear, (void **)ret, ret_n);
        return r;
}

int db_history_recent(struct db *db, const char *devpath, size_t max, struct db_history **ret,
                      size_t *ret_n) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r;

        if (!db || !ret || !ret_n)
                return -EINVAL;
        max = MIN(max, (size_t)DB_HISTORY_MAX_ROWS);
        r = db_prepare(db, q_history_recent, &s);
        if (r >= 0)
                r = db_bind_check(db, db_bind_text(s, 1, devpath) | sqlite3_bind_int64(s, 2, (int64_t)max));
        if (r >= 0)
                r = read_rows(db, s, sizeof(**ret), max, history_row, history_clear, (void **)ret, ret_n);
        return r;
}

int db_history_last_id(struct db *db, int64_t *ret) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r, rc;

        if (!db || !ret)
                return -EINVAL;
        r = db_prepare(db, q_history_last, &s);
        if (r < 0)
                return r;
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW)
                return db_errno(db->sql, rc == SQLITE_DONE ? SQLITE_MISUSE : rc);
        *ret = sqlite3_column_int64(s, 0);
        return 0;
}

int db_meta_get(struct db *db, const char *key, char **ret) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        bool oom = false;
        char *v;
        int r, rc;

        if (!db || !key || !ret)
                return -EINVAL;
        *ret = NULL;
        r = db_prepare(db, q_meta_get, &s);
        if (r >= 0)
                r = db_bind_check(db, db_bind_text(s, 1, key));
        if (r < 0)
                return r;
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
                return 0;
        if (rc != SQLITE_ROW)
                return db_errno(db->sql, rc);
        v = db_column_strdup(s, 0, &oom);
        if (oom)
                return -ENOMEM;
        *ret = v;
        return 1;
}

int db_meta_set(struct db *db, const char *key, const char *value) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r;

        if (!db || !key)
                return -EINVAL;
        r = db_tx_begin(db);
        if (r < 0)
                return r;
        r = db_prepare(db, q_meta_set, &s);
        if (r >= 0)
                r = db_bind_check(db, db_bind_text(s, 1, key) | db_bind_text(s, 2, value));
        if (r >= 0)
                r = db_step_done(db, s);
        return db_tx_end(db, r);
}
