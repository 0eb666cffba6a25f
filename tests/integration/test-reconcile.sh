#!/usr/bin/env bash
# vhotplug-reconcile end to end: fake USB devices in a umockdev testbed, two real QEMUs started inside
# it, a real SQLite database. Every case is checked through QMP (qom-list/qom-get) and SQL.
#
# Devices (tests/tools/gen-usb-fixture.sh 12): 1-N has serial SN00NN, devnum N+1, so QEMU id
# vhp-usb-001-<N+1>. Rules: vm1 claims 1-1..1-6, 1-11, 1-12; vm2 claims 1-7..1-9; 1-10 is unclaimed.
. "$(dirname "$0")/../lib.sh"

if [ -z "${UMOCKDEV_DIR:-}" ]; then
        "$VHP_TOP/tests/tools/gen-usb-fixture.sh" 12 >"$VHP_TMP/usb12.umockdev"
        vhp_run_in_testbed "$VHP_TMP/usb12.umockdev"
fi

helper=$VHP_BUILD/vhotplug-helper
reconcile=$VHP_BUILD/vhotplug-reconcile
qmp=$VHP_TOOLS/vhp-qmp
db=$VHP_TMP/state.db
conf=$VHP_TMP/vhotplug.conf
lockdir=$VHP_TMP/lock
U=/devices/pci0000:00/0000:00:14.0/usb1

serials() { local s out=; for s in "$@"; do out+="${out:+, }{ \"serial\": \"SN00$s\" }"; done; echo "$out"; }
cat >"$conf" <<EOF
{
  "usbPassthrough": [
    { "description": "mice of vm1", "targetVm": "vm1", "allow": [ $(serials 01 02 03 04 05 06 11 12) ] },
    { "description": "mice of vm2", "targetVm": "vm2", "allow": [ $(serials 07 08 09) ] }
  ],
  "vms": [
    { "name": "vm1", "type": "qemu", "socket": "$VHP_TMP/vm1.sock" },
    { "name": "vm2", "type": "qemu", "socket": "$VHP_TMP/vm2.sock" }
  ],
  "general": { "database": "$db", "lockDir": "$lockdir", "qmpTimeoutMs": 3000, "attachRetries": 3 }
}
EOF

VM1_IDS="vhp-usb-001-002 vhp-usb-001-003 vhp-usb-001-004 vhp-usb-001-005 vhp-usb-001-006 vhp-usb-001-007 vhp-usb-001-013"
VM2_IDS="vhp-usb-001-008 vhp-usb-001-009 vhp-usb-001-010"
lines() { tr ' ' '\n' <<<"$*" | sort; }

# rec [ARGS...]: runs reconcile with --json; output in $VHP_TMP/rec.json, log in rec.err, status $rc.
rec() {
        "$reconcile" -c "$conf" --no-strict-perms --json "$@" >"$VHP_TMP/rec.json" 2>"$VHP_TMP/rec.err"
        rc=$?
}
j() { jq -r "$1" "$VHP_TMP/rec.json" 2>/dev/null; }
# ops: "op vm devpath-tail result" per action, sorted (foreign: the id instead of the devpath).
ops() { j '.actions[] | "\(.op) \(.vm) \(.devpath // .id // "-" | sub(".*/"; "")) \(.result)"' | sort; }
recout() { echo "rc=$rc"; cat "$VHP_TMP/rec.json" "$VHP_TMP/rec.err"; }
sql() { sqlite3 -batch -noheader -cmd '.timeout 10000' "$db" "$1"; }
# peripherals SOCK: every QEMU device with an id of type usb-host, sorted.
peripherals() { # SOCKET; fails when QEMU cannot be asked
        local out
        out=$("$qmp" "$1" qom-list '{"path":"/machine/peripheral"}') || { echo "$out"; return 1; }
        jq -r '.[] | select(.type=="child<usb-host>") | .name' <<<"$out" | sort
}
ours() { peripherals "$1" | grep '^vhp-'; }
# opens SOCKNAME: how many usb-host opens this QEMU instance logged (trace usb_host_open_started).
opens() { grep -c usb_host_open_started "$VHP_TMP/qemu-$1.log"; }
start_vm() { vhp_start_qemu "$1" "$VHP_TMP/$1.sock" -device qemu-xhci,id=xhci2,p2=15,p3=15 -trace usb_host_open_started; }

