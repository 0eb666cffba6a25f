#!/usr/bin/env bash
# vhotplug-helper --dry-run --json on the shared umockdev fixtures: the decision for each real
# device (action, VM, entry and allow rule, or the reason it is ignored).
. "$(dirname "$0")/../lib.sh"
top=$VHP_TOP
helper=$VHP_BUILD/vhotplug-helper
fx=$VHP_FIXTURES
conf=$top/tests/data/config/dryrun.json
tmp=$VHP_TMP

# run FIXTURE NAME ACTION DEVPATH [helper options...]: writes $tmp/NAME.json and .rc
run() {
        local fixture=$1 name=$2 action=$3 devpath=$4
        shift 4
        umockdev-run -d "$fixture" -- "$helper" --no-strict-perms -c "$conf" --dry-run --json "$@" \
                "$action" "$devpath" >"$tmp/$name.json" 2>"$tmp/$name.err"
        echo $? >"$tmp/$name.rc"
}

# expect NAME JQ-FILTER DESCRIPTION: the filter must yield true
expect() {
        local name=$1 filter=$2 desc=$3
        if [ "$(cat "$tmp/$name.rc")" = 0 ] && jq -e "$filter" "$tmp/$name.json" >/dev/null 2>&1; then
                vhp_ok "$desc"
        else
                vhp_fail "$desc (rc=$(cat "$tmp/$name.rc"): $(head -c 600 "$tmp/$name.json") $(head -c 300 "$tmp/$name.err"))"
        fi
}

attach() { # name vm entry allow
        echo ".action == \"attach\" and .vm == \"$2\" and .rule.section == \"${5:-usbPassthrough}\" and .rule.entry == $3 and .rule.allow == $4"
}
ignore() { # reason substring
        echo ".action == \"ignore\" and .vm == null and .rule == null and (.reason | contains(\"$1\"))"
}

U=/devices/pci0000:00/0000:00:14.0
run "$fx/usb-all.umockdev" mouse add $U/usb1/1-1
run "$fx/usb-all.umockdev" unifying add $U/usb1/1-2
run "$fx/usb-all.umockdev" hub add $U/usb1/1-3
run "$fx/usb-all.umockdev" roothub add $U/usb1
run "$fx/usb-all.umockdev" bluetooth add $U/usb1/1-4
run "$fx/usb-all.umockdev" ethernet add $U/usb1/1-3/1-3.2
run "$fx/usb-all.umockdev" serial add /sys$U/usb1/1-3/1-3.4
run "$fx/usb-all.umockdev" ssd add $U/usb2/2-1
run "$fx/usb-all.umockdev" iface add $U/usb1/1-1/1-1:1.0
run "$fx/usb-all.umockdev" mouse-remove remove $U/usb1/1-1

expect mouse "$(attach mouse gui-vm 0 0) and .kind == \"usb\" and .rule.description == \"HID Mouse\"" "HID mouse goes to gui-vm by rule 0"
expect mouse '.device.vendorId == "046d" and .device.productId == "c077" and .device.bus == 1 and .device.devnum == 5 and .device.port == 1 and .device.portPath == "1" and .device.productName == "M105 Optical Mouse" and .device.interfaces == [{"class":3,"subclass":1,"protocol":2}] and .device.removable == "removable"' "mouse identity as vhotplug sees it"
expect unifying "$(ignore 'denied by usbPassthrough[0] deny rule 0')" "Unifying receiver denied in entry 0, no later entry claims it"
expect hub "$(ignore 'USB hub')" "external hub never passed through"
expect roothub "$(ignore 'USB hub')" "root hub never passed through"
expect bluetooth "$(ignore 'no usbPassthrough entry matched')" "bluetooth adapter matches no entry"
expect ethernet "$(attach ethernet net-vm 1 0)" "AX88179 denied in entry 0 falls through to net-vm"
expect ethernet '.device.portPath == "3.2" and .device.port == 3' "port path behind the hub"
expect serial "$(attach serial net-vm 3 0)" "Prolific: disabled rule skipped, portPath 3.4 claims it (sysfs path accepted)"
expect ssd "$(attach ssd gui-vm 2 0) and .device.interfaces[0].class == 8" "SSD claimed by the mass-storage entry"
expect iface "$(ignore 'not a handled device')" "USB interface is not a handled device"
expect mouse-remove '.action == "detach" and .vm == "gui-vm"' "remove of a claimed device is a detach"

