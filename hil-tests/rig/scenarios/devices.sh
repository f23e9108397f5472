#!/bin/sh
# Rig scenario (runs INSIDE the VM): the three kernel devices with our servers behind them.
#  usb:  station-sim's loopback model over USB/IP is enumerated (lsusb -v) and works
#        through the station's libusb backend (rig-usb-probe), and unplugs cleanly;
#  can:  station-sim's slcan server makes can0; ip link sets 1 Mbit/s and brings it up (the
#        server sees S8 + O); a cansend frame reaches our echo node and its answer comes back;
#  gpio: a gpio-sim chip with lines BOOT0/RESET; gpioset drives them, the sim side reads
#        (libgpiod v1 or v2 tool syntax: guest-lib.sh's rig_gpio* helpers).
# Prints PASS/FAIL per part with its time (and its log on failure, or always with
# RIG_VERBOSE=1); exits non-zero if any part failed.
set -u
. "$RIG_DIR/guest-lib.sh"
W=$(mktemp -d)
fail=0
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
part() {
  name=$1; shift
  t0=$(now_ms)
  if "$@" > "$W/$name.log" 2>&1; then
    echo "PASS $name $(( $(now_ms) - t0 )) ms"
    [ "${RIG_VERBOSE:-0}" = 1 ] && sed 's/^/  | /' "$W/$name.log"
  else
    echo "FAIL $name $(( $(now_ms) - t0 )) ms"; sed 's/^/  | /' "$W/$name.log"; fail=1
  fi
}
stop() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
# station-sim must exit 0 on SIGTERM (a sanitizer report at exit makes it non-zero).
stop_sim() {
  kill "$1" 2>/dev/null; wait "$1"; r=$?
  [ $r = 0 ] || { echo "station-sim exited with status $r"; cat "$2"; return 1; }
}

usb() {
  "$STATION_SIM" usbip --model loopback --serial RIG0042 --ready-file "$W/usb.ready" \
    > "$W/usb.out" 2> "$W/usb.err" & P=$!
  rig_wait_for 10 lsusb -d 1209:0001 || { cat "$W/usb.err"; stop $P; return 1; }
  lsusb -v -d 1209:0001 2>/dev/null > "$W/lsusb.txt"
  grep -E 'idVendor|idProduct|iManufacturer|iProduct|iSerial|bEndpointAddress|bInterfaceClass' "$W/lsusb.txt"
  grep -q 'iSerial.*RIG0042' "$W/lsusb.txt" && grep -q 'bEndpointAddress *0x82' "$W/lsusb.txt" ||
    { echo "lsusb -v does not show the model's descriptors"; stop $P; return 1; }
  "$RIG_USB_PROBE" RIG0042 || { cat "$W/usb.err"; stop $P; return 1; }
  stop_sim $P "$W/usb.err" || return 1
  rig_wait_for 5 sh -c '! lsusb -d 1209:0001' || { echo "device still listed after station-sim exit"; return 1; }
  echo "unplugged"
}

can() {
  "$STATION_SIM" slcan --model echo --ifname can0 > "$W/can.out" 2> "$W/can.err" & P=$!
  rig_wait_for 10 ip link show can0 || { cat "$W/can.err"; stop $P; return 1; }
  ip link set can0 type can bitrate 1000000 && ip link set can0 up || { stop $P; return 1; }
  ip -details link show can0 | grep -o 'bitrate [0-9]*' | head -1
  ip -details link show can0 | grep -q 'bitrate 1000000' || { echo "bitrate not 1 Mbit/s"; stop $P; return 1; }
  candump -n 1 -T 5000 -L can0,124:7FF > "$W/dump.txt" & D=$!
  sleep 0.3
  cansend can0 123#DEADBEEF
  wait $D
  cat "$W/dump.txt"
  grep -q '124#DEADBEEF' "$W/dump.txt" || { echo "no echo from our node"; cat "$W/can.err"; stop $P; return 1; }
  grep -q 'opened at 1000000' "$W/can.err" || { echo "server did not see S8/O"; cat "$W/can.err"; stop $P; return 1; }
  ip link set can0 down
  stop_sim $P "$W/can.err"
}

gpio() {
  rig_gpio_sim_load || return 1
  rig_gpio_chip jig jig BOOT0 RESET || return 1
  rig_gpioinfo "$RIG_CHIP"
  B=$(rig_gpiofind BOOT0) R=$(rig_gpiofind RESET)
  echo "BOOT0 -> $B, RESET -> $R"
  rig_gpioset_hold "$RIG_CHIP" 0=1 1=0 & G=$!
  rig_wait_for 5 grep -q 1 "$RIG_SIM/sim_gpio0/value" || { stop $G; return 1; }
  v0=$(cat "$RIG_SIM/sim_gpio0/value") v1=$(cat "$RIG_SIM/sim_gpio1/value")
  echo "held BOOT0=1 RESET=0: sim sees $v0 $v1"
  stop $G
  [ "$v0" = 1 ] && [ "$v1" = 0 ] || return 1
  echo pull-up > "$RIG_SIM/sim_gpio1/pull"
  [ "$(rig_gpioget "$RIG_CHIP" 1)" = 1 ] || { echo "pull-up not seen by gpioget"; return 1; }
  rig_gpio_chip_remove jig
}

rig_modules_load || exit 1
rig_udev_start || exit 1
part usb usb
part can can
part gpio gpio
rm -rf "$W"
exit $fail
