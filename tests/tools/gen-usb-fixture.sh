#!/usr/bin/env bash
# gen-usb-fixture.sh N [VID]: prints a umockdev device description with N fake USB HID mice
# (vendor VID, default 1209 (pid.codes test id); product 0001..N; serial SN0001..), 100 per bus
# behind root hubs usb1, usb2, ... of one xHCI controller. Device i (0-based) is bus 1+i/100,
# port 1+i%100, devnum 2+i%100. Used by tests and benchmarks that need many devices.
set -eu
n=${1:?count}
vid=${2:-1209}
ctl=/devices/pci0000:00/0000:00:14.0
cat <<EOC
P: $ctl
E: DRIVER=xhci_hcd
E: PCI_CLASS=C0330
E: PCI_ID=8086:A0ED
E: PCI_SLOT_NAME=0000:00:14.0
E: SUBSYSTEM=pci
A: class=0x0c0330\n
A: vendor=0x8086\n
A: device=0xa0ed\n

EOC
buses=$(( (n + 99) / 100 ))
for ((b = 1; b <= buses; b++)); do
        cat <<EOC
P: $ctl/usb$b
N: bus/usb/$(printf %03d $b)/001
E: DEVNAME=/dev/bus/usb/$(printf %03d $b)/001
E: DEVTYPE=usb_device
E: PRODUCT=1d6b/2/612
E: TYPE=9/0/1
E: BUSNUM=$(printf %03d $b)
E: DEVNUM=001
E: SUBSYSTEM=usb
E: ID_VENDOR_ID=1d6b
E: ID_MODEL_ID=0002
E: ID_USB_INTERFACES=:090000:
A: idVendor=1d6b\n
A: idProduct=0002\n
A: bDeviceClass=09\n
A: bDeviceSubClass=00\n
A: bDeviceProtocol=01\n
A: busnum=$b\n
A: devnum=1\n
A: removable=unknown\n
H: descriptors=12010002090001406B1D020012060102000109021200010100A032090400000009000000

EOC
done
for ((i = 0; i < n; i++)); do
        b=$((1 + i / 100)) p=$((1 + i % 100)) d=$((2 + i % 100))
        pid=$(printf %04x $((i + 1)))
        bb=$(printf %03d $b) dd=$(printf %03d $d)
        # Device descriptor (18 bytes) + config/interface descriptors of a boot mouse.
        desc=$(echo "1201000200000040${vid:2:2}${vid:0:2}${pid:2:2}${pid:0:2}00010102000109021200010100A032090400000003010200" | tr a-f A-F)
        cat <<EOC
P: $ctl/usb$b/$b-$p
N: bus/usb/$bb/$dd=$desc
E: DEVNAME=/dev/bus/usb/$bb/$dd
E: DEVTYPE=usb_device
E: DRIVER=usb
E: PRODUCT=$(printf %x/%x 0x$vid 0x$pid)/100
E: TYPE=0/0/0
E: BUSNUM=$bb
E: DEVNUM=$dd
E: SUBSYSTEM=usb
E: ID_VENDOR_ID=$vid
E: ID_MODEL_ID=$pid
E: ID_SERIAL_SHORT=SN$(printf %04d $((i + 1)))
E: ID_USB_INTERFACES=:030102:
E: ID_VENDOR_FROM_DATABASE=Test Vendor
E: ID_MODEL_FROM_DATABASE=Test Mouse $((i + 1))
A: idVendor=$vid\n
A: idProduct=$pid\n
A: bDeviceClass=00\n
A: bDeviceSubClass=00\n
A: bDeviceProtocol=00\n
A: busnum=$b\n
A: devnum=$d\n
A: removable=removable\n
A: serial=SN$(printf %04d $((i + 1)))\n
H: descriptors=$desc

EOC
done
