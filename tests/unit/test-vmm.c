/* vmm_* over QMP against scripted fake QEMUs: what is sent, and how answers are classified.
 * (The same paths against a real QEMU: tests/integration/test-vmm-qemu.sh.) */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#include "cleanup.h"
#include "fake-qmp.h"
#include "vmm.h"

#define OK "\"return\": {}"
#define ERR(desc) "\"error\": {\"class\": \"GenericError\", \"desc\": \"" desc "\"}"
#define NOT_FOUND(id) "\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Device '" id "' not found\"}"
#define PERIPHERALS                                                                                         \
        "\"return\": [{\"name\": \"type\", \"type\": \"string\"}, "                                         \
        "{\"name\": \"rp10\", \"type\": \"child<pcie-root-port>\"}, "                                       \
        "{\"name\": \"rp2\", \"type\": \"child<pcie-root-port>\"}, "                                        \
        "{\"name\": \"xhci\", \"type\": \"child<qemu-xhci>\"}, "                                            \
        "{\"name\": \"rp1\", \"type\": \"child<pcie-root-port>\"}]"
#define PORT_BUSY                                                                                           \
        "\"return\": [{\"name\": \"type\", \"type\": \"string\"}, "                                         \
        "{\"name\": \"child[0]\", \"type\": \"link<virtio-rng-pci>\"}]"
#define PORT_FREE                                                                                           \
        "\"return\": [{\"name\": \"type\", \"type\": \"string\"}, "                                         \
        "{\"name\": \"hotplug-handler\", \"type\": \"link<hotplug-handler>\"}]"
#define DELETED(id)                                                                                         \
        "{\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"" id                                      \
        "\", \"path\": \"/machine/peripheral/" id "\"}}\r\n"

static const struct vmm_opts opts = {.timeout_ms = 5000, .crosvm_bin = "crosvm", .detach_timeout_ms = 300};

struct vmm_case {
        const char *name;
        const struct fake_step *steps;
        int expected;
        const char *error_contains; /* in *ret_error, or NULL */
        const char *bus;            /* expected attachment bus, or NULL */
};

static const struct dev usb_dev = {.kind = DEV_USB, .busnum = 1, .devnum = 5};
static const struct dev pci_dev = {.kind = DEV_PCI, .pci_address = (char *)"0000:00:14.3"};
static const struct dev evdev_dev = {
        .kind = DEV_EVDEV, .sysname = (char *)"event3", .devnode = (char *)"/dev/input/event3"};

static void run_attach(const struct vmm_case *c, const struct dev *d, bool root_bus) {
        struct fake_qmp f;
        struct cfg_vm vm = {.name = (char *)"vm1", .type = VMM_QEMU};
        struct vmm_attachment a;
        struct vmm_conn *conn = NULL;
        _cleanup_free_ char *err = NULL;
        char id[VMM_ID_MAX];

        print_message("case: %s\n", c->name);
        assert_int_equal(vmm_device_id(d, id, sizeof(id)), 0);
        fake_qmp_start(&f, fake_qmp_script, c->steps);
        vm.socket = f.path;
        assert_int_equal(vmm_connect(&vm, &opts, &conn, &err), 0);
        int r = vmm_attach(conn, d, id, root_bus, &a, &err);
        vmm_disconnect(conn);
        assert_int_equal(fake_qmp_finish(&f), 0);
        assert_int_equal(r, c->expected);
        if (c->error_contains) {
                assert_non_null(err);
                assert_non_null(strstr(err, c->error_contains));
        }
        if (c->bus)
                assert_string_equal(a.bus, c->bus);
        if (r == 0 || r == -EEXIST)
                assert_string_equal(a.id, id);
}

/* Each step macro takes the rest of the step (its reply, events after it) as arguments. */
#define USB_ADD(...)                                                                                        \
        {                                                                                                   \
                .command = "device_add",                                                                    \
                .expect = {"\"driver\":\"usb-host\"", "\"hostbus\":1,", "\"hostaddr\":5,",                  \
                           "\"id\":\"vhp-usb-001-005\""},                                                   \
                __VA_ARGS__                                                                                 \
        }
#define NOT_YET ERR("failed to find host usb device 1:5")

/* One attempt per call: the caller retries (tests/unit/test-xact.c), reconnecting. */
static const struct fake_step usb_ok[] = {USB_ADD(.reply = OK), FAKE_END};
static const struct fake_step usb_not_yet[] = {USB_ADD(.reply = NOT_YET), FAKE_END};
static const struct fake_step usb_duplicate[] = {
        USB_ADD(.reply = ERR("Duplicate device ID 'vhp-usb-001-005'")), FAKE_END};
