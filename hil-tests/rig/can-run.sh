#!/bin/sh
# Exit 0 when the kernel-driver rig can run on this machine; otherwise print why and exit 77
# (ctest's skip code). Checks what run-in-vm.sh needs, not whether the scenarios pass.
. "$(dirname "$0")/common.sh"
skip() { echo "rig: skipped: $*"; exit 77; }
[ "$(uname -m)" = x86_64 ] || skip "host is $(uname -m), the rig boots an x86_64 guest"
command -v qemu-system-x86_64 >/dev/null 2>&1 || skip "qemu-system-x86_64 not installed (run hil-tests/rig/setup.sh as root)"
[ -x /bin/busybox ] || skip "busybox-static not installed (run hil-tests/rig/setup.sh as root)"
KVER=$(rig_kver)
[ -n "$KVER" ] || skip "no guest kernel in /boot (run hil-tests/rig/setup.sh as root)"
[ -r "/boot/vmlinuz-$KVER" ] || skip "/boot/vmlinuz-$KVER missing or unreadable"
[ -d "/lib/modules/$KVER/kernel" ] || skip "modules for $KVER not installed"
[ -s "$RIG_CACHE/gpio-sim-$KVER/gpio-sim.ko" ] || skip "gpio-sim.ko not built in $RIG_CACHE (run setup.sh)"
if [ ! -w "$RIG_CACHE" ] && { [ ! -s "$RIG_CACHE/vmlinux-$KVER" ] || [ ! -s "$RIG_CACHE/initramfs-$KVER.cpio.gz" ]; }; then
  skip "$RIG_CACHE is not writable and the VM images are not prepared (run setup.sh)"
fi
exit 0
