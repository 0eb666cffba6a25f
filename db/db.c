/* The statements of the state store: every DML statement of the product. Statements are prepared
 * once per connection and cached; values are always bound, never pasted. Every write runs in a
 * BEGIN IMMEDIATE transaction (db_tx_begin) so concurrent helpers queue on the write lock instead
 * of failing on a lock upgrade. The file itself (open, migrate, repair) is db-file.c's. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "cleanup.h"
#include "db-internal.h"
#include "util.h"

#define NOW "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
#define OPEN_STATES "('pending', 'attaching', 'attached', 'detaching')"

/* Identity and rule columns copied from an attachment into each of its history rows. */
#define HISTORY_COPY_COLUMNS                                                                                \
        "vm, devpath, kind, vendor_id, product_id, vendor_name, product_name, serial, busnum, "             \
        "devnum, port_path, pci_address, devnode, vmm_id, bus, crosvm_port, rule_section, "                 \
        "rule_entry, rule_allow, rule_description"

#define ATTACHMENT_COLUMNS                                                                                  \
        "id, state, kind, devpath, vm, vmm_id, bus, crosvm_port, busnum, devnum, vendor_id, "               \
        "product_id, serial, pci_address, devnode, error, cold_plugged, rule_entry"

enum query {
        Q_SEQNUM_UPSERT,
        Q_SEQNUM_FORGET_BOOTS,
        Q_SUPERSEDE_HISTORY,
        Q_SUPERSEDE,
        Q_ATTACHMENT_INSERT,
        Q_HISTORY_ADD,
        Q_ATTACH_FINISH,
        Q_DETACH_BEGIN,
        Q_DETACH_FINISH,
        Q_ATTACHMENT_GET,
        Q_ATTACHMENT_LIST,
        Q_IGNORED_UPSERT,
        Q_IGNORED_TRIM,
        Q_CHOICE_GET,
        Q_CHOICE_IMPORT,
        Q_CHOICE_HISTORY,
        Q_META_GET,
        Q_META_SET,
        Q_CHOICE_SET,
        _Q_MAX,
};

