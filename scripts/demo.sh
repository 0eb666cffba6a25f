#!/usr/bin/env bash
# make demo: vhotplug end to end on any Debian 12 machine, with no USB hardware and no VM image.
#
# A umockdev testbed plays a laptop's USB bus (a recording of real devices: mouse, Logitech
# Unifying receiver, Bluetooth, webcam, YubiKey, SSD, a dock hub with an Ethernet adapter and a
# serial adapter). A real QEMU (paused, no disk) runs inside that testbed as the "gui-vm", so its
# usb-host devices really open the fake devices. The demo replays plug and unplug events through
# vhotplug-helper as udev's hand-off would, restarts the VM and lets vhotplug-reconcile repair the
# drift, then prints the SQL history. Everything lives in a temporary directory removed at exit;
# with KEEP=1 (make demo KEEP=1) the database stays, and its path and a sqlite3 command are printed.
#
# The demo checks its own results (what QEMU reports over QMP, the rows in the database) and exits
# non-zero, saying what went wrong, when anything is not as it should be.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) bdir=$BUILD ;; *) bdir=$top/$BUILD ;; esac

if [ -z "${VHP_DEMO_INSIDE:-}" ]; then
        "$top/scripts/setup-deps.sh" --check-or-install || exit 1
        make -C "$top" --no-print-directory -s BUILD="$BUILD" all "$BUILD/tests/vhp-qmp" || exit 1
        VHP_DEMO_INSIDE=1 exec umockdev-run -d "$top/tests/data/umockdev/demo-laptop-usb.umockdev" -- bash "$0"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vhotplug-demo.XXXXXX") || exit 1
