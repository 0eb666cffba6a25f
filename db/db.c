/* The SQLite state store: connection setup, migrations, and every DML statement of the product.
 * Statements are prepared once per connection and cached; values are always bound, never pasted.
 * Every write runs in a BEGIN IMMEDIATE transaction so concurrent helpers queue on the write lock
 * (busy_timeout) instead of failing on a lock upgrade. */
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "cleanup.h"
#include "db.h"
#include "schema.h"

#define NOW "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
#define OPEN_STATES "('pending', 'attaching', 'attached', 'detaching')"

/* Identity and rule columns copied from an attachment into each of its history rows. */
#define HISTORY_COPY_COLUMNS \
        "vm, devpath, kind, vendor_id, product_id, vendor_name, product_name, serial, busnum, " \
        "devnum, port_path, pci_address, devnode, vmm_id, bus, crosvm_port, rule_section, " \
        "rule_entry, rule_allow, rule_description"

#define ATTACHMENT_COLUMNS \
        "id, state, kind, devpath, vm, vmm_id, bus, crosvm_port, busnum, devnum, vendor_id, " \
        "product_id, serial, pci_address, devnode, error"

enum query {
        Q_BEGIN,
        Q_COMMIT,
        Q_ROLLBACK,
        Q_USER_VERSION,
        Q_QUICK_CHECK,
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
        Q_CHOICE_SET,
        _Q_MAX,
};

static const char *const queries[_Q_MAX] = {
        [Q_BEGIN] = "BEGIN IMMEDIATE",
        [Q_COMMIT] = "COMMIT",
        [Q_ROLLBACK] = "ROLLBACK",
        [Q_USER_VERSION] = "PRAGMA user_version",
        [Q_QUICK_CHECK] = "PRAGMA quick_check(1)",
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
                "INSERT INTO history (attachment_id, action, outcome, error, " HISTORY_COPY_COLUMNS ") "
                "SELECT id, CASE WHEN attached_at IS NULL THEN 'attach' ELSE 'detach' END, "
                "CASE WHEN attached_at IS NULL THEN 'failed' ELSE 'detached' END, 'superseded', "
                HISTORY_COPY_COLUMNS " FROM attachments "
                "WHERE devpath = ?1 AND state IN " OPEN_STATES,
        [Q_SUPERSEDE] =
                "UPDATE attachments SET "
                "state = CASE WHEN attached_at IS NULL THEN 'failed' ELSE 'detached' END, "
                "closed_at = " NOW ", updated_at = " NOW ", error = 'superseded' "
                "WHERE devpath = ?1 AND state IN " OPEN_STATES,
        [Q_ATTACHMENT_INSERT] =
                "INSERT INTO attachments (devpath, kind, device_key, vendor_id, product_id, "
                "vendor_name, product_name, serial, busnum, devnum, port_path, pci_address, "
                "devnode, vm, vmm_id, state, rule_section, rule_entry, rule_allow, "
                "rule_description) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, "
                "?17, ?18, ?19, ?20)",
        [Q_HISTORY_ADD] =
                "INSERT INTO history (attachment_id, action, outcome, detail, error, "
                HISTORY_COPY_COLUMNS ") "
                "SELECT id, ?2, ?3, ?4, ?5, " HISTORY_COPY_COLUMNS " FROM attachments WHERE id = ?1",
        [Q_ATTACH_FINISH] =
                "UPDATE attachments SET state = ?2, crosvm_port = coalesce(?3, crosvm_port), "
                "bus = coalesce(?4, bus), error = ?5, "
                "attached_at = CASE WHEN ?2 = 'attached' THEN coalesce(attached_at, " NOW ") "
                "ELSE attached_at END, "
                "closed_at = CASE WHEN ?2 = 'failed' THEN " NOW " END, updated_at = " NOW " "
                "WHERE id = ?1 AND state IN ('pending', 'attaching', 'attached')",
        [Q_DETACH_BEGIN] =
                "UPDATE attachments SET state = ?2, updated_at = " NOW " "
                "WHERE id = ?1 AND state IN " OPEN_STATES,
        [Q_DETACH_FINISH] =
                "UPDATE attachments SET state = ?2, error = coalesce(?3, error), "
                "closed_at = CASE WHEN ?2 = 'detached' THEN " NOW " END, updated_at = " NOW " "
                "WHERE id = ?1 AND state IN " OPEN_STATES,
        [Q_ATTACHMENT_GET] =
                "SELECT " ATTACHMENT_COLUMNS " FROM attachments "
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
        [Q_IGNORED_TRIM] =
                "DELETE FROM ignored WHERE id IN (SELECT id FROM ignored "
                "ORDER BY last_seen DESC, id DESC LIMIT -1 OFFSET ?1)",
        [Q_CHOICE_GET] = "SELECT vm, keep_detached FROM user_choices WHERE device_key = ?1",
        [Q_CHOICE_SET] =
                "INSERT INTO user_choices (device_key, vm, keep_detached, updated_at) "
                "VALUES (?1, ?2, ?3, " NOW ") "
                "ON CONFLICT (device_key) DO UPDATE SET vm = excluded.vm, "
                "keep_detached = excluded.keep_detached, updated_at = excluded.updated_at",
};

