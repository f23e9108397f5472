#!/bin/sh
# Rig scenario (runs INSIDE the VM): a barcode scanner that is a keyboard. rig-keyboard
# makes a virtual USB keyboard through /dev/uinput (uinput and evdev loaded from the
# guest kernel's modules); `station produce` on a one-slot virtual line with
# `scanner: { evdev: "Station Rig Scanner" }` (found by name) must grab it (a second grab
# is refused with EBUSY, a plain reader that saw its keys before sees none now), read the
# good barcode the keyboard types and run that unit (its report carries it), refuse the
# bad one with the job's pattern in the message, and release the grab when it exits. Then
# the same by the event device's path: one scan, one unit run; and unplugged while the slot
# waits for a scan, then plugged back in: found again, grabbed, its scan taken.
set -u
. "$RIG_DIR/guest-lib.sh"
. "$STATION_SOURCE_DIR/hil-tests/rig/scenarios/lib.sh"

kbd() { echo "$1" >&3; }
# kbd_wait PATTERN: the keyboard's output has a line matching PATTERN.
kbd_wait() { rig_wait_for 20 grep -q "$1" "$RIG_OUT/keyboard.out"; }

devices() {
  modprobe uinput && modprobe evdev || { echo "modprobe uinput/evdev failed"; return 1; }
  rig_wait_for 10 test -c /dev/uinput || return 1
  mkfifo "$W/kbd"
  "$RIG_KEYBOARD" "Station Rig Scanner" "$W/kbd.ready" < "$W/kbd" > "$RIG_OUT/keyboard.out" 2>&1 &
  KBD=$!
  exec 3> "$W/kbd"
  rig_wait_for 20 test -s "$W/kbd.ready" || return 1
  echo "keyboard: $(cat "$W/kbd.ready")"
  grep -A4 'Station Rig Scanner' /proc/bus/input/devices
  # Before the station runs, nobody holds it, and a plain reader sees what it types (so
  # the "0 key events" below is the grab's doing, not a blind reader).
  kbd "grab?" && kbd_wait '^grab: free' &&
    kbd "type XYZ-1" && kbd_wait '^typed XYZ-1 ([1-9][0-9]* key events seen by another reader)'
}

# write_line SCANNER UNITS: the one-slot line whose scanner is SCANNER (a name or a path).
write_line() {
  cat > "$W/fixture.yaml" <<EOT
name: scanner-line
gpio: { backend: virtual }
timing: { reset_pulse_ms: 1, boot_settle_ms: 1 }
slots:
  - id: 1
    lines: { boot0: B1, reset: { name: R1, active_low: true }, button: BTN1, present: P1,
             led_pass: LP1, led_fail: LF1, led_busy: LB1 }
    usb_port: vusb-1
    scanner: { evdev: "$1" }
    unit:
      serial: "0A1B2C3D4E01"
      timing: none
      operator: { units: $2, arrive_ms: 200, press_ms: 10, remove_ms: 10 }
EOT
}

# wait_grab PID: until the station holds the scanner (a second grab is refused), by the
# answers to questions asked from now on (not an earlier run's).
wait_grab() {
  t=0 n0=$(grep -c '^grab:' "$RIG_OUT/keyboard.out")
  until [ "$(grep -c '^grab:' "$RIG_OUT/keyboard.out")" -gt "$n0" ] &&
        [ "$(grep '^grab:' "$RIG_OUT/keyboard.out" | tail -1)" = "grab: busy" ]; do
    t=$((t + 1)); [ $t -le 100 ] || { echo "the station never grabbed the scanner"; kill "$1"; return 1; }
    kill -0 "$1" 2>/dev/null || { echo "station produce ended before grabbing"; return 1; }
    kbd "grab?"; sleep 0.2
  done
  echo "grabbed by the station"
}

