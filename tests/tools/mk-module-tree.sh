#!/usr/bin/env bash
# mk-module-tree.sh ROOT [SPEC]: builds a kernel module tree for driverPath tests and benchmarks and
# prints its directory, ROOT/lib/modules/6.1.0-vhp-test (what general.modulesDir names).
#
# Each line of SPEC ("-" for stdin) is "RELATIVE/PATH.ko ALIAS [ALIAS...]"; without SPEC the tree
# holds a few USB drivers with aliases as Debian 12's 6.1 kernel declares them (enough for the
# fixtures in tests/data/umockdev). Every .ko is an empty ELF object whose only content is a
# .modinfo section (name= and alias= strings: all depmod reads from it); `depmod -b` then writes the
# indexes libkmod reads (modules.alias.bin, modules.dep.bin). Needs cc, objcopy and depmod (kmod).
set -eu
root=${1:?usage: mk-module-tree.sh ROOT [SPEC]}
spec=${2:-}
version=6.1.0-vhp-test
dir=$root/lib/modules/$version
depmod=$(command -v depmod || echo /usr/sbin/depmod)
[ -x "$depmod" ] || { echo "mk-module-tree.sh: depmod not found (Debian package kmod)" >&2; exit 1; }
command -v objcopy >/dev/null || { echo "mk-module-tree.sh: objcopy not found (binutils)" >&2; exit 1; }

default_spec() {
        cat <<'EOS'
kernel/drivers/net/usb/r8152.ko usb:v0BDAp8050d*dc*dsc*dp*ic*isc*ip*in* usb:v0BDAp8053d*dc*dsc*dp*ic*isc*ip*in* usb:v0BDAp8152d*dc*dsc*dp*ic*isc*ip*in* usb:v0BDAp8153d*dc*dsc*dp*ic*isc*ip*in* usb:v0BDAp8155d*dc*dsc*dp*ic*isc*ip*in* usb:v0BDAp8156d*dc*dsc*dp*ic*isc*ip*in* usb:v17EFp7205d*dc*dsc*dp*ic*isc*ip*in* usb:v2357p0601d*dc*dsc*dp*ic*isc*ip*in*
kernel/drivers/net/usb/r8153_ecm.ko usb:v0BDAp8153d*dc*dsc*dp*ic02isc06ip00in* usb:v17EFp721Ed*dc*dsc*dp*ic02isc06ip00in*
kernel/drivers/net/usb/cdc_ether.ko usb:v*p*d*dc*dsc*dp*ic02isc06ip00in* usb:v*p*d*dc*dsc*dp*ic02isc0Aip00in* usb:v12D1p*d*dc*dsc*dp*ic02isc06ipFFin*
kernel/drivers/net/usb/cdc_ncm.ko usb:v*p*d*dc*dsc*dp*ic02isc0Dip00in*
kernel/drivers/net/usb/ax88179_178a.ko usb:v0B95p1790d*dc*dsc*dp*icFFiscFFip00in* usb:v0B95p178Ad*dc*dsc*dp*icFFiscFFip00in* usb:v0DF6p0072d*dc*dsc*dp*icFFiscFFip00in*
kernel/drivers/bluetooth/btusb.ko usb:v*p*d*dcE0dsc01dp01ic*isc*ip*in* usb:v*p*d*dc*dsc*dp*icE0isc01ip01in* usb:v0BDAp*d*dc*dsc*dp*icE0isc01ip01in* usb:v8087p0A5Ad*dc*dsc*dp*ic*isc*ip*in*
kernel/drivers/hid/usbhid/usbhid.ko usb:v*p*d*dc*dsc*dp*ic03isc*ip*in*
kernel/drivers/usb/serial/pl2303.ko usb:v067Bp2303d*dc*dsc*dp*ic*isc*ip*in* usb:v067Bp23A3d*dc*dsc*dp*ic*isc*ip*in* usb:v067Bp23B3d*dc*dsc*dp*ic*isc*ip*in*
kernel/drivers/media/usb/uvc/uvcvideo.ko usb:v*p*d*dc*dsc*dp*ic0Eisc01ip00in* usb:v*p*d*dc*dsc*dp*ic0Eisc01ip01in*
kernel/drivers/usb/storage/usb-storage.ko usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb:v*p*d*dc*dsc*dp*ic08isc06ip62in*
kernel/drivers/usb/storage/uas.ko usb:v*p*d*dc*dsc*dp*ic08isc06ip62in*
EOS
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mk-module-tree.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
rm -rf "$dir"
mkdir -p "$dir"
cc -c -x c /dev/null -o "$tmp/empty.o"
if [ -z "$spec" ]; then
        default_spec >"$tmp/spec"
elif [ "$spec" = - ]; then
        cat >"$tmp/spec"
else
        cp "$spec" "$tmp/spec"
fi
while read -r path aliases; do
        [ -n "$path" ] || continue
        name=$(basename "$path" .ko)
        {
                printf 'name=%s\0license=GPL\0vermagic=%s SMP mod_unload\0' "${name//-/_}" "$version"
                for a in $aliases; do printf 'alias=%s\0' "$a"; done
        } >"$tmp/modinfo"
        mkdir -p "$dir/$(dirname "$path")"
        objcopy --add-section .modinfo="$tmp/modinfo" "$tmp/empty.o" "$dir/$path"
done <"$tmp/spec"
# depmod warns about the files a real tree has and a test tree does not need (modules.order, ...).
"$depmod" -b "$root" "$version" 2>"$tmp/depmod.err" || { cat "$tmp/depmod.err" >&2; exit 1; }
[ -s "$dir/modules.alias.bin" ] || { echo "mk-module-tree.sh: depmod wrote no modules.alias.bin" >&2; exit 1; }
echo "$dir"
