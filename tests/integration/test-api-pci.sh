#!/usr/bin/env bash
# vhotplug-api's PCI side on recorded PCI devices (umockdev): pci_list's objects (the older daemon's
# keys, ids in capitals, IOMMU group members of a pciIommuAddAll entry), pci_attach by address and
# pci_detach by vid+did recorded and kept detached, tags, and the older daemon's words for what is
# not there. The VMs are not running: nothing is bound to vfio-pci (attaching a PCI device into a
# real QEMU is covered by test-pci-evdev through the same transaction).
. "$(dirname "$0")/../lib.sh"
# Without udev's hardware database names (a host whose udev never ran, a container): the names
# come from pci.ids through libpci, as in the helper's dry run.
[ -n "${UMOCKDEV_DIR:-}" ] || sed '/^E: ID_\(VENDOR\|MODEL\)_FROM_DATABASE=/d' "$VHP_FIXTURES/pci-all.umockdev" \
        >"$VHP_TMP/pci-all-no-hwdb.umockdev"
vhp_run_in_testbed "$VHP_TMP/pci-all-no-hwdb.umockdev"

api=$VHP_BUILD/vhotplug-api
wire=$VHP_TOOLS/vhp-wire
S=$VHP_TMP/api.sock
db=$VHP_TMP/state.db
cat >"$VHP_TMP/conf.json" <<EOC
{ "pciPassthrough": [
    { "targetVm": "gui-vm", "tag": "gpu", "pciIommuAddAll": true, "allow": [ { "vendorId": "10de", "deviceId": "2520" } ] },
    { "targetVm": "net-vm", "tag": "net", "allow": [ { "address": "00:14.3" } ] } ],
  "vms": [ { "name": "gui-vm", "type": "qemu", "socket": "$VHP_TMP/gui.sock" },
           { "name": "net-vm", "type": "qemu", "socket": "$VHP_TMP/net.sock" } ],
  "general": { "database": "$db", "lockDir": "$VHP_TMP/lock" } }
EOC
"$api" -c "$VHP_TMP/conf.json" --no-strict-perms --listen "unix:$S" 2>"$VHP_TMP/api.log" &
vhp_on_exit "kill $! 2>/dev/null"
for _ in $(seq 200); do [ -S "$S" ] && break; sleep 0.05; done
req() { "$wire" -t 30000 "unix:$S" "send:$1\n" line; }
sql() { sqlite3 -batch -noheader -cmd '.timeout 10000' "$db" "$1"; }

out=$(req '{"action":"pci_list","disconnected":null,"tag":null}')
keys='["address","driver","vendor_id","device_id","vid","did","vendor_name","device_name","pci_class","pci_subclass","pci_prog_if","pci_subsystem_vendor_id","pci_subsystem_id","allowed_vms","vm","state"]'
[ "$(jq -c '.pci_devices[] | select(.address=="0000:00:14.3") | keys_unsorted' <<<"$out")" = "$keys" ] &&
        vhp_ok "PCI device object: the older daemon's keys in its order" || vhp_fail "PCI keys" "$out"
[ "$(jq -c '[.pci_devices[] | [.address, .vid, .did, (.iommu_member // false), .vm]]' <<<"$out")" = \
        '[["0000:00:01.0","8086","A70D",true,"gui-vm"],["0000:00:14.3","8086","A0F0",false,"net-vm"],["0000:01:00.0","10DE","2520",false,"gui-vm"],["0000:01:00.1","10DE","228E",true,"gui-vm"]]' ] &&
        vhp_ok "pci_list: claimed devices by address, ids in capitals, the GPU's IOMMU group as iommu_member" ||
        vhp_fail "pci_list" "$(jq -c '[.pci_devices[] | [.address, .vid, .did, .iommu_member, .vm]]' <<<"$out")"
[ "$(jq -c '.pci_devices[] | select(.address=="0000:00:14.3") | [.vendor_id, .device_id, .pci_class, .pci_subclass]' <<<"$out")" = '[32902,41200,2,128]' ] &&
        vhp_ok "numeric ids and class" || vhp_fail "numeric fields" "$out"
# Names as the helper's dry run shows them, not null.
[ "$(jq -r '[.pci_devices[] | select(.address == "0000:00:14.3") | .vendor_name] | .[0]' <<<"$out")" = "Intel Corporation" ] &&
        vhp_ok "pci_list: vendor and device names" ||
        vhp_fail "pci_list names" "$(jq -c '[.pci_devices[] | [.address, .vendor_name, .device_name]]' <<<"$out")"
