#!/usr/bin/env bash
# vhotplug-generator: configuration in, systemd units out. What it writes for each general.api
# transport and each VM, what it refuses to write (and says so), and that systemd-analyze verify
# accepts the result next to the installed units. Its run under a real systemd is in
# tests/system/check-api.sh.
. "$(dirname "$0")/../lib.sh"

gen=$VHP_BUILD/vhotplug-generator
[ -x "$gen" ] || { vhp_fail "vhotplug-generator built"; vhp_done; }

# generate NAME CONFIG-JSON: runs the generator on it into $VHP_TMP/NAME/ (stderr in NAME.err).
generate() {
        local d=$VHP_TMP/$1
        rm -rf "$d" && mkdir -p "$d/normal" "$d/early" "$d/late"
        printf '%s\n' "$2" >"$d.json"
        "$gen" -c "$d.json" --no-strict-perms "$d/normal" "$d/early" "$d/late" 2>"$d.err"
        rc=$?
}
settings() { grep -v '^#' "$VHP_TMP/$1/normal/$2" | grep -v '^$'; } # the unit without comments

VMS='"vms": [ { "name": "gui-vm", "type": "qemu", "socket": "/run/vms/gui.sock" },
              { "name": "net-vm", "type": "crosvm", "socket": "/run/vms/net.sock" },
              { "name": "ch-vm", "type": "cloud-hypervisor", "socket": "/run/vms/ch.sock" } ]'

# 1. Every transport, owner, group, mode.
generate all "{ $VMS, \"general\": { \"api\": { \"transports\": [\"unix\", \"vsock\", \"tcp\"],
        \"unixSocket\": \"/run/vhotplug-api/api.sock\", \"unixSocketUser\": \"daemon\", \"unixSocketGroup\": \"daemon\",
        \"unixSocketMode\": \"0660\", \"port\": 2001, \"host\": \"127.0.0.1\", \"allowedCids\": [5] } } }"
[ $rc = 0 ] && [ ! -s "$VHP_TMP/all.err" ] && vhp_ok "generator: exit 0, nothing to say" || vhp_fail "generator run" "rc=$rc $(cat "$VHP_TMP/all.err")"
want="$(printf '%s\n' \
        "[Unit]" "Description=vhotplug API socket" "Documentation=man:vhotplug-api(8)" "[Socket]" \
        "ListenStream=/run/vhotplug-api/api.sock" "SocketUser=daemon" "SocketGroup=daemon" "SocketMode=0660" \
        "RemoveOnStop=yes" "ListenStream=vsock::2001" "ListenStream=127.0.0.1:2001" "Accept=no" \
        "Service=vhotplug-api.service")"
[ "$(settings all vhotplug-api.socket)" = "$want" ] && vhp_ok "vhotplug-api.socket: unix (owner, group, mode), vsock, tcp" ||
        vhp_fail "vhotplug-api.socket" "$(diff <(echo "$want") <(settings all vhotplug-api.socket))"
want="$(printf '%s\n' "[Unit]" "Description=vhotplug: give VM gui-vm its devices when it starts" \
        "Documentation=man:vhotplug-reconcile(8)" "[Path]" "PathChanged=/run/vms/gui.sock" "Unit=vhotplug-reconcile@gui-vm.service")"
[ "$(settings all vhotplug-vm-gui-vm.path)" = "$want" ] && vhp_ok "vhotplug-vm-gui-vm.path: the QMP socket starts vhotplug-reconcile@gui-vm" ||
        vhp_fail "gui-vm path unit" "$(diff <(echo "$want") <(settings all vhotplug-vm-gui-vm.path))"
grep -qx 'PathChanged=/run/vms/net.sock' "$VHP_TMP/all/normal/vhotplug-vm-net-vm.path" &&
        vhp_ok "vhotplug-vm-net-vm.path: a crosvm VM's control socket" || vhp_fail "net-vm path unit"
[ ! -e "$VHP_TMP/all/normal/vhotplug-vm-ch-vm.path" ] && vhp_ok "no path unit for a cloud-hypervisor VM (nothing is hot-plugged into it)" ||
        vhp_fail "ch-vm path unit written"
want="$(printf '%s\n' "l paths.target.wants/vhotplug-vm-gui-vm.path -> ../vhotplug-vm-gui-vm.path" \
        "l paths.target.wants/vhotplug-vm-net-vm.path -> ../vhotplug-vm-net-vm.path" \
        "l sockets.target.wants/vhotplug-api.socket -> ../vhotplug-api.socket" \
        "f vhotplug-api.socket" "f vhotplug-vm-gui-vm.path" "f vhotplug-vm-net-vm.path" | LC_ALL=C sort)"
