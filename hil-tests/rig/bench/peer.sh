#!/bin/sh
# Peer benchmark, INSIDE the rig VM (one boot): dfu-util's download + upload (its way to
# verify) against the station's flash (skip_identical) + verify of the same image on the
# same ROM DFU model (station-sim, `datasheet` timing, a whole unit on vhci port 1-1 with
# gpio-sim BOOT0/NRST), on a fresh (erased) unit and on one that holds the image, three
# rounds each (the host half takes medians: times under TCG vary). Writes
# $RIG_OUT/peer.txt (dfu-util times) and the station's reports; bench/peer.host.sh prints
# the comparison on the host. Not a test: run by `scripts/bench.sh --rig`.
set -u
. "$RIG_DIR/guest-lib.sh"
. "$RIG_DIR/scenarios/lib.sh"
COMBINED=$FW/Katapult_plus_CartographerV4_6.0.0__USB_lite.bin
[ -r "$COMBINED" ] || { echo "SKIP: no firmware in $FW"; exit 77; }
size=$(stat -c %s "$COMBINED")
sha=$(sha256sum < "$COMBINED" | cut -d' ' -f1)
now_us() { echo $(( $(date +%s%N) / 1000 )); }
cat > "$W/job.yaml" <<JOB
name: peer-usb-dfu
target: stm32g431xx
images:
  combined: { path: $COMBINED, load_addr: 0x08000000, sha256: $sha }
retries: 0
steps:
  - enter-bootloader
  - flash: { image: combined, skip_identical: true }
  - verify: { image: combined }
JOB

unit_up() {
  # shellcheck disable=SC2046
  sim_start peer-unit units --timing datasheet $(unit_args 1) --serial 0A1B2C3D4E01 &&
    rig_wait_for 10 usb_at 1-1 0483:df11 || { lsusb; return 1; }
}

# dfu_util LABEL: dfu-util -l three times (start-up and enumeration: the fastest is
# subtracted from the others to get step times, not process times), then -D and -U of the
# image's size three times each (dfu-util rewrites whatever the unit holds); the upload must
# match. One line per round in peer.txt.
dfu_util() {
  list=
  for i in 1 2 3; do
    t0=$(now_us); dfu-util -l > "$RIG_OUT/$1-l.txt" 2>&1; t1=$(now_us)
    [ -z "$list" ] || [ $((t1 - t0)) -lt "$list" ] && list=$((t1 - t0))
  done
  for i in 1 2 3; do
    t1=$(now_us)
    dfu-util -a 0 -s 0x08000000 -D "$COMBINED" > "$RIG_OUT/$1-D.txt" 2>&1 || return 1
    t2=$(now_us)
    rm -f "$W/up.bin"
    dfu-util -a 0 -s "0x08000000:$size" -U "$W/up.bin" > "$RIG_OUT/$1-U.txt" 2>&1 || return 1
    t3=$(now_us)
    [ "$(sha256sum < "$W/up.bin" | cut -d' ' -f1)" = "$sha" ] || { echo "upload differs"; return 1; }
    echo "dfu-util $1 list_us $list download_us $((t2 - t1)) upload_us $((t3 - t2))" |
      tee -a "$RIG_OUT/peer.txt"
  done
}

station_job() {
  station run "$W/job.yaml" -f "$FIXTURE" --slot 1 -r "$RIG_OUT/$1" -o rig
}

rig_jig || exit 1
: > "$RIG_OUT/peer.txt"
# A fresh unit for dfu-util; it then holds the image: the station's holding case, and
# dfu-util's again (it rewrites whatever the unit holds).
part unit1 unit_up
part dfu_fresh dfu_util fresh
part station_holds1 station_job station-holds
part station_holds2 station_job station-holds
part station_holds3 station_job station-holds
part dfu_holds dfu_util holds
part stop1 sim_stop
# Fresh units for the station (an erased unit each time).
for i in 1 2 3; do
  part unit2_$i unit_up
  part station_fresh$i station_job station-fresh
  part stop2_$i sim_stop
done
rm -rf "$W"
exit $fail
