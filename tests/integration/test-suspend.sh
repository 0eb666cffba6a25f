#!/usr/bin/env bash
# Suspend and resume (lib/power.c, driven by tests/tools/vhp-ops until vhotplugctl calls it) with a
# real QEMU in a umockdev testbed of USB mice and a real SQLite database: three USB devices
# attached by the helper, one of them from a skipOnSuspend entry; suspend takes the other two out
# and records them; a replayed add and reconcile leave them out; resume puts them back under the
# same ids; history tells the story. Then: a device unplugged while suspended, a VM that is down at
# resume, and a reboot (another boot id) that ends a suspension.
. "$(dirname "$0")/../lib.sh"

if [ -z "${UMOCKDEV_DIR:-}" ]; then
        "$VHP_TOP/tests/tools/gen-usb-fixture.sh" 4 >"$VHP_TMP/mice.umockdev"
        vhp_run_in_testbed "$VHP_TMP/mice.umockdev"
fi

helper=$VHP_BUILD/vhotplug-helper
ops=$VHP_TOOLS/vhp-ops
qmp=$VHP_TOOLS/vhp-qmp
db=$VHP_TMP/state.db
conf=$VHP_TMP/vhotplug.conf
U=/devices/pci0000:00/0000:00:14.0/usb1
for t in "$helper" "$ops" "$qmp" "$VHP_BUILD/vhotplug-reconcile"; do
        [ -x "$t" ] || { vhp_fail "$t built"; vhp_done; }
done

cat >"$conf" <<EOF
{
  "usbPassthrough": [
    { "description": "Mice", "targetVm": "gui-vm", "allow": [ { "serial": "SN0001" }, { "serial": "SN0002" } ] },
    { "description": "Security key", "targetVm": "gui-vm", "skipOnSuspend": true, "allow": [ { "serial": "SN0003" } ] },
    { "targetVm": "gui-vm", "allow": [ { "serial": "SN0004" } ] }
  ],
  "vms": [ { "name": "gui-vm", "type": "qemu", "socket": "$VHP_TMP/gui.sock" } ],
  "general": { "database": "$db", "lockDir": "$VHP_TMP/lock", "qmpTimeoutMs": 3000, "attachRetries": 3 }
}
EOF

seq=100
event() { # ACTION DEVPATH: the helper as udev's hand-off runs it; $rc, $VHP_TMP/out.json
        local -a props
        mapfile -t props < <(vhp_uevent_props "$2")
        seq=$((seq + 1))
        env "${props[@]}" ACTION="$1" DEVPATH="$2" SEQNUM="$seq" "$helper" -c "$conf" --no-strict-perms --json \
                >"$VHP_TMP/out.json" 2>"$VHP_TMP/out.err"
        rc=$?
}
j() { jq -r "$1" "$VHP_TMP/out.json" 2>/dev/null; }
sql() { sqlite3 -batch -noheader -cmd '.timeout 10000' "$db" "$1"; }
ops() { "$ops" "$conf" "$@" >"$VHP_TMP/ops.out" 2>"$VHP_TMP/ops.err"; rc=$?; }
usb_in_vm() { # the usb-host ids QEMU has, sorted, on one line
        "$qmp" "$VHP_TMP/gui.sock" qom-list '{"path":"/machine/peripheral"}' |
                jq -r '[.[] | select(.type == "child<usb-host>") | .name] | sort | join(" ")'
}
expect_eq() {
        if [ "$2" = "$3" ]; then vhp_ok "$1"; else vhp_fail "$1" "expected: $2"$'\n'"got:      $3"; fi
}

vhp_start_qemu gui "$VHP_TMP/gui.sock" || { vhp_fail "QEMU did not start"; vhp_done; }

# ---- 1. Three devices attached by the helper ----
for i in 1 2 3; do event add $U/1-$i; done
expect_eq "three mice attached" "vhp-usb-001-002 vhp-usb-001-003 vhp-usb-001-004" "$(usb_in_vm)"

# ---- 2. Suspend: the two of the plain entry go, the skipOnSuspend one stays ----
ops suspend usb
expect_eq "suspend: exit 0" 0 "$rc"
expect_eq "suspend: what happened to each" \
        "detach done gui-vm $U/1-1 id=vhp-usb-001-002 port=-1
detach done gui-vm $U/1-2 id=vhp-usb-001-003 port=-1
ignore skipped gui-vm $U/1-3 id= port=-1 note=kept: skipOnSuspend (usbPassthrough[1])" "$(cat "$VHP_TMP/ops.out")"
expect_eq "suspend: QEMU keeps only the skipOnSuspend device" "vhp-usb-001-004" "$(usb_in_vm)"
expect_eq "suspend: the two recorded as suspended, in this boot" \
        "$U/1-1|usb|gui-vm|vhp-ops|1
$U/1-2|usb|gui-vm|vhp-ops|1" \
        "$(sql "SELECT devpath, kind, vm, requested_by, boot_id = '$(cat /proc/sys/kernel/random/boot_id)' FROM suspended ORDER BY devpath")"