static const char *const queries[_Q_MAX] = {
        /* No row changed: an event with seqnum >= ?2 was handled in this boot already. */
        [Q_SEQNUM_UPSERT] =
                "INSERT INTO seqnums (devpath, seqnum, boot_id, updated_at) "
                "VALUES (?1, ?2, ?3, " NOW ") "
                "ON CONFLICT (devpath) DO UPDATE SET seqnum = excluded.seqnum, "
                "boot_id = excluded.boot_id, updated_at = excluded.updated_at "
                "WHERE NOT (seqnums.boot_id = excluded.boot_id AND seqnums.seqnum >= excluded.seqnum)",
        /* Rows of earlier boots order nothing any more (written so that the index serves it). */
        [Q_SEQNUM_FORGET_BOOTS] = "DELETE FROM seqnums WHERE boot_id < ?1 OR boot_id > ?1",
        [Q_SUPERSEDE_HISTORY] =
                "INSERT INTO history (attachment_id, action, outcome, error, "
                "requested_by, " HISTORY_COPY_COLUMNS ") "
                "SELECT id, CASE WHEN attached_at IS NULL THEN 'attach' ELSE 'detach' END, "
                "CASE WHEN attached_at IS NULL THEN 'failed' ELSE 'detached' END, 'superseded', "
                "coalesce(?2, requested_by), " HISTORY_COPY_COLUMNS " FROM attachments "
                "WHERE devpath = ?1 AND state IN " OPEN_STATES,
        [Q_SUPERSEDE] = "UPDATE attachments SET "
                        "state = CASE WHEN attached_at IS NULL THEN 'failed' ELSE 'detached' END, "
                        "closed_at = " NOW ", updated_at = " NOW ", error = 'superseded' "
                        "WHERE devpath = ?1 AND state IN " OPEN_STATES,
        [Q_ATTACHMENT_INSERT] =
                "INSERT INTO attachments (devpath, device_key, kind, vendor_id, product_id, "
                "vendor_name, product_name, serial, busnum, devnum, port_path, pci_address, "
                "devnode, vm, vmm_id, state, rule_section, rule_entry, rule_allow, "
                "rule_description, requested_by) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, "
                "?17, ?18, ?19, ?20, ?21)",
        [Q_HISTORY_ADD] = "INSERT INTO history (attachment_id, action, outcome, detail, error, "
                          "requested_by, " HISTORY_COPY_COLUMNS ") "
                          "SELECT id, ?2, ?3, ?4, ?5, coalesce(?6, requested_by), " HISTORY_COPY_COLUMNS
                          " FROM attachments WHERE id = ?1",
        [Q_ATTACH_FINISH] = "UPDATE attachments SET state = ?2, crosvm_port = coalesce(?3, crosvm_port), "
                            "bus = coalesce(?4, bus), error = ?5, "
                            "attached_at = CASE WHEN ?2 = 'attached' THEN coalesce(attached_at, " NOW ") "
                            "ELSE attached_at END, "
                            "closed_at = CASE WHEN ?2 = 'failed' THEN " NOW " END, updated_at = " NOW " "
                            "WHERE id = ?1 AND state IN ('pending', 'attaching', 'attached')",
        [Q_DETACH_BEGIN] = "UPDATE attachments SET state = ?2, updated_at = " NOW " "
                           "WHERE id = ?1 AND state IN " OPEN_STATES,
        [Q_DETACH_FINISH] = "UPDATE attachments SET state = ?2, error = coalesce(?3, error), "
                            "closed_at = CASE WHEN ?2 = 'detached' THEN " NOW " END, updated_at = " NOW " "
                            "WHERE id = ?1 AND state IN " OPEN_STATES,
        [Q_ATTACHMENT_GET] = "SELECT " ATTACHMENT_COLUMNS " FROM attachments "
                             "WHERE devpath = ?1 AND state IN " OPEN_STATES,
        [Q_ATTACHMENT_LIST] =
                "SELECT " ATTACHMENT_COLUMNS " FROM attachments "
                "WHERE state IN " OPEN_STATES " AND (?1 IS NULL OR vm = ?1) ORDER BY vm, devpath",
        [Q_IGNORED_UPSERT] =
                "INSERT INTO ignored (devpath, reason, kind, vendor_id, product_id, vendor_name, "
                "product_name, serial, busnum, devnum, port_path, pci_address, devnode, "
                "first_seen, last_seen, count) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, " NOW ", " NOW ", 1) "
                "ON CONFLICT (devpath, reason) DO UPDATE SET last_seen = excluded.last_seen, "
                "count = ignored.count + 1, kind = excluded.kind, vendor_id = excluded.vendor_id, "
                "product_id = excluded.product_id, vendor_name = excluded.vendor_name, "
                "product_name = excluded.product_name, serial = excluded.serial, "
                "busnum = excluded.busnum, devnum = excluded.devnum, "
                "port_path = excluded.port_path, pci_address = excluded.pci_address, "
                "devnode = excluded.devnode "
                "RETURNING count",
        [Q_IGNORED_TRIM] = "DELETE FROM ignored WHERE id IN (SELECT id FROM ignored "
                           "ORDER BY last_seen DESC, id DESC LIMIT -1 OFFSET ?1)",
        /* The device's own key first, else a choice for its ids on any port (?2, may be NULL). */
        [Q_CHOICE_GET] = "SELECT vm, keep_detached FROM user_choices WHERE device_key IN (?1, ?2) "
                         "ORDER BY device_key = ?1 DESC LIMIT 1",
        [Q_CHOICE_IMPORT] = "INSERT INTO user_choices (device_key, vm, keep_detached, updated_at, set_by) "
                            "VALUES (?1, ?2, ?3, " NOW ", ?4) ON CONFLICT (device_key) DO NOTHING",
        [Q_CHOICE_HISTORY] = "INSERT INTO history (action, outcome, devpath, vm, detail, requested_by) "
                             "VALUES ('choice', 'recorded', '', ?1, ?2, ?3)",
        [Q_META_GET] = "SELECT value FROM meta WHERE key = ?1",
        [Q_META_SET] =
                "INSERT INTO meta (key, value, updated_at) VALUES (?1, ?2, " NOW ") "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        [Q_CHOICE_SET] = "INSERT INTO user_choices (device_key, vm, keep_detached, set_by, updated_at) "
                         "VALUES (?1, ?2, ?3, ?4, " NOW ") "
                         "ON CONFLICT (device_key) DO UPDATE SET vm = excluded.vm, "
                         "keep_detached = excluded.keep_detached, set_by = excluded.set_by, "
                         "updated_at = excluded.updated_at",
};