produce() {
  station image generate "$W/img.bin" > "$W/gen.out" || return 1
  sha=$(sed -n 's/.*sha256 \([0-9a-f]\{64\}\).*/\1/p' "$W/gen.out")
  cat > "$W/job.yaml" <<EOT
name: scan
target: stm32g431xx
images:
  combined: { path: $W/img.bin, load_addr: 0x08000000, sha256: $sha }
barcode: "^CV4-[0-9]{6}\$"
steps:
  - enter-bootloader
  - flash: { image: combined }
  - verify: { image: combined }
  - start: { image: combined }
EOT
  write_line "Station Rig Scanner" 2
  station produce "$W/job.yaml" -f "$W/fixture.yaml" --reports "$RIG_OUT/reports" \
    > "$RIG_OUT/produce.out" 2>&1 &
  P=$!
  # Grabbed: a second grab is refused.
  wait_grab $P || { cat "$RIG_OUT/produce.out"; return 1; }
  kbd "type CV4-000001"
  kbd_wait '^typed CV4-000001 (0 key events seen by another reader)' || { cat "$RIG_OUT/keyboard.out"; kill $P; return 1; }
  rig_wait_for 60 grep -q 'barcode CV4-000001' "$RIG_OUT/produce.out" || { cat "$RIG_OUT/produce.out"; kill $P; return 1; }
  # Only once the first is taken: the newest scan is the one a unit gets.
  kbd "type not a unit!"
  kbd_wait '^typed not a unit! (0 key events' || { cat "$RIG_OUT/keyboard.out"; kill $P; return 1; }
  rig_wait_for 90 sh -c "! kill -0 $P" || { echo "station produce did not end"; cat "$RIG_OUT/produce.out"; kill $P; return 1; }
  wait $P; rc=$?
  cat "$RIG_OUT/produce.out"
  echo "station produce exited $rc"
  [ $rc -le 1 ] || return 1
  grep -qF 'REFUSED barcode "not a unit!" does not match the job'"'"'s pattern "^CV4-[0-9]{6}$"' \
    "$RIG_OUT/produce.out" || { echo "no refusal of the bad barcode"; return 1; }
  # One unit ran, with its barcode in the report; the refused one never ran.
  station report summary "$RIG_OUT/reports" --yaml > "$W/sum.yaml" || return 1
  grep -q '^runs: 1$' "$W/sum.yaml" && grep -q '^pass: 1$' "$W/sum.yaml" || { cat "$W/sum.yaml"; return 1; }
  grep -q "barcode: CV4-000001" "$RIG_OUT"/reports/*.yaml || { echo "no barcode in the report"; return 1; }
  # Released on exit.
  kbd "grab?" && rig_wait_for 20 sh -c "grep '^grab:' '$RIG_OUT/keyboard.out' | tail -1 | grep -q free"
}

# The same scanner named by its event device's path: one good scan, one unit run.
by_path() {
  write_line "$(cat "$W/kbd.ready")" 1
  station produce "$W/job.yaml" -f "$W/fixture.yaml" --reports "$RIG_OUT/reports-path" \
    > "$RIG_OUT/produce-path.out" 2>&1 &
  P=$!
  wait_grab $P || { cat "$RIG_OUT/produce-path.out"; return 1; }
  kbd "type CV4-000002"
  rig_wait_for 90 sh -c "! kill -0 $P" || { echo "station produce did not end"; cat "$RIG_OUT/produce-path.out"; kill $P; return 1; }
  wait $P; rc=$?
  cat "$RIG_OUT/produce-path.out"
  [ $rc = 0 ] || { echo "station produce exited $rc"; return 1; }
  grep -q "barcode: CV4-000002" "$RIG_OUT"/reports-path/*.yaml || { echo "no barcode in the report"; return 1; }
}

# Unplugged while the slot waits for a scan: the station says so, finds the scanner again
# when it comes back (a new device of the same name), grabs it and takes its scan.
replug() {
  write_line "Station Rig Scanner" 1
  station produce "$W/job.yaml" -f "$W/fixture.yaml" --reports "$RIG_OUT/reports-replug" \
    > "$RIG_OUT/produce-replug.out" 2>&1 &
  P=$!
  wait_grab $P || { cat "$RIG_OUT/produce-replug.out"; return 1; }
  # Unplugged: the keyboard destroys its device and exits.
  kbd quit
  rig_wait_for 20 sh -c "! kill -0 $KBD" || { echo "the keyboard did not go away"; kill $P; return 1; }
  wait "$KBD"; KBD=
  rig_wait_for 30 grep -q 'slot 1: scanner lost: .*went away' "$RIG_OUT/produce-replug.out" ||
    { cat "$RIG_OUT/produce-replug.out"; kill $P; return 1; }
  mkfifo "$W/kbd2"
  "$RIG_KEYBOARD" "Station Rig Scanner" "$W/kbd2.ready" < "$W/kbd2" >> "$RIG_OUT/keyboard.out" 2>&1 &
  KBD=$!
  exec 3> "$W/kbd2"
  rig_wait_for 20 test -s "$W/kbd2.ready" || { kill $P; return 1; }
  rig_wait_for 30 grep -q 'slot 1: scanner back: .*(Station Rig Scanner), grabbed' "$RIG_OUT/produce-replug.out" ||
    { cat "$RIG_OUT/produce-replug.out"; kill $P; return 1; }
  kbd "type CV4-000003"
  rig_wait_for 90 sh -c "! kill -0 $P" || { echo "station produce did not end"; cat "$RIG_OUT/produce-replug.out"; kill $P; return 1; }
  wait $P; rc=$?
  cat "$RIG_OUT/produce-replug.out"
  [ $rc = 0 ] || { echo "station produce exited $rc"; return 1; }
  grep -q "barcode: CV4-000003" "$RIG_OUT"/reports-replug/*.yaml || { echo "no barcode in the report"; return 1; }
}

part devices devices
part produce produce
part by-path by_path
part replug replug
[ -n "${KBD:-}" ] && kbd quit && wait "$KBD"
exec 3>&-
rm -rf "$W"
exit $fail
