#!/bin/sh
# Host test (no VM) of the rig's two checkers: rig-check-report must pass a good report
# and fail on a wrong value, a missing field, a schema violation and an unreadable file;
# rig-candump-check must pass well-framed Katapult traffic and fail on a bad CRC, a
# truncated frame and a missing answer stream. The report comes from a real station run
# on the virtual fixture (the demo job, no ../shared needed).
set -u
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
expect() { # expect STATUS CMD...
  want=$1; shift
  "$@" > "$T/out" 2>&1; got=$?
  if [ "$got" = "$want" ]; then echo "ok   ($got) $*"; else echo "FAIL (got $got, want $want) $*"; cat "$T/out"; fail=1; fi
}
cd "$T" || exit 1
"$STATION_BIN" --plain image generate "$T/demo.bin" > /dev/null || exit 1
sed "s|path: .*|path: $T/demo.bin|" "$STATION_SOURCE_DIR/jobs/demo-usb-dfu.yaml" > "$T/job.yaml"
"$STATION_BIN" --plain run "$T/job.yaml" -f "$STATION_SOURCE_DIR/fixtures/virtual.yaml" --slot 1 -r "$T/r" > "$T/run.out" 2>&1 ||
  { echo "station run failed:"; cat "$T/run.out"; exit 1; }
R=$(ls "$T"/r/*.yaml)
C=$RIG_CHECK_REPORT
expect 0 "$C" "$R" verdict=pass slot.id=1 steps.0.outcome=pass steps.flash.outcome=pass \
  steps.verify.sha256~'' images.combined.size'>='1024 steps.flash.pages_written'<='64 \
  unit.port_path? unit.nonexistent! steps.start.entry_method!=gpio:reset
expect 1 "$C" "$R" verdict=fail
expect 1 "$C" "$R" steps.flash.pages_written'>='65
expect 1 "$C" "$R" steps.nosuchstep.outcome=pass
expect 1 "$C" "$R" unit.port_path!
expect 1 "$C" "$R" verdict
sed 's/^verdict: pass/verdict: maybe/' "$R" > "$T/bad.yaml"
expect 1 "$C" "$T/bad.yaml"
expect 2 "$C" "$T/missing.yaml" verdict=pass
expect 2 "$C"

# Katapult over CAN: CONNECT (01 88 11 00 crc 99 03) to node 0x180, its ACK back on 0x181
# cut into 8-byte frames; admin traffic on 0x3F0/0x3F1 is not framed.
D=$RIG_CANDUMP_CHECK
good() {
  echo "(1.000000) can0 3F0#00"
  echo "(1.000100) can0 3F1#2011AA22BB33C111"
  echo "(1.000200) can0 180#01881100F17C9903"
  echo "(1.000300) can0 181#0188A00111000000"
  echo "(1.000400) can0 181#EC5C9903"
}
good > "$T/good.log"
expect 0 "$D" "$T/good.log"
expect 1 "$D" --min-blocks 1 "$T/good.log"
expect 1 "$D" --nodes 2 "$T/good.log"
good | sed 's/EC5C9903/EC5D9903/' > "$T/crc.log"
expect 1 "$D" "$T/crc.log"
good | grep -v EC5C > "$T/short.log"
expect 1 "$D" "$T/short.log"
good | grep -v '181#' > "$T/noanswer.log"
expect 1 "$D" "$T/noanswer.log"
echo "not candump" >> "$T/good.log"
expect 1 "$D" "$T/good.log"
expect 2 "$D" "$T/missing.log"
exit $fail
