#!/usr/bin/env bash
# bench/phases.sh PHASE ARGS...: one benchmark phase, run by bench/run.sh inside a umockdev testbed
# made with tests/tools/gen-usb-fixture.sh (device i: bus 1+i/100, port 1+i%100, devnum 2+i%100,
# vendor 1209, product i+1). Appends "key<TAB>value<TAB>unit<TAB>note" lines to
# $BENCH_OUT/results.tsv.
#
#   scale N R        N devices present, R rules that claim none of them, one running QEMU:
#                    helper on an unclaimed device and on a hub (wall, peak RSS), reconcile with
#                    nothing to do; baselines (/bin/true, helper --version) under the same preload
#   attach           helper USB attach into a running QEMU vs raw QMP device_add of the same device
#   burst            50 helpers started at once, 25 devices for each of two QEMUs
#   reconcile-all N  reconcile attaching N devices into one freshly started QEMU
#   unplug N R       a dock unplug: N devices attached to one QEMU leave the host at once, N remove
#                    helpers start together; time until all have exited (each returns once QEMU
#                    confirmed the device gone), R rounds on fresh devices
set -u
. "$VHP_TOP/tests/lib.sh"

[ -n "${UMOCKDEV_DIR:-}" ] || [ "${1:-}" = host ] || { echo "phases.sh runs inside umockdev-run (bench/run.sh)" >&2; exit 1; }

helper=$VHP_BUILD/vhotplug-helper
reconcile=$VHP_BUILD/vhotplug-reconcile
qmp=$VHP_TOOLS/vhp-qmp
U=/devices/pci0000:00/0000:00:14.0
quick=${BENCH_QUICK:-0}
runs() { [ "$quick" = 1 ] && echo 5 || echo "$1"; }

result() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >>"$BENCH_OUT/results.tsv"; echo "  $1 = $2 $3 ${4:-}" >&2; }

# hyperfine_median KEY RUNS [hyperfine args...]: median wall time of the command in ms.
hyperfine_median() {
        local key=$1 n=$2 json=$VHP_TMP/hf.json
        shift 2
        hyperfine -N --show-output --warmup 3 --min-runs "$(runs "$n")" --export-json "$json" "$@" >"$VHP_TMP/hf.out" 2>"$VHP_TMP/hf.err" ||
                { echo "bench: hyperfine failed for $key:" >&2; tail -n 5 "$VHP_TMP/hf.out" "$VHP_TMP/hf.err" >&2; result "$key" NaN ms failed; return 1; }
        result "$key" "$(jq -r '.results[0].median * 1000 | . * 1000 | round / 1000' "$json")" ms \
                "runs=$(jq -r '.results[0].times | length' "$json") stddev=$(jq -r '.results[0].stddev * 1000 | . * 100 | round / 100' "$json")ms"
}

# hyperfine_bash KEY RUNS [hyperfine args...]: same, through bash (for ${EPOCHREALTIME} SEQNUMs);
# hyperfine subtracts the shell's own start-up time.
hyperfine_bash() {
        local key=$1 n=$2 json=$VHP_TMP/hf.json
        shift 2
        hyperfine --shell=bash --show-output --warmup 3 --min-runs "$(runs "$n")" --export-json "$json" "$@" >"$VHP_TMP/hf.out" 2>"$VHP_TMP/hf.err" ||
                { echo "bench: hyperfine failed for $key:" >&2; tail -n 5 "$VHP_TMP/hf.out" "$VHP_TMP/hf.err" >&2; result "$key" NaN ms failed; return 1; }
        result "$key" "$(jq -r '.results[0].median * 1000 | . * 1000 | round / 1000' "$json")" ms \
                "runs=$(jq -r '.results[0].times | length' "$json") stddev=$(jq -r '.results[0].stddev * 1000 | . * 100 | round / 100' "$json")ms"
}

