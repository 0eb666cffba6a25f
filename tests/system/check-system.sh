#!/usr/bin/env bash
# make check-system: vhotplug installed into a real systemd (PID 1 of a private container, booted
# once by tests/system/container.sh) and driven the way udev drives it in production.
#
#  1. make install inside the container; the installed units (and any generator) load and verify;
#     the socket listens; nothing failed.
#  2. The installed rule's RUN command line, run as udevd's worker runs it (fork/exec with the
#     event's properties as the whole environment: tests/tools/vhp-udev-run), reaches the helper
#     through socket activation, and the event's work runs in the service's cgroup under its
#     sandbox (recorded by the crosvm the test configures: a wrapper around the crosvm stand-in).
#  3. A burst of 100 events (20 claimed devices as add->remove pairs, 30 unclaimed pairs, starts
#     1 ms apart, up to 8 at once as udevd does) is handled completely, each device's events in
#     order: the helper's own record (one result line per event in the journal), the state
#     database and the crosvm stand-in's log agree.
#  4. The traps: 10 activations within 10 s keep the socket healthy (StartLimitIntervalSec=0);
#     an event while no configuration exists does not fail the socket (no Condition...=). Controls
#     show both traps are real: with systemd's default start limit, or with a failing condition,
#     the socket fails.
#  5. systemctl stop of the service while a burst is in flight (an event held open by the test)
#     loses nothing: what the service had read finishes, the rest waits in the socket and starts
#     it again.
# Claimed devices go to a crosvm VM served by tests/tools/crosvm-standin (no QEMU in here: QEMU's
# usb-host needs the host's USB devices; the umockdev-based benchmarks cover QEMU).
# Needs root, unshare/nsenter, overlayfs, a cgroup2 mount (any machine this project's CI uses);
# without them it fails. Takes well under a minute.
set -u
. "$(dirname "$0")/../lib.sh"

CTR=$VHP_TOP/tests/system/container.sh
C=$VHP_TMP/container
T=/run/vhp-test # inside the container
ct() { "$CTR" exec "$C" "$@"; }
state() { ct systemctl is-active "$@"; true; } # prints the state; systemctl exits 3 unless active
stop_service() { ct systemctl stop "$@" vhotplug-helper.service 2>/dev/null; } # (no "can still be activated")

[ "$(id -u)" = 0 ] || { vhp_fail "check-system needs root (it boots systemd in a container)"; vhp_done; }
for f in vhotplug-helper vhotplug-event vhotplug-reconcile tests/vhp-udev-run; do
        [ -x "$VHP_BUILD/$f" ] || { vhp_fail "$VHP_BUILD/$f built (make tests)"; vhp_done; }
done

# ---- boot --------------------------------------------------------------------------------------
if state=$("$CTR" boot "$C" 2>"$VHP_TMP/boot.err"); then
        vhp_on_exit "'$CTR' stop '$C'"
        [ "$state" = running ] && vhp_ok "systemd $(ct systemctl --version | head -n1 | cut -d' ' -f2) booted as PID 1 in a container: running, no failed unit" ||
                vhp_fail "systemd booted: running, no failed unit" "state $state; $(cat "$VHP_TMP/boot.err")"
else
        vhp_fail "systemd boots in a container" "$(cat "$VHP_TMP/boot.err")"
        vhp_done
fi
vhp_check_output "PID 1 in the container is systemd" '^systemd$' ct cat /proc/1/comm

# ---- 1. install ------------------------------------------------------------------------------
if ct make -C "$VHP_TOP" -s --no-print-directory BUILD="$VHP_BUILD" PREFIX=/usr/local install >"$VHP_TMP/install.log" 2>&1; then
        vhp_ok "make install inside the container"
else
        vhp_fail "make install inside the container" "$(tail -n 20 "$VHP_TMP/install.log")"
fi
UNITDIR=$(ct pkg-config --variable=systemdsystemunitdir systemd)
UNITDIR=${UNITDIR:-/usr/lib/systemd/system}
UDEVDIR=$(ct pkg-config --variable=udevdir udev)
UDEVDIR=${UDEVDIR:-/usr/lib/udev}
units=$(ct sh -c "cd $UNITDIR && ls vhotplug*" | tr '\n' ' ')
vhp_check_output "units installed: $units" 'vhotplug-helper.service .*vhotplug-helper.socket' echo "$units"
verify_units=()
for u in $units; do
        case $u in *@.service) verify_units+=("$UNITDIR/${u%@.service}@vm1.service") ;; *) verify_units+=("$UNITDIR/$u") ;; esac
