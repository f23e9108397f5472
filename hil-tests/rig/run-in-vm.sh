#!/bin/bash
# Boot the rig VM (Debian's stock kernel under QEMU, host root shared read-only over 9p),
# run one command as root inside it, stream its stdout/stderr to ours, and exit with its
# status; 125 means the VM itself failed (no status came back).
#
#   run-in-vm.sh CMD [ARGS...]     CMD runs through /bin/sh in the VM, cwd = our cwd
#   run-in-vm.sh --prepare         only build the kernel image and initramfs in the cache
#
# Environment:
#   VM_RW       space-separated absolute host dirs mounted read-write at the same path
#   VM_ENV      names of host environment variables to pass into the VM
#   VM_TIMEOUT  seconds before the VM is killed (default 300)   VM_MEM  MiB (default 512)
#   VM_SMP      vCPUs (default 1: as fast under TCG, and two VMs fit on two cores)
#   VM_KEEP=1   keep the run dir (console log) and print its path
#   VM_APPEND   extra kernel command line   VM_QEMU_ARGS  extra qemu arguments
#   RIG_CACHE, RIG_KVER: see common.sh.
# Inside the VM: RIG_DIR (this directory), RIG_CACHE, RIG_KVER, RIG_GPIO_SIM_KO are set, and
# guest-lib.sh has helpers for gpio-sim chips, udev and CAN.
set -u
. "$(dirname "$0")/common.sh"
PREPARE=0
[ "${1:-}" = --prepare ] && { PREPARE=1; shift; }
[ $PREPARE = 1 ] || [ $# -ge 1 ] || { echo "usage: $0 CMD [ARGS...] | --prepare" >&2; exit 2; }
KVER=$(rig_kver)
[ -n "$KVER" ] && [ -e "/boot/vmlinuz-$KVER" ] ||
  { echo "run-in-vm: no guest kernel (run hil-tests/rig/setup.sh as root)" >&2; exit 125; }
command -v qemu-system-x86_64 >/dev/null || { echo "run-in-vm: qemu-system-x86_64 missing (setup.sh)" >&2; exit 125; }
mkdir -p "$RIG_CACHE" || exit 125
# The ELF vmlinux boots directly (PVH): no in-guest decompression, about 2.5 s saved.
KERNEL=$RIG_CACHE/vmlinux-$KVER
if [ ! -s "$KERNEL" ] || [ "$KERNEL" -ot "/boot/vmlinuz-$KVER" ]; then
  if "$RIG_DIR/extract-vmlinux.sh" "/boot/vmlinuz-$KVER" "$KERNEL.$$"; then
    mv "$KERNEL.$$" "$KERNEL"
  else
    KERNEL=/boot/vmlinuz-$KVER
  fi
fi
INITRD=$RIG_CACHE/initramfs-$KVER.cpio.gz
if [ ! -s "$INITRD" ] || [ "$INITRD" -ot "$RIG_DIR/guest-init.sh" ] || [ "$INITRD" -ot "$RIG_DIR/build-initramfs.sh" ]; then
  { "$RIG_DIR/build-initramfs.sh" "$KVER" "$INITRD.$$" && mv "$INITRD.$$" "$INITRD"; } ||
    { echo "run-in-vm: initramfs build failed" >&2; exit 125; }
fi
[ $PREPARE = 1 ] && exit 0

T=$(mktemp -d "${TMPDIR:-/tmp}/station-rig.XXXXXX") || exit 125
cleanup() {
  [ -n "${catpid:-}" ] && kill "$catpid" 2>/dev/null
  if [ "${VM_KEEP:-0}" = 1 ]; then echo "run-in-vm: run dir kept: $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
{
  for v in RIG_DIR RIG_CACHE ${VM_ENV:-}; do
    [ -n "${!v+x}" ] && printf 'export %s=%q\n' "$v" "${!v}"
  done
  printf 'export RIG_KVER=%q\n' "$KVER"
  printf 'export RIG_GPIO_SIM_KO=%q\n' "$RIG_CACHE/gpio-sim-$KVER/gpio-sim.ko"
  printf '%q ' "$@"; echo
} > "$T/cmd.sh"
{ printf 'VM_CWD=%q\n' "$PWD"; printf 'VM_RW=%q\n' "${VM_RW:-}"; } > "$T/env.sh"
RWARGS=()
i=0
for d in ${VM_RW:-}; do
  case "$d" in /*) ;; *) echo "run-in-vm: VM_RW entry '$d' is not absolute" >&2; exit 125 ;; esac
  [ -d "$d" ] || { echo "run-in-vm: VM_RW dir $d does not exist" >&2; exit 125; }
  RWARGS+=(-fsdev "local,id=rw$i,path=$d,security_model=none,multidevs=remap"
           -device "virtio-9p-pci,fsdev=rw$i,mount_tag=rw$i")
  i=$((i+1))
done
mkfifo "$T/err.out" "$T/err.in" || exit 125
cat "$T/err.out" >&2 & catpid=$!
# Serial ports: ttyS0 = kernel console (log file), ttyS1 = command stdout, ttyS2 = stderr.
# shellcheck disable=SC2086
timeout "${VM_TIMEOUT:-300}" qemu-system-x86_64 -accel tcg -cpu max -m "${VM_MEM:-512}" \
  -smp "${VM_SMP:-1}" -M pc -display none -no-reboot -nodefaults -no-user-config \
  -kernel "$KERNEL" -initrd "$INITRD" \
  -append "console=ttyS0 quiet loglevel=4 panic=-1 8250.nr_uarts=3 ${VM_APPEND:-}" \
  -fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=root,mount_tag=hostroot \
  -fsdev local,id=xfer,path="$T",security_model=none -device virtio-9p-pci,fsdev=xfer,mount_tag=xfer \
  "${RWARGS[@]}" \
  -serial file:"$T/console.log" \
  -chardev stdio,id=out,signal=off -serial chardev:out \
  -chardev pipe,id=err,path="$T/err" -serial chardev:err \
  ${VM_QEMU_ARGS:-} </dev/null
qrc=$?
exec 3<>"$T/err.out"; exec 3>&-    # make sure the stderr relay sees EOF
wait "$catpid" 2>/dev/null; catpid=
if [ -s "$T/rc" ]; then
  exit "$(cat "$T/rc")"
fi
[ $qrc = 124 ] && echo "run-in-vm: VM killed after VM_TIMEOUT=${VM_TIMEOUT:-300} s" >&2
echo "run-in-vm: no exit status from the VM (qemu rc=$qrc); console log tail:" >&2
tail -n 30 "$T/console.log" >&2
exit 125