# peak_rss KEY CMD...: median over 15 runs of /usr/bin/time's "Maximum resident set size", in MB.
peak_rss() {
        local key=$1 i
        shift
        for i in $(seq 15); do
                SEQNUM=${EPOCHREALTIME/./} /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n1
        done | sort -n | sed -n 8p | awk -v k="$key" '{ printf "%s\t%.2f\tMB\tmedian of 15, /usr/bin/time maxrss\n", k, $1 / 1024 }' |
                tee -a "$BENCH_OUT/results.tsv" | sed 's/^/  /;s/\t/ = /;s/\t/ /g' >&2
}

# props DEVPATH: the device's udev properties (as the uevent file has them), one per line.
props() { sed 's/\\n$//' "/sys$1/uevent"; }

# conf FILE NRULES VM SOCKET [extra entries JSON]: NRULES USB rules (10 per entry) that claim no
# fake device (vendor dead), one QEMU VM.
conf() {
        local file=$1 n=$2 vm=$3 sock=$4 extra=${5:-} i
        {
                echo '{ "usbPassthrough": ['
                for ((i = 0; i < n; i++)); do
                        if ((i % 10 == 0)); then
                                ((i > 0)) && echo '] },'
                                printf '{ "description": "entry %d", "targetVm": "%s", "allow": [\n' $((i / 10)) "$vm"
                        else
                                echo ','
                        fi
                        printf '{ "vendorId": "dead", "productId": "%04x", "description": "rule %d" }' $i $i
                done
                ((n > 0)) && echo '] }'
                [ -n "$extra" ] && { ((n > 0)) && echo ','; echo "$extra"; }
                echo '],'
                printf '"vms": [ { "name": "%s", "type": "qemu", "socket": "%s" } ],\n' "$vm" "$sock"
                printf '"general": { "database": "%s", "lockDir": "%s", "qmpTimeoutMs": 5000, "attachRetries": 5 } }\n' \
                        "$VHP_TMP/state.db" "$VHP_TMP/lock"
        } >"$file"
        jq empty "$file" || { echo "bench: generated config $file is not JSON" >&2; exit 1; }
}

# allow_pids FIRST LAST VM: an entry claiming products FIRST..LAST (1-based device numbers).
allow_pids() {
        local i sep=''
        printf '{ "targetVm": "%s", "allow": [' "$3"
        for ((i = $1; i <= $2; i++)); do printf '%s{ "vendorId": "1209", "productId": "%04x" }' "$sep" $i; sep=,; done
        echo '] }'
}

phase_scale() {
        local n=$1 r=$2 c=$VHP_TMP/scale.conf
        echo "bench: scale: $n devices, $r rules, nothing claimed" >&2
        conf "$c" "$r" gui "$VHP_TMP/gui.sock"
        vhp_start_qemu gui "$VHP_TMP/gui.sock" || exit 1
        local -a mouse hub
        mapfile -t mouse < <(props $U/usb1/1-1)
        mapfile -t hub < <(props $U/usb1)
        # Check once that the decisions are what we measure.
        env "${mouse[@]}" ACTION=add DEVPATH=$U/usb1/1-1 SEQNUM=1 "$helper" -c "$c" --no-strict-perms --json >"$VHP_TMP/o.json" 2>&1
        grep -q '"action":"ignore"' "$VHP_TMP/o.json" || { echo "bench: mouse not ignored: $(cat "$VHP_TMP/o.json")" >&2; exit 1; }
        env "${hub[@]}" ACTION=add DEVPATH=$U/usb1 SEQNUM=1 "$helper" -c "$c" --no-strict-perms --json >"$VHP_TMP/o.json" 2>&1
        grep -q '"action":"ignore"' "$VHP_TMP/o.json" || { echo "bench: hub not ignored: $(cat "$VHP_TMP/o.json")" >&2; exit 1; }

        if [ "$n" = 500 ]; then
                hyperfine_median "baseline.true" 50 /bin/true
                hyperfine_median "baseline.helper-version" 50 "$helper --version"
                peak_rss "baseline.rss.true" /bin/true
                peak_rss "baseline.rss.helper-version" "$helper" --version
        fi
        (
                export "${mouse[@]}" ACTION=add DEVPATH=$U/usb1/1-1
                hyperfine_bash "helper.unclaimed.n$n.r$r" 50 "SEQNUM=\${EPOCHREALTIME/./} $helper -c $c --no-strict-perms"
                peak_rss "helper.rss.unclaimed.n$n.r$r" "$helper" -c "$c" --no-strict-perms
        )
        (
                export "${hub[@]}" ACTION=add DEVPATH=$U/usb1
                hyperfine_bash "helper.hub.n$n.r$r" 50 "SEQNUM=\${EPOCHREALTIME/./} $helper -c $c --no-strict-perms"
                peak_rss "helper.rss.hub.n$n.r$r" "$helper" -c "$c" --no-strict-perms
        )

        "$reconcile" -c "$c" --no-strict-perms --json >"$VHP_TMP/rec.json" 2>"$VHP_TMP/rec.err" ||
                { echo "bench: reconcile failed: $(cat "$VHP_TMP/rec.json" "$VHP_TMP/rec.err")" >&2; exit 1; }
        [ "$("$qmp" "$VHP_TMP/gui.sock" qom-list '{"path":"/machine/peripheral"}' | jq '[.[] | select(.type=="child<usb-host>")] | length')" = 0 ] ||
                { echo "bench: reconcile attached something" >&2; exit 1; }
        hyperfine_median "reconcile.nothing.n$n.r$r" 20 "$reconcile -c $c --no-strict-perms"
        peak_rss "reconcile.rss.nothing.n$n.r$r" "$reconcile" -c "$c" --no-strict-perms
        vhp_stop_qemu gui
}