/* The statements above that name version 3's columns, as version 2 had them: only tests of the
 * migrations write through an older schema. */
static const char *const queries_v2[_Q_MAX] = {
        [Q_SUPERSEDE_HISTORY] =
                "INSERT INTO history (attachment_id, action, outcome, error, " HISTORY_COPY_COLUMNS ") "
                "SELECT id, CASE WHEN attached_at IS NULL THEN 'attach' ELSE 'detach' END, "
                "CASE WHEN attached_at IS NULL THEN 'failed' ELSE 'detached' END, "
                "'superseded', " HISTORY_COPY_COLUMNS " FROM attachments "
                "WHERE devpath = ?1 AND state IN " OPEN_STATES " AND (?2 IS NULL OR 1)",
        [Q_ATTACHMENT_INSERT] =
                "INSERT INTO attachments (devpath, device_key, kind, vendor_id, product_id, "
                "vendor_name, product_name, serial, busnum, devnum, port_path, pci_address, "
                "devnode, vm, vmm_id, state, rule_section, rule_entry, rule_allow, "
                "rule_description) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, "
                "?17, ?18, ?19, ?20)",
        [Q_HISTORY_ADD] =
                "INSERT INTO history (attachment_id, action, outcome, detail, error, " HISTORY_COPY_COLUMNS
                ") "
                "SELECT id, ?2, ?3, ?4, ?5, " HISTORY_COPY_COLUMNS " FROM attachments WHERE id = ?1 "
                "AND (?6 IS NULL OR 1)",
        [Q_CHOICE_SET] = "INSERT INTO user_choices (device_key, vm, keep_detached, updated_at) "
                         "VALUES (?1, ?2, ?3, " NOW ") "
                         "ON CONFLICT (device_key) DO UPDATE SET vm = excluded.vm, "
                         "keep_detached = excluded.keep_detached, updated_at = excluded.updated_at "
                         "WHERE (?4 IS NULL OR 1)",
};

/* The text of statement q for this database's schema. */
static const char *query(const struct db *db, enum query q) {
        return db->version < 3 && queries_v2[q] ? queries_v2[q] : queries[q];
}

static const char *const state_names[] = {
        [DB_PENDING] = "pending",     [DB_ATTACHING] = "attaching", [DB_ATTACHED] = "attached",
        [DB_DETACHING] = "detaching", [DB_DETACHED] = "detached",   [DB_FAILED] = "failed",
};

const char *db_state_name(enum db_state s) {
        if ((unsigned)s >= ELEMENTSOF(state_names))
                return NULL;
        return state_names[s];
}

static int state_from_name(const char *s) {
        for (size_t i = 0; s && i < ELEMENTSOF(state_names); i++)
                if (strcmp(s, state_names[i]) == 0)
                        return (int)i;
        return -EINVAL;
}

/* Returns 1 when stale, 0 when recorded. */
static int seqnum_upsert(struct db *db, const char *devpath, uint64_t seqnum, const char *boot_id) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r;

        r = db_prepare(db, queries[Q_SEQNUM_UPSERT], &s);
        if (r < 0)
                return r;
        if (db_bind_text(s, 1, devpath) != SQLITE_OK ||
            sqlite3_bind_int64(s, 2, (int64_t)seqnum) != SQLITE_OK ||
            db_bind_text(s, 3, boot_id) != SQLITE_OK)
                return db_errno(db->sql, sqlite3_errcode(db->sql));
        r = db_step_done(db, s);
        if (r < 0)
                return r;
        return sqlite3_changes(db->sql) == 0;
}

/* Within a write transaction: 1 when o is stale (an event of the device with a seqnum >= o's was
 * handled in this boot), else records o's seqnum and returns 0. */
static int event_order_check(struct db *db, const struct db_event_order *o) {
        const char *boot_id = o->boot_id ? o->boot_id : "";
        int r;

        if (o->seqnum == 0)
                return 0;
        r = seqnum_upsert(db, o->devpath, o->seqnum, boot_id);
        if (r == 0)
                r = db_exec1(db, queries[Q_SEQNUM_FORGET_BOOTS], boot_id, 0);
        return r;
}

