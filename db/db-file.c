/* The state database as a file: creating and opening it, pragmas, migrations, moving a corrupt file
 * aside, transactions, closing (and keeping the WAL short). The statements are in db.c. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "cleanup.h"
#include "db-internal.h"
#include "lock.h"
#include "schema.h"
#include "util.h"

#define BACKOFF_MAX_MS 100

int db_errno(sqlite3 *sql, int rc) {
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

const char *db_strerror(int r) {
        switch (r) {
        case -EBUSY:
                return "the database stayed locked by other writers";
        case -EUCLEAN:
                return "the database file is corrupt";
        case -EPROTONOSUPPORT:
                return "the database was made by a newer vhotplug (schema too new)";
        case -EROFS:
                return "the database is read-only";
        case -ENOSPC:
                return "the disk holding the database is full";
        case -ENOENT:
                return "no such record";
        case -EPERM:
                return "the database or its directory is not root's alone (owned by another user, or "
                       "writable by group or others); --no-strict-perms accepts it";
        case -ELOOP:
                return "the database path is a symbolic link";
        default:
                return strerror(r < 0 ? -r : r);
        }
}

/* Runs fixed SQL once. */
static int exec_sql(struct db *db, const char *sql) {
        return db_errno(db->sql, sqlite3_exec(db->sql, sql, NULL, NULL, NULL));
}

/* Starts a write transaction. Our writers queue on PATH.write-lock first: a blocking flock hands
 * the lock to the next writer the moment it is released, where SQLite's busy handler would sleep
 * and poll. SQLITE_BUSY can still come from others (an administrator's sqlite3, WAL recovery):
 * the busy handler waits for those, retried up to the same deadline. */
int db_tx_begin(struct db *db) {
        int64_t deadline = now_ms() + DB_LOCK_WAIT_MS, delay = 1;
        int r;

        r = lock_wait(db->write_fd, LOCK_EX, DB_LOCK_WAIT_MS);
        if (r < 0)
                return r == -ETIMEDOUT ? -EBUSY : r;
        for (;;) {
                r = exec_sql(db, "BEGIN IMMEDIATE");
                if (r != -EBUSY || now_ms() >= deadline)
                        break;
                sleep_ms(backoff_next(&delay, BACKOFF_MAX_MS));
        }
        if (r < 0)
                (void)flock(db->write_fd, LOCK_UN);
        return r;
}

int db_tx_end(struct db *db, int r) {
        if (r >= 0) {
                int c = exec_sql(db, "COMMIT");
                if (c >= 0) {
                        (void)flock(db->write_fd, LOCK_UN);
                        return r;
                }
                r = c;
        }
        if (sqlite3_get_autocommit(db->sql) == 0)
                (void)exec_sql(db, "ROLLBACK");
        (void)flock(db->write_fd, LOCK_UN);
        return r;
}

/* Runs fixed SQL (pragmas at open), retrying SQLITE_BUSY: switching a new database to WAL needs
 * an exclusive lock, which many processes opening at once contend for. */
static int exec_retry(struct db *db, const char *sql) {
        int64_t deadline = now_ms() + DB_BUSY_TIMEOUT_MS, delay = 1;
        int rc;

        for (;;) {
                rc = sqlite3_exec(db->sql, sql, NULL, NULL, NULL);
                if (rc == SQLITE_OK)
                        return 0;
                if ((rc & 0xff) != SQLITE_BUSY || now_ms() >= deadline)
                        return db_errno(db->sql, rc);
                sleep_ms(backoff_next(&delay, BACKOFF_MAX_MS));
        }
}

/* Reads a one-row, one-column integer pragma. */
static int pragma_int(struct db *db, const char *sql, int *ret) {
        sqlite3_stmt *s = NULL;
        int rc = sqlite3_prepare_v2(db->sql, sql, -1, &s, NULL);

        if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
                *ret = sqlite3_column_int(s, 0);
                rc = SQLITE_OK;
        }
        sqlite3_finalize(s);
        return db_errno(db->sql, rc);
}

