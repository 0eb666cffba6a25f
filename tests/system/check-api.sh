#!/usr/bin/env bash
# make check-system, part 2: the control plane under a real systemd (PID 1 of a private container,
# tests/system/container.sh).
#
#  1. make install, a configuration with general.api (a unix socket, its group and mode) and a VM;
#     systemctl daemon-reload runs vhotplug-generator: vhotplug-api.socket and
#     vhotplug-vm-NAME.path appear, verify, and are wanted by sockets.target / paths.target.
#  2. The socket has the configured owner, group and mode; a user outside the group cannot
#     connect, one in it can.
#  3. A request through the socket starts vhotplug-api.service (socket activation) and is answered;
#     the service exits when idle, the socket stays.
#  4. The VM (re)creating its socket starts vhotplug-reconcile@NAME.service through the path unit.
# Needs what check-system.sh needs (root, unshare, overlayfs, cgroup2).
set -u
. "$(dirname "$0")/../lib.sh"

CTR=$VHP_TOP/tests/system/container.sh
C=$VHP_TMP/container
T=/run/vhp-test
ct() { "$CTR" exec "$C" "$@"; }
state() { ct systemctl is-active "$@"; true; }
wire() { ct "$VHP_BUILD/tests/vhp-wire" -t 20000 "$@"; }

[ "$(id -u)" = 0 ] || { vhp_fail "check-system needs root (it boots systemd in a container)"; vhp_done; }
for f in vhotplug-api vhotplug-generator vhotplugctl tests/vhp-wire; do
        [ -x "$VHP_BUILD/$f" ] || { vhp_fail "$VHP_BUILD/$f built (make tests)"; vhp_done; }
done
if state=$("$CTR" boot "$C" 2>"$VHP_TMP/boot.err"); then
        vhp_on_exit "'$CTR' stop '$C'"
        [ "$state" = running ] && vhp_ok "systemd booted in a container" || vhp_fail "systemd booted" "state $state"
else
        vhp_fail "systemd boots in a container" "$(cat "$VHP_TMP/boot.err")"
        vhp_done
fi

# ---- 1. install, configure, generate --------------------------------------------------------------
ct make -C "$VHP_TOP" -s --no-print-directory BUILD="$VHP_BUILD" PREFIX=/usr/local install >"$VHP_TMP/install.log" 2>&1 &&
        vhp_ok "make install inside the container" || vhp_fail "make install" "$(tail -n 20 "$VHP_TMP/install.log")"
ct sh -c "mkdir -p $T && : >$T/vm-a.sock"
ct sh -c 'cat >/etc/vhotplug.conf && chmod 0644 /etc/vhotplug.conf' <<EOF
{ "usbPassthrough": [ { "targetVm": "vm-a", "allow": [ { "vendorId": "1209" } ] } ],
  "vms": [ { "name": "vm-a", "type": "crosvm", "socket": "$T/vm-a.sock" } ],
  "general": { "crosvm": "$VHP_TOP/tests/tools/crosvm-standin",
               "api": { "transports": [ "unix" ], "unixSocket": "/run/vhotplug-api/api.sock",
                        "unixSocketGroup": "daemon", "unixSocketMode": "0660" } } }
EOF
ct systemctl daemon-reload
GEN=/run/systemd/generator
vhp_check_output "the generator wrote vhotplug-api.socket and vhotplug-vm-vm-a.path" \
        'vhotplug-api.socket.*vhotplug-vm-vm-a.path|vhotplug-vm-vm-a.path.*vhotplug-api.socket' \
        ct sh -c "ls $GEN | tr '\n' ' '"
vhp_check_output "vhotplug-api.socket: loaded from the generator, wanted by sockets.target" \
        '^FragmentPath=/run/systemd/generator/vhotplug-api.socket LoadState=loaded WantedBy=sockets.target$' \
        ct sh -c 'systemctl show -p LoadState,FragmentPath,WantedBy vhotplug-api.socket | sort | paste -sd" "'
vhp_check_output "vhotplug-vm-vm-a.path: loaded, wanted by paths.target, triggers vhotplug-reconcile@vm-a.service" \
        '^LoadState=loaded Unit=vhotplug-reconcile@vm-a.service WantedBy=paths.target$' \
        ct sh -c 'systemctl show -p LoadState,Unit,WantedBy vhotplug-vm-vm-a.path | sort | paste -sd" "'
