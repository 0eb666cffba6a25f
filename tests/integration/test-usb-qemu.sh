#!/usr/bin/env bash
# USB hotplug end to end: vhotplug-helper driven the way udev's hand-off drives it (the event in the
# environment), a real QEMU started inside the same umockdev testbed, a real SQLite database.
# Checked through QMP (qom-list/qom-get) and SQL.
. "$(dirname "$0")/../lib.sh"

if [ -z "${UMOCKDEV_DIR:-}" ]; then
        "$VHP_TOP/tests/tools/gen-usb-fixture.sh" 24 >"$VHP_TMP/many.umockdev"
        vhp_run_in_testbed "$VHP_TMP/many.umockdev" "$VHP_TOP/tests/data/umockdev/usb-hostile-strings-bus9.umockdev"
fi

helper=$VHP_BUILD/vhotplug-helper
qmp=$VHP_TOOLS/vhp-qmp
db=$VHP_TMP/state.db
conf=$VHP_TMP/vhotplug.conf
U=/devices/pci0000:00/0000:00:14.0

cat >"$conf" <<EOF
{
  "usbPassthrough": [
    { "description": "Mice for the GUI VM", "targetVm": "gui-vm",
      "allow": [ { "vendorId": "1209", "description": "test mice" } ],
      "deny": [ { "serial": "SN0022", "description": "reserved for the net VM" },
                { "serial": "SN0023", "description": "reserved for the down VM" },
                { "serial": "SN0024", "description": "reserved for the mute VM" } ] },
    { "targetVm": "net-vm", "allow": [ { "serial": "SN0022" } ] },
    { "targetVm": "down-vm", "allow": [ { "serial": "SN0023" } ] },
    { "targetVm": "mute-vm", "allow": [ { "serial": "SN0024" } ] },
    { "targetVm": "gui-vm", "allow": [ { "vendorName": "Evil" } ] }
  ],
  "vms": [
    { "name": "gui-vm", "type": "qemu", "socket": "$VHP_TMP/gui.sock" },
    { "name": "net-vm", "type": "crosvm", "socket": "$VHP_TMP/net.sock" },
    { "name": "down-vm", "type": "qemu", "socket": "$VHP_TMP/down.sock" },
    { "name": "mute-vm", "type": "qemu", "socket": "$VHP_TMP/mute.sock" }
  ],
  "general": { "database": "$db", "lockDir": "$VHP_TMP/lock", "crosvm": "$VHP_TOP/tests/tools/crosvm-standin",
               "qmpTimeoutMs": 4000, "attachRetries": 3 }
}
EOF

# event ACTION DEVPATH SEQNUM [extra KEY=VALUE...]: runs the helper as udev's hand-off would, with
# the device's udev properties in the environment. Output in $OUT (default $VHP_TMP/out.json; give
# each of concurrent events its own) and $VHP_TMP/out.err, status in $rc.
seq=100
event() {
        local action=$1 devpath=$2 s=$3
        shift 3
        local -a props
        mapfile -t props < <(vhp_uevent_props "$devpath")
        env "${props[@]}" ACTION="$action" DEVPATH="$devpath" SEQNUM="$s" "$@" \
                "$helper" -c "$conf" --no-strict-perms --json >"${OUT:-$VHP_TMP/out.json}" 2>"$VHP_TMP/out.err"
        rc=$?
}
j() { jq -r "$1" "${OUT:-$VHP_TMP/out.json}" 2>/dev/null; }
sql() { sqlite3 -batch -noheader -cmd '.timeout 10000' "$db" "$1"; }
peripherals() { # SOCKET; fails when QEMU cannot be asked
        local out
        out=$("$qmp" "$1" qom-list '{"path":"/machine/peripheral"}') || { echo "$out"; return 1; }
        jq -r '.[] | select(.type=="child<usb-host>") | .name' <<<"$out" | sort
}

vhp_start_qemu gui "$VHP_TMP/gui.sock" -device qemu-xhci,id=xhci2,p2=15,p3=15 || { vhp_fail "QEMU did not start"; vhp_done; }