# ---- 1. Cold boot, VMs not running yet: reported and skipped, exit 0, nothing recorded.
rec
[ $rc = 0 ] && [ "$(ops)" = $'vm-down vm1 - planned\nvm-down vm2 - planned' ] &&
        vhp_ok "VMs not running: both reported vm-down, exit 0" || vhp_fail "VMs down" "$(recout)"
vhp_check_output "nothing recorded while the VMs are down" '^0$' sql "SELECT count(*) FROM attachments"
# The text summary counts what it does, and says which VMs it could not serve.
vhp_check_output "summary: no actions, 2 VMs not running" '^[0-9]+ devices, 0 actions planned \(dry run\), 0 failed, 2 VMs not running$' \
        "$reconcile" -c "$conf" --no-strict-perms --dry-run

# The user keeps 1-11 detached (key: usb:VID:PID:SERIAL, see dev_key in lib/device.c).
sql "INSERT INTO user_choices (device_key, keep_detached) VALUES ('usb:1209:000b:SN0011', 1)"

start_vm vm1 || { vhp_fail "QEMU vm1 did not start"; vhp_done; }
start_vm vm2 || { vhp_fail "QEMU vm2 did not start"; vhp_done; }

# ---- 2. --dry-run with everything to do: plan printed, QEMU and database untouched.
dump_all() { sql .dump; echo ---; peripherals "$VHP_TMP/vm1.sock"; echo ---; peripherals "$VHP_TMP/vm2.sock"; }
before=$(dump_all)
rec --dry-run
after=$(dump_all)
[ $rc = 0 ] && [ "$(j .dryRun)" = true ] && [ "$(j '[.actions[] | select(.op=="attach" and .result=="planned")] | length')" = 10 ] &&
        [ "$(j '.actions | length')" = 10 ] && vhp_ok "dry run plans 10 attaches" || vhp_fail "dry run plan" "$(recout)"
[ "$before" = "$after" ] && vhp_ok "dry run: qom-list and sqlite3 .dump identical before and after" ||
        vhp_fail "dry run changed something" "$(diff <(echo "$before") <(echo "$after"))"
[ -z "$(peripherals "$VHP_TMP/vm1.sock")" ] && vhp_ok "dry run: vm1 has no devices" || vhp_fail "dry run attached"

# ---- 3. Cold boot, VMs up: one run attaches all the rules claim, nothing else.
rec
[ $rc = 0 ] && [ "$(j '[.actions[] | select(.op=="attach" and .result=="done")] | length')" = 10 ] &&
        [ "$(j '.actions | length')" = 10 ] && vhp_ok "cold boot: 10 attaches done, exit 0" || vhp_fail "cold boot" "$(recout)"
[ "$(peripherals "$VHP_TMP/vm1.sock")" = "$(lines $VM1_IDS)" ] && vhp_ok "vm1 has exactly its 7 devices" ||
        vhp_fail "vm1 devices" "$(peripherals "$VHP_TMP/vm1.sock")"
[ "$(peripherals "$VHP_TMP/vm2.sock")" = "$(lines $VM2_IDS)" ] && vhp_ok "vm2 has exactly its 3 devices" ||
        vhp_fail "vm2 devices" "$(peripherals "$VHP_TMP/vm2.sock")"
vhp_check_output "qom-get: vhp-usb-001-013 is hostbus 1" '^1$' "$qmp" "$VHP_TMP/vm1.sock" qom-get \
        '{"path":"/machine/peripheral/vhp-usb-001-013","property":"hostbus"}'
vhp_check_output "qom-get: vhp-usb-001-013 is hostaddr 13" '^13$' "$qmp" "$VHP_TMP/vm1.sock" qom-get \
        '{"path":"/machine/peripheral/vhp-usb-001-013","property":"hostaddr"}'
