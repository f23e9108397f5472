#!/bin/sh
# PID 1 inside the rig VM (busybox): mount the host root read-only over 9p under a tmpfs
# overlay, mount the VM_RW directories read-write, run the command as root, record its exit
# status in the transfer directory and power off.
export PATH=/bin
ts() { read -r up _ < /proc/uptime; echo "rig: [$up] $*"; }
mount -t proc proc /proc; ts start
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m; do insmod "/lib/modules/$m" 2>/dev/null || echo "rig: insmod $m failed"; done < /modules.list
R=/newroot
fail() { echo "rig: $*"; poweroff -f; }
mkdir -p /lower /upper
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /lower || fail "mount hostroot"
# Writes to the host's view land in tmpfs and vanish at poweroff; VM_RW dirs are the exception.
mount -t tmpfs -o mode=755 tmpfs /upper
mkdir -p /upper/u /upper/w
mount -t overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w overlay $R || fail "mount overlay"
mount -t tmpfs -o mode=755 tmpfs $R/run
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o ptmxmode=666 devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
mkdir -p $R/run/rig
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none xfer $R/run/rig || fail "mount xfer"
. $R/run/rig/env.sh
i=0
for d in $VM_RW; do
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=mmap rw$i "$R$d" || echo "rig: mount rw$i at $d failed"
  i=$((i+1))
done
stty -F /dev/ttyS1 raw -echo 2>/dev/null
stty -F /dev/ttyS2 raw -echo 2>/dev/null
ts "running command"
chroot $R /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb LANG=C.UTF-8 \
  VM_CWD="$VM_CWD" /bin/sh -c 'ip link set lo up 2>/dev/null; cd "$VM_CWD" || cd /; exec /bin/sh /run/rig/cmd.sh' \
  </dev/null >/dev/ttyS1 2>/dev/ttyS2
echo $? > $R/run/rig/rc
ts "command finished"
sync
umount $R/run/rig
poweroff -f
