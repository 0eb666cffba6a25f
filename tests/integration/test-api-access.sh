#!/usr/bin/env bash
# vhotplug-api's sockets and who may use them: the unix socket's owner and mode from general.api,
# a user outside them refused by the kernel; TCP; vsock (and a CID not in allowedCids closed before
# a byte is read) where the kernel can connect a vsock to itself; socket activation by the
# LISTEN_FDS protocol (systemd-socket-activate) and the idle exit; what it refuses to listen on.
. "$(dirname "$0")/../lib.sh"

api=$VHP_BUILD/vhotplug-api
wire=$VHP_TOOLS/vhp-wire
for f in "$api" "$wire"; do [ -x "$f" ] || { vhp_fail "$f built (make tests)"; vhp_done; }; done
conf() { # FILE API-JSON
        cat >"$1" <<EOF
{ "usbPassthrough": [ { "targetVm": "vm1", "allow": [ { "vendorId": "1209" } ] } ],
  "vms": [ { "name": "vm1", "type": "qemu", "socket": "$VHP_TMP/vm1.sock" } ],
  "general": { "database": "$VHP_TMP/state.db", "lockDir": "$VHP_TMP/lock", "api": $2 } }
EOF
}
pids=()
start() { # LOG ARGS...: vhotplug-api in the background
        local log=$1
        shift
        "$api" --no-strict-perms "$@" 2>"$log" &
        pids+=($!)
        vhp_on_exit "kill ${pids[-1]} 2>/dev/null"
}
wait_sock() { for _ in $(seq 200); do [ -S "$1" ] && return 0; sleep 0.05; done; return 1; }
ok_reply() { grep -q '^{"result":"ok"' <<<"$1"; }
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }

# 1. The unix socket of general.api: owner, group, mode; the kernel keeps others out.
mkdir -p "$VHP_TMP/sock" && chmod 0711 "$VHP_TMP" "$VHP_TMP/sock"
conf "$VHP_TMP/a.json" "{ \"transports\": [\"unix\"], \"unixSocket\": \"$VHP_TMP/sock/api.sock\",
        \"unixSocketUser\": \"daemon\", \"unixSocketGroup\": \"daemon\", \"unixSocketMode\": \"0660\" }"
start "$VHP_TMP/a.log" -c "$VHP_TMP/a.json"
wait_sock "$VHP_TMP/sock/api.sock" && vhp_ok "no --listen: it listens on general.api's unix socket" ||
        vhp_fail "general.api socket" "$(cat "$VHP_TMP/a.log")"
vhp_check_output "owner daemon:daemon, mode 660" '^daemon daemon 660$' stat -c '%U %G %a' "$VHP_TMP/sock/api.sock"
out=$(as_nobody "$wire" -t 5000 "unix:$VHP_TMP/sock/api.sock" 'send:{"action":"usb_list"}\n' line 2>&1)
grep -q 'Permission denied' <<<"$out" && vhp_ok "another user cannot connect" || vhp_fail "nobody connected" "$out"
out=$(setpriv --reuid=65534 --regid=1 --clear-groups "$wire" -t 5000 "unix:$VHP_TMP/sock/api.sock" 'send:{"action":"usb_list"}\n' line 2>&1)
ok_reply "$out" && vhp_ok "a member of the group can" || vhp_fail "group member refused" "$out"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null

# Defaults: mode 0600, owner root; a user or group this host lacks is a warning, not a failure.
conf "$VHP_TMP/b.json" "{ \"transports\": [\"unix\"], \"unixSocket\": \"$VHP_TMP/sock/b.sock\", \"unixSocketUser\": \"no-such-user-x\" }"
start "$VHP_TMP/b.log" -c "$VHP_TMP/b.json"
wait_sock "$VHP_TMP/sock/b.sock"
vhp_check_output "without unixSocketMode: 0600, root's" '^root 600$' stat -c '%U %a' "$VHP_TMP/sock/b.sock"
grep -q "no user 'no-such-user-x' here: the socket keeps owner root" "$VHP_TMP/b.log" &&
        vhp_ok "an unknown user: a warning, the socket still served" || vhp_fail "unknown user" "$(cat "$VHP_TMP/b.log")"
