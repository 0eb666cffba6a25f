/* Tests of the SQLite state store (db/): real database files in a temporary directory. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "cleanup.h"
#include "db.h"
#include "xact.h"

struct fixture {
        char dir[64];
        char path[128];
};

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(p);
}

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/vhp-test-db-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->path, sizeof(f->path), "%s/state.db", f->dir);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;

        nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        assert_int_equal(access(f->dir, F_OK), -1);
        free(f);
        return 0;
}

/* Raw read-only access, to check what the API wrote. */
static sqlite3 *raw_open(const char *path) {
        sqlite3 *s = NULL;

        assert_int_equal(sqlite3_open_v2(path, &s, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        sqlite3_busy_timeout(s, 30000);
        return s;
}

static int64_t raw_int(const char *path, const char *sql) {
        sqlite3 *s = raw_open(path);
        sqlite3_stmt *st = NULL;
        int64_t v;

        if (sqlite3_prepare_v2(s, sql, -1, &st, NULL) != SQLITE_OK)
                fail_msg("%s: %s", sql, sqlite3_errmsg(s));
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(s);
        return v;
}

/* First column of the first row as text ("(null)" for NULL); caller frees. */
static char *raw_text(const char *path, const char *sql, const char *arg) {
        sqlite3 *s = raw_open(path);
        sqlite3_stmt *st = NULL;
        const char *t;
        char *v;

        if (sqlite3_prepare_v2(s, sql, -1, &st, NULL) != SQLITE_OK)
                fail_msg("%s: %s", sql, sqlite3_errmsg(s));
        if (arg)
                sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        t = (const char *)sqlite3_column_text(st, 0);
        v = strdup(t ? t : "(null)");
        sqlite3_finalize(st);
        sqlite3_close(s);
        return v;
}

static void raw_exec(const char *path, const char *sql) {
        sqlite3 *s = raw_open(path);

        if (sqlite3_exec(s, sql, NULL, NULL, NULL) != SQLITE_OK)
                fail_msg("%s: %s", sql, sqlite3_errmsg(s));
        sqlite3_close(s);
}

static struct cfg_vm vm1 = {.name = (char *)"vm1"};
static struct cfg_vm gui_vm = {.name = (char *)"gui-vm"};
static struct cfg_vm net_vm = {.name = (char *)"net-vm"};
static struct cfg_vm audio_vm = {.name = (char *)"audio-vm"};

static struct rule_decision decision(const struct cfg_vm *vm, int entry, int rule, const char *descr) {
        return (struct rule_decision){
                .action = RULE_ATTACH,
                .entry_index = entry,
                .rule_index = rule,
                .rule_description = descr,
                .vm = vm,
        };
}

/* The database takes plain records: these turn the test's devices and decisions into them as the
 * transaction does (xact_record_of). */
static struct db_device rec(const struct dev *d) {
        static char keys[16][DEV_KEY_MAX];
        static unsigned k;
        struct db_device r;

        xact_record_of(d, keys[k++ % 16], &r);
        return r;
}

static int attach_begin(struct db *db, const struct dev *d, const struct rule_decision *dec,
                        const char *vmm_id, enum db_state state, int64_t *ret_id) {
        struct db_device r = rec(d);
        struct db_rule_ref ref = {.section = cfg_section_name(d->kind),
                                  .entry = dec->entry_index,
                                  .allow = dec->rule_index,
                                  .description = dec->rule_description};
        return db_attach_begin(db, NULL, &r, &ref, dec->vm ? dec->vm->name : NULL, vmm_id, state, ret_id);
}

static int record_ignored(struct db *db, const struct dev *d, const char *reason) {
        struct db_device r = rec(d);
        return db_record_ignored(db, &r, reason);
}

static int seq_check(struct db *db, const char *devpath, uint64_t seqnum, const char *boot_id) {
        struct db_event_order o = {.devpath = devpath, .seqnum = seqnum, .boot_id = boot_id};
        return db_event_seqnum_check(db, &o);
}

static int choice_get(struct db *db, const struct dev *d, char **ret_vm, bool *ret_keep) {
        char key[DEV_KEY_MAX];
        dev_key(d, key, sizeof(key));
        return db_user_choice_get(db, key, ret_vm, ret_keep);
}

static struct dev usb_dev(const char *devpath, uint16_t vid, uint16_t pid, const char *serial) {
        return (struct dev){
                .kind = DEV_USB,
                .devpath = (char *)devpath,
                .sysname = (char *)"1-3.2",
                .vendor_name = (char *)"Logitech, Inc.",
                .product_name = (char *)"Unifying Receiver",
                .serial = (char *)serial,
                .has_ids = true,
                .vendor_id = vid,
                .product_id = pid,
                .busnum = 1,
                .devnum = 5,
                .port = 3,
                .port_path = (char *)"3.2",
                .devnode = (char *)"/dev/bus/usb/001/005",
                .dev_class = 0,
                .iommu_group = -1,
        };
}

static void test_open_creates(void **state) {
        struct fixture *f = *state;
        char dir[192], path[256];
        struct db *db = NULL;
        struct stat st;

        snprintf(dir, sizeof(dir), "%s/a/b", f->dir);
        snprintf(path, sizeof(path), "%s/state.db", dir);
        assert_int_equal(db_open(path, DB_NO_STRICT_PERMS, &db), 0);
        assert_non_null(db);
        /* Search but not list for others: an API socket user reaches its
         * socket in the state directory; the database file stays 0600. */
        assert_int_equal(stat(dir, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0711);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        /* SQLite gives the WAL the database file's mode. */
        char wal[272];
        snprintf(wal, sizeof(wal), "%s-wal", path);
        assert_int_equal(stat(wal, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        db_close(db);

        assert_int_equal(raw_int(path, "PRAGMA user_version"), DB_SCHEMA_VERSION);
        char *mode = raw_text(path, "PRAGMA journal_mode", NULL);
        assert_string_equal(mode, "wal");
        free(mode);
        /* Reopening an up-to-date database is fine and changes nothing. */
        assert_int_equal(db_open(path, DB_NO_STRICT_PERMS, &db), 0);
        db_close(db);
        assert_int_equal(raw_int(path, "PRAGMA user_version"), DB_SCHEMA_VERSION);
        assert_int_equal(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE type = 'view'"), 5);
        /* An open skips the WAL pragma when the header says WAL; a file someone switched back
         * to a rollback journal says otherwise and is put back into WAL. */
        raw_exec(path, "PRAGMA journal_mode = DELETE");
        mode = raw_text(path, "PRAGMA journal_mode", NULL);
        assert_string_equal(mode, "delete");
        free(mode);
        assert_int_equal(db_open(path, DB_NO_STRICT_PERMS, &db), 0);
        db_close(db);
        mode = raw_text(path, "PRAGMA journal_mode", NULL);
        assert_string_equal(mode, "wal");
        free(mode);
        db_close(NULL);
}

/* The database steers a root program: a file or directory that others may write, or a path that
 * is a symbolic link, is refused. */
static void test_open_ownership(void **state) {
        struct fixture *f = *state;
        char target[192], wal[192];
        struct db *db = NULL;
        struct stat st;

        /* A symbolic link, to an empty file: refused even without strict checks; nothing created. */
        snprintf(target, sizeof(target), "%s/elsewhere", f->dir);
        assert_int_equal(close(open(target, O_WRONLY | O_CREAT | O_EXCL, 0644)), 0);
        assert_int_equal(symlink(target, f->path), 0);
        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), -ELOOP);
        assert_int_equal(db_open(f->path, 0, &db), -ELOOP);
        assert_null(db);
        assert_int_equal(stat(target, &st), 0);
        assert_int_equal(st.st_size, 0);
        snprintf(wal, sizeof(wal), "%s-wal", f->path);
        assert_int_equal(access(wal, F_OK), -1);
        assert_int_equal(unlink(f->path), 0);

        /* A directory others may write. */
        assert_int_equal(chmod(f->dir, 0777), 0);
        assert_int_equal(db_open(f->path, 0, &db), -EPERM);
        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        db_close(TAKE_PTR(db));
        assert_int_equal(chmod(f->dir, 0700), 0);
        /* A file others may write. */
        assert_int_equal(chmod(f->path, 0666), 0);
        assert_int_equal(db_open(f->path, 0, &db), -EPERM);
        assert_int_equal(chmod(f->path, 0600), 0);
        if (geteuid() != 0) {
                /* Owned by whoever runs this: not root, so refused; root's own checks below. */
                assert_int_equal(db_open(f->path, 0, &db), -EPERM);
                skip(); /* optional: the ownership cases need root to chown */
        }
        assert_int_equal(db_open(f->path, 0, &db), 0);
        db_close(TAKE_PTR(db));
        /* A file owned by another user. */
        assert_int_equal(chown(f->path, 65534, 65534), 0);
        assert_int_equal(db_open(f->path, 0, &db), -EPERM);
        assert_non_null(strstr(db_strerror(-EPERM), "root's alone"));
        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        db_close(TAKE_PTR(db));
        assert_int_equal(chown(f->path, 0, 0), 0);
        /* A directory owned by another user. */
        assert_int_equal(chown(f->dir, 65534, 65534), 0);
        assert_int_equal(db_open(f->path, 0, &db), -EPERM);
        assert_int_equal(chown(f->dir, 0, 0), 0);
        assert_int_equal(db_open(f->path, 0, &db), 0);
        db_close(db);
}

static void test_open_invalid(void **state) {
        struct db *db = NULL;

        assert_int_equal(db_open(NULL, DB_NO_STRICT_PERMS, &db), -EINVAL);
        assert_int_equal(db_open("", DB_NO_STRICT_PERMS, &db), -EINVAL);
        assert_int_equal(db_open_version("/tmp/x.db", DB_NO_STRICT_PERMS, 0, &db), -EINVAL);
        assert_int_equal(db_open_version("/tmp/x.db", DB_NO_STRICT_PERMS, DB_SCHEMA_VERSION + 1, &db),
                         -EINVAL);
        assert_null(db);
}

static void check_moves_aside(const char *path) {
        char moved[512];
        struct db *db = NULL;

        char wal[520];
        bool had_wal;

        snprintf(wal, sizeof(wal), "%s-wal", path);
        had_wal = access(wal, F_OK) == 0;
        assert_int_equal(db_move_aside(path, moved, sizeof(moved)), 0);
        assert_non_null(strstr(moved, ".corrupt-"));
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(access(wal, F_OK), -1);
        assert_int_equal(access(moved, F_OK), 0);
        snprintf(wal, sizeof(wal), "%s-wal", moved);
        assert_int_equal(access(wal, F_OK) == 0, had_wal);
        assert_int_equal(db_open(path, DB_NO_STRICT_PERMS, &db), 0);
        db_close(db);
}

static void test_open_garbage(void **state) {
        struct fixture *f = *state;
        struct db *db = NULL;
        char buf[8192];
        int fd;

        srand(42);
        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = (char)(rand() & 0xff);
        fd = open(f->path, O_WRONLY | O_CREAT | O_EXCL, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
        close(fd);

        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), -EUCLEAN);
        assert_null(db);
        check_moves_aside(f->path);
        assert_int_equal(db_move_aside("/nonexistent/state.db", NULL, 0), -ENOENT);
}

static void test_open_truncated(void **state) {
        struct fixture *f = *state;
        struct db *db = NULL;
        struct stat st;
        char devpath[64];

        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        for (int i = 0; i < 200; i++) {
                struct dev d = usb_dev(devpath, 0x046d, 0xc52b, "0123456789abcdef0123456789abcdef");
                snprintf(devpath, sizeof(devpath), "/devices/pci0000:00/usb1/1-%d", i);
                assert_int_equal(record_ignored(db, &d, "no entry matched"), 0);
        }
        db_close(db);
        db = NULL;
        /* Everything into the main file, which then loses its second half. */
        raw_exec(f->path, "PRAGMA wal_checkpoint(TRUNCATE)");
        assert_int_equal(stat(f->path, &st), 0);
        assert_true(st.st_size > 8 * 4096);
        assert_int_equal(truncate(f->path, st.st_size / 2), 0);

        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), -EUCLEAN);
        assert_null(db);
        check_moves_aside(f->path);
}

/* Replaces the database (and its WAL, which would otherwise still serve the pages) with garbage. */
static void write_garbage(const char *path) {
        char buf[8192], side[512];
        int fd;

        for (const char *suffix = "-wal"; suffix; suffix = strcmp(suffix, "-wal") == 0 ? "-shm" : NULL) {
                snprintf(side, sizeof(side), "%s%s", path, suffix);
                unlink(side);
        }

        srand(7);
        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = (char)(rand() & 0xff);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
        close(fd);
}

static int count_moved(const char *dir) {
        _cleanup_free_ char *cmd = NULL;
        int n = 0;
        FILE *p;
        char line[512];

        assert_true(asprintf(&cmd, "ls '%s'", dir) > 0);
        p = popen(cmd, "r");
        assert_non_null(p);
        while (fgets(line, sizeof(line), p))
                if (strstr(line, ".corrupt-") && !strstr(line, "-wal") && !strstr(line, "-shm"))
                        n++;
        pclose(p);
        return n;
}

static void test_open_repair(void **state) {
        struct fixture *f = *state;
        struct db *db = NULL;
        char moved[512];

        /* A sound file is left alone. */
        assert_int_equal(
                db_open_repair(f->path, DB_NO_STRICT_PERMS | DB_QUICK_CHECK, &db, moved, sizeof(moved)), 0);
        assert_string_equal(moved, "");
        db_close(db);
        db = NULL;

        write_garbage(f->path);
        assert_int_equal(db_open_repair(f->path, DB_NO_STRICT_PERMS, &db, moved, sizeof(moved)), 1);
        assert_non_null(db);
        assert_non_null(strstr(moved, ".corrupt-"));
        assert_int_equal(access(moved, F_OK), 0);
        assert_int_equal(
                record_ignored(db, &(struct dev){.kind = DEV_PCI, .devpath = (char *)"/devices/x"}, "hub"),
                0);
        db_close(db);
        db = NULL;
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), DB_SCHEMA_VERSION);
        assert_int_equal(count_moved(f->dir), 1);
}