struct db {
        sqlite3 *sql;
        sqlite3_stmt *stmt[_Q_MAX];
        int lock_fd;            /* flock on PATH.repair-lock: shared while open, see db_open_repair */
};

static const char *const state_names[] = {
        [DB_PENDING] = "pending",
        [DB_ATTACHING] = "attaching",
        [DB_ATTACHED] = "attached",
        [DB_DETACHING] = "detaching",
        [DB_DETACHED] = "detached",
        [DB_FAILED] = "failed",
};

/* Our own tables, so that db/ does not depend on lib/ objects at link time. */
static const char *const kind_names[DEV_KIND_MAX] = {
        [DEV_USB] = "usb",
        [DEV_PCI] = "pci",
        [DEV_EVDEV] = "evdev",
};

static const char *const section_names[DEV_KIND_MAX] = {
        [DEV_USB] = "usbPassthrough",
        [DEV_PCI] = "pciPassthrough",
        [DEV_EVDEV] = "evdevPassthrough",
};

const char *db_state_name(enum db_state s) {
        if ((unsigned) s >= ELEMENTSOF(state_names))
                return NULL;
        return state_names[s];
}

static int state_from_name(const char *s) {
        for (size_t i = 0; s && i < ELEMENTSOF(state_names); i++)
                if (strcmp(s, state_names[i]) == 0)
                        return (int) i;
        return -EINVAL;
}

static const char *kind_name(enum dev_kind k) {
        return (unsigned) k < DEV_KIND_MAX ? kind_names[k] : NULL;
}

static enum dev_kind kind_from_name(const char *s) {
        for (int k = 0; s && k < DEV_KIND_MAX; k++)
                if (kind_names[k] && strcmp(s, kind_names[k]) == 0)
                        return (enum dev_kind) k;
        return DEV_UNKNOWN;
}

static int errno_from_sqlite(sqlite3 *sql, int rc) {
        int e;

        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_ROW:
        case SQLITE_DONE:
                return 0;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                return -EUCLEAN;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EPERM;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_TOOBIG:
                return -E2BIG;
        case SQLITE_CONSTRAINT:
                return -EEXIST;
        case SQLITE_MISMATCH:
        case SQLITE_RANGE:
        case SQLITE_MISUSE:
                return -EINVAL;
        case SQLITE_PROTOCOL:
                return -EPROTO;
        case SQLITE_CANTOPEN:
        case SQLITE_IOERR:
                e = sql ? sqlite3_system_errno(sql) : 0;
                if (e > 0)
                        return -e;
                return (rc & 0xff) == SQLITE_CANTOPEN ? -EACCES : -EIO;
        default:
                return -EIO;
        }
}

static int64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps 1 ms, doubling up to 100 ms, with jitter so that many processes do not retry in step. */
static void backoff(unsigned *delay_us) {
        unsigned jitter = ((unsigned) getpid() * 2654435761u) % (*delay_us / 2 + 1);

        usleep(*delay_us + jitter);
        if (*delay_us < 100000)
                *delay_us *= 2;
}

static void stmt_resetp(sqlite3_stmt **s) {
        if (!*s)
                return;
        sqlite3_reset(*s);
        sqlite3_clear_bindings(*s);
}
#define _cleanup_reset_ _cleanup_(stmt_resetp)

static int prepare(struct db *db, enum query q, sqlite3_stmt **ret) {
        int rc;

        if (!db->stmt[q]) {
                rc = sqlite3_prepare_v3(db->sql, queries[q], -1, SQLITE_PREPARE_PERSISTENT,
                                        &db->stmt[q], NULL);
                if (rc != SQLITE_OK)
                        return errno_from_sqlite(db->sql, rc);
        }
        *ret = db->stmt[q];
        return 0;
}

/* Steps a statement that returns no rows. */
static int step_done(struct db *db, sqlite3_stmt *s) {
        int rc = sqlite3_step(s);

        return rc == SQLITE_DONE ? 0 : errno_from_sqlite(db->sql, rc == SQLITE_ROW ? SQLITE_MISUSE : rc);
}

/* Runs one of the argument-less cached statements (BEGIN, COMMIT, ...). */
static int run(struct db *db, enum query q) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r;

        r = prepare(db, q, &s);
        if (r < 0)
                return r;
        return step_done(db, s);
}

/* Device strings may hold any byte: bound as text with an explicit, capped length. */
static int bind_str(sqlite3_stmt *s, int i, const char *v) {
        if (!v)
                return sqlite3_bind_null(s, i);
        return sqlite3_bind_text(s, i, v, (int) strnlen(v, DB_STR_MAX), SQLITE_STATIC);
}

static int bind_int_if(sqlite3_stmt *s, int i, bool present, int64_t v) {
        return present ? sqlite3_bind_int64(s, i, v) : sqlite3_bind_null(s, i);
}

static int bind_hex4(sqlite3_stmt *s, int i, bool present, uint16_t v) {
        char buf[5];

        if (!present)
                return sqlite3_bind_null(s, i);
        snprintf(buf, sizeof(buf), "%04x", v);
        return sqlite3_bind_text(s, i, buf, 4, SQLITE_TRANSIENT);
}

