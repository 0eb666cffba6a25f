# shellcheck shell=bash
# Shared helpers for the integration tests (tests/integration/test-*.sh). Source it:
#
#     . "$(dirname "$0")/../lib.sh"
#
# It sets:
#   VHP_TOP    top of the source tree (kept when run-all.sh exported it)
#   BUILD      build directory, relative to VHP_TOP (default "build"); VHP_BUILD is its full path
#   VHP_TOOLS  $VHP_BUILD/tests: the test tools (vhp-qmp, vhp-vmm, ...)
#   VHP_TMP    a private temporary directory, removed at exit
#   VHP_FIXTURES  the shared umockdev fixtures (default $VHP_TOP/tests/data/umockdev)
# and installs an EXIT trap that stops every QEMU started by vhp_start_qemu and removes VHP_TMP.
# Scripts that need more cleanup add it with vhp_on_exit "command".
#
# Reporting (TAP-like lines that run-all.sh counts):
#   vhp_ok "desc"              prints "ok - desc"
#   vhp_fail "desc" [detail]   prints "not ok - desc" (and the detail, indented)
#   vhp_skip "desc" "reason"   prints "ok - desc # SKIP reason" (TAP), counted as skipped, not
#                              passed. Only for a truly optional check (say in the test why it is
#                              optional); a check that cannot run because something is missing
#                              that CI has or setup-deps.sh installs must fail instead.
#   vhp_check "desc" cmd...    runs cmd; ok when it exits 0, else not ok with its output
#   vhp_check_output "desc" PATTERN cmd...
#                              runs cmd; ok when it exits 0 and its output matches the ERE PATTERN
#   vhp_check_lacks "desc" PATTERN cmd...
#                              runs cmd; ok when it exits 0 and its output does not match the ERE
#                              PATTERN (a negative check that fails when cmd cannot answer)
#   vhp_done                   prints the summary; exits 1 when anything failed
#
# umockdev:
#   vhp_run_in_testbed FIXTURE...
#       re-runs the calling script inside `umockdev-run -d FIXTURE ...` and does not return;
#       inside the testbed (UMOCKDEV_DIR set) it returns at once. VHP_TMP (and what the script put
#       there before) is handed over to the inner run, which removes it at exit. Call it right after
#       sourcing this file, or after preparing files in VHP_TMP (e.g. a generated fixture).
#
# QEMU:
#   vhp_start_qemu NAME SOCKET [extra qemu args...]
#       starts a paused q35 TCG QEMU with qemu-xhci (id xhci, 8+8 ports) and three
#       pcie-root-ports (rp1..rp3) and a QMP server on SOCKET; waits for the socket (10 s).
#       Its stdout/stderr go to $VHP_TMP/qemu-NAME.log. Returns 1 when it did not come up.
#       Start it inside the same umockdev testbed as the code under test so its libusb sees the
#       fake devices; keep it short-lived (a fake usbfs fd makes QEMU's main loop spin).
#   vhp_stop_qemu NAME          stops it (SIGTERM, then SIGKILL after 5 s) and reaps it
#   vhp_qemu_pid NAME           prints its pid

set -u

