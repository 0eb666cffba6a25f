#!/usr/bin/env bash
# crosvm on a par with QEMU, against tests/tools/crosvm-standin (crosvm's command line and answers;
# crosvm is not packaged for Debian) in a umockdev testbed of USB mice and an Intel WiFi card, with
# the fake-kernel vfio harness for PCI and vhotplug-helper driven as udev's hand-off drives it:
#   - a guest still booting answers no_available_port and keeps the device in a port: the port is
#     freed, the attach retried, then it succeeds;
#   - a real port shortage: refused with the reason recorded, no other device taken out; reconcile
#     attaches it once a port is free;
#   - PCI hot-plug through `crosvm vfio add|remove`, recorded like QEMU's; `vfio list` where the
#     crosvm has it (Ghaf's fork), the record trusted where it does not (upstream).
. "$(dirname "$0")/../lib.sh"

if [ -z "${UMOCKDEV_DIR:-}" ]; then
        "$VHP_TOP/tests/tools/gen-usb-fixture.sh" 3 >"$VHP_TMP/mice.umockdev"
        vhp_run_in_testbed "$VHP_TMP/mice.umockdev" "$VHP_FIXTURES/pci-wifi-intel.umockdev"
fi

helper=$VHP_BUILD/vhotplug-helper
standin=$VHP_TOP/tests/tools/crosvm-standin
db=$VHP_TMP/state.db
conf=$VHP_TMP/vhotplug.conf
sock=$VHP_TMP/cros.sock
sock2=$VHP_TMP/other.sock # other-vm starts later: until then its devices are pending
klog=$VHP_TMP/kernel.log
U=/devices/pci0000:00/0000:00:14.0/usb1
WIFI=/devices/pci0000:00/0000:00:14.3
export CROSVM_STANDIN_LOG=$VHP_TMP/crosvm.log
for t in "$helper" "$VHP_BUILD/vhotplug-reconcile" "$VHP_TOOLS/vhp-fake-vfio"; do
        [ -x "$t" ] || { vhp_fail "$t built"; vhp_done; }
done

cat >"$conf" <<EOF
{
  "usbPassthrough": [ { "targetVm": "cros-vm", "allow": [ { "serial": "SN0001" } ] },
                      { "targetVm": "other-vm", "allow": [ { "serial": "SN0002" } ] } ],
  "pciPassthrough": [ { "targetVm": "cros-vm", "allow": [ { "address": "0000:00:14.3" } ] } ],
  "vms": [ { "name": "cros-vm", "type": "crosvm", "socket": "$sock" },
           { "name": "other-vm", "type": "crosvm", "socket": "$sock2" } ],
  "general": { "database": "$db", "lockDir": "$VHP_TMP/lock", "crosvm": "$standin", "qmpTimeoutMs": 5000,
               "attachRetries": 2 }
}
EOF
: >"$sock"

vhp_fake_kernel_start "$klog"

seq=100
event() { # ACTION DEVPATH [VAR=VALUE...]: $rc, $VHP_TMP/out.json; the crosvm log and kernel writes of it
        local -a props
        mapfile -t props < <(vhp_uevent_props "$2")
        seq=$((seq + 1))
        : >"$CROSVM_STANDIN_LOG"
        klog_mark=$(wc -c <"$klog")
        env "${props[@]}" ACTION="$1" DEVPATH="$2" SEQNUM="$seq" "${@:3}" "$helper" -c "$conf" --no-strict-perms --json \
                >"$VHP_TMP/out.json" 2>"$VHP_TMP/out.err"
        rc=$?
        vhp_ksync
}
j() { jq -r "$1" "$VHP_TMP/out.json" 2>/dev/null; }
sql() { sqlite3 -batch -noheader -cmd '.timeout 10000' "$db" "$1"; }
calls() { sed -e "s| $sock\$||" -e "s| $sock2\$||" "$CROSVM_STANDIN_LOG"; }
writes() { tail -c +$((klog_mark + 1)) "$klog"; }
by_file() { sort -s -t= -k1,1; }
driver() { basename "$(readlink "$UMOCKDEV_DIR/sys/bus/pci/devices/$1/driver")"; }
reconcile() { : >"$CROSVM_STANDIN_LOG"; "$VHP_BUILD/vhotplug-reconcile" -c "$conf" --no-strict-perms --json "$@" >"$VHP_TMP/rec.json" 2>"$VHP_TMP/rec.err"; rc=$?; }
expect_eq() {
        if [ "$2" = "$3" ]; then vhp_ok "$1"; else vhp_fail "$1" "expected: $2"$'\n'"got:      $3"; fi
}

# ---- 1. A guest still booting: two refusals, each port freed again, then attached ----
echo 2 >"$sock.booting"
event add $U/1-1
expect_eq "booting guest: attached in the end, port 1" "0 done 1" "$rc $(j .outcome) $(j .port)"
expect_eq "booting guest: each refusal's port freed, then attached (exact crosvm calls)" \
        "usb list