out=$(ct sh -c "cd $GEN && systemd-analyze verify --man=no vhotplug-api.socket vhotplug-vm-vm-a.path" 2>&1)
[ -z "$out" ] && vhp_ok "systemd-analyze verify: the generated units are clean" || vhp_fail "verify generated units" "$out"
ct systemctl start vhotplug-api.socket vhotplug-vm-vm-a.path
vhp_check_output "the socket and the path unit are active" '^active active$' \
        sh -c "echo \$('$CTR' exec '$C' systemctl is-active vhotplug-api.socket vhotplug-vm-vm-a.path)"
vhp_check_output "the service is not running before the first connection" '^inactive$' state vhotplug-api.service

# ---- 2. owner, group, mode ------------------------------------------------------------------------
vhp_check_output "the socket: root:daemon, mode 660" '^socket root daemon 660$' \
        ct stat -c '%F %U %G %a' /run/vhotplug-api/api.sock
out=$(ct setpriv --reuid=65534 --regid=65534 --clear-groups "$VHP_BUILD/tests/vhp-wire" -t 5000 \
        unix:/run/vhotplug-api/api.sock 'send:{"action":"usb_list"}\n' line 2>&1)
grep -q 'Permission denied' <<<"$out" && vhp_ok "a user outside the group cannot connect" || vhp_fail "nobody connected" "$out"

# ---- 3. socket activation, idle exit ---------------------------------------------------------------
ct sh -c 'mkdir -p /etc/systemd/system/vhotplug-api.service.d && cat >/etc/systemd/system/vhotplug-api.service.d/50-test.conf' <<EOF
[Service]
ExecStart=
ExecStart=/usr/local/sbin/vhotplug-api --idle-exit 2
EOF
ct systemctl daemon-reload
out=$(ct setpriv --reuid=65534 --regid=1 --clear-groups "$VHP_BUILD/tests/vhp-wire" -t 20000 \
        unix:/run/vhotplug-api/api.sock 'send:{"action": "usb_list", "disconnected": null, "tag": null}\n' line 2>&1)
[ "$(jq -r .result <<<"$out" 2>/dev/null)" = ok ] && vhp_ok "a member of the group: usb_list answered through socket activation" ||
        vhp_fail "usb_list through the socket" "$out $(ct journalctl -q -u vhotplug-api.service -o cat --no-pager | tail)"
vhp_check_output "systemd started the service for it" '^Started vhotplug-api.service' \
        ct journalctl -q -u vhotplug-api.service -o cat --no-pager
out=$(ct /usr/local/bin/vhotplugctl -u /run/vhotplug-api/api.sock status)
grep -q '^vm-a (crosvm)' <<<"$out" && vhp_ok "vhotplugctl status through the socket" || vhp_fail "vhotplugctl status" "$out"
for _ in $(seq 200); do [ "$(state vhotplug-api.service)" = inactive ] && break; sleep 0.1; done
vhp_check_output "idle: the service exits by itself" '^inactive$' state vhotplug-api.service
vhp_check_output "... the socket still listens" '^active$' state vhotplug-api.socket
out=$(wire unix:/run/vhotplug-api/api.sock 'send:{"action":"usb_list"}\n' line)
[ "$(jq -r .result <<<"$out" 2>/dev/null)" = ok ] && vhp_ok "the next connection starts it again" || vhp_fail "second activation" "$out"
vhp_check_output "two starts in the journal" '^2$' \
        sh -c "'$CTR' exec '$C' journalctl -q -u vhotplug-api.service -o cat --no-pager | grep -c '^Started '"

# ---- 4. the VM (re)starts: its path unit reconciles it ---------------------------------------------
runs() { ct journalctl -q -u vhotplug-reconcile@vm-a.service -o cat --no-pager | grep -c '^Started\|^Finished' ; true; }
before=$(runs)
ct sh -c "rm -f $T/vm-a.sock && : >$T/vm-a.sock"
for _ in $(seq 200); do [ "$(runs)" -gt "$before" ] && break; sleep 0.1; done
[ "$(runs)" -gt "$before" ] && vhp_ok "the VM's socket re-created: vhotplug-reconcile@vm-a.service ran" ||
        vhp_fail "path unit did not start reconcile" "$(ct journalctl -q -u vhotplug-vm-vm-a.path -u 'vhotplug-reconcile@vm-a.service' -o cat --no-pager | tail)"
vhp_check_output "no failed unit at the end" '^0$' ct sh -c 'systemctl --failed --no-legend | wc -l'
vhp_done