static const struct fake_step usb_other_error[] = {
        USB_ADD(.reply = ERR("Bus 'xhci.0' does not support hotplugging")), FAKE_END};

static void test_attach_usb(void **state) {
        static const struct vmm_case cases[] = {
                {"attached", usb_ok, 0, NULL, ""},
                {"not visible yet", usb_not_yet, -EAGAIN, "failed to find host usb device 1:5", NULL},
                {"duplicate id", usb_duplicate, -EEXIST, "Duplicate device ID", NULL},
                {"other refusal", usb_other_error, -EREMOTEIO, "does not support hotplugging", NULL},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                run_attach(&cases[i], &usb_dev, false);
}

#define LIST_PERIPHERALS                                                                                    \
        { .command = "qom-list", .expect = {"\"path\":\"/machine/peripheral\""}, .reply = PERIPHERALS }
#define PORT(rp, state)                                                                                     \
        {                                                                                                   \
                .command = "qom-list", .expect = {"\"path\":\"/machine/peripheral/" rp "/" rp "\""},        \
                .reply = state                                                                              \
        }
#define PCI_ADD(rp, ...)                                                                                    \
        {                                                                                                   \
                .command = "device_add",                                                                    \
                .expect = {"\"driver\":\"vfio-pci\"", "\"host\":\"0000:00:14.3\"", "\"bus\":\"" rp "\"",    \
                           "\"addr\":\"0\""},                                                               \
                __VA_ARGS__                                                                                 \
        }
#define EVDEV_ADD(rp, ...)                                                                                  \
        {                                                                                                   \
                .command = "device_add",                                                                    \
                .expect = {"\"driver\":\"virtio-input-host-pci\"", "\"evdev\":\"/dev/input/event3\"",       \
                           "\"id\":\"vhp-evdev-event3\"", "\"bus\":\"" rp "\""},                            \
                __VA_ARGS__                                                                                 \
        }

/* Ports are tried in natural order (rp1, rp2, rp10); rp1 is occupied; rp2 looks free but QEMU
 * says it is taken (a race with another client): move on to rp10. */
static const struct fake_step pci_second_free[] = {
        LIST_PERIPHERALS,
        PORT("rp1", PORT_BUSY),
        PORT("rp2", PORT_FREE),
        PCI_ADD("rp2", .reply = ERR("PCI: slot 0 function 0 already occupied by virtio-rng-pci, new "
                                    "func vfio-pci cannot be exposed to guest.")),
        PORT("rp10", PORT_FREE),
        PCI_ADD("rp10", .reply = OK),
        FAKE_END,
};
static const struct fake_step pci_refused[] = {
        LIST_PERIPHERALS,
        PORT("rp1", PORT_BUSY),
        PORT("rp2", PORT_FREE),
        PCI_ADD("rp2", .reply = ERR("vfio 0000:00:14.3: no such host device")),
        FAKE_END,
};
static const struct fake_step pci_no_port[] = {
        LIST_PERIPHERALS,
        PORT("rp1", PORT_BUSY),
        PORT("rp2", PORT_BUSY),
        PORT("rp10", PORT_FREE),
        PCI_ADD("rp10", .reply = ERR("PCI: slot 0 function 0 not available for vfio-pci, in use by x")),
        FAKE_END,
};
static const struct fake_step evdev_busy[] = {
        LIST_PERIPHERALS,
        PORT("rp1", PORT_FREE),
        EVDEV_ADD("rp1",
                  .reply =
                          ERR("/dev/input/event3: failed to get exclusive access: Device or resource busy")),
        FAKE_END,
};
static const struct fake_step evdev_ok[] = {
        LIST_PERIPHERALS,
        PORT("rp1", PORT_FREE),
        EVDEV_ADD("rp1", .reply = OK),
        FAKE_END,
};
static const struct fake_step pci_root_bus[] = {
        {.command = "device_add",
         .expect = {"\"driver\":\"vfio-pci\",\"host\":\"0000:00:14.3\",\"id\":\"vhp-pci-0000-00-14.3\"}"},
         .reply = OK},
        FAKE_END,
};

static void test_attach_pci_evdev(void **state) {
        static const struct vmm_case pci[] = {
                {"second free port", pci_second_free, 0, NULL, "rp10"},
                {"refused", pci_refused, -EREMOTEIO, "no such host device", NULL},
                {"no port", pci_no_port, -ENOSPC, "no free pcie-root-port", NULL},
        };
        static const struct vmm_case evdev[] = {
                {"busy", evdev_busy, -EBUSY, "exclusive access", NULL},
                {"ok", evdev_ok, 0, NULL, "rp1"},
        };
        static const struct vmm_case root = {"root bus", pci_root_bus, 0, NULL, ""};

        for (size_t i = 0; i < ELEMENTSOF(pci); i++)
                run_attach(&pci[i], &pci_dev, false);
        for (size_t i = 0; i < ELEMENTSOF(evdev); i++)
                run_attach(&evdev[i], &evdev_dev, false);
        run_attach(&root, &pci_dev, true);
}

#define DEL(id, ...)                                                                                        \
        { .command = "device_del", .expect = {"{\"id\":\"" id "\"}"}, __VA_ARGS__ }

static const struct fake_step del_ok[] = {
        DEL("vhp-usb-001-005", .reply = OK, .after = DELETED("other") DELETED("vhp-usb-001-005")), FAKE_END};
static const struct fake_step del_gone[] = {DEL("vhp-usb-001-005", .reply = NOT_FOUND("vhp-usb-001-005")),
                                            FAKE_END};
static const struct fake_step del_no_event[] = {
        DEL("vhp-usb-001-005", .reply = OK, .after = DELETED("other")), FAKE_END};
static const struct fake_step del_pending[] = {
        DEL("vhp-usb-001-005", .reply = ERR("Device vhp-usb-001-005 is already in the process of unplug")),
        FAKE_END};

static void test_detach(void **state) {
        static const struct {
                const struct fake_step *steps;
                int expected; /* 1: accepted, to be confirmed with vmm_has() */
        } cases[] = {
                {del_ok, 0},
                {del_gone, -ENOENT},
                {del_no_event, 1},
                {del_pending, 1},
        };
        struct vmm_attachment a = {.id = "vhp-usb-001-005", .port = -1};

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct fake_qmp f;
                struct cfg_vm vm = {.name = (char *)"vm1", .type = VMM_QEMU};
                _cleanup_free_ char *err = NULL;

                struct vmm_conn *conn = NULL;

                fake_qmp_start(&f, fake_qmp_script, cases[i].steps);
                vm.socket = f.path;
                assert_int_equal(vmm_connect(&vm, &opts, &conn, &err), 0);
                int r = vmm_detach(conn, &a, &err);
                vmm_disconnect(conn);
                assert_int_equal(fake_qmp_finish(&f), 0);
                /* The event sent right after the reply may not have arrived when the reply did. */
                if (cases[i].steps == del_ok && r == 1)
                        r = 0;
                assert_int_equal(r, cases[i].expected);
        }
}

