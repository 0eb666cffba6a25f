#!/usr/bin/env bash
# make demo (the README's first command) runs to the end, shows the decisions, the attachments,
# the repair after a VM restart and the SQL history, and leaves nothing behind; make demo KEEP=1
# keeps its database, on which the README's SQL examples run.
. "$(dirname "$0")/../lib.sh"

# A temporary directory of its own (other test runs may run demos at the same time).
export TMPDIR=$VHP_TMP/tmp
mkdir -p "$TMPDIR"
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
[ -z "$(ls -A "$TMPDIR")" ] && vhp_ok "demo removed its temporary directory" ||
        vhp_fail "demo left $(ls "$TMPDIR") in \$TMPDIR"
if ! command -v pgrep >/dev/null; then
        vhp_fail "demo left no processes" "pgrep missing (procps: scripts/setup-deps.sh installs it)"
elif pgrep -f "$TMPDIR/vhotplug-demo" >/dev/null; then
        vhp_fail "demo left no processes" "$(pgrep -af "$TMPDIR/vhotplug-demo")"
else
        vhp_ok "demo left no processes"
fi

# make demo KEEP=1: the database stays, its path and a sqlite3 command line are printed.
out=$VHP_TMP/keep.out
make -C "$VHP_TOP" --no-print-directory -s BUILD="$VHP_TMP/build" demo KEEP=1 >"$out" 2>&1
rc=$?
kept=$(sed -n "s/^The demo's database is kept: //p" "$out")
[ -n "$kept" ] && [ "${kept#"$TMPDIR"/vhotplug-demo.}" != "$kept" ] && vhp_on_exit "rm -rf '${kept%/*}'"
[ $rc = 0 ] && [ -n "$kept" ] && [ -s "$kept" ] && vhp_ok "make demo KEEP=1 keeps the database and prints its path" ||
        vhp_fail "make demo KEEP=1 keeps the database" "rc=$rc kept='$kept' $(tail -8 "$out")"
[ -n "$kept" ] && [ "$(ls "${kept%/*}")" = state.db ] && vhp_ok "KEEP=1 keeps only the database" ||
        vhp_fail "KEEP=1 keeps only the database" "$(ls -la "${kept%/*}" 2>&1)"
cmd=$(sed -n 's/^  \(sqlite3 .*\)$/\1/p' "$out")
n=$(printf '.mode list\nSELECT count(*) FROM current_attachments;\n' | bash -c "$cmd" 2>&1)
[ -n "$cmd" ] && [ "$n" = 2 ] && vhp_ok "the printed command line ($cmd) opens it: 2 devices attached" ||
        vhp_fail "printed sqlite3 command line" "cmd='$cmd' answered: $n"
# The README's SQL examples (tests/unit/test-db.c test_readme_queries, here on the demo's rows, in a
# copy since some of them write): they run, the current attachments are gui-vm's, and the README's
# webcam key is the key vhotplug builds for the demo's webcam.
if [ -x "$VHP_TOOLS/test-db" ] && [ -n "$kept" ] && sqlite3 "$kept" ".backup '$VHP_TMP/readme.db'"; then
        vhp_check_output "README's SQL examples run on the kept demo database" '^\[  PASSED  \] 1 test' \
                env VHP_README_DB="$VHP_TMP/readme.db" TEST_FILTER=test_readme_queries "$VHP_TOOLS/test-db"
else
        vhp_fail "README's SQL examples on the kept demo database" "needs $VHP_TOOLS/test-db (make tests) and the kept database"
fi
vhp_done
