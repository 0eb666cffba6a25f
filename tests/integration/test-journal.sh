#!/usr/bin/env bash
# Journal-native logging: vhotplug-helper run as systemd runs it ($INVOCATION_ID, or
# $JOURNAL_STREAM naming its stderr) sends one structured record per event to the journal socket
# with a priority, a MESSAGE_ID and the event's fields; nothing goes to stdout or stderr. The
# journal is a stand-in (tests/tools/vhp-journal-sink.c) bound at libsystemd's fixed path,
# /run/systemd/journal/socket, inside a private mount namespace whose /run/systemd/journal is an
# empty tmpfs: the machine's journal (if any) sees nothing. Devices: a umockdev testbed; the VM: a
# crosvm stand-in (attach, detach, refusal when it has no free port). Needs root (unshare -m).
. "$(dirname "$0")/../lib.sh"

if [ -z "${UMOCKDEV_DIR:-}" ]; then
        "$VHP_TOP/tests/tools/gen-usb-fixture.sh" 4 >"$VHP_TMP/four.umockdev"
        vhp_run_in_testbed "$VHP_TMP/four.umockdev" "$VHP_TOP/tests/data/umockdev/usb-hostile-strings-bus9.umockdev"
fi

helper=$VHP_BUILD/vhotplug-helper
sink=$VHP_TOOLS/vhp-journal-sink
conf=$VHP_TMP/vhotplug.conf
U=/devices/pci0000:00/0000:00:14.0/usb1
EVIL=/devices/pci0000:00/0000:00:0d.0/usb9/9-1
unset INVOCATION_ID JOURNAL_STREAM

for t in "$helper" "$sink"; do
        [ -x "$t" ] || { vhp_fail "$t is built (make tests)"; vhp_done; }
done
if [ "$(id -u)" != 0 ] || ! unshare -m --propagation private true 2>/dev/null; then
        vhp_fail "a private mount namespace for the journal stand-in (needs root: unshare -m)"
        vhp_done
fi

touch "$VHP_TMP/net.sock"
cat >"$conf" <<EOF
{
  "usbPassthrough": [
    { "targetVm": "net-vm", "description": "serial adapters",
      "allow": [ { "serial": "SN0001" }, { "serial": "SN0002" }, { "vendorName": "Evil" },
                 { "serial": "SN0004" } ] }
  ],
  "vms": [ { "name": "net-vm", "type": "crosvm", "socket": "$VHP_TMP/net.sock" } ],
  "general": { "database": "$VHP_TMP/state.db", "lockDir": "$VHP_TMP/lock",
               "crosvm": "$VHP_TOP/tests/tools/crosvm-standin" }
}
EOF

