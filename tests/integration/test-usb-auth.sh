#!/usr/bin/env bash
# USB authorization (usbAuthorization) in a umockdev testbed with a real QEMU: what reconcile and
# the helper write to each device's sysfs "authorized" and to the kernel's authorized_default, for
# a hub, a hostAllow match, a device attached to a VM, a claimed device whose attach fails, a
# device detached by the user's wish, and devices no one claims.
. "$(dirname "$0")/../lib.sh"

vhp_run_in_testbed "$VHP_FIXTURES/usb-all.umockdev"

helper=$VHP_BUILD/vhotplug-helper
reconcile=$VHP_BUILD/vhotplug-reconcile
qmp=$VHP_TOOLS/vhp-qmp
conf=$VHP_TMP/vhotplug.conf
db=$VHP_TMP/state.db
U=/devices/pci0000:00/0000:00:14.0
MOUSE=$U/usb1/1-1 UNIFYING=$U/usb1/1-2 HUB=$U/usb1/1-3 BT=$U/usb1/1-4 CAM=$U/usb1/1-5 YUBI=$U/usb1/1-6
NIC=$U/usb1/1-3/1-3.2 SERIAL=$U/usb1/1-3/1-3.4

cat >"$conf" <<EOF
{
  "usbAuthorization": { "enable": true, "deauthorizeUnmatched": true,
                        "hostAllow": [ { "vendorId": "046d", "productId": "c52b", "description": "the keyboard" } ] },
  "usbPassthrough": [
    { "targetVm": "vm1", "allow": [ { "vendorId": "046d", "productId": "c077" } ] },
    { "targetVm": "liar", "allow": [ { "vendorId": "04f2" } ] }
  ],
  "vms": [ { "name": "vm1", "type": "qemu", "socket": "$VHP_TMP/vm1.sock" },
           { "name": "liar", "type": "qemu", "socket": "$VHP_TMP/liar.sock" } ],
  "general": { "database": "$db", "lockDir": "$VHP_TMP/lock", "qmpTimeoutMs": 2000, "attachRetries": 2 }
}
EOF

# The kernel's switch (not part of the recording) and each device's "authorized" start at 1.
mkdir -p "$UMOCKDEV_DIR/sys/module/usbcore/parameters"
echo 1 >"$UMOCKDEV_DIR/sys/module/usbcore/parameters/authorized_default"
auth() { cat "/sys$1/authorized"; }
set_auth() { echo "$2" >"$UMOCKDEV_DIR/sys$1/authorized"; }
defaults() { echo "$(cat /sys/module/usbcore/parameters/authorized_default) $(cat /sys$U/usb1/authorized_default) $(cat /sys$U/usb2/authorized_default)"; }
all() { local p; for p in $MOUSE $UNIFYING $HUB $BT $CAM $YUBI $NIC $SERIAL; do printf '%s=%s ' "${p##*/}" "$(auth "$p")"; done; }
expect_eq() { if [ "$2" = "$3" ]; then vhp_ok "$1"; else vhp_fail "$1" "expected: $2"$'\n'"got:      $3"; fi; }
sql() { sqlite3 -batch -noheader -cmd '.timeout 10000' "$db" "$1"; }
event() { # ACTION DEVPATH SEQNUM
        local -a props
        mapfile -t props < <(vhp_uevent_props "$2")
        env "${props[@]}" ACTION="$1" DEVPATH="$2" SEQNUM="$3" "$helper" -c "$conf" --no-strict-perms --json \
                >"$VHP_TMP/out.json" 2>"$VHP_TMP/out.err"
        rc=$?
}
expect_eq "test setup: every device starts authorized" \
        "1-1=1 1-2=1 1-3=1 1-4=1 1-5=1 1-6=1 1-3.2=1 1-3.4=1 " "$(all)"

vhp_start_qemu vm1 "$VHP_TMP/vm1.sock" || { vhp_fail "QEMU did not start"; vhp_done; }
# A VM that answers garbage: every attach to it fails.
socat UNIX-LISTEN:"$VHP_TMP/liar.sock",fork SYSTEM:'echo "this is not QMP"; sleep 5' >/dev/null 2>&1 &
liar=$!
vhp_on_exit "kill $liar 2>/dev/null"
for _ in $(seq 50); do [ -S "$VHP_TMP/liar.sock" ] && break; sleep 0.1; done