# 1. Attach: shows up in QEMU with the right hostbus/hostaddr, and in the database.
event add $U/usb1/1-1 101
[ $rc = 0 ] && [ "$(j .outcome)" = done ] && [ "$(j .id)" = vhp-usb-001-002 ] &&
        vhp_ok "add: helper attached 1-1 as vhp-usb-001-002" || vhp_fail "add" "rc=$rc $(cat "$VHP_TMP/out.json" "$VHP_TMP/out.err")"
vhp_check_output "qom-list shows the usb-host device" '^vhp-usb-001-002$' peripherals "$VHP_TMP/gui.sock"
vhp_check_output "hostbus is 1" '^1$' "$qmp" "$VHP_TMP/gui.sock" qom-get '{"path":"/machine/peripheral/vhp-usb-001-002","property":"hostbus"}'
vhp_check_output "hostaddr is 2" '^2$' "$qmp" "$VHP_TMP/gui.sock" qom-get '{"path":"/machine/peripheral/vhp-usb-001-002","property":"hostaddr"}'
vhp_check_output "current_attachments has the row" '^gui-vm\|vhp-usb-001-002\|1209\|0001\|SN0001$' \
        sql "SELECT vm, vmm_id, vendor_id, product_id, serial FROM current_attachments WHERE devpath='$U/usb1/1-1'"
grep -qF 'usb 1-1 1209:0001: attach -> gui-vm as vhp-usb-001-002 [done]' "$VHP_TMP/out.err" &&
        vhp_ok "log line names device and VM" || vhp_fail "log line" "$(cat "$VHP_TMP/out.err")"

# 2. Replayed add (udevadm trigger): nothing sent, nothing new in history.
before=$(sql "SELECT count(*) FROM history")
event add $U/usb1/1-1 102
[ $rc = 0 ] && [ "$(j .outcome)" = already ] && vhp_ok "replayed add is a no-op" || vhp_fail "replayed add" "$(cat "$VHP_TMP/out.json")"
[ "$(sql "SELECT count(*) FROM history")" = "$before" ] && vhp_ok "replay wrote no history" || vhp_fail "replay wrote history"
[ "$(peripherals "$VHP_TMP/gui.sock" | grep -c vhp-usb-001-002)" = 1 ] && vhp_ok "still one device in QEMU" || vhp_fail "device count after replay"

# 2b. The VM lost the device behind the record's back (a restart): a new add asks the VM instead of
#     trusting the record, closes the stale record and attaches again.
"$qmp" "$VHP_TMP/gui.sock" device_del '{"id":"vhp-usb-001-002"}' >/dev/null
for _ in $(seq 100); do peripherals "$VHP_TMP/gui.sock" | grep -q vhp-usb-001-002 || break; sleep 0.05; done
event add $U/usb1/1-1 103
[ $rc = 0 ] && [ "$(j .outcome)" = done ] && vhp_ok "add after the VM lost it: attached again" ||
        vhp_fail "add after the VM lost it" "rc=$rc $(cat "$VHP_TMP/out.json" "$VHP_TMP/out.err")"
