#!/usr/bin/env bash
# Faults: 200 helpers at once, a corrupted database, a helper killed between recording its intent
# and the VM's reply, locks that cannot be had. Nothing may crash, no history row may be lost, and
# what is printed must say what happened.
. "$(dirname "$0")/../lib.sh"

if [ -z "${UMOCKDEV_DIR:-}" ]; then
        "$VHP_TOP/tests/tools/gen-usb-fixture.sh" 200 >"$VHP_TMP/many.umockdev"
        vhp_run_in_testbed "$VHP_TMP/many.umockdev"
fi

helper=$VHP_BUILD/vhotplug-helper
reconcile=$VHP_BUILD/vhotplug-reconcile
conf=$VHP_TMP/vhotplug.conf
db=$VHP_TMP/state.db
C=/devices/pci0000:00/0000:00:14.0
cat >"$conf" <<EOF
{
  "usbPassthrough": [
    { "targetVm": "vm1", "allow": [ { "vendorId": "1209", "bus": 1, "port": 1 } ] },
    { "targetVm": "down-vm", "allow": [ { "vendorId": "1209" } ] }
  ],
  "vms": [ { "name": "vm1", "type": "qemu", "socket": "$VHP_TMP/vm1.sock" },
           { "name": "down-vm", "type": "qemu", "socket": "$VHP_TMP/down.sock" } ],
  "general": { "database": "$db", "lockDir": "$VHP_TMP/lock", "qmpTimeoutMs": 2000 }
}
EOF
devpath() { echo "$C/usb$((1 + $1 / 100))/$((1 + $1 / 100))-$((1 + $1 % 100))"; }
event() { # ACTION INDEX SEQNUM
        local p
        local -a props
        p=$(devpath "$2")
        mapfile -t props < <(vhp_uevent_props "$p")
        env "${props[@]}" ACTION="$1" DEVPATH="$p" SEQNUM="$3" "$helper" -c "$conf" --no-strict-perms
}
sql() { sqlite3 -batch -noheader -cmd '.timeout 10000' "$db" "$1"; }

# 1. 200 helpers at once (the VM is down: each records a pending attachment).
for i in $(seq 0 199); do
        ( event add "$i" $((1000 + i)) >/dev/null 2>"$VHP_TMP/err-$i"; echo $? >"$VHP_TMP/rc-$i" ) &
done
wait
bad=$(cat "$VHP_TMP"/rc-* | grep -vc '^0$')
[ "$bad" = 0 ] && vhp_ok "200 concurrent helpers all exit 0" ||
        vhp_fail "200 helpers: $bad failed" "$(cat "$VHP_TMP"/err-* | sort | uniq -c | head -5)"
vhp_check_output "200 pending attachments recorded" '^200$' sql "SELECT count(*) FROM current_attachments WHERE state='pending'"
vhp_check_output "no history row lost (200 started + 200 pending)" '^200\|200$' \
        sql "SELECT sum(outcome='started'), sum(outcome='pending') FROM history"
if cat "$VHP_TMP"/err-* | grep -qiE 'database|locked|busy'; then
        vhp_fail "database errors in helper output" "$(cat "$VHP_TMP"/err-* | grep -iE 'database|locked|busy' | head -3)"
else
        vhp_ok "no database errors"
fi

# 2. A corrupted database: moved aside, a new one created, the event handled; reconcile too.
head -c 8192 /dev/urandom >"$db"
rm -f "$db-wal" "$db-shm"
event add 150 5000 >"$VHP_TMP/corrupt.out" 2>&1
rc=$?
[ $rc = 0 ] && vhp_ok "helper survives a corrupted database" ||
        vhp_fail "helper on a corrupted database (rc=$rc)" "$(cat "$VHP_TMP/corrupt.out")"
ls "$db".corrupt-* >/dev/null 2>&1 && vhp_ok "corrupted file moved aside" || vhp_fail "no $db.corrupt-* file"
grep -q 'corrupt' "$VHP_TMP/corrupt.out" && vhp_ok "the move is logged" ||
        vhp_fail "no log line about the corrupted database" "$(cat "$VHP_TMP/corrupt.out")"
