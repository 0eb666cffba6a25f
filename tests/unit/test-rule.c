/* Rule semantics as a table: (device, configuration) → decision, each row its own test. Devices are
 * described the way udev describes them in an event, so the environment path of the device model is
 * used too. driverPath runs against a module tree built with depmod (tests/tools/mk-module-tree.sh);
 * USB authorization decisions are a table too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>

#include "config.h"
#include "device.h"
#include "dl.h"
#include "modalias.h"
#include "rule.h"

#define VMS                                                                                                 \
        "\"vms\":[{\"name\":\"vm1\",\"type\":\"qemu\",\"socket\":\"/run/vm1.sock\"},"                       \
        "{\"name\":\"vm2\",\"type\":\"crosvm\",\"socket\":\"/run/vm2.sock\"},"                              \
        "{\"name\":\"ch1\",\"type\":\"cloud-hypervisor\",\"socket\":\"/run/ch1.sock\"}]"
#define USB(entries) "{\"usbPassthrough\":[" entries "]," VMS "}"
#define PCI(entries) "{\"pciPassthrough\":[" entries "]," VMS "}"
#define EVDEV(section) "{\"evdevPassthrough\":" section "," VMS "}"
#define ENTRY(vm, allow) "{\"targetVm\":\"" vm "\",\"allow\":[" allow "]}"
#define ENTRY_DENY(vm, allow, deny) "{\"targetVm\":\"" vm "\",\"allow\":[" allow "],\"deny\":[" deny "]}"

#define USB_DEV(path, ...)                                                                                  \
        (const char *const[]) {                                                                             \
                "SUBSYSTEM=usb", "DEVTYPE=usb_device",                                                      \
                        "DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/" path, __VA_ARGS__, NULL            \
        }

/* Logitech Unifying receiver: composite HID (keyboard 03/01/01, mouse 03/01/02, generic 03/00/00). */
#define UNIFYING                                                                                            \
        USB_DEV("1-2", "ID_VENDOR_ID=046d", "ID_MODEL_ID=c52b", "BUSNUM=001", "DEVNUM=004",                 \
                "ID_VENDOR_FROM_DATABASE=Logitech, Inc.", "ID_MODEL_FROM_DATABASE=Unifying Receiver",       \
                "TYPE=0/0/0", "ID_USB_INTERFACES=:030101:030102:030000:")
/* Prolific serial adapter behind a hub at port 3, hub port 2. */
#define PROLIFIC                                                                                            \
        USB_DEV("1-3/1-3.2", "ID_VENDOR_ID=067b", "ID_MODEL_ID=23a3", "BUSNUM=001", "DEVNUM=007",           \
                "ID_VENDOR_FROM_DATABASE=Prolific Technology, Inc.",                                        \
                "ID_MODEL_FROM_DATABASE=USB-Serial Controller", "ID_SERIAL_SHORT=ABC123", "TYPE=0/0/0",     \
                "ID_USB_INTERFACES=:ff0000:")
/* AX88179 ethernet: vendor-specific interface; product name holds "Ethernet". */
#define AX88179                                                                                             \
        USB_DEV("1-3/1-3.4", "ID_VENDOR_ID=0b95", "ID_MODEL_ID=1790", "BUSNUM=001", "DEVNUM=008",           \
                "ID_VENDOR_FROM_DATABASE=ASIX Electronics Corp.",                                           \
                "ID_MODEL_FROM_DATABASE=AX88179 Gigabit Ethernet", "TYPE=255/255/0",                        \
                "ID_USB_INTERFACES=:ffff00:")
#define HUB                                                                                                 \
        USB_DEV("1-3", "ID_VENDOR_ID=05e3", "ID_MODEL_ID=0610", "BUSNUM=001", "DEVNUM=003", "TYPE=9/0/1",   \
                "ID_USB_INTERFACES=:090000:")
/* A device that leaves TYPE unset and puts the class only on its interface. */
#define WEBCAM                                                                                              \
        USB_DEV("1-5", "ID_VENDOR_ID=04f2", "ID_MODEL_ID=b6dd", "BUSNUM=001", "DEVNUM=009",                 \
                "ID_VENDOR_FROM_DATABASE=Chicony Electronics Co., Ltd", "TYPE=239/2/1",                     \
                "ID_USB_INTERFACES=:0e0100:0e0200:010100:010200:")

#define PCI_DEV(addr, id, cls)                                                                              \
        (const char *const[]) {                                                                             \
                "SUBSYSTEM=pci", "DEVPATH=/devices/pci0000:00/" addr, "PCI_SLOT_NAME=" addr, "PCI_ID=" id,  \
                        "PCI_CLASS=" cls, NULL                                                              \
        }
#define WIFI PCI_DEV("0000:00:14.3", "8086:A0F0", "28000")
#define GPU PCI_DEV("0000:00:02.0", "8086:A7A1", "30000")

#define INPUT_DEV(path, ...)                                                                                \
        (const char *const[]) {                                                                             \
                "SUBSYSTEM=input", "DEVPATH=" path, __VA_ARGS__, NULL                                       \
        }
#define KEYBOARD                                                                                            \
        INPUT_DEV("/devices/platform/i8042/serio0/input/input3/event3", "ID_INPUT=1",                       \
                  "ID_INPUT_KEYBOARD=1", "ID_BUS=i8042", "NAME=AT Translated Set 2 keyboard",               \
                  "ID_PATH_TAG=platform-i8042-serio-0")