static bool event_order_valid(const struct db_event_order *o) {
        return !o || (o->devpath && o->seqnum <= INT64_MAX);
}

int db_event_order_check_tx(struct db *db, const struct db_event_order *o) {
        return event_order_valid(o) ? event_order_check(db, o) : -EINVAL;
}

int db_event_seqnum_check(struct db *db, const struct db_event_order *o) {
        int r;

        if (!db || !o || !event_order_valid(o))
                return -EINVAL;
        if (o->seqnum == 0)
                return 0;
        r = db_tx_begin(db);
        if (r < 0)
                return r;
        r = event_order_check(db, o);
        return db_tx_end(db, r);
}

void db_attachment_clear(struct db_attachment *a) {
        if (!a)
                return;
        free(a->devpath);
        free(a->vm);
        free(a->vmm_id);
        free(a->bus);
        free(a->serial);
        free(a->pci_address);
        free(a->devnode);
        free(a->error);
        *a = (struct db_attachment){};
}

/* Reads a row of ATTACHMENT_COLUMNS. */
static int attachment_from_row(sqlite3_stmt *s, struct db_attachment *ret) {
        bool oom = false;
        int st = state_from_name((const char *)sqlite3_column_text(s, 1));
        struct db_attachment a = {
                .id = sqlite3_column_int64(s, 0),
                .state = st < 0 ? DB_FAILED : (enum db_state)st,
                .devpath = db_column_strdup(s, 3, &oom),
                .vm = db_column_strdup(s, 4, &oom),
                .vmm_id = db_column_strdup(s, 5, &oom),
                .bus = db_column_strdup(s, 6, &oom),
                .crosvm_port = db_column_int_or(s, 7, -1),
                .busnum = sqlite3_column_int(s, 8),
                .devnum = sqlite3_column_int(s, 9),
                .vendor_id = db_column_hex4(s, 10),
                .product_id = db_column_hex4(s, 11),
                .serial = db_column_strdup(s, 12, &oom),
                .pci_address = db_column_strdup(s, 13, &oom),
                .devnode = db_column_strdup(s, 14, &oom),
                .error = db_column_strdup(s, 15, &oom),
                .cold_plugged = sqlite3_column_int(s, 16) != 0,
                .rule_entry = db_column_int_or(s, 17, -1),
        };

        str_copy(a.kind, sizeof(a.kind), (const char *)sqlite3_column_text(s, 2));
        if (!oom && !a.bus && !(a.bus = strdup("")))
                oom = true;
        if (oom) {
                db_attachment_clear(&a);
                return -ENOMEM;
        }
        *ret = a;
        return 0;
}

void db_attachment_list_free(struct db_attachment *a, size_t n) {
        for (size_t i = 0; a && i < n; i++)
                db_attachment_clear(&a[i]);
        free(a);
}

/* Runs query q (one text parameter, may be NULL) and reads at most max attachment rows. */
static int attachments_query(struct db *db, enum query q, const char *arg, size_t max,
                             struct db_attachment **ret, size_t *ret_n) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        struct db_attachment *list = NULL;
        size_t n = 0, cap = 0;
        int r, rc = SQLITE_DONE;

        r = db_prepare(db, queries[q], &s);
        if (r >= 0)
                r = db_bind_check(db, db_bind_text(s, 1, arg));
        while (r >= 0 && n < max && (rc = sqlite3_step(s)) == SQLITE_ROW) {
                if (n == cap) {
                        size_t c = cap ? cap * 2 : 8;
                        struct db_attachment *l = reallocarray(list, c, sizeof(*list));
                        if (!l) {
                                r = -ENOMEM;
                                break;
                        }
                        list = l;
                        cap = c;
                }
                r = attachment_from_row(s, &list[n]);
                if (r >= 0)
                        n++;
        }
        if (r >= 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
                r = db_errno(db->sql, rc);
        if (r < 0) {
                db_attachment_list_free(list, n);
                return r;
        }
        *ret = list;
        *ret_n = n;
        return 0;
}

int db_attachment_get(struct db *db, const char *devpath, struct db_attachment *ret) {
        struct db_attachment *list = NULL;
        size_t n = 0;
        int r;

        if (!db || !devpath || !ret)
                return -EINVAL;
        r = attachments_query(db, Q_ATTACHMENT_GET, devpath, 1, &list, &n);
        if (r < 0 || n == 0)
                return r;
        *ret = list[0];
        free(list);
        return 1;
}

