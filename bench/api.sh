#!/usr/bin/env bash
# bench/api.sh: the control plane's costs (docs/benchmarks.md, "Control plane"). bench/run.sh runs
# it; alone: BUILD=build bench/api.sh. Inside a umockdev testbed of 41 fake USB mice (40 claimed
# for one running QEMU, one unclaimed), with vhotplug-api --listen on a unix socket:
#
#   api.usb_list.40        usb_list over the wire with 40 claimed devices, one client process per
#                          request (vhp-wire: connect, send, read the reply); beside it the same
#                          client for a request that touches nothing (api.unknown_action)
#   api.attach / helper.attach
#                          request -> attached in QEMU (usb_attach by device node; the reply comes
#                          once QEMU has it) vs the helper's own attach of the same device (an add
#                          event), both wall time of the client process, alternating, N rounds
#   api.notify.latency     from the helper's recorded outcome (its history row's time) to the
#                          listening client reading usb_attached (bar: median <= 50 ms)
#   helper.unclaimed.{alone,listener}
#                          the helper on an unclaimed device's add, without and with a client
#                          listening for notifications (bar: no change)
# Prints medians and ratios and appends them to $BENCH_OUT/results.tsv when BENCH_OUT is set.
set -u
VHP_TOP=${VHP_TOP:-$(cd "$(dirname "$0")/.." && pwd)}
export VHP_TOP
if [ -z "${UMOCKDEV_DIR:-}" ]; then
        tmp=$(mktemp -d "${TMPDIR:-/tmp}/vhp-bench-api.XXXXXX")
        "$VHP_TOP/tests/tools/gen-usb-fixture.sh" 41 >"$tmp/usb-41.umockdev"
        umockdev-run -d "$tmp/usb-41.umockdev" -- bash "$0" "$@"
        rc=$?
        rm -rf "$tmp"
        exit $rc
fi
. "$VHP_TOP/tests/lib.sh"

api=$VHP_BUILD/vhotplug-api
helper=$VHP_BUILD/vhotplug-helper
wire=$VHP_TOOLS/vhp-wire
qmp=$VHP_TOOLS/vhp-qmp
for f in "$api" "$helper" "$wire" "$qmp"; do [ -x "$f" ] || { echo "bench: $f missing (make all tests)" >&2; exit 1; }; done
command -v hyperfine >/dev/null || { echo "bench: hyperfine missing (apt-get install hyperfine)" >&2; exit 1; }
quick=${BENCH_QUICK:-0}
runs() { [ "$quick" = 1 ] && echo 5 || echo "$1"; }
U=/devices/pci0000:00/0000:00:14.0/usb1
S=$VHP_TMP/api.sock
db=$VHP_TMP/state.db
c=$VHP_TMP/bench.conf

result() {
        [ -n "${BENCH_OUT:-}" ] && printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >>"$BENCH_OUT/results.tsv"
        echo "  $1 = $2 $3 ${4:-}" >&2
}
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "NaN"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
hf() { # KEY RUNS CMD: median wall time (ms) of CMD (run by bash; hyperfine subtracts bash's start-up)
        local json=$VHP_TMP/hf.json
        hyperfine --shell=bash --warmup 3 --min-runs "$(runs "$2")" --export-json "$json" "$3" >/dev/null 2>"$VHP_TMP/hf.err" ||
                { echo "bench: hyperfine failed for $1: $(tail -n3 "$VHP_TMP/hf.err")" >&2; result "$1" NaN ms failed; return 1; }
        result "$1" "$(jq -r '.results[0].median * 1000 | . * 1000 | round / 1000' "$json")" ms \
                "runs=$(jq -r '.results[0].times | length' "$json") stddev=$(jq -r '.results[0].stddev * 1000 | . * 100 | round / 100' "$json")ms"
}
value() { awk -v k="$1" '$1 == k { print $3 }' "$VHP_TMP/summary"; }

cat >"$c" <<EOF
{ "usbPassthrough": [ { "targetVm": "gui", "tag": "mice", "allow": [ { "vendorId": "1209" } ],
                        "deny": [ { "serial": "SN0041" } ] } ],
  "vms": [ { "name": "gui", "type": "qemu", "socket": "$VHP_TMP/gui.sock" } ],
  "general": { "database": "$db", "lockDir": "$VHP_TMP/lock", "qmpTimeoutMs": 5000, "attachRetries": 5 } }
