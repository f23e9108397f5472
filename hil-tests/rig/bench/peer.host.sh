#!/bin/sh
# Host half of the rig peer benchmark (bench/peer.sh): station flash + verify (step times
# from its reports) against dfu-util download + upload (process times minus dfu-util -l,
# i.e. start-up and enumeration), fresh and holding the image, as ratios.
set -u
f=$RIG_OUT/peer.txt
[ -s "$f" ] || { echo "no dfu-util figures in $f: the VM part did not run"; exit 1; }
# median of the numbers on stdin
median() { sort -n | awk '{a[NR]=$1} END{if (NR) print a[int((NR+1)/2)]}'; }
steps() { # steps DIR: "flash_ms verify_ms", medians over the reports in DIR
  for r in "$RIG_OUT/$1"/*.yaml; do
    awk '/^- name: /{n=$3} /^  duration_ms:/{if (n=="flash") f=$2; if (n=="verify") v=$2}
         END{printf "%s %s\n", f, v}' "$r"
  done > "$RIG_OUT/$1.steps"
  echo "$(cut -d' ' -f1 "$RIG_OUT/$1.steps" | median) $(cut -d' ' -f2 "$RIG_OUT/$1.steps" | median)"
}
peer() { # peer LABEL: "download_ms upload_ms" (each minus the fastest list), medians
  d=$(awk -v l="$1" '$2==l{printf "%.1f\n", ($6-$4)/1000}' "$f" | median)
  u=$(awk -v l="$1" '$2==l{printf "%.1f\n", ($8-$4)/1000}' "$f" | median)
  echo "$d $u"
}
fail=0
echo "rig (TCG VM, 1 vCPU): ROM DFU model, datasheet timing, $(stat -c %s "$STATION_SOURCE_DIR/../shared/firmware/cartographer-v4/6.0.0/Katapult_plus_CartographerV4_6.0.0__USB_lite.bin") bytes"
printf "%-14s %10s %10s %10s %12s %12s %12s %8s\n" case "flash ms" "verify ms" "station" \
  "dfu-util -D" "dfu-util -U" "dfu-util" ratio
for c in fresh holds; do
  set -- $(steps station-$c) $(peer $c)
  [ $# = 4 ] || { echo "FAIL $c: missing figures ($*)"; fail=1; continue; }
  awk -v c="$c" -v f="$1" -v v="$2" -v d="$3" -v u="$4" 'BEGIN{
    printf "%-14s %10.1f %10.1f %10.1f %12.1f %12.1f %12.1f %8.3f\n", c, f, v, f+v, d, u, d+u,
      (f+v)/(d+u)}'
done
echo "ratio = station flash + verify (report step times) / dfu-util download + upload"
echo "(process times minus the fastest dfu-util -l: start-up and enumeration); medians of 3."
echo "Targets: fresh <= 0.8, holds <= 0.2."
# The floors on a fresh (erased) unit (STM32G431 datasheet profile: 22 ms per 2 KiB page
# erase, 82 us per 64-bit word): dfu-util erases every page; the station's skip_identical
# reads each page back and writes a blank one without an erase (only a page the image
# covers in part is still erased).
size=$(stat -c %s "$STATION_SOURCE_DIR/../shared/firmware/cartographer-v4/6.0.0/Katapult_plus_CartographerV4_6.0.0__USB_lite.bin")
# shellcheck disable=SC2046 # two numbers
set -- $(peer fresh)
if [ $# = 2 ]; then
  awk -v s="$size" -v d="$1" -v u="$2" 'BEGIN{
    pages = int((s + 2047) / 2048); words = int((s + 7) / 8); part = (s % 2048) ? 1 : 0;
    erase_all = pages * 22 + words * 0.082; station = part * 22 + words * 0.082;
    printf "fresh floors: erase + program of every page %.1f ms (dfu-util: %.3f of its download +\n", erase_all, erase_all / (d + u);
    printf "upload); program only, %d partial page erased, %.1f ms (the station on a blank unit)\n", part, station;
    printf "= %.3f of dfu-util download + upload (%.1f ms).\n", station / (d + u), d + u}'
fi
exit $fail
