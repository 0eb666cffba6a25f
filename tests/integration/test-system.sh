#!/usr/bin/env bash
# System integration: make install/uninstall, the systemd units (systemd-analyze verify), the udev
# rule (udevadm test on a real PCI device and on umockdev USB/input fixtures), the hand-off it
# produces (the installed RUN program run as udevd runs it, against the helper's service on a
# socket of its own), and the manual pages.
# Needs no running systemd or udevd (make check-system boots one: tests/system/). Optional: the
# udevadm checks need root (they mount in a private namespace); run as another user they are
# skipped ("ok - ... # SKIP needs root"). Everything else they need (udevadm, umockdev,
# systemd-analyze, man-db, groff: installed by scripts/setup-deps.sh) fails when missing.
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
PROGS="vhotplug-helper vhotplug-reconcile vhotplug-event"
built() { local p; for p in $PROGS; do [ -x "$PROG_DIR/$p" ] || return 1; done; }
built || make -s BUILD="$BUILD" all >/dev/null 2>&1 || :
if ! built; then
        real_progs=0
        PROG_DIR=$T/stub-build
        mkdir -p "$PROG_DIR"
        for p in $PROGS; do
                printf '#!/bin/sh\nexit 0\n' >"$PROG_DIR/$p"
                chmod 0755 "$PROG_DIR/$p"
        done
        echo "# programs not built: installing stand-ins"
fi
# -o: never rebuild the programs from here; install copies what exists.
mk() { make -s --no-print-directory BUILD="$PROG_DIR" -o "$PROG_DIR/vhotplug-helper" \
        -o "$PROG_DIR/vhotplug-reconcile" -o "$PROG_DIR/vhotplug-event" "$@"; }

pc_var() { pkg-config --variable="$1" "$2" 2>/dev/null; }
UDEVDIR=$(pc_var udevdir udev); UDEVDIR=${UDEVDIR:-/usr/lib/udev}
UNITDIR=$(pc_var systemdsystemunitdir systemd); UNITDIR=${UNITDIR:-/usr/lib/systemd/system}
TMPFDIR=$(pc_var tmpfilesdir systemd); TMPFDIR=${TMPFDIR:-/usr/lib/tmpfiles.d}
GENDIR=$(pc_var systemdsystemgeneratordir systemd); GENDIR=${GENDIR:-/usr/lib/systemd/system-generators}

# --- make install / uninstall --------------------------------------------------------------
D=$T/root
if mk install PREFIX=/usr/local DESTDIR="$D" >"$T/install.log" 2>&1; then
        ok "make install DESTDIR=... succeeds"
else
        not_ok "make install DESTDIR=... succeeds"; sed 's/^/# /' "$T/install.log"
fi

