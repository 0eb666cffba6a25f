#!/usr/bin/env bash
# Moving from the older daemon: its state file (general.statePath: the VM each user chose, the
# devices each user detached for good) is imported once into the stored choices by the first
# reconcile, recorded in history; a corrupt or hostile file is reported once and left alone.
. "$(dirname "$0")/../lib.sh"

vhp_run_in_testbed "$VHP_FIXTURES/usb-all.umockdev"

reconcile=$VHP_BUILD/vhotplug-reconcile
sql() { sqlite3 -batch -noheader -cmd '.timeout 10000' "$1" "$2"; }
expect_eq() { if [ "$2" = "$3" ]; then vhp_ok "$1"; else vhp_fail "$1" "expected: $2"$'\n'"got:      $3"; fi; }

# conf NAME: a configuration whose database and state file are NAME.db and NAME.state.
conf() {
        cat >"$VHP_TMP/$1.conf" <<EOF
{
  "usbPassthrough": [
    { "description": "webcams: the user picks", "allowedVms": [ "vm1", "vm2" ], "allow": [ { "vendorId": "04f2" } ] },
    { "targetVm": "vm1", "allow": [ { "vendorId": "046d" } ] }
  ],
  "vms": [ { "name": "vm1", "type": "qemu", "socket": "$VHP_TMP/vm1.sock" },
           { "name": "vm2", "type": "qemu", "socket": "$VHP_TMP/vm2.sock" } ],
  "general": { "database": "$VHP_TMP/$1.db", "lockDir": "$VHP_TMP/lock", "statePath": "$VHP_TMP/$1.state" }
}
EOF
}
run() { "$reconcile" -c "$VHP_TMP/$1.conf" --no-strict-perms >"$VHP_TMP/$1.out" 2>&1; rc=$?; }

# 1. A good file, as the older daemon wrote it (a serial-less device is "None"), with entries
#    this configuration cannot honour.
conf good
cat >"$VHP_TMP/good.state" <<'EOF'
{
  "selected_vms": {
    "usb-04f2:b751:0001": "vm2",
    "usb-046d:c52b:None": "vm2",
    "usb-dead:beef:1": "nosuch-vm",
    "usb-bad-key": "vm1"
  },
  "disconnected_devices": [ "usb-046d:c077:None", "pci-0000:00:14.3", 42 ]
}
EOF
run good
expect_eq "good file: reconcile exits 0" 0 "$rc"
vhp_check_output "good file: the import is logged with what was left out" \
        'imported 4 of 4 choices from .*good.state; left out: .*"usb-dead:beef:1": no such VM in the configuration; .*"usb-bad-key": not a device key.*disconnected_devices: \(not a string\): not a device key' cat "$VHP_TMP/good.out"
expect_eq "good file: the choices, in our keys (no serial: any port)" \
        "pci:0000:00:14.3||1|reconcile (import)
usb:046d:c077@*||1|reconcile (import)
usb:046d:c52b@*|vm2|0|reconcile (import)
usb:04f2:b751:0001|vm2|0|reconcile (import)" \
        "$(sql "$VHP_TMP/good.db" "SELECT device_key, coalesce(vm, ''), keep_detached, set_by FROM user_choices ORDER BY device_key")"
expect_eq "good file: one history row per choice" 4 \
        "$(sql "$VHP_TMP/good.db" "SELECT count(*) FROM history WHERE action = 'choice' AND outcome = 'recorded' AND detail LIKE '%imported from%'")"
# Once: a second run, even after the file changed and a choice was made here, imports nothing.
echo '{"selected_vms": {"usb-04f2:b751:0001": "vm1"}}' >"$VHP_TMP/good.state"
sql "$VHP_TMP/good.db" "UPDATE user_choices SET vm = 'vm1', set_by = 'admin' WHERE device_key = 'usb:046d:c52b@*'"
run good
vhp_check_lacks "second run: nothing imported again" 'imported' cat "$VHP_TMP/good.out"
expect_eq "second run: the stored choices stand" "vm2 vm1" \
        "$(sql "$VHP_TMP/good.db" "SELECT vm FROM user_choices WHERE device_key IN ('usb:04f2:b751:0001', 'usb:046d:c52b@*') ORDER BY device_key DESC" | tr '\n' ' ' | sed 's/ $//')"

# 2. A corrupt file: reported once, nothing stored, reconcile carries on.
conf corrupt
printf '{"selected_vms": {"usb-04f2:b751:0001": "vm2"' >"$VHP_TMP/corrupt.state"
run corrupt
expect_eq "corrupt file: reconcile exits 0" 0 "$rc"
vhp_check_output "corrupt file: reported" "older daemon's state file not imported: .*corrupt.state: not a JSON object" cat "$VHP_TMP/corrupt.out"
expect_eq "corrupt file: nothing stored" 0 "$(sql "$VHP_TMP/corrupt.db" "SELECT count(*) FROM user_choices")"
run corrupt
vhp_check_lacks "corrupt file: reported once" 'state file' cat "$VHP_TMP/corrupt.out"

# 3. Hostile files: too big, a link, wrong shapes, hostile strings.
conf big
head -c $((2 * 1024 * 1024)) /dev/zero | tr '\0' ' ' >"$VHP_TMP/big.state"
run big
vhp_check_output "2 MB file: refused by size" 'not imported: .*big.state: larger than 1048576 bytes' cat "$VHP_TMP/big.out"
conf link
ln -s /etc/passwd "$VHP_TMP/link.state"
run link
vhp_check_output "symlinked file: not followed" "not imported: .*link.state: Too many levels of symbolic links" cat "$VHP_TMP/link.out"
conf shape
echo '{"selected_vms": ["usb-04f2:b751:0001"], "disconnected_devices": {}}' >"$VHP_TMP/shape.state"
run shape
vhp_check_output "wrong shapes: reported" 'not imported: .*shape.state: selected_vms is not an object' cat "$VHP_TMP/shape.out"
conf deep
python3 -c 'print("[" * 100000 + "]" * 100000)' >"$VHP_TMP/deep.state" 2>/dev/null ||
        { printf '%*s' 100000 '' | tr ' ' '[' >"$VHP_TMP/deep.state"; }
run deep
expect_eq "100,000 levels deep: reconcile exits 0" 0 "$rc"
vhp_check_output "100,000 levels deep: reported as corrupt" 'not imported: .*deep.state: not a JSON object' cat "$VHP_TMP/deep.out"
conf evil
printf '{"selected_vms": {"usb-04f2:b751:x\\u0027); DROP TABLE history; --\\nforged": "vm2"}, "disconnected_devices": ["usb-04f2:b751:\\u001b[31m"]}' >"$VHP_TMP/evil.state"
run evil
expect_eq "hostile serials: stored verbatim, as data" "usb:04f2:b751:x'); DROP TABLE history; --
forged|vm2" "$(sql "$VHP_TMP/evil.db" "SELECT device_key || '|' || coalesce(vm, '') FROM user_choices WHERE vm IS NOT NULL")"
expect_eq "hostile serials: history intact" 2 "$(sql "$VHP_TMP/evil.db" "SELECT count(*) FROM history WHERE action = 'choice'")"
! grep -q '^forged' "$VHP_TMP/evil.out" && ! grep -q $'\e' "$VHP_TMP/evil.out" &&
        vhp_ok "hostile serials: the log stays one line each, no raw escape" || vhp_fail "hostile log" "$(cat -A "$VHP_TMP/evil.out")"
vhp_done
