#!/usr/bin/env bash
# make demo (the README's first command) runs to the end, shows the decisions, the attachments,
# the repair after a VM restart and the SQL history, and leaves nothing behind.
. "$(dirname "$0")/../lib.sh"

before=$(ls -d /tmp/vhotplug-demo.* 2>/dev/null | wc -l)
out=$VHP_TMP/demo.out
# A build directory of its own, as in a fresh clone: the demo must build all it uses.
make -C "$VHP_TOP" --no-print-directory -s BUILD="$VHP_TMP/build" demo >"$out" 2>&1
rc=$?
[ $rc = 0 ] && vhp_ok "make demo exits 0" || vhp_fail "make demo exits 0" "$(tail -20 "$out")"
grep -q 'usb 1-2 046d:c52b: ignore (denied by usbPassthrough\[0\] deny rule 0)' "$out" &&
        vhp_ok "demo shows a denied device and why" || vhp_fail "denied device line"
grep -q '^gui-vm now has: vhp-usb-001-007 vhp-usb-001-005 vhp-usb-001-008$' "$out" &&
        vhp_ok "demo attaches the claimed devices to QEMU" || vhp_fail "attach line" "$(grep 'now has' "$out")"
grep -q '^gui-vm after restart has: (none)$' "$out" && grep -q '^reattach gui-vm: usb 1-6 1050:0407 as vhp-usb-001-007' "$out" &&
        vhp_ok "demo shows reconcile re-attaching after the VM restart" || vhp_fail "reconcile after restart"
grep -q '^9 devices, 0 actions, 0 failed$' "$out" && vhp_ok "second reconcile run does nothing" ||
        vhp_fail "second reconcile run"
grep -q '│ gui-vm │ vhp-usb-001-008 │ 0b95:1790 │ AX88179 Gigabit Ethernet │ attached │' "$out" &&
        vhp_ok "demo prints current attachments from SQL" || vhp_fail "SQL attachments table"
after=$(ls -d /tmp/vhotplug-demo.* 2>/dev/null | wc -l)
[ "$after" = "$before" ] && vhp_ok "demo removed its temporary directory" || vhp_fail "demo left /tmp/vhotplug-demo.*"
pgrep -f 'vhotplug-demo' >/dev/null && vhp_fail "demo left processes" || vhp_ok "demo left no processes"
vhp_done
