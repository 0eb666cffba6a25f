#!/usr/bin/env bash
# bench/handoff.sh: the production event path, measured under a real systemd 252 as PID 1 (the
# container of tests/system/container.sh), from the udev rule's RUN command line to the helper's
# work, its result, and the device in QEMU; against the path it replaced (one systemd-run
# transient unit per event with the old drop-in, kept in bench/baseline/), in the same run.
# `make bench-handoff` runs it (root). Results: medians, ratios, targets of issue 13; raw data in
# $BENCH_OUT (default: a kept temp dir).
#
# How: the RUN lines run as udevd's worker runs them (tests/tools/vhp-udev-run: fork/exec, the
# event's properties as the whole environment), one event at a time or in bursts (8 at once,
# one device's events one after another). The helper runs with --debug --json and its output goes
# to a FIFO read by a timestamping reader (not to the journal; same for both paths), so:
#   to work    = RUN program start -> the helper's first line for the event ("handling", logged
#                after it has its configuration: the hand-off, plus the config load on the old path)
#   to result  = RUN program start -> the helper's JSON result (for an attach: device in QEMU)
# CPU comes from cgroup accounting (cpu.stat usage_usec) of PID 1 (init.scope) and every service
# (system.slice: the helper service and its children, the transient units and the sandbox setup
# done in them, journald, dbus), plus the RUN program's own CPU (wait4 rusage); the tool that
# plays udevd, QEMU and the measuring processes are in cgroups of their own and not counted.
# QEMU (TCG) and the USB devices it attaches live in a umockdev testbed (fake sysfs + usbfs) shared
# by QEMU and the helper (LD_PRELOAD through a drop-in); the unclaimed-event phase runs without
# the preload, on a real PCI device of this machine.
#
# Environment: BUILD, BENCH_OUT, BENCH_QUICK=1 (few runs, to try the script).
set -u

VHP_TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$VHP_TOP/$BUILD ;; esac
CTR=$VHP_TOP/tests/system/container.sh
export VHP_TOP VHP_BUILD=$BUILD # container.sh binds them in when they are under /tmp
quick=${BENCH_QUICK:-0}
runs() { [ "$quick" = 1 ] && echo "${2:-5}" || echo "$1"; }

[ "$(id -u)" = 0 ] || { echo "bench-handoff: needs root (boots systemd in a container)" >&2; exit 1; }
for f in vhotplug-helper vhotplug-event tests/vhp-udev-run tests/vhp-qmp; do
        [ -x "$BUILD/$f" ] || { echo "bench-handoff: $BUILD/$f missing (make all tests)" >&2; exit 1; }
done
for c in umockdev-run qemu-system-x86_64 perl jq; do
        command -v $c >/dev/null || { echo "bench-handoff: $c missing" >&2; exit 1; }
done

