#!/usr/bin/env bash
# vhotplug-api end to end: the older daemon's wire protocol spoken byte for byte by our own test
# client (tests/tools/vhp-wire), two real QEMUs inside a umockdev testbed, the helper driven as
# udev's hand-off drives it, a real SQLite database; vhotplugctl against the same server.
# Checked through QMP (qom-list), SQL, and the lines the server sends.
. "$(dirname "$0")/../lib.sh"

# Bus 2: six test mice (1209:0001..0006); bus 3: one more 1209:0001 (another serial); bus 1: a hub
# at root port 3 with a USB serial adapter (1-3.4) and an Ethernet adapter (1-3.2) behind it.
rebus() { # BUS SERIAL-PREFIX: a generated fixture moved to bus BUS, without its controller
        sed -e '1,/^$/d' -e "s#/usb1#/usb$1#g" -e "s#/1-#/$1-#g" -e "s#bus/usb/001/#bus/usb/00$1/#g" \
                -e "s#BUSNUM=001#BUSNUM=00$1#" -e "s#^A: busnum=1\\\\n#A: busnum=$1\\\\n#" -e "s#SN00#$2#g"
}
if [ -z "${UMOCKDEV_DIR:-}" ]; then
        "$VHP_TOP/tests/tools/gen-usb-fixture.sh" 6 | rebus 2 SN00 >"$VHP_TMP/bus2.umockdev"
        "$VHP_TOP/tests/tools/gen-usb-fixture.sh" 1 | rebus 3 SN30 >"$VHP_TMP/bus3.umockdev"
        # The two recordings share the controller, the root hub and the hub: each device once.
        cat "$VHP_FIXTURES/usb-serial-prolific-behind-hub.umockdev" <(echo) \
                "$VHP_FIXTURES/usb-ethernet-ax88179-behind-hub.umockdev" <(echo) |
                awk 'BEGIN { RS = ""; ORS = "\n\n" } { split($0, l, "\n"); if (!(l[1] in seen)) { seen[l[1]] = 1; print } }' \
                >"$VHP_TMP/hub.umockdev"
        vhp_run_in_testbed "$VHP_TMP/hub.umockdev" "$VHP_TMP/bus2.umockdev" "$VHP_TMP/bus3.umockdev"
fi

api=$VHP_BUILD/vhotplug-api
ctl=$VHP_BUILD/vhotplugctl
helper=$VHP_BUILD/vhotplug-helper
qmp=$VHP_TOOLS/vhp-qmp
S=$VHP_TMP/api.sock
db=$VHP_TMP/state.db
conf=$VHP_TMP/vhotplug.conf
U2=/devices/pci0000:00/0000:00:14.0/usb2
for t in vhp-wire vhp-uevent vhp-qmp; do
        [ -x "$VHP_TOOLS/$t" ] || { vhp_fail "test tool $t is built (make tests)"; vhp_done; }
done

cat >"$conf" <<EOF
{
  "usbPassthrough": [
    { "description": "mice", "targetVm": "gui-vm", "tag": "mice",
      "allow": [ { "vendorId": "1209", "productId": "0001" }, { "vendorId": "1209", "productId": "0002" } ] },
    { "description": "cameras: the user chooses", "allowedVms": [ "gui-vm", "chrome-vm" ], "tag": "cam",
      "allow": [ { "vendorId": "1209", "productId": "0003" }, { "vendorId": "1209", "productId": "0004" },
                 { "vendorId": "1209", "productId": "0006" } ] },
    { "targetVm": "chrome-vm", "allow": [ { "vendorId": "067b" }, { "vendorId": "0b95" } ] },
    { "targetVm": "gui-vm", "allow": [ { "vendorId": "1209", "productId": "0005" } ] }
  ],
  "vms": [
    { "name": "gui-vm", "type": "qemu", "socket": "$VHP_TMP/gui.sock" },
    { "name": "chrome-vm", "type": "qemu", "socket": "$VHP_TMP/chrome.sock" },
    { "name": "down-vm", "type": "qemu", "socket": "$VHP_TMP/down.sock" }
  ],
  "general": { "database": "$db", "lockDir": "$VHP_TMP/lock", "qmpTimeoutMs": 3000, "attachRetries": 5,
               "api": { "transports": [ "unix" ], "unixSocket": "$S" } }
}
EOF

wire() { "$VHP_TOOLS/vhp-wire" -t 30000 "unix:$S" "$@"; }
wire_t() { "$VHP_TOOLS/vhp-wire" -t "$1" "unix:$S" "${@:2}"; } # MS STEP...
req() { wire "send:$1\n" line; }                 # one request, its reply line
field() { jq -r "$1" 2>/dev/null; }               # filter a reply read from stdin
sql() { sqlite3 -batch -noheader -cmd '.timeout 10000' "$db" "$1"; }
peripherals() { # SOCKET
        local out
        out=$("$qmp" "$1" qom-list '{"path":"/machine/peripheral"}') || { echo "$out"; return 1; }
        jq -r '.[] | select(.type=="child<usb-host>") | .name' <<<"$out" | sort
}
has() { peripherals "$VHP_TMP/$1.sock" | grep -qx "$2"; }
wait_for() { # FILE ERE: until a line of FILE matches (bounded: not a timing check)
        for _ in $(seq 400); do grep -Eq -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
        return 1
}
event() { # ACTION DEVPATH SEQNUM [helper options]: the helper as udev's hand-off runs it
        local action=$1 devpath=$2 s=$3
        shift 3
        local -a props
        mapfile -t props < <(vhp_uevent_props "$devpath")
        env "${props[@]}" ACTION="$action" DEVPATH="$devpath" SEQNUM="$s" \
                "$helper" -c "$conf" --no-strict-perms --json "$@" >"$VHP_TMP/ev.json" 2>"$VHP_TMP/ev.err"
}
ej() { jq -r "$1" "$VHP_TMP/ev.json" 2>/dev/null; }
node() { echo "/dev/bus/usb/00$1/$(printf %03d "$2")"; } # BUS DEVNUM