usb attach 00:00:00:00 /dev/bus/usb/001/002
usb list
usb detach 1
usb list
usb attach 00:00:00:00 /dev/bus/usb/001/002
usb list
usb detach 1
usb list
usb attach 00:00:00:00 /dev/bus/usb/001/002" "$(calls)"
expect_eq "booting guest: one port in use, by it" "devices 1 1209 0001" "$("$standin" usb list "$sock")"
expect_eq "booting guest: history shows one attach" "started|attached|1" \
        "$(sql "SELECT group_concat(outcome, '|') || '|' || max(coalesce(crosvm_port, 0)) FROM history WHERE devpath='$U/1-1'")"

# ---- 2. PCI through crosvm vfio add|remove ----
event add $WIFI
expect_eq "WiFi into crosvm: done, recorded under its sysfs path" "0 done /sys/bus/pci/devices/0000:00:14.3" \
        "$rc $(j .outcome) $(sql "SELECT vmm_id FROM current_attachments WHERE devpath='$WIFI'")"
expect_eq "WiFi: bound to vfio-pci first (exact sysfs writes)" "$(by_file <<<"sys/bus/pci/devices/0000:00:14.3/driver_override=vfio-pci
sys/bus/pci/drivers/iwlwifi/unbind=0000:00:14.3
sys/bus/pci/drivers_probe=0000:00:14.3")" "$(writes | by_file)"
expect_eq "WiFi: crosvm asked exactly" "vfio add /sys/bus/pci/devices/0000:00:14.3" "$(calls)"
reconcile
expect_eq "reconcile, upstream crosvm (no vfio list): the record is trusted, nothing to do" "0 []" \
        "$rc $(jq -c '[.actions[] | select(.vm == "cros-vm" and .op != "none")]' "$VHP_TMP/rec.json")"
grep -q '^vfio list' "$CROSVM_STANDIN_LOG" && vhp_ok "reconcile asked for vfio list" || vhp_fail "vfio list asked" "$(calls)"
export CROSVM_STANDIN_VFIO_LIST=1
reconcile
expect_eq "reconcile, Ghaf's crosvm (vfio list): it lists the WiFi, nothing to do" "0 []" \
        "$rc $(jq -c '[.actions[] | select(.vm == "cros-vm" and .op != "none")]' "$VHP_TMP/rec.json")"
: >"$sock.vfio"
reconcile
expect_eq "reconcile, the VM lost the WiFi (vfio list says so): attached again" "0 reattach done" \
        "$rc $(jq -r '.actions[] | select(.devpath == "'$WIFI'") | .op + " " + .result' "$VHP_TMP/rec.json")"
expect_eq "the VM has it again" "devices /sys/bus/pci/devices/0000:00:14.3" "$("$standin" vfio list "$sock")"
unset CROSVM_STANDIN_VFIO_LIST
event remove $WIFI # a manual remove: the card stays in sysfs for what follows
expect_eq "WiFi removed (by event): vfio remove, given back to iwlwifi" "0 done|vfio remove /sys/bus/pci/devices/0000:00:14.3|iwlwifi" \
        "$rc $(j .outcome)|$(calls)|$(driver 0000:00:14.3)"
expect_eq "WiFi: record closed" 0 "$(sql "SELECT count(*) FROM current_attachments WHERE devpath='$WIFI'")"

# ---- 3. crosvm refuses the PCI device (no hot-plug slot): recorded, the device back on the host ----
event add $WIFI CROSVM_STANDIN_PCI_SLOTS=0
expect_eq "no hot-plug slot: exit 3, failed" "3 failed" "$rc $(j .outcome)"
grep -q 'crosvm vfio add /sys/bus/pci/devices/0000:00:14.3: error: Invalid argument (os error 22)' <<<"$(j .error)" &&
        vhp_ok "no hot-plug slot: crosvm's answer in the error" || vhp_fail "no slot error" "$(j .error)"
expect_eq "no hot-plug slot: back on iwlwifi" iwlwifi "$(driver 0000:00:14.3)"

# ---- 4. Every port really taken (by a device someone else attached): refused, said so, nobody taken out ----
: >"$sock2"
echo "1 dead beef /dev/somebody-elses" >"$sock2.state"
event add $U/1-2 CROSVM_STANDIN_PORTS=1
expect_eq "no port free: exit 3, failed" "3 failed" "$rc $(j .outcome)"
grep -q 'crosvm VM other-vm answered no_available_port: every USB port for the device.s speed is taken (1 in use); no device was taken out to make room' <<<"$(j .error)" &&
        vhp_ok "no port free: the reason in words" || vhp_fail "no port free: reason" "$(j .error)"
vhp_check_output "no port free: recorded with the reason" '^failed\|.*no_available_port: every USB port' \
        sql "SELECT outcome || '|' || error FROM history WHERE devpath='$U/1-2' ORDER BY id DESC LIMIT 1"
expect_eq "no port free: no detach sent, the other device still in" "0|devices 1 dead beef" \
        "$(grep -c detach "$CROSVM_STANDIN_LOG")|$("$standin" usb list "$sock2")"
reconcile --vm other-vm
expect_eq "reconcile with a port free again: attaches it" "0 attach done 2" \
        "$rc $(jq -r '.actions[] | select(.devpath == "'$U/1-2'") | .op + " " + .result + " " + (.port | tostring)' "$VHP_TMP/rec.json")"

vhp_done
