/* crosvm client: output parsers, and the CLI runs against tests/tools/crosvm-standin (crosvm is not
 * packaged for Debian; the stand-in speaks its `usb` command line and keeps state in a file). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cleanup.h"
#include "crosvm.h"
#include "vmm.h"

/* ---- parsers ---- */

static void test_parse_attach(void **state) {
        static const struct {
                const char *out;
                int expected, port;
        } cases[] = {
                {"ok 1\n", 0, 1},
                {"ok 255", 0, 255},
                {"some log line\nok 3\r\n", 0, 3},
                {"no_available_port\n", -ENOSPC, 0},
                {"no_such_device\n", -ENOENT, 0},
                {"failed_to_open_device\n", -EREMOTEIO, 0},
                {"failed_to_init_host_device\n", -EREMOTEIO, 0},
                {"ok 0\n", -EPROTO, 0},
                {"ok 256\n", -EPROTO, 0},
                {"ok -1\n", -EPROTO, 0},
                {"ok 1 2\n", -EPROTO, 0},
                {"ok\n", -EPROTO, 0},
                {"ok 1x\n", -EPROTO, 0},
                {"", -EPROTO, 0},
                {"\n\n", -EPROTO, 0},
                {"devices 1 046d c52b\n", -EPROTO, 0},
                {"no_such_port\n", -ENOENT, 0},
                {"whatever\n", -EPROTO, 0},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                int port = 0;
                assert_int_equal(crosvm_parse_attach_output(cases[i].out, &port), cases[i].expected);
                if (cases[i].expected == 0)
                        assert_int_equal(port, cases[i].port);
        }
}

static void test_parse_detach(void **state) {
        assert_int_equal(crosvm_parse_detach_output("ok 3\n"), 0);
        assert_int_equal(crosvm_parse_detach_output("ok\n"), 0);
        assert_int_equal(crosvm_parse_detach_output("no_such_port\n"), -ENOENT);
        /* what crosvm answers for an empty port */
        assert_int_equal(crosvm_parse_detach_output("no_such_device\n"), -ENOENT);
        assert_int_equal(crosvm_parse_detach_output("ok x\n"), -EPROTO);
        assert_int_equal(crosvm_parse_detach_output(""), -EPROTO);
        assert_int_equal(crosvm_parse_detach_output("devices\n"), -EPROTO);
}