vhp_start_qemu gui "$VHP_TMP/gui.sock" || { vhp_fail "QEMU gui did not start"; vhp_done; }
vhp_start_qemu chrome "$VHP_TMP/chrome.sock" || { vhp_fail "QEMU chrome did not start"; vhp_done; }
"$api" -c "$conf" --no-strict-perms --listen "unix:$S" --client-timeout 3 -d 2>"$VHP_TMP/api.log" &
api_pid=$!
vhp_on_exit "kill $api_pid 2>/dev/null; wait $api_pid 2>/dev/null"
for _ in $(seq 200); do [ -S "$S" ] && break; sleep 0.05; done
[ -S "$S" ] && vhp_ok "vhotplug-api --listen unix:PATH is up" || { vhp_fail "vhotplug-api did not come up" "$(cat "$VHP_TMP/api.log")"; vhp_done; }

# ---- 1. usb_list: claimed devices only, the older daemon's objects and keys in its order ----------
out=$(req '{"action": "usb_list", "disconnected": null, "tag": null}')
[ "$(field .result <<<"$out")" = ok ] && vhp_ok "usb_list answers ok" || vhp_fail "usb_list" "$out"
[ "$(field '[.usb_devices[].sys_name] | join(" ")' <<<"$out")" = "1-3.2 1-3.4 2-1 2-2 2-3 2-4 2-5 2-6 3-1" ] &&
        vhp_ok "usb_list: the claimed devices, no hub, no root hub" ||
        vhp_fail "usb_list devices" "$(field '[.usb_devices[].sys_name]' <<<"$out")"
keys='["device_node","vid","pid","vendor_name","product_name","interfaces","device_class","device_subclass","device_protocol","busnum","devnum","portnum","serial","sys_name","allowed_vms","vm","state"]'
[ "$(field '.usb_devices[0] | keys_unsorted' <<<"$out" | jq -c .)" = "$keys" ] &&
        vhp_ok "device object: the older daemon's keys in its order, then allowed_vms, vm" ||
        vhp_fail "device object keys" "$(field '.usb_devices[0] | keys_unsorted' <<<"$out" | jq -c .)"
d21=$(field '.usb_devices[] | select(.sys_name=="2-1")' <<<"$out")
[ "$(jq -c '[.device_node, .vid, .pid, .busnum, .devnum, .portnum, .serial, .interfaces, .allowed_vms, .vm]' <<<"$d21")" = \
        '["/dev/bus/usb/002/002","1209","0001",2,2,1,"SN0001",":030102:",["gui-vm"],"gui-vm"]' ] &&
        vhp_ok "2-1: node, ids, numbers, interfaces, allowed_vms [targetVm], vm" || vhp_fail "2-1 object" "$d21"
[ "$(field '.usb_devices[] | select(.sys_name=="2-3") | [.allowed_vms, .vm, .state] | tostring' <<<"$out")" = \
        '[["gui-vm","chrome-vm"],null,"waiting"]' ] && vhp_ok "allowedVms entry: allowed_vms lists them, vm null (nobody chose)" ||
        vhp_fail "2-3 object" "$out"
[ "$(req '{"action":"usb_list","tag":"mice"}' | field '[.usb_devices[].sys_name] | join(" ")')" = "2-1 2-2 3-1" ] &&
        vhp_ok "usb_list by tag: exactly the tagged entry's devices" || vhp_fail "usb_list by tag"

# ---- 2. Bad input on one connection: each line gets a failed reply, the connection stays ----------
bad=$(wire 'send:[1]\n' line 'send:not json\n' line 'send:{}\n' line 'send:{"action": null}\n' line \
        'send:{"action":"frobnicate"}\n' line 'send:{"action": 5}\n' line 'send:\n' line \
        'send:{"action":"usb_attach"}\n' line 'send:{"action":"usb_attach","bus":"2"}\n' line \
        'send:{"action":"usb_attach","vid":"zz","pid":"0001"}\n' line 'send:{"action":"usb_attach","bus":-1,"port":1}\n' line \
        'send:{"action":"usb_attach","bus":1.5,"port":1}\n' line 'send:{"action":"usb_list","disconnected":"yes"}\n' line \
        'send:{"action":"usb_attach","device_node":"/dev/x\\u0000y"}\n' line 'send:{"action":"usb_list"} trailing\n' line \
        'send:{"action":"usb_suspend","vm":"nosuch-vm"}\n' line 'send:{"action":"vmm_args","vm":null}\n' line \
        'send:{"action":"usb_list","tag":"mice"}\r\n' line)