static int bind_check(struct db *db, int rc) {
        return rc == SQLITE_OK ? 0 : errno_from_sqlite(db->sql, rc);
}

/* Starts a write transaction. The busy handler waits up to DB_BUSY_TIMEOUT_MS; SQLite also returns
 * SQLITE_BUSY without calling it in some WAL situations (recovery), and its polling is not fair
 * under heavy contention, so retry until a longer deadline. */
static int tx_begin(struct db *db) {
        int64_t deadline = now_ms() + DB_LOCK_WAIT_MS;
        unsigned delay = 1000;
        int r;

        for (;;) {
                r = run(db, Q_BEGIN);
                if (r != -EBUSY || now_ms() >= deadline)
                        return r;
                backoff(&delay);
        }
}

/* Commits when r >= 0, else rolls back. Returns r, or the commit's error. */
static int tx_end(struct db *db, int r) {
        if (r >= 0) {
                int c = run(db, Q_COMMIT);
                if (c >= 0)
                        return r;
                r = c;
        }
        if (sqlite3_get_autocommit(db->sql) == 0)
                (void) run(db, Q_ROLLBACK);
        return r;
}

/* Runs fixed SQL (pragmas at open), retrying SQLITE_BUSY: switching a new database to WAL needs
 * an exclusive lock, which many processes opening at once contend for. */
static int exec_retry(struct db *db, const char *sql) {
        int64_t deadline = now_ms() + DB_BUSY_TIMEOUT_MS;
        unsigned delay = 1000;
        int rc;

        for (;;) {
                rc = sqlite3_exec(db->sql, sql, NULL, NULL, NULL);
                if (rc == SQLITE_OK)
                        return 0;
                if ((rc & 0xff) != SQLITE_BUSY || now_ms() >= deadline)
                        return errno_from_sqlite(db->sql, rc);
                backoff(&delay);
        }
}

static int user_version(struct db *db, int *ret) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r, rc;

        r = prepare(db, Q_USER_VERSION, &s);
        if (r < 0)
                return r;
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW)
                return errno_from_sqlite(db->sql, rc);
        *ret = sqlite3_column_int(s, 0);
        return 0;
}

static int migrate(struct db *db, int max_version) {
        int r, v;

        r = user_version(db, &v);
        if (r < 0)
                return r;
        if (v > db_schema_n_migrations)
                return -EPROTONOSUPPORT;
        if (v >= max_version)
                return 0;

        r = tx_begin(db);
        if (r < 0)
                return r;
        /* Another process may have migrated while we waited for the lock. */
        r = user_version(db, &v);
        for (; r >= 0 && v < max_version; v++) {
                int rc = sqlite3_exec(db->sql, db_schema_migrations[v], NULL, NULL, NULL);
                if (rc != SQLITE_OK)
                        r = errno_from_sqlite(db->sql, rc);
        }
        return tx_end(db, r);
}

static int mkdir_parents(const char *path) {
        _cleanup_free_ char *p = strdup(path);
        char *slash;

        if (!p)
                return -ENOMEM;
        slash = strrchr(p, '/');
        if (!slash || slash == p)
                return 0;
        *slash = '\0';
        for (char *c = p + 1;; c++) {
                if (*c != '/' && *c != '\0')
                        continue;
                char saved = *c;
                *c = '\0';
                if (mkdir(p, 0700) < 0 && errno != EEXIST)
                        return -errno;
                *c = saved;
                if (saved == '\0')
                        return 0;
        }
}

/* Creates the file ourselves (SQLite would use 0644; -wal/-shm inherit its mode), then opens it.
 * Another process may rename the file away in between (db_open_repair): then try again. */
