#!/usr/bin/env bash
# bench/handoff-report.sh HANDOFF.TSV: the production-path table of bench/handoff.sh, new path
# (vhotplug-event -> socket -> service) against the old one (systemd-run per event), with ratios
# and the targets of issue 13.
set -u
f=${1:?handoff.tsv}
v() { awk -F'\t' -v k="$1" '$1 == k { print $2; exit }' "$f"; }
row() { # label, new key, old key, unit
        local n o
        n=$(v "$2"); o=$(v "$3")
        awk -v l="$1" -v n="$n" -v o="$o" -v u="$4" 'BEGIN {
                r = (n + 0 > 0 && o != "") ? sprintf("%.1fx", o / n) : "-"
                printf "| %s | %s %s | %s %s | %s |\n", l, n == "" ? "-" : n, u, o == "" ? "-" : o, u, r }'
}
missing=0
target() { # label, value, limit, unit
        case $2 in "" | NaN | -*) missing=$((missing + 1)) ;; esac
        awk -v l="$1" -v x="$2" -v lim="$3" -v u="$4" 'BEGIN {
                if (x == "" || x == "NaN" || x + 0 < 0) { printf "| %s | not measured | <= %s %s | - |\n", l, lim, u; exit }
                printf "| %s | %.2f %s | <= %s %s | %s |\n", l, x, u, lim, u, (x + 0 <= lim + 0) ? "met" : sprintf("missed by %.2f %s", x - lim, u) }'
}
echo
echo "== production path, new (socket) vs old (systemd-run per event), same run =="
echo "| | new | old | old/new |"
echo "|---|---|---|---|"
row "unclaimed event (real PCI device), RUN line -> helper's work" new.unclaimed.to-work old.unclaimed.to-work ms
row "unclaimed event, RUN line -> result" new.unclaimed.to-result old.unclaimed.to-result ms
row "unclaimed event, RUN program wall" new.unclaimed.run-wall old.unclaimed.run-wall ms
row "unclaimed event, RUN program CPU" new.unclaimed.run-cpu old.unclaimed.run-cpu ms
row "unclaimed event, CPU in total (PID 1 + services + RUN program)" new.unclaimed.cpu-total old.unclaimed.cpu-total ms
row "... of which PID 1" new.unclaimed.cpu-pid1 old.unclaimed.cpu-pid1 ms
row "... of which journald" new.unclaimed.cpu-journald old.unclaimed.cpu-journald ms
row "... of which services (helper, units, sandbox setup)" new.unclaimed.cpu-services old.unclaimed.cpu-services ms
row "USB add, RUN line -> helper's work" new.attach.to-work old.attach.to-work ms
row "USB add, RUN line -> device in QEMU" new.attach.to-result old.attach.to-result ms
row "USB remove, RUN line -> detached" new.detach.to-result old.detach.to-result ms
row "CPU per add+remove cycle, hand-off included" new.cycle.cpu old.cycle.cpu ms
row "burst of 20 (4 claimed): first RUN -> last result" new.burst20.wall old.burst20.wall ms
row "burst of 20: CPU" new.burst20.cpu old.burst20.cpu ms
row "burst of 100 (20 claimed): first RUN -> last result" new.burst100.wall old.burst100.wall ms
row "burst of 100: its 80 unclaimed events, first RUN -> last result" new.burst100.unclaimed-wall old.burst100.unclaimed-wall ms
row "burst of 100: CPU" new.burst100.cpu old.burst100.cpu ms
row "burst of 100: CPU of PID 1" new.burst100.cpu-pid1 old.burst100.cpu-pid1 ms
echo
echo "new path, service not running: RUN line -> work $(v new.cold.to-work) ms, -> result $(v new.cold.to-result) ms"
echo "raw QMP device_add of the same device: $(v qmp.device_add) ms"
echo "complete bursts: new 20: $(v new.burst20.complete), 100: $(v new.burst100.complete); old 20: $(v old.burst20.complete), 100: $(v old.burst100.complete)"
echo "outcomes: new attach $(v new.attach.outcomes), detach $(v new.detach.outcomes); old attach $(v old.attach.outcomes), detach $(v old.detach.outcomes)"
echo
echo "== targets (issue 13) =="
echo "| target | measured | limit | |"
echo "|---|---|---|---|"
target "hand-off to the helper's work, service running (unclaimed)" "$(v new.unclaimed.to-work)" 1.5 ms
target "hand-off to the helper's work, service running (USB add)" "$(v new.attach.to-work)" 1.5 ms
target "unclaimed event: CPU in total" "$(v new.unclaimed.cpu-total)" 2 ms
target "unclaimed event: PID 1 CPU (no systemd work per event)" "$(v new.unclaimed.cpu-pid1)" 0.05 ms
qa=$(v qmp.device_add)
target "USB add, RUN line -> device in QEMU, minus raw device_add" "$(awk -v a="$(v new.attach.to-result)" -v q="$qa" 'BEGIN { if (a != "" && q != "") print a - q }')" 5 ms
target "burst of 100 (20 claimed), complete" "$(v new.burst100.wall)" 300 ms
target "CPU per add+remove cycle, hand-off included" "$(v new.cycle.cpu)" 6 ms
target "peak RSS of an event child" "$(v new.rss.child)" 4 MB
target "peak RSS of the service process" "$(v new.rss.service)" 6 MB
# A target that could not be measured fails the run: a broken measurement must not read as "met".
[ "$missing" = 0 ] || { echo "bench-handoff: $missing target(s) not measured (see the rows above)" >&2; exit 1; }