n_failed=$(grep -c '^{"result":"failed","error":' <<<"$bad")
[ "$n_failed" = 17 ] && vhp_ok "17 bad lines: 17 failed replies" || vhp_fail "bad lines: $n_failed failed replies" "$bad"
[ "$(tail -1 <<<"$bad" | field '.result')" = ok ] && vhp_ok "the connection stays usable after bad lines (CRLF too)" ||
        vhp_fail "connection after bad lines" "$bad"
for want in 'expected a JSON object' 'not JSON' '"No action specified"' 'Unknown message: frobnicate' \
        '\"action\" must be a string' 'an empty line' 'no device named' '\"bus\" needs \"port\"' \
        '\"vid\" must be a hexadecimal id' 'whole number from 1' 'must be true, false or null' \
        'u0000' 'text after the JSON' 'VM nosuch-vm is not found in the config file' 'VM name is required'; do
        grep -qF -- "$want" <<<"$bad" && vhp_ok "bad input answered: $want" || vhp_fail "no reply saying: $want" "$bad"
done
[ "$(grep -c 'No action specified' <<<"$bad")" = 2 ] && vhp_ok "{} and {\"action\": null}: No action specified" ||
        vhp_fail "missing action" "$bad"

# A line over 64 KiB: an error, then the connection is closed.
out=$(wire 'send:{"action":"usb_list","pad":"' 'repeat:70000:x' 'send:"}\n' line eof)
grep -q 'longer than 65536' <<<"$out" && grep -qx EOF <<<"$out" && vhp_ok "a line over 64 KiB: error, then closed" ||
        vhp_fail "long line" "$(head -c 300 <<<"$out")"
# A line of exactly 64 KiB is still a request.
pad=$((65536 - $(printf '{"action":"usb_list","pad":""}' | wc -c)))
out=$(wire 'send:{"action":"usb_list","pad":"' "repeat:$pad:x" 'send:"}\n' line)
[ "$(field .result <<<"$out")" = ok ] && vhp_ok "a line of exactly 64 KiB is served" || vhp_fail "64 KiB line" "$(head -c 300 <<<"$out")"

# A client that sends nothing (or half a line): an error, then closed (--client-timeout 3).
out=$(wire line eof)
grep -q 'no request for 3 s' <<<"$out" && grep -qx EOF <<<"$out" && vhp_ok "a silent client is told and closed" ||
        vhp_fail "silent client" "$out"
# Meanwhile a stuck client (half a request, then nothing) does not hold up another.
"$VHP_TOOLS/vhp-wire" -t 30000 "unix:$S" 'send:{"action":"usb_li' eof >"$VHP_TMP/stuck.out" &
stuck=$!
out=$(req '{"action":"usb_list"}')
[ "$(field .result <<<"$out")" = ok ] && vhp_ok "a stuck client does not block another" || vhp_fail "stuck client blocks" "$out"
wait $stuck
grep -q 'no request for 3 s' "$VHP_TMP/stuck.out" && vhp_ok "the stuck client is closed after the idle timeout" ||
        vhp_fail "stuck client" "$(cat "$VHP_TMP/stuck.out")"

# A request whose connection ends right after it (no newline, half-closed) is still answered.
out=$(wire 'send:{"action":"usb_list","tag":"cam"}' shut line)
[ "$(field '.usb_devices | length' <<<"$out")" = 3 ] && vhp_ok "a last request without its newline is answered" ||
        vhp_fail "request at EOF" "$out"

# 100 concurrent clients, all connected at once, all served.
out=$("$VHP_TOOLS/vhp-wire" -t 60000 -n 100 "unix:$S" 'send:{"action":"usb_list","tag":"mice"}\n' line)
[ "$(grep -c '"result":"ok"' <<<"$out")" = 100 ] && vhp_ok "100 concurrent clients served" ||
        vhp_fail "100 clients" "$(grep -vc '"result":"ok"' <<<"$out") not ok: $(grep -v '"result":"ok"' <<<"$out" | head -3)"

# ---- 3. Notifications: a listener, then attach/detach by every selector -----------------------
wire_t 600000 'send:{"action":"enable_notifications"}\n' 'until:NEVER' >"$VHP_TMP/listen.out" 2>&1 &
listener=$!
vhp_on_exit "kill $listener 2>/dev/null"
wait_for "$VHP_TMP/listen.out" '^\{"result":"ok"\}$' && vhp_ok "enable_notifications: ok" ||
        vhp_fail "enable_notifications" "$(cat "$VHP_TMP/listen.out")"

# By device node, VM null: its target VM.
out=$(req "{\"action\":\"usb_attach\",\"device_node\":\"$(node 2 2)\",\"vm\":null}")
[ "$(field .result <<<"$out")" = ok ] && vhp_ok "usb_attach by device_node: ok" || vhp_fail "attach by node" "$out"
has gui vhp-usb-002-002 && vhp_ok "QEMU gui-vm has 2-1" || vhp_fail "gui-vm lacks 2-1" "$(peripherals "$VHP_TMP/gui.sock")"
vhp_check_output "database: attached, requested by the API peer" '^attached\|gui-vm\|api unix uid=[0-9]+ pid=[0-9]+$' \
        sql "SELECT state, vm, requested_by FROM current_attachments WHERE devpath='$U2/2-1'"
