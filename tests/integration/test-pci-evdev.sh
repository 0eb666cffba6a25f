#!/usr/bin/env bash
# PCI and evdev passthrough end to end: vhotplug-helper driven as udev's hand-off drives it, inside a
# umockdev testbed (Intel WiFi, NVIDIA GPU + HDMI audio in one IOMMU group, i8042 keyboard, a USB
# mouse's evdev node) with a real QEMU in the same testbed and a real SQLite database.
#
# The testbed's sysfs is plain files, so tests/tools/vhp-fake-vfio plays the kernel's PCI core:
# driver_override, drivers/D/unbind and drivers_probe are FIFOs it serves, logging every write, moving
# driver links and creating /dev/vfio/N. QEMU then refuses the fake VFIO device (its group node is a
# plain file), which exercises the refusal path: recorded, exit 3, devices given back to the host.
# The helper talks to QEMU through a socat proxy whose trace shows exactly what QEMU was asked.
. "$(dirname "$0")/../lib.sh"

F=$VHP_FIXTURES
vhp_run_in_testbed "$F/pci-wifi-intel.umockdev" "$F/pci-gpu-nvidia-with-audio.umockdev" \
        "$F/input-all.umockdev" "$F/input-usb-mouse-event.umockdev"

helper=$VHP_BUILD/vhotplug-helper
qmp=$VHP_TOOLS/vhp-qmp
db=$VHP_TMP/state.db
klog=$VHP_TMP/kernel.log
trace=$VHP_TMP/qmp.trace
qsock=$VHP_TMP/qemu.sock
WIFI=/devices/pci0000:00/0000:00:14.3
GPU=/devices/pci0000:00/0000:00:01.0/0000:01:00.0
KBD=/devices/platform/i8042/serio0/input/input3/event3
MOUSE=/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/0003:046D:C077.0001/input/input20/event20

for t in "$helper" "$qmp" "$VHP_TOOLS/vhp-fake-vfio"; do
        [ -x "$t" ] || { vhp_fail "$t built"; vhp_done; }
done

# conf NAME SECTIONS-JSON: a configuration with vm1 (behind the tracing proxy) and down-vm.
conf() {
        cat >"$VHP_TMP/$1.conf" <<EOF
{
  $2,
  "vms": [ { "name": "vm1", "type": "qemu", "socket": "$VHP_TMP/proxy.sock" },
           { "name": "down-vm", "type": "qemu", "socket": "$VHP_TMP/down.sock" } ],
  "general": { "database": "$db", "lockDir": "$VHP_TMP/lock", "qmpTimeoutMs": 5000 }
}
EOF
}
conf wifi '"pciPassthrough": [ { "description": "WiFi for vm1", "targetVm": "vm1", "allow": [ { "address": "0000:00:14.3", "description": "the WiFi card" } ] } ]'
conf gpu-default '"pciPassthrough": [ { "targetVm": "vm1", "allow": [ { "vendorId": "10de", "deviceId": "2520" } ] } ]'
conf gpu-skip '"pciPassthrough": [ { "targetVm": "vm1", "pciIommuSkipIfShared": true, "allow": [ { "vendorId": "10de", "deviceId": "2520" } ] } ]'
conf gpu-all '"pciPassthrough": [ { "targetVm": "vm1", "pciIommuAddAll": true, "allow": [ { "vendorId": "10de", "deviceId": "2520" } ] } ]'
conf wifi-down '"pciPassthrough": [ { "targetVm": "down-vm", "allow": [ { "address": "00:14.3" } ] } ]'
conf evdev '"evdevPassthrough": { "targetVm": "vm1" }'

vhp_fake_kernel_start "$klog"

vhp_start_qemu vm1 "$qsock" || { vhp_fail "QEMU did not start"; vhp_done; }
socat -v UNIX-LISTEN:"$VHP_TMP/proxy.sock",fork UNIX-CONNECT:"$qsock" 2>"$trace" &
spid=$!
vhp_on_exit "kill $spid 2>/dev/null; wait $spid 2>/dev/null"
for _ in $(seq 100); do [ -S "$VHP_TMP/proxy.sock" ] && break; sleep 0.05; done

# Find the PCI GPU's device id in the fixture so the rules above match it.
gpu_id=$(cat "/sys$GPU/device" 2>/dev/null)
[ "$gpu_id" = 0x2520 ] || vhp_fail "fixture GPU device id is 0x2520" "got '$gpu_id'"

