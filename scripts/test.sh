#!/usr/bin/env bash
# Runs every test: installs what is missing (scripts/setup.sh), then builds and runs ctest
# twice: a -Werror build and an ASan+UBSan build. Two more -Werror builds are compiled: gcc
# -O2 (build only) and clang with the libFuzzer targets, each of which then runs for
# FUZZ_SECONDS seconds (default 30), two at a time. Extra arguments go to ctest (e.g.
# `scripts/test.sh -L rig` or `-LE rig`); FUZZ_SECONDS=0 skips fuzzing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

bash scripts/setup.sh

# The kernel-driver rig (hil-tests/rig/setup.sh: qemu, the guest kernel, gpio-sim.ko) needs
# root and an x86_64 host. If it cannot be set up, its tests skip with the reason
# (hil-tests/rig/can-run.sh) and everything else still runs.
if [ "$(uname -m)" != x86_64 ]; then
  echo "test: $(uname -m) host: the kernel-driver rig tests will skip"
elif [ "$(id -u)" = 0 ]; then
  sh hil-tests/rig/setup.sh || echo "test: rig setup failed: the rig tests will skip"
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo sh hil-tests/rig/setup.sh || echo "test: rig setup failed: the rig tests will skip"
else
  echo "test: not root: rig setup skipped (its tests skip unless it was done before)"
fi

jobs=$(nproc 2>/dev/null || echo 2)
run() {
  local dir=$1; shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DSTATION_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
}

run build-test
run build-asan -DSTATION_SANITIZE=ON
fuzz_seconds=${FUZZ_SECONDS:-30}
status=0

# ---- Other compilers and optimisation levels ---------------------------------------------
# Each configuration warns about what the Debug gcc build cannot see: gcc -O2 about
# -Wformat-truncation and -Wmaybe-uninitialized (its value analysis runs only when
# optimising), clang about -Wformat-nonliteral and its own checks. Both must stay clean under
# -Werror. The clang build (ASan+UBSan implied by -DSTATION_FUZZ=ON) also holds the
# libFuzzer binaries that run at the end. About 20-30 s of CPU each (measured on 2 cores);
# a failure fails the run, the tests still run.
echo "== build only: gcc Release (-O2), -Werror"
{ cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DSTATION_WERROR=ON >/dev/null &&
    cmake --build build-release -j"$jobs" >/dev/null; } || { echo "test: gcc Release build failed"; status=1; }
echo "== build: clang, -Werror, libFuzzer targets"
{ cmake -S . -B build-clang -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
    -DSTATION_WERROR=ON -DSTATION_FUZZ=ON -DSTATION_FUZZ_SECONDS="$fuzz_seconds" >/dev/null &&
    cmake --build build-clang -j"$jobs" >/dev/null; } || { echo "test: clang build failed"; status=1; }
# --------------------------------------------------------------------------------------------

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
echo "== tests (-Werror build)"
ctest --test-dir build-test --output-on-failure -j"$jobs" -LE rig "$@" || status=1
# Rig tests boot one VM each (1 vCPU, TCG): two at a time whatever the core count.
echo "== kernel-driver rig tests (-Werror build)"
ctest --test-dir build-test --output-on-failure -j2 -L rig "$@" || status=1
echo "== tests (ASan+UBSan build)"
ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE rig "$@" || status=1
if [ "$fuzz_seconds" -gt 0 ]; then
  # Each target runs from its seed corpus for $fuzz_seconds s; a crash, a leak, a sanitizer
  # report, an input slower than 10 s or more than 2 GiB of memory fails it. Findings are
  # kept in build-clang/fuzz/<target>/ (crash-* is the input to reproduce with).
  echo "== fuzz targets (${fuzz_seconds} s each, libFuzzer + ASan+UBSan)"
  ctest --test-dir build-clang --output-on-failure -j2 -L fuzz || status=1
fi
exit $status