static int open_connection(const char *path, sqlite3 **ret) {
        int r = -ENOENT;

        for (int attempt = 0; attempt < 10 && r == -ENOENT; attempt++) {
                sqlite3 *sql = NULL;
                int fd, rc;

                fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
                if (fd >= 0)
                        close(fd);
                else if (errno != EEXIST)
                        return -errno;
                rc = sqlite3_open_v2(path, &sql, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
                if (rc == SQLITE_OK) {
                        *ret = sql;
                        return 0;
                }
                r = sql ? errno_from_sqlite(sql, rc) : -ENOMEM;
                sqlite3_close(sql);
        }
        return r;
}

/* Each short-lived process is usually the only connection, so SQLite rebuilds its WAL index at
 * every open by reading the whole WAL, and never gets to restart the WAL (that needs a checkpoint
 * seen by the next writer of the same index). Left alone, the WAL grows with every event and so
 * does every event's cost. So whoever closes with a WAL past DB_WAL_TRUNCATE_BYTES checkpoints it
 * and truncates it, without waiting: if others are busy, a later closer does it. */
static void truncate_wal(struct db *db) {
        const char *file = sqlite3_db_filename(db->sql, "main");
        char wal[PATH_MAX];
        struct stat st;

        if (!file || !*file || snprintf(wal, sizeof(wal), "%s-wal", file) >= (int)sizeof(wal) ||
            stat(wal, &st) < 0 || st.st_size < DB_WAL_TRUNCATE_BYTES)
                return;
        sqlite3_busy_timeout(db->sql, 0);
        (void)sqlite3_wal_checkpoint_v2(db->sql, "main", SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
}

void db_close(struct db *db) {
        if (!db)
                return;
        for (size_t i = 0; i < _Q_MAX; i++)
                sqlite3_finalize(db->stmt[i]);
        if (db->sql)
                truncate_wal(db);
        sqlite3_close(db->sql);
        if (db->lock_fd >= 0)
                close(db->lock_fd);
        free(db);
}

/* Takes the repair lock of path: LOCK_SH for every connection while it is open, LOCK_EX to move a
 * broken file aside. SQLite opens PATH-wal and PATH-shm by name, so a connection opened on the old
 * file must not live on while a new file takes its name. Waits at most DB_LOCK_WAIT_MS. */
static int repair_lock(const char *path, int op) {
        _cleanup_free_ char *lockpath = NULL;
        int64_t deadline = now_ms() + DB_LOCK_WAIT_MS;
        unsigned delay = 1000;
        int fd, r;

        if (asprintf(&lockpath, "%s.repair-lock", path) < 0)
                return -ENOMEM;
        fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        if (fd < 0)
                return -errno;
        while (flock(fd, op | LOCK_NB) < 0) {
                if (errno == EINTR)
                        continue;
                r = errno == EWOULDBLOCK ? -EBUSY : -errno;
                if (r != -EBUSY || now_ms() >= deadline) {
                        close(fd);
                        return r;
                }
                backoff(&delay);
        }
        return fd;
}

/* Opens and migrates path; the caller holds the repair lock (lock_fd, owned by the result on
 * success, or -1 when the caller keeps it). */
static int open_locked(const char *path, int max_version, int lock_fd, struct db **ret) {
        struct db *db;
        int r;

        db = calloc(1, sizeof(*db));
        if (!db)
                return -ENOMEM;
        db->lock_fd = -1;
        r = open_connection(path, &db->sql);
        if (r < 0) {
                db_close(db);
                return r;
        }
        sqlite3_busy_timeout(db->sql, DB_BUSY_TIMEOUT_MS);
        /* Helpers are short-lived: a checkpoint (with its fsyncs) at every close would cost them
         * more than the event's work; truncate_wal() does it now and then instead. */
        sqlite3_db_config(db->sql, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);

        r = exec_retry(db, "PRAGMA journal_mode = WAL");
        if (r >= 0)
                r = exec_retry(db, "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL");
        if (r >= 0)
                r = migrate(db, max_version);
        if (r < 0) {
                db_close(db);
                return r;
        }
        db->lock_fd = lock_fd;
        *ret = db;
        return 0;
}

int db_open_version(const char *path, int max_version, struct db **ret) {
        int lock, r;

        if (!path || !*path || !ret || max_version < 1 || max_version > db_schema_n_migrations)
                return -EINVAL;
        r = mkdir_parents(path);
        if (r < 0)
                return r;
        lock = repair_lock(path, LOCK_SH);
        if (lock < 0)
                return lock;
        r = open_locked(path, max_version, lock, ret);
        if (r < 0)
                close(lock);
        return r;
}

int db_open(const char *path, struct db **ret) {
        return db_open_version(path, db_schema_n_migrations, ret);
}

const char *db_errmsg(struct db *db) {
        return db ? sqlite3_errmsg(db->sql) : "no database";
}

int db_move_aside(const char *path, char *ret_new_path, size_t len) {
        static const char *const suffixes[] = { "-wal", "-shm", "-journal" };
        _cleanup_free_ char *target = NULL;
        char stamp[32];
        struct tm tm;
        struct stat st;
        time_t t = time(NULL);

        if (!path || !*path)
                return -EINVAL;
        if (lstat(path, &st) < 0)
                return -errno;
        if (!gmtime_r(&t, &tm) || strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm) == 0)
                return -EINVAL;

        for (int n = 0; n < 1000; n++) {
                free(target);
                target = NULL;
                if ((n == 0 ? asprintf(&target, "%s.corrupt-%s", path, stamp)
                            : asprintf(&target, "%s.corrupt-%s-%d", path, stamp, n)) < 0)
                        return -ENOMEM;
                if (lstat(target, &st) < 0 && errno == ENOENT)
                        break;
        }
        if (rename(path, target) < 0)
                return -errno;
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                _cleanup_free_ char *from = NULL, *to = NULL;

                if (asprintf(&from, "%s%s", path, suffixes[i]) < 0 ||
                    asprintf(&to, "%s%s", target, suffixes[i]) < 0)
                        return -ENOMEM;
                if (rename(from, to) < 0 && errno != ENOENT)
                        return -errno;
        }
        if (ret_new_path && len > 0)
                snprintf(ret_new_path, len, "%s", target);
        return 0;
}