vhp_check_output "the new database has the event" '^1$' sql "SELECT count(*) FROM current_attachments"
printf 'SQLite format 3\0garbage garbage garbage' >"$db"
"$reconcile" -c "$conf" --no-strict-perms >"$VHP_TMP/rcorrupt.out" 2>&1
rc=$?
[ $rc = 0 ] && vhp_ok "reconcile rebuilds after a corrupted database" ||
        vhp_fail "reconcile on a corrupted database (rc=$rc)" "$(cat "$VHP_TMP/rcorrupt.out")"
[ "$(ls -d "$db".corrupt-* | wc -l)" = 2 ] && vhp_ok "second corrupted file moved aside too" ||
        vhp_fail "corrupt files: $(ls "$db".corrupt-*)"

# 3. A helper killed between recording its intent and the VM's reply: someone else holds the VM
#    lock, the helper waits with its 'attaching' row recorded, and is killed.
vhp_start_qemu vm1 "$VHP_TMP/vm1.sock" || vhp_fail "QEMU did not start"
mkdir -p "$VHP_TMP/lock"
exec 9>"$VHP_TMP/lock/vm-vm1.lock"
flock 9
event add 0 6000 >/dev/null 2>&1 &
hp=$!
for _ in $(seq 100); do
        [ "$(sql "SELECT state FROM current_attachments WHERE devpath='$(devpath 0)'")" = attaching ] && break
        sleep 0.1
done
kill -9 $hp
wait $hp 2>/dev/null
flock -u 9
exec 9>&-
vhp_check_output "killed helper left an 'attaching' row" '^attaching$' \
        sql "SELECT state FROM current_attachments WHERE devpath='$(devpath 0)'"
"$reconcile" -c "$conf" --no-strict-perms --vm vm1 >"$VHP_TMP/rkill.out" 2>&1
vhp_check_output "reconcile resolves it: attached" '^attached\|vhp-usb-001-002$' \
        sql "SELECT state, vmm_id FROM current_attachments WHERE devpath='$(devpath 0)'"
vhp_check_output "QEMU has the device" 'vhp-usb-001-002' \
        "$VHP_TOOLS/vhp-qmp" "$VHP_TMP/vm1.sock" qom-list '{"path":"/machine/peripheral"}'

# 4. A device lock that cannot be had (the lock directory is a file): an internal error (exit 1),
#    and the summary (on a terminal) says the attach failed and why, not "ignore".
sed "s|\"lockDir\": \"[^\"]*\"|\"lockDir\": \"$VHP_TMP/not-a-dir\"|" "$conf" >"$VHP_TMP/badlock.conf"
: >"$VHP_TMP/not-a-dir"
p=$(devpath 1)
mapfile -t props < <(vhp_uevent_props "$p")
vhp_tty env "${props[@]}" ACTION=add DEVPATH="$p" SEQNUM=7000 "$helper" -c "$VHP_TMP/badlock.conf" --no-strict-perms \
        >"$VHP_TMP/dlock.out" 2>"$VHP_TMP/dlock.err"
rc=$?
[ $rc = 1 ] && vhp_ok "device lock failure: exit 1" || vhp_fail "device lock failure: exit $rc"
vhp_check_output "device lock failure: the summary says attach failed, with the reason" \
        '^usb 1-2 1209:[0-9a-f]{4}: attach -> down-vm \[failed\] .*cannot lock device: Not a directory$' cat "$VHP_TMP/dlock.out"
grep -q 'ignore' "$VHP_TMP/dlock.out" && vhp_fail "device lock failure printed as ignore" "$(cat "$VHP_TMP/dlock.out")" ||
        vhp_ok "device lock failure: not printed as ignore"