out=$(as_nobody "$wire" -t 5000 "unix:$VHP_TMP/sock/b.sock" 'send:{"action":"usb_list"}\n' line 2>&1)
grep -q 'Permission denied' <<<"$out" && vhp_ok "0600: another user cannot connect" || vhp_fail "0600 socket" "$out"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null

# 2. What it will not listen on.
: >"$VHP_TMP/sock/file"
"$api" --no-strict-perms -c "$VHP_TMP/b.json" --listen "unix:$VHP_TMP/sock/file" >"$VHP_TMP/c.out" 2>&1
[ $? = 1 ] && grep -q 'exists and is not a socket' "$VHP_TMP/c.out" && [ -f "$VHP_TMP/sock/file" ] &&
        vhp_ok "a file that is not a socket is not replaced (exit 1)" || vhp_fail "non-socket file" "$(cat "$VHP_TMP/c.out")"
for bad in nonsense unix: vsock:x tcp:127.0.0.1 tcp:127.0.0.1:0 tcp:127.0.0.1:70000; do
        "$api" --no-strict-perms -c "$VHP_TMP/b.json" --listen "$bad" >"$VHP_TMP/c.out" 2>&1
        [ $? = 1 ] && grep -qi 'expected\|unknown address\|empty' "$VHP_TMP/c.out" && vhp_ok "--listen $bad: refused, saying what is expected" ||
                vhp_fail "--listen $bad" "$(cat "$VHP_TMP/c.out")"
done
conf "$VHP_TMP/off.json" '{ "enable": false, "transports": ["unix"] }'
"$api" --no-strict-perms -c "$VHP_TMP/off.json" >"$VHP_TMP/c.out" 2>&1
[ $? = 1 ] && grep -q 'nothing to listen on' "$VHP_TMP/c.out" && vhp_ok "API disabled and no --listen: exit 1, nothing to listen on" ||
        vhp_fail "disabled API" "$(cat "$VHP_TMP/c.out")"
"$api" --bogus >/dev/null 2>&1
[ $? = 2 ] && vhp_ok "usage error: exit 2" || vhp_fail "usage exit"

# 3. TCP.
port=$((20000 + RANDOM % 20000))
start "$VHP_TMP/tcp.log" -c "$VHP_TMP/b.json" --listen "tcp:127.0.0.1:$port"
for _ in $(seq 100); do grep -q "listening on tcp" "$VHP_TMP/tcp.log" && break; sleep 0.05; done
out=$("$wire" -t 5000 "tcp:127.0.0.1:$port" 'send:{"action":"usb_list","disconnected":null,"tag":null}\n' line 2>&1)
ok_reply "$out" && vhp_ok "--listen tcp:127.0.0.1:PORT: served" || vhp_fail "tcp" "$out $(cat "$VHP_TMP/tcp.log")"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null

# 4. vsock: only where the kernel connects a vsock to itself (vsock_loopback). Optional: the test
#    machine's kernel decides, and the allowedCids check is the same code as the unit-tested one.
vport=$((30000 + RANDOM % 20000))
conf "$VHP_TMP/v.json" '{ "transports": ["vsock"], "allowedCids": [999999] }'
start "$VHP_TMP/vsock.log" -c "$VHP_TMP/v.json" --listen "vsock:$vport"
for _ in $(seq 100); do grep -q "listening on vsock\|cannot" "$VHP_TMP/vsock.log" && break; sleep 0.05; done
if ! grep -q "listening on vsock" "$VHP_TMP/vsock.log"; then
        vhp_skip "vsock transport" "this kernel offers no vsock sockets ($(tail -n1 "$VHP_TMP/vsock.log"))"