got=$(cd "$VHP_TMP/all/normal" && find . ! -type d -printf '%y %P\n' | while read -r t p; do
        if [ "$t" = l ]; then echo "l $p -> $(readlink "$p")"; else echo "f $p"; fi; done | LC_ALL=C sort)
[ "$got" = "$want" ] && vhp_ok "exactly these files, enabled through sockets.target and paths.target" || vhp_fail "generated files" "$got"
[ -z "$(find "$VHP_TMP/all/early" "$VHP_TMP/all/late" -mindepth 1)" ] && vhp_ok "nothing in the early and late directories" || vhp_fail "early/late written"
generate again "$(cat "$VHP_TMP/all.json")"
[ $rc = 0 ] && vhp_ok "running again over its own output works (daemon-reload)" || vhp_fail "second run"

# 2. Defaults: unix only, mode 0600 (systemd's own default would be 0666), IPv6 TCP.
generate defaults "{ $VMS, \"general\": { \"api\": { \"transports\": [\"unix\", \"tcp\"], \"host\": \"::1\" } } }"
vhp_check_output "default socket path, mode 0600" '^ListenStream=/var/lib/vhotplug/vhotplug.sock SocketMode=0600 ' \
        bash -c "grep -E '^(ListenStream|SocketMode)=' '$VHP_TMP/defaults/normal/vhotplug-api.socket' | paste -sd' '"
vhp_check_output "IPv6 TCP in brackets, default port" '^ListenStream=\[::1\]:2000$' grep '^ListenStream=\[' "$VHP_TMP/defaults/normal/vhotplug-api.socket"
vhp_check_lacks "no SocketUser=/SocketGroup= unless configured" '^Socket(User|Group)=' cat "$VHP_TMP/defaults/normal/vhotplug-api.socket"

# 3. No API: no socket unit, still the path units.
for api in '' ', "general": { "api": { "enable": false, "transports": ["unix"] } }' ', "general": { "api": { "transports": [] } }'; do
        generate noapi "{ $VMS $api }"
        [ $rc = 0 ] && [ ! -e "$VHP_TMP/noapi/normal/vhotplug-api.socket" ] && [ ! -e "$VHP_TMP/noapi/normal/sockets.target.wants" ] &&
                [ -e "$VHP_TMP/noapi/normal/vhotplug-vm-gui-vm.path" ] && vhp_ok "API off (${api:-no general.api}): no socket unit, path units still" ||
                vhp_fail "API off: $api" "$(ls -R "$VHP_TMP/noapi/normal")"
done

# 4. What cannot become a unit is left out, and said.
generate odd '{ "vms": [ { "name": "plus+vm", "type": "qemu", "socket": "/run/vms/p.sock" },
                         { "name": "pct-vm", "type": "qemu", "socket": "/run/vms/50%.sock" },
                         { "name": "rel-vm", "type": "qemu", "socket": "vms/rel.sock" } ],
               "general": { "api": { "transports": ["unix", "tcp"], "host": "localhost",
                                     "unixSocketUser": "no-such-user-x", "unixSocketGroup": "no-such-group-x" } } }'
[ $rc = 0 ] && vhp_ok "problems with one unit do not fail the generator" || vhp_fail "odd config rc=$rc" "$(cat "$VHP_TMP/odd.err")"
[ ! -e "$VHP_TMP/odd/normal/vhotplug-vm-plus+vm.path" ] && grep -q "VM 'plus+vm': its name cannot be a unit instance" "$VHP_TMP/odd.err" &&
        vhp_ok "a VM name that cannot pass to vhotplug-reconcile@NAME unchanged: no path unit, a warning" || vhp_fail "plus+vm" "$(cat "$VHP_TMP/odd.err")"
grep -qx 'PathChanged=/run/vms/50%%.sock' "$VHP_TMP/odd/normal/vhotplug-vm-pct-vm.path" && vhp_ok "'%' in a path is doubled (no specifier)" ||
        vhp_fail "percent" "$(cat "$VHP_TMP/odd/normal/vhotplug-vm-pct-vm.path")"
[ ! -e "$VHP_TMP/odd/normal/vhotplug-vm-rel-vm.path" ] && grep -q "VM 'rel-vm': its socket is not an absolute path" "$VHP_TMP/odd.err" &&
        vhp_ok "a relative socket path: no path unit, a warning" || vhp_fail "relative path" "$(cat "$VHP_TMP/odd.err")"
vhp_check_lacks "unknown user and group: not in the unit" '^Socket(User|Group)=' cat "$VHP_TMP/odd/normal/vhotplug-api.socket"
grep -q "no user 'no-such-user-x' here" "$VHP_TMP/odd.err" && grep -q "no group 'no-such-group-x' here" "$VHP_TMP/odd.err" &&
        vhp_ok "... and each said" || vhp_fail "user/group warnings" "$(cat "$VHP_TMP/odd.err")"