# event CONF ACTION DEVPATH: runs the helper with the device's uevent properties in the environment.
# Output in $VHP_TMP/out.json and out.err, status in $rc. Marks the kernel log and the QMP trace, so
# writes() and asked() show only what this event did.
seq=100
event() {
        local -a props
        mapfile -t props < <(vhp_uevent_props "$3")
        seq=$((seq + 1))
        klog_mark=$(wc -c <"$klog")
        trace_mark=$(wc -c <"$trace")
        env "${props[@]}" ACTION="$2" DEVPATH="$3" SEQNUM="$seq" \
                "$helper" -c "$VHP_TMP/$1.conf" --no-strict-perms --json >"$VHP_TMP/out.json" 2>"$VHP_TMP/out.err"
        rc=$?
        vhp_ksync
}
writes() { tail -c +$((klog_mark + 1)) "$klog"; }
# The stand-in handles the writes of one poll round file kind by file kind, so the order across files
# is its own; the order within each file is the helper's. Compare per file (stable sort by path).
by_file() { sort -s -t= -k1,1; }
asked() { tail -c +$((trace_mark + 1)) "$trace" | grep -o '{"execute":"device_add".*}}'; }
j() { jq -r "$1" "$VHP_TMP/out.json" 2>/dev/null; }
sql() { sqlite3 -batch -noheader -cmd '.timeout 10000' "$db" "$1"; }
last_history() { sql "SELECT outcome || '|' || coalesce(error, '') FROM history WHERE devpath='$1' ORDER BY id DESC LIMIT 1"; }
driver() { basename "$(readlink "$UMOCKDEV_DIR/sys/bus/pci/devices/$1/driver")"; }
peripherals() { # fails when QEMU cannot be asked
        local out
        out=$("$qmp" "$qsock" qom-list '{"path":"/machine/peripheral"}') || { echo "$out"; return 1; }
        jq -r '.[].name' <<<"$out" | sort
}
show() { echo "rc=$rc"; cat "$VHP_TMP/out.json" "$VHP_TMP/out.err"; echo "-- writes:"; writes; echo "-- asked:"; asked; }

# expect_eq DESC WANT GOT
expect_eq() {
        if [ "$2" = "$3" ]; then vhp_ok "$1"; else vhp_fail "$1" "expected: $2"$'\n'"got:      $3"; fi
}

WIFI_BIND_AND_BACK="sys/bus/pci/devices/0000:00:14.3/driver_override=vfio-pci
sys/bus/pci/drivers/iwlwifi/unbind=0000:00:14.3
sys/bus/pci/drivers_probe=0000:00:14.3
sys/bus/pci/devices/0000:00:14.3/driver_override=
sys/bus/pci/drivers/vfio-pci/unbind=0000:00:14.3
sys/bus/pci/drivers_probe=0000:00:14.3"

# ---- 1. WiFi into the first free root port; QEMU refuses the fake VFIO device ----
"$qmp" "$qsock" device_add '{"driver":"virtio-rng-pci","id":"rng1","bus":"rp1","addr":"0"}' >/dev/null ||
        vhp_fail "test setup: virtio-rng-pci into rp1"
event wifi add $WIFI
expect_eq "wifi: exit 3 (VM refused)" 3 "$rc"
expect_eq "wifi: outcome failed, id vhp-pci-0000-00-14.3" "attach failed vhp-pci-0000-00-14.3" "$(j '.action + " " + .outcome + " " + .id')"
expect_eq "wifi: bound to vfio-pci, then given back (exact sysfs writes)" "$(by_file <<<"$WIFI_BIND_AND_BACK")" "$(writes | by_file)"
expect_eq "wifi: QEMU asked once, for vfio-pci host 0000:00:14.3 on rp2 (rp1 occupied)" \
        '{"execute":"device_add","id":4,"arguments":{"driver":"vfio-pci","host":"0000:00:14.3","id":"vhp-pci-0000-00-14.3","addr":"0","bus":"rp2"}}' \
        "$(asked | sed 's/"id":[0-9]*,"arguments"/"id":4,"arguments"/')"
qemu_msg='vfio 0000:00:14.3: failed to get group 12 status'
grep -q "$qemu_msg" <<<"$(j .error)" && vhp_ok "wifi: error carries QEMU's message" || vhp_fail "wifi: error text" "$(show)"
vhp_check_output "wifi: history records the failed attempt with QEMU's message" \
        "^failed\|VM refused the device: $qemu_msg" last_history $WIFI
vhp_check_output "wifi: failures view lists it with its rule" \
        "^pci\|8086:a0f0\|0000:00:14.3\|pciPassthrough\[0\]\.allow\[0\]\|the WiFi card\|.*$qemu_msg" \
        sql "SELECT kind, ids, pci_address, rule, rule_description, error FROM failures WHERE devpath='$WIFI' LIMIT 1"
