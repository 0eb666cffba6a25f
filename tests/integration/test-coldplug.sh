#!/usr/bin/env bash
# Cold-plug arguments (`vmm args`, lib/coldplug.c, driven by tests/tools/vhp-ops until vhotplugctl
# calls it) in a umockdev testbed: Intel WiFi, NVIDIA GPU + HDMI audio in one IOMMU group, the i8042
# keyboard; the fake-kernel vfio harness (tests/tools/vhp-fake-vfio) plays the PCI core, as in
# test-pci-evdev.sh.
#
# Checked: the exact QEMU, crosvm and cloud-hypervisor arguments for GPU (+ its audio function,
# pciIommuAddAll; + OVMF for autoOvmf and NVIDIA), NIC, ACPI table and evdev; the vfio binding
# writes; the records (attached, cold-plugged, under the ids hot-plug uses). A real QEMU takes the
# arguments as far as the fake VFIO group allows (it stops at "failed to get group 13 status") and
# runs with the ones that need no VFIO; tests/tools/vhp-fake-qemu, which checks the arguments as
# QEMU does at start (the device bound to vfio-pci, its group node, the bus), runs with all of
# them, and then vhotplug-reconcile finds nothing to do and a replayed add event sends nothing.
. "$(dirname "$0")/../lib.sh"

F=$VHP_FIXTURES
vhp_run_in_testbed "$F/pci-wifi-intel.umockdev" "$F/pci-gpu-nvidia-with-audio.umockdev" "$F/input-all.umockdev"

ops=$VHP_TOOLS/vhp-ops
qmp=$VHP_TOOLS/vhp-qmp
fakeq=$VHP_TOOLS/vhp-fake-qemu
db=$VHP_TMP/state.db
klog=$VHP_TMP/kernel.log
WIFI=/devices/pci0000:00/0000:00:14.3
GPU=/devices/pci0000:00/0000:00:01.0/0000:01:00.0
AUDIO=/devices/pci0000:00/0000:00:01.0/0000:01:00.1
KBD=/devices/platform/i8042/serio0/input/input3/event3

for t in "$ops" "$qmp" "$fakeq" "$VHP_TOOLS/vhp-fake-vfio" "$VHP_BUILD/vhotplug-reconcile" "$VHP_BUILD/vhotplug-helper"; do
        [ -x "$t" ] || { vhp_fail "$t built"; vhp_done; }
done

# Firmware and an ACPI table (a bare 36-byte header, "NHLT", checksum right) of our own.
head -c 65536 /dev/zero >"$VHP_TMP/OVMF_CODE.fd"
head -c 16384 /dev/zero >"$VHP_TMP/OVMF_VARS.fd"
printf 'NHLT\x24\x00\x00\x00\x01\x00VHPTSTVHPTEST \x01\x00\x00\x00VHP \x01\x00\x00\x00' >"$VHP_TMP/NHLT"
sum=$(od -An -tu1 -v "$VHP_TMP/NHLT" | tr -s ' ' '\n' | awk '{s+=$1} END {print (256 - s % 256) % 256}')
printf "$(printf '\\%03o' "$sum")" | dd of="$VHP_TMP/NHLT" bs=1 seek=9 conv=notrunc status=none
chmod 0400 "$VHP_TMP/NHLT"