/* Damage past the pages an open reads is found only by the check. */
static void test_open_repair_check(void **state) {
        struct fixture *f = *state;
        struct db *db = NULL;
        char devpath[64], moved[512];
        struct stat st;
        int fd;

        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        for (int i = 0; i < 300; i++) {
                struct dev d = usb_dev(devpath, 0x046d, 0xc52b, "0123456789abcdef0123456789abcdef");
                snprintf(devpath, sizeof(devpath), "/devices/pci0000:00/usb1/1-%d", i);
                assert_int_equal(record_ignored(db, &d, "no entry matched"), 0);
        }
        db_close(db);
        db = NULL;
        raw_exec(f->path, "PRAGMA wal_checkpoint(TRUNCATE)");
        assert_int_equal(stat(f->path, &st), 0);
        /* Scribble over the middle of the last page: a leaf of table or index data. */
        fd = open(f->path, O_WRONLY);
        assert_true(fd >= 0);
        assert_int_equal(
                pwrite(fd, "garbage garbage garbage garbage garbage garbage", 47, st.st_size - 4096 + 8),
                47);
        close(fd);

        assert_int_equal(db_open_repair(f->path, DB_NO_STRICT_PERMS, &db, moved, sizeof(moved)), 0);
        db_close(db);
        db = NULL;
        assert_int_equal(
                db_open_repair(f->path, DB_NO_STRICT_PERMS | DB_QUICK_CHECK, &db, moved, sizeof(moved)), 1);
        assert_non_null(db);
        db_close(db);
        assert_int_equal(count_moved(f->dir), 1);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM ignored"), 0);
}

/* Many helpers find the same damage at once: the file is moved aside once, all get the new one. */
static void test_open_repair_concurrent(void **state) {
        struct fixture *f = *state;
        enum { N = 20 };
        pid_t pids[N];
        int go[2], repaired = 0, sound = 0;

        write_garbage(f->path);
        assert_int_equal(pipe(go), 0);
        for (int i = 0; i < N; i++) {
                pids[i] = fork();
                assert_true(pids[i] >= 0);
                if (pids[i] == 0) {
                        struct db *db = NULL;
                        char c;
                        int r;

                        close(go[1]);
                        if (read(go[0], &c, 1) != 0)
                                _exit(100);
                        r = db_open_repair(f->path, DB_NO_STRICT_PERMS, &db, NULL, 0);
                        if (r < 0)
                                _exit(100 + (-r & 0x7f));
                        int k = record_ignored(
                                db, &(struct dev){.kind = DEV_USB, .devpath = (char *)"/devices/usb1"},
                                "hub");
                        db_close(db);
                        _exit(k < 0 ? 10 + (-k & 0x3f) : r);
                }
        }
        close(go[0]);
        close(go[1]);
        for (int i = 0; i < N; i++) {
                int status;
                assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
                assert_true(WIFEXITED(status));
                if (WEXITSTATUS(status) == 1)
                        repaired++;
                else if (WEXITSTATUS(status) == 0)
                        sound++;
                else
                        fail_msg("child %d: exit %d", i, WEXITSTATUS(status));
        }
        assert_int_equal(repaired, 1);
        assert_int_equal(sound, N - 1);
        assert_int_equal(count_moved(f->dir), 1);
        assert_int_equal(raw_int(f->path, "SELECT count FROM ignored WHERE devpath = '/devices/usb1'"), N);
}