vhp_check_output "SQL: 10 attached rows with the right VM and id" \
        '^vm1\|7\|vhp-usb-001-002,vhp-usb-001-003,vhp-usb-001-004,vhp-usb-001-005,vhp-usb-001-006,vhp-usb-001-007,vhp-usb-001-013 vm2\|3\|vhp-usb-001-008,vhp-usb-001-009,vhp-usb-001-010 $' \
        bash -c "sqlite3 -batch -cmd '.timeout 10000' '$db' \"SELECT vm, count(*), group_concat(vmm_id) FROM (SELECT * FROM current_attachments WHERE state='attached' ORDER BY vmm_id) GROUP BY vm ORDER BY vm\" | tr '\n' ' '"
[ "$(opens vm1)" -ge 7 ] && vhp_ok "QEMU traces its usb-host opens (used below to spot device_adds)" ||
        vhp_fail "no usb_host_open_started trace in the QEMU log" "$(cat "$VHP_TMP/qemu-vm1.log")"
vhp_check_output "unclaimed 1-10 and kept-detached 1-11 are not recorded" '^0$' \
        sql "SELECT count(*) FROM attachments WHERE serial IN ('SN0010', 'SN0011')"

# ---- 4. A second run right after does nothing.
hist=$(sql "SELECT count(*) FROM history")
rec
[ $rc = 0 ] && [ "$(j '.actions | length')" = 0 ] && vhp_ok "second run: no actions, exit 0" || vhp_fail "second run" "$(recout)"
[ "$(sql "SELECT count(*) FROM history")" = "$hist" ] && vhp_ok "second run wrote no history" || vhp_fail "second run wrote history"

# ---- 5. A device attached by hand is reported and left alone.
"$qmp" "$VHP_TMP/vm1.sock" device_add '{"driver":"usb-host","hostbus":1,"hostaddr":11,"id":"manual1"}' >/dev/null
peripherals "$VHP_TMP/vm1.sock" | grep -qx manual1 && vhp_ok "manual1 attached by hand" || vhp_fail "manual device_add"
rec
[ $rc = 0 ] && [ "$(ops)" = "foreign vm1 manual1 planned" ] && vhp_ok "foreign device reported (op foreign), nothing else" ||
        vhp_fail "foreign report" "$(recout)"
peripherals "$VHP_TMP/vm1.sock" | grep -qx manual1 && vhp_ok "manual1 still in vm1" || vhp_fail "manual1 was removed"
vhp_check_output "no record for manual1 or 1-10" '^0$' \
        sql "SELECT count(*) FROM attachments WHERE vmm_id='manual1' OR devpath='$U/1-10'"

# ---- 6. Keep detached: 1-11 stays out across runs.
vhp_check_lacks "kept-detached 1-11 not in vm1" '^vhp-usb-001-012$' peripherals "$VHP_TMP/vm1.sock"
vhp_check_lacks "kept-detached 1-11 not in the plan" '1-11' cat "$VHP_TMP/rec.json"

# ---- 7. A killed helper left an 'attaching' row; reconcile resolves it.
# The user releases 1-11; a helper records its intent and blocks on the VM lock (held here), then
# is killed before it talks to QEMU.
sql "DELETE FROM user_choices WHERE device_key='usb:1209:000b:SN0011'"
mkdir -p "$lockdir"
flock -o "$lockdir/vm-vm1.lock" sleep 60 &
holder=$!
vhp_on_exit "kill $holder \$(pgrep -P $holder) 2>/dev/null"
for _ in $(seq 100); do [ -n "$(pgrep -P $holder)" ] && break; sleep 0.05; done
mapfile -t props < <(vhp_uevent_props "$U/1-11")
env "${props[@]}" ACTION=add DEVPATH="$U/1-11" SEQNUM=900 "$helper" -c "$conf" --no-strict-perms >"$VHP_TMP/helper.out" 2>&1 &
hpid=$!
for _ in $(seq 200); do
        [ "$(sql "SELECT state FROM current_attachments WHERE devpath='$U/1-11'")" = attaching ] && break
        sleep 0.05
done
kill -9 $hpid; wait $hpid 2>/dev/null
kill $holder $(pgrep -P $holder) 2>/dev/null; wait $holder 2>/dev/null
vhp_check_output "killed helper left an 'attaching' row" '^attaching$' \
        sql "SELECT state FROM current_attachments WHERE devpath='$U/1-11'"
