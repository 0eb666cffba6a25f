# The text of /etc/vhotplug.conf from the module's options, with builtins only (no nixpkgs), so it
# can be evaluated and checked anywhere: tests/integration/test-nix.sh renders the example below
# and hands the JSON to `vhotplug-helper --check-config`.
#
#   settings: services.vhotplug.config, an attribute set in the layout of vhotplug.conf(5)
#             (usbPassthrough, pciPassthrough, evdevPassthrough, vms, general, ...);
#   api:      services.vhotplug.api, merged into general.api when api.enable is true (its keys win
#             over general.api of settings); attributes set to null are left out.
{ settings, api ? { enable = false; } }:
let
  dropNulls = a: builtins.removeAttrs a (builtins.filter (n: a.${n} == null) (builtins.attrNames a));
  general = settings.general or { };
  apiKeys = dropNulls (builtins.removeAttrs api [ "enable" ]);
  withApi =
    if api.enable or false then
      settings // { general = general // { api = (general.api or { }) // apiKeys // { enable = true; }; }; }
    else
      settings;
in
builtins.toJSON withApi