vhp_check_lacks "a TCP host name (not an address) is left out" '^ListenStream=localhost' cat "$VHP_TMP/odd/normal/vhotplug-api.socket"
grep -q "general.api.host: 'localhost' is not an IP address" "$VHP_TMP/odd.err" && vhp_ok "... and said" || vhp_fail "tcp host warning"
printf '{ "vms": [ { "name": "nl-vm", "type": "qemu", "socket": "/run/vms/a\\nUnit=evil.service" } ] }\n' >"$VHP_TMP/nl.json"
rm -rf "$VHP_TMP/nl" && mkdir -p "$VHP_TMP/nl"
"$gen" -c "$VHP_TMP/nl.json" --no-strict-perms "$VHP_TMP/nl" 2>"$VHP_TMP/nl.err"
[ ! -e "$VHP_TMP/nl/vhotplug-vm-nl-vm.path" ] && ! grep -rq evil "$VHP_TMP/nl" &&
        vhp_ok "a newline in a path cannot add a setting: no unit" || vhp_fail "newline injection" "$(cat "$VHP_TMP"/nl/* 2>&1)"

# 5. No configuration: nothing, exit 0. A broken one: nothing, exit 1, the reason.
rm -rf "$VHP_TMP/none" && mkdir -p "$VHP_TMP/none"
"$gen" -c "$VHP_TMP/does-not-exist.json" "$VHP_TMP/none"
[ $? = 0 ] && [ -z "$(ls "$VHP_TMP/none")" ] && vhp_ok "no configuration: nothing written, exit 0" || vhp_fail "no configuration"
generate broken '{ "vms": [ { "name": "x", "type": "qemu" } ], "usbPassthrough": [ { "targetVm": "y" } ] }'
[ $rc = 1 ] && [ -z "$(ls "$VHP_TMP/broken/normal")" ] && grep -q 'no units written' "$VHP_TMP/broken.err" &&
        vhp_ok "an invalid configuration: nothing written, exit 1, the error" || vhp_fail "invalid configuration" "rc=$rc $(cat "$VHP_TMP/broken.err")"
out=$("$gen" one-dir-too-many a b c 2>&1); rc=$?
[ $rc = 2 ] && vhp_ok "wrong arguments: exit 2" || vhp_fail "usage rc=$rc" "$out"
chmod 0666 "$VHP_TMP/all.json"
rm -rf "$VHP_TMP/perm" && mkdir -p "$VHP_TMP/perm"
"$gen" -c "$VHP_TMP/all.json" "$VHP_TMP/perm" 2>"$VHP_TMP/perm.err"
[ $? = 1 ] && [ -z "$(ls "$VHP_TMP/perm")" ] && vhp_ok "a configuration others may write: refused (strict permissions as the other programs)" ||
        vhp_fail "writable configuration" "$(cat "$VHP_TMP/perm.err")"

# 6. systemd-analyze verify next to the installed units (vhotplug-api.service, vhotplug-reconcile@.service).
if command -v systemd-analyze >/dev/null; then
        D=$VHP_TMP/root
        make -s -C "$VHP_TOP" BUILD="$BUILD" PREFIX=/usr/local DESTDIR="$D" install >"$VHP_TMP/install.log" 2>&1 ||
                vhp_fail "make install DESTDIR" "$(tail "$VHP_TMP/install.log")"
        U=$VHP_TMP/units
        mkdir -p "$U"
        unitdir=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null)
        cp "$D${unitdir:-/usr/lib/systemd/system}"/vhotplug-api.service "$D${unitdir:-/usr/lib/systemd/system}"/vhotplug-reconcile@.service "$U/"
        sed -i "s|/usr/local/sbin/|$D/usr/local/sbin/|" "$U"/*.service
        cp -r "$VHP_TMP/all/normal/." "$U/"
        out=$(cd "$U" && systemd-analyze verify --man=no vhotplug-api.socket vhotplug-api.service \
                vhotplug-vm-gui-vm.path vhotplug-vm-net-vm.path 2>&1)
        [ -z "$out" ] && vhp_ok "systemd-analyze verify: the generated units and the service they start" || vhp_fail "systemd-analyze verify" "$out"
        sed -i 's|^ListenStream=vsock::2001|ListenStream=vsock:nonsense|' "$U/vhotplug-api.socket"
        out=$(cd "$U" && systemd-analyze verify --man=no vhotplug-api.socket 2>&1)
        grep -q 'vsock:nonsense' <<<"$out" && vhp_ok "control: verify catches a broken ListenStream=" || vhp_fail "verify control" "$out"
else
        vhp_fail "systemd-analyze (package systemd, scripts/setup-deps.sh installs it)"
fi
vhp_done