expected_tree() {
        {
                echo "-rwxr-xr-x /usr/local/sbin/vhotplug-event"
                echo "-rwxr-xr-x /usr/local/sbin/vhotplug-helper"
                echo "-rwxr-xr-x /usr/local/sbin/vhotplug-reconcile"
                echo "-rwxr-xr-x /usr/local/sbin/vhotplug-api"
                echo "-rwxr-xr-x /usr/local/bin/vhotplugctl"
                echo "-rwxr-xr-x $GENDIR/vhotplug-generator"
                echo "-rw-r--r-- $UNITDIR/vhotplug-api.service"
                echo "-rw-r--r-- $UDEVDIR/rules.d/90-vhotplug.rules"
                echo "-rw-r--r-- $UNITDIR/vhotplug-helper.service"
                echo "-rw-r--r-- $UNITDIR/vhotplug-helper.socket"
                echo "lrwxrwxrwx $UNITDIR/sockets.target.wants/vhotplug-helper.socket"
                echo "-rw-r--r-- $UNITDIR/vhotplug-reconcile.service"
                echo "-rw-r--r-- $UNITDIR/vhotplug-reconcile.timer"
                echo "-rw-r--r-- $UNITDIR/vhotplug-reconcile@.service"
                echo "-rw-r--r-- $TMPFDIR/vhotplug.conf"
                for m in man/*.[1-8]; do echo "-rw-r--r-- /usr/local/share/man/man${m##*.}/${m#man/}"; done
                for c in completion/*; do echo "-rw-r--r-- /usr/local/share/bash-completion/completions/${c#completion/}"; done
                [ -e README.md ] && echo "-rw-r--r-- /usr/local/share/doc/vhotplug/README.md"
                [ -e examples/vhotplug.conf ] &&
                        echo "-rw-r--r-- /usr/local/share/doc/vhotplug/examples/vhotplug.conf"
                echo "drwx--x--x /var/lib/vhotplug"
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
check "installed rule and units have every @placeholder@ substituted" \
        bash -c "! grep -rn '@[a-z_]*@' '$D$UDEVDIR' '$D$UNITDIR'"
joined() { sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$1"; } # udev's line continuation
check "installed rule runs /usr/local/sbin/vhotplug-event, one RUN, no systemd-run" \
        test "$(joined "$D$UDEVDIR/rules.d/90-vhotplug.rules" | grep -v '^#' | grep -c RUN)" = 1 -a \
        "$(joined "$D$UDEVDIR/rules.d/90-vhotplug.rules" | grep -v '^#' | grep -c 'systemd-run')" = 0 -a \
        "$(grep -c '^RUN+="/usr/local/sbin/vhotplug-event"$' "$D$UDEVDIR/rules.d/90-vhotplug.rules")" = 1
check "the socket is enabled statically (sockets.target.wants)" \
        test "$(readlink "$D$UNITDIR/sockets.target.wants/vhotplug-helper.socket")" = ../vhotplug-helper.socket
check "the event service runs /usr/local/sbin/vhotplug-helper --service" \
        grep -qx 'ExecStart=/usr/local/sbin/vhotplug-helper --service' "$D$UNITDIR/vhotplug-helper.service"
check "installed units run /usr/local/sbin/vhotplug-reconcile" \
        grep -qx 'ExecStart=/usr/local/sbin/vhotplug-reconcile --vm %i' "$D$UNITDIR/vhotplug-reconcile@.service"
if [ "$real_progs" = 1 ]; then
        check "installed programs are the built ones" \
                cmp -s "$PROG_DIR/vhotplug-helper" "$D/usr/local/sbin/vhotplug-helper"
fi

D2=$T/root-usr
mk install PREFIX=/usr DESTDIR="$D2" >/dev/null 2>&1
check "PREFIX=/usr installs into /usr/sbin and the rule and service follow" \
        test "$(grep -c '^RUN+="/usr/sbin/vhotplug-event"$' "$D2$UDEVDIR/rules.d/90-vhotplug.rules")" = 1 -a \
        "$(grep -c '^ExecStart=/usr/sbin/vhotplug-helper --service$' "$D2$UNITDIR/vhotplug-helper.service")" = 1

check "the reconcile units skip when there is no /etc/vhotplug.conf (2 ConditionPathExists=)" \
        test "$(cat "$D$UNITDIR"/*.service | grep -cx 'ConditionPathExists=/etc/vhotplug.conf')" = 2

# SYSCONFDIR moves the configuration: the units look for it there, the programs read it from there
# by default. CPPFLAGS reach the compiler (Debian's dpkg-buildflags put -D_FORTIFY_SOURCE=2 there).
D3=$T/root-sysconf
mk install PREFIX=/usr DESTDIR="$D3" SYSCONFDIR=/opt/vhp/etc >/dev/null 2>&1
check "SYSCONFDIR=/opt/vhp/etc: the units check for /opt/vhp/etc/vhotplug.conf" \
        test "$(cat "$D3$UNITDIR"/*.service | grep '^ConditionPathExists=' | sort | uniq -c | xargs)" \
        = "2 ConditionPathExists=/opt/vhp/etc/vhotplug.conf"
make -s --no-print-directory BUILD="$T/sysconf" SYSCONFDIR=/opt/vhp/etc "$T/sysconf/obj/helper/main.o" \
        "$T/sysconf/obj/reconcile/main.o" >"$T/sysconf.log" 2>&1
check "SYSCONFDIR=/opt/vhp/etc: the programs' default configuration is /opt/vhp/etc/vhotplug.conf" \
        test "$(cat "$T/sysconf/obj/helper/main.o" "$T/sysconf/obj/reconcile/main.o" 2>/dev/null |
                grep -ac '(default /opt/vhp/etc/vhotplug.conf)')" = 2
check "CPPFLAGS reach the compiler" grep -q -- ' -D_FORTIFY_SOURCE=2 .* -c -o ' \
        <(make -n -B BUILD="$T/cppflags" CPPFLAGS=-D_FORTIFY_SOURCE=2 "$T/cppflags/obj/lib/log.o" 2>&1)

mk uninstall PREFIX=/usr DESTDIR="$D2" >/dev/null 2>&1
check "make uninstall leaves no file behind" test -z "$(find "$D2" ! -type d)"
# An installation of the per-event-unit days: its drop-in goes away on install.
mkdir -p "$D2$UNITDIR/vhotplug-helper-.service.d" && echo '[Service]' >"$D2$UNITDIR/vhotplug-helper-.service.d/10-vhotplug.conf"
mk install PREFIX=/usr DESTDIR="$D2" >/dev/null 2>&1
check "make install removes the old per-event drop-in" test ! -e "$D2$UNITDIR/vhotplug-helper-.service.d"
mkdir -p "$T/keep" && cp -a "$D/." "$T/keep/"
echo data >"$T/keep/var/lib/vhotplug/state.db"
mk uninstall PREFIX=/usr/local DESTDIR="$T/keep" >/dev/null 2>&1
check "make uninstall keeps a state directory that holds a database" \
        test "$(cd "$T/keep" && find . ! -type d)" = "./var/lib/vhotplug/state.db"

# --- systemd units ---------------------------------------------------------------------------
# Units as installed, with ExecStart= pointing at the installed (existing) programs: verify checks
# that the binaries exist. (make check-system loads them into a running systemd.)
U=$T/units
mkdir -p "$U" && cp -r "$D$UNITDIR/." "$U/"
sed -i "s|/usr/local/sbin/|$D/usr/local/sbin/|" "$U"/*.service
verify() { (cd "$U" && systemd-analyze verify --man=no "$@" 2>&1); }
if command -v systemd-analyze >/dev/null; then
        for unit in vhotplug-helper.socket vhotplug-helper.service vhotplug-reconcile.service \
                vhotplug-reconcile.timer vhotplug-reconcile@vm1.service; do
                out=$(verify "$U/$unit"); rc=$?
                if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
                        ok "systemd-analyze verify $unit: clean"
                else
                        not_ok "systemd-analyze verify $unit: clean (rc=$rc)"; printf '# %s\n' "$out"
                fi
        done
        mkdir -p "$T/units-bad" && cp -r "$U/." "$T/units-bad/"
        sed "s|^ExecStart=.*|ExecStart=$T/nonexistent|" "$U/vhotplug-reconcile.service" \
                >"$T/units-bad/vhotplug-reconcile.service"
        check "systemd-analyze verify fails for a unit whose program is missing" \
                bash -c "! (cd '$T/units-bad' && systemd-analyze verify --man=no '$T/units-bad/vhotplug-reconcile.service') >/dev/null 2>&1"
else
        not_ok "systemd-analyze verify (systemd-analyze not installed: scripts/setup-deps.sh installs systemd)"
fi
check "the socket: ListenSequentialPacket=/run/vhotplug/helper.sock, Accept=no, SocketMode=0600" \
        bash -c "grep -qx 'ListenSequentialPacket=/run/vhotplug/helper.sock' '$U/vhotplug-helper.socket' &&
                grep -qx 'Accept=no' '$U/vhotplug-helper.socket' && grep -qx 'SocketMode=0600' '$U/vhotplug-helper.socket'"
check "the event service: StartLimitIntervalSec=0, no Condition...= (either would fail the socket)" \
        bash -c "grep -qx 'StartLimitIntervalSec=0' '$U/vhotplug-helper.service' && ! grep -q '^Condition' '$U/vhotplug-helper.service'"
check "the event service: KillMode=mixed (a stop lets started events finish)" \
        grep -qx 'KillMode=mixed' "$U/vhotplug-helper.service"
check "reconcile units use the same sandbox as the event service" bash -c "
        diff <(sed -n '/^UMask=/,\$p' '$U/vhotplug-helper.service') \
             <(sed -n '/^UMask=/,/^\$/p' '$U/vhotplug-reconcile.service' | sed '/^\$/d') &&
        diff <(sed -n '/^UMask=/,\$p' '$U/vhotplug-helper.service') \
             <(sed -n '/^UMask=/,\$p' '$U/vhotplug-reconcile@.service')"
check "no ProtectClock=/PrivateDevices=/DeviceAllow= (they would close /dev/bus/usb to crosvm)" \
        lacks '^(ProtectClock|PrivateDevices|DeviceAllow|DevicePolicy|PrivateTmp|ProtectKernelTunables)=' "$U"/*.service

# --- udev rule: udevadm test -----------------------------------------------------------------
# udevadm test writes the udev database entry of the device it tests (/run/udev/data): written
# into the machine's /run/udev, that of a umockdev device would be read by any other test on this
# machine that replays the same device, and a rule put there would act on the machine's events.
# So each udevadm test runs in a private mount namespace whose /run/udev is an empty tmpfs holding
# only the rule under test, with the program path pointing at the installed one.
udev_private() { # command...
        unshare -m --propagation private sh -c 'mount -t tmpfs -o mode=0755 none /run/udev &&
                mkdir /run/udev/rules.d && cp "$0" /run/udev/rules.d/ && exec "$@"' "$RULE" "$@"
}
SBIN=$D/usr/local/sbin
run_lines() { grep -E "^run: '.*vhotplug-event.*'\$"; }
client_line="run: '$SBIN/vhotplug-event'"
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
# runs_client DESCRIPTION OUTPUT: ok when udevadm test's output runs exactly the RUN client.
runs_client() {
        local line
        line=$(run_lines <<<"$2")
        if [ "$line" = "$client_line" ]; then
                ok "$1"
        else
                not_ok "$1"
                printf '# %s\n' "run lines: [$line]" "$(grep -iE 'vhotplug|run:|error|fail' <<<"$2" | head -5)"
        fi
}
if [ "$have_udev_test" = 1 ]; then
        for action in add remove change; do
                runs_client "udevadm test --action=$action on PCI $pci runs the RUN client, nothing else" \
                        "$(pci_test $action)"
        done
        out=$(pci_test bind)
        check "udevadm test --action=bind on PCI $pci starts nothing" test -z "$(run_lines <<<"$out")"
        runs_client "USB device remove: runs the RUN client" "$(umock_test usb-yubikey remove /sys/bus/usb/devices/1-6)"
        runs_client "USB device add: runs the RUN client" "$(umock_test usb-yubikey add /sys/bus/usb/devices/1-6)"
        out=$(umock_test usb-yubikey add /sys/bus/usb/devices/1-6:1.0)
        check "USB interface (DEVTYPE=usb_interface) starts nothing" test -z "$(run_lines <<<"$out")"
        ev=/sys/devices/platform/i8042/serio0/input/input3/event3
        runs_client "input event node add: runs the RUN client" "$(umock_test input-keyboard-i8042 add $ev)"
        out=$(umock_test input-keyboard-i8042 add /sys/devices/platform/i8042/serio0/input/input3)
        check "input device inputN (not an event node) starts nothing" test -z "$(run_lines <<<"$out")"
fi

# --- the hand-off: the installed RUN program, run as udevd runs it ------------------------------
# udevd forks and execs the RUN program with the event's properties as its whole environment
# (tests/tools/vhp-udev-run does the same). Here it talks to the helper's service on a socket of
# its own (vhotplug-helper --service --socket, dry run, JSON per event); make check-system does
# the same through systemd's socket activation.
if [ "$real_progs" = 1 ] && [ -x "$PROG_DIR/tests/vhp-udev-run" ]; then
        sock=$T/helper.sock
        printf '%s\n' '{ "usbPassthrough": [ { "targetVm": "vm1", "allow": [ { "vendorId": "1050", "productId": "0407" } ] } ],' \
                "  \"vms\": [ { \"name\": \"vm1\", \"type\": \"qemu\", \"socket\": \"$T/vm1.sock\" } ] }" >"$T/conf.json"
        svc_start() { # log file
                "$SBIN/vhotplug-helper" --service --socket "$sock" -c "$T/conf.json" --no-strict-perms --dry-run \
                        --json --idle-exit 0.5 >"$1" 2>&1 &
                svc=$!
                pids+=("$svc")
                for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
        }
        svc_start "$T/svc.out"
        run_cmd=$(sed -n 's/^RUN+="\(.*\)"$/\1/p' "$D$UDEVDIR/rules.d/90-vhotplug.rules")
        run_cmd="${run_cmd/\/usr\/local\/sbin\//$SBIN/} --socket $sock"
        # Two events of one device; a value with quotes, spaces and a backslash; NAME with bytes
        # that are not UTF-8.
        {
                printf '%s\n' ACTION=add DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-6 SUBSYSTEM=usb \
                        DEVTYPE=usb_device SEQNUM=4242 BUSNUM=001 DEVNUM=007 ID_VENDOR_ID=1050 ID_MODEL_ID=0407 \
                        'ID_MODEL=Key "with" spaces\' $'NAME=\xff\xfe raw'
                echo
                printf '%s\n' ACTION=remove DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-6 SUBSYSTEM=usb \
                        DEVTYPE=usb_device SEQNUM=4243 BUSNUM=001 DEVNUM=007 ID_VENDOR_ID=1050 ID_MODEL_ID=0407
        } >"$T/events"
        "$PROG_DIR/tests/vhp-udev-run" "$run_cmd" "$T/events" 2>"$T/run.err"
        check "the RUN program exits 0 for each event" test $? = 0
        wait "$svc"
        check "the service exits 0 once idle" test $? = 0
        check "both events handled, in order (attach, then detach)" \
                test "$(grep -a '^{' "$T/svc.out" | jq -r '.action + " " + .device.properties.SEQNUM' 2>/dev/null | tr '\n' ' ')" = "attach 4242 detach 4243 "
        check 'properties arrive verbatim (quotes, spaces, backslash)' \
                test "$(grep -a '^{' "$T/svc.out" | jq -r 'select(.action=="attach") | .device.properties.ID_MODEL' 2>/dev/null)" = 'Key "with" spaces\'
        check "the service decided from the properties (vm1 by vendor/product)" \
                test "$(grep -a '^{' "$T/svc.out" | jq -r 'select(.action=="attach") | .vm' 2>/dev/null)" = vm1
        # Socket absent: one line on stderr, exit 0 (no retry loop).
        out=$(env -i ACTION=add DEVPATH=/devices/x "$SBIN/vhotplug-event" --socket "$T/absent.sock" 2>&1); rc=$?
        check "socket absent: exit 0 and one line on stderr" test "$rc" = 0 -a "$(wc -l <<<"$out")" = 1
        rm -f "$sock"
        python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.bind(sys.argv[1])' "$sock"
        out=$(env -i DEVPATH=/devices/x "$SBIN/vhotplug-event" --socket "$sock" 2>&1); rc=$?
        check "nobody listening on the socket: exit 0 and one line on stderr" test "$rc" = 0 -a "$(wc -l <<<"$out")" = 1
        # An event larger than the message limit: properties dropped with a note, the rest sent.
        svc_start "$T/svc2.out"
        big=$(head -c 70000 /dev/zero | tr '\0' x)
        out=$(env -i ACTION=add DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-6 SUBSYSTEM=usb SEQNUM=1 ID_BIG="$big" \
                "$SBIN/vhotplug-event" --socket "$sock" 2>&1); rc=$?
        wait "$svc"
        check "an oversized property is dropped with a note, the event still sent" \
                test "$rc" = 0 -a -n "$out" -a "$(grep -a '^{' "$T/svc2.out" | jq -r .device.devpath 2>/dev/null)" = /devices/pci0000:00/0000:00:14.0/usb1/1-6
        # Static (the default) or, in a sanitizer build, dynamic with libc only.
        check "vhotplug-event needs no library but libc" \
                bash -c "out=\$(ldd '$SBIN/vhotplug-event' 2>&1); grep -q 'not a dynamic executable' <<<\"\$out\" ||
                        ! grep -v -e linux-vdso -e 'libc.so' -e ld-linux -e libasan -e libubsan -e libstdc -e libm.so -e libgcc <<<\"\$out\" | grep -q ."
else
        not_ok "hand-off through the RUN program (programs or tests/vhp-udev-run not built)"
fi

# --- manual pages ----------------------------------------------------------------------------
for page in man/vhotplug.conf.5 man/vhotplug-helper.8 man/vhotplug-reconcile.8 man/vhotplug-api.8 man/vhotplugctl.1; do
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
        socket database crosvm lockDir hostRequiredMounts qmpTimeoutMs attachRetries eventTimeoutMs api modprobe \
        modinfo ovmfCode ovmfVars statePath persistency modulesDir driverPath hostAllow deauthorizeUnmatched \
        acpiPassthrough acpiTable setUser setGroup autoOvmf crosvmUseRootBus; do
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
