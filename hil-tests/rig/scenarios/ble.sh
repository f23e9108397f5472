#!/bin/sh
# Rig scenario group "ble" (runs INSIDE the VM, one boot): the unchanged station binary
# updates a Silicon Labs Bluetooth module through the kernel's cdc_acm driver. station-sim
# serves the module model (protocols/bgapi) behind a USB CDC-ACM bridge over USB/IP (vhci
# port 3 = port path 1-4); the station opens the resulting /dev/ttyACMn with its termios
# backend, exactly as on a board whose module sits behind a USB-UART bridge.
#  gsdk4: a module with a GSDK 4.x bootloader running its old firmware: `station run
#         jobs/bgm-uart-dfu.yaml` enters DFU with system_reset(1), uploads, finishes and
#         sees the new stack 5.0.1 boot.
#  gsdk3: an empty module (in DFU mode, its application not bootable) with a GSDK <= 3.2
#         bootloader: `station ble flash IMAGE --slot 1` falls back to dfu_reset(1). (The
#         two events the module sent at power-up went out before the station opened the
#         port and are gone, as on a real UART.)
# Reports go to $RIG_OUT; ble.host.sh checks them on the host.
set -u
. "$RIG_DIR/guest-lib.sh"
. "$RIG_DIR/scenarios/lib.sh"
GEN=$STATION_SOURCE_DIR/jobs/generated   # the tree is a throwaway overlay in the VM

# module_tty: the tty cdc_acm made for the device on port path 1-4.
module_tty() {
  for t in /sys/bus/usb/devices/1-4:1.0/tty/ttyACM*; do
    [ -e "$t" ] && [ -c "/dev/$(basename "$t")" ] && { echo "/dev/$(basename "$t")"; return 0; }
  done
  return 1
}

# ble_fixture: fixtures/rig.yaml's slot 1 with the module on the tty found now.
ble_fixture() {
  tty=$(module_tty) || return 1
  cat > "$W/ble.yaml" <<EOT
name: kernel-driver-rig-ble
gpio: { backend: libgpiod, chip: jig }
slots:
  - id: 1
    name: rig-1
    lines: { boot0: BOOT0_1, reset: { name: RESET_1, active_low: true } }
    module: { device: $tty, baud: 115200, flow_control: false }
EOT
  echo "module on $tty"
}

module_up() { # module_up NAME STATION-SIM-ARGS...
  n=$1; shift
  sim_start "$n" usbip --model bgm --port 3 "$@" || return 1
  rig_wait_for 10 usb_at 1-4 1209:0003 || { lsusb; return 1; }
  rig_wait_for 10 module_tty || { ls -l /sys/bus/usb/devices/1-4:1.0/; return 1; }
  ble_fixture
}

gsdk4() {
  mkdir -p "$GEN" && station ble image "$GEN/bgm-ncp.gbl" --stack 5.0.1 || return 1
  module_up bgm4 --bootloader gsdk4 || return 1
  station run "$STATION_SOURCE_DIR/jobs/bgm-uart-dfu.yaml" -f "$W/ble.yaml" --slot 1 \
    -r "$RIG_OUT/gsdk4" -o rig
}

gsdk3() {
  sim_stop || return 1
  rig_wait_for 10 sh -c '! test -e /sys/bus/usb/devices/1-4' || return 1
  module_up bgm3 --bootloader gsdk3 --empty || return 1
  station ble flash "$GEN/bgm-ncp.gbl" --slot 1 -f "$W/ble.yaml" -r "$RIG_OUT/gsdk3" -o rig
}

rig_jig || exit 1
part gsdk4 gsdk4
part gsdk3 gsdk3
sim_stop || fail=1
rm -rf "$W"
exit $fail
