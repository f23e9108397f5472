#!/usr/bin/env bash
# Installs the Debian 12 packages Station needs to build and test. Idempotent; run as root
# (or with sudo). STATION_SETUP_RIG=1 also installs the kernel-driver rig's packages.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config
  libgpiod-dev          # GPIO lines for BOOT0/RESET/power (libgpiod 1.6, v1 API)
  libusb-1.0-0-dev      # USB DFU transfers
  libsocketcan-dev      # CAN bitrate / interface state
  libyaml-dev           # fixture/job parsing and report writing
  zlib1g-dev            # CRC-32 of DfuSe .dfu file suffixes
  libssl-dev            # SHA-1 / SHA-256 (OpenSSL libcrypto EVP)
  uuid-dev              # run ids: random UUIDs (libuuid), unique across stations
  libjson-c-dev         # Klipper data dictionaries (JSON from a unit or an image)
  libcmocka-dev         # unit tests
  libncurses-dev        # station produce: the operator screen (slot panels, block letters)
  libevdev-dev          # station produce: barcode scanners that are keyboards (grabbed input devices)
  clang                 # second compiler: scripts/test.sh builds the tree with it (-Werror)
  libclang-rt-14-dev    # libFuzzer for clang's -DSTATION_FUZZ=ON targets (only recommended by clang)
  libpq-dev             # station ship / history: the fleet's PostgreSQL database
  libmosquitto-dev      # live station status on MQTT
  postgresql            # the fleet tests start a private cluster (initdb on a free port)
  mosquitto             # the fleet tests start a private broker (mosquitto_passwd, ACLs)
  clang                 # fuzz targets (libFuzzer needs clang; STATION_FUZZ=ON)
  libclang-rt-14-dev    # libFuzzer and the sanitizer runtimes for clang 14
)
# tmux: the operator-screen test runs station produce in a tmux pane (capture-pane).
peers=(dfu-util stm32flash can-utils tmux)
# Packaging and cross builds (issue 14): man pages from --help, the .deb checker, Debian's
# cross compilers for the arm64/armhf builds (their target libraries are unpacked privately
# by scripts/cross.sh, never installed).
tools=(
  help2man                 # station(1), station-sim(1) generated from --help
  lintian                  # the .deb must have no lintian errors
  man-db                   # the man page test renders the pages
  gcc-aarch64-linux-gnu    # arm64 cross build
  gcc-arm-linux-gnueabihf  # armhf cross build
  libc6-dev-arm64-cross libc6-dev-armhf-cross  # their C libraries (only Recommended)
)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

missing=()
for p in "${pkgs[@]}" "${peers[@]}" "${tools[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
