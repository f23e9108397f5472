#!/bin/sh
# Rig scenario (runs INSIDE the VM): a whole virtual unit (protocols/sim/vunit.h) behind
# real drivers. station-sim serves it over USB/IP and reads its BOOT0/NRST pins from a
# gpio-sim chip, so the jig's GPIO really moves it:
#  app:  flashed with the Katapult + Cartographer USB image, it boots into the Klipper
#        application: 1d50:614e, a CDC-ACM tty from the kernel's cdc_acm driver;
#  rom:  BOOT0 held high while RESET is pulsed low (libgpiod's gpioset) -> the ROM DFU
#        bootloader 0483:df11, and dfu-util lists its DfuSe alt settings;
#  leave: dfu-util downloads the image with :leave -> the unit drops off the bus and comes
#        back as the application.
#  can:  the unit's CAN face (Klipper application node, then Katapult) behind an slcan
#        can1 at 1 Mbit/s: QUERY_UNASSIGNED gets [20 uuid 01]; REQUEST_BOOTLOADER reboots it
#        into Katapult, which answers the next query with [20 uuid 11].
# Without ../shared firmware the unit starts empty (ROM DFU) and only rom/leave run.
set -u
. "$RIG_DIR/guest-lib.sh"
FW=$STATION_SOURCE_DIR/../shared/firmware/cartographer-v4/6.0.0/Katapult_plus_CartographerV4_6.0.0__USB_lite.bin
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
    echo "FAIL $name $(( $(now_ms) - t0 )) ms"; sed 's/^/  | /' "$W/$name.log"
    echo "  | station-sim log:"; tail -n 20 "$W/sim.err" | sed 's/^/  | /'; fail=1
  fi
}

app() {
  rig_wait_for 10 lsusb -d 1d50:614e || { lsusb; return 1; }
  lsusb -d 1d50:614e
  rig_wait_for 5 sh -c 'ls /dev/serial/by-id/*' || { echo "no /dev/serial/by-id link"; return 1; }
  ls -l /dev/serial/by-id/
}

rom() {
  rig_gpioset_hold "$RIG_CHIP" 0=1 & B=$!               # hold BOOT0 high
  sleep 0.1
  rig_gpioset_pulse "$RIG_CHIP" 100 1=0                 # pulse RESET low for 100 ms
  rig_wait_for 10 lsusb -d 0483:df11 || { kill $B; lsusb; return 1; }
  kill $B; wait $B 2>/dev/null
  dfu-util -l 2>/dev/null | grep 'Found DFU' | tee "$W/dfu-l.txt"
  grep -q 'name="@Internal Flash' "$W/dfu-l.txt"
}

leave() {
  [ -e "$FW" ] || head -c 20000 /dev/urandom > "$W/fw.bin"
  img=$FW; [ -e "$FW" ] || img=$W/fw.bin
  dfu-util -a 0 -s 0x08000000:leave -D "$img" > "$W/dfu.txt" 2>&1; r=$?
  tail -n 4 "$W/dfu.txt"
  # dfu-util may report the vanishing device as an error after :leave (74): still a leave.
  [ $r = 0 ] || [ $r = 74 ] || { cat "$W/dfu.txt"; return 1; }
  grep -q 'Download done' "$W/dfu.txt" || grep -q 'File downloaded successfully' "$W/dfu.txt" || return 1
  if [ -e "$FW" ]; then
    rig_wait_for 10 lsusb -d 1d50:614e || { lsusb; return 1; }
    echo "back as the application:"; lsusb -d 1d50:614e
  fi
}

query() {  # query() EXPECTED-CANDUMP-LINE
  candump -n 1 -T 5000 -L can1,3F1:7FF > "$W/q.txt" & D=$!
  sleep 0.3
  cansend can1 3F0#00
  wait $D
  cat "$W/q.txt"
  grep -q "$1" "$W/q.txt"
}

can() {
  "$STATION_SIM" slcan --model klipper --uuid 0a0b0c0d0e0f --ifname can1 > "$W/can.out" 2> "$W/can.err" & C=$!
  rig_wait_for 10 ip link show can1 || { cat "$W/can.err"; kill $C; return 1; }
  ip link set can1 type can bitrate 1000000 && ip link set can1 up || { kill $C; return 1; }
  query '3F1#200A0B0C0D0E0F01' || { cat "$W/can.err"; kill $C; return 1; }
  cansend can1 3F0#020A0B0C0D0E0F
  sleep 0.3
  query '3F1#200A0B0C0D0E0F11' || { cat "$W/can.err"; kill $C; return 1; }
  grep 'bootloader requested' "$W/can.err"
  kill $C; wait $C
}

rig_modules_load || exit 1
rig_udev_start || exit 1
rig_gpio_sim_load || exit 1
rig_gpio_chip jig jig BOOT0 RESET || exit 1
FLASH=; [ -e "$FW" ] && FLASH="--flash $FW"
# shellcheck disable=SC2086
"$STATION_SIM" usbip --model unit --gpio-sim "$RIG_SIM" $FLASH > "$W/sim.out" 2> "$W/sim.err" & SIM=$!
if [ -e "$FW" ]; then part app app; else echo "SKIP app (no $FW)"; rig_wait_for 10 lsusb -d 0483:df11; fi
part rom rom
part leave leave
kill $SIM; wait $SIM || { echo "FAIL station-sim exit status $?"; tail "$W/sim.err"; fail=1; }
part can can
rm -rf "$W"
exit $fail