#define POWER_BUTTON                                                                                        \
        INPUT_DEV("/devices/LNXSYSTM:00/LNXPWRBN:00/input/input2/event2", "ID_INPUT=1", "ID_INPUT_KEY=1",   \
                  "NAME=Power Button", "ID_PATH_TAG=acpi-LNXPWRBN_00")
#define USB_MOUSE_EVDEV                                                                                     \
        INPUT_DEV("/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/0003:046D:C077.0001/input/input9/"     \
                  "event9",                                                                                 \
                  "ID_INPUT=1", "ID_INPUT_MOUSE=1", "ID_BUS=usb", "NAME=Logitech USB Optical Mouse")

struct rule_case {
        const char *name;
        const char *config;
        const char *const *dev;
        enum dev_removable removable;
        const char *vm;     /* NULL: ignored */
        int entry, allow;   /* expected indices when attached */
        const char *reason; /* substring of the reason */
};

static const struct rule_case cases[] = {
        /* AND within a rule */
        {"vendorId+productId match", USB(ENTRY("vm1", "{\"vendorId\":\"046d\",\"productId\":\"c52b\"}")),
         UNIFYING, 0, "vm1", 0, 0, NULL},
        {"vendorId+productId: one differs",
         USB(ENTRY("vm1", "{\"vendorId\":\"046d\",\"productId\":\"c077\"}")), UNIFYING, 0, NULL, 0, 0,
         "no usbPassthrough entry matched"},
        {"vendorId alone matches every product", USB(ENTRY("vm1", "{\"vendorId\":\"046D\"}")), UNIFYING, 0,
         "vm1", 0, 0, NULL},
        {"productId alone", USB(ENTRY("vm1", "{\"productId\":\"23A3\"}")), PROLIFIC, 0, "vm1", 0, 0, NULL},
        {"vendorId and interfaceClass both required",
         USB(ENTRY("vm1", "{\"vendorId\":\"046d\",\"interfaceClass\":8}")), UNIFYING, 0, NULL, 0, 0, NULL},
        /* interfaces */
        {"composite device matched by any interface",
         USB(ENTRY("vm1", "{\"interfaceClass\":3,\"interfaceProtocol\":2}")), UNIFYING, 0, "vm1", 0, 0,
         NULL},
        {"interface triple held by one interface of a composite device",
         USB(ENTRY("vm1", "{\"interfaceClass\":14,\"interfaceSubclass\":1,\"interfaceProtocol\":0}")),
         WEBCAM, 0, "vm1", 0, 0, NULL},
        {"class 1 with subclass 1 holds on one interface",
         USB(ENTRY("vm1", "{\"interfaceClass\":1,\"interfaceSubclass\":1}")), WEBCAM, 0, "vm1", 0, 0, NULL},
        {"class 3 subclass 0 protocol 2 on no single interface",
         USB(ENTRY("vm1", "{\"interfaceClass\":3,\"interfaceSubclass\":0,\"interfaceProtocol\":2}")),
         UNIFYING, 0, NULL, 0, 0, NULL},
        {"device class triple",
         USB(ENTRY("vm1", "{\"deviceClass\":239,\"deviceSubclass\":2,\"deviceProtocol\":1}")), WEBCAM, 0,
         "vm1", 0, 0, NULL},
        {"device class zero is not the interface class", USB(ENTRY("vm1", "{\"deviceClass\":3}")), UNIFYING,
         0, NULL, 0, 0, NULL},
        /* names: POSIX ERE, case-insensitive, anchored at the start only */
        {"vendorName prefix", USB(ENTRY("vm1", "{\"vendorName\":\"logitech\"}")), UNIFYING, 0, "vm1", 0, 0,
         NULL},
        {"productName not anchored at end but at start", USB(ENTRY("vm1", "{\"productName\":\"Gigabit\"}")),
         AX88179, 0, NULL, 0, 0, NULL},
        {"productName .*ethernet.* anywhere", USB(ENTRY("vm1", "{\"productName\":\".*ethernet.*\"}")),
         AX88179, 0, "vm1", 0, 0, NULL},
        {"productName alternation", USB(ENTRY("vm1", "{\"productName\":\"foo|AX88\"}")), AX88179, 0, "vm1",
         0, 0, NULL},
        {"alternation stays anchored", USB(ENTRY("vm1", "{\"productName\":\"foo|Ethernet\"}")), AX88179, 0,
         NULL, 0, 0, NULL},
        {"serial exact", USB(ENTRY("vm1", "{\"serial\":\"ABC123\"}")), PROLIFIC, 0, "vm1", 0, 0, NULL},
        {"serial is not a prefix", USB(ENTRY("vm1", "{\"serial\":\"ABC\"}")), PROLIFIC, 0, NULL, 0, 0, NULL},
        /* topology */
        {"bus", USB(ENTRY("vm1", "{\"bus\":1,\"vendorId\":\"067b\"}")), PROLIFIC, 0, "vm1", 0, 0, NULL},
        {"bus mismatch", USB(ENTRY("vm1", "{\"bus\":2}")), PROLIFIC, 0, NULL, 0, 0, NULL},
        {"port is the root port behind a hub", USB(ENTRY("vm1", "{\"port\":3}")), PROLIFIC, 0, "vm1", 0, 0,
         NULL},
        {"port is not the hub port", USB(ENTRY("vm1", "{\"port\":2}")), PROLIFIC, 0, NULL, 0, 0, NULL},
        {"portPath is the whole path", USB(ENTRY("vm1", "{\"portPath\":\"3.2\"}")), PROLIFIC, 0, "vm1", 0, 0,
         NULL},
        {"portPath of the hub does not match its child", USB(ENTRY("vm1", "{\"portPath\":\"3\"}")), PROLIFIC,
         0, NULL, 0, 0, NULL},
        {"removable listed", USB(ENTRY("vm1", "{\"removable\":[\"removable\",\"unknown\"]}")), PROLIFIC,
         DEV_REMOVABLE_REMOVABLE, "vm1", 0, 0, NULL},
        {"fixed not listed", USB(ENTRY("vm1", "{\"removable\":[\"removable\"]}")), PROLIFIC,
         DEV_REMOVABLE_FIXED, NULL, 0, 0, NULL},
        /* entries: first claiming entry, deny local to its entry */
        {"first claiming entry wins",
         USB(ENTRY("vm1", "{\"vendorId\":\"046d\"}") "," ENTRY("vm2", "{\"vendorId\":\"046d\"}")), UNIFYING,
         0, "vm1", 0, 0, NULL},
        {"second allow rule of an entry",
         USB(ENTRY("vm1", "{\"vendorId\":\"ffff\"},{\"interfaceClass\":3}")), UNIFYING, 0, "vm1", 0, 1,
         NULL},
        {"deny falls through to a later entry",
         USB(ENTRY_DENY(
                 "vm1",
                 "{\"interfaceClass\":3}",
                 "{\"vendorId\":\"046d\",\"productId\":\"c52b\"}") "," ENTRY("vm2",
                                                                             "{\"vendorId\":\"046d\"}")),
         UNIFYING, 0, "vm2", 1, 0, NULL},
        {"deny with no later entry",
         USB(ENTRY_DENY("vm1", "{\"interfaceClass\":3}", "{\"vendorId\":\"046d\",\"productId\":\"c52b\"}")),
         UNIFYING, 0, NULL, 0, 0, "denied by usbPassthrough[0] deny rule 0"},
        {"disabled deny rule does not deny",
         USB(ENTRY_DENY("vm1", "{\"interfaceClass\":3}", "{\"vendorId\":\"046d\",\"disable\":true}")),
         UNIFYING, 0, "vm1", 0, 0, NULL},
        {"disabled allow rule",
         USB(ENTRY("vm1", "{\"vendorId\":\"067b\",\"productId\":\"23a3\",\"disable\":true}")), PROLIFIC, 0,
         NULL, 0, 0, NULL},
        {"enable:false rule", USB(ENTRY("vm1", "{\"vendorId\":\"067b\",\"enable\":false}")), PROLIFIC, 0,
         NULL, 0, 0, NULL},
        {"disabled entry skipped",
         USB("{\"targetVm\":\"vm1\",\"disable\":true,\"allow\":[{\"vendorId\":\"067b\"}]}," ENTRY(
                 "vm2", "{\"vendorId\":\"067b\"}")),
         PROLIFIC, 0, "vm2", 1, 0, NULL},
        {"allowedVms: first VM",
         USB("{\"allowedVms\":[\"vm2\",\"vm1\"],\"allow\":[{\"vendorId\":\"067b\"}]}"), PROLIFIC, 0, "vm2",
         0, 0, NULL},
        /* exclusions */
        {"hubs are never passed", USB(ENTRY("vm1", "{\"vendorId\":\"05e3\"}")), HUB, 0, NULL, 0, 0,
         "USB hub"},
        {"hubs not even by class", USB(ENTRY("vm1", "{\"interfaceClass\":9}")), HUB, 0, NULL, 0, 0,
         "USB hub"},
        /* PCI */
        {"pci address", PCI(ENTRY("vm1", "{\"address\":\"0000:00:14.3\"}")), WIFI, 0, "vm1", 0, 0, NULL},
        {"pci address without domain", PCI(ENTRY("vm1", "{\"address\":\"00:14.3\"}")), WIFI, 0, "vm1", 0, 0,
         NULL},
        {"pci vendor+device", PCI(ENTRY("vm1", "{\"vendorId\":\"8086\",\"deviceId\":\"a7a1\"}")), GPU, 0,
         "vm1", 0, 0, NULL},
        {"pci device mismatch", PCI(ENTRY("vm1", "{\"vendorId\":\"8086\",\"deviceId\":\"a7a1\"}")), WIFI, 0,
         NULL, 0, 0, NULL},
        {"pci class triple",
         PCI(ENTRY("vm1", "{\"deviceClass\":2,\"deviceSubclass\":128,\"deviceProgIf\":0}")), WIFI, 0, "vm1",
         0, 0, NULL},
        {"usb rules do not see pci devices", USB(ENTRY("vm1", "{\"vendorId\":\"8086\"}")), WIFI, 0, NULL, 0,
         0, NULL},
        /* evdev */
        {"evdev name regex", EVDEV("[" ENTRY("vm1", "{\"name\":\"AT Translated\"}") "]"), KEYBOARD, 0, "vm1",
         0, 0, NULL},
        {"evdev pathTag", EVDEV("[" ENTRY("vm1", "{\"pathTag\":\"acpi-\"}") "]"), POWER_BUTTON, 0, "vm1", 0,
         0, NULL},
        {"evdev property value case-insensitive",
         EVDEV("[" ENTRY("vm1", "{\"property\":\"ID_INPUT_KEYBOARD\",\"value\":\"1\"}") "]"), KEYBOARD, 0,
         "vm1", 0, 0, NULL},
        {"evdev property absent",
         EVDEV("[" ENTRY("vm1", "{\"property\":\"ID_INPUT_KEYBOARD\",\"value\":\"1\"}") "]"), POWER_BUTTON,
         0, NULL, 0, 0, NULL},
        {"legacy evdev object form", EVDEV("{\"disable\":false,\"targetVm\":\"vm1\"}"), POWER_BUTTON, 0,
         "vm1", 0, -1, NULL},
        {"legacy evdev disabled", EVDEV("{\"disable\":true,\"targetVm\":\"vm1\"}"), KEYBOARD, 0, NULL, 0, 0,
         NULL},
        {"legacy evdev skips USB input nodes", EVDEV("{\"targetVm\":\"vm1\"}"), USB_MOUSE_EVDEV, 0, NULL, 0,
         0, "USB device"},
        {"evdev rule skips USB input nodes", EVDEV("[" ENTRY("vm1", "{\"name\":\"Logitech\"}") "]"),
         USB_MOUSE_EVDEV, 0, NULL, 0, 0, "USB device"},
};

