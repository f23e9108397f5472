#!/bin/sh
# Host half of the rig peer benchmark (bench/peer.sh): station flash + verify (step times
# from its reports) against dfu-util download + upload (process times minus dfu-util -l,
# i.e. start-up and enumeration), fresh and holding the image, as ratios.
set -u
f=$RIG_OUT/peer.txt
[ -s "$f" ] || { echo "no dfu-util figures in $f: the VM part did not run"; exit 1; }
steps() { # steps DIR: "flash_ms verify_ms" from the only report in DIR
  awk '/^- name: /{n=$3} /^  duration_ms:/{if (n=="flash") f=$2; if (n=="verify") v=$2}
       END{printf "%s %s\n", f, v}' "$RIG_OUT/$1"/*.yaml
}
peer() { # peer LABEL: "download_ms upload_ms" (minus list)
  awk -v l="$1" '$2==l{printf "%.1f %.1f\n", ($6-$4)/1000, ($8-$4)/1000}' "$f"
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
echo "(process times minus dfu-util -l: start-up and enumeration). Targets: fresh <= 0.8, holds <= 0.2."
exit $fail