# Host-required mounts: the SSD's partition is /boot → never passed through.
mi=$top/tests/data/mountinfo-boot-on-sda1
run "$top/tests/data/umockdev/usb-ssd-mounted-boot.umockdev" ssd-boot add $U/usb2/2-1 --mountinfo "$mi"
expect ssd-boot "$(ignore 'host-required mount') and (.reason | contains(\"/boot\"))" "disk holding /boot stays on the host"
run "$top/tests/data/umockdev/usb-ssd-mounted-boot.umockdev" ssd-media add $U/usb2/2-1 \
        --mountinfo "$top/tests/data/mountinfo-sda1-elsewhere"
expect ssd-media "$(attach ssd-media gui-vm 2 0)" "disk mounted elsewhere may be passed"
# The same for the PCI function above the disk: the USB controller (and a bridge above it) would
# take the disk along.
run "$top/tests/data/umockdev/usb-ssd-mounted-boot.umockdev" xhci-boot add $U --mountinfo "$mi"
expect xhci-boot "$(ignore 'host-required mount') and (.reason | contains(\"/boot\")) and .kind == \"pci\"" \
        "PCI controller of the disk holding /boot stays on the host"
run "$top/tests/data/umockdev/usb-ssd-mounted-boot.umockdev" xhci-media add $U \
        --mountinfo "$top/tests/data/mountinfo-sda1-elsewhere"
expect xhci-media "$(attach xhci-media gui-vm 0 2 pciPassthrough)" "PCI controller whose disk is mounted elsewhere may be passed"
# Root on device-mapper (LVM, dm-crypt) over a partition of the SSD: still the host's.
dm=$tmp/dm.sh
cat >"$dm" <<EOS
mkdir -p "\$UMOCKDEV_DIR/sys/devices/virtual/block/dm-0/slaves"
ln -s ../../../../pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0/block/sda/sda1 \
        "\$UMOCKDEV_DIR/sys/devices/virtual/block/dm-0/slaves/sda1"
ln -s ../../devices/virtual/block/dm-0 "\$UMOCKDEV_DIR/sys/dev/block/254:0"
exec "$helper" --no-strict-perms -c "$conf" --dry-run --json --mountinfo "$top/tests/data/mountinfo-root-on-dm0" add $U/usb2/2-1
EOS
umockdev-run -d "$top/tests/data/umockdev/usb-ssd-mounted-boot.umockdev" -- bash "$dm" >"$tmp/ssd-dm.json" 2>"$tmp/ssd-dm.err"
echo $? >"$tmp/ssd-dm.rc"
expect ssd-dm "$(ignore 'host-required mount') and (.reason | contains(\"(/)\"))" "disk under a device-mapper root stays on the host"

P=/devices/pci0000:00
run "$fx/pci-all.umockdev" wifi add $P/0000:00:14.3
run "$fx/pci-all.umockdev" gpu add $P/0000:00:02.0
run "$fx/pci-all.umockdev" nvidia add $P/0000:00:01.0/0000:01:00.0
expect wifi "$(attach wifi gui-vm 0 0 pciPassthrough) and .kind == \"pci\" and .device.address == \"0000:00:14.3\"" "WiFi by address"
expect gpu "$(attach gpu gui-vm 0 1 pciPassthrough) and .device.deviceId == \"a7a1\" and .device.deviceClass == 3" "Intel GPU by vendor+device id"
expect nvidia "$(ignore 'no pciPassthrough entry matched') and .device.iommuGroup == 13" "NVIDIA GPU not claimed; IOMMU group read"

# The man page's example, as written there (vhotplug-helper(8) EXAMPLES): a /sys/bus/pci/devices
# link is resolved to the device's DEVPATH. Its ./test.conf is a copy of the test configuration.
ex=$(MANWIDTH=200 man -l -P cat "$top/man/vhotplug-helper.8" 2>/dev/null |
        sed -n 's/^ *# \(vhotplug-helper -c \.\/test\.conf .* add \/sys\/bus\/pci\/devices\/[^ ]*\)$/\1/p')
