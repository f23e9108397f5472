#!/usr/bin/env bash
# Runs every test: installs what is missing (scripts/setup.sh), then builds and runs ctest
# twice: a -Werror build and an ASan+UBSan build. Two more -Werror builds are compiled: gcc
# -O2 (build only) and clang with the libFuzzer targets, each of which then runs for
# FUZZ_SECONDS seconds (default 30), two at a time. Extra arguments go to ctest (e.g.
# `scripts/test.sh -L rig` or `-LE rig`); FUZZ_SECONDS=0 skips fuzzing.
# Then (issue 14, each in its own block below): the amd64 .deb installed into a private root;
# arm64/armhf cross builds for Debian 12 and 13 with their tests under qemu-user; the
# libgpiod 2 build.
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

# ---- packages (issue 14) --------------------------------------------------------------
# The .deb of the -Werror build (CPack): lintian without errors, installed into a private
# root with dpkg --root, station --version and the virtual job from the installed files,
# purged without leftovers (packaging/test-deb.sh). Packages land in build-test/packages/.
# Measured: ~19 s (lintian most of it).
echo "== package (amd64 .deb)"
if (cd build-test && cpack -G DEB >/dev/null); then
  sh packaging/test-deb.sh build-test/packages/station_*_amd64.deb || status=1
else
  echo "test: cpack failed"; status=1
fi
# ---- end packages ----------------------------------------------------------------------

# ---- cross builds (issue 14) -----------------------------------------------------------
# arm64 and armhf with Debian's cross compilers and -Werror, for Debian 12 (libgpiod 1.6)
# and Debian 13 / current Raspberry Pi OS (libgpiod 2.2, 64-bit time ABI on armhf); unit
# and protocol tests under qemu-user; each one's .deb (scripts/cross.sh: private sysroots
# and Debian 13's qemu-user, cached in /var/cache/station-deps). Measured: 25-45 s per
# target at load 5 (build 7-9 s, tests 11-20 s, package + lintian 5-8 s), ~2.5 min for
# the four; a first run also downloads ~120 MB (20-40 s). STATION_SKIP_CROSS=1: none.
if [ "${STATION_SKIP_CROSS:-0}" != 1 ]; then
  mkdir -p build-logs
  for target in "arm64 bookworm" "armhf bookworm" "arm64 trixie" "armhf trixie"; do
    read -r xarch xsuite <<<"$target"
    log=build-logs/cross-$xsuite-$xarch.log
    echo "== cross build: $xarch for $xsuite (tests under qemu-user; log $log)"
    bash scripts/cross.sh "$xarch" "$xsuite" > "$log" 2>&1 ||
      { status=1; echo "test: cross $xarch $xsuite FAILED:"; tail -n 40 "$log"; }
    grep -E '^cross: |tests passed|tests failed|^Depends' "$log" || true
  done
fi
# ---- end cross builds ------------------------------------------------------------------

# ---- libgpiod 2 (issue 14) ------------------------------------------------------------
# The v2-API GPIO backend (fixtures/gpio_libgpiod2.c), built against Debian 13's libgpiod
# 2.2.1 unpacked privately (scripts/libgpiod2.sh; cached in /var/cache/station-deps). The
# whole non-rig suite, then in the rig: rig_gpiosim (the backend against gpio-sim, and the
# rig's gpio tool helpers with Debian 13's v2 tools) and rig_usb (station runs that move
# BOOT0/RESET through it); its .deb. Measured: 50-60 s in all (build ~10 s, tests ~15 s,
# rig ~30 s, package ~5 s) at load 5-8. STATION_SKIP_GPIOD2=1 leaves it out.
if [ "${STATION_SKIP_GPIOD2:-0}" != 1 ]; then
  echo "== libgpiod 2 build (v2 API)"
  if gpiod2_pc=$(bash scripts/libgpiod2.sh); then
    PKG_CONFIG_PATH=$gpiod2_pc run build-gpiod2
    ctest --test-dir build-gpiod2 --output-on-failure -j"$jobs" -LE rig "$@" || status=1
    # rig_gpiosim also drives a chip with Debian 13's gpio tools (v2 syntax).
    gpiod2_tools=$(bash scripts/libgpiod2.sh --tools) ||
      { gpiod2_tools=""; echo "test: Debian 13's gpio tools could not be fetched: FAILED"; status=1; }
    RIG_GPIO_TOOLS=$gpiod2_tools RIG_GPIO_TOOLS_EXPECT=${gpiod2_tools:+v2} \
      ctest --test-dir build-gpiod2 --output-on-failure -j1 -R '^rig_(gpiosim|usb)$' "$@" || status=1
    # The package for a libgpiod 2 release (Debian 13): it depends on libgpiod3, and passes
    # the same install test (its binary finds the private libgpiod.so.3 through
    # LD_LIBRARY_PATH, as this host has no libgpiod3 package).
    if (cd build-gpiod2 && cpack -G DEB >/dev/null) &&
       dpkg-deb -f build-gpiod2/packages/station_*_amd64.deb Depends | grep -q 'libgpiod3'; then
      LD_LIBRARY_PATH=$(dirname "$gpiod2_pc")/root/usr/lib/$(gcc -print-multiarch) \
        sh packaging/test-deb.sh build-gpiod2/packages/station_*_amd64.deb || status=1
    else
      echo "test: libgpiod 2 package FAILED (cpack, or no libgpiod3 in its Depends)"; status=1
    fi
  else
    echo "test: libgpiod 2 could not be fetched (scripts/libgpiod2.sh): v2 build FAILED"
    status=1
  fi
fi
# ---- end libgpiod 2 -------------------------------------------------------------------
exit $status
