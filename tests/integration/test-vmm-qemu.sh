#!/usr/bin/env bash
# lib/vmm.c against a real QEMU (q35, TCG, paused) started inside a umockdev testbed that holds a fake
# Logitech M105 mouse (bus 1, device 5), driven through build/tests/vhp-vmm; QEMU's state is checked
# independently through build/tests/vhp-qmp (qom-list / qom-get).
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/../lib.sh"
# QEMU must run inside the testbed so its libusb sees the fake device.
vhp_run_in_testbed "$VHP_FIXTURES/usb-mouse-logitech-m105.umockdev"

VMM=$VHP_TOOLS/vhp-vmm
QMP=$VHP_TOOLS/vhp-qmp
SOCK=$VHP_TMP/qmp.sock

# shellcheck disable=SC2317 # (called through vhp_check_output)
peripherals() { "$QMP" "$SOCK" qom-list '{"path":"/machine/peripheral"}'; }
# shellcheck disable=SC2317
qom_get() { "$QMP" "$SOCK" qom-get "{\"path\":\"/machine/peripheral/$1\",\"property\":\"$2\"}"; }
lacks() { # desc, pattern, command... : ok when the command succeeds and its output lacks pattern
        local desc=$1 pattern=$2 out
        shift 2
        if out=$("$@" 2>&1) && ! grep -Eq -- "$pattern" <<<"$out"; then
                vhp_ok "$desc"
        else
                vhp_fail "$desc" "did not expect /$pattern/ in: $out"
        fi
}

for t in "$VMM" "$QMP"; do
        [ -x "$t" ] || { vhp_fail "tool $t built"; vhp_done; }
done

vhp_check_output "VM not running: EHOSTDOWN" '^error EHOSTDOWN: .*not running' \
        bash -c "! '$VMM' list qemu '$VHP_TMP/nothing.sock'"

vhp_start_qemu vm1 "$SOCK" || { vhp_fail "QEMU started"; vhp_done; }
vhp_ok "QEMU started inside the testbed"

# ---- USB ----
vhp_check_output "usb attach" '^id=vhp-usb-001-005 ' "$VMM" attach qemu "$SOCK" usb 1 5
vhp_check_output "qom-list shows the usb-host" '"name":"vhp-usb-001-005","type":"child<usb-host>"' peripherals
vhp_check_output "qom-get hostbus" '^1$' qom_get vhp-usb-001-005 hostbus
vhp_check_output "qom-get hostaddr" '^5$' qom_get vhp-usb-001-005 hostaddr
vhp_check_output "vmm_list reports it as ours" \
        '^id=vhp-usb-001-005 driver=usb-host kind=usb ours=1 hostbus=1 hostaddr=5 ' "$VMM" list qemu "$SOCK"
vhp_check_output "vmm_list reports foreign devices as not ours" '^id=xhci driver=qemu-xhci kind=unknown ours=0 ' \
        "$VMM" list qemu "$SOCK"
vhp_check_output "second attach: EEXIST" '^error EEXIST: Duplicate' bash -c "! '$VMM' attach qemu '$SOCK' usb 1 5"
vhp_check_output "usb detach waits for DEVICE_DELETED" '^detached$' "$VMM" detach qemu "$SOCK" vhp-usb-001-005
lacks "qom-list no longer shows it" 'vhp-usb-001-005' peripherals
vhp_check_output "detach again: ENOENT" '^error ENOENT: ' bash -c "! '$VMM' detach qemu '$SOCK' vhp-usb-001-005"
vhp_check_output "absent host device: retried, then EAGAIN with QEMU's text" \
        '^error EAGAIN: failed to find host usb device 1:9' bash -c "! '$VMM' --retries 2 attach qemu '$SOCK' usb 1 9"

# ---- PCI / evdev port picking ----
vhp_check "virtio-rng-pci into rp1" "$QMP" "$SOCK" device_add '{"driver":"virtio-rng-pci","bus":"rp1","addr":"0","id":"rng1"}'
vhp_check_output "rp1 now lists a child" '"name":"child\[0\]"' "$QMP" "$SOCK" qom-list '{"path":"/machine/peripheral/rp1/rp1"}'
vhp_check_output "vfio attach of a fake host device: EREMOTEIO with QEMU's message" \
        '^error EREMOTEIO: vfio .*0000:00:14\.3' bash -c "! '$VMM' attach qemu '$SOCK' pci 0000:00:14.3"
lacks "nothing left attached by the failed PCI attach" 'vhp-pci' peripherals
lacks "rp2 still free" 'child\[' "$QMP" "$SOCK" qom-list '{"path":"/machine/peripheral/rp2/rp2"}'
vhp_check_output "evdev attach of a non-evdev node: EREMOTEIO" '^error EREMOTEIO: ' \
        bash -c "! '$VMM' attach qemu '$SOCK' evdev /dev/null"

# A device of ours in rp2 that a paused guest never releases: device_del accepted, no DEVICE_DELETED.
vhp_check "virtio-rng-pci (ours) into rp2" "$QMP" "$SOCK" device_add '{"driver":"virtio-rng-pci","bus":"rp2","addr":"0","id":"vhp-test-rng"}'
vhp_check_output "detach without guest cooperation: EINPROGRESS" '^error EINPROGRESS: ' \
        bash -c "! '$VMM' --detach-timeout 300 detach qemu '$SOCK' vhp-test-rng"
vhp_check_output "detach again while pending: EINPROGRESS" '^error EINPROGRESS: ' \
        bash -c "! '$VMM' --detach-timeout 300 detach qemu '$SOCK' vhp-test-rng"
vhp_check "virtio-rng-pci into rp3" "$QMP" "$SOCK" device_add '{"driver":"virtio-rng-pci","bus":"rp3","addr":"0","id":"rng3"}'
vhp_check_output "all ports taken: ENOSPC" '^error ENOSPC: ' bash -c "! '$VMM' attach qemu '$SOCK' pci 0000:00:14.3"
vhp_check_output "root bus: no port, QEMU's refusal passed on" '^error EREMOTEIO: .*pcie\.0' \
        bash -c "! '$VMM' --root-bus attach qemu '$SOCK' pci 0000:00:14.3"

vhp_stop_qemu vm1
vhp_done