static void test_case(const struct rule_case *tc) {
        struct cfg *cfg = NULL;
        struct cfg_error err = {{0}};
        struct dev *d = NULL;
        struct rule_decision dec;

        print_message("case: %s\n", tc->name);
        if (cfg_load_string(tc->config, strlen(tc->config), "test.json", &cfg, &err) != 0)
                fail_msg("%s: config did not load: %s", tc->name, err.msg);
        assert_int_equal(dev_new_from_environ((char *const *)tc->dev, &d), 0);
        d->removable = tc->removable;
        rule_decide(cfg, d, NULL, &dec);
        if (tc->vm) {
                if (dec.action != RULE_ATTACH)
                        fail_msg("%s: expected attach to %s, got ignore (%s)", tc->name, tc->vm, dec.reason);
                assert_string_equal(dec.vm->name, tc->vm);
                assert_int_equal(dec.entry_index, tc->entry);
                assert_int_equal(dec.rule_index, tc->allow);
        } else if (dec.action != RULE_IGNORE) {
                fail_msg("%s: expected ignore, got attach to %s (%s)", tc->name, dec.vm->name, dec.reason);
        }
        if (tc->reason && !strstr(dec.reason, tc->reason))
                fail_msg("%s: reason '%s' lacks '%s'", tc->name, dec.reason, tc->reason);
        dev_free(d);
        cfg_free(cfg);
}

