#!/usr/bin/env bash
# bench/report.sh RESULTS.TSV: prints the measured values and checks them against the quality bars in docs/benchmarks.md.
set -u
f=${1:?results.tsv}
v() { awk -F'\t' -v k="$1" '$1 == k { print $2; exit }' "$f"; }
bar() { # bar NAME VALUE LIMIT UNIT
        awk -v n="$1" -v x="$2" -v l="$3" -v u="$4" 'BEGIN {
                if (x == "" || x == "NaN") { printf "%-55s %10s          bar %s %s: NOT MEASURED\n", n, "-", l, u; exit }
                if (x + 0 <= l + 0) printf "%-55s %10.2f %-4s bar %s %s: met (%.0f%% of the bar)\n", n, x, u, l, u, 100 * x / l
                else printf "%-55s %10.2f %-4s bar %s %s: MISSED by %.2f %s (%.1fx)\n", n, x, u, l, u, x - l, u, x / l }'
}
echo
echo "== all results (median; key, value, unit, note) =="
column -t -s $'\t' "$f"
echo
echo "== quality bars (CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)) =="
bar "(a) helper, unclaimed device, 500 devs/100 rules, wall" "$(v helper.unclaimed.n500.r100)" 2 ms
bar "(a) helper, USB hub, wall" "$(v helper.hub.n500.r100)" 2 ms
bar "(a) helper, unclaimed device, peak RSS" "$(v helper.rss.unclaimed.n500.r100)" 4 MB
bar "(a) helper, USB hub, peak RSS" "$(v helper.rss.hub.n500.r100)" 4 MB
qa=$(v attach.qmp-device_add) ha=$(v attach.helper-add)
if [ -n "$qa" ] && [ -n "$ha" ] && [ "$qa" != NaN ] && [ "$ha" != NaN ]; then
        awk -v q="$qa" -v h="$ha" 'BEGIN { printf "(b) attach: helper %.2f ms, raw QMP device_add %.2f ms: ratio %.2fx, difference %.2f ms\n", h, q, h / q, h - q }'
        bar "(b) helper attach - raw device_add" "$(awk -v q="$qa" -v h="$ha" 'BEGIN { print h - q }')" 3 ms
else
        echo "(b) attach: NOT MEASURED"
fi
[ "$(v burst.all-attached)" = 1 ] && echo "(c) burst 50 (25+25): all attached, 0 db errors in every round; wall median $(v burst.wall) ms: met" ||
        echo "(c) burst 50 (25+25): NOT MET (see burst rows)"
bar "(d) reconcile, 500 devices, 100 rules, nothing to do" "$(v reconcile.nothing.n500.r100)" 200 ms
echo "(d) reconcile attaching 30 devices into one QEMU: $(v reconcile.all.n30) ms (no bar)"
un=$(v unplug.n20.wall) ub=$(v unplug.n20.wall.base)
bar "dock unplug: 20 removes at once, all gone from QEMU" "$un" 100 ms
[ -n "$ub" ] && awk -v n="$un" -v b="$ub" 'BEGIN { printf "  the same with BASE_BUILD: %.0f ms (%.1fx the time of this build)\n", b, (n > 0 ? b / n : 0) }'
echo
echo "== (e) growth (median ms / MB) =="
printf '%-22s %10s %10s %10s %10s\n' "" "10/10" "100/100" "500/100" "1000/1000"
for k in helper.unclaimed helper.hub helper.rss.unclaimed reconcile.nothing reconcile.rss.nothing; do
        printf '%-22s' "$k"
        for s in n10.r10 n100.r100 n500.r100 n1000.r1000; do printf ' %10s' "$(v "$k.$s")"; done
        echo
done
