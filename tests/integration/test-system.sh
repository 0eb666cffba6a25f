#!/usr/bin/env bash
# System integration: make install/uninstall, the systemd units (systemd-analyze verify), the udev
# rule (udevadm test on a real PCI device and on umockdev USB/input fixtures), the systemd-run
# hand-off it produces (sent to a private D-Bus and captured), and the manual pages.
# Needs no running systemd or udevd. Optional: the udevadm and systemd-run hand-off checks need root
# (they write a rule to /run/udev/rules.d and mount in a private namespace); run as another user they
# are skipped ("ok - ... # SKIP needs root"). Everything else they need (udevadm, umockdev,
# dbus-daemon, systemd-analyze, man-db, groff: installed by scripts/setup-deps.sh) fails when missing.
set -u
cd "${VHP_TOP:-$(dirname "$0")/../..}" || exit 1
TOP=$PWD
BUILD=${BUILD:-build}
FIXTURES=${VHP_FIXTURES:-$TOP/tests/data/umockdev}
T=$(mktemp -d /tmp/vhp-system.XXXXXX)
RULE=$T/90-vhotplug-test.rules
pids=()
had_run_udev=0; [ -e /run/udev ] && had_run_udev=1
udev_before=$(find /run/udev 2>/dev/null | sort)

cleanup() {
        local p
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
        # udevadm test runs with a private /run/udev (see udev_private); should anything still have
        # reached the machine's, remove what this test created.
        if [ "$had_run_udev" = 0 ]; then
                rm -rf /run/udev
        elif [ -d /run/udev ]; then
                comm -13 <(printf '%s\n' "$udev_before") <(find /run/udev | sort) | sort -r |
                        while read -r f; do [ -n "$f" ] && rm -rf "$f"; done
        fi
        if [ -n "${KEEP:-}" ]; then echo "# kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $*"; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; } # description, reason: optional checks only
check() { # description, command...
        local d=$1; shift
        if "$@"; then ok "$d"; else not_ok "$d"; fi
}
is_root() { [ "$(id -u)" -eq 0 ]; }
lacks() { grep -qE "$@"; [ $? = 1 ]; } # ERE, files...: the files can be read and none matches

# --- programs to install: the real ones when built, else stand-ins (install only copies them)
PROG_DIR=$TOP/$BUILD
real_progs=1
if [ ! -x "$PROG_DIR/vhotplug-helper" ] || [ ! -x "$PROG_DIR/vhotplug-reconcile" ]; then
        make -s BUILD="$BUILD" all >/dev/null 2>&1 || :
fi
if [ ! -x "$PROG_DIR/vhotplug-helper" ] || [ ! -x "$PROG_DIR/vhotplug-reconcile" ]; then
        real_progs=0
        PROG_DIR=$T/stub-build
        mkdir -p "$PROG_DIR"
        for p in vhotplug-helper vhotplug-reconcile; do
                printf '#!/bin/sh\nexit 0\n' >"$PROG_DIR/$p"
                chmod 0755 "$PROG_DIR/$p"
        done
        not_ok "vhotplug-helper and vhotplug-reconcile are built (make all): installing stand-ins"
fi
# -o: never rebuild the programs from here; install copies what exists.
mk() { make -s --no-print-directory BUILD="$PROG_DIR" -o "$PROG_DIR/vhotplug-helper" \
        -o "$PROG_DIR/vhotplug-reconcile" "$@"; }

pc_var() { pkg-config --variable="$1" "$2" 2>/dev/null; }
UDEVDIR=$(pc_var udevdir udev); UDEVDIR=${UDEVDIR:-/usr/lib/udev}
UNITDIR=$(pc_var systemdsystemunitdir systemd); UNITDIR=${UNITDIR:-/usr/lib/systemd/system}
TMPFDIR=$(pc_var tmpfilesdir systemd); TMPFDIR=${TMPFDIR:-/usr/lib/tmpfiles.d}