expect_eq "suspend: their records closed" "$U/1-3" "$(sql "SELECT devpath FROM current_attachments")"

# ---- 3. Neither a replayed add nor reconcile puts them back ----
event add $U/1-1
expect_eq "replayed add of a suspended device: exit 0, outcome suspended" "0 suspended" "$rc $(j .outcome)"
"$VHP_BUILD/vhotplug-reconcile" -c "$conf" --no-strict-perms --json >"$VHP_TMP/rec.json" 2>"$VHP_TMP/rec.err"
# (It does attach the fourth mouse, claimed and present but not attached yet: resume leaves that
# one be.)
expect_eq "reconcile: exit 0, no action for the suspended ones" "0 []" \
        "$? $(jq -c '[.actions[] | select(.devpath == "'$U/1-1'" or .devpath == "'$U/1-2'")]' "$VHP_TMP/rec.json")"
expect_eq "QEMU still without them" "vhp-usb-001-004 vhp-usb-001-005" "$(usb_in_vm)"

# ---- 4. Resume: exactly those two back, under the same ids ----
ops resume usb
expect_eq "resume: exit 0" 0 "$rc"
expect_eq "resume: what happened to each" \
        "attach done gui-vm $U/1-1 id=vhp-usb-001-002 port=-1
attach done gui-vm $U/1-2 id=vhp-usb-001-003 port=-1" "$(cat "$VHP_TMP/ops.out")"
expect_eq "resume: QEMU has all four" "vhp-usb-001-002 vhp-usb-001-003 vhp-usb-001-004 vhp-usb-001-005" "$(usb_in_vm)"
expect_eq "resume: nothing suspended any more" 0 "$(sql "SELECT count(*) FROM suspended")"
expect_eq "history of 1-1: attached, suspended, resumed" \
        "attach|started|
attach|attached|
detach|detaching|suspended (usb suspend)
detach|detached|
attach|started|
attach|attached|" "$(sql "SELECT action, outcome, coalesce(detail, '') FROM history WHERE devpath='$U/1-1' ORDER BY id")"
ops resume usb
expect_eq "a second resume: nothing to do" "0 " "$rc $(cat "$VHP_TMP/ops.out")"

# ---- 5. Unplugged while suspended: the suspension is closed, not an error ----
ops suspend usb gui-vm
vhp_unplug $U/1-2
event remove $U/1-2
expect_eq "remove of a suspended device: nothing attached, exit 0" "0 skipped" "$rc $(j .outcome)"
ops resume usb gui-vm
expect_eq "resume after an unplug: exit 0" 0 "$rc"
grep -q "^ignore skipped gui-vm $U/1-2 id= port=-1 note=unplugged while suspended$" "$VHP_TMP/ops.out" &&
        vhp_ok "resume: the unplugged device's suspension closed" || vhp_fail "unplugged while suspended" "$(cat "$VHP_TMP/ops.out")"
expect_eq "resume: the others are back" "vhp-usb-001-002 vhp-usb-001-004 vhp-usb-001-005" "$(usb_in_vm)"
expect_eq "nothing suspended any more" 0 "$(sql "SELECT count(*) FROM suspended")"

# ---- 6. The VM is down at resume: the devices are pending, reconcile attaches them later ----
ops suspend usb
vhp_stop_qemu gui
ops resume usb
expect_eq "resume with the VM down: exit 0, pending" \
        "attach pending gui-vm $U/1-1 id=vhp-usb-001-002 port=-1
attach pending gui-vm $U/1-4 id=vhp-usb-001-005 port=-1" "$(cut -d' ' -f1-6 "$VHP_TMP/ops.out")"
vhp_start_qemu gui "$VHP_TMP/gui.sock" || vhp_fail "QEMU restarted"
"$VHP_BUILD/vhotplug-reconcile" -c "$conf" --no-strict-perms >/dev/null 2>&1
expect_eq "reconcile puts the pending ones (and the skipOnSuspend one the restart lost) back" \
        "vhp-usb-001-002 vhp-usb-001-004 vhp-usb-001-005" "$(usb_in_vm)"

# ---- 7. A reboot ends a suspension: another boot's row does not keep a device out ----
ops suspend usb
sql "UPDATE suspended SET boot_id = 'an-earlier-boot'"
event add $U/1-1
expect_eq "a suspension of an earlier boot: the add attaches" "0 done" "$rc $(j .outcome)"
ops resume usb
expect_eq "resume forgets the earlier boot's suspensions" "0 0" "$rc $(sql "SELECT count(*) FROM suspended")"

# ---- 8. Refusals ----
ops suspend usb no-such-vm
expect_eq "suspend of an unknown VM: exit 1, named" "1 error: VM no-such-vm is not found in the config file" \
        "$rc $(cat "$VHP_TMP/ops.err")"

vhp_done