qemu_pid=
cleanup() {
        [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
        if [ -n "${KEEP:-}" ] && [ "${KEEP:-}" != 0 ] && [ -s "$db" ]; then
                find "$tmp" -mindepth 1 -maxdepth 1 ! -name state.db ! -name state.db-wal ! -name state.db-shm -exec rm -rf {} +
                echo
                echo "The demo's database is kept: $db"
                echo "Query it (README.md, \"Querying the history\", has examples):"
                echo "  sqlite3 -box $db"
                echo "Remove it with: rm -r $tmp"
        else
                rm -rf "$tmp"
        fi
}
trap cleanup EXIT
# die MESSAGE...: the demo did not do what it shows; say so and fail.
die() {
        printf '\n\033[1;31mDEMO FAILED:\033[0m %s\n' "$*" >&2
        exit 1
}
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
        # The socket file appears at bind(), a moment before QEMU listens: wait for an answer.
        for _ in $(seq 200); do
                VHP_QMP_TIMEOUT_MS=2000 "$bdir/tests/vhp-qmp" "$tmp/gui-vm.qmp" query-status >/dev/null 2>&1 &&
                        return 0
                sleep 0.05
        done
        echo "QEMU did not start:" >&2
        cat "$tmp/qemu.log" >&2
        exit 1
}
in_vm() {
        local list
        list=$("$bdir/tests/vhp-qmp" "$tmp/gui-vm.qmp" qom-list '{"path":"/machine/peripheral"}') ||
                die "cannot ask QEMU what gui-vm has: $list"
        jq -r '[.[] | select(.type == "child<usb-host>") | .name] | if length == 0 then "(none)" else join(" ") end' <<<"$list"
}
# show_vm LABEL EXPECTED...: prints what gui-vm has; fails unless it is exactly EXPECTED (any order).
show_vm() {
        local label=$1 have want
        shift
        have=$(in_vm) || exit 1
        echo "$label $have"
        want=$(printf '%s\n' "$@" | sort | xargs)
        [ -n "$want" ] || want="(none)"
        [ "$(tr ' ' '\n' <<<"$have" | sort | xargs)" = "$want" ] ||
                die "QEMU (qom-list /machine/peripheral) shows '$have' for gui-vm, expected '$want'"
}
# expect_sql DESCRIPTION QUERY EXPECTED: the database answers QUERY with EXPECTED.
expect_sql() {
        local got
        got=$(sqlite3 "$db" "$2" 2>&1) || die "cannot read the demo's database $db: $got"
        [ "$got" = "$3" ] || die "database: $1: expected '$3', got '$got'"
}
# udev_event ACTION DEVPATH SEQNUM: the helper with the event in its environment, as the helper's
# service passes it. The device's properties come from its uevent file (kept aside on unplug).
seq=1000
udev_event() {
        local action=$1 devpath=$2 src=/sys$2/uevent
        local -a props=()
        [ -e "$src" ] || src=$tmp/${devpath##*/}.uevent
        while IFS= read -r line; do props+=("$line"); done < <(sed 's/\\n$//' "$src")
        seq=$((seq + 1))
        env "${props[@]}" ACTION="$action" DEVPATH="$devpath" SEQNUM="$seq" \
                "$helper" -c "$conf" ${helper_opts:-} 2>"$tmp/helper.log" ||
                die "vhotplug-helper failed on $action $devpath (exit $?): $(cat "$tmp/helper.log")"
}
unplug() {
        cp "/sys$1/uevent" "$tmp/${1##*/}.uevent"
        rm -rf "$UMOCKDEV_DIR/sys$1" "$UMOCKDEV_DIR/sys/bus/usb/devices/${1##*/}"
}
sql() { sqlite3 -box "$db" "$1" || die "cannot query the demo's database $db"; }
devices=(usb1/1-1 usb1/1-2 usb1/1-3 usb1/1-4 usb1/1-5 usb1/1-6 usb2/2-1 usb1/1-3/1-3.2 usb1/1-3/1-3.4)

# make install puts the config in /etc owned by root; the demo's is a private temporary file.
[ "$(id -u)" = 0 ] || helper_opts=--no-strict-perms

say "What vhotplug would do with each device (vhotplug-helper --dry-run)"
for d in "${devices[@]}"; do
        "$helper" -c "$conf" ${helper_opts:-} --dry-run add "$U/$d" ||
                die "vhotplug-helper --dry-run failed on $U/$d (exit $?)"
done

MOUSE=vhp-usb-001-005 YUBIKEY=vhp-usb-001-007 ETHERNET=vhp-usb-001-008
say "Starting QEMU (gui-vm) and plugging the devices in (one helper per udev event)"
start_vm
for d in "${devices[@]}"; do udev_event add "$U/$d"; done
show_vm "gui-vm now has:" $MOUSE $YUBIKEY $ETHERNET

say "Replaying the add events (udevadm trigger): nothing is attached twice"
for d in usb1/1-1 usb1/1-3/1-3.2; do udev_event add "$U/$d"; done
show_vm "gui-vm now has:" $MOUSE $YUBIKEY $ETHERNET

say "Unplugging the mouse"
unplug $U/usb1/1-1
udev_event remove $U/usb1/1-1
show_vm "gui-vm now has:" $YUBIKEY $ETHERNET

say "The VM restarts and loses its devices; vhotplug-reconcile (its start hook) repairs that"
kill "$qemu_pid"
wait "$qemu_pid" 2>/dev/null
start_vm
show_vm "gui-vm after restart has:"
"$reconcile" -c "$conf" ${helper_opts:-} --vm gui-vm || die "vhotplug-reconcile --vm gui-vm failed (exit $?)"
show_vm "gui-vm now has:" $YUBIKEY $ETHERNET
echo "A second run (the timer's, for all VMs) finds nothing to do, and notes what stays on the host:"
"$reconcile" -c "$conf" ${helper_opts:-} || die "vhotplug-reconcile failed (exit $?)"

# The database agrees with QEMU: two devices attached now, the mouse's whole life recorded.
expect_sql "attached now" "SELECT group_concat(vmm_id, ' ') FROM (SELECT vmm_id FROM current_attachments
        WHERE vm = 'gui-vm' AND state = 'attached' ORDER BY vmm_id)" "$YUBIKEY $ETHERNET"
expect_sql "the mouse's history" "SELECT group_concat(action || '/' || outcome, ' ') FROM (SELECT action, outcome
        FROM history WHERE vmm_id = '$MOUSE' ORDER BY id)" "attach/started attach/attached detach/detaching detach/detached"
expect_sql "devices left on the host" "SELECT count(*) FROM ignored WHERE devpath LIKE '$U/%'" 6

say "SQL: what is attached now (SELECT ... FROM current_attachments)"
sql "SELECT vm, vmm_id AS id, vendor_id || ':' || product_id AS usb_id, product_name, state FROM current_attachments ORDER BY vm, vmm_id"
say "SQL: the history (SELECT ... FROM history)"
sql "SELECT substr(time, 12, 12) AS time, action, outcome, vm, vmm_id AS id, product_name, coalesce(error, '') AS error FROM history ORDER BY time, id"
say "SQL: devices left on the host, and why (SELECT ... FROM ignored_devices)"
sql "SELECT devpath, reason FROM ignored_devices ORDER BY devpath"
echo
if [ -n "${KEEP:-}" ] && [ "${KEEP:-}" != 0 ]; then
        echo "Demo finished. See README.md to install vhotplug for real."
else
        echo "Demo finished; everything it created is removed (make demo KEEP=1 keeps the database)."
        echo "See README.md to install vhotplug for real."
fi