/* Returns 1 when stale, 0 when recorded. */
static int seqnum_upsert(struct db *db, const char *devpath, uint64_t seqnum, const char *boot_id) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r;

        r = prepare(db, Q_SEQNUM_UPSERT, &s);
        if (r < 0)
                return r;
        if (bind_str(s, 1, devpath) != SQLITE_OK || sqlite3_bind_int64(s, 2, (int64_t) seqnum) != SQLITE_OK ||
            bind_str(s, 3, boot_id) != SQLITE_OK)
                return errno_from_sqlite(db->sql, sqlite3_errcode(db->sql));
        r = step_done(db, s);
        if (r < 0)
                return r;
        return sqlite3_changes(db->sql) == 0;
}

static int seqnum_forget_boots(struct db *db, const char *boot_id) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r;

        r = prepare(db, Q_SEQNUM_FORGET_BOOTS, &s);
        if (r < 0)
                return r;
        r = bind_check(db, bind_str(s, 1, boot_id));
        return r < 0 ? r : step_done(db, s);
}

int db_event_seqnum_check(struct db *db, const char *devpath, uint64_t seqnum, const char *boot_id) {
        int r;

        if (!db || !devpath || seqnum > INT64_MAX)
                return -EINVAL;
        if (seqnum == 0)
                return 0;
        r = tx_begin(db);
        if (r < 0)
                return r;
        if (!boot_id)
                boot_id = "";
        r = seqnum_upsert(db, devpath, seqnum, boot_id);
        if (r >= 0) {
                int k = seqnum_forget_boots(db, boot_id);
                if (k < 0)
                        r = k;
        }
        return tx_end(db, r);
}

static char *column_strdup(sqlite3_stmt *s, int i, bool *oom) {
        const unsigned char *t = sqlite3_column_text(s, i);
        int n = sqlite3_column_bytes(s, i);
        char *p;

        if (!t)
                return NULL;
        p = malloc((size_t) n + 1);
        if (!p) {
                *oom = true;
                return NULL;
        }
        memcpy(p, t, (size_t) n);
        p[n] = '\0';
        return p;
}

static uint16_t column_hex4(sqlite3_stmt *s, int i) {
        const char *t = (const char *) sqlite3_column_text(s, i);

        return t ? (uint16_t) strtoul(t, NULL, 16) : 0;
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
        *a = (struct db_attachment) {};
}

/* Reads a row of ATTACHMENT_COLUMNS. */
static int attachment_from_row(sqlite3_stmt *s, struct db_attachment *ret) {
        bool oom = false;
        int st = state_from_name((const char *) sqlite3_column_text(s, 1));
        struct db_attachment a = {
                .id = sqlite3_column_int64(s, 0),
                .state = st < 0 ? DB_FAILED : (enum db_state) st,
                .kind = kind_from_name((const char *) sqlite3_column_text(s, 2)),
                .devpath = column_strdup(s, 3, &oom),
                .vm = column_strdup(s, 4, &oom),
                .vmm_id = column_strdup(s, 5, &oom),
                .bus = column_strdup(s, 6, &oom),
                .crosvm_port = sqlite3_column_type(s, 7) == SQLITE_NULL ? -1 : sqlite3_column_int(s, 7),
                .busnum = sqlite3_column_int(s, 8),
                .devnum = sqlite3_column_int(s, 9),
                .vendor_id = column_hex4(s, 10),
                .product_id = column_hex4(s, 11),
                .serial = column_strdup(s, 12, &oom),
                .pci_address = column_strdup(s, 13, &oom),
                .devnode = column_strdup(s, 14, &oom),
                .error = column_strdup(s, 15, &oom),
        };

        if (!oom && !a.bus && !(a.bus = strdup("")))
                oom = true;
        if (oom) {
                db_attachment_clear(&a);
                return -ENOMEM;
        }
        *ret = a;
        return 0;
}

int db_attachment_get(struct db *db, const char *devpath, struct db_attachment *ret) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r, rc;

        if (!db || !devpath || !ret)
                return -EINVAL;
        r = prepare(db, Q_ATTACHMENT_GET, &s);
        if (r < 0)
                return r;
        r = bind_check(db, bind_str(s, 1, devpath));
        if (r < 0)
                return r;
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
                return 0;
        if (rc != SQLITE_ROW)
                return errno_from_sqlite(db->sql, rc);
        r = attachment_from_row(s, ret);
        return r < 0 ? r : 1;
}

void db_attachment_list_free(struct db_attachment *a, size_t n) {
        for (size_t i = 0; a && i < n; i++)
                db_attachment_clear(&a[i]);
        free(a);
}

int db_attachment_list(struct db *db, const char *vm, struct db_attachment **ret, size_t *ret_n) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        struct db_attachment *list = NULL;
        size_t n = 0, cap = 0;
        int r, rc;

        if (!db || !ret || !ret_n)
                return -EINVAL;
        r = prepare(db, Q_ATTACHMENT_LIST, &s);
        if (r < 0)
                return r;
        r = bind_check(db, bind_str(s, 1, vm));
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
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
                if (r < 0)
                        break;
                n++;
        }
        if (r >= 0 && rc != SQLITE_DONE)
                r = errno_from_sqlite(db->sql, rc);
        if (r < 0) {
                db_attachment_list_free(list, n);
                return r;
        }
        *ret = list;
        *ret_n = n;
        return 0;
}

