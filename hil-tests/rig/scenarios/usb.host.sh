#!/bin/sh
# Host half of the "usb" rig scenario: the reports the VM left in $RIG_OUT, checked with
# rig-check-report (schema + the seeds' known answers).
set -u
C=$RIG_CHECK_REPORT
fail=0
one() { # one DIR: the only report in DIR
  set -- "$RIG_OUT/$1"/*.yaml
  [ $# = 1 ] && [ -e "$1" ] || { echo "FAIL expected one report in $(dirname "$1"), found $#" >&2; return 1; }
  echo "$1"
}
check() { echo "== $1"; shift; "$C" "$@" || fail=1; }
[ -d "$RIG_OUT/seed000" ] || { echo "no seed000 reports: the VM part did not run"; exit 1; }
r=$(one seed000) && check seed000 "$r" verdict=pass slot.id=1 fixture.backend=libgpiod \
  unit.port_path=1-1 unit.dfu_serial=0A1B2C3D4E01 \
  steps.enter-bootloader.entry_method=gpio:boot0+reset steps.enter-bootloader.outcome=pass \
  steps.flash.outcome=pass steps.flash.pages_written'>='17 \
  steps.verify.sha256=fec0c7c54d10b71da32f06b658c5c28ec616701f084334874ffc1c3291a9936c \
  images.combined.sha256=fec0c7c54d10b71da32f06b658c5c28ec616701f084334874ffc1c3291a9936c \
  steps.start.outcome=pass steps.wait-for-app.app_usb.id=1d50:614e \
  steps.wait-for-app.app_usb.port_path=1-1 || fail=1
r=$(one seed001) && check seed001 "$r" verdict=pass slot.id=2 \
  steps.enter-katapult.entry_method=usb:1200-baud-touch \
  steps.katapult-flash.pages_written=14 steps.katapult-verify.blocks=435 \
  steps.katapult-verify.sha1=FCA6E37F4D9F344E7AF18C7609AEBBCFD6E597E0 \
  steps.wait-for-app.app_usb.id=1d50:614e steps.wait-for-app.app_usb.port_path=1-2 || fail=1
n=0 ids=
for r in "$RIG_OUT"/parallel/*.yaml; do
  [ -e "$r" ] || continue
  n=$((n+1))
  check "parallel $(basename "$r")" "$r" verdict=pass steps.verify.outcome=pass \
    steps.verify.sha256=fec0c7c54d10b71da32f06b658c5c28ec616701f084334874ffc1c3291a9936c \
    steps.wait-for-app.app_usb.id=1d50:614e
  ids="$ids $(grep -m1 '^  id:' "$r" | tr -d "' " )"
done
[ $n = 2 ] || { echo "FAIL parallel: $n reports, expected 2"; fail=1; }
# At once, not one after the other: both slots entered the ROM together, and each slot's
# work (enter-bootloader .. wait-for-app) overlaps the other's.
ms() { date -u -d "$1" +%s%3N; }
step_start() { # step_start FILE STEP
  sed -n "/^- name: $2\$/,/^- name:/p" "$1" | sed -n 's/^  started: //p' | head -1
}
set -- "$RIG_OUT"/parallel/*.yaml
if [ $# = 2 ]; then
  a0=$(ms "$(step_start "$1" enter-bootloader)") a1=$(ms "$(step_start "$1" wait-for-app)")
  b0=$(ms "$(step_start "$2" enter-bootloader)") b1=$(ms "$(step_start "$2" wait-for-app)")
  d=$(( a0 > b0 ? a0 - b0 : b0 - a0 ))
  echo "parallel: slot windows $a0..$a1 and $b0..$b1 ms, starts $d ms apart"
  [ "$d" -lt 1000 ] && [ "$a0" -lt "$b1" ] && [ "$b0" -lt "$a1" ] ||
    { echo "FAIL parallel: the two slots did not run at the same time"; fail=1; }
fi
# One run: both reports carry the same run id.
[ "$(echo $ids | tr ' ' '\n' | sort -u | wc -l)" = 1 ] || { echo "FAIL parallel: run ids differ:$ids"; fail=1; }
[ "$fail" = 0 ] && echo "host checks: PASS" || echo "host checks: FAIL"
exit $fail
