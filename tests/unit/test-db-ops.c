/* Tests of the control plane's statements (db/db-ops.c) on real database files: who asked,
 * choices with their history, prompts, reading the history, meta. */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "db.h"

struct fixture {
        char dir[64], path[128];
        struct db *db;
};

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(p);
}

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/vhp-test-dbops-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->path, sizeof(f->path), "%s/state.db", f->dir);
        assert_int_equal(db_open(f->path, DB_NO_STRICT_PERMS, &f->db), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;

        db_close(f->db);
        nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(f);
        return 0;
}

/* The first column of the first row of sql, as text ("" for none, "NULL" for NULL). */
static char *raw(const char *path, const char *sql) {
        sqlite3 *s = NULL;
        sqlite3_stmt *st = NULL;
        char *v;

        assert_int_equal(sqlite3_open_v2(path, &s, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(s, sql, -1, &st, NULL), SQLITE_OK);
        if (sqlite3_step(st) == SQLITE_ROW)
                v = strdup(sqlite3_column_type(st, 0) == SQLITE_NULL
                                   ? "NULL"
                                   : (const char *)sqlite3_column_text(st, 0));
        else
                v = strdup("");
        sqlite3_finalize(st);
        sqlite3_close(s);
        return v;
}

static void assert_raw(const char *path, const char *sql, const char *want) {
        char *got = raw(path, sql);
        if (strcmp(got, want) != 0)
                fail_msg("%s: expected '%s', got '%s'", sql, want, got);
        free(got);
}

static const struct db_device cam = {
        .kind = "usb",
        .devpath = "/devices/usb1/1-3",
        .key = "usb:1209:0003@3",
        .has_ids = true,
        .vendor_id = 0x1209,
        .product_id = 3,
        .vendor_name = "Test",
        .product_name = "Cam",
        .busnum = 1,
        .devnum = 4,
        .port_path = "3",
        .devnode = "/dev/bus/usb/001/004",
};

static void test_requested_by(void **state) {
        struct fixture *f = *state;
        struct db_rule_ref rule = {.section = "usbPassthrough", .entry = 1, .allow = 0};
        int64_t id;

        db_set_requested_by(f->db, "api unix uid=1000 pid=42");
        assert_int_equal(
                db_attach_begin(f->db, NULL, &cam, &rule, "vm1", "vhp-usb-001-004", DB_ATTACHING, &id), 0);
        assert_int_equal(db_attach_finish(f->db, id, DB_ATTACHED, -1, NULL, NULL), 0);
        assert_raw(f->path, "SELECT requested_by FROM attachments", "api unix uid=1000 pid=42");
        /* Another asks for the detach: its rows say so, the attachment keeps who made it. */
        db_set_requested_by(f->db, "udev");
        assert_int_equal(db_detach_begin(f->db, NULL, id, "removed"), 0);
        assert_int_equal(db_detach_finish(f->db, id, DB_DETACHED, NULL), 0);
        assert_raw(f->path,
                   "SELECT group_concat(outcome || '=' || requested_by, ' ') FROM (SELECT * FROM history "
                   "ORDER BY id)",
                   "started=api unix uid=1000 pid=42 attached=api unix uid=1000 pid=42 detaching=udev "
                   "detached=udev");
        /* Unset: a row copies the attachment's. */
        db_set_requested_by(f->db, NULL);
        assert_int_equal(db_attach_begin(f->db, NULL, &cam, &rule, "vm1", "x", DB_ATTACHING, &id), 0);
        assert_raw(f->path, "SELECT requested_by FROM history ORDER BY id DESC LIMIT 1", "NULL");
}

static void test_choices(void **state) {
        struct fixture *f = *state;
        struct db_choice_info c;

        assert_int_equal(db_choice_info_get(f->db, cam.key, &c), 0);
        assert_null(c.vm);
        db_set_requested_by(f->db, "api vsock cid=5");
        assert_int_equal(db_choice_record(f->db, &cam, "vm2", false, "attach requested: VM vm2"), 0);
        assert_int_equal(db_choice_info_get(f->db, cam.key, &c), 1);
        assert_string_equal(c.vm, "vm2");
        assert_false(c.keep_detached);
        assert_string_equal(c.set_by, "api vsock cid=5");
        assert_string_equal(c.key, cam.key);
        db_choice_info_clear(&c);
        /* keep detached alone keeps the VM chosen before */
        assert_int_equal(db_choice_record(f->db, &cam, NULL, true, "detach requested"), 0);
        assert_int_equal(db_choice_info_get(f->db, cam.key, &c), 1);
        assert_string_equal(c.vm, "vm2");
        assert_true(c.keep_detached);
        db_choice_info_clear(&c);
        assert_raw(f->path,
                   "SELECT group_concat(action || ':' || outcome || ':' || coalesce(vm, '-') || ':' || "
                   "devpath || ':' || "
                   "vendor_id || ':' || devnode || ':' || detail || ':' || requested_by, '|') FROM (SELECT "
                   "* FROM history ORDER BY id)",
                   "choice:recorded:vm2:/devices/usb1/1-3:1209:/dev/bus/usb/001/004:attach requested: VM "
                   "vm2:api vsock cid=5|"
                   "choice:recorded:-:/devices/usb1/1-3:1209:/dev/bus/usb/001/004:detach requested:api "
                   "vsock cid=5");
        /* A choice stored for the ids on any port (the older daemon's, imported) is found too. */
        assert_int_equal(db_user_choice_set(f->db, "usb:1209:0005@*", "vm3", false), 0);
        struct db_device other = cam;
        other.key = "usb:1209:0005@7.1";
        assert_int_equal(db_choice_info_get(f->db, other.key, &c), 1);
        assert_string_equal(c.vm, "vm3");
        assert_string_equal(c.key, "usb:1209:0005@*");
        db_choice_info_clear(&c);
}

static void test_prompts(void **state) {
        struct fixture *f = *state;
        struct db_rule_ref rule = {.section = "usbPassthrough", .entry = 1, .allow = 0};
        struct db_event_order o1 = {.devpath = cam.devpath, .seqnum = 10, .boot_id = "b"},
                              o0 = {.devpath = cam.devpath, .seqnum = 9, .boot_id = "b"};
        struct db_prompt p, *list = NULL;
        size_t n = 0;
        bool added = false;
        int64_t id;

        db_set_requested_by(f->db, "udev");
        assert_int_equal(db_prompt_add(f->db, &o1, &cam, &rule, "[\"vm1\",\"vm2\"]", "waiting", &added), 0);
        assert_true(added);
        assert_int_equal(db_prompt_add(f->db, NULL, &cam, &rule, "[\"vm1\",\"vm2\"]", "waiting", &added), 0);
        assert_false(added); /* asked once */
        added = true;
        assert_int_equal(db_prompt_add(f->db, &o0, &cam, &rule, "[\"vm1\"]", "waiting", &added),
                         1); /* stale */
        assert_raw(
                f->path,
                "SELECT count(*) || ':' || group_concat(action || ' ' || outcome || ' ' || rule_section || "
                "'[' || rule_entry || '] ' || requested_by) FROM history",
                "1:prompt waiting usbPassthrough[1] udev");
        assert_int_equal(db_prompt_get(f->db, cam.devpath, &p), 1);
        assert_string_equal(p.allowed_vms, "[\"vm1\",\"vm2\"]");
        assert_string_equal(p.devnode, "/dev/bus/usb/001/004");
        assert_int_equal(p.vendor_id, 0x1209);
        assert_non_null(p.since);
        db_prompt_clear(&p);
        assert_int_equal(db_prompt_list(f->db, &list, &n), 0);
        assert_int_equal(n, 1);
        db_prompt_list_free(list, n);
        /* An attach (any: helper, reconcile, API) answers it. */
        assert_int_equal(db_attach_begin(f->db, NULL, &cam, &rule, "vm2", "x", DB_ATTACHING, &id), 0);
        assert_int_equal(db_prompt_get(f->db, cam.devpath, &p), 0);
        /* So does a keep-detached choice. */
        assert_int_equal(db_prompt_add(f->db, NULL, &cam, &rule, "[\"vm1\"]", "again", &added), 0);
        assert_true(added);
        assert_int_equal(db_choice_record(f->db, &cam, NULL, true, "detach requested"), 0);
        assert_int_equal(db_prompt_get(f->db, cam.devpath, &p), 0);
        /* And removing it. */
        assert_int_equal(db_prompt_add(f->db, NULL, &cam, &rule, "[\"vm1\"]", "again", &added), 0);
        assert_int_equal(db_prompt_remove(f->db, cam.devpath), 0);
        assert_int_equal(db_prompt_get(f->db, cam.devpath, &p), 0);
        assert_int_equal(db_prompt_add(f->db, NULL, &cam, &rule, "not used", NULL, NULL), 0);
        assert_int_equal(db_prompt_add(f->db, NULL, &cam, &rule, NULL, NULL, NULL), -EINVAL);
}

static void test_history(void **state) {
        struct fixture *f = *state;
        struct db_history *h = NULL;
        struct db_device d = cam;
        char devpath[64];
        int64_t last = -1, id;
        size_t n = 0;

        assert_int_equal(db_history_last_id(f->db, &last), 0);
        assert_int_equal(last, 0);
        for (int i = 0; i < 30; i++) {
                snprintf(devpath, sizeof(devpath), "/devices/usb1/1-%d", i % 3);
                d.devpath = devpath;
                assert_int_equal(db_attach_begin(f->db, NULL, &d, NULL, "vm1", "x", DB_PENDING, &id), 0);
        }
        assert_int_equal(db_history_last_id(f->db, &last), 0);
        /* 30 pending intents, plus the superseded rows of the 27 that replaced an open one */
        assert_int_equal(last, 57);
        assert_int_equal(db_history_after(f->db, 50, 100, &h, &n), 0);
        assert_int_equal(n, 7);
        assert_int_equal(h[0].id, 51);
        assert_int_equal(h[6].id, 57);
        db_history_list_free(h, n);
        assert_int_equal(db_history_after(f->db, 0, 5, &h, &n), 0);
        assert_int_equal(n, 5);
        assert_int_equal(h[4].id, 5);
        assert_string_equal(h[0].action, "attach");
        assert_string_equal(h[0].outcome, "pending");
        assert_string_equal(h[0].vm, "vm1");
        assert_true(h[0].has_ids);
        assert_int_equal(h[0].product_id, 3);
        assert_int_equal(h[0].rule_entry, -1);
        assert_int_equal(h[0].crosvm_port, -1);
        db_history_list_free(h, n);
        assert_int_equal(db_history_recent(f->db, "/devices/usb1/1-1", 3, &h, &n), 0);
        assert_int_equal(n, 3);
        assert_true(h[0].id < h[1].id && h[1].id < h[2].id); /* oldest first */
        for (size_t i = 0; i < n; i++)
                assert_string_equal(h[i].devpath, "/devices/usb1/1-1");
        db_history_list_free(h, n);
        assert_int_equal(db_history_recent(f->db, NULL, 100000, &h, &n), 0);
        assert_int_equal(n, 57);
        db_history_list_free(h, n);
}

static void test_meta(void **state) {
        struct fixture *f = *state;
        char *v = NULL;

        assert_int_equal(db_meta_get(f->db, "reconciled_boot", &v), 0);
        assert_null(v);
        assert_int_equal(db_meta_set(f->db, "reconciled_boot", "b1"), 0);
        assert_int_equal(db_meta_set(f->db, "reconciled_boot", "b2"), 0);
        assert_int_equal(db_meta_get(f->db, "reconciled_boot", &v), 1);
        assert_string_equal(v, "b2");
        free(v);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_requested_by, setup, teardown),
                cmocka_unit_test_setup_teardown(test_choices, setup, teardown),
                cmocka_unit_test_setup_teardown(test_prompts, setup, teardown),
                cmocka_unit_test_setup_teardown(test_history, setup, teardown),
                cmocka_unit_test_setup_teardown(test_meta, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