# in_ns COMMAND...: runs COMMAND in a private mount namespace whose /run/systemd/journal is an empty
# tmpfs (the deepest of /run/systemd/journal, /run/systemd, /run that exists is covered).
in_ns() {
        unshare -m --propagation private bash -c '
                for d in /run/systemd/journal /run/systemd /run; do [ -d "$d" ] && break; done
                mount -t tmpfs -o mode=0755 none "$d" && mkdir -p /run/systemd/journal && exec "$@"' bash "$@"
}
# event NAME ACTION DEVPATH SEQNUM [VAR=VALUE...] [-- HELPER-OPTIONS...]: the helper as systemd
# runs it, with udev's properties in its environment, under the journal stand-in. Records in
# $VHP_TMP/NAME.journal, stdout and stderr in NAME.out and NAME.err, status in $rc.
event() {
        local name=$1 action=$2 devpath=$3 seq=$4 opts=()
        shift 4
        local -a props env=()
        while [ $# -gt 0 ] && [ "$1" != -- ]; do env+=("$1"); shift; done
        [ "${1:-}" = -- ] && { shift; opts=("$@"); }
        mapfile -t props < <(vhp_uevent_props "$devpath")
        in_ns "$sink" /run/systemd/journal/socket "$VHP_TMP/$name.journal" -- \
                env "${props[@]}" ACTION="$action" DEVPATH="$devpath" SEQNUM="$seq" "${env[@]}" \
                "$helper" -c "$conf" --no-strict-perms "${opts[@]}" >"$VHP_TMP/$name.out" 2>"$VHP_TMP/$name.err"
        rc=$?
}
records() { awk 'BEGIN { RS = "" } END { print NR }' "$VHP_TMP/$1.journal"; }
event_records() { awk 'BEGIN { RS = "" } /(^|\n)VHOTPLUG_ACTION=/ { n++ } END { print n + 0 }' "$VHP_TMP/$1.journal"; }
field() { sed -n "s/^$2=//p" "$VHP_TMP/$1.journal"; }
# expect NAME FIELD=VALUE...: the one record of event NAME has every FIELD=VALUE line.
expect() {
        local name=$1 miss=() kv
        shift
        for kv in "$@"; do grep -qxF -- "$kv" "$VHP_TMP/$name.journal" || miss+=("$kv"); done
        if [ ${#miss[@]} -eq 0 ]; then
                vhp_ok "$name: record has ${*%%=*}"
        else
                vhp_fail "$name: record has ${*%%=*}" "missing: ${miss[*]}"$'\n'"$(cat "$VHP_TMP/$name.journal")"
        fi
}
one_record() { # NAME: exactly one record, stdout and stderr empty
        if [ "$(records "$1")" = 1 ] && [ ! -s "$VHP_TMP/$1.out" ] && [ ! -s "$VHP_TMP/$1.err" ]; then
                vhp_ok "$1: one journal record, nothing on stdout or stderr"
        else
                vhp_fail "$1: one journal record, nothing on stdout or stderr" \
                        "records: $(records "$1"), rc=$rc"$'\n'"$(cat "$VHP_TMP/$1.journal" "$VHP_TMP/$1.out" "$VHP_TMP/$1.err")"
        fi
}

# 1. Attach, under $INVOCATION_ID (stderr a file).
event attach add $U/1-1 101 INVOCATION_ID=0123456789abcdef0123456789abcdef
[ "$rc" = 0 ] && vhp_ok "attach: exit 0" || vhp_fail "attach: exit 0" "rc=$rc $(cat "$VHP_TMP/attach.err")"
one_record attach
expect attach PRIORITY=6 MESSAGE_ID=e60188ef211a4909ba07d2d17dba5b75 SYSLOG_IDENTIFIER=vhotplug-helper \
        DEVPATH=$U/1-1 SEQNUM=101 VHOTPLUG_ACTION=attach VHOTPLUG_VM=net-vm VHOTPLUG_KIND=usb \
        'VHOTPLUG_RULE=usbPassthrough[0].allow[0]' VHOTPLUG_OUTCOME=done VHOTPLUG_EVENT=add
vhp_check_lacks "attach (one helper per event): no OBJECT_PID" '^OBJECT_PID=' cat "$VHP_TMP/attach.journal"
vhp_check_output "attach: MESSAGE is the summary line (VM, id, outcome, reason)" \
        '^usb 1-1 1209:0001: attach -> net-vm as port 1 \[done\] \(allowed by ' field attach MESSAGE

# 2. Detach, under $JOURNAL_STREAM naming the helper's stderr (dev:ino of the file it writes).
: >"$VHP_TMP/detach.err"
js=$(stat -c '%d:%i' "$VHP_TMP/detach.err")
vhp_unplug $U/1-1
event detach remove $U/1-1 102 JOURNAL_STREAM="$js"
[ "$rc" = 0 ] && vhp_ok "detach: exit 0" || vhp_fail "detach: exit 0" "rc=$rc $(cat "$VHP_TMP/detach.err")"
one_record detach
expect detach PRIORITY=6 MESSAGE_ID=b5e3b5c7b1d14b82bc529392bb83d0f2 DEVPATH=$U/1-1 SEQNUM=102 \
        VHOTPLUG_ACTION=detach VHOTPLUG_VM=net-vm VHOTPLUG_KIND=usb VHOTPLUG_OUTCOME=done VHOTPLUG_EVENT=remove

# A JOURNAL_STREAM that names another file is not the journal: stderr, as before.
event notjournal add $U/1-3 103 JOURNAL_STREAM=1:1 -- --debug
if [ "$(records notjournal)" = 0 ] && grep -q '^vhotplug-helper: .*ignore' "$VHP_TMP/notjournal.err"; then
        vhp_ok "JOURNAL_STREAM of another file: the record goes to stderr"
else
        vhp_fail "JOURNAL_STREAM of another file: the record goes to stderr" "$(cat "$VHP_TMP"/notjournal.*)"
fi

# 3. Refusal: the VM has no free port.
event refused add $U/1-2 104 INVOCATION_ID=1 CROSVM_STANDIN_PORTS=0
[ "$rc" = 3 ] && vhp_ok "refused: exit 3" || vhp_fail "refused: exit 3" "rc=$rc $(cat "$VHP_TMP/refused.err")"
one_record refused
expect refused PRIORITY=3 MESSAGE_ID=72bd8d8c001640b48b1c5f6b6fea3b37 DEVPATH=$U/1-2 SEQNUM=104 \
        VHOTPLUG_ACTION=attach VHOTPLUG_VM=net-vm VHOTPLUG_KIND=usb 'VHOTPLUG_RULE=usbPassthrough[0].allow[1]' \
        VHOTPLUG_OUTCOME=failed
vhp_check_output "refused: VHOTPLUG_ERROR says why" 'no_available_port|no available port' field refused VHOTPLUG_ERROR

# 4. Ignore: no rule claims 1-3; an info record (with --debug, among debug records), and the same
# one without.
event ignore add $U/1-3 105 INVOCATION_ID=1 -- --debug
if [ "$(event_records ignore)" = 1 ] && [ ! -s "$VHP_TMP/ignore.out" ] && [ ! -s "$VHP_TMP/ignore.err" ]; then
        vhp_ok "ignore: one event record, nothing on stdout or stderr"
else
        vhp_fail "ignore: one event record, nothing on stdout or stderr" "$(cat "$VHP_TMP"/ignore.*)"
fi
awk 'BEGIN { RS = ""; ORS = "\n\n" } /(^|\n)VHOTPLUG_ACTION=/' "$VHP_TMP/ignore.journal" >"$VHP_TMP/ignore1.journal"
expect ignore1 PRIORITY=6 MESSAGE_ID=1a6a14166c194981815e38040eae920d DEVPATH=$U/1-3 SEQNUM=105 \
        VHOTPLUG_ACTION=ignore VHOTPLUG_KIND=usb
vhp_check_lacks "ignore: no VM and no rule fields" '^VHOTPLUG_(VM|RULE)=' cat "$VHP_TMP/ignore1.journal"
event quiet add $U/1-3 106 INVOCATION_ID=1
one_record quiet
expect quiet PRIORITY=6 MESSAGE_ID=1a6a14166c194981815e38040eae920d SEQNUM=106

# 5. Untrusted words: a crosvm that lies, its error with a newline, a forged log line and an escape
# sequence, for the hostile device (quotes, a tab and a backslash in its strings). MESSAGE is one
# safe line as sent ("MESSAGE=", not "MESSAGE~="); still one record.
printf '#!/bin/sh\nprintf %s\nexit 1\n' "'error refused\\nvhotplug-helper: forged record\\033[31m red\\n'" \
        >"$VHP_TMP/liar-crosvm"
chmod +x "$VHP_TMP/liar-crosvm"
sed "s|\"crosvm\": \"[^\"]*\"|\"crosvm\": \"$VHP_TMP/liar-crosvm\"|" "$conf" >"$VHP_TMP/liar.conf"
conf=$VHP_TMP/liar.conf event liar add $EVIL 107 INVOCATION_ID=1
one_record liar
expect liar PRIORITY=3 MESSAGE_ID=72bd8d8c001640b48b1c5f6b6fea3b37 'VHOTPLUG_RULE=usbPassthrough[0].allow[2]'
vhp_check_output "untrusted words: MESSAGE sent as one safe line, with the VM's words" \
        '^MESSAGE=.*refused.*forged record' cat "$VHP_TMP/liar.journal"
vhp_check_lacks "untrusted words: no MESSAGE needing escapes" '^MESSAGE~=' cat "$VHP_TMP/liar.journal"
# A DEVPATH from the environment with a newline and a field of its own: the error names it escaped.
in_ns "$sink" /run/systemd/journal/socket "$VHP_TMP/forged.journal" -- env INVOCATION_ID=1 ACTION=add \
        DEVPATH=$'/devices/x\nMESSAGE_ID=e60188ef211a4909ba07d2d17dba5b75\nMESSAGE=forged' SEQNUM=109 \
        "$helper" -c "$conf" --no-strict-perms >"$VHP_TMP/forged.out" 2>"$VHP_TMP/forged.err"
one_record forged
expect forged PRIORITY=3
vhp_check_lacks "a forged DEVPATH: no field of its own, MESSAGE escaped" '^(MESSAGE=forged|MESSAGE_ID|MESSAGE~=)' \
        cat "$VHP_TMP/forged.journal"

# 6. journald not there (the tmpfs is empty): the record goes to stderr.
in_ns env INVOCATION_ID=1 "$helper" -c "$conf" --no-strict-perms --debug add $U/1-3 \
        >"$VHP_TMP/nojournal.out" 2>"$VHP_TMP/nojournal.err"
vhp_check_output "no journald: the record goes to stderr" '^vhotplug-helper: .*ignore' cat "$VHP_TMP/nojournal.err"

# 8. The production path: vhotplug-event hands the event to vhotplug-helper --service (run by
# systemd: $INVOCATION_ID), whose child for the event sends the record.
if [ -x "$VHP_BUILD/vhotplug-event" ]; then
        mapfile -t props < <(vhp_uevent_props $U/1-2)
        printf '%q ' env INVOCATION_ID=1 "$helper" --service --socket "$VHP_TMP/svc.sock" --idle-exit 1 -c "$conf" \
                --no-strict-perms >"$VHP_TMP/svc.sh"
        printf '& pid=$!\nfor _ in $(seq 200); do [ -S %q ] && break; sleep 0.05; done\n' "$VHP_TMP/svc.sock" >>"$VHP_TMP/svc.sh"
        printf '%q ' env -i "${props[@]}" ACTION=add DEVPATH=$U/1-2 SEQNUM=110 "$VHP_BUILD/vhotplug-event" \
                --socket "$VHP_TMP/svc.sock" >>"$VHP_TMP/svc.sh"
        printf '\nwait $pid\n' >>"$VHP_TMP/svc.sh"
        in_ns "$sink" /run/systemd/journal/socket "$VHP_TMP/service.journal" -- bash "$VHP_TMP/svc.sh" \
                >"$VHP_TMP/service.out" 2>"$VHP_TMP/service.err"
        rc=$?
        one_record service
        expect service PRIORITY=6 MESSAGE_ID=e60188ef211a4909ba07d2d17dba5b75 DEVPATH=$U/1-2 SEQNUM=110 \
                VHOTPLUG_ACTION=attach VHOTPLUG_VM=net-vm VHOTPLUG_OUTCOME=done
        # The child exits at once: OBJECT_PID names the service, so journalctl -u finds the record
        # even when journald sees the child gone (check-system shows it with a real journald).
        vhp_check_output "service: the record names the service process (OBJECT_PID)" '^OBJECT_PID=[0-9]+$' \
                cat "$VHP_TMP/service.journal"
else
        vhp_fail "vhotplug-event is built (make all)"
fi

# 9. vhotplug-reconcile under systemd: 1-2 (attached by 8) left the host with no event; the repair
# is a record with the helper's fields, the reconcile action and the detach MESSAGE_ID.
vhp_unplug $U/1-2
in_ns "$sink" /run/systemd/journal/socket "$VHP_TMP/reconcile.journal" -- env INVOCATION_ID=1 \
        "$VHP_BUILD/vhotplug-reconcile" -c "$conf" --no-strict-perms >"$VHP_TMP/reconcile.out" 2>"$VHP_TMP/reconcile.err"
rc=$?
[ "$rc" = 0 ] && vhp_ok "reconcile: exit 0" || vhp_fail "reconcile: exit 0" "rc=$rc $(cat "$VHP_TMP/reconcile.err")"
# (It also attaches 1-4, which no event brought, and the hostile device of 5, refused then by a
# lying crosvm: a record of its own each.)
awk -v d="DEVPATH=$U/1-2" 'BEGIN { RS = ""; ORS = "\n\n" } index($0, "\n" d "\n")' "$VHP_TMP/reconcile.journal" \
        >"$VHP_TMP/recon1.journal"
[ "$(records recon1)" = 1 ] && vhp_ok "reconcile: one record for the device it repaired" ||
        vhp_fail "reconcile: one record for the device it repaired" "$(cat "$VHP_TMP/reconcile.journal")"
vhp_check_output "reconcile: every action record has a MESSAGE_ID" '^3 3$' \
        awk 'BEGIN { RS = "" } /(^|\n)VHOTPLUG_ACTION=/ { n++; if (/(^|\n)MESSAGE_ID=/) m++ } END { print n + 0, m + 0 }' \
        "$VHP_TMP/reconcile.journal"
expect recon1 PRIORITY=6 MESSAGE_ID=b5e3b5c7b1d14b82bc529392bb83d0f2 SYSLOG_IDENTIFIER=vhotplug-reconcile \
        DEVPATH=$U/1-2 VHOTPLUG_ACTION=detach VHOTPLUG_VM=net-vm VHOTPLUG_OUTCOME=done

# 10. vhotplug-api under systemd: a request that moves a device is a record per device with the
# helper's fields and MESSAGE_IDs, the request and who asked.
api_sock=$VHP_TMP/api.sock
in_ns "$sink" /run/systemd/journal/socket "$VHP_TMP/api.journal" -- env INVOCATION_ID=1 \
        "$VHP_BUILD/vhotplug-api" -c "$conf" --no-strict-perms --listen "unix:$api_sock" --idle-exit 3 \
        >"$VHP_TMP/api.out" 2>"$VHP_TMP/api.err" &
api_pid=$!
for _ in $(seq 100); do [ -S "$api_sock" ] && break; sleep 0.05; done
api_req() { "$VHP_TOOLS/vhp-wire" -t 30000 "unix:$api_sock" "send:$1\n" line; }
# (1-4 is in net-vm already, reconcile put it there in 9: detach it, then attach it again.)
api_req '{"action":"usb_detach","vid":"1209","pid":"0004"}' >"$VHP_TMP/api-detach.reply"
api_req '{"action":"usb_attach","vid":"1209","pid":"0004","vm":"net-vm"}' >"$VHP_TMP/api-attach.reply"
wait "$api_pid"
awk 'BEGIN { RS = ""; ORS = "\n\n" } /(^|\n)VHOTPLUG_REQUEST=usb_attach\n/' "$VHP_TMP/api.journal" >"$VHP_TMP/api1.journal"
awk 'BEGIN { RS = ""; ORS = "\n\n" } /(^|\n)VHOTPLUG_REQUEST=usb_detach\n/' "$VHP_TMP/api.journal" >"$VHP_TMP/api2.journal"
[ "$(records api1) $(records api2)" = "1 1" ] && vhp_ok "api: one record per device of each request" ||
        vhp_fail "api: one record per device of each request" \
                "$(cat "$VHP_TMP/api.journal" "$VHP_TMP/api-attach.reply" "$VHP_TMP/api-detach.reply" "$VHP_TMP/api.err")"
expect api1 PRIORITY=6 MESSAGE_ID=e60188ef211a4909ba07d2d17dba5b75 SYSLOG_IDENTIFIER=vhotplug-api \
        DEVPATH=$U/1-4 VHOTPLUG_REQUEST=usb_attach VHOTPLUG_ACTION=attach VHOTPLUG_VM=net-vm \
        VHOTPLUG_KIND=usb VHOTPLUG_OUTCOME=done
vhp_check_output "api: who asked" '^api unix uid=0' field api1 VHOTPLUG_REQUESTED_BY
expect api2 PRIORITY=6 MESSAGE_ID=b5e3b5c7b1d14b82bc529392bb83d0f2 DEVPATH=$U/1-4 VHOTPLUG_REQUEST=usb_detach \
        VHOTPLUG_ACTION=detach VHOTPLUG_VM=net-vm VHOTPLUG_OUTCOME=done
vhp_check_output "api: MESSAGE names the request, who asked, the device and the outcome" \
        '^usb_attach by api unix uid=0.*: attach usb 1-4 1209:0004 -> net-vm \[done\]$' field api1 MESSAGE

# 7. The stdout summary: only for a reader (--json, a dry run, a terminal), besides the record.
event json add $U/1-3 108 INVOCATION_ID=1 -- --json
if [ "$(records json)" = 1 ] && jq -e '.action == "ignore"' "$VHP_TMP/json.out" >/dev/null; then
        vhp_ok "--json: the JSON summary on stdout, the record in the journal"
else
        vhp_fail "--json: the JSON summary on stdout, the record in the journal" "$(cat "$VHP_TMP"/json.*)"
fi
if command -v script >/dev/null; then
        script -qec "env INVOCATION_ID=1 '$helper' -c '$conf' --no-strict-perms add $U/1-3" /dev/null \
                >"$VHP_TMP/tty.out" 2>&1
        vhp_check_output "on a terminal: the summary on stdout" 'ignore \(' cat "$VHP_TMP/tty.out"
else
        vhp_fail "on a terminal: the summary on stdout" "script(1) is missing (bsdutils)"
fi

vhp_done
