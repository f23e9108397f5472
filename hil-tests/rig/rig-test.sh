#!/bin/sh
# ctest wrapper for one rig scenario: skip (77, with the reason) when the rig cannot run
# here, else boot the VM once and run the scenario script inside it as root. Variables the
# scenario needs (STATION_*, RIG_*) are passed into the VM. RIG_OUT (a fresh directory
# under the build tree, or $RIG_OUT) is mounted read-write: the scenario leaves its reports
# and recordings there, and SCENARIO's host half, SCENARIO with .sh -> .host.sh, checks
# them on the host after the VM is gone.
HERE=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 1 ] || { echo "usage: $0 SCENARIO.sh" >&2; exit 2; }
"$HERE/can-run.sh" || exit 77
name=$(basename "$1" .sh)
RIG_OUT=${RIG_OUT:-${STATION_BINARY_DIR:-/tmp}/rig-out/$name}
rm -rf "$RIG_OUT" && mkdir -p "$RIG_OUT" || exit 1
export RIG_OUT
export VM_RW="${VM_RW:-} $RIG_OUT"
export VM_ENV="${VM_ENV:-} STATION_SIM RIG_USB_PROBE RIG_KEYBOARD STATION_BINARY_DIR STATION_SOURCE_DIR STATION_BIN STATION_GPIOSIM_TEST RIG_GPIO_TOOLS RIG_GPIO_TOOLS_EXPECT RIG_OUT RIG_VERBOSE"
t0=$(date +%s)
"$HERE/run-in-vm.sh" sh "$1"; rc=$?
echo "rig: $name: VM run $(( $(date +%s) - t0 )) s, status $rc"
host=${1%.sh}.host.sh
if [ -e "$host" ] && [ $rc -ne 125 ] && [ $rc -ne 77 ]; then
  sh "$host" || rc=1
fi
exit $rc