EOF
vhp_start_qemu gui "$VHP_TMP/gui.sock" -device qemu-xhci,id=xhci2,p2=15,p3=15 || exit 1
"$api" -c "$c" --no-strict-perms --listen "unix:$S" 2>"$VHP_TMP/api.log" &
vhp_on_exit "kill $! 2>/dev/null"
for _ in $(seq 200); do [ -S "$S" ] && break; sleep 0.05; done
exec 3>"$VHP_TMP/summary"
echo "bench: control plane (vhotplug-api), 40 claimed USB devices, one QEMU" >&2

# ---- usb_list ----------------------------------------------------------------------------------
n=$("$wire" "unix:$S" 'send:{"action":"usb_list"}\n' line | jq '.usb_devices | length')
[ "$n" = 40 ] || { echo "bench: usb_list lists $n devices, expected 40" >&2; exit 1; }
hf api.usb_list.40 50 "$wire unix:$S 'send:{\"action\":\"usb_list\",\"disconnected\":null,\"tag\":null}\\n' line"
hf api.unknown_action 50 "$wire unix:$S 'send:{\"action\":\"nothing\"}\\n' line"

# ---- request -> attached vs the helper's attach ----------------------------------------------------
# 1-1 is detached and attached again each round: by the API (usb_detach / usb_attach), then by the
# helper (remove / add events); each attach's wall time is taken around its client process.
mapfile -t props < <(sed 's/\\n$//' "/sys$U/1-1/uevent")
node=$(jq -r '.usb_devices[0].device_node' <<<"$("$wire" "unix:$S" 'send:{"action":"usb_list"}\n' line)")
has() { "$qmp" "$VHP_TMP/gui.sock" qom-list '{"path":"/machine/peripheral"}' | grep -q vhp-usb-001-002; }
: >"$VHP_TMP/api.ms"
: >"$VHP_TMP/helper.ms"
seq=1000
for ((i = 0; i < $(runs 20); i++)); do
        "$wire" "unix:$S" "send:{\"action\":\"usb_detach\",\"device_node\":\"$node\"}\n" line >/dev/null
        t0=${EPOCHREALTIME/./}
        out=$("$wire" -t 30000 "unix:$S" "send:{\"action\":\"usb_attach\",\"device_node\":\"$node\"}\n" line)
        t1=${EPOCHREALTIME/./}
        grep -q '"outcome":"done"' <<<"$out" && has || { echo "bench: API attach failed: $out" >&2; exit 1; }
        echo "scale=3; ($t1 - $t0) / 1000" | bc >>"$VHP_TMP/api.ms"
        env "${props[@]}" ACTION=remove DEVPATH=$U/1-1 SEQNUM=$((seq += 1)) "$helper" -c "$c" --no-strict-perms >/dev/null 2>&1
        t0=${EPOCHREALTIME/./}
        env "${props[@]}" ACTION=add DEVPATH=$U/1-1 SEQNUM=$((seq += 1)) "$helper" -c "$c" --no-strict-perms --json >"$VHP_TMP/h.json" 2>&1
        t1=${EPOCHREALTIME/./}
        grep -q '"outcome":"done"' "$VHP_TMP/h.json" && has || { echo "bench: helper attach failed: $(cat "$VHP_TMP/h.json")" >&2; exit 1; }
        echo "scale=3; ($t1 - $t0) / 1000" | bc >>"$VHP_TMP/helper.ms"
done
a=$(median <"$VHP_TMP/api.ms")
h=$(median <"$VHP_TMP/helper.ms")
result api.attach "$a" ms "median of $(wc -l <"$VHP_TMP/api.ms"): usb_attach request -> reply (attached in QEMU)"
result helper.attach "$h" ms "median of $(wc -l <"$VHP_TMP/helper.ms"): the helper's add event, same device, same QEMU"
result api.attach.ratio "$(echo "scale=2; $a / $h" | bc)" x "api.attach / helper.attach"

# ---- notification latency ------------------------------------------------------------------------
"$wire" -T -t 600000 "unix:$S" 'send:{"action":"enable_notifications"}\n' 'until:NEVER' >"$VHP_TMP/listen.out" 2>&1 &
listener=$!
vhp_on_exit "kill $listener 2>/dev/null"
for _ in $(seq 200); do grep -q result "$VHP_TMP/listen.out" && break; sleep 0.05; done
start=$(sqlite3 "$db" 'SELECT max(id) FROM history')
rounds=$(runs 30)
for ((i = 0; i < rounds; i++)); do
        env "${props[@]}" ACTION=remove DEVPATH=$U/1-1 SEQNUM=$((seq += 1)) "$helper" -c "$c" --no-strict-perms >/dev/null 2>&1
        env "${props[@]}" ACTION=add DEVPATH=$U/1-1 SEQNUM=$((seq += 1)) "$helper" -c "$c" --no-strict-perms >/dev/null 2>&1