static void test_open_newer(void **state) {
        struct fixture *f = *state;
        struct db *db = NULL;

        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        db_close(db);
        db = NULL;
        raw_exec(f->path, "PRAGMA user_version = 99");
        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), -EPROTONOSUPPORT);
        assert_null(db);
        /* It was not touched. */
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 99);
}

static void test_migrate(void **state) {
        struct fixture *f = *state;
        struct rule_decision dec = decision(&vm1, 0, 1, "receiver");
        struct dev d = usb_dev("/devices/usb1/1-3.2", 0x046d, 0xc52b, "ABC");
        struct db *db = NULL;
        int64_t id;

        assert_int_equal(db_open_version(f->path, DB_NO_STRICT_PERMS, 1, &db), 0);
        assert_int_equal(attach_begin(db, &d, &dec, "vhp-usb-001-005", DB_ATTACHING, &id), 0);
        assert_int_equal(db_attach_finish(db, id, DB_ATTACHED, -1, NULL, NULL), 0);
        db_close(db);
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 1);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'view'"), 0);

        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        db_close(db);
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), DB_SCHEMA_VERSION);
        char *vm = raw_text(f->path, "SELECT vm FROM current_attachments WHERE serial = ?1", "ABC");
        assert_string_equal(vm, "vm1");
        free(vm);
        /* Asking for an older version of a newer database does not downgrade it. */
        assert_int_equal(db_open_version(f->path, DB_NO_STRICT_PERMS, 1, &db), 0);
        db_close(db);
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), DB_SCHEMA_VERSION);
}

/* Version 3 rebuilds the history table: rows written by version 2 survive, in order, with their
 * ids; the views over it, its indexes and its append-only trigger come back; the new tables exist. */
static void test_migrate_v3_history(void **state) {
        struct fixture *f = *state;
        struct rule_decision dec = decision(&vm1, 0, 1, "receiver");
        struct dev d = usb_dev("/devices/usb1/1-3.2", 0x046d, 0xc52b, "ABC");
        struct db *db = NULL;
        int64_t id;

        assert_int_equal(db_open_version(f->path, DB_NO_STRICT_PERMS, 2, &db), 0);
        assert_int_equal(attach_begin(db, &d, &dec, "vhp-usb-001-005", DB_ATTACHING, &id), 0);
        assert_int_equal(db_attach_finish(db, id, DB_ATTACHED, -1, NULL, NULL), 0);
        assert_int_equal(db_detach_begin(db, NULL, id, "device removed"), 0);
        assert_int_equal(db_detach_finish(db, id, DB_DETACHED, NULL), 0);
        db_close(db);
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 2);
        char *before =
                raw_text(f->path,
                         "SELECT group_concat(id || action || outcome || coalesce(detail, ''), ',') FROM "
                         "(SELECT * FROM history ORDER BY id)",
                         NULL);

        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        db_close(db);
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 3);
        char *after =
                raw_text(f->path,
                         "SELECT group_concat(id || action || outcome || coalesce(detail, ''), ',') FROM "
                         "(SELECT * FROM history ORDER BY id)",
                         NULL);
        assert_string_equal(after, before);
        free(before);
        free(after);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM attach_history WHERE requested_by IS NULL"),
                         4);
        assert_int_equal(
                raw_int(f->path,
                        "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'history'"),
                3);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'view'"), 5);
        assert_int_equal(
                raw_int(f->path,
                        "SELECT count(*) FROM sqlite_master WHERE name IN ('prompts', 'suspended', 'meta')"),
                3);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM current_attachments"), 0);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
        /* Still append-only. */
        sqlite3 *s = raw_open(f->path);
        assert_int_not_equal(sqlite3_exec(s, "UPDATE history SET detail = 'x'", NULL, NULL, NULL),
                             SQLITE_OK);
        assert_non_null(strstr(sqlite3_errmsg(s), "append-only"));
        sqlite3_close(s);
}

static void test_lifecycle(void **state) {
        struct fixture *f = *state;
        struct rule_decision dec = decision(&vm1, 2, 0, "Logitech receivers");
        struct dev d = usb_dev("/devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3.2", 0x046d, 0xc52b, "ABC123");
        struct db_attachment a = {}, *list = NULL;
        struct db *db = NULL;
        size_t n = 99;
        int64_t id = 0;

        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        assert_int_equal(db_attachment_get(db, d.devpath, &a), 0);
        assert_int_equal(attach_begin(db, &d, &dec, "vhp-usb-001-005", DB_ATTACHING, &id), 0);
        assert_true(id > 0);

        assert_int_equal(db_attachment_get(db, d.devpath, &a), 1);
        assert_int_equal(a.id, id);
        assert_int_equal(a.state, DB_ATTACHING);
        assert_string_equal(a.kind, "usb");
        assert_string_equal(a.devpath, d.devpath);
        assert_string_equal(a.vm, "vm1");
        assert_string_equal(a.vmm_id, "vhp-usb-001-005");
        assert_string_equal(a.bus, "");
        assert_int_equal(a.crosvm_port, -1);
        assert_int_equal(a.busnum, 1);
        assert_int_equal(a.devnum, 5);
        assert_int_equal(a.vendor_id, 0x046d);
        assert_int_equal(a.product_id, 0xc52b);
        assert_string_equal(a.serial, "ABC123");
        assert_null(a.pci_address);
        assert_string_equal(a.devnode, "/dev/bus/usb/001/005");
        assert_null(a.error);
        db_attachment_clear(&a);
        assert_null(a.devpath);

        assert_int_equal(db_attach_finish(db, id, DB_ATTACHED, 3, "rp1", NULL), 0);
        assert_int_equal(db_attachment_list(db, NULL, &list, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(list[0].state, DB_ATTACHED);
        assert_int_equal(list[0].crosvm_port, 3);
        assert_string_equal(list[0].bus, "rp1");
        db_attachment_list_free(list, n);
        assert_int_equal(db_attachment_list(db, "other-vm", &list, &n), 0);
        assert_int_equal(n, 0);
        db_attachment_list_free(list, n);

        assert_int_equal(db_detach_begin(db, NULL, id, "device removed"), 0);
        assert_int_equal(db_attachment_get(db, d.devpath, &a), 1);
        assert_int_equal(a.state, DB_DETACHING);
        db_attachment_clear(&a);
        assert_int_equal(db_detach_finish(db, id, DB_DETACHING, "timeout waiting for DEVICE_DELETED"), 0);
        assert_int_equal(db_detach_finish(db, id, DB_DETACHED, NULL), 0);
        assert_int_equal(db_attachment_get(db, d.devpath, &a), 0);
        /* A closed row takes no more steps. */
        assert_int_equal(db_detach_begin(db, NULL, id, NULL), -ENOENT);
        assert_int_equal(db_attach_finish(db, id, DB_ATTACHED, -1, NULL, NULL), -ENOENT);
        assert_int_equal(db_detach_finish(db, id, DB_DETACHED, NULL), -ENOENT);
        assert_int_equal(db_attach_finish(db, 12345, DB_ATTACHED, -1, NULL, NULL), -ENOENT);
        db_close(db);

        char *s = raw_text(f->path,
                           "SELECT group_concat(action || '/' || outcome || '/' || coalesce(detail, '-') "
                           "|| '/' || coalesce(error, '-'), ' ') FROM (SELECT * FROM history ORDER BY id)",
                           NULL);
        assert_string_equal(s, "attach/started/-/- attach/attached/-/- detach/detaching/device removed/- "
                               "detach/detaching/-/timeout waiting for DEVICE_DELETED detach/detached/-/-");
        free(s);
        s = raw_text(
                f->path,
                "SELECT state || ' ' || (attached_at IS NOT NULL) || ' ' || (closed_at IS NOT NULL) || ' ' "
                "|| rule_section || ' ' || rule_entry || ' ' || rule_allow || ' ' || rule_description || ' "
                "' "
                "|| vendor_id || ':' || product_id || ' ' || port_path || ' ' || device_key "
                "FROM attachments",
                NULL);
        assert_string_equal(s, "detached 1 1 usbPassthrough 2 0 Logitech receivers 046d:c52b 3.2 "
                               "usb:046d:c52b:ABC123");
        free(s);
        /* Every history row carries the identity. */
        assert_int_equal(raw_int(f->path,
                                 "SELECT count(*) FROM history WHERE serial = 'ABC123' AND vm = 'vm1' "
                                 "AND busnum = 1 AND devnum = 5 AND rule_entry = 2"),
                         5);
        /* Timestamps are ISO-8601 UTC with milliseconds. */
        s = raw_text(f->path, "SELECT created_at FROM attachments", NULL);
        assert_int_equal(strlen(s), 24);
        assert_true(s[10] == 'T' && s[19] == '.' && s[23] == 'Z');
        free(s);
        assert_true(raw_int(f->path, "SELECT seconds >= 0 FROM attachment_durations") == 1);
        /* The stalled detach is the one failure. */
        s = raw_text(f->path, "SELECT group_concat(outcome || ':' || error) FROM failures", NULL);
        assert_string_equal(s, "detaching:timeout waiting for DEVICE_DELETED");
        free(s);
}

static void test_adopted(void **state) {
        struct fixture *f = *state;
        struct rule_decision dec = decision(&vm1, 0, 0, NULL);
        struct dev d = usb_dev("/devices/usb1/1-6", 0x1050, 0x0407, "YK9");
        struct db_attachment a = {};
        struct db *db = NULL;
        int64_t id;

        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        assert_int_equal(attach_begin(db, &d, &dec, "", DB_ATTACHING, &id), 0);
        assert_int_equal(db_attach_adopted(db, id, 2, NULL, "adopted by reconcile"), 0);
        assert_int_equal(db_attachment_get(db, d.devpath, &a), 1);
        assert_int_equal(a.state, DB_ATTACHED);
        assert_int_equal(a.crosvm_port, 2);
        assert_null(a.error);
        db_attachment_clear(&a);
        db_close(db);
        char *s = raw_text(f->path,
                           "SELECT outcome || '|' || detail || '|' || coalesce(error, '-') FROM history "
                           "ORDER BY id DESC LIMIT 1",
                           NULL);
        assert_string_equal(s, "attached|adopted by reconcile|-");
        free(s);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM failures"), 0);
}

static void test_failed_and_pending(void **state) {
        struct fixture *f = *state;
        struct rule_decision dec = decision(&vm1, 0, -1, NULL);
        struct dev d = usb_dev("/devices/usb1/1-4", 0x0781, 0x5581, NULL);
        struct db_attachment a = {};
        struct db *db = NULL;
        int64_t id;

        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        assert_int_equal(attach_begin(db, &d, &dec, "vhp-usb-001-005", DB_PENDING, &id), 0);
        assert_int_equal(db_attachment_get(db, d.devpath, &a), 1);
        assert_int_equal(a.state, DB_PENDING);
        db_attachment_clear(&a);
        /* Still not running when the helper checks: not a failure. */
        assert_int_equal(db_attach_finish(db, id, DB_PENDING, -1, NULL, "VM not running"), 0);
        /* Reconcile attaches it later, and it fails. */
        assert_int_equal(db_attach_finish(db, id, DB_FAILED, -1, NULL, "failed to find host usb device 1:5"),
                         0);
        assert_int_equal(db_attachment_get(db, d.devpath, &a), 0);
        db_close(db);
        char *s =
                raw_text(f->path,
                         "SELECT state || '|' || error || '|' || (closed_at IS NOT NULL) || '|' "
                         "|| (attached_at IS NULL) || '|' || coalesce(rule_allow, 'null') FROM attachments",
                         NULL);
        assert_string_equal(s, "failed|failed to find host usb device 1:5|1|1|null");
        free(s);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM failures"), 1);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM history WHERE outcome = 'pending'"), 2);
}