# --- make install / uninstall --------------------------------------------------------------
D=$T/root
if mk install PREFIX=/usr/local DESTDIR="$D" >"$T/install.log" 2>&1; then
        ok "make install DESTDIR=... succeeds"
else
        not_ok "make install DESTDIR=... succeeds"; sed 's/^/# /' "$T/install.log"
fi

expected_tree() {
        {
                echo "-rwxr-xr-x /usr/local/sbin/vhotplug-helper"
                echo "-rwxr-xr-x /usr/local/sbin/vhotplug-reconcile"
                echo "-rw-r--r-- $UDEVDIR/rules.d/90-vhotplug.rules"
                echo "-rw-r--r-- $UNITDIR/vhotplug-helper-.service.d/10-vhotplug.conf"
                echo "-rw-r--r-- $UNITDIR/vhotplug-reconcile.service"
                echo "-rw-r--r-- $UNITDIR/vhotplug-reconcile.timer"
                echo "-rw-r--r-- $UNITDIR/vhotplug-reconcile@.service"
                echo "-rw-r--r-- $TMPFDIR/vhotplug.conf"
                for m in man/*.[1-8]; do echo "-rw-r--r-- /usr/local/share/man/man${m##*.}/${m#man/}"; done
                for c in completion/*; do echo "-rw-r--r-- /usr/local/share/bash-completion/completions/${c#completion/}"; done
                [ -e README.md ] && echo "-rw-r--r-- /usr/local/share/doc/vhotplug/README.md"
                [ -e examples/vhotplug.conf ] &&
                        echo "-rw-r--r-- /usr/local/share/doc/vhotplug/examples/vhotplug.conf"
                echo "drwx------ /var/lib/vhotplug"
        } | sort -k2
}
actual_tree() { # files, links, and directories that are empty or not world-readable
        (cd "$1" && find . \( ! -type d -o -type d -empty -o -type d ! -perm -o=r \) -printf '%M /%P\n') |
                sort -k2
}
if diff -u <(expected_tree) <(actual_tree "$D") >"$T/tree.diff"; then
        ok "make install produces exactly the expected files and modes"
else
        not_ok "make install produces exactly the expected files and modes"; sed 's/^/# /' "$T/tree.diff"
fi
check "/etc is left alone (no vhotplug.conf installed)" test ! -e "$D/etc"
check "installed rule and units have every @placeholder@ substituted" lacks -r '@[a-z_]+@' "$D$UDEVDIR" "$D$UNITDIR"
joined() { sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$1"; } # udev's line continuation
check "installed rule starts /usr/local/sbin/vhotplug-helper through /usr/bin/systemd-run (3 rules)" \
        test "$(joined "$D$UDEVDIR/rules.d/90-vhotplug.rules" |
                grep -c '^RUN+="/usr/bin/systemd-run .* /usr/local/sbin/vhotplug-helper"$')" = 3
check "installed units run /usr/local/sbin/vhotplug-reconcile" \
        grep -qx 'ExecStart=/usr/local/sbin/vhotplug-reconcile --vm %i' "$D$UNITDIR/vhotplug-reconcile@.service"
if [ "$real_progs" = 1 ]; then
        check "installed programs are the built ones" \
                cmp -s "$PROG_DIR/vhotplug-helper" "$D/usr/local/sbin/vhotplug-helper"
fi

D2=$T/root-usr
mk install PREFIX=/usr DESTDIR="$D2" >/dev/null 2>&1
check "PREFIX=/usr installs into /usr/sbin and the rule follows" \
        test "$(joined "$D2$UDEVDIR/rules.d/90-vhotplug.rules" | grep -c ' /usr/sbin/vhotplug-helper"$')" = 3

check "the units skip when there is no /etc/vhotplug.conf (3 ConditionPathExists=)" \
        test "$(cat "$D$UNITDIR"/*.service "$D$UNITDIR"/*/*.conf | grep -cx 'ConditionPathExists=/etc/vhotplug.conf')" = 3

# SYSCONFDIR moves the configuration: the units look for it there, the programs read it from there
# by default. CPPFLAGS reach the compiler (Debian's dpkg-buildflags put -D_FORTIFY_SOURCE=2 there).
D3=$T/root-sysconf
mk install PREFIX=/usr DESTDIR="$D3" SYSCONFDIR=/opt/vhp/etc >/dev/null 2>&1
check "SYSCONFDIR=/opt/vhp/etc: the units check for /opt/vhp/etc/vhotplug.conf" \
        test "$(cat "$D3$UNITDIR"/*.service "$D3$UNITDIR"/*/*.conf | grep '^ConditionPathExists=' | sort | uniq -c | xargs)" \
        = "3 ConditionPathExists=/opt/vhp/etc/vhotplug.conf"
make -s --no-print-directory BUILD="$T/sysconf" SYSCONFDIR=/opt/vhp/etc "$T/sysconf/obj/helper/main.o" \
        "$T/sysconf/obj/reconcile/main.o" >"$T/sysconf.log" 2>&1
check "SYSCONFDIR=/opt/vhp/etc: the programs' default configuration is /opt/vhp/etc/vhotplug.conf" \
        test "$(cat "$T/sysconf/obj/helper/main.o" "$T/sysconf/obj/reconcile/main.o" 2>/dev/null |
                grep -ac '(default /opt/vhp/etc/vhotplug.conf)')" = 2
