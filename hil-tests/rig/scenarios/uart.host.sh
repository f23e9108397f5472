#!/bin/sh
# Host half of the "uart" rig scenario: the station's reports from the VM (8E1 through the
# kernel's cdc_acm, backup digest, flash + verify of the new image).
set -u
C=$RIG_CHECK_REPORT
fail=0
one() {
  set -- "$RIG_OUT/$1"/*.yaml
  [ $# = 1 ] && [ -e "$1" ] || { echo "FAIL expected one report in $(dirname "$1"), found $#" >&2; return 1; }
  echo "$1"
}
[ -d "$RIG_OUT/backup" ] || { echo "no uart reports: the VM part did not run"; exit 1; }
b=$(sha256sum < "$RIG_OUT/backup.bin" | cut -c1-64)
r=$(one backup) && { echo "== backup"; "$C" "$r" verdict=pass steps.uart-enter.framing~8E1 \
  steps.uart-info.bootloader_version=3.1 unit.usart_pid=0x468 \
  steps.uart-backup.bytes=16384 steps.uart-backup.sha256="$b" || fail=1; }
n=$(cat "$RIG_OUT/new.sha256" 2>/dev/null)
r=$(one flash) && { echo "== flash"; "$C" "$r" verdict=pass steps.uart-enter.framing~8E1 \
  steps.uart-verify.sha256="$n" steps.uart-start.entry_method=uart:go || fail=1; }
r=$(one neptune) && {
  echo "== neptune"
  f=$(sed -n 's/^  file: //p' "$r" | head -n 1)
  h=$(sha256sum < "$f" | cut -c1-64)
  "$C" "$r" verdict=pass fixture.backend=libgpiod \
    steps.uart-enter.entry_plan.text=-2,-1,1:2,-1,,,1 steps.uart-enter.sync=ack \
    unit.usart_pid=0x423 steps.uart-backup.bytes=262144 steps.uart-backup.sha256="$h" \
    unit.backup_sha256="$h" steps.uart-flash.units_written'>='1 \
    steps.uart-verify.sha256=f807596741eb3a492a68bf3276a1bedd2bf157eaa0b78139effcb522c6bd3731 \
    steps.uart-start.entry_method=uart:exit-sequence || fail=1
}
exit $fail
