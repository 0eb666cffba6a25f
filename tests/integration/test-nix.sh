#!/usr/bin/env bash
# The Nix files, as far as Debian's nix-bin (nix-instantiate, no nixpkgs, no NixOS) can take them:
# every .nix file parses; the module's configuration rendering (nix/render-config.nix, builtins
# only) turns nix/example.nix, with and without the API options, into JSON that
# `vhotplug-helper --check-config` accepts; the module evaluated against a stand-in of nixpkgs' lib
# (tests/data/nix/stub-lib.nix) writes that JSON to /etc/vhotplug.conf and installs the package's
# udev rule, units and tmpfiles; the package's version is VERSION. Building the package and a NixOS
# system need nixpkgs, which is not here.
. "$(dirname "$0")/../lib.sh"
cd "$VHP_TOP" || exit 1

helper=$VHP_BUILD/vhotplug-helper
if ! command -v nix-instantiate >/dev/null; then
        vhp_fail "nix-instantiate is installed (Debian's nix-bin: scripts/setup-deps.sh installs it)"
        vhp_done
fi
# No nix daemon or build users are needed to parse and evaluate; keep nix from looking for them.
export NIX_CONFIG="build-users-group =" NIX_STATE_DIR=$VHP_TMP/nix-state NIX_LOG_DIR=$VHP_TMP/nix-log
nixeval() { nix-instantiate --eval --strict --json -E "$1" 2>"$VHP_TMP/nix.err"; }

files=$(git ls-files -co --exclude-standard '*.nix' 2>/dev/null || find . -name '*.nix' -not -path './build*')
n=0
for f in $files; do
        n=$((n + 1))
        vhp_check "nix-instantiate --parse $f" nix-instantiate --parse "$f"
done
[ "$n" -ge 5 ] && vhp_ok "$n .nix files found" || vhp_fail "the .nix files are found (flake.nix, nix/*.nix)" "$files"

# 1. The example, rendered and checked.
if nixeval "import $VHP_TOP/nix/render-config.nix { settings = import $VHP_TOP/nix/example.nix; }" |
        jq -r . >"$VHP_TMP/example.json" && jq -e .vms "$VHP_TMP/example.json" >/dev/null; then
        vhp_ok "nix/example.nix renders to JSON"
else
        vhp_fail "nix/example.nix renders to JSON" "$(cat "$VHP_TMP/nix.err" "$VHP_TMP/example.json")"
fi
vhp_check_output "--check-config accepts the rendered example" 'configuration is valid' \
        "$helper" --no-strict-perms --check-config -c "$VHP_TMP/example.json"
vhp_check_lacks "the rendered example has no warning" 'warning|unknown key' \
        "$helper" --no-strict-perms --check-config -c "$VHP_TMP/example.json"
vhp_check "every entry of the rendered example is disabled" \
        jq -e '[.usbPassthrough[], .pciPassthrough[], .evdevPassthrough] | all(.disable == true)' "$VHP_TMP/example.json"

# 2. With the API options: merged into general.api, nulls left out, still valid.
api='{ enable = true; transports = [ "unix" "vsock" ]; unixSocket = null; unixSocketMode = "0660"; port = 2001; allowedCids = [ 3 4 ]; host = null; }'
nixeval "import $VHP_TOP/nix/render-config.nix { settings = import $VHP_TOP/nix/example.nix; api = $api; }" |
        jq -r . >"$VHP_TMP/api.json"
vhp_check "api options land in general.api, null ones left out" jq -e '.general.api == {"enable": true,
        "transports": ["unix", "vsock"], "unixSocketMode": "0660", "port": 2001, "allowedCids": [3, 4]}
        and .general.database == "/var/lib/vhotplug/state.db"' "$VHP_TMP/api.json"
vhp_check_output "--check-config accepts the example with the API" 'configuration is valid' \
        "$helper" --no-strict-perms --check-config -c "$VHP_TMP/api.json"
nixeval "import $VHP_TOP/nix/render-config.nix { settings = { vms = []; }; api = { enable = false; port = 9; }; }" |
        jq -r . >"$VHP_TMP/noapi.json"
vhp_check "api.enable = false adds nothing" jq -e '. == {"vms": []}' "$VHP_TMP/noapi.json"

# 3. The module, against the stand-in lib.
module_eval() { # debug attachConnected -> the module's resolved config as JSON
        nixeval "let lib = import $VHP_TOP/tests/data/nix/stub-lib.nix;
                m = import $VHP_TOP/nix/module.nix { inherit lib; pkgs = { callPackage = p: a: \"unused\"; };
                        config.services.vhotplug = { enable = true; package = \"/nix/store/vhotplug\"; debug = $1;
                                attachConnected = $2; config = import $VHP_TOP/nix/example.nix;
                                api = { enable = false; }; }; };
                in lib.resolve m.config"
}
module_eval false true >"$VHP_TMP/module.json" || vhp_fail "the module evaluates" "$(cat "$VHP_TMP/nix.err")"
jq -r '.environment.etc."vhotplug.conf".text' "$VHP_TMP/module.json" >"$VHP_TMP/module.conf"
vhp_check "the module writes the rendered configuration to /etc/vhotplug.conf" \
        jq -e --slurpfile want "$VHP_TMP/example.json" '. == $want[0]' "$VHP_TMP/module.conf"
vhp_check "the module installs the package's udev rule, units and tmpfiles" jq -e '
        .services.udev.packages == ["/nix/store/vhotplug"] and .systemd.packages == ["/nix/store/vhotplug"]
        and .systemd.tmpfiles.packages == ["/nix/store/vhotplug"]
        and .systemd.timers."vhotplug-reconcile".wantedBy == ["timers.target"]
        and .systemd.sockets."vhotplug-helper".wantedBy == ["sockets.target"]' "$VHP_TMP/module.json"
vhp_check "attachConnected: reconcile at boot" \
        jq -e '.systemd.services."vhotplug-reconcile".wantedBy == ["multi-user.target"]' "$VHP_TMP/module.json"
vhp_check "no debug: ExecStart left as shipped" \
        jq -e '.systemd.services."vhotplug-reconcile".serviceConfig.ExecStart == null' "$VHP_TMP/module.json"
module_eval true false >"$VHP_TMP/module-debug.json"
vhp_check "debug: reconcile runs with --debug; no attachConnected: not at boot" jq -e '
        (.systemd.services."vhotplug-reconcile".serviceConfig.ExecStart | last | endswith("vhotplug-reconcile --debug"))
        and (.systemd.services."vhotplug-helper".serviceConfig.ExecStart | last | endswith("vhotplug-helper --service --debug"))
        and .systemd.services."vhotplug-reconcile".wantedBy == []' "$VHP_TMP/module-debug.json"

# 4. The package: its version is VERSION; it installs with make install.
nixeval "let lib = import $VHP_TOP/tests/data/nix/stub-lib.nix; in (import $VHP_TOP/nix/package.nix {
        inherit lib; inherit (lib) stdenv; pkg-config = null; systemd = \"/nix/store/systemd\"; sqlite = null;
        cjson = null; libusb1 = null; pciutils = null; kmod = null; }).version" >"$VHP_TMP/version.json"
vhp_check_output "nix/package.nix version is VERSION ($(cat VERSION))" "^\"$(cat VERSION)\"$" cat "$VHP_TMP/version.json"

vhp_done
