#!/bin/sh
# Install what the kernel-driver rig needs on a Debian 12 host and build gpio-sim.ko for the
# guest kernel into the rig cache (RIG_CACHE, default /var/cache/station-rig). Run as root.
# Idempotent: a second run installs nothing and rebuilds nothing. See README.md for timings.
# The guest kernel is the one linux-image-amd64 depends on, unless RIG_KVER names another.
set -eu
. "$(dirname "$0")/common.sh"
[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (apt-get, /var/cache)" >&2; exit 1; }
t0=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when they are missing or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
  apt-get update >/dev/null
fi
KVER=${RIG_KVER:-}
if [ -z "$KVER" ]; then
  KVER=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: linux-image-\([0-9].*-amd64\)$/\1/p' | head -1)
  [ -n "$KVER" ] || { echo "setup.sh: cannot tell which kernel linux-image-amd64 uses" >&2; exit 1; }
fi
# Host tools are also the guest's tools: the VM sees the host root over 9p.
PKGS="qemu-system-x86 linux-image-$KVER linux-headers-$KVER busybox-static cpio xz-utils zstd kmod
 gpiod can-utils iproute2 usbutils udev dfu-util make gcc libc6-dev bc"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup.sh: installing$missing"
  # shellcheck disable=SC2086
  apt-get install -y --no-install-recommends $missing >/dev/null
fi
t1=$(date +%s)
mkdir -p "$RIG_CACHE"
echo "$KVER" > "$RIG_CACHE/kver"
G=$RIG_CACHE/gpio-sim-$KVER
if [ ! -s "$G/gpio-sim.ko" ]; then
  major=$(echo "$KVER" | cut -d. -f1-2)   # 6.1
  W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
  chown _apt "$W" 2>/dev/null || true   # apt-get download drops to the _apt user
  (cd "$W" && apt-get download "linux-source-$major" >/dev/null)
  dpkg-deb --fsys-tarfile "$W"/linux-source-*.deb | tar -xO "./usr/src/linux-source-$major.tar.xz" |
    tar -xJ -C "$W" "linux-source-$major/drivers/gpio/gpio-sim.c" \
      "linux-source-$major/drivers/gpio/gpiolib.h" "linux-source-$major/kernel/irq/irq_sim.c"
  S=$W/linux-source-$major
  mkdir -p "$G"
  cp "$RIG_DIR/gpio-sim/Makefile" "$G/Makefile"
  cp "$S/drivers/gpio/gpio-sim.c" "$G/gpio-sim-main.c"
  cp "$S/drivers/gpio/gpiolib.h" "$G/gpiolib.h"
  # irq_to_desc() is not exported to modules; generic_handle_irq() does the same job here.
  sed 's/handle_simple_irq(irq_to_desc(irqnum));/generic_handle_irq(irqnum);/' \
    "$S/kernel/irq/irq_sim.c" > "$G/irq_sim.c"
  grep -q 'generic_handle_irq(irqnum);' "$G/irq_sim.c" ||
    { echo "setup.sh: the irq_sim.c change did not apply to linux-source-$major" >&2; exit 1; }
  make -C "$G" KVER="$KVER" >"$G/build.log" 2>&1 ||
    { tail -20 "$G/build.log" >&2; echo "setup.sh: gpio-sim build failed" >&2; exit 1; }
fi
t2=$(date +%s)
# Prepare the kernel image and initramfs now so the first boot is not slower than the rest.
"$RIG_DIR/run-in-vm.sh" --prepare
t3=$(date +%s)
echo "setup.sh: rig ready for kernel $KVER in $RIG_CACHE (packages $((t1-t0)) s, gpio-sim $((t2-t1)) s, images $((t3-t2)) s)"