done
out=$(ct systemd-analyze verify --man=no "${verify_units[@]}" 2>&1)
[ -z "$out" ] && vhp_ok "systemd-analyze verify: every installed unit clean (ct the running system)" ||
        vhp_fail "systemd-analyze verify of the installed units" "$out"
# Generators (none yet; other work may add some): each runs, and what it writes verifies.
gens=$(ct sh -c 'ls /usr/lib/systemd/system-generators/*vhotplug* /lib/systemd/system-generators/*vhotplug* 2>/dev/null' | sort -u)
for g in $gens; do
        out=$(ct sh -c "rm -rf /tmp/gen && mkdir -p /tmp/gen/a /tmp/gen/b /tmp/gen/c && $g /tmp/gen/a /tmp/gen/b /tmp/gen/c &&
                find /tmp/gen -name '*.service' -o -name '*.socket' -o -name '*.timer' | xargs -r systemd-analyze verify --man=no" 2>&1) &&
                [ -z "$out" ] && vhp_ok "generator $g runs and its units verify" || vhp_fail "generator $g" "$out"
done
ct systemctl daemon-reload
for u in vhotplug-helper.socket vhotplug-helper.service vhotplug-reconcile.service vhotplug-reconcile.timer; do
        vhp_check_output "$u loaded" '^LoadState=loaded$' ct systemctl show -p LoadState "$u"
done
vhp_check_output "the socket listens (statically enabled, started by make install)" '^active$' state vhotplug-helper.socket
vhp_check_output "/run/vhotplug/helper.sock: a socket, mode 0600, in a 0700 directory" '^s 600 700$' \
        ct sh -c 'echo "$(stat -c %F /run/vhotplug/helper.sock | cut -c1) $(stat -c %a /run/vhotplug/helper.sock) $(stat -c %a /run/vhotplug)"'
vhp_check_output "the service is not running before the first event" '^inactive$' state vhotplug-helper.service
vhp_check_output "no failed unit after install" '^0$' ct sh -c 'systemctl --failed --no-legend | wc -l'

# ---- the world the events act on ----------------------------------------------------------------
# Configuration: vendor 1209 goes to crosvm VM vm-a; anything else is unclaimed. The crosvm the
# helper runs is a wrapper that records the sandbox it runs in and can hold an attach open (gate).
U=/devices/pci0000:00/0000:00:14.0/usb1
ct sh -c "mkdir -p $T /usr/local/lib/vhp-test && : >$T/vm-a.sock && mkdir -p /dev/bus/usb/001 /dev/bus/usb/002"
ct sh -c "cat >/usr/local/lib/vhp-test/crosvm" <<EOF
#!/bin/sh
# crosvm for check-system: records where it runs, waits while $T/gate exists, then the stand-in.
{ echo "pid \$\$ \$*"; grep -E '^(NoNewPrivs|Seccomp|CapBnd):' /proc/self/status; cat /proc/self/cgroup; } >$T/sandbox.last
if [ "\$2" = attach ] && [ -e $T/gate ]; then
        : >$T/gate.reached
        while [ -e $T/gate ]; do sleep 0.02; done
fi
exec $VHP_TOP/tests/tools/crosvm-standin "\$@"
EOF
ct chmod 0755 /usr/local/lib/vhp-test/crosvm
write_config() {
        ct sh -c 'cat >/etc/vhotplug.conf && chmod 0644 /etc/vhotplug.conf' <<EOF
{ "usbPassthrough": [ { "description": "test devices", "targetVm": "vm-a",
                        "allow": [ { "vendorId": "1209", "description": "pid.codes" } ] } ],
  "vms": [ { "name": "vm-a", "type": "crosvm", "socket": "$T/vm-a.sock" } ],
  "general": { "crosvm": "/usr/local/lib/vhp-test/crosvm", "qmpTimeoutMs": 30000 } }
EOF
}
write_config
ct sh -c "mkdir -p /etc/systemd/system/vhotplug-helper.service.d && cat >/etc/systemd/system/vhotplug-helper.service.d/50-test.conf" <<EOF
# check-system: the crosvm stand-in's ports and log (the helper passes its environment on).
[Service]
Environment=CROSVM_STANDIN_PORTS=200 CROSVM_STANDIN_LOG=$T/crosvm.log
EOF
ct systemctl daemon-reload

# A usbfs node per device: an 18-byte device descriptor with the ids at bytes 8-11 (crosvm
# stand-in reads them), so the attach has a real file to open.
# usb_event FILE ACTION BUS DEV VID PID SEQNUM: appends one event's properties, as udev has them.
usb_event() {
        local f=$1 action=$2 bus=$3 dev=$4 vid=$5 pid=$6 seq=$7
        local name=$bus-$dev node
        node=$(printf '/dev/bus/usb/%03d/%03d' "$bus" "$((dev + 1))")
        printf '%s\n' "ACTION=$action" "DEVPATH=$U/$name" SUBSYSTEM=usb DEVTYPE=usb_device "SEQNUM=$seq" \
                "DEVNAME=$node" "BUSNUM=$(printf %03d "$bus")" "DEVNUM=$(printf %03d "$((dev + 1))")" \
                "PRODUCT=${vid#0}/${pid#0}/100" TYPE=0/0/0 "ID_VENDOR_ID=$vid" "ID_MODEL_ID=$pid" \
                "ID_MODEL=Test device $pid" ID_USB_INTERFACES=:030102: >>"$f"
        echo >>"$f"
}
make_node() { # BUS DEV VID PID
        local node
        node=$(printf '/dev/bus/usb/%03d/%03d' "$1" "$(($2 + 1))")
        ct sh -c "mkdir -p ${node%/*} && printf '\\022\\001\\000\\002\\000\\000\\000\\100\\$(printf %03o $((0x${3:2:2})))\\$(printf %03o $((0x${3:0:2})))\\$(printf %03o $((0x${4:2:2})))\\$(printf %03o $((0x${4:0:2})))\\000\\001\\001\\002\\003\\001' >$node"
}

RUN_CMD=$(ct sh -c "sed -n 's/^RUN+=\"\\(.*\\)\"\$/\\1/p' $UDEVDIR/rules.d/90-vhotplug.rules")
vhp_check_output "the installed rule's RUN command line is the client alone: '$RUN_CMD'" '^/usr/local/sbin/vhotplug-event$' echo "$RUN_CMD"

# results: the helper's result line per event (print_result, stdout to the journal), in order.
results() { ct journalctl -q -u vhotplug-helper.service -o cat --no-pager | grep -aE '^usb [0-9]+-[0-9]+ ' ; }
# wait_results N: until N result lines are in the journal (60 s at most; not a timing check).
wait_results() {
        local i
        for ((i = 0; i < 600; i++)); do
                [ "$(results | wc -l)" -ge "$1" ] && return 0
                sleep 0.1
        done
        return 1
}
crosvm_log() { ct cat $T/crosvm.log 2>/dev/null; }
sql() { ct sqlite3 -batch -cmd '.timeout 10000' /var/lib/vhotplug/state.db "$@"; }
run_events() { # EVENTS_FILE(container path) [vhp-udev-run options]
        local f=$1
        shift
        ct "$VHP_BUILD/tests/vhp-udev-run" "$@" "$RUN_CMD" "$f"
}
copy_in() { ct sh -c "cat >$2" <"$1"; }

# ---- 2. one event through socket activation -----------------------------------------------------
make_node 1 1 1209 0001
: >"$VHP_TMP/ev1"
usb_event "$VHP_TMP/ev1" add 1 1 1209 0001 1001
copy_in "$VHP_TMP/ev1" $T/ev1
run_events $T/ev1 -o $T/ev1.times
vhp_check "the RUN line exits 0" test $? = 0
if wait_results 1; then
        vhp_check_output "the event reached the helper through socket activation: attached to vm-a" \
                '^usb 1-1 1209:0001: attach -> vm-a as port 1 \[done\]' results
else
        vhp_fail "the event reached the helper through socket activation" "$(ct journalctl -q -u vhotplug-helper.service -o cat --no-pager | tail -n 20)"
fi
vhp_check_output "the service was started by systemd (socket activation)" '^Started vhotplug-helper.service' \
        ct journalctl -q -u vhotplug-helper.service -o cat --no-pager
sandbox=$(ct cat $T/sandbox.last)
vhp_check_output "the event's work ran in the service's cgroup" '^0::/system.slice/vhotplug-helper.service$' echo "$sandbox"
vhp_check_output "... with no new privileges and a seccomp filter (the unit's sandbox)" 'NoNewPrivs:[[:space:]]+1' echo "$sandbox"
vhp_check_output "... seccomp filter mode" 'Seccomp:[[:space:]]+2' echo "$sandbox"
# CAP_CHOWN(0) CAP_DAC_OVERRIDE(1) CAP_DAC_READ_SEARCH(2) CAP_FOWNER(3) = 0xf
vhp_check_output "... with the unit's capability bounding set" 'CapBnd:[[:space:]]+0+f$' echo "$sandbox"
vhp_check_output "recorded in the state database" '^vm-a\|attached\|1$' sql "SELECT vm, state, crosvm_port FROM current_attachments WHERE devpath='$U/1-1'"
# The state directory lets others through to the API's default socket, not in: 0711, the database
# 0600; another user can pass through the directory but neither list it nor read the database.
vhp_check_output "/var/lib/vhotplug 0711, state.db 0600, both root's" '^711 0 600 0$' \
        ct sh -c 'echo "$(stat -c "%a %u" /var/lib/vhotplug) $(stat -c "%a %u" /var/lib/vhotplug/state.db)"'
vhp_check_output "another user passes through the state directory, cannot list it or read the database" '^pass nolist noread$' \
        ct setpriv --reuid=65534 --regid=65534 --clear-groups sh -c \
        'cd /var/lib/vhotplug && echo -n "pass "; ls . >/dev/null 2>&1 && echo -n "list " || echo -n "nolist "; cat state.db >/dev/null 2>&1 && echo read || echo noread'
vhp_check_output "the RUN client's own run was short and small (maxrss, KiB)" '^0 1001 .* 0 [0-9]+ [0-9]+$' ct cat $T/ev1.times
: >"$VHP_TMP/ev1r"
usb_event "$VHP_TMP/ev1r" remove 1 1 1209 0001 1002
copy_in "$VHP_TMP/ev1r" $T/ev1r
run_events $T/ev1r
wait_results 2
last=$(results | tail -n1)
vhp_check_output "remove: detached" '^usb 1-1 1209:0001: detach -> vm-a .*\[done\]' echo "$last"

# ---- 3. burst of 100 ---------------------------------------------------------------------------
# Devices 2-1..2-20: vendor 1209 (claimed), 2-21..2-50: vendor dead (unclaimed). Each device: add,
# then remove; a device's remove follows its add directly (1 ms apart), devices interleaved.
: >"$VHP_TMP/burst"
seq=2000
for ((i = 1; i <= 50; i++)); do
        if ((i <= 20)); then vid=1209; else vid=dead; fi
        pid=$(printf %04x "$i")
        make_node 2 "$i" "$vid" "$pid"
        usb_event "$VHP_TMP/burst" add 2 "$i" "$vid" "$pid" $((seq += 1))
        usb_event "$VHP_TMP/burst" remove 2 "$i" "$vid" "$pid" $((seq += 1))
done
copy_in "$VHP_TMP/burst" $T/burst
before=$(results | wc -l)
ct sh -c ": >$T/crosvm.log"
run_events $T/burst -j 8 -i 1000 -o $T/burst.times
vhp_check "burst: 100 RUN lines exit 0" test $? = 0
if wait_results $((before + 100)); then vhp_ok "burst: 100 results"; else vhp_fail "burst: 100 results" "$(($(results | wc -l) - before)) arrived"; fi
results | tail -n +$((before + 1)) >"$VHP_TMP/burst.results"
# Per device: the sequence of actions in the helper's record.
bad=
for ((i = 1; i <= 50; i++)); do
        got=$(grep -aE "^usb 2-$i " "$VHP_TMP/burst.results" | sed -E 's/^usb [^ ]+ [^ ]+: ([a-z]+).*\[([a-z-]+)\].*/\1:\2/; s/^usb [^ ]+ [^ ]+: ignore.*/ignore/' | tr '\n' ' ')
        if ((i <= 20)); then want="attach:done detach:done "; else want="ignore ignore "; fi
        [ "$got" = "$want" ] || bad="$bad 2-$i:[$got]"
done
[ -z "$bad" ] && vhp_ok "burst: every device's events handled once, in order (20 attach->detach, 30 unclaimed)" ||
        vhp_fail "burst: per-device order" "$bad"
vhp_check_output "burst: no event dropped as stale or failed" '^0$' echo "$(grep -acE 'stale|failed|error' "$VHP_TMP/burst.results")"
bad=
clog=$(crosvm_log)
for ((i = 1; i <= 20; i++)); do
        node=$(printf '/dev/bus/usb/002/%03d' $((i + 1)))
        got=$(grep -E "usb (attach [^ ]+ $node|detach)" <<<"$clog" | grep -c "$node")
        [ "$got" = 1 ] || bad="$bad $node:$got"
done
n_att=$(grep -c '^usb attach' <<<"$clog"); n_det=$(grep -c '^usb detach' <<<"$clog")
[ -z "$bad" ] && [ "$n_att" = 20 ] && [ "$n_det" = 20 ] && vhp_ok "burst: crosvm got 20 attaches and 20 detaches" ||
        vhp_fail "burst: crosvm log" "attach $n_att detach $n_det $bad"
vhp_check_output "burst: the database: 20 attach->detach lifecycles, nothing open" '^20\|0$' \
        sql "SELECT (SELECT count(*) FROM attachments WHERE devpath LIKE '$U/2-%' AND state='detached'), (SELECT count(*) FROM current_attachments)"
bad=$(sql "SELECT devpath FROM history WHERE devpath LIKE '$U/2-%' GROUP BY devpath
           HAVING group_concat(action || ':' || outcome, ' ') NOT LIKE 'attach:started attach:attached detach:%detached'" 2>&1)
[ -z "$bad" ] && vhp_ok "burst: history in order per device (attach started, attached, then detach)" || vhp_fail "burst: history order" "$bad"
vhp_check_output "burst: the crosvm stand-in's VM is empty again" '^devices$' \
        ct "$VHP_TOP/tests/tools/crosvm-standin" usb list $T/vm-a.sock

# ---- 4. traps ------------------------------------------------------------------------------------
starts() { ct journalctl -q -u vhotplug-helper.service -o cat --no-pager | grep -c '^Started '; }
# 10 activations in well under 10 s: each event starts the service, the test stops it after.
stop_service # still running after the burst: the first event below must start it
s0=$(starts)
ok=1
for ((k = 1; k <= 10; k++)); do
        : >"$VHP_TMP/evk"
        usb_event "$VHP_TMP/evk" add 3 "$k" dead 0001 $((3000 + k))
        copy_in "$VHP_TMP/evk" $T/evk
        n=$(results | wc -l)
        run_events $T/evk || ok=0
        wait_results $((n + 1)) || ok=0
        stop_service || ok=0
done
vhp_check_output "10 activations: 10 starts of the service, every event handled" '^1 10$' echo "$ok $(($(starts) - s0))"
vhp_check_output "... and the socket is still listening (start limit off)" '^active$' state vhotplug-helper.socket
# No configuration: the service still starts and drops the event, the socket stays up.
ct mv /etc/vhotplug.conf /etc/vhotplug.conf.away
: >"$VHP_TMP/evn"
usb_event "$VHP_TMP/evn" add 3 20 1209 0020 3100
copy_in "$VHP_TMP/evn" $T/evn
run_events $T/evn
for _ in $(seq 300); do
        ct journalctl -q -u vhotplug-helper.service -o cat --no-pager | grep -q 'events are dropped until' && break
        sleep 0.1
done
vhp_check_output "no configuration: the event is dropped, said once in the journal" 'vhotplug.conf.*events are dropped until' \
        ct journalctl -q -u vhotplug-helper.service -o cat --no-pager
stop_service
vhp_check_output "... and the socket is still listening (no Condition...=)" '^active$' state vhotplug-helper.socket
ct mv /etc/vhotplug.conf.away /etc/vhotplug.conf

# Controls: the traps are real (the socket fails), then undone.
trap_control() { # description, drop-in text, number of activations
        local desc=$1 text=$2 n=$3 k state
        ct sh -c "cat >/etc/systemd/system/vhotplug-helper.service.d/90-trap.conf" <<<"$text"
        ct systemctl daemon-reload
        for ((k = 1; k <= n; k++)); do
                : >"$VHP_TMP/evt"
                usb_event "$VHP_TMP/evt" add 4 "$k" dead 0001 $((4000 + k))
                copy_in "$VHP_TMP/evt" $T/evt
                run_events $T/evt 2>/dev/null
                for _ in $(seq 100); do
                        state=$(state vhotplug-helper.service vhotplug-helper.socket | tr '\n' ' ')
                        [[ $state == "active "* || $state == *failed* ]] && break
                        sleep 0.05
                done
                [[ $state == *" failed "* ]] && break
                stop_service
        done
        state=$(state vhotplug-helper.socket)
        [ "$state" = failed ] && vhp_ok "control: $desc: the socket fails" ||
                vhp_fail "control: $desc: the socket fails" "socket $state after $k activations"
        ct rm /etc/systemd/system/vhotplug-helper.service.d/90-trap.conf
        ct systemctl daemon-reload
        ct systemctl reset-failed vhotplug-helper.socket vhotplug-helper.service
        stop_service
        ct systemctl start vhotplug-helper.socket
}
trap_control "systemd's default start limit (5 in 10 s)" $'[Unit]\nStartLimitIntervalSec=10s\nStartLimitBurst=5' 8
trap_control "a failing ConditionPathExists= on the service" $'[Unit]\nConditionPathExists=/nonexistent' 2
vhp_check_output "after the controls the socket listens again" '^active$' state vhotplug-helper.socket

# ---- 5. stop mid-burst --------------------------------------------------------------------------
# 30 devices (10 claimed, 20 unclaimed), add+remove each, in two halves. The first claimed attach
# is held open (gate) while the test asks systemd to stop the service; the second half is sent
# while it is stopping (the service reads no more: those wait in the socket); then the gate opens.
: >"$VHP_TMP/stop1"
: >"$VHP_TMP/stop2"
seq=5000
for ((i = 1; i <= 30; i++)); do
        if ((i % 3 == 1)); then vid=1209; else vid=dead; fi
        pid=$(printf %04x "$i")
        make_node 5 "$i" "$vid" "$pid"
        f=$VHP_TMP/stop1
        ((i > 15)) && f=$VHP_TMP/stop2
        usb_event "$f" add 5 "$i" "$vid" "$pid" $((seq += 1))
        usb_event "$f" remove 5 "$i" "$vid" "$pid" $((seq += 1))
done
copy_in "$VHP_TMP/stop1" $T/stop1
copy_in "$VHP_TMP/stop2" $T/stop2
before=$(results | wc -l)
s0=$(starts)
ct sh -c ": >$T/crosvm.log; : >$T/gate; rm -f $T/gate.reached"
run_events $T/stop1 -j 8 -i 1000
rc1=$?
for _ in $(seq 300); do ct test -e $T/gate.reached && break; sleep 0.1; done
stop_service --no-block
for _ in $(seq 100); do [ "$(state vhotplug-helper.service)" = deactivating ] && break; sleep 0.05; done
vhp_check_output "the service is stopping while an event is held open" '^deactivating$' state vhotplug-helper.service
run_events $T/stop2 -j 8 -i 1000
rc2=$?
vhp_check "stop mid-burst: 60 RUN lines exit 0 (30 before the stop, 30 during it)" test "$rc1$rc2" = 00
ct rm -f $T/gate
if wait_results $((before + 60)); then vhp_ok "stop mid-burst: all 60 events handled"; else vhp_fail "stop mid-burst: all 60 events handled" "$(($(results | wc -l) - before)) of 60"; fi
vhp_check_output "... the events sent during the stop started the service again" '^[2-9]' echo "$(($(starts) - s0))"
results | tail -n +$((before + 1)) >"$VHP_TMP/stop.results"
bad=
for ((i = 1; i <= 30; i++)); do
        got=$(grep -aE "^usb 5-$i " "$VHP_TMP/stop.results" | sed -E 's/^usb [^ ]+ [^ ]+: ([a-z]+).*\[([a-z-]+)\].*/\1:\2/; s/^usb [^ ]+ [^ ]+: ignore.*/ignore/' | tr '\n' ' ')
        if ((i % 3 == 1)); then want="attach:done detach:done "; else want="ignore ignore "; fi
        [ "$got" = "$want" ] || bad="$bad 5-$i:[$got]"
done
[ -z "$bad" ] && vhp_ok "stop mid-burst: every device's events handled once, in order" || vhp_fail "stop mid-burst: order" "$bad"
open=$(sql 'SELECT count(*) FROM current_attachments')
vm=$(ct "$VHP_TOP/tests/tools/crosvm-standin" usb list $T/vm-a.sock)
vhp_check_output "stop mid-burst: nothing open in the database, crosvm empty" '^0 devices$' echo "$open $vm"

# ---- the end: idle exit, nothing failed ------------------------------------------------------------
for _ in $(seq 200); do [ "$(state vhotplug-helper.service)" = inactive ] && break; sleep 0.1; done
vhp_check_output "the service exits by itself when idle (no resident process)" '^inactive$' state vhotplug-helper.service
vhp_check_output "no failed unit at the end" '^0$' ct sh -c 'systemctl --failed --no-legend | wc -l'
vhp_done
