#!/usr/bin/env bash
# Runs every test and ends with "N passed, N failed, N skipped".
#  tests/unit/test-*.c          cmocka programs (built into $BUILD/tests/); test-umockdev-* run
#                               under umockdev-wrapper. cmocka's skip() counts as skipped.
#  tests/integration/test-*.sh  scripts printing "ok - ..." / "not ok - ..." lines (TAP); an
#                               "ok - ... # SKIP reason" line (vhp_skip) counts as skipped.
# A skipped check is never counted as passed. The exit status is non-zero when anything failed
# (skips alone do not fail the run: only truly optional checks may skip, see tests/lib.sh).
# TESTS="pattern" limits the run to tests whose name contains pattern; --unit-only skips the
# integration scripts; VHP_UNIT_WRAPPER (e.g. a valgrind command line) runs each unit test under it.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD VHP_TOP=$PWD
export ASAN_OPTIONS=${ASAN_OPTIONS:-verify_asan_link_order=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Run from a systemd service (CI under systemd), the programs would log to the journal instead of
# the stderr the tests read; tests that want the journal set these themselves.
unset INVOCATION_ID JOURNAL_STREAM
logdir=$BUILD/test-logs
mkdir -p "$logdir"
passed=0 failed=0 skipped=0 failed_names=()

count() { # file -> "passed failed skipped", from cmocka's summary lines and TAP lines
        local f=$1 p fl sk
        p=$(grep -hoE '^\[  PASSED  \] [0-9]+' "$f" | awk '{s+=$NF} END {print s+0}')
        fl=$(grep -hoE '^\[  FAILED  \] [0-9]+ test' "$f" | awk '{s+=$(NF-1)} END {print s+0}')
        sk=$(grep -hoE '^\[  SKIPPED \] [0-9]+ test' "$f" | awk '{s+=$(NF-1)} END {print s+0}')
        p=$((p + $(grep -E '^ok( |$)' "$f" | grep -cviE '#[[:space:]]*skip')))
        sk=$((sk + $(grep -E '^ok( |$)' "$f" | grep -ciE '#[[:space:]]*skip')))
        fl=$((fl + $(grep -cE '^not ok( |$)' "$f")))
        echo "$p $fl $sk"
}

run_one() { # name, command...
        local name=$1; shift
        [ -n "${TESTS:-}" ] && [[ $name != *"$TESTS"* ]] && return 0
        local log=$logdir/$name.log rc p fl sk
        echo "== $name"
        "$@" >"$log" 2>&1
        rc=$?
        read -r p fl sk < <(count "$log")
        if [ "$rc" -ne 0 ] && [ "$fl" -eq 0 ]; then
                fl=1 # crashed or failed outside any test
                echo "not ok - $name exited with status $rc" >>"$log"
        fi
        grep -E '^(not ok|\[  FAILED  \]|\[  ERROR   \]|\[  SKIPPED \] [^0-9])' "$log" | awk '!seen[$0]++' | sed 's/^/   /'
        grep -E '^ok( |$)' "$log" | grep -iE '#[[:space:]]*skip' | sed 's/^/   /'
        [ "$fl" -gt 0 ] && { failed_names+=("$name"); tail -n 30 "$log" | sed 's/^/   | /'; }
        echo "   $p passed, $fl failed, $sk skipped"
        passed=$((passed + p)) failed=$((failed + fl)) skipped=$((skipped + sk))
}

read -r -a wrapper <<<"${VHP_UNIT_WRAPPER:-}"
for t in tests/unit/test-*.c; do
        [ -e "$t" ] || continue
        name=$(basename "$t" .c)
        bin=$BUILD/tests/$name
        if [[ $name == test-umockdev-* ]]; then
                run_one "$name" umockdev-wrapper "${wrapper[@]}" "$bin"
        else
                run_one "$name" "${wrapper[@]}" "$bin"
        fi
done
[ "${1:-}" = --unit-only ] && set -- || set -- tests/integration/test-*.sh
for t in "$@"; do
        [ -e "$t" ] || continue
        run_one "$(basename "$t" .sh)" timeout 600 bash "$t"
done

[ ${#failed_names[@]} -gt 0 ] && echo "failed: ${failed_names[*]} (logs in $logdir)"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
