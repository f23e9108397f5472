#!/usr/bin/env bash
# Cross-builds the station for arm64 or armhf with Debian's cross compilers and -Werror, runs
# the unit and protocol tests under qemu-user, and makes the architecture's .deb (lintian:
# no errors; its Depends computed from the target's packages by scripts/deb-depends.sh).
# The target's libraries come from Debian's own arm64/armhf packages of the target release
# (12 "bookworm": libgpiod 1.6, the v1 backend; 13 "trixie", what current Raspberry Pi OS
# is built on: libgpiod 2.2, the v2 backend, 64-bit time_t ABI on armhf, and its own
# libc6-dev as the compiler's --sysroot), downloaded and unpacked into a private sysroot
# (scripts/private-debs.sh): no dpkg --add-architecture, nothing installed. qemu-user is Debian 13's (10.0, static binaries,
# unpacked privately too): Debian 12's qemu 7.2 lacks the TCGETS2 ioctl the termios
# tests use. The tests run with the sysroot as qemu's loader prefix (-L), so the dynamic
# loader and libc.so come from the same libc6 package; a loader from one glibc build with a
# libc.so from another is what makes threaded tests hang.
#   scripts/cross.sh arm64|armhf [bookworm|trixie]
#     build dir: build-ARCH (bookworm) or build-trixie-ARCH; package: BUILD/packages/
set -euo pipefail
arch=${1:?usage: cross.sh arm64|armhf [bookworm|trixie]}
suite=${2:-bookworm}
case $arch in
  arm64) triplet=aarch64-linux-gnu qemu=qemu-aarch64 ;;
  armhf) triplet=arm-linux-gnueabihf qemu=qemu-arm ;;
  *) echo "cross: unknown architecture $arch" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
command -v "$triplet-gcc" >/dev/null || { echo "cross: $triplet-gcc missing (scripts/setup.sh)" >&2; exit 1; }

# The runtime packages of what we link, their -dev packages, and libc6 for qemu's loader
# prefix (libudev1: libusb's own dependency; on trixie also libc6-dev and what the
# libraries need in turn, for linking against that libc).
case $suite in
  bookworm)
    pkgs=(libc6 libgpiod-dev libgpiod2 libusb-1.0-0-dev libusb-1.0-0 libudev1 libsocketcan-dev
          libsocketcan2 libyaml-dev libyaml-0-2 libssl-dev libssl3 zlib1g-dev zlib1g libjson-c-dev
          libjson-c5 uuid-dev libuuid1 libpq-dev libpq5 libmosquitto-dev libmosquitto1
          libncurses-dev libncurses6 libtinfo6 libevdev-dev libevdev2 libcmocka-dev libcmocka0)
    build=build-$arch ;;
  trixie)
    pkgs=(libc6 libc6-dev libgcc-s1 libgpiod-dev libgpiod3 libusb-1.0-0-dev libusb-1.0-0 libudev1
          libcap2 libsocketcan-dev libsocketcan2 libyaml-dev libyaml-0-2 libssl-dev libssl3t64
          zlib1g-dev zlib1g libzstd1 libjson-c-dev libjson-c5 uuid-dev libuuid1 libpq-dev libpq5
          libmosquitto-dev libmosquitto1 libncurses-dev libncurses6 libtinfo6 libevdev-dev
          libevdev2 libcmocka-dev libcmocka0)
    build=build-trixie-$arch ;;
  *) echo "cross: unknown suite $suite" >&2; exit 2 ;;
esac
# linux-libc-dev is Architecture: all in trixie (multiarch headers), per-arch in bookworm.
if [ "$suite" = trixie ]; then extra=(linux-libc-dev); else extra=(); fi
# With every package those depend on (libpq5 links Kerberos, LDAP, GnuTLS...).
sysroot=$(PRIVATE_DEBS_RECURSE=$arch bash scripts/private-debs.sh "cross-$suite-$arch" "$suite" "amd64,$arch" \
          "${pkgs[@]/%/:$arch}" "${extra[@]}")
qroot=$(PRIVATE_DEBS_ONLY="./usr/bin/qemu-aarch64 ./usr/bin/qemu-arm" \
        bash scripts/private-debs.sh qemu-user trixie amd64 qemu-user)

jobs=$(nproc 2>/dev/null || echo 2)
# A build dir configured against another sysroot (or another content of it) caches its
# library paths and compiler mode: start over.
sysroot_id="$sysroot $(cksum < "$(dirname "$sysroot")/stamp")"
if [ -f "$build/CMakeCache.txt" ] && [ "$(cat "$build/.station-sysroot" 2>/dev/null)" != "$sysroot_id" ]; then
  rm -rf "$build"
fi
mkdir -p "$build"
echo "$sysroot_id" > "$build/.station-sysroot"
t0=$(date +%s)
cmake -S . -B "$build" -DCMAKE_TOOLCHAIN_FILE="$here/cmake/cross-linux.cmake" \
  -DSTATION_CROSS_TRIPLET="$triplet" -DSTATION_SYSROOT="$sysroot" \
  -DSTATION_QEMU="$qroot/usr/bin/$qemu" -DCMAKE_BUILD_TYPE=Debug -DSTATION_WERROR=ON >/dev/null
cmake --build "$build" -j"$jobs"
t1=$(date +%s)
# Not run under emulation: tests that exec other programs of the build (station-sim, the
# katapult_pty tool, the rig checkers, the e2e tests of the binary): running a foreign
# binary by exec needs qemu registered in binfmt_misc, a host-wide setting CI does not
# change; the rig and packaging tests need the x86_64 host build; the fleet tests start
# PostgreSQL and Mosquitto servers (integration, not unit, tests). Their native runs cover
# them.
status=0
ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 300 \
  -LE 'rig|vm|e2e|packaging|bench|fleet' -E '^(test_station_sim|test_katapult_pty|rig_checkers)$' ||
  status=1
t2=$(date +%s)
depends=$(bash scripts/deb-depends.sh "$triplet-objdump" "$(dirname "$sysroot")/debs" \
          "$build/station/station" "$build/hil-tests/sim/station-sim") || status=1
(cd "$build" && cpack -G DEB -D CPACK_DEBIAN_PACKAGE_DEPENDS="$depends" >/dev/null) ||
  { echo "cross: cpack failed" >&2; status=1; }
deb=$(ls "$build"/packages/station_*_"$arch".deb 2>/dev/null | head -1)
if [ -n "$deb" ]; then
  dpkg-deb -f "$deb" Package Version Architecture Depends
  if command -v lintian >/dev/null; then lintian --fail-on error "$deb" || status=1; fi
fi
echo "cross: $arch ($suite): build $((t1 - t0)) s, tests $((t2 - t1)) s, package $(( $(date +%s) - t2 )) s"
exit $status
