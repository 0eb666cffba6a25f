#!/usr/bin/env bash
# bench/driverpath.sh: what a driverPath rule adds to an event — the interfaces' modaliases read
# from sysfs and looked up with libkmod, once per device — against a full-size module index.
#
# The index: $VHP_BENCH_MODULES (a module directory, e.g. an extracted Debian linux-image package
# after `depmod -b`), else the running kernel's /lib/modules/`uname -r` when it has one, else a
# synthetic tree of Debian 12's size and shape (4023 modules, 26 223 aliases: 8 967 pci, 8 567 usb of
# the same wildcard forms, of, i2c, hid, ...) built with tests/tools/mk-module-tree.sh. The device
# is the RTL8153 fixture (vendor class, driven by r8152) inside a umockdev testbed, as the helper
# sees it. Target (issue 14): at most 1 ms per device.
#
# Environment: BUILD (default build), BENCH_OUT (raw results; default a kept temp dir),
# BENCH_QUICK=1 (fewer lookups).
set -u
VHP_TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$VHP_TOP/$BUILD ;; esac
tool=$BUILD/tests/vhp-modlookup
[ -x "$tool" ] || { echo "driverpath: $tool missing; run make tests" >&2; exit 1; }
BENCH_OUT=${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/vhp-bench.XXXXXX")}
mkdir -p "$BENCH_OUT"
n=$([ "${BENCH_QUICK:-0}" = 1 ] && echo 300 || echo 3000)

# A synthetic spec: "path.ko alias..." lines in Debian 12's proportions (fixed seed).
synthetic_spec() {
        awk 'BEGIN {
                srand(14);
                dirs[0] = "net/usb"; dirs[1] = "usb/serial"; dirs[2] = "media/usb"; dirs[3] = "net/wireless";
                dirs[4] = "hid"; dirs[5] = "bluetooth"; dirs[6] = "usb/misc"; dirs[7] = "input";
                nmod = 4023;
                for (m = 0; m < nmod; m++) mods[m] = "";
                # usb: 8567 aliases in the forms and shares Debian 12 has
                for (i = 0; i < 8567; i++) {
                        v = sprintf("%04X", int(rand() * 65536)); p = sprintf("%04X", int(rand() * 65536));
                        c = sprintf("%02X", int(rand() * 256)); r = rand();
                        if (r < 0.668) a = "usb:v" v "p" p "d*dc*dsc*dp*ic*isc*ip*in*";
                        else if (r < 0.793) a = "usb:v" v "p" p "d*dc*dsc*dp*ic" c "isc" c "ip" c "in*";
                        else if (r < 0.850) a = "usb:v" v "p" p "d*dc*dsc*dp*ic*isc*ip*in" sprintf("%02X", int(rand() * 8)) "*";
                        else if (r < 0.906) a = "usb:v" v "p*d*dc*dsc*dp*ic" c "isc" c "ip" c "in*";
                        else if (r < 0.940) a = "usb:v" v "p" p "d*dc*dsc*dp*ic" c "isc*ip*in*";
                        else if (r < 0.973) a = "usb:v" v "p" p "d" sprintf("%04X", int(rand() * 65536)) "dc*dsc*dp*ic*isc*ip*in*";
                        else if (r < 0.980) a = "usb:v*p*d*dc*dsc*dp*ic" c "isc" c "ip" c "in*";
                        else a = "usb:v" v "p" p "d*dc*dsc*dp*ic" c "isc*ip" c "in*";
                        m = int(rand() * 700); mods[m] = mods[m] " " a;
                }
                for (i = 0; i < 8968; i++) {
                        m = 700 + int(rand() * 1500);
                        mods[m] = mods[m] sprintf(" pci:v0000%04Xd0000%04Xsv*sd*bc*sc*i*", int(rand() * 65536), int(rand() * 65536));
                }
                for (i = 0; i < 1756; i++) { m = 2200 + int(rand() * 800); mods[m] = mods[m] sprintf(" of:N*T*Cvendor%d,dev%d", int(rand() * 500), i); }
                for (i = 0; i < 1024; i++) { m = 3000 + int(rand() * 500); mods[m] = mods[m] sprintf(" i2c:dev%d", i); }
                for (i = 0; i < 868; i++) { m = 3500 + int(rand() * 300); mods[m] = mods[m] sprintf(" hid:b0003g*v0000%04Xp0000%04X", int(rand() * 65536), int(rand() * 65536)); }
                for (i = 0; i < 5040; i++) { m = 3800 + int(rand() * 223); mods[m] = mods[m] sprintf(" acpi*:ABCD%04X:*", i); }
                for (m = 0; m < nmod; m++)
                        printf "kernel/drivers/%s/mod%04d.ko%s\n", (m < 700 ? dirs[m % 8] : "misc/x" int(m / 100)), m, mods[m];
        }'
}

if [ -n "${VHP_BENCH_MODULES:-}" ]; then
        dir=$VHP_BENCH_MODULES
        what="given ($dir)"
elif [ -s "/lib/modules/$(uname -r)/modules.alias.bin" ]; then
        dir=/lib/modules/$(uname -r)
        what="this host's ($dir)"
else
        echo "driverpath: no /lib/modules/$(uname -r) here: building a synthetic tree of Debian 12's size" >&2
        synthetic_spec >"$BENCH_OUT/modules.spec"
        # the fixture's own driver, so that the lookup finds something
        echo "kernel/drivers/net/usb/r8152.ko usb:v0BDAp8153d*dc*dsc*dp*ic*isc*ip*in*" >>"$BENCH_OUT/modules.spec"
        dir=$("$VHP_TOP/tests/tools/mk-module-tree.sh" "$BENCH_OUT/modroot" "$BENCH_OUT/modules.spec") || exit 1
        what="synthetic"
fi
aliases=$(grep -c '^alias ' "$dir/modules.alias" 2>/dev/null || echo "?")
echo "driverpath: module index: $what, $aliases aliases" >&2

fx=$VHP_TOP/tests/data/umockdev/usb-ethernet-rtl8153-vendor.umockdev
dev=/devices/pci0000:00/0000:00:14.0/usb2/2-3
umockdev-run -d "$fx" -- "$tool" -d "$dir" --devpath $dev | tee "$BENCH_OUT/driverpath-resolve.txt"
grep -q '/kernel/drivers/net/usb/r8152\.ko' "$BENCH_OUT/driverpath-resolve.txt" ||
        { echo "driverpath: the fixture did not resolve to r8152.ko" >&2; exit 1; }
for round in 1 2 3; do
        umockdev-run -d "$fx" -- "$tool" -d "$dir" --devpath $dev --bench "$n"
done | tee "$BENCH_OUT/driverpath.txt"
median=$(sed -n 's/.*median \([0-9.]*\) us.*/\1/p' "$BENCH_OUT/driverpath.txt" | sort -n | sed -n 2p)
echo "driverpath: median of the three rounds' medians: $median us per device (bar: 1000 us): $(awk -v m="$median" 'BEGIN { print (m <= 1000 ? "met" : "NOT met") }')"