vhp_check_output "QEMU has it again" '^vhp-usb-001-002$' peripherals "$VHP_TMP/gui.sock"
hist=$(sql "SELECT action || ' ' || outcome || ' ' || coalesce(detail, '') FROM
        (SELECT * FROM history WHERE devpath='$U/usb1/1-1' ORDER BY id DESC LIMIT 4) ORDER BY id" | paste -sd/)
want="detach detaching the VM no longer has it (restarted?)/detach detached /attach started /attach attached "
[ "$hist" = "$want" ] && vhp_ok "history: the stale record closed, then a new attach" ||
        vhp_fail "history after the VM lost it" "expected: $want"$'\n'"got:      $hist"

# 3. Remove: deleted from QEMU (DEVICE_DELETED awaited), record closed.
vhp_unplug $U/usb1/1-1
event remove $U/usb1/1-1 104
[ $rc = 0 ] && [ "$(j .action)" = detach ] && [ "$(j .outcome)" = done ] && vhp_ok "remove: detached" ||
        vhp_fail "remove" "rc=$rc $(cat "$VHP_TMP/out.json" "$VHP_TMP/out.err")"
vhp_check_lacks "QEMU no longer has it" vhp-usb-001-002 peripherals "$VHP_TMP/gui.sock"
vhp_check_output "record closed as detached" '^detached\|1$' \
        sql "SELECT state, closed_at IS NOT NULL FROM attachments WHERE devpath='$U/usb1/1-1' ORDER BY id DESC LIMIT 1"

# 4. Out of order: the remove (SEQNUM 201) is handled before the stale add (SEQNUM 200).
event remove $U/usb1/1-2 201
event add $U/usb1/1-2 200
[ "$(j .outcome)" = stale ] && vhp_ok "stale add after a newer remove is dropped" || vhp_fail "stale add" "$(cat "$VHP_TMP/out.json")"
vhp_check_lacks "device stays detached" vhp-usb-001-003 peripherals "$VHP_TMP/gui.sock"

# 5. VM not running: recorded as pending, exit 0; reconcile attaches once the VM is up.
event add $U/usb1/1-23 301
[ $rc = 0 ] && [ "$(j .outcome)" = pending ] && vhp_ok "VM down: pending, exit 0" || vhp_fail "VM down" "rc=$rc $(cat "$VHP_TMP/out.json")"
vhp_check_output "pending row recorded" '^pending\|down-vm$' sql "SELECT state, vm FROM current_attachments WHERE serial='SN0023'"
vhp_start_qemu down "$VHP_TMP/down.sock" || vhp_fail "second QEMU did not start"
"$VHP_BUILD/vhotplug-reconcile" -c "$conf" --no-strict-perms --vm down-vm >"$VHP_TMP/rec.out" 2>&1
vhp_check_output "reconcile attaches the pending device once the VM is up" '^vhp-usb-001-024$' peripherals "$VHP_TMP/down.sock"
vhp_check_output "pending row now attached" '^attached$' sql "SELECT state FROM current_attachments WHERE serial='SN0023'"
vhp_stop_qemu down

# 6. A socket that accepts and never greets: bounded time, deferred as not running, recorded.
socat UNIX-LISTEN:"$VHP_TMP/mute.sock",fork EXEC:'sleep 30' >/dev/null 2>&1 &
mute=$!
vhp_on_exit "kill $mute 2>/dev/null"
for _ in $(seq 50); do [ -S "$VHP_TMP/mute.sock" ] && break; sleep 0.1; done
start=$(date +%s%N)
event add $U/usb1/1-24 401
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ $rc = 0 ] && [ "$(j .outcome)" = pending ] && [ $ms -lt 15000 ] && vhp_ok "silent VM: gave up after ${ms} ms, pending" ||
        vhp_fail "silent VM" "rc=$rc ms=$ms $(cat "$VHP_TMP/out.json")"
vhp_check_output "silent VM recorded with a clear error" 'greeting|not running' \
        sql "SELECT error FROM history WHERE devpath='$U/usb1/1-24' ORDER BY id DESC LIMIT 1"
kill $mute 2>/dev/null; wait $mute 2>/dev/null
rm -f "$VHP_TMP/mute.sock"
# ... and one that answers garbage: refused with a clear error, exit 3, recorded as failed.
socat UNIX-LISTEN:"$VHP_TMP/mute.sock",fork SYSTEM:'echo "this is not QMP"; sleep 5' >/dev/null 2>&1 &
mute=$!
vhp_on_exit "kill $mute 2>/dev/null"
for _ in $(seq 50); do [ -S "$VHP_TMP/mute.sock" ] && break; sleep 0.1; done
event add $U/usb1/1-24 402
[ $rc = 3 ] && [ "$(j .outcome)" = failed ] && vhp_ok "garbage from the VM: exit 3, failed" ||
        vhp_fail "garbage VM" "rc=$rc $(cat "$VHP_TMP/out.json")"
