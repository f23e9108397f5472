#!/bin/sh
# Rig scenario group "klipper" (runs INSIDE the VM, one boot): checks on running units
# through the Klipper MCU protocol, with the unchanged station binary on real kernel
# drivers. station-sim serves two units (fixtures/rig.yaml slots 1 and 2):
#  provision: slot 1, an erased USB unit: `station run jobs/cartographer-v4-provision.yaml`
#             flashes the combined USB image through the ROM DFU (libusb, vhci), starts it;
#             the application enumerates as a CDC-ACM device, the kernel's cdc_acm gives it a
#             tty, and identify / alive / sample talk the Klipper protocol through that tty;
#  can:       slot 2, a CAN unit already holding the combined CAN image: `station mcu
#             identify --uuid` over can0 (slcan: SET_KLIPPER_NODEID, then the byte stream on
#             0x108/0x109), and a checks-only job (identify, alive, sample) on slot 2.
# Reports go to $RIG_OUT; klipper.host.sh checks them on the host.
set -u
. "$RIG_DIR/guest-lib.sh"
. "$RIG_DIR/scenarios/lib.sh"
USB=$FW/Katapult_plus_CartographerV4_6.0.0__USB_lite.bin
CAN=$FW/Katapult_plus_CartographerV4_6.0.0__CAN_1M.bin
[ -r "$USB" ] && [ -r "$CAN" ] || { echo "SKIP: no firmware in $FW"; exit 77; }

start() {
  # shellcheck disable=SC2046
  sim_start units units --ifname can0 \
    $(unit_args 1) --serial 0A1B2C3D4E01 \
    $(unit_args 2) --transport can --uuid 11aa22bb33c2 --serial 0A1B2C3D4E02 --flash "$CAN" ||
    return 1
  rig_wait_for 10 usb_at 1-1 0483:df11 || { lsusb; return 1; }
  rig_wait_for 10 ip link show can0 || return 1
}

provision() {
  station run "$STATION_SOURCE_DIR/jobs/cartographer-v4-provision.yaml" -f "$FIXTURE" --slot 1 \
    -r "$RIG_OUT/provision" -o rig --junit "$RIG_OUT/provision.xml" || return 1
  usb_at 1-1 1d50:614e || { echo "slot 1 is not the application after the run"; lsusb; return 1; }
  ls -l /dev/ttyACM* 2>/dev/null
}

can() {
  station mcu identify --uuid 11aa22bb33c2 -f "$FIXTURE" > "$RIG_OUT/identify.txt" 2>&1 ||
    { cat "$RIG_OUT/identify.txt"; return 1; }
  cat "$RIG_OUT/identify.txt"
  grep -q '^version: CARTOGRAPHER V4 6.0.0$' "$RIG_OUT/identify.txt" &&
    grep -q '^transport: can 1000000 bit/s' "$RIG_OUT/identify.txt" || return 1
  cat > "$W/can-checks.yaml" <<EOJ
name: can-checks
target: stm32g431xx
images:
  combined:
    path: $CAN
    load_addr: 0x08000000
    sha256: 8edc7562d8c8dc2dd1a9df410f8cb9c2c5b57701e5629c9fa5e5cfaa5c84e962
klipper: { transport: can, version: "CARTOGRAPHER V4 6.0.0" }
steps:
  - identify: { clock_freq: 170000000 }
  - alive: { duration_ms: 1000, tolerance: 0.05 }
  - sample: { count: 50, unit: counts, limits: { stddev: { low: 5 }, gaps: { high: 0 } } }
EOJ
  station run "$W/can-checks.yaml" -f "$FIXTURE" --slot 2 -r "$RIG_OUT/can" -o rig
}

rig_jig || exit 1
part start start
part provision provision
part can can
sim_stop || fail=1
rm -rf "$W"
exit $fail
