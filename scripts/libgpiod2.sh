#!/usr/bin/env bash
# Makes libgpiod 2.x (the v2 API of Debian 13 and current Raspberry Pi OS) available on this
# Debian 12 machine without installing it: Debian 13's own libgpiod3 + libgpiod-dev packages
# are fetched and unpacked privately (scripts/private-debs.sh; the library needs only glibc
# 2.34, so it loads here). Prints a PKG_CONFIG_PATH directory whose libgpiod.pc points into
# the private root; builds configured with it link libgpiod.so.3 with an RPATH to it, which
# the rig VM also sees (it mounts the host's root). Idempotent and cached.
#   libgpiod2.sh           prints the PKG_CONFIG_PATH directory
#   libgpiod2.sh --tools   prints a bin directory with Debian 13's gpio tools (v2 syntax):
#                          they need Debian 13's glibc, so each runs through that libc6's
#                          own loader, unpacked beside it (the rig tests the tool helpers
#                          of hil-tests/rig/guest-lib.sh with them)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
arch=$(dpkg --print-architecture)
if [ "${1:-}" = --tools ]; then
  troot=$("$here/private-debs.sh" gpiod2-tools trixie "$arch" gpiod libgpiod3 libc6)
  bin=$(dirname "$troot")/bin
  lib=$(dirname "$(find "$troot/usr/lib" -name 'libc.so.6' | head -1)")
  loader=$(find "$troot/usr/lib" -maxdepth 2 -name 'ld-linux*.so.*' | head -1)
  mkdir -p "$bin"
  for t in gpiodetect gpioinfo gpioget gpioset gpiomon gpionotify; do
    [ -x "$troot/usr/bin/$t" ] || continue
    printf '#!/bin/sh\nexec %s --library-path %s %s "$@"\n' "$loader" "$lib" \
      "$troot/usr/bin/$t" > "$bin/$t.new"
    chmod 755 "$bin/$t.new"
    mv "$bin/$t.new" "$bin/$t"
  done
  "$bin/gpioset" --version | grep -q ' v2\.' || { echo "libgpiod2: $bin/gpioset does not run" >&2; exit 1; }
  echo "$bin"
  exit 0
fi
root=$("$here/private-debs.sh" gpiod2 trixie "$arch" libgpiod3 libgpiod-dev)
pc=$(dirname "$root")/pkgconfig
if [ ! -f "$pc/libgpiod.pc" ] || [ "$pc/libgpiod.pc" -ot "$root" ]; then
  mkdir -p "$pc"
  src=$(find "$root" -name libgpiod.pc | head -1)
  [ -n "$src" ] || { echo "libgpiod2: no libgpiod.pc in $root" >&2; exit 1; }
  sed "s|^prefix=.*|prefix=$root/usr|; s|^libdir=/usr|libdir=\${prefix}|; s|^includedir=/usr|includedir=\${prefix}|" \
    "$src" > "$pc/libgpiod.pc.new"
  mv "$pc/libgpiod.pc.new" "$pc/libgpiod.pc"
fi
echo "$pc"