static void test_row(void **state) {
        test_case(*state);
}

static void test_allowed_vms_preference(void **state) {
        const char *conf = USB("{\"allowedVms\":[\"vm1\",\"vm2\"],\"allow\":[{\"vendorId\":\"067b\"}]}");
        struct cfg *cfg = NULL;
        struct cfg_error err;
        struct dev *d = NULL;
        struct rule_decision dec;
        (void)state;

        assert_int_equal(cfg_load_string(conf, strlen(conf), "t.json", &cfg, &err), 0);
        assert_int_equal(dev_new_from_environ((char *const *)PROLIFIC, &d), 0);
        rule_decide(cfg, d, "vm2", &dec);
        assert_string_equal(dec.vm->name, "vm2");
        /* A stored choice naming a VM the entry does not allow is not followed. */
        rule_decide(cfg, d, "vm3", &dec);
        assert_string_equal(dec.vm->name, "vm1");
        /* The same, applied to a decision already made (what the transaction does). */
        rule_decide(cfg, d, NULL, &dec);
        assert_true(rule_choose_vm(&dec, "vm2"));
        assert_string_equal(dec.vm->name, "vm2");
        assert_false(rule_choose_vm(&dec, "vm3"));
        assert_string_equal(dec.vm->name, "vm2");
        assert_false(rule_choose_vm(&dec, NULL));
        dev_free(d);
        cfg_free(cfg);
}

static void test_host_mount_excluded(void **state) {
        const char *conf = USB(ENTRY("vm1", "{\"vendorId\":\"067b\"}"));
        struct cfg *cfg = NULL;
        struct cfg_error err;
        struct dev *d = NULL;
        struct rule_decision dec;
        (void)state;

        assert_int_equal(cfg_load_string(conf, strlen(conf), "t.json", &cfg, &err), 0);
        assert_int_equal(dev_new_from_environ((char *const *)PROLIFIC, &d), 0);
        rule_decide(cfg, d, NULL, &dec);
        assert_int_equal(dec.action, RULE_ATTACH);
        /* Found out after the rules claimed it: the decision is taken back. */
        d->host_mount = strdup("/boot");
        assert_true(rule_recheck(d, &dec));
        assert_int_equal(dec.action, RULE_IGNORE);
        assert_null(dec.vm);
        assert_int_equal(dec.entry_index, -1);
        assert_string_equal(dec.reason, "holds a host-required mount (/boot)");
        assert_false(rule_recheck(d, &dec));
        rule_decide(cfg, d, NULL, &dec);
        assert_int_equal(dec.action, RULE_IGNORE);
        assert_non_null(strstr(dec.reason, "/boot"));
        dev_free(d);
        cfg_free(cfg);
}

static void test_unknown_kind(void **state) {
        const char *conf = USB(ENTRY("vm1", "{\"vendorId\":\"067b\"}"));
        const char *const iface[] = {"SUBSYSTEM=usb", "DEVTYPE=usb_interface",
                                     "DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0", NULL};
        struct cfg *cfg = NULL;
        struct cfg_error err;
        struct dev *d = NULL;
        struct rule_decision dec;
        (void)state;

        assert_int_equal(cfg_load_string(conf, strlen(conf), "t.json", &cfg, &err), 0);
        assert_int_equal(dev_new_from_environ((char *const *)iface, &d), 0);
        rule_decide(cfg, d, NULL, &dec);
        assert_int_equal(dec.action, RULE_IGNORE);
        assert_non_null(strstr(dec.reason, "not a handled device"));
        dev_free(d);
        cfg_free(cfg);
}

