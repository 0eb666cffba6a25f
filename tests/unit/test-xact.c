/* The attach/detach transaction (lib/xact.c) against scripted fake QEMUs and a real SQLite file:
 * what is recorded for each outcome, retries that leave the VM lock free while they wait, and
 * locks that cannot be had. */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "cleanup.h"
#include "fake-qmp.h"
#include "lock.h"
#include "util.h"
#include "xact.h"

#define OK "\"return\": {}"
#define ERR(desc) "\"error\": {\"class\": \"GenericError\", \"desc\": \"" desc "\"}"
/* Each step macro takes the rest of the step (its reply) as arguments. */
#define USB_ADD(...)                                                                                        \
        {                                                                                                   \
                .command = "device_add",                                                                    \
                .expect = {"\"driver\":\"usb-host\"", "\"id\":\"vhp-usb-001-005\""}, __VA_ARGS__            \
        }
#define NOT_YET ERR("failed to find host usb device 1:5")
#define RECONNECT_LOCK_FREE                                                                                 \
        { .command = NULL, .lock_free = true }
#define DEL(...)                                                                                            \
        { .command = "device_del", .expect = {"\"id\":\"vhp-usb-001-005\""}, __VA_ARGS__ }
#define STILL_THERE                                                                                         \
        {                                                                                                   \
                .command = "qom-list", .expect = {"\"path\":\"/machine/peripheral/vhp-usb-001-005\""},      \
                .reply = "\"return\": [{\"name\": \"type\", \"type\": \"string\"}]"                         \
        }
#define GONE                                                                                                \
        {                                                                                                   \
                .command = "qom-list", .expect = {"\"path\":\"/machine/peripheral/vhp-usb-001-005\""},      \
                .reply = "\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Device 'vhp-usb-001-005' " \
                         "not found\"}"                                                                     \
        }

struct env {
        char dir[64], db[128], lockdir[128], vmlock[160], down[128];
        struct fake_qmp f;
        struct cfg *cfg;
        struct db *db_conn;
        struct dev dev;
        struct rule_decision dec;
};

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(p);
}

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));

        assert_non_null(e);
        snprintf(e->dir, sizeof(e->dir), "/tmp/vhp-test-xact-XXXXXX");
        assert_non_null(mkdtemp(e->dir));
        snprintf(e->db, sizeof(e->db), "%s/state.db", e->dir);
        snprintf(e->lockdir, sizeof(e->lockdir), "%s/lock", e->dir);
        snprintf(e->vmlock, sizeof(e->vmlock), "%s/vm-vm1.lock", e->lockdir);
        snprintf(e->down, sizeof(e->down), "%s/down.sock", e->dir);
        assert_int_equal(mkdir(e->lockdir, 0700), 0);
        fake_lock_path = e->vmlock;
        e->dev = (struct dev){
                .kind = DEV_USB,
                .devpath = (char *)"/devices/pci0000:00/0000:00:14.0/usb1/1-3",
                .sysname = (char *)"1-3",
                .has_ids = true,
                .vendor_id = 0x046d,
                .product_id = 0xc077,
                .busnum = 1,
                .devnum = 5,
                .port = 3,
                .port_path = (char *)"3",
                .devnode = (char *)"/dev/bus/usb/001/005",
                .dev_class = 0,
                .iommu_group = -1,
        };
        *state = e;
        return 0;
}