wait_for "$VHP_TMP/listen.out" '"event":"usb_attached".*"sys_name":"2-1".*"vm":"gui-vm"' &&
        vhp_ok "listener: usb_attached for 2-1 with vm" || vhp_fail "no usb_attached event" "$(cat "$VHP_TMP/listen.out")"

# Detach by device node: out of the VM, kept detached, listed as disconnected.
out=$(req "{\"action\":\"usb_detach\",\"device_node\":\"$(node 2 2)\"}")
[ "$(field .result <<<"$out")" = ok ] && ! has gui vhp-usb-002-002 && vhp_ok "usb_detach by device_node: out of QEMU" ||
        vhp_fail "detach by node" "$out"
vhp_check_output "keep detached stored, with who asked" '^1\|api unix uid=' \
        sql "SELECT keep_detached, set_by FROM user_choices WHERE device_key='usb:1209:0001:SN0001'"
wait_for "$VHP_TMP/listen.out" '"event":"usb_detached".*"device_node":"/dev/bus/usb/002/002".*"vm":"gui-vm"' &&
        vhp_ok "listener: usb_detached" || vhp_fail "no usb_detached event" "$(cat "$VHP_TMP/listen.out")"
out=$(req '{"action":"usb_list","disconnected":true}')
[ "$(field '[.usb_devices[] | .sys_name + ":" + (.vm // "null") + ":" + .state] | join(" ")' <<<"$out")" = "2-1:null:kept-detached" ] &&
        vhp_ok "usb_list disconnected:true: only the user-detached device, vm null" || vhp_fail "disconnected list" "$out"
[ "$(req '{"action":"usb_list","disconnected":false}' | field '[.usb_devices[].sys_name] | index("2-1")')" = null ] &&
        vhp_ok "usb_list disconnected:false leaves it out" || vhp_fail "connected list"

# A replug of the user-detached device stays on the host.
event remove $U2/2-1 9001
event add $U2/2-1 9002
[ "$(ej .outcome)" = kept-detached ] && [ "$(ej .action)" = ignore ] && ! has gui vhp-usb-002-002 &&
        vhp_ok "replug of a user-detached device: stays on the host" || vhp_fail "replug" "$(cat "$VHP_TMP/ev.json")"
event add $U2/2-1 9003 --dry-run
[ "$(ej .outcome)" = kept-detached ] && [ "$(ej .action)" = ignore ] && grep -q 'kept detached' <<<"$(ej .reason)" &&
        vhp_ok "--dry-run says kept detached" || vhp_fail "dry run kept detached" "$(cat "$VHP_TMP/ev.json")"

# Bus and port as numbers (the older client) and as strings (the older documentation).
out=$(req '{"action":"usb_attach","bus":2,"port":1,"vm":null}')
[ "$(field .result <<<"$out")" = ok ] && has gui vhp-usb-002-002 && vhp_ok "usb_attach by bus+port (numbers): attached again" ||
        vhp_fail "attach by bus+port" "$out"
vhp_check_output "keep detached cleared" '^0$' sql "SELECT keep_detached FROM user_choices WHERE device_key='usb:1209:0001:SN0001'"
out=$(req '{"action":"usb_detach","bus":"2","port":"1"}')
[ "$(field .result <<<"$out")" = ok ] && ! has gui vhp-usb-002-002 && vhp_ok "usb_detach by bus+port (decimal strings)" ||
        vhp_fail "detach by bus+port strings" "$out"
# vid+pid, any case.
out=$(req '{"action":"usb_attach","vid":"1209","pid":"0002","vm":null}')
[ "$(field .result <<<"$out")" = ok ] && has gui vhp-usb-002-003 && vhp_ok "usb_attach by vid+pid" || vhp_fail "attach by vid+pid" "$out"
out=$(req '{"action":"usb_detach","vid":"067B","pid":"23A3"}')
[ "$(field .result <<<"$out")" = ok ] && [ "$(field '.results[0].outcome' <<<"$out")" = kept-detached ] &&
        vhp_ok "usb_detach by vid+pid in capitals (not attached: marked kept detached)" || vhp_fail "detach 067B:23A3" "$out"
# Ambiguous selectors fail naming the candidates; a hub is never the answer.
out=$(req '{"action":"usb_attach","bus":1,"port":3}')
[ "$(field .result <<<"$out")" = failed ] && grep -q '1-3.2' <<<"$out" && grep -q '1-3.4' <<<"$out" &&
        ! grep -q '1-3 (' <<<"$out" && vhp_ok "bus+port with two devices behind a hub: fails naming both, not the hub" ||
        vhp_fail "ambiguous bus+port" "$out"
out=$(req '{"action":"usb_attach","vid":"1209","pid":"0001"}')
[ "$(field .result <<<"$out")" = failed ] && grep -q '/dev/bus/usb/002/002' <<<"$out" && grep -q '/dev/bus/usb/003/002' <<<"$out" &&
        vhp_ok "ambiguous vid+pid: fails naming both device nodes" || vhp_fail "ambiguous vid+pid" "$out"
out=$(req '{"action":"usb_attach","vid":"05e3","pid":"0610"}')
[ "$(field .result <<<"$out")" = failed ] && grep -q 'not found' <<<"$out" && vhp_ok "a hub by vid+pid: not found (hubs are never the answer)" ||
        vhp_fail "hub by ids" "$out"