int db_attachment_list(struct db *db, const char *vm, struct db_attachment **ret, size_t *ret_n) {
        if (!db || !ret || !ret_n)
                return -EINVAL;
        return attachments_query(db, Q_ATTACHMENT_LIST, vm, SIZE_MAX, ret, ret_n);
}

static int history_add(struct db *db, int64_t id, const char *action, const char *outcome,
                       const char *detail, const char *error) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r;

        r = db_prepare(db, query(db, Q_HISTORY_ADD), &s);
        if (r < 0)
                return r;
        if (db_bind_text(s, 6, db_requester(db)) != SQLITE_OK || sqlite3_bind_int64(s, 1, id) != SQLITE_OK ||
            db_bind_text(s, 2, action) != SQLITE_OK || db_bind_text(s, 3, outcome) != SQLITE_OK ||
            db_bind_text(s, 4, detail) != SQLITE_OK || db_bind_text(s, 5, error) != SQLITE_OK)
                return db_errno(db->sql, sqlite3_errcode(db->sql));
        r = db_step_done(db, s);
        if (r >= 0 && sqlite3_changes(db->sql) != 1)
                return -ENOENT;
        return r;
}

/* Closes any open row of devpath (a killed helper's), each with a history row. */
static int supersede(struct db *db, const char *devpath) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r = db_prepare(db, query(db, Q_SUPERSEDE_HISTORY), &s);

        if (r >= 0)
                r = db_bind_check(db, db_bind_text(s, 1, devpath) | db_bind_text(s, 2, db_requester(db)));
        if (r >= 0)
                r = db_step_done(db, s);
        return r < 0 ? r : db_exec1(db, queries[Q_SUPERSEDE], devpath, 0);
}

/* Binds a device's identity as ?first (kind), ?first+1 (vendor_id) ... in the column order the
 * statements share: kind, vendor_id, product_id, vendor_name, product_name, serial, busnum, devnum,
 * port_path, pci_address, devnode. */
int db_bind_device(sqlite3_stmt *s, int first, const struct db_device *d) {
        int rc = SQLITE_OK;

        rc |= db_bind_text(s, first, d->kind);
        rc |= db_bind_hex4(s, first + 1, d->has_ids, d->vendor_id);
        rc |= db_bind_hex4(s, first + 2, d->has_ids, d->product_id);
        rc |= db_bind_text(s, first + 3, d->vendor_name);
        rc |= db_bind_text(s, first + 4, d->product_name);
        rc |= db_bind_text(s, first + 5, d->serial);
        rc |= db_bind_int_if(s, first + 6, d->busnum > 0, d->busnum);
        rc |= db_bind_int_if(s, first + 7, d->devnum > 0, d->devnum);
        rc |= db_bind_text(s, first + 8, d->port_path);
        rc |= db_bind_text(s, first + 9, d->pci_address);
        rc |= db_bind_text(s, first + 10, d->devnode);
        return rc;
}

/* Prepares q, a statement about one device, and binds ?1 to its devpath, ?2 to text and ?3.. to
 * its identity (bind_device). */
static int prepare_for_device(struct db *db, enum query q, const char *text, const struct db_device *d,
                              sqlite3_stmt **ret) {
        int r = db_prepare(db, query(db, q), ret);

        if (r < 0)
                return r;
        if (db_bind_text(*ret, 1, d->devpath) != SQLITE_OK || db_bind_text(*ret, 2, text) != SQLITE_OK ||
            db_bind_device(*ret, 3, d) != SQLITE_OK)
                return db_errno(db->sql, sqlite3_errcode(db->sql));
        return 0;
}

