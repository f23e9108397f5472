#!/usr/bin/env bash
# Builds the benchmarks (Release, -O2) and runs them one after the other, printing their
# figures (and saving them to BUILD_DIR/bench-results.txt). First the one table of every
# path side by side (bench_paths: DfuSe, Katapult CAN, USB-CDC and UART at 1, 4 and 8
# units: ratio to the device limit, skip_identical on a fresh unit vs a plain flash, the
# station's own CPU per unit as a share of the unit's wall time and the simulation's apart,
# peak RSS, each with the issue's target and whether it is met; the station thread's sleeps
# per Katapult CAN command/answer pair; the UART gap split into the pty's hops, stamped at
# both ends, the simulated unit's lateness and the station's own time; then why each one
# not met is not, from that run's measurements), then the detail benchmarks:
# bench_dfuse (DfuSe engine vs the ROM DFU model), bench_katapult_can (Katapult over CAN,
# one and N units on one bus), bench_an3155 (USART ROM bootloader vs stm32flash on the same
# model), bench_klipper_can (the Klipper host engine over CAN: identify and a sensor run),
# bench_station (the station binary end to end, CPU and memory per unit), bench_bgapi
# (BGAPI UART DFU engine vs the Bluetooth module model at 115200 baud), bench_journal
# (report upkeep per unit: full rewrites vs the journal; BENCH_JOURNAL_DIR picks the file
# system, default /tmp), bench_produce (station produce on 4 and 8 slots against the device
# limit) and bench_summary (`station report summary` over 100,000 varied reports written
# under $TMPDIR: seconds, reports/s, CPU, peak RSS). What each number means:
# hil-tests/bench/README.md.
#
#   scripts/bench.sh [--check] [--build-dir DIR] [--only NAME] [--rig]
#     --check          run each benchmark's cheap --check mode instead (results, not timing)
#     --build-dir DIR  build directory (default build-bench-release)
#     --only NAME      run one benchmark: paths, dfuse, katapult_can, an3155, klipper_can,
#                      station, bgapi, journal, produce, summary or rig
#     --rig            also the kernel-driver rig benchmarks (root, two VM boots, about two
#                      minutes): dfu-util download + upload vs station flash + verify, and the
#                      station's CPU per unit on SocketCAN (slcan and vcan)
#     --rt             run the benchmarks at real-time priority (chrt -f 5; root) so that other
#                      work on a shared host does not delay their threads
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

dir=build-bench-release
only=
check=
rig=
rt=
while [ $# -gt 0 ]; do
  case $1 in
    --check) check=--check ;;
    --build-dir) dir=$2; shift ;;
    --only) only=$2; shift ;;
    --rig) rig=1 ;;
    --rt) rt="chrt -f 5" ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

jobs=$(nproc 2>/dev/null || echo 2)
# Release with -O2 (CMake's Release default is -O3): what a station build on a Pi uses.
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS_RELEASE="-O2 -DNDEBUG" \
  -DSTATION_WERROR=ON -DSTATION_SANITIZE=OFF >/dev/null
cmake --build "$dir" -j"$jobs" --target bench_paths bench_dfuse bench_katapult_can bench_an3155 \
  bench_klipper_can bench_station bench_bgapi bench_journal bench_produce bench_summary station \
  station-sim rig-usb-probe rig-check-report rig-candump-check >/dev/null

results="$dir/bench-results.txt"
{
  echo "== station benchmarks, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm), $(nproc 2>/dev/null || echo '?') CPUs," \
       "$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //')"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} | tee "$results"

status=0
# One at a time: they measure wall time against the models' modelled time.
run() {
  local name=$1 exe=$2; shift 2
  [ -z "$only" ] || [ "$only" = "$name" ] || return 0
  echo | tee -a "$results"
  echo "== $name" | tee -a "$results"
  # shellcheck disable=SC2086
  if ! $rt "$dir/$exe" "$@" 2>&1 | tee -a "$results"; then
    echo "bench.sh: $name FAILED" | tee -a "$results" >&2
    status=1
  fi
}

if [ -n "$check" ]; then
  run paths hil-tests/bench/bench_paths --check
  run dfuse protocols/dfuse/bench_dfuse --check
  run katapult_can hil-tests/bench/bench_katapult_can --check
  run an3155 protocols/an3155/bench_an3155 --check
  run klipper_can hil-tests/bench/bench_klipper_can --check
  run station hil-tests/bench/bench_station --check
  run bgapi protocols/bgapi/bench_bgapi --check
  run journal hil-tests/bench/bench_journal --check
  run produce hil-tests/bench/bench_produce --check
  run summary hil-tests/bench/bench_summary --check
else
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (ratios are host time against modelled" \
       "time: a busy host makes them worse)${rt:+; run at real-time priority ($rt)}" |
    tee -a "$results"
  run paths hil-tests/bench/bench_paths --reps 3
  run dfuse protocols/dfuse/bench_dfuse
  run katapult_can hil-tests/bench/bench_katapult_can --reps 3
  run an3155 protocols/an3155/bench_an3155
  run klipper_can hil-tests/bench/bench_klipper_can
  run station hil-tests/bench/bench_station
  run bgapi protocols/bgapi/bench_bgapi
  run journal hil-tests/bench/bench_journal --units 50 ${BENCH_JOURNAL_DIR:+--dir "$BENCH_JOURNAL_DIR"}
  run produce hil-tests/bench/bench_produce
  run summary hil-tests/bench/bench_summary
fi
# The rig benchmarks: the same binaries, unchanged, in a QEMU VM (one boot each): the peer
# (dfu-util) and the station's CPU on the real SocketCAN backend (slcan and vcan).
if [ -z "$check" ] && { [ -n "$rig" ] || [ "$only" = rig ]; }; then
  b=$(cd "$dir" && pwd)
  for bench in peer can-cpu; do
    echo | tee -a "$results"
    echo "== rig: $bench" | tee -a "$results"
    if ! STATION_SIM=$b/hil-tests/sim/station-sim STATION_BIN=$b/station/station \
         RIG_USB_PROBE=$b/hil-tests/rig/rig-usb-probe RIG_CHECK_REPORT=$b/hil-tests/rig/rig-check-report \
         RIG_CANDUMP_CHECK=$b/hil-tests/rig/rig-candump-check STATION_BINARY_DIR=$b \
         STATION_SOURCE_DIR=$here hil-tests/rig/rig-test.sh "$here/hil-tests/rig/bench/$bench.sh" 2>&1 |
         tee -a "$results"; then
      echo "bench.sh: rig $bench FAILED (or cannot run here)" | tee -a "$results" >&2
      status=1
    fi
  done
fi
echo
echo "results saved to $results"
exit $status
