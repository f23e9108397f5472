#!/bin/sh
# ctest wrapper for one rig scenario: skip (77, with the reason) when the rig cannot run
# here, else boot the VM once and run the scenario script inside it as root. Variables the
# scenario needs (STATION_*, RIG_USB_PROBE) are passed into the VM.
HERE=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 1 ] || { echo "usage: $0 SCENARIO.sh" >&2; exit 2; }
"$HERE/can-run.sh" || exit 77
export VM_ENV="${VM_ENV:-} STATION_SIM RIG_USB_PROBE STATION_BINARY_DIR STATION_SOURCE_DIR"
exec "$HERE/run-in-vm.sh" sh "$1"