static const struct fake_step list_steps[] = {
        {.command = "qom-list",
         .expect = {"\"path\":\"/machine/peripheral\""},
         .reply = "\"return\": [{\"name\": \"type\", \"type\": \"string\"}, "
                  "{\"name\": \"vhp-usb-001-005\", \"type\": \"child<usb-host>\"}, "
                  "{\"name\": \"xhci\", \"type\": \"child<qemu-xhci>\"}, "
                  "{\"name\": \"vhp-pci-0000-00-14.3\", \"type\": \"child<vfio-pci>\"}, "
                  "{\"name\": \"kbd\", \"type\": \"child<virtio-input-host-pci>\"}]"},
        {.command = "qom-get",
         .expect = {"/machine/peripheral/vhp-usb-001-005", "\"property\":\"hostbus\""},
         .reply = "\"return\": 1"},
        {.command = "qom-get",
         .expect = {"/machine/peripheral/vhp-usb-001-005", "\"property\":\"hostaddr\""},
         .reply = "\"return\": 5"},
        {.command = "qom-get",
         .expect = {"/machine/peripheral/vhp-pci-0000-00-14.3", "\"property\":\"host\""},
         .reply = "\"return\": \"0000:00:14.3\""},
        {.command = "qom-get",
         .expect = {"/machine/peripheral/kbd", "\"property\":\"evdev\""},
         .reply = "\"return\": \"/dev/input/event3\""},
        FAKE_END,
};

static void test_list(void **state) {
        struct fake_qmp f;
        struct cfg_vm vm = {.name = (char *)"vm1", .type = VMM_QEMU};
        struct vmm_list l;
        struct vmm_conn *conn = NULL;

        fake_qmp_start(&f, fake_qmp_script, list_steps);
        vm.socket = f.path;
        assert_int_equal(vmm_connect(&vm, &opts, &conn, NULL), 0);
        assert_int_equal(vmm_list(conn, &l, NULL), 0);
        vmm_disconnect(conn);
        assert_int_equal(fake_qmp_finish(&f), 0);
        assert_int_equal(l.n, 4);
        assert_string_equal(l.items[0].id, "vhp-usb-001-005");
        assert_int_equal(l.items[0].kind, DEV_USB);
        assert_true(l.items[0].ours);
        assert_int_equal(l.items[0].hostbus, 1);
        assert_int_equal(l.items[0].hostaddr, 5);
        assert_string_equal(l.items[1].driver, "qemu-xhci");
        assert_int_equal(l.items[1].kind, DEV_UNKNOWN);
        assert_false(l.items[1].ours);
        assert_int_equal(l.items[2].kind, DEV_PCI);
        assert_string_equal(l.items[2].host, "0000:00:14.3");
        assert_int_equal(l.items[3].kind, DEV_EVDEV);
        assert_false(l.items[3].ours);
        assert_string_equal(l.items[3].evdev, "/dev/input/event3");
        vmm_list_clear(&l);
        assert_int_equal(l.n, 0);
}