# ... and a helper killed after QEMU took the device but before it recorded that.
sql "UPDATE attachments SET state='attaching', attached_at=NULL WHERE devpath='$U/1-12' AND state='attached'"
o1=$(opens vm1)
rec
[ $rc = 0 ] && [ "$(ops | grep -v ^foreign)" = $'adopt vm1 1-12 done\nattach vm1 1-11 done' ] &&
        vhp_ok "unfinished attaches resolved: 1-11 attached, 1-12 adopted" || vhp_fail "unfinished attaches" "$(recout)"
peripherals "$VHP_TMP/vm1.sock" | grep -qx vhp-usb-001-012 && vhp_ok "vm1 now has 1-11" || vhp_fail "1-11 not in vm1"
[ "$(opens vm1)" = $((o1 + 1)) ] && vhp_ok "QEMU opened exactly one device (1-11), not 1-12 again" ||
        vhp_fail "usb-host opens" "before $o1, after $(opens vm1)"
vhp_check_output "1-11: old row closed, new row attached" '^failed\|1 attached\|0 $' \
        bash -c "sqlite3 -batch -cmd '.timeout 10000' '$db' \"SELECT state, closed_at IS NOT NULL FROM attachments WHERE devpath='$U/1-11' ORDER BY id\" | tr '\n' ' '"
vhp_check_output "1-12: one open row, attached" '^attached$' sql "SELECT group_concat(state) FROM current_attachments WHERE devpath='$U/1-12'"

# ---- 8. Device unplugged with no helper run: detached from the VM, record closed.
vhp_unplug "$U/1-6"
rec
[ $rc = 0 ] && [ "$(ops | grep -v ^foreign)" = "detach vm1 1-6 done" ] && vhp_ok "unplugged 1-6: detached" || vhp_fail "unplug" "$(recout)"
vhp_check_lacks "vm1 no longer has 1-6" '^vhp-usb-001-007$' peripherals "$VHP_TMP/vm1.sock"
vhp_check_output "1-6 record closed as detached, reason recorded" '^detached\|1\|device gone from the host$' \
        sql "SELECT a.state, a.closed_at IS NOT NULL, (SELECT detail FROM history WHERE attachment_id=a.id AND outcome='detaching') FROM attachments a WHERE devpath='$U/1-6'"
VM1_IDS="vhp-usb-001-002 vhp-usb-001-003 vhp-usb-001-004 vhp-usb-001-005 vhp-usb-001-006 vhp-usb-001-012 vhp-usb-001-013"

# ---- 9. Both QEMUs killed and restarted on the same sockets; --vm vm2 repairs only vm2.
for vm in vm1 vm2; do
        kill -9 "$(vhp_qemu_pid $vm)"
        vhp_stop_qemu $vm 2>/dev/null # reaps it (quietly: bash reports the SIGKILL)
        start_vm $vm || { vhp_fail "QEMU $vm did not restart"; vhp_done; }
done
[ -z "$(peripherals "$VHP_TMP/vm1.sock")$(peripherals "$VHP_TMP/vm2.sock")" ] && vhp_ok "restarted QEMUs have no devices" ||
        vhp_fail "restarted QEMUs have devices"
vm1rows=$(sql "SELECT * FROM attachments WHERE vm='vm1' ORDER BY id")
rec --vm vm2
[ $rc = 0 ] && [ "$(ops)" = $'reattach vm2 1-7 done\nreattach vm2 1-8 done\nreattach vm2 1-9 done' ] &&
        vhp_ok "--vm vm2: reattached vm2's 3 devices, nothing else" || vhp_fail "--vm vm2" "$(recout)"
[ "$(peripherals "$VHP_TMP/vm2.sock")" = "$(lines $VM2_IDS)" ] && vhp_ok "vm2 has its 3 devices again" ||
        vhp_fail "vm2 after --vm vm2" "$(peripherals "$VHP_TMP/vm2.sock")"