static int attachment_insert(struct db *db, const struct db_device *d, const struct db_rule_ref *rule,
                             const char *vm, const char *vmm_id, enum db_state state, int64_t *ret_id) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int rc = SQLITE_OK, r;

        r = prepare_for_device(db, Q_ATTACHMENT_INSERT, d->key, d, &s);
        if (r < 0)
                return r;
        rc |= db_bind_text(s, 14, vm);
        rc |= db_bind_text(s, 15, vmm_id);
        rc |= db_bind_text(s, 16, db_state_name(state));
        rc |= db_bind_text(s, 17, rule ? rule->section : NULL);
        rc |= db_bind_int_if(s, 18, rule && rule->section && rule->entry >= 0, rule ? rule->entry : 0);
        rc |= db_bind_int_if(s, 19, rule && rule->section && rule->allow >= 0, rule ? rule->allow : 0);
        rc |= db_bind_text(s, 20, rule ? rule->description : NULL);
        if (db->version >= 3)
                rc |= db_bind_text(s, 21, db_requester(db));
        if (rc != SQLITE_OK)
                return db_errno(db->sql, sqlite3_errcode(db->sql));
        r = db_step_done(db, s);
        if (r < 0)
                return r;
        *ret_id = sqlite3_last_insert_rowid(db->sql);
        return 0;
}

int db_attach_begin(struct db *db, const struct db_event_order *order, const struct db_device *d,
                    const struct db_rule_ref *rule, const char *vm, const char *vmm_id, enum db_state state,
                    int64_t *ret_id) {
        int64_t id = 0;
        int r, stale = 0;

        if (!db || !d || !d->devpath || !d->kind || !vm || !event_order_valid(order) ||
            (state != DB_ATTACHING && state != DB_PENDING))
                return -EINVAL;

        r = db_tx_begin(db);
        if (r < 0)
                return r;
        if (order)
                r = stale = event_order_check(db, order);
        if (r == 0)
                r = supersede(db, d->devpath);
        if (r == 0 && db->version >= 3)
                r = db_prompt_delete_tx(db, d->devpath); /* a VM for it: no longer waiting for a choice */
        if (r == 0)
                r = attachment_insert(db, d, rule, vm, vmm_id, state, &id);
        if (r == 0)
                r = history_add(db, id, "attach", state == DB_PENDING ? "pending" : "started", NULL, NULL);
        r = db_tx_end(db, r);
        if (r < 0 || stale)
                return r;
        if (ret_id)
                *ret_id = id;
        return 0;
}

/* Runs an UPDATE of one attachment (?1 id, ?2 state name, ?3.. extra) and its history row. */
static int attachment_update(struct db *db, enum query q, int64_t id, enum db_state state, int crosvm_port,
                             const char *bus, const char *error, const char *action, const char *outcome,
                             const char *detail) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int rc = SQLITE_OK, r;

        r = db_prepare(db, queries[q], &s);
        if (r < 0)
                return r;
        rc |= sqlite3_bind_int64(s, 1, id);
        rc |= db_bind_text(s, 2, db_state_name(state));
        if (q == Q_ATTACH_FINISH) {
                rc |= db_bind_int_if(s, 3, crosvm_port >= 0, crosvm_port);
                rc |= db_bind_text(s, 4, bus);
                rc |= db_bind_text(s, 5, error);
        } else if (q == Q_DETACH_FINISH)
                rc |= db_bind_text(s, 3, error);
        if (rc != SQLITE_OK)
                return db_errno(db->sql, sqlite3_errcode(db->sql));
        r = db_step_done(db, s);
        if (r < 0)
                return r;
        if (sqlite3_changes(db->sql) == 0)
                return -ENOENT;
        return history_add(db, id, action, outcome, detail, error);
}

/* Records an attach outcome in one transaction (detail: a note that is no error). */
static int attach_finish(struct db *db, int64_t id, enum db_state state, int crosvm_port, const char *bus,
                         const char *error, const char *detail) {
        int r = db_tx_begin(db);

        if (r < 0)
                return r;
        r = attachment_update(db, Q_ATTACH_FINISH, id, state, crosvm_port, bus, error, "attach",
                              db_state_name(state), detail);
        return db_tx_end(db, r);
}

int db_attach_adopted(struct db *db, int64_t id, int crosvm_port, const char *bus, const char *detail) {
        return db ? attach_finish(db, id, DB_ATTACHED, crosvm_port, bus, NULL, detail) : -EINVAL;
}

int db_attach_finish(struct db *db, int64_t id, enum db_state state, int crosvm_port, const char *bus,
                     const char *error) {
        if (!db || (state != DB_ATTACHED && state != DB_PENDING && state != DB_FAILED))
                return -EINVAL;
        return attach_finish(db, id, state, crosvm_port, bus, error, NULL);
}