static void test_vm_not_running(void **state) {
        struct cfg_vm vm = {
                .name = (char *)"vm1", .type = VMM_QEMU, .socket = (char *)"/nonexistent/vhp/qmp.sock"};
        struct vmm_conn *conn = NULL;
        _cleanup_free_ char *err = NULL;

        assert_int_equal(vmm_connect(&vm, &opts, &conn, &err), -EHOSTDOWN);
        assert_null(conn);
        assert_non_null(strstr(err, "not running"));
}

/* A QEMU that floods events instead of answering: the error says so in words. */
static void test_event_flood(void **state) {
        static const struct fake_flood flood = {"", "{\"event\": \"X\", \"data\": {}}\r\n"};
        struct fake_qmp f;
        struct cfg_vm vm = {.name = (char *)"vm1", .type = VMM_QEMU};
        struct vmm_conn *conn = NULL;
        struct vmm_attachment a;
        _cleanup_free_ char *err = NULL;
        int r;

        fake_qmp_start(&f, fake_qmp_flood, &flood);
        vm.socket = f.path;
        assert_int_equal(vmm_connect(&vm, &opts, &conn, &err), 0);
        r = vmm_attach(conn, &usb_dev, "vhp-usb-001-005", false, &a, &err);
        vmm_disconnect(conn);
        assert_int_equal(fake_qmp_finish(&f), 0);
        if (RUNNING_ON_VALGRIND && r == -ETIMEDOUT)
                return; /* reading 16 MiB under valgrind may outlast the deadline instead */
        assert_int_equal(r, -EMSGSIZE);
        assert_string_equal(
                err,
                "QMP device_add failed: QEMU sent more than 16 MiB without answering (an event flood?)");
}

static void test_device_id(void **state) {
        static const struct {
                struct dev d;
                int expected;
                const char *id;
        } cases[] = {
                {{.kind = DEV_USB, .busnum = 1, .devnum = 5}, 0, "vhp-usb-001-005"},
                {{.kind = DEV_USB, .busnum = 1, .devnum = 23}, 0, "vhp-usb-001-023"},
                {{.kind = DEV_USB, .busnum = 12, .devnum = 3}, 0, "vhp-usb-012-003"},
                {{.kind = DEV_USB, .busnum = 0, .devnum = 3}, -EINVAL, NULL},
                {{.kind = DEV_PCI, .pci_address = (char *)"0000:00:14.3"}, 0, "vhp-pci-0000-00-14.3"},
                {{.kind = DEV_PCI, .pci_address = (char *)"0000:00:14.3\"x"}, -EINVAL, NULL},
                {{.kind = DEV_PCI}, -EINVAL, NULL},
                {{.kind = DEV_EVDEV, .sysname = (char *)"event12"}, 0, "vhp-evdev-event12"},
                {{.kind = DEV_EVDEV, .devnode = (char *)"/dev/input/event7"}, 0, "vhp-evdev-event7"},
                {{.kind = DEV_EVDEV, .sysname = (char *)"ev/ent\"3 x"}, 0, "vhp-evdev-ev_ent_3_x"},
                /* 63 characters is the longest id */
                {{.kind = DEV_EVDEV,
                  .sysname = (char *)"event012345678901234567890123456789012345678901234567"},
                 0,
                 "vhp-evdev-event012345678901234567890123456789012345678901234567"},
                {{.kind = DEV_EVDEV,
                  .sysname = (char *)"event0123456789012345678901234567890123456789012345678"},
                 -EINVAL,
                 NULL},
                {{.kind = DEV_UNKNOWN}, -EINVAL, NULL},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char id[VMM_ID_MAX];
                assert_int_equal(vmm_device_id(&cases[i].d, id, sizeof(id)), cases[i].expected);
                if (cases[i].id) {
                        assert_string_equal(id, cases[i].id);
                        assert_true(strlen(id) <= 63);
                }
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_device_id),
                cmocka_unit_test(test_attach_usb),
                cmocka_unit_test(test_attach_pci_evdev),
                cmocka_unit_test(test_detach),
                cmocka_unit_test(test_list),
                cmocka_unit_test(test_vm_not_running),
                cmocka_unit_test(test_event_flood),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
