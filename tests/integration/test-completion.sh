#!/usr/bin/env bash
# bash completion (completion/): every program has a file named after it, every long option its
# --help lists is offered, --vm offers the VM names of the configuration given with -c, the
# helper's operands (ACTION, then a DEVPATH) complete. The completion functions run as bash runs
# them: COMP_WORDS/COMP_CWORD set, the function called, COMPREPLY read.
. "$(dirname "$0")/../lib.sh"

C=$VHP_TOP/completion
# complete PROGRAM WORD...: the candidates for the last WORD, sorted, one line.
complete_words() {
        local prog=$1
        shift
        bash -c '
                prog=$1 dir=$2; shift 2
                . "$dir/$prog" || exit 1
                COMP_WORDS=("$prog" "$@"); COMP_CWORD=$#
                f=$(complete -p "$prog" | sed -n "s/.*-F \([^ ]*\) .*/\1/p")
                [ -n "$f" ] || { echo "no complete -F for $prog" >&2; exit 1; }
                "$f"
                printf "%s\n" "${COMPREPLY[@]}" | sort | xargs' bash "$prog" "$C" "$@"
}

progs=()
for p in "$VHP_BUILD"/vhotplug-* "$VHP_BUILD"/vhotplugctl; do
        # A systemd generator is run by systemd, not typed: no completion.
        [ -x "$p" ] && [ -f "$p" ] && [[ $p != *-generator ]] && progs+=("$(basename "$p")")
done
[ ${#progs[@]} -ge 2 ] || vhp_fail "the programs are built (make all)" "found: ${progs[*]}"

for p in "${progs[@]}"; do
        if [ ! -f "$C/$p" ]; then
                vhp_fail "$p: completion/$p exists"
                continue
        fi
        want=$("$VHP_BUILD/$p" --help 2>&1 | grep -oE -- '--[a-z][a-z-]+' | sort -u | xargs)
        got=$(complete_words "$p" --)
        miss=$(comm -23 <(tr ' ' '\n' <<<"$want" | sort) <(tr ' ' '\n' <<<"$got" | sort) | xargs)
        [ -n "$want" ] && [ -z "$miss" ] && vhp_ok "$p: every long option of --help is completed" ||
                vhp_fail "$p: every long option of --help is completed" "missing: $miss (--help: $want; offered: $got)"
        vhp_check_lacks "$p: bash -n" . bash -n "$C/$p"
done
vhp_check_lacks "completion/vhotplug: bash -n" . bash -n "$C/vhotplug"

cat >"$VHP_TMP/conf.json" <<'EOF'
{
  "usbPassthrough": [ { "targetVm": "gui-vm", "allow": [ { "vendorId": "046d" } ] } ],
  "evdevPassthrough": [ { "targetVm": "gui-vm", "allow": [ { "name": "not-a-vm" } ] } ],
  "vms": [
    { "name": "gui-vm", "type": "qemu", "socket": "/run/gui.sock" },
    { "name": "net-vm", "type": "crosvm", "socket": "/run/net.sock" }
  ]
}
EOF
vhp_check_output "vhotplug-reconcile --vm: the configuration's VM names" '^gui-vm net-vm$' \
        complete_words vhotplug-reconcile -c "$VHP_TMP/conf.json" --vm ''
vhp_check_output "vhotplug-reconcile --vm n: net-vm" '^net-vm$' \
        complete_words vhotplug-reconcile -c "$VHP_TMP/conf.json" --vm n
# Without jq: the plain scan finds the same names (PATH without jq).
mkdir -p "$VHP_TMP/nojq"
for t in bash sort xargs sed grep tr cat; do ln -sf "$(command -v $t)" "$VHP_TMP/nojq/$t"; done
ln -sf /bin/echo "$VHP_TMP/nojq/echo"
vhp_check_output "--vm without jq: the same names" '^gui-vm net-vm$' \
        env PATH="$VHP_TMP/nojq" bash -c "$(declare -f complete_words); C='$C'; complete_words vhotplug-reconcile -c '$VHP_TMP/conf.json' --vm ''"
vhp_check_output "vhotplug-reconcile --x: no such option, nothing offered" '^$' \
        complete_words vhotplug-reconcile --x
vhp_check_output "vhotplug-helper -c: files" "conf\.json" complete_words vhotplug-helper -c "$VHP_TMP/co"
vhp_check_output "vhotplug-helper --dr: --dry-run" '^--dry-run$' complete_words vhotplug-helper --dr
vhp_check_output "vhotplug-helper ACTION: add remove change bind" '^add bind change remove$' \
        complete_words vhotplug-helper -n ''
vhp_check_output "vhotplug-helper -c FILE r: remove" '^remove$' complete_words vhotplug-helper -c x.json r
vhp_check_output "vhotplug-helper add /devices/: udev DEVPATHs (under /sys)" '(^| )/devices/[a-z]' \
        complete_words vhotplug-helper add /devices/
vhp_check_output "vhotplug-helper add DEVPATH THIRD: nothing" '^$' complete_words vhotplug-helper add /devices/x ''
vhp_check_output "vhotplug-helper --service: no ACTION" '^$' complete_words vhotplug-helper --service ''
vhp_check_output "vhotplug-event --socket: files" "conf\.json" complete_words vhotplug-event --socket "$VHP_TMP/co"

vhp_done
