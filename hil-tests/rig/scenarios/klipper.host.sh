#!/bin/sh
# Host half of the "klipper" rig scenario: the reports and JUnit file the VM left in
# $RIG_OUT, checked with rig-check-report.
set -u
C=$RIG_CHECK_REPORT
fail=0
one() { # one DIR: the only report in DIR
  set -- "$RIG_OUT/$1"/*.yaml
  [ $# = 1 ] && [ -e "$1" ] || { echo "FAIL expected one report in $(dirname "$1"), found $#" >&2; return 1; }
  echo "$1"
}
check() { echo "== $1"; shift; "$C" "$@" || fail=1; }
[ -d "$RIG_OUT/provision" ] || { echo "no provision report: the VM part did not run"; exit 1; }
r=$(one provision) && check provision "$r" verdict=pass slot.id=1 fixture.backend=libgpiod \
  steps.verify.sha256=fec0c7c54d10b71da32f06b658c5c28ec616701f084334874ffc1c3291a9936c \
  steps.identify.link=usb 'steps.identify.version=CARTOGRAPHER V4 6.0.0 Lite' \
  steps.identify.clock_freq=170000000 steps.identify.transport=usb \
  'unit.firmware_version=CARTOGRAPHER V4 6.0.0 Lite' \
  steps.alive.measurements.clock_rate_ratio.outcome=pass \
  steps.sample.measurements.data_stddev.outcome=pass \
  steps.sample.measurements.data_stddev.low=5 steps.sample.count=100 || fail=1
grep -q '<testsuite name="1-1 (slot 1)"\|<testsuite name="0A1B2C3D4E01 (slot 1)"' \
  "$RIG_OUT/provision.xml" || { echo "FAIL provision.xml has no suite for slot 1"; fail=1; }
r=$(one can) && check can "$r" verdict=pass slot.id=2 steps.identify.link=can \
  steps.identify.can_nodeid=4 'steps.identify.version=CARTOGRAPHER V4 6.0.0' \
  steps.identify.transport=can steps.identify.bitrate=1000000 \
  steps.alive.measurements.clock_rate_ratio.outcome=pass \
  steps.sample.measurements.data_gaps.value=0 || fail=1
exit $fail