static void test_parse_list(void **state) {
        struct crosvm_usb_device d[4];
        size_t n = 99;

        assert_int_equal(crosvm_parse_list_output("devices\n", d, 4, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(crosvm_parse_list_output("devices 1 046d c52b 3 1050 0407\n", d, 4, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(d[0].port, 1);
        assert_int_equal(d[0].vendor_id, 0x046d);
        assert_int_equal(d[0].product_id, 0xc52b);
        assert_int_equal(d[1].port, 3);
        assert_int_equal(d[1].vendor_id, 0x1050);
        assert_int_equal(d[1].product_id, 0x0407);

        static const char *bad[] = {
                "",
                "device",
                "devices 1",
                "devices 1 046d",
                "devices 1 046d c52",
                "devices 1 46d c52b",
                "devices 0 046d c52b",
                "devices x 046d c52b",
                "devices 1 046g c52b",
                "devices 1 046d c52b 2",
                "ok 1",
                "devices 1 046d c52b trailing",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(crosvm_parse_list_output(bad[i], d, 4, &n), -EPROTO);
        assert_int_equal(crosvm_parse_list_output("devices 1 0001 0001 2 0001 0001", d, 1, &n), -E2BIG);
}

static void test_parse_vfio_list(void **state) {
        char a[3][PCI_ADDRESS_LEN];
        size_t n = 99;

        assert_int_equal(crosvm_parse_vfio_list_output("devices\n", a, 3, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(
                crosvm_parse_vfio_list_output(
                        "devices /sys/bus/pci/devices/0000:00:1f.3 /sys/bus/pci/devices/0000:01:00.0\n", a,
                        3, &n),
                0);
        assert_int_equal(n, 2);
        assert_string_equal(a[0], "0000:00:1f.3");
        assert_string_equal(a[1], "0000:01:00.0");

        static const char *bad[] = {
                "",
                "ok",
                "devices /sys/bus/pci/devices/00:1f.3",
                "devices /sys/bus/pci/devices/0000:00:1f.8",
                "devices /sys/bus/pci/devices/../../../etc",
                "devices /dev/vfio/12",
                "error: Invalid argument",
                "devices /sys/bus/pci/devices/0000:00:1f.3x",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(crosvm_parse_vfio_list_output(bad[i], a, 3, &n), -EPROTO);
        assert_int_equal(crosvm_parse_vfio_list_output("devices /sys/bus/pci/devices/0000:00:1f.3 "
                                                       "/sys/bus/pci/devices/0000:00:1f.4",
                                                       a, 1, &n),
                         -E2BIG);
}

static void test_parse_error(void **state) {
        assert_int_equal(crosvm_parse_error_output("error socket failed\n"), -EHOSTDOWN);
        assert_int_equal(crosvm_parse_error_output("error failed to open device /dev/bus/usb/001/005: No "
                                                   "such file or directory (os error 2)\n"),
                         -ENOENT);
        assert_int_equal(crosvm_parse_error_output("error failed to open device /dev/bus/usb/001/005: "
                                                   "Permission denied (os error 13)\n"),
                         -EACCES);
        assert_int_equal(crosvm_parse_error_output("error unexpected response: Ok\n"), -EPROTO);
}

static void test_find_binary(void **state) {
        _cleanup_free_ char *p = NULL, *q = NULL;

        assert_int_equal(crosvm_find_binary("sh", &p), 0);
        assert_true(p[0] == '/');
        assert_int_equal(crosvm_find_binary("/bin/sh", &q), 0);
        assert_string_equal(q, "/bin/sh");
        assert_int_equal(crosvm_find_binary("vhp-no-such-crosvm", &p), -ENOEXEC);
        assert_int_equal(crosvm_find_binary("/nonexistent/crosvm", &p), -ENOEXEC);
        assert_int_equal(crosvm_find_binary("", &p), -ENOEXEC);
}

/* ---- against the stand-in ---- */

struct env {
        char dir[64];
        char standin[PATH_MAX];
        char socket[128], dev1[128], dev2[128], dev3[128];
};

static void write_file(const char *path, const void *data, size_t len) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, len, f), len);
        fclose(f);
}

static int setup(void **state) {
        struct env *e = calloc(1, sizeof(*e));
        const char *top = getenv("VHP_TOP");
        /* A usbfs node starts with the device descriptor: idVendor 046d, idProduct c52b. */
        static const unsigned char desc[18] = {0x12, 0x01, 0x00, 0x02, 0,    0,
                                               0,    0x40, 0x6d, 0x04, 0x2b, 0xc5};

        snprintf(e->dir, sizeof(e->dir), "/tmp/vhp-crosvm.XXXXXX");
        assert_non_null(mkdtemp(e->dir));
        snprintf(e->standin, sizeof(e->standin), "%s/tests/tools/crosvm-standin", top ? top : ".");
        assert_int_equal(access(e->standin, X_OK), 0);
        snprintf(e->socket, sizeof(e->socket), "%s/crosvm.sock", e->dir);
        snprintf(e->dev1, sizeof(e->dev1), "%s/001-005", e->dir);
        snprintf(e->dev2, sizeof(e->dev2), "%s/001-006", e->dir);
        snprintf(e->dev3, sizeof(e->dev3), "%s/001-007", e->dir);
        write_file(e->socket, "", 0);
        write_file(e->dev1, desc, sizeof(desc));
        write_file(e->dev2, "", 0);
        write_file(e->dev3, "", 0);
        unsetenv("CROSVM_STANDIN_PORTS");
        unsetenv("CROSVM_STANDIN_VFIO_LIST");
        *state = e;
        return 0;
}

static int teardown(void **state) {
        struct env *e = *state;
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
        assert_int_equal(system(cmd), 0);
        free(e);
        return 0;
}

static void test_standin_attach_list_detach(void **state) {
        struct env *e = *state;
        _cleanup_free_ struct crosvm_usb_device *devs = NULL;
        _cleanup_free_ char *err = NULL;
        size_t n = 0;
        int port1 = 0, port2 = 0;

        assert_int_equal(crosvm_usb_attach(e->standin, e->socket, e->dev1, 10000, &port1, &err), 0);
        assert_int_equal(port1, 1);
        assert_int_equal(crosvm_usb_attach(e->standin, e->socket, e->dev2, 10000, &port2, &err), 0);
        assert_int_equal(port2, 2);

        assert_int_equal(crosvm_usb_list(e->standin, e->socket, 10000, &devs, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_int_equal(devs[0].port, 1);
        assert_int_equal(devs[0].vendor_id, 0x046d);
        assert_int_equal(devs[0].product_id, 0xc52b);
        assert_int_equal(devs[1].port, 2);
        free(TAKE_PTR(devs));

        /* Detach by port: the other device stays. */
        assert_int_equal(crosvm_usb_detach(e->standin, e->socket, port1, 10000, &err), 0);
        assert_int_equal(crosvm_usb_detach(e->standin, e->socket, port1, 10000, &err), -ENOENT);
        assert_non_null(strstr(err, "no_such_device"));
        free(TAKE_PTR(err));
        assert_int_equal(crosvm_usb_list(e->standin, e->socket, 10000, &devs, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_int_equal(devs[0].port, 2);
}

static void test_standin_errors(void **state) {
        struct env *e = *state;
        char missing_sock[192], missing_dev[192];
        char *err = NULL;
        int port = 0;

        setenv("CROSVM_STANDIN_PORTS", "1", 1);
        assert_int_equal(crosvm_usb_attach(e->standin, e->socket, e->dev1, 10000, &port, &err), 0);
        assert_int_equal(crosvm_usb_attach(e->standin, e->socket, e->dev2, 10000, &port, &err), -ENOSPC);
        assert_non_null(strstr(err, "no_available_port"));
        free(TAKE_PTR(err));
        unsetenv("CROSVM_STANDIN_PORTS");

        snprintf(missing_sock, sizeof(missing_sock), "%s/nothere.sock", e->dir);
        assert_int_equal(crosvm_usb_attach(e->standin, missing_sock, e->dev1, 10000, &port, &err),
                         -EHOSTDOWN);
        assert_non_null(strstr(err, "socket failed"));
        free(TAKE_PTR(err));

        snprintf(missing_dev, sizeof(missing_dev), "%s/gone", e->dir);
        assert_int_equal(crosvm_usb_attach(e->standin, e->socket, missing_dev, 10000, &port, &err), -ENOENT);
        free(TAKE_PTR(err));
        /* Opens, but no USB device behind it. */
        snprintf(missing_dev, sizeof(missing_dev), "%s/fifo", e->dir);
        assert_int_equal(mkfifo(missing_dev, 0600), 0);
        assert_int_equal(crosvm_usb_attach(e->standin, e->socket, missing_dev, 10000, &port, &err), -ENOENT);
        assert_non_null(strstr(err, "no_such_device"));
        free(TAKE_PTR(err));
        /* crosvm cannot open it at all. */
        assert_int_equal(crosvm_usb_attach(e->standin, e->socket, e->dir, 10000, &port, &err), -EREMOTEIO);
        assert_non_null(strstr(err, "Is a directory"));
        free(TAKE_PTR(err));

        assert_int_equal(crosvm_usb_attach("vhp-no-such-crosvm", e->socket, e->dev1, 10000, &port, &err),
                         -ENOEXEC);
        free(TAKE_PTR(err));
}

static bool process_gone(pid_t pid) {
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "r");
        if (!f)
                return true;
        bool zombie = fgets(buf, sizeof(buf), f) && strstr(buf, ") Z ");
        fclose(f);
        return zombie;
}

/* A crosvm that hangs is killed at the bound, with whatever it started. */
static void test_hung_crosvm(void **state) {
        struct env *e = *state;
        char script[192], pidfile[192], text[512];
        _cleanup_free_ char *err = NULL;
        struct timespec t0, t1;
        int port = 0;

        snprintf(script, sizeof(script), "%s/hang", e->dir);
        snprintf(pidfile, sizeof(pidfile), "%s/sleep.pid", e->dir);
        snprintf(text, sizeof(text), "#!/bin/sh\nsleep 30 &\necho $! > '%s'\nwait\n", pidfile);
        write_file(script, text, strlen(text));
        assert_int_equal(chmod(script, 0755), 0);

        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(crosvm_usb_attach(script, e->socket, e->dev1, 1000, &port, &err), -ETIMEDOUT);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_true(t1.tv_sec - t0.tv_sec < 10);
        assert_non_null(strstr(err, "1000 ms"));

        FILE *f = fopen(pidfile, "r");
        int pid = 0;
        assert_non_null(f);
        assert_int_equal(fscanf(f, "%d", &pid), 1);
        fclose(f);
        for (int i = 0; i < 200 && !process_gone(pid); i++)
                usleep(10000);
        assert_true(process_gone(pid));
}

static void test_vmm_crosvm(void **state) {
        struct env *e = *state;
        struct vmm_opts o = {.timeout_ms = 10000, .crosvm_bin = e->standin};
        struct cfg_vm vm = {.name = (char *)"vm2", .type = VMM_CROSVM, .socket = e->socket};
        struct dev d = {.kind = DEV_USB, .busnum = 1, .devnum = 5, .devnode = e->dev1};
        struct dev pci = {.kind = DEV_PCI, .pci_address = (char *)"ffff:ff:1f.7"};
        struct dev evdev = {.kind = DEV_EVDEV, .devnode = (char *)"/dev/input/event3"};
        struct cfg_vm down = {
                .name = (char *)"vm3", .type = VMM_CROSVM, .socket = (char *)"/nonexistent/vhp.sock"};
        struct vmm_attachment a;
        struct vmm_list l;
        struct vmm_conn *c = NULL;
        _cleanup_free_ char *err = NULL;

        assert_int_equal(vmm_connect(&down, &o, &c, &err), -EHOSTDOWN);
        assert_null(c);
        assert_non_null(strstr(err, "not running"));
        free(TAKE_PTR(err));
        assert_int_equal(vmm_connect(&vm, &o, &c, &err), 0);
        assert_int_equal(vmm_attach(c, &d, "", false, &a, &err), 0);
        assert_int_equal(a.port, 1);
        /* PCI goes through `crosvm vfio add`, which refuses a path that is no sysfs directory. */
        assert_int_equal(vmm_attach(c, &pci, "", false, &a, &err), -EREMOTEIO);
        assert_string_equal(a.id, "/sys/bus/pci/devices/ffff:ff:1f.7");
        assert_non_null(
                strstr(err, "crosvm vfio add /sys/bus/pci/devices/ffff:ff:1f.7 failed with status 1"));
        free(TAKE_PTR(err));
        assert_int_equal(vmm_attach(c, &evdev, "", false, &a, &err), -EOPNOTSUPP);
        free(TAKE_PTR(err));
        /* Upstream crosvm cannot list PCI devices; input devices no crosvm lists. */
        assert_int_equal(vmm_list(c, &l, &err), 0);
        assert_int_equal(l.unlisted, (1u << DEV_PCI) | (1u << DEV_EVDEV));
        assert_int_equal(l.n, 1);
        assert_int_equal(l.items[0].port, 1);
        assert_int_equal(l.items[0].vendor_id, 0x046d);
        assert_int_equal(l.items[0].kind, DEV_USB);
        vmm_list_clear(&l);
        a = (struct vmm_attachment){.port = 1};
        assert_int_equal(vmm_detach(c, &a, &err), 0);
        assert_int_equal(vmm_detach(c, &a, &err), -ENOENT);
        free(TAKE_PTR(err));
        /* What crosvm cannot list is taken on trust. */
        a = (struct vmm_attachment){.id = "/sys/bus/pci/devices/0000:01:00.0", .port = -1};
        assert_int_equal(vmm_has(c, &a, &err), 1);
        a = (struct vmm_attachment){.port = -1};
        assert_int_equal(vmm_has(c, &a, &err), 1);
        vmm_disconnect(c);
}

/* Ghaf's fork lists its VFIO devices; upstream's argument parser refuses `vfio list` (status 35). */
static void test_standin_vfio_list(void **state) {
        struct env *e = *state;
        char(*addrs)[PCI_ADDRESS_LEN] = NULL;
        _cleanup_free_ char *err = NULL;
        char vfio[160];
        size_t n = 99;

        assert_int_equal(crosvm_vfio_list(e->standin, e->socket, 10000, &addrs, &n, &err), -EOPNOTSUPP);
        assert_non_null(strstr(err, "no `crosvm vfio list`"));
        free(TAKE_PTR(err));
        setenv("CROSVM_STANDIN_VFIO_LIST", "1", 1);
        assert_int_equal(crosvm_vfio_list(e->standin, e->socket, 10000, &addrs, &n, &err), 0);
        assert_int_equal(n, 0);
        snprintf(vfio, sizeof(vfio), "%s.vfio", e->socket);
        write_file(vfio, "/sys/bus/pci/devices/0000:01:00.0\n/sys/bus/pci/devices/0000:01:00.1\n", 68);
        assert_int_equal(crosvm_vfio_list(e->standin, e->socket, 10000, &addrs, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_string_equal(addrs[1], "0000:01:00.1");
        free(addrs);
        unsetenv("CROSVM_STANDIN_VFIO_LIST");
}

/* A guest that has not set up its xHCI controller: crosvm answers no_available_port and leaves the
 * device in the port. The back end frees exactly that port and says -EAGAIN; a real shortage of
 * ports is -ENOSPC and leaves every attached device where it is. */
static void test_vmm_crosvm_booting(void **state) {
        struct env *e = *state;
        struct vmm_opts o = {.timeout_ms = 10000, .crosvm_bin = e->standin};
        struct cfg_vm vm = {.name = (char *)"vm2", .type = VMM_CROSVM, .socket = e->socket};
        struct dev d1 = {.kind = DEV_USB,
                         .devnode = e->dev1,
                         .has_ids = true,
                         .vendor_id = 0x046d,
                         .product_id = 0xc52b};
        struct dev d2 = {.kind = DEV_USB, .devnode = e->dev2};
        struct dev d3 = {.kind = DEV_USB, .devnode = e->dev3};
        _cleanup_free_ struct crosvm_usb_device *devs = NULL;
        _cleanup_free_ char *err = NULL;
        struct vmm_attachment a;
        struct vmm_conn *c = NULL;
        char boot[160];
        size_t n = 0;

        snprintf(boot, sizeof(boot), "%s.booting", e->socket);
        write_file(boot, "2\n", 2);
        assert_int_equal(vmm_connect(&vm, &o, &c, &err), 0);
        for (int i = 0; i < 2; i++) {
                assert_int_equal(vmm_attach(c, &d1, "", false, &a, &err), -EAGAIN);
                assert_non_null(strstr(err, "left the device on port 1"));
                free(TAKE_PTR(err));
                assert_int_equal(crosvm_usb_list(e->standin, e->socket, 10000, &devs, &n, &err), 0);
                assert_int_equal(n, 0); /* the port was freed again */
                free(TAKE_PTR(devs));
        }
        assert_int_equal(vmm_attach(c, &d1, "", false, &a, &err), 0);
        assert_int_equal(a.port, 1);

        setenv("CROSVM_STANDIN_PORTS", "2", 1);
        assert_int_equal(vmm_attach(c, &d2, "", false, &a, &err), 0);
        assert_int_equal(a.port, 2);
        assert_int_equal(vmm_attach(c, &d3, "", false, &a, &err), -ENOSPC);
        assert_non_null(strstr(err, "every USB port for the device's speed is taken (2 in use)"));
        free(TAKE_PTR(err));
        assert_int_equal(crosvm_usb_list(e->standin, e->socket, 10000, &devs, &n, &err), 0);
        assert_int_equal(n, 2); /* nobody was taken out to make room */
        unsetenv("CROSVM_STANDIN_PORTS");
        vmm_disconnect(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_attach),
                cmocka_unit_test(test_parse_detach),
                cmocka_unit_test(test_parse_list),
                cmocka_unit_test(test_parse_vfio_list),
                cmocka_unit_test(test_parse_error),
                cmocka_unit_test(test_find_binary),
                cmocka_unit_test_setup_teardown(test_standin_attach_list_detach, setup, teardown),
                cmocka_unit_test_setup_teardown(test_standin_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hung_crosvm, setup, teardown),
                cmocka_unit_test_setup_teardown(test_vmm_crosvm, setup, teardown),
                cmocka_unit_test_setup_teardown(test_standin_vfio_list, setup, teardown),
                cmocka_unit_test_setup_teardown(test_vmm_crosvm_booting, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