int db_detach_begin(struct db *db, const struct db_event_order *order, int64_t id, const char *why) {
        int r = 0;

        if (!db || !event_order_valid(order))
                return -EINVAL;
        r = db_tx_begin(db);
        if (r < 0)
                return r;
        if (order)
                r = event_order_check(db, order);
        if (r == 0)
                r = attachment_update(db, Q_DETACH_BEGIN, id, DB_DETACHING, -1, NULL, NULL, "detach",
                                      "detaching", why);
        return db_tx_end(db, r);
}

int db_detach_finish(struct db *db, int64_t id, enum db_state state, const char *error) {
        int r;

        if (!db || (state != DB_DETACHED && state != DB_DETACHING))
                return -EINVAL;
        r = db_tx_begin(db);
        if (r < 0)
                return r;
        r = attachment_update(db, Q_DETACH_FINISH, id, state, -1, NULL, error, "detach",
                              db_state_name(state), NULL);
        return db_tx_end(db, r);
}

static int ignored_upsert(struct db *db, const struct db_device *d, const char *reason, int64_t *ret_count) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int rc, r;

        r = prepare_for_device(db, Q_IGNORED_UPSERT, reason, d, &s);
        if (r < 0)
                return r;
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW)
                return db_errno(db->sql, rc == SQLITE_DONE ? SQLITE_MISUSE : rc);
        *ret_count = sqlite3_column_int64(s, 0);
        return db_step_done(db, s);
}

static int ignored_trim(struct db *db) {
        return db_exec1(db, queries[Q_IGNORED_TRIM], NULL, DB_IGNORED_MAX);
}

int db_record_ignored_many(struct db *db, const struct db_device *devs, const char *const *reasons,
                           size_t n) {
        bool trim = false;
        int r;

        if (!db || (n > 0 && (!devs || !reasons)))
                return -EINVAL;
        r = db_tx_begin(db);
        for (size_t i = 0; i < n && r >= 0; i++) {
                int64_t count = 0;
                if (!devs[i].devpath || !devs[i].kind)
                        continue;
                r = ignored_upsert(db, &devs[i], reasons[i] ? reasons[i] : "", &count);
                trim |= count == 1;
        }
        if (r >= 0 && trim)
                r = ignored_trim(db);
        return db_tx_end(db, r);
}

int db_record_ignored(struct db *db, const struct db_device *d, const char *reason) {
        int64_t count = 0;
        int r;

        if (!db || !d || !d->devpath || !d->kind)
                return -EINVAL;
        r = db_tx_begin(db);
        if (r < 0)
                return r;
        r = ignored_upsert(db, d, reason ? reason : "", &count);
        /* Only a new row can push the table over its bound. */
        if (r >= 0 && count == 1)
                r = ignored_trim(db);
        return db_tx_end(db, r);
}

int db_user_choice_get(struct db *db, const char *key, char **ret_vm, bool *ret_keep_detached) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        _cleanup_free_ char *any_port = NULL;
        const char *at;
        bool oom = false;
        char *vm;
        int r, rc;

        if (!db || !key || !ret_vm || !ret_keep_detached)
                return -EINVAL;
        r = db_prepare(db, queries[Q_CHOICE_GET], &s);
        if (r < 0)
                return r;
        /* "usb:VID:PID@PORTPATH" (no serial) also finds "usb:VID:PID@*". */
        at = strncmp(key, "usb:", 4) == 0 ? strchr(key, '@') : NULL;
        if (at && asprintf(&any_port, "%.*s@*", (int)(at - key), key) < 0)
                return -ENOMEM;
        r = db_bind_check(db, db_bind_text(s, 1, key));
        if (r >= 0)
                r = db_bind_check(db, db_bind_text(s, 2, any_port));
        if (r < 0)
                return r;
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE) {
                *ret_vm = NULL;
                *ret_keep_detached = false;
                return 0;
        }
        if (rc != SQLITE_ROW)
                return db_errno(db->sql, rc);
        vm = db_column_strdup(s, 0, &oom);
        if (oom)
                return -ENOMEM;
        *ret_vm = vm;
        *ret_keep_detached = sqlite3_column_int(s, 1) != 0;
        return 1;
}