static void test_superseded(void **state) {
        struct fixture *f = *state;
        struct rule_decision dec = decision(&vm1, 0, 0, NULL);
        struct dev d = usb_dev("/devices/usb1/1-5", 0x1050, 0x0407, "YK1");
        struct db_attachment a = {};
        struct db *db = NULL;
        int64_t id1, id2, id3;

        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        /* A helper died after recording its intent. */
        assert_int_equal(attach_begin(db, &d, &dec, "vhp-usb-001-005", DB_ATTACHING, &id1), 0);
        assert_int_equal(attach_begin(db, &d, &dec, "vhp-usb-001-005", DB_ATTACHING, &id2), 0);
        assert_int_not_equal(id1, id2);
        assert_int_equal(db_attachment_get(db, d.devpath, &a), 1);
        assert_int_equal(a.id, id2);
        db_attachment_clear(&a);
        assert_int_equal(db_attach_finish(db, id1, DB_ATTACHED, -1, NULL, NULL), -ENOENT);
        assert_int_equal(db_attach_finish(db, id2, DB_ATTACHED, -1, NULL, NULL), 0);
        /* An attached one superseded counts as detached. */
        assert_int_equal(attach_begin(db, &d, &dec, NULL, DB_ATTACHING, &id3), 0);
        db_close(db);

        char *s = raw_text(f->path,
                           "SELECT group_concat(state || ':' || coalesce(error, '-'), ' ') "
                           "FROM (SELECT * FROM attachments ORDER BY id)",
                           NULL);
        assert_string_equal(s, "failed:superseded detached:superseded attaching:-");
        free(s);
        s = raw_text(f->path,
                     "SELECT group_concat(action || '/' || outcome, ' ') FROM "
                     "(SELECT * FROM history WHERE error = 'superseded' ORDER BY id)",
                     NULL);
        assert_string_equal(s, "attach/failed detach/detached");
        free(s);
}

static void test_invalid_args(void **state) {
        struct fixture *f = *state;
        struct rule_decision dec = decision(&vm1, 0, 0, NULL), novm = decision(NULL, 0, 0, NULL);
        struct dev d = usb_dev("/devices/usb1/1-5", 1, 2, NULL), unk = d;
        struct db *db = NULL;
        int64_t id;

        unk.kind = DEV_UNKNOWN;
        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        assert_int_equal(attach_begin(db, &d, &dec, NULL, DB_ATTACHED, &id), -EINVAL);
        assert_int_equal(attach_begin(db, &d, &novm, NULL, DB_ATTACHING, &id), -EINVAL);
        assert_int_equal(attach_begin(db, &unk, &dec, NULL, DB_ATTACHING, &id), -EINVAL);
        assert_int_equal(attach_begin(db, &d, &dec, NULL, DB_ATTACHING, &id), 0);
        assert_int_equal(db_attach_finish(db, id, DB_DETACHED, -1, NULL, NULL), -EINVAL);
        assert_int_equal(db_detach_finish(db, id, DB_ATTACHED, NULL), -EINVAL);
        assert_int_equal(seq_check(db, "/devices/x", UINT64_MAX, "b"), -EINVAL);
        db_close(db);
        assert_string_equal(db_state_name(DB_DETACHING), "detaching");
        assert_null(db_state_name((enum db_state)42));
}

static void test_seqnum(void **state) {
        static const struct {
                const char *devpath;
                uint64_t seqnum;
                const char *boot;
                int stale;
        } steps[] = {
                {"/devices/a", 10, "boot1", 0}, {"/devices/a", 10, "boot1", 1}, /* duplicate */
                {"/devices/a", 9, "boot1", 1},                                  /* older */
                {"/devices/a", 11, "boot1", 0}, {"/devices/b", 5, "boot1", 0},  /* per devpath */
                {"/devices/a", 3, "boot2", 0},                                  /* SEQNUM restarts at boot */
                {"/devices/a", 3, "boot2", 1},  {"/devices/a", 0, "boot2", 0},  /* manual run: never stale */
                {"/devices/a", 0, "boot2", 0},  {"/devices/a", 4, "boot2", 0},  /* 0 recorded nothing */
        };
        struct fixture *f = *state;
        struct db *db = NULL;

        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
                int r = seq_check(db, steps[i].devpath, steps[i].seqnum, steps[i].boot);
                if (r != steps[i].stale)
                        fail_msg("step %zu: got %d, expected %d", i, r, steps[i].stale);
        }
        db_close(db);
        assert_int_equal(raw_int(f->path, "SELECT seqnum FROM seqnums WHERE devpath = '/devices/a'"), 4);
        /* Rows of earlier boots are dropped. */
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM seqnums"), 1);
}