done
for _ in $(seq 200); do [ "$(grep -c '"event":"usb_attached"' "$VHP_TMP/listen.out")" -ge "$rounds" ] && break; sleep 0.05; done
# The k-th usb_attached read by the client belongs to the k-th 'attached' row written after start.
sqlite3 "$db" "SELECT printf('%.3f', (julianday(time) - 2440587.5) * 86400000.0) FROM history
               WHERE id > $start AND action = 'attach' AND outcome = 'attached' ORDER BY id" >"$VHP_TMP/rows.ms"
grep '"event":"usb_attached"' "$VHP_TMP/listen.out" | cut -d' ' -f1 >"$VHP_TMP/got.ms"
if [ "$(wc -l <"$VHP_TMP/rows.ms")" != "$(wc -l <"$VHP_TMP/got.ms")" ]; then
        echo "bench: $(wc -l <"$VHP_TMP/rows.ms") attaches recorded, $(wc -l <"$VHP_TMP/got.ms") events read" >&2
        result api.notify.latency NaN ms failed
else
        paste "$VHP_TMP/got.ms" "$VHP_TMP/rows.ms" | awk '{ printf "%.3f\n", $1 - $2 }' >"$VHP_TMP/lat.ms"
        l=$(median <"$VHP_TMP/lat.ms")
        result api.notify.latency "$l" ms "median of $(wc -l <"$VHP_TMP/lat.ms"), max $(sort -n "$VHP_TMP/lat.ms" | tail -n1) ms; bar: <= 50 ms"
fi

# ---- the unclaimed event, with and without a listener --------------------------------------------
mapfile -t unclaimed < <(sed 's/\\n$//' "/sys$U/1-41/uevent")
env "${unclaimed[@]}" ACTION=add DEVPATH=$U/1-41 SEQNUM=1 "$helper" -c "$c" --no-strict-perms --json 2>/dev/null | grep -q '"action":"ignore"' ||
        { echo "bench: 1-41 is not unclaimed" >&2; exit 1; }
# Alternating rounds (a shared machine drifts): each round measures both, the median of the
# rounds' medians is reported.
hf_ms() { # RUNS CMD: the median in ms, nothing recorded
        hyperfine --shell=bash --warmup 3 --min-runs "$(runs "$1")" --export-json "$VHP_TMP/hf2.json" "$2" >/dev/null 2>&1 &&
                jq -r '.results[0].median * 1000 | . * 1000 | round / 1000' "$VHP_TMP/hf2.json"
}
cmd="env ${unclaimed[*]@Q} ACTION=add DEVPATH=$U/1-41 SEQNUM=7 $helper -c $c --no-strict-perms"
: >"$VHP_TMP/with.ms"
: >"$VHP_TMP/without.ms"
for ((round = 0; round < $( [ "$quick" = 1 ] && echo 1 || echo 5); round++)); do
        hf_ms 30 "$cmd" >>"$VHP_TMP/with.ms"
        # without: no client connected at all
        kill $listener 2>/dev/null
        wait $listener 2>/dev/null
        hf_ms 30 "$cmd" >>"$VHP_TMP/without.ms"
        "$wire" -t 600000 "unix:$S" 'send:{"action":"enable_notifications"}\n' 'until:NEVER' >/dev/null 2>&1 &
        listener=$!
        vhp_on_exit "kill $listener 2>/dev/null"
        sleep 0.2
done
w=$(median <"$VHP_TMP/with.ms")
wo=$(median <"$VHP_TMP/without.ms")
result helper.unclaimed.listener "$w" ms "median of $(wc -l <"$VHP_TMP/with.ms") rounds' medians (30 runs each), a client listening"
result helper.unclaimed.alone "$wo" ms "median of $(wc -l <"$VHP_TMP/without.ms") rounds' medians, nobody connected"
result helper.unclaimed.ratio "$(echo "scale=2; $w / $wo" | bc)" x "listener / alone; bar: unchanged"
kill $listener 2>/dev/null
exit 0
