#!/usr/bin/env bash
# The version lives in VERSION alone: the Makefile, the programs' --version, the installed man
# pages, debian/changelog and make dist agree with it (nix/package.nix: test-nix.sh).
. "$(dirname "$0")/../lib.sh"
cd "$VHP_TOP" || exit 1

v=$(cat VERSION)
vhp_check "VERSION is one line, MAJOR.MINOR.PATCH" bash -c "[ \"\$(wc -l <VERSION)\" = 1 ] && grep -qxE '[0-9]+\.[0-9]+\.[0-9]+' VERSION"
vhp_check_output "make print-version: $v" "^$v\$" make -s --no-print-directory print-version
for p in "$VHP_BUILD"/vhotplug-helper "$VHP_BUILD"/vhotplug-reconcile; do
        vhp_check_output "$(basename "$p") --version: $v" "^$(basename "$p") $v\$" "$p" --version
done
deb=$(sed -n '1s/^vhotplug (\([^)]*\)).*/\1/p' debian/changelog)
vhp_check_output "debian/changelog's newest entry is $v-N" "^$v-[0-9]+\$" echo "$deb"
if command -v dpkg-parsechangelog >/dev/null; then
        vhp_check_output "dpkg-parsechangelog agrees" "^$v-[0-9]+\$" dpkg-parsechangelog -S Version
fi

# Installed man pages carry the version, whatever their source says.
make -s --no-print-directory BUILD="$BUILD" -o "$VHP_BUILD/vhotplug-helper" -o "$VHP_BUILD/vhotplug-reconcile" \
        install PREFIX=/usr DESTDIR="$VHP_TMP/root" >"$VHP_TMP/install.log" 2>&1 ||
        vhp_fail "make install DESTDIR=..." "$(tail "$VHP_TMP/install.log")"
bad=""
n=0
for m in "$VHP_TMP"/root/usr/share/man/man*/*; do
        n=$((n + 1))
        head -n 1 "$m" | grep -q "\"vhotplug $v\"" || bad+="$(basename "$m"): $(head -n 1 "$m")"$'\n'
done
[ "$n" -ge 5 ] && [ -z "$bad" ] && vhp_ok "the $n installed man pages say vhotplug $v" || vhp_fail "installed man pages say vhotplug $v" "$bad"
bad=$(grep -L '^\.TH [^ ]* [1-8] [0-9]\{4\}-[0-9]\{2\}-[0-9]\{2\} ' man/*.[1-8])
[ -z "$bad" ] && vhp_ok "every man page's .TH date is ISO (YYYY-MM-DD)" || vhp_fail "ISO dates in .TH" "$bad"

# make dist: the committed tree as vhotplug-VERSION/, with this VERSION in it. The checkout may
# belong to another user than the one running the tests (CI): safe.directory, in a throwaway
# global configuration.
printf '[safe]\n\tdirectory = *\n' >"$VHP_TMP/gitconfig"
export GIT_CONFIG_GLOBAL=$VHP_TMP/gitconfig
if git rev-parse HEAD >/dev/null 2>&1; then
        if make -s --no-print-directory dist DISTDIR="$VHP_TMP" >"$VHP_TMP/dist.log" 2>&1 &&
                [ -s "$VHP_TMP/vhotplug-$v.tar.gz" ]; then
                vhp_ok "make dist: vhotplug-$v.tar.gz"
                vhp_check_output "the tarball holds vhotplug-$v/ with VERSION $v, debian/ and the Makefile" "^$v\$" bash -c "
                        tar -tzf '$VHP_TMP/vhotplug-$v.tar.gz' | grep -qx 'vhotplug-$v/debian/changelog' &&
                        tar -tzf '$VHP_TMP/vhotplug-$v.tar.gz' | grep -qx 'vhotplug-$v/Makefile' &&
                        ! tar -tzf '$VHP_TMP/vhotplug-$v.tar.gz' | grep -qv '^vhotplug-$v/' &&
                        tar -xzOf '$VHP_TMP/vhotplug-$v.tar.gz' vhotplug-$v/VERSION"
        else
                vhp_fail "make dist" "$(cat "$VHP_TMP/dist.log")"
        fi
else
        vhp_fail "make dist needs a git checkout" "not a git work tree: $VHP_TOP"
fi

vhp_done
