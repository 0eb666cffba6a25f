# vhotplug built with its own Makefile: `make install` puts the programs, the udev rule, the
# systemd units (and generators), the tmpfiles snippet, the man pages and the bash completion into
# $out, so a program or unit added upstream needs no change here. The version comes from VERSION.
{ lib, stdenv, pkg-config, systemd, sqlite, cjson, libusb1, pciutils, kmod }:

stdenv.mkDerivation {
  pname = "vhotplug";
  version = lib.fileContents ../VERSION;

  src = lib.cleanSourceWith {
    src = ../.;
    filter = path: type: !(builtins.elem (baseNameOf path) [ "build" "build-san" ".git" "result" ]);
  };

  nativeBuildInputs = [ pkg-config ];
  # systemd: libudev and libsystemd (journal logging).
  buildInputs = [ systemd sqlite cjson libusb1 pciutils kmod ];

  makeFlags = [
    "PREFIX=${placeholder "out"}"
    "SYSCONFDIR=/etc"
    "UDEVDIR=${placeholder "out"}/lib/udev"
    "SYSTEMDUNITDIR=${placeholder "out"}/lib/systemd/system"
    "GENERATORDIR=${placeholder "out"}/lib/systemd/system-generators"
    "TMPFILESDIR=${placeholder "out"}/lib/tmpfiles.d"
    # Opened at first use (lib/dl.h): by store path, as the runtime linker would not find them.
    "LIBKMOD_SONAME=${lib.getLib kmod}/lib/libkmod.so.2"
    "LIBSYSTEMD_SONAME=${lib.getLib systemd}/lib/libsystemd.so.0"
    "LIBUSB_SONAME=${lib.getLib libusb1}/lib/libusb-1.0.so.0"
    "LIBPCI_SONAME=${lib.getLib pciutils}/lib/libpci.so.3"
  ];
  # The state directory is created at run time (tmpfiles, StateDirectory=), not in the store.
  installFlags = [ "LOCALSTATEDIR=$(TMPDIR)/var" ];

  enableParallelBuilding = true;
  # make check needs root, umockdev testbeds, QEMU and mount namespaces: not in the build sandbox.
  doCheck = false;

  meta = {
    description = "Give host USB, PCI and input devices to virtual machines by rules, without a daemon";
    license = lib.licenses.asl20;
    platforms = lib.platforms.linux;
    mainProgram = "vhotplug-helper";
  };
}