phase_attach() {
        local c=$VHP_TMP/attach.conf s=$VHP_TMP/gui.sock id=vhp-usb-001-002
        echo "bench: attach: helper vs raw QMP device_add, device 1-1" >&2
        conf "$c" 0 gui "$s" "$(allow_pids 1 1 gui)"
        vhp_start_qemu gui "$s" || exit 1
        local -a mouse
        mapfile -t mouse < <(props $U/usb1/1-1)
        local add="{\"driver\":\"usb-host\",\"hostbus\":1,\"hostaddr\":2,\"id\":\"$id\"}" del="{\"id\":\"$id\"}"
        # Both sides run through bash (hyperfine subtracts the shell's start-up) with -i, so one
        # failed run does not end the benchmark; failures are counted from the output and reported.
        # Raw QMP: one connection (greeting + qmp_capabilities) and device_add, as the helper does;
        # the device_del of the previous run is outside the measurement.
        hyperfine_bash "attach.qmp-device_add" 30 -i --prepare "$qmp $s device_del '$del' >/dev/null 2>&1 || true" \
                "$qmp $s device_add '$add'"
        result "attach.qmp-device_add.failures" "$(grep -c '^error' "$VHP_TMP/hf.out" "$VHP_TMP/hf.err" | awk -F: '{ n += $NF } END { print n }')" runs \
                "$(grep -h '^error' "$VHP_TMP/hf.out" "$VHP_TMP/hf.err" | sort | uniq -c | tr '\n' ';')"
        "$qmp" "$s" device_del "$del" >/dev/null 2>&1
        # Helper: the add event; the remove event of the previous run is outside the measurement.
        env "${mouse[@]}" ACTION=add DEVPATH=$U/usb1/1-1 SEQNUM=1 "$helper" -c "$c" --no-strict-perms --json >"$VHP_TMP/o.json" 2>&1
        grep -q '"outcome":"done"' "$VHP_TMP/o.json" || { echo "bench: helper did not attach: $(cat "$VHP_TMP/o.json")" >&2; exit 1; }
        local before
        before=$(sqlite3 "$VHP_TMP/state.db" "SELECT count(*) FROM history WHERE action='attach' AND outcome='attached'")
        (
                export "${mouse[@]}" DEVPATH=$U/usb1/1-1
                hyperfine_bash "attach.helper-add" 30 -i \
                        --prepare "ACTION=remove SEQNUM=\${EPOCHREALTIME/./} $helper -c $c --no-strict-perms >/dev/null 2>&1" \
                        "ACTION=add SEQNUM=\${EPOCHREALTIME/./} $helper -c $c --no-strict-perms --json"
                local n ok
                n=$(jq -r '.results[0].times | length' "$VHP_TMP/hf.json")
                ok=$(grep -c '"outcome":"done"' "$VHP_TMP/hf.out")
                result "attach.helper-add.failures" "$((n + 3 - ok))" runs "of $n runs + 3 warmup; $(grep -ho '"reason":"[^"]*"' "$VHP_TMP/hf.out" | grep -v attached | sort | uniq -c | tr '\n' ';')"
                hyperfine_bash "attach.helper-remove" 30 -i \
                        --prepare "ACTION=add SEQNUM=\${EPOCHREALTIME/./} $helper -c $c --no-strict-perms >/dev/null 2>&1" \
                        "ACTION=remove SEQNUM=\${EPOCHREALTIME/./} $helper -c $c --no-strict-perms"
        )
        result "attach.history-attached" "$(($(sqlite3 "$VHP_TMP/state.db" "SELECT count(*) FROM history WHERE action='attach' AND outcome='attached'") - before))" rows \
                "successful attaches recorded during the helper runs"
        vhp_stop_qemu gui
}

# burst_once ROUND: fresh database and QEMUs, 50 helpers at once; prints the wall time in ms.
burst_once() {
        local c=$VHP_TMP/burst.conf i pids=() t0 t1
        rm -f "$VHP_TMP"/state.db* "$VHP_TMP"/burst-*
        vhp_start_qemu a "$VHP_TMP/a.sock" -device qemu-xhci,id=xhci2,p2=15,p3=1 -device qemu-xhci,id=xhci3,p2=15,p3=1 || exit 1
        vhp_start_qemu b "$VHP_TMP/b.sock" -device qemu-xhci,id=xhci2,p2=15,p3=1 -device qemu-xhci,id=xhci3,p2=15,p3=1 || exit 1
        for ((i = 1; i <= 50; i++)); do mapfile -t "p$i" < <(props $U/usb1/1-$i); done
        t0=${EPOCHREALTIME/./}
        for ((i = 1; i <= 50; i++)); do
                declare -n pp=p$i
                env "${pp[@]}" ACTION=add DEVPATH=$U/usb1/1-$i SEQNUM=$((1000 + i)) \
                        "$helper" -c "$c" --no-strict-perms --json >"$VHP_TMP/burst-$i.json" 2>"$VHP_TMP/burst-$i.err" &
                pids+=($!)
                unset -n pp
        done
        local bad=0
        for i in "${!pids[@]}"; do wait "${pids[$i]}" || bad=$((bad + 1)); done
        t1=${EPOCHREALTIME/./}
        local na nb rows dberr
        na=$("$qmp" "$VHP_TMP/a.sock" qom-list '{"path":"/machine/peripheral"}' | jq '[.[] | select(.type=="child<usb-host>")] | length')
        nb=$("$qmp" "$VHP_TMP/b.sock" qom-list '{"path":"/machine/peripheral"}' | jq '[.[] | select(.type=="child<usb-host>")] | length')
        rows=$(sqlite3 "$VHP_TMP/state.db" "SELECT count(*) FROM current_attachments WHERE state='attached'")
        dberr=$(cat "$VHP_TMP"/burst-*.err | grep -ciE 'database|sqlite|locked|busy')
        vhp_stop_qemu a
        vhp_stop_qemu b
        echo "$(((t1 - t0) / 1000)) $bad $na $nb $rows $dberr"
}

phase_burst() {
        local c=$VHP_TMP/burst.conf k line walls=() ok=1
        echo "bench: burst: 50 helpers at once, 25 per QEMU" >&2
        conf "$c" 0 a "$VHP_TMP/a.sock" "$(allow_pids 1 25 a), $(allow_pids 26 50 b)"
        jq --arg s "$VHP_TMP/b.sock" '.vms += [{"name":"b","type":"qemu","socket":$s}]' "$c" >"$c.new" && mv "$c.new" "$c"
        for k in $(seq "$( [ "$quick" = 1 ] && echo 1 || echo 5)"); do
                line=$(burst_once)
                read -r ms bad na nb rows dberr <<<"$line"
                echo "  round $k: ${ms} ms, failed helpers $bad, QEMU a $na, QEMU b $nb, attached rows $rows, db errors $dberr" >&2
                walls+=("$ms")
                [ "$bad" = 0 ] && [ "$na" = 25 ] && [ "$nb" = 25 ] && [ "$rows" = 50 ] && [ "$dberr" = 0 ] || {
                        ok=0
                        cat "$VHP_TMP"/burst-*.err | sort | uniq -c | head -n 20 >&2
                }
        done
        result "burst.wall" "$(printf '%s\n' "${walls[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')" ms \
                "median of ${#walls[@]} rounds: ${walls[*]}"
        result "burst.all-attached" "$ok" bool "every round: 50 exit 0, 25+25 in qom-list, 50 attached rows, 0 db errors"
}

phase_reconcile_all() {
        local n=$1 c=$VHP_TMP/all.conf k walls=() ok=1 t0 t1 got
        echo "bench: reconcile attaching $n devices into one QEMU" >&2
        conf "$c" 0 gui "$VHP_TMP/gui.sock" "$(allow_pids 1 "$n" gui)"
        for k in $(seq "$( [ "$quick" = 1 ] && echo 1 || echo 5)"); do
                rm -f "$VHP_TMP"/state.db*
                vhp_start_qemu gui "$VHP_TMP/gui.sock" -device qemu-xhci,id=xhci2,p2=15,p3=1 -device qemu-xhci,id=xhci3,p2=15,p3=1 || exit 1
                t0=${EPOCHREALTIME/./}
                "$reconcile" -c "$c" --no-strict-perms >"$VHP_TMP/rec.out" 2>&1 || ok=0
                t1=${EPOCHREALTIME/./}
                got=$("$qmp" "$VHP_TMP/gui.sock" qom-list '{"path":"/machine/peripheral"}' | jq '[.[] | select(.type=="child<usb-host>")] | length')
                [ "$got" = "$n" ] || { ok=0; tail -n 5 "$VHP_TMP/rec.out" >&2; }
                walls+=($(((t1 - t0) / 1000)))
                echo "  round $k: $(((t1 - t0) / 1000)) ms, $got attached" >&2
                vhp_stop_qemu gui
        done
        result "reconcile.all.n$n" "$(printf '%s\n' "${walls[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')" ms \
                "median of ${#walls[@]} rounds: ${walls[*]}; all attached: $ok"
}

unplug_once() { # FIRST N: devices FIRST..FIRST+N-1
        local c=$VHP_TMP/unplug.conf first=$1 n=$2 i pids=() t0 t1 bad=0 left rows
        rm -f "$VHP_TMP"/state.db* "$VHP_TMP"/unplug-*
        vhp_start_qemu gui "$VHP_TMP/gui.sock" -device qemu-xhci,id=xhci2,p2=15,p3=1 -device qemu-xhci,id=xhci3,p2=15,p3=1 || exit 1
        for ((i = first; i < first + n; i++)); do
                mapfile -t "p$i" < <(props $U/usb1/1-$i)
                declare -n pp=p$i
                env "${pp[@]}" ACTION=add DEVPATH=$U/usb1/1-$i SEQNUM=$((2000 + i)) "$helper" -c "$c" --no-strict-perms \
                        >/dev/null 2>&1 || echo "bench: unplug: attach of 1-$i failed" >&2
                unset -n pp
        done
        for ((i = first; i < first + n; i++)); do vhp_unplug $U/usb1/1-$i; done
        t0=${EPOCHREALTIME/./}
        for ((i = first; i < first + n; i++)); do
                declare -n pp=p$i
                env "${pp[@]}" ACTION=remove DEVPATH=$U/usb1/1-$i SEQNUM=$((3000 + i)) \
                        "$helper" -c "$c" --no-strict-perms --json >"$VHP_TMP/unplug-$i.json" 2>"$VHP_TMP/unplug-$i.err" &
                pids+=($!)
                unset -n pp
        done
        for i in "${!pids[@]}"; do wait "${pids[$i]}" || bad=$((bad + 1)); done
        t1=${EPOCHREALTIME/./}
        left=$("$qmp" "$VHP_TMP/gui.sock" qom-list '{"path":"/machine/peripheral"}' | jq '[.[] | select(.type=="child<usb-host>")] | length')
        rows=$(sqlite3 "$VHP_TMP/state.db" "SELECT count(*) FROM current_attachments")
        vhp_stop_qemu gui
        echo "$(((t1 - t0) / 1000)) $bad $left $rows"
}

phase_unplug() {
        local n=$1 rounds=$2 c=$VHP_TMP/unplug.conf k line walls=() ok=1 ms bad left rows
        echo "bench: dock unplug: $n attached devices removed at once, $rounds rounds" >&2
        conf "$c" 0 gui "$VHP_TMP/gui.sock" "$(allow_pids 1 $((n * rounds)) gui)"
        [ "$quick" = 1 ] && rounds=1
        for ((k = 0; k < rounds; k++)); do
                line=$(unplug_once $((1 + k * n)) "$n")
                read -r ms bad left rows <<<"$line"
                echo "  round $((k + 1)): ${ms} ms, failed helpers $bad, left in QEMU $left, open rows $rows" >&2
                walls+=("$ms")
                [ "$bad" = 0 ] && [ "$left" = 0 ] && [ "$rows" = 0 ] || { ok=0; cat "$VHP_TMP"/unplug-*.err | sort | uniq -c | head >&2; }
        done
        result "unplug.n$n.wall${BENCH_TAG:+.$BENCH_TAG}" "$(printf '%s\n' "${walls[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')" ms \
                "median of ${#walls[@]} rounds: ${walls[*]}; all gone and closed: $ok"
}

# host: no testbed, no preload: the helper on this machine's first real PCI device (no rule
# claims it; 100 USB rules loaded), for the cost of the helper alone.
phase_host() {
        local c=$VHP_TMP/host.conf dev sys
        dev=$(ls /sys/bus/pci/devices | head -n1)
        [ -n "$dev" ] || { echo "bench: host: no PCI device, skipped" >&2; return 0; }
        sys=$(readlink -f "/sys/bus/pci/devices/$dev")
        echo "bench: host (no umockdev): helper on real PCI device $dev, 100 rules" >&2
        conf "$c" 100 gui "$VHP_TMP/gui.sock"
        local -a p
        mapfile -t p <"$sys/uevent"
        env "${p[@]}" SUBSYSTEM=pci ACTION=add DEVPATH="${sys#/sys}" SEQNUM=1 "$helper" -c "$c" --no-strict-perms --json >"$VHP_TMP/o.json" 2>&1
        grep -q '"action":"ignore"' "$VHP_TMP/o.json" || { echo "bench: host PCI device not ignored: $(cat "$VHP_TMP/o.json")" >&2; return 1; }
        hyperfine_median "host.baseline.true" 50 /bin/true
        peak_rss "host.baseline.rss.true" /bin/true
        (
                export "${p[@]}" SUBSYSTEM=pci ACTION=add DEVPATH="${sys#/sys}"
                hyperfine_bash "host.helper.unclaimed-pci.r100" 50 "SEQNUM=\${EPOCHREALTIME/./} $helper -c $c --no-strict-perms"
                peak_rss "host.helper.rss.unclaimed-pci.r100" "$helper" -c "$c" --no-strict-perms
        )
}

phase=$1
shift
case $phase in
scale) phase_scale "$@" ;;
host) phase_host ;;
attach) phase_attach ;;
burst) phase_burst ;;
reconcile-all) phase_reconcile_all "$@" ;;
unplug) phase_unplug "$@" ;;
*) echo "unknown phase $phase" >&2; exit 2 ;;
esac