# 1. A dry run plans the writes and makes none.
"$reconcile" -c "$conf" --no-strict-perms --dry-run >"$VHP_TMP/plan.out" 2>&1
vhp_check_output "dry run: the default switch is planned" '^auth-default host: usbcore and root hubs' cat "$VHP_TMP/plan.out"
vhp_check_output "dry run: the Bluetooth adapter no one claims is planned for deauthorization" \
        '^deauthorize host: usb 1-4 0bda:' cat "$VHP_TMP/plan.out"
expect_eq "dry run: nothing written" "1 1 1" "$(defaults)"
expect_eq "dry run: no device touched" "1-1=1 1-2=1 1-3=1 1-4=1 1-5=1 1-6=1 1-3.2=1 1-3.4=1 " "$(all)"

# 2. Reconcile: the kernel's default off; the hub and the hostAllow keyboard kept; the mouse
#    attached to vm1; the webcam, claimed for a VM that does not answer, taken away like the rest.
"$reconcile" -c "$conf" --no-strict-perms >"$VHP_TMP/rec.out" 2>&1
expect_eq "reconcile: usbcore's and both root hubs' authorized_default are 0" "0 0 0" "$(defaults)"
expect_eq "reconcile: hub, hostAllow and attached kept; claimed for a dead VM and unclaimed deauthorized" \
        "1-1=1 1-2=1 1-3=1 1-4=0 1-5=0 1-6=0 1-3.2=0 1-3.4=0 " "$(all)"
vhp_check_output "reconcile: the mouse is in vm1" 'vhp-usb-001-' "$qmp" "$VHP_TMP/vm1.sock" qom-list '{"path":"/machine/peripheral"}'
vhp_check_output "reconcile: the VM that does not answer is reported" '^vm-down +liar: ' cat "$VHP_TMP/rec.out"
"$reconcile" -c "$conf" --no-strict-perms >"$VHP_TMP/rec2.out" 2>&1
vhp_check_lacks "a second run writes nothing more" '^(auth-default|authorize|deauthorize) ' cat "$VHP_TMP/rec2.out"

# 3. The user keeps the mouse on the host: reconcile detaches it, and it is taken from the host
#    too (no hostAllow keeps it).
sql "INSERT INTO user_choices (device_key, vm, keep_detached) VALUES ('usb:046d:c077@1', NULL, 1)"
"$reconcile" -c "$conf" --no-strict-perms >"$VHP_TMP/rec3.out" 2>&1
vhp_check_output "kept detached: reconcile detaches the mouse" '^detach +vm1: usb 1-1' cat "$VHP_TMP/rec3.out"
expect_eq "detached: the mouse is deauthorized" 0 "$(auth $MOUSE)"
sql "DELETE FROM user_choices"

# 4. The helper, as udev hands it devices that appear (the kernel left them unauthorized).
for p in $HUB $UNIFYING $BT $MOUSE; do set_auth "$p" 0; done
event add $HUB 10
expect_eq "add of a hub: authorized" "0 1" "$rc $(auth $HUB)"
event add $UNIFYING 11
expect_eq "add of a hostAllow device: authorized for the host" "0 1" "$rc $(auth $UNIFYING)"
vhp_check_output "add of a hostAllow device: the reason names the rule" 'hostAllow\[0\]' jq -r .reason "$VHP_TMP/out.json"
event add $BT 12
expect_eq "add of a device no one claims: left unauthorized" "0 0" "$rc $(auth $BT)"
vhp_check_output "... and recorded with the reason" 'left unauthorized' \
        sql "SELECT reason FROM ignored WHERE devpath='$BT' ORDER BY last_seen DESC LIMIT 1"
event add $MOUSE 13
expect_eq "add of a claimed device: authorized just before its attach, attached" "0 1 done" \
        "$rc $(auth $MOUSE) $(jq -r .outcome "$VHP_TMP/out.json")"
set_auth $CAM 0
event add $CAM 14
expect_eq "add of a claimed device whose attach fails: exit 3, deauthorized again" "3 0 failed" \
        "$rc $(auth $CAM) $(jq -r .outcome "$VHP_TMP/out.json")"
vhp_check_output "... and the attach is recorded as failed" '^failed$' \
        sql "SELECT outcome FROM history WHERE devpath='$CAM' ORDER BY id DESC LIMIT 1"
expect_eq "the kernel's default untouched by the helper" "0 0 0" "$(defaults)"
vhp_done