/* ---- entries naming no VM, and VMs that cannot be hot-plugged */

static void test_claims_nothing_and_cold_plug_only(void **state) {
        const struct rule_case more[] = {
                {"entry without a VM claims nothing; a later one does",
                 USB("{\"allow\":[{\"vendorId\":\"067b\"}]}," ENTRY("vm2", "{\"vendorId\":\"067b\"}")),
                 PROLIFIC, 0, "vm2", 1, 0, NULL},
                {"entry without a VM alone", USB("{\"allow\":[{\"vendorId\":\"067b\"}]}"), PROLIFIC, 0, NULL,
                 0, 0, "no usbPassthrough entry matched"},
                {"cloud-hypervisor VM: ignored, said why", USB(ENTRY("ch1", "{\"vendorId\":\"067b\"}")),
                 PROLIFIC, 0, NULL, 0, 0,
                 "usbPassthrough[0] names ch1, a cloud-hypervisor VM: its type cannot be hot-plugged"},
                {"cloud-hypervisor PCI", PCI(ENTRY("ch1", "{\"address\":\"00:14.3\"}")), WIFI, 0, NULL, 0, 0,
                 "cannot be hot-plugged"},
        };
        for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++)
                test_case(&more[i]);
}

/* ---- driverPath: a module tree built with depmod, looked up through libkmod */

struct tree {
        char root[64];
        char dir[256]; /* the modulesDir */
};

static int tree_setup(void **state) {
        struct tree *t = calloc(1, sizeof(*t));
        char cmd[256];
        FILE *p;

        assert_non_null(t);
        strcpy(t->root, "/tmp/test-rule-modules-XXXXXX");
        assert_non_null(mkdtemp(t->root));
        snprintf(cmd, sizeof(cmd), "tests/tools/mk-module-tree.sh %s", t->root);
        p = popen(cmd, "r");
        assert_non_null(p);
        if (!fgets(t->dir, sizeof(t->dir), p))
                t->dir[0] = '\0';
        if (pclose(p) != 0 || !t->dir[0])
                fail_msg("tests/tools/mk-module-tree.sh failed (needs cc, objcopy and depmod)");
        t->dir[strcspn(t->dir, "\n")] = '\0';
        *state = t;
        return 0;
}

static int tree_teardown(void **state) {
        struct tree *t = *state;
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", t->root);
        assert_int_equal(system(cmd), 0);
        free(t);
        return 0;
}

/* RTL8153 in its vendor configuration (what r8152 selects): one interface of class 255. */
#define RTL8153                                                                                             \
        USB_DEV("2-3", "ID_VENDOR_ID=0bda", "ID_MODEL_ID=8153", "PRODUCT=bda/8153/3000", "BUSNUM=002",      \
                "DEVNUM=002", "TYPE=0/0/0",                                                                 \
                "ID_USB_INTERFACES=:ffff00:", "ID_MODEL_FROM_DATABASE=RTL8153 Gigabit Ethernet Adapter")
/* The same adapter in its CDC configuration: its interface class (2) tells what it is. */
#define RTL8153_ECM                                                                                         \
        USB_DEV("2-3", "ID_VENDOR_ID=0bda", "ID_MODEL_ID=8153", "PRODUCT=bda/8153/3000", "TYPE=0/0/0",      \
                "ID_USB_INTERFACES=:020600:0a0000:")
#define AX88179_P                                                                                           \
        USB_DEV("1-3/1-3.4", "ID_VENDOR_ID=0b95", "ID_MODEL_ID=1790", "PRODUCT=b95/1790/100", "TYPE=0/0/0", \
                "ID_USB_INTERFACES=:ffff00:")
#define PL2303                                                                                              \
        USB_DEV("1-3/1-3.2", "ID_VENDOR_ID=067b", "ID_MODEL_ID=23a3", "PRODUCT=67b/23a3/400", "TYPE=0/0/0", \
                "ID_USB_INTERFACES=:ff0000:")
#define UNKNOWN_VENDOR                                                                                      \
        USB_DEV("1-6", "ID_VENDOR_ID=ffff", "ID_MODEL_ID=0001", "PRODUCT=ffff/1/100", "TYPE=0/0/0",         \
                "ID_USB_INTERFACES=:ffff00:")
#define NO_PRODUCT                                                                                          \
        USB_DEV("1-7", "ID_VENDOR_ID=0bda", "ID_MODEL_ID=8153", "TYPE=0/0/0", "ID_USB_INTERFACES=:ffff00:")
#define KBD                                                                                                 \
        USB_DEV("1-8", "ID_VENDOR_ID=046d", "ID_MODEL_ID=c31c", "PRODUCT=46d/c31c/6400", "TYPE=0/0/0",      \
                "ID_USB_INTERFACES=:030101:030000:")

__attribute__((format(printf, 1, 2))) static struct cfg *load_fmt(const char *fmt, ...) {
        struct cfg_error err = {{0}};
        struct cfg *c = NULL;
        char json[2048];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(json, sizeof(json), fmt, ap);
        va_end(ap);
        if (cfg_load_string(json, strlen(json), "t.json", &c, &err) != 0)
                fail_msg("config did not load: %s", err.msg);
        return c;
}

static void decide(const struct cfg *c, const char *const *env, struct dev **ret_d,
                   struct rule_decision *dec) {
        assert_int_equal(dev_new_from_environ((char *const *)env, ret_d), 0);
        rule_decide(c, *ret_d, NULL, dec);
}

