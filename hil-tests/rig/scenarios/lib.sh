# Helpers for the station scenarios running INSIDE the rig VM (sourced after guest-lib.sh):
# timed parts with PASS/FAIL lines, station-sim start/stop, the station binary.
# Each scenario writes what the host checks (reports, logs, recordings) under $RIG_OUT.
W=$(mktemp -d)
fail=0
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# part NAME CMD...: run CMD with its output in $RIG_OUT/NAME.log; PASS/FAIL with the time.
part() {
  name=$1; shift
  t0=$(now_ms)
  if "$@" > "$RIG_OUT/$name.log" 2>&1; then
    echo "PASS $name $(( $(now_ms) - t0 )) ms"
    [ "${RIG_VERBOSE:-0}" = 1 ] && sed 's/^/  | /' "$RIG_OUT/$name.log"
  else
    echo "FAIL $name $(( $(now_ms) - t0 )) ms"; sed 's/^/  | /' "$RIG_OUT/$name.log"
    if [ -n "${SIM_ERR:-}" ] && [ -e "$SIM_ERR" ]; then
      echo "  | station-sim log (tail):"; tail -n 25 "$SIM_ERR" | sed 's/^/  | /'
    fi
    fail=1
  fi
}
# The station binary built on the host, run unchanged; every run gets --plain.
station() { "$STATION_BIN" --plain "$@"; }
FIXTURE=$STATION_SOURCE_DIR/fixtures/rig.yaml
FW=$STATION_SOURCE_DIR/../shared/firmware/cartographer-v4/6.0.0
# sim_start NAME ARGS...: station-sim in the background (SIM pid; log in $RIG_OUT/NAME.err).
sim_start() {
  n=$1; shift
  SIM_ERR=$RIG_OUT/$n.err
  "$STATION_SIM" "$@" --ready-file "$W/$n.ready" > "$RIG_OUT/$n.out" 2> "$SIM_ERR" & SIM=$!
  rig_wait_for 10 test -e "$W/$n.ready" || { cat "$SIM_ERR"; return 1; }
}
# sim_stop: SIGTERM; station-sim must exit 0 (a sanitizer report at exit makes it fail).
sim_stop() {
  [ -n "${SIM:-}" ] || return 0
  kill "$SIM" 2>/dev/null; wait "$SIM"; r=$?; SIM=
  [ $r = 0 ] || { echo "station-sim exited with status $r"; tail -n 20 "$SIM_ERR"; return 1; }
}
# The jig: one gpio-sim chip "jig" with the lines fixtures/rig.yaml names.
rig_jig() {
  rig_modules_load && rig_udev_start && rig_gpio_sim_load &&
    rig_gpio_chip jig jig BOOT0_1 RESET_1 BOOT0_2 RESET_2 BOOT0_3 RESET_3
}
# unit_args N: station-sim options for rig.yaml's slot N (vhci port N-1, lines 2N-2/2N-1).
unit_args() { echo "--unit --port $(( $1 - 1 )) --gpio-sim $RIG_SIM --boot0-line $(( 2 * $1 - 2 )) --nrst-line $(( 2 * $1 - 1 ))"; }
# usb_at PORTPATH VID:PID: the device on that port path has that id.
usb_at() {
  d=/sys/bus/usb/devices/$1
  [ "$(cat "$d/idVendor" 2>/dev/null):$(cat "$d/idProduct" 2>/dev/null)" = "$2" ]
}