/* The evdev kind has no product name: its input device's name stands in. */
static const char *product_name(const struct dev *d) {
        return d->product_name || d->kind != DEV_EVDEV ? d->product_name : d->name;
}

static int history_add(struct db *db, int64_t id, const char *action, const char *outcome,
                       const char *detail, const char *error) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r;

        r = prepare(db, Q_HISTORY_ADD, &s);
        if (r < 0)
                return r;
        if (sqlite3_bind_int64(s, 1, id) != SQLITE_OK || bind_str(s, 2, action) != SQLITE_OK ||
            bind_str(s, 3, outcome) != SQLITE_OK || bind_str(s, 4, detail) != SQLITE_OK ||
            bind_str(s, 5, error) != SQLITE_OK)
                return errno_from_sqlite(db->sql, sqlite3_errcode(db->sql));
        r = step_done(db, s);
        if (r >= 0 && sqlite3_changes(db->sql) != 1)
                return -ENOENT;
        return r;
}

/* Closes any open row of devpath (a killed helper's), each with a history row. */
static int supersede(struct db *db, const char *devpath) {
        static const enum query steps[] = { Q_SUPERSEDE_HISTORY, Q_SUPERSEDE };

        for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
                _cleanup_reset_ sqlite3_stmt *s = NULL;
                int r = prepare(db, steps[i], &s);
                if (r < 0)
                        return r;
                r = bind_check(db, bind_str(s, 1, devpath));
                if (r >= 0)
                        r = step_done(db, s);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int attachment_insert(struct db *db, const struct dev *d, const struct rule_decision *dec,
                             const char *vmm_id, enum db_state state, int64_t *ret_id) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        char key[DB_DEVICE_KEY_MAX];
        bool usb = d->kind == DEV_USB;
        int rc = SQLITE_OK, r;

        r = prepare(db, Q_ATTACHMENT_INSERT, &s);
        if (r < 0)
                return r;
        db_device_key(d, key, sizeof(key));
        rc |= bind_str(s, 1, d->devpath);
        rc |= bind_str(s, 2, kind_name(d->kind));
        rc |= bind_str(s, 3, key);
        rc |= bind_hex4(s, 4, d->has_ids, d->vendor_id);
        rc |= bind_hex4(s, 5, d->has_ids, d->product_id);
        rc |= bind_str(s, 6, d->vendor_name);
        rc |= bind_str(s, 7, product_name(d));
        rc |= bind_str(s, 8, d->serial);
        rc |= bind_int_if(s, 9, usb && d->busnum > 0, d->busnum);
        rc |= bind_int_if(s, 10, usb && d->devnum > 0, d->devnum);
        rc |= bind_str(s, 11, d->port_path);
        rc |= bind_str(s, 12, d->pci_address);
        rc |= bind_str(s, 13, d->devnode);
        rc |= bind_str(s, 14, dec->vm->name);
        rc |= bind_str(s, 15, vmm_id);
        rc |= bind_str(s, 16, db_state_name(state));
        rc |= bind_str(s, 17, section_names[d->kind]);
        rc |= bind_int_if(s, 18, dec->entry_index >= 0, dec->entry_index);
        rc |= bind_int_if(s, 19, dec->rule_index >= 0, dec->rule_index);
        rc |= bind_str(s, 20, dec->rule_description);
        if (rc != SQLITE_OK)
                return errno_from_sqlite(db->sql, sqlite3_errcode(db->sql));
        r = step_done(db, s);
        if (r < 0)
                return r;
        *ret_id = sqlite3_last_insert_rowid(db->sql);
        return 0;
}

int db_attach_begin(struct db *db, const struct dev *d, const struct rule_decision *dec,
                    const char *vmm_id, enum db_state state, int64_t *ret_id) {
        int64_t id = 0;
        int r;

        if (!db || !d || !d->devpath || !kind_name(d->kind) || !dec || !dec->vm || !dec->vm->name ||
            (state != DB_ATTACHING && state != DB_PENDING))
                return -EINVAL;

        r = tx_begin(db);
        if (r < 0)
                return r;
        r = supersede(db, d->devpath);
        if (r >= 0)
                r = attachment_insert(db, d, dec, vmm_id, state, &id);
        if (r >= 0)
                r = history_add(db, id, "attach", state == DB_PENDING ? "pending" : "started", NULL, NULL);
        r = tx_end(db, r);
        if (r < 0)
                return r;
        if (ret_id)
                *ret_id = id;
        return 0;
}