#define NET_RULE "{\"driverPath\":\".*/kernel/drivers/net/usb/.*\"}"
#define DRIVER_CONF(entries) "{\"general\":{\"modulesDir\":\"%s\"},\"usbPassthrough\":[" entries "]," VMS "}"

static void test_driver_path(void **state) {
        struct tree *t = *state;
        const struct {
                const char *name;
                const char *const *dev;
                const char *vm;
                bool looked_up;
        } table[] = {
                {"vendor-class NIC driven by r8152", RTL8153, "vm2", true},
                {"AX88179 behind a hub: ax88179_178a", AX88179_P, "vm2", true},
                {"vendor-class serial adapter: usb/serial, not net", PL2303, NULL, true},
                {"vendor class, no module aliases it", UNKNOWN_VENDOR, NULL, true},
                {"without bcdDevice no modalias can be built", NO_PRODUCT, NULL, true},
                {"CDC interface: its class tells, driverPath is not consulted", RTL8153_ECM, NULL, false},
                {"keyboard: claimed by the first entry, never looked up", KBD, "vm1", false},
        };
        struct cfg *c = load_fmt(
                DRIVER_CONF(ENTRY("vm1", "{\"interfaceClass\":3}") "," ENTRY("vm2", NET_RULE)), t->dir);

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                struct rule_decision dec;
                struct dev *d = NULL;
                print_message("case: %s\n", table[i].name);
                decide(c, table[i].dev, &d, &dec);
                if (table[i].vm && (dec.action != RULE_ATTACH || strcmp(dec.vm->name, table[i].vm) != 0))
                        fail_msg("%s: expected %s, got %s (%s)", table[i].name, table[i].vm,
                                 dec.action == RULE_ATTACH ? dec.vm->name : "ignore", dec.reason);
                if (!table[i].vm && dec.action != RULE_IGNORE)
                        fail_msg("%s: expected ignore, got %s (%s)", table[i].name, dec.vm->name,
                                 dec.reason);
                /* Only devices that reach a driverPath rule pay the lookup. */
                assert_int_equal(d->modules->resolved, table[i].looked_up);
                assert_int_equal(d->modules->error, 0);
                dev_free(d);
        }
        cfg_free(c);

        /* The module's file path, anchored at its start, case-insensitive. */
        struct rule_decision dec;
        struct dev *d = NULL;
        c = load_fmt(
                DRIVER_CONF(ENTRY("vm1", "{\"driverPath\":\"%s/KERNEL/drivers/net/usb/r8152\\\\.ko$\"}")),
                t->dir, t->dir);
        decide(c, RTL8153, &d, &dec);
        assert_int_equal(dec.action, RULE_ATTACH);
        dev_free(d);
        cfg_free(c);
        c = load_fmt(DRIVER_CONF(ENTRY("vm1", "{\"driverPath\":\"kernel/drivers/net\"}")), t->dir);
        decide(c, RTL8153, &d, &dec);
        assert_int_equal(dec.action, RULE_IGNORE); /* not a suffix match */
        dev_free(d);
        cfg_free(c);

        /* AND with the other fields; as a deny rule. */
        c = load_fmt(DRIVER_CONF(ENTRY("vm1", "{\"driverPath\":\".*/net/usb/\",\"vendorId\":\"0b95\"}")),
                     t->dir);
        decide(c, RTL8153, &d, &dec);
        assert_int_equal(dec.action, RULE_IGNORE);
        dev_free(d);
        decide(c, AX88179_P, &d, &dec);
        assert_int_equal(dec.action, RULE_ATTACH);
        dev_free(d);
        cfg_free(c);
        c = load_fmt(DRIVER_CONF(ENTRY_DENY("vm1", "{\"interfaceClass\":255}",
                                            "{\"driverPath\":\".*/usb/serial/\"}")),
                     t->dir);
        decide(c, PL2303, &d, &dec);
        assert_int_equal(dec.action, RULE_IGNORE);
        assert_non_null(strstr(dec.reason, "denied by usbPassthrough[0] deny rule 0"));
        dev_free(d);
        decide(c, RTL8153, &d, &dec);
        assert_int_equal(dec.action, RULE_ATTACH);
        dev_free(d);
        cfg_free(c);

        /* Looked up once per device: the answer stays when the tree is gone. */
        c = load_fmt(DRIVER_CONF(ENTRY("vm1", NET_RULE)), t->dir);
        decide(c, RTL8153, &d, &dec);
        assert_int_equal(dec.action, RULE_ATTACH);
        char moved[300];
        snprintf(moved, sizeof(moved), "%s.gone", t->dir);
        assert_int_equal(rename(t->dir, moved), 0);
        rule_decide(c, d, NULL, &dec);
        assert_int_equal(dec.action, RULE_ATTACH);
        dev_free(d);
        /* A fresh device now finds no index: no match, and the reason says why. */
        decide(c, RTL8153, &d, &dec);
        assert_int_equal(dec.action, RULE_IGNORE);
        assert_int_equal(d->modules->error, -ENOENT);
        if (!strstr(dec.reason, "driverPath: kernel module lookup failed: No such file or directory"))
                fail_msg("reason: %s", dec.reason);
        dev_free(d);
        assert_int_equal(rename(moved, t->dir), 0);
        cfg_free(c);
}

