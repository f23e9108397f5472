#!/usr/bin/env bash
# The README's first command: installs what is missing, builds the station, and runs the
# main job on the virtual fixture (two simulated STM32G431 units behind in-memory GPIO and
# USB), then shows one unit's report. With ../shared/firmware present the job is the real
# Cartographer V4 USB provisioning job; without it, the same steps with an image the
# station generates itself.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTATION_WERROR=OFF >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target station 2>&1 | grep -E "error|warning" || true
station=build/station/station

real=../shared/firmware/cartographer-v4/6.0.0/Katapult_plus_CartographerV4_6.0.0__USB_lite.bin
if [ -r "$real" ]; then
  job=jobs/cartographer-v4-usb-dfu.yaml
else
  echo "demo: ../shared/firmware is absent: using the station's synthetic image"
  mkdir -p jobs/generated
  "$station" image generate jobs/generated/demo-combined.bin
  job=jobs/demo-usb-dfu.yaml
fi

reports=reports-out/demo-$(date -u +%Y%m%dT%H%M%S)
set +e
"$station" run "$job" --reports "$reports"
status=$?
set -e
first=$(ls "$reports"/*.yaml 2>/dev/null | head -n 1)
if [ -n "$first" ]; then
  echo
  echo "== $first"
  "$station" report show "$first"
fi
exit $status
