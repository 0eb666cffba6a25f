#!/usr/bin/env bash
# The Debian package, built, checked, installed, used and purged on this machine (root, Debian 12):
#   1. dpkg-buildpackage -us -uc -b in a copy of the tree (git archive of the work tree as
#      committed plus uncommitted changes to tracked files; the checkout's build/ stays untouched);
#   2. lintian: no error (warnings are printed; debian/README.source explains the ones left);
#   3. apt-get install ./vhotplug_*.deb; vhotplug-helper --version; --check-config of the installed
#      example; systemd-analyze verify of every installed unit (offline: it needs no systemd as
#      PID 1); the example is not /etc/vhotplug.conf;
#   4. apt-get purge: no file of the package left, nor /var/lib/vhotplug.
# Prints TAP lines ("ok - ...", "not ok - ...") and "N passed, N failed"; exits 1 when anything
# failed. KEEP=1 keeps the build directory.
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD
passed=0 failed=0
ok() { echo "ok - $1"; passed=$((passed + 1)); }
not_ok() { echo "not ok - $1"; [ $# -gt 1 ] && printf '%s\n' "$2" | sed 's/^/#   /'; failed=$((failed + 1)); }
check() { # desc cmd...
        local d=$1 out
        shift
        if out=$("$@" 2>&1); then ok "$d"; else not_ok "$d" "$out"; fi
}
finish() {
        echo "$passed passed, $failed failed"
        [ "$failed" = 0 ]
        exit
}

if [ "$(id -u)" != 0 ]; then
        not_ok "ci-package.sh runs as root (it installs and purges the package)"
        finish
fi
export DEBIAN_FRONTEND=noninteractive
need=()
for p in dpkg-dev debhelper lintian systemd; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
[ ${#need[@]} -eq 0 ] || apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null

if dpkg -s vhotplug >/dev/null 2>&1; then
        not_ok "vhotplug is not installed yet (this script installs and purges it: it leaves an existing one alone)"
        finish
fi
work=$(mktemp -d /tmp/vhotplug-package.XXXXXX)
# Whatever happens, the package does not stay installed (its udev rule would act on this host).
cleanup() {
        dpkg -s vhotplug >/dev/null 2>&1 && apt-get purge -y -q vhotplug >/dev/null 2>&1
        [ "${KEEP:-}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
version=$(cat VERSION)
# The checkout may belong to another user than the one CI runs as: safe.directory, in a throwaway
# global configuration.
printf '[safe]\n\tdirectory = *\n' >"$work/gitconfig"
export GIT_CONFIG_GLOBAL=$work/gitconfig
tree=$(git stash create 2>/dev/null)
git archive --prefix="vhotplug-$version/" "${tree:-HEAD}" | tar -x -C "$work"
src=$work/vhotplug-$version

# Build dependencies from debian/control (apt-get build-dep takes the source directory).
if ! out=$(apt-get build-dep -y -q "$src" 2>&1); then
        not_ok "apt-get build-dep installs the Build-Depends" "$(tail -n 20 <<<"$out")"
        finish
fi
echo "== dpkg-buildpackage -us -uc -b ($src)"
if (cd "$src" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
        ok "dpkg-buildpackage -us -uc -b"
else
        not_ok "dpkg-buildpackage -us -uc -b" "$(tail -n 40 "$work/build.log")"
        finish
fi
deb=$(ls "$work"/vhotplug_"$version"-*_*.deb 2>/dev/null | head -n 1)
changes=$(ls "$work"/vhotplug_"$version"-*.changes 2>/dev/null | head -n 1)
[ -n "$deb" ] && ok "built $(basename "$deb")" || { not_ok "a vhotplug_$version-*.deb was built"; finish; }
dpkg-deb -c "$deb" | awk '{print $1, $6, $7, $8}' | sed 's/^/#   /'

# lintian as root warns about itself; --allow-root keeps its output to the package.
lintian --allow-root --tag-display-limit 0 --info "$changes" >"$work/lintian.log" 2>&1
sed 's/^/#   /' "$work/lintian.log"
if grep -q '^E: ' "$work/lintian.log"; then
        not_ok "lintian: no error" "$(grep '^E: ' "$work/lintian.log")"
else
        ok "lintian: no error ($(grep -c '^W: ' "$work/lintian.log") warnings)"
fi

# Install, as a user would.
[ -e /etc/vhotplug.conf ] && had_conf=1 || had_conf=0
if out=$(apt-get install -y -q "$deb" 2>&1); then
        ok "apt-get install ./$(basename "$deb")"
else
        not_ok "apt-get install ./$(basename "$deb")" "$(tail -n 20 <<<"$out")"
        finish
fi
check "vhotplug-helper --version says $version" bash -c "vhotplug-helper --version | grep -qx 'vhotplug-helper $version'"
example=/usr/share/doc/vhotplug/examples/vhotplug.conf
check "--check-config accepts the installed example" vhotplug-helper --check-config -c "$example"
check "the example has every entry disabled (no enabled entry claims a device)" \
        bash -c "! grep -q '\"disable\": *false' '$example'"
[ "$had_conf" = 0 ] && check "no /etc/vhotplug.conf was written" test ! -e /etc/vhotplug.conf
check "the udev rule is installed" test -s /lib/udev/rules.d/90-vhotplug.rules
check "tmpfiles ran: /run/vhotplug exists, mode 0700" bash -c "[ \"\$(stat -c %a /run/vhotplug)\" = 700 ]"
check "the state directory is 0711 (others reach the API socket, cannot list)" bash -c "[ \"\$(stat -c %a /var/lib/vhotplug)\" = 711 ]"
check "the overview and file man pages are installed" bash -c "man -w 7 vhotplug && man -w 5 vhotplug.conf && man -w 5 vhotplug-db"
progs=$(dpkg -L vhotplug | grep -E '^/usr/s?bin/[^/]+$')
[ -n "$progs" ] || not_ok "the package installs programs in /usr/sbin or /usr/bin"
for p in $progs; do
        check "$(basename "$p"): a man page and a bash completion" bash -c \
                "man -w '$(basename "$p")' && test -s '/usr/share/bash-completion/completions/$(basename "$p")'"
done
check "the reconcile timer is enabled" bash -c "systemctl is-enabled vhotplug-reconcile.timer | grep -qx enabled"
units=$(dpkg -L vhotplug | grep -E '^/(usr/)?lib/systemd/system/[^/]+\.(service|socket|timer)$' | grep -v '@\.service$')
tmpl=$(dpkg -L vhotplug | grep -E '^/(usr/)?lib/systemd/system/[^/]+@\.service$')
for t in $tmpl; do units+=" ${t%@.service}@ci.service"; done
# Offline verification: no systemd as PID 1 is needed; template instances by name.
for u in $units; do
        out=$(cd /lib/systemd/system && systemd-analyze verify --man=no "$u" 2>&1)
        rc=$?
        [ $rc = 0 ] && [ -z "$out" ] && ok "systemd-analyze verify $(basename "$u"): clean" ||
                not_ok "systemd-analyze verify $(basename "$u"): clean (rc=$rc)" "$out"
done

# Purge: nothing of the package left.
files=$(dpkg -L vhotplug | grep -v '^/\.$')
if out=$(apt-get purge -y -q vhotplug 2>&1); then ok "apt-get purge vhotplug"; else not_ok "apt-get purge vhotplug" "$out"; fi
check "dpkg no longer knows vhotplug" bash -c "! dpkg -s vhotplug >/dev/null 2>&1"
left=$(for f in $files; do [ -e "$f" ] && [ ! -d "$f" ] && echo "$f"; done; [ -e /var/lib/vhotplug ] && echo /var/lib/vhotplug)
[ -z "$left" ] && ok "purge leaves no file of the package, no /var/lib/vhotplug" || not_ok "purge leaves nothing" "$left"
check "purge leaves no enablement link" bash -c "! ls /etc/systemd/system/*/vhotplug* 2>/dev/null | grep -q ."
[ "$had_conf" = 0 ] && check "no /etc/vhotplug.conf after purge" test ! -e /etc/vhotplug.conf
finish