static int teardown(void **state) {
        struct env *e = *state;

        db_close(e->db_conn);
        cfg_free(e->cfg);
        nftw(e->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(e);
        return 0;
}

/* Loads a configuration that gives the test's mouse to vm (QEMU at socket) and opens the database. */
static void configure(struct env *e, const char *vm, const char *socket, int retries) {
        struct cfg_error err;
        char *text = NULL;

        assert_true(
                asprintf(&text,
                         "{\"usbPassthrough\": [{\"targetVm\": \"%s\", \"allow\": [{\"vendorId\": "
                         "\"046d\"}]}],"
                         " \"vms\": [{\"name\": \"vm1\", \"type\": \"qemu\", \"socket\": \"%s\"},"
                         "           {\"name\": \"down-vm\", \"type\": \"qemu\", \"socket\": \"%s\"}],"
                         " \"general\": {\"database\": \"%s\", \"lockDir\": \"%s\", \"qmpTimeoutMs\": 1000,"
                         "              \"attachRetries\": %d}}",
                         vm, socket, e->down, e->db, e->lockdir, retries) > 0);
        if (cfg_load_string(text, strlen(text), "test.conf", &e->cfg, &err) < 0)
                fail_msg("%s", err.msg);
        free(text);
        rule_decide(e->cfg, &e->dev, NULL, &e->dec);
        assert_int_equal(e->dec.action, RULE_ATTACH);
        assert_int_equal(db_open(e->db, DB_NO_STRICT_PERMS, &e->db_conn), 0);
}

static struct xact_ctx ctx_of(const struct env *e) {
        return (struct xact_ctx){.cfg = e->cfg};
}

/* "outcome|error" of the device's history rows, oldest first, one per line; caller frees. */
static char *history(const struct env *e) {
        sqlite3 *s = NULL;
        sqlite3_stmt *st = NULL;
        size_t len = 0;
        char *out = NULL;
        FILE *f = open_memstream(&out, &len);

        assert_int_equal(sqlite3_open_v2(e->db, &s, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        assert_int_equal(
                sqlite3_prepare_v2(s, "SELECT action, outcome, coalesce(error, '') FROM history ORDER BY id",
                                   -1, &st, NULL),
                SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW)
                fprintf(f, "%s %s|%s\n", sqlite3_column_text(st, 0), sqlite3_column_text(st, 1),
                        sqlite3_column_text(st, 2));
        sqlite3_finalize(st);
        sqlite3_close(s);
        fclose(f);
        return out;
}

static void test_usb_retry_leaves_vm_lock_free(void **state) {
        static const struct fake_step steps[] = {
                USB_ADD(.reply = NOT_YET), RECONNECT_LOCK_FREE,  USB_ADD(.reply = NOT_YET),
                RECONNECT_LOCK_FREE,       USB_ADD(.reply = OK), FAKE_END,
        };
        struct env *e = *state;
        struct xact_result res;
        struct db_attachment a = {0};
        _cleanup_free_ char *h = NULL;

        fake_qmp_start(&e->f, fake_qmp_script, steps);
        configure(e, "vm1", e->f.path, 3);
        xact_result_init(&res, DEV_USB);
        struct xact_ctx ctx = ctx_of(e);
        assert_int_equal(xact_attach(&ctx, e->db_conn, &e->dev, &e->dec, &res), 0);
        /* The fake QEMU took the VM lock itself between the attempts. */
        assert_int_equal(fake_qmp_finish(&e->f), 0);
        assert_int_equal(res.outcome, XACT_DONE);
        assert_string_equal(res.vmm_id, "vhp-usb-001-005");
        assert_int_equal(db_attachment_get(e->db_conn, e->dev.devpath, &a), 1);
        assert_int_equal(a.state, DB_ATTACHED);
        db_attachment_clear(&a);
        h = history(e);
        assert_string_equal(h, "attach started|\nattach attached|\n");
}

static void test_usb_retries_used_up(void **state) {
        static const struct fake_step steps[] = {
                USB_ADD(.reply = NOT_YET), FAKE_RECONNECT, USB_ADD(.reply = NOT_YET), FAKE_RECONNECT,
                USB_ADD(.reply = NOT_YET), FAKE_END,
        };
        struct env *e = *state;
        struct xact_result res;
        struct db_attachment a = {0};
        _cleanup_free_ char *h = NULL;

        fake_qmp_start(&e->f, fake_qmp_script, steps);
        configure(e, "vm1", e->f.path, 2);
        xact_result_init(&res, DEV_USB);
        struct xact_ctx ctx = ctx_of(e);
        assert_int_equal(xact_attach(&ctx, e->db_conn, &e->dev, &e->dec, &res), 0);
        assert_int_equal(fake_qmp_finish(&e->f), 0);
        assert_int_equal(res.outcome, XACT_FAILED);
        assert_string_equal(res.error, "VM refused the device: failed to find host usb device 1:5");
        assert_int_equal(db_attachment_get(e->db_conn, e->dev.devpath, &a), 0);
        h = history(e);
        assert_string_equal(h,
                            "attach started|\nattach failed|VM refused the device: failed to find host usb "
                            "device 1:5\n");
}

static void test_vm_not_running(void **state) {
        struct env *e = *state;
        struct xact_result res;
        struct db_attachment a = {0};

        configure(e, "down-vm", e->down, 2);
        xact_result_init(&res, DEV_USB);
        struct xact_ctx ctx = ctx_of(e);
        assert_int_equal(xact_attach(&ctx, e->db_conn, &e->dev, &e->dec, &res), 0);
        assert_int_equal(res.outcome, XACT_PENDING);
        assert_non_null(strstr(res.error, "VM down-vm is not running"));
        assert_int_equal(db_attachment_get(e->db_conn, e->dev.devpath, &a), 1);
        assert_int_equal(a.state, DB_PENDING);
        /* A pending record never reached the VM: detaching it only closes the record. */
        xact_result_init(&res, DEV_USB);
        assert_int_equal(xact_detach(&ctx, e->db_conn, &a, "device removed from the host", &res), 0);
        assert_int_equal(res.outcome, XACT_DONE);
        db_attachment_clear(&a);
        assert_int_equal(db_attachment_get(e->db_conn, e->dev.devpath, &a), 0);
}

/* device_del is answered at once, the guest lets go later: the release is confirmed on new
 * connections, the lock free in between (the fake takes it), and only then is the record closed. */
static void test_detach_confirms_release(void **state) {
        static const struct fake_step steps[] = {
                USB_ADD(.reply = OK), FAKE_RECONNECT, DEL(.reply = OK), RECONNECT_LOCK_FREE, STILL_THERE,
                RECONNECT_LOCK_FREE,  GONE,           FAKE_END,
        };
        struct env *e = *state;
        struct xact_result res;
        struct db_attachment a = {0};
        _cleanup_free_ char *h = NULL;

        fake_qmp_start(&e->f, fake_qmp_script, steps);
        configure(e, "vm1", e->f.path, 0);
        xact_result_init(&res, DEV_USB);
        struct xact_ctx ctx = ctx_of(e);
        assert_int_equal(xact_attach(&ctx, e->db_conn, &e->dev, &e->dec, &res), 0);
        assert_int_equal(db_attachment_get(e->db_conn, e->dev.devpath, &a), 1);
        xact_result_init(&res, DEV_USB);
        assert_int_equal(xact_detach(&ctx, e->db_conn, &a, "device removed from the host", &res), 0);
        db_attachment_clear(&a);
        assert_int_equal(fake_qmp_finish(&e->f), 0);
        assert_int_equal(res.outcome, XACT_DONE);
        assert_int_equal(db_attachment_get(e->db_conn, e->dev.devpath, &a), 0);
        h = history(e);
        assert_string_equal(h, "attach started|\nattach attached|\ndetach detaching|\ndetach detached|\n");
}

static void test_vm_lock_cannot_be_had(void **state) {
        struct env *e = *state;
        struct xact_result res;
        struct db_attachment a = {0};
        _cleanup_free_ char *h = NULL;

        /* A directory where the lock file should be: open() fails, at once. */
        assert_int_equal(mkdir(e->vmlock, 0700), 0);
        configure(e, "vm1", e->down, 0);
        xact_result_init(&res, DEV_USB);
        struct xact_ctx ctx = ctx_of(e);
        assert_int_equal(xact_attach(&ctx, e->db_conn, &e->dev, &e->dec, &res), -EISDIR);
        assert_int_equal(res.outcome, XACT_FAILED);
        assert_string_equal(res.error, "cannot lock VM vm1: Is a directory");
        assert_int_equal(db_attachment_get(e->db_conn, e->dev.devpath, &a), 0);
        h = history(e);
        assert_string_equal(h, "attach started|\nattach failed|cannot lock VM vm1: Is a directory\n");
}

/* A QEMU that accepts but never greets (hung, or its monitor held by another client). */
static int serve_silent(int lfd, const void *userdata) {
        int fd = fake_accept(lfd);
        fake_drain(fd);
        return 0;
}

static void test_detach_vm_not_answering(void **state) {
        struct env *e = *state;
        struct xact_result res;
        struct db_attachment a = {0};
        struct db_device rec;
        char key[DEV_KEY_MAX];
        int64_t id;
        _cleanup_free_ char *h = NULL;

        /* A peer that does not answer: the device may still be in the VM, so the record stays open
         * (detaching) with the reason, and the event is deferred. */
        fake_qmp_start(&e->f, serve_silent, NULL);
        configure(e, "vm1", e->f.path, 0);
        xact_record_of(&e->dev, key, &rec);
        assert_int_equal(
                db_attach_begin(e->db_conn, NULL, &rec, NULL, "vm1", "vhp-usb-001-005", DB_ATTACHING, &id),
                0);
        assert_int_equal(db_attach_finish(e->db_conn, id, DB_ATTACHED, -1, NULL, NULL), 0);
        assert_int_equal(db_attachment_get(e->db_conn, e->dev.devpath, &a), 1);
        struct xact_ctx ctx = ctx_of(e);
        xact_result_init(&res, DEV_USB);
        assert_int_equal(xact_detach(&ctx, e->db_conn, &a, "device removed from the host", &res), 0);
        db_attachment_clear(&a);
        assert_int_equal(fake_qmp_finish(&e->f), 0);
        assert_int_equal(res.outcome, XACT_PENDING);
        assert_non_null(strstr(res.error, "VM not answering: VM vm1 could not be reached"));
        assert_int_equal(db_attachment_get(e->db_conn, e->dev.devpath, &a), 1);
        assert_int_equal(a.state, DB_DETACHING);
        db_attachment_clear(&a);
        h = history(e);
        assert_non_null(strstr(
                h, "detach detaching|\ndetach detaching|VM not answering: VM vm1 could not be reached"));
}

/* A QEMU that never sees the device: answers every device_add "failed to find host usb device",
 * counting the attempts in the exit status. */
static int serve_never_found(int lfd, const void *userdata) {
        struct pollfd pfd = {.fd = lfd, .events = POLLIN};
        int attempts = 0;

        while (poll(&pfd, 1, 3000) > 0) {
                struct qmp_parser p;
                int fd = fake_accept(lfd);
                cJSON *req;

                qmp_parser_init(&p);
                if (fd < 0 || fake_handshake(fd, &p) < 0)
                        return 250;
                while ((req = fake_recv(fd, &p))) {
                        if (fake_command(req) && strcmp(fake_command(req), "device_add") == 0) {
                                attempts++;
                                fake_reply(fd, req, ERR("failed to find host usb device 1:5"));
                        }
                        cJSON_Delete(req);
                }
                close(fd);
                qmp_parser_done(&p);
        }
        return attempts;
}

/* The request's time budget bounds the retries: 100 allowed, a budget of 400 ms leaves room for
 * a handful (the back-off doubles from 20 ms), and QEMU's last answer is what is recorded. */
static void test_retries_bounded_by_budget(void **state) {
        struct env *e = *state;
        struct xact_result res;
        int attempts;

        fake_qmp_start(&e->f, serve_never_found, NULL);
        configure(e, "vm1", e->f.path, 100);
        struct xact_ctx ctx = ctx_of(e);
        ctx.deadline = now_ms() + 400;
        xact_result_init(&res, DEV_USB);
        assert_int_equal(xact_attach(&ctx, e->db_conn, &e->dev, &e->dec, &res), 0);
        attempts = fake_qmp_finish(&e->f);
        assert_int_equal(res.outcome, XACT_FAILED);
        assert_string_equal(res.error, "VM refused the device: failed to find host usb device 1:5");
        assert_in_range(attempts, 1, 8);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_usb_retry_leaves_vm_lock_free, setup, teardown),
                cmocka_unit_test_setup_teardown(test_usb_retries_used_up, setup, teardown),
                cmocka_unit_test_setup_teardown(test_vm_not_running, setup, teardown),
                cmocka_unit_test_setup_teardown(test_detach_confirms_release, setup, teardown),
                cmocka_unit_test_setup_teardown(test_vm_lock_cannot_be_had, setup, teardown),
                cmocka_unit_test_setup_teardown(test_detach_vm_not_answering, setup, teardown),
                cmocka_unit_test_setup_teardown(test_retries_bounded_by_budget, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