else
        out=$("$wire" -t 3000 "vsock:1:$vport" 'send:{"action":"usb_list"}\n' line 2>&1)
        if grep -q 'CONNECTFAIL' <<<"$out" && ! grep -q 'rejected vsock' "$VHP_TMP/vsock.log"; then
                vhp_skip "vsock: a CID not in allowedCids is closed before a byte is read" \
                        "this kernel cannot connect a vsock to itself (no vsock_loopback): $out"
        else
                grep -qx EOF <<<"$out" && grep -q 'rejected vsock client with CID 1' "$VHP_TMP/vsock.log" &&
                        vhp_ok "vsock: a CID not in allowedCids is closed before a byte is read" || vhp_fail "vsock CID" "$out"
        fi
fi
kill "${pids[-1]}" 2>/dev/null; wait "${pids[-1]}" 2>/dev/null

# 5. Socket activation (the LISTEN_FDS protocol, as systemd speaks it) and the idle exit.
if command -v systemd-socket-activate >/dev/null; then
        rm -f "$VHP_TMP/sock/act.sock"
        systemd-socket-activate -l "$VHP_TMP/sock/act.sock" "$api" --no-strict-perms -c "$VHP_TMP/b.json" \
                --idle-exit 1 -d >"$VHP_TMP/act.log" 2>&1 &
        act=$!
        vhp_on_exit "kill $act 2>/dev/null"
        wait_sock "$VHP_TMP/sock/act.sock"
        out=$("$wire" -t 10000 "unix:$VHP_TMP/sock/act.sock" 'send:{"action":"usb_list"}\n' line 2>&1)
        ok_reply "$out" && vhp_ok "socket-activated: the passed socket is served" || vhp_fail "activation" "$out $(cat "$VHP_TMP/act.log")"
        for _ in $(seq 200); do kill -0 "$act" 2>/dev/null || break; sleep 0.05; done
        if kill -0 "$act" 2>/dev/null; then
                vhp_fail "socket-activated: exits when idle" "$(cat "$VHP_TMP/act.log")"
        else
                wait "$act"
                rc=$?
                [ $rc = 0 ] && grep -q 'idle or stopped: exiting' "$VHP_TMP/act.log" &&
                        vhp_ok "socket-activated: exits 0 after --idle-exit without a connection" || vhp_fail "idle exit rc=$rc" "$(cat "$VHP_TMP/act.log")"
        fi
        [ -S "$VHP_TMP/sock/act.sock" ] && vhp_ok "... leaving systemd's socket in place" || vhp_fail "activated socket removed"
        # A listener keeps it alive past the idle time.
        systemd-socket-activate -l "$VHP_TMP/sock/act2.sock" "$api" --no-strict-perms -c "$VHP_TMP/b.json" \
                --idle-exit 1 >"$VHP_TMP/act2.log" 2>&1 &
        act2=$!
        vhp_on_exit "kill $act2 2>/dev/null"
        wait_sock "$VHP_TMP/sock/act2.sock"
        "$wire" -t 600000 "unix:$VHP_TMP/sock/act2.sock" 'send:{"action":"enable_notifications"}\n' line 'until:NEVER' >"$VHP_TMP/l.out" 2>&1 &
        listener=$!
        vhp_on_exit "kill $listener 2>/dev/null"
        for _ in $(seq 200); do grep -q result "$VHP_TMP/l.out" && break; sleep 0.05; done
        # The server is still there while the listener is: a second client is answered by it.
        out=$("$wire" -t 10000 "unix:$VHP_TMP/sock/act2.sock" 'sleep:1500' 'send:{"action":"usb_list"}\n' line 2>&1)
        ok_reply "$out" && kill -0 "$act2" 2>/dev/null && vhp_ok "a connected listener keeps the service up past the idle time" ||
                vhp_fail "listener and idle exit" "$out $(cat "$VHP_TMP/act2.log")"
        kill "$listener" 2>/dev/null
        for _ in $(seq 200); do kill -0 "$act2" 2>/dev/null || break; sleep 0.05; done
        ! kill -0 "$act2" 2>/dev/null && vhp_ok "... and it exits once the listener has gone" || vhp_fail "no idle exit after the listener"
else
        vhp_fail "systemd-socket-activate (package systemd) for the socket-activation checks"
fi
vhp_done