static void test_ignored_bounded(void **state) {
        struct fixture *f = *state;
        struct db *db = NULL;
        char devpath[64];
        struct dev pci = {
                .kind = DEV_PCI,
                .devpath = (char *)"/devices/pci0000:00/0000:00:02.0",
                .has_ids = true,
                .vendor_id = 0x8086,
                .product_id = 0x46a6,
                .pci_address = (char *)"0000:00:02.0",
                .iommu_group = -1,
        };

        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        for (int i = 0; i < 3; i++)
                assert_int_equal(record_ignored(db, &pci, "no entry matched"), 0);
        assert_int_equal(record_ignored(db, &pci, "denied by pciPassthrough[0] deny[1]"), 0);
        for (int i = 0; i < DB_IGNORED_MAX + 50; i++) {
                struct dev d = usb_dev(devpath, 0x1d6b, 0x0002, NULL);
                snprintf(devpath, sizeof(devpath), "/devices/usb%d", i);
                assert_int_equal(record_ignored(db, &d, "hub"), 0);
        }
        db_close(db);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM ignored"), DB_IGNORED_MAX);
        /* The oldest went first; the newest stays. */
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM ignored WHERE kind = 'pci'"), 0);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM ignored WHERE devpath = '/devices/usb1049'"),
                         1);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM ignored WHERE devpath = '/devices/usb49'"),
                         0);

        /* A repeated (devpath, reason) only counts. */
        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        for (int i = 0; i < 3; i++)
                assert_int_equal(record_ignored(db, &pci, "no entry matched"), 0);
        db_close(db);
        assert_int_equal(raw_int(f->path, "SELECT count FROM ignored_devices WHERE ids = '8086:46a6'"), 3);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM ignored"), DB_IGNORED_MAX);
}

static void test_device_key(void **state) {
        struct dev usb = usb_dev("/devices/usb1/1-3.2", 0x046D, 0xC52B, "ABC"), usb_noserial = usb,
                   empty_serial = usb;
        struct dev pci = {.kind = DEV_PCI, .pci_address = (char *)"0000:00:14.3"};
        struct dev ev = {.kind = DEV_EVDEV,
                         .name = (char *)"AT Translated Set 2 keyboard",
                         .path_tag = (char *)"platform-i8042-serio-0"};
        struct dev ev_bare = {.kind = DEV_EVDEV};
        struct dev unk = {.kind = DEV_UNKNOWN, .devpath = (char *)"/devices/x"};
        const struct {
                const struct dev *d;
                const char *key;
        } cases[] = {
                {&usb, "usb:046d:c52b:ABC"},
                {&usb_noserial, "usb:046d:c52b@3.2"},
                {&empty_serial, "usb:046d:c52b@3.2"},
                {&pci, "pci:0000:00:14.3"},
                {&ev, "evdev:AT Translated Set 2 keyboard@platform-i8042-serio-0"},
                {&ev_bare, "evdev:@"},
                {&unk, "unknown:/devices/x"},
        };
        char buf[DEV_KEY_MAX], small[8];

        usb_noserial.serial = NULL;
        empty_serial.serial = (char *)"";
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                dev_key(cases[i].d, buf, sizeof(buf));
                assert_string_equal(buf, cases[i].key);
        }
        dev_key(&usb, small, sizeof(small));
        assert_string_equal(small, "usb:046");
}

static void test_user_choice(void **state) {
        struct fixture *f = *state;
        struct dev d = usb_dev("/devices/usb1/1-3.2", 0x046d, 0xc52b, "ABC");
        struct db *db = NULL;
        char key[DEV_KEY_MAX];
        char *vm = (char *)"untouched";
        bool keep = true;

        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        assert_int_equal(choice_get(db, &d, &vm, &keep), 0);
        assert_null(vm);
        assert_false(keep);
        dev_key(&d, key, sizeof(key));
        assert_int_equal(db_user_choice_set(db, key, "vm2", false), 0);
        assert_int_equal(choice_get(db, &d, &vm, &keep), 1);
        assert_string_equal(vm, "vm2");
        assert_false(keep);
        free(vm);
        assert_int_equal(db_user_choice_set(db, key, NULL, true), 0);
        assert_int_equal(choice_get(db, &d, &vm, &keep), 1);
        assert_null(vm);
        assert_true(keep);
        db_close(db);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM user_choices"), 1);
}

/* Cold-plugged attachments are marked, and read back with the deciding entry. */
static void test_cold_plugged(void **state) {
        struct fixture *f = *state;
        struct rule_decision dec = decision(&gui_vm, 1, 0, "GPU");
        struct dev d = usb_dev("/devices/pci0000:00/0000:01:00.0", 0x10de, 0x2520, NULL);
        struct db_attachment a = {};
        struct db *db = NULL;
        int64_t id = 0;

        d.kind = DEV_PCI;
        d.pci_address = (char *)"0000:01:00.0";
        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        assert_int_equal(attach_begin(db, &d, &dec, "vhp-pci-0000-01-00.0", DB_ATTACHING, &id), 0);
        assert_int_equal(db_attachment_get(db, d.devpath, &a), 1);
        assert_false(a.cold_plugged);
        assert_int_equal(a.rule_entry, 1);
        db_attachment_clear(&a);
        assert_int_equal(db_attachment_set_cold_plugged(db, id), 0);
        assert_int_equal(db_attach_adopted(db, id, -1, "pci_hotplug_1", "cold-plugged"), 0);
        assert_int_equal(db_attachment_get(db, d.devpath, &a), 1);
        assert_true(a.cold_plugged);
        assert_int_equal(a.state, DB_ATTACHED);
        assert_string_equal(a.bus, "pci_hotplug_1");
        db_attachment_clear(&a);
        assert_int_equal(db_attachment_set_cold_plugged(db, id + 1), -ENOENT);
        db_close(db);
        assert_int_equal(raw_int(f->path, "SELECT cold_plugged FROM current_attachments"), 1);
}