/* Runs an UPDATE of one attachment (?1 id, ?2 state name, ?3.. extra) and its history row. */
static int attachment_update(struct db *db, enum query q, int64_t id, enum db_state state,
                             int crosvm_port, const char *bus, const char *error,
                             const char *action, const char *outcome, const char *detail) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int rc = SQLITE_OK, r;

        r = prepare(db, q, &s);
        if (r < 0)
                return r;
        rc |= sqlite3_bind_int64(s, 1, id);
        rc |= bind_str(s, 2, db_state_name(state));
        if (q == Q_ATTACH_FINISH) {
                rc |= bind_int_if(s, 3, crosvm_port >= 0, crosvm_port);
                rc |= bind_str(s, 4, bus);
                rc |= bind_str(s, 5, error);
        } else if (q == Q_DETACH_FINISH)
                rc |= bind_str(s, 3, error);
        if (rc != SQLITE_OK)
                return errno_from_sqlite(db->sql, sqlite3_errcode(db->sql));
        r = step_done(db, s);
        if (r < 0)
                return r;
        if (sqlite3_changes(db->sql) == 0)
                return -ENOENT;
        return history_add(db, id, action, outcome, detail, error);
}

int db_attach_adopted(struct db *db, int64_t id, int crosvm_port, const char *bus, const char *detail) {
        int r;

        if (!db)
                return -EINVAL;
        r = tx_begin(db);
        if (r < 0)
                return r;
        r = attachment_update(db, Q_ATTACH_FINISH, id, DB_ATTACHED, crosvm_port, bus, NULL, "attach",
                              db_state_name(DB_ATTACHED), detail);
        return tx_end(db, r);
}

int db_attach_finish(struct db *db, int64_t id, enum db_state state, int crosvm_port, const char *bus,
                     const char *error) {
        int r;

        if (!db || (state != DB_ATTACHED && state != DB_PENDING && state != DB_FAILED))
                return -EINVAL;
        r = tx_begin(db);
        if (r < 0)
                return r;
        r = attachment_update(db, Q_ATTACH_FINISH, id, state, crosvm_port, bus, error, "attach",
                              db_state_name(state), NULL);
        return tx_end(db, r);
}

int db_detach_begin(struct db *db, int64_t id, const char *why) {
        int r;

        if (!db)
                return -EINVAL;
        r = tx_begin(db);
        if (r < 0)
                return r;
        r = attachment_update(db, Q_DETACH_BEGIN, id, DB_DETACHING, -1, NULL, NULL, "detach",
                              "detaching", why);
        return tx_end(db, r);
}

int db_detach_finish(struct db *db, int64_t id, enum db_state state, const char *error) {
        int r;

        if (!db || (state != DB_DETACHED && state != DB_DETACHING))
                return -EINVAL;
        r = tx_begin(db);
        if (r < 0)
                return r;
        r = attachment_update(db, Q_DETACH_FINISH, id, state, -1, NULL, error, "detach",
                              db_state_name(state), NULL);
        return tx_end(db, r);
}

static int ignored_upsert(struct db *db, const struct dev *d, const char *reason, int64_t *ret_count) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        bool usb = d->kind == DEV_USB;
        int rc = SQLITE_OK, r;

        r = prepare(db, Q_IGNORED_UPSERT, &s);
        if (r < 0)
                return r;
        rc |= bind_str(s, 1, d->devpath);
        rc |= bind_str(s, 2, reason);
        rc |= bind_str(s, 3, kind_name(d->kind));
        rc |= bind_hex4(s, 4, d->has_ids, d->vendor_id);
        rc |= bind_hex4(s, 5, d->has_ids, d->product_id);
        rc |= bind_str(s, 6, d->vendor_name);
        rc |= bind_str(s, 7, product_name(d));
        rc |= bind_str(s, 8, d->serial);
        rc |= bind_int_if(s, 9, usb && d->busnum > 0, d->busnum);
        rc |= bind_int_if(s, 10, usb && d->devnum > 0, d->devnum);
        rc |= bind_str(s, 11, d->port_path);
        rc |= bind_str(s, 12, d->pci_address);
        rc |= bind_str(s, 13, d->devnode);
        if (rc != SQLITE_OK)
                return errno_from_sqlite(db->sql, sqlite3_errcode(db->sql));
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW)
                return errno_from_sqlite(db->sql, rc == SQLITE_DONE ? SQLITE_MISUSE : rc);
        *ret_count = sqlite3_column_int64(s, 0);
        return step_done(db, s);
}

static int ignored_trim(struct db *db) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r;

        r = prepare(db, Q_IGNORED_TRIM, &s);
        if (r < 0)
                return r;
        r = bind_check(db, sqlite3_bind_int(s, 1, DB_IGNORED_MAX));
        return r < 0 ? r : step_done(db, s);
}

int db_record_ignored_many(struct db *db, const struct dev *const *devs, const char *const *reasons, size_t n) {
        bool trim = false;
        int r;

        if (!db || (n > 0 && (!devs || !reasons)))
                return -EINVAL;
        r = tx_begin(db);
        for (size_t i = 0; i < n && r >= 0; i++) {
                int64_t count = 0;
                if (!devs[i] || !devs[i]->devpath)
                        continue;
                r = ignored_upsert(db, devs[i], reasons[i] ? reasons[i] : "", &count);
                trim |= count == 1;
        }
        if (r >= 0 && trim)
                r = ignored_trim(db);
        return tx_end(db, r);
}