[ "$(req '{"action":"pci_list","tag":"net"}' | jq -r '[.pci_devices[].address] | join(" ")')" = "0000:00:14.3" ] &&
        vhp_ok "pci_list by tag" || vhp_fail "pci_list tag"

"$wire" -t 600000 "unix:$S" 'send:{"action":"enable_notifications"}\n' 'until:NEVER' >"$VHP_TMP/listen.out" 2>&1 &
vhp_on_exit "kill $! 2>/dev/null"
for _ in $(seq 200); do grep -q result "$VHP_TMP/listen.out" && break; sleep 0.05; done
out=$(req '{"action":"pci_attach","address":"00:14.3","vm":null}')
[ "$(jq -r '.result + " " + .results[0].outcome + " " + .results[0].address' <<<"$out")" = "ok pending 0000:00:14.3" ] &&
        vhp_ok "pci_attach by address (no domain): its VM is down, recorded pending" || vhp_fail "pci_attach" "$out"
vhp_check_output "the pending record, requested by the API" '^pending\|net-vm\|api unix' \
        sql "SELECT state, vm, requested_by FROM current_attachments WHERE pci_address='0000:00:14.3'"
out=$(req '{"action":"pci_detach","vid":"8086","did":"a0f0"}')
[ "$(jq -r '.result + " " + .results[0].outcome' <<<"$out")" = "ok done" ] && vhp_ok "pci_detach by vid+did (any case)" ||
        vhp_fail "pci_detach" "$out"
# A pending attach never reached its VM: neither it nor closing it is an event. The record made
# to look attached is: the listener then gets pci_detached.
out=$(req '{"action":"pci_attach","address":"00:14.3"}')
sqlite3 -cmd '.timeout 10000' "$db" "UPDATE attachments SET state = 'attached', attached_at = created_at WHERE state = 'pending'"
out=$(req '{"action":"pci_detach","address":"00:14.3"}')
for _ in $(seq 200); do grep -q pci_detached "$VHP_TMP/listen.out" && break; sleep 0.05; done
[ "$(grep -c '"event"' "$VHP_TMP/listen.out")" = 1 ] &&
        [ "$(grep pci_detached "$VHP_TMP/listen.out" | jq -r '.pci_device.address + " " + .pci_device.vid + ":" + .pci_device.did + " " + .vm')" = \
        "0000:00:14.3 8086:A0F0 net-vm" ] &&
        vhp_ok "listener: pci_detached with the device and VM, nothing for a pending attach" ||
        vhp_fail "pci events" "$(cat "$VHP_TMP/listen.out")"
vhp_check_output "record closed, kept detached" '^0\|1$' \
        sql "SELECT (SELECT count(*) FROM current_attachments), keep_detached FROM user_choices WHERE device_key='pci:0000:00:14.3'"
[ "$(req '{"action":"pci_list","disconnected":true}' | jq -r '[.pci_devices[] | .address + ":" + .state] | join(" ")')" = \
        "0000:00:14.3:kept-detached" ] && vhp_ok "pci_list disconnected:true: the detached device" || vhp_fail "disconnected"
out=$(req '{"action":"pci_attach","address":"0000:09:00.0"}')
[ "$(jq -r .error <<<"$out")" = "PCI device 0000:09:00.0 not found in the system" ] && vhp_ok "unknown address: the older daemon's words" ||
        vhp_fail "unknown address" "$out"
out=$(req '{"action":"pci_attach","vid":"dead","did":"beef"}')
[ "$(jq -r .error <<<"$out")" = "PCI device dead:beef not found in the system" ] && vhp_ok "unknown ids: the older daemon's words" ||
        vhp_fail "unknown ids" "$out"
out=$(req '{"action":"pci_attach","address":"00:02.0"}')
[ "$(jq -r .result <<<"$out")" = failed ] && grep -q 'is not passed to any VM: no pciPassthrough entry matched' <<<"$out" &&
        vhp_ok "a device no entry claims: refused with the reason" || vhp_fail "unclaimed" "$out"
out=$(req '{"action":"pci_attach","address":"00:14.3","vm":"gui-vm"}')
grep -q 'Selected VM gui-vm is not allowed' <<<"$out" && vhp_ok "a VM the entry does not name: refused" || vhp_fail "vm refused" "$out"
out=$(req '{"action":"why","device":"00:14.3"}')
[ "$(jq -r '.kind + " " + .state + " " + .decision.rule + " " + (.choice.keep_detached | tostring)' <<<"$out")" = \
        "pci kept-detached pciPassthrough[1].allow[0] true" ] && vhp_ok "why by PCI address" || vhp_fail "why" "$out"
vhp_done