# VMs the entry does not allow, or that do not exist; devices that do not exist.
out=$(req "{\"action\":\"usb_attach\",\"device_node\":\"$(node 2 3)\",\"vm\":\"chrome-vm\"}")
[ "$(field .result <<<"$out")" = failed ] && grep -q 'Selected VM chrome-vm is not allowed' <<<"$out" &&
        vhp_ok "a VM outside the entry's VMs is refused" || vhp_fail "VM not allowed" "$out"
out=$(req "{\"action\":\"usb_attach\",\"device_node\":\"$(node 2 4)\",\"vm\":\"nosuch-vm\"}")
[ "$(field .result <<<"$out")" = failed ] && grep -q 'VM nosuch-vm is not found in the configuration file' <<<"$out" &&
        vhp_ok "an unknown VM is refused" || vhp_fail "unknown VM" "$out"
vhp_check_output "refused choices are not stored" '^0$' \
        sql "SELECT count(*) FROM user_choices WHERE vm IN ('chrome-vm', 'nosuch-vm') AND device_key LIKE 'usb:1209:000%'"
out=$(req '{"action":"usb_attach","device_node":"/dev/bus/usb/009/099"}')
[ "$(field .error <<<"$out")" = "USB device /dev/bus/usb/009/099 not found in the system" ] &&
        vhp_ok "unknown device node: the older daemon's words" || vhp_fail "unknown node" "$out"

# Moving between allowed VMs: the device leaves the first VM, the choice is stored.
out=$(req "{\"action\":\"usb_attach\",\"device_node\":\"$(node 2 4)\",\"vm\":\"chrome-vm\"}")
[ "$(field .result <<<"$out")" = ok ] && has chrome vhp-usb-002-004 && vhp_ok "allowedVms device attached to chrome-vm by request" ||
        vhp_fail "attach 2-3 to chrome-vm" "$out"
out=$(req "{\"action\":\"usb_attach\",\"device_node\":\"$(node 2 4)\",\"vm\":\"gui-vm\"}")
[ "$(field .result <<<"$out")" = ok ] && has gui vhp-usb-002-004 && ! has chrome vhp-usb-002-004 &&
        vhp_ok "moved to gui-vm: out of chrome-vm, into gui-vm" || vhp_fail "move" "$out"
vhp_check_output "choice stored: gui-vm" '^gui-vm\|0$' sql "SELECT vm, keep_detached FROM user_choices WHERE device_key='usb:1209:0003:SN0003'"
out=$(req "{\"action\":\"usb_attach\",\"device_node\":\"$(node 2 4)\",\"vm\":\"gui-vm\"}")
[ "$(field '.results[0].outcome' <<<"$out")" = already ] && vhp_ok "attach where it already is: nothing sent (already)" ||
        vhp_fail "attach again" "$out"

# A client that disconnects right after its request: the attach completes and is recorded.
wire "send:{\"action\":\"usb_attach\",\"device_node\":\"$(node 2 6)\"}\n" close >/dev/null
for _ in $(seq 400); do has gui vhp-usb-002-006 && break; sleep 0.05; done
has gui vhp-usb-002-006 && vhp_ok "client gone mid-request: the attach still happened" || vhp_fail "attach after disconnect"
for _ in $(seq 400); do [ "$(sql "SELECT state FROM current_attachments WHERE devpath='$U2/2-5'")" = attached ] && break; sleep 0.05; done
vhp_check_output "... and is recorded" '^attached$' sql "SELECT state FROM current_attachments WHERE devpath='$U2/2-5'"

# ---- 4. The "which VM?" prompt -----------------------------------------------------------------
event add $U2/2-4 9101 --dry-run
[ "$(ej .outcome)" = waiting ] && grep -q 'waiting for a choice' <<<"$(ej .reason)" && [ "$(ej .vm)" = null ] &&
        vhp_ok "--dry-run says waiting for a choice" || vhp_fail "dry run waiting" "$(cat "$VHP_TMP/ev.json")"
event add $U2/2-4 9102
[ "$?" = 0 ] && [ "$(ej .outcome)" = waiting ] && ! has gui vhp-usb-002-005 && ! has chrome vhp-usb-002-005 &&
        vhp_ok "hot-plugged allowedVms device without a choice: waits, attached nowhere" || vhp_fail "prompt" "$(cat "$VHP_TMP/ev.json" "$VHP_TMP/ev.err")"
vhp_check_output "prompt recorded, history says waiting (udev asked)" '^1\|prompt\|waiting\|udev$' \
        sql "SELECT (SELECT count(*) FROM prompts WHERE devpath='$U2/2-4'), action, outcome, requested_by FROM history WHERE devpath='$U2/2-4' ORDER BY id DESC LIMIT 1"
wait_for "$VHP_TMP/listen.out" '"event":"usb_select_vm".*"device_node":"/dev/bus/usb/002/005".*"allowed_vms":\["gui-vm","chrome-vm"\]' &&
        vhp_ok "listener: usb_select_vm with allowed_vms" || vhp_fail "no usb_select_vm" "$(cat "$VHP_TMP/listen.out")"