cp "$conf" "$tmp/test.conf"
[ "$(id -u)" = 0 ] || strict=--no-strict-perms # a user's copy is not root's
if [ -n "$ex" ]; then
        # shellcheck disable=SC2086 # the example's words, split as the shell splits them
        (cd "$tmp" && umockdev-run -d "$fx/pci-all.umockdev" -- "$helper" ${strict:-} ${ex#vhotplug-helper }) \
                >"$tmp/wifi-link.json" 2>"$tmp/wifi-link.err"
        echo $? >"$tmp/wifi-link.rc"
        expect wifi-link "$(attach wifi-link gui-vm 0 0 pciPassthrough) and .device.address == \"0000:00:14.3\" and .device.devpath == \"$P/0000:00:14.3\"" \
                "man page example '$ex': /sys/bus/pci/devices link accepted, resolved to the DEVPATH"
else
        vhp_fail "vhotplug-helper(8) has the example 'vhotplug-helper -c ./test.conf ... add /sys/bus/pci/devices/...'"
fi
run "$fx/usb-all.umockdev" usb-link add /sys/bus/usb/devices/1-3.2
expect usb-link "$(attach usb-link net-vm 1 0) and .device.devpath == \"$U/usb1/1-3/1-3.2\"" "/sys/bus/usb/devices link accepted"
run "$fx/usb-all.umockdev" link-dots add /sys/bus/usb/devices/../devices/1-1
[ "$(cat "$tmp/link-dots.rc")" = 2 ] && grep -q 'invalid DEVPATH' "$tmp/link-dots.err" &&
        vhp_ok "/sys path with .. refused" || vhp_fail "/sys path with ..: rc=$(cat "$tmp/link-dots.rc") $(cat "$tmp/link-dots.err")"
run "$fx/usb-all.umockdev" link-gone add /sys/bus/usb/devices/9-9
[ "$(cat "$tmp/link-gone.rc")" = 2 ] && grep -q 'no device at' "$tmp/link-gone.err" &&
        vhp_ok "/sys link to no device: no device" || vhp_fail "/sys link to no device: rc=$(cat "$tmp/link-gone.rc") $(cat "$tmp/link-gone.err")"

I=/devices/platform/i8042/serio0/input/input3
run "$fx/input-all.umockdev" kbd add $I/event3
run "$fx/input-all.umockdev" kbd-parent add $I
run "$fx/input-usb-mouse-event.umockdev" usbev add $U/usb1/1-1/1-1:1.0/0003:046D:C077.0001/input/input20/event20
expect kbd '.action == "attach" and .kind == "evdev" and .vm == "gui-vm" and .rule.section == "evdevPassthrough" and .rule.allow == null and .device.name == "AT Translated Set 2 keyboard" and .device.devnode == "/dev/input/event3"' "legacy evdev form passes the i8042 keyboard"
expect kbd-parent "$(ignore 'not a handled device')" "input parent node is not an event node"
expect usbev "$(ignore 'USB device')" "evdev node of a USB mouse is skipped"

# examples/vhotplug.conf ships with every entry disabled: copied to /etc as it is, it gives no device
# to any VM. The same file with its entries enabled claims each of these devices.
sed 's/"disable": true/"disable": false/' "$top/examples/vhotplug.conf" >"$tmp/example-enabled.conf"
for spec in "usb-all $U/usb1/1-1 gui-vm" "pci-all $P/0000:00:14.3 net-vm" "input-all $I/event3 gui-vm"; do
        read -r fixture devpath vm <<<"$spec"
        for c in example example-enabled; do
                cf=$tmp/$c.conf
                [ $c = example ] && cf=$top/examples/vhotplug.conf
                umockdev-run -d "$fx/$fixture.umockdev" -- "$helper" --no-strict-perms -c "$cf" --dry-run --json \
                        add "$devpath" >"$tmp/$c.json" 2>"$tmp/$c.err"
                echo $? >"$tmp/$c.rc"
        done
        expect example '.action == "ignore" and .vm == null' "examples/vhotplug.conf as shipped: ${devpath##*/} stays on the host"
        expect example-enabled ".action == \"attach\" and .vm == \"$vm\"" "examples/vhotplug.conf enabled: ${devpath##*/} goes to $vm"
done

# Bad input: clear error, defined exit status.
umockdev-run -d "$fx/usb-all.umockdev" -- "$helper" --no-strict-perms -c "$conf" --dry-run add $U/usb1/9-9 \
        >"$tmp/nodev.out" 2>&1
rc=$?
[ $rc = 2 ] && grep -q 'no device at' "$tmp/nodev.out" && vhp_ok "nonexistent DEVPATH: exit 2, clear error" ||
        vhp_fail "nonexistent DEVPATH: rc=$rc $(cat "$tmp/nodev.out")"
"$helper" --no-strict-perms -c "$conf" --dry-run add /etc/passwd >"$tmp/bad.out" 2>&1
rc=$?
[ $rc = 2 ] && grep -q 'invalid DEVPATH' "$tmp/bad.out" && vhp_ok "DEVPATH outside /devices refused" ||
        vhp_fail "DEVPATH outside /devices: rc=$rc $(cat "$tmp/bad.out")"
"$helper" --no-strict-perms -c "$conf" --dry-run add /devices/../../etc >"$tmp/dots.out" 2>&1
rc=$?
[ $rc = 2 ] && vhp_ok "DEVPATH with .. refused" || vhp_fail "DEVPATH with ..: rc=$rc"
"$helper" --no-strict-perms -c "$tmp/missing.json" --dry-run add $U/usb1/1-1 >"$tmp/nocfg.out" 2>&1
rc=$?
[ $rc = 1 ] && grep -q 'missing.json' "$tmp/nocfg.out" && vhp_ok "missing config: exit 1 naming the file" ||
        vhp_fail "missing config: rc=$rc $(cat "$tmp/nocfg.out")"
"$helper" --bogus >"$tmp/usage.out" 2>&1
[ $? = 2 ] && vhp_ok "unknown option: exit 2" || vhp_fail "unknown option"
"$helper" --version | grep -q '^vhotplug-helper [0-9]' && vhp_ok "--version" || vhp_fail "--version"
"$helper" --help | grep -q -- '--dry-run' && vhp_ok "--help lists options" || vhp_fail "--help"
# Readable one-line summary without --json.
umockdev-run -d "$fx/usb-all.umockdev" -- "$helper" --no-strict-perms -c "$conf" --dry-run add $U/usb1/1-1 \
        >"$tmp/line.out" 2>&1
grep -q '^usb 1-1 046d:c077: attach -> gui-vm as vhp-usb-001-005' "$tmp/line.out" && vhp_ok "readable summary" ||
        vhp_fail "readable summary: $(cat "$tmp/line.out")"
# vhotplug-helper(8) OUTPUT shows the summary as printed: the ignore line verbatim, the attach and
# detach lines in the shape the helper prints.
umockdev-run -d "$fx/usb-all.umockdev" -- "$helper" --no-strict-perms -c "$conf" --dry-run add $U/usb1/1-2 \
        >"$tmp/ignore.out" 2>/dev/null
man_out=$(MANWIDTH=200 man -l -P cat "$top/man/vhotplug-helper.8" 2>/dev/null | sed -n '/^OUTPUT/,/^EXIT STATUS/p' |
        sed 's/^ *//')
shape='^usb [0-9.-]+ [0-9a-f]{4}:[0-9a-f]{4}: (attach|detach) -> [a-z-]+ as vhp-usb-[0-9]{3}-[0-9]{3} \[[a-z-]+\] \(.+\)$'
grep -qxF "$(cat "$tmp/ignore.out")" <<<"$man_out" && vhp_ok "man page OUTPUT shows the ignore summary as printed" ||
        vhp_fail "man page OUTPUT lacks '$(cat "$tmp/ignore.out")'"
grep -Eq "$shape" "$tmp/line.out" && [ "$(grep -Ec "$shape" <<<"$man_out")" = 2 ] &&
        vhp_ok "man page OUTPUT attach and detach lines have the printed shape" ||
        vhp_fail "man page OUTPUT attach/detach lines: $(grep -E ' (attach|detach) ' <<<"$man_out") vs $(cat "$tmp/line.out")"

# Hostile device strings (quotes, backslash, tab, SQL and JSON metacharacters, 4.5 KB serial) come
# through as data: valid JSON, verbatim, length-capped. No ID_USB_INTERFACES: interfaces are read
# from the interface children's sysfs attributes.
run "$top/tests/data/umockdev/usb-hostile-strings.umockdev" hostile add $U/usb1/1-1
expect hostile '.device.vendorName == "Evil \"Corp\" back\\slash\ttab" and .device.productName == "Mouse '"'"'); DROP TABLE attachments;-- {\"a\":[1]} <x>"' "hostile strings verbatim in JSON"
expect hostile '(.device.serial | length) <= 4096 and (.device.serial | test("^S+$")) and .device.interfaces == [{"class":3,"subclass":1,"protocol":2}]' "4.5 KB serial capped; interfaces from sysfs children"
umockdev-run -d "$top/tests/data/umockdev/usb-hostile-strings.umockdev" -- "$helper" --no-strict-perms -c "$conf" \
        --dry-run add $U/usb1/1-1 >"$tmp/hostile.line" 2>&1
[ "$(wc -l <"$tmp/hostile.line")" = 1 ] && vhp_ok "readable summary stays on one line" || vhp_fail "summary lines: $(cat "$tmp/hostile.line")"
# Neither udev's interface list nor interface children: the kernel's cached descriptors via libusb.
run "$top/tests/data/umockdev/usb-mouse-descriptors-only.umockdev" descr add $U/usb1/1-1
expect descr "$(attach descr gui-vm 0 0) and .device.interfaces == [{\"class\":3,\"subclass\":1,\"protocol\":2}]" "interfaces from cached descriptors (libusb)"
vhp_done