# 5. A VM lock that cannot be had (its lock file is a directory): recorded as failed with the
#    reason, exit 1, and the summary says failed.
rm -f "$VHP_TMP/lock/vm-vm1.lock"
mkdir "$VHP_TMP/lock/vm-vm1.lock"
p=$(devpath 100)
sed 's|"bus": 1, "port": 1|"bus": 2, "port": 1|' "$conf" >"$VHP_TMP/vmlock.conf"
mapfile -t props < <(vhp_uevent_props "$p")
vhp_tty env "${props[@]}" ACTION=add DEVPATH="$p" SEQNUM=7001 "$helper" -c "$VHP_TMP/vmlock.conf" --no-strict-perms \
        >"$VHP_TMP/vlock.out" 2>"$VHP_TMP/vlock.err"
rc=$?
[ $rc = 1 ] && vhp_ok "VM lock failure: exit 1" || vhp_fail "VM lock failure: exit $rc" "$(cat "$VHP_TMP/vlock.out" "$VHP_TMP/vlock.err")"
vhp_check_output "VM lock failure: the summary says failed" '-> vm1 as vhp-usb-002-002 \[failed\] .*cannot lock VM vm1' cat "$VHP_TMP/vlock.out"
vhp_check_output "VM lock failure: recorded as failed, with the reason" '^failed\|cannot lock VM vm1: ' \
        sql "SELECT outcome || '|' || error FROM history WHERE devpath='$p' ORDER BY id DESC LIMIT 1"
vhp_check_output "VM lock failure: no open attachment left" '^0$' sql "SELECT count(*) FROM current_attachments WHERE devpath='$p'"
rmdir "$VHP_TMP/lock/vm-vm1.lock"

# 6. A database another user could write (it would steer this root program): refused by name,
#    exit 1; --no-strict-perms accepts it. A database path that is a symlink: refused, the link's
#    target untouched. (Root only: the checks need chown and a root-owned configuration.)
if [ "$(id -u)" = 0 ]; then
        p=$(devpath 2)
        mapfile -t props < <(vhp_uevent_props "$p")
        chown 65534:65534 "$db"
        env "${props[@]}" ACTION=add DEVPATH="$p" SEQNUM=7100 "$helper" -c "$conf" >"$VHP_TMP/own.out" 2>&1
        rc=$?
        [ $rc = 1 ] && grep -q "cannot open state database $db: the database or its directory is not root's alone" \
                "$VHP_TMP/own.out" && vhp_ok "database owned by another user: refused, exit 1" ||
                vhp_fail "database owned by another user (rc=$rc)" "$(cat "$VHP_TMP/own.out")"
        env "${props[@]}" ACTION=add DEVPATH="$p" SEQNUM=7101 "$helper" -c "$conf" --no-strict-perms >/dev/null 2>&1 &&
                vhp_ok "--no-strict-perms accepts it" || vhp_fail "--no-strict-perms with a foreign database"
        chown 0:0 "$db"
        : >"$VHP_TMP/victim"
        sed "s|\"database\": \"[^\"]*\"|\"database\": \"$VHP_TMP/link.db\"|" "$conf" >"$VHP_TMP/link.conf"
        ln -s "$VHP_TMP/victim" "$VHP_TMP/link.db"
        env "${props[@]}" ACTION=add DEVPATH="$p" SEQNUM=7102 "$helper" -c "$VHP_TMP/link.conf" --no-strict-perms \
                >"$VHP_TMP/link.out" 2>&1
        rc=$?
        [ $rc = 1 ] && grep -q 'the database path is a symbolic link' "$VHP_TMP/link.out" && [ ! -s "$VHP_TMP/victim" ] &&
                [ ! -e "$VHP_TMP/link.db-wal" ] && vhp_ok "database path a symlink: refused, its target untouched" ||
                vhp_fail "symlinked database (rc=$rc)" "$(cat "$VHP_TMP/link.out"; ls -l "$VHP_TMP")"
else
        vhp_skip "database ownership checks" "needs root (chown, a root-owned configuration); optional"
fi
vhp_done