expect_eq "wifi: no open attachment left" 0 "$(sql "SELECT count(*) FROM current_attachments WHERE devpath='$WIFI'")"
expect_eq "wifi: back on iwlwifi" iwlwifi "$(driver 0000:00:14.3)"
vhp_check_lacks "wifi: QEMU has no vhp-pci device" '^vhp-pci-' peripherals
expect_eq "wifi: rp2 still empty" 0 "$("$qmp" "$qsock" qom-list '{"path":"/machine/peripheral/rp2/rp2"}' | jq '[.[] | select(.name | startswith("child["))] | length')"

# ---- 2. IOMMU group: GPU 01:00.0 shares group 13 with its audio function 01:00.1 ----
event gpu-default add $GPU
expect_eq "gpu default policy: exit 3" 3 "$rc"
err=$(j .error)
grep -q 'IOMMU group 13' <<<"$err" && grep -q '0000:01:00.1 (bound to snd_hda_intel)' <<<"$err" &&
        vhp_ok "gpu default policy: reason names the group and the audio function's driver" || vhp_fail "gpu default reason" "$(show)"
expect_eq "gpu default policy: nothing written to sysfs" "" "$(writes)"
expect_eq "gpu default policy: QEMU not asked" "" "$(asked)"
vhp_check_output "gpu default policy: recorded as failed with the reason" \
        '^failed\|cannot hand the device to vfio-pci: .*IOMMU group 13.*snd_hda_intel' last_history $GPU

event gpu-skip add $GPU
expect_eq "gpu pciIommuSkipIfShared: exit 3" 3 "$rc"
grep -q 'IOMMU group 13 is shared with 0000:01:00.1' <<<"$(j .error)" &&
        vhp_ok "gpu pciIommuSkipIfShared: reason says the group is shared" || vhp_fail "gpu skip reason" "$(show)"
expect_eq "gpu pciIommuSkipIfShared: nothing written to sysfs" "" "$(writes)"
vhp_check_output "gpu pciIommuSkipIfShared: recorded" '^failed\|.*is shared with 0000:01:00.1' last_history $GPU

event gpu-all add $GPU
expect_eq "gpu pciIommuAddAll: exit 3 (QEMU refuses)" 3 "$rc"
expect_eq "gpu pciIommuAddAll: both functions bound, then both given back" \
        "$(by_file <<<"sys/bus/pci/devices/0000:01:00.0/driver_override=vfio-pci
sys/bus/pci/drivers/nvidia/unbind=0000:01:00.0
sys/bus/pci/drivers_probe=0000:01:00.0
sys/bus/pci/devices/0000:01:00.1/driver_override=vfio-pci
sys/bus/pci/drivers/snd_hda_intel/unbind=0000:01:00.1
sys/bus/pci/drivers_probe=0000:01:00.1
sys/bus/pci/devices/0000:01:00.0/driver_override=
sys/bus/pci/drivers/vfio-pci/unbind=0000:01:00.0
sys/bus/pci/drivers_probe=0000:01:00.0
sys/bus/pci/devices/0000:01:00.1/driver_override=
sys/bus/pci/drivers/vfio-pci/unbind=0000:01:00.1
sys/bus/pci/drivers_probe=0000:01:00.1")" "$(writes | by_file)"
expect_eq "gpu pciIommuAddAll: QEMU asked for the GPU only, on rp2" '"driver":"vfio-pci","host":"0000:01:00.0","id":"vhp-pci-0000-01-00.0","addr":"0","bus":"rp2"}}' \
        "$(asked | sed 's/.*"arguments":{//')"
vhp_check_output "gpu pciIommuAddAll: recorded with QEMU's message" '^failed\|VM refused the device: vfio 0000:01:00.0: failed to get group 13 status' \
        last_history $GPU
expect_eq "gpu pciIommuAddAll: drivers restored (nvidia, snd_hda_intel, pcieport)" "nvidia snd_hda_intel pcieport" \
        "$(driver 0000:01:00.0) $(driver 0000:01:00.1) $(driver 0000:00:01.0)"
expect_eq "gpu: three failed attempts in the failures view" 3 "$(sql "SELECT count(*) FROM failures WHERE devpath='$GPU'")"

# ---- 3. evdev: legacy object form, i8042 keyboard into a free root port ----
event evdev add $KBD
ask=$(asked)
expect_eq "evdev: QEMU asked for virtio-input-host-pci evdev=/dev/input/event3 on rp2" \
        '"driver":"virtio-input-host-pci","evdev":"/dev/input/event3","id":"vhp-evdev-event3","addr":"0","bus":"rp2"}}' \
        "$(sed 's/.*"arguments":{//' <<<"$ask")"
if [ "$rc" = 0 ]; then
        # umockdev emulated the evdev ioctls well enough for QEMU: it really attached.
        expect_eq "evdev: attached" "done vhp-evdev-event3" "$(j '.outcome + " " + .id')"
        vhp_check_output "evdev: QEMU has vhp-evdev-event3" '^vhp-evdev-event3$' peripherals
        vhp_check_output "evdev: attached row in rp2" '^attached\|rp2\|/dev/input/event3$' \
                sql "SELECT state, bus, devnode FROM current_attachments WHERE devpath='$KBD'"
else
        expect_eq "evdev: QEMU refused the fake node: exit 3, failed" "3 failed" "$rc $(j .outcome)"
        qerr=$(j .error)
        grep -Eq 'VM refused the device: .*(/dev/input/event3|evdev)' <<<"$qerr" &&
                vhp_ok "evdev: error carries QEMU's message ($qerr)" || vhp_fail "evdev: error text" "$(show)"
        vhp_check_output "evdev: history records QEMU's message" "^failed\|${qerr//|/\\|}$" last_history $KBD
        vhp_check_lacks "evdev: QEMU has no half-added device" '^vhp-evdev-' peripherals
fi
expect_eq "evdev: no sysfs writes for an input device" "" "$(writes)"

event evdev add $MOUSE
expect_eq "evdev of a USB mouse: ignored, exit 0" "0 ignore skipped" "$rc $(j '.action + " " + .outcome')"
grep -qi 'usb' <<<"$(j .reason)" && vhp_ok "evdev of a USB mouse: reason names USB ($(j .reason))" ||
        vhp_fail "USB evdev reason" "$(show)"
expect_eq "evdev of a USB mouse: QEMU not asked" "" "$(asked)"
expect_eq "evdev of a USB mouse: no attachment row" 0 "$(sql "SELECT count(*) FROM attachments WHERE devpath='$MOUSE'")"

# ---- 4. No free root port ----
for p in rp2 rp3; do
        "$qmp" "$qsock" device_add "{\"driver\":\"virtio-rng-pci\",\"id\":\"rng-$p\",\"bus\":\"$p\",\"addr\":\"0\"}" >/dev/null 2>&1
done
full=$(for p in rp1 rp2 rp3; do "$qmp" "$qsock" qom-list "{\"path\":\"/machine/peripheral/$p/$p\"}" | jq '[.[] | select(.name | startswith("child["))] | length'; done | tr '\n' ' ')
expect_eq "test setup: every root port occupied" "1 1 1 " "$full"
event wifi add $WIFI
expect_eq "no free port: exit 3" 3 "$rc"
grep -q 'VM vm1 has no free pcie-root-port' <<<"$(j .error)" && vhp_ok "no free port: clear error" || vhp_fail "no free port error" "$(show)"
vhp_check_output "no free port: recorded" '^failed\|VM refused the device: VM vm1 has no free pcie-root-port' last_history $WIFI
expect_eq "no free port: QEMU not asked to add anything" "" "$(asked)"
expect_eq "no free port: bound, then given back" "$(by_file <<<"$WIFI_BIND_AND_BACK")" "$(writes | by_file)"
expect_eq "no free port: back on iwlwifi" iwlwifi "$(driver 0000:00:14.3)"

# ---- 5. VM not running: pending, exit 0, the device stays with the host ----
event wifi-down add $WIFI
expect_eq "VM down: exit 0, pending" "0 pending" "$rc $(j .outcome)"
vhp_check_output "VM down: pending row" '^pending\|down-vm\|0000:00:14.3$' \
        sql "SELECT state, vm, pci_address FROM current_attachments WHERE devpath='$WIFI'"
vhp_check_output "VM down: history says the VM is not running" '^pending\|VM not running: VM down-vm is not running' last_history $WIFI
expect_eq "VM down: nothing bound (no sysfs writes)" "" "$(writes)"
expect_eq "VM down: still on iwlwifi" iwlwifi "$(driver 0000:00:14.3)"

# ---- 6. vfio-pci not loaded: the binding fails after it was planned ----
# Nothing is written, nothing stays half-done, and nothing leaks (the sanitizer build of this test
# checks the plan is freed on this path).
sql "UPDATE attachments SET state='failed', closed_at=updated_at WHERE devpath='$WIFI' AND state='pending'"
mv "$UMOCKDEV_DIR/sys/bus/pci/drivers/vfio-pci" "$UMOCKDEV_DIR/sys/bus/pci/drivers/vfio-pci.unloaded"
event wifi add $WIFI
mv "$UMOCKDEV_DIR/sys/bus/pci/drivers/vfio-pci.unloaded" "$UMOCKDEV_DIR/sys/bus/pci/drivers/vfio-pci"
expect_eq "vfio-pci missing: exit 3" 3 "$rc"
vhp_check_output "vfio-pci missing: recorded with the reason" \
        '^failed\|cannot hand the device to vfio-pci: .*0000:00:14.3: the vfio-pci driver is not loaded' last_history $WIFI
expect_eq "vfio-pci missing: no sysfs writes" "" "$(writes)"
expect_eq "vfio-pci missing: QEMU not asked" "" "$(asked)"
expect_eq "vfio-pci missing: still on iwlwifi" iwlwifi "$(driver 0000:00:14.3)"

vhp_done
