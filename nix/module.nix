# NixOS module: services.vhotplug. The older daemon's options (enable, package, attachConnected,
# debug, config) keep their names and meaning; api.* configures the control plane's sockets.
# Installs the package's udev rule, systemd units, generators and tmpfiles snippet as shipped
# (`make install`), and writes /etc/vhotplug.conf from `config` (nix/render-config.nix).
{ config, lib, pkgs, ... }:

let
  cfg = config.services.vhotplug;
  inherit (lib) mkEnableOption mkIf mkOption types optional;
  confText = import ./render-config.nix { settings = cfg.config; api = cfg.api; };
  debugFlag = lib.optionalString cfg.debug " --debug";
in
{
  options.services.vhotplug = {
    enable = mkEnableOption "vhotplug, which gives host USB, PCI and input devices to VMs by rules";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./package.nix { }";
      description = "The vhotplug package (programs, udev rule, units, generators).";
    };

    attachConnected = mkOption {
      type = types.bool;
      default = true;
      description = ''
        At boot, attach the devices already connected (and repair what changed while the host was
        down): enables vhotplug-reconcile.service. The periodic vhotplug-reconcile.timer runs
        either way.
      '';
    };

    debug = mkOption {
      type = types.bool;
      default = false;
      description = "Run the helper and reconcile with --debug (debug records in the journal).";
    };

    config = mkOption {
      type = types.attrsOf types.anything;
      default = { };
      example = lib.literalExpression "import ./example.nix";
      description = ''
        The configuration, vhotplug.conf(5) as an attribute set; written as JSON to
        /etc/vhotplug.conf. Until it names VMs and rules nothing is passed through.
      '';
    };

    api = {
      enable = mkOption {
        type = types.bool;
        default = false;
        description = "Serve the control plane (vhotplug-api) on the sockets below (general.api).";
      };
      transports = mkOption {
        type = types.listOf (types.enum [ "unix" "vsock" "tcp" ]);
        default = [ "unix" ];
        description = "Where the API listens; tcp is unauthenticated.";
      };
      unixSocket = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Path of the unix socket (default /var/lib/vhotplug/vhotplug.sock).";
      };
      unixSocketUser = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Owner of the unix socket.";
      };
      unixSocketGroup = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Group of the unix socket.";
      };
      unixSocketMode = mkOption {
        type = types.nullOr (types.strMatching "[0-7]{3,4}");
        default = null;
        example = "0660";
        description = "Mode of the unix socket, octal digits.";
      };
      port = mkOption {
        type = types.nullOr types.port;
        default = null;
        description = "vsock and TCP port (default 2000).";
      };
      allowedCids = mkOption {
        type = types.nullOr (types.listOf types.ints.unsigned);
        default = null;
        description = "vsock peers (CIDs) allowed to connect; null: any.";
      };
      host = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "TCP address to listen on (default 127.0.0.1).";
      };
    };
  };

  config = mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];
    environment.etc."vhotplug.conf".text = confText;

    # The rule, units, generators and tmpfiles snippet as the package installs them.
    services.udev.packages = [ cfg.package ];
    systemd.packages = [ cfg.package ];
    systemd.tmpfiles.packages = [ cfg.package ];

    # udev's events go to this socket (vhotplug-event); it starts vhotplug-helper.service.
    systemd.sockets.vhotplug-helper.wantedBy = [ "sockets.target" ];
    systemd.services.vhotplug-helper = {
      restartTriggers = [ confText ];
      serviceConfig.ExecStart = mkIf cfg.debug [ "" "${cfg.package}/sbin/vhotplug-helper --service${debugFlag}" ];
    };
    systemd.timers.vhotplug-reconcile.wantedBy = [ "timers.target" ];
    systemd.services.vhotplug-reconcile = {
      wantedBy = optional cfg.attachConnected "multi-user.target";
      # A new configuration: reconcile again (the generated units follow it too).
      restartTriggers = [ confText ];
      serviceConfig.ExecStart = mkIf cfg.debug [ "" "${cfg.package}/sbin/vhotplug-reconcile${debugFlag}" ];
    };
    systemd.services."vhotplug-reconcile@".serviceConfig.ExecStart =
      mkIf cfg.debug [ "" "${cfg.package}/sbin/vhotplug-reconcile --vm %i${debugFlag}" ];
  };
}
