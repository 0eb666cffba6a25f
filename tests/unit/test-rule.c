/* Rule semantics as a table: (device, configuration) → decision, each row its own test. Devices are
 * described the way udev describes them in an event, so the environment path of the device model is
 * used too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config.h"
#include "device.h"
#include "rule.h"

#define VMS "\"vms\":[{\"name\":\"vm1\",\"type\":\"qemu\",\"socket\":\"/run/vm1.sock\"}," \
            "{\"name\":\"vm2\",\"type\":\"crosvm\",\"socket\":\"/run/vm2.sock\"}]"
#define USB(entries) "{\"usbPassthrough\":[" entries "]," VMS "}"
#define PCI(entries) "{\"pciPassthrough\":[" entries "]," VMS "}"
#define EVDEV(section) "{\"evdevPassthrough\":" section "," VMS "}"
#define ENTRY(vm, allow) "{\"targetVm\":\"" vm "\",\"allow\":[" allow "]}"
#define ENTRY_DENY(vm, allow, deny) "{\"targetVm\":\"" vm "\",\"allow\":[" allow "],\"deny\":[" deny "]}"

#define USB_DEV(path, ...) (const char *const[]){ "SUBSYSTEM=usb", "DEVTYPE=usb_device", \
        "DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/" path, __VA_ARGS__, NULL }

/* Logitech Unifying receiver: composite HID (keyboard 03/01/01, mouse 03/01/02, generic 03/00/00). */
#define UNIFYING USB_DEV("1-2", "ID_VENDOR_ID=046d", "ID_MODEL_ID=c52b", "BUSNUM=001", "DEVNUM=004", \
        "ID_VENDOR_FROM_DATABASE=Logitech, Inc.", "ID_MODEL_FROM_DATABASE=Unifying Receiver", "TYPE=0/0/0", \
        "ID_USB_INTERFACES=:030101:030102:030000:")
/* Prolific serial adapter behind a hub at port 3, hub port 2. */
#define PROLIFIC USB_DEV("1-3/1-3.2", "ID_VENDOR_ID=067b", "ID_MODEL_ID=23a3", "BUSNUM=001", "DEVNUM=007", \
        "ID_VENDOR_FROM_DATABASE=Prolific Technology, Inc.", "ID_MODEL_FROM_DATABASE=USB-Serial Controller", \
        "ID_SERIAL_SHORT=ABC123", "TYPE=0/0/0", "ID_USB_INTERFACES=:ff0000:")
/* AX88179 ethernet: vendor-specific interface; product name holds "Ethernet". */
#define AX88179 USB_DEV("1-3/1-3.4", "ID_VENDOR_ID=0b95", "ID_MODEL_ID=1790", "BUSNUM=001", "DEVNUM=008", \
        "ID_VENDOR_FROM_DATABASE=ASIX Electronics Corp.", \
        "ID_MODEL_FROM_DATABASE=AX88179 Gigabit Ethernet", "TYPE=255/255/0", "ID_USB_INTERFACES=:ffff00:")
#define HUB USB_DEV("1-3", "ID_VENDOR_ID=05e3", "ID_MODEL_ID=0610", "BUSNUM=001", "DEVNUM=003", \
        "TYPE=9/0/1", "ID_USB_INTERFACES=:090000:")
/* A device that leaves TYPE unset and puts the class only on its interface. */
#define WEBCAM USB_DEV("1-5", "ID_VENDOR_ID=04f2", "ID_MODEL_ID=b6dd", "BUSNUM=001", "DEVNUM=009", \
        "ID_VENDOR_FROM_DATABASE=Chicony Electronics Co., Ltd", "TYPE=239/2/1", \
        "ID_USB_INTERFACES=:0e0100:0e0200:010100:010200:")

#define PCI_DEV(addr, id, cls) (const char *const[]){ "SUBSYSTEM=pci", \
        "DEVPATH=/devices/pci0000:00/" addr, "PCI_SLOT_NAME=" addr, "PCI_ID=" id, "PCI_CLASS=" cls, NULL }
#define WIFI PCI_DEV("0000:00:14.3", "8086:A0F0", "28000")
#define GPU PCI_DEV("0000:00:02.0", "8086:A7A1", "30000")

