#!/bin/sh
# Rig scenario (runs INSIDE the VM): the libgpiod backend this build was made with (v1 or
# v2 API, fixtures/CMakeLists.txt) against a real kernel GPIO chip: test_fixture_gpiosim
# (names, offsets, active-low as the sim side sees it, inputs, busy lines with the holder
# named, release-to-pull, permission denied as nobody, a slot sequence). The station run
# end to end through the same backend is rig_usb.
set -u
. "$RIG_DIR/guest-lib.sh"
. "$STATION_SOURCE_DIR/hil-tests/rig/scenarios/lib.sh"

backend() {
  rig_gpio_sim_load || return 1
  ldd "$STATION_GPIOSIM_TEST" | grep libgpiod
  "$STATION_GPIOSIM_TEST"
}
part backend backend
exit $fail
