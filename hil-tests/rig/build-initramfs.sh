#!/bin/sh
# Build the rig's tiny initramfs: busybox-static, the modules needed to mount the host root
# over virtio-9p (+ overlay), and guest-init.sh as /init. Usage: build-initramfs.sh KVER OUT
set -eu
KVER=$1; OUT=$2
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/bin" "$W/proc" "$W/sys" "$W/dev" "$W/newroot" "$W/lib/modules"
cp /bin/busybox "$W/bin/busybox"
for a in sh mount umount mkdir insmod cat echo sleep poweroff stty chroot sync; do
  ln -s busybox "$W/bin/$a"
done
: > "$W/modules.list"
for m in virtio_pci 9pnet_virtio 9p overlay; do
  modprobe -S "$KVER" --show-depends "$m" | awk '/^insmod/ {print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
  b=$(basename "$ko")
  case "$b" in
    *.ko.xz) xz -dc "$ko" > "$W/lib/modules/${b%.xz}"; b=${b%.xz} ;;
    *.ko.zst) zstd -dcq "$ko" > "$W/lib/modules/${b%.zst}"; b=${b%.zst} ;;
    *) cp "$ko" "$W/lib/modules/$b" ;;
  esac
  echo "$b" >> "$W/modules.list"
done
cp "$HERE/guest-init.sh" "$W/init"
chmod +x "$W/init"
(cd "$W" && find . | cpio -o -H newc --quiet | gzip -1) > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