int db_user_choice_set(struct db *db, const char *device_key, const char *vm, bool keep_detached) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r;

        if (!db || !device_key)
                return -EINVAL;
        r = db_tx_begin(db);
        if (r >= 0)
                r = db_prepare(db, query(db, Q_CHOICE_SET), &s);
        if (r >= 0 && (db_bind_text(s, 1, device_key) != SQLITE_OK || db_bind_text(s, 2, vm) != SQLITE_OK ||
                       sqlite3_bind_int(s, 3, keep_detached) != SQLITE_OK ||
                       db_bind_text(s, 4, db_requester(db)) != SQLITE_OK))
                r = db_errno(db->sql, sqlite3_errcode(db->sql));
        if (r >= 0)
                r = db_step_done(db, s);
        return db_tx_end(db, r);
}

/* Within a write transaction: the meta value of key into *ret (malloc'd; NULL when none). */
static int meta_get(struct db *db, const char *key, char **ret) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        bool oom = false;
        int r = db_prepare(db, queries[Q_META_GET], &s), rc;

        *ret = NULL;
        if (r >= 0)
                r = db_bind_check(db, db_bind_text(s, 1, key));
        if (r < 0)
                return r;
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
                *ret = db_column_strdup(s, 0, &oom);
        else if (rc != SQLITE_DONE)
                return db_errno(db->sql, rc);
        return oom ? -ENOMEM : 0;
}

/* Runs q, which returns no rows, with its text parameters (as many as it has, at most three). */
static int run_text(struct db *db, enum query q, const char *a, const char *b, const char *c) {
        const char *v[] = {a, b, c};
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r = db_prepare(db, queries[q], &s);

        for (int i = 0; r >= 0 && i < sqlite3_bind_parameter_count(s) && i < 3; i++)
                r = db_bind_check(db, db_bind_text(s, i + 1, v[i]));
        return r < 0 ? r : db_step_done(db, s);
}

static int choice_import(struct db *db, const struct db_choice *c, const char *by, bool *ret_stored) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r = db_prepare(db, queries[Q_CHOICE_IMPORT], &s);

        if (r >= 0 &&
            (db_bind_text(s, 1, c->key) != SQLITE_OK || db_bind_text(s, 2, c->vm) != SQLITE_OK ||
             sqlite3_bind_int(s, 3, c->keep_detached) != SQLITE_OK || db_bind_text(s, 4, by) != SQLITE_OK))
                r = db_errno(db->sql, sqlite3_errcode(db->sql));
        if (r >= 0)
                r = db_step_done(db, s);
        if (r >= 0)
                *ret_stored = sqlite3_changes(db->sql) > 0;
        return r;
}

int db_import_choices(struct db *db, const char *source, const struct db_choice *choices, size_t n,
                      const char *requested_by, size_t *ret_stored) {
        _cleanup_free_ char *meta_key = NULL, *done = NULL;
        size_t stored = 0;
        int r;

        if (!db || !source || (n > 0 && !choices))
                return -EINVAL;
        if (asprintf(&meta_key, "imported %s", source) < 0)
                return -ENOMEM;
        r = db_tx_begin(db);
        if (r < 0)
                return r;
        r = meta_get(db, meta_key, &done);
        if (r >= 0 && done)
                r = 1;
        for (size_t i = 0; r == 0 && i < n; i++) {
                _cleanup_free_ char *detail = NULL;
                bool new = false;
                r = choice_import(db, &choices[i], requested_by, &new);
                if (r < 0 || !new)
                        continue; /* a choice made here already wins */
                stored++;
                if (asprintf(&detail, "%s: %s%s%s (imported from %s)", choices[i].key,
                             choices[i].keep_detached ? "keep detached" : "",
                             choices[i].keep_detached && choices[i].vm ? ", " : "",
                             choices[i].vm ? "chosen VM" : "", source) < 0)
                        r = -ENOMEM;
                else
                        r = run_text(db, Q_CHOICE_HISTORY, choices[i].vm, detail, requested_by);
        }
        if (r == 0) {
                char count[32];
                snprintf(count, sizeof(count), "%zu of %zu choices", stored, n);
                r = run_text(db, Q_META_SET, meta_key, count, NULL);
        }
        r = db_tx_end(db, r);
        if (r >= 0 && ret_stored)
                *ret_stored = stored;
        return r;
}