/* The device's own interfaces in sysfs win over what its properties say (bInterfaceNumber). */
static void test_modaliases_from_fields(void **state) {
        char aliases[4][MOD_ALIAS_MAX];
        struct dev *d = NULL;

        assert_int_equal(dev_new_from_environ((char *const *)RTL8153_ECM, &d), 0);
        assert_int_equal(mod_usb_modaliases(d, aliases, 4), 2);
        assert_string_equal(aliases[0], "usb:v0BDAp8153d3000dc00dsc00dp00ic02isc06ip00in00");
        assert_string_equal(aliases[1], "usb:v0BDAp8153d3000dc00dsc00dp00ic0Aisc00ip00in01");
        assert_int_equal(mod_usb_modaliases(d, aliases, 1), 1);
        dev_free(d);
        assert_int_equal(dev_new_from_environ((char *const *)NO_PRODUCT, &d), 0);
        assert_int_equal(mod_usb_modaliases(d, aliases, 4), 0);
        dev_free(d);
        assert_int_equal(dev_new_from_environ((char *const *)WIFI, &d), 0);
        assert_int_equal(mod_usb_modaliases(d, aliases, 4), 0);
        dev_free(d);
}

/* ---- USB authorization: what to write to "authorized", per moment (the older daemon's semantics) */

static void test_usb_auth(void **state) {
        static const char conf_on[] =
                "{\"usbAuthorization\":{\"enable\":true,\"deauthorizeUnmatched\":true,"
                "\"hostAllow\":[{\"vendorId\":\"067b\",\"productId\":\"23a3\"}]}," VMS "}";
        static const char conf_keep[] = "{\"usbAuthorization\":{\"enable\":true}," VMS "}";
        static const char conf_off[] =
                "{\"usbAuthorization\":{\"enable\":false,\"hostAllow\":[{\"vendorId\":\"067b\"}]}," VMS "}";
        enum { A_KEEP = RULE_AUTH_KEEP, A_AUTH = RULE_AUTH_AUTHORIZE, A_DEAUTH = RULE_AUTH_DEAUTHORIZE };
        const struct {
                const char *conf;
                const char *const *dev;
                enum rule_auth_moment when;
                bool for_vm;
                const char *mount;
                int action;
                const char *reason;
        } table[] = {
                /* hubs: always authorized (what is behind them must enumerate) */
                {conf_on, HUB, RULE_AUTH_ADD, false, NULL, A_AUTH, "USB hub"},
                {conf_on, HUB, RULE_AUTH_RECONCILE, false, NULL, A_AUTH, "USB hub"},
                {conf_on, HUB, RULE_AUTH_DETACHED, false, NULL, A_AUTH, "USB hub"},
                /* hostAllow: authorized for the host */
                {conf_on, PROLIFIC, RULE_AUTH_ADD, false, NULL, A_AUTH, "usbAuthorization.hostAllow[0]"},
                {conf_on, PROLIFIC, RULE_AUTH_RECONCILE, false, NULL, A_AUTH, "hostAllow[0]"},
                /* claimed for a VM: authorized just before the attach, taken back when it fails or ends */
                {conf_on, UNIFYING, RULE_AUTH_ADD, true, NULL, A_KEEP, "authorized just before the attach"},
                {conf_on, UNIFYING, RULE_AUTH_BEFORE_ATTACH, true, NULL, A_AUTH, "about to be attached"},
                {conf_on, UNIFYING, RULE_AUTH_ATTACH_FAILED, true, NULL, A_DEAUTH, "attach failed"},
                {conf_on, UNIFYING, RULE_AUTH_DETACHED, true, NULL, A_DEAUTH, "detached from its VM"},
                {conf_on, UNIFYING, RULE_AUTH_RECONCILE, true, NULL, A_KEEP, "attached to a VM"},
                /* ...unless hostAllow keeps it on the host */
                {conf_on, PROLIFIC, RULE_AUTH_DETACHED, true, NULL, A_AUTH, "hostAllow[0]"},
                {conf_on, PROLIFIC, RULE_AUTH_ATTACH_FAILED, true, NULL, A_AUTH, "hostAllow[0]"},
                /* unmatched: stays unauthorized on add; deauthorized by reconcile with deauthorizeUnmatched
                 */
                {conf_on, UNIFYING, RULE_AUTH_ADD, false, NULL, A_KEEP, "left unauthorized"},
                {conf_on, UNIFYING, RULE_AUTH_RECONCILE, false, NULL, A_DEAUTH, "no VM claims it"},
                {conf_keep, UNIFYING, RULE_AUTH_RECONCILE, false, NULL, A_KEEP, "left unauthorized"},
                /* a device holding a host-required mount is never deauthorized */
                {conf_on, UNIFYING, RULE_AUTH_RECONCILE, false, "/boot", A_KEEP,
                 "host-required mount /boot"},
                {conf_on, UNIFYING, RULE_AUTH_DETACHED, true, "/", A_KEEP, "host-required mount /"},
                {conf_on, UNIFYING, RULE_AUTH_ATTACH_FAILED, true, "/", A_KEEP, "host-required mount"},
                /* authorization off: nothing is written */
                {conf_off, PROLIFIC, RULE_AUTH_ADD, false, NULL, A_KEEP, "not enabled"},
                {conf_off, HUB, RULE_AUTH_ADD, false, NULL, A_KEEP, "not enabled"},
                {conf_off, UNIFYING, RULE_AUTH_DETACHED, true, NULL, A_KEEP, "not enabled"},
                /* not a USB device */
                {conf_on, WIFI, RULE_AUTH_RECONCILE, false, NULL, A_KEEP, "not a USB device"},
        };
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                struct cfg_error err = {{0}};
                struct rule_auth_decision dec;
                struct cfg *c = NULL;
                struct dev *d = NULL;

                assert_int_equal(cfg_load_string(table[i].conf, strlen(table[i].conf), "t.json", &c, &err),
                                 0);
                assert_int_equal(dev_new_from_environ((char *const *)table[i].dev, &d), 0);
                if (table[i].mount)
                        d->host_mount = strdup(table[i].mount);
                rule_usb_auth(c, d, table[i].when, table[i].for_vm, &dec);
                if ((int)dec.action != table[i].action || !strstr(dec.reason, table[i].reason))
                        fail_msg("case %zu: expected action %d (%s), got %d (%s)", i, table[i].action,
                                 table[i].reason, dec.action, dec.reason);
                dev_free(d);
                cfg_free(c);
        }
}