/* Suspensions: one row per device, of one boot; another boot's rows neither count nor stay. */
static void test_suspended(void **state) {
        struct fixture *f = *state;
        struct rule_decision dec = decision(&vm1, 3, 0, NULL);
        struct dev d = usb_dev("/devices/usb1/1-2", 0x1209, 0x0001, "S1");
        struct db_suspension *l = NULL;
        struct db *db = NULL;
        size_t n = 99;
        int64_t id;

        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        assert_int_equal(attach_begin(db, &d, &dec, "vhp-usb-001-005", DB_ATTACHING, &id), 0);
        assert_int_equal(db_suspended_check(db, "/devices/usb1/1-2", "boot-a"), 0);
        assert_int_equal(db_suspended_add(db, "/devices/usb1/1-2", "usb:1209:0001:S1", "usb", "vm1",
                                          "boot-a", "vhotplugctl"),
                         0);
        assert_int_equal(
                db_suspended_add(db, "/devices/usb1/1-3", "usb:1209:0002:S2", "usb", "vm2", "boot-a", NULL),
                0);
        assert_int_equal(db_suspended_add(db, "/devices/pci0000:00/0000:00:14.3", "pci:0000:00:14.3", "pci",
                                          "vm1", "boot-a", NULL),
                         0);
        assert_int_equal(db_suspended_add(db, "/devices/usb1/1-4", "usb:1209:0003:S3", "usb", "vm1",
                                          "boot-old", NULL),
                         0);
        assert_int_equal(db_suspended_check(db, "/devices/usb1/1-2", "boot-a"), 1);
        assert_int_equal(db_suspended_check(db, "/devices/usb1/1-2", "boot-b"), 0); /* a reboot ends it */
        assert_int_equal(db_suspended_check(db, "/devices/usb1/1-4", "boot-a"), 0);

        assert_int_equal(db_suspended_list(db, "usb", NULL, "boot-a", &l, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(l[0].devpath, "/devices/usb1/1-2");
        assert_string_equal(l[0].kind, "usb");
        assert_string_equal(l[0].vm, "vm1");
        assert_string_equal(l[0].device_key, "usb:1209:0001:S1");
        assert_string_equal(l[0].requested_by, "vhotplugctl");
        assert_int_equal(l[0].rule_entry, 3); /* from its attachment */
        assert_int_equal(l[1].rule_entry, -1);
        assert_null(l[1].requested_by);
        db_suspension_list_free(l, n);
        assert_int_equal(db_suspended_list(db, NULL, "vm1", "boot-a", &l, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(l[1].kind, "pci");
        db_suspension_list_free(l, n);

        assert_int_equal(db_suspended_remove(db, "/devices/usb1/1-2"), 0);
        assert_int_equal(db_suspended_remove(db, "/devices/usb1/1-2"), 0);
        assert_int_equal(db_suspended_check(db, "/devices/usb1/1-2", "boot-a"), 0);
        assert_int_equal(db_suspended_forget_boots(db, "boot-a"), 0);
        db_close(db);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM suspended"), 2);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM suspended WHERE boot_id = 'boot-old'"), 0);
}

/* A choice for a device's ids on any port ("usb:VID:PID@*", what the older daemon knew of a device
 * without a serial) is found for such a device on whatever port; one for its own port wins. */
static void test_user_choice_any_port(void **state) {
        struct fixture *f = *state;
        struct dev d = usb_dev("/devices/usb1/1-3.2", 0x046d, 0xc077, NULL);
        struct dev serial = usb_dev("/devices/usb1/1-4", 0x046d, 0xc077, "S1");
        struct db *db = NULL;
        char key[DEV_KEY_MAX];
        char *vm = NULL;
        bool keep = false;

        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        assert_int_equal(db_user_choice_set(db, "usb:046d:c077@*", "vm1", true), 0);
        assert_int_equal(choice_get(db, &d, &vm, &keep), 1);
        assert_string_equal(vm, "vm1");
        assert_true(keep);
        free(TAKE_PTR(vm));
        dev_key(&d, key, sizeof(key));
        assert_string_equal(key, "usb:046d:c077@3.2");
        assert_int_equal(db_user_choice_set(db, key, "vm2", false), 0);
        assert_int_equal(choice_get(db, &d, &vm, &keep), 1);
        assert_string_equal(vm, "vm2");
        assert_false(keep);
        free(TAKE_PTR(vm));
        /* A device with a serial is known by it: the any-port choice is not its. */
        assert_int_equal(choice_get(db, &serial, &vm, &keep), 0);
        db_close(db);
}

static void test_hostile_strings(void **state) {
        struct fixture *f = *state;
        static char big[DEV_STR_MAX];
        const char *hostile[] = {
                "'); DROP TABLE attachments;--",
                "\"quoted\" 'single' `back`",
                "line1\nline2\r\n\ttab",
                "{\"json\": [1, 2, {\"k\": \"v\\\"\"}], \"x\": null}\\",
                "%s%n%x %% ?1 :name @p $v",
                "\xff\xfe invalid utf-8 \xc3\x28",
                big,
        };
        struct db *db = NULL;

        memset(big, 'A', sizeof(big) - 1);
        memcpy(big, "'\";--", 5);
        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        for (size_t i = 0; i < ELEMENTSOF(hostile); i++) {
                struct rule_decision dec = decision(&vm1, 0, 0, hostile[i]);
                char devpath[64];
                struct dev d = usb_dev(devpath, 0x1234, 0x5678, hostile[i]);
                struct db_attachment a = {};
                int64_t id;
                char *vm = NULL;
                bool keep;

                snprintf(devpath, sizeof(devpath), "/devices/usb1/1-%zu", i);
                d.vendor_name = d.product_name = d.devnode = (char *)hostile[i];
                assert_int_equal(attach_begin(db, &d, &dec, hostile[i], DB_ATTACHING, &id), 0);
                assert_int_equal(db_attach_finish(db, id, DB_FAILED, -1, hostile[i], hostile[i]), 0);

                /* A hostile devpath too. */
                d.devpath = (char *)hostile[i];
                assert_int_equal(record_ignored(db, &d, hostile[i]), 0);
                assert_int_equal(attach_begin(db, &d, &dec, hostile[i], DB_ATTACHING, &id), 0);
                assert_int_equal(db_attachment_get(db, hostile[i], &a), 1);
                assert_string_equal(a.devpath, hostile[i]);
                assert_string_equal(a.serial, hostile[i]);
                assert_string_equal(a.vmm_id, hostile[i]);
                assert_string_equal(a.devnode, hostile[i]);
                db_attachment_clear(&a);
                assert_int_equal(seq_check(db, hostile[i], 7, hostile[i]), 0);
                assert_int_equal(seq_check(db, hostile[i], 7, hostile[i]), 1);
                char *boot = raw_text(f->path, "SELECT boot_id FROM seqnums WHERE devpath = ?1", hostile[i]);
                assert_string_equal(boot, hostile[i]);
                free(boot);

                assert_int_equal(db_user_choice_set(db, "usb:1234:5678:x", hostile[i], false), 0);
                d.serial = (char *)"x";
                assert_int_equal(choice_get(db, &d, &vm, &keep), 1);
                assert_string_equal(vm, hostile[i]);
                free(vm);
        }
        db_close(db);

        for (size_t i = 0; i < ELEMENTSOF(hostile); i++) {
                static const char *const checks[] = {
                        "SELECT product_name FROM attachments WHERE devpath = ?1",
                        "SELECT vendor_name FROM attachments WHERE devpath = ?1",
                        "SELECT rule_description FROM attachments WHERE devpath = ?1",
                        "SELECT reason FROM ignored WHERE devpath = ?1",
                        "SELECT serial FROM history WHERE devpath = ?1",
                };
                for (size_t c = 0; c < ELEMENTSOF(checks); c++) {
                        char *s = raw_text(f->path, checks[c], hostile[i]);
                        assert_string_equal(s, hostile[i]);
                        free(s);
                }
        }
        char devpath[64];
        snprintf(devpath, sizeof(devpath), "/devices/usb1/1-0");
        char *s = raw_text(f->path, "SELECT error FROM attachments WHERE devpath = ?1", devpath);
        assert_string_equal(s, hostile[0]);
        free(s);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name = 'attachments'"),
                         1);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM attachments"), 2 * ELEMENTSOF(hostile));
}

/* Another connection holds the write lock for about a second; a writer waits and succeeds. */
static void test_busy_wait(void **state) {
        struct fixture *f = *state;
        struct rule_decision dec = decision(&vm1, 0, 0, NULL);
        struct dev d = usb_dev("/devices/usb1/1-1", 1, 2, NULL);
        struct db *db = NULL;
        struct timespec t0, t1;
        int pfd[2], status;
        char c;
        int64_t id;
        pid_t pid;

        /* Create the database first, but fork before opening our connection. */
        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        db_close(db);
        db = NULL;
        assert_int_equal(pipe(pfd), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                sqlite3 *s = NULL;
                int ok = sqlite3_open_v2(f->path, &s, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
                         sqlite3_exec(s,
                                      "BEGIN IMMEDIATE; INSERT INTO user_choices (device_key) VALUES ('k')",
                                      NULL, NULL, NULL) == SQLITE_OK;
                if (write(pfd[1], ok ? "1" : "0", 1) != 1)
                        _exit(3);
                usleep(1000 * 1000);
                ok = ok && sqlite3_exec(s, "COMMIT", NULL, NULL, NULL) == SQLITE_OK;
                sqlite3_close(s);
                _exit(ok ? 0 : 2);
        }
        close(pfd[1]);
        assert_int_equal(read(pfd[0], &c, 1), 1);
        close(pfd[0]);
        assert_int_equal(c, '1');
        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0); /* reading does not wait */
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(attach_begin(db, &d, &dec, NULL, DB_ATTACHING, &id), 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        /* It really waited for the lock (a lower bound only). */
        assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >= 500);
        db_close(db);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM user_choices"), 1);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM history"), 1);
}

#define CYCLES 5

static int child_work(const char *path, int n, int go_fd) {
        struct rule_decision dec = decision(&vm1, 0, 0, NULL);
        char devpath[64];
        struct dev d = usb_dev(devpath, 0x046d, 0xc52b, NULL);
        struct dev hub = usb_dev("/devices/usb1", 0x1d6b, 0x0002, NULL);
        struct db *db = NULL;
        int errors = 0;
        char c;

        snprintf(devpath, sizeof(devpath), "/devices/usb1/1-%d", n);
        if (read(go_fd, &c, 1) != 0)
                return 100;
        if (db_open(path, DB_NO_STRICT_PERMS, &db) < 0)
                return 101;
        for (int i = 0; i < CYCLES; i++) {
                int64_t id = 0;
                errors += seq_check(db, "/devices/shared", (uint64_t)n * CYCLES + i + 1, "boot") < 0;
                errors += attach_begin(db, &d, &dec, "vhp", DB_ATTACHING, &id) < 0;
                errors += db_attach_finish(db, id, DB_ATTACHED, -1, NULL, NULL) < 0;
                errors += db_detach_begin(db, NULL, id, "removed") < 0;
                errors += db_detach_finish(db, id, DB_DETACHED, NULL) < 0;
                errors += record_ignored(db, &hub, "hub") < 0;
        }
        db_close(db);
        return errors > 99 ? 99 : errors;
}