check "CPPFLAGS reach the compiler" grep -q -- ' -D_FORTIFY_SOURCE=2 .* -c -o ' \
        <(make -n -B BUILD="$T/cppflags" CPPFLAGS=-D_FORTIFY_SOURCE=2 "$T/cppflags/obj/lib/log.o" 2>&1)

mk uninstall PREFIX=/usr DESTDIR="$D2" >/dev/null 2>&1
check "make uninstall leaves no file behind" test -z "$(find "$D2" ! -type d)"
mkdir -p "$T/keep" && cp -a "$D/." "$T/keep/"
echo data >"$T/keep/var/lib/vhotplug/state.db"
mk uninstall PREFIX=/usr/local DESTDIR="$T/keep" >/dev/null 2>&1
check "make uninstall keeps a state directory that holds a database" \
        test "$(cd "$T/keep" && find . ! -type d)" = "./var/lib/vhotplug/state.db"

# --- systemd units ---------------------------------------------------------------------------
# Units as installed, with ExecStart= pointing at the installed (existing) programs: verify checks
# that the binaries exist. vhotplug-helper-4242.service stands for the transient unit
# systemd-run creates; the drop-in must apply to it by name prefix.
U=$T/units
mkdir -p "$U" && cp -r "$D$UNITDIR/." "$U/"
sed -i "s|/usr/local/sbin/|$D/usr/local/sbin/|" "$U"/*.service
printf '[Service]\nExecStart=%s\n' "$D/usr/local/sbin/vhotplug-helper" >"$U/vhotplug-helper-4242.service"
verify() { (cd "$U" && systemd-analyze verify --man=no "$@" 2>&1); }
if command -v systemd-analyze >/dev/null; then
        for unit in vhotplug-reconcile.service vhotplug-reconcile.timer vhotplug-reconcile@vm1.service \
                vhotplug-helper-4242.service; do
                out=$(verify "$U/$unit"); rc=$?
                if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
                        ok "systemd-analyze verify $unit: clean"
                else
                        not_ok "systemd-analyze verify $unit: clean (rc=$rc)"; printf '# %s\n' "$out"
                fi
        done
        # The drop-in really reaches vhotplug-helper-NNNN.service: a bad key in it is reported.
        cp -r "$U" "$T/units-bad"
        echo 'NoSuchSetting=1' >>"$T/units-bad/vhotplug-helper-.service.d/10-vhotplug.conf"
        out=$(cd "$T/units-bad" && systemd-analyze verify --man=no "$T/units-bad/vhotplug-helper-4242.service" 2>&1)
        check "drop-in vhotplug-helper-.service.d applies to vhotplug-helper-NNNN.service" \
                grep -q "vhotplug-helper-.service.d/10-vhotplug.conf:.*NoSuchSetting" <<<"$out"
        sed "s|^ExecStart=.*|ExecStart=$T/nonexistent|" "$U/vhotplug-reconcile.service" \
                >"$T/units-bad/vhotplug-reconcile.service"
        check "systemd-analyze verify fails for a unit whose program is missing" \
                bash -c "! (cd '$T/units-bad' && systemd-analyze verify --man=no '$T/units-bad/vhotplug-reconcile.service') >/dev/null 2>&1"
else
        not_ok "systemd-analyze verify (systemd-analyze not installed: scripts/setup-deps.sh installs systemd)"
fi
check "reconcile units use the same sandbox as the per-event drop-in" bash -c "
        diff <(sed -n '/^UMask=/,\$p' '$U/vhotplug-helper-.service.d/10-vhotplug.conf') \
             <(sed -n '/^UMask=/,/^\$/p' '$U/vhotplug-reconcile.service' | sed '/^\$/d') &&
        diff <(sed -n '/^UMask=/,\$p' '$U/vhotplug-helper-.service.d/10-vhotplug.conf') \
             <(sed -n '/^UMask=/,\$p' '$U/vhotplug-reconcile@.service')"
check "no ProtectClock=/PrivateDevices=/DeviceAllow= (they would close /dev/bus/usb to crosvm)" \
        lacks '^(ProtectClock|PrivateDevices|DeviceAllow|DevicePolicy|PrivateTmp|ProtectKernelTunables)=' \
        "$U"/*.service "$U"/vhotplug-helper-.service.d/*.conf

# --- udev rule: udevadm test -----------------------------------------------------------------
# udevadm test writes the udev database entry of the device it tests (/run/udev/data): written
# into the machine's /run/udev, that of a umockdev device would be read by any other test on this
# machine that replays the same device. So each udevadm test runs in a private mount namespace
# whose /run/udev is an empty tmpfs holding only the rule under test, with the helper path pointing
# at the installed program (systemd-run checks that it exists, see below).
udev_private() { # command...
        unshare -m --propagation private sh -c 'mount -t tmpfs -o mode=0755 none /run/udev &&
                mkdir /run/udev/rules.d && cp "$0" /run/udev/rules.d/ && exec "$@"' "$RULE" "$@"
}
SBIN=$D/usr/local/sbin
run_lines() { grep -E "^run: '.* $SBIN/vhotplug-helper'\$"; }
E_COMMON='-E ACTION -E DEVPATH -E SUBSYSTEM -E DEVTYPE -E SEQNUM'
have_udev_test=0
if ! is_root; then
        skip "udevadm test of the udev rule" "needs root (a private mount namespace with its own /run/udev)"
elif ! command -v udevadm >/dev/null || ! command -v umockdev-run >/dev/null; then
        not_ok "udevadm test of the udev rule: udevadm or umockdev-run missing (scripts/setup-deps.sh installs them)"
elif sed "s|/usr/local/sbin/|$SBIN/|" "$D$UDEVDIR/rules.d/90-vhotplug.rules" >"$RULE" && mkdir -p /run/udev &&
        udev_private test -s /run/udev/rules.d/90-vhotplug-test.rules; then
        have_udev_test=1
else
        not_ok "udevadm test of the udev rule: no private /run/udev (unshare -m, mount tmpfs) here"
fi
# USB and input devices come from umockdev fixtures (this machine may have neither); PCI from the
# machine when it has a PCI device, else from a fixture too.
umock_test() { # fixture, action, syspath
        udev_private umockdev-run -d "$FIXTURES/$1.umockdev" -- udevadm test --action="$2" "$3" 2>&1
}
pci=$(find /sys/bus/pci/devices -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort | head -n1)
if [ -n "$pci" ]; then
        pci_test() { udev_private udevadm test --action="$1" "/sys/bus/pci/devices/$pci" 2>&1; }
else
        pci=0000:00:14.3
        pci_test() { umock_test pci-wifi-intel "$1" "/sys/bus/pci/devices/$pci"; }
fi
if [ "$have_udev_test" = 1 ]; then
        for action in add remove change; do
                out=$(pci_test $action)
                line=$(run_lines <<<"$out")
                if [[ $line == "run: '/usr/bin/systemd-run --no-block --collect --quiet --unit=vhotplug-helper-"*" $E_COMMON "*"-E PCI_ID "*"-E PCI_SLOT_NAME "*" $SBIN/vhotplug-helper'" ]] &&
                        ! grep -q truncated <<<"$out"; then
                        ok "udevadm test --action=$action on PCI $pci hands off to systemd-run"
                else
                        not_ok "udevadm test --action=$action on PCI $pci hands off to systemd-run"
                        printf '# %s\n' "$line" "$(grep -i 'vhotplug\|truncat' <<<"$out" | head -5)"
                fi
        done
        out=$(pci_test bind)
        check "udevadm test --action=bind on PCI $pci starts nothing" test -z "$(run_lines <<<"$out")"
        out=$(pci_test add)
        unit_arg=$(run_lines <<<"$out" | grep -o -- '--unit=[^ ]*')
        check "the unit name is vhotplug-helper-SEQNUM (udevadm test has no SEQNUM: '$unit_arg')" \
                grep -qE '^--unit=vhotplug-helper-[0-9]*$' <<<"$unit_arg"
        check "the rule source names the unit after \$env{SEQNUM}" \
                grep -qF -- "--unit=vhotplug-helper-\$env{SEQNUM} " "$RULE"
fi
usb_cmd=
if [ "$have_udev_test" = 1 ]; then
        out=$(umock_test usb-yubikey remove /sys/bus/usb/devices/1-6)
        line=$(run_lines <<<"$out")
        check "USB device remove: hand-off passes what detach needs" \
                test -n "$line" -a -z "${line##*"$E_COMMON"*-E BUSNUM -E DEVNUM -E PRODUCT*-E ID_VENDOR_ID*-E ID_MODEL_ID*-E ID_SERIAL_SHORT -E ID_USB_INTERFACES*}"
        out=$(umock_test usb-yubikey add /sys/bus/usb/devices/1-6:1.0)
        check "USB interface (DEVTYPE=usb_interface) starts nothing" test -z "$(run_lines <<<"$out")"
        usb_cmd=$(umock_test usb-yubikey add /sys/bus/usb/devices/1-6 | run_lines)
        check "USB device add: udevadm test shows the hand-off (fixture $FIXTURES/usb-yubikey.umockdev)" \
                test -n "$usb_cmd"
fi
if [ "$have_udev_test" = 1 ]; then
        ev=/sys/devices/platform/i8042/serio0/input/input3/event3
        out=$(umock_test input-keyboard-i8042 add $ev)
        line=$(run_lines <<<"$out")
        check "input event node add: hand-off with ID_INPUT and ID_PATH_TAG" \
                test -n "$line" -a -z "${line##*"$E_COMMON"*-E ID_PATH_TAG*-E ID_INPUT *}"
        check "input hand-off does not pass NAME (raw device bytes could break the D-Bus call)" \
                test -n "$line" -a "${line/ -E NAME /}" = "$line"
        out=$(umock_test input-keyboard-i8042 add /sys/devices/platform/i8042/serio0/input/input3)
        check "input device inputN (not an event node) starts nothing" test -z "$(run_lines <<<"$out")"
fi

# --- the hand-off itself: systemd-run's StartTransientUnit call, captured on a private bus ------
# The run: command udev would execute is started in a private mount namespace where systemd is
# hidden (a tmpfs over /run/systemd), so systemd-run falls back to $DBUS_SYSTEM_BUS_ADDRESS: a
# private dbus-daemon, watched by dbus-monitor. Nothing is started on this machine.
handoff=0
if ! is_root; then
        skip "systemd-run hand-off on a private D-Bus" "needs root (udevadm test, a private mount namespace)"
elif [ -z "$usb_cmd" ]; then
        not_ok "systemd-run hand-off on a private D-Bus: no hand-off command from udevadm test (see above)"
elif ! command -v dbus-daemon >/dev/null || ! command -v dbus-monitor >/dev/null || ! command -v stdbuf >/dev/null; then
        not_ok "systemd-run hand-off on a private D-Bus: dbus-daemon or dbus-monitor missing (scripts/setup-deps.sh installs them)"
elif ! unshare -m true 2>/dev/null; then
        not_ok "systemd-run hand-off on a private D-Bus: unshare -m fails here (a container without CAP_SYS_ADMIN?)"
else
        handoff=1
fi
if [ "$handoff" = 1 ]; then
        cmd=${usb_cmd#run: \'}; cmd=${cmd%\'}
        cmd=${cmd/--unit=vhotplug-helper- /--unit=vhotplug-helper-4242 }
        dbus-daemon --session --nofork --address="unix:path=$T/bus" 2>/dev/null & pids+=($!)
        for _ in $(seq 100); do [ -S "$T/bus" ] && break; sleep 0.1; done
        stdbuf -oL dbus-monitor --address "unix:path=$T/bus" "type='method_call',member='StartTransientUnit'" \
                >"$T/monitor" 2>&1 & pids+=($!)
        for _ in $(seq 100); do grep -q NameLost "$T/monitor" 2>/dev/null && break; sleep 0.1; done
        # shellcheck disable=SC2086 # udev splits the RUN string on spaces (no quoted arguments here)
        ACTION=remove DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-6 SUBSYSTEM=usb \
                DEVTYPE=usb_device SEQNUM=4242 BUSNUM=001 DEVNUM=007 ID_VENDOR_ID=1050 \
                ID_MODEL_ID=0407 ID_MODEL='Key "with" spaces' DBUS_SYSTEM_BUS_ADDRESS="unix:path=$T/bus" \
                unshare -m sh -c 'mount -t tmpfs none /run/systemd 2>/dev/null ||
                        { mkdir -p /run/systemd && mount -t tmpfs none /run/systemd; }
                        mkdir /run/systemd/system && exec "$@"' sh $cmd >"$T/run.out" 2>&1
        for _ in $(seq 100); do grep -q 'string "ExecStart"' "$T/monitor" && break; sleep 0.1; done
        m=$(cat "$T/monitor")
        check "systemd-run asks for unit vhotplug-helper-4242.service" grep -q 'string "vhotplug-helper-4242.service"' <<<"$m"
        env_missing=
        for v in "ACTION=remove" "DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-6" "SUBSYSTEM=usb" \
                "DEVTYPE=usb_device" "SEQNUM=4242" "BUSNUM=001" "DEVNUM=007" "ID_VENDOR_ID=1050" \
                "ID_MODEL_ID=0407" 'ID_MODEL=Key "with" spaces' "ID_SERIAL_SHORT="; do
                grep -qxF "               string \"$v\"" <<<"$m" || env_missing="$env_missing [$v]"
        done
        check "the remove event's properties reach the unit's environment${env_missing:+ (missing:$env_missing)}" \
                test -z "$env_missing"
        # ExecStart=(path, argv=[path], ignore-failure): the helper gets no arguments.
        check "the unit runs the installed vhotplug-helper, with no arguments" \
                test "$(grep -A8 'string "ExecStart"' <<<"$m" | grep -c "string \"$SBIN/vhotplug-helper\"")" = 2
        check "unit is collected even when the helper fails (--collect)" \
                grep -q 'string "inactive-or-failed"' <<<"$m"
fi

# --- manual pages ----------------------------------------------------------------------------
for page in man/vhotplug.conf.5 man/vhotplug-helper.8 man/vhotplug-reconcile.8; do
        out=$(groff -man -Tutf8 -ww -z "$page" 2>&1)
        check "$page renders without groff warnings" test -z "$out"
        name=$(basename "$page"); name=${name%.*}
        check "$page has a NAME line man-db can index" \
                bash -c "lexgrog '$page' 2>/dev/null | grep -q '\"$name - '"
done
# The configuration reference covers every key the loader accepts.
missing=
conf_page=$(MANWIDTH=2000 man -l -P cat man/vhotplug.conf.5 2>/dev/null)
for key in usbPassthrough pciPassthrough evdevPassthrough vms usbAuthorization general \
        description targetVm allowedVms allow deny disable enable tag skipOnSuspend pciIommuAddAll \
        pciIommuSkipIfShared qemuUseRootBus vendorId productId vendorName productName serial bus port \
        portPath deviceClass deviceSubclass deviceProtocol interfaceClass interfaceSubclass \
        interfaceProtocol removable address deviceId deviceProgIf name pathTag property value type \
        socket database crosvm lockDir hostRequiredMounts qmpTimeoutMs attachRetries api modprobe \
        modinfo ovmfCode ovmfVars statePath persistency; do
        grep -qw -- "$key" <<<"$conf_page" || missing="$missing $key"
done
check "vhotplug.conf(5) documents every configuration key${missing:+ (missing:$missing)}" test -z "$missing"

# --- the programs' options are documented ---------------------------------------------------
if [ "$real_progs" = 1 ]; then
        for p in helper reconcile; do
                help=$("$PROG_DIR/vhotplug-$p" --help 2>&1); rc=$?
                if [ "$rc" -ne 0 ] || ! grep -q -- '--help' <<<"$help"; then
                        not_ok "vhotplug-$p --help lists its options (rc=$rc)"
                        continue
                fi
                page=$(MANWIDTH=200 man -l -P cat "man/vhotplug-$p.8" 2>/dev/null)
                undocumented=
                while read -r o; do
                        grep -q -- "$o" <<<"$page" || undocumented="$undocumented $o"
                done < <(grep -oE -- '--[a-z][a-z-]+' <<<"$help" | sort -u)
                check "vhotplug-$p(8) documents every option of --help${undocumented:+ (missing:$undocumented)}" \
                        test -z "$undocumented"
                # SYNOPSIS shows each option (its short or long form), --help and --version aside.
                synopsis=$(sed -n '/^SYNOPSIS/,/^DESCRIPTION/p' <<<"$page")
                unlisted=
                while IFS='|' read -r short long; do
                        case $long in --help | --version) continue ;; esac
                        alt=$long
                        [ -n "$short" ] && alt=-$short
                        grep -qE -- "(^|[[ ])($long|$alt)([] =]|\$)" <<<"$synopsis" ||
                                unlisted="$unlisted $long"
                done < <(sed -nE 's/^ +(-([a-z]), )? *(--[a-z][a-z-]+).*/\2|\3/p' <<<"$help")
                check "vhotplug-$p(8) SYNOPSIS shows every option of --help${unlisted:+ (missing:$unlisted)}" \
                        test -z "$unlisted"
                err=$("$PROG_DIR/vhotplug-$p" --no-such-option 2>&1 >/dev/null)
                check "vhotplug-$p exits 2 on a usage error" test $? -eq 2
                check "vhotplug-$p names --help after an unknown option" \
                        grep -qF "Try 'vhotplug-$p --help' for more information." <<<"$err"
        done
fi
