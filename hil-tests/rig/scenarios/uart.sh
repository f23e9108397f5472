#!/bin/sh
# Rig scenario group "uart" (runs INSIDE the VM, one boot): the AN3155 ROM model behind a
# USB CDC-ACM serial adapter (station-sim usbip --model an3155, 0483:5740) over USB/IP;
# the kernel's cdc_acm makes it /dev/ttyACM0, so the host's framing reaches the model as a
# real SET_LINE_CODING and the model, like the ROM, answers only at 8E1.
#  peer:     Debian's stm32flash with its DEFAULT 8E1 (no -m): identify, write + verify
#            (-v), read back (same SHA-256), go;
#  peer8n1:  stm32flash -m 8n1 is refused (the ROM sees parity errors: no answer);
#  station:  `station uart backup` and `station uart flash` on the same tty through the
#            station's termios backend at 8E1 (a fixture whose slot 1 UART is ttyACM0).
#  neptune:  seed 002 end to end: a virtual F401 board (station-sim units, boot-select
#            inverted) whose BOOT0/NRST follow gpio-sim lines and whose UART is a pty;
#            `station run jobs/neptune4-backup-and-flash.yaml` plays the guide's
#            `-2,-1,1:2,-1,,,1` through libgpiod, backs up the whole flash, flashes,
#            verifies and starts the new firmware with the exit sequence.
# Reports go to $RIG_OUT; uart.host.sh checks them on the host.
set -u
. "$RIG_DIR/guest-lib.sh"
. "$RIG_DIR/scenarios/lib.sh"
TTY=

start() {
  sim_start "${1:-an3155}" usbip --model an3155 --port 4 || return 1
  rig_wait_for 10 sh -c 'ls /dev/ttyACM* >/dev/null 2>&1' || { lsusb; dmesg | tail -n 20; return 1; }
  TTY=$(ls /dev/ttyACM* | head -n 1)
  lsusb | grep 0483:5740 && echo "adapter on $TTY"
}

peer() {
  head -c 65536 /dev/urandom > "$W/img.bin"
  stm32flash "$TTY" > "$RIG_OUT/peer-info.txt" 2>&1 || { cat "$RIG_OUT/peer-info.txt"; return 1; }
  grep -E 'Interface|Device ID' "$RIG_OUT/peer-info.txt"
  grep -q '8E1' "$RIG_OUT/peer-info.txt" || { echo "stm32flash did not run at 8E1"; return 1; }
  grep -q '0x0468' "$RIG_OUT/peer-info.txt" || return 1
  stm32flash -w "$W/img.bin" -v "$TTY" > "$RIG_OUT/peer-write.txt" 2>&1 ||
    { tail -n 5 "$RIG_OUT/peer-write.txt"; return 1; }
  stm32flash -S 0x08000000:65536 -r "$W/back.bin" "$TTY" > "$RIG_OUT/peer-read.txt" 2>&1 ||
    { tail -n 5 "$RIG_OUT/peer-read.txt"; return 1; }
  a=$(sha256sum < "$W/img.bin" | cut -c1-64) b=$(sha256sum < "$W/back.bin" | cut -c1-64)
  echo "written $a, read back $b"
  [ "$a" = "$b" ] || return 1
  stm32flash -g 0x08000000 "$TTY" > "$RIG_OUT/peer-go.txt" 2>&1 || { cat "$RIG_OUT/peer-go.txt"; return 1; }
  grep -q 'go 0x08000000' "$SIM_ERR" || { echo "the model saw no Go"; return 1; }
}

peer8n1() {
  # A fresh model: the last one ran the application after Go.
  sim_stop || return 1
  rig_wait_for 10 sh -c '! ls /dev/ttyACM* >/dev/null 2>&1' || return 1
  start an3155-fresh || return 1
  if stm32flash -m 8n1 "$TTY" > "$RIG_OUT/peer-8n1.txt" 2>&1; then
    echo "stm32flash at 8N1 was answered: the model must refuse it"; return 1
  fi
  tail -n 2 "$RIG_OUT/peer-8n1.txt"
}

station_uart() {
  cat > "$W/uart.yaml" <<EOT
name: rig-uart
gpio: { backend: libgpiod, chip: jig }
slots:
  - id: 1
    lines: { boot0: BOOT0_1, reset: { name: RESET_1, active_low: true } }
    serial: { device: $TTY, baud: 115200 }
EOT
  # The adapter's ROM runs already (no pins on this model): a pure delay as the entry.
  station uart backup "$RIG_OUT/backup.bin" --size 16384 -f "$W/uart.yaml" --slot 1 \
    --entry ',' -r "$RIG_OUT/backup" -o rig || return 1
  "$STATION_BIN" image generate --seed 7 --size 40000 "$W/new.bin" || return 1
  station uart flash "$W/new.bin" -f "$W/uart.yaml" --slot 1 --entry ',' \
    -r "$RIG_OUT/flash" -o rig || return 1
  sha256sum < "$W/new.bin" | cut -c1-64 > "$RIG_OUT/new.sha256"
}

neptune() {
  sim_stop || return 1
  # The guide's GPIO 1 is NRST (RESET_1, line 1), GPIO 2 the inverted boot-select (BOOT0_1).
  sim_start neptune units --mcu stm32f401xc --unit --port 6 --gpio-sim "$RIG_SIM" \
    --boot0-line 0 --nrst-line 1 --boot-select low --flash synthetic:3 \
    --uart "$W/neptune.tty" || return 1
  "$STATION_BIN" image generate --mcu stm32f401xc --seed 4 --size 49152 \
    "$STATION_SOURCE_DIR/jobs/generated/neptune4-firmware.bin" || return 1
  cat > "$W/neptune.yaml" <<EOT
name: rig-neptune4
gpio: { backend: libgpiod, chip: jig }
slots:
  - id: 1
    lines:
      boot0: { name: BOOT0_1, active_low: true }
      reset: { name: RESET_1, active_low: true }
    serial: { device: $W/neptune.tty, baud: 115200, entry_gpio: { 1: reset, 2: boot0 } }
EOT
  station run "$STATION_SOURCE_DIR/jobs/neptune4-backup-and-flash.yaml" -f "$W/neptune.yaml" \
    --slot 1 -r "$RIG_OUT/neptune" -o rig || return 1
  grep -E 'pin (BOOT0|NRST)' "$SIM_ERR" | head -n 12
  # The exit sequence reset it into the new firmware: the application's USB face (vhci
  # port 6 is port path 1-7).
  rig_wait_for 10 usb_at 1-7 1d50:614e || { echo "the unit does not run the application"; lsusb; return 1; }
  echo "the application runs on 1-7"
}

rig_jig || exit 1
part start start
part peer peer
part peer8n1 peer8n1
part station station_uart
part neptune neptune
sim_stop || fail=1
rm -rf "$W"
exit $fail