static void run_concurrent(const char *path, int nproc) {
        pid_t *pids = calloc((size_t)nproc, sizeof(pid_t));
        int go[2], failures = 0;
        char sql[128];

        assert_non_null(pids);
        assert_int_equal(pipe(go), 0);
        for (int i = 0; i < nproc; i++) {
                pids[i] = fork();
                assert_true(pids[i] >= 0);
                if (pids[i] == 0) {
                        close(go[1]);
                        _exit(child_work(path, i, go[0]));
                }
        }
        close(go[0]);
        close(go[1]); /* start them all at once */
        for (int i = 0; i < nproc; i++) {
                int status;
                assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                        print_error("child %d: status 0x%x\n", i, status);
                        failures++;
                }
        }
        free(pids);
        assert_int_equal(failures, 0);
        assert_int_equal(raw_int(path, "SELECT count(*) FROM history"), (int64_t)nproc * CYCLES * 4);
        assert_int_equal(raw_int(path, "SELECT count(*) FROM attachments WHERE state = 'detached'"),
                         (int64_t)nproc * CYCLES);
        assert_int_equal(raw_int(path, "SELECT count(*) FROM attachments"), (int64_t)nproc * CYCLES);
        snprintf(sql, sizeof(sql), "SELECT count(DISTINCT devpath) FROM history");
        assert_int_equal(raw_int(path, sql), nproc);
        assert_int_equal(raw_int(path, "SELECT count FROM ignored WHERE devpath = '/devices/usb1'"),
                         (int64_t)nproc * CYCLES);
        /* The highest seqnum offered always wins. */
        assert_int_equal(raw_int(path, "SELECT seqnum FROM seqnums WHERE devpath = '/devices/shared'"),
                         (int64_t)nproc * CYCLES);
}

static void test_concurrent_20(void **state) {
        struct fixture *f = *state;

        run_concurrent(f->path, 20);
}

static void test_concurrent_200(void **state) {
        struct fixture *f = *state;
        const char *preload = getenv("LD_PRELOAD");

        /* Optional under valgrind (make check-valgrind: counted as skipped): 200 processes take
         * minutes there on a small machine; the 20 above cover it. */
        if (preload && strstr(preload, "vgpreload"))
                skip();
        run_concurrent(f->path, 200);
}

/* Populates a database like a small laptop's, for the README queries. */
static void populate(const char *path) {
        struct rule_decision gui = decision(&gui_vm, 0, 1, "Logitech receivers");
        struct rule_decision net = decision(&net_vm, 0, 0, "Wi-Fi card");
        struct rule_decision audio = decision(&audio_vm, 0, -1, "all input devices");
        struct dev logi =
                usb_dev("/devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3.2", 0x046d, 0xc52b, "ABC123");
        struct dev stick = usb_dev("/devices/pci0000:00/0000:00:14.0/usb1/1-4", 0x0781, 0x5581, "4C530001");
        struct dev hub = usb_dev("/devices/pci0000:00/0000:00:14.0/usb1/1-1", 0x05e3, 0x0610, NULL);
        struct dev cam = usb_dev("/devices/pci0000:00/0000:00:14.0/usb1/1-5", 0x04f2, 0xb751, "0001");
        struct dev wifi = {
                .kind = DEV_PCI,
                .devpath = (char *)"/devices/pci0000:00/0000:00:14.3",
                .has_ids = true,
                .vendor_id = 0x8086,
                .product_id = 0xa0f0,
                .vendor_name = (char *)"Intel Corporation",
                .product_name = (char *)"Wi-Fi 6 AX201",
                .pci_address = (char *)"0000:00:14.3",
                .iommu_group = 8,
        };
        struct dev kbd = {
                .kind = DEV_EVDEV,
                .devpath = (char *)"/devices/platform/i8042/serio0/input/input3/event3",
                .name = (char *)"AT Translated Set 2 keyboard",
                .path_tag = (char *)"platform-i8042-serio-0",
                .devnode = (char *)"/dev/input/event3",
                .iommu_group = -1,
        };
        struct db *db = NULL;
        char key[DEV_KEY_MAX];
        int64_t id;

        stick.product_name = (char *)"Cruzer Blade";
        stick.vendor_name = (char *)"SanDisk Corp.";
        hub.product_name = (char *)"Hub";
        assert_int_equal(db_open(path, DB_NO_STRICT_PERMS, &db), 0);
        assert_int_equal(attach_begin(db, &wifi, &net, "vhp-pci-0000-00-14.3", DB_ATTACHING, &id), 0);
        assert_int_equal(db_attach_finish(db, id, DB_ATTACHED, -1, "rp1", NULL), 0);
        assert_int_equal(db_detach_begin(db, NULL, id, "VM stopped"), 0);
        assert_int_equal(db_detach_finish(db, id, DB_DETACHED, NULL), 0);
        assert_int_equal(attach_begin(db, &logi, &gui, "vhp-usb-001-005", DB_ATTACHING, &id), 0);
        assert_int_equal(db_attach_finish(db, id, DB_ATTACHED, -1, NULL, NULL), 0);
        assert_int_equal(attach_begin(db, &stick, &gui, "vhp-usb-001-006", DB_ATTACHING, &id), 0);
        assert_int_equal(db_attach_finish(db, id, DB_FAILED, -1, NULL, "failed to find host usb device 1:6"),
                         0);
        assert_int_equal(attach_begin(db, &kbd, &audio, "vhp-evdev-event3", DB_PENDING, &id), 0);
        assert_int_equal(record_ignored(db, &hub, "hub"), 0);
        assert_int_equal(record_ignored(db, &hub, "hub"), 0);
        cam.port_path = (char *)"5";
        assert_int_equal(record_ignored(db, &cam, "no usbPassthrough entry matched"), 0);
        dev_key(&logi, key, sizeof(key));
        assert_int_equal(db_user_choice_set(db, key, "gui-vm", false), 0);
        /* The user keeps the webcam on the host (vhotplugctl usb detach); a second one waits for a
         * choice of VM. */
        {
                struct db_device rec;
                struct dev cam2 =
                        usb_dev("/devices/pci0000:00/0000:00:14.0/usb1/1-6", 0x04f2, 0xb751, "0002");
                db_set_requested_by(db, "api unix uid=1000 pid=42");
                dev_key(&cam, key, sizeof(key));
                assert_int_equal(db_user_choice_set(db, key, NULL, true), 0);
                xact_record_of(&cam2, key, &rec);
                assert_int_equal(
                        db_prompt_add(db, NULL, &rec, NULL, "[\"gui-vm\",\"chrome-vm\"]", "waiting", NULL),
                        0);
        }
        db_close(db);
}

static char *read_file(const char *path) {
        _cleanup_fclose_ FILE *fp = fopen(path, "re");
        char *buf;
        long n;

        if (!fp)
                return NULL;
        assert_int_equal(fseek(fp, 0, SEEK_END), 0);
        n = ftell(fp);
        assert_true(n >= 0);
        rewind(fp);
        buf = malloc((size_t)n + 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
        buf[n] = '\0';
        return buf;
}

/* Runs every statement of sql; returns the rows as "a|b|c\n" lines. Fails the test on any error. */
static char *run_block(sqlite3 *s, const char *sql, size_t *ret_rows) {
        char *out = NULL;
        size_t outlen = 0, rows = 0;
        FILE *mem = open_memstream(&out, &outlen);
        const char *p = sql;

        assert_non_null(mem);
        while (*p) {
                sqlite3_stmt *st = NULL;
                const char *tail;
                int rc;

                if (sqlite3_prepare_v2(s, p, -1, &st, &tail) != SQLITE_OK)
                        fail_msg("example query fails: %s\n%s", sqlite3_errmsg(s), sql);
                p = tail;
                if (!st)
                        continue; /* whitespace or a comment */
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        for (int i = 0; i < sqlite3_column_count(st); i++) {
                                const char *t = (const char *)sqlite3_column_text(st, i);
                                fprintf(mem, "%s%s", i ? "|" : "", t ? t : "");
                        }
                        fputc('\n', mem);
                        rows++;
                }
                if (rc != SQLITE_DONE)
                        fail_msg("example query fails: %s\n%s", sqlite3_errmsg(s), sql);
                sqlite3_finalize(st);
        }
        fclose(mem);
        *ret_rows = rows;
        return out;
}

/* The README's user_choices example for the webcam (04f2:b751, on the host) uses the key vhotplug
 * builds (dev_key) from the webcam's identity as recorded in the database. */