event add $U2/2-4 9103
[ "$(ej .outcome)" = waiting ] && [ "$(sql "SELECT count(*) FROM history WHERE devpath='$U2/2-4' AND action='prompt'")" = 1 ] &&
        vhp_ok "a replayed add of a waiting device: still waiting, asked once" || vhp_fail "replayed prompt" "$(cat "$VHP_TMP/ev.json")"
out=$(req "{\"action\":\"usb_attach\",\"device_node\":\"$(node 2 5)\",\"vm\":\"chrome-vm\"}")
[ "$(field .result <<<"$out")" = ok ] && has chrome vhp-usb-002-005 && vhp_ok "the answer (usb_attach with vm) attaches it" ||
        vhp_fail "answer" "$out"
vhp_check_output "the prompt is gone, the choice stored" '^0\|chrome-vm$' \
        sql "SELECT (SELECT count(*) FROM prompts), vm FROM user_choices WHERE device_key='usb:1209:0004:SN0004'"
wait_for "$VHP_TMP/listen.out" '"event":"usb_attached".*"device_node":"/dev/bus/usb/002/005".*"vm":"chrome-vm"' &&
        vhp_ok "listener: usb_attached to chrome-vm" || vhp_fail "no usb_attached for the answer"
# Replug with a stored choice: attached to it, no prompt.
event remove $U2/2-4 9104
event add $U2/2-4 9105
[ "$(ej .outcome)" = done ] && [ "$(ej .vm)" = chrome-vm ] && has chrome vhp-usb-002-005 &&
        vhp_ok "replug with a stored choice: attached to it, no prompt" || vhp_fail "replug with choice" "$(cat "$VHP_TMP/ev.json" "$VHP_TMP/ev.err")"
# A client that enables notifications later learns of a device already waiting.
event add $U2/2-6 9201
[ "$(ej .outcome)" = waiting ] || vhp_fail "2-6 waits" "$(cat "$VHP_TMP/ev.json")"
out=$(wire 'send:{"action":"enable_notifications"}\n' line line)
[ "$(sed -n 1p <<<"$out" | field .result)" = ok ] && [ "$(sed -n 2p <<<"$out" | field '.event + " " + .usb_device.sys_name')" = "usb_select_vm 2-6" ] &&
        vhp_ok "a late listener gets usb_select_vm for a device already waiting" || vhp_fail "late listener" "$out"
out=$("$ctl" -u "$S" why 2-6)
grep -q '^state: *waiting' <<<"$out" && grep -q 'prompt: *waiting since' <<<"$out" && vhp_ok "vhotplugctl why: waiting, and since when" ||
        vhp_fail "why waiting" "$out"
# Reconcile after boot leaves it waiting; the boot's first reconcile gives it the first allowed VM.
boot=$(cat /proc/sys/kernel/random/boot_id)
sql "INSERT OR REPLACE INTO meta (key, value) VALUES ('reconciled_boot', '$boot')"
"$VHP_BUILD/vhotplug-reconcile" -c "$conf" --no-strict-perms >"$VHP_TMP/rec.out" 2>&1
! has gui vhp-usb-002-007 && ! has chrome vhp-usb-002-007 && [ "$(sql "SELECT count(*) FROM prompts WHERE devpath='$U2/2-6'")" = 1 ] &&
        vhp_ok "reconcile later in the boot: the waiting device stays waiting" || vhp_fail "reconcile attached a waiting device" "$(cat "$VHP_TMP/rec.out")"
sql "DELETE FROM meta WHERE key='reconciled_boot'"
"$VHP_BUILD/vhotplug-reconcile" -c "$conf" --no-strict-perms >"$VHP_TMP/rec.out" 2>&1
has gui vhp-usb-002-007 && [ "$(sql "SELECT count(*) FROM prompts")" = 0 ] &&
        vhp_ok "the boot's first reconcile: the first allowed VM (gui-vm), prompt resolved" || vhp_fail "boot reconcile" "$(cat "$VHP_TMP/rec.out")"
vhp_check_output "reconcile marked the boot as reconciled" "^$boot\$" sql "SELECT value FROM meta WHERE key='reconciled_boot'"

# ---- 5. Tags -----------------------------------------------------------------------------------
req '{"action":"usb_attach","tag":"mice"}' >/dev/null
out=$(req '{"action":"usb_detach","tag":"mice"}')
[ "$(field .result <<<"$out")" = ok ] && ! has gui vhp-usb-002-002 && ! has gui vhp-usb-002-003 && has gui vhp-usb-002-004 &&
        vhp_ok "usb_detach by tag: the mice out, the camera stays" || vhp_fail "detach by tag" "$out"
out=$("$ctl" -u "$S" usb list --tag mice --connected)
[ -z "$(tr -d '[:space:]' <<<"$out")" ] && vhp_ok "vhotplugctl usb list --tag mice --connected: empty (a kill switch's test)" ||
        vhp_fail "kill switch list" "$out"
out=$(req '{"action":"usb_attach","tag":"mice"}')
[ "$(field .result <<<"$out")" = ok ] && has gui vhp-usb-002-002 && has gui vhp-usb-002-003 && has gui vhp-usb-003-002 &&
        [ "$(field '.results | length' <<<"$out")" = 3 ] && vhp_ok "usb_attach by tag: exactly the three mice" ||
        vhp_fail "attach by tag" "$out"
