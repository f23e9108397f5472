#!/bin/sh
# Host half of the "ble" rig scenario: the module reports the VM left in $RIG_OUT, checked
# with rig-check-report (schema + what issue 11 asks the report to hold).
set -u
C=$RIG_CHECK_REPORT
fail=0
one() { # one DIR: the only report in DIR
  set -- "$RIG_OUT/$1"/*.yaml
  [ $# = 1 ] && [ -e "$1" ] || { echo "FAIL expected one report in $(dirname "$1"), found $#" >&2; return 1; }
  echo "$1"
}
check() { echo "== $1"; shift; "$C" "$@" || fail=1; }
[ -d "$RIG_OUT/gsdk4" ] || { echo "no gsdk4 reports: the VM part did not run"; exit 1; }
r=$(one gsdk4) && check gsdk4 "$r" verdict=pass slot.id=1 fixture.backend=libgpiod \
  unit.module.entry_method='system_reset(1)' unit.module.bootloader_version=0x02040000 \
  unit.module.image_sha256=@images.module.sha256 unit.module.chunk_size=252 \
  unit.module.chunks'>='100 unit.module.stack_version=5.0.1 unit.module.update_ms? \
  unit.module_state=application steps.bgapi-upload.chunks_sent=@unit.module.chunks \
  steps.bgapi-boot.outcome=pass || fail=1
r=$(one gsdk3) && check gsdk3 "$r" verdict=pass slot.id=1 \
  unit.module.entry_method='dfu_reset(1)' unit.module.bootloader_version=0x010C0000 \
  steps.bgapi-enter-dfu.outcome=pass unit.module.stack_version=5.0.1 \
  unit.module_state=application || fail=1
[ "$fail" = 0 ] && echo "host checks: PASS" || echo "host checks: FAIL"
exit $fail
