#!/usr/bin/env bash
# The configuration the older daemon's main deployment generates (tests/data/config/ghaf-default.json,
# built from its NixOS modules' defaults) loads unchanged, and decides as that deployment expects:
# --check-config exits 0 with no "unknown key"; --dry-run --json on umockdev fixtures sends a
# vendor-class USB NIC (RTL8153, driven by r8152) to net-vm by driverPath, a keyboard to gui-vm and
# Bluetooth to audio-vm. driverPath looks modules up in a tree built with depmod
# (tests/tools/mk-module-tree.sh), named by general.modulesDir.
. "$(dirname "$0")/../lib.sh"

helper=$VHP_BUILD/vhotplug-helper
ghaf=$VHP_TOP/tests/data/config/ghaf-default.json
fx=$VHP_FIXTURES
U=/devices/pci0000:00/0000:00:14.0

# ---- --check-config on the file as generated

out=$("$helper" --no-strict-perms -c "$ghaf" --check-config 2>&1)
rc=$?
if [ $rc -eq 0 ] && grep -q 'configuration is valid' <<<"$out"; then
        vhp_ok "ghaf default configuration: --check-config exits 0"
else
        vhp_fail "ghaf default configuration: --check-config exits 0 (rc=$rc)" "$out"
fi
if grep -qi 'unknown key' <<<"$out"; then
        vhp_fail "ghaf default configuration: no unknown key" "$(grep -i 'unknown key' <<<"$out")"
else
        vhp_ok "ghaf default configuration: no unknown key"
fi
vhp_check_output "--check-config notes that AND combines address with vendorId/deviceId" \
        'note: .*pciPassthrough\[3\]\.allow\[0\]: vendorId\+deviceId, address are combined with AND: all of them must hold' \
        printf '%s\n' "$out"
vhp_check_output "--check-config notes that general.modprobe is replaced by libkmod" \
        'note: .*general\.modprobe: not used: kernel modules are looked up with libkmod' printf '%s\n' "$out"
vhp_check_output "keys used by the coming vhotplug-api are accepted as such" \
        'note: .*general\.api: accepted; used by vhotplug-api' printf '%s\n' "$out"
vhp_check_output "a missing unixSocketUser is a warning, not a refusal" \
        "general\.api: unixSocketUser: no user 'microvm' on this host" printf '%s\n' "$out"

# A typo inside a rule: exit 1, naming the key, its path and the known key.
jq '.usbPassthrough[0].allow[0] = {"vendorID": "dead", "productId": "c077"}' "$ghaf" >"$VHP_TMP/typo.json"
out=$("$helper" --no-strict-perms -c "$VHP_TMP/typo.json" --check-config 2>&1)
rc=$?
if [ $rc -eq 1 ] && grep -q "usbPassthrough\[0\]\.allow\[0\]\.vendorID: unknown key 'vendorID' (did you mean 'vendorId'?)" <<<"$out" &&
        ! grep -q 'configuration is valid' <<<"$out"; then
        vhp_ok "a typo inside a rule fails --check-config with exit 1 naming vendorID"
else
        vhp_fail "a typo inside a rule fails --check-config with exit 1 naming vendorID (rc=$rc)" "$out"
fi

# USB authorization enabled with no hostAllow rule for keyboards: a warning says so.
jq '.usbAuthorization = {"enable": true, "hostAllow": [{"vendorId": "067b", "productId": "23a3"}]}' "$ghaf" \
        >"$VHP_TMP/auth.json"
vhp_check_output "usbAuthorization without a keyboard in hostAllow: --check-config warns, exit 0" \
        'usbAuthorization: no hostAllow rule keeps a USB keyboard on the host' \
        "$helper" --no-strict-perms -c "$VHP_TMP/auth.json" --check-config

# ---- --dry-run --json on fixtures, with a module tree

tree=$("$VHP_TOP/tests/tools/mk-module-tree.sh" "$VHP_TMP/modroot") ||
        { vhp_fail "module tree built with depmod"; vhp_done; }
jq --arg d "$tree" '.general.modulesDir = $d' "$ghaf" >"$VHP_TMP/ghaf.json"

# decide NAME FIXTURE DEVPATH [CONFIG]: the helper's JSON decision into $VHP_TMP/NAME.json
decide() {
        local name=$1 fixture=$2 devpath=$3 conf=${4:-$VHP_TMP/ghaf.json}
        umockdev-run -d "$fixture" -- "$helper" --no-strict-perms -c "$conf" --dry-run --json add "$devpath" \
                >"$VHP_TMP/$name.json" 2>"$VHP_TMP/$name.err"
        echo $? >"$VHP_TMP/$name.rc"
}

# expect NAME JQ-FILTER DESCRIPTION
expect() {
        local name=$1 filter=$2 desc=$3
        if [ "$(cat "$VHP_TMP/$name.rc")" = 0 ] && jq -e "$filter" "$VHP_TMP/$name.json" >/dev/null 2>&1; then
                vhp_ok "$desc"
        else
                vhp_fail "$desc" "rc=$(cat "$VHP_TMP/$name.rc"): $(head -c 800 "$VHP_TMP/$name.json") $(head -c 400 "$VHP_TMP/$name.err")"
        fi
}

decide nic "$fx/usb-ethernet-rtl8153-vendor.umockdev" $U/usb2/2-3
decide ax88179 "$fx/usb-ethernet-ax88179-behind-hub.umockdev" $U/usb1/1-3/1-3.2
decide keyboard "$fx/usb-logitech-unifying.umockdev" $U/usb1/1-2
decide bluetooth "$fx/usb-bluetooth-realtek.umockdev" $U/usb1/1-4
decide webcam "$fx/usb-webcam-chicony.umockdev" "$(sed -n 's/^P: \(.*usb[0-9]\/[0-9]-[0-9.]*\)$/\1/p' "$fx/usb-webcam-chicony.umockdev" | head -n1)"
decide nic-no-tree "$fx/usb-ethernet-rtl8153-vendor.umockdev" $U/usb2/2-3 "$ghaf"

expect nic '.action == "attach" and .vm == "net-vm" and .rule.entry == 1 and .rule.allow == 2 and
        .rule.description == "USB network devices that do not report their class or interfaces"' \
        "vendor-class RTL8153 (r8152) goes to net-vm by driverPath"
expect ax88179 '.action == "attach" and .vm == "net-vm" and .rule.entry == 1 and .rule.allow == 2' \
        "vendor-class AX88179 behind a hub (ax88179_178a) goes to net-vm by driverPath"
expect keyboard '.action == "attach" and .vm == "gui-vm" and .rule.entry == 0 and .rule.allow == 0 and
        .rule.description == "HID Keyboard"' "keyboard (Unifying receiver, interface 3/1/1) goes to gui-vm"
expect bluetooth '.action == "attach" and .vm == "audio-vm" and .rule.entry == 3 and .rule.allow == 0 and
        .rule.description == "Bluetooth"' "Bluetooth adapter goes to audio-vm"
expect webcam '.action == "attach" and .vm == "business-vm" and .rule.entry == 4 and .rule.allow == 0' \
        "the X1's integrated camera (04f2:b751) goes to business-vm, not to the external webcams' entry"
expect nic-no-tree '.action == "ignore" and (.reason | contains("driverPath: kernel module lookup failed"))' \
        "without a module index the NIC stays on the host, and the reason says why"

vhp_done
