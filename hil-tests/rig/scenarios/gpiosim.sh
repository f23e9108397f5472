#!/bin/sh
# Rig scenario (runs INSIDE the VM): the libgpiod backend this build was made with (v1 or
# v2 API, fixtures/CMakeLists.txt) against a real kernel GPIO chip: test_fixture_gpiosim
# (names, offsets, active-low as the sim side sees it, inputs, busy lines with the holder
# named, release-to-pull, permission denied as nobody, a slot sequence). Then the gpio
# tool helpers of guest-lib.sh (v1 or v2 tool syntax) against a gpio-sim chip; with
# RIG_GPIO_TOOLS (a bin dir, scripts/libgpiod2.sh --tools) first in PATH they run Debian
# 13's v2 tools, and RIG_GPIO_TOOLS_EXPECT=v1|v2 says which syntax must be in use. The
# station run end to end through the same backend is rig_usb.
set -u
. "$RIG_DIR/guest-lib.sh"
. "$STATION_SOURCE_DIR/hil-tests/rig/scenarios/lib.sh"
[ -n "${RIG_GPIO_TOOLS:-}" ] && PATH=$RIG_GPIO_TOOLS:$PATH

backend() {
  rig_gpio_sim_load || return 1
  ldd "$STATION_GPIOSIM_TEST" | grep libgpiod
  "$STATION_GPIOSIM_TEST"
}

tools() {
  gpioset --version | head -1
  case ${RIG_GPIO_TOOLS_EXPECT:-} in
    v2) rig_gpio_tools_v2 || { echo "expected the v2 tools"; return 1; } ;;
    v1) ! rig_gpio_tools_v2 || { echo "expected the v1 tools"; return 1; } ;;
  esac
  rig_gpio_sim_load && rig_gpio_chip tools tools BOOT0 RESET BTN || return 1
  rig_gpioinfo "$RIG_CHIP" | tee "$W/info"
  grep -q '"RESET"' "$W/info" || { echo "gpioinfo: no RESET line"; return 1; }
  f=$(rig_gpiofind RESET); echo "gpiofind RESET: $f"
  [ "$f" = "$RIG_CHIP 1" ] || { echo "expected \"$RIG_CHIP 1\""; return 1; }
  # hold: BOOT0 high, RESET low until killed, then both fall back to their pulls.
  echo pull-up > "$RIG_SIM/sim_gpio1/pull"
  rig_gpioset_hold "$RIG_CHIP" 0=1 1=0 & G=$!
  rig_wait_for 5 grep -q 1 "$RIG_SIM/sim_gpio0/value" || { kill $G; return 1; }
  v1=$(cat "$RIG_SIM/sim_gpio1/value"); echo "held: RESET=$v1"
  kill $G; wait $G 2>/dev/null
  [ "$v1" = 0 ] || return 1
  rig_wait_for 5 grep -q 1 "$RIG_SIM/sim_gpio1/value" || { echo "RESET not released"; return 1; }
  # pulse: RESET low for 1.5 s, then released (back to its pull-up); the call lasts that
  # long. (Long enough that polling the sim side sees it even when the VM is starved.)
  t0=$(now_ms)
  rig_gpioset_pulse "$RIG_CHIP" 1500 1=0 & P=$!
  rig_wait_for 10 grep -q 0 "$RIG_SIM/sim_gpio1/value" || { echo "pulse never drove RESET low"; kill $P 2>/dev/null; return 1; }
  wait $P || { echo "pulse failed"; return 1; }
  dt=$(( $(now_ms) - t0 )); echo "pulse: $dt ms"
  [ "$dt" -ge 1500 ] || { echo "pulse shorter than 1500 ms"; return 1; }
  rig_wait_for 5 grep -q 1 "$RIG_SIM/sim_gpio1/value" || { echo "RESET not released after the pulse"; return 1; }
  # get: the button input follows its pull.
  echo pull-up > "$RIG_SIM/sim_gpio2/pull"
  a=$(rig_gpioget "$RIG_CHIP" 2)
  echo pull-down > "$RIG_SIM/sim_gpio2/pull"
  b=$(rig_gpioget "$RIG_CHIP" 2)
  echo "gpioget BTN: pull-up $a, pull-down $b"
  [ "$a" = 1 ] && [ "$b" = 0 ] || return 1
  rig_gpio_chip_remove tools
}
part backend backend
part tools tools
exit $fail
