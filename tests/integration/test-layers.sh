#!/usr/bin/env bash
# The structure docs/design.md describes, checked against the code's own #include lines: imports
# point down the layers, no file includes one that includes it back, the store knows no domain
# header, and only the QEMU back end speaks QMP.
. "$(dirname "$0")/../lib.sh"
cd "$VHP_TOP" || exit 1

# layer of a source file or header (lower numbers are lower layers)
layer() {
        case $(basename "$1" | sed 's/\.[ch]$//') in
        util | errmsg | cleanup | cleanup-types | lock | log | json | addr | dl) echo 0 ;;
        client) echo 1 ;;
        schema | db | db-internal | db-file | db-stmt | db-ops | db-power) echo 1 ;;
        qmp | crosvm | vfio) echo 1 ;;
        config | rule | device | modalias | legacy) echo 2 ;;
        vmm | vmm-internal | vmm-qemu | vmm-crosvm) echo 3 ;;
        xact) echo 4 ;;
        generator) echo 3 ;;
        event | reconcile | service | coldplug | power | ops) echo 5 ;;
        proto | notify) echo 6 ;;
        api) echo 7 ;;
        main | event-client) echo 8 ;;
        *) echo "?" ;;
        esac
}
includes() { sed -n 's/^#include "\([^"]*\)".*/\1/p' "$1"; }
files=$(ls lib/*.[ch] db/*.[ch] helper/*.c reconcile/*.c api/*.c ctl/*.c generator/*.c)

bad=""
for f in $files; do
        lf=$(layer "$f")
        [ "$lf" = "?" ] && { bad+="$f: not placed in a layer (add it to tests/integration/test-layers.sh and docs/design.md)"$'\n'; continue; }
        for h in $(includes "$f"); do
                lh=$(layer "$h")
                [ "$lh" = "?" ] && { bad+="$f includes $h, which is in no layer"$'\n'; continue; }
                [ "$(basename "$h" .h)" = "$(basename "$f" | sed 's/\.[ch]$//')" ] && continue
                [ "$lh" -gt "$lf" ] && bad+="$f (layer $lf) includes $h (layer $lh)"$'\n'
        done
done
[ -z "$bad" ] && vhp_ok "imports point down the layers" || vhp_fail "imports point down the layers" "$bad"

# No circle: a header never includes, directly or through others, the module that includes it.
cycles=""
declare -A deps=()
for f in $files; do
        m=$(basename "$f" | sed 's/\.[ch]$//')
        for h in $(includes "$f"); do
                hm=$(basename "$h" .h)
                [ "$hm" != "$m" ] && deps[$m]+=" $hm"
        done
done
reach() { # module visited-list -> prints reachable modules
        local m=$1 seen=" $2 " d
        for d in ${deps[$m]:-}; do
                case $seen in *" $d "*) continue ;; esac
                seen+="$d "
                echo "$d"
                reach "$d" "$seen"
        done
}
for m in "${!deps[@]}"; do
        reach "$m" "$m" | grep -qx "$m" && cycles+="$m "
done
[ -z "$cycles" ] && vhp_ok "no module reaches itself through its imports" ||
        vhp_fail "import circles" "modules on a circle: $cycles"

qmp_users=$(grep -l '#include "qmp.h"' lib/*.c lib/*.h db/* helper/*.c reconcile/*.c api/*.c ctl/*.c generator/*.c | grep -vx 'lib/qmp.c\|lib/vmm-qemu.c')
[ -z "$qmp_users" ] && vhp_ok "only the QEMU back end includes qmp.h" || vhp_fail "qmp.h included by" "$qmp_users"
domain=$(grep -l '#include "\(device\|rule\|config\|vmm\|xact\|event\)\.h"' db/* || true)
[ -z "$domain" ] && vhp_ok "db/ includes no domain header" || vhp_fail "db/ includes domain headers" "$domain"
printers=$(grep -ln '\b\(printf\|fprintf\|puts\|syslog\)(' lib/*.c db/*.c | grep -vx 'lib/log.c' || true)
[ -z "$printers" ] && vhp_ok "lib/ and db/ print nothing (lib/log.c is for the programs)" ||
        vhp_fail "lib/ or db/ code prints" "$printers"
# libkmod, libsystemd, libusb and libpci (and what they pull in) are opened at first use: no
# program loads them at start-up, and only lib/dl.c calls dlopen.
for p in vhotplug-helper vhotplug-reconcile vhotplug-api vhotplugctl vhotplug-generator; do
        [ -x "$VHP_BUILD/$p" ] || continue
        needed=$(readelf -d "$VHP_BUILD/$p" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | grep -E '^lib(kmod|systemd|usb-1\.0|pci|z)\.' || true)
        [ -z "$needed" ] && vhp_ok "$p does not load libkmod, libsystemd, libusb or libpci at start-up" ||
                vhp_fail "$p loads at start-up" "$needed"
done
openers=$(grep -ln '\bdlopen(' lib/*.c db/*.c | grep -vx 'lib/dl.c' || true)
[ -z "$openers" ] && vhp_ok "only lib/dl.c opens libraries" || vhp_fail "dlopen outside lib/dl.c" "$openers"
vhp_done
