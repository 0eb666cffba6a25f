#!/usr/bin/env bash
# bench/run.sh: measures vhotplug against the quality bars in docs/benchmarks.md and prints medians, ratios
# and whether each bar is met. `make bench` runs it (BUILD selects the build directory).
#
# Everything runs inside umockdev testbeds (fake sysfs + usbfs) with real QEMUs
# (TCG) and real SQLite files, the way tests/integration/test-usb-qemu.sh drives the helper: the
# udev event is in the environment. The umockdev preload is in every measured process, so the
# numbers include its cost (bench/run.sh measures that cost too: "baseline" rows).
#
# Needs: hyperfine, /usr/bin/time (Debian packages hyperfine, time), jq, sqlite3, umockdev,
# qemu-system-x86. Benchmarks are optional, so scripts/setup-deps.sh does not install these two:
# run as root, this script apt-get installs what is missing; otherwise it says what to install.
#
# Environment: BUILD (default build), BASE_BUILD (another build for the dock unplug's before/after), BENCH_OUT (directory for raw results, default a temp dir that
# is kept), BENCH_QUICK=1 (fewer runs, for trying the script out).
set -u

VHP_TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$VHP_TOP/$BUILD ;; esac
export VHP_TOP BUILD

need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
[ -x /usr/bin/time ] || need+=(time)
command -v jq >/dev/null || need+=(jq)
command -v sqlite3 >/dev/null || need+=(sqlite3)
command -v umockdev-run >/dev/null || need+=(umockdev)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
if [ ${#need[@]} -gt 0 ]; then
        if [ "$(id -u)" = 0 ]; then
                echo "bench: installing ${need[*]}" >&2
                apt-get install -y --no-install-recommends "${need[@]}" >&2 || exit 1
        else
                echo "bench: missing packages: ${need[*]} (sudo apt-get install ${need[*]})" >&2
                exit 1
        fi
fi
for f in vhotplug-helper vhotplug-reconcile tests/vhp-qmp; do
        [ -x "$BUILD/$f" ] || { echo "bench: $BUILD/$f missing; run make BUILD=... all tests" >&2; exit 1; }
done

BENCH_OUT=${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/vhp-bench.XXXXXX")}
mkdir -p "$BENCH_OUT"
export BENCH_OUT
: >"$BENCH_OUT/results.tsv"
echo "bench: raw results in $BENCH_OUT" >&2
echo "bench: CPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores" >&2

in_testbed() { # in_testbed FIXTURE PHASE [ARGS...]
        local fx=$1
        shift
        umockdev-run -d "$fx" -- bash "$VHP_TOP/bench/phases.sh" "$@"
}

gen=$VHP_TOP/tests/tools/gen-usb-fixture.sh
for n in 10 100 500 1000; do "$gen" $n >"$BENCH_OUT/usb-$n.umockdev"; done
"$gen" 60 >"$BENCH_OUT/usb-60.umockdev"

# (a) + (d) + (e): unclaimed helper, reconcile with nothing to do, at growing sizes.
in_testbed "$BENCH_OUT/usb-10.umockdev" scale 10 10
in_testbed "$BENCH_OUT/usb-100.umockdev" scale 100 100
in_testbed "$BENCH_OUT/usb-500.umockdev" scale 500 100
in_testbed "$BENCH_OUT/usb-1000.umockdev" scale 1000 1000
# The helper without umockdev's preload, on a real PCI device of this machine.
BUILD=$BUILD bash "$VHP_TOP/bench/phases.sh" host
# (b) attach vs raw device_add, (c) burst of 50, (d) reconcile with everything to do.
in_testbed "$BENCH_OUT/usb-60.umockdev" attach
in_testbed "$BENCH_OUT/usb-60.umockdev" burst
in_testbed "$BENCH_OUT/usb-60.umockdev" reconcile-all 30

# A dock unplug: 20 attached devices leave the host at once (4 rounds). BASE_BUILD=DIR runs the
# same phase with that build too (a build of an older commit: before and after in one run).
"$gen" 200 >"$BENCH_OUT/usb-200.umockdev"
if [ -n "${BASE_BUILD:-}" ]; then
        case $BASE_BUILD in /*) ;; *) BASE_BUILD=$VHP_TOP/$BASE_BUILD ;; esac
        BUILD=$BASE_BUILD BENCH_TAG=base umockdev-run -d "$BENCH_OUT/usb-200.umockdev" -- bash "$VHP_TOP/bench/phases.sh" unplug 20 4
fi
in_testbed "$BENCH_OUT/usb-200.umockdev" unplug 20 4

bash "$VHP_TOP/bench/report.sh" "$BENCH_OUT/results.tsv"
# driverPath: the kernel-module lookup a driverPath rule adds to an event (bar: 1 ms per device).
BUILD=$BUILD bash "$VHP_TOP/bench/driverpath.sh"
# The control plane: usb_list, request -> attached vs the helper, notification latency, the
# unclaimed event with a listener (docs/benchmarks.md, "Control plane").
BUILD=$BUILD bash "$VHP_TOP/bench/api.sh"
