#!/usr/bin/env bash
# make demo: vhotplug end to end on any Debian 12 machine, with no USB hardware and no VM image.
#
# A umockdev testbed plays a laptop's USB bus (a recording of real devices: mouse, Logitech
# Unifying receiver, Bluetooth, webcam, YubiKey, SSD, a dock hub with an Ethernet adapter and a
# serial adapter). A real QEMU (paused, no disk) runs inside that testbed as the "gui-vm", so its
# usb-host devices really open the fake devices. The demo replays plug and unplug events through
# vhotplug-helper as udev's hand-off would, restarts the VM and lets vhotplug-reconcile repair the
# drift, then prints the SQL history. Everything lives in a temporary directory removed at exit.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) bdir=$BUILD ;; *) bdir=$top/$BUILD ;; esac

if [ -z "${VHP_DEMO_INSIDE:-}" ]; then
        "$top/scripts/setup-deps.sh" --check-or-install || exit 1
        make -C "$top" --no-print-directory -s BUILD="$BUILD" all "$BUILD/tests/vhp-qmp" || exit 1
        VHP_DEMO_INSIDE=1 exec umockdev-run -d "$top/tests/data/umockdev/demo-laptop-usb.umockdev" -- bash "$0"
fi

tmp=$(mktemp -d /tmp/vhotplug-demo.XXXXXX)
qemu_pid=
cleanup() {
        [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
        rm -rf "$tmp"
}
trap cleanup EXIT
helper=$bdir/vhotplug-helper
reconcile=$bdir/vhotplug-reconcile
conf=$tmp/vhotplug.conf
db=$tmp/state.db
U=/devices/pci0000:00/0000:00:14.0

# The embedded demo configuration: HID mice and Ethernet adapters to the GUI VM, the Unifying
# receiver and the dock's serial adapter denied, everything else stays on the host.
cat >"$conf" <<EOF
{
  "usbPassthrough": [
    {
      "description": "Devices for the GUI VM",
      "targetVm": "gui-vm",
      "allow": [
        { "interfaceClass": 3, "interfaceProtocol": 2, "description": "HID mice" },
        { "productName": ".*ethernet.*", "description": "Ethernet adapters" },
        { "interfaceClass": 11, "description": "Smart cards (YubiKey CCID)" }
      ],
      "deny": [
        { "vendorId": "046d", "productId": "c52b", "description": "Logitech Unifying receiver stays on the host" }
      ]
    }
  ],
  "vms": [ { "name": "gui-vm", "type": "qemu", "socket": "$tmp/gui-vm.qmp" } ],
  "general": { "database": "$db", "lockDir": "$tmp/lock" }
}
EOF
chmod 600 "$conf"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
start_vm() {
        rm -f "$tmp/gui-vm.qmp"
        qemu-system-x86_64 -machine q35,accel=tcg -nodefaults -display none -S \
                -device qemu-xhci,id=xhci -qmp "unix:$tmp/gui-vm.qmp,server=on,wait=off" \
                </dev/null >"$tmp/qemu.log" 2>&1 &
        qemu_pid=$!
        for _ in $(seq 100); do [ -S "$tmp/gui-vm.qmp" ] && return 0; sleep 0.05; done
        echo "QEMU did not start:" >&2
        cat "$tmp/qemu.log" >&2
        exit 1
}
in_vm() {
        local list
        list=$("$bdir/tests/vhp-qmp" "$tmp/gui-vm.qmp" qom-list '{"path":"/machine/peripheral"}') ||
                { echo "(cannot ask QEMU)"; return; }
        jq -r '[.[] | select(.type == "child<usb-host>") | .name] | if length == 0 then "(none)" else join(" ") end' <<<"$list"
}
# udev_event ACTION DEVPATH SEQNUM: the helper with the event in its environment, as systemd-run -E
# passes it. The device's properties come from its uevent file (kept aside on unplug).
seq=1000
udev_event() {
        local action=$1 devpath=$2 src=/sys$2/uevent
        local -a props=()
        [ -e "$src" ] || src=$tmp/${devpath##*/}.uevent
        while IFS= read -r line; do props+=("$line"); done < <(sed 's/\\n$//' "$src")
        seq=$((seq + 1))
        env "${props[@]}" ACTION="$action" DEVPATH="$devpath" SEQNUM="$seq" "$helper" -c "$conf" 2>/dev/null
}
unplug() {
        cp "/sys$1/uevent" "$tmp/${1##*/}.uevent"
        rm -rf "$UMOCKDEV_DIR/sys$1" "$UMOCKDEV_DIR/sys/bus/usb/devices/${1##*/}"
}
sql() { sqlite3 -box "$db" "$1"; }
devices=(usb1/1-1 usb1/1-2 usb1/1-3 usb1/1-4 usb1/1-5 usb1/1-6 usb2/2-1 usb1/1-3/1-3.2 usb1/1-3/1-3.4)

# make install puts the config in /etc owned by root; the demo's is a private temporary file.
[ "$(id -u)" = 0 ] || helper_opts=--no-strict-perms

say "What vhotplug would do with each device (vhotplug-helper --dry-run)"
for d in "${devices[@]}"; do
        "$helper" -c "$conf" ${helper_opts:-} --dry-run add "$U/$d"
done

say "Starting QEMU (gui-vm) and plugging the devices in (one helper per udev event)"
start_vm
for d in "${devices[@]}"; do udev_event add "$U/$d"; done
echo "gui-vm now has: $(in_vm)"

say "Replaying the add events (udevadm trigger): nothing is attached twice"
for d in usb1/1-1 usb1/1-3/1-3.2; do udev_event add "$U/$d"; done
echo "gui-vm now has: $(in_vm)"

say "Unplugging the mouse"
unplug $U/usb1/1-1
udev_event remove $U/usb1/1-1
echo "gui-vm now has: $(in_vm)"

say "The VM restarts and loses its devices; vhotplug-reconcile (its start hook) repairs that"
kill "$qemu_pid"
wait "$qemu_pid" 2>/dev/null
start_vm
echo "gui-vm after restart has: $(in_vm)"
"$reconcile" -c "$conf" ${helper_opts:-} --vm gui-vm
echo "gui-vm now has: $(in_vm)"
echo "A second run (the timer's, for all VMs) finds nothing to do, and notes what stays on the host:"
"$reconcile" -c "$conf" ${helper_opts:-}

say "SQL: what is attached now (SELECT ... FROM current_attachments)"
sql "SELECT vm, vmm_id AS id, vendor_id || ':' || product_id AS usb_id, product_name, state FROM current_attachments ORDER BY vm, vmm_id"
say "SQL: the history (SELECT ... FROM history)"
sql "SELECT substr(time, 12, 12) AS time, action, outcome, vm, vmm_id AS id, product_name, coalesce(error, '') AS error FROM history ORDER BY time, id"
say "SQL: devices left on the host, and why (SELECT ... FROM ignored_devices)"
sql "SELECT devpath, reason FROM ignored_devices ORDER BY devpath"
echo
echo "Demo finished; everything it created is removed. See README.md to install vhotplug for real."