# conf NAME GUI-TYPE NET-TYPE: gui-vm gets the GPU (autoOvmf, its whole group) and the keyboard,
# net-vm the WiFi card, audio-vm the NHLT table (and a table this host does not have).
conf() {
        cat >"$VHP_TMP/$1.conf" <<EOF
{
  "pciPassthrough": [
    { "description": "GPU for the GUI VM", "targetVm": "gui-vm", "autoOvmf": true, "pciIommuAddAll": true,
      "skipOnSuspend": true, "allow": [ { "deviceClass": 3, "description": "Display Devices" } ] },
    { "targetVm": "net-vm", "allow": [ { "address": "0000:00:14.3", "description": "WiFi" } ] }
  ],
  "evdevPassthrough": [ { "targetVm": "gui-vm", "allow": [ { "pathTag": "platform-i8042-serio-0" } ] } ],
  "acpiPassthrough": [ { "targetVm": "audio-vm", "allow": [
        { "acpiTable": "$VHP_TMP/NHLT", "setUser": "root", "setGroup": "root" },
        { "acpiTable": "$VHP_TMP/no-such-table" } ] } ],
  "vms": [ { "name": "gui-vm", "type": "$2", "socket": "$VHP_TMP/gui.sock" },
           { "name": "net-vm", "type": "$3", "socket": "$VHP_TMP/net.sock" },
           { "name": "audio-vm", "type": "$3", "socket": "$VHP_TMP/audio.sock" } ],
  "general": { "database": "$db", "lockDir": "$VHP_TMP/lock", "qmpTimeoutMs": 5000,
               "crosvm": "$VHP_TOP/tests/tools/crosvm-standin",
               "ovmfCode": "$VHP_TMP/OVMF_CODE.fd", "ovmfVars": "$VHP_TMP/OVMF_VARS.fd" }
}
EOF
}
conf qemu qemu qemu
conf crosvm crosvm crosvm
conf ch cloud-hypervisor cloud-hypervisor

vhp_fake_kernel_start "$klog"

writes() { tail -c +$((klog_mark + 1)) "$klog"; }
by_file() { sort -s -t= -k1,1; }
# args CONF VM [PREFIX [START]]: vmm args; output in $out, warnings in $warn, status in $rc
args() {
        klog_mark=$(wc -c <"$klog")
        out=$("$ops" "$VHP_TMP/$1.conf" vmm-args "${@:2}" 2>"$VHP_TMP/args.err")
        rc=$?
        warn=$(cat "$VHP_TMP/args.err")
        vhp_ksync
}
sql() { sqlite3 -batch -noheader -cmd '.timeout 10000' "$db" "$1"; }
driver() { basename "$(readlink "$UMOCKDEV_DIR/sys/bus/pci/devices/$1/driver")"; }
expect_eq() {
        if [ "$2" = "$3" ]; then vhp_ok "$1"; else vhp_fail "$1" "expected: $2"$'\n'"got:      $3"; fi
}

# ---- 1. QEMU: the GUI VM, with a bus prefix, as Ghaf's start script asks ----
args qemu gui-vm pci_hotplug_ 1
expect_eq "gui-vm: exit 0" 0 "$rc"
expect_eq "gui-vm: OVMF, the GPU and its audio function on pci_hotplug_1 and _2, the keyboard" \
        "-drive
if=pflash,format=raw,unit=0,readonly=on,file=$VHP_TMP/OVMF_CODE.fd
-drive
if=pflash,format=raw,unit=1,readonly=on,file=$VHP_TMP/OVMF_VARS.fd
-device
vfio-pci,host=0000:01:00.0,multifunction=on,id=vhp-pci-0000-01-00.0,bus=pci_hotplug_1
-device
vfio-pci,host=0000:01:00.1,multifunction=on,id=vhp-pci-0000-01-00.1,bus=pci_hotplug_2
-device
virtio-input-host-pci,evdev=/dev/input/event3,id=vhp-evdev-event3" "$out"
expect_eq "gui-vm: no warnings" "" "$warn"
expect_eq "gui-vm: the whole IOMMU group bound to vfio-pci (exact sysfs writes)" \
        "$(by_file <<<"sys/bus/pci/devices/0000:01:00.0/driver_override=vfio-pci
sys/bus/pci/drivers/nvidia/unbind=0000:01:00.0
sys/bus/pci/drivers_probe=0000:01:00.0
sys/bus/pci/devices/0000:01:00.1/driver_override=vfio-pci
sys/bus/pci/drivers/snd_hda_intel/unbind=0000:01:00.1
sys/bus/pci/drivers_probe=0000:01:00.1")" "$(writes | by_file)"
expect_eq "gui-vm: GPU and audio on vfio-pci, the bridge left alone" "vfio-pci vfio-pci pcieport" \
        "$(driver 0000:01:00.0) $(driver 0000:01:00.1) $(driver 0000:00:01.0)"
expect_eq "gui-vm: recorded attached and cold-plugged, under hot-plug's ids, with the bus" \
        "gui-vm|attached|pci|0000:01:00.0|vhp-pci-0000-01-00.0|pci_hotplug_1|1|pciPassthrough[0].allow[0]
