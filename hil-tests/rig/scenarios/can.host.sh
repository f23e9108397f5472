#!/bin/sh
# Host half of the "can" rig scenario: three returned-units reports, the candump recording
# checked against the Katapult framing, and the recovered unit's report.
set -u
C=$RIG_CHECK_REPORT
fail=0
check() { echo "== $1"; shift; "$C" "$@" || fail=1; }
[ -d "$RIG_OUT/returned" ] || { echo "no returned-units reports: the VM part did not run"; exit 1; }
APP_SHA=25f27494a2b1d1932bc50f5b4a2c28f587347a1edc09ba154e2dc7b8792d746d
n=0
for u in 11aa22bb33c1 11aa22bb33c2 11aa22bb33c3; do
  set -- "$RIG_OUT"/returned/${u}_*.yaml
  [ -e "$1" ] || { echo "FAIL no report for unit $u"; fail=1; continue; }
  n=$((n+1))
  check "returned $u" "$1" verdict=pass unit.can_uuid=$u fixture.backend=libgpiod \
    steps.enter-katapult.outcome=pass steps.read-app.outcome=pass \
    steps.katapult-flash.outcome=pass steps.katapult-flash.pages_written'>='1 \
    images.application.sha256=$APP_SHA unit.after_sha256=$APP_SHA unit.before_sha256!=$APP_SHA \
    steps.katapult-verify.outcome=pass \
    steps.katapult-verify.sha1=@images.application.sha1_padded \
    steps.katapult-complete.outcome=pass steps.wait-for-app.outcome=pass
done
[ $n = 3 ] || { echo "FAIL $n of 3 units reported"; fail=1; }
echo "== candump ($(wc -l < "$RIG_OUT/candump.log") frames)"
"$RIG_CANDUMP_CHECK" --nodes 3 --min-blocks 100 "$RIG_OUT/candump.log" || fail=1
set -- "$RIG_OUT"/recovery/*.yaml
if [ -e "$1" ]; then
  check recovery "$1" verdict=pass slot.id=1 unit.can_uuid=11aa22bb33c1 \
    steps.katapult-flash.outcome=fail steps.katapult-flash.block'>='30 steps.katapult-flash.block'<='40 \
    recovery.rung=rom-dfu recovery.outcome=pass recovery.reason~SEND_BLOCK \
    steps.recover:enter-bootloader.entry_method=gpio:boot0+reset \
    steps.recover:verify.outcome=pass
else
  echo "FAIL no recovery report"; fail=1
fi
[ "$fail" = 0 ] && echo "host checks: PASS" || echo "host checks: FAIL"
exit $fail
