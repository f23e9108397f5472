#!/bin/sh
# Rig scenario group "usb" (runs INSIDE the VM, one boot): the unchanged station binary
# against three virtual units served by ONE station-sim over USB/IP, each with its own
# vhci port and its own gpio-sim lines (fixtures/rig.yaml slots 1-3):
#  seed000:  slot 1, a fresh (erased) unit: `station run jobs/cartographer-v4-usb-dfu.yaml`
#            drives BOOT0 + RESET through libgpiod/gpio-sim, finds the ROM DFU (0483:df11)
#            on port 1-1 with libusb, flashes and verifies the combined image, leaves; the
#            application enumerates (1d50:614e).
#  seed001:  slot 2, a unit running the application over USB (synthetic:4): `station serial
#            flash CartographerV4_6.0.0_USB_lite_8kib_offset.bin --slot 2` does the 1200-baud
#            touch through the kernel's cdc_acm, finds Katapult (1d50:6177) on port 1-2,
#            flashes, verifies (SHA-1), completes; the application comes back.
#  parallel: slots 2 and 3 (3 erased) in one `station run`: two ROM DFU sessions at once.
#  dfu-util: the peer against the DfuSe model (station-sim usbip --model dfu, port 1-5):
#            list, download, upload (same SHA-256), leave.
# Reports go to $RIG_OUT; usb.host.sh checks them on the host.
set -u
. "$RIG_DIR/guest-lib.sh"
. "$RIG_DIR/scenarios/lib.sh"
COMBINED=$FW/Katapult_plus_CartographerV4_6.0.0__USB_lite.bin
APP=$FW/CartographerV4_6.0.0_USB_lite_8kib_offset.bin
[ -r "$COMBINED" ] && [ -r "$APP" ] || { echo "SKIP: no firmware in $FW"; exit 77; }

start() {
  # shellcheck disable=SC2046
  sim_start units units $(unit_args 1) --serial 0A1B2C3D4E01 \
                        $(unit_args 2) --serial 0A1B2C3D4E02 --flash synthetic:4 \
                        $(unit_args 3) --serial 0A1B2C3D4E03 || return 1
  rig_wait_for 10 usb_at 1-1 0483:df11 && rig_wait_for 10 usb_at 1-2 1d50:614e &&
    rig_wait_for 10 usb_at 1-3 0483:df11 || { lsusb; return 1; }
  lsusb
}

seed000() {
  station run "$STATION_SOURCE_DIR/jobs/cartographer-v4-usb-dfu.yaml" -f "$FIXTURE" --slot 1 \
    -r "$RIG_OUT/seed000" -o rig || return 1
  usb_at 1-1 1d50:614e || { echo "slot 1 is not the application after the run"; lsusb; return 1; }
  lsusb -s "$(cat /sys/bus/usb/devices/1-1/busnum):$(cat /sys/bus/usb/devices/1-1/devnum)"
}

seed001() {
  ls -l /dev/serial/by-id/ /dev/serial/by-path/ 2>/dev/null
  station serial flash "$APP" --slot 2 -f "$FIXTURE" -r "$RIG_OUT/seed001" -o rig || return 1
  rig_wait_for 10 usb_at 1-2 1d50:614e || { echo "slot 2 is not the application after the run"; lsusb; return 1; }
  grep -q 'usb 1d50:6177' "$RIG_OUT/units.out" || { echo "Katapult never enumerated"; return 1; }
}

parallel() {
  station run "$STATION_SOURCE_DIR/jobs/cartographer-v4-usb-dfu.yaml" -f "$FIXTURE" \
    --slot 2 --slot 3 -r "$RIG_OUT/parallel" -o rig || return 1
  usb_at 1-2 1d50:614e && usb_at 1-3 1d50:614e || { lsusb; return 1; }
}

dfu_util() {
  sim_stop || return 1
  sim_start dfu usbip --model dfu --port 4 --serial 0A1B2C3D4E05 --once || return 1
  rig_wait_for 10 usb_at 1-5 0483:df11 || { lsusb; return 1; }
  dfu-util -l > "$RIG_OUT/dfu-l.txt" 2>&1
  grep 'Found DFU' "$RIG_OUT/dfu-l.txt"
  grep -q 'name="@Internal Flash   /0x08000000/64\*02Kg"' "$RIG_OUT/dfu-l.txt" || return 1
  dfu-util -a 0 -s 0x08000000 -D "$COMBINED" > "$RIG_OUT/dfu-D.txt" 2>&1 ||
    { cat "$RIG_OUT/dfu-D.txt"; return 1; }
  tail -n 2 "$RIG_OUT/dfu-D.txt"
  size=$(stat -c %s "$COMBINED")
  rm -f "$W/up.bin"
  dfu-util -a 0 -s "0x08000000:$size" -U "$W/up.bin" > "$RIG_OUT/dfu-U.txt" 2>&1 ||
    { cat "$RIG_OUT/dfu-U.txt"; return 1; }
  tail -n 2 "$RIG_OUT/dfu-U.txt"
  a=$(sha256sum < "$COMBINED" | cut -d' ' -f1) b=$(sha256sum < "$W/up.bin" | cut -d' ' -f1)
  echo "download $a"; echo "upload   $b"
  echo "$b" > "$RIG_OUT/dfu-upload.sha256"
  [ "$a" = "$b" ] || { echo "upload differs from download"; return 1; }
  dfu-util -a 0 -s 0x08000000:leave > "$RIG_OUT/dfu-leave.txt" 2>&1; r=$?
  tail -n 3 "$RIG_OUT/dfu-leave.txt"
  # dfu-util may report the vanishing device after :leave as an error (74): still a leave.
  [ $r = 0 ] || [ $r = 74 ] || return 1
  wait "$SIM"; r=$?; SIM=
  [ $r = 0 ] || { echo "station-sim --once exited $r"; return 1; }
  grep -q 'left DFU' "$RIG_OUT/dfu.err" || { echo "the model never left DFU"; return 1; }
}

rig_jig || exit 1
part start start
part seed000 seed000
part seed001 seed001
part parallel parallel
part dfu_util dfu_util
sim_stop || fail=1
rm -rf "$W"
exit $fail