static void check_webcam_key(sqlite3 *s, const char *readme, const char *quote) {
        sqlite3_stmt *st = NULL;
        _cleanup_free_ char *serial = NULL, *port_path = NULL;
        char key[DEV_KEY_MAX], quoted[DEV_KEY_MAX + 16];
        struct dev cam;

        assert_int_equal(sqlite3_prepare_v2(s,
                                            "SELECT serial, port_path FROM ignored WHERE vendor_id = '04f2' "
                                            "AND product_id = 'b751' ORDER BY id LIMIT 1",
                                            -1, &st, NULL),
                         SQLITE_OK);
        if (sqlite3_step(st) != SQLITE_ROW)
                fail_msg("no webcam 04f2:b751 among the ignored devices of the database");
        if (sqlite3_column_text(st, 0))
                serial = strdup((const char *)sqlite3_column_text(st, 0));
        if (sqlite3_column_text(st, 1))
                port_path = strdup((const char *)sqlite3_column_text(st, 1));
        sqlite3_finalize(st);
        cam = usb_dev("/devices/webcam", 0x04f2, 0xb751, serial);
        cam.port_path = port_path;
        dev_key(&cam, key, sizeof(key));
        snprintf(quoted, sizeof(quoted), "%s%s%s", quote, key, quote);
        if (!strstr(readme, quoted))
                fail_msg("the user_choices example for the webcam should use the key %s", quoted);
}

/* The SQL of a man page's example: roff escapes undone (\- \(aq \(dq \e \&); any other escape
 * fails the test, so the page shows exactly what is run. */
static char *man_unescape(const char *in, size_t n) {
        static const struct {
                const char *roff, *text;
        } esc[] = {
                {"\\-", "-"}, {"\\(aq", "'"}, {"\\(dq", "\""}, {"\\e", "\\"}, {"\\&", ""},
        };
        char *out = malloc(n + 1), *o = out;
        const char *p = in, *end = in + n;

        assert_non_null(out);
        while (p < end) {
                size_t i;
                if (*p != '\\') {
                        *o++ = *p++;
                        continue;
                }
                for (i = 0; i < sizeof(esc) / sizeof(esc[0]); i++)
                        if (strncmp(p, esc[i].roff, strlen(esc[i].roff)) == 0)
                                break;
                if (i == sizeof(esc) / sizeof(esc[0]))
                        fail_msg("unknown roff escape in an example query: %.10s", p);
                o = stpcpy(o, esc[i].text);
                p += strlen(esc[i].roff);
        }
        *o = '\0';
        return out;
}

/* Runs every SQL example of a document against s: the ```sql blocks of a Markdown file, or the
 * .EX blocks after a '.\" sql' line of a man page. with_rows: every SELECT must return rows (the
 * data set is made so that each has an answer; the INSERT examples only have to run). Returns the
 * number of blocks; *current_seen tells whether a current_attachments query returned gui-vm's. */
static int run_doc_queries(sqlite3 *s, const char *path, const char *text, bool man, bool with_rows,
                           bool *current_seen) {
        const char *open = man ? ".\\\" sql\n.EX\n" : "```sql\n", *close = man ? "\n.EE" : "\n```";
        int blocks = 0;

        for (const char *p = text; (p = strstr(p, open));) {
                const char *start = p + strlen(open), *end = strstr(start, close);
                size_t rows;

                assert_non_null(end);
                _cleanup_free_ char *sql = man ? man_unescape(start, (size_t)(end - start))
                                               : strndup(start, (size_t)(end - start));
                _cleanup_free_ char *out = run_block(s, sql, &rows);
                if (with_rows && rows == 0 && strstr(sql, "SELECT"))
                        fail_msg("%s: query returns no rows:\n%s", path, sql);
                if (strstr(sql, "FROM current_attachments")) {
                        *current_seen = true;
                        if (!strstr(out, "gui-vm|") || (with_rows && !strstr(out, "ABC123")) ||
                            strstr(out, "net-vm"))
                                fail_msg("%s: current attachments query returned:\n%s", path, out);
                }
                blocks++;
                p = end + strlen(close);
        }
        return blocks;
}

/* Runs every ```sql block of README.md and every example of vhotplug-db(5) against a database made
 * for them, or, with VHP_README_DB=PATH (test-demo.sh: a copy of the database make demo KEEP=1
 * kept), against real rows; then every query must run, and what is attached now must be gui-vm's. */
static void test_readme_queries(void **state) {
        struct fixture *f = *state;
        const char *top = getenv("VHP_TOP"), *ext = getenv("VHP_README_DB");
        static const char *const docs[] = {"README.md", "man/vhotplug-db.5"};
        sqlite3 *s;

        if (!ext)
                populate(f->path);
        s = raw_open(ext ? ext : f->path);
        for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
                char path[4096];
                _cleanup_free_ char *text = NULL;
                bool current_seen = false, man = strstr(docs[i], "man/") != NULL;

                snprintf(path, sizeof(path), "%s/%s", top ? top : ".", docs[i]);
                text = read_file(path);
                if (!text)
                        fail_msg("cannot read %s (run from the top directory or set VHP_TOP)", path);
                check_webcam_key(s, text, man ? "\\(aq" : "'");
                if (run_doc_queries(s, docs[i], text, man, !ext, &current_seen) < 6)
                        fail_msg("%s: fewer than 6 example queries found", docs[i]);
                if (!current_seen)
                        fail_msg("%s: no current_attachments example", docs[i]);
        }
        sqlite3_close(s);
}

/* vhotplug-db(5) has an entry (".TP" then ".B name") for every table and view of the schema. */
static void test_man_db_schema(void **state) {
        struct fixture *f = *state;
        const char *top = getenv("VHP_TOP");
        char path[4096];
        _cleanup_free_ char *text = NULL;
        struct db *db = NULL;
        sqlite3_stmt *st = NULL;
        sqlite3 *s;
        int n = 0;

        snprintf(path, sizeof(path), "%s/man/vhotplug-db.5", top ? top : ".");
        text = read_file(path);
        if (!text)
                fail_msg("cannot read %s (run from the top directory or set VHP_TOP)", path);
        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &db), 0);
        db_close(db);
        s = raw_open(f->path);
        assert_int_equal(sqlite3_prepare_v2(s,
                                            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                                            "AND name NOT LIKE 'sqlite_%' ORDER BY name",
                                            -1, &st, NULL),
                         SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW) {
                char entry[256];
                snprintf(entry, sizeof(entry), ".TP\n.B %s\n", (const char *)sqlite3_column_text(st, 0));
                if (!strstr(text, entry))
                        fail_msg("vhotplug-db(5) does not describe '%s' (expected \"%s\")",
                                 (const char *)sqlite3_column_text(st, 0), entry);
                n++;
        }
        sqlite3_finalize(st);
        sqlite3_close(s);
        assert_true(n >= 10);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_open_creates, setup, teardown),
                cmocka_unit_test_setup_teardown(test_open_ownership, setup, teardown),
                cmocka_unit_test(test_open_invalid),
                cmocka_unit_test_setup_teardown(test_open_garbage, setup, teardown),
                cmocka_unit_test_setup_teardown(test_open_truncated, setup, teardown),
                cmocka_unit_test_setup_teardown(test_open_repair, setup, teardown),
                cmocka_unit_test_setup_teardown(test_open_repair_check, setup, teardown),
                cmocka_unit_test_setup_teardown(test_open_repair_concurrent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_open_newer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_migrate, setup, teardown),
                cmocka_unit_test_setup_teardown(test_migrate_v3_history, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
                cmocka_unit_test_setup_teardown(test_adopted, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failed_and_pending, setup, teardown),
                cmocka_unit_test_setup_teardown(test_superseded, setup, teardown),
                cmocka_unit_test_setup_teardown(test_invalid_args, setup, teardown),
                cmocka_unit_test_setup_teardown(test_seqnum, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ignored_bounded, setup, teardown),
                cmocka_unit_test(test_device_key),
                cmocka_unit_test_setup_teardown(test_user_choice, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cold_plugged, setup, teardown),
                cmocka_unit_test_setup_teardown(test_suspended, setup, teardown),
                cmocka_unit_test_setup_teardown(test_user_choice_any_port, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hostile_strings, setup, teardown),
                cmocka_unit_test_setup_teardown(test_busy_wait, setup, teardown),
                cmocka_unit_test_setup_teardown(test_concurrent_20, setup, teardown),
                cmocka_unit_test_setup_teardown(test_concurrent_200, setup, teardown),
                cmocka_unit_test_setup_teardown(test_readme_queries, setup, teardown),
                cmocka_unit_test_setup_teardown(test_man_db_schema, setup, teardown),
        };

        if (getenv("TEST_FILTER"))
                cmocka_set_test_filter(getenv("TEST_FILTER"));
        return cmocka_run_group_tests(tests, NULL, NULL);
}
