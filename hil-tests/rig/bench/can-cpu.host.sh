#!/bin/sh
# Host half of bench/can-cpu.sh: the station's CPU per unit on SocketCAN (slcan) against
# the slowest unit's Katapult steps (enter-katapult .. katapult-complete, from its report).
set -u
fail=0
f=$RIG_OUT/can-cpu.txt
[ -s "$f" ] || { echo "no figures in $f: the VM part did not run"; exit 1; }
steps_ms() { # steps_ms DIR: the largest sum of step durations over the reports in DIR
  for r in "$RIG_OUT/$1"/*.yaml; do
    awk '/^- name: /{n=$3} /^  duration_ms:/{if (n ~ /^(enter-katapult|katapult-)/) t+=$2}
         END{printf "%.1f\n", t}' "$r"
  done | sort -n | tail -1
}
echo "rig (TCG VM, 1 vCPU): station on SocketCAN (slcan can0 at 1 Mbit/s, and a vcan), datasheet-timed units"
printf "%6s %6s %12s %12s %14s %8s %6s %10s\n" iface units "Katapult ms" "station s" "CPU ms/unit" "CPU %" "<=3%" "RSS KiB"
for tag in slcan vcan; do
  for n in 1 3; do
    # shellcheck disable=SC2046 # the time line's words
    set -- $(grep "^station $tag $n units" "$f")
    [ $# -ge 12 ] || { echo "FAIL $tag $n units: no time line"; fail=1; continue; }
    k=$(steps_ms "$tag$n")
    awk -v t="$tag" -v n="$n" -v k="$k" -v w="$6" -v u="$8" -v s="${10}" -v m="${12}" 'BEGIN{
      c = (u + s) * 1000 / n;
      p = (k > 0 ? 100 * c / k : 0);
      printf "%6s %6d %12.1f %12.2f %14.1f %7.1f%% %6s %10d\n", t, n, k, w, c, p, (p <= 3 ? "yes" : "NO"), m}'
  done
done
echo "CPU: the station process's user + system time (/usr/bin/time) per unit (the whole run:"
echo "job and fixture loading, reports, the journal); the device side (station-sim) is another"
echo "process. On vcan there is no bitrate, so the station reads answers frame by frame. The VM runs under TCG: CPU-bound work is 7-8x"
echo "slower than on the host, so this share is an upper bound for the same work on the host."
echo "Target <= 3% is for the station's flashing work: this whole-process figure under TCG is not"
echo "that (bench_paths' Katapult CAN row is, with the station's threads apart from the simulation)."
exit $fail
