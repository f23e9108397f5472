# Helpers for scenario scripts running INSIDE the rig VM (sourced: . "$RIG_DIR/guest-lib.sh").
# Each prints nothing on success and a "rig: ..." line on failure, and returns non-zero.

# Load gpio-sim and mount configfs (once per boot).
rig_gpio_sim_load() {
  modprobe configfs 2>/dev/null
  mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config || return 1
  [ -d /sys/kernel/config/gpio-sim ] || insmod "$RIG_GPIO_SIM_KO" ||
    { echo "rig: insmod $RIG_GPIO_SIM_KO failed"; return 1; }
}

# rig_gpio_chip NAME LABEL LINE0 LINE1 ...: create a live gpio-sim chip whose lines carry
# these names (what a fixture file names BOOT0, RESET...). Sets RIG_CHIP (gpiochipN) and
# RIG_SIM (the sysfs dir with sim_gpioN/value and sim_gpioN/pull for the unit's side).
rig_gpio_chip() {
  _n=$1 _l=$2; shift 2
  c=/sys/kernel/config/gpio-sim/$_n
  mkdir "$c" "$c/bank0" || return 1
  echo $# > "$c/bank0/num_lines"
  echo "$_l" > "$c/bank0/label"
  i=0
  for n in "$@"; do
    mkdir "$c/bank0/line$i" && echo "$n" > "$c/bank0/line$i/name" || return 1
    i=$((i+1))
  done
  echo 1 > "$c/live" || { echo "rig: gpio-sim chip $_n did not go live"; return 1; }
  RIG_CHIP=$(cat "$c/bank0/chip_name")
  RIG_SIM=/sys/devices/platform/$(cat "$c/dev_name")/$RIG_CHIP
}

# rig_gpio_chip_remove NAME: take the chip down again (lines must be released).
rig_gpio_chip_remove() {
  c=/sys/kernel/config/gpio-sim/$1
  echo 0 > "$c/live" || return 1
  for l in "$c"/bank0/line*; do rmdir "$l"; done
  rmdir "$c/bank0" "$c"
}

# Start udevd: without it libusb never hears of a device plugged after libusb_init.
rig_udev_start() {
  /lib/systemd/systemd-udevd --daemon 2>/dev/null || { echo "rig: udevd did not start"; return 1; }
}

# Load what the CAN and USB scenarios need.
rig_modules_load() {
  for m in vhci-hcd can_raw slcan vcan; do modprobe "$m" || { echo "rig: modprobe $m failed"; return 1; }; done
}

# rig_wait_for SECONDS CMD...: run CMD every 50 ms until it succeeds or the time is up.
rig_wait_for() {
  t=$1; shift
  end=$(( $(date +%s%N) / 1000000 + t * 1000 ))
  until "$@" >/dev/null 2>&1; do
    [ $(( $(date +%s%N) / 1000000 )) -lt $end ] || { echo "rig: timed out after ${t}s waiting for: $*"; return 1; }
    sleep 0.05
  done
}

# libgpiod's command-line tools changed syntax between v1 (Debian 12: gpiod 1.6) and v2
# (Debian 13: gpiod 2.x). These helpers speak whichever the VM has (the host's tools, as
# the VM mounts the host's root), so scenarios read the same on both.
rig_gpio_tools_v2() { gpioset --version 2>/dev/null | head -1 | grep -q ' v2\.'; }
# rig_gpioinfo CHIP: the chip's lines.
rig_gpioinfo() {
  if rig_gpio_tools_v2; then gpioinfo -c "$1"; else gpioinfo "$1"; fi
}
# rig_gpiofind NAME: "gpiochipN OFFSET" of the line with that name.
rig_gpiofind() {
  if rig_gpio_tools_v2; then gpioinfo "$1" | awk '{ print $1, $2; exit }'; else gpiofind "$1"; fi
}
# rig_gpioset_hold CHIP OFF=VAL... &: drive the lines until killed. Only in the background:
# it execs gpioset, so the $! of `rig_gpioset_hold ... &` is gpioset itself.
rig_gpioset_hold() {
  _c=$1; shift
  if rig_gpio_tools_v2; then exec gpioset -c "$_c" "$@"
  else exec gpioset --mode=signal "$_c" "$@"; fi
}
# rig_gpioset_pulse CHIP MS OFF=VAL...: drive the lines for MS milliseconds, then release.
rig_gpioset_pulse() {
  _c=$1 _ms=$2; shift 2
  if rig_gpio_tools_v2; then gpioset -c "$_c" -p "${_ms}ms" -t 0 "$@"
  else gpioset --mode=time --usec="$((_ms * 1000))" "$_c" "$@"; fi
}
# rig_gpioget CHIP OFF: prints 0 or 1 (the line requested as an input).
rig_gpioget() {
  if rig_gpio_tools_v2; then gpioget --numeric -c "$1" "$2"; else gpioget "$1" "$2"; fi
}