vhp_check_output "garbage recorded as a failed attempt with its error" '^failed\|.+' \
        sql "SELECT outcome, error FROM history WHERE devpath='$U/usb1/1-24' ORDER BY id DESC LIMIT 1"
kill $mute 2>/dev/null; wait $mute 2>/dev/null

# 6b. A VM whose error text holds a newline (a forged log line), a control character and bytes that
#     are not UTF-8: every output keeps it data — one log line, one summary line, valid UTF-8 JSON.
cat >"$VHP_TMP/liar-qmp" <<'EOS'
#!/usr/bin/env bash
# Requests come without separators: a message ends where its braces balance (none in strings here).
printf '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}\r\n'
depth=0 req=
while IFS= read -r -N1 c; do
        req+=$c
        case $c in
        '{') depth=$((depth + 1)) ;;
        '}') depth=$((depth - 1)) ;;
        esac
        [ "$c" = '}' ] && [ $depth = 0 ] || continue
        id=$(jq -c .id <<<"$req")
        if [ "$(jq -r .execute <<<"$req")" = device_add ]; then
                printf '{"error": {"class": "GenericError", "desc": "refused\\nvhotplug-helper: usb 1-24 1209:0018 -> mute-vm: attached as forged\\u0007 \xff\xfe end"}, "id": %s}\r\n' "$id"
        else
                printf '{"return": {}, "id": %s}\r\n' "$id"
        fi
        req=
done
EOS
chmod +x "$VHP_TMP/liar-qmp"
rm -f "$VHP_TMP/mute.sock"
socat UNIX-LISTEN:"$VHP_TMP/mute.sock",fork EXEC:"$VHP_TMP/liar-qmp" >/dev/null 2>&1 &
liar=$!
vhp_on_exit "kill $liar 2>/dev/null"
for _ in $(seq 50); do [ -S "$VHP_TMP/mute.sock" ] && break; sleep 0.1; done
event add $U/usb1/1-24 403
[ $rc = 3 ] && [ "$(j .outcome)" = failed ] && vhp_ok "lying VM: refused, exit 3" || vhp_fail "lying VM" "rc=$rc $(cat "$VHP_TMP/out.json")"
iconv -f UTF-8 -t UTF-8 "$VHP_TMP/out.json" >/dev/null 2>&1 && [ "$(wc -l <"$VHP_TMP/out.json")" = 1 ] &&
        vhp_ok "--json: one line of valid UTF-8" || vhp_fail "--json not valid UTF-8" "$(od -c "$VHP_TMP/out.json" | head)"
vhp_check "--json: the text kept as data, bad bytes as U+FFFD" \
        jq -e '.error | contains("refused\nvhotplug-helper: usb 1-24") and contains("forged\u0007 \ufffd\ufffd end")' "$VHP_TMP/out.json"
[ "$(wc -l <"$VHP_TMP/out.err")" = 1 ] && grep -qF 'refused\x0avhotplug-helper: usb 1-24' "$VHP_TMP/out.err" &&
        grep -qF 'forged\x07 \xff\xfe end' "$VHP_TMP/out.err" && vhp_ok "log: one line, newline and bad bytes escaped" ||
        vhp_fail "log line forged" "$(cat -A "$VHP_TMP/out.err")"
mapfile -t props < <(vhp_uevent_props $U/usb1/1-24)
vhp_tty env "${props[@]}" ACTION=add DEVPATH=$U/usb1/1-24 SEQNUM=404 "$helper" -c "$conf" --no-strict-perms \
        >"$VHP_TMP/sum.out" 2>/dev/null
[ "$(wc -l <"$VHP_TMP/sum.out")" = 1 ] && grep -qF '[failed]' "$VHP_TMP/sum.out" && iconv -f UTF-8 -t UTF-8 "$VHP_TMP/sum.out" >/dev/null &&
        vhp_ok "summary: one line of valid UTF-8" || vhp_fail "summary forged" "$(cat -A "$VHP_TMP/sum.out")"
kill $liar 2>/dev/null; wait $liar 2>/dev/null

