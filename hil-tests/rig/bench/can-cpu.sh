#!/bin/sh
# CPU per unit on the real SocketCAN backend, INSIDE the rig VM (one boot): the unchanged
# station reflashes 1, then 3 virtual CAN units (station-sim, `datasheet` timing) behind
# the kernel's slcan netdev can0, then the same on a vcan (station-sim --socketcan) with jobs/cartographer-v4-can-reflash.yaml's steps
# (enter-katapult .. katapult-complete), and /usr/bin/time gives the station process's own
# CPU time (the device side is another process). Writes $RIG_OUT/can-cpu.txt and the
# reports; bench/can-cpu.host.sh prints CPU per unit against the units' Katapult step
# time. Not a test: run by `scripts/bench.sh --rig`.
set -u
. "$RIG_DIR/guest-lib.sh"
. "$RIG_DIR/scenarios/lib.sh"
APP=$FW/CartographerV4_6.0.0_CAN_1M_full_8kib_offset.bin
[ -r "$APP" ] || { echo "SKIP: no firmware in $FW"; exit 77; }
sha=$(sha256sum < "$APP" | cut -d' ' -f1)
cat > "$W/job.yaml" <<JOB
name: can-cpu
target: stm32g431xx
images:
  application: { path: $APP, load_addr: 0x08002000, sha256: $sha }
units: discover
katapult: { transport: can, bitrate: 1000000 }
retries: 0
steps:
  - enter-katapult
  - katapult-flash: { image: application }
  - katapult-verify: { image: application }
  - katapult-complete
JOB

unit_list() { # unit_list N: station-sim options for N CAN units
  for i in $(seq 1 "$1"); do
    printf ' %s' "$(unit_args "$i") --transport can --uuid 11aa22bb33c$i --serial 0A1B2C3D4E0$i --flash synthetic:$i"
  done
}

units_up() { # units_up N: behind the kernel's slcan netdev can0
  # shellcheck disable=SC2046
  sim_start units$1 units --timing datasheet --ifname can0 $(unit_list "$1") || return 1
  rig_wait_for 10 ip link show can0 && ip link set can0 txqueuelen 1000 || return 1
}

# The same units on a vcan named can0 (so the fixture's can0 is it): no slcan tty, no
# bitrate (the station then reads frame by frame); the units' datasheet timing is
# station-sim's in-memory bus.
vcan_up() { # vcan_up N
  ip link add dev can0 type vcan && ip link set can0 txqueuelen 1000 && ip link set can0 up ||
    return 1
  # shellcheck disable=SC2046
  sim_start vunits$1 units --timing datasheet --ifname can0 --socketcan $(unit_list "$1")
}

run() { # run TAG N
  /usr/bin/time -f "station $1 $2 units: wall_s %e user_s %U sys_s %S maxrss_kib %M" \
    -a -o "$RIG_OUT/can-cpu.txt" "$STATION_BIN" --plain run "$W/job.yaml" -f "$FIXTURE" \
    -r "$RIG_OUT/$1$2" -o rig
}

down() {
  sim_stop && rig_wait_for 10 sh -c '! ip link show can0'
}

vcan_down() {
  sim_stop && ip link del can0
}

rig_jig || exit 1
: > "$RIG_OUT/can-cpu.txt"
part up1 units_up 1
part run1 run slcan 1
part down1 down
part up3 units_up 3
part run3 run slcan 3
part down3 down
part vup1 vcan_up 1
part vrun1 run vcan 1
part vdown1 vcan_down
part vup3 vcan_up 3
part vrun3 run vcan 3
part vdown3 vcan_down
rm -rf "$W"
exit $fail
