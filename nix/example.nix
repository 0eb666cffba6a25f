# An example of services.vhotplug.config (the Nix form of vhotplug.conf(5)); the test renders it
# with render-config.nix and checks it with `vhotplug-helper --check-config`. As in the shipped
# example configuration, the entries are disabled until checked against the machine's devices.
{
  usbPassthrough = [
    {
      description = "Keyboards and mice for the desktop VM";
      disable = true;
      targetVm = "gui-vm";
      allow = [
        { interfaceClass = 3; interfaceProtocol = 1; description = "HID keyboards"; }
        { interfaceClass = 3; interfaceProtocol = 2; description = "HID mice"; }
      ];
      deny = [ { vendorId = "1050"; productId = "0407"; description = "the host's own security key"; } ];
    }
    {
      description = "USB serial adapters; the user may move them to the network VM";
      disable = true;
      targetVm = "gui-vm";
      allowedVms = [ "gui-vm" "net-vm" ];
      allow = [ { vendorId = "067b"; productId = "23a3"; description = "Prolific PL2303"; } ];
    }
  ];
  pciPassthrough = [
    {
      description = "Wi-Fi card for the network VM";
      disable = true;
      targetVm = "net-vm";
      allow = [ { deviceClass = 2; deviceSubclass = 128; description = "network controllers (other)"; } ];
    }
  ];
  evdevPassthrough = { disable = true; targetVm = "gui-vm"; };
  vms = [
    { name = "gui-vm"; type = "qemu"; socket = "/var/lib/microvms/gui-vm/gui-vm.sock"; }
    { name = "net-vm"; type = "crosvm"; socket = "/var/lib/microvms/net-vm/net-vm.sock"; }
  ];
  general = {
    database = "/var/lib/vhotplug/state.db";
    qmpTimeoutMs = 5000;
  };
}