out=$(req '{"action":"usb_attach","tag":"nosuchtag"}')
[ "$(field .result <<<"$out")" = failed ] && grep -q "no usbPassthrough entry has the tag 'nosuchtag'" <<<"$out" &&
        vhp_ok "an unknown tag is refused" || vhp_fail "unknown tag" "$out"
out=$(req '{"action":"usb_attach","tag":"mice","vm":"gui-vm"}')
[ "$(field .result <<<"$out")" = failed ] && vhp_ok "a VM with a tag is refused (each device goes to its own VM)" || vhp_fail "tag+vm" "$out"

# ---- 5b. A listener that stops reading holds up neither the helpers nor other clients ------------
kill -STOP "$listener"
for k in 1 2 3; do
        event remove $U2/2-5 $((9300 + 2 * k))
        event add $U2/2-5 $((9301 + 2 * k))
done
[ "$(ej .outcome)" = done ] && has gui vhp-usb-002-006 && vhp_ok "helpers finish while a listener does not read its events" ||
        vhp_fail "helper with a stopped listener" "$(cat "$VHP_TMP/ev.json" "$VHP_TMP/ev.err")"
out=$(req '{"action":"usb_list","tag":"cam"}')
[ "$(field .result <<<"$out")" = ok ] && vhp_ok "... and other clients are answered" || vhp_fail "client with a stopped listener" "$out"
kill -CONT "$listener"
wait_for "$VHP_TMP/listen.out" '"event":"usb_attached".*"sys_name":"2-5".*"vm":"gui-vm"' &&
        vhp_ok "... which gets its events once it reads again" || vhp_fail "events after SIGCONT"

# ---- 5c. Suspend and resume (lib/power.c) and cold-plug arguments (lib/coldplug.c) through the API --
before=$(peripherals "$VHP_TMP/gui.sock" | paste -sd' ')
out=$(req '{"action":"usb_suspend","vm":"gui-vm"}')
[ "$(field .result <<<"$out")" = ok ] && [ -z "$(peripherals "$VHP_TMP/gui.sock")" ] &&
        [ "$(field '[.results[] | select(.outcome == "done")] | length' <<<"$out")" = "$(wc -w <<<"$before")" ] &&
        vhp_ok "usb_suspend {vm}: every USB device out of gui-vm, each in results" || vhp_fail "usb_suspend" "$out"
wait_for "$VHP_TMP/listen.out" '"event":"usb_detached".*"vm":"gui-vm"' && vhp_ok "listener: usb_detached for a suspended device" ||
        vhp_fail "no event for suspend"
out=$(req '{"action":"usb_resume","vm":null}')
[ "$(field .result <<<"$out")" = ok ] && [ "$(peripherals "$VHP_TMP/gui.sock" | paste -sd' ')" = "$before" ] &&
        vhp_ok "usb_resume: the same devices back under the same ids" || vhp_fail "usb_resume" "$out $(peripherals "$VHP_TMP/gui.sock")"
out=$(req '{"action":"vmm_args","vm":"gui-vm","qemu_bus_prefix":null,"qemu_bus_start_index":null}')
[ "$(field '.result + " " + (.vmm_args | tostring)' <<<"$out")" = "ok []" ] &&
        vhp_ok "vmm_args with nulls (what the older client sends): ok, no PCI device for gui-vm here" || vhp_fail "vmm_args" "$out"
out=$("$ctl" -u "$S" vmm args --vm gui-vm --qemu-bus-prefix pci_hotplug_ --qemu-bus-start-index 1; echo "rc=$?")
[ "$out" = "rc=0" ] && vhp_ok "vhotplugctl vmm args: empty output, exit 0" || vhp_fail "ctl vmm args" "$out"

# ---- 6. connected / disconnected from udev -------------------------------------------------------
"$VHP_TOOLS/vhp-uevent" add /devices/pci0000:00/0000:00:14.0/usb1/1-3 >/dev/null  # the hub: no event
"$VHP_TOOLS/vhp-uevent" add $U2/2-2 >/dev/null
wait_for "$VHP_TMP/listen.out" '"event":"usb_connected".*"sys_name":"2-2"' && vhp_ok "listener: usb_connected (claimed device)" ||
        vhp_fail "no usb_connected" "$(tail -3 "$VHP_TMP/listen.out")"
! grep -q '"event":"usb_connected".*"sys_name":"1-3"' "$VHP_TMP/listen.out" && vhp_ok "no event for a hub" || vhp_fail "hub announced"
vhp_uevent_props $U2/2-2 >"$VHP_TMP/2-2.props"
"$VHP_TOOLS/vhp-uevent" remove $U2/2-2 "$VHP_TMP/2-2.props" >/dev/null
wait_for "$VHP_TMP/listen.out" '"event":"usb_disconnected".*"device_node":"/dev/bus/usb/002/003"' &&
        vhp_ok "listener: usb_disconnected with device_node" || vhp_fail "no usb_disconnected"

# ---- 7. vhotplugctl ------------------------------------------------------------------------------
out=$("$ctl" -u "$S" usb list)
grep -Eq '^DEVICE +ID +NAME' <<<"$out" && grep -q '/dev/bus/usb/002/002 *1209:0001' <<<"$out" &&
        vhp_ok "vhotplugctl usb list: a table" || vhp_fail "ctl list" "$out"