int db_record_ignored(struct db *db, const struct dev *d, const char *reason) {
        int64_t count = 0;
        int r;

        if (!db || !d || !d->devpath)
                return -EINVAL;
        r = tx_begin(db);
        if (r < 0)
                return r;
        r = ignored_upsert(db, d, reason ? reason : "", &count);
        /* Only a new row can push the table over its bound. */
        if (r >= 0 && count == 1)
                r = ignored_trim(db);
        return tx_end(db, r);
}

void db_device_key(const struct dev *d, char *buf, size_t len) {
        if (!buf || len == 0)
                return;
        if (!d) {
                buf[0] = '\0';
                return;
        }
        switch (d->kind) {
        case DEV_USB:
                if (d->serial && d->serial[0])
                        snprintf(buf, len, "usb:%04x:%04x:%s", d->vendor_id, d->product_id, d->serial);
                else
                        snprintf(buf, len, "usb:%04x:%04x@%s", d->vendor_id, d->product_id,
                                 d->port_path ? d->port_path : "");
                break;
        case DEV_PCI:
                snprintf(buf, len, "pci:%s", d->pci_address ? d->pci_address : "");
                break;
        case DEV_EVDEV:
                snprintf(buf, len, "evdev:%s@%s", d->name ? d->name : "", d->path_tag ? d->path_tag : "");
                break;
        default:
                snprintf(buf, len, "unknown:%s", d->devpath ? d->devpath : "");
                break;
        }
}

int db_user_choice_get(struct db *db, const struct dev *d, char **ret_vm, bool *ret_keep_detached) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        char key[DB_DEVICE_KEY_MAX];
        bool oom = false;
        char *vm;
        int r, rc;

        if (!db || !d || !ret_vm || !ret_keep_detached)
                return -EINVAL;
        db_device_key(d, key, sizeof(key));
        r = prepare(db, Q_CHOICE_GET, &s);
        if (r < 0)
                return r;
        r = bind_check(db, bind_str(s, 1, key));
        if (r < 0)
                return r;
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE) {
                *ret_vm = NULL;
                *ret_keep_detached = false;
                return 0;
        }
        if (rc != SQLITE_ROW)
                return errno_from_sqlite(db->sql, rc);
        vm = column_strdup(s, 0, &oom);
        if (oom)
                return -ENOMEM;
        *ret_vm = vm;
        *ret_keep_detached = sqlite3_column_int(s, 1) != 0;
        return 1;
}

static int user_choice_upsert(struct db *db, const char *device_key, const char *vm, bool keep_detached) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r;

        r = prepare(db, Q_CHOICE_SET, &s);
        if (r < 0)
                return r;
        if (bind_str(s, 1, device_key) != SQLITE_OK || bind_str(s, 2, vm) != SQLITE_OK ||
            sqlite3_bind_int(s, 3, keep_detached) != SQLITE_OK)
                return errno_from_sqlite(db->sql, sqlite3_errcode(db->sql));
        return step_done(db, s);
}

int db_user_choice_set(struct db *db, const char *device_key, const char *vm, bool keep_detached) {
        int r;

        if (!db || !device_key)
                return -EINVAL;
        r = tx_begin(db);
        if (r < 0)
                return r;
        r = user_choice_upsert(db, device_key, vm, keep_detached);
        return tx_end(db, r);
}

/* PRAGMA quick_check (reads the whole file): -EUCLEAN unless SQLite finds the file sound. */
static int quick_check(struct db *db) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        const char *v;
        int r, rc;

        r = prepare(db, Q_QUICK_CHECK, &s);
        if (r < 0)
                return r;
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
                return -EUCLEAN;
        if (rc != SQLITE_ROW)
                return errno_from_sqlite(db->sql, rc);
        v = (const char *) sqlite3_column_text(s, 0);
        return v && strcmp(v, "ok") == 0 ? 0 : -EUCLEAN;
}

int db_open_repair(const char *path, bool check, struct db **ret, char *ret_moved, size_t len) {
        struct db *db = NULL;
        int r, lock, moved = 0;

        if (!ret)
                return -EINVAL;
        if (ret_moved && len > 0)
                ret_moved[0] = 0;
        r = db_open(path, &db);
        if (r >= 0 && check)
                r = quick_check(db);
        if (r >= 0) {
                *ret = db;
                return 0;
        }
        db_close(db);
        if (r != -EUCLEAN)
                return r;

        /* Wait until no connection uses the file; many helpers may find the damage at once: the
         * first moves the file aside, the others then find the new file sound. */
        lock = repair_lock(path, LOCK_EX);
        if (lock < 0)
                return lock;
        db = NULL;
        r = open_locked(path, db_schema_n_migrations, -1, &db);
        if (r >= 0 && check)
                r = quick_check(db);
        if (r == -EUCLEAN) {
                db_close(db);
                db = NULL;
                r = db_move_aside(path, ret_moved, len);
                if (r >= 0)
                        r = open_locked(path, db_schema_n_migrations, -1, &db);
                moved = 1;
        }
        if (r < 0) {
                db_close(db);
                close(lock);
                return r;
        }
        /* Keep the lock, shared, for the connection's life like db_open does. */
        (void) flock(lock, LOCK_SH);
        db->lock_fd = lock;
        *ret = db;
        return moved;
}