# 7. 20 helpers at once for 20 devices: all attached, no database error, history complete.
pids=()
for i in $(seq 3 21); do
        ( OUT=$VHP_TMP/out-$i.json; event add $U/usb1/1-$i $((500 + i)); echo "$rc $(j .outcome)" >"$VHP_TMP/burst-$i" ) &
        pids+=($!)
done
( OUT=$VHP_TMP/out-2.json; event add $U/usb1/1-2 600; echo "$rc $(j .outcome)" >"$VHP_TMP/burst-2" ) &
pids+=($!)
wait "${pids[@]}"
bad=$(cat "$VHP_TMP"/burst-* | grep -vc '^0 done$')
[ "$bad" = 0 ] && vhp_ok "20 concurrent helpers: all exit 0, all done" || vhp_fail "burst" "$(cat "$VHP_TMP"/burst-*)"
count_usb() { peripherals "$1" | wc -l; }
vhp_check_output "QEMU has all 20" '^20$' count_usb "$VHP_TMP/gui.sock"
vhp_check_output "20 attached rows" '^20$' sql "SELECT count(*) FROM current_attachments WHERE vm='gui-vm' AND state='attached'"
vhp_check_output "history complete: 20 attach starts and 20 successes" '^20\|20$' \
        sql "SELECT sum(outcome='started'), sum(outcome='attached') FROM history WHERE time > (SELECT time FROM history WHERE devpath='$U/usb1/1-24' ORDER BY id DESC LIMIT 1) AND action='attach'"

# 8. crosvm (stand-in, see tests/tools/crosvm-standin): attach records the port, detach by port.
: >"$VHP_TMP/net.sock"
event add $U/usb1/1-22 701
[ $rc = 0 ] && [ "$(j .outcome)" = done ] && [ "$(j .port)" = 1 ] && vhp_ok "crosvm attach: port 1" ||
        vhp_fail "crosvm attach" "rc=$rc $(cat "$VHP_TMP/out.json" "$VHP_TMP/out.err")"
vhp_check_output "crosvm list shows it" '^devices 1 1209 0016' "$VHP_TOP/tests/tools/crosvm-standin" usb list "$VHP_TMP/net.sock"
vhp_check_output "port recorded" '^1$' sql "SELECT crosvm_port FROM current_attachments WHERE vm='net-vm'"
vhp_unplug $U/usb1/1-22
event remove $U/usb1/1-22 702
[ $rc = 0 ] && [ "$(j .outcome)" = done ] && vhp_ok "crosvm detach" || vhp_fail "crosvm detach" "$(cat "$VHP_TMP/out.json")"
vhp_check_output "crosvm list empty" '^devices$' "$VHP_TOP/tests/tools/crosvm-standin" usb list "$VHP_TMP/net.sock"

# 9. Hostile device strings stored and shown verbatim.
event add /devices/pci0000:00/0000:00:0d.0/usb9/9-1 801
[ $rc = 0 ] && [ "$(j .outcome)" = done ] && vhp_ok "hostile device attached" || vhp_fail "hostile attach" "$(cat "$VHP_TMP/out.json" "$VHP_TMP/out.err")"
[ "$(sql "SELECT vendor_name FROM attachments WHERE devpath='/devices/pci0000:00/0000:00:0d.0/usb9/9-1'")" = 'Evil "Corp" back\slash	tab' ] &&
        vhp_ok "vendor name stored verbatim" || vhp_fail "vendor name" "$(sql "SELECT vendor_name FROM attachments WHERE devpath='/devices/pci0000:00/0000:00:0d.0/usb9/9-1'")"
[ "$(sql "SELECT product_name FROM attachments WHERE devpath='/devices/pci0000:00/0000:00:0d.0/usb9/9-1'")" = "Mouse '); DROP TABLE attachments;-- {\"a\":[1]} <x>" ] &&
        vhp_ok "SQL/JSON metacharacters stored verbatim" || vhp_fail "product name"
vhp_check_output "tables intact" '^attachments$' sql "SELECT name FROM sqlite_master WHERE name='attachments'"

vhp_done
