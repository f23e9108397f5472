#!/usr/bin/env bash
# Makes libgpiod 2.x (the v2 API of Debian 13 and current Raspberry Pi OS) available on this
# Debian 12 machine without installing it: Debian 13's own libgpiod3 + libgpiod-dev packages
# are fetched and unpacked privately (scripts/private-debs.sh; the library needs only glibc
# 2.34, so it loads here). Prints a PKG_CONFIG_PATH directory whose libgpiod.pc points into
# the private root; builds configured with it link libgpiod.so.3 with an RPATH to it, which
# the rig VM also sees (it mounts the host's root). Idempotent and cached.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$("$here/private-debs.sh" gpiod2 trixie amd64 libgpiod3 libgpiod-dev)
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