/* --check-config's "no hostAllow rule keeps a USB keyboard" agrees with the matcher on a keyboard of
 * no particular make (no ids, names or place). */
static void test_keyboard_warning_agrees(void **state) {
        static const char *const rules[] = {
                "{\"interfaceClass\":3}",
                "{\"interfaceClass\":3,\"interfaceSubclass\":1,\"interfaceProtocol\":1}",
                "{\"interfaceClass\":3,\"interfaceProtocol\":2}",
                "{\"deviceClass\":0,\"interfaceClass\":3}",
                "{\"deviceClass\":3}",
                "{\"removable\":[\"removable\"],\"interfaceClass\":3}",
                "{\"removable\":[\"fixed\"],\"interfaceClass\":3}",
                "{\"vendorId\":\"046d\",\"productId\":\"c31c\"}",
                "{\"bus\":1,\"port\":2}",
                "{\"interfaceClass\":3,\"disable\":true}",
                "{\"interfaceSubclass\":1}",
                "{\"deviceProtocol\":0,\"interfaceProtocol\":1}",
        };
        const char *const kbd[] = {"SUBSYSTEM=usb",
                                   "DEVTYPE=usb_device",
                                   "DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-9",
                                   "TYPE=0/0/0",
                                   "ID_USB_INTERFACES=:030101:",
                                   NULL};
        for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
                char json[512];
                struct cfg_error err = {{0}};
                struct cfg *c = NULL;
                struct dev *d = NULL;
                bool warned = false;

                snprintf(json, sizeof(json), "{\"usbAuthorization\":{\"enable\":true,\"hostAllow\":[%s]}}",
                         rules[i]);
                assert_int_equal(
                        cfg_load_string_flags(json, strlen(json), "t.json", CFG_CHECK_HOST, &c, &err), 0);
                for (size_t k = 0; k < c->n_warnings; k++)
                        warned |= strstr(c->warnings[k], "keeps a USB keyboard") != NULL;
                assert_int_equal(dev_new_from_environ((char *const *)kbd, &d), 0);
                d->removable = DEV_REMOVABLE_REMOVABLE;
                bool kept = rule_host_allowed(c, d) >= 0;
                if (kept == warned)
                        fail_msg("%s: matcher says %s, --check-config %s", rules[i],
                                 kept ? "kept" : "not kept", warned ? "warns" : "does not warn");
                dev_free(d);
                cfg_free(c);
        }
}

/* ---- libraries opened at first use (lib/dl.c): libkmod for driverPath */
static void test_dl_load(void **state) {
        void *good = NULL, *bad = NULL;
        const struct dl_sym missing_lib_syms[] = {{"kmod_new", &good}};
        struct dl_lib missing_lib = {"libvhp-no-such-library.so.9", missing_lib_syms, 1, 0};
        const struct dl_sym missing_sym_syms[] = {{"kmod_new", &good}, {"kmod_no_such_function", &bad}};
        struct dl_lib missing_sym = {"libkmod.so.2", missing_sym_syms, 2, 0};
        const struct dl_sym ok_syms[] = {{"kmod_new", &good}};
        struct dl_lib ok = {"libkmod.so.2", ok_syms, 1, 0};

        assert_int_equal(dl_load(&missing_lib), -ENOPKG);
        assert_int_equal(dl_load(&missing_lib), -ENOPKG); /* remembered, not retried */
        assert_null(good);
        /* All or nothing: one missing symbol stores none, not even the ones found. */
        assert_int_equal(dl_load(&missing_sym), -ENOPKG);
        assert_null(good);
        assert_null(bad);
        assert_int_equal(dl_load(&ok), 0);
        assert_non_null(good);
        assert_int_equal(ok.state, 1);
        assert_int_equal(dl_load(&ok), 0);
}

int main(void) {
        static const struct CMUnitTest others[] = {
                cmocka_unit_test(test_allowed_vms_preference),
                cmocka_unit_test(test_host_mount_excluded),
                cmocka_unit_test(test_unknown_kind),
                cmocka_unit_test(test_claims_nothing_and_cold_plug_only),
                cmocka_unit_test_setup_teardown(test_driver_path, tree_setup, tree_teardown),
                cmocka_unit_test(test_modaliases_from_fields),
                cmocka_unit_test(test_usb_auth),
                cmocka_unit_test(test_keyboard_warning_agrees),
                cmocka_unit_test(test_dl_load),
        };
        size_t n_rows = sizeof(cases) / sizeof(cases[0]), n = n_rows + sizeof(others) / sizeof(others[0]);
        struct CMUnitTest *tests = calloc(n, sizeof(*tests));
        int r;

        if (!tests)
                return 1;
        for (size_t i = 0; i < n_rows; i++)
                tests[i] = (struct CMUnitTest){
                        .name = cases[i].name, .test_func = test_row, .initial_state = (void *)&cases[i]};
        memcpy(tests + n_rows, others, sizeof(others));
        r = _cmocka_run_group_tests("rules", tests, n, NULL, NULL);
        free(tests);
        return r;
}