VHP_TOP=${VHP_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
BUILD=${BUILD:-build}
case $BUILD in
/*) VHP_BUILD=$BUILD ;;
*) VHP_BUILD=$VHP_TOP/$BUILD ;;
esac
VHP_TOOLS=$VHP_BUILD/tests
VHP_FIXTURES=${VHP_FIXTURES:-$VHP_TOP/tests/data/umockdev}
if [ -n "${VHP_TMP_HANDOVER:-}" ] && [ -d "$VHP_TMP_HANDOVER" ]; then
        VHP_TMP=$VHP_TMP_HANDOVER # handed over by vhp_run_in_testbed: ours to remove now
        unset VHP_TMP_HANDOVER
else
        VHP_TMP=$(mktemp -d "${TMPDIR:-/tmp}/vhp-test.XXXXXX")
fi
export VHP_TOP BUILD VHP_BUILD VHP_TOOLS VHP_TMP VHP_FIXTURES

_vhp_passed=0
_vhp_failed=0
_vhp_skipped=0
declare -A _vhp_qemu_pids=()
_vhp_exit_cmds=()

# ---- reporting ----

vhp_ok() {
        echo "ok - $1"
        _vhp_passed=$((_vhp_passed + 1))
}

vhp_fail() {
        echo "not ok - $1"
        [ $# -gt 1 ] && [ -n "$2" ] && printf '%s\n' "$2" | sed 's/^/#   /'
        _vhp_failed=$((_vhp_failed + 1))
        return 0
}

vhp_skip() {
        echo "ok - $1 # SKIP ${2:-}"
        _vhp_skipped=$((_vhp_skipped + 1))
}

vhp_check() {
        local desc=$1 out
        shift
        if out=$("$@" 2>&1); then
                vhp_ok "$desc"
        else
                vhp_fail "$desc" "$out"
        fi
}

vhp_check_output() {
        local desc=$1 pattern=$2 out
        shift 2
        if out=$("$@" 2>&1) && grep -Eq -- "$pattern" <<<"$out"; then
                vhp_ok "$desc"
        else
                vhp_fail "$desc" "expected /$pattern/, got: $out"
        fi
}

vhp_check_lacks() {
        local desc=$1 pattern=$2 out
        shift 2
        if out=$("$@" 2>&1) && ! grep -Eq -- "$pattern" <<<"$out"; then
                vhp_ok "$desc"
        else
                vhp_fail "$desc" "expected no /$pattern/, got: $out"
        fi
}

vhp_done() {
        echo "# $_vhp_passed passed, $_vhp_failed failed, $_vhp_skipped skipped"
        [ "$_vhp_failed" -eq 0 ]
        exit $?
}

# ---- cleanup ----

vhp_on_exit() {
        _vhp_exit_cmds+=("$1")
}

_vhp_cleanup() {
        local name cmd
        for cmd in "${_vhp_exit_cmds[@]}"; do
                eval "$cmd" || true
        done
        for name in "${!_vhp_qemu_pids[@]}"; do
                vhp_stop_qemu "$name"
        done
        rm -rf "$VHP_TMP"
}
trap _vhp_cleanup EXIT
trap 'exit 130' INT TERM

# ---- umockdev ----

vhp_run_in_testbed() {
        [ -n "${UMOCKDEV_DIR:-}" ] && return 0
        local args=() f
        for f in "$@"; do
                [ -r "$f" ] || { vhp_fail "umockdev fixture $f readable"; vhp_done; }
                args+=(-d "$f")
        done
        trap - EXIT
        export VHP_TMP_HANDOVER=$VHP_TMP
        exec umockdev-run "${args[@]}" -- bash "$0"
}

# ---- the kernel's PCI core (tests/tools/vhp-fake-vfio) ----

# vhp_fake_kernel_start LOG: starts the stand-in on the testbed's real paths (no umockdev preload
# for it), every sysfs write logged in LOG; waits until it is ready and stops it on exit.
vhp_fake_kernel_start() {
        VHP_KLOG=$1
        VHP_KSYNC=0
        env -u LD_PRELOAD "$VHP_TOOLS/vhp-fake-vfio" "$UMOCKDEV_DIR" "$VHP_KLOG" >"$VHP_TMP/kernel.out" 2>&1 &
        vhp_on_exit "kill $! 2>/dev/null; wait $! 2>/dev/null"
        for _ in $(seq 100); do grep -qs '^ready$' "$VHP_TMP/kernel.out" && break; sleep 0.05; done
        grep -qs '^ready$' "$VHP_TMP/kernel.out" || { vhp_fail "kernel stand-in ready" "$(cat "$VHP_TMP/kernel.out")"; vhp_done; }
        : >>"$VHP_KLOG"
}

# vhp_ksync: waits until the stand-in has handled every sysfs write made so far.
vhp_ksync() {
        VHP_KSYNC=$((VHP_KSYNC + 1))
        echo "$VHP_KSYNC" >"$VHP_KLOG.sync"
        for _ in $(seq 200); do
                [ "$(cat "$VHP_KLOG.ack" 2>/dev/null)" = "$VHP_KSYNC" ] && return 0
                sleep 0.05
        done
        vhp_fail "kernel stand-in answered sync $VHP_KSYNC"
}

# ---- QEMU ----

# vhp_qmp_wait SOCKET PID: waits up to 10 s until the QEMU (or stand-in) with PID answers QMP on
# SOCKET. Its socket file appears at bind(), a moment before it listens: a test that connected
# then would see a VM that is not running.
vhp_qmp_wait() {
        local sock=$1 pid=$2 i
        for ((i = 0; i < 200; i++)); do
                [ -S "$sock" ] && VHP_QMP_TIMEOUT_MS=2000 "$VHP_TOOLS/vhp-qmp" "$sock" qom-list '{"path":"/machine/peripheral"}' >/dev/null 2>&1 &&
                        return 0
                kill -0 "$pid" 2>/dev/null || return 1
                sleep 0.05
        done
        return 1
}

vhp_start_qemu() {
        local name=$1 sock=$2 pid
        shift 2
        rm -f "$sock"
        qemu-system-x86_64 -machine q35,accel=tcg -nodefaults -display none -S \
                -device qemu-xhci,id=xhci,p2=8,p3=8 \
                -device pcie-root-port,id=rp1,chassis=1 \
                -device pcie-root-port,id=rp2,chassis=2 \
                -device pcie-root-port,id=rp3,chassis=3 \
                -qmp "unix:$sock,server=on,wait=off" "$@" \
                </dev/null >"$VHP_TMP/qemu-$name.log" 2>&1 &
        pid=$!
        _vhp_qemu_pids[$name]=$pid
        vhp_qmp_wait "$sock" "$pid" && return 0
        echo "# QEMU $name did not come up:" >&2
        sed 's/^/#   /' "$VHP_TMP/qemu-$name.log" >&2
        vhp_stop_qemu "$name"
        return 1
}

vhp_qemu_pid() {
        echo "${_vhp_qemu_pids[$1]:-}"
}

vhp_stop_qemu() {
        local name=$1 pid i
        pid=${_vhp_qemu_pids[$name]:-}
        [ -n "$pid" ] || return 0
        unset "_vhp_qemu_pids[$name]"
        kill "$pid" 2>/dev/null
        for ((i = 0; i < 100; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.05
        done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        return 0
}

# ---- udev events in a testbed ----

# vhp_tty COMMAND...: runs COMMAND with its stdout on a pseudo-terminal, as when a person runs it
# (the helper prints its summary only then, or with --json), and prints what it wrote there (CR LF
# as LF); its stderr stays apart, on ours. Returns COMMAND's status. Needs script(1) (bsdutils).
vhp_tty() {
        local err rc
        err=$(mktemp "$VHP_TMP/tty-err.XXXXXX")
        script -qec "$(printf '%q ' "$@") 2>$(printf '%q' "$err")" /dev/null </dev/null | tr -d '\r'
        rc=${PIPESTATUS[0]}
        cat "$err" >&2
        rm -f "$err"
        return "$rc"
}

# vhp_uevent_props DEVPATH: the device's udev properties, one KEY=VALUE a line, as udev puts them
# into an event's environment: from its uevent file, or after vhp_unplug from the copy kept then.
# Use: mapfile -t props < <(vhp_uevent_props "$p"); env "${props[@]}" ACTION=add ... helper
vhp_uevent_props() {
        local f=/sys$1/uevent
        [ -e "$f" ] || f=$VHP_TMP/unplugged${1//\//_}.uevent
        sed 's/\\n$//' "$f"
}

# vhp_unplug DEVPATH: the kernel's side of an unplug in the testbed (umockdev's own removal neither
# emits uevents nor removes children): the sysfs entry goes, its properties are kept for the remove
# event as udev keeps them.
vhp_unplug() {
        cp "/sys$1/uevent" "$VHP_TMP/unplugged${1//\//_}.uevent"
        rm -rf "$UMOCKDEV_DIR/sys$1" "$UMOCKDEV_DIR/sys/bus/usb/devices/${1##*/}"
}