gui-vm|attached|pci|0000:01:00.1|vhp-pci-0000-01-00.1|pci_hotplug_2|1|pciPassthrough[0]
gui-vm|attached|evdev||vhp-evdev-event3||1|evdevPassthrough[0].allow[0]" \
        "$(sql "SELECT vm, state, kind, coalesce(pci_address, ''), vmm_id, bus, cold_plugged, rule FROM current_attachments
                ORDER BY kind DESC, pci_address")"
expect_eq "gui-vm: history says how each came" \
        "$GPU|attach|started|
$GPU|attach|attached|cold-plugged: on the VM's command line
$AUDIO|attach|started|
$AUDIO|attach|attached|cold-plugged: IOMMU group member of 0000:01:00.0 (pciIommuAddAll)
$KBD|attach|started|
$KBD|attach|attached|cold-plugged: on the VM's command line" \
        "$(sql "SELECT devpath, action, outcome, coalesce(detail, '') FROM history ORDER BY id")"

# ---- 2. A real QEMU with these arguments ----
start_vm() { # NAME SOCKET PROGRAM ARGS...: a paused q35 VM with two hot-plug root ports
        local name=$1 sock=$2 prog=$3
        shift 3
        rm -f "$sock"
        "$prog" -machine q35,accel=tcg -nodefaults -display none -S \
                -device pcie-root-port,id=pci_hotplug_1,chassis=1 -device pcie-root-port,id=pci_hotplug_2,chassis=2 \
                -device pcie-root-port,id=pci_hotplug_3,chassis=3 \
                -qmp "unix:$sock,server=on,wait=off" "$@" </dev/null >"$VHP_TMP/$name.log" 2>&1 &
        eval "${name}_pid=$!"
        vhp_on_exit "kill $! 2>/dev/null; wait $! 2>/dev/null"
        vhp_qmp_wait "$sock" "$!"
}
mapfile -t gui_args <<<"$out"
start_vm real "$VHP_TMP/real.sock" qemu-system-x86_64 "${gui_args[@]}"
wait "$real_pid" 2>/dev/null
grep -q "^qemu-system-x86_64: -device vfio-pci,host=0000:01:00.0,multifunction=on,id=vhp-pci-0000-01-00.0,bus=pci_hotplug_1: vfio 0000:01:00.0: failed to get group 13 status" \
        "$VHP_TMP/real.log" &&
        vhp_ok "real QEMU: takes every argument up to the fake VFIO group (failed to get group 13 status)" ||
        vhp_fail "real QEMU: arguments accepted up to VFIO" "$(cat "$VHP_TMP/real.log")"
# Without the VFIO devices it runs: firmware, ACPI table, and the keyboard when umockdev's evdev
# node satisfies QEMU (it answers EVIOCGVERSION on real nodes only; then QEMU says "is not an evdev
# device", which still shows it parsed the argument and opened the node).
mapfile -t novfio < <(printf '%s\n' "${gui_args[@]}" | awk '/^-device$/ {d=1; next} d && /^vfio-pci,/ {d=0; next} d {print "-device"; d=0} {print}')
alive() { "$qmp" "$1" query-status >/dev/null 2>&1; }
if start_vm real2 "$VHP_TMP/real2.sock" qemu-system-x86_64 "${novfio[@]}" && alive "$VHP_TMP/real2.sock"; then
        vhp_ok "real QEMU: runs with the OVMF drives and the evdev device"
        vhp_check_output "real QEMU: has vhp-evdev-event3" '"name":"vhp-evdev-event3"' \
                "$qmp" "$VHP_TMP/real2.sock" qom-list '{"path":"/machine/peripheral"}'
        kill "$real2_pid"
elif grep -q '^qemu-system-x86_64: -device virtio-input-host-pci,evdev=/dev/input/event3,id=vhp-evdev-event3: /dev/input/event3: is not an evdev device' \
        "$VHP_TMP/real2.log"; then
        vhp_ok "real QEMU: takes the evdev argument up to umockdev's node (is not an evdev device)"
        mapfile -t noevdev < <(printf '%s\n' "${novfio[@]}" | head -n 4)
        start_vm real3 "$VHP_TMP/real3.sock" qemu-system-x86_64 "${noevdev[@]}" && alive "$VHP_TMP/real3.sock" &&
                vhp_ok "real QEMU: runs with the OVMF drives" ||
                vhp_fail "real QEMU with the OVMF drives" "$(cat "$VHP_TMP/real3.log")"
        kill "$real3_pid" 2>/dev/null
else
        vhp_fail "real QEMU without the VFIO devices" "$(cat "$VHP_TMP/real2.log")"
fi

# ---- 3. The stand-in QEMU with all of them; reconcile and a replayed event then do nothing ----
export VHP_FAKE_QEMU_LOG=$VHP_TMP/fakeq.log
start_vm fake "$VHP_TMP/gui.sock" "$fakeq" "${gui_args[@]}" ||
        { vhp_fail "stand-in QEMU takes the arguments" "$(cat "$VHP_TMP/fake.log")"; vhp_done; }
vhp_ok "stand-in QEMU takes the arguments (devices bound to vfio-pci, group nodes, buses)"
vhp_check_output "stand-in QEMU has the three devices" \
        'vhp-pci-0000-01-00.0.*vhp-pci-0000-01-00.1.*vhp-evdev-event3' \
        "$qmp" "$VHP_TMP/gui.sock" qom-list '{"path":"/machine/peripheral"}'
: >"$VHP_FAKE_QEMU_LOG"
"$VHP_BUILD/vhotplug-reconcile" -c "$VHP_TMP/qemu.conf" --no-strict-perms --vm gui-vm --json >"$VHP_TMP/rec.json" 2>"$VHP_TMP/rec.err"
rc=$?
expect_eq "reconcile: exit 0" 0 "$rc"
expect_eq "reconcile: no action for gui-vm" "[]" "$(jq -c '[.actions[] | select(.vm == "gui-vm")]' "$VHP_TMP/rec.json")"
expect_eq "reconcile: asked the VM, added and removed nothing" "" \
        "$(grep -E '"device_(add|del)"' "$VHP_FAKE_QEMU_LOG")"
grep -q 'qom-list' "$VHP_FAKE_QEMU_LOG" && vhp_ok "reconcile: did ask the VM" || vhp_fail "reconcile asked the VM"
expect_eq "reconcile: records unchanged" 3 "$(sql "SELECT count(*) FROM current_attachments WHERE vm='gui-vm' AND state='attached' AND cold_plugged")"

mapfile -t props < <(vhp_uevent_props "$GPU")
env "${props[@]}" ACTION=add DEVPATH="$GPU" SEQNUM=900 "$VHP_BUILD/vhotplug-helper" -c "$VHP_TMP/qemu.conf" \
        --no-strict-perms --json >"$VHP_TMP/helper.json" 2>"$VHP_TMP/helper.err"
expect_eq "replayed add of the GPU: already attached, nothing sent" "0 already vhp-pci-0000-01-00.0" \
        "$? $(jq -r '.outcome + " " + .id' "$VHP_TMP/helper.json")"
expect_eq "replayed add: no device_add" "" "$(grep -E '"device_(add|del)"' "$VHP_FAKE_QEMU_LOG")"

# ---- 4. QEMU, no prefix; the NIC; the ACPI table ----
args qemu net-vm
expect_eq "net-vm without a prefix: no bus" "-device
vfio-pci,host=0000:00:14.3,multifunction=on,id=vhp-pci-0000-00-14.3" "$out"
expect_eq "net-vm: the NIC bound (exact sysfs writes)" "$(by_file <<<"sys/bus/pci/devices/0000:00:14.3/driver_override=vfio-pci
sys/bus/pci/drivers/iwlwifi/unbind=0000:00:14.3
sys/bus/pci/drivers_probe=0000:00:14.3")" "$(writes | by_file)"
args qemu audio-vm pci_hotplug_ 1
expect_eq "audio-vm: the ACPI table" "-acpitable
file=$VHP_TMP/NHLT" "$out"
grep -q "ACPI table $VHP_TMP/no-such-table (acpiPassthrough\[0\]) left out: No such file or directory" <<<"$warn" &&
        vhp_ok "audio-vm: a table this host lacks is a warning" || vhp_fail "missing table warning" "$warn"
expect_eq "audio-vm: exit 0 all the same" 0 "$rc"
expect_eq "audio-vm: the table given to setUser/setGroup" "0:0" "$(stat -c %u:%g "$VHP_TMP/NHLT")"
mapfile -t audio_args <<<"$out"
start_vm audio "$VHP_TMP/audio-real.sock" qemu-system-x86_64 "${audio_args[@]}" && alive "$VHP_TMP/audio-real.sock" &&
        vhp_ok "real QEMU: runs with the ACPI table argument" || vhp_fail "real QEMU with -acpitable" "$(cat "$VHP_TMP/audio.log")"
kill "$audio_pid" 2>/dev/null

# ---- 4b. pci suspend / resume of cold-plugged devices (stand-in QEMUs for both VMs) ----
mapfile -t net_args < <("$ops" "$VHP_TMP/qemu.conf" vmm-args net-vm 2>/dev/null)
start_vm netq "$VHP_TMP/net.sock" "$fakeq" "${net_args[@]}" || vhp_fail "stand-in QEMU for net-vm" "$(cat "$VHP_TMP/netq.log")"
: >"$VHP_FAKE_QEMU_LOG"
klog_mark=$(wc -c <"$klog")
"$ops" "$VHP_TMP/qemu.conf" suspend pci >"$VHP_TMP/susp.out" 2>&1
expect_eq "pci suspend: exit 0" 0 "$?"
vhp_ksync
expect_eq "pci suspend: the GPU stays (skipOnSuspend), its audio function with it, the NIC goes" \
        "ignore skipped gui-vm $GPU id= port=-1 note=kept: skipOnSuspend (pciPassthrough[0])
ignore skipped gui-vm $AUDIO id= port=-1 note=kept: skipOnSuspend (pciPassthrough[0])
detach done net-vm $WIFI id=vhp-pci-0000-00-14.3 port=-1" "$(cat "$VHP_TMP/susp.out")"
changes() { jq -c 'select(.execute | startswith("device_")) | [.execute, .arguments]' "$VHP_FAKE_QEMU_LOG"; }
expect_eq "pci suspend: the NIC deleted from its VM, nothing else" '["device_del",{"id":"vhp-pci-0000-00-14.3"}]' \
        "$(changes)"
expect_eq "pci suspend: the NIC given back to its host driver" "$(by_file <<<"sys/bus/pci/devices/0000:00:14.3/driver_override=
sys/bus/pci/drivers/vfio-pci/unbind=0000:00:14.3
sys/bus/pci/drivers_probe=0000:00:14.3")" "$(writes | by_file)"
expect_eq "pci suspend: iwlwifi has it" iwlwifi "$(driver 0000:00:14.3)"
expect_eq "pci suspend: recorded suspended" "$WIFI|pci|net-vm" "$(sql "SELECT devpath, kind, vm FROM suspended")"
: >"$VHP_FAKE_QEMU_LOG"
klog_mark=$(wc -c <"$klog")
"$ops" "$VHP_TMP/qemu.conf" resume pci net-vm >"$VHP_TMP/res.out" 2>&1
expect_eq "pci resume: exit 0, the NIC back under its id" "0 attach done net-vm $WIFI id=vhp-pci-0000-00-14.3 port=-1" \
        "$? $(cat "$VHP_TMP/res.out")"
vhp_ksync
expect_eq "pci resume: bound to vfio-pci again" "$(by_file <<<"sys/bus/pci/devices/0000:00:14.3/driver_override=vfio-pci
sys/bus/pci/drivers/iwlwifi/unbind=0000:00:14.3
sys/bus/pci/drivers_probe=0000:00:14.3")" "$(writes | by_file)"
expect_eq "pci resume: hot-plugged into the first free root port" \
        '["device_add",{"driver":"vfio-pci","host":"0000:00:14.3","id":"vhp-pci-0000-00-14.3","addr":"0","bus":"pci_hotplug_1"}]' \
        "$(changes)"
"$VHP_BUILD/vhotplug-reconcile" -c "$VHP_TMP/qemu.conf" --no-strict-perms --json >"$VHP_TMP/rec.json" 2>"$VHP_TMP/rec.err"
expect_eq "reconcile after resume: nothing to do in gui-vm and net-vm" "0 []" \
        "$? $(jq -c '[.actions[] | select(.vm != "audio-vm")]' "$VHP_TMP/rec.json")"
# Without skipOnSuspend the GPU goes too, and its audio function (an IOMMU group member no rule
# claims) with it; resume brings both back, the member by the entry that gave it.
sed 's/"skipOnSuspend": true,//' "$VHP_TMP/qemu.conf" >"$VHP_TMP/awake.conf"
: >"$VHP_FAKE_QEMU_LOG"
klog_mark=$(wc -c <"$klog")
"$ops" "$VHP_TMP/awake.conf" suspend pci gui-vm >"$VHP_TMP/susp.out" 2>&1
vhp_ksync
expect_eq "pci suspend, no skipOnSuspend: GPU and audio function out" \
        "detach done gui-vm $GPU id=vhp-pci-0000-01-00.0 port=-1
detach done gui-vm $AUDIO id=vhp-pci-0000-01-00.1 port=-1" "$(cat "$VHP_TMP/susp.out")"
expect_eq "... back on nvidia and snd_hda_intel" "nvidia snd_hda_intel" "$(driver 0000:01:00.0) $(driver 0000:01:00.1)"
: >"$VHP_FAKE_QEMU_LOG"
"$ops" "$VHP_TMP/awake.conf" resume pci gui-vm >"$VHP_TMP/res.out" 2>&1
expect_eq "pci resume: both back, the member by its entry" \
        "attach done gui-vm $GPU id=vhp-pci-0000-01-00.0 port=-1
attach done gui-vm $AUDIO id=vhp-pci-0000-01-00.1 port=-1" "$(cat "$VHP_TMP/res.out")"
expect_eq "pci resume: both hot-plugged, into the root ports they left free" \
        '["device_add",{"driver":"vfio-pci","host":"0000:01:00.0","id":"vhp-pci-0000-01-00.0","addr":"0","bus":"pci_hotplug_1"}]
["device_add",{"driver":"vfio-pci","host":"0000:01:00.1","id":"vhp-pci-0000-01-00.1","addr":"0","bus":"pci_hotplug_2"}]' \
        "$(changes)"
vhp_check_output "pci resume: the member's record names the GPU's entry" '^pciPassthrough\[0\]\|0$' \
        sql "SELECT rule || '|' || cold_plugged FROM current_attachments WHERE devpath='$AUDIO'"
kill "$netq_pid" "$fake_pid" 2>/dev/null

# ---- 5. Asking again (the VM restarts): the same arguments, the old records superseded ----
args qemu gui-vm pci_hotplug_ 1
expect_eq "gui-vm again: the same arguments" "$(printf '%s\n' "${gui_args[@]}")" "$out"
expect_eq "gui-vm again: nothing to bind (exact sysfs writes: none)" "" "$(writes)"
expect_eq "gui-vm again: one open record per device" "3" "$(sql "SELECT count(*) FROM current_attachments WHERE vm='gui-vm'")"

# ---- 6. crosvm and cloud-hypervisor forms ----
sql "UPDATE attachments SET state='detached', closed_at=updated_at WHERE state IN ('attached','pending')"
args crosvm gui-vm pci_hotplug_ 1
expect_eq "crosvm gui-vm: --vfio for GPU and audio, --input for the keyboard, no OVMF" "--vfio
/sys/bus/pci/devices/0000:01:00.0,iommu=viommu
--vfio
/sys/bus/pci/devices/0000:01:00.1,iommu=viommu
--input
evdev[path=/dev/input/event3]" "$out"
grep -q 'autoOvmf (pciPassthrough\[0\]) applies to QEMU VMs only' <<<"$warn" && vhp_ok "crosvm: autoOvmf warned about" ||
        vhp_fail "crosvm autoOvmf warning" "$warn"
expect_eq "crosvm: recorded under the sysfs path crosvm takes" \
        "pci|/sys/bus/pci/devices/0000:01:00.0|1
pci|/sys/bus/pci/devices/0000:01:00.1|1
evdev||1" "$(sql "SELECT kind, vmm_id, cold_plugged FROM current_attachments WHERE vm='gui-vm' ORDER BY kind DESC, vmm_id")"
args crosvm audio-vm
expect_eq "crosvm audio-vm: --acpi-table" "--acpi-table
$VHP_TMP/NHLT" "$out"
args ch net-vm
expect_eq "cloud-hypervisor net-vm: --device path=" "--device
path=/sys/bus/pci/devices/0000:00:14.3" "$out"
args ch gui-vm
grep -q 'cloud-hypervisor takes no input devices' <<<"$warn" && vhp_ok "cloud-hypervisor: no evdev, warned" ||
        vhp_fail "cloud-hypervisor evdev warning" "$warn"

# ---- 7. Refusals ----
args qemu no-such-vm
expect_eq "unknown VM: exit 1, named" "1 error: VM no-such-vm is not found in the config file" "$rc $warn"
args qemu gui-vm 'x,romfile=/etc/shadow' 1
expect_eq "a bus prefix that would smuggle QEMU options is refused" 1 "$rc"
sed 's/"ovmfCode": "[^"]*", //' "$VHP_TMP/qemu.conf" >"$VHP_TMP/noovmf.conf"
sql "UPDATE attachments SET state='detached', closed_at=updated_at WHERE state IN ('attached','pending')"
klog_mark=$(wc -c <"$klog")
out=$("$ops" "$VHP_TMP/noovmf.conf" vmm-args gui-vm 2>&1)
expect_eq "autoOvmf GPU without ovmfCode: refused before anything is bound" "error: General ovmfCode is not defined|" \
        "$out|$(vhp_ksync; writes)"
# A group the policy does not hand over whole: left out with a warning and a failed history row.
sed 's/"pciIommuAddAll": true,/"pciIommuSkipIfShared": true,/' "$VHP_TMP/qemu.conf" >"$VHP_TMP/skip.conf"
args skip gui-vm
expect_eq "shared group with pciIommuSkipIfShared: only the keyboard" "-device
virtio-input-host-pci,evdev=/dev/input/event3,id=vhp-evdev-event3" "$out"
grep -q 'left out: cannot hand the device to vfio-pci: IOMMU group 13 is shared with 0000:01:00.1' <<<"$warn" &&
        vhp_ok "shared group: warned" || vhp_fail "shared group warning" "$warn"
vhp_check_output "shared group: history records the refusal" '^failed\|cannot hand the device to vfio-pci: IOMMU group 13' \
        sql "SELECT outcome || '|' || error FROM history WHERE devpath='$GPU' ORDER BY id DESC LIMIT 1"
# A member of the GPU's group with the host's /boot below it (a disk controller sharing the group):
# pciIommuAddAll would bind it too, so the whole group stays on the host, nothing written.
sql "UPDATE attachments SET state='detached', closed_at=updated_at WHERE state IN ('attached','pending')"
blk=sys/devices/pci0000:00/0000:00:01.0/0000:01:00.1/nvme/nvme0/nvme0n1
mkdir -p "$UMOCKDEV_DIR/$blk" "$UMOCKDEV_DIR/sys/dev/block"
ln -sfn "../../../$blk" "$UMOCKDEV_DIR/sys/dev/block/259:7"
printf '21 1 259:7 / /boot rw,relatime shared:2 - vfat /dev/nvme0n1 rw\n' >"$VHP_TMP/mountinfo-boot-in-group"
export VHP_OPS_MOUNTINFO=$VHP_TMP/mountinfo-boot-in-group
args qemu gui-vm
unset VHP_OPS_MOUNTINFO
expect_eq "a group member holding /boot: the GPU left out, only the keyboard, nothing bound" "-device
virtio-input-host-pci,evdev=/dev/input/event3,id=vhp-evdev-event3|" "$out|$(writes)"
grep -q 'left out: cannot hand the device to vfio-pci: IOMMU group 13: 0000:01:00.1 holds the host-required mount /boot' <<<"$warn" &&
        vhp_ok "a group member holding /boot: warned" || vhp_fail "group member holding /boot warning" "$warn"

vhp_done