static int migrate(struct db *db, int max_version) {
        int r, v;

        r = pragma_int(db, "PRAGMA user_version", &v);
        if (r < 0)
                return r;
        if (v > db_schema_n_migrations)
                return -EPROTONOSUPPORT;
        db->version = v;
        if (v >= max_version)
                return 0;

        r = db_tx_begin(db);
        if (r < 0)
                return r;
        /* Another process may have migrated while we waited for the lock. */
        r = pragma_int(db, "PRAGMA user_version", &v);
        for (; r >= 0 && v < max_version; v++) {
                int rc = sqlite3_exec(db->sql, db_schema_migrations[v], NULL, NULL, NULL);
                if (rc != SQLITE_OK)
                        r = db_errno(db->sql, rc);
        }
        r = db_tx_end(db, r);
        if (r >= 0)
                db->version = v;
        return r;
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
                if (mkdir(p, 0711) < 0 && errno != EEXIST)
                        return -errno;
                *c = saved;
                if (saved == '\0')
                        return 0;
        }
}

/* The database steers a root program (choices, keep-detached): like the configuration, it must be
 * root's alone. -EPERM unless st is owned by root and writable by nobody else. */
static int check_owner(const struct stat *st, unsigned flags) {
        if (flags & DB_NO_STRICT_PERMS)
                return 0;
        return st->st_uid == 0 && !(st->st_mode & (S_IWGRP | S_IWOTH)) ? 0 : -EPERM;
}

