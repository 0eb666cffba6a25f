#!/usr/bin/env bash
# Installs the Debian 12 packages vhotplug needs to build, test and run its demo.
#   --install           install what is missing (needs root)
#   --check-or-install  install when root, else list what is missing and fail
# Near-instant when everything is present: it asks dpkg, not the network. make check, make demo and
# .ci/run call it before compiling anything.
set -eu
PKGS="build-essential pkg-config libudev-dev libsqlite3-dev libcjson-dev libusb-1.0-0-dev libpci-dev libkmod-dev libsystemd-dev kmod
      libcmocka-dev umockdev libumockdev-dev qemu-system-x86 sqlite3 udev systemd pci.ids usb.ids
      iproute2 procps jq socat valgrind dbus-daemon dbus-bin man-db groff-base nix-bin clang clang-format"
mode=${1:---install}
missing=()
for p in $PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
        echo "vhotplug needs these Debian 12 packages, not installed: ${missing[*]}" >&2
        echo "Install them as root, then run the command again:" >&2
        echo "  sudo apt-get install --no-install-recommends ${missing[*]}" >&2
        echo "(or: sudo make setup)" >&2
        exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}"; }
