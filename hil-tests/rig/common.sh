# Shared settings for the kernel-driver rig scripts (sourced, not run).
# RIG_CACHE holds everything built for the rig (never committed): the guest kernel version,
# the ELF vmlinux, the initramfs, gpio-sim.ko and the per-boot run directories.
RIG_DIR=$(cd "$(dirname "$0")" && pwd)
RIG_CACHE=${RIG_CACHE:-/var/cache/station-rig}
# The guest kernel: RIG_KVER, else what setup.sh recorded, else the newest installed one.
rig_kver() {
  if [ -n "${RIG_KVER:-}" ]; then echo "$RIG_KVER"; return; fi
  if [ -s "$RIG_CACHE/kver" ]; then cat "$RIG_CACHE/kver"; return; fi
  for v in $(ls /lib/modules 2>/dev/null | sort -V -r); do
    [ -e "/boot/vmlinuz-$v" ] && { echo "$v"; return; }
  done
}