/* The directory holding path: a directory, root's alone. */
static int check_dir(const char *path, unsigned flags) {
        _cleanup_free_ char *dir = strdup(path);
        char *slash;
        struct stat st;

        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (!slash)
                strcpy(dir, ".");
        else if (slash == dir)
                slash[1] = '\0';
        else
                *slash = '\0';
        if (stat(dir, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        return check_owner(&st, flags);
}

/* Creates the file ourselves (SQLite would use 0644; -wal/-shm inherit its mode), then opens it.
 * The path itself may not be a symbolic link (it could point anywhere, and SQLite would put -wal
 * and -shm beside the link). Another process may rename the file away in between
 * (db_open_repair): then try again. */
static int open_connection(const char *path, unsigned flags, sqlite3 **ret) {
        int r = -ENOENT;

        for (int attempt = 0; attempt < 10 && r == -ENOENT; attempt++) {
                sqlite3 *sql = NULL;
                struct stat st;
                int fd, rc;

                fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0600);
                if (fd >= 0)
                        close(fd);
                else if (errno != EEXIST)
                        return -errno;
                if (lstat(path, &st) < 0) {
                        r = -errno;
                        continue;
                }
                if (S_ISLNK(st.st_mode))
                        return -ELOOP;
                if (!S_ISREG(st.st_mode))
                        return -EINVAL;
                r = check_owner(&st, flags);
                if (r < 0)
                        return r;
                rc = sqlite3_open_v2(path, &sql,
                                     SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
                                     NULL);
                if (rc == SQLITE_OK) {
                        *ret = sql;
                        return 0;
                }
                r = sql ? db_errno(sql, rc) : -ENOMEM;
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
        db_statements_free(db);
        if (db->sql)
                truncate_wal(db);
        sqlite3_close(db->sql);
        if (db->lock_fd >= 0)
                close(db->lock_fd);
        if (db->write_fd >= 0)
                close(db->write_fd);
        free(db);
}

/* Opens PATH.SUFFIX, the file a lock of the database is taken on. */
static int open_lock_file(const char *path, const char *suffix) {
        _cleanup_free_ char *lockpath = NULL;
        int fd;

        if (asprintf(&lockpath, "%s.%s", path, suffix) < 0)
                return -ENOMEM;
        fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        return fd < 0 ? -errno : fd;
}

/* Takes the repair lock of path: LOCK_SH for every connection while it is open, LOCK_EX to move a
 * broken file aside. SQLite opens PATH-wal and PATH-shm by name, so a connection opened on the old
 * file must not live on while a new file takes its name. Waits at most DB_LOCK_WAIT_MS. */
static int repair_lock(const char *path, int op) {
        int fd = open_lock_file(path, "repair-lock"), r;

        if (fd < 0)
                return fd;
        r = lock_wait(fd, op, DB_LOCK_WAIT_MS);
        if (r < 0) {
                close(fd);
                return r == -ETIMEDOUT ? -EBUSY : r;
        }
        return fd;
}

/* Whether the file's header already says WAL (the file format read and write versions, bytes 18
 * and 19, are 2): then "PRAGMA journal_mode = WAL", which every open would otherwise run, has
 * nothing to do. A short, new or unreadable file says no, and the pragma runs. */
static bool header_says_wal(const char *path) {
        unsigned char h[20];
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
        ssize_t n;

        if (fd < 0)
                return false;
        n = pread(fd, h, sizeof(h), 0);
        close(fd);
        return n == (ssize_t)sizeof(h) && memcmp(h, "SQLite format 3", 16) == 0 && h[18] == 2 && h[19] == 2;
}

/* Opens and migrates path; the caller holds the repair lock (lock_fd, owned by the result on
 * success, or -1 when the caller keeps it). */
static int open_locked(const char *path, unsigned flags, int max_version, int lock_fd, struct db **ret) {
        struct db *db;
        int r;

        db = calloc(1, sizeof(*db));
        if (!db)
                return -ENOMEM;
        db->lock_fd = -1;
        db->write_fd = open_lock_file(path, "write-lock");
        if (db->write_fd < 0) {
                r = db->write_fd;
                db_close(db);
                return r;
        }
        r = open_connection(path, flags, &db->sql);
        if (r < 0) {
                db_close(db);
                return r;
        }
        sqlite3_busy_timeout(db->sql, DB_BUSY_TIMEOUT_MS);
        /* Helpers are short-lived: a checkpoint (with its fsyncs) at every close would cost them
         * more than the event's work; truncate_wal() does it now and then instead. */
        sqlite3_db_config(db->sql, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);

        r = header_says_wal(path) ? 0 : exec_retry(db, "PRAGMA journal_mode = WAL");
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

int db_open_version(const char *path, unsigned flags, int max_version, struct db **ret) {
        int lock, r;

        if (!path || !*path || !ret || max_version < 1 || max_version > db_schema_n_migrations)
                return -EINVAL;
        r = mkdir_parents(path);
        if (r >= 0)
                r = check_dir(path, flags);
        if (r < 0)
                return r;
        lock = repair_lock(path, LOCK_SH);
        if (lock < 0)
                return lock;
        r = open_locked(path, flags, max_version, lock, ret);
        if (r < 0)
                close(lock);
        return r;
}

int db_open(const char *path, unsigned flags, struct db **ret) {
        return db_open_version(path, flags, db_schema_n_migrations, ret);
}

int db_move_aside(const char *path, char *ret_new_path, size_t len) {
        static const char *const suffixes[] = {"-wal", "-shm", "-journal"};
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

/* PRAGMA quick_check (reads the whole file): -EUCLEAN unless SQLite finds the file sound. */
static int quick_check(struct db *db) {
        sqlite3_stmt *s = NULL;
        const char *v;
        int r, rc;

        rc = sqlite3_prepare_v2(db->sql, "PRAGMA quick_check(1)", -1, &s, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
                v = (const char *)sqlite3_column_text(s, 0);
                r = v && strcmp(v, "ok") == 0 ? 0 : -EUCLEAN;
        } else {
                r = rc == SQLITE_DONE ? -EUCLEAN : db_errno(db->sql, rc);
        }
        sqlite3_finalize(s);
        return r;
}

int db_open_repair(const char *path, unsigned flags, struct db **ret, char *ret_moved, size_t len) {
        bool check = flags & DB_QUICK_CHECK;
        struct db *db = NULL;
        int r, lock, moved = 0;

        if (!ret)
                return -EINVAL;
        if (ret_moved && len > 0)
                ret_moved[0] = 0;
        r = db_open(path, flags, &db);
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
        r = open_locked(path, flags, db_schema_n_migrations, -1, &db);
        if (r >= 0 && check)
                r = quick_check(db);
        if (r == -EUCLEAN) {
                db_close(db);
                db = NULL;
                r = db_move_aside(path, ret_moved, len);
                if (r >= 0)
                        r = open_locked(path, flags, db_schema_n_migrations, -1, &db);
                moved = 1;
        }
        if (r < 0) {
                db_close(db);
                close(lock);
                return r;
        }
        /* Keep the lock, shared, for the connection's life like db_open does. */
        (void)flock(lock, LOCK_SH);
        db->lock_fd = lock;
        *ret = db;
        return moved;
}