out=$("$ctl" -u "$S" --json usb list --tag cam)
[ "$(jq length <<<"$out")" = 3 ] && vhp_ok "vhotplugctl --json usb list --tag cam: the JSON list" || vhp_fail "ctl list json" "$out"
"$ctl" -u "$S" usb detach --devnode "$(node 2 3)" >"$VHP_TMP/ctl.out" 2>&1 && ! has gui vhp-usb-002-003 &&
        vhp_ok "vhotplugctl usb detach --devnode" || vhp_fail "ctl detach" "$(cat "$VHP_TMP/ctl.out")"
"$ctl" -u "$S" usb attach --vid 1209 --pid 0002 >"$VHP_TMP/ctl.out" 2>&1 && has gui vhp-usb-002-003 &&
        vhp_ok "vhotplugctl usb attach --vid --pid" || vhp_fail "ctl attach" "$(cat "$VHP_TMP/ctl.out")"
"$ctl" -u "$S" usb attach --bus 1 --port 3 >"$VHP_TMP/ctl.out" 2>&1
rc=$?
[ $rc = 1 ] && grep -q 'Failed to attach USB: several USB devices on bus 1 port 3' "$VHP_TMP/ctl.out" &&
        vhp_ok "vhotplugctl: a failed request exits 1 with the server's words" || vhp_fail "ctl failed request rc=$rc" "$(cat "$VHP_TMP/ctl.out")"
"$ctl" -u "$S" usb attach >"$VHP_TMP/ctl.out" 2>&1
[ $? = 2 ] && grep -q 'You must specify either --devnode or --bus and --port or --vid and --pid or --tag' "$VHP_TMP/ctl.out" &&
        vhp_ok "vhotplugctl: no selector is a usage error (exit 2)" || vhp_fail "ctl usage" "$(cat "$VHP_TMP/ctl.out")"
"$ctl" -u "$VHP_TMP/nosuch.sock" usb list >"$VHP_TMP/ctl.out" 2>&1
[ $? = 1 ] && grep -q 'Failed to connect' "$VHP_TMP/ctl.out" && vhp_ok "vhotplugctl: no API there, exit 1" ||
        vhp_fail "ctl no api" "$(cat "$VHP_TMP/ctl.out")"
"$ctl" -u "$S" listen >"$VHP_TMP/ctl-listen.out" 2>"$VHP_TMP/ctl-listen.err" &
ctl_listener=$!
vhp_on_exit "kill $ctl_listener 2>/dev/null"
wait_for "$VHP_TMP/ctl-listen.err" 'Listening for notifications'
"$ctl" -u "$S" usb detach --devnode "$(node 2 3)" >/dev/null 2>&1
wait_for "$VHP_TMP/ctl-listen.out" '^usb_detached +/dev/bus/usb/002/003 .*vm=gui-vm' && vhp_ok "vhotplugctl listen: the event as a line" ||
        vhp_fail "ctl listen" "$(cat "$VHP_TMP/ctl-listen.out" "$VHP_TMP/ctl-listen.err")"
kill $ctl_listener 2>/dev/null
out=$("$ctl" -u "$S" why "$(node 2 2)")
grep -q '^decision: attach to gui-vm' <<<"$out" && grep -q '^state: *attached gui-vm' <<<"$out" && grep -q 'api unix uid=' <<<"$out" &&
        vhp_ok "vhotplugctl why: decision, state, history with who asked" || vhp_fail "ctl why" "$out"
out=$("$ctl" -u "$S" history -n 5)
[ "$(grep -c '^20' <<<"$out")" = 5 ] && vhp_ok "vhotplugctl history -n 5: five rows" || vhp_fail "ctl history" "$out"
# status asks the VMs: a killed VM's devices are never shown as attached.
out=$("$ctl" -u "$S" status)
grep -q '^gui-vm (qemu): running' <<<"$out" && grep -q 'vhp-usb-002-002' <<<"$out" && grep -q '^down-vm (qemu): not running' <<<"$out" &&
        vhp_ok "vhotplugctl status: running VMs and what they have, a VM that is down" || vhp_fail "ctl status" "$out"
kill -9 "$(vhp_qemu_pid chrome)"
out=$("$ctl" -u "$S" status chrome-vm)
grep -q '^chrome-vm (qemu): not running' <<<"$out" && grep -q 'recorded but not in the VM: usb 1209:0004' <<<"$out" &&
        ! grep -q 'vhp-usb-002-005' <<<"$out" && vhp_ok "status of a killed VM: not running, its devices not attached" ||
        vhp_fail "status killed VM" "$out"
vhp_stop_qemu chrome

# ---- 8. The server: its own log names rejected clients; it stops on SIGTERM ---------------------
kill "$listener" 2>/dev/null
kill "$api_pid"
wait "$api_pid"
rc=$?
[ $rc = 0 ] && [ ! -e "$S" ] && vhp_ok "SIGTERM: vhotplug-api exits 0 and removes its socket" || vhp_fail "stop rc=$rc" "$(tail "$VHP_TMP/api.log")"
grep -q 'request line longer than 65536' "$VHP_TMP/api.log" && vhp_ok "the server logs a client it closed" ||
        vhp_fail "server log" "$(tail "$VHP_TMP/api.log")"

vhp_done