BENCH_OUT=${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/vhp-handoff.XXXXXX")}
mkdir -p "$BENCH_OUT"
RES=$BENCH_OUT/handoff.tsv
: >"$RES"
echo "bench-handoff: raw results in $BENCH_OUT" >&2
C=$BENCH_OUT/container
"$CTR" stop "$C" 2>/dev/null
"$CTR" boot "$C" >/dev/null || exit 1
trap '"$CTR" stop "$C"' EXIT
ct() { "$CTR" exec "$C" "$@"; }
ctg() { local g=$1; shift; VHP_CGROUP=$g "$CTR" exec "$C" "$@"; } # in cgroup /$g
R=$("$CTR" root "$C")
CG=$(cat "$C/cgroup")
B=/run/bench # inside
LOG=$R$B/out.log

result() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >>"$RES"; printf '  %-44s %10s %s  %s\n' "$1" "$2" "$3" "${4:-}" >&2; }
# deltas FILE A B: (column B - column A) / 1000 of each row where both are timestamps; a line the
# log lacks is "-" in its row, so it leaves a value out instead of turning it into garbage.
deltas() { awk -v a="$2" -v b="$3" '$a ~ /^[0-9]+$/ && $b ~ /^[0-9]+$/ { print ($b - $a) / 1000 }' "$1"; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "NaN"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
usec() { awk '$1 == "usage_usec" { print $2 }' "$CG/$1/cpu.stat" 2>/dev/null || echo 0; }
cpu_snapshot() { echo "$(usec init.scope) $(usec system.slice) $(usec system.slice/systemd-journald.service)"; }

# ---- setup ------------------------------------------------------------------------------------------
ct make -C "$VHP_TOP" -s --no-print-directory BUILD="$BUILD" PREFIX=/usr/local install >"$BENCH_OUT/install.log" 2>&1 ||
        { echo "bench-handoff: make install failed" >&2; cat "$BENCH_OUT/install.log" >&2; exit 1; }
mkdir -p "$R$B"
"$VHP_TOP/tests/tools/gen-usb-fixture.sh" 100 >"$R$B/usb-100.umockdev"
# The testbed lives as long as this holder runs.
# (Background commands run in a subshell: no job of this shell, no "Terminated" when the
# container stops them.)
(ctg vhp-bench-aux umockdev-run -d $B/usb-100.umockdev -- sh -c "echo \"\$UMOCKDEV_DIR\" >$B/umockdev.dir; exec sleep infinity" </dev/null &)
for _ in $(seq 100); do [ -s "$R$B/umockdev.dir" ] && break; sleep 0.05; done
UD=$(cat "$R$B/umockdev.dir")
PRELOAD="LD_PRELOAD=libumockdev-preload.so.0 UMOCKDEV_DIR=$UD"
# The timestamping reader: opens the FIFO read-write (never sees EOF), one "USEC line" per line.
ct mkfifo $B/out.fifo
(ctg vhp-bench-aux perl -MTime::HiRes=time -e '$|=1; open(my $f, "+<", $ARGV[0]) or die; while (<$f>) { printf "%d %s", time()*1e6, $_ }' \
        $B/out.fifo </dev/null >"$LOG" &)

QEMU_ARGS="-machine q35,accel=tcg -nodefaults -display none -S -device qemu-xhci,id=xhci,p2=8,p3=8 -device qemu-xhci,id=xhci2,p2=15,p3=1"
qemu_start() {
        ct sh -c "pkill -x qemu-system-x86 ; rm -f $B/vm.sock" 2>/dev/null
        # shellcheck disable=SC2086
        (ctg vhp-bench-qemu env $PRELOAD qemu-system-x86_64 $QEMU_ARGS -qmp unix:$B/vm.sock,server=on,wait=off \
                </dev/null >"$BENCH_OUT/qemu.log" 2>&1 &)
        for _ in $(seq 200); do [ -S "$R$B/vm.sock" ] && return 0; sleep 0.05; done
        echo "bench-handoff: QEMU did not start" >&2; cat "$BENCH_OUT/qemu.log" >&2; exit 1
}
qemu_count() { "$BUILD/tests/vhp-qmp" "$R$B/vm.sock" qom-list '{"path":"/machine/peripheral"}' | jq '[.[] | select(.type=="child<usb-host>")] | length'; }

# Configuration: devices 1209:0001..0014 (1-1..1-20) go to QEMU "vm"; nothing else is claimed.
{
        printf '{ "usbPassthrough": [ { "targetVm": "vm", "allow": ['
        for ((i = 1; i <= 20; i++)); do printf '%s{ "vendorId": "1209", "productId": "%04x" }' "$([ $i -gt 1 ] && echo ,)" $i; done
        printf '] } ],\n  "vms": [ { "name": "vm", "type": "qemu", "socket": "%s/vm.sock" } ],\n' $B
        printf '  "general": { "qmpTimeoutMs": 5000, "attachRetries": 5 } }\n'
} >"$R/etc/vhotplug.conf"
chmod 0644 "$R/etc/vhotplug.conf"
jq empty "$R/etc/vhotplug.conf" || exit 1

# The two paths. NEW: the installed rule (vhotplug-event -> socket -> service). OLD: the previous
# rule's USB line (systemd-run, one transient unit per event) and its drop-in, as they were.
NEW_RUN=$(sed -n 's/^RUN+="\(.*\)"$/\1/p' "$R/usr/lib/udev/rules.d/90-vhotplug.rules" "$R/lib/udev/rules.d/90-vhotplug.rules" 2>/dev/null | head -n1)
old_run() { # N: the old rule's Nth RUN line (1 USB, 2 PCI, 3 input), as installed, helper with --debug --json
        sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$VHP_TOP/bench/baseline/90-vhotplug-systemd-run.rules.in" |
                sed -n 's/^RUN+="\(.*\)"$/\1/p' | sed -n "${1}p" |
                sed -e 's|@systemd_run@|/usr/bin/systemd-run|' -e 's|@sbindir@/vhotplug-helper|/usr/local/sbin/vhotplug-helper --debug --json|'
}
OLD_RUN_USB=$(old_run 1)
OLD_RUN_PCI=$(old_run 2)
[ -n "$NEW_RUN" ] && [[ $OLD_RUN_USB == /usr/bin/systemd-run* ]] && [[ $OLD_RUN_PCI == /usr/bin/systemd-run* ]] ||
        { echo "bench-handoff: RUN lines not found" >&2; exit 1; }
echo "bench-handoff: new RUN: $NEW_RUN" >&2
echo "bench-handoff: old RUN (USB): $OLD_RUN_USB" >&2
OLD_DROPIN=/etc/systemd/system/vhotplug-helper-.service.d
NEW_DROPIN=/etc/systemd/system/vhotplug-helper.service.d
# use_path new|old plain|testbed: installs the drop-ins of that path (output to the FIFO, where the
# reader timestamps each line: without $INVOCATION_ID the helper logs to that stderr, not to the
# journal as it does in production; the umockdev preload for "testbed") and sets RUN (the old path: the PCI line for "plain", which
# measures a PCI event, the USB line for "testbed").
use_path() {
        local env=""
        [ "$2" = testbed ] && env="Environment=$PRELOAD"
        ct sh -c "rm -rf $OLD_DROPIN $NEW_DROPIN; systemctl stop vhotplug-helper.service 2>/dev/null; mkdir -p $OLD_DROPIN $NEW_DROPIN"
        if [ "$1" = new ]; then
                printf '[Service]\nExecStart=\nExecStart=/usr/local/sbin/vhotplug-helper --service --debug --json\nStandardOutput=file:%s/out.fifo\nUnsetEnvironment=INVOCATION_ID\n%s\n' \
                        $B "$env" >"$R$NEW_DROPIN/50-bench.conf"
        else
                cp "$VHP_TOP/bench/baseline/vhotplug-helper-.service.d-10-vhotplug.conf" "$R$OLD_DROPIN/10-vhotplug.conf"
                printf '[Service]\nStandardOutput=file:%s/out.fifo\nUnsetEnvironment=INVOCATION_ID\n%s\n' $B "$env" >"$R$OLD_DROPIN/50-bench.conf"
        fi
        ct systemctl daemon-reload
        RUN=$NEW_RUN
        [ "$1" = old ] && [ "$2" = plain ] && RUN=$OLD_RUN_PCI
        [ "$1" = old ] && [ "$2" = testbed ] && RUN=$OLD_RUN_USB
}

SEQ=100000
# ev_file FILE ACTION DEVPATH [PROPS_FILE]: appends an event (properties + ACTION, DEVPATH, SEQNUM).
ev_file() {
        SEQ=$((SEQ + 1))
        { [ -n "${4:-}" ] && sed 's/\\n$//' "$4"; echo "ACTION=$2"; echo "DEVPATH=$3"; echo "SEQNUM=$SEQ"; echo; } >>"$1"
}
usb_props() { echo "$R$UD/sys/devices/pci0000:00/0000:00:14.0/usb1/1-$1/uevent"; }
usb_path() { echo "/devices/pci0000:00/0000:00:14.0/usb1/1-$1"; }
# wait_seq SEQ...: until the JSON result of each SEQNUM is in the log (60 s at most).
wait_seq() {
        local s i
        for s in "$@"; do
                for ((i = 0; i < 30000; i++)); do grep -q "\"SEQNUM\":\"$s\"" "$LOG" && break; sleep 0.002; done
        done
}
t_work() { local t; t=$(grep -a -m1 "handling (seqnum $1)" "$LOG" | cut -d' ' -f1); echo "${t:--}"; }
t_result() { local t; t=$(grep -a -m1 "\"SEQNUM\":\"$1\"" "$LOG" | cut -d' ' -f1); echo "${t:--}"; }
outcome() { grep -m1 "\"SEQNUM\":\"$1\"" "$LOG" | cut -d' ' -f2- | jq -r .outcome; }

# single KEY EVENTS_FILE: runs the events one at a time (each waits for the previous result);
# records per event: to work, to result, RUN program wall and CPU; CPU per event from cgroups.
single() {
        local key=$1 f=$2 n seqs s c0 c1 line start end cpu i
        n=$(grep -c '^SEQNUM=' "$f")
        mapfile -t seqs < <(sed -n 's/^SEQNUM=//p' "$f")
        : >"$BENCH_OUT/$key.rows"
        c0=$(cpu_snapshot)
        local client_cpu=0
        for ((i = 0; i < n; i++)); do
                s=${seqs[$i]}
                awk -v s="$s" 'BEGIN { RS = ""; ORS = "\n\n" } $0 ~ "SEQNUM=" s "(\n|$)"' "$f" >"$R$B/one.ev"
                ctg vhp-udev "$BUILD/tests/vhp-udev-run" -q -o $B/one.times "$RUN" $B/one.ev
                wait_seq "$s"
                read -r _ _ _ start end _ cpu _ <"$R$B/one.times"
                client_cpu=$((client_cpu + cpu))
                echo "$s $start $end $cpu $(t_work "$s") $(t_result "$s") $(outcome "$s")" >>"$BENCH_OUT/$key.rows"
        done
        sleep 0.3 # let the last unit's teardown (old path) be accounted
        c1=$(cpu_snapshot)
        result "$key.to-work" "$(deltas "$BENCH_OUT/$key.rows" 2 5 | median)" ms "median of $(deltas "$BENCH_OUT/$key.rows" 2 5 | wc -l)/$n"
        result "$key.to-result" "$(deltas "$BENCH_OUT/$key.rows" 2 6 | median)" ms "median of $(deltas "$BENCH_OUT/$key.rows" 2 6 | wc -l)/$n"
        result "$key.run-wall" "$(awk '{ print ($3 - $2) / 1000 }' "$BENCH_OUT/$key.rows" | median)" ms "RUN program start to exit"
        result "$key.run-cpu" "$(awk '{ print $4 / 1000 }' "$BENCH_OUT/$key.rows" | median)" ms "RUN program CPU"
        result "$key.outcomes" "$(awk '{ print $7 }' "$BENCH_OUT/$key.rows" | sort | uniq -c | awk '{ printf "%s%s:%s", (NR > 1 ? "," : ""), $2, $1 }')" - ""
        read -r i0 s0 j0 <<<"$c0"
        read -r i1 s1 j1 <<<"$c1"
        result "$key.cpu-total" "$(awk -v a=$((i1 - i0 + s1 - s0 + client_cpu)) -v n="$n" 'BEGIN { printf "%.2f", a / n / 1000 }')" ms \
                "per event: PID 1 + services + RUN program"
        result "$key.cpu-pid1" "$(awk -v a=$((i1 - i0)) -v n="$n" 'BEGIN { printf "%.2f", a / n / 1000 }')" ms "per event: PID 1"
        result "$key.cpu-journald" "$(awk -v a=$((j1 - j0)) -v n="$n" 'BEGIN { printf "%.2f", a / n / 1000 }')" ms "per event: journald"
        result "$key.cpu-services" "$(awk -v a=$((s1 - s0 - j1 + j0)) -v n="$n" 'BEGIN { printf "%.2f", a / n / 1000 }')" ms \
                "per event: helper/units incl. sandbox setup, dbus (not journald)"
}

# ---- 1. unclaimed event: a real PCI device of this machine, no preload ------------------------------
pci=$(ls /sys/bus/pci/devices | head -n1)
pci_sys=$(readlink -f "/sys/bus/pci/devices/$pci")
{ grep -v '^$' "$pci_sys/uevent"; echo SUBSYSTEM=pci; } >"$BENCH_OUT/pci.props"
N1=$(runs 40 8)
for path in new old; do
        echo "bench-handoff: unclaimed PCI $pci, $path path" >&2
        use_path $path plain
        f=$BENCH_OUT/unclaimed.ev
        : >"$f"
        for ((k = 0; k < N1 + 3; k++)); do ev_file "$f" change "${pci_sys#/sys}" "$BENCH_OUT/pci.props"; done
        # 3 warm-ups (for the new path: the first starts the service), then N1 measured
        awk 'BEGIN { RS = ""; ORS = "\n\n" } NR <= 3' "$f" >"$f.warm"
        awk 'BEGIN { RS = ""; ORS = "\n\n" } NR > 3' "$f" >"$f.meas"
        single "$path.unclaimed.warmup" "$f.warm" >/dev/null 2>&1
        single "$path.unclaimed" "$f.meas"
done
# The new path from cold: every event has to start the service first.
use_path new plain
f=$BENCH_OUT/cold.ev
: >"$f"
for ((k = 0; k < $(runs 10 3); k++)); do
        ev_file "$f" change "${pci_sys#/sys}" "$BENCH_OUT/pci.props"
done
: >"$BENCH_OUT/cold.rows"
mapfile -t cseqs < <(sed -n 's/^SEQNUM=//p' "$f")
for s in "${cseqs[@]}"; do
        ct systemctl stop vhotplug-helper.service 2>/dev/null
        awk -v s="$s" 'BEGIN { RS = ""; ORS = "\n\n" } $0 ~ "SEQNUM=" s "(\n|$)"' "$f" >"$R$B/one.ev"
        ctg vhp-udev "$BUILD/tests/vhp-udev-run" -q -o $B/one.times "$RUN" $B/one.ev
        wait_seq "$s"
        read -r _ _ _ start _ <"$R$B/one.times"
        echo "$start $(t_work "$s") $(t_result "$s")" >>"$BENCH_OUT/cold.rows"
done
result "new.cold.to-work" "$(deltas "$BENCH_OUT/cold.rows" 1 2 | median)" ms "service not running: socket activation first"
result "new.cold.to-result" "$(deltas "$BENCH_OUT/cold.rows" 1 3 | median)" ms ""
ct systemctl stop vhotplug-helper.service 2>/dev/null
rss=$(grep -a 'peak RSS' "$LOG" | tail -n1)
kib_to_mb() { sed -nE "s/.*$1 ([0-9]+) KiB.*/\1/p" <<<"$rss" | awk '{ printf "%.2f", $1 / 1024 } END { if (NR == 0) print "NaN" }'; }
result "new.rss.service" "$(kib_to_mb service)" MB "peak RSS of the service process (VmHWM)"
result "new.rss.child" "$(kib_to_mb children)" MB "largest peak RSS of an event child (wait4)"

# ---- 2. USB attach into QEMU and detach, one at a time --------------------------------------------
N2=$(runs 20 4)
qemu_start
ct rm -f /var/lib/vhotplug/state.db /var/lib/vhotplug/state.db-wal /var/lib/vhotplug/state.db-shm
# Raw QMP device_add of the same device (connect, greeting, capabilities, device_add: as the
# helper does), device_del outside the measurement; the umockdev preload is in QEMU either way.
# One bash loop inside the container (no container entry per run): vhp-qmp's own start is in it,
# as the helper's connect is in its attach.
ctg vhp-bench-aux bash -c 'q=$1 s=$2 n=$3 add=$4
        for ((k = 0; k < n + 3; k++)); do
                $q $s device_del "{\"id\":\"raw-1\"}" >/dev/null 2>&1
                sleep 0.05
                t0=${EPOCHREALTIME/./}
                $q $s device_add "$add" >/dev/null 2>&1 && ok=1 || ok=0
                t1=${EPOCHREALTIME/./}
                ((k >= 3)) && echo "$((t1 - t0)) $ok"
        done
        $q $s device_del "{\"id\":\"raw-1\"}" >/dev/null 2>&1' sh "$BUILD/tests/vhp-qmp" $B/vm.sock "$N2" \
        '{"driver":"usb-host","hostbus":1,"hostaddr":2,"id":"raw-1"}' >"$BENCH_OUT/qmp.rows"
result "qmp.device_add" "$(awk '$2 == 1 { print $1 / 1000 }' "$BENCH_OUT/qmp.rows" | median)" ms \
        "vhp-qmp: start, connect, greeting, capabilities, device_add; ok $(awk '$2 == 1' "$BENCH_OUT/qmp.rows" | wc -l)/$N2"
sleep 0.2
for path in new old; do
        echo "bench-handoff: USB attach/detach into QEMU, $path path" >&2
        use_path $path testbed
        ct rm -f /var/lib/vhotplug/state.db /var/lib/vhotplug/state.db-wal /var/lib/vhotplug/state.db-shm
        fa=$BENCH_OUT/attach-$path.ev
        fr=$BENCH_OUT/detach-$path.ev
        : >"$fa"; : >"$fr"
        warm=$BENCH_OUT/warm-$path.ev
        : >"$warm"
        ev_file "$warm" add "$(usb_path 1)" "$(usb_props 1)"
        ev_file "$warm" remove "$(usb_path 1)" "$(usb_props 1)"
        single "$path.attach.warmup" "$warm" >/dev/null 2>&1
        for ((k = 0; k < N2; k++)); do
                ev_file "$fa" add "$(usb_path 1)" "$(usb_props 1)"
                ev_file "$fr" remove "$(usb_path 1)" "$(usb_props 1)"
        done
        # Alternate add and remove; measure each kind on its own rows.
        mapfile -t aseq < <(sed -n 's/^SEQNUM=//p' "$fa")
        mapfile -t rseq < <(sed -n 's/^SEQNUM=//p' "$fr")
        : >"$BENCH_OUT/$path.cycle.ev"
        for ((k = 0; k < N2; k++)); do
                awk -v s="${aseq[$k]}" 'BEGIN { RS = ""; ORS = "\n\n" } $0 ~ "SEQNUM=" s "(\n|$)"' "$fa" >>"$BENCH_OUT/$path.cycle.ev"
                awk -v s="${rseq[$k]}" 'BEGIN { RS = ""; ORS = "\n\n" } $0 ~ "SEQNUM=" s "(\n|$)"' "$fr" >>"$BENCH_OUT/$path.cycle.ev"
        done
        single "$path.cycle" "$BENCH_OUT/$path.cycle.ev" >/dev/null 2>&1
        rows=$BENCH_OUT/$path.cycle.rows
        grep -E "^($(IFS='|'; echo "${aseq[*]}")) " "$rows" >"$BENCH_OUT/$path.add.rows"
        grep -E "^($(IFS='|'; echo "${rseq[*]}")) " "$rows" >"$BENCH_OUT/$path.remove.rows"
        result "$path.attach.to-work" "$(deltas "$BENCH_OUT/$path.add.rows" 2 5 | median)" ms "median of $(deltas "$BENCH_OUT/$path.add.rows" 2 5 | wc -l)/$N2"
        result "$path.attach.to-result" "$(deltas "$BENCH_OUT/$path.add.rows" 2 6 | median)" ms "RUN line -> device in QEMU (device_add returned)"
        result "$path.attach.outcomes" "$(awk '{ print $7 }' "$BENCH_OUT/$path.add.rows" | sort | uniq -c | awk '{ printf "%s%s:%s", (NR > 1 ? "," : ""), $2, $1 }')" - ""
        result "$path.detach.to-result" "$(deltas "$BENCH_OUT/$path.remove.rows" 2 6 | median)" ms ""
        result "$path.detach.outcomes" "$(awk '{ print $7 }' "$BENCH_OUT/$path.remove.rows" | sort | uniq -c | awk '{ printf "%s%s:%s", (NR > 1 ? "," : ""), $2, $1 }')" - ""
        # CPU per add+remove cycle = 2 x the per-event CPU of the cycle run.
        result "$path.cycle.cpu" "$(awk -F'\t' -v k="$path.cycle.cpu-total" '$1 == k { printf "%.2f", 2 * $2 }' "$RES")" ms "per add+remove, hand-off included"
done

# ---- 3. bursts: 20 events (4 claimed) and 100 events (20 claimed), adds at once ---------------------
# Each round: fresh QEMU and database, the new path's service not running (as after idle), the
# events started 8 at a time by the udevd stand-in; wall = first RUN start -> last result.
burst() { # PATH SIZE CLAIMED ROUND
        local path=$1 size=$2 claimed=$3 f=$BENCH_OUT/burst.ev i t0 t1 last s got n_ok
        : >"$f"
        for ((i = 1; i <= claimed; i++)); do ev_file "$f" add "$(usb_path $i)" "$(usb_props $i)"; done
        for ((i = 21; i < 21 + size - claimed; i++)); do ev_file "$f" add "$(usb_path $i)" "$(usb_props $i)"; done
        mapfile -t bseq < <(sed -n 's/^SEQNUM=//p' "$f")
        cp "$f" "$R$B/burst.ev"
        ct systemctl stop vhotplug-helper.service 2>/dev/null
        ct rm -f /var/lib/vhotplug/state.db /var/lib/vhotplug/state.db-wal /var/lib/vhotplug/state.db-shm
        qemu_start
        local c0 c1
        c0=$(cpu_snapshot)
        ctg vhp-udev "$BUILD/tests/vhp-udev-run" -q -j 8 -o $B/burst.times "$RUN" $B/burst.ev
        wait_seq "${bseq[@]}"
        c1=$(cpu_snapshot)
        t0=$(awk 'NR == 1 || $4 < m { m = $4 } END { print m }' "$R$B/burst.times")
        last=0
        n_ok=0
        local last_u=0 k=0
        for s in "${bseq[@]}"; do
                t1=$(t_result "$s")
                [ "$t1" != - ] && [ "$t1" -gt "$last" ] && last=$t1
                ((k >= claimed)) && [ "$t1" != - ] && [ "$t1" -gt "$last_u" ] && last_u=$t1
                [ "$(outcome "$s")" = done ] && n_ok=$((n_ok + 1))
                k=$((k + 1))
        done
        cp "$R$B/burst.times" "$BENCH_OUT/burst-$path-$size-$4.times"
        got=$(qemu_count)
        local client
        client=$(awk '{ s += $7 } END { print s }' "$R$B/burst.times")
        read -r i0 s0 _ <<<"$c0"
        read -r i1 s1 _ <<<"$c1"
        echo "$(((last - t0) / 1000)) $n_ok $got $(((i1 - i0 + s1 - s0 + client) / 1000)) $(((i1 - i0) / 1000)) $(((last_u - t0) / 1000))" >>"$BENCH_OUT/burst-$path-$size.rows"
        echo "  $path burst $size round $4: $(((last - t0) / 1000)) ms (unclaimed done after $(((last_u - t0) / 1000)) ms), attached $n_ok/$claimed (QEMU has $got), CPU $(((i1 - i0 + s1 - s0 + client) / 1000)) ms (PID 1 $(((i1 - i0) / 1000)))" >&2
}
ROUNDS=$(runs 5 2)
for size in 20 100; do
        claimed=$((size / 5))
        for path in new old; do
                echo "bench-handoff: burst of $size ($claimed claimed), $path path" >&2
                use_path $path testbed
                : >"$BENCH_OUT/burst-$path-$size.rows"
                for ((r = 1; r <= ROUNDS; r++)); do burst $path $size $claimed $r; done
                rows=$BENCH_OUT/burst-$path-$size.rows
                result "$path.burst$size.wall" "$(awk '{ print $1 }' "$rows" | median)" ms "median of $ROUNDS; first RUN start -> last result"
                result "$path.burst$size.complete" "$(awk -v c=$claimed '$2 == c && $3 == c { n++ } END { print n + 0 }' "$rows")/$ROUNDS" rounds \
                        "rounds with all $claimed attached (result done and in QEMU)"
                result "$path.burst$size.cpu" "$(awk '{ print $4 }' "$rows" | median)" ms "CPU of the whole burst: PID 1 + services + RUN programs"
                result "$path.burst$size.cpu-pid1" "$(awk '{ print $5 }' "$rows" | median)" ms ""
                result "$path.burst$size.unclaimed-wall" "$(awk '{ print $6 }' "$rows" | median)" ms "first RUN start -> last unclaimed result"
        done
done
ct pkill -x qemu-system-x86 2>/dev/null
cp "$LOG" "$BENCH_OUT/out.log"
echo "bench-handoff: CPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
bash "$VHP_TOP/bench/handoff-report.sh" "$RES"