#define INPUT_DEV(path, ...) (const char *const[]){ "SUBSYSTEM=input", "DEVPATH=" path, __VA_ARGS__, NULL }
#define KEYBOARD INPUT_DEV("/devices/platform/i8042/serio0/input/input3/event3", "ID_INPUT=1", \
        "ID_INPUT_KEYBOARD=1", "ID_BUS=i8042", "NAME=AT Translated Set 2 keyboard", \
        "ID_PATH_TAG=platform-i8042-serio-0")
#define POWER_BUTTON INPUT_DEV("/devices/LNXSYSTM:00/LNXPWRBN:00/input/input2/event2", "ID_INPUT=1", \
        "ID_INPUT_KEY=1", "NAME=Power Button", "ID_PATH_TAG=acpi-LNXPWRBN_00")
#define USB_MOUSE_EVDEV INPUT_DEV("/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/0003:046D:C077.0001/input/input9/event9", \
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
        { "vendorId+productId match", USB(ENTRY("vm1", "{\"vendorId\":\"046d\",\"productId\":\"c52b\"}")), UNIFYING, 0, "vm1", 0, 0, NULL },
        { "vendorId+productId: one differs", USB(ENTRY("vm1", "{\"vendorId\":\"046d\",\"productId\":\"c077\"}")), UNIFYING, 0, NULL, 0, 0, "no usbPassthrough entry matched" },
        { "vendorId alone matches every product", USB(ENTRY("vm1", "{\"vendorId\":\"046D\"}")), UNIFYING, 0, "vm1", 0, 0, NULL },
        { "productId alone", USB(ENTRY("vm1", "{\"productId\":\"23A3\"}")), PROLIFIC, 0, "vm1", 0, 0, NULL },
        { "vendorId and interfaceClass both required", USB(ENTRY("vm1", "{\"vendorId\":\"046d\",\"interfaceClass\":8}")), UNIFYING, 0, NULL, 0, 0, NULL },
        /* interfaces */
        { "composite device matched by any interface", USB(ENTRY("vm1", "{\"interfaceClass\":3,\"interfaceProtocol\":2}")), UNIFYING, 0, "vm1", 0, 0, NULL },
        { "interface triple held by one interface of a composite device", USB(ENTRY("vm1", "{\"interfaceClass\":14,\"interfaceSubclass\":1,\"interfaceProtocol\":0}")), WEBCAM, 0, "vm1", 0, 0, NULL },
        { "class 1 with subclass 1 holds on one interface", USB(ENTRY("vm1", "{\"interfaceClass\":1,\"interfaceSubclass\":1}")), WEBCAM, 0, "vm1", 0, 0, NULL },
        { "class 3 subclass 0 protocol 2 on no single interface", USB(ENTRY("vm1", "{\"interfaceClass\":3,\"interfaceSubclass\":0,\"interfaceProtocol\":2}")), UNIFYING, 0, NULL, 0, 0, NULL },
        { "device class triple", USB(ENTRY("vm1", "{\"deviceClass\":239,\"deviceSubclass\":2,\"deviceProtocol\":1}")), WEBCAM, 0, "vm1", 0, 0, NULL },
        { "device class zero is not the interface class", USB(ENTRY("vm1", "{\"deviceClass\":3}")), UNIFYING, 0, NULL, 0, 0, NULL },
        /* names: POSIX ERE, case-insensitive, anchored at the start only */
        { "vendorName prefix", USB(ENTRY("vm1", "{\"vendorName\":\"logitech\"}")), UNIFYING, 0, "vm1", 0, 0, NULL },
        { "productName not anchored at end but at start", USB(ENTRY("vm1", "{\"productName\":\"Gigabit\"}")), AX88179, 0, NULL, 0, 0, NULL },
        { "productName .*ethernet.* anywhere", USB(ENTRY("vm1", "{\"productName\":\".*ethernet.*\"}")), AX88179, 0, "vm1", 0, 0, NULL },
        { "productName alternation", USB(ENTRY("vm1", "{\"productName\":\"foo|AX88\"}")), AX88179, 0, "vm1", 0, 0, NULL },
        { "alternation stays anchored", USB(ENTRY("vm1", "{\"productName\":\"foo|Ethernet\"}")), AX88179, 0, NULL, 0, 0, NULL },
        { "serial exact", USB(ENTRY("vm1", "{\"serial\":\"ABC123\"}")), PROLIFIC, 0, "vm1", 0, 0, NULL },
        { "serial is not a prefix", USB(ENTRY("vm1", "{\"serial\":\"ABC\"}")), PROLIFIC, 0, NULL, 0, 0, NULL },
        /* topology */
        { "bus", USB(ENTRY("vm1", "{\"bus\":1,\"vendorId\":\"067b\"}")), PROLIFIC, 0, "vm1", 0, 0, NULL },
        { "bus mismatch", USB(ENTRY("vm1", "{\"bus\":2}")), PROLIFIC, 0, NULL, 0, 0, NULL },
        { "port is the root port behind a hub", USB(ENTRY("vm1", "{\"port\":3}")), PROLIFIC, 0, "vm1", 0, 0, NULL },
        { "port is not the hub port", USB(ENTRY("vm1", "{\"port\":2}")), PROLIFIC, 0, NULL, 0, 0, NULL },
        { "portPath is the whole path", USB(ENTRY("vm1", "{\"portPath\":\"3.2\"}")), PROLIFIC, 0, "vm1", 0, 0, NULL },
        { "portPath of the hub does not match its child", USB(ENTRY("vm1", "{\"portPath\":\"3\"}")), PROLIFIC, 0, NULL, 0, 0, NULL },
        { "removable listed", USB(ENTRY("vm1", "{\"removable\":[\"removable\",\"unknown\"]}")), PROLIFIC, DEV_REMOVABLE_REMOVABLE, "vm1", 0, 0, NULL },
        { "fixed not listed", USB(ENTRY("vm1", "{\"removable\":[\"removable\"]}")), PROLIFIC, DEV_REMOVABLE_FIXED, NULL, 0, 0, NULL },
        /* entries: first claiming entry, deny local to its entry */
        { "first claiming entry wins", USB(ENTRY("vm1", "{\"vendorId\":\"046d\"}") "," ENTRY("vm2", "{\"vendorId\":\"046d\"}")), UNIFYING, 0, "vm1", 0, 0, NULL },
        { "second allow rule of an entry", USB(ENTRY("vm1", "{\"vendorId\":\"ffff\"},{\"interfaceClass\":3}")), UNIFYING, 0, "vm1", 0, 1, NULL },
        { "deny falls through to a later entry", USB(ENTRY_DENY("vm1", "{\"interfaceClass\":3}", "{\"vendorId\":\"046d\",\"productId\":\"c52b\"}") "," ENTRY("vm2", "{\"vendorId\":\"046d\"}")), UNIFYING, 0, "vm2", 1, 0, NULL },
        { "deny with no later entry", USB(ENTRY_DENY("vm1", "{\"interfaceClass\":3}", "{\"vendorId\":\"046d\",\"productId\":\"c52b\"}")), UNIFYING, 0, NULL, 0, 0, "denied by usbPassthrough[0] deny rule 0" },
        { "disabled deny rule does not deny", USB(ENTRY_DENY("vm1", "{\"interfaceClass\":3}", "{\"vendorId\":\"046d\",\"disable\":true}")), UNIFYING, 0, "vm1", 0, 0, NULL },
        { "disabled allow rule", USB(ENTRY("vm1", "{\"vendorId\":\"067b\",\"productId\":\"23a3\",\"disable\":true}")), PROLIFIC, 0, NULL, 0, 0, NULL },
        { "enable:false rule", USB(ENTRY("vm1", "{\"vendorId\":\"067b\",\"enable\":false}")), PROLIFIC, 0, NULL, 0, 0, NULL },
        { "disabled entry skipped", USB("{\"targetVm\":\"vm1\",\"disable\":true,\"allow\":[{\"vendorId\":\"067b\"}]}," ENTRY("vm2", "{\"vendorId\":\"067b\"}")), PROLIFIC, 0, "vm2", 1, 0, NULL },
        { "allowedVms: first VM", USB("{\"allowedVms\":[\"vm2\",\"vm1\"],\"allow\":[{\"vendorId\":\"067b\"}]}"), PROLIFIC, 0, "vm2", 0, 0, NULL },
        /* exclusions */
        { "hubs are never passed", USB(ENTRY("vm1", "{\"vendorId\":\"05e3\"}")), HUB, 0, NULL, 0, 0, "USB hub" },
        { "hubs not even by class", USB(ENTRY("vm1", "{\"interfaceClass\":9}")), HUB, 0, NULL, 0, 0, "USB hub" },
        /* PCI */
        { "pci address", PCI(ENTRY("vm1", "{\"address\":\"0000:00:14.3\"}")), WIFI, 0, "vm1", 0, 0, NULL },
        { "pci address without domain", PCI(ENTRY("vm1", "{\"address\":\"00:14.3\"}")), WIFI, 0, "vm1", 0, 0, NULL },
        { "pci vendor+device", PCI(ENTRY("vm1", "{\"vendorId\":\"8086\",\"deviceId\":\"a7a1\"}")), GPU, 0, "vm1", 0, 0, NULL },
        { "pci device mismatch", PCI(ENTRY("vm1", "{\"vendorId\":\"8086\",\"deviceId\":\"a7a1\"}")), WIFI, 0, NULL, 0, 0, NULL },
        { "pci class triple", PCI(ENTRY("vm1", "{\"deviceClass\":2,\"deviceSubclass\":128,\"deviceProgIf\":0}")), WIFI, 0, "vm1", 0, 0, NULL },
        { "usb rules do not see pci devices", USB(ENTRY("vm1", "{\"vendorId\":\"8086\"}")), WIFI, 0, NULL, 0, 0, NULL },
        /* evdev */
        { "evdev name regex", EVDEV("[" ENTRY("vm1", "{\"name\":\"AT Translated\"}") "]"), KEYBOARD, 0, "vm1", 0, 0, NULL },
        { "evdev pathTag", EVDEV("[" ENTRY("vm1", "{\"pathTag\":\"acpi-\"}") "]"), POWER_BUTTON, 0, "vm1", 0, 0, NULL },
        { "evdev property value case-insensitive", EVDEV("[" ENTRY("vm1", "{\"property\":\"ID_INPUT_KEYBOARD\",\"value\":\"1\"}") "]"), KEYBOARD, 0, "vm1", 0, 0, NULL },
        { "evdev property absent", EVDEV("[" ENTRY("vm1", "{\"property\":\"ID_INPUT_KEYBOARD\",\"value\":\"1\"}") "]"), POWER_BUTTON, 0, NULL, 0, 0, NULL },
        { "legacy evdev object form", EVDEV("{\"disable\":false,\"targetVm\":\"vm1\"}"), POWER_BUTTON, 0, "vm1", 0, -1, NULL },
        { "legacy evdev disabled", EVDEV("{\"disable\":true,\"targetVm\":\"vm1\"}"), KEYBOARD, 0, NULL, 0, 0, NULL },
        { "legacy evdev skips USB input nodes", EVDEV("{\"targetVm\":\"vm1\"}"), USB_MOUSE_EVDEV, 0, NULL, 0, 0, "USB device" },
        { "evdev rule skips USB input nodes", EVDEV("[" ENTRY("vm1", "{\"name\":\"Logitech\"}") "]"), USB_MOUSE_EVDEV, 0, NULL, 0, 0, "USB device" },
};

static void test_case(const struct rule_case *tc) {
        struct cfg *cfg = NULL;
        struct cfg_error err = { { 0 } };
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
        const char *const iface[] = { "SUBSYSTEM=usb", "DEVTYPE=usb_interface",
                                      "DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0", NULL };
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

int main(void) {
        static const struct CMUnitTest others[] = {
                cmocka_unit_test(test_allowed_vms_preference),
                cmocka_unit_test(test_host_mount_excluded),
                cmocka_unit_test(test_unknown_kind),
        };
        size_t n_rows = sizeof(cases) / sizeof(cases[0]), n = n_rows + sizeof(others) / sizeof(others[0]);
        struct CMUnitTest *tests = calloc(n, sizeof(*tests));
        int r;

        if (!tests)
                return 1;
        for (size_t i = 0; i < n_rows; i++)
                tests[i] = (struct CMUnitTest){ .name = cases[i].name, .test_func = test_row,
                                                .initial_state = (void *)&cases[i] };
        memcpy(tests + n_rows, others, sizeof(others));
        r = _cmocka_run_group_tests("rules", tests, n, NULL, NULL);
        free(tests);
        return r;
}