[ -z "$(peripherals "$VHP_TMP/vm1.sock")" ] && vhp_ok "--vm vm2 left vm1 alone (QMP)" || vhp_fail "vm1 touched by --vm vm2"
[ "$(sql "SELECT * FROM attachments WHERE vm='vm1' ORDER BY id")" = "$vm1rows" ] && vhp_ok "--vm vm2 left vm1's rows alone (SQL)" ||
        vhp_fail "vm1 rows changed by --vm vm2"
rec
[ $rc = 0 ] && [ "$(ops | grep -c '^reattach vm1 .* done$')" = 7 ] && [ "$(j '.actions | length')" = 7 ] &&
        vhp_ok "full run: vm1's 7 devices reattached" || vhp_fail "reattach vm1" "$(recout)"
[ "$(peripherals "$VHP_TMP/vm1.sock")" = "$(lines $VM1_IDS)" ] && vhp_ok "vm1 has its 7 devices again" ||
        vhp_fail "vm1 after reattach" "$(peripherals "$VHP_TMP/vm1.sock")"
vhp_check_output "every open row attached; each reattached device has its old row closed by the restart" '^10\|10\|10$' \
        sql "SELECT (SELECT count(*) FROM current_attachments WHERE state='attached'),
                    (SELECT count(*) FROM current_attachments),
                    (SELECT count(DISTINCT a.devpath) FROM attachments a JOIN history h ON h.attachment_id=a.id
                     WHERE a.state='detached' AND h.detail='the VM no longer has it'
                       AND a.devpath IN (SELECT devpath FROM current_attachments))"

# ---- 10. Database deleted: rebuilt from the VMs, nothing sent to QEMU.
q1=$(peripherals "$VHP_TMP/vm1.sock") q2=$(peripherals "$VHP_TMP/vm2.sock") o1=$(opens vm1) o2=$(opens vm2)
rm -f "$db" "$db-wal" "$db-shm"
rec
[ $rc = 0 ] && [ "$(j '[.actions[] | select(.op=="adopt" and .result=="done")] | length')" = 10 ] &&
        [ "$(j '.actions | length')" = 10 ] && vhp_ok "database lost: 10 devices adopted" || vhp_fail "adopt" "$(recout)"
[ "$(peripherals "$VHP_TMP/vm1.sock")" = "$q1" ] && [ "$(peripherals "$VHP_TMP/vm2.sock")" = "$q2" ] &&
        vhp_ok "adopt: qom-list unchanged" || vhp_fail "adopt changed QEMU"
[ "$(opens vm1) $(opens vm2)" = "$o1 $o2" ] && vhp_ok "adopt: QEMU opened no device again (no device_add)" ||
        vhp_fail "adopt re-attached" "before $o1 $o2, after $(opens vm1) $(opens vm2)"
vhp_check_output "adopt: 10 attached rows, history says adopted by reconcile" '^10\|10$' \
        sql "SELECT (SELECT count(*) FROM current_attachments WHERE state='attached'),
                    (SELECT count(*) FROM history WHERE outcome='attached' AND 'adopted by reconcile' IN (detail, error))"
rec
[ $rc = 0 ] && [ "$(j '.actions | length')" = 0 ] && vhp_ok "after adoption: nothing to do" || vhp_fail "after adoption" "$(recout)"

# ---- 11. Database lost while a device was unplugged: our id in the VM, no record, no device: removed.
vhp_unplug "$U/1-5"
rm -f "$db" "$db-wal" "$db-shm"
rec
[ $rc = 0 ] && [ "$(ops | grep -v ^adopt)" = "remove vm1 vhp-usb-001-006 done" ] && [ "$(ops | grep -c '^adopt .* done$')" = 9 ] &&
        vhp_ok "orphan vhp-usb-001-006 removed (op remove), the other 9 adopted" || vhp_fail "remove orphan" "$(recout)"
vhp_check_lacks "vm1 no longer has vhp-usb-001-006" '^vhp-usb-001-006$' peripherals "$VHP_TMP/vm1.sock"
vhp_check_output "9 attached rows, none for 1-5" '^9\|0$' \
        sql "SELECT count(*), sum(devpath='$U/1-5') FROM current_attachments WHERE state='attached'"

vhp_done
