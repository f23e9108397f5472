#!/usr/bin/env bash
# Runs every test: installs what is missing (scripts/setup.sh), then builds and runs ctest
# twice: a -Werror build and an ASan+UBSan build. Extra arguments go to ctest
# (e.g. `scripts/test.sh -L rig` or `-LE rig`).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

bash scripts/setup.sh

jobs=$(nproc 2>/dev/null || echo 2)
run() {
  local dir=$1; shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DSTATION_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
}

run build-test
run build-asan -DSTATION_SANITIZE=ON

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
echo "== tests (-Werror build)"
ctest --test-dir build-test --output-on-failure -j"$jobs" "$@" || status=1
echo "== tests (ASan+UBSan build)"
ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE rig "$@" || status=1
exit $status
